//! The StatefulSet controller: pods with stable names, storage and order, as kube-controller-manager's.
//!
//! - Pods are named `<set>-<ordinal>` for ordinals `spec.ordinals.start ..` `start + replicas`; each has
//!   hostname = its name, subdomain = `spec.serviceName`, the labels `statefulset.kubernetes.io/pod-name`,
//!   `apps.kubernetes.io/pod-index` and `controller-revision-hash` (the name of the ControllerRevision whose
//!   template it was made from), and a controller ownerReference to the set.
//! - `OrderedReady`: pods are created one at a time in ordinal order, each once its predecessors are Running,
//!   Ready and available (`minReadySeconds`); surplus pods are deleted from the highest ordinal, one at a
//!   time, each once the pod before it has gone. `Parallel`: all at once. Failed (and Succeeded) pods are
//!   deleted and recreated; a pod being deleted is waited for.
//! - Each `volumeClaimTemplates` entry gives every pod a claim `<template>-<set>-<ordinal>`, created before
//!   the pod and named in its volumes. `persistentVolumeClaimRetentionPolicy` becomes controller
//!   ownerReferences on the claims (to the set for `whenDeleted: Delete`, to a scaled-down pod for
//!   `whenScaled: Delete`) so that the garbage collector deletes them.
//! - Templates are recorded as ControllerRevisions (data `{"spec":{"template":{…,"$patch":"replace"}}}`, the
//!   strategic merge patch `kubectl rollout undo` applies); `status.currentRevision` is what the pods were
//!   made from, `status.updateRevision` what the set asks for now. Old revisions beyond
//!   `revisionHistoryLimit` that no pod uses are deleted.
//! - `RollingUpdate`: pods at ordinals `>= partition` not at the update revision are deleted, highest first,
//!   at most `maxUnavailable` unavailable at once (kube's MaxUnavailableStatefulSet behaviour), and come back
//!   at the update revision; `OnDelete`: only pods deleted by someone else come back updated.
//! - Status: replicas, readyReplicas, currentReplicas, updatedReplicas, availableReplicas, currentRevision,
//!   updateRevision, observedGeneration and collisionCount, which `kubectl rollout status` reads.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use gantry_api::selector::LabelSelector;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType, reference_to};
use crate::history;
use crate::informer::{Change, Informer};
use crate::meta::{key_of, labels, name_of};
use crate::pods::{controller_ref, is_available, is_ready};
use crate::queue::{Requeue, WorkQueue, run_workers};

/// The label naming a StatefulSet pod (its own name), for per-pod Services.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label naming the ControllerRevision a pod was made from (and a revision's own hash).
pub const REVISION_LABEL: &str = history::CONTROLLER_REVISION_HASH;

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{what} for statefulset {key}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The StatefulSet.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Adopting or releasing pods or revisions failed.
    #[error("claiming for statefulset {key}: {source}")]
    Claim {
        /// The StatefulSet.
        key: String,
        /// The cause.
        #[source]
        source: crate::claim::ClaimError,
    },
    /// Reading or writing ControllerRevisions failed.
    #[error("revision history of statefulset {key}: {source}")]
    History {
        /// The StatefulSet.
        key: String,
        /// The cause.
        #[source]
        source: history::HistoryError,
    },
    /// A claim the pod needs is being deleted; the pod waits for it to go.
    #[error("pvc {claim} of statefulset {key} is being deleted, will not recreate")]
    ClaimTerminating {
        /// The StatefulSet.
        key: String,
        /// The claim.
        claim: String,
    },
    /// A ControllerRevision's data is not a template patch.
    #[error("controller revision {revision} of statefulset {key} holds no pod template: {source}")]
    BadRevision {
        /// The StatefulSet.
        key: String,
        /// The revision.
        revision: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The controller.
pub struct StatefulSetController {
    client: Client,
    sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    revisions: Arc<Informer<ControllerRevision>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    queue: Arc<WorkQueue>,
    events: EventSink,
}

fn selector_of(set: &StatefulSet) -> Option<LabelSelector> {
    LabelSelector::from_k8s(set.spec.as_ref().map(|s| &s.selector)).ok().filter(|s| !s.is_nothing())
}

/// `spec.replicas` (1 when unset).
fn replicas_of(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

/// The first ordinal (`spec.ordinals.start`).
fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0).max(0)
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// Whether pods may be created and deleted all at once (`podManagementPolicy: Parallel`).
fn is_parallel(set: &StatefulSet) -> bool {
    set.spec.as_ref().and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel")
}

fn strategy_type(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// `spec.updateStrategy.rollingUpdate.partition`, when a rollingUpdate is given.
fn partition_of(set: &StatefulSet) -> Option<i32> {
    let rolling = set.spec.as_ref()?.update_strategy.as_ref()?.rolling_update.as_ref()?;
    Some(rolling.partition.unwrap_or(0))
}

/// How many pods a rolling update may have unavailable: `maxUnavailable` of the replicas (a percentage rounds
/// down), at least 1.
fn max_unavailable(set: &StatefulSet) -> i32 {
    let replicas = replicas_of(set);
    let value = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref());
    let resolved = match value {
        None => 1,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s.strip_suffix('%') {
            Some(percent) => percent.parse::<i64>().map_or(1, |p| (p * i64::from(replicas) / 100) as i32),
            None => s.parse().unwrap_or(1),
        },
    };
    resolved.max(1)
}

/// The retention policy as `(whenDeleted is Delete, whenScaled is Delete)`.
fn retention_of(set: &StatefulSet) -> (bool, bool) {
    let policy = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (delete(policy.and_then(|p| p.when_deleted.as_ref())), delete(policy.and_then(|p| p.when_scaled.as_ref())))
}

/// A pod name's parent and ordinal (`web-12` → `("web", 12)`), as kube parses `(.*)-([0-9]+)$`.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ordinal) = name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}

/// The ordinal of a pod of `set`, if its name makes it one.
fn ordinal_in(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    parent_and_ordinal(name_of(&pod.metadata)).filter(|(parent, _)| *parent == name_of(&set.metadata)).map(|(_, o)| o)
}

/// The name of the set's pod at `ordinal`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", name_of(&set.metadata))
}

/// The name of the claim from `template` for the pod at `ordinal`.
pub fn claim_name(template: &str, set: &StatefulSet, ordinal: i32) -> String {
    format!("{template}-{}-{ordinal}", name_of(&set.metadata))
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && is_ready(pod)
}

fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

fn pod_revision(pod: &Pod) -> &str {
    labels(&pod.metadata).get(REVISION_LABEL).map_or("", String::as_str)
}

/// The controller ownerReference the set's pods (and revisions) carry.
pub fn owner_reference(set: &StatefulSet) -> OwnerReference {
    crate::claim::controller_reference(set)
}

