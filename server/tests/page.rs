//! The web page at `/`, in a real browser: Debian's `chromium`, headless,
//! driven by Playwright from `tests/conformance/page_session.py` against
//! `ppdb serve` on 127.0.0.1. Every check reads the DOM: rows and columns,
//! exact 64-bit ids, the token, snapshot and pinned ADQL after a run, an error
//! that clears the previous result, a MAXREC cut, the sky plot's axes and
//! cos(dec), the light-curve plot, the table's coverage and where detectors
//! looked drawn under it, the replay and VOTable links, and a 14 000 row
//! result drawn a page at a time.

use std::process::Command;

mod common;
use common::serve::Server;

#[test]
fn the_page_shows_every_result_right_in_a_browser() {
    let in_ci = std::env::var_os("CI").is_some();
    let Some(python) = std::env::var_os("PPDB_PYTHON") else {
        assert!(!in_ci, "PPDB_PYTHON must be set in CI (.ci/run sets it)");
        eprintln!("skipped: PPDB_PYTHON (a python with playwright) is not set");
        return;
    };
    let chromium = std::env::var("PPDB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        assert!(
            !in_ci,
            "chromium must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    }
    let s = Server::start(&[]);
    // The bundled sample predates detector corners: footprints need a catalog
    // generated now.
    let dir = tempfile::TempDir::new().unwrap();
    let catalog = common::ppdb::embargoed_catalog(dir.path());
    let looked = Server::start(&["--catalog", &catalog, "--embargo-hours", "0"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/conformance/page_session.py"
    );
    let out = Command::new(python)
        .args([script, s.base(), &chromium, looked.base()])
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("page-session: 12 passed, 0 failed"), "{text}");
}
