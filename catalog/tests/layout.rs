//! How rows are laid out: HATS paths, fresh files two orders coarser than the
//! partitions compaction splits them into, one partition per object (its
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
    let cat = Catalog::open_or_create(dir.path().to_str().unwrap(), 6)
        .await
        .unwrap();
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
    // A fresh ingest writes one file per cell two orders up, holding 16 partitions.
    let fresh = home.ancestor(6 - INGEST_COARSENING);
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
    // Compaction splits it into the partitions, the object's rows in its own.
    let report = cat.compact().await.unwrap();
    assert_eq!(report.files_removed, 2);
    let state = cat.state().await.unwrap();
    for table in [TableId::DiaObject, TableId::DiaSource] {
        let scan = cat.scan(&state, table, 1).unwrap();
        assert_eq!(
            scan.files.len(),
            1,
            "{table}: one partition holds the object's rows after compaction"
        );
        let f = &scan.files[0];
        assert_eq!(f.cell, Some(home));
        assert!(
            f.path
                .starts_with(&format!("{table}/{}/", home.hats_path())),
            "{}",
            f.path
        );
        assert!(home.hats_path().starts_with("Norder=6/Dir="));
        assert_eq!(
            f.stats.spill_cells,
            vec![next_door.npix],
            "{table}: the row across the border is findable"
        );
        let (lo, hi) = f.stats.healpix_29.unwrap();
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
