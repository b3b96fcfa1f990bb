//! The DaemonSet controller: one pod of a DaemonSet on every node that should run it, as
//! kube-controller-manager's does, so that `kubectl rollout status|history|undo daemonset` work.
//!
//! - A node should run the pod when the template's `nodeName` (if any) names it, its `nodeSelector` and
//!   required node affinity match the node, and the pod tolerates the node's NoSchedule and NoExecute taints.
//!   A pod already there may stay while it tolerates the NoExecute taints. Every pod gets the tolerations
//!   kube gives DaemonSet pods ([`add_default_tolerations`]).
//! - Pods are created unbound, pinned to their node by required node affinity `matchFields metadata.name In
//!   [node]` (which replaces the template's terms, already checked here): the scheduler binds them. A pod's
//!   node is its `nodeName`, or that affinity while it is unbound.
//! - Excess pods on a node are deleted (the oldest stays), failed pods are deleted with a per-node backoff and
//!   recreated, pods on nodes that should no longer run them are deleted, and so are unbound pods pinned to
//!   nodes that no longer exist.
//! - Pods carry `controller-revision-hash` and `pod-template-generation` labels and a controller reference;
//!   matching orphans are adopted, owned pods that stop matching released.
//! - ControllerRevisions keep the history of templates: one per distinct template, whose data is the patch
//!   `{"spec":{"template":{…,"$patch":"replace"}}}`, numbered; a template that comes back reuses its revision
//!   with a new number; old unused revisions beyond `revisionHistoryLimit` are deleted.
//! - RollingUpdate replaces old pods within `maxUnavailable` (rounded up), or with `maxSurge` starts the new
//!   pod first and deletes the old one once the new one is available (`minReadySeconds`); OnDelete replaces
//!   pods only when they are deleted.
//! - Status: desired/current/updated numbers scheduled, numberMisscheduled, numberReady, numberAvailable,
//!   numberUnavailable, observedGeneration, collisionCount.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::join_all;
use gantry_api::selector::LabelSelector;
use gantry_scheduler::plugins::node_affinity::RequiredNodeAffinity;
use gantry_scheduler::plugins::taint_toleration::find_untolerated_taint;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::claim::{ClaimError, claim, controller_reference};
use crate::events::{EventSink, EventType, reference_to};
use crate::expectations::Expectations;
use crate::history::{self, CONTROLLER_REVISION_HASH, HistoryError};
use crate::informer::{Change, Informer};
use crate::meta::{key_of, labels, name_of};
use crate::pods::{controller_ref, is_available, is_ready};
use crate::queue::{Requeue, WorkQueue, run_workers};

/// The pod label with the DaemonSet's template generation when the pod was made.
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";

/// The DaemonSet annotation holding its template generation (kept by the API server).
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// Pods created or deleted per sync, at most (kube's DaemonSet `burstReplicas`).
pub const BURST_REPLICAS: usize = 250;

/// The first delay before deleting another failed pod on the same node.
pub const FAILED_POD_BACKOFF: Duration = Duration::from_secs(1);

/// The longest delay before deleting another failed pod on the same node.
pub const MAX_FAILED_POD_BACKOFF: Duration = Duration::from_secs(15 * 60);

const NO_SCHEDULE: &str = "NoSchedule";
const NO_EXECUTE: &str = "NoExecute";

/// The taints every DaemonSet pod tolerates (`Exists`, without `tolerationSeconds`), with their effects.
const DEFAULT_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", NO_EXECUTE),
    ("node.kubernetes.io/unreachable", NO_EXECUTE),
    ("node.kubernetes.io/disk-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/memory-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/pid-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/unschedulable", NO_SCHEDULE),
];

/// The taint host-network DaemonSet pods also tolerate: they do not need the pod network.
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Creating pods failed.
    #[error("creating pods for daemon set {key}: {source}")]
    Create {
        /// The DaemonSet.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting pods failed.
    #[error("deleting pods of daemon set {key}: {source}")]
    Delete {
        /// The DaemonSet.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Another API call failed.
    #[error("{what} for daemon set {key}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The DaemonSet.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Adopting or releasing pods or revisions failed.
    #[error("claiming objects for daemon set {key}: {source}")]
    Claim {
        /// The DaemonSet.
        key: String,
        /// The cause.
        #[source]
        source: ClaimError,
    },
    /// Keeping the ControllerRevisions failed.
    #[error("keeping the history of daemon set {key}: {source}")]
    History {
        /// The DaemonSet.
        key: String,
        /// The cause.
        #[source]
        source: HistoryError,
    },
}

fn template_of(ds: &DaemonSet) -> Option<&PodTemplateSpec> {
    ds.spec.as_ref().map(|s| &s.template)
}

fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// The DaemonSet's template generation, from the annotation the API server keeps.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata.annotations.as_ref()?.get(TEMPLATE_GENERATION_ANNOTATION)?.parse().ok()
}

fn is_on_delete(ds: &DaemonSet) -> bool {
    ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("OnDelete")
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

/// Adds or updates a toleration in `spec`, as kube's `AddOrUpdateTolerationInPodSpec`: a toleration with the
/// same key, operator, value and effect is replaced, otherwise it is appended.
fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let same = |t: &Toleration| {
        field(&t.key) == field(&toleration.key)
            && field(&t.operator) == field(&toleration.operator)
            && field(&t.value) == field(&toleration.value)
            && field(&t.effect) == field(&toleration.effect)
    };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let mut found = false;
    for existing in tolerations.iter_mut().filter(|t| same(t)) {
        *existing = toleration.clone();
        found = true;
    }
    if !found {
        tolerations.push(toleration);
    }
}

/// Adds the tolerations kube gives every DaemonSet pod: node problems (not ready, unreachable: NoExecute
/// without `tolerationSeconds`, so that they are never evicted for them), pressure and cordoning
/// (NoSchedule), and a missing pod network for host-network pods.
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let network = host_network.then_some((NETWORK_UNAVAILABLE, NO_SCHEDULE));
    for (key, effect) in DEFAULT_TOLERATIONS.into_iter().chain(network) {
        add_or_update_toleration(
            spec,
            Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Toleration::default()
            },
        );
    }
}

/// What a node means for a DaemonSet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeFit {
    /// A pod should run there: a missing one is created.
    pub should_run: bool,
    /// A pod already there may stay (it may be true when `should_run` is not: a NoSchedule taint added after
    /// the pod started keeps new pods away but lets the running one be).
    pub should_continue_running: bool,
}

/// Where a DaemonSet's pods may run, read once from its template and checked against each node.
#[derive(Clone, Debug)]
pub struct Placement {
    node_name: Option<String>,
    affinity: RequiredNodeAffinity,
    tolerations: Vec<Toleration>,
}

impl Placement {
    /// The placement of the DaemonSet's pods (its template with the default tolerations).
    pub fn of(ds: &DaemonSet) -> Placement {
        let spec = template_of(ds).and_then(|t| t.spec.as_ref());
        let mut probe = PodSpec {
            node_selector: spec.and_then(|s| s.node_selector.clone()),
            affinity: spec.and_then(|s| s.affinity.clone()),
            tolerations: spec.and_then(|s| s.tolerations.clone()),
            host_network: spec.and_then(|s| s.host_network),
            ..PodSpec::default()
        };
        add_default_tolerations(&mut probe);
        let tolerations = probe.tolerations.take().unwrap_or_default();
        let affinity = RequiredNodeAffinity::from_pod(&Pod { spec: Some(probe), ..Pod::default() });
        Placement { node_name: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()), affinity, tolerations }
    }

    /// Whether the DaemonSet's pod should run, or may keep running, on `node` (kube's
    /// `NodeShouldRunDaemonPod`).
    pub fn fit(&self, node: &Node) -> NodeFit {
        let name = name_of(&node.metadata);
        if self.node_name.as_deref().is_some_and(|n| n != name) || !self.affinity.matches(node) {
            return NodeFit::default();
        }
        let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
        let blocking = |t: &k8s_openapi::api::core::v1::Taint| t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE;
        if find_untolerated_taint(taints, &self.tolerations, blocking, false).is_none() {
            return NodeFit { should_run: true, should_continue_running: true };
        }
        let evicting = find_untolerated_taint(taints, &self.tolerations, |t| t.effect == NO_EXECUTE, false);
        NodeFit { should_run: false, should_continue_running: evicting.is_none() }
    }
}

