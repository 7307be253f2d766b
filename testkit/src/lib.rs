//! What the tests of every crate share, so that no test file writes it out
//! again: real chunk folders built from rows ([`chunks`]), where the bundled
//! sample is ([`SAMPLE`]), and results as sorted text lines ([`lines`]).
//! A dev-dependency only: nothing here ships.

pub mod chunks;
pub mod lines;

/// The bundled sample catalog, in the source tree.
pub const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample");
