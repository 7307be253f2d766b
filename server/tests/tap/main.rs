//! The TAP service as clients see it: `ppdb serve` on 127.0.0.1 (a free port),
//! spoken to over HTTP by a real client.

use tempfile::TempDir;

mod describe;
mod jobs;
mod sync;
mod uploads;

#[path = "../common/mod.rs"]
mod common;
use common::serve::{Server, sync_request};

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

/// A VOTable without the Data Origin items that describe one request (its
/// URL and time): what two requests for the same result share.
fn without_request(votable: &str) -> String {
    votable
        .lines()
        .filter(|l| {
            !l.starts_with("<INFO name=\"request\"")
                && !l.starts_with("<INFO name=\"request_date\"")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn rows(votable: &str) -> Vec<&str> {
    votable.lines().filter(|l| l.starts_with("<TR>")).collect()
}

const TOP3: &str = "SELECT TOP 3 diaObjectId, ra, dec FROM ppdb.DiaObject ORDER BY diaObjectId";

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

/// Three copies of DiaSource: far more rows than a second allows.
const SLOW: &str =
    "SELECT COUNT(*) AS n FROM ppdb.DiaSource AS a, ppdb.DiaSource AS b, ppdb.DiaSource AS c";

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
