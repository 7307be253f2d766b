//! Every table at every snapshot, the README's cone, and the schema's spelling.

use super::*;

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
