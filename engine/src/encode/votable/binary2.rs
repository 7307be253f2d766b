//! VOTable BINARY2 rows: per row a null-flag bitmap, then each value big-endian,
//! the whole stream base64-encoded.
//!
//! Each value is laid out as its FIELD declares it ([`FieldType`]): a value
//! written any other way shifts every later byte of the stream, and a client
//! then reads every later column and row wrong.

use std::io::Write;

use arrow::array::{
    Array, AsArray, BooleanArray, LargeStringArray, ListArray, RecordBatch, StringArray,
    StringViewArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use data_encoding::BASE64;

use super::{FieldType, check_count};
use crate::error::Result;

/// Bytes per base64 line (76 characters).
const LINE: usize = 57;

/// Encodes batches into one BINARY2 stream.
pub(crate) struct Binary2 {
    types: Vec<FieldType>,
    // Bytes not yet encoded: base64 works in groups of three, and rows do not.
    carry: Vec<u8>,
}

impl Binary2 {
    /// An encoder for rows whose columns are declared as `types`.
    pub fn new(types: Vec<FieldType>) -> Binary2 {
        Binary2 {
            types,
            carry: Vec::new(),
        }
    }

    /// Encodes one batch; the base64 of whole lines goes to `out`.
    pub fn write(&mut self, b: &RecordBatch, out: &mut dyn Write) -> Result<()> {
        let opts = FormatOptions::default();
        // Each column's type is resolved once per batch, not once per value: the
        // row loop below then reads typed arrays and their null bitmaps directly.
        let columns: Vec<(Option<&NullBuffer>, Column)> = b
            .columns()
            .iter()
            .zip(&self.types)
            .map(|(c, t)| Ok((c.nulls(), Column::of(c.as_ref(), t, &opts)?)))
            .collect::<Result<_>>()?;
        let mut buf = std::mem::take(&mut self.carry);
        let flags = self.types.len().div_ceil(8);
        let mut text = String::new();
        for r in 0..b.num_rows() {
            let at = buf.len();
            buf.resize(at + flags, 0);
            for (i, (nulls, c)) in columns.iter().enumerate() {
                let valid = nulls.is_none_or(|n| n.is_valid(r));
                if !valid {
                    buf[at + i / 8] |= 0x80 >> (i % 8);
                }
                c.put(r, valid, &mut text, &mut buf)?;
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

/// One column of a batch, by how BINARY2 lays out its values.
enum Column<'a> {
    Boolean(&'a BooleanArray),
    /// `short`: Int8 and UInt8 widen to it.
    Short(Vec<i16>),
    Int16(&'a [i16]),
    /// `int`: UInt16 widens to it.
    Int(Vec<i32>),
    Int32(&'a [i32]),
    Int64(&'a [i64]),
    /// `long`: UInt32 widens to it; UInt64 keeps its bits (VOTable has no unsigned long).
    Long(Vec<i64>),
    /// `float`: Float16 widens to it.
    Float(Vec<f32>),
    Float32(&'a [f32]),
    Float64(&'a [f64]),
    /// A DALI geometry array: the values, after their count unless the FIELD
    /// fixes it.
    Doubles(&'a ListArray, Option<usize>),
    /// Text: a count, then the characters (`char`: ASCII bytes; `unicodeChar`:
    /// UTF-16 code units, big-endian).
    Utf8(&'a StringArray, Text),
    LargeUtf8(&'a LargeStringArray, Text),
    Utf8View(&'a StringViewArray, Text),
    Formatted(ArrayFormatter<'a>, Text),
}

/// How a text column is declared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Text {
    Char,
    Unicode,
}

impl<'a> Column<'a> {
    fn of(c: &'a dyn Array, t: &FieldType, opts: &'a FormatOptions<'a>) -> Result<Column<'a>> {
        let text = if t.datatype == "unicodeChar" {
            Text::Unicode
        } else {
            Text::Char
        };
        fn widen<T: ArrowPrimitiveType, U>(c: &dyn Array, f: impl Fn(T::Native) -> U) -> Vec<U> {
            c.as_primitive::<T>()
                .values()
                .iter()
                .map(|v| f(*v))
                .collect()
        }
        Ok(match c.data_type() {
            DataType::Boolean => Column::Boolean(c.as_boolean()),
            DataType::Int8 => Column::Short(widen::<Int8Type, _>(c, i16::from)),
            DataType::UInt8 => Column::Short(widen::<UInt8Type, _>(c, i16::from)),
            DataType::Int16 => Column::Int16(c.as_primitive::<Int16Type>().values()),
            DataType::UInt16 => Column::Int(widen::<UInt16Type, _>(c, i32::from)),
            DataType::Int32 => Column::Int32(c.as_primitive::<Int32Type>().values()),
            DataType::UInt32 => Column::Long(widen::<UInt32Type, _>(c, i64::from)),
            DataType::Int64 => Column::Int64(c.as_primitive::<Int64Type>().values()),
            DataType::UInt64 => Column::Long(widen::<UInt64Type, _>(c, |v| v as i64)),
            DataType::Float16 => Column::Float(widen::<Float16Type, _>(c, |v| v.to_f32())),
            DataType::Float32 => Column::Float32(c.as_primitive::<Float32Type>().values()),
            DataType::Float64 => Column::Float64(c.as_primitive::<Float64Type>().values()),
            DataType::List(f) if f.data_type() == &DataType::Float64 => {
                Column::Doubles(c.as_list::<i32>(), t.fixed_count())
            }
            DataType::Utf8 => Column::Utf8(c.as_string::<i32>(), text),
            DataType::LargeUtf8 => Column::LargeUtf8(c.as_string::<i64>(), text),
            DataType::Utf8View => Column::Utf8View(c.as_string_view(), text),
            _ => Column::Formatted(ArrayFormatter::try_new(c, opts)?, text),
        })
    }

    /// Appends row `r`'s value (its bytes are written even when null, as BINARY2
    /// asks: zero for integers, NaN for floats, an empty array or string, NaNs
    /// for a fixed-size array).
    fn put(&self, r: usize, valid: bool, text: &mut String, buf: &mut Vec<u8>) -> Result<()> {
        fn number<T: Copy>(v: &[T], r: usize, valid: bool, null: T) -> T {
            if valid { v[r] } else { null }
        }
        match self {
            Column::Boolean(a) => buf.push(if !valid {
                b'?'
            } else if a.value(r) {
                b'T'
            } else {
                b'F'
            }),
            Column::Short(v) => buf.extend_from_slice(&number(v, r, valid, 0).to_be_bytes()),
            Column::Int16(v) => buf.extend_from_slice(&number(v, r, valid, 0).to_be_bytes()),
            Column::Int(v) => buf.extend_from_slice(&number(v, r, valid, 0).to_be_bytes()),
            Column::Int32(v) => buf.extend_from_slice(&number(v, r, valid, 0).to_be_bytes()),
            Column::Int64(v) => buf.extend_from_slice(&number(v, r, valid, 0).to_be_bytes()),
            Column::Long(v) => buf.extend_from_slice(&number(v, r, valid, 0).to_be_bytes()),
            Column::Float(v) => buf.extend_from_slice(&number(v, r, valid, f32::NAN).to_be_bytes()),
            Column::Float32(v) => {
                buf.extend_from_slice(&number(v, r, valid, f32::NAN).to_be_bytes())
            }
            Column::Float64(v) => {
                buf.extend_from_slice(&number(v, r, valid, f64::NAN).to_be_bytes())
            }
            Column::Doubles(a, fixed) => {
                if !valid {
                    match fixed {
                        Some(n) => {
                            for _ in 0..*n {
                                buf.extend_from_slice(&f64::NAN.to_be_bytes());
                            }
                        }
                        None => buf.extend_from_slice(&0u32.to_be_bytes()),
                    }
                    return Ok(());
                }
                let l = a.value(r);
                let v = l.as_primitive::<Float64Type>();
                check_count(v.len(), *fixed)?;
                if fixed.is_none() {
                    buf.extend_from_slice(&(v.len() as u32).to_be_bytes());
                }
                for i in 0..v.len() {
                    let x = if v.is_valid(i) { v.value(i) } else { f64::NAN };
                    buf.extend_from_slice(&x.to_be_bytes());
                }
            }
            Column::Utf8(a, t) => put_text(valid.then(|| a.value(r)), *t, buf),
            Column::LargeUtf8(a, t) => put_text(valid.then(|| a.value(r)), *t, buf),
            Column::Utf8View(a, t) => put_text(valid.then(|| a.value(r)), *t, buf),
            Column::Formatted(f, t) => {
                text.clear();
                if valid {
                    use std::fmt::Write as _;
                    let _ = write!(text, "{}", f.value(r));
                }
                put_text(Some(text.as_str()), *t, buf)
            }
        }
        Ok(())
    }
}

/// A string as BINARY2 writes it: its count, then its characters (none when
/// null). `char` counts bytes; `unicodeChar` counts UTF-16 code units, two bytes
/// each (a character beyond the BMP is a surrogate pair, as UTF-16 has it).
fn put_text(s: Option<&str>, text: Text, buf: &mut Vec<u8>) {
    let s = s.unwrap_or("");
    match text {
        Text::Char => {
            buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
        Text::Unicode => {
            let at = buf.len();
            buf.extend_from_slice(&0u32.to_be_bytes());
            let mut units = 0u32;
            for u in s.encode_utf16() {
                buf.extend_from_slice(&u.to_be_bytes());
                units += 1;
            }
            buf[at..at + 4].copy_from_slice(&units.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::encode::{ColumnInfo, Describe};
    use arrow::datatypes::SchemaRef;

    fn decoded(out: Vec<u8>) -> Vec<u8> {
        let text: String = String::from_utf8(out).unwrap().split_whitespace().collect();
        BASE64.decode(text.as_bytes()).unwrap()
    }

    /// Declarations as for a computed result: text as unicodeChar, arrays variable.
    fn types(schema: &SchemaRef) -> Vec<FieldType> {
        FieldType::all(schema, &Describe::default())
    }

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
        // `s` is known to be ASCII (a schema `char` column, say): one byte a character.
        let ascii = Describe {
            columns: vec![
                ColumnInfo::derived(),
                ColumnInfo::derived(),
                ColumnInfo {
                    ascii: true,
                    ..ColumnInfo::derived()
                },
            ],
            ..Describe::default()
        };
        let mut enc = Binary2::new(FieldType::all(&schema, &ascii));
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

    #[test]
    fn every_type_widens_as_its_field_says_and_nulls_keep_their_width() {
        use arrow::array::{
            BooleanArray, Float32Array, Int8Array, ListArray, TimestampSecondArray, UInt16Array,
            UInt32Array, UInt64Array,
        };
        use arrow::datatypes::TimeUnit;
        let list = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            None,
        ]);
        let columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(BooleanArray::from(vec![Some(true), None])),
            Arc::new(Int8Array::from(vec![Some(-2), None])),
            Arc::new(UInt16Array::from(vec![Some(65535), None])),
            Arc::new(UInt32Array::from(vec![Some(4_000_000_000), None])),
            Arc::new(UInt64Array::from(vec![Some(u64::MAX), None])),
            Arc::new(Float32Array::from(vec![Some(0.5), None])),
            Arc::new(list),
            Arc::new(TimestampSecondArray::from(vec![Some(0), None])),
        ];
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        assert_eq!(
            schema.field(7).data_type(),
            &DataType::Timestamp(TimeUnit::Second, None)
        );
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let mut enc = Binary2::new(types(&schema));
        let mut out = Vec::new();
        enc.write(&batch, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        let text: String = String::from_utf8(out).unwrap().split_whitespace().collect();
        let bytes = BASE64.decode(text.as_bytes()).unwrap();
        let mut want = vec![0u8];
        want.push(b'T');
        want.extend_from_slice(&(-2i16).to_be_bytes());
        want.extend_from_slice(&65535i32.to_be_bytes());
        want.extend_from_slice(&4_000_000_000i64.to_be_bytes());
        want.extend_from_slice(&(-1i64).to_be_bytes());
        want.extend_from_slice(&0.5f32.to_be_bytes());
        want.extend_from_slice(&2u32.to_be_bytes());
        want.extend_from_slice(&1.0f64.to_be_bytes());
        want.extend_from_slice(&2.0f64.to_be_bytes());
        let time = "1970-01-01T00:00:00";
        want.extend_from_slice(&(time.len() as u32).to_be_bytes());
        want.extend_from_slice(time.as_bytes());
        // Second row: every column NULL.
        want.push(0xff);
        want.push(b'?');
        want.extend_from_slice(&0i16.to_be_bytes());
        want.extend_from_slice(&0i32.to_be_bytes());
        want.extend_from_slice(&0i64.to_be_bytes());
        want.extend_from_slice(&0i64.to_be_bytes());
        want.extend_from_slice(&f32::NAN.to_be_bytes());
        want.extend_from_slice(&0u32.to_be_bytes());
        want.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(bytes, want);
    }

    #[test]
    fn text_not_known_to_be_ascii_is_utf16_counted_in_code_units() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![Some("hé𝄞"), None]))],
        )
        .unwrap();
        let types = types(&schema);
        assert_eq!(types[0].datatype, "unicodeChar");
        let mut enc = Binary2::new(types);
        let mut out = Vec::new();
        enc.write(&batch, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        let mut want = vec![0u8];
        // h, é, and the clef as a surrogate pair: four code units.
        want.extend_from_slice(&4u32.to_be_bytes());
        for u in "hé𝄞".encode_utf16() {
            want.extend_from_slice(&u.to_be_bytes());
        }
        want.push(0x80);
        want.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(decoded(out), want);
    }

    #[test]
    fn a_geometry_of_fixed_shape_has_no_count_and_a_null_one_keeps_its_width() {
        let points = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
            Some(vec![Some(10.5), Some(-30.25)]),
            None,
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("p", points.data_type().clone(), true),
            Field::new("id", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(points),
                Arc::new(Int64Array::from(vec![Some(1), Some(2)])),
            ],
        )
        .unwrap();
        let point = Describe {
            columns: vec![ColumnInfo {
                geometry: Some(("point", "2")),
                ..ColumnInfo::derived()
            }],
            ..Describe::default()
        };
        let types = FieldType::all(&schema, &point);
        assert_eq!(types[0].arraysize.as_deref(), Some("2"));
        let mut enc = Binary2::new(types);
        let mut out = Vec::new();
        enc.write(&batch, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        let mut want = vec![0u8];
        want.extend_from_slice(&10.5f64.to_be_bytes());
        want.extend_from_slice(&(-30.25f64).to_be_bytes());
        want.extend_from_slice(&1i64.to_be_bytes());
        want.push(0x80);
        want.extend_from_slice(&f64::NAN.to_be_bytes());
        want.extend_from_slice(&f64::NAN.to_be_bytes());
        want.extend_from_slice(&2i64.to_be_bytes());
        assert_eq!(decoded(out), want);

        // A value of another length would shift every byte after it: refused.
        let circle = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(vec![
            Some(1.0),
            Some(2.0),
            Some(3.0),
        ])]);
        let one = Arc::new(Schema::new(vec![Field::new(
            "p",
            circle.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(one.clone(), vec![Arc::new(circle)]).unwrap();
        let mut enc = Binary2::new(FieldType::all(&one, &point));
        assert!(enc.write(&batch, &mut Vec::new()).is_err());
    }
}
