//! Concurrency (the cone + light-curve mix at 1, 20 and 100 clients, through the
//! engine API, through the TAP service over loopback HTTP, and against
//! Postgres) and the server's memory while it streams a large result.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use engine::{Engine, QueryOptions};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::peers::Postgres;
use crate::suite::{Setup, cone_adql, cone_postgres, light_curve_adql, light_curve_postgres};
use crate::{Settings, percentile};

/// One load step: a path at a number of clients.
#[derive(Serialize)]
pub struct LoadFigure {
    pub path: String,
    pub clients: usize,
    pub operations: usize,
    pub errors: usize,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The server's peak resident memory during the step (TAP steps only).
    pub server_peak_mb: Option<f64>,
}

/// One streamed result and the server's peak memory after it.
#[derive(Serialize)]
pub struct MemoryFigure {
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub server_peak_mb: f64,
}

/// The load mix: half 5′ cones at random objects, half light curves of random objects.
fn mix(setup: &Setup) -> (Vec<String>, Vec<String>) {
    let mut adql = Vec::new();
    let mut sql = Vec::new();
    for (i, (ra, dec)) in setup.centres.iter().enumerate() {
        adql.push(cone_adql(*ra, *dec));
        sql.push(cone_postgres(*ra, *dec));
        if let Some(id) = setup.ids.get(i) {
            adql.push(light_curve_adql(*id));
            sql.push(light_curve_postgres(*id));
        }
    }
    (adql, sql)
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    engine: &Engine,
    setup: &Setup,
    s: &Settings,
    postgres: Option<&Postgres<'_>>,
    ppdb: &Path,
    catalog_dir: &Path,
    work: &Path,
) -> Result<(Vec<LoadFigure>, Vec<MemoryFigure>)> {
    let (adql, sql) = mix(setup);
    let adql = Arc::new(adql);
    let seconds = Duration::from_secs_f64(s.load_seconds);
    let mut figures = Vec::new();
    for &n in &s.clients {
        let (lat, errors) = clients(n, seconds, adql.clone(), Client::Api(engine)).await;
        figures.push(figure("engine API", n, lat, errors, seconds, None));
        report(figures.last());
    }
    let server = Server::start(ppdb, catalog_dir, work)?;
    let http = reqwest::Client::new();
    for &n in &s.clients {
        let (lat, errors) =
            clients(n, seconds, adql.clone(), Client::Http(&http, &server.url)).await;
        let peak = server.peak_mb()?;
        figures.push(figure("TAP over HTTP", n, lat, errors, seconds, Some(peak)));
        report(figures.last());
    }
    drop(server);
    if let Some(pg) = postgres {
        for &n in &s.clients {
            let lat = pg.load_test(n, s.load_seconds, &sql)?;
            figures.push(figure("PostgreSQL + q3c", n, lat, 0, seconds, None));
            report(figures.last());
        }
    }
    let memory = stream(ppdb, catalog_dir, work, setup, s.stream_rows).await?;
    Ok((figures, memory))
}

fn report(f: Option<&LoadFigure>) {
    if let Some(f) = f {
        eprintln!(
            "{:<18} {:>3} clients: {:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}{}",
            f.path,
            f.clients,
            f.ops_per_s,
            f.p50_ms,
            f.p99_ms,
            f.errors,
            f.server_peak_mb
                .map_or(String::new(), |m| format!("  server peak {m:.0} MB"))
        );
    }
}

fn figure(
    path: &str,
    clients: usize,
    mut lat: Vec<Duration>,
    errors: usize,
    seconds: Duration,
    server_peak_mb: Option<f64>,
) -> LoadFigure {
    lat.sort();
    LoadFigure {
        path: path.into(),
        clients,
        operations: lat.len(),
        errors,
        ops_per_s: lat.len() as f64 / seconds.as_secs_f64(),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        server_peak_mb,
    }
}

#[derive(Clone, Copy)]
enum Client<'a> {
    Api(&'a Engine),
    Http(&'a reqwest::Client, &'a str),
}

