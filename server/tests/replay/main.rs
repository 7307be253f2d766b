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

mod history;
mod readme;
mod refusals;

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
