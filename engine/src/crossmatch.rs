//! Spatial pruning for joins against uploaded target lists.
//!
//! A crossmatch (`ppdb.DiaObject AS o JOIN TAP_UPLOAD.targets AS t ON
//! CONTAINS(POINT(o.ra, o.dec), CIRCLE(t.ra, t.dec, r)) = 1`) has no
//! constant cone for the scan to prune with: the circles are rows of the
//! upload. Once the plan is optimised, the upload side of such a join is small
//! and already in memory, so it is run, its circles are read, and the catalog
//! scan on the other side is given their union as a hint (files, row groups and
//! `_healpix_29` ranges). The join keeps its exact predicate, and the hint is
//! only given where dropping rows that match no circle cannot change the
//! answer: the catalog side of an inner or semi join, or the side an outer or
//! anti join does not preserve.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, Join, LogicalPlan, TableScan};
use datafusion::physical_plan::collect;

use crate::provider::PpdbTable;
use crate::prune::{self, Sky};

/// The schema uploaded tables are read from.
pub(crate) const UPLOAD_SCHEMA: &str = "TAP_UPLOAD";

/// The most upload rows read for a hint; larger target lists are joined unpruned.
const MAX_TARGETS: usize = 1_000_000;

/// One catalog scan that a join lets be narrowed to the circles of an upload.
struct Found {
    /// Child positions from the root of the plan down to the scan.
    path: Vec<usize>,
    /// The upload side of the join, which the circles are computed over.
    targets: Arc<LogicalPlan>,
    /// Centre longitude, latitude and radius, over the upload side's columns.
    circle: [Expr; 3],
}

/// Gives every catalog scan that is crossmatched against an upload the sky its
/// circles cover. Plans without such a join come back unchanged.
pub(crate) async fn hint(plan: LogicalPlan, state: &SessionState) -> Result<LogicalPlan> {
    let mut found = Vec::new();
    find(&plan, &mut Vec::new(), &mut found)?;
    let mut plan = plan;
    for f in found {
        let Some(scan) = scan_at(&plan, &f.path) else {
            continue;
        };
        let Some(table) = ppdb_table(scan) else {
            continue;
        };
        let Some(sky) = circles(&f, state, table.partition_order()).await? else {
            continue;
        };
        plan = rewrite(plan, &f.path, &Arc::new(sky))?.data;
    }
    Ok(plan)
}

