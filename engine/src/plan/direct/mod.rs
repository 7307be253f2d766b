//! Lookups by object id or by cone, read straight from the partitions that
//! hold them.
//!
//! A light curve (`SELECT cols FROM ppdb.DiaSource WHERE diaObjectId = X`), an
//! object's versions and a small cone search are the PPDB's most frequent
//! queries. Through DataFusion one costs 2–3 ms of SQL and physical planning
//! before a row is read, where the catalog's id index (or the cone's HEALPix
//! cells) already names the one or two partitions that hold the rows. Queries
//! of exactly these shapes (plain columns of one table, and as the whole
//! condition either `diaObjectId` equal to or in a list of integers, or
//! `CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', a, d, r)) = 1` on the
//! table's own position) are read here instead: the same files, the same
//! visibility rule, the same exact test, the same schema and rows. Any other
//! query, and any caller an embargo applies to, goes through DataFusion; a test
//! compares both paths.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, new_null_array,
};
use arrow::buffer::BooleanBuffer;
use arrow::compute::kernels::cmp::{eq, gt, lt_eq};
use arrow::compute::{
    SortColumn, SortOptions, and, cast, concat_batches, is_null, lexsort_to_indices, or, or_kleene,
    prep_null_mask_filter, take_record_batch,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::logical_expr::{Expr, ident, lit};
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowPredicate, ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter,
};
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::file::statistics::Statistics as ParquetStatistics;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::TryStreamExt;

use crate::error::Result;
use crate::functions::geometry;
use crate::scan::provider::{PpdbTable, View};
use crate::scan::prune::{self, Prune, Sky};
use catalog::ScanFile;

use adql::{Lookup, Rows};

use adql::shape::{ID, POSITION};

/// A lookup ready to read from one table: which rows, which columns, which files.
pub(crate) struct Direct {
    table: PpdbTable,
    lookup: Lookup,
    prune: Prune,
    near: Option<Arc<Vec<Range<u64>>>>,
    wanted: Vec<(usize, String)>,
    schema: SchemaRef,
}

/// A lookup's direct read from `table` (its scan pinned at the query's snapshot).
///
/// `None` when the direct read does not apply: an id lookup on a table whose
/// rows do not sit in their object's partition, a cone on a table without
/// positions or one too large to bound, or a caller an embargo applies to.
/// The caller then plans the query as usual.
pub(crate) fn prepare(table: PpdbTable, lookup: Lookup) -> Option<Direct> {
    if table.embargo.is_some() || !table.hints.is_empty() || table.partitions.is_some() {
        return None;
    }
    let served = table.served.clone();
    let mut near = None;
    let prune = match &lookup.rows {
        Rows::Ids(ids) => {
            if !table.colocated() {
                return None;
            }
            served.index_of(ID).ok()?;
            let filter: Expr = match ids.as_slice() {
                [one] => ident(ID).eq(lit(*one)),
                many => ident(ID).in_list(many.iter().map(|i| lit(*i)).collect(), false),
            };
            prune::analyse(&[filter], table.partition_order())
        }
        Rows::Cone { ra, dec, radius } => {
            table.physical.index_of(catalog::schema::HEALPIX_29).ok()?;
            for c in POSITION {
                served.index_of(c).ok()?;
            }
            near = Some(Arc::new(prune::cone_rows(*ra, *dec, *radius)?));
            Prune {
                sky: Some(prune::cones(
                    [(*ra, *dec, *radius)],
                    table.partition_order(),
                )?),
                ids: None,
                bounds: Default::default(),
            }
        }
    };
    let wanted: Vec<(usize, String)> = match &lookup.columns {
        None => (0..served.fields().len())
            .map(|i| (i, served.field(i).name().clone()))
            .collect(),
        Some(cols) => cols
            .iter()
            .map(|(c, out)| Some((served.index_of(c).ok()?, out.clone())))
            .collect::<Option<_>>()?,
    };
    if lookup.order.iter().any(|(at, _, _)| *at >= wanted.len()) {
        return None;
    }
    let schema: SchemaRef = Arc::new(Schema::new(
        wanted
            .iter()
            .map(|(i, out)| Field::clone(served.field(*i)).with_name(out.clone()))
            .collect::<Vec<_>>(),
    ));
    Some(Direct {
        table,
        lookup,
        prune,
        near,
        wanted,
        schema,
    })
}

impl Direct {
    /// The files the read opens.
    fn files(&self) -> Vec<&ScanFile> {
        let sky = self.prune.sky.as_ref();
        self.table
            .files(&self.prune, &sky.into_iter().collect::<Vec<_>>())
    }

