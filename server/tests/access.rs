//! Who sees what over HTTP: bearer tokens, the embargo, and the owners of
//! async jobs, against `ppdb serve` on 127.0.0.1 with a real client.
//!
//! The server embargoes the sample's third night (cutoff MJD 61001.6, TAI);
//! `alice` and `bob` hold bearer tokens, one from a file and one from the
//! environment.

mod common;
use common::serve::Server;

const ALICE: &str = "alice-0123456789abcdef";
const BOB: &str = "bob-fedcba9876543210";
const COUNT: &str = "SELECT COUNT(*) AS n FROM ppdb.DiaSource";

fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("tokens.txt");
    std::fs::write(&file, format!("# staff\nalice={ALICE}\n")).unwrap();
    let server = Server::start_with(
        &[
            "--embargo-until",
            "61001.6",
            "--tokens",
            file.to_str().unwrap(),
        ],
        &[("PPDB_TOKENS", &format!("bob={BOB}"))],
    );
    (server, dir)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn with(r: reqwest::RequestBuilder, bearer: Option<&str>) -> reqwest::RequestBuilder {
    match bearer {
        Some(b) => r.bearer_auth(b),
        None => r,
    }
}

/// A sync query's status, token and body (CSV).
async fn sync(s: &Server, bearer: Option<&str>, adql: &str) -> (u16, String, String) {
    let r = with(client().get(format!("{}/sync", s.tap)), bearer)
        .query(&[("LANG", "ADQL"), ("QUERY", adql), ("RESPONSEFORMAT", "csv")])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let token = r
        .headers()
        .get("x-query-token")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, token, r.text().await.unwrap())
}

async fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let r = with(client().get(url), bearer).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn bearer_tokens_unlock_the_embargo_and_bad_ones_are_refused() {
    let (s, _dir) = start();
    let (status, _, public) = sync(&s, None, COUNT).await;
    assert_eq!(status, 200, "{public}");
    let (_, _, alice) = sync(&s, Some(ALICE), COUNT).await;
    let (_, _, bob) = sync(&s, Some(BOB), COUNT).await;
    assert_ne!(
        public, alice,
        "the embargoed night is hidden from anonymous callers"
    );
    assert_eq!(alice, bob);
    let (_, _, public_again) = sync(
        &s,
        None,
        "SELECT COUNT(*) AS n FROM ppdb.DiaSource WHERE midpointMjdTai <= 61001.6",
    )
    .await;
    assert_eq!(public, public_again);

    for bad in [
        "Bearer not-a-known-token-at-all",
        "Basic YWxpY2U6eA==",
        "Bearer",
    ] {
        let r = client()
            .get(format!("{}/sync", s.tap))
            .header("Authorization", bad)
            .query(&[("LANG", "ADQL"), ("QUERY", COUNT)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{bad}");
        let challenge = r
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let text = r.text().await.unwrap();
        assert!(text.contains("anonymous"), "{text}");
    }
}

#[tokio::test]
async fn a_privileged_token_of_an_embargoed_snapshot_says_nothing_of_it_even_without_rows() {
    // TAP_SCHEMA alone reads no embargoed row, but its result names the
    // snapshot and its commit time, which anonymous callers are not shown.
    let (s, _dir) = start();
    let query = "SELECT table_name FROM TAP_SCHEMA.tables WHERE 1 = 0";
    let (status, token, _) = sync(&s, Some(ALICE), query).await;
    assert_eq!(status, 200);
    let (_, public_token, _) = sync(&s, None, query).await;
    assert_ne!(
        token, public_token,
        "anonymous callers read an earlier snapshot"
    );
    for url in [
        format!("{}/replay/{token}?RESPONSEFORMAT=csv", s.tap),
        format!("{}/replay/{token}/record", s.tap),
    ] {
        let (status, body) = get(&url, None).await;
        assert_eq!(status, 404, "{url}: {body}");
        assert!(!body.contains("snapshot 12"), "{body}");
    }
    let (status, _) = get(
        &format!("{}/replay/{token}?RESPONSEFORMAT=csv", s.tap),
        Some(BOB),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_token_made_where_no_embargo_applies_replays_only_with_privilege() {
    // The command line reads as the files' owner, with no embargo; its tokens
    // land in the state store a service may share.
    let dir = tempfile::TempDir::new().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let out = common::ppdb::command()
        .args(["query", "--state", state, "--format", "csv", COUNT])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    let token = said
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap_or_else(|| panic!("no token in {said}"))
        .trim()
        .to_string();
    let file = dir.path().join("tokens.txt");
    std::fs::write(&file, format!("alice={ALICE}\n")).unwrap();
    let s = Server::start(&[
        "--embargo-until",
        "61001.6",
        "--state",
        state,
        "--tokens",
        file.to_str().unwrap(),
    ]);
    let replay = format!("{}/replay/{token}?RESPONSEFORMAT=csv", s.tap);
    let (status, body) = get(&replay, None).await;
    assert_eq!(status, 404, "the embargoed night must not replay: {body}");
    let (status, body) = get(&replay, Some(ALICE)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn a_privileged_token_replays_only_with_privilege() {
    let (s, _dir) = start();
    let (_, token, rows) = sync(&s, Some(ALICE), COUNT).await;
    let replay = format!("{}/replay/{token}?RESPONSEFORMAT=csv", s.tap);
    // Without privilege the token is answered as one nobody made, with no time:
    // that someone ran a query is itself news.
    let (status, body) = get(&replay, None).await;
    assert_eq!(status, 404, "{body}");
    let (_, unknown) = get(
        &format!("{}/replay/aaaaaaaaaaaaaaaaaaaa?RESPONSEFORMAT=csv", s.tap),
        None,
    )
    .await;
    assert_eq!(
        body.replace(&token, "T"),
        unknown.replace("aaaaaaaaaaaaaaaaaaaa", "T")
    );
    assert!(!body.contains("MJD") && !body.contains("embargo"), "{body}");
    let (status, body) = get(&format!("{}/replay/{token}/record", s.tap), None).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("MJD"), "{body}");
    let (status, body) = get(&replay, Some(BOB)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, rows);
    // A public token replays for anyone.
    let (_, token, rows) = sync(&s, None, COUNT).await;
    let (status, body) = get(
        &format!("{}/replay/{token}?RESPONSEFORMAT=csv", s.tap),
        None,
    )
    .await;
    assert_eq!((status, body), (200, rows));
}

#[tokio::test]
async fn async_jobs_are_visible_only_to_their_owner() {
    let (s, _dir) = start();
    let create = |bearer: Option<&'static str>| {
        let url = format!("{}/async", s.tap);
        async move {
            let r = with(client().post(url), bearer)
                .form(&[
                    ("LANG", "ADQL"),
                    ("QUERY", COUNT),
                    ("RESPONSEFORMAT", "csv"),
                    ("PHASE", "RUN"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 303);
            r.headers()
                .get("location")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    let alices = create(Some(ALICE)).await;
    let anonymous = create(None).await;
    let id = alices.rsplit('/').next().unwrap().to_string();

    // Wait for both to finish, as their owners.
    for (job, bearer) in [(&alices, Some(ALICE)), (&anonymous, None)] {
        let (status, body) = get(&format!("{job}?WAIT=30&PHASE=EXECUTING"), bearer).await;
        assert_eq!(status, 200, "{body}");
        let (_, phase) = get(&format!("{job}/phase"), bearer).await;
        assert_eq!(phase.trim(), "COMPLETED");
    }
    let (_, owner) = get(&format!("{alices}/owner"), Some(ALICE)).await;
    assert_eq!(owner.trim(), "alice");

    // Nobody else reaches alice's job, by any of its resources.
    for who in [None, Some(BOB)] {
        for part in [
            "",
            "/phase",
            "/results/result",
            "/parameters",
            "/owner",
            "/error",
        ] {
            let (status, body) = get(&format!("{alices}{part}"), who).await;
            assert_eq!(status, 403, "{part} as {who:?}: {body}");
        }
        let r = with(client().delete(&alices), who).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403);
        let (_, list) = get(&format!("{}/async", s.tap), who).await;
        assert!(!list.contains(&id), "{list}");
        // Nor by spelling the id with a percent-encoded character: the router
        // decodes it, and the owner is checked on what the router decoded.
        let first = id.as_bytes()[0];
        let encoded = format!("{}/async/%{first:02X}{}", s.tap, &id[1..]);
        for part in ["", "/results/result", "/parameters"] {
            let (status, body) = get(&format!("{encoded}{part}"), who).await;
            assert_eq!(status, 403, "{encoded}{part} as {who:?}: {body}");
        }
        let r = with(client().delete(&encoded), who).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403);
        let r = with(client().post(&encoded), who)
            .form(&[("QUERY", "SELECT 1 AS x FROM ppdb.SSObject")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403);
    }
    let (_, list) = get(&format!("{}/async", s.tap), Some(ALICE)).await;
    assert!(list.contains(&id), "{list}");
    // Her list filters by phase, creation time and count.
    for (query, listed) in [
        ("PHASE=COMPLETED", 1),
        ("PHASE=PENDING", 0),
        ("AFTER=2100-01-01T00:00:00Z", 0),
        ("LAST=1", 1),
    ] {
        let (_, list) = get(&format!("{}/async?{query}", s.tap), Some(ALICE)).await;
        assert_eq!(
            list.matches("<uws:jobref").count(),
            listed,
            "{query}: {list}"
        );
    }
    // Anonymous callers cannot be told apart: none is listed another's job (its
    // id, unguessable, is what reaches it).
    let anonymous_id = anonymous.rsplit('/').next().unwrap();
    let (_, list) = get(&format!("{}/async", s.tap), None).await;
    assert!(!list.contains(anonymous_id), "{list}");
    let (status, _) = get(&anonymous, None).await;
    assert_eq!(status, 200);

    // Each job ran with its owner's privilege.
    let (_, staff) = get(&format!("{alices}/results/result"), Some(ALICE)).await;
    let (_, public) = get(&format!("{anonymous}/results/result"), None).await;
    assert_eq!(staff, sync(&s, Some(ALICE), COUNT).await.2);
    assert_eq!(public, sync(&s, None, COUNT).await.2);
    assert_ne!(staff, public);
}

#[test]
fn a_weak_or_malformed_token_file_stops_the_server_with_its_place() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("tokens.txt");
    std::fs::write(&file, "alice=short\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ppdb"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(&file)
        .env_remove("PPDB_TOKENS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tokens.txt, entry 1 (alice)") && err.contains("16"),
        "{err}"
    );
}

#[tokio::test]
async fn a_result_cut_by_the_embargo_says_so_and_the_capabilities_say_what_it_hides() {
    let (s, _dir) = start();
    let votable = |bearer: Option<&'static str>| {
        let url = format!("{}/sync", s.tap);
        async move {
            with(client().get(url), bearer)
                .query(&[("LANG", "ADQL"), ("QUERY", COUNT)])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let anonymous = votable(None).await;
    assert!(
        anonymous.contains("<INFO name=\"embargo_cutoff_mjd_tai\" value=\"61001.600000\"/>"),
        "{anonymous}"
    );
    assert!(anonymous.contains("are embargoed"), "{anonymous}");
    let privileged = votable(Some(ALICE)).await;
    assert!(!privileged.contains("embargo"), "{privileged}");
    let caps = client()
        .get(format!("{}/capabilities", s.tap))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        caps.contains("<description>Embargo: rows observed after MJD 61001.600000"),
        "{caps}"
    );
}
