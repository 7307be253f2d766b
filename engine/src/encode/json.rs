//! JSON results in the shape TAP services with a JSON output share (ESA's
//! archives, DaCHS) and astroquery reads: the columns with their metadata, then
//! the rows as arrays, so that a NULL keeps its place and no column depends on
//! the first row.
//!
//! ```json
//! {"metadata": [{"name": "ra", "datatype": "double", "arraysize": null,
//!                "xtype": null, "unit": "deg", "ucd": "pos.eq.ra;meta.main",
//!                "description": "..."}, ...],
//!  "info": {"snapshot": "12", "query_token": "...", ...},
//!  "data": [[55.1, -30.2, null], ...],
//!  "status": "OK"}
//! ```
//!
//! `status` comes last: `OK`, `OVERFLOW` when MAXREC cut rows, or `ERROR`
//! with an `error` message when the query failed after its first row.
//! Integers are written in full (64-bit ids stay exact for readers that keep
//! them: Python's `json`, or a reader of the source text in a browser);
//! non-finite floats, which JSON cannot carry, are `null`.

use std::fmt::Write as _;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::votable::FieldType;
use super::{Describe, Out, Status};
use crate::error::Result;

/// A JSON result, written batch by batch.
pub(crate) struct Json<'a> {
    out: Out<'a>,
    rows: u64,
}

/// A JSON string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn optional(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_string(), quoted)
}

impl<'a> Json<'a> {
    /// Writes the metadata and the start of the rows.
    pub fn new(
        schema: &SchemaRef,
        types: &[FieldType],
        describe: &Describe,
        out: Out<'a>,
    ) -> Result<Json<'a>> {
        let mut head = String::from("{\"metadata\":[");
        for (i, (f, t)) in schema.fields().iter().zip(types).enumerate() {
            let info = describe.column(i);
            if i > 0 {
                head.push(',');
            }
            let _ = write!(
                head,
                "\n{{\"name\":{},\"datatype\":{},\"arraysize\":{},\"xtype\":{},\"unit\":{},\"ucd\":{},\"description\":{}}}",
                quoted(f.name()),
                quoted(t.datatype),
                optional(t.arraysize.as_deref()),
                optional(t.xtype),
                optional(info.unit.as_deref()),
                optional(info.ucd.as_deref()),
                optional(info.description.as_deref()),
            );
        }
        head.push_str("],\n\"info\":{");
        let mut infos: Vec<(&str, &str)> = describe
            .infos
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(url) = &describe.replay_url {
            infos.push(("replay_url", url));
        }
        for (i, (k, v)) in infos.iter().enumerate() {
            if i > 0 {
                head.push(',');
            }
            let _ = write!(head, "{}:{}", quoted(k), quoted(v));
        }
        head.push_str("},\n\"data\":[");
        out.write_all(head.as_bytes())?;
        Ok(Json { out, rows: 0 })
    }

    /// Writes one batch of rows.
    pub fn write(&mut self, b: &RecordBatch) -> Result<()> {
        let opts = FormatOptions::default();
        let formatters: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<std::result::Result<_, _>>()?;
        let mut row = String::new();
        for r in 0..b.num_rows() {
            row.clear();
            row.push_str(if self.rows == 0 { "\n[" } else { ",\n[" });
            for (i, (c, f)) in b.columns().iter().zip(&formatters).enumerate() {
                if i > 0 {
                    row.push(',');
                }
                value(c.as_ref(), r, f, &mut row);
            }
            row.push(']');
            self.rows += 1;
            self.out.write_all(row.as_bytes())?;
        }
        Ok(())
    }

    /// Ends the document with the result's status (or the error that stopped it).
    pub fn finish(self, status: std::result::Result<Status, &str>) -> Result<()> {
        let tail = match status {
            Ok(s) => format!("\n],\n\"status\":\"{}\"}}\n", s.as_str()),
            Err(message) => format!(
                "\n],\n\"status\":\"ERROR\",\"error\":{}}}\n",
                quoted(message)
            ),
        };
        self.out.write_all(tail.as_bytes())?;
        self.out.flush()?;
        Ok(())
    }
}

fn float(v: f64, out: &mut String) {
    if v.is_finite() {
        // The shortest text that reads back as the same bits; exponents as JSON writes them.
        let _ = write!(out, "{v:?}");
    } else {
        out.push_str("null");
    }
}

/// Row `r` of a column as a JSON value.
fn value(c: &dyn Array, r: usize, f: &ArrayFormatter, out: &mut String) {
    if c.is_null(r) {
        out.push_str("null");
        return;
    }
    macro_rules! int {
        ($t:ty) => {{
            let _ = write!(out, "{}", c.as_primitive::<$t>().value(r));
        }};
    }
    match c.data_type() {
        DataType::Null => out.push_str("null"),
        DataType::Boolean => out.push_str(if c.as_boolean().value(r) {
            "true"
        } else {
            "false"
        }),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float64 => float(c.as_primitive::<Float64Type>().value(r), out),
        DataType::Float32 => {
            let v = c.as_primitive::<Float32Type>().value(r);
            if v.is_finite() {
                let _ = write!(out, "{v:?}");
            } else {
                out.push_str("null");
            }
        }
        // Exact decimals print as JSON numbers.
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let _ = write!(out, "{}", f.value(r));
        }
        DataType::List(item) if item.data_type() == &DataType::Float64 => {
            let v = c.as_list::<i32>().value(r);
            let v = v.as_primitive::<Float64Type>();
            out.push('[');
            for i in 0..v.len() {
                if i > 0 {
                    out.push(',');
                }
                if v.is_valid(i) {
                    float(v.value(i), out);
                } else {
                    out.push_str("null");
                }
            }
            out.push(']');
        }
        DataType::Utf8 => out.push_str(&quoted(c.as_string::<i32>().value(r))),
        DataType::LargeUtf8 => out.push_str(&quoted(c.as_string::<i64>().value(r))),
        DataType::Utf8View => out.push_str(&quoted(c.as_string_view().value(r))),
        _ => out.push_str(&quoted(&f.value(r).to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use crate::encode::{ColumnInfo, Describe, Format, write};

    #[test]
    fn every_column_and_every_null_keeps_its_place() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("flux", DataType::Float64, true),
            Field::new("band", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(3068394359484713006), None])),
                Arc::new(Float64Array::from(vec![None, Some(f64::NAN)])),
                Arc::new(StringArray::from(vec![Some("g\"\n"), None])),
            ],
        )
        .unwrap();
        let describe = Describe {
            columns: vec![
                ColumnInfo {
                    ucd: Some("meta.id".into()),
                    ..ColumnInfo::derived()
                },
                ColumnInfo {
                    unit: Some("nJy".into()),
                    ..ColumnInfo::derived()
                },
                ColumnInfo::derived(),
            ],
            infos: vec![("snapshot".into(), "12".into())],
            replay_url: None,
            links: None,
        };
        let mut out = Vec::new();
        write(Format::Json, &schema, &[batch], &describe, true, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("[3068394359484713006,null,\"g\\\"\\n\"]"),
            "{text}"
        );
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["metadata"].as_array().unwrap().len(), 3);
        assert_eq!(doc["metadata"][1]["unit"], "nJy");
        assert_eq!(doc["metadata"][0]["datatype"], "long");
        assert_eq!(doc["metadata"][2]["datatype"], "unicodeChar");
        assert_eq!(doc["info"]["snapshot"], "12");
        assert_eq!(
            doc["data"][1],
            serde_json::json!([null, null, null]),
            "NULL and NaN are null, in place"
        );
        assert_eq!(doc["status"], "OVERFLOW");
    }

    use super::*;
}
