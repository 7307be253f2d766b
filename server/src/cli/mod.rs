//! The `ppdb` command line: one file per subcommand, the arguments they share
//! (where the catalog and the state store are) here.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

mod coverage;
mod export;
mod ingest;
mod maintenance;
mod query;
mod sample;
mod serve;
mod snapshots;
pub(crate) mod stdout;

/// The bundled sample catalog, relative to the source tree this binary was built from.
const SAMPLE_CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample");

#[derive(Parser)]
#[command(
    name = "ppdb",
    version,
    about = "Rubin Prompt Products: a versioned, partitioned Parquet catalog with exact time travel"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub(crate) struct CatalogArg {
    /// Catalog URL: a local path, file://, memory:// or s3://bucket/prefix
    /// (commands that only read default to the sample bundled in data/sample;
    /// those that write need it).
    #[arg(long, env = "PPDB_CATALOG")]
    pub(crate) catalog: Option<String>,
}

impl CatalogArg {
    pub(crate) fn read_url(&self) -> String {
        self.catalog
            .clone()
            .unwrap_or_else(|| SAMPLE_CATALOG.to_string())
    }

    /// The catalog's URL if one was named and it is not the bundled sample.
    pub(crate) fn writable_url(&self) -> Option<String> {
        self.catalog.clone().filter(|url| !is_bundled_sample(url))
    }

    pub(crate) fn write_url(&self, what: &str) -> Result<String> {
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
    Sample(sample::SampleArgs),
    /// Commit chunks, one snapshot each, in chunk_id order.
    Ingest(ingest::IngestArgs),
    /// List snapshots: number, commit time, chunk, rows added per table.
    Snapshots(snapshots::SnapshotsArgs),
    /// Merge small files per partition; no snapshot changes.
    Compact(maintenance::CompactArgs),
    /// Delete files that no retained snapshot needs (replaced by compaction, or left
    /// by failed commits). By default every snapshot is retained; --expire-before
    /// expires old snapshots, except those live query tokens read.
    Vacuum(maintenance::VacuumArgs),
    /// Run one ADQL query; the result goes to stdout, errors to stderr.
    Query(query::QueryArgs),
    /// Repeat the query a token names, exactly, and prove it: the rows must match
    /// the row count and checksum recorded when the token was made.
    Replay(query::ReplayArgs),
    /// Serve the catalog over TAP 1.1 at http://LISTEN/tap (sync, async, uploads, VOSI, replay, and a web page at /).
    Serve(Box<serve::ServeArgs>),
    /// Sky coverage as an IVOA MOC: where detectors looked (footprints, by
    /// night, with or without DIA rows), or where a table's rows are.
    Coverage(coverage::CoverageArgs),
    /// Write a snapshot as HATS catalogs (one per table) that LSDB, hats,
    /// DuckDB and pandas open; the rows are those of a query's token.
    Export(Box<export::ExportArgs>),
    /// Show, list or expire query tokens.
    Token {
        #[command(subcommand)]
        action: query::TokenAction,
    },
}

/// The embargo, as `serve` applies it and as maintenance lays files out for
/// it: give every process that serves or compacts a catalog the same.
#[derive(Args, Clone)]
pub(crate) struct EmbargoArg {
    /// The service's embargo: rows observed less than this many hours before
    /// now are shown only to users with a bearer token (`serve`), and
    /// compaction keeps the chunks that brought them out of the files of
    /// older rows, so that how long a query takes says nothing about them
    /// (`ingest`, `compact`, `vacuum`: give them what `serve` is given). 0
    /// turns it off
    #[arg(long, default_value_t = 80.0, allow_negative_numbers = true)]
    embargo_hours: f64,
    /// A fixed cutoff instead of --embargo-hours: rows observed after this
    /// MJD (TAI, not UTC) are embargoed, whatever the time now
    #[arg(long, conflicts_with = "embargo_hours", allow_negative_numbers = true)]
    embargo_until: Option<f64>,
}

impl EmbargoArg {
    /// The embargo the flags name, or why they name none.
    /// Whether the command line set the embargo (rather than the default).
    pub(crate) fn given(&self) -> bool {
        self.embargo_until.is_some() || self.embargo_hours != 80.0
    }

