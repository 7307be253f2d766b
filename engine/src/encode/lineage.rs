//! Where each result column comes from, read off the logical plan: the table
//! column a plain reference names (through aliases, subqueries, joins, unions
//! and `MIN`/`MAX`), whether its text is known to be ASCII, and the DALI shape
//! of a geometry.
//!
//! A VOTable's FIELDs follow from this, and BINARY2 lays out every value as its
//! FIELD says: a column claimed to be ASCII is written as `char`, a point as
//! exactly two doubles. So this must never claim more than it can show.
//! Whatever it cannot follow is [`ColumnInfo::derived`]: text then goes out as
//! `unicodeChar`, arrays with their length, and no unit or UCD is guessed.

use datafusion::common::{DFSchema, JoinType, ScalarValue};
use datafusion::logical_expr::{Distinct, Expr, ExprSchemable, LogicalPlan};

use crate::encode::ColumnInfo;

/// What is known of a table's column, by `(schema, table, column)`.
pub(crate) trait Sources {
    /// The metadata of a column of a table the query read (`None` when unknown).
    fn column(&self, schema: &str, table: &str, column: &str) -> Option<ColumnInfo>;
}

/// One [`ColumnInfo`] per output column of `plan`.
pub(crate) fn of(plan: &LogicalPlan, sources: &dyn Sources) -> Vec<ColumnInfo> {
    let width = plan.schema().fields().len();
    let out = walk(plan, sources);
    if out.len() == width {
        out
    } else {
        vec![ColumnInfo::derived(); width]
    }
}

fn walk(plan: &LogicalPlan, sources: &dyn Sources) -> Vec<ColumnInfo> {
    let unknown = || vec![ColumnInfo::derived(); plan.schema().fields().len()];
    match plan {
        LogicalPlan::Projection(p) => {
            let input = of(&p.input, sources);
            p.expr
                .iter()
                .map(|e| expr(e, p.input.schema(), &input))
                .collect()
        }
        LogicalPlan::Filter(f) => of(&f.input, sources),
        LogicalPlan::Sort(s) => of(&s.input, sources),
        LogicalPlan::Limit(l) => of(&l.input, sources),
        LogicalPlan::Repartition(r) => of(&r.input, sources),
        // A view (ivoa.ObsCore) is inlined as its plan under its own name:
        // its columns are described as the view's, not as what they are made of.
        LogicalPlan::SubqueryAlias(a) => {
            let view = a.alias.schema().and_then(|schema| {
                let table = a.alias.table();
                let fields = a.schema.fields();
                let infos: Option<Vec<ColumnInfo>> = fields
                    .iter()
                    .map(|f| sources.column(schema, table, f.name()))
                    .collect();
                infos.filter(|i| !i.is_empty())
            });
            view.unwrap_or_else(|| of(&a.input, sources))
        }
        LogicalPlan::Subquery(s) => of(&s.subquery, sources),
        LogicalPlan::Distinct(Distinct::All(input)) => of(input, sources),
        LogicalPlan::Join(j) => {
            let (left, right) = (of(&j.left, sources), of(&j.right, sources));
            match j.join_type {
                JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                    left.into_iter().chain(right).collect()
                }
                JoinType::LeftSemi | JoinType::LeftAnti => left,
                JoinType::RightSemi | JoinType::RightAnti => right,
                JoinType::LeftMark => left.into_iter().chain([ColumnInfo::derived()]).collect(),
                JoinType::RightMark => right.into_iter().chain([ColumnInfo::derived()]).collect(),
            }
        }
        LogicalPlan::Union(u) => {
            let mut branches = u.inputs.iter().map(|i| of(i, sources));
            let Some(first) = branches.next() else {
                return unknown();
            };
            branches.fold(first, |acc, b| {
                acc.iter().zip(&b).map(|(a, b)| a.merge(b)).collect()
            })
        }
        LogicalPlan::Aggregate(a) => {
            let input = of(&a.input, sources);
            let schema = a.input.schema();
            a.group_expr
                .iter()
                .chain(&a.aggr_expr)
                .map(|e| expr(e, schema, &input))
                .collect()
        }
        LogicalPlan::Window(w) => {
            let mut out = of(&w.input, sources);
            out.extend(w.window_expr.iter().map(|_| ColumnInfo::derived()));
            out
        }
        LogicalPlan::TableScan(scan) => {
            let (Some(schema), table) = (scan.table_name.schema(), scan.table_name.table()) else {
                return unknown();
            };
            scan.projected_schema
                .fields()
                .iter()
                .map(|f| {
                    sources
                        .column(schema, table, f.name())
                        .unwrap_or_else(ColumnInfo::derived)
                })
                .collect()
        }
        _ => unknown(),
    }
}

/// What an output expression over `input` (the input's columns, as `schema` names them) is.
fn expr(e: &Expr, schema: &DFSchema, input: &[ColumnInfo]) -> ColumnInfo {
    match e {
        Expr::Column(c) => schema
            .index_of_column(c)
            .ok()
            .and_then(|i| input.get(i).cloned())
            .unwrap_or_else(ColumnInfo::derived),
        Expr::Alias(a) => expr(&a.expr, schema, input),
        Expr::Cast(datafusion::logical_expr::Cast { expr: inner, field })
        | Expr::TryCast(datafusion::logical_expr::TryCast { expr: inner, field }) => {
            let mut info = expr(inner, schema, input);
            info.geometry = None;
            // A time cast to text or to an integer is no longer an MJD.
            info.tai &= matches!(
                field.data_type(),
                arrow::datatypes::DataType::Float64 | arrow::datatypes::DataType::Float32
            );
            // Numbers, times and booleans print in ASCII; text keeps what it had.
            let from_text = inner.get_type(schema).is_ok_and(|t| is_text(&t));
            if is_text(field.data_type()) && !from_text {
                info.ascii = true;
            }
            info
        }
        Expr::Literal(v, _) => {
            let mut info = ColumnInfo::derived();
            info.ascii = match v {
                ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
                    s.as_deref().is_none_or(str::is_ascii)
                }
                _ => true,
            };
            info
        }
        Expr::ScalarFunction(f) => {
            let mut info = ColumnInfo::derived();
            info.geometry = geometry_of(f.func.name());
            // DALI geometries hold their coordinates (and radii) in degrees.
            if info.geometry.is_some() {
                info.unit = Some("deg".into());
            }
            info
        }
        Expr::AggregateFunction(a)
            if matches!(a.func.name(), "min" | "max") && a.params.args.len() == 1 =>
        {
            expr(&a.params.args[0], schema, input)
        }
        _ => ColumnInfo::derived(),
    }
}

/// The DALI xtype and arraysize of what a geometry function returns.
pub(crate) fn geometry_of(function: &str) -> Option<(&'static str, &'static str)> {
    use adql::udf;
    match function {
        f if f == udf::POINT || f == udf::CENTROID || f == udf::HEALPIX_CENTER => {
            Some(("point", "2"))
        }
        f if f == udf::CIRCLE => Some(("circle", "3")),
        f if f == udf::BOX || f == udf::POLYGON => Some(("polygon", "*")),
        _ => None,
    }
}

fn is_text(t: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType;
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}
