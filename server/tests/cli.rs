//! The `ppdb` program as a user runs it: sample, ingest, snapshots, compact, vacuum.

use std::path::Path;
use std::process::Output;

use tempfile::TempDir;

mod common;
use common::ppdb as support;
use support::{ok, sample};

fn ppdb(args: &[&str]) -> Output {
    support::command().args(args).output().expect("ppdb runs")
}

fn snapshot_lines(json: &str) -> Vec<serde_json::Value> {
    json.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn sample_ingest_and_list_snapshots() {
    let dir = TempDir::new().unwrap();
    let chunks = sample(dir.path());
    let cat = dir.path().join("cat");
    let cat = cat.to_str().unwrap();
    let out = ok(&["ingest", "--catalog", cat, &chunks]);
    assert!(
        out.contains("committed 6 chunks (0 already committed)"),
        "{out}"
    );
    let snaps = snapshot_lines(&ok(&["snapshots", "--catalog", cat, "--json"]));
    assert_eq!(snaps.len(), 6);
    for (i, s) in snaps.iter().enumerate() {
        assert_eq!(s["snapshot"], i as u64 + 1);
    }
    let table = ok(&["snapshots", "--catalog", cat]);
    assert!(
        table.contains("ppdb-replica-chunk/1") && table.contains("src-chunk/1"),
        "{table}"
    );

    // Re-sending everything is a no-op.
    let out = ok(&["ingest", "--catalog", cat, &chunks]);
    assert!(
        out.contains("committed 0 chunks (6 already committed)"),
        "{out}"
    );
    assert_eq!(
        snapshot_lines(&ok(&["snapshots", "--catalog", cat, "--json"])).len(),
        6
    );
}

#[test]
fn sample_is_deterministic_for_a_seed() {
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (ca, cb) = (sample(a.path()), sample(b.path()));
    let list = |p: &str| {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(&ca), list(&cb));
    for name in list(&ca) {
        for file in ["chunk.json", "DiaSource.parquet"] {
            let (pa, pb) = (
                Path::new(&ca).join(&name).join(file),
                Path::new(&cb).join(&name).join(file),
            );
            if pa.exists() {
                assert_eq!(
                    std::fs::read(pa).unwrap(),
                    std::fs::read(pb).unwrap(),
                    "{name:?}/{file}"
                );
            }
        }
    }
}

#[test]
fn a_refused_chunk_fails_with_its_location_and_commits_nothing() {
    let dir = TempDir::new().unwrap();
    let chunks = sample(dir.path());
    let cat = dir.path().join("cat");
    let cat = cat.to_str().unwrap();
    // Break the manifest's row count of the second chunk.
    let mut names: Vec<_> = std::fs::read_dir(&chunks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let second = names
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("chunk-")
        })
        .nth(1)
        .unwrap();
    let manifest = second.join("chunk.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["files"][0]["rows"] = serde_json::json!(123456789);
    std::fs::write(&manifest, v.to_string()).unwrap();

    let out = ppdb(&["ingest", "--catalog", cat, &chunks]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused (manifest)") && err.contains("chunk.json says 123456789"),
        "{err}"
    );
    // Only the chunk before the bad one was committed.
    assert_eq!(
        snapshot_lines(&ok(&["snapshots", "--catalog", cat, "--json"])).len(),
        1
    );
}

#[test]
fn compact_and_vacuum_keep_the_snapshot_list() {
    let dir = TempDir::new().unwrap();
    let chunks = sample(dir.path());
    let cat = dir.path().join("cat");
    let cat = cat.to_str().unwrap();
    ok(&["ingest", "--catalog", cat, &chunks]);
    let before = ok(&["snapshots", "--catalog", cat, "--json"]);
    let out = ok(&["compact", "--catalog", cat]);
    assert!(out.starts_with("compacted "), "{out}");
    let out = ok(&["vacuum", "--catalog", cat, "--grace-seconds", "0"]);
    assert!(out.starts_with("deleted "), "{out}");
    assert_eq!(ok(&["snapshots", "--catalog", cat, "--json"]), before);
}

/// The files the catalog's last log entry (a compaction) replaced.
fn replaced(cat: &Path) -> Vec<String> {
    let mut entries: Vec<_> = std::fs::read_dir(cat.join("_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    entries.sort();
    let last: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(entries.last().unwrap()).unwrap()).unwrap();
    assert_eq!(last["kind"], "compact", "{last}");
    last["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect()
}

/// Compaction under an embargo (the cutoff between the sample's two nights)
/// replaces no file of the second night's chunks; under the default window
/// (long past for the sample) it merges some of them.
#[test]
fn compact_under_an_embargo_leaves_the_files_of_later_chunks_alone() {
    let dir = TempDir::new().unwrap();
    let chunks = sample(dir.path());
    let mut kept = Vec::new();
    for embargo in [&["--embargo-until", "61000.6"][..], &[]] {
        let cat = dir.path().join(format!("cat{}", kept.len()));
        let cat_s = cat.to_str().unwrap();
        ok(&["ingest", "--no-maintenance", "--catalog", cat_s, &chunks]);
        // MJD 61000.6 (TAI) is 14:23:23 UTC on 2025-11-21.
        let public = snapshot_lines(&ok(&["snapshots", "--catalog", cat_s, "--json"]))
            .iter()
            .take_while(|s| s["chunk"]["last_update_time"].as_str().unwrap() < "2025-11-21T14:23")
            .count();
        assert!(public > 0);
        let mut args = vec!["compact", "--catalog", cat_s];
        args.extend(embargo);
        let said = ok(&args);
        assert_eq!(
            said.contains("files of chunks after the embargo cutoff (MJD 61000.60000 TAI)"),
            !embargo.is_empty(),
            "{said}"
        );
        // Ingest names a file `s` and the snapshot that wrote it.
        let removed = replaced(&cat);
        assert!(removed.iter().all(|f| f.starts_with('s')), "{removed:?}");
        kept.push(
            removed
                .iter()
                .all(|f| f[1..9].parse::<usize>().unwrap() <= public),
        );
    }
    assert_eq!(kept, [true, false]);
    for (flag, value, said) in [
        (
            "--embargo-until",
            "nan",
            "--embargo-until NaN: expected an MJD",
        ),
        (
            "--embargo-until",
            "-5",
            "--embargo-until -5: expected an MJD",
        ),
        (
            "--embargo-hours",
            "-3",
            "--embargo-hours -3: expected a number of hours",
        ),
    ] {
        let out = ppdb(&["compact", "--catalog", "x", flag, value]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(said), "{err}");
    }
}

#[test]
fn without_catalog_the_bundled_sample_is_listed_and_never_written() {
    let out = ok(&["snapshots", "--json"]);
    assert!(
        !snapshot_lines(&out).is_empty(),
        "the bundled sample has snapshots"
    );
    let out = ppdb(&["compact"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --catalog"));
}

/// Named by its path (as a new user in a fresh clone names it), the bundled
/// sample is still never written: its tokens go to the per-user state folder.
/// A copy elsewhere keeps its own, as any catalog does.
#[test]
fn the_bundled_sample_named_by_its_path_is_never_written_and_a_copy_keeps_its_own_state() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
    let query = "SELECT COUNT(*) AS n FROM ppdb.DiaObject";
    ok(&["query", "--catalog", sample.to_str().unwrap(), query]);
    assert!(
        !sample.join("_state").exists(),
        "nothing written into the source tree"
    );
    let dir = TempDir::new().unwrap();
    let copy = dir.path().join("sample");
    let status = std::process::Command::new("cp")
        .args(["-r", sample.to_str().unwrap(), copy.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    ok(&["query", "--catalog", copy.to_str().unwrap(), query]);
    assert!(
        copy.join("_state").is_dir(),
        "a copy keeps its tokens beside it"
    );
}

#[test]
fn a_missing_catalog_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope");
    let out = ppdb(&["snapshots", "--catalog", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a catalog"), "{err}");
    assert!(!missing.exists(), "reading never creates a catalog");
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "sample",
        "ingest",
        "snapshots",
        "compact",
        "vacuum",
        "query",
        "replay",
        "token",
    ] {
        let out = ok(&[cmd, "--help"]);
        assert!(out.contains("Usage: ppdb"), "{cmd}: {out}");
    }
}

const CONE: &str = "SELECT TOP 5 diaObjectId, ra, dec FROM ppdb.DiaObject \
    WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55.0, -30.0, 0.5)) = 1 ORDER BY diaObjectId";

#[test]
fn query_prints_the_result_on_stdout_only() {
    let out = ppdb(&["query", CONE]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stdout.contains("diaObjectId") && stdout.contains("| ra "),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("| 1")).count(),
        5,
        "{stdout}"
    );
    assert!(stderr.contains("snapshot: 12"), "{stderr}");
}

#[test]
fn explain_shows_the_plan_and_analyze_what_it_did() {
    let join = "SELECT COUNT(*) FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s \
                ON s.diaObjectId = o.diaObjectId WHERE o.ra > 0";
    let explain = ok(&["query", "--explain", join]);
    let analyze = ok(&["query", "--analyze", join]);
    for plan in [&explain, &analyze] {
        assert!(
            plan.contains("HashJoinExec") && plan.contains("DataSourceExec"),
            "{plan}"
        );
    }
    assert!(!explain.contains("metrics=["), "{explain}");
    assert!(
        analyze.contains("output_rows=") && analyze.contains("files_opened="),
        "{analyze}"
    );
    let both = ppdb(&["query", "--explain", "--analyze", join]);
    assert!(!both.status.success());
    // A plan is text: a format asked for beside it is refused, not ignored.
    let formatted = ppdb(&["query", "--analyze", "--format", "json", join]);
    assert!(!formatted.status.success());
    // An id lookup is read directly, and says what it read and how long it took.
    let lookup = "SELECT * FROM ppdb.DiaSource WHERE diaObjectId = 1";
    let direct = ok(&["query", "--analyze", lookup]);
    assert!(
        direct.contains("DirectReadExec") && direct.contains("elapsed="),
        "{direct}"
    );
}

#[test]
fn query_errors_go_to_stderr_with_a_position_and_fail() {
    let out = ppdb(&["query", "SELECT raa FROM ppdb.DiaObject"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("line 1, column 8: unknown column 'raa'"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean ra"), "{stderr}");
    let out = ppdb(&["query", "DROP TABLE ppdb.DiaObject"]);
    assert!(!out.status.success());
    let out = ppdb(&["query", "--format", "xlsx", CONE]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format"));
}

#[test]
fn query_writes_every_format() {
    let csv = ok(&["query", "--format", "csv", CONE]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("diaObjectId,ra,dec"));
    assert_eq!(lines.count(), 5);
    let tsv = ok(&["query", "--format", "tsv", CONE]);
    assert!(tsv.starts_with("diaObjectId\tra\tdec\n"));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["query", "--format", "json", CONE])).unwrap();
    // Columns with their metadata, then rows as arrays (the shape astroquery reads).
    assert_eq!(json["metadata"][0]["name"], "diaObjectId");
    assert_eq!(json["metadata"][1]["unit"], "deg");
    assert_eq!(json["data"].as_array().unwrap().len(), 5);
    assert!(json["data"][0][0].is_i64());
    assert_eq!(json["status"], "OK");
    let b2 = ok(&["query", "--format", "votable", CONE]);
    assert!(b2.contains("<BINARY2><STREAM encoding=\"base64\">"), "{b2}");
    let vot = ok(&["query", "--format", "votable-td", CONE]);
    assert!(vot.contains("<INFO name=\"QUERY_STATUS\" value=\"OK\"/>"));
    assert!(
        vot.contains("<FIELD name=\"ra\" datatype=\"double\" unit=\"deg\""),
        "{vot}"
    );
    assert_eq!(vot.matches("<TR>").count(), 5);
    assert!(vot.contains("<INFO name=\"query_token\""), "{vot}");
    assert!(vot.contains("FOR SYSTEM_TIME AS OF 12"), "{vot}");
    let out = ppdb(&["query", "--format", "parquet", CONE]);
    assert!(out.status.success());
    assert!(out.stdout.starts_with(b"PAR1") && out.stdout.ends_with(b"PAR1"));
}

#[test]
fn query_reads_an_earlier_snapshot_and_cuts_at_maxrec() {
    let count = |args: &[&str]| -> String {
        let csv = ok(args);
        csv.lines().nth(1).unwrap_or_default().to_string()
    };
    let q = "SELECT COUNT(*) AS n FROM ppdb.DiaSource";
    assert_eq!(
        count(&["query", "--format", "csv", "--as-of", "1", q]),
        "761"
    );
    assert_eq!(count(&["query", "--format", "csv", q]), "14494");
    let out = ppdb(&[
        "query",
        "--maxrec",
        "3",
        "SELECT diaSourceId FROM ppdb.DiaSource",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("more rows exist"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("rows: 3 (cut by --maxrec)"));
    let out = ppdb(&[
        "query",
        "--as-of",
        "1",
        "SELECT COUNT(*) FROM ppdb.DiaSource FOR SYSTEM_TIME AS OF 2",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("request asks for snapshot"));
}

/// What a catalog holds, as `ppdb query` sees it: per table, the row count and
/// a sum over an id (so a lost or doubled row shows).
fn contents(cat: &str) -> String {
    [
        "SELECT COUNT(*), SUM(diaObjectId) FROM ppdb.DiaObjectHistory",
        "SELECT COUNT(*), SUM(diaSourceId), COUNT(timeWithdrawnMjdTai) FROM ppdb.DiaSource",
        "SELECT COUNT(*), SUM(diaForcedSourceId) FROM ppdb.DiaForcedSource",
        "SELECT COUNT(*), SUM(visit) FROM ppdb.DetectorVisitProcessingSummary",
        "SELECT COUNT(*), SUM(sourceId) FROM src.PromptSource",
    ]
    .iter()
    .map(|q| ok(&["query", "--catalog", cat, "--format", "csv", q]))
    .collect::<Vec<_>>()
    .join("")
}

#[test]
fn racing_ingest_processes_commit_every_chunk_exactly_once() {
    let dir = TempDir::new().unwrap();
    let chunks = sample(dir.path());
    let alone = dir.path().join("alone");
    let alone = alone.to_str().unwrap();
    ok(&["ingest", "--catalog", alone, &chunks]);
    let expected_snapshots = snapshot_lines(&ok(&["snapshots", "--catalog", alone, "--json"]));
    let expected = contents(alone);
    for writers in [2, 4] {
        let cat = dir.path().join(format!("raced-{writers}"));
        let cat = cat.to_str().unwrap().to_string();
        // Every process is given every chunk, as redundant feeders would be.
        let children: Vec<_> = (0..writers)
            .map(|_| {
                support::command()
                    .args(["ingest", "--catalog", &cat, &chunks])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("ppdb ingest starts")
            })
            .collect();
        let mut committed = 0;
        for c in children {
            let out = c.wait_with_output().expect("ppdb ingest runs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{writers} writers: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            committed += text
                .split("committed ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no count in {text}"));
        }
        let snaps = snapshot_lines(&ok(&["snapshots", "--catalog", &cat, "--json"]));
        assert_eq!(committed, snaps.len(), "{writers} writers: each chunk once");
        assert_eq!(snaps.len(), expected_snapshots.len());
        for (i, (s, e)) in snaps.iter().zip(&expected_snapshots).enumerate() {
            assert_eq!(s["snapshot"], i as u64 + 1, "gap-free");
            assert_eq!(s["chunk"], e["chunk"], "in chunk order");
        }
        assert_eq!(contents(&cat), expected, "{writers} writers");
    }
}

#[test]
fn query_reads_its_adql_from_a_file_or_standard_input() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("q.adql");
    std::fs::write(
        &file,
        "-- a comment\nSELECT COUNT(*) AS n\nFROM ppdb.SSObject\n",
    )
    .unwrap();
    let want = ok(&[
        "query",
        "--format",
        "csv",
        "SELECT COUNT(*) AS n FROM ppdb.SSObject",
    ]);
    assert_eq!(
        ok(&["query", "--format", "csv", "-f", file.to_str().unwrap()]),
        want
    );
    for args in [
        &["query", "--format", "csv", "-"][..],
        &["query", "--format", "csv", "-f", "-"],
    ] {
        let mut child = support::command()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"SELECT COUNT(*) AS n FROM ppdb.SSObject")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), want, "{args:?}");
    }
}

#[test]
fn as_of_names_a_snapshot_by_number_mjd_or_time() {
    let snaps = snapshot_lines(&ok(&["snapshots", "--json"]));
    let third = &snaps[2];
    let committed: chrono::DateTime<chrono::Utc> =
        third["committed_at"].as_str().unwrap().parse().unwrap();
    // An MJD (UTC) a millisecond after the third commit reads the third snapshot.
    let mjd = (committed.timestamp_micros() as f64 / 86_400e6) + 40_587.0 + 1e-3 / 86_400.0;
    let count = |as_of: &str| {
        ok(&[
            "query",
            "--format",
            "csv",
            "--as-of",
            as_of,
            "SELECT COUNT(*) AS n FROM ppdb.DiaSource",
        ])
    };
    let by_number = count("3");
    assert_eq!(count(&format!("{mjd:.9}")), by_number);
    assert_eq!(count(&format!("MJD {mjd:.9}")), by_number);
    assert_ne!(
        by_number,
        count("12"),
        "the third snapshot is not the latest"
    );
    let out = ppdb(&[
        "query",
        "--as-of",
        "yesterday",
        "SELECT COUNT(*) FROM ppdb.DiaSource",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for form in ["snapshot number", "MJD", "ISO-8601"] {
        assert!(stderr.contains(form), "{form} in {stderr}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    for args in [
        &["snapshots"][..],
        &["snapshots", "--json"],
        &["query", "--format", "csv", "SELECT * FROM ppdb.DiaSource"],
    ] {
        let mut child = support::command()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -0`: the reader is gone before the first line.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_query_stops_at_its_max_duration() {
    let started = std::time::Instant::now();
    let out = ppdb(&[
        "query",
        "--max-duration",
        "1",
        "SELECT COUNT(*) AS n FROM ppdb.DiaSource AS a JOIN ppdb.DiaSource AS b ON SIN(a.psfFlux * b.psfFlux) > 0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ran longer than the execution duration of 1 s"),
        "{stderr}"
    );
    // Two hundred million pairs would take minutes; the limit stops them in seconds.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// Samples anywhere on the sky: across RA 0 and over a pole, with more than
/// 10 000 sources a visit (PromptSource ids once repeated past that), ingest
/// takes them and a cone there finds what the exact formula finds.
#[test]
fn samples_cross_ra_zero_and_the_poles_with_unique_ids() {
    for (ra, dec) in [("0.2", "0"), ("123", "-89.7")] {
        let dir = TempDir::new().unwrap();
        let chunks = dir.path().join("chunks");
        ok(&[
            "sample",
            "--out",
            chunks.to_str().unwrap(),
            "--objects",
            "30000",
            "--density",
            "20000",
            "--nights",
            "1",
            "--visits-per-night",
            "2",
            "--visits-per-chunk",
            "2",
            "--ra",
            ra,
            "--dec",
            dec,
        ]);
        let cat = dir.path().join("cat");
        let cat = cat.to_str().unwrap();
        ok(&["ingest", "--catalog", cat, chunks.to_str().unwrap()]);
        let csv = ok(&[
            "query",
            "--catalog",
            cat,
            "--format",
            "csv",
            "SELECT COUNT(*) AS n, COUNT(DISTINCT sourceId) AS d, MIN(ra) AS lo, MAX(ra) AS hi FROM src.PromptSource",
        ]);
        let row: Vec<f64> = csv
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(row[0] > 20_000.0, "{csv}");
        assert_eq!(row[0], row[1], "every sourceId is unique: {csv}");
        assert!(
            row[2] < 1.0 && row[3] > 359.0,
            "the field spans RA 0: {csv}"
        );
        // A cone on the field centre: pruned by HEALPix cells, checked by the exact formula.
        let cone = format!(
            "SELECT COUNT(*) AS n FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, 0.3)) = 1"
        );
        let exact = format!(
            "SELECT COUNT(*) AS n FROM ppdb.DiaObject WHERE 2 * ASIN(SQRT(POWER(SIN(RADIANS(dec - ({dec})) / 2), 2) + COS(RADIANS(dec)) * COS(RADIANS({dec})) * POWER(SIN(RADIANS(ra - {ra}) / 2), 2))) <= RADIANS(0.3)"
        );
        let (a, b) = (
            ok(&["query", "--catalog", cat, "--format", "csv", &cone]),
            ok(&["query", "--catalog", cat, "--format", "csv", &exact]),
        );
        assert_eq!(a, b, "cone at {ra} {dec}");
        assert_ne!(a, "n\n0\n", "the cone holds objects");
    }
}

/// The release binary was 778 MB with line tables in it: shipped builds carry
/// no debug info (the `profiling` profile keeps line tables for profilers).
#[test]
fn the_release_profile_ships_without_debug_info() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
            .unwrap();
    let section = |name: &str| -> String {
        let start = manifest
            .find(&format!("[profile.{name}]"))
            .unwrap_or_else(|| panic!("no [profile.{name}]"));
        let rest = &manifest[start + 1..];
        rest[..rest.find("\n[").unwrap_or(rest.len())].to_string()
    };
    assert!(
        section("release").contains("debug = false"),
        "{}",
        section("release")
    );
    assert!(section("profiling").contains("debug = \"line-tables-only\""));
}

#[test]
fn an_embargo_that_is_no_time_is_refused_at_start() {
    for (args, want) in [
        (["--embargo-until", "nan"], "expected an MJD"),
        (["--embargo-until", "inf"], "expected an MJD"),
        (["--embargo-hours", "1e300"], "to 876600"),
        (["--embargo-hours", "1e7"], "to 876600"),
    ] {
        let out = ppdb(&[&["serve", "--listen", "127.0.0.1:0"][..], &args[..]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains(want) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}
