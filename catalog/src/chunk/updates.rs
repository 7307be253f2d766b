//! Update records (docs/chunks.md §3): their schema, and the file read into
//! records in the order they must be applied.

use super::*;

/// The columns of the `updates` file (docs/chunks.md §3).
pub fn updates_schema() -> SchemaRef {
    let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
    Arc::new(ArrowSchema::new(vec![
        f("update_time_ns", DataType::Int64, false),
        f("update_order", DataType::Int32, false),
        f("update_type", DataType::Utf8, false),
        f("diaObjectId", DataType::Int64, true),
        f("diaSourceId", DataType::Int64, true),
        f("visit", DataType::Int64, true),
        f("detector", DataType::Int16, true),
        f("ssObjectId", DataType::Int64, true),
        f("ssObjectReassocTimeMjdTai", DataType::Float64, true),
        f("timeWithdrawnMjdTai", DataType::Float64, true),
        f("validityEndMjdTai", DataType::Float64, true),
        f("nDiaSources", DataType::Int32, true),
        f("ra", DataType::Float64, false),
        f("dec", DataType::Float64, false),
    ]))
}

pub(super) fn parse_updates(
    batch: &RecordBatch,
    file: &str,
    src: &str,
) -> Result<Vec<UpdateRecord>> {
    let want = updates_schema();
    let col_err = |c: &str, row: Option<usize>, m: String| {
        let mut at = Location::file(file).column(c);
        at.row = row;
        Error::refused(src, Refusal::Column, at, m)
    };
    for field in batch.schema().fields() {
        let Ok(w) = want.field_with_name(field.name()) else {
            return Err(col_err(
                field.name(),
                None,
                format!("column {} is not an update-record column", field.name()),
            ));
        };
        if !same_physical_type(field.data_type(), w.data_type()) {
            return Err(col_err(
                field.name(),
                None,
                format!(
                    "column {} has type {} but update records use {}",
                    field.name(),
                    field.data_type(),
                    w.data_type()
                ),
            ));
        }
    }
    let n = batch.num_rows();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for w in want.fields() {
        let c = match batch.column_by_name(w.name()) {
            Some(c) => arrow::compute::cast(c, w.data_type())?,
            None if !w.is_nullable() => {
                return Err(col_err(
                    w.name(),
                    None,
                    format!("required column {} is missing", w.name()),
                ));
            }
            None => new_null_array(w.data_type(), n),
        };
        if !w.is_nullable() && c.null_count() > 0 {
            let row = (0..n).find(|&i| c.is_null(i)).unwrap_or(0);
            return Err(col_err(
                w.name(),
                Some(row),
                format!("column {} must not be NULL", w.name()),
            ));
        }
        cols.push(c);
    }
    let i64c = |i: usize| cols[i].as_primitive::<Int64Type>();
    let f64c = |i: usize| cols[i].as_primitive::<Float64Type>();
    let (time, order, kind) = (
        i64c(0),
        cols[1].as_primitive::<Int32Type>(),
        cols[2].as_string::<i32>(),
    );
    let (obj, dsrc, visit, det) = (
        i64c(3),
        i64c(4),
        i64c(5),
        cols[6].as_primitive::<Int16Type>(),
    );
    let (sso, reassoc, withdrawn, vend) = (i64c(7), f64c(8), f64c(9), f64c(10));
    let (ndia, ra, dec) = (cols[11].as_primitive::<Int32Type>(), f64c(12), f64c(13));
    let opt = |a: &dyn Array, i: usize| a.is_valid(i);
    let mut out = Vec::with_capacity(n);
    for row in 0..n {
        let need = |name: &str, present: bool| {
            if present {
                Ok(())
            } else {
                Err(Error::refused(
                    src,
                    Refusal::Update,
                    Location::file(file).column(name).row(row),
                    format!("a {} record needs {name}", kind.value(row)),
                ))
            }
        };
        let some_i64 = |a: &arrow_array::Int64Array| a.is_valid(row).then(|| a.value(row));
        let k = match kind.value(row) {
            "withdraw_diasource" => {
                need("diaSourceId", opt(dsrc, row))?;
                need("timeWithdrawnMjdTai", opt(withdrawn, row))?;
                UpdateKind::WithdrawDiaSource {
                    dia_source_id: dsrc.value(row),
                    time: withdrawn.value(row),
                    dia_object_id: some_i64(obj),
                }
            }
            "withdraw_diaforcedsource" => {
                need("diaObjectId", opt(obj, row))?;
                need("visit", opt(visit, row))?;
                need("detector", opt(det, row))?;
                need("timeWithdrawnMjdTai", opt(withdrawn, row))?;
                UpdateKind::WithdrawDiaForcedSource {
                    dia_object_id: obj.value(row),
                    visit: visit.value(row),
                    detector: det.value(row),
                    time: withdrawn.value(row),
                }
            }
            "reassign_diasource" => {
                need("diaSourceId", opt(dsrc, row))?;
                need("ssObjectId", opt(sso, row))?;
                need("ssObjectReassocTimeMjdTai", opt(reassoc, row))?;
                UpdateKind::ReassignDiaSource {
                    dia_source_id: dsrc.value(row),
                    ss_object_id: sso.value(row),
                    time: reassoc.value(row),
                    dia_object_id: some_i64(obj),
                }
            }
            "close_diaobject_validity" => {
                need("diaObjectId", opt(obj, row))?;
                need("validityEndMjdTai", opt(vend, row))?;
                UpdateKind::CloseDiaObject {
                    dia_object_id: obj.value(row),
                    validity_end: vend.value(row),
                    n_dia_sources: ndia.is_valid(row).then(|| ndia.value(row)),
                }
            }
            "update_n_dia_sources" => {
                need("diaObjectId", opt(obj, row))?;
                need("nDiaSources", opt(ndia, row))?;
                UpdateKind::UpdateNDiaSources {
                    dia_object_id: obj.value(row),
                    n_dia_sources: ndia.value(row),
                }
            }
            other => {
                return Err(Error::refused(
                    src,
                    Refusal::Update,
                    Location::file(file).column("update_type").row(row),
                    format!(
                        "unknown update_type {other:?} (expected withdraw_diasource, \
                         withdraw_diaforcedsource, reassign_diasource, close_diaobject_validity \
                         or update_n_dia_sources)"
                    ),
                ));
            }
        };
        out.push(UpdateRecord {
            row,
            time_ns: time.value(row),
            order: order.value(row),
            ra: ra.value(row),
            dec: dec.value(row),
            kind: k,
        });
    }
    out.sort_by_key(|r| (r.time_ns, r.order));
    Ok(out)
}