fn pod_owner_reference(pod: &Pod) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name_of(&pod.metadata).to_string(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The claims the pod at `ordinal` has, by template name (in template order): the template named for the pod,
/// labelled with the set's selector labels.
fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let spec = set.spec.as_ref();
    let match_labels = spec.and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    spec.and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
        .map(|template| {
            let template_name = name_of(&template.metadata).to_string();
            let mut claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&template_name, set, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: template.metadata.labels.clone(),
                    annotations: template.metadata.annotations.clone(),
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            };
            let claim_labels = claim.metadata.labels.get_or_insert_with(BTreeMap::new);
            claim_labels.extend(match_labels.clone());
            (template_name, claim)
        })
        .collect()
}

/// A new pod of the set at `ordinal`, from `template` (the template of revision `revision`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let name = pod_name(set, ordinal);
    let template_meta = template.metadata.as_ref();
    let mut pod_labels = template_meta.and_then(|m| m.labels.clone()).unwrap_or_default();
    pod_labels.insert(POD_NAME_LABEL.into(), name.clone());
    pod_labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    pod_labels.insert(REVISION_LABEL.into(), revision.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty());
    let claims = claims_for(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(template_name, claim)| Volume {
            name: template_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name_of(&claim.metadata).to_string(),
                read_only: None,
            }),
            ..Volume::default()
        })
        .collect();
    // A template volume named like a claim template is replaced by the claim.
    volumes.extend(spec.volumes.take().into_iter().flatten().filter(|v| !claims.iter().any(|(t, _)| *t == v.name)));
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            generate_name: Some(format!("{}-", name_of(&set.metadata))),
            namespace: set.metadata.namespace.clone(),
            labels: Some(pod_labels),
            annotations: template_meta.and_then(|m| m.annotations.clone()),
            finalizers: template_meta.and_then(|m| m.finalizers.clone()),
            owner_references: Some(vec![owner_reference(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether an existing pod carries the identity its name gives it.
fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = ordinal_in(set, pod) else { return false };
    let pod_labels = labels(&pod.metadata);
    pod.metadata.namespace == set.metadata.namespace
        && pod_labels.get(POD_NAME_LABEL).map(String::as_str) == Some(name_of(&pod.metadata))
        && pod_labels.get(POD_INDEX_LABEL) == Some(&ordinal.to_string())
}

/// The revision (current or update) a new pod at `ordinal` is made from: below the partition, the current
/// one, as kube's `newVersionedStatefulSetPod` decides.
fn uses_current_revision(set: &StatefulSet, ordinal: i32) -> bool {
    if strategy_type(set) != "RollingUpdate" {
        return false;
    }
    let start = start_ordinal(set);
    match partition_of(set) {
        Some(partition) => ordinal < start + partition,
        None => ordinal < start + set.status.as_ref().and_then(|s| s.current_replicas).unwrap_or(0),
    }
}

/// The status counts over the pods that exist, as kube's `computeReplicaStatus`.
fn count_status(
    status: &mut StatefulSetStatus,
    pods: &[&Pod],
    min_ready: i32,
    current: &str,
    update: &str,
    now: jiff::Timestamp,
) {
    let (mut replicas, mut ready, mut available, mut current_count, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods {
        replicas += 1;
        if is_running_and_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if !is_terminating(pod) {
            let revision = pod_revision(pod);
            if revision == current {
                current_count += 1;
            }
            if revision == update {
                updated += 1;
            }
        }
    }
    status.replicas = replicas;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(current_count);
    status.updated_replicas = Some(updated);
}

/// Once every pod is updated and ready, the update revision becomes the current one.
fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let updated = status.updated_replicas.unwrap_or(0);
    if strategy_type(set) == "RollingUpdate"
        && updated == status.replicas
        && status.ready_replicas.unwrap_or(0) == status.replicas
    {
        status.current_replicas = Some(updated);
        status.current_revision = status.update_revision.clone();
    }
}

/// The replicas (indexes into the ordinal range) a rolling update deletes now: the highest not at the update
/// revision, down to the partition, while fewer than `max_unavailable` are unavailable. `None` is a pod not
/// created yet (unavailable).
fn rolling_update_victims(
    replicas: &[Option<&Pod>],
    update: &str,
    partition: usize,
    max_unavailable: i32,
) -> Vec<usize> {
    let unavailable = replicas.iter().filter(|p| !p.is_some_and(is_healthy)).count() as i32;
    if unavailable >= max_unavailable {
        return Vec::new();
    }
    let budget = (max_unavailable - unavailable) as usize;
    (partition..replicas.len())
        .rev()
        .filter(|i| replicas[*i].is_some_and(|p| pod_revision(p) != update && !is_terminating(p)))
        .take(budget)
        .collect()
}

/// What scaling down does with the condemned pods (highest ordinal first): the indexes to delete now.
/// In order (`monotonic`), one at a time: a terminating pod is waited for, and an unhealthy one blocks
/// unless it is the first unhealthy pod of the set.
fn condemned_victims(
    condemned: &[&Pod],
    first_unhealthy: Option<&str>,
    monotonic: bool,
    min_ready: i32,
    now: jiff::Timestamp,
) -> Vec<usize> {
    let mut victims = Vec::new();
    for (i, pod) in condemned.iter().enumerate() {
        if is_terminating(pod) {
            if monotonic {
                break;
            }
            continue;
        }
        let first = first_unhealthy == Some(name_of(&pod.metadata));
        if monotonic && !first && (!is_running_and_ready(pod) || !is_available(pod, min_ready, now)) {
            break;
        }
        victims.push(i);
        if monotonic {
            break;
        }
    }
    victims
}

fn refers_to(reference: &OwnerReference, kind: &str, name: &str) -> bool {
    reference.kind == kind && reference.name == name
}

/// Whether a claim's ownerReferences already say what the retention policy asks, as kube's
/// `isClaimOwnerUpToDate`: no reference for Retain/Retain; the set for whenDeleted Delete; the pod once it is
/// scaled down for whenScaled Delete (instead of the set). Claims another controller owns are left alone.
fn claim_owners_up_to_date(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod, scaled_down: bool) -> bool {
    let set_uid = set.metadata.uid.as_deref().unwrap_or("");
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or("");
    let refs: &[OwnerReference] = claim.metadata.owner_references.as_deref().unwrap_or(&[]);
    let stale = |kind: &str, name: &str, uid: &str| {
        refs.iter().find(|r| refers_to(r, kind, name)).is_some_and(|r| r.uid != uid)
    };
    if stale("StatefulSet", name_of(&set.metadata), set_uid) || stale("Pod", name_of(&pod.metadata), pod_uid) {
        // A previous set (or pod) of that name manages it.
        return true;
    }
    let ours = |r: &OwnerReference| r.uid == set_uid || (!pod_uid.is_empty() && r.uid == pod_uid);
    let has = |uid: &str| !uid.is_empty() && refs.iter().any(|r| r.uid == uid);
    if refs.iter().any(|r| r.controller == Some(true) && !ours(r)) {
        return !(has(set_uid) || has(pod_uid));
    }
    if refs.iter().any(|r| ours(r) && r.controller != Some(true)) {
        return false;
    }
    let (want_set, want_pod) = wanted_claim_owners(set, scaled_down);
    has(set_uid) == want_set && has(pod_uid) == want_pod
}

/// `(set, pod)`: which of the two should own a claim under the set's retention policy.
fn wanted_claim_owners(set: &StatefulSet, scaled_down: bool) -> (bool, bool) {
    match retention_of(set) {
        (false, false) => (false, false),
        (true, false) => (true, false),
        (false, true) => (false, scaled_down),
        (true, true) => (!scaled_down, scaled_down),
    }
}

/// The claim's ownerReferences as the retention policy wants them (kube's `updateClaimOwnerRefForSetAndPod`).
fn claim_owners(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod, scaled_down: bool) -> Vec<OwnerReference> {
    let set_uid = set.metadata.uid.as_deref().unwrap_or("");
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or("");
    let refs: Vec<OwnerReference> = claim.metadata.owner_references.clone().unwrap_or_default();
    let ours = |r: &OwnerReference| {
        refers_to(r, "StatefulSet", name_of(&set.metadata)) || refers_to(r, "Pod", name_of(&pod.metadata))
    };
    let unexpected_controller = refs.iter().any(|r| r.controller == Some(true) && r.uid != set_uid && r.uid != pod_uid);
    let mut kept: Vec<OwnerReference> = refs.into_iter().filter(|r| !ours(r)).collect();
    if unexpected_controller {
        return kept;
    }
    let (want_set, want_pod) = wanted_claim_owners(set, scaled_down);
    if want_set {
        kept.push(owner_reference(set));
    }
    if want_pod && !pod_uid.is_empty() {
        kept.push(pod_owner_reference(pod));
    }
    kept
}

/// A revision's template, from its data (`{"spec":{"template":{…,"$patch":"replace"}}}`).
fn revision_template(revision: &ControllerRevision) -> Result<PodTemplateSpec, serde_json::Error> {
    let mut template =
        revision.data.as_ref().and_then(|d| d.0.pointer("/spec/template")).cloned().unwrap_or(Value::Null);
    if let Some(object) = template.as_object_mut() {
        object.remove("$patch");
    }
    serde_json::from_value(template)
}

/// The data of the revision recording the set's template: the strategic merge patch that puts it back.
pub fn revision_data(set: &StatefulSet) -> Value {
    history::pod_template_data(set.spec.as_ref().map(|s| &s.template))
}

impl StatefulSetController {
    /// The controller, following changes through the shared informers.
    pub fn new(
        client: Client,
        sets: Arc<Informer<StatefulSet>>,
        pods: Arc<Informer<Pod>>,
        revisions: Arc<Informer<ControllerRevision>>,
        claims: Arc<Informer<PersistentVolumeClaim>>,
        events: EventSink,
    ) -> Arc<StatefulSetController> {
        let controller = Arc::new(StatefulSetController {
            client,
            sets: Arc::clone(&sets),
            pods: Arc::clone(&pods),
            revisions,
            claims: Arc::clone(&claims),
            queue: WorkQueue::new(),
            events,
        });
        let queue = Arc::clone(&controller.queue);
        sets.on_change(move |change| match change {
            Change::Added(set) | Change::Updated { new: set, .. } | Change::Deleted(set) => {
                queue.add(key_of(&set.metadata))
            }
        });
        let weak = Arc::downgrade(&controller);
        pods.on_change(move |change| {
            if let Some(controller) = weak.upgrade() {
                controller.pod_changed(change);
            }
        });
        let weak = Arc::downgrade(&controller);
        claims.on_change(move |change| {
            // A pod waiting for its predecessor's claim to go can be created once it has.
            if let (Some(controller), Change::Deleted(claim)) = (weak.upgrade(), change) {
                controller.claim_gone(claim);
            }
        });
        controller
    }

    /// Enqueues the set a deleted claim belonged to (through the set or a pod of it).
    fn claim_gone(&self, claim: &PersistentVolumeClaim) {
        let namespace = claim.metadata.namespace.as_deref().unwrap_or("");
        for reference in claim.metadata.owner_references.iter().flatten() {
            let set = match reference.kind.as_str() {
                "StatefulSet" => Some(reference.name.as_str()),
                "Pod" => parent_and_ordinal(&reference.name).map(|(parent, _)| parent),
                _ => None,
            };
            if let Some(set) = set
                && self.sets.get(namespace, set).is_some()
            {
                self.queue.add(format!("{namespace}/{set}"));
            }
        }
    }

    /// The StatefulSet controlling `pod`, if this informer knows it.
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let owner = controller_ref(&pod.metadata).filter(|o| o.kind == "StatefulSet")?;
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let set = self.sets.get(namespace, &owner.name)?;
        (set.metadata.uid.as_deref() == Some(owner.uid.as_str())).then(|| format!("{namespace}/{}", owner.name))
    }

    fn matching_sets(&self, pod: &Pod) -> Vec<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        self.sets
            .list_namespace(namespace)
            .into_iter()
            .filter(|set| selector_of(set).is_some_and(|s| s.matches(labels(&pod.metadata))))
            .map(|set| key_of(&set.metadata))
            .collect()
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) | Change::Deleted(pod) => match self.owner_key(pod) {
                Some(key) => self.queue.add(key),
                None if controller_ref(&pod.metadata).is_none() => {
                    self.matching_sets(pod).into_iter().for_each(|k| self.queue.add(k))
                }
                None => {}
            },
            Change::Updated { old, new } => {
                let old_owner = self.owner_key(old);
                let new_owner = self.owner_key(new);
                if old_owner != new_owner
                    && let Some(key) = old_owner
                {
                    self.queue.add(key);
                }
                match new_owner {
                    Some(key) => {
                        // A pod turning ready becomes available only minReadySeconds later.
                        let (namespace, name) = key.split_once('/').unwrap_or(("", &key));
                        let min_ready = self.sets.get(namespace, name).map_or(0, |s| min_ready_seconds(&s));
                        if min_ready > 0 && is_ready(new) != is_ready(old) {
                            self.queue.add_after(key.clone(), Duration::from_secs(min_ready as u64 + 1));
                        }
                        self.queue.add(key);
                    }
                    None if controller_ref(&new.metadata).is_none()
                        && (old.metadata.labels != new.metadata.labels || controller_ref(&old.metadata).is_some()) =>
                    {
                        self.matching_sets(new).into_iter().for_each(|k| self.queue.add(k))
                    }
                    None => {}
                }
            }
        }
    }

    /// Reconciles StatefulSets with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.sets.wait_synced(&shutdown).await;
        self.pods.wait_synced(&shutdown).await;
        self.revisions.wait_synced(&shutdown).await;
        self.claims.wait_synced(&shutdown).await;
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("statefulset", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }
}

