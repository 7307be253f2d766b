//! Replica chunks and src chunks (docs/chunks.md §1–3): the manifest, the table
//! files and the update records, read and checked before anything is written.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int16Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, new_null_array};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use bytes::Bytes;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use serde_json::Value;

use crate::error::{Error, Location, Refusal, Result};
use crate::felis::Datatype;
use crate::schema::{CatalogSchema, TableId, TableSchema};
use crate::store;

/// Manifest format of a PPDB replica chunk.
pub const REPLICA_FORMAT: &str = "ppdb-replica-chunk/1";
/// Manifest format of a src (PromptSource) chunk.
pub const SRC_FORMAT: &str = "src-chunk/1";
/// The manifest's file name.
pub const MANIFEST: &str = "chunk.json";

/// One file listed by a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// `DiaObject`, ..., or `updates`.
    pub table: String,
    /// Path relative to the chunk folder.
    pub path: String,
    /// Declared row count.
    pub rows: u64,
}

/// A parsed `chunk.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// [`REPLICA_FORMAT`] or [`SRC_FORMAT`].
    pub format: String,
    /// Orders commits within a format.
    pub chunk_id: i64,
    /// ISO-8601 UTC time with a `Z` suffix.
    pub last_update_time: String,
    /// Identity of this exact content.
    pub unique_id: String,
    /// The data files.
    pub files: Vec<ManifestFile>,
}

/// Which APDB update record a row of `updates` is.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateKind {
    /// `withdraw_diasource`.
    WithdrawDiaSource {
        /// Target.
        dia_source_id: i64,
        /// New `timeWithdrawnMjdTai`.
        time: f64,
        /// Must equal the row's `diaObjectId` when given.
        dia_object_id: Option<i64>,
    },
    /// `withdraw_diaforcedsource`.
    WithdrawDiaForcedSource {
        /// Target key.
        dia_object_id: i64,
        /// Target key.
        visit: i64,
        /// Target key.
        detector: i16,
        /// New `timeWithdrawnMjdTai`.
        time: f64,
    },
    /// `reassign_diasource`.
    ReassignDiaSource {
        /// Target.
        dia_source_id: i64,
        /// New `ssObjectId`.
        ss_object_id: i64,
        /// New `ssObjectReassocTimeMjdTai`.
        time: f64,
        /// Must equal the row's `diaObjectId` when given.
        dia_object_id: Option<i64>,
    },
    /// `close_diaobject_validity`.
    CloseDiaObject {
        /// Target object.
        dia_object_id: i64,
        /// New `validityEndMjdTai` of its open version.
        validity_end: f64,
        /// Replaces `nDiaSources` when given.
        n_dia_sources: Option<i32>,
    },
    /// `update_n_dia_sources`.
    UpdateNDiaSources {
        /// Target object.
        dia_object_id: i64,
        /// New `nDiaSources` of its open version.
        n_dia_sources: i32,
    },
}

/// One update record.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRecord {
    /// Row in the updates file (for errors).
    pub row: usize,
    /// `update_time_ns`.
    pub time_ns: i64,
    /// `update_order`.
    pub order: i32,
    /// Approximate position of the target row.
    pub ra: f64,
    /// Approximate position of the target row.
    pub dec: f64,
    /// What it does.
    pub kind: UpdateKind,
}

/// A table file of a chunk, checked; its columns are the served ones it has, in schema order.
#[derive(Debug, Clone)]
pub struct TableFile {
    /// Which table.
    pub table: TableId,
    /// Path relative to the chunk folder.
    pub path: String,
    /// The file's rows: the served columns it has, in schema order.
    pub batch: RecordBatch,
    /// Each row's position as an order-29 HEALPix index, for tables with
    /// positions (worked out while the chunk is read, off the commit's path).
    pub healpix: Option<Int64Array>,
    /// The row of each value of the table's key (unique, checked when read).
    pub rows_by_key: foldhash::HashMap<Key, usize>,
}

/// A chunk read and checked file by file (key and update checks need the catalog).
#[derive(Debug, Clone)]
pub struct LoadedChunk {
    /// Where it was read from (for errors).
    pub source: String,
    /// The manifest.
    pub manifest: Manifest,
    /// Table files.
    pub tables: Vec<TableFile>,
    /// The `updates` file's path and records, sorted by (time, order).
    pub updates: Option<(String, Vec<UpdateRecord>)>,
}

