//! A cluster of three machines on one: `gantry server` on the host, and two `gantry agent`s, each in a network
//! namespace of its own wired to a host bridge by a veth pair, joining with the server's join token. Node IPAM
//! gives the nodes distinct pod CIDRs, each agent routes the other's range to it, and pods on different nodes
//! reach each other by their own addresses (no NAT). A Service over pods on both nodes is reached by name
//! through each node's service proxy and cluster DNS, and its NodePort answers the host. When one agent stops,
//! its Node goes NotReady and its pods are replaced on the other node.
//!
//! Runs as root with the real binary and the real kubectl (`GANTRY_KUBECTL`); skipped where containers or the
//! pod network cannot run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_runtime::testing::runtime::{BUSYBOX_IMAGE, patience, skip_reason};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::Api;
use kube::api::{ListParams, PostParams};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Runs a setup command and fails the test with its stderr when it fails.
fn sh(args: &[&str]) {
    let output = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn sh_output(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One simulated machine: a network namespace, its end of a veth pair, and the agent's data directory and
/// cgroup. Dropping it kills the agent, then every container it started (from inside its namespace, so that
/// the CNI plugins find the pods' links), then removes the namespace and the cgroups.
struct Machine {
    name: String,
    netns: String,
    ip: String,
    data_dir: PathBuf,
    cgroup_root: String,
    agent: Option<gantry_e2e::Background>,
}

impl Machine {
    fn new(name: &str, index: u8, subnet: &str, bridge: &str, root: &Path) -> Machine {
        let tag = std::process::id() % 100_000;
        let netns = format!("gmn-{name}-{tag}");
        let host_end = format!("gmv{index}-{tag}");
        let ip = format!("{subnet}.{}", 10 + index);
        sh(&["ip", "netns", "add", &netns]);
        let machine = Machine {
            name: name.to_string(),
            netns: netns.clone(),
            ip: ip.clone(),
            data_dir: root.join(name),
            cgroup_root: format!("gantry-mn-{name}-{tag}"),
            agent: None,
        };
        sh(&["ip", "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &netns]);
        sh(&["ip", "link", "set", &host_end, "master", bridge, "up"]);
        let exec = |args: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", &netns];
            full.extend_from_slice(args);
            sh(&full);
        };
        exec(&["ip", "link", "set", "lo", "up"]);
        exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        exec(&["ip", "link", "set", "eth0", "up"]);
        exec(&["ip", "route", "add", "default", "via", &format!("{subnet}.1")]);
        let images = gantry_runtime::image::ImageStore::open(machine.data_dir.join("images")).expect("image store");
        let archive = root.join(format!("busybox-{name}.tar"));
        gantry_runtime::testing::write_busybox_archive(&archive, BUSYBOX_IMAGE).expect("archive");
        images.import_archive(&archive).expect("import");
        machine
    }

    /// Starts `gantry agent` in the namespace (joining only its network: `ip netns exec` would also hide the
    /// host's cgroup mounts behind a fresh /sys).
    fn start_agent(&mut self, server: &str, token: &str) {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/run/netns/{}", self.netns)).arg(env!("CARGO_BIN_EXE_gantry")).arg("agent");
        command.arg("--server").arg(server).arg("--token").arg(token);
        command.arg("--data-dir").arg(&self.data_dir);
        command.args(["--node-name", &self.name, "--node-ip", &self.ip, "--cgroup-root", &self.cgroup_root]);
        let mut agent = gantry_e2e::Background::spawn(command);
        agent.wait_for_line(|l| l.starts_with("Gantry agent running"));
        self.agent = Some(agent);
    }

    fn stop_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.signal("TERM");
            let status = agent.wait();
            assert!(status.success(), "agent {} did not stop cleanly: {status}", self.name);
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.take() {
            drop(agent);
        }
        let netns = format!("/run/netns/{}", self.netns);
        let data_dir = self.data_dir.clone();
        let cgroup_root = self.cgroup_root.clone();
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let ns = std::fs::File::open(&netns).map_err(|e| format!("{netns}: {e}"))?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
            let shim = gantry_runtime::native::ShimCommand {
                program: PathBuf::from(env!("CARGO_BIN_EXE_gantry")),
                args: vec!["shim".into()],
            };
            let mut config = gantry_runtime::native::NativeConfig::new(data_dir.join("run"), shim);
            config.cgroup_root = cgroup_root;
            let images = gantry_runtime::image::ImageStore::open(data_dir.join("images")).map_err(|e| e.to_string())?;
            let cni = gantry_runtime::network::CniClient::new(gantry_runtime::network::CniOptions::new(
                data_dir.join("cni/net.d"),
                data_dir.join("cni/cache"),
            ));
            let runtime = gantry_runtime::native::NativeRuntime::new(config, Arc::new(images), Some(cni))
                .map_err(|e| e.to_string())?;
            gantry_runtime::testing::reset_blocking(&runtime);
            Ok(())
        })
        .join();
        if let Ok(Err(err)) = outcome {
            eprintln!("cleanup of {}: {err}", self.name);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for dir in entries.flatten().map(|e| e.path().join(&self.cgroup_root)) {
                for qos in ["besteffort", "burstable"] {
                    let _ = std::fs::remove_dir(dir.join(qos));
                }
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// The host bridge the machines' veths hang off; removed when dropped.
struct HostBridge(String);

impl Drop for HostBridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

async fn wait_until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience() * 2;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the real kubectl to its end, off the async workers.
async fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> gantry_e2e::Output {
    let command = gantry_e2e::kubectl_command(kubeconfig, home, args);
    tokio::task::spawn_blocking(move || gantry_e2e::run(command, None, patience())).await.expect("kubectl")
}

fn node_ready(node: &Node) -> Option<&str> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

fn running_on(pods: &[Pod], node: &str) -> Vec<Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .cloned()
        .collect()
}

/// An HTTP/1.0 GET of `/` from `addr`; the whole answer, or why there is none.
fn http_get(addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(4))).map_err(|e| e.to_string())?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    Ok(answer)
}

fn pod_ip(pod: &Pod) -> String {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("pod IP")
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_in_their_own_network_namespaces_join_route_pods_to_each_other_and_replace_a_lost_node() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    if std::env::var_os("GANTRY_KUBECTL").is_none() {
        eprintln!("skipped: GANTRY_KUBECTL is not set (the real kubectl execs into the pods)");
        return;
    }
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:>5.1} s] {what}", started.elapsed().as_secs_f64());
    let root = tempfile::tempdir().expect("tempdir");
    let tag = std::process::id() % 100_000;
    let subnet = format!("10.251.{}", tag % 250);
    let bridge = HostBridge(format!("gmb-{tag}"));
    sh(&["ip", "link", "add", &bridge.0, "type", "bridge"]);
    sh(&["ip", "addr", "add", &format!("{subnet}.1/24"), "dev", &bridge.0]);
    sh(&["ip", "link", "set", &bridge.0, "up"]);
    let mut a = Machine::new("mn-a", 1, &subnet, &bridge.0, root.path());
    let mut b = Machine::new("mn-b", 2, &subnet, &bridge.0, root.path());

    // The server on the host, with a cluster CIDR of the test's own and a short grace for silent nodes.
    let server_dir = root.path().join("server");
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.arg("server").arg("--data-dir").arg(&server_dir);
    command.args(["--secure-port", &port.to_string(), "--tls-san", &format!("{subnet}.1")]);
    command.args(["--cluster-cidr", &format!("10.252.{}.0/23", (tag % 125) * 2)]);
    command.args(["--node-cidr-mask-size", "24", "--node-monitor-grace-period", "20s"]);
    let mut server = gantry_e2e::Background::spawn(command);
    let join_line = server.wait_for_line(|l| l.contains("gantry agent --server"));
    assert!(join_line.contains("node-token"), "the join hint names the token file: {join_line}");
    let token = std::fs::read_to_string(server_dir.join("node-token")).expect("node-token");
    assert!(token.starts_with("gantry1::sha256:"), "{token}");
    step("server up");

    let url = format!("https://{subnet}.1:{port}");
    // A wrong secret is refused, and leaves no credentials behind.
    let forged = format!("{}::abcdef.0123456789abcdef", token.trim().rsplit_once("::").expect("token").0);
    let refused = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", a.netns))
        .arg(env!("CARGO_BIN_EXE_gantry"))
        .args(["agent", "--server", &url, "--token", &forged, "--node-name", "mn-a"])
        .arg("--data-dir")
        .arg(&a.data_dir)
        .output()
        .expect("agent");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("403") && stderr.contains("join token"), "{stderr}");
    assert!(!a.data_dir.join("pki/node/client.crt").exists());

    a.start_agent(&url, token.trim());
    b.start_agent(&url, token.trim());
    assert!(a.data_dir.join("pki/node/client.crt").exists(), "the agent keeps the certificate it was issued");
    step("agents joined");

    let client = client(&server_dir.join("kubeconfig")).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let cidrs = wait_until("both nodes Ready with pod CIDRs", async || {
        let mut cidrs = Vec::new();
        for machine in [&a, &b] {
            let node = nodes.get_opt(&machine.name).await.ok()??;
            if node_ready(&node) != Some("True") {
                return None;
            }
            cidrs.push(node.spec.and_then(|s| s.pod_cidr)?);
        }
        Some(cidrs)
    })
    .await;
    assert_ne!(cidrs[0], cidrs[1], "node IPAM gives each node its own range");
    for (machine, other_cidr, other) in [(&a, &cidrs[1], &b), (&b, &cidrs[0], &a)] {
        let routes = wait_until("the host-gateway route", async || {
            let routes = sh_output(&["ip", "netns", "exec", &machine.netns, "ip", "route", "show", "proto", "247"]);
            routes.contains(other_cidr.as_str()).then_some(routes)
        })
        .await;
        assert!(routes.contains(&format!("via {}", other.ip)), "{}: {routes}", machine.name);
    }
    step("nodes Ready, pod CIDRs assigned, routes installed");

    // Two replicas, one per node, that tolerate an unreachable node for 2 s only.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": {"app": "web"}}}
                    }]}},
                    "tolerations": [
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 2},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 2}
                    ],
                    "containers": [{
                        "name": "web",
                        "image": BUSYBOX_IMAGE,
                        "command": ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -vv -p 8080 -h /www"]
                    }]
                }
            }
        }
    }))
    .expect("deployment");
    deployments.create(&PostParams::default(), &deployment).await.expect("create");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (on_a, on_b) = wait_until("a running web pod on each node", async || {
        let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?.items;
        let (on_a, on_b) = (running_on(&list, &a.name), running_on(&list, &b.name));
        (on_a.len() == 1 && on_b.len() == 1).then(|| (on_a[0].clone(), on_b[0].clone()))
    })
    .await;
    step("one pod on each node");

    // Pod to pod across nodes, both ways: each answers with its own name.
    let home = root.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let kubeconfig = server_dir.join("kubeconfig");
    for (from, to) in [(&on_a, &on_b), (&on_b, &on_a)] {
        let url = format!("http://{}:8080/", pod_ip(to));
        let output = kubectl(&kubeconfig, &home, &["exec", &name(from), "--", "wget", "-q", "-O", "-", &url]).await;
        assert!(output.success(), "{} → {}: {output:?}", name(from), name(to));
        assert_eq!(output.stdout.trim(), name(to), "{} reached {} across nodes", name(from), name(to));
        // httpd logs its clients: the caller's pod IP, not its node's address (no NAT between pods).
        let logs = kubectl(&kubeconfig, &home, &["logs", &name(to)]).await.ok();
        let caller = format!("{}]:", pod_ip(from));
        assert!(logs.stdout.contains(&caller), "{} saw {} by its pod IP: {}", name(to), name(from), logs.stdout);
    }
    step("pods reach each other across nodes, without NAT");

    // A Service over both nodes' pods: by name from a pod it balances across the nodes, and its NodePort on
    // node a's address answers the host from the pods of either node.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .expect("service");
    let service = services.create(&PostParams::default(), &service).await.expect("create the Service");
    let spec = service.spec.expect("spec");
    let cluster_ip = spec.cluster_ip.expect("a ClusterIP");
    let node_port = spec.ports.as_ref().and_then(|p| p[0].node_port).expect("a nodePort");
    let both: BTreeSet<String> = [name(&on_a), name(&on_b)].into();
    for from in [&on_a, &on_b] {
        let script =
            "for i in $(seq 20); do timeout 3 wget -q -O - http://web.default.svc.cluster.local/ || echo FAILED; done";
        wait_until("both nodes' pods answer the Service by name", async || {
            let out = kubectl(&kubeconfig, &home, &["exec", &name(from), "--", "sh", "-c", script]).await;
            let seen: BTreeSet<String> = out.stdout.lines().map(|l| l.trim().to_string()).collect();
            (seen == both).then_some(())
        })
        .await;
    }
    let lookup = kubectl(&kubeconfig, &home, &["exec", &name(&on_b), "--", "nslookup", "web"]).await;
    assert!(lookup.stdout.contains(&cluster_ip), "the cluster DNS on node b answers with {cluster_ip}: {lookup:?}");
    wait_until("the NodePort on node a answers the host from both nodes' pods", async || {
        let mut seen = BTreeSet::new();
        for _ in 0..20 {
            let addr = format!("{}:{node_port}", a.ip);
            let answer = tokio::task::spawn_blocking(move || http_get(&addr)).await.ok()?.ok()?;
            seen.insert(answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string());
        }
        (seen == both).then_some(())
    })
    .await;
    services.delete("web", &Default::default()).await.expect("delete the Service");
    step("a Service balances across nodes by name, and its NodePort answers the host");

    // Node b goes silent: NotReady, its pod evicted after its 2 s toleration and replaced on node a.
    b.stop_agent();
    step("agent b stopped");
    wait_until("node b NotReady", async || {
        let node = nodes.get(&b.name).await.ok()?;
        (node_ready(&node) != Some("True")).then_some(())
    })
    .await;
    step("node b NotReady");
    let replacement = wait_until("a replacement of b's pod running on node a", async || {
        let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?.items;
        let running = running_on(&list, &a.name);
        (running.len() == 2).then(|| running.into_iter().find(|p| name(p) != name(&on_a)))?
    })
    .await;
    step("replacement running on node a");
    assert_ne!(name(&replacement), name(&on_b));
    let old = pods.get_opt(&name(&on_b)).await.expect("get");
    assert!(
        old.is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "the lost node's pod was evicted (it stays Terminating until its node confirms)"
    );
    let available = wait_until("the Deployment available again", async || {
        let d = deployments.get("web").await.ok()?;
        let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
        (available == 2).then_some(available)
    })
    .await;
    assert_eq!(available, 2);

    a.stop_agent();
    server.signal("TERM");
    let status = server.wait();
    assert!(status.success(), "gantry server did not stop cleanly: {status}");
    step("done");
}
