//! One table written as a HATS catalog: a Parquet file per partition under
//! `dataset/Norder=/Dir=/Npix=`, `_healpix_29` first and rows sorted by it,
//! then `dataset/_metadata` and `dataset/_common_metadata`,
//! `partition_info.csv`, and last `hats.properties` (and its twin
//! `properties`): a folder without them is an export that did not finish.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use catalog::store::Location;
use datafusion::parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::{
    FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataWriter, RowGroupMetaData, SortingColumn,
};
use datafusion::parquet::file::properties::WriterProperties;
use object_store::buffered::BufWriter;
use object_store::{ObjectStoreExt, PutPayload};

use super::ExportError;
use super::margin::Margins;
use super::partition::{self, HISTOGRAM_ORDER, Partition};
use super::properties::{Properties, properties_text};
use crate::{Engine, QueryOptions};

/// The index column HATS readers expect first.
pub(super) const HEALPIX_COLUMN: &str = "_healpix_29";
/// Its name in the export's ADQL, where names start with a letter.
const QUERY_COLUMN: &str = "hats_healpix_29";
/// Rows per row group: a few tens of MB of a wide table in memory at once.
const ROW_GROUP_ROWS: usize = 65_536;

/// How an export is made.
#[derive(Debug, Clone)]
pub struct HatsOptions {
    /// How tables are read: the snapshot, whether embargoed rows are
    /// included (`privileged`), the time and memory each query may take.
    pub query: QueryOptions,
    /// The most rows a partition may hold before it splits into its four
    /// children (a partition at order 10 holds what it holds).
    pub max_rows: u64,
    /// Write beside each catalog a margin catalog of the rows within this
    /// many arcseconds of each partition's border (none if 0).
    pub margin_arcsec: f64,
    /// The software that wrote it, for `hats_builder`.
    pub builder: String,
}

