//! The StatefulSet controller against a real Gantry API server (in-process, real SQLite file), with the real
//! kubectl for `rollout status|history|undo`. No node agent or scheduler runs: the tests play the nodes by
//! writing pod status (Running, Ready) through the API.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
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
        gantry_controllers::start(client.clone(), common::manager_config(), shutdown.clone(), &mut tasks);
        Cluster { _server: server, dir, client, shutdown, tasks }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn sets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates a StatefulSet `name` of `replicas` with one claim template `data`; `extra` goes into its spec.
    async fn stateful_set(&self, name: &str, replicas: i32, extra: Value) {
        let mut set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"},
                         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}});
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                set["spec"][k] = v;
            }
        }
        self.sets().create(&PostParams::default(), &serde_json::from_value(set).unwrap()).await.unwrap();
    }

    async fn patch_spec(&self, name: &str, spec: Value) {
        let patch = json!({"spec": spec});
        self.sets().patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await.unwrap();
    }

    async fn set_image(&self, name: &str, image: &str) {
        self.patch_spec(name, json!({"template": {"spec": {"containers": [{"name": "c", "image": image}]}}})).await;
    }

    /// The names of the live (not terminating) pods labelled `app`.
    async fn pod_names(&self, app: &str) -> BTreeSet<String> {
        let list = self.pods().list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
        list.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name)
            .collect()
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

    async fn eventually_pods(&self, app: &str, names: &[&str]) {
        let wanted: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        let what = format!("pods {names:?}");
        self.eventually(&what, async || (self.pod_names(app).await == wanted).then_some(())).await;
    }

    async fn eventually_status(&self, name: &str, what: &str, check: impl Fn(&StatefulSet) -> bool) -> StatefulSet {
        self.eventually(what, async || {
            let set = self.sets().get(name).await.unwrap();
            check(&set).then_some(set)
        })
        .await
    }

    /// Plays the node for one pod: it runs and is ready.
    async fn make_ready(&self, name: &str) {
        let status = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        self.pods().patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    }

    /// Plays the nodes: marks every pod running and ready as it appears, until shutdown.
    fn play_nodes(&mut self) {
        let pods = self.pods();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            while !shutdown.is_cancelled() {
                for pod in pods.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    if running || pod.metadata.deletion_timestamp.is_some() {
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

    /// Runs the real kubectl off the async workers (the server and controllers need them meanwhile).
    async fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let kubectl = std::env::var("GANTRY_KUBECTL").map(PathBuf::from).unwrap();
        let kubeconfig = self.dir.path().join("kubeconfig");
        let home = self.dir.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(kubectl)
                .args(&args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", home)
                .env("KUBECONFIG", kubeconfig)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn counts(set: &StatefulSet) -> (i32, i32, i32, i32) {
    let s = set.status.clone().unwrap_or_default();
    (s.replicas, s.ready_replicas.unwrap_or(0), s.current_replicas.unwrap_or(0), s.updated_replicas.unwrap_or(0))
}

fn image(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default()
}

fn revision_label(pod: &Pod) -> String {
    pod.metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_comes_up_in_order_with_a_claim_per_pod_and_scales_down_from_the_top() {
    let cluster = Cluster::start().await;
    cluster.stateful_set("web", 3, json!({})).await;
    cluster.eventually_pods("web", &["web-0"]).await;
    // web-1 waits for web-0 to be ready.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.pod_names("web").await.len(), 1, "web-1 came before web-0 was ready");
    cluster.make_ready("web-0").await;
    cluster.eventually_pods("web", &["web-0", "web-1"]).await;
    cluster.make_ready("web-1").await;
    cluster.eventually_pods("web", &["web-0", "web-1", "web-2"]).await;
    cluster.make_ready("web-2").await;
    let set = cluster.eventually_status("web", "3 ready", |s| counts(s) == (3, 3, 3, 3)).await;
    let status = set.status.unwrap();
    assert_eq!(status.observed_generation, set.metadata.generation);
    assert_eq!(status.current_revision, status.update_revision);
    assert_eq!(status.available_replicas, Some(3));

    let pod = cluster.pods().get("web-1").await.unwrap();
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(Some(&labels["controller-revision-hash"]), status.current_revision.as_ref(), "the revision's name");
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("StatefulSet", set.metadata.uid.as_deref().unwrap()));
    let spec = pod.spec.unwrap();
    assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-1"), Some("web")));
    let volume = spec.volumes.unwrap().into_iter().find(|v| v.name == "data").unwrap();
    assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "data-web-1");
    for ordinal in 0..3 {
        let claim = cluster.claims().get(&format!("data-web-{ordinal}")).await.unwrap();
        assert_eq!(claim.metadata.labels.unwrap()["app"], "web");
        assert!(claim.metadata.owner_references.is_none_or(|r| r.is_empty()), "Retain: no owners");
    }
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    cluster
        .eventually("the creation event", async || {
            let list = events.list(&ListParams::default()).await.unwrap();
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("SuccessfulCreate")
                        && e.note.as_deref() == Some("create Pod web-0 in StatefulSet web successful")
                })
                .then_some(())
        })
        .await;

    // A finalizer holds web-2 in termination: web-1 must wait for it to be gone.
    let hold = json!({"metadata": {"finalizers": ["test.gantry.dev/hold"]}});
    cluster.pods().patch("web-2", &PatchParams::default(), &Patch::Merge(&hold)).await.unwrap();
    cluster.patch_spec("web", json!({"replicas": 1})).await;
    cluster
        .eventually("web-2 terminating", async || {
            let pod = cluster.pods().get("web-2").await.unwrap();
            pod.metadata.deletion_timestamp.is_some().then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.pod_names("web").await.len(), 2, "web-1 went before web-2 was gone");
    let release = json!({"metadata": {"finalizers": null}});
    cluster.pods().patch("web-2", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    cluster.eventually_pods("web", &["web-0"]).await;
    cluster.eventually_status("web", "scaled to 1", |s| counts(s) == (1, 1, 1, 1)).await;
    assert!(cluster.claims().get_opt("data-web-2").await.unwrap().is_some(), "Retain keeps the claims");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_with_a_partition_updates_only_the_pods_at_or_above_it() {
    let mut cluster = Cluster::start().await;
    cluster.play_nodes();
    cluster.stateful_set("db", 3, json!({})).await;
    let before = cluster.eventually_status("db", "3 ready", |s| counts(s) == (3, 3, 3, 3)).await;
    let old_revision = before.status.unwrap().current_revision.unwrap();
    cluster.patch_spec("db", json!({"updateStrategy": {"rollingUpdate": {"partition": 2}}})).await;
    cluster.set_image("db", "busybox:2").await;
    let set = cluster
        .eventually_status("db", "web-2 updated", |s| {
            let st = s.status.clone().unwrap_or_default();
            st.observed_generation == s.metadata.generation && counts(s) == (3, 3, 2, 1)
        })
        .await;
    let status = set.status.unwrap();
    assert_eq!(status.current_revision.as_deref(), Some(old_revision.as_str()));
    let update_revision = status.update_revision.unwrap();
    assert_ne!(update_revision, old_revision);
    let updated = cluster.pods().get("db-2").await.unwrap();
    assert_eq!((image(&updated), revision_label(&updated)), ("busybox:2".to_string(), update_revision.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for name in ["db-0", "db-1"] {
        let pod = cluster.pods().get(name).await.unwrap();
        assert_eq!((image(&pod), revision_label(&pod)), ("busybox:1".to_string(), old_revision.clone()), "{name}");
    }
    let revisions: Api<ControllerRevision> = Api::namespaced(cluster.client.clone(), "default");
    let list = revisions.list(&ListParams::default().labels("app=db")).await.unwrap();
    let mut numbers: Vec<(String, i64)> =
        list.items.iter().map(|r| (r.metadata.name.clone().unwrap(), r.revision)).collect();
    numbers.sort_by_key(|(_, n)| *n);
    assert_eq!(numbers, vec![(old_revision.clone(), 1), (update_revision.clone(), 2)]);

    cluster.patch_spec("db", json!({"updateStrategy": {"rollingUpdate": {"partition": 0}}})).await;
    let set = cluster
        .eventually_status("db", "all updated", |s| {
            let st = s.status.clone().unwrap_or_default();
            counts(s) == (3, 3, 3, 3) && st.current_revision == st.update_revision
        })
        .await;
    assert_eq!(set.status.unwrap().current_revision.as_deref(), Some(update_revision.as_str()));
    for name in ["db-0", "db-1", "db-2"] {
        assert_eq!(image(&cluster.pods().get(name).await.unwrap()), "busybox:2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_pod_management_creates_every_pod_at_once_from_the_start_ordinal_and_failed_pods_come_back() {
    let cluster = Cluster::start().await;
    cluster.stateful_set("par", 3, json!({"podManagementPolicy": "Parallel", "ordinals": {"start": 1}})).await;
    cluster.eventually_pods("par", &["par-1", "par-2", "par-3"]).await;
    let last = cluster.pods().get("par-3").await.unwrap();
    assert_eq!(last.metadata.labels.unwrap()["apps.kubernetes.io/pod-index"], "3");
    for claim in ["data-par-1", "data-par-2", "data-par-3"] {
        assert!(cluster.claims().get_opt(claim).await.unwrap().is_some(), "{claim} comes before its pod");
    }
    let first = cluster.pods().get("par-2").await.unwrap().metadata.uid.unwrap();
    let failed = json!({"status": {"phase": "Failed"}});
    cluster.pods().patch_status("par-2", &PatchParams::default(), &Patch::Merge(&failed)).await.unwrap();
    cluster
        .eventually("a new par-2", async || {
            let pod = cluster.pods().get_opt("par-2").await.unwrap()?;
            (pod.metadata.uid.as_deref() != Some(first.as_str())).then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_policy_puts_owner_references_on_claims_for_the_garbage_collector() {
    let mut cluster = Cluster::start().await;
    cluster.play_nodes();
    let policy = json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"}});
    cluster.stateful_set("kept", 2, policy).await;
    let set = cluster.eventually_status("kept", "2 ready", |s| counts(s) == (2, 2, 2, 2)).await;
    let uid = set.metadata.uid.unwrap();
    for claim in ["data-kept-0", "data-kept-1"] {
        cluster
            .eventually(&format!("{claim} owned by the set"), async || {
                let claim = cluster.claims().get(claim).await.unwrap();
                let refs = claim.metadata.owner_references.unwrap_or_default();
                refs.iter().any(|r| r.uid == uid && r.kind == "StatefulSet" && r.controller == Some(true)).then_some(())
            })
            .await;
    }
    cluster.patch_spec("kept", json!({"replicas": 1})).await;
    cluster.eventually_pods("kept", &["kept-0"]).await;
    // The scaled-down pod's claim was handed to the pod, and went with it.
    cluster
        .eventually("data-kept-1 deleted", async || {
            cluster.claims().get_opt("data-kept-1").await.unwrap().is_none().then_some(())
        })
        .await;
    let kept = cluster.claims().get("data-kept-0").await.unwrap();
    assert!(kept.metadata.owner_references.unwrap().iter().any(|r| r.uid == uid));
    // Scaled back up: a new claim, owned by the set again.
    cluster.patch_spec("kept", json!({"replicas": 2})).await;
    cluster.eventually_pods("kept", &["kept-0", "kept-1"]).await;
    cluster
        .eventually("a new data-kept-1 owned by the set", async || {
            let claim = cluster.claims().get_opt("data-kept-1").await.unwrap()?;
            let refs = claim.metadata.owner_references.unwrap_or_default();
            (refs.len() == 1 && refs[0].uid == uid).then_some(())
        })
        .await;
    // whenDeleted: Delete: the set's claims go with it.
    cluster.sets().delete("kept", &Default::default()).await.unwrap();
    cluster
        .eventually("the claims deleted with the set", async || {
            let gone = cluster.claims().list(&ListParams::default()).await.unwrap().items.is_empty();
            gone.then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_updates_a_pod_only_when_it_is_deleted() {
    let mut cluster = Cluster::start().await;
    cluster.play_nodes();
    cluster.stateful_set("manual", 2, json!({"updateStrategy": {"type": "OnDelete"}})).await;
    cluster.eventually_status("manual", "2 ready", |s| counts(s) == (2, 2, 2, 2)).await;
    cluster.set_image("manual", "busybox:2").await;
    let set = cluster
        .eventually_status("manual", "a new update revision", |s| {
            let st = s.status.clone().unwrap_or_default();
            st.observed_generation == s.metadata.generation && st.update_revision != st.current_revision
        })
        .await;
    let update_revision = set.status.unwrap().update_revision.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for name in ["manual-0", "manual-1"] {
        assert_eq!(image(&cluster.pods().get(name).await.unwrap()), "busybox:1", "{name} was replaced");
    }
    cluster.pods().delete("manual-1", &Default::default()).await.unwrap();
    cluster
        .eventually("manual-1 recreated at the update revision", async || {
            let pod = cluster.pods().get_opt("manual-1").await.unwrap()?;
            (image(&pod) == "busybox:2" && revision_label(&pod) == update_revision).then_some(())
        })
        .await;
    cluster.eventually_status("manual", "one updated", |s| counts(s) == (2, 2, 1, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_history_and_undo_work_for_stateful_sets() {
    if std::env::var_os("GANTRY_KUBECTL").is_none() {
        eprintln!("skipped: GANTRY_KUBECTL is not set (scripts/fetch-clients provides kubectl)");
        return;
    }
    let mut cluster = Cluster::start().await;
    cluster.play_nodes();
    cluster.stateful_set("app", 2, json!({})).await;
    let (ok, out) = cluster.kubectl(&["rollout", "status", "statefulset/app", "--timeout=60s"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("roll out complete") || out.contains("rolling update complete"), "{out}");

    let (ok, out) = cluster.kubectl(&["annotate", "statefulset/app", "kubernetes.io/change-cause=to v2"]).await;
    assert!(ok, "{out}");
    cluster.set_image("app", "busybox:2").await;
    let (ok, out) = cluster.kubectl(&["rollout", "status", "statefulset/app", "--timeout=60s"]).await;
    assert!(ok, "{out}");
    let set = cluster.sets().get("app").await.unwrap();
    let status = set.status.unwrap();
    assert_eq!(status.updated_replicas, Some(2), "rollout status returned before the pods were updated: {out}");
    let (ok, out) = cluster.kubectl(&["rollout", "history", "statefulset/app"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("to v2"), "{out}");
    let numbers: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(numbers.contains(&"1") && numbers.contains(&"2"), "{out}");
    let (ok, out) = cluster.kubectl(&["rollout", "history", "statefulset/app", "--revision=2"]).await;
    assert!(ok && out.contains("busybox:2"), "{out}");

    let (ok, out) = cluster.kubectl(&["rollout", "undo", "statefulset/app"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("rolled back"), "{out}");
    let (ok, out) = cluster.kubectl(&["rollout", "status", "statefulset/app", "--timeout=60s"]).await;
    assert!(ok, "{out}");
    let set = cluster.sets().get("app").await.unwrap();
    let image = set.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("busybox:1"), "undo brings the previous template back");
    let set = cluster
        .eventually_status("app", "rolled back", |s| {
            let st = s.status.clone().unwrap_or_default();
            counts(s) == (2, 2, 2, 2) && st.current_revision == st.update_revision
        })
        .await;
    for name in ["app-0", "app-1"] {
        assert_eq!(
            cluster.pods().get(name).await.unwrap().spec.unwrap().containers[0].image.as_deref(),
            Some("busybox:1")
        );
    }
    // The revision's data is byte for byte what kubectl computes from the set: undoing to it is a no-op.
    let (ok, out) = cluster.kubectl(&["rollout", "undo", "statefulset/app", "--to-revision=3"]).await;
    assert!(ok && out.contains("skipped rollback"), "{out}");
    let (ok, out) = cluster.kubectl(&["rollout", "history", "statefulset/app"]).await;
    assert!(ok, "{out}");
    let numbers: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(
        numbers.contains(&"2") && numbers.contains(&"3") && !numbers.contains(&"1"),
        "the undone revision is renumbered: {out}"
    );
    assert!(set.status.unwrap().update_revision.is_some());
}
