//! The scheduler against a real Gantry API server (in-process, real SQLite file), with Node objects created
//! through the API (no node agent needed).

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

use std::time::Duration;

use gantry_scheduler::runtime::{SchedulerConfig, start};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.unwrap();
        Cluster { _server: server, dir, shutdown, tasks: JoinSet::new() }
    }

    async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(self.dir.path().join("kubeconfig")).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }

    async fn scheduler(&mut self, identity: &str, election: Option<gantry_lease::ElectionConfig>) {
        let config =
            SchedulerConfig { max_parallel_bindings: 16, ..SchedulerConfig::with_default_profile(identity, election) };
        let client = self.client().await;
        start(client, config, self.shutdown.clone(), &mut self.tasks);
    }

    async fn node(&self, name: &str, cpu: &str, extra: serde_json::Value) {
        let mut node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                       "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}});
        merge(&mut node, extra);
        let nodes: Api<Node> = Api::all(self.client().await);
        nodes.create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
    }

    async fn pod(&self, name: &str, cpu: &str, extra: serde_json::Value) {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]}});
        merge(&mut pod, extra);
        let pods: Api<Pod> = Api::namespaced(self.client().await, "default");
        pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    }

    async fn eventually_pod(&self, name: &str, check: impl Fn(&Pod) -> bool) -> Pod {
        let pods: Api<Pod> = Api::namespaced(self.client().await, "default");
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let pod = pods.get(name).await.unwrap();
            if check(&pod) {
                return pod;
            }
            assert!(tokio::time::Instant::now() < deadline, "pod {name} never got there: {:?}", pod.status);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

fn unschedulable_message(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?
        .message
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_go_to_nodes_with_room_and_wait_when_there_is_none() {
    let mut cluster = Cluster::start().await;
    cluster.node("small", "1", json!({})).await;
    cluster.node("big", "8", json!({})).await;
    cluster.scheduler("s1", None).await;
    cluster.pod("fits-big", "4", json!({})).await;
    let placed = cluster.eventually_pod("fits-big", |p| node_of(p).is_some()).await;
    assert_eq!(node_of(&placed).as_deref(), Some("big"));

    cluster.pod("too-big", "16", json!({})).await;
    let waiting = cluster.eventually_pod("too-big", |p| unschedulable_message(p).is_some()).await;
    assert_eq!(unschedulable_message(&waiting).unwrap(), "0/2 nodes are available: 2 Insufficient cpu.");
    assert!(node_of(&waiting).is_none());

    // A node that fits arrives: the waiting pod is scheduled without being touched.
    cluster.node("huge", "32", json!({})).await;
    let placed = cluster.eventually_pod("too-big", |p| node_of(p).is_some()).await;
    assert_eq!(node_of(&placed).as_deref(), Some("huge"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_and_taints_steer_pods() {
    let mut cluster = Cluster::start().await;
    cluster.node("gpu", "4", json!({"metadata": {"labels": {"accelerator": "gpu"}}})).await;
    cluster
        .node(
            "tainted",
            "4",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
        )
        .await;
    cluster.node("plain", "4", json!({})).await;
    cluster.scheduler("s1", None).await;
    cluster.pod("wants-gpu", "1", json!({"spec": {"nodeSelector": {"accelerator": "gpu"}}})).await;
    cluster
        .pod(
            "db",
            "1",
            json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "tainted"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}}),
        )
        .await;
    cluster.pod("no-toleration", "1", json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "tainted"}}})).await;
    let gpu = cluster.eventually_pod("wants-gpu", |p| node_of(p).is_some()).await;
    assert_eq!(node_of(&gpu).as_deref(), Some("gpu"));
    let db = cluster.eventually_pod("db", |p| node_of(p).is_some()).await;
    assert_eq!(node_of(&db).as_deref(), Some("tainted"));
    let refused = cluster.eventually_pod("no-toleration", |p| unschedulable_message(p).is_some()).await;
    let message = unschedulable_message(&refused).unwrap();
    assert!(message.starts_with("0/3 nodes are available: "), "{message}");
    assert!(message.contains("1 node(s) had untolerated taint {dedicated: db}"), "{message}");
    assert!(message.contains("2 node(s) didn't match Pod's node affinity/selector"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_naming_another_scheduler_are_left_alone() {
    let mut cluster = Cluster::start().await;
    cluster.node("n1", "4", json!({})).await;
    cluster.scheduler("s1", None).await;
    cluster.pod("custom", "1", json!({"spec": {"schedulerName": "someone-else"}})).await;
    cluster.pod("ours", "1", json!({})).await;
    cluster.eventually_pod("ours", |p| node_of(p).is_some()).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, "default");
    let custom = pods.get("custom").await.unwrap();
    assert!(node_of(&custom).is_none());
    assert!(unschedulable_message(&custom).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_schedulers_only_the_leader_binds() {
    let mut cluster = Cluster::start().await;
    cluster.node("n1", "8", json!({})).await;
    let election = gantry_lease::ElectionConfig {
        lease_duration: Duration::from_millis(1500),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(100),
    };
    cluster.scheduler("first", Some(election)).await;
    cluster.scheduler("second", Some(election)).await;
    for i in 0..5 {
        cluster.pod(&format!("p{i}"), "100m", json!({})).await;
    }
    for i in 0..5 {
        cluster.eventually_pod(&format!("p{i}"), |p| node_of(p).is_some()).await;
    }
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(cluster.client().await, "kube-system");
    let holder = leases.get("gantry-scheduler").await.unwrap().spec.unwrap().holder_identity.unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(cluster.client().await, "default");
    // The Scheduled event is written after the binding, so it may trail the bound pod a little.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let scheduled = loop {
        let scheduled: Vec<_> = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Scheduled"))
            .collect();
        if scheduled.len() >= 5 || tokio::time::Instant::now() > deadline {
            break scheduled;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(scheduled.len(), 5, "one Scheduled event per pod");
    for event in scheduled {
        assert_eq!(event.reporting_instance.as_deref(), Some(holder.as_str()), "only the leader schedules");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_puts_replicas_on_different_nodes_and_spread_balances_zones() {
    let mut cluster = Cluster::start().await;
    for (name, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        cluster.node(name, "8", json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}})).await;
    }
    cluster.scheduler("s1", None).await;
    let anti = json!({"metadata": {"labels": {"app": "db"}}, "spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {"app": "db"}}}]}}}});
    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..3 {
        let name = format!("db-{i}");
        cluster.pod(&name, "100m", anti.clone()).await;
        let pod = cluster.eventually_pod(&name, |p| node_of(p).is_some()).await;
        nodes.insert(node_of(&pod).unwrap());
    }
    assert_eq!(nodes.len(), 3, "one replica per node: {nodes:?}");
    cluster.pod("db-3", "100m", anti).await;
    let refused = cluster.eventually_pod("db-3", |p| unschedulable_message(p).is_some()).await;
    let message = unschedulable_message(&refused).unwrap();
    assert_eq!(message, "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.");

    let spread = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}}]}});
    let mut zones = std::collections::BTreeMap::new();
    for i in 0..4 {
        let name = format!("web-{i}");
        cluster.pod(&name, "100m", spread.clone()).await;
        let pod = cluster.eventually_pod(&name, |p| node_of(p).is_some()).await;
        let zone = if node_of(&pod).unwrap().starts_with('a') { "a" } else { "b" };
        *zones.entry(zone).or_insert(0) += 1;
    }
    assert_eq!(zones.get("a"), Some(&2));
    assert_eq!(zones.get("b"), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_pod_preempts_a_lower_priority_one() {
    let mut cluster = Cluster::start().await;
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(cluster.client().await);
    for (name, value) in [("low", 10), ("high", 1000)] {
        let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                           "metadata": {"name": name}, "value": value});
        classes.create(&PostParams::default(), &serde_json::from_value(class).unwrap()).await.unwrap();
    }
    cluster.node("n1", "2", json!({})).await;
    cluster.scheduler("s1", None).await;
    cluster.pod("victim", "2", json!({"spec": {"priorityClassName": "low", "terminationGracePeriodSeconds": 0}})).await;
    let victim = cluster.eventually_pod("victim", |p| node_of(p).is_some()).await;
    assert_eq!(victim.spec.as_ref().unwrap().priority, Some(10), "priority comes from the class");
    cluster.pod("important", "1", json!({"spec": {"priorityClassName": "high"}})).await;
    let placed = cluster.eventually_pod("important", |p| node_of(p).is_some()).await;
    assert_eq!(node_of(&placed).as_deref(), Some("n1"));
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, "default");
    assert!(pods.get_opt("victim").await.unwrap().is_none(), "the lower-priority pod was evicted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_spares_pods_a_disruption_budget_protects() {
    let mut cluster = Cluster::start().await;
    let client = cluster.client().await;
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(client.clone());
    for (name, value) in [("low", 10), ("high", 1000)] {
        let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                           "metadata": {"name": name}, "value": value});
        classes.create(&PostParams::default(), &serde_json::from_value(class).unwrap()).await.unwrap();
    }
    // No disruption controller runs here, so the budget allows no disruption (status.disruptionsAllowed 0).
    let budgets: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let budget = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
                        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}});
    budgets.create(&PostParams::default(), &serde_json::from_value(budget).unwrap()).await.unwrap();
    cluster.node("n1", "2", json!({})).await;
    cluster.node("n2", "2", json!({})).await;
    cluster.scheduler("s1", None).await;
    let low = |node: &str| {
        json!({"spec": {"priorityClassName": "low", "terminationGracePeriodSeconds": 0,
                        "nodeSelector": {"kubernetes.io/hostname": node}}})
    };
    cluster.pod("db", "2", low("n1")).await;
    cluster.pod("batch", "2", low("n2")).await;
    cluster.eventually_pod("db", |p| node_of(p).is_some()).await;
    cluster.eventually_pod("batch", |p| node_of(p).is_some()).await;
    cluster.pod("important", "1", json!({"spec": {"priorityClassName": "high"}})).await;
    let placed = cluster.eventually_pod("important", |p| node_of(p).is_some()).await;
    assert_eq!(node_of(&placed).as_deref(), Some("n2"), "the unprotected pod's node was chosen");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    assert!(pods.get_opt("batch").await.unwrap().is_none(), "the unprotected pod was preempted");
    assert!(pods.get_opt("db").await.unwrap().is_some(), "the protected pod was spared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_terms_select_namespaces_by_their_labels() {
    let mut cluster = Cluster::start().await;
    let client = cluster.client().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let team =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {"team": "blue"}}});
    namespaces.create(&PostParams::default(), &serde_json::from_value(team).unwrap()).await.unwrap();
    cluster.node("n1", "4", json!({})).await;
    cluster.node("n2", "4", json!({})).await;
    cluster.scheduler("s1", None).await;
    let cache = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cache", "labels": {"app": "cache"}},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": "n2"},
                 "containers": [{"name": "c", "image": "busybox"}]}});
    let team_pods: Api<Pod> = Api::namespaced(client, "team");
    team_pods.create(&PostParams::default(), &serde_json::from_value(cache).unwrap()).await.unwrap();
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    while node_of(&team_pods.get("cache").await.unwrap()).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the cache pod was never scheduled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let term = json!({"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "cache"}},
                      "namespaceSelector": {"matchLabels": {"team": "blue"}}});
    let affinity = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}});
    cluster.pod("near-cache", "1", json!({"spec": {"affinity": affinity}})).await;
    let placed = cluster.eventually_pod("near-cache", |p| node_of(p).is_some()).await;
    assert_eq!(node_of(&placed).as_deref(), Some("n2"));
}
