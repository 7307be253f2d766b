//! `ppdb ingest`: chunk folders found, ordered as the replica stream made them,
//! and committed one snapshot each.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use catalog::chunk::{self, Manifest};
use catalog::{Catalog, IngestOutcome, store};
use clap::Args;

use super::stdout::say;
use super::{CatalogArg, bar};

/// `ppdb ingest`.
#[derive(Args)]
pub(crate) struct IngestArgs {
    #[command(flatten)]
    catalog: CatalogArg,
    /// HEALPix order of partitions, for a new catalog.
    #[arg(long, default_value_t = catalog::DEFAULT_PARTITION_ORDER)]
    partition_order: u8,
    /// Chunk folders, or folders of chunk folders.
    #[arg(required = true)]
    chunks: Vec<PathBuf>,
}

/// Commits the chunks in order, with a progress bar.
pub(super) async fn run(args: IngestArgs) -> Result<()> {
    let IngestArgs {
        catalog,
        partition_order,
        chunks,
    } = args;
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
    Ok(())
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
