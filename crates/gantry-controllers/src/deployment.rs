//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, as
//! kube-controller-manager does, so that `kubectl rollout status|history|undo|pause|resume` work.
//!
//! - The *new* ReplicaSet is the one whose template equals the Deployment's (ignoring the
//!   `pod-template-hash` label); it is created when missing, named `<deployment>-<hash>`, with the hash label
//!   added to its selector and template. Others are *old*.
//! - Revisions: the new ReplicaSet carries `deployment.kubernetes.io/revision` one above the highest old
//!   one (a reused revision moves to `deployment.kubernetes.io/revision-history`); the Deployment carries its
//!   new ReplicaSet's revision. The Deployment's other annotations (`kubernetes.io/change-cause`, …) are
//!   copied to the new ReplicaSet, which is what `rollout history` shows.
//! - RollingUpdate: scale the new ReplicaSet up within `maxSurge`, the old ones down within `maxUnavailable`
//!   (unhealthy old replicas first); Recreate: old ones to zero, wait for their pods to go, then the new one.
//! - Scaling a Deployment mid-rollout spreads the change over its active ReplicaSets in proportion.
//! - `paused` stops rollouts (scaling still applies); `revisionHistoryLimit` old ReplicaSets at zero are kept.
//! - Status: replicas, updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas,
//!   observedGeneration, collisionCount, and the conditions Available (MinimumReplicasAvailable /
//!   MinimumReplicasUnavailable) and Progressing (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
//!   NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused, DeploymentResumed), which is what
//!   `kubectl rollout status` reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_api::selector::LabelSelector;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType, reference_to};
use crate::informer::{Change, Informer};
use crate::meta::{key_of, labels};
use crate::pods::{BY_CONTROLLER, controller_ref, orphans_of};
use crate::queue::{Requeue, WorkQueue, run_workers};

/// The label that ties a ReplicaSet and its pods to one template of a Deployment.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// A ReplicaSet's (and its Deployment's) revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had (when a rollback reused it).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus its surge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations not copied to ReplicaSets.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{what} for deployment {key}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The Deployment.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// The controller.
pub struct DeploymentController {
    client: Client,
    deployments: Arc<Informer<Deployment>>,
    replicasets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue>,
    events: EventSink,
}

fn selector_of(d: &Deployment) -> Option<LabelSelector> {
    LabelSelector::from_k8s(d.spec.as_ref().map(|s| &s.selector)).ok().filter(|s| !s.is_nothing() && !s.is_everything())
}

fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// An int-or-percent of `total`, rounded up or down.
fn resolve(value: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let percent = |p: &str| -> i32 {
        let n: f64 = p.trim_end_matches('%').parse().unwrap_or(0.0);
        let exact = n * f64::from(total) / 100.0;
        (if round_up { exact.ceil() } else { exact.floor() }) as i32
    };
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) if s.ends_with('%') => percent(s),
        Some(IntOrString::String(s)) => s.parse().unwrap_or(0),
        None => percent(default),
    }
}

/// `(maxSurge, maxUnavailable)` of a RollingUpdate Deployment; when both would be zero, one unavailable is
/// allowed, as in kube (Recreate: no surge, everything may be unavailable).
fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let replicas = replicas_of(d);
    if is_recreate(d) {
        return (0, replicas);
    }
    let rolling = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), replicas, true, "25%");
    let unavailable = resolve(rolling.and_then(|r| r.max_unavailable.as_ref()), replicas, false, "25%");
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable.min(replicas)) }
}

/// Drops empty objects and lists: the API's semantic equality treats an empty field as an absent one (a
/// client sending `resources: {}` asks for the same template as one leaving it out).
fn drop_empty(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for child in map.values_mut() {
                drop_empty(child);
            }
            map.retain(|_, v| {
                !matches!(v, serde_json::Value::Null)
                    && !v.as_object().is_some_and(|o| o.is_empty())
                    && !v.as_array().is_some_and(|a| a.is_empty())
            });
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_empty),
        _ => {}
    }
}

/// The template without the pod-template-hash label, as JSON, for comparing templates.
fn template_ignoring_hash(template: Option<&PodTemplateSpec>) -> serde_json::Value {
    let mut value = serde_json::to_value(template).unwrap_or_default();
    drop_empty(&mut value);
    if let Some(labels) = value.pointer_mut("/metadata/labels").and_then(|l| l.as_object_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty()
            && let Some(meta) = value.pointer_mut("/metadata").and_then(|m| m.as_object_mut())
        {
            meta.remove("labels");
        }
    }
    value
}

/// kube's pod-template-hash: the object hash ([`crate::history::hash_bytes`]) of the template without its own
/// hash label, and the collision count.
pub fn template_hash(template: Option<&PodTemplateSpec>, collision_count: Option<i32>) -> String {
    let template = serde_json::to_string(&template_ignoring_hash(template)).unwrap_or_default();
    crate::history::hash_bytes(template.as_bytes(), collision_count)
}

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == type_)
}

