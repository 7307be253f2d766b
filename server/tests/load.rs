//! Load: many clients at once on 127.0.0.1 against `ppdb serve`, mixing
//! cones, light curves, replays of earlier tokens and async jobs.
//!
//! Every request must succeed (no 5xx, no busy answer, no error inside a
//! result), the server must stay up, and its peak memory must stay inside what
//! its pools allow. CI runs 200 clients for 5 s on the debug build; the figure
//! in the README comes from the longer run:
//!
//! `PPDB_LOAD_SECONDS=60 PPDB_BIN=$CARGO_TARGET_DIR/bench-fast/ppdb cargo nextest run -p server --test load --no-capture`

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::serve::Server;
use rand::{Rng, SeedableRng};

/// Per query, the memory its sorts, joins and aggregates may take (MiB).
const QUERY_MEMORY_MB: u64 = 256;
/// Queries the server runs at once.
const CONCURRENT: u64 = 8;
/// What the server holds besides running queries: caches (Parquet footers and
/// columns, token results), the catalog state, buffers and code.
const FIXED_MB: u64 = 1024;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    /// Latencies per kind of operation.
    cone: Vec<Duration>,
    light_curve: Vec<Duration>,
    replay: Vec<Duration>,
    async_job: Vec<Duration>,
    errors: Vec<String>,
}

