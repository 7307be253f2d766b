//! The engine's errors.

/// Why a query could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ADQL was refused (with its line and column).
    #[error(transparent)]
    Adql(#[from] adql::Error),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] catalog::Error),
    /// The query asked for a snapshot the catalog does not have.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// A token could not be used: malformed, unknown, of another catalog, or
    /// its replay did not match.
    #[error(transparent)]
    Token(#[from] crate::tokens::error::TokenError),
    /// A coverage could not be made.
    #[error(transparent)]
    Coverage(#[from] crate::coverage::CoverageError),
    /// An export could not be made.
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    /// An uploaded table could not be read.
    #[error(transparent)]
    Upload(#[from] crate::encode::votable::upload::UploadError),
    /// The state store refused a key, or holds something unreadable.
    #[error(transparent)]
    State(#[from] crate::tokens::state::StateError),
    /// The state store holds as much as the service allows it to.
    #[error(
        "the service cannot keep more query records and results just now (its store \
         for them is full at {limit_mib} MiB); try again later"
    )]
    StateFull {
        /// The limit, in MiB.
        limit_mib: u64,
    },
    /// One row of the query would cost more work than a whole batch may
    /// (see `plan::batches`): nothing could stop it at its deadline.
    #[error(
        "the query does too much for each row: its expressions would pass about {work_mib} MiB \
         through their operations for one row (at most {limit_mib} MiB); compute fewer \
         expressions, fewer of them on long text, or compare polygons of fewer vertices"
    )]
    TooMuchPerRow {
        /// The estimated work of one row, in MiB.
        work_mib: usize,
        /// The most one row may cost, in MiB.
        limit_mib: usize,
    },
    /// A Parquet result whose footer (a record per column per row group, held
    /// by the writer until the file ends) would pass what it may hold.
    #[error(
        "the result is too large for Parquet with {columns} columns: its footer, held until \
         the file ends, would pass {limit_mib} MiB after {row_groups} row groups; ask for fewer \
         columns or rows (TOP, MAXREC), or for CSV or VOTable"
    )]
    ParquetFooterFull {
        /// Columns of the result.
        columns: usize,
        /// Row groups written when it stopped.
        row_groups: usize,
        /// What the footer may hold, in MiB.
        limit_mib: usize,
    },
    /// Planning or execution failed.
    #[error("query failed")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Arrow could not encode or convert the result.
    #[error("result encoding failed")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet could not encode the result.
    #[error("result encoding failed")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    /// A value does not fit the type its column was declared with.
    #[error("result encoding failed: {message}")]
    Encode {
        /// Which value, and what its column declares.
        message: String,
    },
    /// Writing the result failed.
    #[error("writing the result failed")]
    Io(#[from] std::io::Error),
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Whether the service, not the request, is at fault (storage, encoding):
    /// a server error rather than a refusal.
    pub fn is_internal(&self) -> bool {
        use datafusion::error::DataFusionError as D;
        match self {
            Error::Adql(_)
            | Error::Snapshot(_)
            | Error::StateFull { .. }
            | Error::Upload(_)
            | Error::Coverage(_)
            | Error::TooMuchPerRow { .. }
            | Error::ParquetFooterFull { .. } => false,
            Error::Catalog(e) => !matches!(
                e,
                catalog::Error::NoSuchSnapshot { .. } | catalog::Error::SnapshotExpired { .. }
            ),
            Error::DataFusion(e) => {
                self.expression_failure().is_none()
                    && matches!(
                        e.find_root(),
                        D::ObjectStore(_)
                            | D::IoError(_)
                            | D::ParquetError(_)
                            | D::External(_)
                            | D::Internal(_)
                    )
            }
            Error::Token(t) => t.is_internal(),
            Error::Export(e) => matches!(e, crate::export::ExportError::Inconsistent { .. }),
            Error::State(_)
            | Error::Arrow(_)
            | Error::Parquet(_)
            | Error::Encode { .. }
            | Error::Io(_) => true,
        }
    }

    /// The message for a caller of the service, who is told neither where the
    /// service keeps anything (paths, buckets, state stores) nor what to pass on
    /// a command line: [`Error::message`] goes to the server's log instead.
    pub fn public_message(&self) -> String {
        match self {
            // A caller without privilege learns no more of an embargoed token
            // than of one nobody made: whether someone ran a query is itself news.
            Error::Token(t) if t.public_message().is_some() => {
                t.public_message().unwrap_or_default()
            }
            // The failing value may be one the caller may not see (an embargoed row).
            e if e.expression_failure().is_some() => format!(
                "query failed: {} on a row it read (the value is not shown)",
                e.expression_failure().unwrap_or_default()
            ),
            // DataFusion's own bugs ("Left side produced no data to spill"
            // under a small memory budget) say nothing a caller can act on.
            Error::DataFusion(e)
                if matches!(
                    e.find_root(),
                    datafusion::error::DataFusionError::Internal(_)
                ) =>
            {
                "query failed: the query engine met an internal error (the failure is in the \
                 service's log); try again, or narrow the query"
                    .to_string()
            }
            e if e.is_internal() => "the service failed to read or write its storage; the \
                                     failure is in its log"
                .to_string(),
            e => e.message(),
        }
    }

    /// What failed when the query's own expressions met a row (a CAST of text
    /// that is no number, a division by zero, an overflow), if that is what
    /// this is. Pushed into the Parquet reader, such a failure comes wrapped as
    /// a read error: it is the query's, not the storage's.
    pub fn expression_failure(&self) -> Option<&'static str> {
        let Error::DataFusion(e) = self else {
            return None;
        };
        let text = e.to_string();
        if text.contains("CastError") || text.contains("Cast error") {
            Some("a CAST met a value it cannot convert")
        } else if text.contains("DivideByZero") || text.contains("Divide by zero") {
            Some("a division by zero")
        } else if text.contains("ArithmeticOverflow")
            || text.contains("Overflow happened")
            || (text.contains("Compute error") && text.contains("overflow on"))
        {
            Some("an arithmetic overflow")
        } else if text.contains(crate::plan::like_pattern::MADE_FROM_DATA) {
            Some(
                "a LIKE pattern the query made from its data is past the limits on patterns \
                 (256 characters, 16 wildcards, 8 of them _)",
            )
        } else if text.contains("Error evaluating filter predicate") {
            Some("a condition could not be evaluated")
        } else {
            None
        }
    }

    /// The message with every cause after it (`what: why: why`), for users.
    pub fn message(&self) -> String {
        if let Error::DataFusion(e) = self {
            // DataFusion's own words for its error kinds say nothing to a user.
            let root = e.find_root().strip_backtrace();
            if root.contains(crate::plan::like_pattern::MADE_FROM_DATA) {
                return format!(
                    "query failed: {}",
                    self.expression_failure().unwrap_or_default()
                );
            }
            // A failure inside the Parquet reader repeats itself once per layer.
            if let Some(cast) = root
                .split("CastError(\"")
                .nth(1)
                .and_then(|r| r.split("\")").next())
            {
                return format!("query failed: {}", adql_type_names(cast));
            }
            if root.contains("DivideByZero") {
                return "query failed: division by zero".into();
            }
            // The second: a sort that may no longer spill (it is merging).
            if root.contains("Failed to allocate additional") || root.contains("before spilling") {
                return "query failed: it needs more memory for its sorts, joins and aggregates \
                        than one query may use; narrow it (a condition joining its tables, \
                        fewer columns, a smaller cone) or ask for fewer rows (MAXREC)"
                    .into();
            }
            if root.contains("exceeded the allowable limit") {
                return "query failed: its sorts and joins, with those of the queries running \
                        beside it, would fill more temporary disk than the service allows; \
                        narrow it (a smaller cone, fewer columns, a condition joining its \
                        tables) or try again later"
                    .into();
            }
            let text = [
                "Resources exhausted: ",
                "Execution error: ",
                "Arrow error: ",
            ]
            .iter()
            .fold(root.as_str(), |t, p| t.strip_prefix(p).unwrap_or(t));
            return format!("query failed: {}", adql_type_names(text));
        }
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = c.source();
        }
        out
    }
}