/// One sync's view of a set: its revisions and the sets they describe.
struct Revisions {
    current: Arc<ControllerRevision>,
    update: Arc<ControllerRevision>,
    current_template: PodTemplateSpec,
    update_template: PodTemplateSpec,
    collision_count: i32,
}

impl Revisions {
    fn current_name(&self) -> &str {
        name_of(&self.current.metadata)
    }

    fn update_name(&self) -> &str {
        name_of(&self.update.metadata)
    }

    /// A new pod at `ordinal`, at the revision the strategy gives it.
    fn new_pod(&self, set: &StatefulSet, ordinal: i32) -> Pod {
        if uses_current_revision(set, ordinal) {
            new_pod(set, &self.current_template, self.current_name(), ordinal)
        } else {
            new_pod(set, &self.update_template, self.update_name(), ordinal)
        }
    }
}

/// What one pass over the replicas left: pods by replica index (`None`: not created yet, or just asked for).
struct Replicas {
    pods: Vec<Option<Arc<Pod>>>,
    condemned: Vec<Arc<Pod>>,
}

impl Replicas {
    fn status(&self, status: &mut StatefulSetStatus, set: &StatefulSet, revisions: &Revisions, now: jiff::Timestamp) {
        let pods: Vec<&Pod> =
            self.pods.iter().flatten().map(Arc::as_ref).chain(self.condemned.iter().map(Arc::as_ref)).collect();
        count_status(status, &pods, min_ready_seconds(set), revisions.current_name(), revisions.update_name(), now);
    }
}

