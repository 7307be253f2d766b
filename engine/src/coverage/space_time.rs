//! The space-time MOC (MOC 2.0 ST-MOC) of the survey's detector-visits: each
//! footprint over the time its exposure was open.
//!
//! The PPDB holds no exposure times: `DetectorVisitProcessingSummary` has a
//! visit's corners but not when it was taken. The time of a visit is read from
//! its DIA rows instead (every DiaSource and forced measurement of a visit
//! carries the exposure's midpoint, `midpointMjdTai`), and the exposure is
//! taken to last [`EXPOSURE_SECONDS`] around it, as Rubin's 30 s visits do. A
//! detector-visit of a visit with no DIA row at all cannot be placed in time:
//! it is counted (`without_time`), not drawn.
//!
//! MOC 2.0 counts time in microseconds since JD 0 in TCB; the midpoints are
//! TAI, converted by [`tcb_microseconds`] (good to tens of microseconds, far
//! below the cells a coverage is drawn at).

use std::collections::HashMap;
use std::ops::Range;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use moc::elemset::range::HpxRanges;
use moc::hpxranges2d::TimeSpaceMoc;
use moc::moc::range::RangeMOC;
use moc::moc2d::range::RangeMOC2;
use moc::moc2d::{RangeMOC2IntoIterator, RangeMOC2Iterator};
use moc::qty::{Hpx, Time};

use super::{Coverage, CoverageError, MAX_ORDER, ORDER_COLUMN};

/// How long an exposure is taken to last, centred on its midpoint.
pub const EXPOSURE_SECONDS: f64 = 30.0;
/// The deepest time order (cells of 1 µs), as MOC 2.0 defines it.
pub const MAX_TIME_ORDER: u8 = 61;
/// The time order used when none is asked for: cells of 2.1 s.
pub const DEFAULT_TIME_ORDER: u8 = 40;
/// The first columns of a space-time coverage's rows: a visit's first and
/// last DIA midpoint (MJD, TAI).
pub(crate) const TIME_COLUMNS: [&str; 2] = ["mjd_tai_min", "mjd_tai_max"];
/// The prefix of the last column, followed by the time order.
pub(crate) const TIME_ORDER_COLUMN: &str = "time_order_";

/// A space-time MOC of detector footprints.
#[derive(Debug, Clone)]
pub struct SpaceTime {
    /// The time ranges and, for each, the cells looked at.
    pub moc: RangeMOC2<u64, Time<u64>, u64, Hpx<u64>>,
    /// Detector-visits left out because their visit has no DIA row to date it.
    pub without_time: u64,
    /// The first and last midpoint drawn (MJD, TAI).
    pub span: Option<(f64, f64)>,
    /// The order of the time cells.
    pub time_order: u8,
}

/// Where the corners of space-time rows start and the (space, time) orders
/// they are drawn at; `None` if the rows are not a space-time coverage's.
pub(crate) fn columns(names: &[String]) -> Option<(u8, u8)> {
    let [min, max, rest @ ..] = names else {
        return None;
    };
    if min != TIME_COLUMNS[0] || max != TIME_COLUMNS[1] {
        return None;
    }
    let (time, rest) = rest.split_last()?;
    let (space, corners) = rest.split_last()?;
    let t = super::order_named(time, TIME_ORDER_COLUMN, MAX_TIME_ORDER)?;
    let s = super::order_named(space, ORDER_COLUMN, MAX_ORDER)?;
    super::are_corners(corners).then_some((s, t))
}

