//! Creating and running jobs: parameters kept, the query started within the
//! job's duration, the result stored.

use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::Utc;

use crate::app::Shared;
use crate::app::allowance::query_cost;
use crate::tap::auth::Caller;
use crate::tap::failure::Failure;
use crate::tap::origin::Origin;
use crate::tap::params::{Params, Posted};
use crate::tap::stream::{Outcome, encode};
use crate::tap::sync::{refused, request_of, start};

use super::*;

/// `POST /tap/async`: a new job, PENDING (or started at once with `PHASE=RUN`).
pub(super) async fn create(
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
    if let Some(r) = storage_refusal(&app, &caller, &params).await {
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
    // A value that cannot be read is refused, as it is when set on a job
    // afterwards (it once gave a job of the longest duration, silently).
    if let Some(d) = params.get("EXECUTIONDURATION") {
        let Ok(d) = d.trim().parse::<i64>() else {
            return super::text(
                StatusCode::BAD_REQUEST,
                format!("EXECUTIONDURATION={d} must be a whole number of seconds\n"),
            );
        };
        job.execution_duration = clamp_duration(&app, d);
    }
    if let Some(d) = params.get("DESTRUCTION") {
        let Some(t) = parse_time(d) else {
            return super::text(
                StatusCode::BAD_REQUEST,
                format!("DESTRUCTION={d} is not an ISO-8601 time\n"),
            );
        };
        job.destruction = t.min(now + app.config.job_lifetime);
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

/// The refusal of what a request would add to a job, if the state store has
/// no room for it (503) or its caller stored its hour's share (429).
pub(super) async fn storage_refusal(
    app: &Shared,
    caller: &Caller,
    params: &Params,
) -> Option<Response> {
    let body: usize = params.parts.iter().map(|(_, b)| b.len()).sum::<usize>()
        + params
            .pairs()
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    // The job keeps its parameters, and its run a record with the ADQL twice.
    if let Err(e) = app.engine.state().room_for(3 * body as u64 + 8192).await {
        return Some(store_failure(e));
    }
    if caller.privileged() {
        return None;
    }
    app.stored
        .spend(
            &caller.key(),
            body as u64 + 4096,
            app.engine.state().usage(),
        )
        .err()
        .map(|e| refused(&e))
}

/// Stores the parts of a multipart request with the job, for its `UPLOAD`.
///
/// Every part is checked before any is written, and a write that fails takes
/// the others with it: a refused job leaves nothing behind in the store.
pub(super) async fn keep_parts(app: &Shared, id: &str, params: &Params) -> Result<(), Response> {
    // Parts sent earlier count too: a job holds at most one upload's worth.
    let mut total = app
        .engine
        .state()
        .size_under(&format!("jobs/{id}/parts"))
        .await
        .map_err(store_failure)?;
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
pub(super) fn uws_free(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
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

pub(super) fn clamp_duration(app: &Shared, seconds: i64) -> u64 {
    let max = app.config.max_duration.as_secs();
    // UWS: zero or less means no limit; ours is the server's maximum.
    if seconds <= 0 {
        max
    } else {
        (seconds as u64).min(max)
    }
}

/// Starts a PENDING job: QUEUED until a turn comes, then EXECUTING.
///
/// Exactly one request starts a job, however many ask at once and on however
/// many replicas: the one that creates the job's `started` marker (a write
/// that fails if the object exists). Reading the phase first let two
/// concurrent `PHASE=RUN` both see PENDING and run the query twice.
pub(super) async fn run_job(app: &Shared, id: &str, caller: &str) -> Result<(), Response> {
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
    let task_caller = caller.to_string();
    let handle = tokio::spawn(async move {
        // Held until the query stops executing, even when this task is
        // aborted (ABORT, DELETE) while an operator is in the middle of a step.
        let permit = std::sync::Arc::new(ticket.acquire().await);
        execute(&task_app, &task_id, &task_caller, permit.clone()).await;
        drop(permit);
        if let Ok(mut r) = task_app.jobs.running.lock() {
            r.remove(&task_id);
        }
        task_app.jobs.changed.notify_waiters();
    });
    running.insert(id.to_string(), handle.abort_handle());
    Ok(())
}

/// An error message as a job keeps it: messages may quote what the caller
/// sent (a 4 MiB RESPONSEFORMAT came back in "unknown format"), and a job's
/// record must not grow by what it echoes.
fn cut(message: String) -> String {
    const MOST: usize = 8 << 10;
    if message.len() <= MOST {
        return message;
    }
    let mut end = MOST;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… (the rest of this message is not kept)",
        &message[..end]
    )
}

/// Runs a job's query and stores its result; the phase says how it ended.
/// What it stores counts against `caller`'s allowance unless the job's owner
/// is a known user.
pub(super) async fn execute(app: &Shared, id: &str, caller: &str, hold: engine::Hold) {
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
                        j.error = Some(cut(message));
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
    request.options.hold = Some(hold);
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
    let allowance = (!request.options.privileged).then_some(&app.stored);
    // Parts sent with the job were counted when it took them.
    let parts = app
        .engine
        .state()
        .size_under(&format!("jobs/{id}/parts"))
        .await
        .unwrap_or(0);
    let cost = query_cost(&request.adql, &request.options.uploads).saturating_sub(parts);
    if let Some(a) = allowance
        && let Err(e) = a.spend(caller, cost, app.engine.state().usage())
    {
        return finish(Err(e.message)).await;
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
    // The job's parameters sent to /tap/sync give the same rows (as a URL
    // pasted into a browser; /tap/async would list jobs).
    let origin = Origin::of(
        &app.config,
        "/tap/sync",
        &job.params().pairs(),
        &request.adql,
    );
    let encoder = encode(
        app.clone(),
        result,
        request.format,
        deadline,
        allowed,
        tx,
        &origin,
    );
    let store = async {
        let mut stored = Ok(());
        let mut size = 0u64;
        while let Some(chunk) = rx.recv().await {
            size += chunk.len() as u64;
            if let Some(a) = allowance
                && let Err(e) = a.spend(caller, chunk.len() as u64, app.engine.state().usage())
            {
                stored = Err(e.message);
                break;
            }
            if let Err(e) = writer.put(chunk).await {
                stored = Err(Failure::from(&e).message);
                break;
            }
        }
        // Dropping the receiver stops the encoder, and with it the query.
        drop(rx);
        (stored, size)
    };
    let (outcome, (stored, size)) = tokio::join!(encoder, store);
    let stored = match stored {
        Ok(()) => writer.finish().await.map_err(|e| Failure::from(&e).message),
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    };
    let media = request.format.media_type();
    match (outcome, stored) {
        (_, Err(message)) => finish(Err(format!("storing the result failed: {message}"))).await,
        (Outcome::Done { rows, .. }, Ok(())) => finish(Ok((rows, size, token, media))).await,
        (Outcome::Failed(failure), Ok(())) => finish(Err(failure.message)).await,
        (Outcome::Gone, Ok(())) => finish(Err("the result was abandoned".into())).await,
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn a_job_keeps_at_most_8_kib_of_an_error() {
        assert_eq!(cut("short".into()), "short");
        let long = cut("é".repeat(10_000));
        assert!(long.len() < (8 << 10) + 64, "{}", long.len());
        assert!(long.ends_with("(the rest of this message is not kept)"));
    }
}