    pub(crate) fn embargo(&self) -> Result<engine::Embargo> {
        let hours = self.embargo_hours;
        Ok(match self.embargo_until {
            // NaN compares false with every time: it would embargo nothing.
            Some(t) if !t.is_finite() || t < 0.0 => {
                bail!("--embargo-until {t}: expected an MJD (TAI), such as 61001.6")
            }
            Some(t) => engine::Embargo::Until(t),
            None if hours == 0.0 => engine::Embargo::Off,
            // A century is the most; beyond that the window overflows a duration.
            None if hours > 0.0 && hours <= 876_600.0 => {
                engine::Embargo::Window(std::time::Duration::from_secs_f64(hours * 3600.0))
            }
            None => bail!(
                "--embargo-hours {hours}: expected a number of hours from 0 \
                 (no embargo) to 876600 (a century)"
            ),
        })
    }
}

#[derive(Args, Clone, Default)]
pub(crate) struct StateArg {
    /// Where query tokens are kept (an object-store URL). Default: the catalog's own
    /// _state/ folder when the catalog is writable; for the bundled sample, and
    /// read-only catalogs, the per-user folder ($XDG_STATE_HOME/ppdb or ~/.local/state/ppdb).
    #[arg(long, env = "PPDB_STATE")]
    pub(crate) state: Option<String>,
}

impl StateArg {
    /// Opens the engine on a catalog with this state store.
    pub(crate) async fn engine(&self, catalog: &CatalogArg) -> Result<engine::Engine> {
        self.engine_with(catalog, engine::EngineOptions::default())
            .await
    }

    /// Opens the engine with `options`, its state store as this argument says.
    pub(crate) async fn engine_with(
        &self,
        catalog: &CatalogArg,
        options: engine::EngineOptions,
    ) -> Result<engine::Engine> {
        let state = match (&self.state, &catalog.catalog) {
            (Some(s), _) => Some(s.clone()),
            // The bundled sample is part of the source tree: never write into it,
            // wherever the tree was cloned (it holds a marker file saying so).
            (None, None) => Some(engine::StateStore::user_default()?.url().to_string()),
            (None, Some(url)) if is_bundled_sample(url) => {
                Some(engine::StateStore::user_default()?.url().to_string())
            }
            (None, Some(_)) => None,
        };
        let options = engine::EngineOptions { state, ..options };
        Ok(engine::Engine::open_with(&catalog.read_url(), options).await?)
    }
}

/// The file that marks a catalog folder as the bundled sample (read-only).
const SAMPLE_MARKER: &str = ".bundled-sample";

/// Whether a catalog URL names the bundled sample in a source tree (this
/// binary's or another clone's): the marked folder `data/sample` beside a
/// `Cargo.toml`. A copy taken elsewhere is a catalog like any other.
fn is_bundled_sample(url: &str) -> bool {
    let path = url.strip_prefix("file://").unwrap_or(url);
    if path.contains("://") {
        return false;
    }
    let Ok(dir) = std::path::Path::new(path).canonicalize() else {
        return false;
    };
    dir.join(SAMPLE_MARKER).is_file()
        && dir.ends_with("data/sample")
        && dir
            .parent()
            .and_then(|d| d.parent())
            .is_some_and(|root| root.join("Cargo.toml").is_file())
}

/// Runs the command the line names.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Sample(args) => sample::run(args).await,
        Command::Ingest(args) => ingest::run(args).await,
        Command::Snapshots(args) => snapshots::run(args).await,
        Command::Compact(args) => maintenance::compact(args).await,
        Command::Vacuum(args) => maintenance::vacuum(args).await,
        Command::Query(args) => query::query(args).await,
        Command::Coverage(args) => coverage::run(args).await,
        Command::Export(args) => export::run(*args).await,
        Command::Replay(args) => query::replay(args).await,
        Command::Serve(args) => serve::run(*args).await,
        Command::Token { action } => query::token(action).await,
    }
}

pub(crate) fn bar(len: u64, unit: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b
}
