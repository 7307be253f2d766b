//! The memory one query may use.
//!
//! A query gets a hard limit for everything it holds (hash tables of joins
//! cannot go anywhere else), and a lower one for operators that can spill to
//! disk (sorts, and aggregates that can fall back to sorting): past it they
//! spill instead of growing. A result sorted for its total order (the pinned
//! form of a large download) then costs the same memory at 10^6 rows as at
//! 10^8.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{Result, resources_datafusion_err};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// A query's memory pool: `limit` in all, at most `spill_at` for spillable operators.
#[derive(Debug)]
pub(crate) struct QueryPool {
    all: GreedyMemoryPool,
    spillable: AtomicUsize,
    spill_at: usize,
}

impl QueryPool {
    /// A pool of `limit` bytes whose spillable operators spill past `spill_at`.
    pub(crate) fn new(limit: usize, spill_at: usize) -> QueryPool {
        QueryPool {
            all: GreedyMemoryPool::new(limit),
            spillable: AtomicUsize::new(0),
            spill_at: spill_at.min(limit),
        }
    }
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "query pool ({} bytes, spilling past {})",
            match self.all.memory_limit() {
                MemoryLimit::Finite(n) => n,
                _ => 0,
            },
            self.spill_at
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "ppdb-query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.all.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.all.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        if reservation.consumer().can_spill() {
            self.spillable.fetch_add(additional, Ordering::Relaxed);
        }
        self.all.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        if reservation.consumer().can_spill() {
            self.spillable.fetch_sub(shrink, Ordering::Relaxed);
        }
        self.all.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        if !reservation.consumer().can_spill() {
            return self.all.try_grow(reservation, additional);
        }
        self.spillable
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(additional).filter(|n| *n <= self.spill_at)
            })
            .map_err(|used| {
                resources_datafusion_err!(
                    "{} may hold {} bytes before spilling; {used} are in use, {additional} more asked",
                    reservation.consumer().name(),
                    self.spill_at
                )
            })?;
        self.all.try_grow(reservation, additional).inspect_err(|_| {
            self.spillable.fetch_sub(additional, Ordering::Relaxed);
        })
    }

    fn reserved(&self) -> usize {
        self.all.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.all.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn spillable_consumers_stop_at_their_share_and_others_do_not() {
        let pool: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(1000, 100));
        let sort = MemoryConsumer::new("sort")
            .with_can_spill(true)
            .register(&pool);
        let join = MemoryConsumer::new("join").register(&pool);
        sort.try_grow(80).unwrap();
        assert!(sort.try_grow(30).is_err(), "past the spill share");
        join.try_grow(800).unwrap();
        assert!(join.try_grow(200).is_err(), "past the whole limit");
        sort.shrink(50);
        sort.try_grow(30).unwrap();
        assert_eq!(pool.reserved(), 860);
    }
}
