//! What a query runs in: the session template, the served tables (and
//! TAP_SCHEMA), the memory one query and all queries together may hold, and
//! where they spill.

pub(crate) mod catalog_list;
pub(crate) mod column_infos;
pub(crate) mod memory;
pub(crate) mod obscore;
pub(crate) mod spill;
pub(crate) mod tables;
pub(crate) mod tap_schema;
pub(crate) mod template;
