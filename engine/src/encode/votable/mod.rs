//! VOTable 1.4 documents: the header with one FIELD per column, TABLEDATA rows,
//! the status after the table, the DataLink service descriptor that repeats a
//! result, and error documents.

pub(crate) mod binary2;
pub mod upload;

use std::fmt::Write as _;
use std::io::Write;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{ColumnInfo, Describe, Status};
use crate::error::Result;

/// How one column is declared, and so how each of its values is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldType {
    /// The VOTable datatype (`long`, `double`, `char`, `unicodeChar`, ...).
    pub datatype: &'static str,
    /// The arraysize: `None` for a scalar, `*` for variable, a number for fixed.
    pub arraysize: Option<String>,
    /// The DALI xtype (`point`, `circle`, `polygon`, `timestamp`).
    pub xtype: Option<&'static str>,
}

impl FieldType {
    /// The declaration of a column of Arrow type `t` that `info` describes.
    pub fn of(t: &DataType, info: &ColumnInfo) -> FieldType {
        let (datatype, arraysize, xtype): (&'static str, Option<&str>, Option<&'static str>) =
            match t {
                DataType::Boolean => ("boolean", None, None),
                DataType::Int8 | DataType::Int16 | DataType::UInt8 => ("short", None, None),
                DataType::Int32 | DataType::UInt16 => ("int", None, None),
                DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ("long", None, None),
                DataType::Float16 | DataType::Float32 => ("float", None, None),
                DataType::Float64 => ("double", None, None),
                // A geometry (DALI array): fixed only where the query shows its shape.
                DataType::List(f) if f.data_type() == &DataType::Float64 => match info.geometry {
                    Some((xtype, size)) => ("double", Some(size), Some(xtype)),
                    None => ("double", Some("*"), None),
                },
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
                    ("char", Some("*"), Some("timestamp"))
                }
                _ if info.ascii => ("char", Some("*"), None),
                // Text not known to be ASCII: BINARY2 `char` is read as ASCII bytes.
                _ => ("unicodeChar", Some("*"), None),
            };
        FieldType {
            datatype,
            arraysize: arraysize.map(str::to_string),
            xtype,
        }
    }

    /// Every column's declaration.
    pub fn all(schema: &SchemaRef, describe: &Describe) -> Vec<FieldType> {
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| FieldType::of(f.data_type(), &describe.column(i)))
            .collect()
    }

    /// The fixed element count of an array (a geometry), if it has one.
    pub fn fixed_count(&self) -> Option<usize> {
        self.arraysize.as_deref().and_then(|a| a.parse().ok())
    }
}

/// Escapes text for XML (attributes and content); control characters XML 1.0
/// cannot carry become spaces. Line breaks and tabs are character references:
/// in an attribute a parser would read them as spaces, and an INFO's query
/// `SELECT ra -- note` + line break + `FROM ...` would come back commented out.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\n' => o.push_str("&#10;"),
            '\r' => o.push_str("&#13;"),
            '\t' => o.push_str("&#9;"),
            // Not XML characters either: a parser stops at them.
            '\u{fffe}' | '\u{ffff}' => o.push('\u{fffd}'),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The ID of the TIMESYS of MJD columns in TAI.
const TAI: &str = "ppdb-tai-mjd";

/// A VOTable up to its last FIELD (no DATA).
pub(crate) fn head(schema: &SchemaRef, types: &[FieldType], describe: &Describe) -> String {
    let mut head = String::new();
    head.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    head.push_str("<VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n");
    head.push_str("<RESOURCE type=\"results\">\n<INFO name=\"QUERY_STATUS\" value=\"OK\"/>\n");
    for (n, v) in &describe.infos {
        let _ = writeln!(head, "<INFO name=\"{}\" value=\"{}\"/>", esc(n), esc(v));
    }
    // MJDs in TAI say so (37 s from UTC, more than an exposure).
    let timed: Vec<bool> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| describe.column(i).tai && f.data_type().is_floating())
        .collect();
    if timed.contains(&true) {
        let _ = writeln!(
            head,
            "<TIMESYS ID=\"{TAI}\" timeorigin=\"MJD-origin\" timescale=\"TAI\" refposition=\"TOPOCENTER\"/>"
        );
    }
    head.push_str("<TABLE>\n");
    let linked = describe.links.as_ref().and(linked_column(schema));
    for (i, (f, t)) in schema.fields().iter().zip(types).enumerate() {
        let info = describe.column(i);
        let _ = write!(
            head,
            "<FIELD name=\"{}\" datatype=\"{}\"",
            esc(f.name()),
            t.datatype
        );
        if let Some((_, id)) = linked.as_ref().filter(|(at, _)| *at == i) {
            let _ = write!(head, " ID=\"{}\"", esc(id));
        }
        if timed[i] {
            let _ = write!(head, " ref=\"{TAI}\"");
        }
        if let Some(a) = &t.arraysize {
            let _ = write!(head, " arraysize=\"{a}\"");
        }
        if let Some(x) = t.xtype {
            let _ = write!(head, " xtype=\"{x}\"");
        }
        if let Some(u) = &info.unit {
            let _ = write!(head, " unit=\"{}\"", esc(u));
        }
        if let Some(u) = &info.ucd {
            let _ = write!(head, " ucd=\"{}\"", esc(u));
        }
        if let Some(u) = &info.utype {
            let _ = write!(head, " utype=\"{}\"", esc(u));
        }
        match &info.description {
            Some(d) => {
                let _ = writeln!(head, "><DESCRIPTION>{}</DESCRIPTION></FIELD>", esc(d));
            }
            None => head.push_str("/>\n"),
        }
    }
    head
}

