//! Compaction: the files of a partition merged into fewer, with the rows
//! every retained snapshot sees unchanged; no snapshot changes.
//!
//! Each cell is written as up to three files (`log::Part`): its current rows,
//! its closed DiaObject versions and its retired rows. Only the first grows
//! with the sky rather than with history, and it is all a query of the latest
//! snapshot's current view opens; the others are read by queries of the past
//! and of the history view.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch};

use crate::Catalog;
use crate::catalog::COMMIT_ATTEMPTS;
use crate::datafile;
use crate::error::{Error, Result};
use crate::healpix::Cell;
use crate::log::{self, Action, Entry, LOG_FORMAT};
use crate::schema::{ADDED, RETIRED, TableId};

mod layout;
mod maintain;

pub use maintain::{MAX_FILES_PER_PARTITION, Piled, files_per_partition};

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
    /// Files left as they are because they hold rows of chunks after the
    /// embargo cutoff (see [`Catalog::with_embargo_cutoff`]).
    pub files_held: usize,
}

impl Catalog {
    /// Rewrites each table's files as few, large files, folding retirements
    /// into `_retired` and setting the history apart (see the module
    /// comment): per base cell, cells as coarse as
    /// [`Catalog::with_compact_rows`] allows (see `layout.rs`), leaving alone
    /// the files of snapshots after [`Catalog::with_embargo_cutoff`]. No
    /// snapshot changes: every snapshot shows the same rows before and after.
    pub async fn compact(&self) -> Result<CompactReport> {
        self.compact_with(false).await
    }

    /// [`Catalog::compact`]; `tiered` leaves each cell's large files alone
    /// and rewrites only the rest of its rows (see [`layout::Target::bases`]).
    async fn compact_with(&self, tiered: bool) -> Result<CompactReport> {
        for _ in 0..COMMIT_ATTEMPTS {
            let state = self.state().await?;
            let settled = self.settled_through(&state);
            let mut groups: BTreeMap<(TableId, Option<Cell>), Vec<&log::LiveFile>> =
                BTreeMap::new();
            // Files with rows of later snapshots stay as they are, until the
            // embargo passes their chunks (see `Catalog::with_embargo_cutoff`).
            for f in state
                .files
                .values()
                .filter(|f| f.entry.added_max <= settled)
            {
                let base = f.entry.cell.map(|c| c.ancestor(0));
                groups.entry((f.entry.table, base)).or_default().push(f);
            }
            let mut job = Job {
                cat: self,
                state: &state,
                settled,
                carried: BTreeMap::new(),
                index: self.anchor_index(&state).await?,
                horizon: (state.expired_before > 0).then_some(state.expired_before),
                removed: Vec::new(),
                added: Vec::new(),
                report: CompactReport::default(),
                tiered,
            };
            for ((table, base), files) in groups {
                job.group(table, base, files).await?;
            }
            let Job {
                removed,
                added,
                carried,
                mut report,
                ..
            } = job;
            report.files_removed = removed.len();
            report.files_added = added.len();
            report.files_held = state
                .files
                .values()
                .filter(|f| f.entry.added_max > settled)
                .count();
            if removed.is_empty() {
                return Ok(report);
            }
            let entry = Entry {
                format: LOG_FORMAT.into(),
                version: state.version + 1,
                written_at: chrono::Utc::now(),
                action: Action::Compact {
                    removed,
                    added,
                    retired: carried,
                },
            };
            if log::try_append(&self.loc, &entry).await? {
                self.checkpoint_if_due(entry.version).await;
                return Ok(report);
            }
            // A commit slipped in (it may retire rows of the files we merged): start over.
        }
        Err(Error::Contention {
            attempts: COMMIT_ATTEMPTS,
        })
    }

    /// A stored file's rows with its retirements folded into `_retired`.
    pub(crate) async fn folded(
        &self,
        ts: &crate::schema::TableSchema,
        f: &log::LiveFile,
    ) -> Result<RecordBatch> {
        let phys = datafile::read(&self.loc, &f.entry.path, None).await?;
        fold_retirements(&datafile::conform_physical(ts, &phys)?, &f.retired)
    }
}