impl LoadedChunk {
    /// The file of one table, if the chunk has one.
    pub fn table(&self, id: TableId) -> Option<&TableFile> {
        self.tables.iter().find(|t| t.table == id)
    }
}

/// Reads only the manifest of a chunk folder (to order chunks before loading them).
pub async fn read_manifest(loc: &store::Location) -> Result<Manifest> {
    let src = loc.url.clone();
    let refuse = |loc: Location, m: String| Error::refused(&src, Refusal::Manifest, loc, m);
    let bytes = match loc.store.get(&loc.child(MANIFEST)).await {
        Ok(r) => r.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(refuse(
                Location::file(MANIFEST),
                "chunk.json is missing".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        refuse(
            Location::file(MANIFEST),
            format!("chunk.json is not valid JSON: {e}"),
        )
    })?;
    parse_manifest(&v).map_err(|(key, m)| refuse(Location::file(MANIFEST).column(key), m))
}

fn parse_manifest(v: &Value) -> std::result::Result<Manifest, (String, String)> {
    let obj = v.as_object().ok_or((
        "".to_string(),
        "chunk.json must be a JSON object".to_string(),
    ))?;
    let get = |k: &str| {
        obj.get(k)
            .ok_or((k.to_string(), format!("chunk.json lacks key {k:?}")))
    };
    let string = |k: &str| {
        get(k)?
            .as_str()
            .map(str::to_string)
            .ok_or((k.to_string(), format!("{k:?} must be a string")))
    };
    let format = string("format")?;
    if format != REPLICA_FORMAT && format != SRC_FORMAT {
        return Err((
            "format".into(),
            format!("unknown format {format:?} (expected {REPLICA_FORMAT:?} or {SRC_FORMAT:?})"),
        ));
    }
    let chunk_id = get("chunk_id")?.as_i64().ok_or((
        "chunk_id".to_string(),
        "\"chunk_id\" must be a 64-bit integer".to_string(),
    ))?;
    let last_update_time = string("last_update_time")?;
    if !last_update_time.ends_with('Z')
        || chrono::DateTime::parse_from_rfc3339(&last_update_time).is_err()
    {
        return Err((
            "last_update_time".into(),
            format!(
                "\"last_update_time\" {last_update_time:?} is not ISO-8601 UTC with a Z suffix"
            ),
        ));
    }
    let unique_id = string("unique_id")?;
    let files_v = get("files")?
        .as_array()
        .ok_or(("files".to_string(), "\"files\" must be a list".to_string()))?;
    let mut files = Vec::new();
    for (i, f) in files_v.iter().enumerate() {
        let at = format!("files[{i}]");
        let o = f
            .as_object()
            .ok_or((at.clone(), format!("{at} must be an object")))?;
        let field = |k: &str| {
            o.get(k)
                .ok_or((at.clone(), format!("{at} lacks key {k:?}")))
        };
        let table = field("table")?
            .as_str()
            .ok_or((at.clone(), format!("{at}.table must be a string")))?
            .to_string();
        let path = field("path")?
            .as_str()
            .ok_or((at.clone(), format!("{at}.path must be a string")))?
            .to_string();
        let rows = field("rows")?.as_u64().ok_or((
            at.clone(),
            format!("{at}.rows must be a non-negative integer"),
        ))?;
        files.push(ManifestFile { table, path, rows });
    }
    Ok(Manifest {
        format,
        chunk_id,
        last_update_time,
        unique_id,
        files,
    })
}

fn allowed_tables(format: &str) -> &'static [&'static str] {
    if format == SRC_FORMAT {
        &["PromptSource"]
    } else {
        &[
            "DiaObject",
            "DiaSource",
            "DiaForcedSource",
            "DetectorVisitProcessingSummary",
            "SSObject",
            "updates",
        ]
    }
}

