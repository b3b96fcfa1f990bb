//! `gantry up`: the real binary runs the control plane and a node agent in one process; a pod created without
//! a node is scheduled onto that node and runs; SIGTERM stops the process and leaves the container running, and
//! the next `gantry up` adopts it (same container, no restart).

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_runtime::RuntimeService;
use gantry_runtime::cri::ContainerState;
use gantry_runtime::testing::runtime::{BUSYBOX_IMAGE, patience, skip_reason};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gantry_up_runs_a_cluster_whose_node_runs_pods_and_leaves_them_running_when_stopped() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let _cleanup = common::up::NodeCleanup::new(dir.path(), "10.249.7.0/24");
    common::up::import_busybox(dir.path(), &[BUSYBOX_IMAGE]);
    let data_dir = dir.path().to_path_buf();
    let mut up = tokio::task::spawn_blocking(move || common::up::start_up(&data_dir, "up-node", "10.249.7.0/24"))
        .await
        .expect("gantry up");
    assert!(up.1.contains("node up-node"), "{}", up.1);

    let client = common::up::client(&dir.path().join("kubeconfig")).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hello"},
        "spec": {"hostNetwork": true, "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sleep", "1000"]}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create");
    let deadline = Instant::now() + patience();
    loop {
        let ready = nodes.get_opt("up-node").await.expect("node").and_then(|n| n.status).and_then(|s| s.conditions);
        let node_ready = ready.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let pod = pods.get("hello").await.expect("pod");
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if node_ready && running {
            // The agent writes under its own name (its user agent is the default field manager).
            let managers: Vec<String> = pod
                .metadata
                .managed_fields
                .iter()
                .flatten()
                .filter_map(|e| Some(format!("{}/{}", e.manager.clone()?, e.subresource.clone().unwrap_or_default())))
                .collect();
            assert!(managers.iter().any(|m| m == "gantry-agent/status"), "{managers:?}");
            assert_eq!(pod.spec.and_then(|s| s.node_name).as_deref(), Some("up-node"), "the scheduler placed it");
            break;
        }
        assert!(Instant::now() < deadline, "node Ready {node_ready}, pod Running {running}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let container_id = |pod: &Pod| {
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        statuses.first().map(|c| (c.container_id.clone(), c.restart_count))
    };
    let before = container_id(&pods.get("hello").await.expect("pod"));
    assert!(before.as_ref().is_some_and(|(id, _)| id.is_some()), "{before:?}");

    gantry_e2e::signal(up.0.pid(), "TERM");
    let status = tokio::task::spawn_blocking(move || up.0.wait()).await.expect("wait");
    assert!(status.success(), "gantry up did not stop cleanly: {status}");
    // The container outlives `gantry up`, for the next one to adopt.
    let shim =
        gantry_runtime::native::ShimCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_gantry")), args: vec![] };
    let mut config = gantry_runtime::native::NativeConfig::new(dir.path().join("run"), shim);
    config.cgroup_root = "gantry".into();
    let images = Arc::new(gantry_runtime::image::ImageStore::open(dir.path().join("images")).expect("store"));
    let runtime = gantry_runtime::native::NativeRuntime::new(config, images, None).expect("runtime");
    let containers = runtime.list_containers(&Default::default()).await.expect("containers");
    assert!(containers.iter().any(|c| c.state == ContainerState::Running), "{containers:?}");

    // The next `gantry up` on the same data directory adopts the container: the pod stays Running with the same
    // container and no restart.
    let data_dir = dir.path().to_path_buf();
    let mut again = tokio::task::spawn_blocking(move || common::up::start_up(&data_dir, "up-node", "10.249.7.0/24"))
        .await
        .expect("gantry up again");
    let client = common::up::client(&dir.path().join("kubeconfig")).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let deadline = Instant::now() + patience();
    loop {
        // The agent rewrites status once it has looked at its containers again: wait for a fresh Ready.
        let pod = pods.get("hello").await.expect("pod");
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if running && container_id(&pod) == before {
            break;
        }
        assert!(Instant::now() < deadline, "after the restart: {:?} (before: {before:?})", container_id(&pod));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the new agent time to have acted on the pod before checking nothing was restarted: wait for its
    // first status heartbeat to be past the start, read through the Node.
    let nodes: Api<Node> = Api::all(common::up::client(&dir.path().join("kubeconfig")).await);
    let started = jiff::Timestamp::now();
    let deadline = Instant::now() + patience();
    loop {
        let node = nodes.get("up-node").await.expect("node");
        let heartbeat = node
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready").and_then(|c| c.last_heartbeat_time).map(|t| t.0));
        if heartbeat.is_some_and(|t| t >= started) {
            break;
        }
        assert!(Instant::now() < deadline, "no heartbeat from the restarted agent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = container_id(&pods.get("hello").await.expect("pod"));
    assert_eq!(after, before, "the restarted gantry up adopted the container instead of restarting it");
    let containers = runtime.list_containers(&Default::default()).await.expect("containers");
    assert_eq!(containers.iter().filter(|c| c.state == ContainerState::Running).count(), 1, "{containers:?}");

    gantry_e2e::signal(again.0.pid(), "TERM");
    let status = tokio::task::spawn_blocking(move || again.0.wait()).await.expect("wait");
    assert!(status.success(), "gantry up did not stop cleanly the second time: {status}");
}
