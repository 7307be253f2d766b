//! Request bodies held in memory at once. A body is read whole before its
//! request is answered (a form, an upload's parts); 300 connections each
//! sending 15 MiB and holding back the last bytes took 6.6 GB. The bytes of
//! bodies received and not yet answered come from one budget, one caller at
//! most a quarter of it (the middleware in `tap/bodies.rs` charges them).

use std::collections::HashMap;
use std::sync::Mutex;

/// Bytes of request bodies held, in all and by caller.
pub struct Bodies {
    total: u64,
    per_caller: u64,
    held: Mutex<(u64, HashMap<String, u64>)>,
}

impl Bodies {
    /// At most `total` bytes of bodies at once, a quarter of them one caller's.
    pub fn new(total: u64) -> Bodies {
        Bodies {
            total,
            per_caller: total / 4,
            held: Mutex::new((0, HashMap::new())),
        }
    }

    /// Why `bytes` more of `caller`'s would not fit now, if they would not.
    pub(crate) fn fits(&self, caller: &str, bytes: u64) -> Result<(), String> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        self.check(&held, caller, bytes)
    }

    fn check(
        &self,
        held: &(u64, HashMap<String, u64>),
        caller: &str,
        bytes: u64,
    ) -> Result<(), String> {
        let mine = held.1.get(caller).copied().unwrap_or(0);
        if mine + bytes > self.per_caller {
            return Err(format!(
                "you are sending {} MiB of request bodies at once, the most one caller may; \
                 wait for those to be answered",
                mine >> 20
            ));
        }
        if held.0 + bytes > self.total {
            return Err(
                "the service is receiving as many request bodies as it holds at once; \
                        try again shortly"
                    .into(),
            );
        }
        Ok(())
    }

    /// Takes `bytes` of `caller`'s from the budget, or says why not.
    pub(crate) fn take(&self, caller: &str, bytes: u64) -> Result<(), String> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        self.check(&held, caller, bytes)?;
        held.0 += bytes;
        *held.1.entry(caller.to_string()).or_default() += bytes;
        Ok(())
    }

    pub(crate) fn give_back(&self, caller: &str, bytes: u64) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.0 = held.0.saturating_sub(bytes);
        if let Some(mine) = held.1.get_mut(caller) {
            *mine = mine.saturating_sub(bytes);
            if *mine == 0 {
                held.1.remove(caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_holds_a_quarter_and_all_hold_the_total() {
        let b = Bodies::new(400);
        assert!(b.take("a", 100).is_ok());
        assert!(b.take("a", 1).is_err(), "a caller holds at most a quarter");
        for c in ["b", "c", "d"] {
            assert!(b.take(c, 100).is_ok());
        }
        assert!(b.take("e", 1).is_err(), "the total is held");
        b.give_back("a", 100);
        assert!(b.take("e", 100).is_ok());
    }
}
