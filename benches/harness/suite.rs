//! The query suite: each query in our engine (unpinned and pinned), DuckDB and
//! Postgres, answers checked equal before any time is compared.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use arrow::util::display::array_value_to_string;
use engine::{Engine, QueryOptions, Upload};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::peers::{Postgres, Python};
use crate::{Settings, Stats};

/// The sky centre of the generated patch (see `catalog::sample`).
const CENTRE: (f64, f64) = (55.0, -30.0);
/// Positions in the upload crossmatch.
const UPLOAD_ROWS: usize = 1000;
/// Crossmatch radius, degrees (2″).
const MATCH_RADIUS: f64 = 2.0 / 3600.0;

/// What the catalog holds at its latest snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Counts {
    pub versions: i64,
    pub objects: i64,
    pub sources: i64,
    pub forced_sources: i64,
}

/// What the queries are about, chosen once from the catalog.
pub struct Setup {
    pub counts: Counts,
    /// An object with a long light curve.
    id: i64,
    /// Objects updated after this time are about 5 000.
    since: f64,
    /// The upload: id, ra, dec (as a batch and as a CSV file for the peers).
    pub upload: Upload,
    upload_csv: PathBuf,
    /// Positions and ids the load mix picks from.
    pub centres: Vec<(f64, f64)>,
    pub ids: Vec<i64>,
}

impl Setup {
    /// Picks the query parameters from the catalog (with a fixed seed).
    pub async fn choose(engine: &Engine, work: &Path) -> Result<Setup> {
        let counts = Counts {
            versions: scalar(engine, "SELECT COUNT(*) FROM ppdb.DiaObjectHistory").await?,
            objects: scalar(engine, "SELECT COUNT(*) FROM ppdb.DiaObject").await?,
            sources: scalar(engine, "SELECT COUNT(*) FROM ppdb.DiaSource").await?,
            forced_sources: scalar(engine, "SELECT COUNT(*) FROM ppdb.DiaForcedSource").await?,
        };
        let id = scalar(
            engine,
            "SELECT TOP 1 diaObjectId FROM ppdb.DiaObject ORDER BY nDiaSources DESC, diaObjectId",
        )
        .await?;
        let b = batches(
            engine,
            "SELECT TOP 1 validityStartMjdTai FROM ppdb.DiaObject ORDER BY validityStartMjdTai DESC OFFSET 5000",
            None,
        )
        .await?;
        let since = b
            .first()
            .filter(|b| b.num_rows() > 0)
            .map(|b| b.column(0).as_primitive::<Float64Type>().value(0))
            .unwrap_or(0.0);
        let sample = batches(
            engine,
            "SELECT TOP 100000 diaObjectId, ra, dec, nDiaSources FROM ppdb.DiaObject",
            None,
        )
        .await?;
        let mut objects = Vec::new();
        for b in &sample {
            let ids = b.column(0).as_primitive::<Int64Type>();
            let ra = b.column(1).as_primitive::<Float64Type>();
            let dec = b.column(2).as_primitive::<Float64Type>();
            let n = b.column(3);
            for i in 0..b.num_rows() {
                let many =
                    !n.is_null(i) && array_value_to_string(n, i)?.parse::<i64>().unwrap_or(0) > 1;
                objects.push((ids.value(i), ra.value(i), dec.value(i), many));
            }
        }
        if objects.len() < UPLOAD_ROWS {
            bail!(
                "the catalog has only {} objects; use a larger --scale",
                objects.len()
            );
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        objects.shuffle(&mut rng);
        let picked = &objects[..UPLOAD_ROWS];
        // Each target sits within 0.5″ of a real object, as a follow-up list would.
        let jitter = 0.5 / 3600.0;
        let targets: Vec<(i64, f64, f64)> = picked
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let dec = o.2 + rng.random_range(-jitter..jitter);
                let ra = o.1 + rng.random_range(-jitter..jitter) / dec.to_radians().cos();
                (i as i64, ra, dec)
            })
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ra", DataType::Float64, false),
            Field::new("dec", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(targets.iter().map(|t| t.0))),
                Arc::new(Float64Array::from_iter_values(targets.iter().map(|t| t.1))),
                Arc::new(Float64Array::from_iter_values(targets.iter().map(|t| t.2))),
            ],
        )?;
        let upload_csv = work.join("upload.csv");
        let csv: String = targets
            .iter()
            .map(|(i, ra, dec)| format!("{i},{ra:.12},{dec:.12}\n"))
            .collect();
        std::fs::write(&upload_csv, csv)?;
        Ok(Setup {
            counts,
            id,
            since,
            upload: Upload {
                name: "targets".into(),
                batch,
            },
            upload_csv,
            centres: objects.iter().take(500).map(|o| (o.1, o.2)).collect(),
            ids: objects
                .iter()
                .filter(|o| o.3)
                .take(500)
                .map(|o| o.0)
                .collect(),
        })
    }
}

