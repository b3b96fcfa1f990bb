//! Pod garbage collection against a real Gantry API server (in-process, real SQLite file). The collector runs
//! on its own informers with a short period and quarantine (the controller manager's are 20 s and 40 s).

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use gantry_controllers::informer::Informer;
use gantry_controllers::podgc::PodGcController;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    client: kube::Client,
}

impl Cluster {
    async fn start() -> Cluster {
        let (server, dir, shutdown, client) = common::start_server().await;
        Cluster { _server: server, _dir: dir, shutdown, tasks: JoinSet::new(), client }
    }

    /// Starts a collector keeping `threshold` terminated pods, every 100 ms, with a 200 ms quarantine.
    fn collector(&mut self, threshold: usize) {
        let pods = Informer::<Pod>::new();
        let nodes = Informer::<Node>::new();
        let mut gc = PodGcController::new(
            self.client.clone(),
            Arc::clone(&pods),
            Arc::clone(&nodes),
            Duration::from_millis(100),
        );
        gc.terminated_pod_gc_threshold = threshold;
        gc.quarantine = Duration::from_millis(200);
        self.tasks.spawn(pods.run(Api::all(self.client.clone()), self.shutdown.clone()));
        self.tasks.spawn(nodes.run(Api::all(self.client.clone()), self.shutdown.clone()));
        self.tasks.spawn(gc.run(self.shutdown.clone()));
    }

    async fn pod(&self, name: &str, node: Option<&str>) {
        self.pod_with_finalizers(name, node, &[]).await;
    }

    async fn pod_with_finalizers(&self, name: &str, node: Option<&str>, finalizers: &[&str]) {
        let pod = json!({"metadata": {"name": name, "finalizers": finalizers},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}});
        self.pods().create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    }

    /// Plays the node agent: the pod ran and ended.
    async fn finish(&self, name: &str, phase: &str) {
        let patch = json!({"status": {"phase": phase}});
        self.pods().patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn pod_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .pods()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        names
    }

    async fn eventually_pods(&self, wanted: &[&str]) {
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let names = self.pod_names().await;
            if names == wanted {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "pods are {names:?}, not {wanted:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.tasks.abort_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_bound_to_a_node_that_does_not_exist_are_deleted() {
    let mut cluster = Cluster::start().await;
    let node = json!({"metadata": {"name": "real"}});
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes.create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
    cluster.pod("on-ghost", Some("ghost")).await;
    cluster.pod("on-real", Some("real")).await;
    cluster.pod("unscheduled", None).await;
    // Held by a finalizer, these stay once deleted, and show what the collector did before deleting them.
    cluster.pod_with_finalizers("held-on-ghost", Some("ghost"), &["example.com/hold"]).await;
    cluster.pod_with_finalizers("held-unscheduled", None, &["example.com/hold"]).await;
    cluster.pods().delete("held-unscheduled", &Default::default()).await.unwrap();
    cluster.collector(100);
    cluster.eventually_pods(&["held-on-ghost", "held-unscheduled", "on-real", "unscheduled"]).await;
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    let (ghost, unscheduled) = loop {
        let ghost = cluster.pods().get("held-on-ghost").await.unwrap();
        let unscheduled = cluster.pods().get("held-unscheduled").await.unwrap();
        let failed = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed");
        if ghost.metadata.deletion_timestamp.is_some() && failed(&ghost) && failed(&unscheduled) {
            break (ghost, unscheduled);
        }
        assert!(tokio::time::Instant::now() < deadline, "not marked failed: {ghost:?} {unscheduled:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let conditions = ghost.status.unwrap().conditions.unwrap();
    let disruption = conditions.iter().find(|c| c.type_ == "DisruptionTarget").unwrap();
    assert_eq!(disruption.reason.as_deref(), Some("DeletionByPodGC"));
    assert_eq!(disruption.message.as_deref(), Some("PodGC: node no longer exists"));
    assert!(unscheduled.metadata.deletion_timestamp.is_some());
    let running = cluster.pods().get("on-real").await.unwrap();
    assert_eq!(running.status.and_then(|s| s.phase).as_deref(), Some("Pending"), "a pod on a real node stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_pods_beyond_the_threshold_are_deleted_oldest_first() {
    let mut cluster = Cluster::start().await;
    // Named against their age, so that an order by name would choose the others. Creation timestamps count
    // seconds: the pods are created a second apart.
    for (i, name) in ["c-oldest", "b-older", "a-newest"].into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        cluster.pod(name, Some("real")).await;
        cluster.finish(name, if i == 1 { "Failed" } else { "Succeeded" }).await;
    }
    cluster.pod("running", Some("real")).await;
    let node = json!({"metadata": {"name": "real"}});
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes.create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
    cluster.collector(1);
    cluster.eventually_pods(&["a-newest", "running"]).await;
}
