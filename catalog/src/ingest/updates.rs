//! Update records (docs/chunks.md §4.3): the rows they target, found among
//! the chunk's own rows or the stored ones, checked and changed; and the
//! patches that write what changed.

use super::objects::Objects;
use super::*;
use crate::chunk::UpdateRecord;
use std::collections::hash_map::Entry;

/// A DiaSource or DiaForcedSource row an update record targets, as this
/// chunk leaves it.
#[derive(Debug, Clone)]
pub(super) struct SourceRow {
    at: RowRef,
    dia_object_id: Option<i64>,
    withdrawn: Option<f64>,
    ss_object_id: Option<i64>,
    reassoc: Option<f64>,
    dirty: bool,
}

/// A stored row: its file and position.
type Found = HashMap<Key, (String, usize)>;

/// Where the stored rows update records target are.
pub(super) struct Targets {
    sources: Found,
    forced: Found,
}

/// The DiaSource and DiaForcedSource rows update records changed.
pub(super) struct Changed {
    sources: HashMap<i64, SourceRow>,
    forced: HashMap<Key, SourceRow>,
}

/// Columns read to find and change a DiaSource (its key first).
const SOURCE_COLUMNS: [&str; 5] = [
    "diaSourceId",
    "diaObjectId",
    "timeWithdrawnMjdTai",
    "ssObjectId",
    "ssObjectReassocTimeMjdTai",
];
/// Columns read to find and change a DiaForcedSource (its key first).
const FORCED_COLUMNS: [&str; 4] = ["diaObjectId", "visit", "detector", "timeWithdrawnMjdTai"];

