//! TAP `async`: UWS 1.1 jobs, kept in the state store.
//!
//! A job is `jobs/{id}/job.json` (its phase, times and parameters) and, once it
//! completes, `jobs/{id}/result` (the encoded result). Keeping both in the state
//! store, not in the process, means jobs survive a restart and any server that
//! shares the store answers for them. A job whose runner died (the process
//! stopped) is seen as such once its execution duration has passed, and is
//! reported as an error rather than left executing forever.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::Utc;

use crate::app::Shared;
use crate::tap::auth::Caller;
use crate::tap::failure::{Failure, error, esc};
use crate::tap::params::{PARAMETERS_LIMIT, Params, Posted};

mod fields;
mod job;
mod run;
mod store;
mod xml;

use fields::*;
pub use job::{Job, Phase};
use run::*;
use store::*;
pub use store::{end_running, sweep};
use xml::*;

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
        let mut after = job.clone();
        after.set_parameters(changes.clone());
        if after.parameter_bytes() > PARAMETERS_LIMIT {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "job {id} would hold more than {} MiB of parameters\n",
                    PARAMETERS_LIMIT >> 20
                ),
            );
        }
        if let Some(r) = storage_refusal(&app, &caller, &params).await {
            return r;
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
