//! Crossmatches against uploads, and the longest operator chain.

use super::*;

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
