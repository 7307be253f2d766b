//! Maintenance that runs by itself: a compaction whenever some partition's
//! files have piled up, so that readers never open more than a few files for
//! one partition however many commits touched it.

use std::collections::HashMap;

use super::CompactReport;
use crate::Catalog;
use crate::error::Result;
use crate::log::LogState;

/// The most live files of one table that may hold rows of one partition
/// before maintenance compacts.
pub const MAX_FILES_PER_PARTITION: usize = 8;

impl Catalog {
    /// Compacts if some partition's rows lie in more than `most` live files of
    /// one table; `None` when none does (nothing was written). Each cell's
    /// large files stay as they are while the rest of its rows are few: those
    /// become a file per part beside them.
    pub async fn maintain(&self, most: usize) -> Result<Option<CompactReport>> {
        let state = self.state().await?;
        if files_per_partition(&state, self.settled_through(&state)) <= most {
            return Ok(None);
        }
        self.compact_with(true).await.map(Some)
    }
}

/// The most live files of one table, among those holding only rows of
/// snapshots up to `settled` (those a compaction may merge), that may hold rows
/// of one partition: a file covers the partitions of its cell, or of the cells
/// it lists as merged.
pub fn files_per_partition(state: &LogState, settled: u64) -> usize {
    let order = state.partition_order;
    let ingest = state.ingest_order();
    let mut count: HashMap<(crate::TableId, u64), usize> = HashMap::new();
    for f in state
        .files
        .values()
        .filter(|f| f.entry.added_max <= settled)
    {
        let Some(cell) = f.entry.cell else { continue };
        let mut bump = |range: std::ops::Range<u64>| {
            for p in range {
                *count.entry((f.entry.table, p)).or_default() += 1;
            }
        };
        if f.entry.stats.merged_cells.is_empty() {
            bump(cell.descendants(order));
        } else {
            for &npix in &f.entry.stats.merged_cells {
                bump(
                    crate::healpix::Cell {
                        order: ingest,
                        npix,
                    }
                    .descendants(order),
                );
            }
        }
    }
    count.into_values().max().unwrap_or(0)
}
