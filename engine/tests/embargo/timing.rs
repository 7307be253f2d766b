//! How much a query reads never depends on whether embargoed rows match it.
//!
//! File, row-group and page statistics that count embargoed rows prune a scan
//! by what those rows hold: timed, a query that matches no public row ran
//! longer when embargoed rows matched it (6.6 ms against 5.2 ms on the
//! sample). A file holding rows on both sides of the cutoff is now read whole
//! for a caller under the embargo, pruned by the embargo alone, and a
//! compaction under the embargo writes no such file, so that the caller's
//! queries keep all their pruning.

use catalog::Catalog;
use tempfile::TempDir;

use super::*;

/// What the scans of an analysed plan read: their files and their counters
/// (bytes, rows, row groups and pages pruned), without times or predicates.
fn work(analysed: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in analysed.lines().filter(|l| l.contains("DataSourceExec")) {
        if let Some(files) = line.split("file_groups=").nth(1) {
            out.push(files.split(", file_type=").next().unwrap_or("").to_string());
        }
        let metrics = line.split("metrics=[").nth(1).unwrap_or("");
        out.extend(
            metrics
                .trim_end_matches(']')
                .split(", ")
                // Times, and how rows fell across threads, vary run to run;
                // so does the scan efficiency ratio, whose total a file's
                // reader sets when it is dropped, which may come after the
                // plan's metrics are read (`bytes_scanned` says the same).
                .filter(|m| {
                    !["time", "elapsed", "skew", "scan_efficiency_ratio"]
                        .iter()
                        .any(|t| m.contains(t))
                })
                .map(str::to_string),
        );
    }
    out
}

async fn analysed(engine: &Engine, adql: &str) -> Vec<String> {
    let text = engine
        .explain_analyze(adql, &options(false))
        .await
        .unwrap_or_else(|e| panic!("{adql}: {}", e.message()));
    let w = work(&text);
    assert!(!w.is_empty(), "{text}");
    w
}

/// The position of an object first seen after the cutoff.
async fn newborn_position(engine: &Engine) -> (String, String) {
    let row = lines(
        engine,
        &format!(
            "SELECT TOP 1 ra, dec FROM ppdb.DiaSource WHERE diaObjectId IN \
             (SELECT diaObjectId FROM ppdb.DiaObjectHistory GROUP BY diaObjectId \
              HAVING MIN(validityStartMjdTai) > {CUTOFF}) ORDER BY diaSourceId"
        ),
        true,
    )
    .await
    .remove(0);
    let mut parts = row.split(',').map(str::to_string);
    (parts.next().unwrap(), parts.next().unwrap())
}

/// Pairs of queries without privilege: the first matches embargoed rows only
/// (with privilege it counts some), the second nothing at all.
async fn pairs(engine: &Engine) -> Vec<(String, String)> {
    let (ra, dec) = newborn_position(engine).await;
    let flux = |q: &str| format!("SELECT {q}(psfFlux) FROM ppdb.DiaSource WHERE midpointMjdTai");
    let (public_max, hidden_max) = (
        lines(engine, &format!("{} <= {CUTOFF}", flux("MAX")), true).await,
        lines(engine, &format!("{} > {CUTOFF}", flux("MAX")), true).await,
    );
    let (public_max, hidden_max): (f64, f64) = (
        public_max[0].parse().unwrap(),
        hidden_max[0].parse().unwrap(),
    );
    assert!(hidden_max > public_max, "{hidden_max} {public_max}");
    // Between the two (the values above are rounded for display).
    let above_public = (public_max + hidden_max) / 2.0;
    let count = "SELECT COUNT(*) FROM ppdb";
    let cone = |ra: &str, dec: &str| {
        format!(
            "{count}.DiaSource WHERE \
             1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, 1.0/3600))"
        )
    };
    vec![
        (
            format!("{count}.DiaForcedSource WHERE midpointMjdTai > 61001.7"),
            format!("{count}.DiaForcedSource WHERE midpointMjdTai > 61010"),
        ),
        (
            format!("{count}.DiaSource WHERE psfFlux > {above_public}"),
            format!("{count}.DiaSource WHERE psfFlux > 1e30"),
        ),
        (cone(&ra, &dec), cone("10", "-80")),
    ]
}

/// The bundled sample was compacted across the cutoff: every file holds rows
/// of both sides, and is read whole, whatever the query, by a caller under
/// the embargo. A query matching only embargoed rows reads what one matching
/// nothing reads.
#[tokio::test(flavor = "multi_thread")]
async fn a_query_reads_as_much_whether_hidden_rows_match_it_or_not() {
    let engine = open(CUTOFF, "embargo-work").await;
    for (hidden, nothing) in pairs(&engine).await {
        assert_eq!(lines(&engine, &hidden, false).await, vec!["0"], "{hidden}");
        assert_ne!(lines(&engine, &hidden, true).await, vec!["0"], "{hidden}");
        assert_eq!(
            analysed(&engine, &hidden).await,
            analysed(&engine, &nothing).await,
            "{hidden}\n{nothing}"
        );
    }
}