impl Default for HatsOptions {
    fn default() -> Self {
        HatsOptions {
            query: QueryOptions::default(),
            // hats-import's default threshold.
            max_rows: 1_000_000,
            // hats-import's default margin.
            margin_arcsec: 5.0,
            builder: format!("ppdb {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// What one table's export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The table (its name is the catalog's folder).
    pub table: String,
    /// The snapshot read.
    pub snapshot: u64,
    /// The token of the query whose rows the files hold.
    pub token: String,
    /// Rows written.
    pub rows: u64,
    /// Rows left out because `ra` or `dec` is NULL.
    pub without_position: u64,
    /// Partitions (files).
    pub partitions: usize,
    /// The finest partition order.
    pub max_order: u8,
    /// Compressed bytes of the data files.
    pub bytes: u64,
    /// The margin catalog written beside it, if any rows are near another
    /// partition: its name, rows and partitions.
    pub margin: Option<(String, u64, usize)>,
}

/// The name of a table's margin catalog, as hats-import names them.
pub(super) fn margin_name(table: &str, arcsec: f64) -> String {
    format!("{table}_{arcsec}arcs")
}

/// A table counted: its snapshot and the partitions its rows fill.
pub(super) struct Counted {
    pub(super) snapshot: u64,
    parts: Vec<Partition>,
    without_position: u64,
}

/// Counts a table's rows per histogram cell at the snapshot `query` names
/// (the latest if none) and chooses its partitions.
pub(super) async fn count(
    engine: &Engine,
    table: &adql::Table,
    query: &QueryOptions,
    max_rows: u64,
) -> crate::Result<Counted> {
    let cell = format!("ivo_healpix_index({HISTOGRAM_ORDER}, ra, dec)");
    let adql = format!(
        "SELECT {cell} AS cell, COUNT(*) AS n FROM {}.{} GROUP BY {cell}",
        table.schema, table.name
    );
    let mut result = engine.query(&adql, query).await?;
    let snapshot = result.snapshot.snapshot;
    let (mut counts, mut without_position) = (Vec::new(), 0u64);
    while let Some(batch) = result.next_batch().await {
        let batch = batch?;
        let cells = arrow::compute::cast(batch.column(0), &DataType::Int64)?;
        let rows = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let (cells, rows) = (
            cells.as_primitive::<Int64Type>(),
            rows.as_primitive::<Int64Type>(),
        );
        for i in 0..batch.num_rows() {
            let n = rows.value(i).max(0) as u64;
            if cells.is_null(i) {
                without_position += n;
            } else {
                counts.push((cells.value(i) as u64, n));
            }
        }
    }
    counts.sort_unstable();
    let parts = partition::plan(&counts, max_rows);
    if parts.is_empty() {
        return Err(ExportError::Table {
            table: table.name.clone(),
            why: format!(
                "no row has a position at snapshot {snapshot}: nothing to export (leave it out)"
            ),
        }
        .into());
    }
    Ok(Counted {
        snapshot,
        parts,
        without_position,
    })
}

/// Writes a counted table's rows, sorted by `_healpix_29`, into its
/// partitions' files, then the catalog's metadata and properties; then its
/// margin catalog.
pub(super) async fn write(
    engine: &Engine,
    table: &adql::Table,
    counted: Counted,
    out: &Location,
    query: &QueryOptions,
    options: &HatsOptions,
) -> crate::Result<Exported> {
    let Counted {
        snapshot,
        parts,
        without_position,
    } = counted;
    let adql = format!(
        "SELECT ivo_healpix_index(29, ra, dec) AS {QUERY_COLUMN}, * FROM {}.{} \
         WHERE ra IS NOT NULL AND dec IS NOT NULL ORDER BY {QUERY_COLUMN}",
        table.schema, table.name
    );
    let mut query = query.clone();
    query.as_of = Some(adql::AsOf::Snapshot(snapshot));
    let mut result = engine.query(&adql, &query).await?;
    let token = result.token.clone().unwrap_or_default();
    let schema = hats_schema(&result.schema);
    let inconsistent = |why: String| ExportError::Inconsistent {
        table: table.name.clone(),
        why,
    };
    let mut files = Files::new(
        out,
        &super::staged(&table.name),
        schema.clone(),
        snapshot,
        &token,
    );
    let mut margins =
        (options.margin_arcsec > 0.0).then(|| Margins::new(&parts, options.margin_arcsec));
    let mut open: Option<(Partition, AsyncArrowWriter<BufWriter>, u64)> = None;
    let mut next = 0;
    while let Some(batch) = result.next_batch().await {
        let batch = RecordBatch::try_new(schema.clone(), batch?.columns().to_vec())?;
        let index = batch.column(0).as_primitive::<Int64Type>();
        if index.null_count() > 0 {
            return Err(inconsistent("a row has no _healpix_29".into()).into());
        }
        if let Some(m) = margins.as_mut() {
            m.add(&batch)?;
        }
        let values = index.values();
        let mut at = 0;
        while at < batch.num_rows() {
            let v = values[at] as u64;
            if !open
                .as_ref()
                .is_some_and(|(p, ..)| p.range_29().contains(&v))
            {
                if let Some((p, w, rows)) = open.take() {
                    files.close(p, w, rows, Some(&table.name)).await?;
                }
                // Rows come sorted, partitions in the same order: the next
                // partition is the one that holds this row, or the counts lied.
                let p = parts
                    .get(next)
                    .filter(|p| p.range_29().contains(&v))
                    .copied()
                    .ok_or_else(|| {
                        inconsistent(format!(
                            "a row at _healpix_29 {v} is in no partition its counts chose"
                        ))
                    })?;
                next += 1;
                open = Some((p, files.open(&p)?, 0));
            }
            let Some((p, w, rows)) = open.as_mut() else {
                unreachable!("a partition was opened above")
            };
            let end = p.range_29().end;
            let upto = at + values[at..].partition_point(|x| (*x as u64) < end);
            w.write(&batch.slice(at, upto - at)).await?;
            *rows += (upto - at) as u64;
            at = upto;
        }
    }
    if let Some((p, w, rows)) = open.take() {
        files.close(p, w, rows, Some(&table.name)).await?;
    }
    if next != parts.len() {
        return Err(
            inconsistent(format!("{} of {} partitions got rows", next, parts.len())).into(),
        );
    }
    let catalog_id = engine.catalog().state().await?.catalog_id.clone();
    let mut about = Properties {
        name: &table.name,
        table: &table.name,
        margin_arcsec: None,
        rows: files.rows,
        snapshot,
        token: &token,
        catalog_id: &catalog_id,
        without_position,
        max_rows: options.max_rows,
        max_order: parts.iter().map(|p| p.order).max().unwrap_or(0),
        bytes: files.bytes,
        builder: &options.builder,
        embargo_applied: !query.privileged,
    };
    let mut exported = Exported {
        table: table.name.clone(),
        snapshot,
        token: token.clone(),
        rows: files.rows,
        without_position,
        partitions: parts.len(),
        max_order: about.max_order,
        bytes: files.bytes,
        margin: None,
    };
    files.finish(&about).await?;
    let Some(margins) = margins.filter(|m| m.rows() > 0) else {
        return Ok(exported);
    };
    // The margin catalog: per partition, its neighbours' rows near it, sorted.
    let name = margin_name(&table.name, options.margin_arcsec);
    let mut files = Files::new(out, &super::staged(&name), schema.clone(), snapshot, &token);
    for (p, batches) in parts.iter().zip(margins.batches) {
        if batches.is_empty() {
            continue;
        }
        let rows = arrow::compute::concat_batches(&schema, &batches)?;
        let order = arrow::compute::sort_to_indices(rows.column(0), None, None)?;
        let rows = arrow::compute::take_record_batch(&rows, &order)?;
        let mut w = files.open(p)?;
        w.write(&rows).await?;
        files.close(*p, w, rows.num_rows() as u64, None).await?;
    }
    about.name = &name;
    about.margin_arcsec = Some(options.margin_arcsec);
    about.rows = files.rows;
    about.bytes = files.bytes;
    about.without_position = 0;
    exported.margin = Some((name.clone(), files.rows, files.written.len()));
    files.finish(&about).await?;
    Ok(exported)
}

/// The result's schema with the index column named as HATS names it.
fn hats_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Arc<Field>> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match i {
            0 => Arc::new(Field::new(HEALPIX_COLUMN, DataType::Int64, false)),
            _ => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// ZSTD, sorted by `_healpix_29`, and where the rows came from.
fn writer_properties(snapshot: u64, token: &str) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("ppdb_snapshot".into(), snapshot.to_string()),
            KeyValue::new("ppdb_token".into(), token.to_string()),
        ]))
        .build()
}

