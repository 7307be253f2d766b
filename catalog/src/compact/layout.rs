//! Which cells a compaction writes: as coarse as the rows allow.
//!
//! HATS chooses each partition's order by how many rows its region holds, so
//! that sparse sky is a few large files and dense sky many. Compaction does
//! the same per base cell: a cell whose files hold at most `most` rows becomes
//! one file of that cell, and a fuller one is split into its children (orders
//! 0 to the ingest order, then straight to the partition order, the finest a
//! file may cover). Only files coarser than a cell being split are read to
//! split them; a file already alone in its cell is left as it is.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;

use crate::healpix::Cell;
use crate::log::LiveFile;

/// The rows of files read to be split, by the partition (at the partition
/// order) each row belongs to.
pub(super) type Pieces = BTreeMap<u64, Vec<RecordBatch>>;

/// One cell of the new layout and what it is made of.
pub(super) struct Target<'a> {
    /// The cell the written file covers.
    pub cell: Cell,
    /// Files wholly inside the cell, not read yet.
    pub files: Vec<&'a LiveFile>,
    /// Rows split out of coarser files.
    pub pieces: Pieces,
}

/// How many times the rest of a cell's rows its large file must hold for
/// maintenance to leave it as it is.
const TIER: u64 = 4;

impl<'a> Target<'a> {
    /// Rows the cell's files and pieces hold.
    fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.entry.rows).sum::<u64>()
            + self
                .pieces
                .values()
                .flatten()
                .map(|b| b.num_rows() as u64)
                .sum::<u64>()
    }

    /// The files maintenance leaves alone: of each [`crate::log::Part`], the
    /// cell's largest `keepable` file (one with nothing to fold in), where it
    /// holds at least [`TIER`] times the rows of the files not kept, so that
    /// maintenance writes about what arrived since it last ran rather than
    /// the whole cell, and never rewrites a cell's history to add a little to
    /// it. Files whose rows later commits retired are not kept: readers then
    /// read every row group of them (allowing a few retirements cut
    /// maintenance at 5 220 snapshots from 239 s to 133 s but made light
    /// curves 3x slower).
    pub fn bases(&self, keepable: impl Fn(&LiveFile) -> bool) -> Vec<&'a LiveFile> {
        let total = self.rows();
        let mut largest: BTreeMap<crate::log::Part, &'a LiveFile> = BTreeMap::new();
        for f in self
            .files
            .iter()
            .filter(|f| f.entry.cell == Some(self.cell) && keepable(f))
        {
            let best = largest.entry(f.entry.part()).or_insert(f);
            if f.entry.rows > best.entry.rows {
                *best = f;
            }
        }
        let mut kept: Vec<&'a LiveFile> = largest.into_values().collect();
        // Dropping one that is too small leaves more rows to the rest.
        loop {
            let rest = total - kept.iter().map(|f| f.entry.rows).sum::<u64>();
            let before = kept.len();
            kept.retain(|f| f.entry.rows >= TIER * rest);
            if kept.len() == before {
                return kept;
            }
        }
    }

    /// Whether the cell is already laid out as compaction would write it: a
    /// file per [`crate::log::Part`] at most (`clean`: nothing to fold into
    /// them or drop from them).
    pub fn settled(&self, clean: impl Fn(&LiveFile) -> bool) -> bool {
        self.pieces.is_empty()
            && self.files.iter().all(|f| f.entry.cell == Some(self.cell))
            && laid_out(&self.files, clean)
    }
}

/// Whether `files` are one file per [`crate::log::Part`] at most, all `clean`.
pub(super) fn laid_out(files: &[&LiveFile], clean: impl Fn(&LiveFile) -> bool) -> bool {
    let parts: std::collections::BTreeSet<_> = files.iter().map(|f| f.entry.part()).collect();
    !files.is_empty() && parts.len() == files.len() && files.iter().all(|f| clean(f))
}

