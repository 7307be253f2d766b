//! `ppdb serve`: the service's limits and embargo from flags, the state store
//! measured, expired jobs swept, and the TAP router served.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use server::app::users::Users;
use server::http::{access_log, connections};
use server::tap::{self, uws as jobs};

use super::{CatalogArg, EmbargoArg, StateArg};

/// `ppdb serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
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
    /// caller may store a sixteenth of it an hour (429 beyond), and anonymous
    /// callers together only while it is less than half full (503 beyond).
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
    /// Connections one client address (an IPv6 client: its /64) may hold open at once (raise it when a
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
    /// Seconds between maintenance checks of a catalog given with --catalog:
    /// when the latest snapshot reads some partition's rows from more than 8
    /// files of a table (or 16 hold them), the catalog is compacted in the
    /// background (as `ppdb compact`; no snapshot changes, queries go on).
    /// 0 turns it off; the bundled sample is never changed.
    #[arg(long, default_value_t = 300)]
    maintenance_seconds: u64,
    /// On SIGTERM or Ctrl-C: no new connection is taken, requests in
    /// progress are answered, for at most this many seconds (a second signal
    /// cuts them at once); then the process exits; async jobs still running
    /// end as ERROR (see docs/operations.md).
    #[arg(long, default_value_t = 30)]
    stop_grace_seconds: u64,
    /// A file of bearer tokens, one `user=secret` per line: those users see
    /// embargoed rows. More may come in the PPDB_TOKENS variable, same format.
    #[arg(long, env = "PPDB_TOKENS_FILE")]
    tokens: Option<PathBuf>,
    /// The data centre named as `publisher` in every result (IVOA Data Origin).
    #[arg(long, default_value = "Vera C. Rubin Observatory")]
    publisher: String,
    /// An e-mail address or URL named as `contact` in every result ("" for none).
    #[arg(long, default_value = "https://community.lsst.org")]
    contact: String,
    /// What every result gives as `citation` (a DOI, say); by default each
    /// result's own replay URL, which gives its rows again.
    #[arg(long)]
    citation: Option<String>,
    /// Where detector-visit images are served: a URL with {visit},
    /// {detector} and {kind} (calexp or difference), which /tap/links fills
    /// in for a detector-visit's images; without it, no image links.
    #[arg(long, value_name = "URL")]
    image_url_template: Option<String>,
    #[command(flatten)]
    embargo: EmbargoArg,
    #[command(flatten)]
    state: StateArg,
}

/// Serves until SIGTERM or Ctrl-C, then stops as `--stop-grace-seconds` says.
pub(super) async fn run(args: ServeArgs) -> Result<()> {
    let ServeArgs {
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
        maintenance_seconds,
        stop_grace_seconds,
        tokens,
        publisher,
        contact,
        citation,
        image_url_template,
        embargo,
        state,
    } = args;
    if let Some(t) = &image_url_template {
        let web = t.starts_with("https://") || t.starts_with("http://");
        if !web || !t.contains("{visit}") || !t.contains("{detector}") || !t.contains("{kind}") {
            anyhow::bail!(
                "--image-url-template {t}: give an http(s) URL with {{visit}}, {{detector}} and \
                 {{kind}} in it, e.g. https://images.example.org/{{kind}}?visit={{visit}}&detector={{detector}}"
            );
        }
    }
    let embargo = embargo.embargo()?;
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
    // Listened for before the port opens: until the accept loop ran, a
    // SIGTERM killed the process outright (its spill folder left behind).
    let signals = stop_signals();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let base_url = public_url
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://{addr}"));
    // ivoa.ObsCore's access_url: each detector-visit's DataLink links here.
    let options = engine::EngineOptions {
        links_url: Some(format!("{base_url}/tap/links")),
        ..options
    };
    let engine = state.engine_with(&catalog, options).await?;
    let held = engine.state().recount().await?;
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
    config.publisher = server::tap::origin::Publisher {
        name: publisher,
        contact: Some(contact).filter(|c| !c.trim().is_empty()),
        citation,
    };
    config.image_urls = image_url_template;
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
    if maintenance_seconds > 0
        && let Some(url) = catalog.writable_url()
    {
        super::maintenance::background(
            url,
            std::time::Duration::from_secs(maintenance_seconds),
            embargo,
        );
    }
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
    // Every request is independent and token records are written before a
    // response ends, so a stop loses nothing that was answered.
    let limits = connections::ConnectionLimits {
        read_timeout: std::time::Duration::from_secs(read_timeout.max(1)),
        per_address: connections_per_address.max(1),
        total: max_connections.max(1),
    };
    let router = tap::router(app.clone());
    let grace = std::time::Duration::from_secs(stop_grace_seconds);
    let stopped = connections::serve(listener, router, limits, signals, grace).await;
    let jobs = jobs::end_running(&app).await;
    eprintln!(
        "{}{}",
        match stopped {
            connections::Stopped::Drained => "stopped: every request in progress was answered",
            connections::Stopped::Cut =>
                "stopped: requests still in progress after --stop-grace-seconds were cut",
        },
        match jobs {
            0 => String::new(),
            n => format!("; {n} async job(s) still running now read ERROR (run them again)"),
        }
    );
    // The engine (and its spill folder) goes when the runtime drops the
    // tasks that hold it, as this command returns.
    Ok(())
}

/// Each SIGTERM or SIGINT (Ctrl-C) from now on; none where neither can be
/// listened for.
#[cfg(unix)]
fn stop_signals() -> impl futures::Stream<Item = ()> {
    use futures::StreamExt as _;
    use tokio::signal::unix::{SignalKind, signal};
    let each = |kind: SignalKind| {
        // Registered here, at once, not when first polled.
        let listened = signal(kind).ok();
        futures::stream::unfold(listened, |s| async move {
            let mut s = s?;
            s.recv().await?;
            Some(((), Some(s)))
        })
    };
    futures::stream::select(
        each(SignalKind::terminate()).boxed(),
        each(SignalKind::interrupt()).boxed(),
    )
}

/// Each Ctrl-C from when the accept loop starts.
#[cfg(not(unix))]
fn stop_signals() -> impl futures::Stream<Item = ()> {
    futures::stream::unfold((), |()| async {
        tokio::signal::ctrl_c().await.ok().map(|()| ((), ()))
    })
}

/// The privileged users of `ppdb serve`: the `--tokens` file and `PPDB_TOKENS`.
fn read_users(file: Option<&std::path::Path>) -> Result<Users> {
    let mut users = Users::default();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the tokens file {}", path.display()))?;
        users = Users::parse(&text, &path.display().to_string()).map_err(anyhow::Error::msg)?;
    }
    if let Ok(text) = std::env::var("PPDB_TOKENS") {
        users = users.merge(Users::parse(&text, "PPDB_TOKENS").map_err(anyhow::Error::msg)?);
    }
    Ok(users)
}
