//! What the service keeps besides the catalog (token records, the uploads they
//! read, async results) stays within `--state-limit-mb`, and one anonymous
//! address may fill only a sixteenth of it an hour: before, a 4 MB comment
//! made a 4 MB token record kept forever, and nothing bounded the total.

use std::path::Path;

use tempfile::TempDir;

mod common;
use common::serve::Server;

use common::ppdb as support;

const ALICE: &str = "alice-secret-0123456789";

fn client_from(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, last_octet]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A query whose text carries `kib` KiB of comment, different for each `n`.
fn padded(n: usize, kib: usize) -> String {
    format!(
        "SELECT TOP 1 ra FROM ppdb.DiaObject -- {n} {}\n",
        "x".repeat(kib << 10)
    )
}

async fn sync(
    client: &reqwest::Client,
    tap: &str,
    query: &str,
    bearer: Option<&str>,
) -> (u16, String, Option<String>) {
    let mut r = client
        .post(format!("{tap}/sync"))
        .form(&[("QUERY", query), ("RESPONSEFORMAT", "csv")]);
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let token = r
        .headers()
        .get("x-query-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.text().await.unwrap(), token)
}

/// The VOSI availability document.
async fn availability(client: &reqwest::Client, tap: &str) -> String {
    let r = client.get(format!("{tap}/availability")).send().await;
    r.unwrap().text().await.unwrap()
}

fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            bytes_under(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn serve(state: &Path, limit_mb: &str) -> Server {
    Server::start_with(
        &[
            "--state",
            state.to_str().unwrap(),
            "--state-limit-mb",
            limit_mb,
        ],
        &[("PPDB_TOKENS", &format!("alice={ALICE}"))],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_state_store_stays_within_its_limit_and_says_so_when_full() {
    let state = TempDir::new().unwrap();
    let s = serve(state.path(), "1");
    let me = client_from(1);
    // A privileged user has no hourly share: only the store's limit holds her.
    let mut tokens = Vec::new();
    let mut refused = None;
    for n in 0..40 {
        let (status, body, token) = sync(&me, &s.tap, &padded(n, 100), Some(ALICE)).await;
        if status == 200 {
            tokens.extend(token);
        } else {
            refused = Some((n, status, body));
            break;
        }
    }
    let (n, status, body) = refused.expect("a 1 MiB store filled by 100 KiB records refuses");
    assert!(n >= 4, "refused after only {n} records: {body}");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("full at 1 MiB"), "{body}");
    assert!(!body.contains(state.path().to_str().unwrap()), "{body}");
    let held = bytes_under(state.path());
    assert!(
        held <= (1 << 20) + (256 << 10),
        "the store holds {held} bytes"
    );

    // Everyone is refused what does not fit, before any work.
    let (status, body, _) = sync(&client_from(2), &s.tap, &padded(200, 100), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no room left"), "{body}");
    let job = me
        .post(format!("{}/async", s.tap))
        .form(&[("QUERY", padded(201, 100))])
        .send()
        .await
        .unwrap();
    assert_eq!(job.status().as_u16(), 503);

    // What was kept still replays: reading needs no room.
    let first = &tokens[0];
    let replay = me
        .get(format!("{}/replay/{first}", s.tap))
        .query(&[("RESPONSEFORMAT", "csv")])
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 200);
    drop(s);

    // A restarted server counts what the store holds: still full.
    let s = serve(state.path(), "1");
    let (status, _, _) = sync(&me, &s.tap, &padded(99, 100), Some(ALICE)).await;
    assert_eq!(status, 503);
    drop(s);

    // An operator makes room by expiring tokens; then queries are answered again.
    let dir = state.path().to_str().unwrap();
    support::ok(&["token", "expire", "--state", dir, &tokens[0]]);
    let later = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let said = support::ok(&["token", "expire", "--state", dir, "--made-before", &later]);
    assert!(
        said.contains(&format!("expired {} token(s)", tokens.len() - 1)),
        "{said}"
    );
    let s = serve(state.path(), "1");
    let (status, body, _) = sync(&me, &s.tap, &padded(100, 1), Some(ALICE)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_stores_only_its_share_an_hour() {
    let state = TempDir::new().unwrap();
    // 16 MiB in all: one anonymous address may store 1 MiB an hour.
    let s = serve(state.path(), "16");
    let greedy = client_from(3);
    let mut refused = None;
    for n in 0..10 {
        let (status, body, _) = sync(&greedy, &s.tap, &padded(n, 200), None).await;
        if status != 200 {
            refused = Some((n, status, body));
            break;
        }
    }
    let (n, status, body) = refused.expect("one address cannot store without end");
    assert_eq!(
        n, 2,
        "two 200 KiB queries fit a 1 MiB hour, not three: {body}"
    );
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("1 MiB an hour"), "{body}");
    // Others are not held to what that address stored.
    let (status, body, _) = sync(&client_from(4), &s.tap, &padded(0, 200), None).await;
    assert_eq!(status, 200, "{body}");
    // Nor is a privileged user.
    let (status, body, _) = sync(&greedy, &s.tap, &padded(50, 200), Some(ALICE)).await;
    assert_eq!(status, 200, "{body}");
}

/// Sixteen addresses, each within its hourly share, filled the whole store
/// in an hour, and then every caller was refused, privileged ones too.
#[tokio::test(flavor = "multi_thread")]
async fn many_addresses_fill_only_the_anonymous_half_of_the_store() {
    let state = TempDir::new().unwrap();
    let s = serve(state.path(), "16");
    let mut refused = None;
    'addresses: for address in 10..60u8 {
        let client = client_from(address);
        for n in 0..2 {
            let query = padded(1000 * address as usize + n, 200);
            let (status, body, _) = sync(&client, &s.tap, &query, None).await;
            if status != 200 {
                refused = Some((address, status, body));
                break 'addresses;
            }
        }
    }
    let (address, status, body) = refused.expect("anonymous callers together are bounded");
    assert!(
        address >= 18,
        "refused at the {}th address: {body}",
        address - 10
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("anonymous queries"), "{body}");
    assert!(!body.contains(state.path().to_str().unwrap()), "{body}");
    let held = bytes_under(state.path());
    assert!(held <= 9 << 20, "anonymous callers filled {held} bytes");
    // A fresh address is refused as much too; smaller queries fill what is left.
    let (status, _, _) = sync(&client_from(99), &s.tap, &padded(99_000, 200), None).await;
    assert_eq!(status, 503);
    let mut small = 0;
    while sync(
        &client_from(100 + small as u8),
        &s.tap,
        &padded(100_000 + small, 20),
        None,
    )
    .await
    .0 == 200
    {
        small += 1;
        assert!(
            small < 40,
            "small queries fill the rest of the anonymous half"
        );
    }
    let said = availability(&client_from(99), &s.tap).await;
    assert!(
        said.contains("<vosi:available>true") && said.contains("anonymous"),
        "{said}"
    );
    // The other half is for privileged callers.
    for n in 0..8 {
        let (status, body, _) =
            sync(&client_from(98), &s.tap, &padded(300 + n, 200), Some(ALICE)).await;
        assert_eq!(status, 200, "privileged query {n}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_result_past_the_share_ends_the_job_and_is_not_kept() {
    let state = TempDir::new().unwrap();
    let s = serve(state.path(), "16");
    let me = client_from(5);
    // About 8 MB of CSV, past the address's 1 MiB hour.
    let created = me
        .post(format!("{}/async", s.tap))
        .form(&[
            (
                "QUERY",
                "SELECT TOP 300000 a.ra, b.dec FROM ppdb.DiaObject AS a, ppdb.DiaObject AS b",
            ),
            ("RESPONSEFORMAT", "csv"),
            ("PHASE", "RUN"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 303);
    let job = created.headers()["location"].to_str().unwrap().to_string();
    let mut phase = String::new();
    for _ in 0..120 {
        phase = me
            .get(format!("{job}/phase"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if phase.trim() != "EXECUTING" && phase.trim() != "QUEUED" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(phase.trim(), "ERROR");
    let error = me
        .get(format!("{job}/error"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(error.contains("1 MiB an hour"), "{error}");
    let result = me
        .get(format!("{job}/results/result"))
        .send()
        .await
        .unwrap();
    assert_ne!(result.status().as_u16(), 200);
    let held = bytes_under(state.path());
    assert!(
        held < 2 << 20,
        "the store holds {held} bytes after a refused result"
    );
}

/// A job's parameters rewritten while PENDING: each rewrite was stored
/// without counting against anything, one job grew to 136 MB from one
/// address, and every rewrite was counted in full, so deleting the job left
/// the store "full" for everyone until a restart.
#[tokio::test(flavor = "multi_thread")]
async fn rewriting_a_pending_job_neither_grows_it_without_bound_nor_fills_the_count() {
    let state = TempDir::new().unwrap();
    let s = serve(state.path(), "8");
    let me = client_from(6);
    let created = me
        .post(format!("{}/async", s.tap))
        .bearer_auth(ALICE)
        .form(&[("QUERY", "SELECT TOP 1 ra FROM ppdb.DiaObject")])
        .send()
        .await
        .unwrap();
    let job = created.headers()["location"].to_str().unwrap().to_string();
    // Twenty rewrites of 1 MiB: 20 MiB if each counted in full, past the 8 MiB store.
    for i in 0..20 {
        let r = me
            .post(&job)
            .bearer_auth(ALICE)
            .form(&[("QUERY", padded(i, 1024))])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "rewrite {i}");
    }
    // New parameters beside the old ones: the job holds at most 4 MiB of them.
    let mut refused = None;
    for i in 0..8 {
        let r = me
            .post(&job)
            .bearer_auth(ALICE)
            .form(&[(format!("EXTRA{i}"), "y".repeat(1 << 20))])
            .send()
            .await
            .unwrap();
        if r.status().as_u16() != 303 {
            refused = Some((i, r.status().as_u16(), r.text().await.unwrap()));
            break;
        }
    }
    let (i, status, body) = refused.expect("a job cannot grow without end");
    assert_eq!((i, status), (2, 413), "{body}"); // 1 MiB of QUERY and two of EXTRA fit
    assert!(body.contains("4 MiB of parameters"), "{body}");
    let deleted = me.delete(&job).bearer_auth(ALICE).send().await.unwrap();
    assert_eq!(deleted.status().as_u16(), 303);
    // Nothing is held now, and the service says so and answers everyone.
    let available = availability(&me, &s.tap).await;
    assert!(available.contains("<vosi:available>true"), "{available}");
    let (status, body, _) = sync(&client_from(7), &s.tap, &padded(0, 100), None).await;
    assert_eq!(status, 200, "{body}");

    // Anonymous rewrites count against the address's hour (here 1 MiB).
    let anon = client_from(8);
    let created = anon
        .post(format!("{}/async", s.tap))
        .form(&[("QUERY", "SELECT TOP 1 ra FROM ppdb.DiaObject")])
        .send()
        .await
        .unwrap();
    let job = created.headers()["location"].to_str().unwrap().to_string();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let r = anon
            .post(&job)
            .form(&[("QUERY", padded(i, 400))])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [303, 303, 429, 429]);
}

/// A query that reads an upload and fails leaves nothing in the store: the
/// upload is kept only with the record of a query that answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_query_keeps_no_upload() {
    let state = TempDir::new().unwrap();
    let s = serve(state.path(), "16");
    let table = "<?xml version=\"1.0\"?><VOTABLE version=\"1.4\" \
        xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\"><RESOURCE><TABLE>\
        <FIELD name=\"n\" datatype=\"int\"/><DATA><TABLEDATA><TR><TD>0</TD></TR>\
        </TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>";
    let me = client_from(9);
    let upload = |query: &str| with_upload(&me, &s.tap, query, table);
    let failed = upload("SELECT 1 / n FROM TAP_UPLOAD.t")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status().as_u16(), 400);
    assert_eq!(bytes_under(&state.path().join("uploads")), 0);
    let answered = upload("SELECT n FROM TAP_UPLOAD.t").send().await.unwrap();
    assert_eq!(answered.status().as_u16(), 200);
    assert!(bytes_under(&state.path().join("uploads")) > 0);
}

/// A sync query with one uploaded table `t`, as a multipart body written out:
/// text fields, then the table as a file.
fn with_upload(
    client: &reqwest::Client,
    tap: &str,
    query: &str,
    table: &str,
) -> reqwest::RequestBuilder {
    let b = "ppdb-budget-boundary";
    let mut body = String::new();
    for (k, v) in [
        ("QUERY", query),
        ("UPLOAD", "t,param:t"),
        ("RESPONSEFORMAT", "csv"),
    ] {
        body += &format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n");
    }
    body += &format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"t\"; filename=\"t.xml\"\r\n\
         Content-Type: application/x-votable+xml\r\n\r\n{table}\r\n--{b}--\r\n"
    );
    client
        .post(format!("{tap}/sync"))
        .header("content-type", format!("multipart/form-data; boundary={b}"))
        .body(body)
}

/// Wide uploads were charged their size in memory, less than the Parquet
/// kept for their replays (a one-row, 1 000-column table: 168 KiB charged,
/// 223 KB written), so an address stored about 1.4 times its share.
#[tokio::test(flavor = "multi_thread")]
async fn a_wide_upload_is_charged_at_least_what_it_keeps() {
    let state = TempDir::new().unwrap();
    // 16 MiB in all: one anonymous address may store 1 MiB an hour.
    let s = serve(state.path(), "16");
    let me = client_from(11);
    let fields: String = (0..1000)
        .map(|i| format!("<FIELD name=\"c{i}\" datatype=\"double\"/>"))
        .collect();
    let cells = "<TD/>".repeat(999);
    let mut answered = 0;
    for n in 0..20 {
        let table = format!(
            "<?xml version=\"1.0\"?><VOTABLE version=\"1.4\" \
             xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\"><RESOURCE><TABLE>{fields}\
             <DATA><TABLEDATA><TR><TD>{n}</TD>{cells}</TR></TABLEDATA></DATA></TABLE>\
             </RESOURCE></VOTABLE>"
        );
        let r = with_upload(&me, &s.tap, "SELECT c0 FROM TAP_UPLOAD.t", &table)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => answered += 1,
            429 => break,
            other => panic!("{other}: {}", r.text().await.unwrap()),
        }
    }
    assert!(answered >= 1);
    let held = bytes_under(state.path());
    assert!(
        held <= 1 << 20,
        "one address stored {held} bytes with {answered} uploads, past its 1 MiB"
    );
}

/// Asking again for a later destruction kept a job for ever; a job lives at
/// most its lifetime from when it was made.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_s_destruction_cannot_be_pushed_past_its_lifetime() {
    let state = TempDir::new().unwrap();
    let s = Server::start(&[
        "--state",
        state.path().to_str().unwrap(),
        "--job-lifetime-hours",
        "1",
    ]);
    let me = client_from(10);
    let created = me
        .post(format!("{}/async", s.tap))
        .form(&[("QUERY", "SELECT TOP 1 ra FROM ppdb.DiaObject")])
        .send()
        .await
        .unwrap();
    let job = created.headers()["location"].to_str().unwrap().to_string();
    let destruction = || async {
        me.get(format!("{job}/destruction"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let first = destruction().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = me
        .post(format!("{job}/destruction"))
        .form(&[("DESTRUCTION", "2099-01-01T00:00:00Z")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(destruction().await, first);
}
