//! The Deployment controller against a real Gantry API server (in-process, real SQLite file), with the real
//! kubectl for `rollout status|history|undo|pause|resume`. No node agent runs: the tests play the nodes by
//! marking pods ready through the API.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    dir: tempfile::TempDir,
    client: kube::Client,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Cluster {
    async fn start() -> Cluster {
        let (server, dir, shutdown, client) = common::start_server().await;
        let mut tasks = JoinSet::new();
        let manager = common::manager_config();
        gantry_controllers::start(client.clone(), manager, shutdown.clone(), &mut tasks);
        Cluster { _server: server, dir, client, shutdown, tasks }
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn deployment(&self, name: &str, replicas: i32, image: &str, extra: serde_json::Value) {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}});
        if let serde_json::Value::Object(extra) = extra {
            for (k, v) in extra {
                d["spec"][k] = v;
            }
        }
        self.deployments().create(&PostParams::default(), &serde_json::from_value(d).unwrap()).await.unwrap();
    }

    async fn set_image(&self, name: &str, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
        self.deployments().patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await.unwrap();
    }

    /// Plays the nodes: marks every pod whose image `ready` accepts as running and ready, until shutdown.
    fn play_nodes(&mut self, ready: impl Fn(&str) -> bool + Send + 'static) {
        let pods = self.pods();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            while !shutdown.is_cancelled() {
                for pod in pods.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                    let image = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone());
                    let already = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    if already || pod.metadata.deletion_timestamp.is_some() || !image.as_deref().is_some_and(&ready) {
                        continue;
                    }
                    let status = json!({"status": {"phase": "Running", "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
    }

    async fn eventually<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: never happened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn replica_sets(&self) -> Vec<ReplicaSet> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), "default");
        api.list(&ListParams::default()).await.unwrap().items
    }

    async fn progressing_reason(&self, name: &str) -> Option<String> {
        let d = self.deployments().get(name).await.unwrap();
        let conditions = d.status?.conditions?;
        conditions.into_iter().find(|c| c.type_ == "Progressing").and_then(|c| c.reason)
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let kubectl = std::env::var("GANTRY_KUBECTL").map(PathBuf::from).unwrap();
        std::process::Command::new(kubectl)
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .output()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn revision(rs: &ReplicaSet) -> Option<String> {
    rs.metadata.annotations.as_ref().and_then(|a| a.get("deployment.kubernetes.io/revision")).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_a_new_template_out_through_a_new_replica_set() {
    let mut cluster = Cluster::start().await;
    cluster.play_nodes(|_| true);
    cluster.deployment("web", 3, "busybox:1", json!({})).await;
    cluster
        .eventually("rollout of revision 1", async || {
            (cluster.progressing_reason("web").await.as_deref() == Some("NewReplicaSetAvailable")).then_some(())
        })
        .await;
    let sets = cluster.replica_sets().await;
    assert_eq!(sets.len(), 1);
    let first = &sets[0];
    let hash = first.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(first.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    assert_eq!(revision(first).as_deref(), Some("1"));
    let d = cluster.deployments().get("web").await.unwrap();
    let status = d.status.clone().unwrap();
    assert_eq!((status.replicas, status.updated_replicas, status.available_replicas), (Some(3), Some(3), Some(3)));
    let available = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!((available.status.as_str(), available.reason.as_deref()), ("True", Some("MinimumReplicasAvailable")));

    cluster.set_image("web", "busybox:2").await;
    let sets = cluster
        .eventually("rollout of revision 2", async || {
            let sets = cluster.replica_sets().await;
            let done = sets.len() == 2
                && sets.iter().any(|rs| revision(rs).as_deref() == Some("2") && replicas(rs) == 3)
                && sets.iter().any(|rs| revision(rs).as_deref() == Some("1") && replicas(rs) == 0)
                && cluster.progressing_reason("web").await.as_deref() == Some("NewReplicaSetAvailable");
            done.then_some(sets)
        })
        .await;
    let new = sets.iter().find(|rs| revision(rs).as_deref() == Some("2")).unwrap();
    let pods = cluster.pods().list(&ListParams::default().labels("app=web")).await.unwrap().items;
    let live: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    assert_eq!(live.len(), 3);
    let new_hash = &new.metadata.labels.as_ref().unwrap()["pod-template-hash"];
    assert!(live.iter().all(|p| &p.metadata.labels.as_ref().unwrap()["pod-template-hash"] == new_hash));
    let d = cluster.deployments().get("web").await.unwrap();
    assert_eq!(d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_whose_pods_never_become_ready_stops_at_max_unavailable_and_times_out() {
    let mut cluster = Cluster::start().await;
    cluster.play_nodes(|image| image == "busybox:good");
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    cluster.deployment("api", 4, "busybox:good", json!({"strategy": strategy, "progressDeadlineSeconds": 2})).await;
    cluster
        .eventually("first rollout", async || {
            (cluster.progressing_reason("api").await.as_deref() == Some("NewReplicaSetAvailable")).then_some(())
        })
        .await;
    cluster.set_image("api", "busybox:bad").await;
    cluster
        .eventually("the deadline", async || {
            (cluster.progressing_reason("api").await.as_deref() == Some("ProgressDeadlineExceeded")).then_some(())
        })
        .await;
    let sets = cluster.replica_sets().await;
    let old = sets.iter().find(|rs| revision(rs).as_deref() == Some("1")).unwrap();
    let new = sets.iter().find(|rs| revision(rs).as_deref() == Some("2")).unwrap();
    assert_eq!(replicas(old), 3, "no more than maxUnavailable old replicas go while the new ones are not ready");
    assert_eq!(replicas(new), 2, "no more than maxSurge extra pods");
    let d = cluster.deployments().get("api").await.unwrap();
    assert_eq!(d.status.unwrap().available_replicas, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_the_new_ones() {
    let mut cluster = Cluster::start().await;
    cluster.play_nodes(|_| true);
    cluster.deployment("db", 2, "busybox:1", json!({"strategy": {"type": "Recreate"}})).await;
    cluster
        .eventually("first rollout", async || {
            (cluster.progressing_reason("db").await.as_deref() == Some("NewReplicaSetAvailable")).then_some(())
        })
        .await;
    cluster.set_image("db", "busybox:2").await;
    cluster
        .eventually("second rollout", async || {
            let sets = cluster.replica_sets().await;
            let done = sets.iter().any(|rs| revision(rs).as_deref() == Some("2") && replicas(rs) == 2)
                && sets.iter().any(|rs| revision(rs).as_deref() == Some("1") && replicas(rs) == 0);
            done.then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_history_undo_pause_and_resume_work() {
    if std::env::var_os("GANTRY_KUBECTL").is_none() {
        eprintln!("skipped: GANTRY_KUBECTL is not set (scripts/fetch-clients provides kubectl)");
        return;
    }
    let mut cluster = Cluster::start().await;
    cluster.play_nodes(|_| true);
    cluster.deployment("app", 2, "busybox:1", json!({})).await;
    let status = cluster.kubectl(&["rollout", "status", "deployment/app", "--timeout=60s"]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{out} {}", String::from_utf8_lossy(&status.stderr));
    assert!(out.contains("successfully rolled out"), "{out}");

    let annotate = cluster.kubectl(&["annotate", "deployment/app", "kubernetes.io/change-cause=to v2"]);
    assert!(annotate.status.success());
    cluster.set_image("app", "busybox:2").await;
    let status = cluster.kubectl(&["rollout", "status", "deployment/app", "--timeout=60s"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let history = cluster.kubectl(&["rollout", "history", "deployment/app"]);
    let out = String::from_utf8_lossy(&history.stdout);
    assert!(history.status.success(), "{}", String::from_utf8_lossy(&history.stderr));
    assert!(out.contains('1') && out.contains("to v2"), "{out}");

    let undo = cluster.kubectl(&["rollout", "undo", "deployment/app"]);
    assert!(undo.status.success(), "{}", String::from_utf8_lossy(&undo.stderr));
    let status = cluster.kubectl(&["rollout", "status", "deployment/app", "--timeout=60s"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let d = cluster.deployments().get("app").await.unwrap();
    let image = d.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("busybox:1"), "undo brings the previous template back");
    assert_eq!(d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"], "3");

    let pause = cluster.kubectl(&["rollout", "pause", "deployment/app"]);
    assert!(pause.status.success(), "{}", String::from_utf8_lossy(&pause.stderr));
    cluster.set_image("app", "busybox:4").await;
    cluster
        .eventually("the paused condition", async || {
            (cluster.progressing_reason("app").await.as_deref() == Some("DeploymentPaused")).then_some(())
        })
        .await;
    assert_eq!(cluster.replica_sets().await.len(), 2, "undo reused revision 1's set; pausing starts no rollout");
    let resume = cluster.kubectl(&["rollout", "resume", "deployment/app"]);
    assert!(resume.status.success(), "{}", String::from_utf8_lossy(&resume.stderr));
    let status = cluster.kubectl(&["rollout", "status", "deployment/app", "--timeout=60s"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert_eq!(cluster.replica_sets().await.len(), 3);
}
