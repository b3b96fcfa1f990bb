//! Shared informers: one watch per kind for the whole controller manager, a store of the objects it shows
//! (indexed by namespace), and handlers that turn changes into work-queue keys.
//!
//! Every controller that cares about pods shares the one pod watch; a handler sees the old and the new
//! object of an update, as controllers need both (a pod whose labels changed may leave one ReplicaSet and
//! join another). After a relist (the watch was interrupted), objects that vanished meanwhile are reported
//! as deleted.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A change an informer saw.
#[derive(Debug)]
pub enum Change<'a, K> {
    /// A new object.
    Added(&'a Arc<K>),
    /// An object changed (or was seen again after a relist).
    Updated {
        /// As it was.
        old: &'a Arc<K>,
        /// As it is.
        new: &'a Arc<K>,
    },
    /// An object is gone.
    Deleted(&'a Arc<K>),
}

type Handler<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;

/// Objects by namespace (`""` for cluster-scoped ones), then by name (hash maps: names of a set's pods share long
/// prefixes, which ordered maps compare again and again).
pub type Objects<K> = HashMap<String, HashMap<String, Arc<K>>>;

type IndexFn<K> = Box<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// Objects by index value, as `(namespace, name)`.
type Index = HashMap<String, HashSet<(String, String)>>;

/// One kind's objects as the watch shows them, secondary indexes over them, and the handlers told of changes.
pub struct Informer<K> {
    objects: RwLock<Store<K>>,
    handlers: Mutex<Vec<Handler<K>>>,
    indexers: RwLock<Vec<(&'static str, IndexFn<K>)>>,
    synced: watch::Sender<bool>,
}

struct Store<K> {
    objects: Objects<K>,
    indexes: HashMap<&'static str, Index>,
}

impl<K> Default for Store<K> {
    fn default() -> Store<K> {
        Store { objects: HashMap::new(), indexes: HashMap::new() }
    }
}

fn namespace_and_name<K: kube::Resource>(object: &K) -> (String, String) {
    let meta = object.meta();
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

impl<K> Informer<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// An informer that has not started.
    pub fn new() -> Arc<Informer<K>> {
        Arc::new(Informer {
            objects: RwLock::default(),
            handlers: Mutex::default(),
            indexers: RwLock::default(),
            synced: watch::Sender::new(false),
        })
    }

    /// Keeps an index of objects by the values `index` gives each (register before starting). Controllers
    /// use it to find, say, the pods a ReplicaSet owns without walking every pod of a namespace.
    pub fn add_index(&self, name: &'static str, index: impl Fn(&K) -> Vec<String> + Send + Sync + 'static) {
        self.indexers.write().unwrap_or_else(PoisonError::into_inner).push((name, Box::new(index)));
    }

    /// The objects whose index `name` gives `value`.
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let store = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        let Some(keys) = store.indexes.get(name).and_then(|index| index.get(value)) else { return Vec::new() };
        keys.iter().filter_map(|(ns, n)| store.objects.get(ns).and_then(|o| o.get(n))).cloned().collect()
    }

    fn unindex(&self, store: &mut Store<K>, object: &K, key: &(String, String)) {
        for (name, index) in self.indexers.read().unwrap_or_else(PoisonError::into_inner).iter() {
            let Some(values) = store.indexes.get_mut(name) else { continue };
            for value in index(object) {
                if let Some(keys) = values.get_mut(&value) {
                    keys.remove(key);
                    if keys.is_empty() {
                        values.remove(&value);
                    }
                }
            }
        }
    }

    fn reindex(&self, store: &mut Store<K>, object: &K, key: &(String, String)) {
        for (name, index) in self.indexers.read().unwrap_or_else(PoisonError::into_inner).iter() {
            let values = store.indexes.entry(name).or_default();
            for value in index(object) {
                values.entry(value).or_default().insert(key.clone());
            }
        }
    }

    /// Calls `handler` on every change from now on (register before starting, to see the initial list).
    pub fn on_change(&self, handler: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.lock().unwrap_or_else(PoisonError::into_inner).push(Box::new(handler));
    }

    /// One object.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let store = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        store.objects.get(namespace).and_then(|objects| objects.get(name)).cloned()
    }

    /// The objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let store = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        store.objects.get(namespace).map(|objects| objects.values().cloned().collect()).unwrap_or_default()
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        let store = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        store.objects.values().flat_map(|objects| objects.values().cloned()).collect()
    }

    /// Whether no object is known.
    pub fn is_empty(&self) -> bool {
        self.objects.read().unwrap_or_else(PoisonError::into_inner).objects.is_empty()
    }

    /// Whether the first list has been seen.
    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first list has been seen (or `shutdown`).
    pub async fn wait_synced(&self, shutdown: &CancellationToken) {
        let mut rx = self.synced.subscribe();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = rx.wait_for(|synced| *synced) => {}
        }
    }

    fn notify(&self, change: &Change<'_, K>) {
        for handler in self.handlers.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            handler(change);
        }
    }

    fn apply(&self, object: K) {
        let key = namespace_and_name(&object);
        let new = Arc::new(object);
        let old = {
            let mut store = self.objects.write().unwrap_or_else(PoisonError::into_inner);
            let old = store.objects.entry(key.0.clone()).or_default().insert(key.1.clone(), Arc::clone(&new));
            if let Some(old) = &old {
                self.unindex(&mut store, old, &key);
            }
            self.reindex(&mut store, &new, &key);
            old
        };
        match old {
            Some(old) => self.notify(&Change::Updated { old: &old, new: &new }),
            None => self.notify(&Change::Added(&new)),
        }
    }

    fn delete(&self, object: &K) {
        let key = namespace_and_name(object);
        let old = {
            let mut store = self.objects.write().unwrap_or_else(PoisonError::into_inner);
            let removed = store.objects.get_mut(&key.0).and_then(|o| o.remove(&key.1));
            if store.objects.get(&key.0).is_some_and(HashMap::is_empty) {
                store.objects.remove(&key.0);
            }
            if let Some(old) = &removed {
                self.unindex(&mut store, old, &key);
            }
            removed
        };
        if let Some(old) = old {
            self.notify(&Change::Deleted(&old));
        }
    }

    /// Follows the kind through `api` until `shutdown`; failures are retried (the watcher relists as needed).
    pub async fn run(self: Arc<Self>, api: Api<K>, shutdown: CancellationToken) {
        let what = std::any::type_name::<K>();
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        // Keys seen during a relist; whatever the store holds beyond them vanished while the watch was down.
        let mut relisted: Option<Vec<(String, String)>> = None;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = stream.next() => match next {
                    Some(Ok(event)) => event,
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, what, "informer: watching failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    None => return,
                },
            };
            match event {
                watcher::Event::Init => relisted = Some(Vec::new()),
                watcher::Event::InitApply(object) => {
                    relisted.get_or_insert_with(Vec::new).push(namespace_and_name(&object));
                    self.apply(object);
                }
                watcher::Event::InitDone => {
                    if let Some(seen) = relisted.take() {
                        let seen: std::collections::HashSet<(String, String)> = seen.into_iter().collect();
                        let gone: Vec<Arc<K>> = self
                            .list()
                            .into_iter()
                            .filter(|o| !seen.contains(&namespace_and_name(o.as_ref())))
                            .collect();
                        for object in gone {
                            self.delete(&object);
                        }
                    }
                    self.synced.send_replace(true);
                }
                watcher::Event::Apply(object) => self.apply(object),
                watcher::Event::Delete(object) => self.delete(&object),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(ns: &str, name: &str, version: &str) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": ns,
            "resourceVersion": version}}))
        .unwrap()
    }

    #[test]
    fn handlers_see_additions_updates_with_the_old_object_and_deletions() {
        let informer = Informer::<Pod>::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        informer.on_change(move |change| {
            let entry = match change {
                Change::Added(p) => format!("added {}", p.metadata.resource_version.as_deref().unwrap()),
                Change::Updated { old, new } => format!(
                    "updated {}->{}",
                    old.metadata.resource_version.as_deref().unwrap(),
                    new.metadata.resource_version.as_deref().unwrap()
                ),
                Change::Deleted(p) => format!("deleted {}", p.metadata.resource_version.as_deref().unwrap()),
            };
            log.lock().unwrap().push(entry);
        });
        informer.apply(pod("a", "p", "1"));
        informer.apply(pod("a", "p", "2"));
        informer.delete(&pod("a", "p", "3"));
        informer.delete(&pod("a", "p", "4"));
        assert_eq!(*seen.lock().unwrap(), vec!["added 1", "updated 1->2", "deleted 2"]);
        assert!(informer.is_empty(), "empty namespaces are dropped");
    }

    #[test]
    fn indexes_follow_updates_and_deletions() {
        let informer = Informer::<Pod>::new();
        informer.add_index("version", |p: &Pod| p.metadata.resource_version.clone().into_iter().collect());
        informer.apply(pod("a", "p1", "1"));
        informer.apply(pod("a", "p2", "1"));
        assert_eq!(informer.by_index("version", "1").len(), 2);
        informer.apply(pod("a", "p1", "2"));
        assert_eq!(informer.by_index("version", "1").len(), 1);
        assert_eq!(informer.by_index("version", "2")[0].metadata.name.as_deref(), Some("p1"));
        informer.delete(&pod("a", "p1", "2"));
        assert!(informer.by_index("version", "2").is_empty());
    }

    #[test]
    fn objects_are_listed_by_namespace() {
        let informer = Informer::<Pod>::new();
        informer.apply(pod("a", "p1", "1"));
        informer.apply(pod("a", "p2", "1"));
        informer.apply(pod("b", "p1", "1"));
        assert_eq!(informer.list_namespace("a").len(), 2);
        assert_eq!(informer.list().len(), 3);
        assert!(informer.get("b", "p1").is_some());
        assert!(informer.get("b", "p2").is_none());
    }
}
