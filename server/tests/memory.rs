//! Batches without columns are counted against a query's memory: `COUNT(*)`
//! over a cross join of 40 copies of TAP_SCHEMA.schemas collected billions of
//! them, each weighing nothing by Arrow's measure, and the server grew to
//! 23 GB past every memory limit.

mod common;
use common::serve::Server;

/// The most memory the server process has held, in bytes.
fn peak_memory(s: &Server) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", s.pid()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap()
        * 1024
}

async fn count(tap: &str, query: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{tap}/sync"))
        .form(&[("QUERY", query), ("RESPONSEFORMAT", "csv")])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cross_join_counted_without_columns_stays_within_the_query_s_memory() {
    let s = Server::start(&["--query-memory-mb", "64"]);
    let tables: Vec<String> = (0..12)
        .map(|i| format!("TAP_SCHEMA.columns AS s{i}"))
        .collect();
    let (status, body) = count(
        &s.tap,
        &format!("SELECT COUNT(*) FROM {}", tables.join(", ")),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("than one query may use"), "{body}");
    assert!(peak_memory(&s) < 1 << 30, "peak {} bytes", peak_memory(&s));
    // Counting without columns still works where it fits.
    let (status, body) = count(
        &s.tap,
        "SELECT COUNT(*) AS n FROM TAP_SCHEMA.schemas AS a, TAP_SCHEMA.tables AS b",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = count(&s.tap, "SELECT COUNT(*) AS n FROM ppdb.DiaSource").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.lines().nth(1).unwrap().parse::<u64>().unwrap() > 0,
        "{body}"
    );
}
