//! Our planning steps as DataFusion's own extension points, registered in the
//! engine's base session: every path that plans a query (a run, a replay,
//! EXPLAIN, EXPLAIN ANALYZE) applies them because the session does, not
//! because each path remembers to. The optimizer may run a rule more than
//! once (several passes, and again on a cluster's scheduler), so each is
//! idempotent.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};

/// Narrows each co-located join's sides to the partitions the other reads
/// ([`crate::plan::colocate`]). Narrowing again finds the same partitions.
#[derive(Debug)]
pub(crate) struct Colocate;

impl OptimizerRule for Colocate {
    fn name(&self) -> &str {
        "ppdb_colocate"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        crate::plan::colocate::narrow(plan)
    }
}

/// DataFusion's physical planner, after the upload crossmatch hint
/// ([`crate::plan::crossmatch`]): that hint reads the uploaded circles, which
/// an optimizer rule (synchronous) cannot.
#[derive(Debug)]
pub(crate) struct CrossmatchPlanner;

#[async_trait]
impl QueryPlanner for CrossmatchPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let hinted = match session.as_any().downcast_ref::<SessionState>() {
            Some(state) => crate::plan::crossmatch::hint(plan.clone(), state).await?,
            None => plan.clone(),
        };
        DefaultPhysicalPlanner::default()
            .create_physical_plan(&hinted, session)
            .await
    }
}
