//! Which snapshots came before a time: what a caller under an embargo may read,
//! and what maintenance may merge into the files such a caller reads.
//!
//! A snapshot's time is its chunk's `last_update_time`. Prompt Processing
//! writes a visit's rows after the visit, so no row of a chunk is younger than
//! the chunk, and the rows of the snapshots before a time are all older than it.

use chrono::{DateTime, Utc};

use super::{LogState, SnapshotInfo};

/// Seconds TAI is ahead of UTC (since 2017; no leap second has been announced since).
const TAI_MINUS_UTC: f64 = 37.0;
/// The MJD of the Unix epoch.
const MJD_UNIX_EPOCH: f64 = 40587.0;

/// The MJD (TAI) of a UTC time.
pub fn mjd_tai(t: DateTime<Utc>) -> f64 {
    let unix = t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) * 1e-9;
    (unix + TAI_MINUS_UTC) / 86400.0 + MJD_UNIX_EPOCH
}

impl SnapshotInfo {
    /// The time of the snapshot's chunk (MJD, TAI); an unreadable time counts
    /// as the far future.
    pub fn chunk_mjd_tai(&self) -> f64 {
        DateTime::parse_from_rfc3339(&self.chunk.last_update_time)
            .map(|t| mjd_tai(t.with_timezone(&Utc)))
            .unwrap_or(f64::INFINITY)
    }
}

impl LogState {
    /// The last snapshot at or before `k` whose chunk, and every chunk before
    /// it, came before `cutoff` (MJD, TAI); 0 when the first already came after.
    ///
    /// Every query of a caller under the embargo asks this: the chunk times are
    /// read once per log state, and each answer is a binary search.
    pub fn public_snapshot(&self, cutoff: f64, k: u64) -> u64 {
        let times = self.chunk_times.get_or_init(|| {
            let mut latest = f64::NEG_INFINITY;
            self.snapshots
                .iter()
                .map(|s| {
                    latest = latest.max(s.chunk_mjd_tai());
                    latest
                })
                .collect()
        });
        // Nondecreasing, so the snapshots before the cutoff are a prefix.
        let public = times.partition_point(|t| *t <= cutoff);
        match public.checked_sub(1) {
            Some(i) => self.snapshots[i].snapshot.min(k),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(n: u64, time: &str) -> SnapshotInfo {
        SnapshotInfo {
            snapshot: n,
            committed_at: Utc::now(),
            chunk: crate::log::ChunkRef {
                format: "ppdb-replica-chunk/1".into(),
                chunk_id: n as i64,
                unique_id: String::new(),
                last_update_time: time.into(),
            },
            rows_added: Default::default(),
            rows_updated: Default::default(),
        }
    }

    #[test]
    fn the_public_snapshot_is_the_last_of_the_prefix_before_the_cutoff() {
        let mut state = LogState::default();
        for (n, t) in [
            (1, "2025-11-21T00:00:00Z"),
            (2, "2025-11-22T00:00:00Z"),
            // Out of order: everything from here waits for the later time.
            (3, "2025-11-24T00:00:00Z"),
            (4, "2025-11-23T00:00:00Z"),
        ] {
            state.snapshots.push(snapshot(n, t));
        }
        let day = |d: f64| 61000.0 + d;
        assert_eq!(state.public_snapshot(day(-1.0), 4), 0);
        assert_eq!(state.public_snapshot(day(1.5), 4), 2);
        assert_eq!(state.public_snapshot(day(1.5), 1), 1);
        assert_eq!(
            state.public_snapshot(day(2.5), 4),
            2,
            "4 came before it, 3 after"
        );
        assert_eq!(state.public_snapshot(day(3.5), 4), 4);
    }

    #[test]
    fn mjd_of_a_known_time() {
        let t = DateTime::parse_from_rfc3339("2025-11-21T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mjd = mjd_tai(t);
        assert!((mjd - (61000.0 + 37.0 / 86400.0)).abs() < 1e-9, "{mjd}");
    }
}
