//! Memory and spill disk: per query, for the service, and after a crash.

use super::*;

/// Text that doubles with each `||` is stopped before it is built: twenty
/// levels would hold a megabyte in every row of a batch (sixteen took the
/// server to 930 MB); the query fails with a message and the server's
/// memory stays where it was. Small concatenations work as before.
#[tokio::test(flavor = "multi_thread")]
async fn text_that_doubles_is_refused_before_it_fills_memory() {
    let s = Server::start(&[]);
    let mut ctes =
        vec!["t1 AS (SELECT diaSourceId, band || band AS s FROM ppdb.DiaSource)".to_string()];
    for i in 2..=20 {
        ctes.push(format!(
            "t{i} AS (SELECT diaSourceId, s || s AS s FROM t{})",
            i - 1
        ));
    }
    let q = format!(
        "WITH {} SELECT COUNT(*) AS n, MAX(s) AS m FROM t20",
        ctes.join(", ")
    );
    let (status, body, _) = csv(&s.tap, &q, &[]).await;
    assert_eq!(status, 400, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("longer than 64 KiB"), "{body}");
    let rss = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let kb: u64 = rss
        .split("VmRSS:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(kb < 600_000, "the server holds {kb} KB");
    let (status, body, _) = csv(
        &s.tap,
        "SELECT TOP 1 band || '-' || band AS b FROM ppdb.DiaSource WHERE band = 'r'",
        &[],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "b\nr-r\n"));
}

/// The temporary files of spilling queries share one disk budget: past it the
/// query fails saying so, and its files are gone (three anonymous cross joins
/// wrote 13 GB in seconds, unbounded, and a killed server left them behind).
/// Grouping a cross join spills whichever side the planner builds from.
#[tokio::test(flavor = "multi_thread")]
async fn spilled_files_stay_within_the_disk_budget_and_are_removed() {
    let spill = TempDir::new().unwrap();
    let dir = spill.path().to_str().unwrap();
    let s = Server::start(&[
        "--spill-disk-mb",
        "64",
        "--spill-dir",
        dir,
        "--query-memory-mb",
        "64",
    ]);
    let watch = spill.path().to_path_buf();
    let most = std::thread::spawn(move || {
        let mut most = 0;
        for _ in 0..400 {
            most = most.max(bytes_under(&watch));
            std::thread::sleep(Duration::from_millis(25));
        }
        most
    });
    // A VOTable says how the query ended whether it failed before its first
    // bytes went out (an error status) or after (its last INFO).
    let r = client()
        .post(format!("{}/sync", s.tap))
        .form(&[("QUERY", SPILLING_GROUPS), ("RESPONSEFORMAT", "votable")])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert!(status == 400 || status == 200, "{status}: {body}");
    assert!(body.contains("QUERY_STATUS\" value=\"ERROR"), "{body}");
    assert!(
        body.contains("more temporary disk than the service allows"),
        "{body}"
    );
    assert!(!body.contains("datafusion"), "{body}");
    let most = most.join().unwrap();
    assert!(most > 0, "the grouping spilled");
    assert!(
        most <= 64 << 20,
        "{most} bytes spilled past the 64 MiB budget"
    );
    assert_eq!(
        bytes_under(spill.path()),
        0,
        "a failed query leaves no file"
    );
    let (status, body, _) = csv(&s.tap, "SELECT COUNT(*) FROM ppdb.DiaSource", &[]).await;
    assert_eq!(status, 200, "{body}");
}

/// A grouping of far more groups than a query's memory holds (a sort would
/// be cut to MAXREC rows and never spill).
const SPILLING_GROUPS: &str = "SELECT COUNT(*) FROM (SELECT a.diaForcedSourceId AS i, \
                               b.diaForcedSourceId AS j, COUNT(*) AS n \
                               FROM ppdb.DiaForcedSource a, ppdb.DiaForcedSource b \
                               GROUP BY a.diaForcedSourceId, b.diaForcedSourceId) AS t";

/// Queries draw their memory from one budget as well as their own: a join
/// the service cannot hold beside what runs fails saying so, and the next
/// query runs (eight cross joins held 12 GB under per-query limits alone).
#[tokio::test(flavor = "multi_thread")]
async fn memory_past_the_service_budget_fails_the_query_not_the_service() {
    let s = Server::start(&["--memory-mb", "1"]);
    let join = "SELECT COUNT(*) FROM ppdb.DiaForcedSource a JOIN ppdb.DiaForcedSource b \
                ON a.diaForcedSourceId = b.diaForcedSourceId AND a.psfFlux = b.psfFlux \
                AND a.psfFluxErr = b.psfFluxErr";
    let (status, body, _) = csv(&s.tap, join, &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("the memory the service allows them together"),
        "{body}"
    );
    // How much the others hold would tell any caller how busy the service is.
    assert!(!body.contains("MiB"), "{body}");
    let (status, body, _) = csv(&s.tap, "SELECT TOP 2 diaObjectId FROM ppdb.DiaObject", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.lines().count(), 3, "{body}");
}

