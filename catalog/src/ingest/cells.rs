//! Which cells a commit's new files cover: as coarse as the rows allow.
//!
//! Rows are first gathered by their cell at the ingest order. On a sparse sky
//! that leaves a few dozen rows in each of hundreds of cells, and one file
//! each: a catalog of 5.7 M rows held 33 000 files, and every scan paid for
//! each. As HATS chooses a partition's order by how many rows the region
//! holds, cells are merged into their parent while the parent holds at most
//! one row group's worth of rows, so a sparse region gets one file at a low
//! order (even order 0) and a dense one keeps the ingest order. Readers ask
//! only whether a file's cell holds the partitions they want, so a coarse
//! file is read exactly as a fresh ingest-order file is.

use std::collections::BTreeMap;

use crate::healpix::Cell;

/// The rows (source, row) of one file, by the cell it covers (`None`: an
/// unpartitioned table).
pub(super) type Cells = BTreeMap<Option<Cell>, Vec<(usize, usize)>>;

/// The cells at the ingest order each merged cell was made of.
pub(super) type Merged = BTreeMap<Cell, Vec<u64>>;

/// `cells`, each at `order`, merged upward into their ancestors wherever an
/// ancestor holds at most `most` rows. Merging is decided top-down from order
/// 0, so a cell is kept whole when it fits and split into its children's
/// groups otherwise; the rows of each group keep their order.
pub(super) fn coarsen(cells: Cells, order: u8, most: usize) -> (Cells, Merged) {
    if cells.keys().any(|c| c.is_none_or(|c| c.order != order)) {
        return (cells, Merged::new());
    }
    // Rows under each ancestor, at every order from 0 to `order`.
    let mut under: BTreeMap<Cell, usize> = BTreeMap::new();
    for (cell, rows) in &cells {
        let Some(cell) = cell else { continue };
        for o in 0..=order {
            *under.entry(cell.ancestor(o)).or_default() += rows.len();
        }
    }
    let mut out = Cells::new();
    let mut merged = Merged::new();
    for (cell, rows) in cells {
        let Some(cell) = cell else { continue };
        // The coarsest ancestor that fits; every finer one fits too, and so
        // do the ancestors of the cell's siblings up to it.
        let kept = (0..=order)
            .map(|o| cell.ancestor(o))
            .find(|a| under[a] <= most)
            .unwrap_or(cell);
        if kept != cell {
            merged.entry(kept).or_default().push(cell.npix);
        }
        out.entry(Some(kept)).or_default().extend(rows);
    }
    (out, merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(order: u8, npix: u64, rows: usize, from: usize) -> (Option<Cell>, Vec<(usize, usize)>) {
        (
            Some(Cell { order, npix }),
            (from..from + rows).map(|r| (0, r)).collect(),
        )
    }

    #[test]
    fn sparse_cells_merge_up_to_order_0() {
        // Four cells of base cell 0 and one of base cell 11, at order 4.
        let cells: Cells = [
            at(4, 0, 10, 0),
            at(4, 5, 10, 10),
            at(4, 255, 10, 20),
            at(4, 11 * 256, 10, 30),
        ]
        .into_iter()
        .collect();
        let (out, merged) = coarsen(cells, 4, 100);
        let keys: Vec<Cell> = out.keys().flatten().copied().collect();
        assert_eq!(
            keys,
            vec![Cell { order: 0, npix: 0 }, Cell { order: 0, npix: 11 }]
        );
        assert_eq!(merged[&Cell { order: 0, npix: 0 }], vec![0, 5, 255]);
        assert_eq!(merged[&Cell { order: 0, npix: 11 }], vec![11 * 256]);
        assert_eq!(out.values().map(Vec::len).sum::<usize>(), 40);
    }

    #[test]
    fn a_dense_cell_stays_at_its_order_and_its_sparse_cousins_merge() {
        // Cell 0 at order 4 is full; cells 4..8 (another order-3 parent) are sparse.
        let cells: Cells = [at(4, 0, 101, 0), at(4, 4, 5, 101), at(4, 7, 5, 106)]
            .into_iter()
            .collect();
        let (out, merged) = coarsen(cells, 4, 100);
        assert_eq!(
            merged.keys().copied().collect::<Vec<_>>(),
            vec![Cell { order: 3, npix: 1 }]
        );
        let keys: Vec<Cell> = out.keys().flatten().copied().collect();
        // Order 3's cell 1 holds 10 rows, but order 2's cell 0 holds all 111.
        assert_eq!(
            keys,
            vec![Cell { order: 3, npix: 1 }, Cell { order: 4, npix: 0 }]
        );
        let merged = &out[&Some(Cell { order: 3, npix: 1 })];
        assert_eq!(
            merged.iter().map(|r| r.1).collect::<Vec<_>>(),
            (101..111).collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_unpartitioned_table_is_left_as_it_is() {
        let cells: Cells = [(None, vec![(0, 0), (0, 1)])].into_iter().collect();
        assert_eq!(coarsen(cells.clone(), 4, 100), (cells, Merged::new()));
    }
}
