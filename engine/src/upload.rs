//! Tables a query brings with it (TAP `UPLOAD`): a VOTable read into Arrow.
//!
//! Uploads arrive as VOTable documents in any of the XML-carried
//! serializations (TABLEDATA, BINARY, BINARY2); FITS inside a VOTable is
//! refused with a message that says what to send instead. The reader is ours,
//! not the `votable` crate's: that crate turns on `serde_json` features
//! (`preserve_order`) for the whole build and brings a second `quick-xml`,
//! and uploads need only the first table's FIELDs and rows.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Float64Builder, Int16Array, Int32Array,
    Int64Array, ListBuilder, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use data_encoding::BASE64;
use quick_xml::events::{BytesStart, Event};

use crate::error::{Error, Result};

/// A table uploaded with a query, read as `TAP_UPLOAD.<name>`.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The table name (an ADQL identifier).
    pub name: String,
    /// Its rows.
    pub batch: RecordBatch,
}

/// Field metadata of an upload's columns, as its FIELDs declared them: the unit,
/// the UCD, and whether text was declared `unicodeChar` (results show such a
/// column as it was sent). It travels with the stored copy a replay reads.
pub(crate) const UNIT: &str = "unit";
/// See [`UNIT`].
pub(crate) const UCD: &str = "ucd";
/// See [`UNIT`].
pub(crate) const UNICODE: &str = "votable.unicodeChar";

/// The most columns an upload may have (80 000 once took 42 s to read).
pub const MAX_COLUMNS: usize = 1000;

fn bad(name: &str, message: impl Into<String>) -> Error {
    Error::Upload {
        message: format!("upload '{name}': {}", message.into()),
    }
}

/// Checks an upload's table name: a regular ADQL identifier.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(Error::Upload {
            message: format!(
                "'{name}' cannot name an upload: use a letter followed by letters, digits or _ \
                 (at most 64)"
            ),
        })
    }
}

