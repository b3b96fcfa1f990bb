//! The DaemonSet controller against a real Gantry API server (in-process, real SQLite file), with the real
//! kubectl for `rollout history|undo|status`. Neither a node agent nor the scheduler runs: the test writes the
//! Node objects, DaemonSet pods stay unbound with the node affinity the controller pins them with, and the test
//! plays the nodes by marking pods ready through the API.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const HASH: &str = "controller-revision-hash";

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
        let mut manager = common::manager_config();
        // The Node objects have no agent behind them: keep the node lifecycle controller from tainting them
        // unreachable while the test runs.
        manager.node_lifecycle.startup_grace_period = Duration::from_secs(3600);
        manager.node_lifecycle.grace_period = Duration::from_secs(3600);
        gantry_controllers::start(client.clone(), manager, shutdown.clone(), &mut tasks);
        Cluster { _server: server, dir, client, shutdown, tasks }
    }

    fn sets(&self) -> Api<DaemonSet> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    async fn node(&self, name: &str, taints: Value) {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name}}, "spec": {"taints": taints}});
        self.nodes().create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
    }

    async fn daemon_set(&self, name: &str, image: &str, extra: Value) {
        let mut ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}});
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                if k == "podSpec" {
                    for (pk, pv) in v.as_object().unwrap() {
                        ds["spec"]["template"]["spec"][pk] = pv.clone();
                    }
                } else {
                    ds["spec"][k] = v;
                }
            }
        }
        self.sets().create(&PostParams::default(), &serde_json::from_value(ds).unwrap()).await.unwrap();
    }

    async fn set_image(&self, name: &str, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
        self.sets().patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await.unwrap();
    }

    /// The DaemonSet's pods not being deleted.
    async fn active_pods(&self, app: &str) -> Vec<Pod> {
        let list = self.pods().list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
        list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
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

    /// Polls until the pods of `app`, by node, satisfy `check`.
    async fn eventually_pods(
        &self,
        app: &str,
        what: &str,
        check: impl Fn(&BTreeMap<String, Vec<Pod>>) -> bool,
    ) -> BTreeMap<String, Vec<Pod>> {
        self.eventually(what, async || {
            let by_node = by_node(self.active_pods(app).await);
            check(&by_node).then_some(by_node)
        })
        .await
    }

    async fn eventually_status(&self, name: &str, what: &str, check: impl Fn(&DaemonSetStatus) -> bool) -> DaemonSet {
        self.eventually(what, async || {
            let ds = self.sets().get(name).await.unwrap();
            let current = ds.status.as_ref().is_some_and(|s| s.observed_generation == ds.metadata.generation);
            (current && check(ds.status.as_ref().unwrap())).then_some(ds)
        })
        .await
    }

    /// Plays the node: the pod runs and is ready.
    async fn make_ready(&self, pod: &Pod) {
        let status = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let name = pod.metadata.name.as_deref().unwrap();
        let _ = self.pods().patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await;
    }

    /// Plays every node: marks each new pod of `app` ready, until shutdown.
    fn play_nodes(&mut self, app: &str) {
        let pods = self.pods();
        let shutdown = self.shutdown.clone();
        let selector = format!("app={app}");
        self.tasks.spawn(async move {
            while !shutdown.is_cancelled() {
                let list = pods.list(&ListParams::default().labels(&selector)).await.map(|l| l.items);
                for pod in list.unwrap_or_default() {
                    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                    if phase == Some("Running") || pod.metadata.deletion_timestamp.is_some() {
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

    async fn revisions(&self) -> Vec<ControllerRevision> {
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), "default");
        let mut items = api.list(&ListParams::default()).await.unwrap().items;
        items.sort_by_key(|r| r.revision);
        items
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let kubectl = std::env::var("GANTRY_KUBECTL").map(PathBuf::from).unwrap();
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let output = std::process::Command::new(kubectl)
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", &home)
            .output()
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

/// The node a DaemonSet pod is pinned to by its required node affinity (`matchFields metadata.name In`).
fn pinned_node(pod: &Pod) -> String {
    let affinity = serde_json::to_value(pod.spec.as_ref().unwrap().affinity.as_ref().unwrap()).unwrap();
    let terms = &affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    assert_eq!(terms.as_array().unwrap().len(), 1, "one term: {terms}");
    let field = &terms[0]["matchFields"][0];
    assert_eq!((field["key"].as_str(), field["operator"].as_str()), (Some("metadata.name"), Some("In")));
    field["values"][0].as_str().unwrap().to_string()
}

fn by_node(pods: Vec<Pod>) -> BTreeMap<String, Vec<Pod>> {
    let mut map: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in pods {
        map.entry(pinned_node(&pod)).or_default().push(pod);
    }
    map
}

fn one_per_node(by_node: &BTreeMap<String, Vec<Pod>>, nodes: &[&str]) -> bool {
    by_node.len() == nodes.len() && nodes.iter().all(|n| by_node.get(*n).is_some_and(|p| p.len() == 1))
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn image(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default()
}

fn counts(s: &DaemonSetStatus) -> [i32; 7] {
    [
        s.desired_number_scheduled,
        s.current_number_scheduled,
        s.number_ready,
        s.number_available.unwrap_or(0),
        s.updated_number_scheduled.unwrap_or(0),
        s.number_unavailable.unwrap_or(0),
        s.number_misscheduled,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_runs_one_pod_per_node_and_follows_new_nodes() {
    let cluster = Cluster::start().await;
    for n in ["n1", "n2", "n3"] {
        cluster.node(n, json!([])).await;
    }
    cluster.daemon_set("agent", "busybox:1", json!({})).await;
    let pods =
        cluster.eventually_pods("agent", "a pod on each of 3 nodes", |p| one_per_node(p, &["n1", "n2", "n3"])).await;
    let ds = cluster.sets().get("agent").await.unwrap();
    for pod in pods.values().flatten() {
        assert!(pod.metadata.name.as_deref().unwrap().starts_with("agent-"));
        assert_eq!(pod.spec.as_ref().unwrap().node_name, None, "the scheduler binds DaemonSet pods");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("DaemonSet", ds.metadata.uid.as_deref().unwrap()));
        assert_eq!(owner.controller, Some(true));
        assert_eq!(label(pod, "pod-template-generation"), Some("1"));
        assert!(label(pod, HASH).is_some_and(|h| !h.is_empty()));
        let tolerations = pod.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
        assert!(tolerations.iter().any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
            && t.effect.as_deref() == Some("NoExecute")
            && t.toleration_seconds.is_none()));
    }
    let ds = cluster.eventually_status("agent", "3 desired, none ready", |s| counts(s) == [3, 3, 0, 0, 3, 3, 0]).await;
    assert_eq!(ds.metadata.annotations.unwrap()["deprecated.daemonset.template.generation"], "1");
    for pod in pods.values().flatten() {
        cluster.make_ready(pod).await;
    }
    cluster.eventually_status("agent", "3 ready and available", |s| counts(s) == [3, 3, 3, 3, 3, 0, 0]).await;

    cluster.node("n4", json!([])).await;
    cluster.eventually_pods("agent", "a pod on the new node", |p| one_per_node(p, &["n1", "n2", "n3", "n4"])).await;
    cluster.eventually_status("agent", "4 desired, 3 available", |s| counts(s) == [4, 4, 3, 3, 4, 1, 0]).await;

    // A node going away takes its unbound pod with it.
    cluster.nodes().delete("n4", &DeleteParams::default()).await.unwrap();
    cluster
        .eventually_pods("agent", "the pod of the deleted node gone", |p| one_per_node(p, &["n1", "n2", "n3"]))
        .await;
    cluster.eventually_status("agent", "back to 3", |s| counts(s) == [3, 3, 3, 3, 3, 0, 0]).await;

    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    cluster
        .eventually("SuccessfulCreate events", async || {
            let list = events.list(&ListParams::default()).await.unwrap().items;
            let created = list.iter().filter(|e| e.reason.as_deref() == Some("SuccessfulCreate")).count();
            (created >= 4).then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tainted_nodes_are_skipped_unless_the_daemon_set_tolerates_their_taints() {
    let cluster = Cluster::start().await;
    cluster.node("plain-1", json!([])).await;
    cluster.node("plain-2", json!([])).await;
    cluster.node("infra", json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}])).await;
    cluster.daemon_set("logs", "busybox:1", json!({})).await;
    let tolerations = json!([{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]);
    cluster.daemon_set("infra-agent", "busybox:1", json!({"podSpec": {"tolerations": tolerations}})).await;
    cluster
        .eventually_pods("infra-agent", "a pod on every node", |p| one_per_node(p, &["infra", "plain-1", "plain-2"]))
        .await;
    cluster.eventually_status("logs", "2 desired", |s| s.desired_number_scheduled == 2).await;
    let pods = cluster
        .eventually_pods("logs", "pods on the untainted nodes", |p| one_per_node(p, &["plain-1", "plain-2"]))
        .await;
    assert!(!pods.contains_key("infra"));

    // A NoSchedule taint added later keeps the running pod; an untolerated NoExecute taint removes it.
    let taint = |effect: &str| json!({"spec": {"taints": [{"key": "maintenance", "effect": effect}]}});
    let nodes = cluster.nodes();
    nodes.patch("plain-2", &PatchParams::default(), &Patch::Merge(&taint("NoSchedule"))).await.unwrap();
    cluster.eventually_status("logs", "plain-2 no longer desired", |s| s.desired_number_scheduled == 1).await;
    let ds = cluster.sets().get("logs").await.unwrap();
    assert_eq!(ds.status.unwrap().number_misscheduled, 1, "the running pod stays, misscheduled");
    assert_eq!(by_node(cluster.active_pods("logs").await).len(), 2);
    nodes.patch("plain-2", &PatchParams::default(), &Patch::Merge(&taint("NoExecute"))).await.unwrap();
    cluster.eventually_pods("logs", "the pod on plain-2 deleted", |p| one_per_node(p, &["plain-1"])).await;
    cluster
        .eventually_status("logs", "1 desired, none misscheduled", |s| {
            s.desired_number_scheduled == 1 && s.number_misscheduled == 0
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_rolls_pods_within_max_unavailable_and_keeps_revisions() {
    let cluster = Cluster::start().await;
    let nodes = ["r1", "r2", "r3", "r4", "r5"];
    for n in nodes {
        cluster.node(n, json!([])).await;
    }
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}});
    cluster.daemon_set("roll", "busybox:1", json!({"updateStrategy": strategy})).await;
    let pods = cluster.eventually_pods("roll", "5 pods", |p| one_per_node(p, &nodes)).await;
    for pod in pods.values().flatten() {
        cluster.make_ready(pod).await;
    }
    cluster.eventually_status("roll", "5 available", |s| s.number_available == Some(5)).await;
    let first_hash = label(&pods["r1"][0], HASH).unwrap().to_string();

    cluster.set_image("roll", "busybox:2").await;
    // Play the nodes by hand, checking at every look that at most 2 nodes lack a ready pod.
    let mut worst = 0;
    cluster
        .eventually("the rollout", async || {
            let pods = by_node(cluster.active_pods("roll").await);
            let unavailable = nodes
                .iter()
                .filter(|n| {
                    !pods.get(**n).is_some_and(|p| {
                        p.iter().any(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                    })
                })
                .count();
            worst = worst.max(unavailable);
            assert!(unavailable <= 2, "{unavailable} nodes without a ready pod");
            for pod in pods.values().flatten() {
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
                    cluster.make_ready(pod).await;
                }
            }
            let done = one_per_node(&pods, &nodes) && pods.values().flatten().all(|p| image(p) == "busybox:2");
            done.then_some(())
        })
        .await;
    assert!(worst >= 1, "the rollout replaced pods");
    let ds =
        cluster.eventually_status("roll", "all updated and available", |s| counts(s) == [5, 5, 5, 5, 5, 0, 0]).await;
    let pods = cluster.active_pods("roll").await;
    assert!(pods.iter().all(|p| label(p, "pod-template-generation") == Some("2")));
    let second_hash = label(&pods[0], HASH).unwrap().to_string();
    assert_ne!(first_hash, second_hash);

    let revisions = cluster.revisions().await;
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    let uid = ds.metadata.uid.clone().unwrap();
    for (revision, (number, hash)) in revisions.iter().zip([(1, &first_hash), (2, &second_hash)]) {
        assert_eq!(revision.revision, number);
        assert_eq!(revision.metadata.name.as_deref(), Some(format!("roll-{hash}").as_str()));
        assert_eq!(label_of(&revision.metadata, HASH), Some(hash.as_str()));
        assert_eq!(label_of(&revision.metadata, "app"), Some("roll"));
        assert_eq!(revision.metadata.owner_references.as_ref().unwrap()[0].uid, uid);
        let data = &revision.data.as_ref().unwrap().0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
    }
    let image_in = |r: &ControllerRevision| {
        r.data.as_ref().unwrap().0["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    };
    assert_eq!(image_in(&revisions[0]), "busybox:1");
    assert_eq!(image_in(&revisions[1]), "busybox:2");
}

fn label_of<'a>(meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_surge_the_new_pod_starts_first_and_the_old_one_goes_once_the_new_one_is_available() {
    let cluster = Cluster::start().await;
    cluster.node("s1", json!([])).await;
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    cluster.daemon_set("surge", "busybox:1", json!({"updateStrategy": strategy})).await;
    let pods = cluster.eventually_pods("surge", "a pod", |p| one_per_node(p, &["s1"])).await;
    let old = pods["s1"][0].clone();
    cluster.make_ready(&old).await;
    cluster.eventually_status("surge", "available", |s| s.number_available == Some(1)).await;
    cluster.set_image("surge", "busybox:2").await;
    let pods = cluster
        .eventually_pods("surge", "the new pod beside the old", |p| p.get("s1").is_some_and(|p| p.len() == 2))
        .await;
    let new = pods["s1"].iter().find(|p| image(p) == "busybox:2").unwrap().clone();
    // Not yet ready: the old pod must stay.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.active_pods("surge").await.len(), 2, "the old pod waits for the new one");
    cluster.make_ready(&new).await;
    let pods = cluster.eventually_pods("surge", "only the new pod", |p| one_per_node(p, &["s1"])).await;
    assert_eq!(pods["s1"][0].metadata.name, new.metadata.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pods_are_replaced_and_on_delete_waits_for_pods_to_be_deleted() {
    let cluster = Cluster::start().await;
    cluster.node("f1", json!([])).await;
    cluster.daemon_set("od", "busybox:1", json!({"updateStrategy": {"type": "OnDelete"}})).await;
    let pods = cluster.eventually_pods("od", "a pod", |p| one_per_node(p, &["f1"])).await;
    let first = pods["f1"][0].clone();
    let failed = json!({"status": {"phase": "Failed"}});
    let name = first.metadata.name.as_deref().unwrap();
    cluster.pods().patch_status(name, &PatchParams::default(), &Patch::Merge(&failed)).await.unwrap();
    let pods = cluster
        .eventually_pods("od", "a replacement", |p| {
            one_per_node(p, &["f1"]) && p["f1"][0].metadata.name != first.metadata.name
        })
        .await;
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    cluster
        .eventually("a FailedDaemonPod event", async || {
            let list = events.list(&ListParams::default()).await.unwrap().items;
            list.iter()
                .find(|e| e.reason.as_deref() == Some("FailedDaemonPod"))
                .map(|e| assert!(e.note.as_deref().unwrap().contains(&format!("default/{name} on node f1")), "{e:?}"))
        })
        .await;

    let current = pods["f1"][0].clone();
    cluster.make_ready(&current).await;
    cluster.set_image("od", "busybox:2").await;
    cluster.eventually_status("od", "the new template seen, not rolled", |s| counts(s) == [1, 1, 1, 1, 0, 0, 0]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(image(&cluster.active_pods("od").await[0]), "busybox:1", "OnDelete does not replace pods");
    cluster.pods().delete(current.metadata.name.as_deref().unwrap(), &DeleteParams::default()).await.unwrap();
    let pods = cluster
        .eventually_pods("od", "a new pod", |p| one_per_node(p, &["f1"]) && image(&p["f1"][0]) == "busybox:2")
        .await;
    assert_eq!(label(&pods["f1"][0], "pod-template-generation"), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_history_undo_and_status_work_for_daemon_sets() {
    if std::env::var_os("GANTRY_KUBECTL").is_none() {
        eprintln!("skipped: GANTRY_KUBECTL is not set (scripts/fetch-clients provides kubectl)");
        return;
    }
    let mut cluster = Cluster::start().await;
    cluster.play_nodes("hist");
    cluster.node("h1", json!([])).await;
    cluster.node("h2", json!([])).await;
    cluster.daemon_set("hist", "busybox:1", json!({})).await;
    let (ok, out) = cluster.kubectl(&["rollout", "status", "daemonset/hist", "--timeout=60s"]);
    assert!(ok && out.contains("daemon set \"hist\" successfully rolled out"), "{out}");

    let (ok, out) = cluster.kubectl(&["annotate", "daemonset/hist", "kubernetes.io/change-cause=to v2"]);
    assert!(ok, "{out}");
    cluster.set_image("hist", "busybox:2").await;
    let (ok, out) = cluster.kubectl(&["rollout", "status", "daemonset/hist", "--timeout=60s"]);
    assert!(ok && out.contains("successfully rolled out"), "{out}");
    let (ok, out) = cluster.kubectl(&["rollout", "history", "daemonset/hist"]);
    assert!(ok, "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].starts_with('1') && rows[1].starts_with('2') && rows[1].contains("to v2"), "{out}");
    let (ok, out) = cluster.kubectl(&["rollout", "history", "daemonset/hist", "--revision=1"]);
    assert!(ok && out.contains("busybox:1"), "{out}");

    let (ok, out) = cluster.kubectl(&["rollout", "undo", "daemonset/hist"]);
    assert!(ok && out.contains("rolled back"), "{out}");
    let ds = cluster.sets().get("hist").await.unwrap();
    let template_image = ds.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
    assert_eq!(template_image.as_deref(), Some("busybox:1"), "undo brings the first template back");
    let (ok, out) = cluster.kubectl(&["rollout", "status", "daemonset/hist", "--timeout=60s"]);
    assert!(ok && out.contains("successfully rolled out"), "{out}");
    cluster
        .eventually_pods("hist", "pods back on busybox:1", |p| {
            one_per_node(p, &["h1", "h2"]) && p.values().flatten().all(|pod| image(pod) == "busybox:1")
        })
        .await;
    // The first revision came back as the newest: renumbered, not copied.
    let revisions = cluster
        .eventually("revision 1 renumbered 3", async || {
            let revisions = cluster.revisions().await;
            (revisions.iter().map(|r| r.revision).collect::<Vec<_>>() == [2, 3]).then_some(revisions)
        })
        .await;
    let image_in = |r: &ControllerRevision| {
        r.data.as_ref().unwrap().0["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    };
    assert_eq!(image_in(&revisions[1]), "busybox:1");
    let (ok, out) = cluster.kubectl(&["rollout", "history", "daemonset/hist"]);
    assert!(ok, "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).collect();
    assert!(rows.len() == 2 && rows[0].starts_with('2') && rows[1].starts_with('3'), "{out}");
    let (ok, out) = cluster.kubectl(&["rollout", "undo", "daemonset/hist", "--to-revision=3"]);
    assert!(ok && out.contains("skipped rollback (current template already matches revision 3)"), "{out}");
    let (ok, out) = cluster.kubectl(&["rollout", "undo", "daemonset/hist", "--to-revision=2"]);
    assert!(ok, "{out}");
    cluster
        .eventually_pods("hist", "pods on busybox:2 again", |p| {
            one_per_node(p, &["h1", "h2"]) && p.values().flatten().all(|pod| image(pod) == "busybox:2")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_revisions_beyond_the_history_limit_are_deleted() {
    let mut cluster = Cluster::start().await;
    cluster.play_nodes("trim");
    cluster.node("t1", json!([])).await;
    cluster.daemon_set("trim", "busybox:0", json!({"revisionHistoryLimit": 2})).await;
    for version in 1..=4 {
        cluster.set_image("trim", &format!("busybox:{version}")).await;
        cluster
            .eventually_pods("trim", "rolled", |p| {
                one_per_node(p, &["t1"]) && image(&p["t1"][0]) == format!("busybox:{version}")
            })
            .await;
    }
    let revisions = cluster
        .eventually("2 old revisions and the current one", async || {
            let revisions = cluster.revisions().await;
            (revisions.len() == 3).then_some(revisions)
        })
        .await;
    assert_eq!(revisions.iter().map(|r| r.revision).collect::<Vec<_>>(), [3, 4, 5]);
}
