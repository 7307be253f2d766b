//! Plain-text results: CSV and TSV with a header line, and the aligned table a
//! terminal shows.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, SchemaRef};

use super::Out;
use super::votable::dali_array;
use crate::error::Result;

/// CSV or TSV, written batch by batch.
pub(crate) struct Delimited<'a> {
    writer: arrow_csv::Writer<Out<'a>>,
    schema: SchemaRef,
    rows: usize,
}

impl<'a> Delimited<'a> {
    /// Values separated by `delimiter`, after a header line of column names.
    pub fn new(delimiter: u8, schema: SchemaRef, out: Out<'a>) -> Delimited<'a> {
        Delimited {
            writer: arrow_csv::WriterBuilder::new()
                .with_header(true)
                .with_delimiter(delimiter)
                .build(out),
            schema,
            rows: 0,
        }
    }

    /// Writes one batch.
    pub fn write(&mut self, b: &RecordBatch) -> Result<()> {
        self.rows += b.num_rows();
        self.writer.write(&flatten_lists(b)?)?;
        Ok(())
    }

    /// Ends the result (the header alone when there were no rows).
    pub fn finish(mut self) -> Result<()> {
        if self.rows == 0 {
            self.writer.write(&flatten_lists(&RecordBatch::new_empty(
                self.schema.clone(),
            ))?)?;
        }
        self.writer.into_inner().flush()?;
        Ok(())
    }

    /// Stops after a failure: what was written stays.
    pub fn abandon(self) -> Result<()> {
        self.writer.into_inner().flush()?;
        Ok(())
    }
}

/// Geometry columns (lists of doubles) as space-separated text, as DALI writes arrays.
fn flatten_lists(b: &RecordBatch) -> Result<RecordBatch> {
    let is_list = |t: &DataType| matches!(t, DataType::List(_));
    if !b.schema().fields().iter().any(|f| is_list(f.data_type())) {
        return Ok(b.clone());
    }
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if is_list(f.data_type()) {
            let mut texts = Vec::with_capacity(c.len());
            for r in 0..c.len() {
                texts.push(if c.is_null(r) {
                    None
                } else {
                    let mut s = String::new();
                    dali_array(c.as_ref(), r, None, &mut s)?;
                    Some(s)
                });
            }
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(StringArray::from(texts)) as _);
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

/// The aligned table a terminal shows: it needs every row to size its columns.
pub(crate) struct Table<'a> {
    out: Out<'a>,
    schema: SchemaRef,
    held: Vec<RecordBatch>,
}

impl<'a> Table<'a> {
    /// A table of rows of `schema`.
    pub fn new(schema: SchemaRef, out: Out<'a>) -> Table<'a> {
        Table {
            out,
            schema,
            held: Vec::new(),
        }
    }

    /// Keeps one batch.
    pub fn write(&mut self, b: &RecordBatch) {
        self.held.push(b.clone());
    }

    /// Prints the table; `overflow` adds a note that more rows exist.
    pub fn finish(self, overflow: bool) -> Result<()> {
        if self.held.is_empty() {
            let names: Vec<&str> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            writeln!(self.out, "{}", names.join(" | "))?;
            writeln!(self.out, "(0 rows)")?;
        } else {
            writeln!(
                self.out,
                "{}",
                arrow::util::pretty::pretty_format_batches(&self.held)?
            )?;
        }
        if overflow {
            writeln!(self.out, "(more rows exist: raise --maxrec to see them)")?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// Stops after a failure, printing nothing.
    pub fn abandon(self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
