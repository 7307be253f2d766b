//! What the server's tests share: `ppdb serve` at a free port of 127.0.0.1
//! ([`serve::Server`]) and the `ppdb` program run as a user would
//! ([`ppdb`]). They need the binary this crate builds, so they live here
//! rather than in `testkit`.
#![allow(dead_code)]

pub mod ppdb;
pub mod serve;
