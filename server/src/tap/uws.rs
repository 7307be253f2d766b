//! TAP `async`: UWS 1.1 jobs, kept in the state store.
//!
//! A job is `jobs/{id}/job.json` (its phase, times and parameters) and, once it
//! completes, `jobs/{id}/result` (the encoded result). Keeping both in the state
//! store, not in the process, means jobs survive a restart and any server that
//! shares the store answers for them. A job whose runner died (the process
//! stopped) is seen as such once its execution duration has passed, and is
//! reported as an error rather than left executing forever.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::app::Shared;
use crate::tap::auth::Caller;
use crate::tap::failure::{Failure, error, esc};
use crate::tap::params::{Params, Posted};
use crate::tap::stream::{Outcome, encode};
use crate::tap::sync::{request_of, start};

/// A job's phase (UWS 1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// Created, not asked to run.
    Pending,
    /// Waiting for a turn.
    Queued,
    /// Running.
    Executing,
    /// Finished; the result is ready.
    Completed,
    /// Failed; the error says why.
    Error,
    /// Stopped by its owner.
    Aborted,
    /// Its result is gone.
    Archived,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Pending => "PENDING",
            Phase::Queued => "QUEUED",
            Phase::Executing => "EXECUTING",
            Phase::Completed => "COMPLETED",
            Phase::Error => "ERROR",
            Phase::Aborted => "ABORTED",
            Phase::Archived => "ARCHIVED",
        }
    }

    fn parse(s: &str) -> Option<Phase> {
        [
            Phase::Pending,
            Phase::Queued,
            Phase::Executing,
            Phase::Completed,
            Phase::Error,
            Phase::Aborted,
            Phase::Archived,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether the job may still change phase by itself (WAIT blocks on these).
    fn active(self) -> bool {
        matches!(self, Phase::Pending | Phase::Queued | Phase::Executing)
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    id: String,
    run_id: Option<String>,
    owner: Option<String>,
    phase: Phase,
    created: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
    ended: Option<DateTime<Utc>>,
    /// Seconds the job may run.
    execution_duration: u64,
    destruction: DateTime<Utc>,
    /// Parameters as sent, names as the client spelled them.
    parameters: Vec<(String, String)>,
    error: Option<String>,
    /// The media type of the stored result.
    result_type: Option<String>,
    rows: Option<u64>,
    /// Bytes of the stored result.
    size: Option<u64>,
    token: Option<String>,
}

impl Job {
    fn params(&self) -> Params {
        Params::new(self.parameters.clone())
    }

    fn set_parameters(&mut self, pairs: Vec<(String, String)>) {
        for (k, v) in pairs {
            match self
                .parameters
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(&k))
            {
                Some(slot) => slot.1 = v,
                None => self.parameters.push((k, v)),
            }
        }
    }
}

/// Jobs running in this process, and a signal for every change of phase.
#[derive(Default)]
pub struct Jobs {
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    changed: Notify,
    // One writer of job records at a time in this process: phase changes are
    // read-modify-write, and an abort must not be overwritten by a completion.
    write: tokio::sync::Mutex<()>,
    // When each caller created its jobs of the last hour (in this process).
    created: Mutex<HashMap<String, std::collections::VecDeque<Instant>>>,
}

impl Jobs {
    /// Counts a new job of `caller`; an error once it made its hour's worth
    /// (`most`): 500 jobs of 4 MiB each filled 1.1 GB of the state store in a
    /// minute, each kept for the job lifetime.
    fn count(&self, caller: &str, most: usize) -> Result<(), String> {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        created.retain(|_, times| {
            while times.front().is_some_and(|t| now.duration_since(*t) > hour) {
                times.pop_front();
            }
            !times.is_empty()
        });
        let times = created.entry(caller.to_string()).or_default();
        if times.len() >= most {
            return Err(format!(
                "you created {most} jobs in the last hour, the most one caller may; \
                 delete finished ones or run queries synchronously"
            ));
        }
        times.push_back(now);
        Ok(())
    }
}

/// The routes under `/tap/async`.
pub fn routes(app: Shared) -> Router<Shared> {
    let one_job = Router::new()
        .route("/tap/async/{id}", get(show).post(post_job).delete(delete))
        .route("/tap/async/{id}/phase", get(phase).post(post_phase))
        .route(
            "/tap/async/{id}/executionduration",
            get(duration).post(post_duration),
        )
        .route(
            "/tap/async/{id}/destruction",
            get(destruction).post(post_destruction),
        )
        .route("/tap/async/{id}/quote", get(quote))
        .route("/tap/async/{id}/error", get(error_doc))
        .route("/tap/async/{id}/results", get(results))
        .route("/tap/async/{id}/results/result", get(result))
        .route(
            "/tap/async/{id}/parameters",
            get(parameters).post(post_parameters),
        )
        .route("/tap/async/{id}/owner", get(owner))
        .route_layer(axum::middleware::from_fn_with_state(app, owner_only));
    Router::new()
        .route("/tap/async", get(list).post(create))
        .merge(one_job)
}

/// Lets only a job's owner reach it (a job without an owner is anyone's: it
/// was made anonymously, and its result holds no embargoed row).
///
/// The id is the one the handlers see, decoded from the path: checking the raw
/// path let `/tap/async/%61…` through to the job `a…`. An id that is not a
/// job id never reaches a handler.
async fn owner_only(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    axum::extract::Path(id): axum::extract::Path<String>,
    request: Request,
    next: Next,
) -> Response {
    if !valid_id(&id) {
        return text(StatusCode::NOT_FOUND, "no such job\n".into());
    }
    match load(&app, &id).await {
        Ok(Some(job)) if job.owner.is_some() && job.owner != caller.owner() => text(
            StatusCode::FORBIDDEN,
            format!(
                "job {id} belongs to another user: send its owner's bearer token \
                 (Authorization: Bearer ...)\n"
            ),
        ),
        Err(e) => store_failure(e),
        _ => next.run(request).await,
    }
}

fn key(id: &str) -> String {
    format!("jobs/{id}/job.json")
}

/// Where a user's jobs are listed: a marker per job under the user's name
/// (hex, since a name may hold `@`), so that listing them reads only theirs.
fn owned_prefix(owner: &str) -> String {
    let hex: String = owner.bytes().map(|b| format!("{b:02x}")).collect();
    format!("owners/{hex}")
}

fn owned_key(owner: &str, id: &str) -> String {
    format!("{}/{id}", owned_prefix(owner))
}

fn result_key(id: &str) -> String {
    format!("jobs/{id}/result")
}

/// Job ids are random UUIDs; anything else is refused before it touches the store.
fn valid_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn not_found(id: &str) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("no job {id}: it never existed, was deleted, or passed its destruction time\n"),
    )
}

