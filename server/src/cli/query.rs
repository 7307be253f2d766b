//! The query commands: `ppdb query`, `ppdb replay` and `ppdb token`. They read
//! a catalog's files directly (no embargo: whoever runs them can read the
//! files), under the same time and memory limits as the service, and find a
//! token wherever it was made.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use engine::encode::{Format, ResultWriter};

use super::stdout::{Stdout, say};
use super::{CatalogArg, StateArg};

/// Limits on one query, as `ppdb serve` sets them.
#[derive(Args, Clone)]
pub struct LimitArgs {
    /// The longest the query may run, in seconds.
    #[arg(long, default_value_t = 600)]
    max_duration: u64,
    /// Memory the query may use for sorts, joins and aggregates, in MiB.
    #[arg(long, default_value_t = 2048)]
    query_memory_mb: usize,
}

impl LimitArgs {
    pub(super) fn duration(&self) -> Duration {
        Duration::from_secs(self.max_duration.max(1))
    }

    pub(super) fn memory(&self) -> usize {
        self.query_memory_mb.saturating_mul(1 << 20)
    }
}

/// The snapshot `--as-of` names, if given.
pub(super) fn as_of_arg(text: Option<&str>) -> Result<Option<adql::AsOf>> {
    text.map(|a| engine::as_of(a).map_err(|e| anyhow::anyhow!("--as-of: {e}")))
        .transpose()
}

/// Engine options giving each query `memory` bytes, with no embargo (the
/// command line reads the catalog as its owner).
pub(super) fn memory_options(memory: usize) -> engine::EngineOptions {
    engine::EngineOptions {
        memory_limit: memory,
        embargo: engine::Embargo::Off,
        ..Default::default()
    }
}

/// `ppdb query`.
#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    catalog: CatalogArg,
    /// Read this snapshot: a number, an MJD in UTC with a decimal point (61368.5),
    /// or an ISO-8601 UTC time (the last snapshot committed by then).
    #[arg(long)]
    as_of: Option<String>,
    /// Return at most this many rows (a note says when more exist).
    #[arg(long)]
    maxrec: Option<u64>,
    /// Output format: table, csv, tsv, json, votable (BINARY2), votable-td (TABLEDATA) or parquet (VOParquet).
    #[arg(long, default_value = "table")]
    format: Format,
    #[command(flatten)]
    state: StateArg,
    #[command(flatten)]
    limits: LimitArgs,
    /// Print the plan the query would run (pinned, pruned) instead of its rows.
    #[arg(long, conflicts_with = "format")]
    explain: bool,
    /// Run the query and print its plan with what each step did instead of its
    /// rows: rows out and time, and for DataFusion's scans the files, row groups
    /// and pages pruned and the bytes read (an id lookup or small cone, read
    /// directly, lists its files).
    #[arg(long, conflicts_with_all = ["explain", "format"])]
    analyze: bool,
    /// Read the ADQL from this file (`-` for standard input).
    #[arg(short = 'f', long, conflicts_with = "adql")]
    file: Option<PathBuf>,
    /// The ADQL query (`-` reads it from standard input).
    #[arg(required_unless_present = "file")]
    adql: Option<String>,
}

/// `ppdb replay`.
#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    catalog: CatalogArg,
    /// Output format (default: table).
    #[arg(long, default_value = "table")]
    format: Format,
    #[command(flatten)]
    state: StateArg,
    #[command(flatten)]
    limits: LimitArgs,
    /// The token, as `ppdb query` printed it.
    token: String,
}

/// `ppdb token`.
#[derive(Subcommand)]
pub enum TokenAction {
    /// Print the record behind a token (JSON).
    Show {
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        state: StateArg,
        /// The token.
        token: String,
    },
    /// List the live tokens of the state store, oldest first.
    List {
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        state: StateArg,
    },
    /// Forget a token, or every token made before a time: it can no longer be
    /// replayed, its snapshot is no longer protected from retention, and its
    /// record no longer takes room in the state store.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["token", "made_before"])))]
    Expire {
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        state: StateArg,
        /// Every token first made before this ISO-8601 UTC time
        /// (such as 2026-01-01T00:00:00Z).
        #[arg(long)]
        made_before: Option<String>,
        /// The token.
        token: Option<String>,
    },
}

