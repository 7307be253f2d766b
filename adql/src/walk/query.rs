//! Queries and set operations: WITH, UNION/INTERSECT/EXCEPT, ORDER BY, TOP
//! (rewritten as LIMIT), and what ADQL does not have.

use sqlparser::ast::{
    Expr, LimitClause, Offset, OffsetRows, OrderByKind, Query as SqlQuery, SetExpr, SetOperator,
    SetQuantifier, Spanned, Value, ValueWithSpan,
};

use crate::Error;

use super::*;

impl Walker<'_> {
    pub(super) fn query(&mut self, q: &mut SqlQuery) -> Result<()> {
        if self.depth >= crate::MAX_SUBQUERY_DEPTH {
            // Planning time grows steeply with nesting (30 nested IN subqueries
            // planned for more than 30 s), and no deadline reaches planning.
            return Err(Error::at(
                q.span(),
                format!(
                    "the query is nested too deeply: subqueries more than {} deep",
                    crate::MAX_SUBQUERY_DEPTH
                ),
            )
            .hint("join the tables instead of nesting subqueries"));
        }
        self.depth += 1;
        let walked = self.query_body(q);
        self.depth -= 1;
        walked
    }

    pub(super) fn query_body(&mut self, q: &mut SqlQuery) -> Result<()> {
        let span = q.span();
        if let Some(with) = &mut q.with {
            if self.depth > 1 {
                // ADQL 2.1's grammar has WITH only in front of the whole query.
                return Err(Error::at(
                    with.with_token.0.span,
                    "WITH may only start the whole query, not a subquery",
                )
                .hint("move the common table expression to the front of the query"));
            }
            if with.recursive {
                return Err(not_adql(with.with_token.0.span, "WITH RECURSIVE"));
            }
            check_expansion(with, &q.body)?;
            for cte in &mut with.cte_tables {
                if cte.from.is_some() || cte.materialized.is_some() {
                    return Err(not_adql(cte.alias.name.span, "MATERIALIZED"));
                }
                self.table_alias(&cte.alias)?;
                if self.collecting() {
                    self.ctes.insert(
                        cte.alias.name.value.to_lowercase(),
                        cte.alias.name.value.clone(),
                    );
                }
                self.query(&mut cte.query)?;
            }
        } else if self.depth == 1 && reads(&q.body, &HashMap::new()) > crate::MAX_READS {
            return Err(Error::at(
                span,
                format!("the query reads more than {} tables", crate::MAX_READS),
            )
            .hint("planning time grows steeply with the tables joined; split the query"));
        }
        if q.fetch.is_some() {
            return Err(not_adql(span, "FETCH").hint("use SELECT TOP n"));
        }
        if !q.locks.is_empty() || q.for_clause.is_some() {
            return Err(not_adql(span, "FOR UPDATE / FOR XML"));
        }
        if q.settings.is_some() || q.format_clause.is_some() || !q.pipe_operators.is_empty() {
            return Err(not_adql(span, "this clause"));
        }
        let top = self.set_expr(&mut q.body)?;
        if let Some(ob) = &mut q.order_by {
            if ob.interpolate.is_some() {
                return Err(not_adql(span, "INTERPOLATE"));
            }
            match &mut ob.kind {
                OrderByKind::All(_) => return Err(not_adql(span, "ORDER BY ALL")),
                OrderByKind::Expressions(exprs) => {
                    for o in exprs {
                        if o.with_fill.is_some() {
                            return Err(not_adql(o.expr.span(), "WITH FILL"));
                        }
                        self.expr(&mut o.expr)?;
                    }
                }
            }
        }
        let offset = match q.limit_clause.take() {
            None => None,
            Some(LimitClause::LimitOffset { limit: Some(l), .. }) => {
                return Err(not_adql(l.span(), "LIMIT").hint("ADQL limits rows with SELECT TOP n"));
            }
            Some(LimitClause::OffsetCommaLimit { limit, .. }) => {
                return Err(
                    not_adql(limit.span(), "LIMIT").hint("ADQL limits rows with SELECT TOP n")
                );
            }
            Some(LimitClause::LimitOffset {
                limit: None,
                offset,
                limit_by,
            }) => {
                if let Some(e) = limit_by.first() {
                    return Err(not_adql(e.span(), "LIMIT BY"));
                }
                match offset {
                    Some(Offset { value, .. }) => {
                        let span = value.span();
                        match &value {
                            Expr::Value(ValueWithSpan {
                                value: Value::Number(n, _),
                                ..
                            }) if n.parse::<u64>().is_ok() => Some(value),
                            _ => {
                                return Err(Error::at(span, "OFFSET takes a non-negative integer"));
                            }
                        }
                    }
                    None => None,
                }
            }
        };
        if top.is_some() || offset.is_some() {
            q.limit_clause = Some(LimitClause::LimitOffset {
                limit: top.map(number),
                offset: offset.map(|value| Offset {
                    value,
                    rows: OffsetRows::None,
                }),
                limit_by: vec![],
            });
        }
        Ok(())
    }

    /// Walks a query body; returns the `TOP` of its `SELECT`, which the caller applies.
    pub(super) fn set_expr(&mut self, body: &mut SetExpr) -> Result<Option<u64>> {
        match body {
            SetExpr::Select(s) => self.select(s),
            SetExpr::Query(q) => {
                self.query(q)?;
                Ok(None)
            }
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                if *op == SetOperator::Minus {
                    return Err(not_adql(left.span(), "MINUS").hint("use EXCEPT"));
                }
                if *set_quantifier == SetQuantifier::All && *op != SetOperator::Union {
                    // DataFusion 55 plans these as semi/anti joins, which get the
                    // duplicate counts wrong; refusing beats a wrong answer.
                    return Err(
                        Error::at(right.span(), format!("{op} ALL is not supported yet"))
                            .hint(format!("{op} without ALL is; UNION ALL is too")),
                    );
                }
                if !matches!(
                    set_quantifier,
                    SetQuantifier::All | SetQuantifier::Distinct | SetQuantifier::None
                ) {
                    return Err(not_adql(right.span(), "BY NAME"));
                }
                for side in [left, right] {
                    if let Some(top) = self.set_expr(side)? {
                        // TOP binds to its own SELECT: keep it there as a parenthesised query.
                        let placeholder = SetExpr::Values(sqlparser::ast::Values {
                            explicit_row: false,
                            value_keyword: false,
                            rows: vec![],
                        });
                        let inner = std::mem::replace(&mut **side, placeholder);
                        **side = SetExpr::Query(Box::new(SqlQuery {
                            with: None,
                            body: Box::new(inner),
                            order_by: None,
                            limit_clause: Some(LimitClause::LimitOffset {
                                limit: Some(number(top)),
                                offset: None,
                                limit_by: vec![],
                            }),
                            fetch: None,
                            locks: vec![],
                            for_clause: None,
                            settings: None,
                            format_clause: None,
                            pipe_operators: vec![],
                        }));
                    }
                }
                Ok(None)
            }
            other => {
                Err(not_adql(other.span(), "this statement")
                    .hint("ADQL accepts a single SELECT query"))
            }
        }
    }
}

