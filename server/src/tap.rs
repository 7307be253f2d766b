//! The TAP service: TAP 1.1 `sync`, VOSI `availability`, `capabilities` and
//! `tables`, and `replay/{token}`, over the engine.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::encode::{Format, ResultWriter};
use engine::{Engine, QueryOptions, QueryResult, ReplayOptions};
use futures::StreamExt;

use crate::access::{Caller, Users};
use crate::jobs::Jobs;
use crate::limits::{Limits, Permit};

/// How the service behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Rows returned when a request names no MAXREC.
    pub maxrec_default: u64,
    /// The most rows any request may ask for.
    pub maxrec_limit: u64,
    /// The URL clients reach the service at (for links in results), without `/tap`.
    pub base_url: String,
    /// The longest a query may run (sync), and the most an async job may ask for.
    pub max_duration: Duration,
    /// The longest a UWS `WAIT` blocks.
    pub max_wait: Duration,
    /// How long async jobs and their results are kept at most.
    pub job_lifetime: Duration,
    /// The largest upload accepted, in bytes.
    pub upload_limit: u64,
    /// Whether uploads may be fetched from loopback and private addresses.
    pub private_uploads: bool,
    /// The longest a request head may take, and a request body may stall.
    pub read_timeout: Duration,
    /// Queries one caller may have running or waiting (default: every slot
    /// and half the queue).
    pub per_caller: Option<usize>,
    /// Async jobs one caller may create in an hour.
    pub jobs_per_hour: usize,
}

impl Config {
    /// Defaults for everything but the address.
    pub fn new(base_url: String) -> Config {
        Config {
            maxrec_default: 100_000,
            maxrec_limit: 10_000_000,
            base_url,
            max_duration: Duration::from_secs(600),
            max_wait: Duration::from_secs(60),
            job_lifetime: Duration::from_secs(7 * 24 * 3600),
            upload_limit: 16 << 20,
            private_uploads: false,
            read_timeout: Duration::from_secs(30),
            per_caller: None,
            jobs_per_hour: 200,
        }
    }
}

pub(crate) use crate::params::{Params, Posted};

/// What the handlers share.
pub struct App {
    /// The engine over the served catalog.
    pub engine: Engine,
    /// Limits and links.
    pub config: Config,
    /// Running queries and the queue in front of them.
    pub limits: Limits,
    /// Async jobs running in this process.
    pub jobs: Jobs,
    /// The bearer tokens of privileged users.
    pub users: Users,
    /// The DALI examples, written for the served catalog.
    pub examples: Vec<crate::examples::Example>,
    /// Where each request is logged.
    pub access_log: crate::access_log::Sink,
}

impl App {
    /// A service over an engine; `concurrent` queries run at once, `queue` more wait.
    pub async fn new(
        engine: Engine,
        config: Config,
        concurrent: usize,
        queue: usize,
        users: Users,
    ) -> App {
        let examples = crate::examples::for_catalog(&engine).await;
        // By default one caller may take every slot, but only half the queue:
        // others queue behind it, and are served, rather than told "busy".
        let share = config.per_caller.unwrap_or(concurrent + queue / 2);
        App {
            engine,
            config,
            limits: Limits::new(concurrent, queue, share),
            jobs: Jobs::default(),
            users,
            examples,
            access_log: crate::access_log::Sink::Stderr,
        }
    }
}

/// The state every handler shares.
pub type Shared = Arc<App>;

/// The service's routes.
pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/tap", get(landing))
        .route("/tap/", get(landing))
        .route("/tap/sync", get(sync_get).post(sync_post))
        .route("/tap/availability", get(availability))
        .route("/tap/capabilities", get(capabilities))
        .route("/tap/tables", get(tables))
        .route("/tap/tables/{name}", get(one_table))
        .route("/tap/replay/{token}", get(replay))
        .route("/tap/replay/{token}/record", get(record))
        .route("/tap/examples", get(crate::examples::page))
        .merge(crate::jobs::routes(app.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(
            usize::try_from(app.config.upload_limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1 << 20),
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::access::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::connections::bound_bodies,
        ))
        .layer(axum::middleware::map_response(server_header))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::access_log::log,
        ))
        .with_state(app)
}