/// Lays out again one base cell's files of a partitioned table: cells as
/// coarse as `most` rows allow, finest `order` (the partition order), never
/// between `ingest` and `order`. `split` reads a file and hands back its rows
/// by partition; it is called only for files coarser than a cell being split.
pub(super) async fn layout<'a, F, Fut, E>(
    base: Cell,
    files: Vec<&'a LiveFile>,
    most: u64,
    ingest: u8,
    order: u8,
    mut split: F,
) -> Result<Vec<Target<'a>>, E>
where
    F: FnMut(&'a LiveFile) -> Fut,
    Fut: std::future::Future<Output = Result<Pieces, E>>,
{
    let mut targets = Vec::new();
    let mut stack = vec![Target {
        cell: base,
        files,
        pieces: Pieces::new(),
    }];
    while let Some(node) = stack.pop() {
        if node.rows() <= most || node.cell.order >= order {
            targets.push(node);
            continue;
        }
        let next = if node.cell.order >= ingest {
            order
        } else {
            node.cell.order + 1
        };
        let mut pieces = node.pieces;
        let mut children: BTreeMap<Cell, Target<'a>> = BTreeMap::new();
        let child = |c: Cell| Target {
            cell: c,
            files: Vec::new(),
            pieces: Pieces::new(),
        };
        for f in node.files {
            match f.entry.cell {
                Some(c) if c.order >= next => children
                    .entry(c.ancestor(next))
                    .or_insert_with(|| child(c.ancestor(next)))
                    .files
                    .push(f),
                _ => {
                    for (p, batches) in split(f).await? {
                        pieces.entry(p).or_default().extend(batches);
                    }
                }
            }
        }
        for (p, batches) in pieces {
            let c = Cell { order, npix: p }.ancestor(next);
            children
                .entry(c)
                .or_insert_with(|| child(c))
                .pieces
                .insert(p, batches);
        }
        stack.extend(children.into_values());
    }
    targets.sort_by_key(|t| t.cell);
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{FileEntry, FileStats};
    use crate::schema::TableId;
    use arrow_array::Int64Array;
    use std::sync::Arc;

    fn file(order: u8, npix: u64, rows: u64) -> LiveFile {
        LiveFile {
            entry: FileEntry {
                path: format!("{order}/{npix}"),
                table: TableId::DiaSource,
                cell: Some(Cell { order, npix }),
                rows,
                bytes: 0,
                added_min: 1,
                added_max: 1,
                retired_min: None,
                pruned_below: None,
                pruned_keeping: None,
                retired_max: None,
                folded_through: None,
                stats: FileStats::default(),
            },
            retired: Vec::new(),
        }
    }

    fn rows(n: usize) -> Vec<RecordBatch> {
        let c = Arc::new(Int64Array::from(vec![0; n])) as _;
        vec![RecordBatch::try_from_iter([("x", c)]).unwrap()]
    }

    async fn plan(files: &[LiveFile], most: u64, split: &Pieces) -> Vec<(Cell, usize, usize)> {
        let split = split.clone();
        layout(
            Cell { order: 0, npix: 0 },
            files.iter().collect(),
            most,
            4,
            6,
            |_| {
                let s = split.clone();
                async move { Ok::<_, ()>(s) }
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.cell, t.files.len(), t.pieces.len()))
        .collect()
    }

    #[tokio::test]
    async fn a_sparse_base_cell_stays_one_file() {
        let files = [file(0, 0, 300), file(4, 3, 200), file(6, 1, 100)];
        let out = plan(&files, 1000, &Pieces::new()).await;
        assert_eq!(out, vec![(Cell { order: 0, npix: 0 }, 3, 0)]);
    }

    #[tokio::test]
    async fn a_full_cell_splits_into_the_coarsest_children_that_fit() {
        // The order-0 file's rows lie in partitions 0 and 1 (order-6 cell 0
        // and 1, both under order-1 cell 0) and 4 095 (under order-1 cell 3).
        let mut split = Pieces::new();
        split.insert(0, rows(400));
        split.insert(1, rows(400));
        split.insert(4095, rows(10));
        let files = [file(0, 0, 810), file(6, 2000, 50)];
        let out = plan(&files, 500, &split).await;
        // Order-1 cell 0 holds 800 rows: it splits down to the partitions;
        // cells 1 and 3 hold 50 and 10 and stay coarse.
        assert_eq!(
            out,
            vec![
                (Cell { order: 1, npix: 1 }, 1, 0),
                (Cell { order: 1, npix: 3 }, 0, 1),
                (Cell { order: 6, npix: 0 }, 0, 1),
                (Cell { order: 6, npix: 1 }, 0, 1),
            ]
        );
    }

    #[test]
    fn maintenance_keeps_a_cell_s_large_file_while_the_rest_is_small() {
        let (big, small, other) = (file(2, 5, 404), file(2, 5, 100), file(4, 80, 1));
        let target = |files: Vec<&'static LiveFile>| Target {
            cell: Cell { order: 2, npix: 5 },
            files,
            pieces: Pieces::new(),
        };
        let leak = |f: LiveFile| &*Box::leak(Box::new(f));
        let (big, small, other) = (leak(big), leak(small), leak(other));
        let kept = |t: Target<'static>, keepable: &dyn Fn(&LiveFile) -> bool| -> Vec<u64> {
            t.bases(keepable).iter().map(|f| f.entry.rows).collect()
        };
        // 404 rows against 101 (four times): kept; against 101 + 1 more, not.
        assert_eq!(kept(target(vec![small, big, other]), &|_| true), [404]);
        let mut fuller = target(vec![small, big, other]);
        fuller.pieces.insert(5 << 8, rows(1));
        assert!(kept(fuller, &|_| true).is_empty());
        // A file of a finer cell, or one with rows to fold in, is never kept.
        assert!(kept(target(vec![other]), &|_| true).is_empty());
        assert!(kept(target(vec![big, small]), &|f| f.entry.rows != 404).is_empty());
        // The history beside the current rows: the largest file of each part
        // is kept while the rest is small; once one of them is not, the rest
        // grows by it, and here then none is.
        let part = |rows: u64, retired: bool| {
            let mut f = file(2, 5, rows);
            f.entry.retired_max = retired.then_some(3);
            f.entry.stats.open_versions = (!retired).then_some(0);
            leak(f)
        };
        let (retired, closed) = (part(900, true), part(800, false));
        assert_eq!(
            kept(target(vec![small, big, retired, closed, other]), &|_| true),
            [404, 800, 900]
        );
        let closed = part(350, false);
        assert!(kept(target(vec![small, big, retired, closed, other]), &|_| true).is_empty());
    }

    #[tokio::test]
    async fn a_partition_is_never_split() {
        let files = [file(6, 7, 5000), file(6, 8, 10)];
        let out = plan(&files, 100, &Pieces::new()).await;
        assert_eq!(
            out,
            vec![
                (Cell { order: 6, npix: 7 }, 1, 0),
                (Cell { order: 6, npix: 8 }, 1, 0)
            ]
        );
    }
}
