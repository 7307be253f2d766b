//! What every handler shares: the engine, the service's configuration, its
//! limits, its jobs, its users, and where requests are logged. This module
//! and its children import nothing else from the crate, so the handlers in
//! `tap/` and `http/` depend on it and never the other way round.

use std::sync::Arc;
use std::time::Duration;

use engine::Engine;

pub mod allowance;
pub mod bodies;
pub mod examples;
pub mod jobs;
pub mod limits;
pub mod log_sink;
pub mod users;

use allowance::Allowance;
use bodies::Bodies;
use examples::Example;
use jobs::Jobs;
use limits::Limits;
use users::Users;

/// How the service behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Rows returned when a request names no MAXREC.
    pub maxrec_default: u64,
    /// The most rows any request may ask for.
    pub maxrec_limit: u64,
    /// The URL clients reach the service at (for links in results), without `/tap`.
    pub base_url: String,
    /// The longest a query may run (sync), and the most an async job may ask for.
    pub max_duration: Duration,
    /// The longest a UWS `WAIT` blocks.
    pub max_wait: Duration,
    /// How long async jobs and their results are kept at most.
    pub job_lifetime: Duration,
    /// The largest upload accepted, in bytes.
    pub upload_limit: u64,
    /// Whether uploads may be fetched from loopback and private addresses.
    pub private_uploads: bool,
    /// The longest a request head may take, and a request body may stall.
    pub read_timeout: Duration,
    /// Queries one caller may have running or waiting (default: every slot
    /// and half the queue).
    pub per_caller: Option<usize>,
    /// Async jobs one caller may create in an hour.
    pub jobs_per_hour: usize,
    /// Bytes one anonymous caller may leave in the state store in an hour
    /// (token records, kept uploads, async results).
    pub stored_per_hour: u64,
    /// Who publishes the results (the Data Origin items each result carries).
    pub publisher: crate::tap::origin::Publisher,
    /// Where a detector-visit's images are served (elsewhere): a URL with
    /// `{visit}`, `{detector}` and `{kind}` (`calexp` or `difference`), which
    /// `/tap/links` fills in; none gives no image links.
    pub image_urls: Option<String>,
}

impl Config {
    /// Defaults for everything but the address.
    pub fn new(base_url: String) -> Config {
        Config {
            maxrec_default: 100_000,
            maxrec_limit: 10_000_000,
            base_url,
            max_duration: Duration::from_secs(600),
            max_wait: Duration::from_secs(60),
            job_lifetime: Duration::from_secs(7 * 24 * 3600),
            upload_limit: 16 << 20,
            private_uploads: false,
            read_timeout: Duration::from_secs(30),
            per_caller: None,
            jobs_per_hour: 200,
            stored_per_hour: 640 << 20,
            publisher: Default::default(),
            image_urls: None,
        }
    }
}

/// What the handlers share.
pub struct App {
    /// The engine over the served catalog.
    pub engine: Engine,
    /// Limits and links.
    pub config: Config,
    /// Running queries and the queue in front of them.
    pub limits: Limits,
    /// Async jobs running in this process.
    pub jobs: Jobs,
    /// What each anonymous caller stored in the last hour.
    pub stored: Allowance,
    /// Request bodies held in memory at once.
    pub bodies: Bodies,
    /// The bearer tokens of privileged users.
    pub users: Users,
    /// The DALI examples, written for the served catalog.
    pub examples: Vec<Example>,
    /// Where each request is logged.
    pub access_log: log_sink::Sink,
    /// TAP_SCHEMA's rows for the VOSI tables documents, read on first use.
    pub(crate) tap_rows: tokio::sync::OnceCell<crate::tap::vosi::TapRows>,
}

impl App {
    /// A service over an engine; `concurrent` queries run at once, `queue` more wait.
    pub async fn new(
        engine: Engine,
        config: Config,
        concurrent: usize,
        queue: usize,
        users: Users,
    ) -> App {
        let examples = examples::for_catalog(&engine).await;
        // By default one caller may take every slot, but only half the queue:
        // others queue behind it, and are served, rather than told "busy".
        let share = config.per_caller.unwrap_or(concurrent + queue / 2);
        App {
            stored: Allowance::new(config.stored_per_hour),
            // Sixteen of the largest bodies at once, and never less than 256 MiB.
            bodies: Bodies::new((16 * config.upload_limit.saturating_add(1 << 20)).max(256 << 20)),
            engine,
            config,
            limits: Limits::new(concurrent, queue, share),
            jobs: Jobs::default(),
            users,
            examples,
            access_log: log_sink::Sink::Stderr,
            tap_rows: tokio::sync::OnceCell::new(),
        }
    }
}

/// The state every handler shares.
pub type Shared = Arc<App>;
