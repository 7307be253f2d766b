//! ADQL 2.1 text to a validated, rewritten query.
//!
//! [`parse`] reads one ADQL query with sqlparser and the [`AdqlDialect`],
//! walks its syntax tree against an allow-list of ADQL constructs, resolves
//! every name against a [`SchemaInfo`] (unquoted names case-insensitively,
//! quoted ones exactly), takes out the time-travel clause, and rewrites what
//! the planner does not speak natively: `TOP` into a row limit, hex literals
//! into integers, ADQL functions into their engine names, and the geometry
//! into the UDFs listed in [`udf`]. Anything else is refused with the line and
//! column it starts at. This crate knows nothing of DataFusion.

mod dialect;
mod error;
mod functions;
mod pin;
pub mod shape;
mod tokens;
mod walk;
mod wildcard;

use sqlparser::ast::Statement;
use sqlparser::parser::Parser;

pub use dialect::AdqlDialect;
pub use error::{Error, locate_word};
pub use functions::{FUNCTIONS, FunctionDoc, udf};
pub use pin::{Pinned, pin};
pub use shape::{Lookup, Rows};

/// A column as the query's names resolve against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column name, in the schema's spelling.
    pub name: String,
    /// The unit (VOUnit), for `IN_UNIT`.
    pub unit: Option<String>,
}

/// A table a query may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The schema name (`ppdb`, `src`, `TAP_SCHEMA`).
    pub schema: String,
    /// The table name, in the schema's spelling.
    pub name: String,
    /// Its columns.
    pub columns: Vec<Column>,
    /// Columns whose values together are unique among the rows a query sees
    /// (empty when none are); a total order needs only these.
    pub key: Vec<String>,
}

/// What the parser needs to know of the served tables.
pub trait SchemaInfo {
    /// Every table a query may name.
    fn tables(&self) -> &[Table];
}

impl SchemaInfo for [Table] {
    fn tables(&self) -> &[Table] {
        self
    }
}

impl SchemaInfo for Vec<Table> {
    fn tables(&self) -> &[Table] {
        self
    }
}

/// The snapshot a query asked for with `FOR SYSTEM_TIME AS OF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsOf {
    /// A snapshot number.
    Snapshot(u64),
    /// A UTC time, as written (ISO 8601); the engine picks the last snapshot committed by then.
    Time(String),
}

/// A validated ADQL query, rewritten for the planner.
#[derive(Debug, Clone)]
pub struct Query {
    /// The ADQL as written.
    pub adql: String,
    /// The rewritten statement (a single `SELECT` query) for the planner.
    pub statement: Statement,
    /// The snapshot the query pinned with `FOR SYSTEM_TIME AS OF`, if any.
    pub as_of: Option<AsOf>,
    /// The tables it reads, as `(schema, table)` in the schema's spelling.
    pub tables: Vec<(String, String)>,
    /// The statement as parsed, before rewriting (for [`pin`]).
    source: Statement,
    /// The most bytes a text value the query makes may hold: its longest
    /// literal, or [`MAX_TEXT_VALUE`] where it concatenates text.
    pub text_width: usize,
    /// How many columns its SELECT lists give, in all its subqueries.
    pub outputs: usize,
    /// How many operations (operators, function calls, CASE, CAST, each
    /// argument of a function, each copy the planner makes) its expressions
    /// hold in all: a bound on the steps one row can go through.
    pub operations: usize,
    /// The steps of spherical geometry (vertex against vertex or edge) one row
    /// may take in its CONTAINS, INTERSECTS, AREA and CENTROID calls, each
    /// counted once for every copy the planner makes.
    pub geometry_steps: usize,
}

impl Query {
    /// The most bytes of text one row of any of its results may carry, by
    /// what the query itself makes (a literal repeated in every row, or text it
    /// concatenates); the catalog's own columns are not counted.
    pub fn row_text_bytes(&self) -> usize {
        self.text_width.saturating_mul(self.outputs.max(1))
    }
}

