//! The TAP service as clients see it: `ppdb serve` on 127.0.0.1 (a free port),
//! spoken to over HTTP by a real client.

use tempfile::TempDir;

mod common;
use common::serve::Server;

async fn get(url: &str, params: &[(&str, &str)]) -> (u16, String, String) {
    // Named as clients name themselves (without a name, /tables answers as for astroquery).
    let r = reqwest::Client::new()
        .get(url)
        .header("user-agent", "ppdb-tests")
        .query(params)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

/// The text of an attribute of the first element that has `marker` in it.
fn attr(doc: &str, marker: &str, name: &str) -> String {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {doc}"));
    let rest = &doc[at..];
    let key = format!("{name}=\"");
    let start = rest.find(&key).unwrap() + key.len();
    rest[start..start + rest[start..].find('"').unwrap()]
        .replace("&amp;", "&")
        .to_string()
}

fn rows(votable: &str) -> Vec<&str> {
    votable.lines().filter(|l| l.starts_with("<TR>")).collect()
}

const TOP3: &str = "SELECT TOP 3 diaObjectId, ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId";

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
    assert_eq!(again, body);
    let (_, ct, td) = get(&url, &[("RESPONSEFORMAT", "votable/td")]).await;
    assert!(ct.contains("serialization=TABLEDATA"), "{ct}");
    assert_eq!(rows(&td).len(), 3, "{td}");
    let (_, ct, csv) = get(&url, &[("RESPONSEFORMAT", "csv")]).await;
    assert!(ct.starts_with("text/csv"), "{ct}");
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("diaObjectId,ra,dec\n"), "{csv}");
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
            "unknown format",
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
async fn vosi_describes_the_service() {
    let s = Server::start(&["--maxrec-default", "1000", "--maxrec-limit", "50000"]);
    let (status, ct, body) = get(&format!("{}/availability", s.tap), &[]).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert!(body.contains("<vosi:available>true</vosi:available>"));

    let (_, _, caps) = get(&format!("{}/capabilities", s.tap), &[]).await;
    assert!(
        caps.contains("standardID=\"ivo://ivoa.net/std/TAP\""),
        "{caps}"
    );
    assert!(caps.contains(&format!("<accessURL use=\"base\">{}</accessURL>", s.tap)));
    assert!(caps.contains("<default unit=\"row\">1000</default><hard unit=\"row\">50000</hard>"));
    assert!(caps.contains("ivo_healpix_index"), "the UDFs are declared");
    assert!(caps.contains("<mime>text/csv</mime>"));

    let (_, _, tables) = get(&format!("{}/tables", s.tap), &[]).await;
    for t in [
        "ppdb.DiaObject",
        "ppdb.DiaObjectHistory",
        "src.PromptSource",
        "TAP_SCHEMA.columns",
    ] {
        assert!(tables.contains(&format!("<name>{t}</name>")), "{t} missing");
    }
    assert!(
        tables.contains("<column><name>ra</name>") && tables.contains("<unit>deg</unit>"),
        "columns carry names and units"
    );
    // VOSI 1.1: detail=min leaves out the columns; each table has its own document.
    let (_, _, min) = get(&format!("{}/tables", s.tap), &[("detail", "min")]).await;
    assert!(min.contains("<name>ppdb.DiaObject</name>") && !min.contains("<column>"));
    let (status, _, one) = get(&format!("{}/tables/ppdb.DiaSource", s.tap), &[]).await;
    assert_eq!(status, 200);
    assert!(one.contains("<vosi:table ") && one.contains("<column><name>psfFlux</name>"));
    assert!(!one.contains("ppdb.DiaObject</name>"), "one table only");
    assert_eq!(
        get(&format!("{}/tables/ppdb.Nope", s.tap), &[]).await.0,
        404
    );
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Runs every DALI example of a server and checks each returns rows.
async fn every_example_returns_rows(s: &Server) -> Vec<String> {
    let (status, ct, doc) = get(&format!("{}/examples", s.tap), &[]).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/xhtml+xml"), "{ct}");
    let queries: Vec<String> = doc
        .split("<pre property=\"query\">")
        .skip(1)
        .map(|p| unescape(&p[..p.find("</pre>").unwrap()]))
        .collect();
    assert!(queries.len() >= 8, "{} examples", queries.len());
    assert_eq!(doc.matches("typeof=\"example\"").count(), queries.len());
    for q in &queries {
        let (_, _, body) = get(
            &format!("{}/sync", s.tap),
            &[("QUERY", q.as_str()), ("RESPONSEFORMAT", "votable/td")],
        )
        .await;
        assert!(
            body.contains("<INFO name=\"QUERY_STATUS\" value=\"OK\"/>")
                && !body.contains("value=\"ERROR\""),
            "{q}: {body}"
        );
        assert!(!rows(&body).is_empty(), "{q} returned no rows");
    }
    queries
}

#[tokio::test]
async fn every_example_runs_and_returns_rows() {
    let s = Server::start(&[]);
    every_example_returns_rows(&s).await;
}

/// The examples are written for the catalog served, not for the bundled sample.
#[tokio::test]
async fn the_examples_fit_any_catalog() {
    let dir = TempDir::new().unwrap();
    let chunks = dir.path().join("chunks");
    let cat = dir.path().join("cat");
    for args in [
        vec![
            "sample",
            "--out",
            chunks.to_str().unwrap(),
            "--objects",
            "500",
            "--nights",
            "2",
            "--seed",
            "11",
            "--ra",
            "200",
            "--dec",
            "10",
        ],
        vec![
            "ingest",
            "--catalog",
            cat.to_str().unwrap(),
            chunks.to_str().unwrap(),
        ],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ppdb"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = Server::start(&["--catalog", cat.to_str().unwrap()]);
    let queries = every_example_returns_rows(&s).await;
    assert!(
        !queries
            .iter()
            .any(|q| q.contains("1000000014") || q.contains("55.0")),
        "an example names the bundled sample: {queries:?}"
    );
}

/// A client that shows redirects instead of following them (UWS answers 303).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn post(url: &str, params: &[(&str, &str)]) -> reqwest::Response {
    client().post(url).form(params).send().await.unwrap()
}

/// Creates an async job; returns its URL.
async fn create_job(tap: &str, params: &[(&str, &str)]) -> String {
    let r = post(&format!("{tap}/async"), params).await;
    assert_eq!(r.status().as_u16(), 303, "{params:?}");
    let at = r.headers()["location"].to_str().unwrap().to_string();
    assert!(at.starts_with(&format!("{tap}/async/")), "{at}");
    at
}

/// Waits (UWS `WAIT`, which returns at each change of phase) until the job has
/// ended; returns its document.
async fn wait_done(job: &str) -> String {
    let mut doc = String::new();
    for _ in 0..20 {
        doc = get(job, &[("WAIT", "30")]).await.2;
        if !["PENDING", "QUEUED", "EXECUTING"].contains(&element(&doc, "phase").as_str()) {
            break;
        }
    }
    doc
}

fn element(doc: &str, name: &str) -> String {
    let open = format!("<uws:{name}>");
    let start = doc
        .find(&open)
        .unwrap_or_else(|| panic!("no {name} in {doc}"))
        + open.len();
    doc[start..start + doc[start..].find('<').unwrap()].to_string()
}

#[tokio::test]
async fn an_async_job_runs_waits_and_gives_the_sync_result() {
    let s = Server::start(&[]);
    let job = create_job(
        &s.tap,
        &[("LANG", "ADQL"), ("QUERY", TOP3), ("RUNID", "mine")],
    )
    .await;
    let (_, ct, doc) = get(&job, &[]).await;
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert_eq!(element(&doc, "phase"), "PENDING");
    assert_eq!(element(&doc, "runId"), "mine");
    assert!(doc.contains("<uws:parameter id=\"QUERY\">"), "{doc}");
    let (_, _, phase) = get(&format!("{job}/phase"), &[]).await;
    assert_eq!(phase, "PENDING");

    // Parameters may change while PENDING; so may the execution duration.
    let r = post(&job, &[("MAXREC", "2")]).await;
    assert_eq!(r.status().as_u16(), 303);
    let r = post(
        &format!("{job}/executionduration"),
        &[("EXECUTIONDURATION", "30")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 303);
    let (_, _, d) = get(&format!("{job}/executionduration"), &[]).await;
    assert_eq!(d, "30");

    let r = post(&format!("{job}/phase"), &[("PHASE", "RUN")]).await;
    assert_eq!(r.status().as_u16(), 303);
    let doc = wait_done(&job).await;
    assert_eq!(element(&doc, "phase"), "COMPLETED", "{doc}");
    assert!(
        doc.contains("<uws:startTime>") && doc.contains("<uws:endTime>"),
        "{doc}"
    );
    let href = attr(&doc, "<uws:result ", "xlink:href");
    assert_eq!(href, format!("{job}/results/result"));
    let (status, ct, result) = get(&href, &[]).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/x-votable+xml"), "{ct}");
    let (_, _, sync) = get(
        &format!("{}/sync", s.tap),
        &[("LANG", "ADQL"), ("QUERY", TOP3), ("MAXREC", "2")],
    )
    .await;
    assert_eq!(result, sync, "async and sync give the same document");
    assert!(result.contains("value=\"OVERFLOW\""), "MAXREC=2 cut 3 rows");

    // Anonymous callers cannot be told apart, so they are listed no job (the
    // listing's filters are checked with a bearer token in tests/access.rs).
    let (status, _, list) = get(&format!("{}/async", s.tap), &[]).await;
    assert_eq!(status, 200);
    assert!(!list.contains("<uws:jobref"), "{list}");

    // Parameters cannot change once the job has run.
    let r = post(&job, &[("QUERY", "SELECT 1")]).await;
    assert_eq!(r.status().as_u16(), 409);

    // DELETE removes the job and its result.
    let r = client().delete(&job).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&job, &[]).await.0, 404);
    assert_eq!(get(&href, &[]).await.0, 404);
}

