//! Reading one table at one snapshot: the table provider, the pruning of its
//! files, row groups and pages, and the embargo and visibility rule that sits
//! above every scan before any user expression sees a row.

pub(crate) mod bounds;
pub(crate) mod embargo;
pub(crate) mod provider;
pub(crate) mod prune;
mod read;
pub(crate) mod visible;
