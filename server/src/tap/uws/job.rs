//! What a job is: its phase and record, and the jobs running in this process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::tap::params::Params;

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
    pub(super) fn name(self) -> &'static str {
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

    pub(super) fn parse(s: &str) -> Option<Phase> {
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
    pub(super) fn active(self) -> bool {
        matches!(self, Phase::Pending | Phase::Queued | Phase::Executing)
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub(super) id: String,
    pub(super) run_id: Option<String>,
    pub(super) owner: Option<String>,
    pub(super) phase: Phase,
    pub(super) created: DateTime<Utc>,
    pub(super) started: Option<DateTime<Utc>>,
    pub(super) ended: Option<DateTime<Utc>>,
    /// Seconds the job may run.
    pub(super) execution_duration: u64,
    pub(super) destruction: DateTime<Utc>,
    /// Parameters as sent, names as the client spelled them.
    pub(super) parameters: Vec<(String, String)>,
    pub(super) error: Option<String>,
    /// The media type of the stored result.
    pub(super) result_type: Option<String>,
    pub(super) rows: Option<u64>,
    /// Bytes of the stored result.
    pub(super) size: Option<u64>,
    pub(super) token: Option<String>,
}

impl Job {
    pub(super) fn params(&self) -> Params {
        Params::new(self.parameters.clone())
    }

    /// The bytes of the job's parameters, names and values.
    pub(super) fn parameter_bytes(&self) -> usize {
        self.parameters.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    pub(super) fn set_parameters(&mut self, pairs: Vec<(String, String)>) {
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
    pub(super) running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    pub(super) changed: Notify,
    // One writer of job records at a time in this process: phase changes are
    // read-modify-write, and an abort must not be overwritten by a completion.
    pub(super) write: tokio::sync::Mutex<()>,
    // When each caller created its jobs of the last hour (in this process).
    pub(super) created: Mutex<HashMap<String, std::collections::VecDeque<Instant>>>,
}

impl Jobs {
    /// Counts a new job of `caller`; an error once it made its hour's worth
    /// (`most`): 500 jobs of 4 MiB each filled 1.1 GB of the state store in a
    /// minute, each kept for the job lifetime.
    pub(super) fn count(&self, caller: &str, most: usize) -> Result<(), String> {
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