#[tokio::test]
async fn failed_aborted_and_destroyed_jobs() {
    let s = Server::start(&[]);
    // An error ends in ERROR with the message, as an error VOTable.
    let job = create_job(
        &s.tap,
        &[
            ("QUERY", "SELECT raa FROM ppdb.DiaObject"),
            ("PHASE", "RUN"),
        ],
    )
    .await;
    let doc = wait_done(&job).await;
    assert_eq!(element(&doc, "phase"), "ERROR", "{doc}");
    let (_, _, error) = get(&format!("{job}/error"), &[]).await;
    assert!(
        error.contains("value=\"ERROR\"") && error.contains("line 1, column 8"),
        "{error}"
    );

    // ABORT before running; then ACTION=DELETE.
    let job = create_job(&s.tap, &[("QUERY", TOP3)]).await;
    let r = post(&format!("{job}/phase"), &[("PHASE", "ABORT")]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&format!("{job}/phase"), &[]).await.2, "ABORTED");
    let r = post(&job, &[("ACTION", "DELETE")]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&job, &[]).await.0, 404);

    // A destruction time in the past is honoured: the job is gone.
    let job = create_job(&s.tap, &[("QUERY", TOP3)]).await;
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(300)).to_rfc3339();
    let r = post(&format!("{job}/destruction"), &[("DESTRUCTION", &soon)]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&job, &[]).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(get(&job, &[]).await.0, 404);
    let (_, _, list) = get(&format!("{}/async", s.tap), &[]).await;
    assert!(!list.contains(job.rsplit('/').next().unwrap()), "{list}");

    // Ids that are not job ids never reach the store.
    for bad in ["..%2F..%2Fetc", "x", "00000000-0000-0000-0000-000000000000"] {
        assert_eq!(
            get(&format!("{}/async/{bad}", s.tap), &[]).await.0,
            404,
            "{bad}"
        );
    }
}

