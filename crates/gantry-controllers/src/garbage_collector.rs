//! The garbage collector: deletes objects whose owners are gone, and carries out foreground and orphan
//! deletion, as kube-controller-manager's does.
//!
//! - Every resource type the API serves with `list`, `watch` and `delete` is watched (metadata only),
//!   re-discovered every 30 s; the watches feed one ownerReferences graph ([`graph`]).
//! - *Background*: when an owner is gone (its deletion was seen, or a live GET finds no object with its name
//!   and UID), its dependents are looked at: one whose every owner is gone is deleted; one that keeps an
//!   owner loses its references to the others.
//! - *Foreground*: an owner with a deletionTimestamp and the `foregroundDeletion` finalizer has its dependents
//!   deleted (those with dependents of their own in the foreground, so that it cascades); once no dependent
//!   blocking its deletion (`blockOwnerDeletion`) remains, the finalizer is removed.
//! - *Orphan*: an owner with a deletionTimestamp and the `orphan` finalizer has its reference removed from
//!   every dependent, then the finalizer.
//! - Two work queues keyed by UID ("attempt to delete", "attempt to orphan"), with per-key backoff. Owners
//!   are always verified against the API before a dependent is deleted: the graph may be stale.
//! - A cluster-scoped dependent may only have cluster-scoped owners; a reference to a namespaced kind is
//!   reported with an event and ignored. A namespaced owner is looked up in its dependent's namespace.

pub mod graph;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType};
use crate::queue::{Requeue, WorkQueue, run_workers};
use graph::{Decision, FOREGROUND, Graph, Identity, ORPHAN, ObjectInfo, OwnerState, Propagation, decide};

/// How often the served resource types are discovered again.
pub const REDISCOVERY_PERIOD: Duration = Duration::from_secs(30);

/// How long the collector waits for every resource's first list before it starts collecting anyway.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Owners remembered as absent, at most.
const ABSENT_OWNERS: usize = 500;

/// Resources not worth watching: events are never owners nor, usefully, dependents.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// What can fail while collecting.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The API does not serve this `apiVersion`/`kind` (yet: discovery may catch up).
    #[error("no resource serves {api_version} {kind}")]
    UnknownKind {
        /// The apiVersion.
        api_version: String,
        /// The kind.
        kind: String,
    },
    /// An API call failed.
    #[error("{what} {namespace}/{name}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// The cause.
        #[source]
        source: Box<kube::Error>,
    },
    /// The object exists but its watch has not shown it yet.
    #[error("{namespace}/{name} exists but has not been observed yet")]
    NotObserved {
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
    },
    /// Discovery failed.
    #[error("discovering resources: {0}")]
    Discovery(#[source] Box<kube::Error>),
}

/// A served resource type.
#[derive(Clone, Debug)]
struct Served {
    resource: ApiResource,
    namespaced: bool,
}

/// UIDs (with the namespace they were looked up in) known not to exist, most recent last.
#[derive(Default)]
struct AbsentOwners {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl AbsentOwners {
    fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    fn add(&mut self, key: String) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
            while self.order.len() > ABSENT_OWNERS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// The garbage collector.
pub struct GarbageCollector {
    client: Client,
    graph: Mutex<Graph>,
    /// Every served (apiVersion, kind), at every version, for looking owners up.
    kinds: RwLock<HashMap<(String, String), Served>>,
    attempt_to_delete: Arc<WorkQueue>,
    attempt_to_orphan: Arc<WorkQueue>,
    absent: Mutex<AbsentOwners>,
    events: EventSink,
}

fn api_error(what: &'static str, identity: &Identity, source: kube::Error) -> GcError {
    GcError::Api { what, namespace: identity.namespace.clone(), name: identity.name.clone(), source: Box::new(source) }
}

fn is_code(err: &kube::Error, codes: &[u16]) -> bool {
    matches!(err, kube::Error::Api(e) if codes.contains(&e.code))
}

fn info_of(resource: &ApiResource, meta: &ObjectMeta) -> Option<ObjectInfo> {
    Some(ObjectInfo {
        identity: Identity {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
        },
        owners: meta.owner_references.clone().unwrap_or_default(),
        being_deleted: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    })
}

fn reference_of(identity: &Identity) -> ObjectReference {
    ObjectReference {
        api_version: Some(identity.api_version.clone()),
        kind: Some(identity.kind.clone()),
        name: Some(identity.name.clone()),
        namespace: (!identity.namespace.is_empty()).then(|| identity.namespace.clone()),
        uid: Some(identity.uid.clone()),
        ..Default::default()
    }
}

impl GarbageCollector {
    /// A collector; [`GarbageCollector::run`] starts it.
    pub fn new(client: Client, events: EventSink) -> Arc<GarbageCollector> {
        Arc::new(GarbageCollector {
            client,
            graph: Mutex::new(Graph::new()),
            kinds: RwLock::default(),
            attempt_to_delete: WorkQueue::new(),
            attempt_to_orphan: WorkQueue::new(),
            absent: Mutex::default(),
            events,
        })
    }

    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queue(&self, work: graph::Work) {
        for (dependent, owner) in work.invalid_namespace {
            self.report_invalid_namespace(&dependent, &owner);
        }
        for uid in work.attempt_to_delete {
            self.attempt_to_delete.add(uid);
        }
        for uid in work.attempt_to_orphan {
            self.attempt_to_orphan.add(uid);
        }
    }

