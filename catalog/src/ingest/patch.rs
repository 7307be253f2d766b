//! Changed values written into a batch of rows: the chunk's own rows that
//! its update records target, and copies of stored rows.

use super::*;

/// Returns the batch with patched values written into the rows named
/// (adding, as NULL elsewhere, a patched column the batch lacks).
pub(super) fn apply_patches(
    ts: &TableSchema,
    batch: &RecordBatch,
    patches: &[(usize, Patch)],
) -> Result<RecordBatch> {
    if patches.is_empty() {
        return Ok(batch.clone());
    }
    let names: HashSet<&str> = patches
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(n, _)| *n))
        .collect();
    let mut wanted: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    wanted.extend(
        names
            .iter()
            .copied()
            .filter(|n| batch.column_by_name(n).is_none()),
    );
    let batch = with_columns(ts, batch, &wanted)?;
    let schema = batch.schema();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    for name in names {
        let idx = schema.index_of(name)?;
        let col = &cols[idx];
        let new: ArrayRef = match col.data_type() {
            DataType::Float64 => {
                let mut v: Vec<Option<f64>> = col.as_primitive::<Float64Type>().iter().collect();
                for (row, p) in patches {
                    for (n, val) in p {
                        if let (true, Val::F64(x)) = (*n == name, val) {
                            v[*row] = *x;
                        }
                    }
                }
                Arc::new(Float64Array::from(v))
            }
            DataType::Int64 => {
                let mut v: Vec<Option<i64>> = col.as_primitive::<Int64Type>().iter().collect();
                for (row, p) in patches {
                    for (n, val) in p {
                        if let (true, Val::I64(x)) = (*n == name, val) {
                            v[*row] = *x;
                        }
                    }
                }
                Arc::new(Int64Array::from(v))
            }
            DataType::Int32 => {
                let mut v: Vec<Option<i32>> = col.as_primitive::<Int32Type>().iter().collect();
                for (row, p) in patches {
                    for (n, val) in p {
                        if let (true, Val::I32(x)) = (*n == name, val) {
                            v[*row] = *x;
                        }
                    }
                }
                Arc::new(Int32Array::from(v))
            }
            other => {
                return Err(Error::Arrow(
                    arrow_schema::ArrowError::InvalidArgumentError(format!(
                        "cannot patch column {name} of type {other}"
                    )),
                ));
            }
        };
        cols[idx] = new;
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// The batch with exactly the served columns named (absent ones NULL).
fn with_columns(ts: &TableSchema, batch: &RecordBatch, names: &[&str]) -> Result<RecordBatch> {
    let fields: Vec<arrow_schema::FieldRef> = ts
        .arrow
        .fields()
        .iter()
        .filter(|f| names.contains(&f.name().as_str()))
        .cloned()
        .collect();
    datafile::conform_to(&Arc::new(arrow_schema::Schema::new(fields)), batch)
}
