//! The catalog handle: open a URL, ingest chunks, list snapshots, scan tables.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{BooleanArray, RecordBatch};
use object_store::ObjectStoreExt;
use tokio::sync::Mutex;

use crate::chunk::{self, LoadedChunk};
use crate::datafile;
use crate::error::{Error, Result};
use crate::healpix::Cell;
use crate::index::AnchorIndex;
use crate::ingest::Ingest;
use crate::log::{self, Action, Entry, FileStats, LOG_FORMAT, LogState, SnapshotInfo};
use crate::schema::{CatalogSchema, TableId};
use crate::store::{self, Location};

/// Default HEALPix order of partitions (cells of about 0.84 deg²).
pub const DEFAULT_PARTITION_ORDER: u8 = 6;

/// The most rows a commit merges into one file of a coarser cell, by default:
/// one row group's worth (see `ingest/cells.rs`).
pub const DEFAULT_CELL_ROWS: usize = datafile::ROW_GROUP_ROWS;
/// The most rows compaction keeps in one file of a cell coarser than a
/// partition, by default (see `compact/layout.rs`): large enough that a
/// sparse sky is a few files, small enough that a cone or light curve in
/// one reads a few row groups of it.
pub const DEFAULT_COMPACT_ROWS: usize = 1 << 18;
pub(crate) const COMMIT_ATTEMPTS: usize = 32;
/// Key columns of stored files kept in memory between commits (ingest re-reads them).
const COLUMN_CACHE_BYTES: u64 = 512 << 20;
/// DiaObject, DiaSource and DiaForcedSource files this process wrote, kept
/// whole: the next chunks look up the rows they update in them and copy those
/// rows from them. About a night's worth (a night of 10^6 DiaSources takes
/// ~1 GiB); older files are decoded from the store as before.
const WRITTEN_CACHE_BYTES: u64 = 2 << 30;

/// A catalog: a snapshot log and the partitioned Parquet files it lists.
pub struct Catalog {
    pub(crate) loc: Location,
    pub(crate) schema: Arc<CatalogSchema>,
    pub(crate) state: Mutex<Arc<LogState>>,
    pub(crate) index: Mutex<Arc<AnchorIndex>>,
    pub(crate) columns: datafile::ColumnCache,
    /// The most rows a commit merges into one file of a coarser cell.
    pub(crate) cell_rows: usize,
    pub(crate) compact_rows: usize,
    /// Compactions leave alone the files of snapshots whose chunks came after
    /// this time (MJD, TAI): see [`Catalog::with_embargo_cutoff`].
    pub(crate) embargo_cutoff: Option<f64>,
}

/// What ingesting one chunk did.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    /// The chunk became this snapshot.
    Committed(SnapshotInfo),
    /// The chunk was an exact re-send of a committed one: nothing changed.
    AlreadyCommitted {
        /// The chunk id.
        chunk_id: i64,
    },
}

/// A file of a table as a reader at one snapshot needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanFile {
    /// Path relative to the catalog root.
    pub path: String,
    /// The file's partition (partitioned tables).
    pub cell: Option<Cell>,
    /// Physical rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Column ranges, for pruning without opening the file.
    pub stats: FileStats,
    /// Positions (ascending) of rows retired at or before the snapshot: skip them.
    pub hidden: Vec<u32>,
    /// Whether some rows must also be filtered by `_added <= k AND (_retired IS NULL OR _retired > k)`;
    /// when false every row not in `hidden` is visible.
    pub filter_by_columns: bool,
    /// The last snapshot that added rows to the file.
    pub added_max: u64,
    /// For a file compaction wrote, the snapshot whose retirements decided
    /// which of its rows went to the history file instead.
    pub folded_through: Option<u64>,
}

impl ScanFile {
    /// The cells whose partitions (at `partition_order`) this file may hold
    /// rows of: its own, or for a file of a merged cell the finer ones it
    /// stands for (`FileStats::merged_cells`).
    pub fn cells(&self, partition_order: u8) -> Vec<Cell> {
        match self.cell {
            Some(_) if !self.stats.merged_cells.is_empty() => {
                let order = partition_order.saturating_sub(crate::log::INGEST_COARSENING);
                self.stats
                    .merged_cells
                    .iter()
                    .map(|&npix| Cell { order, npix })
                    .collect()
            }
            cell => cell.into_iter().collect(),
        }
    }
}

