//! VOTable BINARY2 rows: per row a null-flag bitmap, then each value big-endian,
//! the whole stream base64-encoded.
//!
//! The types written match [`crate::format::votable_field`], which declares the
//! FIELDs: a value must be laid out as its FIELD says or every later byte of the
//! stream is misread.

use std::io::Write;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    SchemaRef, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use data_encoding::BASE64;

use crate::error::Result;

/// Bytes per base64 line (76 characters).
const LINE: usize = 57;

/// Encodes batches into one BINARY2 stream.
pub(crate) struct Binary2 {
    columns: usize,
    // Bytes not yet encoded: base64 works in groups of three, and rows do not.
    carry: Vec<u8>,
}

impl Binary2 {
    /// An encoder for rows of `schema`.
    pub fn new(schema: &SchemaRef) -> Binary2 {
        Binary2 {
            columns: schema.fields().len(),
            carry: Vec::new(),
        }
    }

    /// Encodes one batch; the base64 of whole lines goes to `out`.
    pub fn write(&mut self, b: &RecordBatch, out: &mut dyn Write) -> Result<()> {
        let opts = FormatOptions::default();
        let formatters: Vec<Option<ArrayFormatter>> = b
            .columns()
            .iter()
            .map(|c| {
                if is_text(c.data_type()) {
                    ArrayFormatter::try_new(c.as_ref(), &opts).map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect::<std::result::Result<_, _>>()?;
        let mut buf = std::mem::take(&mut self.carry);
        let flags = self.columns.div_ceil(8);
        let mut text = String::new();
        for r in 0..b.num_rows() {
            let at = buf.len();
            buf.resize(at + flags, 0);
            for (i, c) in b.columns().iter().enumerate() {
                if c.is_null(r) {
                    buf[at + i / 8] |= 0x80 >> (i % 8);
                }
            }
            for (c, f) in b.columns().iter().zip(&formatters) {
                value(c.as_ref(), r, f.as_ref(), &mut text, &mut buf);
            }
        }
        let whole = buf.len() / LINE * LINE;
        for line in buf[..whole].chunks(LINE) {
            out.write_all(BASE64.encode(line).as_bytes())?;
            out.write_all(b"\n")?;
        }
        self.carry = buf[whole..].to_vec();
        Ok(())
    }

    /// Encodes what is left, with base64 padding.
    pub fn finish(self, out: &mut dyn Write) -> Result<()> {
        for line in self.carry.chunks(LINE) {
            out.write_all(BASE64.encode(line).as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Whether values of this type are written as text (through a formatter).
fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::UInt8
        | DataType::Int32
        | DataType::UInt16
        | DataType::Int64
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64 => false,
        DataType::List(f) => f.data_type() != &DataType::Float64,
        _ => true,
    }
}

/// Appends one value (its bytes are written even when null, as BINARY2 asks).
fn value(
    c: &dyn Array,
    r: usize,
    formatter: Option<&ArrayFormatter>,
    text: &mut String,
    buf: &mut Vec<u8>,
) {
    let valid = c.is_valid(r);
    match c.data_type() {
        DataType::Boolean => buf.push(if !valid {
            b'?'
        } else if c.as_boolean().value(r) {
            b'T'
        } else {
            b'F'
        }),
        DataType::Int8 => {
            let v = if valid {
                c.as_primitive::<Int8Type>().value(r) as i16
            } else {
                0
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::Int16 => {
            let v = if valid {
                c.as_primitive::<Int16Type>().value(r)
            } else {
                0
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::UInt8 => {
            let v = if valid {
                c.as_primitive::<UInt8Type>().value(r) as i16
            } else {
                0
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::Int32 => {
            let v = if valid {
                c.as_primitive::<Int32Type>().value(r)
            } else {
                0
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::UInt16 => {
            let v = if valid {
                c.as_primitive::<UInt16Type>().value(r) as i32
            } else {
                0
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::Int64 => {
            let v = if valid {
                c.as_primitive::<Int64Type>().value(r)
            } else {
                0
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::UInt32 => {
            let v = if valid {
                c.as_primitive::<UInt32Type>().value(r) as i64
            } else {
                0
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::UInt64 => {
            // VOTable has no unsigned long; values above i64::MAX keep their bits.
            let v = if valid {
                c.as_primitive::<UInt64Type>().value(r) as i64
            } else {
                0
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::Float16 => {
            let v = if valid {
                c.as_primitive::<Float16Type>().value(r).to_f32()
            } else {
                f32::NAN
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::Float32 => {
            let v = if valid {
                c.as_primitive::<Float32Type>().value(r)
            } else {
                f32::NAN
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::Float64 => {
            let v = if valid {
                c.as_primitive::<Float64Type>().value(r)
            } else {
                f64::NAN
            };
            buf.extend_from_slice(&v.to_be_bytes());
        }
        DataType::List(f) if f.data_type() == &DataType::Float64 => {
            if !valid {
                buf.extend_from_slice(&0u32.to_be_bytes());
                return;
            }
            let l = c.as_list::<i32>().value(r);
            let v = l.as_primitive::<Float64Type>();
            buf.extend_from_slice(&(v.len() as u32).to_be_bytes());
            for i in 0..v.len() {
                let x = if v.is_valid(i) { v.value(i) } else { f64::NAN };
                buf.extend_from_slice(&x.to_be_bytes());
            }
        }
        _ => {
            text.clear();
            if valid {
                match c.data_type() {
                    DataType::Utf8 => text.push_str(c.as_string::<i32>().value(r)),
                    DataType::LargeUtf8 => text.push_str(c.as_string::<i64>().value(r)),
                    DataType::Utf8View => text.push_str(c.as_string_view().value(r)),
                    _ => {
                        if let Some(f) = formatter {
                            use std::fmt::Write as _;
                            let _ = write!(text, "{}", f.value(r));
                        }
                    }
                }
            }
            buf.extend_from_slice(&(text.len() as u32).to_be_bytes());
            buf.extend_from_slice(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn rows_are_flags_then_big_endian_values_across_batches() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = |id: Option<i64>, x: Option<f64>, s: Option<&str>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![id])),
                    Arc::new(Float64Array::from(vec![x])),
                    Arc::new(StringArray::from(vec![s])),
                ],
            )
            .unwrap()
        };
        let mut enc = Binary2::new(&schema);
        let mut out = Vec::new();
        enc.write(&batch(Some(7), Some(1.5), Some("ab")), &mut out)
            .unwrap();
        enc.write(&batch(None, None, None), &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        let text: String = String::from_utf8(out).unwrap().split_whitespace().collect();
        let bytes = BASE64.decode(text.as_bytes()).unwrap();
        let mut want = vec![0u8];
        want.extend_from_slice(&7i64.to_be_bytes());
        want.extend_from_slice(&1.5f64.to_be_bytes());
        want.extend_from_slice(&2u32.to_be_bytes());
        want.extend_from_slice(b"ab");
        want.push(0b1110_0000);
        want.extend_from_slice(&0i64.to_be_bytes());
        want.extend_from_slice(&f64::NAN.to_be_bytes());
        want.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(bytes, want);
    }
}
