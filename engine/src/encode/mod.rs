//! Result encoders, one file per format: a terminal table and CSV/TSV
//! ([`text`]), JSON ([`json`]), VOTable in BINARY2 or TABLEDATA ([`votable`],
//! which also reads uploaded VOTables) and Parquet (VOParquet: the VOTable
//! header in its metadata).
//!
//! Every format that declares types takes them from one place,
//! [`votable::FieldType::of`]: a VOTable's FIELDs, the BINARY2 layout of each
//! value and the JSON metadata cannot disagree.

pub(crate) mod describe;
mod json;
pub(crate) mod lineage;
mod text;
pub mod votable;

use std::io::Write;
use std::str::FromStr;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use datafusion::parquet::file::metadata::KeyValue;

use crate::error::{Error, Result};

pub(crate) use votable::binary2::Binary2;
pub use votable::votable_error;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A readable table for a terminal.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// Tab-separated values with a header line.
    Tsv,
    /// JSON: `{"metadata": [columns], "data": [rows as arrays], ...}`.
    Json,
    /// A VOTable 1.4 document, rows in BINARY2 (compact and exact).
    Votable,
    /// A VOTable 1.4 document, rows in TABLEDATA (readable XML).
    VotableTd,
    /// A Parquet file with the VOTable header in its key-value metadata (VOParquet).
    Parquet,
}

impl Format {
    /// Every format, in the order help texts and capabilities list them.
    pub const ALL: [Format; 7] = [
        Format::Votable,
        Format::VotableTd,
        Format::Csv,
        Format::Tsv,
        Format::Json,
        Format::Parquet,
        Format::Table,
    ];

    /// Whether a result that fails after its first rows can say so inside
    /// the document (VOTable's closing INFO, JSON's `status`); the others
    /// can only be cut off where they failed.
    pub fn reports_failure(self) -> bool {
        matches!(self, Format::Votable | Format::VotableTd | Format::Json)
    }

    /// The format's short name, as `--format` and `RESPONSEFORMAT` take it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Json => "json",
            Format::Votable => "votable",
            Format::VotableTd => "votable-td",
            Format::Parquet => "parquet",
        }
    }

    /// The media type of a document in this format (the HTTP `Content-Type`).
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Votable => "application/x-votable+xml; serialization=BINARY2",
            Format::VotableTd => "application/x-votable+xml; serialization=TABLEDATA",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Tsv => "text/tab-separated-values; charset=utf-8",
            Format::Json => "application/json",
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Table => "text/plain; charset=utf-8",
        }
    }

    /// The MIME type TAPRegExt advertises, and the TAPRegExt `ivo-id` of the
    /// standard output formats (`None` for the table a terminal shows).
    pub fn advertised(self) -> Option<(&'static str, Option<&'static str>)> {
        Some(match self {
            Format::Votable => (
                "application/x-votable+xml",
                Some("ivo://ivoa.net/std/TAPRegExt#output-votable-binary2"),
            ),
            Format::VotableTd => (
                "application/x-votable+xml;serialization=TABLEDATA",
                Some("ivo://ivoa.net/std/TAPRegExt#output-votable-td"),
            ),
            Format::Csv => ("text/csv", None),
            Format::Tsv => ("text/tab-separated-values", None),
            Format::Json => ("application/json", None),
            Format::Parquet => ("application/vnd.apache.parquet", None),
            Format::Table => return None,
        })
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "table" | "text" => Format::Table,
            "csv" | "text/csv" => Format::Csv,
            "tsv" | "text/tab-separated-values" => Format::Tsv,
            "json" | "application/json" => Format::Json,
            "votable"
            | "xml"
            | "binary2"
            | "votable/b2"
            | "votable/binary2"
            | "application/x-votable+xml" => Format::Votable,
            "votable-td" | "votable/td" | "tabledata" => Format::VotableTd,
            "parquet" | "voparquet" | "application/vnd.apache.parquet" => Format::Parquet,
            other => {
                return Err(format!(
                    "unknown format '{other}': use table, csv, tsv, json, votable (BINARY2), \
                     votable-td (TABLEDATA) or parquet"
                ));
            }
        })
    }
}

/// What one result column is, beyond its Arrow type: its metadata when it is a
/// plain reference to a table column, and what its values are known to be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnInfo {
    /// Unit (VOUnit).
    pub unit: Option<String>,
    /// UCD.
    pub ucd: Option<String>,
    /// Utype (a data model's name for it: ObsCore's columns have one).
    pub utype: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// DALI xtype and arraysize of a geometry (`point` and `2`, `circle` and `3`,
    /// `polygon` and `*`), when the column is one.
    pub geometry: Option<(&'static str, &'static str)>,
    /// Whether every text value is known to be ASCII (VOTable `char`); text not
    /// known to be goes out as `unicodeChar`.
    pub ascii: bool,
    /// Whether its values are MJDs in TAI (the catalog's `...MjdTai` columns
    /// and ObsCore's `t_min`/`t_max`), which a VOTable says with a TIMESYS.
    pub tai: bool,
}

