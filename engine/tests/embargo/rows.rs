//! What each caller sees: hostile queries, light curves, tables timed by chunks, time travel.

use super::*;

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