/// Names the software in every response (VOSI clients like to know), and
/// tells browsers to take each response as the type it says it is: text that
/// echoes a request is never run as a page.
async fn server_header(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("ppdb/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

const VOTABLE_MIME: &str = "application/x-votable+xml";

fn xml(body: String) -> Response {
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

impl From<&engine::Error> for Failure {
    fn from(e: &engine::Error) -> Failure {
        let status = match e {
            engine::Error::Embargoed { .. }
            | engine::Error::UnknownToken { .. }
            | engine::Error::ForeignToken { .. } => StatusCode::NOT_FOUND,
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

/// The web page: an ADQL box, the result as a table and a sky plot, the token
/// with its replay link, and the tables to browse.
async fn home(State(app): State<Shared>) -> Response {
    let examples = serde_json::to_string(&app.examples).unwrap_or_else(|_| "[]".into());
    // `</` inside a script would end it.
    let examples = examples.replace("</", "<\\/");
    let page = include_str!("page.html").replacen("/*EXAMPLES*/[]", &examples, 1);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 img-src 'self' data:",
            ),
        ],
        page,
    )
        .into_response()
}

/// The record behind a token, as JSON (the page shows the pinned ADQL and snapshot).
async fn record(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
) -> Response {
    let record = app.engine.record(&token).await.and_then(|r| {
        app.engine.may_replay(&r, caller.privileged())?;
        Ok(r)
    });
    match record.map(|r| serde_json::to_value(&r)) {
        Ok(Ok(mut r)) => {
            // Where the catalog lives is the operator's business.
            if let Some(o) = r.as_object_mut() {
                o.remove("catalog_url");
            }
            (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_string_pretty(&r).unwrap_or_default(),
            )
                .into_response()
        }
        Ok(Err(e)) => Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the record could not be encoded: {e}"),
        }
        .response(),
        Err(e) => {
            let f = Failure::from(&e);
            (
                f.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                f.message,
            )
                .into_response()
        }
    }
}

async fn landing(State(app): State<Shared>) -> Response {
    let base = &app.config.base_url;
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><title>ppdb TAP</title><h1>ppdb TAP service</h1><ul>\
             <li><a href=\"{base}/tap/capabilities\">capabilities</a></li>\
             <li><a href=\"{base}/tap/tables\">tables</a></li>\
             <li><a href=\"{base}/tap/availability\">availability</a></li>\
             <li>sync: {base}/tap/sync?LANG=ADQL&amp;QUERY=...</li></ul>"
        ),
    )
        .into_response()
}

async fn availability() -> Response {
    xml("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <vosi:availability xmlns:vosi=\"http://www.ivoa.net/xml/VOSIAvailability/v1.0\">\
         <vosi:available>true</vosi:available>\
         <vosi:note>accepting queries</vosi:note></vosi:availability>\n"
        .to_string())
}

async fn sync_get(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    sync(app, caller, Params::new(pairs)).await
}

async fn sync_post(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Posted(params): Posted,
) -> Response {
    sync(app, caller, params).await
}

/// The format a request names (`RESPONSEFORMAT`, or the older `FORMAT`).
pub(crate) fn format_of(params: &Params) -> Result<Format, String> {
    let Some(f) = params.get("RESPONSEFORMAT").or(params.get("FORMAT")) else {
        return Ok(Format::Votable);
    };
    let f = f.trim().to_ascii_lowercase();
    let mut pieces = f.split(';').map(str::trim);
    let base = pieces.next().unwrap_or("");
    // `application/x-votable+xml;serialization=TABLEDATA` and friends.
    let serialization = pieces
        .filter_map(|p| p.strip_prefix("serialization="))
        .map(|v| v.trim_matches('"').to_string())
        .next();
    match (base, serialization.as_deref()) {
        ("" | "votable" | "application/x-votable+xml" | "text/xml", None | Some("binary2")) => {
            Ok(Format::Votable)
        }
        ("votable" | "application/x-votable+xml" | "text/xml", Some("tabledata")) => {
            Ok(Format::VotableTd)
        }
        (_, Some(other)) => Err(format!(
            "VOTable serialization {other} is not offered: use BINARY2 (the default) or TABLEDATA"
        )),
        (other, None) => other.parse().map_err(|e: String| e),
    }
}