/// The files and visibility rule of one table at one snapshot: the seam for the engine.
///
/// A row of a listed file is visible at `snapshot` iff its position is not in
/// [`ScanFile::hidden`] and (when [`ScanFile::filter_by_columns`])
/// `_added <= snapshot AND (_retired IS NULL OR _retired > snapshot)`.
#[derive(Debug, Clone)]
pub struct TableScan {
    /// The table.
    pub table: TableId,
    /// The snapshot.
    pub snapshot: u64,
    /// The catalog's partition order.
    pub partition_order: u8,
    /// Files that may hold visible rows.
    pub files: Vec<ScanFile>,
}

impl Catalog {
    /// Opens an existing catalog.
    pub async fn open(url: &str) -> Result<Catalog> {
        let loc = store::open(url, false)?;
        let cat = Catalog::at(loc, CatalogSchema::builtin());
        if cat.state().await?.catalog_id.is_empty() {
            return Err(Error::NotACatalog {
                url: url.to_string(),
            });
        }
        Ok(cat)
    }

    /// Opens a catalog, creating an empty one (snapshot 0) if none is there.
    pub async fn open_or_create(url: &str, partition_order: u8) -> Result<Catalog> {
        let loc = store::open(url, true)?;
        let cat = Catalog::at(loc, CatalogSchema::builtin());
        if cat.state().await?.catalog_id.is_empty() {
            let entry = Entry {
                format: LOG_FORMAT.into(),
                version: 0,
                written_at: chrono::Utc::now(),
                action: Action::Create {
                    catalog_id: uuid::Uuid::new_v4().to_string(),
                    partition_order,
                    schema_version: cat.schema.version(),
                },
            };
            // Losing this race is fine: the other writer created the same empty catalog.
            log::try_append(&cat.loc, &entry).await?;
        }
        Ok(cat)
    }

    fn at(loc: Location, schema: Arc<CatalogSchema>) -> Catalog {
        Catalog {
            loc,
            schema,
            state: Mutex::new(Arc::new(LogState::default())),
            index: Mutex::new(Arc::new(AnchorIndex::default())),
            columns: datafile::ColumnCache::new(COLUMN_CACHE_BYTES, WRITTEN_CACHE_BYTES),
            cell_rows: DEFAULT_CELL_ROWS,
            compact_rows: DEFAULT_COMPACT_ROWS,
            embargo_cutoff: None,
        }
    }

    /// This catalog, with commits from this handle merging cells into one file
    /// while it holds at most `rows` rows (one row group's worth by default;
    /// see `ingest/cells.rs`). Every snapshot reads the same whatever it is.
    pub fn with_cell_rows(mut self, rows: usize) -> Catalog {
        self.cell_rows = rows;
        self
    }

    /// This catalog, with compactions from this handle keeping a cell whole
    /// while it holds at most `rows` rows, and splitting it into its children
    /// (down to partitions) past that. Every snapshot reads the same whatever
    /// it is.
    pub fn with_compact_rows(mut self, rows: usize) -> Catalog {
        self.compact_rows = rows;
        self
    }

    /// This catalog, with compactions from this handle leaving as they are the
    /// files that hold rows of snapshots whose chunks came after `cutoff` (MJD,
    /// TAI), so that no file they write mixes rows a caller under that embargo
    /// may read with rows it may not. Such a caller's reads then skip whole
    /// files for the rows it may not see, and no file statistic it is pruned by
    /// counts them: how long its query takes says nothing about them. Give it
    /// the cutoff of the service's embargo (or an earlier one).
    pub fn with_embargo_cutoff(mut self, cutoff: Option<f64>) -> Catalog {
        self.embargo_cutoff = cutoff;
        self
    }

    /// The last snapshot whose rows compactions from this handle may merge
    /// with older ones (every snapshot when it has no embargo cutoff).
    pub(crate) fn settled_through(&self, state: &LogState) -> u64 {
        match self.embargo_cutoff {
            Some(c) => state.public_snapshot(c, state.latest()),
            None => state.latest(),
        }
    }

    /// The catalog's URL.
    pub fn url(&self) -> &str {
        &self.loc.url
    }

    /// The store location (for engines that read the files).
    pub fn location(&self) -> &Location {
        &self.loc
    }

    /// The served schema.
    pub fn schema(&self) -> &Arc<CatalogSchema> {
        &self.schema
    }