impl StatefulSetController {
    fn api_error<'a>(key: &'a str, what: &'static str) -> impl FnOnce(kube::Error) -> SyncError + 'a {
        move |source| SyncError::Api { what, key: key.to_string(), source }
    }

    /// One reconcile of the StatefulSet `namespace/name`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(set) = self.sets.get(namespace, name) else { return Ok(Requeue::No) };
        let Some(selector) = selector_of(&set) else {
            let note = "the StatefulSet's selector is invalid or selects nothing".to_string();
            self.events.publish(reference_to(set.as_ref()), EventType::Warning, "SelectorParsingFailed", "Sync", note);
            return Ok(Requeue::No);
        };
        let revisions = self.claim_revisions(&set, &selector).await?;
        let pods = self.claim_pods(&set, &selector).await?;
        let chosen = self.choose_revisions(&set, &revisions).await?;
        let now = jiff::Timestamp::now();
        let mut status = StatefulSetStatus {
            observed_generation: set.metadata.generation,
            current_revision: Some(chosen.current_name().to_string()),
            update_revision: Some(chosen.update_name().to_string()),
            collision_count: Some(chosen.collision_count),
            ..StatefulSetStatus::default()
        };
        let result = self.update_replicas(key, &set, &chosen, &pods, &mut status, now).await;
        complete_rolling_update(&set, &mut status);
        self.write_status(key, &set, &status).await?;
        self.truncate_history(key, &set, &pods, &revisions, &chosen).await?;
        result?;
        let min_ready = min_ready_seconds(&set);
        if min_ready > 0 && status.available_replicas.unwrap_or(0) != replicas_of(&set) {
            return Ok(Requeue::After(Duration::from_secs(min_ready as u64)));
        }
        Ok(Requeue::No)
    }

    async fn write_status(&self, key: &str, set: &StatefulSet, status: &StatefulSetStatus) -> Result<(), SyncError> {
        let old = set.status.clone().unwrap_or_default();
        let same = old.observed_generation >= status.observed_generation
            && old.replicas == status.replicas
            && old.current_replicas.unwrap_or(0) == status.current_replicas.unwrap_or(0)
            && old.ready_replicas.unwrap_or(0) == status.ready_replicas.unwrap_or(0)
            && old.updated_replicas.unwrap_or(0) == status.updated_replicas.unwrap_or(0)
            && old.available_replicas.unwrap_or(0) == status.available_replicas.unwrap_or(0)
            && old.current_revision == status.current_revision
            && old.update_revision == status.update_revision
            && old.collision_count.unwrap_or(0) == status.collision_count.unwrap_or(0);
        if same {
            return Ok(());
        }
        let api: Api<StatefulSet> =
            Api::namespaced(self.client.clone(), set.metadata.namespace.as_deref().unwrap_or(""));
        let patch = json!({"status": status});
        match api.patch_status(name_of(&set.metadata), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(SyncError::Api { what: "updating status", key: key.to_string(), source }),
        }
    }

    /// The pods the set owns (named as its pods), after adopting matching orphans and releasing owned pods
    /// that no longer match.
    async fn claim_pods(&self, set: &StatefulSet, selector: &LabelSelector) -> Result<Vec<Arc<Pod>>, SyncError> {
        let eligible = |pod: &Pod| {
            ordinal_in(set, pod).is_some() && (controller_ref(&pod.metadata).is_some() || !is_terminating(pod))
        };
        crate::claim::claim(&self.client, set, selector, &self.pods, eligible)
            .await
            .map_err(|source| SyncError::Claim { key: key_of(&set.metadata), source })
    }

    /// The ControllerRevisions the set owns, after adopting matching orphans and releasing those that stop
    /// matching; oldest first.
    async fn claim_revisions(
        &self,
        set: &StatefulSet,
        selector: &LabelSelector,
    ) -> Result<Vec<Arc<ControllerRevision>>, SyncError> {
        let mut revisions = crate::claim::claim(&self.client, set, selector, &self.revisions, |_| true)
            .await
            .map_err(|source| SyncError::Claim { key: key_of(&set.metadata), source })?;
        history::sort(&mut revisions);
        Ok(revisions)
    }

    /// The current and update revisions, creating the update revision (or renumbering an equal older one, a
    /// rollback) as kube's `getStatefulSetRevisions` does. `revisions` are sorted by revision number.
    async fn choose_revisions(
        &self,
        set: &StatefulSet,
        revisions: &[Arc<ControllerRevision>],
    ) -> Result<Revisions, SyncError> {
        let key = key_of(&set.metadata);
        let history_error = |source| SyncError::History { key: key.clone(), source };
        let mut collision_count = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let data = revision_data(set);
        let next = history::next_revision(revisions);
        let equal = revisions.iter().rev().find(|r| history::data_of(r) == &data);
        let update = match (equal, revisions.last()) {
            (Some(found), Some(last)) if Arc::ptr_eq(found, last) => Arc::clone(last),
            // An older template again (a rollback): that revision becomes the newest.
            (Some(found), _) => Arc::new(history::renumber(&self.client, found, next).await.map_err(history_error)?),
            (None, _) => {
                let revision = new_revision(set, data, next, collision_count);
                let created = history::create_revision(&self.client, revision, &mut collision_count)
                    .await
                    .map_err(history_error)?;
                Arc::new(created)
            }
        };
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.as_deref()).unwrap_or("");
        let current = revisions
            .iter()
            .find(|r| !current_name.is_empty() && name_of(&r.metadata) == current_name)
            .cloned()
            .unwrap_or_else(|| Arc::clone(&update));
        let bad = |revision: &ControllerRevision| {
            let (key, name) = (key.clone(), name_of(&revision.metadata).to_string());
            move |source| SyncError::BadRevision { key, revision: name, source }
        };
        Ok(Revisions {
            current_template: revision_template(&current).map_err(bad(&current))?,
            update_template: revision_template(&update).map_err(bad(&update))?,
            current,
            update,
            collision_count,
        })
    }

    /// Deletes the oldest revisions no pod uses beyond `revisionHistoryLimit`.
    async fn truncate_history(
        &self,
        key: &str,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        revisions: &[Arc<ControllerRevision>],
        chosen: &Revisions,
    ) -> Result<(), SyncError> {
        let mut live: HashSet<String> = pods.iter().map(|p| pod_revision(p).to_string()).collect();
        live.insert(chosen.current_name().to_string());
        live.insert(chosen.update_name().to_string());
        let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(history::DEFAULT_HISTORY_LIMIT);
        history::truncate(&self.client, revisions, &live, limit)
            .await
            .map_err(|source| SyncError::History { key: key.to_string(), source })?;
        Ok(())
    }
}

