//! HEALPix cells (nested scheme) for partitioning and pruning.

use serde::{Deserialize, Serialize};

/// The order of the fine per-row index column `_healpix_29`.
pub const FINE_ORDER: u8 = 29;

/// The nested index at order 29 of a position given in degrees.
pub fn healpix_29(ra_deg: f64, dec_deg: f64) -> i64 {
    cdshealpix::nested::hash(FINE_ORDER, longitude(ra_deg), dec_deg.to_radians()) as i64
}

/// A right ascension in degrees as the longitude cdshealpix expects: radians in
/// [0, 2π). Any finite RA names one (cdshealpix asserts on others).
pub fn longitude(ra_deg: f64) -> f64 {
    ra_deg.rem_euclid(360.0).to_radians()
}

/// A HEALPix cell at some order: the unit a partition covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cell {
    /// HEALPix order (depth).
    pub order: u8,
    /// Nested pixel index at that order.
    pub npix: u64,
}

impl Cell {
    /// The cell at `order` that holds an order-29 index.
    pub fn of_healpix_29(order: u8, h29: i64) -> Cell {
        Cell {
            order,
            npix: (h29 as u64) >> (2 * (FINE_ORDER - order) as u64),
        }
    }

    /// The cell at `order` that holds a position in degrees.
    pub fn of_position(order: u8, ra_deg: f64, dec_deg: f64) -> Cell {
        Cell::of_healpix_29(order, healpix_29(ra_deg, dec_deg))
    }

    /// The cell at a coarser (or the same) order that holds this one.
    pub fn ancestor(self, order: u8) -> Cell {
        let order = order.min(self.order);
        Cell {
            order,
            npix: self.npix >> (2 * (self.order - order) as u64),
        }
    }

    /// The half-open range of nested indexes at a finer (or the same) order
    /// inside this cell.
    pub fn descendants(self, order: u8) -> std::ops::Range<u64> {
        let shift = 2 * order.saturating_sub(self.order) as u64;
        (self.npix << shift)..((self.npix + 1) << shift)
    }

    /// The nested indexes at `order` of the cells that overlap this one: its
    /// descendants, or the one ancestor when `order` is coarser.
    pub fn span(self, order: u8) -> std::ops::Range<u64> {
        if order >= self.order {
            self.descendants(order)
        } else {
            let a = self.ancestor(order).npix;
            a..a + 1
        }
    }

    /// Whether this cell holds `other` (a cell at the same or a finer order).
    pub fn holds(self, other: Cell) -> bool {
        other.order >= self.order && other.ancestor(self.order) == self
    }

    /// The half-open range of order-29 indexes inside this cell.
    pub fn range_29(self) -> (i64, i64) {
        let shift = 2 * (FINE_ORDER - self.order) as u64;
        (
            (self.npix << shift) as i64,
            ((self.npix + 1) << shift) as i64,
        )
    }

    /// This cell and its (up to 8) neighbours.
    pub fn with_neighbours(self) -> Vec<Cell> {
        cdshealpix::nested::neighbours(self.order, self.npix, true)
            .sorted_values_vec()
            .into_iter()
            .map(|npix| Cell {
                order: self.order,
                npix,
            })
            .collect()
    }

    /// The HATS-style folder of this cell: `Norder=K/Dir=D/Npix=N`.
    pub fn hats_path(self) -> String {
        format!(
            "Norder={}/Dir={}/Npix={}",
            self.order,
            (self.npix / 10_000) * 10_000,
            self.npix
        )
    }

    /// The cells at `order` that a cone (degrees) may touch.
    pub fn cone(order: u8, ra_deg: f64, dec_deg: f64, radius_deg: f64) -> Vec<Cell> {
        cdshealpix::nested::cone_coverage_approx(
            order,
            longitude(ra_deg),
            dec_deg.to_radians(),
            radius_deg.to_radians(),
        )
        .flat_iter()
        .map(|npix| Cell { order, npix })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_contains_the_fine_index_of_its_positions() {
        for (ra, dec) in [(0.0, 0.0), (359.9999, -89.9), (123.4, 45.6), (10.0, 89.99)] {
            let h = healpix_29(ra, dec);
            let c = Cell::of_position(6, ra, dec);
            let (lo, hi) = c.range_29();
            assert!(lo <= h && h < hi);
        }
    }

    #[test]
    fn a_cell_holds_its_descendants_and_is_held_by_its_ancestors() {
        let fine = Cell::of_position(6, 55.0, -30.0);
        let coarse = fine.ancestor(4);
        assert_eq!(coarse, Cell::of_position(4, 55.0, -30.0));
        assert!(coarse.holds(fine) && fine.holds(fine) && !fine.holds(coarse));
        assert!(coarse.descendants(6).contains(&fine.npix));
        assert_eq!(coarse.descendants(6).count(), 16);
        let other = Cell {
            order: 6,
            npix: coarse.descendants(6).end,
        };
        assert!(!coarse.holds(other));
        assert_eq!(fine.ancestor(9), fine, "never finer than itself");
        assert_eq!(coarse.span(6), coarse.descendants(6));
        assert_eq!(fine.span(4), coarse.npix..coarse.npix + 1);
    }

    #[test]
    fn hats_path_groups_by_ten_thousand() {
        assert_eq!(
            Cell {
                order: 6,
                npix: 12345
            }
            .hats_path(),
            "Norder=6/Dir=10000/Npix=12345"
        );
    }

    #[test]
    fn neighbours_include_the_cell_itself() {
        let c = Cell {
            order: 5,
            npix: 100,
        };
        let n = c.with_neighbours();
        assert!(n.contains(&c));
        assert!(n.len() >= 8);
    }
}
