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
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow_schema::{Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod sky;

use serde_json::json;
use sky::Sky;

use crate::chunk::{REPLICA_FORMAT, SRC_FORMAT};
use crate::error::{Error, Result};

const BANDS: [&str; 6] = ["u", "g", "r", "i", "z", "y"];
const FIELD_RADIUS: f64 = 1.75;
const MJD_UNIX_EPOCH: f64 = 40587.0;
const FIRST_NIGHT_MJD: f64 = 61000.0;

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

struct Obj {
    id: i64,
    ra: f64,
    dec: f64,
    born: usize,
    amp: f64,
    base: [f64; 6],
    n_src: i32,
    withdrawn: i32,
    first: Option<f64>,
    last: Option<f64>,
    band_stats: [(i32, f64, f64); 6],
    versions: Vec<f64>,
    open: bool,
}

struct Src {
    id: i64,
    obj: Option<i64>,
    withdrawn: bool,
    ra: f64,
    dec: f64,
}

struct Forced {
    obj: i64,
    visit: i64,
    detector: i16,
    withdrawn: bool,
    ra: f64,
    dec: f64,
}

/// Columns being filled for one table.
#[derive(Default)]
struct Cols {
    order: Vec<&'static str>,
    i64s: BTreeMap<&'static str, Vec<Option<i64>>>,
    i32s: BTreeMap<&'static str, Vec<Option<i32>>>,
    i16s: BTreeMap<&'static str, Vec<Option<i16>>>,
    f64s: BTreeMap<&'static str, Vec<Option<f64>>>,
    f32s: BTreeMap<&'static str, Vec<Option<f32>>>,
    strs: BTreeMap<&'static str, Vec<Option<String>>>,
    rows: usize,
}

impl Cols {
    fn see(&mut self, name: &'static str) {
        if !self.order.contains(&name) {
            self.order.push(name);
        }
    }
    fn i64(&mut self, n: &'static str, v: Option<i64>) {
        self.see(n);
        self.i64s.entry(n).or_default().push(v);
    }
    fn i32(&mut self, n: &'static str, v: Option<i32>) {
        self.see(n);
        self.i32s.entry(n).or_default().push(v);
    }
    fn i16(&mut self, n: &'static str, v: Option<i16>) {
        self.see(n);
        self.i16s.entry(n).or_default().push(v);
    }
    fn f64(&mut self, n: &'static str, v: Option<f64>) {
        self.see(n);
        self.f64s.entry(n).or_default().push(v);
    }
    fn f32(&mut self, n: &'static str, v: Option<f32>) {
        self.see(n);
        self.f32s.entry(n).or_default().push(v);
    }
    fn str(&mut self, n: &'static str, v: Option<&str>) {
        self.see(n);
        self.strs.entry(n).or_default().push(v.map(str::to_string));
    }
    fn end_row(&mut self) {
        self.rows += 1;
    }
    fn take(&mut self) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for name in &self.order {
            let (a, dt): (ArrayRef, _) = if let Some(v) = self.i64s.remove(name) {
                (Arc::new(Int64Array::from(v)), arrow_schema::DataType::Int64)
            } else if let Some(v) = self.i32s.remove(name) {
                (Arc::new(Int32Array::from(v)), arrow_schema::DataType::Int32)
            } else if let Some(v) = self.i16s.remove(name) {
                (Arc::new(Int16Array::from(v)), arrow_schema::DataType::Int16)
            } else if let Some(v) = self.f64s.remove(name) {
                (
                    Arc::new(Float64Array::from(v)),
                    arrow_schema::DataType::Float64,
                )
            } else if let Some(v) = self.f32s.remove(name) {
                (
                    Arc::new(Float32Array::from(v)),
                    arrow_schema::DataType::Float32,
                )
            } else if let Some(v) = self.strs.remove(name) {
                (Arc::new(StringArray::from(v)), arrow_schema::DataType::Utf8)
            } else {
                continue;
            };
            fields.push(Field::new(*name, dt, a.null_count() > 0));
            arrays.push(a);
        }
        *self = Cols::default();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).ok()
    }
}