/// One query of the suite, in each engine's language.
struct Case {
    name: &'static str,
    adql: String,
    duckdb: String,
    postgres: String,
    upload: bool,
}

/// The figures of one query.
#[derive(Serialize)]
pub struct QueryFigure {
    pub name: String,
    pub adql: String,
    pub rows: usize,
    /// Our engine, ADQL as written (no token).
    pub ours: Stats,
    /// Our engine, the pinned form with its token record (what users get).
    pub pinned: Stats,
    pub duckdb: Option<Stats>,
    pub postgres: Option<Stats>,
}

/// A cone in DuckDB's SQL: the haversine distance, with a declination band first.
pub fn haversine(ra: &str, dec: &str, ra0: &str, dec0: &str, r: f64) -> String {
    format!(
        "{dec} BETWEEN {dec0} - {r} AND {dec0} + {r} AND 2 * asin(sqrt(pow(sin(radians({dec} - {dec0}) / 2), 2) + cos(radians({dec})) * cos(radians({dec0})) * pow(sin(radians({ra} - {ra0}) / 2), 2))) <= radians({r})"
    )
}

/// The ADQL of a 5′ cone on DiaObject (shared with the load mix).
pub fn cone_adql(ra: f64, dec: f64) -> String {
    format!(
        "SELECT diaObjectId, ra, dec FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {})) = 1",
        5.0 / 60.0
    )
}

/// The Postgres SQL of [`cone_adql`].
pub fn cone_postgres(ra: f64, dec: f64) -> String {
    format!(
        "SELECT \"diaObjectId\", ra, dec FROM diaobject WHERE q3c_radial_query(ra, dec, {ra}, {dec}, {})",
        5.0 / 60.0
    )
}

/// The ADQL of a DiaSource light curve (shared with the load mix).
pub fn light_curve_adql(id: i64) -> String {
    format!(
        "SELECT diaSourceId, midpointMjdTai, band, psfFlux FROM ppdb.DiaSource WHERE diaObjectId = {id}"
    )
}

/// The Postgres SQL of [`light_curve_adql`].
pub fn light_curve_postgres(id: i64) -> String {
    format!(
        "SELECT \"diaSourceId\", \"midpointMjdTai\", band, \"psfFlux\" FROM diasource WHERE \"diaObjectId\" = {id}"
    )
}