fn see_other(url: String) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn job_url(app: &Shared, id: &str) -> String {
    format!("{}/tap/async/{id}", app.config.base_url)
}

fn store_failure(e: engine::Error) -> Response {
    let f = Failure::from(&e);
    text(f.status, format!("the job store failed: {}\n", f.message))
}

/// Reads a job, deleting it if its destruction time has passed, and noticing a
/// runner that died (past its execution duration with no end).
async fn load(app: &Shared, id: &str) -> Result<Option<Job>, engine::Error> {
    if !valid_id(id) {
        return Ok(None);
    }
    let Some(bytes) = app.engine.state().read(&key(id)).await? else {
        return Ok(None);
    };
    let mut job: Job = serde_json::from_slice(&bytes).map_err(|e| engine::Error::State {
        message: format!("job {id} is unreadable: {e}"),
    })?;
    let now = Utc::now();
    if job.destruction <= now {
        destroy(app, id).await?;
        return Ok(None);
    }
    let local = app.jobs.running.lock().is_ok_and(|r| r.contains_key(id));
    if job.phase == Phase::Executing
        && !local
        && let Some(started) = job.started
        && now > started + chrono::Duration::seconds(job.execution_duration as i64 + 30)
    {
        job = update(app, id, |j| {
            if j.phase == Phase::Executing {
                j.phase = Phase::Error;
                j.ended = Some(Utc::now());
                j.error = Some(
                    "the job's runner stopped (the server was restarted) before it finished; \
                     run it again"
                        .into(),
                );
            }
        })
        .await?
        .unwrap_or(job);
    }
    Ok(Some(job))
}

async fn save(app: &Shared, job: &Job) -> Result<(), engine::Error> {
    let body = serde_json::to_vec_pretty(job).map_err(|e| engine::Error::State {
        message: format!("cannot encode job {}: {e}", job.id),
    })?;
    app.engine
        .state()
        .write(&key(&job.id), Bytes::from(body))
        .await?;
    app.jobs.changed.notify_waiters();
    Ok(())
}

/// Changes a stored job; `None` if it is gone.
async fn update(
    app: &Shared,
    id: &str,
    change: impl FnOnce(&mut Job),
) -> Result<Option<Job>, engine::Error> {
    let _guard = app.jobs.write.lock().await;
    let Some(bytes) = app.engine.state().read(&key(id)).await? else {
        return Ok(None);
    };
    let mut job: Job = serde_json::from_slice(&bytes).map_err(|e| engine::Error::State {
        message: format!("job {id} is unreadable: {e}"),
    })?;
    change(&mut job);
    save(app, &job).await?;
    Ok(Some(job))
}

