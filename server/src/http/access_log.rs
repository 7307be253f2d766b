//! The access log: one JSON line on stderr per request, so that every read
//! (privileged reads of embargoed rows above all) leaves a trace an operator
//! can search: who asked, from where, what, and what they were given.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::Shared;
pub use crate::app::log_sink::Sink;
use crate::tap::auth::Caller;

/// How a streamed result ended, filled in by the result's stream.
#[derive(Debug, Clone, Default)]
pub struct Ending(Arc<Mutex<Option<Ended>>>);

/// Rows sent (when known) and how the query ended.
type Ended = (Option<u64>, &'static str);

impl Ending {
    /// Records the outcome of a result's encoding (or of its task).
    pub(crate) fn set(
        &self,
        outcome: &Result<crate::tap::stream::Outcome, tokio::task::JoinError>,
    ) {
        use crate::tap::stream::Outcome;
        let value = match outcome {
            Ok(Outcome::Done { rows, overflow }) => {
                (Some(*rows), engine::encode::Status::of(*overflow).as_str())
            }
            Ok(Outcome::Failed(_)) | Err(_) => (None, "ERROR"),
            Ok(Outcome::Gone) => (None, "ABANDONED"),
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    }

    fn get(&self) -> Option<Ended> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Logs each request when its response body has been sent (or dropped):
/// its status, how a query result ended, its rows, bytes and duration.
pub async fn log(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = crate::http::connections::peer(&request).map(|p| p.ip().to_string());
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let agent = request
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|a| a.chars().take(200).collect::<String>());
    // A client that goes away before the response begins drops this handler
    // (a sync query answers nothing until its first rows): its line is
    // written then, with the user its credentials name.
    let user = match crate::tap::auth::caller_of(&app, &request) {
        Ok(Caller::User(name)) => Some(name),
        _ => None,
    };
    let mut unanswered = Unanswered(Some(Line {
        app: app.clone(),
        started,
        fields: serde_json::json!({
            "time": null,
            "peer": peer,
            "user": user,
            "privileged": user.is_some(),
            "agent": agent,
            "method": method,
            "path": path,
            "status": null,
            "token": null,
            "rows": null,
            "query_status": "ABANDONED",
        }),
        ending: None,
        bytes: 0,
        written: false,
    }));
    let response = next.run(request).await;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let user = match response.extensions().get::<Caller>() {
        Some(Caller::User(name)) => Some(name.clone()),
        _ => None,
    };
    let status = response.status().as_u16();
    // An error document is a query that ended in error, whatever its format.
    let query_status = header("x-query-status").or_else(|| {
        (status >= 400 && (path.ends_with("/sync") || path.contains("/replay/")))
            .then(|| "ERROR".to_string())
    });
    // Answered: the line is the response's, written when its body ends.
    let Some(mut line) = unanswered.0.take() else {
        return response;
    };
    line.stamp();
    if let Some(o) = line.fields.as_object_mut() {
        o.insert("user".into(), user.clone().into());
        o.insert("privileged".into(), user.is_some().into());
        o.insert("status".into(), status.into());
        o.insert("token".into(), header("x-query-token").into());
        let rows = header("x-query-rows").and_then(|r| r.parse::<u64>().ok());
        o.insert("rows".into(), rows.into());
        o.insert("query_status".into(), query_status.into());
    }
    line.ending = response.extensions().get::<Ending>().cloned();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, axum::body::Body::new(Logged { inner: body, line }))
}

/// The line of a request whose handler was dropped before it answered.
struct Unanswered(Option<Line>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(mut line) = self.0.take() {
            line.stamp();
            line.write(false);
        }
    }
}

/// The fields of one line, completed when the body ends.
struct Line {
    app: Shared,
    started: Instant,
    fields: serde_json::Value,
    ending: Option<Ending>,
    bytes: u64,
    written: bool,
}

impl Line {
    /// Sets the line's time to now (when the response began, or the client left).
    fn stamp(&mut self) {
        if let Some(o) = self.fields.as_object_mut() {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            o.insert("time".into(), now.into());
        }
    }

    fn write(&mut self, complete: bool) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        if let Some(o) = self.fields.as_object_mut() {
            if let Some((rows, status)) = self.ending.as_ref().and_then(Ending::get) {
                o.insert("rows".into(), rows.into());
                o.insert("query_status".into(), status.into());
            }
            o.insert("bytes".into(), self.bytes.into());
            // A body dropped before its end: the client went away.
            o.insert("complete".into(), complete.into());
            o.insert(
                "ms".into(),
                (self.started.elapsed().as_millis() as u64).into(),
            );
        }
        self.app.access_log.write(&self.fields.to_string());
    }
}

/// A response body that counts its bytes and logs its request when it ends.
struct Logged {
    inner: axum::body::Body,
    line: Line,
}

impl http_body::Body for Logged {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.line.bytes += data.len() as u64;
                }
            }
            std::task::Poll::Ready(None) => self.line.write(true),
            std::task::Poll::Ready(Some(Err(_))) => self.line.write(false),
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.line.write(http_body::Body::is_end_stream(&self.inner));
    }
}
