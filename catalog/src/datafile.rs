//! Stored Parquet files: how a partition's rows are laid out, written and read back.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, new_null_array};
use arrow_ord::sort::{SortColumn, lexsort_to_indices};
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::healpix::{self, Cell};
use crate::log::{FileEntry, FileStats};
use crate::schema::{ADDED, HEALPIX_29, RETIRED, TableId, TableSchema};
use crate::store::Location;

/// Integer columns whose ranges the log keeps per file.
const INT_STATS: [&str; 6] = ["diaObjectId", "diaSourceId", "diaForcedSourceId", "visit", "sourceId", "ssObjectId"];
/// Time columns whose ranges the log keeps per file.
const TIME_STATS: [&str; 2] = ["midpointMjdTai", "validityStartMjdTai"];
/// Id columns that get a Parquet bloom filter.
const BLOOM: [&str; 4] = ["diaObjectId", "diaSourceId", "diaForcedSourceId", "sourceId"];

/// Rows per row group: small enough that a cone or a light curve reads little.
pub const ROW_GROUP_ROWS: usize = 32 * 1024;
/// Rows per data page, so the page index narrows reads further.
pub const PAGE_ROWS: usize = 4 * 1024;

/// The physical batch of served rows: adds `_healpix_29`, `_added` = `snapshot`, `_retired`.
pub fn physical(ts: &TableSchema, served: &RecordBatch, snapshot: u64) -> Result<RecordBatch> {
    let n = served.num_rows();
    let mut cols: Vec<ArrayRef> = served.columns().to_vec();
    if ts.id.has_position() {
        cols.push(Arc::new(healpix_column(served)));
    }
    cols.push(Arc::new(Int64Array::from(vec![snapshot as i64; n])));
    cols.push(new_null_array(&arrow_schema::DataType::Int64, n));
    Ok(RecordBatch::try_new(ts.physical.clone(), cols)?)
}

fn healpix_column(served: &RecordBatch) -> Int64Array {
    let ra = served.column_by_name("ra").map(|c| c.as_primitive::<Float64Type>().clone());
    let dec = served.column_by_name("dec").map(|c| c.as_primitive::<Float64Type>().clone());
    match (ra, dec) {
        (Some(ra), Some(dec)) => ra
            .iter()
            .zip(dec.iter())
            .map(|(r, d)| match (r, d) {
                (Some(r), Some(d)) => Some(healpix::healpix_29(r, d)),
                _ => None,
            })
            .collect(),
        _ => Int64Array::new_null(served.num_rows()),
    }
}

/// Sorts a physical batch into storage order: by `anchor` (the order-29 index
/// of the row's object, so one object's rows are contiguous), then by the
/// table's natural key and time.
pub fn sort(ts: &TableSchema, batch: &RecordBatch, anchor: Option<&Int64Array>) -> Result<RecordBatch> {
    let by = |n: &str| batch.column_by_name(n).cloned();
    let names: &[&str] = match ts.id {
        TableId::DiaObject => &["diaObjectId", "validityStartMjdTai", ADDED],
        TableId::DiaSource => &["diaObjectId", "midpointMjdTai", "diaSourceId", ADDED],
        TableId::DiaForcedSource => &["diaObjectId", "midpointMjdTai", "diaForcedSourceId", ADDED],
        TableId::PromptSource => &["sourceId", ADDED],
        TableId::DetectorVisitProcessingSummary => &["visit", "detector", ADDED],
        TableId::SSObject => &["ssObjectId", ADDED],
    };
    let mut keys: Vec<SortColumn> = Vec::new();
    if let Some(a) = anchor {
        keys.push(SortColumn { values: Arc::new(a.clone()), options: None });
    } else if ts.id.has_position() {
        keys.extend(by(HEALPIX_29).map(|values| SortColumn { values, options: None }));
    }
    keys.extend(names.iter().filter_map(|n| by(n)).map(|values| SortColumn { values, options: None }));
    let idx = lexsort_to_indices(&keys, None)?;
    Ok(arrow_select::take::take_record_batch(batch, &idx)?)
}

fn props(ts: &TableSchema) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(PAGE_ROWS);
    for col in BLOOM {
        if ts.column_index(col).is_some() {
            b = b
                .set_column_bloom_filter_enabled(ColumnPath::from(col), true)
                .set_column_bloom_filter_fpp(ColumnPath::from(col), 0.01);
        }
    }
    b.build()
}

/// Encodes a physical batch as a Parquet file in memory.
pub fn encode(ts: &TableSchema, batch: &RecordBatch, path: &str) -> Result<Bytes> {
    let wrap = |source| Error::Parquet { path: path.to_string(), source };
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props(ts))).map_err(wrap)?;
    w.write(batch).map_err(wrap)?;
    w.close().map_err(wrap)?;
    Ok(Bytes::from(buf))
}

