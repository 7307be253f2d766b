//! Expressions: literals, operators, CASE, CAST, IN, BETWEEN, LIKE, and what
//! ADQL does not have.

use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DataType, DateTimeField, Expr, Spanned, UnaryOperator,
    Value, ValueWithSpan,
};
use sqlparser::tokenizer::Span;

use crate::Error;

use super::*;

impl Walker<'_> {
    /// Checks (and in the rewriting pass rewrites) one expression, counting
    /// its operations and how deep its operators nest.
    pub(super) fn expr(&mut self, e: &mut Expr) -> Result<()> {
        if !self.collecting() {
            return self.expr_node(e);
        }
        if !matches!(
            e,
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Nested(_) | Expr::Value(_)
        ) {
            self.count(1, e.span())?;
        }
        let nests = match e {
            Expr::BinaryOp { op, .. } => !matches!(op, BinaryOperator::And | BinaryOperator::Or),
            Expr::Function(_) | Expr::UnaryOp { .. } => true,
            _ => false,
        };
        if !nests {
            return self.expr_node(e);
        }
        if self.nesting == MAX_NESTING {
            // An operator's place is its right operand's: in a chain the left
            // one starts where the whole chain does.
            let place = match e {
                Expr::BinaryOp { right, .. } => right.span(),
                e => e.span(),
            };
            return Err(Error::at(
                place,
                format!(
                    "functions and operators nest at most {MAX_NESTING} deep (a chain \
                     a + b + c ... nests one level per operator); this one is one too deep"
                ),
            )
            .hint("compute part of the expression in a subquery, or group a long chain with parentheses"));
        }
        self.nesting += 1;
        let walked = self.expr_node(e);
        self.nesting -= 1;
        walked
    }

    fn expr_node(&mut self, e: &mut Expr) -> Result<()> {
        let span = e.span();
        if self.copies > MAX_COPIES {
            return Err(Error::at(
                span,
                format!(
                    "this expression would be copied more than 2^{MAX_COPIES} times once \
                     planned (COALESCE copies its arguments but the last, BETWEEN and IN \
                     their first operand)"
                ),
            )
            .hint("nest COALESCE in its last argument, or compute the value once in a subquery"));
        }
        match e {
            Expr::Identifier(id) => self.resolve(id),
            Expr::CompoundIdentifier(ids) => {
                if ids.len() == 4 {
                    // catalog.schema.table.column: the one catalog goes without saying.
                    ids.remove(0);
                }
                if let [.., qualifier, column] = ids.as_mut_slice()
                    && !self.collecting()
                {
                    self.check_alias(column)?;
                    if self.resolve_qualified(qualifier, column)? {
                        let n = ids.len();
                        for id in &mut ids[..n - 1] {
                            self.resolve(id)?;
                        }
                        return Ok(());
                    }
                }
                for id in ids {
                    self.resolve(id)?;
                }
                Ok(())
            }
            Expr::Value(v) => match &v.value {
                Value::Number(..) | Value::SingleQuotedString(_) | Value::Null => Ok(()),
                Value::HexStringLiteral(h) => {
                    let n = i64::from_str_radix(h, 16).map_err(|_| {
                        Error::at(span, format!("hex literal 0x{h} does not fit in 64 bits"))
                    })?;
                    *e = number(n);
                    Ok(())
                }
                Value::Boolean(_) => Err(not_adql(span, "TRUE/FALSE")
                    .hint("compare with 1 and 0, e.g. CONTAINS(...) = 1")),
                Value::Placeholder(p) => Err(not_adql(span, &format!("parameter {p}"))),
                _ => Err(not_adql(span, "this literal")),
            },
            Expr::BinaryOp { left, op, right } => {
                match op {
                    BinaryOperator::Plus
                    | BinaryOperator::Minus
                    | BinaryOperator::Multiply
                    | BinaryOperator::Divide
                    | BinaryOperator::StringConcat
                    | BinaryOperator::Gt
                    | BinaryOperator::Lt
                    | BinaryOperator::GtEq
                    | BinaryOperator::LtEq
                    | BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::And
                    | BinaryOperator::Or
                    | BinaryOperator::BitwiseAnd
                    | BinaryOperator::BitwiseOr
                    | BinaryOperator::BitwiseXor => {}
                    BinaryOperator::Modulo => {
                        return Err(not_adql(span, "the % operator").hint("use MOD(x, y)"));
                    }
                    other => return Err(not_adql(span, &format!("the operator {other}"))),
                }
                self.expr(left)?;
                self.expr(right)?;
                if !self.collecting() && (is_geometry(left) || is_geometry(right)) {
                    return Err(Error::at(
                        span,
                        format!("the operator {op} does not apply to a geometry"),
                    )
                    .hint("geometries go into CONTAINS, INTERSECTS, DISTANCE, AREA, COORD1, ..."));
                }
                Ok(())
            }
            Expr::UnaryOp { op, expr } => {
                if !matches!(
                    op,
                    UnaryOperator::Plus
                        | UnaryOperator::Minus
                        | UnaryOperator::Not
                        | UnaryOperator::BitwiseNot
                ) {
                    return Err(not_adql(span, &format!("the operator {op}")));
                }
                self.expr(expr)?;
                if *op == UnaryOperator::BitwiseNot && !self.collecting() {
                    // The planner has no bitwise NOT; on two's-complement integers ~x = -x - 1.
                    let x = std::mem::replace(&mut **expr, number(0));
                    *e = Expr::Nested(Box::new(Expr::BinaryOp {
                        left: Box::new(Expr::UnaryOp {
                            op: UnaryOperator::Minus,
                            expr: Box::new(Expr::Nested(Box::new(x))),
                        }),
                        op: BinaryOperator::Minus,
                        right: Box::new(number(1)),
                    }));
                }
                Ok(())
            }
            Expr::Nested(inner) | Expr::IsNull(inner) | Expr::IsNotNull(inner) => self.expr(inner),
            Expr::Between {
                expr, low, high, ..
            } => {
                self.copied(1, |w| w.expr(expr))?;
                self.expr(low)?;
                self.expr(high)
            }
            Expr::InList { expr, list, .. } => {
                // A short list becomes one comparison per value.
                let copies = if list.len() > 1 { 2 } else { 0 };
                self.copied(copies, |w| w.expr(expr))?;
                for x in list {
                    self.expr(x)?;
                }
                Ok(())
            }
            Expr::InSubquery { expr, subquery, .. } => {
                self.expr(expr)?;
                self.query(subquery)
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => self.query(subquery),
            Expr::Like {
                any,
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                any,
                expr,
                pattern,
                escape_char,
                ..
            } => {
                if *any {
                    return Err(not_adql(span, "LIKE ANY"));
                }
                // DataFusion escapes with a backslash only; it refused any
                // other while running, at no position.
                if let Some(escape) = escape_char
                    && !matches!(&escape.value, Value::SingleQuotedString(c) if c == "\\")
                {
                    return Err(Error::at(
                        escape.span,
                        "ESCAPE takes only a backslash here ('\\')",
                    )
                    .hint("write the pattern with \\% or \\_ for a literal % or _"));
                }
                self.expr(expr)?;
                self.check_pattern(pattern)?;
                self.expr(pattern)
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(o) = operand {
                    self.expr(o)?;
                }
                for c in conditions {
                    self.expr(&mut c.condition)?;
                    self.expr(&mut c.result)?;
                }
                if let Some(x) = else_result {
                    self.expr(x)?;
                }
                Ok(())
            }
            Expr::Cast {
                kind,
                expr,
                data_type,
                array,
                format,
            } => {
                if *kind != CastKind::Cast || *array || format.is_some() {
                    return Err(not_adql(span, "this form of CAST").hint("use CAST(x AS type)"));
                }
                check_cast_type(data_type, span)?;
                self.expr(expr)
            }
            Expr::Ceil { expr, field } | Expr::Floor { expr, field } => {
                if !matches!(
                    field,
                    CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)
                ) {
                    return Err(not_adql(span, "CEILING/FLOOR with a second argument"));
                }
                self.expr(expr)
            }
            Expr::Function(_) => self.function(e, span),
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => Err(not_adql(span, "* here")),
            Expr::Trim { .. } | Expr::Substring { .. } | Expr::Position { .. } => {
                Err(not_adql(span, "this string function"))
            }
            Expr::Interval(_) | Expr::TypedString(_) | Expr::Extract { .. } => {
                Err(not_adql(span, "this date/time syntax"))
            }
            Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotUnknown(_)
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..) => {
                Err(not_adql(span, "this IS form").hint("ADQL has IS NULL and IS NOT NULL"))
            }
            Expr::SimilarTo { .. } | Expr::RLike { .. } => {
                Err(not_adql(span, "this pattern match").hint("use LIKE or ILIKE"))
            }
            _ => Err(not_adql(span, "this expression")),
        }
    }
}

