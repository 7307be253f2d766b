//! `ppdb`: the command-line program of the PPDB query engine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use catalog::chunk::{self, Manifest};
use catalog::sample::{SampleConfig, generate_with_progress};
use catalog::{Catalog, IngestOutcome, TableId, store};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

mod query;
mod stdout;

use server::http::{access_log, connections};
use server::tap::{self, auth as access, uws as jobs};

use stdout::say;

/// Memory a finished query freed goes back to the system: glibc's allocator
/// kept it in per-thread arenas (8.9 GB held ten minutes after eight cross
/// joins ended).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The bundled sample catalog, relative to the source tree this binary was built from.
const SAMPLE_CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample");

#[derive(Parser)]
#[command(
    name = "ppdb",
    version,
    about = "Rubin Prompt Products: a versioned, partitioned Parquet catalog with exact time travel"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct CatalogArg {
    /// Catalog URL: a local path, file://, memory:// or s3://bucket/prefix
    /// (default: the sample catalog bundled in data/sample).
    #[arg(long, env = "PPDB_CATALOG")]
    pub(crate) catalog: Option<String>,
}

impl CatalogArg {
    fn read_url(&self) -> String {
        self.catalog
            .clone()
            .unwrap_or_else(|| SAMPLE_CATALOG.to_string())
    }