/// Reads a whole chunk and checks everything that does not need the catalog:
/// §4.1 (manifest, files, row counts), §4.3 (columns, types, nulls) and the
/// per-value rules of §4.4 (bands, coordinate ranges, columns only updates may set).
pub async fn load(loc: &store::Location, schema: &CatalogSchema) -> Result<LoadedChunk> {
    let manifest = read_manifest(loc).await?;
    let src = loc.url.clone();
    let refuse = |kind, at: Location, m: String| Error::refused(&src, kind, at, m);
    let allowed = allowed_tables(&manifest.format);
    let mut seen = BTreeSet::new();
    for (i, f) in manifest.files.iter().enumerate() {
        let at = Location::file(MANIFEST).column(format!("files[{i}].table"));
        if !allowed.contains(&f.table.as_str()) {
            return Err(refuse(
                Refusal::Manifest,
                at,
                format!(
                    "unknown table {:?} for format {} (allowed: {})",
                    f.table,
                    manifest.format,
                    allowed.join(", ")
                ),
            ));
        }
        if !seen.insert(f.table.clone()) {
            return Err(refuse(
                Refusal::Manifest,
                at,
                format!("table {} appears twice", f.table),
            ));
        }
        if f.path.starts_with('/') || f.path.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(refuse(
                Refusal::Manifest,
                Location::file(MANIFEST).column(format!("files[{i}].path")),
                format!(
                    "path {:?} must be relative and stay inside the chunk folder",
                    f.path
                ),
            ));
        }
    }
    let mut tables = Vec::new();
    let mut updates = None;
    for f in &manifest.files {
        let bytes = match loc.store.get(&loc.child(&f.path)).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(refuse(
                    Refusal::Manifest,
                    Location::file(&f.path),
                    format!("listed file {} is missing", f.path),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let batch = read_parquet(bytes, &f.path)
            .map_err(|m| refuse(Refusal::Manifest, Location::file(&f.path), m))?;
        if batch.num_rows() as u64 != f.rows {
            return Err(refuse(
                Refusal::Manifest,
                Location::file(&f.path),
                format!(
                    "file has {} rows but chunk.json says {}",
                    batch.num_rows(),
                    f.rows
                ),
            ));
        }
        if f.table == "updates" {
            let records = parse_updates(&batch, &f.path, &src)?;
            updates = Some((f.path.clone(), records));
        } else {
            let id: TableId = f
                .table
                .parse()
                .map_err(|m: String| refuse(Refusal::Manifest, Location::file(MANIFEST), m))?;
            let ts = schema.table(id);
            let conformed = conform(&batch, ts, &f.path, &src)?;
            check_values(&conformed, ts, &f.path, &src)?;
            let rows_by_key = unique_keys(&conformed, ts, &f.path, &src)?;
            let healpix = id
                .has_position()
                .then(|| crate::datafile::healpix_column(&conformed));
            tables.push(TableFile {
                table: id,
                path: f.path.clone(),
                batch: conformed,
                healpix,
                rows_by_key,
            });
        }
    }
    Ok(LoadedChunk {
        source: src,
        manifest,
        tables,
        updates,
    })
}

fn read_parquet(bytes: Bytes, path: &str) -> std::result::Result<RecordBatch, String> {
    // The decoders are other people's code fed bytes from outside: a panic in
    // them (arrow-ipc 59 has `unimplemented!` on some malformed schemas) must
    // refuse the chunk, not end the process.
    std::panic::catch_unwind(|| decode_parquet(bytes, path)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the reader failed");
        Err(format!("{path} is not a readable Parquet file: {why}"))
    })
}

fn decode_parquet(bytes: Bytes, path: &str) -> std::result::Result<RecordBatch, String> {
    // Types are checked against the schema, not against the writer's embedded
    // Arrow schema, which is only one more thing to decode (and to fail on).
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options)
        .map_err(|e| format!("{path} is not a readable Parquet file: {e}"))?;
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| format!("{path}: {e}"))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| format!("{path}: {e}"))
}

fn same_physical_type(file: &DataType, want: &DataType) -> bool {
    // Parquet stores strings one way; Arrow may read them back as any string type.
    let string =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    file == want || (string(file) && string(want))
}

