//! Results on the wire: rows encoded as they come, held back briefly so that an
//! early failure is still an error document, and a transfer that fails later
//! cut short so no client takes it for whole.

use crate::app::Shared;
use crate::app::limits::Permit;
use crate::http::write_deadline::WriteBy;
use crate::tap::failure::Failure;
use crate::tap::origin::Origin;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use engine::QueryResult;
use engine::encode::{Format, ResultWriter};
use futures::StreamExt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
/// Bytes written by a result writer, handed on in pieces.
#[derive(Clone, Default)]
pub(crate) struct Pending(Arc<Mutex<Vec<u8>>>);

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("result buffer poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Pending {
    fn take(&self) -> Bytes {
        self.0
            .lock()
            .map(|mut v| Bytes::from(std::mem::take(&mut *v)))
            .unwrap_or_default()
    }
}

/// Encoded bytes handed on at a time (see [`encode`]): with the eight pieces
/// the channel to the body holds, what one response keeps in memory.
const PIECE_BYTES: usize = 1 << 20;

/// How encoding a result ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Every row was written.
    Done {
        /// Rows written.
        rows: u64,
        /// Whether MAXREC cut rows.
        overflow: bool,
    },
    /// The query failed after it started; the document says so and ends cleanly.
    Failed(Failure),
    /// The reader went away.
    Gone,
}

/// Encodes a result batch by batch into `tx`, so that memory does not grow with
/// its size. An error after the first row (or the deadline passing) ends the
/// table and reports the error after it (VOTable).
pub(crate) async fn encode(
    app: Shared,
    mut result: QueryResult,
    format: Format,
    deadline: Instant,
    allowed: Duration,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    origin: &Origin,
) -> Outcome {
    let mut describe = app.engine.describe(&result);
    describe.replay_url = result
        .token
        .as_ref()
        .map(|t| format!("{}/tap/replay/{t}", app.config.base_url));
    describe
        .infos
        .extend(origin.infos(&app.config, describe.replay_url.as_deref()));
    describe.links = Some((
        format!("{}/tap/links", app.config.base_url),
        result.snapshot.snapshot,
    ));
    let pending = Pending::default();
    let mut out = pending.clone();
    let mut writer = match ResultWriter::new(format, result.schema.clone(), &describe, &mut out) {
        Ok(w) => w,
        Err(e) => {
            let failure = Failure::from(&e);
            let mut buf = Vec::new();
            let _ = engine::encode::votable_error(&failure.message, &mut buf);
            let _ = tx.send(Bytes::from(buf)).await;
            return Outcome::Failed(failure);
        }
    };
    let mut rows = 0u64;
    // Encoded bytes per row, as the last slice measured them (a first guess
    // from the columns before any).
    let mut row_bytes = 64 * result.schema.fields().len().max(1);
    loop {
        let next = match tokio::time::timeout_at(deadline.into(), result.next_batch()).await {
            Ok(next) => next.map(|r| r.map_err(|e| Failure::from(&e))),
            Err(_) => Some(Err(Failure::refused(engine::overdue(allowed)))),
        };
        let failure = match next {
            Some(Ok(batch)) => {
                // A batch of wide rows (a column repeated a thousand times
                // costs the query nothing) encodes to hundreds of MB: it goes
                // out in slices of about PIECE_BYTES, each handed on before the
                // next is encoded and the deadline checked between them, so
                // neither memory nor the deadline waits on a whole batch.
                let mut at = 0;
                let mut failed = None;
                while at < batch.num_rows() {
                    let n = (PIECE_BYTES / row_bytes).clamp(1, batch.num_rows() - at);
                    if let Err(e) = writer.write(&batch.slice(at, n)) {
                        failed = Some(Failure::from(&e));
                        break;
                    }
                    at += n;
                    rows += n as u64;
                    let chunk = pending.take();
                    if !chunk.is_empty() {
                        row_bytes = (chunk.len() / n).max(1);
                    }
                    // A client that went away stops the query, and so does one
                    // that stops reading: a send waits no later than the deadline,
                    // or a reader that never reads would hold a slot for ever.
                    if !chunk.is_empty() && !sent(&tx, chunk, deadline).await {
                        return Outcome::Gone;
                    }
                    if at < batch.num_rows() && Instant::now() >= deadline {
                        failed = Some(Failure::refused(engine::overdue(allowed)));
                        break;
                    }
                }
                match failed {
                    None => continue,
                    Some(f) => f,
                }
            }
            Some(Err(e)) => e,
            None => break,
        };
        let _ = writer.fail(&failure.message);
        let _ = sent(&tx, pending.take(), deadline).await;
        return Outcome::Failed(failure);
    }
    let _ = writer.finish(result.overflowed());
    if !sent(&tx, pending.take(), deadline).await {
        return Outcome::Gone;
    }
    Outcome::Done {
        rows,
        overflow: result.overflowed(),
    }
}

/// Hands bytes on, waiting for the reader no later than `deadline`; false when
/// the reader is gone or did not take them in time.
pub(crate) async fn sent(
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    bytes: Bytes,
    deadline: Instant,
) -> bool {
    matches!(
        tokio::time::timeout_at(deadline.into(), tx.send(bytes)).await,
        Ok(Ok(()))
    )
}

