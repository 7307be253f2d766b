//! The embargo, through the engine's public API: a caller without privilege
//! never sees, counts or infers a row younger than the cutoff, through any
//! table, join, subquery, set operation, aggregate, upload or replay.
//!
//! The bundled sample has three nights (DiaSource midpoints at MJD 61000.05,
//! 61001.05 and 61002.05, in TAI); the cutoff used here, MJD 61001.6, embargoes
//! the third night. Each hostile query is run twice: without privilege, and
//! with privilege on a reference form that spells the embargo out in ADQL
//! (each table replaced by a derived table of its public rows) read as the
//! catalog stood at the cutoff (the last snapshot whose chunks all came before
//! it: rows, and every column of them as update records had left them then).
//! The two must agree, and the privileged run of the hostile query itself must
//! differ, so that every query really reaches for embargoed rows.

use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use engine::{Embargo, Engine, EngineOptions, QueryOptions, ReplayOptions, Upload};

use lines::sorted_lines;
use testkit::lines;

use testkit::SAMPLE;

mod channels;
mod rows;
mod timing;

/// Between the second night's last src chunk (MJD 61001.55) and the third night.
const CUTOFF: f64 = 61001.6;

/// The last snapshot whose chunks all came before the cutoff.
const PUBLIC_SNAPSHOT: u64 = 8;

