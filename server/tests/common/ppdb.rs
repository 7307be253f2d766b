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
