//! The proxy against a real in-process API server, programming a scratch "node" network namespace: a bridge
//! with "pod" namespaces running `busybox httpd` (each serving its own name) and an "external" namespace. Traffic
//! is real (`busybox wget` from the namespaces). Needs root, `ip`, `nft` and busybox; every namespace (and with
//! it every link and the nft table) and process is removed by a guard, even when a test fails.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use gantry_proxy::{Cidr, ConntrackCommand, NftCommand, ProxyConfig};
use k8s_openapi::api::core::v1::{ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

const NODE: &str = "node-a";
const NODE_BRIDGE_IP: &str = "10.99.0.1";
const NODE_EXT_IP: &str = "10.98.0.1";
const EXT_IP: &str = "10.98.0.2";
/// An endpoint on another node: nothing answers there.
const REMOTE_IP: &str = "10.99.0.77";

fn patience() -> Duration {
    let secs = std::env::var("GANTRY_TEST_PATIENCE").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    Duration::from_secs(secs)
}

async fn run(args: &[&str]) -> anyhow::Result<std::process::Output> {
    let out = tokio::process::Command::new(args[0])
        .args(&args[1..])
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {args:?}"))?;
    Ok(out)
}

async fn ok(args: &[&str]) -> anyhow::Result<()> {
    let out = run(args).await?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The namespaces and servers of one test; dropping it removes them.
struct Topology {
    prefix: String,
    namespaces: Vec<String>,
    servers: Vec<std::process::Child>,
    www: tempfile::TempDir,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = std::process::Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Topology {
    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    async fn add_ns(&mut self, short: &str) -> anyhow::Result<String> {
        let name = self.ns(short);
        ok(&["ip", "netns", "add", &name]).await?;
        self.namespaces.push(name.clone());
        ok(&["ip", "-n", &name, "link", "set", "lo", "up"]).await?;
        Ok(name)
    }

    /// A node with bridge `br0` (10.99.0.1/24), pods `p1`.. at 10.99.0.2.., and `ext` (10.98.0.2) behind
    /// the node's second address 10.98.0.1.
    async fn new(test: &str, pods: &[&str]) -> anyhow::Result<Topology> {
        let mut topo = Topology {
            prefix: format!("gp{}{test}", std::process::id() % 100_000),
            namespaces: Vec::new(),
            servers: Vec::new(),
            www: tempfile::tempdir()?,
        };
        let node = topo.add_ns("node").await?;
        ok(&["ip", "-n", &node, "link", "add", "br0", "type", "bridge"]).await?;
        ok(&["ip", "-n", &node, "addr", "add", &format!("{NODE_BRIDGE_IP}/24"), "dev", "br0"]).await?;
        ok(&["ip", "-n", &node, "link", "set", "br0", "up"]).await?;
        ok(&["ip", "netns", "exec", &node, "sysctl", "-qw", "net.ipv4.ip_forward=1"]).await?;
        for (i, pod) in pods.iter().enumerate() {
            let ns = topo.add_ns(pod).await?;
            let veth = format!("v{pod}");
            ok(&["ip", "-n", &node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])
                .await?;
            ok(&["ip", "-n", &node, "link", "set", &veth, "master", "br0", "up"]).await?;
            ok(&["ip", "-n", &node, "link", "set", &veth, "type", "bridge_slave", "hairpin", "on"]).await?;
            let ip = format!("10.99.0.{}", i + 2);
            ok(&["ip", "-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]).await?;
            ok(&["ip", "-n", &ns, "link", "set", "eth0", "up"]).await?;
            ok(&["ip", "-n", &ns, "route", "add", "default", "via", NODE_BRIDGE_IP]).await?;
            let dir = topo.www.path().join(pod);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("index.html"), format!("{pod}\n"))?;
            let child = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "8080", "-h"])
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            topo.servers.push(child);
        }
        let ext = topo.add_ns("ext").await?;
        ok(&["ip", "-n", &node, "link", "add", "vext", "type", "veth", "peer", "name", "eth0", "netns", &ext]).await?;
        ok(&["ip", "-n", &node, "addr", "add", &format!("{NODE_EXT_IP}/24"), "dev", "vext"]).await?;
        ok(&["ip", "-n", &node, "link", "set", "vext", "up"]).await?;
        ok(&["ip", "-n", &ext, "addr", "add", &format!("{EXT_IP}/24"), "dev", "eth0"]).await?;
        ok(&["ip", "-n", &ext, "link", "set", "eth0", "up"]).await?;
        // The node needs a route covering the service range, or locally originated ClusterIP traffic fails
        // before the output hook's DNAT.
        ok(&["ip", "-n", &node, "route", "add", "default", "via", EXT_IP]).await?;
        Ok(topo)
    }

    /// `wget http://target/` from namespace `short`: the body's first line, or the error output.
    async fn get(&self, short: &str, target: &str) -> Result<String, String> {
        let ns = self.ns(short);
        let url = format!("http://{target}/");
        let out = run(&["ip", "netns", "exec", &ns, "timeout", "3", "busybox", "wget", "-q", "-O", "-", &url])
            .await
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!("rc {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// The answers of `n` requests (errors as `!error`).
    async fn answers(&self, short: &str, target: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.get(short, target).await.unwrap_or_else(|e| format!("!{e}")));
        }
        out
    }

    /// Polls until `n` requests in a row answer with exactly the names in `expected` (each at least once when
    /// `all_seen`).
    async fn until_answers(&self, short: &str, target: &str, n: usize, expected: &[&str], all_seen: bool) {
        let deadline = tokio::time::Instant::now() + patience();
        let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        loop {
            let got = self.answers(short, target, n).await;
            let seen: BTreeSet<String> = got.iter().cloned().collect();
            if (all_seen && seen == want) || (!all_seen && seen.is_subset(&want) && !seen.is_empty()) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{short} -> {target}: wanted {expected:?}, last answers {got:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The API server, the proxy, and their shutdown.
struct Cluster {
    shutdown: CancellationToken,
    client: kube::Client,
    _server: gantry_apiserver::RunningServer,
    _dir: tempfile::TempDir,
    proxy: Option<tokio::task::JoinHandle<Result<(), gantry_proxy::ProxyError>>>,
    proxy_shutdown: CancellationToken,
    /// Each completed sync (after its rules and its conntrack cleanup).
    reports: tokio::sync::broadcast::Receiver<gantry_proxy::SyncReport>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.proxy_shutdown.cancel();
        self.shutdown.cancel();
    }
}

impl Cluster {
    async fn start(topo: &Topology, table: &str) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let shutdown = CancellationToken::new();
        let server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.context("API server")?;
        let kubeconfig = Kubeconfig::read_from(dir.path().join("kubeconfig"))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let client = kube::Client::try_from(config)?;
        let mut proxy = ProxyConfig::new(NODE);
        proxy.table = table.to_string();
        proxy.nft = NftCommand::in_netns(&topo.ns("node"));
        proxy.conntrack = Some(ConntrackCommand::in_netns(&topo.ns("node")));
        let (reports_tx, reports) = tokio::sync::broadcast::channel(1024);
        proxy.reports = Some(reports_tx);
        proxy.node_ips = vec![NODE_BRIDGE_IP.parse()?, NODE_EXT_IP.parse()?];
        proxy.pod_cidr = Some("10.99.0.0/24".parse::<Cidr>()?);
        proxy.service_cidrs = vec!["10.43.0.0/16".parse::<Cidr>()?];
        let proxy_shutdown = CancellationToken::new();
        let task = tokio::spawn(gantry_proxy::run(client.clone(), proxy, proxy_shutdown.clone()));
        Ok(Cluster { shutdown, client, _server: server, _dir: dir, proxy: Some(task), proxy_shutdown, reports })
    }

    async fn service(&self, name: &str, ip: &str, node_port: Option<i32>, edit: impl FnOnce(&mut ServiceSpec)) {
        let mut spec = ServiceSpec {
            type_: Some(if node_port.is_some() { "NodePort" } else { "ClusterIP" }.into()),
            cluster_ip: Some(ip.into()),
            cluster_ips: Some(vec![ip.into()]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                node_port,
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        };
        edit(&mut spec);
        let svc = Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        };
        let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
        api.create(&PostParams::default(), &svc).await.expect("create Service");
    }

    /// Writes slice `<service>-1`: `(ip, node, ready, serving, terminating)`, port `http` 8080/TCP.
    async fn slice(&self, service: &str, endpoints: &[(&str, &str, bool, bool, bool)]) {
        self.slice_with_port(service, endpoints, "http", 8080, "TCP").await;
    }

    /// Writes slice `<service>-1` with one port.
    async fn slice_with_port(
        &self,
        service: &str,
        endpoints: &[(&str, &str, bool, bool, bool)],
        port_name: &str,
        port: i32,
        protocol: &str,
    ) {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), "default");
        let name = format!("{service}-1");
        let mut slice = EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some("default".into()),
                labels: Some([("kubernetes.io/service-name".to_string(), service.to_string())].into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|(ip, node, ready, serving, terminating)| Endpoint {
                    addresses: vec![ip.to_string()],
                    node_name: Some(node.to_string()),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        serving: Some(*serving),
                        terminating: Some(*terminating),
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some(port_name.into()),
                port: Some(port),
                protocol: Some(protocol.into()),
                ..EndpointPort::default()
            }]),
        };
        match api.get_opt(&name).await.expect("get slice") {
            Some(old) => {
                slice.metadata.resource_version = old.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &slice).await.expect("replace slice");
            }
            None => {
                api.create(&PostParams::default(), &slice).await.expect("create slice");
            }
        }
    }

    async fn stop_proxy(&mut self) {
        self.proxy_shutdown.cancel();
        if let Some(task) = self.proxy.take() {
            task.await.expect("proxy task").expect("proxy ran");
        }
    }
}

