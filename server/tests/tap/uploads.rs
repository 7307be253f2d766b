//! TAP uploads: inline, by URL, on replay, and what they may not be.

use super::*;

/// ADQL names ignore case: an upload spelled `RA`, `DEC` (as astropy writes
/// an astronomer's table) joins DiaObject's `ra`, `dec` as the lower-case one
/// does (every such join failed with `No field named o."RA"`).
#[tokio::test]
async fn an_upload_spelled_in_capitals_joins_the_catalog() {
    let s = Server::start(&[]);
    let capitals = TARGETS
        .replace("name=\"ra\"", "name=\"RA\"")
        .replace("name=\"dec\"", "name=\"DEC\"");
    for query in [
        CROSSMATCH.to_string(),
        CROSSMATCH.replace("u.ra, u.dec", "u.RA, u.\"DEC\""),
    ] {
        let (ct, body) = multipart(
            &[
                ("QUERY", &query),
                ("UPLOAD", "targets,param:t"),
                ("RESPONSEFORMAT", "csv"),
            ],
            &[("t", &capitals)],
        );
        let r = post_multipart(&format!("{}/sync", s.tap), ct, body).await;
        assert_eq!(r.status(), 200, "{query}");
        let csv = r.text().await.unwrap();
        assert_eq!(
            csv, "tid,diaObjectId\n1,1000000006\n2,1000000008\n",
            "{query}"
        );
    }
}

