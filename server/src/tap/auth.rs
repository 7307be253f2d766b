//! Who is asking: each request's bearer token (or its absence) becomes its
//! [`Caller`], which every handler reads.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::Shared;
pub use crate::app::users::Caller;

/// The caller a request names, or why its credentials are refused.
pub(crate) fn caller_of(app: &Shared, request: &Request) -> Result<Caller, &'static str> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous(
            crate::http::connections::peer(request).map(|p| p.ip()),
        ));
    };
    let text = value.to_str().unwrap_or("");
    let secret = text
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, s)| s.trim());
    match secret.and_then(|s| app.users.user_of(s)) {
        Some(user) => Ok(Caller::User(user.to_string())),
        None if secret.is_some() => Err("the bearer token is not known to this server"),
        None => Err("only `Authorization: Bearer <token>` is accepted"),
    }
}

/// Finds the caller of each request; refuses unknown or malformed credentials.
pub async fn authenticate(State(app): State<Shared>, mut request: Request, next: Next) -> Response {
    let caller = match caller_of(&app, &request) {
        Ok(caller) => caller,
        Err(why) => return unauthorized(why),
    };
    request.extensions_mut().insert(caller.clone());
    let mut response = next.run(request).await;
    // For the access log, which sits outside this layer.
    response.extensions_mut().insert(caller);
    response
}

/// A 401 that says why, with the challenge RFC 6750 asks for.
fn unauthorized(why: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}; send no Authorization header to query as an anonymous user\n"),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ppdb\", error=\"invalid_token\""),
    );
    response
}
