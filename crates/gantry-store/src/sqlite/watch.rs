//! Watches on the SQLite backend.
//!
//! The writer publishes each committed group of events to the [`Hub`], which hands every event to the
//! subscribers whose prefix matches, through bounded queues and without ever waiting. A subscriber whose queue
//! is full is dropped from the hub. Each watch is served by one task that
//! 1. subscribes (learning the hub's revision `head` at that instant),
//! 2. replays the stored history between its cursor and `head` from the database,
//! 3. forwards live events from its subscription,
//!
//! and goes back to 1 from its cursor whenever it was dropped for falling behind. Stored history is the source
//! of truth, so a slow watcher neither blocks the writer nor loses events: it catches up from disk, and only if
//! the history it needs has been compacted does it end, with `Compacted`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Shared;
use crate::{Revision, StoreError, WatchEvent};

/// Events fetched from the database per read while a watcher catches up.
const REPLAY_PAGE: usize = 512;

pub(crate) struct Hub {
    state: Mutex<HubState>,
    compacted: AtomicI64,
    revision: AtomicI64,
}

struct HubState {
    revision: Revision,
    closed: bool,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    prefix: Bytes,
    end: Option<Vec<u8>>,
    queue: mpsc::Sender<WatchEvent>,
}

impl Subscriber {
    fn wants(&self, key: &[u8]) -> bool {
        key.starts_with(&self.prefix) && self.end.as_deref().is_none_or(|end| key < end)
    }
}

impl Hub {
    pub fn new(revision: Revision, compacted: Revision) -> Self {
        Hub {
            state: Mutex::new(HubState { revision, closed: false, subscribers: Vec::new() }),
            compacted: AtomicI64::new(compacted),
            revision: AtomicI64::new(revision),
        }
    }

    /// The revision of the last published (committed) change.
    pub fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    pub fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }

    pub fn set_compacted(&self, revision: Revision) {
        self.compacted.store(revision, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // A panic while holding the lock leaves the subscriber list itself intact, so keep using it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Subscribes to live events after the returned revision. `None` once the store is shut down.
    fn subscribe(&self, prefix: Bytes, capacity: usize) -> Option<(Revision, mpsc::Receiver<WatchEvent>)> {
        let (queue, rx) = mpsc::channel(capacity);
        let end = crate::prefix_end(&prefix);
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.subscribers.push(Subscriber { prefix, end, queue });
        Some((state.revision, rx))
    }

    /// Hands committed events to subscribers. Never waits: a subscriber that cannot take an event is dropped
    /// and catches up from the database.
    pub fn publish(&self, events: &[WatchEvent], revision: Revision) {
        let mut state = self.lock();
        state.subscribers.retain(|sub| {
            for event in events.iter().filter(|e| sub.wants(&e.kv.key)) {
                if sub.queue.try_send(event.clone()).is_err() {
                    return false;
                }
            }
            !sub.queue.is_closed()
        });
        state.revision = revision;
        self.revision.store(revision, Ordering::Release);
    }

    /// Ends every subscription; watchers then end with `Unavailable`.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.subscribers.clear();
    }
}

/// Serves one watch until its consumer goes away, the store shuts down, or its history is compacted.
pub(crate) async fn serve(
    shared: std::sync::Arc<Shared>,
    prefix: Bytes,
    mut cursor: Revision,
    out: mpsc::Sender<Result<WatchEvent, StoreError>>,
) {
    let shutdown = || StoreError::Unavailable { key: prefix.to_vec(), reason: "the store is shutting down".into() };
    loop {
        let Some((head, mut live)) = shared.hub.subscribe(prefix.clone(), shared.watch_buffer) else {
            let _ = out.send(Err(shutdown())).await;
            return;
        };
        // Stored history up to the moment of subscribing; everything after arrives on `live`.
        while cursor < head {
            let page = {
                let prefix = prefix.clone();
                shared.read(move |r| r.events(&prefix, cursor, head, REPLAY_PAGE)).await
            };
            let events = match page {
                Ok(events) => events,
                Err(err) => {
                    let _ = out.send(Err(err)).await;
                    return;
                }
            };
            let complete = events.len() < REPLAY_PAGE;
            for event in events {
                cursor = event.revision();
                if out.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if complete {
                cursor = head;
            }
        }
        loop {
            tokio::select! {
                event = live.recv() => match event {
                    Some(event) => {
                        if event.revision() <= cursor {
                            continue;
                        }
                        cursor = event.revision();
                        if out.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    // Dropped by the hub: either for falling behind (catch up from the database) or because the
                    // store is closing (the next subscribe says so).
                    None => break,
                },
                _ = out.closed() => return,
            }
        }
    }
}
