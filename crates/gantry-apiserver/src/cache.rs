//! The watch cache: every object of every resource in memory, plus a window of recent events per resource.
//!
//! One store watch over `/registry/` feeds all resources, so the cache's revision follows the store's global
//! revision exactly: a consistent read waits until the cache has applied the store's current revision and is
//! then served from memory. LIST and WATCH never touch the store except for paging at an exact older
//! revision.
//!
//! Consistency: each resource's state is changed under its own write lock, and the global `applied` revision
//! is advanced while that lock is held. A reader holding a resource's read lock therefore sees exactly the
//! state of that resource at revision `applied`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use gantry_store::{EventKind, ListOptions, Revision, Store, StoreError};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::status::ApiError;

/// How many events each resource keeps for watchers that resume from an older resourceVersion.
pub const DEFAULT_WINDOW: usize = 10_000;

/// One object as cached: parsed, and serialized with its resourceVersion.
#[derive(Debug)]
pub struct Entry {
    /// The storage key.
    pub key: String,
    /// The namespace, for namespaced resources.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
    /// The object, with `metadata.resourceVersion` set.
    pub value: Value,
    /// `value` serialized as JSON.
    pub json: Bytes,
    /// The revision of the object's last change (its resourceVersion).
    pub revision: Revision,
}

impl Entry {
    fn from_stored(key: &str, raw: &[u8], revision: Revision) -> Option<Entry> {
        let mut value: Value = serde_json::from_slice(raw).ok()?;
        let meta = value.get_mut("metadata")?.as_object_mut()?;
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
        let json = match splice_resource_version(raw, revision) {
            Some(json) => json,
            None => Bytes::from(serde_json::to_vec(&value).ok()?),
        };
        let (namespace, name) = split_key(key)?;
        Some(Entry { key: key.to_string(), namespace, name, value, json, revision })
    }

    /// The object's labels.
    pub fn labels(&self) -> Option<&serde_json::Map<String, Value>> {
        self.value.get("metadata")?.get("labels")?.as_object()
    }
}

/// The stored bytes with `"resourceVersion":"N"` added at the start of the top-level `metadata`: the same JSON
/// as serializing the parsed object with the field set, without paying for a second serialization of every
/// object the cache takes in. `None` when the bytes do not have the expected shape.
pub(crate) fn splice_resource_version(raw: &[u8], revision: Revision) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        metadata: &'a serde_json::value::RawValue,
    }
    let top: Top<'_> = serde_json::from_slice(raw).ok()?;
    let meta = top.metadata.get().as_bytes();
    let start = (meta.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    if meta.first() != Some(&b'{') || start + meta.len() > raw.len() {
        return None;
    }
    let empty = meta[1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let field = format!("\"resourceVersion\":\"{revision}\"{}", if empty { "" } else { "," });
    let mut out = Vec::with_capacity(raw.len() + field.len());
    out.extend_from_slice(&raw[..=start]);
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(&raw[start + 1..]);
    Some(Bytes::from(out))
}

/// The kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The name in a watch stream.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// The object after the change; for deletes, its last state with the delete's resourceVersion.
    pub object: Arc<Entry>,
    /// The object before the change (updates and deletes).
    pub prev: Option<Arc<Entry>>,
    /// The revision of the change.
    pub revision: Revision,
}

#[derive(Default)]
struct ResourceState {
    objects: BTreeMap<String, Arc<Entry>>,
    window: VecDeque<Arc<Event>>,
    /// Every event after this revision is in `window`.
    complete_from: Revision,
    /// Bumped when the state is rebuilt from a fresh list; watchers of an older generation must stop.
    generation: u64,
}

/// The cached state of one resource (one storage prefix such as `/registry/apps/deployments/`).
pub struct ResourceCache {
    state: RwLock<ResourceState>,
    changed: watch::Sender<Revision>,
    window_size: usize,
}

/// A consistent copy of a resource's objects, at one revision.
pub struct Snapshot {
    /// The objects, in key order.
    pub objects: Vec<Arc<Entry>>,
    /// The revision the snapshot shows.
    pub revision: Revision,
}

