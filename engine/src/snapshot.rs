//! Which snapshot a query reads: a number, an MJD or a time, resolved against the log.

use crate::Engine;
use crate::options::QueryOptions;
use std::sync::Arc;

use catalog::log::{LogState, SnapshotInfo};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::error::{Error, Result};

/// A snapshot a query asked for that the catalog cannot give.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Nothing has been ingested.
    #[error("the catalog has no snapshots yet: ingest a chunk first")]
    Empty,
    /// No snapshot has this number.
    #[error(
        "no snapshot {asked}: this catalog has snapshots {first} to {last}{}",
        mjd_hint(*.asked)
    )]
    NoSuch {
        /// The number asked for.
        asked: u64,
        /// The first snapshot.
        first: u64,
        /// The latest snapshot.
        last: u64,
    },
    /// The time given is not one.
    #[error("'{text}' is not an ISO-8601 UTC time (e.g. 2025-06-01T12:00:00Z)")]
    NotATime {
        /// What was given.
        text: String,
    },
    /// The time is before the first commit.
    #[error(
        "no snapshot was committed by {text}; the first was committed at {} (MJD {:.5} UTC; \
         commit times are when data arrived, not when it was observed)",
        .first_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        mjd_utc(*.first_at)
    )]
    BeforeFirst {
        /// The time asked for.
        text: String,
        /// When the first snapshot was committed.
        first_at: DateTime<Utc>,
    },
    /// The query's FOR SYSTEM_TIME AS OF and the request's AS_OF differ.
    #[error(
        "the query reads snapshot {query} (FOR SYSTEM_TIME AS OF) but the request asks for \
         snapshot {request}"
    )]
    Disagree {
        /// The snapshot the query names.
        query: u64,
        /// The snapshot the request names.
        request: u64,
    },
}

/// A large whole number was likely meant as an MJD.
fn mjd_hint(k: u64) -> String {
    if k > 40_000 {
        format!(" (for the snapshot current at MJD {k}, write {k}.0)")
    } else {
        String::new()
    }
}

impl Engine {
    /// The snapshot a query reads: the one it asks for, else the latest now.
    pub async fn resolve_snapshot(&self, as_of: Option<&adql::AsOf>) -> Result<SnapshotInfo> {
        let state = self.catalog.state().await?;
        resolve(&state, as_of, u64::MAX)
    }

    /// The latest snapshot a caller is shown: under the embargo, for a caller
    /// without privilege, the last one whose chunks all came before the cutoff.
    pub async fn latest_shown(&self, privileged: bool) -> Result<SnapshotInfo> {
        let options = QueryOptions {
            privileged,
            ..Default::default()
        };
        Ok(self.choose_snapshot(None, &options).await?.1)
    }

    /// The snapshot for a query and its request, which must agree.
    pub(crate) async fn choose(
        &self,
        text: &str,
        in_query: Option<&adql::AsOf>,
        options: &QueryOptions,
    ) -> Result<(Arc<LogState>, SnapshotInfo)> {
        self.choose_snapshot(in_query, options)
            .await
            .map_err(|e| match e {
                // The query's own FOR SYSTEM_TIME AS OF is what names the snapshot.
                Error::Snapshot(e) if in_query.is_some() => {
                    let mut refusal = adql::Error::whole(text, e.to_string());
                    if let Some((line, column)) = adql::locate_word(text, "SYSTEM_TIME") {
                        (refusal.line, refusal.column) = (line, column);
                    }
                    Error::Adql(refusal)
                }
                e => e,
            })
    }

    pub(crate) async fn choose_snapshot(
        &self,
        in_query: Option<&adql::AsOf>,
        options: &QueryOptions,
    ) -> Result<(Arc<LogState>, SnapshotInfo)> {
        let log = self.catalog.state().await?;
        // A caller under the embargo is shown the catalog as it stood at the
        // cutoff: the snapshots made since, even their number and commit
        // times, would tell how much arrived during the embargo.
        let through = match self.embargo.cutoff() {
            Some(c) if !options.privileged => log.public_snapshot(c, log.latest()),
            _ => u64::MAX,
        };
        let snapshot = match (in_query, &options.as_of) {
            (Some(a), Some(b)) => {
                let (sa, sb) = (
                    resolve(&log, Some(a), through)?,
                    resolve(&log, Some(b), through)?,
                );
                if sa.snapshot != sb.snapshot {
                    return Err(SnapshotError::Disagree {
                        query: sa.snapshot,
                        request: sb.snapshot,
                    }
                    .into());
                }
                sa
            }
            (a, b) => resolve(&log, a.or(b.as_ref()), through)?,
        };
        Ok((log, snapshot))
    }
}

