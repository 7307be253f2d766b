//! The catalog handle: open a URL, ingest chunks, list snapshots, scan tables.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use tokio::sync::Mutex;

use crate::chunk::{self, LoadedChunk};
use crate::datafile;
use crate::error::{Error, Result};
use crate::healpix::Cell;
use crate::index::AnchorIndex;
use crate::ingest::Ingest;
use crate::log::{self, Action, Entry, FileStats, LOG_FORMAT, LogState, SnapshotInfo};
use crate::schema::{ADDED, CatalogSchema, RETIRED, TableId};
use crate::store::{self, Location};

/// Default HEALPix order of partitions (cells of about 0.84 deg²).
pub const DEFAULT_PARTITION_ORDER: u8 = 6;
const COMMIT_ATTEMPTS: usize = 32;
/// Key columns of stored files kept in memory between commits (ingest re-reads them).
const COLUMN_CACHE_BYTES: u64 = 512 << 20;
/// DiaObject, DiaSource and DiaForcedSource files this process wrote, kept
/// whole: the next chunks look up the rows they update in them and copy those
/// rows from them. About a night's worth (a night of 10^6 DiaSources takes
/// ~1 GiB); older files are decoded from the store as before.
const WRITTEN_CACHE_BYTES: u64 = 2 << 30;

/// A catalog: a snapshot log and the partitioned Parquet files it lists.
pub struct Catalog {
    loc: Location,
    schema: Arc<CatalogSchema>,
    state: Mutex<Arc<LogState>>,
    index: Mutex<Arc<AnchorIndex>>,
    columns: datafile::ColumnCache,
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

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactReport {
    /// Files replaced.
    pub files_removed: usize,
    /// Files written.
    pub files_added: usize,
    /// Partitions compacted.
    pub partitions: usize,
    /// Rows left out because no retained snapshot sees them.
    pub rows_dropped: u64,
}

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
        let versions = log::versions(&self.loc).await?;
        let mut next = if fresh {
            LogState::default()
        } else {
            (**guard).clone()
        };
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

    /// Merges each partition's files into one, folding retirements into `_retired`.
    /// No snapshot changes: every snapshot shows the same rows before and after.
    pub async fn compact(&self) -> Result<CompactReport> {
        for _ in 0..COMMIT_ATTEMPTS {
            let state = self.state().await?;
            let order = state.partition_order;
            // Files are grouped by the ingest-order cell that holds them: fresh
            // files cover such a cell, compacted ones one of its partitions.
            let mut groups: BTreeMap<(TableId, Option<Cell>), Vec<&log::LiveFile>> =
                BTreeMap::new();
            for f in state.files.values() {
                let key = f.entry.cell.map(|c| c.ancestor(state.ingest_order()));
                groups.entry((f.entry.table, key)).or_default().push(f);
            }
            let mut removed = Vec::new();
            let mut added = Vec::new();
            let mut report = CompactReport::default();
            let horizon = (state.expired_before > 0).then_some(state.expired_before);
            let index = self.anchor_index(&state).await?;
            for ((table, _), files) in groups {
                let ts = self.schema.table(table);
                // Rows retired before the horizon may be droppable, unless this
                // file was already pruned at this horizon.
                let prunable = |f: &log::LiveFile| {
                    horizon.is_some()
                        && f.entry
                            .retired_min
                            .is_some_and(|r| r <= state.expired_before)
                        && f.entry.pruned_below != horizon
                };
                let mut by_cell: BTreeMap<Option<Cell>, Vec<&log::LiveFile>> = BTreeMap::new();
                let mut coarse = Vec::new();
                for f in files {
                    match f.entry.cell {
                        Some(c) if c.order < order => coarse.push((f, c)),
                        cell => by_cell.entry(cell).or_default().push(f),
                    }
                }
                // A coarse file's rows go to the partitions their anchors name.
                let mut pieces: BTreeMap<Option<Cell>, Vec<RecordBatch>> = BTreeMap::new();
                for (f, fresh) in coarse {
                    let phys = self.folded(ts, f).await?;
                    let anchor = crate::ingest::anchors(ts, &phys, &|id| index.anchor(id));
                    // A row without an anchor (none in practice) keeps its file's cell.
                    let cell_of = |row: usize| match anchor.as_ref().filter(|a| a.is_valid(row)) {
                        Some(a) => Cell::of_healpix_29(order, a.value(row)),
                        None => fresh,
                    };
                    let mut rows: BTreeMap<Cell, Vec<u32>> = BTreeMap::new();
                    for row in 0..phys.num_rows() {
                        rows.entry(cell_of(row)).or_default().push(row as u32);
                    }
                    for (cell, rows) in rows {
                        let taken = arrow_select::take::take_record_batch(
                            &phys,
                            &arrow_array::UInt32Array::from(rows),
                        )?;
                        pieces.entry(Some(cell)).or_default().push(taken);
                    }
                    removed.push(f.entry.path.clone());
                }
                for (cell, files) in by_cell {
                    let dirty = files.iter().any(|f| !f.retired.is_empty());
                    let joined = pieces.contains_key(&cell);
                    if files.len() < 2 && !dirty && !joined && !files.iter().any(|f| prunable(f)) {
                        continue;
                    }
                    let piece = pieces.entry(cell).or_default();
                    for f in files {
                        piece.push(self.folded(ts, f).await?);
                        removed.push(f.entry.path.clone());
                    }
                }
                for (cell, batches) in pieces {
                    let mut all = arrow_select::concat::concat_batches(&ts.physical, &batches)?;
                    if horizon.is_some() {
                        let before = all.num_rows();
                        all = retained_rows(&state, &all)?;
                        report.rows_dropped += (before - all.num_rows()) as u64;
                    }
                    report.partitions += 1;
                    if all.num_rows() == 0 {
                        continue;
                    }
                    let anchor = crate::ingest::anchors(ts, &all, &|id| index.anchor(id));
                    let sorted = datafile::without_empty_columns(
                        ts,
                        &datafile::sort(ts, &all, anchor.as_ref())?,
                    )?;
                    let path = datafile::new_path(table, cell, state.latest(), "c");
                    let mut entry = datafile::write(&self.loc, ts, cell, path, &sorted).await?;
                    entry.retired_min = retired_min(&sorted);
                    entry.pruned_below = horizon;
                    added.push(entry);
                }
            }
            report.files_removed = removed.len();
            report.files_added = added.len();
            if removed.is_empty() {
                return Ok(report);
            }
            let entry = Entry {
                format: LOG_FORMAT.into(),
                version: state.version + 1,
                written_at: chrono::Utc::now(),
                action: Action::Compact { removed, added },
            };
            if log::try_append(&self.loc, &entry).await? {
                return Ok(report);
            }
            // A commit slipped in (it may retire rows of the files we merged): start over.
        }
        Err(Error::Contention {
            attempts: COMMIT_ATTEMPTS,
        })
    }

