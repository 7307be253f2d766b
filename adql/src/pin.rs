//! The pinned, reproducible form of a query.
//!
//! A query token replays the ADQL in this form: every table read `FOR
//! SYSTEM_TIME AS OF` one snapshot, and a total order wherever the rows chosen
//! (or their order) would otherwise depend on how the engine happened to run
//! it — under `TOP` or `OFFSET`, and at the top when the user sorts (ties) or
//! a row limit cuts the result. The order is the user's own keys first, then
//! every output column by position, so it refines what the user asked for and
//! never contradicts it. Rows equal in every column are indistinguishable, so
//! that order is total for everything a client can see.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, JoinConstraint, LimitClause, ObjectNamePart, OrderBy, OrderByExpr, OrderByKind,
    OrderByOptions, Query as SqlQuery, Select, SelectItem, SelectItemQualifiedWildcardKind,
    SetExpr, Statement, TableAlias, TableFactor, TableWithJoins, Value, VisitMut, VisitorMut,
};

use crate::{Error, Query, SchemaInfo, Table};

/// A query rewritten so that running it again gives the same rows in the same order.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// The reproducible ADQL.
    pub adql: String,
    /// Whether the result rows come in a defined order (so a checksum must follow it).
    pub ordered: bool,
    /// The query, ready for the planner, with the same total order as `adql`
    /// (what parsing `adql` would give, without parsing it again).
    pub query: Query,
}

/// Pins `query` to `snapshot`; `cut` says that a row limit (MAXREC) applies to the result.
pub fn pin(
    query: &Query,
    schema: &dyn SchemaInfo,
    snapshot: u64,
    cut: bool,
) -> Result<Pinned, Error> {
    let mut source = query.source.clone();
    let ordered =
        add_order(&mut source, schema, Some(snapshot), cut).map_err(|e| e.within(&query.adql))?;
    // The planner's form gets the same order, so that the first run needs no second parse.
    let mut statement = query.statement.clone();
    add_order(&mut statement, schema, None, cut).map_err(|e| e.within(&query.adql))?;
    let adql = source.to_string();
    Ok(Pinned {
        query: Query {
            adql: adql.clone(),
            statement,
            as_of: Some(crate::AsOf::Snapshot(snapshot)),
            tables: query.tables.clone(),
            source,
            text_width: query.text_width,
            outputs: query.outputs,
        },
        adql,
        ordered,
    })
}

/// Adds the total orders (and, given a snapshot, the time-travel clause of every
/// table) to a statement; returns whether its top level is ordered.
fn add_order(
    statement: &mut Statement,
    schema: &dyn SchemaInfo,
    snapshot: Option<u64>,
    cut: bool,
) -> Result<bool, Error> {
    let Statement::Query(q) = statement else {
        return Err(Error::at(
            sqlparser::tokenizer::Span::empty(),
            "only a SELECT can be pinned",
        ));
    };
    let mut ctes = HashMap::new();
    collect_ctes(q, &mut ctes);
    let mut pinner = Pinner {
        shape: Shape {
            tables: schema.tables(),
            ctes,
            depth: 0,
        },
        snapshot,
        cut,
        top_level: true,
        failed: None,
    };
    let _ = q.visit(&mut pinner);
    if let Some(e) = pinner.failed {
        return Err(e);
    }
    Ok(q.order_by.is_some())
}

fn collect_ctes(q: &SqlQuery, out: &mut HashMap<String, SqlQuery>) {
    struct Ctes<'a>(&'a mut HashMap<String, SqlQuery>);
    impl sqlparser::ast::Visitor for Ctes<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &SqlQuery) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    self.0
                        .insert(cte.alias.name.value.to_lowercase(), (*cte.query).clone());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = sqlparser::ast::Visit::visit(q, &mut Ctes(out));
}

struct Pinner<'a> {
    shape: Shape<'a>,
    /// `None` for the planner's form, where the engine pins the tables itself.
    snapshot: Option<u64>,
    cut: bool,
    top_level: bool,
    failed: Option<Error>,
}

