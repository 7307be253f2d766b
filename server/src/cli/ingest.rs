//! `ppdb ingest`: chunk folders found, ordered as the replica stream made them,
//! and committed one snapshot each.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use catalog::{Catalog, IngestOutcome, store};
use clap::Args;

use super::stdout::say;
use super::{CatalogArg, EmbargoArg, bar};

/// `ppdb ingest`.
#[derive(Args)]
pub(crate) struct IngestArgs {
    #[command(flatten)]
    catalog: CatalogArg,
    /// HEALPix order of partitions, for a new catalog.
    #[arg(long, default_value_t = catalog::DEFAULT_PARTITION_ORDER)]
    partition_order: u8,
    /// Where the sky is sparse, a commit writes one file for a larger HEALPix
    /// cell (down to order 0) instead of one per order-4 cell, as long as that
    /// file holds at most this many rows; 0 writes one file per order-4 cell
    /// (two orders above --partition-order). It changes only how this run's
    /// commits lay out files: every snapshot reads the same.
    #[arg(long, default_value_t = catalog::DEFAULT_CELL_ROWS)]
    cell_rows: usize,
    /// Do not compact: by default, whenever the latest snapshot reads some
    /// partition's rows from more than 8 files of a table, or 16 hold them
    /// (checked every 32 chunks and at the end), the catalog is compacted (`ppdb compact`), which changes no snapshot.
    #[arg(long)]
    no_maintenance: bool,
    #[command(flatten)]
    embargo: EmbargoArg,
    /// Chunk folders, or folders of chunk folders.
    #[arg(required = true)]
    chunks: Vec<PathBuf>,
}

/// Commits the chunks in order, with a progress bar.
pub(super) async fn run(args: IngestArgs) -> Result<()> {
    let IngestArgs {
        catalog,
        partition_order,
        cell_rows,
        no_maintenance,
        embargo,
        chunks,
    } = args;
    let url = catalog.write_url("ingest")?;
    // The cutoff as this run starts: no later than the service's, so it can
    // only leave more files alone.
    let cutoff = embargo.embargo()?.cutoff();
    let cat = Catalog::open_or_create(&url, partition_order)
        .await?
        .with_cell_rows(cell_rows)
        .with_embargo_cutoff(cutoff);
    let ordered = catalog::delivery::in_order(&chunks).await?;
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
    // Maintenance between runs of chunks keeps the files a commit re-reads
    // (and every query) few however long the delivery.
    let mut maintained = Maintained::default();
    for (run, locs) in locs.chunks(MAINTAIN_EVERY).enumerate() {
        let first = run * MAINTAIN_EVERY;
        cat.ingest_sequence(locs, |i, outcome| {
            let i = first + i;
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
            anyhow::Error::new(e).context(format!("ingesting {}", ordered[first + i].0.display()))
        })?;
        if !no_maintenance {
            maintained.run(&cat).await?;
        }
    }
    bar.finish_and_clear();
    let secs = (started.elapsed() - maintained.took).as_secs_f64();
    let latest = cat.state().await?.latest();
    say!(
        "committed {committed} chunks ({resent} already committed), {rows} rows in {secs:.2} s \
         ({:.0} rows/s); latest snapshot {latest}",
        rows as f64 / secs.max(1e-9)
    );
    if maintained.runs > 0 {
        say!(
            "maintenance compacted {} times in {:.2} s: {} files replaced by {}",
            maintained.runs,
            maintained.took.as_secs_f64(),
            maintained.removed,
            maintained.added
        );
    }
    Ok(())
}

/// Chunks committed between two maintenance checks.
const MAINTAIN_EVERY: usize = 32;

/// What maintenance did during one ingest.
#[derive(Default)]
struct Maintained {
    runs: usize,
    removed: usize,
    added: usize,
    took: std::time::Duration,
}

impl Maintained {
    /// Compacts if some partition's files have piled up.
    async fn run(&mut self, cat: &Catalog) -> Result<()> {
        let started = Instant::now();
        if let Some(r) = cat.maintain(catalog::MAX_FILES_PER_PARTITION).await? {
            self.runs += 1;
            self.removed += r.files_removed;
            self.added += r.files_added;
        }
        self.took += started.elapsed();
        Ok(())
    }
}
