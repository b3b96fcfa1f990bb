//! The node lifecycle and taint eviction controllers against a real Gantry API server (in-process, real
//! SQLite file). No node agent runs: the test plays it, creating the Node, renewing its Lease and posting
//! its status.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::time::Duration;

use gantry_controllers::node_lifecycle::{NOT_READY_TAINT, NodeLifecycleConfig, UNREACHABLE_TAINT};
use gantry_controllers::{ControllerManagerConfig, start};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Cluster {
    async fn start(node_lifecycle: NodeLifecycleConfig) -> Cluster {
        let (server, dir, shutdown, _) = common::start_server().await;
        let mut cluster = Cluster { _server: server, dir, shutdown, tasks: JoinSet::new() };
        let config = ControllerManagerConfig { election: None, node_lifecycle, ..ControllerManagerConfig::new("test") };
        start(cluster.client().await, config, cluster.shutdown.clone(), &mut cluster.tasks);
        cluster
    }

    async fn client(&self) -> Client {
        common::client_for(self.dir.path()).await
    }

    async fn nodes(&self) -> Api<Node> {
        Api::all(self.client().await)
    }

    async fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client().await, "default")
    }

    /// A node as its agent registers it, with `conditions` (none: it never reported).
    async fn node(&self, name: &str, conditions: Value) {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"conditions": conditions}});
        self.nodes().await.create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
    }

    /// Plays the node agent's Lease renewal every 200 ms until the returned token is cancelled.
    async fn renew_lease(&mut self, node: &str) -> CancellationToken {
        let leases: Api<Lease> = Api::namespaced(self.client().await, "kube-node-lease");
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": MicroTime(jiff::Timestamp::now())}});
        if leases.get_opt(node).await.unwrap().is_none() {
            leases.create(&PostParams::default(), &serde_json::from_value(lease).unwrap()).await.unwrap();
        }
        let stop = self.shutdown.child_token();
        let (name, token) = (node.to_string(), stop.clone());
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                let patch = json!({"spec": {"renewTime": MicroTime(jiff::Timestamp::now())}});
                leases.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
            }
        });
        stop
    }

    /// A pod bound to `node` with `tolerations`.
    async fn pod(&self, name: &str, node: &str, tolerations: Value) {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "tolerations": tolerations,
                     "containers": [{"name": "c", "image": "busybox"}]}});
        self.pods().await.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    }

    async fn eventually_node(&self, name: &str, what: &str, check: impl Fn(&Node) -> bool) -> Node {
        let nodes = self.nodes().await;
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let node = nodes.get(name).await.unwrap();
            if check(&node) {
                return node;
            }
            assert!(tokio::time::Instant::now() < deadline, "node {name} never {what}: {node:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn eventually_deleted(&self, name: &str) -> Pod {
        let pods = self.pods().await;
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let pod = pods.get(name).await.unwrap();
            if pod.metadata.deletion_timestamp.is_some() {
                return pod;
            }
            assert!(tokio::time::Instant::now() < deadline, "pod {name} was never evicted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn is_deleting(&self, name: &str) -> bool {
        self.pods().await.get(name).await.unwrap().metadata.deletion_timestamp.is_some()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn config(grace: Duration) -> NodeLifecycleConfig {
    NodeLifecycleConfig { grace_period: grace, startup_grace_period: grace, monitor_period: Duration::from_millis(200) }
}

fn ready(node: &Node) -> Option<(String, Option<String>)> {
    let c = node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone()))
}

fn taint<'a>(node: &'a Node, key: &str) -> Option<&'a Taint> {
    node.spec.as_ref()?.taints.as_ref()?.iter().find(|t| t.key == key && t.effect == "NoExecute")
}

