//! Services on `gantry up`, end to end: the real kubectl (`GANTRY_KUBECTL`) against the real binary, every pod in
//! a real container on the pod network, the node's service proxy in nftables and the cluster DNS in the agent.
//!
//! One test, because `gantry up` owns node-wide state (the pod bridge, the `gantry` nftables table, the DNS
//! server on the node's address): a Deployment of busybox `httpd` exposed with `kubectl expose`, reached by name
//! from another pod and balanced across its pods; the pod's resolv.conf and service link variables; a NodePort reached from the host;
//! scaling and a pod going not-ready change where traffic goes; a headless Service's name resolves to every
//! ready pod; `kubectl port-forward svc/web`; and after `gantry reset` the node has no rules left.
//!
//! Each step's time goes to stderr. Skipped, saying why, without root, busybox, the CNI plugins, `nft` or
//! `GANTRY_KUBECTL`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_runtime::testing::runtime::{network_skip_reason, patience};
use serde_json::Value;

const NODE: &str = "services-node";
const POD_CIDR: &str = "10.249.15.0/24";
/// The image as `gantry image import-busybox` names it by default.
const IMAGE: &str = "busybox:local";

struct Session {
    kubeconfig: PathBuf,
    home: PathBuf,
    steps: common::up::Steps,
}

impl Session {
    #[track_caller]
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> gantry_e2e::Output {
        let command = gantry_e2e::kubectl_command(&self.kubeconfig, &self.home, args);
        gantry_e2e::run(command, stdin.map(str::as_bytes), patience() + Duration::from_secs(10))
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        self.kubectl(&all, None).ok().json()
    }

    #[track_caller]
    fn apply(&self, manifest: &str) {
        self.kubectl(&["apply", "-f", "-"], Some(manifest)).ok();
    }

    #[track_caller]
    fn wait(&self, object: &str, what: &str) {
        let timeout = format!("--timeout={}s", patience().as_secs());
        let out = self.kubectl(&["wait", object, what, &timeout], None);
        if !out.success() {
            let described = self.kubectl(&["describe", object], None);
            let pods = self.kubectl(&["get", "pods", "-o", "wide"], None);
            panic!("kubectl wait {object} {what} failed: {}\n{}\n{}", out.stderr, described.stdout, pods.stdout);
        }
    }

    /// Runs `script` in the client pod's shell; its standard output, or why it failed.
    fn in_client(&self, script: &str) -> Result<String, String> {
        let out = self.kubectl(&["exec", "client", "--", "sh", "-c", script], None);
        if out.success() { Ok(out.stdout) } else { Err(format!("{script}: {}{}", out.stdout, out.stderr)) }
    }

    /// The names of the pods that answered `n` requests to `url` from the client pod (each pod serves its own
    /// name).
    fn answers(&self, url: &str, n: usize) -> Result<Vec<String>, String> {
        // busybox's own `wget -T` is broken in Debian's static build; `timeout` bounds each request instead.
        let script = format!("for i in $(seq {n}); do timeout 3 wget -q -O - {url} || echo FAILED; done");
        let out = self.in_client(&script)?;
        let lines: Vec<String> = out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
        if lines.len() != n || lines.iter().any(|l| l == "FAILED") {
            return Err(format!("{n} requests to {url} gave {lines:?}"));
        }
        Ok(lines)
    }

    /// The ready `app=web` pods: name → pod IP.
    fn ready_web_pods(&self) -> Vec<(String, String)> {
        let list = self.json(&["get", "pods", "-l", "app=web"]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && common::up::is_ready(p))
            .map(|p| (common::up::name(p), p["status"]["podIP"].as_str().unwrap_or_default().to_string()))
            .collect()
    }
}

/// A shell that stays process 1, answers HTTP on port 80 with the pod's name and exits on SIGTERM; the pod is
/// ready while /tmp/unready does not exist.
const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox:local
        command: ["sh", "-c", "mkdir -p /www; hostname > /www/index.html; trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]
        ports:
        - {name: http, containerPort: 80}
        readinessProbe:
          exec:
            command: ["sh", "-c", "test ! -e /tmp/unready"]
          periodSeconds: 1
          failureThreshold: 1
"#;

const CLIENT: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: busybox:local
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#;

const HEADLESS: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web-headless
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 80}
"#;

