//! `gantry up`: the real binary runs the control plane and a node agent in one process; a pod created without
//! a node is scheduled onto that node and runs; SIGTERM stops the process and leaves the container running.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_runtime::RuntimeService;
use gantry_runtime::cri::ContainerState;
use gantry_runtime::testing::runtime::{BUSYBOX_IMAGE, patience, skip_reason};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Removes what `gantry up` leaves on the node on purpose (running containers) or as node-wide state (the pod
/// network's bridge and masquerade rule, the QoS cgroups), even when the test fails.
struct NodeCleanup {
    data_dir: PathBuf,
    pod_cidr: String,
    bridge_existed: bool,
}

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        let shim = gantry_runtime::native::ShimCommand {
            program: PathBuf::from(env!("CARGO_BIN_EXE_gantry")),
            args: vec!["shim".into()],
        };
        let mut config = gantry_runtime::native::NativeConfig::new(self.data_dir.join("run"), shim);
        config.cgroup_root = "gantry".into();
        if let Ok(images) = gantry_runtime::image::ImageStore::open(self.data_dir.join("images")) {
            let cni = gantry_runtime::network::CniClient::new(gantry_runtime::network::CniOptions::new(
                self.data_dir.join("cni/net.d"),
                self.data_dir.join("cni/cache"),
            ));
            if let Ok(runtime) = gantry_runtime::native::NativeRuntime::new(config, Arc::new(images), Some(cni)) {
                gantry_runtime::testing::reset_blocking(&runtime);
            }
        }
        let cidr = self.pod_cidr.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime
                .block_on(gantry_runtime::network::masquerade::remove_masquerade(&cidr))
                .map_err(std::io::Error::other)
        })
        .join();
        if !self.bridge_existed {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", gantry_agent::agent::BRIDGE])
                .stderr(std::process::Stdio::null())
                .status();
        }
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for dir in entries.flatten().map(|e| e.path().join("gantry")) {
                for qos in ["besteffort", "burstable"] {
                    let _ = std::fs::remove_dir(dir.join(qos));
                }
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gantry_up_runs_a_cluster_whose_node_runs_pods_and_leaves_them_running_when_stopped() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let _cleanup = NodeCleanup {
        data_dir: dir.path().to_path_buf(),
        pod_cidr: "10.249.7.0/24".into(),
        bridge_existed: Path::new("/sys/class/net").join(gantry_agent::agent::BRIDGE).exists(),
    };
    let store = gantry_runtime::image::ImageStore::open(dir.path().join("images")).expect("image store");
    let archive = dir.path().join("busybox.tar");
    gantry_runtime::testing::write_busybox_archive(&archive, BUSYBOX_IMAGE).expect("archive");
    store.import_archive(&archive).expect("import");

    let (api_port, node_port) = (free_port(), free_port());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.arg("up").arg("--data-dir").arg(dir.path());
    command.args(["--secure-port", &api_port.to_string(), "--bind-address", "127.0.0.1"]);
    command.args(["--node-name", "up-node", "--node-api-port", &node_port.to_string(), "--pod-cidr", "10.249.7.0/24"]);
    let mut up = tokio::task::spawn_blocking(move || {
        let mut up = gantry_e2e::Background::spawn(command);
        let line = up.wait_for_line(|l| l.starts_with("Gantry is up"));
        (up, line)
    })
    .await
    .expect("gantry up");
    assert!(up.1.contains("node up-node"), "{}", up.1);

    let client = client(&dir.path().join("kubeconfig")).await;
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
            assert_eq!(pod.spec.and_then(|s| s.node_name).as_deref(), Some("up-node"), "the scheduler placed it");
            break;
        }
        assert!(Instant::now() < deadline, "node Ready {node_ready}, pod Running {running}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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
}
