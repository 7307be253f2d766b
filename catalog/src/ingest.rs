//! Committing one checked chunk as the next snapshot (docs/chunks.md §4).
//!
//! Rows are immutable once written. When an update record (or a new
//! DiaObject version) changes a stored row, the changed row is written again
//! as a new physical row of this snapshot and the old one is *retired* at this
//! snapshot by its position in its file. So the rows visible at snapshot `k`
//! are `_added <= k` minus those retired at or before `k`, and every column
//! value is the one known at `k`.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int16Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch};
use arrow_schema::DataType;
use futures::future::Either;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};

use crate::chunk::{Key, LoadedChunk, UpdateKind, UpdateRecord, keys_of};
use crate::datafile;
use crate::error::{Error, Location, Refusal, Result};
use crate::healpix::{self, Cell};
use crate::index::{self, AnchorIndex};
use crate::log::{ChunkRef, Commit, FileEntry, LogState, Retirement};
use crate::schema::{CatalogSchema, RETIRED, TableId, TableSchema};
use crate::store::Location as StoreLocation;

/// A row the chunk touches: one of its own new rows, or a stored one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RowRef {
    New(usize),
    Stored { path: Arc<str>, pos: u32 },
}

/// A value an update writes into a column.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val {
    F64(Option<f64>),
    I64(Option<i64>),
    I32(Option<i32>),
}

type Patch = Vec<(&'static str, Val)>;

/// One table's rows for this commit: new rows and patched copies as source
/// batches sharing one schema, the sort anchor of every row, and the rows
/// (source, row) each partition receives. Each partition's file is gathered
/// from the sources in its sorted order, so rows are copied once.
struct TableRows {
    table: TableId,
    sources: Vec<RecordBatch>,
    anchors: Option<Vec<Int64Array>>,
    partitions: BTreeMap<Option<Cell>, Vec<(usize, usize)>>,
}

/// Stored rows to copy with new values, by file.
type StoredPatches = (Arc<str>, Vec<(u32, Patch)>);

/// What one table receives: the chunk's rows with the patches that fall on
/// them, and stored rows to copy with theirs.
struct TablePlan<'c> {
    ts: &'c TableSchema,
    new: Option<&'c crate::chunk::TableFile>,
    new_patches: Vec<(usize, Patch)>,
    stored: Vec<StoredPatches>,
}

#[derive(Debug, Clone)]
struct Version {
    start: f64,
    end: Option<f64>,
    n_dia: Option<i32>,
    orig_end: Option<f64>,
    orig_n_dia: Option<i32>,
    at: RowRef,
}

#[derive(Debug, Clone)]
struct SourceRow {
    at: RowRef,
    dia_object_id: Option<i64>,
    withdrawn: Option<f64>,
    ss_object_id: Option<i64>,
    reassoc: Option<f64>,
    dirty: bool,
}

/// Stored rows read for this chunk: projected columns plus what retired rows.
struct StoredFile {
    batch: RecordBatch,
    /// `_retired` as stored (set by compaction), if the file has it.
    retired_col: Option<Int64Array>,
    /// Positions the log retires.
    retired_pos: HashSet<u32>,
}

impl StoredFile {
    /// Whether the row is live in the current state. Asked only of rows whose
    /// key matched, so liveness is never worked out for a whole file.
    fn live(&self, row: usize) -> bool {
        self.retired_col.as_ref().is_none_or(|r| r.is_null(row))
            && !self.retired_pos.contains(&(row as u32))
    }
}

/// What one commit will write, ready to be appended to the log.
pub(crate) struct Prepared {
    pub commit: Commit,
    /// The anchors the commit's index file holds.
    pub new_anchors: Vec<(i64, i64)>,
}

pub(crate) struct Ingest<'a> {
    pub loc: &'a StoreLocation,
    pub files: &'a datafile::ColumnCache,
    pub schema: &'a CatalogSchema,
    pub state: &'a LogState,
    pub index: &'a AnchorIndex,
    pub chunk: &'a LoadedChunk,
}

fn int_at(col: &ArrayRef, row: usize) -> Option<i64> {
    if col.is_null(row) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Int64 => col.as_primitive::<Int64Type>().value(row),
        DataType::Int32 => col.as_primitive::<Int32Type>().value(row) as i64,
        DataType::Int16 => col.as_primitive::<Int16Type>().value(row) as i64,
        DataType::Float64 => col.as_primitive::<Float64Type>().value(row).to_bits() as i64,
        _ => return None,
    })
}

