//! The planning pipeline: from a checked query at a snapshot to a running
//! physical plan, and the same for EXPLAIN.

use crate::Engine;
use crate::encode::describe::Known;
use crate::options::{QueryOptions, Timings};
use crate::result::{End, QueryResult, Rows};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use catalog::log::SnapshotInfo;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::sql::parser::Statement as DfStatement;
use futures::StreamExt;

use crate::encode::ColumnInfo;
use crate::error::{Error, Result, planner_refusal};
use crate::plan::batches::RowCost;
use crate::plan::crossmatch::UPLOAD_SCHEMA;
use crate::plan::direct::Direct;
use crate::plan::interrupt::Interrupt;
use crate::upload::Upload;
/// The largest MAXREC planned as a limit (a top-k in memory under an ORDER BY);
/// larger cuts are made on the result stream.
pub(crate) const TOPK_ROWS: u64 = 100_000;

/// How a checked query at a snapshot runs.
pub(crate) enum Route {
    /// Read straight from the partitions that hold its rows (an id lookup or a small cone).
    Direct(Box<Direct>),
    /// Planned by DataFusion.
    Planned(Box<Planned>),
}

/// One run of a checked query: its text, the snapshot and embargo cutoff it
/// reads at, and the limits it runs under.
pub(crate) struct Run<'a> {
    /// The query as it runs (the pinned ADQL), for the places in its errors.
    pub(crate) text: &'a str,
    /// The snapshot it reads.
    pub(crate) k: u64,
    /// The embargo cutoff it reads under, if any.
    pub(crate) cutoff: Option<f64>,
    pub(crate) maxrec: Option<u64>,
    /// The deadline, and how long the query was given (for the message).
    pub(crate) limit: Option<(Instant, Duration)>,
    pub(crate) uploads: &'a [Upload],
    /// Plan even an id lookup (for comparisons and tests).
    pub(crate) always_plan: bool,
    /// Kept until the query has really ended (a slot of the service's).
    pub(crate) hold: Option<crate::options::Hold>,
}

impl<'a> Run<'a> {
    /// A run as `options` ask, its deadline counted from `t0`.
    pub(crate) fn asked(
        text: &'a str,
        k: u64,
        cutoff: Option<f64>,
        options: &'a QueryOptions,
        t0: Instant,
    ) -> Run<'a> {
        Run {
            text,
            k,
            cutoff,
            maxrec: options.maxrec,
            limit: options.time_limit.map(|d| (t0 + d, d)),
            uploads: &options.uploads,
            always_plan: options.always_plan,
            hold: options.hold.clone(),
        }
    }
}

/// A query DataFusion planned: the physical plan, ready to run in its session.
pub(crate) struct Planned {
    physical: Arc<dyn ExecutionPlan>,
    state: SessionState,
    schema: SchemaRef,
    columns: Vec<ColumnInfo>,
    timings: Timings,
}

