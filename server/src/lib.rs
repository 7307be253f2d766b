//! The TAP service of the PPDB query engine, as a library: [`app::App`] holds
//! what the handlers share, [`tap::router`] serves it, [`http::connections`]
//! accepts connections within their bounds. The `ppdb` binary is its one user.

pub mod app;
pub mod http;
pub mod tap;
