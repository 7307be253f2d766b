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
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::healpix::{self, Cell};
use crate::log::{FileEntry, FileStats};
use crate::schema::{ADDED, HEALPIX_29, RETIRED, TableId, TableSchema};
use crate::store::Location;

mod cache;

pub use cache::ColumnCache;

/// Integer columns whose ranges the log keeps per file.
const INT_STATS: [&str; 6] = [
    "diaObjectId",
    "diaSourceId",
    "diaForcedSourceId",
    "visit",
    "sourceId",
    "ssObjectId",
];
/// Time columns whose ranges the log keeps per file.
const TIME_STATS: [&str; 3] = ["midpointMjdTai", "validityStartMjdTai", VALIDITY_END];
/// The column that closes a DiaObject version.
pub(crate) const VALIDITY_END: &str = "validityEndMjdTai";
/// Id columns that get a Parquet bloom filter.
const BLOOM: [&str; 4] = [
    "diaObjectId",
    "diaSourceId",
    "diaForcedSourceId",
    "sourceId",
];

/// Rows per row group: small enough that a cone or a light curve reads little.
pub const ROW_GROUP_ROWS: usize = 32 * 1024;
/// Rows per data page, so the page index narrows reads further.
pub const PAGE_ROWS: usize = 4 * 1024;

/// The physical batch of served rows (some or all served columns): adds
/// `_healpix_29`, `_added` = `snapshot` and `_retired`.
pub fn physical(ts: &TableSchema, served: &RecordBatch, snapshot: u64) -> Result<RecordBatch> {
    physical_at(ts, served, snapshot, None)
}

/// As `physical`, with the rows' order-29 indices when already known.
pub fn physical_at(
    ts: &TableSchema,
    served: &RecordBatch,
    snapshot: u64,
    healpix: Option<&Int64Array>,
) -> Result<RecordBatch> {
    let n = served.num_rows();
    let mut fields: Vec<arrow_schema::FieldRef> =
        served.schema().fields().iter().cloned().collect();
    let mut cols: Vec<ArrayRef> = served.columns().to_vec();
    let hidden = |name: &str| {
        ts.physical
            .field_with_name(name)
            .map(|f| Arc::new(f.clone()))
    };
    if ts.id.has_position() {
        fields.push(hidden(HEALPIX_29)?);
        cols.push(Arc::new(match healpix {
            Some(h) => h.clone(),
            None => healpix_column(served),
        }));
    }
    fields.push(hidden(ADDED)?);
    cols.push(Arc::new(Int64Array::from(vec![snapshot as i64; n])));
    fields.push(hidden(RETIRED)?);
    cols.push(new_null_array(&arrow_schema::DataType::Int64, n));
    Ok(RecordBatch::try_new(
        Arc::new(arrow_schema::Schema::new(fields)),
        cols,
    )?)
}

/// Batches holding different subsets of a table's physical columns, each
/// with the union of their columns, in schema order, NULL where absent.
pub fn conform_all(ts: &TableSchema, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let present: std::collections::HashSet<&str> = batches
        .iter()
        .flat_map(|b| {
            b.schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
        })
        .collect();
    let fields: Vec<arrow_schema::FieldRef> = ts
        .physical
        .fields()
        .iter()
        .filter(|f| present.contains(f.name().as_str()))
        .cloned()
        .collect();
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    batches.iter().map(|b| conform_to(&schema, b)).collect()
}

/// Drops served columns that hold no value: a file stores only what it has,
/// and readers see absent columns as NULL (most of the ~100 APDB columns are
/// empty in a given chunk, and each stored column costs time to encode).
pub fn without_empty_columns(ts: &TableSchema, phys: &RecordBatch) -> Result<RecordBatch> {
    let schema = phys.schema();
    let keep: Vec<usize> = (0..phys.num_columns())
        .filter(|&i| {
            let f = schema.field(i);
            let served = ts.column_index(f.name()).is_some();
            !served || !f.is_nullable() || phys.column(i).null_count() < phys.num_rows()
        })
        .collect();
    Ok(phys.project(&keep)?)
}

