//! `ppdb coverage` as a user runs it: MOCs of a generated catalog, their
//! tokens replayed, and what it says where it cannot draw. The values are
//! checked against mocpy in `conformance.rs`.

use std::process::Output;

use tempfile::TempDir;

mod common;
use common::ppdb::{command, ok, sample};

fn ppdb(args: &[&str]) -> Output {
    command().args(args).output().expect("ppdb runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The token a coverage printed.
fn token_of(o: &Output) -> String {
    let said = stderr(o);
    said.lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap_or_else(|| panic!("no token in {said}"))
        .to_string()
}

/// The area a coverage printed, in deg².
fn area_of(o: &Output) -> f64 {
    let said = stderr(o);
    let before = said.split(" deg²").next().unwrap();
    before.rsplit(", ").next().unwrap().parse().unwrap()
}

#[test]
fn coverages_print_their_snapshot_and_token_and_replay_the_same() {
    let dir = TempDir::new().unwrap();
    let chunks = sample(dir.path());
    let catalog = dir.path().join("catalog");
    let catalog = catalog.to_str().unwrap();
    ok(&[
        "ingest",
        "--catalog",
        catalog,
        "--embargo-hours",
        "0",
        &chunks,
    ]);

    let table = ppdb(&[
        "coverage",
        "table",
        "DiaObject",
        "--catalog",
        catalog,
        "--order",
        "3",
    ]);
    assert!(table.status.success(), "{}", stderr(&table));
    let moc = String::from_utf8(table.stdout.clone()).unwrap();
    assert!(moc.starts_with("3/") && moc.trim().len() > 2, "{moc}");
    let said = stderr(&table);
    assert!(
        said.starts_with("snapshot: 6, from 1 distinct cells: 1 cell of order 3"),
        "{said}"
    );
    let token = said
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap_or_else(|| panic!("{said}"));
    let again = ppdb(&["coverage", "replay", token, "--catalog", catalog]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(again.stdout, table.stdout, "a replay draws the same MOC");

    // A table's own name finds it in whichever schema holds it.
    let prompt = ppdb(&[
        "coverage",
        "table",
        "PromptSource",
        "--catalog",
        catalog,
        "--order",
        "2",
    ]);
    assert!(prompt.status.success(), "{}", stderr(&prompt));

    // Two nights of four visits of 189 detectors, into a FITS file.
    let fits = dir.path().join("where.fits");
    let drawn = ppdb(&[
        "coverage",
        "footprints",
        "--catalog",
        catalog,
        "--order",
        "6",
        "-o",
        fits.to_str().unwrap(),
    ]);
    assert!(drawn.status.success(), "{}", stderr(&drawn));
    assert!(
        stderr(&drawn).contains("from 1512 detector-visits"),
        "{}",
        stderr(&drawn)
    );
    let bytes = std::fs::read(&fits).unwrap();
    assert!(bytes.starts_with(b"SIMPLE  =") && bytes.len().is_multiple_of(2880));
    let one = ppdb(&[
        "coverage",
        "footprints",
        "--catalog",
        catalog,
        "--night",
        "last",
        "--order",
        "6",
    ]);
    assert!(
        stderr(&one).contains("from 756 detector-visits"),
        "{}",
        stderr(&one)
    );
    // A replay draws at the order the coverage was drawn at.
    let token = token_of(&drawn);
    let again = dir.path().join("again.fits");
    let replayed = ppdb(&[
        "coverage",
        "replay",
        &token,
        "--catalog",
        catalog,
        "-o",
        again.to_str().unwrap(),
    ]);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    assert_eq!(std::fs::read(&again).unwrap(), bytes, "the same FITS file");

    // Night by night: the last cumulative area is the whole footprint's, and
    // the new areas add up to it.
    let growth = ppdb(&["coverage", "growth", "--catalog", catalog, "--order", "6"]);
    assert!(growth.status.success(), "{}", stderr(&growth));
    let nights: Vec<serde_json::Value> = serde_json::from_slice(&growth.stdout).unwrap();
    assert_eq!(nights.len(), 2, "{nights:?}");
    let added: f64 = nights
        .iter()
        .map(|n| n["new_area_deg2"].as_f64().unwrap())
        .sum();
    let last = nights[1]["cumulative_area_deg2"].as_f64().unwrap();
    assert!((added - last).abs() < 1e-9, "{nights:?}");
    assert!(
        (last - area_of(&drawn)).abs() < 1e-3,
        "{last} against {}",
        stderr(&drawn)
    );
    assert_eq!(nights[0]["night"], "2025-11-26");
    assert_eq!(nights[0]["detector_visits"], 756);
}

#[test]
fn what_cannot_be_drawn_is_said() {
    // The bundled sample's detector-visits have no corners.
    let sample = ppdb(&["coverage", "footprints", "--order", "4"]);
    assert!(sample.status.success(), "{}", stderr(&sample));
    assert!(
        stderr(&sample).contains("3402 without corners, not drawn"),
        "{}",
        stderr(&sample)
    );
    for (args, says) in [
        (&["coverage", "table", "SSObject"][..], "has no ra and dec"),
        (&["coverage", "table", "Nothing"][..], "no such table"),
        (
            &["coverage", "footprints", "--night", "2025-02-30"][..],
            "is not a night",
        ),
        (&["coverage", "footprints", "--order", "14"][..], "0 to 13"),
        (
            &["coverage", "replay", "aaaaaaaaaaaaaaaaaaaa"][..],
            "unknown token",
        ),
    ] {
        let o = ppdb(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
}