fn key_at(cols: &[ArrayRef], row: usize) -> Key {
    let mut k = [0i64; 3];
    for (i, c) in cols.iter().enumerate() {
        k[i] = int_at(c, row).unwrap_or(i64::MIN);
    }
    k
}

fn columns(batch: &RecordBatch, names: &[&str]) -> Vec<ArrayRef> {
    names
        .iter()
        .filter_map(|n| batch.column_by_name(n).cloned())
        .collect()
}

impl<'a> Ingest<'a> {
    fn refuse(&self, kind: Refusal, at: Location, msg: impl Into<String>) -> Error {
        Error::refused(&self.chunk.source, kind, at, msg)
    }

    fn order(&self) -> u8 {
        self.state.partition_order
    }

    /// `Ok(None)` when the chunk is an exact re-send of a committed one.
    pub fn check_order(&self) -> Result<Option<()>> {
        let m = &self.chunk.manifest;
        let committed = self.state.chunks.get(&m.format);
        if let Some(uid) = committed.and_then(|c| c.get(&m.chunk_id)) {
            if *uid == m.unique_id {
                return Ok(None);
            }
            return Err(self.refuse(
                Refusal::Order,
                Location::file(crate::chunk::MANIFEST).column("unique_id"),
                format!(
                    "chunk {} was already committed with unique_id {uid:?}, not {:?}",
                    m.chunk_id, m.unique_id
                ),
            ));
        }
        if let Some((&last, _)) = committed.and_then(|c| c.last_key_value())
            && m.chunk_id <= last
        {
            return Err(self.refuse(
                Refusal::Order,
                Location::file(crate::chunk::MANIFEST).column("chunk_id"),
                format!(
                    "chunk_id {} is not greater than the last committed {last}",
                    m.chunk_id
                ),
            ));
        }
        Ok(Some(()))
    }

