//! Query latency against DuckDB and PostgreSQL 15 + q3c on the same rows, in
//! the same run.
//!
//! Builds (or reuses) a generated catalog of at least 10^6 DiaObject versions,
//! compacts it so that the visible rows at the latest snapshot are exactly the
//! rows with `_retired IS NULL` (DuckDB can then read the same Parquet files
//! without our visibility rules, and load them into Postgres), checks that
//! every engine returns the same number of rows to each query, then times
//! each query on a warm process. Postgres runs on 127.0.0.1 under the work
//! folder, started and stopped by this program (`benches/peers.py`).
//!
//! `cargo run --profile bench-fast -p benches --bin query-bench -- --work /tmp/ppdb-q`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use catalog::sample::{SampleConfig, generate};
use catalog::{Catalog, store};
use clap::Parser;
use engine::{Engine, QueryOptions};

#[derive(Parser)]
struct Args {
    /// Distinct DiaObjects (versions are about twice as many).
    #[arg(long, default_value_t = 400_000)]
    objects: usize,
    /// Nights of visits.
    #[arg(long, default_value_t = 2)]
    nights: usize,
    /// Repetitions of each query per engine.
    #[arg(long, default_value_t = 50)]
    repeat: usize,
    /// Where the chunks and the catalog live (reused when present).
    #[arg(long, default_value = "/tmp/ppdb-query-bench")]
    work: PathBuf,
    /// Python with the duckdb and psycopg packages (the peers).
    #[arg(long, env = "PPDB_BENCH_PYTHON", default_value = "python3")]
    python: String,
    /// Leave PostgreSQL out (it needs the Debian packages postgresql-15 and postgresql-15-q3c).
    #[arg(long)]
    no_postgres: bool,
    /// The loopback port the Postgres peer listens on.
    #[arg(long, default_value_t = 55432)]
    pg_port: u16,
}

struct Case {
    name: &'static str,
    adql: String,
    duckdb: String,
    postgres: String,
}

const PEERS_SCRIPT: &str = include_str!("peers.py");

/// The Postgres peer's server, stopped when dropped.
struct Postgres {
    python: String,
    script: PathBuf,
    work: PathBuf,
    port: u16,
}

impl Postgres {
    fn start(args: &Args, catalog_dir: &Path) -> Result<Postgres> {
        let script = peers_script(args)?;
        let pg = Postgres {
            python: args.python.clone(),
            script,
            work: args.work.join("postgres"),
            port: args.pg_port,
        };
        let port = pg.port.to_string();
        pg.call(&["start", path(&pg.work)?, &port])?;
        let t = Instant::now();
        pg.call(&["load", path(&pg.work)?, &port, path(catalog_dir)?])?;
        eprintln!("postgres ready in {:.1} s", t.elapsed().as_secs_f64());
        Ok(pg)
    }

