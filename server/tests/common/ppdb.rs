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
