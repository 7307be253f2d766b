//! Crash safety: `ppdb ingest` killed with SIGKILL at random moments (in a
//! commit, between commits, or in the compaction its maintenance runs).
//!
//! After every kill the catalog must show only whole snapshots, each equal to
//! the same snapshot of an uninterrupted ingest (the catalog's property test
//! checks that one against the CHUNKS.md model), none of the snapshots seen
//! before the kill may be lost, and the next ingest must succeed.
//!
//! CI runs a few iterations; for a long run:
//! `PPDB_CRASH_ITERATIONS=100 cargo nextest run -p server --test crash --no-capture`
//! (`PPDB_CRASH_SEED` repeats a run's kill times).

use testkit::lines;
mod common;
use common::ppdb as support;
use support::ok;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use catalog::{Catalog, TableId};
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

/// Every table's rows at one snapshot, sorted, with the chunk it came from.
type Snapshot = (catalog::log::ChunkRef, BTreeMap<TableId, Vec<String>>);

/// All visible snapshots of a catalog, read by a fresh process-local handle.
async fn read_all(url: &str) -> Vec<Snapshot> {
    let cat = Catalog::open(url)
        .await
        .expect("the catalog opens after a kill");
    let snaps = cat.snapshots().await.expect("the log reads after a kill");
    let mut out = Vec::new();
    for (i, s) in snaps.iter().enumerate() {
        assert_eq!(s.snapshot, i as u64 + 1, "snapshots are gap-free");
        let mut tables = BTreeMap::new();
        for t in TableId::ALL {
            let batch = cat
                .read_table(t, s.snapshot)
                .await
                .unwrap_or_else(|e| panic!("{t} at snapshot {} is readable: {e}", s.snapshot));
            tables.insert(t, lines::sorted_lines(&[batch]));
        }
        out.push((s.chunk.clone(), tables));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_killed_at_random_moments_loses_nothing_and_shows_no_partial_snapshot() {
    let iterations: usize = std::env::var("PPDB_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("PPDB_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);

    let dir = TempDir::new().unwrap();
    let chunks = dir.path().join("chunks");
    let chunks = chunks.to_str().unwrap();
    // Many small chunks, so a kill can land before, inside and between commits.
    ok(&[
        "sample",
        "--out",
        chunks,
        "--objects",
        "400",
        "--nights",
        "3",
        "--visits-per-night",
        "4",
        "--visits-per-chunk",
        "1",
    ]);

    let reference = dir.path().join("reference");
    let reference = reference.to_str().unwrap();
    let started = Instant::now();
    let said = ok(&["ingest", "--catalog", reference, chunks]);
    let whole_run = started.elapsed();
    // Its maintenance (a compaction at the end) is part of the run kills land in.
    assert!(said.contains("maintenance compacted"), "{said}");
    let model = read_all(reference).await;
    assert!(model.len() >= 12, "enough chunks to crash between");

    let mut generation = 0;
    let catalog_url = |g: usize| dir.path().join(format!("crashed-{g}"));
    let mut seen = 0;
    let (mut killed, mut finished, mut verified) = (0, 0, 0);
    for _ in 0..iterations {
        let url = catalog_url(generation);
        let url = url.to_str().unwrap();
        let mut child = support::command()
            .args(["ingest", "--catalog", url, chunks])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ppdb ingest starts");
        let delay = whole_run.mul_f64(rng.random_range(0.0..1.0));
        std::thread::sleep(delay);
        // Child::kill sends SIGKILL: no destructor, no flush, no cleanup runs.
        match child.try_wait().expect("wait works") {
            Some(status) => {
                assert!(status.success(), "ingest after a crash failed: {status}");
                finished += 1;
            }
            None => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaped");
                killed += 1;
            }
        }
        if !Path::new(url).join("_log").exists() {
            // Killed before the first commit: nothing to check yet.
            continue;
        }
        // Killed between making the log's folder and its first entry: not a
        // catalog yet, which only a catalog with no commit may be.
        if let Err(catalog::Error::NotACatalog { .. }) = Catalog::open(url).await {
            assert_eq!(seen, 0, "a catalog with commits no longer opens");
            continue;
        }
        let got = read_all(url).await;
        assert!(
            got.len() >= seen,
            "a committed snapshot was lost: {} visible, {seen} before",
            got.len()
        );
        for (k, (g, m)) in got.iter().zip(&model).enumerate() {
            assert_eq!(g.0, m.0, "snapshot {} holds the chunk in order", k + 1);
            for (t, rows) in &g.1 {
                assert!(
                    rows == &m.1[t],
                    "snapshot {} of {t} differs from the uninterrupted ingest",
                    k + 1
                );
            }
        }
        verified += got.len();
        seen = got.len();
        if seen == model.len() {
            // Complete: start over, so later kills land mid-ingest again.
            generation += 1;
            seen = 0;
        }
    }

    // The next ingest succeeds and completes the catalog exactly.
    let url = catalog_url(generation);
    let url = url.to_str().unwrap();
    ok(&["ingest", "--catalog", url, chunks]);
    assert_eq!(
        read_all(url).await,
        model,
        "resumed ingest equals the model"
    );
    // What killed writers left behind is unreferenced, and vacuum removes it
    // without touching a snapshot.
    let mut orphans = 0;
    for g in 0..=generation {
        let url = catalog_url(g);
        let url = url.to_str().unwrap();
        let out = ok(&["vacuum", "--catalog", url, "--grace-seconds", "0"]);
        orphans += out
            .split("deleted ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no count in {out}"));
        assert_eq!(read_all(url).await, model, "vacuum keeps every snapshot");
    }
    println!(
        "crash: {iterations} iterations (seed {seed}): {killed} killed mid-run, {finished} finished \
         first, {generation} catalogs completed, {verified} snapshots verified against the \
         model, {orphans} files of unfinished commits vacuumed; a whole ingest of {} chunks takes {:.0} ms",
        model.len(),
        whole_run.as_secs_f64() * 1e3
    );
}
