//! Pods with a network of their own: namespaces pinned without a process, CNI, hostPort, and teardown that
//! leaves nothing behind.

mod common;

use std::time::{Duration, Instant};

use common::{TestNetwork, TestRuntime, mounts_under, network_skip_reason, patience, pod_sandbox, shell};
use gantry_runtime::cri::{ContainerState, PortMapping, Protocol, RuntimeService};
use gantry_runtime::native::NativeRuntime;
use gantry_runtime::native::logs::parse_entry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `body` on `port` with busybox httpd, in the foreground.
fn web_server(body: &str, port: u16) -> String {
    format!("mkdir -p /tmp/www && echo {body} > /tmp/www/index.html && exec httpd -f -p {port} -h /tmp/www")
}

/// A plain HTTP/1.0 GET, retried until it answers or patience runs out.
async fn http_get(address: &str) -> String {
    let deadline = Instant::now() + patience();
    loop {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(address).await?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            std::io::Result::Ok(response)
        };
        match tokio::time::timeout(Duration::from_secs(3), attempt).await {
            Ok(Ok(response)) if !response.is_empty() => return response,
            other => assert!(Instant::now() < deadline, "GET {address}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_state(runtime: &NativeRuntime, id: &str, state: ContainerState) -> gantry_runtime::cri::ContainerStatus {
    let deadline = Instant::now() + patience();
    loop {
        let status = runtime.container_status(id).await.expect("status");
        if status.state == state {
            return status;
        }
        assert!(Instant::now() < deadline, "container {id} never reached {state:?}: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn log_text(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    text.split_inclusive(|b| *b == b'\n')
        .filter_map(parse_entry)
        .map(|e| String::from_utf8_lossy(&e.content).to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_share_localhost_and_the_host_reaches_the_pod_ip() {
    let network = TestNetwork::new(1);
    let Some(test) = TestRuntime::with_network_or_skip(common::shim(), &network) else { return };
    let rt = &test.runtime;
    let logs = test.root.path().join("logs");
    let config = pod_sandbox("web", &logs);
    let sandbox = rt.run_pod_sandbox(&config).await.expect("sandbox");
    let status = rt.pod_sandbox_status(&sandbox).await.expect("status");
    assert!(status.ip.starts_with(&format!("{}.", network.subnet_prefix)), "{status:?}");

    let server = rt
        .create_container(&sandbox, &shell("server", &web_server("hello-from-pod", 8080)), &config)
        .await
        .expect("create");
    rt.start_container(&server).await.expect("start");
    let probe = "until printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080 | grep -q hello-from-pod; do sleep 0.05; done; \
                 echo reached; hostname";
    let client = rt.create_container(&sandbox, &shell("client", probe), &config).await.expect("create");
    rt.start_container(&client).await.expect("start");
    let done = wait_state(rt, &client, ContainerState::Exited).await;
    assert_eq!(done.exit_code, 0);
    assert_eq!(log_text(&done.log_path), ["reached", "web"]);

    let response = http_get(&format!("{}:8080", status.ip)).await;
    assert!(response.contains("hello-from-pod"), "{response}");
    rt.remove_pod_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_port_reaches_the_pod() {
    let network = TestNetwork::new(2);
    let Some(test) = TestRuntime::with_network_or_skip(common::shim(), &network) else { return };
    let rt = &test.runtime;
    let logs = test.root.path().join("logs");
    let host_port = 30000 + (std::process::id() % 2000) as u16;
    let mut config = pod_sandbox("hostport", &logs);
    config.port_mappings.push(PortMapping {
        protocol: Protocol::Tcp,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    });
    let sandbox = rt.run_pod_sandbox(&config).await.expect("sandbox");
    let server = rt
        .create_container(&sandbox, &shell("server", &web_server("via-host-port", 8080)), &config)
        .await
        .expect("create");
    rt.start_container(&server).await.expect("start");
    // The bridge's address is the node's own: traffic to it on the host port is redirected to the pod.
    let response = http_get(&format!("{}:{host_port}", network.gateway())).await;
    assert!(response.contains("via-host-port"), "{response}");
    rt.remove_pod_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_sandbox_leaves_no_mount_cgroup_veth_address_or_process() {
    let network = TestNetwork::new(3);
    let Some(test) = TestRuntime::with_network_or_skip(common::shim(), &network) else { return };
    let rt = &test.runtime;
    let logs = test.root.path().join("logs");
    let config = pod_sandbox("ephemeral", &logs);
    let sandbox = rt.run_pod_sandbox(&config).await.expect("sandbox");
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let id = rt.create_container(&sandbox, &shell(name, "exec sleep 1000"), &config).await.expect("create");
        rt.start_container(&id).await.expect("start");
        ids.push(id);
    }
    let ip = rt.pod_sandbox_status(&sandbox).await.expect("status").ip;
    let shims: Vec<i32> = ids
        .iter()
        .map(|id| {
            let record: serde_json::Value = serde_json::from_slice(
                &std::fs::read(test.root.path().join("run/containers").join(id).join("container.json"))
                    .expect("record"),
            )
            .expect("json");
            record["shim_pid"].as_i64().expect("shim pid") as i32
        })
        .collect();
    let veths = |bridge: &str| {
        let out = std::process::Command::new("ip").args(["-o", "link", "show", "master", bridge]).output().expect("ip");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(veths(&network.bridge), 1);
    assert!(!mounts_under(test.root.path()).is_empty());
    let allocation = test.root.path().join("cni/networks").join(&network.bridge).join(&ip);
    assert!(allocation.exists(), "host-local keeps {ip} in the node's own directory");

    rt.remove_pod_sandbox(&sandbox).await.expect("remove");

    assert_eq!(mounts_under(test.root.path()), Vec::<std::path::PathBuf>::new());
    assert_eq!(veths(&network.bridge), 0, "a veth is left on the bridge");
    assert!(!allocation.exists(), "address {ip} still allocated");
    assert!(!rt.cgroups().exists(&format!("/{}/poduidephemeral", test.cgroup_root)), "pod cgroup left");
    for pid in shims {
        assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(), "shim {pid} still runs");
    }
    assert!(rt.list_pod_sandboxes().await.expect("list").is_empty());
    assert!(std::fs::read_dir(test.root.path().join("run/containers")).expect("dir").next().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cni_a_pod_network_sandbox_names_the_missing_package() {
    if let Some(reason) = common::skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let test = TestRuntime::new(common::shim());
    let err = test.runtime.run_pod_sandbox(&pod_sandbox("lonely", test.root.path())).await.expect_err("refused");
    assert!(err.to_string().contains("containernetworking-plugins"), "{err}");
    assert!(test.runtime.list_pod_sandboxes().await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_masquerades_a_pod_cidr_with_one_rule() {
    if let Some(reason) = network_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    use gantry_runtime::network::masquerade::{RULE_COMMENT, ensure_masquerade, remove_masquerade};
    let network = TestNetwork::new(4);
    let rules = || {
        let out = std::process::Command::new("iptables-save").args(["-t", "nat"]).output().expect("iptables-save");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(RULE_COMMENT) && l.contains(&network.cidr()))
            .count()
    };
    ensure_masquerade(&network.cidr()).await.expect("ensure");
    ensure_masquerade(&network.cidr()).await.expect("ensure again");
    assert_eq!(rules(), 1);
    remove_masquerade(&network.cidr()).await.expect("remove");
    remove_masquerade(&network.cidr()).await.expect("remove again");
    assert_eq!(rules(), 0);
    assert!(ensure_masquerade("not-a-cidr").await.is_err());
}