    fn write_url(&self, what: &str) -> Result<String> {
        match &self.catalog {
            Some(c) => Ok(c.clone()),
            None => bail!(
                "`ppdb {what}` changes a catalog, so it needs --catalog URL \
                 (the bundled sample in data/sample stays read-only)"
            ),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Write realistic replica chunks and src chunks (deterministic for a seed).
    Sample {
        /// Folder to write the chunk folders into.
        #[arg(long)]
        out: PathBuf,
        /// Objects on the sky (those a visit detects become DiaObjects).
        #[arg(long, default_value_t = 10_000)]
        objects: usize,
        /// Nights of observing.
        #[arg(long, default_value_t = 3)]
        nights: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Objects per square degree.
        #[arg(long, default_value_t = 2_000.0)]
        density: f64,
        /// Visits per night (default: cover the patch twice).
        #[arg(long)]
        visits_per_night: Option<usize>,
        /// Visits per replica chunk.
        #[arg(long, default_value_t = 4)]
        visits_per_chunk: usize,
        /// Probability that a visit detects an object in its field.
        #[arg(long, default_value_t = 0.4)]
        detection_probability: f64,
        /// Do not write src (PromptSource) chunks.
        #[arg(long)]
        no_src: bool,
        /// Right ascension of the field centre, in degrees (the patch may cross RA 0).
        #[arg(long, default_value_t = 55.0, allow_negative_numbers = true)]
        ra: f64,
        /// Declination of the field centre, in degrees (the patch may cover a pole).
        #[arg(long, default_value_t = -30.0, allow_negative_numbers = true)]
        dec: f64,
    },
    /// Commit chunks, one snapshot each, in chunk_id order.
    Ingest {
        #[command(flatten)]
        catalog: CatalogArg,
        /// HEALPix order of partitions, for a new catalog.
        #[arg(long, default_value_t = catalog::DEFAULT_PARTITION_ORDER)]
        partition_order: u8,
        /// Chunk folders, or folders of chunk folders.
        #[arg(required = true)]
        chunks: Vec<PathBuf>,
    },
    /// List snapshots: number, commit time, chunk, rows added per table.
    Snapshots {
        #[command(flatten)]
        catalog: CatalogArg,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Merge small files per partition; no snapshot changes.
    Compact {
        #[command(flatten)]
        catalog: CatalogArg,
    },
    /// Delete files that no retained snapshot needs (replaced by compaction, or left
    /// by failed commits). By default every snapshot is retained; --expire-before
    /// expires old snapshots, except those live query tokens read.
    Vacuum {
        #[command(flatten)]
        catalog: CatalogArg,
        /// Keep unreferenced files younger than this many seconds (a commit may be
        /// under way), and files a compaction replaced less than this long ago (a
        /// server's query may still read them: keep it above --max-duration).
        #[arg(long, default_value_t = 3600)]
        grace_seconds: u64,
        /// Expire snapshots older than this one (a number, or an ISO-8601 UTC time:
        /// those committed before it), except those the live tokens of the state store
        /// read; then compact away rows only expired snapshots saw. The latest snapshot
        /// is never expired, and expiring cannot be undone.
        #[arg(long)]
        expire_before: Option<String>,
        #[command(flatten)]
        state: StateArg,
    },
    /// Run one ADQL query; the result goes to stdout, errors to stderr.
    Query(query::QueryArgs),
    /// Repeat the query a token names, exactly, and prove it: the rows must match
    /// the row count and checksum recorded when the token was made.
    Replay(query::ReplayArgs),
    /// Serve the catalog over TAP 1.1 at http://LISTEN/tap (sync, async, uploads, VOSI, replay, and a web page at /).
    Serve {
        #[command(flatten)]
        catalog: CatalogArg,
        /// Address to listen on (loopback by default; port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The URL clients reach this server at, for links in results
        /// (default: http://LISTEN as bound).
        #[arg(long)]
        public_url: Option<String>,
        /// Rows returned when a request names no MAXREC.
        #[arg(long, default_value_t = 100_000)]
        maxrec_default: u64,
        /// The most rows any request may ask for.
        #[arg(long, default_value_t = 10_000_000)]
        maxrec_limit: u64,
        /// The longest a query may run, in seconds (async jobs may ask for less).
        #[arg(long, default_value_t = 600)]
        max_duration: u64,
        /// Queries run at once (default: 4 per core); more wait in a queue.
        #[arg(long)]
        max_concurrent: Option<usize>,
        /// Queries that may wait for a turn before the service answers "busy" (503).
        #[arg(long, default_value_t = 256)]
        queue: usize,
        /// Queries one caller (a user, or the address of an anonymous caller)
        /// may have running or waiting at once (default: --max-concurrent plus half
        /// of --queue, so that others always find a place in the queue); of
        /// those, at most half the slots run at once and the rest wait their turn.
        #[arg(long)]
        max_per_caller: Option<usize>,
        /// Async jobs one caller may create in an hour (429 beyond).
        #[arg(long, default_value_t = 200)]
        jobs_per_hour: usize,
        /// Memory one query may use for sorts, joins and aggregates, in MiB.
        #[arg(long, default_value_t = 2048)]
        query_memory_mb: usize,
        /// Memory all queries together may use, in MiB (default: half of the
        /// machine's); past it a query fails with "try again", not the service.
        #[arg(long)]
        memory_mb: Option<usize>,
        /// Temporary disk all queries together may fill when sorts and joins
        /// spill, in MiB; past it a query fails.
        #[arg(long, default_value_t = 16384)]
        spill_disk_mb: usize,
        /// Folder for spilled files (default: the system's temporary folder);
        /// files a killed server left are removed at the next start.
        #[arg(long)]
        spill_dir: Option<std::path::PathBuf>,
        /// The most the state store may hold, in MiB: token records, the uploads
        /// they read and async results. Past it new queries and jobs are refused
        /// (503) until jobs expire or an operator expires tokens; one anonymous
        /// caller may store a sixteenth of it an hour (429 beyond).
        #[arg(long, default_value_t = 10240)]
        state_limit_mb: u64,
        /// The largest TAP upload accepted, in MiB.
        #[arg(long, default_value_t = 16)]
        upload_limit_mb: u64,
        /// Fetch upload URLs that point at loopback or private addresses (by
        /// default only public ones, so clients cannot make the service read
        /// what only it can reach).
        #[arg(long, env = "PPDB_ALLOW_PRIVATE_UPLOADS")]
        allow_private_uploads: bool,
        /// Hours an async job and its result are kept at most.
        #[arg(long, default_value_t = 168)]
        job_lifetime_hours: u64,
        /// Seconds a client may take to send a request's head, or let its body
        /// stall (a body may take ten times this in all); idle connections close after it.
        #[arg(long, default_value_t = 30)]
        read_timeout: u64,
        /// Connections one client address may hold open at once (raise it when a
        /// proxy in front of the service makes every client one address).
        #[arg(long, default_value_t = 256)]
        connections_per_address: usize,
        /// Connections held open at once in all (keep it under the process's
        /// file limit, `ulimit -n`); more wait to be accepted.
        #[arg(long, default_value_t = 4096)]
        max_connections: usize,
        /// Where to write the access log, one JSON line per request (who, from
        /// where, what, status, token, rows); `-` is standard error.
        #[arg(long, default_value = "-")]
        access_log: PathBuf,
        /// A file of bearer tokens, one `user=secret` per line: those users see
        /// embargoed rows. More may come in the PPDB_TOKENS variable, same format.
        #[arg(long, env = "PPDB_TOKENS_FILE")]
        tokens: Option<PathBuf>,
        /// Rows younger than this many hours (by observation time) are shown only to
        /// users with a bearer token; 0 turns the embargo off.
        #[arg(long, default_value_t = 80.0)]
        embargo_hours: f64,
        /// Embargo the rows after this time instead (MJD, TAI), whatever the time now.
        #[arg(long, conflicts_with = "embargo_hours")]
        embargo_until: Option<f64>,
        #[command(flatten)]
        state: StateArg,
    },
    /// Show, list or expire query tokens.
    Token {
        #[command(subcommand)]
        action: query::TokenAction,
    },
}

#[derive(Args, Clone, Default)]
struct StateArg {
    /// Where query tokens are kept (an object-store URL). Default: the catalog's own
    /// _state/ folder when the catalog is writable; for the bundled sample, and
    /// read-only catalogs, the per-user folder ($XDG_STATE_HOME/ppdb or ~/.local/state/ppdb).
    #[arg(long, env = "PPDB_STATE")]
    pub(crate) state: Option<String>,
}

impl StateArg {
    /// Opens the engine on a catalog with this state store.
    async fn engine(&self, catalog: &CatalogArg) -> Result<engine::Engine> {
        self.engine_with(catalog, engine::EngineOptions::default())
            .await
    }

    /// Opens the engine with `options`, its state store as this argument says.
    async fn engine_with(
        &self,
        catalog: &CatalogArg,
        options: engine::EngineOptions,
    ) -> Result<engine::Engine> {
        let state = match (&self.state, &catalog.catalog) {
            (Some(s), _) => Some(s.clone()),
            // The bundled sample is part of the source tree: never write into it.
            (None, None) => Some(engine::StateStore::user_default()?.url().to_string()),
            (None, Some(_)) => None,
        };
        let options = engine::EngineOptions { state, ..options };
        Ok(engine::Engine::open_with(&catalog.read_url(), options).await?)
    }
}

/// Stack per runtime thread (reserved; touched only by deep queries).
const THREAD_STACK: usize = engine::THREAD_STACK;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Planning recurses as deep as a query's expressions nest (ADQL allows chains of
    // up to adql::MAX_OPERATORS): give every thread room for that, not tokio's 2 MiB.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // block_on polls on the calling thread: make that one as deep as the workers.
    let outcome = std::thread::Builder::new()
        .name("ppdb".into())
        .stack_size(THREAD_STACK)
        .spawn(move || rt.block_on(run(cli)))
        .map_err(anyhow::Error::from)
        .and_then(|t| {
            t.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the command stopped unexpectedly")))
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read the output stopped reading (`ppdb snapshots | head -1`).
        Err(e) if e.is::<stdout::Closed>() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", explain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error as the user reads it: the context added on the way, then the
/// engine's own account of its error (without DataFusion's wrapping of it).
fn explain(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        if let Some(engine) = cause.downcast_ref::<engine::Error>() {
            parts.push(engine.message());
            return parts.join(": ");
        }
        parts.push(cause.to_string());
    }
    format!("{e:#}")
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Sample {
            out,
            objects,
            nights,
            seed,
            density,
            visits_per_night,
            visits_per_chunk,
            detection_probability,
            no_src,
            ra,
            dec,
        } => {
            if !(0.0..360.0).contains(&ra) || !(-90.0..=90.0).contains(&dec) {
                bail!(
                    "--ra {ra} --dec {dec}: the field centre needs RA in [0, 360) and Dec in [-90, 90]"
                );
            }
            let cfg = SampleConfig {
                objects,
                nights,
                seed,
                density,
                visits_per_night,
                visits_per_chunk,
                detection_probability,
                src: !no_src,
                ra,
                dec,
            };
            let bar = bar(nights as u64, "nights");
            let summary = tokio::task::spawn_blocking(move || {
                generate_with_progress(&cfg, &out, &mut |done, _| bar.set_position(done as u64))
                    .map(|s| (s, bar))
            })
            .await??;
            let (summary, bar) = summary;
            bar.finish_and_clear();
            let (ra, dec, side) = summary.footprint;
            say!(
                "wrote {} chunks; a {side:.3}° square around RA {ra:.3}, Dec {dec:.3}",
                summary.chunks
            );
            for (t, n) in &summary.rows {
                say!("  {t:<32} {n:>10} rows");
            }
        }
        Command::Ingest {
            catalog,
            partition_order,
            chunks,
        } => {
            let url = catalog.write_url("ingest")?;
            let cat = Catalog::open_or_create(&url, partition_order).await?;
            let ordered = order_chunks(&chunks).await?;
            let bar = bar(ordered.len() as u64, "chunks");
            let started = Instant::now();
            let (mut committed, mut resent, mut rows) = (0, 0, 0u64);
            let locs = ordered
                .iter()
                .map(|(dir, _)| store::open_existing_local(dir))
                .collect::<Result<Vec<_>, _>>()?;
            let name = |i: usize| {
                ordered[i]
                    .0
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            };
            if !ordered.is_empty() {
                bar.set_message(name(0));
            }
            cat.ingest_sequence(&locs, |i, outcome| {
                match outcome {
                    IngestOutcome::Committed(info) => {
                        committed += 1;
                        rows += info.rows_added.values().sum::<u64>();
                    }
                    IngestOutcome::AlreadyCommitted { .. } => resent += 1,
                }
                bar.inc(1);
                if i + 1 < ordered.len() {
                    bar.set_message(name(i + 1));
                }
            })
            .await
            .map_err(|(i, e)| {
                anyhow::Error::new(e).context(format!("ingesting {}", ordered[i].0.display()))
            })?;
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            let latest = cat.state().await?.latest();
            say!(
                "committed {committed} chunks ({resent} already committed), {rows} rows in {secs:.2} s \
                 ({:.0} rows/s); latest snapshot {latest}",
                rows as f64 / secs.max(1e-9)
            );
        }
        Command::Snapshots { catalog, json } => {
            let cat = Catalog::open(&catalog.read_url()).await?;
            let log = cat.state().await?;
            let snaps = cat.snapshots().await?;
            if json {
                for s in &snaps {
                    say!("{}", serde_json_line(s));
                }
                return Ok(());
            }
            say!(
                "{:>8}  {:<27} {:<14} {:<20} {:>12}  {:>8} {:>8} {:>8} {:>8} {:>8}  {:>7}  state",
                "snapshot",
                "committed_at (UTC)",
                "MJD (UTC)",
                "format",
                "chunk_id",
                "DiaObj",
                "DiaSrc",
                "Forced",
                "Visits",
                "Prompt",
                "updated"
            );
            for s in &snaps {
                let n = |t: TableId| s.rows_added.get(&t).copied().unwrap_or(0);
                say!(
                    "{:>8}  {:<27} {:<14.6} {:<20} {:>12}  {:>8} {:>8} {:>8} {:>8} {:>8}  {:>7}  {}",
                    s.snapshot,
                    s.committed_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                    engine::mjd_utc(s.committed_at),
                    s.chunk.format,
                    s.chunk.chunk_id,
                    n(TableId::DiaObject),
                    n(TableId::DiaSource),
                    n(TableId::DiaForcedSource),
                    n(TableId::DetectorVisitProcessingSummary),
                    n(TableId::PromptSource),
                    s.rows_updated.values().sum::<u64>(),
                    if log.is_expired(s.snapshot) {
                        "expired"
                    } else {
                        "retained"
                    },
                );
            }
            if snaps.is_empty() {
                say!("(no snapshots yet)");
            }
        }
        Command::Compact { catalog } => {
            let cat = Catalog::open(&catalog.write_url("compact")?).await?;
            let r = cat.compact().await?;
            say!(
                "compacted {} partitions: {} files replaced by {}{}",
                r.partitions,
                r.files_removed,
                r.files_added,
                if r.rows_dropped > 0 {
                    format!(
                        "; dropped {} rows no retained snapshot sees",
                        r.rows_dropped
                    )
                } else {
                    String::new()
                }
            );
        }
        Command::Query(args) => query::query(args).await?,
        Command::Replay(args) => query::replay(args).await?,
        Command::Serve {
            catalog,
            listen,
            public_url,
            maxrec_default,
            maxrec_limit,
            max_duration,
            max_concurrent,
            queue,
            max_per_caller,
            jobs_per_hour,
            query_memory_mb,
            memory_mb,
            spill_disk_mb,
            spill_dir,
            state_limit_mb,
            upload_limit_mb,
            allow_private_uploads,
            job_lifetime_hours,
            read_timeout,
            connections_per_address,
            max_connections,
            access_log,
            tokens,
            embargo_hours,
            embargo_until,
            state,
        } => {
            let embargo = match embargo_until {
                // NaN compares false with every time: it would embargo nothing.
                Some(t) if !t.is_finite() => {
                    bail!("--embargo-until {t}: expected an MJD (TAI), such as 61001.6")
                }
                Some(t) => engine::Embargo::Until(t),
                None if embargo_hours == 0.0 => engine::Embargo::Off,
                // A century is the most; beyond that the window overflows a duration.
                None if embargo_hours > 0.0 && embargo_hours <= 876_600.0 => {
                    engine::Embargo::Window(std::time::Duration::from_secs_f64(
                        embargo_hours * 3600.0,
                    ))
                }
                None => bail!(
                    "--embargo-hours {embargo_hours}: expected a number of hours from 0 \
                     (no embargo) to 876600 (a century)"
                ),
            };
            let users = read_users(tokens.as_deref())?;
            let mib = |n: usize| n.saturating_mul(1 << 20);
            let defaults = engine::EngineOptions::default();
            let options = engine::EngineOptions {
                memory_limit: mib(query_memory_mb),
                service_memory: memory_mb.map(mib).unwrap_or(defaults.service_memory),
                spill_disk: (mib(spill_disk_mb)) as u64,
                state_limit: Some(state_limit_mb.saturating_mul(1 << 20)),
                spill_dir,
                embargo,
                ..defaults
            };
            let engine = state.engine_with(&catalog, options).await?;
            let held = engine.state().recount().await?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            let base_url = public_url
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("http://{addr}"));
            let mut config = server::app::Config::new(base_url.clone());
            config.maxrec_default = maxrec_default.min(maxrec_limit);
            config.maxrec_limit = maxrec_limit;
            config.max_duration = std::time::Duration::from_secs(max_duration.max(1));
            config.upload_limit = upload_limit_mb.saturating_mul(1 << 20);
            config.private_uploads = allow_private_uploads;
            config.read_timeout = std::time::Duration::from_secs(read_timeout.max(1));
            config.per_caller = max_per_caller;
            config.jobs_per_hour = jobs_per_hour.max(1);
            config.stored_per_hour = (state_limit_mb.saturating_mul(1 << 20) / 16).max(1 << 20);
            config.job_lifetime =
                std::time::Duration::from_secs(job_lifetime_hours.saturating_mul(3600).max(60));
            let concurrent = max_concurrent
                .unwrap_or_else(|| 4 * std::thread::available_parallelism().map_or(2, |n| n.get()));
            let known = users.len();
            let mut app = server::app::App::new(engine, config, concurrent, queue, users).await;
            app.access_log = access_log::Sink::open(&access_log)
                .with_context(|| format!("cannot open the access log {}", access_log.display()))?;
            let app = std::sync::Arc::new(app);
            // Jobs past their destruction time are deleted, results and all.
            let sweeper = app.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                for round in 1u64.. {
                    tick.tick().await;
                    if let Err(e) = jobs::sweep(&sweeper).await {
                        eprintln!("warning: deleting expired jobs failed: {}", e.message());
                    }
                    // Other servers on the same store write too; and replacing a
                    // job's record is counted as if it were new.
                    if round % 10 == 0
                        && let Err(e) = sweeper.engine.state().recount().await
                    {
                        eprintln!("warning: measuring the state store failed: {}", e.message());
                    }
                }
            });
            println!("serving {} at {base_url}/tap", catalog.read_url());
            // On stderr: the first line of stdout is the address, which scripts read.
            eprintln!(
                "embargo: {}; {known} privileged bearer token(s)",
                match embargo {
                    engine::Embargo::Off => "off".to_string(),
                    engine::Embargo::Window(w) =>
                        format!("rows younger than {} h", w.as_secs_f64() / 3600.0),
                    engine::Embargo::Until(t) => format!("rows after MJD {t} (TAI)"),
                }
            );
            if let Some((used, limit)) = held {
                eprintln!(
                    "state store: {} of {} MiB held{}",
                    used >> 20,
                    limit >> 20,
                    if used >= limit {
                        " (full: new queries are refused until tokens are expired)"
                    } else {
                        ""
                    }
                );
            }
            use std::io::Write as _;
            std::io::stdout().flush()?;
            // Runs until the process is stopped; every request is independent and
            // token records are written before a response ends, so nothing is lost.
            let limits = connections::ConnectionLimits {
                read_timeout: std::time::Duration::from_secs(read_timeout.max(1)),
                per_address: connections_per_address.max(1),
                total: max_connections.max(1),
            };
            let router = tap::router(app);
            connections::serve(listener, router, limits).await;
        }
        Command::Token { action } => query::token(action).await?,
        Command::Vacuum {
            catalog,
            grace_seconds,
            expire_before,
            state,
        } => {
            let cat = Catalog::open(&catalog.write_url("vacuum")?).await?;
            if let Some(when) = expire_before {
                let log = cat.state().await?;
                let before = match when.trim().parse::<u64>() {
                    Ok(k) => k,
                    Err(_) => {
                        let t = chrono::DateTime::parse_from_rfc3339(when.trim())
                            .with_context(|| {
                                format!(
                                    "--expire-before {when}: expected a snapshot number or an \
                                     ISO-8601 time such as 2025-06-01T00:00:00Z"
                                )
                            })?
                            .with_timezone(&chrono::Utc);
                        1 + log.snapshots.iter().filter(|s| s.committed_at < t).count() as u64
                    }
                };
                // Live tokens pin their snapshots: retention keeps what they read.
                let engine = state.engine(&catalog).await?;
                let tokens: Vec<engine::TokenRecord> = engine
                    .state()
                    .list()
                    .await?
                    .into_iter()
                    .filter(|r| r.catalog_id == log.catalog_id)
                    .collect();
                let keep: Vec<u64> = tokens.iter().map(|r| r.snapshot).collect();
                let r = cat.expire(before, &keep).await?;
                let latest = cat.state().await?;
                say!(
                    "retained snapshots {} to {}{}; expired {} snapshot(s) now",
                    latest.expired_before,
                    latest.latest(),
                    if r.kept.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", and {:?} for the live tokens in {}",
                            r.kept,
                            engine.state().url()
                        )
                    },
                    r.expired.len()
                );
                let c = cat.compact().await?;
                say!(
                    "compacted {} partitions: {} files replaced by {}; dropped {} rows no retained snapshot sees",
                    c.partitions,
                    c.files_removed,
                    c.files_added,
                    c.rows_dropped
                );
            }
            let r = cat.vacuum(Duration::from_secs(grace_seconds)).await?;
            say!(
                "deleted {} unreferenced files; kept {}",
                r.deleted.len(),
                r.kept
            );
        }
    }
    Ok(())
}

