//! The Store: Gantry's key-value storage with etcd semantics.
//!
//! Only the API server talks to the store; everything else reaches data through the Kubernetes API. The store
//! knows nothing about Kubernetes beyond keys and bytes: keys are arbitrary byte strings
//! (`/registry/<group>/<resource>/<namespace>/<name>` by convention), values are opaque bytes.
//!
//! # Invariants every backend keeps
//! - One global revision counter. Every successful write (create, update, delete) gets the next revision; a
//!   failed write consumes none. Revisions are never reused, not even after compaction or a restart.
//! - Each key carries the revision that created it and the revision that last modified it. `update` and
//!   `delete` can be guarded by the modification revision (compare-and-swap).
//! - A watch delivers every change after its start revision, in revision order, with none missed and none
//!   duplicated, carrying the previous value on updates and deletes. If the history it needs is gone, it fails
//!   with [`StoreError::Compacted`] and the caller re-lists.
//! - A slow watcher never blocks writers or other watchers: buffers are bounded, and a watcher that falls behind
//!   catches up from stored history; one that falls behind the compaction point ends with `Compacted`.
//!
//! # Backends
//! - [`sqlite::SqliteStore`]: embedded, the default. A log-structured table (one row per revision) with group
//!   commit and automatic compaction.
//! - [`etcd::EtcdStore`]: a real etcd v3 cluster, for users who outgrow one machine.
//!
//! [`testing`] holds the conformance suite that every backend passes, and helpers that start real etcd members.

mod error;
pub mod etcd;
mod keys;
pub mod sqlite;
pub mod testing;

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use error::{Result, StoreError};
pub use keys::{display_key, prefix_end};

/// A store revision. Positive; `0` means "none" or "the latest", depending on where it is passed.
pub type Revision = i64;

/// A key with its value and the revisions that created and last modified it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// The value (empty in the key-value of a delete event).
    pub value: Bytes,
    /// The revision at which the key was created (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last change to the key.
    pub mod_revision: Revision,
}

impl std::fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &display_key(&self.key))
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key came into existence.
    Create,
    /// An existing key got a new value.
    Update,
    /// The key was deleted.
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// What happened.
    pub kind: EventKind,
    /// The key after the change. For a delete: the key, an empty value, the deleted key's create revision, and
    /// the delete's revision as `mod_revision`.
    pub kv: KeyValue,
    /// The key's value before the change: `None` for creates; the last value for updates and deletes.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events. It ends after yielding an error (for example [`StoreError::Compacted`]); it does
/// not end on its own otherwise, except when the store shuts down (which yields [`StoreError::Unavailable`]).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// How to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read the state as of this revision; `None` reads the latest state.
    pub revision: Option<Revision>,
    /// At most this many items; `None` or `Some(0)` for all.
    pub limit: Option<usize>,
    /// Where to resume: the `continue_from` of the previous page. Pass the previous page's `revision` too, so
    /// that every page shows the same moment.
    pub continue_from: Option<Bytes>,
}

/// One page of a list: a consistent view at `revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// Key-values in key order.
    pub items: Vec<KeyValue>,
    /// The revision this page shows.
    pub revision: Revision,
    /// When more keys follow: where the next page starts.
    pub continue_from: Option<Bytes>,
}

/// The result of a successful delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The revision of the delete.
    pub revision: Revision,
    /// The key-value as it was just before the delete.
    pub prev: KeyValue,
}

