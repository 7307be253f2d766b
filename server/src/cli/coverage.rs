//! `ppdb coverage`: MOCs of where detectors looked and where a table's rows
//! are, at a snapshot, with a token that replays them (see
//! `engine::coverage`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use engine::coverage::{Coverage, DEFAULT_ORDER, MocFormat, Nights, Of};

use super::query::{LimitArgs, as_of_arg, find_token, memory_options, remember, within};
use super::{CatalogArg, StateArg};

/// `ppdb coverage`.
#[derive(Args)]
pub(crate) struct CoverageArgs {
    #[command(subcommand)]
    of: CoverageOf,
}

#[derive(Subcommand)]
enum CoverageOf {
    /// Where detectors looked: the union of the processed detector-visits'
    /// footprints (the polygons of their four corners).
    Footprints {
        #[command(flatten)]
        visits: Visits,
        #[command(flatten)]
        common: Common,
    },
    /// Where and when detectors looked: a space-time MOC of the footprints,
    /// each over its exposure (30 s around its visit's DIA midpoint; a visit
    /// with no DIA row has no time and is not drawn).
    SpaceTime {
        #[command(flatten)]
        visits: Visits,
        /// Order of the time cells, 0 to 61 (default 40: cells of 2.1 s; 61 is 1 µs).
        #[arg(long, default_value_t = engine::coverage::space_time::DEFAULT_TIME_ORDER)]
        time_order: u8,
        #[command(flatten)]
        common: Common,
    },
    /// Where a table's rows are: the cells of their positions.
    Table {
        /// The table (DiaObject, DiaSource, ..., or schema.table).
        table: String,
        #[command(flatten)]
        common: Common,
    },
    /// Footprint area night by night (the night's, the new, the total so far)
    /// as JSON; with --dia, of the detector-visits with or without DIA rows.
    Growth {
        /// Only detector-visits that made DIA rows, or only those that did not.
        #[arg(long, value_parser = ["with", "without"])]
        dia: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// The MOC of a coverage's token (or the nights of a growth's), made again
    /// from the same rows, at the order it was drawn at unless --order says.
    Replay {
        /// The token printed with the coverage.
        token: String,
        #[command(flatten)]
        common: Common,
    },
}

/// Which detector-visits a footprint or space-time coverage draws.
#[derive(Args)]
struct Visits {
    /// Only this night's visits (YYYY-MM-DD, the day_obs of Rubin's visit
    /// ids), or `last` for the latest night.
    #[arg(long)]
    night: Option<String>,
    /// With --night, every night up to this one (YYYY-MM-DD) too.
    #[arg(long, requires = "night")]
    until: Option<String>,
    /// Only visits whose exposure overlaps this window, two MJDs (TAI):
    /// `--time 61000.5 61001` (dated by their DIA rows).
    #[arg(long, num_args = 2, value_names = ["FROM", "TO"], conflicts_with = "night")]
    time: Option<Vec<String>>,
    /// Only detector-visits that made DIA rows (DiaSources or forced
    /// photometry: a template existed), or only those that did not.
    #[arg(long, value_parser = ["with", "without"])]
    dia: Option<String>,
}

impl Visits {
    /// The nights (or window) and the DIA choice.
    fn chosen(self) -> Result<(Nights, Option<bool>)> {
        let time = self.time.map(|t| t.join(" "));
        let nights = Nights::window(
            self.night.as_deref(),
            self.until.as_deref(),
            time.as_deref(),
        )?;
        Ok((nights, self.dia.map(|d| d == "with")))
    }
}

/// What every coverage takes.
#[derive(Args)]
struct Common {
    #[command(flatten)]
    catalog: CatalogArg,
    /// Read this snapshot (as `ppdb query --as-of`).
    #[arg(long)]
    as_of: Option<String>,
    /// HEALPix order of the MOC's cells, 0 to 13 (default 10: cells of 3.4′;
    /// a replay's, the order it was drawn at).
    #[arg(long)]
    order: Option<u8>,
    /// fits, ascii or json (default: fits into --out, ascii to the terminal).
    #[arg(long)]
    format: Option<MocFormat>,
    /// Write the MOC to this file instead of standard output.
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
    #[command(flatten)]
    state: StateArg,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Runs `ppdb coverage`.
pub(crate) async fn run(args: CoverageArgs) -> Result<()> {
    let (of, common, token) = match args.of {
        CoverageOf::Footprints { visits, common } => {
            let (nights, dia) = visits.chosen()?;
            (Some(Of::Footprints { nights, dia }), common, None)
        }
        CoverageOf::SpaceTime {
            visits,
            time_order,
            common,
        } => {
            let (nights, dia) = visits.chosen()?;
            let of = Of::SpaceTime {
                nights,
                dia,
                time_order,
            };
            (Some(of), common, None)
        }
        CoverageOf::Growth { dia, common } => {
            let dia = dia.map(|d| d == "with");
            (Some(Of::Growth { dia }), common, None)
        }
        CoverageOf::Table { table, common } => (Some(Of::Table(table)), common, None),
        CoverageOf::Replay { token, common } => (None, common, Some(token)),
    };
    if let Some(o) = common.order.filter(|o| *o > engine::coverage::MAX_ORDER) {
        bail!(
            "--order {o} is not offered: use 0 to {}",
            engine::coverage::MAX_ORDER
        );
    }
    let allowed = common.limits.duration();
    let memory = common.limits.memory();
    let (_engine, result) = match (of, token) {
        (Some(of), _) => {
            let engine = common
                .state
                .engine_with(&common.catalog, memory_options(memory))
                .await?;
            remember(&engine, &common.catalog).await;
            let adql = of.adql(common.order.unwrap_or(DEFAULT_ORDER), engine.tables())?;
            let as_of = as_of_arg(common.as_of.as_deref())?;
            let options = engine::QueryOptions {
                as_of,
                time_limit: Some(allowed),
                // As `ppdb query`: whoever runs this reads the files.
                privileged: true,
                ..Default::default()
            };
            let result = within(allowed, engine.query(&adql, &options)).await??;
            (engine, result)
        }
        (None, Some(token)) => {
            let (engine, _) = find_token(&token, &common.catalog, &common.state, memory).await?;
            let options = engine::ReplayOptions {
                privileged: true,
                time_limit: Some(allowed),
                ..Default::default()
            };
            let result = within(allowed, engine.replay(&token, &options)).await??;
            (engine, result)
        }
        (None, None) => unreachable!("a coverage names what it covers or a token"),
    };
    let mut result = result;
    let snapshot = result.snapshot.snapshot;
    let token = result.token.clone().unwrap_or_default();
    let growth = result
        .schema
        .fields()
        .first()
        .is_some_and(|f| f.name() == "visit");
    if growth && common.format.is_none() {
        let nights = within(
            allowed,
            engine::coverage::growth::by_night(&mut result, common.order),
        )
        .await??;
        let text = serde_json::to_string_pretty(&nights)? + "\n";
        write_out(common.out.as_deref(), text.as_bytes())?;
        eprintln!("snapshot: {snapshot}, {} nights", nights.len());
        eprintln!("token: {token}");
        return Ok(());
    }
    let coverage = within(allowed, Coverage::of_rows(&mut result, common.order)).await??;
    let format = common.format.unwrap_or(if common.out.is_some() {
        MocFormat::Fits
    } else {
        MocFormat::Ascii
    });
    let mut bytes = Vec::new();
    coverage.write(format, Some(token.clone()), &mut bytes)?;
    write_out(common.out.as_deref(), &bytes)?;
    let what = if coverage.footprints {
        "detector-visits"
    } else {
        "distinct cells"
    };
    let skipped = if coverage.without_corners > 0 {
        format!(" ({} without corners, not drawn)", coverage.without_corners)
    } else {
        String::new()
    };
    let untimed = match &coverage.space_time {
        Some(st) if st.without_time > 0 => {
            format!(
                " ({} without a DIA row to date them, not drawn)",
                st.without_time
            )
        }
        _ => String::new(),
    };
    let cells = coverage.cells();
    eprintln!(
        "snapshot: {snapshot}, from {} {what}{skipped}{untimed}: {cells} cell{} of order {}, {:.3} deg²",
        coverage.rows,
        if cells == 1 { "" } else { "s" },
        coverage.moc.depth_max(),
        coverage.area_deg2()
    );
    if let Some(st) = &coverage.space_time {
        let half = engine::coverage::space_time::EXPOSURE_SECONDS / 2.0 / 86_400.0;
        let span = st.span.map_or("none could be dated".to_string(), |(a, b)| {
            format!("from MJD (TAI) {:.5} to {:.5}", a - half, b + half)
        });
        eprintln!(
            "space-time: time cells of order {}; exposures {span}",
            st.time_order
        );
    }
    if coverage.rows == 0 {
        eprintln!("note: no detector-visit or row matched: the MOC is empty");
    } else if coverage.without_corners == coverage.rows {
        eprintln!(
            "note: no detector-visit has its corners (llcra ... lrcdec are NULL), as in the \
             bundled sample; a catalog made by `ppdb sample` has them"
        );
    }
    eprintln!("token: {token}");
    Ok(())
}

/// Writes `bytes` to `out`, or to standard output.
fn write_out(out: Option<&std::path::Path>, bytes: &[u8]) -> Result<()> {
    match out {
        Some(path) => std::fs::write(path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(bytes)?;
            o.flush()?;
        }
    }
    Ok(())
}
