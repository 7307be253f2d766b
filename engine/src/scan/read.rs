//! The plan that reads one table's visible rows at a snapshot: the files its
//! pruning keeps, read by Parquet scans that prune row groups and pages, with
//! the visibility rule and the embargo above them, before any user expression
//! sees a row.
//!
//! Files are read in kinds. Where the log decides visibility for a whole
//! file (no row added after the snapshot, none retired at or before it other
//! than by position), its scan reads only the columns the query names; only
//! the other files read `_added` and `_retired` and test them per row. Before,
//! one such file made every file of the table read and test both columns, and
//! a full-table aggregate read twice the columns it named. For a caller under
//! the embargo, the files that hold rows it may not see beside rows it may
//! (`PpdbTable::sealed`) are a kind of their own, which no filter of the
//! query prunes.

use std::sync::Arc;

use catalog::{ScanFile, TableId};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, Result, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::{Expr, ident, lit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::union::UnionExec;

use crate::scan::provider::{
    PUSHED_RANGES, PpdbTable, VALIDITY_END, View, cannot_fail, hide_later_ends, visibility_rule,
};
use crate::scan::prune;

impl PpdbTable {
    /// The plan for DataFusion's `scan`: the visible rows of the files the
    /// filters leave, with the `projection`'s columns.
    pub(crate) fn read_plan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let prune = prune::analyse(filters, self.scan.partition_order);
        let skies = self.skies(&prune);
        let files = self.files(&prune, &skies);
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.served.fields().len()).collect(),
        };

        // The predicate handed to the Parquet reader: the sky region as
        // `_healpix_29` ranges, and those of the query's conjuncts that cannot
        // fail on a row (comparisons of a column with a constant), which prune
        // row groups and pages. The query's other conjuncts stay above the
        // scan's visible rows (see `crate::scan::visible`). The visibility rule
        // reaches the reader through DataFusion's physical filter pushdown.
        let df_schema = DFSchema::try_from(self.physical.as_ref().clone())?;
        let mut pushed: Vec<Expr> = filters
            .iter()
            .filter(|f| cannot_fail(f, &df_schema))
            .cloned()
            .collect();
        if self.physical.index_of(catalog::schema::HEALPIX_29).is_ok() {
            for sky in &skies {
                let h = || ident(catalog::schema::HEALPIX_29);
                // Every file rewrites, simplifies and evaluates this predicate, at
                // a cost that grows with its length (64 ranges cost a 1 000-target
                // crossmatch 2 ms per file); files are already chosen with the
                // fine ranges, and the query's own test is exact.
                let any = prune::coarsen(sky.ranges.clone(), PUSHED_RANGES)
                    .iter()
                    .map(|r| {
                        h().gt_eq(lit(r.start as i64))
                            .and(h().lt(lit(r.end as i64)))
                    })
                    .reduce(Expr::or)
                    // No range at all: no row can be needed.
                    .unwrap_or(lit(false));
                pushed.push(any);
            }
        }
        let pushed = pushed
            .into_iter()
            .reduce(Expr::and)
            .map(|p| state.create_physical_expr(p, &df_schema))
            .transpose()?;

        // Files by (whether the rule tests `_added`/`_retired`, whether sealed).
        let mut kinds: [Vec<&ScanFile>; 4] = Default::default();
        for f in files {
            kinds[usize::from(f.filter_by_columns) + 2 * usize::from(self.sealed(f))].push(f);
        }
        let mut parts = Vec::new();
        let mut ruled = false;
        for (i, kind) in kinds.iter().enumerate() {
            if kind.is_empty() {
                continue;
            }
            let (test_columns, sealed) = (i % 2 == 1, i >= 2);
            let (part, rule) = self.part(
                state,
                kind,
                test_columns,
                &wanted,
                // A sealed file's row groups and pages are pruned by the rule alone.
                if sealed { None } else { pushed.clone() },
                filters.is_empty().then_some(limit).flatten(),
            )?;
            parts.push(part);
            ruled |= rule;
        }
        let read: Arc<dyn ExecutionPlan> = match parts.len() {
            // No file: an empty scan of the columns asked for.
            0 => {
                let (part, rule) = self.part(state, &[], false, &wanted, pushed, limit)?;
                ruled = rule;
                part
            }
            1 => parts.remove(0),
            _ => UnionExec::try_new(parts)?,
        };
        if !ruled {
            return Ok(read);
        }
        let visible = match self.embargo {
            Some((_, cutoff)) if self.scan.table == TableId::DiaObject => {
                hide_later_ends(state, read, cutoff)?
            }
            _ => read,
        };
        // The query's own expressions run on these rows only.
        Ok(crate::scan::visible::VisibleRowsExec::above(visible))
    }

    /// One Parquet scan of `files` with the visibility rule above it (testing
    /// `_added` and `_retired` when `test_columns`), giving the `wanted`
    /// columns; and whether it has a rule at all.
    fn part(
        &self,
        state: &dyn Session,
        files: &[&ScanFile],
        test_columns: bool,
        wanted: &[usize],
        pushed: Option<Arc<dyn PhysicalExpr>>,
        limit: Option<usize>,
    ) -> Result<(Arc<dyn ExecutionPlan>, bool)> {
        let k = self.scan.snapshot as i64;
        // Rows the view hides, beyond the positions skipped per file.
        let mut visibility: Vec<Expr> = Vec::new();
        if test_columns {
            visibility.push(visibility_rule(k));
        }
        let end = || ident(VALIDITY_END);
        match (self.view, self.embargo) {
            (View::Current, None) => visibility.push(end().is_null()),
            // The version current at the cutoff: a later one may have closed it since.
            (View::Current, Some((_, cutoff))) => {
                visibility.push(end().is_null().or(end().gt(lit(cutoff))))
            }
            (View::All, _) => {}
        }
        if let Some((column, cutoff)) = self.embargo {
            visibility.push(ident(column).lt_eq(lit(cutoff)));
        }

        // Columns to read: what the query asked for, plus what the visibility rule needs.
        let mut read = wanted.to_vec();
        if !visibility.is_empty() {
            let mut extra = vec![];
            if test_columns {
                extra.push(catalog::schema::ADDED);
                extra.push(catalog::schema::RETIRED);
            }
            if self.view == View::Current {
                extra.push(VALIDITY_END);
            }
            if let Some((column, _)) = self.embargo {
                extra.push(column);
            }
            for name in extra {
                let i = self.physical.index_of(name)?;
                if !read.contains(&i) {
                    read.push(i);
                }
            }
        }

        let source = ParquetSource::new(self.physical.clone())
            .with_table_parquet_options(state.table_options().parquet.clone())
            // A bloom filter answers for every row of its row group, hidden
            // ones too; a file holding rows past the embargo's cutoff is sealed
            // and gets no predicate, so no bloom filter of it prunes a read.
            .with_bloom_filter_on_read(true)
            .with_parquet_file_reader_factory(self.reader.clone());
        let source = match pushed {
            Some(p) => source.with_predicate(p),
            None => source,
        };

        let parts = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); parts.min(files.len()).max(1)];
        let mut loads = vec![0u64; groups.len()];
        let mut ordered = files.to_vec();
        ordered.sort_by_key(|f| std::cmp::Reverse(f.bytes));
        for f in ordered {
            let i = (0..loads.len()).min_by_key(|&i| loads[i]).unwrap_or(0);
            loads[i] += f.bytes;
            groups[i].push(self.partitioned_file(f));
        }
        // Row counts from the snapshot log (an upper bound once filters apply) let
        // the planner put the small side of a join where it is built in memory.
        let rows: u64 = files.iter().map(|f| f.rows).sum();
        let statistics = Statistics::new_unknown(&self.physical).with_num_rows(Precision::Inexact(
            usize::try_from(rows).unwrap_or(usize::MAX),
        ));
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_statistics(statistics)
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(Some(read.clone()))?
            .with_limit(if visibility.is_empty() { limit } else { None })
            .build();
        let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        let Some(rule) = visibility.into_iter().reduce(Expr::and) else {
            return Ok((exec, false));
        };
        let read_schema = exec.schema();
        let read_df = DFSchema::try_from(read_schema.as_ref().clone())?;
        let predicate = state.create_physical_expr(rule, &read_df)?;
        let keep: Vec<usize> = (0..wanted.len()).collect();
        let filtered: Arc<dyn ExecutionPlan> = Arc::new(
            FilterExecBuilder::new(predicate, exec)
                .apply_projection(Some(keep))?
                .build()?,
        );
        Ok((filtered, true))
    }
}
