//! A deterministic generator of realistic replica chunks and src chunks.
//!
//! Objects are spread over a patch of southern sky at a chosen density. Each
//! night, visits (3.5° fields cut into detectors, one band each) detect part
//! of the objects in their field: each detection is a DiaSource and writes a
//! new DiaObject version; every known object in the field gets forced
//! photometry. Chunks cover a few visits each, as dax_apdb's time windows do,
//! and carry update records: withdrawals, reassignments to solar-system
//! objects, closures, in-place nDiaSources updates, and late versions whose
//! validity starts before versions already sent. One src chunk per night
//! carries the PromptSource rows. The same seed always gives the same bytes
//! of data (the files' unique ids included).

use std::collections::BTreeMap;
use std::path::Path;

mod columns;
mod events;
mod sky;
mod survey;
mod visit;

use crate::error::Result;
use survey::Survey;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleConfig {
    /// Number of distinct DiaObjects over the whole run.
    pub objects: usize,
    /// Number of nights.
    pub nights: usize,
    /// Random seed: the same seed gives the same chunks.
    pub seed: u64,
    /// Objects per square degree (sets the patch area).
    pub density: f64,
    /// Visits per night (default: enough to cover the patch twice).
    pub visits_per_night: Option<usize>,
    /// Visits per replica chunk.
    pub visits_per_chunk: usize,
    /// Probability that a visit detects an object in its field.
    pub detection_probability: f64,
    /// Whether to write src chunks (PromptSource).
    pub src: bool,
    /// The field centre: RA in degrees.
    pub ra: f64,
    /// The field centre: Dec in degrees.
    pub dec: f64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            objects: 10_000,
            nights: 3,
            seed: 1,
            density: 2_000.0,
            visits_per_night: None,
            visits_per_chunk: 4,
            detection_probability: 0.4,
            src: true,
            ra: 55.0,
            dec: -30.0,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Default)]
pub struct SampleSummary {
    /// Chunk folders written (replica and src).
    pub chunks: usize,
    /// Rows written per table (and `updates`).
    pub rows: BTreeMap<String, u64>,
    /// The patch: its centre (RA, Dec) and side, in degrees.
    pub footprint: (f64, f64, f64),
}

/// Writes chunk folders under `out` (created if missing) and says what it wrote.
pub fn generate(cfg: &SampleConfig, out: &Path) -> Result<SampleSummary> {
    generate_with_progress(cfg, out, &mut |_, _| {})
}

/// [`generate`], calling `progress(done, total)` after each night.
pub fn generate_with_progress(
    cfg: &SampleConfig,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SampleSummary> {
    let mut survey = Survey::new(cfg, out);
    for night in 0..cfg.nights {
        survey.night(night)?;
        progress(night + 1, cfg.nights);
    }
    Ok(survey.into_summary())
}
