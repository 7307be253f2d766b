//! What a job is: its phase and its record in the state store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