/// Sets a condition, keeping its transition time when the status is unchanged.
fn set_condition(status: &mut DeploymentStatus, new: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let transition = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            // Same status and reason: only the update time moves.
            *existing = DeploymentCondition { last_transition_time: transition, ..new };
        }
        None => conditions.push(new),
    }
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: jiff::Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

impl DeploymentController {
    /// The controller, following changes through the shared informers.
    pub fn new(
        client: Client,
        deployments: Arc<Informer<Deployment>>,
        replicasets: Arc<Informer<ReplicaSet>>,
        pods: Arc<Informer<Pod>>,
        events: EventSink,
    ) -> Arc<DeploymentController> {
        let controller = Arc::new(DeploymentController {
            client,
            deployments: Arc::clone(&deployments),
            replicasets: Arc::clone(&replicasets),
            pods: Arc::clone(&pods),
            queue: WorkQueue::new(),
            events,
        });
        let queue = Arc::clone(&controller.queue);
        deployments.on_change(move |change| match change {
            Change::Added(d) | Change::Updated { new: d, .. } | Change::Deleted(d) => queue.add(key_of(&d.metadata)),
        });
        let weak = Arc::downgrade(&controller);
        replicasets.on_change(move |change| {
            let Some(controller) = weak.upgrade() else { return };
            match change {
                Change::Added(rs) | Change::Deleted(rs) => controller.enqueue_for(&rs.metadata),
                Change::Updated { old, new } => {
                    controller.enqueue_for(&new.metadata);
                    if controller_ref(&old.metadata).map(|r| &r.uid) != controller_ref(&new.metadata).map(|r| &r.uid) {
                        controller.enqueue_for(&old.metadata);
                    }
                }
            }
        });
        let weak = Arc::downgrade(&controller);
        pods.on_change(move |change| {
            // Recreate waits for the old pods to go: their deletion moves the rollout on.
            if let (Some(controller), Change::Deleted(pod)) = (weak.upgrade(), change) {
                controller.enqueue_owner_of_pod(pod);
            }
        });
        controller
    }

    /// Enqueues the Deployment owning a ReplicaSet, or those whose selector matches an orphan one.
    fn enqueue_for(&self, rs: &ObjectMeta) {
        let namespace = rs.namespace.as_deref().unwrap_or("");
        match controller_ref(rs) {
            Some(owner) if owner.kind == "Deployment" => {
                if self
                    .deployments
                    .get(namespace, &owner.name)
                    .is_some_and(|d| d.metadata.uid.as_deref() == Some(&owner.uid))
                {
                    self.queue.add(format!("{namespace}/{}", owner.name));
                }
            }
            Some(_) => {}
            None => {
                for d in self.deployments.list_namespace(namespace) {
                    if selector_of(&d).is_some_and(|s| s.matches(labels(rs))) {
                        self.queue.add(key_of(&d.metadata));
                    }
                }
            }
        }
    }

    fn enqueue_owner_of_pod(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let Some(owner) = controller_ref(&pod.metadata).filter(|o| o.kind == "ReplicaSet") else { return };
        if let Some(rs) = self.replicasets.get(namespace, &owner.name) {
            self.enqueue_for(&rs.metadata);
        }
    }

    /// Reconciles Deployments with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.deployments.wait_synced(&shutdown).await;
        self.replicasets.wait_synced(&shutdown).await;
        self.pods.wait_synced(&shutdown).await;
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("deployment", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }

    fn err<'a>(key: &'a str, what: &'static str) -> impl FnOnce(kube::Error) -> SyncError + 'a {
        move |source| SyncError::Api { what, key: key.to_string(), source }
    }

