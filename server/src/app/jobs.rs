//! The async jobs running in this process, and how many each caller made.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Jobs running in this process, and a signal for every change of phase.
#[derive(Default)]
pub struct Jobs {
    pub(crate) running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    pub(crate) changed: Notify,
    // One writer of job records at a time in this process: phase changes are
    // read-modify-write, and an abort must not be overwritten by a completion.
    pub(crate) write: tokio::sync::Mutex<()>,
    // When each caller created its jobs of the last hour (in this process).
    pub(crate) created: Mutex<HashMap<String, std::collections::VecDeque<Instant>>>,
}

impl Jobs {
    /// Counts a new job of `caller`; an error once it made its hour's worth
    /// (`most`): 500 jobs of 4 MiB each filled 1.1 GB of the state store in a
    /// minute, each kept for the job lifetime.
    pub(crate) fn count(&self, caller: &str, most: usize) -> Result<(), String> {
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
