//! One visit: a field in one band, cut into detectors, that measures every
//! object in it (forced photometry, PromptSources) and detects some of them
//! (DiaSources, each writing a new DiaObject version).

use rand::Rng;

use super::columns::Cols;
use super::events::object_row;
use super::sky;
use super::survey::{Forced, Src, Survey, Tables};

const BANDS: [&str; 6] = ["u", "g", "r", "i", "z", "y"];
const FIELD_RADIUS: f64 = 1.75;
/// A field is 14 × 14 detectors of 0.25°, numbered modulo LSSTCam's 189.
const DETECTORS: i16 = 189;
const DETECTOR_SIDE: f64 = 0.25;

impl Survey<'_> {
    /// Observes visit `visit` at `mjd` on night `night`.
    pub(super) fn visit(
        &mut self,
        night: usize,
        mjd: f64,
        visit: i64,
        t: &mut Tables,
        prompt: &mut Cols,
    ) {
        let band_idx = self.rng.random_range(0..6usize);
        let band = BANDS[band_idx];
        let (pra, pdec) = self.sky.random_point(&mut self.rng);
        self.detectors(visit, pra, pdec, &mut t.visits);
        let processed = mjd + 0.001;
        for i in self.sky.near(pra, pdec, FIELD_RADIUS) {
            let (det, x, y) = detector_of(self.objs[i].ra, self.objs[i].dec, pra, pdec);
            let phase = (mjd * 0.7 + self.objs[i].id as f64).sin();
            let flux = self.objs[i].base[band_idx] * self.objs[i].amp * phase;
            let err = 50.0 + 0.02 * flux.abs();
            if self.objs[i].born <= night && !self.objs[i].versions.is_empty() {
                // Forced photometry at every known object's position.
                let o = &self.objs[i];
                let dfs = &mut t.forced;
                dfs.i64("diaForcedSourceId", Some(self.ids.forced));
                dfs.i64("diaObjectId", Some(o.id));
                dfs.i64("visit", Some(visit));
                dfs.i16("detector", Some(det));
                dfs.f64("ra", Some(o.ra));
                dfs.f64("dec", Some(o.dec));
                dfs.f64("midpointMjdTai", Some(mjd));
                dfs.f32(
                    "psfFlux",
                    Some((flux + err * self.rng.random_range(-1.0..1.0)) as f32),
                );
                dfs.f32("psfFluxErr", Some(err as f32));
                dfs.str("band", Some(band));
                dfs.f64("timeProcessedMjdTai", Some(processed));
                dfs.end_row();
                self.forced.push(Forced {
                    obj: o.id,
                    visit,
                    detector: det,
                    withdrawn: false,
                    ra: o.ra,
                    dec: o.dec,
                });
                self.ids.forced += 1;
            }
            if self.cfg.src {
                let o = &self.objs[i];
                prompt.i64("sourceId", Some(self.ids.prompt));
                self.ids.prompt += 1;
                prompt.i64("visit", Some(visit));
                prompt.i16("detector", Some(det));
                prompt.str("band", Some(band));
                let (pra, pdec) = sky::untangent(
                    self.rng.random_range(-1e-5..1e-5),
                    self.rng.random_range(-1e-5..1e-5),
                    o.ra,
                    o.dec,
                );
                prompt.f64("ra", Some(pra));
                prompt.f64("dec", Some(pdec));
                prompt.f32("psfFlux", Some((o.base[band_idx] + flux) as f32));
                prompt.f32("psfFluxErr", Some(err as f32));
                prompt.f32("calibFlux", Some((o.base[band_idx] + flux) as f32 * 1.01));
                prompt.f32("calibFluxErr", Some(err as f32 * 1.1));
                prompt.f32("extendedness", Some(self.rng.random::<f32>().round()));
                prompt.f64("x", Some(x as f64));
                prompt.f64("y", Some(y as f64));
                prompt.end_row();
            }
            // The draw happens only for objects already born, as it always has.
            if self.objs[i].born > night
                || self.rng.random::<f64>() >= self.cfg.detection_probability
            {
                continue;
            }
            self.detect(i, visit, det, (x, y), mjd, band_idx, flux, err, t);
        }
    }

    /// One DetectorVisitProcessingSummary row per detector of the field.
    fn detectors(&mut self, visit: i64, pra: f64, pdec: f64, dvps: &mut Cols) {
        for det in 0..DETECTORS {
            let ix = (det / 14) as f64;
            let iy = (det % 14) as f64;
            dvps.i64("visit", Some(visit));
            dvps.i16("detector", Some(det));
            let (dra, ddec) = sky::untangent(
                (ix + 0.5) * DETECTOR_SIDE - FIELD_RADIUS,
                (iy + 0.5) * DETECTOR_SIDE - FIELD_RADIUS,
                pra,
                pdec,
            );
            dvps.f64("ra", Some(dra));
            dvps.f64("dec", Some(ddec));
            // The detector's corners (no draw: the other columns keep their
            // values), lower left first, around the square it covers.
            let x0 = ix * DETECTOR_SIDE - FIELD_RADIUS;
            let y0 = iy * DETECTOR_SIDE - FIELD_RADIUS;
            let (x1, y1) = (x0 + DETECTOR_SIDE, y0 + DETECTOR_SIDE);
            for (ra_name, dec_name, (xi, eta)) in [
                ("llcra", "llcdec", (x0, y0)),
                ("ulcra", "ulcdec", (x0, y1)),
                ("urcra", "urcdec", (x1, y1)),
                ("lrcra", "lrcdec", (x1, y0)),
            ] {
                let (cra, cdec) = sky::untangent(xi, eta, pra, pdec);
                dvps.f64(ra_name, Some(cra));
                dvps.f64(dec_name, Some(cdec));
            }
            dvps.f64("seeing", Some(0.6 + self.rng.random::<f64>()));
            dvps.f32("zeroPoint", Some(31.0 + self.rng.random::<f32>() * 0.5));
            dvps.f32("skyBg", Some(100.0 + self.rng.random::<f32>() * 50.0));
            dvps.i64("xSize", Some(4072));
            dvps.i64("ySize", Some(4000));
            dvps.end_row();
        }
    }

    /// A detection of object `i`: a DiaSource, and a new version of its object.
    #[allow(clippy::too_many_arguments)]
    fn detect(
        &mut self,
        i: usize,
        visit: i64,
        det: i16,
        (x, y): (f32, f32),
        mjd: f64,
        band_idx: usize,
        flux: f64,
        err: f64,
        t: &mut Tables,
    ) {
        let processed = mjd + 0.001;
        let o = &mut self.objs[i];
        let (sra, sdec) = sky::untangent(
            self.rng.random_range(-2e-5..2e-5),
            self.rng.random_range(-2e-5..2e-5),
            o.ra,
            o.dec,
        );
        let dsrc = &mut t.dia_source;
        dsrc.i64("diaSourceId", Some(self.ids.source));
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
        dsrc.str("band", Some(BANDS[band_idx]));
        dsrc.f64("timeProcessedMjdTai", Some(processed));
        dsrc.f32("reliability", Some(0.5 + 0.5 * self.rng.random::<f32>()));
        dsrc.end_row();
        self.sources.push(Src {
            id: self.ids.source,
            obj: Some(o.id),
            withdrawn: false,
            ra: sra,
            dec: sdec,
        });
        self.ids.source += 1;
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
        object_row(&mut t.dia_object, o, start);
    }
}

/// The detector an object falls on, and its pixel position there.
fn detector_of(ra: f64, dec: f64, pra: f64, pdec: f64) -> (i16, f32, f32) {
    let (xi, eta) = sky::tangent(ra, dec, pra, pdec);
    let dx = xi + FIELD_RADIUS;
    let dy = eta + FIELD_RADIUS;
    let (ix, iy) = (
        (dx / DETECTOR_SIDE).floor().clamp(0.0, 13.0),
        (dy / DETECTOR_SIDE).floor().clamp(0.0, 13.0),
    );
    let det = ((ix as i64 * 14 + iy as i64) % DETECTORS as i64) as i16;
    (
        det,
        ((dx % DETECTOR_SIDE) / DETECTOR_SIDE * 4000.0) as f32,
        ((dy % DETECTOR_SIDE) / DETECTOR_SIDE * 4000.0) as f32,
    )
}