    fn call(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .output()
            .with_context(|| format!("running {} (are psycopg and duckdb installed?)", self.python))?;
        if !out.status.success() {
            bail!("postgres peer {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn run(&self, sql: &str, repeat: usize) -> Result<(usize, Vec<Duration>)> {
        parse_timings(&self.call(&["run", &self.port.to_string(), &repeat.to_string(), sql])?)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Ok(work) = path(&self.work) {
            let _ = self.call(&["stop", work]);
        }
    }
}

/// The peers' script, written into the work folder.
fn peers_script(args: &Args) -> Result<PathBuf> {
    let script = args.work.join("peers.py");
    std::fs::write(&script, PEERS_SCRIPT)?;
    Ok(script)
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("work path is not UTF-8")
}

/// A peer's answer: the row count, then one time in seconds per run.
fn parse_timings(text: &str) -> Result<(usize, Vec<Duration>)> {
    let mut it = text.split_whitespace();
    let rows: usize = it.next().context("peer row count")?.parse()?;
    let mut times: Vec<Duration> = it
        .map(|x| x.parse::<f64>().map(Duration::from_secs_f64))
        .collect::<Result<_, _>>()?;
    times.sort();
    Ok((rows, times))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let catalog_dir = args.work.join("catalog");
    if !catalog_dir.join("_log").is_dir() {
        build(&args, &catalog_dir).await?;
    }
    let url = catalog_dir.to_str().context("catalog path is not UTF-8")?;
    let engine = Engine::open(url).await?;
    let opts = QueryOptions::default();

    let versions = scalar(&engine, "SELECT COUNT(*) FROM ppdb.DiaObjectHistory").await?;
    let objects = scalar(&engine, "SELECT COUNT(*) FROM ppdb.DiaObject").await?;
    let sources = scalar(&engine, "SELECT COUNT(*) FROM ppdb.DiaSource").await?;
    println!(
        "catalog: {versions} DiaObject versions, {objects} current objects, {sources} DiaSources"
    );
    if versions < 1_000_000 {
        eprintln!(
            "note: fewer than 10^6 DiaObject versions; raise --objects for the reference scale"
        );
    }

    // A centre with objects around it, and an object with a long light curve.
    let r = engine
        .query(
            "SELECT TOP 1 ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId",
            &opts,
        )
        .await?
        .collect()
        .await?
        .0;
    let ra = r[0].column(0).as_primitive::<Float64Type>().value(0);
    let dec = r[0].column(1).as_primitive::<Float64Type>().value(0);
    let r = engine
        .query("SELECT TOP 1 diaObjectId FROM ppdb.DiaObject WHERE nDiaSources > 2 ORDER BY diaObjectId", &opts)
        .await?
        .collect()
        .await?
        .0;
    let id = r[0].column(0).as_primitive::<Int64Type>().value(0);

    let files = |t: &str| {
        format!(
            "read_parquet('{}/{t}/**/*.parquet', union_by_name=true)",
            catalog_dir.display()
        )
    };
    let haversine = |r: f64| {
        format!(
            "2 * asin(sqrt(pow(sin(radians(dec - {dec}) / 2), 2) + cos(radians(dec)) * cos(radians({dec})) * pow(sin(radians(ra - {ra}) / 2), 2))) <= radians({r})"
        )
    };
    let cases = vec![
        Case {
            name: "cone 5' (DiaObject)",
            adql: format!(
                "SELECT diaObjectId, ra, dec FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {})) = 1",
                5.0 / 60.0
            ),
            duckdb: format!(
                "SELECT diaObjectId, ra, dec FROM {} WHERE _retired IS NULL AND validityEndMjdTai IS NULL AND {}",
                files("DiaObject"),
                haversine(5.0 / 60.0)
            ),
            postgres: format!(
                "SELECT \"diaObjectId\", ra, dec FROM diaobject WHERE q3c_radial_query(ra, dec, {ra}, {dec}, {})",
                5.0 / 60.0
            ),
        },
        Case {
            name: "light curve (DiaSource by diaObjectId)",
            adql: format!(
                "SELECT diaSourceId, midpointMjdTai, band, psfFlux FROM ppdb.DiaSource WHERE diaObjectId = {id}"
            ),
            duckdb: format!(
                "SELECT diaSourceId, midpointMjdTai, band, psfFlux FROM {} WHERE _retired IS NULL AND diaObjectId = {id}",
                files("DiaSource")
            ),
            postgres: format!(
                "SELECT \"diaSourceId\", \"midpointMjdTai\", band, \"psfFlux\" FROM diasource WHERE \"diaObjectId\" = {id}"
            ),
        },
        Case {
            name: "full-table aggregate (DiaSource by band)",
            adql: "SELECT band, COUNT(*), AVG(psfFlux) FROM ppdb.DiaSource GROUP BY band".into(),
            duckdb: format!(
                "SELECT band, COUNT(*), AVG(psfFlux) FROM {} WHERE _retired IS NULL GROUP BY band",
                files("DiaSource")
            ),
            postgres: "SELECT band, COUNT(*), AVG(\"psfFlux\") FROM diasource GROUP BY band".into(),
        },
    ];

    overhead(&engine, &cases, ra, dec, args.repeat).await?;
    let postgres = if args.no_postgres {
        None
    } else {
        Some(Postgres::start(&args, &catalog_dir)?)
    };

    // DuckDB runs in one Python process per query: open, count the rows, time the repeats.
    let script = peers_script(&args)?;
    let mut report = Vec::new();
    for c in &cases {
        let mut ours = Vec::with_capacity(args.repeat);
        let mut our_rows = 0usize;
        let mut phases = [Duration::ZERO; 4];
        for i in 0..args.repeat + 3 {
            let t = Instant::now();
            let result = engine.query(&c.adql, &opts).await?;
            let tm = result.timings;
            let (batches, _) = result.collect().await?;
            let e = t.elapsed();
            our_rows = batches.iter().map(|b| b.num_rows()).sum();
            if i >= 3 {
                ours.push(e);
                for (p, d) in phases
                    .iter_mut()
                    .zip([tm.parse, tm.pin, tm.plan, tm.physical])
                {
                    *p += d;
                }
            }
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / args.repeat as f64;
        eprintln!(
            "{}: mean parse {:.2} ms, pin {:.2} ms, plan {:.2} ms, physical plan {:.2} ms; the rest is execution",
            c.name,
            ms(phases[0]),
            ms(phases[1]),
            ms(phases[2]),
            ms(phases[3])
        );
        ours.sort();
        let out = Command::new(&args.python)
            .arg(&script)
            .arg("duckdb")
            .arg(args.repeat.to_string())
            .arg(&c.duckdb)
            .output()
            .with_context(|| format!("running {} (is duckdb installed?)", args.python))?;
        if !out.status.success() {
            bail!("duckdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let (duck_rows, duck) = parse_timings(&String::from_utf8_lossy(&out.stdout))?;
        if duck_rows != our_rows {
            bail!(
                "{}: DuckDB returned {duck_rows} rows, we returned {our_rows}",
                c.name
            );
        }
        let pg = match &postgres {
            Some(pg) => {
                let (rows, times) = pg.run(&c.postgres, args.repeat)?;
                if rows != our_rows {
                    bail!("{}: Postgres returned {rows} rows, we returned {our_rows}", c.name);
                }
                Some((percentile(&times, 0.5), percentile(&times, 0.95)))
            }
            None => None,
        };
        let (p50, p95) = (percentile(&ours, 0.5), percentile(&ours, 0.95));
        let (d50, d95) = (percentile(&duck, 0.5), percentile(&duck, 0.95));
        let (g50, g95) = pg.unwrap_or((f64::NAN, f64::NAN));
        println!(
            "{:<42} rows {:>7}  ours p50 {:>8.2} ms p95 {:>8.2} ms   duckdb p50 {:>8.2} ms   postgres p50 {:>8.2} ms",
            c.name, our_rows, p50, p95, d50, g50
        );
        report.push(format!(
            "| {} | {our_rows} | {p50:.2} | {p95:.2} | {d50:.2} | {d95:.2} | {g50:.2} | {g95:.2} | **{:.3}** | **{:.3}** |",
            c.name,
            p50 / d50,
            p50 / g50
        ));
    }
    drop(postgres);
    println!(
        "\n| query | rows | ours p50 (ms) | ours p95 (ms) | DuckDB p50 (ms) | DuckDB p95 (ms) | Postgres+q3c p50 (ms) | Postgres+q3c p95 (ms) | ours / DuckDB (p50) | ours / Postgres (p50) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in report {
        println!("{l}");
    }
    Ok(())
}

/// What reproducibility costs: each query unpinned (as written, no token) against
/// pinned (snapshot on every table, total order where needed, checksum, token
/// record written). Each pinned run carries a distinct trailing comment, so it
/// gets a new token and writes a new record instead of finding the last one.
async fn overhead(engine: &Engine, cases: &[Case], ra: f64, dec: f64, repeat: usize) -> Result<()> {
    let opts = QueryOptions::default();
    let mut queries: Vec<(String, String)> = cases
        .iter()
        .map(|c| (c.name.to_string(), c.adql.clone()))
        .collect();
    queries.push((
        "cone 5' TOP 100 (pinned form adds ORDER BY)".into(),
        format!(
            "SELECT TOP 100 diaObjectId, ra, dec FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {})) = 1",
            5.0 / 60.0
        ),
    ));
    queries.push((
        "cone 5' TOP 100 ORDER BY diaObjectId (pinned adds tie-breakers)".into(),
        format!(
            "SELECT TOP 100 diaObjectId, ra, dec FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {})) = 1 ORDER BY diaObjectId",
            5.0 / 60.0
        ),
    ));
    println!(
        "\n| query | unpinned p50 (ms) | pinned p50 (ms) | pinned / unpinned | token record write p50 (ms) | max (ms) | before the first row, unpinned / pinned (mean ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, adql) in &queries {
        let mut plain = Vec::with_capacity(repeat);
        let mut pinned = Vec::with_capacity(repeat);
        let mut record = Vec::with_capacity(repeat);
        let (mut plan_u, mut plan_p) = (Duration::ZERO, Duration::ZERO);
        // Interleaved, so that drift in the machine affects both alike.
        for i in 0..repeat + 3 {
            let t = Instant::now();
            let r = engine.query_unpinned(adql, &opts).await?;
            let tu = r.timings;
            r.collect().await?;
            let a = t.elapsed();
            let text = format!("{adql} -- run {i} {}", std::process::id());
            let t = Instant::now();
            let mut r = engine.query(&text, &opts).await?;
            while let Some(b) = r.next_batch().await {
                b?;
            }
            let b = t.elapsed();
            if i >= 3 {
                plain.push(a);
                pinned.push(b);
                record.push(r.timings.record);
                let tp = r.timings;
                plan_u += tu.parse + tu.pin + tu.plan + tu.physical;
                plan_p += tp.parse + tp.pin + tp.plan + tp.physical;
            }
        }
        plain.sort();
        pinned.sort();
        record.sort();
        let (u, p) = (percentile(&plain, 0.5), percentile(&pinned, 0.5));
        let mean = |d: Duration| d.as_secs_f64() * 1e3 / repeat as f64;
        println!(
            "| {name} | {u:.2} | {p:.2} | {:.3} | {:.3} | {:.3} | {:.2} / {:.2} |",
            p / u,
            percentile(&record, 0.5),
            percentile(&record, 1.0),
            mean(plan_u),
            mean(plan_p)
        );
    }
    Ok(())
}

async fn scalar(engine: &Engine, adql: &str) -> Result<i64> {
    let (b, _) = engine
        .query(adql, &QueryOptions::default())
        .await?
        .collect()
        .await?;
    let c = b[0].column(0);
    Ok(if c.is_null(0) {
        0
    } else {
        c.as_primitive::<Int64Type>().value(0)
    })
}

async fn build(args: &Args, catalog_dir: &Path) -> Result<()> {
    let chunks = args.work.join("chunks");
    let cfg = SampleConfig {
        objects: args.objects,
        nights: args.nights,
        src: false,
        ..Default::default()
    };
    let t = Instant::now();
    generate(&cfg, &chunks)?;
    eprintln!("generated chunks in {:.1} s", t.elapsed().as_secs_f64());
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&chunks)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    dirs.sort();
    let cat = Catalog::open_or_create(catalog_dir.to_str().context("path")?, 6).await?;
    let t = Instant::now();
    for d in &dirs {
        cat.ingest(&store::open_existing_local(d)?).await?;
    }
    eprintln!(
        "ingested {} chunks in {:.1} s",
        dirs.len(),
        t.elapsed().as_secs_f64()
    );
    // Fold retirements into `_retired` so DuckDB can see the same rows.
    let r = cat.compact().await?;
    cat.vacuum(Duration::ZERO).await?;
    eprintln!("compacted {} partitions", r.partitions);
    Ok(())
}