/// A query past its own memory is told what to change, not the pool's
/// bookkeeping ("Failed to allocate additional 2.9 MB for TopK[1]...").
#[tokio::test(flavor = "multi_thread")]
async fn a_query_past_its_own_memory_is_told_what_to_change() {
    let s = Server::start(&["--query-memory-mb", "4"]);
    let top = "SELECT TOP 20000 * FROM ppdb.DiaForcedSource ORDER BY psfFlux";
    let (status, body, _) = csv(&s.tap, top, &[("MAXREC", "20000")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("than one query may use"), "{body}");
    assert!(body.contains("MAXREC"), "{body}");
    assert!(!body.contains("Failed to allocate"), "{body}");
}

/// A server that was killed leaves its spilled files; the next one to start
/// removes them, and leaves those of a server still running.
#[test]
fn the_next_server_removes_what_a_killed_one_spilled() {
    let spill = TempDir::new().unwrap();
    let dir = spill.path().to_str().unwrap();
    let gone = spill.path().join("ppdb-spill").join("4194305");
    std::fs::create_dir_all(gone.join("datafusion-x")).unwrap();
    std::fs::write(gone.join("datafusion-x").join("f"), vec![0u8; 4096]).unwrap();
    let first = Server::start(&["--spill-dir", dir]);
    assert!(
        !gone.exists(),
        "the files of a process that is gone are removed"
    );
    // The folder of the server's one engine.
    let mine = spill
        .path()
        .join("ppdb-spill")
        .join(format!("{}-0", first.pid()));
    assert!(mine.exists(), "{mine:?}");
    let _second = Server::start(&["--spill-dir", dir]);
    assert!(mine.exists(), "a running server's folder stays");
}

/// A client that goes away stops its query: a cross join that sends nothing
/// until its end no longer holds its slot to the deadline (eight such
/// requests, abandoned after two seconds, kept every other caller waiting
/// 90 s); and the access log says it was abandoned.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_stops_its_query() {
    let s = Server::start(&["--max-concurrent", "1", "--max-duration", "120"]);
    let abandoned = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .post(format!("{}/sync", s.tap))
        .form(&[("QUERY", CROSS_JOIN), ("RESPONSEFORMAT", "csv")])
        .send()
        .await;
    assert!(
        abandoned.is_err(),
        "the cross join cannot end in two seconds"
    );
    let asked = Instant::now();
    let (status, body, _) = csv(&s.tap, "SELECT TOP 1 diaObjectId FROM ppdb.DiaObject", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "the next caller waited {:?} for the one slot",
        asked.elapsed()
    );
    // Nothing computes for the caller who left.
    let before = s.cpu_seconds();
    std::thread::sleep(Duration::from_secs(2));
    let spent = s.cpu_seconds() - before;
    assert!(
        spent < 0.5,
        "the server spent {spent} s of CPU in 2 s of quiet"
    );
    // It leaves its line in the access log all the same (none was written
    // for a request dropped before its response began).
    let log = s.access_log();
    let left: Vec<_> = log
        .iter()
        .filter(|l| l["path"] == "/tap/sync" && l["query_status"] == "ABANDONED")
        .collect();
    assert_eq!(left.len(), 1, "{log:?}");
    assert_eq!(left[0]["complete"], false);
    assert_eq!(left[0]["status"], serde_json::Value::Null);
    assert_eq!(left[0]["peer"], "127.0.0.1");
}

