//! Admission of request bodies against the service's body budget
//! ([`crate::app::bodies`]).
//!
//! A body that could not fit now (by its `Content-Length`, else the most a
//! body may be) is refused at once, before any byte is read; but what holds
//! the budget is the bytes that arrive, not the length a request declares.
//! Reserving declared lengths let four addresses, each with four bodies that
//! declared 17 MiB and sent a trickle, shut every POST out for minutes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use crate::app::Shared;
use crate::tap::auth::Caller;
use crate::tap::sync::busy_response;

/// The bytes of one request's body received so far, given back once both its
/// handler and its body are done with them.
struct Charged {
    app: Shared,
    caller: String,
    bytes: AtomicU64,
    /// Why the body was cut off, when the budget ran out as it arrived.
    refused: Mutex<Option<String>>,
}

impl Charged {
    fn take(&self, bytes: u64) -> Result<(), String> {
        match self.app.bodies.take(&self.caller, bytes) {
            Ok(()) => {
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
                Ok(())
            }
            Err(message) => {
                let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
                *refused = Some(message.clone());
                Err(message)
            }
        }
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        self.app
            .bodies
            .give_back(&self.caller, *self.bytes.get_mut());
    }
}

/// Refuses a body that could not fit, and charges the bytes of one that may
/// as they arrive; a body the budget runs out under is answered 503.
pub async fn admit(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let most = app.config.upload_limit.saturating_add(1 << 20);
    let declared = match request.headers().get(header::CONTENT_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(most, |n| n.min(most)),
        // No length: a body may still come (chunked), up to the most allowed.
        None if request.method() == axum::http::Method::POST => most,
        None => 0,
    };
    if declared == 0 {
        return next.run(request).await;
    }
    let caller = request
        .extensions()
        .get::<Caller>()
        .map(Caller::key)
        .unwrap_or_else(|| "anonymous".into());
    if let Err(message) = app.bodies.fits(&caller, declared) {
        return busy_response(&message);
    }
    let charged = Arc::new(Charged {
        app: app.clone(),
        caller,
        bytes: AtomicU64::new(0),
        refused: Mutex::new(None),
    });
    let (parts, body) = request.into_parts();
    let counter = charged.clone();
    let body = Body::from_stream(body.into_data_stream().map(move |frame| {
        let frame = frame?;
        counter
            .take(frame.len() as u64)
            .map_err(|message| axum::Error::new(std::io::Error::other(message)))?;
        Ok::<_, axum::Error>(frame)
    }));
    let response = next.run(Request::from_parts(parts, body)).await;
    let refused = charged
        .refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match refused {
        // The handler saw its body fail; the caller is told why.
        Some(message) => busy_response(&message),
        None => response,
    }
}
