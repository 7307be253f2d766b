//! The allow-list walk: every node of the syntax tree is either an ADQL 2.1
//! construct (checked, names resolved, rewritten for the planner) or a refusal
//! with its position.
//!
//! The walk runs twice over the query. The first pass collects the names the
//! query may use (columns of the tables it reads, and every alias it defines,
//! wherever it defines it); the second checks and rewrites. Scoping is left to
//! the planner: this walk only decides what a name is spelled like.

use std::collections::HashMap;

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

use sqlparser::ast::{Spanned, Statement};
use sqlparser::tokenizer::Span;

use crate::{AsOf, Error, MAX_NESTING, MAX_OPERATIONS, Query, SchemaInfo, Table};

mod expr;
mod function;
mod geometry;
mod names;
mod query;
mod relation;
mod select;

use expr::*;
use function::*;
use geometry::*;

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
    /// Output columns times GROUP BY keys, over all SELECTs (see [`crate::MAX_GROUPED`]).
    grouped: usize,
    /// How many times, as a power of two, the planner will write out the
    /// expression being walked (see [`Walker::copied`]).
    copies: u32,
    /// Operations in all expressions walked (see [`Query::operations`]).
    operations: usize,
    /// How deep the expression being walked is in functions and operators.
    nesting: usize,
    /// Steps of the engine's geometry one row takes (see [`Query::geometry_steps`]).
    geometry_steps: usize,
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
        grouped: 0,
        copies: 0,
        operations: 0,
        nesting: 0,
        geometry_steps: 0,
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
        operations: w.operations,
        geometry_steps: w.geometry_steps,
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

#[cfg(test)]
mod budget_tests;

#[cfg(test)]
mod tests;