/// The text of the query: the argument, a file, or standard input.
fn adql_text(args: &QueryArgs) -> Result<String> {
    let from = match (&args.file, args.adql.as_deref()) {
        (Some(f), _) if f.as_os_str() != "-" => {
            return std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the ADQL in {}", f.display()));
        }
        (Some(_), _) | (None, Some("-")) => "standard input",
        (None, Some(text)) => return Ok(text.to_string()),
        (None, None) => bail!("give the ADQL as an argument, with -f FILE, or as - to read stdin"),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .with_context(|| format!("cannot read the ADQL from {from}"))?;
    Ok(text)
}

/// Runs `ppdb query`.
pub async fn query(args: QueryArgs) -> Result<()> {
    let adql = adql_text(&args)?;
    let engine = args
        .state
        .engine_with(&args.catalog, memory_options(args.limits.memory()))
        .await?;
    remember(&engine, &args.catalog).await;
    let as_of = as_of_arg(args.as_of.as_deref())?;
    let allowed = args.limits.duration();
    let options = engine::QueryOptions {
        as_of,
        maxrec: args.maxrec,
        time_limit: Some(allowed),
        uploads: Vec::new(),
        // Whoever can run this command can read the catalog's files: the
        // embargo guards the service, not the storage.
        privileged: true,
        always_plan: false,
        hold: None,
    };
    if args.explain {
        let plan = within(allowed, engine.explain(&adql, &options)).await??;
        say!("{plan}");
        return Ok(());
    }
    if args.analyze {
        let plan = within(allowed, engine.explain_analyze(&adql, &options)).await??;
        say!("{plan}");
        return Ok(());
    }
    let run = async {
        let result = engine.query(&adql, &options).await?;
        let token = result.token.clone().unwrap_or_default();
        let snapshot = result.snapshot.snapshot;
        let done = write_result(&engine, result, args.format).await?;
        Ok::<_, anyhow::Error>((token, snapshot, done))
    };
    let (token, snapshot, done) = within(allowed, run).await??;
    let Some(done) = done else {
        return Ok(());
    };
    eprintln!(
        "snapshot: {snapshot}, rows: {}{}",
        done.rows,
        if done.overflow {
            " (cut by --maxrec)"
        } else {
            ""
        }
    );
    eprintln!("token: {token}");
    Ok(())
}

/// Runs `ppdb replay`.
pub async fn replay(args: ReplayArgs) -> Result<()> {
    let token = args.token.trim();
    let (engine, record) =
        find_token(token, &args.catalog, &args.state, args.limits.memory()).await?;
    let allowed = args.limits.duration();
    let run = async {
        let result = engine
            .replay(
                token,
                &engine::ReplayOptions {
                    privileged: true,
                    time_limit: Some(allowed),
                    ..Default::default()
                },
            )
            .await?;
        write_result(&engine, result, args.format).await
    };
    let Some(done) = within(allowed, run).await?? else {
        return Ok(());
    };
    eprintln!(
        "replayed token {token}: snapshot {} ({}), rows: {}, checksum {}: matches the record",
        record.snapshot,
        record.snapshot_time.to_rfc3339(),
        done.rows,
        done.checksum.unwrap_or_default()
    );
    Ok(())
}

/// Runs `ppdb token ...`.
pub async fn token(action: TokenAction) -> Result<()> {
    match action {
        TokenAction::Show {
            catalog,
            state,
            token,
        } => {
            let memory = engine::EngineOptions::default().memory_limit;
            let (_, record) = find_token(token.trim(), &catalog, &state, memory).await?;
            say!("{}", serde_json::to_string_pretty(&record)?);
        }
        TokenAction::List { catalog, state } => {
            let engine = state.engine(&catalog).await?;
            let records = engine.state().list().await?;
            for r in &records {
                say!(
                    "{}  made {}  snapshot {:>6}  rows {:>9}  {}",
                    r.token,
                    r.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    r.snapshot,
                    r.rows,
                    r.adql.split_whitespace().collect::<Vec<_>>().join(" ")
                );
            }
            if records.is_empty() {
                say!("(no tokens in {})", engine.state().url());
            }
            if catalog.catalog.is_none() && state.state.is_none() {
                // Tokens of a writable catalog live in its own state store.
                eprintln!(
                    "note: these are the tokens of {}; a writable catalog keeps its own \
                     (ppdb token list --catalog URL)",
                    engine.state().url()
                );
            }
        }
        TokenAction::Expire {
            catalog,
            state,
            made_before: Some(when),
            ..
        } => {
            let Some(before) = engine::parse_time(&when) else {
                bail!(
                    "--made-before {when}: expected a UTC time such as 2026-01-01, \
                     2026-01-01T12:00 or 2026-01-01T12:00:00Z"
                );
            };
            let engine = state.engine(&catalog).await?;
            let mut expired = 0;
            for r in engine.state().list().await? {
                if r.created_at < before && engine.state().expire(&r.token).await? {
                    expired += 1;
                }
            }
            say!(
                "expired {expired} token(s) made before {before} in {}",
                engine.state().url()
            );
            forget_unread_uploads(&engine).await?;
        }
        TokenAction::Expire {
            catalog,
            state,
            token,
            made_before: None,
        } => {
            // clap requires one of the two.
            let token = token.unwrap_or_default();
            let engine = state.engine(&catalog).await?;
            if engine.state().expire(&token).await? {
                say!("expired token {token}");
                forget_unread_uploads(&engine).await?;
            } else {
                bail!(
                    "unknown token {token}: nothing to expire in {}",
                    engine.state().url()
                );
            }
        }
    }
    Ok(())
}

/// Deletes the uploads only expired tokens read (those younger than a minute
/// stay: a running query stores its upload just before the record naming it).
async fn forget_unread_uploads(engine: &engine::Engine) -> Result<()> {
    let (gone, bytes) = engine
        .state()
        .remove_unread_uploads(Duration::from_secs(60))
        .await?;
    if gone > 0 {
        say!("deleted {gone} upload(s) no live token reads ({bytes} bytes)");
    }
    Ok(())
}

/// Runs `work` for at most `allowed`, as the service would.
pub(super) async fn within<T>(allowed: Duration, work: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(allowed, work)
        .await
        .map_err(|_| anyhow::anyhow!("{}", engine::overdue(allowed)))
}

/// Where the command line remembers the catalogs it has queried, so that a
/// token alone finds the catalog (and state store) it was made on.
const KNOWN_CATALOGS: &str = "catalogs.json";

/// Notes a catalog named with `--catalog` in the per-user state store.
/// Remembering is a convenience: a failure to do so does not fail the query.
pub(super) async fn remember(engine: &engine::Engine, catalog: &CatalogArg) {
    if catalog.catalog.is_none() {
        return;
    }
    let Ok(user) = engine::StateStore::user_default() else {
        return;
    };
    let url = engine.catalog().url().to_string();
    let mut known = known_catalogs(&user).await;
    if known.contains(&url) {
        return;
    }
    known.push(url);
    // The most recent hundred are plenty to search.
    let skip = known.len().saturating_sub(100);
    let known: Vec<String> = known.into_iter().skip(skip).collect();
    if let Ok(body) = serde_json::to_vec(&known) {
        let _ = user.write(KNOWN_CATALOGS, body.into()).await;
    }
}

async fn known_catalogs(user: &engine::StateStore) -> Vec<String> {
    match user.read(KNOWN_CATALOGS).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The engine that can replay a token, and its record. With `--catalog` or
/// `--state`, that is where the token must be; without, it is looked for in the
/// default place, then in each catalog this user has queried (newest first).
pub(super) async fn find_token(
    token: &str,
    catalog: &CatalogArg,
    state: &StateArg,
    memory: usize,
) -> Result<(engine::Engine, engine::TokenRecord)> {
    let engine = state.engine_with(catalog, memory_options(memory)).await?;
    let first = match engine.record(token).await {
        Ok(record) => return Ok((engine, record)),
        Err(e @ engine::Error::Token(engine::TokenError::Unknown { .. }))
            if catalog.catalog.is_none() && state.state.is_none() =>
        {
            e
        }
        Err(e) => return Err(e.into()),
    };
    let Ok(user) = engine::StateStore::user_default() else {
        return Err(first.into());
    };
    let mut searched = vec![engine.state().url().to_string()];
    for url in known_catalogs(&user).await.into_iter().rev() {
        let here = CatalogArg {
            catalog: Some(url.clone()),
        };
        let Ok(engine) = StateArg::default()
            .engine_with(&here, memory_options(memory))
            .await
        else {
            continue;
        };
        match engine.record(token).await {
            Ok(record) => return Ok((engine, record)),
            Err(_) => searched.push(engine.state().url().to_string()),
        }
    }
    bail!(
        "unknown token {token}: no record of it in {} (pass --catalog or --state to look elsewhere)",
        searched.join(", ")
    )
}

/// Streams a result to stdout; `None` when the reader went away (a closed pipe).
pub async fn write_result(
    engine: &engine::Engine,
    mut result: engine::QueryResult,
    format: Format,
) -> Result<Option<engine::Finished>> {
    let describe = engine.describe(&result);
    let (mut out, closed) = Stdout::new();
    let mut writer = ResultWriter::new(format, result.schema.clone(), &describe, &mut out)?;
    while let Some(batch) = result.next_batch().await {
        writer.write(&batch?)?;
        if closed.load(Ordering::Relaxed) {
            return Ok(None);
        }
    }
    writer.finish(result.overflowed())?;
    drop(out);
    Ok(result.finished().cloned())
}
