//! The id → partition index: where every `diaObjectId` lives.
//!
//! An object is *anchored* at the order-29 HEALPix index of the first row that
//! named it. All its versions, DiaSources and DiaForcedSources are stored in
//! the partition holding that anchor, so a light curve reads one partition.
//! Each commit writes the anchors it creates as one small Parquet file.

use std::sync::Arc;

use foldhash::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;

use crate::datafile;
use crate::error::{Error, Result};
use crate::healpix::Cell;
use crate::store::Location;

/// `diaObjectId` → anchor (order-29 index) and the snapshot that made it, with
/// the index files already read.
#[derive(Debug, Clone, Default)]
pub struct AnchorIndex {
    anchors: HashMap<i64, (i64, u64)>,
    loaded: usize,
}

impl AnchorIndex {
    /// The anchor of an object, if any row has named it.
    pub fn anchor(&self, dia_object_id: i64) -> Option<i64> {
        self.anchors.get(&dia_object_id).map(|(a, _)| *a)
    }

    /// The partition of an object at the catalog's partition order, if a row
    /// named it by `snapshot`. An object first named later does not exist at
    /// `snapshot`: looking it up reads nothing, exactly as for an id nobody
    /// used, so no answer (nor the time it takes) tells of later objects.
    pub fn cell_at(&self, order: u8, dia_object_id: i64, snapshot: u64) -> Option<Cell> {
        self.anchors
            .get(&dia_object_id)
            .filter(|(_, added)| *added <= snapshot)
            .map(|(a, _)| Cell::of_healpix_29(order, *a))
    }

    /// The partition of an object at the catalog's partition order, at the latest snapshot.
    pub fn cell(&self, order: u8, dia_object_id: i64) -> Option<Cell> {
        self.anchor(dia_object_id)
            .map(|a| Cell::of_healpix_29(order, a))
    }

    /// Number of objects indexed.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether no object is indexed.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// How many index files have been read.
    pub(crate) fn files_read(&self) -> usize {
        self.loaded
    }

    /// Adds the anchors of one more index file, as just written at `snapshot`.
    pub(crate) fn extend(&mut self, anchors: &[(i64, i64)], snapshot: u64) {
        self.anchors
            .extend(anchors.iter().map(|(id, a)| (*id, (*a, snapshot))));
        self.loaded += 1;
    }

    /// Reads the index files not read yet (they only ever grow).
    pub(crate) async fn catch_up(&mut self, loc: &Location, files: &[(u64, String)]) -> Result<()> {
        for (snapshot, path) in &files[self.loaded.min(files.len())..] {
            let batch = datafile::read(loc, path, None).await?;
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let anchors = batch.column(1).as_primitive::<Int64Type>();
            for (id, a) in ids.values().iter().zip(anchors.values().iter()) {
                self.anchors.insert(*id, (*a, *snapshot));
            }
        }
        self.loaded = files.len();
        Ok(())
    }
}

/// Writes the anchors a commit creates; returns the file's relative path.
pub(crate) async fn write(loc: &Location, snapshot: u64, new: &[(i64, i64)]) -> Result<String> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("diaObjectId", DataType::Int64, false),
        Field::new("anchor_healpix_29", DataType::Int64, false),
    ]));
    let mut sorted = new.to_vec();
    sorted.sort_unstable();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(sorted.iter().map(|p| p.0))),
            Arc::new(Int64Array::from_iter_values(sorted.iter().map(|p| p.1))),
        ],
    )?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let path = format!("_index/diaObjectId/s{snapshot:08}-{}.parquet", &id[..12]);
    let wrap = |source| Error::Parquet {
        path: path.clone(),
        source,
    };
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, None).map_err(wrap)?;
    w.write(&batch).map_err(wrap)?;
    w.close().map_err(wrap)?;
    loc.store
        .put(&loc.child(&path), PutPayload::from(buf))
        .await?;
    Ok(path)
}
