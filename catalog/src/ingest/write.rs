//! What each table receives (the chunk's rows and patched copies of stored
//! ones), gathered by partition, sorted, encoded and stored: one new file per
//! partition touched.

use futures::future::Either;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};

use super::patch::apply_patches;
use super::*;
use crate::log::FileEntry;

/// One table's rows for this commit: new rows and patched copies as source
/// batches sharing one schema, the sort anchor of every row, and the rows
/// (source, row) each partition receives. Each partition's file is gathered
/// from the sources in its sorted order, so rows are copied once.
pub(super) struct TableRows {
    table: TableId,
    sources: Vec<RecordBatch>,
    anchors: Option<Vec<Int64Array>>,
    partitions: BTreeMap<Option<Cell>, Vec<(usize, usize)>>,
    /// The ingest-order cells each merged partition cell stands for.
    merged: super::cells::Merged,
    /// The ingest order.
    order: u8,
}

/// Stored rows to copy with new values, by file.
pub(super) type StoredPatches = (Arc<str>, Vec<(u32, Patch)>);

/// What one table receives: the chunk's rows with the patches that fall on
/// them, and stored rows to copy with theirs.
pub(super) struct TablePlan<'c> {
    ts: &'c TableSchema,
    new: Option<&'c crate::chunk::TableFile>,
    new_patches: Vec<(usize, Patch)>,
    stored: Vec<StoredPatches>,
}

/// What the commit writes and records, table by table.
pub(super) struct CommitPlan<'c> {
    pub tables: Vec<TablePlan<'c>>,
    /// Stored rows the commit retires, by file.
    pub retired: BTreeMap<String, Vec<u32>>,
    pub rows_added: BTreeMap<TableId, u64>,
    pub rows_updated: BTreeMap<TableId, u64>,
}

