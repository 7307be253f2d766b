//! How rows are laid out: HATS paths, fresh files two orders coarser than the
//! partitions compaction splits them into (coarser still where the sky is sparse), one partition per object (its
//! versions and its sources), `_healpix_29`, page indexes, bloom filters, and the
//! statistics that let a cone find a source across a partition border.

use testkit::chunks as support;

use catalog::healpix::Cell;
use catalog::log::INGEST_COARSENING;
use catalog::{Catalog, TableId};
use object_store::ObjectStoreExt;
use parquet::file::reader::{FileReader, SerializedFileReader};
use support::{TestChunk, V, loc, rows};

fn center(cell: Cell) -> (f64, f64) {
    let (lon, lat) = cdshealpix::nested::center(cell.order, cell.npix);
    (lon.to_degrees(), lat.to_degrees())
}

#[tokio::test]
async fn an_objects_rows_share_its_partition_and_border_sources_are_in_the_stats() {
    // As a dense sky leaves them: one file per cell two orders up, holding 16 partitions.
    rows_share_a_partition(Some(0), 6 - INGEST_COARSENING).await;
}

/// A commit of few rows merges its cells up into one file per base cell (as
/// HATS keeps sparse sky at low orders), and compaction still splits it into
/// the object's partition.
#[tokio::test]
async fn a_sparse_commit_writes_one_file_per_base_cell_and_compacts_into_partitions() {
    rows_share_a_partition(None, 0).await;
}

/// One object's versions and sources, at home and across the border of its
/// partition, committed to a catalog whose commits merge cells while they hold
/// at most `cell_rows` rows: each table's fresh file covers the home cell at
/// `fresh_order`, and compaction leaves them in the home partition.
async fn rows_share_a_partition(cell_rows: Option<usize>, fresh_order: u8) {
    let dir = tempfile::TempDir::new().unwrap();
    let chunks = tempfile::TempDir::new().unwrap();
    let home = Cell::of_position(6, 55.0, -30.0);
    let next_door = *home.with_neighbours().iter().find(|c| **c != home).unwrap();
    let (ra, dec) = center(home);
    let (ra2, dec2) = center(next_door);
    let obj = rows(
        TableId::DiaObject,
        &["diaObjectId", "validityStartMjdTai", "ra", "dec"],
        vec![
            vec![V::I(7), V::F(1.0), V::F(ra), V::F(dec)],
            vec![V::I(7), V::F(2.0), V::F(ra2), V::F(dec2)],
        ],
    );
    // One source at home, one whose position lies in the next cell: both belong to object 7.
    let src = rows(
        TableId::DiaSource,
        &["diaSourceId", "diaObjectId", "ra", "dec"],
        vec![
            vec![V::I(70), V::I(7), V::F(ra), V::F(dec)],
            vec![V::I(71), V::I(7), V::F(ra2), V::F(dec2)],
        ],
    );
    let mut cat = Catalog::open_or_create(dir.path().to_str().unwrap(), 6)
        .await
        .unwrap();
    if let Some(rows) = cell_rows {
        cat = cat.with_cell_rows(rows);
    }
    cat.ingest(&loc(
        &TestChunk::replica(1, vec![obj, src]).write(chunks.path())
    ))
    .await
    .unwrap();

    let state = cat.state().await.unwrap();
    assert_eq!(
        cat.anchor_index(&state).await.unwrap().cell(6, 7),
        Some(home),
        "anchored at its first version"
    );
    let fresh = home.ancestor(fresh_order);
    for table in [TableId::DiaObject, TableId::DiaSource] {
        let scan = cat.scan(&state, table, 1).unwrap();
        assert_eq!(scan.files.len(), 1, "{table}: one fresh file");
        let f = &scan.files[0];
        assert_eq!(f.cell, Some(fresh));
        assert!(
            f.path
                .starts_with(&format!("{table}/{}/", fresh.hats_path())),
            "{}",
            f.path
        );
        // Spill is counted at the file's own order.
        let spill: Vec<u64> = [next_door.ancestor(fresh.order)]
            .into_iter()
            .filter(|c| *c != fresh)
            .map(|c| c.npix)
            .collect();
        assert_eq!(f.stats.spill_cells, spill, "{table}");
    }
    // Compaction into partitions splits it, the object's rows in their own.
    let cat = cat.with_compact_rows(0);
    let report = cat.compact().await.unwrap();
    assert_eq!(report.files_removed, 2);
    let state = cat.state().await.unwrap();
    for table in [TableId::DiaObject, TableId::DiaSource] {
        let scan = cat.scan(&state, table, 1).unwrap();
        // The object's open version and its closed one are written apart
        // (`catalog::log::Part`), both in its partition.
        let parts = if table == TableId::DiaObject { 2 } else { 1 };
        assert_eq!(
            scan.files.len(),
            parts,
            "{table}: one partition holds the object's rows after compaction"
        );
        let (mut spill, mut lo, mut hi) = (Vec::new(), i64::MAX, i64::MIN);
        for f in &scan.files {
            assert_eq!(f.cell, Some(home));
            assert!(
                f.path
                    .starts_with(&format!("{table}/{}/", home.hats_path())),
                "{}",
                f.path
            );
            spill.extend(f.stats.spill_cells.iter().copied());
            let (l, h) = f.stats.healpix_29.unwrap();
            (lo, hi) = (lo.min(l), hi.max(h));
        }
        assert!(home.hats_path().starts_with("Norder=6/Dir="));
        assert_eq!(
            spill,
            vec![next_door.npix],
            "{table}: the row across the border is findable"
        );
        assert!(lo < hi);
    }
    // The file itself: `_healpix_29` stored, a page index, a bloom filter on the id.
    let scan = cat.scan(&state, TableId::DiaSource, 1).unwrap();
    let bytes = cat
        .location()
        .store
        .get(&cat.location().child(&scan.files[0].path))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reader = SerializedFileReader::new(bytes).unwrap();
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    let col = |name: &str| {
        (0..schema.num_columns())
            .find(|&i| schema.column(i).name() == name)
            .unwrap()
    };
    let rg = meta.row_group(0);
    assert!(
        rg.column(col("diaSourceId"))
            .bloom_filter_offset()
            .is_some(),
        "bloom filter on diaSourceId"
    );
    assert!(
        rg.column(col("_healpix_29"))
            .offset_index_offset()
            .is_some(),
        "page index written"
    );
    assert!(rg.column(col("_healpix_29")).statistics().is_some());
}