/// The sample's chunks in a catalog at `url`, compacted under the embargo.
async fn compacted_under_the_embargo(chunks: &[std::path::PathBuf], url: &str) -> Engine {
    let cat = Catalog::open_or_create(url, 6).await.unwrap();
    for d in chunks {
        cat.ingest(&catalog::store::open_existing_local(d).unwrap())
            .await
            .unwrap();
    }
    let report = cat
        .with_embargo_cutoff(Some(CUTOFF))
        .compact()
        .await
        .unwrap();
    assert!(report.files_removed > 0, "{report:?}");
    Engine::open_with(
        url,
        EngineOptions {
            state: Some(format!("memory://{}", url.replace('/', "_"))),
            embargo: Embargo::Until(CUTOFF),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// The sample's chunks (`ppdb sample` as the bundled sample was made) in a
/// folder, and their folders as `ppdb ingest` orders them: by chunk id, the
/// replica stream's order.
async fn sample_chunks() -> (TempDir, Vec<std::path::PathBuf>) {
    let dir = TempDir::new().unwrap();
    let chunks = dir.path().join("chunks");
    let config = catalog::sample::SampleConfig {
        objects: 3000,
        nights: 3,
        visits_per_night: Some(6),
        visits_per_chunk: 2,
        ..Default::default()
    };
    catalog::sample::generate(&config, &chunks).unwrap();
    let dirs = catalog::delivery::in_order(&[chunks])
        .await
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    (dir, dirs)
}

/// Compacted without the embargo, every file compaction wrote holds rows of
/// later chunks, or rows it placed by later commits (a version closed after
/// the cutoff lies with the retired rows, `catalog::log::Part`): a caller
/// under the embargo reads each of them whole, so an empty cone reads as much
/// as a cone on an object born after the cutoff; a privileged caller's empty
/// cone opens nothing.
#[tokio::test(flavor = "multi_thread")]
async fn compacted_across_the_cutoff_every_compacted_file_is_read_whole() {
    let (dir, dirs) = sample_chunks().await;
    let url = dir.path().join("cat");
    let url = url.to_str().unwrap();
    let cat = Catalog::open_or_create(url, 6).await.unwrap();
    for d in &dirs {
        cat.ingest(&catalog::store::open_existing_local(d).unwrap())
            .await
            .unwrap();
    }
    cat.compact().await.unwrap();
    let engine = Engine::open_with(
        url,
        EngineOptions {
            state: Some("memory://embargo-across".into()),
            embargo: Embargo::Until(CUTOFF),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (ra, dec) = newborn_position(&engine).await;
    let cone = |ra: &str, dec: &str| {
        format!(
            "SELECT COUNT(*) FROM ppdb.DiaObject WHERE \
             CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, 0.0003)) = 1"
        )
    };
    let opened = |plan: String| -> usize {
        let files: std::collections::BTreeSet<String> = plan
            .lines()
            .filter(|l| l.contains("DataSourceExec") || l.contains("DirectReadExec"))
            .flat_map(|l| {
                l.split([' ', '[', ','])
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter_map(|p| p.find(".parquet").map(|end| p[..end].to_string()))
            .collect();
        files.len()
    };
    let empty = cone("10", "-80");
    let anonymous = opened(
        engine
            .explain_analyze(&empty, &options(false))
            .await
            .unwrap(),
    );
    assert!(anonymous > 1, "{anonymous} files");
    assert_eq!(
        opened(
            engine
                .explain_analyze(&empty, &options(true))
                .await
                .unwrap()
        ),
        0
    );
    assert_eq!(
        analysed(&engine, &empty).await,
        analysed(&engine, &cone(&ra, &dec)).await
    );
}

/// Compacted under the embargo, the files of chunks after the cutoff stay as
/// ingest wrote them and the others hold public rows only: a caller under the
/// embargo then reads exactly what it would read had those chunks never
/// arrived (the same rows, files, bytes, row groups and pages), with every
/// pruning kept (an embargoed object's lookup opens no file).
#[tokio::test(flavor = "multi_thread")]
async fn compacted_under_the_embargo_a_query_reads_as_if_later_chunks_never_came() {
    let (dir, dirs) = sample_chunks().await;
    let all = dir.path().join("all");
    let all = compacted_under_the_embargo(&dirs, all.to_str().unwrap()).await;
    let public = dir.path().join("public");
    let public =
        compacted_under_the_embargo(&dirs[..PUBLIC_SNAPSHOT as usize], public.to_str().unwrap())
            .await;
    let newborn = newborn(&all).await;
    let mut queries: Vec<String> = pairs(&all).await.into_iter().map(|(h, _)| h).collect();
    for table in [
        "DiaSource",
        "DiaForcedSource",
        "DiaObject",
        "DiaObjectHistory",
    ] {
        queries.push(format!("SELECT COUNT(*) FROM ppdb.{table}"));
        // The other catalog hides nothing: its lookups take the direct path.
        let lookup = format!("SELECT * FROM ppdb.{table} WHERE diaObjectId = {newborn}");
        assert_eq!(lines(&all, &lookup, false).await, Vec::<String>::new());
        let plan = anonymous_plan(&all, &format!("ppdb.{table}"), &newborn).await;
        assert!(!plan.contains(".parquet"), "no file is read: {plan}");
    }
    // Files are named for the snapshot that wrote them; their cells and contents agree.
    let unnamed = |w: Vec<String>| -> Vec<String> {
        w.into_iter()
            .map(|m| {
                m.split(", ")
                    .map(|f| f.rsplit_once('/').map_or(f, |(cell, _)| cell).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect()
    };
    for q in &queries {
        assert_eq!(
            lines(&all, q, false).await,
            lines(&public, q, false).await,
            "{q}"
        );
        assert_eq!(
            unnamed(analysed(&all, q).await),
            unnamed(analysed(&public, q).await),
            "{q}"
        );
    }
}
