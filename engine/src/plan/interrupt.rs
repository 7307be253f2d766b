//! Stopping a query while it is planned.
//!
//! Planning is CPU work inside DataFusion that no timer outside can stop: a
//! query that plans for a minute holds its thread and its place for a minute.
//! Every analyzer, optimizer and physical optimizer rule of a query's session
//! is wrapped so that each step checks first whether the query's deadline has
//! passed or its caller has gone away, and fails the planning if so. The
//! optimizer calls most rules once per plan node, so planning stops within one
//! node's rewrite of the moment it should.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{AnalyzerRule, OptimizerConfig, OptimizerRule};
use datafusion::physical_optimizer::{PhysicalOptimizerContext, PhysicalOptimizerRule};
use datafusion::physical_plan::ExecutionPlan;

use crate::plan::deadline::overdue;

/// When planning one query must stop: its deadline (and the time it was
/// given, for the message), and whether its caller has gone away.
#[derive(Clone, Debug)]
pub(crate) struct Interrupt {
    limit: Option<(Instant, Duration)>,
    abandoned: Arc<AtomicBool>,
}

/// Marks the planning of a query abandoned when dropped, unless disarmed: the
/// future that waits for the planning holds it, so a caller that goes away
/// stops the planning too.
#[derive(Debug)]
pub(crate) struct AbandonOnDrop(Option<Arc<AtomicBool>>);

impl AbandonOnDrop {
    /// The planning ended and its result was taken.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

impl Interrupt {
    /// Planning that stops at `limit` (a deadline and the time it was given), if any.
    pub(crate) fn new(limit: Option<(Instant, Duration)>) -> Self {
        Self {
            limit,
            abandoned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A guard that abandons the planning when dropped.
    pub(crate) fn guard(&self) -> AbandonOnDrop {
        AbandonOnDrop(Some(self.abandoned.clone()))
    }

    /// The deadline, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.limit.map(|(d, _)| d)
    }

    /// The error of planning stopped at its deadline.
    pub(crate) fn overdue(&self) -> DataFusionError {
        let allowed = self.limit.map_or(Duration::ZERO, |(_, a)| a);
        DataFusionError::ResourcesExhausted(overdue(allowed))
    }

    /// Fails once the deadline has passed or the caller has gone away.
    pub(crate) fn check(&self) -> Result<()> {
        if self.deadline().is_some_and(|d| Instant::now() >= d) {
            return Err(self.overdue());
        }
        if self.abandoned.load(Ordering::Relaxed) {
            return Err(DataFusionError::ResourcesExhausted(
                "the query was cancelled while it was planned".into(),
            ));
        }
        Ok(())
    }

    /// `builder` with each of `base`'s rules checking this interrupt before it
    /// runs (the rules go in with the session being built, not in a second one).
    pub(crate) fn wrap(
        &self,
        builder: SessionStateBuilder,
        base: &SessionState,
    ) -> SessionStateBuilder {
        let analyzer = base
            .analyzer()
            .rules
            .iter()
            .map(|r| Arc::new(Checked::new(r.clone(), self)) as Arc<dyn AnalyzerRule + Send + Sync>)
            .collect();
        let optimizer = base
            .optimizers()
            .iter()
            .map(|r| {
                Arc::new(Checked::new(r.clone(), self)) as Arc<dyn OptimizerRule + Send + Sync>
            })
            .collect();
        let physical = base
            .physical_optimizers()
            .iter()
            .map(|r| {
                Arc::new(Checked::new(r.clone(), self))
                    as Arc<dyn PhysicalOptimizerRule + Send + Sync>
            })
            .collect();
        builder
            .with_analyzer_rules(analyzer)
            .with_optimizer_rules(optimizer)
            .with_physical_optimizer_rules(physical)
    }
}

/// A rule that checks an [`Interrupt`] before each step.
struct Checked<R: ?Sized> {
    rule: Arc<R>,
    interrupt: Interrupt,
}

impl<R: ?Sized> Checked<R> {
    fn new(rule: Arc<R>, interrupt: &Interrupt) -> Self {
        Self {
            rule,
            interrupt: interrupt.clone(),
        }
    }
}

impl<R: ?Sized> fmt::Debug for Checked<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Checked")
    }
}

