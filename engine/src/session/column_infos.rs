//! What results say of each column, read back from `TAP_SCHEMA.columns`.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};

use crate::encode::ColumnInfo;

/// What results say of each column of the served tables and of `TAP_SCHEMA`,
/// by `("schema.table", column)`: read from `TAP_SCHEMA.columns` itself, so a
/// result and the service's metadata always agree.
///
/// Text declared `char` is ASCII: ingest refuses anything else in the
/// catalog's `char` columns, and `TAP_SCHEMA`'s own values are checked here.
pub(crate) fn column_infos(
    tap: &[(&'static str, RecordBatch)],
) -> HashMap<(String, String), ColumnInfo> {
    let mut out = HashMap::new();
    let Some((_, columns)) = tap.iter().find(|(name, _)| *name == "columns") else {
        return out;
    };
    let text = |name: &str| {
        columns
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>().cloned())
    };
    let (
        Some(table),
        Some(column),
        Some(ucd),
        Some(unit),
        Some(description),
        Some(datatype),
        Some(utype),
    ) = (
        text("table_name"),
        text("column_name"),
        text("ucd"),
        text("unit"),
        text("description"),
        text("datatype"),
        text("utype"),
    )
    else {
        return out;
    };
    let value =
        |a: &arrow::array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    for i in 0..columns.num_rows() {
        let (t, c) = (table.value(i), column.value(i).trim_matches('"'));
        let ascii = datatype.value(i) == "char"
            && match t.strip_prefix("TAP_SCHEMA.") {
                Some(own) => tap
                    .iter()
                    .find(|(name, _)| *name == own)
                    .and_then(|(_, b)| b.column_by_name(c))
                    .and_then(|a| a.as_string_opt::<i32>())
                    .is_some_and(|a| a.iter().flatten().all(str::is_ascii)),
                None => true,
            };
        out.insert(
            (t.to_string(), c.to_string()),
            ColumnInfo {
                unit: value(&unit, i),
                ucd: value(&ucd, i),
                utype: value(&utype, i),
                description: value(&description, i),
                geometry: None,
                ascii,
                tai: !t.starts_with("TAP_SCHEMA.")
                    && value(&unit, i).as_deref() == Some("d")
                    && (c.to_ascii_lowercase().ends_with("mjdtai")
                        || value(&utype, i).is_some_and(|u| {
                            u.ends_with("Limits.StartTime") || u.ends_with("Limits.StopTime")
                        })),
            },
        );
    }
    out
}
