//! `ppdb compact` and `ppdb vacuum`: keeping a catalog small without changing
//! any snapshot, and expiring old snapshots no live token reads.

use std::time::Duration;

use anyhow::{Context, Result};
use catalog::Catalog;
use clap::Args;

use super::stdout::say;
use super::{CatalogArg, EmbargoArg, StateArg};

/// `ppdb compact`.
#[derive(Args)]
pub(crate) struct CompactArgs {
    #[command(flatten)]
    catalog: CatalogArg,
    /// The most rows one file of a cell coarser than a partition may hold: a
    /// region holding fewer stays one file (sparse sky), a fuller one is split
    /// into its HEALPix children, down to partitions (dense sky)
    #[arg(long, default_value_t = catalog::DEFAULT_COMPACT_ROWS)]
    target_rows: usize,
    #[command(flatten)]
    embargo: EmbargoArg,
}

/// Rewrites each table's files as few, large ones.
pub(super) async fn compact(args: CompactArgs) -> Result<()> {
    let CompactArgs {
        catalog,
        target_rows,
        embargo,
    } = args;
    let cutoff = embargo.embargo()?.cutoff();
    let cat = Catalog::open(&catalog.write_url("compact")?)
        .await?
        .with_compact_rows(target_rows)
        .with_embargo_cutoff(cutoff);
    let r = cat.compact().await?;
    say!(
        "compacted {} cells: {} files replaced by {}{}{}",
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
        },
        match cutoff {
            Some(c) if r.files_held > 0 => format!(
                "; left {} files of chunks after the embargo cutoff (MJD {c:.5} TAI) as they \
                 are, until it passes them",
                r.files_held
            ),
            _ => String::new(),
        }
    );
    Ok(())
}

/// `ppdb vacuum`.
#[derive(Args)]
pub(crate) struct VacuumArgs {
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
    embargo: EmbargoArg,
    #[command(flatten)]
    state: StateArg,
}

/// Expires snapshots if asked, then deletes files no retained snapshot needs.
pub(super) async fn vacuum(args: VacuumArgs) -> Result<()> {
    let VacuumArgs {
        catalog,
        grace_seconds,
        expire_before,
        embargo,
        state,
    } = args;
    let cutoff = embargo.embargo()?.cutoff();
    let cat = Catalog::open(&catalog.write_url("vacuum")?)
        .await?
        .with_embargo_cutoff(cutoff);
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
        let engine = state.engine(&catalog).await?;
        let keep = engine.state().snapshots_read(&log.catalog_id).await?;
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
            "compacted {} cells: {} files replaced by {}; dropped {} rows no retained snapshot sees",
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
    Ok(())
}

/// Checks the catalog at `url` every `every` and compacts it when some
/// partition's files have piled up (under the service's `embargo`, its cutoff
/// at each check), on a thread of its own so that its sorting and encoding
/// never hold up a request. Failures are reported and tried again at the next
/// check (a read-only store fails every time: say so once).
pub(super) fn background(url: String, every: Duration, embargo: engine::Embargo) {
    let run = async move {
        let mut failed = false;
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let outcome = match Catalog::open(&url).await {
                Ok(cat) => {
                    cat.with_embargo_cutoff(embargo.cutoff())
                        .maintain(catalog::MAX_FILES_PER_PARTITION)
                        .await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Some(r)) => eprintln!(
                    "maintenance: compacted {} cells, {} files replaced by {}",
                    r.partitions, r.files_removed, r.files_added
                ),
                Ok(None) => {}
                Err(e) if !failed => {
                    failed = true;
                    eprintln!(
                        "warning: maintenance of {url} failed (tried again every {} s): {e}",
                        every.as_secs()
                    );
                }
                Err(_) => {}
            }
        }
    };
    let started = std::thread::Builder::new()
        .name("maintenance".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run),
                Err(e) => eprintln!("warning: maintenance did not start: {e}"),
            }
        });
    if let Err(e) = started {
        eprintln!("warning: maintenance did not start: {e}");
    }
}