impl AnalyzerRule for Checked<dyn AnalyzerRule + Send + Sync> {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        self.interrupt.check()?;
        self.rule.analyze(plan, config)
    }

    fn name(&self) -> &str {
        self.rule.name()
    }
}

impl OptimizerRule for Checked<dyn OptimizerRule + Send + Sync> {
    fn name(&self) -> &str {
        self.rule.name()
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        self.rule.apply_order()
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        self.interrupt.check()?;
        self.rule.rewrite(plan, config)
    }
}

impl PhysicalOptimizerRule for Checked<dyn PhysicalOptimizerRule + Send + Sync> {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.interrupt.check()?;
        self.rule.optimize(plan, config)
    }

    fn optimize_with_context(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        context: &dyn PhysicalOptimizerContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.interrupt.check()?;
        self.rule.optimize_with_context(plan, context)
    }

    fn name(&self) -> &str {
        self.rule.name()
    }

    fn schema_check(&self) -> bool {
        self.rule.schema_check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::LogicalPlanBuilder;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    /// An analyzer rule that does what a slow step would (lets the deadline
    /// pass) or what a caller going away does (drops the guard), and counts
    /// the steps that ran.
    #[derive(Debug)]
    struct Step {
        sleep: Duration,
        leave: Mutex<Option<AbandonOnDrop>>,
        ran: Arc<AtomicUsize>,
    }

    impl AnalyzerRule for Step {
        fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
            std::thread::sleep(self.sleep);
            drop(self.leave.lock().map(|mut g| g.take()));
            self.ran.fetch_add(1, Ordering::Relaxed);
            Ok(plan)
        }

        fn name(&self) -> &str {
            "step"
        }
    }

    /// Plans `SELECT 1` in a session of two steps, wrapped by `interrupt`:
    /// the error, if any, and how many steps ran.
    fn plan(
        interrupt: &Interrupt,
        sleep: Duration,
        leave: Option<AbandonOnDrop>,
    ) -> (Option<String>, usize) {
        let ran = Arc::new(AtomicUsize::new(0));
        let step = |leave| {
            Arc::new(Step {
                sleep,
                leave: Mutex::new(leave),
                ran: ran.clone(),
            }) as Arc<dyn AnalyzerRule + Send + Sync>
        };
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_analyzer_rules(vec![step(leave), step(None)])
            .build();
        let state = interrupt
            .wrap(
                SessionStateBuilder::new_from_existing(state.clone()),
                &state,
            )
            .build();
        let plan = LogicalPlanBuilder::empty(true)
            .build()
            .expect("an empty plan");
        let error = state.optimize(&plan).err().map(|e| e.to_string());
        (error, ran.load(Ordering::Relaxed))
    }

    #[test]
    fn planning_stops_at_the_first_step_after_its_deadline() {
        let interrupt = Interrupt::new(Some((
            Instant::now() + Duration::from_millis(20),
            Duration::from_secs(3),
        )));
        let (error, ran) = plan(&interrupt, Duration::from_millis(40), None);
        let error = error.expect("the second step is after the deadline");
        assert!(error.contains("execution duration of 3 s"), "{error}");
        assert_eq!(ran, 1);
    }

    #[test]
    fn planning_stops_at_the_first_step_after_its_caller_went_away() {
        let interrupt = Interrupt::new(None);
        let (error, ran) = plan(&interrupt, Duration::ZERO, Some(interrupt.guard()));
        let error = error.expect("the caller left during the first step");
        assert!(error.contains("cancelled while it was planned"), "{error}");
        assert_eq!(ran, 1);
    }

    #[test]
    fn planning_in_time_whose_result_was_taken_is_not_stopped() {
        let interrupt = Interrupt::new(Some((
            Instant::now() + Duration::from_secs(60),
            Duration::from_secs(60),
        )));
        let guard = interrupt.guard();
        let (error, ran) = plan(&interrupt, Duration::ZERO, None);
        guard.disarm();
        assert_eq!(error, None);
        assert_eq!(ran, 2);
        assert!(interrupt.check().is_ok());
    }
}
