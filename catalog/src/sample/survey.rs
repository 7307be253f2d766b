//! The survey being simulated: the objects on the sky, what has been sent
//! about them so far, and the night-by-night loop that writes the chunks.
//!
//! Every random draw happens in a fixed order, so a seed always gives the
//! same bytes; keep that order when changing anything here.

use std::collections::BTreeMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::columns::{Cols, mjd_to_unix, uuid_from, write_chunk};
use super::sky::Sky;
use super::{SampleConfig, SampleSummary};
use crate::chunk::{REPLICA_FORMAT, SRC_FORMAT};
use crate::error::Result;

const FIRST_NIGHT_MJD: f64 = 61000.0;

/// An object on the sky, and what its DiaObject versions have said so far.
pub(super) struct Obj {
    pub(super) id: i64,
    pub(super) ra: f64,
    pub(super) dec: f64,
    /// The first night it can be detected.
    pub(super) born: usize,
    pub(super) amp: f64,
    pub(super) base: [f64; 6],
    pub(super) n_src: i32,
    pub(super) withdrawn: i32,
    pub(super) first: Option<f64>,
    pub(super) last: Option<f64>,
    /// Per band: count, running mean and sum of squared deviations (Welford).
    pub(super) band_stats: [(i32, f64, f64); 6],
    pub(super) versions: Vec<f64>,
    pub(super) open: bool,
}

/// A DiaSource sent, which later update records may withdraw or reassign.
pub(super) struct Src {
    pub(super) id: i64,
    pub(super) obj: Option<i64>,
    pub(super) withdrawn: bool,
    pub(super) ra: f64,
    pub(super) dec: f64,
}

/// A DiaForcedSource sent, which a later update record may withdraw.
pub(super) struct Forced {
    pub(super) obj: i64,
    pub(super) visit: i64,
    pub(super) detector: i16,
    pub(super) withdrawn: bool,
    pub(super) ra: f64,
    pub(super) dec: f64,
}

/// The next id of each kind the generator hands out.
pub(super) struct Ids {
    pub(super) source: i64,
    pub(super) forced: i64,
    pub(super) ss_object: i64,
    /// PromptSource ids count up over the whole run: unique however many
    /// sources a visit has.
    pub(super) prompt: i64,
}

/// The tables of one replica chunk, being filled.
#[derive(Default)]
pub(super) struct Tables {
    pub(super) dia_object: Cols,
    pub(super) dia_source: Cols,
    pub(super) forced: Cols,
    pub(super) visits: Cols,
    pub(super) ss_object: Cols,
    pub(super) updates: Cols,
}

/// Everything the generator carries from one chunk to the next.
pub(super) struct Survey<'a> {
    pub(super) cfg: &'a SampleConfig,
    out: &'a Path,
    /// Draws for what visits observe: the same whatever the chunking.
    pub(super) rng: ChaCha8Rng,
    /// Draws for each chunk's update records and file ids, so that cutting
    /// the same visits into more chunks leaves the visits' rows as they were.
    pub(super) events_rng: ChaCha8Rng,
    pub(super) sky: Sky,
    pub(super) objs: Vec<Obj>,
    pub(super) by_id: BTreeMap<i64, usize>,
    pub(super) sources: Vec<Src>,
    pub(super) forced: Vec<Forced>,
    pub(super) ids: Ids,
    visits_per_night: usize,
    last_chunk: i64,
    last_src_chunk: i64,
    summary: SampleSummary,
}

