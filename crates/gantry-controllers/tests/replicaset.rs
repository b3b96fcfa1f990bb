//! The ReplicaSet controller against a real Gantry API server (in-process, real SQLite file). No node agent
//! runs: the tests play the nodes by writing pod status through the API.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    _dir: tempfile::TempDir,
    client: kube::Client,
    shutdown: CancellationToken,
    _tasks: JoinSet<()>,
}

impl Cluster {
    async fn start() -> Cluster {
        let (server, dir, shutdown, client) = common::start_server().await;
        let mut tasks = JoinSet::new();
        let manager = common::manager_config();
        gantry_controllers::start(client.clone(), manager, shutdown.clone(), &mut tasks);
        Cluster { _server: server, _dir: dir, client, shutdown, _tasks: tasks }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn replica_set(&self, name: &str, replicas: i32) {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        self.sets().create(&PostParams::default(), &serde_json::from_value(rs).unwrap()).await.unwrap();
    }

    async fn active_pods(&self, app: &str) -> Vec<Pod> {
        let list = self.pods().list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
        list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
    }

    /// Polls until `check` holds for the pods labelled `app`, or fails the test.
    async fn eventually_pods(&self, app: &str, what: &str, check: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let pods = self.active_pods(app).await;
            if check(&pods) {
                return pods;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: never happened; {} pods", pods.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn eventually_set(&self, name: &str, what: &str, check: impl Fn(&ReplicaSet) -> bool) -> ReplicaSet {
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let rs = self.sets().get(name).await.unwrap();
            if check(&rs) {
                return rs;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: never happened; status {:?}", rs.status);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Plays the node: the pod runs and is ready.
    async fn make_ready(&self, pod: &Pod) {
        let status = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let name = pod.metadata.name.as_deref().unwrap();
        self.pods().patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn status_counts(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (s.replicas, s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_creates_its_pods_and_reports_them_ready() {
    let cluster = Cluster::start().await;
    cluster.replica_set("web", 3).await;
    let pods = cluster.eventually_pods("web", "3 pods", |p| p.len() == 3).await;
    let rs = cluster.sets().get("web").await.unwrap();
    for pod in &pods {
        assert!(pod.metadata.name.as_deref().unwrap().starts_with("web-"));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.uid, rs.metadata.uid.clone().unwrap());
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    }
    for pod in &pods {
        cluster.make_ready(pod).await;
    }
    let rs = cluster.eventually_set("web", "3 ready", |rs| status_counts(rs) == (3, 3, 3)).await;
    let status = rs.status.unwrap();
    assert_eq!(status.fully_labeled_replicas, Some(3));
    assert_eq!(status.observed_generation, rs.metadata.generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_deletes_the_pods_that_are_not_ready_first() {
    let cluster = Cluster::start().await;
    cluster.replica_set("api", 3).await;
    let pods = cluster.eventually_pods("api", "3 pods", |p| p.len() == 3).await;
    cluster.make_ready(&pods[0]).await;
    let keeper = pods[0].metadata.name.clone().unwrap();
    cluster.eventually_set("api", "one ready", |rs| status_counts(rs).1 == 1).await;
    cluster
        .sets()
        .patch("api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}})))
        .await
        .unwrap();
    let left = cluster.eventually_pods("api", "1 pod", |p| p.len() == 1).await;
    assert_eq!(left[0].metadata.name.as_deref(), Some(keeper.as_str()), "the ready pod stays");
    cluster.eventually_set("api", "status of 1", |rs| status_counts(rs) == (1, 1, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_orphans_are_adopted_and_pods_that_stop_matching_are_released() {
    let cluster = Cluster::start().await;
    let orphan = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    cluster.pods().create(&PostParams::default(), &serde_json::from_value(orphan).unwrap()).await.unwrap();
    cluster.replica_set("db", 2).await;
    let pods = cluster
        .eventually_pods("db", "2 pods, one adopted", |p| {
            p.len() == 2 && p.iter().all(|pod| pod.metadata.owner_references.as_ref().is_some_and(|o| !o.is_empty()))
        })
        .await;
    assert!(pods.iter().any(|p| p.metadata.name.as_deref() == Some("orphan")), "the orphan counts as a replica");
    // Relabelling a pod takes it out of the set: it is released and replaced.
    let relabel = json!({"metadata": {"labels": {"app": "elsewhere"}}});
    cluster.pods().patch("orphan", &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
    cluster
        .eventually_pods("db", "a replacement", |p| {
            p.len() == 2 && p.iter().all(|pod| pod.metadata.name.as_deref() != Some("orphan"))
        })
        .await;
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    loop {
        let released = cluster.pods().get("orphan").await.unwrap();
        if released.metadata.owner_references.as_ref().is_none_or(Vec::is_empty) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the relabelled pod was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_replica_set_gets_exactly_its_replicas() {
    let cluster = Cluster::start().await;
    cluster.replica_set("many", 60).await;
    cluster.eventually_set("many", "60 replicas counted", |rs| status_counts(rs).0 == 60).await;
    // Expectations keep later syncs from creating more while the watch catches up.
    cluster
        .pods()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "poke"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    cluster
        .sets()
        .patch("many", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .unwrap();
    cluster.eventually_set("many", "relabelled set seen", |rs| rs.metadata.labels.is_some()).await;
    assert_eq!(cluster.active_pods("many").await.len(), 60);
}
