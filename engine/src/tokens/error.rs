//! Why a token could not be used: each variant carries what the message
//! needs, so that callers (the server choosing a status, the CLI looking in
//! another state store) decide by kind, not by reading text.

use crate::tokens::token::TOKEN_LEN;

/// A token that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The text is not a token at all.
    #[error(
        "'{token}' is not a query token: a token is {TOKEN_LEN} characters of a-z and 2-7, \
         as printed after `token:`"
    )]
    Malformed {
        /// What was given.
        token: String,
    },
    /// No state store this engine reads holds a record of the token.
    #[error(
        "unknown token {token}: the state store {store} has no record of it (tokens live in \
         the state store of the catalog or server that made them; pass --state URL to look \
         in another)"
    )]
    Unknown {
        /// The token asked for.
        token: String,
        /// Where it was looked for.
        store: String,
    },
    /// The token was made on another catalog than the one this engine serves.
    #[error(
        "token {token} was made on another catalog ({made_on}); this is {here}: a token \
         replays only on the catalog it was made on"
    )]
    OtherCatalog {
        /// The token.
        token: String,
        /// The catalog it was made on: its id, and where it was.
        made_on: String,
        /// The catalog served here: its id, and where it is.
        here: String,
    },
    /// The token was made against another version of the served schema.
    #[error("token {token} was made with schema version {made_with}; this server serves {serving}")]
    SchemaVersion {
        /// The token.
        token: String,
        /// The schema version its record names.
        made_with: String,
        /// The schema version served here.
        serving: String,
    },
    /// The record's snapshot and its pinned ADQL disagree.
    #[error(
        "the record of token {token} is inconsistent: it names snapshot {recorded} but its \
         ADQL reads {reads}"
    )]
    Inconsistent {
        /// The token.
        token: String,
        /// The snapshot the record names.
        recorded: u64,
        /// The snapshot its pinned ADQL reads.
        reads: u64,
    },
    /// A token names a result that holds rows the caller may not see yet.
    #[error(
        "token {token} names a result that holds embargoed rows: replaying it needs a \
         privileged bearer token until the embargo passes MJD {until:.5} (TAI)"
    )]
    Embargoed {
        /// The token.
        token: String,
        /// The time (MJD, TAI) of the newest embargoed row the result may hold.
        until: f64,
    },
    /// An upload a token read is no longer in the state store.
    #[error("the upload '{name}' token {token} read is gone from {store} ({key})")]
    UploadGone {
        /// The token.
        token: String,
        /// The upload's table name.
        name: String,
        /// The state store.
        store: String,
        /// The key it was kept under.
        key: String,
    },
    /// A replay did not reproduce the result its token recorded.
    #[error(
        "replay of token {token} does NOT match its record: recorded {expected_rows} rows, \
         checksum {expected}; this run gave {rows} rows, checksum {actual}"
    )]
    Mismatch {
        /// The token replayed.
        token: String,
        /// Rows recorded.
        expected_rows: u64,
        /// Checksum recorded.
        expected: String,
        /// Rows now.
        rows: u64,
        /// Checksum now.
        actual: String,
    },
}

impl TokenError {
    /// Whether the service, not the request, is at fault: its store lost an
    /// upload, or a replay no longer gives what was recorded.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            TokenError::UploadGone { .. } | TokenError::Mismatch { .. }
        )
    }

    /// Whether the caller is told "no such token": none was made, or it names
    /// rows the caller may not see (whether someone ran a query is itself news).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            TokenError::Unknown { .. }
                | TokenError::Embargoed { .. }
                | TokenError::OtherCatalog { .. }
        )
    }

    /// What an anonymous caller of the service is told, where that differs
    /// from the whole story (which names state stores and embargo times).
    pub(crate) fn public_message(&self) -> Option<String> {
        match self {
            TokenError::Unknown { token, .. } | TokenError::Embargoed { token, .. } => Some(
                format!("unknown token {token}: this service has no record of it"),
            ),
            TokenError::OtherCatalog { token, .. } => Some(format!(
                "token {token} was made on another catalog: a token replays only on the catalog \
                 it was made on"
            )),
            TokenError::Mismatch { .. } => Some(self.to_string()),
            _ => None,
        }
    }
}