impl<'a> Ingest<'a> {
    /// Assembles what each partition gets: new rows (patched) and patched copies.
    pub(super) fn plan_tables(
        &self,
        mut patches: HashMap<TableId, Vec<(RowRef, Patch)>>,
    ) -> CommitPlan<'a> {
        let mut retired: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        let mut rows_added = BTreeMap::new();
        let mut rows_updated = BTreeMap::new();
        let mut plans: Vec<TablePlan> = Vec::new();
        for table in TableId::ALL {
            let table_patches = patches.remove(&table).unwrap_or_default();
            if !table_patches.is_empty() {
                rows_updated.insert(table, table_patches.len() as u64);
            }
            let mut new_patches = Vec::new();
            let mut stored: BTreeMap<Arc<str>, Vec<(u32, Patch)>> = BTreeMap::new();
            for (at, p) in table_patches {
                match at {
                    RowRef::New(row) => new_patches.push((row, p)),
                    RowRef::Stored { path, pos } => stored.entry(path).or_default().push((pos, p)),
                }
            }
            let new = self.chunk.table(table);
            if let Some(t) = new {
                rows_added.insert(table, t.batch.num_rows() as u64);
            }
            let stored: Vec<StoredPatches> = stored
                .into_iter()
                .map(|(path, mut rows)| {
                    rows.sort_by_key(|r| r.0);
                    retired.insert(path.to_string(), rows.iter().map(|r| r.0).collect());
                    (path, rows)
                })
                .collect();
            if new.is_some() || !stored.is_empty() {
                plans.push(TablePlan {
                    ts: self.schema.table(table),
                    new,
                    new_patches,
                    stored,
                });
            }
        }
        CommitPlan {
            tables: plans,
            retired,
            rows_added,
            rows_updated,
        }
    }

    /// Each table's rows for this commit, by partition: new rows and copies
    /// (files this process wrote are at hand; the others are fetched at once).
    pub(super) async fn gather(
        &self,
        snapshot: u64,
        plans: Vec<TablePlan<'a>>,
        anchors: &Anchors<'_>,
    ) -> Result<Vec<TableRows>> {
        let origins: Vec<Either<RecordBatch, bytes::Bytes>> = futures::stream::iter(
            plans
                .iter()
                .flat_map(|p| p.stored.iter().map(|(path, _)| path)),
        )
        .map(|path| async move {
            if let Some(kept) = self.files.written(path) {
                return Ok(Either::Left(kept));
            }
            let got = self.loc.store.get(&self.loc.child(path)).await?;
            Ok::<_, Error>(Either::Right(got.bytes().await?))
        })
        .buffered(8)
        .try_collect()
        .await?;
        // Tables are independent: each is gathered on a core of its own, its
        // copies on every core.
        let mut origins = origins.into_iter();
        let jobs: Vec<(TablePlan, Vec<Either<RecordBatch, bytes::Bytes>>)> = plans
            .into_iter()
            .map(|p| {
                let o = origins.by_ref().take(p.stored.len()).collect();
                (p, o)
            })
            .collect();
        let anchor_of_id = |id: i64| anchors.of(id);
        let order = self.state.ingest_order();
        let out: Vec<TableRows> = parallel_map(&jobs, |(plan, origins)| {
            let ts = plan.ts;
            let mut sources: Vec<RecordBatch> = Vec::new();
            if let Some(t) = plan.new {
                let batch = apply_patches(ts, &t.batch, &plan.new_patches)?;
                sources.push(datafile::physical_at(
                    ts,
                    &batch,
                    snapshot,
                    t.healpix.as_ref(),
                )?);
            }
            let copies = parallel_map(
                &plan.stored.iter().zip(origins).collect::<Vec<_>>(),
                |((path, rows), origin)| {
                    let positions: Vec<u32> = rows.iter().map(|r| r.0).collect();
                    let taken = match origin {
                        Either::Left(kept) => arrow_select::take::take_record_batch(
                            kept,
                            &arrow_array::UInt32Array::from(positions),
                        )?,
                        Either::Right(bytes) => {
                            datafile::decode_rows(bytes.clone(), path, &positions)?
                        }
                    };
                    let served = datafile::only_served(ts, &taken)?;
                    let local: Vec<(usize, Patch)> = rows
                        .iter()
                        .enumerate()
                        .map(|(i, (_, p))| (i, p.clone()))
                        .collect();
                    datafile::physical(ts, &apply_patches(ts, &served, &local)?, snapshot)
                },
            )?;
            sources.extend(copies);
            table_rows(ts, order, self.cell_rows, sources, &anchor_of_id)
        })?;
        Ok(out)
    }

    /// Writes one file per partition touched; encoding is CPU-bound and
    /// partitions are independent, so it uses every core.
    pub(super) async fn write(
        &self,
        snapshot: u64,
        tables: &[TableRows],
    ) -> Result<Vec<FileEntry>> {
        let encoded = encode_partitions(self.schema, snapshot, tables)?;
        let added: Vec<FileEntry> = futures::stream::iter(encoded)
            .map(|(bytes, entry, sorted)| async move {
                // Later chunks of a night revisit these rows (versions closed,
                // sources withdrawn or reassigned): from memory, not decoded.
                if matches!(
                    entry.table,
                    TableId::DiaObject | TableId::DiaSource | TableId::DiaForcedSource
                ) {
                    self.files.wrote(&entry.path, sorted);
                }
                self.loc
                    .store
                    .put(&self.loc.child(&entry.path), PutPayload::from(bytes))
                    .await?;
                Ok::<_, Error>(entry)
            })
            .buffered(8)
            .try_collect()
            .await?;
        Ok(added)
    }
}