/// What processing one replica decided.
enum Step {
    /// Go on with the next replica.
    Next,
    /// Stop here this sync (in order, a replica is not ready yet or was just created).
    Stop,
}

impl StatefulSetController {
    fn pod_event(&self, set: &StatefulSet, verb: &str, pod: &str, failure: Option<&dyn std::fmt::Display>) {
        let set_name = name_of(&set.metadata);
        let title = title_case(verb);
        let (type_, reason, note) = match failure {
            None => (
                EventType::Normal,
                format!("Successful{title}"),
                format!("{verb} Pod {pod} in StatefulSet {set_name} successful"),
            ),
            Some(err) => (
                EventType::Warning,
                format!("Failed{title}"),
                format!("{verb} Pod {pod} in StatefulSet {set_name} failed error: {err}"),
            ),
        };
        self.events.publish(reference_to(set), type_, &reason, &title, note);
    }

    fn claim_event(
        &self,
        set: &StatefulSet,
        verb: &str,
        pod: &str,
        claim: &str,
        failure: Option<&dyn std::fmt::Display>,
    ) {
        let set_name = name_of(&set.metadata);
        let title = title_case(verb);
        let (type_, reason, note) = match failure {
            None => (
                EventType::Normal,
                format!("Successful{title}"),
                format!("{verb} Claim {claim} Pod {pod} in StatefulSet {set_name} success"),
            ),
            Some(err) => (
                EventType::Warning,
                format!("Failed{title}"),
                format!("{verb} Claim {claim} for Pod {pod} in StatefulSet {set_name} failed error: {err}"),
            ),
        };
        self.events.publish(reference_to(set), type_, &reason, &title, note);
    }

    /// Creates the pod's missing claims (whether it created any); a claim being deleted is an error (the pod
    /// waits for it).
    async fn create_claims(&self, key: &str, set: &StatefulSet, pod: &Pod, ordinal: i32) -> Result<bool, SyncError> {
        let namespace = set.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let pod_name = name_of(&pod.metadata);
        let mut created = false;
        for (_, claim) in claims_for(set, ordinal) {
            let claim_name = name_of(&claim.metadata).to_string();
            let existing = match self.claims.get(namespace, &claim_name) {
                Some(found) => Some(found),
                None => api.get_opt(&claim_name).await.map_err(Self::api_error(key, "reading a claim"))?.map(Arc::new),
            };
            match existing {
                Some(found) if found.metadata.deletion_timestamp.is_some() => {
                    return Err(SyncError::ClaimTerminating { key: key.to_string(), claim: claim_name });
                }
                Some(_) => {}
                None => match api.create(&PostParams::default(), &claim).await {
                    Ok(_) => {
                        created = true;
                        self.claim_event(set, "create", pod_name, &claim_name, None);
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(source) => {
                        self.claim_event(set, "create", pod_name, &claim_name, Some(&source));
                        return Err(SyncError::Api { what: "creating a claim", key: key.to_string(), source });
                    }
                },
            }
        }
        Ok(created)
    }

    /// Whether a claim of the pod at `ordinal` still belongs to an earlier pod of that name (whenScaled
    /// Delete): the garbage collector is about to delete it, so the pod waits.
    fn claim_is_stale(&self, set: &StatefulSet, ordinal: i32) -> bool {
        if !retention_of(set).1 {
            return false;
        }
        let namespace = set.metadata.namespace.as_deref().unwrap_or("");
        let pod = pod_name(set, ordinal);
        claims_for(set, ordinal).iter().any(|(_, claim)| {
            self.claims.get(namespace, name_of(&claim.metadata)).is_some_and(|found| {
                found.metadata.owner_references.iter().flatten().any(|r| refers_to(r, "Pod", &pod))
            })
        })
    }

    /// Brings the ownerReferences of the pod's claims in line with the retention policy; whether any changed.
    async fn fix_claim_owners(&self, key: &str, set: &StatefulSet, pod: &Pod) -> Result<bool, SyncError> {
        let Some(ordinal) = ordinal_in(set, pod) else { return Ok(false) };
        let start = start_ordinal(set);
        let scaled_down = !(start..start + replicas_of(set)).contains(&ordinal);
        let namespace = set.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let mut changed = false;
        for (_, wanted) in claims_for(set, ordinal) {
            let Some(claim) = self.claims.get(namespace, name_of(&wanted.metadata)) else { continue };
            if claim_owners_up_to_date(&claim, set, pod, scaled_down) {
                continue;
            }
            let owners = claim_owners(&claim, set, pod, scaled_down);
            let patch = json!({"metadata": {"ownerReferences": owners,
                                            "resourceVersion": claim.metadata.resource_version}});
            match api.patch(name_of(&claim.metadata), &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => changed = true,
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(SyncError::Api { what: "updating a claim's owners", key: key.to_string(), source });
                }
            }
        }
        Ok(changed)
    }

