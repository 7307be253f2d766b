//! The DataFusion session over a pinned catalog snapshot.
//!
//! Table providers read the seam that `catalog` exposes
//! ([`catalog::Catalog::scan`]). DataFusion arrives with the ADQL engine
//! work; until then this crate only re-exports the catalog seam it builds on.

pub use catalog::{ScanFile, TableScan};
