//! Admission of request bodies against the service's body budget
//! ([`crate::app::bodies`]), before any byte of them is read.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::app::Shared;
use crate::tap::auth::Caller;
use crate::tap::sync::busy_response;

/// A body's share of the budget, given back when its request is answered.
struct Held {
    app: Shared,
    caller: String,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.app.bodies.give_back(&self.caller, self.bytes);
    }
}

/// Takes a request's body size from the budget before the body is read.
pub async fn admit(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let most = app.config.upload_limit.saturating_add(1 << 20);
    let bytes = match request.headers().get(header::CONTENT_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(most, |n| n.min(most)),
        // No length: a body may still come (chunked), up to the most allowed.
        None if request.method() == axum::http::Method::POST => most,
        None => 0,
    };
    if bytes == 0 {
        return next.run(request).await;
    }
    let caller = request
        .extensions()
        .get::<Caller>()
        .map(Caller::key)
        .unwrap_or_else(|| "anonymous".into());
    if let Err(message) = app.bodies.take(&caller, bytes) {
        return busy_response(&message);
    }
    let _held = Held {
        app: app.clone(),
        caller,
        bytes,
    };
    next.run(request).await
}
