//! Sky coverage as IVOA MOCs (MOC 2.0): where detectors looked, where a
//! table's rows are.
//!
//! A coverage is the answer to an ADQL query the engine writes (see
//! [`Of::adql`]) and runs like any other: pinned at a snapshot, the embargo
//! applied to the caller, a token kept. Its rows are then folded into a MOC
//! ([`Coverage::of_rows`]); a replayed token gives the same rows, and so the
//! same MOC. Detector footprints are the polygons of each
//! `DetectorVisitProcessingSummary` row's four corners; a table's coverage is
//! the distinct HEALPix cells of its rows' positions.

pub mod growth;
mod query;
pub mod space_time;
mod write;

use std::ops::Range;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use moc::moc::range::{CellSelection, RangeMOC};
use moc::qty::Hpx;

use crate::result::QueryResult;

pub(crate) use query::placed_table;
pub use query::{Nights, Of};
pub use write::MocFormat;

/// The deepest order a coverage may ask for: order 13 cells are 26″ across,
/// finer than any detector edge needs, and the MOC of a year of footprints
/// stays a few MB.
pub const MAX_ORDER: u8 = 13;
/// The order used when none is asked for: cells of 3.4′.
pub const DEFAULT_ORDER: u8 = 10;

/// The detector-visit table and the columns of its corners, in the order
/// their polygon goes round.
pub(crate) const DETECTORS: &str = "ppdb.DetectorVisitProcessingSummary";
pub(crate) const CORNERS: [(&str, &str); 4] = [
    ("llcra", "llcdec"),
    ("ulcra", "ulcdec"),
    ("urcra", "urcdec"),
    ("lrcra", "lrcdec"),
];
/// The prefix of the cell column of a table's coverage, followed by its order.
pub(crate) const CELL_COLUMN: &str = "healpix_order_";
/// The prefix of the last column of footprints, followed by the order they
/// are drawn at.
pub(crate) const ORDER_COLUMN: &str = "moc_order_";
/// Rubin's visit ids are `day_obs * 100000 + seq_num`.
pub(crate) const VISITS_PER_NIGHT: i64 = 100_000;

/// Why a coverage could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    /// The order is out of range.
    #[error("order {order} is not offered: use 0 to {MAX_ORDER} (the default is {DEFAULT_ORDER})")]
    Order {
        /// The order asked for.
        order: i64,
    },
    /// The time order is out of range.
    #[error(
        "time order {order} is not offered: use 0 to {} (the default is {})",
        space_time::MAX_TIME_ORDER,
        space_time::DEFAULT_TIME_ORDER
    )]
    TimeOrder {
        /// The order asked for.
        order: i64,
    },
    /// A night is not a date.
    #[error(
        "night '{text}' is not a night: give it as YYYY-MM-DD (the day_obs of its visits) or 'last'"
    )]
    Night {
        /// What was given.
        text: String,
    },
    /// A range of nights is not one.
    #[error("nights: {why}")]
    Range {
        /// What is wrong with it.
        why: String,
    },
    /// The table has no positions to cover.
    #[error("{table}: {why}")]
    Table {
        /// The table named.
        table: String,
        /// Why it has no coverage.
        why: String,
    },
    /// The rows given are not those of a coverage query.
    #[error("the rows are not a coverage's (columns {columns}): replay a coverage's token")]
    NotCoverage {
        /// The columns they had.
        columns: String,
    },
    /// A corner or a position is not on the sky.
    #[error("row {row}: {what} is not on the sky")]
    OffSky {
        /// The row of the result.
        row: u64,
        /// Which value.
        what: String,
    },
}

/// A coverage: the MOC and what it was made from.
#[derive(Debug, Clone)]
pub struct Coverage {
    /// The cells covered.
    pub moc: RangeMOC<u64, Hpx<u64>>,
    /// Rows read (detector-visits, or distinct cells), those not drawn included.
    pub rows: u64,
    /// What the rows were: footprints of detector-visits, or a table's cells.
    pub footprints: bool,
    /// Detector-visits left out because a corner was NULL.
    pub without_corners: u64,
    /// For a space-time coverage, the ST-MOC (`moc` is then its footprints
    /// in space alone).
    pub space_time: Option<space_time::SpaceTime>,
}