/// Checks columns against the table's contract and returns them in schema order.
fn conform(batch: &RecordBatch, ts: &TableSchema, file: &str, src: &str) -> Result<RecordBatch> {
    let refuse = |at: Location, m: String| Error::refused(src, Refusal::Column, at, m);
    let schema = batch.schema();
    for field in schema.fields() {
        let name = field.name();
        let Some(idx) = ts.column_index(name) else {
            return Err(refuse(
                Location::file(file).column(name),
                format!(
                    "column {name} is not defined for table {} in the schema",
                    ts.id
                ),
            ));
        };
        let want = ts.arrow.field(idx).data_type();
        if !same_physical_type(field.data_type(), want) {
            return Err(refuse(
                Location::file(file).column(name),
                format!(
                    "column {name} has type {} but the schema says {want}",
                    field.data_type()
                ),
            ));
        }
    }
    for req in &ts.required {
        if schema.index_of(req).is_err() {
            return Err(refuse(
                Location::file(file).column(*req),
                format!("required column {req} is missing"),
            ));
        }
    }
    for nn in &ts.not_null {
        let col = batch
            .column_by_name(nn)
            .expect("required columns were checked above");
        if col.null_count() > 0 {
            let row = (0..col.len()).find(|&i| col.is_null(i)).unwrap_or(0);
            return Err(refuse(
                Location::file(file).column(*nn).row(row),
                format!("column {nn} must not be NULL"),
            ));
        }
    }
    // Keep only the columns the file has, in schema order: most of a table's
    // ~100 columns are absent from a chunk, and readers see them as NULL.
    let fields: Vec<arrow_schema::FieldRef> = ts
        .arrow
        .fields()
        .iter()
        .filter(|f| schema.index_of(f.name()).is_ok())
        .cloned()
        .collect();
    let columns: Vec<ArrayRef> = fields
        .iter()
        .map(|f| {
            let c = batch
                .column_by_name(f.name())
                .expect("filtered to present columns");
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type()).map_err(Error::from)
            }
        })
        .collect::<Result<_>>()?;
    Ok(RecordBatch::try_new(
        Arc::new(ArrowSchema::new(fields)),
        columns,
    )?)
}

fn check_values(batch: &RecordBatch, ts: &TableSchema, file: &str, src: &str) -> Result<()> {
    let refuse = |col: &str, row: usize, m: String| {
        Error::refused(
            src,
            Refusal::Value,
            Location::file(file).column(col).row(row),
            m,
        )
    };
    if let Some(band) = batch.column_by_name("band") {
        let band = band.as_string::<i32>();
        for (row, b) in band.iter().enumerate() {
            if let Some(b) = b
                && (b.len() != 1 || !"ugrizy".contains(b))
            {
                return Err(refuse(
                    "band",
                    row,
                    format!("band {b:?} is not one of u, g, r, i, z, y"),
                ));
            }
        }
    }
    // Felis `char`, `string` and `text` are VOTable `char`: 7-bit ASCII. Results
    // declare such columns `char`, which clients read byte by byte, so a stored
    // value outside ASCII would reach them garbled (or not at all).
    for c in &ts.felis.columns {
        if !matches!(
            c.datatype,
            Datatype::Char | Datatype::String | Datatype::Text
        ) {
            continue;
        }
        let Some(col) = batch.column_by_name(&c.name) else {
            continue;
        };
        let Some(text) = col.as_string_opt::<i32>() else {
            continue;
        };
        if text.values().is_ascii() {
            continue;
        }
        if let Some((row, v)) = text
            .iter()
            .enumerate()
            .find_map(|(row, v)| v.filter(|v| !v.is_ascii()).map(|v| (row, v)))
        {
            return Err(refuse(
                &c.name,
                row,
                format!(
                    "{v:?} is not ASCII: the schema declares {} as {}, which holds ASCII text only",
                    c.name,
                    c.datatype.as_str()
                ),
            ));
        }
    }
    if ts.id.has_position() {
        for (name, lo, hi, hi_open) in [("ra", 0.0, 360.0, true), ("dec", -90.0, 90.0, false)] {
            let col = batch
                .column_by_name(name)
                .expect("position columns are served");
            for (row, v) in col.as_primitive::<Float64Type>().iter().enumerate() {
                if let Some(v) = v {
                    let ok = v >= lo && if hi_open { v < hi } else { v <= hi };
                    if !ok {
                        let range = if hi_open {
                            format!("[{lo}, {hi})")
                        } else {
                            format!("[{lo}, {hi}]")
                        };
                        return Err(refuse(
                            name,
                            row,
                            format!("{name} = {v} is outside {range}"),
                        ));
                    }
                }
            }
        }
    }
    let only_updates: &[&str] = match ts.id {
        TableId::DiaObject => &["validityEndMjdTai"],
        TableId::DiaSource => &["timeWithdrawnMjdTai", "ssObjectReassocTimeMjdTai"],
        TableId::DiaForcedSource => &["timeWithdrawnMjdTai"],
        _ => &[],
    };
    for name in only_updates {
        if let Some(col) = batch.column_by_name(name)
            && let Some(row) = (0..col.len()).find(|&i| col.is_valid(i))
        {
            return Err(refuse(
                name,
                row,
                format!("{name} must be NULL in a chunk: only the engine or update records set it"),
            ));
        }
    }
    Ok(())
}