/// What the clients share: where to look, what to look up, tokens to replay.
struct Work {
    tap: String,
    client: reqwest::Client,
    ids: Vec<i64>,
    /// (ra, dec) bounds of the sample.
    sky: (f64, f64, f64, f64),
    tokens: Mutex<Vec<String>>,
    tally: Mutex<Tally>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// A sync query's body, checked for a VOTable that ended well; keeps its token.
async fn sync(w: &Work, adql: &str) -> Result<(), String> {
    let r = w
        .client
        .get(format!("{}/sync", w.tap))
        .query(&[("LANG", "ADQL"), ("QUERY", adql)])
        .send()
        .await
        .map_err(|e| format!("sync: {e}"))?;
    let status = r.status();
    let token = r
        .headers()
        .get("x-query-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.text().await.map_err(|e| format!("sync body: {e}"))?;
    finished_well(status, &body, adql)?;
    if let Some(t) = token {
        let mut tokens = w.tokens.lock().unwrap();
        if tokens.len() < 500 {
            tokens.push(t);
        }
    }
    Ok(())
}

fn finished_well(status: reqwest::StatusCode, body: &str, what: &str) -> Result<(), String> {
    if !status.is_success() {
        return Err(format!("{what}: HTTP {status}: {body}"));
    }
    if !body.contains("<INFO name=\"QUERY_STATUS\" value=\"OK\"/>")
        || body.contains("value=\"ERROR\"")
    {
        return Err(format!("{what}: the result did not end well: {body}"));
    }
    Ok(())
}

async fn replay(w: &Work, token: &str) -> Result<(), String> {
    let r = w
        .client
        .get(format!("{}/replay/{token}", w.tap))
        .send()
        .await
        .map_err(|e| format!("replay: {e}"))?;
    let status = r.status();
    let body = r.text().await.map_err(|e| format!("replay body: {e}"))?;
    finished_well(status, &body, &format!("replay {token}"))
}

async fn async_job(w: &Work, adql: &str) -> Result<(), String> {
    let r = w
        .client
        .post(format!("{}/async", w.tap))
        .form(&[("LANG", "ADQL"), ("QUERY", adql), ("PHASE", "RUN")])
        .send()
        .await
        .map_err(|e| format!("async: {e}"))?;
    if r.status().as_u16() != 303 {
        return Err(format!("async create: HTTP {}", r.status()));
    }
    let job = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("async create: no Location")?
        .to_string();
    for _ in 0..20 {
        let doc = w
            .client
            .get(&job)
            .query(&[("WAIT", "30")])
            .send()
            .await
            .map_err(|e| format!("async wait: {e}"))?
            .text()
            .await
            .map_err(|e| format!("async wait body: {e}"))?;
        if doc.contains("<uws:phase>COMPLETED</uws:phase>") {
            let r = w
                .client
                .get(format!("{job}/results/result"))
                .send()
                .await
                .map_err(|e| format!("async result: {e}"))?;
            let status = r.status();
            let body = r
                .text()
                .await
                .map_err(|e| format!("async result body: {e}"))?;
            return finished_well(status, &body, &job);
        }
        if doc.contains("<uws:phase>ERROR</uws:phase>") || doc.contains("<uws:phase>ABORTED") {
            return Err(format!("async job failed: {doc}"));
        }
    }
    Err(format!("async job {job} did not finish"))
}

fn cone(w: &Work, rng: &mut impl Rng) -> String {
    let (ra0, ra1, dec0, dec1) = w.sky;
    format!(
        "SELECT * FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), \
         CIRCLE('ICRS', {:.5}, {:.5}, 0.0833)) = 1",
        rng.random_range(ra0..ra1),
        rng.random_range(dec0..dec1)
    )
}

async fn client_loop(w: Arc<Work>, seed: u64, until: Instant) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    while Instant::now() < until {
        let pick = rng.random_range(0..100);
        let started = Instant::now();
        let (outcome, kind) = if pick < 45 {
            (sync(&w, &cone(&w, &mut rng)).await, 0)
        } else if pick < 85 {
            let id = w.ids[rng.random_range(0..w.ids.len())];
            let table = if pick % 2 == 0 {
                "DiaSource"
            } else {
                "DiaForcedSource"
            };
            let adql = format!("SELECT * FROM ppdb.{table} WHERE diaObjectId = {id}");
            (sync(&w, &adql).await, 1)
        } else if pick < 97 {
            let token = {
                let tokens = w.tokens.lock().unwrap();
                (!tokens.is_empty()).then(|| tokens[rng.random_range(0..tokens.len())].clone())
            };
            match token {
                Some(t) => (replay(&w, &t).await, 2),
                None => continue,
            }
        } else {
            (async_job(&w, &cone(&w, &mut rng)).await, 3)
        };
        let took = started.elapsed();
        let mut t = w.tally.lock().unwrap();
        match outcome {
            Ok(()) => match kind {
                0 => t.cone.push(took),
                1 => t.light_curve.push(took),
                2 => t.replay.push(took),
                _ => t.async_job.push(took),
            },
            Err(e) => t.errors.push(e),
        }
    }
}

/// A process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn csv(client: &reqwest::Client, tap: &str, adql: &str) -> String {
    client
        .get(format!("{tap}/sync"))
        .query(&[("LANG", "ADQL"), ("QUERY", adql), ("RESPONSEFORMAT", "csv")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_mixing_cones_light_curves_jobs_and_replays_all_succeed() {
    let clients = env_or("PPDB_LOAD_CLIENTS", 200);
    let seconds = env_or("PPDB_LOAD_SECONDS", 5);
    // Every client here comes from 127.0.0.1, where real ones would come from
    // as many addresses: the per-caller shares are lifted.
    let server = Server::start(&[
        "--query-memory-mb",
        &QUERY_MEMORY_MB.to_string(),
        "--max-concurrent",
        &CONCURRENT.to_string(),
        "--max-per-caller",
        "100000",
        "--jobs-per-hour",
        "100000",
    ]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let ids: Vec<i64> = csv(
        &client,
        &server.tap,
        "SELECT TOP 500 diaObjectId FROM ppdb.DiaObject WHERE nDiaSources > 2",
    )
    .await
    .lines()
    .skip(1)
    .map(|l| l.parse().unwrap())
    .collect();
    assert!(ids.len() > 100, "objects with light curves: {}", ids.len());
    let bounds = csv(
        &client,
        &server.tap,
        "SELECT MIN(ra), MAX(ra), MIN(dec), MAX(dec) FROM ppdb.DiaObject",
    )
    .await;
    let b: Vec<f64> = bounds
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let work = Arc::new(Work {
        tap: server.tap.clone(),
        client,
        ids,
        sky: (b[0], b[1], b[2], b[3]),
        tokens: Mutex::new(Vec::new()),
        tally: Mutex::new(Tally::default()),
    });

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client_loop(work.clone(), i, until)))
        .collect();
    for t in tasks {
        t.await.expect("a client task ends without panicking");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let peak = peak_rss_mb(server.pid());

    let r = work
        .client
        .get(format!("{}/availability", server.tap))
        .send()
        .await
        .expect("the server is still up");
    assert!(r.status().is_success());

    let mut t = std::mem::take(&mut *work.tally.lock().unwrap());
    let errors = std::mem::take(&mut t.errors);
    let mut all = Vec::new();
    let mut lines = Vec::new();
    for (name, v) in [
        ("cone", &mut t.cone),
        ("light curve", &mut t.light_curve),
        ("replay", &mut t.replay),
        ("async job", &mut t.async_job),
    ] {
        v.sort();
        lines.push(format!(
            "  {name}: {} ops, p50 {:.1} ms, p99 {:.1} ms",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99)
        ));
        assert!(!v.is_empty(), "no {name} completed");
        all.extend(v.iter().copied());
    }
    all.sort();
    let bound = (CONCURRENT * QUERY_MEMORY_MB + FIXED_MB) as f64;
    println!(
        "load: {clients} clients for {elapsed:.1} s: {} ops ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms, \
         {} errors; server peak RSS {peak:.0} MiB (pools allow {bound:.0})\n{}",
        all.len(),
        all.len() as f64 / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        errors.len(),
        lines.join("\n")
    );
    assert!(
        errors.is_empty(),
        "{} errors, the first: {}",
        errors.len(),
        errors[0]
    );
    assert!(peak < bound, "peak RSS {peak:.0} MiB over {bound:.0} MiB");
}
