//! The versions of every DiaObject the chunk touches: those stored (read
//! from the partitions of the objects it names) and the chunk's new ones,
//! each ending where the next begins. Update records change them next.

use super::*;

/// One version of a DiaObject, as stored and as this chunk leaves it.
#[derive(Debug, Clone)]
pub(super) struct Version {
    pub start: f64,
    pub end: Option<f64>,
    pub n_dia: Option<i32>,
    pub orig_end: Option<f64>,
    pub orig_n_dia: Option<i32>,
    pub at: RowRef,
}

/// Every version of each touched object, oldest first.
pub(super) type Objects = HashMap<i64, Vec<Version>>;

impl Ingest<'_> {
    /// The stored and new versions of the objects the chunk's DiaObject rows
    /// and update records name; refuses a new version that is already stored.
    pub(super) async fn object_versions(
        &self,
        cache: &mut HashMap<String, StoredFile>,
    ) -> Result<Objects> {
        let order = self.order();
        let obj_cols = [
            "diaObjectId",
            "validityStartMjdTai",
            "validityEndMjdTai",
            "nDiaSources",
        ];
        let mut objects: HashMap<i64, Vec<Version>> = HashMap::new();
        let mut touched: HashSet<i64> = HashSet::new();
        if let Some(t) = self.chunk.table(TableId::DiaObject) {
            let ids = i64s(&t.batch, "diaObjectId");
            touched.extend(
                ids.values()
                    .iter()
                    .filter(|id| self.index.anchor(**id).is_some()),
            );
        }
        if let Some((_, recs)) = &self.chunk.updates {
            for r in recs {
                if let UpdateKind::CloseDiaObject { dia_object_id, .. }
                | UpdateKind::UpdateNDiaSources { dia_object_id, .. } = r.kind
                    && self.index.anchor(dia_object_id).is_some()
                {
                    touched.insert(dia_object_id);
                }
            }
        }
        let cells: HashSet<Cell> = touched
            .iter()
            .filter_map(|id| self.index.cell(order, *id))
            .collect();
        let paths = self.files_in_cells(TableId::DiaObject, &cells);
        for path in &paths {
            self.read_stored(cache, path, &obj_cols).await?;
        }
        // A file holds every version its objects ever had: the cache finds the
        // touched ones (by an index once the file is looked up again).
        let mut found = Vec::new();
        for path in &paths {
            let f = &cache[path];
            let c = columns(&f.batch, &obj_cols);
            let (ids, start) = (
                c[0].as_primitive::<Int64Type>(),
                c[1].as_primitive::<Float64Type>(),
            );
            let (end, ndia) = (
                c[2].as_primitive::<Float64Type>(),
                c[3].as_primitive::<Int32Type>(),
            );
            let rows = self
                .files
                .rows_of(path, obj_cols[0], ids, touched.iter().copied());
            let p: Arc<str> = Arc::from(path.as_str());
            let mut versions = Vec::new();
            for (id, row) in rows {
                let row = row as usize;
                if f.live(row) {
                    let e = end.is_valid(row).then(|| end.value(row));
                    let n = ndia.is_valid(row).then(|| ndia.value(row));
                    versions.push((
                        id,
                        Version {
                            start: start.value(row),
                            end: e,
                            n_dia: n,
                            orig_end: e,
                            orig_n_dia: n,
                            at: RowRef::Stored {
                                path: p.clone(),
                                pos: row as u32,
                            },
                        },
                    ));
                }
            }
            found.extend(versions);
        }
        for (id, v) in found {
            objects.entry(id).or_default().push(v);
        }
        for v in objects.values_mut() {
            v.sort_by(|a, b| a.start.total_cmp(&b.start));
        }
        if let Some(t) = self.chunk.table(TableId::DiaObject) {
            let ids = i64s(&t.batch, "diaObjectId");
            let start = f64s(&t.batch, "validityStartMjdTai");
            let ndia = t
                .batch
                .column_by_name("nDiaSources")
                .expect("required column, checked on load")
                .as_primitive::<Int32Type>();
            let mut changed: HashSet<i64> = HashSet::new();
            for row in 0..t.batch.num_rows() {
                let versions = objects.entry(ids.value(row)).or_default();
                if versions.iter().any(|v| v.start == start.value(row)) {
                    return Err(self.refuse(
                        Refusal::Value,
                        Location::file(&t.path).column("diaObjectId, validityStartMjdTai").row(row),
                        format!(
                            "key (diaObjectId, validityStartMjdTai) = ({}, {}) is already committed",
                            ids.value(row),
                            start.value(row)
                        ),
                    ));
                }
                versions.push(Version {
                    start: start.value(row),
                    end: None,
                    n_dia: Some(ndia.value(row)),
                    orig_end: None,
                    orig_n_dia: Some(ndia.value(row)),
                    at: RowRef::New(row),
                });
                changed.insert(ids.value(row));
            }
            for id in changed {
                let versions = objects.get_mut(&id).expect("just inserted");
                versions.sort_by(|a, b| a.start.total_cmp(&b.start));
                // Each version ends where the next begins; the last keeps its own end
                // (NULL if open, its closure if closed; a new last version is open).
                for i in 0..versions.len().saturating_sub(1) {
                    versions[i].end = Some(versions[i + 1].start);
                }
            }
        }
        Ok(objects)
    }
}
