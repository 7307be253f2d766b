//! `ppdb snapshots`: the snapshot log as a table or JSON lines.

use anyhow::Result;
use catalog::{Catalog, TableId};
use clap::Args;

use super::CatalogArg;
use super::stdout::say;

/// `ppdb snapshots`.
#[derive(Args)]
pub(crate) struct SnapshotsArgs {
    #[command(flatten)]
    catalog: CatalogArg,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints every snapshot.
pub(super) async fn run(args: SnapshotsArgs) -> Result<()> {
    let SnapshotsArgs { catalog, json } = args;
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
    Ok(())
}

fn serde_json_line(s: &catalog::log::SnapshotInfo) -> String {
    serde_json::to_string(s).unwrap_or_default()
}
