//! The `ppdb` program as the tests run it: its own environment, and a helper
//! that insists on success.

use std::path::Path;
use std::process::Command;

/// `ppdb`, with no catalog or state from the environment, and query tokens of
/// the bundled sample kept in target/ rather than in the user's folder.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ppdb"));
    c.env_remove("PPDB_CATALOG").env_remove("PPDB_STATE").env(
        "XDG_STATE_HOME",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-state"),
    );
    c
}

/// Runs `ppdb args` and returns its stdout; fails the test with its stderr otherwise.
pub fn ok(args: &[&str]) -> String {
    let out = command().args(args).output().expect("ppdb runs");
    assert!(
        out.status.success(),
        "ppdb {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Writes a small sample (600 objects, 2 nights of 4 visits, 2 visits a
/// chunk) into `dir/chunks`; returns that folder.
pub fn sample(dir: &Path) -> String {
    let out = dir.join("chunks");
    let out = out.to_str().expect("a UTF-8 path");
    ok(&[
        "sample",
        "--out",
        out,
        "--objects",
        "600",
        "--nights",
        "2",
        "--visits-per-night",
        "4",
        "--visits-per-chunk",
        "2",
    ]);
    out.to_string()
}

/// Generates 3000 objects over 3 nights of 6 visits (detector corners
/// included; the third night after MJD 61001.6) into `dir/chunks` and
/// ingests them into `dir/catalog` with that embargo; returns the catalog.
pub fn embargoed_catalog(dir: &Path) -> String {
    let chunks = dir.join("chunks");
    let catalog = dir.join("catalog");
    let (chunks, catalog) = (
        chunks.to_str().expect("a UTF-8 path"),
        catalog.to_str().expect("a UTF-8 path"),
    );
    ok(&[
        "sample",
        "--out",
        chunks,
        "--objects",
        "3000",
        "--nights",
        "3",
        "--visits-per-night",
        "6",
        "--visits-per-chunk",
        "2",
    ]);
    ok(&[
        "ingest",
        "--catalog",
        catalog,
        "--embargo-until",
        "61001.6",
        chunks,
    ]);
    catalog.to_string()
}

/// Runs `ppdb args`, which must fail; returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = command().args(args).output().expect("ppdb runs");
    assert!(!out.status.success(), "ppdb {args:?} succeeded");
    String::from_utf8(out.stderr).expect("utf-8 output")
}