/// The most operators one query may have.
///
/// A chain `a OR b OR c ...` (or `q1 UNION q2 UNION q3 ...`) parses into a
/// tree as deep as the chain is long,
/// and every later pass over it (checking, pinning, cloning, planning) recurses
/// that deep: 1 000 operators overflowed tokio's 2 MiB worker stack in a debug
/// build, 500 did not (with the ADQL passes on a grown stack, as the engine
/// runs them). Long lists of values belong in `IN (...)` or an upload, which
/// stay flat.
pub const MAX_OPERATORS: usize = 500;

/// How deep functions and operators (but AND and OR) may nest. DataFusion's
/// type coercion works out the name and type of every operand again at each
/// level, so planning a chain costs the cube of its depth, in one step no
/// deadline reaches: `t.id + 1 + 1 ...` with 499 operators (a 2 KB query)
/// planned for 17 s, 150 nested `ABS` for 0.4 s; 40 levels take 0.01 s.
pub const MAX_NESTING: usize = 40;

/// The most operations one query may hold (see [`crate::Query::operations`]):
/// planning takes about 0.1 ms per operation, none of it interruptible, so
/// 16 000 function calls 16 deep took 3.8 s; 10 000 hold every query of the
/// specification many times over (a 256-vertex POLYGON is about 520).
pub const MAX_OPERATIONS: usize = 10_000;

/// The most tables one query may read, its WITH queries written out where
/// they are used (see `walk::query::check_expansion`): planning time grows
/// steeply with the tables joined (30 took 0.8 s, 64 took 5.7 s, 100 took
/// 30 s), and no deadline reaches planning.
pub const MAX_READS: u64 = 32;

/// The deepest subqueries may nest (30 nested IN subqueries planned for more
/// than 30 s; 10 take 0.1 s).
pub const MAX_SUBQUERY_DEPTH: usize = 12;

/// The most columns one SELECT may give: planning a result of 5 000 columns
/// took 15 s; 1 000 take well under a second, and hold three times the widest
/// join of the catalog's tables (`SELECT *` over DiaObject, DiaSource,
/// DiaForcedSource and SSObject gives 280).
pub const MAX_COLUMNS: usize = 1000;

/// The most output columns times grouping keys all of a query's SELECTs may
/// have together: turning a grouped SELECT into a plan matches each output
/// against each key, in one step nothing can interrupt. 32 `UNION`ed SELECTs
/// of 1 000 columns grouped by all 1 000 took 24 s; 2^18 take about 0.2 s.
pub const MAX_GROUPED: usize = 1 << 18;

/// The longest LIKE pattern, in characters (see `walk::expr::check_pattern`).
pub const MAX_LIKE_PATTERN: usize = 256;

/// The most wildcards (`%` and `_`) one LIKE pattern may have: a `%` followed
/// by 250 `_` took 170 ms a row against 60 000 characters.
pub const MAX_LIKE_WILDCARDS: usize = 16;

/// The most `_` one LIKE pattern may have: after a `%`, `n` of them make a
/// matcher of up to 2^n states (14 took 14 ms a row against 60 000
/// characters; 8 take about as long as none).
pub const MAX_LIKE_SINGLES: usize = 8;

/// The most vertices one POLYGON may have.
pub const MAX_POLYGON_VERTICES: usize = 256;

/// The most bytes of text literals one query may hold. A literal is repeated
/// in every row of a batch: a 100 KB one in `SELECT '...' FROM ppdb.DiaSource`
/// took the server to 2 GB, and the 4 MiB a request may carry would have
/// taken it past any machine's memory. Lists of values belong in an upload.
pub const MAX_TEXT_LITERALS: usize = 64 << 10;

/// The longest text one value may grow to by concatenation (`||`), in bytes:
/// doubling a text a few dozen times would fill any memory.
pub const MAX_TEXT_VALUE: usize = 64 << 10;

