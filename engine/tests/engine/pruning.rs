//! Cones, joins and id lookups open only the files they need.

use super::*;

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
    fresh_files_answer_as_partitions_do(0).await;
}

/// Files of cells merged up to lower orders (as a sparse sky leaves them) are
/// pruned and answer as the partitions do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_merged_cells_are_pruned_and_answer_as_partitions_do() {
    fresh_files_answer_as_partitions_do(3000).await;
}

/// Fresh files of cells merged while they hold at most `cell_rows` rows (0:
/// each at the ingest order) answer as the unpruned forms of each query, a
/// light curve opens at most a third of them, and compaction into partitions
/// changes no answer.
async fn fresh_files_answer_as_partitions_do(cell_rows: usize) {
    let (_dir, cat) = generated_fresh(20_000, Some(cell_rows)).await;
    let fresh_total = files_of(&cat, TableId::DiaSource).await;
    let state = cat.state().await.unwrap();
    let orders: std::collections::BTreeSet<u8> = cat
        .scan(&state, TableId::DiaSource, state.latest())
        .unwrap()
        .files
        .iter()
        .filter_map(|f| f.cell.map(|c| c.order))
        .collect();
    if cell_rows == 0 {
        assert_eq!(orders, [4].into(), "at the ingest order");
    } else {
        assert!(
            orders.len() > 1 && orders.first() < Some(&4),
            "merged: {orders:?}"
        );
    }
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

    // Compaction as it runs by default keeps this sparse night in cells
    // coarser than the ingest order; into partitions, it splits them into
    // more, smaller files; and back again. Every answer stays the same.
    let same_answers = async |label: &str| {
        let engine = engine_over(&cat, &format!("memory://engine-{label}-state"));
        for (q, before) in queries.iter().zip(&fresh) {
            let after = sorted_lines(&rows_with(&engine, q, &opts).await);
            assert_eq!(&after, before, "{label}: {q}");
        }
    };
    let coarse_orders = async || {
        let state = cat.state().await.unwrap();
        let scan = cat
            .scan(&state, TableId::DiaSource, state.latest())
            .unwrap();
        assert!(scan.files.iter().all(|f| !f.stats.merged_cells.is_empty()));
        scan.files
            .iter()
            .filter_map(|f| f.cell.map(|c| c.order))
            .collect::<std::collections::BTreeSet<u8>>()
    };
    compact_into(&cat, catalog::DEFAULT_COMPACT_ROWS).await;
    let coarse_total = files_of(&cat, TableId::DiaSource).await;
    assert!(coarse_total <= fresh_total.min(4), "{coarse_total} files");
    assert_eq!(coarse_orders().await, [0].into());
    same_answers("coarse").await;

    compact_into(&cat, 0).await;
    let compacted_total = files_of(&cat, TableId::DiaSource).await;
    assert!(
        compacted_total > fresh_total,
        "{compacted_total} partitions from {fresh_total} fresh files"
    );
    same_answers("partitions").await;

    compact_into(&cat, catalog::DEFAULT_COMPACT_ROWS).await;
    assert_eq!(files_of(&cat, TableId::DiaSource).await, coarse_total);
    assert_eq!(coarse_orders().await, [0].into());
    same_answers("coarse-again").await;
}

/// A scan reads `_added` and `_retired` only from the files whose visibility
/// the log cannot decide (rows added after the snapshot, or retired at or
/// before it); the others give only the columns the query names. Before, one
/// such file made every file of the table read and test both. At the latest
/// snapshot of a compacted catalog no file needs them: the retired rows lie
/// in files of their own, which it does not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_tests_visibility_columns_only_in_files_that_need_it() {
    let (_dir, cat) = generated(20_000).await;
    let state = cat.state().await.unwrap();
    let latest = state.latest();
    let need = |k: u64| {
        let scan = cat.scan(&state, TableId::DiaObject, k).unwrap();
        let need = scan.files.iter().filter(|f| f.filter_by_columns).count();
        (need, scan.files.len())
    };
    assert_eq!(need(latest).0, 0, "{:?}", need(latest));
    let k = latest - 1;
    let (some, all) = need(k);
    assert!(
        some > 0 && some < all,
        "{some} of {all} files need the columns"
    );
    let engine = engine_over(&cat, "memory://engine-visibility-state");
    let options = QueryOptions {
        as_of: Some(adql::AsOf::Snapshot(k)),
        ..Default::default()
    };
    let adql = "SELECT nDiaSources, COUNT(*) AS n FROM ppdb.DiaObjectHistory GROUP BY nDiaSources";
    let plan = engine.explain_analyze(adql, &options).await.unwrap();
    let scans: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains("DataSourceExec"))
        .collect();
    assert_eq!(scans.len(), 2, "{plan}");
    let testing: Vec<&&str> = scans.iter().filter(|l| l.contains("_retired")).collect();
    assert_eq!(testing.len(), 1, "{plan}");
    // Every row either way: the history's rows at that snapshot.
    let counted: i64 = engine
        .query(adql, &options)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .0
        .iter()
        .map(|b| {
            b.column(1)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .sum::<i64>()
        })
        .sum();
    let read = catalog_rows(&cat, TableId::DiaObject, k).await;
    assert_eq!(counted as usize, read);
}