    /// What EXPLAIN shows for the read: the table, the rows and the files.
    pub(crate) fn describe(&self) -> String {
        self.describe_files(None, &self.files())
    }

    /// The description, with `ran` what EXPLAIN ANALYZE adds: the rows the
    /// read returned and how long it took.
    fn describe_files(
        &self,
        ran: Option<(usize, std::time::Duration)>,
        files: &[&ScanFile],
    ) -> String {
        let (schema, table) = &self.lookup.table;
        let rows = match &self.lookup.rows {
            Rows::Ids(ids) if ids.len() == 1 => format!("{ID} = {}", ids[0]),
            Rows::Ids(ids) => format!("{ID} IN ({} ids)", ids.len()),
            Rows::Cone { ra, dec, radius } => {
                format!("CONTAINS(POINT(ra, dec), CIRCLE({ra}, {dec}, {radius})) = 1")
            }
        };
        let files: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let metrics = ran.map_or(String::new(), |(n, took)| {
            format!(
                ", metrics=[output_rows={n}, elapsed={:.3}ms]",
                took.as_secs_f64() * 1e3
            )
        });
        format!(
            "DirectReadExec: {schema}.{table} WHERE {rows}, snapshot={}, columns={}, \
             files=[{}]{metrics}\n",
            self.table.scan.snapshot,
            self.wanted.len(),
            files.join(", ")
        )
    }

    /// Reads the rows and says how it went, as EXPLAIN ANALYZE shows it.
    pub(crate) async fn analyse(self) -> Result<String> {
        let started = std::time::Instant::now();
        let files = self.files();
        let rows = self
            .arranged(&files)
            .await?
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        Ok(self.describe_files(Some((rows, started.elapsed())), &files))
    }

    /// Reads the rows, in the lookup's order.
    pub(crate) async fn run(self) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let batches = self.arranged(&self.files()).await?;
        let stream: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(batches.into_iter().map(Ok)),
        ));
        Ok((self.schema, stream))
    }

    /// The rows `files` hold for the lookup, in its order.
    async fn arranged(&self, files: &[&ScanFile]) -> Result<Vec<RecordBatch>> {
        let batches = read(
            &self.table,
            &self.lookup,
            files,
            self.prune.sky.as_ref(),
            self.near.clone(),
            &self.wanted,
            self.schema.clone(),
        )
        .await?;
        arrange(batches, &self.lookup, &self.schema)
    }
}

/// Each file's footer as the Arrow reader reads it (its schema and the
/// columns' places), by path: files never change, and building it again
/// for every direct read was 3% of a small query's time.
pub(crate) type ArrowMeta = moka::sync::Cache<String, ArrowReaderMetadata>;

/// The most bytes of footers [`ArrowMeta`] keeps.
const ARROW_META_BYTES: u64 = 64 << 20;

/// An empty [`ArrowMeta`], weighed by the footers it holds.
pub(crate) fn arrow_meta_cache() -> ArrowMeta {
    moka::sync::Cache::builder()
        .max_capacity(ARROW_META_BYTES)
        .weigher(|_, m: &ArrowReaderMetadata| {
            u32::try_from(m.metadata().memory_size()).unwrap_or(u32::MAX)
        })
        .build()
}

/// The most ids a lookup tests against each row group's bloom filter; a
/// longer list would match most row groups anyway.
const BLOOM_IDS: usize = 64;

/// Whether a row group with these statistics may hold rows of the lookup:
/// for ids, by `diaObjectId`'s range; for a cone, by `_healpix_29`'s.
fn may_hold(rows: &Rows, sky: Option<&Sky>, stats: Option<&ParquetStatistics>) -> bool {
    let Some(ParquetStatistics::Int64(s)) = stats else {
        return true;
    };
    let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt()) else {
        return true;
    };
    match (rows, sky) {
        (Rows::Ids(ids), _) => ids.iter().any(|i| lo <= i && i <= hi),
        (Rows::Cone { .. }, Some(sky)) => sky.overlaps(*lo, *hi),
        (Rows::Cone { .. }, None) => true,
    }
}