/// Refuses a query that reads more than [`crate::MAX_READS`] tables once its
/// WITH queries are written out where they are used, as the planner writes
/// them: each use reads one again, so a chain whose every member uses the one
/// before twice doubles at each step (sixteen such took 4 GB and a core for as
/// long as the server lived, planning no deadline can stop).
fn check_expansion(with: &sqlparser::ast::With, body: &SetExpr) -> Result<()> {
    let too_many = |span: Span, what: &str| {
        Error::at(
            span,
            format!(
                "{what} reads more than {} tables once the WITH queries it uses are written \
                 out (each use of one reads it again)",
                crate::MAX_READS
            ),
        )
        .hint("use each WITH query once, or join it once and refer to that")
    };
    let mut weights: HashMap<String, u64> = HashMap::new();
    for cte in &with.cte_tables {
        let reads = reads(&cte.query, &weights);
        if reads > crate::MAX_READS {
            return Err(too_many(
                cte.alias.name.span,
                &format!("WITH query {}", cte.alias.name.value),
            ));
        }
        weights.insert(cte.alias.name.value.to_lowercase(), reads);
    }
    if reads(body, &weights) > crate::MAX_READS {
        return Err(too_many(with.with_token.0.span, "the query"));
    }
    Ok(())
}

/// The tables `node` reads, a WITH query counting as the tables it reads.
fn reads<T: sqlparser::ast::Visit>(node: &T, weights: &HashMap<String, u64>) -> u64 {
    struct Count<'a> {
        weights: &'a HashMap<String, u64>,
        n: u64,
    }
    impl sqlparser::ast::Visitor for Count<'_> {
        type Break = ();
        fn pre_visit_relation(
            &mut self,
            name: &sqlparser::ast::ObjectName,
        ) -> std::ops::ControlFlow<()> {
            let weight = match name.0.as_slice() {
                [sqlparser::ast::ObjectNamePart::Identifier(id)] => self
                    .weights
                    .get(&id.value.to_lowercase())
                    .copied()
                    .unwrap_or(1),
                _ => 1,
            };
            self.n = self.n.saturating_add(weight);
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut count = Count { weights, n: 0 };
    let _ = node.visit(&mut count);
    count.n
}