/// The quoted parts of a LIKE pattern (through `||` and parentheses), and
/// whether anything else (a column, a function) makes part of it.
fn pattern_parts<'e>(e: &'e Expr, parts: &mut Vec<&'e str>) -> bool {
    match e {
        Expr::Nested(inner) => pattern_parts(inner, parts),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } => pattern_parts(left, parts) | pattern_parts(right, parts),
        e => match literal_string(e) {
            Some(text) => {
                parts.push(text);
                false
            }
            None => true,
        },
    }
}

impl Walker<'_> {
    /// Refuses a LIKE pattern whose matching could outlast any deadline. A
    /// pattern with wildcards inside is matched as a regular expression, at a
    /// cost per row of up to its length times the text's, in one step nothing
    /// stops between: `%a` 8 000 times against 30 000 characters kept both
    /// cores busy for 93 s past a 5 s deadline. The quoted parts of a pattern
    /// may have at most [`crate::MAX_LIKE_PATTERN`] characters and
    /// [`crate::MAX_LIKE_WILDCARDS`] wildcards; a pattern taken from a column is
    /// refused where the query reads an upload, whose values are the caller's.
    fn check_pattern(&mut self, pattern: &Expr) -> Result<()> {
        let span = pattern.span();
        let mut parts = Vec::new();
        let derived = pattern_parts(pattern, &mut parts);
        let chars: usize = parts.iter().map(|p| p.chars().count()).sum();
        if let Err(refusal) = crate::like_pattern_fits(&parts.concat()) {
            let hint = if refusal.contains("_ wildcards") {
                "match a run of characters with %"
            } else {
                "split the match into several LIKE conditions joined with AND"
            };
            return Err(Error::at(span, refusal).hint(hint));
        }
        // Matching costs the pattern's length on every character of the text:
        // it counts as that many operations in a row's cost, and a pattern
        // made by an expression (checked as the query runs) as the longest.
        if self.collecting() {
            let weight = if derived {
                crate::MAX_LIKE_PATTERN
            } else {
                chars
            };
            self.count(weight, span)?;
        }
        let uploads = self
            .read
            .iter()
            .any(|&i| self.tables[i].schema.eq_ignore_ascii_case("TAP_UPLOAD"));
        if derived && uploads {
            return Err(Error::at(
                span,
                "a LIKE pattern taken from a column cannot be used in a query that reads an upload",
            )
            .hint("write the pattern as a literal, such as 'NGC%'"));
        }
        Ok(())
    }
}