/// Microseconds since JD 0 in TCB of a TAI instant given as an MJD, as MOC
/// 2.0 counts time; `None` off any plausible date.
///
/// TT is TAI + 32.184 s; TDB is TT plus at most 1.7 ms (the leading periodic
/// term kept here, to ~30 µs); TCB runs ahead of TDB by L_B per second since
/// 1977 (IAU 2006 resolution B3).
pub fn tcb_microseconds(mjd_tai: f64) -> Option<u64> {
    const L_B: f64 = 1.550_519_768e-8;
    const T0_JD: f64 = 2_443_144.500_372_5;
    const TDB0_S: f64 = -6.55e-5;
    const DAY_US: f64 = 86_400e6;
    if !mjd_tai.is_finite() || !(0.0..1.0e6).contains(&mjd_tai) {
        return None;
    }
    let jd = mjd_tai + 2_400_000.5;
    let g = (357.53 + 0.985_600_28 * (jd - 2_451_545.0)).to_radians();
    let tdb_minus_tt = 0.001_657 * g.sin() + 0.000_014 * (2.0 * g).sin();
    let tcb_minus_tdb = L_B * (jd - T0_JD) * 86_400.0 - TDB0_S;
    let offset_s = 32.184 + tdb_minus_tt + tcb_minus_tdb;
    // Whole days apart from the fraction keeps microseconds exact in f64.
    let day = mjd_tai.floor();
    let within = (mjd_tai - day + 0.5) * DAY_US + offset_s * 1e6;
    let days_us = (day as u64 + 2_400_000) * 86_400_000_000;
    days_us.checked_add_signed(within.floor() as i64)
}

/// The microseconds (TCB) an exposure of midpoints `first..=last` was open.
fn exposure(first: f64, last: f64) -> Option<Range<u64>> {
    let half = (EXPOSURE_SECONDS * 1e6 / 2.0) as u64;
    let start = tcb_microseconds(first)?.checked_sub(half)?;
    let end = tcb_microseconds(last)?.checked_add(half)?;
    (end > start).then_some(start..end)
}

/// Folds space-time rows: for each detector-visit with a time and corners,
/// its footprint over its exposure.
pub(crate) async fn of_rows(
    result: &mut crate::result::QueryResult,
    space: u8,
    time: u8,
) -> crate::Result<Coverage> {
    // The detectors of one visit share its exposure: their footprints gather
    // under it, so memory follows visits and cells, not detector-visits.
    let mut exposures: HashMap<Range<u64>, Vec<Range<u64>>> = HashMap::new();
    let mut union: Vec<Range<u64>> = Vec::new();
    let (mut rows, mut without_corners, mut without_time) = (0u64, 0u64, 0u64);
    let mut span: Option<(f64, f64)> = None;
    while let Some(batch) = result.next_batch().await {
        let batch = batch?;
        let first = rows;
        let (n, skipped, untimed) = crate::plan::pipeline::in_place(async {
            fold(&batch, space, first, &mut exposures, &mut span)
        })
        .await?;
        rows += n + skipped + untimed;
        without_corners += skipped;
        without_time += untimed;
    }
    let (mut times, mut spaces) = (Vec::new(), Vec::new());
    for (open, mut cells) in exposures {
        super::merge(&mut cells);
        union.extend(cells.iter().cloned());
        if union.len() > super::MERGE_EVERY {
            super::merge(&mut union);
        }
        times.push(open);
        spaces.push(HpxRanges::<u64>::new_unchecked(cells));
    }
    super::merge(&mut union);
    let moc = crate::plan::pipeline::in_place(async {
        TimeSpaceMoc::<u64, u64>::create_from_time_ranges_spatial_coverage(times, spaces, time)
            .time_space_iter(time, space)
            .into_range_moc2()
    })
    .await;
    Ok(Coverage {
        moc: RangeMOC::new(space, moc::elemset::range::MocRanges::new_unchecked(union)),
        rows,
        footprints: true,
        without_corners,
        space_time: Some(SpaceTime {
            moc,
            without_time,
            span,
            time_order: time,
        }),
    })
}

