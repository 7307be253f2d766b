//! What both benchmark programs do with generated chunks: commit them in order.

use std::path::{Path, PathBuf};

use anyhow::Result;
use catalog::{Catalog, IngestOutcome, store};

/// Commits every chunk folder under `chunks`, in name order: the folders
/// committed and the rows they added.
pub async fn ingest_all(cat: &Catalog, chunks: &Path) -> Result<(usize, u64)> {
    let dirs = chunk_dirs(chunks)?;
    let locs = dirs
        .iter()
        .map(|d| store::open_existing_local(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = 0u64;
    cat.ingest_sequence(&locs, |_, outcome| {
        if let IngestOutcome::Committed(info) = outcome {
            rows += info.rows_added.values().sum::<u64>();
        }
    })
    .await
    .map_err(|(i, e)| anyhow::Error::new(e).context(format!("ingesting {}", dirs[i].display())))?;
    Ok((dirs.len(), rows))
}

/// The chunk folders under `chunks`, in the order they are committed.
pub fn chunk_dirs(chunks: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(chunks)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    dirs.sort();
    Ok(dirs)
}