/// How many ranges gather before they are merged: bounds the memory of a
/// coverage of many overlapping footprints.
pub(crate) const MERGE_EVERY: usize = 1 << 20;

impl Coverage {
    /// Folds a coverage query's rows (or a replay of one) into a MOC at the
    /// order the query names, or footprints at `order` if one is given.
    pub async fn of_rows(result: &mut QueryResult, order: Option<u8>) -> crate::Result<Coverage> {
        let names = column_names(result);
        if let Some((drawn_at, time)) = space_time::columns(&names) {
            let depth = order.unwrap_or(drawn_at);
            if depth > MAX_ORDER {
                return Err(CoverageError::Order {
                    order: depth.into(),
                }
                .into());
            }
            return space_time::of_rows(result, depth, time).await;
        }
        let cells_at = match names.as_slice() {
            [one] => one
                .strip_prefix(CELL_COLUMN)
                .and_then(|o| o.parse::<u8>().ok())
                .filter(|o| *o <= MAX_ORDER),
            _ => None,
        };
        // Footprints, and footprints by night (their visit first).
        let (from, drawn_at) =
            footprint_columns(&names).map_or((0, None), |(from, at)| (from, Some(at)));
        let footprints = drawn_at.is_some();
        if cells_at.is_none() && !footprints {
            return Err(not_coverage(&names).into());
        }
        let depth = match (cells_at, order, drawn_at) {
            (Some(cells), _, _) => cells,
            (None, Some(asked), _) => asked,
            (None, None, at) => at.unwrap_or(DEFAULT_ORDER),
        };
        if depth > MAX_ORDER {
            return Err(CoverageError::Order {
                order: depth.into(),
            }
            .into());
        }
        let mut ranges: Vec<Range<u64>> = Vec::new();
        let mut rows = 0u64;
        let mut without_corners = 0u64;
        while let Some(batch) = result.next_batch().await {
            let batch = batch?;
            if cells_at.is_some() {
                cells(&batch, depth, &mut ranges)?;
                rows += batch.num_rows() as u64;
            } else {
                // A batch of footprints at a fine order is CPU work of up to a
                // second: the runtime's other tasks move off this worker.
                let (n, skipped) = crate::plan::pipeline::in_place(async {
                    footprints_of(&batch, from, depth, rows, &mut ranges)
                })
                .await?;
                rows += n + skipped;
                without_corners += skipped;
            }
            if ranges.len() > MERGE_EVERY {
                merge(&mut ranges);
            }
        }
        merge(&mut ranges);
        Ok(Coverage {
            moc: RangeMOC::new(depth, moc::elemset::range::MocRanges::new_unchecked(ranges)),
            rows,
            footprints,
            without_corners,
            space_time: None,
        })
    }

    /// The area covered, in square degrees.
    pub fn area_deg2(&self) -> f64 {
        const SKY_DEG2: f64 = 41_252.961_249_419_27;
        self.moc.coverage_percentage() * SKY_DEG2
    }

    /// How many cells of its order the coverage holds.
    pub fn cells(&self) -> u64 {
        self.moc.n_depth_max_cells()
    }
}

