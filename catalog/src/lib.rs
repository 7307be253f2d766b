//! The PPDB catalog: table schemas from Felis YAML, a snapshot log on object
//! storage, ingest of replica chunks, HEALPix-partitioned Parquet files,
//! compaction and vacuum.
//!
//! The engine reads a table at a snapshot through [`Catalog::scan`]: the files
//! and the rule that says which of their rows are visible.

mod catalog;
pub mod chunk;
mod datafile;
pub mod error;
pub mod felis;
pub mod healpix;
mod index;
mod ingest;
pub mod log;
pub mod sample;
pub mod schema;
pub mod store;

pub use catalog::{
    Catalog, CompactReport, DEFAULT_PARTITION_ORDER, ExpireReport, IngestOutcome, ScanFile,
    TableScan, VacuumReport,
};
pub use error::{Error, Refusal, Result};
pub use index::AnchorIndex;
pub use schema::{CatalogSchema, TableId};
