//! Maintenance that runs by itself: a compaction whenever some partition's
//! files have piled up, so that readers never open more than a few files for
//! one partition however many commits touched it.

use std::collections::HashMap;

use super::CompactReport;
use crate::Catalog;
use crate::error::Result;
use crate::log::LogState;

/// The most live files of one table that the latest snapshot reads for one
/// partition before maintenance compacts; twice as many may hold its rows in
/// all (files whose rows are all retired serve only past snapshots).
pub const MAX_FILES_PER_PARTITION: usize = 8;

impl Catalog {
    /// Compacts if the latest snapshot reads some partition's rows of one
    /// table from more than `most` live files, or if more than twice that
    /// many hold them; `None` when neither (nothing was written). Each cell's
    /// large files stay as they are while the rest of its rows are few: those
    /// become a file per part beside them.
    pub async fn maintain(&self, most: usize) -> Result<Option<CompactReport>> {
        let state = self.state().await?;
        let piled = files_per_partition(&state, self.settled_through(&state));
        if piled.latest <= most && piled.all <= 2 * most {
            return Ok(None);
        }
        self.compact_with(true).await.map(Some)
    }
}

/// How many live files of one table hold rows of one partition, at most,
/// among those holding only rows of snapshots up to `settled` (those a
/// compaction may merge).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Piled {
    /// Counting the files the latest snapshot reads.
    pub latest: usize,
    /// Counting every live file, those of past snapshots only too.
    pub all: usize,
}

/// The files piled up on one partition: a file covers the partitions of its
/// cell, or of the cells it lists as merged.
pub fn files_per_partition(state: &LogState, settled: u64) -> Piled {
    let order = state.partition_order;
    let ingest = state.ingest_order();
    let latest = state.latest();
    let mut count: HashMap<(crate::TableId, u64), Piled> = HashMap::new();
    for f in state
        .files
        .values()
        .filter(|f| f.entry.added_max <= settled)
    {
        let Some(cell) = f.entry.cell else { continue };
        // `Catalog::scan` lists it at the latest snapshot.
        let read = f.entry.retired_max.is_none_or(|r| r > latest);
        let mut bump = |range: std::ops::Range<u64>| {
            for p in range {
                let c = count.entry((f.entry.table, p)).or_default();
                c.all += 1;
                c.latest += usize::from(read);
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
    count.into_values().fold(Piled::default(), |m, c| Piled {
        latest: m.latest.max(c.latest),
        all: m.all.max(c.all),
    })
}