/// Storage with etcd semantics. See the crate documentation for the invariants.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest revision of the store.
    async fn current_revision(&self) -> Result<Revision>;

    /// The current value of `key`, or [`StoreError::NotFound`].
    async fn get(&self, key: &[u8]) -> Result<KeyValue>;

    /// The keys that start with `prefix`, in key order, as one consistent page at one revision.
    async fn list(&self, prefix: &[u8], options: ListOptions) -> Result<ListPage>;

    /// How many keys currently start with `prefix`.
    async fn count(&self, prefix: &[u8]) -> Result<u64>;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists. Returns the revision of the create.
    async fn create(&self, key: &[u8], value: Bytes) -> Result<Revision>;

    /// Replaces the value of `key` if its modification revision is `expected`. Fails with
    /// [`StoreError::Conflict`] (carrying the current revision) if it is not, and [`StoreError::NotFound`] if the
    /// key does not exist. Returns the revision of the update.
    async fn update(&self, key: &[u8], value: Bytes, expected: Revision) -> Result<Revision>;

    /// Deletes `key`, if given only when its modification revision is `expected`.
    async fn delete(&self, key: &[u8], expected: Option<Revision>) -> Result<Deleted>;

    /// Every change to keys starting with `prefix` after `from_revision` (`0`: after the current revision), in
    /// revision order. Fails with [`StoreError::Compacted`] when that history is gone.
    async fn watch(&self, prefix: &[u8], from_revision: Revision) -> Result<WatchStream>;

    /// Discards the history at and before `revision`: reads and watches at older revisions fail with
    /// [`StoreError::Compacted`]. The latest value of every key survives. Compacting to a revision at or before
    /// the current compaction point does nothing.
    async fn compact(&self, revision: Revision) -> Result<()>;
}

/// Conditions `guaranteed_update` checks before it writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The key's modification revision must be this one; a different one fails with [`StoreError::Conflict`]
    /// without retrying (the caller's view is stale, as with a `resourceVersion` precondition).
    pub mod_revision: Option<Revision>,
    /// When the key does not exist, call the closure with `None` and create the key from its result instead of
    /// failing with [`StoreError::NotFound`].
    pub create_if_missing: bool,
}

/// The outcome of `guaranteed_update`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Updated {
    /// The key-value as it now is.
    pub kv: KeyValue,
    /// False when the closure returned the current bytes and nothing was written.
    pub written: bool,
}

/// Operations built on top of [`Store`], available on every store.
pub trait StoreExt: Store {
    /// Reads `key`, asks `try_update` for its new value and writes it with compare-and-swap, retrying from a
    /// fresh read on conflict until the write goes through. When the closure returns the bytes already stored,
    /// nothing is written. The closure may be called several times and must be a pure function of its input.
    fn guaranteed_update<F, E>(
        &self,
        key: &[u8],
        preconditions: Preconditions,
        try_update: F,
    ) -> impl Future<Output = std::result::Result<Updated, E>> + Send
    where
        F: FnMut(Option<&KeyValue>) -> std::result::Result<Bytes, E> + Send,
        E: From<StoreError> + Send,
    {
        guaranteed_update(self, key, preconditions, try_update)
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

async fn guaranteed_update<S, F, E>(
    store: &S,
    key: &[u8],
    preconditions: Preconditions,
    mut try_update: F,
) -> std::result::Result<Updated, E>
where
    S: Store + ?Sized,
    F: FnMut(Option<&KeyValue>) -> std::result::Result<Bytes, E> + Send,
    E: From<StoreError> + Send,
{
    loop {
        let current = match store.get(key).await {
            Ok(kv) => Some(kv),
            Err(StoreError::NotFound { .. }) if preconditions.create_if_missing => None,
            Err(err) => return Err(err.into()),
        };
        if let (Some(expected), Some(kv)) = (preconditions.mod_revision, &current)
            && kv.mod_revision != expected
        {
            return Err(StoreError::Conflict { key: key.to_vec(), expected, current: kv.mod_revision }.into());
        }
        let new_value = try_update(current.as_ref())?;
        let result = match &current {
            Some(kv) if kv.value == new_value => {
                return Ok(Updated { kv: kv.clone(), written: false });
            }
            Some(kv) => store.update(key, new_value.clone(), kv.mod_revision).await.map(|rev| KeyValue {
                key: kv.key.clone(),
                value: new_value,
                create_revision: kv.create_revision,
                mod_revision: rev,
            }),
            None => store.create(key, new_value.clone()).await.map(|rev| KeyValue {
                key: Bytes::copy_from_slice(key),
                value: new_value,
                create_revision: rev,
                mod_revision: rev,
            }),
        };
        match result {
            Ok(kv) => return Ok(Updated { kv, written: true }),
            // Someone else wrote in between: read again and let the closure decide on the new state. A
            // precondition on the revision cannot hold any more, so it fails on the next round.
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => continue,
            Err(StoreError::NotFound { .. }) if preconditions.create_if_missing => continue,
            Err(err) => return Err(err.into()),
        }
    }
}