async fn destroy(app: &Shared, id: &str) -> Result<(), engine::Error> {
    if let Ok(mut running) = app.jobs.running.lock()
        && let Some(handle) = running.remove(id)
    {
        handle.abort();
    }
    let _guard = app.jobs.write.lock().await;
    app.engine.state().remove_all(&format!("jobs/{id}")).await?;
    app.jobs.changed.notify_waiters();
    Ok(())
}

/// Deletes every job past its destruction time (run now and then by the server).
pub async fn sweep(app: &Shared) -> Result<usize, engine::Error> {
    let mut gone = 0;
    for id in app.engine.state().children("jobs").await? {
        if valid_id(&id) && load(app, &id).await?.is_none() {
            gone += 1;
        }
    }
    Ok(gone)
}

/// `POST /tap/async`: a new job, PENDING (or started at once with `PHASE=RUN`).
async fn create(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Posted(params): Posted,
) -> Response {
    if let Err(e) = app.jobs.count(&caller.key(), app.config.jobs_per_hour) {
        let mut r = text(StatusCode::TOO_MANY_REQUESTS, format!("{e}\n"));
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("600"));
        return r;
    }
    let now = Utc::now();
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    let run = params
        .get("PHASE")
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("RUN"));
    let mut job = Job {
        id: id.clone(),
        run_id: params.get("RUNID").map(str::to_string),
        owner: caller.owner(),
        phase: Phase::Pending,
        created: now,
        started: None,
        ended: None,
        execution_duration: app.config.max_duration.as_secs(),
        destruction: now + app.config.job_lifetime,
        parameters: Vec::new(),
        error: None,
        result_type: None,
        rows: None,
        size: None,
        token: None,
    };
    job.set_parameters(uws_free(params.pairs()));
    if let Some(d) = params.get("EXECUTIONDURATION")
        && let Ok(d) = d.trim().parse::<i64>()
    {
        job.execution_duration = clamp_duration(&app, d);
    }
    if let Some(d) = params.get("DESTRUCTION")
        && let Some(d) = parse_time(d)
    {
        job.destruction = d.min(now + app.config.job_lifetime);
    }
    if let Err(r) = keep_parts(&app, &id, &params).await {
        return r;
    }
    if let Some(owner) = &job.owner
        && let Err(e) = app
            .engine
            .state()
            .write(&owned_key(owner, &id), Bytes::new())
            .await
    {
        let _ = app.engine.state().remove_all(&format!("jobs/{id}")).await;
        return store_failure(e);
    }
    if let Err(e) = save(&app, &job).await {
        let _ = app.engine.state().remove_all(&format!("jobs/{id}")).await;
        return store_failure(e);
    }
    if run && let Err(r) = run_job(&app, &id, &caller.key()).await {
        return r;
    }
    see_other(job_url(&app, &id))
}

/// Stores the parts of a multipart request with the job, for its `UPLOAD`.
///
/// Every part is checked before any is written, and a write that fails takes
/// the others with it: a refused job leaves nothing behind in the store.
async fn keep_parts(app: &Shared, id: &str, params: &Params) -> Result<(), Response> {
    let mut total = 0u64;
    let mut named = Vec::with_capacity(params.parts.len());
    for (name, bytes) in &params.parts {
        total += bytes.len() as u64;
        if total > app.config.upload_limit {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{}\n", crate::tap::uploads::too_big(app, name)),
            ));
        }
        let source = format!("param:{name}");
        let Some(part) = crate::tap::uploads::part_name(&source) else {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!("'{name}' cannot name an uploaded part: use letters, digits, _ - .\n"),
            ));
        };
        named.push((part.to_string(), bytes));
    }
    for (part, bytes) in named {
        let written = app
            .engine
            .state()
            .write(&format!("jobs/{id}/parts/{part}"), bytes.clone())
            .await;
        if let Err(e) = written {
            let _ = app.engine.state().remove_all(&format!("jobs/{id}")).await;
            return Err(store_failure(e));
        }
    }
    Ok(())
}

/// The parameters a job keeps: not the UWS control parameters.
fn uws_free(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .filter(|(k, _)| {
            ![
                "PHASE",
                "RUNID",
                "EXECUTIONDURATION",
                "DESTRUCTION",
                "ACTION",
            ]
            .iter()
            .any(|c| c.eq_ignore_ascii_case(k))
        })
        .collect()
}

