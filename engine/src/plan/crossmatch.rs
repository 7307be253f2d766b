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
//!
//! Pruning alone leaves the join a nested loop: every target against every
//! catalog row that survives, which for 1 000 targets spread over the sky is
//! most of the table. So the join is also given an equality to hash on (a
//! zone join, as q3c does): each target is repeated once per HEALPix cell its
//! circle touches, at an order where a circle touches a handful, and each
//! catalog row is keyed by the one cell its position lies in. A pair that
//! satisfies the circle test always shares a cell, and shares exactly one, so
//! the hash join followed by the exact test returns the same rows, each once.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::array::{ArrayRef, Int64Builder, RecordBatch, UInt32Builder};
use arrow::datatypes::{DataType, Float64Type};
use arrow::datatypes::{Field, Schema};
use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, Result, TableReference};
use datafusion::datasource::MemTable;
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    Expr, Join, LogicalPlan, LogicalPlanBuilder, Projection, TableScan, cast, lit,
};
use datafusion::physical_plan::collect;

use crate::scan::provider::PpdbTable;
use crate::scan::prune::{self, Sky};

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

/// A join whose upload side can be exploded into HEALPix cells to hash on.
struct Zone {
    /// Child positions from the root of the plan down to the join.
    path: Vec<usize>,
    /// Whether the catalog (the side keyed by its position) is the left input.
    catalog_left: bool,
    /// The catalog side's longitude and latitude.
    point: [Expr; 2],
    /// Centre longitude, latitude and radius, over the upload side's columns.
    circle: [Expr; 3],
}

/// The column an exploded upload carries its HEALPix cell in.
const CELL: &str = "__ppdb_crossmatch_cell";
/// The table name the exploded upload is scanned under.
const EXPLODED: &str = "__ppdb_crossmatch_targets";

/// Gives every catalog scan that is crossmatched against an upload the sky its
/// circles cover, and every such join an equality on HEALPix cells to hash on.
/// Plans without such a join come back unchanged.
pub(crate) async fn hint(plan: LogicalPlan, state: &SessionState) -> Result<LogicalPlan> {
    let mut found = Vec::new();
    let mut zones = Vec::new();
    find(&plan, &mut Vec::new(), &mut found, &mut zones)?;
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
        let sky = Arc::new(sky);
        plan = rewrite(plan, &f.path, &|t| t.with_hint(sky.clone()))?.data;
    }
    // Deepest first: wrapping a join in a projection moves only the paths below it.
    zones.sort_by_key(|z| std::cmp::Reverse(z.path.len()));
    for z in zones {
        let Some(node) = node_at(&plan, &z.path) else {
            continue;
        };
        if let Some(new) = zone_join(node, &z, state).await? {
            plan = replace_at(plan, &z.path, new)?.data;
        }
    }
    Ok(plan)
}

