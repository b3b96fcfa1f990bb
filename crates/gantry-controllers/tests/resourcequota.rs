//! The resource quota controller against a real Gantry API server (in-process, real SQLite file), started
//! through the controller manager: it fills in quota status, and deletions give quota back.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::future::Future;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ResourceQuota};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    client: kube::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.tasks.abort_all();
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let (server, dir, shutdown, client) = common::start_server().await;
        let mut tasks = JoinSet::new();
        gantry_controllers::start(client.clone(), common::manager_config(), shutdown.clone(), &mut tasks);
        Cluster { _server: server, _dir: dir, shutdown, tasks, client }
    }

    async fn namespace(&self, name: &str) {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.client.clone()).create(&PostParams::default(), &ns).await.unwrap();
    }

    fn quotas(&self, ns: &str) -> Api<ResourceQuota> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn create_pod(&self, ns: &str, name: &str) -> Result<Pod, kube::Error> {
        let pod = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        self.pods(ns).create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await
    }

    async fn status(&self, ns: &str, name: &str) -> Value {
        let quota = self.quotas(ns).get(name).await.unwrap();
        serde_json::to_value(quota.status).unwrap()
    }
}

/// Polls `check` until it holds or patience runs out.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_controller_fills_in_status_and_deleting_a_pod_frees_its_quota() {
    let c = Cluster::start().await;
    c.namespace("rq-pods").await;
    let quota = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2", "count/configmaps": "10"}}});
    c.quotas("rq-pods").create(&PostParams::default(), &serde_json::from_value(quota).unwrap()).await.unwrap();
    eventually("the quota's status is filled in", || async {
        c.status("rq-pods", "q").await
            == json!({"hard": {"pods": "2", "count/configmaps": "10"}, "used": {"pods": "0", "count/configmaps": "0"}})
    })
    .await;
    c.create_pod("rq-pods", "a").await.unwrap();
    c.create_pod("rq-pods", "b").await.unwrap();
    assert_eq!(c.status("rq-pods", "q").await["used"]["pods"], "2", "charged when admitted");
    let refused = c.create_pod("rq-pods", "c").await.unwrap_err();
    match refused {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 403);
            assert_eq!(
                e.message,
                "pods \"c\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    c.pods("rq-pods").delete("a", &DeleteParams::default()).await.unwrap();
    eventually("the deleted pod's quota is given back", || async {
        c.status("rq-pods", "q").await["used"]["pods"] == "1"
    })
    .await;
    c.create_pod("rq-pods", "c").await.unwrap();
    assert_eq!(c.status("rq-pods", "q").await["used"]["pods"], "2");
}

#[tokio::test]
async fn a_raised_limit_and_a_deleted_config_map_are_recounted() {
    let c = Cluster::start().await;
    c.namespace("rq-cm").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "rq-cm");
    for name in ["one", "two"] {
        let cm = json!({"metadata": {"name": name}, "data": {"k": "v"}});
        configmaps.create(&PostParams::default(), &serde_json::from_value(cm).unwrap()).await.unwrap();
    }
    // Other controllers may publish config maps of their own in every namespace: count what is there.
    let listed = || async { configmaps.list(&Default::default()).await.unwrap().items.len().to_string() };
    let quota = json!({"metadata": {"name": "q"}, "spec": {"hard": {"configmaps": "10"}}});
    c.quotas("rq-cm").create(&PostParams::default(), &serde_json::from_value(quota).unwrap()).await.unwrap();
    eventually("the existing config maps are counted", || async {
        let status = c.status("rq-cm", "q").await;
        status["hard"] == json!({"configmaps": "10"}) && status["used"]["configmaps"] == listed().await.as_str()
    })
    .await;
    let raise = json!({"spec": {"hard": {"configmaps": "20", "secrets": "5"}}});
    c.quotas("rq-cm").patch("q", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&raise)).await.unwrap();
    eventually("the raised limit reaches the status", || async {
        let status = c.status("rq-cm", "q").await;
        status["hard"] == json!({"configmaps": "20", "secrets": "5"}) && status["used"]["secrets"].is_string()
    })
    .await;
    let before = listed().await.parse::<u32>().unwrap();
    configmaps.delete("one", &DeleteParams::default()).await.unwrap();
    eventually("the deleted config map is given back", || async {
        c.status("rq-cm", "q").await["used"]["configmaps"] == (before - 1).to_string().as_str()
    })
    .await;
}