fn ready_now() -> Value {
    json!([{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": Time(jiff::Timestamp::now()), "lastTransitionTime": Time(jiff::Timestamp::now())},
           {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": Time(jiff::Timestamp::now())}])
}

fn tolerate_unreachable(seconds: Option<i64>) -> Value {
    let mut t = json!({"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute"});
    if let Some(s) = seconds {
        t["tolerationSeconds"] = json!(s);
    }
    json!([t])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_becomes_unreachable_and_its_pods_are_evicted_as_they_tolerate() {
    let mut cluster = Cluster::start(config(Duration::from_secs(2))).await;
    cluster.node("n1", ready_now()).await;
    let renewing = cluster.renew_lease("n1").await;
    cluster.pod("at-once", "n1", tolerate_unreachable(Some(0))).await;
    cluster.pod("after-two", "n1", tolerate_unreachable(Some(2))).await;
    cluster.pod("for-ever", "n1", tolerate_unreachable(None)).await;
    cluster.pod("defaulted", "n1", json!(null)).await;
    let running = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    cluster.pods().await.patch_status("for-ever", &PatchParams::default(), &Patch::Merge(&running)).await.unwrap();
    let defaulted = cluster.pods().await.get("defaulted").await.unwrap();
    let seconds: Vec<_> = defaulted.spec.unwrap().tolerations.unwrap().iter().map(|t| t.toleration_seconds).collect();
    assert_eq!(seconds, [Some(300), Some(300)], "the API server adds DefaultTolerationSeconds' tolerations");

    // A renewed Lease keeps the node alive past its grace period, though its status is not posted again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let node = cluster.nodes().await.get("n1").await.unwrap();
    assert_eq!(ready(&node), Some(("True".into(), Some("KubeletReady".into()))));
    assert!(taint(&node, UNREACHABLE_TAINT).is_none());

    renewing.cancel();
    let node = cluster
        .eventually_node("n1", "became unreachable", |n| {
            ready(n).is_some_and(|(s, _)| s == "Unknown") && taint(n, UNREACHABLE_TAINT).is_some()
        })
        .await;
    assert_eq!(ready(&node), Some(("Unknown".into(), Some("NodeStatusUnknown".into()))));
    let conditions = node.status.as_ref().unwrap().conditions.as_ref().unwrap();
    let memory = conditions.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
    assert_eq!(memory.status, "Unknown");
    let ready_condition = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready_condition.message.as_deref(), Some("Kubelet stopped posting node status."));
    let tainted_at = taint(&node, UNREACHABLE_TAINT).unwrap().time_added.as_ref().unwrap().0;

    // Deleted with the pod's grace period: with no agent to confirm, the pod stays terminating.
    let evicted = cluster.eventually_deleted("at-once").await;
    let disruption = evicted.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "DisruptionTarget");
    assert_eq!(disruption.and_then(|c| c.reason).as_deref(), Some("DeletionByTaintManager"));
    let evicted = cluster.eventually_deleted("after-two").await;
    let deleted_at = evicted.metadata.deletion_timestamp.unwrap().0;
    let grace = evicted.metadata.deletion_grace_period_seconds.unwrap_or(0);
    let waited = deleted_at.duration_since(tainted_at).as_secs_f64() - grace as f64;
    assert!(waited >= 1.9, "evicted {waited:.2} s after the taint, not 2 s");
    assert!(!cluster.is_deleting("for-ever").await, "tolerating without seconds, the pod stays");
    assert!(!cluster.is_deleting("defaulted").await, "the default toleration lasts 300 s");
    let pods = cluster.pods().await;
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    loop {
        let pod = pods.get("for-ever").await.unwrap();
        let conditions = pod.status.unwrap().conditions.unwrap();
        if conditions.iter().any(|c| c.type_ == "Ready" && c.status == "False") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the pod of a lost node is still ready: {conditions:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let events: Api<Event> = Api::namespaced(cluster.client().await, "default");
    let notes: Vec<String> =
        events.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|e| e.note).collect();
    assert!(notes.iter().any(|n| n == "Marking for deletion Pod default/at-once"), "events: {notes:?}");

    // The agent comes back: it posts Ready and renews its Lease; the taint goes.
    let _renewing = cluster.renew_lease("n1").await;
    let patch = json!({"status": {"conditions": ready_now()}});
    cluster.nodes().await.patch_status("n1", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let node = cluster.eventually_node("n1", "lost its taint", |n| taint(n, UNREACHABLE_TAINT).is_none()).await;
    assert_eq!(ready(&node).map(|r| r.0).as_deref(), Some("True"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_ready_node_is_tainted_and_one_that_never_reported_becomes_unknown() {
    let cluster = Cluster::start(config(Duration::from_secs(2))).await;
    cluster
        .node(
            "sick",
            json!([{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                                 "lastHeartbeatTime": Time(jiff::Timestamp::now())}]),
        )
        .await;
    cluster.node("mute", json!(null)).await;
    let sick =
        cluster.eventually_node("sick", "got the not-ready taint", |n| taint(n, NOT_READY_TAINT).is_some()).await;
    assert!(taint(&sick, NOT_READY_TAINT).unwrap().time_added.is_some());
    // Nothing more is posted: the taint is swapped for unreachable once the grace period has passed.
    let sick = cluster.eventually_node("sick", "became unreachable", |n| taint(n, UNREACHABLE_TAINT).is_some()).await;
    assert!(taint(&sick, NOT_READY_TAINT).is_none());
    assert_eq!(ready(&sick), Some(("Unknown".into(), Some("NodeStatusUnknown".into()))));
    let mute = cluster
        .eventually_node("mute", "became unknown", |n| ready(n).is_some() && taint(n, UNREACHABLE_TAINT).is_some())
        .await;
    assert_eq!(ready(&mute), Some(("Unknown".into(), Some("NodeStatusNeverUpdated".into()))));
    let no_schedule: Vec<&str> = mute
        .spec
        .as_ref()
        .unwrap()
        .taints
        .as_ref()
        .unwrap()
        .iter()
        .filter(|t| t.effect == "NoSchedule")
        .map(|t| t.key.as_str())
        .collect();
    assert_eq!(no_schedule, [UNREACHABLE_TAINT], "kept off the scheduler's list too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untolerated_taint_evicts_at_once_and_a_taint_removed_in_time_spares_the_pod() {
    let cluster = Cluster::start(config(Duration::from_secs(600))).await;
    cluster.node("n1", ready_now()).await;
    cluster.pod("plain", "n1", json!(null)).await;
    let tolerates = json!([{"key": "example.com/maintenance", "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": 3}]);
    cluster.pod("patient", "n1", tolerates).await;
    let taints = json!({"spec": {"taints": [{"key": "example.com/maintenance", "effect": "NoExecute",
                                             "timeAdded": Time(jiff::Timestamp::now())}]}});
    let nodes = cluster.nodes().await;
    nodes.patch("n1", &PatchParams::default(), &Patch::Merge(&taints)).await.unwrap();
    cluster.eventually_deleted("plain").await;
    assert!(!cluster.is_deleting("patient").await, "3 s have not passed");
    nodes.patch("n1", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"taints": null}}))).await.unwrap();
    // Past the deadline the taint would have set, the pod is still there.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!cluster.is_deleting("patient").await, "the taint went before its deadline");
    let node = nodes.get("n1").await.unwrap();
    assert_eq!(ready(&node).map(|r| r.0).as_deref(), Some("True"), "a long grace period: the node stays Ready");
}