/// A TAP query request, as `sync` and `async` take it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The ADQL.
    pub adql: String,
    /// Snapshot, MAXREC and format.
    pub options: QueryOptions,
    /// The response format.
    pub format: Format,
}

/// Reads a query request from TAP parameters; the error is for the user.
pub(crate) fn request_of(params: &Params, config: &Config) -> Result<Request, String> {
    if let Some(r) = params.get("REQUEST")
        && !r.eq_ignore_ascii_case("doQuery")
    {
        return Err(format!(
            "REQUEST={r} is not supported: use REQUEST=doQuery (or leave it out)"
        ));
    }
    if let Some(lang) = params.get("LANG")
        && !matches!(
            lang.trim().to_ascii_uppercase().as_str(),
            "ADQL" | "ADQL-2.0" | "ADQL-2.1"
        )
    {
        return Err(format!(
            "LANG={lang} is not supported: this service speaks ADQL (ADQL, ADQL-2.0 or ADQL-2.1)"
        ));
    }
    let Some(adql) = params.get("QUERY").filter(|q| !q.trim().is_empty()) else {
        return Err("QUERY is missing: send the ADQL as QUERY=...".into());
    };
    let format = format_of(params)?;
    let maxrec = match params.get("MAXREC").map(|m| m.trim().parse::<u64>()) {
        None => config.maxrec_default,
        Some(Ok(m)) => m.min(config.maxrec_limit),
        Some(Err(_)) => return Err("MAXREC must be a non-negative integer".into()),
    };
    let as_of = params
        .get("AS_OF")
        .map(|a| engine::as_of(a).map_err(|e| format!("AS_OF: {e}")))
        .transpose()?;
    Ok(Request {
        adql: adql.to_string(),
        options: QueryOptions {
            as_of,
            maxrec: Some(maxrec),
            time_limit: Some(config.max_duration),
            uploads: Vec::new(),
            privileged: false,
            always_plan: false,
        },
        format,
    })
}

async fn sync(app: Shared, caller: Caller, params: Params) -> Response {
    let mut request = match request_of(&params, &app.config) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    request.options.privileged = caller.privileged();
    // Uploads are read (fetched, parsed) with a turn and within the query's
    // time, as the query is: they are its work.
    let permit = match app.limits.admit(&caller.key()) {
        Ok(p) => p.acquire().await,
        Err(busy) => return busy_response(&busy),
    };
    let deadline = Instant::now() + app.config.max_duration;
    if let Some(value) = params.get("UPLOAD") {
        let parts = crate::uploads::Parts::Inline(&params.parts);
        match tokio::time::timeout_at(deadline.into(), crate::uploads::read(&app, value, &parts))
            .await
        {
            Ok(Ok(tables)) => request.options.uploads = tables,
            Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
            Err(_) => return Failure::refused(overdue(&app)).response(),
        }
    }
    match start(&app, &request, deadline).await {
        Ok(result) => stream(app, result, request.format, deadline, permit).await,
        Err(e) => e.response(),
    }
}

/// A 503 that tells the client when to come back.
fn busy_response(message: &str) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// Plans a query, within the request's time; the error is for the user.
pub(crate) async fn start(
    app: &Shared,
    request: &Request,
    deadline: Instant,
) -> Result<QueryResult, Failure> {
    match tokio::time::timeout_at(
        deadline.into(),
        app.engine.query(&request.adql, &request.options),
    )
    .await
    {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(e)) => Err(Failure::from(&e)),
        Err(_) => Err(Failure::refused(overdue(app))),
    }
}

fn overdue(app: &Shared) -> String {
    engine::overdue(app.config.max_duration)
}

async fn replay(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params::new(pairs);
    // An unknown token is a 404 before the request takes a turn.
    if let Err(e) = app.engine.record(&token).await {
        return Failure::from(&e).response();
    }
    // A token names rows, not an encoding: without RESPONSEFORMAT, the service's default.
    let format = match format_of(&params) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let permit = match app.limits.admit(&caller.key()) {
        Ok(p) => p.acquire().await,
        Err(busy) => return busy_response(&busy),
    };
    let deadline = Instant::now() + app.config.max_duration;
    let options = ReplayOptions {
        time_limit: Some(app.config.max_duration),
        privileged: caller.privileged(),
        ..Default::default()
    };
    let replayed =
        tokio::time::timeout_at(deadline.into(), app.engine.replay(&token, &options)).await;
    match replayed {
        Ok(Ok(result)) => stream(app, result, format, deadline, permit).await,
        // The engine refuses an embargoed result to a caller without privilege (403).
        Ok(Err(e)) => Failure::from(&e).response(),
        Err(_) => Failure::refused(overdue(&app)).response(),
    }
}