/// Reads the rows of `files` the lookup returns; `near` are a cone's fine
/// `_healpix_29` ranges, tested before the exact distance.
async fn read(
    table: &PpdbTable,
    lookup: &Lookup,
    files: &[&ScanFile],
    sky: Option<&Sky>,
    near: Option<Arc<Vec<Range<u64>>>>,
    wanted: &[(usize, String)],
    schema: SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let k = table.scan.snapshot as i64;
    let current = table.view == View::Current;
    let (matched, pruned_by): (&[&str], &str) = match lookup.rows {
        Rows::Ids(_) => (&[ID], ID),
        Rows::Cone { .. } => (&POSITION, catalog::schema::HEALPIX_29),
    };
    let metrics = ExecutionPlanMetricsSet::new();
    let mut out = Vec::new();
    for f in files {
        let reader: Box<dyn AsyncFileReader> =
            table
                .reader
                .create_reader(0, table.partitioned_file(f), None, &metrics)?;
        let mut builder = match table.arrow_meta.get(&f.path) {
            Some(meta) => ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta),
            None => {
                let mut reader = reader;
                let meta =
                    ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new()).await?;
                table.arrow_meta.insert(f.path.clone(), meta.clone());
                ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
            }
        };
        let file_schema = builder.schema().clone();
        let parquet_schema = builder.metadata().file_metadata().schema_descr_ptr();
        // Without the columns the condition tests, no row of the file matches.
        if matched.iter().any(|c| file_schema.index_of(c).is_err()) {
            continue;
        }
        // Row groups whose statistics allow a match.
        let stats_at = file_schema.index_of(pruned_by).ok();
        let groups: Vec<usize> = (0..builder.metadata().num_row_groups())
            .filter(|&g| {
                stats_at.is_none_or(|at| {
                    let stats = builder.metadata().row_group(g).column(at).statistics();
                    may_hold(&lookup.rows, sky, stats)
                })
            })
            .collect();
        // An object's rows are contiguous but its id is not ordered with its
        // neighbours' (rows sort by position), so in a file of many row groups
        // the id's bloom filter, not its range, finds the one to read.
        let id_leaf = parquet_schema.columns().iter().position(|c| c.name() == ID);
        let groups = match (&lookup.rows, id_leaf) {
            (Rows::Ids(ids), Some(at)) if ids.len() <= BLOOM_IDS => {
                let mut kept = Vec::with_capacity(groups.len());
                for g in groups {
                    match builder.get_row_group_column_bloom_filter(g, at).await? {
                        Some(bloom) if !ids.iter().any(|id| bloom.check(id)) => {}
                        _ => kept.push(g),
                    }
                }
                kept
            }
            _ => groups,
        };
        if groups.is_empty() {
            continue;
        }
        // The predicate reads the tested columns and the visibility columns the
        // file has; a visibility column the file lacks is NULL in every row.
        let mut tests = matched.to_vec();
        if f.filter_by_columns {
            tests.extend([catalog::schema::ADDED, catalog::schema::RETIRED]);
        }
        if current {
            tests.push(crate::scan::provider::VALIDITY_END);
        }
        let present: Vec<&str> = tests
            .iter()
            .copied()
            .filter(|c| file_schema.index_of(c).is_ok())
            .collect();
        let mask = ProjectionMask::columns(&parquet_schema, present.iter().copied());
        let rows = lookup.rows.clone();
        let by_columns = f.filter_by_columns;
        let mut predicates: Vec<Box<dyn ArrowPredicate>> = Vec::new();
        // A cone's rows are first narrowed by `_healpix_29` (an integer
        // comparison), so the trigonometry runs on a few times the cone's rows,
        // not on the whole file's.
        let healpix = catalog::schema::HEALPIX_29;
        if let Some(near) = near.clone()
            && file_schema.index_of(healpix).is_ok()
        {
            let mask = ProjectionMask::columns(&parquet_schema, [healpix]);
            predicates.push(Box::new(ArrowPredicateFn::new(
                mask,
                move |batch: RecordBatch| {
                    let h = batch.column(0).as_primitive::<Int64Type>();
                    let values = h.values();
                    // A NULL `_healpix_29` (no position) is left to the exact test.
                    let inside = BooleanBuffer::collect_bool(h.len(), |r| {
                        h.is_null(r) || prune::within(&near, values[r] as u64)
                    });
                    Ok(BooleanArray::new(inside, None))
                },
            )));
        }
        predicates.push(Box::new(ArrowPredicateFn::new(
            mask,
            move |batch: RecordBatch| keep(&batch, &rows, by_columns, current, k),
        )));
        let read: Vec<&str> = wanted
            .iter()
            .map(|(i, _)| table.served.field(*i).name().as_str())
            .filter(|c| file_schema.index_of(c).is_ok())
            .collect();
        let projection = ProjectionMask::columns(&parquet_schema, read.iter().copied());
        // Rows hidden by position are skipped within the chosen row groups.
        let selection = (!f.hidden.is_empty()).then(|| {
            let meta = builder.metadata();
            let starts: Vec<u64> = (0..meta.num_row_groups())
                .scan(0u64, |at, g| {
                    let start = *at;
                    *at += meta.row_group(g).num_rows() as u64;
                    Some(start)
                })
                .collect();
            let spans: Vec<Range<u64>> = groups
                .iter()
                .map(|&g| starts[g]..starts[g] + meta.row_group(g).num_rows() as u64)
                .collect();
            crate::scan::provider::skip_positions_in(&f.hidden, &spans)
        });
        let mut builder = builder
            .with_row_groups(groups)
            .with_projection(projection)
            .with_row_filter(RowFilter::new(predicates));
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        let batches: Vec<RecordBatch> = builder.build()?.try_collect().await?;
        for b in batches {
            if b.num_rows() > 0 {
                out.push(conform(&b, wanted, &table.served, schema.clone())?);
            }
        }
    }
    Ok(out)
}

