//! The disruption controller: the status of PodDisruptionBudgets (`policy/v1`), which the `pods/eviction`
//! subresource spends, as kube-controller-manager's disruption controller keeps it.
//!
//! - `expectedPods`: the selected pods for an integer `minAvailable`; otherwise the summed scale of the pods'
//!   controllers (ReplicaSet, or its Deployment; StatefulSet; ReplicationController; anything with a `scale`
//!   subresource).
//! - `desiredHealthy`: `minAvailable`, or `expectedPods - maxUnavailable` (percentages rounded up);
//!   `currentHealthy`: the selected ready pods that are neither being deleted nor recently evicted;
//!   `disruptionsAllowed`: the difference, never negative, and 0 while no pod is expected.
//! - `disruptedPods`: evictions the API server recorded; an entry whose pod was not deleted within 2 minutes
//!   is dropped (and the pod counts again).
//! - Condition `DisruptionAllowed`: True/SufficientPods, False/InsufficientPods, or False/SyncFailed with the
//!   error when the status cannot be computed (then no disruption is allowed).
//!
//! The status is written with the resourceVersion it was computed from, so that it never overwrites an
//! eviction that spent a disruption meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use gantry_api::selector::LabelSelector;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType, reference_to};
use crate::informer::{Change, Informer};
use crate::pods::{controller_ref, is_ready};
use crate::queue::{Requeue, WorkQueue, run_workers};

/// How long an eviction recorded in `disruptedPods` keeps its pod from counting as healthy.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// [`DELETION_TIMEOUT`] for timestamp arithmetic.
const DELETION_TIMEOUT_SIGNED: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

/// The condition this controller sets.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{what} for PodDisruptionBudget {key}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The budget.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// A selected pod's controller could not be found.
    #[error("found no controllers for pod {pod:?}")]
    NoController {
        /// The pod.
        pod: String,
    },
    /// A pod's controller has no scale subresource.
    #[error("{resource} does not implement the scale subresource")]
    NoScale {
        /// The controller's resource (`plural.group`).
        resource: String,
    },
    /// `minAvailable` or `maxUnavailable` is neither an integer nor a percentage.
    #[error("invalid value for IntOrString: {why}")]
    InvalidValue {
        /// Why.
        why: String,
    },
}

impl SyncError {
    fn is_conflict(&self) -> bool {
        matches!(self, SyncError::Api { source: kube::Error::Api(e), .. } if e.code == 409)
    }
}

/// `value` scaled to `total`: an integer as it is, a percentage of `total` rounded up.
pub fn scaled_value(value: &IntOrString, total: i32) -> Result<i32, SyncError> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err(SyncError::InvalidValue { why: "invalid type: string is not a percentage".into() });
            };
            let percent: i64 =
                number.parse().map_err(|e| SyncError::InvalidValue { why: format!("invalid value {s:?}: {e}") })?;
            let scaled = (percent * i64::from(total) + 99).div_euclid(100);
            Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
        }
    }
}

/// The budget's arithmetic for one sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// `expectedPods`.
    pub expected: i32,
    /// `desiredHealthy`.
    pub desired_healthy: i32,
    /// `currentHealthy`.
    pub current_healthy: i32,
}

impl Counts {
    /// `disruptionsAllowed`: the healthy pods beyond the desired ones; none while no pod is expected (a budget
    /// whose first pods just appeared must not allow disruptions before its status says so).
    pub fn disruptions_allowed(&self) -> i32 {
        let allowed = self.current_healthy - self.desired_healthy;
        if self.expected <= 0 || allowed <= 0 { 0 } else { allowed }
    }
}

/// The evictions of `disruptedPods` still pending at `now`, and when the earliest of them times out.
pub fn pending_disruptions(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> (BTreeMap<String, Time>, Option<jiff::Timestamp>) {
    let mut pending = BTreeMap::new();
    let mut recheck: Option<jiff::Timestamp> = None;
    let Some(disrupted) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (pending, None);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(name) = pod.metadata.name.as_deref() else { continue };
        let Some(at) = disrupted.get(name) else { continue };
        let expires = at.0 + DELETION_TIMEOUT_SIGNED;
        if expires >= now {
            recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
            pending.insert(name.to_string(), at.clone());
        }
    }
    (pending, recheck)
}