impl ColumnInfo {
    /// A computed column: nothing known beyond its type.
    pub fn derived() -> ColumnInfo {
        ColumnInfo::default()
    }

    /// What two columns a union puts in one place have in common.
    pub fn merge(&self, other: &ColumnInfo) -> ColumnInfo {
        let same = |a: &Option<String>, b: &Option<String>| if a == b { a.clone() } else { None };
        ColumnInfo {
            unit: same(&self.unit, &other.unit),
            ucd: same(&self.ucd, &other.ucd),
            utype: same(&self.utype, &other.utype),
            description: same(&self.description, &other.description),
            geometry: if self.geometry == other.geometry {
                self.geometry
            } else {
                None
            },
            ascii: self.ascii && other.ascii,
            tai: self.tai && other.tai,
        }
    }
}

/// What a result's columns mean, for formats that carry metadata.
#[derive(Debug, Clone, Default)]
pub struct Describe {
    /// Per column, in order.
    pub columns: Vec<ColumnInfo>,
    /// `INFO` elements to write before the table (name, value); JSON carries them too.
    pub infos: Vec<(String, String)>,
    /// Where the same result can be fetched again (a DataLink service descriptor
    /// in a VOTable): the replay URL of the query's token.
    pub replay_url: Option<String>,
    /// The DataLink `{links}` endpoint for a result's `diaObjectId` column, and
    /// the snapshot its links read (a second service descriptor in a VOTable).
    pub links: Option<(String, u64)>,
}

impl Describe {
    /// The metadata of column `i` (a computed column's when none is given).
    pub fn column(&self, i: usize) -> ColumnInfo {
        self.columns.get(i).cloned().unwrap_or_default()
    }
}

/// How a result ended, as TAP's `QUERY_STATUS` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every row was written.
    Ok,
    /// MAXREC cut rows.
    Overflow,
}

impl Status {
    /// `OK` or `OVERFLOW`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Overflow => "OVERFLOW",
        }
    }

    /// `OVERFLOW` when MAXREC cut rows, else `OK`.
    pub fn of(overflow: bool) -> Status {
        if overflow {
            Status::Overflow
        } else {
            Status::Ok
        }
    }
}

/// Where output goes: any writer that may move between threads.
pub type Out<'a> = &'a mut (dyn Write + Send);

/// Writes a whole result in one format.
pub fn write(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    describe: &Describe,
    overflow: bool,
    out: Out<'_>,
) -> Result<()> {
    let mut w = ResultWriter::new(format, schema.clone(), describe, out)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish(overflow)
}

/// The most a Parquet result's writer holds (by its own estimate) before it
/// writes out its row group: the row group is the piece a response hands on,
/// and eight of them wait for a slow reader (for one unread thousand-column
/// result, 8 MiB took the server to 414 MB of RSS, 2 MiB to 310).
const PARQUET_GROUP_BYTES: usize = 2 << 20;

/// What a Parquet result's footer may hold: the writer keeps a record of each
/// column of each row group until the file ends, so a result of a thousand
/// columns, cut into a row group every [`PARQUET_GROUP_BYTES`], grew the server
/// by as much again as it sent (8.7 GB for 7.4 GB, with statistics; a hostile
/// pass). Statistics are not written, which leaves a few hundred bytes a
/// column chunk; past this the result fails rather than the server.
const PARQUET_FOOTER_BYTES: usize = 64 << 20;

/// The bytes the writer holds for one column of one row group, counted high.
const PARQUET_CHUNK_RECORD_BYTES: usize = 512;

