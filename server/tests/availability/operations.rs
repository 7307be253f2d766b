//! The access log, and maintenance under a live server.

use super::*;

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
    sample(chunks, 4, 2);
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

/// A server on a catalog whose files have piled up (ingested without
/// maintenance) compacts it by itself, and every answer, now and in the
/// past, stays the same while and after it does.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_compacts_a_catalog_whose_files_pile_up() {
    let dir = TempDir::new().unwrap();
    let chunks = dir.path().join("chunks");
    let chunks = chunks.to_str().unwrap();
    sample(chunks, 10, 1);
    let cat = dir.path().join("cat");
    let cat = cat.to_str().unwrap();
    let said = ppdb(&["ingest", "--catalog", cat, "--no-maintenance", chunks]);
    assert!(!said.contains("maintenance"), "{said}");
    let entries = || {
        std::fs::read_dir(Path::new(cat).join("_log"))
            .unwrap()
            .count()
    };
    let committed = entries();
    let s = Server::start(&[
        "--catalog",
        cat,
        "--embargo-hours",
        "0",
        "--maintenance-seconds",
        "1",
    ]);
    let queries = [
        "SELECT COUNT(*) AS n, SUM(psfFlux) AS f FROM ppdb.DiaSource",
        "SELECT diaObjectId, ra, dec, nDiaSources FROM ppdb.DiaObject ORDER BY diaObjectId",
    ];
    let ask = async |q: &str, as_of: &str| {
        let (status, body, _) = csv(&s.tap, q, &[("AS_OF", as_of)]).await;
        assert_eq!(status, 200, "{body}");
        body
    };
    let mut before = Vec::new();
    for q in queries {
        for as_of in ["3", "20"] {
            before.push(ask(q, as_of).await);
        }
    }
    let started = std::time::Instant::now();
    while entries() == committed {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no compaction after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(Path::new(cat).join(format!("_log/{:020}.json", committed)))
        .unwrap();
    assert!(log.contains("\"compact\""), "{log}");
    let mut after = Vec::new();
    for q in queries {
        for as_of in ["3", "20"] {
            after.push(ask(q, as_of).await);
        }
    }
    assert_eq!(before, after);
    // Settled: the next checks find nothing to do.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(entries(), committed + 1);
}

/// Two nights of 600 objects, written as chunks of `per_chunk` of each night's `visits`.
/// SIGTERM: the query in progress is answered whole, the process exits 0,
/// and its spill folder goes with it (a stopped server left an empty one).
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_server_answers_the_query_in_progress_and_leaves_nothing() {
    let spill = TempDir::new().unwrap();
    let mut s = Server::start(&["--spill-dir", spill.path().to_str().unwrap()]);
    let folders = spill.path().join("ppdb-spill");
    let ours = |pid: u32| {
        std::fs::read_dir(&folders)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("{pid}-"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(ours(s.pid()), 1, "the engine's spill folder");
    let slow = "SELECT COUNT(*) AS n FROM ppdb.DiaForcedSource AS a \
                JOIN ppdb.DiaSource AS b ON a.psfFlux < b.psfFlux";
    let tap = s.tap.clone();
    let before = s.cpu_seconds();
    let answer = tokio::spawn(async move {
        let got = csv(&tap, slow, &[]).await;
        (got, Instant::now())
    });
    // Running once the server burns CPU on it.
    let start = Instant::now();
    while s.cpu_seconds() < before + 0.1 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let signalled = Instant::now();
    s.terminate();
    let ((status, body, _), answered) = answer.await.unwrap();
    assert!(
        answered > signalled,
        "the query ended before the signal: the test needs a slower one"
    );
    assert_eq!(status, 200, "{body}");
    let n: u64 = body
        .strip_prefix("n\n")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    assert!(n > 0);
    let exit = s
        .exited(Duration::from_secs(30))
        .expect("the server stopped");
    assert!(exit.success(), "{exit}");
    assert_eq!(ours(s.pid()), 0, "the spill folder is gone");
}

/// SIGTERM the moment the port takes connections, before the server has
/// answered anything: a clean stop too (it was killed outright, its spill
/// folder left behind, in each of six tries).
#[test]
fn a_server_stopped_as_soon_as_it_listens_stops_cleanly() {
    let home = TempDir::new().unwrap();
    let spill = home.path().join("spill");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ppdb"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--spill-dir")
        .arg(&spill)
        .args(["--access-log", "-"])
        .env_remove("PPDB_CATALOG")
        .env_remove("PPDB_STATE")
        .env("XDG_STATE_HOME", home.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "never listened");
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    let left: Vec<_> = std::fs::read_dir(spill.join("ppdb-spill"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// A second SIGTERM during the grace cuts the requests still in progress and
/// exits at once, as service managers expect.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_stops_at_once() {
    let mut s = Server::start(&["--stop-grace-seconds", "120"]);
    let tap = s.tap.clone();
    let before = s.cpu_seconds();
    let _cut = tokio::spawn(async move {
        client()
            .post(format!("{tap}/sync"))
            .form(&[("QUERY", MINUTES_LONG)])
            .send()
            .await
    });
    let start = Instant::now();
    while s.cpu_seconds() < before + 0.1 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.exited(Duration::ZERO).is_none(), "the grace had begun");
    s.terminate();
    let exit = s
        .exited(Duration::from_secs(10))
        .expect("stopped at the second signal");
    assert!(exit.success(), "{exit}");
}

/// SIGTERM with an async job running: the job reads ERROR, saying the server
/// stopped, from the next server on the same state store at once (not
/// EXECUTING until its duration has passed), and stderr counts it.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_server_ends_its_running_jobs_as_errors() {
    let state = TempDir::new().unwrap();
    let url = format!("file://{}", state.path().display());
    let args = ["--state", url.as_str(), "--max-duration", "600"];
    let mut s = Server::start(&args);
    let r = client()
        .post(format!("{}/async", s.tap))
        .form(&[
            ("LANG", "ADQL"),
            ("QUERY", MINUTES_LONG),
            ("RESPONSEFORMAT", "csv"),
            ("PHASE", "RUN"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let job = r.headers()["location"].to_str().unwrap().to_string();
    let id = job.rsplit('/').next().unwrap().to_string();
    let phase = |tap: String| text(format!("{tap}/async/{id}/phase"));
    let start = Instant::now();
    while phase(s.tap.clone()).await != "EXECUTING" && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(phase(s.tap.clone()).await, "EXECUTING");
    s.terminate();
    let exit = s
        .exited(Duration::from_secs(30))
        .expect("the server stopped");
    assert!(exit.success(), "{exit}");
    let next = Server::start(&args);
    assert_eq!(phase(next.tap.clone()).await, "ERROR");
    let error = text(format!("{}/async/{id}/error", next.tap)).await;
    assert!(
        error.contains("the server stopped before the job finished"),
        "{error}"
    );
}

fn sample(out: &str, visits: u32, per_chunk: u32) {
    let (visits, per_chunk) = (visits.to_string(), per_chunk.to_string());
    ppdb(&[
        "sample",
        "--out",
        out,
        "--objects",
        "600",
        "--nights",
        "2",
        "--visits-per-night",
        &visits,
        "--visits-per-chunk",
        &per_chunk,
    ]);
}