impl Upload {
    /// Reads the first table of a VOTable document.
    pub fn from_votable(name: &str, doc: &[u8]) -> Result<Upload> {
        check_name(name)?;
        let parsed = parse(name, doc)?;
        let mut fields = Vec::new();
        let mut arrays = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (f, col) in parsed.fields.iter().zip(parsed.columns) {
            if !names.insert(f.name.to_lowercase()) {
                return Err(bad(name, format!("two columns are named '{}'", f.name)));
            }
            let mut array = col.finish();
            if f.timestamp {
                let options = arrow::compute::CastOptions {
                    safe: false,
                    ..Default::default()
                };
                array = arrow::compute::cast_with_options(
                    &array,
                    &DataType::Timestamp(TimeUnit::Millisecond, None),
                    &options,
                )
                .map_err(|e| {
                    bad(
                        name,
                        format!("column '{}' (xtype timestamp) holds a value that is not an ISO-8601 time: {e}", f.name),
                    )
                })?;
            }
            let mut meta = std::collections::HashMap::new();
            if let Some(u) = &f.unit {
                meta.insert(UNIT.to_string(), u.clone());
            }
            if let Some(u) = &f.ucd {
                meta.insert(UCD.to_string(), u.clone());
            }
            if f.kind == Type::UnicodeChar {
                meta.insert(UNICODE.to_string(), "true".to_string());
            }
            fields.push(Field::new(&f.name, array.data_type().clone(), true).with_metadata(meta));
            arrays.push(array);
        }
        if fields.is_empty() {
            return Err(bad(name, "the VOTable has no FIELD"));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        Ok(Upload {
            name: name.to_string(),
            batch,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Type {
    Boolean,
    /// A single bit, read as a boolean (astropy writes boolean columns so).
    Bit,
    UnsignedByte,
    Short,
    Int,
    Long,
    Float,
    Double,
    Char,
    UnicodeChar,
}

#[derive(Debug, Clone)]
struct FieldDef {
    name: String,
    kind: Type,
    /// Fixed element count, or `None` for variable (`*`); strings count characters.
    count: Option<usize>,
    /// Whether the field holds an array of numbers (not a scalar, not a string).
    array: bool,
    /// The text `<VALUES null="...">` uses for a missing value.
    null: Option<String>,
    /// Whether the strings are ISO-8601 times (`xtype="timestamp"`).
    timestamp: bool,
    /// The FIELD's unit and UCD, kept for results that show the column.
    unit: Option<String>,
    ucd: Option<String>,
}

enum Column {
    Boolean(Vec<Option<bool>>),
    Short(Vec<Option<i16>>),
    Int(Vec<Option<i32>>),
    Long(Vec<Option<i64>>),
    Float(Vec<Option<f32>>),
    Double(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Array(Vec<Option<Vec<f64>>>),
}

impl Column {
    fn new(f: &FieldDef) -> Column {
        if f.array {
            return Column::Array(Vec::new());
        }
        match f.kind {
            Type::Boolean | Type::Bit => Column::Boolean(Vec::new()),
            Type::UnsignedByte | Type::Short => Column::Short(Vec::new()),
            Type::Int => Column::Int(Vec::new()),
            Type::Long => Column::Long(Vec::new()),
            Type::Float => Column::Float(Vec::new()),
            Type::Double => Column::Double(Vec::new()),
            Type::Char | Type::UnicodeChar => Column::Text(Vec::new()),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Boolean(v) => Arc::new(BooleanArray::from(v)),
            Column::Short(v) => Arc::new(Int16Array::from(v)),
            Column::Int(v) => Arc::new(Int32Array::from(v)),
            Column::Long(v) => Arc::new(Int64Array::from(v)),
            Column::Float(v) => Arc::new(Float32Array::from(v)),
            Column::Double(v) => Arc::new(Float64Array::from(v)),
            Column::Text(v) => Arc::new(StringArray::from(v)),
            Column::Array(v) => {
                let mut b = ListBuilder::new(Float64Builder::new());
                for x in v {
                    match x {
                        Some(xs) => {
                            b.values().append_slice(&xs);
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
        }
    }
}

struct Parsed {
    fields: Vec<FieldDef>,
    columns: Vec<Column>,
}

fn attr(e: &BytesStart<'_>, key: &str) -> Option<String> {
    e.try_get_attribute(key)
        .ok()
        .flatten()
        .and_then(|a| a.unescape_value().ok().map(Cow::into_owned))
}

fn field_def(name: &str, e: &BytesStart<'_>, position: usize) -> Result<FieldDef> {
    let field = attr(e, "name")
        .or_else(|| attr(e, "ID"))
        .unwrap_or_else(|| format!("col{}", position + 1));
    let datatype = attr(e, "datatype").unwrap_or_default();
    let kind = match datatype.as_str() {
        "boolean" => Type::Boolean,
        "bit" => Type::Bit,
        "unsignedByte" => Type::UnsignedByte,
        "short" => Type::Short,
        "int" => Type::Int,
        "long" => Type::Long,
        "float" => Type::Float,
        "double" => Type::Double,
        "char" => Type::Char,
        "unicodeChar" => Type::UnicodeChar,
        other => {
            return Err(bad(
                name,
                format!(
                    "column '{field}' has datatype '{other}', which uploads do not take \
                     (use boolean, bit, unsignedByte, short, int, long, float, double, char \
                     or unicodeChar)"
                ),
            ));
        }
    };
    let arraysize = attr(e, "arraysize");
    let (count, sized) = match arraysize.as_deref() {
        None => (Some(1), false),
        Some(a) => {
            let a = a.trim();
            if a.contains('x') {
                return Err(bad(
                    name,
                    format!("column '{field}' is a multi-dimensional array ({a})"),
                ));
            }
            if a.ends_with('*') {
                (None, true)
            } else {
                let n = a
                    .parse::<usize>()
                    .map_err(|_| bad(name, format!("column '{field}' has arraysize '{a}'")))?;
                (Some(n), true)
            }
        }
    };
    let text = matches!(kind, Type::Char | Type::UnicodeChar);
    let array = sized && !text && count != Some(1);
    if array && kind == Type::Bit {
        return Err(bad(
            name,
            format!("column '{field}' is an array of bits; only a single bit (a boolean) is taken"),
        ));
    }
    if array && !matches!(kind, Type::Float | Type::Double) {
        return Err(bad(
            name,
            format!(
                "column '{field}' is an array of {datatype}; only arrays of float or double are taken"
            ),
        ));
    }
    let timestamp = text && attr(e, "xtype").is_some_and(|x| x.eq_ignore_ascii_case("timestamp"));
    Ok(FieldDef {
        name: field,
        kind,
        count,
        array,
        null: None,
        timestamp,
        unit: attr(e, "unit").filter(|u| !u.is_empty()),
        ucd: attr(e, "ucd").filter(|u| !u.is_empty()),
    })
}

#[derive(PartialEq)]
enum Data {
    None,
    /// TABLEDATA: rows as XML.
    Xml,
    Binary {
        flags: bool,
    },
}

fn parse(name: &str, doc: &[u8]) -> Result<Parsed> {
    let mut reader = quick_xml::Reader::from_reader(doc);
    let mut buf = Vec::new();
    let mut fields: Vec<FieldDef> = Vec::new();
    let mut columns: Vec<Column> = Vec::new();
    let mut tables = 0;
    let mut in_field = false;
    let mut data = Data::None;
    let mut stream = String::new();
    let mut in_stream = false;
    let mut in_td = false;
    let mut td = String::new();
    let mut row: Vec<Option<String>> = Vec::new();
    let mut saw_votable = false;
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| bad(name, format!("not well-formed XML at byte {position}: {e}")))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = e.local_name();
                match local.as_ref() {
                    b"VOTABLE" => saw_votable = true,
                    b"TABLE" => {
                        tables += 1;
                    }
                    _ if tables != 1 => {}
                    b"FIELD" if data == Data::None => {
                        if fields.len() == MAX_COLUMNS {
                            return Err(bad(
                                name,
                                format!("the table has more than {MAX_COLUMNS} columns"),
                            ));
                        }
                        fields.push(field_def(name, e, fields.len())?);
                        in_field = !empty;
                    }
                    b"VALUES" if in_field => {
                        if let (Some(f), Some(n)) = (fields.last_mut(), attr(e, "null")) {
                            f.null = Some(n);
                        }
                    }
                    b"TABLEDATA" => {
                        data = Data::Xml;
                        columns = fields.iter().map(Column::new).collect();
                    }
                    b"BINARY" | b"BINARY2" => {
                        data = Data::Binary {
                            flags: local.as_ref() == b"BINARY2",
                        };
                        columns = fields.iter().map(Column::new).collect();
                    }
                    b"FITS" => {
                        return Err(bad(
                            name,
                            "FITS data in a VOTable is not taken: send TABLEDATA or BINARY2",
                        ));
                    }
                    b"STREAM" => {
                        if let Some(href) = attr(e, "href") {
                            return Err(bad(
                                name,
                                format!("the data is a remote stream ({href}): send it inline"),
                            ));
                        }
                        match attr(e, "encoding").as_deref() {
                            Some("base64") => {}
                            other => {
                                let what = match other {
                                    Some(e) => format!("STREAM encoding \"{e}\" is not taken"),
                                    None => "a STREAM without encoding=\"base64\" is not taken"
                                        .to_string(),
                                };
                                return Err(bad(name, format!("{what}: use base64")));
                            }
                        }
                        in_stream = !empty;
                    }
                    b"TR" if data == Data::Xml => row.clear(),
                    b"TD" if data == Data::Xml => {
                        td.clear();
                        if empty {
                            row.push(None);
                        } else {
                            in_td = true;
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_td || in_stream => {
                let text = t
                    .decode()
                    .map_err(|e| bad(name, format!("undecodable text: {e}")))?;
                if in_td { &mut td } else { &mut stream }.push_str(&text);
            }
            Event::CData(t) if in_td => {
                td.push_str(&String::from_utf8_lossy(&t.into_inner()));
            }
            Event::GeneralRef(r) if in_td => {
                let entity = r
                    .decode()
                    .map_err(|e| bad(name, format!("undecodable entity: {e}")))?;
                let text = quick_xml::escape::unescape(&format!("&{entity};"))
                    .map_err(|e| bad(name, format!("unknown entity &{entity};: {e}")))?
                    .into_owned();
                td.push_str(&text);
            }
            Event::End(ref e) => match e.local_name().as_ref() {
                b"TABLE" if tables == 1 => break,
                b"FIELD" => in_field = false,
                b"TD" if in_td => {
                    in_td = false;
                    row.push(Some(std::mem::take(&mut td)));
                }
                b"TR" if data == Data::Xml => {
                    let n = rows_of(&columns);
                    if row.len() != fields.len() {
                        return Err(bad(
                            name,
                            format!(
                                "row {} has {} cells; the table has {} columns",
                                n + 1,
                                row.len(),
                                fields.len()
                            ),
                        ));
                    }
                    for (i, cell) in row.drain(..).enumerate() {
                        push_text(name, &fields[i], &mut columns[i], cell, n)?;
                    }
                }
                b"STREAM" if in_stream => {
                    in_stream = false;
                    let compact: String = stream.split_whitespace().collect();
                    let bytes = BASE64
                        .decode(compact.as_bytes())
                        .map_err(|e| bad(name, format!("the base64 stream is damaged: {e}")))?;
                    let flags = matches!(data, Data::Binary { flags: true });
                    read_binary(name, &fields, &mut columns, &bytes, flags)?;
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_votable {
        return Err(bad(name, "this is not a VOTable (no VOTABLE element)"));
    }
    if tables == 0 {
        return Err(bad(name, "the VOTable has no TABLE"));
    }
    if columns.is_empty() {
        // A table with FIELDs and no DATA has no rows.
        columns = fields.iter().map(Column::new).collect();
    }
    Ok(Parsed { fields, columns })
}

fn rows_of(columns: &[Column]) -> usize {
    match columns.first() {
        Some(Column::Boolean(v)) => v.len(),
        Some(Column::Short(v)) => v.len(),
        Some(Column::Int(v)) => v.len(),
        Some(Column::Long(v)) => v.len(),
        Some(Column::Float(v)) => v.len(),
        Some(Column::Double(v)) => v.len(),
        Some(Column::Text(v)) => v.len(),
        Some(Column::Array(v)) => v.len(),
        None => 0,
    }
}

fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok();
    }
    s.parse().ok()
}

fn parse_float(s: &str) -> Option<f64> {
    let s = s.trim();
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "Infinity" => Some(f64::INFINITY),
        "-Inf" | "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Adds one TABLEDATA cell; `row` counts from 0.
fn push_text(
    name: &str,
    f: &FieldDef,
    col: &mut Column,
    cell: Option<String>,
    row: usize,
) -> Result<()> {
    let text = cell.filter(|c| {
        let t = c.trim();
        // An empty cell is a missing value, except for strings.
        (matches!(col, Column::Text(_)) || !t.is_empty()) && f.null.as_deref() != Some(t)
    });
    let fail = || {
        bad(
            name,
            format!(
                "row {}, column '{}': '{}' is not a {:?}",
                row + 1,
                f.name,
                text.as_deref().unwrap_or(""),
                f.kind
            ),
        )
    };
    match col {
        Column::Boolean(v) => v.push(match text.as_deref().map(str::trim) {
            None | Some("?" | "") => None,
            Some("T" | "t" | "true" | "TRUE" | "1") => Some(true),
            Some("F" | "f" | "false" | "FALSE" | "0") => Some(false),
            Some(_) => return Err(fail()),
        }),
        Column::Short(v) => v.push(match &text {
            None => None,
            Some(t) => Some(
                parse_int(t)
                    .and_then(|x| i16::try_from(x).ok())
                    .ok_or_else(fail)?,
            ),
        }),
        Column::Int(v) => v.push(match &text {
            None => None,
            Some(t) => Some(
                parse_int(t)
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or_else(fail)?,
            ),
        }),
        Column::Long(v) => v.push(match &text {
            None => None,
            Some(t) => Some(parse_int(t).ok_or_else(fail)?),
        }),
        Column::Float(v) => v.push(match &text {
            None => None,
            Some(t) => Some(parse_float(t).ok_or_else(fail)? as f32),
        }),
        Column::Double(v) => v.push(match &text {
            None => None,
            Some(t) => Some(parse_float(t).ok_or_else(fail)?),
        }),
        Column::Text(v) => v.push(text),
        Column::Array(v) => v.push(match &text {
            None => None,
            Some(t) => Some(
                t.split_whitespace()
                    .map(parse_float)
                    .collect::<Option<Vec<f64>>>()
                    .ok_or_else(fail)?,
            ),
        }),
    }
    Ok(())
}

/// Reads BINARY (no null flags) or BINARY2 rows.
fn read_binary(
    name: &str,
    fields: &[FieldDef],
    columns: &mut [Column],
    bytes: &[u8],
    flags: bool,
) -> Result<()> {
    let mut at = 0usize;
    let mut row = 0usize;
    let truncated = |row: usize| {
        bad(
            name,
            format!("the binary stream ends inside row {}", row + 1),
        )
    };
    let take = |at: &mut usize, n: usize, row: usize| -> Result<&[u8]> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| truncated(row))?;
        let s = &bytes[*at..end];
        *at = end;
        Ok(s)
    };
    if fields.is_empty() {
        return Err(bad(name, "the VOTable has no FIELD"));
    }
    let nflags = if flags { fields.len().div_ceil(8) } else { 0 };
    while at < bytes.len() {
        let started = at;
        let mask = take(&mut at, nflags, row)?.to_vec();
        for (i, (f, col)) in fields.iter().zip(columns.iter_mut()).enumerate() {
            let flagged = flags && mask[i / 8] & (0x80 >> (i % 8)) != 0;
            // BINARY has no null flags: an integer equal to VALUES null is missing.
            let sentinel = f.null.as_deref().and_then(parse_int);
            let count = match f.count {
                Some(n) => n,
                None => {
                    let c = take(&mut at, 4, row)?;
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize
                }
            };
            let width = match f.kind {
                // A single bit takes a byte of its own.
                Type::Boolean | Type::Bit | Type::Char | Type::UnsignedByte => 1,
                Type::Short | Type::UnicodeChar => 2,
                Type::Int | Type::Float => 4,
                Type::Long | Type::Double => 8,
            };
            let raw = take(
                &mut at,
                count.checked_mul(width).ok_or_else(|| truncated(row))?,
                row,
            )?;
            let be8 = |b: &[u8]| [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
            let int = match (f.kind, f.array) {
                (Type::UnsignedByte, false) => Some(i64::from(raw[0])),
                (Type::Short, false) => Some(i64::from(i16::from_be_bytes([raw[0], raw[1]]))),
                (Type::Int, false) => Some(i64::from(i32::from_be_bytes([
                    raw[0], raw[1], raw[2], raw[3],
                ]))),
                (Type::Long, false) => Some(i64::from_be_bytes(be8(raw))),
                _ => None,
            };
            let null = flagged || (sentinel.is_some() && int == sentinel);
            match col {
                Column::Boolean(v) => v.push(match raw.first() {
                    _ if null => None,
                    // The bit is the byte's most significant one; astropy 8 sets
                    // 0x08 instead. Either way the other bits are zero.
                    Some(b) if f.kind == Type::Bit => Some(*b != 0),
                    Some(b'T' | b't' | b'1') => Some(true),
                    Some(b'F' | b'f' | b'0') => Some(false),
                    _ => None,
                }),
                Column::Short(v) => v.push((!null).then(|| {
                    if f.kind == Type::Short {
                        i16::from_be_bytes([raw[0], raw[1]])
                    } else {
                        i16::from(raw[0])
                    }
                })),
                Column::Int(v) => {
                    v.push((!null).then(|| i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])))
                }
                Column::Long(v) => v.push((!null).then(|| i64::from_be_bytes(be8(raw)))),
                Column::Float(v) => {
                    v.push((!null).then(|| f32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])))
                }
                Column::Double(v) => v.push((!null).then(|| f64::from_be_bytes(be8(raw)))),
                Column::Text(v) => v.push((!null).then(|| {
                    let s = if f.kind == Type::UnicodeChar {
                        let units: Vec<u16> = raw
                            .chunks(2)
                            .map(|c| u16::from_be_bytes([c[0], c[1]]))
                            .collect();
                        String::from_utf16_lossy(&units)
                    } else {
                        String::from_utf8_lossy(raw).into_owned()
                    };
                    // Fixed-width strings end at the first NUL.
                    s.split('\0').next().unwrap_or("").trim_end().to_string()
                })),
                Column::Array(v) => v.push((!null).then(|| {
                    raw.chunks(width)
                        .map(|c| {
                            if width == 4 {
                                f64::from(f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                            } else {
                                f64::from_be_bytes(be8(c))
                            }
                        })
                        .collect()
                })),
            }
        }
        // A row of zero-width fields would be read forever, a row per turn.
        if at == started {
            return Err(bad(
                name,
                "its rows take no bytes in the binary stream (every FIELD has arraysize 0)",
            ));
        }
        row += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    use super::*;

    const TD: &str = r#"<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
<RESOURCE><TABLE>
<FIELD name="id" datatype="long"><VALUES null="-1"/></FIELD>
<FIELD name="ra" datatype="double" unit="deg"/>
<FIELD name="dec" datatype="double"/>
<FIELD name="label" datatype="char" arraysize="*"/>
<DATA><TABLEDATA>
<TR><TD>1</TD><TD>55.0</TD><TD>-30.0</TD><TD>a &amp; b</TD></TR>
<TR><TD>-1</TD><TD></TD><TD>-29.5</TD><TD/></TR>
</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"#;

    #[test]
    fn bits_and_unsigned_bytes_as_astropy_writes_them() {
        // astropy 8 writes a boolean column as `bit`; in BINARY2 it sets 0x08 of the byte.
        let head = "<VOTABLE><RESOURCE><TABLE><FIELD name=\"b\" datatype=\"bit\"/>\
                    <FIELD name=\"u\" datatype=\"unsignedByte\" unit=\"mag\"/>\
                    <FIELD name=\"s\" arraysize=\"5\" datatype=\"unicodeChar\"/>";
        let td = format!(
            "{head}<DATA><TABLEDATA><TR><TD>1</TD><TD>1</TD><TD>h\u{e9}llo</TD></TR>\
             <TR><TD>0</TD><TD>200</TD><TD>x</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"
        );
        let b2 = format!(
            "{head}<DATA><BINARY2><STREAM encoding=\"base64\">\
             AAgBAGgA6QBsAGwAbwAAyAB4AAAAAAAAAAA=</STREAM></BINARY2></DATA></TABLE></RESOURCE></VOTABLE>"
        );
        for doc in [td, b2] {
            let u = Upload::from_votable("t", doc.as_bytes()).unwrap();
            let b = &u.batch;
            let bits = b.column(0).as_boolean();
            assert_eq!((bits.value(0), bits.value(1)), (true, false), "{doc}");
            let bytes = b.column(1).as_primitive::<arrow::datatypes::Int16Type>();
            assert_eq!((bytes.value(0), bytes.value(1)), (1, 200), "{doc}");
            let s = b.column(2).as_string::<i32>();
            assert_eq!((s.value(0), s.value(1)), ("h\u{e9}llo", "x"), "{doc}");
            let schema = b.schema();
            assert_eq!(
                schema.field(1).metadata().get(UNIT).map(String::as_str),
                Some("mag")
            );
            assert!(schema.field(2).metadata().contains_key(UNICODE));
        }
    }

    #[test]
    fn tabledata_with_nulls_and_entities() {
        let u = Upload::from_votable("targets", TD.as_bytes()).unwrap();
        let b = &u.batch;
        assert_eq!(b.num_rows(), 2);
        let id = b.column(0).as_primitive::<Int64Type>();
        assert_eq!(id.value(0), 1);
        assert!(id.is_null(1), "VALUES null marks a missing id");
        assert!(b.column(1).is_null(1));
        assert_eq!(b.column(2).as_primitive::<Float64Type>().value(1), -29.5);
        assert_eq!(b.column(3).as_string::<i32>().value(0), "a & b");
    }

    #[test]
    fn binary2_written_by_our_encoder_reads_back() {
        let u = Upload::from_votable("t", TD.as_bytes()).unwrap();
        let mut doc = Vec::new();
        crate::encode::write(
            crate::encode::Format::Votable,
            &u.batch.schema(),
            std::slice::from_ref(&u.batch),
            &crate::encode::Describe::default(),
            false,
            &mut doc,
        )
        .unwrap();
        let back = Upload::from_votable("t", &doc).unwrap();
        // The text column went out as unicodeChar (nothing said it was ASCII).
        assert_eq!(back.batch.columns(), u.batch.columns());
    }

    #[test]
    fn an_upload_of_more_than_a_thousand_columns_is_refused_at_once() {
        let fields: String = (0..80_000)
            .map(|i| format!("<FIELD name=\"c{i}\" datatype=\"int\"/>"))
            .collect();
        let doc = format!(
            "<VOTABLE><RESOURCE><TABLE>{fields}<DATA><TABLEDATA></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"
        );
        let e = Upload::from_votable("t", doc.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("more than 1000 columns"), "{e}");
    }

    #[test]
    fn binary_streams_that_would_never_end_are_refused() {
        for doc in [
            // No FIELD: nothing ever consumed a byte of the stream.
            "<VOTABLE><RESOURCE><TABLE><DATA><BINARY2><STREAM encoding=\"base64\">AA==</STREAM></BINARY2></DATA></TABLE></RESOURCE></VOTABLE>",
            // A FIELD of width zero, without null flags: a row per turn, for ever.
            "<VOTABLE><RESOURCE><TABLE><FIELD name=\"s\" datatype=\"char\" arraysize=\"0\"/><DATA><BINARY><STREAM encoding=\"base64\">AA==</STREAM></BINARY></DATA></TABLE></RESOURCE></VOTABLE>",
        ] {
            let e = Upload::from_votable("t", doc.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("upload 't'"), "{e}");
        }
    }

    #[test]
    fn bad_uploads_say_what_and_where() {
        for (doc, want) in [
            ("<nope/>", "not a VOTable"),
            (
                "<VOTABLE><RESOURCE><TABLE><FIELD name=\"x\" datatype=\"int\"/><DATA><TABLEDATA><TR><TD>1.5</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>",
                "row 1, column 'x'",
            ),
            (
                "<VOTABLE><RESOURCE><TABLE><FIELD name=\"x\" datatype=\"int\"/><DATA><TABLEDATA><TR><TD>1</TD><TD>2</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>",
                "row 1 has 2 cells",
            ),
            (
                "<VOTABLE><RESOURCE><TABLE><FIELD name=\"x\" datatype=\"int\"/><DATA><FITS/></DATA></TABLE></RESOURCE></VOTABLE>",
                "FITS",
            ),
            (
                "<VOTABLE><RESOURCE><TABLE><FIELD name=\"x\" datatype=\"long\"/><DATA><BINARY2><STREAM encoding=\"base64\">AAAA</STREAM></BINARY2></DATA></TABLE></RESOURCE></VOTABLE>",
                "ends inside row 1",
            ),
            ("<VOTABLE><RESOURCE><TABLE", "not well-formed"),
        ] {
            let e = Upload::from_votable("t", doc.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{doc}: {e}");
        }
        let e = Upload::from_votable("../x", TD.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot name an upload"), "{e}");
    }
}