fn find(plan: &LogicalPlan, path: &mut Vec<usize>, found: &mut Vec<Found>) -> Result<()> {
    if let LogicalPlan::Join(j) = plan {
        join(j, path, found);
    }
    let mut i = 0;
    plan.apply_children(|child| {
        path.push(i);
        find(child, path, found)?;
        path.pop();
        i += 1;
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
}

/// Whether rows of one side (`left` or not) that match nothing may be dropped
/// before the join without changing what it returns.
fn may_narrow(j: &Join, left: bool) -> bool {
    if j.null_aware {
        return false;
    }
    match j.join_type {
        JoinType::Inner | JoinType::LeftSemi | JoinType::RightSemi => true,
        JoinType::Left | JoinType::LeftAnti => !left,
        JoinType::Right | JoinType::RightAnti => left,
        _ => false,
    }
}

fn join(j: &Join, path: &[usize], found: &mut Vec<Found>) {
    let Some(filter) = &j.filter else {
        return;
    };
    let mut parts = Vec::new();
    prune::conjuncts(filter, &mut parts);
    for part in parts {
        for near in prune::near(part) {
            let (Some(ra), Some(dec)) = (column(near.point[0]), column(near.point[1])) else {
                continue;
            };
            let circle = [near.centre[0], near.centre[1], near.radius];
            for (catalog, targets, index) in [(&j.left, &j.right, 0usize), (&j.right, &j.left, 1)] {
                let on_catalog =
                    catalog.schema().has_column(ra) && catalog.schema().has_column(dec);
                let on_targets = circle.iter().all(|e| {
                    e.column_refs()
                        .iter()
                        .all(|c| targets.schema().has_column(c))
                });
                if !(on_catalog && on_targets && may_narrow(j, index == 0) && is_upload(targets)) {
                    continue;
                }
                let (Some((ra_name, to_scan)), Some((dec_name, to_dec))) =
                    (trace(catalog, ra), trace(catalog, dec))
                else {
                    continue;
                };
                if ra_name != "ra" || dec_name != "dec" || to_scan != to_dec {
                    continue;
                }
                found.push(Found {
                    path: [path, &[index], &to_scan].concat(),
                    targets: targets.clone(),
                    circle: circle.map(Expr::clone),
                });
            }
        }
    }
}

fn column(e: &Expr) -> Option<&Column> {
    match e {
        Expr::Column(c) => Some(c),
        Expr::Cast(c) => column(&c.expr),
        _ => None,
    }
}

/// Whether a plan reads nothing but uploads (and constants): small, in memory.
fn is_upload(plan: &LogicalPlan) -> bool {
    let mut only_uploads = true;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(s) = p
            && s.table_name.schema() != Some(UPLOAD_SCHEMA)
        {
            only_uploads = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    only_uploads
}

/// Follows a column down through nodes that pass rows on one by one to the
/// catalog scan that reads it: the stored column name and the path to the scan.
fn trace(plan: &LogicalPlan, col: &Column) -> Option<(String, Vec<usize>)> {
    let mut plan = plan;
    let mut index = plan.schema().maybe_index_of_column(col)?;
    let mut path = Vec::new();
    loop {
        plan = match plan {
            LogicalPlan::SubqueryAlias(a) => &a.input,
            LogicalPlan::Filter(f) => &f.input,
            LogicalPlan::Sort(s) if s.fetch.is_none() => &s.input,
            LogicalPlan::Projection(p) => {
                let inner = match &p.expr[index] {
                    Expr::Column(c) => c,
                    Expr::Alias(a) => match a.expr.as_ref() {
                        Expr::Column(c) => c,
                        _ => return None,
                    },
                    _ => return None,
                };
                index = p.input.schema().maybe_index_of_column(inner)?;
                &p.input
            }
            LogicalPlan::TableScan(s) if s.fetch.is_none() && ppdb_table(s).is_some() => {
                return Some((s.projected_schema.field(index).name().clone(), path));
            }
            _ => return None,
        };
        path.push(0);
    }
}

fn ppdb_table(scan: &TableScan) -> Option<PpdbTable> {
    let provider = source_as_provider(&scan.source).ok()?;
    provider.downcast_ref::<PpdbTable>().cloned()
}

fn scan_at<'p>(plan: &'p LogicalPlan, path: &[usize]) -> Option<&'p TableScan> {
    match path.split_first() {
        None => match plan {
            LogicalPlan::TableScan(s) => Some(s),
            _ => None,
        },
        Some((i, rest)) => scan_at(plan.inputs().get(*i)?, rest),
    }
}

/// The plan with the scan at `path` told that its rows must lie in `sky`.
fn rewrite(plan: LogicalPlan, path: &[usize], sky: &Arc<Sky>) -> Result<Transformed<LogicalPlan>> {
    let Some((at, rest)) = path.split_first() else {
        let LogicalPlan::TableScan(scan) = plan else {
            return Ok(Transformed::no(plan));
        };
        let Some(table) = ppdb_table(&scan) else {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        };
        let source = provider_as_source(Arc::new(table.with_hint(sky.clone())));
        return Ok(Transformed::yes(LogicalPlan::TableScan(TableScan {
            source,
            ..scan
        })));
    };
    let mut i = 0;
    plan.map_children(|child| {
        let here = i;
        i += 1;
        if here == *at {
            rewrite(child, rest, sky)
        } else {
            Ok(Transformed::no(child))
        }
    })
}

/// The union of the circles the upload side of a join describes, or `None`
/// when it is too large to read or one circle cannot be bounded.
async fn circles(found: &Found, state: &SessionState, partition_order: u8) -> Result<Option<Sky>> {
    let physical = state
        .query_planner()
        .create_physical_plan(&found.targets, state)
        .await?;
    let batches = collect(physical, state.task_ctx()).await?;
    if batches.iter().map(|b| b.num_rows()).sum::<usize>() > MAX_TARGETS {
        return Ok(None);
    }
    let schema = found.targets.schema();
    let mut cones = Vec::new();
    for batch in &batches {
        let mut columns = Vec::with_capacity(3);
        for e in &found.circle {
            let values = state
                .create_physical_expr(e.clone(), schema)?
                .evaluate(batch)?
                .into_array(batch.num_rows())?;
            let values = arrow::compute::cast(&values, &DataType::Float64)?;
            columns.push(values);
        }
        let [ra, dec, radius] = [&columns[0], &columns[1], &columns[2]]
            .map(|c| c.as_primitive::<Float64Type>().clone());
        for row in 0..batch.num_rows() {
            // A circle with a NULL matches nothing.
            if ra.is_null(row) || dec.is_null(row) || radius.is_null(row) {
                continue;
            }
            cones.push((ra.value(row), dec.value(row), radius.value(row)));
        }
    }
    Ok(prune::cones(cones, partition_order))
}