/// The rows in the lookup's order, cut at its limit.
fn arrange(
    batches: Vec<RecordBatch>,
    lookup: &Lookup,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    if lookup.order.is_empty() && lookup.limit.is_none() {
        return Ok(batches);
    }
    let all = concat_batches(schema, &batches)?;
    let all = if lookup.order.is_empty() {
        all
    } else {
        let keys: Vec<SortColumn> = lookup
            .order
            .iter()
            .map(|&(at, descending, nulls_first)| SortColumn {
                values: all.column(at).clone(),
                options: Some(SortOptions {
                    descending,
                    nulls_first,
                }),
            })
            .collect();
        let order = lexsort_to_indices(&keys, None)?;
        take_record_batch(&all, &order)?
    };
    let rows = lookup
        .limit
        .map_or(all.num_rows(), |n| n.min(all.num_rows()));
    Ok(vec![all.slice(0, rows)])
}

/// Which rows of a batch of the predicate's columns the lookup returns.
fn keep(
    batch: &RecordBatch,
    rows: &Rows,
    by_columns: bool,
    current: bool,
    k: i64,
) -> std::result::Result<BooleanArray, arrow::error::ArrowError> {
    let count = batch.num_rows();
    let nulls = |name: &str| -> ArrayRef {
        batch
            .column_by_name(name)
            .cloned()
            .unwrap_or_else(|| new_null_array(&DataType::Int64, count))
    };
    let mut mask = match rows {
        Rows::Ids(ids) => {
            let id = nulls(ID);
            let mut mask: Option<BooleanArray> = None;
            for i in ids {
                let m = eq(&id, &Int64Array::new_scalar(*i))?;
                mask = Some(match mask {
                    None => m,
                    Some(prev) => or(&prev, &m)?,
                });
            }
            mask.unwrap_or_else(|| BooleanArray::from(vec![false; count]))
        }
        Rows::Cone { ra, dec, radius } => {
            // The same arithmetic as `adql_cone`, so the rows are the same.
            let centre = geometry::vector(*ra, *dec);
            let ras = cast(&nulls(POSITION[0]), &DataType::Float64)?;
            let decs = cast(&nulls(POSITION[1]), &DataType::Float64)?;
            let (ras, decs) = (
                ras.as_primitive::<Float64Type>(),
                decs.as_primitive::<Float64Type>(),
            );
            (0..count)
                .map(|r| {
                    (ras.is_valid(r) && decs.is_valid(r)).then(|| {
                        let here = geometry::vector(ras.value(r), decs.value(r));
                        geometry::distance_from(here, centre) <= *radius
                    })
                })
                .collect()
        }
    };
    if by_columns {
        let added = lt_eq(&nulls(catalog::schema::ADDED), &Int64Array::new_scalar(k))?;
        let retired = nulls(catalog::schema::RETIRED);
        // Kleene logic: a NULL `_retired` stands, whatever `_retired > k` says.
        let standing = or_kleene(
            &is_null(&retired)?,
            &gt(&retired, &Int64Array::new_scalar(k))?,
        )?;
        mask = and(&mask, &and(&added, &standing)?)?;
    }
    if current {
        let end = batch.column_by_name(crate::scan::provider::VALIDITY_END);
        if let Some(end) = end {
            mask = and(&mask, &is_null(end)?)?;
        }
    }
    // NULL (an unknown id, position or end) does not match.
    Ok(if mask.null_count() > 0 {
        prep_null_mask_filter(&mask)
    } else {
        mask
    })
}

/// A batch as read from one file, in the result's columns, names and types.
fn conform(
    batch: &RecordBatch,
    wanted: &[(usize, String)],
    served: &SchemaRef,
    schema: SchemaRef,
) -> Result<RecordBatch> {
    let columns = wanted
        .iter()
        .map(|(i, _)| {
            let field = served.field(*i);
            match batch.column_by_name(field.name()) {
                Some(a) if a.data_type() == field.data_type() => Ok(a.clone()),
                Some(a) => Ok(cast(a, field.data_type())?),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}
