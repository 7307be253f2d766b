//! What makes a result repeatable: the token and its record, the checksum of
//! the rows, and the state store that keeps both.

pub(crate) mod budget;
pub(crate) mod checksum;
pub mod error;
pub(crate) mod replay;
pub(crate) mod state;
pub(crate) mod token;
pub(crate) mod uploads;
