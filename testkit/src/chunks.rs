//! Builds real chunk folders (chunk.json + Parquet files) for tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use catalog::schema::TableSchema;
use catalog::{CatalogSchema, TableId};
use parquet::arrow::ArrowWriter;
use serde_json::json;

/// A value for one column of a test row.
#[derive(Clone, Debug)]
pub enum V {
    I(i64),
    F(f64),
    S(&'static str),
    Null,
}

/// A table file of a test chunk: column names and rows.
#[derive(Clone, Debug)]
pub struct Rows {
    pub table: String,
    pub columns: Vec<(String, DataType)>,
    pub rows: Vec<Vec<V>>,
}

fn default_for(name: &str, dt: &DataType) -> V {
    match (name, dt) {
        ("band", _) => V::S("g"),
        ("ssObjectId", _) => V::Null,
        ("ra", _) => V::F(55.0),
        ("dec", _) => V::F(-30.0),
        (_, DataType::Utf8) => V::S("x"),
        (_, DataType::Float32 | DataType::Float64) => V::F(1.0),
        _ => V::I(1),
    }
}

/// Rows of `table` with every required column (defaults) plus the values given.
pub fn rows(table: TableId, given: &[&str], values: Vec<Vec<V>>) -> Rows {
    let schema = CatalogSchema::builtin();
    let ts: &TableSchema = schema.table(table);
    let mut columns: Vec<(String, DataType)> = Vec::new();
    for c in ts.required.iter().copied().chain(given.iter().copied()) {
        if !columns.iter().any(|(n, _)| n == c) {
            let f = ts
                .arrow
                .field(ts.column_index(c).expect("column of the schema"));
            columns.push((c.to_string(), f.data_type().clone()));
        }
    }
    let rows = values
        .into_iter()
        .map(|vals| {
            columns
                .iter()
                .map(|(name, dt)| match given.iter().position(|g| g == name) {
                    Some(i) => vals[i].clone(),
                    None => default_for(name, dt),
                })
                .collect()
        })
        .collect();
    Rows {
        table: table.name().to_string(),
        columns,
        rows,
    }
}

/// Update records: (type, [(column, value)], ra, dec).
pub fn updates(records: Vec<(&str, Vec<(&str, V)>)>) -> Rows {
    let cols: Vec<(String, DataType)> = catalog::chunk::updates_schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let rows = records
        .into_iter()
        .enumerate()
        .map(|(i, (kind, vals))| {
            cols.iter()
                .map(|(name, _)| match name.as_str() {
                    "update_time_ns" => V::I(1_000 + i as i64),
                    "update_order" => V::I(0),
                    "update_type" => V::S(Box::leak(kind.to_string().into_boxed_str())),
                    "ra" => vals
                        .iter()
                        .find(|v| v.0 == "ra")
                        .map(|v| v.1.clone())
                        .unwrap_or(V::F(55.0)),
                    "dec" => vals
                        .iter()
                        .find(|v| v.0 == "dec")
                        .map(|v| v.1.clone())
                        .unwrap_or(V::F(-30.0)),
                    other => vals
                        .iter()
                        .find(|v| v.0 == other)
                        .map(|v| v.1.clone())
                        .unwrap_or(V::Null),
                })
                .collect()
        })
        .collect();
    Rows {
        table: "updates".into(),
        columns: cols,
        rows,
    }
}

impl Rows {
    /// Replaces a column's type (to write a wrong type on purpose).
    pub fn with_type(mut self, column: &str, dt: DataType) -> Self {
        for c in &mut self.columns {
            if c.0 == column {
                c.1 = dt.clone();
            }
        }
        self
    }

    /// Drops a column.
    pub fn without(mut self, column: &str) -> Self {
        if let Some(i) = self.columns.iter().position(|c| c.0 == column) {
            self.columns.remove(i);
            for r in &mut self.rows {
                r.remove(i);
            }
        }
        self
    }

    /// Adds a column with one value for every row.
    pub fn with(mut self, column: &str, dt: DataType, v: V) -> Self {
        self.columns.push((column.to_string(), dt));
        for r in &mut self.rows {
            r.push(v.clone());
        }
        self
    }

    pub fn batch(&self) -> RecordBatch {
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (i, (name, dt)) in self.columns.iter().enumerate() {
            let vals = self.rows.iter().map(|r| r[i].clone());
            let a: ArrayRef = match dt {
                DataType::Int64 => Arc::new(Int64Array::from_iter(vals.map(|v| as_i(&v)))),
                DataType::Int32 => Arc::new(Int32Array::from_iter(
                    vals.map(|v| as_i(&v).map(|x| x as i32)),
                )),
                DataType::Int16 => Arc::new(Int16Array::from_iter(
                    vals.map(|v| as_i(&v).map(|x| x as i16)),
                )),
                DataType::Float64 => Arc::new(Float64Array::from_iter(vals.map(|v| as_f(&v)))),
                DataType::Float32 => Arc::new(Float32Array::from_iter(
                    vals.map(|v| as_f(&v).map(|x| x as f32)),
                )),
                DataType::Utf8 => Arc::new(StringArray::from_iter(vals.map(|v| match v {
                    V::S(s) => Some(s.to_string()),
                    V::Null => None,
                    other => Some(format!("{other:?}")),
                }))),
                other => panic!("test helper cannot write {other}"),
            };
            fields.push(Field::new(name, dt.clone(), true));
            arrays.push(a);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("test batch")
    }
}

fn as_i(v: &V) -> Option<i64> {
    match v {
        V::I(i) => Some(*i),
        V::F(f) => Some(*f as i64),
        _ => None,
    }
}

fn as_f(v: &V) -> Option<f64> {
    match v {
        V::F(f) => Some(*f),
        V::I(i) => Some(*i as f64),
        _ => None,
    }
}

/// A chunk to write.
#[derive(Clone, Debug)]
pub struct TestChunk {
    pub format: &'static str,
    pub chunk_id: i64,
    pub unique_id: String,
    pub files: Vec<Rows>,
}

impl TestChunk {
    pub fn replica(chunk_id: i64, files: Vec<Rows>) -> Self {
        TestChunk {
            format: catalog::chunk::REPLICA_FORMAT,
            chunk_id,
            unique_id: format!("uid-{chunk_id}"),
            files,
        }
    }

    /// Writes the chunk folder under `root` and returns it.
    pub fn write(&self, root: &Path) -> PathBuf {
        let dir = root.join(format!("chunk-{}-{}", self.chunk_id, self.unique_id));
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for f in &self.files {
            let name = format!("{}.parquet", f.table);
            let batch = f.batch();
            let file = std::fs::File::create(dir.join(&name)).unwrap();
            let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            files.push(json!({"table": f.table, "path": name, "rows": batch.num_rows()}));
        }
        let manifest = json!({
            "format": self.format,
            "chunk_id": self.chunk_id,
            "last_update_time": "2025-11-26T03:20:00.000000Z",
            "unique_id": self.unique_id,
            "files": files,
        });
        std::fs::write(
            dir.join("chunk.json"),
            serde_json::to_string_pretty(&manifest).unwrap(),
        )
        .unwrap();
        dir
    }
}

/// Opens a chunk folder as an object-store location.
pub fn loc(dir: &Path) -> catalog::store::Location {
    catalog::store::open_existing_local(dir).unwrap()
}