fn cases(setup: &Setup, catalog_dir: &Path) -> Vec<Case> {
    let files = |t: &str| {
        format!(
            "read_parquet('{}/{t}/**/*.parquet', union_by_name=true)",
            catalog_dir.display()
        )
    };
    let (ra, dec) = CENTRE;
    let (id, since) = (setup.id, setup.since);
    let (ra_s, dec_s) = (ra.to_string(), dec.to_string());
    let current = "_retired IS NULL AND validityEndMjdTai IS NULL";
    let cone = |r: f64, name: &'static str| Case {
        name,
        adql: format!(
            "SELECT diaObjectId, ra, dec FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {r})) = 1"
        ),
        duckdb: format!(
            "SELECT diaObjectId, ra, dec FROM {} WHERE {current} AND {}",
            files("DiaObject"),
            haversine("ra", "dec", &ra_s, &dec_s, r)
        ),
        postgres: format!(
            "SELECT \"diaObjectId\", ra, dec FROM diaobject WHERE q3c_radial_query(ra, dec, {ra}, {dec}, {r})"
        ),
        upload: false,
    };
    let join_r = 10.0 / 60.0;
    vec![
        cone(5.0 / 60.0, "cone 5′ (DiaObject)"),
        cone(1.0, "cone 1° (DiaObject)"),
        Case {
            name: "light curve (DiaSource of one object)",
            adql: light_curve_adql(id),
            duckdb: format!(
                "SELECT diaSourceId, midpointMjdTai, band, psfFlux FROM {} WHERE _retired IS NULL AND diaObjectId = {id}",
                files("DiaSource")
            ),
            postgres: light_curve_postgres(id),
            upload: false,
        },
        Case {
            name: "light curve (DiaForcedSource of one object)",
            adql: format!(
                "SELECT diaForcedSourceId, midpointMjdTai, band, psfFlux FROM ppdb.DiaForcedSource WHERE diaObjectId = {id}"
            ),
            duckdb: format!(
                "SELECT diaForcedSourceId, midpointMjdTai, band, psfFlux FROM {} WHERE _retired IS NULL AND diaObjectId = {id}",
                files("DiaForcedSource")
            ),
            postgres: format!(
                "SELECT \"diaForcedSourceId\", \"midpointMjdTai\", band, \"psfFlux\" FROM diaforcedsource WHERE \"diaObjectId\" = {id}"
            ),
            upload: false,
        },
        Case {
            name: "objects updated since a time",
            adql: format!(
                "SELECT diaObjectId, ra, dec, validityStartMjdTai FROM ppdb.DiaObject WHERE validityStartMjdTai > {since}"
            ),
            duckdb: format!(
                "SELECT diaObjectId, ra, dec, validityStartMjdTai FROM {} WHERE {current} AND validityStartMjdTai > {since}",
                files("DiaObject")
            ),
            postgres: format!(
                "SELECT \"diaObjectId\", ra, dec, \"validityStartMjdTai\" FROM diaobject WHERE \"validityStartMjdTai\" > {since}"
            ),
            upload: false,
        },
        Case {
            name: "full-table aggregate (DiaSource by band)",
            adql: "SELECT band, COUNT(*) AS n, AVG(psfFlux) AS mean_flux FROM ppdb.DiaSource GROUP BY band".into(),
            duckdb: format!(
                "SELECT band, COUNT(*), AVG(psfFlux) FROM {} WHERE _retired IS NULL GROUP BY band",
                files("DiaSource")
            ),
            postgres: "SELECT band, COUNT(*), AVG(\"psfFlux\") FROM diasource GROUP BY band".into(),
            upload: false,
        },
        Case {
            name: "cone join DiaObject ⋈ DiaSource (10′)",
            adql: format!(
                "SELECT o.diaObjectId, s.diaSourceId, s.psfFlux FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s ON s.diaObjectId = o.diaObjectId WHERE CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', {ra}, {dec}, {join_r})) = 1"
            ),
            duckdb: format!(
                "SELECT o.diaObjectId, s.diaSourceId, s.psfFlux FROM {} AS o JOIN {} AS s ON s.diaObjectId = o.diaObjectId WHERE o._retired IS NULL AND o.validityEndMjdTai IS NULL AND s._retired IS NULL AND {}",
                files("DiaObject"),
                files("DiaSource"),
                haversine("o.ra", "o.dec", &ra_s, &dec_s, join_r)
            ),
            postgres: format!(
                "SELECT o.\"diaObjectId\", s.\"diaSourceId\", s.\"psfFlux\" FROM diaobject AS o JOIN diasource AS s ON s.\"diaObjectId\" = o.\"diaObjectId\" WHERE q3c_radial_query(o.ra, o.dec, {ra}, {dec}, {join_r})"
            ),
            upload: false,
        },
        Case {
            name: "upload crossmatch (1000 positions, 2″)",
            adql: format!(
                "SELECT t.id, o.diaObjectId FROM TAP_UPLOAD.targets AS t JOIN ppdb.DiaObject AS o ON CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', t.ra, t.dec, {MATCH_RADIUS})) = 1"
            ),
            duckdb: format!(
                "SELECT t.id, o.diaObjectId FROM upload AS t JOIN {} AS o ON {} WHERE o.{}",
                files("DiaObject"),
                haversine("o.ra", "o.dec", "t.ra", "t.dec", MATCH_RADIUS),
                "_retired IS NULL AND o.validityEndMjdTai IS NULL"
            ),
            postgres: format!(
                "SELECT t.id, o.\"diaObjectId\" FROM upload AS t JOIN diaobject AS o ON q3c_join(t.ra, t.dec, o.ra, o.dec, {MATCH_RADIUS})"
            ),
            upload: true,
        },
    ]
}