/// A table key's values in one row: floats by their bits, NULL as
/// `i64::MIN`, unused trailing places 0.
pub(crate) type Key = [i64; 3];

/// The keys of every row, built a column at a time.
pub(crate) fn keys_of(cols: &[ArrayRef], rows: usize) -> Result<Vec<Key>> {
    let mut keys = vec![[0i64; 3]; rows];
    for (i, c) in cols.iter().enumerate() {
        let values: Vec<i64> = match c.data_type() {
            DataType::Float64 => c
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|v| v.to_bits() as i64)
                .collect(),
            DataType::Int64 | DataType::Int32 | DataType::Int16 => {
                arrow::compute::cast(c, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            }
            _ => vec![i64::MIN; rows],
        };
        for (row, (k, v)) in keys.iter_mut().zip(values).enumerate() {
            k[i] = if c.is_null(row) { i64::MIN } else { v };
        }
    }
    Ok(keys)
}

/// Refuses keys that repeat inside the file (§4.4): the table's key, and for
/// DiaForcedSource its own id too. Part of reading the chunk, so it runs
/// while the chunk before commits. Returns the row of each value of the key.
fn unique_keys(
    batch: &RecordBatch,
    ts: &TableSchema,
    file: &str,
    src: &str,
) -> Result<foldhash::HashMap<Key, usize>> {
    let rows = |key: &[&str]| -> Result<foldhash::HashMap<Key, usize>> {
        let cols: Vec<ArrayRef> = key
            .iter()
            .filter_map(|n| batch.column_by_name(n).cloned())
            .collect();
        let mut seen = foldhash::HashMap::with_capacity_and_hasher(
            batch.num_rows(),
            foldhash::fast::RandomState::default(),
        );
        for (row, k) in keys_of(&cols, batch.num_rows())?.into_iter().enumerate() {
            if let Some(first) = seen.insert(k, row) {
                return Err(Error::refused(
                    src,
                    Refusal::Value,
                    Location::file(file).column(key.join(", ")).row(row),
                    format!(
                        "duplicate key ({}) in the chunk: same as row {first}",
                        key.join(", ")
                    ),
                ));
            }
        }
        Ok(seen)
    };
    let by_key = rows(&ts.key)?;
    if ts.id == TableId::DiaForcedSource {
        rows(&["diaForcedSourceId"])?;
    }
    Ok(by_key)
}

/// The columns of the `updates` file (docs/chunks.md §3).
pub fn updates_schema() -> SchemaRef {
    let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
    Arc::new(ArrowSchema::new(vec![
        f("update_time_ns", DataType::Int64, false),
        f("update_order", DataType::Int32, false),
        f("update_type", DataType::Utf8, false),
        f("diaObjectId", DataType::Int64, true),
        f("diaSourceId", DataType::Int64, true),
        f("visit", DataType::Int64, true),
        f("detector", DataType::Int16, true),
        f("ssObjectId", DataType::Int64, true),
        f("ssObjectReassocTimeMjdTai", DataType::Float64, true),
        f("timeWithdrawnMjdTai", DataType::Float64, true),
        f("validityEndMjdTai", DataType::Float64, true),
        f("nDiaSources", DataType::Int32, true),
        f("ra", DataType::Float64, false),
        f("dec", DataType::Float64, false),
    ]))
}

