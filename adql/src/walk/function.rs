//! Function calls: ADQL 2.1's, the geometry (rewritten as the engine's UDFs),
//! and IN_UNIT.

use sqlparser::ast::{
    BinaryOperator, CastKind, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, Spanned,
};
use sqlparser::tokenizer::Span;

use crate::Error;
use crate::functions::{nearest, udf, unit_factor};
use std::collections::HashSet;

use super::*;

impl Walker<'_> {
    pub(super) fn function(&mut self, e: &mut Expr, span: Span) -> Result<()> {
        let Expr::Function(f) = e else { return Ok(()) };
        let name_span = f.name.span();
        if f.name.0.len() != 1 {
            return Err(Error::at(name_span, format!("unknown function {}", f.name)));
        }
        let name = f.name.to_string();
        let upper = name.trim_matches('"').to_uppercase();
        if f.uses_odbc_syntax
            || !matches!(f.parameters, FunctionArguments::None)
            || f.filter.is_some()
            || f.null_treatment.is_some()
            || !f.within_group.is_empty()
        {
            return Err(not_adql(span, &format!("this form of {upper}")));
        }
        if f.over.is_some() {
            return Err(not_adql(span, "window functions (OVER)"));
        }
        let aggregate = matches!(upper.as_str(), "COUNT" | "AVG" | "MIN" | "MAX" | "SUM");
        let list = match &mut f.args {
            FunctionArguments::List(l) => l,
            FunctionArguments::None => {
                return Err(Error::at(name_span, format!("{upper} needs parentheses")));
            }
            FunctionArguments::Subquery(_) => {
                return Err(not_adql(span, "a subquery as the only argument"));
            }
        };
        if !list.clauses.is_empty() {
            return Err(not_adql(span, &format!("this clause in {upper}(...)")));
        }
        if list.duplicate_treatment.is_some() && !aggregate {
            return Err(not_adql(span, &format!("DISTINCT in {upper}(...)")));
        }
        let mut star = false;
        let mut args = Vec::with_capacity(list.args.len());
        let n = list.args.len();
        // Each argument is a step, a literal one too: a POLYGON's vertices are
        // each visited for every row.
        if self.collecting() {
            self.count(n, name_span)?;
        }
        for (i, a) in list.args.iter_mut().enumerate() {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => {
                    // The planner writes COALESCE(a, b) as CASE WHEN a IS NOT NULL
                    // THEN a ELSE b END: every argument but the last, twice.
                    let copies = u32::from(upper == "COALESCE" && i + 1 < n);
                    self.copied(copies, |w| w.expr(x))?;
                    args.push(x.clone());
                }
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if upper == "COUNT" => star = true,
                _ => return Err(not_adql(span, &format!("this argument to {upper}"))),
            }
        }
        if self.collecting() {
            let steps = geometry_steps(&upper, &args);
            let copies = self.copy_count();
            self.geometry_steps = self
                .geometry_steps
                .saturating_add(steps.saturating_mul(copies));
        }
        let arity = |ok: &[usize]| -> Result<()> {
            if ok.contains(&args.len()) {
                Ok(())
            } else {
                Err(Error::at(
                    name_span,
                    format!(
                        "{upper} takes {} argument{}, not {}",
                        ok.iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(" or "),
                        if ok == [1] { "" } else { "s" },
                        args.len()
                    ),
                ))
            }
        };
        let simple = match upper.as_str() {
            "ABS" => Some(("abs", &[1][..])),
            "CEILING" => Some(("ceil", &[1][..])),
            "DEGREES" => Some(("degrees", &[1][..])),
            "EXP" => Some(("exp", &[1][..])),
            "FLOOR" => Some(("floor", &[1][..])),
            // ADQL's LOG is the natural logarithm.
            "LOG" => Some(("ln", &[1][..])),
            "LOG10" => Some(("log10", &[1][..])),
            "PI" => Some(("pi", &[0][..])),
            "POWER" => Some(("power", &[2][..])),
            "RADIANS" => Some(("radians", &[1][..])),
            "ROUND" => Some(("round", &[1, 2][..])),
            "SQRT" => Some(("sqrt", &[1][..])),
            "TRUNCATE" => Some(("trunc", &[1, 2][..])),
            "ACOS" => Some(("acos", &[1][..])),
            "ASIN" => Some(("asin", &[1][..])),
            "ATAN" => Some(("atan", &[1][..])),
            "ATAN2" => Some(("atan2", &[2][..])),
            "COS" => Some(("cos", &[1][..])),
            "COT" => Some(("cot", &[1][..])),
            "SIN" => Some(("sin", &[1][..])),
            "TAN" => Some(("tan", &[1][..])),
            "LOWER" => Some(("lower", &[1][..])),
            "UPPER" => Some(("upper", &[1][..])),
            "COUNT" => Some(("count", &[0, 1][..])),
            "AVG" => Some(("avg", &[1][..])),
            "MIN" => Some(("min", &[1][..])),
            "MAX" => Some(("max", &[1][..])),
            "SUM" => Some(("sum", &[1][..])),
            _ => None,
        };
        if let Some((engine, ok)) = simple {
            if upper == "COUNT" {
                // COUNT(*) or COUNT(x), nothing else.
                if star != args.is_empty() || args.len() > 1 {
                    return Err(Error::at(name_span, "COUNT takes * or one argument"));
                }
            } else {
                arity(ok)?;
            }
            f.name = ObjectName::from(vec![Ident::new(engine)]);
            if matches!(upper.as_str(), "ROUND" | "TRUNCATE")
                && let FunctionArguments::List(l) = &mut f.args
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(n))) = l.args.get_mut(1)
            {
                // ADQL's n is an integer; the engine has no signature for a real one.
                *n = Expr::Cast {
                    kind: CastKind::Cast,
                    expr: Box::new(n.clone()),
                    data_type: sqlparser::ast::DataType::BigInt(None),
                    array: false,
                    format: None,
                };
            }
            return Ok(());
        }
        if self.collecting() {
            // Structure is checked in the rewrite pass, once names are known.
            return match upper.as_str() {
                "MOD" | "RAND" | "COALESCE" | "IN_UNIT" | "POINT" | "CIRCLE" | "BOX"
                | "POLYGON" | "REGION" | "CONTAINS" | "INTERSECTS" | "DISTANCE" | "AREA"
                | "CENTROID" | "COORD1" | "COORD2" | "COORDSYS" | "IVO_HEALPIX_INDEX"
                | "IVO_HEALPIX_CENTER" => Ok(()),
                _ => Err(self.unknown_function(&name, name_span)),
            };
        }
        let new = match upper.as_str() {
            "MOD" => {
                arity(&[2])?;
                Expr::Nested(Box::new(Expr::BinaryOp {
                    left: Box::new(args[0].clone()),
                    op: BinaryOperator::Modulo,
                    right: Box::new(args[1].clone()),
                }))
            }
            "RAND" => {
                if !args.is_empty() {
                    return Err(Error::at(name_span, "RAND with a seed is not supported")
                        .hint("use RAND() without an argument"));
                }
                call("random", vec![])
            }
            "COALESCE" => {
                if args.is_empty() {
                    return Err(Error::at(name_span, "COALESCE takes at least one argument"));
                }
                call("coalesce", args)
            }
            "IN_UNIT" => {
                arity(&[2])?;
                self.in_unit(&args[0], &args[1], name_span)?
            }
            "POINT" => {
                let a = coordsys(args, &[2], &upper, name_span)?;
                call(udf::POINT, a)
            }
            "CIRCLE" => {
                let a = coordsys(args, &[2, 3], &upper, name_span)?;
                check_numbers(&a, &upper)?;
                check_centre(&a, 1, &upper, "CIRCLE('ICRS', ra, dec, radius)", name_span)?;
                call(udf::CIRCLE, flatten_points(a, 1))
            }
            "BOX" => {
                let a = coordsys(args, &[3, 4], &upper, name_span)?;
                check_numbers(&a, &upper)?;
                check_centre(
                    &a,
                    2,
                    &upper,
                    "BOX('ICRS', ra, dec, width, height)",
                    name_span,
                )?;
                call(udf::BOX, flatten_points(a, 2))
            }
            "POLYGON" => {
                let mut a = args;
                strip_coordsys(&mut a)?;
                let vertices: Vec<Expr> = if a.iter().any(is_point) || a.len() < 6 {
                    if a.len() < 3 {
                        return Err(Error::at(
                            name_span,
                            "POLYGON needs at least three vertices",
                        ));
                    }
                    a.into_iter()
                        .flat_map(|p| {
                            let (x, y) = split_point(p);
                            [x, y]
                        })
                        .collect()
                } else {
                    if a.len() % 2 != 0 {
                        return Err(Error::at(
                            name_span,
                            "POLYGON takes pairs of coordinates (ra1, dec1, ra2, dec2, ...)",
                        ));
                    }
                    a
                };
                // Comparing two polygons costs the product of their vertices, on
                // every row, inside one batch: two of 2 000 kept a core busy 9 s
                // past a 5 s deadline.
                if vertices.len() / 2 > crate::MAX_POLYGON_VERTICES {
                    return Err(Error::at(
                        name_span,
                        format!(
                            "a POLYGON may have at most {} vertices",
                            crate::MAX_POLYGON_VERTICES
                        ),
                    )
                    .hint("simplify the outline, or cover it with several shapes joined with OR"));
                }
                call(udf::POLYGON, vertices)
            }
            "REGION" => {
                return Err(Error::at(name_span, "REGION is not supported")
                    .hint("write the shape with POINT, CIRCLE, BOX or POLYGON"));
            }
            "CONTAINS" | "INTERSECTS" => {
                arity(&[2])?;
                let (a, b) = (args[0].clone(), args[1].clone());
                let circle = |x: &Expr| {
                    call_args(x, udf::CIRCLE)
                        .filter(|c| c.len() == 3)
                        .map(|c| c.into_iter().cloned().collect::<Vec<_>>())
                };
                let cone = |p: Expr, c: Vec<Expr>| {
                    let (x, y) = split_point(p);
                    call(
                        udf::CONE,
                        vec![x, y, c[0].clone(), c[1].clone(), c[2].clone()],
                    )
                };
                if is_point(&a)
                    && let Some(c) = circle(&b)
                {
                    cone(a, c)
                } else if upper == "INTERSECTS"
                    && is_point(&b)
                    && let Some(c) = circle(&a)
                {
                    cone(b, c)
                } else if upper == "INTERSECTS" && is_point(&b) {
                    call(udf::CONTAINS, vec![b, a])
                } else if upper == "INTERSECTS" && !is_point(&a) {
                    call(udf::INTERSECTS, vec![a, b])
                } else {
                    call(udf::CONTAINS, vec![a, b])
                }
            }
            "DISTANCE" => {
                arity(&[2, 4])?;
                let four = if args.len() == 4 {
                    args
                } else {
                    let (a, b) = split_point(args[0].clone());
                    let (c, d) = split_point(args[1].clone());
                    vec![a, b, c, d]
                };
                call(udf::DISTANCE, four)
            }
            "AREA" => {
                arity(&[1])?;
                call(udf::AREA, args)
            }
            "CENTROID" => {
                arity(&[1])?;
                call(udf::CENTROID, args)
            }
            "COORD1" | "COORD2" => {
                arity(&[1])?;
                let (x, y) = split_point(args[0].clone());
                if upper == "COORD1" { x } else { y }
            }
            "COORDSYS" => {
                arity(&[1])?;
                string("ICRS")
            }
            "IVO_HEALPIX_INDEX" => {
                arity(&[2, 3])?;
                if args.len() == 2 && !is_point(&args[1]) {
                    return Err(Error::at(
                        name_span,
                        "IVO_HEALPIX_INDEX takes the order and a position: (order, point) or \
                         (order, ra, dec)",
                    )
                    .hint("write ivo_healpix_index(10, ra, dec)"));
                }
                let mut a = args;
                if a.len() == 2 {
                    let (x, y) = split_point(a.pop().unwrap_or_else(|| number(0)));
                    a.push(x);
                    a.push(y);
                }
                call(udf::HEALPIX_INDEX, a)
            }
            "IVO_HEALPIX_CENTER" => {
                arity(&[2])?;
                call(udf::HEALPIX_CENTER, args)
            }
            _ => return Err(self.unknown_function(&name, name_span)),
        };
        *e = new;
        Ok(())
    }

    pub(super) fn unknown_function(&self, name: &str, span: Span) -> Error {
        let near = nearest(name, crate::FUNCTIONS.iter().map(|f| f.name));
        let e = Error::at(span, format!("unknown function {name}"));
        if near.is_empty() {
            e.hint("ADQL functions and the service's UDFs are listed in its capabilities")
        } else {
            e.hint(format!("did you mean {}?", near.join(", ")))
        }
    }

    /// `IN_UNIT(column, 'unit')`: the column times the factor from its unit to the one asked for.
    pub(super) fn in_unit(&self, value: &Expr, unit: &Expr, span: Span) -> Result<Expr> {
        let Some(to) = literal_string(unit) else {
            return Err(Error::at(
                unit.span(),
                "IN_UNIT takes the unit as a string literal",
            ));
        };
        let column = match value {
            Expr::Identifier(id) => id,
            Expr::CompoundIdentifier(ids) if !ids.is_empty() => &ids[ids.len() - 1],
            _ => {
                return Err(Error::at(
                    value.span(),
                    "IN_UNIT converts a column; its unit must be known",
                ));
            }
        };
        let units: HashSet<Option<&str>> = self
            .read
            .iter()
            .flat_map(|&i| self.tables[i].columns.iter())
            .filter(|c| c.name == column.value)
            .map(|c| c.unit.as_deref())
            .collect();
        let from = match units.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(u)] => u.to_string(),
            [None] => {
                return Err(Error::at(
                    span,
                    format!("column {} has no unit", column.value),
                ));
            }
            [] => {
                return Err(Error::at(
                    value.span(),
                    "IN_UNIT converts a column; its unit must be known",
                ));
            }
            _ => {
                return Err(Error::at(
                    span,
                    format!(
                        "column {} has different units in different tables",
                        column.value
                    ),
                ));
            }
        };
        let Some(factor) = unit_factor(&from, to) else {
            return Err(Error::at(
                unit.span(),
                format!("cannot convert {} from '{from}' to '{to}'", column.value),
            ));
        };
        Ok(Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(value.clone()),
            op: BinaryOperator::Multiply,
            right: Box::new(number(format!("{factor:e}"))),
        })))
    }
}

/// A call of an engine function (lower-case, unquoted, so the planner finds it).
pub(super) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// The arguments of a call of `name` built by [`call`].
pub(super) fn call_args<'e>(e: &'e Expr, name: &str) -> Option<Vec<&'e Expr>> {
    let Expr::Function(f) = e else { return None };
    if f.name.0.len() != 1 || f.name.to_string() != name {
        return None;
    }
    let FunctionArguments::List(l) = &f.args else {
        return None;
    };
    l.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}