/// Runs the suite: every query in every engine, answers checked first.
pub async fn run(
    engine: &Engine,
    setup: &Setup,
    s: &Settings,
    python: &Python,
    postgres: Option<&Postgres<'_>>,
    catalog_dir: &Path,
) -> Result<Vec<QueryFigure>> {
    let mut out = Vec::new();
    for c in cases(setup, catalog_dir) {
        let uploads = if c.upload {
            vec![setup.upload.clone()]
        } else {
            Vec::new()
        };
        let upload_csv = c.upload.then_some(setup.upload_csv.as_path());
        let (rows, keys, ours) = time_ours(engine, &c.adql, &uploads, false, s).await?;
        let (_, pinned_keys, pinned) = time_ours(engine, &c.adql, &uploads, true, s).await?;
        if pinned_keys != keys {
            bail!(
                "{}: the pinned form's answer differs from the query's",
                c.name
            );
        }
        let duck = python.duckdb(&c.duckdb, s.repeat, s.budget, upload_csv)?;
        same(c.name, "DuckDB", &keys, &duck.keys)?;
        let pg = match postgres {
            Some(pg) => {
                let t = pg.run(&c.postgres, s.repeat, s.budget, upload_csv)?;
                same(c.name, "PostgreSQL", &keys, &t.keys)?;
                Some(Stats::of(t.times, t.rows))
            }
            None => None,
        };
        let f = QueryFigure {
            name: c.name.to_string(),
            adql: c.adql.clone(),
            rows,
            ours: Stats::of(ours, rows),
            pinned: Stats::of(pinned, rows),
            duckdb: Some(Stats::of(duck.times, duck.rows)),
            postgres: pg,
        };
        eprintln!(
            "{:<45} rows {:>7}  ours p50 {:>8.2} ms  pinned {:>8.2} ms  duckdb {:>8.2} ms  postgres {:>8.2} ms",
            f.name,
            f.rows,
            f.ours.p50_ms,
            f.pinned.p50_ms,
            f.duckdb.as_ref().map_or(f64::NAN, |d| d.p50_ms),
            f.postgres.as_ref().map_or(f64::NAN, |d| d.p50_ms),
        );
        out.push(f);
    }
    Ok(out)
}

/// The peer's answer must equal ours (integer and text values of every row).
fn same(name: &str, peer: &str, ours: &[String], theirs: &[String]) -> Result<()> {
    if ours != theirs {
        let first = ours
            .iter()
            .zip(theirs)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(theirs.len()));
        bail!(
            "{name}: {peer}'s answer differs from ours ({} rows against our {}; first difference at sorted row {first}: {:?} against our {:?})",
            theirs.len(),
            ours.len(),
            theirs.get(first),
            ours.get(first)
        );
    }
    Ok(())
}

