//! What one anonymous caller may leave in the state store in an hour: the
//! token records of its queries, the uploads they read (kept for replays) and
//! its async results. The state store as a whole is bounded too
//! (`--state-limit-mb`); without a share per caller, one address could fill it
//! and every other caller would be refused until an operator made room.
//!
//! Shares per address cannot stop many addresses together, so anonymous
//! callers may store only while the store is less than half full: the other
//! half is kept for privileged callers, as a file system keeps blocks for its
//! administrator. Nothing anyone stored is ever evicted to make room (every
//! token stays replayable); an operator makes room with `ppdb token expire`.

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

    /// Counts `bytes` stored for `caller`, or refuses them when they would
    /// take it past its hour's allowance, or take the store (`held`: its bytes
    /// and limit, when bounded) into the half kept for privileged callers.
    pub fn spend(&self, caller: &str, bytes: u64, held: Option<(u64, u64)>) -> Result<(), Refused> {
        if let Some((used, limit)) = held
            && used.saturating_add(bytes) > limit / 2
        {
            return Err(Refused {
                message: "the service has no room left for the records of anonymous queries: \
                          they are refused until its operator makes room (queries with a \
                          privileged token, and replays, are still served)"
                    .to_string(),
                reserved: true,
            });
        }
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
            return Err(Refused {
                message: format!(
                    "you stored {} of query records, uploads and results in the last hour, \
                     and this needs {} more: one caller may store {} an hour; try again later",
                    human(total),
                    human(bytes),
                    human(self.per_hour)
                ),
                reserved: false,
            });
        }
        list.push_back((now, bytes));
        Ok(())
    }
}

/// Why an anonymous caller may not store something, in words for it.
#[derive(Debug)]
pub struct Refused {
    /// What to tell the caller.
    pub message: String,
    /// Whether the store, rather than the caller's hourly share, is what ran
    /// out (a 503 for the service, not a 429 for the caller).
    pub reserved: bool,
}

/// Bytes as people read them: `512 bytes`, `37 KiB`, `2.4 MiB`.
fn human(bytes: u64) -> String {
    match bytes {
        b if b < 1 << 10 => format!("{b} bytes"),
        b if b < 1 << 20 => format!("{} KiB", b >> 10),
        b => {
            let mib = format!("{:.1}", b as f64 / (1u64 << 20) as f64);
            format!("{} MiB", mib.trim_end_matches(".0"))
        }
    }
}

/// What a query's token record and kept uploads take in the state store, at
/// most: the record holds the ADQL twice (as written and pinned), and an
/// upload is kept as Parquet, whose footer describes every column (a
/// one-row, 1 000-column upload took 223 KB as Parquet, 168 KiB in memory).
pub fn query_cost(adql: &str, uploads: &[engine::Upload]) -> u64 {
    let uploaded: usize = uploads
        .iter()
        .map(|u| u.batch.get_array_memory_size() + PARQUET_BYTES_PER_COLUMN * u.batch.num_columns())
        .sum();
    (2 * json_len(adql) + 4096 + uploaded) as u64
}

/// The length of `text` as a JSON string's content: a record writes each
/// control character as `\u00XX`, six bytes (a 4 MiB query of them took 25 MB
/// of the store while 12 MiB were counted; a hostile pass).
fn json_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// What a kept upload's Parquet footer and pages take per column, at most.
const PARQUET_BYTES_PER_COLUMN: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_costs_what_its_record_writes() {
        let control = "\u{1}".repeat(1000);
        let written = serde_json::to_string(&control).unwrap().len() - 2;
        assert_eq!(json_len(&control), written);
        let text = "SELECT 'é\"\\' -- \n\t";
        assert_eq!(
            json_len(text),
            serde_json::to_string(text).unwrap().len() - 2
        );
        assert!(query_cost(&control, &[]) >= 2 * written as u64);
    }

    #[test]
    fn a_caller_is_refused_past_its_hour_and_others_are_not() {
        let a = Allowance::new(10 << 20);
        assert!(a.spend("address 192.0.2.1", 6 << 20, None).is_ok());
        let refused = a.spend("address 192.0.2.1", 6 << 20, None).unwrap_err();
        assert!(!refused.reserved);
        let refused = refused.message;
        assert!(refused.contains("stored 6 MiB"), "{refused}");
        assert!(refused.contains("needs 6 MiB more"), "{refused}");
        assert!(refused.contains("10 MiB an hour"), "{refused}");
        assert!(a.spend("address 192.0.2.2", 6 << 20, None).is_ok());
        assert!(
            a.spend("address 192.0.2.1", 4 << 20, None).is_ok(),
            "what fits still fits"
        );
        let refused = a.spend("address 192.0.2.1", 1536 << 10, None).unwrap_err();
        assert!(
            refused.message.contains("needs 1.5 MiB more"),
            "{refused:?}"
        );
        assert_eq!(human(700), "700 bytes");
        assert_eq!(human(70 << 10), "70 KiB");
    }

    #[test]
    fn anonymous_callers_together_stop_at_half_the_store() {
        let a = Allowance::new(10 << 20);
        let half = Some((50 << 20, 100 << 20));
        let refused = a.spend("address 192.0.2.3", 1, half).unwrap_err();
        assert!(refused.reserved);
        assert!(refused.message.contains("privileged token"), "{refused:?}");
        assert!(
            a.spend("address 192.0.2.3", 1 << 20, Some((49 << 20, 100 << 20)))
                .is_ok()
        );
        assert!(
            a.spend("address 192.0.2.3", 0, half).is_ok(),
            "nothing to store fits"
        );
    }
}
