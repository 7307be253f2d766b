//! ADQL's types, checked before DataFusion coerces anything: an analyzer rule
//! that runs ahead of type coercion.
//!
//! ADQL has no booleans: the catalog's flag columns (and an upload's `bit` or
//! `boolean` columns) compare with 1 and 0, so a boolean operand against a
//! number reads as that number. Text is not a number: DataFusion would cast
//! `band = 1` to `CAST(band AS BIGINT) = 1` and fail row by row while reading
//! (an error about storage, at no position); here it is refused before
//! anything runs, naming the column.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, plan_err};
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule.
#[derive(Debug, Default)]
pub(crate) struct AdqlTypes;

impl AnalyzerRule for AdqlTypes {
    fn name(&self) -> &str {
        "adql_types"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let mut schema = merge_schema(&node.inputs());
            if let LogicalPlan::TableScan(scan) = &node {
                schema.merge(&scan.projected_schema);
            }
            node.map_expressions(|e| e.transform_up(|e| check(e, &schema)))
        })
        .map(|t| t.data)
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric()
}

/// What a user calls an operand in a message: a column by its name, else the expression.
fn named(e: &Expr) -> String {
    match e {
        Expr::Column(c) => format!("'{}'", c.name),
        Expr::Literal(v, _) if is_text(&v.data_type()) => format!("'{v}'"),
        Expr::Literal(v, _) => v.to_string(),
        other => format!("'{other}'"),
    }
}

fn check(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::Plus
                    | Operator::Minus
                    | Operator::Multiply
                    | Operator::Divide
                    | Operator::Modulo
            ) =>
        {
            let (Ok(lt), Ok(rt)) = (left.get_type(schema), right.get_type(schema)) else {
                return Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                })));
            };
            if (is_text(&lt) && is_number(&rt)) || (is_number(&lt) && is_text(&rt)) {
                let (text, number) = if is_text(&lt) {
                    (&left, &right)
                } else {
                    (&right, &left)
                };
                return plan_err!(
                    "{} is text and {} is a number: {op} does not apply to the two \
                     (compare text with text, e.g. band = 'g', or convert with CAST)",
                    named(text),
                    named(number)
                );
            }
            let as_number = |side: Box<Expr>, t: &DataType| -> Box<Expr> {
                if t == &DataType::Boolean {
                    Box::new(Expr::Cast(Cast::new(side, DataType::Int64)))
                } else {
                    side
                }
            };
            if (lt == DataType::Boolean && is_number(&rt))
                || (is_number(&lt) && rt == DataType::Boolean)
            {
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                    left: as_number(left, &lt),
                    op,
                    right: as_number(right, &rt),
                })));
            }
            Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                left,
                op,
                right,
            })))
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let Ok(t) = expr.get_type(schema) else {
                return Ok(Transformed::no(Expr::InList(InList {
                    expr,
                    list,
                    negated,
                })));
            };
            let numbers = list
                .iter()
                .filter_map(|v| v.get_type(schema).ok())
                .any(|v| is_number(&v));
            let texts = list
                .iter()
                .filter_map(|v| v.get_type(schema).ok())
                .any(|v| is_text(&v));
            if (is_text(&t) && numbers) || (is_number(&t) && texts) {
                return plan_err!(
                    "{} is {} and the IN list holds {}: compare like with like",
                    named(&expr),
                    if is_text(&t) { "text" } else { "a number" },
                    if is_text(&t) { "numbers" } else { "text" }
                );
            }
            if t == DataType::Boolean && numbers {
                return Ok(Transformed::yes(Expr::InList(InList {
                    expr: Box::new(Expr::Cast(Cast::new(expr, DataType::Int64))),
                    list,
                    negated,
                })));
            }
            Ok(Transformed::no(Expr::InList(InList {
                expr,
                list,
                negated,
            })))
        }
        Expr::Like(like) => {
            if let Ok(t) = like.expr.get_type(schema)
                && !is_text(&t)
                && t != DataType::Null
            {
                return plan_err!(
                    "{} is not text: LIKE matches text; CAST it to VARCHAR first",
                    named(&like.expr)
                );
            }
            Ok(Transformed::no(Expr::Like(like)))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// The analyzer rules of a session: this one first, then DataFusion's own,
/// then checked integer arithmetic and sort keys without repeats.
pub(crate) fn analyzer_rules() -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
    let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![Arc::new(AdqlTypes)];
    rules.extend(datafusion::optimizer::Analyzer::new().rules);
    // After type coercion: each operator's operands have one type by then.
    rules.push(Arc::new(crate::plan::checked::CheckedIntegers));
    rules.push(Arc::new(crate::plan::sort_keys::DistinctSortKeys));
    rules
}