fn find(
    plan: &LogicalPlan,
    path: &mut Vec<usize>,
    found: &mut Vec<Found>,
    zones: &mut Vec<Zone>,
) -> Result<()> {
    if let LogicalPlan::Join(j) = plan {
        join(j, path, found, zones);
    }
    let mut i = 0;
    plan.apply_children(|child| {
        path.push(i);
        find(child, path, found, zones)?;
        path.pop();
        i += 1;
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
}

/// Whether rows of one side (`left` or not) that match nothing may be dropped
/// before the join without changing what it returns.
pub(crate) fn may_narrow(j: &Join, left: bool) -> bool {
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

/// Whether the upload side of a join may be repeated once per cell without
/// repeating any output row: it must be neither returned alone (semi and anti
/// joins) nor kept when it matches nothing (outer joins).
fn may_explode(j: &Join, catalog_left: bool) -> bool {
    if j.null_aware {
        return false;
    }
    match j.join_type {
        JoinType::Inner => true,
        JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti => catalog_left,
        JoinType::Right | JoinType::RightSemi | JoinType::RightAnti => !catalog_left,
        _ => false,
    }
}

fn join(j: &Join, path: &[usize], found: &mut Vec<Found>, zones: &mut Vec<Zone>) {
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
                if !(on_catalog && on_targets && is_upload(targets)) {
                    continue;
                }
                let catalog_left = index == 0;
                if may_explode(j, catalog_left) && !zones.iter().any(|z| z.path == path) {
                    zones.push(Zone {
                        path: path.to_vec(),
                        catalog_left,
                        point: near.point.map(Expr::clone),
                        circle: circle.map(Expr::clone),
                    });
                }
                if !may_narrow(j, catalog_left) {
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

pub(crate) fn column(e: &Expr) -> Option<&Column> {
    match e {
        Expr::Column(c) => Some(c),
        Expr::Cast(c) => column(&c.expr),
        _ => None,
    }
}

/// Whether a plan is one upload read as it is, or through cheap filters and
/// projections: its rows are read while the query is planned, before any
/// deadline or memory pool reaches it, so they must cost no more than the
/// upload itself. A cross join of three copies of a 1 000-row upload on the
/// upload side was computed for 24 s after the answer, and one keeping its
/// 5·10^7 rows took 1.2 GB past every memory limit; such a side is now joined
/// as any other (under the deadline), without the hint.
fn is_upload(plan: &LogicalPlan) -> bool {
    /// At most this many nodes in each filter's or projection's expressions.
    const CHEAP: usize = 64;
    let cheap = |e: &Expr| {
        let mut nodes = 0;
        let mut ok = true;
        let _ = e.apply(|x| {
            nodes += 1;
            if nodes > CHEAP
                || matches!(
                    x,
                    Expr::ScalarFunction(_)
                        | Expr::ScalarSubquery(_)
                        | Expr::Exists(_)
                        | Expr::InSubquery(_)
                        | Expr::Like(_)
                )
            {
                ok = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        ok
    };
    match plan {
        LogicalPlan::TableScan(s) => {
            s.table_name.schema() == Some(UPLOAD_SCHEMA) && s.filters.iter().all(cheap)
        }
        LogicalPlan::Projection(p) => p.expr.iter().all(cheap) && is_upload(&p.input),
        LogicalPlan::Filter(f) => cheap(&f.predicate) && is_upload(&f.input),
        LogicalPlan::SubqueryAlias(a) => is_upload(&a.input),
        _ => false,
    }
}

/// Follows a column down through nodes that pass rows on one by one to the
/// catalog scan that reads it: the stored column name and the path to the scan.
pub(crate) fn trace(plan: &LogicalPlan, col: &Column) -> Option<(String, Vec<usize>)> {
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

pub(crate) fn ppdb_table(scan: &TableScan) -> Option<PpdbTable> {
    let provider = source_as_provider(&scan.source).ok()?;
    provider.downcast_ref::<PpdbTable>().cloned()
}

pub(crate) fn scan_at<'p>(plan: &'p LogicalPlan, path: &[usize]) -> Option<&'p TableScan> {
    match path.split_first() {
        None => match plan {
            LogicalPlan::TableScan(s) => Some(s),
            _ => None,
        },
        Some((i, rest)) => scan_at(plan.inputs().get(*i)?, rest),
    }
}

/// The plan with the catalog table scanned at `path` replaced by `f` of it.
pub(crate) fn rewrite(
    plan: LogicalPlan,
    path: &[usize],
    f: &dyn Fn(&PpdbTable) -> PpdbTable,
) -> Result<Transformed<LogicalPlan>> {
    let Some((at, rest)) = path.split_first() else {
        let LogicalPlan::TableScan(scan) = plan else {
            return Ok(Transformed::no(plan));
        };
        let Some(table) = ppdb_table(&scan) else {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        };
        let source = provider_as_source(Arc::new(f(&table)));
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
            rewrite(child, rest, f)
        } else {
            Ok(Transformed::no(child))
        }
    })
}

/// The union of the circles the upload side of a join describes, or `None`
/// when it is too large to read or one circle cannot be bounded.
async fn circles(found: &Found, state: &SessionState, partition_order: u8) -> Result<Option<Sky>> {
    let Some((_, circles)) = read_circles(&found.targets, &found.circle, state).await? else {
        return Ok(None);
    };
    // A circle with a NULL matches nothing.
    Ok(prune::cones(
        circles.into_iter().flatten().flatten(),
        partition_order,
    ))
}

/// Per batch and row, one circle of a row, as NULL-free `(ra, dec, radius)`.
type Circles = Vec<Vec<Option<(f64, f64, f64)>>>;

/// Runs the upload side of a join: its rows, and the circle each describes;
/// `None` when it has too many rows to read.
async fn read_circles(
    targets: &LogicalPlan,
    circle: &[Expr; 3],
    state: &SessionState,
) -> Result<Option<(Vec<RecordBatch>, Circles)>> {
    let physical = state
        .query_planner()
        .create_physical_plan(targets, state)
        .await?;
    let batches = collect(physical, state.task_ctx()).await?;
    if batches.iter().map(|b| b.num_rows()).sum::<usize>() > MAX_TARGETS {
        return Ok(None);
    }
    let schema = targets.schema();
    let mut circles = Vec::with_capacity(batches.len());
    for batch in &batches {
        let mut columns = Vec::with_capacity(3);
        for e in circle {
            let values = state
                .create_physical_expr(e.clone(), schema)?
                .evaluate(batch)?
                .into_array(batch.num_rows())?;
            columns.push(arrow::compute::cast(&values, &DataType::Float64)?);
        }
        let [ra, dec, r] = [&columns[0], &columns[1], &columns[2]]
            .map(|c| c.as_primitive::<Float64Type>().clone());
        circles.push(
            (0..batch.num_rows())
                .map(|i| {
                    (!ra.is_null(i) && !dec.is_null(i) && !r.is_null(i))
                        .then(|| (ra.value(i), dec.value(i), r.value(i)))
                })
                .collect(),
        );
    }
    Ok(Some((batches, circles)))
}

fn node_at<'p>(plan: &'p LogicalPlan, path: &[usize]) -> Option<&'p LogicalPlan> {
    match path.split_first() {
        None => Some(plan),
        Some((i, rest)) => node_at(plan.inputs().get(*i)?, rest),
    }
}

/// The plan with the node at `path` replaced by `new`.
fn replace_at(
    plan: LogicalPlan,
    path: &[usize],
    new: LogicalPlan,
) -> Result<Transformed<LogicalPlan>> {
    let Some((at, rest)) = path.split_first() else {
        return Ok(Transformed::yes(new));
    };
    let mut i = 0;
    let mut new = Some(new);
    plan.map_children(|child| {
        let here = i;
        i += 1;
        match (here == *at, new.take()) {
            (true, Some(n)) => replace_at(child, rest, n),
            (_, n) => {
                new = n;
                Ok(Transformed::no(child))
            }
        }
    })
}

/// The join at `plan` hashed on HEALPix cells (see the module's notes), or
/// `None` to leave it as it is (not the join expected, a circle that cannot be
/// bounded, or too many targets).
async fn zone_join(
    plan: &LogicalPlan,
    z: &Zone,
    state: &SessionState,
) -> Result<Option<LogicalPlan>> {
    {
        let LogicalPlan::Join(j) = plan else {
            return Ok(None);
        };
        let targets = if z.catalog_left { &j.right } else { &j.left };
        let Some((batches, circles)) = read_circles(targets, &z.circle, state).await? else {
            return Ok(None);
        };
        let schema = targets.schema();
        // The order is chosen for the largest circle.
        let mut largest: f64 = 0.0;
        for c in circles.iter().flatten().flatten() {
            let valid = c.0.is_finite() && c.1.abs() <= 90.0 && c.2.is_finite();
            if !valid || c.2 >= 90.0 {
                // Not a bounded circle: leave the join to its nested loop.
                return Ok(None);
            }
            largest = largest.max(c.2);
        }
        let order = cdshealpix::best_starting_depth(largest.to_radians().max(1e-9)).min(29);
        let layer = cdshealpix::nested::get(order);

        // The upload, each row repeated once per cell its circle touches.
        let width = schema.fields().len();
        let mut fields: Vec<Field> = (0..width)
            .map(|i| Field::new(format!("c{i}"), schema.field(i).data_type().clone(), true))
            .collect();
        fields.push(Field::new(CELL, DataType::Int64, false));
        let exploded_schema = Arc::new(Schema::new(fields));
        let mut exploded = Vec::with_capacity(batches.len());
        for (batch, rows) in batches.iter().zip(&circles) {
            let mut take = UInt32Builder::new();
            let mut cells = Int64Builder::new();
            for (i, c) in rows.iter().enumerate() {
                // A circle with a NULL, or a negative radius, matches nothing.
                let Some((ra, dec, r)) = c else { continue };
                if *r < 0.0 {
                    continue;
                }
                let cover = layer.cone_coverage_approx(
                    catalog::healpix::longitude(*ra),
                    dec.to_radians(),
                    r.to_radians().max(1e-9),
                );
                for cell in cover.flat_iter() {
                    take.append_value(i as u32);
                    cells.append_value(cell as i64);
                }
            }
            let take = take.finish();
            let mut columns: Vec<ArrayRef> = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c, &take, None))
                .collect::<std::result::Result<_, _>>()?;
            columns.push(Arc::new(cells.finish()));
            exploded.push(RecordBatch::try_new(exploded_schema.clone(), columns)?);
        }
        let table = MemTable::try_new(exploded_schema, vec![exploded])?;
        let mut names: Vec<Expr> = (0..width)
            .map(|i| {
                let (q, f) = schema.qualified_field(i);
                Expr::Column(Column::new(Some(EXPLODED), format!("c{i}")))
                    .alias_qualified(q.cloned(), f.name())
            })
            .collect();
        names.push(Expr::Column(Column::new(Some(EXPLODED), CELL)).alias(CELL));
        let exploded = LogicalPlanBuilder::scan(
            TableReference::bare(EXPLODED),
            provider_as_source(Arc::new(table)),
            None,
        )?
        .project(names)?
        .build()?;

        // The catalog side's key: the cell its position lies in, at that order.
        let Some(index) = state.scalar_functions().get(adql::udf::HEALPIX_INDEX) else {
            return Ok(None);
        };
        let key = Expr::ScalarFunction(ScalarFunction::new_udf(
            index.clone(),
            vec![
                lit(i64::from(order)),
                cast(z.point[0].clone(), DataType::Float64),
                cast(z.point[1].clone(), DataType::Float64),
            ],
        ));
        let cell = Expr::Column(Column::new_unqualified(CELL));
        let (left, right, pair) = if z.catalog_left {
            (j.left.clone(), Arc::new(exploded), (key, cell))
        } else {
            (Arc::new(exploded), j.right.clone(), (cell, key))
        };
        let mut on = j.on.clone();
        on.push(pair);
        let joined = Join::try_new(
            left,
            right,
            on,
            j.filter.clone(),
            j.join_type,
            j.join_constraint,
            j.null_equality,
            j.null_aware,
        )?;
        // The join's own columns, without the cell.
        let columns: Vec<Expr> = j.schema.columns().into_iter().map(Expr::Column).collect();
        Ok(Some(LogicalPlan::Projection(Projection::try_new(
            columns,
            Arc::new(LogicalPlan::Join(joined)),
        )?)))
    }
}
