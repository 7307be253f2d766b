//! `ppdb sample`: realistic replica and src chunks, deterministic for a seed.

use std::path::PathBuf;

use anyhow::{Result, bail};
use catalog::sample::{SampleConfig, generate_with_progress};
use clap::Args;

use super::bar;
use super::stdout::say;

/// `ppdb sample`.
#[derive(Args)]
pub(crate) struct SampleArgs {
    /// Folder to write the chunk folders into.
    #[arg(long)]
    out: PathBuf,
    /// Objects on the sky (those a visit detects become DiaObjects).
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Nights of observing.
    #[arg(long, default_value_t = 3)]
    nights: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Objects per square degree.
    #[arg(long, default_value_t = 2_000.0)]
    density: f64,
    /// Visits per night (default: cover the patch twice).
    #[arg(long)]
    visits_per_night: Option<usize>,
    /// Visits per replica chunk.
    #[arg(long, default_value_t = 4)]
    visits_per_chunk: usize,
    /// Probability that a visit detects an object in its field.
    #[arg(long, default_value_t = 0.4)]
    detection_probability: f64,
    /// Do not write src (PromptSource) chunks.
    #[arg(long)]
    no_src: bool,
    /// Right ascension of the field centre, in degrees (the patch may cross RA 0).
    #[arg(long, default_value_t = 55.0, allow_negative_numbers = true)]
    ra: f64,
    /// Declination of the field centre, in degrees (the patch may cover a pole).
    #[arg(long, default_value_t = -30.0, allow_negative_numbers = true)]
    dec: f64,
}

/// Writes the chunks and says what they hold.
pub(super) async fn run(args: SampleArgs) -> Result<()> {
    let SampleArgs {
        out,
        objects,
        nights,
        seed,
        density,
        visits_per_night,
        visits_per_chunk,
        detection_probability,
        no_src,
        ra,
        dec,
    } = args;
    if !(0.0..360.0).contains(&ra) || !(-90.0..=90.0).contains(&dec) {
        bail!("--ra {ra} --dec {dec}: the field centre needs RA in [0, 360) and Dec in [-90, 90]");
    }
    let cfg = SampleConfig {
        objects,
        nights,
        seed,
        density,
        visits_per_night,
        visits_per_chunk,
        detection_probability,
        src: !no_src,
        ra,
        dec,
    };
    let bar = bar(nights as u64, "nights");
    let summary = tokio::task::spawn_blocking(move || {
        generate_with_progress(&cfg, &out, &mut |done, _| bar.set_position(done as u64))
            .map(|s| (s, bar))
    })
    .await??;
    let (summary, bar) = summary;
    bar.finish_and_clear();
    let (ra, dec, side) = summary.footprint;
    say!(
        "wrote {} chunks; a {side:.3}° square around RA {ra:.3}, Dec {dec:.3}",
        summary.chunks
    );
    for (t, n) in &summary.rows {
        say!("  {t:<32} {n:>10} rows");
    }
    Ok(())
}