/// A planner error about the query's text (a refusal: an unknown or ambiguous
/// name, a type that does not fit, a column missing from `GROUP BY`), as an
/// ADQL error with the place it is about: the planner's own span when it
/// gives one, else the first name its message quotes, else the query's start.
pub(crate) fn planner_refusal(text: &str, e: datafusion::error::DataFusionError) -> Error {
    use datafusion::error::DataFusionError as D;
    // Nothing has run yet: short of reading the catalog and running out of
    // memory, what fails here is the query (constant folding included).
    if matches!(
        e.find_root(),
        D::ObjectStore(_) | D::IoError(_) | D::External(_) | D::ResourcesExhausted(_)
    ) {
        return e.into();
    }
    let root = match e.find_root() {
        // Its text otherwise asks users to report a bug in DataFusion.
        D::Internal(desc) => desc.clone(),
        root => root.strip_backtrace(),
    };
    let message = root
        .replace("Error during planning: ", "")
        .replace("Internal error: ", "")
        .replace(
            ".\nThis issue was likely caused by a bug in DataFusion's code. Please help us to \
             resolve this by filing a bug report in our issue tracker: \
             https://github.com/apache/datafusion/issues",
            "",
        )
        .replace("Schema error: ", "")
        .replace("Arrow error: ", "")
        .replace("This feature is not implemented: ", "not supported: ")
        // The pinned form wraps the query in a SELECT *; the user wrote no wildcard.
        .replace("While expanding wildcard, column", "column");
    let message = adql_type_names(&message);
    let spanned = e
        .diagnostic()
        .and_then(|d| d.span)
        .filter(|s| s.start.line > 0)
        .map(|s| (s.start.line, s.start.column));
    let named = || {
        let quoted = message.split(['"', '\'']).skip(1).step_by(2);
        let fields = message
            .split("field ")
            .skip(1)
            .filter_map(|t| t.split_whitespace().next());
        quoted
            .chain(fields)
            .filter_map(|name| adql::locate_word(text, name.rsplit('.').next()?))
            .next()
    };
    let mut refusal = adql::Error::whole(text, message.trim().to_string());
    if let Some((line, column)) = spanned.or_else(named) {
        refusal.line = line;
        refusal.column = column;
    }
    Error::Adql(refusal)
}

