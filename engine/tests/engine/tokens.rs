//! Tokens and replays through the engine: the result cache, the same request, parallelism, S3.

use super::*;

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
    let Some(url) = s3_url("tokens") else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let config = catalog::sample::SampleConfig {
        objects: 300,
        nights: 1,
        src: false,
        ..Default::default()
    };
    ingest_generated(dir.path(), &url, &config, None).await;
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
