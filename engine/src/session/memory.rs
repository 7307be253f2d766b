//! The memory one query may use, and all queries of a service together.
//!
//! A query gets a hard limit for everything it holds (hash tables of joins
//! cannot go anywhere else), and a lower one for operators that can spill to
//! disk (sorts, and aggregates that can fall back to sorting): past it they
//! spill instead of growing. A result sorted for its total order (the pinned
//! form of a large download) then costs the same memory at 10^6 rows as at
//! 10^8.
//!
//! Per-query limits alone let a caller with many slots multiply them (eight
//! cross joins held 8 × 2 GiB), so every pool also draws on one budget shared
//! by the engine's queries: past it a query fails, the process does not.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{Result, resources_datafusion_err};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// The memory all queries of one engine may hold together.
#[derive(Debug)]
pub(crate) struct SharedMemory {
    limit: usize,
    used: AtomicUsize,
}

impl SharedMemory {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Arc<SharedMemory> {
        Arc::new(SharedMemory {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    fn try_take(&self, n: usize) -> Result<()> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .map(|_| ())
            // How much the others hold is not said: it would tell any caller
            // how busy the service's other users are.
            .map_err(|_| {
                resources_datafusion_err!(
                    "the queries running now hold the memory the service allows them \
                     together: try again later, or narrow it"
                )
            })
    }

    fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes held by all queries now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Half the memory this machine (or the container's cgroup) has, the default
/// for what all queries may hold together; 4 GiB where neither can be read.
pub(crate) fn half_of_physical() -> usize {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let total = read("/proc/meminfo").and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    // "max" (no limit) does not parse, and leaves the machine's figure.
    let cgroup = read("/sys/fs/cgroup/memory.max").and_then(|m| m.trim().parse::<usize>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => t.min(c) / 2,
        (Some(t), None) => t / 2,
        (None, Some(c)) => c / 2,
        (None, None) => 4 << 30,
    }
}

/// A query's memory pool: `limit` in all, at most `spill_at` for spillable
/// operators, and never more than the engine's shared budget leaves.
#[derive(Debug)]
pub(crate) struct QueryPool {
    all: GreedyMemoryPool,
    spillable: AtomicUsize,
    spill_at: usize,
    shared: Arc<SharedMemory>,
}

impl QueryPool {
    /// A pool of `limit` bytes whose spillable operators spill past `spill_at`.
    pub(crate) fn new(limit: usize, spill_at: usize, shared: Arc<SharedMemory>) -> QueryPool {
        QueryPool {
            all: GreedyMemoryPool::new(limit),
            spillable: AtomicUsize::new(0),
            spill_at: spill_at.min(limit),
            shared,
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
        self.shared.take(additional);
        self.all.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        if reservation.consumer().can_spill() {
            self.spillable.fetch_sub(shrink, Ordering::Relaxed);
        }
        self.shared.give(shrink);
        self.all.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        if !reservation.consumer().can_spill() {
            self.all.try_grow(reservation, additional)?;
            return self.shared.try_take(additional).inspect_err(|_| {
                self.all.shrink(reservation, additional);
            });
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
        let taken = self.all.try_grow(reservation, additional).and_then(|_| {
            self.shared.try_take(additional).inspect_err(|_| {
                self.all.shrink(reservation, additional);
            })
        });
        taken.inspect_err(|_| {
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

/// The part of a memory limit the pools may count. They count what operators
/// reserve; the process holds about a third more (hash tables beyond their
/// estimate, batches in flight, the allocator's own): a 32-table join peaked
/// at 1.3 times its pool's limit over the idle process, with a limit of 512
/// MiB and of 2 GiB. Counting three quarters keeps the process within the
/// limits it was given.
pub(crate) fn counted(limit: usize) -> usize {
    limit / 4 * 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spillable_consumers_stop_at_their_share_and_others_do_not() {
        let pool: Arc<dyn MemoryPool> =
            Arc::new(QueryPool::new(1000, 100, SharedMemory::new(1 << 20)));
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

    #[test]
    fn queries_together_stop_at_the_shared_budget_and_give_it_back() {
        let shared = SharedMemory::new(1500);
        let pools: Vec<Arc<dyn MemoryPool>> = (0..2)
            .map(|_| Arc::new(QueryPool::new(1000, 100, shared.clone())) as Arc<dyn MemoryPool>)
            .collect();
        let a = MemoryConsumer::new("join a").register(&pools[0]);
        let b = MemoryConsumer::new("join b").register(&pools[1]);
        a.try_grow(900).unwrap();
        let refused = b.try_grow(700).unwrap_err().to_string();
        assert!(refused.contains("allows them together"), "{refused}");
        assert_eq!(pools[1].reserved(), 0, "a refused request holds nothing");
        b.try_grow(600).unwrap();
        assert_eq!(shared.used(), 1500);
        drop(a);
        assert_eq!(shared.used(), 600, "a finished query gives its memory back");
        b.try_grow(400).unwrap();
    }
}