/// The privileged users of `ppdb serve`: the `--tokens` file and `PPDB_TOKENS`.
fn read_users(file: Option<&std::path::Path>) -> Result<access::Users> {
    let mut users = access::Users::default();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the tokens file {}", path.display()))?;
        users =
            access::Users::parse(&text, &path.display().to_string()).map_err(anyhow::Error::msg)?;
    }
    if let Ok(text) = std::env::var("PPDB_TOKENS") {
        users =
            users.merge(access::Users::parse(&text, "PPDB_TOKENS").map_err(anyhow::Error::msg)?);
    }
    Ok(users)
}

fn serde_json_line(s: &catalog::log::SnapshotInfo) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn bar(len: u64, unit: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b
}

/// Finds chunk folders (a folder with chunk.json, or the folders inside one) and
/// orders them: by chunk_id within each format, formats interleaved by time.
async fn order_chunks(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Manifest)>> {
    let mut dirs = Vec::new();
    for p in paths {
        if p.join(chunk::MANIFEST).is_file() {
            dirs.push(p.clone());
        } else if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|d| d.is_dir())
                .collect();
            inner.sort();
            if inner.is_empty() {
                bail!("{} holds no chunk.json and no chunk folders", p.display());
            }
            dirs.extend(inner);
        } else {
            bail!(
                "{} is not a chunk folder or a folder of chunk folders",
                p.display()
            );
        }
    }
    let mut found: Vec<(PathBuf, Manifest)> = Vec::new();
    for d in dirs {
        let loc = store::open_existing_local(Path::new(&d))?;
        let m = chunk::read_manifest(&loc).await?;
        found.push((d, m));
    }
    // chunk_id order within each format; the formats interleaved by time.
    let mut by_format: std::collections::BTreeMap<String, Vec<(PathBuf, Manifest)>> =
        Default::default();
    for (d, m) in found {
        by_format.entry(m.format.clone()).or_default().push((d, m));
    }
    let mut queues: Vec<std::collections::VecDeque<(PathBuf, Manifest)>> = by_format
        .into_values()
        .map(|mut v| {
            v.sort_by_key(|(_, m)| m.chunk_id);
            v.into()
        })
        .collect();
    let mut ordered = Vec::new();
    while let Some(q) = queues
        .iter_mut()
        .filter(|q| !q.is_empty())
        .min_by(|a, b| a[0].1.last_update_time.cmp(&b[0].1.last_update_time))
    {
        ordered.extend(q.pop_front());
    }
    Ok(ordered)
}
