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
//!
//! Starting a runtime and ending it costs ~0.3 ms of thread creation and
//! joining, as much as planning a small query: once nothing of its query
//! runs any more (at once, or when a thread waiting for a stopped query's
//! tasks has seen them end), a runtime goes back to a small pool of idle ones
//! for the next query. (Blocking reads are not tasks: one a stopped query
//! started may end after the release, and its bytes are dropped.)
//!
//! A query that fails says so only once every task of it has ended: until
//! then its operators still hold their memory, and the caller's next query,
//! sent the moment the error arrives, was refused for the memory of the one
//! that had just failed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::{
    RecordBatchReceiverStreamBuilder, RecordBatchStreamAdapter,
};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::channel::oneshot;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use tokio::runtime::{Builder, Runtime};

use crate::options::Hold;
use crate::plan::pipeline::THREAD_STACK;

/// Batches produced ahead of the reader: enough to keep both sides busy,
/// few enough that a slow client holds little.
const AHEAD: usize = 2;

/// The longest a stopped query's tasks are waited for before its hold is
/// released all the same (a step that long would be a bug of its own).
const STOPPING: Duration = Duration::from_secs(600);

/// The longest a failed query's error waits for its tasks to end.
const TELL_AFTER: Duration = Duration::from_secs(2);

/// Idle runtimes kept for the next queries (each keeps its threads parked).
const IDLE: usize = 4;

/// Runtimes whose last query has ended, ready for the next.
type Idle = Arc<Pool>;

/// The idle runtimes; whoever lets go of the pool last (the engine, or a
/// query's stream that outlived it) may be on a runtime's thread.
struct Pool(Mutex<Vec<Runtime>>);

impl Drop for Pool {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics on a runtime's thread; idle
        // ones run nothing, so letting them go in the background loses nothing.
        if let Ok(idle) = self.0.get_mut() {
            for r in idle.drain(..) {
                r.shutdown_background();
            }
        }
    }
}

/// How planned queries execute.
pub(crate) struct Execution {
    cores: usize,
    idle: Idle,
    /// Its threads' name, `ppdb-exec-<n>`: one per engine of the process.
    name: String,
}

/// Executions this process has made, to name their threads apart.
static EXECUTIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Execution {
    /// Queries that run with `cores` worker threads each.
    pub(crate) fn new(cores: usize) -> std::io::Result<Execution> {
        let cores = cores.max(1);
        let n = EXECUTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ppdb-exec-{n}");
        // Fails here, when the engine opens, if threads cannot be made at all.
        let first = runtime(cores, &name)?;
        Ok(Execution {
            cores,
            idle: Arc::new(Pool(Mutex::new(vec![first]))),
            name,
        })
    }

    /// An idle runtime, or a new one.
    fn runtime(&self) -> std::io::Result<Runtime> {
        let reused = self.idle.0.lock().ok().and_then(|mut idle| idle.pop());
        match reused {
            Some(r) => Ok(r),
            None => runtime(self.cores, &self.name),
        }
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
        let runtime = self
            .runtime()
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
                idle: self.idle.clone(),
                failing: None,
            },
        )))
    }
}

/// A runtime of `threads` workers named `name`, at a lower scheduling priority.
fn runtime(threads: usize, name: &str) -> std::io::Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
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
    idle: Idle,
    /// The error the query failed with, told once every task of it has ended.
    failing: Option<(oneshot::Receiver<()>, datafusion::error::DataFusionError)>,
}

impl Owned {
    /// Stops the producer (its task is aborted with the stream) and lets go
    /// of the runtime and the hold once no task of the query runs; the
    /// receiver hears when (or is dropped with nothing left to wait for).
    fn stop(&mut self) -> Option<oneshot::Receiver<()>> {
        drop(std::mem::replace(
            &mut self.inner,
            futures::stream::empty().boxed(),
        ));
        let runtime = self.runtime.take()?;
        Some(release(runtime, self.hold.take(), self.idle.clone()))
    }
}