    /// One reconcile of the Deployment `namespace/name`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(d) = self.deployments.get(namespace, name) else { return Ok(Requeue::No) };
        let Some(selector) = selector_of(&d) else {
            let note = "This deployment will select all pods or none; its selector is invalid or empty".to_string();
            self.events.publish(reference_to(d.as_ref()), EventType::Warning, "SelectingAll", "Sync", note);
            return Ok(Requeue::No);
        };
        let mut sets = self.claim(&d, &selector).await?;
        if d.metadata.deletion_timestamp.is_some() {
            return self.sync_status(&d, &sets, None, false).await;
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let template = d.spec.as_ref().map(|s| &s.template);
        let wanted = template_ignoring_hash(template);
        let new_index = sets
            .iter()
            .enumerate()
            .filter(|(_, rs)| template_ignoring_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref())) == wanted)
            .min_by_key(|(_, rs)| rs.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .map(|(i, _)| i);
        let mut new_rs = new_index.map(|i| sets.remove(i));
        let mut old = sets;
        if paused || self.is_scaling_event(&d, new_rs.as_ref(), &old) {
            self.scale(&d, &mut new_rs, &mut old).await?;
            if paused {
                return self.sync_status(&d, &old, new_rs.as_ref(), false).await;
            }
        }
        let mut created = false;
        if new_rs.is_none() && !(is_recreate(&d) && self.old_pods_running(&old)) {
            let (rs, fresh) = self.create_new_replica_set(&d, &old).await?;
            created = fresh;
            new_rs = Some(rs);
        } else if let Some(rs) = &new_rs {
            new_rs = Some(self.sync_revision(&d, rs, &old).await?);
        }
        if is_recreate(&d) {
            self.rollout_recreate(&d, &mut new_rs, &mut old).await?;
        } else {
            self.rollout_rolling(&d, &mut new_rs, &mut old).await?;
        }
        self.sync_status(&d, &old, new_rs.as_ref(), created).await
    }

    /// The ReplicaSets the Deployment owns, after adopting matching orphans and releasing those that stop
    /// matching.
    async fn claim(&self, d: &Deployment, selector: &LabelSelector) -> Result<Vec<Arc<ReplicaSet>>, SyncError> {
        let key = key_of(&d.metadata);
        let namespace = d.metadata.namespace.as_deref().unwrap_or("");
        let uid = d.metadata.uid.as_deref().unwrap_or("");
        let deleting = d.metadata.deletion_timestamp.is_some();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        let mut owned = Vec::new();
        let mut candidates = self.replicasets.by_index(BY_CONTROLLER, uid);
        candidates.extend(self.replicasets.by_index(BY_CONTROLLER, &orphans_of(namespace)));
        for rs in candidates {
            let matches = selector.matches(labels(&rs.metadata));
            let rs_name = rs.metadata.name.clone().unwrap_or_default();
            match controller_ref(&rs.metadata) {
                Some(owner) if owner.uid == uid => {
                    if matches || deleting {
                        owned.push(rs);
                    } else {
                        let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}],
                                                        "uid": rs.metadata.uid}});
                        match api.patch(&rs_name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                            Ok(_) => {}
                            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {}
                            Err(source) => return Err(Self::err(&key, "releasing a replica set")(source)),
                        }
                    }
                }
                Some(_) => {}
                None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                    let patch = json!({"metadata": {"ownerReferences": [owner_reference(d)], "uid": rs.metadata.uid}});
                    match api.patch(&rs_name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                        Ok(adopted) => owned.push(Arc::new(adopted)),
                        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {}
                        Err(source) => return Err(Self::err(&key, "adopting a replica set")(source)),
                    }
                }
                None => {}
            }
        }
        Ok(owned)
    }

    /// Whether the Deployment's replicas differ from what its active ReplicaSets were last scaled for.
    fn is_scaling_event(&self, d: &Deployment, new_rs: Option<&Arc<ReplicaSet>>, old: &[Arc<ReplicaSet>]) -> bool {
        let replicas = replicas_of(d).to_string();
        new_rs.into_iter().chain(old).filter(|rs| rs_replicas(rs) > 0).any(|rs| {
            rs.metadata.annotations.as_ref().and_then(|a| a.get(DESIRED_REPLICAS)).is_some_and(|v| *v != replicas)
        })
    }

    fn old_pods_running(&self, old: &[Arc<ReplicaSet>]) -> bool {
        old.iter().any(|rs| {
            let uid = rs.metadata.uid.as_deref().unwrap_or("");
            self.pods
                .by_index(BY_CONTROLLER, uid)
                .iter()
                .any(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        })
    }

    /// Sets a ReplicaSet's replicas and the Deployment's sizes in its annotations.
    async fn scale_to(&self, d: &Deployment, rs: &mut Arc<ReplicaSet>, replicas: i32) -> Result<bool, SyncError> {
        let (surge, _) = surge_and_unavailable(d);
        let desired = replicas_of(d).to_string();
        let max = (replicas_of(d) + surge).to_string();
        let annotations = rs.metadata.annotations.clone().unwrap_or_default();
        if rs_replicas(rs) == replicas
            && annotations.get(DESIRED_REPLICAS) == Some(&desired)
            && annotations.get(MAX_REPLICAS) == Some(&max)
        {
            return Ok(false);
        }
        let scaling = rs_replicas(rs) != replicas;
        let name = rs.metadata.name.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), rs.metadata.namespace.as_deref().unwrap_or(""));
        let patch = json!({"metadata": {"annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max}},
                           "spec": {"replicas": replicas}});
        let key = key_of(&d.metadata);
        let updated = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Self::err(&key, "scaling a replica set"))?;
        if scaling {
            let direction = if replicas > rs_replicas(rs) { "up" } else { "down" };
            let note = format!("Scaled {direction} replica set {name} from {} to {replicas}", rs_replicas(rs));
            self.events.publish(reference_to(d), EventType::Normal, "ScalingReplicaSet", "Scale", note);
        }
        *rs = Arc::new(updated);
        Ok(scaling)
    }

    /// Proportional scaling: spreads a change of the Deployment's replicas over its active ReplicaSets.
    async fn scale(
        &self,
        d: &Deployment,
        new_rs: &mut Option<Arc<ReplicaSet>>,
        old: &mut [Arc<ReplicaSet>],
    ) -> Result<(), SyncError> {
        let replicas = replicas_of(d);
        let active: Vec<usize> = (0..old.len()).filter(|i| rs_replicas(&old[*i]) > 0).collect();
        // One active ReplicaSet (or none): it takes the whole size.
        if active.is_empty() {
            if let Some(rs) = new_rs.as_mut() {
                self.scale_to(d, rs, replicas).await?;
            }
            return Ok(());
        }
        if let ([only], None) = (active.as_slice(), new_rs.as_ref()) {
            self.scale_to(d, &mut old[*only], replicas).await?;
            return Ok(());
        }
        let (surge, _) = surge_and_unavailable(d);
        let allowed = replicas + surge;
        let current: i32 =
            old.iter().map(|rs| rs_replicas(rs)).sum::<i32>() + new_rs.as_ref().map_or(0, |rs| rs_replicas(rs));
        let to_add = allowed - current;
        if to_add == 0 {
            return Ok(());
        }
        // Bigger sets take their share first (newest first when scaling up, as kube sorts them).
        // Each target: its size, and its position among the old sets (`None`: the new set).
        let mut targets: Vec<(i32, Option<usize>)> = active.iter().map(|i| (rs_replicas(&old[*i]), Some(*i))).collect();
        if let Some(rs) = new_rs.as_ref().filter(|rs| rs_replicas(rs) > 0) {
            targets.push((rs_replicas(rs), None));
        }
        targets.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.is_none().cmp(&a.1.is_none())));
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(targets.len());
        for (size, _) in &targets {
            let share = if current > 0 {
                (f64::from(*size) * f64::from(to_add) / f64::from(current)).round() as i32
            } else {
                0
            };
            let share = if to_add > 0 { share.min(to_add - added) } else { share.max(to_add - added) };
            added += share;
            sizes.push((size + share).max(0));
        }
        // What rounding left goes to the largest.
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for ((_, position), size) in targets.into_iter().zip(sizes) {
            match (position, new_rs.as_mut()) {
                (Some(i), _) => self.scale_to(d, &mut old[i], size).await?,
                (None, Some(rs)) => self.scale_to(d, rs, size).await?,
                (None, None) => false,
            };
        }
        Ok(())
    }

    /// Creates the new ReplicaSet (or takes the one of that name already there); true if it was created.
    async fn create_new_replica_set(
        &self,
        d: &Deployment,
        old: &[Arc<ReplicaSet>],
    ) -> Result<(Arc<ReplicaSet>, bool), SyncError> {
        let key = key_of(&d.metadata);
        let namespace = d.metadata.namespace.as_deref().unwrap_or("");
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let template = d.spec.as_ref().map(|s| s.template.clone());
        let hash = template_hash(template.as_ref(), collision_count);
        let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or(""));
        let revision = old.iter().map(|rs| revision(&rs.metadata)).max().unwrap_or(0) + 1;
        let mut template = template.unwrap_or_default();
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        meta.labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let (surge, _) = surge_and_unavailable(d);
        let replicas = if is_recreate(d) { 0 } else { self.new_replicas(d, None, old) };
        let mut annotations = copied_annotations(d);
        annotations.insert(REVISION.into(), revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), replicas_of(d).to_string());
        annotations.insert(MAX_REPLICAS.into(), (replicas_of(d) + surge).to_string());
        let mut labels =
            d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).map(|m| labels(m).clone()).unwrap_or_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_string()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![owner_reference(d)]),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                let note = format!("Scaled up replica set {name} from 0 to {replicas}");
                self.events.publish(reference_to(d), EventType::Normal, "ScalingReplicaSet", "Scale", note);
                Ok((Arc::new(created), true))
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Already there: ours with this template (a sync racing the informer), or a hash collision.
                let existing = api.get(&name).await.map_err(Self::err(&key, "reading the new replica set"))?;
                let ours = controller_ref(&existing.metadata)
                    .is_some_and(|o| Some(o.uid.as_str()) == d.metadata.uid.as_deref());
                if ours {
                    return Ok((Arc::new(existing), false));
                }
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
                let patch = json!({"status": {"collisionCount": collision_count.unwrap_or(0) + 1}});
                let name = d.metadata.name.as_deref().unwrap_or("");
                api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Self::err(&key, "counting a hash collision"))?;
                Err(SyncError::Api {
                    what: "creating the new replica set (hash collision)",
                    key,
                    source: kube::Error::Api(e),
                })
            }
            Err(source) => Err(Self::err(&key, "creating the new replica set")(source)),
        }
    }

    /// Gives the new ReplicaSet the next revision (and the Deployment's annotations) if it lacks them.
    async fn sync_revision(
        &self,
        d: &Deployment,
        rs: &Arc<ReplicaSet>,
        old: &[Arc<ReplicaSet>],
    ) -> Result<Arc<ReplicaSet>, SyncError> {
        let max_old = old.iter().map(|rs| revision(&rs.metadata)).max().unwrap_or(0);
        let current = revision(&rs.metadata);
        let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let before = annotations.clone();
        for (k, v) in copied_annotations(d) {
            annotations.insert(k, v);
        }
        if current <= max_old {
            let new = max_old + 1;
            if current > 0 {
                let history = annotations.get(REVISION_HISTORY).cloned().unwrap_or_default();
                let history = if history.is_empty() { current.to_string() } else { format!("{history},{current}") };
                annotations.insert(REVISION_HISTORY.into(), history);
            }
            annotations.insert(REVISION.into(), new.to_string());
        }
        if annotations == before {
            return Ok(Arc::clone(rs));
        }
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), rs.metadata.namespace.as_deref().unwrap_or(""));
        let patch = json!({"metadata": {"annotations": annotations}});
        let key = key_of(&d.metadata);
        let updated = api
            .patch(rs.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Self::err(&key, "updating the new replica set's revision"))?;
        Ok(Arc::new(updated))
    }

    /// The new ReplicaSet's size in a rolling update: up to the Deployment's replicas, within the surge.
    fn new_replicas(&self, d: &Deployment, new_rs: Option<&Arc<ReplicaSet>>, old: &[Arc<ReplicaSet>]) -> i32 {
        let replicas = replicas_of(d);
        let (surge, _) = surge_and_unavailable(d);
        let new_current = new_rs.map_or(0, |rs| rs_replicas(rs));
        let current: i32 = old.iter().map(|rs| rs_replicas(rs)).sum::<i32>() + new_current;
        let max_total = replicas + surge;
        if current >= max_total {
            return new_current;
        }
        new_current + (max_total - current).min(replicas - new_current).max(0)
    }

    async fn rollout_rolling(
        &self,
        d: &Deployment,
        new_rs: &mut Option<Arc<ReplicaSet>>,
        old: &mut [Arc<ReplicaSet>],
    ) -> Result<(), SyncError> {
        let replicas = replicas_of(d);
        let Some(rs) = new_rs.as_mut() else { return Ok(()) };
        // Scale the new ReplicaSet up (or down to the Deployment's size).
        let target = if rs_replicas(rs) > replicas { replicas } else { self.new_replicas(d, Some(rs), old) };
        if self.scale_to(d, rs, target).await? {
            return Ok(());
        }
        // Scale old ones down within maxUnavailable: unhealthy replicas first, then oldest sets first.
        if old.iter().all(|rs| rs_replicas(rs) == 0) {
            return self.cleanup(d, old).await;
        }
        let (_, max_unavailable) = surge_and_unavailable(d);
        let mut order: Vec<usize> = (0..old.len()).collect();
        order.sort_by_key(|i| old[*i].metadata.creation_timestamp.as_ref().map(|t| t.0));
        let sizes: Vec<(i32, i32)> = order.iter().map(|i| (rs_replicas(&old[*i]), rs_available(&old[*i]))).collect();
        let targets = scaled_down_old_sizes(replicas, max_unavailable, (rs_replicas(rs), rs_available(rs)), &sizes);
        for (i, target) in order.into_iter().zip(targets) {
            if target != rs_replicas(&old[i]) {
                self.scale_to(d, &mut old[i], target).await?;
            }
        }
        Ok(())
    }

    async fn rollout_recreate(
        &self,
        d: &Deployment,
        new_rs: &mut Option<Arc<ReplicaSet>>,
        old: &mut [Arc<ReplicaSet>],
    ) -> Result<(), SyncError> {
        let mut scaled = false;
        for rs in old.iter_mut() {
            if rs_replicas(rs) > 0 {
                scaled |= self.scale_to(d, rs, 0).await?;
            }
        }
        if scaled || self.old_pods_running(old) {
            return Ok(());
        }
        let new = match new_rs.take() {
            Some(rs) => rs,
            None => self.create_new_replica_set(d, old).await?.0,
        };
        let mut new = new;
        self.scale_to(d, &mut new, replicas_of(d)).await?;
        *new_rs = Some(new);
        self.cleanup(d, old).await
    }

    /// Deletes old ReplicaSets at zero beyond `revisionHistoryLimit`, oldest revision first.
    async fn cleanup(&self, d: &Deployment, old: &[Arc<ReplicaSet>]) -> Result<(), SyncError> {
        let limit = usize::try_from(d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10)).unwrap_or(0);
        let mut idle: Vec<&Arc<ReplicaSet>> = old
            .iter()
            .filter(|rs| {
                rs_replicas(rs) == 0
                    && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if idle.len() <= limit {
            return Ok(());
        }
        idle.sort_by_key(|rs| revision(&rs.metadata));
        let excess = idle.len() - limit;
        let key = key_of(&d.metadata);
        for rs in idle.into_iter().take(excess) {
            let api: Api<ReplicaSet> =
                Api::namespaced(self.client.clone(), rs.metadata.namespace.as_deref().unwrap_or(""));
            match api.delete(rs.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(Self::err(&key, "deleting an old replica set")(source)),
            }
        }
        Ok(())
    }

    /// Writes the status and conditions; requeues to check the progress deadline.
    async fn sync_status(
        &self,
        d: &Deployment,
        old: &[Arc<ReplicaSet>],
        new_rs: Option<&Arc<ReplicaSet>>,
        created: bool,
    ) -> Result<Requeue, SyncError> {
        let now = jiff::Timestamp::now();
        let previous = d.status.clone().unwrap_or_default();
        let mut status = calculate_status(d, old, new_rs, &previous, now);
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds);
        let new_name = new_rs.and_then(|rs| rs.metadata.name.clone()).unwrap_or_default();
        let mut requeue = Requeue::No;
        let progressing = condition(&previous, "Progressing").cloned();
        if paused {
            if progressing.as_ref().and_then(|c| c.reason.as_deref()) != Some("DeploymentPaused") {
                set_condition(
                    &mut status,
                    new_condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into(), now),
                );
            }
        } else if deadline.is_some() {
            let complete = is_complete(d, &status);
            let was_paused = progressing.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused");
            if complete {
                if progressing.as_ref().and_then(|c| c.reason.as_deref()) != Some("NewReplicaSetAvailable") {
                    let message = format!("ReplicaSet \"{new_name}\" has successfully progressed.");
                    set_condition(
                        &mut status,
                        new_condition("Progressing", "True", "NewReplicaSetAvailable", message, now),
                    );
                }
            } else if was_paused {
                set_condition(
                    &mut status,
                    new_condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed".into(), now),
                );
            } else if created {
                let message = format!("Created new replica set \"{new_name}\"");
                set_condition(&mut status, new_condition("Progressing", "True", "NewReplicaSetCreated", message, now));
            } else if has_progressed(&previous, &status) || progressing.is_none() {
                let (reason, message) = if progressing.is_none() {
                    ("FoundNewReplicaSet", format!("Found new replica set \"{new_name}\""))
                } else {
                    ("ReplicaSetUpdated", format!("ReplicaSet \"{new_name}\" is progressing."))
                };
                set_condition(&mut status, new_condition("Progressing", "True", reason, message, now));
            } else if let Some(c) =
                progressing.as_ref().filter(|c| c.reason.as_deref() != Some("ProgressDeadlineExceeded"))
            {
                let since = c.last_update_time.as_ref().map_or(now, |t| t.0);
                let limit = i64::from(deadline.unwrap_or(600));
                let elapsed = now.as_second() - since.as_second();
                if elapsed >= limit {
                    let message = format!("ReplicaSet \"{new_name}\" has timed out progressing.");
                    set_condition(
                        &mut status,
                        new_condition("Progressing", "False", "ProgressDeadlineExceeded", message, now),
                    );
                    self.events.publish(
                        reference_to(d),
                        EventType::Warning,
                        "ProgressDeadlineExceeded",
                        "Sync",
                        format!(
                            "Deployment \"{}\" has timed out progressing",
                            d.metadata.name.as_deref().unwrap_or("")
                        ),
                    );
                } else {
                    requeue = Requeue::After(Duration::from_secs(u64::try_from(limit - elapsed).unwrap_or(1) + 1));
                }
            }
            if !complete
                && requeue == Requeue::No
                && condition(&status, "Progressing")
                    .is_some_and(|c| c.reason.as_deref() != Some("ProgressDeadlineExceeded"))
            {
                requeue =
                    Requeue::After(Duration::from_secs(u64::try_from(deadline.unwrap_or(600)).unwrap_or(600) + 1));
            }
        }
        if status != previous {
            let api: Api<Deployment> =
                Api::namespaced(self.client.clone(), d.metadata.namespace.as_deref().unwrap_or(""));
            let patch = json!({"status": status});
            let key = key_of(&d.metadata);
            match api
                .patch_status(d.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Requeue::No),
                Err(source) => return Err(Self::err(&key, "updating status")(source)),
            }
        }
        // The Deployment shows its new ReplicaSet's revision.
        if let Some(rs) = new_rs {
            let wanted = revision(&rs.metadata);
            if wanted > 0 && revision(&d.metadata) != wanted {
                let api: Api<Deployment> =
                    Api::namespaced(self.client.clone(), d.metadata.namespace.as_deref().unwrap_or(""));
                let patch = json!({"metadata": {"annotations": {REVISION: wanted.to_string()}}});
                let key = key_of(&d.metadata);
                match api
                    .patch(d.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(source) => return Err(Self::err(&key, "recording the revision")(source)),
                }
            }
        }
        Ok(requeue)
    }
}

