//! Tables a query brings with it (TAP `UPLOAD`): a VOTable read into Arrow.
//!
//! Uploads arrive as VOTable documents in any of the XML-carried
//! serializations (TABLEDATA, BINARY, BINARY2); FITS inside a VOTable is
//! refused with a message that says what to send instead. The reader is ours,
//! not the `votable` crate's: that crate turns on `serde_json` features
//! (`preserve_order`) for the whole build and brings a second `quick-xml`,
//! and uploads need only the first table's FIELDs and rows.

mod binary;
mod fields;
mod parse;

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

use fields::Type;
use parse::parse;

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

/// Why an uploaded table was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The name it is to be queried by is not an ADQL identifier.
    #[error(
        "'{name}' cannot name an upload: use a letter followed by letters, digits or _ \
         (at most 64)"
    )]
    BadName {
        /// The name given.
        name: String,
    },
    /// The VOTable cannot be read, or holds what an upload may not.
    #[error("upload '{name}': {problem}")]
    Unreadable {
        /// The upload's name.
        name: String,
        /// What is wrong, and where in the document.
        problem: String,
    },
}

fn bad(name: &str, problem: impl Into<String>) -> Error {
    UploadError::Unreadable {
        name: name.to_string(),
        problem: problem.into(),
    }
    .into()
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
        Err(UploadError::BadName {
            name: name.to_string(),
        }
        .into())
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