/// What a watcher gets when it asks for events after a revision.
pub enum Catchup {
    /// Events after the requested revision, and the revision they bring the watcher to.
    Events(Vec<Arc<Event>>, Revision),
    /// The requested revision is older than the window: the watcher must re-list.
    TooOld {
        /// The oldest revision a watch can start from.
        oldest: Revision,
    },
    /// The cache was rebuilt after the store watch failed; watchers must start again.
    Restarted,
}

impl ResourceCache {
    fn new(window_size: usize) -> ResourceCache {
        ResourceCache { state: RwLock::default(), changed: watch::channel(0).0, window_size }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ResourceState> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ResourceState> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The objects under `prefix` (a namespace prefix or the whole resource) at the cache's current revision.
    pub fn snapshot(&self, prefix: &str, applied: &AtomicI64) -> Snapshot {
        let state = self.read();
        let revision = applied.load(Ordering::Acquire);
        let objects = state.objects.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix));
        Snapshot { objects: objects.map(|(_, v)| Arc::clone(v)).collect(), revision }
    }

    /// One object, and the revision the cache shows.
    pub fn get(&self, key: &str, applied: &AtomicI64) -> (Option<Arc<Entry>>, Revision) {
        let state = self.read();
        (state.objects.get(key).cloned(), applied.load(Ordering::Acquire))
    }

    /// The number of objects under `prefix` after `after` (used for `remainingItemCount`).
    pub fn count_after(&self, prefix: &str, after: &str) -> usize {
        let state = self.read();
        state
            .objects
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }

    /// Events after `from` (exclusive), for a watcher of cache generation `generation`.
    pub fn events_after(&self, from: Revision, generation: u64, applied: &AtomicI64) -> Catchup {
        let state = self.read();
        if state.generation != generation {
            return Catchup::Restarted;
        }
        let now = applied.load(Ordering::Acquire);
        if from < state.complete_from {
            return Catchup::TooOld { oldest: state.complete_from };
        }
        let start = state.window.partition_point(|e| e.revision <= from);
        let events = state.window.range(start..).cloned().collect();
        Catchup::Events(events, now.max(from))
    }

    /// The current snapshot together with the cache generation, for watchers that start with the full state.
    pub fn snapshot_for_watch(&self, prefix: &str, applied: &AtomicI64) -> (Snapshot, u64) {
        let state = self.read();
        let revision = applied.load(Ordering::Acquire);
        let objects = state.objects.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix));
        (Snapshot { objects: objects.map(|(_, v)| Arc::clone(v)).collect(), revision }, state.generation)
    }

    /// The current cache generation.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// A receiver that wakes whenever this resource changes.
    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.changed.subscribe()
    }

    fn apply(&self, event: Event, applied: &AtomicI64) {
        let revision = event.revision;
        {
            let mut state = self.write();
            match event.kind {
                EventType::Deleted => {
                    state.objects.remove(&event.object.key);
                }
                _ => {
                    state.objects.insert(event.object.key.clone(), Arc::clone(&event.object));
                }
            }
            state.window.push_back(Arc::new(event));
            while state.window.len() > self.window_size {
                if let Some(old) = state.window.pop_front() {
                    state.complete_from = old.revision;
                }
            }
            applied.store(revision, Ordering::Release);
        }
        self.changed.send_replace(revision);
    }

    fn reset(&self, objects: BTreeMap<String, Arc<Entry>>, revision: Revision) {
        {
            let mut state = self.write();
            state.objects = objects;
            state.window.clear();
            state.complete_from = revision;
            state.generation += 1;
        }
        self.changed.send_replace(revision);
    }
}

/// Splits `/registry/<group>/<resource>/[<namespace>/]<name>` into namespace and name.
fn split_key(key: &str) -> Option<(Option<String>, String)> {
    let rest = key.strip_prefix("/registry/")?;
    let mut parts = rest.splitn(4, '/');
    let (_group, _resource) = (parts.next()?, parts.next()?);
    match (parts.next(), parts.next()) {
        (Some(ns), Some(name)) => Some((Some(ns.to_string()), name.to_string())),
        (Some(name), None) => Some((None, name.to_string())),
        _ => None,
    }
}

