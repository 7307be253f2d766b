//! Where planned queries run: a tokio runtime of their own, whose threads the
//! operating system schedules below everyone else's.
//!
//! Executed on the runtime that also answers HTTP, one DiaSource ⋈ DiaObject
//! join (17–43 s on 2 cores) made `/tap/availability` take 8 s and another
//! caller's cone 8–18 s: DataFusion's operators hold a worker for as long as
//! a batch takes. Here they hold only this runtime's threads, which run at a
//! lower priority (nice 10), so requests that answer from memory, and the
//! direct reads of id lookups and small cones (which stay on the caller's
//! runtime), go first; with nothing else to do, a heavy query still has every
//! core. This is the pattern of DataFusion's `thread_pools` example.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::StreamExt;
use tokio::runtime::{Builder, Handle, Runtime};

use crate::options::Hold;
use crate::plan::pipeline::THREAD_STACK;

/// Batches produced ahead of the reader: enough to keep both sides busy,
/// few enough that a slow client holds little.
const AHEAD: usize = 2;

/// Worker threads per core. One poll of a heavy operator (a nested-loop join
/// over a batch) can take seconds, and a task waits for a worker; with a
/// worker per core, two heavy joins made a 10 ms GROUP BY take 0.5–10 s. With
/// idle workers to spare a new query's tasks start at once, and the operating
/// system shares the cores among the threads that have work.
const THREADS_PER_CORE: usize = 8;

/// The runtime planned queries execute on.
pub(crate) struct Execution {
    runtime: Option<Runtime>,
}

impl Execution {
    /// A runtime for `cores` cores at a lower scheduling priority.
    pub(crate) fn new(cores: usize) -> std::io::Result<Execution> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(cores.max(1) * THREADS_PER_CORE)
            .thread_name("ppdb-exec")
            // DataFusion recurses over a plan as deep as the query nests.
            .thread_stack_size(THREAD_STACK)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(Execution {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> Option<&Handle> {
        self.runtime.as_ref().map(Runtime::handle)
    }

    /// Executes `plan` on this runtime; its batches arrive on the stream
    /// returned, which stops the execution when dropped and passes on a
    /// panic of it as a panic of the reader.
    pub(crate) fn stream(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
        schema: SchemaRef,
        hold: Option<Hold>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let Some(handle) = self.handle() else {
            return datafusion::physical_plan::execute_stream(plan, context);
        };
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema, AHEAD);
        let tx = builder.tx();
        builder.spawn_on(
            async move {
                // Dropped when this task ends: after the step running when the
                // reader went, not when it went.
                let _hold = hold;
                // Created here, so that the tasks DataFusion spawns (repartitions,
                // spills) run on this runtime too.
                let mut stream = datafusion::physical_plan::execute_stream(plan, context)?;
                while let Some(batch) = stream.next().await {
                    if tx.send(batch).await.is_err() {
                        // The reader is gone: stop.
                        break;
                    }
                }
                Ok(())
            },
            handle,
        );
        Ok(builder.build())
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        // An engine may be dropped inside another runtime, where blocking to
        // join the workers is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority (its nice value; per thread on Linux).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority reads no memory of ours; `0` names the calling
    // thread, and a failure (as where raising nice is not allowed) leaves the
    // priority as it was, which is harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn a_plan_runs_on_the_execution_threads_and_stops_with_its_reader() {
        let exec = Execution::new(1).unwrap();
        let ctx = SessionContext::new();
        let df = ctx
            .sql("SELECT v FROM generate_series(1, 100000) AS t(v)")
            .await
            .unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let schema = plan.schema();
        let hold: Hold = Arc::new(());
        let mut stream = exec
            .stream(plan, ctx.task_ctx(), schema, Some(hold.clone()))
            .unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.num_rows() > 0);
        // The producer lives on the execution runtime, held back by the reader.
        let metrics = exec.handle().unwrap().metrics();
        assert!(metrics.num_alive_tasks() >= 1);
        drop(stream);
        // Dropping the reader stops it.
        let mut waited = 0;
        while metrics.num_alive_tasks() > 0 && waited < 500 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(
            metrics.num_alive_tasks(),
            0,
            "the execution outlived its reader"
        );
        // What the caller asked to keep lived as long as the execution.
        assert_eq!(Arc::strong_count(&hold), 1);
        // Dropping an engine's runtime inside another runtime must not panic.
        drop(exec);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn execution_threads_run_below_the_callers_priority() {
        let exec = Execution::new(1).unwrap();
        let nice = |tid: i64| -> i64 {
            let stat =
                std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
            // Field 19 (nice), after the parenthesised command name.
            let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
            after
                .split_whitespace()
                .nth(16)
                .and_then(|v| v.parse().ok())
                .unwrap_or(i64::MIN)
        };
        let theirs = exec
            .handle()
            .unwrap()
            .spawn(async {
                std::fs::read_link("/proc/thread-self")
                    .ok()
                    .and_then(|p| p.file_name()?.to_str()?.parse::<i64>().ok())
                    .unwrap_or(0)
            })
            .await
            .unwrap();
        let ours = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse::<i64>().ok())
            .unwrap_or(0);
        assert!(
            nice(theirs) > nice(ours),
            "execution thread nice {} vs caller {}",
            nice(theirs),
            nice(ours)
        );
    }
}