    /// A stored file's rows with its retirements folded into `_retired`.
    async fn folded(
        &self,
        ts: &crate::schema::TableSchema,
        f: &log::LiveFile,
    ) -> Result<RecordBatch> {
        let phys = datafile::read(&self.loc, &f.entry.path, None).await?;
        fold_retirements(&datafile::conform_physical(ts, &phys)?, &f.retired)
    }

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

/// Writes the retirements recorded by position into the `_retired` column.
fn fold_retirements(phys: &RecordBatch, retired: &[(u32, u64)]) -> Result<RecordBatch> {
    if retired.is_empty() {
        return Ok(phys.clone());
    }
    let idx = phys.schema().index_of(RETIRED)?;
    let mut v: Vec<Option<i64>> = phys
        .column(idx)
        .as_primitive::<Int64Type>()
        .iter()
        .collect();
    for (pos, snap) in retired {
        let Some(slot) = v.get_mut(*pos as usize) else {
            return Err(Error::Log {
                path: String::new(),
                message: format!(
                    "a retirement names row {pos}, past the end of its file ({} rows)",
                    phys.num_rows()
                ),
            });
        };
        let s = *snap as i64;
        *slot = Some(slot.map_or(s, |old| old.min(s)));
    }
    let mut cols = phys.columns().to_vec();
    cols[idx] = Arc::new(Int64Array::from(v));
    Ok(RecordBatch::try_new(phys.schema(), cols)?)
}

/// The rows some retained snapshot can see.
fn retained_rows(state: &log::LogState, phys: &RecordBatch) -> Result<RecordBatch> {
    let added = phys
        .column(phys.schema().index_of(ADDED)?)
        .as_primitive::<Int64Type>();
    let retired = phys
        .column(phys.schema().index_of(RETIRED)?)
        .as_primitive::<Int64Type>();
    let keep: BooleanArray = (0..phys.num_rows())
        .map(|r| {
            let retired = retired.is_valid(r).then(|| retired.value(r) as u64);
            Some(state.retains(added.value(r) as u64, retired))
        })
        .collect();
    Ok(arrow_select::filter::filter_record_batch(phys, &keep)?)
}

fn retired_min(phys: &RecordBatch) -> Option<u64> {
    let c = phys.column_by_name(RETIRED)?.as_primitive::<Int64Type>();
    arrow::compute::min(c).map(|v| v as u64)
}