    async fn read_stored(
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

    fn files_of(&self, table: TableId) -> impl Iterator<Item = &crate::log::LiveFile> {
        self.state
            .files
            .values()
            .filter(move |f| f.entry.table == table)
    }

    /// Files of `table` that may hold rows of these partitions: theirs, and
    /// the coarser files of fresh ingests that cover them.
    fn files_in_cells(&self, table: TableId, cells: &HashSet<Cell>) -> Vec<String> {
        let cells = with_ancestors(cells.iter().copied());
        self.files_of(table)
            .filter(|f| f.entry.cell.is_none_or(|c| cells.contains(&c)))
            .map(|f| f.entry.path.clone())
            .collect()
    }

    fn files_with_range(&self, table: TableId, col: &str, lo: i64, hi: i64) -> Vec<String> {
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

    pub async fn prepare(&self, snapshot: u64) -> Result<Prepared> {
        let order = self.order();
        // Key checks (§4.4) against committed rows; repeats inside the chunk
        // were refused when it was read.
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

        // Anchors: existing ones from the index, new ones from this chunk's rows.
        let mut new_anchors: Vec<(i64, i64)> = Vec::new();
        let mut chunk_anchor: HashMap<i64, i64> = HashMap::new();
        let anchor_of = |id: i64, chunk_anchor: &HashMap<i64, i64>| {
            self.index
                .anchor(id)
                .or_else(|| chunk_anchor.get(&id).copied())
        };
        if let Some(t) = self.chunk.table(TableId::DiaObject) {
            let ids = i64s(&t.batch, "diaObjectId");
            let start = f64s(&t.batch, "validityStartMjdTai");
            let healpix = position_index(t);
            let mut first: HashMap<i64, (f64, usize)> = HashMap::new();
            for row in 0..t.batch.num_rows() {
                let id = ids.value(row);
                if self.index.anchor(id).is_none() {
                    let e = first.entry(id).or_insert((start.value(row), row));
                    if start.value(row) < e.0 {
                        *e = (start.value(row), row);
                    }
                }
            }
            let mut firsts: Vec<_> = first.into_iter().collect();
            firsts.sort_unstable_by_key(|(id, _)| *id);
            for (id, (_, row)) in firsts {
                let a = healpix(row);
                chunk_anchor.insert(id, a);
                new_anchors.push((id, a));
            }
        }
        for table in [TableId::DiaSource, TableId::DiaForcedSource] {
            if let Some(t) = self.chunk.table(table) {
                let ids = i64s(&t.batch, "diaObjectId");
                let healpix = position_index(t);
                for row in 0..t.batch.num_rows() {
                    if ids.is_valid(row) && anchor_of(ids.value(row), &chunk_anchor).is_none() {
                        let a = healpix(row);
                        chunk_anchor.insert(ids.value(row), a);
                        new_anchors.push((ids.value(row), a));
                    }
                }
            }
        }
        let cell_of_object =
            |id: i64| anchor_of(id, &chunk_anchor).map(|a| Cell::of_healpix_29(order, a));

        let mut cache: HashMap<String, StoredFile> = HashMap::new();
        let mut patches: HashMap<TableId, Vec<(RowRef, Patch)>> = HashMap::new();

        // DiaObject versions: stored versions of every object the chunk touches.
        let obj_cols = [
            "diaObjectId",
            "validityStartMjdTai",
            "validityEndMjdTai",
            "nDiaSources",
        ];
        let mut objects: HashMap<i64, Vec<Version>> = HashMap::new();
        let mut touched: HashSet<i64> = HashSet::new();
        if let Some(t) = self.chunk.table(TableId::DiaObject) {
            let ids = i64s(&t.batch, "diaObjectId");
            touched.extend(
                ids.values()
                    .iter()
                    .filter(|id| self.index.anchor(**id).is_some()),
            );
        }
        if let Some((_, recs)) = &self.chunk.updates {
            for r in recs {
                if let UpdateKind::CloseDiaObject { dia_object_id, .. }
                | UpdateKind::UpdateNDiaSources { dia_object_id, .. } = r.kind
                    && self.index.anchor(dia_object_id).is_some()
                {
                    touched.insert(dia_object_id);
                }
            }
        }
        let cells: HashSet<Cell> = touched
            .iter()
            .filter_map(|id| self.index.cell(order, *id))
            .collect();
        let paths = self.files_in_cells(TableId::DiaObject, &cells);
        for path in &paths {
            self.read_stored(&mut cache, path, &obj_cols).await?;
        }
        // Each file is scanned whole for the touched ids: on every core.
        let found = parallel_map(&paths, |path| {
            let f = &cache[path];
            let c = columns(&f.batch, &obj_cols);
            let (ids, start) = (
                c[0].as_primitive::<Int64Type>(),
                c[1].as_primitive::<Float64Type>(),
            );
            let (end, ndia) = (
                c[2].as_primitive::<Float64Type>(),
                c[3].as_primitive::<Int32Type>(),
            );
            let p: Arc<str> = Arc::from(path.as_str());
            let mut versions = Vec::new();
            for (row, id) in ids.values().iter().enumerate() {
                if touched.contains(id) && f.live(row) {
                    let e = end.is_valid(row).then(|| end.value(row));
                    let n = ndia.is_valid(row).then(|| ndia.value(row));
                    versions.push((
                        *id,
                        Version {
                            start: start.value(row),
                            end: e,
                            n_dia: n,
                            orig_end: e,
                            orig_n_dia: n,
                            at: RowRef::Stored {
                                path: p.clone(),
                                pos: row as u32,
                            },
                        },
                    ));
                }
            }
            Ok(versions)
        })?;
        for (id, v) in found.into_iter().flatten() {
            objects.entry(id).or_default().push(v);
        }
        for v in objects.values_mut() {
            v.sort_by(|a, b| a.start.total_cmp(&b.start));
        }
        if let Some(t) = self.chunk.table(TableId::DiaObject) {
            let ids = i64s(&t.batch, "diaObjectId");
            let start = f64s(&t.batch, "validityStartMjdTai");
            let ndia = t
                .batch
                .column_by_name("nDiaSources")
                .expect("required column, checked on load")
                .as_primitive::<Int32Type>();
            let mut changed: HashSet<i64> = HashSet::new();
            for row in 0..t.batch.num_rows() {
                let versions = objects.entry(ids.value(row)).or_default();
                if versions.iter().any(|v| v.start == start.value(row)) {
                    return Err(self.refuse(
                        Refusal::Value,
                        Location::file(&t.path).column("diaObjectId, validityStartMjdTai").row(row),
                        format!(
                            "key (diaObjectId, validityStartMjdTai) = ({}, {}) is already committed",
                            ids.value(row),
                            start.value(row)
                        ),
                    ));
                }
                versions.push(Version {
                    start: start.value(row),
                    end: None,
                    n_dia: Some(ndia.value(row)),
                    orig_end: None,
                    orig_n_dia: Some(ndia.value(row)),
                    at: RowRef::New(row),
                });
                changed.insert(ids.value(row));
            }
            for id in changed {
                let versions = objects.get_mut(&id).expect("just inserted");
                versions.sort_by(|a, b| a.start.total_cmp(&b.start));
                // Each version ends where the next begins; the last keeps its own end
                // (NULL if open, its closure if closed; a new last version is open).
                for i in 0..versions.len().saturating_sub(1) {
                    versions[i].end = Some(versions[i + 1].start);
                }
            }
        }

        // DiaSource and DiaForcedSource rows that update records target.
        let src_cols = [
            "diaSourceId",
            "diaObjectId",
            "timeWithdrawnMjdTai",
            "ssObjectId",
            "ssObjectReassocTimeMjdTai",
        ];
        let fsrc_cols = ["diaObjectId", "visit", "detector", "timeWithdrawnMjdTai"];
        let mut sources: HashMap<i64, SourceRow> = HashMap::new();
        let mut forced: HashMap<Key, SourceRow> = HashMap::new();
        let updates: &[UpdateRecord] = self
            .chunk
            .updates
            .as_ref()
            .map(|u| u.1.as_slice())
            .unwrap_or(&[]);
        let upd_file = self
            .chunk
            .updates
            .as_ref()
            .map(|u| u.0.clone())
            .unwrap_or_default();
        // The chunk's own rows by key, as found when it was read.
        let none = HashMap::new();
        let new_sources = self
            .chunk
            .table(TableId::DiaSource)
            .map_or(&none, |t| &t.rows_by_key);
        let new_forced = self
            .chunk
            .table(TableId::DiaForcedSource)
            .map_or(&none, |t| &t.rows_by_key);

        // Locate every stored row the records target, reading each candidate
        // file once: a file is a candidate for a key when it lies near the
        // record's position (or in its object's partition) and its id and
        // visit ranges hold the key's; failing that, any file whose ranges do.
        let mut want_src: HashMap<Key, Vec<Cell>> = HashMap::new();
        let mut want_forced: HashMap<Key, Vec<Cell>> = HashMap::new();
        for rec in updates {
            // A row is stored in its object's partition; one without an object
            // in its own position's, which the record's position is near.
            let near = |object: Option<i64>| match object.and_then(cell_of_object) {
                Some(cell) => vec![cell],
                None => Cell::of_position(order, rec.ra, rec.dec).with_neighbours(),
            };
            match &rec.kind {
                UpdateKind::WithdrawDiaSource {
                    dia_source_id: id,
                    dia_object_id,
                    ..
                }
                | UpdateKind::ReassignDiaSource {
                    dia_source_id: id,
                    dia_object_id,
                    ..
                } if !new_sources.contains_key(&[*id, 0, 0]) => {
                    want_src
                        .entry([*id, 0, 0])
                        .or_default()
                        .extend(near(*dia_object_id));
                }
                UpdateKind::WithdrawDiaForcedSource {
                    dia_object_id,
                    visit,
                    detector,
                    ..
                } => {
                    let key: Key = [*dia_object_id, *visit, *detector as i64];
                    if !new_forced.contains_key(&key) {
                        want_forced
                            .entry(key)
                            .or_default()
                            .extend(near(Some(*dia_object_id)));
                    }
                }
                _ => {}
            }
        }
        let src_ranges = |k: &Key| [("diaSourceId", k[0])];
        let forced_ranges = |k: &Key| [("diaObjectId", k[0]), ("visit", k[1])];
        let near = self.candidates(TableId::DiaSource, &want_src, true, src_ranges);
        let mut stored_src = self
            .locate(&mut cache, &near, &src_cols, &src_cols[..1])
            .await?;
        want_src.retain(|k, _| !stored_src.contains_key(k));
        let far = self.candidates(TableId::DiaSource, &want_src, false, src_ranges);
        stored_src.extend(
            self.locate(&mut cache, &far, &src_cols, &src_cols[..1])
                .await?,
        );
        let near = self.candidates(TableId::DiaForcedSource, &want_forced, true, forced_ranges);
        let mut stored_forced = self
            .locate(&mut cache, &near, &fsrc_cols, &fsrc_cols[..3])
            .await?;
        want_forced.retain(|k, _| !stored_forced.contains_key(k));
        let far = self.candidates(TableId::DiaForcedSource, &want_forced, false, forced_ranges);
        stored_forced.extend(
            self.locate(&mut cache, &far, &fsrc_cols, &fsrc_cols[..3])
                .await?,
        );

        for rec in updates {
            let at = |col: &str| Location::file(&upd_file).column(col).row(rec.row);
            match &rec.kind {
                UpdateKind::WithdrawDiaSource {
                    dia_source_id: id,
                    dia_object_id,
                    ..
                }
                | UpdateKind::ReassignDiaSource {
                    dia_source_id: id,
                    dia_object_id,
                    ..
                } => {
                    if !sources.contains_key(id) {
                        let found = if let Some(&row) = new_sources.get(&[*id, 0, 0]) {
                            let t = self
                                .chunk
                                .table(TableId::DiaSource)
                                .expect("row came from it");
                            Some(source_row(&t.batch, row, RowRef::New(row)))
                        } else {
                            stored_src.get(&[*id, 0, 0]).map(|(path, row)| {
                                let (path, row) = (path.clone(), *row);
                                let p: Arc<str> = Arc::from(path.as_str());
                                source_row(
                                    &cache[&path].batch,
                                    row,
                                    RowRef::Stored {
                                        path: p,
                                        pos: row as u32,
                                    },
                                )
                            })
                        };
                        let Some(found) = found else {
                            return Err(self.refuse(
                                Refusal::Update,
                                at("diaSourceId"),
                                format!(
                                    "{} targets DiaSource {id}, which does not exist",
                                    kind_name(&rec.kind)
                                ),
                            ));
                        };
                        sources.insert(*id, found);
                    }
                    let s = sources.get_mut(id).expect("inserted above");
                    if let Some(o) = dia_object_id
                        && s.dia_object_id != Some(*o)
                    {
                        return Err(self.refuse(
                                Refusal::Update,
                                at("diaObjectId"),
                                format!(
                                    "record says DiaSource {id} belongs to DiaObject {o}, but it belongs to {}",
                                    s.dia_object_id.map_or("none".to_string(), |v| v.to_string())
                                ),
                            ));
                    }
                    if s.withdrawn.is_some() {
                        return Err(self.refuse(
                            Refusal::Update,
                            at("diaSourceId"),
                            format!("DiaSource {id} is already withdrawn"),
                        ));
                    }
                    match rec.kind {
                        UpdateKind::WithdrawDiaSource { time, .. } => s.withdrawn = Some(time),
                        UpdateKind::ReassignDiaSource {
                            ss_object_id, time, ..
                        } => {
                            s.ss_object_id = Some(ss_object_id);
                            s.reassoc = Some(time);
                            s.dia_object_id = None;
                        }
                        _ => unreachable!("matched above"),
                    }
                    s.dirty = true;
                }
                UpdateKind::WithdrawDiaForcedSource {
                    dia_object_id,
                    visit,
                    detector,
                    time,
                } => {
                    let key: Key = [*dia_object_id, *visit, *detector as i64];
                    if let std::collections::hash_map::Entry::Vacant(e) = forced.entry(key) {
                        let found = if let Some(&row) = new_forced.get(&key) {
                            let t = self
                                .chunk
                                .table(TableId::DiaForcedSource)
                                .expect("row came from it");
                            Some(forced_row(&t.batch, row, RowRef::New(row)))
                        } else {
                            stored_forced.get(&key).map(|(path, row)| {
                                let (path, row) = (path.clone(), *row);
                                let p: Arc<str> = Arc::from(path.as_str());
                                forced_row(
                                    &cache[&path].batch,
                                    row,
                                    RowRef::Stored {
                                        path: p,
                                        pos: row as u32,
                                    },
                                )
                            })
                        };
                        let Some(found) = found else {
                            return Err(self.refuse(
                                Refusal::Update,
                                at("diaObjectId, visit, detector"),
                                format!(
                                    "withdraw_diaforcedsource targets DiaForcedSource ({dia_object_id}, {visit}, {detector}), which does not exist"
                                ),
                            ));
                        };
                        e.insert(found);
                    }
                    let s = forced.get_mut(&key).expect("inserted above");
                    if s.withdrawn.is_some() {
                        return Err(self.refuse(
                            Refusal::Update,
                            at("diaObjectId, visit, detector"),
                            format!("DiaForcedSource ({dia_object_id}, {visit}, {detector}) is already withdrawn"),
                        ));
                    }
                    s.withdrawn = Some(*time);
                    s.dirty = true;
                }
                UpdateKind::CloseDiaObject {
                    dia_object_id: id, ..
                }
                | UpdateKind::UpdateNDiaSources {
                    dia_object_id: id, ..
                } => {
                    let Some(last) = objects.get_mut(id).and_then(|v| v.last_mut()) else {
                        return Err(self.refuse(
                            Refusal::Update,
                            at("diaObjectId"),
                            format!(
                                "{} targets DiaObject {id}, which does not exist",
                                kind_name(&rec.kind)
                            ),
                        ));
                    };
                    if last.end.is_some() {
                        return Err(self.refuse(
                            Refusal::Update,
                            at("diaObjectId"),
                            format!(
                                "DiaObject {id} has no open version (its latest version is closed)"
                            ),
                        ));
                    }
                    match rec.kind {
                        UpdateKind::CloseDiaObject {
                            validity_end,
                            n_dia_sources,
                            ..
                        } => {
                            if validity_end < last.start {
                                return Err(self.refuse(
                                    Refusal::Update,
                                    at("validityEndMjdTai"),
                                    format!(
                                        "validityEndMjdTai {validity_end} is earlier than the open version's validityStartMjdTai {}",
                                        last.start
                                    ),
                                ));
                            }
                            last.end = Some(validity_end);
                            if let Some(n) = n_dia_sources {
                                last.n_dia = Some(n);
                            }
                        }
                        UpdateKind::UpdateNDiaSources { n_dia_sources, .. } => {
                            last.n_dia = Some(n_dia_sources)
                        }
                        _ => unreachable!("matched above"),
                    }
                }
            }
        }

        // Patches: every touched row whose values differ from what is stored.
        for versions in objects.values() {
            for v in versions {
                if v.end != v.orig_end || v.n_dia != v.orig_n_dia {
                    patches.entry(TableId::DiaObject).or_default().push((
                        v.at.clone(),
                        vec![
                            ("validityEndMjdTai", Val::F64(v.end)),
                            ("nDiaSources", Val::I32(v.n_dia)),
                        ],
                    ));
                }
            }
        }
        for s in sources.into_values().filter(|s| s.dirty) {
            patches.entry(TableId::DiaSource).or_default().push((
                s.at,
                vec![
                    ("timeWithdrawnMjdTai", Val::F64(s.withdrawn)),
                    ("ssObjectId", Val::I64(s.ss_object_id)),
                    ("ssObjectReassocTimeMjdTai", Val::F64(s.reassoc)),
                    ("diaObjectId", Val::I64(s.dia_object_id)),
                ],
            ));
        }
        for s in forced.into_values().filter(|s| s.dirty) {
            patches
                .entry(TableId::DiaForcedSource)
                .or_default()
                .push((s.at, vec![("timeWithdrawnMjdTai", Val::F64(s.withdrawn))]));
        }

        // Assemble what each partition gets: new rows (patched) and patched copies.
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
        // Files this process wrote are at hand; the others are fetched at once.
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
        // Each row's object anchor is looked up once, here, and decides both
        // the row's partition and its place in the file.
        let anchor_of_id = |id: i64| {
            self.index
                .anchor(id)
                .or_else(|| chunk_anchor.get(&id).copied())
        };
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
            table_rows(ts, order, sources, &anchor_of_id)
        })?;

        // Write one file per partition touched.
        // Encoding is CPU-bound and partitions are independent: use every core.
        let encoded = encode_partitions(self.schema, snapshot, &out)?;
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
        let index_files = if new_anchors.is_empty() {
            vec![]
        } else {
            vec![index::write(self.loc, snapshot, &new_anchors).await?]
        };
        let m = &self.chunk.manifest;
        Ok(Prepared {
            commit: Commit {
                snapshot,
                committed_at: chrono::Utc::now(),
                chunk: ChunkRef {
                    format: m.format.clone(),
                    chunk_id: m.chunk_id,
                    unique_id: m.unique_id.clone(),
                    last_update_time: m.last_update_time.clone(),
                },
                added,
                retired: retired
                    .into_iter()
                    .map(|(path, rows)| Retirement { path, rows })
                    .collect(),
                index: index_files,
                rows_added,
                rows_updated,
            },
            new_anchors,
        })
    }

