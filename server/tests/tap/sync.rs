//! Synchronous queries: tokens, parameters, errors, snapshots, MAXREC, what errors show.

use super::*;

#[tokio::test]
async fn a_sync_query_carries_its_token_and_a_replay_descriptor() {
    let s = Server::start(&[]);
    let (status, ct, body) = get(
        &format!("{}/sync", s.tap),
        &[("REQUEST", "doQuery"), ("LANG", "ADQL"), ("QUERY", TOP3)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/x-votable+xml"), "{ct}");
    assert!(
        body.contains("<INFO name=\"QUERY_STATUS\" value=\"OK\"/>"),
        "{body}"
    );
    // BINARY2 unless TABLEDATA is asked for.
    assert!(
        body.contains("<BINARY2><STREAM encoding=\"base64\">"),
        "{body}"
    );
    assert!(
        body.contains("<FIELD name=\"diaObjectId\" datatype=\"long\""),
        "{body}"
    );
    let token = attr(&body, "name=\"query_token\"", "value");
    let pinned = attr(&body, "name=\"pinned_adql\"", "value");
    assert!(pinned.contains("FOR SYSTEM_TIME AS OF 12"), "{pinned}");
    assert!(body.contains("<RESOURCE type=\"meta\" utype=\"adhoc:service\""));
    let url = attr(&body, "name=\"accessURL\"", "value");
    assert_eq!(url, format!("{}/replay/{token}", s.tap));

    // Following the descriptor gives the same document, and the same rows in any format.
    let (status, _, again) = get(&url, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        without_request(&again),
        without_request(&body),
        "the same result, asked for another way"
    );
    assert!(again.contains(&format!("<INFO name=\"request\" value=\"{url}\"/>")));
    let (_, ct, td) = get(&url, &[("RESPONSEFORMAT", "votable/td")]).await;
    assert!(ct.contains("serialization=TABLEDATA"), "{ct}");
    assert_eq!(rows(&td).len(), 3, "{td}");
    let (_, ct, csv) = get(&url, &[("RESPONSEFORMAT", "csv")]).await;
    assert!(ct.starts_with("text/csv"), "{ct}");
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("diaObjectId,ra,dec\n"), "{csv}");
    let (status, _, table) = get(&url, &[("RESPONSEFORMAT", "table")]).await;
    assert_eq!(status, 400, "{table}");
    assert!(table.contains("not offered over TAP"), "{table}");
}

#[tokio::test]
async fn post_parameters_ignore_case_and_maxrec_overflows() {
    let s = Server::start(&[]);
    let r = reqwest::Client::new()
        .post(format!("{}/sync", s.tap))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("lang", "ADQL-2.1")
                .append_pair("query", "SELECT diaSourceId FROM ppdb.DiaSource")
                .append_pair("MaxRec", "5")
                .append_pair(
                    "responseformat",
                    "application/x-votable+xml;serialization=TABLEDATA",
                )
                .append_pair("unknown", "ignored")
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(rows(&body).len(), 5, "{body}");
    // OVERFLOW comes after the table.
    let table_end = body.find("</TABLE>").unwrap();
    let overflow = body
        .find("<INFO name=\"QUERY_STATUS\" value=\"OVERFLOW\"/>")
        .expect("an OVERFLOW status");
    assert!(overflow > table_end);
}

#[tokio::test]
async fn errors_come_back_as_error_votables_with_a_position() {
    let s = Server::start(&[]);
    let sync = format!("{}/sync", s.tap);
    for (params, want) in [
        (
            vec![
                ("LANG", "ADQL"),
                ("QUERY", "SELECT raa FROM ppdb.DiaObject"),
            ],
            "line 1, column 8",
        ),
        (vec![("LANG", "ADQL")], "QUERY is missing"),
        (
            vec![("LANG", "SQL"), ("QUERY", TOP3)],
            "LANG=SQL is not supported",
        ),
        (
            vec![("LANG", "ADQLX"), ("QUERY", TOP3)],
            "LANG=ADQLX is not supported",
        ),
        (
            vec![("QUERY", "DROP TABLE ppdb.DiaObject")],
            "ADQL accepts a single SELECT",
        ),
        (
            vec![("QUERY", TOP3), ("RESPONSEFORMAT", "xlsx")],
            "unknown format 'xlsx': use votable (the default), votable/td, csv",
        ),
        // The command line's aligned table holds every row in memory before
        // its first line: not over HTTP, where anyone could ask for millions.
        (
            vec![("QUERY", TOP3), ("RESPONSEFORMAT", "table")],
            "not offered over TAP",
        ),
        (
            vec![("QUERY", TOP3), ("FORMAT", "text")],
            "not offered over TAP",
        ),
    ] {
        let (status, ct, body) = get(&sync, &params).await;
        // TAP 1.1 §3.3: an error document with an error status (clients such as
        // astroquery read no message out of a 200).
        assert_eq!(status, 400, "{params:?}");
        assert!(ct.starts_with("application/x-votable+xml"), "{ct}");
        assert!(
            body.contains("<INFO name=\"QUERY_STATUS\" value=\"ERROR\">"),
            "{params:?}: {body}"
        );
        assert!(body.contains(want), "{params:?}: wanted {want:?} in {body}");
    }
    let (status, _, body) = get(&format!("{}/replay/aaaaaaaaaaaaaaaaaaaa", s.tap), &[]).await;
    assert_eq!(status, 404);
    assert!(body.contains("unknown token"), "{body}");
}

#[tokio::test]
async fn a_request_parameter_pins_a_snapshot() {
    let s = Server::start(&[]);
    let (_, _, body) = get(
        &format!("{}/sync", s.tap),
        &[
            ("QUERY", "SELECT COUNT(*) AS n FROM ppdb.DiaSource"),
            ("AS_OF", "1"),
            ("RESPONSEFORMAT", "csv"),
        ],
    )
    .await;
    assert_eq!(body, "n\n761\n");
}

#[tokio::test]
async fn a_full_queue_answers_busy_and_frees_its_place() {
    let s = Server::start(&[
        "--max-concurrent",
        "1",
        "--queue",
        "0",
        "--max-duration",
        "3",
    ]);
    let sync = format!("{}/sync", s.tap);
    let slow = {
        let sync = sync.clone();
        tokio::spawn(async move { get(&sync, &[("QUERY", SLOW)]).await })
    };
    // The slow query holds the only turn until its 3 s run out.
    let mut busy = None;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let r = client()
            .get(&sync)
            .query(&[("QUERY", TOP3)])
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 503 {
            busy = Some((
                r.headers().get("retry-after").is_some(),
                r.text().await.unwrap(),
            ));
            break;
        }
    }
    let (retry_after, body) = busy.expect("a second query while the first runs is refused");
    assert!(retry_after, "503 says when to come back");
    assert!(body.contains("busy"), "{body}");
    let (_, _, first) = slow.await.unwrap();
    assert!(first.contains("execution duration"), "{first}");
    // Its place is free again once its execution has stopped (the step its
    // join was in ends first; the slot is held until then).
    let mut after = String::new();
    for _ in 0..100 {
        after = get(&sync, &[("QUERY", TOP3), ("RESPONSEFORMAT", "csv")])
            .await
            .2;
        if !after.contains("busy") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(after.lines().count(), 4, "{after}");
}

#[tokio::test]
async fn errors_and_records_do_not_tell_a_caller_where_the_data_lives() {
    let s = Server::start(&[]);
    let (status, _, body) = get(&format!("{}/replay/aaaaaaaaaaaaaaaaaaaa", s.tap), &[]).await;
    assert_eq!(status, 404);
    assert!(body.contains("unknown token"), "{body}");
    // No state-store path, no command-line advice.
    for secret in ["/tmp", "--state", "_state", "file://", "data/sample"] {
        assert!(!body.contains(secret), "{secret} in {body}");
    }
    let (status, _, body) = get(
        &format!("{}/sync", s.tap),
        &[("LANG", "ADQL"), ("QUERY", TOP3), ("RESPONSEFORMAT", "csv")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = {
        let r = reqwest::Client::new()
            .get(format!("{}/sync", s.tap))
            .query(&[("LANG", "ADQL"), ("QUERY", TOP3)])
            .send()
            .await
            .unwrap();
        let token = r.headers()["x-query-token"].to_str().unwrap().to_string();
        // The record is written once the last row has gone out.
        r.text().await.unwrap();
        token
    };
    let (status, _, record) = get(&format!("{}/replay/{token}/record", s.tap), &[]).await;
    assert_eq!(status, 200, "{record}");
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert!(record.get("catalog_url").is_none(), "{record}");
    assert_eq!(record["token"], token.as_str());
    assert!(!record.to_string().contains("data/sample"), "{record}");
}

#[tokio::test]
async fn a_token_names_the_rows_not_their_encoding() {
    let s = Server::start(&[]);
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for format in ["csv", "votable", "json", "votable/td"] {
        let r = client
            .get(format!("{}/sync", s.tap))
            .query(&[
                ("LANG", "ADQL"),
                ("QUERY", TOP3),
                ("RESPONSEFORMAT", format),
            ])
            .send()
            .await
            .unwrap();
        tokens.push(r.headers()["x-query-token"].to_str().unwrap().to_string());
        r.text().await.unwrap();
    }
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    // Without RESPONSEFORMAT a replay answers in the service's default, VOTable.
    let (status, ct, body) = get(&format!("{}/replay/{}", s.tap, tokens[0]), &[]).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/x-votable+xml"), "{ct}");
    assert!(body.contains("<BINARY2>"), "{body}");
}

#[tokio::test]
async fn csv_and_json_say_when_maxrec_cut_the_result() {
    let s = Server::start(&[]);
    let client = reqwest::Client::new();
    let ask = |format: &'static str, maxrec: &'static str| {
        client
            .get(format!("{}/sync", s.tap))
            .query(&[
                ("LANG", "ADQL"),
                ("QUERY", "SELECT diaObjectId FROM ppdb.DiaObject"),
                ("RESPONSEFORMAT", format),
                ("MAXREC", maxrec),
            ])
            .send()
    };
    let r = ask("csv", "2").await.unwrap();
    assert_eq!(r.headers()["x-query-status"], "OVERFLOW");
    assert_eq!(r.headers()["x-query-rows"], "2");
    assert_eq!(r.text().await.unwrap().lines().count(), 3);
    let r = ask("tsv", "100000").await.unwrap();
    assert_eq!(r.headers()["x-query-status"], "OK");
    let json = |text: String| serde_json::from_str::<serde_json::Value>(&text).unwrap();
    let doc = json(ask("json", "2").await.unwrap().text().await.unwrap());
    assert_eq!(doc["status"], "OVERFLOW");
    assert_eq!(doc["data"].as_array().unwrap().len(), 2);
    let doc = json(ask("json", "100000").await.unwrap().text().await.unwrap());
    assert_eq!(doc["status"], "OK");
    // A cleared MAXREC box on a form sends `MAXREC=`: the default, not an error.
    let r = ask("csv", " ").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-query-status"], "OK");
}

#[tokio::test]
async fn an_expression_that_fails_on_a_row_is_a_refusal_that_shows_no_value() {
    let s = Server::start(&[]);
    let (status, _, body) = get(
        &format!("{}/sync", s.tap),
        &[
            ("LANG", "ADQL"),
            (
                "QUERY",
                "SELECT COUNT(*) FROM ppdb.DiaSource WHERE CAST(CAST(diaSourceId AS VARCHAR) AS SMALLINT) = 1",
            ),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("a CAST met a value it cannot convert"),
        "{body}"
    );
    assert!(!body.contains("500000"), "no id in {body}");
    assert!(!body.contains("storage"), "{body}");
}

/// A client that stops reading a large result holds its slot no longer than
/// the execution duration: the next query gets the slot after that.
#[tokio::test]
async fn a_reader_that_stops_reading_frees_its_slot_at_the_deadline() {
    // Twenty seconds, so that the stalled query's first rows (about 4 s of
    // cross join and sort in a debug build) go out before its deadline even
    // on a loaded machine: beside a busy helper they took past 10 s, and the
    // query answered 400.
    let s = Server::start(&["--max-concurrent", "1", "--max-duration", "20"]);
    let started = std::time::Instant::now();
    // About 200 MB of CSV: far more than the buffers and sockets between.
    let stalled = reqwest::Client::new()
        .get(format!("{}/sync", s.tap))
        .query(&[
            (
                "QUERY",
                "SELECT a.*, b.ssObjectId AS s FROM ppdb.DiaSource AS a CROSS JOIN ppdb.SSObject AS b",
            ),
            ("RESPONSEFORMAT", "csv"),
            ("MAXREC", "100000"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(stalled.status().as_u16(), 200);
    let (status, _, body) = tokio::time::timeout(
        std::time::Duration::from_secs(40),
        get(
            &format!("{}/sync", s.tap),
            &[
                ("QUERY", "SELECT COUNT(*) AS n FROM ppdb.SSObject"),
                ("RESPONSEFORMAT", "csv"),
            ],
        ),
    )
    .await
    .expect("the slot came free");
    assert_eq!((status, body.as_str()), (200, "n\n15\n"));
    // The stalled query's headers come with its first rows (after its sort,
    // seconds in); the slot is free at its deadline, 20 s from its start.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(19500),
        "it waited for the slot: {:?}",
        started.elapsed()
    );
    drop(stalled);
}

/// A client that reads a large result slowly has its connection closed soon
/// after the deadline: it kept the connection and about 10 MB of what was
/// already encoded for as long as it read (thirty held 425 MB for minutes).
#[tokio::test]
async fn a_reader_too_slow_for_the_deadline_is_cut_off_soon_after_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // As in the test above: the first rows go out well before the deadline.
    let s = Server::start(&["--max-duration", "20"]);
    let addr: std::net::SocketAddr = s.address().parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(addr).await.unwrap();
    let query = "QUERY=SELECT+a.*,+b.ssObjectId+AS+s+FROM+ppdb.DiaSource+AS+a+CROSS+JOIN+ppdb.SSObject+AS+b\
                 &RESPONSEFORMAT=csv&MAXREC=100000";
    let started = std::time::Instant::now();
    conn.write_all(sync_request(query).as_bytes())
        .await
        .unwrap();
    // About 20 KB a second: the ~12 MB encoded by the deadline would take ten minutes.
    let mut buf = [0u8; 1000];
    let mut read = 0usize;
    let cut = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        cut.is_ok(),
        "still reading after {:?} ({read} bytes)",
        started.elapsed()
    );
    assert!(read > 0, "nothing was sent");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "cut only after {:?}",
        started.elapsed()
    );
}

/// Every body is bounded before it is kept: a form of parameters larger than
/// 4 MiB is refused (a 100 MB form was read whole, and stored in a job).
#[tokio::test]
async fn parameters_larger_than_four_mebibytes_are_refused() {
    let s = Server::start(&[]);
    let junk = "x".repeat(5 << 20);
    for path in ["sync", "async"] {
        let r = post(
            &format!("{}/{path}", s.tap),
            &[
                ("QUERY", "SELECT 1 AS x FROM ppdb.SSObject"),
                ("junk", junk.as_str()),
            ],
        )
        .await;
        assert_eq!(r.status().as_u16(), 413, "{path}");
        assert!(r.text().await.unwrap().contains("larger than 4096 KiB"));
    }
}

/// DALI leaves a repeated parameter to the service: the first value counts,
/// the URL's before the body's.
#[tokio::test]
async fn a_repeated_parameter_takes_its_first_value() {
    let s = Server::start(&[]);
    let r = client()
        .post(format!("{}/sync?MAXREC=1", s.tap))
        .form(&[
            ("QUERY", "SELECT diaObjectId FROM ppdb.DiaObject"),
            ("RESPONSEFORMAT", "csv"),
            ("MAXREC", "3"),
            ("maxrec", "5"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap().lines().count(),
        2,
        "a header and one row"
    );
}

/// A query that fails before its first row, however long it ran, is answered
/// with an error status and its message, in every format: a CSV result that
/// failed after 2 s was a 200 with no body, which clients read as empty.
#[tokio::test]
async fn a_query_that_fails_late_before_any_row_is_an_error() {
    let s = Server::start(&["--max-duration", "3"]);
    let sync = format!("{}/sync", s.tap);
    let (status, _, body) = get(&sync, &[("QUERY", SLOW), ("RESPONSEFORMAT", "csv")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("execution duration of 3 s"), "{body}");
}
