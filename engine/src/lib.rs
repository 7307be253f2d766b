//! The query engine: ADQL over a catalog, pinned to one snapshot, on DataFusion.
//!
//! [`Engine`] opens a catalog and holds one DataFusion session template (the
//! ADQL functions, the configuration, the object store, the caches). Each
//! query is parsed and checked by the `adql` crate, pinned to one snapshot,
//! planned against table providers that read that snapshot only, and returned
//! as a stream of Arrow record batches. This is the only crate that uses
//! DataFusion.

mod aggregate;
mod checked;
pub mod checksum;
mod colocate;
mod context;
mod crossmatch;
mod deadline;
pub mod embargo;
mod error;
pub mod format;
mod geometry;
mod integer_sum;
#[doc(hidden)]
pub mod kernels;
mod lineage;
mod lookup;
mod memory;
mod provider;
mod prune;
mod sort_keys;
mod spill;
pub mod state;
pub mod tables;
pub mod token;
mod types;
mod udf;
pub mod upload;
mod visible;

pub use catalog::{ScanFile, TableScan};
pub use context::{
    Engine, EngineOptions, Finished, QueryOptions, QueryResult, ReplayOptions, THREAD_STACK,
    Timings, as_of, mjd_utc,
};
pub use deadline::overdue;
pub use embargo::Embargo;
pub use error::{Error, Result};
pub use state::StateStore;
pub use token::TokenRecord;
pub use upload::Upload;

/// The DataFusion release the engine runs on (for reports and the service's metadata).
pub const DATAFUSION_VERSION: &str = datafusion::DATAFUSION_VERSION;