/// Draws one batch: its rows drawn, left out for a NULL corner, and left out
/// for no time.
fn fold(
    batch: &RecordBatch,
    depth: u8,
    first: u64,
    exposures: &mut HashMap<Range<u64>, Vec<Range<u64>>>,
    span: &mut Option<(f64, f64)>,
) -> crate::Result<(u64, u64, u64)> {
    let cast =
        |c: &arrow::array::ArrayRef| arrow::compute::cast(c, &arrow::datatypes::DataType::Float64);
    let (lo, hi) = (cast(batch.column(0))?, cast(batch.column(1))?);
    let (lo, hi) = (
        lo.as_primitive::<Float64Type>(),
        hi.as_primitive::<Float64Type>(),
    );
    let columns = super::corner_columns(batch, 2)?;
    let values: Vec<_> = columns
        .iter()
        .map(|c| c.as_primitive::<Float64Type>())
        .collect();
    let (mut drawn, mut skipped, mut untimed) = (0, 0, 0);
    for at in 0..batch.num_rows() {
        let row = first + at as u64 + 1;
        let when = (!lo.is_null(at) && !hi.is_null(at))
            .then(|| (lo.value(at), hi.value(at)))
            .filter(|(a, b)| a <= b);
        let Some((a, b)) = when else {
            untimed += 1;
            continue;
        };
        let Some(open) = exposure(a, b) else {
            return Err(CoverageError::OffSky {
                row,
                what: format!("midpoint {a}..{b} (MJD) is not a time"),
            }
            .into());
        };
        match super::draw(&values, at, depth, row)? {
            Some(polygon) => {
                let cells = exposures.entry(open).or_default();
                cells.extend(polygon.moc_ranges().iter().cloned());
                if cells.len() > super::MERGE_EVERY {
                    super::merge(cells);
                }
                *span = Some(span.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                drawn += 1;
            }
            None => skipped += 1,
        }
    }
    Ok((drawn, skipped, untimed))
}

impl SpaceTime {
    /// Writes the ST-MOC in `format`.
    pub(crate) fn write(
        &self,
        format: super::MocFormat,
        id: Option<String>,
        mut out: impl std::io::Write,
    ) -> std::io::Result<()> {
        use moc::moc2d::{
            CellMOC2IntoIterator, CellOrCellRangeMOC2IntoIterator, CellOrCellRangeMOC2Iterator,
        };
        let it = (&self.moc).into_range_moc2_iter();
        match format {
            super::MocFormat::Fits => moc::deser::fits::ranges_st_to_fits_ivoa(
                it,
                id,
                Some(moc::deser::fits::keywords::MocType::Image),
                out,
            )
            .map_err(std::io::Error::other),
            super::MocFormat::Ascii => it
                .into_cellcellrange_moc2_iter()
                .to_ascii_ivoa(Some(80), false, &mut out)
                .map_err(std::io::Error::other),
            super::MocFormat::Json => {
                moc::deser::json::cellmoc2d_to_json_aladin(
                    it.into_cell_moc2_iter(),
                    &Some(80),
                    &mut out,
                )?;
                out.write_all(b"\n")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::CORNERS;
    use super::*;

    #[test]
    fn tai_is_converted_to_tcb_microseconds_since_jd0() {
        // MJD 61000 TAI: TCB - TAI = 32.184 s + 23.9 s (L_B over 48.9 years);
        // astropy gives 56.1037 s.
        let us = tcb_microseconds(61_000.0).unwrap();
        let jd0 = (61_000u64 + 2_400_000) * 86_400_000_000 + 43_200_000_000;
        let ahead = (us - jd0) as f64 / 1e6;
        assert!((56.10..56.11).contains(&ahead), "{ahead}");
        assert!(tcb_microseconds(f64::NAN).is_none());
        assert!(tcb_microseconds(-1.0).is_none());
        let a = tcb_microseconds(61_000.0 + 40.0 / 86_400.0).unwrap();
        assert_eq!((a - us + 500) / 1_000_000, 40, "a visit 40 s later");
    }

    #[test]
    fn space_time_rows_are_recognised_by_their_columns() {
        let mut names: Vec<String> = TIME_COLUMNS.iter().map(|s| s.to_string()).collect();
        names.extend(
            CORNERS
                .iter()
                .flat_map(|(r, d)| [r.to_string(), d.to_string()]),
        );
        names.push(format!("{ORDER_COLUMN}8"));
        names.push(format!("{TIME_ORDER_COLUMN}40"));
        assert_eq!(columns(&names), Some((8, 40)));
        names.pop();
        assert_eq!(columns(&names), None);
    }
}
