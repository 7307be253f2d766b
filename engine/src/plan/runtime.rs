//! Where planned queries run: each on a tokio runtime of its own, whose
//! threads the operating system schedules below everyone else's.
//!
//! Executed on the runtime that also answers HTTP, one DiaSource ⋈ DiaObject
//! join (17–43 s on 2 cores) made `/tap/availability` take 8 s and another
//! caller's cone 8–18 s: DataFusion's operators hold a worker for as long as
//! a step takes. On one shared execution runtime, two such joins still made a
//! 15 ms GROUP BY wait 0.4–5 s for a worker. With a runtime per query, every
//! query has threads of its own, the operating system shares the cores among
//! all of them, and they run at a lower priority (nice 10), so requests that
//! answer from memory, and the direct reads of id lookups and small cones
//! (which stay on the caller's runtime), go first; alone, a heavy query still
//! has every core. This is the pattern of DataFusion's `thread_pools` example.
//!
//! A query's runtime also says when it has stopped: the tasks DataFusion
//! spawns (repartitions, a join's build side) finish the step they are in
//! before they see that their reader has gone, and what the caller asked to
//! hold (its slot in the service) is released only once every one has.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::{
    RecordBatchReceiverStreamBuilder, RecordBatchStreamAdapter,
};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::runtime::{Builder, Runtime};

use crate::options::Hold;
use crate::plan::pipeline::THREAD_STACK;

/// Batches produced ahead of the reader: enough to keep both sides busy,
/// few enough that a slow client holds little.
const AHEAD: usize = 2;

/// The longest a stopped query's tasks are waited for before its hold is
/// released all the same (a step that long would be a bug of its own).
const STOPPING: Duration = Duration::from_secs(600);

/// How planned queries execute.
pub(crate) struct Execution {
    cores: usize,
}

impl Execution {
    /// Queries that run with `cores` worker threads each.
    pub(crate) fn new(cores: usize) -> std::io::Result<Execution> {
        // Fails here, when the engine opens, if threads cannot be made at all.
        runtime(1)?.shutdown_background();
        Ok(Execution {
            cores: cores.max(1),
        })
    }

    /// Executes `plan` on a runtime of its own; its batches arrive on the
    /// stream returned, which stops the execution when dropped (and passes on
    /// a panic of it as a panic of the reader). `hold` is kept until every
    /// task of the execution has ended.
    pub(crate) fn stream(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
        schema: SchemaRef,
        hold: Option<Hold>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let runtime = runtime(self.cores)
            .map_err(|e| datafusion::error::DataFusionError::External(e.into()))?;
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema.clone(), AHEAD);
        let tx = builder.tx();
        builder.spawn_on(
            async move {
                // Created here, so that the tasks DataFusion spawns run on this
                // query's runtime too.
                let mut stream = datafusion::physical_plan::execute_stream(plan, context)?;
                while let Some(batch) = stream.next().await {
                    if tx.send(batch).await.is_err() {
                        // The reader is gone: stop.
                        break;
                    }
                }
                Ok(())
            },
            runtime.handle(),
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            Owned {
                inner: builder.build(),
                runtime: Some(runtime),
                hold,
            },
        )))
    }
}

/// A runtime of `threads` workers at a lower scheduling priority.
fn runtime(threads: usize) -> std::io::Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("ppdb-exec")
        // DataFusion recurses over a plan as deep as the query nests.
        .thread_stack_size(THREAD_STACK)
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
}

/// A query's batches, with the runtime that makes them and what the caller
/// holds while it runs.
struct Owned {
    inner: BoxStream<'static, datafusion::error::Result<RecordBatch>>,
    runtime: Option<Runtime>,
    hold: Option<Hold>,
}

impl Stream for Owned {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // Stops the producer (its task is aborted with the stream).
        drop(std::mem::replace(
            &mut self.inner,
            futures::stream::empty().boxed(),
        ));
        let (Some(runtime), hold) = (self.runtime.take(), self.hold.take()) else {
            return;
        };
        // Waiting blocks, and this may be dropped on a runtime's worker: a
        // thread of its own waits for the query's tasks to end, then lets go.
        let waited = std::thread::Builder::new()
            .name("ppdb-exec-end".into())
            .spawn(move || {
                runtime.shutdown_timeout(STOPPING);
                drop(hold);
            });
        if let Err(e) = waited {
            eprintln!("warning: cannot wait for a stopped query's tasks: {e}");
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
    async fn a_query_holds_what_it_was_given_until_every_task_of_it_has_ended() {
        let exec = Execution::new(2).unwrap();
        let ctx = SessionContext::new();
        let df = ctx
            .sql("SELECT v FROM generate_series(1, 1000000) AS t(v) ORDER BY v DESC")
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
        assert_eq!(Arc::strong_count(&hold), 2, "held while it runs");
        drop(stream);
        let mut waited = 0;
        while Arc::strong_count(&hold) > 1 && waited < 500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(Arc::strong_count(&hold), 1, "released once it stopped");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn execution_threads_run_below_the_callers_priority() {
        let tid = || {
            std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name()?.to_str()?.parse::<i64>().ok())
                .unwrap_or(0)
        };
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
        let rt = runtime(1).unwrap();
        let theirs = rt.block_on(async { tokio::spawn(async move { tid() }).await.unwrap() });
        let (n_theirs, n_ours) = (nice(theirs), nice(tid()));
        rt.shutdown_background();
        assert!(
            n_theirs > n_ours,
            "execution thread nice {n_theirs} vs caller {n_ours}"
        );
    }
}
