//! Replica chunks and src chunks (docs/chunks.md §1–3): the manifest, the table
//! files and the update records, read and checked before anything is written.
mod keys;
mod manifest;
mod tables;
mod updates;

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

use keys::unique_keys;
pub(crate) use keys::{Key, keys_of};
use manifest::allowed_tables;
pub use manifest::read_manifest;
use tables::{check_values, conform, read_parquet, same_physical_type};
use updates::parse_updates;
pub use updates::updates_schema;

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

#[cfg(test)]
mod tests {
    use super::manifest::parse_manifest;
    use super::*;

    #[test]
    fn a_parquet_file_the_decoder_panics_on_is_refused() {
        // Found by the chunk fuzz target: a DiaSource file with one byte changed in
        // its embedded Arrow schema made arrow-ipc 59 panic ("Type NONE not supported").
        let bytes = include_bytes!("../../tests/data/malformed-arrow-schema.parquet");
        let e = read_parquet(Bytes::from_static(bytes), "DiaSource.parquet").unwrap_err();
        assert!(e.starts_with("DiaSource.parquet"), "{e}");
    }

    #[test]
    fn a_parquet_file_whose_values_overflow_the_decoder_is_refused() {
        // Found by the chunk fuzz target: a corrupt run header among
        // dictionary-encoded values makes parquet 59's bit reader shift a varint
        // past 64 bits, a panic where overflow checks are on (as in tests); the
        // panic is caught and the file refused.
        let bytes = include_bytes!("../../tests/data/corrupt-rle-run.parquet");
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
