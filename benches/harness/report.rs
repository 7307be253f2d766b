//! The report: `results.json`, `report.md` and the plots beside them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::load::{LoadFigure, MemoryFigure};
use crate::peers::{Postgres, Python};
use crate::suite::{Counts, QueryFigure};
use crate::{Build, Settings};

/// Everything a run measured.
#[derive(Serialize)]
pub struct Results {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub versions: Versions,
    pub settings: Settings,
    pub scale: f64,
    pub catalog: Counts,
    pub build: Build,
    pub queries: Vec<QueryFigure>,
    pub load: Vec<LoadFigure>,
    pub memory: Vec<MemoryFigure>,
    pub seconds: f64,
}

/// The machine the run measured.
#[derive(Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
}

impl Machine {
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kb: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_else(|| std::env::consts::OS.into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: kb / 1024.0 / 1024.0,
            os,
        }
    }
}

/// The software measured.
#[derive(Serialize)]
pub struct Versions {
    pub ppdb: String,
    pub datafusion: String,
    pub peers: Vec<String>,
}

impl Versions {
    pub fn gather(python: &Python, postgres: Option<&Postgres<'_>>) -> Versions {
        let commit = Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let port = postgres.map(|p| p.port.to_string());
        let mut args = vec!["versions"];
        if let Some(p) = &port {
            args.push(p);
        }
        let peers = python
            .call(&args)
            .map(|s| s.lines().map(String::from).collect())
            .unwrap_or_default();
        Versions {
            ppdb: format!("{} ({commit})", env!("CARGO_PKG_VERSION")),
            datafusion: engine::DATAFUSION_VERSION.into(),
            peers,
        }
    }
}

/// Writes `results.json`, `report.md`, and the plots (through matplotlib).
pub fn write(dir: &Path, mut r: Results, took: Duration, python: &Python) -> Result<()> {
    r.seconds = took.as_secs_f64();
    let json = dir.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(&r)?)?;
    let plots = python
        .call(&["plot", super::path(&json)?, super::path(dir)?])
        .is_ok();
    let md = markdown(&r, plots);
    std::fs::write(dir.join("report.md"), &md)?;
    println!("{md}");
    eprintln!("report written to {}", dir.join("report.md").display());
    Ok(())
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 && a.is_finite() && b.is_finite() => format!("{:.3}", a / b),
        _ => "–".into(),
    }
}

fn ms(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite())
        .map_or("–".into(), |x| format!("{x:.2}"))
}

fn markdown(r: &Results, plots: bool) -> String {
    let mut m = String::new();
    let s = &r.settings;
    let _ = writeln!(m, "# ppdb-bench report\n");
    let _ = writeln!(m, "- date: {}", r.date);
    let _ = writeln!(m, "- command: `{}`", r.command);
    let _ = writeln!(
        m,
        "- machine: {} ({} cores), {:.0} GiB RAM, {}",
        r.machine.cpu, r.machine.cores, r.machine.memory_gib, r.machine.os
    );
    let _ = writeln!(
        m,
        "- versions: ppdb {}, DataFusion {}; peers: {}",
        r.versions.ppdb,
        r.versions.datafusion,
        r.versions.peers.join(", ")
    );
    let _ = writeln!(
        m,
        "- scale {} ({} DiaObjects generated over {} nights): {} DiaObject versions, {} current DiaObjects, {} DiaSources, {} DiaForcedSources",
        r.scale,
        s.objects,
        s.nights,
        r.catalog.versions,
        r.catalog.objects,
        r.catalog.sources,
        r.catalog.forced_sources
    );
    let b = &r.build;
    let _ = writeln!(
        m,
        "- ingest{}: {} chunks, {} rows in {:.1} s = **{:.0} rows/s** (generation {:.1} s, compaction {:.1} s)",
        if b.this_run {
            ""
        } else {
            " (catalog reused from an earlier run; its figures)"
        },
        b.chunks,
        b.rows,
        b.ingest_s,
        b.rows_per_s,
        b.generate_s,
        b.compact_s
    );
    let _ = writeln!(
        m,
        "- each query: 3 warm-up runs, then up to {} timed runs or {} s per engine and form; whole run {:.0} s\n",
        s.repeat, s.budget, r.seconds
    );

    let _ = writeln!(m, "## Queries (milliseconds)\n");
    let _ = writeln!(
        m,
        "| query | rows | ours p50 | p95 | p99 | rows/s | pinned p50 | pinned / ours | DuckDB p50 | PG+q3c p50 | ours / DuckDB | ours / PG |"
    );
    let _ = writeln!(
        m,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for q in &r.queries {
        let d = q.duckdb.as_ref().map(|d| d.p50_ms);
        let p = q.postgres.as_ref().map(|d| d.p50_ms);
        let _ = writeln!(
            m,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {} | {} | {} | {} | {} |",
            q.name,
            q.rows,
            q.ours.p50_ms,
            q.ours.p95_ms,
            q.ours.p99_ms,
            q.ours.rows_per_s,
            q.pinned.p50_ms,
            ratio(q.pinned.p50_ms, Some(q.ours.p50_ms)),
            ms(d),
            ms(p),
            ratio(q.ours.p50_ms, d),
            ratio(q.ours.p50_ms, p),
        );
    }
    if plots {
        let _ = writeln!(m, "\n![latency by query](latency.svg)");
    }

    let _ = writeln!(
        m,
        "\n## Concurrency: 5′ cones and light curves, half each, {} s per step\n",
        s.load_seconds
    );
    let _ = writeln!(
        m,
        "| path | clients | operations | errors | ops/s | p50 (ms) | p99 (ms) | server peak RSS (MB) |"
    );
    let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for l in &r.load {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            l.path,
            l.clients,
            l.operations,
            l.errors,
            l.ops_per_s,
            l.p50_ms,
            l.p99_ms,
            l.server_peak_mb.map_or("–".into(), |x| format!("{x:.0}"))
        );
    }
    if plots {
        let _ = writeln!(m, "\n![throughput and p99 by clients](concurrency.svg)");
    }

    let _ = writeln!(
        m,
        "\n## Server memory while streaming (CSV over TAP, one fresh server, sizes in order)\n"
    );
    let _ = writeln!(m, "| rows | bytes | seconds | server peak RSS (MB) |");
    let _ = writeln!(m, "|---:|---:|---:|---:|");
    for f in &r.memory {
        let _ = writeln!(
            m,
            "| {} | {} | {:.1} | {:.0} |",
            f.rows, f.bytes, f.seconds, f.server_peak_mb
        );
    }

    let _ = writeln!(m, "\n## Targets\n");
    let _ = writeln!(m, "| target | measured | met |");
    let _ = writeln!(m, "|---|---|:---:|");
    for (t, measured, met) in targets(r) {
        let _ = writeln!(
            m,
            "| {t} | {measured} | {} |",
            match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            }
        );
    }
    m
}

