//! Why the state store could not do what was asked: each variant carries what
//! its message needs.

/// A state-store failure other than the object store's own (which comes as
/// [`catalog::Error`]) and other than being full ([`crate::Error::StateFull`]).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No state store was named, and there is no per-user folder for one.
    #[error(
        "no place for query tokens: set PPDB_STATE, XDG_STATE_HOME or HOME, or pass --state URL"
    )]
    NoPlace,
    /// A key that would name something outside the store.
    #[error("'{key}' is not a valid state key")]
    BadKey {
        /// The key refused.
        key: String,
    },
    /// Something stored cannot be decoded.
    #[error("{what} is unreadable: {reason}")]
    Unreadable {
        /// What was read (a token's record, a job).
        what: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// Something could not be encoded for storing.
    #[error("cannot encode {what}: {reason}")]
    Unencodable {
        /// What was to be written.
        what: String,
        /// The encoder's complaint.
        reason: String,
    },
    /// A kept upload holds no rows and no schema.
    #[error("the stored upload '{name}' ({key}) is empty")]
    EmptyUpload {
        /// The upload's table name.
        name: String,
        /// Where it is kept.
        key: String,
    },
    /// The operating system gave no randomness for the token secret.
    #[error("no random source to make the token secret from")]
    NoRandomness,
    /// Another process made the token secret and it was gone when read.
    #[error("the token secret vanished as it was made")]
    SecretVanished,
    /// A streamed object could not be completed.
    #[error("cannot complete a state object: {reason}")]
    Incomplete {
        /// The object store's complaint.
        reason: String,
    },
}
