//! The query engine: ADQL over a catalog, pinned to one snapshot, on DataFusion.
//!
//! [`Engine`] opens a catalog and holds one DataFusion session template (the
//! ADQL functions, the configuration, the object store, the caches). Each
//! query is parsed and checked by the `adql` crate, pinned to one snapshot,
//! planned against table providers that read that snapshot only, and returned
//! as a stream of Arrow record batches. This is the only crate that uses
//! DataFusion.

pub mod coverage;
pub mod encode;
mod engine;
mod error;
pub mod export;
mod functions;
mod options;
mod plan;
mod result;
mod scan;
mod session;
mod snapshot;
mod tokens;

pub use catalog::{ScanFile, TableScan};
pub use encode::votable::upload;
pub use engine::Engine;
pub use error::{Error, Result};
#[doc(hidden)]
pub use functions::kernels;
pub use options::{EngineOptions, Hold, QueryOptions, ReplayOptions, Timings};
pub use plan::deadline::overdue;
pub use plan::pipeline::THREAD_STACK;
pub use result::{Finished, QueryResult};
pub use scan::embargo::Embargo;
pub use snapshot::{SnapshotError, as_of, mjd_utc, parse_time};
pub use tokens::error::TokenError;
pub use tokens::state::{StateError, StateStore};
pub use tokens::token::TokenRecord;
pub use upload::{Upload, UploadError};

/// The DataFusion release the engine runs on (for reports and the service's metadata).
pub const DATAFUSION_VERSION: &str = datafusion::DATAFUSION_VERSION;
