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

/// Escapes text for XML; what XML 1.0 cannot carry (control characters,
/// U+FFFE, U+FFFF) becomes a space or U+FFFD.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\u{fffe}' | '\u{ffff}' => o.push('\u{fffd}'),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn what_xml_cannot_carry_is_replaced() {
        assert_eq!(
            esc("a\u{fffe}b\u{1}c<&\"\n"),
            "a\u{fffd}b c&lt;&amp;&quot;\n"
        );
    }
}
