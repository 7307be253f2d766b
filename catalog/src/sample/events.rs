//! The update records a chunk carries after its rows, as the APDB emits them:
//! withdrawals, reassignments to solar-system objects, closures, in-place
//! nDiaSources corrections, and late object versions.

use rand::Rng;

use super::columns::{Cols, mjd_to_unix};
use super::survey::{Obj, Survey, Tables};

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

/// The time every record of a chunk carries, and the order among them.
struct Stamp {
    mjd: f64,
    t_ns: i64,
    order: i32,
}

impl Stamp {
    fn record(&mut self, upd: &mut Cols, kind: &str, (ra, dec): (f64, f64), r: Record) {
        upd.i64("update_time_ns", Some(self.t_ns));
        upd.i32("update_order", Some(self.order));
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
        self.order += 1;
    }
}

impl Survey<'_> {
    /// About one event per 150 DiaSources the chunk sent since `first_source`.
    pub(super) fn events(&mut self, first_source: usize, end_mjd: f64, t: &mut Tables) {
        let mut stamp = Stamp {
            mjd: end_mjd,
            t_ns: (mjd_to_unix(end_mjd) * 1e9) as i64,
            order: 0,
        };
        let new_sources = self.sources.len() - first_source;
        let n_events = (new_sources / 150).max(if self.sources.is_empty() { 0 } else { 1 });
        for _ in 0..n_events {
            if self.sources.is_empty() {
                break;
            }
            match self.events_rng.random_range(0..6) {
                0 | 1 => self.withdraw_source(&mut stamp, t),
                2 => self.reassign_source(&mut stamp, t),
                3 => self.close_or_recount(&mut stamp, t),
                4 => self.withdraw_forced(&mut stamp, t),
                _ => self.late_version(t),
            }
        }
    }

    /// Withdraws a standing DiaSource (sometimes one from this very chunk).
    fn withdraw_source(&mut self, stamp: &mut Stamp, t: &mut Tables) {
        let i = self.events_rng.random_range(0..self.sources.len());
        if self.sources[i].withdrawn {
            return;
        }
        self.sources[i].withdrawn = true;
        let s = &self.sources[i];
        if let Some(o) = s.obj {
            self.objs[self.by_id[&o]].withdrawn += 1;
        }
        let obj_hint = if self.events_rng.random_bool(0.5) {
            s.obj
        } else {
            None
        };
        let record = Record {
            dia_object_id: obj_hint,
            dia_source_id: Some(s.id),
            withdrawn: Some(stamp.mjd),
            ..Default::default()
        };
        let at = (s.ra, s.dec);
        stamp.record(&mut t.updates, "withdraw_diasource", at, record);
    }

    /// Re-attributes a detection to a new solar-system object.
    fn reassign_source(&mut self, stamp: &mut Stamp, t: &mut Tables) {
        let i = self.events_rng.random_range(0..self.sources.len());
        if self.sources[i].withdrawn || self.sources[i].obj.is_none() {
            return;
        }
        let ss = self.ids.ss_object;
        self.ids.ss_object += 1;
        let ssobj = &mut t.ss_object;
        ssobj.i64("ssObjectId", Some(ss));
        ssobj.str("designation", Some(&format!("2025 S{}", ss - 700_000)));
        ssobj.i32("nObs", Some(1));
        ssobj.f32("arc", Some(0.0));
        ssobj.end_row();
        let s = &mut self.sources[i];
        let obj_hint = s.obj.take();
        let record = Record {
            dia_object_id: obj_hint,
            dia_source_id: Some(s.id),
            ss_object_id: Some(ss),
            reassoc: Some(stamp.mjd),
            ..Default::default()
        };
        let at = (s.ra, s.dec);
        stamp.record(&mut t.updates, "reassign_diasource", at, record);
    }

    /// The object of a random DiaSource (or the first object, for a
    /// reassigned one).
    fn object_of_a_source(&mut self) -> usize {
        let s = &self.sources[self.events_rng.random_range(0..self.sources.len())];
        self.by_id[&s.obj.unwrap_or(self.objs[0].id)]
    }

    /// Closes an object's open version, or corrects its count in place.
    fn close_or_recount(&mut self, stamp: &mut Stamp, t: &mut Tables) {
        let i = self.object_of_a_source();
        let o = &mut self.objs[i];
        if !o.open {
            return;
        }
        let at = (o.ra, o.dec);
        let n = Some(o.n_src - o.withdrawn);
        if self.events_rng.random_bool(0.5) {
            o.open = false;
            let record = Record {
                dia_object_id: Some(o.id),
                validity_end: Some(stamp.mjd),
                n_dia_sources: n,
                ..Default::default()
            };
            stamp.record(&mut t.updates, "close_diaobject_validity", at, record);
        } else {
            let record = Record {
                dia_object_id: Some(o.id),
                n_dia_sources: n,
                ..Default::default()
            };
            stamp.record(&mut t.updates, "update_n_dia_sources", at, record);
        }
    }

    /// Withdraws a DiaForcedSource.
    fn withdraw_forced(&mut self, stamp: &mut Stamp, t: &mut Tables) {
        if self.forced.is_empty() {
            return;
        }
        let i = self.events_rng.random_range(0..self.forced.len());
        let f = &mut self.forced[i];
        if f.withdrawn {
            return;
        }
        f.withdrawn = true;
        let record = Record {
            dia_object_id: Some(f.obj),
            visit: Some(f.visit),
            detector: Some(f.detector),
            withdrawn: Some(stamp.mjd),
            ..Default::default()
        };
        let at = (f.ra, f.dec);
        stamp.record(&mut t.updates, "withdraw_diaforcedsource", at, record);
    }

    /// A late version: valid from before versions already sent.
    fn late_version(&mut self, t: &mut Tables) {
        let i = self.object_of_a_source();
        let o = &mut self.objs[i];
        let k = o.versions.len();
        if k == 0 {
            return;
        }
        let start = if k >= 2 {
            (o.versions[k - 2] + o.versions[k - 1]) / 2.0
        } else {
            o.versions[0] - 0.01
        };
        if o.versions.contains(&start) {
            return;
        }
        o.versions.push(start);
        o.versions.sort_by(f64::total_cmp);
        object_row(&mut t.dia_object, o, start);
    }
}

/// A DiaObject version as it stands, valid from `start`.
pub(super) fn object_row(c: &mut Cols, o: &Obj, start: f64) {
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
        let [mean_name, err_name, sigma_name, ndata_name] = BAND_COLS[b];
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

/// Per band: the mean, its error, the scatter and the count columns.
const BAND_COLS: [[&str; 4]; 6] = [
    [
        "u_psfFluxMean",
        "u_psfFluxMeanErr",
        "u_psfFluxSigma",
        "u_psfFluxNdata",
    ],
    [
        "g_psfFluxMean",
        "g_psfFluxMeanErr",
        "g_psfFluxSigma",
        "g_psfFluxNdata",
    ],
    [
        "r_psfFluxMean",
        "r_psfFluxMeanErr",
        "r_psfFluxSigma",
        "r_psfFluxNdata",
    ],
    [
        "i_psfFluxMean",
        "i_psfFluxMeanErr",
        "i_psfFluxSigma",
        "i_psfFluxNdata",
    ],
    [
        "z_psfFluxMean",
        "z_psfFluxMeanErr",
        "z_psfFluxSigma",
        "z_psfFluxNdata",
    ],
    [
        "y_psfFluxMean",
        "y_psfFluxMeanErr",
        "y_psfFluxSigma",
        "y_psfFluxNdata",
    ],
];