async fn open(cutoff: f64, state: &str) -> Engine {
    Engine::open_with(
        SAMPLE,
        EngineOptions {
            state: Some(format!("memory://{state}")),
            embargo: Embargo::Until(cutoff),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn options(privileged: bool) -> QueryOptions {
    QueryOptions {
        privileged,
        ..Default::default()
    }
}

async fn lines_with(engine: &Engine, adql: &str, opts: &QueryOptions) -> Vec<String> {
    let r = engine
        .query(adql, opts)
        .await
        .unwrap_or_else(|e| panic!("{adql}: {}", e.message()));
    let (batches, _) = r
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{adql}: {}", e.message()));
    sorted_lines(&batches)
}

async fn lines(engine: &Engine, adql: &str, privileged: bool) -> Vec<String> {
    lines_with(engine, adql, &options(privileged)).await
}

/// A reference form's rows: with privilege, as the catalog stood at the cutoff.
async fn reference(engine: &Engine, adql: &str) -> Vec<String> {
    lines_with(engine, adql, &at_cutoff(options(true))).await
}

fn at_cutoff(options: QueryOptions) -> QueryOptions {
    QueryOptions {
        as_of: Some(adql::AsOf::Snapshot(PUBLIC_SNAPSHOT)),
        ..options
    }
}

/// The public rows of a DiaObject table spelled out in ADQL: versions that began
/// by the cutoff, with an end set after it read as NULL.
fn public_objects(engine: &Engine, current: bool) -> String {
    let t = engine
        .tables()
        .iter()
        .find(|t| t.name == "DiaObjectHistory")
        .unwrap();
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            if c.name == "validityEndMjdTai" {
                format!(
                    "CASE WHEN validityEndMjdTai > {CUTOFF} THEN NULL ELSE validityEndMjdTai END \
                     AS validityEndMjdTai"
                )
            } else {
                c.name.clone()
            }
        })
        .collect();
    let mut filter = format!("validityStartMjdTai <= {CUTOFF}");
    if current {
        filter.push_str(&format!(
            " AND (validityEndMjdTai IS NULL OR validityEndMjdTai > {CUTOFF})"
        ));
    }
    format!(
        "(SELECT {} FROM ppdb.DiaObjectHistory WHERE {filter})",
        cols.join(", ")
    )
}

/// The hostile form (`public` false) or the reference form of a query template.
fn form(engine: &Engine, template: &str, public: bool) -> String {
    let c = CUTOFF.to_string();
    let tables: [(&str, String, String); 4] = [
        (
            "{DiaSource}",
            "ppdb.DiaSource".into(),
            format!("(SELECT * FROM ppdb.DiaSource WHERE midpointMjdTai <= {c})"),
        ),
        (
            "{DiaForcedSource}",
            "ppdb.DiaForcedSource".into(),
            format!("(SELECT * FROM ppdb.DiaForcedSource WHERE midpointMjdTai <= {c})"),
        ),
        (
            "{DiaObject}",
            "ppdb.DiaObject".into(),
            public_objects(engine, true),
        ),
        (
            "{History}",
            "ppdb.DiaObjectHistory".into(),
            public_objects(engine, false),
        ),
    ];
    let mut out = template.replace("{C}", &c);
    for (name, hostile, reference) in tables {
        out = out.replace(name, if public { &reference } else { &hostile });
    }
    out
}

/// Queries that try to read, count or infer the third night.
const HOSTILE: &[&str] = &[
    // Reading and counting the embargoed rows directly.
    "SELECT COUNT(*) FROM {DiaSource} AS s",
    "SELECT MAX(midpointMjdTai) FROM {DiaSource} AS s",
    "SELECT TOP 5 diaSourceId, midpointMjdTai FROM {DiaSource} AS s ORDER BY midpointMjdTai DESC, diaSourceId",
    "SELECT COUNT(*) FROM {DiaSource} AS s WHERE s.midpointMjdTai > {C}",
    "SELECT * FROM {DiaSource} AS s WHERE s.midpointMjdTai > 61002",
    "SELECT band, COUNT(*) AS n FROM {DiaSource} AS s GROUP BY band",
    "SELECT COUNT(*) FROM {DiaForcedSource} AS f",
    "SELECT MAX(midpointMjdTai) FROM {DiaForcedSource} AS f",
    "SELECT COUNT(*) FROM {DiaForcedSource} AS f WHERE f.midpointMjdTai BETWEEN {C} AND {C} + 10",
    "SELECT COUNT(*) FROM {DiaObject} AS o",
    "SELECT COUNT(*) FROM {History} AS h",
    "SELECT MAX(validityStartMjdTai) FROM {History} AS h",
    "SELECT SUM(nDiaSources) FROM {DiaObject} AS o",
    "SELECT MAX(nDiaSources) FROM {History} AS h",
    "SELECT MAX(lastDiaSourceMjdTai) FROM {DiaObject} AS o",
    "SELECT COUNT(*) FROM {DiaObject} AS o WHERE o.firstDiaSourceMjdTai > 61002",
    // Inferring later versions from the ends of earlier ones.
    "SELECT MAX(validityEndMjdTai) FROM {History} AS h",
    "SELECT COUNT(*) FROM {History} AS h WHERE h.validityEndMjdTai > {C}",
    "SELECT COUNT(*) FROM {History} AS h WHERE h.validityEndMjdTai IS NULL",
    "SELECT COUNT(*) FROM {History} AS a JOIN {History} AS b ON a.diaObjectId = b.diaObjectId AND a.validityEndMjdTai = b.validityStartMjdTai",
    // Joins, subqueries and set operations.
    "SELECT COUNT(*) FROM {DiaObject} AS o JOIN {DiaSource} AS s ON o.diaObjectId = s.diaObjectId",
    "SELECT COUNT(s.diaSourceId) FROM {DiaObject} AS o LEFT JOIN {DiaSource} AS s ON s.diaObjectId = o.diaObjectId",
    "SELECT COUNT(*) FROM {DiaObject} AS o JOIN {DiaForcedSource} AS f USING (diaObjectId)",
    "SELECT COUNT(*) FROM {DiaSource} AS s WHERE s.diaObjectId IN (SELECT diaObjectId FROM {DiaObject} AS o WHERE o.nDiaSources > 3)",
    "SELECT COUNT(*) FROM {DiaObject} AS o WHERE EXISTS (SELECT 1 FROM {DiaSource} AS s WHERE s.diaObjectId = o.diaObjectId AND s.midpointMjdTai > 61002)",
    "SELECT COUNT(*) FROM {DiaObject} AS o WHERE NOT EXISTS (SELECT 1 FROM {DiaSource} AS s WHERE s.diaObjectId = o.diaObjectId AND s.midpointMjdTai < 61001)",
    "SELECT (SELECT COUNT(*) FROM {DiaSource} AS s) AS n FROM {DiaObject} AS o WHERE o.diaObjectId = (SELECT MIN(diaObjectId) FROM {DiaObject} AS o2)",
    "SELECT diaSourceId FROM {DiaSource} AS s WHERE midpointMjdTai > 61002 UNION SELECT diaForcedSourceId FROM {DiaForcedSource} AS f WHERE midpointMjdTai > 61002",
    "SELECT diaObjectId FROM {DiaSource} AS s INTERSECT SELECT diaObjectId FROM {DiaForcedSource} AS f",
    "SELECT diaObjectId FROM {DiaSource} AS s WHERE midpointMjdTai > 61001.9 EXCEPT SELECT diaObjectId FROM {DiaForcedSource} AS f WHERE midpointMjdTai < 61001",
    "SELECT COUNT(*) FROM (SELECT diaObjectId FROM {DiaSource} AS s UNION ALL SELECT diaObjectId FROM {DiaForcedSource} AS f) AS u",
    "WITH late AS (SELECT * FROM {DiaSource} AS s WHERE s.midpointMjdTai > {C}) SELECT COUNT(*) FROM late",
    "SELECT MAX(n) FROM (SELECT diaObjectId, COUNT(*) AS n FROM {DiaSource} AS s GROUP BY diaObjectId) AS t",
    "SELECT diaObjectId FROM {DiaSource} AS s GROUP BY diaObjectId HAVING MAX(midpointMjdTai) > 61002",
    "SELECT TOP 3 diaObjectId, COUNT(*) AS n FROM {DiaForcedSource} AS f GROUP BY diaObjectId ORDER BY n DESC, diaObjectId",
    // Aggregates and functions that would move if a hidden row counted.
    "SELECT SUM(CASE WHEN midpointMjdTai > {C} THEN 1 ELSE 0 END) FROM {DiaSource} AS s",
    "SELECT COUNT(DISTINCT visit) FROM {DiaSource} AS s",
    "SELECT MAX(visit) FROM {DiaForcedSource} AS f",
    "SELECT MAX(diaSourceId) FROM {DiaSource} AS s",
    "SELECT MAX(timeProcessedMjdTai) FROM {DiaSource} AS s",
    "SELECT AVG(psfFlux) FROM {DiaSource} AS s",
    "SELECT MIN(midpointMjdTai) FROM {DiaSource} AS s WHERE midpointMjdTai > {C}",
    "SELECT COUNT(*) FROM {DiaSource} AS s WHERE band LIKE 'r%'",
    "SELECT COUNT(*) FROM {DiaSource} AS s WHERE COALESCE(s.ssObjectId, 0) >= 0",
    "SELECT DISTINCT FLOOR(midpointMjdTai) FROM {DiaForcedSource} AS f",
    "SELECT ivo_healpix_index(5, ra, dec) AS cell, COUNT(*) AS n FROM {DiaSource} AS s GROUP BY ivo_healpix_index(5, ra, dec)",
    // Through the sky: cones, distances, cone joins.
    "SELECT COUNT(*) FROM {DiaSource} AS s WHERE 1 = CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', 55, -30, 5))",
    "SELECT COUNT(*) FROM {DiaForcedSource} AS f WHERE DISTANCE(POINT('ICRS', f.ra, f.dec), POINT('ICRS', 55, -30)) < 3",
    "SELECT COUNT(*) FROM {DiaObject} AS o JOIN {DiaSource} AS s ON o.diaObjectId = s.diaObjectId WHERE 1 = CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', 55, -30, 1))",
    "SELECT COUNT(*) FROM {DiaObject} AS o WHERE 1 = CONTAINS(POINT('ICRS', o.ra, o.dec), BOX('ICRS', 55, -30, 4, 4))",
    // Paging.
    "SELECT TOP 10 diaSourceId FROM {DiaSource} AS s ORDER BY midpointMjdTai DESC, diaSourceId OFFSET 5",
];

/// The smallest id of an object first seen after the cutoff (read with privilege).
async fn newborn(engine: &Engine) -> String {
    lines(
        engine,
        &format!(
            "SELECT MIN(diaObjectId) FROM (SELECT diaObjectId FROM ppdb.DiaObjectHistory \
             GROUP BY diaObjectId HAVING MIN(validityStartMjdTai) > {CUTOFF}) AS t"
        ),
        true,
    )
    .await
    .remove(0)
}

/// The plan of an anonymous lookup of one id, with the id written `ID`.
async fn anonymous_plan(engine: &Engine, table: &str, id: &str) -> String {
    let q = format!("SELECT * FROM {table} WHERE diaObjectId = {id}");
    engine
        .explain(&q, &options(false))
        .await
        .unwrap()
        .replace(id, "ID")
}
