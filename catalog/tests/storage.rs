//! Commits by conditional put, crash safety, compaction and vacuum, on real stores.

use testkit::chunks as support;

use std::collections::BTreeSet;
use std::time::Duration;

use catalog::log::{Action, Entry, LOG_FORMAT, try_append};
use catalog::{Catalog, IngestOutcome, TableId};
use support::{TestChunk, V, loc, rows};
use tempfile::TempDir;

fn chunk(id: i64, first_object: i64) -> TestChunk {
    let objs = (0..5)
        .map(|i| {
            vec![
                V::I(first_object + i),
                V::F(10.0 + id as f64),
                V::I(1),
                V::F(55.0 + 0.3 * i as f64),
                V::F(-30.0),
            ]
        })
        .collect();
    TestChunk::replica(
        id,
        vec![rows(
            TableId::DiaObject,
            &[
                "diaObjectId",
                "validityStartMjdTai",
                "nDiaSources",
                "ra",
                "dec",
            ],
            objs,
        )],
    )
}

async fn two_writers_one_version(url: &str) {
    let a = Catalog::open_or_create(url, 6).await.unwrap();
    let b = Catalog::open(url).await.unwrap();
    let entry = Entry {
        format: LOG_FORMAT.into(),
        version: 1,
        written_at: chrono::Utc::now(),
        action: Action::Compact {
            removed: vec![],
            added: vec![],
            retired: Default::default(),
        },
    };
    let (la, lb) = (a.location().clone(), b.location().clone());
    let (ea, eb) = (entry.clone(), entry);
    let ta = tokio::spawn(async move { try_append(&la, &ea).await });
    let tb = tokio::spawn(async move { try_append(&lb, &eb).await });
    let wins = [ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap()];
    assert_eq!(
        wins.iter().filter(|w| **w).count(),
        1,
        "exactly one writer wins entry 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_put_lets_one_writer_win_on_local_files() {
    let dir = TempDir::new().unwrap();
    two_writers_one_version(dir.path().to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_put_lets_one_writer_win_in_memory() {
    two_writers_one_version("memory://race-put/cat").await;
}

async fn racing_ingests(url: &str) {
    let chunks = TempDir::new().unwrap();
    let a = Catalog::open_or_create(url, 6).await.unwrap();
    let b = Catalog::open(url).await.unwrap();
    let same = loc(&chunk(1, 100).write(chunks.path()));
    // Both writers send the same chunk at once: it is committed exactly once.
    let (x, y) = tokio::join!(a.ingest(&same), b.ingest(&same));
    let outcomes = [x.unwrap(), y.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, IngestOutcome::Committed(_)))
            .count(),
        1
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, IngestOutcome::AlreadyCommitted { .. }))
            .count(),
        1
    );
    // Different chunks at once: both land, in some order, snapshots gap-free.
    let c2 = loc(&chunk(2, 200).write(chunks.path()));
    let c3 = loc(&chunk(3, 300).write(chunks.path()));
    let (x, y) = tokio::join!(a.ingest(&c2), b.ingest(&c3));
    let committed = [x, y]
        .into_iter()
        .filter(|r| matches!(r, Ok(IngestOutcome::Committed(_))))
        .count();
    let snaps = a.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 1 + committed);
    for (i, s) in snaps.iter().enumerate() {
        assert_eq!(s.snapshot, i as u64 + 1);
    }
    assert_eq!(
        a.read_table(TableId::DiaObject, snaps.len() as u64)
            .await
            .unwrap()
            .num_rows(),
        5 * snaps.len()
    );
}