/// Each target of issue 6, what was measured, and whether it is met.
fn targets(r: &Results) -> Vec<(String, String, Option<bool>)> {
    let mut out = Vec::new();
    let find = |prefix: &str| r.queries.iter().find(|q| q.name.starts_with(prefix));
    let p50 = |s: &Option<crate::Stats>| s.as_ref().map(|s| s.p50_ms);
    if let Some(q) = find("cone 5") {
        let (o, d, p) = (q.ours.p50_ms, p50(&q.duckdb), p50(&q.postgres));
        out.push((
            "small cone p50 ≤ PostgreSQL + q3c".into(),
            format!("{o:.2} ms vs {} ms", ms(p)),
            p.map(|p| o <= p),
        ));
        out.push((
            "small cone p50 ≤ 0.1 × DuckDB".into(),
            format!("{} × DuckDB", ratio(o, d)),
            d.map(|d| o <= 0.1 * d),
        ));
    }
    for q in r
        .queries
        .iter()
        .filter(|q| q.name.starts_with("light curve"))
    {
        let (o, p) = (q.ours.p50_ms, p50(&q.postgres));
        out.push((
            format!("{} ≤ PostgreSQL", q.name),
            format!("{o:.2} ms vs {} ms", ms(p)),
            p.map(|p| o <= p),
        ));
    }
    if let Some(q) = find("full-table") {
        let (o, d, p) = (q.ours.p50_ms, p50(&q.duckdb), p50(&q.postgres));
        out.push((
            "full aggregate ≤ DuckDB".into(),
            format!("{o:.1} ms vs {} ms", ms(d)),
            d.map(|d| o <= d),
        ));
        out.push((
            "full aggregate ≤ 0.1 × PostgreSQL".into(),
            format!("{} × PostgreSQL", ratio(o, p)),
            p.map(|p| o <= 0.1 * p),
        ));
    }
    let worst = r
        .queries
        .iter()
        .map(|q| (q.pinned.p50_ms / q.ours.p50_ms, &q.name))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((w, name)) = worst {
        out.push((
            "pinned ≤ 1.1 × unpinned (every query)".into(),
            format!("worst {w:.3} ({name})"),
            Some(w <= 1.1),
        ));
    }
    let at = |path: &str, n: usize| r.load.iter().find(|l| l.path == path && l.clients == n);
    let pg20 = at("PostgreSQL + q3c", 20);
    for path in ["engine API", "TAP over HTTP"] {
        if let Some(l) = at(path, 20) {
            out.push((
                format!("20 clients ({path}): more ops/s than PostgreSQL"),
                format!(
                    "{:.0} vs {} ops/s",
                    l.ops_per_s,
                    pg20.map_or("–".into(), |p| format!("{:.0}", p.ops_per_s))
                ),
                pg20.map(|p| l.ops_per_s > p.ops_per_s),
            ));
            out.push((
                format!("20 clients ({path}): p99 ≤ 50 ms"),
                format!("{:.1} ms", l.p99_ms),
                Some(l.p99_ms <= 50.0),
            ));
        }
    }
    if let (Some(first), Some(last)) = (r.memory.first(), r.memory.last()) {
        let growth = last.server_peak_mb / first.server_peak_mb;
        out.push((
            "server RSS flat in result size".into(),
            format!(
                "{:.0} MB at {} rows, {:.0} MB at {} rows ({growth:.2}×)",
                first.server_peak_mb, first.rows, last.server_peak_mb, last.rows
            ),
            // Flat: a result 10× or 100× larger costs under 1.5× the memory.
            (last.rows > first.rows).then_some(growth <= 1.5),
        ));
    }
    out
}
