//! Errors as TAP clients read them: a VOTable with QUERY_STATUS=ERROR and the
//! status a failure's kind calls for.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
pub(crate) const VOTABLE_MIME: &str = "application/x-votable+xml";

pub(crate) fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

/// Why a request failed, as its caller is told: an HTTP status and a message.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// 400 for a request the service refuses, 403 and 404 where those fit, 500
    /// when the service itself failed.
    pub status: StatusCode,
    /// What went wrong, saying nothing of where the service keeps its data.
    pub message: String,
}

impl Failure {
    /// A refusal of the request (HTTP 400).
    pub fn refused(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// The failure as an error VOTable.
    pub fn response(&self) -> Response {
        error(self.status, &self.message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        self.response()
    }
}

impl From<&engine::Error> for Failure {
    fn from(e: &engine::Error) -> Failure {
        let status = match e {
            engine::Error::Token(t) if t.is_not_found() => StatusCode::NOT_FOUND,
            engine::Error::StateFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            e if e.is_internal() => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let message = e.public_message();
        if message != e.message() {
            // The whole story, paths and all, is for the operator.
            eprintln!("error: {}", e.message());
        }
        Failure { status, message }
    }
}

/// A TAP error: an error VOTable with an HTTP error status, which TAP 1.1 (§3.3)
/// allows for sync requests and clients such as astroquery need to see the
/// message (they read no error out of a 200).
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let mut out = Vec::new();
    let _ = engine::encode::votable_error(message, &mut out);
    (status, [(header::CONTENT_TYPE, VOTABLE_MIME)], out).into_response()
}

/// Escapes text for XML, as the engine's result documents do (what XML 1.0
/// cannot carry replaced, line breaks as character references).
pub(crate) fn esc(s: &str) -> String {
    engine::encode::votable::esc(s)
}
