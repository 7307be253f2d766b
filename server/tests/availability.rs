//! What a caller can do to the service rather than to the data, against
//! `ppdb serve` on 127.0.0.1: connections that trickle, requests that race,
//! results that fail half way, arithmetic that overflows, maintenance under a
//! live server; and the trace each request leaves.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod common;
use common::serve::Server;

use common::ppdb as support;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("ppdb-tests")
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn csv(
    tap: &str,
    query: &str,
    extra: &[(&str, &str)],
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut params = vec![("QUERY", query), ("RESPONSEFORMAT", "csv")];
    params.extend_from_slice(extra);
    let r = client()
        .post(format!("{tap}/sync"))
        .form(&params)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

fn address(tap: &str) -> String {
    tap.trim_start_matches("http://")
        .trim_end_matches("/tap")
        .to_string()
}

/// Whether the server has closed `stream` (a read gives end of file or a reset).
fn closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or 400 the server sent as it closed: read on to the end.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

/// Connections that send their request head a byte at a time are closed at
/// the read timeout, and the service answers everyone else meanwhile
/// (300 such connections were all held open, for ever).
#[tokio::test(flavor = "multi_thread")]
async fn connections_that_trickle_are_closed_at_the_read_timeout() {
    let s = Server::start(&["--read-timeout", "2", "--connections-per-address", "1000"]);
    let at = address(&s.tap);
    let mut trickling: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut c = TcpStream::connect(&at).unwrap();
            c.write_all(b"GET /tap/availability HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    // A byte now and then keeps no connection alive past the timeout.
    while started.elapsed() < Duration::from_secs(4) {
        for c in &mut trickling {
            let _ = c.write_all(b"X");
        }
        let (status, _, _) = tokio::time::timeout(
            Duration::from_secs(5),
            csv(&s.tap, "SELECT COUNT(*) AS n FROM ppdb.SSObject", &[]),
        )
        .await
        .expect("the service answers while connections trickle");
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let open = trickling
        .iter_mut()
        .map(closed)
        .filter(|shut| !shut)
        .count();
    assert_eq!(open, 0, "connections still open after the read timeout");
}

/// One address may hold only so many connections; the next is closed at once.
#[tokio::test(flavor = "multi_thread")]
async fn one_address_holds_only_so_many_connections() {
    let s = Server::start(&["--connections-per-address", "8"]);
    let at = address(&s.tap);
    let mut held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&at).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ninth = TcpStream::connect(&at).unwrap();
    assert!(closed(&mut ninth), "the ninth connection was kept");
    assert!(!closed(&mut held[0]), "the first eight stay open");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, _) = csv(&s.tap, "SELECT COUNT(*) AS n FROM ppdb.SSObject", &[]).await;
    assert_eq!(status, 200, "served again once the others closed");
}

/// The server holds at most --max-connections in all: past it a new
/// connection waits to be accepted until an idle one reaches the read
/// timeout, then is served (many addresses trickling bytes ran the process
/// out of file descriptors).
#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_total_wait_for_one_to_close() {
    let s = Server::start(&["--max-connections", "4", "--read-timeout", "2"]);
    let at = address(&s.tap);
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&at).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (status, body, _) = tokio::time::timeout(
        Duration::from_secs(20),
        csv(&s.tap, "SELECT COUNT(*) AS n FROM ppdb.SSObject", &[]),
    )
    .await
    .expect("served once an idle connection timed out");
    assert_eq!((status, body.as_str()), (200, "n\n15\n"));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited: {:?}",
        started.elapsed()
    );
    drop(idle);
}

/// A body that stalls is refused at the read timeout with a message.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_stalls_is_refused_at_the_read_timeout() {
    let s = Server::start(&["--read-timeout", "1"]);
    let mut c = TcpStream::connect(address(&s.tap)).unwrap();
    c.write_all(
        b"POST /tap/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100\r\n\r\nQUERY=SEL",
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "held {:?}",
        started.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");
}

/// A select list of a thousand aliases of one column, under MAXREC (which
/// orders by every column), plans in well under the deadline and leaves the
/// service answering meanwhile (it took a minute, on the async workers, and
/// two such requests stopped even /tap/availability); one more column is
/// refused with its position.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_column_select_plans_quickly_and_one_more_is_refused() {
    let s = Server::start(&["--max-duration", "30"]);
    let wide = |n: usize| {
        let cols: Vec<String> = (0..n).map(|i| format!("ra AS c{i}")).collect();
        format!("SELECT {} FROM ppdb.DiaObject", cols.join(", "))
    };
    let thousand = wide(1000);
    let nested = format!("SELECT * FROM ({thousand}) AS t");
    let started = Instant::now();
    let (a, b, availability) = tokio::join!(
        csv(&s.tap, &thousand, &[("MAXREC", "10")]),
        csv(&s.tap, &nested, &[("MAXREC", "10")]),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let asked = Instant::now();
            let r = client()
                .get(format!("{}/availability", s.tap))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), asked.elapsed())
        }
    );
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    assert_eq!(a.1.lines().count(), 11, "a header and ten rows");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(availability.0, 200);
    assert!(
        availability.1 < Duration::from_secs(5),
        "{:?}",
        availability.1
    );
    let (status, body, _) = csv(&s.tap, &wide(1001), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than 1000 columns"), "{body}");
    assert!(body.contains("line 1, column"), "{body}");
}

