//! The allow-list walk: every node of the syntax tree is either an ADQL 2.1
//! construct (checked, names resolved, rewritten for the planner) or a refusal
//! with its position.
//!
//! The walk runs twice over the query. The first pass collects the names the
//! query may use (columns of the tables it reads, and every alias it defines,
//! wherever it defines it); the second checks and rewrites. Scoping is left to
//! the planner: this walk only decides what a name is spelled like.

use std::collections::{HashMap, HashSet};

/// The constraint of a join ADQL has (inner, outer, cross), or `None` for the
/// kinds it has not (semi, anti, ASOF, ...). A macro so that one list serves
/// shared and mutable borrows alike.
macro_rules! adql_join_constraint {
    ($op:expr) => {
        match $op {
            sqlparser::ast::JoinOperator::Join(c)
            | sqlparser::ast::JoinOperator::Inner(c)
            | sqlparser::ast::JoinOperator::Left(c)
            | sqlparser::ast::JoinOperator::LeftOuter(c)
            | sqlparser::ast::JoinOperator::Right(c)
            | sqlparser::ast::JoinOperator::RightOuter(c)
            | sqlparser::ast::JoinOperator::FullOuter(c)
            | sqlparser::ast::JoinOperator::CrossJoin(c) => Some(c),
            _ => None,
        }
    };
}
pub(crate) use adql_join_constraint;

use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DataType, DateTimeField, Distinct, Expr, Function,
    FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, GroupByExpr, Ident,
    Join, JoinConstraint, LimitClause, ObjectName, ObjectNamePart, Offset, OffsetRows, OrderByKind,
    Query as SqlQuery, Select, SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    SetOperator, SetQuantifier, Spanned, Statement, TableAlias, TableFactor, TableVersion,
    TableWithJoins, TopQuantity, UnaryOperator, Value, ValueWithSpan, WildcardAdditionalOptions,
};
use sqlparser::tokenizer::Span;

use crate::functions::{nearest, udf, unit_factor};
use crate::{AsOf, Error, Query, SchemaInfo, Table};

type Result<T> = std::result::Result<T, Error>;

/// Words that cannot be used as an unquoted name (ADQL 2.1 §2.1.3 and SQL-92).
const RESERVED: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "DESC",
    "DISTINCT",
    "ELSE",
    "END",
    "EXCEPT",
    "EXISTS",
    "FALSE",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "IN",
    "INNER",
    "INTERSECT",
    "IS",
    "JOIN",
    "LEFT",
    "LIKE",
    "ILIKE",
    "NATURAL",
    "NOT",
    "NULL",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "RIGHT",
    "SELECT",
    "THEN",
    "TOP",
    "TRUE",
    "UNION",
    "USING",
    "WHEN",
    "WHERE",
    "WITH",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Collect,
    Rewrite,
}

struct Walker<'a> {
    tables: &'a [Table],
    /// The query text, to place errors whose syntax node has no position.
    text: &'a str,
    pass: Pass,
    /// Names the query may use, lower-cased → spelling.
    names: HashMap<String, String>,
    /// Every spelling of each name (lower-cased → spellings), for a quoted
    /// name defined in more than one case (`ra` in a table, `"RA"` an alias).
    spellings: HashMap<String, Vec<String>>,
    /// The table each qualifier (an alias, or a table's own name) stands for,
    /// lower-cased; `None` where one qualifier names different tables.
    qualifiers: HashMap<String, Option<usize>>,
    /// Columns of the tables read, for hints.
    columns: Vec<String>,
    ctes: HashMap<String, String>,
    read: Vec<usize>,
    as_of: Option<(AsOf, Span)>,
    /// How deep in subqueries the walk is (0: the query itself).
    depth: usize,
    /// Columns the SELECT lists give, in all subqueries.
    outputs: usize,
}

/// Checks and rewrites one parsed statement.
pub(crate) fn check(adql: &str, statement: Statement, schema: &dyn SchemaInfo) -> Result<Query> {
    let mut query = match statement {
        Statement::Query(q) => q,
        other => {
            let word = adql
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_start_matches('(')
                .to_uppercase();
            let span = other.span();
            let span = if span.start.line == 0 {
                Span::new((1, 1).into(), (1, 1).into())
            } else {
                span
            };
            return Err(Error::at(
                span,
                format!("{word} is not allowed: ADQL accepts a single SELECT query"),
            ));
        }
    };
    let mut w = Walker {
        tables: schema.tables(),
        text: adql,
        pass: Pass::Collect,
        names: HashMap::new(),
        spellings: HashMap::new(),
        qualifiers: HashMap::new(),
        columns: Vec::new(),
        ctes: HashMap::new(),
        read: Vec::new(),
        as_of: None,
        depth: 0,
        outputs: 0,
    };
    let source = Statement::Query(query.clone());
    let mut scratch = query.clone();
    w.query(&mut scratch)?;
    w.pass = Pass::Rewrite;
    w.query(&mut query)?;
    let tables = w
        .read
        .iter()
        .map(|&i| (w.tables[i].schema.clone(), w.tables[i].name.clone()))
        .collect();
    Ok(Query {
        adql: adql.to_string(),
        statement: Statement::Query(query),
        as_of: w.as_of.map(|(a, _)| a),
        tables,
        source,
        text_width: 0,
        outputs: w.outputs,
    })
}

/// Where `needle` first appears in `text`, as a span of line and column (from 1).
fn locate(text: &str, needle: &str) -> Option<Span> {
    let (line, column) = crate::error::line_column(text, text.find(needle)?);
    Some(Span::new((line, column).into(), (line, column).into()))
}

fn not_adql(span: Span, what: &str) -> Error {
    Error::at(span, format!("{what} is not part of ADQL"))
}

fn number(n: impl ToString) -> Expr {
    Expr::Value(ValueWithSpan {
        value: Value::Number(n.to_string(), false),
        span: Span::empty(),
    })
}

fn string(s: &str) -> Expr {
    Expr::Value(ValueWithSpan {
        value: Value::SingleQuotedString(s.to_string()),
        span: Span::empty(),
    })
}

/// A call of an engine function (lower-case, unquoted, so the planner finds it).
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// The arguments of a call of `name` built by [`call`].
fn call_args<'e>(e: &'e Expr, name: &str) -> Option<Vec<&'e Expr>> {
    let Expr::Function(f) = e else { return None };
    if f.name.0.len() != 1 || f.name.to_string() != name {
        return None;
    }
    let FunctionArguments::List(l) = &f.args else {
        return None;
    };
    l.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// The two coordinates of a point expression.
fn split_point(e: Expr) -> (Expr, Expr) {
    if let Some(a) = call_args(&e, udf::POINT)
        && a.len() == 2
    {
        return (a[0].clone(), a[1].clone());
    }
    (
        call(udf::COORD1, vec![e.clone()]),
        call(udf::COORD2, vec![e]),
    )
}

