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
            operations: query.operations,
            geometry_steps: query.geometry_steps,
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

mod columns;
#[cfg(test)]
mod tests;

use columns::Shape;