    /// The log state, brought up to date with the store.
    pub async fn state(&self) -> Result<Arc<LogState>> {
        let mut guard = self.state.lock().await;
        let fresh = guard.catalog_id.is_empty();
        if !fresh {
            // Entries are written gap-free by conditional create, so the next entry's
            // absence proves nothing was committed: one HEAD instead of a listing, and
            // no copy of the state (thousands of file entries on a large catalog).
            let next = self.loc.child(&log::entry_path(guard.version + 1));
            match self.loc.store.head(&next).await {
                Err(object_store::Error::NotFound { .. }) => return Ok(guard.clone()),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        // A fresh state starts from the newest checkpoint, when there is one.
        let (mut next, fresh) = if fresh {
            match log::latest_checkpoint(&self.loc).await {
                Some(state) => (state, false),
                None => (LogState::default(), true),
            }
        } else {
            ((**guard).clone(), false)
        };
        let after = (!fresh).then_some(next.version);
        let versions = log::versions_after(&self.loc, after).await?;
        log::refresh_from(&self.loc, &mut next, fresh, versions).await?;
        *guard = Arc::new(next);
        Ok(guard.clone())
    }

    /// The state the last call to [`Catalog::state`] read, without asking the
    /// store whether the log moved since.
    pub async fn known_state(&self) -> Arc<LogState> {
        self.state.lock().await.clone()
    }

    /// The id → partition index as of `state`.
    pub async fn anchor_index(&self, state: &LogState) -> Result<Arc<AnchorIndex>> {
        let mut guard = self.index.lock().await;
        if guard.files_read() == state.index_files.len() {
            return Ok(guard.clone());
        }
        let mut next = (**guard).clone();
        next.catch_up(&self.loc, &state.index_files).await?;
        *guard = Arc::new(next);
        Ok(guard.clone())
    }

    /// Every snapshot, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        Ok(self.state().await?.snapshots.clone())
    }

    /// Ingests one chunk folder (or object prefix): one snapshot, or nothing on refusal.
    pub async fn ingest(&self, chunk_loc: &Location) -> Result<IngestOutcome> {
        let chunk = chunk::load(chunk_loc, &self.schema).await?;
        self.ingest_loaded(&chunk).await
    }

    /// Ingests chunks in the order given, reading and checking each next chunk
    /// while the one before it commits. Stops at the first error, returning
    /// the position of the chunk that failed with it; `done` hears each outcome.
    pub async fn ingest_sequence(
        &self,
        chunks: &[Location],
        mut done: impl FnMut(usize, &IngestOutcome),
    ) -> std::result::Result<(), (usize, Error)> {
        let load = |loc: &Location| {
            let (loc, schema) = (loc.clone(), self.schema.clone());
            tokio::spawn(async move { chunk::load(&loc, &schema).await })
        };
        let mut next = chunks.first().map(load);
        for i in 0..chunks.len() {
            let Some(loading) = next.take() else { break };
            let chunk = match loading.await {
                Ok(loaded) => loaded.map_err(|e| (i, e))?,
                Err(join) => {
                    return Err((
                        i,
                        Error::Log {
                            path: chunks[i].url.clone(),
                            message: format!("reading the chunk failed: {join}"),
                        },
                    ));
                }
            };
            next = chunks.get(i + 1).map(load);
            let outcome = self.ingest_loaded(&chunk).await.map_err(|e| (i, e))?;
            done(i, &outcome);
        }
        Ok(())
    }

    /// Ingests a chunk that was already read and checked.
    pub async fn ingest_loaded(&self, chunk: &LoadedChunk) -> Result<IngestOutcome> {
        for _ in 0..COMMIT_ATTEMPTS {
            let state = self.state().await?;
            let index = self.anchor_index(&state).await?;
            let ingest = Ingest {
                loc: &self.loc,
                files: &self.columns,
                schema: &self.schema,
                state: &state,
                index: &index,
                chunk,
                cell_rows: self.cell_rows,
            };
            if ingest.check_order()?.is_none() {
                return Ok(IngestOutcome::AlreadyCommitted {
                    chunk_id: chunk.manifest.chunk_id,
                });
            }
            let snapshot = state.latest() + 1;
            let prepared = ingest.prepare(snapshot).await?;
            let entry = Entry {
                format: LOG_FORMAT.into(),
                version: state.version + 1,
                written_at: chrono::Utc::now(),
                action: Action::Commit(prepared.commit.clone()),
            };
            if log::try_append(&self.loc, &entry).await? {
                drop(state);
                drop(index);
                self.appended(&entry, prepared.new_anchors).await;
                self.checkpoint_if_due(entry.version).await;
                let c = prepared.commit;
                return Ok(IngestOutcome::Committed(SnapshotInfo {
                    snapshot: c.snapshot,
                    committed_at: c.committed_at,
                    chunk: c.chunk,
                    rows_added: c.rows_added,
                    rows_updated: c.rows_updated,
                }));
            }
            // Another writer committed first: our files are orphans (vacuum removes them);
            // check the chunk again against the new state and retry.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(Error::Contention {
            attempts: COMMIT_ATTEMPTS,
        })
    }

