//! What a table scan's filters say about where its rows can be: a region of
//! the sky (as HEALPix cells and `_healpix_29` ranges) and a set of object ids.
//!
//! Only conjuncts that the exact filter above the scan still checks are read
//! here, so anything derived is a superset: pruning never changes an answer.

use std::collections::BTreeSet;
use std::ops::Range;

use catalog::healpix::Cell;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, expr::InList};

/// The `_healpix_29` ranges and partition cells a region covers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sky {
    /// Ranges of `_healpix_29` (half-open), few and coarse.
    pub ranges: Vec<Range<u64>>,
    /// Cells at the partition order.
    pub cells: BTreeSet<u64>,
    /// The partition order.
    pub order: u8,
}

/// What the filters of one scan allow.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Prune {
    /// Where on the sky the rows can be.
    pub sky: Option<Sky>,
    /// The `diaObjectId` values the rows can have.
    pub ids: Option<BTreeSet<i64>>,
    /// The intervals columns' values must lie in (see `bounds.rs`).
    pub bounds: super::bounds::Bounds,
}

pub(super) fn f64_of(e: &Expr) -> Option<f64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Float64(Some(x)) => Some(*x),
            ScalarValue::Float32(Some(x)) => Some(f64::from(*x)),
            ScalarValue::Int64(Some(x)) => Some(*x as f64),
            ScalarValue::Int32(Some(x)) => Some(f64::from(*x)),
            ScalarValue::Int16(Some(x)) => Some(f64::from(*x)),
            ScalarValue::Int8(Some(x)) => Some(f64::from(*x)),
            _ => None,
        },
        Expr::Cast(c) => f64_of(&c.expr),
        Expr::TryCast(c) => f64_of(&c.expr),
        Expr::Negative(x) => f64_of(x).map(|v| -v),
        _ => None,
    }
}

fn i64_of(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int64(Some(x)) => Some(*x),
            ScalarValue::Int32(Some(x)) => Some(i64::from(*x)),
            ScalarValue::Int16(Some(x)) => Some(i64::from(*x)),
            ScalarValue::Int8(Some(x)) => Some(i64::from(*x)),
            ScalarValue::UInt32(Some(x)) => Some(i64::from(*x)),
            _ => None,
        },
        Expr::Cast(c) => i64_of(&c.expr),
        _ => None,
    }
}

pub(super) fn column_of(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column_of(&c.expr),
        _ => None,
    }
}

fn call<'e>(e: &'e Expr, name: &str) -> Option<&'e [Expr]> {
    match e {
        Expr::ScalarFunction(f) if f.name() == name => Some(&f.args),
        _ => None,
    }
}

fn is_position(point: [&Expr; 2]) -> bool {
    column_of(point[0]) == Some("ra") && column_of(point[1]) == Some("dec")
}

/// The parts of an `AND` chain.
pub(crate) fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    if let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::And,
        right,
    }) = e
    {
        conjuncts(left, out);
        conjuncts(right, out);
    } else {
        out.push(e);
    }
}

/// A region the rows' own positions must lie in.
enum Region {
    Cone { ra: f64, dec: f64, radius: f64 },
    Polygon(Vec<(f64, f64)>),
}

/// "The point lies within `radius` of the centre", as one conjunct says it.
pub(crate) struct Near<'e> {
    /// The point's longitude and latitude.
    pub point: [&'e Expr; 2],
    /// The centre's longitude and latitude.
    pub centre: [&'e Expr; 2],
    /// The radius in degrees.
    pub radius: &'e Expr,
}

/// A comparison with the function on the left, whichever way it was written.
fn function_on_left(e: &Expr) -> Option<(&Expr, Operator, &Expr)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    if matches!(**left, Expr::ScalarFunction(_)) {
        return Some((left, *op, right));
    }
    let flipped = match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => *other,
    };
    Some((right, flipped, left))
}

/// Whether `f op v` says a 0/1 geometry predicate holds.
fn holds(op: Operator, v: &Expr) -> bool {
    matches!(
        (op, f64_of(v)),
        (Operator::Eq, Some(1.0)) | (Operator::Gt, Some(0.0)) | (Operator::NotEq, Some(0.0))
    )
}

