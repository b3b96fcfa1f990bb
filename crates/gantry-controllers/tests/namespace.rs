//! The namespace and ServiceAccount controllers against a real Gantry API server (in-process, real SQLite
//! file), run by the controller manager as `gantry server` runs it.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    client: kube::Client,
}

impl Cluster {
    /// An API server and the controller manager.
    async fn start() -> Cluster {
        let (server, dir, shutdown, client) = common::start_server().await;
        let mut tasks = JoinSet::new();
        gantry_controllers::start(client.clone(), common::manager_config(), shutdown.clone(), &mut tasks);
        Cluster { _server: server, dir, shutdown, tasks, client }
    }

    async fn create<K>(&self, namespace: Option<&str>, object: serde_json::Value) -> K
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace.unwrap_or("default"));
        api.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.unwrap()
    }

    async fn namespace(&self, name: &str) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &ns).await.unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.tasks.abort_all();
        let _ = &self.dir;
    }
}

/// Polls `check` until it answers `Some`, failing the test after the patience.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn condition<'a>(ns: &'a Namespace, type_: &str) -> Option<&'a k8s_openapi::api::core::v1::NamespaceCondition> {
    ns.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_content_then_the_namespace() {
    let cluster = Cluster::start().await;
    cluster.namespace("doomed").await;
    let ns = Some("doomed");
    cluster.create::<ConfigMap>(ns, json!({"metadata": {"name": "settings"}, "data": {"a": "b"}})).await;
    cluster.create::<Secret>(ns, json!({"metadata": {"name": "password"}, "stringData": {"p": "s3cret"}})).await;
    for name in ["one", "two"] {
        cluster
            .create::<Pod>(
                ns,
                json!({"metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
            )
            .await;
    }
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    eventually("the namespace is gone", || async {
        namespaces.get_opt("doomed").await.unwrap().is_none().then_some(())
    })
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "doomed");
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), "doomed");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "doomed");
    assert!(configmaps.list(&Default::default()).await.unwrap().items.is_empty());
    assert!(secrets.list(&Default::default()).await.unwrap().items.is_empty());
    assert!(pods.list(&Default::default()).await.unwrap().items.is_empty());
    // The name is free again and a namespace made anew starts empty.
    cluster.namespace("doomed").await;
    assert!(configmaps.list(&Default::default()).await.unwrap().items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_on_content_holds_the_namespace_and_its_conditions_say_why() {
    let cluster = Cluster::start().await;
    cluster.namespace("held").await;
    cluster
        .create::<ConfigMap>(
            Some("held"),
            json!({"metadata": {"name": "kept", "finalizers": ["example.com/hold"]}, "data": {"a": "b"}}),
        )
        .await;
    cluster.create::<ConfigMap>(Some("held"), json!({"metadata": {"name": "free"}})).await;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    namespaces.delete("held", &DeleteParams::default()).await.unwrap();
    let ns = eventually("the conditions report the remaining content", || async {
        let ns = namespaces.get("held").await.unwrap();
        condition(&ns, "NamespaceFinalizersRemaining").is_some_and(|c| c.status == "True").then_some(ns)
    })
    .await;
    let remaining = condition(&ns, "NamespaceContentRemaining").unwrap();
    assert_eq!((remaining.status.as_str(), remaining.reason.as_deref()), ("True", Some("SomeResourcesRemain")));
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: configmaps. has 1 resource instances")
    );
    let finalizers = condition(&ns, "NamespaceFinalizersRemaining").unwrap();
    assert_eq!(
        finalizers.message.as_deref(),
        Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
    );
    for fine in ["NamespaceDeletionDiscoveryFailure", "NamespaceDeletionContentFailure"] {
        assert_eq!(condition(&ns, fine).map(|c| c.status.as_str()), Some("False"), "{fine}");
    }
    assert_eq!(ns.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Terminating"));
    assert_eq!(ns.spec.as_ref().and_then(|s| s.finalizers.clone()), Some(vec!["kubernetes".to_string()]));
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "held");
    let kept = configmaps.get("kept").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_some(), "deleted, held by its finalizer");
    assert!(configmaps.get_opt("free").await.unwrap().is_none());

    let patch = json!([{"op": "remove", "path": "/metadata/finalizers"}]);
    configmaps
        .patch("kept", &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(patch).unwrap()))
        .await
        .unwrap();
    eventually("the namespace goes once its last object is gone", || async {
        namespaces.get_opt("held").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_active_namespace_has_a_default_service_account_even_after_its_deletion() {
    let cluster = Cluster::start().await;
    cluster.namespace("team").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), "team");
    let first =
        eventually("the default ServiceAccount is created", || async { accounts.get_opt("default").await.unwrap() })
            .await;
    accounts.delete("default", &DeleteParams::default()).await.unwrap();
    let second = eventually("the default ServiceAccount is created again", || async {
        accounts.get_opt("default").await.unwrap().filter(|sa| sa.metadata.uid != first.metadata.uid)
    })
    .await;
    assert_ne!(second.metadata.uid, first.metadata.uid);
    let defaults: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), "default");
    eventually("the default namespace has one too", || async { defaults.get_opt("default").await.unwrap() }).await;
}
