//! The snapshot log: one JSON entry per commit, created by conditional put.
//!
//! Entry `n` lives at `_log/{n:020}.json`. Entry 0 creates the catalog; each
//! later entry is either a *commit* (one replica chunk: the next snapshot) or a
//! *compaction* (files replaced without changing what any snapshot shows).
//! Writing entry `n` with `PutMode::Create` succeeds for exactly one writer.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::TableId;
use crate::store::Location;

mod checkpoint;
mod files;
mod public;
pub use checkpoint::{
    CHECKPOINT_DIR, CHECKPOINT_EVERY, checkpoint_path, latest_checkpoint, write_checkpoint,
};
pub use files::{FileEntry, FileStats, Part, Retirement};
pub use public::mjd_tai;

/// The format tag of every log entry.
pub const LOG_FORMAT: &str = "ppdb-log/1";
/// The folder of the log under the catalog root.
pub const LOG_DIR: &str = "_log";

/// The chunk a commit came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// `ppdb-replica-chunk/1` or `src-chunk/1`.
    pub format: String,
    /// The chunk id.
    pub chunk_id: i64,
    /// The chunk's content identity.
    pub unique_id: String,
    /// The chunk's `last_update_time`.
    pub last_update_time: String,
}

/// A commit: the chunk that created one snapshot, and what it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// The snapshot this commit creates.
    pub snapshot: u64,
    /// When it was committed (UTC).
    pub committed_at: DateTime<Utc>,
    /// The chunk.
    pub chunk: ChunkRef,
    /// New data files.
    pub added: Vec<FileEntry>,
    /// Rows of earlier files that stop being visible at this snapshot.
    pub retired: Vec<Retirement>,
    /// New id-index files (relative paths).
    pub index: Vec<String>,
    /// Logical rows the chunk added, per table.
    pub rows_added: BTreeMap<TableId, u64>,
    /// Rows changed by update records (a new physical copy replaces each), per table.
    pub rows_updated: BTreeMap<TableId, u64>,
}

/// What one log entry does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Creates the catalog (entry 0).
    Create {
        /// Random identity of this catalog, so tokens can tell catalogs apart.
        catalog_id: String,
        /// HEALPix order of the partitions.
        partition_order: u8,
        /// The served schema's version when created.
        schema_version: String,
    },
    /// Commits one chunk.
    Commit(Commit),
    /// Expires old snapshots: every snapshot below `before` except those in `keep`
    /// (the ones live query tokens still read). Expired snapshots can no longer be
    /// read, and compaction may drop rows only they could see. Never undone.
    Expire {
        /// The first snapshot of the retained tail.
        before: u64,
        /// Snapshots below `before` that stay readable.
        keep: Vec<u64>,
    },
    /// Replaces files by others holding the same rows with retirements folded in.
    Compact {
        /// Files no longer listed (relative paths).
        removed: Vec<String>,
        /// Their replacements.
        added: Vec<FileEntry>,
        /// Retirements of the replacements' rows kept by position, not folded
        /// in: those by snapshots later than an embargo cutoff, so that no
        /// byte of a file public rows are read from depends on them
        /// (relative path to (position, snapshot) pairs).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        retired: BTreeMap<String, Vec<(u32, u64)>>,
    },
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Always [`LOG_FORMAT`].
    pub format: String,
    /// The entry's position in the log.
    pub version: u64,
    /// When it was written.
    pub written_at: DateTime<Utc>,
    /// What it does.
    #[serde(flatten)]
    pub action: Action,
}

/// A snapshot as listed to users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Snapshot number (1 for the first chunk).
    pub snapshot: u64,
    /// Commit time.
    pub committed_at: DateTime<Utc>,
    /// The chunk it came from.
    pub chunk: ChunkRef,
    /// Logical rows added per table.
    pub rows_added: BTreeMap<TableId, u64>,
    /// Rows changed by update records per table.
    pub rows_updated: BTreeMap<TableId, u64>,
}

/// A listed file and the retirements that apply to its rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveFile {
    /// The log's record of the file.
    pub entry: FileEntry,
    /// (position, snapshot that retired it), in commit order.
    pub retired: Vec<(u32, u64)>,
}

