//! A DataFusion table over one catalog table at one pinned snapshot.
//!
//! The scan asks the catalog which files hold the table at the snapshot, drops
//! the files and row groups a cone or an id lookup cannot touch, skips the
//! retired rows by position, and keeps the visibility rule of
//! [`catalog::TableScan`] as a filter for the files that need it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use catalog::{AnchorIndex, ScanFile, TableId, TableScan};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetRowSelection,
};
use datafusion::datasource::{TableProvider, listing::PartitionedFile};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, ident, lit, when};
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;

use crate::scan::prune::{self, Prune, Sky};

/// The column that closes a DiaObject version.
pub(crate) const VALIDITY_END: &str = "validityEndMjdTai";

/// Most `_healpix_29` ranges per region handed to the Parquet reader.
pub(super) const PUSHED_RANGES: usize = 4;

/// Which rows of the stored table a served table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// Every visible row (DiaObjectHistory and the tables that have no versions).
    All,
    /// Only the version of each object still open at the snapshot (`ppdb.DiaObject`).
    Current,
}

/// One served table at one snapshot.
#[derive(Clone)]
pub(crate) struct PpdbTable {
    pub(crate) view: View,
    pub(crate) scan: Arc<TableScan>,
    pub(crate) served: SchemaRef,
    pub(crate) physical: SchemaRef,
    pub(crate) index: Arc<AnchorIndex>,
    pub(crate) store_url: ObjectStoreUrl,
    pub(crate) prefix: object_store::path::Path,
    pub(crate) reader: Arc<CachedParquetFileReaderFactory>,
    /// Each file's Arrow reading of its footer, for the direct read.
    pub(crate) arrow_meta: crate::plan::direct::ArrowMeta,
    /// Regions the rows a query needs lie in, known from outside the scan's own
    /// filters (the circles of an upload this table is crossmatched against).
    pub(crate) hints: Vec<Arc<Sky>>,
    /// The partitions (cells at the partition order) the rows a query needs lie
    /// in, known from a table stored beside this one that it is joined with on
    /// `diaObjectId`; `None` for all.
    pub(crate) partitions: Option<Arc<BTreeSet<u64>>>,
    /// For a caller without privilege: the column that times each row and the
    /// cutoff (MJD, TAI) after which rows are embargoed (see [`crate::scan::embargo`]).
    pub(crate) embargo: Option<(&'static str, f64)>,
    /// For a caller without privilege: the last snapshot whose chunks all came
    /// before the cutoff. A file with rows of later snapshots, or with row
    /// times after the cutoff, is *sealed*: its statistics count rows the
    /// caller may not see, so no filter of the query prunes it (see
    /// [`PpdbTable::sealed`]).
    pub(crate) public_through: Option<u64>,
}

impl fmt::Debug for PpdbTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PpdbTable")
            .field("table", &self.scan.table)
            .field("view", &self.view)
            .field("snapshot", &self.scan.snapshot)
            .field("files", &self.scan.files.len())
            .field("hints", &self.hints.len())
            .field("embargo", &self.embargo)
            .field("public_through", &self.public_through)
            .finish()
    }
}

impl PpdbTable {
    /// The HEALPix order the table is partitioned at.
    pub(crate) fn partition_order(&self) -> u8 {
        self.scan.partition_order
    }

    /// The same table, for a scan whose rows must also lie in `sky`.
    pub(crate) fn with_hint(&self, sky: Arc<Sky>) -> PpdbTable {
        let mut t = self.clone();
        t.hints.push(sky);
        t
    }

    /// The same table, for a scan whose rows must also lie in these partitions.
    pub(crate) fn within(&self, partitions: BTreeSet<u64>) -> PpdbTable {
        let mut t = self.clone();
        t.partitions = Some(Arc::new(match &self.partitions {
            Some(p) => partitions.intersection(p).copied().collect(),
            None => partitions,
        }));
        t
    }

    /// Whether rows of this table lie in the partition of their `diaObjectId`
    /// (DiaObject versions, and the sources of each object beside them).
    pub(crate) fn colocated(&self) -> bool {
        matches!(
            self.scan.table,
            TableId::DiaObject | TableId::DiaSource | TableId::DiaForcedSource
        )
    }

