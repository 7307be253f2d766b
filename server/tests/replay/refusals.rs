//! What replay refuses, what stays read-only, and what retention keeps.

use super::*;

/// A replay is refused clearly when the token is malformed, unknown, from
/// another catalog, or when its record no longer matches what the query returns.
#[test]
fn replay_refuses_what_it_cannot_prove() {
    let dir = TempDir::new().unwrap();
    let home = dir.path();
    let one = home.join("one");
    let two = home.join("two");
    for cat in [&one, &two] {
        let chunk = TestChunk::replica(
            100,
            vec![rows(
                TableId::DiaObject,
                OBJECT_COLUMNS,
                vec![object(1, 60000.0, 1)],
            )],
        );
        ingest(home, cat, chunk);
    }
    let run = query(
        home,
        &one,
        "SELECT diaObjectId, ra FROM ppdb.DiaObject",
        &[],
    );
    let fail = |args: &[&str], want: &str| {
        let out = ppdb(home, args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr.contains(want),
            "{args:?}: wanted {want:?} in:\n{stderr}"
        );
    };
    let one_s = one.to_str().unwrap();
    let two_s = two.to_str().unwrap();
    fail(
        &["replay", "--catalog", one_s, "not-a-token"],
        "not a query token",
    );
    fail(
        &["replay", "--catalog", one_s, "aaaaaaaaaaaaaaaaaaaa"],
        "unknown token",
    );
    // The same records, read against another catalog (even one with the same chunk).
    let state = one.join("_state");
    fail(
        &[
            "replay",
            "--catalog",
            two_s,
            "--state",
            state.to_str().unwrap(),
            &run.token,
        ],
        "another catalog",
    );
    // A record whose checksum does not match is an error, not a warning.
    let path = state.join(format!("tokens/{}.json", run.token));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut record: serde_json::Value = serde_json::from_str(&text).unwrap();
    record["checksum"] = "unordered:00000000000000000000000000000000".into();
    std::fs::write(&path, serde_json::to_string(&record).unwrap()).unwrap();
    fail(
        &["replay", "--catalog", one_s, &run.token],
        "does NOT match",
    );
    // Expiring a token is explicit, and then it is gone.
    ok(home, &["token", "expire", "--catalog", one_s, &run.token]);
    fail(&["replay", "--catalog", one_s, &run.token], "unknown token");
}

/// Querying the bundled sample keeps tokens in the per-user folder, never in the source tree.
#[test]
fn the_bundled_sample_stays_read_only() {
    let dir = TempDir::new().unwrap();
    let home = dir.path();
    let out = ok(
        home,
        &[
            "query",
            "--format",
            "csv",
            "SELECT TOP 2 diaObjectId FROM ppdb.DiaObject",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let token = stderr
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token")
        .trim()
        .to_string();
    assert!(home.join(format!("xdg/ppdb/tokens/{token}.json")).is_file());
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample/_state");
    assert!(
        !sample.exists(),
        "the query wrote into {}",
        sample.display()
    );
    let again = ok(home, &["replay", "--format", "csv", &token]);
    assert_eq!(again.stdout, out.stdout);
}

/// Retention respects tokens: expiring old snapshots keeps those live tokens
/// read, drops rows no retained snapshot sees, and refuses expired snapshots
/// clearly; expiring a token is an explicit act that releases its snapshot.
#[test]
fn retention_keeps_what_live_tokens_read() {
    let dir = TempDir::new().unwrap();
    let home = dir.path();
    let chunks = home.join("chunks");
    let cat = home.join("catalog");
    let cat_s = cat.to_str().unwrap();
    ok(
        home,
        &[
            "sample",
            "--out",
            chunks.to_str().unwrap(),
            "--objects",
            "800",
            "--nights",
            "3",
            "--visits-per-chunk",
            "2",
        ],
    );
    ok(
        home,
        &["ingest", "--catalog", cat_s, chunks.to_str().unwrap()],
    );
    let history = "SELECT diaObjectId, validityStartMjdTai, validityEndMjdTai, nDiaSources \
                   FROM ppdb.DiaObjectHistory ORDER BY diaObjectId, validityStartMjdTai";
    let kept = query(home, &cat, history, &["--as-of", "2"]);
    let released = query(home, &cat, history, &["--as-of", "4"]);
    let latest = query(
        home,
        &cat,
        "SELECT diaSourceId, psfFlux FROM ppdb.DiaSource",
        &[],
    );
    ok(
        home,
        &["token", "expire", "--catalog", cat_s, &released.token],
    );

    let out = ok(
        home,
        &[
            "vacuum",
            "--catalog",
            cat_s,
            "--grace-seconds",
            "0",
            "--expire-before",
            "6",
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        report.contains("[2]"),
        "snapshot 2 should be kept:\n{report}"
    );
    let dropped: u64 = report
        .split("dropped ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no dropped count in:\n{report}"));
    assert!(dropped > 0, "{report}");

    assert_same(
        &kept,
        &replay(home, &cat, &kept.token),
        true,
        "after retention",
    );
    assert_same(
        &latest,
        &replay(home, &cat, &latest.token),
        false,
        "after retention",
    );
    for k in ["1", "3", "4", "5"] {
        let out = ppdb(home, &["query", "--catalog", cat_s, "--as-of", k, history]);
        assert!(!out.status.success(), "snapshot {k} should be expired");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("snapshot {k} has expired")),
            "{stderr}"
        );
    }
    let listing = String::from_utf8(ok(home, &["snapshots", "--catalog", cat_s]).stdout).unwrap();
    let state_of = |k: &str| {
        listing
            .lines()
            .find(|l| l.split_whitespace().next() == Some(k))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(state_of("2"), "retained", "{listing}");
    assert_eq!(state_of("4"), "expired", "{listing}");
    assert_eq!(state_of("6"), "retained", "{listing}");
}