/// The ways a conjunct bounds one point's distance from another:
/// `adql_cone(..) = 1`, `CONTAINS(POINT, CIRCLE) = 1` and `adql_distance(..) < r`
/// (either point may be the centre of a distance).
pub(crate) fn near(e: &Expr) -> Vec<Near<'_>> {
    let Some((f, op, v)) = function_on_left(e) else {
        return vec![];
    };
    if let Some(a) = call(f, adql::udf::CONE) {
        if holds(op, v) && a.len() == 5 {
            return vec![Near {
                point: [&a[0], &a[1]],
                centre: [&a[2], &a[3]],
                radius: &a[4],
            }];
        }
        return vec![];
    }
    if let Some(a) = call(f, adql::udf::DISTANCE) {
        if !matches!(op, Operator::Lt | Operator::LtEq) || a.len() != 4 {
            return vec![];
        }
        return vec![
            Near {
                point: [&a[0], &a[1]],
                centre: [&a[2], &a[3]],
                radius: v,
            },
            Near {
                point: [&a[2], &a[3]],
                centre: [&a[0], &a[1]],
                radius: v,
            },
        ];
    }
    if let Some(a) = call(f, adql::udf::CONTAINS)
        && holds(op, v)
        && a.len() == 2
        && let Some(p) = call(&a[0], adql::udf::POINT)
        && let Some(c) = call(&a[1], adql::udf::CIRCLE)
        && p.len() == 2
        && c.len() == 3
    {
        return vec![Near {
            point: [&p[0], &p[1]],
            centre: [&c[0], &c[1]],
            radius: &c[2],
        }];
    }
    vec![]
}

/// A cone or polygon of constants that the rows' own positions must lie in.
fn region(e: &Expr) -> Option<Region> {
    for n in near(e) {
        if is_position(n.point) {
            return Some(Region::Cone {
                ra: f64_of(n.centre[0])?,
                dec: f64_of(n.centre[1])?,
                radius: f64_of(n.radius)?,
            });
        }
    }
    let (f, op, v) = function_on_left(e)?;
    let a = call(f, adql::udf::CONTAINS)?;
    if !holds(op, v) || a.len() != 2 {
        return None;
    }
    let p = call(&a[0], adql::udf::POINT)?;
    if p.len() != 2 || !is_position([&p[0], &p[1]]) {
        return None;
    }
    let coords: Vec<f64> = if let Some(v) = call(&a[1], adql::udf::POLYGON) {
        v.iter().map(f64_of).collect::<Option<_>>()?
    } else if let Some(b) = call(&a[1], adql::udf::BOX) {
        let b: Vec<f64> = b.iter().map(f64_of).collect::<Option<_>>()?;
        if b.len() != 4 {
            return None;
        }
        crate::functions::geometry::box_corners(b[0], b[1], b[2], b[3])
    } else {
        return None;
    };
    if coords.len() < 6 || !coords.len().is_multiple_of(2) {
        return None;
    }
    Some(Region::Polygon(
        coords.chunks(2).map(|p| (p[0], p[1])).collect(),
    ))
}

fn ids(e: &Expr) -> Option<BTreeSet<i64>> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let (c, v) = if column_of(left).is_some() {
                (left, right)
            } else {
                (right, left)
            };
            (column_of(c) == Some("diaObjectId")).then_some(())?;
            Some(BTreeSet::from([i64_of(v)?]))
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) if column_of(expr) == Some("diaObjectId") => list.iter().map(i64_of).collect(),
        _ => None,
    }
}