    /// The partitions a scan with these filters reads, or `None` when the filters
    /// narrow nothing.
    pub(crate) fn partitions_read(&self, filters: &[Expr]) -> Option<BTreeSet<u64>> {
        let prune = prune::analyse(filters, self.scan.partition_order);
        if prune.sky.is_none()
            && prune.ids.is_none()
            && self.hints.is_empty()
            && self.partitions.is_none()
        {
            return None;
        }
        let skies = self.skies(&prune);
        let files = self.files(&prune, &skies);
        // A sealed file's cells count hidden rows: narrowing the other side
        // of a join by them would time those rows.
        if files.iter().any(|f| f.cell.is_none() || self.sealed(f)) {
            return None;
        }
        let order = self.scan.partition_order;
        Some(
            files
                .iter()
                .flat_map(|f| f.cells(order))
                .flat_map(|c| c.span(order))
                .collect(),
        )
    }

    /// The regions a scan's rows must lie in: its filters' cone and the hints.
    pub(super) fn skies<'a>(&'a self, prune: &'a Prune) -> Vec<&'a Sky> {
        prune
            .sky
            .iter()
            .chain(self.hints.iter().map(|h| h.as_ref()))
            .collect()
    }

    /// Whether a file holds rows a caller under the embargo may not see beside
    /// rows it may. Its statistics (column ranges, cells, row groups, pages)
    /// count both, so pruning it by the query's own filters would make how
    /// long the query takes depend on whether hidden rows match them: such a
    /// file is read whole, pruned only by the visibility rule and the
    /// embargo, whatever the query asks. Maintenance under the same embargo
    /// writes no such file (`Catalog::with_embargo_cutoff`).
    pub(crate) fn sealed(&self, f: &ScanFile) -> bool {
        let Some(public) = self.public_through else {
            return false;
        };
        f.added_max > public
            // Compaction split its rows by retirements the caller may not see.
            || f.folded_through.is_some_and(|s| s > public)
            || self.embargo.is_some_and(|(column, cutoff)| {
                f.stats.times.get(column).is_none_or(|(_, hi)| *hi > cutoff)
            })
    }

    /// Whether a file may hold a row of the current view: not if every row of
    /// it is a closed version (a history file compaction wrote), closed no
    /// later than the cutoff for a caller under the embargo.
    fn holds_current(&self, f: &ScanFile) -> bool {
        if f.stats.open_versions != Some(0) {
            return true;
        }
        match self.embargo {
            None => false,
            Some((_, cutoff)) => f
                .stats
                .times
                .get(VALIDITY_END)
                .is_none_or(|(_, hi)| *hi > cutoff),
        }
    }

