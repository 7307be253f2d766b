//! HATS exports written to object stores (memory, and S3 under CI): every
//! row of the snapshot, once, in the partition whose cell holds it, sorted by
//! `_healpix_29`, and a `_metadata` that lists each file's row groups. The
//! Python readers (hats, LSDB, DuckDB) check the rest in
//! `server/tests/conformance.rs`.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use engine::export::{HatsOptions, hats};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::*;

/// Exports DiaObject and DiaSource of the bundled sample at snapshot 2 to
/// `url` and checks what was written.
async fn export_and_check(url: &str) {
    let engine = open_sample().await;
    let out = catalog::store::open(url, true).unwrap();
    let options = HatsOptions {
        query: QueryOptions {
            as_of: Some(adql::AsOf::Snapshot(2)),
            ..Default::default()
        },
        max_rows: 150,
        ..Default::default()
    };
    let tables = vec!["DiaObject".to_string(), "ppdb.DiaSource".to_string()];
    let done = hats(&engine, &tables, &out, &options, |_| {})
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    for t in &done {
        assert_eq!(t.snapshot, 2);
        let count = rows(
            &engine,
            &format!(
                "SELECT COUNT(*) AS n FROM ppdb.{} FOR SYSTEM_TIME AS OF 2",
                t.table
            ),
        )
        .await;
        let count = count[0].column(0).as_primitive::<Int64Type>().value(0) as u64;
        assert_eq!(t.rows, count, "{}", t.table);
        assert!(t.partitions > 1, "{}: one partition proves little", t.table);

        let dir = out.child(&t.table);
        let files: Vec<_> = out
            .store
            .list(Some(&dir))
            .try_collect::<Vec<_>>()
            .await
            .unwrap();
        let get = |rel: &str| {
            let path = out.child(&format!("{}/{rel}", t.table));
            let store = out.store.clone();
            async move { store.get(&path).await.unwrap().bytes().await.unwrap() }
        };
        let properties = String::from_utf8(get("hats.properties").await.to_vec()).unwrap();
        assert!(
            properties.contains(&format!("hats_nrows={count}\n")),
            "{properties}"
        );
        assert!(properties.contains("ppdb_snapshot=2\n"), "{properties}");
        assert!(properties.contains(&format!("ppdb_token={}\n", t.token)));

        let mut seen = 0u64;
        let mut paths = Vec::new();
        for f in files
            .iter()
            .filter(|f| f.location.as_ref().ends_with(".parquet"))
        {
            let rel = f
                .location
                .as_ref()
                .split("/dataset/")
                .nth(1)
                .unwrap()
                .to_string();
            // Norder=K/Dir=D/Npix=N.parquet
            let part: Vec<u64> = rel
                .split('/')
                .map(|p| {
                    let v = p.split('=').nth(1).unwrap().trim_end_matches(".parquet");
                    v.parse().unwrap()
                })
                .collect();
            let (order, dir_n, npix) = (part[0], part[1], part[2]);
            assert_eq!(dir_n, npix / 10_000 * 10_000, "{rel}");
            let shift = 2 * (29 - order);
            let body = out
                .store
                .get(&f.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(body)
                .unwrap()
                .build()
                .unwrap();
            let mut last = i64::MIN;
            for batch in reader {
                let batch = batch.unwrap();
                assert_eq!(batch.schema().field(0).name(), "_healpix_29");
                for v in batch.column(0).as_primitive::<Int64Type>().values() {
                    assert!(*v >= last, "{rel}: not sorted by _healpix_29");
                    assert_eq!((*v as u64) >> shift, npix, "{rel}: a row outside its cell");
                    last = *v;
                }
                seen += batch.num_rows() as u64;
            }
            paths.push(rel);
        }
        assert_eq!(seen, count, "{}: every row once", t.table);
        assert_eq!(paths.len(), t.partitions);

        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&get("dataset/_metadata").await)
            .unwrap();
        assert_eq!(metadata.file_metadata().num_rows() as u64, count);
        let listed: std::collections::BTreeSet<_> = metadata
            .row_groups()
            .iter()
            .map(|rg| rg.column(0).file_path().unwrap().to_string())
            .collect();
        assert_eq!(listed, paths.iter().cloned().collect());
        let csv = String::from_utf8(get("partition_info.csv").await.to_vec()).unwrap();
        assert_eq!(csv.lines().count(), t.partitions + 1, "{csv}");

        // Its margin: rows of other partitions, each near the partition it is filed under.
        let (name, margin_rows, _) = t.margin.clone().expect("rows near borders");
        assert_eq!(name, format!("{}_5arcs", t.table));
        let path = out.child(&format!("{name}/hats.properties"));
        let text = out.store.get(&path).await.unwrap().bytes().await.unwrap();
        let text = String::from_utf8(text.to_vec()).unwrap();
        assert!(text.contains("dataproduct_type=margin\n"), "{text}");
        assert!(text.contains(&format!("hats_primary_table_url={}\n", t.table)));
        assert!(
            text.contains(&format!("hats_nrows={margin_rows}\n")),
            "{text}"
        );
        assert!(margin_rows > 0 && margin_rows < count);
    }
    // A second export into the same place is refused, and changes nothing.
    let again = hats(&engine, &tables, &out, &options, |_| {})
        .await
        .unwrap_err();
    assert!(again.to_string().contains("is not empty"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hats_export_to_memory_holds_each_row_once_in_its_cell_sorted() {
    export_and_check("memory://hats-export-test").await;
}

/// The same into the S3-compatible server `.ci/run` starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hats_export_to_s3_holds_each_row_once_in_its_cell_sorted() {
    if let Some(url) = s3_url("hats") {
        export_and_check(&url).await;
    }
}
