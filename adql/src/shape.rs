//! The shapes of query the engine treats specially, read off the rewritten
//! tree here so that knowledge of sqlparser's fields stays in this crate: an
//! id lookup or a cone on one table's plain columns (which the engine reads
//! straight from the partitions that hold them), and a plain filter over one
//! in-memory table (whose rows come out in one fixed order).

use sqlparser::ast::{
    BinaryOperator, Expr as Sql, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Ident, LimitClause, OrderBy, OrderByKind, SelectItem, SetExpr, Statement, TableFactor,
    UnaryOperator, Value, WildcardAdditionalOptions,
};

use crate::Query;

/// The column an id lookup matches.
pub const ID: &str = "diaObjectId";

/// The position columns a cone tests.
pub const POSITION: [&str; 2] = ["ra", "dec"];

/// A query of the lookup shape: which table, which columns, which rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// The served table, as `(schema, table)`.
    pub table: (String, String),
    /// The result's columns: `(column, name in the result)`; `None` for `*`.
    pub columns: Option<Vec<(String, String)>>,
    /// The rows asked for.
    pub rows: Rows,
    /// The order of the result: `(result column, descending, nulls first)`.
    pub order: Vec<(usize, bool, bool)>,
    /// The most rows (`TOP`, which ADQL's rewriting turns into `LIMIT`).
    pub limit: Option<usize>,
}

/// The one condition a lookup's rows meet.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// `diaObjectId` is one of these.
    Ids(Vec<i64>),
    /// The row's own `ra`, `dec` lie within `radius` degrees of `(ra, dec)`, as
    /// `adql_cone` decides it (what ADQL's `CONTAINS(POINT, CIRCLE) = 1` becomes).
    Cone { ra: f64, dec: f64, radius: f64 },
}

impl Query {
    /// The lookup this query is, if it has exactly the lookup shape.
    pub fn lookup(&self) -> Option<Lookup> {
        recognise(&self.statement)
    }

    /// Whether the query's rows come out in one fixed order without an ORDER
    /// BY: a plain filter over one table that `in_memory` says is held in one
    /// piece (an upload, TAP_SCHEMA) reads it in order.
    pub fn order_is_fixed(&self, in_memory: impl Fn(&str) -> bool) -> bool {
        if self.tables.len() != 1 || !self.tables.iter().all(|(schema, _)| in_memory(schema)) {
            return false;
        }
        let Statement::Query(q) = &self.statement else {
            return false;
        };
        if q.with.is_some() {
            return false;
        }
        let SetExpr::Select(select) = q.body.as_ref() else {
            return false;
        };
        let no_grouping = match &select.group_by {
            GroupByExpr::Expressions(e, m) => e.is_empty() && m.is_empty(),
            GroupByExpr::All(_) => false,
        };
        select.from.len() == 1
            && select.from[0].joins.is_empty()
            && matches!(select.from[0].relation, TableFactor::Table { .. })
            && select.distinct.is_none()
            && no_grouping
    }
}