/// A file of a merged cell and a later one at the ingest order inside it
/// compact into one file per partition (they once became two).
#[tokio::test]
async fn files_of_a_merged_cell_and_of_a_fine_one_inside_compact_into_one_partition() {
    let dir = tempfile::TempDir::new().unwrap();
    let chunks = tempfile::TempDir::new().unwrap();
    let url = dir.path().to_str().unwrap();
    let home = Cell::of_position(6, 55.0, -30.0);
    let (ra, dec) = center(home);
    let obj = rows(
        TableId::DiaObject,
        &["diaObjectId", "validityStartMjdTai", "ra", "dec"],
        vec![vec![V::I(7), V::F(1.0), V::F(ra), V::F(dec)]],
    );
    let source = |id: i64| {
        rows(
            TableId::DiaSource,
            &["diaSourceId", "diaObjectId", "ra", "dec"],
            vec![vec![V::I(id), V::I(7), V::F(ra), V::F(dec)]],
        )
    };
    let sparse = Catalog::open_or_create(url, 6).await.unwrap();
    sparse
        .ingest(&loc(
            &TestChunk::replica(1, vec![obj, source(70)]).write(chunks.path())
        ))
        .await
        .unwrap();
    let dense = Catalog::open_or_create(url, 6)
        .await
        .unwrap()
        .with_cell_rows(0)
        .with_compact_rows(0);
    dense
        .ingest(&loc(
            &TestChunk::replica(2, vec![source(71)]).write(chunks.path())
        ))
        .await
        .unwrap();
    let state = dense.state().await.unwrap();
    let cells: Vec<Option<Cell>> = dense
        .scan(&state, TableId::DiaSource, 2)
        .unwrap()
        .files
        .iter()
        .map(|f| f.cell)
        .collect();
    assert_eq!(
        cells,
        vec![
            Some(home.ancestor(0)),
            Some(home.ancestor(6 - INGEST_COARSENING))
        ]
    );
    dense.compact().await.unwrap();
    let state = dense.state().await.unwrap();
    let scan = dense.scan(&state, TableId::DiaSource, 2).unwrap();
    let cells: Vec<Option<Cell>> = scan.files.iter().map(|f| f.cell).collect();
    assert_eq!(cells, vec![Some(home)], "one file for the partition");
    assert_eq!(scan.files[0].rows, 2);
}
