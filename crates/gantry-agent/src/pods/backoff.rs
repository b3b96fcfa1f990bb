//! Restart and pull back-off, as the kubelet keeps it: per key, the delay starts at 10 s and doubles up to
//! 5 min; an entry left alone for twice the maximum (10 min) starts over.
//!
//! Times are the events' own (a container's finish, a failed pull), so that a crash detected late still waits
//! only what is left of its delay.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The kubelet's first restart delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The kubelet's longest restart delay.
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug)]
struct Entry {
    delay: Duration,
    last_update: Instant,
}

/// Back-off delays by key.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(INITIAL, MAX)
    }
}

impl Backoff {
    /// Delays from `initial` doubling to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, entries: HashMap::new() }
    }

    /// The current delay for `key`, if it has one.
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// How long is left of `key`'s delay counted from `event`, or `None` when it is not backing off.
    pub fn remaining(&self, key: &str, event: Instant, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        let elapsed = now.saturating_duration_since(event);
        (elapsed < entry.delay).then(|| entry.delay - elapsed)
    }

    /// Records another failure of `key` at `event`: the first sets the initial delay, each next one doubles it,
    /// and one that comes long after the last starts over.
    pub fn next(&mut self, key: &str, event: Instant) {
        let (initial, max) = (self.initial, self.max);
        let entry = self.entries.entry(key.to_string()).or_insert(Entry { delay: Duration::ZERO, last_update: event });
        let expired = event.saturating_duration_since(entry.last_update) > max * 2;
        entry.delay = if entry.delay.is_zero() || expired { initial } else { (entry.delay * 2).min(max) };
        entry.last_update = event;
    }

    /// Forgets `key`.
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Forgets every key with the given prefix (a pod's containers when the pod goes).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_ten_seconds_to_five_minutes() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        let mut seen = Vec::new();
        for i in 0..8 {
            backoff.next("c", start + Duration::from_secs(i));
            seen.push(backoff.delay("c").expect("delay").as_secs());
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn the_remaining_delay_counts_from_the_event() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        assert_eq!(backoff.remaining("c", start, start), None, "no entry, no back-off");
        backoff.next("c", start);
        assert_eq!(backoff.remaining("c", start, start + Duration::from_secs(4)), Some(Duration::from_secs(6)));
        assert_eq!(backoff.remaining("c", start, start + Duration::from_secs(10)), None);
    }

    #[test]
    fn a_failure_long_after_the_last_starts_over() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        for i in 0..4 {
            backoff.next("c", start + Duration::from_secs(i));
        }
        assert_eq!(backoff.delay("c"), Some(Duration::from_secs(80)));
        backoff.next("c", start + Duration::from_secs(3 + 601));
        assert_eq!(backoff.delay("c"), Some(INITIAL));
    }

    #[test]
    fn keys_are_forgotten_by_prefix() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        backoff.next("pod-a/c1", now);
        backoff.next("pod-b/c1", now);
        backoff.forget_prefix("pod-a/");
        assert_eq!((backoff.delay("pod-a/c1"), backoff.delay("pod-b/c1")), (None, Some(INITIAL)));
    }
}