    /// The files a scan with these ids and regions needs.
    pub(crate) fn files(&self, prune: &Prune, skies: &[&Sky]) -> Vec<&ScanFile> {
        let table = self.scan.table;
        let by_id = matches!(
            table,
            TableId::DiaObject | TableId::DiaSource | TableId::DiaForcedSource
        );
        let cells: Option<BTreeSet<u64>> = match (&prune.ids, by_id) {
            (Some(ids), true) => Some(
                ids.iter()
                    .filter_map(|id| {
                        self.index
                            .cell_at(self.scan.partition_order, *id, self.scan.snapshot)
                    })
                    .map(|c| c.npix)
                    .collect(),
            ),
            _ => None,
        };
        self.scan
            .files
            .iter()
            .filter(|f| {
                if let Some((column, cutoff)) = self.embargo
                    && f.stats
                        .times
                        .get(column)
                        .is_some_and(|(lo, _)| *lo > cutoff)
                {
                    return false;
                }
                if self.sealed(f) {
                    return true;
                }
                if self.view == View::Current && !self.holds_current(f) {
                    return false;
                }
                // A fresh file may cover several partitions (a coarser cell).
                let order = self.scan.partition_order;
                let held = f.cells(order);
                let meets = |set: &BTreeSet<u64>| {
                    held.iter()
                        .any(|c| set.range(c.span(order)).next().is_some())
                };
                if let Some(p) = &self.partitions
                    && table.is_partitioned()
                    && !meets(p)
                {
                    return false;
                }
                if let Some(cells) = &cells
                    && !meets(cells)
                {
                    return false;
                }
                // "Changed since T": the log's time ranges drop whole files.
                if !f
                    .stats
                    .times
                    .iter()
                    .all(|(column, range)| super::bounds::may_meet(&prune.bounds, column, *range))
                {
                    return false;
                }
                if let (Some(ids), true) = (&prune.ids, by_id)
                    && let Some((lo, hi)) = f.stats.ints.get("diaObjectId")
                    && !ids.iter().any(|id| lo <= id && id <= hi)
                {
                    return false;
                }
                skies.iter().all(|sky| {
                    let holds = if f.stats.merged_cells.is_empty() {
                        sky.may_hold(f.cell, &f.stats.spill_cells)
                    } else {
                        // Merged cells count rows by their own positions too.
                        held.iter().any(|c| sky.may_hold(Some(*c), &[]))
                    };
                    if table.is_partitioned() && !holds {
                        return false;
                    }
                    f.stats
                        .healpix_29
                        .is_none_or(|(lo, hi)| sky.overlaps(lo, hi))
                })
            })
            .collect()
    }

    pub(crate) fn partitioned_file(&self, f: &ScanFile) -> PartitionedFile {
        let path = self.prefix.clone().join_rel(&f.path);
        let pf = PartitionedFile::new(path.to_string(), f.bytes);
        if f.hidden.is_empty() {
            return pf;
        }
        pf.with_extension(ParquetRowSelection::new(skip_positions(&f.hidden, f.rows)))
    }
}