/// One catalog's files: its partitions' as they are written, then the
/// metadata that lists them.
struct Files<'a> {
    out: &'a Location,
    name: String,
    schema: SchemaRef,
    properties: WriterProperties,
    row_groups: Vec<RowGroupMetaData>,
    file: Option<FileMetaData>,
    written: Vec<Partition>,
    rows: u64,
    bytes: u64,
}

impl<'a> Files<'a> {
    fn new(out: &'a Location, name: &str, schema: SchemaRef, snapshot: u64, token: &str) -> Self {
        Files {
            out,
            name: name.to_string(),
            schema,
            properties: writer_properties(snapshot, token),
            row_groups: Vec::new(),
            file: None,
            written: Vec::new(),
            rows: 0,
            bytes: 0,
        }
    }

    /// A writer of partition `p`'s file.
    fn open(&self, p: &Partition) -> crate::Result<AsyncArrowWriter<BufWriter>> {
        let path = self
            .out
            .child(&format!("{}/dataset/{}", self.name, p.path()));
        let writer = BufWriter::new(self.out.store.clone(), path);
        Ok(AsyncArrowWriter::try_new(
            writer,
            self.schema.clone(),
            Some(self.properties.clone()),
        )?)
    }

    /// Finishes a partition's file; of a table's own partition (`counted`
    /// names the table), checks it holds the rows counted.
    async fn close(
        &mut self,
        p: Partition,
        writer: AsyncArrowWriter<BufWriter>,
        rows: u64,
        counted: Option<&str>,
    ) -> crate::Result<()> {
        let written = writer.close().await?;
        if let Some(table) = counted.filter(|_| rows != p.rows) {
            return Err(ExportError::Inconsistent {
                table: table.into(),
                why: format!(
                    "partition {} holds {rows} rows where {} were counted",
                    p.path(),
                    p.rows
                ),
            }
            .into());
        }
        let path = p.path();
        for rg in written.row_groups() {
            self.bytes += rg.compressed_size().max(0) as u64;
            let columns = rg
                .columns()
                .iter()
                .map(|c| c.clone().into_builder().set_file_path(path.clone()).build())
                .collect::<Result<Vec<_>, _>>()?;
            let builder = rg.clone().into_builder().set_column_metadata(columns);
            self.row_groups.push(builder.build()?);
        }
        self.rows += rows;
        self.written.push(p);
        if self.file.is_none() {
            self.file = Some(written.file_metadata().clone());
        }
        Ok(())
    }

    /// Writes `_common_metadata`, `_metadata`, `partition_info.csv` and, last,
    /// the properties: a folder without them is no catalog.
    async fn finish(self, about: &Properties<'_>) -> crate::Result<()> {
        let (out, name) = (self.out, self.name.clone());
        let put = |rel: &str, body: Vec<u8>| {
            let path = out.child(&format!("{name}/{rel}"));
            let store = out.store.clone();
            async move {
                store
                    .put(&path, PutPayload::from(body))
                    .await
                    .map_err(catalog::Error::from)
            }
        };
        let common = ArrowWriter::try_new(
            Vec::new(),
            self.schema.clone(),
            Some(self.properties.clone()),
        )?
        .into_inner()?;
        put("dataset/_common_metadata", common).await?;
        let mut sorted = self.written.clone();
        sorted.sort_by_key(|p| (p.order, p.npix));
        let mut csv = String::from("Norder,Npix\n");
        for p in &sorted {
            csv.push_str(&format!("{},{}\n", p.order, p.npix));
        }
        let text = properties_text(about);
        put("dataset/_metadata", self.metadata()?).await?;
        put("partition_info.csv", csv.into_bytes()).await?;
        put("properties", text.clone().into_bytes()).await?;
        put("hats.properties", text.into_bytes()).await?;
        Ok(())
    }

    /// `_metadata`: a Parquet file of no rows whose footer lists every
    /// partition file's row groups, each with its path (as pyarrow's
    /// `write_metadata` makes it).
    fn metadata(self) -> crate::Result<Vec<u8>> {
        let Some(f) = self.file else {
            return Err(crate::Error::Encode {
                message: "an export with no partition has no _metadata".into(),
            });
        };
        let file = FileMetaData::new(
            f.version(),
            self.rows as i64,
            f.created_by().map(str::to_string),
            f.key_value_metadata().cloned(),
            f.schema_descr_ptr(),
            f.column_orders().cloned(),
        );
        let metadata = ParquetMetaData::new(file, self.row_groups);
        let mut out = b"PAR1".to_vec();
        ParquetMetaDataWriter::new(&mut out, &metadata).finish()?;
        Ok(out)
    }
}