/// The sizes of a rolling update's old ReplicaSets (`(spec.replicas, status.availableReplicas)`, oldest first)
/// after scaling them down as far as `replicas - max_unavailable` available pods allow, given the new
/// ReplicaSet's `(spec.replicas, status.availableReplicas)`: unhealthy replicas go first, then available ones from
/// the oldest sets.
///
/// A ReplicaSet's status lags the scale-downs asked of it: told to shrink from 5 to 2, it reports 5 available
/// until it has seen its pods' deletions. No set counts more available pods than it is to keep, or those being
/// deleted would pay for more scale-downs and the availability would fall below the minimum.
fn scaled_down_old_sizes(replicas: i32, max_unavailable: i32, new: (i32, i32), old: &[(i32, i32)]) -> Vec<i32> {
    let available = |(size, available): (i32, i32)| available.clamp(0, size.max(0));
    let min_available = replicas - max_unavailable;
    let mut sizes: Vec<i32> = old.iter().map(|(size, _)| *size).collect();
    let all_total = sizes.iter().sum::<i32>() + new.0;
    let new_unavailable = new.0 - available(new);
    let mut budget = all_total - min_available - new_unavailable;
    if budget <= 0 {
        return sizes;
    }
    // Unhealthy old replicas cost no availability: they go first.
    for (size, (_, ready)) in sizes.iter_mut().zip(old) {
        if budget <= 0 {
            break;
        }
        let unhealthy = *size - available((*size, *ready));
        if unhealthy <= 0 {
            continue;
        }
        let down = unhealthy.min(budget);
        *size -= down;
        budget -= down;
    }
    // Then available ones, as far as the minimum availability allows.
    let available_now: i32 =
        sizes.iter().zip(old).map(|(size, (_, ready))| available((*size, *ready))).sum::<i32>() + available(new);
    let mut to_scale_down = available_now - min_available;
    for size in &mut sizes {
        if to_scale_down <= 0 {
            break;
        }
        let down = (*size).min(to_scale_down);
        *size -= down;
        to_scale_down -= down;
    }
    sizes
}

