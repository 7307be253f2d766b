//! The engine through its public API: every table at every snapshot equals the
//! catalog's own reader, cones and id lookups prune files, names keep the
//! schema's spelling.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use catalog::{Catalog, TableId};
use engine::{Engine, EngineOptions, QueryOptions};
use tempfile::TempDir;

use lines::sorted_lines;
use testkit::lines;

use testkit::SAMPLE;

/// The bundled sample, with tokens kept in memory so the sample stays read-only.
async fn open_sample() -> Engine {
    Engine::open_with(
        SAMPLE,
        EngineOptions {
            state: Some("memory://engine-test-state".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn rows(engine: &Engine, adql: &str) -> Vec<RecordBatch> {
    let r = engine
        .query(adql, &QueryOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{adql}: {e}"));
    r.collect()
        .await
        .unwrap_or_else(|e| panic!("{adql}: {e}"))
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_at_every_snapshot_equals_the_catalog_reader() {
    let engine = open_sample().await;
    let cat = engine.catalog().clone();
    let latest = cat.state().await.unwrap().latest();
    let mut compared = 0;
    for k in 1..=latest {
        for (table, id) in [
            ("ppdb.DiaObjectHistory", TableId::DiaObject),
            ("ppdb.DiaSource", TableId::DiaSource),
            ("ppdb.DiaForcedSource", TableId::DiaForcedSource),
            (
                "ppdb.DetectorVisitProcessingSummary",
                TableId::DetectorVisitProcessingSummary,
            ),
            ("ppdb.SSObject", TableId::SSObject),
            ("src.PromptSource", TableId::PromptSource),
        ] {
            let ours = rows(
                &engine,
                &format!("SELECT * FROM {table} FOR SYSTEM_TIME AS OF {k}"),
            )
            .await;
            let reference = cat.read_table(id, k).await.unwrap();
            let a = sorted_lines(&ours);
            let b = sorted_lines(&[reference]);
            assert_eq!(a.len(), b.len(), "{table} at {k}: row count");
            assert!(a == b, "{table} at {k}: rows differ");
            compared += a.len();
        }
        // The current view: the history rows whose validity has not ended.
        let current = rows(
            &engine,
            &format!("SELECT * FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF {k}"),
        )
        .await;
        let open = rows(
            &engine,
            &format!("SELECT * FROM ppdb.DiaObjectHistory FOR SYSTEM_TIME AS OF {k} WHERE validityEndMjdTai IS NULL"),
        )
        .await;
        assert_eq!(
            sorted_lines(&current),
            sorted_lines(&open),
            "DiaObject at {k}"
        );
    }
    assert!(compared > 100_000, "compared {compared} rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_cone_returns_exactly_the_rows_within_the_radius() {
    let engine = open_sample().await;
    // Centre the cone on an object of the sample, so that it holds some rows.
    let centre = rows(
        &engine,
        "SELECT TOP 1 ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId",
    )
    .await;
    let ra0 = centre[0].column(0).as_primitive::<Float64Type>().value(0);
    let dec0 = centre[0].column(1).as_primitive::<Float64Type>().value(0);
    let got = rows(
        &engine,
        &format!(
            "SELECT diaObjectId, ra, dec FROM ppdb.DiaObject \
             WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra0}, {dec0}, 0.5)) = 1"
        ),
    )
    .await;
    let mut ids: Vec<i64> = got
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort_unstable();
    // Brute force over the catalog's own reader, with the haversine formula.
    let cat = engine.catalog();
    let k = cat.state().await.unwrap().latest();
    let all = cat.read_table(TableId::DiaObject, k).await.unwrap();
    let (id, ra, dec, end) = (
        all.column_by_name("diaObjectId")
            .unwrap()
            .as_primitive::<Int64Type>(),
        all.column_by_name("ra")
            .unwrap()
            .as_primitive::<Float64Type>(),
        all.column_by_name("dec")
            .unwrap()
            .as_primitive::<Float64Type>(),
        all.column_by_name("validityEndMjdTai").unwrap(),
    );
    let mut want: Vec<i64> = (0..all.num_rows())
        .filter(|&r| end.is_null(r))
        .filter(|&r| {
            let (p1, p2) = (dec.value(r).to_radians(), dec0.to_radians());
            let dl = (ra.value(r) - ra0).to_radians();
            let h =
                ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
            (2.0 * h.sqrt().asin()).to_degrees() <= 0.5
        })
        .map(|r| id.value(r))
        .collect();
    want.sort_unstable();
    assert!(
        want.len() > 10,
        "the cone should hold several objects, holds {}",
        want.len()
    );
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_carry_the_schema_spelling() {
    let engine = open_sample().await;
    let r = engine
        .query(
            "select TOP 1 diaobjectid, RA, o.Dec, COUNT(*), ra * 2, ra from ppdb.diaobject as o group by diaobjectid, ra, o.dec",
            &QueryOptions::default(),
        )
        .await
        .unwrap();
    let names: Vec<&str> = r
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["diaObjectId", "ra", "dec", "count", "col5", "ra_2"]);
}

/// A generated night in its query layout: ingested, then compacted into partitions.
async fn generated(objects: usize) -> (TempDir, Arc<Catalog>) {
    let (dir, cat) = generated_fresh(objects).await;
    cat.compact().await.unwrap();
    (dir, cat)
}

/// A generated night as ingest leaves it: fresh files, each covering 16 partitions.
async fn generated_fresh(objects: usize) -> (TempDir, Arc<Catalog>) {
    let dir = TempDir::new().unwrap();
    let url = dir.path().join("catalog");
    let config = catalog::sample::SampleConfig {
        objects,
        nights: 1,
        density: 300.0,
        visits_per_chunk: 8,
        src: false,
        ..Default::default()
    };
    let cat = ingest_generated(dir.path(), url.to_str().unwrap(), &config).await;
    (dir, Arc::new(cat))
}

/// Writes generated chunks under `scratch` and commits them to a catalog at `url`.
async fn ingest_generated(
    scratch: &Path,
    url: &str,
    config: &catalog::sample::SampleConfig,
) -> Catalog {
    let chunks = scratch.join("chunks");
    catalog::sample::generate(config, &chunks).unwrap();
    let cat = Catalog::open_or_create(url, 6).await.unwrap();
    let mut dirs: Vec<_> = std::fs::read_dir(&chunks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for d in &dirs {
        cat.ingest(&catalog::store::open_existing_local(d).unwrap())
            .await
            .unwrap();
    }
    cat
}

/// Files of a table at the latest snapshot.
/// The id and position of the object with the smallest id.
async fn first_object(engine: &Engine) -> (i64, f64, f64) {
    let b = rows(
        engine,
        "SELECT TOP 1 diaObjectId, ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId",
    )
    .await;
    (
        b[0].column(0).as_primitive::<Int64Type>().value(0),
        b[0].column(1).as_primitive::<Float64Type>().value(0),
        b[0].column(2).as_primitive::<Float64Type>().value(0),
    )
}

async fn files_of(cat: &Catalog, table: TableId) -> usize {
    let state = cat.state().await.unwrap();
    cat.scan(&state, table, state.latest()).unwrap().files.len()
}

/// An engine over a catalog, keeping its tokens in memory.
fn engine_over(cat: &Arc<Catalog>, state: &str) -> Engine {
    Engine::with_catalog(
        cat.clone(),
        EngineOptions {
            state: Some(state.into()),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Distinct files the scans of a plan list, from `EXPLAIN ANALYZE`
/// (`file_groups={N groups: [[a:0..10, b:0..5], [a:10..20]]}`: one file may be split).
fn files_opened(plan: &str) -> usize {
    let mut files = std::collections::BTreeSet::new();
    // DataFusion's scans, and the direct read that id lookups and small cones take.
    for line in plan
        .lines()
        .filter(|l| l.contains("DataSourceExec") || l.contains("DirectReadExec"))
    {
        for part in line.split([' ', '[', ',']) {
            if let Some(end) = part.find(".parquet") {
                files.insert(part[..end].to_string());
            }
        }
    }
    files.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cone_join_of_objects_and_sources_reads_only_the_cone_s_partitions() {
    let (_dir, cat) = generated(20_000).await;
    let total = files_of(&cat, TableId::DiaSource).await + files_of(&cat, TableId::DiaObject).await;
    let engine = engine_over(&cat, "memory://engine-colocate-state");
    let centre = rows(
        &engine,
        "SELECT TOP 1 ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId",
    )
    .await;
    let ra = centre[0].column(0).as_primitive::<Float64Type>().value(0);
    let dec = centre[0].column(1).as_primitive::<Float64Type>().value(0);
    let opts = QueryOptions::default();
    let cone =
        format!("CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', {ra}, {dec}, 0.2)) = 1");
    // Sources in the cone's partitions only; the same sources, each once, as a
    // join the engine cannot narrow (its key is not a plain column).
    for (narrowed, plain) in [
        (
            format!(
                "SELECT o.diaObjectId, s.diaSourceId FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s ON s.diaObjectId = o.diaObjectId WHERE {cone}"
            ),
            format!(
                "SELECT o.diaObjectId, s.diaSourceId FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s ON s.diaObjectId + 0 = o.diaObjectId WHERE {cone}"
            ),
        ),
        (
            format!(
                "SELECT s.diaSourceId FROM ppdb.DiaSource AS s WHERE s.diaObjectId IN (SELECT o.diaObjectId FROM ppdb.DiaObjectHistory AS o WHERE {cone})"
            ),
            format!(
                "SELECT s.diaSourceId FROM ppdb.DiaSource AS s WHERE s.diaObjectId + 0 IN (SELECT o.diaObjectId FROM ppdb.DiaObjectHistory AS o WHERE {cone})"
            ),
        ),
    ] {
        let plan = engine.explain_analyze(&narrowed, &opts).await.unwrap();
        let opened = files_opened(&plan);
        assert!(
            opened >= 1 && opened * 10 <= total,
            "{narrowed} opened {opened} of {total} files:\n{plan}"
        );
        let a = sorted_lines(&rows_with(&engine, &narrowed, &opts).await);
        let b = sorted_lines(&rows_with(&engine, &plain, &opts).await);
        assert!(!a.is_empty(), "{narrowed}");
        assert_eq!(a, b, "{narrowed}");
        let plan = engine.explain_analyze(&plain, &opts).await.unwrap();
        assert!(files_opened(&plan) * 10 > total, "{plan}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_cones_and_id_lookups_open_few_files() {
    let (_dir, cat) = generated(20_000).await;
    let total = files_of(&cat, TableId::DiaSource).await;
    assert!(
        total >= 30,
        "the generated catalog should have many partitions, has {total}"
    );
    let engine = engine_over(&cat, "memory://engine-test-state");
    let (id, ra, dec) = first_object(&engine).await;
    let opts = QueryOptions::default();

    let cone = format!(
        "SELECT * FROM ppdb.DiaSource WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, 0.0833)) = 1"
    );
    let plan = engine.explain_analyze(&cone, &opts).await.unwrap();
    let opened = files_opened(&plan);
    assert!(
        opened >= 1 && opened * 10 <= total,
        "a 5' cone opened {opened} of {total} files:\n{plan}"
    );

    let distance =
        format!("SELECT * FROM ppdb.DiaSource WHERE DISTANCE(ra, dec, {ra}, {dec}) < 0.0833");
    let plan = engine.explain_analyze(&distance, &opts).await.unwrap();
    assert!(
        files_opened(&plan) * 10 <= total,
        "DISTANCE < r prunes too:\n{plan}"
    );

    let lightcurve = format!("SELECT * FROM ppdb.DiaSource WHERE diaObjectId = {id}");
    let plan = engine.explain_analyze(&lightcurve, &opts).await.unwrap();
    assert_eq!(
        files_opened(&plan),
        1,
        "a light curve opens one partition:\n{plan}"
    );
    assert!(
        plan.contains("DirectReadExec") && plan.contains("output_rows="),
        "a light curve is read directly, and EXPLAIN ANALYZE shows that path:\n{plan}"
    );

    let history = format!("SELECT * FROM ppdb.DiaObjectHistory WHERE diaObjectId IN ({id}, {id})");
    let plan = engine.explain_analyze(&history, &opts).await.unwrap();
    assert_eq!(
        files_opened(&plan),
        1,
        "an object's history opens one partition:\n{plan}"
    );

    // Pruning never changes an answer: the same cone without pruning-friendly form.
    let pruned = rows(&engine, &cone).await;
    let unpruned = rows(
        &engine,
        &format!(
            "SELECT * FROM ppdb.DiaSource WHERE 1 = CASE WHEN CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, 0.0833)) = 1 THEN 1 ELSE 0 END"
        ),
    )
    .await;
    assert_eq!(sorted_lines(&pruned), sorted_lines(&unpruned));
    assert!(!sorted_lines(&pruned).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_files_covering_several_partitions_are_pruned_and_answer_as_partitions_do() {
    let (_dir, cat) = generated_fresh(20_000).await;
    let fresh_total = files_of(&cat, TableId::DiaSource).await;
    let engine = engine_over(&cat, "memory://engine-fresh-state");
    let (id, ra, dec) = first_object(&engine).await;
    let opts = QueryOptions::default();
    let cone = format!("CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, 0.5)) = 1");
    let queries = [
        format!("SELECT * FROM ppdb.DiaSource WHERE {cone}"),
        format!("SELECT * FROM ppdb.DiaSource WHERE diaObjectId = {id}"),
        format!(
            "SELECT * FROM ppdb.DiaObjectHistory WHERE diaObjectId IN ({id}, {})",
            id + 1
        ),
        format!(
            "SELECT o.diaObjectId, s.diaSourceId FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s ON s.diaObjectId = o.diaObjectId WHERE {}",
            cone.replace("ra, dec", "o.ra, o.dec")
        ),
    ];
    // The same questions in forms the engine cannot prune.
    let unpruned = [
        format!("SELECT * FROM ppdb.DiaSource WHERE 1 = CASE WHEN {cone} THEN 1 ELSE 0 END"),
        format!("SELECT * FROM ppdb.DiaSource WHERE diaObjectId + 0 = {id}"),
        format!(
            "SELECT * FROM ppdb.DiaObjectHistory WHERE diaObjectId + 0 IN ({id}, {})",
            id + 1
        ),
        format!(
            "SELECT o.diaObjectId, s.diaSourceId FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s ON s.diaObjectId + 0 = o.diaObjectId WHERE {}",
            cone.replace("ra, dec", "o.ra, o.dec")
        ),
    ];
    let mut fresh = Vec::new();
    for (q, u) in queries.iter().zip(&unpruned) {
        let a = sorted_lines(&rows_with(&engine, q, &opts).await);
        assert!(!a.is_empty(), "{q}");
        assert_eq!(a, sorted_lines(&rows_with(&engine, u, &opts).await), "{q}");
        fresh.push(a);
    }
    let plan = engine.explain_analyze(&queries[1], &opts).await.unwrap();
    assert!(
        files_opened(&plan) * 3 <= fresh_total,
        "a light curve reads only the fresh files covering its partition:\n{plan}"
    );

    // Compaction splits the fresh files into partitions: more, smaller files,
    // and every answer the same.
    cat.compact().await.unwrap();
    let compacted_total = files_of(&cat, TableId::DiaSource).await;
    assert!(
        compacted_total > fresh_total,
        "{compacted_total} partitions from {fresh_total} fresh files"
    );
    let engine = engine_over(&cat, "memory://engine-compacted-state");
    for (q, before) in queries.iter().zip(&fresh) {
        let after = sorted_lines(&rows_with(&engine, q, &opts).await);
        assert_eq!(&after, before, "{q}");
    }
}

async fn run_all(mut r: engine::QueryResult) -> (Vec<RecordBatch>, engine::Finished) {
    let mut out = Vec::new();
    while let Some(b) = r.next_batch().await {
        out.push(b.unwrap());
    }
    (
        out,
        r.finished().cloned().expect("finished after the last row"),
    )
}

async fn replay_all(engine: &Engine, token: &str) -> (Vec<RecordBatch>, engine::Finished) {
    run_all(
        engine
            .replay(token, &engine::ReplayOptions::default())
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn replays_are_served_from_the_cache_and_still_checked() {
    let engine = open_sample().await;
    let adql = "SELECT diaSourceId, psfFlux FROM ppdb.DiaSource WHERE diaObjectId < 1000000100";
    let first = engine.query(adql, &QueryOptions::default()).await.unwrap();
    let token = first.token.clone().unwrap();
    let (rows_first, done) = run_all(first).await;
    assert!(done.rows > 0 && !done.verified && !done.from_cache);
    let checksum = done.checksum.clone().unwrap();
    assert!(checksum.starts_with("unordered:"), "{checksum}");

    let (rows_cached, again) = replay_all(&engine, &token).await;
    assert!(again.from_cache && again.verified, "{again:?}");
    assert_eq!(again.checksum.as_deref(), Some(checksum.as_str()));
    assert_eq!(sorted_lines(&rows_cached), sorted_lines(&rows_first));

    let fresh = engine
        .replay(
            &token,
            &engine::ReplayOptions {
                use_cache: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (rows_fresh, fresh) = run_all(fresh).await;
    assert!(!fresh.from_cache && fresh.verified, "{fresh:?}");
    assert_eq!(sorted_lines(&rows_fresh), sorted_lines(&rows_first));

    // A cache too small for the result keeps nothing, and the replay runs the query.
    let small = Engine::open_with(
        SAMPLE,
        EngineOptions {
            state: Some("memory://engine-test-state".into()),
            result_cache_bytes: 1024,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (_, d) = run_all(small.query(adql, &QueryOptions::default()).await.unwrap()).await;
    let (_, r) = replay_all(&small, &token).await;
    assert_eq!(d.checksum, r.checksum);
    assert!(!r.from_cache && r.verified, "{r:?}");
}

#[tokio::test]
async fn the_same_request_gets_the_same_token_and_a_different_snapshot_another() {
    let engine = open_sample().await;
    let q = "SELECT COUNT(*) AS n FROM ppdb.DiaSource";
    let token = |r: &engine::QueryResult| r.token.clone().unwrap();
    let a = engine.query(q, &QueryOptions::default()).await.unwrap();
    let b = engine.query(q, &QueryOptions::default()).await.unwrap();
    let at3 = QueryOptions {
        as_of: Some(adql::AsOf::Snapshot(3)),
        ..Default::default()
    };
    let c = engine.query(q, &at3).await.unwrap();
    assert_eq!(token(&a), token(&b));
    assert_ne!(token(&a), token(&c));
    assert!(c.pinned_adql.as_deref().unwrap().contains("AS OF 3"));
    let (rows, _) = c.collect().await.unwrap();
    assert_eq!(rows[0].column(0).as_primitive::<Int64Type>().value(0), 2387);
}

/// Float sums must not depend on how rows were split over cores or files: a
/// replay on a bigger machine, or after compaction, must give the same bits.
#[tokio::test]
async fn float_aggregates_do_not_depend_on_parallelism() {
    let open = |partitions: usize| async move {
        Engine::open_with(
            SAMPLE,
            EngineOptions {
                state: Some("memory://engine-test-state".into()),
                target_partitions: partitions,
                ..Default::default()
            },
        )
        .await
        .unwrap()
    };
    let queries = [
        // Doubles (float32 fluxes add up exactly in f64 at this size; positions do not).
        "SELECT band, SUM(ra) AS s, AVG(dec) AS a, SUM(midpointMjdTai) AS t, COUNT(*) AS n \
         FROM ppdb.DiaForcedSource GROUP BY band ORDER BY band",
        "SELECT SUM(ra * dec) AS s, AVG(midpointMjdTai) AS m, SUM(DISTINCT band_n) AS d \
         FROM (SELECT ra, dec, midpointMjdTai, CASE WHEN band = 'g' THEN 0.1 ELSE 0.7 END AS band_n \
               FROM ppdb.DiaSource) AS t",
        // Many groups, with filters on the aggregate's input.
        "SELECT diaObjectId, SUM(ra) AS s, AVG(dec) AS a FROM ppdb.DiaSource \
         WHERE psfFlux > 0 GROUP BY diaObjectId HAVING COUNT(*) > 1",
    ];
    for q in queries {
        let mut seen = Vec::new();
        for partitions in [1, 2, 7] {
            let engine = open(partitions).await;
            let r = engine.query(q, &QueryOptions::default()).await.unwrap();
            let (_, done) = run_all(r).await;
            seen.push((partitions, done.checksum.unwrap()));
        }
        assert!(
            seen.windows(2).all(|w| w[0].1 == w[1].1),
            "{q}: checksums by target_partitions {seen:?}"
        );
    }
}

/// Tokens on S3 (moto on loopback under `.ci/run`): the records live in the
/// catalog's own `_state/` on the bucket, and a new engine replays them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_live_beside_a_catalog_on_s3() {
    let Ok(base) = std::env::var("PPDB_TEST_S3") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PPDB_TEST_S3 must be set in CI (.ci/run starts an S3 server)"
        );
        eprintln!(
            "skipped: set PPDB_TEST_S3=s3://bucket/prefix and AWS_ENDPOINT to run against S3"
        );
        return;
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("{}/tokens-{stamp:x}", base.trim_end_matches('/'));
    let dir = TempDir::new().unwrap();
    let config = catalog::sample::SampleConfig {
        objects: 300,
        nights: 1,
        src: false,
        ..Default::default()
    };
    ingest_generated(dir.path(), &url, &config).await;
    let adql = "SELECT TOP 10 diaSourceId, ra, dec FROM ppdb.DiaSource ORDER BY psfFlux DESC";
    let first = Engine::open(&url).await.unwrap();
    assert!(
        first.state().url().ends_with("/_state"),
        "{}",
        first.state().url()
    );
    let r = first.query(adql, &QueryOptions::default()).await.unwrap();
    let token = r.token.clone().unwrap();
    let (rows, done) = run_all(r).await;
    // Another engine (as another server would) finds the record on the bucket.
    let second = Engine::open(&url).await.unwrap();
    let record = second.record(&token).await.unwrap();
    assert_eq!(Some(record.checksum.clone()), done.checksum);
    let (again, replayed) = replay_all(&second, &token).await;
    assert!(replayed.verified && !replayed.from_cache);
    assert_eq!(sorted_lines(&again), sorted_lines(&rows));
}

async fn rows_with(engine: &Engine, adql: &str, opts: &QueryOptions) -> Vec<RecordBatch> {
    let r = engine
        .query(adql, opts)
        .await
        .unwrap_or_else(|e| panic!("{adql}: {e}"));
    r.collect()
        .await
        .unwrap_or_else(|e| panic!("{adql}: {e}"))
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossmatches_against_an_upload_open_few_files_and_keep_their_answer() {
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    let (_dir, cat) = generated(20_000).await;
    let total = files_of(&cat, TableId::DiaSource).await;
    let engine = engine_over(&cat, "memory://engine-crossmatch-state");
    let objects = rows(
        &engine,
        "SELECT TOP 3 ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId",
    )
    .await;
    let ra = objects[0].column(0).as_primitive::<Float64Type>().clone();
    let dec = objects[0].column(1).as_primitive::<Float64Type>().clone();
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("ra", DataType::Float64, false),
        Field::new("dec", DataType::Float64, false),
        Field::new("r", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c", "far"])),
            Arc::new(Float64Array::from(vec![
                ra.value(0),
                ra.value(1),
                ra.value(2),
                // A target away from every object: matches nothing.
                (ra.value(0) + 180.0) % 360.0,
            ])),
            Arc::new(Float64Array::from(vec![
                dec.value(0),
                dec.value(1),
                dec.value(2),
                -dec.value(0),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(0.02),
                Some(0.02),
                None,
                Some(0.02),
            ])),
        ],
    )
    .unwrap();
    let opts = QueryOptions {
        uploads: vec![engine::Upload {
            name: "targets".into(),
            batch,
        }],
        ..Default::default()
    };
    let same_answer_unpruned = |pruned: &str, unpruned: &str| {
        let (pruned, unpruned) = (pruned.to_string(), unpruned.to_string());
        let (engine, opts) = (&engine, &opts);
        async move {
            let plan = engine.explain_analyze(&pruned, opts).await.unwrap();
            let a = sorted_lines(&rows_with(engine, &pruned, opts).await);
            let b = sorted_lines(&rows_with(engine, &unpruned, opts).await);
            assert_eq!(a, b, "{pruned}");
            (files_opened(&plan), a.len(), plan)
        }
    };

    // Inner join, constant radius: only the files near the three targets are read.
    let (opened, n, plan) = same_answer_unpruned(
        "SELECT s.diaSourceId, t.name FROM ppdb.DiaSource AS s JOIN TAP_UPLOAD.targets AS t \
         ON 1 = CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', t.ra, t.dec, 0.02))",
        "SELECT s.diaSourceId, t.name FROM ppdb.DiaSource AS s JOIN TAP_UPLOAD.targets AS t \
         ON 1 = CASE WHEN CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', t.ra, t.dec, 0.02)) = 1 THEN 1 ELSE 0 END",
    )
    .await;
    assert!(n > 0, "the targets sit on objects, so sources match");
    assert!(
        opened >= 1 && opened * 10 <= total,
        "a crossmatch of 4 targets opened {opened} of {total} files:\n{plan}"
    );
    assert!(hashed_on_cells(&plan), "{plan}");

    // DISTANCE with the radius from the upload, written as a WHERE over two tables.
    let (opened, n, plan) = same_answer_unpruned(
        "SELECT s.diaSourceId, t.name FROM ppdb.DiaSource AS s, TAP_UPLOAD.targets AS t \
         WHERE DISTANCE(POINT('ICRS', t.ra, t.dec), POINT('ICRS', s.ra, s.dec)) < t.r",
        "SELECT s.diaSourceId, t.name FROM ppdb.DiaSource AS s, TAP_UPLOAD.targets AS t \
         WHERE DISTANCE(POINT('ICRS', t.ra, t.dec), POINT('ICRS', s.ra, s.dec)) - t.r < 0",
    )
    .await;
    assert!(n > 0);
    assert!(opened * 10 <= total, "{opened} of {total}:\n{plan}");
    assert!(hashed_on_cells(&plan), "{plan}");

    // Targets LEFT JOIN the catalog: every target kept, the catalog side narrowed.
    let (opened, n, plan) = same_answer_unpruned(
        "SELECT t.name, s.diaSourceId FROM TAP_UPLOAD.targets AS t LEFT JOIN ppdb.DiaSource AS s \
         ON DISTANCE(t.ra, t.dec, s.ra, s.dec) < 0.02",
        "SELECT t.name, s.diaSourceId FROM TAP_UPLOAD.targets AS t LEFT JOIN ppdb.DiaSource AS s \
         ON DISTANCE(t.ra, t.dec, s.ra, s.dec) + 0 < 0.02",
    )
    .await;
    assert!(n > 0);
    assert!(opened * 10 <= total, "{opened} of {total}:\n{plan}");
    // Repeating a kept target once per cell would repeat its unmatched row.
    assert!(!hashed_on_cells(&plan), "{plan}");

    // EXISTS (a semi join) narrows the catalog too.
    let (opened, _, plan) = same_answer_unpruned(
        "SELECT o.diaObjectId FROM ppdb.DiaObject AS o WHERE EXISTS (SELECT 1 FROM TAP_UPLOAD.targets AS t \
         WHERE 1 = CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', t.ra, t.dec, 0.02)))",
        "SELECT o.diaObjectId FROM ppdb.DiaObject AS o WHERE EXISTS (SELECT 1 FROM TAP_UPLOAD.targets AS t \
         WHERE 1 = CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', t.ra, t.dec, 0.02 + 0 * o.ra)))",
    )
    .await;
    let objects_total = files_of(&cat, TableId::DiaObject).await;
    assert!(
        opened * 10 <= objects_total,
        "{opened} of {objects_total}:\n{plan}"
    );
    assert!(hashed_on_cells(&plan), "{plan}");

    // The catalog LEFT JOIN targets keeps every catalog row, so nothing may be skipped.
    let (opened, n, plan) = same_answer_unpruned(
        "SELECT s.diaSourceId, t.name FROM ppdb.DiaSource AS s LEFT JOIN TAP_UPLOAD.targets AS t \
         ON 1 = CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', t.ra, t.dec, 0.02))",
        "SELECT s.diaSourceId, t.name FROM ppdb.DiaSource AS s LEFT JOIN TAP_UPLOAD.targets AS t \
         ON 1 = CASE WHEN CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', t.ra, t.dec, 0.02)) = 1 THEN 1 ELSE 0 END",
    )
    .await;
    let all = rows(&engine, "SELECT COUNT(*) FROM ppdb.DiaSource").await;
    assert_eq!(
        n as i64,
        all[0].column(0).as_primitive::<Int64Type>().value(0),
        "a preserved side keeps all its rows (no source is within 0.02° of two targets)"
    );
    assert_eq!(opened, total, "{plan}");
    assert!(hashed_on_cells(&plan), "{plan}");

    // Many targets, some near each other so circles overlap and share cells:
    // every pair found once, as the nested loop finds them.
    let near = rows(
        &engine,
        "SELECT TOP 300 ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId",
    )
    .await;
    let (mut ras, mut decs, mut radii) = (Vec::new(), Vec::new(), Vec::new());
    for b in &near {
        let ra = b.column(0).as_primitive::<Float64Type>();
        let dec = b.column(1).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            for (k, off) in [0.0, 0.004, -0.007].into_iter().enumerate() {
                ras.push(ra.value(i) + off);
                decs.push(dec.value(i) - off);
                radii.push(0.003 + 0.004 * k as f64);
            }
        }
    }
    let n = ras.len();
    let many = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("ra", DataType::Float64, false),
            Field::new("dec", DataType::Float64, false),
            Field::new("r", DataType::Float64, false),
        ])),
        vec![
            Arc::new(Float64Array::from(ras)),
            Arc::new(Float64Array::from(decs)),
            Arc::new(Float64Array::from(radii)),
        ],
    )
    .unwrap();
    let opts = QueryOptions {
        uploads: vec![engine::Upload {
            name: "many".into(),
            batch: many,
        }],
        ..Default::default()
    };
    let hashed = "SELECT o.diaObjectId, t.ra, t.dec FROM TAP_UPLOAD.many AS t JOIN ppdb.DiaObject AS o \
                  ON CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', t.ra, t.dec, t.r)) = 1";
    let looped = "SELECT o.diaObjectId, t.ra, t.dec FROM TAP_UPLOAD.many AS t JOIN ppdb.DiaObject AS o \
                  ON CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', t.ra, t.dec, t.r + 0 * o.ra)) = 1";
    let plan = engine.explain_analyze(hashed, &opts).await.unwrap();
    assert!(hashed_on_cells(&plan), "{plan}");
    let a = sorted_lines(&rows_with(&engine, hashed, &opts).await);
    let b = sorted_lines(&rows_with(&engine, looped, &opts).await);
    assert!(a.len() > n / 3, "{} pairs for {n} targets", a.len());
    assert_eq!(a, b);
}

/// Whether a plan joins on the HEALPix cells of a crossmatch (a zone join).
fn hashed_on_cells(plan: &str) -> bool {
    plan.lines()
        .any(|l| l.contains("HashJoinExec") && l.contains("__ppdb_crossmatch_cell"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_longest_operator_chain_allowed_runs_on_a_tokio_worker() {
    let engine = open_sample().await;
    // 250 comparisons joined by 249 ORs: adql::MAX_OPERATORS, all but one.
    let chain = (0..250)
        .map(|i| format!("diaObjectId = {i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let q = format!("SELECT COUNT(*) AS n FROM ppdb.DiaObject WHERE {chain}");
    // Spawned: on a worker thread, with tokio's default 2 MiB stack.
    let out = tokio::spawn(async move { sorted_lines(&rows(&engine, &q).await) })
        .await
        .unwrap();
    assert_eq!(out, vec!["0"]);
}

/// Id lookups skip DataFusion's planner and read the object's partition
/// directly; at every snapshot, for objects with withdrawn, reassigned and
/// superseded rows among them, they must give the planner's schema, rows,
/// checksum and MAXREC cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_lookups_read_directly_give_what_the_planner_gives() {
    let engine = open_sample().await;
    let latest = engine.catalog().state().await.unwrap().latest();
    // Objects with several versions or with sources that moved or were withdrawn
    // (their rows are skipped by position or by `_retired`), and ordinary ones.
    let mut ids: Vec<i64> = Vec::new();
    for adql in [
        "SELECT TOP 6 diaObjectId FROM ppdb.DiaObjectHistory GROUP BY diaObjectId \
         HAVING COUNT(*) > 2 ORDER BY diaObjectId",
        "SELECT TOP 6 diaObjectId FROM ppdb.DiaSource WHERE timeWithdrawnMjdTai IS NOT NULL \
         ORDER BY diaObjectId",
        "SELECT TOP 6 diaObjectId FROM ppdb.DiaSource AS s WHERE s.diaObjectId IN \
         (SELECT diaObjectId FROM ppdb.DiaSource FOR SYSTEM_TIME AS OF 2) ORDER BY diaObjectId DESC",
        "SELECT TOP 4 diaObjectId FROM ppdb.DiaForcedSource ORDER BY diaObjectId",
    ] {
        for b in rows(&engine, adql).await {
            ids.extend(b.column(0).as_primitive::<Int64Type>().values().iter());
        }
    }
    ids.sort();
    ids.dedup();
    assert!(ids.len() >= 12, "{ids:?}");
    let list = |ids: &[i64]| {
        ids.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut compared = 0;
    let mut nonempty = 0;
    for k in 1..=latest {
        // A third of the ids at each snapshot, each id at every third snapshot;
        // the long IN lists once per snapshot.
        for (n, id) in ids
            .iter()
            .enumerate()
            .filter(|(n, _)| (n + k as usize).is_multiple_of(3))
        {
            let other = ids[(n + 1) % ids.len()];
            let mut queries = vec![
                format!(
                    "SELECT * FROM ppdb.DiaSource FOR SYSTEM_TIME AS OF {k} WHERE diaObjectId = {id}"
                ),
                format!(
                    "SELECT diaSourceId, psfFlux AS flux, s.band, s.diaObjectId FROM ppdb.DiaSource \
                     FOR SYSTEM_TIME AS OF {k} AS s WHERE ({id} = s.diaObjectId)"
                ),
                format!(
                    "SELECT * FROM ppdb.DiaForcedSource FOR SYSTEM_TIME AS OF {k} \
                     WHERE diaObjectId IN ({id}, {other})"
                ),
                format!(
                    "SELECT * FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF {k} WHERE diaObjectId = {id}"
                ),
                format!(
                    "SELECT * FROM ppdb.DiaSource FOR SYSTEM_TIME AS OF {k} WHERE diaObjectId = {id} \
                     ORDER BY 4, 1 DESC"
                ),
            ];
            if n < 3 {
                queries.extend([
                    format!(
                        "SELECT diaObjectId, validityStartMjdTai, validityEndMjdTai, ra \
                         FROM ppdb.DiaObjectHistory FOR SYSTEM_TIME AS OF {k} WHERE diaobjectid IN ({})",
                        list(&ids)
                    ),
                    // Orders the pinned form writes, and orders as users write them,
                    // over columns with NULLs.
                    format!(
                        "SELECT TOP 3 validityEndMjdTai AS e, diaObjectId FROM ppdb.DiaObjectHistory \
                         FOR SYSTEM_TIME AS OF {k} WHERE diaObjectId IN ({}) ORDER BY e DESC, 2",
                        list(&ids)
                    ),
                    format!(
                        "SELECT validityEndMjdTai, diaObjectId, validityStartMjdTai FROM ppdb.DiaObjectHistory \
                         FOR SYSTEM_TIME AS OF {k} WHERE diaObjectId IN ({}) ORDER BY 1 NULLS FIRST, 2 DESC, 3",
                        list(&ids)
                    ),
                ]);
            }
            for adql in &queries {
                let (c, n) = direct_and_planned_agree(&engine, adql).await;
                compared += c;
                nonempty += n;
            }
        }
    }
    assert!(
        nonempty > compared / 3,
        "{nonempty} of {compared} lookups found rows"
    );
}

/// Cones on a table's own position (`CONTAINS(POINT, CIRCLE) = 1` and nothing
/// else) skip DataFusion's planner as id lookups do; at every snapshot, on
/// every table with positions, from a minute of arc to wider than the sample's
/// field, they must give the planner's schema, rows, checksum and MAXREC cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cones_read_directly_give_what_the_planner_gives() {
    let engine = open_sample().await;
    let latest = engine.catalog().state().await.unwrap().latest();
    // The field's centre and a few objects (a cone centred on a row holds it).
    let mut centres: Vec<(f64, f64)> = vec![(55.0, -30.0)];
    for b in rows(
        &engine,
        "SELECT TOP 5 ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId DESC",
    )
    .await
    {
        let (ra, dec) = (
            b.column(0).as_primitive::<Float64Type>(),
            b.column(1).as_primitive::<Float64Type>(),
        );
        centres.extend((0..b.num_rows()).map(|r| (ra.value(r), dec.value(r))));
    }
    assert_eq!(centres.len(), 6);
    let radii = [0.02, 5.0 / 60.0, 0.3, 1.0];
    let shapes: [&dyn Fn(u64, f64, f64, f64) -> String; 6] = [
        &|k, a, d, r| {
            format!(
                "SELECT * FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF {k} \
                 WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {a}, {d}, {r})) = 1"
            )
        },
        &|k, a, d, r| {
            format!(
                "SELECT diaSourceId, ra AS a, s.dec, band FROM ppdb.DiaSource FOR SYSTEM_TIME AS OF {k} AS s \
                 WHERE (1 = CONTAINS(POINT('ICRS', s.ra, s.dec), CIRCLE('ICRS', {a}, {d}, {r})))"
            )
        },
        &|k, a, d, r| {
            format!(
                "SELECT TOP 7 * FROM ppdb.DiaForcedSource FOR SYSTEM_TIME AS OF {k} \
                 WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {a}, {d}, {r})) = 1 ORDER BY 1 DESC"
            )
        },
        &|k, a, d, r| {
            format!(
                "SELECT diaObjectId, validityEndMjdTai FROM ppdb.DiaObjectHistory FOR SYSTEM_TIME AS OF {k} \
                 WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {a}, {d}, {r})) = 1 ORDER BY 2, 1"
            )
        },
        &|k, a, d, r| {
            format!(
                "SELECT ra, dec, band FROM src.PromptSource FOR SYSTEM_TIME AS OF {k} \
                 WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {a}, {d}, {r})) = 1"
            )
        },
        &|k, a, d, r| {
            format!(
                "SELECT visit, detector, ra FROM ppdb.DetectorVisitProcessingSummary FOR SYSTEM_TIME AS OF {k} \
                 WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {a}, {d}, {r})) = 1 ORDER BY visit, detector"
            )
        },
    ];
    let (mut compared, mut nonempty, mut n) = (0, 0, 0usize);
    for k in 1..=latest {
        // Each snapshot gets every shape, with centres and radii in turn.
        for shape in &shapes {
            let (a, d) = centres[n % centres.len()];
            let r = radii[(n / centres.len() + n) % radii.len()];
            n += 1;
            let (c, found) = direct_and_planned_agree(&engine, &shape(k, a, d, r)).await;
            compared += c;
            nonempty += found;
        }
    }
    assert!(
        nonempty > compared / 2,
        "{nonempty} of {compared} cones found rows"
    );
}

/// Runs `adql` read directly and planned, with and without MAXREC 1, and
/// asserts that both give the same schema, rows, order (when ordered), MAXREC
/// cut and pinned checksum. Returns how many runs it compared and how many of
/// them found rows.
async fn direct_and_planned_agree(engine: &Engine, adql: &str) -> (usize, usize) {
    let (mut compared, mut nonempty) = (0, 0);
    for maxrec in [None, Some(1)] {
        let direct = QueryOptions {
            maxrec,
            ..Default::default()
        };
        let planned = QueryOptions {
            always_plan: true,
            ..direct.clone()
        };
        let d = engine.query_unpinned(adql, &direct).await.unwrap();
        let p = engine.query_unpinned(adql, &planned).await.unwrap();
        assert_eq!(d.timings.plan, Duration::ZERO, "{adql}: not direct");
        assert!(p.timings.plan > Duration::ZERO, "{adql}: not planned");
        assert_eq!(d.schema, p.schema, "{adql}");
        let (d_rows, d_end) = run_all(d).await;
        let (p_rows, p_end) = run_all(p).await;
        let ordered = adql.contains("ORDER BY");
        if ordered {
            // The same rows in the same order.
            assert_eq!(lines(&d_rows), lines(&p_rows), "{adql} {maxrec:?}");
        } else if maxrec.is_none() {
            // Which row a cut keeps of an unordered result is arbitrary.
            assert_eq!(sorted_lines(&d_rows), sorted_lines(&p_rows), "{adql}");
        }
        assert_eq!(d_end.rows, p_end.rows, "{adql} {maxrec:?}");
        assert_eq!(d_end.overflow, p_end.overflow, "{adql} {maxrec:?}");
        // The pinned form: both get the same token, and the second run is
        // checked against the record the first one left.
        let p = engine.query(adql, &planned).await.unwrap();
        let (_, p_end) = run_all(p).await;
        let mut d = engine.query(adql, &direct).await.unwrap();
        while let Some(b) = d.next_batch().await {
            b.unwrap_or_else(|e| panic!("{adql} {maxrec:?}: {e}"));
        }
        assert_eq!(d.finished().unwrap().checksum, p_end.checksum, "{adql}");
        compared += 1;
        nonempty += usize::from(d_end.rows > 0);
    }
    (compared, nonempty)
}

/// Each row as its values joined by commas, in the result's order.
fn lines(batches: &[RecordBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |r| sorted_lines(&[b.slice(r, 1)]).concat()))
        .collect()
}

/// Queries that are not plain id or cone lookups are planned as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_that_only_resemble_lookups_are_planned() {
    let engine = open_sample().await;
    for adql in [
        "SELECT * FROM ppdb.DiaSource WHERE diaObjectId = 1 ORDER BY diaSourceId",
        "SELECT band FROM ppdb.DiaSource WHERE diaObjectId = 1 ORDER BY psfFlux",
        "SELECT * FROM ppdb.DiaSource WHERE diaObjectId = 1 OFFSET 2",
        "SELECT DISTINCT band FROM ppdb.DiaSource WHERE diaObjectId = 1",
        "SELECT psfFlux * 2 FROM ppdb.DiaSource WHERE diaObjectId = 1",
        "SELECT * FROM ppdb.DiaSource WHERE diaObjectId = 1.5",
        "SELECT * FROM ppdb.DiaSource WHERE diaObjectId = 1 AND band = 'g'",
        "SELECT * FROM ppdb.DiaSource WHERE diaSourceId = 1",
        "SELECT * FROM ppdb.DiaSource WHERE diaObjectId NOT IN (1, 2)",
        "SELECT * FROM ppdb.DetectorVisitProcessingSummary WHERE visit = 1",
        "SELECT COUNT(*) FROM ppdb.DiaSource WHERE diaObjectId = 1",
        // Cones the direct read does not take: not the row's own position, not
        // constants, not `= 1`, with another condition, or too large to bound.
        "SELECT * FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', dec, ra), CIRCLE('ICRS', 55, -30, 0.1)) = 1",
        "SELECT * FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', ra, -30, 0.1)) = 1",
        "SELECT * FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55, -30, 0.1)) = 0",
        "SELECT * FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55, -30, 0.1)) = 1 AND nDiaSources > 2",
        "SELECT * FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55, -30, 120)) = 1",
        "SELECT * FROM ppdb.DiaObject WHERE DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 55, -30)) < 0.1",
    ] {
        let r = engine.query(adql, &QueryOptions::default()).await.unwrap();
        assert!(r.timings.plan > Duration::ZERO, "{adql}");
    }
}
