//! The garbage collector against a real Gantry API server (in-process, real SQLite file): ConfigMaps owned by
//! ConfigMaps, deleted with each propagation policy.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::time::Duration;

use gantry_controllers::start;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
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
        let (server, dir, shutdown, _) = common::start_server().await;
        let mut cluster = Cluster { _server: server, dir, shutdown, tasks: JoinSet::new() };
        let client = cluster.client().await;
        start(client, common::manager_config(), cluster.shutdown.clone(), &mut cluster.tasks);
        cluster
    }

    async fn client(&self) -> kube::Client {
        common::client_for(self.dir.path()).await
    }

    async fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client().await, "default")
    }

    /// Creates a ConfigMap owned by `owners` (`(owner, blockOwnerDeletion)`); returns its UID.
    async fn config_map(&self, name: &str, owners: &[(&ConfigMap, bool)], extra: serde_json::Value) -> ConfigMap {
        let references: Vec<serde_json::Value> = owners
            .iter()
            .map(|(owner, block)| {
                json!({"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name,
                       "uid": owner.metadata.uid, "blockOwnerDeletion": block})
            })
            .collect();
        let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "ownerReferences": references}, "data": {"k": "v"}});
        if let (Some(meta), Some(extra)) = (object["metadata"].as_object_mut(), extra.as_object()) {
            meta.extend(extra.clone());
        }
        self.config_maps().await.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.unwrap()
    }

    /// Waits until `check` holds of the ConfigMap `name` (`None`: absent).
    async fn eventually(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(Option<&ConfigMap>) -> bool,
    ) -> Option<ConfigMap> {
        let api = self.config_maps().await;
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let current = api.get_opt(name).await.unwrap();
            if check(current.as_ref()) {
                return current;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} never {what}: {current:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the real kubectl against this cluster (a blocking call, off the runtime's workers).
    async fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let kubeconfig = self.dir.path().join("kubeconfig");
        let home = self.dir.path().join("home");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&home).unwrap();
            let output = std::process::Command::new(kubectl_path())
                .env_clear()
                .env("HOME", &home)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg(format!("--request-timeout={}s", gantry_store::testing::patience().as_secs()))
                .args(&args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "kubectl {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            output
        })
        .await
        .unwrap()
    }

    async fn delete(&self, name: &str, params: DeleteParams) {
        self.config_maps().await.delete(name, &params).await.unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The real kubectl: `GANTRY_KUBECTL` if set, else the one `scripts/fetch-clients` provides.
fn kubectl_path() -> std::path::PathBuf {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os("GANTRY_KUBECTL").filter(|p| !p.is_empty()) {
            return path.into();
        }
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-clients");
        let output = std::process::Command::new("sh").arg(&script).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        std::path::Path::new(stdout.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap()).join("kubectl")
    })
    .clone()
}

fn owner_uids(cm: &ConfigMap) -> Vec<String> {
    cm.metadata.owner_references.iter().flatten().map(|o| o.uid.clone()).collect()
}