fn mjd_to_unix(mjd: f64) -> f64 {
    (mjd - MJD_UNIX_EPOCH) * 86400.0
}

fn iso(mjd: f64) -> String {
    let secs = mjd_to_unix(mjd);
    let t = chrono::DateTime::from_timestamp(secs.floor() as i64, ((secs.fract()) * 1e9) as u32)
        .unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn uuid_from(rng: &mut ChaCha8Rng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let wrap = |source| Error::Parquet {
        path: path.display().to_string(),
        source,
    };
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(wrap)?;
    w.write(batch).map_err(wrap)?;
    w.close().map_err(wrap)?;
    Ok(())
}

fn write_chunk(
    dir: &Path,
    format: &str,
    chunk_id: i64,
    last_update_mjd: f64,
    unique_id: String,
    tables: Vec<(&str, RecordBatch)>,
    summary: &mut SampleSummary,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files = Vec::new();
    for (table, batch) in tables {
        let name = format!("{table}.parquet");
        write_parquet(&dir.join(&name), &batch)?;
        files.push(json!({"table": table, "path": name, "rows": batch.num_rows()}));
        *summary.rows.entry(table.to_string()).or_default() += batch.num_rows() as u64;
    }
    let manifest = json!({
        "format": format,
        "chunk_id": chunk_id,
        "last_update_time": iso(last_update_mjd),
        "unique_id": unique_id,
        "files": files,
    });
    let path = dir.join("chunk.json");
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(&path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    summary.chunks += 1;
    Ok(())
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
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let area = (cfg.objects.max(1) as f64 / cfg.density.max(1.0)).max(0.5);
    let side = area.sqrt().min(170.0);
    let mut sky = Sky::new(cfg.ra, cfg.dec, side);
    let mut summary = SampleSummary {
        footprint: (cfg.ra.rem_euclid(360.0), cfg.dec.clamp(-90.0, 90.0), side),
        ..Default::default()
    };

    let mut objs: Vec<Obj> = (0..cfg.objects)
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
    let by_id: BTreeMap<i64, usize> = objs.iter().enumerate().map(|(i, o)| (o.id, i)).collect();

    let visits_per_night = cfg
        .visits_per_night
        .unwrap_or_else(|| ((2.0 * area / 9.6).ceil() as usize).max(4));
    let mut sources: Vec<Src> = Vec::new();
    let mut forced: Vec<Forced> = Vec::new();
    let mut next_source: i64 = 5_000_000_000;
    let mut next_forced: i64 = 9_000_000_000;
    let mut next_ss: i64 = 700_000;
    // PromptSource ids count up over the whole run: unique however many
    // sources a visit has.
    let mut next_prompt: i64 = 3_000_000_000;
    let mut last_chunk: i64 = 0;
    let mut last_src_chunk: i64 = 0;

    for night in 0..cfg.nights {
        let night_mjd = FIRST_NIGHT_MJD + night as f64 + 0.05;
        let mut prompt = Cols::default();
        let mut visit_in_night = 0;
        while visit_in_night < visits_per_night {
            let chunk_visits = cfg
                .visits_per_chunk
                .max(1)
                .min(visits_per_night - visit_in_night);
            let (mut dobj, mut dsrc, mut dfs, mut dvps, mut ssobj, mut upd) = (
                Cols::default(),
                Cols::default(),
                Cols::default(),
                Cols::default(),
                Cols::default(),
                Cols::default(),
            );
            let chunk_first_source = sources.len();
            let mut chunk_end_mjd = night_mjd;
            for v in visit_in_night..visit_in_night + chunk_visits {
                let mjd = night_mjd + v as f64 * 40.0 / 86400.0;
                chunk_end_mjd = mjd + 0.003;
                let visit: i64 = (2025_1126 + night as i64) * 100_000 + v as i64;
                let band_idx = rng.random_range(0..6usize);
                let band = BANDS[band_idx];
                let (pra, pdec) = sky.random_point(&mut rng);
                let detector_of = |ra: f64, dec: f64| -> (i16, f32, f32) {
                    let (xi, eta) = sky::tangent(ra, dec, pra, pdec);
                    let dx = xi + FIELD_RADIUS;
                    let dy = eta + FIELD_RADIUS;
                    let (ix, iy) = (
                        (dx / 0.25).floor().clamp(0.0, 13.0),
                        (dy / 0.25).floor().clamp(0.0, 13.0),
                    );
                    let det = ((ix as i64 * 14 + iy as i64) % 189) as i16;
                    (
                        det,
                        ((dx % 0.25) / 0.25 * 4000.0) as f32,
                        ((dy % 0.25) / 0.25 * 4000.0) as f32,
                    )
                };
                for det in 0..189i16 {
                    let ix = (det / 14) as f64;
                    let iy = (det % 14) as f64;
                    dvps.i64("visit", Some(visit));
                    dvps.i16("detector", Some(det));
                    let (dra, ddec) = sky::untangent(
                        (ix + 0.5) * 0.25 - FIELD_RADIUS,
                        (iy + 0.5) * 0.25 - FIELD_RADIUS,
                        pra,
                        pdec,
                    );
                    dvps.f64("ra", Some(dra));
                    dvps.f64("dec", Some(ddec));
                    dvps.f64("seeing", Some(0.6 + rng.random::<f64>()));
                    dvps.f32("zeroPoint", Some(31.0 + rng.random::<f32>() * 0.5));
                    dvps.f32("skyBg", Some(100.0 + rng.random::<f32>() * 50.0));
                    dvps.i64("xSize", Some(4072));
                    dvps.i64("ySize", Some(4000));
                    dvps.end_row();
                }
                let processed = mjd + 0.001;
                for i in sky.near(pra, pdec, FIELD_RADIUS) {
                    let (det, x, y) = detector_of(objs[i].ra, objs[i].dec);
                    let phase = (mjd * 0.7 + objs[i].id as f64).sin();
                    let flux = objs[i].base[band_idx] * objs[i].amp * phase;
                    let err = 50.0 + 0.02 * flux.abs();
                    if objs[i].born <= night && !objs[i].versions.is_empty() {
                        // Forced photometry at every known object's position.
                        let o = &objs[i];
                        dfs.i64("diaForcedSourceId", Some(next_forced));
                        dfs.i64("diaObjectId", Some(o.id));
                        dfs.i64("visit", Some(visit));
                        dfs.i16("detector", Some(det));
                        dfs.f64("ra", Some(o.ra));
                        dfs.f64("dec", Some(o.dec));
                        dfs.f64("midpointMjdTai", Some(mjd));
                        dfs.f32(
                            "psfFlux",
                            Some((flux + err * rng.random_range(-1.0..1.0)) as f32),
                        );
                        dfs.f32("psfFluxErr", Some(err as f32));
                        dfs.str("band", Some(band));
                        dfs.f64("timeProcessedMjdTai", Some(processed));
                        dfs.end_row();
                        forced.push(Forced {
                            obj: o.id,
                            visit,
                            detector: det,
                            withdrawn: false,
                            ra: o.ra,
                            dec: o.dec,
                        });
                        next_forced += 1;
                    }
                    if cfg.src {
                        let o = &objs[i];
                        prompt.i64("sourceId", Some(next_prompt));
                        next_prompt += 1;
                        prompt.i64("visit", Some(visit));
                        prompt.i16("detector", Some(det));
                        prompt.str("band", Some(band));
                        let (pra, pdec) = sky::untangent(
                            rng.random_range(-1e-5..1e-5),
                            rng.random_range(-1e-5..1e-5),
                            o.ra,
                            o.dec,
                        );
                        prompt.f64("ra", Some(pra));
                        prompt.f64("dec", Some(pdec));
                        prompt.f32("psfFlux", Some((o.base[band_idx] + flux) as f32));
                        prompt.f32("psfFluxErr", Some(err as f32));
                        prompt.f32("calibFlux", Some((o.base[band_idx] + flux) as f32 * 1.01));
                        prompt.f32("calibFluxErr", Some(err as f32 * 1.1));
                        prompt.f32("extendedness", Some(rng.random::<f32>().round()));
                        prompt.f64("x", Some(x as f64));
                        prompt.f64("y", Some(y as f64));
                        prompt.end_row();
                    }
                    if objs[i].born > night || rng.random::<f64>() >= cfg.detection_probability {
                        continue;
                    }
                    // A detection: a DiaSource, and a new version of its object.
                    let o = &mut objs[i];
                    let (sra, sdec) = sky::untangent(
                        rng.random_range(-2e-5..2e-5),
                        rng.random_range(-2e-5..2e-5),
                        o.ra,
                        o.dec,
                    );
                    dsrc.i64("diaSourceId", Some(next_source));
                    dsrc.i64("visit", Some(visit));
                    dsrc.i16("detector", Some(det));
                    dsrc.i64("diaObjectId", Some(o.id));
                    dsrc.i64("ssObjectId", None);
                    dsrc.f64("midpointMjdTai", Some(mjd));
                    dsrc.f64("ra", Some(sra));
                    dsrc.f64("dec", Some(sdec));
                    dsrc.f32("raErr", Some(2e-5));
                    dsrc.f32("decErr", Some(2e-5));
                    dsrc.f32("x", Some(x));
                    dsrc.f32("y", Some(y));
                    dsrc.f32("psfFlux", Some(flux as f32));
                    dsrc.f32("psfFluxErr", Some(err as f32));
                    dsrc.f32("snr", Some((flux.abs() / err) as f32));
                    dsrc.str("band", Some(band));
                    dsrc.f64("timeProcessedMjdTai", Some(processed));
                    dsrc.f32("reliability", Some(0.5 + 0.5 * rng.random::<f32>()));
                    dsrc.end_row();
                    sources.push(Src {
                        id: next_source,
                        obj: Some(o.id),
                        withdrawn: false,
                        ra: sra,
                        dec: sdec,
                    });
                    next_source += 1;
                    o.n_src += 1;
                    o.first.get_or_insert(mjd);
                    o.last = Some(mjd);
                    let s = &mut o.band_stats[band_idx];
                    s.0 += 1;
                    let d = flux - s.1;
                    s.1 += d / s.0 as f64;
                    s.2 += d * (flux - s.1);
                    let start = processed + (o.n_src as f64) * 1e-7;
                    o.versions.push(start);
                    o.open = true;
                    object_row(&mut dobj, o, start);
                }
            }
            // Update records, as the APDB emits them after the rows.
            let t_ns = (mjd_to_unix(chunk_end_mjd) * 1e9) as i64;
            let mut order = 0;
            let mut record = |upd: &mut Cols, kind: &str, ra: f64, dec: f64, r: Record| {
                upd.i64("update_time_ns", Some(t_ns));
                upd.i32("update_order", Some(order));
                upd.str("update_type", Some(kind));
                upd.i64("diaObjectId", r.dia_object_id);
                upd.i64("diaSourceId", r.dia_source_id);
                upd.i64("visit", r.visit);
                upd.i16("detector", r.detector);
                upd.i64("ssObjectId", r.ss_object_id);
                upd.f64("ssObjectReassocTimeMjdTai", r.reassoc);
                upd.f64("timeWithdrawnMjdTai", r.withdrawn);
                upd.f64("validityEndMjdTai", r.validity_end);
                upd.i32("nDiaSources", r.n_dia_sources);
                upd.f64("ra", Some(ra));
                upd.f64("dec", Some(dec));
                upd.end_row();
                order += 1;
            };
            let new_sources = sources.len() - chunk_first_source;
            let n_events = (new_sources / 150).max(if sources.is_empty() { 0 } else { 1 });
            for _ in 0..n_events {
                if sources.is_empty() {
                    break;
                }
                match rng.random_range(0..6) {
                    0 | 1 => {
                        // Withdraw a standing DiaSource (sometimes one from this very chunk).
                        let i = rng.random_range(0..sources.len());
                        if sources[i].withdrawn {
                            continue;
                        }
                        sources[i].withdrawn = true;
                        let s = &sources[i];
                        if let Some(o) = s.obj {
                            objs[by_id[&o]].withdrawn += 1;
                        }
                        let obj_hint = if rng.random_bool(0.5) { s.obj } else { None };
                        let (id, ra, dec) = (s.id, s.ra, s.dec);
                        record(
                            &mut upd,
                            "withdraw_diasource",
                            ra,
                            dec,
                            Record {
                                dia_object_id: obj_hint,
                                dia_source_id: Some(id),
                                withdrawn: Some(chunk_end_mjd),
                                ..Default::default()
                            },
                        );
                    }
                    2 => {
                        // Re-attribute a detection to a solar-system object.
                        let i = rng.random_range(0..sources.len());
                        if sources[i].withdrawn || sources[i].obj.is_none() {
                            continue;
                        }
                        let ss = next_ss;
                        next_ss += 1;
                        ssobj.i64("ssObjectId", Some(ss));
                        ssobj.str("designation", Some(&format!("2025 S{}", ss - 700_000)));
                        ssobj.i32("nObs", Some(1));
                        ssobj.f32("arc", Some(0.0));
                        ssobj.end_row();
                        let obj_hint = sources[i].obj;
                        sources[i].obj = None;
                        let (id, ra, dec) = (sources[i].id, sources[i].ra, sources[i].dec);
                        record(
                            &mut upd,
                            "reassign_diasource",
                            ra,
                            dec,
                            Record {
                                dia_object_id: obj_hint,
                                dia_source_id: Some(id),
                                ss_object_id: Some(ss),
                                reassoc: Some(chunk_end_mjd),
                                ..Default::default()
                            },
                        );
                    }
                    3 => {
                        // Close an object's open version, or correct its count in place.
                        let i = by_id[&sources[rng.random_range(0..sources.len())]
                            .obj
                            .unwrap_or(objs[0].id)];
                        let o = &mut objs[i];
                        if !o.open {
                            continue;
                        }
                        let (id, ra, dec) = (o.id, o.ra, o.dec);
                        if rng.random_bool(0.5) {
                            o.open = false;
                            let n = o.n_src - o.withdrawn;
                            record(
                                &mut upd,
                                "close_diaobject_validity",
                                ra,
                                dec,
                                Record {
                                    dia_object_id: Some(id),
                                    validity_end: Some(chunk_end_mjd),
                                    n_dia_sources: Some(n),
                                    ..Default::default()
                                },
                            );
                        } else {
                            let n = o.n_src - o.withdrawn;
                            record(
                                &mut upd,
                                "update_n_dia_sources",
                                ra,
                                dec,
                                Record {
                                    dia_object_id: Some(id),
                                    n_dia_sources: Some(n),
                                    ..Default::default()
                                },
                            );
                        }
                    }
                    4 => {
                        if forced.is_empty() {
                            continue;
                        }
                        let i = rng.random_range(0..forced.len());
                        if forced[i].withdrawn {
                            continue;
                        }
                        forced[i].withdrawn = true;
                        let f = &forced[i];
                        let (o, v, d, ra, dec) = (f.obj, f.visit, f.detector, f.ra, f.dec);
                        record(
                            &mut upd,
                            "withdraw_diaforcedsource",
                            ra,
                            dec,
                            Record {
                                dia_object_id: Some(o),
                                visit: Some(v),
                                detector: Some(d),
                                withdrawn: Some(chunk_end_mjd),
                                ..Default::default()
                            },
                        );
                    }
                    _ => {
                        // A late version: valid from before versions already sent.
                        let i = by_id[&sources[rng.random_range(0..sources.len())]
                            .obj
                            .unwrap_or(objs[0].id)];
                        let o = &mut objs[i];
                        let k = o.versions.len();
                        if k == 0 {
                            continue;
                        }
                        let start = if k >= 2 {
                            (o.versions[k - 2] + o.versions[k - 1]) / 2.0
                        } else {
                            o.versions[0] - 0.01
                        };
                        if o.versions.contains(&start) {
                            continue;
                        }
                        o.versions.push(start);
                        o.versions.sort_by(f64::total_cmp);
                        object_row(&mut dobj, o, start);
                    }
                }
            }
            visit_in_night += chunk_visits;
            let mut chunk_id = mjd_to_unix(chunk_end_mjd) as i64;
            if chunk_id <= last_chunk {
                chunk_id = last_chunk + 1;
            }
            last_chunk = chunk_id;
            let mut tables = Vec::new();
            for (name, cols) in [
                ("DiaObject", &mut dobj),
                ("DiaSource", &mut dsrc),
                ("DiaForcedSource", &mut dfs),
                ("DetectorVisitProcessingSummary", &mut dvps),
                ("SSObject", &mut ssobj),
                ("updates", &mut upd),
            ] {
                if let Some(b) = cols.take() {
                    tables.push((name, b));
                }
            }
            let uid = uuid_from(&mut rng);
            write_chunk(
                &out.join(format!("chunk-{chunk_id}")),
                REPLICA_FORMAT,
                chunk_id,
                chunk_end_mjd,
                uid,
                tables,
                &mut summary,
            )?;
        }
        if let Some(b) = prompt.take() {
            let mut id = mjd_to_unix(night_mjd + 0.5) as i64;
            if id <= last_src_chunk {
                id = last_src_chunk + 1;
            }
            last_src_chunk = id;
            let uid = uuid_from(&mut rng);
            write_chunk(
                &out.join(format!("src-{id}")),
                SRC_FORMAT,
                id,
                night_mjd + 0.5,
                uid,
                vec![("PromptSource", b)],
                &mut summary,
            )?;
        }
        progress(night + 1, cfg.nights);
    }
    Ok(summary)
}

/// The fields of one update record the generator fills (the rest stay NULL).
#[derive(Default)]
struct Record {
    dia_object_id: Option<i64>,
    dia_source_id: Option<i64>,
    visit: Option<i64>,
    detector: Option<i16>,
    ss_object_id: Option<i64>,
    reassoc: Option<f64>,
    withdrawn: Option<f64>,
    validity_end: Option<f64>,
    n_dia_sources: Option<i32>,
}

fn object_row(c: &mut Cols, o: &Obj, start: f64) {
    c.i64("diaObjectId", Some(o.id));
    c.f64("validityStartMjdTai", Some(start));
    c.f64("ra", Some(o.ra));
    c.f64("dec", Some(o.dec));
    c.f32("raErr", Some(1e-5));
    c.f32("decErr", Some(1e-5));
    c.i32("nDiaSources", Some(o.n_src - o.withdrawn));
    c.f64("firstDiaSourceMjdTai", o.first);
    c.f64("lastDiaSourceMjdTai", o.last);
    for (b, (n, mean, m2)) in o.band_stats.iter().enumerate() {
        let (mean_name, err_name, sigma_name, ndata_name) = BAND_COLS[b];
        let has = *n > 0;
        c.f32(mean_name, has.then_some(*mean as f32));
        c.f32(err_name, has.then(|| (50.0 / (*n as f64).sqrt()) as f32));
        c.f32(
            sigma_name,
            (*n > 1).then(|| (m2 / (*n as f64 - 1.0)).sqrt() as f32),
        );
        c.i32(ndata_name, Some(*n));
    }
    c.end_row();
}

const BAND_COLS: [(&str, &str, &str, &str); 6] = [
    (
        "u_psfFluxMean",
        "u_psfFluxMeanErr",
        "u_psfFluxSigma",
        "u_psfFluxNdata",
    ),
    (
        "g_psfFluxMean",
        "g_psfFluxMeanErr",
        "g_psfFluxSigma",
        "g_psfFluxNdata",
    ),
    (
        "r_psfFluxMean",
        "r_psfFluxMeanErr",
        "r_psfFluxSigma",
        "r_psfFluxNdata",
    ),
    (
        "i_psfFluxMean",
        "i_psfFluxMeanErr",
        "i_psfFluxSigma",
        "i_psfFluxNdata",
    ),
    (
        "z_psfFluxMean",
        "z_psfFluxMeanErr",
        "z_psfFluxSigma",
        "z_psfFluxNdata",
    ),
    (
        "y_psfFluxMean",
        "y_psfFluxMeanErr",
        "y_psfFluxSigma",
        "y_psfFluxNdata",
    ),
];