/// Shows a DiaObject version's `validityEndMjdTai` as known at the cutoff: an end
/// set by a later, embargoed version reads NULL.
pub(super) fn hide_later_ends(
    state: &dyn Session,
    input: Arc<dyn ExecutionPlan>,
    cutoff: f64,
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = input.schema();
    let df = DFSchema::try_from(schema.as_ref().clone())?;
    let exprs = schema
        .fields()
        .iter()
        .map(|f| {
            let e = if f.name() == VALIDITY_END {
                when(
                    ident(VALIDITY_END).gt(lit(cutoff)),
                    lit(ScalarValue::Float64(None)),
                )
                .otherwise(ident(VALIDITY_END))?
            } else {
                ident(f.name())
            };
            Ok((state.create_physical_expr(e, &df)?, f.name().clone()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(ProjectionExec::try_new_with_schema_metadata(
        exprs, input, &schema,
    )?))
}

/// Whether evaluating a filter on any row can only answer, never fail (and so
/// may run before the visibility rule without telling anything of a hidden
/// row): comparisons, `BETWEEN`, `IN` and `IS NULL` of a column (or of a
/// number widened to a larger type) with constants, and their AND, OR and NOT.
pub(super) fn cannot_fail(e: &Expr, schema: &DFSchema) -> bool {
    use datafusion::logical_expr::{Between, BinaryExpr, Operator, expr::InList};
    let column = |e: &Expr| match e {
        Expr::Column(c) => schema.field_with_unqualified_name(&c.name).is_ok(),
        Expr::Cast(datafusion::logical_expr::Cast { expr, field }) => {
            matches!(expr.as_ref(), Expr::Column(c)
            if schema.field_with_unqualified_name(&c.name).is_ok_and(|f| {
                widening(f.data_type(), field.data_type())
            }))
        }
        _ => false,
    };
    let constant = |e: &Expr| matches!(e, Expr::Literal(..));
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => cannot_fail(left, schema) && cannot_fail(right, schema),
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq => {
                (column(left) && constant(right)) || (constant(left) && column(right))
            }
            _ => false,
        },
        Expr::Not(inner) => cannot_fail(inner, schema),
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => column(inner),
        Expr::Between(Between {
            expr, low, high, ..
        }) => column(expr) && constant(low) && constant(high),
        Expr::InList(InList { expr, list, .. }) => column(expr) && list.iter().all(constant),
        _ => false,
    }
}

/// Whether every value of type `from` converts to `to` without failing: the
/// conversions type coercion adds (an integer compared with a wider integer
/// or a float, a float with a double). A narrowing one such as
/// `CAST(midpointMjdTai AS SMALLINT)` fails on large values, and so must not
/// meet a row before the visibility rule has.
fn widening(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let bits = |t: &DataType| match t {
        Int8 | UInt8 => Some(8),
        Int16 | UInt16 => Some(16),
        Int32 | UInt32 => Some(32),
        Int64 | UInt64 => Some(64),
        _ => None,
    };
    match (from, to) {
        _ if from == to => true,
        (f, Float32 | Float64) if f.is_integer() => true,
        (Float32, Float64) => true,
        (f, t) if f.is_signed_integer() && t.is_signed_integer() => bits(f) < bits(t),
        (f, t) if f.is_unsigned_integer() && t.is_integer() => bits(f) < bits(t),
        _ => false,
    }
}

/// The rows snapshot `k` sees by their `_added` and `_retired` columns.
pub(crate) fn visibility_rule(k: i64) -> Expr {
    ident(catalog::schema::ADDED).lt_eq(lit(k)).and(
        ident(catalog::schema::RETIRED)
            .is_null()
            .or(ident(catalog::schema::RETIRED).gt(lit(k))),
    )
}

/// A row selection that reads every row of a `rows`-row file except `hidden` (ascending).
pub(crate) fn skip_positions(hidden: &[u32], rows: u64) -> RowSelection {
    skip_positions_in(hidden, std::slice::from_ref(&(0..rows)))
}

/// A row selection over the rows of `spans` (ascending file positions, as the
/// row groups a reader was told to read), all of them but `hidden`
/// (ascending): the reader counts positions within what it reads.
pub(crate) fn skip_positions_in(hidden: &[u32], spans: &[std::ops::Range<u64>]) -> RowSelection {
    let mut sel = Vec::new();
    for span in spans {
        let first = hidden.partition_point(|&h| u64::from(h) < span.start);
        let mut at = span.start;
        for &h in &hidden[first..] {
            let h = u64::from(h);
            if h >= span.end {
                break;
            }
            if h < at {
                continue;
            }
            if h > at {
                sel.push(RowSelector::select((h - at) as usize));
            }
            sel.push(RowSelector::skip(1));
            at = h + 1;
        }
        if at < span.end {
            sel.push(RowSelector::select((span.end - at) as usize));
        }
    }
    RowSelection::from(sel)
}

trait JoinRel {
    fn join_rel(self, rel: &str) -> object_store::path::Path;
}

impl JoinRel for object_store::path::Path {
    fn join_rel(self, rel: &str) -> object_store::path::Path {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self, |p, part| p.clone().join(part))
    }
}

#[async_trait]
impl TableProvider for PpdbTable {
    fn schema(&self) -> SchemaRef {
        self.served.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters prune and pre-filter; DataFusion still applies them exactly above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.read_plan(state, projection, filters, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipping_positions_selects_the_rest() {
        let s = skip_positions(&[0, 3, 4, 9], 10);
        assert_eq!(s.row_count(), 6);
        let s = skip_positions(&[], 5);
        assert_eq!(s.row_count(), 5);
    }

    #[test]
    fn skipping_positions_within_chosen_row_groups_counts_only_their_rows() {
        // Row groups [0, 4), [4, 8), [8, 12); the reader reads the first and last.
        let s = skip_positions_in(&[1, 5, 8, 11], &[0..4, 8..12]);
        assert_eq!(s.row_count(), 5);
        assert_eq!(s.skipped_row_count(), 3);
        let mut kept = Vec::new();
        let mut at = 0;
        for sel in s.iter() {
            if !sel.skip {
                kept.extend(at..at + sel.row_count);
            }
            at += sel.row_count;
        }
        assert_eq!(kept, [0, 2, 3, 5, 6]);
    }
}
