//! The HTTP layer under the TAP routes: the accept loop and its connection
//! bounds, and the access log.

pub mod access_log;
pub mod connections;