fn clamp_duration(app: &Shared, seconds: i64) -> u64 {
    let max = app.config.max_duration.as_secs();
    // UWS: zero or less means no limit; ours is the server's maximum.
    if seconds <= 0 {
        max
    } else {
        (seconds as u64).min(max)
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = s.trim_end_matches('Z');
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(naive, f) {
            return Some(t.and_utc());
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(naive, f) {
            return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        }
    }
    None
}

fn started_key(id: &str) -> String {
    format!("jobs/{id}/started")
}

/// Starts a PENDING job: QUEUED until a turn comes, then EXECUTING.
///
/// Exactly one request starts a job, however many ask at once and on however
/// many replicas: the one that creates the job's `started` marker (a write
/// that fails if the object exists). Reading the phase first let two
/// concurrent `PHASE=RUN` both see PENDING and run the query twice.
async fn run_job(app: &Shared, id: &str, caller: &str) -> Result<(), Response> {
    let first = app
        .engine
        .state()
        .create(&started_key(id), Bytes::from_static(b"started\n"))
        .await
        .map_err(store_failure)?;
    if !first {
        return Ok(());
    }
    let ticket = match app.limits.admit(caller) {
        Ok(t) => Some(t),
        Err(busy) => {
            update(app, id, |j| {
                if j.phase == Phase::Pending {
                    j.phase = Phase::Error;
                    j.ended = Some(Utc::now());
                    j.error = Some(busy.clone());
                }
            })
            .await
            .map_err(store_failure)?;
            None
        }
    };
    let Some(ticket) = ticket else {
        return Ok(());
    };
    let queued = update(app, id, |j| {
        if j.phase == Phase::Pending {
            j.phase = Phase::Queued;
        }
    })
    .await
    .map_err(store_failure)?;
    if queued.is_none_or(|j| j.phase != Phase::Queued) {
        return Ok(());
    }
    let task_app = app.clone();
    let task_id = id.to_string();
    // Registered before the task can finish, so that it is never left behind.
    let mut running = app.jobs.running.lock().map_err(|_| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "job table poisoned\n".into(),
        )
    })?;
    let handle = tokio::spawn(async move {
        let permit = ticket.acquire().await;
        execute(&task_app, &task_id).await;
        drop(permit);
        if let Ok(mut r) = task_app.jobs.running.lock() {
            r.remove(&task_id);
        }
        task_app.jobs.changed.notify_waiters();
    });
    running.insert(id.to_string(), handle.abort_handle());
    Ok(())
}

