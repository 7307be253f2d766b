//! Lookups by object id, read straight from the object's partition.
//!
//! A light curve (`SELECT cols FROM ppdb.DiaSource WHERE diaObjectId = X`) and
//! an object's versions are the PPDB's most frequent queries. Through
//! DataFusion one costs about 2 ms of SQL and physical planning before a row
//! is read, where the catalog's id index already names the one partition that
//! holds the rows. Queries of exactly that shape (plain columns of one
//! co-located table, `diaObjectId` equal to or in a list of integers, nothing
//! else) are read here instead: the same files, the same visibility rule, the
//! same schema and rows. Any other query, and any caller an embargo applies
//! to, goes through DataFusion; a test compares both paths.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, new_null_array};
use arrow::compute::kernels::cmp::{eq, gt, lt_eq};
use arrow::compute::{
    SortColumn, SortOptions, and, cast, concat_batches, is_null, lexsort_to_indices, or, or_kleene,
    prep_null_mask_filter, take_record_batch,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::logical_expr::{Expr, ident, lit};
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{ArrowPredicateFn, ArrowReaderOptions, RowFilter};
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::file::statistics::Statistics as ParquetStatistics;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as Sql, GroupByExpr, Ident, LimitClause, OrderBy, OrderByKind, SelectItem,
    SetExpr, Statement, TableFactor, Value, WildcardAdditionalOptions,
};
use futures::TryStreamExt;

use crate::error::Result;
use crate::provider::{PpdbTable, View};

/// The column a lookup matches.
const ID: &str = "diaObjectId";

/// A query of the lookup shape: which table, which columns, which ids.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lookup {
    /// The served table, as `(schema, table)`.
    pub(crate) table: (String, String),
    /// The result's columns: `(column, name in the result)`; `None` for `*`.
    columns: Option<Vec<(String, String)>>,
    /// The ids asked for.
    ids: Vec<i64>,
    /// The order of the result: `(result column, descending, nulls first)`.
    order: Vec<(usize, bool, bool)>,
    /// The most rows (`TOP`, which ADQL's rewriting turns into `LIMIT`).
    limit: Option<usize>,
}

