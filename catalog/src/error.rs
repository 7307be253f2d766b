//! The catalog's error type.

use std::fmt;

/// Where in a chunk a refusal was found: file, column and row, as far as known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The file, relative to the chunk folder (e.g. `DiaSource.parquet`).
    pub file: Option<String>,
    /// The column name.
    pub column: Option<String>,
    /// The 0-based row within the file.
    pub row: Option<usize>,
}

impl Location {
    /// A location naming a file only.
    pub fn file(file: impl Into<String>) -> Self {
        Location {
            file: Some(file.into()),
            ..Default::default()
        }
    }

    /// The same location, narrowed to a column.
    pub fn column(mut self, column: impl Into<String>) -> Self {
        self.column = Some(column.into());
        self
    }

    /// The same location, narrowed to a row.
    pub fn row(mut self, row: usize) -> Self {
        self.row = Some(row);
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(file) = &self.file {
            parts.push(format!("file {file}"));
        }
        if let Some(column) = &self.column {
            parts.push(format!("column {column}"));
        }
        if let Some(row) = self.row {
            parts.push(format!("row {row}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// Why a chunk was refused (docs/chunks.md §4, "Refused chunks").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// §4.1: the manifest or its file list is wrong.
    Manifest,
    /// §4.2: the chunk id is out of order, or reused with other content.
    Order,
    /// §4.3: a column is missing, unknown, of the wrong type, or null where it must not be.
    Column,
    /// §4.4: a key is duplicated, or a value is out of range.
    Value,
    /// §4.5: an update record is malformed or does not apply.
    Update,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Manifest => "manifest",
            Refusal::Order => "order",
            Refusal::Column => "column",
            Refusal::Value => "value",
            Refusal::Update => "update",
        })
    }
}

/// Errors of the catalog crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A chunk was refused whole; nothing was committed.
    #[error("chunk {chunk} refused ({kind}): {message}{}", at(.location))]
    ChunkRefused {
        /// The chunk folder or prefix.
        chunk: String,
        /// Which rule of docs/chunks.md refused it.
        kind: Refusal,
        /// What is wrong.
        message: String,
        /// Where it is wrong.
        location: Location,
    },
    /// A Felis schema file could not be loaded.
    #[error("schema {file}: {message}")]
    Schema {
        /// The schema file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A Felis schema file is not valid YAML of the expected shape.
    #[error("schema {file}: {source}")]
    SchemaYaml {
        /// The schema file.
        file: String,
        /// The YAML error, with its position.
        #[source]
        source: serde_norway::Error,
    },
    /// A catalog URL could not be understood.
    #[error("catalog URL {url:?}: {message}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The object store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Reading or writing Parquet failed.
    #[error("parquet {path}: {source}")]
    Parquet {
        /// The object path.
        path: String,
        /// The Parquet error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// An Arrow computation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The snapshot log is damaged or from another format.
    #[error("snapshot log {path}: {message}")]
    Log {
        /// The log entry.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A log entry is not valid JSON of the expected shape.
    #[error("snapshot log {path}: {source}")]
    LogJson {
        /// The log entry.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The path is not a catalog (no snapshot log).
    #[error(
        "{url} is not a catalog (no snapshot log under it); run `ppdb ingest --catalog {url} CHUNKS` to create one"
    )]
    NotACatalog {
        /// The catalog URL.
        url: String,
    },
    /// A snapshot that does not exist was asked for.
    #[error("snapshot {asked} does not exist (the catalog has snapshots 0 to {latest})")]
    NoSuchSnapshot {
        /// The snapshot asked for.
        asked: u64,
        /// The latest snapshot.
        latest: u64,
    },
    /// Retention expired the snapshot asked for.
    #[error(
        "snapshot {asked} has expired: retention keeps snapshots from {before} on, \
         and older ones only while a live query token reads them"
    )]
    SnapshotExpired {
        /// The snapshot asked for.
        asked: u64,
        /// The first snapshot of the retained tail.
        before: u64,
    },
    /// Another writer kept winning the race to commit.
    #[error("could not commit after {attempts} attempts: other writers kept committing first")]
    Contention {
        /// How many times we tried.
        attempts: usize,
    },
    /// A path given as chunks holds none.
    #[error("{path} {why}")]
    NoChunks {
        /// The path given.
        path: String,
        /// What it is instead.
        why: &'static str,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The local path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn at(location: &Location) -> String {
    if location == &Location::default() {
        String::new()
    } else {
        format!(" (at {location})")
    }
}

/// The catalog's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds a chunk refusal.
    pub(crate) fn refused(
        chunk: &str,
        kind: Refusal,
        location: Location,
        message: impl Into<String>,
    ) -> Self {
        Error::ChunkRefused {
            chunk: chunk.to_string(),
            kind,
            message: message.into(),
            location,
        }
    }

    /// The refusal kind, if this error is a chunk refusal.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Error::ChunkRefused { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The location of a chunk refusal, if any.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::ChunkRefused { location, .. } => Some(location),
            _ => None,
        }
    }
}