/// "What changed since T" opens only the files the commits since T wrote: the
/// log's time range of each file drops the others without opening them, and
/// the answer is the one a filter the pruning cannot read gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_since_a_time_opens_only_the_files_of_later_commits() {
    let dir = TempDir::new().unwrap();
    let config = catalog::sample::SampleConfig {
        objects: 3000,
        nights: 3,
        visits_per_night: Some(8),
        visits_per_chunk: 1,
        src: false,
        ..Default::default()
    };
    let url = dir.path().join("catalog");
    let cat = Arc::new(ingest_generated(dir.path(), url.to_str().unwrap(), &config, None).await);
    let engine = engine_over(&cat, "memory://engine-since-state");
    let last = rows(
        &engine,
        "SELECT MAX(validityStartMjdTai) FROM ppdb.DiaObject",
    )
    .await;
    let since = last[0].column(0).as_primitive::<Float64Type>().value(0) - 0.5;
    // Only "since": a commit's file also holds older rows it updated, so a
    // window in the past meets most files.
    for (table, stored, cut) in [
        (
            "DiaObject",
            TableId::DiaObject,
            format!("validityStartMjdTai > {since}"),
        ),
        (
            "DiaSource",
            TableId::DiaSource,
            format!("midpointMjdTai >= {since}"),
        ),
    ] {
        let total = files_of(&cat, stored).await;
        let q = |w: &str| format!("SELECT * FROM ppdb.{table} WHERE {w}");
        let plan = engine
            .explain_analyze(&q(&cut), &QueryOptions::default())
            .await
            .unwrap();
        let opened = files_opened(&plan);
        assert!(
            opened >= 1 && opened * 2 < total,
            "{cut}: opened {opened} of {total} files:\n{plan}"
        );
        let pruned = sorted_lines(&rows(&engine, &q(&cut)).await);
        assert!(!pruned.is_empty(), "{cut}");
        let unpruned = q(&format!("1 = CASE WHEN {cut} THEN 1 ELSE 0 END"));
        assert_eq!(
            pruned,
            sorted_lines(&rows(&engine, &unpruned).await),
            "{cut}"
        );
    }
}

/// On a compacted catalog the current DiaObject versions are read from the
/// files of current rows alone: the closed versions and retired rows that
/// compaction set apart are not opened, and the answer is the history view's
/// open versions, which reads them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_objects_are_read_without_opening_the_history() {
    let (_dir, cat) = generated(20_000).await;
    let state = cat.state().await.unwrap();
    let scan = cat
        .scan(&state, TableId::DiaObject, state.latest())
        .unwrap();
    let current = scan
        .files
        .iter()
        .filter(|f| f.stats.open_versions != Some(0))
        .count();
    assert!(
        current > 0 && current < scan.files.len(),
        "{current} of {} files hold current versions",
        scan.files.len()
    );
    let engine = engine_over(&cat, "memory://engine-current-state");
    let columns = "diaObjectId, ra, dec, validityStartMjdTai, nDiaSources";
    let q = format!("SELECT {columns} FROM ppdb.DiaObject");
    let history =
        format!("SELECT {columns} FROM ppdb.DiaObjectHistory WHERE validityEndMjdTai IS NULL");
    for (adql, opens) in [(&q, current), (&history, scan.files.len())] {
        let plan = engine
            .explain_analyze(adql, &QueryOptions::default())
            .await
            .unwrap();
        assert_eq!(files_opened(&plan), opens, "{adql}:\n{plan}");
    }
    let answer = sorted_lines(&rows(&engine, &q).await);
    assert!(!answer.is_empty());
    assert_eq!(answer, sorted_lines(&rows(&engine, &history).await));
}

/// Rows of `table` the catalog's own reader sees at `snapshot`.
async fn catalog_rows(cat: &Catalog, table: TableId, snapshot: u64) -> usize {
    cat.read_table(table, snapshot).await.unwrap().num_rows()
}

/// `row_groups_pruned_bloom_filter=N total → M matched` of a plan line, as (N, M).
fn bloom_pruned(line: &str) -> Option<(f64, f64)> {
    let rest = line.split("row_groups_pruned_bloom_filter=").nth(1)?;
    let (total, rest) = rest.split_once(" total → ")?;
    let matched = rest.split(" matched").next()?;
    Some((total.parse().ok()?, matched.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cone_join_builds_the_cone_whole_and_skips_row_groups_without_its_objects() {
    // Sparse files coarser than a partition, as a wide sparse sky leaves them,
    // so one file holds many row groups of many objects' sources.
    let (_dir, cat) = generated_fresh(60_000, Some(1 << 30)).await;
    compact_into(&cat, 1 << 30).await;
    let engine = engine_over(&cat, "memory://engine-bloom-state");
    let (_, ra, dec) = first_object(&engine).await;
    let join = format!(
        "SELECT o.diaObjectId, s.diaSourceId FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s \
         ON s.diaObjectId = o.diaObjectId \
         WHERE CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', {ra}, {dec}, 0.1)) = 1"
    );
    let plan = engine
        .explain_analyze(&join, &QueryOptions::default())
        .await
        .unwrap();
    assert!(
        plan.contains("HashJoinExec: mode=CollectLeft"),
        "the cone's few objects are the join's whole build side:\n{plan}"
    );
    let source = plan
        .lines()
        .find(|l| l.contains("DataSourceExec") && l.contains("DiaSource/"))
        .unwrap_or_else(|| panic!("no DiaSource scan:\n{plan}"));
    let (total, matched) =
        bloom_pruned(source).unwrap_or_else(|| panic!("no bloom filter metric:\n{source}"));
    assert!(
        total >= 2.0 && matched < total,
        "the objects' bloom filters should skip some of {total} row groups, kept {matched}:\n{source}"
    );
    // The answer is the join's, whatever was skipped.
    let plain = join.replace(
        "s.diaObjectId = o.diaObjectId",
        "s.diaObjectId + 0 = o.diaObjectId",
    );
    let opts = QueryOptions::default();
    let a = sorted_lines(&rows_with(&engine, &join, &opts).await);
    assert!(!a.is_empty());
    assert_eq!(a, sorted_lines(&rows_with(&engine, &plain, &opts).await));
}