/// Finds the snapshot `as_of` names in a log state, among the snapshots up to
/// `through` (the latest of those when `None`).
pub(crate) fn resolve(
    state: &LogState,
    as_of: Option<&adql::AsOf>,
    through: u64,
) -> Result<SnapshotInfo> {
    let info = find(state, as_of, through)?;
    if state.is_expired(info.snapshot) {
        return Err(catalog::Error::SnapshotExpired {
            asked: info.snapshot,
            before: state.expired_before,
        }
        .into());
    }
    Ok(info)
}

pub(crate) fn find(
    state: &LogState,
    as_of: Option<&adql::AsOf>,
    through: u64,
) -> Result<SnapshotInfo> {
    let shown = state.snapshots.partition_point(|s| s.snapshot <= through);
    let snapshots = &state.snapshots[..shown];
    let (Some(first), Some(last)) = (snapshots.first(), snapshots.last()) else {
        return Err(SnapshotError::Empty.into());
    };
    match as_of {
        None => Ok(last.clone()),
        Some(adql::AsOf::Snapshot(k)) => snapshots
            .iter()
            .find(|s| s.snapshot == *k)
            .cloned()
            .ok_or_else(|| {
                SnapshotError::NoSuch {
                    asked: *k,
                    first: first.snapshot,
                    last: last.snapshot,
                }
                .into()
            }),
        Some(adql::AsOf::Time(text)) => {
            let t =
                parse_time(text).ok_or_else(|| SnapshotError::NotATime { text: text.clone() })?;
            snapshots
                .iter()
                .rev()
                .find(|s| s.committed_at <= t)
                .cloned()
                .ok_or_else(|| {
                    SnapshotError::BeforeFirst {
                        text: text.clone(),
                        first_at: first.committed_at,
                    }
                    .into()
                })
        }
    }
}

/// Reads the snapshot a request names (`--as-of`, TAP's `AS_OF`): a snapshot
/// number, an MJD (UTC, with a decimal point: `61002.5`, or `MJD 61002`), or an
/// ISO-8601 UTC time; an MJD reads as the time it is.
pub fn as_of(text: &str) -> std::result::Result<adql::AsOf, String> {
    let t = text.trim();
    if let Ok(k) = t.parse::<u64>() {
        return Ok(adql::AsOf::Snapshot(k));
    }
    let mjd = t
        .strip_prefix("MJD")
        .or_else(|| t.strip_prefix("mjd"))
        .map(|m| m.trim_start_matches([':', ' ']))
        .or_else(|| t.contains('.').then_some(t));
    if let Some(m) = mjd
        && let Ok(days) = m.parse::<f64>()
    {
        // MJD 40587 is 1970-01-01T00:00:00 UTC.
        let micros = ((days - 40_587.0) * 86_400e6).round();
        if let Some(at) = (micros.is_finite() && micros.abs() < 9e18)
            .then(|| DateTime::<Utc>::from_timestamp_micros(micros as i64))
            .flatten()
        {
            return Ok(adql::AsOf::Time(
                at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ));
        }
    }
    if parse_time(t).is_some() {
        return Ok(adql::AsOf::Time(t.to_string()));
    }
    Err(format!(
        "'{t}' names no snapshot: give a snapshot number (12), an MJD in UTC with a \
         decimal point (61002.5, or MJD 61002), or an ISO-8601 UTC time \
         (2026-11-23T12:00:00Z)"
    ))
}

/// The MJD (UTC) of a time.
pub fn mjd_utc(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 86_400e6 + 40_587.0
}

/// Reads an ISO-8601 time; without a zone it is UTC.
/// A UTC time as people write it: ISO 8601 with or without `Z`, to the
/// second or the minute, or a date alone (its midnight).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::{as_of, parse_time};

    #[test]
    pub(crate) fn a_snapshot_is_named_by_number_mjd_or_time() {
        assert_eq!(as_of("12"), Ok(adql::AsOf::Snapshot(12)));
        let want = adql::AsOf::Time("2026-11-23T12:00:00.000000Z".into());
        // MJD 61367.5 is 2026-11-23T12:00 UTC.
        assert_eq!(as_of("61367.5"), Ok(want.clone()));
        assert_eq!(as_of("MJD 61367.5"), Ok(want.clone()));
        assert_eq!(as_of("mjd:61367.5"), Ok(want));
        assert_eq!(
            as_of("2026-11-23T12:00:00Z"),
            Ok(adql::AsOf::Time("2026-11-23T12:00:00Z".into()))
        );
        let e = as_of("yesterday").unwrap_err();
        assert!(e.contains("snapshot number") && e.contains("MJD") && e.contains("ISO-8601"));
    }

    #[test]
    pub(crate) fn times_without_zone_are_utc() {
        let a = parse_time("2025-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_time("2025-01-02T03:04:05"), Some(a));
        assert_eq!(parse_time("2025-01-02 03:04:05"), Some(a));
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2025-01-02").is_some());
    }
}
