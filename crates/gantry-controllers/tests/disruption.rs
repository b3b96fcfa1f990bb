//! The disruption controller and the `pods/eviction` subresource against a real Gantry API server (in-process,
//! real SQLite file), with the whole controller manager running. No scheduler or node agent runs: a task of the
//! test plays both, binding new pods to the first schedulable node, running them ready, and removing pods that
//! are being deleted (as a kubelet confirms a deletion). The `kubectl drain` tests run the real kubectl
//! (`GANTRY_KUBECTL`) and are skipped without it.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    dir: tempfile::TempDir,
    client: kube::Client,
    shutdown: CancellationToken,
    _tasks: JoinSet<()>,
    /// The fewest ready pods of `app=web` that are not being deleted, seen since they first were all ready.
    fewest_ready: Arc<AtomicUsize>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let (server, dir, shutdown, client) = common::start_server().await;
        let mut tasks = JoinSet::new();
        gantry_controllers::start(client.clone(), common::manager_config(), shutdown.clone(), &mut tasks);
        let nodes: Api<Node> = Api::all(client.clone());
        for name in ["node-a", "node-b"] {
            let node = json!({"metadata": {"name": name}});
            nodes.create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
        }
        let fewest_ready = Arc::new(AtomicUsize::new(usize::MAX));
        tasks.spawn(play_nodes(client.clone(), Arc::clone(&fewest_ready), shutdown.clone()));
        Cluster { _server: server, dir, client, shutdown, _tasks: tasks, fewest_ready }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn budgets(&self) -> Api<PodDisruptionBudget> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn replica_set(&self, name: &str, replicas: i32) {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        let sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), "default");
        sets.create(&PostParams::default(), &serde_json::from_value(rs).unwrap()).await.unwrap();
    }

    async fn budget(&self, name: &str, spec: Value) {
        let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
                         "spec": spec});
        self.budgets().create(&PostParams::default(), &serde_json::from_value(pdb).unwrap()).await.unwrap();
    }

    /// Polls the budget until `check` holds on its status, or fails the test.
    async fn eventually_budget(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(what, || async {
            let pdb = self.budgets().get(name).await.unwrap();
            let status = serde_json::to_value(&pdb.status).unwrap();
            if check(&status) { Ok(status) } else { Err(format!("status {status}")) }
        })
        .await
    }

    async fn ready_pods(&self, app: &str) -> Vec<Pod> {
        let list = self.pods().list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
        list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p)).collect()
    }

    /// Runs the real kubectl against this cluster.
    async fn kubectl(&self, kubectl: &Path, args: &[&str]) -> (bool, String) {
        let output = tokio::process::Command::new(kubectl)
            .env_clear()
            .env("HOME", self.dir.path())
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// How long the test's kubelet takes to run a pod.
const STARTUP: jiff::SignedDuration = jiff::SignedDuration::from_millis(1500);

/// Plays the scheduler and the kubelets until `shutdown`.
async fn play_nodes(client: kube::Client, fewest_ready: Arc<AtomicUsize>, shutdown: CancellationToken) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let mut next_ip = 1;
    while !shutdown.is_cancelled() {
        if let (Ok(list), Ok(node_list)) =
            (pods.list(&ListParams::default()).await, nodes.list(&ListParams::default()).await)
        {
            let schedulable: Vec<String> = node_list
                .items
                .iter()
                .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) != Some(true))
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            let mut ready = 0;
            for pod in &list.items {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
                if pod.metadata.deletion_timestamp.is_some() {
                    let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
                    let _ = pods.delete(&name, &now).await;
                } else if node.is_none() {
                    if let Some(target) = schedulable.first() {
                        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                             "target": {"apiVersion": "v1", "kind": "Node", "name": target}});
                        let _ = pods
                            .create_subresource::<Value, Value>("binding", &name, &PostParams::default(), &binding)
                            .await;
                    }
                } else if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
                    // Containers take a while to start: long enough for an eviction racing a replacement to
                    // find the budget still spent.
                    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
                    if created.is_some_and(|t| jiff::Timestamp::now().duration_since(t) < STARTUP) {
                        continue;
                    }
                    let ip = format!("10.244.{}.{}", next_ip / 200, next_ip % 200 + 1);
                    next_ip += 1;
                    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                        "conditions": [{"type": "Ready", "status": "True",
                                        "lastTransitionTime": jiff::Timestamp::now().to_string()}]}});
                    let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
                } else if is_ready(pod)
                    && pod.metadata.labels.as_ref().and_then(|l| l.get("app")).map(String::as_str) == Some("web")
                {
                    ready += 1;
                }
            }
            // Count from the moment all three pods of the drained set were first ready.
            if ready >= 3 || fewest_ready.load(Ordering::SeqCst) != usize::MAX {
                fewest_ready.fetch_min(ready, Ordering::SeqCst);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Polls `check` until it gives a value, or fails the test saying `what` never happened.
async fn eventually<T, F: Future<Output = Result<T, String>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(why) => assert!(tokio::time::Instant::now() < deadline, "{what}: never happened; {why}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("GANTRY_KUBECTL").filter(|p| !p.is_empty()).map(PathBuf::from);
    if path.is_none() {
        eprintln!("skipped: set GANTRY_KUBECTL to a kubectl binary to run this test");
    }
    path
}

#[tokio::test]
async fn budget_status_follows_the_pods_and_evictions_spend_it() {
    let cluster = Cluster::start().await;
    cluster.replica_set("db", 3).await;
    cluster.budget("db", json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}})).await;
    let status = cluster
        .eventually_budget("db", "3 healthy pods allow one disruption", |s| {
            s["currentHealthy"] == 3 && s["disruptionsAllowed"] == 1
        })
        .await;
    assert_eq!((status["expectedPods"].as_i64(), status["desiredHealthy"].as_i64()), (Some(3), Some(2)));
    assert_eq!(status["observedGeneration"], 1);
    let condition = &status["conditions"][0];
    assert_eq!(
        (&condition["type"], &condition["status"], &condition["reason"]),
        (&json!("DisruptionAllowed"), &json!("True"), &json!("SufficientPods"))
    );

    // A pod turning unready leaves no disruption to spend.
    let victim = cluster.ready_pods("db").await[0].metadata.name.clone().unwrap();
    let unready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    cluster.pods().patch_status(&victim, &PatchParams::default(), &Patch::Merge(&unready)).await.unwrap();
    let status = cluster
        .eventually_budget("db", "2 healthy pods allow none", |s| {
            s["currentHealthy"] == 2 && s["disruptionsAllowed"] == 0
        })
        .await;
    assert_eq!(
        (&status["conditions"][0]["status"], &status["conditions"][0]["reason"]),
        (&json!("False"), &json!("InsufficientPods"))
    );
    let ready = cluster.ready_pods("db").await;
    // A client that reports a 429 instead of retrying it (kube's clients retry it by default).
    let kubeconfig = Kubeconfig::read_from(cluster.dir.path().join("kubeconfig")).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    config.default_retry = false;
    let impatient: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    let denied = impatient.evict(ready[0].metadata.name.as_deref().unwrap(), &EvictParams::default()).await;
    match denied {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (429, "TooManyRequests"));
            assert_eq!(e.message, "Cannot evict pod as it would violate the pod's disruption budget.");
        }
        other => panic!("eviction beyond the budget: {other:?}"),
    }

    // A percentage counts against the ReplicaSet's scale: 34% of 3 rounds up to 2 unavailable.
    let patch = json!({"spec": {"minAvailable": null, "maxUnavailable": "34%"}});
    cluster.budgets().patch("db", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    cluster
        .eventually_budget("db", "maxUnavailable 34% of 3", |s| {
            s["observedGeneration"] == 2
                && s["expectedPods"] == 3
                && s["desiredHealthy"] == 1
                && s["disruptionsAllowed"] == 1
        })
        .await;
    let evicted = ready[0].metadata.name.clone().unwrap();
    cluster.pods().evict(&evicted, &EvictParams::default()).await.unwrap();
    // The replacement comes up; the budget settles with the evicted pod gone from disruptedPods.
    cluster
        .eventually_budget("db", "the replacement counts", |s| {
            s["currentHealthy"] == 2 && s["disruptedPods"].as_object().is_none_or(|m| !m.contains_key(&evicted))
        })
        .await;
}