/// The selected pods that count as healthy: ready, not being deleted, not recently evicted.
pub fn count_healthy(pods: &[Arc<Pod>], pending: &BTreeMap<String, Time>, now: jiff::Timestamp) -> i32 {
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let evicted = pod.metadata.name.as_ref().and_then(|n| pending.get(n));
            evicted.is_none_or(|at| at.0 + DELETION_TIMEOUT_SIGNED <= now)
        })
        .filter(|pod| is_ready(pod))
        .count() as i32
}

/// Sets a condition as apimachinery's `SetStatusCondition` does: the transition time changes only with the
/// status.
fn set_condition(conditions: &mut Vec<Condition>, condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status != condition.status {
                existing.status = condition.status;
                existing.last_transition_time = condition.last_transition_time;
            }
            existing.reason = condition.reason;
            existing.message = condition.message;
            existing.observed_generation = condition.observed_generation;
        }
        None => conditions.push(condition),
    }
}

fn allowed_condition(allowed: bool, generation: Option<i64>, now: jiff::Timestamp) -> Condition {
    Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: if allowed { "True" } else { "False" }.into(),
        reason: if allowed { "SufficientPods" } else { "InsufficientPods" }.into(),
        message: String::new(),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = pdb.status.as_ref() else { return false };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    let Some(condition) = status.conditions.iter().flatten().find(|c| c.type_ == DISRUPTION_ALLOWED) else {
        return false;
    };
    if status.disruptions_allowed > 0 {
        condition.status == "True" && condition.reason == "SufficientPods"
    } else {
        condition.status == "False" && condition.reason == "InsufficientPods"
    }
}

/// The status the budget should have, or `None` when it already has it.
pub fn next_status(
    pdb: &PodDisruptionBudget,
    counts: Counts,
    pending: BTreeMap<String, Time>,
    now: jiff::Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    let allowed = counts.disruptions_allowed();
    let current = pdb.status.clone().unwrap_or_default();
    let current_disrupted = current.disrupted_pods.clone().unwrap_or_default();
    if current.current_healthy == counts.current_healthy
        && current.desired_healthy == counts.desired_healthy
        && current.expected_pods == counts.expected
        && current.disruptions_allowed == allowed
        && current_disrupted == pending
        && current.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb)
    {
        return None;
    }
    let mut conditions = current.conditions.unwrap_or_default();
    set_condition(&mut conditions, allowed_condition(allowed > 0, pdb.metadata.generation, now));
    Some(PodDisruptionBudgetStatus {
        current_healthy: counts.current_healthy,
        desired_healthy: counts.desired_healthy,
        expected_pods: counts.expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!pending.is_empty()).then_some(pending),
        observed_generation: pdb.metadata.generation,
        conditions: Some(conditions),
    })
}

/// The controller.
pub struct DisruptionController {
    client: Client,
    pdbs: Arc<Informer<PodDisruptionBudget>>,
    pods: Arc<Informer<Pod>>,
    replicasets: Arc<Informer<ReplicaSet>>,
    deployments: Arc<Informer<Deployment>>,
    queue: Arc<WorkQueue>,
    events: EventSink,
}

fn key_of(pdb: &PodDisruptionBudget) -> String {
    format!("{}/{}", pdb.metadata.namespace.as_deref().unwrap_or(""), pdb.metadata.name.as_deref().unwrap_or(""))
}

fn selector_of(pdb: &PodDisruptionBudget) -> Option<LabelSelector> {
    LabelSelector::from_k8s(pdb.spec.as_ref().and_then(|s| s.selector.as_ref())).ok()
}

fn selected(selector: &LabelSelector, pod: &Pod) -> bool {
    let empty = BTreeMap::new();
    selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty))
}

/// A controller of pods and its scale.
type Scale = (String, i32);

impl DisruptionController {
    /// The controller, following changes through the shared informers (register before they start).
    pub fn new(
        client: Client,
        pdbs: Arc<Informer<PodDisruptionBudget>>,
        pods: Arc<Informer<Pod>>,
        replicasets: Arc<Informer<ReplicaSet>>,
        deployments: Arc<Informer<Deployment>>,
        events: EventSink,
    ) -> Arc<DisruptionController> {
        let queue = WorkQueue::new();
        let q = Arc::clone(&queue);
        pdbs.on_change(move |change| {
            let (Change::Added(pdb) | Change::Updated { new: pdb, .. } | Change::Deleted(pdb)) = change;
            q.add(key_of(pdb));
        });
        let (q, budgets) = (Arc::clone(&queue), Arc::clone(&pdbs));
        pods.on_change(move |change| {
            let (old, new) = match change {
                Change::Added(pod) | Change::Deleted(pod) => (None, pod.as_ref()),
                Change::Updated { old, new } => (Some(old.as_ref()), new.as_ref()),
            };
            let namespace = new.metadata.namespace.as_deref().unwrap_or("");
            for pdb in budgets.list_namespace(namespace) {
                let Some(selector) = selector_of(&pdb) else { continue };
                if selected(&selector, new) || old.is_some_and(|old| selected(&selector, old)) {
                    q.add(key_of(&pdb));
                }
            }
        });
        Arc::new(DisruptionController { client, pdbs, pods, replicasets, deployments, queue, events })
    }