/// One compaction's work over one log state.
struct Job<'a> {
    cat: &'a Catalog,
    state: &'a log::LogState,
    /// The last snapshot whose rows and retirements the written files hold
    /// (see `Catalog::with_embargo_cutoff`); later retirements are carried.
    settled: u64,
    /// Retirements by later snapshots, by position in the written files.
    carried: BTreeMap<String, Vec<(u32, u64)>>,
    index: Arc<crate::index::AnchorIndex>,
    /// The retention horizon: rows only expired snapshots saw are left out.
    horizon: Option<u64>,
    removed: Vec<String>,
    added: Vec<log::FileEntry>,
    report: CompactReport,
    /// Whether a cell's large files stay as they are (maintenance).
    tiered: bool,
}

impl Job<'_> {
    /// Rows retired before the horizon may be droppable, unless this file was
    /// already pruned at this horizon keeping the same snapshots.
    fn prunable(&self, f: &log::LiveFile) -> bool {
        self.horizon.is_some()
            && f.entry
                .retired_min
                .is_some_and(|r| r <= self.state.expired_before)
            && (f.entry.pruned_below != self.horizon
                || f.entry.pruned_keeping != Some(self.state.kept.len() as u64))
    }

    /// Whether a file has nothing to fold in or leave out (retirements after
    /// the settled snapshot stay by position: see [`carry_later`]).
    fn clean(&self, f: &log::LiveFile) -> bool {
        f.retired.iter().all(|(_, r)| *r > self.settled) && !self.prunable(f)
    }

    /// Lays out one table's files under one base cell (all of an
    /// unpartitioned table's files: one file).
    async fn group(
        &mut self,
        table: TableId,
        base: Option<Cell>,
        files: Vec<&log::LiveFile>,
    ) -> Result<()> {
        let ts = self.cat.schema.table(table);
        let Some(base) = base else {
            if layout::laid_out(&files, |f| self.clean(f)) {
                return Ok(());
            }
            let mut batches = Vec::new();
            for f in files {
                batches.push(self.cat.folded(ts, f).await?);
                self.removed.push(f.entry.path.clone());
            }
            return self.write(ts, None, batches).await;
        };
        let order = self.state.partition_order;
        let (cat, index) = (self.cat, &self.index);
        let mut split_paths = Vec::new();
        let targets = layout::layout(
            base,
            files,
            self.cat.compact_rows as u64,
            self.state.ingest_order(),
            order,
            |f: &log::LiveFile| {
                split_paths.push(f.entry.path.clone());
                async move { split(cat, ts, index, order, f).await }
            },
        )
        .await?;
        self.removed.extend(split_paths);
        for t in targets {
            if t.settled(|f| self.clean(f)) {
                continue;
            }
            let bases: Vec<String> = if self.tiered {
                t.bases(|f| self.clean(f))
                    .iter()
                    .map(|f| f.entry.path.clone())
                    .collect()
            } else {
                Vec::new()
            };
            let (kept, rest): (Vec<&log::LiveFile>, Vec<&log::LiveFile>) =
                t.files.iter().partition(|f| bases.contains(&f.entry.path));
            if !kept.is_empty() && t.pieces.is_empty() {
                // The large files, and the rest as one clean file per part at
                // most: as maintenance leaves a cell.
                if rest.is_empty()
                    || (rest.iter().all(|f| f.entry.cell == Some(t.cell))
                        && layout::laid_out(&rest, |f| self.clean(f)))
                {
                    continue;
                }
            }
            let mut batches: Vec<RecordBatch> = t.pieces.into_values().flatten().collect();
            for f in rest {
                batches.push(self.cat.folded(ts, f).await?);
                self.removed.push(f.entry.path.clone());
            }
            self.write(ts, Some(t.cell), batches).await?;
        }
        Ok(())
    }

    /// Writes `batches` as the one file of `cell`, sorted, without the rows no
    /// retained snapshot sees; nothing if no row is left. A cell coarser than
    /// the ingest order lists the ingest-order cells its rows lie in, as a
    /// commit's merged file does.
    async fn write(
        &mut self,
        ts: &crate::schema::TableSchema,
        cell: Option<Cell>,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let mut all = arrow_select::concat::concat_batches(&ts.physical, &batches)?;
        if self.horizon.is_some() {
            let before = all.num_rows();
            all = retained_rows(self.state, &all)?;
            self.report.rows_dropped += (before - all.num_rows()) as u64;
        }
        self.report.partitions += 1;
        if all.num_rows() == 0 {
            return Ok(());
        }
        let index = &self.index;
        let anchor = crate::ingest::sort_anchors(ts, &all, &|id| index.anchor(id));
        let sorted = datafile::sort(ts, &all, anchor.as_ref())?;
        for (part, tag) in split_parts(&sorted, self.settled)? {
            if part.num_rows() > 0 {
                self.write_part(ts, cell, &part, tag).await?;
            }
        }
        Ok(())
    }

    /// Writes one part of a cell's sorted rows as one file.
    async fn write_part(
        &mut self,
        ts: &crate::schema::TableSchema,
        cell: Option<Cell>,
        part: &RecordBatch,
        tag: &str,
    ) -> Result<()> {
        let index = &self.index;
        let (sorted, carried) = carry_later(part, self.settled)?;
        let sorted = datafile::without_empty_columns(ts, &sorted)?;
        let path = datafile::new_path(ts.id, cell, self.state.latest(), tag);
        if !carried.is_empty() {
            self.carried.insert(path.clone(), carried);
        }
        let mut entry = datafile::write(&self.cat.loc, ts, cell, path, &sorted).await?;
        let ingest = self.state.ingest_order();
        if let Some(c) = cell.filter(|c| c.order < ingest) {
            let sorted_anchor = crate::ingest::sort_anchors(ts, &sorted, &|id| index.anchor(id));
            let held: Vec<u64> = match &sorted_anchor {
                Some(a) => a
                    .iter()
                    .map(|a| {
                        a.map_or(c.descendants(ingest).start, |a| {
                            Cell::of_healpix_29(ingest, a).npix
                        })
                    })
                    .collect(),
                None => Vec::new(),
            };
            entry.stats.merged_cells = crate::ingest::merged_cells(&held, &sorted, ingest);
            if entry.stats.merged_cells.is_empty() {
                // No row says where it lies: the file stands for its whole cell.
                entry.stats.merged_cells = c.descendants(ingest).collect();
            }
        }
        entry.retired_min = retired_min(&sorted);
        entry.retired_max = retired_max(&sorted);
        entry.pruned_below = self.horizon;
        entry.pruned_keeping = self.horizon.map(|_| self.state.kept.len() as u64);
        entry.folded_through = Some(self.settled);
        self.added.push(entry);
        Ok(())
    }
}

