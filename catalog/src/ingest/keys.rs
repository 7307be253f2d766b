//! No key is committed twice (docs/chunks.md §4.4): the chunk's keys against
//! the committed rows of files whose key ranges overlap them. Repeats inside
//! the chunk were refused when it was read.

use super::*;

impl Ingest<'_> {
    /// Refuses the chunk if any of its keys is already committed.
    pub(super) async fn check_committed_keys(&self) -> Result<()> {
        for t in &self.chunk.tables {
            let ts = self.schema.table(t.table);
            // Prune by a column that grows with time, so new rows rarely overlap old files.
            let range_col = match t.table {
                TableId::DiaForcedSource | TableId::DetectorVisitProcessingSummary => "visit",
                _ => ts.key[0],
            };
            self.check_keys(ts, t, &ts.key, range_col).await?;
            if t.table == TableId::DiaForcedSource {
                self.check_keys(ts, t, &["diaForcedSourceId"], "diaForcedSourceId")
                    .await?;
            }
        }
        Ok(())
    }

    pub(super) fn files_of(&self, table: TableId) -> impl Iterator<Item = &crate::log::LiveFile> {
        self.state
            .files
            .values()
            .filter(move |f| f.entry.table == table)
    }

    /// Files of `table` that may hold rows of these partitions: theirs, and
    /// the coarser files of fresh ingests that cover them.
    pub(super) fn files_in_cells(&self, table: TableId, cells: &HashSet<Cell>) -> Vec<String> {
        let cells = with_ancestors(cells.iter().copied());
        self.files_of(table)
            .filter(|f| f.entry.cell.is_none_or(|c| cells.contains(&c)))
            .map(|f| f.entry.path.clone())
            .collect()
    }

    pub(super) fn files_with_range(
        &self,
        table: TableId,
        col: &str,
        lo: i64,
        hi: i64,
    ) -> Vec<String> {
        self.files_of(table)
            .filter(|f| {
                f.entry
                    .stats
                    .ints
                    .get(col)
                    .is_some_and(|&(a, b)| a <= hi && lo <= b)
            })
            .map(|f| f.entry.path.clone())
            .collect()
    }

    /// Refuses keys of the chunk file that exist in committed data.
    async fn check_keys(
        &self,
        ts: &TableSchema,
        t: &crate::chunk::TableFile,
        key: &[&str],
        range_col: &str,
    ) -> Result<()> {
        let (file, batch) = (&t.path, &t.batch);
        if ts.id == TableId::DiaObject {
            return Ok(()); // checked against the object's stored versions in `objects`
        }
        let rc = batch
            .column_by_name(range_col)
            .expect("range column is a key column");
        let rc = rc.as_primitive::<Int64Type>();
        let (Some(lo), Some(hi)) = (arrow::compute::min(rc), arrow::compute::max(rc)) else {
            return Ok(());
        };
        // Usually none: the range column grows with time.
        let overlapping = self.files_with_range(ts.id, range_col, lo, hi);
        if overlapping.is_empty() {
            return Ok(());
        }
        // The table's own key was mapped to rows when the chunk was read.
        let seen: std::borrow::Cow<HashMap<Key, usize>> = if key == ts.key.as_slice() {
            std::borrow::Cow::Borrowed(&t.rows_by_key)
        } else {
            let cols = columns(batch, key);
            std::borrow::Cow::Owned(
                keys_of(&cols, batch.num_rows())?
                    .into_iter()
                    .enumerate()
                    .map(|(row, k)| (k, row))
                    .collect(),
            )
        };
        for path in overlapping {
            let stored = self.files.read(self.loc, ts, &path, key).await?;
            let scols = columns(&stored, key);
            for k in keys_of(&scols, stored.num_rows())? {
                if let Some(&row) = seen.get(&k) {
                    return Err(self.refuse(
                        Refusal::Value,
                        Location::file(file).column(key.join(", ")).row(row),
                        format!("key ({}) is already committed", key.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }
}