/// The batch's columns by the names of `schema`, a column it lacks as NULL.
pub fn conform_to(schema: &arrow_schema::SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .cloned()
                .unwrap_or_else(|| new_null_array(f.data_type(), batch.num_rows()))
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// A stored batch with every physical column of its table, absent ones as NULL.
pub fn conform_physical(ts: &TableSchema, stored: &RecordBatch) -> Result<RecordBatch> {
    conform_to(&ts.physical, stored)
}

/// The order-29 index of each row's position (NULL where it has none).
pub(crate) fn healpix_column(served: &RecordBatch) -> Int64Array {
    let ra = served
        .column_by_name("ra")
        .map(|c| c.as_primitive::<Float64Type>().clone());
    let dec = served
        .column_by_name("dec")
        .map(|c| c.as_primitive::<Float64Type>().clone());
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
pub fn sort(
    ts: &TableSchema,
    batch: &RecordBatch,
    anchor: Option<&Int64Array>,
) -> Result<RecordBatch> {
    let by = |n: &str| batch.column_by_name(n).cloned();
    let names = sort_keys(ts.id);
    let mut keys: Vec<SortColumn> = Vec::new();
    if let Some(a) = anchor {
        keys.push(SortColumn {
            values: Arc::new(a.clone()),
            options: None,
        });
    } else if ts.id.has_position() {
        keys.extend(by(HEALPIX_29).map(|values| SortColumn {
            values,
            options: None,
        }));
    }
    keys.extend(names.iter().filter_map(|n| by(n)).map(|values| SortColumn {
        values,
        options: None,
    }));
    let idx = lexsort_to_indices(&keys, None)?;
    Ok(arrow_select::take::take_record_batch(batch, &idx)?)
}

/// The columns that order a table's rows after the anchor (or position).
pub fn sort_keys(table: TableId) -> &'static [&'static str] {
    match table {
        TableId::DiaObject => &["diaObjectId", "validityStartMjdTai", ADDED],
        TableId::DiaSource => &["diaObjectId", "midpointMjdTai", "diaSourceId", ADDED],
        TableId::DiaForcedSource => &["diaObjectId", "midpointMjdTai", "diaForcedSourceId", ADDED],
        TableId::PromptSource => &["sourceId", ADDED],
        TableId::DetectorVisitProcessingSummary => &["visit", "detector", ADDED],
        TableId::SSObject => &["ssObjectId", ADDED],
    }
}

fn props(ts: &TableSchema, rows: usize) -> WriterProperties {
    let mut b = WriterProperties::builder()
        // LZ4 decodes fastest; a few percent larger than zstd here.
        .set_compression(Compression::LZ4_RAW)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(PAGE_ROWS)
        // Ids, positions and fluxes are nearly unique: trying a dictionary first
        // costs more than it saves. Low-cardinality strings keep one.
        .set_dictionary_enabled(false)
        .set_column_dictionary_enabled(ColumnPath::from("band"), true);
    for col in BLOOM {
        if ts.column_index(col).is_some() {
            b = b
                .set_column_bloom_filter_enabled(ColumnPath::from(col), true)
                .set_column_bloom_filter_fpp(ColumnPath::from(col), 0.01)
                // Sized to the file: the default (10^6 values) costs ~1 MiB per filter.
                .set_column_bloom_filter_max_ndv(
                    ColumnPath::from(col),
                    rows.clamp(1, ROW_GROUP_ROWS) as u64,
                );
        }
    }
    b.build()
}

/// Encodes a physical batch as a Parquet file in memory.
pub fn encode(ts: &TableSchema, batch: &RecordBatch, path: &str) -> Result<Bytes> {
    let wrap = |source| Error::Parquet {
        path: path.to_string(),
        source,
    };
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props(ts, batch.num_rows())))
        .map_err(wrap)?;
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

/// Rows with an open version, for a table with versions (a column left out
/// of a file because every value was NULL counts as all open).
fn open_versions(ts: &TableSchema, batch: &RecordBatch) -> Option<u64> {
    ts.physical.index_of(VALIDITY_END).ok()?;
    Some(match batch.column_by_name(VALIDITY_END) {
        Some(c) => c.null_count() as u64,
        None => batch.num_rows() as u64,
    })
}

/// The relative path of a new data file.
pub fn new_path(table: TableId, cell: Option<Cell>, snapshot: u64, tag: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    match cell {
        Some(c) => format!(
            "{table}/{}/{tag}{snapshot:08}-{}.parquet",
            c.hats_path(),
            &id[..12]
        ),
        None => format!("{table}/{tag}{snapshot:08}-{}.parquet", &id[..12]),
    }
}

/// Encodes a sorted physical batch as a new file and returns it with its log entry.
pub fn encode_file(
    ts: &TableSchema,
    cell: Option<Cell>,
    path: String,
    batch: &RecordBatch,
) -> Result<(Bytes, FileEntry)> {
    let bytes = encode(ts, batch, &path)?;
    let added = batch
        .column_by_name(ADDED)
        .map(|c| c.as_primitive::<Int64Type>().clone())
        .unwrap_or_else(|| Int64Array::from(Vec::<i64>::new()));
    let entry = FileEntry {
        path,
        table: ts.id,
        cell,
        rows: batch.num_rows() as u64,
        bytes: bytes.len() as u64,
        added_min: arrow::compute::min(&added).unwrap_or(0) as u64,
        added_max: arrow::compute::max(&added).unwrap_or(0) as u64,
        retired_min: None,
        pruned_below: None,
        pruned_keeping: None,
        retired_max: None,
        folded_through: None,
        stats: FileStats {
            open_versions: open_versions(ts, batch),
            ..stats(batch, cell)
        },
    };
    Ok((bytes, entry))
}

