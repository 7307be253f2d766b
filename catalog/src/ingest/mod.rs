//! Committing one checked chunk as the next snapshot (docs/chunks.md §4).
//!
//! Rows are immutable once written. When an update record (or a new
//! DiaObject version) changes a stored row, the changed row is written again
//! as a new physical row of this snapshot and the old one is *retired* at this
//! snapshot by its position in its file. So the rows visible at snapshot `k`
//! are `_added <= k` minus those retired at or before `k`, and every column
//! value is the one known at `k`.
//!
//! [`Ingest::prepare`] runs the steps in order, one file each: `keys` (no key
//! committed twice), `anchors` (where each object's rows live), `objects`
//! (the versions of every DiaObject the chunk touches), `updates` (the rows
//! update records target, found and changed), `patch` (changed values
//! written into batches) and `write` (each partition's new file gathered,
//! sorted, encoded and stored). `stored` reads committed files for them.

mod anchors;
mod cells;
mod keys;
mod objects;
mod patch;
mod stored;
mod updates;
mod write;

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int16Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch};
use arrow_schema::DataType;

use crate::chunk::{Key, LoadedChunk, UpdateKind, keys_of};
use crate::datafile;
use crate::error::{Error, Location, Refusal, Result};
use crate::healpix::{self, Cell};
use crate::index::{self, AnchorIndex};
use crate::log::{ChunkRef, Commit, LogState, Retirement};
use crate::schema::{CatalogSchema, RETIRED, TableId, TableSchema};
use crate::store::Location as StoreLocation;

use anchors::Anchors;
use stored::StoredFile;

pub(crate) use anchors::sort_anchors;
pub(crate) use write::merged_cells;

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

/// What one commit will write, ready to be appended to the log.
pub(crate) struct Prepared {
    pub commit: Commit,
    /// The anchors the commit's index file holds.
    pub new_anchors: Vec<(i64, i64)>,
}

/// One chunk being committed over the catalog's current state.
pub(crate) struct Ingest<'a> {
    pub loc: &'a StoreLocation,
    pub files: &'a datafile::ColumnCache,
    pub schema: &'a CatalogSchema,
    pub state: &'a LogState,
    pub index: &'a AnchorIndex,
    pub chunk: &'a LoadedChunk,
    /// The most rows a new file of a merged cell may hold.
    pub cell_rows: usize,
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

    /// Writes the chunk's files and its index file as snapshot `snapshot`;
    /// the commit that makes them visible is the caller's to append.
    pub async fn prepare(&self, snapshot: u64) -> Result<Prepared> {
        self.check_committed_keys().await?;
        let anchors = self.anchors();
        let mut cache = HashMap::new();
        let mut objects = self.object_versions(&mut cache).await?;
        let targets = self.locate_targets(&mut cache, &anchors).await?;
        let changed = self.apply_updates(&cache, &targets, &mut objects)?;
        let plan = self.plan_tables(updates::patches(&objects, changed));
        let tables = self.gather(snapshot, plan.tables, &anchors).await?;
        let added = self.write(snapshot, &tables).await?;
        let new_anchors = anchors.new;
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
                retired: plan
                    .retired
                    .into_iter()
                    .map(|(path, rows)| Retirement { path, rows })
                    .collect(),
                index: index_files,
                rows_added: plan.rows_added,
                rows_updated: plan.rows_updated,
            },
            new_anchors,
        })
    }
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