    /// The files of `table` that could hold each wanted key, with the keys
    /// to look for in each: files whose ranges of the named columns hold the
    /// key's values, and (when `near`) that lie in one of the key's cells.
    fn candidates<const N: usize>(
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
    async fn locate(
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
            // The first key column is an Int64 id: a set of its wanted values
            // rejects almost every row before the whole key is built.
            let first: HashSet<i64> = wanted.iter().map(|k| k[0]).collect();
            let Some(ids) = c.first().and_then(|c| c.as_primitive_opt::<Int64Type>()) else {
                continue;
            };
            for (row, id) in ids.values().iter().enumerate() {
                if !first.contains(id) {
                    continue;
                }
                let key = key_at(&c, row);
                if wanted.contains(&key) && f.live(row) {
                    found.entry(key).or_insert_with(|| (path.clone(), row));
                }
            }
        }
        Ok(found)
    }
}

/// The cells and every cell at a coarser order that holds one of them.
fn with_ancestors(cells: impl Iterator<Item = Cell>) -> HashSet<Cell> {
    let mut out = HashSet::new();
    for c in cells {
        for order in 0..=c.order {
            out.insert(c.ancestor(order));
        }
    }
    out
}

/// The order-29 index of a row's position in a chunk file of a table with
/// positions (required and checked finite when the chunk was read).
fn position_index(t: &crate::chunk::TableFile) -> impl Fn(usize) -> i64 + '_ {
    let (ra, dec) = radec(&t.batch);
    move |row| match &t.healpix {
        Some(h) if h.is_valid(row) => h.value(row),
        _ => healpix::healpix_29(ra.value(row), dec.value(row)),
    }
}