#[tokio::test]
async fn uploads_join_the_catalog_inline_by_url_and_on_replay() {
    // The URL upload below is this same service, on loopback.
    let s = Server::start(&["--allow-private-uploads"]);
    let (ct, body) = multipart(
        &[
            ("QUERY", CROSSMATCH),
            ("UPLOAD", "targets,param:t"),
            ("RESPONSEFORMAT", "csv"),
        ],
        &[("t", TARGETS)],
    );
    let r = post_multipart(&format!("{}/sync", s.tap), ct, body).await;
    let token = r.headers()["x-query-token"].to_str().unwrap().to_string();
    let csv = r.text().await.unwrap();
    assert_eq!(csv, "tid,diaObjectId\n1,1000000006\n2,1000000008\n");

    // The upload is kept with the token: the replay reads the same table.
    let (status, _, again) = get(
        &format!("{}/replay/{token}", s.tap),
        &[("RESPONSEFORMAT", "csv")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again, csv);

    // An http upload: here, another result of this same service (BINARY2).
    let source = format!(
        "{}/sync?QUERY={}",
        s.tap,
        url::form_urlencoded::byte_serialize(
            b"SELECT TOP 2 diaObjectId AS tid, ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId"
        )
        .collect::<String>()
    );
    let (_, _, by_url) = get(
        &format!("{}/sync", s.tap),
        &[
            ("QUERY", "SELECT u.tid, o.diaObjectId FROM TAP_UPLOAD.targets AS u JOIN ppdb.DiaObject AS o ON o.diaObjectId = u.tid"),
            ("UPLOAD", &format!("targets,{source}")),
            ("RESPONSEFORMAT", "csv"),
        ],
    )
    .await;
    assert_eq!(
        by_url,
        "tid,diaObjectId\n1000000006,1000000006\n1000000008,1000000008\n"
    );

    // Refusals say what is wrong.
    for (upload, want) in [
        ("targets,param:missing", "no such part"),
        ("targets,file:///etc/passwd", "use param:"),
        ("../x,param:t", "cannot name an upload"),
    ] {
        let (ct, body) = multipart(
            &[("QUERY", CROSSMATCH), ("UPLOAD", upload)],
            &[("t", TARGETS)],
        );
        let r = post_multipart(&format!("{}/sync", s.tap), ct, body).await;
        let text = r.text().await.unwrap();
        assert!(
            text.contains("value=\"ERROR\"") && text.contains(want),
            "{upload}: {text}"
        );
    }

    // An async job keeps its parts and runs the same join.
    let (ct, body) = multipart(
        &[
            ("QUERY", CROSSMATCH),
            ("UPLOAD", "targets,param:t"),
            ("RESPONSEFORMAT", "csv"),
            ("PHASE", "RUN"),
        ],
        &[("t", TARGETS)],
    );
    let r = post_multipart(&format!("{}/async", s.tap), ct, body).await;
    assert_eq!(r.status().as_u16(), 303);
    let job = r.headers()["location"].to_str().unwrap().to_string();
    let doc = wait_done(&job).await;
    assert_eq!(element(&doc, "phase"), "COMPLETED", "{doc}");
    assert_eq!(get(&format!("{job}/results/result"), &[]).await.2, csv);
}

#[tokio::test]
async fn upload_urls_at_private_addresses_are_refused_by_default() {
    let s = Server::start(&[]);
    let own = format!(
        "{}/sync?QUERY=SELECT%20TOP%201%20ra%20FROM%20ppdb.DiaObject",
        s.tap
    );
    let localhost = own.replace("127.0.0.1", "localhost");
    for url in [
        own.as_str(),
        localhost.as_str(),
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
        "http://10.0.0.1/x",
    ] {
        let (_, _, text) = get(
            &format!("{}/sync", s.tap),
            &[
                ("QUERY", "SELECT * FROM TAP_UPLOAD.t"),
                ("UPLOAD", &format!("t,{url}")),
            ],
        )
        .await;
        assert!(
            text.contains("value=\"ERROR\"") && text.contains("private or local address"),
            "{url}: {text}"
        );
    }
}

/// A binary stream no FIELD consumes once kept two workers busy for ever and
/// the service answered nothing more; it is refused, and the service answers.
#[tokio::test]
async fn an_upload_whose_rows_take_no_bytes_is_refused_and_the_service_answers() {
    let s = Server::start(&[]);
    for doc in [
        "<VOTABLE><RESOURCE><TABLE><DATA><BINARY2><STREAM encoding=\"base64\">AA==</STREAM></BINARY2></DATA></TABLE></RESOURCE></VOTABLE>",
        "<VOTABLE><RESOURCE><TABLE><FIELD name=\"s\" datatype=\"char\" arraysize=\"0\"/><DATA><BINARY><STREAM encoding=\"base64\">AA==</STREAM></BINARY></DATA></TABLE></RESOURCE></VOTABLE>",
    ] {
        let (ct, body) = multipart(
            &[
                ("QUERY", "SELECT * FROM TAP_UPLOAD.t"),
                ("UPLOAD", "t,param:t"),
            ],
            &[("t", doc)],
        );
        let r = post_multipart(&format!("{}/sync", s.tap), ct, body).await;
        assert_eq!(r.status().as_u16(), 400);
        assert!(r.text().await.unwrap().contains("upload 't'"));
    }
    let (status, _, _) = get(&format!("{}/availability", s.tap), &[]).await;
    assert_eq!(status, 200);
}

/// An upload's text goes in batches sized to its longest values: a join
/// copies them into every row it makes, and three 200 KiB values in
/// 8 192-row batches took one query to 6.9 GB against a 3 GiB budget.
#[tokio::test]
async fn an_upload_of_long_text_joins_within_the_memory_it_is_given() {
    let s = Server::start(&["--memory-mb", "512", "--query-memory-mb", "128"]);
    let long = "x".repeat(200 << 10);
    let table = format!(
        r#"<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<FIELD name="id" datatype="int"/><FIELD name="s0" datatype="char" arraysize="*"/><FIELD name="s1" datatype="char" arraysize="*"/><FIELD name="s2" datatype="char" arraysize="*"/>
<DATA><TABLEDATA><TR><TD>1</TD><TD>{long}</TD><TD>{long}</TD><TD>{long}</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"#
    );
    let (ct, body) = multipart(
        &[
            (
                "QUERY",
                "SELECT COUNT(*) AS n FROM ppdb.DiaForcedSource AS f CROSS JOIN TAP_UPLOAD.t AS u \
                 WHERE u.s0 <> f.band AND u.s1 <> f.band AND u.s2 <> f.band",
            ),
            ("UPLOAD", "t,param:t"),
            ("RESPONSEFORMAT", "csv"),
        ],
        &[("t", &table)],
    );
    let r = post_multipart(&format!("{}/sync", s.tap), ct, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "n\n28753\n");
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(kib < 1 << 20, "the server held {} MiB", kib >> 10);
}

/// A query stops at its deadline only between batches, so one batch must be
/// cheap: the rows per batch follow the operations a query holds and the
/// widest text they may meet, and a query one row of which would cost more
/// than a batch may is refused before it runs. 120 columns of 40 nested
/// UPPER/LOWER over 64 KB values ran 11.6 s past a 5 s deadline.
#[tokio::test]
async fn a_query_that_does_too_much_to_each_row_of_long_text_is_refused_before_it_runs() {
    let s = Server::start(&[]);
    let long = "x".repeat(64_000);
    let rows: String = (0..3)
        .map(|i| format!("<TR><TD>{i}</TD><TD>{long}</TD></TR>"))
        .collect();
    let table = format!(
        r#"<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<FIELD name="id" datatype="int"/><FIELD name="s" datatype="char" arraysize="*"/>
<DATA><TABLEDATA>{rows}</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"#
    );
    // Each column a different chain, so that no common part is computed once.
    let chain = |j: usize| {
        (0..39).fold("u.s".to_string(), |e, i| {
            let upper = if i < 7 { (j >> i) & 1 == 1 } else { i % 2 == 0 };
            format!("{}({e})", if upper { "UPPER" } else { "LOWER" })
        })
    };
    let query = |cols: usize| {
        let list: Vec<String> = (0..cols).map(|j| format!("{} AS c{j}", chain(j))).collect();
        format!("SELECT {} FROM TAP_UPLOAD.t AS u", list.join(", "))
    };
    let sync = format!("{}/sync", s.tap);
    let run = |q: String| {
        let (ct, body) = multipart(
            &[
                ("QUERY", q.as_str()),
                ("UPLOAD", "t,param:t"),
                ("RESPONSEFORMAT", "csv"),
            ],
            &[("t", &table)],
        );
        post_multipart(&sync, ct, body)
    };
    let r = run(query(60)).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("does too much for each row"), "{text}");
    // A third of it runs, in batches of a row or two.
    let r = run(query(20)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(text.lines().count(), 4, "a header and three rows");
}

/// The upload side of a cone join is read while the query is planned, to
/// narrow the catalog side: only a plain upload (cheap filters and
/// projections) is read so. Three copies of a 1 000-row upload crossed on
/// that side were computed for 24 s after the answer, holding the slot (the
/// next caller was refused as busy), and keeping their rows took 1.2 GB past
/// every memory limit; such a side is now joined under the deadline.
#[tokio::test]
async fn a_cone_join_on_a_costly_upload_side_stops_at_the_deadline() {
    let s = Server::start(&["--max-duration", "2", "--max-concurrent", "1"]);
    let rows: String = (0..1000)
        .map(|i| {
            format!(
                "<TR><TD>{i}</TD><TD>{}</TD><TD>-30</TD></TR>",
                50.0 + f64::from(i) / 100.0
            )
        })
        .collect();
    let table = format!(
        r#"<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<FIELD name="id" datatype="int"/><FIELD name="ra" datatype="double"/><FIELD name="dec" datatype="double"/>
<DATA><TABLEDATA>{rows}</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"#
    );
    let query = "SELECT COUNT(*) AS n FROM ppdb.DiaObject AS o JOIN \
         (SELECT u0.ra AS ra, u0.dec AS dec FROM TAP_UPLOAD.t AS u0 CROSS JOIN TAP_UPLOAD.t AS u1 \
          CROSS JOIN TAP_UPLOAD.t AS u2 WHERE SIN(u0.ra + u1.ra + u2.ra) > 2) AS x \
         ON CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', x.ra, x.dec, 0.01)) = 1";
    let (ct, body) = multipart(
        &[
            ("QUERY", query),
            ("UPLOAD", "t,param:t"),
            ("RESPONSEFORMAT", "csv"),
        ],
        &[("t", &table)],
    );
    let r = post_multipart(&format!("{}/sync", s.tap), ct, body).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("execution duration of 2 s"), "{text}");
    let (status, _, body) = get(
        &format!("{}/sync", s.tap),
        &[
            ("QUERY", "SELECT COUNT(*) AS n FROM ppdb.SSObject"),
            ("RESPONSEFORMAT", "csv"),
        ],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, "n\n15\n"),
        "the slot came free"
    );
}

