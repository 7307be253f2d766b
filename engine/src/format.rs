//! Result encoders: a terminal table, CSV, TSV, JSON, VOTable (BINARY2 or
//! TABLEDATA) and Parquet (VOParquet: the VOTable header in its metadata).

use std::fmt::Write as _;
use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use datafusion::parquet::file::metadata::KeyValue;

use crate::error::Result;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A readable table for a terminal.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// Tab-separated values with a header line.
    Tsv,
    /// A JSON array of objects.
    Json,
    /// A VOTable 1.4 document, rows in BINARY2 (compact and exact).
    Votable,
    /// A VOTable 1.4 document, rows in TABLEDATA (readable XML).
    VotableTd,
    /// A Parquet file with the VOTable header in its key-value metadata (VOParquet).
    Parquet,
}

impl Format {
    /// The format's short name, as `--format` takes it.
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
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "table" | "text" => Format::Table,
            "csv" | "text/csv" => Format::Csv,
            "tsv" | "text/tab-separated-values" => Format::Tsv,
            "json" | "application/json" => Format::Json,
            "votable" | "xml" | "binary2" | "votable/b2" | "application/x-votable+xml" => {
                Format::Votable
            }
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

/// Metadata of one result column, from the schema when the column comes from a table.
#[derive(Debug, Clone, Default)]
pub struct ColumnInfo {
    /// Unit (VOUnit).
    pub unit: Option<String>,
    /// UCD.
    pub ucd: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// DALI xtype and arraysize of a geometry (`point` and `2`, `circle` and `3`,
    /// `polygon` and `*`), when the column is one.
    pub geometry: Option<(&'static str, &'static str)>,
}

/// What a result's columns mean, for formats that carry metadata.
#[derive(Debug, Clone, Default)]
pub struct Describe {
    /// Per column, in order.
    pub columns: Vec<ColumnInfo>,
    /// `INFO` elements to write before the table (name, value).
    pub infos: Vec<(String, String)>,
    /// Where the same result can be fetched again (a DataLink service descriptor
    /// in a VOTable): the replay URL of the query's token.
    pub replay_url: Option<String>,
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

enum Sink<'a> {
    Table(Out<'a>, Vec<RecordBatch>),
    Csv(arrow_csv::Writer<Out<'a>>),
    Json(arrow_json::ArrayWriter<Out<'a>>),
    /// The writer, and the VOTable header that goes into its metadata at the end.
    Parquet(datafusion::parquet::arrow::ArrowWriter<Out<'a>>, String),
    Votable(Out<'a>, crate::binary2::Binary2),
    VotableTd(Out<'a>),
}

/// Writes a result batch by batch, so that memory does not grow with its size
/// (except for `table`, which needs every row to size its columns).
pub struct ResultWriter<'a> {
    schema: SchemaRef,
    sink: Sink<'a>,
    rows: usize,
    replay_url: Option<String>,
}

impl<'a> ResultWriter<'a> {
    /// Starts a result (a VOTable's header is written at once).
    pub fn new(
        format: Format,
        schema: SchemaRef,
        describe: &Describe,
        out: Out<'a>,
    ) -> Result<ResultWriter<'a>> {
        let sink = match format {
            Format::Table => Sink::Table(out, Vec::new()),
            Format::Csv | Format::Tsv => Sink::Csv(
                arrow_csv::WriterBuilder::new()
                    .with_header(true)
                    .with_delimiter(if format == Format::Csv { b',' } else { b'\t' })
                    .build(out),
            ),
            Format::Json => Sink::Json(arrow_json::ArrayWriter::new(out)),
            Format::Parquet => Sink::Parquet(
                datafusion::parquet::arrow::ArrowWriter::try_new(out, schema.clone(), None)?,
                votable_head(&schema, describe),
            ),
            Format::Votable => {
                out.write_all(votable_head(&schema, describe).as_bytes())?;
                out.write_all(b"<DATA><BINARY2><STREAM encoding=\"base64\">\n")?;
                Sink::Votable(out, crate::binary2::Binary2::new(&schema))
            }
            Format::VotableTd => {
                out.write_all(votable_head(&schema, describe).as_bytes())?;
                out.write_all(b"<DATA><TABLEDATA>\n")?;
                Sink::VotableTd(out)
            }
        };
        Ok(ResultWriter {
            schema,
            sink,
            rows: 0,
            replay_url: describe.replay_url.clone(),
        })
    }

    /// Writes one batch.
    pub fn write(&mut self, b: &RecordBatch) -> Result<()> {
        self.rows += b.num_rows();
        match &mut self.sink {
            Sink::Table(_, held) => held.push(b.clone()),
            Sink::Csv(w) => w.write(&flatten_lists(b)?)?,
            Sink::Json(w) => w.write(b)?,
            Sink::Parquet(w, _) => w.write(b)?,
            Sink::Votable(out, enc) => enc.write(b, *out)?,
            Sink::VotableTd(out) => votable_rows(b, *out)?,
        }
        Ok(())
    }

    /// Ends a result that failed after it started: a VOTable closes its table and
    /// says `QUERY_STATUS` `ERROR` after it; other formats just stop.
    pub fn fail(self, message: &str) -> Result<()> {
        match self.sink {
            Sink::Votable(out, enc) => {
                enc.finish(out)?;
                out.write_all(b"</STREAM></BINARY2></DATA>\n")?;
                out.write_all(votable_close(false, Some(message), None).as_bytes())?;
                out.flush()?;
            }
            Sink::VotableTd(out) => {
                out.write_all(b"</TABLEDATA></DATA>\n")?;
                out.write_all(votable_close(false, Some(message), None).as_bytes())?;
                out.flush()?;
            }
            Sink::Table(out, _) => out.flush()?,
            Sink::Csv(w) => w.into_inner().flush()?,
            Sink::Json(w) => w.into_inner().flush()?,
            Sink::Parquet(..) => {}
        }
        Ok(())
    }

    /// Ends the result; `overflow` says that MAXREC cut rows.
    pub fn finish(self, overflow: bool) -> Result<()> {
        match self.sink {
            Sink::Table(out, held) => {
                if held.is_empty() {
                    let names: Vec<&str> = self
                        .schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect();
                    writeln!(out, "{}", names.join(" | "))?;
                    writeln!(out, "(0 rows)")?;
                } else {
                    writeln!(
                        out,
                        "{}",
                        arrow::util::pretty::pretty_format_batches(&held)?
                    )?;
                }
                if overflow {
                    writeln!(out, "(more rows exist: raise --maxrec to see them)")?;
                }
                out.flush()?;
            }
            Sink::Csv(mut w) => {
                if self.rows == 0 {
                    w.write(&RecordBatch::new_empty(self.schema.clone()))?;
                }
                w.into_inner().flush()?;
            }
            Sink::Json(mut w) => {
                w.finish()?;
                let out = w.into_inner();
                if self.rows == 0 {
                    // arrow-json writes nothing for no rows; an empty array is still JSON.
                    out.write_all(b"[]")?;
                }
                out.flush()?;
            }
            Sink::Parquet(mut w, head) => {
                let mut doc = head;
                doc.push_str(&votable_close(overflow, None, self.replay_url.as_deref()));
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
                out.write_all(
                    votable_close(overflow, None, self.replay_url.as_deref()).as_bytes(),
                )?;
                out.flush()?;
            }
            Sink::VotableTd(out) => {
                out.write_all(b"</TABLEDATA></DATA>\n")?;
                out.write_all(
                    votable_close(overflow, None, self.replay_url.as_deref()).as_bytes(),
                )?;
                out.flush()?;
            }
        }
        Ok(())
    }
}

/// Geometry columns (lists of doubles) as space-separated text, as DALI writes arrays.
fn flatten_lists(b: &RecordBatch) -> Result<RecordBatch> {
    if !b
        .schema()
        .fields()
        .iter()
        .any(|f| is_geometry(f.data_type()))
    {
        return Ok(b.clone());
    }
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if is_geometry(f.data_type()) {
            let texts: arrow::array::StringArray = (0..c.len())
                .map(|r| (!c.is_null(r)).then(|| dali_array(c.as_ref(), r)))
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(texts) as _);
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        cols,
    )?)
}

/// Geometry values (POINT, CIRCLE, ...) are lists of doubles.
fn is_geometry(t: &DataType) -> bool {
    matches!(t, DataType::List(f) if f.data_type() == &DataType::Float64)
}

fn dali_array(c: &dyn Array, row: usize) -> String {
    let l = c.as_list::<i32>();
    let v = l.value(row);
    let v = v.as_primitive::<arrow::datatypes::Float64Type>();
    v.iter()
        .map(|x| x.map_or("NaN".to_string(), |x| x.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The VOTable datatype, arraysize and xtype of an Arrow column.
pub fn votable_field(t: &DataType) -> (&'static str, Option<String>, Option<&'static str>) {
    match t {
        DataType::Boolean => ("boolean", None, None),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => ("short", None, None),
        DataType::Int32 | DataType::UInt16 => ("int", None, None),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ("long", None, None),
        DataType::Float16 | DataType::Float32 => ("float", None, None),
        DataType::Float64 => ("double", None, None),
        // A geometry (DALI array); which shape it is is not known from the type alone.
        DataType::List(f) if f.data_type() == &DataType::Float64 => {
            ("double", Some("*".into()), None)
        }
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            ("char", Some("*".into()), Some("timestamp"))
        }
        _ => ("char", Some("*".into()), None),
    }
}

/// A VOTable up to its last FIELD (no DATA).
fn votable_head(schema: &SchemaRef, describe: &Describe) -> String {
    let mut head = String::new();
    head.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    head.push_str("<VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n");
    head.push_str("<RESOURCE type=\"results\">\n<INFO name=\"QUERY_STATUS\" value=\"OK\"/>\n");
    for (n, v) in &describe.infos {
        let _ = writeln!(head, "<INFO name=\"{}\" value=\"{}\"/>", esc(n), esc(v));
    }
    head.push_str("<TABLE>\n");
    for (i, f) in schema.fields().iter().enumerate() {
        let (datatype, mut arraysize, mut xtype) = votable_field(f.data_type());
        let info = describe.columns.get(i).cloned().unwrap_or_default();
        if let Some((x, a)) = info.geometry
            && is_geometry(f.data_type())
        {
            xtype = Some(x);
            arraysize = Some(a.to_string());
        }
        let _ = write!(
            head,
            "<FIELD name=\"{}\" datatype=\"{datatype}\"",
            esc(f.name())
        );
        if let Some(a) = arraysize {
            let _ = write!(head, " arraysize=\"{a}\"");
        }
        if let Some(x) = xtype {
            let _ = write!(head, " xtype=\"{x}\"");
        }
        if let Some(u) = &info.unit {
            let _ = write!(head, " unit=\"{}\"", esc(u));
        }
        if let Some(u) = &info.ucd {
            let _ = write!(head, " ucd=\"{}\"", esc(u));
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

fn votable_rows(b: &RecordBatch, out: &mut dyn Write) -> Result<()> {
    let opts = FormatOptions::default().with_null("");
    let formatters: Vec<ArrayFormatter> = b
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<std::result::Result<_, _>>()?;
    let mut row = String::new();
    for r in 0..b.num_rows() {
        row.clear();
        row.push_str("<TR>");
        for (c, fmt) in b.columns().iter().zip(&formatters) {
            row.push_str("<TD>");
            if c.is_valid(r) {
                let text = if is_geometry(c.data_type()) {
                    dali_array(c.as_ref(), r)
                } else {
                    fmt.value(r).to_string()
                };
                row.push_str(&esc(&text));
            }
            row.push_str("</TD>");
        }
        row.push_str("</TR>\n");
        out.write_all(row.as_bytes())?;
    }
    Ok(())
}

/// A VOTable from the end of its DATA: the status after the table and the
/// DataLink service descriptor that repeats the result.
fn votable_close(overflow: bool, error: Option<&str>, replay_url: Option<&str>) -> String {
    let mut out = String::from("</TABLE>\n");
    if let Some(message) = error {
        let _ = writeln!(
            out,
            "<INFO name=\"QUERY_STATUS\" value=\"ERROR\">{}</INFO>",
            esc(message)
        );
    } else if overflow {
        out.push_str("<INFO name=\"QUERY_STATUS\" value=\"OVERFLOW\"/>\n");
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
    out.push_str("</VOTABLE>\n");
    out
}

/// A whole VOTable that reports an error (TAP: `QUERY_STATUS` `ERROR`).
pub fn votable_error(message: &str, out: &mut dyn Write) -> Result<()> {
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
