//! Committed files read for a chunk: only the columns a step needs, once per
//! file, with which of their rows are still live.

use super::*;

/// Stored rows read for this chunk: projected columns plus what retired rows.
pub(super) struct StoredFile {
    pub batch: RecordBatch,
    /// `_retired` as stored (set by compaction), if the file has it.
    retired_col: Option<Int64Array>,
    /// Positions the log retires.
    retired_pos: HashSet<u32>,
}

impl StoredFile {
    /// Whether the row is live in the current state. Asked only of rows whose
    /// key matched, so liveness is never worked out for a whole file.
    pub(super) fn live(&self, row: usize) -> bool {
        self.retired_col.as_ref().is_none_or(|r| r.is_null(row))
            && !self.retired_pos.contains(&(row as u32))
    }
}

impl Ingest<'_> {
    pub(super) async fn read_stored(
        &self,
        cache: &mut HashMap<String, StoredFile>,
        path: &str,
        cols: &[&str],
    ) -> Result<()> {
        if cache.contains_key(path) {
            return Ok(());
        }
        let live_file = &self.state.files[path];
        let mut want: Vec<&str> = cols.to_vec();
        want.push(RETIRED);
        let ts = self.schema.table(live_file.entry.table);
        let batch = self.files.read(self.loc, ts, path, &want).await?;
        let retired_col = batch
            .column_by_name(RETIRED)
            .map(|c| c.as_primitive::<Int64Type>().clone())
            .filter(|c| c.null_count() < c.len());
        let retired_pos = live_file.retired.iter().map(|(pos, _)| *pos).collect();
        cache.insert(
            path.to_string(),
            StoredFile {
                batch,
                retired_col,
                retired_pos,
            },
        );
        Ok(())
    }

    /// The files of `table` that could hold each wanted key, with the keys
    /// to look for in each: files whose ranges of the named columns hold the
    /// key's values, and (when `near`) that lie in one of the key's cells.
    pub(super) fn candidates<const N: usize>(
        &self,
        table: TableId,
        wanted: &HashMap<Key, Vec<Cell>>,
        near: bool,
        ranges: impl Fn(&Key) -> [(&'static str, i64); N],
    ) -> BTreeMap<String, HashSet<Key>> {
        let mut out: BTreeMap<String, HashSet<Key>> = BTreeMap::new();
        if wanted.is_empty() {
            return out;
        }
        let mut by_cell: HashMap<Option<Cell>, Vec<&crate::log::LiveFile>> = HashMap::new();
        for f in self.files_of(table) {
            by_cell.entry(f.entry.cell).or_default().push(f);
        }
        let holds = |f: &crate::log::LiveFile, key: &Key| {
            ranges(key).iter().all(|(col, v)| {
                f.entry
                    .stats
                    .ints
                    .get(*col)
                    .is_some_and(|&(lo, hi)| lo <= *v && *v <= hi)
            })
        };
        for (key, cells) in wanted {
            let mut add = |files: &[&crate::log::LiveFile]| {
                for f in files.iter().filter(|f| holds(f, key)) {
                    out.entry(f.entry.path.clone()).or_default().insert(*key);
                }
            };
            if near {
                let cells: HashSet<Option<Cell>> = with_ancestors(cells.iter().copied())
                    .into_iter()
                    .map(Some)
                    .chain([None])
                    .collect();
                for c in cells {
                    add(by_cell.get(&c).map_or(&[], |v| v.as_slice()));
                }
            } else {
                for files in by_cell.values() {
                    add(files);
                }
            }
        }
        out
    }

    /// Where the live stored rows with the wanted keys are (first match per
    /// key), reading each file once.
    pub(super) async fn locate(
        &self,
        cache: &mut HashMap<String, StoredFile>,
        files: &BTreeMap<String, HashSet<Key>>,
        cols: &[&str],
        key_cols: &[&str],
    ) -> Result<HashMap<Key, (String, usize)>> {
        let mut found: HashMap<Key, (String, usize)> = HashMap::new();
        for (path, wanted) in files {
            if wanted.iter().all(|k| found.contains_key(k)) {
                continue;
            }
            self.read_stored(cache, path, cols).await?;
            let f = &cache[path];
            let c = columns(&f.batch, key_cols);
            // The first key column is an Int64 id: the cache gives the few rows
            // that may hold a wanted key (by an index once the file is looked up
            // again, however many rows it gathered).
            let Some(ids) = c.first().and_then(|c| c.as_primitive_opt::<Int64Type>()) else {
                continue;
            };
            let rows = self
                .files
                .rows_of(path, key_cols[0], ids, wanted.iter().map(|k| k[0]));
            for key in wanted {
                if found.contains_key(key) {
                    continue;
                }
                let from = rows.partition_point(|(id, _)| *id < key[0]);
                let row = rows[from..]
                    .iter()
                    .take_while(|(id, _)| *id == key[0])
                    .map(|(_, r)| *r as usize)
                    .find(|&row| key_at(&c, row) == *key && f.live(row));
                if let Some(row) = row {
                    found.insert(*key, (path.clone(), row));
                }
            }
        }
        Ok(found)
    }
}
