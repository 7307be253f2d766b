//! How much the state store may hold. Every query leaves a token record, every
//! upload a query read is kept for its replays, and async results wait in the
//! store for days: without a bound, callers could fill the disk the catalog
//! lives on. The count starts from a listing of the store (which also sees
//! what other servers on the same store wrote) and follows this process's
//! writes and deletes until the next listing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The bytes a state store may hold, and what it holds as far as this process knows.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    used: AtomicU64,
    /// When a listing last set `used`.
    counted: Mutex<Option<Instant>>,
}

impl Budget {
    pub(crate) fn new(limit: u64, used: u64) -> Budget {
        Budget {
            limit,
            used: AtomicU64::new(used),
            counted: Mutex::new(None),
        }
    }

    /// Takes `bytes` from the budget, or refuses if they do not fit.
    pub(crate) fn charge(&self, bytes: u64) -> Result<()> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&after| after <= self.limit)
            })
            .map(|_| ())
            .map_err(|_| self.full())
    }

    /// Counts `bytes` written without refusing them (a replacement of something admitted).
    pub(crate) fn count(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_add(bytes))
            });
    }

    /// Gives back what a delete (or an abandoned write) freed.
    pub(crate) fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Refuses when `bytes` more would not fit.
    pub(crate) fn check_room(&self, bytes: u64) -> Result<()> {
        if self.used().saturating_add(bytes) > self.limit {
            Err(self.full())
        } else {
            Ok(())
        }
    }

    /// Replaces the count with a fresh listing's.
    pub(crate) fn set_used(&self, bytes: u64) {
        self.used.store(bytes, Ordering::Release);
        *self.counted.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether the last listing is older than `age` (or there was none).
    pub(crate) fn count_older_than(&self, age: Duration) -> bool {
        self.counted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t.elapsed() > age)
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    fn full(&self) -> Error {
        Error::StateFull {
            limit_mib: self.limit >> 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_the_limit_and_deletes_give_room_back() {
        let b = Budget::new(100, 30);
        assert!(b.charge(70).is_ok());
        assert!(matches!(b.charge(1), Err(Error::StateFull { .. })));
        assert!(b.check_room(0).is_ok(), "full to the byte is not past it");
        assert!(b.check_room(1).is_err());
        b.release(50);
        assert_eq!(b.used(), 50);
        assert!(b.check_room(50).is_ok());
        assert!(b.charge(51).is_err(), "a refused charge takes nothing");
        assert_eq!(b.used(), 50);
        b.release(500);
        assert_eq!(b.used(), 0, "releasing more than was counted stops at zero");
        assert!(b.charge(u64::MAX).is_err(), "no overflow past the limit");
    }
}
