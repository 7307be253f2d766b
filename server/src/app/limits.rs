//! How many queries run at once, how many may wait for a turn, and how many
//! of those one caller may hold: twelve requests from one address filled
//! every slot and the queue, and every other caller was told "busy". One
//! caller also runs at most half the slots at once (its other queries wait
//! their turn): eight slow queries from one address held every slot, and
//! every other caller waited for the deadline. And a quarter of the slots
//! are kept for callers with nothing running: two addresses with four slow
//! queries each otherwise filled every slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A bound on running queries with a bounded queue in front of it.
#[derive(Clone)]
pub struct Limits(Arc<Inner>);

struct Inner {
    /// Turns anyone may take.
    running: Arc<Semaphore>,
    /// Turns kept for a caller's first running query.
    reserved: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    concurrent: usize,
    /// The most queries (running or waiting) one caller may have.
    share: usize,
    /// Queries admitted per caller.
    held: Mutex<HashMap<String, usize>>,
    /// The most queries one caller runs at once.
    run_share: usize,
    /// Each caller's turns to run, of `run_share`.
    runs: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Limits {
    /// At most `concurrent` queries run; at most `queue` more wait; one caller
    /// holds at most `share` of them (running or waiting).
    pub fn new(concurrent: usize, queue: usize, share: usize) -> Limits {
        let concurrent = concurrent.max(1);
        let reserve = if concurrent > 1 {
            (concurrent / 4).max(1)
        } else {
            0
        };
        Limits(Arc::new(Inner {
            running: Arc::new(Semaphore::new(concurrent - reserve)),
            reserved: Arc::new(Semaphore::new(reserve)),
            waiting: AtomicUsize::new(0),
            queue,
            concurrent,
            share: share.max(1),
            held: Mutex::new(HashMap::new()),
            run_share: (concurrent / 2).max(1),
            runs: Mutex::new(HashMap::new()),
        }))
    }

    /// A place in the queue (or a turn at once) for `caller` (a user, or the
    /// address of an anonymous one), or why there is none.
    pub fn admit(&self, caller: &str) -> Result<Ticket, String> {
        let share = Share::take(&self.0, caller)?;
        let runs = {
            let mut runs = self.0.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.entry(caller.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.0.run_share)))
                .clone()
        };
        if let Ok(mine) = runs.clone().try_acquire_owned() {
            let first = self.0.alone(&runs);
            let turn = self.0.running.clone().try_acquire_owned().ok().or_else(|| {
                first
                    .then(|| self.0.reserved.clone().try_acquire_owned().ok())
                    .flatten()
            });
            if let Some(p) = turn {
                return Ok(Ticket {
                    limits: self.0.clone(),
                    ready: Some((p, mine)),
                    counted: false,
                    share,
                    runs,
                });
            }
        }
        let mut waiting = self.0.waiting.load(Ordering::Relaxed);
        loop {
            if waiting >= self.0.queue {
                return Err(format!(
                    "the service is busy: {} queries are running and {} waiting; try again shortly",
                    self.0.concurrent, waiting
                ));
            }
            match self.0.waiting.compare_exchange(
                waiting,
                waiting + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => waiting = now,
            }
        }
        Ok(Ticket {
            limits: self.0.clone(),
            ready: None,
            counted: true,
            share,
            runs,
        })
    }
}

impl Inner {
    /// Whether the caller holding one of `runs`'s permits has no other query running.
    fn alone(&self, runs: &Semaphore) -> bool {
        self.run_share - runs.available_permits() <= 1
    }
}

/// One caller's query among those admitted, given back when dropped.
struct Share {
    limits: Arc<Inner>,
    caller: String,
}

impl Share {
    fn take(limits: &Arc<Inner>, caller: &str) -> Result<Share, String> {
        let mut held = limits.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(caller.to_string()).or_default();
        if *n >= limits.share {
            return Err(format!(
                "the service is busy for you: you have {n} queries running or waiting, the \
                 most one caller may have; try again when one has ended"
            ));
        }
        *n += 1;
        Ok(Share {
            limits: limits.clone(),
            caller: caller.to_string(),
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        // A share handed on from a ticket to its permit is empty.
        if self.caller.is_empty() {
            return;
        }
        let mut held = self.limits.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.caller);
                self.limits
                    .runs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&self.caller);
            }
        }
    }
}