/// The lookup a rewritten statement is, if it has exactly the lookup shape.
pub(crate) fn recognise(statement: &Statement) -> Option<Lookup> {
    let Statement::Query(q) = statement else {
        return None;
    };
    if q.with.is_some()
        || q.fetch.is_some()
        || !q.locks.is_empty()
        || q.for_clause.is_some()
        || q.settings.is_some()
        || q.format_clause.is_some()
        || !q.pipe_operators.is_empty()
    {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let grouped = match &s.group_by {
        GroupByExpr::Expressions(e, m) => !e.is_empty() || !m.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if grouped
        || s.distinct.is_some()
        || s.top.is_some()
        || s.having.is_some()
        || s.exclude.is_some()
        || s.into.is_some()
        || s.prewhere.is_some()
        || s.qualify.is_some()
        || s.value_table_mode.is_some()
        || s.select_modifiers.is_some()
        || !s.optimizer_hints.is_empty()
        || !s.lateral_views.is_empty()
        || !s.connect_by.is_empty()
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || !s.named_window.is_empty()
        || s.from.len() != 1
        || !s.from[0].joins.is_empty()
    {
        return None;
    }
    let TableFactor::Table {
        name,
        args: None,
        version: None,
        with_hints,
        partitions,
        json_path: None,
        sample: None,
        index_hints,
        with_ordinality: false,
        ..
    } = &s.from[0].relation
    else {
        return None;
    };
    if !with_hints.is_empty() || !partitions.is_empty() || !index_hints.is_empty() {
        return None;
    }
    let [schema, table] = name.0.as_slice() else {
        return None;
    };
    let (schema, table) = (schema.as_ident()?, table.as_ident()?);
    let columns = columns(&s.projection)?;
    let ids = ids(s.selection.as_ref()?)?;
    let order = match &q.order_by {
        None => Vec::new(),
        Some(o) => order(o, columns.as_deref())?,
    };
    let limit = match &q.limit_clause {
        None => None,
        Some(LimitClause::LimitOffset {
            limit: Some(n),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => Some(usize::try_from(integer(n)?).ok()?),
        Some(_) => return None,
    };
    Some(Lookup {
        table: (schema.value.clone(), table.value.clone()),
        columns,
        ids,
        order,
        limit,
    })
}

/// An `ORDER BY` of result columns, by position (as the pinned form writes it)
/// or by a name in the result; with SQL's default of NULLs sorting as the
/// largest value, as DataFusion's `nulls_max` does.
fn order(o: &OrderBy, columns: Option<&[(String, String)]>) -> Option<Vec<(usize, bool, bool)>> {
    let (OrderByKind::Expressions(exprs), None) = (&o.kind, &o.interpolate) else {
        return None;
    };
    exprs
        .iter()
        .map(|e| {
            if e.with_fill.is_some() {
                return None;
            }
            let at = match (&e.expr, columns) {
                (Sql::Value(_), _) => usize::try_from(integer(&e.expr)?).ok()?.checked_sub(1)?,
                (Sql::Identifier(id), Some(cols)) => {
                    let mut same = cols
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, out))| *out == id.value);
                    let (at, _) = same.next()?;
                    if same.next().is_some() {
                        return None;
                    }
                    at
                }
                _ => return None,
            };
            if columns.is_some_and(|c| at >= c.len()) {
                return None;
            }
            let descending = e.options.asc == Some(false);
            Some((at, descending, e.options.nulls_first.unwrap_or(descending)))
        })
        .collect()
}

/// The result columns of a projection of plain column names (with aliases), or `*`.
fn columns(projection: &[SelectItem]) -> Option<Option<Vec<(String, String)>>> {
    if let [SelectItem::Wildcard(o) | SelectItem::QualifiedWildcard(_, o)] = projection {
        return plain_wildcard(o).then_some(None);
    }
    projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => {
                let c = column(e)?;
                Some((c.value.clone(), c.value.clone()))
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                Some((column(expr)?.value.clone(), alias.value.clone()))
            }
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(Some)
}

fn plain_wildcard(o: &WildcardAdditionalOptions) -> bool {
    o.opt_ilike.is_none()
        && o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
}

/// The column a plain (possibly qualified) name refers to; the query has one table.
fn column(e: &Sql) -> Option<&Ident> {
    match e {
        Sql::Identifier(id) => Some(id),
        Sql::CompoundIdentifier(parts) => parts.last(),
        _ => None,
    }
}

/// The ids of `diaObjectId = N` (either way round) or `diaObjectId IN (N, ...)`.
fn ids(selection: &Sql) -> Option<Vec<i64>> {
    let is_id = |e: &Sql| column(e).is_some_and(|c| c.value == ID);
    match selection {
        Sql::Nested(e) => ids(e),
        Sql::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            if is_id(left) {
                Some(vec![integer(right)?])
            } else if is_id(right) {
                Some(vec![integer(left)?])
            } else {
                None
            }
        }
        Sql::InList {
            expr,
            list,
            negated: false,
        } if is_id(expr) && !list.is_empty() => list.iter().map(integer).collect(),
        _ => None,
    }
}

/// An integer literal that fits `diaObjectId`'s type, so the comparison is exact.
fn integer(e: &Sql) -> Option<i64> {
    match e {
        Sql::Value(v) => match &v.value {
            Value::Number(n, false) => n.parse().ok(),
            _ => None,
        },
        Sql::Nested(e) => integer(e),
        _ => None,
    }
}

/// Reads a lookup's rows from `table` (its scan pinned at the query's snapshot).
///
/// `None` when the table is not one whose rows sit in their object's partition
/// or when an embargo applies: the caller then plans the query as usual.
pub(crate) async fn run(
    table: &PpdbTable,
    lookup: &Lookup,
) -> Option<Result<(SchemaRef, SendableRecordBatchStream)>> {
    if !table.colocated() || table.embargo.is_some() || !table.hints.is_empty() {
        return None;
    }
    let served = table.served.clone();
    let wanted: Vec<(usize, String)> = match &lookup.columns {
        None => (0..served.fields().len())
            .map(|i| (i, served.field(i).name().clone()))
            .collect(),
        Some(cols) => cols
            .iter()
            .map(|(c, out)| Some((served.index_of(c).ok()?, out.clone())))
            .collect::<Option<_>>()?,
    };
    served.index_of(ID).ok()?;
    if lookup.order.iter().any(|(at, _, _)| *at >= wanted.len()) {
        return None;
    }
    let schema: SchemaRef = Arc::new(Schema::new(
        wanted
            .iter()
            .map(|(i, out)| Field::clone(served.field(*i)).with_name(out.clone()))
            .collect::<Vec<_>>(),
    ));
    let read = read(table, lookup, &wanted, schema.clone())
        .await
        .and_then(|batches| arrange(batches, lookup, &schema));
    Some(read.map(|batches| {
        let stream: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(batches.into_iter().map(Ok)),
        ));
        (schema, stream)
    }))
}

