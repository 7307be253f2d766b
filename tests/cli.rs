//! The `ppdb` program as a user runs it: sample, ingest, snapshots, compact, vacuum.

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

fn ppdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ppdb"))
        .args(args)
        .env_remove("PPDB_CATALOG")
        .output()
        .expect("ppdb runs")
}

fn ok(args: &[&str]) -> String {
    let out = ppdb(args);
    assert!(
        out.status.success(),
        "ppdb {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn sample(dir: &Path) -> String {
    let out = dir.join("chunks");
    ok(&[
        "sample",
        "--out",
        out.to_str().unwrap(),
        "--objects",
        "600",
        "--nights",
        "2",
        "--visits-per-night",
        "4",
        "--visits-per-chunk",
        "2",
    ]);
    out.to_str().unwrap().to_string()
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
    for cmd in ["sample", "ingest", "snapshots", "compact", "vacuum"] {
        let out = ok(&[cmd, "--help"]);
        assert!(out.contains("Usage: ppdb"), "{cmd}: {out}");
    }
}
