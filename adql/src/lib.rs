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
pub const MAX_TOKENS: usize = 200_000;

/// How many parser steps (expressions started, operators looked for) a query
/// may take per token before its parse is stopped.
pub(crate) const STEPS_PER_TOKEN: u64 = 50;

/// Parses, checks and rewrites one ADQL query.
pub fn parse(adql: &str, schema: &dyn SchemaInfo) -> Result<Query, Error> {
    let (tokens, text_width) = check_tokens(adql)?;
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

/// Refuses, before parsing, tokens that ADQL does not have and queries with
/// more than [`MAX_OPERATORS`] operators or [`MAX_TOKENS`] tokens.
///
/// sqlparser parses some non-ADQL syntax speculatively and, on failure, parses
/// the same tokens again another way, at every level of nesting: a few hundred
/// bytes of unfinished `[`, `INTERVAL` or `POSITION(` kept a core busy for
/// seconds to hours (found by the fuzzer). Refusing them here keeps parsing linear.
///
/// Returns how many tokens the query has (whitespace and comments included).
/// Returns the number of tokens and the widest text a value of the query may
/// hold (see [`Query::text_width`]).
fn check_tokens(adql: &str) -> Result<(u64, usize), Error> {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Token, Tokenizer};
    // Tokens take a hundred bytes each: a text that surely has too many is
    // refused before it is tokenized.
    if let Some(at) = surely_too_many_tokens(adql) {
        let (line, column) = error::line_column(adql, at);
        return Err(too_many_tokens(line, column));
    }
    // A text that does not tokenize is refused by the parser, with its position.
    let Ok(tokens) = Tokenizer::new(&AdqlDialect::default(), adql).tokenize_with_location() else {
        return Ok((0, 0));
    };
    let length = tokens.len() as u64;
    let mut count = 0;
    let mut significant = 0usize;
    let mut literal_bytes = 0usize;
    let mut widest = 0usize;
    let significant_at = |i: usize| {
        tokens
            .get(i)
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
    };
    let mut previous: Option<&Token> = None;
    for (i, t) in tokens.iter().enumerate() {
        let next = (i + 1..tokens.len()).find_map(&significant_at);
        let at = |message: String, hint: Option<&str>| Error {
            message,
            line: t.span.start.line,
            column: t.span.start.column,
            hint: hint.map(str::to_owned),
        };
        if !matches!(t.token, Token::Whitespace(_) | Token::EOF) {
            significant += 1;
            if significant > MAX_TOKENS {
                return Err(too_many_tokens(t.span.start.line, t.span.start.column));
            }
        }
        let operator = match &t.token {
            Token::Word(w) if w.quote_style.is_none() => {
                if let Some(refusal) = not_adql_keyword(w.keyword) {
                    return Err(at(refusal.into(), None));
                }
                // A chain of set operations nests as deep as it is long, like
                // one of ANDs: 3 000 UNION ALLs overflowed the checking pass's
                // 64 MiB stack and took the server down.
                matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::UNION
                        | Keyword::INTERSECT
                        | Keyword::EXCEPT
                )
            }
            // The sign of a number (`IN (-1, -2)`, a POLYGON at negative
            // declinations) and the `*` of `SELECT *`, `t.*` and `COUNT(*)`
            // are no operators: only the walk sees them, as values.
            Token::Plus | Token::Minus
                if !previous.is_some_and(ends_value)
                    && next.is_some_and(|n| matches!(n.token, Token::Number(..))) =>
            {
                false
            }
            Token::Mul
                if previous.is_none_or(|p| {
                    matches!(p, Token::LParen | Token::Period | Token::Comma)
                        || matches!(p, Token::Word(w) if w.quote_style.is_none()
                            && matches!(w.keyword, Keyword::SELECT | Keyword::DISTINCT | Keyword::ALL))
                }) =>
            {
                false
            }
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::ShiftLeft
            | Token::ShiftRight => true,
            Token::StringConcat => {
                widest = MAX_TEXT_VALUE;
                true
            }
            Token::SingleQuotedString(text) => {
                literal_bytes += text.len();
                widest = widest.max(text.len());
                if literal_bytes > MAX_TEXT_LITERALS {
                    return Err(at(
                        format!(
                            "the query's text literals hold more than {} KiB; this one is past \
                             the limit",
                            MAX_TEXT_LITERALS >> 10
                        ),
                        Some("send long lists of values as an upload and join it"),
                    ));
                }
                false
            }
            Token::EOF
            | Token::Word(_)
            | Token::Number(..)
            | Token::HexStringLiteral(_)
            | Token::Whitespace(_)
            | Token::Comma
            | Token::Period
            | Token::LParen
            | Token::RParen
            | Token::SemiColon
            | Token::Tilde => false,
            Token::Placeholder(p) => {
                return Err(at(format!("parameter {p} is not part of ADQL"), None));
            }
            Token::DoubleColon => {
                return Err(at(
                    "`::` is not part of ADQL".into(),
                    Some("use CAST(x AS type)"),
                ));
            }
            Token::DoubleEq => {
                return Err(at("`==` is not part of ADQL".into(), Some("use =")));
            }
            Token::NationalStringLiteral(_) => {
                return Err(at(
                    "national string literals (N'...') are not part of ADQL".into(),
                    Some("write '...'"),
                ));
            }
            Token::Char('`') => {
                return Err(at(
                    "backquotes are not part of ADQL".into(),
                    Some("quote a name with double quotes: \"ra\""),
                ));
            }
            Token::Char(c) => {
                return Err(at(format!("the character {c:?} is not part of ADQL"), None));
            }
            other => return Err(at(format!("`{other}` is not part of ADQL"), None)),
        };
        if operator {
            count += 1;
            if count > MAX_OPERATORS {
                return Err(at(
                    format!(
                        "the query has more than {MAX_OPERATORS} operators; this one is one too many"
                    ),
                    Some(
                        "operators count over the whole query (arithmetic, comparisons, AND, OR, \
                         UNION): write a list of values as `column IN (v1, v2, ...)` or upload it \
                         as a table and join it, and split wide computed SELECT lists or long \
                         conditions into several queries",
                    ),
                ));
            }
        }
        if !matches!(t.token, Token::Whitespace(_)) {
            previous = Some(&t.token);
        }
    }
    Ok((length, widest))
}