/// Streams a result as the response; the permit is held until the last byte.
///
/// Nothing is sent before the result's first bytes. A result that ends within
/// its first [`HELD_BYTES`] (and [`HELD_TIME`] after them) is held until it does, so that its headers can say how it ended:
/// `X-Query-Status` (`OK`, `OVERFLOW` when MAXREC cut it, `ERROR`) and
/// `X-Query-Rows`. CSV and TSV have no other place for that; a larger result
/// streams at once, and its token record says whether it overflowed.
pub(crate) async fn stream(
    app: Shared,
    result: QueryResult,
    format: Format,
    deadline: Instant,
    permit: std::sync::Arc<Permit>,
    origin: Origin,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let token = result.token.clone();
    let snapshot = result.snapshot.snapshot;
    let replay_url = token
        .as_ref()
        .map(|t| format!("{}/tap/replay/{t}", app.config.base_url));
    let mut origin_headers = axum::http::HeaderMap::new();
    origin.headers(
        &app.config,
        replay_url.as_deref(),
        Some(snapshot),
        &mut origin_headers,
    );
    let encoder = tokio::spawn(async move {
        let _permit = permit;
        let allowed = app.config.max_duration;
        // A client that goes away stops its query at once: a query that sends
        // nothing until its end (a COUNT over a cross join) would otherwise run
        // to the deadline, holding its slot (eight such requests, abandoned
        // after two seconds, kept every other caller waiting 90 s).
        let gone = tx.clone();
        tokio::select! {
            outcome = encode(app, result, format, deadline, allowed, tx, &origin) => outcome,
            () = gone.closed() => Outcome::Gone,
        }
    });
    let mut held: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    let until = tokio::time::Instant::now() + HELD_TIME;
    let mut ended = false;
    while size < HELD_BYTES {
        // Nothing is answered before the first bytes (or the end): a query
        // that fails before any row gets an error status, however long it ran
        // (a join that ran out of memory after 2.7 s was a 200 with no body).
        let next = if held.is_empty() {
            Ok(rx.recv().await)
        } else {
            tokio::time::timeout_at(until, rx.recv()).await
        };
        match next {
            Ok(Some(b)) => {
                size += b.len();
                held.push(b);
            }
            Ok(None) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    let (outcome, encoder) = if ended {
        (encoder.await.ok(), None)
    } else {
        (None, Some(encoder))
    };
    // A query that failed before the client saw a byte is answered as one that
    // failed to start: an error document and an error status, which clients
    // such as astroquery need (a table that ends in an error reads as empty).
    if let Some(Outcome::Failed(failure)) = &outcome {
        return failure.response();
    }
    // A CSV, TSV or Parquet result that fails once it has streamed has no place
    // to say so, and no result that was abandoned half way (a reader too slow
    // for the deadline) is whole: the transfer is broken off instead (no last
    // chunk), which every HTTP client reports, rather than ended as if the
    // table were complete.
    // How a streamed result ended, for the access log (its line is written
    // when the body ends).
    let ending = crate::http::access_log::Ending::default();
    let ended = ending.clone();
    // What was encoded by the deadline must be read soon after it: a reader
    // slower than that has its connection closed (see `write_deadline`).
    let write_by = WriteBy::new(tokio::time::Instant::from_std(deadline) + WRITE_GRACE);
    let written = write_by.clone();
    let rest = futures::stream::unfold(Some((rx, encoder)), move |state| {
        let ended = ended.clone();
        let written = written.clone();
        async move {
            let Some((mut rx, encoder)) = state else {
                written.ended();
                return None;
            };
            match rx.recv().await {
                Some(b) => Some((Ok(b), Some((rx, encoder)))),
                None => {
                    written.ended();
                    let outcome = encoder?.await;
                    ended.set(&outcome);
                    let why = match outcome {
                        Ok(Outcome::Done { .. }) => return None,
                        Ok(Outcome::Failed(_)) if format.reports_failure() => return None,
                        Ok(Outcome::Failed(failure)) => {
                            format!("the query failed after its first rows: {}", failure.message)
                        }
                        Ok(Outcome::Gone) => "the result was abandoned before its end".into(),
                        Err(e) => format!("the result stopped: {e}"),
                    };
                    Some((Err(std::io::Error::other(why)), None))
                }
            }
        }
    });
    let body = futures::stream::iter(held)
        .map(Ok::<Bytes, std::io::Error>)
        .chain(rest);
    let mut response = Response::new(Body::from_stream(body));
    if let Some(o) = &outcome {
        ending.set(&Ok(o.clone()));
    }
    response.extensions_mut().insert(ending);
    response.extensions_mut().insert(write_by);
    let (status, rows) = match outcome {
        Some(Outcome::Done { rows, overflow }) => (
            Some(engine::encode::Status::of(overflow).as_str()),
            Some(rows),
        ),
        _ => (None, None),
    };
    if let Some(s) = status {
        response
            .headers_mut()
            .insert("x-query-status", HeaderValue::from_static(s));
    }
    if let Some(n) = rows {
        response
            .headers_mut()
            .insert("x-query-rows", HeaderValue::from(n));
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    if let Some(t) = token
        && let Ok(v) = HeaderValue::from_str(&t)
    {
        response.headers_mut().insert("x-query-token", v);
    }
    response.headers_mut().extend(origin_headers);
    response
}

/// How long after its deadline a result may still be read.
pub(crate) const WRITE_GRACE: Duration = Duration::from_secs(2);

/// How much of a result is held back to say in its headers how it ended.
pub(crate) const HELD_BYTES: usize = 4 << 20;
/// How long a result is held back at most, from its first bytes, before it streams.
pub(crate) const HELD_TIME: Duration = Duration::from_secs(2);
