//! Queries that try to escape, against `ppdb serve` on 127.0.0.1: statements
//! that are not one SELECT in every spelling, comment and Unicode tricks, table
//! functions and file paths, upload-name tricks, deep nesting, huge lists and
//! cartesian joins. Each is refused before planning with an error that says
//! where, or stopped by the service's limits with an error that says which;
//! and the server answers normally afterwards.

use std::time::{Duration, Instant};

mod common;
use common::serve::Server;

/// How a hostile query must end.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Refused before planning, with a line and column.
    Refused,
    /// Refused, with a message that need not have a position (uploads, limits
    /// on the request itself).
    Error,
    /// Cut by the limits: an error that names the limit, or a result cut at MAXREC.
    Bounded,
}
use Expect::*;

fn nested(depth: usize, inner: &str, open: &str, close: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

fn cases() -> Vec<(String, Expect, Option<&'static str>)> {
    let mut out: Vec<(String, Expect, Option<&'static str>)> = Vec::new();
    let mut add = |q: String, e: Expect| out.push((q, e, None));
    // Statements that are not a SELECT, in many spellings.
    for q in [
        "DROP TABLE ppdb.DiaObject",
        "drop table ppdb.DiaObject",
        "DrOp TaBlE ppdb.DiaObject",
        "DELETE FROM ppdb.DiaSource",
        "delete from ppdb.DiaSource where 1=1",
        "INSERT INTO ppdb.DiaObject (diaObjectId) VALUES (1)",
        "insert into ppdb.DiaObject select * from ppdb.DiaObject",
        "UPDATE ppdb.DiaObject SET ra = 0",
        "CREATE TABLE x AS SELECT * FROM ppdb.DiaObject",
        "CREATE VIEW v AS SELECT 1",
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc'",
        "CREATE FUNCTION f() RETURNS INT RETURN 1",
        "ALTER TABLE ppdb.DiaObject ADD COLUMN x INT",
        "TRUNCATE TABLE ppdb.DiaSource",
        "GRANT ALL ON ppdb.DiaObject TO public",
        "REVOKE ALL ON ppdb.DiaObject FROM public",
        "MERGE INTO ppdb.DiaObject USING ppdb.DiaObject AS s ON 1=1 WHEN MATCHED THEN DELETE",
        "COPY ppdb.DiaObject TO '/tmp/out.csv'",
        "COPY (SELECT 1) TO '/tmp/x.parquet'",
        "SET datafusion.execution.target_partitions = 1",
        "SET TIME ZONE 'UTC'",
        "EXPLAIN SELECT ra FROM ppdb.DiaObject",
        "EXPLAIN ANALYZE SELECT ra FROM ppdb.DiaObject",
        "PREPARE q AS SELECT ra FROM ppdb.DiaObject",
        "EXECUTE q",
        "DEALLOCATE q",
        "SHOW TABLES",
        "SHOW ALL",
        "DESCRIBE ppdb.DiaObject",
        "USE ppdb",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "START TRANSACTION",
        "CALL f()",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "PRAGMA table_info(DiaObject)",
        "VACUUM",
        "ANALYZE ppdb.DiaObject",
        "INSTALL httpfs",
        "LOAD httpfs",
        "VALUES (1), (2)",
        "SELECT * INTO newtable FROM ppdb.DiaObject",
        "WITH x AS (DELETE FROM ppdb.DiaObject) SELECT 1",
        "(DROP TABLE ppdb.DiaObject)",
        // Two statements, however they are joined.
        "SELECT ra FROM ppdb.DiaObject; DROP TABLE ppdb.DiaObject",
        "SELECT ra FROM ppdb.DiaObject;DROP TABLE ppdb.DiaObject;",
        "SELECT ra FROM ppdb.DiaObject;\n\nDELETE FROM ppdb.DiaSource",
        "SELECT ra FROM ppdb.DiaObject; SELECT dec FROM ppdb.DiaObject",
        ";DROP TABLE ppdb.DiaObject",
        // Comments hiding things, or hiding nothing.
        "SELECT ra FROM ppdb.DiaObject /* ; */ ; DROP TABLE ppdb.DiaObject",
        "/* SELECT */ DROP TABLE ppdb.DiaObject",
        "-- SELECT ra FROM ppdb.DiaObject\nDROP TABLE ppdb.DiaObject",
        "SELECT /*! DROP TABLE x */ ra FROM ppdb.DiaObject; DROP TABLE x",
        "SELECT ra FROM ppdb.DiaObject /* unterminated",
        "SELECT ra FROM ppdb.DiaObject -- ; DROP TABLE x\n; DELETE FROM ppdb.DiaSource",
        // Unicode tricks: look-alike letters, invisible and reversing characters,
        // full-width punctuation, NUL.
        "SELECT ra FROM ppdb.Dia\u{041e}bject",
        "S\u{0415}LECT ra FROM ppdb.DiaObject",
        "SELECT ra FROM ppdb.DiaObject\u{FF1B} DROP TABLE ppdb.DiaObject",
        "DR\u{200B}OP TABLE ppdb.DiaObject",
        "SELECT ra FROM ppdb.DiaObject WHERE 1=1 \u{202E} ; DROP TABLE x",
        "SELECT ra FROM ppdb.DiaObject\u{0000}; DROP TABLE x",
        "SELECT \"r\u{0430}\" FROM ppdb.DiaObject",
        "SELECT ra FROM \"ppdb\".\"DIAOBJECT\"",
        // Table functions, other catalogs, file paths.
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_json('/etc/passwd')",
        "SELECT * FROM parquet_scan('data/sample/_log/00000000000000000001.json')",
        "SELECT * FROM generate_series(1, 1000000000)",
        "SELECT * FROM range(1000000000)",
        "SELECT * FROM unnest(make_array(1, 2))",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM \"/etc/passwd\"",
        "SELECT * FROM \"../../etc/passwd\"",
        "SELECT * FROM ppdb.\"../DiaObject\"",
        "SELECT * FROM \"ppdb/../../etc\".passwd",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM pg_catalog.pg_tables",
        // A catalog part is ADQL, but names no catalog: it reaches nothing else.
        "SELECT * FROM datafusion.information_schema.tables",
        "SELECT * FROM datafusion.ppdb.DiaObject.x",
        "SELECT * FROM ppdb.DiaObject, LATERAL read_parquet('x')",
        "SELECT * FROM TAP_UPLOAD.\"../../etc/passwd\"",
        // Functions that ADQL and our UDFs do not have.
        "SELECT version()",
        "SELECT now()",
        "SELECT pg_sleep(100)",
        "SELECT sleep(100)",
        "SELECT current_user",
        "SELECT arrow_typeof(ra) FROM ppdb.DiaObject",
        "SELECT regexp_replace('a', 'a', 'b')",
        "SELECT array_agg(ra) FROM ppdb.DiaObject",
        "SELECT string_agg(band, ',') FROM ppdb.DiaSource",
        "SELECT make_array(1, 2)",
        "SELECT to_timestamp(0)",
        "SELECT ra FROM ppdb.DiaObject ORDER BY random()",
        // sqlparser leniencies that are not ADQL.
        "SELECT TOP 5 DISTINCT ra FROM ppdb.DiaObject",
        "SELECT ra FROM ppdb.DiaObject LIMIT 5",
        "SELECT ra::text FROM ppdb.DiaObject",
        "SELECT ra FROM ppdb.DiaObject WHERE band ~ 'r'",
        "SELECT $1",
        "SELECT ra FROM ppdb.DiaObject QUALIFY 1",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r",
        "SELECT ra FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF 1 JOIN ppdb.DiaSource FOR SYSTEM_TIME AS OF 2 USING (diaObjectId)",
        // Huge numbers.
        "SELECT TOP 99999999999999999999999 ra FROM ppdb.DiaObject",
        "SELECT ra FROM ppdb.DiaObject OFFSET 99999999999999999999999",
    ] {
        add(q.to_string(), Refused);
    }
    // Snapshots that do not exist: refused when the snapshot is looked up.
    add(
        "SELECT ra FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF 999999".into(),
        Error,
    );
    add(
        "SELECT ra FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF '../../etc'".into(),
        Error,
    );
    // Deep nesting.
    add(
        format!(
            "SELECT {} FROM ppdb.DiaObject",
            nested(5_000, "ra", "(", ")")
        ),
        Error,
    );
    add(
        format!(
            "SELECT {} FROM ppdb.DiaObject",
            nested(3_000, "ra", "ABS(", ")")
        ),
        Error,
    );
    add(
        format!(
            "SELECT ra FROM ppdb.DiaObject WHERE ra IN {}",
            nested(2_000, "SELECT ra FROM ppdb.DiaObject", "(", ")")
        ),
        Error,
    );
    // Texts sqlparser would parse one way, fail, and parse again another way at
    // every level (found by fuzzing: seconds to hours to refuse): refused at once.
    for (open, close) in [
        ("CAST(", ""),
        ("POSITION(", ""),
        ("INTERVAL ", ""),
        ("ra[", ""),
        ("(SELECT m(*) FROM(((((", ""),
        ("COALESCE(CAST(", " AS INTEGER"),
    ] {
        add(
            format!(
                "SELECT {} FROM ppdb.DiaObject",
                nested(40, "ra", open, close)
            ),
            Error,
        );
    }
    add(
        format!(
            "SELECT s,sche&ALL{} FROM ppdb.DiaObject",
            ".EP_SCHE.MALSaES..ENW".repeat(40)
        ),
        Error,
    );
    let ors = |n: usize| {
        format!(
            "SELECT COUNT(*) FROM ppdb.DiaObject WHERE {}",
            (0..n)
                .map(|i| format!("ra = {i}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        )
    };
    // Long operator chains: the longest allowed plans; longer ones are refused.
    add(ors(250), Bounded);
    add(ors(5_000), Refused);
    add(ors(100_000), Refused);
    // A huge IN list: allowed, and bounded.
    add(
        format!(
            "SELECT COUNT(*) FROM ppdb.DiaObject WHERE diaObjectId IN ({})",
            (0..100_000)
                .map(|i| (1_000_000_000 + i).to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        Bounded,
    );
    // Cartesian joins and heavy sorts: stopped by the time and memory limits.
    add(
        "SELECT COUNT(*) FROM ppdb.DiaSource AS a, ppdb.DiaSource AS b, ppdb.DiaForcedSource AS c"
            .into(),
        Bounded,
    );
    add("SELECT a.diaSourceId, b.diaSourceId FROM ppdb.DiaSource AS a, ppdb.DiaSource AS b ORDER BY a.psfFlux * b.psfFlux".into(), Bounded);
    add("SELECT a.ra FROM ppdb.DiaForcedSource AS a JOIN ppdb.DiaForcedSource AS b ON a.band = b.band".into(), Bounded);
    add("SELECT COUNT(DISTINCT a.diaSourceId * b.diaSourceId) FROM ppdb.DiaSource AS a CROSS JOIN ppdb.DiaSource AS b".into(), Bounded);
    // Upload names that try to leave TAP_UPLOAD or break the request.
    for name in [
        "../x",
        "a/b",
        "x;DROP",
        "ppdb.DiaObject",
        "",
        "1x",
        "TAP_UPLOAD.x",
        "x y",
        "%2e%2e",
    ] {
        out.push((
            "SELECT * FROM TAP_UPLOAD.x".into(),
            Error,
            Some(Box::leak(format!("{name},param:t").into_boxed_str())),
        ));
    }
    for source in [
        "file:///etc/passwd",
        "param:../../etc/passwd",
        "ftp://example.org/x",
    ] {
        out.push((
            "SELECT * FROM TAP_UPLOAD.x".into(),
            Error,
            Some(Box::leak(format!("x,{source}").into_boxed_str())),
        ));
    }
    out
}

/// QUERY_STATUS and its message (or rows) of a VOTable.
fn status(doc: &str) -> (String, String) {
    let Some(at) = doc.find("name=\"QUERY_STATUS\" value=\"") else {
        return (String::new(), doc.chars().take(300).collect());
    };
    let rest = &doc[at + "name=\"QUERY_STATUS\" value=\"".len()..];
    let value = rest[..rest.find('"').unwrap_or(0)].to_string();
    let message = rest
        .find('>')
        .map(|i| &rest[i + 1..])
        .and_then(|m| m.find("</INFO>").map(|j| m[..j].to_string()))
        .unwrap_or_default();
    (value, message)
}

#[tokio::test]
async fn hostile_queries_are_refused_or_bounded_and_the_server_stays_up() {
    let s = Server::start(&["--max-duration", "3", "--query-memory-mb", "256"]);
    let client = reqwest::Client::new();
    let cases = cases();
    assert!(cases.len() >= 100, "only {} hostile queries", cases.len());
    let mut failures = Vec::new();
    for (query, expect, upload) in &cases {
        let mut form = vec![
            ("LANG", "ADQL"),
            ("QUERY", query.as_str()),
            ("MAXREC", "1000"),
        ];
        if let Some(u) = upload {
            form.push(("UPLOAD", u));
        }
        let started = Instant::now();
        let r = client
            .post(format!("{}/sync", s.tap))
            .form(&form)
            .send()
            .await;
        let took = started.elapsed();
        let shown: String = query.chars().take(100).collect();
        let Ok(r) = r else {
            failures.push(format!("{shown}: no response: {r:?}"));
            continue;
        };
        let code = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        let (value, message) = status(&body);
        // A refusal before the first row is a 400 (the request's fault, not the
        // service's); once rows stream the status is sent, and the error follows them.
        let ok = match expect {
            Refused => {
                code == 400
                    && value == "ERROR"
                    && message.contains("line ")
                    && message.contains("column ")
            }
            Error => code == 400 && value == "ERROR" && !message.trim().is_empty(),
            Bounded => {
                took < Duration::from_secs(30)
                    && (value == "ERROR"
                        && (code == 400 || code == 200)
                        && !message.trim().is_empty()
                        || code == 200
                            && (value == "OK" || value == "OVERFLOW")
                            && body.matches("<TR>").count() <= 1000)
            }
        };
        if !ok {
            failures.push(format!(
                "{shown} ({expect:?}): HTTP {code}, {value}: {} [{took:?}]",
                message.chars().take(200).collect::<String>()
            ));
        }
    }
    // Still up, and still right.
    let r = client
        .get(format!("{}/sync", s.tap))
        .query(&[
            ("LANG", "ADQL"),
            ("QUERY", "SELECT COUNT(*) AS n FROM ppdb.DiaObject"),
            ("RESPONSEFORMAT", "csv"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = r.text().await.unwrap();
    assert!(body.starts_with("n\n") && body.trim().len() > 2, "{body}");
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} hostile queries, each refused or bounded", cases.len());
}

#[tokio::test]
async fn paths_and_names_cannot_leave_their_prefix() {
    let s = Server::start(&[]);
    let client = reqwest::Client::new();
    // Encoded so that neither the client nor the router resolves them first.
    for path in [
        "/async/..%2F..%2Fetc%2Fpasswd",
        "/async/%2e%2e/results/result",
        "/async/..%2F_log/phase",
        "/async/%2Fetc%2Fpasswd/parameters",
        "/async/..%5C..%5Cetc/owner",
        "/replay/..%2F..%2Fetc%2Fpasswd",
        "/replay/%2Fetc%2Fpasswd/record",
        "/replay/..%2Ftokens%2Fx",
        "/replay/aaaaaaaaaaaaaaaaaaaa%00",
        "/tables/..%2F..%2Fetc",
        "/tables/ppdb.%2E%2E",
    ] {
        let r = client.get(format!("{}{path}", s.tap)).send().await.unwrap();
        let code = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(
            (400..500).contains(&code) && !body.contains("root:"),
            "{path}: HTTP {code}: {body}"
        );
    }
    let r = client
        .delete(format!("{}/async/..%2F..%2Fjobs", s.tap))
        .send()
        .await
        .unwrap();
    assert!((400..500).contains(&r.status().as_u16()));
    // And the jobs that exist are all still there.
    let r = client.get(format!("{}/async", s.tap)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