impl Ingest<'_> {
    /// The chunk's update records, and the file they came from.
    fn update_records(&self) -> (&[UpdateRecord], &str) {
        self.chunk
            .updates
            .as_ref()
            .map_or((&[], ""), |(file, recs)| (recs.as_slice(), file.as_str()))
    }

    /// Whether the chunk itself holds the row of `table` with this key.
    fn new_row(&self, table: TableId, key: &Key) -> Option<usize> {
        self.chunk
            .table(table)
            .and_then(|t| t.rows_by_key.get(key).copied())
    }

    /// Locates every stored row the records target, reading each candidate
    /// file once: a file is a candidate for a key when it lies near the
    /// record's position (or in its object's partition) and its id and visit
    /// ranges hold the key's; failing that, any file whose ranges do.
    pub(super) async fn locate_targets(
        &self,
        cache: &mut HashMap<String, StoredFile>,
        anchors: &Anchors<'_>,
    ) -> Result<Targets> {
        let order = self.order();
        let cell_of_object = |id: i64| anchors.of(id).map(|a| Cell::of_healpix_29(order, a));
        let mut want_src: HashMap<Key, Vec<Cell>> = HashMap::new();
        let mut want_forced: HashMap<Key, Vec<Cell>> = HashMap::new();
        for rec in self.update_records().0 {
            // A row is stored in its object's partition; one without an object
            // in its own position's, which the record's position is near.
            let near = |object: Option<i64>| match object.and_then(cell_of_object) {
                Some(cell) => vec![cell],
                None => Cell::of_position(order, rec.ra, rec.dec).with_neighbours(),
            };
            match &rec.kind {
                UpdateKind::WithdrawDiaSource {
                    dia_source_id: id,
                    dia_object_id,
                    ..
                }
                | UpdateKind::ReassignDiaSource {
                    dia_source_id: id,
                    dia_object_id,
                    ..
                } if self.new_row(TableId::DiaSource, &[*id, 0, 0]).is_none() => {
                    want_src
                        .entry([*id, 0, 0])
                        .or_default()
                        .extend(near(*dia_object_id));
                }
                UpdateKind::WithdrawDiaForcedSource {
                    dia_object_id,
                    visit,
                    detector,
                    ..
                } => {
                    let key: Key = [*dia_object_id, *visit, *detector as i64];
                    if self.new_row(TableId::DiaForcedSource, &key).is_none() {
                        want_forced
                            .entry(key)
                            .or_default()
                            .extend(near(Some(*dia_object_id)));
                    }
                }
                _ => {}
            }
        }
        let sources = self
            .find_stored(
                cache,
                TableId::DiaSource,
                want_src,
                &SOURCE_COLUMNS,
                1,
                |k| [("diaSourceId", k[0])],
            )
            .await?;
        let forced = self
            .find_stored(
                cache,
                TableId::DiaForcedSource,
                want_forced,
                &FORCED_COLUMNS,
                3,
                |k| [("diaObjectId", k[0]), ("visit", k[1])],
            )
            .await?;
        Ok(Targets { sources, forced })
    }

    /// The stored rows of `table` with the wanted keys: first in the files
    /// near each key's cells, then, for keys not found there, anywhere.
    async fn find_stored<const N: usize>(
        &self,
        cache: &mut HashMap<String, StoredFile>,
        table: TableId,
        mut wanted: HashMap<Key, Vec<Cell>>,
        cols: &[&str],
        key_len: usize,
        ranges: impl Fn(&Key) -> [(&'static str, i64); N] + Copy,
    ) -> Result<Found> {
        let near = self.candidates(table, &wanted, true, ranges);
        let mut found = self.locate(cache, &near, cols, &cols[..key_len]).await?;
        wanted.retain(|k, _| !found.contains_key(k));
        let far = self.candidates(table, &wanted, false, ranges);
        found.extend(self.locate(cache, &far, cols, &cols[..key_len]).await?);
        Ok(found)
    }

    /// The row a record targets: one of the chunk's own, else a stored one.
    fn target(
        &self,
        table: TableId,
        key: &Key,
        stored: &Found,
        cache: &HashMap<String, StoredFile>,
        read: fn(&RecordBatch, usize, RowRef) -> SourceRow,
    ) -> Option<SourceRow> {
        if let Some(row) = self.new_row(table, key) {
            let t = self.chunk.table(table).expect("the row came from it");
            return Some(read(&t.batch, row, RowRef::New(row)));
        }
        stored.get(key).map(|(path, row)| {
            let at = RowRef::Stored {
                path: Arc::from(path.as_str()),
                pos: *row as u32,
            };
            read(&cache[path].batch, *row, at)
        })
    }

    /// Applies every update record in order, refusing one whose target does
    /// not exist or cannot take it (already withdrawn, closed, another object's).
    pub(super) fn apply_updates(
        &self,
        cache: &HashMap<String, StoredFile>,
        targets: &Targets,
        objects: &mut Objects,
    ) -> Result<Changed> {
        let mut changed = Changed {
            sources: HashMap::new(),
            forced: HashMap::new(),
        };
        let (updates, file) = self.update_records();
        for rec in updates {
            let at = |col: &str| Location::file(file).column(col).row(rec.row);
            match &rec.kind {
                UpdateKind::WithdrawDiaSource {
                    dia_source_id: id,
                    dia_object_id,
                    ..
                }
                | UpdateKind::ReassignDiaSource {
                    dia_source_id: id,
                    dia_object_id,
                    ..
                } => {
                    if !changed.sources.contains_key(id) {
                        let key = [*id, 0, 0];
                        let table = TableId::DiaSource;
                        let Some(found) =
                            self.target(table, &key, &targets.sources, cache, source_row)
                        else {
                            return Err(self.refuse(
                                Refusal::Update,
                                at("diaSourceId"),
                                format!(
                                    "{} targets DiaSource {id}, which does not exist",
                                    kind_name(&rec.kind)
                                ),
                            ));
                        };
                        changed.sources.insert(*id, found);
                    }
                    let s = changed.sources.get_mut(id).expect("inserted above");
                    if let Some(o) = dia_object_id
                        && s.dia_object_id != Some(*o)
                    {
                        return Err(self.refuse(
                            Refusal::Update,
                            at("diaObjectId"),
                            format!(
                                "record says DiaSource {id} belongs to DiaObject {o}, but it belongs to {}",
                                s.dia_object_id.map_or("none".to_string(), |v| v.to_string())
                            ),
                        ));
                    }
                    if s.withdrawn.is_some() {
                        return Err(self.refuse(
                            Refusal::Update,
                            at("diaSourceId"),
                            format!("DiaSource {id} is already withdrawn"),
                        ));
                    }
                    match rec.kind {
                        UpdateKind::WithdrawDiaSource { time, .. } => s.withdrawn = Some(time),
                        UpdateKind::ReassignDiaSource {
                            ss_object_id, time, ..
                        } => {
                            s.ss_object_id = Some(ss_object_id);
                            s.reassoc = Some(time);
                            s.dia_object_id = None;
                        }
                        _ => unreachable!("matched above"),
                    }
                    s.dirty = true;
                }
                UpdateKind::WithdrawDiaForcedSource {
                    dia_object_id,
                    visit,
                    detector,
                    time,
                } => {
                    let key: Key = [*dia_object_id, *visit, *detector as i64];
                    let named = format!("DiaForcedSource ({dia_object_id}, {visit}, {detector})");
                    let s = match changed.forced.entry(key) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => {
                            let table = TableId::DiaForcedSource;
                            let Some(found) =
                                self.target(table, &key, &targets.forced, cache, forced_row)
                            else {
                                return Err(self.refuse(
                                    Refusal::Update,
                                    at("diaObjectId, visit, detector"),
                                    format!(
                                        "withdraw_diaforcedsource targets {named}, which does not exist"
                                    ),
                                ));
                            };
                            e.insert(found)
                        }
                    };
                    if s.withdrawn.is_some() {
                        return Err(self.refuse(
                            Refusal::Update,
                            at("diaObjectId, visit, detector"),
                            format!("{named} is already withdrawn"),
                        ));
                    }
                    s.withdrawn = Some(*time);
                    s.dirty = true;
                }
                UpdateKind::CloseDiaObject {
                    dia_object_id: id, ..
                }
                | UpdateKind::UpdateNDiaSources {
                    dia_object_id: id, ..
                } => self.change_object(rec, *id, objects, at)?,
            }
        }
        Ok(changed)
    }

    /// Closes, or changes the source count of, an object's open version.
    fn change_object(
        &self,
        rec: &UpdateRecord,
        id: i64,
        objects: &mut Objects,
        at: impl Fn(&str) -> Location,
    ) -> Result<()> {
        let Some(last) = objects.get_mut(&id).and_then(|v| v.last_mut()) else {
            return Err(self.refuse(
                Refusal::Update,
                at("diaObjectId"),
                format!(
                    "{} targets DiaObject {id}, which does not exist",
                    kind_name(&rec.kind)
                ),
            ));
        };
        if last.end.is_some() {
            return Err(self.refuse(
                Refusal::Update,
                at("diaObjectId"),
                format!("DiaObject {id} has no open version (its latest version is closed)"),
            ));
        }
        match rec.kind {
            UpdateKind::CloseDiaObject {
                validity_end,
                n_dia_sources,
                ..
            } => {
                if validity_end < last.start {
                    return Err(self.refuse(
                        Refusal::Update,
                        at("validityEndMjdTai"),
                        format!(
                            "validityEndMjdTai {validity_end} is earlier than the open version's validityStartMjdTai {}",
                            last.start
                        ),
                    ));
                }
                last.end = Some(validity_end);
                if let Some(n) = n_dia_sources {
                    last.n_dia = Some(n);
                }
            }
            UpdateKind::UpdateNDiaSources { n_dia_sources, .. } => last.n_dia = Some(n_dia_sources),
            _ => unreachable!("only object records come here"),
        }
        Ok(())
    }
}