async fn read(
    table: &PpdbTable,
    lookup: &Lookup,
    wanted: &[(usize, String)],
    schema: SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let filter: Expr = match lookup.ids.as_slice() {
        [one] => ident(ID).eq(lit(*one)),
        many => ident(ID).in_list(many.iter().map(|i| lit(*i)).collect(), false),
    };
    let prune = crate::prune::analyse(&[filter], table.partition_order());
    let files = table.files(&prune, &[]);
    let k = table.scan.snapshot as i64;
    let current = table.view == View::Current;
    let metrics = ExecutionPlanMetricsSet::new();
    let mut out = Vec::new();
    for f in files {
        let reader: Box<dyn AsyncFileReader> =
            table
                .reader
                .create_reader(0, table.partitioned_file(f), None, &metrics)?;
        let options = ArrowReaderOptions::new();
        let builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options).await?;
        let file_schema = builder.schema().clone();
        let parquet_schema = builder.parquet_schema();
        let Ok(id_at) = file_schema.index_of(ID) else {
            continue;
        };
        // Row groups whose id range holds one of the ids (all when rows are
        // skipped by position: that selection spans the whole file).
        let groups: Vec<usize> = (0..builder.metadata().num_row_groups())
            .filter(|&g| {
                !f.hidden.is_empty()
                    || match builder.metadata().row_group(g).column(id_at).statistics() {
                        Some(ParquetStatistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                            (Some(lo), Some(hi)) => lookup.ids.iter().any(|i| lo <= i && i <= hi),
                            _ => true,
                        },
                        _ => true,
                    }
            })
            .collect();
        if groups.is_empty() {
            continue;
        }
        // The predicate reads the id and the visibility columns the file has; a
        // column the file lacks is NULL in every row.
        let mut tests = vec![ID];
        if f.filter_by_columns {
            tests.extend([catalog::schema::ADDED, catalog::schema::RETIRED]);
        }
        if current {
            tests.push(crate::provider::VALIDITY_END);
        }
        let present: Vec<&str> = tests
            .iter()
            .copied()
            .filter(|c| file_schema.index_of(c).is_ok())
            .collect();
        let mask = ProjectionMask::columns(parquet_schema, present.iter().copied());
        let ids = lookup.ids.clone();
        let by_columns = f.filter_by_columns;
        let predicate = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
            keep(&batch, &ids, by_columns, current, k)
        });
        let read: Vec<&str> = wanted
            .iter()
            .map(|(i, _)| table.served.field(*i).name().as_str())
            .filter(|c| file_schema.index_of(c).is_ok())
            .collect();
        let projection = ProjectionMask::columns(parquet_schema, read.iter().copied());
        let mut builder = builder
            .with_row_groups(groups)
            .with_projection(projection)
            .with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
        if !f.hidden.is_empty() {
            builder =
                builder.with_row_selection(crate::provider::skip_positions(&f.hidden, f.rows));
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
    ids: &[i64],
    by_columns: bool,
    current: bool,
    k: i64,
) -> std::result::Result<BooleanArray, arrow::error::ArrowError> {
    let rows = batch.num_rows();
    let nulls = |name: &str| -> ArrayRef {
        batch
            .column_by_name(name)
            .cloned()
            .unwrap_or_else(|| new_null_array(&arrow::datatypes::DataType::Int64, rows))
    };
    let id = nulls(ID);
    let mut mask: Option<BooleanArray> = None;
    for i in ids {
        let m = eq(&id, &Int64Array::new_scalar(*i))?;
        mask = Some(match mask {
            None => m,
            Some(prev) => or(&prev, &m)?,
        });
    }
    let mut mask = mask.unwrap_or_else(|| BooleanArray::from(vec![false; rows]));
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
        let end = batch.column_by_name(crate::provider::VALIDITY_END);
        if let Some(end) = end {
            mask = and(&mask, &is_null(end)?)?;
        }
    }
    // NULL (an unknown id or end) does not match.
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
