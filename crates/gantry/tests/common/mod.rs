//! What the node agent's tests share: an API server and an agent whose runtime lives in a test runtime's root,
//! pods of busybox bound to the agent's node, and polls of their status with a deadline.

#![allow(dead_code)]

pub mod up;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gantry_agent::agent::{AgentConfig, RunningAgent};
use gantry_runtime::native::ShimCommand;
use gantry_runtime::testing::runtime::{BUSYBOX_IMAGE, TestNetwork, TestRuntime, patience};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

pub fn shim() -> ShimCommand {
    ShimCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_gantry")), args: vec!["shim".to_string()] }
}

/// An API server and an agent whose runtime lives in a test runtime's root (so that the test runtime's cleanup
/// removes whatever the agent created, even after a failed assertion).
pub struct Cluster {
    pub client: kube::Client,
    pub node: String,
    /// The node's pod range, whose masquerade rule the agent adds.
    pub pod_cidr: String,
    pub agent: Option<(RunningAgent, CancellationToken)>,
    pub server_shutdown: CancellationToken,
    pub _server: gantry_apiserver::RunningServer,
    pub _server_dir: tempfile::TempDir,
    // Dropped last: its cleanup kills and removes every container, mount and cgroup left.
    pub test: TestRuntime,
}

impl Cluster {
    pub async fn start(node: &str, network: Option<&TestNetwork>) -> Option<Cluster> {
        let test = match network {
            Some(network) => TestRuntime::with_network_or_skip(shim(), network)?,
            None => TestRuntime::or_skip(shim())?,
        };
        let server_dir = tempfile::tempdir().expect("tempdir");
        let server_shutdown = CancellationToken::new();
        let server =
            gantry_apiserver::start_loopback(server_dir.path(), server_shutdown.clone()).await.expect("server");
        let kubeconfig = Kubeconfig::read_from(server_dir.path().join("kubeconfig")).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
        let client = kube::Client::try_from(config).expect("client");
        let mut cluster = Cluster {
            client,
            node: node.to_string(),
            // Host-network tests still get a range of their own: the agent sets up the pod network regardless.
            pod_cidr: network.map(TestNetwork::cidr).unwrap_or_else(|| {
                let n = node.bytes().fold(std::process::id(), |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                format!("10.250.{}.0/24", n % 250)
            }),
            agent: None,
            server_shutdown,
            _server: server,
            _server_dir: server_dir,
            test,
        };
        cluster.start_agent().await;
        Some(cluster)
    }

    pub async fn start_agent(&mut self) {
        let ca = std::fs::read_to_string(self._server_dir.path().join("pki/ca.crt")).expect("cluster CA");
        let mut config = AgentConfig::new(self.test.root.path(), shim(), ca);
        // The API server dials the Node's InternalIP: listen on every address, on a free port.
        config.node_api_listen = "0.0.0.0:0".parse().expect("address");
        config.node_name = Some(self.node.clone());
        config.cgroup_root = self.test.cgroup_root.clone();
        config.pod_cidr = Some(self.pod_cidr.clone());
        // These tests share the host's network namespace: one service proxy per test would fight over the
        // same ClusterIPs.
        config.proxy_table = None;
        let shutdown = CancellationToken::new();
        let agent = gantry_agent::agent::start(self.client.clone(), config, shutdown.clone()).await.expect("agent");
        self.agent = Some((agent, shutdown));
    }

    pub async fn stop_agent(&mut self) {
        if let Some((agent, shutdown)) = self.agent.take() {
            shutdown.cancel();
            agent.wait().await;
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn create(&self, mut pod: serde_json::Value) -> Pod {
        pod["spec"]["nodeName"] = serde_json::json!(self.node);
        let pod: Pod = serde_json::from_value(pod).expect("pod");
        self.pods().create(&PostParams::default(), &pod).await.expect("create pod")
    }

    /// Polls the pod until `done` holds; panics with the last status after the test's patience.
    pub async fn wait_for(&self, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = Instant::now() + patience();
        loop {
            let pod = self.pods().get_opt(name).await.expect("get");
            if let Some(pod) = &pod
                && done(pod)
            {
                return pod.clone();
            }
            if Instant::now() > deadline {
                panic!("pod {name}: {what} not reached; last seen: {:#?}", pod.and_then(|p| p.status));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_gone(&self, name: &str) {
        let deadline = Instant::now() + patience();
        while self.pods().get_opt(name).await.expect("get").is_some() {
            assert!(Instant::now() < deadline, "pod {name} was not removed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn events(&self, pod: &str) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = events.list(&ListParams::default()).await.expect("events");
        list.items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(pod))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    pub async fn stop(mut self) {
        self.stop_agent().await;
        self.server_shutdown.cancel();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((_, shutdown)) = &self.agent {
            shutdown.cancel();
        }
        self.server_shutdown.cancel();
        let cidr = self.pod_cidr.clone();
        let removed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime
                .block_on(gantry_runtime::network::masquerade::remove_masquerade(&cidr))
                .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(removed, Ok(Ok(()))) {
            eprintln!("cleanup: the masquerade rule for {} may be left", self.pod_cidr);
        }
    }
}

pub fn busybox_pod(name: &str, script: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", script]}]
        }
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    pod
}

pub fn try_container(pod: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
}

pub fn container(pod: &Pod, name: &str) -> k8s_openapi::api::core::v1::ContainerStatus {
    try_container(pod, name).expect("container status")
}

pub fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

impl Cluster {
    /// The admin kubeconfig of the cluster's API server.
    pub fn kubeconfig(&self) -> PathBuf {
        self._server_dir.path().join("kubeconfig")
    }

    /// A real kubectl command against the cluster (nothing inherited from the environment but `PATH`).
    pub fn kubectl_command(&self, args: &[&str]) -> std::process::Command {
        let home = self._server_dir.path().join("home");
        let _ = std::fs::create_dir_all(&home);
        gantry_e2e::kubectl_command(&self.kubeconfig(), &home, args)
    }

    /// Runs kubectl to its end (off the async workers, which the agent needs meanwhile).
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> gantry_e2e::Output {
        let command = self.kubectl_command(args);
        let stdin = stdin.map(|s| s.as_bytes().to_vec());
        tokio::task::spawn_blocking(move || gantry_e2e::run(command, stdin.as_deref(), patience()))
            .await
            .expect("kubectl")
    }
}