impl Engine {
    /// Plans and starts a checked query at `snapshot` (the one `run` reads).
    pub(crate) async fn execute(
        &self,
        query: adql::Query,
        snapshot: SnapshotInfo,
        run: Run<'_>,
    ) -> Result<QueryResult> {
        let t1 = Instant::now();
        let route = self.route(&query, &run).await?;
        let (schema, stream, timings, columns) = match route {
            Route::Direct(read) => {
                let (schema, stream) = read.run().await?;
                let timings = Timings {
                    pin: t1.elapsed(),
                    ..Timings::default()
                };
                // A direct read returns plain columns of its one table.
                let table = query.tables.first();
                let columns = schema
                    .fields()
                    .iter()
                    .map(|f| {
                        table
                            .and_then(|(s, t)| {
                                self.column_infos
                                    .get(&(format!("{s}.{t}"), f.name().clone()))
                            })
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect();
                (schema, stream, timings, columns)
            }
            Route::Planned(p) => {
                let stream = self.execution.stream(
                    p.physical,
                    p.state.task_ctx(),
                    p.schema.clone(),
                    run.hold,
                )?;
                (p.schema, stream, p.timings, p.columns)
            }
        };
        Ok(QueryResult {
            snapshot,
            schema,
            query,
            timings,
            token: None,
            pinned_adql: None,
            embargo_cutoff: run.cutoff,
            columns,
            rows: Rows::Live(stream),
            maxrec: run.maxrec,
            sent: 0,
            overflow: false,
            checksum: None,
            end: End::Nothing,
            finished: None,
            keep: None,
        })
    }

    /// Chooses how a checked query runs, and plans it: the one pipeline
    /// queries, replays, EXPLAIN and EXPLAIN ANALYZE all take. Id lookups and
    /// small cones are read directly unless `run.always_plan` (or an embargo,
    /// or an upload) says otherwise. `run.hold` is kept until planning has
    /// really ended, even when its caller stopped waiting for it.
    pub(crate) async fn route(&self, query: &adql::Query, run: &Run<'_>) -> Result<Route> {
        if !run.always_plan
            && run.cutoff.is_none()
            && run.uploads.is_empty()
            && let Some(lookup) = query.lookup()
            && let Some(table) = self.served_table(run.k, &lookup.table).await?
            && let Some(read) = crate::plan::direct::prepare(table, lookup)
        {
            return Ok(Route::Direct(Box::new(read)));
        }
        self.plan(query, run)
            .await
            .map(|p| Route::Planned(Box::new(p)))
    }

    /// Plans a query with DataFusion: its physical plan, its schema and the
    /// time each planning step took. The planning runs on a thread of its own
    /// and stops at the deadline, or when the caller goes away, between any
    /// two steps of DataFusion's rules (see [`crate::plan::interrupt`]);
    /// `hold` is kept until that thread has ended.
    async fn plan(&self, query: &adql::Query, run: &Run<'_>) -> Result<Planned> {
        let Run {
            text,
            k,
            cutoff,
            maxrec,
            limit,
            uploads,
            ..
        } = *run;
        let hold = run.hold.clone();
        let t1 = Instant::now();
        let interrupt = Interrupt::new(limit);
        interrupt.check()?;
        let rows = RowCost::of(query, uploads, self.tap_text)
            .batch_rows(self.base.config().batch_size())?;
        let state = self.session(k, cutoff, uploads, rows, &interrupt).await?;
        let t2 = Instant::now();
        let statement = DfStatement::Statement(Box::new(query.statement.clone()));
        let owned_text = text.to_string();
        let work = async move {
            let _hold = hold;
            let text = owned_text.as_str();
            let written = state
                .statement_to_plan(statement)
                .await
                .map_err(|e| planner_refusal(text, e))?;
            let plan = match maxrec {
                // Above TOPK_ROWS the cut is left to the stream: the planner would turn
                // ORDER BY + LIMIT into a top-k that holds every row it keeps in
                // memory, where a sort spills.
                Some(m) if m <= TOPK_ROWS => LogicalPlanBuilder::from(written.clone())
                    .limit(0, Some(m.saturating_add(1) as usize))?
                    .build()?,
                _ => written.clone(),
            };
            let schema = plan.schema().inner().clone();
            let plan = state
                .optimize(&plan)
                .map_err(|e| planner_refusal(text, e))?;
            let t3 = Instant::now();
            let physical = state
                .query_planner()
                .create_physical_plan(&plan, &state)
                .await
                .map_err(|e| planner_refusal(text, e))?;
            let physical = match limit {
                Some((deadline, allowed)) => {
                    crate::plan::deadline::limit(physical, deadline, allowed)?
                }
                None => physical,
            };
            Ok::<_, Error>((written, physical, state, schema, t3, Instant::now()))
        };
        let (written, physical, state, schema, t3, t4) = off_workers(work, &interrupt).await?;
        let columns = crate::encode::lineage::of(
            &written,
            &Known {
                columns: &self.column_infos,
                uploads,
            },
        );
        let timings = Timings {
            parse: Duration::ZERO,
            pin: t2 - t1,
            plan: t3 - t2,
            physical: t4 - t3,
            record: Duration::ZERO,
        };
        Ok(Planned {
            physical,
            state,
            schema,
            columns,
            timings,
        })
    }

    /// How a query would run (in its pinned form, as [`Engine::query`] would
    /// run it, MAXREC and deadline included), without running it: the physical
    /// plan, or the direct read. Refusals come out as from [`Engine::query`].
    pub async fn explain(&self, adql: &str, options: &QueryOptions) -> Result<String> {
        Ok(match self.route_of(adql, options).await? {
            Route::Direct(read) => read.describe(),
            Route::Planned(p) => DisplayableExecutionPlan::new(p.physical.as_ref())
                .indent(true)
                .to_string(),
        })
    }

    /// Runs a query as [`Engine::query`] would and returns how it ran, with
    /// execution metrics (what `EXPLAIN ANALYZE` shows): for operators and
    /// tests of pruning.
    pub async fn explain_analyze(&self, adql: &str, options: &QueryOptions) -> Result<String> {
        match self.route_of(adql, options).await? {
            Route::Direct(read) => read.analyse().await,
            Route::Planned(p) => {
                let mut stream = self.execution.stream(
                    p.physical.clone(),
                    p.state.task_ctx(),
                    p.schema.clone(),
                    None,
                )?;
                while let Some(b) = stream.next().await {
                    b?;
                }
                Ok(
                    DisplayableExecutionPlan::with_metrics(
                        p.physical.as_ref() as &dyn ExecutionPlan
                    )
                    .indent(true)
                    .to_string(),
                )
            }
        }
    }

    /// The route a query takes: checked, pinned and limited as [`Engine::query`] does.
    async fn route_of(&self, adql: &str, options: &QueryOptions) -> Result<Route> {
        let t0 = Instant::now();
        let prepared = self.prepare(adql, options).await?;
        let run = Run::asked(
            adql,
            prepared.snapshot.snapshot,
            prepared.access.cutoff,
            options,
            t0,
        );
        self.route(&prepared.pinned.query, &run).await
    }
}

/// Runs the planning `work` on a thread of the runtime's blocking pool (on a
/// multi-threaded runtime; in place on a single-threaded one), so that a query
/// that takes long to plan keeps no worker from answering others. Waiting for
/// it ends at the deadline of `interrupt`, and the work itself stops at its
/// next step: when the waiting future is dropped (the caller went away), too.
pub(crate) async fn off_workers<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
    interrupt: &Interrupt,
) -> Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = Handle::current();
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        return work.await;
    }
    let guard = interrupt.guard();
    let job = tokio::task::spawn_blocking(move || handle.block_on(work));
    let joined = match interrupt.deadline() {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), job)
            .await
            .map_err(|_| {
                interrupt
                    .check()
                    .err()
                    .unwrap_or_else(|| interrupt.overdue())
            })?,
        None => job.await,
    };
    guard.disarm();
    joined.map_err(|e| {
        datafusion::error::DataFusionError::External(
            format!("planning the query failed: {e}").into(),
        )
    })?
}