/// Sorts and encodes each partition's new file, on every core.
fn encode_partitions(
    schema: &CatalogSchema,
    snapshot: u64,
    tables: &[TableRows],
) -> Result<Vec<(bytes::Bytes, FileEntry, RecordBatch)>> {
    type Job<'t> = (&'t TableRows, Option<Cell>, &'t [(usize, usize)]);
    let mut jobs: Vec<Job> = tables
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |(c, rows)| (t, *c, rows.as_slice()))
        })
        .collect();
    // Largest files first, so that no core is left encoding a big one alone
    // at the end (a wide DiaObject row costs several narrow ones).
    let cost = |(t, _, rows): &Job| rows.len() * t.sources.first().map_or(1, |b| b.num_columns());
    jobs.sort_by_key(|j| std::cmp::Reverse(cost(j)));
    let encoded = parallel_map(&jobs, |(rows, cell, picked)| {
        if picked.is_empty() {
            return Ok(None);
        }
        let ts = schema.table(rows.table);
        // Only the sources this partition draws from (a table has one per
        // file it copies rows from), renumbered.
        let used: BTreeMap<usize, usize> = picked
            .iter()
            .map(|(src, _)| *src)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(local, src)| (src, local))
            .collect();
        let picked: Vec<(usize, usize)> =
            picked.iter().map(|(src, row)| (used[src], *row)).collect();
        let picked = picked.as_slice();
        let sources: Vec<&RecordBatch> = used.keys().map(|&src| &rows.sources[src]).collect();
        let gather =
            |arrays: Vec<&dyn Array>| arrow_select::interleave::interleave(&arrays, picked);
        let column = |name: &str| -> Result<Option<ArrayRef>> {
            let arrays: Option<Vec<&dyn Array>> = sources
                .iter()
                .map(|b| b.column_by_name(name).map(|c| c.as_ref()))
                .collect();
            Ok(arrays.map(gather).transpose()?)
        };
        let mut keys: Vec<ArrayRef> = Vec::new();
        if let Some(anchors) = &rows.anchors {
            keys.push(gather(
                used.keys()
                    .map(|&src| &anchors[src] as &dyn Array)
                    .collect(),
            )?);
        } else if ts.id.has_position() {
            keys.extend(column(crate::schema::HEALPIX_29)?);
        }
        for name in datafile::sort_keys(ts.id) {
            keys.extend(column(name)?);
        }
        let keys: Vec<arrow_ord::sort::SortColumn> = keys
            .into_iter()
            .map(|values| arrow_ord::sort::SortColumn {
                values,
                options: None,
            })
            .collect();
        let perm = arrow_ord::sort::lexsort_to_indices(&keys, None)?;
        let sorted: Vec<(usize, usize)> =
            perm.values().iter().map(|&i| picked[i as usize]).collect();
        let batch = arrow_select::interleave::interleave_record_batch(&sources, &sorted)?;
        let sorted = datafile::without_empty_columns(ts, &batch)?;
        let path = datafile::new_path(ts.id, *cell, snapshot, "s");
        let (bytes, mut entry) = datafile::encode_file(ts, *cell, path, &sorted)?;
        if let Some(held) = cell.and_then(|c| rows.merged.get(&c)) {
            entry.stats.merged_cells = merged_cells(held, &sorted, rows.order);
        }
        Ok(Some((bytes, entry, sorted)))
    })?;
    Ok(encoded.into_iter().flatten().collect())
}

/// Gathers one table's sources: conforms them to one schema, finds each
/// row's sort anchor and the cell at `order` of the file it goes to: its
/// object's, else its own position's. (A copy lands where it was, unless a
/// reassignment took its object away: then beside its own position.)
fn table_rows(
    ts: &TableSchema,
    order: u8,
    cell_rows: usize,
    sources: Vec<RecordBatch>,
    anchor_of: &(dyn Fn(i64) -> Option<i64> + Sync),
) -> Result<TableRows> {
    let batches = datafile::conform_all(ts, &sources)?;
    let anchors: Option<Vec<Int64Array>> = batches
        .iter()
        .map(|b| sort_anchors(ts, b, anchor_of))
        .collect();
    let mut partitions: BTreeMap<Option<Cell>, Vec<(usize, usize)>> = BTreeMap::new();
    for (i, b) in batches.iter().enumerate() {
        if !ts.id.is_partitioned() {
            partitions
                .entry(None)
                .or_default()
                .extend((0..b.num_rows()).map(|r| (i, r)));
            continue;
        }
        let (ra, dec) = radec(b);
        let own = b
            .column_by_name(crate::schema::HEALPIX_29)
            .map(|c| c.as_primitive::<Int64Type>());
        let anchor = anchors.as_ref().map(|a| &a[i]).or(own);
        for row in 0..b.num_rows() {
            // The anchor is the object's order-29 index, else the row's
            // own: its cell is the one `Cell::of_position` gives.
            let cell = match anchor.filter(|a| a.is_valid(row)) {
                Some(a) => Cell::of_healpix_29(order, a.value(row)),
                None => Cell::of_position(order, ra.value(row), dec.value(row)),
            };
            partitions.entry(Some(cell)).or_default().push((i, row));
        }
    }
    let (partitions, merged) = super::cells::coarsen(partitions, order, cell_rows);
    Ok(TableRows {
        table: ts.id,
        sources: batches,
        anchors,
        partitions,
        merged,
        order,
    })
}

/// The ingest-order cells a merged file's rows lie in: those its rows were
/// gathered from (their objects' partitions) and those of their own positions.
pub(crate) fn merged_cells(held: &[u64], batch: &RecordBatch, order: u8) -> Vec<u64> {
    let mut cells: std::collections::BTreeSet<u64> = held.iter().copied().collect();
    if let Some(h) = batch.column_by_name(crate::schema::HEALPIX_29) {
        let h = h.as_primitive::<Int64Type>();
        cells.extend(
            h.iter()
                .flatten()
                .map(|v| Cell::of_healpix_29(order, v).npix),
        );
    }
    cells.into_iter().collect()
}
