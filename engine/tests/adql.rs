//! The ADQL dialect as a specification: every `.slt` file in `tests/adql/`
//! runs against the bundled sample catalog through the public engine API.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};

use testkit::SAMPLE;
const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/adql");

struct Adql {
    engine: Arc<engine::Engine>,
}

#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            DefaultColumnType::Integer
        }
        DataType::Float32 | DataType::Float64 => DefaultColumnType::FloatingPoint,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

/// Cells as the spec files write them: NULL, integers, floats rounded to 9
/// significant digits (so that last-bit differences do not matter), geometry
/// as a bracketed list.
fn cell(c: &dyn Array, fmt: &ArrayFormatter, row: usize) -> String {
    if c.is_null(row) {
        return "NULL".into();
    }
    match c.data_type() {
        DataType::Float64 | DataType::Float32 => {
            let v: f64 = fmt.value(row).to_string().parse().unwrap_or(f64::NAN);
            round(v)
        }
        DataType::List(_) => {
            use arrow::array::AsArray;
            let l = c.as_list::<i32>().value(row);
            let v = l.as_primitive::<arrow::datatypes::Float64Type>();
            let parts: Vec<String> = v.iter().map(|x| x.map_or("NULL".into(), round)).collect();
            format!("[{}]", parts.join(" "))
        }
        _ => {
            let s = fmt.value(row).to_string();
            if s.is_empty() { "(empty)".into() } else { s }
        }
    }
}

fn round(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{:.*e}", 8, v);
    let x: f64 = s.parse().unwrap_or(v);
    let t = format!("{x}");
    if t.ends_with(".0") {
        t[..t.len() - 2].to_string()
    } else {
        t
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Adql {
    type Error = Failure;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Failure> {
        let result = self
            .engine
            .query(sql, &engine::QueryOptions::default())
            .await
            .map_err(|e| Failure(e.message()))?;
        let schema = result.schema.clone();
        let token = result.token.clone().expect("every query has a token");
        let (batches, _) = result.collect().await.map_err(|e| Failure(e.message()))?;
        // Every query of the specification must also replay to the same rows: the
        // replay re-runs the pinned form (no cache) and checks the recorded checksum.
        let replay = self
            .engine
            .replay(
                &token,
                &engine::ReplayOptions {
                    use_cache: false,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Failure(format!("replay: {}", e.message())))?;
        replay
            .collect()
            .await
            .map_err(|e| Failure(format!("replay: {}", e.message())))?;
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let mut rows = Vec::new();
        let opts = FormatOptions::default();
        for b in &batches {
            rows.extend(rows_of(b, &opts));
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}
}

fn rows_of(b: &RecordBatch, opts: &FormatOptions) -> Vec<Vec<String>> {
    let fmts: Vec<ArrayFormatter> = b
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), opts).expect("every result type formats"))
        .collect();
    (0..b.num_rows())
        .map(|r| {
            b.columns()
                .iter()
                .zip(&fmts)
                .map(|(c, f)| cell(c.as_ref(), f, r))
                .collect()
        })
        .collect()
}

fn spec_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(SPEC)
        .expect("tests/adql exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adql_specification() {
    let engine = Arc::new(
        engine::Engine::open_with(
            SAMPLE,
            engine::EngineOptions {
                // Tokens go to memory: the bundled sample stays read-only.
                state: Some("memory://adql-spec-state".into()),
                ..Default::default()
            },
        )
        .await
        .expect("sample catalog opens"),
    );
    let files = spec_files();
    assert!(!files.is_empty(), "no .slt files in {SPEC}");
    let mut failures = Vec::new();
    let mut records = 0;
    for file in &files {
        records += count_records(file);
        let e = engine.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = e.clone();
            async move { Ok::<_, Failure>(Adql { engine }) }
        });
        if let Err(err) = runner.run_file_async(file).await {
            failures.push(format!("{}: {}", file.display(), err.display(false)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        records >= 300,
        "the specification has {records} records; it should have at least 300"
    );
}

fn count_records(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("query ") || l.starts_with("statement "))
        .count()
}