/// A required Int64 column of a checked chunk file.
fn i64s<'b>(batch: &'b RecordBatch, name: &str) -> &'b Int64Array {
    batch
        .column_by_name(name)
        .expect("required column, checked on load")
        .as_primitive::<Int64Type>()
}

/// A required Float64 column of a checked chunk file.
fn f64s<'b>(batch: &'b RecordBatch, name: &str) -> &'b Float64Array {
    batch
        .column_by_name(name)
        .expect("required column, checked on load")
        .as_primitive::<Float64Type>()
}

fn kind_name(k: &UpdateKind) -> &'static str {
    match k {
        UpdateKind::WithdrawDiaSource { .. } => "withdraw_diasource",
        UpdateKind::WithdrawDiaForcedSource { .. } => "withdraw_diaforcedsource",
        UpdateKind::ReassignDiaSource { .. } => "reassign_diasource",
        UpdateKind::CloseDiaObject { .. } => "close_diaobject_validity",
        UpdateKind::UpdateNDiaSources { .. } => "update_n_dia_sources",
    }
}

fn radec(batch: &RecordBatch) -> (&arrow_array::Float64Array, &arrow_array::Float64Array) {
    (
        batch
            .column_by_name("ra")
            .expect("positioned table")
            .as_primitive::<Float64Type>(),
        batch
            .column_by_name("dec")
            .expect("positioned table")
            .as_primitive::<Float64Type>(),
    )
}