/// A file's rows (retirements folded in) by the partition each belongs to:
/// its object's anchor, else its own position, else the first partition of
/// the file's cell.
async fn split(
    cat: &Catalog,
    ts: &crate::schema::TableSchema,
    index: &crate::index::AnchorIndex,
    order: u8,
    f: &log::LiveFile,
) -> Result<layout::Pieces> {
    let phys = cat.folded(ts, f).await?;
    let fallback = f.entry.cell.map_or(0, |c| c.descendants(order).start);
    let anchor = crate::ingest::sort_anchors(ts, &phys, &|id| index.anchor(id));
    let own = phys
        .column_by_name(crate::schema::HEALPIX_29)
        .map(|c| c.as_primitive::<Int64Type>().clone());
    let position = |row: usize| {
        anchor
            .as_ref()
            .filter(|a| a.is_valid(row))
            .map(|a| a.value(row))
            .or_else(|| {
                own.as_ref()
                    .filter(|o| o.is_valid(row))
                    .map(|o| o.value(row))
            })
    };
    let mut rows: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for row in 0..phys.num_rows() {
        let p = position(row).map_or(fallback, |h| Cell::of_healpix_29(order, h).npix);
        rows.entry(p).or_default().push(row as u32);
    }
    let mut out = layout::Pieces::new();
    for (p, rows) in rows {
        let taken =
            arrow_select::take::take_record_batch(&phys, &arrow_array::UInt32Array::from(rows))?;
        out.entry(p).or_default().push(taken);
    }
    Ok(out)
}

