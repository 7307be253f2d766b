//! The pass over a query's tokens before it is parsed: what ADQL does not
//! have is refused there, and the operators, tokens and text literals that
//! bound what parsing and planning may cost are counted.

use crate::{
    AdqlDialect, Error, MAX_OPERATORS, MAX_TEXT_LITERALS, MAX_TEXT_VALUE, MAX_TOKENS, error,
};

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
/// hold (see [`crate::Query::text_width`]).
pub(crate) fn check(adql: &str) -> Result<(u64, usize), Error> {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Token, Tokenizer};
    // Tokens take a hundred bytes each: a text that surely has too many is
    // refused before it is tokenized.
    if let Some((at, blanks)) = surely_too_many_tokens(adql) {
        let (line, column) = error::line_column(adql, at);
        return Err(if blanks {
            too_many_blanks(line, column)
        } else {
            too_many_tokens(line, column)
        });
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
    // The next significant token after each, found in one pass from the end:
    // a scan forward from every token was quadratic in a run of whitespace
    // (16 000 spaces took 3 s; the 4 MiB a request may carry, hours).
    let mut next_at: Vec<Option<usize>> = vec![None; tokens.len()];
    let mut seen = None;
    for i in (0..tokens.len()).rev() {
        next_at[i] = seen;
        if significant_at(i).is_some() {
            seen = Some(i);
        }
    }
    let mut previous: Option<&Token> = None;
    for (i, t) in tokens.iter().enumerate() {
        let next = next_at[i].and_then(&significant_at);
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

fn too_many_tokens(line: u64, column: u64) -> Error {
    Error {
        message: format!("the query has more than {MAX_TOKENS} tokens; this one is past the limit"),
        line,
        column,
        hint: Some("send a long list of values as an upload and join it".into()),
    }
}

/// The most spaces, tabs and line breaks a query may have outside its quotes
/// and comments. The tokenizer makes each a token of its own, of some 70
/// bytes, held twice over while a query is parsed: the 4 MiB of spaces a
/// request may carry took 650 MB of a server. A list of 100 000 ids, one per
/// indented line, has half a million.
pub const MAX_BLANKS: usize = 1 << 20;

fn too_many_blanks(line: u64, column: u64) -> Error {
    Error {
        message: format!(
            "the query has more than {MAX_BLANKS} spaces, tabs and line breaks outside its \
             quotes and comments; this one is past the limit"
        ),
        line,
        column,
        hint: Some("a query needs no runs of whitespace this long".into()),
    }
}

/// Where a text certainly passes [`MAX_TOKENS`] tokens, or [`MAX_BLANKS`]
/// blanks (then `true`), found without tokenizing it: outside quotes and
/// comments, each run of non-blank bytes holds a token, and so does each `,`,
/// `(` and `)`.
fn surely_too_many_tokens(text: &str) -> Option<(usize, bool)> {
    #[derive(PartialEq)]
    enum In {
        Code,
        Quoted(u8),
        LineComment,
        BlockComment,
    }
    let bytes = text.as_bytes();
    let (mut state, mut runs, mut marks, mut blank) = (In::Code, 0usize, 0usize, true);
    let mut blanks = 0usize;
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
                if is_blank(text, i) {
                    blank = true;
                    // Each character once, at its first byte.
                    blanks += usize::from(text.is_char_boundary(i));
                    if blanks > MAX_BLANKS {
                        return Some((i, true));
                    }
                } else if blank {
                    blank = false;
                    runs += 1;
                }
                if runs.max(marks) > MAX_TOKENS {
                    return Some((i, false));
                }
            }
        }
        i += 1;
    }
    None
}

/// Whether the byte at `i` is, or starts, a character the tokenizer takes for
/// whitespace: any Unicode white space (a vertical tab, U+00A0, U+2003 cost as
/// much as a space, or more: 4 MiB of vertical tabs took 780 MB), the bytes
/// after a character's first counted with it.
fn is_blank(text: &str, i: usize) -> bool {
    let b = text.as_bytes()[i];
    if b < 0x80 {
        return (b as char).is_whitespace();
    }
    // A continuation byte belongs to the character that began before it.
    let start = (0..=i)
        .rev()
        .find(|&j| text.is_char_boundary(j))
        .unwrap_or(i);
    text[start..]
        .chars()
        .next()
        .is_some_and(char::is_whitespace)
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