impl VisitorMut for Pinner<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut SqlQuery) -> ControlFlow<()> {
        let top_level = std::mem::replace(&mut self.top_level, false);
        if let SetExpr::SetOperation { left, right, .. } = &mut *q.body {
            wrap_top_branches(left);
            wrap_top_branches(right);
        }
        let has_top = matches!(&*q.body, SetExpr::Select(s) if s.top.is_some());
        // In the planner's form TOP has become a LIMIT; ADQL has no LIMIT of its own.
        let has_offset = matches!(
            &q.limit_clause,
            Some(LimitClause::LimitOffset {
                offset: Some(_),
                ..
            }) | Some(LimitClause::LimitOffset { limit: Some(_), .. })
        );
        let needs = has_top || has_offset || (top_level && (q.order_by.is_some() || self.cut));
        if !needs {
            return ControlFlow::Continue(());
        }
        let Some(columns) = self.shape.set_expr(&q.body) else {
            self.failed = Some(Error::at(
                sqlparser::tokenizer::Span::empty(),
                "cannot tell the output columns of this query, so it cannot be given a total order",
            ));
            return ControlFlow::Break(());
        };
        match self.shape.key_positions(&q.body) {
            Some(key) => total_order(q, key),
            None => total_order(q, 1..=columns.len()),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        let Some(snapshot) = self.snapshot else {
            return ControlFlow::Continue(());
        };
        if let TableFactor::Table { name, version, .. } = t {
            let cte = matches!(name.0.as_slice(), [ObjectNamePart::Identifier(id)]
                if self.shape.ctes.contains_key(&id.value.to_lowercase()));
            *version = None;
            if !cte && let Some(ObjectNamePart::Identifier(last)) = name.0.last_mut() {
                // sqlparser parses `t FOR SYSTEM_TIME AS OF k AS a` but prints the
                // clause after the alias, which it cannot parse back; so the clause
                // rides on the table name, where it prints in the right place.
                *last = Ident::new(format!("{last} FOR SYSTEM_TIME AS OF {snapshot}"));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        // sqlparser prints hex literals as X'..', which is not ADQL; the value is what counts.
        if let Expr::Value(v) = e
            && let Value::HexStringLiteral(h) = &v.value
            && let Ok(n) = u64::from_str_radix(h, 16)
        {
            v.value = Value::Number(n.to_string(), false);
        }
        ControlFlow::Continue(())
    }
}

/// `TOP` binds to its own SELECT; inside a set operation that SELECT needs
/// parentheses to carry its own ORDER BY.
fn wrap_top_branches(side: &mut SetExpr) {
    match side {
        SetExpr::Select(s) if s.top.is_some() => {
            let placeholder = SetExpr::Values(sqlparser::ast::Values {
                explicit_row: false,
                value_keyword: false,
                rows: vec![],
            });
            let inner = std::mem::replace(side, placeholder);
            *side = SetExpr::Query(Box::new(SqlQuery {
                with: None,
                body: Box::new(inner),
                order_by: None,
                limit_clause: None,
                fetch: None,
                locks: vec![],
                for_clause: None,
                settings: None,
                format_clause: None,
                pipe_operators: vec![],
            }));
        }
        SetExpr::SetOperation { left, right, .. } => {
            wrap_top_branches(left);
            wrap_top_branches(right);
        }
        _ => {}
    }
}

/// Appends every given output position the user's ORDER BY does not already name.
fn total_order(q: &mut SqlQuery, positions: impl IntoIterator<Item = usize>) {
    let order = q.order_by.get_or_insert_with(|| OrderBy {
        kind: OrderByKind::Expressions(vec![]),
        interpolate: None,
    });
    let OrderByKind::Expressions(exprs) = &mut order.kind else {
        return;
    };
    let named: Vec<String> = exprs
        .iter()
        .filter_map(|o| match &o.expr {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => Some(n.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    for i in positions {
        let n = i.to_string();
        if named.contains(&n) {
            continue;
        }
        exprs.push(OrderByExpr {
            expr: Expr::value(Value::Number(n, false)),
            options: OrderByOptions {
                asc: None,
                nulls_first: None,
            },
            with_fill: None,
        });
    }
}

/// Output column names (lower-cased; empty for unnamed expressions) of query parts.
struct Shape<'a> {
    tables: &'a [Table],
    ctes: HashMap<String, SqlQuery>,
    depth: usize,
}

/// A relation in a FROM clause: its name for qualified wildcards, and its columns
/// with whether `*` shows them (the right side of a USING or NATURAL join does not
/// repeat the join columns).
struct Rel {
    name: String,
    columns: Vec<(String, bool)>,
}

impl Rel {
    /// A relation under its name, or under its alias (which may rename its columns).
    fn new(name: String, columns: Vec<String>, alias: Option<&TableAlias>) -> Rel {
        let (name, columns) = match alias {
            Some(a) if !a.columns.is_empty() => (
                lower(&a.name),
                a.columns.iter().map(|c| lower(&c.name)).collect(),
            ),
            Some(a) => (lower(&a.name), columns),
            None => (name, columns),
        };
        Rel {
            name,
            columns: columns.into_iter().map(|c| (c, true)).collect(),
        }
    }
}

/// The aggregate functions, in ADQL's spelling and the planner's.
const AGGREGATES: [&str; 5] = ["count", "sum", "avg", "min", "max"];

fn has_aggregate(items: &[SelectItem]) -> bool {
    struct Find(bool);
    impl sqlparser::ast::Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = e
                && let Some(ObjectNamePart::Identifier(id)) = f.name.0.last()
                && AGGREGATES.contains(&id.value.to_lowercase().as_str())
            {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut find = Find(false);
    for item in items {
        let _ = sqlparser::ast::Visit::visit(item, &mut find);
    }
    find.0
}

/// A table name's parts, lower-cased.
fn name_parts(name: &sqlparser::ast::ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => Some(lower(id)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

impl Shape<'_> {
    /// The served table `[schema.]table` (lower-cased parts) names.
    fn table(&self, parts: &[String]) -> Option<&Table> {
        let (schema, table) = match parts {
            [t] => (None, t),
            [s, t] | [_, s, t] => (Some(s), t),
            _ => return None,
        };
        self.tables.iter().find(|x| {
            x.name.to_lowercase() == *table && schema.is_none_or(|s| x.schema.to_lowercase() == *s)
        })
    }

    /// The output positions (1-based) of the keys of the tables a plain
    /// `SELECT` reads (one table, or tables joined ON a condition or CROSS),
    /// when it shows every key column of every table as itself: each row is
    /// then one combination of rows of those tables (an outer join's missing
    /// side shows NULL keys), unique by those keys alone. Ordering by them is
    /// total, and far cheaper than ordering by every column: a TOP over a join
    /// keeps a few rows of a few keys, not every column of every pair.
    fn key_positions(&self, body: &SetExpr) -> Option<Vec<usize>> {
        let SetExpr::Select(s) = body else {
            return None;
        };
        let plain = matches!(&s.group_by, sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty())
            && s.having.is_none()
            && !has_aggregate(&s.projection);
        if !plain {
            return None;
        }
        // Every relation: its qualifier (alias or table name) and the table.
        let mut rels: Vec<(String, &Table)> = Vec::new();
        for twj in &s.from {
            let factors =
                std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation));
            for (n, factor) in factors.enumerate() {
                if n > 0 {
                    let on_or_cross = match &twj.joins[n - 1].join_operator {
                        sqlparser::ast::JoinOperator::CrossJoin(_) => true,
                        op => matches!(
                            crate::walk::adql_join_constraint!(op),
                            Some(JoinConstraint::On(_))
                        ),
                    };
                    if !on_or_cross {
                        return None;
                    }
                }
                let TableFactor::Table { name, alias, .. } = factor else {
                    return None;
                };
                if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                    return None;
                }
                let parts = name_parts(name)?;
                if matches!(parts.as_slice(), [one] if self.ctes.contains_key(one)) {
                    return None;
                }
                let found = self.table(&parts)?;
                if found.key.is_empty() {
                    return None;
                }
                let qualifier = alias
                    .as_ref()
                    .map(|a| lower(&a.name))
                    .unwrap_or(parts.last()?.clone());
                rels.push((qualifier, found));
            }
        }
        let columns = |t: &Table| -> Vec<String> {
            t.columns.iter().map(|c| c.name.to_lowercase()).collect()
        };
        // The relation and column an output expression shows as itself, if any.
        let is_self = |e: &Expr| -> Option<(usize, String)> {
            match e {
                Expr::Identifier(id) => {
                    let c = lower(id);
                    let mut owners = rels
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, t))| columns(t).contains(&c));
                    match (owners.next(), owners.next()) {
                        (Some((i, _)), None) => Some((i, c)),
                        _ => None,
                    }
                }
                Expr::CompoundIdentifier(ids) => {
                    let (last, rest) = ids.split_last()?;
                    let q = rest.last().map(lower)?;
                    let i = rels.iter().position(|(name, _)| *name == q)?;
                    Some((i, lower(last)))
                }
                _ => None,
            }
        };
        // Which column each output position shows as itself, if any.
        let mut shown: Vec<Option<(usize, String)>> = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    shown.push(is_self(e));
                }
                SelectItem::Wildcard(_) => {
                    for (i, (_, t)) in rels.iter().enumerate() {
                        shown.extend(columns(t).into_iter().map(|c| Some((i, c))));
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) => {
                    let q = name_parts(name)?.last()?.clone();
                    let i = rels.iter().position(|(n, _)| *n == q)?;
                    shown.extend(columns(rels[i].1).into_iter().map(|c| Some((i, c))));
                }
                _ => return None,
            }
        }
        let mut positions = Vec::new();
        for (i, (_, t)) in rels.iter().enumerate() {
            for k in &t.key {
                let k = k.to_lowercase();
                let at = shown
                    .iter()
                    .position(|c| c.as_ref().is_some_and(|(r, c)| *r == i && *c == k))?;
                positions.push(at + 1);
            }
        }
        (!positions.is_empty()).then_some(positions)
    }

    fn query(&mut self, q: &SqlQuery) -> Option<Vec<String>> {
        self.set_expr(&q.body)
    }

    fn set_expr(&mut self, body: &SetExpr) -> Option<Vec<String>> {
        // CTEs referring to CTEs recurse; a bound keeps a malformed query from looping.
        self.depth += 1;
        let out = if self.depth > 64 {
            None
        } else {
            match body {
                SetExpr::Select(s) => self.select(s),
                SetExpr::Query(q) => self.query(q),
                SetExpr::SetOperation { left, .. } => self.set_expr(left),
                _ => None,
            }
        };
        self.depth -= 1;
        out
    }

    fn select(&mut self, s: &Select) -> Option<Vec<String>> {
        let mut rels = Vec::new();
        for twj in &s.from {
            self.from(twj, &mut rels)?;
        }
        let mut out = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(Expr::Identifier(id)) => out.push(lower(id)),
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => {
                    out.push(ids.last().map(lower).unwrap_or_default());
                }
                SelectItem::UnnamedExpr(_) => out.push(String::new()),
                SelectItem::ExprWithAlias { alias, .. } => out.push(lower(alias)),
                SelectItem::Wildcard(_) => {
                    for r in &rels {
                        out.extend(
                            r.columns
                                .iter()
                                .filter(|(_, shown)| *shown)
                                .map(|(c, _)| c.clone()),
                        );
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    let want = match n.0.last()? {
                        ObjectNamePart::Identifier(id) => lower(id),
                        ObjectNamePart::Function(_) => return None,
                    };
                    let r = rels.iter().find(|r| r.name == want)?;
                    out.extend(r.columns.iter().map(|(c, _)| c.clone()));
                }
                _ => return None,
            }
        }
        Some(out)
    }

    fn from(&mut self, twj: &TableWithJoins, rels: &mut Vec<Rel>) -> Option<()> {
        self.factor(&twj.relation, rels)?;
        for j in &twj.joins {
            let start = rels.len();
            self.factor(&j.relation, rels)?;
            let constraint = crate::walk::adql_join_constraint!(&j.join_operator)?;
            let hidden: Vec<String> = match constraint {
                JoinConstraint::Using(names) => names
                    .iter()
                    .filter_map(|n| match n.0.last() {
                        Some(ObjectNamePart::Identifier(id)) => Some(lower(id)),
                        _ => None,
                    })
                    .collect(),
                JoinConstraint::Natural => rels[..start]
                    .iter()
                    .flat_map(|r| r.columns.iter().filter(|(_, s)| *s).map(|(c, _)| c.clone()))
                    .filter(|c| {
                        rels[start..]
                            .iter()
                            .any(|r| r.columns.iter().any(|(rc, _)| rc == c))
                    })
                    .collect(),
                _ => vec![],
            };
            for r in &mut rels[start..] {
                for (c, shown) in &mut r.columns {
                    if hidden.contains(c) {
                        *shown = false;
                    }
                }
            }
        }
        Some(())
    }

    fn factor(&mut self, t: &TableFactor, rels: &mut Vec<Rel>) -> Option<()> {
        match t {
            TableFactor::Table { name, alias, .. } => {
                let parts = name_parts(name)?;
                let columns = match parts.as_slice() {
                    [one] if self.ctes.contains_key(one) => {
                        let cte = self.ctes.get(one)?.clone();
                        self.query(&cte)?
                    }
                    _ => {
                        let found = self.table(&parts)?;
                        found
                            .columns
                            .iter()
                            .map(|c| c.name.to_lowercase())
                            .collect()
                    }
                };
                rels.push(Rel::new(parts.last()?.clone(), columns, alias.as_ref()));
                Some(())
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let columns = self.query(subquery)?;
                rels.push(Rel::new(String::new(), columns, alias.as_ref()));
                Some(())
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.from(table_with_joins, rels),
            _ => None,
        }
    }
}