/// Runs a job's query and stores its result; the phase says how it ended.
async fn execute(app: &Shared, id: &str) {
    let Ok(Some(job)) = update(app, id, |j| {
        if j.phase == Phase::Queued {
            j.phase = Phase::Executing;
            j.started = Some(Utc::now());
        }
    })
    .await
    else {
        return;
    };
    if job.phase != Phase::Executing {
        return;
    }
    let finish = |outcome: Result<(u64, u64, Option<String>, &'static str), String>| {
        let app = app.clone();
        let id = id.to_string();
        async move {
            let _ = update(&app, &id, |j| {
                // An abort (or a deletion) while running wins over the outcome.
                if j.phase != Phase::Executing {
                    return;
                }
                j.ended = Some(Utc::now());
                match outcome {
                    Ok((rows, size, token, media)) => {
                        j.phase = Phase::Completed;
                        j.rows = Some(rows);
                        j.size = Some(size);
                        j.token = token;
                        j.result_type = Some(media.to_string());
                    }
                    Err(message) => {
                        j.phase = Phase::Error;
                        j.error = Some(message);
                    }
                }
            })
            .await;
        }
    };
    let mut request = match request_of(&job.params(), &app.config) {
        Ok(r) => r,
        Err(e) => return finish(Err(e)).await,
    };
    let allowed = Duration::from_secs(job.execution_duration);
    request.options.time_limit = Some(allowed);
    // A job runs with its owner's privilege, as long as the owner is still known.
    request.options.privileged = job.owner.as_deref().is_some_and(|o| app.users.knows(o));
    let deadline = Instant::now() + allowed;
    if let Some(value) = job.params().get("UPLOAD") {
        let parts = crate::tap::uploads::Parts::Job(id);
        match tokio::time::timeout_at(
            deadline.into(),
            crate::tap::uploads::read(app, value, &parts),
        )
        .await
        {
            Ok(Ok(tables)) => request.options.uploads = tables,
            Ok(Err(e)) => return finish(Err(e)).await,
            Err(_) => return finish(Err(engine::overdue(allowed))).await,
        }
    }
    let result = match start(app, &request, deadline).await {
        Ok(r) => r,
        Err(e) => return finish(Err(e.message)).await,
    };
    let token = result.token.clone();
    let mut writer = match app.engine.state().writer(&result_key(id)) {
        Ok(w) => w,
        Err(e) => return finish(Err(Failure::from(&e).message)).await,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    // Encoding runs inside this task, not beside it: aborting or deleting the
    // job drops the query's stream with the task, which stops the query, and
    // the task holds its slot until then.
    let encoder = encode(app.clone(), result, request.format, deadline, allowed, tx);
    let store = async {
        let mut stored = Ok(());
        let mut size = 0u64;
        while let Some(chunk) = rx.recv().await {
            size += chunk.len() as u64;
            if stored.is_ok() {
                stored = writer.put(chunk).await;
            }
        }
        (stored, size)
    };
    let (outcome, (stored, size)) = tokio::join!(encoder, store);
    let stored = match stored {
        Ok(()) => writer.finish().await,
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    };
    let media = request.format.media_type();
    match (outcome, stored) {
        (_, Err(e)) => {
            let message = Failure::from(&e).message;
            finish(Err(format!("storing the result failed: {message}"))).await
        }
        (Outcome::Done { rows, .. }, Ok(())) => finish(Ok((rows, size, token, media))).await,
        (Outcome::Failed(failure), Ok(())) => finish(Err(failure.message)).await,
        (Outcome::Gone, Ok(())) => finish(Err("the result was abandoned".into())).await,
    }
}

/// `GET /tap/async`: the job list, with UWS 1.1 `PHASE`, `AFTER` and `LAST` filters.
async fn list(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let mut phases = Vec::new();
    let mut after = None;
    let mut last = None;
    for (k, v) in &pairs {
        match k.to_ascii_uppercase().as_str() {
            "PHASE" => match Phase::parse(v) {
                Some(p) => phases.push(p),
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("PHASE={v} is not a UWS phase\n"),
                    );
                }
            },
            "AFTER" => match parse_time(v) {
                Some(t) => after = Some(t),
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("AFTER={v} is not an ISO-8601 time\n"),
                    );
                }
            },
            "LAST" => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => last = Some(n),
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("LAST={v} must be a positive integer\n"),
                    );
                }
            },
            _ => {}
        }
    }
    // Each caller lists its own jobs. Anonymous callers cannot be told apart,
    // so they are listed none (and nothing is read for them): an anonymous
    // job's id, unguessable, is known only to whoever made it, and is what
    // reaches the job.
    // A user's jobs are found through the markers under their name: the job
    // list reads their documents only, never every job's.
    let ids = match caller.owner() {
        None => Vec::new(),
        Some(owner) => match app.engine.state().children(&owned_prefix(&owner)).await {
            Ok(ids) => ids,
            Err(e) => return store_failure(e),
        },
    };
    let mut jobs = Vec::new();
    for id in ids {
        match load(&app, &id).await {
            Ok(Some(j)) => jobs.push(j),
            // Deleted or expired: its marker goes too.
            Ok(None) => {
                if let Some(owner) = caller.owner() {
                    let _ = app.engine.state().remove_all(&owned_key(&owner, &id)).await;
                }
            }
            Err(e) => return store_failure(e),
        }
    }
    jobs.retain(|j| j.owner.is_some() && j.owner == caller.owner());
    jobs.retain(|j| {
        let phase_ok = if phases.is_empty() {
            // UWS 1.1: archived jobs are listed only when asked for.
            j.phase != Phase::Archived
        } else {
            phases.contains(&j.phase)
        };
        phase_ok && after.is_none_or(|a| j.created > a)
    });
    if let Some(n) = last {
        // LAST: the most recent n, newest first.
        jobs.sort_by_key(|j| std::cmp::Reverse(j.created));
        jobs.truncate(n);
    } else {
        jobs.sort_by_key(|j| j.created);
    }
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <uws:jobs xmlns:uws=\"http://www.ivoa.net/xml/UWS/v1.0\" \
         xmlns:xlink=\"http://www.w3.org/1999/xlink\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" version=\"1.1\">\n",
    );
    for j in &jobs {
        out.push_str(&format!(
            "<uws:jobref id=\"{}\" xlink:href=\"{}\"><uws:phase>{}</uws:phase>",
            j.id,
            esc(&job_url(&app, &j.id)),
            j.phase.name()
        ));
        if let Some(r) = &j.run_id {
            out.push_str(&format!("<uws:runId>{}</uws:runId>", esc(r)));
        }
        out.push_str(&owner_xml(j));
        out.push_str(&format!(
            "<uws:creationTime>{}</uws:creationTime></uws:jobref>\n",
            time(&j.created)
        ));
    }
    out.push_str("</uws:jobs>\n");
    xml(out)
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