/// The catalog as of one log version: snapshots and the files that serve them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogState {
    /// The last log entry read.
    pub version: u64,
    /// The catalog's identity.
    pub catalog_id: String,
    /// HEALPix order of partitions.
    pub partition_order: u8,
    /// Schema version when the catalog was created.
    pub schema_version: String,
    /// Snapshots 1..=n in order.
    pub snapshots: Vec<SnapshotInfo>,
    /// Every listed data file by relative path.
    pub files: BTreeMap<String, LiveFile>,
    /// Id-index files with the snapshot that wrote them.
    pub index_files: Vec<(u64, String)>,
    /// Committed chunks per format: chunk id → unique id.
    pub chunks: HashMap<String, BTreeMap<i64, String>>,
    /// Snapshots below this one are expired, except those in `kept`.
    pub expired_before: u64,
    /// Snapshots below `expired_before` that retention keeps.
    pub kept: std::collections::BTreeSet<u64>,
    /// The last entry that changed which files serve snapshots already
    /// committed (a compaction or an expiry): readers that keep per-snapshot
    /// file lists must build them again when it moves.
    pub layout_version: u64,
    /// For each snapshot, the latest chunk time up to it (see `public.rs`),
    /// computed when first asked and dropped when a snapshot is added.
    #[serde(skip)]
    pub(crate) chunk_times: std::sync::OnceLock<Vec<f64>>,
}

/// How many orders coarser than the partitions an ingest writes its files.
///
/// A chunk's rows spread over hundreds of partitions, a few hundred rows in
/// each: one file per partition would spend more on per-file and per-column
/// overhead than on the rows. So ingest writes one file per cell two orders
/// up (16 partitions), and `compact` splits them into partitions. Readers
/// only ever ask whether a file's cell holds the partition they want.
pub const INGEST_COARSENING: u8 = 2;

impl LogState {
    /// The HEALPix order of the cells new files cover (see [`INGEST_COARSENING`]).
    pub fn ingest_order(&self) -> u8 {
        self.partition_order.saturating_sub(INGEST_COARSENING)
    }

    /// The latest snapshot (0 for an empty catalog).
    pub fn latest(&self) -> u64 {
        self.snapshots.len() as u64
    }

    /// Whether retention has expired snapshot `k`.
    pub fn is_expired(&self, k: u64) -> bool {
        k < self.expired_before && !self.kept.contains(&k)
    }

    /// Whether a row added at `added` and retired at `retired` is visible at some
    /// snapshot retention keeps (the current tail, or a kept snapshot).
    pub fn retains(&self, added: u64, retired: Option<u64>) -> bool {
        let Some(r) = retired else {
            return true;
        };
        added.max(self.expired_before) < r || self.kept.range(added..r).next().is_some()
    }

    /// Applies one entry.
    pub fn apply(&mut self, entry: &Entry, path: &str) -> Result<()> {
        let bad = |message: String| Error::Log {
            path: path.to_string(),
            message,
        };
        if entry.format != LOG_FORMAT {
            return Err(bad(format!("unknown format {:?}", entry.format)));
        }
        match &entry.action {
            Action::Create {
                catalog_id,
                partition_order,
                schema_version,
            } => {
                if entry.version != 0 {
                    return Err(bad("a create entry after entry 0".into()));
                }
                self.catalog_id = catalog_id.clone();
                self.partition_order = *partition_order;
                self.schema_version = schema_version.clone();
            }
            Action::Commit(c) => {
                if c.snapshot != self.latest() + 1 {
                    return Err(bad(format!(
                        "commit of snapshot {} follows snapshot {}",
                        c.snapshot,
                        self.latest()
                    )));
                }
                for f in &c.added {
                    self.files.insert(
                        f.path.clone(),
                        LiveFile {
                            entry: f.clone(),
                            retired: vec![],
                        },
                    );
                }
                for r in &c.retired {
                    let live = self
                        .files
                        .get_mut(&r.path)
                        .ok_or_else(|| bad(format!("retires rows of unlisted file {}", r.path)))?;
                    live.retired.extend(r.rows.iter().map(|&p| (p, c.snapshot)));
                }
                for i in &c.index {
                    self.index_files.push((c.snapshot, i.clone()));
                }
                self.chunks
                    .entry(c.chunk.format.clone())
                    .or_default()
                    .insert(c.chunk.chunk_id, c.chunk.unique_id.clone());
                self.chunk_times = std::sync::OnceLock::new();
                self.snapshots.push(SnapshotInfo {
                    snapshot: c.snapshot,
                    committed_at: c.committed_at,
                    chunk: c.chunk.clone(),
                    rows_added: c.rows_added.clone(),
                    rows_updated: c.rows_updated.clone(),
                });
            }
            Action::Expire { before, keep } => {
                if *before > self.latest() {
                    return Err(bad(format!(
                        "expires snapshots below {before}, past the latest snapshot {}",
                        self.latest()
                    )));
                }
                if *before < self.expired_before {
                    return Err(bad(format!(
                        "expires below {before}, but snapshots below {} are already expired",
                        self.expired_before
                    )));
                }
                if let Some(k) = keep.iter().find(|&&k| self.is_expired(k)) {
                    return Err(bad(format!("keeps snapshot {k}, which is already expired")));
                }
                self.layout_version = entry.version;
                self.expired_before = *before;
                self.kept = keep.iter().copied().filter(|&k| k < *before).collect();
            }
            Action::Compact {
                removed,
                added,
                retired,
            } => {
                self.layout_version = entry.version;
                for p in removed {
                    self.files
                        .remove(p)
                        .ok_or_else(|| bad(format!("compaction removes unlisted file {p}")))?;
                }
                for f in added {
                    self.files.insert(
                        f.path.clone(),
                        LiveFile {
                            entry: f.clone(),
                            retired: retired.get(&f.path).cloned().unwrap_or_default(),
                        },
                    );
                }
            }
        }
        self.version = entry.version;
        Ok(())
    }
}