/// One caller cannot take every place: past its share its queries are
/// refused, and another caller's query is queued and answered (twelve
/// requests from one address made every other caller "busy").
#[tokio::test(flavor = "multi_thread")]
async fn one_caller_cannot_take_every_place() {
    let s = Server::start(&[
        "--max-concurrent",
        "1",
        "--queue",
        "4",
        "--max-duration",
        "4",
    ]);
    const SLOW: &str =
        "SELECT COUNT(*) AS n FROM ppdb.DiaSource AS a, ppdb.DiaSource AS b, ppdb.DiaSource AS c";
    // Its share: the one slot and half the queue.
    let hog = (0..6).map(|_| async {
        let r = client()
            .post(format!("{}/sync", s.tap))
            .form(&[("QUERY", SLOW), ("RESPONSEFORMAT", "csv")])
            .send()
            .await
            .unwrap();
        // Those admitted reach the deadline: their transfer may break.
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    });
    let other = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .unwrap()
            .post(format!("{}/sync", s.tap))
            .form(&[
                ("QUERY", "SELECT COUNT(*) AS n FROM ppdb.SSObject"),
                ("RESPONSEFORMAT", "csv"),
            ])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (hogged, other) = tokio::join!(futures::future::join_all(hog), other);
    let refused: Vec<_> = hogged
        .iter()
        .filter(|(status, body)| *status == 503 && body.contains("the most one caller may have"))
        .collect();
    assert_eq!(
        refused.len(),
        3,
        "{:?}",
        hogged.iter().map(|h| h.0).collect::<Vec<_>>()
    );
    assert_eq!(other, (200, "n\n15\n".to_string()));
}