fn owner_xml(job: &Job) -> String {
    match &job.owner {
        Some(o) => format!("<uws:ownerId>{}</uws:ownerId>", esc(o)),
        None => "<uws:ownerId xsi:nil=\"true\"/>".into(),
    }
}

fn nil_or_time(name: &str, t: &Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!("<uws:{name}>{}</uws:{name}>", time(t)),
        None => format!("<uws:{name} xsi:nil=\"true\"/>"),
    }
}

/// The quote: when the job will have finished at the latest.
fn quote_of(job: &Job) -> DateTime<Utc> {
    let from = job.started.unwrap_or_else(Utc::now);
    job.ended
        .unwrap_or(from + chrono::Duration::seconds(job.execution_duration as i64))
}

fn job_xml(app: &Shared, job: &Job) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <uws:job xmlns:uws=\"http://www.ivoa.net/xml/UWS/v1.0\" \
         xmlns:xlink=\"http://www.w3.org/1999/xlink\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" version=\"1.1\">\n",
    );
    out.push_str(&format!("<uws:jobId>{}</uws:jobId>\n", job.id));
    if let Some(r) = &job.run_id {
        out.push_str(&format!("<uws:runId>{}</uws:runId>\n", esc(r)));
    }
    out.push_str(&owner_xml(job));
    out.push_str(&format!("\n<uws:phase>{}</uws:phase>\n", job.phase.name()));
    out.push_str(&format!(
        "<uws:quote>{}</uws:quote>\n",
        time(&quote_of(job))
    ));
    out.push_str(&format!(
        "<uws:creationTime>{}</uws:creationTime>\n",
        time(&job.created)
    ));
    out.push_str(&nil_or_time("startTime", &job.started));
    out.push_str(&nil_or_time("endTime", &job.ended));
    out.push_str(&format!(
        "\n<uws:executionDuration>{}</uws:executionDuration>\n<uws:destruction>{}</uws:destruction>\n",
        job.execution_duration,
        time(&job.destruction)
    ));
    out.push_str(&parameters_xml(job, false));
    out.push_str(&results_xml(app, job, false));
    if let Some(e) = &job.error {
        out.push_str(&format!(
            "<uws:errorSummary type=\"fatal\" hasDetail=\"true\"><uws:message>{}</uws:message></uws:errorSummary>\n",
            esc(e)
        ));
    }
    if let Some(t) = &job.token {
        out.push_str(&format!(
            "<uws:jobInfo><token>{t}</token><replay>{}/tap/replay/{t}</replay></uws:jobInfo>\n",
            esc(&app.config.base_url)
        ));
    }
    out.push_str("</uws:job>\n");
    out
}

fn parameters_xml(job: &Job, alone: bool) -> String {
    let mut out = String::new();
    if alone {
        out.push_str(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <uws:parameters xmlns:uws=\"http://www.ivoa.net/xml/UWS/v1.0\">\n",
        );
    } else {
        out.push_str("<uws:parameters>\n");
    }
    for (k, v) in &job.parameters {
        out.push_str(&format!(
            "<uws:parameter id=\"{}\">{}</uws:parameter>\n",
            esc(k),
            esc(v)
        ));
    }
    out.push_str("</uws:parameters>\n");
    out
}

fn results_xml(app: &Shared, job: &Job, alone: bool) -> String {
    let mut out = String::new();
    if alone {
        out.push_str(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <uws:results xmlns:uws=\"http://www.ivoa.net/xml/UWS/v1.0\" \
             xmlns:xlink=\"http://www.w3.org/1999/xlink\">\n",
        );
    } else {
        out.push_str("<uws:results>\n");
    }
    if job.phase == Phase::Completed {
        out.push_str(&format!(
            "<uws:result id=\"result\" xlink:type=\"simple\" xlink:href=\"{}/results/result\"",
            esc(&job_url(app, &job.id))
        ));
        if let Some(size) = job.size {
            out.push_str(&format!(" size=\"{size}\""));
        }
        if let Some(m) = &job.result_type {
            out.push_str(&format!(" mime-type=\"{}\"", esc(m)));
        }
        out.push_str("/>\n");
    }
    out.push_str("</uws:results>\n");
    out
}

/// Loads a job for a handler: the job, or the response to give instead.
async fn job_or(app: &Shared, id: &str) -> Result<Job, Response> {
    match load(app, id).await {
        Ok(Some(j)) => Ok(j),
        Ok(None) => Err(not_found(id)),
        Err(e) => Err(store_failure(e)),
    }
}