/// Computes the log's statistics of a physical batch.
pub fn stats(batch: &RecordBatch, cell: Option<Cell>) -> FileStats {
    let mut s = FileStats::default();
    if let Some(h) = batch.column_by_name(HEALPIX_29) {
        let h = h.as_primitive::<Int64Type>();
        s.healpix_29 = arrow::compute::min(h).zip(arrow::compute::max(h));
        if let Some(cell) = cell {
            let spill: BTreeSet<u64> = h
                .iter()
                .flatten()
                .map(|v| Cell::of_healpix_29(cell.order, v).npix)
                .filter(|&p| p != cell.npix)
                .collect();
            s.spill_cells = spill.into_iter().collect();
        }
    }
    for name in INT_STATS {
        if let Some(c) = batch.column_by_name(name) {
            let c = c.as_primitive::<Int64Type>();
            if let (Some(lo), Some(hi)) = (arrow::compute::min(c), arrow::compute::max(c)) {
                s.ints.insert(name.to_string(), (lo, hi));
            }
        }
    }
    for name in TIME_STATS {
        if let Some(c) = batch.column_by_name(name) {
            let c = c.as_primitive::<Float64Type>();
            if let (Some(lo), Some(hi)) = (arrow::compute::min(c), arrow::compute::max(c)) {
                s.times.insert(name.to_string(), (lo, hi));
            }
        }
    }
    s
}

/// The relative path of a new data file.
pub fn new_path(table: TableId, cell: Option<Cell>, snapshot: u64, tag: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    match cell {
        Some(c) => format!("{table}/{}/{tag}{snapshot:08}-{}.parquet", c.hats_path(), &id[..12]),
        None => format!("{table}/{tag}{snapshot:08}-{}.parquet", &id[..12]),
    }
}

/// Writes a sorted physical batch as a new file and returns its log entry.
pub async fn write(
    loc: &Location,
    ts: &TableSchema,
    cell: Option<Cell>,
    path: String,
    batch: &RecordBatch,
) -> Result<FileEntry> {
    let bytes = encode(ts, batch, &path)?;
    let size = bytes.len() as u64;
    loc.store.put(&loc.child(&path), PutPayload::from(bytes)).await?;
    let added = batch
        .column_by_name(ADDED)
        .map(|c| c.as_primitive::<Int64Type>().clone())
        .unwrap_or_else(|| Int64Array::from(Vec::<i64>::new()));
    Ok(FileEntry {
        path,
        table: ts.id,
        cell,
        rows: batch.num_rows() as u64,
        bytes: size,
        added_min: arrow::compute::min(&added).unwrap_or(0) as u64,
        added_max: arrow::compute::max(&added).unwrap_or(0) as u64,
        retired_min: None,
        stats: stats(batch, cell),
    })
}

/// Reads a stored file, all rows in file order, optionally only some columns.
pub async fn read(loc: &Location, path: &str, columns: Option<&[&str]>) -> Result<RecordBatch> {
    let bytes = loc.store.get(&loc.child(path)).await?.bytes().await?;
    let wrap = |source| Error::Parquet { path: path.to_string(), source };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(wrap)?;
    let builder = match columns {
        Some(cols) => {
            let schema = builder.schema().clone();
            let roots: Vec<usize> = cols.iter().filter_map(|c| schema.index_of(c).ok()).collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder.with_batch_size(64 * 1024).build().map_err(wrap)?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    let batch = arrow_select::concat::concat_batches(&schema, &batches)?;
    match columns {
        // Keep the caller's column order, whatever the file's is.
        Some(cols) => {
            let idx: Vec<usize> = cols.iter().filter_map(|c| batch.schema().index_of(c).ok()).collect();
            Ok(batch.project(&idx)?)
        }
        None => Ok(batch),
    }
}

/// The served columns of a physical batch.
pub fn served(ts: &TableSchema, physical: &RecordBatch) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> = ts
        .arrow
        .fields()
        .iter()
        .map(|f| {
            physical
                .column_by_name(f.name())
                .cloned()
                .unwrap_or_else(|| new_null_array(f.data_type(), physical.num_rows()))
        })
        .collect();
    Ok(RecordBatch::try_new(ts.arrow.clone(), cols)?)
}

/// `true` for rows visible at `snapshot` by the stored columns alone
/// (`_added <= k AND (_retired IS NULL OR _retired > k)`).
pub fn visible_by_columns(physical: &RecordBatch, snapshot: u64, row: usize) -> bool {
    let k = snapshot as i64;
    let added = physical.column_by_name(ADDED).map(|c| c.as_primitive::<Int64Type>().value(row));
    let retired = physical.column_by_name(RETIRED).map(|c| c.as_primitive::<Int64Type>());
    added.is_some_and(|a| a <= k) && retired.is_none_or(|r| r.is_null(row) || r.value(row) > k)
}
