//! The embargo: rows younger than a window are shown only to privileged callers.
//!
//! Every row has a time. DiaSource and DiaForcedSource rows have their
//! `midpointMjdTai`, DiaObject versions their `validityStartMjdTai`. The
//! tables whose rows carry no time of their own (DetectorVisitProcessingSummary,
//! PromptSource, SSObject) take the time of the chunk that brought them, its
//! `last_update_time`: Prompt Processing writes a visit's rows after the visit,
//! so that time is never earlier than the visit's, and the rule never shows a
//! row too early.
//!
//! A caller without privilege reads each table as it stood at the cutoff: rows
//! with a time after it are left out, a DiaObject version that was current at
//! the cutoff is current (its `validityEndMjdTai`, set by a later version, reads
//! NULL), and the tables timed by their chunks are read at the last snapshot
//! whose chunks all came before the cutoff. The table providers apply this, so
//! no query, join, upload, job or replay can get around it.

use std::time::Duration;

use catalog::TableId;
use catalog::log::{LogState, SnapshotInfo, mjd_tai};
use chrono::Utc;

/// Which rows are embargoed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Embargo {
    /// No row is embargoed.
    Off,
    /// Rows younger than this are embargoed (Rubin's is 80 hours).
    Window(Duration),
    /// Rows after this time (MJD, TAI) are embargoed, whatever the time now.
    Until(f64),
}

impl Default for Embargo {
    fn default() -> Self {
        Embargo::Window(Duration::from_secs(80 * 3600))
    }
}

impl Embargo {
    /// The cutoff now (MJD, TAI): rows with a later time are embargoed.
    ///
    /// A moving cutoff is taken down to the whole minute, so the same request
    /// made twice within a minute gets the same token.
    pub fn cutoff(&self) -> Option<f64> {
        match *self {
            Embargo::Off => None,
            Embargo::Until(t) => Some(t),
            Embargo::Window(w) => {
                let now = mjd_tai(Utc::now()) - w.as_secs_f64() / 86400.0;
                Some((now * 1440.0).floor() / 1440.0)
            }
        }
    }
}

/// How the rows of a stored table are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timing {
    /// By a column of the row (MJD, TAI).
    Column(&'static str),
    /// By the chunk that brought the row.
    Chunk,
}

/// How rows of `table` are timed.
pub(crate) fn timing(table: TableId) -> Timing {
    match table {
        TableId::DiaObject => Timing::Column("validityStartMjdTai"),
        TableId::DiaSource | TableId::DiaForcedSource => Timing::Column("midpointMjdTai"),
        TableId::DetectorVisitProcessingSummary | TableId::SSObject | TableId::PromptSource => {
            Timing::Chunk
        }
    }
}

/// The latest time of a row of `table` at snapshot `k` (an upper bound, from the
/// log's statistics), or `None` when the table has no rows.
pub(crate) fn latest(log: &LogState, table: TableId, k: u64) -> Option<f64> {
    match timing(table) {
        Timing::Column(column) => log
            .files
            .values()
            .filter(|f| f.entry.table == table && f.entry.added_min <= k)
            .map(|f| {
                f.entry
                    .stats
                    .times
                    .get(column)
                    .map_or(f64::INFINITY, |(_, hi)| *hi)
            })
            .reduce(f64::max),
        Timing::Chunk => log
            .snapshots
            .iter()
            .filter(|s| s.snapshot <= k)
            .filter(|s| {
                s.rows_added.get(&table).is_some_and(|n| *n > 0)
                    || s.rows_updated.get(&table).is_some_and(|n| *n > 0)
            })
            .map(SnapshotInfo::chunk_mjd_tai)
            .reduce(f64::max),
    }
}

/// What the embargo does to one query.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Access {
    /// Rows after this time are left out (`None`: nothing is left out).
    pub cutoff: Option<f64>,
    /// The newest row the result may hold (an upper bound from the log's
    /// statistics): only privileged callers may replay it while a service's
    /// embargo has not passed it.
    pub until: Option<f64>,
}

/// What the embargo does to a query reading `tables` at snapshot `k`.
///
/// A cutoff the log's statistics show to hide nothing in those tables is dropped,
/// so that most time-travel queries to snapshots before the embargo keep one
/// token whoever asks (a compacted file's statistics also cover rows added after
/// the snapshot, so this is an upper bound, and a cutoff may be kept needlessly).
pub(crate) fn access(
    embargo: &Embargo,
    log: &LogState,
    k: u64,
    tables: impl IntoIterator<Item = TableId>,
    privileged: bool,
) -> Access {
    // The snapshot itself counts: a result names its snapshot and commit
    // time, which say that embargoed chunks came in, even when it reads no
    // catalog table (TAP_SCHEMA alone; a hostile pass replayed one).
    let snapshot_time = log
        .snapshots
        .iter()
        .find(|s| s.snapshot == k)
        .map(SnapshotInfo::chunk_mjd_tai);
    let newest = tables
        .into_iter()
        .filter_map(|t| latest(log, t, k))
        .chain(snapshot_time)
        .reduce(f64::max);
    // `until` is recorded whatever the embargo here: a token made where none
    // applies (the command line, a service without one) must not replay rows
    // to anonymous callers of a service that embargoes them.
    let Some(cutoff) = embargo.cutoff() else {
        return Access {
            cutoff: None,
            until: newest,
        };
    };
    match (newest.filter(|&t| t > cutoff), privileged) {
        (None, _) => Access {
            cutoff: None,
            until: newest,
        },
        (Some(until), true) => Access {
            cutoff: None,
            until: Some(until),
        },
        (Some(_), false) => Access {
            cutoff: Some(cutoff),
            until: Some(cutoff),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moving_cutoff_is_whole_minutes_in_the_past() {
        let c = Embargo::Window(Duration::from_secs(3600)).cutoff().unwrap();
        let now = mjd_tai(Utc::now());
        assert!(c <= now - 1.0 / 24.0 && c > now - 1.0 / 24.0 - 2.0 / 1440.0);
        assert!((c * 1440.0 - (c * 1440.0).round()).abs() < 1e-6);
        assert_eq!(Embargo::Off.cutoff(), None);
        assert_eq!(Embargo::Until(61000.5).cutoff(), Some(61000.5));
    }
}
