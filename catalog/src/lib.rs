//! The PPDB catalog: table schemas from Felis YAML, a snapshot log on object
//! storage, ingest of replica chunks, HEALPix-partitioned Parquet files,
//! compaction and vacuum.
//!
//! The engine reads a table at a snapshot through [`Catalog::scan`]: the files
//! and the rule that says which of their rows are visible.

mod catalog;
pub mod chunk;
mod compact;
mod datafile;
pub mod delivery;
pub mod error;
pub mod felis;
pub mod healpix;
mod index;
mod ingest;
pub mod log;
mod retention;
pub mod sample;
pub mod schema;
pub mod store;

pub use catalog::{
    Catalog, DEFAULT_CELL_ROWS, DEFAULT_COMPACT_ROWS, DEFAULT_PARTITION_ORDER, IngestOutcome,
    ScanFile, TableScan,
};
pub use compact::{CompactReport, MAX_FILES_PER_PARTITION, Piled, files_per_partition};
pub use error::{Error, Refusal, Result};
pub use index::AnchorIndex;
pub use retention::{ExpireReport, VacuumReport};
pub use schema::{CatalogSchema, TableId};
