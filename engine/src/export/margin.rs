//! Margins: for each partition, the rows of other partitions within a
//! threshold of its border, which LSDB reads beside the partition so that
//! cross-matches and joins near a border find every neighbour.
//!
//! A row's candidates come from its `_healpix_29` alone: at the depth
//! cdshealpix's `best_starting_depth` gives for the threshold, a disc of that
//! radius around the row lies within the row's cell and its eight
//! neighbours, so every partition closer than the threshold overlaps one of
//! those nine cells. The margins are therefore a superset of the exact ones
//! (rows up to about twice the threshold away), which a join filters anyway.

use std::ops::Range;

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::Int64Type;

use super::partition::Partition;

/// The largest threshold offered: a degree.
pub const MAX_ARCSEC: f64 = 3600.0;

/// The margin rows of each partition, gathered as the rows stream past.
pub(super) struct Margins {
    depth: u8,
    ranges: Vec<Range<u64>>,
    /// Per partition, its margin rows so far.
    pub(super) batches: Vec<Vec<RecordBatch>>,
}

impl Margins {
    /// Margins of `arcsec` (in (0, [`MAX_ARCSEC`]]) around `parts`, which
    /// are in ascending order.
    pub(super) fn new(parts: &[Partition], arcsec: f64) -> Margins {
        let radians = (arcsec.clamp(1e-3, MAX_ARCSEC) / 3600.0).to_radians();
        Margins {
            depth: cdshealpix::best_starting_depth(radians),
            ranges: parts.iter().map(Partition::range_29).collect(),
            batches: vec![Vec::new(); parts.len()],
        }
    }

    /// Adds the rows of `batch` (`_healpix_29` first) to the margins of the
    /// other partitions they are near.
    pub(super) fn add(&mut self, batch: &RecordBatch) -> crate::Result<()> {
        let index = batch.column(0).as_primitive::<Int64Type>();
        let shift = 2 * (29 - u32::from(self.depth));
        let mut near: Vec<Vec<u32>> = vec![Vec::new(); self.ranges.len()];
        let mut touched = Vec::new();
        for (row, h) in index.values().iter().enumerate() {
            let h = *h as u64;
            let cell = h >> shift;
            let own = self.ranges.partition_point(|r| r.end <= h);
            let cells = cdshealpix::nested::neighbours(self.depth, cell, true).values_vec();
            for c in cells {
                let span = (c << shift)..((c + 1) << shift);
                let mut p = self.ranges.partition_point(|r| r.end <= span.start);
                while p < self.ranges.len() && self.ranges[p].start < span.end {
                    if p != own && near[p].last() != Some(&(row as u32)) {
                        if near[p].is_empty() {
                            touched.push(p);
                        }
                        near[p].push(row as u32);
                    }
                    p += 1;
                }
            }
        }
        for p in touched {
            let rows = UInt32Array::from(std::mem::take(&mut near[p]));
            self.batches[p].push(arrow::compute::take_record_batch(batch, &rows)?);
        }
        Ok(())
    }

    /// Rows gathered, over every partition.
    pub(super) fn rows(&self) -> u64 {
        self.batches
            .iter()
            .flatten()
            .map(|b| b.num_rows() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(rows: &[u64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "_healpix_29",
            DataType::Int64,
            false,
        )]));
        let values: Vec<i64> = rows.iter().map(|h| *h as i64).collect();
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).unwrap()
    }

    fn h29(ra: f64, dec: f64) -> u64 {
        catalog::healpix::healpix_29(ra, dec) as u64
    }

    #[test]
    fn rows_near_a_border_go_to_the_partition_across_it_and_no_others() {
        // Two order-1 cells side by side; a row 2″ from their shared border
        // belongs to the other's margin, a row in the middle to none.
        let (ra, dec) = (45.0, 20.0);
        let a = Partition::of(1, h29(ra, dec));
        let center = cdshealpix::nested::center(1, a.npix);
        let across = cdshealpix::nested::neighbours(1, a.npix, false);
        let across = *across.get(cdshealpix::compass_point::MainWind::NE).unwrap();
        let b = Partition::of(1, across << 56);
        let mut parts = vec![a, b];
        parts.sort_by_key(|p| p.npix);
        let mut m = Margins::new(&parts, 5.0);
        let inside = h29(center.0.to_degrees(), center.1.to_degrees());
        // Walk from a's centre towards b's until the cell changes: the last
        // point in a is within a step of the border.
        let cb = cdshealpix::nested::center(1, b.npix);
        let (mut last, steps) = (inside, 200_000);
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let (lon, lat) = (
                center.0 + t * (cb.0 - center.0),
                center.1 + t * (cb.1 - center.1),
            );
            let h = h29(lon.to_degrees(), lat.to_degrees());
            if h >> 56 != a.npix {
                break;
            }
            last = h;
        }
        m.add(&batch(&[inside, last])).unwrap();
        let of_b = parts.iter().position(|p| p.npix == b.npix).unwrap();
        let of_a = 1 - of_b;
        assert_eq!(m.batches[of_a].len(), 0, "a's own rows are not its margin");
        let got: Vec<i64> = m.batches[of_b]
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(got, vec![last as i64]);
        assert_eq!(m.rows(), 1);
    }
}
