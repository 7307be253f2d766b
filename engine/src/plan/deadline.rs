//! Stopping a query at its deadline.
//!
//! A timer around the result stream is not enough: an operator such as a
//! nested-loop join can compute for minutes inside one poll of the stream, so a
//! timeout outside never gets to fire. Instead every operator of the physical
//! plan is wrapped, and each batch any operator produces checks the clock: the
//! first one after the deadline fails the query from the inside.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::Stream;

/// Wraps every operator of `plan` so that the query fails once `deadline` passes;
/// `allowed` is how long the query was given (for the message).
pub(crate) fn limit(
    plan: Arc<dyn ExecutionPlan>,
    deadline: Instant,
    allowed: Duration,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let node = mark_collected(node)?;
        let node = checked_join_filter(node, deadline, allowed)?;
        Ok(Transformed::yes(Arc::new(DeadlineExec {
            input: node,
            deadline,
            allowed,
            collected: false,
        }) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
}

/// Marks the input a join without keys holds whole in memory (its left, or
/// build, side): that is where batches without columns pile up.
fn mark_collected(node: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::physical_plan::joins::{CrossJoinExec, NestedLoopJoinExec};
    let collects = node.is::<CrossJoinExec>() || node.is::<NestedLoopJoinExec>();
    let children: Vec<Arc<dyn ExecutionPlan>> = node.children().into_iter().cloned().collect();
    let Some(left) = children
        .first()
        .and_then(|c| c.downcast_ref::<DeadlineExec>())
    else {
        return Ok(node);
    };
    if !collects || left.collected {
        return Ok(node);
    }
    let mut children = children.clone();
    children[0] = Arc::new(DeadlineExec {
        input: left.input.clone(),
        deadline: left.deadline,
        allowed: left.allowed,
        collected: true,
    });
    datafusion::physical_plan::replace_children_if_necessary(node, children)
}

/// A join whose condition is checked against the deadline each time it is
/// evaluated. A nested-loop join evaluates it on one buffered row against a
/// whole batch of the other side, for every buffered row, inside one poll of
/// its stream and without a batch out while nothing matches: a self-join of
/// DiaObject on INTERSECTS of two 64-vertex polygons ran 145 s past a 5 s
/// deadline, and eight of them shut every caller out for 7 minutes. A hash
/// join's residual condition runs on its candidate pairs the same way.
fn checked_join_filter(
    node: Arc<dyn ExecutionPlan>,
    deadline: Instant,
    allowed: Duration,
) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::physical_plan::joins::utils::JoinFilter;
    use datafusion::physical_plan::joins::{
        HashJoinExec, NestedLoopJoinExec, NestedLoopJoinExecBuilder,
    };
    let checked = |f: &JoinFilter| {
        JoinFilter::new(
            Arc::new(Checked {
                inner: Arc::clone(f.expression()),
                deadline,
                allowed,
            }),
            f.column_indices().to_vec(),
            Arc::clone(f.schema()),
        )
    };
    if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>()
        && let Some(filter) = join.filter()
    {
        let join = NestedLoopJoinExecBuilder::from(join)
            .with_filter(Some(checked(filter)))
            .build()?;
        return Ok(Arc::new(join));
    }
    if let Some(join) = node.downcast_ref::<HashJoinExec>()
        && let Some(filter) = join.filter()
    {
        let join = join.builder().with_filter(Some(checked(filter))).build()?;
        return Ok(Arc::new(join));
    }
    Ok(node)
}

/// An expression that fails once the deadline has passed, before it runs.
#[derive(Debug, Eq)]
struct Checked {
    inner: Arc<dyn PhysicalExpr>,
    deadline: Instant,
    allowed: Duration,
}

impl PartialEq for Checked {
    fn eq(&self, other: &Self) -> bool {
        self.inner.eq(&other.inner) && self.deadline == other.deadline
    }
}

impl std::hash::Hash for Checked {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.deadline.hash(state);
    }
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

impl PhysicalExpr for Checked {
    fn return_field(
        &self,
        input_schema: &datafusion::arrow::datatypes::Schema,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<datafusion::logical_expr::ColumnarValue> {
        if Instant::now() >= self.deadline {
            return Err(DataFusionError::ResourcesExhausted(overdue(self.allowed)));
        }
        self.inner.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "a checked expression has one child".into(),
            ));
        }
        Ok(Arc::new(Checked {
            inner: children.swap_remove(0),
            deadline: self.deadline,
            allowed: self.allowed,
        }))
    }

    fn fmt_sql(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt_sql(f)
    }
}

/// The message of a query stopped at its deadline.
pub fn overdue(allowed: Duration) -> String {
    format!(
        "the query ran longer than the execution duration of {} s and was stopped; \
         narrow it (fewer rows or columns, a condition joining its tables, TOP), or give \
         it more time where that is allowed (the service's limit is in /tap/capabilities)",
        allowed.as_secs().max(1)
    )
}

#[derive(Debug)]
struct DeadlineExec {
    input: Arc<dyn ExecutionPlan>,
    deadline: Instant,
    allowed: Duration,
    /// Whether the operator above holds this one's output whole.
    collected: bool,
}

impl DisplayAs for DeadlineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeadlineExec")
    }
}

impl ExecutionPlan for DeadlineExec {
    fn name(&self) -> &str {
        "DeadlineExec"
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
                "DeadlineExec takes one child".into(),
            ));
        }
        Ok(Arc::new(DeadlineExec {
            input: children.swap_remove(0),
            deadline: self.deadline,
            allowed: self.allowed,
            collected: self.collected,
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let empty = (self.collected && self.input.schema().fields().is_empty()).then(|| {
            MemoryConsumer::new("batches without columns").register(context.memory_pool())
        });
        Ok(Box::pin(DeadlineStream {
            input: self.input.execute(partition, context)?,
            deadline: self.deadline,
            allowed: self.allowed,
            empty,
        }))
    }
}

struct DeadlineStream {
    input: SendableRecordBatchStream,
    deadline: Instant,
    allowed: Duration,
    /// For a collected input whose batches have no columns (`COUNT(*)` over a
    /// cross join): such a batch weighs nothing by Arrow's measure, so a cross
    /// join that collected billions of them (40 copies of TAP_SCHEMA.schemas)
    /// grew to 23 GB past every memory limit. Each is charged what it costs to
    /// hold, for as long as the query runs; streamed batches (a `COUNT(*)`
    /// over a whole table) are not.
    empty: Option<MemoryReservation>,
}

/// What a batch without columns costs to hold (the batch, its schema handle
/// and its place in a collecting operator's list), with room to spare.
const EMPTY_BATCH_BYTES: usize = 256;

impl Stream for DeadlineStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Each batch spends tokio's cooperative budget, so that an operator that
        // computes in memory without ever waiting (a cross join, a sort) still
        // hands its thread back to the scheduler now and then: the server stays
        // responsive to other requests while such a query runs.
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let next = self.input.as_mut().poll_next(cx);
        if next.is_ready() {
            coop.made_progress();
        }
        if let (Poll::Ready(Some(Ok(_))), Some(r)) = (&next, self.empty.as_mut())
            && let Err(e) = r.try_grow(EMPTY_BATCH_BYTES)
        {
            return Poll::Ready(Some(Err(e)));
        }
        if matches!(next, Poll::Ready(Some(Ok(_)))) && Instant::now() >= self.deadline {
            return Poll::Ready(Some(Err(DataFusionError::ResourcesExhausted(overdue(
                self.allowed,
            )))));
        }
        next
    }
}

impl RecordBatchStream for DeadlineStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}