/// Merges sorted cells at `depth` into `_healpix_29` ranges.
fn ranges_29(depth: u8, cells: impl Iterator<Item = u64>) -> Vec<Range<u64>> {
    let shift = 2 * (29 - u32::from(depth));
    let mut out: Vec<Range<u64>> = Vec::new();
    for c in cells {
        let r = (c << shift)..((c + 1) << shift);
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

fn sky(region: &Region, partition_order: u8) -> Option<Sky> {
    use cdshealpix::nested;
    match region {
        Region::Cone { ra, dec, radius } => {
            let (ranges, cells) = cone(*ra, *dec, *radius, partition_order)?;
            Some(Sky {
                ranges,
                cells: cells.into_iter().collect(),
                order: partition_order,
            })
        }
        Region::Polygon(vs) => {
            let rad: Vec<(f64, f64)> = vs
                .iter()
                .map(|(a, d)| (catalog::healpix::longitude(*a), d.to_radians()))
                .collect();
            if vs.iter().any(|(a, d)| !a.is_finite() || d.abs() > 90.0) {
                return None;
            }
            let fine_depth = partition_order.saturating_add(4).min(29);
            let fine = nested::polygon_coverage(fine_depth, &rad, false);
            let coarse = nested::polygon_coverage(partition_order, &rad, false);
            let mut fine_cells: Vec<u64> = fine.flat_iter().collect();
            fine_cells.sort_unstable();
            let mut cells: BTreeSet<u64> = coarse.flat_iter().collect();
            // Coverage is approximate at the coarse depth; widen it with the fine one.
            let shift = 2 * u32::from(fine_depth - partition_order);
            cells.extend(fine_cells.iter().map(|c| c >> shift));
            Some(Sky {
                ranges: ranges_29(fine_depth, fine_cells.into_iter()),
                cells,
                order: partition_order,
            })
        }
    }
}

/// Whether a cone is a place on the sky small enough to cover with cells.
fn bounded(ra: f64, dec: f64, radius: f64) -> bool {
    ra.is_finite() && dec.abs() <= 90.0 && radius.is_finite() && (0.0..90.0).contains(&radius)
}

/// The `_healpix_29` ranges and partition cells of one cone; `None` when the
/// cone cannot be bounded (too large, or not a place on the sky).
fn cone(
    ra: f64,
    dec: f64,
    radius: f64,
    partition_order: u8,
) -> Option<(Vec<Range<u64>>, Vec<u64>)> {
    use cdshealpix::nested;
    if !bounded(ra, dec, radius) {
        return None;
    }
    let (lon, lat, r) = (
        catalog::healpix::longitude(ra),
        dec.to_radians(),
        radius.to_radians().max(1e-9),
    );
    // A depth where the cone spans a few cells keeps the ranges to a handful.
    let depth = cdshealpix::best_starting_depth(r).min(29);
    let fine = nested::cone_coverage_approx(depth, lon, lat, r);
    let ranges = ranges_29(depth, fine.flat_iter());
    let cells = Cell::cone(partition_order, ra, dec, radius)
        .into_iter()
        .map(|c| c.npix)
        .collect();
    Some((ranges, cells))
}

/// Sorted `_healpix_29` ranges that hold every point of a cone, fine enough to
/// test rows against before the exact distance (they cover about twice the
/// cone's area, where the ranges that pick files cover up to twenty times it).
/// `None` when the cone cannot be bounded.
pub(crate) fn cone_rows(ra: f64, dec: f64, radius: f64) -> Option<Vec<Range<u64>>> {
    if !bounded(ra, dec, radius) {
        return None;
    }
    let r = radius.to_radians().max(1e-9);
    let depth = (cdshealpix::best_starting_depth(r) + 3).min(29);
    let cells = cdshealpix::nested::cone_coverage_approx(
        depth,
        catalog::healpix::longitude(ra),
        dec.to_radians(),
        r,
    );
    Some(coarsen(ranges_29(depth, cells.flat_iter()), 4 * MAX_RANGES))
}

/// Whether `_healpix_29` value `h` lies in one of sorted, disjoint `ranges`.
pub(crate) fn within(ranges: &[Range<u64>], h: u64) -> bool {
    let i = ranges.partition_point(|r| r.end <= h);
    ranges.get(i).is_some_and(|r| r.start <= h)
}

/// Most `_healpix_29` ranges a union of cones is pushed to the Parquet reader as:
/// beyond this the smallest gaps are closed, which keeps the predicate cheap.
const MAX_RANGES: usize = 64;

/// The sky a union of cones `(ra, dec, radius)` covers, for rows that must lie in
/// at least one of them (a join against a list of targets). `None` when one of
/// the cones cannot be bounded.
pub(crate) fn cones(
    cones: impl IntoIterator<Item = (f64, f64, f64)>,
    partition_order: u8,
) -> Option<Sky> {
    let mut ranges = Vec::new();
    let mut cells = BTreeSet::new();
    for (ra, dec, radius) in cones {
        let (r, c) = cone(ra, dec, radius, partition_order)?;
        ranges.extend(r);
        cells.extend(c);
    }
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    Some(Sky {
        ranges: coarsen(merged, MAX_RANGES),
        cells,
        order: partition_order,
    })
}

/// Sorted, disjoint `ranges` with the smallest gaps between them closed until at
/// most `most` remain (a superset of the original, as cheap to test as `most`).
pub(crate) fn coarsen(ranges: Vec<Range<u64>>, most: usize) -> Vec<Range<u64>> {
    if ranges.len() <= most.max(1) {
        return ranges;
    }
    let mut gaps: Vec<u64> = ranges.windows(2).map(|w| w[1].start - w[0].end).collect();
    gaps.sort_unstable();
    let close = gaps[ranges.len() - most.max(1) - 1];
    let mut coarse: Vec<Range<u64>> = Vec::with_capacity(most + 1);
    for r in ranges {
        match coarse.last_mut() {
            Some(last) if r.start - last.end <= close => last.end = r.end,
            _ => coarse.push(r),
        }
    }
    coarse
}

/// Reads what a scan's filters allow.
pub(crate) fn analyse(filters: &[Expr], partition_order: u8) -> Prune {
    let mut parts = Vec::new();
    for f in filters {
        conjuncts(f, &mut parts);
    }
    let mut p = Prune::default();
    for c in parts {
        if p.sky.is_none()
            && let Some(r) = region(c)
        {
            p.sky = sky(&r, partition_order);
        }
        super::bounds::narrow(&mut p.bounds, c);
        if let Some(set) = ids(c) {
            p.ids = Some(match p.ids.take() {
                Some(have) => have.intersection(&set).copied().collect(),
                None => set,
            });
        }
    }
    p
}

impl Sky {
    /// Whether a `_healpix_29` range `[lo, hi]` (inclusive) meets the region.
    pub fn overlaps(&self, lo: i64, hi: i64) -> bool {
        let (lo, hi) = (lo.max(0) as u64, hi.max(0) as u64);
        self.ranges.iter().any(|r| r.start <= hi && lo < r.end)
    }

    /// Whether a file of `cell` holding rows in `spill` cells (at the file's
    /// order, which a fresh file has coarser than the partitions') may meet the region.
    pub fn may_hold(&self, cell: Option<Cell>, spill: &[u64]) -> bool {
        let Some(c) = cell else {
            return true;
        };
        let meets = |npix: u64| {
            let c = Cell {
                order: c.order,
                npix,
            };
            self.cells.range(c.span(self.order)).next().is_some()
        };
        meets(c.npix) || spill.iter().any(|s| meets(*s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{ident as col, lit};

    #[test]
    fn row_ranges_hold_the_cone_and_little_else() {
        let (ra, dec, r) = (55.0, -30.0, 5.0 / 60.0);
        let fine = cone_rows(ra, dec, r).unwrap();
        let coarse = cone(ra, dec, r, 6).unwrap().0;
        let area = |rs: &[Range<u64>]| rs.iter().map(|r| r.end - r.start).sum::<u64>();
        assert!(area(&fine) * 4 < area(&coarse), "{fine:?} {coarse:?}");
        // Points on a ring just inside the cone, and the centre.
        for step in 0..36 {
            let a = f64::from(step) * 10f64.to_radians();
            let (p_ra, p_dec) = (
                ra + 0.99 * r * a.cos() / dec.to_radians().cos(),
                dec + 0.99 * r * a.sin(),
            );
            assert!(crate::functions::geometry::distance(ra, dec, p_ra, p_dec) <= r);
            let h = catalog::healpix::healpix_29(p_ra, p_dec) as u64;
            assert!(within(&fine, h), "{p_ra} {p_dec}");
        }
        assert!(!within(
            &fine,
            catalog::healpix::healpix_29(ra + 1.0, dec) as u64
        ));
        assert!(cone_rows(ra, dec, 90.0).is_none());
    }

    #[test]
    fn ranges_merge_neighbours() {
        let r = ranges_29(28, [4u64, 5, 7].into_iter());
        assert_eq!(r, vec![16..24, 28..32]);
    }

    #[test]
    fn in_list_of_ids_is_read() {
        let f = col("diaObjectId").in_list(vec![lit(3i64), lit(5i64)], false);
        let p = analyse(&[f.and(col("ra").gt(lit(1.0)))], 6);
        assert_eq!(p.ids, Some(BTreeSet::from([3, 5])));
        assert!(p.sky.is_none());
    }

    #[test]
    fn small_cone_gives_a_few_ranges_that_hold_its_centre() {
        let s = sky(
            &Region::Cone {
                ra: 10.0,
                dec: -20.0,
                radius: 5.0 / 60.0,
            },
            6,
        )
        .unwrap();
        assert!(s.ranges.len() <= 9, "{:?}", s.ranges.len());
        let h = catalog::healpix::healpix_29(10.0, -20.0);
        assert!(s.overlaps(h, h));
        assert!(!s.cells.is_empty() && s.cells.len() <= 4);
    }

    #[test]
    fn many_cones_coarsen_to_few_ranges_that_still_hold_every_centre() {
        let centres: Vec<(f64, f64)> = (0..500)
            .map(|i| (f64::from(i) * 0.7 % 360.0, f64::from(i % 120) - 60.0))
            .collect();
        let s = cones(centres.iter().map(|&(ra, dec)| (ra, dec, 0.001)), 6).unwrap();
        assert!(s.ranges.len() <= MAX_RANGES, "{}", s.ranges.len());
        assert!(s.ranges.windows(2).all(|w| w[0].end < w[1].start));
        for (ra, dec) in centres {
            let h = catalog::healpix::healpix_29(ra, dec);
            assert!(s.overlaps(h, h), "({ra}, {dec})");
            let cell = catalog::healpix::Cell::of_position(6, ra, dec);
            assert!(s.cells.contains(&cell.npix));
        }
        assert!(
            cones([(1.0, 2.0, 90.0)], 6).is_none(),
            "a hemisphere is not bounded"
        );
        assert_eq!(cones([], 6).map(|s| s.ranges.len()), Some(0));
    }
}
