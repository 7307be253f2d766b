//! Sort keys that repeat an earlier key are dropped before planning.
//!
//! A pinned query orders by every output column, and a select list may name
//! one column hundreds of times under different aliases (or spellings): the
//! sort then had hundreds of keys that are all one value, and DataFusion's
//! ordering analysis grows with the cube of that count (600 aliases of `ra`
//! took 9 s to plan, 1 000 took a minute, on the async workers, so the whole
//! service stopped answering). A key whose value equals an earlier key's in
//! every row (seen through aliases, subqueries and union branches) cannot
//! change the order: rows it would separate are already tied on an equal
//! value. Dropping it leaves the order, and so every pinned result and
//! checksum, exactly as it was.

use std::collections::HashSet;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, JoinType, Result};
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan, Sort, SortExpr};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule.
#[derive(Debug, Default)]
pub(crate) struct DistinctSortKeys;

impl AnalyzerRule for DistinctSortKeys {
    fn name(&self) -> &str {
        "distinct_sort_keys"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::Sort(sort) => distinct(sort).map(|t| t.update_data(LogicalPlan::Sort)),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }
}

/// For each output column of `plan`, a description of its value such that
/// two columns with one description hold equal values in every row: through
/// aliases, subqueries, filters, limits, joins and the branches of a union
/// (equal there only if equal in every branch). Columns this cannot see
/// through get a description of their own.
fn classes(plan: &LogicalPlan) -> Vec<String> {
    let own = |n: usize| -> Vec<String> {
        let at = std::ptr::from_ref(plan) as usize;
        (0..n).map(|i| format!("#{at:x}.{i}")).collect()
    };
    match plan {
        LogicalPlan::Projection(p) => {
            let input = classes(&p.input);
            p.expr
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    describe(e, &input, p.input.schema()).unwrap_or_else(|| own(i + 1)[i].clone())
                })
                .collect()
        }
        LogicalPlan::SubqueryAlias(s) => classes(&s.input),
        LogicalPlan::Filter(f) => classes(&f.input),
        LogicalPlan::Sort(s) => classes(&s.input),
        LogicalPlan::Limit(l) => classes(&l.input),
        LogicalPlan::Distinct(Distinct::All(input)) => classes(input),
        LogicalPlan::Union(u) => {
            let branches: Vec<Vec<String>> = u.inputs.iter().map(|i| classes(i)).collect();
            (0..plan.schema().fields().len())
                .map(|i| {
                    let parts: Vec<&str> = branches
                        .iter()
                        .map(|b| b.get(i).map_or("?", String::as_str))
                        .collect();
                    format!("union({})", parts.join("|"))
                })
                .collect()
        }
        LogicalPlan::Join(j)
            if matches!(
                j.join_type,
                JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
            ) =>
        {
            let mut out = classes(&j.left);
            out.extend(classes(&j.right));
            out
        }
        other => own(other.schema().fields().len()),
    }
}

/// The description of `e`'s value over an input whose columns are described
/// by `input`; `None` for a value that changes at each mention (RAND()).
fn describe(e: &Expr, input: &[String], schema: &DFSchema) -> Option<String> {
    let e = e.clone().unalias_nested().data;
    if e.is_volatile() {
        return None;
    }
    let named = e
        .transform(|x| match &x {
            Expr::Column(c) => match schema.index_of_column(c).ok().and_then(|i| input.get(i)) {
                // A placeholder, which no ADQL text can spell, stands for the class.
                Some(class) => Ok(Transformed::yes(Expr::Placeholder(
                    Placeholder::new_with_field(format!("${class}"), None),
                ))),
                None => Ok(Transformed::no(x)),
            },
            _ => Ok(Transformed::no(x)),
        })
        .ok()?
        .data;
    Some(named.to_string())
}

fn distinct(sort: Sort) -> Result<Transformed<Sort>> {
    let input = classes(&sort.input);
    let mut seen: HashSet<String> = HashSet::new();
    let mut kept: Vec<SortExpr> = Vec::with_capacity(sort.expr.len());
    for key in &sort.expr {
        let what = describe(&key.expr, &input, sort.input.schema());
        // A key equal to an earlier one separates no rows the earlier did not.
        if let Some(what) = what
            && !seen.insert(what)
        {
            continue;
        }
        kept.push(key.clone());
    }
    if kept.len() == sort.expr.len() {
        return Ok(Transformed::no(sort));
    }
    Ok(Transformed::yes(Sort {
        expr: kept,
        input: sort.input,
        fetch: sort.fetch,
    }))
}