/// Runs `f` on the current thread with the runtime's other tasks moved to
/// another worker (on a multi-threaded runtime; as is on a single-threaded one):
/// for CPU work that is bounded but not short, such as parsing a long text.
pub(crate) async fn in_place<F: std::future::Future>(f: F) -> F::Output {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = Handle::current();
    if handle.runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| handle.block_on(f))
    } else {
        f.await
    }
}

/// Whether a query's rows come out in one fixed order without an ORDER BY: a
/// plain filter over one in-memory table (an upload or TAP_SCHEMA) reads it in
/// its one partition, in order. Such a query needs no added order for MAXREC to
/// cut the same rows every time, and keeps the order the table was given in
/// (clients check that an upload comes back as sent).
pub(crate) fn order_is_fixed(query: &adql::Query) -> bool {
    query.order_is_fixed(|schema| schema == UPLOAD_SCHEMA || schema == "TAP_SCHEMA")
}

/// Stack the ADQL passes may use: they recurse as deep as a query nests (a chain
/// of up to `adql::MAX_OPERATORS` operators), deeper than the 2 MiB of a tokio
/// worker allows. The memory is reserved, and only touched by deep queries.
pub(crate) const ADQL_STACK: usize = 64 << 20;

/// The stack a runtime's threads should have (reserved, touched only by deep
/// queries): with it, the ADQL passes run in place instead of on a stack
/// allocated for each query, which costs a few hundred microseconds.
pub const THREAD_STACK: usize = ADQL_STACK;

/// Runs an ADQL pass with at least half of [`ADQL_STACK`] free.
pub(crate) fn deep<T>(pass: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(ADQL_STACK / 2, ADQL_STACK, pass)
}