/// The catalog's MJDs say they are TAI (a TIMESYS); an upload's column of
/// the same name keeps no such claim (its sender's time scale is unknown),
/// nor does a catalog time cast to text.
#[tokio::test]
async fn only_the_catalogs_mjds_refer_to_its_tai_time_system() {
    let s = Server::start(&[]);
    let upload = "<VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\"><RESOURCE>\
        <TIMESYS ID=\"mine\" timeorigin=\"JD-origin\" timescale=\"UTC\" refposition=\"BARYCENTER\"/><TABLE>\
        <FIELD name=\"fooMjdTai\" datatype=\"double\" unit=\"d\" ref=\"mine\"/>\
        <DATA><TABLEDATA><TR><TD>2460000.5</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>";
    let query = "SELECT t.fooMjdTai, s.midpointMjdTai, CAST(s.midpointMjdTai AS VARCHAR) AS c \
        FROM TAP_UPLOAD.t AS t, ppdb.DiaSource AS s \
        WHERE s.diaSourceId = (SELECT MIN(diaSourceId) FROM ppdb.DiaSource)";
    let (ct, body) = multipart(
        &[("QUERY", query), ("UPLOAD", "t,param:t")],
        &[("t", upload)],
    );
    let r = post_multipart(&format!("{}/sync", s.tap), ct, body).await;
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    let field = |name: &str| {
        xml.lines()
            .find(|l| l.starts_with(&format!("<FIELD name=\"{name}\"")))
            .unwrap_or_else(|| panic!("no FIELD {name} in {xml}"))
            .to_string()
    };
    assert!(
        xml.contains("<TIMESYS ID=\"ppdb-tai-mjd\" timeorigin=\"MJD-origin\" timescale=\"TAI\"")
    );
    assert!(field("midpointMjdTai").contains("ref=\"ppdb-tai-mjd\""));
    assert!(
        !field("fooMjdTai").contains("ref="),
        "{}",
        field("fooMjdTai")
    );
    assert!(!field("c").contains("ref="), "{}", field("c"));
}
