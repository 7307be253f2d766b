//! A chunk's table files: Parquet read (a file the decoder panics on is
//! refused, not a crash), conformed to the served schema and its values checked.

use super::*;

pub(super) fn read_parquet(bytes: Bytes, path: &str) -> std::result::Result<RecordBatch, String> {
    // The decoders are other people's code fed bytes from outside: a panic in
    // them (arrow-ipc 59 has `unimplemented!` on some malformed schemas) must
    // refuse the chunk, not end the process.
    std::panic::catch_unwind(|| decode_parquet(bytes, path)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the reader failed");
        Err(format!("{path} is not a readable Parquet file: {why}"))
    })
}

pub(super) fn decode_parquet(bytes: Bytes, path: &str) -> std::result::Result<RecordBatch, String> {
    // Types are checked against the schema, not against the writer's embedded
    // Arrow schema, which is only one more thing to decode (and to fail on).
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options)
        .map_err(|e| format!("{path} is not a readable Parquet file: {e}"))?;
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| format!("{path}: {e}"))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| format!("{path}: {e}"))
}

pub(super) fn same_physical_type(file: &DataType, want: &DataType) -> bool {
    // Parquet stores strings one way; Arrow may read them back as any string type.
    let string =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    file == want || (string(file) && string(want))
}

/// Checks columns against the table's contract and returns them in schema order.
pub(super) fn conform(
    batch: &RecordBatch,
    ts: &TableSchema,
    file: &str,
    src: &str,
) -> Result<RecordBatch> {
    let refuse = |at: Location, m: String| Error::refused(src, Refusal::Column, at, m);
    let schema = batch.schema();
    for field in schema.fields() {
        let name = field.name();
        let Some(idx) = ts.column_index(name) else {
            return Err(refuse(
                Location::file(file).column(name),
                format!(
                    "column {name} is not defined for table {} in the schema",
                    ts.id
                ),
            ));
        };
        let want = ts.arrow.field(idx).data_type();
        if !same_physical_type(field.data_type(), want) {
            return Err(refuse(
                Location::file(file).column(name),
                format!(
                    "column {name} has type {} but the schema says {want}",
                    field.data_type()
                ),
            ));
        }
    }
    for req in &ts.required {
        if schema.index_of(req).is_err() {
            return Err(refuse(
                Location::file(file).column(*req),
                format!("required column {req} is missing"),
            ));
        }
    }
    for nn in &ts.not_null {
        let col = batch
            .column_by_name(nn)
            .expect("required columns were checked above");
        if col.null_count() > 0 {
            let row = (0..col.len()).find(|&i| col.is_null(i)).unwrap_or(0);
            return Err(refuse(
                Location::file(file).column(*nn).row(row),
                format!("column {nn} must not be NULL"),
            ));
        }
    }
    // Keep only the columns the file has, in schema order: most of a table's
    // ~100 columns are absent from a chunk, and readers see them as NULL.
    let fields: Vec<arrow_schema::FieldRef> = ts
        .arrow
        .fields()
        .iter()
        .filter(|f| schema.index_of(f.name()).is_ok())
        .cloned()
        .collect();
    let columns: Vec<ArrayRef> = fields
        .iter()
        .map(|f| {
            let c = batch
                .column_by_name(f.name())
                .expect("filtered to present columns");
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type()).map_err(Error::from)
            }
        })
        .collect::<Result<_>>()?;
    Ok(RecordBatch::try_new(
        Arc::new(ArrowSchema::new(fields)),
        columns,
    )?)
}

pub(super) fn check_values(
    batch: &RecordBatch,
    ts: &TableSchema,
    file: &str,
    src: &str,
) -> Result<()> {
    let refuse = |col: &str, row: usize, m: String| {
        Error::refused(
            src,
            Refusal::Value,
            Location::file(file).column(col).row(row),
            m,
        )
    };
    if let Some(band) = batch.column_by_name("band") {
        let band = band.as_string::<i32>();
        for (row, b) in band.iter().enumerate() {
            if let Some(b) = b
                && (b.len() != 1 || !"ugrizy".contains(b))
            {
                return Err(refuse(
                    "band",
                    row,
                    format!("band {b:?} is not one of u, g, r, i, z, y"),
                ));
            }
        }
    }
    // Felis `char`, `string` and `text` are VOTable `char`: 7-bit ASCII. Results
    // declare such columns `char`, which clients read byte by byte, so a stored
    // value outside ASCII would reach them garbled (or not at all).
    for c in &ts.felis.columns {
        if !matches!(
            c.datatype,
            Datatype::Char | Datatype::String | Datatype::Text
        ) {
            continue;
        }
        let Some(col) = batch.column_by_name(&c.name) else {
            continue;
        };
        let Some(text) = col.as_string_opt::<i32>() else {
            continue;
        };
        if text.values().is_ascii() {
            continue;
        }
        if let Some((row, v)) = text
            .iter()
            .enumerate()
            .find_map(|(row, v)| v.filter(|v| !v.is_ascii()).map(|v| (row, v)))
        {
            return Err(refuse(
                &c.name,
                row,
                format!(
                    "{v:?} is not ASCII: the schema declares {} as {}, which holds ASCII text only",
                    c.name,
                    c.datatype.as_str()
                ),
            ));
        }
    }
    if ts.id.has_position() {
        for (name, lo, hi, hi_open) in [("ra", 0.0, 360.0, true), ("dec", -90.0, 90.0, false)] {
            let col = batch
                .column_by_name(name)
                .expect("position columns are served");
            for (row, v) in col.as_primitive::<Float64Type>().iter().enumerate() {
                if let Some(v) = v {
                    let ok = v >= lo && if hi_open { v < hi } else { v <= hi };
                    if !ok {
                        let range = if hi_open {
                            format!("[{lo}, {hi})")
                        } else {
                            format!("[{lo}, {hi}]")
                        };
                        return Err(refuse(
                            name,
                            row,
                            format!("{name} = {v} is outside {range}"),
                        ));
                    }
                }
            }
        }
    }
    let only_updates: &[&str] = match ts.id {
        TableId::DiaObject => &["validityEndMjdTai"],
        TableId::DiaSource => &["timeWithdrawnMjdTai", "ssObjectReassocTimeMjdTai"],
        TableId::DiaForcedSource => &["timeWithdrawnMjdTai"],
        _ => &[],
    };
    for name in only_updates {
        if let Some(col) = batch.column_by_name(name)
            && let Some(row) = (0..col.len()).find(|&i| col.is_valid(i))
        {
            return Err(refuse(
                name,
                row,
                format!("{name} must be NULL in a chunk: only the engine or update records set it"),
            ));
        }
    }
    Ok(())
}