impl<'a> Survey<'a> {
    /// Places `cfg.objects` objects on a patch sized for `cfg.density`.
    pub(super) fn new(cfg: &'a SampleConfig, out: &'a Path) -> Survey<'a> {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let area = (cfg.objects.max(1) as f64 / cfg.density.max(1.0)).max(0.5);
        let side = area.sqrt().min(170.0);
        let mut sky = Sky::new(cfg.ra, cfg.dec, side);
        let summary = SampleSummary {
            footprint: (cfg.ra.rem_euclid(360.0), cfg.dec.clamp(-90.0, 90.0), side),
            ..Default::default()
        };
        let objs: Vec<Obj> = (0..cfg.objects)
            .map(|i| {
                let (ra, dec) = sky.random_point(&mut rng);
                let mut base = [0.0; 6];
                for b in &mut base {
                    *b = 10f64.powf(2.5 + 2.0 * rng.random::<f64>());
                }
                Obj {
                    id: 1_000_000_000 + (i as i64) * 7 + rng.random_range(0..7),
                    ra,
                    dec,
                    born: rng.random_range(0..cfg.nights.max(1)),
                    amp: 0.05 + 0.5 * rng.random::<f64>(),
                    base,
                    n_src: 0,
                    withdrawn: 0,
                    first: None,
                    last: None,
                    band_stats: [(0, 0.0, 0.0); 6],
                    versions: Vec::new(),
                    open: false,
                }
            })
            .collect();
        for (i, o) in objs.iter().enumerate() {
            sky.add(i, o.ra, o.dec);
        }
        let by_id = objs.iter().enumerate().map(|(i, o)| (o.id, i)).collect();
        let visits_per_night = cfg
            .visits_per_night
            .unwrap_or_else(|| ((2.0 * area / 9.6).ceil() as usize).max(4));
        Survey {
            cfg,
            out,
            rng,
            events_rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x9e37_79b9_7f4a_7c15),
            sky,
            objs,
            by_id,
            sources: Vec::new(),
            forced: Vec::new(),
            ids: Ids {
                source: 5_000_000_000,
                forced: 9_000_000_000,
                ss_object: 700_000,
                prompt: 3_000_000_000,
            },
            visits_per_night,
            last_chunk: 0,
            last_src_chunk: 0,
            summary,
        }
    }

    /// What was written.
    pub(super) fn into_summary(self) -> SampleSummary {
        self.summary
    }

    /// Observes night `night`: its replica chunks, then its src chunk.
    pub(super) fn night(&mut self, night: usize) -> Result<()> {
        let night_mjd = FIRST_NIGHT_MJD + night as f64 + 0.05;
        let mut prompt = Cols::default();
        let mut first_visit = 0;
        while first_visit < self.visits_per_night {
            let visits = self
                .cfg
                .visits_per_chunk
                .max(1)
                .min(self.visits_per_night - first_visit);
            self.chunk(
                night,
                night_mjd,
                first_visit..first_visit + visits,
                &mut prompt,
            )?;
            first_visit += visits;
        }
        if let Some(b) = prompt.take() {
            let mut id = mjd_to_unix(night_mjd + 0.5) as i64;
            if id <= self.last_src_chunk {
                id = self.last_src_chunk + 1;
            }
            self.last_src_chunk = id;
            let uid = uuid_from(&mut self.events_rng);
            write_chunk(
                &self.out.join(format!("src-{id}")),
                SRC_FORMAT,
                id,
                night_mjd + 0.5,
                uid,
                vec![("PromptSource", b)],
                &mut self.summary,
            )?;
        }
        Ok(())
    }

    /// One replica chunk: its visits' rows, then the update records the APDB
    /// emits after them.
    fn chunk(
        &mut self,
        night: usize,
        night_mjd: f64,
        visits: std::ops::Range<usize>,
        prompt: &mut Cols,
    ) -> Result<()> {
        let mut t = Tables::default();
        let first_source = self.sources.len();
        let mut end_mjd = night_mjd;
        for v in visits {
            let mjd = night_mjd + v as f64 * 40.0 / 86400.0;
            end_mjd = mjd + 0.003;
            let visit: i64 = (2025_1126 + night as i64) * 100_000 + v as i64;
            self.visit(night, mjd, visit, &mut t, prompt);
        }
        self.events(first_source, end_mjd, &mut t);
        let mut chunk_id = mjd_to_unix(end_mjd) as i64;
        if chunk_id <= self.last_chunk {
            chunk_id = self.last_chunk + 1;
        }
        self.last_chunk = chunk_id;
        let mut tables = Vec::new();
        for (name, cols) in [
            ("DiaObject", &mut t.dia_object),
            ("DiaSource", &mut t.dia_source),
            ("DiaForcedSource", &mut t.forced),
            ("DetectorVisitProcessingSummary", &mut t.visits),
            ("SSObject", &mut t.ss_object),
            ("updates", &mut t.updates),
        ] {
            if let Some(b) = cols.take() {
                tables.push((name, b));
            }
        }
        let uid = uuid_from(&mut self.events_rng);
        write_chunk(
            &self.out.join(format!("chunk-{chunk_id}")),
            REPLICA_FORMAT,
            chunk_id,
            end_mjd,
            uid,
            tables,
            &mut self.summary,
        )
    }
}
