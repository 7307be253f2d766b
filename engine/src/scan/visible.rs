//! The rows a query may see, sealed off from the query's own expressions.
//!
//! A scan hides rows in two ways a predicate can get around: the visibility
//! rule of the snapshot (rows added later or retired earlier, in compacted
//! files), and the embargo (rows too young for the caller). Both are filters,
//! and DataFusion moves filters: a query's own conjuncts were pushed into the
//! Parquet reader beside them and evaluated on hidden rows first, so anything
//! that can fail (`CAST`, division) answered questions about rows the query
//! could not see, and a failure on a hidden row could fail a replay that once
//! worked. [`VisibleRowsExec`] passes its child's rows on unchanged and takes
//! no filter from above: every expression of the query runs on its output,
//! after the rule, whatever the optimizer does.

use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// A plan whose rows are exactly those its child lets through: no filter, limit
/// or projection from above reaches below it.
#[derive(Debug)]
pub(crate) struct VisibleRowsExec {
    input: Arc<dyn ExecutionPlan>,
}

impl VisibleRowsExec {
    /// Seals `input` (a scan with its visibility and embargo filters applied).
    pub(crate) fn above(input: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        Arc::new(VisibleRowsExec { input })
    }
}

impl DisplayAs for VisibleRowsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VisibleRowsExec")
    }
}

impl ExecutionPlan for VisibleRowsExec {
    fn name(&self) -> &str {
        "VisibleRowsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    // The child's statistics pass through, so that the planner still sees how
    // small a filtered side is (and builds a join's hash table from it whole).
    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(input_stats[0].clone())
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "VisibleRowsExec takes one child".into(),
            ));
        }
        Ok(VisibleRowsExec::above(children.swap_remove(0)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    // Filter pushdown: ExecutionPlan's defaults already keep every parent filter
    // above (gather_filters_for_pushdown marks them all unsupported); a limit is
    // not pushed (supports_limit_pushdown is false) and a projection not swapped
    // in (try_swapping_with_projection is None). Those defaults are this node.
}