/// A place in the queue.
pub struct Ticket {
    limits: Arc<Inner>,
    /// A turn taken at once: the service's and the caller's.
    ready: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
    // Whether this ticket holds a place in the waiting count.
    counted: bool,
    share: Share,
    runs: Arc<Semaphore>,
}

impl Ticket {
    /// Waits for a turn to run.
    pub async fn acquire(mut self) -> Permit {
        let share = Share {
            limits: self.share.limits.clone(),
            caller: std::mem::take(&mut self.share.caller),
        };
        if let Some((p, mine)) = self.ready.take() {
            return Permit(Some(p), Some(mine), share);
        }
        // The caller's own turn first, so that a caller at its share waits
        // without holding one of the service's. The semaphores are never
        // closed, so these only fail if that changes.
        let mine = self.runs.clone().acquire_owned().await.ok();
        let p = if self.limits.alone(&self.runs) {
            tokio::select! {
                p = self.limits.running.clone().acquire_owned() => p.ok(),
                p = self.limits.reserved.clone().acquire_owned() => p.ok(),
            }
        } else {
            self.limits.running.clone().acquire_owned().await.ok()
        };
        Permit(p, mine, share)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.counted {
            self.limits.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A turn to run; the next query in the queue starts when it is dropped.
pub struct Permit(
    #[allow(dead_code)] Option<OwnedSemaphorePermit>,
    #[allow(dead_code)] Option<OwnedSemaphorePermit>,
    #[allow(dead_code)] Share,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_is_bounded_and_frees_places() {
        let limits = Limits::new(1, 1, 9);
        let first = limits.admit("a").unwrap().acquire().await;
        let second = limits.admit("a").unwrap();
        let refused = limits.admit("a").err().unwrap();
        assert!(refused.contains("busy"), "{refused}");
        drop(first);
        let _running = second.acquire().await;
        // The queue is empty again.
        let _third = limits.admit("a").unwrap();
    }

    #[tokio::test]
    async fn one_caller_holds_only_its_share() {
        let limits = Limits::new(4, 8, 2);
        let a1 = limits.admit("a").unwrap().acquire().await;
        let a2 = limits.admit("a").unwrap();
        let refused = limits.admit("a").err().unwrap();
        assert!(
            refused.contains("the most one caller may have"),
            "{refused}"
        );
        // Others still get their turn.
        let _b = limits.admit("b").unwrap().acquire().await;
        drop(a1);
        let _a3 = limits.admit("a").unwrap();
        drop(a2);
    }

    #[tokio::test]
    async fn one_caller_runs_at_most_half_the_slots_and_queues_the_rest() {
        let limits = Limits::new(4, 8, 12);
        let a1 = limits.admit("a").unwrap().acquire().await;
        let _a2 = limits.admit("a").unwrap().acquire().await;
        let a3 = limits.admit("a").unwrap();
        let waiting = tokio::spawn(a3.acquire());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third query of one caller waits");
        // Others find the other half free.
        let _b = limits.admit("b").unwrap().acquire().await;
        let _c = limits.admit("c").unwrap().acquire().await;
        drop(a1);
        let _a3 = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the caller's next query runs when one of its own ends")
            .unwrap();
    }

    #[tokio::test]
    async fn a_caller_with_nothing_running_finds_a_kept_slot() {
        // Four slots: three for anyone, one kept; two per caller.
        let limits = Limits::new(4, 8, 12);
        let _a1 = limits.admit("a").unwrap().acquire().await;
        let _a2 = limits.admit("a").unwrap().acquire().await;
        let _b1 = limits.admit("b").unwrap().acquire().await;
        let b2 = tokio::spawn(limits.admit("b").unwrap().acquire());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !b2.is_finished(),
            "a second query of b waits: the kept slot is not for it"
        );
        let c = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            limits.admit("c").unwrap().acquire(),
        )
        .await;
        assert!(c.is_ok(), "c, with nothing running, takes the kept slot");
        b2.abort();
    }
}