/// The names of a result's columns.
pub(crate) fn column_names(result: &QueryResult) -> Vec<String> {
    result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// The refusal of rows that are not a coverage's, naming a few of their columns.
pub(crate) fn not_coverage(names: &[String]) -> CoverageError {
    let mut columns: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
    if names.len() > 4 {
        columns.push("...");
    }
    CoverageError::NotCoverage {
        columns: columns.join(", "),
    }
}

/// Where the corners of footprint rows start (after their visit, if any),
/// and the order the query drew them at; `None` if they are not footprints.
pub(crate) fn footprint_columns(names: &[String]) -> Option<(usize, u8)> {
    let from = usize::from(names.first().is_some_and(|n| n == "visit"));
    let (last, corners) = names[from..].split_last()?;
    let at = order_named(last, ORDER_COLUMN, MAX_ORDER)?;
    are_corners(corners).then_some((from, at))
}

/// The order a column named `PREFIXorder` names, if it is at most `max`.
pub(crate) fn order_named(name: &str, prefix: &str, max: u8) -> Option<u8> {
    name.strip_prefix(prefix)?
        .parse::<u8>()
        .ok()
        .filter(|o| *o <= max)
}

/// Whether these are the corner columns, in the order their polygon goes round.
pub(crate) fn are_corners(names: &[String]) -> bool {
    let expected = CORNERS.iter().flat_map(|(r, d)| [*r, *d]);
    names.iter().map(String::as_str).eq(expected)
}

/// The order-29 range of cell `idx` at `depth`.
fn range_of(depth: u8, idx: u64) -> Range<u64> {
    let shift = 2 * (29 - u32::from(depth));
    (idx << shift)..((idx + 1) << shift)
}

/// Adds the cells of a table's coverage rows.
fn cells(batch: &RecordBatch, depth: u8, ranges: &mut Vec<Range<u64>>) -> crate::Result<()> {
    let column = batch.column(0);
    let column = arrow::compute::cast(column, &arrow::datatypes::DataType::Int64)?;
    let values = column.as_primitive::<Int64Type>();
    let max = 12u64 << (2 * u32::from(depth));
    for v in values.iter().flatten() {
        let idx = u64::try_from(v).ok().filter(|i| *i < max);
        if let Some(i) = idx {
            ranges.push(range_of(depth, i));
        }
    }
    Ok(())
}

/// The corner columns of a batch (from column `from` on) as doubles.
pub(crate) fn corner_columns(
    batch: &RecordBatch,
    from: usize,
) -> crate::Result<Vec<arrow::array::ArrayRef>> {
    let mut columns = Vec::with_capacity(8);
    for c in &batch.columns()[from..from + 2 * CORNERS.len()] {
        columns.push(arrow::compute::cast(
            c,
            &arrow::datatypes::DataType::Float64,
        )?);
    }
    Ok(columns)
}

/// The polygon of one row's corners at `depth` (`None` when a corner is
/// NULL); `row` numbers the row in errors.
pub(crate) fn draw(
    values: &[&arrow::array::Float64Array],
    at: usize,
    depth: u8,
    row: u64,
) -> crate::Result<Option<RangeMOC<u64, Hpx<u64>>>> {
    if values.iter().any(|v| v.is_null(at)) {
        return Ok(None);
    }
    let mut vertices = Vec::with_capacity(4);
    for (k, pair) in values.chunks(2).enumerate() {
        let (ra, dec) = (pair[0].value(at), pair[1].value(at));
        if !ra.is_finite() || !(-90.0..=90.0).contains(&dec) {
            return Err(CoverageError::OffSky {
                row,
                what: format!("corner {} ({ra}, {dec})", CORNERS[k].0),
            }
            .into());
        }
        vertices.push((ra.rem_euclid(360.0).to_radians(), dec.to_radians()));
    }
    Ok(Some(RangeMOC::from_polygon(
        &vertices,
        false,
        depth,
        CellSelection::All,
    )))
}

/// Adds each row's detector polygon (corners from column `from` on); gives
/// the rows drawn and those left out for a NULL corner. `first` numbers the
/// batch's rows in errors.
fn footprints_of(
    batch: &RecordBatch,
    from: usize,
    depth: u8,
    first: u64,
    ranges: &mut Vec<Range<u64>>,
) -> crate::Result<(u64, u64)> {
    let columns = corner_columns(batch, from)?;
    let values: Vec<_> = columns
        .iter()
        .map(|c| c.as_primitive::<Float64Type>())
        .collect();
    let (mut drawn, mut skipped) = (0, 0);
    for at in 0..batch.num_rows() {
        match draw(&values, at, depth, first + at as u64 + 1)? {
            Some(polygon) => {
                ranges.extend(polygon.moc_ranges().iter().cloned());
                drawn += 1;
            }
            None => skipped += 1,
        }
    }
    Ok((drawn, skipped))
}

/// Sorts ranges and joins those that overlap or touch.
pub(crate) fn merge(ranges: &mut Vec<Range<u64>>) {
    ranges.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges.drain(..) {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    *ranges = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_joins_ranges_that_overlap_or_touch() {
        let mut r = vec![5..7, 0..2, 2..3, 6..9, 20..21];
        merge(&mut r);
        assert_eq!(r, vec![0..3, 5..9, 20..21]);
    }
}
