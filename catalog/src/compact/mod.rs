//! Compaction: the files of a partition merged into fewer, with the rows
//! every retained snapshot sees unchanged; no snapshot changes.

use std::collections::{BTreeMap, BTreeSet};
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

impl Catalog {
    /// Merges each partition's files into one, folding retirements into `_retired`.
    /// No snapshot changes: every snapshot shows the same rows before and after.
    pub async fn compact(&self) -> Result<CompactReport> {
        for _ in 0..COMMIT_ATTEMPTS {
            let state = self.state().await?;
            let order = state.partition_order;
            // Files are grouped by the ingest-order cell that holds them: fresh
            // files cover such a cell, compacted ones one of its partitions.
            // A file of a cell a commit merged up (coarser than the ingest
            // order: sparse sky) joins the group of the coarsest such cell
            // that holds it, with every file inside: its rows and theirs may
            // share partitions, and each partition must end as one file.
            let ingest = state.ingest_order();
            let merged: BTreeSet<(TableId, Cell)> = state
                .files
                .values()
                .filter_map(|f| Some((f.entry.table, f.entry.cell?)))
                .filter(|(_, c)| c.order < ingest)
                .collect();
            let group_of = |table: TableId, c: Cell| {
                (0..ingest)
                    .map(|o| c.ancestor(o))
                    .find(|a| a.order <= c.order && merged.contains(&(table, *a)))
                    .unwrap_or(c.ancestor(ingest))
            };
            let mut groups: BTreeMap<(TableId, Option<Cell>), Vec<&log::LiveFile>> =
                BTreeMap::new();
            for f in state.files.values() {
                let key = f.entry.cell.map(|c| group_of(f.entry.table, c));
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
                    let anchor = crate::ingest::sort_anchors(ts, &phys, &|id| index.anchor(id));
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
                    let anchor = crate::ingest::sort_anchors(ts, &all, &|id| index.anchor(id));
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

pub(crate) fn retired_min(phys: &RecordBatch) -> Option<u64> {
    let c = phys.column_by_name(RETIRED)?.as_primitive::<Int64Type>();
    arrow::compute::min(c).map(|v| v as u64)
}