pub(super) fn number(n: impl ToString) -> Expr {
    Expr::Value(ValueWithSpan {
        value: Value::Number(n.to_string(), false),
        span: Span::empty(),
    })
}

pub(super) fn string(s: &str) -> Expr {
    Expr::Value(ValueWithSpan {
        value: Value::SingleQuotedString(s.to_string()),
        span: Span::empty(),
    })
}

pub(super) fn literal_string(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s),
            ..
        }) => Some(s),
        _ => None,
    }
}

pub(super) fn check_cast_type(t: &DataType, span: Span) -> Result<()> {
    match t {
        DataType::SmallInt(None)
        | DataType::Int(None)
        | DataType::Integer(None)
        | DataType::BigInt(None)
        | DataType::Real
        | DataType::DoublePrecision
        | DataType::Char(_)
        | DataType::Character(_)
        | DataType::Varchar(_)
        | DataType::CharacterVarying(_)
        | DataType::Timestamp(None, _) => Ok(()),
        other => Err(Error::at(span, format!("CAST to {other} is not part of ADQL"))
            .hint("ADQL casts to SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, CHAR(n), VARCHAR(n) or TIMESTAMP")),
    }
}

/// The most doublings an expression may go through as the planner writes out
/// the operands COALESCE, BETWEEN and IN copy: nested in such operands, an
/// expression doubles at every level (21 nested COALESCEs took a server past
/// 3 GB in six seconds of planning no deadline reaches); 2^12 copies plan in
/// well under a second.
pub(super) const MAX_COPIES: u32 = 12;

impl Walker<'_> {
    /// Counts `n` operations of the expression at `span`, once for each copy
    /// the planner will write of it; past [`MAX_OPERATIONS`] the query is refused.
    pub(super) fn count(&mut self, n: usize, span: Span) -> Result<()> {
        let copies = self.copy_count();
        self.operations = self.operations.saturating_add(n.saturating_mul(copies));
        if self.operations > MAX_OPERATIONS {
            return Err(Error::at(
                span,
                format!(
                    "the query has more than {MAX_OPERATIONS} operations (operators, function \
                     calls and their arguments, CASE, CAST; counted once for each copy the \
                     planner makes); this one is past the limit"
                ),
            )
            .hint("split the query, or upload a table of values and join it"));
        }
        Ok(())
    }

    /// How many copies of the expression being walked the planner will write.
    pub(super) fn copy_count(&self) -> usize {
        1usize.checked_shl(self.copies).unwrap_or(usize::MAX)
    }

    /// Walks an operand the planner writes out 2^`doublings` times.
    pub(super) fn copied(
        &mut self,
        doublings: u32,
        walk: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        self.copies += doublings;
        let walked = walk(self);
        self.copies -= doublings;
        walked
    }
}