    /// Watches every collectable resource and collects with `workers` workers per queue until `shutdown`.
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        let mut monitors: HashMap<(String, String), (ApiResource, CancellationToken)> = HashMap::new();
        let mut first_sync: Vec<watch::Receiver<bool>> = Vec::new();
        let mut started = false;
        loop {
            let discovered = tokio::select! {
                _ = shutdown.cancelled() => break,
                discovered = self.discover() => discovered,
            };
            match discovered {
                Ok(watched) => {
                    let wanted: HashSet<(String, String)> =
                        watched.iter().map(|r| (r.group.clone(), r.plural.clone())).collect();
                    monitors.retain(|key, (resource, token)| {
                        let keep = wanted.contains(key);
                        if !keep {
                            tracing::info!(resource = %resource.plural, "garbage collector: no longer served; unwatched");
                            token.cancel();
                        }
                        keep
                    });
                    for resource in watched {
                        let key = (resource.group.clone(), resource.plural.clone());
                        if monitors.contains_key(&key) {
                            continue;
                        }
                        let token = shutdown.child_token();
                        let (synced, synced_rx) = watch::channel(false);
                        if !started {
                            first_sync.push(synced_rx);
                        }
                        tasks.spawn(Arc::clone(&self).monitor(resource.clone(), synced, token.clone()));
                        monitors.insert(key, (resource, token));
                    }
                }
                Err(err) => tracing::warn!(error = %err, "garbage collector: discovery failed; retrying"),
            }
            if !started && !monitors.is_empty() {
                // Collect from a complete graph, or after a while from what there is: owners are always checked
                // against the API before a dependent is deleted, so a type that cannot be listed only delays
                // the work that depends on it.
                let all_synced = async {
                    for rx in &mut first_sync {
                        // An error means the monitor ended: nothing more to wait for.
                        let _ = rx.wait_for(|s| *s).await;
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    synced = tokio::time::timeout(SYNC_TIMEOUT, all_synced) => if synced.is_err() {
                        tracing::warn!("garbage collector: some resources have not been listed; collecting anyway");
                    },
                }
                first_sync.clear();
                started = true;
                tracing::info!(resources = monitors.len(), "garbage collector: graph synced; collecting");
                let gc = Arc::clone(&self);
                tasks.spawn(run_workers(
                    "garbage-collector-delete",
                    Arc::clone(&self.attempt_to_delete),
                    workers,
                    shutdown.clone(),
                    move |uid| {
                        let gc = Arc::clone(&gc);
                        async move { gc.attempt_to_delete(&uid).await }
                    },
                ));
                let gc = Arc::clone(&self);
                tasks.spawn(run_workers(
                    "garbage-collector-orphan",
                    Arc::clone(&self.attempt_to_orphan),
                    workers,
                    shutdown.clone(),
                    move |uid| {
                        let gc = Arc::clone(&gc);
                        async move { gc.attempt_to_orphan(&uid).await }
                    },
                ));
            }
            let period = if started { REDISCOVERY_PERIOD } else { Duration::from_secs(1) };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Finds the served resource types; records every kind for lookups and returns those to watch.
    async fn discover(&self) -> Result<Vec<ApiResource>, GcError> {
        let discovery = Discovery::new(self.client.clone()).run().await.map_err(|e| GcError::Discovery(Box::new(e)))?;
        let mut kinds = HashMap::new();
        let mut watched = Vec::new();
        for group in discovery.groups() {
            for version in group.versions() {
                for (resource, caps) in group.versioned_resources(version) {
                    let served = Served { resource: resource.clone(), namespaced: caps.scope == Scope::Namespaced };
                    kinds.insert((resource.api_version.clone(), resource.kind.clone()), served);
                }
            }
            for (resource, caps) in group.recommended_resources() {
                let collectable = [verbs::LIST, verbs::WATCH, verbs::DELETE].iter().all(|v| caps.supports_operation(v));
                let ignored = IGNORED.iter().any(|(g, r)| resource.group == *g && resource.plural == *r);
                if collectable && !ignored {
                    watched.push(resource);
                }
            }
        }
        *self.kinds.write().unwrap_or_else(PoisonError::into_inner) = kinds;
        Ok(watched)
    }

    /// Follows one resource type into the graph until `shutdown`.
    async fn monitor(self: Arc<Self>, resource: ApiResource, synced: watch::Sender<bool>, shutdown: CancellationToken) {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(self.client.clone(), &resource);
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        // UIDs this watch has shown; after a relist, those not seen again were deleted meanwhile.
        let mut known: HashSet<String> = HashSet::new();
        let mut relisted: Option<HashSet<String>> = None;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = stream.next() => match next {
                    Some(Ok(event)) => event,
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, resource = %resource.plural, "garbage collector: watch failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                        continue;
                    }
                    None => return,
                },
            };
            match event {
                watcher::Event::Init => relisted = Some(HashSet::new()),
                watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                    if let Some(info) = info_of(&resource, &object.metadata) {
                        if let Some(seen) = relisted.as_mut() {
                            seen.insert(info.identity.uid.clone());
                        }
                        known.insert(info.identity.uid.clone());
                        let work = self.graph().observe(info);
                        self.queue(work);
                    }
                }
                watcher::Event::InitDone => {
                    if let Some(seen) = relisted.take() {
                        let gone: Vec<String> = known.difference(&seen).cloned().collect();
                        for uid in gone {
                            known.remove(&uid);
                            let work = self.graph().observe_deleted(&uid);
                            self.queue(work);
                        }
                    }
                    synced.send_replace(true);
                }
                watcher::Event::Delete(object) => {
                    if let Some(uid) = object.metadata.uid.as_deref() {
                        known.remove(uid);
                        let work = self.graph().observe_deleted(uid);
                        self.queue(work);
                    }
                }
            }
        }
    }

