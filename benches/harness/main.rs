//! `ppdb-bench`: the PPDB workloads at a chosen scale, side by side with
//! PostgreSQL 15 + q3c and DuckDB on the same rows, in the same run.
//!
//! One run: generate a catalog (scale 1 = 10^6 DiaObjects over two nights)
//! and ingest it, timing the ingest; compact it so that the visible rows are
//! exactly those with `_retired IS NULL` (DuckDB then reads the very same
//! Parquet files, and Postgres is loaded from them); time the query suite in
//! each engine after checking that every engine's answer equals ours; run
//! the cone + light-curve mix at 1, 20 and 100 clients through the engine
//! API, through the TAP service over loopback HTTP and against Postgres;
//! measure the server's memory while it streams a large result and while
//! 100 clients run; write `results.json`, `report.md` and the plots.
//!
//! `benches/run` installs the peers, builds and runs this; see `benches/README.md`.

#[path = "../chunks.rs"]
mod chunks;
mod load;
mod peers;
mod report;
mod suite;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use catalog::Catalog;
use catalog::sample::{SampleConfig, generate};
use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Parser, Clone)]
#[command(about = "Benchmarks the PPDB workloads against PostgreSQL + q3c and DuckDB")]
pub struct Args {
    /// Catalog size: 1 is 10^6 DiaObjects with their DiaSources, DiaForcedSources and versions.
    #[arg(long)]
    scale: Option<f64>,
    /// A short run for development: scale 0.1, few repeats, short load steps (about 3 minutes).
    #[arg(long)]
    quick: bool,
    /// Where chunks, catalogs and the Postgres data live (catalogs are reused per scale).
    #[arg(long, default_value = "/tmp/ppdb-bench")]
    work: PathBuf,
    /// Where report.md, results.json and the plots are written.
    #[arg(long, default_value = "benches/report")]
    report: PathBuf,
    /// Python with the duckdb, psycopg and matplotlib packages (the peers and the plots).
    #[arg(long, env = "PPDB_BENCH_PYTHON", default_value = "python3")]
    python: String,
    /// Leave PostgreSQL out (it needs the Debian packages postgresql-15 and postgresql-15-q3c).
    #[arg(long)]
    no_postgres: bool,
    /// The loopback port the Postgres peer listens on.
    #[arg(long, default_value_t = 55432)]
    pg_port: u16,
    /// Timed runs per query and engine (fewer when the time budget runs out first).
    #[arg(long)]
    repeat: Option<usize>,
    /// Seconds each query may spend being timed, per engine and form.
    #[arg(long)]
    budget: Option<f64>,
    /// Seconds each load step runs.
    #[arg(long)]
    load_seconds: Option<f64>,
    /// Concurrent clients of the load steps.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 20, 100])]
    clients: Vec<usize>,
    /// Rows of the largest result streamed for the memory figure.
    #[arg(long)]
    stream_rows: Option<u64>,
    /// The `ppdb` binary the TAP figures run (default: the one beside this program).
    #[arg(long)]
    ppdb: Option<PathBuf>,
    /// Only run this ADQL query back to back on the scale's catalog for --load-seconds
    /// and print its latency (for profiling one query).
    #[arg(long)]
    only: Option<String>,
    /// With --only: the query's pinned form (with a token record) instead of as written.
    #[arg(long)]
    pinned: bool,
}

/// The settings a run uses, after `--quick` and the defaults.
#[derive(Clone, Serialize)]
pub struct Settings {
    pub scale: f64,
    pub objects: usize,
    pub nights: usize,
    pub repeat: usize,
    pub budget: f64,
    pub load_seconds: f64,
    pub clients: Vec<usize>,
    pub stream_rows: u64,
    pub quick: bool,
}

impl Settings {
    fn from(args: &Args) -> Settings {
        let q = args.quick;
        let scale = args.scale.unwrap_or(if q { 0.1 } else { 1.0 });
        Settings {
            scale,
            objects: (scale * 1e6).round() as usize,
            nights: 2,
            repeat: args.repeat.unwrap_or(if q { 10 } else { 30 }),
            budget: args.budget.unwrap_or(if q { 1.5 } else { 15.0 }),
            load_seconds: args.load_seconds.unwrap_or(if q { 3.0 } else { 15.0 }),
            clients: args.clients.clone(),
            stream_rows: args
                .stream_rows
                .unwrap_or(if q { 1_000_000 } else { 10_000_000 }),
            quick: q,
        }
    }
}

/// How the catalog was built: generation and ingest throughput.
#[derive(Clone, Serialize, Deserialize)]
pub struct Build {
    pub chunks: usize,
    pub rows: u64,
    pub generate_s: f64,
    pub ingest_s: f64,
    pub rows_per_s: f64,
    pub compact_s: f64,
    /// Whether this run built it (else it was reused from an earlier run).
    #[serde(default)]
    pub this_run: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Threads with the stack the engine asks for run its ADQL passes in place, as
    // the `ppdb` server's do; tokio's default would time a stack allocation too.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(engine::THREAD_STACK)
        .build()?;
    std::thread::Builder::new()
        .name("ppdb-bench".into())
        .stack_size(engine::THREAD_STACK)
        .spawn(move || rt.block_on(run(args)))?
        .join()
        .map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?
}

