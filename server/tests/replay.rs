//! Exact reproducibility, through the `ppdb` program as a user runs it: run a
//! query, keep its token, change the world, and replay. Every replay is a new
//! process on the same catalog, so each of these also proves that tokens
//! outlive the process that made them.

use testkit::chunks as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use catalog::TableId;
use support::{TestChunk, V, rows, updates};
use tempfile::TempDir;

/// Runs `ppdb` with tokens kept under `home` (never in the user's own state folder).
fn ppdb(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ppdb"))
        .args(args)
        .env_remove("PPDB_CATALOG")
        .env_remove("PPDB_STATE")
        .env("XDG_STATE_HOME", home.join("xdg"))
        .output()
        .expect("ppdb runs")
}

fn ok(home: &Path, args: &[&str]) -> Output {
    let out = ppdb(home, args);
    assert!(
        out.status.success(),
        "ppdb {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A first run: the CSV it printed and the token it gave.
struct FirstRun {
    adql: String,
    csv: String,
    token: String,
}

fn query(home: &Path, catalog: &Path, adql: &str, extra: &[&str]) -> FirstRun {
    let mut args = vec![
        "query",
        "--catalog",
        catalog.to_str().unwrap(),
        "--format",
        "csv",
    ];
    args.extend_from_slice(extra);
    args.push(adql);
    let out = ok(home, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let token = stderr
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap_or_else(|| panic!("no token on stderr:\n{stderr}"))
        .trim()
        .to_string();
    FirstRun {
        adql: adql.to_string(),
        csv: String::from_utf8(out.stdout).unwrap(),
        token,
    }
}

fn replay(home: &Path, catalog: &Path, token: &str) -> String {
    let out = ok(
        home,
        &[
            "replay",
            "--catalog",
            catalog.to_str().unwrap(),
            "--format",
            "csv",
            token,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("matches the record"),
        "replay of {token} did not confirm its checksum:\n{stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sorted(csv: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = csv.lines().collect();
    lines.sort();
    lines
}

/// Same rows; byte-identical CSV when the query orders its rows.
fn assert_same(first: &FirstRun, again: &str, ordered: bool, when: &str) {
    if ordered {
        assert_eq!(
            first.csv, again,
            "{when}: ordered result changed for {}",
            first.adql
        );
    } else {
        assert_eq!(
            sorted(&first.csv),
            sorted(again),
            "{when}: rows changed for {}",
            first.adql
        );
    }
    assert!(
        first.csv.lines().count() > 1,
        "{} returned no rows",
        first.adql
    );
}

fn chunk_dirs(root: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

/// The queries of the generated-catalog scenario: (ADQL, extra arguments, ordered).
const QUERIES: &[(&str, &[&str], bool)] = &[
    // Every DiaObject version with its validity interval: grows, and old
    // intervals close, as later chunks arrive.
    (
        "SELECT diaObjectId, validityStartMjdTai, validityEndMjdTai, nDiaSources, ra, dec \
         FROM ppdb.DiaObjectHistory ORDER BY diaObjectId, validityStartMjdTai",
        &[],
        true,
    ),
    // No order: an order-independent checksum, nothing sorted.
    (
        "SELECT diaSourceId, diaObjectId, ssObjectId, timeWithdrawnMjdTai, psfFlux FROM ppdb.DiaSource",
        &[],
        false,
    ),
    // TOP without ORDER BY: the pinned form chooses the rows by a total order.
    (
        "SELECT TOP 20 diaObjectId, ra, dec, nDiaSources FROM ppdb.DiaObject",
        &[],
        true,
    ),
    // Forced-source light curves, aggregated.
    (
        "SELECT diaObjectId, COUNT(*) AS n, MIN(midpointMjdTai) AS first, MAX(psfFlux) AS brightest \
         FROM ppdb.DiaForcedSource GROUP BY diaObjectId",
        &[],
        false,
    ),
    // A MAXREC cut on an unordered query: which rows are kept must not depend on luck.
    (
        "SELECT diaForcedSourceId, diaObjectId, psfFlux FROM ppdb.DiaForcedSource",
        &["--maxrec", "25"],
        true,
    ),
    // A cone on the current objects.
    (
        "SELECT * FROM ppdb.DiaObject \
         WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55.0, -30.0, 0.2)) = 1",
        &[],
        false,
    ),
    // Scenario 6: DiaObject, DiaSource and src.PromptSource in one query.
    (
        "SELECT TOP 40 o.diaObjectId, s.diaSourceId, p.sourceId, \
         DISTANCE(POINT('ICRS', s.ra, s.dec), POINT('ICRS', p.ra, p.dec)) AS sep \
         FROM ppdb.DiaObject AS o \
         JOIN ppdb.DiaSource AS s ON s.diaObjectId = o.diaObjectId \
         JOIN src.PromptSource AS p ON p.visit = s.visit AND p.detector = s.detector \
         WHERE o.nDiaSources >= 2",
        &[],
        true,
    ),
    (
        "SELECT o.diaObjectId, COUNT(*) AS n FROM ppdb.DiaObject AS o \
         JOIN ppdb.DiaSource AS s ON s.diaObjectId = o.diaObjectId \
         JOIN src.PromptSource AS p ON p.visit = s.visit AND p.detector = s.detector \
         GROUP BY o.diaObjectId",
        &[],
        false,
    ),
];

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
}

fn mjd_now() -> f64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    40587.0 + secs / 86400.0
}

fn ingest(home: &Path, cat: &Path, chunk: TestChunk) {
    let dir = chunk.write(&home.join("chunks"));
    ok(
        home,
        &[
            "ingest",
            "--catalog",
            cat.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
}

fn object(id: i64, start: f64, n: i64) -> Vec<V> {
    vec![V::I(id), V::F(start), V::I(n)]
}

fn source(id: i64, object: i64, mjd: f64, visit: i64) -> Vec<V> {
    vec![V::I(id), V::I(object), V::F(mjd), V::I(visit)]
}

const OBJECT_COLUMNS: &[&str] = &["diaObjectId", "validityStartMjdTai", "nDiaSources"];
const SOURCE_COLUMNS: &[&str] = &["diaSourceId", "diaObjectId", "midpointMjdTai", "visit"];

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

/// The replay guide's round trip works as printed: its query on the bundled
/// sample gets a token, and its replay command repeats the same CSV.
#[test]
fn the_readme_round_trip_works_as_written() {
    let section =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/replay.md"))
            .expect("docs/replay.md");
    let line = section
        .lines()
        .find(|l| l.starts_with("$P query --format csv"))
        .expect("a query example");
    let adql = line
        .split('"')
        .nth(1)
        .expect("the example's ADQL in double quotes");
    let replay: Vec<&str> = section
        .lines()
        .find_map(|l| l.strip_prefix("$P replay "))
        .and_then(|l| l.split('#').next())
        .expect("a replay example")
        .split_whitespace()
        .collect();
    let dir = TempDir::new().unwrap();
    let home = dir.path();
    let out = ok(home, &["query", "--format", "csv", adql]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let token = stderr
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token")
        .trim()
        .to_string();
    let mut args = vec!["replay"];
    args.extend(
        replay
            .iter()
            .map(|a| if *a == "TOKEN" { token.as_str() } else { a }),
    );
    let again = ok(home, &args);
    assert_eq!(again.stdout, out.stdout, "{args:?}");
}

/// A token alone finds the writable catalog it was made on (whose own state
/// store keeps its record), from any folder, with no --catalog or --state.
#[test]
fn a_token_alone_replays_on_the_catalog_it_was_made_on() {
    let dir = TempDir::new().unwrap();
    let home = dir.path();
    let cat = home.join("cat");
    let chunk = TestChunk::replica(
        100,
        vec![rows(
            TableId::DiaObject,
            OBJECT_COLUMNS,
            vec![object(1, 60000.0, 1), object(2, 60000.0, 3)],
        )],
    );
    ingest(home, &cat, chunk);
    let run = query(
        home,
        &cat,
        "SELECT diaObjectId, nDiaSources FROM ppdb.DiaObject",
        &[],
    );
    assert!(
        cat.join(format!("_state/tokens/{}.json", run.token))
            .is_file(),
        "the record is kept with the writable catalog"
    );
    let again = ok(home, &["replay", "--format", "csv", &run.token]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), run.csv);
    let record = ok(home, &["token", "show", &run.token]);
    assert!(String::from_utf8_lossy(&record.stdout).contains(&run.token));
    // A token nobody made says where it was looked for.
    let out = ppdb(home, &["replay", "aaaaaaaaaaaaaaaaaaaa"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown token") && stderr.contains("_state"),
        "{stderr}"
    );
}
