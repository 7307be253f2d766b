//! ADQL 2.1 text to a validated, rewritten query.
//!
//! This crate depends on `sqlparser` only. The dialect, the allow-list walk,
//! identifier rules and time-travel clauses arrive with the ADQL engine work;
//! until then it exposes nothing.