/// A caller creates at most 200 jobs an hour: the next is refused with 429
/// and kept nowhere (500 jobs of 4 MiB filled 1.1 GB in a minute).
#[tokio::test(flavor = "multi_thread")]
async fn a_caller_creates_only_so_many_jobs_an_hour() {
    let s = Server::start(&[]);
    for i in 0..200 {
        let r = client()
            .post(format!("{}/async", s.tap))
            .form(&[("QUERY", "SELECT TOP 1 ra FROM ppdb.DiaObject")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "job {i}");
    }
    let r = client()
        .post(format!("{}/async", s.tap))
        .form(&[("QUERY", "SELECT TOP 1 ra FROM ppdb.DiaObject")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("200 jobs in the last hour")
    );
}

/// However many requests ask at once, a job runs once: the CPU it takes is
/// that of one run (concurrent `PHASE=RUN` used to run it again for each).
#[tokio::test(flavor = "multi_thread")]
async fn a_job_run_by_many_requests_at_once_runs_once() {
    let s = Server::start(&[]);
    const HEAVY: &str = "SELECT COUNT(*) AS n FROM ppdb.DiaSource AS a, ppdb.DiaSource AS b \
                         WHERE a.psfFlux * b.psfFlux > 0";
    let create = || async {
        let r = client()
            .post(format!("{}/async", s.tap))
            .form(&[("QUERY", HEAVY), ("RESPONSEFORMAT", "csv")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303);
        r.headers()["location"].to_str().unwrap().to_string()
    };
    let finish = |job: String| async move {
        for _ in 0..600 {
            let phase = client().get(format!("{job}/phase")).send().await.unwrap();
            let phase = phase.text().await.unwrap();
            if phase.trim() == "COMPLETED" {
                return;
            }
            assert!(!phase.contains("ERROR"), "{phase}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{job} did not complete");
    };
    let run = |job: String, times: usize| async move {
        let posts = (0..times).map(|_| {
            let job = job.clone();
            async move {
                client()
                    .post(format!("{job}/phase"))
                    .form(&[("PHASE", "RUN")])
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        });
        for status in futures::future::join_all(posts).await {
            assert_eq!(status, 303);
        }
    };
    // One run, for its cost.
    let job = create().await;
    let before = s.cpu_seconds();
    run(job.clone(), 1).await;
    finish(job).await;
    let once = s.cpu_seconds() - before;
    let job = create().await;
    let before = s.cpu_seconds();
    run(job.clone(), 12).await;
    finish(job).await;
    let raced = s.cpu_seconds() - before;
    assert!(
        raced < 3.0 * once + 0.5,
        "twelve RUNs at once took {raced:.2} CPU s; one run takes {once:.2}"
    );
}

/// A result cut short after it started streaming is not passed off as
/// whole: a CSV (which has no place to say so) ends in a broken transfer the
/// client sees; it used to end cleanly, a table that looked complete. Here
/// the reader is too slow for the deadline: the service abandons the result.
#[tokio::test(flavor = "multi_thread")]
async fn a_result_cut_short_once_streaming_is_not_passed_off_as_whole() {
    let s = Server::start(&["--max-duration", "8"]);
    // About 200 MB of CSV: far more than the buffers between.
    let big =
        "SELECT a.*, b.ssObjectId AS s FROM ppdb.DiaSource AS a CROSS JOIN ppdb.SSObject AS b";
    let mut r = client()
        .post(format!("{}/sync", s.tap))
        .form(&[
            ("QUERY", big),
            ("RESPONSEFORMAT", "csv"),
            ("MAXREC", "100000"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("x-query-status").is_none(), "it streamed");
    // On a loaded machine the query may reach its deadline before its first
    // rows: that too must end in a broken transfer.
    let mut ended = r.chunk().await.map(|_| ());
    if ended.is_ok() {
        tokio::time::sleep(Duration::from_secs(10)).await;
        loop {
            match r.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => {
                    ended = Err(e);
                    break;
                }
            }
        }
    }
    assert!(ended.is_err(), "a cut CSV was delivered as complete");
}

/// Integer arithmetic that overflows is an error (it wrapped around), and the
/// error names no value.
#[tokio::test(flavor = "multi_thread")]
async fn integer_overflow_is_an_error() {
    let s = Server::start(&[]);
    for q in [
        "SELECT 9223372036854775807 + 1 AS x FROM ppdb.SSObject",
        "SELECT TOP 1 diaObjectId * diaObjectId * 10 AS x FROM ppdb.DiaObject",
        "SELECT TOP 1 -9223372036854775807 - diaObjectId AS x FROM ppdb.DiaObject",
        "SELECT SUM(diaObjectId * 1000000000) AS x FROM ppdb.DiaObject",
    ] {
        let (status, body, _) = csv(&s.tap, q, &[]).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body.contains("integer overflow"), "{q}: {body}");
    }
    let (status, body, _) = csv(
        &s.tap,
        "SELECT TOP 1 diaObjectId + 1 - 1 AS same, diaObjectId FROM ppdb.DiaObject",
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let row: Vec<&str> = body.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[0], row[1]);
}

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

/// Every request leaves one structured line: who, from where, what, how it
/// ended, its token and rows; privileged reads name their user.
#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_in_the_access_log() {
    let secret = "s3cret-for-the-access-log-test";
    let users = format!("alice={secret}");
    let s = Server::start_with(&[], &[("PPDB_TOKENS", users.as_str())]);
    let query = "SELECT TOP 2 diaObjectId FROM ppdb.DiaObject ORDER BY diaObjectId";
    let (_, _, anonymous) = csv(&s.tap, query, &[]).await;
    let r = client()
        .post(format!("{}/sync", s.tap))
        .bearer_auth(secret)
        .form(&[("QUERY", query), ("RESPONSEFORMAT", "csv")])
        .send()
        .await
        .unwrap();
    let privileged = r.headers().clone();
    let _ = r.text().await;
    let _ = client()
        .get(format!("{}/sync", s.tap))
        .bearer_auth("not-a-known-token-at-all")
        .send()
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.access_log();
    let sync: Vec<_> = log.iter().filter(|l| l["path"] == "/tap/sync").collect();
    assert_eq!(sync.len(), 3, "{log:?}");
    assert_eq!(sync[0]["user"], serde_json::Value::Null);
    assert_eq!(sync[0]["status"], 200);
    assert_eq!(sync[0]["rows"], 2);
    assert_eq!(sync[0]["peer"], "127.0.0.1");
    assert_eq!(sync[0]["query_status"], "OK");
    assert_eq!(sync[0]["complete"], true);
    assert!(sync[0]["bytes"].as_u64().unwrap() > 0, "{:?}", sync[0]);
    assert_eq!(sync[0]["agent"], "ppdb-tests");
    assert_eq!(
        sync[0]["token"],
        anonymous["x-query-token"].to_str().unwrap()
    );
    assert_eq!(sync[1]["user"], "alice");
    assert_eq!(sync[1]["privileged"], true);
    assert_eq!(
        sync[1]["token"],
        privileged["x-query-token"].to_str().unwrap()
    );
    assert_eq!(sync[2]["status"], 401);
    assert!(!format!("{log:?}").contains(secret), "no secret in the log");
}

fn ppdb(args: &[&str]) -> String {
    support::ok(args)
}

fn age(dir: &Path) {
    let status = std::process::Command::new("find")
        .arg(dir)
        .args([
            "-name",
            "*.parquet",
            "-exec",
            "touch",
            "-d",
            "2 days ago",
            "{}",
            "+",
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Compaction and vacuum under a live server: queries at the latest snapshot
/// and in the past, and replays the server never cached, read the same rows
/// afterwards (the server's file lists named deleted files until a restart);
/// and files a compaction replaced are kept for the grace after it, however
/// old they are.
#[tokio::test(flavor = "multi_thread")]
async fn compact_and_vacuum_under_a_live_server_change_no_answer() {
    let dir = TempDir::new().unwrap();
    let chunks = dir.path().join("chunks");
    let chunks = chunks.to_str().unwrap();
    ppdb(&[
        "sample",
        "--out",
        chunks,
        "--objects",
        "600",
        "--nights",
        "2",
        "--visits-per-night",
        "4",
        "--visits-per-chunk",
        "2",
    ]);
    let cat = dir.path().join("cat");
    let cat = cat.to_str().unwrap();
    ppdb(&["ingest", "--catalog", cat, chunks]);
    let s = Server::start(&["--catalog", cat, "--embargo-hours", "0"]);
    let queries = [
        (
            "SELECT COUNT(*) AS n, SUM(psfFlux) AS f FROM ppdb.DiaSource",
            None,
        ),
        (
            "SELECT COUNT(*) AS n, SUM(psfFlux) AS f FROM ppdb.DiaSource",
            Some("2"),
        ),
        (
            "SELECT diaObjectId, ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId",
            None,
        ),
    ];
    let mut before = Vec::new();
    for (q, as_of) in queries {
        let extra: Vec<(&str, &str)> = as_of.map(|k| ("AS_OF", k)).into_iter().collect();
        let (status, body, _) = csv(&s.tap, q, &extra).await;
        assert_eq!(status, 200, "{body}");
        before.push(body);
    }
    // A token the server never saw, so its replay reads files.
    let out = support::command()
        .args(["query", "--catalog", cat, "--format", "csv"])
        .arg("SELECT diaSourceId, psfFlux FROM ppdb.DiaSource ORDER BY diaSourceId")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let token = stderr
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token")
        .to_string();
    age(Path::new(cat));
    let compacted = ppdb(&["compact", "--catalog", cat]);
    assert!(!compacted.contains(" 0 files replaced"), "{compacted}");
    let kept = ppdb(&["vacuum", "--catalog", cat]);
    assert!(
        kept.starts_with("deleted 0 "),
        "replaced files went at once: {kept}"
    );
    let gone = ppdb(&["vacuum", "--catalog", cat, "--grace-seconds", "0"]);
    assert!(!gone.starts_with("deleted 0 "), "{gone}");
    for ((q, as_of), expected) in queries.iter().zip(&before) {
        let extra: Vec<(&str, &str)> = as_of.map(|k| ("AS_OF", k)).into_iter().collect();
        let (status, body, _) = csv(&s.tap, q, &extra).await;
        assert_eq!((status, &body), (200, expected), "{q} AS_OF {as_of:?}");
    }
    let r = client()
        .get(format!("{}/replay/{token}", s.tap))
        .query(&[("RESPONSEFORMAT", "csv")])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, String::from_utf8_lossy(&out.stdout));
}

const CROSS_JOIN: &str = "SELECT COUNT(*) FROM ppdb.DiaForcedSource a, ppdb.DiaForcedSource b, \
                          ppdb.DiaSource c WHERE a.psfFlux + b.psfFlux > c.psfFlux";

/// Bytes of the files under `dir`, at any depth.
fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The temporary files of spilling joins share one disk budget: past it the
/// query fails saying so, and its files are gone (three anonymous cross joins
/// wrote 13 GB in seconds, unbounded, and a killed server left them behind).
#[tokio::test(flavor = "multi_thread")]
async fn spilled_files_stay_within_the_disk_budget_and_are_removed() {
    let spill = TempDir::new().unwrap();
    let dir = spill.path().to_str().unwrap();
    let s = Server::start(&["--spill-disk-mb", "64", "--spill-dir", dir]);
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
        .form(&[("QUERY", CROSS_JOIN), ("RESPONSEFORMAT", "votable")])
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
    assert!(most > 0, "the join spilled");
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
    let mine = spill
        .path()
        .join("ppdb-spill")
        .join(first.pid().to_string());
    assert!(mine.exists(), "{mine:?}");
    let _second = Server::start(&["--spill-dir", dir]);
    assert!(mine.exists(), "a running server's folder stays");
}

/// A client that goes away stops its query: a cross join that sends nothing
/// until its end no longer holds its slot to the deadline (eight such
/// requests, abandoned after two seconds, kept every other caller waiting
/// 90 s).
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
}

/// The most memory the server process has held, in bytes.
fn peak_memory(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
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
