//! Errors with the line and column of the ADQL text they are about.

use std::fmt;

use sqlparser::tokenizer::Span;

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

    /// Turns a sqlparser error (which carries its position in its text) into ours.
    pub(crate) fn from_parser(e: sqlparser::parser::ParserError) -> Error {
        use sqlparser::parser::ParserError as P;
        let text = match e {
            P::TokenizerError(s) | P::ParserError(s) => s,
            P::RecursionLimitExceeded => {
                return Error {
                    message: "the query is nested too deeply".into(),
                    line: 0,
                    column: 0,
                    hint: None,
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
            None => (text, 0, 0),
        };
        let hint = if message.contains("LIMIT") {
            Some("ADQL limits rows with SELECT TOP n".to_string())
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