/// TABLEDATA rows: each value as VOTable writes it in text.
pub(crate) struct TableData {
    types: Vec<FieldType>,
}

impl TableData {
    /// Rows of columns declared as `types`.
    pub fn new(types: Vec<FieldType>) -> TableData {
        TableData { types }
    }

    /// Writes one batch of rows.
    pub fn write(&self, b: &RecordBatch, out: &mut dyn Write) -> Result<()> {
        let opts = FormatOptions::default().with_null("");
        let formatters: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<std::result::Result<_, _>>()?;
        let mut row = String::new();
        let mut text = String::new();
        for r in 0..b.num_rows() {
            row.clear();
            row.push_str("<TR>");
            for ((c, fmt), t) in b.columns().iter().zip(&formatters).zip(&self.types) {
                row.push_str("<TD>");
                if c.is_valid(r) {
                    text.clear();
                    value_text(c.as_ref(), r, fmt, t, &mut text)?;
                    row.push_str(&esc(&text));
                }
                row.push_str("</TD>");
            }
            row.push_str("</TR>\n");
            out.write_all(row.as_bytes())?;
        }
        Ok(())
    }
}

/// A value as VOTable text: floats as `NaN`, `+Inf`, `-Inf` where they are not
/// finite, arrays as space-separated numbers (DALI), the rest as Arrow prints it.
fn value_text(
    c: &dyn Array,
    r: usize,
    fmt: &ArrayFormatter,
    t: &FieldType,
    out: &mut String,
) -> Result<()> {
    match c.data_type() {
        DataType::Float64 => float_text(c.as_primitive::<Float64Type>().value(r), out),
        DataType::Float32 => float_text(f64::from(c.as_primitive::<Float32Type>().value(r)), out),
        DataType::List(f) if f.data_type() == &DataType::Float64 => {
            dali_array(c, r, t.fixed_count(), out)?
        }
        _ => {
            let _ = write!(out, "{}", fmt.value(r));
        }
    }
    Ok(())
}

fn float_text(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Rust prints the shortest text that reads back as the same bits.
        let _ = write!(out, "{v}");
    }
}

/// A DALI array as text: its numbers, space-separated.
pub(crate) fn dali_array(
    c: &dyn Array,
    row: usize,
    fixed: Option<usize>,
    out: &mut String,
) -> Result<()> {
    let v = c.as_list::<i32>().value(row);
    let v = v.as_primitive::<Float64Type>();
    check_count(v.len(), fixed)?;
    for i in 0..v.len() {
        if i > 0 {
            out.push(' ');
        }
        float_text(if v.is_valid(i) { v.value(i) } else { f64::NAN }, out);
    }
    Ok(())
}

/// Refuses an array whose length differs from its column's fixed arraysize: its
/// values would land in the next column's place.
pub(crate) fn check_count(len: usize, fixed: Option<usize>) -> Result<()> {
    match fixed {
        Some(n) if n != len => Err(crate::error::Error::Encode {
            message: format!("an array of {len} values in a column declared with arraysize {n}"),
        }),
        _ => Ok(()),
    }
}

/// The column a result's DataLink links are for: its first `diaObjectId`.
/// Its XML ID is its name: astropy (and so astroquery and pyvo) names a
/// column by its ID where it has one.
fn linked_column(schema: &SchemaRef) -> Option<(usize, String)> {
    schema
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case("diaObjectId"))
        .map(|i| (i, schema.field(i).name().clone()))
}