impl Client<'_> {
    /// One operation: the query's whole result, in its pinned form (with a token).
    async fn run(&self, adql: &str) -> Result<()> {
        match self {
            Client::Api(engine) => {
                engine
                    .query(adql, &QueryOptions::default())
                    .await?
                    .collect()
                    .await?;
            }
            Client::Http(http, url) => {
                let r = http
                    .post(format!("{url}/tap/sync"))
                    .form(&[("REQUEST", "doQuery"), ("LANG", "ADQL"), ("QUERY", adql)])
                    .send()
                    .await?;
                let status = r.status();
                let body = r.bytes().await?;
                let error: &[u8] = b"QUERY_STATUS\" value=\"ERROR\"";
                if !status.is_success() || body.windows(error.len()).any(|w| w == error) {
                    bail!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(500)])
                    );
                }
            }
        }
        Ok(())
    }
}

/// `n` clients run the mix back to back for `seconds`: every latency, and the errors.
async fn clients(
    n: usize,
    seconds: Duration,
    mix: Arc<Vec<String>>,
    client: Client<'_>,
) -> (Vec<Duration>, usize) {
    let end = Instant::now() + seconds;
    let tasks = (0..n).map(|c| {
        let mix = mix.clone();
        async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(c as u64);
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < end {
                let q = &mix[rng.random_range(0..mix.len())];
                let t = Instant::now();
                match client.run(q).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("client {c}: {e:#}");
                        }
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }
    });
    let all = futures::future::join_all(tasks).await;
    let mut lat = Vec::new();
    let mut errors = 0;
    for (l, e) in all {
        lat.extend(l);
        errors += e;
    }
    (lat, errors)
}

/// `ppdb serve` on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(ppdb: &Path, catalog_dir: &Path, work: &Path) -> Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(work.join("serve.log"))?;
        let child = Command::new(ppdb)
            .args(["serve", "--catalog"])
            .arg(catalog_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with the same profile)",
                    ppdb.display()
                )
            })?;
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let t = Instant::now();
        loop {
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up {
                break;
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "ppdb serve exited ({status}); see {}",
                    work.join("serve.log").display()
                );
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("ppdb serve did not listen within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The server's peak resident memory so far (VmHWM), in MB.
    fn peak_mb(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .context("VmHWM")?
            .parse()?;
        Ok(kb / 1e3)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Streams results of growing size from a fresh server as CSV, counting rows and
/// bytes without keeping them, and reads the server's peak memory after each.
async fn stream(
    ppdb: &Path,
    catalog_dir: &Path,
    work: &Path,
    setup: &Setup,
    largest: u64,
) -> Result<Vec<MemoryFigure>> {
    let server = Server::start(ppdb, catalog_dir, work)?;
    let http = reqwest::Client::new();
    let mut sizes = vec![largest];
    while sizes[0] / 10 >= 100_000 {
        sizes.insert(0, sizes[0] / 10);
    }
    let sources = setup.counts.sources.max(1) as u64;
    let mut out = Vec::new();
    for rows in sizes {
        // Enough copies of DiaSource to reach `rows`, cut at exactly `rows`.
        let copies = rows.div_ceil(sources).max(1);
        let adql = format!(
            "SELECT s.diaSourceId, s.ra, s.dec, s.psfFlux, k.diaObjectId FROM ppdb.DiaSource AS s, \
             (SELECT TOP {copies} diaObjectId FROM ppdb.DiaObject ORDER BY diaObjectId) AS k"
        );
        let t = Instant::now();
        let maxrec = rows.to_string();
        let r = http
            .post(format!("{}/tap/sync", server.url))
            .form(&[
                ("REQUEST", "doQuery"),
                ("LANG", "ADQL"),
                ("QUERY", adql.as_str()),
                ("MAXREC", maxrec.as_str()),
                ("RESPONSEFORMAT", "csv"),
            ])
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("streaming {rows} rows: {}", r.text().await?);
        }
        let mut body = r.bytes_stream();
        let (mut bytes, mut lines) = (0u64, 0u64);
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            bytes += chunk.len() as u64;
            lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        let got = lines.saturating_sub(1);
        if got != rows {
            bail!("streaming: asked for {rows} rows, got {got}");
        }
        let f = MemoryFigure {
            rows,
            bytes,
            seconds: t.elapsed().as_secs_f64(),
            server_peak_mb: server.peak_mb()?,
        };
        eprintln!(
            "streamed {} rows ({:.0} MB CSV) in {:.1} s; server peak {:.0} MB",
            f.rows,
            f.bytes as f64 / 1e6,
            f.seconds,
            f.server_peak_mb
        );
        out.push(f);
    }
    Ok(out)
}