/// `GET /tap/async/{id}`, with UWS 1.1 `WAIT` (and `PHASE`) blocking.
async fn show(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params::new(pairs);
    let mut job = match job_or(&app, &id).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    if let Some(wait) = params.get("WAIT") {
        let Ok(wait) = wait.trim().parse::<i64>() else {
            return text(
                StatusCode::BAD_REQUEST,
                format!("WAIT={wait} must be a number of seconds\n"),
            );
        };
        let cap = app.config.max_wait;
        let limit = if wait < 0 {
            cap
        } else {
            Duration::from_secs(wait as u64).min(cap)
        };
        let from = params.get("PHASE").and_then(Phase::parse);
        let deadline = Instant::now() + limit;
        let start_phase = job.phase;
        while job.phase.active()
            && job.phase == start_phase
            && from.is_none_or(|p| p == job.phase)
            && Instant::now() < deadline
        {
            let notified = app.jobs.changed.notified();
            // Other servers sharing the store do not notify this one: poll as well.
            let step = (deadline - Instant::now()).min(Duration::from_millis(500));
            let _ = tokio::time::timeout(step, notified).await;
            job = match job_or(&app, &id).await {
                Ok(j) => j,
                Err(r) => return r,
            };
        }
    }
    xml(job_xml(&app, &job))
}

/// `POST /tap/async/{id}`: `ACTION=DELETE`, or UWS parameters and phase.
async fn post_job(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Posted(params): Posted,
) -> Response {
    if params
        .get("ACTION")
        .is_some_and(|a| a.trim().eq_ignore_ascii_case("DELETE"))
    {
        return delete_job(&app, &id).await;
    }
    let job = match job_or(&app, &id).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    let changes = uws_free(params.pairs());
    if !changes.is_empty() {
        if job.phase != Phase::Pending {
            return text(
                StatusCode::CONFLICT,
                format!(
                    "job {id} is {}: parameters can change only while it is PENDING\n",
                    job.phase.name()
                ),
            );
        }
        if let Err(r) = keep_parts(&app, &id, &params).await {
            return r;
        }
        if let Err(e) = update(&app, &id, |j| j.set_parameters(changes)).await {
            return store_failure(e);
        }
    }
    if let Some(d) = params.get("EXECUTIONDURATION")
        && let Err(r) = set_duration(&app, &id, d).await
    {
        return r;
    }
    if let Some(d) = params.get("DESTRUCTION")
        && let Err(r) = set_destruction(&app, &id, d).await
    {
        return r;
    }
    if let Some(p) = params.get("PHASE")
        && let Err(r) = change_phase(&app, &caller, &id, p).await
    {
        return r;
    }
    see_other(job_url(&app, &id))
}

async fn delete(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    delete_job(&app, &id).await
}

async fn delete_job(app: &Shared, id: &str) -> Response {
    match load(app, id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(id),
        Err(e) => return store_failure(e),
    }
    if let Err(e) = destroy(app, id).await {
        return store_failure(e);
    }
    see_other(format!("{}/tap/async", app.config.base_url))
}

/// A job's property as text/plain, the way UWS gives single values.
async fn plain(app: &Shared, id: &str, value: impl FnOnce(Job) -> String) -> Response {
    match job_or(app, id).await {
        Ok(j) => text(StatusCode::OK, value(j)),
        Err(r) => r,
    }
}

async fn phase(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    plain(&app, &id, |j| j.phase.name().to_string()).await
}

async fn post_phase(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Posted(params): Posted,
) -> Response {
    let Some(p) = params.get("PHASE") else {
        return text(
            StatusCode::BAD_REQUEST,
            "send PHASE=RUN or PHASE=ABORT\n".into(),
        );
    };
    match change_phase(&app, &caller, &id, p).await {
        Ok(()) => see_other(job_url(&app, &id)),
        Err(r) => r,
    }
}

async fn change_phase(
    app: &Shared,
    caller: &Caller,
    id: &str,
    phase: &str,
) -> Result<(), Response> {
    let job = job_or(app, id).await?;
    match phase.trim().to_ascii_uppercase().as_str() {
        "RUN" => {
            if job.phase == Phase::Pending {
                run_job(app, id, &caller.key()).await?;
            }
            Ok(())
        }
        "ABORT" => {
            if job.phase.active() {
                update(app, id, |j| {
                    if j.phase.active() {
                        j.phase = Phase::Aborted;
                        j.ended = Some(Utc::now());
                    }
                })
                .await
                .map_err(store_failure)?;
                if let Ok(mut running) = app.jobs.running.lock()
                    && let Some(handle) = running.remove(id)
                {
                    handle.abort();
                }
                let _ = app
                    .engine
                    .state()
                    .remove_all(&format!("jobs/{id}/result"))
                    .await;
            }
            Ok(())
        }
        other => Err(text(
            StatusCode::BAD_REQUEST,
            format!("PHASE={other} is not something a job can be asked to do: use RUN or ABORT\n"),
        )),
    }
}