/// The lookup a rewritten statement is, if it has exactly the lookup shape.
fn recognise(statement: &Statement) -> Option<Lookup> {
    let Statement::Query(q) = statement else {
        return None;
    };
    if q.with.is_some()
        || q.fetch.is_some()
        || !q.locks.is_empty()
        || q.for_clause.is_some()
        || q.settings.is_some()
        || q.format_clause.is_some()
        || !q.pipe_operators.is_empty()
    {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let grouped = match &s.group_by {
        GroupByExpr::Expressions(e, m) => !e.is_empty() || !m.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if grouped
        || s.distinct.is_some()
        || s.top.is_some()
        || s.having.is_some()
        || s.exclude.is_some()
        || s.into.is_some()
        || s.prewhere.is_some()
        || s.qualify.is_some()
        || s.value_table_mode.is_some()
        || s.select_modifiers.is_some()
        || !s.optimizer_hints.is_empty()
        || !s.lateral_views.is_empty()
        || !s.connect_by.is_empty()
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || !s.named_window.is_empty()
        || s.from.len() != 1
        || !s.from[0].joins.is_empty()
    {
        return None;
    }
    let TableFactor::Table {
        name,
        args: None,
        version: None,
        with_hints,
        partitions,
        json_path: None,
        sample: None,
        index_hints,
        with_ordinality: false,
        ..
    } = &s.from[0].relation
    else {
        return None;
    };
    if !with_hints.is_empty() || !partitions.is_empty() || !index_hints.is_empty() {
        return None;
    }
    let [schema, table] = name.0.as_slice() else {
        return None;
    };
    let (schema, table) = (schema.as_ident()?, table.as_ident()?);
    let columns = columns(&s.projection)?;
    let selection = s.selection.as_ref()?;
    let rows = ids(selection).map(Rows::Ids).or_else(|| cone(selection))?;
    let order = match &q.order_by {
        None => Vec::new(),
        Some(o) => order(o, columns.as_deref())?,
    };
    let limit = match &q.limit_clause {
        None => None,
        Some(LimitClause::LimitOffset {
            limit: Some(n),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => Some(usize::try_from(integer(n)?).ok()?),
        Some(_) => return None,
    };
    Some(Lookup {
        table: (schema.value.clone(), table.value.clone()),
        columns,
        rows,
        order,
        limit,
    })
}

/// An `ORDER BY` of result columns, by position (as the pinned form writes it)
/// or by a name in the result; with SQL's default of NULLs sorting as the
/// largest value, as DataFusion's `nulls_max` does.
pub(super) fn order(
    o: &OrderBy,
    columns: Option<&[(String, String)]>,
) -> Option<Vec<(usize, bool, bool)>> {
    let (OrderByKind::Expressions(exprs), None) = (&o.kind, &o.interpolate) else {
        return None;
    };
    exprs
        .iter()
        .map(|e| {
            if e.with_fill.is_some() {
                return None;
            }
            let at = match (&e.expr, columns) {
                (Sql::Value(_), _) => usize::try_from(integer(&e.expr)?).ok()?.checked_sub(1)?,
                (Sql::Identifier(id), Some(cols)) => {
                    let mut same = cols
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, out))| *out == id.value);
                    let (at, _) = same.next()?;
                    if same.next().is_some() {
                        return None;
                    }
                    at
                }
                _ => return None,
            };
            if columns.is_some_and(|c| at >= c.len()) {
                return None;
            }
            let descending = e.options.asc == Some(false);
            Some((at, descending, e.options.nulls_first.unwrap_or(descending)))
        })
        .collect()
}

/// The result columns of a projection of plain column names (with aliases), or `*`.
pub(super) fn columns(projection: &[SelectItem]) -> Option<Option<Vec<(String, String)>>> {
    if let [SelectItem::Wildcard(o) | SelectItem::QualifiedWildcard(_, o)] = projection {
        return plain_wildcard(o).then_some(None);
    }
    projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => {
                let c = column(e)?;
                Some((c.value.clone(), c.value.clone()))
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                Some((column(expr)?.value.clone(), alias.value.clone()))
            }
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(Some)
}

pub(super) fn plain_wildcard(o: &WildcardAdditionalOptions) -> bool {
    o.opt_ilike.is_none()
        && o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
}

/// The column a plain (possibly qualified) name refers to; the query has one table.
pub(super) fn column(e: &Sql) -> Option<&Ident> {
    match e {
        Sql::Identifier(id) => Some(id),
        Sql::CompoundIdentifier(parts) => parts.last(),
        _ => None,
    }
}

/// The ids of `diaObjectId = N` (either way round) or `diaObjectId IN (N, ...)`.
pub(super) fn ids(selection: &Sql) -> Option<Vec<i64>> {
    let is_id = |e: &Sql| column(e).is_some_and(|c| c.value == ID);
    match selection {
        Sql::Nested(e) => ids(e),
        Sql::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            if is_id(left) {
                Some(vec![integer(right)?])
            } else if is_id(right) {
                Some(vec![integer(left)?])
            } else {
                None
            }
        }
        Sql::InList {
            expr,
            list,
            negated: false,
        } if is_id(expr) && !list.is_empty() => list.iter().map(integer).collect(),
        _ => None,
    }
}

