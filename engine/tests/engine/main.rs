//! The engine through its public API: every table at every snapshot equals the
//! catalog's own reader, cones and id lookups prune files, names keep the
//! schema's spelling.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use catalog::{Catalog, TableId};
use engine::{Engine, EngineOptions, QueryOptions};
use tempfile::TempDir;

use lines::sorted_lines;
use testkit::lines;

use testkit::SAMPLE;

mod direct;
mod export;
mod pruning;
mod tables;
mod tokens;
mod uploads;

/// A fresh prefix `NAME-STAMP` on the S3-compatible store `.ci/run` starts
/// (`PPDB_TEST_S3`, with the `AWS_*` endpoint variables). Required under CI;
/// elsewhere `None`, and the test says it skipped.
fn s3_url(name: &str) -> Option<String> {
    let Ok(base) = std::env::var("PPDB_TEST_S3") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PPDB_TEST_S3 must be set in CI (.ci/run starts an S3 server)"
        );
        eprintln!(
            "skipped: set PPDB_TEST_S3=s3://bucket/prefix and AWS_ENDPOINT to run against S3"
        );
        return None;
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Some(format!("{}/{name}-{stamp:x}", base.trim_end_matches('/')))
}

/// The bundled sample, with tokens kept in memory so the sample stays read-only.
async fn open_sample() -> Engine {
    Engine::open_with(
        SAMPLE,
        EngineOptions {
            state: Some("memory://engine-test-state".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn rows(engine: &Engine, adql: &str) -> Vec<RecordBatch> {
    let r = engine
        .query(adql, &QueryOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{adql}: {e}"));
    r.collect()
        .await
        .unwrap_or_else(|e| panic!("{adql}: {e}"))
        .0
}

/// A generated night ingested, then compacted into partitions (the finest
/// layout: what file pruning is measured on).
async fn generated(objects: usize) -> (TempDir, Arc<Catalog>) {
    let (dir, cat) = generated_fresh(objects, None).await;
    compact_into(&cat, 0).await;
    (dir, cat)
}

/// Compacts `cat` keeping at most `rows` rows in a file coarser than a
/// partition (0: into partitions), through a second handle.
async fn compact_into(cat: &Catalog, rows: usize) -> catalog::CompactReport {
    let handle = Catalog::open(cat.url())
        .await
        .unwrap()
        .with_compact_rows(rows);
    handle.compact().await.unwrap()
}

/// A generated night as ingest leaves it: fresh files, each covering 16
/// partitions or more (a cell merged up while it holds at most `cell_rows`
/// rows, if given).
async fn generated_fresh(objects: usize, cell_rows: Option<usize>) -> (TempDir, Arc<Catalog>) {
    let dir = TempDir::new().unwrap();
    let url = dir.path().join("catalog");
    let config = catalog::sample::SampleConfig {
        objects,
        nights: 1,
        density: 300.0,
        visits_per_chunk: 8,
        src: false,
        ..Default::default()
    };
    let cat = ingest_generated(dir.path(), url.to_str().unwrap(), &config, cell_rows).await;
    (dir, Arc::new(cat))
}

/// Writes generated chunks under `scratch` and commits them to a catalog at `url`.
async fn ingest_generated(
    scratch: &Path,
    url: &str,
    config: &catalog::sample::SampleConfig,
    cell_rows: Option<usize>,
) -> Catalog {
    let chunks = scratch.join("chunks");
    catalog::sample::generate(config, &chunks).unwrap();
    let mut cat = Catalog::open_or_create(url, 6).await.unwrap();
    if let Some(rows) = cell_rows {
        cat = cat.with_cell_rows(rows);
    }
    let mut dirs: Vec<_> = std::fs::read_dir(&chunks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for d in &dirs {
        cat.ingest(&catalog::store::open_existing_local(d).unwrap())
            .await
            .unwrap();
    }
    cat
}

/// The id and position of the object with the smallest id.
async fn first_object(engine: &Engine) -> (i64, f64, f64) {
    let b = rows(
        engine,
        "SELECT TOP 1 diaObjectId, ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId",
    )
    .await;
    (
        b[0].column(0).as_primitive::<Int64Type>().value(0),
        b[0].column(1).as_primitive::<Float64Type>().value(0),
        b[0].column(2).as_primitive::<Float64Type>().value(0),
    )
}

/// Files of a table at the latest snapshot.
async fn files_of(cat: &Catalog, table: TableId) -> usize {
    let state = cat.state().await.unwrap();
    cat.scan(&state, table, state.latest()).unwrap().files.len()
}

/// An engine over a catalog, keeping its tokens in memory.
fn engine_over(cat: &Arc<Catalog>, state: &str) -> Engine {
    Engine::with_catalog(
        cat.clone(),
        EngineOptions {
            state: Some(state.into()),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Distinct files the scans of a plan list, from `EXPLAIN ANALYZE`
/// (`file_groups={N groups: [[a:0..10, b:0..5], [a:10..20]]}`: one file may be split).
fn files_opened(plan: &str) -> usize {
    let mut files = std::collections::BTreeSet::new();
    // DataFusion's scans, and the direct read that id lookups and small cones take.
    for line in plan
        .lines()
        .filter(|l| l.contains("DataSourceExec") || l.contains("DirectReadExec"))
    {
        for part in line.split([' ', '[', ',']) {
            if let Some(end) = part.find(".parquet") {
                files.insert(part[..end].to_string());
            }
        }
    }
    files.len()
}

async fn run_all(mut r: engine::QueryResult) -> (Vec<RecordBatch>, engine::Finished) {
    let mut out = Vec::new();
    while let Some(b) = r.next_batch().await {
        out.push(b.unwrap());
    }
    (
        out,
        r.finished().cloned().expect("finished after the last row"),
    )
}

async fn replay_all(engine: &Engine, token: &str) -> (Vec<RecordBatch>, engine::Finished) {
    run_all(
        engine
            .replay(token, &engine::ReplayOptions::default())
            .await
            .unwrap(),
    )
    .await
}

async fn rows_with(engine: &Engine, adql: &str, opts: &QueryOptions) -> Vec<RecordBatch> {
    let r = engine
        .query(adql, opts)
        .await
        .unwrap_or_else(|e| panic!("{adql}: {e}"));
    r.collect()
        .await
        .unwrap_or_else(|e| panic!("{adql}: {e}"))
        .0
}

/// Whether a plan joins on the HEALPix cells of a crossmatch (a zone join).
fn hashed_on_cells(plan: &str) -> bool {
    plan.lines()
        .any(|l| l.contains("HashJoinExec") && l.contains("__ppdb_crossmatch_cell"))
}

/// Runs `adql` read directly and planned, with and without MAXREC 1, and
/// asserts that both give the same schema, rows, order (when ordered), MAXREC
/// cut and pinned checksum. Returns how many runs it compared and how many of
/// them found rows.
async fn direct_and_planned_agree(engine: &Engine, adql: &str) -> (usize, usize) {
    let (mut compared, mut nonempty) = (0, 0);
    for maxrec in [None, Some(1)] {
        let direct = QueryOptions {
            maxrec,
            ..Default::default()
        };
        let planned = QueryOptions {
            always_plan: true,
            ..direct.clone()
        };
        let d = engine.query_unpinned(adql, &direct).await.unwrap();
        let p = engine.query_unpinned(adql, &planned).await.unwrap();
        assert_eq!(d.timings.plan, Duration::ZERO, "{adql}: not direct");
        assert!(p.timings.plan > Duration::ZERO, "{adql}: not planned");
        assert_eq!(d.schema, p.schema, "{adql}");
        let (d_rows, d_end) = run_all(d).await;
        let (p_rows, p_end) = run_all(p).await;
        let ordered = adql.contains("ORDER BY");
        if ordered {
            // The same rows in the same order.
            assert_eq!(lines(&d_rows), lines(&p_rows), "{adql} {maxrec:?}");
        } else if maxrec.is_none() {
            // Which row a cut keeps of an unordered result is arbitrary.
            assert_eq!(sorted_lines(&d_rows), sorted_lines(&p_rows), "{adql}");
        }
        assert_eq!(d_end.rows, p_end.rows, "{adql} {maxrec:?}");
        assert_eq!(d_end.overflow, p_end.overflow, "{adql} {maxrec:?}");
        // The pinned form: both get the same token, and the second run is
        // checked against the record the first one left.
        let p = engine.query(adql, &planned).await.unwrap();
        let (_, p_end) = run_all(p).await;
        let mut d = engine.query(adql, &direct).await.unwrap();
        while let Some(b) = d.next_batch().await {
            b.unwrap_or_else(|e| panic!("{adql} {maxrec:?}: {e}"));
        }
        assert_eq!(d.finished().unwrap().checksum, p_end.checksum, "{adql}");
        compared += 1;
        nonempty += usize::from(d_end.rows > 0);
    }
    (compared, nonempty)
}

/// Each row as its values joined by commas, in the result's order.
fn lines(batches: &[RecordBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |r| sorted_lines(&[b.slice(r, 1)]).concat()))
        .collect()
}