fn ready(ip: &str) -> (&str, &str, bool, bool, bool) {
    (ip, NODE, true, true, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_balances_skips_not_ready_falls_back_to_terminating_and_follows_scaling() {
    let topo = Topology::new("a", &["p1", "p2", "p3", "c"]).await.expect("topology");
    let cluster = Cluster::start(&topo, "gantry-test-a").await.expect("cluster");
    let vip = "10.43.200.10:80";
    cluster.service("web", "10.43.200.10", Some(31010), |_| {}).await;
    cluster.slice("web", &[ready("10.99.0.2"), ready("10.99.0.3")]).await;
    // Balanced: both endpoints answer within 20 requests.
    topo.until_answers("c", vip, 20, &["p1", "p2"], true).await;
    // NodePort, from outside the node and from the node itself.
    topo.until_answers("ext", "10.98.0.1:31010", 10, &["p1", "p2"], true).await;
    topo.until_answers("node", "10.98.0.1:31010", 10, &["p1", "p2"], true).await;

    // A not-ready endpoint gets no traffic.
    cluster.slice("web", &[ready("10.99.0.2"), ("10.99.0.3", NODE, false, false, false)]).await;
    topo.until_answers("c", vip, 10, &["p1"], false).await;

    // No ready endpoint: the serving, terminating one is used, the not-serving one is not.
    cluster.slice("web", &[("10.99.0.2", NODE, false, false, true), ("10.99.0.3", NODE, false, true, true)]).await;
    topo.until_answers("c", vip, 10, &["p2"], false).await;

    // Scaling to three endpoints reaches the new one.
    cluster.slice("web", &[ready("10.99.0.2"), ready("10.99.0.3"), ready("10.99.0.4")]).await;
    topo.until_answers("c", vip, 30, &["p1", "p2", "p3"], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_affinity_hairpin_and_services_without_endpoints() {
    let topo = Topology::new("b", &["p1", "p2", "c"]).await.expect("topology");
    let mut cluster = Cluster::start(&topo, "gantry-test-b").await.expect("cluster");
    let remote = (REMOTE_IP, "node-b", true, true, false);

    // externalTrafficPolicy Local: outside traffic only reaches this node's endpoint (the remote one would
    // time out), without masquerading.
    cluster.service("etp", "10.43.200.20", Some(31020), |s| s.external_traffic_policy = Some("Local".into())).await;
    cluster.slice("etp", &[ready("10.99.0.2"), remote]).await;
    topo.until_answers("ext", "10.98.0.1:31020", 10, &["p1"], false).await;

    // internalTrafficPolicy Local: ClusterIP traffic only reaches this node's endpoint.
    cluster.service("itp", "10.43.200.21", None, |s| s.internal_traffic_policy = Some("Local".into())).await;
    cluster.slice("itp", &[ready("10.99.0.3"), remote]).await;
    topo.until_answers("c", "10.43.200.21:80", 10, &["p2"], false).await;

    // ClientIP affinity: one client sticks to one endpoint.
    cluster
        .service("sticky", "10.43.200.22", None, |s| {
            s.session_affinity = Some("ClientIP".into());
            s.session_affinity_config =
                Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(600) }) });
        })
        .await;
    cluster.slice("sticky", &[ready("10.99.0.2"), ready("10.99.0.3")]).await;
    topo.until_answers("c", "10.43.200.22:80", 1, &["p1", "p2"], false).await;
    let answers: BTreeSet<String> = topo.answers("c", "10.43.200.22:80", 10).await.into_iter().collect();
    assert_eq!(answers.len(), 1, "affinity holds: {answers:?}");
    assert!(answers.iter().all(|a| a == "p1" || a == "p2"), "{answers:?}");

    // Hairpin: a pod reaches itself through its own Service.
    cluster.service("self", "10.43.200.23", None, |_| {}).await;
    cluster.slice("self", &[ready("10.99.0.2")]).await;
    topo.until_answers("p1", "10.43.200.23:80", 3, &["p1"], false).await;

    // No endpoints: refused at once, for the ClusterIP and the NodePort.
    cluster.service("empty", "10.43.200.24", Some(31024), |_| {}).await;
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let vip = topo.get("c", "10.43.200.24:80").await;
        let np = topo.get("ext", "10.98.0.1:31024").await;
        let refused = |r: &Result<String, String>| r.as_ref().err().is_some_and(|e| e.contains("refused"));
        if refused(&vip) && refused(&np) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "expected refusals, got {vip:?} and {np:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A stopped proxy leaves its rules; remove_rules deletes the table, and a second call finds none.
    cluster.stop_proxy().await;
    let nft = NftCommand::in_netns(&topo.ns("node"));
    assert!(nft.has_table("gantry-test-b").await.expect("list"), "rules stay when the proxy stops");
    assert_eq!(topo.get("c", "10.43.200.21:80").await.as_deref(), Ok("p2"));
    assert!(gantry_proxy::remove_rules_with(&nft, "gantry-test-b").await.expect("remove"));
    assert!(!nft.has_table("gantry-test-b").await.expect("list"));
    assert!(!gantry_proxy::remove_rules_with(&nft, "gantry-test-b").await.expect("remove again"));
}