/// The cone of `adql_cone(ra, dec, a, d, r) = 1` (either way round) with
/// number literals for the centre and radius.
pub(super) fn cone(selection: &Sql) -> Option<Rows> {
    let (left, right) = match selection {
        Sql::Nested(e) => return cone(e),
        Sql::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => (left.as_ref(), right.as_ref()),
        _ => return None,
    };
    let (call, one) = match (left, right) {
        (Sql::Function(f), one) | (one, Sql::Function(f)) => (f, one),
        _ => return None,
    };
    let plain = call.name.0.len() == 1
        && call.name.0[0].as_ident()?.value == crate::udf::CONE
        && call.filter.is_none()
        && call.null_treatment.is_none()
        && call.over.is_none()
        && call.within_group.is_empty()
        && matches!(call.parameters, FunctionArguments::None);
    let FunctionArguments::List(list) = &call.args else {
        return None;
    };
    if !plain
        || integer(one)? != 1
        || list.duplicate_treatment.is_some()
        || !list.clauses.is_empty()
    {
        return None;
    }
    let args: Vec<&Sql> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let [ra, dec, a, d, r] = args.as_slice() else {
        return None;
    };
    let own = |e: &Sql, name: &str| column(e).is_some_and(|c| c.value == name);
    if !own(ra, POSITION[0]) || !own(dec, POSITION[1]) {
        return None;
    }
    Some(Rows::Cone {
        ra: number(a)?,
        dec: number(d)?,
        radius: number(r)?,
    })
}

/// A number literal, possibly signed, as DataFusion reads it for a `Float64`
/// argument.
pub(super) fn number(e: &Sql) -> Option<f64> {
    match e {
        Sql::Value(v) => match &v.value {
            Value::Number(n, false) => n.parse().ok().filter(|x: &f64| x.is_finite()),
            _ => None,
        },
        Sql::Nested(e) => number(e),
        Sql::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => number(expr).map(|x| -x),
        Sql::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => number(expr),
        _ => None,
    }
}

/// An integer literal that fits `diaObjectId`'s type, so the comparison is exact.
pub(super) fn integer(e: &Sql) -> Option<i64> {
    match e {
        Sql::Value(v) => match &v.value {
            Value::Number(n, false) => n.parse().ok(),
            _ => None,
        },
        Sql::Nested(e) => integer(e),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::{Column, Rows, Table, parse};

    fn schema() -> Vec<Table> {
        let col = |n: &str| Column {
            name: n.into(),
            unit: None,
        };
        ["DiaSource", "DiaObject"]
            .into_iter()
            .map(|t| Table {
                schema: "ppdb".into(),
                name: t.into(),
                columns: vec![col("diaObjectId"), col("ra"), col("dec"), col("psfFlux")],
                key: vec![],
            })
            .chain([Table {
                schema: "TAP_UPLOAD".into(),
                name: "t".into(),
                columns: vec![col("n")],
                key: vec![],
            }])
            .collect()
    }

    #[test]
    fn light_curves_and_cones_are_lookups_and_nothing_else_is() {
        let q = |adql: &str| parse(adql, &schema()).unwrap();
        let curve = q("SELECT ra, psfFlux FROM ppdb.DiaSource WHERE diaObjectId = 7").lookup();
        let curve = curve.expect("a light curve is a lookup");
        assert_eq!(curve.table, ("ppdb".into(), "DiaSource".into()));
        assert_eq!(curve.rows, Rows::Ids(vec![7]));
        let cone = q("SELECT * FROM ppdb.DiaObject WHERE \
                      CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55, -30, 0.1)) = 1")
        .lookup()
        .expect("a cone on the table's own position is a lookup");
        assert!(matches!(cone.rows, Rows::Cone { radius, .. } if radius == 0.1));
        for not in [
            "SELECT COUNT(*) FROM ppdb.DiaSource WHERE diaObjectId = 7",
            "SELECT ra FROM ppdb.DiaSource WHERE diaObjectId = 7 OR psfFlux > 0",
            "SELECT ra + 1 AS r FROM ppdb.DiaSource WHERE diaObjectId = 7",
            "SELECT s.ra FROM ppdb.DiaSource AS s JOIN ppdb.DiaObject AS o \
             ON s.diaObjectId = o.diaObjectId WHERE s.diaObjectId = 7",
        ] {
            assert_eq!(q(not).lookup(), None, "{not}");
        }
    }

    #[test]
    fn only_a_plain_filter_over_an_in_memory_table_keeps_its_order() {
        let q = |adql: &str| parse(adql, &schema()).unwrap();
        let memory = |s: &str| s == "TAP_UPLOAD";
        assert!(q("SELECT n FROM TAP_UPLOAD.t WHERE n > 1").order_is_fixed(memory));
        assert!(!q("SELECT DISTINCT n FROM TAP_UPLOAD.t").order_is_fixed(memory));
        assert!(!q("SELECT n, COUNT(*) AS c FROM TAP_UPLOAD.t GROUP BY n").order_is_fixed(memory));
        assert!(!q("SELECT ra FROM ppdb.DiaObject").order_is_fixed(memory));
    }
}