/// The storage prefix a key belongs to: `/registry/<group>/<resource>/`.
fn resource_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("/registry/")?;
    let group_end = rest.find('/')?;
    let resource_end = rest[group_end + 1..].find('/')? + group_end + 1;
    Some(&key[.."/registry/".len() + resource_end + 1])
}

/// The cache of every resource, kept current by one store watch.
pub struct WatchCache {
    resources: RwLock<HashMap<String, Arc<ResourceCache>>>,
    applied: AtomicI64,
    progress: watch::Sender<Revision>,
    window_size: usize,
}

impl WatchCache {
    /// An empty cache; [`WatchCache::run`] fills it and keeps it current.
    pub fn new(window_size: usize) -> Arc<WatchCache> {
        Arc::new(WatchCache {
            resources: RwLock::default(),
            applied: AtomicI64::new(0),
            progress: watch::channel(0).0,
            window_size,
        })
    }

    /// The revision the cache has applied.
    pub fn revision(&self) -> Revision {
        self.applied.load(Ordering::Acquire)
    }

    /// The global applied revision, for reads of [`ResourceCache`].
    pub fn applied(&self) -> &AtomicI64 {
        &self.applied
    }

    /// The cache for a storage prefix, created empty if nothing was ever stored there.
    pub fn resource(&self, prefix: &str) -> Arc<ResourceCache> {
        if let Some(cache) = self.resources.read().unwrap_or_else(|p| p.into_inner()).get(prefix) {
            return Arc::clone(cache);
        }
        let mut resources = self.resources.write().unwrap_or_else(|p| p.into_inner());
        let cache = resources.entry(prefix.to_string()).or_insert_with(|| {
            let cache = ResourceCache::new(self.window_size);
            // A resource first seen now has no history before the current revision.
            cache.write().complete_from = self.applied.load(Ordering::Acquire);
            Arc::new(cache)
        });
        Arc::clone(cache)
    }

