//! The direct path: id lookups and cones read without the planner agree with it.

use super::*;

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

/// Id lookups skip a large file's row groups by their statistics and bloom
/// filters also when a later commit hid some of the file's rows by position:
/// the positions skipped are counted within the row groups read. Before, any
/// hidden row made a lookup read every row group of the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_in_large_files_with_rows_hidden_later_give_what_the_planner_gives() {
    let dir = TempDir::new().unwrap();
    let config = catalog::sample::SampleConfig {
        objects: 200_000,
        nights: 2,
        density: 6000.0,
        visits_per_chunk: 8,
        src: false,
        ..Default::default()
    };
    let chunks = dir.path().join("chunks");
    catalog::sample::generate(&config, &chunks).unwrap();
    let mut dirs: Vec<_> = std::fs::read_dir(&chunks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let url = dir.path().join("catalog");
    let cat = Catalog::open_or_create(url.to_str().unwrap(), 6)
        .await
        .unwrap();
    let (first_night, second_night) = dirs.split_at(dirs.len() / 2);
    for d in first_night {
        cat.ingest(&catalog::store::open_existing_local(d).unwrap())
            .await
            .unwrap();
    }
    let middle = cat.state().await.unwrap().latest();
    // Files of several row groups, whose rows the second night then retires.
    compact_into(&cat, 1 << 20).await;
    for d in second_night {
        cat.ingest(&catalog::store::open_existing_local(d).unwrap())
            .await
            .unwrap();
    }
    let state = cat.state().await.unwrap();
    let large_and_hidden = state
        .files
        .values()
        .filter(|f| {
            // (DEFAULT_CELL_ROWS is a row group's rows.)
            f.entry.rows > catalog::DEFAULT_CELL_ROWS as u64 && !f.retired.is_empty()
        })
        .count();
    assert!(
        large_and_hidden > 0,
        "no file of several row groups has hidden rows"
    );
    let cat = Arc::new(cat);
    let engine = engine_over(&cat, "memory://lookups-hidden/state");
    // Objects spread over the id range, so over the row groups.
    let mut ids: Vec<i64> = Vec::new();
    for b in rows(
        &engine,
        "SELECT diaObjectId FROM ppdb.DiaObjectHistory GROUP BY diaObjectId \
         HAVING COUNT(*) > 1 ORDER BY diaObjectId",
    )
    .await
    {
        ids.extend(b.column(0).as_primitive::<Int64Type>().values().iter());
    }
    assert!(
        ids.len() > 100,
        "{} objects with several versions",
        ids.len()
    );
    let step = ids.len() / 12;
    let mut nonempty = 0;
    for k in [middle, state.latest()] {
        for id in ids.iter().step_by(step) {
            for adql in [
                format!(
                    "SELECT * FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF {k} WHERE diaObjectId = {id}"
                ),
                format!(
                    "SELECT diaObjectId, validityStartMjdTai, validityEndMjdTai FROM ppdb.DiaObjectHistory \
                     FOR SYSTEM_TIME AS OF {k} WHERE diaObjectId = {id}"
                ),
                format!(
                    "SELECT * FROM ppdb.DiaSource FOR SYSTEM_TIME AS OF {k} WHERE diaObjectId = {id}"
                ),
            ] {
                nonempty += direct_and_planned_agree(&engine, &adql).await.1;
            }
        }
    }
    assert!(nonempty > 40, "only {nonempty} lookups found rows");
}