/// The node a DaemonSet pod is for: its `nodeName` once bound, before that the node its required affinity
/// pins it to (`matchFields metadata.name In [node]`, one value).
pub fn target_node(pod: &Pod) -> Option<&str> {
    if let Some(node) = bound_node(pod) {
        return Some(node);
    }
    let required = pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    let requirement = required
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")?;
    match requirement.values.as_deref() {
        Some([node]) => Some(node.as_str()),
        _ => None,
    }
}

/// The pod's affinity pinned to `node`: the required node affinity becomes the single term `matchFields
/// metadata.name In [node]` (the controller already checked the template's terms against the node); the
/// rest of the affinity is kept.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// The template new pods are made from: the DaemonSet's, with the default tolerations, the template
/// generation and the revision hash labels.
pub fn creation_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut template = template_of(ds).cloned().unwrap_or_default();
    add_default_tolerations(template.spec.get_or_insert_with(PodSpec::default));
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    if let Some(generation) = template_generation(ds) {
        labels.insert(POD_TEMPLATE_GENERATION.into(), generation.to_string());
    }
    if !hash.is_empty() {
        labels.insert(CONTROLLER_REVISION_HASH.into(), hash.to_string());
    }
    template
}

/// A new pod for `node` from a [`creation_template`].
pub fn new_pod(ds: &DaemonSet, template: &PodTemplateSpec, node: &str) -> Pod {
    let meta = template.metadata.as_ref();
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", name_of(&ds.metadata))),
            namespace: ds.metadata.namespace.clone(),
            labels: meta.and_then(|m| m.labels.clone()),
            annotations: meta.and_then(|m| m.annotations.clone()),
            finalizers: meta.and_then(|m| m.finalizers.clone()),
            owner_references: Some(vec![controller_reference(ds)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether the pod runs the DaemonSet's current template: its revision hash, or its template generation.
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = labels(&pod.metadata);
    let hash_matches = !hash.is_empty() && labels.get(CONTROLLER_REVISION_HASH).is_some_and(|h| h == hash);
    let generation_matches =
        generation.is_some_and(|g| labels.get(POD_TEMPLATE_GENERATION).is_some_and(|l| *l == g.to_string()));
    hash_matches || generation_matches
}

/// An int-or-percent of `total`, rounded up (how DaemonSets scale `maxSurge` and `maxUnavailable`).
fn scaled(value: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) {
            Some(percent) => (percent * f64::from(total) / 100.0).ceil() as i32,
            None => s.parse().unwrap_or(default),
        },
    }
}

/// `(maxSurge, maxUnavailable)` of a DaemonSet that should run on `desired` nodes; OnDelete has neither.
/// When a RollingUpdate would allow neither, one unavailable pod is allowed, as in kube, so that it can move.
pub fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    if is_on_delete(ds) {
        return (0, 0);
    }
    let rolling = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), desired, 0);
    let unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), desired, 1);
    if desired > 0 && surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

/// Whether the DaemonSet surges: new pods start before old ones go.
fn allows_surge(ds: &DaemonSet) -> bool {
    surge_and_unavailable(ds, 1).0 > 0
}

/// Scheduled pods first, then older first, then by name (kube's `podByCreationTimestampAndPhase`).
fn oldest_first(pods: &mut [Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        bound_node(b)
            .is_some()
            .cmp(&bound_node(a).is_some())
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// Per `(DaemonSet, node)`, when a failed pod was last deleted and how long to wait before deleting the next
/// one: a node agent that keeps rejecting the pod must not make the controller spin (kube's
/// `failedPodsBackoff`).
#[derive(Debug, Default)]
pub struct FailedPodBackoff {
    entries: HashMap<String, (Duration, Instant)>,
}

impl FailedPodBackoff {
    /// How long is left to wait at `now`, if the key is backing off.
    pub fn remaining(&self, key: &str, now: Instant) -> Option<Duration> {
        let (delay, since) = self.entries.get(key)?;
        let elapsed = now.saturating_duration_since(*since);
        (elapsed < *delay).then(|| *delay - elapsed)
    }

    /// Records a deletion at `now`: the first waits [`FAILED_POD_BACKOFF`], each next one twice as long up to
    /// [`MAX_FAILED_POD_BACKOFF`]; after a quiet spell of twice the maximum, it starts over.
    pub fn next(&mut self, key: &str, now: Instant) {
        let delay = match self.entries.get(key) {
            Some((delay, since)) if now.saturating_duration_since(*since) <= 2 * MAX_FAILED_POD_BACKOFF => {
                (*delay * 2).min(MAX_FAILED_POD_BACKOFF)
            }
            _ => FAILED_POD_BACKOFF,
        };
        self.entries.insert(key.to_string(), (delay, now));
    }

    /// Forgets entries quiet for twice the maximum delay.
    pub fn collect(&mut self, now: Instant) {
        self.entries.retain(|_, (_, since)| now.saturating_duration_since(*since) <= 2 * MAX_FAILED_POD_BACKOFF);
    }
}

/// What a sync does to pods.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create_on: Vec<String>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    /// Failed pods found (`(pod, node)`), reported as `FailedDaemonPod`.
    pub failed: Vec<(String, String)>,
    /// Succeeded pods found (`(pod, node)`), reported as `SucceededDaemonPod`.
    pub succeeded: Vec<(String, String)>,
    /// When to look again (a failed pod still backing off).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    fn requeue(&mut self, delay: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(delay, |d| d.min(delay)));
    }
}

/// The DaemonSet's pods by node ([`target_node`]), leaving out finished pods already being deleted and pods
/// pinned to no node.
pub fn pods_by_node(pods: &[Arc<Pod>]) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in pods {
        if is_terminal(pod) && pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = target_node(pod) {
            by_node.entry(node.to_string()).or_default().push(Arc::clone(pod));
        }
    }
    by_node
}