impl Stream for Owned {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some((ended, _)) = &mut this.failing {
            // Sent or dropped, either way nothing of the query runs any more.
            let _ = std::task::ready!(ended.poll_unpin(cx));
            return Poll::Ready(this.failing.take().map(|(_, e)| Err(e)));
        }
        match std::task::ready!(this.inner.poll_next_unpin(cx)) {
            Some(Err(e)) => match this.stop() {
                Some(ended) => {
                    this.failing = Some((ended, e));
                    Pin::new(this).poll_next(cx)
                }
                None => Poll::Ready(Some(Err(e))),
            },
            other => Poll::Ready(other),
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Gives back `runtime` and lets go of `hold` once no task runs on it: at
/// once, or from a thread of its own that waits (waiting blocks, and this may
/// run on a runtime's worker). The receiver hears when it has let go, or
/// after [`TELL_AFTER`] if that takes longer.
fn release(runtime: Runtime, hold: Option<Hold>, idle: Idle) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    if runtime.metrics().num_alive_tasks() == 0 {
        give_back(runtime, &idle);
        drop(hold);
        let _ = tx.send(());
        return rx;
    }
    let waited = std::thread::Builder::new()
        .name("ppdb-exec-end".into())
        .spawn(move || {
            let start = Instant::now();
            let mut pause = Duration::from_micros(200);
            let mut tx = Some(tx);
            while runtime.metrics().num_alive_tasks() > 0 && start.elapsed() < STOPPING {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
                if start.elapsed() >= TELL_AFTER
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
            if runtime.metrics().num_alive_tasks() == 0 {
                give_back(runtime, &idle);
            } else {
                runtime.shutdown_timeout(Duration::ZERO);
            }
            drop(hold);
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
        });
    if let Err(e) = waited {
        eprintln!("warning: cannot wait for a stopped query's tasks: {e}");
    }
    rx
}

/// Keeps a runtime nothing runs on for the next query, if the pool has room.
fn give_back(runtime: Runtime, idle: &Idle) {
    match idle.0.lock().ok().as_mut() {
        Some(idle) if idle.len() < IDLE => idle.push(runtime),
        // Nothing runs on it: shutting down waits for nothing.
        _ => runtime.shutdown_background(),
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

    /// `sql` started on `exec`, and what its caller holds while it runs.
    async fn started(exec: &Execution, sql: &str) -> (SendableRecordBatchStream, Hold) {
        let ctx = SessionContext::new();
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let schema = plan.schema();
        let hold: Hold = Arc::new(());
        let stream = exec
            .stream(plan, ctx.task_ctx(), schema, Some(hold.clone()))
            .unwrap();
        (stream, hold)
    }

    #[tokio::test]
    async fn a_query_holds_what_it_was_given_until_every_task_of_it_has_ended() {
        let exec = Execution::new(2).unwrap();
        let sql = "SELECT v FROM generate_series(1, 1000000) AS t(v) ORDER BY v DESC";
        let (mut stream, hold) = started(&exec, sql).await;
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.num_rows() > 0);
        assert_eq!(Arc::strong_count(&hold), 2, "held while it runs");
        drop(stream);
        assert!(released(&hold).await, "released once it stopped");
    }

    #[tokio::test]
    async fn a_failed_query_says_so_once_nothing_of_it_holds_anything() {
        let exec = Execution::new(2).unwrap();
        let sql =
            "SELECT 1 / (v - 500000) AS x FROM generate_series(1, 1000000) AS t(v) ORDER BY x";
        let (mut stream, hold) = started(&exec, sql).await;
        let error = loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("the division by zero did not fail"),
            }
        };
        assert!(error.to_string().contains("Divide by zero"), "{error}");
        assert_eq!(Arc::strong_count(&hold), 1, "let go before the error");
        assert_eq!(exec.idle.0.lock().unwrap().len(), 1, "back in the pool");
        assert!(stream.next().await.is_none(), "nothing after the error");
    }

    /// Whether `hold` is let go within 5 s.
    async fn released(hold: &Hold) -> bool {
        let mut waited = 0;
        while Arc::strong_count(hold) > 1 && waited < 500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        Arc::strong_count(hold) == 1
    }

    /// The ids of the threads of `exec` (other tests run executions beside it).
    #[cfg(target_os = "linux")]
    fn execution_threads(exec: &Execution) -> std::collections::BTreeSet<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| {
                let t = t.ok()?.path();
                let name = std::fs::read_to_string(t.join("comm")).ok()?;
                (name.trim() == exec.name).then(|| t.file_name()?.to_str().map(String::from))?
            })
            .collect()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_finished_querys_runtime_serves_the_next_query() {
        let exec = Execution::new(2).unwrap();
        // The pooled runtime's threads start on their own time.
        let mut pooled = execution_threads(&exec);
        for _ in 0..500 {
            if pooled.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            pooled = execution_threads(&exec);
        }
        assert_eq!(pooled.len(), 2);
        for _ in 0..3 {
            let sql = "SELECT count(*) AS n FROM generate_series(1, 1000) AS t(v)";
            let (mut stream, hold) = started(&exec, sql).await;
            assert_eq!(exec.idle.0.lock().unwrap().len(), 0, "taken while it runs");
            while let Some(b) = stream.next().await {
                b.unwrap();
            }
            drop(stream);
            // DataFusion's own tasks may outlive the last batch by a moment.
            assert!(released(&hold).await, "released once it ended");
            assert_eq!(exec.idle.0.lock().unwrap().len(), 1, "back in the pool");
            assert_eq!(execution_threads(&exec), pooled, "the same threads ran it");
        }
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
        let rt = runtime(1, "ppdb-exec-test").unwrap();
        let theirs = rt.block_on(async { tokio::spawn(async move { tid() }).await.unwrap() });
        let (n_theirs, n_ours) = (nice(theirs), nice(tid()));
        rt.shutdown_background();
        assert!(
            n_theirs > n_ours,
            "execution thread nice {n_theirs} vs caller {n_ours}"
        );
    }
}