fn opt_f64(batch: &RecordBatch, col: &str, row: usize) -> Option<f64> {
    let c = batch.column_by_name(col)?.as_primitive::<Float64Type>();
    c.is_valid(row).then(|| c.value(row))
}

fn opt_i64(batch: &RecordBatch, col: &str, row: usize) -> Option<i64> {
    let c = batch.column_by_name(col)?.as_primitive::<Int64Type>();
    c.is_valid(row).then(|| c.value(row))
}

fn source_row(batch: &RecordBatch, row: usize, at: RowRef) -> SourceRow {
    SourceRow {
        at,
        dia_object_id: opt_i64(batch, "diaObjectId", row),
        withdrawn: opt_f64(batch, "timeWithdrawnMjdTai", row),
        ss_object_id: opt_i64(batch, "ssObjectId", row),
        reassoc: opt_f64(batch, "ssObjectReassocTimeMjdTai", row),
        dirty: false,
    }
}

fn forced_row(batch: &RecordBatch, row: usize, at: RowRef) -> SourceRow {
    SourceRow {
        at,
        dia_object_id: opt_i64(batch, "diaObjectId", row),
        withdrawn: opt_f64(batch, "timeWithdrawnMjdTai", row),
        ss_object_id: None,
        reassoc: None,
        dirty: false,
    }
}