/// Writes a sorted physical batch as a new file and returns its log entry.
pub async fn write(
    loc: &Location,
    ts: &TableSchema,
    cell: Option<Cell>,
    path: String,
    batch: &RecordBatch,
) -> Result<FileEntry> {
    let (bytes, entry) = encode_file(ts, cell, path, batch)?;
    loc.store
        .put(&loc.child(&entry.path), PutPayload::from(bytes))
        .await?;
    Ok(entry)
}

/// Reads a stored file, all rows in file order, optionally only some columns.
pub async fn read(loc: &Location, path: &str, columns: Option<&[&str]>) -> Result<RecordBatch> {
    let bytes = loc.store.get(&loc.child(path)).await?.bytes().await?;
    let wrap = |source| Error::Parquet {
        path: path.to_string(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(wrap)?;
    let builder = match columns {
        Some(cols) => {
            let schema = builder.schema().clone();
            let roots: Vec<usize> = cols
                .iter()
                .filter_map(|c| schema.index_of(c).ok())
                .collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder.with_batch_size(64 * 1024).build().map_err(wrap)?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    let batch = arrow_select::concat::concat_batches(&schema, &batches)?;
    Ok(batch)
}

/// Reads some columns of a stored file of `ts`, in the order asked; a column
/// the file does not store comes back as NULL.
pub async fn read_columns(
    loc: &Location,
    ts: &TableSchema,
    path: &str,
    columns: &[&str],
) -> Result<RecordBatch> {
    let stored = read(loc, path, Some(columns)).await?;
    project(ts, &stored, columns)
}

/// Some columns of a stored batch, in the order asked, absent ones NULL.
fn project(ts: &TableSchema, stored: &RecordBatch, columns: &[&str]) -> Result<RecordBatch> {
    let n = stored.num_rows();
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for c in columns {
        let field = ts.physical.field_with_name(c)?;
        fields.push(field.clone().with_nullable(true));
        arrays.push(
            stored
                .column_by_name(c)
                .cloned()
                .unwrap_or_else(|| new_null_array(field.data_type(), n)),
        );
    }
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    Ok(RecordBatch::try_new_with_options(
        schema,
        arrays,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}

/// Decodes only the rows at `positions` (ascending) of a stored file, all columns.
pub fn decode_rows(bytes: Bytes, path: &str, positions: &[u32]) -> Result<RecordBatch> {
    let wrap = |source| Error::Parquet {
        path: path.to_string(),
        source,
    };
    let options = ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options).map_err(wrap)?;
    let total = builder.metadata().file_metadata().num_rows() as usize;
    let ranges = positions.iter().map(|&p| p as usize..p as usize + 1);
    let selection = RowSelection::from_consecutive_ranges(ranges, total);
    let reader = builder
        .with_row_selection(selection)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(wrap)?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    Ok(arrow_select::concat::concat_batches(&schema, &batches)?)
}

/// The served columns a stored batch has, in schema order (hidden ones dropped).
pub fn only_served(ts: &TableSchema, physical: &RecordBatch) -> Result<RecordBatch> {
    let keep: Vec<usize> = (0..physical.num_columns())
        .filter(|&i| {
            ts.column_index(physical.schema_ref().field(i).name())
                .is_some()
        })
        .collect();
    Ok(physical.project(&keep)?)
}

/// The served columns of a physical batch, absent ones as NULL.
pub fn served(ts: &TableSchema, physical: &RecordBatch) -> Result<RecordBatch> {
    conform_to(&ts.arrow, physical)
}

/// `true` for rows visible at `snapshot` by the stored columns alone
/// (`_added <= k AND (_retired IS NULL OR _retired > k)`).
pub fn visible_by_columns(physical: &RecordBatch, snapshot: u64, row: usize) -> bool {
    let k = snapshot as i64;
    let added = physical
        .column_by_name(ADDED)
        .map(|c| c.as_primitive::<Int64Type>().value(row));
    let retired = physical
        .column_by_name(RETIRED)
        .map(|c| c.as_primitive::<Int64Type>());
    added.is_some_and(|a| a <= k) && retired.is_none_or(|r| r.is_null(row) || r.value(row) > k)
}