fn nft_table_exists() -> bool {
    std::process::Command::new("nft")
        .args(["list", "table", "ip", "gantry"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The addresses `busybox nslookup` printed for the name it looked up (those after the `Name:` line; the
/// server's own address comes before it).
fn looked_up(output: &str) -> BTreeSet<String> {
    output
        .lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .filter_map(|l| l.strip_prefix("Address:").or_else(|| l.strip_prefix("Address 1:")))
        .map(|a| a.trim().to_string())
        .collect()
}

fn gantry(args: &[&str], data_dir: &Path) -> gantry_e2e::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.args(args).arg("--data-dir").arg(data_dir);
    gantry_e2e::run(command, None, patience() * 2)
}

#[test]
fn pods_reach_services_by_name_through_the_node_proxy_and_cluster_dns_on_gantry_up() {
    if let Some(reason) = network_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    if std::env::var_os("GANTRY_KUBECTL").is_none_or(|k| k.is_empty()) {
        eprintln!("skipped: needs GANTRY_KUBECTL (the real kubectl; scripts/fetch-clients gets one)");
        return;
    }
    if std::process::Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipped: needs nft (Debian package nftables)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let cleanup = common::up::NodeCleanup::new(&data_dir, POD_CIDR);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut s = Session { kubeconfig: data_dir.join("kubeconfig"), home, steps: common::up::Steps::new("services") };

    s.steps.step("gantry up");
    common::up::import_busybox(&data_dir, &[IMAGE]);
    let (mut up, _line) = common::up::start_up(&data_dir, NODE, POD_CIDR);
    s.wait(&format!("node/{NODE}"), "--for=condition=Ready");
    let node = s.json(&["get", "node", NODE]);
    let node_ip = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .expect("the Node has an InternalIP")
        .to_string();

    s.steps.step("the built-in Services");
    let kubernetes = s.json(&["get", "service", "kubernetes"]);
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.43.0.1", "{}", kubernetes["spec"]);
    let dns = s.json(&["get", "service", "kube-dns", "-n", "kube-system"]);
    assert_eq!(dns["spec"]["clusterIP"], "10.43.0.10", "{}", dns["spec"]);

    s.steps.step("a Deployment of 2 behind `kubectl expose`");
    s.apply(WEB);
    s.kubectl(&["expose", "deployment", "web", "--port", "80", "--target-port", "http"], None).ok();
    let web = s.json(&["get", "service", "web"]);
    let cluster_ip = web["spec"]["clusterIP"].as_str().expect("a ClusterIP").to_string();
    assert!(cluster_ip.starts_with("10.43."), "{cluster_ip} is not from the service range");
    s.apply(CLIENT);
    s.wait("deployment/web", "--for=condition=Available");
    s.wait("pod/client", "--for=condition=Ready");

    s.steps.step("the client pod's resolv.conf");
    let resolv = s.in_client("cat /etc/resolv.conf").expect("resolv.conf");
    assert!(resolv.lines().any(|l| l.trim() == "nameserver 10.43.0.10"), "{resolv}");
    assert!(
        resolv
            .lines()
            .any(|l| l.trim().starts_with("search default.svc.cluster.local svc.cluster.local cluster.local")),
        "{resolv}"
    );
    assert!(resolv.contains("ndots:5"), "{resolv}");
    // The kubelet's service links: the client started after `web` was exposed.
    let env = s.in_client("env").expect("env");
    assert!(env.lines().any(|l| l == format!("WEB_SERVICE_HOST={cluster_ip}")), "{env}");
    assert!(env.lines().any(|l| l == "WEB_PORT_80_TCP_PORT=80"), "{env}");
    assert!(env.lines().any(|l| l == "KUBERNETES_SERVICE_HOST=10.43.0.1"), "{env}");

    s.steps.step("web.default.svc.cluster.local, balanced");
    let two: BTreeSet<String> = s.ready_web_pods().into_iter().map(|(name, _)| name).collect();
    assert_eq!(two.len(), 2);
    common::up::eventually("both pods answer web.default.svc.cluster.local", || {
        let seen: BTreeSet<String> = s.answers("http://web.default.svc.cluster.local", 20)?.into_iter().collect();
        if seen == two { Ok(()) } else { Err(format!("answered by {seen:?}, pods {two:?}")) }
    });
    // The short name through the search path, and the ClusterIP itself.
    let short = s.answers("http://web", 1).expect("http://web");
    assert!(two.contains(&short[0]), "{short:?}");
    let by_ip = s.answers(&format!("http://{cluster_ip}"), 1).expect("the ClusterIP");
    assert!(two.contains(&by_ip[0]), "{by_ip:?}");

    s.steps.step("a NodePort from the host");
    s.kubectl(&["expose", "deployment", "web", "--name", "web-np", "--type", "NodePort", "--port", "80"], None).ok();
    let np = s.json(&["get", "service", "web-np"]);
    let node_port = np["spec"]["ports"][0]["nodePort"].as_i64().expect("a nodePort");
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    let table = s.kubectl(&["get", "service", "web-np"], None).ok();
    assert!(table.stdout.contains(&format!("80:{node_port}/TCP")), "{}", table.stdout);
    let from_host: BTreeSet<String> = common::up::eventually("the NodePort answers from the host", || {
        let mut seen = BTreeSet::new();
        for _ in 0..20 {
            let answer = common::up::http_get(&format!("{node_ip}:{node_port}"))?;
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string();
            seen.insert(body);
        }
        if seen == two { Ok(seen) } else { Err(format!("answered by {seen:?}")) }
    });
    assert_eq!(from_host, two);

    s.steps.step("scaled to 3, the third pod gets traffic");
    s.kubectl(&["scale", "deployment", "web", "--replicas", "3"], None).ok();
    let three: BTreeSet<String> = common::up::eventually("3 ready web pods", || {
        let ready = s.ready_web_pods();
        if ready.len() == 3 { Ok(ready.into_iter().map(|(n, _)| n).collect()) } else { Err(format!("{ready:?}")) }
    });
    common::up::eventually("all 3 pods answer", || {
        let seen: BTreeSet<String> = s.answers("http://web", 30)?.into_iter().collect();
        if seen == three { Ok(()) } else { Err(format!("answered by {seen:?}")) }
    });

    s.steps.step("a pod that is not ready gets no traffic");
    let unready = three.iter().next().expect("a pod").clone();
    s.kubectl(&["exec", &unready, "--", "touch", "/tmp/unready"], None).ok();
    s.wait(&format!("pod/{unready}"), "--for=condition=Ready=false");
    common::up::eventually("the not-ready pod is out of the rules", || {
        let seen: BTreeSet<String> = s.answers("http://web", 20)?.into_iter().collect();
        if seen.contains(&unready) { Err(format!("{unready} still answers")) } else { Ok(()) }
    });
    let later: BTreeSet<String> = s.answers("http://web", 30).expect("requests").into_iter().collect();
    assert!(!later.contains(&unready), "{unready} answered while not ready: {later:?}");
    assert_eq!(later.len(), 2, "the two ready pods share the traffic: {later:?}");

    s.steps.step("a headless Service resolves to every ready pod");
    s.apply(HEADLESS);
    let ready_ips: BTreeSet<String> = s.ready_web_pods().into_iter().map(|(_, ip)| ip).collect();
    assert_eq!(ready_ips.len(), 2);
    common::up::eventually("web-headless resolves to the ready pods", || {
        let out = s.in_client("nslookup -type=A web-headless.default.svc.cluster.local")?;
        let found = looked_up(&out);
        if found == ready_ips { Ok(()) } else { Err(format!("{found:?} in {out}")) }
    });
    let missing = s.in_client("nslookup no-such-service.default.svc.cluster.local");
    match &missing {
        Ok(out) => assert!(out.contains("NXDOMAIN"), "{out}"),
        Err(why) => assert!(why.contains("NXDOMAIN") || why.contains("can't find"), "{why}"),
    }

    s.steps.step("kubectl port-forward svc/web");
    let mut forward = gantry_e2e::Background::spawn(gantry_e2e::kubectl_command(
        &s.kubeconfig,
        &s.home,
        &["port-forward", "svc/web", ":80"],
    ));
    let line = forward.wait_for_line(|l| l.starts_with("Forwarding from 127.0.0.1:"));
    let local = line
        .trim_start_matches("Forwarding from ")
        .split_whitespace()
        .next()
        .expect("the forwarded address")
        .to_string();
    let answer = common::up::http_get(&local).expect("through port-forward");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string();
    assert!(three.contains(&body), "port-forward reached {body:?}");
    drop(forward);

    s.steps.step("stop, then gantry reset removes the rules");
    up.signal("TERM");
    let status = up.wait();
    assert!(status.success(), "gantry up did not stop cleanly: {status}");
    assert!(nft_table_exists(), "the rules outlive a stop, as kube-proxy's do, so that traffic flows on");
    gantry(&["reset"], &data_dir).ok();
    assert!(!nft_table_exists(), "gantry reset left the service proxy's nftables table");
    drop(cleanup);
}