async fn run(args: Args) -> Result<()> {
    let settings = Settings::from(&args);
    let started = Instant::now();
    let work = args.work.join(format!("scale-{}", settings.scale));
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&args.report)?;
    let catalog_dir = work.join("catalog");
    let build = match read_build(&work) {
        Some(b) if catalog_dir.join("_log").is_dir() => b,
        _ => build(&settings, &work, &catalog_dir).await?,
    };
    eprintln!(
        "catalog: {} rows ingested at {:.0} rows/s{}",
        build.rows,
        build.rows_per_s,
        if build.this_run {
            ""
        } else {
            " (reused; figure from its build)"
        }
    );
    let engine = engine::Engine::open(path(&catalog_dir)?).await?;
    if let Some(adql) = &args.only {
        // The suite's upload is there as TAP_UPLOAD.targets (id, ra, dec).
        let upload = if adql.to_uppercase().contains("TAP_UPLOAD") {
            Some(suite::Setup::choose(&engine, &work).await?.upload)
        } else {
            None
        };
        return suite::only(&engine, adql, upload, args.pinned, &settings).await;
    }
    let python = peers::Python::new(&args.python, &work)?;
    let setup = suite::Setup::choose(&engine, &work).await?;
    eprintln!("catalog holds {:?}", setup.counts);
    let postgres = if args.no_postgres {
        None
    } else {
        Some(peers::Postgres::start(
            &python,
            &work,
            args.pg_port,
            &catalog_dir,
        )?)
    };
    let versions = report::Versions::gather(&python, postgres.as_ref());

    let queries = suite::run(
        &engine,
        &setup,
        &settings,
        &python,
        postgres.as_ref(),
        &catalog_dir,
    )
    .await?;
    let ppdb = match &args.ppdb {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("ppdb"),
    };
    let (load, memory) = load::run(
        &engine,
        &setup,
        &settings,
        postgres.as_ref(),
        &ppdb,
        &catalog_dir,
        &work,
    )
    .await?;
    drop(postgres);

    let results = report::Results {
        date: chrono::Utc::now().to_rfc3339(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: report::Machine::this(),
        versions,
        settings: settings.clone(),
        scale: settings.scale,
        catalog: setup.counts.clone(),
        build,
        queries,
        load,
        memory,
        seconds: 0.0,
    };
    report::write(&args.report, results, started.elapsed(), &python)?;
    Ok(())
}

fn read_build(work: &Path) -> Option<Build> {
    let text = std::fs::read_to_string(work.join("build.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Generates the chunks, ingests them into a fresh catalog and compacts it.
async fn build(settings: &Settings, work: &Path, catalog_dir: &Path) -> Result<Build> {
    let chunks = work.join("chunks");
    for d in [&chunks, &catalog_dir.to_path_buf()] {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
    }
    let cfg = SampleConfig {
        objects: settings.objects,
        nights: settings.nights,
        src: false,
        ..Default::default()
    };
    let t = Instant::now();
    let summary = generate(&cfg, &chunks)?;
    let generate_s = t.elapsed().as_secs_f64();
    eprintln!("generated {} chunks in {generate_s:.1} s", summary.chunks);
    let cat = Catalog::open_or_create(path(catalog_dir)?, catalog::DEFAULT_PARTITION_ORDER).await?;
    let t = Instant::now();
    let (committed, rows) = chunks::ingest_all(&cat, &chunks).await?;
    let ingest_s = t.elapsed().as_secs_f64();
    eprintln!(
        "ingested {} chunks, {rows} rows in {ingest_s:.1} s",
        committed
    );
    // Fold retirements into `_retired` so the peers can see the same rows.
    let t = Instant::now();
    cat.compact().await?;
    cat.vacuum(Duration::ZERO).await?;
    let b = Build {
        chunks: committed,
        rows,
        generate_s,
        ingest_s,
        rows_per_s: rows as f64 / ingest_s,
        compact_s: t.elapsed().as_secs_f64(),
        this_run: false,
    };
    std::fs::write(work.join("build.json"), serde_json::to_string_pretty(&b)?)?;
    Ok(Build {
        this_run: true,
        ..b
    })
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("work path is not UTF-8")
}

/// Latency figures of one query in one engine and form.
#[derive(Clone, Serialize)]
pub struct Stats {
    pub runs: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Result rows per second at the median.
    pub rows_per_s: f64,
}

impl Stats {
    fn of(mut times: Vec<Duration>, rows: usize) -> Stats {
        times.sort();
        let p = |q: f64| percentile(&times, q);
        let p50 = p(0.5);
        Stats {
            runs: times.len(),
            p50_ms: p50,
            p95_ms: p(0.95),
            p99_ms: p(0.99),
            rows_per_s: rows as f64 / (p50 / 1e3),
        }
    }
}

/// The `p` quantile of sorted durations, in milliseconds (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}
