//! Where each object's rows live. An object's *anchor* is the order-29
//! HEALPix index of its first position: every row of the object (its
//! versions, sources and forced sources) is stored in the partition of its
//! anchor and sorted by it, so a light curve is one partition read. Anchors
//! of known objects come from the index; new ones from this chunk's rows.

use super::*;

/// The anchors this chunk adds, beside those the index holds.
pub(super) struct Anchors<'i> {
    index: &'i AnchorIndex,
    /// New anchors, as the commit's index file will hold them.
    pub new: Vec<(i64, i64)>,
    chunk: HashMap<i64, i64>,
}

impl Anchors<'_> {
    /// The anchor of an object, known before this chunk or made by it.
    pub(super) fn of(&self, id: i64) -> Option<i64> {
        self.index
            .anchor(id)
            .or_else(|| self.chunk.get(&id).copied())
    }
}

impl<'a> Ingest<'a> {
    /// The anchors of the objects this chunk is the first to name: a new
    /// DiaObject's earliest version's position, else the first source's.
    pub(super) fn anchors(&self) -> Anchors<'a> {
        let mut new_anchors: Vec<(i64, i64)> = Vec::new();
        let mut chunk_anchor: HashMap<i64, i64> = HashMap::new();
        if let Some(t) = self.chunk.table(TableId::DiaObject) {
            let ids = i64s(&t.batch, "diaObjectId");
            let start = f64s(&t.batch, "validityStartMjdTai");
            let healpix = position_index(t);
            let mut first: HashMap<i64, (f64, usize)> = HashMap::new();
            for row in 0..t.batch.num_rows() {
                let id = ids.value(row);
                if self.index.anchor(id).is_none() {
                    let e = first.entry(id).or_insert((start.value(row), row));
                    if start.value(row) < e.0 {
                        *e = (start.value(row), row);
                    }
                }
            }
            let mut firsts: Vec<_> = first.into_iter().collect();
            firsts.sort_unstable_by_key(|(id, _)| *id);
            for (id, (_, row)) in firsts {
                let a = healpix(row);
                chunk_anchor.insert(id, a);
                new_anchors.push((id, a));
            }
        }
        for table in [TableId::DiaSource, TableId::DiaForcedSource] {
            if let Some(t) = self.chunk.table(table) {
                let ids = i64s(&t.batch, "diaObjectId");
                let healpix = position_index(t);
                for row in 0..t.batch.num_rows() {
                    if ids.is_valid(row)
                        && self.index.anchor(ids.value(row)).is_none()
                        && !chunk_anchor.contains_key(&ids.value(row))
                    {
                        let a = healpix(row);
                        chunk_anchor.insert(ids.value(row), a);
                        new_anchors.push((ids.value(row), a));
                    }
                }
            }
        }
        Anchors {
            index: self.index,
            new: new_anchors,
            chunk: chunk_anchor,
        }
    }
}

/// The sort anchor of each row: its object's anchor, else its own position.
pub(crate) fn sort_anchors(
    ts: &TableSchema,
    phys: &RecordBatch,
    anchor_of: &(dyn Fn(i64) -> Option<i64> + Sync),
) -> Option<Int64Array> {
    if !matches!(
        ts.id,
        TableId::DiaObject | TableId::DiaSource | TableId::DiaForcedSource
    ) {
        return None;
    }
    let obj = phys
        .column_by_name("diaObjectId")?
        .as_primitive::<Int64Type>();
    let own = phys
        .column_by_name(crate::schema::HEALPIX_29)?
        .as_primitive::<Int64Type>();
    Some(
        (0..phys.num_rows())
            .map(|r| {
                let a = obj.is_valid(r).then(|| anchor_of(obj.value(r))).flatten();
                a.or_else(|| own.is_valid(r).then(|| own.value(r)))
            })
            .collect(),
    )
}
