//! Client libraries other than kubectl against Gantry's API server: the Python `kubernetes` client (run as a
//! script) and kube-rs (in process).

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use gantry_e2e::{TestCluster, eventually_async, patience};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{GroupVersionKind, ObjectMeta};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};

#[test]
fn the_python_client_does_crud_and_watches_configmaps() {
    let cluster = TestCluster::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/configmap_crud_and_watch.py");
    let out = cluster.python(&script, &[&patience().as_secs().to_string()]).ok();
    assert_eq!(out.stdout.trim(), "ok", "stderr:\n{}", out.stderr);
}

async fn client(cluster: &TestCluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).expect("read the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("a config");
    Client::try_from(config).expect("a client")
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("app".to_string(), "kube-rs".to_string())].into()),
            ..ObjectMeta::default()
        },
        data: Some([("key".to_string(), value.to_string())].into()),
        ..ConfigMap::default()
    }
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        }
    }))
    .expect("a Deployment")
}

fn value(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref()?.get("key").map(String::as_str)
}

#[tokio::test]
async fn kube_rs_creates_lists_patches_replaces_and_deletes() {
    let cluster = TestCluster::start();
    let api: Api<ConfigMap> = Api::namespaced(client(&cluster).await, "default");

    let created = api.create(&PostParams::default(), &configmap("one", "1")).await.expect("create");
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    api.create(&PostParams::default(), &configmap("two", "2")).await.expect("create");
    let again = api.create(&PostParams::default(), &configmap("one", "1")).await.expect_err("a second create");
    assert!(matches!(&again, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"), "{again:?}");

    let listed = api.list(&ListParams::default().labels("app=kube-rs")).await.expect("list");
    let mut names: Vec<_> = listed.items.iter().filter_map(|cm| cm.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["one", "two"]);
    assert!(listed.metadata.resource_version.is_some_and(|rv| !rv.is_empty()));

    let page = api.list(&ListParams::default().limit(1)).await.expect("a page");
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = api.list(&ListParams::default().limit(1).continue_token(&token)).await.expect("the next page");
    assert_eq!(rest.items.len(), 1);
    assert_ne!(page.items[0].metadata.name, rest.items[0].metadata.name);

    let patch = serde_json::json!({"data": {"key": "patched"}});
    let patched = api.patch("one", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    assert_eq!(value(&patched), Some("patched"));

    let mut current = api.get("one").await.expect("get");
    current.data = Some([("key".to_string(), "replaced".to_string())].into());
    let replaced = api.replace("one", &PostParams::default(), &current).await.expect("replace");
    assert_eq!(value(&replaced), Some("replaced"));
    let stale = api.replace("one", &PostParams::default(), &current).await.expect_err("a stale replace");
    assert!(matches!(&stale, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"), "{stale:?}");

    api.delete("one", &DeleteParams::default()).await.expect("delete");
    let missing = api.get("one").await.expect_err("get after delete");
    assert!(matches!(&missing, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"), "{missing:?}");
    assert!(api.get_opt("one").await.expect("get_opt").is_none());

    let deployments: Api<Deployment> = Api::namespaced(client(&cluster).await, "default");
    deployments.create(&PostParams::default(), &deployment("web")).await.expect("create a Deployment");
    let scale = deployments.get_scale("web").await.expect("get the scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));
    let wanted = serde_json::json!({"spec": {"replicas": 4}});
    deployments.patch_scale("web", &PatchParams::default(), &Patch::Merge(&wanted)).await.expect("patch the scale");
    let web = deployments.get("web").await.expect("get the Deployment");
    assert_eq!(web.spec.and_then(|s| s.replicas), Some(4));
}

#[tokio::test]
async fn kube_rs_watch_sees_added_modified_and_deleted() {
    let cluster = TestCluster::start();
    let api: Api<ConfigMap> = Api::namespaced(client(&cluster).await, "default");
    let listed = api.list(&ListParams::default()).await.expect("list");
    let rv = listed.metadata.resource_version.expect("a resourceVersion");
    let params = WatchParams::default().timeout(patience().as_secs() as u32);
    let mut events = api.watch(&params, &rv).await.expect("watch").boxed();

    api.create(&PostParams::default(), &configmap("w", "1")).await.expect("create");
    let patch = serde_json::json!({"data": {"key": "2"}});
    api.patch("w", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    api.delete("w", &DeleteParams::default()).await.expect("delete");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(patience(), events.next())
            .await
            .unwrap_or_else(|_| panic!("no watch event in time; saw {seen:?}"))
            .unwrap_or_else(|| panic!("the watch ended; saw {seen:?}"))
            .expect("a watch event");
        match event {
            WatchEvent::Added(cm) => seen.push(("ADDED", value(&cm).map(String::from))),
            WatchEvent::Modified(cm) => seen.push(("MODIFIED", value(&cm).map(String::from))),
            WatchEvent::Deleted(cm) => seen.push(("DELETED", value(&cm).map(String::from))),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error: {e:?}"),
        }
    }
    let one = |s: &str| Some(s.to_string());
    assert_eq!(seen, [("ADDED", one("1")), ("MODIFIED", one("2")), ("DELETED", one("2"))]);
}

/// A reflector started on an empty namespace sees what is created afterwards, and forgets what is deleted.
async fn reflector_follows_changes(config: watcher::Config) {
    let cluster = TestCluster::start();
    let api: Api<ConfigMap> = Api::namespaced(client(&cluster).await, "default");
    api.create(&PostParams::default(), &configmap("before", "0")).await.expect("create");

    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api.clone(), config)).applied_objects();
    // Any watcher error is a failure: a compatible server gives the watcher nothing to recover from.
    let failure = Arc::new(Mutex::new(None::<String>));
    let slot = Arc::clone(&failure);
    let task = tokio::spawn(async move {
        if let Err(e) = stream.try_for_each(|_| async { Ok(()) }).await {
            *slot.lock().expect("the failure slot") = Some(e.to_string());
        }
    });
    tokio::time::timeout(patience(), reader.wait_until_ready())
        .await
        .expect("the store is ready in time")
        .expect("ready");
    assert!(reader.get(&ObjectRef::new("before").within("default")).is_some());

    for i in 0..3 {
        api.create(&PostParams::default(), &configmap(&format!("after-{i}"), "1")).await.expect("create");
    }
    let patch = serde_json::json!({"data": {"key": "changed"}});
    api.patch("after-0", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    api.delete("before", &DeleteParams::default()).await.expect("delete");

    eventually_async(|| async {
        if let Some(e) = failure.lock().expect("the failure slot").as_ref() {
            panic!("the reflector failed: {e}");
        }
        assert!(!task.is_finished(), "the reflector's stream ended");
        let mut names: Vec<String> = reader.state().iter().filter_map(|cm| cm.metadata.name.clone()).collect();
        names.sort();
        let changed =
            reader.get(&ObjectRef::new("after-0").within("default")).and_then(|cm| value(&cm).map(String::from));
        if names == ["after-0", "after-1", "after-2"] && changed.as_deref() == Some("changed") {
            Ok(())
        } else {
            Err(format!("the store holds {names:?}, after-0 = {changed:?}"))
        }
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn kube_rs_reflector_sees_objects_created_after_it_started() {
    reflector_follows_changes(watcher::Config::default()).await;
}

#[tokio::test]
async fn kube_rs_reflector_works_with_streaming_lists() {
    reflector_follows_changes(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn kube_rs_discovery_finds_the_built_in_kinds() {
    let cluster = TestCluster::start();
    let client = client(&cluster).await;
    for (how, discovery) in [
        ("legacy", Discovery::new(client.clone()).run().await.expect("discovery")),
        ("aggregated", Discovery::new(client.clone()).run_aggregated().await.expect("aggregated discovery")),
    ] {
        assert!(discovery.has_group("") && discovery.has_group("apps") && discovery.has_group("batch"), "{how}");
        let apps = discovery.get("apps").expect("apps");
        assert_eq!(apps.preferred_version_or_latest(), "v1", "{how}");
        let (resource, caps) = apps.recommended_kind("Deployment").expect("Deployment");
        assert_eq!((resource.plural.as_str(), resource.api_version.as_str()), ("deployments", "apps/v1"), "{how}");
        assert_eq!(caps.scope, Scope::Namespaced, "{how}");
        for verb in [verbs::CREATE, verbs::GET, verbs::LIST, verbs::WATCH, verbs::PATCH, verbs::DELETE] {
            assert!(caps.supports_operation(verb), "{how}: Deployment lacks {verb}");
        }
        assert!(caps.subresources.iter().any(|(r, _)| r.plural == "scale"), "{how}: {:?}", caps.subresources);

        let (ns, caps) = discovery.resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace")).expect("Namespace");
        assert_eq!((ns.plural.as_str(), caps.scope), ("namespaces", Scope::Cluster), "{how}");
        let (cm, _) = discovery.resolve_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap")).expect("ConfigMap");
        assert_eq!(cm.plural, "configmaps", "{how}");
    }

    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(version.major, "1");
    assert!(version.git_version.starts_with("v1."), "{}", version.git_version);
}
