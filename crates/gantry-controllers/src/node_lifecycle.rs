//! The node lifecycle controller: notices nodes whose agent stopped reporting and taints nodes that are not
//! ready, as kube-controller-manager's does.
//!
//! - Node agents renew a Lease `kube-node-lease/<node>` and post node status. When neither the Lease's
//!   `renewTime` nor the Ready condition's `lastHeartbeatTime` has moved for the grace period, the conditions
//!   Ready, MemoryPressure, DiskPressure and PIDPressure become Unknown (`NodeStatusUnknown`, "Kubelet stopped
//!   posting node status."); a node that never posted a Ready condition gets them after the startup grace
//!   period (`NodeStatusNeverUpdated`).
//! - Liveness is judged by when this controller *saw* a heartbeat move, on its own clock, never by comparing
//!   the heartbeat's timestamp with the local clock: nodes' clocks may be skewed. A new leader therefore gives
//!   every node a full grace period from its start, as kube's does.
//! - Ready=False taints the node `node.kubernetes.io/not-ready:NoExecute`, Ready=Unknown
//!   `node.kubernetes.io/unreachable:NoExecute` (each replacing the other), Ready=True removes both. Other
//!   taints are kept. The taint eviction controller ([`crate::taint_eviction`]) acts on them.
//! - NoSchedule taints follow the conditions too (not-ready, unreachable, memory/disk/PID pressure, network
//!   unavailable) and a cordon (`spec.unschedulable`), for the scheduler.
//! - When this controller turns a Ready node Unknown, the node's pods get Ready=False, so that services stop
//!   sending them traffic.
//!
//! Not done (kube does it): rate-limited tainting per zone and the disruption modes that stop evictions when a
//! whole zone goes dark.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType, reference_to};
use crate::informer::{Change, Informer};
use crate::queue::{Requeue, WorkQueue, run_workers};

/// The namespace of the Leases node agents renew.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The taint of a node whose agent stopped reporting.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The taint of a node that reports itself not ready.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// The conditions the controller sets to Unknown when the agent is silent (NetworkUnavailable belongs to
/// the network provider, not the agent).
const AGENT_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// How the controller judges nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLifecycleConfig {
    /// How long a node may stay silent before it is Unknown (kube's `nodeMonitorGracePeriod`, 40 s).
    pub grace_period: Duration,
    /// How long a node that never reported has before it is Unknown (kube's `nodeStartupGracePeriod`, 60 s).
    pub startup_grace_period: Duration,
    /// How often every node is checked (kube's `nodeMonitorPeriod`, 5 s).
    pub monitor_period: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> NodeLifecycleConfig {
        NodeLifecycleConfig {
            grace_period: Duration::from_secs(40),
            startup_grace_period: Duration::from_secs(60),
            monitor_period: Duration::from_secs(5),
        }
    }
}

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{what} of node {node}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The node.
        node: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// The last heartbeats seen of one node, and when one last moved (on this controller's clock).
#[derive(Debug)]
struct Health {
    probed: Instant,
    /// The Ready condition's `lastHeartbeatTime`; `None` while the node never reported a Ready condition.
    heartbeat: Option<Option<jiff::Timestamp>>,
    /// The Lease's `renewTime`.
    renewed: Option<jiff::Timestamp>,
}

impl Health {
    fn new(heartbeat: Option<Option<jiff::Timestamp>>, renewed: Option<jiff::Timestamp>, now: Instant) -> Health {
        Health { probed: now, heartbeat, renewed }
    }

    /// Notes the heartbeats seen at `now`: any change of the Ready heartbeat, or a later Lease renewal, counts
    /// as a sign of life. Returns how long the node has been silent.
    fn observe(
        &mut self,
        heartbeat: Option<Option<jiff::Timestamp>>,
        renewed: Option<jiff::Timestamp>,
        now: Instant,
    ) -> Duration {
        if self.heartbeat != heartbeat {
            self.heartbeat = heartbeat;
            self.probed = now;
        }
        if renewed > self.renewed {
            self.renewed = renewed;
            self.probed = now;
        }
        now.saturating_duration_since(self.probed)
    }
}

