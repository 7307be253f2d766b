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
    pub fn public_snapshot(&self, cutoff: f64, k: u64) -> u64 {
        let mut last = 0;
        for s in self.snapshots.iter().take_while(|s| s.snapshot <= k) {
            if s.chunk_mjd_tai() > cutoff {
                break;
            }
            last = s.snapshot;
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mjd_of_a_known_time() {
        let t = DateTime::parse_from_rfc3339("2025-11-21T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mjd = mjd_tai(t);
        assert!((mjd - (61000.0 + 37.0 / 86400.0)).abs() < 1e-9, "{mjd}");
    }
}