/// Text a query makes itself (a wide literal, copies of it) goes in batches
/// small enough for the memory it is given: batches are built whole before any
/// pool counts them, and eight copies of a 64 KiB literal in 8 192-row batches
/// took one query to 6.6 GB against a 128 MiB limit (5.3 GB for this one).
#[tokio::test(flavor = "multi_thread")]
async fn copies_of_a_wide_literal_stay_within_the_query_s_memory() {
    let s = Server::start(&["--memory-mb", "512", "--query-memory-mb", "128"]);
    let copies = [
        "UPPER(s)",
        "LOWER(s)",
        "UPPER(LOWER(s))",
        "LOWER(UPPER(s))",
        "UPPER(UPPER(s))",
        "LOWER(LOWER(s))",
        "UPPER(LOWER(UPPER(s)))",
        "LOWER(UPPER(LOWER(s)))",
    ];
    let columns: Vec<String> = copies
        .iter()
        .enumerate()
        .map(|(i, e)| format!("MAX({e}) AS c{i}"))
        .collect();
    let query = format!(
        "SELECT {} FROM (SELECT '{}' AS s FROM src.PromptSource) AS t",
        columns.join(", "),
        "x".repeat(64 << 10)
    );
    let (status, body, _) = csv(&s.tap, &query, &[]).await;
    assert_eq!(status, 200, "{}", &body[..body.len().min(500)]);
    assert_eq!(body.lines().count(), 2, "a header and one row");
    let peak = peak_memory(&s);
    assert!(peak < 1 << 30, "the server held {} MiB", peak >> 20);
}

/// Wide rows cost a query little (a column repeated a thousand times is one
/// array) but encode to hundreds of MB a batch: results go out in pieces of
/// about 1 MiB, each handed on before the next is encoded, so a client that
/// does not read holds a few of them, not whole batches (a hostile pass held
/// 4.9 GB with one such query against --query-memory-mb 256).
#[tokio::test(flavor = "multi_thread")]
async fn a_wide_result_its_client_does_not_read_holds_little_memory() {
    unread_wide_result("csv");
}

/// As above in Parquet, whose writer holds a row group (up to a million rows)
/// until it ends it: it ends one every 8 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn a_wide_parquet_result_holds_little_memory() {
    unread_wide_result("parquet");
}

fn unread_wide_result(format: &str) {
    let s = Server::start(&["--max-duration", "30"]);
    let idle = peak_memory(&s);
    let columns = vec!["s.ra"; 990].join(", ");
    let query = format!(
        "SELECT s.diaSourceId, {columns} FROM ppdb.DiaSource AS s CROSS JOIN ppdb.SSObject AS x"
    );
    let body = format!(
        "RESPONSEFORMAT={format}&MAXREC=10000000&QUERY={}",
        query.replace(' ', "+").replace(',', "%2C")
    );
    let mut c = TcpStream::connect(s.address()).unwrap();
    c.set_nodelay(true).unwrap();
    c.write_all(sync_request(&body).as_bytes()).unwrap();
    // Read the first bytes (the query has started), then stop reading.
    let mut first = [0u8; 4096];
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let n = c.read(&mut first).unwrap();
    let head = String::from_utf8_lossy(&first[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    std::thread::sleep(Duration::from_secs(8));
    let peak = peak_memory(&s);
    assert!(
        peak < idle + (256 << 20),
        "the server went from {} to {} MiB for one unread {format} result",
        idle >> 20,
        peak >> 20
    );
    drop(c);
}

/// A Parquet writer keeps a record of each column of each row group until the
/// file ends: a thousand-column result read at full speed grew the server by
/// as much as it sent (8.7 GB for 7.4 GB). Its footer is bounded; past it the
/// result fails, and the server stays small.
#[tokio::test(flavor = "multi_thread")]
async fn a_wide_parquet_result_read_at_full_speed_holds_little_memory() {
    let s = Server::start(&["--max-duration", "120"]);
    let idle = peak_memory(&s);
    let wide = format!("'{}'", "x".repeat(1000));
    let columns: Vec<String> = (0..900).map(|i| format!("x.s AS c{i}")).collect();
    let query = format!(
        "SELECT {} FROM (SELECT f.band || {wide} AS s FROM ppdb.DiaForcedSource AS f) AS x",
        columns.join(", ")
    );
    let r = client()
        .post(format!("{}/sync", s.tap))
        .form(&[
            ("QUERY", query.as_str()),
            ("RESPONSEFORMAT", "parquet"),
            ("MAXREC", "100000000"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut body = r.bytes_stream();
    let mut sent = 0usize;
    let mut cut = false;
    while let Some(piece) = futures::StreamExt::next(&mut body).await {
        match piece {
            Ok(b) => sent += b.len(),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    let peak = peak_memory(&s);
    assert!(
        peak < idle + (512 << 20),
        "the server went from {} to {} MiB sending {} MiB of Parquet",
        idle >> 20,
        peak >> 20,
        sent >> 20
    );
    assert!(cut, "the result ends short, not as a whole file");
    let log = s.access_log();
    let line = log
        .iter()
        .find(|l| l["path"] == "/tap/sync")
        .unwrap_or_else(|| panic!("{log:?}"));
    assert_eq!(line["query_status"], "ERROR", "{line}");
}
