//! Jobs in the state store: where a job's record, result and markers live,
//! read, written and swept.

use axum::body::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};

use engine::StateError;

use crate::app::Shared;

use super::*;

pub(super) fn key(id: &str) -> String {
    format!("jobs/{id}/job.json")
}

/// Where a user's jobs are listed: a marker per job under the user's name
/// (hex, since a name may hold `@`), so that listing them reads only theirs.
pub(super) fn owned_prefix(owner: &str) -> String {
    let hex: String = owner.bytes().map(|b| format!("{b:02x}")).collect();
    format!("owners/{hex}")
}

pub(super) fn owned_key(owner: &str, id: &str) -> String {
    format!("{}/{id}", owned_prefix(owner))
}

pub(super) fn result_key(id: &str) -> String {
    format!("jobs/{id}/result")
}

/// Job ids are random UUIDs; anything else is refused before it touches the store.
pub(super) fn valid_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

pub(super) fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads a job, deleting it if its destruction time has passed, and noticing a
/// runner that died (past its execution duration with no end).
pub(super) async fn load(app: &Shared, id: &str) -> Result<Option<Job>, engine::Error> {
    if !valid_id(id) {
        return Ok(None);
    }
    let Some(bytes) = app.engine.state().read(&key(id)).await? else {
        return Ok(None);
    };
    let mut job = decode(id, &bytes)?;
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

pub(super) async fn save(app: &Shared, job: &Job) -> Result<(), engine::Error> {
    let body = serde_json::to_vec_pretty(job).map_err(|e| StateError::Unencodable {
        what: format!("job {}", job.id),
        reason: e.to_string(),
    })?;
    app.engine
        .state()
        .write(&key(&job.id), Bytes::from(body))
        .await?;
    app.jobs.changed.notify_waiters();
    Ok(())
}

/// Changes a stored job; `None` if it is gone.
pub(super) async fn update(
    app: &Shared,
    id: &str,
    change: impl FnOnce(&mut Job),
) -> Result<Option<Job>, engine::Error> {
    let _guard = app.jobs.write.lock().await;
    let Some(bytes) = app.engine.state().read(&key(id)).await? else {
        return Ok(None);
    };
    let mut job = decode(id, &bytes)?;
    change(&mut job);
    save(app, &job).await?;
    Ok(Some(job))
}

pub(super) async fn destroy(app: &Shared, id: &str) -> Result<(), engine::Error> {
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

/// What a job this process was running says once the server has stopped.
const STOPPED: &str = "the server stopped before the job finished; run it again";

/// Ends the jobs this process runs as ERROR, saying the server stopped (run
/// as it stops), so that their phase is definite at once rather than
/// EXECUTING until their duration has passed. How many there were.
pub async fn end_running(app: &Shared) -> usize {
    let running: Vec<String> = match app.jobs.running.lock() {
        Ok(mut running) => running
            .drain()
            .map(|(id, handle)| {
                handle.abort();
                id
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    for id in &running {
        let ended = update(app, id, |j| {
            if j.phase.active() {
                j.phase = Phase::Error;
                j.ended = Some(Utc::now());
                j.error = Some(STOPPED.into());
            }
        })
        .await;
        // A result it finished writing just before stays; a partial one goes.
        if ended.is_ok_and(|j| j.is_some_and(|j| j.error.as_deref() == Some(STOPPED))) {
            let _ = app
                .engine
                .state()
                .remove_all(&format!("jobs/{id}/result"))
                .await;
        }
    }
    running.len()
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

pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
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

pub(super) fn started_key(id: &str) -> String {
    format!("jobs/{id}/started")
}

/// A job's record as stored.
fn decode(id: &str, bytes: &[u8]) -> Result<Job, engine::Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        StateError::Unreadable {
            what: format!("job {id}"),
            reason: e.to_string(),
        }
        .into()
    })
}