fn is_point(e: &Expr) -> bool {
    call_args(e, udf::POINT).is_some_and(|a| a.len() == 2)
        || call_args(e, udf::CENTROID).is_some()
        || call_args(e, udf::HEALPIX_CENTER).is_some()
}

/// Whether an expression (as rewritten) makes a geometry value.
fn is_geometry(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_geometry(inner),
        e => [
            udf::POINT,
            udf::CIRCLE,
            udf::BOX,
            udf::POLYGON,
            udf::CENTROID,
            udf::HEALPIX_CENTER,
        ]
        .iter()
        .any(|name| call_args(e, name).is_some()),
    }
}

fn literal_string(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s),
            ..
        }) => Some(s),
        _ => None,
    }
}

impl Walker<'_> {
    fn collecting(&self) -> bool {
        self.pass == Pass::Collect
    }

    fn define(&mut self, id: &Ident) {
        if self.collecting() {
            self.learn(&id.value);
        }
    }

    /// Records a name the query may use, in the spelling it was defined with.
    fn learn(&mut self, spelling: &str) {
        let lower = spelling.to_lowercase();
        let all = self.spellings.entry(lower.clone()).or_default();
        if !all.iter().any(|s| s == spelling) {
            all.push(spelling.to_string());
        }
        self.names
            .entry(lower)
            .or_insert_with(|| spelling.to_string());
    }

    /// Gives the column of `qualifier.column` the spelling of that table's own
    /// column, when the qualifier names a table that has it: ADQL names ignore
    /// case, so `o.ra` is DiaObject's `ra` even when an upload beside it has
    /// `RA`. `false` when the qualifier says nothing about it.
    fn resolve_qualified(&self, qualifier: &Ident, column: &mut Ident) -> Result<bool> {
        let Some(Some(i)) = self.qualifiers.get(&qualifier.value.to_lowercase()) else {
            return Ok(false);
        };
        let Some(own) = self.tables[*i]
            .columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(&column.value))
        else {
            return Ok(false);
        };
        if column.quote_style.is_some() && own.name != column.value {
            return Err(Error::at(
                column.span,
                format!(
                    "quoted name \"{}\" does not match the case of {}",
                    column.value, own.name
                ),
            )
            .hint(format!(
                "quoted names are exact: write \"{}\", or leave it unquoted",
                own.name
            )));
        }
        column.value = own.name.clone();
        Ok(true)
    }

    fn check_alias(&self, id: &Ident) -> Result<()> {
        if id.quote_style.is_none() && RESERVED.contains(&id.value.to_uppercase().as_str()) {
            return Err(Error::at(
                id.span,
                format!(
                    "{} is a reserved word and cannot be used as a name",
                    id.value
                ),
            )
            .hint(format!("quote it (\"{}\") to use it as a name", id.value)));
        }
        Ok(())
    }

    /// Gives a name the spelling the schema or the query defined it with.
    fn resolve(&self, id: &mut Ident) -> Result<()> {
        if self.collecting() {
            return Ok(());
        }
        self.check_alias(id)?;
        let lower = id.value.to_lowercase();
        match (id.quote_style, self.names.get(&lower)) {
            (None, Some(spelling)) => {
                id.value = spelling.clone();
                Ok(())
            }
            (Some(_), Some(spelling)) if *spelling == id.value => Ok(()),
            (Some(_), Some(_))
                if self
                    .spellings
                    .get(&lower)
                    .is_some_and(|all| all.contains(&id.value)) =>
            {
                Ok(())
            }
            (Some(_), Some(spelling)) => Err(Error::at(
                id.span,
                format!(
                    "quoted name \"{}\" does not match the case of {spelling}",
                    id.value
                ),
            )
            .hint(format!(
                "quoted names are exact: write \"{spelling}\", or leave it unquoted"
            ))),
            (_, None) => {
                let near = nearest(&id.value, self.columns.iter().map(String::as_str));
                let e = Error::at(id.span, format!("unknown column '{}'", id.value));
                Err(if near.is_empty() {
                    e
                } else {
                    e.hint(format!("did you mean {}?", near.join(", ")))
                })
            }
        }
    }

    fn query(&mut self, q: &mut SqlQuery) -> Result<()> {
        self.depth += 1;
        let walked = self.query_body(q);
        self.depth -= 1;
        walked
    }

    fn query_body(&mut self, q: &mut SqlQuery) -> Result<()> {
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
    fn set_expr(&mut self, body: &mut SetExpr) -> Result<Option<u64>> {
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

    fn select(&mut self, s: &mut Select) -> Result<Option<u64>> {
        let span = s.select_token.0.span;
        if let Some(Distinct::On(_)) = s.distinct {
            return Err(not_adql(span, "DISTINCT ON"));
        }
        if !s.optimizer_hints.is_empty() || s.select_modifiers.is_some() {
            return Err(not_adql(span, "a SELECT modifier"));
        }
        if s.into.is_some() {
            return Err(not_adql(span, "SELECT INTO"));
        }
        if s.exclude.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || !s.named_window.is_empty()
            || s.qualify.is_some()
            || s.value_table_mode.is_some()
            || s.flavor != SelectFlavor::Standard
        {
            return Err(not_adql(span, "this SELECT clause"));
        }
        let top = match s.top.take() {
            None => None,
            Some(t) if t.with_ties || t.percent => {
                return Err(not_adql(span, "TOP ... PERCENT / WITH TIES"));
            }
            Some(t) => match t.quantity {
                Some(TopQuantity::Constant(n)) => Some(n),
                Some(TopQuantity::Expr(e)) => {
                    return Err(Error::at(e.span(), "TOP takes an integer literal"));
                }
                None => return Err(Error::at(span, "TOP takes an integer literal")),
            },
        };
        if s.from.is_empty() {
            return Err(
                Error::at(span, "a FROM clause is required: ADQL selects from tables")
                    .hint("TAP_SCHEMA.schemas has one row per schema"),
            );
        }
        for twj in &mut s.from {
            self.table_with_joins(twj)?;
        }
        crate::wildcard::expand_clashes(s, self.tables);
        // A name may appear once in a result: DataFusion refuses a projection
        // with two. Columns a wildcard brings in come first, so an explicit
        // column of the same name is renamed (`SELECT *, ra` gives `ra_2`).
        let mut used: HashSet<String> = HashSet::new();
        // Planning time grows faster than the width of a result: it is bounded.
        let mut width = 0usize;
        {
            for item in &s.projection {
                let qualifier = match item {
                    SelectItem::Wildcard(_) => None,
                    SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(name),
                        _,
                    ) => name.0.last().and_then(|p| p.as_ident()),
                    _ => {
                        width += 1;
                        too_wide(width, item)?;
                        continue;
                    }
                };
                for table in self.tables_of(&s.from, qualifier) {
                    width += table.columns.len();
                    used.extend(table.columns.iter().map(|c| c.name.to_lowercase()));
                }
                too_wide(width, item)?;
            }
        }
        if self.collecting() {
            self.outputs += s.projection.len();
        }
        for (i, item) in s.projection.iter_mut().enumerate() {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = match e {
                        Expr::Identifier(id) => Some(id.value.clone()),
                        Expr::CompoundIdentifier(ids) => ids.last().map(|id| id.value.clone()),
                        _ => None,
                    };
                    let auto = match e {
                        Expr::Function(f) => f.name.to_string().to_lowercase(),
                        _ => format!("col{}", i + 1),
                    };
                    self.expr(e)?;
                    // Re-read the name after resolution so that it carries the
                    // schema's spelling (collecting, the names known so far give it).
                    let resolved = match e {
                        Expr::Identifier(id) => Some(id.value.clone()),
                        Expr::CompoundIdentifier(ids) => ids.last().map(|id| id.value.clone()),
                        _ => None,
                    };
                    let base = match resolved.or(name) {
                        Some(n) if self.collecting() => {
                            self.names.get(&n.to_lowercase()).cloned().unwrap_or(n)
                        }
                        Some(n) => n,
                        None => auto,
                    };
                    let mut alias = base.clone();
                    let mut n = 2;
                    while !used.insert(alias.to_lowercase()) {
                        alias = format!("{base}_{n}");
                        n += 1;
                    }
                    if self.collecting() {
                        // An outer query may name a renamed column (`t.ra_2`).
                        if alias != base {
                            self.define(&Ident::new(alias));
                        }
                        continue;
                    }
                    let plain = matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                    if !plain || alias != base {
                        let expr = std::mem::replace(e, number(0));
                        *item = SelectItem::ExprWithAlias {
                            expr,
                            alias: Ident::with_quote('"', alias),
                        };
                    }
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    self.check_alias(alias)?;
                    self.define(alias);
                    self.expr(expr)?;
                    if !used.insert(alias.value.to_lowercase()) && !self.collecting() {
                        return Err(Error::at(
                            alias.span,
                            format!("the result already has a column named {}", alias.value),
                        )
                        .hint("give this column another alias"));
                    }
                }
                SelectItem::ExprWithAliases { expr, .. } => {
                    return Err(not_adql(expr.span(), "a multi-column alias"));
                }
                SelectItem::Wildcard(opts) => self.wildcard(opts)?,
                SelectItem::QualifiedWildcard(kind, opts) => {
                    self.wildcard(opts)?;
                    match kind {
                        SelectItemQualifiedWildcardKind::ObjectName(name) => {
                            self.object_name(name)?;
                        }
                        SelectItemQualifiedWildcardKind::Expr(e) => {
                            return Err(not_adql(e.span(), "this wildcard"));
                        }
                    }
                }
            }
        }
        if let Some(e) = &mut s.selection {
            self.expr(e)?;
        }
        match &mut s.group_by {
            GroupByExpr::All(_) => return Err(not_adql(span, "GROUP BY ALL")),
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(not_adql(span, "GROUP BY ... WITH"));
                }
                for e in exprs {
                    self.expr(e)?;
                }
            }
        }
        if let Some(e) = &mut s.having {
            self.expr(e)?;
        }
        Ok(top)
    }

    fn wildcard(&self, o: &WildcardAdditionalOptions) -> Result<()> {
        if o.opt_ilike.is_some()
            || o.opt_exclude.is_some()
            || o.opt_except.is_some()
            || o.opt_replace.is_some()
            || o.opt_rename.is_some()
            || o.opt_alias.is_some()
        {
            return Err(not_adql(o.wildcard_token.0.span, "this wildcard option"));
        }
        Ok(())
    }

    fn object_name(&self, name: &mut ObjectName) -> Result<()> {
        for part in &mut name.0 {
            match part {
                ObjectNamePart::Identifier(id) => self.resolve(id)?,
                ObjectNamePart::Function(f) => return Err(not_adql(f.name.span, "this name")),
            }
        }
        Ok(())
    }

    fn table_alias(&mut self, alias: &TableAlias) -> Result<()> {
        self.check_alias(&alias.name)?;
        self.define(&alias.name);
        for c in &alias.columns {
            if c.data_type.is_some() {
                return Err(not_adql(c.name.span, "a typed column alias"));
            }
            self.check_alias(&c.name)?;
            self.define(&c.name);
        }
        Ok(())
    }

    /// The catalog tables of a FROM clause a wildcard (qualified by an alias or
    /// table name, or not) selects from, after the clause was rewritten.
    /// Derived tables and common table expressions are left out: their columns
    /// are the planner's to know.
    fn tables_of(&self, from: &[TableWithJoins], qualifier: Option<&Ident>) -> Vec<&Table> {
        fn factors<'f>(twj: &'f TableWithJoins, out: &mut Vec<&'f TableFactor>) {
            for f in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
                match f {
                    TableFactor::NestedJoin {
                        table_with_joins,
                        alias: None,
                    } => factors(table_with_joins, out),
                    other => out.push(other),
                }
            }
        }
        let mut all = Vec::new();
        for twj in from {
            factors(twj, &mut all);
        }
        all.into_iter()
            .filter_map(|f| {
                let TableFactor::Table { name, alias, .. } = f else {
                    return None;
                };
                let [schema, table] = name.0.as_slice() else {
                    return None;
                };
                let (schema, table) = (schema.as_ident()?, table.as_ident()?);
                let found = self
                    .tables
                    .iter()
                    .find(|t| t.schema == schema.value && t.name == table.value)?;
                match qualifier {
                    None => Some(found),
                    Some(q) => {
                        let own = alias.as_ref().map_or(table, |a| &a.name);
                        own.value.eq_ignore_ascii_case(&q.value).then_some(found)
                    }
                }
            })
            .collect()
    }

    fn table_with_joins(&mut self, twj: &mut TableWithJoins) -> Result<()> {
        self.table_factor(&mut twj.relation)?;
        for j in &mut twj.joins {
            self.join(j)?;
        }
        Ok(())
    }

    fn join(&mut self, j: &mut Join) -> Result<()> {
        let span = j.relation.span();
        if j.global {
            return Err(not_adql(span, "GLOBAL JOIN"));
        }
        self.table_factor(&mut j.relation)?;
        let cross = matches!(j.join_operator, sqlparser::ast::JoinOperator::CrossJoin(_));
        let Some(constraint) = adql_join_constraint!(&mut j.join_operator) else {
            return Err(not_adql(span, "this kind of join"));
        };
        if matches!(constraint, JoinConstraint::None) && !cross {
            return Err(Error::at(span, "a JOIN needs ON or USING").hint(
                "join on a condition (JOIN t ON ...), on common columns (USING (...) or \
                 NATURAL JOIN), or write CROSS JOIN for every pair of rows",
            ));
        }
        match constraint {
            JoinConstraint::On(e) => self.expr(e),
            JoinConstraint::Using(names) => {
                for n in names {
                    self.object_name(n)?;
                }
                Ok(())
            }
            JoinConstraint::Natural | JoinConstraint::None => Ok(()),
        }
    }

    fn table_factor(&mut self, t: &mut TableFactor) -> Result<()> {
        match t {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_hints,
            } => {
                let span = name.span();
                if args.is_some() {
                    return Err(Error::at(
                        span,
                        format!("table functions such as {name}(...) are not part of ADQL"),
                    )
                    .hint("name a table, e.g. ppdb.DiaObject"));
                }
                if !with_hints.is_empty()
                    || *with_ordinality
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                    || !index_hints.is_empty()
                {
                    return Err(not_adql(span, "this table option"));
                }
                if let Some(a) = alias {
                    self.table_alias(a)?;
                }
                if let Some(v) = version.take() {
                    self.as_of(v)?;
                }
                let mut parts = Vec::with_capacity(name.0.len());
                for p in &name.0 {
                    match p {
                        ObjectNamePart::Identifier(id) => parts.push(id.clone()),
                        ObjectNamePart::Function(f) => {
                            return Err(not_adql(f.name.span, "this table name"));
                        }
                    }
                }
                if let [one] = parts.as_slice()
                    && let Some(spelling) = self.ctes.get(&one.value.to_lowercase())
                {
                    let mut id = one.clone();
                    id.value = spelling.clone();
                    *name = ObjectName::from(vec![id]);
                    return Ok(());
                }
                let i = self.table(&parts, span)?;
                let table = &self.tables[i];
                if self.collecting() {
                    if !self.read.contains(&i) {
                        self.read.push(i);
                    }
                    let (schema, name) = (table.schema.clone(), table.name.clone());
                    self.learn(&schema);
                    self.learn(&name);
                    let qualifier = alias.as_ref().map_or(&name, |a| &a.name.value);
                    let bound = self
                        .qualifiers
                        .entry(qualifier.to_lowercase())
                        .or_insert(Some(i));
                    if *bound != Some(i) {
                        *bound = None;
                    }
                    let columns: Vec<String> = self.tables[i]
                        .columns
                        .iter()
                        .map(|c| c.name.clone())
                        .collect();
                    for c in columns {
                        self.learn(&c);
                        if !self.columns.contains(&c) {
                            self.columns.push(c);
                        }
                    }
                }
                let schema_span = parts.first().map(|p| p.span).unwrap_or(span);
                let name_span = parts.last().map(|p| p.span).unwrap_or(span);
                *name = ObjectName::from(vec![
                    Ident {
                        value: table.schema.clone(),
                        quote_style: Some('"'),
                        span: schema_span,
                    },
                    Ident {
                        value: table.name.clone(),
                        quote_style: Some('"'),
                        span: name_span,
                    },
                ]);
                Ok(())
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                sample,
            } => {
                if *lateral || sample.is_some() {
                    return Err(not_adql(subquery.span(), "LATERAL"));
                }
                match alias {
                    Some(a) => self.table_alias(a)?,
                    None => {
                        return Err(
                            Error::at(subquery.span(), "a subquery in FROM needs a name")
                                .hint("name it: FROM (SELECT ...) AS t"),
                        );
                    }
                }
                self.query(subquery)
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if let Some(a) = alias {
                    self.table_alias(a)?;
                }
                self.table_with_joins(table_with_joins)
            }
            other => Err(not_adql(other.span(), "this kind of table reference")),
        }
    }

    /// Finds the table a `[schema.]table` name means.
    fn table(&self, parts: &[Ident], span: Span) -> Result<usize> {
        let (schema, name) = match parts {
            [name] => (None, name),
            [schema, name] => (Some(schema), name),
            // ADQL's catalog.schema.table: this service serves one catalog, by any name.
            [_catalog, schema, name] => (Some(schema), name),
            _ => {
                return Err(Error::at(
                    span,
                    "table names have at most three parts: catalog.schema.table",
                ));
            }
        };
        let fits = |want: &Ident, have: &str, exact: bool| {
            if exact || want.quote_style.is_some() {
                want.value == have
            } else {
                want.value.eq_ignore_ascii_case(have)
            }
        };
        let find = |exact: bool| -> Vec<usize> {
            (0..self.tables.len())
                .filter(|&i| {
                    let t = &self.tables[i];
                    schema.is_none_or(|s| fits(s, &t.schema, exact)) && fits(name, &t.name, exact)
                })
                .collect()
        };
        let found = find(false);
        match found.as_slice() {
            [i] => Ok(*i),
            [] => {
                let loose: Vec<usize> = (0..self.tables.len())
                    .filter(|&i| {
                        let t = &self.tables[i];
                        schema.is_none_or(|s| s.value.eq_ignore_ascii_case(&t.schema))
                            && name.value.eq_ignore_ascii_case(&t.name)
                    })
                    .collect();
                if let [i] = loose.as_slice() {
                    let t = &self.tables[*i];
                    return Err(Error::at(
                        span,
                        format!(
                            "quoted table name {} does not match the case of {}.{}",
                            parts
                                .iter()
                                .map(|p| p.to_string())
                                .collect::<Vec<_>>()
                                .join("."),
                            t.schema,
                            t.name
                        ),
                    )
                    .hint("quoted names are exact; leave them unquoted to ignore case"));
                }
                let full: Vec<String> = self
                    .tables
                    .iter()
                    .map(|t| format!("{}.{}", t.schema, t.name))
                    .collect();
                let wanted = parts
                    .iter()
                    .map(|p| p.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                let mut near = nearest(&wanted, full.iter().map(String::as_str));
                if near.is_empty() {
                    near = nearest(&name.value, self.tables.iter().map(|t| t.name.as_str()));
                }
                // sqlparser gives names in single quotes no position.
                let span = if span.start.line == 0 {
                    locate(self.text, &wanted).unwrap_or(span)
                } else {
                    span
                };
                let e = Error::at(span, format!("unknown table '{wanted}'"));
                Err(if near.is_empty() {
                    e.hint("the tables are listed in TAP_SCHEMA.tables")
                } else {
                    e.hint(format!("did you mean {}?", near.join(", ")))
                })
            }
            many => Err(
                Error::at(span, format!("table name '{}' is ambiguous", name.value)).hint(format!(
                    "qualify it: {}",
                    many.iter()
                        .map(|&i| format!("{}.{}", self.tables[i].schema, self.tables[i].name))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )),
            ),
        }
    }

    fn as_of(&mut self, v: TableVersion) -> Result<()> {
        let TableVersion::ForSystemTimeAsOf(e) = v else {
            return Err(Error::at(
                Span::empty(),
                "only FOR SYSTEM_TIME AS OF is supported",
            ));
        };
        let span = e.span();
        let wanted = match &e {
            Expr::Value(ValueWithSpan {
                value: Value::Number(n, _),
                ..
            }) => n.parse::<u64>().map(AsOf::Snapshot).map_err(|_| {
                Error::at(
                    span,
                    format!("snapshot number {n} is not a non-negative integer"),
                )
            })?,
            Expr::Value(ValueWithSpan {
                value: Value::SingleQuotedString(s),
                ..
            }) => AsOf::Time(s.clone()),
            _ => {
                return Err(Error::at(
                    span,
                    "FOR SYSTEM_TIME AS OF takes a snapshot number or a quoted UTC time",
                )
                .hint("e.g. FOR SYSTEM_TIME AS OF 12 or AS OF '2025-01-01T00:00:00Z'"));
            }
        };
        if self.collecting() {
            return Ok(());
        }
        match &self.as_of {
            Some((have, _)) if *have != wanted => Err(Error::at(
                span,
                "a query reads one snapshot: every FOR SYSTEM_TIME AS OF must name the same one",
            )),
            Some(_) => Ok(()),
            None => {
                self.as_of = Some((wanted, span));
                Ok(())
            }
        }
    }

    fn expr(&mut self, e: &mut Expr) -> Result<()> {
        let span = e.span();
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
                self.expr(expr)?;
                self.expr(low)?;
                self.expr(high)
            }
            Expr::InList { expr, list, .. } => {
                self.expr(expr)?;
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
                any, expr, pattern, ..
            }
            | Expr::ILike {
                any, expr, pattern, ..
            } => {
                if *any {
                    return Err(not_adql(span, "LIKE ANY"));
                }
                self.expr(expr)?;
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

    fn function(&mut self, e: &mut Expr, span: Span) -> Result<()> {
        let Expr::Function(f) = e else { return Ok(()) };
        let name_span = f.name.span();
        if f.name.0.len() != 1 {
            return Err(Error::at(name_span, format!("unknown function {}", f.name)));
        }
        let name = f.name.to_string();
        let upper = name.trim_matches('"').to_uppercase();
        if f.uses_odbc_syntax
            || !matches!(f.parameters, FunctionArguments::None)
            || f.filter.is_some()
            || f.null_treatment.is_some()
            || !f.within_group.is_empty()
        {
            return Err(not_adql(span, &format!("this form of {upper}")));
        }
        if f.over.is_some() {
            return Err(not_adql(span, "window functions (OVER)"));
        }
        let aggregate = matches!(upper.as_str(), "COUNT" | "AVG" | "MIN" | "MAX" | "SUM");
        let list = match &mut f.args {
            FunctionArguments::List(l) => l,
            FunctionArguments::None => {
                return Err(Error::at(name_span, format!("{upper} needs parentheses")));
            }
            FunctionArguments::Subquery(_) => {
                return Err(not_adql(span, "a subquery as the only argument"));
            }
        };
        if !list.clauses.is_empty() {
            return Err(not_adql(span, &format!("this clause in {upper}(...)")));
        }
        if list.duplicate_treatment.is_some() && !aggregate {
            return Err(not_adql(span, &format!("DISTINCT in {upper}(...)")));
        }
        let mut star = false;
        let mut args = Vec::with_capacity(list.args.len());
        for a in &mut list.args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => {
                    self.expr(x)?;
                    args.push(x.clone());
                }
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if upper == "COUNT" => star = true,
                _ => return Err(not_adql(span, &format!("this argument to {upper}"))),
            }
        }
        let arity = |ok: &[usize]| -> Result<()> {
            if ok.contains(&args.len()) {
                Ok(())
            } else {
                Err(Error::at(
                    name_span,
                    format!(
                        "{upper} takes {} argument{}, not {}",
                        ok.iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(" or "),
                        if ok == [1] { "" } else { "s" },
                        args.len()
                    ),
                ))
            }
        };
        let simple = match upper.as_str() {
            "ABS" => Some(("abs", &[1][..])),
            "CEILING" => Some(("ceil", &[1][..])),
            "DEGREES" => Some(("degrees", &[1][..])),
            "EXP" => Some(("exp", &[1][..])),
            "FLOOR" => Some(("floor", &[1][..])),
            // ADQL's LOG is the natural logarithm.
            "LOG" => Some(("ln", &[1][..])),
            "LOG10" => Some(("log10", &[1][..])),
            "PI" => Some(("pi", &[0][..])),
            "POWER" => Some(("power", &[2][..])),
            "RADIANS" => Some(("radians", &[1][..])),
            "ROUND" => Some(("round", &[1, 2][..])),
            "SQRT" => Some(("sqrt", &[1][..])),
            "TRUNCATE" => Some(("trunc", &[1, 2][..])),
            "ACOS" => Some(("acos", &[1][..])),
            "ASIN" => Some(("asin", &[1][..])),
            "ATAN" => Some(("atan", &[1][..])),
            "ATAN2" => Some(("atan2", &[2][..])),
            "COS" => Some(("cos", &[1][..])),
            "COT" => Some(("cot", &[1][..])),
            "SIN" => Some(("sin", &[1][..])),
            "TAN" => Some(("tan", &[1][..])),
            "LOWER" => Some(("lower", &[1][..])),
            "UPPER" => Some(("upper", &[1][..])),
            "COUNT" => Some(("count", &[0, 1][..])),
            "AVG" => Some(("avg", &[1][..])),
            "MIN" => Some(("min", &[1][..])),
            "MAX" => Some(("max", &[1][..])),
            "SUM" => Some(("sum", &[1][..])),
            _ => None,
        };
        if let Some((engine, ok)) = simple {
            if upper == "COUNT" {
                // COUNT(*) or COUNT(x), nothing else.
                if star != args.is_empty() || args.len() > 1 {
                    return Err(Error::at(name_span, "COUNT takes * or one argument"));
                }
            } else {
                arity(ok)?;
            }
            f.name = ObjectName::from(vec![Ident::new(engine)]);
            if matches!(upper.as_str(), "ROUND" | "TRUNCATE")
                && let FunctionArguments::List(l) = &mut f.args
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(n))) = l.args.get_mut(1)
            {
                // ADQL's n is an integer; the engine has no signature for a real one.
                *n = Expr::Cast {
                    kind: CastKind::Cast,
                    expr: Box::new(n.clone()),
                    data_type: sqlparser::ast::DataType::BigInt(None),
                    array: false,
                    format: None,
                };
            }
            return Ok(());
        }
        if self.collecting() {
            // Structure is checked in the rewrite pass, once names are known.
            return match upper.as_str() {
                "MOD" | "RAND" | "COALESCE" | "IN_UNIT" | "POINT" | "CIRCLE" | "BOX"
                | "POLYGON" | "REGION" | "CONTAINS" | "INTERSECTS" | "DISTANCE" | "AREA"
                | "CENTROID" | "COORD1" | "COORD2" | "COORDSYS" | "IVO_HEALPIX_INDEX"
                | "IVO_HEALPIX_CENTER" => Ok(()),
                _ => Err(self.unknown_function(&name, name_span)),
            };
        }
        let new = match upper.as_str() {
            "MOD" => {
                arity(&[2])?;
                Expr::Nested(Box::new(Expr::BinaryOp {
                    left: Box::new(args[0].clone()),
                    op: BinaryOperator::Modulo,
                    right: Box::new(args[1].clone()),
                }))
            }
            "RAND" => {
                if !args.is_empty() {
                    return Err(Error::at(name_span, "RAND with a seed is not supported")
                        .hint("use RAND() without an argument"));
                }
                call("random", vec![])
            }
            "COALESCE" => {
                if args.is_empty() {
                    return Err(Error::at(name_span, "COALESCE takes at least one argument"));
                }
                call("coalesce", args)
            }
            "IN_UNIT" => {
                arity(&[2])?;
                self.in_unit(&args[0], &args[1], name_span)?
            }
            "POINT" => {
                let a = coordsys(args, &[2], &upper, name_span)?;
                call(udf::POINT, a)
            }
            "CIRCLE" => {
                let a = coordsys(args, &[2, 3], &upper, name_span)?;
                call(udf::CIRCLE, flatten_points(a, 1))
            }
            "BOX" => {
                let a = coordsys(args, &[3, 4], &upper, name_span)?;
                call(udf::BOX, flatten_points(a, 2))
            }
            "POLYGON" => {
                let mut a = args;
                strip_coordsys(&mut a)?;
                let vertices: Vec<Expr> = if a.iter().any(is_point) || a.len() < 6 {
                    if a.len() < 3 {
                        return Err(Error::at(
                            name_span,
                            "POLYGON needs at least three vertices",
                        ));
                    }
                    a.into_iter()
                        .flat_map(|p| {
                            let (x, y) = split_point(p);
                            [x, y]
                        })
                        .collect()
                } else {
                    if a.len() % 2 != 0 {
                        return Err(Error::at(
                            name_span,
                            "POLYGON takes pairs of coordinates (ra1, dec1, ra2, dec2, ...)",
                        ));
                    }
                    a
                };
                call(udf::POLYGON, vertices)
            }
            "REGION" => {
                return Err(Error::at(name_span, "REGION is not supported")
                    .hint("write the shape with POINT, CIRCLE, BOX or POLYGON"));
            }
            "CONTAINS" | "INTERSECTS" => {
                arity(&[2])?;
                let (a, b) = (args[0].clone(), args[1].clone());
                let circle = |x: &Expr| {
                    call_args(x, udf::CIRCLE)
                        .filter(|c| c.len() == 3)
                        .map(|c| c.into_iter().cloned().collect::<Vec<_>>())
                };
                let cone = |p: Expr, c: Vec<Expr>| {
                    let (x, y) = split_point(p);
                    call(
                        udf::CONE,
                        vec![x, y, c[0].clone(), c[1].clone(), c[2].clone()],
                    )
                };
                if is_point(&a)
                    && let Some(c) = circle(&b)
                {
                    cone(a, c)
                } else if upper == "INTERSECTS"
                    && is_point(&b)
                    && let Some(c) = circle(&a)
                {
                    cone(b, c)
                } else if upper == "INTERSECTS" && is_point(&b) {
                    call(udf::CONTAINS, vec![b, a])
                } else if upper == "INTERSECTS" && !is_point(&a) {
                    call(udf::INTERSECTS, vec![a, b])
                } else {
                    call(udf::CONTAINS, vec![a, b])
                }
            }
            "DISTANCE" => {
                arity(&[2, 4])?;
                let four = if args.len() == 4 {
                    args
                } else {
                    let (a, b) = split_point(args[0].clone());
                    let (c, d) = split_point(args[1].clone());
                    vec![a, b, c, d]
                };
                call(udf::DISTANCE, four)
            }
            "AREA" => {
                arity(&[1])?;
                call(udf::AREA, args)
            }
            "CENTROID" => {
                arity(&[1])?;
                call(udf::CENTROID, args)
            }
            "COORD1" | "COORD2" => {
                arity(&[1])?;
                let (x, y) = split_point(args[0].clone());
                if upper == "COORD1" { x } else { y }
            }
            "COORDSYS" => {
                arity(&[1])?;
                string("ICRS")
            }
            "IVO_HEALPIX_INDEX" => {
                arity(&[2, 3])?;
                let mut a = args;
                if a.len() == 2 {
                    let (x, y) = split_point(a.pop().unwrap_or_else(|| number(0)));
                    a.push(x);
                    a.push(y);
                }
                call(udf::HEALPIX_INDEX, a)
            }
            "IVO_HEALPIX_CENTER" => {
                arity(&[2])?;
                call(udf::HEALPIX_CENTER, args)
            }
            _ => return Err(self.unknown_function(&name, name_span)),
        };
        *e = new;
        Ok(())
    }

    fn unknown_function(&self, name: &str, span: Span) -> Error {
        let near = nearest(name, crate::FUNCTIONS.iter().map(|f| f.name));
        let e = Error::at(span, format!("unknown function {name}"));
        if near.is_empty() {
            e.hint("ADQL functions and the service's UDFs are listed in its capabilities")
        } else {
            e.hint(format!("did you mean {}?", near.join(", ")))
        }
    }

    /// `IN_UNIT(column, 'unit')`: the column times the factor from its unit to the one asked for.
    fn in_unit(&self, value: &Expr, unit: &Expr, span: Span) -> Result<Expr> {
        let Some(to) = literal_string(unit) else {
            return Err(Error::at(
                unit.span(),
                "IN_UNIT takes the unit as a string literal",
            ));
        };
        let column = match value {
            Expr::Identifier(id) => id,
            Expr::CompoundIdentifier(ids) if !ids.is_empty() => &ids[ids.len() - 1],
            _ => {
                return Err(Error::at(
                    value.span(),
                    "IN_UNIT converts a column; its unit must be known",
                ));
            }
        };
        let units: HashSet<Option<&str>> = self
            .read
            .iter()
            .flat_map(|&i| self.tables[i].columns.iter())
            .filter(|c| c.name == column.value)
            .map(|c| c.unit.as_deref())
            .collect();
        let from = match units.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(u)] => u.to_string(),
            [None] => {
                return Err(Error::at(
                    span,
                    format!("column {} has no unit", column.value),
                ));
            }
            [] => {
                return Err(Error::at(
                    value.span(),
                    "IN_UNIT converts a column; its unit must be known",
                ));
            }
            _ => {
                return Err(Error::at(
                    span,
                    format!(
                        "column {} has different units in different tables",
                        column.value
                    ),
                ));
            }
        };
        let Some(factor) = unit_factor(&from, to) else {
            return Err(Error::at(
                unit.span(),
                format!("cannot convert {} from '{from}' to '{to}'", column.value),
            ));
        };
        Ok(Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(value.clone()),
            op: BinaryOperator::Multiply,
            right: Box::new(number(format!("{factor:e}"))),
        })))
    }
}