/// The controller.
pub struct NodeLifecycleController {
    client: Client,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue>,
    health: Mutex<HashMap<String, Health>>,
    /// Nodes whose pods could not all be marked not ready yet.
    pods_to_mark: Mutex<HashSet<String>>,
    config: NodeLifecycleConfig,
    events: EventSink,
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The node's Ready status (`True`, `False`, `Unknown`), if it ever reported one.
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// The conditions of a node whose agent fell silent: the agent's conditions Unknown, as kube's controller
/// sets them. `None` if they already are.
pub fn silenced_conditions(node: &Node, now: jiff::Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut changed = false;
    for type_ in AGENT_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                changed = true;
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
            }
            Some(c) if c.status != "Unknown" => {
                changed = true;
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
    changed.then_some(conditions)
}

/// The NoSchedule taints kube derives from conditions: condition type and status, taint key.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY_TAINT),
    ("Ready", "Unknown", UNREACHABLE_TAINT),
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

/// The taint of a cordoned node (`spec.unschedulable`).
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Whether the controller owns the taint (it adds and removes it from the node's conditions).
fn controller_taint(taint: &Taint) -> bool {
    match taint.effect.as_str() {
        "NoSchedule" => taint.key == UNSCHEDULABLE_TAINT || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == taint.key),
        "NoExecute" => taint.key == NOT_READY_TAINT || taint.key == UNREACHABLE_TAINT,
        _ => false,
    }
}

/// The node's taints once they match its conditions, as kube's controller keeps them (`None` if they
/// already do): NoSchedule taints for a Ready status False or Unknown, for pressure, an unavailable network
/// and a cordon; the NoExecute taint not-ready for Ready=False, unreachable for Unknown. Other taints are
/// kept; added ones carry `timeAdded`. A node that never reported a Ready status gets no Ready taint.
pub fn taints_for(node: &Node, now: jiff::Timestamp) -> Option<Vec<Taint>> {
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    for c in node.status.iter().flat_map(|s| s.conditions.iter().flatten()) {
        for (type_, status, key) in CONDITION_TAINTS {
            if c.type_ == type_ && c.status == status {
                wanted.push((key, "NoSchedule"));
            }
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((UNSCHEDULABLE_TAINT, "NoSchedule"));
    }
    match ready_status(node) {
        Some("False") => wanted.push((NOT_READY_TAINT, "NoExecute")),
        Some("Unknown") => wanted.push((UNREACHABLE_TAINT, "NoExecute")),
        _ => {}
    }
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let count = current.len();
    let mut taints: Vec<Taint> = current
        .into_iter()
        .filter(|t| !controller_taint(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .collect();
    let missing: Vec<(&str, &str)> = wanted
        .into_iter()
        .filter(|(key, effect)| !taints.iter().any(|t| t.key == *key && t.effect == *effect))
        .collect();
    if taints.len() == count && missing.is_empty() {
        return None;
    }
    taints.extend(missing.into_iter().map(|(key, effect)| Taint {
        key: key.into(),
        effect: effect.into(),
        time_added: Some(Time(now)),
        value: None,
    }));
    Some(taints)
}

impl NodeLifecycleController {
    /// The controller, following nodes, node Leases and pods through the shared informers.
    pub fn new(
        client: Client,
        nodes: Arc<Informer<Node>>,
        leases: Arc<Informer<Lease>>,
        pods: Arc<Informer<Pod>>,
        config: NodeLifecycleConfig,
        events: EventSink,
    ) -> Arc<NodeLifecycleController> {
        let controller = Arc::new(NodeLifecycleController {
            client,
            nodes: Arc::clone(&nodes),
            leases: Arc::clone(&leases),
            pods,
            queue: WorkQueue::new(),
            health: Mutex::default(),
            pods_to_mark: Mutex::default(),
            config,
            events,
        });
        let queue = Arc::clone(&controller.queue);
        nodes.on_change(move |change| {
            let (Change::Added(node) | Change::Updated { new: node, .. } | Change::Deleted(node)) = change;
            queue.add(node.metadata.name.clone().unwrap_or_default());
        });
        let queue = Arc::clone(&controller.queue);
        leases.on_change(move |change| {
            if let Change::Added(lease) | Change::Updated { new: lease, .. } = change
                && lease.metadata.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE)
            {
                queue.add(lease.metadata.name.clone().unwrap_or_default());
            }
        });
        controller
    }

    /// Checks nodes with `workers` workers until `shutdown` (after the informers have synced): on every change
    /// of a node or its Lease, and every node each monitor period.
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.nodes.wait_synced(&shutdown).await;
        self.leases.wait_synced(&shutdown).await;
        self.pods.wait_synced(&shutdown).await;
        let monitor = {
            let (nodes, queue, period, shutdown) =
                (Arc::clone(&self.nodes), Arc::clone(&self.queue), self.config.monitor_period, shutdown.clone());
            async move {
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = ticks.tick() => {}
                    }
                    for node in nodes.list() {
                        queue.add(node.metadata.name.clone().unwrap_or_default());
                    }
                }
            }
        };
        let queue = Arc::clone(&self.queue);
        let controller = self;
        let workers = run_workers("node-lifecycle", queue, workers, shutdown, move |name| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&name).await }
        });
        tokio::join!(monitor, workers);
    }

    /// Whether the node's agent has been silent for longer than its grace period, after noting the
    /// heartbeats the informers show now.
    fn silent(&self, node: &Node) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let heartbeat = condition(node, "Ready").map(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
        let renewed = self
            .leases
            .get(NODE_LEASE_NAMESPACE, &name)
            .and_then(|l| l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0));
        let now = Instant::now();
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let silence =
            health.entry(name).or_insert_with(|| Health::new(heartbeat, renewed, now)).observe(heartbeat, renewed, now);
        let grace = if heartbeat.is_none() { self.config.startup_grace_period } else { self.config.grace_period };
        silence > grace
    }

    /// One check of the node `name`.
    pub async fn sync(&self, name: &str) -> Result<Requeue, SyncError> {
        let Some(mut node) = self.nodes.get("", name).map(|n| n.as_ref().clone()) else {
            self.health.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
            self.pods_to_mark.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
            return Ok(Requeue::No);
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let api_error = |what: &'static str| move |source| SyncError::Api { what, node: name.to_string(), source };
        let now = jiff::Timestamp::now();
        if self.silent(&node)
            && let Some(conditions) = silenced_conditions(&node, now)
        {
            let was_ready = ready_status(&node) == Some("True");
            // The resourceVersion makes this an update of what was judged: an agent that posted meanwhile wins.
            let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version},
                               "status": {"conditions": conditions}});
            node = match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(node) => node,
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Requeue::No),
                Err(source) => return Err(api_error("marking the status unknown")(source)),
            };
            tracing::info!(node = name, "node lifecycle: the node stopped posting status; its conditions are Unknown");
            if was_ready {
                self.pods_to_mark.lock().unwrap_or_else(PoisonError::into_inner).insert(name.to_string());
                self.events.publish(
                    reference_to(&node),
                    EventType::Normal,
                    "NodeNotReady",
                    "MonitorNodeHealth",
                    format!("Node {name} status is now: NodeNotReady"),
                );
            }
        }
        if let Some(taints) = taints_for(&node, now) {
            let taints = (!taints.is_empty()).then_some(taints);
            let patch =
                json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}});
            match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Requeue::No),
                Err(source) => return Err(api_error("updating the taints")(source)),
            }
        }
        let mark = self.pods_to_mark.lock().unwrap_or_else(PoisonError::into_inner).contains(name);
        if mark {
            if ready_status(&node) != Some("True") {
                self.mark_pods_not_ready(name).await?;
            }
            self.pods_to_mark.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        }
        Ok(Requeue::No)
    }

    /// Sets the Ready condition of the node's pods False (kube's `MarkPodsNotReady`).
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), SyncError> {
        let now = jiff::Timestamp::now();
        for pod in self.pods.by_index(crate::pods::BY_NODE, node) {
            let ready = pod.status.iter().flat_map(|s| s.conditions.iter().flatten()).find(|c| c.type_ == "Ready");
            if ready.is_none_or(|c| c.status == "False") {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or(""));
            let patch = json!({"metadata": {"uid": pod.metadata.uid},
                "status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": Time(now)}]}});
            let name = pod.metadata.name.as_deref().unwrap_or("");
            match api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => continue,
                Err(source) => {
                    return Err(SyncError::Api { what: "marking its pods not ready", node: node.to_string(), source });
                }
            }
            self.events.publish(
                reference_to(pod.as_ref()),
                EventType::Warning,
                "NodeNotReady",
                "MarkPodsNotReady",
                "Node is not ready".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(conditions: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"taints": taints}, "status": {"conditions": conditions}}))
        .unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_moved_heartbeat_or_a_later_renewal_is_a_sign_of_life_and_nothing_else_is() {
        let t = |s: &str| Some(s.parse::<jiff::Timestamp>().unwrap());
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut health = Health::new(Some(t("2026-01-01T00:00:00Z")), t("2026-01-01T00:00:00Z"), start);
        assert_eq!(health.observe(Some(t("2026-01-01T00:00:00Z")), t("2026-01-01T00:00:00Z"), at(30)), at(30) - start);
        assert_eq!(health.observe(Some(t("2026-01-01T00:00:00Z")), t("2026-01-01T00:00:10Z"), at(35)), Duration::ZERO);
        assert_eq!(
            health.observe(Some(t("2026-01-01T00:00:00Z")), t("2026-01-01T00:00:05Z"), at(50)),
            Duration::from_secs(15),
            "an older renewal (a recreated Lease) is no sign of life"
        );
        assert_eq!(health.observe(Some(t("2026-01-01T00:01:00Z")), None, at(60)), Duration::ZERO, "a posted status");
        assert_eq!(health.observe(Some(t("2026-01-01T00:01:00Z")), None, at(100)), Duration::from_secs(40));
    }

    fn keys(taints: &[Taint]) -> Vec<String> {
        taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
    }

    #[test]
    fn a_silent_node_has_its_agent_conditions_unknown_and_keeps_the_others() {
        let n = node(
            json!([{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:10:00Z"},
                   {"type": "MemoryPressure", "status": "False"},
                   {"type": "DiskPressure", "status": "Unknown", "reason": "Old"},
                   {"type": "NetworkUnavailable", "status": "False"}]),
            json!(null),
        );
        let conditions = silenced_conditions(&n, now()).unwrap();
        let by_type = |t: &str| conditions.iter().find(|c| c.type_ == t).unwrap();
        let ready = by_type("Ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert_eq!(ready.last_transition_time, Some(Time(now())));
        assert_eq!(ready.last_heartbeat_time.as_ref().unwrap().0.to_string(), "2026-01-01T00:10:00Z");
        assert_eq!(by_type("MemoryPressure").status, "Unknown");
        assert_eq!(by_type("DiskPressure").reason.as_deref(), Some("Old"), "already Unknown: left as it was");
        assert_eq!(by_type("PIDPressure").reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(by_type("NetworkUnavailable").status, "False");
        let again = node(serde_json::to_value(&conditions).unwrap(), json!(null));
        assert!(silenced_conditions(&again, now()).is_none(), "nothing left to change");
    }

    #[test]
    fn a_node_that_never_reported_is_marked_never_updated() {
        let conditions = silenced_conditions(&node(json!(null), json!(null)), now()).unwrap();
        assert_eq!(conditions.len(), 4);
        assert!(conditions.iter().all(|c| c.status == "Unknown"
            && c.reason.as_deref() == Some("NodeStatusNeverUpdated")
            && c.last_heartbeat_time.as_ref().unwrap().0.to_string() == "2026-01-01T00:00:00Z"));
    }

    #[test]
    fn unknown_swaps_not_ready_for_unreachable_and_keeps_other_taints() {
        let n = node(
            json!([{"type": "Ready", "status": "Unknown"}]),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                   {"key": NOT_READY_TAINT, "effect": "NoExecute", "timeAdded": "2026-01-01T00:30:00Z"},
                   {"key": NOT_READY_TAINT, "effect": "NoSchedule"}]),
        );
        let taints = taints_for(&n, now()).unwrap();
        assert_eq!(
            keys(&taints),
            vec![
                "dedicated:NoSchedule".to_string(),
                format!("{UNREACHABLE_TAINT}:NoSchedule"),
                format!("{UNREACHABLE_TAINT}:NoExecute")
            ]
        );
        assert_eq!(taints[2].time_added, Some(Time(now())));
    }

    #[test]
    fn false_taints_not_ready_and_true_removes_both() {
        let not_ready = taints_for(&node(json!([{"type": "Ready", "status": "False"}]), json!(null)), now()).unwrap();
        assert_eq!(
            keys(&not_ready),
            vec![format!("{NOT_READY_TAINT}:NoSchedule"), format!("{NOT_READY_TAINT}:NoExecute")]
        );
        let tainted = json!([{"key": UNREACHABLE_TAINT, "effect": "NoExecute"}, {"key": "x", "effect": "NoExecute"},
                             {"key": UNREACHABLE_TAINT, "effect": "NoSchedule"}]);
        let ready = taints_for(&node(json!([{"type": "Ready", "status": "True"}]), tainted), now()).unwrap();
        assert_eq!(keys(&ready), vec!["x:NoExecute"]);
    }

    #[test]
    fn pressure_and_a_cordon_taint_the_node_no_schedule() {
        let mut n = node(
            json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "True"},
                   {"type": "MemoryPressure", "status": "False"}]),
            json!([{"key": "node.kubernetes.io/pid-pressure", "effect": "NoSchedule"}]),
        );
        n.spec.as_mut().unwrap().unschedulable = Some(true);
        let taints = taints_for(&n, now()).unwrap();
        assert_eq!(
            keys(&taints),
            vec![
                "node.kubernetes.io/disk-pressure:NoSchedule".to_string(),
                format!("{UNSCHEDULABLE_TAINT}:NoSchedule")
            ],
            "the PID pressure is over"
        );
    }

    #[test]
    fn taints_already_right_or_a_node_never_reported_change_nothing() {
        let tainted = json!([{"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": "2026-01-01T00:30:00Z"},
                             {"key": UNREACHABLE_TAINT, "effect": "NoSchedule"}]);
        assert!(taints_for(&node(json!([{"type": "Ready", "status": "Unknown"}]), tainted), now()).is_none());
        assert!(taints_for(&node(json!([{"type": "Ready", "status": "True"}]), json!(null)), now()).is_none());
        assert!(taints_for(&node(json!(null), json!(null)), now()).is_none());
    }
}