/// Bytes written by a result writer, handed on in pieces.
#[derive(Clone, Default)]
struct Pending(Arc<Mutex<Vec<u8>>>);

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
) -> Outcome {
    let mut describe = app.engine.describe(&result);
    describe.replay_url = result
        .token
        .as_ref()
        .map(|t| format!("{}/tap/replay/{t}", app.config.base_url));
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
    loop {
        let next = match tokio::time::timeout_at(deadline.into(), result.next_batch()).await {
            Ok(next) => next.map(|r| r.map_err(|e| Failure::from(&e))),
            Err(_) => Some(Err(Failure::refused(engine::overdue(allowed)))),
        };
        let failure = match next {
            Some(Ok(batch)) => match writer.write(&batch) {
                Ok(()) => {
                    rows += batch.num_rows() as u64;
                    let chunk = pending.take();
                    // A client that went away stops the query, and so does one
                    // that stops reading: a send waits no later than the deadline,
                    // or a reader that never reads would hold a slot for ever.
                    if !chunk.is_empty() && !sent(&tx, chunk, deadline).await {
                        return Outcome::Gone;
                    }
                    continue;
                }
                Err(e) => Failure::from(&e),
            },
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
async fn sent(tx: &tokio::sync::mpsc::Sender<Bytes>, bytes: Bytes, deadline: Instant) -> bool {
    matches!(
        tokio::time::timeout_at(deadline.into(), tx.send(bytes)).await,
        Ok(Ok(()))
    )
}

/// Streams a result as the response; the permit is held until the last byte.
///
/// A result that ends within its first [`HELD_BYTES`] (and [`HELD_TIME`]) is
/// held until it does, so that its headers can say how it ended:
/// `X-Query-Status` (`OK`, `OVERFLOW` when MAXREC cut it, `ERROR`) and
/// `X-Query-Rows`. CSV and TSV have no other place for that; a larger result
/// streams at once, and its token record says whether it overflowed.
async fn stream(
    app: Shared,
    result: QueryResult,
    format: Format,
    deadline: Instant,
    permit: Permit,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let token = result.token.clone();
    let encoder = tokio::spawn(async move {
        let _permit = permit;
        let allowed = app.config.max_duration;
        encode(app, result, format, deadline, allowed, tx).await
    });
    let mut held: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    let until = tokio::time::Instant::now() + HELD_TIME;
    let mut ended = false;
    while size < HELD_BYTES {
        match tokio::time::timeout_at(until, rx.recv()).await {
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
    let ending = crate::access_log::Ending::default();
    let ended = ending.clone();
    let rest = futures::stream::unfold(Some((rx, encoder)), move |state| {
        let ended = ended.clone();
        async move {
            let (mut rx, encoder) = state?;
            match rx.recv().await {
                Some(b) => Some((Ok(b), Some((rx, encoder)))),
                None => {
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
    response
}

/// How much of a result is held back to say in its headers how it ended.
const HELD_BYTES: usize = 4 << 20;
/// How long a result is held back at most before it streams.
const HELD_TIME: Duration = Duration::from_secs(2);

/// Escapes text for XML.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn capabilities(State(app): State<Shared>) -> Response {
    let base = &app.config.base_url;
    let retention = app.config.job_lifetime.as_secs();
    let duration = app.config.max_duration.as_secs();
    let upload = app.config.upload_limit;
    let mut udfs = String::new();
    let mut geo = String::new();
    for f in adql::FUNCTIONS {
        if f.udf {
            udfs.push_str(&format!(
                "<feature><form>{}</form><description>{}</description></feature>",
                esc(f.signature),
                esc(f.description)
            ));
        }
    }
    for g in [
        "POINT",
        "CIRCLE",
        "BOX",
        "POLYGON",
        "CONTAINS",
        "INTERSECTS",
        "DISTANCE",
        "AREA",
        "CENTROID",
        "COORD1",
        "COORD2",
        "COORDSYS",
    ] {
        geo.push_str(&format!("<feature><form>{g}</form></feature>"));
    }
    let mut outputs = String::new();
    for f in Format::ALL {
        let Some((mime, id)) = f.advertised() else {
            continue;
        };
        match id {
            Some(id) => outputs.push_str(&format!("<outputFormat ivo-id=\"{id}\">")),
            None => outputs.push_str("<outputFormat>"),
        }
        // The alias is the short name RESPONSEFORMAT takes (`votable/td` reads as well).
        let alias = if f == Format::VotableTd {
            "votable/td"
        } else {
            f.name()
        };
        outputs.push_str(&format!(
            "<mime>{mime}</mime><alias>{alias}</alias></outputFormat>"
        ));
    }
    // VOResource lets a capability describe itself: what the embargo hides from whom.
    let embargo = match (app.engine.embargo(), app.engine.embargo().cutoff()) {
        (_, None) => String::new(),
        (engine::Embargo::Window(w), Some(cutoff)) => format!(
            "<description>Embargo: rows observed in the last {} hours (now: after MJD {cutoff:.6}, \
             TAI) are visible only to callers with a bearer token; every result says which \
             cutoff it was read under (INFO embargo_cutoff_mjd_tai).</description>",
            w.as_secs_f64() / 3600.0
        ),
        (_, Some(cutoff)) => format!(
            "<description>Embargo: rows observed after MJD {cutoff:.6} (TAI) are visible only to \
             callers with a bearer token; every result says which cutoff it was read under \
             (INFO embargo_cutoff_mjd_tai).</description>"
        ),
    };
    let vosi = |id: &str, path: &str| {
        format!(
            "<capability standardID=\"ivo://ivoa.net/std/VOSI#{id}\">\
             <interface xsi:type=\"vs:ParamHTTP\"><accessURL use=\"full\">{base}/tap/{path}</accessURL></interface>\
             </capability>"
        )
    };
    xml(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <vosi:capabilities xmlns:vosi=\"http://www.ivoa.net/xml/VOSICapabilities/v1.0\" \
         xmlns:vr=\"http://www.ivoa.net/xml/VOResource/v1.0\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\" \
         xmlns:tr=\"http://www.ivoa.net/xml/TAPRegExt/v1.0\">\n\
         <capability standardID=\"ivo://ivoa.net/std/TAP\" xsi:type=\"tr:TableAccess\">{embargo}\
         <interface xsi:type=\"vs:ParamHTTP\" role=\"std\" version=\"1.1\"><accessURL use=\"base\">{base}/tap</accessURL></interface>\
         <language><name>ADQL</name>\
         <version ivo-id=\"ivo://ivoa.net/std/ADQL#v2.1\">2.1</version>\
         <version ivo-id=\"ivo://ivoa.net/std/ADQL#v2.0\">2.0</version>\
         <description>ADQL 2.1; FOR SYSTEM_TIME AS OF reads an earlier snapshot</description>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-udf\">{udfs}</languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adqlgeo\">{geo}</languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-string\">\
         <feature><form>LOWER</form></feature><feature><form>UPPER</form></feature><feature><form>ILIKE</form></feature></languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-sets\">\
         <feature><form>UNION</form></feature><feature><form>EXCEPT</form></feature><feature><form>INTERSECT</form></feature></languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-common-table\">\
         <feature><form>WITH</form></feature></languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-type\">\
         <feature><form>CAST</form></feature></languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-unit\">\
         <feature><form>IN_UNIT</form></feature></languageFeatures>\
         <languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-adql-offset\">\
         <feature><form>OFFSET</form></feature></languageFeatures>\
         </language>\
         {outputs}\
         <uploadMethod ivo-id=\"ivo://ivoa.net/std/TAPRegExt#upload-inline\"/>\
         <uploadMethod ivo-id=\"ivo://ivoa.net/std/TAPRegExt#upload-http\"/>\
         <uploadMethod ivo-id=\"ivo://ivoa.net/std/TAPRegExt#upload-https\"/>\
         <retentionPeriod><default>{retention}</default><hard>{retention}</hard></retentionPeriod>\
         <executionDuration><default>{duration}</default><hard>{duration}</hard></executionDuration>\
         <outputLimit><default unit=\"row\">{}</default><hard unit=\"row\">{}</hard></outputLimit>\
         <uploadLimit><hard unit=\"byte\">{upload}</hard></uploadLimit>\
         </capability>\n{}\n{}\n{}\n\
         <capability standardID=\"ivo://ivoa.net/std/DALI#examples\">\
         <interface xsi:type=\"vr:WebBrowser\"><accessURL use=\"full\">{base}/tap/examples</accessURL></interface>\
         </capability>\n</vosi:capabilities>\n",
        app.config.maxrec_default,
        app.config.maxrec_limit,
        vosi("capabilities", "capabilities"),
        vosi("availability", "availability"),
        vosi("tables", "tables"),
    ))
}

/// Rows of a TAP_SCHEMA query as strings (empty for NULL).
async fn rows(engine: &Engine, adql: &str) -> Result<Vec<Vec<String>>, engine::Error> {
    let (batches, _) = engine
        .query_unpinned(adql, &QueryOptions::default())
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    let opts = arrow::util::display::FormatOptions::default();
    for b in &batches {
        let fmts: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()?;
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .zip(&fmts)
                    .map(|(c, f)| {
                        if c.is_null(r) {
                            String::new()
                        } else {
                            f.value(r).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// VOSI tables (all of them; `detail=min` leaves out the columns). `tables=a,b`
/// keeps only those tables, still as a tableset: astroquery's `load_table`
/// asks so, and takes the first table it is given.
async fn tables(
    State(app): State<Shared>,
    headers: axum::http::HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params::new(pairs);
    let min = params
        .get("DETAIL")
        .is_some_and(|d| d.eq_ignore_ascii_case("min"));
    let pick: Option<Vec<String>> = params
        .get("TABLES")
        .map(|t| t.split(',').map(|n| n.trim().to_string()).collect());
    tableset(&app, Shape::Set(pick), min, esa_flags(&headers)).await
}

/// VOSI 1.1: one table, with its columns.
async fn one_table(
    State(app): State<Shared>,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
) -> Response {
    tableset(&app, Shape::One(name), false, esa_flags(&headers)).await
}

/// Whether the client may be astroquery, whose table parser (written for ESA's
/// archives) reads an `esatapplus:flags` attribute on every column and fails
/// without it. The VODataService schema the IVOA's validator holds does not
/// allow the attribute, so it goes only to astroquery, which names itself on
/// POSTs and sends its GETs with no `User-Agent` at all (browsers, pyvo, curl
/// and STILTS all send one).
fn esa_flags(headers: &axum::http::HeaderMap) -> bool {
    match headers.get(header::USER_AGENT).map(|v| v.to_str()) {
        None => true,
        Some(ua) => ua.is_ok_and(|ua| ua.starts_with("astroquery/")),
    }
}

/// Which VOSI tables document to write.
enum Shape {
    /// A `vosi:tableset`, of these tables only when given.
    Set(Option<Vec<String>>),
    /// A `vosi:table` document of one table.
    One(String),
}

/// VOSI tables, from TAP_SCHEMA itself so the two always agree.
async fn tableset(app: &Shared, shape: Shape, min: bool, esa: bool) -> Response {
    let (only, pick) = match &shape {
        Shape::One(name) => (Some(name.as_str()), None),
        Shape::Set(pick) => (None, pick.as_deref()),
    };
    let e = &app.engine;
    let (schemas, tables, columns) = match (
        rows(
            e,
            "SELECT schema_name, description FROM TAP_SCHEMA.schemas ORDER BY schema_index",
        )
        .await,
        rows(
            e,
            "SELECT schema_name, table_name, description FROM TAP_SCHEMA.tables ORDER BY table_index",
        )
        .await,
        rows(
            e,
            "SELECT table_name, column_name, description, unit, ucd, datatype, arraysize, xtype, principal, indexed, std \
             FROM TAP_SCHEMA.columns ORDER BY table_name, column_index",
        )
        .await,
    ) {
        (Ok(s), Ok(t), Ok(c)) => (s, t, c),
        (Err(x), _, _) | (_, Err(x), _) | (_, _, Err(x)) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, &x.message());
        }
    };
    let keys = match rows(
        e,
        "SELECT k.from_table, k.target_table, k.description, c.from_column, c.target_column \
         FROM TAP_SCHEMA.keys AS k JOIN TAP_SCHEMA.key_columns AS c ON c.key_id = k.key_id \
         ORDER BY k.key_id",
    )
    .await
    {
        Ok(k) => k,
        Err(x) => return error(StatusCode::INTERNAL_SERVER_ERROR, &x.message()),
    };
    let namespaces = format!(
        "xmlns:vosi=\"http://www.ivoa.net/xml/VOSITables/v1.0\" \
         xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"{}",
        if esa {
            " xmlns:esatapplus=\"http://esa.int/xml/EsaTapPlus\""
        } else {
            ""
        }
    );
    // 0: the column plays none of the roles (ra, dec, flux, ...) ESA's flags mark.
    let column_tag = if esa {
        "<column esatapplus:flags=\"0\">"
    } else {
        "<column>"
    };
    let wanted: Vec<&str> = only
        .into_iter()
        .chain(pick.into_iter().flatten().map(String::as_str))
        .collect();
    if let Some(name) = wanted.iter().find(|n| !tables.iter().any(|t| t[1] == **n)) {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no table {name}: /tap/tables lists them"),
        )
            .into_response();
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if only.is_none() {
        out.push_str(&format!("<vosi:tableset {namespaces}>\n"));
    }
    for s in &schemas {
        let shown = |t: &&Vec<String>| {
            t[0] == s[0] && (wanted.is_empty() || wanted.contains(&t[1].as_str()))
        };
        if only.is_none() && pick.is_some() && !tables.iter().any(|t| shown(&t)) {
            continue;
        }
        if only.is_none() {
            out.push_str(&format!(
                "<schema><name>{}</name><description>{}</description>\n",
                esc(&s[0]),
                esc(&s[1])
            ));
        }
        for t in tables.iter().filter(shown) {
            if only.is_some() {
                out.push_str(&format!("<vosi:table {namespaces} type=\"table\">"));
            } else {
                out.push_str("<table type=\"table\">");
            }
            out.push_str(&format!(
                "<name>{}</name><description>{}</description>\n",
                esc(&t[1]),
                esc(&t[2])
            ));
            for c in columns.iter().filter(|c| c[0] == t[1] && !min) {
                out.push_str(&format!("{column_tag}<name>{}</name>", esc(&c[1])));
                if !c[2].is_empty() {
                    out.push_str(&format!("<description>{}</description>", esc(&c[2])));
                }
                if !c[3].is_empty() {
                    out.push_str(&format!("<unit>{}</unit>", esc(&c[3])));
                }
                if !c[4].is_empty() {
                    out.push_str(&format!("<ucd>{}</ucd>", esc(&c[4])));
                }
                out.push_str(&format!(
                    "<dataType xsi:type=\"vs:VOTableType\"{}{}>{}</dataType>",
                    if c[6].is_empty() {
                        String::new()
                    } else {
                        format!(" arraysize=\"{}\"", esc(&c[6]))
                    },
                    if c[7].is_empty() {
                        String::new()
                    } else {
                        format!(" extendedType=\"{}\"", esc(&c[7]))
                    },
                    esc(&c[5])
                ));
                for (flag, value) in [("indexed", &c[9]), ("principal", &c[8]), ("std", &c[10])] {
                    if value == "1" {
                        out.push_str(&format!("<flag>{flag}</flag>"));
                    }
                }
                out.push_str("</column>\n");
            }
            for k in keys.iter().filter(|k| k[0] == t[1] && !min) {
                // astroquery takes any <description> for the table's own, so the
                // last key's would replace it: it gets keys without theirs.
                let description = if esa {
                    String::new()
                } else {
                    format!("<description>{}</description>", esc(&k[2]))
                };
                out.push_str(&format!(
                    "<foreignKey><targetTable>{}</targetTable><fkColumn><fromColumn>{}</fromColumn>\
                     <targetColumn>{}</targetColumn></fkColumn>{description}</foreignKey>\n",
                    esc(&k[1]),
                    esc(&k[3]),
                    esc(&k[4]),
                ));
            }
            out.push_str(if only.is_some() {
                "</vosi:table>\n"
            } else {
                "</table>\n"
            });
        }
        if only.is_none() {
            out.push_str("</schema>\n");
        }
    }
    if only.is_none() {
        out.push_str("</vosi:tableset>\n");
    }
    xml(out)
}
