//! Errors with the line and column of the ADQL text they are about.

use std::fmt;

use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};

/// Why an ADQL query was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What is wrong.
    pub message: String,
    /// 1-based line of the offending text (0 when the whole query is meant).
    pub line: u64,
    /// 1-based column of the offending text (0 when the whole query is meant).
    pub column: u64,
    /// A short suggestion, when one helps.
    pub hint: Option<String>,
}

impl Error {
    pub(crate) fn at(span: Span, message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            line: span.start.line,
            column: span.start.column,
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// A refusal of `text` as a whole, placed at its first token.
    pub fn whole(text: &str, message: impl Into<String>) -> Error {
        let (line, column) = tokens(text)
            .and_then(|t| t.first().map(|t| (t.span.start.line, t.span.start.column)))
            .unwrap_or((1, 1));
        Error {
            message: message.into(),
            line,
            column,
            hint: None,
        }
    }

    /// This error, placed at the start of `text` when it has no place of its own.
    pub(crate) fn within(self, text: &str) -> Error {
        if self.line > 0 {
            return self;
        }
        Error {
            hint: self.hint,
            ..Error::whole(text, self.message)
        }
    }

    /// Turns a sqlparser error (which carries its position in its text) into ours.
    pub(crate) fn from_parser(e: sqlparser::parser::ParserError, adql: &str) -> Error {
        use sqlparser::parser::ParserError as P;
        let text = match e {
            P::TokenizerError(s) | P::ParserError(s) => s,
            P::RecursionLimitExceeded => {
                let (line, column) = deepest(adql);
                return Error {
                    message: "the query is nested too deeply".into(),
                    line,
                    column,
                    hint: Some("write nested conditions as one flat list of ANDs or ORs".into()),
                };
            }
        };
        // sqlparser appends " at Line: L, Column: C" to its messages.
        let (message, line, column) = match text.rfind(" at Line: ") {
            Some(i) => {
                let pos = &text[i + " at Line: ".len()..];
                let mut it = pos.split(", Column: ");
                let line = it.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
                let column = it.next().and_then(|c| c.trim().parse().ok()).unwrap_or(0);
                (text[..i].to_string(), line, column)
            }
            // Running out of text is the one place sqlparser gives no position.
            None => {
                let (line, column) = end(adql);
                (text, line, column)
            }
        };
        let (line, column) = found_at(adql, &message, (line, column));
        // `FROM t AS o FOR SYSTEM_TIME ...` reads as the start of `FOR UPDATE`.
        if message.contains("one of UPDATE or SHARE") && message.contains("SYSTEM_TIME") {
            return Error {
                message: "FOR SYSTEM_TIME AS OF goes right after the table name, before its \
                          alias"
                    .into(),
                line,
                column,
                hint: Some("write FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF 3 AS o".into()),
            };
        }
        let hint = if message.contains("LIMIT") {
            Some("ADQL limits rows with SELECT TOP n".to_string())
        } else if adql
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w.eq_ignore_ascii_case("AS_OF"))
        {
            // AS_OF is the TAP request parameter; users write it into the query.
            Some(
                "AS_OF is a request parameter (AS_OF=5); in ADQL write the snapshot after \
                 the table: FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF 5"
                    .to_string(),
            )
        } else {
            None
        };
        Error {
            message: format!("syntax error: {message}"),
            line,
            column,
            hint,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}, column {}: ", self.line, self.column)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

fn tokens(text: &str) -> Option<Vec<TokenWithSpan>> {
    let tokens = Tokenizer::new(&crate::AdqlDialect::default(), text)
        .tokenize_with_location()
        .ok()?;
    Some(
        tokens
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect(),
    )
}

/// Where the first name, number or string spelled `word` (names ignoring case)
/// appears in `text`, outside comments: for messages that quote what they are about.
pub fn locate_word(text: &str, word: &str) -> Option<(u64, u64)> {
    tokens(text)?
        .into_iter()
        .find(|t| match &t.token {
            Token::Word(w) => w.value.eq_ignore_ascii_case(word),
            Token::Number(n, _) => n == word,
            Token::SingleQuotedString(s) => s == word,
            _ => false,
        })
        .map(|t| (t.span.start.line, t.span.start.column))
}

/// Where the word a message says was found (`found: FROM`) is, when sqlparser
/// gives the place of a later token: it peeks past a keyword to see whether it
/// is an alias (`SELECT a, FROM t` was reported at `t`). The last such word at
/// or before `at`; else `at` unchanged.
fn found_at(text: &str, message: &str, at: (u64, u64)) -> (u64, u64) {
    let Some(word) = message
        .rsplit("found: ")
        .next()
        .filter(|_| message.contains("found: "))
    else {
        return at;
    };
    let word = word.trim();
    tokens(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case(word)))
        .map(|t| (t.span.start.line, t.span.start.column))
        .rfind(|p| *p <= at)
        .unwrap_or(at)
}

/// The line and column just after the last character of `text`.
pub(crate) fn end(text: &str) -> (u64, u64) {
    line_column(text, text.len())
}

/// The line and column (from 1) of byte `at` of `text`.
pub(crate) fn line_column(text: &str, at: usize) -> (u64, u64) {
    let before = &text[..at];
    let line = before.matches('\n').count() as u64 + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() as u64 + 1;
    (line, column)
}

/// The first parenthesis at the deepest nesting of `text` (else its start).
fn deepest(text: &str) -> (u64, u64) {
    let (mut depth, mut max, mut at) = (0usize, 0usize, (1, 1));
    for t in tokens(text).unwrap_or_default() {
        match t.token {
            Token::LParen => {
                depth += 1;
                if depth > max {
                    max = depth;
                    at = (t.span.start.line, t.span.start.column);
                }
            }
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use crate::Table;

    fn refuse(text: &str) -> crate::Error {
        crate::parse(text, &Vec::<Table>::new()).expect_err("refused")
    }

    #[test]
    fn a_keyword_where_an_expression_belongs_is_pointed_at_itself() {
        let e = refuse("SELECT diaObjectId, FROM ppdb.DiaObject");
        assert!(e.message.contains("found: FROM"), "{e}");
        assert_eq!((e.line, e.column), (1, 21));
        let e = refuse("SELECT a,\n  ra, FROM ppdb.DiaObject");
        assert_eq!((e.line, e.column), (2, 7));
    }

    #[test]
    fn nesting_too_deep_points_at_the_deepest_parenthesis() {
        let text = format!("SELECT {}1{} FROM t", "(".repeat(300), ")".repeat(300));
        let e = refuse(&text);
        assert!(e.message.contains("nested too deeply"), "{e}");
        assert_eq!((e.line, e.column), (1, 8 + 299));
    }

    #[test]
    fn running_out_of_text_points_at_its_end() {
        let e = refuse("SELECT ra\nFROM t WHERE ra >");
        assert_eq!((e.line, e.column), (2, 18), "{e}");
    }

    #[test]
    fn names_are_found_by_token_never_inside_a_comment() {
        let text = "SELECT 'ra' -- ra\n, ra FROM t";
        assert_eq!(crate::locate_word(text, "RA"), Some((2, 3)));
        assert_eq!(crate::locate_word(text, "ra'"), None);
    }
}