async fn duration(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    plain(&app, &id, |j| j.execution_duration.to_string()).await
}

async fn post_duration(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted(params): Posted,
) -> Response {
    post_setting(&app, &id, params, Setting::Duration).await
}

/// A job setting that has its own UWS resource.
#[derive(Clone, Copy)]
enum Setting {
    Duration,
    Destruction,
}

/// `POST` to a setting's resource: change it, then 303 to the job.
async fn post_setting(app: &Shared, id: &str, params: Params, setting: Setting) -> Response {
    let (name, form) = match setting {
        Setting::Duration => ("EXECUTIONDURATION", "<seconds>"),
        Setting::Destruction => ("DESTRUCTION", "<ISO-8601 time>"),
    };
    let Some(value) = params.get(name) else {
        return text(StatusCode::BAD_REQUEST, format!("send {name}={form}\n"));
    };
    let changed = match setting {
        Setting::Duration => set_duration(app, id, value).await,
        Setting::Destruction => set_destruction(app, id, value).await,
    };
    match changed {
        Ok(()) => see_other(job_url(app, id)),
        Err(r) => r,
    }
}

async fn set_duration(app: &Shared, id: &str, value: &str) -> Result<(), Response> {
    let Ok(seconds) = value.trim().parse::<i64>() else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!("EXECUTIONDURATION={value} must be a whole number of seconds\n"),
        ));
    };
    let job = job_or(app, id).await?;
    if job.phase != Phase::Pending {
        return Err(text(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {}: its execution duration can change only while it is PENDING\n",
                job.phase.name()
            ),
        ));
    }
    let d = clamp_duration(app, seconds);
    update(app, id, |j| j.execution_duration = d)
        .await
        .map_err(store_failure)?;
    Ok(())
}

async fn destruction(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    plain(&app, &id, |j| time(&j.destruction)).await
}

async fn post_destruction(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted(params): Posted,
) -> Response {
    post_setting(&app, &id, params, Setting::Destruction).await
}

async fn set_destruction(app: &Shared, id: &str, value: &str) -> Result<(), Response> {
    let Some(t) = parse_time(value) else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!("DESTRUCTION={value} is not an ISO-8601 time\n"),
        ));
    };
    job_or(app, id).await?;
    // The server keeps jobs no longer than its configured lifetime.
    let t = t.min(Utc::now() + app.config.job_lifetime);
    update(app, id, |j| j.destruction = t)
        .await
        .map_err(store_failure)?;
    Ok(())
}

async fn quote(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    plain(&app, &id, |j| time(&quote_of(&j))).await
}

async fn owner(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    plain(&app, &id, |j| j.owner.unwrap_or_default()).await
}

async fn error_doc(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    match job_or(&app, &id).await {
        Ok(j) => match &j.error {
            Some(message) => error(StatusCode::OK, message),
            None => text(
                StatusCode::NOT_FOUND,
                format!("job {id} is {} and has no error\n", j.phase.name()),
            ),
        },
        Err(r) => r,
    }
}

async fn results(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    match job_or(&app, &id).await {
        Ok(j) => xml(results_xml(&app, &j, true)),
        Err(r) => r,
    }
}

async fn result(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    let job = match job_or(&app, &id).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    if let (Phase::Error, Some(message)) = (job.phase, &job.error) {
        // DALI: no result, so 404; the error document lets a client that
        // fetches the result (astroquery does) show why.
        return error(StatusCode::NOT_FOUND, message);
    }
    if job.phase != Phase::Completed {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "job {id} is {}: a result exists only once it is COMPLETED\n",
                job.phase.name()
            ),
        );
    }
    match app.engine.state().read_stream(&result_key(&id)).await {
        Ok(Some(stream)) => {
            let mut response = Response::new(Body::from_stream(stream));
            let media = job
                .result_type
                .as_deref()
                .and_then(|m| HeaderValue::from_str(m).ok())
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            response.headers_mut().insert(header::CONTENT_TYPE, media);
            if let Some(t) = job
                .token
                .as_deref()
                .and_then(|t| HeaderValue::from_str(t).ok())
            {
                response.headers_mut().insert("x-query-token", t);
            }
            response
        }
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            format!("the result of job {id} is gone\n"),
        ),
        Err(e) => store_failure(e),
    }
}

async fn parameters(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    match job_or(&app, &id).await {
        Ok(j) => xml(parameters_xml(&j, true)),
        Err(r) => r,
    }
}

async fn post_parameters(
    State(app): State<Shared>,
    caller: Extension<Caller>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    post_job(State(app), caller, Path(id), posted).await
}
