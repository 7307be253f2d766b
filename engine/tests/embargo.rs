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

#[tokio::test(flavor = "multi_thread")]
async fn no_hostile_query_sees_an_embargoed_row() {
    let engine = open(CUTOFF, "embargo-hostile").await;
    let mut checked = 0;
    let mut failures = Vec::new();
    for template in HOSTILE {
        let hostile = form(&engine, template, false);
        let reference = form(&engine, template, true);
        let public = lines(&engine, &hostile, false).await;
        let expected = self::reference(&engine, &reference).await;
        if public != expected {
            failures.push(format!(
                "without privilege, {hostile}\n  gave {:?}\nbut with privilege, {reference}\n  gave {:?}",
                &public[..public.len().min(3)],
                &expected[..expected.len().min(3)]
            ));
        }
        let privileged = lines(&engine, &hostile, true).await;
        if public == privileged {
            failures.push(format!(
                "{hostile} reaches no embargoed row: it tests nothing"
            ));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 50, "only {checked} hostile queries");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_object_light_curve_and_history_stop_at_the_cutoff() {
    let engine = open(CUTOFF, "embargo-object").await;
    // An object seen on the third night and before.
    let id = lines(
        &engine,
        "SELECT TOP 1 diaObjectId FROM ppdb.DiaSource WHERE midpointMjdTai > 61002 \
         AND diaObjectId IN (SELECT diaObjectId FROM ppdb.DiaSource WHERE midpointMjdTai < 61001.5) \
         ORDER BY diaObjectId",
        true,
    )
    .await
    .remove(0);
    for template in [
        "SELECT midpointMjdTai, psfFlux FROM {DiaSource} AS s WHERE s.diaObjectId = ID",
        "SELECT midpointMjdTai, psfFlux FROM {DiaForcedSource} AS f WHERE f.diaObjectId = ID",
        "SELECT validityStartMjdTai, validityEndMjdTai, nDiaSources FROM {History} AS h WHERE h.diaObjectId = ID",
        "SELECT * FROM {DiaObject} AS o WHERE o.diaObjectId = ID",
    ] {
        let template = template.replace("ID", &id);
        let hostile = form(&engine, &template, false);
        let public = lines(&engine, &hostile, false).await;
        assert_eq!(
            public,
            reference(&engine, &form(&engine, &template, true)).await,
            "{hostile}"
        );
        assert!(
            !public.is_empty(),
            "{hostile}: the object's public past is shown"
        );
        assert_ne!(public, lines(&engine, &hostile, true).await, "{hostile}");
    }
    // The current version shown is the one open at the cutoff, with no end.
    let current = lines(
        &engine,
        &format!("SELECT validityStartMjdTai, validityEndMjdTai FROM ppdb.DiaObject WHERE diaObjectId = {id}"),
        false,
    )
    .await;
    assert_eq!(current.len(), 1, "{current:?}");
    let (start, end) = current[0].split_once(',').unwrap();
    assert!(
        start.parse::<f64>().unwrap() <= CUTOFF && end.is_empty(),
        "{current:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_timed_by_their_chunks_show_the_last_public_snapshot() {
    let engine = open(CUTOFF, "embargo-chunks").await;
    for table in [
        "ppdb.DetectorVisitProcessingSummary",
        "src.PromptSource",
        "ppdb.SSObject",
    ] {
        for q in [
            format!("SELECT * FROM {table}"),
            format!("SELECT COUNT(*) FROM {table}"),
        ] {
            let public = lines(&engine, &q, false).await;
            let at_public = lines(
                &engine,
                &q.replace(
                    &format!("FROM {table}"),
                    &format!("FROM {table} FOR SYSTEM_TIME AS OF {PUBLIC_SNAPSHOT}"),
                ),
                true,
            )
            .await;
            assert_eq!(public, at_public, "{q}");
        }
    }
    let later = |t: &str| {
        format!(
            "SELECT COUNT(*) FROM {t} WHERE visit > (SELECT MAX(visit) FROM ppdb.DiaSource WHERE midpointMjdTai < 61001.5)"
        )
    };
    for t in ["ppdb.DetectorVisitProcessingSummary", "src.PromptSource"] {
        assert_eq!(lines(&engine, &later(t), false).await, vec!["0"], "{t}");
        assert_ne!(lines(&engine, &later(t), true).await, vec!["0"], "{t}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_cannot_fish_for_embargoed_positions() {
    let engine = open(CUTOFF, "embargo-upload").await;
    // The positions of third-night sources, as an astronomer who knew them would send.
    let r = engine
        .query(
            "SELECT TOP 200 ra, dec FROM ppdb.DiaSource WHERE midpointMjdTai > 61002 ORDER BY diaSourceId",
            &options(true),
        )
        .await
        .unwrap();
    let (batches, _) = r.collect().await.unwrap();
    let b = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let col = |i: usize| -> Float64Array {
        b.column(i)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone()
    };
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("ra", DataType::Float64, true),
            Field::new("dec", DataType::Float64, true),
        ])),
        vec![Arc::new(col(0)), Arc::new(col(1))],
    )
    .unwrap();
    let with_upload = |privileged| QueryOptions {
        privileged,
        uploads: vec![Upload {
            name: "targets".into(),
            batch: batch.clone(),
        }],
        ..Default::default()
    };
    let template = "SELECT COUNT(*) FROM TAP_UPLOAD.targets AS t JOIN {DiaSource} AS s \
         ON 1 = CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', t.ra, t.dec, 1.0/3600))";
    let hostile = form(&engine, template, false);
    let public = lines_with(&engine, &hostile, &with_upload(false)).await;
    let reference = lines_with(
        &engine,
        &form(&engine, template, true),
        &at_cutoff(with_upload(true)),
    )
    .await;
    assert_eq!(public, reference);
    assert_ne!(
        public,
        lines_with(&engine, &hostile, &with_upload(true)).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_record_the_cutoff_and_replays_keep_the_embargo() {
    let engine = open(CUTOFF, "embargo-tokens").await;
    let q = "SELECT COUNT(*) AS n FROM ppdb.DiaSource";

    // Without privilege: the cutoff is part of the token and of its record.
    let r = engine.query(q, &options(false)).await.unwrap();
    let public_token = r.token.clone().unwrap();
    let (public, _) = r.collect().await.unwrap();
    let record = engine.record(&public_token).await.unwrap();
    assert_eq!(record.embargo_cutoff, Some(CUTOFF));
    assert_eq!(record.embargoed_until, None);

    // With privilege: another token, whose record says it holds embargoed rows.
    let r = engine.query(q, &options(true)).await.unwrap();
    let staff_token = r.token.clone().unwrap();
    let (staff, _) = r.collect().await.unwrap();
    assert_ne!(public_token, staff_token);
    assert_ne!(sorted_lines(&public), sorted_lines(&staff));
    let record = engine.record(&staff_token).await.unwrap();
    assert_eq!(record.embargo_cutoff, None);
    assert!(record.embargoed_until.is_some_and(|t| t > 61002.0));

    // Anyone replays the public token, and gets the public rows (checked), even a
    // privileged caller; the privileged token replays only with privilege.
    for privileged in [false, true] {
        let replay = ReplayOptions {
            privileged,
            use_cache: false,
            ..Default::default()
        };
        let r = engine.replay(&public_token, &replay).await.unwrap();
        let (rows, _) = r.collect().await.unwrap();
        assert_eq!(sorted_lines(&rows), sorted_lines(&public));
    }
    for use_cache in [true, false] {
        let refused = engine
            .replay(
                &staff_token,
                &ReplayOptions {
                    use_cache,
                    ..Default::default()
                },
            )
            .await;
        let Err(e) = refused else {
            panic!("a privileged result was replayed without privilege (cache: {use_cache})")
        };
        assert!(
            matches!(
                e,
                engine::Error::Token(engine::TokenError::Embargoed { .. })
            ),
            "{e}"
        );
        assert!(
            e.message().contains("privileged bearer token"),
            "{}",
            e.message()
        );
    }
    let r = engine
        .replay(
            &staff_token,
            &ReplayOptions {
                privileged: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (rows, _) = r.collect().await.unwrap();
    assert_eq!(sorted_lines(&rows), sorted_lines(&staff));

    // Once the embargo has passed those rows, anyone may replay it.
    let later = open(61003.0, "embargo-tokens").await;
    let r = later
        .replay(&staff_token, &ReplayOptions::default())
        .await
        .unwrap();
    let (rows, _) = r.collect().await.unwrap();
    assert_eq!(sorted_lines(&rows), sorted_lines(&staff));
}

#[tokio::test(flavor = "multi_thread")]
async fn time_travel_before_the_cutoff_shows_everyone_the_same_rows() {
    let engine = open(CUTOFF, "embargo-travel").await;
    let q = format!(
        "SELECT COUNT(*) AS n, MAX(midpointMjdTai) AS last FROM ppdb.DiaSource \
         FOR SYSTEM_TIME AS OF {PUBLIC_SNAPSHOT}"
    );
    let a = engine.query(&q, &options(false)).await.unwrap();
    let b = engine.query(&q, &options(true)).await.unwrap();
    let (a, _) = a.collect().await.unwrap();
    let (b, _) = b.collect().await.unwrap();
    assert_eq!(sorted_lines(&a), sorted_lines(&b));
    // TAP_SCHEMA holds no rows of the catalog: it is the same for everyone.
    let q = "SELECT table_name, column_name FROM TAP_SCHEMA.columns";
    assert_eq!(
        lines(&engine, q, false).await,
        lines(&engine, q, true).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_embargo_everyone_sees_everything() {
    let engine = Engine::open_with(
        SAMPLE,
        EngineOptions {
            state: Some("memory://embargo-off".into()),
            embargo: Embargo::Off,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let q = "SELECT COUNT(*) FROM ppdb.DiaSource";
    assert_eq!(
        lines(&engine, q, false).await,
        lines(&engine, q, true).await
    );
    // The default window (80 hours) is far behind the sample's 2025 nights.
    let engine = Engine::open_with(
        SAMPLE,
        EngineOptions {
            state: Some("memory://embargo-default".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        lines(&engine, q, false).await,
        lines(&engine, q, true).await
    );
}

/// Expressions that fail on a row, applied to rows only an embargoed caller's
/// betters see: each fails with privilege (so it reaches such a row), and
/// without privilege it must run as if those rows were not there at all,
/// answering exactly as the catalog stood at the cutoff. A failure, or a
/// different answer, would tell a caller of a row it may not read.
#[tokio::test(flavor = "multi_thread")]
async fn no_failure_tells_of_an_embargoed_row() {
    let engine = open(CUTOFF, "embargo-failures").await;
    // What fails on a row whose condition X holds.
    let failing = [
        "1 / (CASE WHEN X THEN 0 ELSE 1 END) = 1",
        "CAST(CASE WHEN X THEN 'x' ELSE '1' END AS INTEGER) = 1",
        "CAST(CASE WHEN X THEN '1.5x' ELSE '2' END AS DOUBLE PRECISION) > 0",
        "MOD(7, CASE WHEN X THEN 0 ELSE 5 END) = 2",
    ];
    // A table, an alias, and what makes one of its rows embargoed.
    let tables = [
        ("ppdb.DiaSource", "s", "s.midpointMjdTai > {C}"),
        ("ppdb.DiaForcedSource", "f", "f.midpointMjdTai > {C}"),
        ("ppdb.DiaObjectHistory", "h", "h.validityStartMjdTai > {C}"),
        // Values set by update records of chunks after the cutoff.
        ("ppdb.DiaObjectHistory", "h", "h.validityEndMjdTai > {C}"),
        ("ppdb.DiaSource", "s", "s.timeWithdrawnMjdTai > {C}"),
        (
            "ppdb.DetectorVisitProcessingSummary",
            "v",
            "v.visit >= 2025112800000",
        ),
    ];
    let mut queries = Vec::new();
    for (table, a, hidden) in tables {
        for f in failing {
            let p = f.replace('X', hidden);
            queries.push(format!("SELECT COUNT(*) FROM {table} AS {a} WHERE {p}"));
            queries.push(format!(
                "SELECT SUM(CASE WHEN {p} THEN 1 ELSE 0 END) FROM {table} AS {a}"
            ));
        }
    }
    for f in &failing[..2] {
        let p = f.replace('X', "s.midpointMjdTai > {C}");
        queries.extend([
            format!(
                "SELECT COUNT(*) FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s \
                 ON s.diaObjectId = o.diaObjectId AND {p}"
            ),
            format!(
                "SELECT COUNT(*) FROM ppdb.DiaObject AS o WHERE o.diaObjectId IN \
                 (SELECT s.diaObjectId FROM ppdb.DiaSource AS s WHERE {p})"
            ),
            format!(
                "SELECT COUNT(*) FROM ppdb.DiaObject AS o WHERE EXISTS \
                 (SELECT 1 FROM ppdb.DiaSource AS s WHERE s.diaObjectId = o.diaObjectId AND {p})"
            ),
            format!(
                "SELECT s.band, COUNT(*) AS n FROM ppdb.DiaSource AS s GROUP BY s.band \
                 HAVING SUM(CASE WHEN {p} THEN 1 ELSE 0 END) >= 0"
            ),
            format!(
                "SELECT TOP 3 s.diaSourceId FROM ppdb.DiaSource AS s \
                 ORDER BY CASE WHEN {p} THEN 1 ELSE 0 END, s.diaSourceId"
            ),
            format!(
                "SELECT COUNT(*) FROM ppdb.DiaSource AS s WHERE s.ra > 0 AND {p} AND s.dec < 0"
            ),
        ]);
    }
    let mut failures = Vec::new();
    for q in &queries {
        let q = q.replace("{C}", &CUTOFF.to_string());
        let anonymous = match engine.query(&q, &options(false)).await {
            Ok(r) => r.collect().await.map(|(b, _)| sorted_lines(&b)),
            Err(e) => Err(e),
        };
        let Ok(anonymous) = anonymous else {
            failures.push(format!(
                "without privilege, {q} failed: it told of an embargoed row"
            ));
            continue;
        };
        if anonymous != reference(&engine, &q).await {
            failures.push(format!(
                "without privilege, {q} did not answer as at the cutoff"
            ));
        }
        let privileged = match engine.query(&q, &options(true)).await {
            Ok(r) => r.collect().await.is_err(),
            Err(_) => true,
        };
        if !privileged {
            failures.push(format!("{q} reaches no embargoed row: it tests nothing"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(queries.len() >= 50, "{} queries", queries.len());
}

/// A lookup of an object first named after the cutoff reads what a lookup of
/// an id nobody used reads: nothing. Before, the id index (which knows every
/// object) sent it to the object's partition, and the time it took told that
/// the object existed.
#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_of_an_embargoed_object_reads_what_a_lookup_of_nothing_reads() {
    let engine = open(CUTOFF, "embargo-lookup").await;
    let newborn = lines(
        &engine,
        &format!(
            "SELECT MIN(diaObjectId) FROM (SELECT diaObjectId FROM ppdb.DiaObjectHistory \
             GROUP BY diaObjectId HAVING MIN(validityStartMjdTai) > {CUTOFF}) AS t"
        ),
        true,
    )
    .await
    .remove(0);
    let nobody = "424242424242";
    for table in [
        "ppdb.DiaSource",
        "ppdb.DiaForcedSource",
        "ppdb.DiaObjectHistory",
    ] {
        let (theirs, none) = (
            anonymous_plan(&engine, table, &newborn).await,
            anonymous_plan(&engine, table, nobody).await,
        );
        assert_eq!(theirs, none, "{table}");
        assert!(!theirs.contains(".parquet"), "no file is read: {theirs}");
        // With privilege the object is there, in its partition.
        let q = format!("SELECT * FROM {table} WHERE diaObjectId = {newborn}");
        assert!(
            engine
                .explain(&q, &options(true))
                .await
                .unwrap()
                .contains(".parquet"),
            "{table}"
        );
    }
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

/// A narrowing CAST of a column (`CAST(midpointMjdTai AS SMALLINT)`) fails on
/// large values; it used to be pushed into the Parquet reader as a condition
/// that cannot fail, where it met hidden rows: whether an object was updated
/// after the cutoff, and (narrowed by a range) the time of the update, came
/// out of whether the query failed. Now an embargoed id reads as an id nobody
/// used, and a table whose public rows hold no value the CAST refuses answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_narrowing_cast_never_meets_a_hidden_row() {
    let engine = open(CUTOFF, "embargo-narrowing").await;
    let newest = lines(&engine, "SELECT MAX(diaSourceId) FROM ppdb.DiaSource", true).await;
    let newest: i64 = newest[0].trim().parse().unwrap();
    let probe = |id: i64| {
        format!(
            "SELECT COUNT(*) FROM ppdb.DiaSource WHERE diaSourceId = {id} \
             AND CAST(midpointMjdTai AS SMALLINT) = 7"
        )
    };
    // The newest source is embargoed; the other id was never used.
    let embargoed = engine
        .query(&probe(newest), &options(false))
        .await
        .unwrap()
        .collect()
        .await
        .map(|(b, _)| sorted_lines(&b));
    let nobody = engine
        .query(&probe(newest + 1_000_000), &options(false))
        .await
        .unwrap()
        .collect()
        .await
        .map(|(b, _)| sorted_lines(&b));
    assert_eq!(
        embargoed.as_ref().map_err(|e| e.message()),
        nobody.as_ref().map_err(|e| e.message()),
        "an embargoed id must read as one nobody used"
    );
    for q in [
        "SELECT COUNT(*) FROM ppdb.DiaObject WHERE CAST(validityEndMjdTai AS SMALLINT) = 7",
        "SELECT diaObjectId FROM ppdb.DiaObject WHERE validityEndMjdTai < 61002.06 \
         AND CAST(validityEndMjdTai AS SMALLINT) = 7",
    ] {
        let anonymous = engine
            .query(q, &options(false))
            .await
            .unwrap()
            .collect()
            .await;
        let anonymous = anonymous
            .map(|(b, _)| sorted_lines(&b))
            .unwrap_or_else(|e| panic!("{q} failed without privilege: {}", e.message()));
        assert_eq!(anonymous, reference(&engine, q).await, "{q}");
    }
}