/// Whether a query can have a value end with `token` (so that a `-` after it
/// is a subtraction, not a sign).
fn ends_value(token: &sqlparser::tokenizer::Token) -> bool {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::Token;
    match token {
        Token::Number(..) | Token::SingleQuotedString(_) | Token::RParen => true,
        Token::Word(w) => {
            w.quote_style.is_some()
                || matches!(w.keyword, Keyword::NoKeyword | Keyword::END | Keyword::NULL)
        }
        _ => false,
    }
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

fn too_many_tokens(line: u64, column: u64) -> Error {
    Error {
        message: format!("the query has more than {MAX_TOKENS} tokens; this one is past the limit"),
        line,
        column,
        hint: Some("send a long list of values as an upload and join it".into()),
    }
}

/// Where a text certainly passes [`MAX_TOKENS`] tokens, found without
/// tokenizing it: outside quotes and comments, each run of non-blank bytes
/// holds a token, and so does each `,`, `(` and `)`.
fn surely_too_many_tokens(text: &str) -> Option<usize> {
    #[derive(PartialEq)]
    enum In {
        Code,
        Quoted(u8),
        LineComment,
        BlockComment,
    }
    let bytes = text.as_bytes();
    let (mut state, mut runs, mut marks, mut blank) = (In::Code, 0usize, 0usize, true);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match state {
            In::Quoted(q) if b == q => state = In::Code,
            In::LineComment if b == b'\n' => state = In::Code,
            In::BlockComment if b == b'*' && next == Some(b'/') => {
                state = In::Code;
                i += 1;
            }
            In::Quoted(_) | In::LineComment | In::BlockComment => {}
            In::Code => {
                match (b, next) {
                    (b'\'' | b'"', _) => state = In::Quoted(b),
                    (b'-', Some(b'-')) => state = In::LineComment,
                    (b'/', Some(b'*')) => state = In::BlockComment,
                    (b',' | b'(' | b')', _) => marks += 1,
                    _ => {}
                }
                if b.is_ascii_whitespace() {
                    blank = true;
                } else if blank {
                    blank = false;
                    runs += 1;
                }
                if runs.max(marks) > MAX_TOKENS {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// Why a keyword that starts syntax ADQL does not have is refused, if it is one.
fn not_adql_keyword(keyword: sqlparser::keywords::Keyword) -> Option<&'static str> {
    use sqlparser::keywords::Keyword;
    Some(match keyword {
        Keyword::INTERVAL => "this date/time syntax is not part of ADQL",
        Keyword::POSITION => "POSITION is not part of ADQL",
        _ => return None,
    })
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