/// Patches: every touched row whose values differ from what is stored.
pub(super) fn patches(
    objects: &Objects,
    changed: Changed,
) -> HashMap<TableId, Vec<(RowRef, Patch)>> {
    let mut patches: HashMap<TableId, Vec<(RowRef, Patch)>> = HashMap::new();
    for versions in objects.values() {
        for v in versions {
            if v.end != v.orig_end || v.n_dia != v.orig_n_dia {
                patches.entry(TableId::DiaObject).or_default().push((
                    v.at.clone(),
                    vec![
                        ("validityEndMjdTai", Val::F64(v.end)),
                        ("nDiaSources", Val::I32(v.n_dia)),
                    ],
                ));
            }
        }
    }
    for s in changed.sources.into_values().filter(|s| s.dirty) {
        patches.entry(TableId::DiaSource).or_default().push((
            s.at,
            vec![
                ("timeWithdrawnMjdTai", Val::F64(s.withdrawn)),
                ("ssObjectId", Val::I64(s.ss_object_id)),
                ("ssObjectReassocTimeMjdTai", Val::F64(s.reassoc)),
                ("diaObjectId", Val::I64(s.dia_object_id)),
            ],
        ));
    }
    for s in changed.forced.into_values().filter(|s| s.dirty) {
        patches
            .entry(TableId::DiaForcedSource)
            .or_default()
            .push((s.at, vec![("timeWithdrawnMjdTai", Val::F64(s.withdrawn))]));
    }
    patches
}

fn kind_name(k: &UpdateKind) -> &'static str {
    match k {
        UpdateKind::WithdrawDiaSource { .. } => "withdraw_diasource",
        UpdateKind::WithdrawDiaForcedSource { .. } => "withdraw_diaforcedsource",
        UpdateKind::ReassignDiaSource { .. } => "reassign_diasource",
        UpdateKind::CloseDiaObject { .. } => "close_diaobject_validity",
        UpdateKind::UpdateNDiaSources { .. } => "update_n_dia_sources",
    }
}

fn opt_f64(batch: &RecordBatch, col: &str, row: usize) -> Option<f64> {
    let c = batch.column_by_name(col)?.as_primitive::<Float64Type>();
    c.is_valid(row).then(|| c.value(row))
}

fn opt_i64(batch: &RecordBatch, col: &str, row: usize) -> Option<i64> {
    let c = batch.column_by_name(col)?.as_primitive::<Int64Type>();
    c.is_valid(row).then(|| c.value(row))
}

fn source_row(batch: &RecordBatch, row: usize, at: RowRef) -> SourceRow {
    SourceRow {
        at,
        dia_object_id: opt_i64(batch, "diaObjectId", row),
        withdrawn: opt_f64(batch, "timeWithdrawnMjdTai", row),
        ss_object_id: opt_i64(batch, "ssObjectId", row),
        reassoc: opt_f64(batch, "ssObjectReassocTimeMjdTai", row),
        dirty: false,
    }
}

fn forced_row(batch: &RecordBatch, row: usize, at: RowRef) -> SourceRow {
    SourceRow {
        at,
        dia_object_id: opt_i64(batch, "diaObjectId", row),
        withdrawn: opt_f64(batch, "timeWithdrawnMjdTai", row),
        ss_object_id: None,
        reassoc: None,
        dirty: false,
    }
}