fn parse_updates(batch: &RecordBatch, file: &str, src: &str) -> Result<Vec<UpdateRecord>> {
    let want = updates_schema();
    let col_err = |c: &str, row: Option<usize>, m: String| {
        let mut at = Location::file(file).column(c);
        at.row = row;
        Error::refused(src, Refusal::Column, at, m)
    };
    for field in batch.schema().fields() {
        let Ok(w) = want.field_with_name(field.name()) else {
            return Err(col_err(
                field.name(),
                None,
                format!("column {} is not an update-record column", field.name()),
            ));
        };
        if !same_physical_type(field.data_type(), w.data_type()) {
            return Err(col_err(
                field.name(),
                None,
                format!(
                    "column {} has type {} but update records use {}",
                    field.name(),
                    field.data_type(),
                    w.data_type()
                ),
            ));
        }
    }
    let n = batch.num_rows();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for w in want.fields() {
        let c = match batch.column_by_name(w.name()) {
            Some(c) => arrow::compute::cast(c, w.data_type())?,
            None if !w.is_nullable() => {
                return Err(col_err(
                    w.name(),
                    None,
                    format!("required column {} is missing", w.name()),
                ));
            }
            None => new_null_array(w.data_type(), n),
        };
        if !w.is_nullable() && c.null_count() > 0 {
            let row = (0..n).find(|&i| c.is_null(i)).unwrap_or(0);
            return Err(col_err(
                w.name(),
                Some(row),
                format!("column {} must not be NULL", w.name()),
            ));
        }
        cols.push(c);
    }
    let i64c = |i: usize| cols[i].as_primitive::<Int64Type>();
    let f64c = |i: usize| cols[i].as_primitive::<Float64Type>();
    let (time, order, kind) = (
        i64c(0),
        cols[1].as_primitive::<Int32Type>(),
        cols[2].as_string::<i32>(),
    );
    let (obj, dsrc, visit, det) = (
        i64c(3),
        i64c(4),
        i64c(5),
        cols[6].as_primitive::<Int16Type>(),
    );
    let (sso, reassoc, withdrawn, vend) = (i64c(7), f64c(8), f64c(9), f64c(10));
    let (ndia, ra, dec) = (cols[11].as_primitive::<Int32Type>(), f64c(12), f64c(13));
    let opt = |a: &dyn Array, i: usize| a.is_valid(i);
    let mut out = Vec::with_capacity(n);
    for row in 0..n {
        let need = |name: &str, present: bool| {
            if present {
                Ok(())
            } else {
                Err(Error::refused(
                    src,
                    Refusal::Update,
                    Location::file(file).column(name).row(row),
                    format!("a {} record needs {name}", kind.value(row)),
                ))
            }
        };
        let some_i64 = |a: &arrow_array::Int64Array| a.is_valid(row).then(|| a.value(row));
        let k = match kind.value(row) {
            "withdraw_diasource" => {
                need("diaSourceId", opt(dsrc, row))?;
                need("timeWithdrawnMjdTai", opt(withdrawn, row))?;
                UpdateKind::WithdrawDiaSource {
                    dia_source_id: dsrc.value(row),
                    time: withdrawn.value(row),
                    dia_object_id: some_i64(obj),
                }
            }
            "withdraw_diaforcedsource" => {
                need("diaObjectId", opt(obj, row))?;
                need("visit", opt(visit, row))?;
                need("detector", opt(det, row))?;
                need("timeWithdrawnMjdTai", opt(withdrawn, row))?;
                UpdateKind::WithdrawDiaForcedSource {
                    dia_object_id: obj.value(row),
                    visit: visit.value(row),
                    detector: det.value(row),
                    time: withdrawn.value(row),
                }
            }
            "reassign_diasource" => {
                need("diaSourceId", opt(dsrc, row))?;
                need("ssObjectId", opt(sso, row))?;
                need("ssObjectReassocTimeMjdTai", opt(reassoc, row))?;
                UpdateKind::ReassignDiaSource {
                    dia_source_id: dsrc.value(row),
                    ss_object_id: sso.value(row),
                    time: reassoc.value(row),
                    dia_object_id: some_i64(obj),
                }
            }
            "close_diaobject_validity" => {
                need("diaObjectId", opt(obj, row))?;
                need("validityEndMjdTai", opt(vend, row))?;
                UpdateKind::CloseDiaObject {
                    dia_object_id: obj.value(row),
                    validity_end: vend.value(row),
                    n_dia_sources: ndia.is_valid(row).then(|| ndia.value(row)),
                }
            }
            "update_n_dia_sources" => {
                need("diaObjectId", opt(obj, row))?;
                need("nDiaSources", opt(ndia, row))?;
                UpdateKind::UpdateNDiaSources {
                    dia_object_id: obj.value(row),
                    n_dia_sources: ndia.value(row),
                }
            }
            other => {
                return Err(Error::refused(
                    src,
                    Refusal::Update,
                    Location::file(file).column("update_type").row(row),
                    format!(
                        "unknown update_type {other:?} (expected withdraw_diasource, \
                         withdraw_diaforcedsource, reassign_diasource, close_diaobject_validity \
                         or update_n_dia_sources)"
                    ),
                ));
            }
        };
        out.push(UpdateRecord {
            row,
            time_ns: time.value(row),
            order: order.value(row),
            ra: ra.value(row),
            dec: dec.value(row),
            kind: k,
        });
    }
    out.sort_by_key(|r| (r.time_ns, r.order));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parquet_file_the_decoder_panics_on_is_refused() {
        // Found by the chunk fuzz target: a DiaSource file with one byte changed in
        // its embedded Arrow schema made arrow-ipc 59 panic ("Type NONE not supported").
        let bytes = include_bytes!("../tests/data/malformed-arrow-schema.parquet");
        let e = read_parquet(Bytes::from_static(bytes), "DiaSource.parquet").unwrap_err();
        assert!(e.starts_with("DiaSource.parquet"), "{e}");
    }

    #[test]
    fn a_parquet_file_whose_values_overflow_the_decoder_is_refused() {
        // Found by the chunk fuzz target: a corrupt run header among
        // dictionary-encoded values makes parquet 59's bit reader shift a varint
        // past 64 bits, a panic where overflow checks are on (as in tests); the
        // panic is caught and the file refused.
        let bytes = include_bytes!("../tests/data/corrupt-rle-run.parquet");
        let read = read_parquet(Bytes::from_static(bytes), "DiaSource.parquet");
        if cfg!(debug_assertions) {
            let e = read.unwrap_err();
            assert!(e.starts_with("DiaSource.parquet is not a readable"), "{e}");
        }
    }

    #[test]
    fn file_paths_cannot_leave_the_chunk_folder() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for path in [
            "../DiaObject.parquet",
            "a/../../DiaObject.parquet",
            "/etc/passwd",
            "a//b.parquet",
            "",
        ] {
            let dir = tempfile::TempDir::new().unwrap();
            let manifest = serde_json::json!({"format": REPLICA_FORMAT, "chunk_id": 1,
                "last_update_time": "2025-11-26T03:20:00.000000Z", "unique_id": "u",
                "files": [{"table": "DiaObject", "path": path, "rows": 1}]});
            std::fs::write(dir.path().join(MANIFEST), manifest.to_string()).unwrap();
            let loc = store::open_existing_local(dir.path()).unwrap();
            let e = match rt.block_on(load(&loc, &CatalogSchema::builtin())) {
                Ok(_) => panic!("{path:?} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(
                e.contains("files[0].path") && e.contains("stay inside the chunk folder"),
                "{path:?}: {e}"
            );
        }
    }

    #[test]
    fn manifest_errors_name_the_key() {
        let v: Value = serde_json::json!({"format": REPLICA_FORMAT, "chunk_id": "x"});
        let (key, msg) = parse_manifest(&v).unwrap_err();
        assert_eq!(key, "chunk_id");
        assert!(msg.contains("64-bit integer"));
        let v: Value = serde_json::json!({"format": REPLICA_FORMAT, "chunk_id": 1,
            "last_update_time": "2025-11-26T03:20:00+01:00", "unique_id": "u", "files": []});
        let (key, _) = parse_manifest(&v).unwrap_err();
        assert_eq!(key, "last_update_time");
    }
}
