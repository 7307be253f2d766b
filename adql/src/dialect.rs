//! The ADQL dialect for sqlparser.

use std::cell::Cell;

use sqlparser::ast::Expr;
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Location;

/// ADQL 2.1 lexical rules: regular identifiers start with a letter, delimited
/// ones are double-quoted, strings use only `''` escapes, and tables may carry
/// `FOR SYSTEM_TIME AS OF` (our time-travel extension).
///
/// A dialect made with [`AdqlDialect::with_budget`] also bounds the parser's
/// work: sqlparser parses some constructs speculatively and, when that fails,
/// parses the same tokens again another way, at every level of nesting, so a
/// few hundred bytes can take it hours (the fuzzer found several such inputs).
/// Once the budget is spent the parse stops with an error, in time linear in
/// the length of the query.
#[derive(Debug, Default)]
pub struct AdqlDialect {
    /// The most parser steps allowed; `None` for no bound.
    budget: Option<u64>,
    /// Parser steps taken so far.
    steps: Cell<u64>,
    /// Where the parser was when the budget ran out.
    exhausted_at: Cell<Option<Location>>,
}

impl AdqlDialect {
    /// A dialect that stops the parser after `steps` steps (expression
    /// prefixes and operators read, counting every speculative attempt).
    pub fn with_budget(steps: u64) -> Self {
        AdqlDialect {
            budget: Some(steps),
            ..AdqlDialect::default()
        }
    }

    /// How many steps the parser has taken with this dialect.
    pub fn steps(&self) -> u64 {
        self.steps.get()
    }

    /// Where the parser stood when its budget ran out, if it did.
    pub fn exhausted_at(&self) -> Option<Location> {
        self.exhausted_at.get()
    }

    /// Counts one step; an error once the budget is spent. The error is the
    /// one sqlparser passes through its speculative attempts unchanged.
    fn step(&self, parser: &Parser) -> Option<ParserError> {
        let steps = self.steps.get();
        if self.budget.is_some_and(|b| steps >= b) {
            if self.exhausted_at.get().is_none() {
                self.exhausted_at
                    .set(Some(parser.peek_token_ref().span.start));
            }
            return Some(ParserError::RecursionLimitExceeded);
        }
        self.steps.set(steps + 1);
        None
    }
}

impl Dialect for AdqlDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_ascii_alphabetic()
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_ascii_alphanumeric() || ch == '_'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '"'
    }

    /// ADQL 2.1 §2.2: string literals separated only by whitespace or comments
    /// are one literal (`'qua' -- c` then `'tsch'` is `'quatsch'`).
    fn supports_string_literal_concatenation(&self) -> bool {
        true
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn supports_string_literal_backslash_escape(&self) -> bool {
        false
    }

    // ADQL reserves every SQL keyword, so a keyword whose own syntax failed
    // (`CAST(x`, `INTERVAL ...`) is an error, not a name to retry. sqlparser's
    // retry reparses everything inside, at every level: `CAST(CAST(...` 24 deep
    // took 37 s to refuse, found by the fuzzer.
    fn is_reserved_for_identifier(&self, _keyword: Keyword) -> bool {
        true
    }

    // The two hooks sqlparser calls for every expression it starts and every
    // operator it looks for: where the budget is counted.
    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        self.step(parser).map(Err)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.step(parser).map(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_stops_the_parse_where_it_stood() {
        let sql = "SELECT a + b + c FROM t";
        let parse = |d: &AdqlDialect| Parser::new(d).try_with_sql(sql)?.parse_statements();
        let unbounded = AdqlDialect::default();
        assert!(parse(&unbounded).is_ok());
        assert!(unbounded.steps() > 3);
        assert!(parse(&AdqlDialect::with_budget(unbounded.steps())).is_ok());
        let d = AdqlDialect::with_budget(3);
        assert_eq!(parse(&d), Err(ParserError::RecursionLimitExceeded));
        let at = d.exhausted_at().expect("the budget ran out");
        assert_eq!(at.line, 1);
        assert!(at.column > 8, "{at}");
    }

    /// Steps per token (whitespace included) an ordinary query takes.
    fn steps_per_token(sql: &str) -> f64 {
        let d = AdqlDialect::default();
        let tokens = sqlparser::tokenizer::Tokenizer::new(&d, sql)
            .tokenize()
            .unwrap()
            .len();
        Parser::new(&d)
            .with_recursion_limit(200)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements())
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
        d.steps() as f64 / tokens as f64
    }

    #[test]
    fn deeply_nested_valid_queries_stay_far_inside_the_budget() {
        let nest = |open: &str, inner: &str, close: &str, n: usize| {
            format!("{}{inner}{}", open.repeat(n), close.repeat(n))
        };
        let queries = [
            format!(
                "SELECT * FROM {}",
                nest("(SELECT * FROM ", "t", ") AS s", 30)
            ),
            format!("SELECT * FROM t0{}", " JOIN t1 ON t0.a = t1.a".repeat(30)),
            format!("SELECT * FROM {}", nest("(t JOIN ", "t", " ON a = b)", 20)),
            format!("SELECT {} FROM t", nest("ABS(", "1", ")", 60)),
            format!("SELECT {} FROM t", nest("CAST(", "1", " AS INTEGER)", 60)),
            format!("SELECT {} FROM t", nest("(", "1", " + 1)", 60)),
            format!(
                "SELECT * FROM t WHERE {}",
                nest("a IN (SELECT a FROM t WHERE ", "TRUE", ")", 30)
            ),
            format!(
                "SELECT * FROM t WHERE {}",
                nest("EXISTS (SELECT 1 FROM t WHERE ", "TRUE", ")", 30)
            ),
            format!(
                "SELECT {} FROM t",
                nest("CASE WHEN a = 1 THEN ", "1", " ELSE 0 END", 30)
            ),
            "SELECT CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 1, 2, 0.1)) FROM t".into(),
        ];
        for q in &queries {
            let ratio = steps_per_token(q);
            assert!(
                ratio < crate::STEPS_PER_TOKEN as f64 / 10.0,
                "{ratio} steps per token: {q}"
            );
        }
    }
}
