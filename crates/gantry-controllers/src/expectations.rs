//! Expectations: what a controller has asked the API for and not yet seen in its informer, so that a
//! reconcile running before the watch catches up does not create (or delete) the same pods twice.
//!
//! A controller that creates 3 pods for a ReplicaSet records 3 expected additions under the ReplicaSet's key;
//! each pod the informer shows lowers the count, and so does each create that failed. Until the counts reach
//! zero the controller does not act on its (stale) view. Expectations expire after 5 minutes, in case an
//! event was missed.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long expectations hold before the controller acts anyway.
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expectation {
    adds: i64,
    deletes: i64,
    set_at: Instant,
}

/// Expectations by controller key (`namespace/name` of the owner).
#[derive(Debug, Default)]
pub struct Expectations {
    by_key: Mutex<HashMap<String, Expectation>>,
}

impl Expectations {
    /// No expectations.
    pub fn new() -> Expectations {
        Expectations::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Expectation>> {
        self.by_key.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the informer has shown everything asked for (or nothing was, or it was asked too long ago).
    pub fn satisfied(&self, key: &str) -> bool {
        self.lock().get(key).is_none_or(|e| (e.adds <= 0 && e.deletes <= 0) || e.set_at.elapsed() > EXPECTATIONS_TTL)
    }

    /// Records that `adds` creations and `deletes` deletions are about to be asked for.
    pub fn expect(&self, key: &str, adds: i64, deletes: i64) {
        self.lock().insert(key.to_string(), Expectation { adds, deletes, set_at: Instant::now() });
    }

    /// The informer showed a creation (or a create failed, so none will show).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// The informer showed a deletion (or a delete failed).
    pub fn deletion_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.deletes -= 1;
        }
    }

    /// Drops a key's expectations (its owner is gone).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_hold_until_every_creation_and_deletion_is_observed() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/rs"), "nothing expected");
        e.expect("ns/rs", 2, 1);
        e.creation_observed("ns/rs");
        e.deletion_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        e.expect("ns/rs", 1, 0);
        e.forget("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn observations_without_expectations_change_nothing() {
        let e = Expectations::new();
        e.creation_observed("ns/other");
        assert!(e.satisfied("ns/other"));
    }
}
