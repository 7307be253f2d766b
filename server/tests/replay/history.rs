//! Replays across new chunks, compaction, vacuum, restarts, late versions and updates.

use super::*;

/// Scenarios 1, 4, 5 and 6 on a generated catalog: later chunks add object
/// versions, sources and forced sources (with the generator's withdrawals and
/// closures among them); then `compact` and `vacuum` rewrite and delete files.
#[test]
fn replays_survive_new_chunks_compaction_vacuum_and_restarts() {
    let dir = TempDir::new().unwrap();
    let home = dir.path();
    let chunks = home.join("chunks");
    let cat = home.join("catalog");
    ok(
        home,
        &[
            "sample",
            "--out",
            chunks.to_str().unwrap(),
            "--objects",
            "1500",
            "--nights",
            "3",
            "--visits-per-chunk",
            "2",
            "--seed",
            "7",
        ],
    );
    let replica = chunk_dirs(&chunks, "chunk-");
    let src = chunk_dirs(&chunks, "src-");
    assert!(replica.len() >= 4 && !src.is_empty(), "{replica:?} {src:?}");
    // The first night: two replica chunks and its src chunk.
    let first: Vec<&str> = [&replica[0], &replica[1], &src[0]]
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect();
    let mut args = vec!["ingest", "--catalog", cat.to_str().unwrap()];
    args.extend(first);
    ok(home, &args);

    let runs: Vec<FirstRun> = QUERIES
        .iter()
        .map(|(adql, extra, _)| query(home, &cat, adql, extra))
        .collect();
    // Tokens are kept in the catalog itself, which is writable.
    for r in &runs {
        assert!(
            cat.join(format!("_state/tokens/{}.json", r.token))
                .is_file(),
            "no record for {}",
            r.token
        );
    }

    // Scenario 1: the rest of the chunks (re-sent ones are no-ops).
    ok(
        home,
        &[
            "ingest",
            "--catalog",
            cat.to_str().unwrap(),
            chunks.to_str().unwrap(),
        ],
    );
    let mut changed = 0;
    for ((first, (_, extra, ordered)), i) in runs.iter().zip(QUERIES).zip(0..) {
        let now = query(home, &cat, &first.adql, extra);
        if now.csv != first.csv {
            changed += 1;
        }
        assert_ne!(
            now.token, first.token,
            "query {i}: a new snapshot is a new token"
        );
        assert_same(
            first,
            &replay(home, &cat, &first.token),
            *ordered,
            "after new chunks",
        );
    }
    assert!(
        changed >= 5,
        "the later chunks should change most answers (changed {changed} of {})",
        runs.len()
    );

    // Scenario 4: compaction rewrites every partition; vacuum deletes the old files.
    let out = ok(home, &["compact", "--catalog", cat.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("replaced"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ok(
        home,
        &[
            "vacuum",
            "--catalog",
            cat.to_str().unwrap(),
            "--grace-seconds",
            "0",
        ],
    );
    let vacuumed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !vacuumed.starts_with("deleted 0 "),
        "vacuum deleted nothing: {vacuumed}"
    );
    for (first, (_, _, ordered)) in runs.iter().zip(QUERIES) {
        assert_same(
            first,
            &replay(home, &cat, &first.token),
            *ordered,
            "after compact and vacuum",
        );
    }
    // Re-partitioning: into partitions, then back into cells as coarse as
    // 262 144 rows allow. Tokens taken before replay the same after each.
    for target in ["0", "262144"] {
        let out = ok(
            home,
            &[
                "compact",
                "--catalog",
                cat.to_str().unwrap(),
                "--target-rows",
                target,
            ],
        );
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            !said.contains(": 0 files replaced"),
            "--target-rows {target}: {said}"
        );
        for (first, (_, _, ordered)) in runs.iter().zip(QUERIES) {
            assert_same(
                first,
                &replay(home, &cat, &first.token),
                *ordered,
                &format!("after compact --target-rows {target}"),
            );
        }
    }
}

/// Scenarios 2 and 3 with hand-made chunks, and the naive alternative beside
/// ours: rewriting the query with a valid-time predicate `<= t` (t = the wall
/// time of the first run) reads the latest data, so it sees the late version
/// and the in-place updates; the token does not.
#[test]
fn late_versions_and_updates_change_the_naive_answer_but_not_the_replay() {
    let dir = TempDir::new().unwrap();
    let home = dir.path();
    let cat = home.join("catalog");
    ingest(
        home,
        &cat,
        TestChunk::replica(
            100,
            vec![
                rows(
                    TableId::DiaObject,
                    OBJECT_COLUMNS,
                    vec![object(1, 60000.0, 1), object(2, 60000.0, 1)],
                ),
                rows(
                    TableId::DiaSource,
                    SOURCE_COLUMNS,
                    vec![source(11, 1, 60000.0, 1), source(12, 2, 60000.0, 1)],
                ),
            ],
        ),
    );
    ingest(
        home,
        &cat,
        TestChunk::replica(
            200,
            vec![
                rows(
                    TableId::DiaObject,
                    OBJECT_COLUMNS,
                    vec![object(1, 60010.0, 2)],
                ),
                rows(
                    TableId::DiaSource,
                    SOURCE_COLUMNS,
                    vec![source(13, 1, 60010.0, 2)],
                ),
            ],
        ),
    );

    let history = "SELECT diaObjectId, validityStartMjdTai, validityEndMjdTai \
                   FROM ppdb.DiaObjectHistory{} ORDER BY diaObjectId, validityStartMjdTai";
    let sources = "SELECT diaSourceId, diaObjectId, ssObjectId, timeWithdrawnMjdTai \
                   FROM ppdb.DiaSource{} ORDER BY diaSourceId";
    let current = "SELECT diaObjectId, nDiaSources, validityStartMjdTai \
                   FROM ppdb.DiaObject{} ORDER BY diaObjectId";
    let fill = |q: &str, w: &str| q.replace("{}", w);
    let t = mjd_now();
    let naive_history = fill(history, &format!(" WHERE validityStartMjdTai <= {t}"));
    let naive_sources = fill(sources, &format!(" WHERE midpointMjdTai <= {t}"));
    let naive_current = fill(current, &format!(" WHERE validityStartMjdTai <= {t}"));

    let runs = [
        query(home, &cat, &fill(history, ""), &[]),
        query(home, &cat, &fill(sources, ""), &[]),
        query(home, &cat, &fill(current, ""), &[]),
    ];
    let naive = [&naive_history, &naive_sources, &naive_current];
    // Before anything changes, the naive rewrite agrees: it fails because of what comes next.
    for (r, n) in runs.iter().zip(naive) {
        assert_eq!(query(home, &cat, n, &[]).csv, r.csv, "{n}");
    }
    assert_eq!(runs[0].csv.lines().count(), 1 + 3, "{}", runs[0].csv);

    // Scenario 2: a late version of object 1, valid from before the first run's
    // time (and before the version that was current then).
    ingest(
        home,
        &cat,
        TestChunk::replica(
            300,
            vec![rows(
                TableId::DiaObject,
                OBJECT_COLUMNS,
                vec![object(1, 60005.0, 2)],
            )],
        ),
    );
    let late = query(home, &cat, &naive_history, &[]);
    assert_ne!(
        late.csv, runs[0].csv,
        "the naive rewrite should see the late version"
    );
    assert!(late.csv.contains("60005"), "{}", late.csv);
    assert_same(
        &runs[0],
        &replay(home, &cat, &runs[0].token),
        true,
        "after a late version",
    );

    // Scenario 3: withdraw a source, reassign another to a solar-system object,
    // close object 2, and update object 1's nDiaSources in place.
    ingest(
        home,
        &cat,
        TestChunk::replica(
            400,
            vec![updates(vec![
                (
                    "withdraw_diasource",
                    vec![
                        ("diaSourceId", V::I(11)),
                        ("timeWithdrawnMjdTai", V::F(60020.0)),
                    ],
                ),
                (
                    "reassign_diasource",
                    vec![
                        ("diaSourceId", V::I(12)),
                        ("ssObjectId", V::I(77)),
                        ("ssObjectReassocTimeMjdTai", V::F(60021.0)),
                    ],
                ),
                (
                    "close_diaobject_validity",
                    vec![
                        ("diaObjectId", V::I(2)),
                        ("validityEndMjdTai", V::F(60022.0)),
                    ],
                ),
                (
                    "update_n_dia_sources",
                    vec![("diaObjectId", V::I(1)), ("nDiaSources", V::I(5))],
                ),
            ])],
        ),
    );
    let naive_now = [
        query(home, &cat, &naive_history, &[]),
        query(home, &cat, &naive_sources, &[]),
        query(home, &cat, &naive_current, &[]),
    ];
    for (r, n) in runs.iter().zip(&naive_now) {
        assert_ne!(
            n.csv, r.csv,
            "the naive rewrite should differ for {}",
            n.adql
        );
        assert_same(r, &replay(home, &cat, &r.token), true, "after updates");
    }
    assert!(naive_now[1].csv.contains("60020"), "{}", naive_now[1].csv);
    assert!(!naive_now[2].csv.contains("\n2,"), "{}", naive_now[2].csv);
}
