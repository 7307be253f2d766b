//! Geometry arguments: points, coordinate systems, the shapes' numbers and
//! centres, and the `CONTAINS(...) = 1` form conditions take.

use sqlparser::ast::Expr;
use sqlparser::tokenizer::Span;

use crate::Error;
use crate::functions::udf;

use super::*;

/// The steps one row of a call of `name` takes in the engine's geometry,
/// by the vertices of its shapes: comparing two shapes tests every vertex of
/// each against the other (four trigonometric steps an edge) and every pair
/// of edges, about nine steps per pair of vertices; a shape's own measures
/// (area, centroid) take four a vertex. Two 256-vertex polygons took 20 ms a
/// row, counted as one step each.
pub(super) fn geometry_steps(name: &str, args: &[Expr]) -> usize {
    match (name, args) {
        ("CONTAINS" | "INTERSECTS", [a, b]) => 9 * vertices(a) * vertices(b),
        ("AREA" | "CENTROID", [a]) => 4 * vertices(a),
        _ => 0,
    }
}

/// The vertices of a geometry argument as written: a POLYGON's own, a BOX's
/// four, one for a POINT or CIRCLE, and as many as a polygon may have for a
/// value from a column or an expression.
fn vertices(e: &Expr) -> usize {
    match e {
        Expr::Nested(inner) => vertices(inner),
        Expr::Function(f) => {
            let args: Vec<&Expr> = match &f.args {
                sqlparser::ast::FunctionArguments::List(l) => l
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        sqlparser::ast::FunctionArg::Unnamed(
                            sqlparser::ast::FunctionArgExpr::Expr(e),
                        ) => Some(e),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            match f.name.to_string().trim_matches('"').to_uppercase().as_str() {
                "POINT" | "CIRCLE" => 1,
                "BOX" => 4,
                // Every argument that is a call (a POINT, a CENTROID), however
                // deeply parenthesised, is a vertex; two numbers make one.
                "POLYGON" => {
                    let calls = args.iter().filter(|a| is_call(a)).count();
                    let numbers = args.iter().filter(|a| !is_text(a) && !is_call(a)).count();
                    (calls + numbers.div_ceil(2)).max(3)
                }
                _ => crate::MAX_POLYGON_VERTICES,
            }
        }
        _ => crate::MAX_POLYGON_VERTICES,
    }
}

fn is_call(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_call(inner),
        e => matches!(e, Expr::Function(_)),
    }
}

fn is_text(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::SingleQuotedString(_)))
}

/// The two coordinates of a point expression.
pub(super) fn split_point(e: Expr) -> (Expr, Expr) {
    if let Some(a) = call_args(&e, udf::POINT)
        && a.len() == 2
    {
        return (a[0].clone(), a[1].clone());
    }
    (
        call(udf::COORD1, vec![e.clone()]),
        call(udf::COORD2, vec![e]),
    )
}

pub(super) fn is_point(e: &Expr) -> bool {
    call_args(e, udf::POINT).is_some_and(|a| a.len() == 2)
        || call_args(e, udf::CENTROID).is_some()
        || call_args(e, udf::HEALPIX_CENTER).is_some()
}

/// Whether an expression (as rewritten) makes a geometry value.
pub(super) fn is_geometry(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_geometry(inner),
        e => [
            udf::POINT,
            udf::CIRCLE,
            udf::BOX,
            udf::POLYGON,
            udf::CENTROID,
            udf::HEALPIX_CENTER,
        ]
        .iter()
        .any(|name| call_args(e, name).is_some()),
    }
}

pub(super) fn check_coordsys(e: &Expr) -> Result<()> {
    if let Some(s) = literal_string(e) {
        let u = s.trim().to_uppercase();
        if u.is_empty() || u == "ICRS" || u.starts_with("ICRS ") {
            return Ok(());
        }
        return Err(Error::at(
            e.span(),
            format!("coordinate system '{s}' is not supported"),
        )
        .hint("positions are ICRS: write 'ICRS' or leave the argument out"));
    }
    Ok(())
}

/// Drops a leading coordinate-system string, checking that it is ICRS.
pub(super) fn strip_coordsys(args: &mut Vec<Expr>) -> Result<()> {
    if args.first().and_then(literal_string).is_some() {
        let sys = args.remove(0);
        check_coordsys(&sys)?;
    }
    Ok(())
}

/// Drops a leading coordinate-system string and checks the count of what is left.
pub(super) fn coordsys(
    mut args: Vec<Expr>,
    counts: &[usize],
    name: &str,
    span: Span,
) -> Result<Vec<Expr>> {
    strip_coordsys(&mut args)?;
    if !counts.contains(&args.len()) {
        return Err(Error::at(
            span,
            format!(
                "{name} takes {} arguments (after the optional coordinate system), not {}",
                counts
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
                args.len()
            ),
        ));
    }
    Ok(args)
}

/// Replaces a leading point argument by its two coordinates when the call used one
/// (`CIRCLE(p, r)` rather than `CIRCLE(ra, dec, r)`); `rest` is how many follow the centre.
pub(super) fn flatten_points(mut args: Vec<Expr>, rest: usize) -> Vec<Expr> {
    if args.len() == rest + 1 {
        let (x, y) = split_point(args.remove(0));
        args.insert(0, y);
        args.insert(0, x);
    }
    args
}

/// Refuses CONTAINS or INTERSECTS written as a condition (`WHERE CONTAINS(...)`):
/// in ADQL they give 1 or 0, and the comparison says which is wanted. The
/// planner's own refusal named an internal function and no position.
pub(super) fn check_condition(e: &Expr) -> Result<()> {
    use sqlparser::ast::{BinaryOperator, UnaryOperator};
    match e {
        Expr::Nested(inner)
        | Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr: inner,
        } => check_condition(inner),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And | BinaryOperator::Or,
            right,
        } => {
            check_condition(left)?;
            check_condition(right)
        }
        Expr::Function(f) => {
            let name = f.name.to_string().to_uppercase();
            if name == "CONTAINS" || name == "INTERSECTS" {
                return Err(
                    Error::at(e.span(), format!("{name} gives 1 or 0, not true or false"))
                        .hint(format!("compare it: {name}(...) = 1")),
                );
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Refuses text where a geometry function wants a number (a coordinate or a
/// radius); the planner's refusal named an internal function and no position.
pub(super) fn check_numbers(args: &[Expr], name: &str) -> Result<()> {
    match args.iter().find(|a| literal_string(a).is_some()) {
        Some(text) => Err(Error::at(
            text.span(),
            format!("{name} takes numbers (coordinates and sizes, in degrees) here, not text"),
        )),
        None => Ok(()),
    }
}

/// Refuses the short form `CIRCLE(centre, radius)` (or `BOX(centre, w, h)`)
/// when what stands for the centre is a plain number: the call lost an
/// argument (`CIRCLE('ICRS', 55, -30)`), and would otherwise fail as it runs
/// with no position.
pub(super) fn check_centre(
    args: &[Expr],
    rest: usize,
    name: &str,
    usage: &str,
    span: Span,
) -> Result<()> {
    let number = |e: &Expr| {
        matches!(e, Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Number(..)))
            || matches!(e, Expr::UnaryOp { expr, .. } if matches!(&**expr, Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Number(..))))
    };
    if args.len() == rest + 1 && args.first().is_some_and(number) {
        return Err(Error::at(
            span,
            format!("{name} is missing an argument: its centre is a point or ra, dec"),
        )
        .hint(format!("write {usage}")));
    }
    Ok(())
}