/// What the DaemonSet needs on each node (kube's `manage` and `podsShouldBeOnNode`): a pod where one should
/// run and none does; failed and succeeded pods deleted (failed ones with backoff); of several running pods
/// on a node the oldest kept (with surge: the oldest new one, and the oldest old one while the new one is not
/// yet available); pods on nodes that should not keep them deleted, and unbound pods pinned to nodes that are
/// gone.
#[allow(clippy::too_many_arguments)]
pub fn plan_manage(
    ds: &DaemonSet,
    placement: &Placement,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    backoff: &mut FailedPodBackoff,
    now: Instant,
    wall_now: jiff::Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let surge = allows_surge(ds);
    let min_ready = min_ready_seconds(ds);
    let uid = ds.metadata.uid.as_deref().unwrap_or("");
    let observed = ds.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
    let mut node_names = HashSet::new();
    for node in nodes {
        let node_name = name_of(&node.metadata);
        node_names.insert(node_name);
        let fit = placement.fit(node);
        let pods = by_node.get(node_name);
        match pods {
            None if fit.should_run => plan.create_on.push(node_name.to_string()),
            _ if fit.should_continue_running => {
                let mut running = Vec::new();
                for pod in pods.into_iter().flatten().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                    match phase(pod) {
                        "Failed" => {
                            let key = format!("{uid}/{observed}/{node_name}");
                            if let Some(delay) = backoff.remaining(&key, now) {
                                plan.requeue(delay);
                                continue;
                            }
                            backoff.next(&key, now);
                            let pod_name = name_of(&pod.metadata).to_string();
                            plan.failed.push((pod_name.clone(), node_name.to_string()));
                            plan.delete.push(pod_name);
                        }
                        "Succeeded" => {
                            let pod_name = name_of(&pod.metadata).to_string();
                            plan.succeeded.push((pod_name.clone(), node_name.to_string()));
                            plan.delete.push(pod_name);
                        }
                        _ => running.push(Arc::clone(pod)),
                    }
                }
                oldest_first(&mut running);
                if !surge {
                    // The oldest pod stays; a node left with none gets one at the next sync.
                    plan.delete.extend(running.iter().skip(1).map(|p| name_of(&p.metadata).to_string()));
                    continue;
                }
                if running.is_empty() {
                    if fit.should_run {
                        plan.create_on.push(node_name.to_string());
                    }
                    continue;
                }
                let (mut oldest_new, mut oldest_old) = (None, None);
                for pod in &running {
                    let is_new = labels(&pod.metadata).get(CONTROLLER_REVISION_HASH).is_some_and(|h| h == hash);
                    let slot = if is_new { &mut oldest_new } else { &mut oldest_old };
                    if slot.is_none() {
                        *slot = Some(pod);
                    } else {
                        plan.delete.push(name_of(&pod.metadata).to_string());
                    }
                }
                // Two pods may share a node only while the old one is ready and the new one not yet available.
                if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                    && (!is_ready(old) || is_available(new, min_ready, wall_now))
                {
                    plan.delete.push(name_of(&old.metadata).to_string());
                }
            }
            Some(pods) => {
                plan.delete.extend(
                    pods.iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .map(|p| name_of(&p.metadata).into()),
                );
            }
            None => {}
        }
    }
    for (node, pods) in by_node {
        if node_names.contains(node.as_str()) {
            continue;
        }
        plan.delete.extend(pods.iter().filter(|p| bound_node(p).is_none()).map(|p| name_of(&p.metadata).into()));
    }
    plan
}

/// A node's pod of the current template and its pod of an older one.
type NewAndOld<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// The new and the old pod on a node, if there is at most one of each (pods being deleted left out).
fn updated_pods_on_node<'a>(pods: &'a [Arc<Pod>], hash: &str, generation: Option<i64>) -> Option<NewAndOld<'a>> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let slot = if is_updated(pod, hash, generation) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// The pods a RollingUpdate replaces now (kube's `rollingUpdate`).
///
/// Without surge, old pods are deleted (the next sync creates their replacements) while fewer than
/// `maxUnavailable` pods are unavailable; old pods that are unavailable anyway go at once. With surge, new
/// pods are created beside available old ones, at most `maxSurge` at a time (at once beside unavailable old
/// ones), and old pods go once their new pod is available; old pods on nodes that should no longer run them
/// go only as far as availability above the desired number allows.
#[allow(clippy::too_many_arguments)]
pub fn plan_rolling_update(
    ds: &DaemonSet,
    placement: &Placement,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: jiff::Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let generation = template_generation(ds);
    let min_ready = min_ready_seconds(ds);
    let available = |pod: &Pod| is_available(pod, min_ready, now);
    let fits: HashMap<&str, NodeFit> = nodes.iter().map(|n| (name_of(&n.metadata), placement.fit(n))).collect();
    let mut by_node: BTreeMap<&str, &[Arc<Pod>]> = by_node.iter().map(|(n, p)| (n.as_str(), p.as_slice())).collect();
    let mut desired = 0;
    for node in nodes {
        let name = name_of(&node.metadata);
        if fits.get(name).is_some_and(|f| f.should_run) {
            desired += 1;
            by_node.entry(name).or_insert(&[]);
        }
    }
    let (max_surge, max_unavailable) = surge_and_unavailable(ds, desired);
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replacements = Vec::new();
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            let Some((new, old)) = updated_pods_on_node(pods, hash, generation) else {
                // Excess pods: the manage step cleans the node up; until then it counts as unavailable.
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        replacements.push(name_of(&old.metadata).to_string());
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(name_of(&old.metadata).to_string());
                    }
                }
            }
        }
        let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0).min(candidates.len());
        plan.delete = replacements;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }
    let mut surging = 0;
    let mut available_count = 0;
    let mut allowed_new = Vec::new();
    let mut candidate_new = Vec::new();
    let mut misplaced = Vec::new();
    for (node, pods) in &by_node {
        let Some((new, old)) = updated_pods_on_node(pods, hash, generation) else {
            surging += 1;
            continue;
        };
        match (old, new) {
            (Some(old), _) if available(old) => available_count += 1,
            (None, Some(new)) if available(new) => available_count += 1,
            _ => {}
        }
        let should_run = fits.get(node).is_some_and(|f| f.should_run);
        match (old, new) {
            (None, _) => {}
            (Some(old), None) => {
                if !available(old) {
                    if should_run {
                        allowed_new.push(node.to_string());
                    } else {
                        plan.delete.push(name_of(&old.metadata).to_string());
                    }
                } else if !should_run {
                    misplaced.push(name_of(&old.metadata).to_string());
                } else if surging < max_surge {
                    candidate_new.push(node.to_string());
                }
            }
            (Some(old), Some(new)) => {
                if available(new) {
                    plan.delete.push(name_of(&old.metadata).to_string());
                } else {
                    surging += 1;
                }
            }
        }
    }
    // With surge users expect full availability: a pod on a node that should no longer run it goes only once
    // enough pods are available elsewhere.
    let deletable = usize::try_from((available_count - desired).max(0)).unwrap_or(0).min(misplaced.len());
    plan.delete.extend(misplaced.into_iter().take(deletable));
    let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0).min(candidate_new.len());
    plan.create_on = allowed_new;
    plan.create_on.extend(candidate_new.into_iter().take(room));
    plan
}