/// Three copies of DiaSource: far more rows than a second allows.
const SLOW: &str =
    "SELECT COUNT(*) AS n FROM ppdb.DiaSource AS a, ppdb.DiaSource AS b, ppdb.DiaSource AS c";

#[tokio::test]
async fn the_execution_duration_is_enforced() {
    let s = Server::start(&["--max-duration", "1"]);
    let started = std::time::Instant::now();
    let (status, _, body) = get(&format!("{}/sync", s.tap), &[("QUERY", SLOW)]).await;
    // Stopped before its first byte went out: an error status with the document.
    assert_eq!(status, 400);
    assert!(
        body.contains("value=\"ERROR\"") && body.contains("execution duration of 1 s"),
        "{body}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    let job = create_job(&s.tap, &[("QUERY", SLOW), ("PHASE", "RUN")]).await;
    let (_, _, d) = get(&format!("{job}/executionduration"), &[]).await;
    assert_eq!(d, "1", "a job cannot ask for more than the server allows");
    let mut doc = String::new();
    for _ in 0..10 {
        doc = get(&job, &[("WAIT", "5")]).await.2;
        if element(&doc, "phase") == "ERROR" {
            break;
        }
    }
    assert_eq!(element(&doc, "phase"), "ERROR", "{doc}");
    assert!(doc.contains("execution duration"), "{doc}");
}

#[tokio::test]
async fn jobs_live_in_the_state_store_and_survive_a_restart() {
    let state = TempDir::new().unwrap();
    let url = state.path().to_str().unwrap();
    let first = Server::start(&["--state", url]);
    let job = create_job(&first.tap, &[("QUERY", TOP3), ("PHASE", "RUN")]).await;
    let doc = wait_done(&job).await;
    assert_eq!(element(&doc, "phase"), "COMPLETED", "{doc}");
    let (_, _, result) = get(&format!("{job}/results/result"), &[]).await;
    let id = job.rsplit('/').next().unwrap().to_string();
    drop(first);

    let second = Server::start(&["--state", url]);
    let job = format!("{}/async/{id}", second.tap);
    let (status, _, doc) = get(&job, &[]).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(element(&doc, "phase"), "COMPLETED");
    let (_, _, again) = get(&format!("{job}/results/result"), &[]).await;
    // The descriptor names the first server's address; the rows are the same.
    let body = |d: &str| d[d.find("<DATA>").unwrap()..d.find("</DATA>").unwrap()].to_string();
    assert_eq!(body(&again), body(&result));
}

/// A multipart/form-data body: text fields, then file parts.
fn multipart(fields: &[(&str, &str)], files: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "ppdb-test-boundary-7f3a";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    for (k, v) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{k}.xml\"\r\n\
                 Content-Type: application/x-votable+xml\r\n\r\n{v}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_multipart(url: &str, content_type: String, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Two targets on known objects of the sample and one far from everything.
const TARGETS: &str = r#"<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<FIELD name="tid" datatype="int"/><FIELD name="ra" datatype="double" unit="deg"/><FIELD name="dec" datatype="double" unit="deg"/>
<DATA><TABLEDATA>
<TR><TD>1</TD><TD>54.86209390302902</TD><TD>-30.513358405467326</TD></TR>
<TR><TD>2</TD><TD>55.62459420059306</TD><TD>-29.58821261333668</TD></TR>
<TR><TD>3</TD><TD>10.0</TD><TD>0.0</TD></TR>
</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"#;

const CROSSMATCH: &str = "SELECT u.tid, o.diaObjectId FROM TAP_UPLOAD.targets AS u \
     JOIN ppdb.DiaObject AS o \
     ON 1 = CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', u.ra, u.dec, 0.001)) \
     ORDER BY u.tid";

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
    // Its place is free again.
    let (_, _, after) = get(&sync, &[("QUERY", TOP3), ("RESPONSEFORMAT", "csv")]).await;
    assert_eq!(after.lines().count(), 4, "{after}");
}

#[tokio::test]
async fn geometry_fields_carry_their_dali_xtype() {
    let s = Server::start(&[]);
    let (_, _, body) = get(
        &format!("{}/sync", s.tap),
        &[(
            "QUERY",
            "SELECT TOP 1 diaObjectId, POINT('ICRS', ra, dec) AS p, CIRCLE('ICRS', ra, dec, 0.1) AS c, \
             POLYGON('ICRS', 1, 1, 2, 1, 2, 2) AS g FROM ppdb.DiaObject ORDER BY diaObjectId",
        )],
    )
    .await;
    for want in [
        "<FIELD name=\"p\" datatype=\"double\" arraysize=\"2\" xtype=\"point\"",
        "<FIELD name=\"c\" datatype=\"double\" arraysize=\"3\" xtype=\"circle\"",
        "<FIELD name=\"g\" datatype=\"double\" arraysize=\"*\" xtype=\"polygon\"",
    ] {
        assert!(body.contains(want), "{want} in {body}");
    }
    assert!(!body.contains("arraysize=\"1\""), "{body}");
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

/// Aborting a running job stops its query: it used to free the job's slot
/// while the query ran on, so abort loops ran any number of queries at once.
#[tokio::test]
async fn aborting_a_job_stops_its_query() {
    let s = Server::start(&["--max-duration", "120"]);
    let job = create_job(&s.tap, &[("QUERY", SLOW), ("PHASE", "RUN")]).await;
    for _ in 0..100 {
        if get(&format!("{job}/phase"), &[]).await.2.trim() == "EXECUTING" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = post(&format!("{job}/phase"), &[("PHASE", "ABORT")]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&format!("{job}/phase"), &[]).await.2.trim(), "ABORTED");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = s.cpu_seconds();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let used = s.cpu_seconds() - before;
    assert!(
        used < 0.5,
        "the aborted query still ran: {used:.2} CPU s in 2 s"
    );
}

/// A client that stops reading a large result holds its slot no longer than
/// the execution duration: the next query gets the slot after that.
#[tokio::test]
async fn a_reader_that_stops_reading_frees_its_slot_at_the_deadline() {
    let s = Server::start(&["--max-concurrent", "1", "--max-duration", "5"]);
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
    let started = std::time::Instant::now();
    let (status, _, body) = tokio::time::timeout(
        std::time::Duration::from_secs(30),
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
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "it waited for the slot"
    );
    drop(stalled);
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