    fn served(&self, api_version: &str, kind: &str) -> Result<Served, GcError> {
        self.kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(api_version.to_string(), kind.to_string()))
            .cloned()
            .ok_or_else(|| GcError::UnknownKind { api_version: api_version.into(), kind: kind.into() })
    }

    /// The API for `identity`'s kind, in its namespace if the kind is namespaced.
    fn api_for(&self, identity: &Identity) -> Result<Api<DynamicObject>, GcError> {
        let served = self.served(&identity.api_version, &identity.kind)?;
        let api = if served.namespaced {
            Api::namespaced_with(self.client.clone(), &identity.namespace, &served.resource)
        } else {
            Api::all_with(self.client.clone(), &served.resource)
        };
        Ok(api)
    }

    /// The object's metadata as the API has it now; `None` if absent or replaced (another UID).
    async fn live(&self, identity: &Identity) -> Result<Option<ObjectMeta>, GcError> {
        let served = self.served(&identity.api_version, &identity.kind)?;
        if served.namespaced && identity.namespace.is_empty() {
            // A namespaced owner named by a cluster-scoped dependent: it cannot exist there.
            return Ok(None);
        }
        let api = self.api_for(identity)?;
        match api.get_metadata_opt(&identity.name).await {
            Ok(Some(object)) if object.metadata.uid.as_deref() == Some(identity.uid.as_str()) => {
                Ok(Some(object.metadata))
            }
            Ok(_) => Ok(None),
            Err(source) => Err(api_error("reading", identity, source)),
        }
    }

    /// One pass of the "attempt to delete" queue over the object (or virtual owner) `uid`.
    async fn attempt_to_delete(&self, uid: &str) -> Result<Requeue, GcError> {
        let Some(node) = self.graph().node(uid).cloned() else { return Ok(Requeue::No) };
        if node.observed && node.being_deleted && !node.deleting_dependents {
            return Ok(Requeue::No);
        }
        let Some(latest) = self.live(&node.identity).await? else {
            // Gone: its dependents are looked at, and an observed one leaves when its watch says so.
            let work = self.graph().absent(uid);
            self.queue(work);
            return Ok(Requeue::No);
        };
        if !node.observed {
            return Err(GcError::NotObserved { namespace: node.identity.namespace, name: node.identity.name });
        }
        if node.deleting_dependents {
            return self.process_deleting_dependents(&node).await;
        }
        let references = latest.owner_references.clone().unwrap_or_default();
        if references.is_empty() {
            return Ok(Requeue::No);
        }
        let Some(owners) = self.classify(&node.identity, &references).await? else { return Ok(Requeue::No) };
        let decision = decide(&owners, !node.dependents.is_empty(), &latest.finalizers.clone().unwrap_or_default());
        tracing::debug!(uid, ?decision, "garbage collector: dependent");
        match decision {
            Decision::Keep => Ok(Requeue::No),
            Decision::RemoveReferences(uids) => {
                self.remove_references(&node.identity, &uids).await?;
                Ok(Requeue::No)
            }
            Decision::Delete(propagation) => {
                if propagation == Propagation::Foreground {
                    self.unblock_circular(&node).await?;
                }
                self.delete(&node.identity, propagation).await?;
                Ok(Requeue::No)
            }
        }
    }

    /// Each owner's state, checked against the API; `None` when a reference is invalid (reported).
    async fn classify(
        &self,
        item: &Identity,
        references: &[OwnerReference],
    ) -> Result<Option<Vec<(String, OwnerState)>>, GcError> {
        let mut owners = Vec::with_capacity(references.len());
        for reference in references {
            let owner = graph::owner_identity(reference, &item.namespace);
            let served = self.served(&owner.api_version, &owner.kind)?;
            if served.namespaced && item.namespace.is_empty() {
                // Retrying cannot help: a cluster-scoped object cannot have a namespaced owner.
                self.report_invalid_namespace(item, reference);
                return Ok(None);
            }
            let absent_key =
                format!("{}/{}", if served.namespaced { item.namespace.as_str() } else { "" }, reference.uid);
            if self.absent.lock().unwrap_or_else(PoisonError::into_inner).contains(&absent_key) {
                owners.push((reference.uid.clone(), OwnerState::Dangling));
                continue;
            }
            let state = match self.live(&owner).await? {
                None => {
                    self.absent.lock().unwrap_or_else(PoisonError::into_inner).add(absent_key);
                    OwnerState::Dangling
                }
                Some(meta)
                    if meta.deletion_timestamp.is_some()
                        && meta.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == FOREGROUND)) =>
                {
                    OwnerState::WaitingForDependentsDeletion
                }
                Some(_) => OwnerState::Solid,
            };
            owners.push((reference.uid.clone(), state));
        }
        Ok(Some(owners))
    }

    fn report_invalid_namespace(&self, dependent: &Identity, owner: &OwnerReference) {
        self.events.publish(
            reference_of(dependent),
            EventType::Warning,
            "OwnerRefInvalidNamespace",
            "GarbageCollect",
            format!(
                "ownerRef [{}/{}, namespace: {}, name: {}, uid: {}] does not exist in namespace {:?}",
                owner.api_version, owner.kind, dependent.namespace, owner.name, owner.uid, dependent.namespace
            ),
        );
    }

    /// An owner deleting in the foreground: its blocking dependents go first, then its finalizer.
    async fn process_deleting_dependents(&self, owner: &graph::Node) -> Result<Requeue, GcError> {
        let blocking: Vec<(String, bool)> = self
            .graph()
            .blocking_dependents(&owner.identity.uid)
            .into_iter()
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
            .collect();
        if blocking.is_empty() {
            self.remove_finalizer(&owner.identity, FOREGROUND).await?;
            return Ok(Requeue::No);
        }
        for (uid, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.attempt_to_delete.add(uid);
            }
        }
        Ok(Requeue::No)
    }

    /// A dependent about to be deleted in the foreground whose own dependents wait for it (a cycle) must not
    /// block them: their references to it stop blocking.
    async fn unblock_circular(&self, item: &graph::Node) -> Result<(), GcError> {
        let waiting: Vec<graph::Node> = {
            let graph = self.graph();
            item.dependents.iter().filter_map(|d| graph.node(d)).filter(|d| d.deleting_dependents).cloned().collect()
        };
        for dependent in waiting {
            let references: Vec<serde_json::Value> = dependent
                .owners
                .iter()
                .filter(|o| o.uid == item.identity.uid)
                .map(|o| {
                    let mut o = o.clone();
                    o.block_owner_deletion = Some(false);
                    json!(o)
                })
                .collect();
            let patch = json!({"metadata": {"ownerReferences": references, "uid": dependent.identity.uid}});
            self.patch(&dependent.identity, &patch).await?;
        }
        Ok(())
    }

    async fn patch(&self, identity: &Identity, patch: &serde_json::Value) -> Result<(), GcError> {
        let api = self.api_for(identity)?;
        match api.patch(&identity.name, &PatchParams::default(), &Patch::Strategic(patch)).await {
            Ok(_) => Ok(()),
            // Gone, or replaced by another object with the same name: nothing to patch.
            Err(err) if is_code(&err, &[404, 409]) => Ok(()),
            Err(source) => Err(api_error("patching", identity, source)),
        }
    }

    /// Removes the references to `owners` from `item`: a strategic merge patch deleting them by UID, or, for a
    /// kind that takes no strategic merge patch, a merge patch of the remaining list on the object's current
    /// resourceVersion (a conflict is retried).
    async fn remove_references(&self, item: &Identity, owners: &[String]) -> Result<(), GcError> {
        let deletions: Vec<serde_json::Value> =
            owners.iter().map(|uid| json!({"$patch": "delete", "uid": uid})).collect();
        let patch = json!({"metadata": {"ownerReferences": deletions, "uid": item.uid}});
        match self.patch(item, &patch).await {
            Err(GcError::Api { source, .. }) if is_code(&source, &[415]) => {}
            done => return done,
        }
        let Some(meta) = self.live(item).await? else { return Ok(()) };
        let references = meta.owner_references.unwrap_or_default();
        let kept: Vec<_> = references.iter().filter(|r| !owners.contains(&r.uid)).collect();
        if kept.len() == references.len() {
            return Ok(());
        }
        let patch = json!({"metadata": {"ownerReferences": kept, "resourceVersion": meta.resource_version}});
        let api = self.api_for(item)?;
        match api.patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(err) if is_code(&err, &[404]) => Ok(()),
            Err(source) => Err(api_error("removing owner references from", item, source)),
        }
    }

    async fn delete(&self, item: &Identity, propagation: Propagation) -> Result<(), GcError> {
        let api = self.api_for(item)?;
        let params = DeleteParams {
            propagation_policy: Some(match propagation {
                Propagation::Background => PropagationPolicy::Background,
                Propagation::Foreground => PropagationPolicy::Foreground,
                Propagation::Orphan => PropagationPolicy::Orphan,
            }),
            preconditions: Some(Preconditions { uid: Some(item.uid.clone()), resource_version: None }),
            ..DeleteParams::default()
        };
        tracing::info!(kind = %item.kind, namespace = %item.namespace, name = %item.name, ?propagation,
            "garbage collector: deleting an object whose owners are gone");
        match api.delete(&item.name, &params).await {
            Ok(_) => Ok(()),
            Err(err) if is_code(&err, &[404, 409]) => Ok(()),
            Err(source) => Err(api_error("deleting", item, source)),
        }
    }

    /// Removes `finalizer` from the object, on its current resourceVersion (a conflict is retried).
    async fn remove_finalizer(&self, identity: &Identity, finalizer: &str) -> Result<(), GcError> {
        let api = self.api_for(identity)?;
        let Some(meta) = self.live(identity).await? else { return Ok(()) };
        let finalizers = meta.finalizers.unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let rest: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": meta.resource_version}});
        match api.patch(&identity.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(err) if is_code(&err, &[404]) => Ok(()),
            Err(source) => Err(api_error("removing a finalizer from", identity, source)),
        }
    }

    /// One pass of the "attempt to orphan" queue over the owner `uid`.
    async fn attempt_to_orphan(&self, uid: &str) -> Result<Requeue, GcError> {
        let (owner, dependents) = {
            let graph = self.graph();
            // No longer waiting (its orphan finalizer went, or it did): nothing to release.
            let Some(owner) = graph.node(uid).filter(|o| o.orphaning) else { return Ok(Requeue::No) };
            let dependents: Vec<Identity> =
                owner.dependents.iter().filter_map(|d| graph.node(d)).map(|d| d.identity.clone()).collect();
            (owner.identity.clone(), dependents)
        };
        let mut failure = None;
        for dependent in dependents {
            if let Err(err) = self.remove_references(&dependent, std::slice::from_ref(&owner.uid)).await {
                failure = Some(err);
            }
        }
        if let Some(err) = failure {
            return Err(err);
        }
        self.remove_finalizer(&owner, ORPHAN).await?;
        Ok(Requeue::No)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_owners_are_remembered_up_to_a_bound_oldest_forgotten_first() {
        let mut absent = AbsentOwners::default();
        for i in 0..=ABSENT_OWNERS {
            absent.add(format!("default/uid-{i}"));
        }
        assert!(!absent.contains("default/uid-0"), "the oldest is forgotten");
        assert!(absent.contains("default/uid-1"));
        assert!(absent.contains(&format!("default/uid-{ABSENT_OWNERS}")));
        assert_eq!(absent.set.len(), ABSENT_OWNERS);
        absent.add("default/uid-1".into());
        assert_eq!(absent.order.len(), ABSENT_OWNERS, "adding a known owner again changes nothing");
    }
}
