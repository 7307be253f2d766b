//! Retention: expiring old snapshots (except those live tokens read) and
//! vacuuming files no retained snapshot needs, after a grace period.

use std::collections::HashSet;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::Catalog;
use crate::catalog::COMMIT_ATTEMPTS;
use crate::error::{Error, Result};
use crate::log::{self, Action, Entry, LOG_FORMAT};

/// What expiring snapshots did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpireReport {
    /// Snapshots newly expired.
    pub expired: Vec<u64>,
    /// Snapshots below the horizon kept readable.
    pub kept: Vec<u64>,
}

/// What a vacuum did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VacuumReport {
    /// Objects deleted.
    pub deleted: Vec<String>,
    /// Objects kept because some retained snapshot needs them.
    pub kept: usize,
}

impl Catalog {
    /// Expires every snapshot below `before` except those in `keep` (the snapshots
    /// live query tokens read). The latest snapshot is never expired. Compaction
    /// then drops rows only expired snapshots could see, and vacuum deletes the
    /// files it replaced. Expiring is never undone.
    pub async fn expire(&self, before: u64, keep: &[u64]) -> Result<ExpireReport> {
        for _ in 0..COMMIT_ATTEMPTS {
            let state = self.state().await?;
            let before = before.min(state.latest()).max(state.expired_before);
            let keep: Vec<u64> = {
                let mut k: Vec<u64> = keep
                    .iter()
                    .copied()
                    .filter(|&s| s < before && !state.is_expired(s))
                    .collect();
                // Snapshots kept by an earlier expiry stay kept only if asked again.
                k.sort_unstable();
                k.dedup();
                k
            };
            let expired: Vec<u64> = (1..before)
                .filter(|s| !state.is_expired(*s) && !keep.contains(s))
                .collect();
            let unchanged = before == state.expired_before
                && keep.iter().copied().eq(state.kept.iter().copied());
            if unchanged {
                return Ok(ExpireReport {
                    expired,
                    kept: keep,
                });
            }
            let entry = Entry {
                format: LOG_FORMAT.into(),
                version: state.version + 1,
                written_at: chrono::Utc::now(),
                action: Action::Expire {
                    before,
                    keep: keep.clone(),
                },
            };
            if log::try_append(&self.loc, &entry).await? {
                self.checkpoint_if_due(entry.version).await;
                return Ok(ExpireReport {
                    expired,
                    kept: keep,
                });
            }
        }
        Err(Error::Contention {
            attempts: COMMIT_ATTEMPTS,
        })
    }

    /// Deletes objects under the catalog that no snapshot needs (files replaced by
    /// compaction, files of commits that never happened), if older than `grace`:
    /// a replaced file counts from its compaction, since a server that listed
    /// it before may still be reading it.
    /// Every snapshot is retained: nothing a snapshot reads is ever deleted.
    pub async fn vacuum(&self, grace: Duration) -> Result<VacuumReport> {
        let state = self.state().await?;
        let mut needed: HashSet<String> = state.files.keys().cloned().collect();
        needed.extend(state.index_files.iter().map(|(_, p)| p.clone()));
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        // A replaced file's grace runs from its replacement, not from when it
        // was written: a server that listed it before the compaction may still
        // be reading it (for up to its longest query).
        let replaced = log::replacement_times(&self.loc).await?;
        let prefix = self.loc.prefix.as_ref().to_string();
        let objects: Vec<_> = self
            .loc
            .store
            .list(Some(&self.loc.prefix))
            .try_collect()
            .await?;
        let mut report = VacuumReport::default();
        for meta in objects {
            let full = meta.location.as_ref();
            let rel = full
                .strip_prefix(&prefix)
                .unwrap_or(full)
                .trim_start_matches('/')
                .to_string();
            if rel.starts_with(log::LOG_DIR) || !rel.ends_with(".parquet") {
                continue;
            }
            let unlisted = replaced
                .get(&rel)
                .map_or(meta.last_modified, |t| (*t).max(meta.last_modified));
            if needed.contains(&rel) || unlisted > cutoff {
                report.kept += 1;
                continue;
            }
            self.loc.store.delete(&meta.location).await?;
            report.deleted.push(rel);
        }
        Ok(report)
    }
}