fn lower(id: &Ident) -> String {
    id.value.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Column, parse};

    fn schema() -> Vec<Table> {
        let t = |name: &str, cols: &[&str]| Table {
            schema: "ppdb".into(),
            name: name.into(),
            columns: cols
                .iter()
                .map(|c| Column {
                    name: c.to_string(),
                    unit: None,
                })
                .collect(),
            key: vec![],
        };
        let keyed = |mut table: Table, key: &[&str]| {
            table.key = key.iter().map(|k| k.to_string()).collect();
            table
        };
        vec![
            t("DiaObject", &["diaObjectId", "ra", "dec"]),
            t(
                "DiaSource",
                &["diaSourceId", "diaObjectId", "ra", "dec", "band"],
            ),
            keyed(
                t(
                    "DiaForcedSource",
                    &[
                        "diaForcedSourceId",
                        "diaObjectId",
                        "visit",
                        "detector",
                        "psfFlux",
                    ],
                ),
                &["diaObjectId", "visit", "detector"],
            ),
        ]
    }

    #[test]
    fn a_table_key_shown_in_the_output_is_the_whole_tie_break() {
        let p = pinned("SELECT * FROM ppdb.DiaForcedSource", true);
        assert!(p.adql.ends_with("ORDER BY 2, 3, 4"), "{}", p.adql);
        let p = pinned(
            "SELECT psfFlux, f.detector, visit AS v, diaObjectId FROM ppdb.DiaForcedSource AS f ORDER BY psfFlux DESC",
            true,
        );
        assert!(
            p.adql.ends_with("ORDER BY psfFlux DESC, 4, 3, 2"),
            "{}",
            p.adql
        );
        // The key not shown, shown only inside an expression, or rows grouped or
        // joined: every column is needed.
        for (q, order) in [
            (
                "SELECT TOP 5 visit, detector FROM ppdb.DiaForcedSource",
                "ORDER BY 1, 2",
            ),
            (
                "SELECT TOP 5 visit + 0 AS visit, detector, diaObjectId FROM ppdb.DiaForcedSource",
                "ORDER BY 1, 2, 3",
            ),
            (
                "SELECT TOP 5 visit, detector, diaObjectId, COUNT(*) FROM ppdb.DiaForcedSource GROUP BY visit, detector, diaObjectId",
                "ORDER BY 1, 2, 3, 4",
            ),
            (
                "SELECT TOP 5 f.visit, f.detector, f.diaObjectId FROM ppdb.DiaForcedSource AS f JOIN ppdb.DiaObject AS o ON o.diaObjectId = f.diaObjectId",
                "ORDER BY 1, 2, 3",
            ),
        ] {
            let p = pinned(q, true);
            assert!(p.adql.ends_with(order), "{q}: {}", p.adql);
        }
    }

    fn pinned(adql: &str, cut: bool) -> Pinned {
        let s = schema();
        let q = parse(adql, &s).unwrap();
        let p = pin(&q, &s, 7, cut).unwrap();
        // The pinned form is itself valid ADQL and reads the same snapshot.
        let again = parse(&p.adql, &s).unwrap_or_else(|e| panic!("{}: {e}", p.adql));
        assert_eq!(again.as_of, Some(crate::AsOf::Snapshot(7)), "{}", p.adql);
        // The planner's form the first run executes is what a replay parses.
        assert_eq!(
            p.query.statement.to_string(),
            again.statement.to_string(),
            "{}",
            p.adql
        );
        p
    }

    #[test]
    fn every_table_reads_the_snapshot() {
        let p = pinned(
            "SELECT o.ra FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource s ON s.diaObjectId = o.diaObjectId",
            false,
        );
        assert_eq!(
            p.adql.matches("FOR SYSTEM_TIME AS OF 7").count(),
            2,
            "{}",
            p.adql
        );
        assert!(!p.ordered);
    }

    #[test]
    fn an_explicit_snapshot_is_replaced_by_the_resolved_one() {
        let p = pinned(
            "SELECT ra FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF '2025-01-01'",
            false,
        );
        assert!(
            p.adql.contains("AS OF 7") && !p.adql.contains("2025"),
            "{}",
            p.adql
        );
    }

    #[test]
    fn top_gets_a_total_order_over_every_column() {
        let p = pinned("SELECT TOP 3 * FROM ppdb.DiaObject", false);
        assert!(p.adql.ends_with("ORDER BY 1, 2, 3"), "{}", p.adql);
        assert!(p.ordered);
    }

    #[test]
    fn user_order_comes_first_and_ties_are_broken() {
        let p = pinned(
            "SELECT ra, dec FROM ppdb.DiaObject ORDER BY dec DESC",
            false,
        );
        assert!(p.adql.ends_with("ORDER BY dec DESC, 1, 2"), "{}", p.adql);
        let p = pinned("SELECT ra, dec FROM ppdb.DiaObject ORDER BY 2", false);
        assert!(p.adql.ends_with("ORDER BY 2, 1"), "{}", p.adql);
    }

    #[test]
    fn a_cut_orders_the_top_level_only_when_asked() {
        assert!(!pinned("SELECT ra FROM ppdb.DiaObject", false).ordered);
        let p = pinned("SELECT ra FROM ppdb.DiaObject", true);
        assert!(p.ordered && p.adql.ends_with("ORDER BY 1"), "{}", p.adql);
    }

    #[test]
    fn using_and_natural_joins_show_join_columns_once() {
        let p = pinned(
            "SELECT TOP 1 * FROM ppdb.DiaObject JOIN ppdb.DiaSource USING (diaObjectId)",
            false,
        );
        assert!(
            p.adql.ends_with("ORDER BY 1, 2, 3, 4, 5, 6, 7"),
            "{}",
            p.adql
        );
        let p = pinned(
            "SELECT TOP 1 * FROM ppdb.DiaObject NATURAL JOIN ppdb.DiaSource",
            false,
        );
        assert!(p.adql.ends_with("ORDER BY 1, 2, 3, 4, 5"), "{}", p.adql);
        let p = pinned(
            "SELECT TOP 1 s.* FROM ppdb.DiaObject o JOIN ppdb.DiaSource s USING (diaObjectId)",
            false,
        );
        assert!(p.adql.ends_with("ORDER BY 1, 2, 3, 4, 5"), "{}", p.adql);
    }

    #[test]
    fn nested_tops_are_ordered_where_they_are() {
        let p = pinned(
            "WITH c AS (SELECT TOP 2 ra FROM ppdb.DiaObject) \
             SELECT * FROM c WHERE ra IN (SELECT TOP 1 ra FROM ppdb.DiaSource) \
             UNION SELECT TOP 1 dec FROM ppdb.DiaObject",
            false,
        );
        assert_eq!(p.adql.matches("ORDER BY 1").count(), 3, "{}", p.adql);
        assert!(!p.adql.contains("c FOR SYSTEM_TIME"), "{}", p.adql);
        assert!(!p.ordered);
    }

    #[test]
    fn hex_literals_stay_adql() {
        let p = pinned(
            "SELECT ra FROM ppdb.DiaObject WHERE diaObjectId = 0xFF",
            false,
        );
        assert!(p.adql.contains("= 255"), "{}", p.adql);
    }
}