/// `text` with Arrow's names of types (`Int32`, `Float64`, `Utf8`) given as
/// ADQL's (`INTEGER`, `DOUBLE PRECISION`, `VARCHAR`): DataFusion's messages
/// name the types the query was turned into, which the user never wrote.
fn adql_type_names(text: &str) -> String {
    const NAMES: [(&str, &str); 9] = [
        ("Int16", "SMALLINT"),
        ("Int32", "INTEGER"),
        ("Int64", "BIGINT"),
        ("Float32", "REAL"),
        ("Float64", "DOUBLE PRECISION"),
        ("LargeUtf8", "VARCHAR"),
        ("Utf8View", "VARCHAR"),
        ("Utf8", "VARCHAR"),
        ("Boolean", "BOOLEAN"),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while let Some(c) = rest.chars().next() {
        let boundary = out
            .chars()
            .last()
            .is_none_or(|p| !p.is_ascii_alphanumeric());
        if boundary {
            for (arrow, adql) in NAMES {
                if let Some(after) = rest.strip_prefix(arrow)
                    && after
                        .chars()
                        .next()
                        .is_none_or(|n| !n.is_ascii_alphanumeric())
                {
                    out.push_str(adql);
                    rest = after;
                    continue 'scan;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod type_name_tests {
    #[test]
    fn arrow_type_names_read_as_adql_ones() {
        assert_eq!(
            super::adql_type_names(
                "Cannot coerce arithmetic expression Float32 + Utf8 to valid types; \
                 Can't cast value 1e10 to type Int32 (MyInt32 stays)"
            ),
            "Cannot coerce arithmetic expression REAL + VARCHAR to valid types; \
             Can't cast value 1e10 to type INTEGER (MyInt32 stays)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::error::DataFusionError as D;

    #[test]
    fn an_engine_bug_reaches_the_caller_as_what_it_is_not_in_datafusions_words() {
        let e = Error::DataFusion(D::Internal("Left side produced no data to spill".into()));
        let public = e.public_message();
        assert!(public.contains("internal error"), "{public}");
        assert!(!public.contains("spill"), "{public}");
        assert!(e.is_internal(), "a server error, not a refusal");
        assert!(e.message().contains("Left side produced no data to spill"));
    }
}
