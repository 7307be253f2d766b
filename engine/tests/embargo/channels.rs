//! Side channels: uploads, tokens, failures, lookup cost, narrowing casts.

use super::*;

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
    // The newest row it may hold is at the cutoff: a service with a stricter
    // embargo would not replay it to anonymous callers.
    assert_eq!(record.embargoed_until, Some(CUTOFF));

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
    // From the result cache, and run again (as after a restart): its snapshot
    // is one the embargo hides from others.
    for use_cache in [true, false] {
        let r = engine
            .replay(
                &staff_token,
                &ReplayOptions {
                    privileged: true,
                    use_cache,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let (rows, _) = r.collect().await.unwrap();
        assert_eq!(sorted_lines(&rows), sorted_lines(&staff));
    }

    // Once the embargo has passed those rows, anyone may replay it.
    let later = open(61003.0, "embargo-tokens").await;
    let r = later
        .replay(&staff_token, &ReplayOptions::default())
        .await
        .unwrap();
    let (rows, _) = r.collect().await.unwrap();
    assert_eq!(sorted_lines(&rows), sorted_lines(&staff));
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
/// an id nobody used reads. Before, the id index (which knows every
/// object) sent it to the object's partition, and the time it took told that
/// the object existed.
#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_of_an_embargoed_object_reads_what_a_lookup_of_nothing_reads() {
    let engine = open(CUTOFF, "embargo-lookup").await;
    let newborn = newborn(&engine).await;
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
        // The sample's files hold rows of both sides of the cutoff: both
        // lookups read them whole (`timing.rs` has a catalog compacted under
        // the embargo, where neither reads a file).
        assert_eq!(theirs, none, "{table}");
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

/// A caller under the embargo is shown the catalog as it stood at the cutoff:
/// its results come from the last public snapshot, a later one is refused in
/// the words used for one that was never made, and a time after the cutoff
/// reads the last public one. Before, the snapshots made since (their number
/// and commit times) told how much had arrived during the embargo.
#[tokio::test(flavor = "multi_thread")]
async fn snapshots_made_after_the_cutoff_are_not_shown() {
    let engine = open(CUTOFF, "embargo-snapshots").await;
    let latest = engine.resolve_snapshot(None).await.unwrap().snapshot;
    assert!(latest > PUBLIC_SNAPSHOT);
    let shown = |privileged| engine.latest_shown(privileged);
    assert_eq!(shown(false).await.unwrap().snapshot, PUBLIC_SNAPSHOT);
    assert_eq!(shown(true).await.unwrap().snapshot, latest);
    let q = "SELECT COUNT(*) FROM ppdb.DiaSource";
    let at = |as_of: Option<adql::AsOf>, privileged| QueryOptions {
        as_of,
        ..options(privileged)
    };
    let r = engine.query(q, &at(None, false)).await.unwrap();
    assert_eq!(r.snapshot.snapshot, PUBLIC_SNAPSHOT);
    let r = engine.query(q, &at(None, true)).await.unwrap();
    assert_eq!(r.snapshot.snapshot, latest);
    let refused = |k: u64| {
        let engine = &engine;
        async move {
            let e = match engine
                .query(q, &at(Some(adql::AsOf::Snapshot(k)), false))
                .await
            {
                Ok(_) => panic!("snapshot {k} was read"),
                Err(e) => e.message(),
            };
            e.replace(&k.to_string(), "K")
        }
    };
    assert_eq!(refused(latest).await, refused(latest + 1000).await);
    let future = adql::AsOf::Time("2100-01-01T00:00:00Z".into());
    let r = engine.query(q, &at(Some(future), false)).await.unwrap();
    assert_eq!(r.snapshot.snapshot, PUBLIC_SNAPSHOT);
}