fn finalizers(cm: &ConfigMap) -> Vec<String> {
    cm.metadata.finalizers.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_of_the_owner_deletes_its_dependents() {
    let cluster = Cluster::start().await;
    let owner = cluster.config_map("owner", &[], json!({})).await;
    cluster.config_map("dependent-a", &[(&owner, false)], json!({})).await;
    cluster.config_map("dependent-b", &[(&owner, true)], json!({})).await;
    let grandchild_owner = cluster.config_maps().await.get("dependent-a").await.unwrap();
    cluster.config_map("grandchild", &[(&grandchild_owner, false)], json!({})).await;
    cluster.config_map("unrelated", &[], json!({})).await;

    cluster.delete("owner", DeleteParams::background()).await;

    for name in ["dependent-a", "dependent-b", "grandchild"] {
        cluster.eventually(name, "deleted", |cm| cm.is_none()).await;
    }
    assert!(cluster.config_maps().await.get_opt("unrelated").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_keeps_the_owner_until_its_blocking_dependents_are_gone() {
    let cluster = Cluster::start().await;
    let owner = cluster.config_map("owner", &[], json!({})).await;
    // A finalizer holds the blocking dependent after its deletion, so that the owner's wait shows.
    cluster.config_map("blocking", &[(&owner, true)], json!({"finalizers": ["example.com/hold"]})).await;
    cluster.config_map("non-blocking", &[(&owner, false)], json!({})).await;

    cluster.delete("owner", DeleteParams::foreground()).await;

    cluster.eventually("non-blocking", "deleted", |cm| cm.is_none()).await;
    cluster
        .eventually("blocking", "marked for deletion", |cm| {
            cm.is_some_and(|cm| cm.metadata.deletion_timestamp.is_some())
        })
        .await;
    let waiting = cluster.config_maps().await.get("owner").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(finalizers(&waiting), vec!["foregroundDeletion".to_string()]);

    let release = json!({"metadata": {"finalizers": null}});
    cluster
        .config_maps()
        .await
        .patch("blocking", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&release))
        .await
        .unwrap();
    cluster.eventually("blocking", "deleted", |cm| cm.is_none()).await;
    cluster.eventually("owner", "deleted", |cm| cm.is_none()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_cascades_through_dependents_with_dependents() {
    let cluster = Cluster::start().await;
    let owner = cluster.config_map("owner", &[], json!({})).await;
    let middle = cluster.config_map("middle", &[(&owner, true)], json!({})).await;
    cluster.config_map("leaf", &[(&middle, true)], json!({"finalizers": ["example.com/hold"]})).await;

    cluster.delete("owner", DeleteParams::foreground()).await;

    let leaf = cluster
        .eventually("leaf", "marked for deletion", |cm| cm.is_some_and(|cm| cm.metadata.deletion_timestamp.is_some()))
        .await
        .unwrap();
    assert_eq!(finalizers(&leaf), vec!["example.com/hold".to_string()]);
    let middle = cluster.config_maps().await.get("middle").await.unwrap();
    assert_eq!(finalizers(&middle), vec!["foregroundDeletion".to_string()], "the middle waits in the foreground");
    assert!(cluster.config_maps().await.get_opt("owner").await.unwrap().is_some());

    let release = json!({"metadata": {"finalizers": null}});
    cluster
        .config_maps()
        .await
        .patch("leaf", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&release))
        .await
        .unwrap();
    for name in ["leaf", "middle", "owner"] {
        cluster.eventually(name, "deleted", |cm| cm.is_none()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_releases_the_dependents_and_deletes_the_owner() {
    let cluster = Cluster::start().await;
    let owner = cluster.config_map("owner", &[], json!({})).await;
    let other = cluster.config_map("other-owner", &[], json!({})).await;
    cluster.config_map("dependent-a", &[(&owner, true)], json!({})).await;
    cluster.config_map("dependent-b", &[(&owner, false), (&other, false)], json!({})).await;

    cluster
        .delete(
            "owner",
            DeleteParams { propagation_policy: Some(kube::api::PropagationPolicy::Orphan), ..DeleteParams::default() },
        )
        .await;

    cluster.eventually("owner", "deleted", |cm| cm.is_none()).await;
    let a = cluster.config_maps().await.get("dependent-a").await.unwrap();
    assert!(owner_uids(&a).is_empty(), "{a:?}");
    let b = cluster.config_maps().await.get("dependent-b").await.unwrap();
    assert_eq!(owner_uids(&b), vec![other.metadata.uid.clone().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_of_an_owner_that_never_existed_is_deleted() {
    let cluster = Cluster::start().await;
    let mut ghost = cluster.config_map("ghost", &[], json!({})).await;
    // Same name as a live object, another UID: that owner does not exist either.
    ghost.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
    let mut nobody = ghost.clone();
    nobody.metadata.name = Some("nobody".into());
    cluster.config_map("same-name-other-uid", &[(&ghost, false)], json!({})).await;
    cluster.config_map("no-such-name", &[(&nobody, false)], json!({})).await;

    cluster.eventually("same-name-other-uid", "deleted", |cm| cm.is_none()).await;
    cluster.eventually("no-such-name", "deleted", |cm| cm.is_none()).await;
    assert!(cluster.config_maps().await.get_opt("ghost").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_with_two_owners_survives_one_owners_deletion_without_its_reference() {
    let cluster = Cluster::start().await;
    let first = cluster.config_map("first", &[], json!({})).await;
    let second = cluster.config_map("second", &[], json!({})).await;
    cluster.config_map("shared", &[(&first, false), (&second, false)], json!({})).await;

    cluster.delete("first", DeleteParams::background()).await;

    let second_uid = second.metadata.uid.clone().unwrap();
    cluster
        .eventually("shared", "left with its remaining owner", |cm| {
            cm.is_some_and(|cm| owner_uids(cm) == vec![second_uid.clone()])
        })
        .await;

    cluster.delete("second", DeleteParams::background()).await;
    cluster.eventually("shared", "deleted", |cm| cm.is_none()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_created_after_its_owner_was_deleted_is_deleted() {
    let cluster = Cluster::start().await;
    // The owner is gone before the dependent appears: only a live lookup can tell.
    let owner = cluster.config_map("owner", &[], json!({})).await;
    cluster.delete("owner", DeleteParams::background()).await;
    cluster.config_map("late-dependent", &[(&owner, true)], json!({})).await;
    cluster.eventually("late-dependent", "deleted", |cm| cm.is_none()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_cascades_in_the_background_the_foreground_or_not_at_all() {
    let cluster = Cluster::start().await;
    for cascade in ["background", "foreground", "orphan"] {
        let owner = cluster.config_map(&format!("{cascade}-owner"), &[], json!({})).await;
        let dependent = format!("{cascade}-dependent");
        cluster.config_map(&dependent, &[(&owner, true)], json!({})).await;
        // kubectl waits for the owner to be gone, so the foreground and orphan work is done when it returns.
        let deleted = cluster
            .kubectl(&["delete", "configmap", &format!("{cascade}-owner"), &format!("--cascade={cascade}")])
            .await;
        assert!(String::from_utf8_lossy(&deleted.stdout).contains("deleted"), "{deleted:?}");
        let api = cluster.config_maps().await;
        assert!(api.get_opt(&format!("{cascade}-owner")).await.unwrap().is_none());
        match cascade {
            "background" => {
                cluster.eventually(&dependent, "deleted", |cm| cm.is_none()).await;
            }
            "foreground" => assert!(api.get_opt(&dependent).await.unwrap().is_none(), "deleted before its owner"),
            _ => {
                let kept = api.get(&dependent).await.unwrap();
                assert!(owner_uids(&kept).is_empty(), "released before its owner went: {kept:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_dependents_follow_cluster_scoped_owners_and_ignore_namespaced_ones() {
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::api::events::v1::Event;
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = |name: &str, owner: Option<(&str, &str, &str, String)>| {
        let references: Vec<serde_json::Value> = owner
            .into_iter()
            .map(|(api_version, kind, name, uid)| json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}))
            .collect();
        serde_json::from_value::<Node>(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "ownerReferences": references}}))
        .unwrap()
    };
    let owner = nodes.create(&PostParams::default(), &node("owner-node", None)).await.unwrap();
    let owner_uid = owner.metadata.uid.clone().unwrap();
    nodes
        .create(&PostParams::default(), &node("dependent-node", Some(("v1", "Node", "owner-node", owner_uid))))
        .await
        .unwrap();
    let config_map = cluster.config_map("namespaced-owner", &[], json!({})).await;
    let invalid = Some(("v1", "ConfigMap", "namespaced-owner", config_map.metadata.uid.clone().unwrap()));
    nodes.create(&PostParams::default(), &node("invalid-dependent", invalid)).await.unwrap();

    nodes.delete("owner-node", &DeleteParams::background()).await.unwrap();

    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    let events: Api<Event> = Api::namespaced(client, "default");
    loop {
        let dependent_gone = nodes.get_opt("dependent-node").await.unwrap().is_none();
        let reported = events.list(&Default::default()).await.unwrap().items.iter().any(|e| {
            e.reason.as_deref() == Some("OwnerRefInvalidNamespace")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("invalid-dependent")
        });
        if dependent_gone && reported {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dependent deleted: {dependent_gone}, invalid reference reported: {reported}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(nodes.get_opt("invalid-dependent").await.unwrap().is_some(), "an invalid reference deletes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_dependents_go_with_their_owner() {
    use futures::StreamExt;
    let cluster = Cluster::start().await;
    let owner = cluster.config_map("owner", &[], json!({})).await;
    let names: Vec<String> = (0..300).map(|i| format!("dependent-{i}")).collect();
    futures::stream::iter(&names)
        .for_each_concurrent(16, |name| {
            let (cluster, owner) = (&cluster, &owner);
            async move {
                cluster.config_map(name, &[(owner, true)], json!({})).await;
            }
        })
        .await;

    cluster.delete("owner", DeleteParams::foreground()).await;

    cluster.eventually("owner", "deleted after its dependents", |cm| cm.is_none()).await;
    let left = cluster.config_maps().await.list(&Default::default()).await.unwrap().items;
    assert!(left.is_empty(), "{} dependents left", left.len());
}
