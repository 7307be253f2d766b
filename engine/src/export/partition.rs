//! HATS partitions: HEALPix cells whose order follows how many rows they
//! hold, as `hats-import` chooses them (the coarsest cell under a row
//! threshold, split into its four children above it).

use std::ops::Range;

/// The order of the histogram partitions are chosen from (hats-import's
/// default highest order): no partition is finer than cells of 3.4′.
pub const HISTOGRAM_ORDER: u8 = 10;

/// One partition of a HATS catalog: a cell and how many rows it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// HEALPix order (`Norder`).
    pub order: u8,
    /// Nested pixel (`Npix`).
    pub npix: u64,
    /// Rows inside it.
    pub rows: u64,
}

impl Partition {
    /// The cell at `order` that holds an order-29 index, with no rows yet.
    pub fn of(order: u8, h29: u64) -> Partition {
        Partition {
            order,
            npix: h29 >> (2 * (29 - u32::from(order))),
            rows: 0,
        }
    }

    /// The order-29 indexes (`_healpix_29`) inside the cell.
    pub fn range_29(&self) -> Range<u64> {
        let shift = 2 * (29 - u32::from(self.order));
        (self.npix << shift)..((self.npix + 1) << shift)
    }

    /// Its file below the catalog's `dataset/` folder, as the HATS layout
    /// names it (`Dir` groups pixels by ten thousand).
    pub fn path(&self) -> String {
        format!(
            "Norder={}/Dir={}/Npix={}.parquet",
            self.order,
            self.npix / 10_000 * 10_000,
            self.npix
        )
    }
}

/// The partitions of a table whose rows fall in `counts` (cells at
/// [`HISTOGRAM_ORDER`] with their rows, ascending): the coarsest cells that
/// hold at most `max_rows`, split into four where they hold more, down to the
/// histogram's order. Empty cells get none. In ascending order of their
/// `_healpix_29` ranges, which is the order of rows sorted by `_healpix_29`.
pub fn plan(counts: &[(u64, u64)], max_rows: u64) -> Vec<Partition> {
    let mut out = Vec::new();
    for base in 0..12 {
        split(counts, 0, base, max_rows.max(1), &mut out);
    }
    out
}

fn split(counts: &[(u64, u64)], order: u8, npix: u64, max_rows: u64, out: &mut Vec<Partition>) {
    // A cell's histogram cells are one run of the sorted counts: nested
    // indexes keep every cell's descendants together.
    let shift = 2 * u32::from(HISTOGRAM_ORDER - order);
    let from = counts.partition_point(|(c, _)| *c < npix << shift);
    let to = counts.partition_point(|(c, _)| *c < (npix + 1) << shift);
    let inside = &counts[from..to];
    let rows: u64 = inside.iter().map(|(_, n)| n).sum();
    if rows == 0 {
        return;
    }
    if rows <= max_rows || order == HISTOGRAM_ORDER {
        out.push(Partition { order, npix, rows });
        return;
    }
    for child in 0..4 {
        split(inside, order + 1, npix * 4 + child, max_rows, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The histogram cell at order 10 inside `npix` at `order`, first child first.
    fn cell(order: u8, npix: u64) -> u64 {
        npix << (2 * u32::from(HISTOGRAM_ORDER - order))
    }

    #[test]
    fn a_sparse_sky_stays_at_order_zero() {
        let counts = [(cell(0, 3), 5), (cell(0, 3) + 7, 2), (cell(0, 11), 1)];
        let parts = plan(&counts, 100);
        assert_eq!(
            parts,
            vec![
                Partition {
                    order: 0,
                    npix: 3,
                    rows: 7
                },
                Partition {
                    order: 0,
                    npix: 11,
                    rows: 1
                }
            ]
        );
    }

    #[test]
    fn a_dense_cell_splits_into_the_children_that_hold_rows() {
        // 30 rows in base cell 4: 20 in its child 16, 10 in child 18 (none in 17, 19).
        let counts = [(cell(1, 16), 12), (cell(1, 16) + 1, 8), (cell(1, 18), 10)];
        let parts = plan(&counts, 25);
        assert_eq!(
            parts,
            vec![
                Partition {
                    order: 1,
                    npix: 16,
                    rows: 20
                },
                Partition {
                    order: 1,
                    npix: 18,
                    rows: 10
                }
            ]
        );
        // Each partition's range holds its histogram cells and no other's.
        assert!(parts[0].range_29().start < parts[1].range_29().start);
        assert_eq!(
            parts[0].range_29().end,
            parts[0].range_29().start + (1 << 56)
        );
    }

    #[test]
    fn the_histogram_order_is_the_finest_whatever_it_holds() {
        let counts = [(cell(10, 12_345), 1_000)];
        let parts = plan(&counts, 10);
        assert_eq!(
            parts,
            vec![Partition {
                order: 10,
                npix: 12_345,
                rows: 1_000
            }]
        );
        assert_eq!(parts[0].path(), "Norder=10/Dir=10000/Npix=12345.parquet");
    }
}
