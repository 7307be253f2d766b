//! The HTTP layer under the TAP routes: the accept loop and its connection
//! bounds, the time by which a response must be written, and the access log.

pub mod access_log;
pub mod connections;
pub mod write_deadline;