enum Sink<'a> {
    Table(text::Table<'a>),
    Delimited(text::Delimited<'a>),
    Json(json::Json<'a>),
    /// The writer, and the VOTable header that goes into its metadata at the end.
    Parquet(datafusion::parquet::arrow::ArrowWriter<Out<'a>>, String),
    Votable(Out<'a>, Binary2),
    VotableTd(Out<'a>, votable::TableData),
}

/// Writes a result batch by batch, so that memory does not grow with its size
/// (except for `table`, which needs every row to size its columns).
pub struct ResultWriter<'a> {
    sink: Sink<'a>,
    services: votable::Services,
}

impl<'a> ResultWriter<'a> {
    /// Starts a result (a VOTable's header is written at once).
    pub fn new(
        format: Format,
        schema: SchemaRef,
        describe: &Describe,
        out: Out<'a>,
    ) -> Result<ResultWriter<'a>> {
        let types = votable::FieldType::all(&schema, describe);
        let services = votable::Services::of(&schema, describe);
        let sink = match format {
            Format::Table => Sink::Table(text::Table::new(schema, out)),
            Format::Csv => Sink::Delimited(text::Delimited::new(b',', schema, out)),
            Format::Tsv => Sink::Delimited(text::Delimited::new(b'\t', schema, out)),
            Format::Json => Sink::Json(json::Json::new(&schema, &types, describe, out)?),
            Format::Parquet => Sink::Parquet(
                // Without the embedded Arrow schema, readers (pyarrow, pandas) show
                // the file's key-value metadata, the VOTable header with it, as the
                // schema's: with it they show the Arrow schema's own, empty, instead.
                datafusion::parquet::arrow::ArrowWriter::try_new_with_options(
                    out,
                    schema.clone(),
                    datafusion::parquet::arrow::arrow_writer::ArrowWriterOptions::new()
                        .with_skip_arrow_metadata(true)
                        .with_properties(
                            // Each column's dictionary grows until its row group
                            // ends, beyond what the writer's own estimate counts:
                            // a server answering one unread thousand-column
                            // result held 430 MB with them, 310 without (CSV:
                            // 274).
                            datafusion::parquet::file::properties::WriterProperties::builder()
                                .set_dictionary_enabled(false)
                                // A result is read whole: statistics and page
                                // indexes would only grow the footer (by the
                                // width of the longest values, per column and
                                // row group).
                                .set_statistics_enabled(
                                    datafusion::parquet::file::properties::EnabledStatistics::None,
                                )
                                .set_offset_index_disabled(true)
                                .build(),
                        ),
                )?,
                votable::head(&schema, &types, describe),
            ),
            Format::Votable => {
                out.write_all(votable::head(&schema, &types, describe).as_bytes())?;
                out.write_all(b"<DATA><BINARY2><STREAM encoding=\"base64\">\n")?;
                Sink::Votable(out, Binary2::new(types))
            }
            Format::VotableTd => {
                out.write_all(votable::head(&schema, &types, describe).as_bytes())?;
                out.write_all(b"<DATA><TABLEDATA>\n")?;
                Sink::VotableTd(out, votable::TableData::new(types))
            }
        };
        Ok(ResultWriter { sink, services })
    }

    /// Writes one batch.
    pub fn write(&mut self, b: &RecordBatch) -> Result<()> {
        match &mut self.sink {
            Sink::Table(t) => t.write(b),
            Sink::Delimited(w) => w.write(b)?,
            Sink::Json(w) => w.write(b)?,
            Sink::Parquet(w, _) => {
                w.write(b)?;
                // A row group is held whole until it is written out: end it
                // early rather than hold up to a million wide rows.
                if w.memory_size() >= PARQUET_GROUP_BYTES {
                    w.flush()?;
                    let columns = b.num_columns().max(1);
                    let row_groups = w.flushed_row_groups().len();
                    if row_groups * columns * PARQUET_CHUNK_RECORD_BYTES > PARQUET_FOOTER_BYTES {
                        return Err(Error::ParquetFooterFull {
                            columns,
                            row_groups,
                            limit_mib: PARQUET_FOOTER_BYTES >> 20,
                        });
                    }
                }
            }
            Sink::Votable(out, enc) => enc.write(b, *out)?,
            Sink::VotableTd(out, rows) => rows.write(b, *out)?,
        }
        Ok(())
    }

    /// Ends a result that failed after it started: a VOTable closes its table and
    /// says `QUERY_STATUS` `ERROR` after it, JSON says `"status": "ERROR"`; other
    /// formats just stop.
    pub fn fail(self, message: &str) -> Result<()> {
        match self.sink {
            Sink::Votable(out, enc) => {
                enc.finish(out)?;
                out.write_all(b"</STREAM></BINARY2></DATA>\n")?;
                out.write_all(
                    votable::close(Err(message), &votable::Services::default()).as_bytes(),
                )?;
                out.flush()?;
            }
            Sink::VotableTd(out, _) => {
                out.write_all(b"</TABLEDATA></DATA>\n")?;
                out.write_all(
                    votable::close(Err(message), &votable::Services::default()).as_bytes(),
                )?;
                out.flush()?;
            }
            Sink::Json(w) => w.finish(Err(message))?,
            Sink::Table(t) => t.abandon()?,
            Sink::Delimited(w) => w.abandon()?,
            Sink::Parquet(..) => {}
        }
        Ok(())
    }

    /// Ends the result; `overflow` says that MAXREC cut rows.
    pub fn finish(self, overflow: bool) -> Result<()> {
        let status = Status::of(overflow);
        let services = &self.services;
        match self.sink {
            Sink::Table(t) => t.finish(overflow)?,
            Sink::Delimited(w) => w.finish()?,
            Sink::Json(w) => w.finish(Ok(status))?,
            Sink::Parquet(mut w, head) => {
                let mut doc = head;
                doc.push_str(&votable::close(Ok(status), services));
                w.append_key_value_metadata(KeyValue::new(
                    "IVOA.VOTable-Parquet.version".into(),
                    "1.0".to_string(),
                ));
                w.append_key_value_metadata(KeyValue::new(
                    "IVOA.VOTable-Parquet.content".into(),
                    doc,
                ));
                w.into_inner()?.flush()?;
            }
            Sink::Votable(out, enc) => {
                enc.finish(out)?;
                out.write_all(b"</STREAM></BINARY2></DATA>\n")?;
                out.write_all(votable::close(Ok(status), services).as_bytes())?;
                out.flush()?;
            }
            Sink::VotableTd(out, _) => {
                out.write_all(b"</TABLEDATA></DATA>\n")?;
                out.write_all(votable::close(Ok(status), services).as_bytes())?;
                out.flush()?;
            }
        }
        Ok(())
    }
}