/// The status numbers of a DaemonSet (kube's `updateDaemonSetStatus`): over the nodes that should run it,
/// how many have a pod, whose oldest pod is ready, available and updated; and how many nodes that should not
/// run it have one.
pub fn compute_status(
    ds: &DaemonSet,
    placement: &Placement,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: jiff::Timestamp,
) -> DaemonSetStatus {
    let generation = template_generation(ds);
    let min_ready = min_ready_seconds(ds);
    let mut status = DaemonSetStatus::default();
    let (mut available, mut updated) = (0, 0);
    for node in nodes {
        let pods = by_node.get(name_of(&node.metadata)).filter(|p| !p.is_empty());
        if !placement.fit(node).should_run {
            if pods.is_some() {
                status.number_misscheduled += 1;
            }
            continue;
        }
        status.desired_number_scheduled += 1;
        let Some(pods) = pods else { continue };
        status.current_number_scheduled += 1;
        let mut pods = pods.clone();
        oldest_first(&mut pods);
        let pod = &pods[0];
        if is_ready(pod) {
            status.number_ready += 1;
            if is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_updated(pod, hash, generation) {
            updated += 1;
        }
    }
    status.number_available = Some(available);
    status.updated_number_scheduled = Some(updated);
    status.number_unavailable = Some(status.desired_number_scheduled - available);
    status
}

/// The data of the DaemonSet's revision of its current template.
fn revision_data(ds: &DaemonSet) -> serde_json::Value {
    history::pod_template_data(template_of(ds))
}

/// The controller.
pub struct DaemonSetController {
    client: Client,
    daemonsets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Arc<Informer<ControllerRevision>>,
    queue: Arc<WorkQueue>,
    expectations: Arc<Expectations>,
    backoff: Mutex<FailedPodBackoff>,
    events: EventSink,
}

impl DaemonSetController {
    /// The controller, following changes through the shared informers (pods and revisions need the
    /// `BY_CONTROLLER` index).
    pub fn new(
        client: Client,
        daemonsets: Arc<Informer<DaemonSet>>,
        pods: Arc<Informer<Pod>>,
        nodes: Arc<Informer<Node>>,
        revisions: Arc<Informer<ControllerRevision>>,
        events: EventSink,
    ) -> Arc<DaemonSetController> {
        let controller = Arc::new(DaemonSetController {
            client,
            daemonsets: Arc::clone(&daemonsets),
            pods: Arc::clone(&pods),
            nodes: Arc::clone(&nodes),
            revisions: Arc::clone(&revisions),
            queue: WorkQueue::new(),
            expectations: Arc::new(Expectations::new()),
            backoff: Mutex::new(FailedPodBackoff::default()),
            events,
        });
        let (queue, expectations) = (Arc::clone(&controller.queue), Arc::clone(&controller.expectations));
        daemonsets.on_change(move |change| match change {
            Change::Added(ds) | Change::Updated { new: ds, .. } => queue.add(key_of(&ds.metadata)),
            Change::Deleted(ds) => {
                let key = key_of(&ds.metadata);
                expectations.forget(&key);
                queue.add(key);
            }
        });
        let weak = Arc::downgrade(&controller);
        pods.on_change(move |change| {
            if let Some(controller) = weak.upgrade() {
                controller.pod_changed(change);
            }
        });
        let weak = Arc::downgrade(&controller);
        nodes.on_change(move |change| {
            if let Some(controller) = weak.upgrade() {
                controller.node_changed(change);
            }
        });
        let weak = Arc::downgrade(&controller);
        revisions.on_change(move |change| {
            let Some(controller) = weak.upgrade() else { return };
            match change {
                Change::Added(r) | Change::Deleted(r) => controller.enqueue_for(&r.metadata),
                Change::Updated { old, new } => {
                    controller.enqueue_for(&new.metadata);
                    if controller_ref(&old.metadata).map(|r| &r.uid) != controller_ref(&new.metadata).map(|r| &r.uid) {
                        controller.enqueue_for(&old.metadata);
                    }
                }
            }
        });
        controller
    }

    /// The DaemonSet controlling an object, if this informer knows it.
    fn owner_key(&self, meta: &ObjectMeta) -> Option<String> {
        let owner = controller_ref(meta).filter(|o| o.kind == "DaemonSet")?;
        let namespace = meta.namespace.as_deref().unwrap_or("");
        let ds = self.daemonsets.get(namespace, &owner.name)?;
        (ds.metadata.uid.as_deref() == Some(owner.uid.as_str())).then(|| key_of(&ds.metadata))
    }

    /// DaemonSets whose selector matches an orphan (they may adopt it).
    fn matching_sets(&self, meta: &ObjectMeta) -> Vec<String> {
        let namespace = meta.namespace.as_deref().unwrap_or("");
        self.daemonsets
            .list_namespace(namespace)
            .into_iter()
            .filter(|ds| {
                LabelSelector::from_k8s(ds.spec.as_ref().map(|s| &s.selector))
                    .is_ok_and(|s| !s.is_everything() && s.matches(labels(meta)))
            })
            .map(|ds| key_of(&ds.metadata))
            .collect()
    }

    /// Enqueues the owner of a ControllerRevision, or the DaemonSets that may adopt it.
    fn enqueue_for(&self, meta: &ObjectMeta) {
        match controller_ref(meta) {
            Some(_) => {
                if let Some(key) = self.owner_key(meta) {
                    self.queue.add(key);
                }
            }
            None => {
                for key in self.matching_sets(meta) {
                    self.queue.add(key);
                }
            }
        }
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                if let Some(key) = self.owner_key(&pod.metadata) {
                    if pod.metadata.deletion_timestamp.is_some() {
                        self.expectations.deletion_observed(&key);
                    } else {
                        self.expectations.creation_observed(&key);
                    }
                    self.queue.add(key);
                } else if controller_ref(&pod.metadata).is_none() && pod.metadata.deletion_timestamp.is_none() {
                    for key in self.matching_sets(&pod.metadata) {
                        self.queue.add(key);
                    }
                }
            }
            Change::Updated { old, new } => {
                if new.metadata.deletion_timestamp.is_some()
                    && old.metadata.deletion_timestamp.is_none()
                    && let Some(key) = self.owner_key(&new.metadata)
                {
                    self.expectations.deletion_observed(&key);
                }
                let old_owner = self.owner_key(&old.metadata);
                let new_owner = self.owner_key(&new.metadata);
                if old_owner != new_owner
                    && let Some(key) = old_owner
                {
                    self.queue.add(key);
                }
                match new_owner {
                    Some(key) => {
                        // A pod turning ready becomes available only minReadySeconds later.
                        let min_ready = self.min_ready_seconds(&key);
                        if min_ready > 0 && is_ready(new) && !is_ready(old) {
                            let delay = Duration::from_secs(u64::from(min_ready.unsigned_abs()) + 1);
                            self.queue.add_after(key.clone(), delay);
                        }
                        self.queue.add(key);
                    }
                    None if controller_ref(&new.metadata).is_none()
                        && (old.metadata.labels != new.metadata.labels || controller_ref(&old.metadata).is_some()) =>
                    {
                        for key in self.matching_sets(&new.metadata) {
                            self.queue.add(key);
                        }
                    }
                    None => {}
                }
            }
            Change::Deleted(pod) => {
                if let Some(key) = self.owner_key(&pod.metadata) {
                    if pod.metadata.deletion_timestamp.is_none() {
                        self.expectations.deletion_observed(&key);
                    }
                    self.queue.add(key);
                }
            }
        }
    }

    /// A node added, changed or removed: the DaemonSets it matters to look again.
    fn node_changed(&self, change: &Change<'_, Node>) {
        let sets = self.daemonsets.list();
        for ds in sets {
            let placement = Placement::of(&ds);
            let concerned = match change {
                Change::Added(node) => placement.fit(node).should_run,
                Change::Updated { old, new } => {
                    let relevant = old.metadata.labels != new.metadata.labels
                        || old.spec.as_ref().map(|s| (&s.taints, s.unschedulable))
                            != new.spec.as_ref().map(|s| (&s.taints, s.unschedulable));
                    relevant && placement.fit(old) != placement.fit(new)
                }
                Change::Deleted(node) => placement.fit(node).should_continue_running,
            };
            if concerned {
                self.queue.add(key_of(&ds.metadata));
            }
        }
    }

    fn min_ready_seconds(&self, key: &str) -> i32 {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        self.daemonsets.get(namespace, name).map_or(0, |ds| min_ready_seconds(&ds))
    }

    /// Reconciles DaemonSets with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.daemonsets.wait_synced(&shutdown).await;
        self.pods.wait_synced(&shutdown).await;
        self.nodes.wait_synced(&shutdown).await;
        self.revisions.wait_synced(&shutdown).await;
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("daemonset", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }

    /// One reconcile of the DaemonSet `namespace/name`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(ds) = self.daemonsets.get(namespace, name) else {
            self.expectations.forget(key);
            return Ok(Requeue::No);
        };
        let selector = match LabelSelector::from_k8s(ds.spec.as_ref().map(|s| &s.selector)) {
            Ok(s) if !s.is_everything() => s,
            Ok(_) => {
                let note = "This daemon set is selecting all pods. A non-empty selector is required.".to_string();
                self.events.publish(reference_to(ds.as_ref()), EventType::Warning, "SelectingAll", "Sync", note);
                return Ok(Requeue::No);
            }
            Err(err) => {
                tracing::warn!(key, error = %err, "daemonset: invalid selector");
                return Ok(Requeue::No);
            }
        };
        // Whether its revisions or its pods go first is up to the garbage collector: a DaemonSet being deleted
        // has no status worth computing.
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::No);
        }
        let (current, old, collisions) = self.construct_history(key, &ds, &selector).await?;
        let hash = labels(&current.metadata).get(CONTROLLER_REVISION_HASH).cloned().unwrap_or_default();
        let pods = self.claim_pods(key, &ds, &selector).await?;
        let by_node = pods_by_node(&pods);
        let nodes = self.nodes.list();
        let placement = Placement::of(&ds);
        if !self.expectations.satisfied(key) {
            return self.update_status(key, &ds, &placement, &nodes, &by_node, &hash, collisions, false).await;
        }
        let mut requeue = None;
        let updated = self.update(key, &ds, &placement, &nodes, &by_node, &hash, &old, &mut requeue).await;
        let status = self.update_status(key, &ds, &placement, &nodes, &by_node, &hash, collisions, true).await;
        updated?;
        let status = status?;
        Ok(match (requeue, status) {
            (Some(a), Requeue::After(b)) => Requeue::After(a.min(b)),
            (Some(a), Requeue::No) => Requeue::After(a),
            (None, status) => status,
        })
    }

    /// The pods the DaemonSet owns after adoption and release (pods being deleted are not adopted).
    async fn claim_pods(
        &self,
        key: &str,
        ds: &DaemonSet,
        selector: &LabelSelector,
    ) -> Result<Vec<Arc<Pod>>, SyncError> {
        let eligible = |pod: &Pod| controller_ref(&pod.metadata).is_some() || pod.metadata.deletion_timestamp.is_none();
        claim(&self.client, ds, selector, self.pods.as_ref(), eligible)
            .await
            .map_err(|source| SyncError::Claim { key: key.to_string(), source })
    }

    /// Manages pods, rolls them, and trims the history (kube's `updateDaemonSet`).
    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        key: &str,
        ds: &DaemonSet,
        placement: &Placement,
        nodes: &[Arc<Node>],
        by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
        hash: &str,
        old: &[Arc<ControllerRevision>],
        requeue: &mut Option<Duration>,
    ) -> Result<(), SyncError> {
        let plan = {
            let mut backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            backoff.collect(now);
            plan_manage(ds, placement, nodes, by_node, hash, &mut backoff, now, jiff::Timestamp::now())
        };
        *requeue = plan.requeue_after;
        let namespace = ds.metadata.namespace.as_deref().unwrap_or("");
        for (pod, node) in &plan.failed {
            let note = format!("Found failed daemon pod {namespace}/{pod} on node {node}, will try to kill it");
            self.events.publish(reference_to(ds), EventType::Warning, "FailedDaemonPod", "Sync", note);
        }
        for (pod, node) in &plan.succeeded {
            let note = format!("Found succeeded daemon pod {namespace}/{pod} on node {node}, will try to delete it");
            self.events.publish(reference_to(ds), EventType::Normal, "SucceededDaemonPod", "Sync", note);
        }
        let template = creation_template(ds, hash);
        self.sync_nodes(key, ds, &template, plan.delete, plan.create_on).await?;
        if self.expectations.satisfied(key) && !is_on_delete(ds) {
            let plan = plan_rolling_update(ds, placement, nodes, by_node, hash, jiff::Timestamp::now());
            self.sync_nodes(key, ds, &template, plan.delete, plan.create_on).await?;
        }
        self.cleanup_history(key, ds, by_node, old).await
    }

    /// Creates pods on `create_on` (in batches of 1, 2, 4, … so that a failing template fails fast) and
    /// deletes `delete`, at most [`BURST_REPLICAS`] of each, recording expectations.
    async fn sync_nodes(
        &self,
        key: &str,
        ds: &DaemonSet,
        template: &PodTemplateSpec,
        delete: Vec<String>,
        create_on: Vec<String>,
    ) -> Result<(), SyncError> {
        let creates = create_on.len().min(BURST_REPLICAS);
        let deletes = delete.len().min(BURST_REPLICAS);
        self.expectations.expect(key, creates as i64, deletes as i64);
        let namespace = ds.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut failure = None;
        let mut position = 0;
        let mut batch = 1;
        while position < creates {
            let size = batch.min(creates - position);
            let params = PostParams::default();
            let results = join_all(create_on[position..position + size].iter().map(|node| {
                let pod = new_pod(ds, template, node);
                let api = api.clone();
                let params = params.clone();
                async move { api.create(&params, &pod).await }
            }))
            .await;
            position += size;
            let mut failed = false;
            for result in results {
                match result {
                    Ok(pod) => {
                        let note = format!("Created pod: {}", name_of(&pod.metadata));
                        self.events.publish(reference_to(ds), EventType::Normal, "SuccessfulCreate", "Create", note);
                    }
                    Err(source) => {
                        // The informer will never show this one.
                        self.expectations.creation_observed(key);
                        let note = format!("Error creating: {source}");
                        self.events.publish(reference_to(ds), EventType::Warning, "FailedCreate", "Create", note);
                        failed = true;
                        failure.get_or_insert(SyncError::Create { key: key.to_string(), source });
                    }
                }
            }
            if failed {
                // The skipped creations are retried by a later sync.
                for _ in position..creates {
                    self.expectations.creation_observed(key);
                }
                break;
            }
            batch *= 2;
        }
        let results = join_all(delete.iter().take(deletes).map(|pod| {
            let api = api.clone();
            async move { (pod, api.delete(pod, &DeleteParams::default()).await) }
        }))
        .await;
        for (pod, result) in results {
            match result {
                Ok(_) => {
                    let note = format!("Deleted pod: {pod}");
                    self.events.publish(reference_to(ds), EventType::Normal, "SuccessfulDelete", "Delete", note);
                }
                Err(kube::Error::Api(e)) if e.code == 404 => self.expectations.deletion_observed(key),
                Err(source) => {
                    self.expectations.deletion_observed(key);
                    let note = format!("Error deleting: {source}");
                    self.events.publish(reference_to(ds), EventType::Warning, "FailedDelete", "Delete", note);
                    failure.get_or_insert(SyncError::Delete { key: key.to_string(), source });
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// The DaemonSet's revisions: the current one (created, or an older one renumbered as the newest) and the
    /// others, plus the collision count the current one was named with.
    async fn construct_history(
        &self,
        key: &str,
        ds: &DaemonSet,
        selector: &LabelSelector,
    ) -> Result<(ControllerRevision, Vec<Arc<ControllerRevision>>, Option<i32>), SyncError> {
        let history_err = |source: HistoryError| SyncError::History { key: key.to_string(), source };
        let api_err =
            |what: &'static str| move |source: kube::Error| SyncError::Api { what, key: key.to_string(), source };
        let namespace = ds.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), namespace);
        let mut revisions = claim(&self.client, ds, selector, self.revisions.as_ref(), |_: &ControllerRevision| true)
            .await
            .map_err(|source| SyncError::Claim { key: key.to_string(), source })?;
        // Revisions without the hash label get their name as the label, so that pods can point at them.
        for revision in &mut revisions {
            if labels(&revision.metadata).contains_key(CONTROLLER_REVISION_HASH) {
                continue;
            }
            let name = name_of(&revision.metadata).to_string();
            let patch = json!({"metadata": {"labels": {CONTROLLER_REVISION_HASH: name}}});
            let labelled = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err("labelling a revision"))?;
            *revision = Arc::new(labelled);
        }
        let data = revision_data(ds);
        let (mut current, mut old): (Vec<_>, Vec<_>) =
            revisions.into_iter().partition(|r| *history::data_of(r) == data);
        history::sort(&mut old);
        let next = history::next_revision(&old);
        let mut collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        let current = if current.is_empty() {
            let template_labels = template_of(ds).and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
            let mut revision = history::new_revision(
                &ds.metadata,
                controller_reference(ds),
                template_labels.unwrap_or_default(),
                data,
                next,
                collisions,
            );
            revision.metadata.annotations = ds.metadata.annotations.clone();
            let mut count = collisions.unwrap_or(0);
            let created = history::create_revision(&self.client, revision, &mut count).await.map_err(history_err)?;
            if Some(count) != collisions.or(Some(0)) {
                // The new count must be recorded before anything else is named with it.
                collisions = Some(count);
                let ds_api: Api<DaemonSet> = Api::namespaced(self.client.clone(), namespace);
                let patch = json!({"status": {"collisionCount": count}});
                ds_api
                    .patch_status(name_of(&ds.metadata), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(api_err("recording the collision count"))?;
            }
            created
        } else {
            history::sort(&mut current);
            // Duplicates of the current template: the newest stays, pods of the others move to it.
            let keep = current.pop().map(|r| (*r).clone()).unwrap_or_default();
            for duplicate in current {
                self.dedup(key, ds, &keep, &duplicate).await?;
            }
            if keep.revision < next {
                history::renumber(&self.client, &keep, next).await.map_err(history_err)?
            } else {
                keep
            }
        };
        Ok((current, old, collisions))
    }

    /// Moves the pods labelled with a duplicate revision's hash to the kept one's, then deletes the duplicate.
    async fn dedup(
        &self,
        key: &str,
        ds: &DaemonSet,
        keep: &ControllerRevision,
        duplicate: &ControllerRevision,
    ) -> Result<(), SyncError> {
        let namespace = ds.metadata.namespace.as_deref().unwrap_or("");
        let kept_hash = labels(&keep.metadata).get(CONTROLLER_REVISION_HASH).cloned().unwrap_or_default();
        let duplicate_hash = labels(&duplicate.metadata).get(CONTROLLER_REVISION_HASH);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let uid = ds.metadata.uid.as_deref().unwrap_or("");
        for pod in self.pods.by_index(crate::pods::BY_CONTROLLER, uid) {
            if labels(&pod.metadata).get(CONTROLLER_REVISION_HASH) != duplicate_hash {
                continue;
            }
            let patch = json!({"metadata": {"labels": {CONTROLLER_REVISION_HASH: kept_hash}}});
            match pods.patch(name_of(&pod.metadata), &PatchParams::default(), &Patch::Strategic(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(SyncError::Api { what: "relabelling a pod", key: key.to_string(), source }),
            }
        }
        let revisions: Api<ControllerRevision> = Api::namespaced(self.client.clone(), namespace);
        match revisions.delete(name_of(&duplicate.metadata), &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(SyncError::Api { what: "deleting a duplicate revision", key: key.to_string(), source }),
        }
    }

    /// Deletes the oldest old revisions no pod runs, until at most `revisionHistoryLimit` old ones are left
    /// (kube's `cleanupHistory`).
    async fn cleanup_history(
        &self,
        key: &str,
        ds: &DaemonSet,
        by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
        old: &[Arc<ControllerRevision>],
    ) -> Result<(), SyncError> {
        let limit = ds.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(history::DEFAULT_HISTORY_LIMIT);
        let excess = old.len().saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        if excess == 0 {
            return Ok(());
        }
        let live_hashes: HashSet<&str> = by_node
            .values()
            .flatten()
            .filter_map(|p| labels(&p.metadata).get(CONTROLLER_REVISION_HASH).map(String::as_str))
            .collect();
        let live: HashSet<String> = old
            .iter()
            .filter(|r| {
                labels(&r.metadata).get(CONTROLLER_REVISION_HASH).is_some_and(|h| live_hashes.contains(h.as_str()))
            })
            .map(|r| name_of(&r.metadata).to_string())
            .collect();
        // kube deletes up to `excess` of the unused ones, oldest first.
        let unused = old.len() - live.len();
        let keep = i32::try_from(unused.saturating_sub(excess)).unwrap_or(i32::MAX);
        history::truncate(&self.client, old, &live, keep)
            .await
            .map_err(|source| SyncError::History { key: key.to_string(), source })
    }

    /// Writes the status when it changed; with `observe`, the generation it reflects too. Asks to look again
    /// after `minReadySeconds` while ready pods wait to count as available.
    #[allow(clippy::too_many_arguments)]
    async fn update_status(
        &self,
        key: &str,
        ds: &DaemonSet,
        placement: &Placement,
        nodes: &[Arc<Node>],
        by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
        hash: &str,
        collisions: Option<i32>,
        observe: bool,
    ) -> Result<Requeue, SyncError> {
        let previous = ds.status.clone().unwrap_or_default();
        let mut status = compute_status(ds, placement, nodes, by_node, hash, jiff::Timestamp::now());
        status.observed_generation = if observe { ds.metadata.generation } else { previous.observed_generation };
        status.collision_count = collisions;
        status.conditions = previous.conditions.clone();
        if status != previous {
            let api: Api<DaemonSet> =
                Api::namespaced(self.client.clone(), ds.metadata.namespace.as_deref().unwrap_or(""));
            let patch = json!({"status": status});
            match api.patch_status(name_of(&ds.metadata), &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Requeue::No),
                Err(source) => return Err(SyncError::Api { what: "updating status", key: key.to_string(), source }),
            }
        }
        let min_ready = min_ready_seconds(ds);
        if min_ready > 0 && status.number_ready != status.number_available.unwrap_or(0) {
            return Ok(Requeue::After(Duration::from_secs(min_ready.unsigned_abs().into())));
        }
        Ok(Requeue::No)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::Value;

    const NOW: &str = "2026-01-01T00:10:00Z";

    fn ds(spec: Value) -> DaemonSet {
        let mut ds = json!({"metadata": {"name": "agent", "namespace": "d", "uid": "ds-uid", "generation": 2,
                                         "annotations": {TEMPLATE_GENERATION_ANNOTATION: "2"}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        if let Value::Object(spec) = spec {
            for (k, v) in spec {
                if k == "podSpec" {
                    for (pk, pv) in v.as_object().unwrap() {
                        ds["spec"]["template"]["spec"][pk] = pv.clone();
                    }
                } else {
                    ds["spec"][k] = v;
                }
            }
        }
        serde_json::from_value(ds).unwrap()
    }

    fn node(name: &str, labels: Value, taints: Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
                .unwrap(),
        )
    }

    fn nodes(names: &[&str]) -> Vec<Arc<Node>> {
        names.iter().map(|n| node(n, json!({}), json!([]))).collect()
    }

    /// A pod of the DaemonSet pinned to `node`; `ready_since` makes it ready (and available then).
    fn pod(name: &str, node: &str, hash: &str, ready_since: Option<&str>, created: &str) -> Arc<Pod> {
        let conditions = match ready_since {
            Some(t) => json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]),
            None => json!([]),
        };
        let affinity = pin_to_node(None, node);
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "d", "creationTimestamp": created,
                             "labels": {"app": "agent", CONTROLLER_REVISION_HASH: hash}},
                "spec": {"containers": [], "affinity": affinity},
                "status": {"phase": "Running", "conditions": conditions}}))
            .unwrap(),
        )
    }

    fn with_phase(pod: &Arc<Pod>, phase: &str) -> Arc<Pod> {
        let mut p = (**pod).clone();
        p.status.as_mut().unwrap().phase = Some(phase.into());
        Arc::new(p)
    }

    fn now() -> jiff::Timestamp {
        NOW.parse().unwrap()
    }

    fn plan(ds: &DaemonSet, nodes: &[Arc<Node>], pods: &[Arc<Pod>], hash: &str) -> Plan {
        let mut backoff = FailedPodBackoff::default();
        plan_manage(ds, &Placement::of(ds), nodes, &pods_by_node(pods), hash, &mut backoff, Instant::now(), now())
    }

    fn rolling(ds: &DaemonSet, nodes: &[Arc<Node>], pods: &[Arc<Pod>], hash: &str) -> Plan {
        plan_rolling_update(ds, &Placement::of(ds), nodes, &pods_by_node(pods), hash, now())
    }

    fn sorted(mut names: Vec<String>) -> Vec<String> {
        names.sort();
        names
    }

    #[test]
    fn nodes_run_the_pod_only_where_the_node_selector_and_required_affinity_match() {
        let set = ds(json!({"podSpec": {
            "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}}}));
        let placement = Placement::of(&set);
        let run = NodeFit { should_run: true, should_continue_running: true };
        assert_eq!(placement.fit(&node("n1", json!({"disk": "ssd", "zone": "a"}), json!([]))), run);
        assert_eq!(placement.fit(&node("n2", json!({"disk": "hdd", "zone": "a"}), json!([]))), NodeFit::default());
        assert_eq!(placement.fit(&node("n3", json!({"disk": "ssd", "zone": "c"}), json!([]))), NodeFit::default());
        assert_eq!(placement.fit(&node("n4", json!({}), json!([]))), NodeFit::default());
    }

    #[test]
    fn a_template_node_name_keeps_the_set_to_that_node() {
        let placement = Placement::of(&ds(json!({"podSpec": {"nodeName": "n2"}})));
        assert!(!placement.fit(&node("n1", json!({}), json!([]))).should_run);
        assert!(placement.fit(&node("n2", json!({}), json!([]))).should_run);
    }

    #[test]
    fn an_untolerated_no_schedule_taint_keeps_new_pods_away_but_lets_running_ones_stay() {
        let tainted = node("n", json!({}), json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]));
        assert_eq!(
            Placement::of(&ds(json!({}))).fit(&tainted),
            NodeFit { should_run: false, should_continue_running: true }
        );
        let tolerating = ds(json!({"podSpec": {"tolerations": [{"key": "dedicated", "operator": "Equal",
                                                                "value": "db", "effect": "NoSchedule"}]}}));
        assert!(Placement::of(&tolerating).fit(&tainted).should_run);
        let other_value = ds(json!({"podSpec": {"tolerations": [{"key": "dedicated", "value": "web"}]}}));
        assert!(!Placement::of(&other_value).fit(&tainted).should_run);
        let prefer = node("p", json!({}), json!([{"key": "x", "effect": "PreferNoSchedule"}]));
        assert!(Placement::of(&ds(json!({}))).fit(&prefer).should_run, "PreferNoSchedule does not keep pods away");
    }

    #[test]
    fn an_untolerated_no_execute_taint_removes_running_pods_too() {
        let tainted = node("n", json!({}), json!([{"key": "evict", "effect": "NoExecute"}]));
        assert_eq!(Placement::of(&ds(json!({}))).fit(&tainted), NodeFit::default());
        let tolerating = ds(json!({"podSpec": {"tolerations": [{"operator": "Exists"}]}}));
        assert!(Placement::of(&tolerating).fit(&tainted).should_run, "an empty key with Exists tolerates all");
    }

    #[test]
    fn daemon_set_pods_tolerate_node_problems_pressure_and_cordoning() {
        let placement = Placement::of(&ds(json!({})));
        for (key, effect) in [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ] {
            let tainted = node("n", json!({}), json!([{"key": key, "effect": effect}]));
            assert!(placement.fit(&tainted).should_run, "{key}:{effect}");
        }
        let no_network = node("n", json!({}), json!([{"key": NETWORK_UNAVAILABLE, "effect": "NoSchedule"}]));
        assert!(!placement.fit(&no_network).should_run, "pods on the pod network need it");
        let host_network = Placement::of(&ds(json!({"podSpec": {"hostNetwork": true}})));
        assert!(host_network.fit(&no_network).should_run, "host-network pods do not");
    }

    #[test]
    fn default_tolerations_replace_matching_ones_keep_the_others_and_do_not_pile_up() {
        let mut spec: PodSpec = serde_json::from_value(json!({"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "mine", "operator": "Exists"}]}))
        .unwrap();
        add_default_tolerations(&mut spec);
        add_default_tolerations(&mut spec);
        let tolerations = spec.tolerations.unwrap();
        assert_eq!(tolerations.len(), 7, "{tolerations:?}");
        assert_eq!(tolerations[0].key.as_deref(), Some("node.kubernetes.io/not-ready"));
        assert_eq!(tolerations[0].toleration_seconds, None, "DaemonSet pods are never evicted for a node problem");
        assert_eq!(tolerations[1].key.as_deref(), Some("mine"));
        assert!(tolerations.iter().all(|t| t.operator.as_deref() == Some("Exists")));
        assert!(!tolerations.iter().any(|t| t.key.as_deref() == Some(NETWORK_UNAVAILABLE)));
    }

    #[test]
    fn new_pods_are_pinned_to_their_node_by_match_fields_and_carry_the_labels_and_owner() {
        let set = ds(json!({"podSpec": {"affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}}}));
        let template = creation_template(&set, "abc");
        let p = new_pod(&set, &template, "n7");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        let labels = p.metadata.labels.clone().unwrap();
        assert_eq!(labels[CONTROLLER_REVISION_HASH], "abc");
        assert_eq!(labels[POD_TEMPLATE_GENERATION], "2");
        assert_eq!(labels["app"], "agent");
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("DaemonSet", "ds-uid", Some(true)));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name, None, "the scheduler binds the pod");
        let affinity = serde_json::to_value(spec.affinity.as_ref().unwrap()).unwrap();
        assert_eq!(
            affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]})
        );
        assert!(affinity.get("podAntiAffinity").is_some(), "the rest of the affinity stays");
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 6);
        assert_eq!(target_node(&p), Some("n7"));
        let mut bound = p.clone();
        bound.spec.as_mut().unwrap().node_name = Some("n8".into());
        assert_eq!(target_node(&bound), Some("n8"), "once bound, the node is the pod's");
        assert_eq!(target_node(&Pod::default()), None);
    }

    #[test]
    fn pods_are_updated_when_their_hash_or_their_template_generation_is_current() {
        let p = pod("p", "n", "abc", None, NOW);
        assert!(is_updated(&p, "abc", None));
        assert!(!is_updated(&p, "def", Some(3)));
        let mut by_generation = (*p).clone();
        by_generation.metadata.labels.as_mut().unwrap().insert(POD_TEMPLATE_GENERATION.into(), "3".into());
        assert!(is_updated(&by_generation, "def", Some(3)));
    }

    #[test]
    fn surge_and_unavailability_round_up_and_on_delete_has_neither() {
        let set = |surge: Value, unavailable: Value| {
            ds(json!({"updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}))
        };
        assert_eq!(surge_and_unavailable(&set(json!(0), json!("30%")), 5), (0, 2), "30% of 5 rounds up to 2");
        assert_eq!(surge_and_unavailable(&set(json!("10%"), json!(0)), 5), (1, 0));
        assert_eq!(surge_and_unavailable(&set(json!(0), json!(3)), 5), (0, 3));
        assert_eq!(surge_and_unavailable(&set(json!(0), json!(0)), 5), (0, 1), "a rollout must be able to move");
        assert_eq!(surge_and_unavailable(&set(json!(0), json!(0)), 0), (0, 0));
        assert_eq!(surge_and_unavailable(&ds(json!({})), 4), (0, 1), "the defaults");
        let on_delete = ds(json!({"updateStrategy": {"type": "OnDelete"}}));
        assert_eq!(surge_and_unavailable(&on_delete, 4), (0, 0));
    }

    #[test]
    fn manage_creates_missing_pods_and_deletes_excess_misplaced_and_orphaned_ones() {
        let set = ds(json!({"podSpec": {"nodeSelector": {"run": "yes"}}}));
        let all = vec![
            node("a", json!({"run": "yes"}), json!([])),
            node("b", json!({"run": "yes"}), json!([])),
            node("c", json!({}), json!([])),
        ];
        let pods = vec![
            pod("b-old", "b", "h", None, "2026-01-01T00:00:00Z"),
            pod("b-new", "b", "h", None, "2026-01-01T00:05:00Z"),
            pod("c-1", "c", "h", None, NOW),
            pod("gone-1", "gone", "h", None, NOW),
        ];
        let plan = plan(&set, &all, &pods, "h");
        assert_eq!(plan.create_on, ["a"]);
        assert_eq!(sorted(plan.delete), ["b-new", "c-1", "gone-1"], "the oldest pod on b stays");
    }

    #[test]
    fn failed_pods_are_deleted_and_reported_with_a_backoff_per_node() {
        let set = ds(json!({}));
        let all = nodes(&["a"]);
        let failed = with_phase(&pod("a-1", "a", "h", None, NOW), "Failed");
        let placement = Placement::of(&set);
        let by_node = pods_by_node(std::slice::from_ref(&failed));
        let mut backoff = FailedPodBackoff::default();
        let start = Instant::now();
        let first = plan_manage(&set, &placement, &all, &by_node, "h", &mut backoff, start, now());
        assert_eq!(first.delete, ["a-1"]);
        assert_eq!(first.failed, [("a-1".to_string(), "a".to_string())]);
        assert!(first.create_on.is_empty(), "the replacement comes once the failed pod is gone");
        let again = plan_manage(&set, &placement, &all, &by_node, "h", &mut backoff, start, now());
        assert!(again.delete.is_empty(), "backing off");
        assert_eq!(again.requeue_after, Some(FAILED_POD_BACKOFF));
        let later = start + FAILED_POD_BACKOFF;
        assert_eq!(plan_manage(&set, &placement, &all, &by_node, "h", &mut backoff, later, now()).delete, ["a-1"]);
        let succeeded = with_phase(&pod("a-2", "a", "h", None, NOW), "Succeeded");
        assert_eq!(plan(&set, &all, &[succeeded], "h").delete, ["a-2"]);
    }

    #[test]
    fn the_failed_pod_backoff_doubles_up_to_its_maximum_and_starts_over_after_a_quiet_spell() {
        let mut backoff = FailedPodBackoff::default();
        let t0 = Instant::now();
        assert_eq!(backoff.remaining("k", t0), None);
        backoff.next("k", t0);
        assert_eq!(backoff.remaining("k", t0), Some(Duration::from_secs(1)));
        backoff.next("k", t0 + Duration::from_secs(1));
        assert_eq!(backoff.remaining("k", t0 + Duration::from_secs(1)), Some(Duration::from_secs(2)));
        for _ in 0..20 {
            backoff.next("k", t0 + Duration::from_secs(1));
        }
        assert_eq!(backoff.remaining("k", t0 + Duration::from_secs(1)), Some(MAX_FAILED_POD_BACKOFF));
        let quiet = t0 + 3 * MAX_FAILED_POD_BACKOFF;
        backoff.next("k", quiet);
        assert_eq!(backoff.remaining("k", quiet), Some(FAILED_POD_BACKOFF));
        backoff.collect(quiet + 3 * MAX_FAILED_POD_BACKOFF);
        assert_eq!(backoff.remaining("k", quiet), None);
    }

    #[test]
    fn a_rolling_update_deletes_old_pods_within_max_unavailable() {
        let set = ds(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}}));
        let all = nodes(&["a", "b", "c", "d", "e"]);
        let ready = Some("2026-01-01T00:00:00Z");
        let mut pods = vec![
            pod("a-old", "a", "old", ready, NOW),
            pod("b-old", "b", "old", ready, NOW),
            pod("c-old", "c", "old", ready, NOW),
            pod("d-old", "d", "old", None, NOW),
            pod("e-new", "e", "new", ready, NOW),
        ];
        // d's old pod is unavailable anyway: it goes, and one more may.
        let plan = rolling(&set, &all, &pods, "new");
        assert_eq!(plan.delete.len(), 2, "{plan:?}");
        assert!(plan.delete.contains(&"d-old".to_string()));
        assert!(plan.create_on.is_empty(), "without surge the manage step creates replacements");
        // A new pod not yet ready counts against the budget.
        pods[4] = pod("e-new", "e", "new", None, NOW);
        pods[3] = pod("d-new", "d", "new", None, NOW);
        assert!(rolling(&set, &all, &pods, "new").delete.is_empty());
        // A node without a pod (its old one deleted, the new one not yet created) counts as unavailable.
        pods[3] = pod("d-new", "d", "new", ready, NOW);
        pods.remove(4);
        assert_eq!(rolling(&set, &all, &pods, "new").delete.len(), 1);
    }

    #[test]
    fn a_surging_rolling_update_starts_new_pods_first_and_deletes_old_ones_once_new_ones_are_available() {
        let set = ds(json!({"minReadySeconds": 30,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}));
        let all = nodes(&["a", "b", "c"]);
        let long_ready = Some("2026-01-01T00:00:00Z");
        let old = |n: &str| pod(&format!("{n}-old"), n, "old", long_ready, "2026-01-01T00:00:00Z");
        let pods = vec![old("a"), old("b"), old("c")];
        let first = rolling(&set, &all, &pods, "new");
        assert_eq!(first.create_on, ["a"], "one surge pod at a time");
        assert!(first.delete.is_empty());
        // a's new pod is ready but not yet for minReadySeconds: both stay, no other surge.
        let just_ready = pod("a-new", "a", "new", Some("2026-01-01T00:09:50Z"), NOW);
        let mut pods = vec![old("a"), just_ready, old("b"), old("c")];
        let waiting = rolling(&set, &all, &pods, "new");
        assert!(waiting.create_on.is_empty() && waiting.delete.is_empty(), "{waiting:?}");
        assert!(plan(&set, &all, &pods, "new").delete.is_empty(), "manage keeps both while the new one warms up");
        // Available: the old one goes, both in the rolling step and in manage.
        pods[1] = pod("a-new", "a", "new", long_ready, NOW);
        let done = rolling(&set, &all, &pods, "new");
        assert_eq!(done.delete, ["a-old"]);
        assert_eq!(plan(&set, &all, &pods, "new").delete, ["a-old"]);
        // An unavailable old pod gets its replacement beside it at once, beyond maxSurge.
        let pods = vec![pod("a-new", "a", "new", None, NOW), old("a"), pod("b-old", "b", "old", None, NOW), old("c")];
        let plan = rolling(&set, &all, &pods, "new");
        assert_eq!(plan.create_on, ["b"], "{plan:?}");
    }

    #[test]
    fn status_counts_desired_current_ready_available_updated_and_misscheduled_pods() {
        let set = ds(json!({"minReadySeconds": 60, "podSpec": {"nodeSelector": {"run": "yes"}}}));
        let all = vec![
            node("a", json!({"run": "yes"}), json!([])),
            node("b", json!({"run": "yes"}), json!([])),
            node("c", json!({"run": "yes"}), json!([])),
            node("d", json!({"run": "yes"}), json!([])),
            node("x", json!({}), json!([])),
        ];
        let pods = vec![
            pod("a-1", "a", "new", Some("2026-01-01T00:00:00Z"), NOW),
            pod("b-1", "b", "new", Some("2026-01-01T00:09:30Z"), NOW),
            pod("c-1", "c", "old", None, NOW),
            pod("x-1", "x", "new", None, NOW),
        ];
        let status = compute_status(&set, &Placement::of(&set), &all, &pods_by_node(&pods), "new", now());
        assert_eq!(status.desired_number_scheduled, 4);
        assert_eq!(status.current_number_scheduled, 3);
        assert_eq!(status.number_misscheduled, 1);
        assert_eq!(status.number_ready, 2);
        assert_eq!(status.number_available, Some(1), "b has been ready for 30 of the 60 seconds needed");
        assert_eq!(status.number_unavailable, Some(3));
        assert_eq!(status.updated_number_scheduled, Some(2));
    }

    #[test]
    fn revision_data_replaces_the_whole_template() {
        let data = revision_data(&ds(json!({})));
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(data["spec"]["template"]["metadata"]["labels"]["app"], "agent");
        assert_eq!(data.as_object().unwrap().len(), 1);
        assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["resources"], json!({}));
        let text = serde_json::to_string(&data).unwrap();
        assert!(text.starts_with(r#"{"spec":{"template":{"$patch":"replace","metadata":{"labels":"#), "{text}");
    }
}