/// The DataLink service descriptors a VOTable result ends with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Services {
    /// The replay URL of the result's token.
    replay: Option<String>,
    /// The `{links}` endpoint, the snapshot, and the ID of the `diaObjectId`
    /// column, when the result has one.
    links: Option<(String, u64, String)>,
}

impl Services {
    /// The descriptors of a result of `schema` that `describe` describes.
    pub(crate) fn of(schema: &SchemaRef, describe: &Describe) -> Services {
        Services {
            replay: describe.replay_url.clone(),
            links: describe.links.clone().and_then(|(url, snapshot)| {
                linked_column(schema).map(|(_, id)| (url, snapshot, id))
            }),
        }
    }
}

/// A VOTable from the end of its DATA: the status after the table and the
/// DataLink service descriptors: one that repeats the result, and one that
/// links each object to its light curves.
pub(crate) fn close(status: std::result::Result<Status, &str>, services: &Services) -> String {
    let replay_url = services.replay.as_deref();
    let mut out = String::from("</TABLE>\n");
    match status {
        Err(message) => {
            let _ = writeln!(
                out,
                "<INFO name=\"QUERY_STATUS\" value=\"ERROR\">{}</INFO>",
                esc(message)
            );
        }
        Ok(Status::Overflow) => out.push_str("<INFO name=\"QUERY_STATUS\" value=\"OVERFLOW\"/>\n"),
        Ok(Status::Ok) => {}
    }
    out.push_str("</RESOURCE>\n");
    if let Some(url) = replay_url {
        // A DataLink service descriptor: how a client repeats this exact result.
        let _ = writeln!(
            out,
            "<RESOURCE type=\"meta\" utype=\"adhoc:service\" ID=\"replay\" name=\"replay\">\n\
             <DESCRIPTION>Repeats this query exactly (same snapshot, same rows, same order) and checks the result against its recorded checksum.</DESCRIPTION>\n\
             <PARAM name=\"accessURL\" datatype=\"char\" arraysize=\"*\" value=\"{}\"/>\n\
             <GROUP name=\"inputParams\">\n\
             <PARAM name=\"RESPONSEFORMAT\" datatype=\"char\" arraysize=\"*\" value=\"\"><DESCRIPTION>Output format (default: VOTable)</DESCRIPTION></PARAM>\n\
             </GROUP>\n</RESOURCE>",
            esc(url)
        );
    }
    if let Some((url, snapshot, id)) = &services.links {
        // DataLink 1.1 §4: each row's diaObjectId is the ID its links are for;
        // AS_OF keeps them at the result's snapshot.
        let _ = writeln!(
            out,
            "<RESOURCE type=\"meta\" utype=\"adhoc:service\" ID=\"links\" name=\"links\">\n\
             <DESCRIPTION>Links of each object: its current version, its light curve (DiaSource) and its forced photometry (DiaForcedSource), as TAP queries at this result's snapshot.</DESCRIPTION>\n\
             <PARAM name=\"standardID\" datatype=\"char\" arraysize=\"*\" value=\"ivo://ivoa.net/std/DataLink#links-1.1\"/>\n\
             <PARAM name=\"accessURL\" datatype=\"char\" arraysize=\"*\" value=\"{}\"/>\n\
             <GROUP name=\"inputParams\">\n\
             <PARAM name=\"ID\" datatype=\"char\" arraysize=\"*\" ref=\"{}\" value=\"\"/>\n\
             <PARAM name=\"AS_OF\" datatype=\"char\" arraysize=\"*\" value=\"{snapshot}\"/>\n\
             </GROUP>\n</RESOURCE>",
            esc(url),
            esc(id)
        );
    }
    out.push_str("</VOTABLE>\n");
    out
}

/// A whole VOTable that reports an error (TAP: `QUERY_STATUS` `ERROR`).
pub fn votable_error(message: &str, out: &mut dyn Write) -> Result<()> {
    // Clients (astroquery among them) find the message by this exact tag.
    write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n\
         <RESOURCE type=\"results\">\n\
         <INFO name=\"QUERY_STATUS\" value=\"ERROR\">{}</INFO>\n\
         </RESOURCE>\n</VOTABLE>\n",
        esc(message)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn text_xml_cannot_carry_is_replaced_and_line_breaks_are_references() {
        // A parser stops at U+FFFE/U+FFFF and control characters, and reads a
        // raw line break in an attribute as a space.
        assert_eq!(
            esc("a\u{fffe}b\u{ffff}c\u{1}d\ne\tf<&\""),
            "a\u{fffd}b\u{fffd}c d&#10;e&#9;f&lt;&amp;&quot;"
        );
    }
}