#[tokio::test]
async fn kubectl_drain_evicts_only_as_far_as_the_budget_allows() {
    let Some(kubectl) = kubectl() else { return };
    let cluster = Cluster::start().await;
    cluster.replica_set("web", 3).await;
    cluster.budget("web", json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}})).await;
    cluster.eventually_budget("web", "one disruption allowed", |s| s["disruptionsAllowed"] == 1).await;
    let on_a = cluster.ready_pods("web").await;
    assert!(on_a.iter().all(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("node-a")));
    let timeout = format!("--timeout={}s", gantry_store::testing::patience().as_secs());
    let (ok, output) = cluster
        .kubectl(&kubectl, &["drain", "node-a", "--ignore-daemonsets", "--delete-emptydir-data", &timeout])
        .await;
    assert!(ok, "drain failed: {output}");
    assert!(output.contains("drained"), "{output}");
    assert!(
        output.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "drain never had to wait: {output}"
    );
    eventually("three ready replacements on node-b", || async {
        let ready = cluster.ready_pods("web").await;
        let on_b = ready.iter().filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("node-b")).count();
        if on_b == 3 && ready.len() == 3 { Ok(()) } else { Err(format!("{on_b} of {} on node-b", ready.len())) }
    })
    .await;
    assert!(cluster.fewest_ready.load(Ordering::SeqCst) >= 2, "fewer than minAvailable ready pods during the drain");
}

#[tokio::test]
async fn kubectl_drain_that_cannot_proceed_times_out_on_the_budget() {
    let Some(kubectl) = kubectl() else { return };
    let cluster = Cluster::start().await;
    cluster.replica_set("web", 2).await;
    cluster.budget("web", json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}})).await;
    cluster
        .eventually_budget("web", "two healthy pods", |s| s["currentHealthy"] == 2 && s["observedGeneration"] == 1)
        .await;
    let (ok, output) = cluster
        .kubectl(&kubectl, &["drain", "node-a", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3s"])
        .await;
    assert!(!ok, "drain succeeded against the budget: {output}");
    assert!(output.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{output}");
    assert_eq!(cluster.ready_pods("web").await.len(), 2, "no pod was evicted");
}
