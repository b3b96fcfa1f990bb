//! A controller's work queue of keys (`namespace/name`), with the guarantees controllers rely on:
//!
//! - a key is queued at most once however often it is added (changes coalesce);
//! - a key is never handed to two workers at once: added while being reconciled, it comes back after;
//! - failures back off per key, doubling from 5 ms to 1,000 s, with jitter; success resets the count;
//! - keys can be added after a delay (requeue, periodic resync).
//!
//! Workers (`run_workers`) reconcile keys with bounded concurrency until shutdown.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The first retry delay after a failure.
pub const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest retry delay.
pub const MAX_DELAY: Duration = Duration::from_secs(1000);

#[derive(Default)]
struct Inner {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
    delayed: BinaryHeap<Reverse<(Instant, u64, String)>>,
    sequence: u64,
}

/// The queue. Share it (`Arc`) between the handlers that add keys and the workers.
#[derive(Default)]
pub struct WorkQueue {
    inner: Mutex<Inner>,
    ready: Notify,
}

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> Arc<WorkQueue> {
        Arc::new(WorkQueue::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a key (once, however often it is added before a worker takes it).
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut inner = self.lock();
        if !inner.dirty.insert(key.clone()) {
            return;
        }
        if !inner.processing.contains(&key) {
            inner.queue.push_back(key);
            drop(inner);
            self.ready.notify_one();
        }
    }

    /// Queues a key after `delay`.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let mut inner = self.lock();
        inner.sequence += 1;
        let sequence = inner.sequence;
        inner.delayed.push(Reverse((Instant::now() + delay, sequence, key.into())));
        drop(inner);
        // A worker waiting for the next delayed key may need to wake earlier.
        self.ready.notify_one();
    }

    /// Queues a key after a failure, backing off per key.
    pub fn add_rate_limited(&self, key: impl Into<String>) {
        let key = key.into();
        let failures = {
            let mut inner = self.lock();
            let count = inner.failures.entry(key.clone()).or_insert(0);
            *count += 1;
            *count
        };
        self.add_after(key, backoff(failures));
    }

    /// Forgets a key's failures (it was reconciled).
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// How often a key has failed in a row.
    pub fn failures(&self, key: &str) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Keys waiting (not counting delayed ones or those being reconciled).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next key to reconcile; `None` on shutdown. Call [`WorkQueue::done`] with it afterwards.
    pub async fn get(&self, shutdown: &CancellationToken) -> Option<String> {
        loop {
            let notified = self.ready.notified();
            let wake_at = {
                let mut inner = self.lock();
                let now = Instant::now();
                while inner.delayed.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                    if let Some(Reverse((_, _, key))) = inner.delayed.pop()
                        && inner.dirty.insert(key.clone())
                        && !inner.processing.contains(&key)
                    {
                        inner.queue.push_back(key);
                    }
                }
                if let Some(key) = inner.queue.pop_front() {
                    inner.dirty.remove(&key);
                    inner.processing.insert(key.clone());
                    // Others may be waiting for more keys.
                    if !inner.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return Some(key);
                }
                inner.delayed.peek().map(|Reverse((at, _, _))| *at)
            };
            let sleep = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = notified => {}
                _ = sleep => {}
            }
        }
    }

    /// Marks a key reconciled; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &str) {
        let mut inner = self.lock();
        inner.processing.remove(key);
        if inner.dirty.contains(key) {
            inner.queue.push_back(key.to_string());
            drop(inner);
            self.ready.notify_one();
        }
    }
}

/// The delay before retry number `failures` (1-based): 5 ms doubling, at most 1,000 s, plus up to 10% jitter
/// so that keys failing together do not retry together.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let delay = BASE_DELAY.saturating_mul(1u32 << exponent).min(MAX_DELAY);
    let jitter = delay.mul_f64(rand::random_range(0.0..0.1));
    delay + jitter
}

/// What a reconcile asks of the queue when it succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Nothing more to do until something changes.
    No,
    /// Look again after this long (a deadline to check, a periodic resync).
    After(Duration),
}

/// Runs `workers` workers reconciling keys from `queue` until `shutdown`. A failed reconcile is retried with
/// backoff; a successful one resets the key's backoff.
pub async fn run_workers<F, Fut, E>(
    name: &'static str,
    queue: Arc<WorkQueue>,
    workers: usize,
    shutdown: CancellationToken,
    reconcile: F,
) where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Requeue, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (queue, shutdown, reconcile) = (Arc::clone(&queue), shutdown.clone(), reconcile.clone());
        tasks.spawn(async move {
            while let Some(key) = queue.get(&shutdown).await {
                let span = tracing::debug_span!("reconcile", controller = name, key = %key);
                match reconcile(key.clone()).instrument(span).await {
                    Ok(Requeue::No) => queue.forget(&key),
                    Ok(Requeue::After(delay)) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), delay);
                    }
                    Err(err) => {
                        tracing::debug!(controller = name, key = %key, error = %err, "reconcile failed; retrying");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_key_added_twice_is_handed_out_once() {
        let queue = WorkQueue::new();
        let shutdown = CancellationToken::new();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.get(&shutdown).await.as_deref(), Some("a"));
        assert_eq!(queue.get(&shutdown).await.as_deref(), Some("b"));
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_being_reconciled_comes_back_after_done() {
        let queue = WorkQueue::new();
        let shutdown = CancellationToken::new();
        queue.add("a");
        let key = queue.get(&shutdown).await.unwrap();
        queue.add("a");
        assert!(queue.is_empty(), "not handed to a second worker meanwhile");
        queue.done(&key);
        assert_eq!(queue.get(&shutdown).await.as_deref(), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_arrive_when_due() {
        let queue = WorkQueue::new();
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        queue.add_after("late", Duration::from_secs(5));
        queue.add_after("early", Duration::from_secs(1));
        assert_eq!(queue.get(&shutdown).await.as_deref(), Some("early"));
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(queue.get(&shutdown).await.as_deref(), Some("late"));
        assert!(start.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test]
    async fn shutdown_ends_a_waiting_get() {
        let queue = WorkQueue::new();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert_eq!(queue.get(&shutdown).await, None);
    }

    #[test]
    fn backoff_doubles_from_five_milliseconds_up_to_the_cap() {
        assert!(backoff(1) >= Duration::from_millis(5) && backoff(1) < Duration::from_micros(5500));
        assert!(backoff(3) >= Duration::from_millis(20) && backoff(3) < Duration::from_millis(22));
        assert!(backoff(40) >= MAX_DELAY && backoff(40) <= MAX_DELAY.mul_f64(1.1));
    }

    #[test]
    fn failures_count_until_forgotten() {
        let queue = WorkQueue::new();
        queue.add_rate_limited("a");
        queue.add_rate_limited("a");
        assert_eq!(queue.failures("a"), 2);
        queue.forget("a");
        assert_eq!(queue.failures("a"), 0);
    }
}