fn check_coordsys(e: &Expr) -> Result<()> {
    if let Some(s) = literal_string(e) {
        let u = s.trim().to_uppercase();
        if u.is_empty() || u == "ICRS" || u.starts_with("ICRS ") {
            return Ok(());
        }
        return Err(Error::at(
            e.span(),
            format!("coordinate system '{s}' is not supported"),
        )
        .hint("positions are ICRS: write 'ICRS' or leave the argument out"));
    }
    Ok(())
}

/// Drops a leading coordinate-system string, checking that it is ICRS.
fn strip_coordsys(args: &mut Vec<Expr>) -> Result<()> {
    if args.first().and_then(literal_string).is_some() {
        let sys = args.remove(0);
        check_coordsys(&sys)?;
    }
    Ok(())
}

/// Drops a leading coordinate-system string and checks the count of what is left.
fn coordsys(mut args: Vec<Expr>, counts: &[usize], name: &str, span: Span) -> Result<Vec<Expr>> {
    strip_coordsys(&mut args)?;
    if !counts.contains(&args.len()) {
        return Err(Error::at(
            span,
            format!(
                "{name} takes {} arguments (after the optional coordinate system), not {}",
                counts
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
                args.len()
            ),
        ));
    }
    Ok(args)
}

/// Replaces a leading point argument by its two coordinates when the call used one
/// (`CIRCLE(p, r)` rather than `CIRCLE(ra, dec, r)`); `rest` is how many follow the centre.
fn flatten_points(mut args: Vec<Expr>, rest: usize) -> Vec<Expr> {
    if args.len() == rest + 1 {
        let (x, y) = split_point(args.remove(0));
        args.insert(0, y);
        args.insert(0, x);
    }
    args
}

