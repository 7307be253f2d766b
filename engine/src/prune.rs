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
}

/// What the filters of one scan allow.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Prune {
    /// Where on the sky the rows can be.
    pub sky: Option<Sky>,
    /// The `diaObjectId` values the rows can have.
    pub ids: Option<BTreeSet<i64>>,
}

fn f64_of(e: &Expr) -> Option<f64> {
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

fn column_of(e: &Expr) -> Option<&str> {
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

fn is_position(args: &[Expr]) -> bool {
    column_of(&args[0]) == Some("ra") && column_of(&args[1]) == Some("dec")
}

fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
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

/// `adql_cone(ra, dec, ...) = 1`, `adql_distance(ra, dec, ...) < r`, point in polygon.
fn region(e: &Expr) -> Option<Region> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    // Put the function on the left.
    let (f, op, v) = if matches!(**left, Expr::ScalarFunction(_)) {
        (&**left, *op, &**right)
    } else {
        let flipped = match op {
            Operator::Lt => Operator::Gt,
            Operator::LtEq => Operator::GtEq,
            Operator::Gt => Operator::Lt,
            Operator::GtEq => Operator::LtEq,
            other => *other,
        };
        (&**right, flipped, &**left)
    };
    let value = f64_of(v)?;
    if let Some(a) = call(f, adql::udf::CONE) {
        let yes = matches!(
            (op, value),
            (Operator::Eq, 1.0) | (Operator::Gt, 0.0) | (Operator::NotEq, 0.0)
        );
        if yes && a.len() == 5 && is_position(a) {
            return Some(Region::Cone {
                ra: f64_of(&a[2])?,
                dec: f64_of(&a[3])?,
                radius: f64_of(&a[4])?,
            });
        }
        return None;
    }
    if let Some(a) = call(f, adql::udf::DISTANCE) {
        if !matches!(op, Operator::Lt | Operator::LtEq) || a.len() != 4 {
            return None;
        }
        let (ra, dec) = if is_position(a) {
            (f64_of(&a[2])?, f64_of(&a[3])?)
        } else if is_position(&a[2..]) {
            (f64_of(&a[0])?, f64_of(&a[1])?)
        } else {
            return None;
        };
        return Some(Region::Cone {
            ra,
            dec,
            radius: value,
        });
    }
    if let Some(a) = call(f, adql::udf::CONTAINS) {
        let yes = matches!(
            (op, value),
            (Operator::Eq, 1.0) | (Operator::Gt, 0.0) | (Operator::NotEq, 0.0)
        );
        if !yes || a.len() != 2 {
            return None;
        }
        let p = call(&a[0], adql::udf::POINT)?;
        if p.len() != 2 || !is_position(p) {
            return None;
        }
        let coords: Vec<f64> = if let Some(v) = call(&a[1], adql::udf::POLYGON) {
            v.iter().map(f64_of).collect::<Option<_>>()?
        } else if let Some(b) = call(&a[1], adql::udf::BOX) {
            let b: Vec<f64> = b.iter().map(f64_of).collect::<Option<_>>()?;
            if b.len() != 4 {
                return None;
            }
            crate::geometry::box_corners(b[0], b[1], b[2], b[3])
        } else if let Some(c) = call(&a[1], adql::udf::CIRCLE) {
            let c: Vec<f64> = c.iter().map(f64_of).collect::<Option<_>>()?;
            return (c.len() == 3).then(|| Region::Cone {
                ra: c[0],
                dec: c[1],
                radius: c[2],
            });
        } else {
            return None;
        };
        if coords.len() < 6 || !coords.len().is_multiple_of(2) {
            return None;
        }
        return Some(Region::Polygon(
            coords.chunks(2).map(|p| (p[0], p[1])).collect(),
        ));
    }
    None
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
            if !(radius.is_finite() && *radius >= 0.0 && dec.abs() <= 90.0) {
                return None;
            }
            if *radius >= 90.0 {
                return None;
            }
            let (lon, lat, r) = (
                ra.to_radians(),
                dec.to_radians(),
                radius.to_radians().max(1e-9),
            );
            // A depth where the cone spans a few cells keeps the ranges to a handful.
            let depth = cdshealpix::best_starting_depth(r).min(29);
            let fine = nested::cone_coverage_approx(depth, lon, lat, r);
            let ranges = ranges_29(depth, fine.flat_iter());
            let cells = Cell::cone(partition_order, *ra, *dec, *radius)
                .into_iter()
                .map(|c| c.npix)
                .collect();
            Some(Sky { ranges, cells })
        }
        Region::Polygon(vs) => {
            let rad: Vec<(f64, f64)> = vs
                .iter()
                .map(|(a, d)| (a.to_radians(), d.to_radians()))
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
            })
        }
    }
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

    /// Whether a file of partition `cell` holding rows in `spill` cells may meet the region.
    pub fn may_hold(&self, cell: Option<Cell>, spill: &[u64]) -> bool {
        match cell {
            Some(c) => self.cells.contains(&c.npix) || spill.iter().any(|s| self.cells.contains(s)),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{ident as col, lit};

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
}