/// The relative path of log entry `version`.
pub fn entry_path(version: u64) -> String {
    format!("{LOG_DIR}/{version:020}.json")
}

/// Reads every entry after `state.version` (all of them for a fresh state) and applies them.
pub async fn refresh(loc: &Location, state: &mut LogState, fresh: bool) -> Result<bool> {
    let after = (!fresh).then_some(state.version);
    let versions = versions_after(loc, after).await?;
    refresh_from(loc, state, fresh, versions).await
}

/// The versions of the log entries in the store after `after` (all of them
/// for `None`), ascending. Stores that can list from a key (S3) list only
/// those: a year of history is ten thousand entries.
pub async fn versions_after(loc: &Location, after: Option<u64>) -> Result<Vec<u64>> {
    let prefix = loc.child(LOG_DIR);
    let listing = match after {
        Some(v) => loc
            .store
            .list_with_offset(Some(&prefix), &loc.child(&entry_path(v))),
        None => loc.store.list(Some(&prefix)),
    };
    let mut versions: Vec<u64> = listing
        .map_ok(|meta| meta.location.filename().map(str::to_string))
        .try_filter_map(|name| async move {
            Ok(name.and_then(|n| n.strip_suffix(".json").and_then(|v| v.parse::<u64>().ok())))
        })
        .try_collect()
        .await?;
    versions.sort_unstable();
    versions.retain(|v| after.is_none_or(|a| *v > a));
    Ok(versions)
}

/// Like [`refresh`], with the listing already done.
pub async fn refresh_from(
    loc: &Location,
    state: &mut LogState,
    fresh: bool,
    versions: Vec<u64>,
) -> Result<bool> {
    if versions.is_empty() {
        return Ok(false);
    }
    let start = if fresh { 0 } else { state.version + 1 };
    let wanted: Vec<u64> = versions.into_iter().filter(|v| *v >= start).collect();
    let entries: Vec<(String, Entry)> = futures::stream::iter(wanted)
        .map(|v| async move {
            let path = entry_path(v);
            let bytes = loc.store.get(&loc.child(&path)).await?.bytes().await?;
            let entry: Entry = serde_json::from_slice(&bytes).map_err(|source| Error::LogJson {
                path: path.clone(),
                source,
            })?;
            Ok::<_, Error>((path, entry))
        })
        .buffered(16)
        .try_collect()
        .await?;
    for (expected, (path, entry)) in (start..).zip(entries) {
        if entry.version != expected {
            return Err(Error::Log {
                path,
                message: format!("expected log entry {expected}, found {}", entry.version),
            });
        }
        state.apply(&entry, &path)?;
    }
    Ok(true)
}

/// When each file a compaction replaced stopped being listed (the time of the
/// compaction's entry): read from the whole log, for vacuum.
pub async fn replacement_times(
    loc: &Location,
) -> Result<std::collections::HashMap<String, DateTime<Utc>>> {
    let mut out = std::collections::HashMap::new();
    let entries: Vec<Entry> = futures::stream::iter(versions_after(loc, None).await?)
        .map(|v| async move {
            let path = entry_path(v);
            let bytes = loc.store.get(&loc.child(&path)).await?.bytes().await?;
            serde_json::from_slice::<Entry>(&bytes)
                .map_err(|source| Error::LogJson { path, source })
        })
        .buffered(16)
        .try_collect()
        .await?;
    for entry in entries {
        if let Action::Compact { removed, .. } = entry.action {
            for p in removed {
                out.insert(p, entry.written_at);
            }
        }
    }
    Ok(out)
}

/// Writes entry `entry.version` only if no writer has written it; `Ok(false)` if one has.
pub async fn try_append(loc: &Location, entry: &Entry) -> Result<bool> {
    // Compact: a commit that retires many rows lists every position, and
    // pretty-printing puts each on its own line (2.5× the bytes).
    create_json(loc, &entry_path(entry.version), entry).await
}

/// Writes `value` as JSON at `path` only if nothing is there; `Ok(false)` if
/// another writer was first.
pub(super) async fn create_json(
    loc: &Location,
    path: &str,
    value: &impl Serialize,
) -> Result<bool> {
    let body = serde_json::to_vec(value).map_err(|source| Error::LogJson {
        path: path.to_string(),
        source,
    })?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match loc
        .store
        .put_opts(&loc.child(path), PutPayload::from(body), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
