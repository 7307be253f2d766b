//! Row keys of a chunk's tables: built from their key columns, and unique
//! within the chunk (docs/chunks.md §4.4).

use super::*;

/// A table key's values in one row: floats by their bits, NULL as
/// `i64::MIN`, unused trailing places 0.
pub(crate) type Key = [i64; 3];

/// The keys of every row, built a column at a time.
pub(crate) fn keys_of(cols: &[ArrayRef], rows: usize) -> Result<Vec<Key>> {
    let mut keys = vec![[0i64; 3]; rows];
    for (i, c) in cols.iter().enumerate() {
        let values: Vec<i64> = match c.data_type() {
            DataType::Float64 => c
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|v| v.to_bits() as i64)
                .collect(),
            DataType::Int64 | DataType::Int32 | DataType::Int16 => {
                arrow::compute::cast(c, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            }
            _ => vec![i64::MIN; rows],
        };
        for (row, (k, v)) in keys.iter_mut().zip(values).enumerate() {
            k[i] = if c.is_null(row) { i64::MIN } else { v };
        }
    }
    Ok(keys)
}

/// Refuses keys that repeat inside the file (§4.4): the table's key, and for
/// DiaForcedSource its own id too. Part of reading the chunk, so it runs
/// while the chunk before commits. Returns the row of each value of the key.
pub(super) fn unique_keys(
    batch: &RecordBatch,
    ts: &TableSchema,
    file: &str,
    src: &str,
) -> Result<foldhash::HashMap<Key, usize>> {
    let rows = |key: &[&str]| -> Result<foldhash::HashMap<Key, usize>> {
        let cols: Vec<ArrayRef> = key
            .iter()
            .filter_map(|n| batch.column_by_name(n).cloned())
            .collect();
        let mut seen = foldhash::HashMap::with_capacity_and_hasher(
            batch.num_rows(),
            foldhash::fast::RandomState::default(),
        );
        for (row, k) in keys_of(&cols, batch.num_rows())?.into_iter().enumerate() {
            if let Some(first) = seen.insert(k, row) {
                return Err(Error::refused(
                    src,
                    Refusal::Value,
                    Location::file(file).column(key.join(", ")).row(row),
                    format!(
                        "duplicate key ({}) in the chunk: same as row {first}",
                        key.join(", ")
                    ),
                ));
            }
        }
        Ok(seen)
    };
    let by_key = rows(&ts.key)?;
    if ts.id == TableId::DiaForcedSource {
        rows(&["diaForcedSourceId"])?;
    }
    Ok(by_key)
}