/// Returns the batch with patched values written into the rows named
/// (adding, as NULL elsewhere, a patched column the batch lacks).
fn apply_patches(
    ts: &TableSchema,
    batch: &RecordBatch,
    patches: &[(usize, Patch)],
) -> Result<RecordBatch> {
    if patches.is_empty() {
        return Ok(batch.clone());
    }
    let names: HashSet<&str> = patches
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(n, _)| *n))
        .collect();
    let mut wanted: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    wanted.extend(
        names
            .iter()
            .copied()
            .filter(|n| batch.column_by_name(n).is_none()),
    );
    let batch = with_columns(ts, batch, &wanted)?;
    let schema = batch.schema();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    for name in names {
        let idx = schema.index_of(name)?;
        let col = &cols[idx];
        let new: ArrayRef = match col.data_type() {
            DataType::Float64 => {
                let mut v: Vec<Option<f64>> = col.as_primitive::<Float64Type>().iter().collect();
                for (row, p) in patches {
                    for (n, val) in p {
                        if let (true, Val::F64(x)) = (*n == name, val) {
                            v[*row] = *x;
                        }
                    }
                }
                Arc::new(Float64Array::from(v))
            }
            DataType::Int64 => {
                let mut v: Vec<Option<i64>> = col.as_primitive::<Int64Type>().iter().collect();
                for (row, p) in patches {
                    for (n, val) in p {
                        if let (true, Val::I64(x)) = (*n == name, val) {
                            v[*row] = *x;
                        }
                    }
                }
                Arc::new(Int64Array::from(v))
            }
            DataType::Int32 => {
                let mut v: Vec<Option<i32>> = col.as_primitive::<Int32Type>().iter().collect();
                for (row, p) in patches {
                    for (n, val) in p {
                        if let (true, Val::I32(x)) = (*n == name, val) {
                            v[*row] = *x;
                        }
                    }
                }
                Arc::new(Int32Array::from(v))
            }
            other => {
                return Err(Error::Arrow(
                    arrow_schema::ArrowError::InvalidArgumentError(format!(
                        "cannot patch column {name} of type {other}"
                    )),
                ));
            }
        };
        cols[idx] = new;
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// The batch with exactly the served columns named (absent ones NULL).
fn with_columns(ts: &TableSchema, batch: &RecordBatch, names: &[&str]) -> Result<RecordBatch> {
    let fields: Vec<arrow_schema::FieldRef> = ts
        .arrow
        .fields()
        .iter()
        .filter(|f| names.contains(&f.name().as_str()))
        .cloned()
        .collect();
    datafile::conform_to(&Arc::new(arrow_schema::Schema::new(fields)), batch)
}

/// Applies `f` to every item on every core, keeping the order of the items.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, items.len().max(1));
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut all: Vec<(usize, Result<R>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![(
                        usize::MAX,
                        Err(Error::Log {
                            path: String::new(),
                            message: "a worker thread panicked".into(),
                        }),
                    )]
                })
            })
            .collect()
    });
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
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
        let (bytes, entry) = datafile::encode_file(ts, *cell, path, &sorted)?;
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
    sources: Vec<RecordBatch>,
    anchor_of: &(dyn Fn(i64) -> Option<i64> + Sync),
) -> Result<TableRows> {
    let batches = datafile::conform_all(ts, &sources)?;
    let anchors: Option<Vec<Int64Array>> =
        batches.iter().map(|b| anchors(ts, b, anchor_of)).collect();
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
    Ok(TableRows {
        table: ts.id,
        sources: batches,
        anchors,
        partitions,
    })
}

/// The sort anchor of each row: its object's anchor, else its own position.
pub(crate) fn anchors(
    ts: &TableSchema,
    phys: &RecordBatch,
    anchor_of: &(dyn Fn(i64) -> Option<i64> + Sync),
) -> Option<Int64Array> {
    if !matches!(
        ts.id,
        TableId::DiaObject | TableId::DiaSource | TableId::DiaForcedSource
    ) {
        return None;
    }
    let obj = phys
        .column_by_name("diaObjectId")?
        .as_primitive::<Int64Type>();
    let own = phys
        .column_by_name(crate::schema::HEALPIX_29)?
        .as_primitive::<Int64Type>();
    Some(
        (0..phys.num_rows())
            .map(|r| {
                let a = obj.is_valid(r).then(|| anchor_of(obj.value(r))).flatten();
                a.or_else(|| own.is_valid(r).then(|| own.value(r)))
            })
            .collect(),
    )
}