/// Runs one query back to back for the load step's time and prints its latency.
pub async fn only(
    engine: &Engine,
    adql: &str,
    upload: Option<Upload>,
    pinned: bool,
    s: &Settings,
) -> Result<()> {
    let s = Settings {
        repeat: usize::MAX,
        budget: s.load_seconds,
        ..s.clone()
    };
    let uploads: Vec<Upload> = upload.into_iter().collect();
    let opts = QueryOptions {
        uploads: uploads.clone(),
        ..Default::default()
    };
    if std::env::var_os("PPDB_BENCH_PHASES").is_some() {
        // The second run is warm: footers and page indexes cached.
        engine.explain_analyze(adql, &opts).await?;
        eprintln!("{}", engine.explain_analyze(adql, &opts).await?);
    }
    let (rows, _, times) = time_ours(engine, adql, &uploads, pinned, &s).await?;
    let st = Stats::of(times, rows);
    println!(
        "{rows} rows, {} runs: p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms",
        st.runs, st.p50_ms, st.p95_ms, st.p99_ms
    );
    Ok(())
}

/// Times a query in our engine: rows, answer keys, one time per timed run.
async fn time_ours(
    engine: &Engine,
    adql: &str,
    uploads: &[Upload],
    pinned: bool,
    s: &Settings,
) -> Result<(usize, Vec<String>, Vec<Duration>)> {
    let opts = QueryOptions {
        uploads: uploads.to_vec(),
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut keys = Vec::new();
    let mut rows = 0;
    let mut start = None;
    let mut i = 0usize;
    loop {
        let timed = i >= 3;
        if timed && start.is_none() {
            start = Some(Instant::now());
        }
        if timed
            && (times.len() >= s.repeat
                || (times.len() >= 3
                    && start.is_some_and(|t: Instant| t.elapsed().as_secs_f64() > s.budget)))
        {
            break;
        }
        let t = Instant::now();
        let result = if pinned {
            // A distinct comment makes each run a new query with a new token record,
            // as a stream of users' queries would be.
            let text = format!("{adql} -- run {i} {}", std::process::id());
            engine.query(&text, &opts).await?
        } else {
            engine.query_unpinned(adql, &opts).await?
        };
        let tm = result.timings;
        let (b, _) = result.collect().await?;
        let e = t.elapsed();
        if timed && std::env::var_os("PPDB_BENCH_PHASES").is_some() {
            eprintln!(
                "parse {:?} pin {:?} plan {:?} physical {:?} total {e:?}",
                tm.parse, tm.pin, tm.plan, tm.physical
            );
        }
        if i == 0 {
            keys = row_keys(&b)?;
            rows = b.iter().map(|b| b.num_rows()).sum();
        }
        if timed {
            times.push(e);
        }
        i += 1;
    }
    Ok((rows, keys, times))
}

/// Each row's integer and text values joined by `|`, sorted (as `peers.py` writes them).
fn row_keys(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for b in batches {
        let cols: Vec<&Arc<dyn Array>> = b
            .columns()
            .iter()
            .filter(|c| {
                c.data_type().is_integer()
                    || matches!(
                        c.data_type(),
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    )
            })
            .collect();
        for i in 0..b.num_rows() {
            let mut parts = Vec::new();
            for c in &cols {
                if !c.is_null(i) {
                    parts.push(array_value_to_string(c, i)?);
                }
            }
            keys.push(parts.join("|"));
        }
    }
    keys.sort();
    Ok(keys)
}

async fn batches(
    engine: &Engine,
    adql: &str,
    opts: Option<QueryOptions>,
) -> Result<Vec<RecordBatch>> {
    let opts = opts.unwrap_or_default();
    Ok(engine.query_unpinned(adql, &opts).await?.collect().await?.0)
}

async fn scalar(engine: &Engine, adql: &str) -> Result<i64> {
    let b = batches(engine, adql, None).await?;
    let b = b.iter().find(|b| b.num_rows() > 0).context("no row")?;
    let c = b.column(0);
    Ok(if c.is_null(0) {
        0
    } else {
        c.as_primitive::<Int64Type>().value(0)
    })
}