    async fn create_pod(&self, key: &str, set: &StatefulSet, pod: &Pod, ordinal: i32) -> Result<(), SyncError> {
        let pod_name = name_of(&pod.metadata).to_string();
        if let Err(err) = self.create_claims(key, set, pod, ordinal).await {
            self.pod_event(set, "create", &pod_name, Some(&err));
            return Err(err);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), set.metadata.namespace.as_deref().unwrap_or(""));
        match api.create(&PostParams::default(), pod).await {
            Ok(created) => {
                self.pod_event(set, "create", &pod_name, None);
                // Owner references can point at the pod only now that it has a UID.
                self.fix_claim_owners(key, set, &created).await?;
                Ok(())
            }
            // The informer is behind: the pod exists.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Err(SyncError::Api { what: "creating a pod", key: key.to_string(), source: kube::Error::Api(e) })
            }
            Err(source) => {
                self.pod_event(set, "create", &pod_name, Some(&source));
                Err(SyncError::Api { what: "creating a pod", key: key.to_string(), source })
            }
        }
    }

    async fn delete_pod(&self, key: &str, set: &StatefulSet, pod: &Pod) -> Result<(), SyncError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), set.metadata.namespace.as_deref().unwrap_or(""));
        let pod_name = name_of(&pod.metadata);
        match api.delete(pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                self.pod_event(set, "delete", pod_name, None);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => {
                self.pod_event(set, "delete", pod_name, Some(&source));
                Err(SyncError::Api { what: "deleting a pod", key: key.to_string(), source })
            }
        }
    }

    /// Gives an existing pod the identity labels and claims it should have (kube's `UpdateStatefulPod`;
    /// volumes of a running pod cannot change, so only missing claims are created).
    async fn update_pod(&self, key: &str, set: &StatefulSet, pod: &Pod, ordinal: i32) -> Result<(), SyncError> {
        let pod_name = name_of(&pod.metadata).to_string();
        let mut changed = false;
        if !identity_matches(set, pod) {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), set.metadata.namespace.as_deref().unwrap_or(""));
            let patch = json!({"metadata": {"labels": {POD_NAME_LABEL: pod_name, POD_INDEX_LABEL: ordinal.to_string()},
                                            "resourceVersion": pod.metadata.resource_version}});
            if let Err(source) = api.patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                self.pod_event(set, "update", &pod_name, Some(&source));
                return Err(SyncError::Api { what: "updating a pod's identity", key: key.to_string(), source });
            }
            changed = true;
        }
        let namespace = set.metadata.namespace.as_deref().unwrap_or("");
        if claims_for(set, ordinal).iter().any(|(_, c)| self.claims.get(namespace, name_of(&c.metadata)).is_none()) {
            match self.create_claims(key, set, pod, ordinal).await {
                Ok(created) => changed |= created,
                Err(err) => {
                    self.pod_event(set, "update", &pod_name, Some(&err));
                    return Err(err);
                }
            }
        }
        changed |= self.fix_claim_owners(key, set, pod).await?;
        if changed {
            self.pod_event(set, "update", &pod_name, None);
        }
        Ok(())
    }

    /// kube's `processReplica`: recreate a finished pod, create a missing one, wait (in order) for it to be
    /// running, ready and available, and keep its identity and claims right.
    #[allow(clippy::too_many_arguments)]
    async fn process_replica(
        &self,
        key: &str,
        set: &StatefulSet,
        revisions: &Revisions,
        slot: &mut Option<Arc<Pod>>,
        ordinal: i32,
        monotonic: bool,
        now: jiff::Timestamp,
    ) -> Result<Step, SyncError> {
        if let Some(pod) = slot.as_ref()
            && matches!(phase(pod), Some("Failed" | "Succeeded"))
            && !is_terminating(pod)
        {
            let set_name = name_of(&set.metadata);
            let namespace = set.metadata.namespace.as_deref().unwrap_or("");
            let pod_name = name_of(&pod.metadata);
            let (type_, reason, note) = if phase(pod) == Some("Failed") {
                (
                    EventType::Warning,
                    "RecreatingFailedPod",
                    format!("StatefulSet {namespace}/{set_name} is recreating failed Pod {pod_name}"),
                )
            } else {
                (
                    EventType::Normal,
                    "RecreatingTerminatedPod",
                    format!("StatefulSet {namespace}/{set_name} is recreating terminated Pod {pod_name}"),
                )
            };
            self.events.publish(reference_to(set), type_, reason, "Recreate", note);
            self.delete_pod(key, set, pod).await?;
            // The pod comes back once the informer shows the old one gone.
            *slot = None;
            return Ok(Step::Stop);
        }
        let Some(pod) = slot.clone() else {
            if self.claim_is_stale(set, ordinal) {
                return Ok(Step::Stop);
            }
            let pod = revisions.new_pod(set, ordinal);
            self.create_pod(key, set, &pod, ordinal).await?;
            return Ok(if monotonic { Step::Stop } else { Step::Next });
        };
        if matches!(phase(&pod), None | Some("Pending")) && !is_terminating(&pod) {
            self.create_claims(key, set, &pod, ordinal).await?;
        }
        if monotonic
            && (is_terminating(&pod) || !is_running_and_ready(&pod) || !is_available(&pod, min_ready_seconds(set), now))
        {
            return Ok(Step::Stop);
        }
        if is_terminating(&pod) {
            return Ok(Step::Next);
        }
        self.update_pod(key, set, &pod, ordinal).await?;
        Ok(Step::Next)
    }

    /// kube's `updateStatefulSet`: replicas first (create, recreate, wait), then scale down, then the rolling
    /// update. `status` is left counting what the pass saw.
    async fn update_replicas(
        &self,
        key: &str,
        set: &StatefulSet,
        revisions: &Revisions,
        pods: &[Arc<Pod>],
        status: &mut StatefulSetStatus,
        now: jiff::Timestamp,
    ) -> Result<(), SyncError> {
        let start = start_ordinal(set);
        let count = replicas_of(set);
        let mut replicas = Replicas { pods: vec![None; count as usize], condemned: Vec::new() };
        for pod in pods {
            let Some(ordinal) = ordinal_in(set, pod) else { continue };
            if (start..start + count).contains(&ordinal) {
                replicas.pods[(ordinal - start) as usize] = Some(Arc::clone(pod));
            } else {
                replicas.condemned.push(Arc::clone(pod));
            }
        }
        replicas.condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_in(set, p)));
        replicas.status(status, set, revisions, now);
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let first_unhealthy: Option<String> = replicas
            .pods
            .iter()
            .map(|p| p.as_deref())
            .chain(replicas.condemned.iter().rev().map(|p| Some(p.as_ref())))
            .find(|p| !p.is_some_and(is_healthy))
            .map(|p| p.map(|p| name_of(&p.metadata).to_string()).unwrap_or_default());
        let monotonic = !is_parallel(set);
        let result = self.process_replicas(key, set, revisions, &mut replicas, monotonic, now).await;
        let stop = match result {
            Ok(stop) => stop,
            Err(err) => {
                replicas.status(status, set, revisions, now);
                return Err(err);
            }
        };
        if stop {
            replicas.status(status, set, revisions, now);
            return Ok(());
        }
        for pod in &replicas.condemned {
            self.fix_claim_owners(key, set, pod).await?;
        }
        let condemned: Vec<&Pod> = replicas.condemned.iter().map(Arc::as_ref).collect();
        let victims = condemned_victims(&condemned, first_unhealthy.as_deref(), monotonic, min_ready_seconds(set), now);
        for i in &victims {
            self.delete_pod(key, set, condemned[*i]).await?;
        }
        replicas.status(status, set, revisions, now);
        // In order, scaling down comes before (and holds back) updates.
        if monotonic && !condemned.is_empty() {
            return Ok(());
        }
        if strategy_type(set) == "OnDelete" {
            return Ok(());
        }
        let partition = partition_of(set).unwrap_or(0).max(0) as usize;
        let slots: Vec<Option<&Pod>> = replicas.pods.iter().map(|p| p.as_deref()).collect();
        for i in rolling_update_victims(&slots, revisions.update_name(), partition, max_unavailable(set)) {
            if let Some(pod) = slots[i] {
                tracing::debug!(statefulset = key, pod = name_of(&pod.metadata), "terminating for update");
                self.delete_pod(key, set, pod).await?;
                status.current_replicas = Some(status.current_replicas.unwrap_or(0) - 1);
            }
        }
        Ok(())
    }

    /// Processes every replica: in order, stopping at the first that is not ready (returns true then); in
    /// parallel, in slow-start batches of 1, 2, 4, … stopping at the first failure.
    async fn process_replicas(
        &self,
        key: &str,
        set: &StatefulSet,
        revisions: &Revisions,
        replicas: &mut Replicas,
        monotonic: bool,
        now: jiff::Timestamp,
    ) -> Result<bool, SyncError> {
        let start = start_ordinal(set);
        if monotonic {
            for (i, slot) in replicas.pods.iter_mut().enumerate() {
                if let Step::Stop = self.process_replica(key, set, revisions, slot, start + i as i32, true, now).await?
                {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        let mut batch = 1;
        let mut done = 0;
        while done < replicas.pods.len() {
            let end = (done + batch).min(replicas.pods.len());
            let results = join_all(replicas.pods[done..end].iter_mut().enumerate().map(|(j, slot)| {
                let ordinal = start + (done + j) as i32;
                self.process_replica(key, set, revisions, slot, ordinal, false, now)
            }))
            .await;
            for result in results {
                result?;
            }
            done = end;
            batch *= 2;
        }
        Ok(false)
    }
}

fn title_case(verb: &str) -> String {
    let mut chars = verb.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// A new revision of the set's template, numbered `number`, with the set's annotations (which
/// `kubectl rollout history` shows, `kubernetes.io/change-cause` among them).
fn new_revision(set: &StatefulSet, data: Value, number: i64, collision_count: i32) -> ControllerRevision {
    let template_labels =
        set.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let count = Some(collision_count).filter(|c| *c != 0);
    let mut revision = history::new_revision(&set.metadata, owner_reference(set), template_labels, data, number, count);
    revision.metadata.annotations = set.metadata.annotations.clone().filter(|a| !a.is_empty());
    revision
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn set(extra: Value) -> StatefulSet {
        let mut value = json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "set-uid", "generation": 2},
            "spec": {"replicas": 3, "serviceName": "nginx",
                     "selector": {"matchLabels": {"app": "web"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1"}],
                                           "volumes": [{"name": "data", "emptyDir": {}},
                                                       {"name": "cache", "emptyDir": {}}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}},
                                               "spec": {"accessModes": ["ReadWriteOnce"],
                                                        "resources": {"requests": {"storage": "1Gi"}}}}]}});
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                value["spec"][k] = v;
            }
        }
        serde_json::from_value(value).unwrap()
    }

    fn pod(name: &str, revision: &str, phase: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": format!("{name}-uid"),
                         "labels": {"app": "web", REVISION_LABEL: revision}},
            "spec": {"containers": []},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
        .unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:01:00Z".parse().unwrap()
    }

    #[test]
    fn ordinals_are_read_from_the_last_dash_of_a_pod_name() {
        assert_eq!(parent_and_ordinal("web-12"), Some(("web", 12)));
        assert_eq!(parent_and_ordinal("my-web-0"), Some(("my-web", 0)));
        assert_eq!(parent_and_ordinal("web-"), None);
        assert_eq!(parent_and_ordinal("web-x1"), None);
        assert_eq!(parent_and_ordinal("web"), None);
        let s = set(json!({}));
        assert_eq!(ordinal_in(&s, &pod("web-2", "r", "Running", true)), Some(2));
        assert_eq!(ordinal_in(&s, &pod("webby-2", "r", "Running", true)), None, "another set's pod");
    }

    #[test]
    fn a_new_pod_has_a_stable_identity_its_claims_and_the_revision_it_was_made_from() {
        let s = set(json!({}));
        let template = s.spec.as_ref().unwrap().template.clone();
        let p = new_pod(&s, &template, "web-abc", 1);
        assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!((l[POD_NAME_LABEL].as_str(), l[POD_INDEX_LABEL].as_str()), ("web-1", "1"));
        assert_eq!((l[REVISION_LABEL].as_str(), l["app"].as_str()), ("web-abc", "web"));
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("StatefulSet", "set-uid", Some(true)));
        assert!(identity_matches(&s, &p));
        let spec = p.spec.unwrap();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-1"), Some("nginx")));
        let volumes = spec.volumes.unwrap();
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["data", "cache"], "the claim replaces the template's volume of that name");
        assert_eq!(volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-web-1");
    }

    #[test]
    fn claims_are_named_per_template_set_and_ordinal_and_carry_the_selector_labels() {
        let s = set(json!({"ordinals": {"start": 5}}));
        let claims = claims_for(&s, 5);
        assert_eq!(claims.len(), 1);
        let (template, claim) = &claims[0];
        assert_eq!((template.as_str(), claim.metadata.name.as_deref()), ("data", Some("data-web-5")));
        let l = claim.metadata.labels.as_ref().unwrap();
        assert_eq!((l["tier"].as_str(), l["app"].as_str()), ("db", "web"));
        assert!(claim.status.is_none());
    }

    #[test]
    fn new_pods_below_the_partition_keep_the_current_revision() {
        let partitioned = set(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}));
        assert!(uses_current_revision(&partitioned, 1));
        assert!(!uses_current_revision(&partitioned, 2));
        let started = set(json!({"ordinals": {"start": 3},
                                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}));
        assert!(uses_current_revision(&started, 3) && !uses_current_revision(&started, 4));
        let on_delete = set(json!({"updateStrategy": {"type": "OnDelete"}}));
        assert!(!uses_current_revision(&on_delete, 0), "OnDelete recreates pods at the update revision");
    }

    #[test]
    fn status_counts_ready_current_and_updated_pods_and_completes_the_rollout() {
        let s = set(json!({}));
        let pods = [
            pod("web-0", "new", "Running", true),
            pod("web-1", "old", "Running", true),
            pod("web-2", "new", "Pending", false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let mut status = StatefulSetStatus {
            update_revision: Some("new".into()),
            current_revision: Some("old".into()),
            ..Default::default()
        };
        count_status(&mut status, &refs, 0, "old", "new", now());
        assert_eq!(status.replicas, 3);
        assert_eq!((status.ready_replicas, status.available_replicas), (Some(2), Some(2)));
        assert_eq!((status.current_replicas, status.updated_replicas), (Some(1), Some(2)));
        complete_rolling_update(&s, &mut status);
        assert_eq!(status.current_revision.as_deref(), Some("old"), "not every pod is updated and ready");
        let pods = [pod("web-0", "new", "Running", true), pod("web-1", "new", "Running", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        count_status(&mut status, &refs, 0, "old", "new", now());
        complete_rolling_update(&s, &mut status);
        assert_eq!((status.current_revision.as_deref(), status.current_replicas), (Some("new"), Some(2)));
    }

    #[test]
    fn availability_in_the_status_waits_for_min_ready_seconds() {
        let pods = [pod("web-0", "r", "Running", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let mut status = StatefulSetStatus::default();
        count_status(&mut status, &refs, 120, "r", "r", now());
        assert_eq!((status.ready_replicas, status.available_replicas), (Some(1), Some(0)));
    }

    #[test]
    fn a_rolling_update_deletes_the_highest_outdated_pod_at_or_above_the_partition() {
        let pods = [
            pod("web-0", "old", "Running", true),
            pod("web-1", "old", "Running", true),
            pod("web-2", "old", "Running", true),
        ];
        let slots: Vec<Option<&Pod>> = pods.iter().map(Some).collect();
        assert_eq!(rolling_update_victims(&slots, "new", 0, 1), vec![2]);
        assert_eq!(rolling_update_victims(&slots, "new", 2, 1), vec![2]);
        assert_eq!(rolling_update_victims(&slots, "new", 3, 1), Vec::<usize>::new(), "everything is partitioned off");
        assert_eq!(rolling_update_victims(&slots, "new", 0, 2), vec![2, 1], "maxUnavailable 2: two at once");
        let updated = [
            pod("web-0", "old", "Running", true),
            pod("web-1", "old", "Running", true),
            pod("web-2", "new", "Running", true),
        ];
        let slots: Vec<Option<&Pod>> = updated.iter().map(Some).collect();
        assert_eq!(rolling_update_victims(&slots, "new", 0, 1), vec![1], "web-2 is done; web-1 is next");
    }

    #[test]
    fn a_rolling_update_waits_while_pods_are_unavailable() {
        let pods = [
            pod("web-0", "old", "Running", true),
            pod("web-1", "old", "Running", true),
            pod("web-2", "new", "Pending", false),
        ];
        let slots: Vec<Option<&Pod>> = pods.iter().map(Some).collect();
        assert!(rolling_update_victims(&slots, "new", 0, 1).is_empty());
        assert_eq!(rolling_update_victims(&slots, "new", 0, 2), vec![1], "one more may go with maxUnavailable 2");
        let missing: Vec<Option<&Pod>> = vec![Some(&pods[0]), None];
        assert!(rolling_update_victims(&missing, "new", 0, 1).is_empty(), "a pod not yet created is unavailable");
    }

    #[test]
    fn max_unavailable_is_at_least_one_and_percentages_round_down() {
        let with = |v: Value| {
            set(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": v}}}))
        };
        assert_eq!(max_unavailable(&set(json!({}))), 1);
        assert_eq!(max_unavailable(&with(json!(2))), 2);
        assert_eq!(max_unavailable(&with(json!("70%"))), 2, "70% of 3 rounds down");
        assert_eq!(max_unavailable(&with(json!("10%"))), 1);
    }

    #[test]
    fn scaling_down_in_order_deletes_one_pod_at_a_time_and_waits_for_terminating_ones() {
        let p4 = pod("web-4", "r", "Running", true);
        let p3 = pod("web-3", "r", "Running", true);
        let condemned = [&p4, &p3];
        assert_eq!(condemned_victims(&condemned, None, true, 0, now()), vec![0]);
        assert_eq!(condemned_victims(&condemned, None, false, 0, now()), vec![0, 1], "Parallel: all at once");
        let mut terminating = pod("web-4", "r", "Running", true);
        terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        let condemned = [&terminating, &p3];
        assert!(condemned_victims(&condemned, None, true, 0, now()).is_empty());
        assert_eq!(condemned_victims(&condemned, None, false, 0, now()), vec![1]);
        let unready = pod("web-4", "r", "Running", false);
        let condemned = [&unready, &p3];
        assert!(condemned_victims(&condemned, Some("web-1"), true, 0, now()).is_empty(), "web-1 is unhealthy first");
        assert_eq!(condemned_victims(&condemned, Some("web-4"), true, 0, now()), vec![0]);
    }

    #[test]
    fn retention_policy_decides_which_owners_a_claim_gets() {
        let policy = |deleted: &str, scaled: &str| {
            set(json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": deleted, "whenScaled": scaled}}))
        };
        let p = pod("web-1", "r", "Running", true);
        let claim: PersistentVolumeClaim =
            serde_json::from_value(json!({"metadata": {"name": "data-web-1", "namespace": "d"}})).unwrap();
        let uids = |refs: &[OwnerReference]| refs.iter().map(|r| r.uid.clone()).collect::<Vec<_>>();
        let retain = policy("Retain", "Retain");
        assert!(claim_owners_up_to_date(&claim, &retain, &p, false));
        let on_delete = policy("Delete", "Retain");
        assert!(!claim_owners_up_to_date(&claim, &on_delete, &p, false));
        assert_eq!(uids(&claim_owners(&claim, &on_delete, &p, true)), ["set-uid"]);
        let both = policy("Delete", "Delete");
        assert_eq!(uids(&claim_owners(&claim, &both, &p, false)), ["set-uid"]);
        let scaled = claim_owners(&claim, &both, &p, true);
        assert_eq!(uids(&scaled), ["web-1-uid"], "a scaled-down pod's claim goes with the pod");
        assert_eq!((scaled[0].kind.as_str(), scaled[0].controller), ("Pod", Some(true)));
        let owned = PersistentVolumeClaim {
            metadata: ObjectMeta { owner_references: Some(scaled), ..claim.metadata.clone() },
            ..claim.clone()
        };
        assert!(claim_owners_up_to_date(&owned, &both, &p, true));
        assert!(!claim_owners_up_to_date(&owned, &both, &p, false), "scaled back up: the set owns it again");
        let scale_only = policy("Retain", "Delete");
        assert!(claim_owners(&claim, &scale_only, &p, false).is_empty());
    }

    #[test]
    fn claims_controlled_by_something_else_are_left_alone() {
        let both =
            set(json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"}}));
        let p = pod("web-1", "r", "Running", true);
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "data-web-1",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "other", "controller": true}]}}))
        .unwrap();
        assert!(claim_owners_up_to_date(&claim, &both, &p, false));
        assert_eq!(claim_owners(&claim, &both, &p, false).len(), 1, "only the other controller stays");
    }

    #[test]
    fn revision_data_is_the_template_patch_that_undo_applies() {
        let s = set(json!({}));
        let data = revision_data(&s);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1");
        assert_eq!(data.as_object().unwrap().len(), 1);
        assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["resources"], json!({}));
        let revision = new_revision(&s, data, 4, 0);
        assert_eq!(revision.revision, 4);
        assert!(revision.metadata.name.as_deref().unwrap().starts_with("web-"));
        assert_eq!(revision.metadata.labels.as_ref().unwrap()["app"], "web");
        let template = revision_template(&revision).unwrap();
        let original = s.spec.unwrap().template;
        assert_eq!(template.metadata, original.metadata, "the template comes back whole");
        let (spec, original) = (template.spec.unwrap(), original.spec.unwrap());
        assert_eq!((&spec.volumes, &spec.containers[0].image), (&original.volumes, &original.containers[0].image));
    }

    #[test]
    fn event_verbs_are_title_cased_for_reasons() {
        assert_eq!(title_case("create"), "Create");
        assert_eq!(title_case(""), "");
    }
}
