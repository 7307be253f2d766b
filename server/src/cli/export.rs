//! `ppdb export`: a snapshot written as HATS catalogs, one per table, that
//! LSDB, `hats`, DuckDB and pandas open (see `engine::export`).

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use super::query::{LimitArgs, as_of_arg, memory_options, remember, within};
use super::{CatalogArg, EmbargoArg, StateArg};

/// `ppdb export`.
#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Where to write: a new local folder or an object-store URL (file://,
    /// memory://, s3://bucket/prefix); each table goes into a folder of its name.
    dir: String,
    #[command(flatten)]
    catalog: CatalogArg,
    /// Read this snapshot (as `ppdb query --as-of`); default the latest.
    #[arg(long)]
    as_of: Option<String>,
    /// The layout written.
    #[arg(long, value_enum, default_value_t = ExportFormat::Hats)]
    format: ExportFormat,
    /// A table to write (repeat for more); default DiaObject, DiaSource and
    /// DiaForcedSource. Any table with ra and dec can be written.
    #[arg(long = "table", value_name = "TABLE")]
    tables: Vec<String>,
    /// The most rows a partition holds before it splits into four (a
    /// partition at order 10, cells of 3.4′, holds what it holds).
    #[arg(long, default_value_t = 1_000_000)]
    max_rows: u64,
    /// Beside each catalog, write a margin catalog (TABLE_Narcs) of the rows
    /// within this many arcseconds of each partition's border, which LSDB
    /// reads for joins and cross-matches near borders; 0 writes none.
    #[arg(long, default_value_t = 5.0)]
    margin_arcsec: f64,
    /// Leave out what the service's embargo hides from anonymous callers
    /// (set it as `ppdb serve` is set: --embargo-hours or --embargo-until);
    /// without it, as `ppdb query`, every row is written.
    #[arg(long)]
    public: bool,
    #[command(flatten)]
    embargo: EmbargoArg,
    #[command(flatten)]
    state: StateArg,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The layouts `ppdb export` writes.
#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// HATS (the IVOA HATS Note): what LSDB opens.
    Hats,
}

/// Runs `ppdb export`.
pub(crate) async fn run(args: ExportArgs) -> Result<()> {
    let ExportFormat::Hats = args.format;
    if !(0.0..=engine::export::MAX_MARGIN_ARCSEC).contains(&args.margin_arcsec) {
        bail!(
            "--margin-arcsec {}: give 0 (no margins) to {}",
            args.margin_arcsec,
            engine::export::MAX_MARGIN_ARCSEC
        );
    }
    if args.max_rows == 0 {
        bail!("--max-rows 0: a partition must be allowed at least one row");
    }
    if args.embargo.given() && !args.public {
        bail!(
            "--embargo-hours and --embargo-until apply with --public only: without it, \
             every row is written"
        );
    }
    if args.dir.starts_with("memory://") {
        bail!(
            "{}: a memory:// store ends with this process; export to a folder or s3://",
            args.dir
        );
    }
    // A local folder that did not exist is removed again if the export fails
    // before writing anything into it.
    let local = (!args.dir.contains("://")).then(|| std::path::PathBuf::from(&args.dir));
    if let Some(path) = local.as_deref().filter(|p| p.exists() && !p.is_dir()) {
        bail!("{} is a file: export into a new folder", path.display());
    }
    let created = local.as_ref().filter(|p| !p.exists()).cloned();
    let result = export(&args).await;
    if let Some(dir) = &local {
        // A local store keeps the staging folders its files were moved out of.
        remove_empty(&dir.join(engine::export::STAGING));
    }
    if let (Err(_), Some(dir)) = (&result, created) {
        // Only if empty: never delete what someone else put there.
        let _ = std::fs::remove_dir(dir);
    }
    result
}

/// Removes `dir` and the folders under it that hold no file.
fn remove_empty(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

async fn export(args: &ExportArgs) -> Result<()> {
    let allowed = args.limits.duration();
    let mut options = memory_options(args.limits.memory());
    if args.public {
        options.embargo = args.embargo.embargo()?;
    }
    let engine = args.state.engine_with(&args.catalog, options).await?;
    remember(&engine, &args.catalog).await;
    let as_of = as_of_arg(args.as_of.as_deref())?;
    if args.public {
        // An anonymous caller is told nothing of embargoed snapshots; whoever
        // runs the export is, so that a refusal says why.
        let newest = engine.resolve_snapshot(None).await?.snapshot;
        let shown = engine.latest_shown(false).await.ok().map(|s| s.snapshot);
        let asked = match &as_of {
            Some(a) => Some(engine.resolve_snapshot(Some(a)).await?.snapshot),
            None => None,
        };
        match (shown, asked) {
            (None, _) => bail!(
                "every snapshot (1 to {newest}) holds rows under the embargo: --public has \
                 nothing to write"
            ),
            (Some(s), Some(k)) if k > s => {
                bail!("snapshot {k} holds rows under the embargo: with --public, the latest is {s}")
            }
            _ => {}
        }
    }
    let out = catalog::store::open(&args.dir, true)?;
    let options = engine::export::HatsOptions {
        query: engine::QueryOptions {
            as_of,
            time_limit: Some(allowed),
            privileged: !args.public,
            ..Default::default()
        },
        max_rows: args.max_rows,
        margin_arcsec: args.margin_arcsec,
        ..Default::default()
    };
    eprintln!(
        "exporting {} into {} (a table appears when it is whole)",
        if args.tables.is_empty() {
            engine::export::DEFAULT_TABLES.join(", ")
        } else {
            args.tables.join(", ")
        },
        out.url
    );
    let done = within(
        allowed,
        engine::export::hats(&engine, &args.tables, &out, &options, |t| {
            report(t, args.margin_arcsec)
        }),
    )
    .await??;
    println!(
        "wrote {} HATS catalog{} under {}",
        done.len(),
        if done.len() == 1 { "" } else { "s" },
        out.url
    );
    Ok(())
}

/// One table's line (on standard output, tokens included), as it finishes.
fn report(t: &engine::export::Exported, margin_arcsec: f64) {
    let without = if t.without_position > 0 {
        format!(" ({} without ra/dec left out)", t.without_position)
    } else {
        String::new()
    };
    println!(
        "{}: {} rows{without} in {} partitions (orders up to {}), {:.1} MB at snapshot {}; token: {}",
        t.table,
        t.rows,
        t.partitions,
        t.max_order,
        t.bytes as f64 / 1e6,
        t.snapshot,
        t.token
    );
    match &t.margin {
        Some((name, rows, partitions)) => {
            println!("  margin {name}: {rows} rows in {partitions} partitions")
        }
        None if margin_arcsec > 0.0 => println!(
            "  no margin: no row is within {margin_arcsec}\u{2033} of another partition{}",
            if t.partitions == 1 {
                " (one partition: lower --max-rows for more)"
            } else {
                ""
            }
        ),
        None => {}
    }
}