/// The most tokens (names, values, operators, commas; not whitespace) one
/// query may have. Parsing and planning hold each token several times over,
/// a few hundred bytes each: an `IN` list of two million zeros (4 MiB of text)
/// took a server to 2.9 GB. 200 000 tokens are an `IN` list of 100 000 values.
pub use tokens::MAX_BLANKS;

pub const MAX_TOKENS: usize = 200_000;

/// How many parser steps (expressions started, operators looked for) a query
/// may take per token before its parse is stopped.
pub(crate) const STEPS_PER_TOKEN: u64 = 50;

/// Parses, checks and rewrites one ADQL query.
pub fn parse(adql: &str, schema: &dyn SchemaInfo) -> Result<Query, Error> {
    let (tokens, text_width) = tokens::check(adql)?;
    // Ordinary queries take a few parser steps per token; exponential
    // backtracking takes millions.
    let dialect = AdqlDialect::with_budget(STEPS_PER_TOKEN * tokens + 10_000);
    let parsed = Parser::new(&dialect)
        .with_recursion_limit(200)
        .try_with_sql(adql)
        .and_then(|mut p| p.parse_statements());
    let mut statements = match (parsed, dialect.exhausted_at()) {
        (Ok(statements), _) => statements,
        (Err(_), Some(at)) => {
            // At the end of the text sqlparser's token has no position.
            let (line, column) = if at.line > 0 {
                (at.line, at.column)
            } else {
                error::end(adql)
            };
            return Err(Error {
                message: "the query is too complex to parse: the parser would try this part \
                          too many ways"
                    .into(),
                line,
                column,
                hint: Some(
                    "check the parentheses and keywords around here; ADQL has no [ ], \
                     and nested constructs left unfinished multiply the work"
                        .into(),
                ),
            });
        }
        (Err(e), None) => return Err(Error::from_parser(e, adql)),
    };
    let statement = match statements.len() {
        0 => {
            return Err(Error {
                message: "empty query: expected a SELECT".into(),
                line: 1,
                column: 1,
                hint: None,
            });
        }
        1 => statements.remove(0),
        _ => {
            let (line, column) = second_statement(adql);
            return Err(Error {
                message: "only one statement is allowed, found more than one".into(),
                line,
                column,
                hint: None,
            });
        }
    };
    let mut query = walk::check(adql, statement, schema).map_err(|e| e.within(adql))?;
    query.text_width = text_width;
    Ok(query)
}

/// Whether a LIKE pattern is within [`MAX_LIKE_PATTERN`] characters,
/// [`MAX_LIKE_WILDCARDS`] wildcards and [`MAX_LIKE_SINGLES`] `_`; the
/// refusal otherwise. Written patterns are checked as the query is; patterns
/// an expression makes (a column, `COALESCE('...')`) as it runs.
pub fn like_pattern_fits(pattern: &str) -> Result<(), String> {
    if pattern.matches('_').count() > MAX_LIKE_SINGLES {
        return Err(format!(
            "a LIKE pattern may have at most {MAX_LIKE_SINGLES} _ wildcards"
        ));
    }
    if pattern.chars().count() > MAX_LIKE_PATTERN
        || pattern.matches(['%', '_']).count() > MAX_LIKE_WILDCARDS
    {
        return Err(format!(
            "a LIKE pattern may have at most {MAX_LIKE_PATTERN} characters and \
             {MAX_LIKE_WILDCARDS} wildcards (% and _)"
        ));
    }
    Ok(())
}

/// Where the text after the first top-level `;` starts.
fn second_statement(adql: &str) -> (u64, u64) {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&AdqlDialect::default(), adql).tokenize_with_location() else {
        return (0, 0);
    };
    let mut seen_semicolon = false;
    for t in tokens {
        match t.token {
            Token::SemiColon => seen_semicolon = true,
            Token::Whitespace(_) => {}
            _ if seen_semicolon => return (t.span.start.line, t.span.start.column),
            _ => {}
        }
    }
    (0, 0)
}