/// The node's UDP flows to `ip`, one line each.
async fn udp_flows(topo: &Topology, ip: &str) -> String {
    let out = run(&["ip", "netns", "exec", &topo.ns("node"), "conntrack", "-L", "-p", "udp", "--orig-dst", ip])
        .await
        .expect("conntrack -L");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_answered_by_a_removed_endpoint_are_forgotten() {
    if std::process::Command::new("conntrack").arg("--version").output().is_err() {
        eprintln!("skipped: needs conntrack (Debian package conntrack)");
        return;
    }
    let topo = Topology::new("u", &["p1", "p2"]).await.expect("topology");
    let mut cluster = Cluster::start(&topo, "gantry-test-u").await.expect("cluster");
    let vip = "10.43.200.53";
    cluster
        .service("dns", vip, None, |s| {
            s.ports = Some(vec![ServicePort {
                name: Some("dns".into()),
                port: 53,
                target_port: Some(IntOrString::Int(5353)),
                protocol: Some("UDP".into()),
                ..ServicePort::default()
            }]);
        })
        .await;
    cluster.slice_with_port("dns", &[ready("10.99.0.2"), ready("10.99.0.3")], "dns", 5353, "UDP").await;
    // A report comes after its sync's conntrack cleanup, so flows made after it stay unless a later change
    // makes them stale.
    let table = "gantry-test-u";
    loop {
        let report = tokio::time::timeout(patience(), cluster.reports.recv()).await;
        assert!(matches!(report, Ok(Ok(_))), "no sync reported: {report:?}");
        let out = run(&["ip", "netns", "exec", &topo.ns("node"), "nft", "list", "table", "ip", table]).await;
        let listing = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        if listing.contains("10.99.0.2") && listing.contains("10.99.0.3") {
            break;
        }
    }
    // Two clients' flows, as conntrack would hold them after the DNAT: one answered by each endpoint.
    for (sport, endpoint) in [("40000", "10.99.0.2"), ("40001", "10.99.0.3")] {
        ok(&[
            "ip",
            "netns",
            "exec",
            &topo.ns("node"),
            "conntrack",
            "-I",
            "-p",
            "udp",
            "-s",
            "10.99.0.9",
            "-d",
            vip,
            "--sport",
            sport,
            "--dport",
            "53",
            "-r",
            endpoint,
            "-q",
            "10.99.0.9",
            "--reply-port-src",
            "5353",
            "--reply-port-dst",
            sport,
            "-t",
            "120",
        ])
        .await
        .expect("conntrack -I");
    }
    assert_eq!(udp_flows(&topo, vip).await.lines().count(), 2);

    cluster.slice_with_port("dns", &[ready("10.99.0.3")], "dns", 5353, "UDP").await;
    let deadline = tokio::time::Instant::now() + patience();
    let left = loop {
        let flows = udp_flows(&topo, vip).await;
        if !flows.contains("src=10.99.0.2") {
            break flows;
        }
        assert!(tokio::time::Instant::now() < deadline, "the removed endpoint's flow stayed: {flows}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(left.contains("src=10.99.0.3"), "the remaining endpoint's flow was kept: {left}");
}