/// An S3-compatible store on loopback, started by `.ci/run` (moto); its URL
/// comes from `PPDB_TEST_S3` (e.g. `s3://bucket/prefix`) with the `AWS_*`
/// endpoint variables. Required under CI; elsewhere the test says it skipped.
fn s3_url(name: &str) -> Option<String> {
    match std::env::var("PPDB_TEST_S3") {
        Ok(base) => Some(format!(
            "{}/{name}-{}",
            base.trim_end_matches('/'),
            uuid_like()
        )),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "PPDB_TEST_S3 must be set in CI (.ci/run starts an S3 server)"
            );
            eprintln!(
                "skipped: set PPDB_TEST_S3=s3://bucket/prefix and AWS_ENDPOINT to run against S3"
            );
            None
        }
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_put_lets_one_writer_win_on_s3() {
    if let Some(url) = s3_url("put") {
        two_writers_one_version(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_never_both_win_on_s3() {
    if let Some(url) = s3_url("race") {
        racing_ingests(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_never_both_win_on_local_files() {
    let dir = TempDir::new().unwrap();
    racing_ingests(dir.path().to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_never_both_win_in_memory() {
    racing_ingests("memory://race-ingest/cat").await;
}

#[tokio::test]
async fn files_without_a_log_entry_are_invisible_and_the_next_ingest_succeeds() {
    let dir = TempDir::new().unwrap();
    let chunks = TempDir::new().unwrap();
    let url = dir.path().to_str().unwrap();
    let cat = Catalog::open_or_create(url, 6).await.unwrap();
    cat.ingest(&loc(&chunk(1, 100).write(chunks.path())))
        .await
        .unwrap();
    let c2 = chunk(2, 200).write(chunks.path());
    cat.ingest(&loc(&c2)).await.unwrap();
    // Simulate a crash after the data files were written but before the log entry:
    // take the commit's entry away, leaving its files in place.
    std::fs::remove_file(dir.path().join("_log").join(format!("{:020}.json", 2))).unwrap();
    let cat = Catalog::open(url).await.unwrap();
    assert_eq!(cat.state().await.unwrap().latest(), 1);
    assert_eq!(
        cat.read_table(TableId::DiaObject, 1)
            .await
            .unwrap()
            .num_rows(),
        5
    );
    // The chunk commits again as snapshot 2; the orphaned files never show.
    assert!(matches!(
        cat.ingest(&loc(&c2)).await.unwrap(),
        IngestOutcome::Committed(_)
    ));
    assert_eq!(
        cat.read_table(TableId::DiaObject, 2)
            .await
            .unwrap()
            .num_rows(),
        10
    );
    // Vacuum removes the orphans and nothing a snapshot reads.
    let report = cat.vacuum(Duration::ZERO).await.unwrap();
    assert!(
        !report.deleted.is_empty(),
        "the crashed commit's files are orphans"
    );
    assert_eq!(
        cat.read_table(TableId::DiaObject, 2)
            .await
            .unwrap()
            .num_rows(),
        10
    );
}

#[tokio::test]
async fn compaction_then_vacuum_keeps_every_snapshot() {
    let dir = TempDir::new().unwrap();
    let (_chunks, dirs) = sample_chunks(800, 4);
    let url = dir.path().to_str().unwrap();
    let cat = Catalog::open_or_create(url, 6).await.unwrap();
    for d in &dirs {
        cat.ingest(&loc(d)).await.unwrap();
    }
    let latest = cat.state().await.unwrap().latest();
    let before = every_table(&cat, 0..=latest).await;
    let files_before = cat.state().await.unwrap().files.len();
    let report = cat.compact().await.unwrap();
    assert!(report.files_added < files_before);
    cat.vacuum(Duration::ZERO).await.unwrap();
    let reopened = Catalog::open(url).await.unwrap();
    let after = every_table(&reopened, 0..=latest).await;
    assert_eq!(before, after, "compaction and vacuum change no snapshot");
}

/// Maintenance compacts exactly when the latest snapshot reads some
/// partition's rows from more files than it allows (or twice as many hold
/// them), leaves no more, and changes no snapshot.
#[tokio::test]
async fn maintenance_keeps_each_partition_in_few_files_and_changes_no_snapshot() {
    let dir = TempDir::new().unwrap();
    let (_chunks, dirs) = sample_chunks(800, 12);
    let url = dir.path().to_str().unwrap();
    let cat = Catalog::open_or_create(url, 6).await.unwrap();
    let most = 3;
    let (mut compactions, mut spared, mut seen) = (0, 0, Vec::new());
    for d in &dirs {
        cat.ingest(&loc(d)).await.unwrap();
        let k = cat.state().await.unwrap().latest();
        seen.extend(every_table(&cat, k..=k).await);
        let before = piled(&cat).await;
        let over = before.latest > most || before.all > 2 * most;
        match cat.maintain(most).await.unwrap() {
            Some(report) => {
                assert!(over, "compacted at {before:?}: {report:?}");
                compactions += 1;
            }
            None => {
                assert!(!over, "{before:?} left");
                // Files only past snapshots read did not make it compact.
                spared += usize::from(before.all > most);
            }
        }
        let after = piled(&cat).await;
        assert!(after.latest <= most && after.all <= 2 * most, "{after:?}");
    }
    assert!(
        compactions >= 2 && spared >= 1,
        "{compactions} compactions, {spared} spared, in {} chunks",
        dirs.len()
    );
    let reopened = Catalog::open(url).await.unwrap();
    let after = every_table(&reopened, 1..=dirs.len() as u64).await;
    assert_eq!(seen, after, "maintenance changes no snapshot");
}

/// The most live files that hold rows of one partition.
async fn piled(cat: &Catalog) -> catalog::Piled {
    let state = cat.state().await.unwrap();
    catalog::files_per_partition(&state, state.latest())
}

/// Under an embargo, compaction merges only the files of snapshots whose
/// chunks came before the cutoff: every file it leaves holds rows of snapshots
/// on one side of it, those after it are the files ingest wrote, and no
/// snapshot changes. Without the cutoff some file holds both.
#[tokio::test]
async fn compaction_under_an_embargo_keeps_later_snapshots_out_of_older_files() {
    let (_chunks, dirs) = sample_chunks(800, 12);
    let mut mixed = Vec::new();
    for cutoff in [false, true] {
        let dir = TempDir::new().unwrap();
        let url = dir.path().to_str().unwrap();
        let cat = Catalog::open_or_create(url, 6).await.unwrap();
        for d in &dirs {
            cat.ingest(&loc(d)).await.unwrap();
        }
        let state = cat.state().await.unwrap();
        let public = 6;
        let time = state.snapshots[public as usize - 1].chunk_mjd_tai();
        assert!(state.snapshots[public as usize].chunk_mjd_tai() > time);
        let later = |state: &catalog::log::LogState| -> BTreeSet<String> {
            state
                .files
                .values()
                .filter(|f| f.entry.added_min > public)
                .map(|f| f.entry.path.clone())
                .collect()
        };
        let ingested = later(&state);
        let before = every_table(&cat, 1..=state.latest()).await;
        let cat = cat.with_embargo_cutoff(cutoff.then_some(time));
        let report = cat.compact().await.unwrap();
        assert!(report.files_removed > 0, "{report:?}");
        let state = cat.state().await.unwrap();
        mixed.push(
            state
                .files
                .values()
                .filter(|f| f.entry.added_min <= public && f.entry.added_max > public)
                .count(),
        );
        if cutoff {
            assert_eq!(
                later(&state),
                ingested,
                "the files of later snapshots stay as ingest wrote them"
            );
        }
        let reopened = Catalog::open(url).await.unwrap();
        assert_eq!(before, every_table(&reopened, 1..=state.latest()).await);
    }
    assert!(mixed[0] > 0, "without a cutoff compaction mixes snapshots");
    assert_eq!(mixed[1], 0, "under the embargo no file mixes the two sides");
}

/// After a compaction, maintenance leaves each cell's large file as it is and
/// writes the rows that arrived since beside it; no snapshot changes.
#[tokio::test]
async fn maintenance_writes_new_rows_beside_a_cell_s_large_file() {
    let dir = TempDir::new().unwrap();
    let (_chunks, dirs) = sample_chunks(800, 12);
    let url = dir.path().to_str().unwrap();
    let cat = Catalog::open_or_create(url, 6).await.unwrap();
    let (old, new) = dirs.split_at(dirs.len() - 1);
    for d in old {
        cat.ingest(&loc(d)).await.unwrap();
    }
    cat.compact().await.unwrap();
    let compacted = live_paths(&cat).await;
    for d in new {
        cat.ingest(&loc(d)).await.unwrap();
    }
    let latest = cat.state().await.unwrap().latest();
    let before = every_table(&cat, 1..=latest).await;
    let report = cat.maintain(0).await.unwrap().expect("a compaction");
    let live = live_paths(&cat).await;
    let kept = compacted.intersection(&live).count();
    assert!(kept > 0, "every large file was rewritten: {report:?}");
    assert!(report.files_added > 0, "{report:?}");
    let reopened = Catalog::open(url).await.unwrap();
    let after = every_table(&reopened, 1..=latest).await;
    assert_eq!(before, after, "maintenance changes no snapshot");
    // A second run finds the cells as it leaves them.
    assert_eq!(
        cat.maintain(0)
            .await
            .unwrap()
            .unwrap_or_default()
            .files_added,
        0
    );
}

/// Compaction lays each cell out as its current rows, its closed DiaObject
/// versions and its retired rows, one file each: the latest snapshot's scan
/// lists no file of retired rows, its current DiaObject versions lie in the
/// current files alone, earlier snapshots still read the history, no
/// snapshot changes, and a second compaction finds nothing to do.
#[tokio::test]
async fn compaction_keeps_history_out_of_the_files_the_latest_snapshot_reads() {
    use catalog::log::Part;
    let (dir, _chunks, cat) = ingested_sample().await;
    let url = dir.path().to_str().unwrap();
    let latest = cat.state().await.unwrap().latest();
    let before = every_table(&cat, 1..=latest).await;
    cat.compact().await.unwrap();
    let state = cat.state().await.unwrap();
    let parts = |table: TableId, part: Part| -> Vec<catalog::log::FileEntry> {
        state
            .files
            .values()
            .filter(|f| f.entry.table == table && f.entry.part() == part)
            .map(|f| f.entry.clone())
            .collect()
    };
    let retired = parts(TableId::DiaObject, Part::Retired);
    let closed = parts(TableId::DiaObject, Part::Closed);
    assert!(
        !retired.is_empty() && !closed.is_empty(),
        "no history written"
    );
    // The latest snapshot lists no file of retired rows; the first lists them.
    let listed = |k: u64| -> BTreeSet<String> {
        let scan = cat.scan(&state, TableId::DiaObject, k).unwrap();
        scan.files.into_iter().map(|f| f.path).collect()
    };
    assert!(retired.iter().all(|f| !listed(latest).contains(&f.path)));
    assert!(retired.iter().any(|f| listed(1).contains(&f.path)));
    // The current files hold exactly the open versions the latest snapshot shows.
    let objects = cat.read_table(TableId::DiaObject, latest).await.unwrap();
    let open = objects
        .column_by_name("validityEndMjdTai")
        .unwrap()
        .null_count();
    let current: u64 = parts(TableId::DiaObject, Part::Current)
        .iter()
        .map(|f| f.rows)
        .sum();
    assert_eq!(current, open as u64);
    assert!(
        current * 3
            < state
                .files
                .values()
                .filter(|f| f.entry.table == TableId::DiaObject)
                .map(|f| f.entry.rows)
                .sum::<u64>()
    );
    let reopened = Catalog::open(url).await.unwrap();
    assert_eq!(before, every_table(&reopened, 1..=latest).await);
    assert_eq!(cat.compact().await.unwrap().files_added, 0);
}

/// Once the snapshots retention kept for live tokens are released at the
/// same horizon, compaction leaves out the rows only they saw; every snapshot
/// still retained reads as before.
#[tokio::test]
async fn releasing_kept_snapshots_lets_compaction_drop_what_only_they_saw() {
    let (dir, _chunks, cat) = ingested_sample().await;
    let url = dir.path().to_str().unwrap();
    let latest = cat.state().await.unwrap().latest();
    let before = every_table(&cat, 6..=latest).await;
    cat.expire(6, &[3]).await.unwrap();
    cat.compact().await.unwrap();
    cat.expire(6, &[]).await.unwrap();
    let report = cat.compact().await.unwrap();
    assert!(report.rows_dropped > 0, "{report:?}");
    let reopened = Catalog::open(url).await.unwrap();
    assert_eq!(before, every_table(&reopened, 6..=latest).await);
}

/// A catalog of the sample's chunks (800 objects, 12 visits) as ingest
/// leaves them, its folder, and the chunks' folder.
async fn ingested_sample() -> (TempDir, TempDir, Catalog) {
    let dir = TempDir::new().unwrap();
    let (chunks, dirs) = sample_chunks(800, 12);
    let cat = Catalog::open_or_create(dir.path().to_str().unwrap(), 6)
        .await
        .unwrap();
    for d in &dirs {
        cat.ingest(&loc(d)).await.unwrap();
    }
    (dir, chunks, cat)
}

/// The paths of the catalog's live files.
async fn live_paths(cat: &Catalog) -> BTreeSet<String> {
    let state = cat.state().await.unwrap();
    state.files.values().map(|f| f.entry.path.clone()).collect()
}

/// Two generated nights of `visits` visits, two per chunk: the folder that
/// holds them, and the chunk folders in commit order.
fn sample_chunks(objects: usize, visits: usize) -> (TempDir, Vec<std::path::PathBuf>) {
    let chunks = TempDir::new().unwrap();
    let out = chunks.path().join("sample");
    catalog::sample::generate(
        &catalog::sample::SampleConfig {
            objects,
            nights: 2,
            visits_per_night: Some(visits),
            visits_per_chunk: 2,
            ..Default::default()
        },
        &out,
    )
    .unwrap();
    let mut dirs: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    (chunks, dirs)
}

/// Every table at each of `snapshots`, as sorted CSV lines.
async fn every_table(cat: &Catalog, snapshots: std::ops::RangeInclusive<u64>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for k in snapshots {
        for t in TableId::ALL {
            out.push(sorted_csv(&cat.read_table(t, k).await.unwrap()));
        }
    }
    out
}

fn sorted_csv(b: &arrow_array::RecordBatch) -> Vec<String> {
    let mut lines: Vec<String> = (0..b.num_rows())
        .map(|r| {
            b.columns()
                .iter()
                .map(|c| arrow::util::display::array_value_to_string(c, r).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    lines.sort();
    lines
}

/// A writer keeps the DiaObject files it wrote in memory and copies the
/// versions later chunks close from there; a writer opened afresh for every
/// chunk decodes them from storage. Both must commit the same snapshots, row
/// for row and in the same storage order.
#[tokio::test]
async fn rows_copied_from_memory_equal_rows_decoded_from_files() {
    let (_chunks, dirs) = sample_chunks(600, 6);
    let kept = TempDir::new().unwrap();
    let fresh = TempDir::new().unwrap();
    let (kept_url, fresh_url) = (
        kept.path().to_str().unwrap(),
        fresh.path().to_str().unwrap(),
    );
    let writer = Catalog::open_or_create(kept_url, 6).await.unwrap();
    Catalog::open_or_create(fresh_url, 6).await.unwrap();
    for d in &dirs {
        writer.ingest(&loc(d)).await.unwrap();
        Catalog::open(fresh_url)
            .await
            .unwrap()
            .ingest(&loc(d))
            .await
            .unwrap();
    }
    let (a, b) = (
        Catalog::open(kept_url).await.unwrap(),
        Catalog::open(fresh_url).await.unwrap(),
    );
    let latest = a.state().await.unwrap().latest();
    assert_eq!(latest, b.state().await.unwrap().latest());
    let updated: u64 = a
        .snapshots()
        .await
        .unwrap()
        .iter()
        .filter_map(|s| s.rows_updated.get(&TableId::DiaObject))
        .sum();
    assert!(
        updated > 100,
        "the sample closes stored versions ({updated})"
    );
    for k in 0..=latest {
        for t in TableId::ALL {
            let (x, y) = (
                a.read_table(t, k).await.unwrap(),
                b.read_table(t, k).await.unwrap(),
            );
            assert_eq!(x, y, "{t} at snapshot {k}");
        }
    }
}

/// A catalog opens from its newest checkpoint and the entries after it, to
/// the same state as reading every entry: a year of history is ten thousand
/// entries, and opening must not read them all.
#[tokio::test]
async fn a_catalog_opens_from_its_checkpoint_to_the_state_of_the_whole_log() {
    let dir = TempDir::new().unwrap();
    let (_chunks, dirs) = sample_chunks(600, 6);
    let url = dir.path().to_str().unwrap();
    let cat = Catalog::open_or_create(url, 6).await.unwrap();
    let (first, rest) = dirs.split_at(dirs.len() / 2);
    for d in first {
        cat.ingest(&loc(d)).await.unwrap();
    }
    cat.compact().await.unwrap();
    cat.expire(2, &[]).await.unwrap();
    let at = cat.checkpoint().await.unwrap();
    for d in rest {
        cat.ingest(&loc(d)).await.unwrap();
    }
    // What reading every entry gives.
    let mut whole = catalog::log::LogState::default();
    catalog::log::refresh(cat.location(), &mut whole, true)
        .await
        .unwrap();
    assert!(
        whole.version > at,
        "entries were written after the checkpoint"
    );
    // An entry before the checkpoint is gone: opening must not need it.
    let early = dir.path().join(catalog::log::entry_path(1));
    std::fs::remove_file(&early).unwrap();
    let reopened = Catalog::open(url).await.unwrap();
    let state = reopened.state().await.unwrap();
    // Compared as JSON values: maps compare whatever their iteration order.
    let json = |s: &catalog::log::LogState| serde_json::to_value(s).unwrap();
    assert_eq!(json(&state), json(&whole));
    assert!(!whole.files.is_empty() && whole.expired_before == 2);
    // A checkpoint that does not read back is passed over, not trusted:
    // with the only one cut short, the log is read from its start again
    // (and the entry removed above is missed).
    let cp = dir.path().join(catalog::log::checkpoint_path(at));
    let text = std::fs::read(&cp).unwrap();
    std::fs::write(&cp, &text[..text.len() / 2]).unwrap();
    assert!(
        Catalog::open(url).await.is_err() || {
            let c = Catalog::open(url).await.unwrap();
            c.state().await.is_err()
        }
    );
}