/// The owner reference a Deployment's ReplicaSets carry.
pub fn owner_reference(d: &Deployment) -> OwnerReference {
    OwnerReference {
        api_version: Deployment::api_version(&()).into_owned(),
        kind: Deployment::kind(&()).into_owned(),
        name: d.metadata.name.clone().unwrap_or_default(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Every replica updated and available, and the status current.
fn is_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = replicas_of(d);
    status.updated_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
        && status.observed_generation >= d.metadata.generation
}

/// More pods updated, ready or available, or fewer old ones, than before.
fn has_progressed(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_pods = |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || old_pods(new) < old_pods(old)
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

fn calculate_status(
    d: &Deployment,
    old: &[Arc<ReplicaSet>],
    new_rs: Option<&Arc<ReplicaSet>>,
    previous: &DeploymentStatus,
    now: jiff::Timestamp,
) -> DeploymentStatus {
    let all: Vec<&Arc<ReplicaSet>> = old.iter().chain(new_rs).collect();
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let replicas = sum(&|rs| rs.status.as_ref().map_or(0, |s| s.replicas));
    let ready = sum(&|rs| rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0));
    let available = sum(&|rs| rs_available(rs));
    let updated = new_rs.and_then(|rs| rs.status.as_ref()).map_or(0, |s| s.replicas);
    let wanted = replicas_of(d);
    let mut status = DeploymentStatus {
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((wanted - available).max(0)),
        observed_generation: d.metadata.generation,
        collision_count: previous.collision_count,
        conditions: previous.conditions.clone(),
        terminating_replicas: None,
    };
    let (_, max_unavailable) = surge_and_unavailable(d);
    let available_condition = if available >= wanted - max_unavailable {
        new_condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    let unchanged = condition(previous, "Available")
        .is_some_and(|c| c.status == available_condition.status && c.reason == available_condition.reason);
    if !unchanged {
        set_condition(&mut status, available_condition);
    }
    // A failure of the new ReplicaSet shows on the Deployment.
    let failure = new_rs
        .and_then(|rs| rs.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "ReplicaFailure"));
    match failure {
        Some(f) => {
            if condition(previous, "ReplicaFailure").is_none_or(|c| c.reason != f.reason) {
                let message = f.message.clone().unwrap_or_default();
                set_condition(
                    &mut status,
                    new_condition("ReplicaFailure", &f.status, f.reason.as_deref().unwrap_or(""), message, now),
                );
            }
        }
        None => {
            if let Some(conditions) = status.conditions.as_mut() {
                conditions.retain(|c| c.type_ != "ReplicaFailure");
            }
        }
    }
    status
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn deployment(extra: serde_json::Value) -> Deployment {
        let mut d = json!({"metadata": {"name": "web", "namespace": "d", "uid": "d-uid", "generation": 2,
                                        "annotations": {"kubernetes.io/change-cause": "v2", REVISION: "1"}},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        if let serde_json::Value::Object(extra) = extra {
            for (k, v) in extra {
                d["spec"][k] = v;
            }
        }
        serde_json::from_value(d).unwrap()
    }

    #[test]
    fn the_template_hash_ignores_its_own_label_and_changes_with_the_template_and_collisions() {
        let d = deployment(json!({}));
        let template = Some(d.spec.as_ref().unwrap().template.clone());
        let hash = template_hash(template.as_ref(), None);
        assert!(!hash.is_empty() && hash.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)));
        let mut labelled = template.clone().unwrap();
        labelled.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(POD_TEMPLATE_HASH.into(), hash.clone());
        assert_eq!(template_hash(Some(&labelled), None), hash);
        assert_ne!(template_hash(template.as_ref(), Some(1)), hash);
        let other = deployment(json!({"template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}));
        assert_ne!(template_hash(Some(&other.spec.as_ref().unwrap().template), None), hash);
    }

    #[test]
    fn templates_differing_only_in_empty_fields_are_the_same_template() {
        let bare: PodTemplateSpec = serde_json::from_value(json!({"spec": {"containers": [{"name": "c"}]}})).unwrap();
        let padded: PodTemplateSpec =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "resources": {}, "env": []}]}}))
                .unwrap();
        assert_eq!(template_ignoring_hash(Some(&bare)), template_ignoring_hash(Some(&padded)));
        assert_eq!(template_hash(Some(&bare), None), template_hash(Some(&padded), None));
    }

    #[test]
    fn surge_rounds_up_and_unavailability_rounds_down() {
        let d = deployment(json!({"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "30%", "maxUnavailable": "30%"}}}));
        assert_eq!(surge_and_unavailable(&d), (2, 1));
        let zero = deployment(
            json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}),
        );
        assert_eq!(surge_and_unavailable(&zero), (0, 1), "a rollout must be able to move");
        let recreate = deployment(json!({"strategy": {"type": "Recreate"}}));
        assert_eq!(surge_and_unavailable(&recreate), (0, 4));
    }

    #[test]
    fn old_replica_sets_shrink_within_max_unavailable_unhealthy_replicas_first() {
        // 5 replicas, 1 unavailable: the new set's 2 available pods let 3 of the old set's 5 go.
        assert_eq!(scaled_down_old_sizes(5, 1, (2, 2), &[(5, 5)]), [2]);
        // Unavailable new pods hold the old ones.
        assert_eq!(scaled_down_old_sizes(5, 1, (5, 2), &[(2, 2)]), [2]);
        // Unhealthy old replicas go even when no available one may.
        assert_eq!(scaled_down_old_sizes(5, 1, (2, 0), &[(5, 3)]), [4]);
        // Oldest sets first.
        assert_eq!(scaled_down_old_sizes(4, 1, (2, 2), &[(2, 2), (2, 2)]), [0, 1]);
    }

    #[test]
    fn pods_an_old_replica_set_is_deleting_do_not_count_as_available() {
        // The old set was scaled from 5 to 2 and its status still counts 5 available; 3 new pods are available.
        // Counting the 5 would scale the old set to 0 and leave 3 available pods of 5, one fewer than allowed.
        assert_eq!(scaled_down_old_sizes(5, 1, (5, 3), &[(2, 5)]), [1]);
        // A new set's lagging status does not pay for scale-downs either.
        assert_eq!(scaled_down_old_sizes(5, 1, (2, 5), &[(5, 5)]), [2]);
    }

    #[test]
    fn only_user_annotations_are_copied_to_replica_sets() {
        let copied = copied_annotations(&deployment(json!({})));
        assert_eq!(copied.get("kubernetes.io/change-cause").map(String::as_str), Some("v2"));
        assert!(!copied.contains_key(REVISION));
    }

    #[test]
    fn a_complete_rollout_needs_every_replica_updated_and_available() {
        let d = deployment(json!({}));
        let mut status = DeploymentStatus {
            replicas: Some(4),
            updated_replicas: Some(4),
            available_replicas: Some(4),
            observed_generation: Some(2),
            ..Default::default()
        };
        assert!(is_complete(&d, &status));
        status.available_replicas = Some(3);
        assert!(!is_complete(&d, &status));
        let before = DeploymentStatus { available_replicas: Some(2), ..status.clone() };
        assert!(has_progressed(&before, &status));
        assert!(!has_progressed(&status, &status));
    }
}
