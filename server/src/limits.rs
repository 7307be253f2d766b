//! How many queries run at once, and how many may wait for a turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A bound on running queries with a bounded queue in front of it.
#[derive(Clone)]
pub struct Limits(Arc<Inner>);

struct Inner {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    concurrent: usize,
}

impl Limits {
    /// At most `concurrent` queries run; at most `queue` more wait.
    pub fn new(concurrent: usize, queue: usize) -> Limits {
        let concurrent = concurrent.max(1);
        Limits(Arc::new(Inner {
            running: Arc::new(Semaphore::new(concurrent)),
            waiting: AtomicUsize::new(0),
            queue,
            concurrent,
        }))
    }

    /// A place in the queue (or a turn at once), or why there is none.
    pub fn admit(&self) -> Result<Ticket, String> {
        if let Ok(p) = self.0.running.clone().try_acquire_owned() {
            return Ok(Ticket {
                limits: self.0.clone(),
                ready: Some(p),
                counted: false,
            });
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
        })
    }
}

/// A place in the queue.
pub struct Ticket {
    limits: Arc<Inner>,
    ready: Option<OwnedSemaphorePermit>,
    // Whether this ticket holds a place in the waiting count.
    counted: bool,
}

impl Ticket {
    /// Waits for a turn to run.
    pub async fn acquire(mut self) -> Permit {
        if let Some(p) = self.ready.take() {
            return Permit(Some(p));
        }
        // The semaphore is never closed, so this only fails if that changes.
        let p = self.limits.running.clone().acquire_owned().await.ok();
        Permit(p)
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
pub struct Permit(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_is_bounded_and_frees_places() {
        let limits = Limits::new(1, 1);
        let first = limits.admit().unwrap().acquire().await;
        let second = limits.admit().unwrap();
        let refused = limits.admit().err().unwrap();
        assert!(refused.contains("busy"), "{refused}");
        drop(first);
        let _running = second.acquire().await;
        // The queue is empty again.
        let _third = limits.admit().unwrap();
    }
}
