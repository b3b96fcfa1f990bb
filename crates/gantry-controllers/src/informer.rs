//! Shared informers: one watch per kind for the whole controller manager, a store of the objects it shows
//! (indexed by namespace), and handlers that turn changes into work-queue keys.
//!
//! Every controller that cares about pods shares the one pod watch; a handler sees the old and the new
//! object of an update, as controllers need both (a pod whose labels changed may leave one ReplicaSet and
//! join another). After a relist (the watch was interrupted), objects that vanished meanwhile are reported
//! as deleted.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
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

/// Objects by namespace (`""` for cluster-scoped ones), then by name.
pub type Objects<K> = HashMap<String, BTreeMap<String, Arc<K>>>;

/// One kind's objects as the watch shows them, and the handlers told of changes.
pub struct Informer<K> {
    objects: RwLock<Objects<K>>,
    handlers: Mutex<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
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
        Arc::new(Informer { objects: RwLock::default(), handlers: Mutex::default(), synced: watch::Sender::new(false) })
    }

    /// Calls `handler` on every change from now on (register before starting, to see the initial list).
    pub fn on_change(&self, handler: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.lock().unwrap_or_else(PoisonError::into_inner).push(Box::new(handler));
    }

    /// The objects, for reading.
    pub fn read(&self) -> RwLockReadGuard<'_, Objects<K>> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// One object.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read().get(namespace).and_then(|objects| objects.get(name)).cloned()
    }

    /// The objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read().get(namespace).map(|objects| objects.values().cloned().collect()).unwrap_or_default()
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().flat_map(|objects| objects.values().cloned()).collect()
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
        let (namespace, name) = namespace_and_name(&object);
        let new = Arc::new(object);
        let old = {
            let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
            objects.entry(namespace).or_default().insert(name, Arc::clone(&new))
        };
        match old {
            Some(old) => self.notify(&Change::Updated { old: &old, new: &new }),
            None => self.notify(&Change::Added(&new)),
        }
    }

    fn delete(&self, object: &K) {
        let (namespace, name) = namespace_and_name(object);
        let old = {
            let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
            let removed = objects.get_mut(&namespace).and_then(|o| o.remove(&name));
            if objects.get(&namespace).is_some_and(BTreeMap::is_empty) {
                objects.remove(&namespace);
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
        assert!(informer.read().is_empty(), "empty namespaces are dropped");
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