/// Writes the retirements recorded by position into the `_retired` column.
pub(crate) fn fold_retirements(phys: &RecordBatch, retired: &[(u32, u64)]) -> Result<RecordBatch> {
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

/// The rows with retirements by snapshots after `settled` left unretired in
/// `_retired`, and those retirements by position (in commit order).
fn carry_later(phys: &RecordBatch, settled: u64) -> Result<(RecordBatch, Vec<(u32, u64)>)> {
    let idx = phys.schema().index_of(RETIRED)?;
    let column = phys.column(idx).as_primitive::<Int64Type>();
    let mut carried: Vec<(u32, u64)> = column
        .iter()
        .enumerate()
        .filter_map(|(pos, r)| Some((pos as u32, r? as u64)))
        .filter(|(_, r)| *r > settled)
        .collect();
    if carried.is_empty() {
        return Ok((phys.clone(), carried));
    }
    let kept: Int64Array = column
        .iter()
        .map(|r| r.filter(|r| *r as u64 <= settled))
        .collect();
    let mut cols = phys.columns().to_vec();
    cols[idx] = Arc::new(kept);
    carried.sort_by_key(|&(pos, r)| (r, pos));
    Ok((RecordBatch::try_new(phys.schema(), cols)?, carried))
}

/// The rows some retained snapshot can see.
pub(crate) fn retained_rows(state: &log::LogState, phys: &RecordBatch) -> Result<RecordBatch> {
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

/// The largest `_retired`, if every row has one.
fn retired_max(phys: &RecordBatch) -> Option<u64> {
    let c = phys.column_by_name(RETIRED)?.as_primitive::<Int64Type>();
    if c.null_count() > 0 {
        return None;
    }
    arrow::compute::max(c).map(|v| v as u64)
}

/// A cell's sorted rows as the three parts of its layout (see
/// [`log::Part`]), each in the order of `phys` and tagged for its file name:
/// rows retired by `settled`; closed DiaObject versions visible then; the
/// rest, which is all a query of the latest snapshot's current view reads.
fn split_parts(phys: &RecordBatch, settled: u64) -> Result<Vec<(RecordBatch, &'static str)>> {
    let retired = phys
        .column(phys.schema().index_of(RETIRED)?)
        .as_primitive::<Int64Type>();
    let closed = phys.column_by_name(datafile::VALIDITY_END);
    let part = |r: usize| {
        if retired.is_valid(r) && retired.value(r) as u64 <= settled {
            log::Part::Retired
        } else if closed.is_some_and(|c| c.is_valid(r)) {
            log::Part::Closed
        } else {
            log::Part::Current
        }
    };
    let parts: Vec<log::Part> = (0..phys.num_rows()).map(part).collect();
    let mut out = Vec::new();
    for (want, tag) in [
        (log::Part::Current, "c"),
        (log::Part::Closed, "v"),
        (log::Part::Retired, "h"),
    ] {
        let mask: BooleanArray = parts.iter().map(|p| Some(*p == want)).collect();
        out.push((arrow_select::filter::filter_record_batch(phys, &mask)?, tag));
    }
    Ok(out)
}

pub(crate) fn retired_min(phys: &RecordBatch) -> Option<u64> {
    let c = phys.column_by_name(RETIRED)?.as_primitive::<Int64Type>();
    arrow::compute::min(c).map(|v| v as u64)
}
