//! The access log: one JSON line on stderr per request, so that every read
//! (privileged reads of embargoed rows above all) leaves a trace an operator
//! can search: who asked, from where, what, and what they were given.

use std::io::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::access::Caller;
use crate::tap::Shared;

/// Where the lines go.
#[derive(Debug)]
pub enum Sink {
    /// Standard error (the default).
    Stderr,
    /// A file, appended to.
    File(Mutex<std::fs::File>),
}

impl Sink {
    /// `-` is standard error; anything else a file to append to.
    pub fn open(path: &std::path::Path) -> std::io::Result<Sink> {
        if path.as_os_str() == "-" {
            return Ok(Sink::Stderr);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Sink::File(Mutex::new(file)))
    }

    fn write(&self, line: &str) {
        match self {
            Sink::Stderr => eprintln!("{line}"),
            Sink::File(f) => {
                let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = writeln!(f, "{line}") {
                    eprintln!("warning: the access log cannot be written: {e}");
                }
            }
        }
    }
}

/// Logs each request once its response head is ready.
pub async fn log(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = crate::connections::peer(&request).map(|p| p.ip().to_string());
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let user = match response.extensions().get::<Caller>() {
        Some(Caller::User(name)) => Some(name.as_str()),
        _ => None,
    };
    let line = serde_json::json!({
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "peer": peer,
        "user": user,
        "privileged": user.is_some(),
        "method": method,
        "path": path,
        "status": response.status().as_u16(),
        "token": header("x-query-token"),
        "rows": header("x-query-rows").and_then(|r| r.parse::<u64>().ok()),
        "query_status": header("x-query-status"),
        "ms": started.elapsed().as_millis() as u64,
    });
    app.access_log.write(&line.to_string());
    response
}
