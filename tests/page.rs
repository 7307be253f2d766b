//! The web page at `/`, in a real browser: Debian's `chromium`, headless, runs
//! the page's script against `ppdb serve` on 127.0.0.1. A query given in the
//! address runs, its rows and token appear, and the replay link shows the same
//! rows, checked against the token's record.

use std::process::{Command, Stdio};

use tempfile::TempDir;

mod serve;
use serve::Server;

/// The page's DOM after its script has run (chromium's virtual time lets the
/// fetches finish before the DOM is printed).
fn dom(url: &str, profile: &std::path::Path) -> Option<String> {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    assert!(out.status.success(), "chromium failed on {url}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn between<'a>(doc: &'a str, start: &str, end: &str) -> &'a str {
    let at = doc
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {doc}"))
        + start.len();
    &doc[at..at + doc[at..].find(end).unwrap()]
}

#[test]
fn a_query_shows_rows_a_token_and_a_replay_link_that_repeats_it() {
    let profile = TempDir::new().unwrap();
    let s = Server::start(&[]);
    let query = "SELECT TOP 3 diaObjectId, ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId";
    let url = format!(
        "{}/?query={}",
        s.base(),
        url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    );
    let Some(page) = dom(&url, profile.path()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let table = between(&page, "<table id=\"result\">", "</table>");
    assert_eq!(
        table.matches("<tr>").count(),
        4,
        "a header and 3 rows: {table}"
    );
    assert!(table.contains("<td>1000000006</td>"), "{table}");
    assert!(between(&page, "id=\"status\"", "</span>").contains("3 rows"));
    assert!(
        page.contains("3 positions (ra, dec)"),
        "the sky plot drew them"
    );
    let token = between(&page, "<span id=\"token\">", "</span>");
    assert_eq!(token.len(), 20, "{token}");
    let replay = between(&page, "id=\"replay\" href=\"", "\"");
    assert_eq!(replay, format!("/?replay={token}"));

    // The tables are browsable, with their columns and units.
    assert!(page.contains("<summary title="), "{page}");
    assert!(page.contains(">ppdb.DiaObject</summary>"));
    assert!(page.contains("ra<span class=\"unit\"> [deg]</span>"));

    // Following the replay link shows the same rows and what they were checked against.
    let again = dom(&format!("{}{replay}", s.base()), profile.path()).unwrap();
    assert_eq!(between(&again, "<table id=\"result\">", "</table>"), table);
    let note = between(&again, "<span id=\"snapshot\">", "</span>");
    assert!(
        note.contains("snapshot 12") && note.contains("checked against checksum"),
        "{note}"
    );
    let pinned = between(&again, "<code id=\"pinned\"", "</code>");
    assert!(
        pinned.contains("FOR SYSTEM_TIME AS OF 12"),
        "the pinned ADQL is shown: {pinned}"
    );
}