fn check_cast_type(t: &DataType, span: Span) -> Result<()> {
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

/// Refuses a select list once it has more than [`crate::MAX_COLUMNS`] columns.
fn too_wide(width: usize, item: &SelectItem) -> Result<()> {
    if width <= crate::MAX_COLUMNS {
        return Ok(());
    }
    Err(Error::at(
        item.span(),
        format!(
            "the result would have more than {} columns; this item is past the limit",
            crate::MAX_COLUMNS
        ),
    )
    .hint("select the columns you need by name"))
}

#[cfg(test)]
mod tests {
    use crate::{AsOf, Column, Table, parse};

    fn schema() -> Vec<Table> {
        let col = |n: &str, u: Option<&str>| Column {
            name: n.into(),
            unit: u.map(Into::into),
        };
        vec![
            Table {
                schema: "ppdb".into(),
                name: "DiaObject".into(),
                columns: vec![
                    col("diaObjectId", None),
                    col("ra", Some("deg")),
                    col("dec", Some("deg")),
                    col("g_psfFluxMean", Some("nJy")),
                ],
                key: vec![],
            },
            Table {
                schema: "ppdb".into(),
                name: "DiaSource".into(),
                columns: vec![
                    col("diaSourceId", None),
                    col("diaObjectId", None),
                    col("ra", Some("deg")),
                    col("dec", Some("deg")),
                    col("midpointMjdTai", Some("d")),
                ],
                key: vec![],
            },
        ]
    }

    #[test]
    fn text_literals_stop_at_64_kib_in_all_with_the_place_of_the_one_past_it() {
        let half = "x".repeat(32 << 10);
        let ok = format!("SELECT '{half}' AS a, '{half}' AS b FROM ppdb.DiaObject");
        assert!(parse(&ok, &schema()).is_ok());
        let over = format!("SELECT '{half}' AS a, '{half}' AS b, 'y' AS c FROM ppdb.DiaObject");
        let e = parse(&over, &schema()).unwrap_err();
        assert!(e.message.contains("more than 64 KiB"), "{e}");
        let col = usize::try_from(e.column).unwrap();
        assert_eq!(&over[col - 1..col + 2], "'y'", "{e}");
    }

    #[test]
    fn operator_chains_stop_at_the_limit_with_the_place_of_the_one_too_many() {
        let chain = |n: usize| {
            let terms: Vec<String> = (0..n).map(|i| format!("ra = {i}")).collect();
            format!("SELECT ra FROM ppdb.DiaObject WHERE {}", terms.join(" OR "))
        };
        // n comparisons and n - 1 ORs.
        let at_limit = crate::MAX_OPERATORS.div_ceil(2);
        // The checking passes recurse as deep as the chain; the engine gives them
        // a grown stack, as this test does (a debug build needs more than 2 MiB).
        let long = chain(at_limit);
        std::thread::Builder::new()
            .stack_size(32 << 20)
            .spawn(move || assert!(parse(&long, &schema()).is_ok()))
            .unwrap()
            .join()
            .unwrap();
        let e = parse(&chain(at_limit + 1), &schema()).unwrap_err();
        assert!(e.message.contains("more than 500 operators"), "{e}");
        assert_eq!(e.line, 1);
        let text = chain(at_limit + 1);
        let col = usize::try_from(e.column).unwrap();
        assert_eq!(&text[col - 1..col], "=", "{e}");
        assert!(e.hint.unwrap().contains("IN ("));
    }

    #[test]
    fn a_table_named_in_single_quotes_is_refused_at_its_place() {
        let e = parse("SELECT *\nFROM  '/etc/passwd'", &schema()).unwrap_err();
        assert_eq!((e.line, e.column), (2, 8), "{e}");
    }

    fn ok(q: &str) -> String {
        match parse(q, &schema()) {
            Ok(q) => q.statement.to_string(),
            Err(e) => panic!("{q}: {e}"),
        }
    }

    fn err(q: &str) -> crate::Error {
        match parse(q, &schema()) {
            Ok(x) => panic!("{q} was accepted as {}", x.statement),
            Err(e) => e,
        }
    }

    #[test]
    fn a_result_never_has_two_columns_of_one_name() {
        let s = ok("SELECT ra, RA FROM ppdb.DiaObject");
        assert!(s.contains("ra, ra AS \"ra_2\""), "{s}");
        // Columns a wildcard brings in keep their names; the explicit one moves.
        let s = ok("SELECT ra, * FROM ppdb.DiaObject");
        assert!(s.starts_with("SELECT ra AS \"ra_2\", *"), "{s}");
        let s = ok("SELECT o.*, s.ra FROM ppdb.DiaObject AS o, ppdb.DiaSource AS s");
        assert!(s.contains("s.ra AS \"ra_2\""), "{s}");
        let s = ok(
            "SELECT DiaSource.*, o.ra FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource USING (diaObjectId)",
        );
        assert!(s.contains("o.ra AS \"ra_2\""), "{s}");
        // Not when the wildcard is of another table.
        let s = ok("SELECT s.*, o.g_psfFluxMean FROM ppdb.DiaObject AS o, ppdb.DiaSource AS s");
        assert!(!s.contains("_2"), "{s}");
        // Wildcards that would bring in one name twice are written out, and
        // renamed as explicit columns are.
        let s = ok(
            "SELECT * FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s ON s.diaObjectId = o.diaObjectId",
        );
        assert!(!s.contains('*'), "{s}");
        assert!(s.contains("s.ra AS \"ra_2\""), "{s}");
        assert!(s.contains("s.diaObjectId AS \"diaObjectId_2\""), "{s}");
        let s = ok("SELECT o.*, s.* FROM ppdb.DiaObject AS o, ppdb.DiaSource AS s");
        assert!(s.contains("s.dec AS \"dec_2\""), "{s}");
        // A join that merges its columns shows them once: left to the planner.
        let s = ok("SELECT * FROM ppdb.DiaObject JOIN ppdb.DiaSource USING (diaObjectId)");
        assert!(s.contains('*'), "{s}");
        let e = err("SELECT ra AS x, dec AS X FROM ppdb.DiaObject");
        assert_eq!((e.line, e.column), (1, 24), "{e}");
        assert!(e.message.contains("already has a column named X"), "{e}");
        let e = err("SELECT *, dec AS ra FROM ppdb.DiaObject");
        assert_eq!((e.line, e.column), (1, 18), "{e}");
    }

    #[test]
    fn names_take_the_schema_spelling() {
        let s = ok("select diaobjectid, RA from PPDB.diaobject");
        assert!(s.contains("diaObjectId"), "{s}");
        assert!(s.contains("\"ppdb\".\"DiaObject\""), "{s}");
        let e = err("SELECT \"diaobjectid\" FROM ppdb.DiaObject");
        assert!(e.message.contains("does not match the case"), "{e}");
        assert_eq!((e.line, e.column), (1, 8));
    }

    #[test]
    fn a_qualified_column_takes_its_own_table_s_spelling() {
        // An upload spelled as astronomers spell it, beside the catalog's `ra`.
        let mut tables = schema();
        tables.push(Table {
            schema: "TAP_UPLOAD".into(),
            name: "pos".into(),
            columns: ["srcid", "RA", "DEC", "rad"]
                .iter()
                .map(|n| Column {
                    name: (*n).into(),
                    unit: None,
                })
                .collect(),
            key: vec![],
        });
        let q = parse(
            "SELECT t.srcid, o.diaObjectId FROM TAP_UPLOAD.pos AS t JOIN ppdb.DiaObject AS o \
             ON CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', t.ra, t.\"DEC\", t.rad)) = 1",
            &tables,
        )
        .expect("accepted");
        let s = q.statement.to_string();
        assert!(s.contains("o.ra") && s.contains("o.dec"), "{s}");
        assert!(s.contains("t.RA") && s.contains("t.\"DEC\""), "{s}");
        // A quoted alias spelled differently from a column of the same name.
        let q = parse(
            "SELECT s.\"RA\" FROM (SELECT ra AS \"RA\" FROM ppdb.DiaSource) AS s",
            &tables,
        );
        assert!(q.is_ok(), "{:?}", q.err());
        let e = parse("SELECT o.\"RA\" FROM ppdb.DiaObject AS o", &tables).unwrap_err();
        assert!(e.message.contains("does not match the case of ra"), "{e}");
    }

    #[test]
    fn unknown_names_get_a_hint_and_a_position() {
        let e = err("SELECT ra,\n  diaobjid FROM ppdb.DiaObject");
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.hint.unwrap().contains("diaObjectId"));
        let e = err("SELECT * FROM ppdb.DiaObjekt");
        assert!(e.hint.unwrap().contains("ppdb.DiaObject"));
    }

    #[test]
    fn top_becomes_a_limit_and_limit_is_refused() {
        assert!(ok("SELECT TOP 5 ra FROM ppdb.DiaObject").ends_with("LIMIT 5"));
        assert!(ok("SELECT TOP 5 ra FROM ppdb.DiaObject OFFSET 3").ends_with("LIMIT 5 OFFSET 3"));
        let e = err("SELECT ra FROM ppdb.DiaObject LIMIT 5");
        assert!(e.hint.unwrap().contains("TOP"));
        let e = err("SELECT TOP 5 DISTINCT ra FROM ppdb.DiaObject");
        assert!(e.message.contains("DISTINCT"), "{e}");
    }

    #[test]
    fn one_select_only() {
        for q in [
            "DROP TABLE ppdb.DiaObject",
            "INSERT INTO ppdb.DiaObject VALUES (1)",
            "SELECT 1; SELECT 2",
            "SELECT * FROM read_parquet('/etc/passwd')",
            "COPY ppdb.DiaObject TO '/tmp/x'",
            "SET x = 1",
            "EXPLAIN SELECT 1",
        ] {
            let e = err(q);
            assert!(e.line >= 1, "{q}: {e}");
        }
        assert!(
            err("SELECT version() FROM ppdb.DiaObject")
                .message
                .contains("unknown function")
        );
    }

    #[test]
    fn time_travel_is_taken_out_and_must_agree() {
        let q = parse(
            "SELECT o.ra FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF 3 AS o",
            &schema(),
        );
        // sqlparser puts the alias before the version clause; both orders are tried.
        let q = q.or_else(|_| {
            parse(
                "SELECT o.ra FROM ppdb.DiaObject AS o FOR SYSTEM_TIME AS OF 3",
                &schema(),
            )
        });
        let q = q.unwrap();
        assert_eq!(q.as_of, Some(AsOf::Snapshot(3)));
        assert!(!q.statement.to_string().contains("SYSTEM_TIME"));
        let e = err(
            "SELECT * FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF 3 NATURAL JOIN ppdb.DiaSource FOR SYSTEM_TIME AS OF 4",
        );
        assert!(e.message.contains("one snapshot"), "{e}");
    }

    #[test]
    fn geometry_becomes_udfs() {
        let s = ok(
            "SELECT ra FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 10, 20, 0.5)) = 1",
        );
        assert!(s.contains("adql_cone(ra, dec, 10, 20, 0.5) = 1"), "{s}");
        let s = ok("SELECT DISTANCE(POINT(ra, dec), POINT(1, 2)) FROM ppdb.DiaObject");
        assert!(s.contains("adql_distance(ra, dec, 1, 2)"), "{s}");
        let e = err(
            "SELECT ra FROM ppdb.DiaObject WHERE CONTAINS(POINT('GALACTIC', ra, dec), CIRCLE(1, 2, 3)) = 1",
        );
        assert!(e.message.contains("GALACTIC"));
        assert!(
            err("SELECT REGION('x') FROM ppdb.DiaObject")
                .message
                .contains("REGION")
        );
    }

    #[test]
    fn in_unit_uses_the_column_unit() {
        let s = ok("SELECT IN_UNIT(ra, 'arcsec') FROM ppdb.DiaObject");
        assert!(s.contains("ra * 3.6e3"), "{s}");
        assert!(
            err("SELECT IN_UNIT(ra, 'nJy') FROM ppdb.DiaObject")
                .message
                .contains("cannot convert")
        );
    }

    #[test]
    fn hex_literals_are_integers() {
        assert!(ok("SELECT diaObjectId & 0xFF FROM ppdb.DiaObject").contains("& 255"));
    }
}
