//! How coverage grows night by night: each night's footprint area, the area
//! it added, and the area covered so far, from the rows of
//! [`super::Of::Growth`] (a visit, then the corners).

use std::collections::BTreeMap;
use std::ops::Range;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use serde::Serialize;

use super::{CoverageError, VISITS_PER_NIGHT, corner_columns, draw, footprint_columns, merge};
use crate::result::QueryResult;

/// The sky, in square degrees.
const SKY_DEG2: f64 = 41_252.961_249_419_27;
/// Order-29 cells on the sky.
const CELLS_29: f64 = 12.0 * (1u64 << 58) as f64;

/// One night of coverage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Night {
    /// The night, as its `day_obs` (`YYYY-MM-DD`).
    pub night: String,
    /// Detector-visits drawn that night.
    pub detector_visits: u64,
    /// Detector-visits left out for a NULL corner.
    pub without_corners: u64,
    /// The area the night's footprints cover, in deg².
    pub area_deg2: f64,
    /// The part of it no earlier night covered, in deg².
    pub new_area_deg2: f64,
    /// The area covered by this night and every earlier one, in deg².
    pub cumulative_area_deg2: f64,
}

/// The area of merged order-29 ranges, in deg².
fn area(ranges: &[Range<u64>]) -> f64 {
    let cells: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    cells as f64 / CELLS_29 * SKY_DEG2
}

/// `YYYYMMDD` as `YYYY-MM-DD`.
fn dashed(day: i64) -> String {
    let d = day.to_string();
    if d.len() == 8 {
        format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..])
    } else {
        d
    }
}

/// Folds the rows of a growth query (or its replay) into nights, in order,
/// drawn at `order`, or at the order the query names.
pub async fn by_night(result: &mut QueryResult, order: Option<u8>) -> crate::Result<Vec<Night>> {
    let names = super::column_names(result);
    let depth = match footprint_columns(&names) {
        Some((1, at)) => order.unwrap_or(at),
        _ => return Err(super::not_coverage(&names).into()),
    };
    if depth > super::MAX_ORDER {
        return Err(CoverageError::Order {
            order: depth.into(),
        }
        .into());
    }
    // Per night: ranges, detector-visits drawn, left out.
    let mut nights: BTreeMap<i64, (Vec<Range<u64>>, u64, u64)> = BTreeMap::new();
    let mut rows = 0u64;
    while let Some(batch) = result.next_batch().await {
        let batch = batch?;
        let visit = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Int64)?;
        let visit = visit.as_primitive::<Int64Type>();
        let columns = corner_columns(&batch, 1)?;
        let values: Vec<_> = columns
            .iter()
            .map(|c| c.as_primitive::<Float64Type>())
            .collect();
        crate::plan::pipeline::in_place(async {
            for at in 0..batch.num_rows() {
                let night = if visit.is_null(at) {
                    0
                } else {
                    visit.value(at).div_euclid(VISITS_PER_NIGHT)
                };
                let entry = nights.entry(night).or_default();
                match draw(&values, at, depth, rows + at as u64 + 1)? {
                    Some(polygon) => {
                        entry.0.extend(polygon.moc_ranges().iter().cloned());
                        entry.1 += 1;
                        if entry.0.len() > super::MERGE_EVERY {
                            merge(&mut entry.0);
                        }
                    }
                    None => entry.2 += 1,
                }
            }
            Ok::<_, crate::Error>(())
        })
        .await?;
        rows += batch.num_rows() as u64;
    }
    let mut so_far: Vec<Range<u64>> = Vec::new();
    let mut out = Vec::with_capacity(nights.len());
    for (night, (mut ranges, drawn, skipped)) in nights {
        merge(&mut ranges);
        let before = area(&so_far);
        so_far.extend(ranges.iter().cloned());
        merge(&mut so_far);
        let cumulative = area(&so_far);
        out.push(Night {
            night: dashed(night),
            detector_visits: drawn,
            without_corners: skipped,
            area_deg2: area(&ranges),
            new_area_deg2: cumulative - before,
            cumulative_area_deg2: cumulative,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_add_up_over_the_sky() {
        let one_base_cell = 0..(1u64 << 58);
        assert!((area(&[one_base_cell]) - SKY_DEG2 / 12.0).abs() < 1e-9);
        assert_eq!(dashed(20251126), "2025-11-26");
    }
}