    /// Waits until the cache has applied `revision`, at most `patience`.
    pub async fn wait_for(&self, revision: Revision, patience: Duration) -> Result<(), ApiError> {
        let mut rx = self.progress.subscribe();
        let reached = tokio::time::timeout(patience, rx.wait_for(|r| *r >= revision)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::timeout(format!(
                "Too large resource version: {revision}, current: {}",
                self.applied.load(Ordering::Acquire)
            ))),
        }
    }

    /// A receiver of the applied revision, for bookmarks.
    pub fn progress(&self) -> watch::Receiver<Revision> {
        self.progress.subscribe()
    }

    /// Loads every object and follows the store until `shutdown`. Restarts from a fresh list when the store
    /// watch fails (e.g. its start revision was compacted).
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        loop {
            let started = tokio::select! {
                _ = shutdown.cancelled() => return,
                started = self.list_and_watch(store.as_ref()) => started,
            };
            let (revision, mut stream) = match started {
                Ok(started) => started,
                Err(err) => {
                    tracing::warn!(error = %err, "watch cache: listing or watching the store failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = stream.next() => match next {
                        // Changes the list already showed (see `list_and_watch`) are skipped.
                        Some(Ok(event)) if event.revision() <= revision => {}
                        Some(Ok(event)) => self.apply_store_event(event),
                        Some(Err(err)) => {
                            tracing::warn!(error = %err, "watch cache: store watch ended; re-listing");
                            break;
                        }
                        None => {
                            tracing::warn!("watch cache: store watch closed; re-listing");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Lists everything and opens the store watch that continues from the list, with no gap between them.
    async fn list_and_watch(&self, store: &dyn Store) -> Result<(Revision, gantry_store::WatchStream), StoreError> {
        // A watch "after revision R" cannot name R = 0 (0 means "after the current revision"), so on an empty
        // store the watch is opened first and the list follows; the list shows every change the watch
        // delivers up to its revision, and those are skipped.
        if store.current_revision().await? == 0 {
            let stream = store.watch(b"/registry/", 0).await?;
            let revision = self.load(store).await?;
            return Ok((revision, stream));
        }
        let revision = self.load(store).await?;
        let stream = store.watch(b"/registry/", revision).await?;
        Ok((revision, stream))
    }

    async fn load(&self, store: &dyn Store) -> Result<Revision, StoreError> {
        let mut by_resource: HashMap<String, BTreeMap<String, Arc<Entry>>> = HashMap::new();
        let mut options = ListOptions { revision: None, limit: Some(5_000), continue_from: None };
        let revision = loop {
            let page = store.list(b"/registry/", options.clone()).await?;
            for kv in &page.items {
                let Ok(key) = std::str::from_utf8(&kv.key) else { continue };
                let Some(prefix) = resource_prefix(key) else { continue };
                match Entry::from_stored(key, &kv.value, kv.mod_revision) {
                    Some(entry) => {
                        by_resource.entry(prefix.to_string()).or_default().insert(key.to_string(), Arc::new(entry));
                    }
                    None => tracing::warn!(key, "watch cache: skipping an object that is not valid JSON"),
                }
            }
            match page.continue_from {
                Some(next) => {
                    options =
                        ListOptions { revision: Some(page.revision), limit: options.limit, continue_from: Some(next) }
                }
                None => break page.revision,
            }
        };
        let existing: Vec<String> = self.resources.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        for prefix in existing {
            let objects = by_resource.remove(&prefix).unwrap_or_default();
            self.resource(&prefix).reset(objects, revision);
        }
        for (prefix, objects) in by_resource {
            self.resource(&prefix).reset(objects, revision);
        }
        self.applied.store(revision, Ordering::Release);
        self.progress.send_replace(revision);
        Ok(revision)
    }

    fn apply_store_event(&self, event: gantry_store::WatchEvent) {
        let revision = event.revision();
        let Ok(key) = std::str::from_utf8(&event.kv.key) else { return };
        let Some(prefix) = resource_prefix(key) else {
            self.advance(revision);
            return;
        };
        // The previous version is the one the cache holds: reuse it rather than parse the store's copy again
        // (most events are updates, and parsing is most of what an event costs here).
        let cached = self.resource(prefix).read().objects.get(key).cloned();
        let prev = match (&event.prev, cached) {
            (Some(p), Some(cached)) if cached.revision == p.mod_revision => Some(cached),
            (Some(p), _) => Entry::from_stored(key, &p.value, p.mod_revision).map(Arc::new),
            (None, _) => None,
        };
        let (kind, object) = match event.kind {
            EventKind::Create => (EventType::Added, Entry::from_stored(key, &event.kv.value, revision)),
            EventKind::Update => (EventType::Modified, Entry::from_stored(key, &event.kv.value, revision)),
            EventKind::Delete => {
                (EventType::Deleted, event.prev.as_ref().and_then(|p| Entry::from_stored(key, &p.value, revision)))
            }
        };
        let Some(object) = object else {
            tracing::warn!(key, revision, "watch cache: skipping an event whose object is not valid JSON");
            self.advance(revision);
            return;
        };
        self.resource(prefix).apply(Event { kind, object: Arc::new(object), prev, revision }, &self.applied);
        self.progress.send_replace(revision);
    }

    fn advance(&self, revision: Revision) {
        self.applied.store(revision, Ordering::Release);
        self.progress.send_replace(revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_version_is_spliced_into_metadata() {
        let raw = br#"{"apiVersion":"v1","data":{"metadata":"x"},"kind":"ConfigMap","metadata":{"name":"a"}}"#;
        let out = splice_resource_version(raw, 42).unwrap();
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["metadata"]["resourceVersion"], "42");
        assert_eq!(parsed["metadata"]["name"], "a");
        assert_eq!(parsed["data"]["metadata"], "x");
        let empty = splice_resource_version(br#"{"metadata": { }}"#, 7).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&empty).unwrap()["metadata"]["resourceVersion"], "7");
        assert!(splice_resource_version(br#"{"metadata":[]}"#, 1).is_none());
    }

    #[test]
    fn keys_split_into_namespace_and_name() {
        assert_eq!(split_key("/registry/core/pods/default/web"), Some((Some("default".into()), "web".into())));
        assert_eq!(split_key("/registry/core/nodes/n1"), Some((None, "n1".into())));
        assert_eq!(resource_prefix("/registry/apps/deployments/default/web"), Some("/registry/apps/deployments/"));
        assert_eq!(resource_prefix("/registry/core/nodes/n1"), Some("/registry/core/nodes/"));
        assert_eq!(resource_prefix("/other/x"), None);
    }
}