    /// Reconciles budgets with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.pdbs.wait_synced(&shutdown).await;
        self.pods.wait_synced(&shutdown).await;
        self.replicasets.wait_synced(&shutdown).await;
        self.deployments.wait_synced(&shutdown).await;
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("disruption", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }

    /// One reconcile of the budget `namespace/name`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(pdb) = self.pdbs.get(namespace, name) else { return Ok(Requeue::No) };
        match self.try_sync(key, &pdb).await {
            Ok(requeue) => Ok(requeue),
            // Someone (an eviction) wrote the budget meanwhile: look again at the new version.
            Err(err) if err.is_conflict() => Err(err),
            Err(err) => {
                tracing::warn!(budget = key, error = %err, "disruption: sync failed; no disruption allowed");
                self.fail_safe(key, &pdb, &err).await?;
                Err(err)
            }
        }
    }

    async fn try_sync(&self, key: &str, pdb: &PodDisruptionBudget) -> Result<Requeue, SyncError> {
        let namespace = pdb.metadata.namespace.as_deref().unwrap_or("");
        let pods: Vec<Arc<Pod>> = match selector_of(pdb) {
            Some(selector) => {
                self.pods.list_namespace(namespace).into_iter().filter(|p| selected(&selector, p)).collect()
            }
            None => Vec::new(),
        };
        if pods.is_empty() {
            self.events.publish(
                reference_to(pdb),
                EventType::Normal,
                "NoPods",
                "Sync",
                "No matching pods found".into(),
            );
        }
        let (expected, desired_healthy) = match self.expected_counts(pdb, &pods).await {
            Ok(counts) => counts,
            Err(err) => {
                let note = format!("Failed to calculate the number of expected pods: {err}");
                self.events.publish(
                    reference_to(pdb),
                    EventType::Warning,
                    "CalculateExpectedPodCountFailed",
                    "Sync",
                    note,
                );
                return Err(err);
            }
        };
        let now = jiff::Timestamp::now();
        let (pending, recheck) = pending_disruptions(pdb, &pods, now);
        let current_healthy = count_healthy(&pods, &pending, now);
        let counts = Counts { expected, desired_healthy, current_healthy };
        if let Some(status) = next_status(pdb, counts, pending, now) {
            self.write_status(key, pdb, status).await?;
        }
        Ok(match recheck {
            Some(at) => Requeue::After(Duration::from_millis(
                u64::try_from(at.duration_since(now).as_millis()).unwrap_or(0).saturating_add(1),
            )),
            None => Requeue::No,
        })
    }

    async fn write_status(
        &self,
        key: &str,
        pdb: &PodDisruptionBudget,
        status: PodDisruptionBudgetStatus,
    ) -> Result<(), SyncError> {
        let namespace = pdb.metadata.namespace.as_deref().unwrap_or("");
        let name = pdb.metadata.name.as_deref().unwrap_or("");
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), namespace);
        let mut updated = pdb.clone();
        updated.status = Some(status);
        match api.replace_status(name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(SyncError::Api { what: "updating status", key: key.to_string(), source }),
        }
    }

    /// After a failed sync no disruption is allowed, and the condition says why.
    async fn fail_safe(&self, key: &str, pdb: &PodDisruptionBudget, err: &SyncError) -> Result<(), SyncError> {
        let mut status = pdb.status.clone().unwrap_or_default();
        status.disruptions_allowed = 0;
        let mut conditions = status.conditions.take().unwrap_or_default();
        set_condition(
            &mut conditions,
            Condition {
                type_: DISRUPTION_ALLOWED.into(),
                status: "False".into(),
                reason: "SyncFailed".into(),
                message: err.to_string(),
                observed_generation: status.observed_generation,
                last_transition_time: Time(jiff::Timestamp::now()),
            },
        );
        status.conditions = Some(conditions);
        if pdb.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.write_status(key, pdb, status).await
    }

    /// `expectedPods` and `desiredHealthy`.
    async fn expected_counts(&self, pdb: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> Result<(i32, i32), SyncError> {
        let spec = pdb.spec.clone().unwrap_or_default();
        if let Some(max_unavailable) = &spec.max_unavailable {
            let expected = self.expected_scale(pdb, pods).await?;
            let unavailable = scaled_value(max_unavailable, expected)?;
            return Ok((expected, (expected - unavailable).max(0)));
        }
        match &spec.min_available {
            Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n)),
            Some(percent) => {
                let expected = self.expected_scale(pdb, pods).await?;
                Ok((expected, scaled_value(percent, expected)?))
            }
            None => Ok((0, 0)),
        }
    }

    /// The summed scale of the selected pods' controllers.
    async fn expected_scale(&self, pdb: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> Result<i32, SyncError> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let Some(owner) = controller_ref(&pod.metadata) else {
                unmanaged.push(pod.metadata.name.clone().unwrap_or_default());
                continue;
            };
            if scales.contains_key(&owner.uid) {
                continue;
            }
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
            match self.controller_scale(owner, namespace).await? {
                Some((uid, scale)) => {
                    scales.insert(uid, scale);
                }
                None => return Err(SyncError::NoController { pod: pod.metadata.name.clone().unwrap_or_default() }),
            }
        }
        if !unmanaged.is_empty() {
            tracing::debug!(budget = key_of(pdb), pods = ?unmanaged, "disruption: unmanaged pods");
            let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
            let note = format!(
                "Pods selected by this PodDisruptionBudget (selector: {selector:?}) were found to be unmanaged. As a \
                 result, the status of the PDB cannot be calculated correctly, which may result in undefined \
                 behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an \
                 integer value."
            );
            self.events.publish(reference_to(pdb), EventType::Warning, "UnmanagedPods", "Sync", note);
        }
        Ok(scales.values().sum())
    }

    /// The controller of a pod (by its controller reference) and its scale, if it exists with that UID.
    async fn controller_scale(&self, owner: &OwnerReference, namespace: &str) -> Result<Option<Scale>, SyncError> {
        let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
        let api_error = |what: &'static str| {
            let key = format!("{namespace}/{}", owner.name);
            move |source: kube::Error| SyncError::Api { what, key, source }
        };
        match (group, owner.kind.as_str()) {
            ("", "ReplicationController") => {
                let api: Api<ReplicationController> = Api::namespaced(self.client.clone(), namespace);
                let rc = api.get_opt(&owner.name).await.map_err(api_error("reading a ReplicationController"))?;
                Ok(rc
                    .filter(|rc| rc.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                    .map(|rc| (owner.uid.clone(), rc.spec.and_then(|s| s.replicas).unwrap_or(1))))
            }
            ("apps", "ReplicaSet") => {
                if let Some(rs) = self.replicasets.get(namespace, &owner.name)
                    && rs.metadata.uid.as_deref() == Some(owner.uid.as_str())
                {
                    // A Deployment's ReplicaSets count with the Deployment's scale.
                    if let Some(deployment) = controller_ref(&rs.metadata).filter(|r| r.kind == "Deployment")
                        && let Some(d) = self.deployments.get(namespace, &deployment.name)
                        && d.metadata.uid.as_deref() == Some(deployment.uid.as_str())
                    {
                        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                        return Ok(Some((deployment.uid.clone(), replicas)));
                    }
                    return Ok(Some((owner.uid.clone(), rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))));
                }
                self.generic_scale(owner, namespace).await
            }
            ("apps", "StatefulSet") => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), namespace);
                let set = api.get_opt(&owner.name).await.map_err(api_error("reading a StatefulSet"))?;
                Ok(set
                    .filter(|s| s.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                    .map(|s| (owner.uid.clone(), s.spec.and_then(|s| s.replicas).unwrap_or(1))))
            }
            _ => self.generic_scale(owner, namespace).await,
        }
    }

    /// The scale of any kind with a `scale` subresource.
    async fn generic_scale(&self, owner: &OwnerReference, namespace: &str) -> Result<Option<Scale>, SyncError> {
        let key = format!("{namespace}/{}", owner.name);
        let (group, version) = owner.api_version.split_once('/').unwrap_or(("", owner.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
        let (resource, capabilities) = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok(found) => found,
            // A kind the API does not serve controls nothing.
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
            Err(source) => return Err(SyncError::Api { what: "discovering a pod's controller", key, source }),
        };
        if !capabilities.subresources.iter().any(|(sub, _)| sub.plural == "scale") {
            let resource =
                if group.is_empty() { resource.plural.clone() } else { format!("{}.{group}", resource.plural) };
            return Err(SyncError::NoScale { resource });
        }
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
        match api.get_scale(&owner.name).await {
            Ok(scale) if scale.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                Ok(Some((owner.uid.clone(), scale.spec.and_then(|s| s.replicas).unwrap_or(0))))
            }
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(source) => Err(SyncError::Api { what: "reading a scale", key, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        let mut p = json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "db"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    fn budget(status: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "d", "generation": 2},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}}, "status": status}))
        .unwrap()
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn percentages_scale_with_the_expected_count_rounding_up() {
        assert_eq!(scaled_value(&IntOrString::String("50%".into()), 3).unwrap(), 2);
        assert_eq!(scaled_value(&IntOrString::String("34%".into()), 3).unwrap(), 2);
        assert_eq!(scaled_value(&IntOrString::String("0%".into()), 3).unwrap(), 0);
        assert_eq!(scaled_value(&IntOrString::Int(4), 3).unwrap(), 4);
        let err = scaled_value(&IntOrString::String("half".into()), 3).unwrap_err();
        assert_eq!(err.to_string(), "invalid value for IntOrString: invalid type: string is not a percentage");
    }

    #[test]
    fn disruptions_allowed_are_the_healthy_pods_beyond_the_desired_never_negative() {
        assert_eq!(Counts { expected: 3, desired_healthy: 2, current_healthy: 3 }.disruptions_allowed(), 1);
        assert_eq!(Counts { expected: 3, desired_healthy: 2, current_healthy: 1 }.disruptions_allowed(), 0);
        assert_eq!(Counts { expected: 0, desired_healthy: 0, current_healthy: 2 }.disruptions_allowed(), 0);
    }

    #[test]
    fn evicted_pods_stop_counting_until_the_deletion_timeout() {
        let pdb = budget(json!({"disruptedPods": {"a": "2026-01-01T00:00:00Z", "gone": "2026-01-01T00:00:00Z",
                                                  "b": "2026-01-01T00:00:00Z"}}));
        let pods = vec![pod("a", true, false), pod("b", true, true), pod("c", true, false), pod("d", false, false)];
        let now = at("2026-01-01T00:01:00Z");
        let (pending, recheck) = pending_disruptions(&pdb, &pods, now);
        assert_eq!(pending.keys().collect::<Vec<_>>(), vec!["a"], "deleted and vanished pods leave the map");
        assert_eq!(recheck, Some(at("2026-01-01T00:02:00Z")));
        assert_eq!(count_healthy(&pods, &pending, now), 1, "only c: a was evicted, b is going, d is not ready");
        let later = at("2026-01-01T00:02:01Z");
        let (pending, recheck) = pending_disruptions(&pdb, &pods, later);
        assert!(pending.is_empty() && recheck.is_none(), "an eviction not followed by a deletion is forgotten");
        assert_eq!(count_healthy(&pods, &pending, later), 2);
    }

    #[test]
    fn the_status_says_whether_disruptions_are_allowed_and_is_written_only_when_it_changes() {
        let now = at("2026-01-01T00:00:00Z");
        let pdb = budget(json!(null));
        let counts = Counts { expected: 3, desired_healthy: 2, current_healthy: 3 };
        let status = next_status(&pdb, counts, BTreeMap::new(), now).unwrap();
        assert_eq!(
            (status.expected_pods, status.desired_healthy, status.current_healthy, status.disruptions_allowed),
            (3, 2, 3, 1)
        );
        assert_eq!(status.observed_generation, Some(2));
        let condition = &status.conditions.as_ref().unwrap()[0];
        assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("True", "SufficientPods"));
        let mut written = pdb.clone();
        written.status = Some(status);
        assert!(next_status(&written, counts, BTreeMap::new(), now).is_none());
        let short = Counts { expected: 3, desired_healthy: 2, current_healthy: 2 };
        let later = at("2026-01-01T00:01:00Z");
        let status = next_status(&written, short, BTreeMap::new(), later).unwrap();
        let condition = &status.conditions.as_ref().unwrap()[0];
        assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", "InsufficientPods"));
        assert_eq!(condition.last_transition_time.0, later);
        assert_eq!(status.disruptions_allowed, 0);
    }
}
