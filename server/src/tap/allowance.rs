//! What one anonymous caller may leave in the state store in an hour: the
//! token records of its queries, the uploads they read (kept for replays) and
//! its async results. The state store as a whole is bounded too
//! (`--state-limit-mb`); without a share per caller, one address could fill it
//! and every other caller would be refused until an operator made room.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes stored per caller over the last hour, and the most each may store.
pub struct Allowance {
    per_hour: u64,
    spent: Mutex<HashMap<String, VecDeque<(Instant, u64)>>>,
}

impl Allowance {
    /// Each caller may store `per_hour` bytes in any hour.
    pub fn new(per_hour: u64) -> Allowance {
        Allowance {
            per_hour,
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// Counts `bytes` stored for `caller`, or refuses (with the message for
    /// the caller) when they would take it past its hour's allowance.
    pub fn spend(&self, caller: &str, bytes: u64) -> Result<(), String> {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        spent.retain(|_, list| {
            while list
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > hour)
            {
                list.pop_front();
            }
            !list.is_empty()
        });
        let list = spent.entry(caller.to_string()).or_default();
        let total: u64 = list.iter().map(|(_, b)| b).sum();
        if total.saturating_add(bytes) > self.per_hour {
            return Err(format!(
                "you stored {} MiB of query records, uploads and results in the last hour, \
                 and this needs {} MiB more: one caller may store {} MiB an hour; try again later",
                total >> 20,
                (bytes >> 20).max(1),
                self.per_hour >> 20
            ));
        }
        list.push_back((now, bytes));
        Ok(())
    }
}

/// What a query's token record and kept uploads take in the state store, at
/// most: the record holds the ADQL twice (as written and pinned).
pub fn query_cost(adql: &str, uploads: &[engine::Upload]) -> u64 {
    let uploaded: usize = uploads
        .iter()
        .map(|u| u.batch.get_array_memory_size())
        .sum();
    (2 * adql.len() + 4096 + uploaded) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_is_refused_past_its_hour_and_others_are_not() {
        let a = Allowance::new(10 << 20);
        assert!(a.spend("address 192.0.2.1", 6 << 20).is_ok());
        let refused = a.spend("address 192.0.2.1", 6 << 20).unwrap_err();
        assert!(refused.contains("6 MiB"), "{refused}");
        assert!(refused.contains("10 MiB an hour"), "{refused}");
        assert!(a.spend("address 192.0.2.2", 6 << 20).is_ok());
        assert!(
            a.spend("address 192.0.2.1", 4 << 20).is_ok(),
            "what fits still fits"
        );
    }
}