    /// Saves the log state as a checkpoint, so that opening the catalog reads it
    /// and the entries after it (ingest and maintenance do this every
    /// [`log::CHECKPOINT_EVERY`] entries).
    pub async fn checkpoint(&self) -> Result<u64> {
        let state = self.state().await?;
        log::write_checkpoint(&self.loc, &state).await?;
        Ok(state.version)
    }

    /// [`Catalog::checkpoint`] when the entry just written is a multiple of
    /// [`log::CHECKPOINT_EVERY`]. A failure leaves the catalog as it was
    /// (opening reads more of the log), so it does not fail the commit.
    pub(crate) async fn checkpoint_if_due(&self, version: u64) {
        if version.is_multiple_of(log::CHECKPOINT_EVERY)
            && let Err(e) = self.checkpoint().await
        {
            eprintln!("warning: the log checkpoint at entry {version} was not written: {e}");
        }
    }

    /// Brings the cached state and index forward by the entry this process
    /// just appended, so the next commit neither lists nor re-reads the log
    /// and copies neither (both are updated in place unless a reader holds them).
    async fn appended(&self, entry: &Entry, new_anchors: Vec<(i64, i64)>) {
        let mut state = self.state.lock().await;
        if state.version + 1 != entry.version {
            return; // someone else already caught up: `state()` does the rest
        }
        let index_files = state.index_files.len();
        let path = log::entry_path(entry.version);
        if Arc::make_mut(&mut state).apply(entry, &path).is_err() {
            // A half-applied state must not be used: read the log afresh.
            *state = Arc::new(LogState::default());
            return;
        }
        let mut index = self.index.lock().await;
        if index.files_read() == index_files
            && state.index_files.len() == index_files + 1
            && let Some((snapshot, _)) = state.index_files.last()
        {
            Arc::make_mut(&mut index).extend(&new_anchors, *snapshot);
        }
    }

    /// The files and visibility rule of `table` at `snapshot`.
    pub fn scan(&self, state: &LogState, table: TableId, snapshot: u64) -> Result<TableScan> {
        if snapshot > state.latest() {
            return Err(Error::NoSuchSnapshot {
                asked: snapshot,
                latest: state.latest(),
            });
        }
        if state.is_expired(snapshot) {
            return Err(Error::SnapshotExpired {
                asked: snapshot,
                before: state.expired_before,
            });
        }
        let files = state
            .files
            .values()
            .filter(|f| f.entry.table == table && f.entry.added_min <= snapshot)
            // A file of history whose rows were all retired by now.
            .filter(|f| f.entry.retired_max.is_none_or(|r| r > snapshot))
            .map(|f| {
                let mut hidden: Vec<u32> = f
                    .retired
                    .iter()
                    .filter(|(_, s)| *s <= snapshot)
                    .map(|(p, _)| *p)
                    .collect();
                hidden.sort_unstable();
                ScanFile {
                    path: f.entry.path.clone(),
                    cell: f.entry.cell,
                    rows: f.entry.rows,
                    bytes: f.entry.bytes,
                    stats: f.entry.stats.clone(),
                    hidden,
                    filter_by_columns: f.entry.added_max > snapshot
                        || f.entry.retired_min.is_some_and(|r| r <= snapshot),
                    added_max: f.entry.added_max,
                    folded_through: f.entry.folded_through,
                }
            })
            .collect();
        Ok(TableScan {
            table,
            snapshot,
            partition_order: state.partition_order,
            files,
        })
    }

    /// Reads every visible row of `table` at `snapshot` (served columns, storage order).
    pub async fn read_table(&self, table: TableId, snapshot: u64) -> Result<RecordBatch> {
        let state = self.state().await?;
        let scan = self.scan(&state, table, snapshot)?;
        let ts = self.schema.table(table);
        let mut out = Vec::new();
        for f in &scan.files {
            let phys = datafile::read(&self.loc, &f.path, None).await?;
            let hidden: HashSet<u32> = f.hidden.iter().copied().collect();
            let mask: BooleanArray = (0..phys.num_rows())
                .map(|r| {
                    Some(
                        !hidden.contains(&(r as u32))
                            && datafile::visible_by_columns(&phys, snapshot, r),
                    )
                })
                .collect();
            let visible = arrow_select::filter::filter_record_batch(&phys, &mask)?;
            out.push(datafile::served(ts, &visible)?);
        }
        Ok(arrow_select::concat::concat_batches(&ts.arrow, &out)?)
    }
}
