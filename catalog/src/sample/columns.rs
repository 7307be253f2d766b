//! Columns filled row by row, and the chunk folders they are written into.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow_schema::{Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::SampleSummary;
use crate::error::{Error, Result};

const MJD_UNIX_EPOCH: f64 = 40587.0;

/// Columns being filled for one table.
#[derive(Default)]
pub(super) struct Cols {
    order: Vec<&'static str>,
    i64s: BTreeMap<&'static str, Vec<Option<i64>>>,
    i32s: BTreeMap<&'static str, Vec<Option<i32>>>,
    i16s: BTreeMap<&'static str, Vec<Option<i16>>>,
    f64s: BTreeMap<&'static str, Vec<Option<f64>>>,
    f32s: BTreeMap<&'static str, Vec<Option<f32>>>,
    strs: BTreeMap<&'static str, Vec<Option<String>>>,
    rows: usize,
}

impl Cols {
    fn see(&mut self, name: &'static str) {
        if !self.order.contains(&name) {
            self.order.push(name);
        }
    }
    pub(super) fn i64(&mut self, n: &'static str, v: Option<i64>) {
        self.see(n);
        self.i64s.entry(n).or_default().push(v);
    }
    pub(super) fn i32(&mut self, n: &'static str, v: Option<i32>) {
        self.see(n);
        self.i32s.entry(n).or_default().push(v);
    }
    pub(super) fn i16(&mut self, n: &'static str, v: Option<i16>) {
        self.see(n);
        self.i16s.entry(n).or_default().push(v);
    }
    pub(super) fn f64(&mut self, n: &'static str, v: Option<f64>) {
        self.see(n);
        self.f64s.entry(n).or_default().push(v);
    }
    pub(super) fn f32(&mut self, n: &'static str, v: Option<f32>) {
        self.see(n);
        self.f32s.entry(n).or_default().push(v);
    }
    pub(super) fn str(&mut self, n: &'static str, v: Option<&str>) {
        self.see(n);
        self.strs.entry(n).or_default().push(v.map(str::to_string));
    }
    pub(super) fn end_row(&mut self) {
        self.rows += 1;
    }
    pub(super) fn take(&mut self) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for name in &self.order {
            let (a, dt): (ArrayRef, _) = if let Some(v) = self.i64s.remove(name) {
                (Arc::new(Int64Array::from(v)), arrow_schema::DataType::Int64)
            } else if let Some(v) = self.i32s.remove(name) {
                (Arc::new(Int32Array::from(v)), arrow_schema::DataType::Int32)
            } else if let Some(v) = self.i16s.remove(name) {
                (Arc::new(Int16Array::from(v)), arrow_schema::DataType::Int16)
            } else if let Some(v) = self.f64s.remove(name) {
                (
                    Arc::new(Float64Array::from(v)),
                    arrow_schema::DataType::Float64,
                )
            } else if let Some(v) = self.f32s.remove(name) {
                (
                    Arc::new(Float32Array::from(v)),
                    arrow_schema::DataType::Float32,
                )
            } else if let Some(v) = self.strs.remove(name) {
                (Arc::new(StringArray::from(v)), arrow_schema::DataType::Utf8)
            } else {
                continue;
            };
            fields.push(Field::new(*name, dt, a.null_count() > 0));
            arrays.push(a);
        }
        *self = Cols::default();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).ok()
    }
}

pub(super) fn mjd_to_unix(mjd: f64) -> f64 {
    (mjd - MJD_UNIX_EPOCH) * 86400.0
}

fn iso(mjd: f64) -> String {
    let secs = mjd_to_unix(mjd);
    let t = chrono::DateTime::from_timestamp(secs.floor() as i64, ((secs.fract()) * 1e9) as u32)
        .unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(super) fn uuid_from(rng: &mut ChaCha8Rng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let wrap = |source| Error::Parquet {
        path: path.display().to_string(),
        source,
    };
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(wrap)?;
    w.write(batch).map_err(wrap)?;
    w.close().map_err(wrap)?;
    Ok(())
}

pub(super) fn write_chunk(
    dir: &Path,
    format: &str,
    chunk_id: i64,
    last_update_mjd: f64,
    unique_id: String,
    tables: Vec<(&str, RecordBatch)>,
    summary: &mut SampleSummary,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files = Vec::new();
    for (table, batch) in tables {
        let name = format!("{table}.parquet");
        write_parquet(&dir.join(&name), &batch)?;
        files.push(json!({"table": table, "path": name, "rows": batch.num_rows()}));
        *summary.rows.entry(table.to_string()).or_default() += batch.num_rows() as u64;
    }
    let manifest = json!({
        "format": format,
        "chunk_id": chunk_id,
        "last_update_time": iso(last_update_mjd),
        "unique_id": unique_id,
        "files": files,
    });
    let path = dir.join("chunk.json");
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(&path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    summary.chunks += 1;
    Ok(())
}
