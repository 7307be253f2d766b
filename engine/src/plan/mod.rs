//! From a checked ADQL query to a physical plan: the analyzer and optimizer
//! rules the session registers (ADQL types, checked arithmetic, sort keys,
//! colocated joins: `registered`), the upload crossmatch hint (in the
//! session's query planner), the deadline on every operator, and the direct
//! path that answers id lookups without planning.

pub(crate) mod batches;
pub(crate) mod checked;
pub(crate) mod colocate;
pub(crate) mod crossmatch;
pub(crate) mod deadline;
pub(crate) mod direct;
pub(crate) mod interrupt;
pub(crate) mod like_pattern;
pub(crate) mod pipeline;
pub(crate) mod registered;
pub(crate) mod runtime;
pub(crate) mod sort_keys;
pub(crate) mod types;
