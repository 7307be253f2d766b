//! Bounds a scan's filters put on a time column, to drop files whose time
//! range (from the log, without opening them) lies outside: "what changed since
//! T" then opens the files of the commits since T, not every file.

use std::collections::BTreeMap;

use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

use super::prune::{column_of, f64_of};

/// The closed interval each named column's values must lie in.
pub(crate) type Bounds = BTreeMap<String, (f64, f64)>;

/// Narrows `bounds` by one conjunct, if it compares a column with a number
/// (`<`, `<=`, `>`, `>=`, `=`, or `BETWEEN`). Strict comparisons keep the
/// bound itself in the interval: a file is dropped only when no row of it can
/// match, never when one might.
pub(crate) fn narrow(bounds: &mut Bounds, conjunct: &Expr) {
    let (column, lo, hi) = match conjunct {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, op, v) = match (
                column_of(left),
                f64_of(right),
                column_of(right),
                f64_of(left),
            ) {
                (Some(c), Some(v), _, _) => (c, *op, v),
                (_, _, Some(c), Some(v)) => (c, flip(*op), v),
                _ => return,
            };
            match op {
                Operator::Gt | Operator::GtEq => (column, v, f64::INFINITY),
                Operator::Lt | Operator::LtEq => (column, f64::NEG_INFINITY, v),
                Operator::Eq => (column, v, v),
                _ => return,
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => match (column_of(expr), f64_of(low), f64_of(high)) {
            (Some(c), Some(lo), Some(hi)) => (c, lo, hi),
            _ => return,
        },
        _ => return,
    };
    // NaN compares false with everything: such a bound says nothing usable.
    if lo.is_nan() || hi.is_nan() {
        return;
    }
    let b = bounds
        .entry(column.to_string())
        .or_insert((f64::NEG_INFINITY, f64::INFINITY));
    *b = (b.0.max(lo), b.1.min(hi));
}

/// `v op c` as `c flip(op) v`.
fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// Whether a file whose `column` ranges over `[lo, hi]` may hold a row inside `bounds`.
pub(crate) fn may_meet(bounds: &Bounds, column: &str, (lo, hi): (f64, f64)) -> bool {
    bounds
        .get(column)
        .is_none_or(|&(b_lo, b_hi)| lo <= b_hi && b_lo <= hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{ident as col, lit};

    fn of(exprs: &[Expr]) -> Bounds {
        let mut b = Bounds::new();
        for e in exprs {
            narrow(&mut b, e);
        }
        b
    }

    #[test]
    fn comparisons_either_way_round_and_between_narrow_one_interval() {
        let t = "validityStartMjdTai";
        let b = of(&[
            col(t).gt(lit(61000.5)),
            lit(61002.0).gt_eq(col(t)),
            col(t).between(lit(61000.0), lit(61001.0)),
        ]);
        assert_eq!(b[t], (61000.5, 61001.0));
        assert!(may_meet(&b, t, (61000.9, 61003.0)));
        assert!(
            may_meet(&b, t, (61000.5, 61000.5)),
            "a strict bound keeps its edge"
        );
        assert!(!may_meet(&b, t, (61001.1, 61003.0)));
        assert!(!may_meet(&b, t, (60999.0, 61000.4)));
        assert!(
            may_meet(&b, "midpointMjdTai", (0.0, 1.0)),
            "no bound: any file"
        );
    }

    #[test]
    fn what_is_not_a_bound_on_a_column_bounds_nothing() {
        let t = "validityStartMjdTai";
        let b = of(&[
            col(t).not_eq(lit(1.0)),
            col(t).gt(col("midpointMjdTai")),
            col(t).gt(lit(f64::NAN)),
            col(t).not_between(lit(1.0), lit(2.0)),
            (col(t) + lit(1.0)).gt(lit(5.0)),
        ]);
        assert!(b.is_empty(), "{b:?}");
    }
}
