//! Pod namespaces and CNI networking with the real kernel and the real plugins.
//!
//! Needs root, Debian's `containernetworking-plugins` (in /usr/lib/cni), `iproute2`, `iptables`, `util-linux`
//! (`nsenter`) and `busybox-static`; each test prints why it skips when one is missing. Every test uses its own
//! bridge, subnet, host port and directories (derived from a per-test index and the process ID) and removes them,
//! and every process, mount and namespace it made, even when it fails.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gantry_runtime::cri::{PortMapping, Protocol, RuntimeError};
use gantry_runtime::network::{
    CniClient, CniOptions, NamespaceKind, NamespaceSpec, NetworkError, PodNamespaces, PodNetwork, PodNetworkStatus,
    write_default_config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PLUGIN_DIR: &str = "/usr/lib/cni";

/// Why this machine cannot run the privileged tests, if it cannot.
fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root".into());
    }
    for plugin in ["bridge", "host-local", "portmap"] {
        if !Path::new(PLUGIN_DIR).join(plugin).is_file() {
            return Some(format!("CNI plugin {PLUGIN_DIR}/{plugin} missing (install containernetworking-plugins)"));
        }
    }
    for tool in ["nsenter", "busybox", "ip", "iptables-save"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            return Some(format!("{tool} not found"));
        }
    }
    None
}

macro_rules! skip_unless_privileged {
    ($name:literal) => {
        if let Some(reason) = skip_reason() {
            eprintln!("skipping {}: {reason}", $name);
            return Ok(());
        }
    };
}

/// How long to wait for a condition; `GANTRY_TEST_PATIENCE_SECS` raises it on slow machines.
fn patience() -> Duration {
    let secs = std::env::var("GANTRY_TEST_PATIENCE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    Duration::from_secs(secs)
}

/// Retries `attempt` until it succeeds or the patience runs out, then returns its last error.
async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if tokio::time::Instant::now() >= deadline => {
                return Err(err.context(format!("waiting for {what}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Mount points in this process's mount namespace.
fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(|line| line.split(' ').nth(4)).map(PathBuf::from).collect()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mount_points().into_iter().filter(|mount| mount.starts_with(dir)).collect()
}

/// Runs a command to completion and returns its standard output, failing on a non-zero exit.
fn run(program: &str, args: &[&str]) -> impl Future<Output = Result<String>> + use<> {
    let program = program.to_string();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    async move {
        let output = tokio::process::Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("starting {program}"))?;
        if !output.status.success() {
            bail!("{program} {args:?}: {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// A plain HTTP/1.0 GET; returns the whole response.
async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    tokio::time::timeout(Duration::from_secs(3), exchange).await.context("HTTP GET timed out")?
}

/// Removes the namespaces when the test ends, however it ends.
struct PinnedGuard(PodNamespaces);

impl Drop for PinnedGuard {
    fn drop(&mut self) {
        if let Err(err) = self.0.remove() {
            eprintln!("cleanup: removing namespaces under {}: {err}", self.0.dir().display());
        }
    }
}

/// One sandbox of a fixture: its pinned namespaces and, once attached, its network.
struct Sandbox {
    id: String,
    namespaces: PodNamespaces,
    status: Option<PodNetworkStatus>,
}

impl Sandbox {
    fn netns(&self) -> &Path {
        self.namespaces.path(NamespaceKind::Network).unwrap_or(Path::new(""))
    }

    fn ip(&self) -> Result<IpAddr> {
        self.status.as_ref().and_then(PodNetworkStatus::ipv4).context("the sandbox has no IPv4 address")
    }

    /// The host-side end of the sandbox's veth pair, from the CNI result.
    fn host_veth(&self, bridge: &str) -> Result<String> {
        let result = &self.status.as_ref().context("not attached")?.result;
        let interfaces = result["interfaces"].as_array().context("no interfaces in the result")?;
        interfaces
            .iter()
            .filter(|iface| iface.get("sandbox").is_none_or(|s| s.as_str() == Some("")))
            .filter_map(|iface| iface["name"].as_str())
            .find(|name| *name != bridge)
            .map(str::to_string)
            .context("no host veth in the result")
    }
}

/// A network of its own (bridge, subnet, CNI directories) with sandboxes on it and servers in them. Dropping it
/// kills the servers, deletes the sandboxes' networks, unpins their namespaces, and deletes the bridge and the
/// address allocations.
struct Fixture {
    name: String,
    subnet_prefix: String,
    client: CniClient,
    sandboxes: Vec<Sandbox>,
    servers: Vec<std::process::Child>,
    /// Further networks a test configured (by name, which is also the bridge's): deleted like the fixture's own.
    other_networks: Vec<String>,
    root: tempfile::TempDir,
}

impl Fixture {
    /// A network for test number `index` (unique per test in this file).
    fn new(index: u8) -> Result<Fixture> {
        let pid = std::process::id();
        let name = format!("gtn{index}-{:x}", pid & 0xff_ffff);
        let subnet_prefix = format!("10.{}.{}", 230 + u32::from(index), pid % 250);
        let root = tempfile::Builder::new().prefix(&format!("gantry-net-{index}-")).tempdir()?;
        let conf_dir = root.path().join("net.d");
        write_default_config(&conf_dir, &root.path().join("networks"), &name, &format!("{subnet_prefix}.0/24"))?;
        let mut options = CniOptions::new(conf_dir, root.path().join("cni-cache"));
        options.plugin_dirs = vec![PathBuf::from(PLUGIN_DIR)];
        Ok(Fixture {
            name,
            subnet_prefix,
            client: CniClient::new(options),
            sandboxes: Vec::new(),
            servers: Vec::new(),
            other_networks: Vec::new(),
            root,
        })
    }

    fn gateway(&self) -> Result<IpAddr> {
        Ok(format!("{}.1", self.subnet_prefix).parse()?)
    }

    /// Where host-local keeps the fixture network's address allocations (the configuration's `dataDir`).
    fn ipam_dir(&self) -> PathBuf {
        self.root.path().join("networks").join(&self.name)
    }

    /// Creates a sandbox's namespaces and attaches it to the network; returns its index.
    async fn add_sandbox(&mut self, suffix: &str, port_mappings: Vec<PortMapping>) -> Result<usize> {
        let id = format!("{}-{suffix}", self.name);
        let dir = self.root.path().join("sandboxes").join(&id).join("ns");
        let spec = NamespaceSpec { network: true, ipc: true, uts: true, hostname: Some(suffix.into()) };
        let namespaces = PodNamespaces::create(&dir, &spec)?;
        self.sandboxes.push(Sandbox { id: id.clone(), namespaces, status: None });
        let index = self.sandboxes.len() - 1;
        let pod = PodNetwork {
            sandbox_id: id.clone(),
            netns: self.sandboxes[index].netns().to_path_buf(),
            pod_namespace: "default".into(),
            pod_name: suffix.into(),
            pod_uid: format!("uid-{id}"),
            port_mappings,
            ifname: "eth0".into(),
        };
        let status = self.client.setup(&pod).await?;
        self.sandboxes[index].status = Some(status);
        Ok(index)
    }

    /// Starts `busybox httpd` inside a sandbox's network namespace, serving `index.html` with `body`.
    fn serve(&mut self, sandbox: usize, port: u16, body: &str) -> Result<()> {
        let www = self.root.path().join(format!("www-{sandbox}"));
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("index.html"), body)?;
        let netns = self.sandboxes[sandbox].netns().display().to_string();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["busybox", "httpd", "-f", "-p", &format!("0.0.0.0:{port}"), "-h"])
            .arg(&www)
            .stdin(Stdio::null())
            .spawn()
            .context("starting busybox httpd")?;
        self.servers.push(child);
        Ok(())
    }

    /// Whether anything in the host's nat table still names this sandbox (bridge masquerading, portmap chains).
    async fn nat_rules_naming(&self, sandbox: usize) -> Result<bool> {
        let rules = run("iptables-save", &["-t", "nat"]).await?;
        Ok(rules.contains(&self.sandboxes[sandbox].id))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        // The plugins are async; this runs on a test runtime's thread, so a runtime of its own on another thread.
        let client = self.client.clone();
        let attached: Vec<(String, PathBuf)> =
            self.sandboxes.iter().map(|s| (s.id.clone(), s.netns().to_path_buf())).collect();
        let teardown = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            for (id, netns) in attached {
                if let Err(err) = runtime.block_on(client.teardown(&id, Some(&netns))) {
                    eprintln!("cleanup: CNI DEL of {id}: {err}");
                }
            }
        });
        let _ = teardown.join();
        for sandbox in &self.sandboxes {
            if let Err(err) = sandbox.namespaces.remove() {
                eprintln!("cleanup: namespaces of {}: {err}", sandbox.id);
            }
        }
        for network in std::iter::once(&self.name).chain(&self.other_networks) {
            let _ = std::process::Command::new("ip").args(["link", "del", network]).stderr(Stdio::null()).status();
        }
    }
}

#[tokio::test]
async fn namespaces_are_pinned_with_the_hostname_and_lo_up_and_removed_without_a_trace() -> Result<()> {
    skip_unless_privileged!("namespaces_are_pinned_with_the_hostname_and_lo_up_and_removed_without_a_trace");
    let root = tempfile::tempdir()?;
    let dir = root.path().join("sandboxes/one/ns");
    let hostname = format!("pod-{}", std::process::id());
    let spec = NamespaceSpec { network: true, ipc: true, uts: true, hostname: Some(hostname.clone()) };
    let guard = PinnedGuard(PodNamespaces::create(&dir, &spec)?);
    let namespaces = &guard.0;

    let mounted = mounts_under(&dir);
    for kind in NamespaceKind::ALL {
        let path = namespaces.path(kind).context("a kind asked for has no path")?;
        assert_eq!(path, dir.join(kind.file_name()));
        assert!(mounted.contains(&path.to_path_buf()), "{} is not a mount point: {mounted:?}", path.display());
        let own = std::fs::metadata(format!("/proc/self/ns/{}", kind.file_name()))?.ino();
        assert_ne!(std::fs::metadata(path)?.ino(), own, "{kind:?} is the test's own namespace");
    }

    let uts = namespaces.path(NamespaceKind::Uts).context("no uts")?.display().to_string();
    let seen = run("nsenter", &[&format!("--uts={uts}"), "busybox", "hostname"]).await?;
    assert_eq!(seen.trim(), hostname);
    let node_hostname = nix::unistd::gethostname()?;
    assert_ne!(node_hostname.to_string_lossy(), hostname, "the node's hostname changed");

    let net = namespaces.path(NamespaceKind::Network).context("no net")?.display().to_string();
    let lo = run("nsenter", &[&format!("--net={net}"), "ip", "-o", "link", "show", "lo"]).await?;
    assert!(lo.contains(",UP"), "lo is not up: {lo}");
    let links = run("nsenter", &[&format!("--net={net}"), "ip", "-o", "link", "show"]).await?;
    assert_eq!(links.lines().count(), 1, "a new network namespace holds only lo: {links}");

    let reopened = PodNamespaces::open(&dir);
    assert_eq!(&reopened, namespaces);

    let again = PodNamespaces::create(&dir, &spec).map(PinnedGuard);
    let Err(NetworkError::Io { source, .. }) = &again else { bail!("a second create over pinned files did not fail") };
    assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(PodNamespaces::open(&dir), reopened, "the failed create disturbed the pinned namespaces");
    assert_eq!(mounts_under(&dir).len(), 3, "{:?}", mounts_under(&dir));

    namespaces.remove()?;
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    assert!(!dir.exists(), "the namespace directory is left behind");
    namespaces.remove()?;
    assert!(NamespaceKind::ALL.iter().all(|kind| PodNamespaces::open(&dir).path(*kind).is_none()));
    Ok(())
}

#[tokio::test]
async fn host_network_pins_only_the_ipc_namespace() -> Result<()> {
    skip_unless_privileged!("host_network_pins_only_the_ipc_namespace");
    let root = tempfile::tempdir()?;
    let dir = root.path().join("ns");
    let spec = NamespaceSpec { network: false, ipc: true, uts: false, hostname: Some("ignored".into()) };
    let guard = PinnedGuard(PodNamespaces::create(&dir, &spec)?);
    assert_eq!(guard.0.path(NamespaceKind::Network), None);
    assert_eq!(guard.0.path(NamespaceKind::Uts), None);
    assert_eq!(guard.0.path(NamespaceKind::Ipc), Some(dir.join("ipc").as_path()));
    assert_eq!(mounts_under(&dir), vec![dir.join("ipc")]);
    guard.0.remove()?;
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    Ok(())
}

#[tokio::test]
async fn a_failed_creation_leaves_no_mount_and_no_file() -> Result<()> {
    skip_unless_privileged!("a_failed_creation_leaves_no_mount_and_no_file");
    let root = tempfile::tempdir()?;
    let dir = root.path().join("ns");
    // The kernel refuses hostnames longer than 64 bytes, after the namespaces exist.
    let spec = NamespaceSpec { network: true, ipc: true, uts: true, hostname: Some("h".repeat(65)) };
    let err = PodNamespaces::create(&dir, &spec).map(PinnedGuard).err().context("a 65-byte hostname was accepted")?;
    assert!(matches!(err, NetworkError::Sys { .. }), "{err}");
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    assert!(!dir.exists(), "files are left behind in {}", dir.display());
    Ok(())
}

#[tokio::test]
async fn a_pod_gets_an_address_in_the_pod_cidr_that_the_host_reaches_and_del_undoes_it() -> Result<()> {
    skip_unless_privileged!("a_pod_gets_an_address_in_the_pod_cidr_that_the_host_reaches_and_del_undoes_it");
    let mut fixture = Fixture::new(1)?;
    let pod = fixture.add_sandbox("a", Vec::new()).await?;
    let ip = fixture.sandboxes[pod].ip()?;
    assert!(ip.to_string().starts_with(&format!("{}.", fixture.subnet_prefix)), "{ip} is outside the pod CIDR");
    assert_ne!(ip, fixture.gateway()?);
    let status = fixture.sandboxes[pod].status.clone().context("not attached")?;
    assert_eq!(status.network, fixture.name);
    assert_eq!(status.ips[0].gateway, Some(fixture.gateway()?));

    let inside =
        run("nsenter", &[&format!("--net={}", fixture.sandboxes[pod].netns().display()), "ip", "-o", "addr"]).await?;
    assert!(inside.contains(&format!("eth0    inet {ip}/24")), "eth0 lacks {ip}: {inside}");

    fixture.serve(pod, 8080, "hello from a")?;
    let response = eventually("the pod's server", || http_get(SocketAddr::new(ip, 8080), "/index.html")).await?;
    assert!(response.contains("hello from a"), "{response}");

    fixture.client.check(&fixture.sandboxes[pod].id, fixture.sandboxes[pod].netns()).await?;

    let veth = fixture.sandboxes[pod].host_veth(&fixture.name)?;
    let allocation = fixture.ipam_dir().join(ip.to_string());
    assert!(Path::new("/sys/class/net").join(&veth).exists(), "no host veth {veth}");
    assert!(allocation.exists(), "no IPAM allocation at {}", allocation.display());
    // Masquerading is one node-level rule, not a chain per pod: ADD leaves the nat table alone.
    assert!(!fixture.nat_rules_naming(pod).await?, "ADD created nat rules for the sandbox");

    let id = fixture.sandboxes[pod].id.clone();
    let netns = fixture.sandboxes[pod].netns().to_path_buf();
    fixture.client.teardown(&id, Some(&netns)).await?;
    assert!(!Path::new("/sys/class/net").join(&veth).exists(), "DEL left the host veth {veth}");
    assert!(!allocation.exists(), "DEL left the IPAM allocation {}", allocation.display());
    assert!(!fixture.nat_rules_naming(pod).await?, "DEL left nat rules naming the sandbox");
    let err = fixture.client.check(&id, &netns).await.err().context("CHECK after DEL passed")?;
    assert!(matches!(err, NetworkError::NotAttached { .. }), "{err}");

    // DEL again: without the cached record, with the namespace still pinned and then without it.
    fixture.client.teardown(&id, Some(&netns)).await?;
    fixture.sandboxes[pod].namespaces.remove()?;
    fixture.client.teardown(&id, Some(&netns)).await?;
    fixture.client.teardown(&id, None).await?;
    Ok(())
}

#[tokio::test]
async fn two_sandboxes_on_one_bridge_reach_each_other() -> Result<()> {
    skip_unless_privileged!("two_sandboxes_on_one_bridge_reach_each_other");
    let mut fixture = Fixture::new(2)?;
    let a = fixture.add_sandbox("a", Vec::new()).await?;
    let b = fixture.add_sandbox("b", Vec::new()).await?;
    let (ip_a, ip_b) = (fixture.sandboxes[a].ip()?, fixture.sandboxes[b].ip()?);
    assert_ne!(ip_a, ip_b);
    fixture.serve(b, 8080, "hello from b")?;
    let from_a = format!("--net={}", fixture.sandboxes[a].netns().display());
    // busybox's static wget crashes on this Debian release; nc speaks the HTTP/1.0 request itself.
    let request = format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {ip_b} 8080");
    let response =
        eventually("b's server, from a", || run("nsenter", &[&from_a, "busybox", "sh", "-c", &request])).await?;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello from b"), "{response}");
    Ok(())
}

#[tokio::test]
async fn a_host_port_reaches_the_pod_through_portmap_until_del() -> Result<()> {
    skip_unless_privileged!("a_host_port_reaches_the_pod_through_portmap_until_del");
    let mut fixture = Fixture::new(3)?;
    let host_port = 42000 + (std::process::id() % 1000) as u16;
    let mapping = PortMapping { protocol: Protocol::Tcp, container_port: 8080, host_port, host_ip: String::new() };
    let pod = fixture.add_sandbox("a", vec![mapping]).await?;
    fixture.serve(pod, 8080, "hello through portmap")?;
    let ip = fixture.sandboxes[pod].ip()?;
    eventually("the pod's server", || http_get(SocketAddr::new(ip, 8080), "/index.html")).await?;

    // The bridge's address is the node's own: traffic to it is locally generated and DNATed in OUTPUT.
    let node_addr = SocketAddr::new(fixture.gateway()?, host_port);
    let response = eventually("the host port", || http_get(node_addr, "/index.html")).await?;
    assert!(response.contains("hello through portmap"), "{response}");
    let rules = run("iptables-save", &["-t", "nat"]).await?;
    assert!(rules.contains(&format!("--dport {host_port}")), "no DNAT rule for {host_port}");

    let id = fixture.sandboxes[pod].id.clone();
    let netns = fixture.sandboxes[pod].netns().to_path_buf();
    fixture.client.teardown(&id, Some(&netns)).await?;
    let rules = run("iptables-save", &["-t", "nat"]).await?;
    assert!(!rules.contains(&format!("--dport {host_port}")), "DEL left the DNAT rule for {host_port}");
    assert!(!rules.contains(&id), "DEL left nat rules naming the sandbox");
    Ok(())
}

#[tokio::test]
async fn a_plugin_error_is_reported_with_its_code_and_the_add_is_undone() -> Result<()> {
    skip_unless_privileged!("a_plugin_error_is_reported_with_its_code_and_the_add_is_undone");
    let fixture = Fixture::new(4)?;
    let not_a_namespace = fixture.root.path().join("not-a-netns");
    std::fs::write(&not_a_namespace, "")?;
    let pod = PodNetwork {
        sandbox_id: format!("{}-bad", fixture.name),
        netns: not_a_namespace,
        pod_namespace: "default".into(),
        pod_name: "bad".into(),
        pod_uid: "uid-bad".into(),
        port_mappings: Vec::new(),
        ifname: "eth0".into(),
    };
    let err = fixture.client.setup(&pod).await.err().context("ADD into a plain file succeeded")?;
    let NetworkError::Plugin { plugin, command, code, msg, .. } = &err else { bail!("not a plugin error: {err}") };
    assert_eq!((plugin.as_str(), *command), ("bridge", "ADD"));
    assert_ne!(*code, 0);
    assert!(!msg.is_empty());
    // Nothing was allocated, nothing is cached for a DEL that would not come.
    let allocations: Vec<_> = std::fs::read_dir(fixture.ipam_dir())
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        allocations.iter().all(|name| !name.to_string_lossy().starts_with(&fixture.subnet_prefix)),
        "an address stays allocated: {allocations:?}"
    );
    let cache = fixture.client.options().cache_dir.join(format!("{}.json", pod.sandbox_id));
    assert!(!cache.exists(), "a failed ADD left its cache entry");
    Ok(())
}

#[tokio::test]
async fn a_missing_plugin_names_the_debian_package_and_runs_nothing() -> Result<()> {
    // Needs neither root nor the plugins: the lookup fails before anything runs.
    let root = tempfile::tempdir()?;
    let conf_dir = root.path().join("net.d");
    std::fs::create_dir_all(&conf_dir)?;
    std::fs::write(
        conf_dir.join("10-test.conflist"),
        r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"gantry-no-such-plugin"}]}"#,
    )?;
    let mut options = CniOptions::new(&conf_dir, root.path().join("cache"));
    options.plugin_dirs = vec![root.path().join("plugins")];
    let client = CniClient::new(options);
    let pod = PodNetwork { sandbox_id: "s1".into(), netns: root.path().join("netns"), ..PodNetwork::default() };
    let err = client.setup(&pod).await.err().context("ADD with a missing plugin succeeded")?;
    assert!(matches!(err, NetworkError::PluginNotFound { .. }), "{err}");
    let RuntimeError::Prerequisite(message) = RuntimeError::from(err) else { bail!("not a prerequisite error") };
    assert!(message.contains("gantry-no-such-plugin"), "{message}");
    assert!(message.contains("containernetworking-plugins"), "{message}");
    assert!(!root.path().join("cache/s1.json").exists(), "a cache entry was written");
    Ok(())
}

#[tokio::test]
async fn a_del_after_a_restart_uses_the_configuration_recorded_at_add() -> Result<()> {
    skip_unless_privileged!("a_del_after_a_restart_uses_the_configuration_recorded_at_add");
    let mut fixture = Fixture::new(5)?;
    let pod = fixture.add_sandbox("a", Vec::new()).await?;
    let ip = fixture.sandboxes[pod].ip()?;
    let veth = fixture.sandboxes[pod].host_veth(&fixture.name)?;
    let allocation = fixture.ipam_dir().join(ip.to_string());
    assert!(allocation.exists());

    // The node's configuration changes while the agent is down: another bridge, another subnet.
    let conf_dir = fixture.client.options().conf_dir.clone();
    std::fs::remove_dir_all(&conf_dir)?;
    let other_bridge = format!("{}x", fixture.name);
    fixture.other_networks.push(other_bridge.clone());
    let ipam_dir = conf_dir.with_file_name("networks");
    write_default_config(&conf_dir, &ipam_dir, &other_bridge, "10.229.0.0/24")?;
    let restarted = CniClient::new(fixture.client.options().clone());
    assert_eq!(restarted.load_network()?.name, other_bridge);
    let id = fixture.sandboxes[pod].id.clone();
    let recorded = restarted.cached_status(&id)?.context("no recorded status after the restart")?;
    assert_eq!((recorded.network.as_str(), recorded.ipv4()), (fixture.name.as_str(), Some(ip)));

    let namespaces = PodNamespaces::open(fixture.sandboxes[pod].namespaces.dir());
    let netns = namespaces.path(NamespaceKind::Network).context("the pinned netns is not found again")?;
    restarted.teardown(&id, Some(netns)).await?;
    assert!(!Path::new("/sys/class/net").join(&veth).exists(), "DEL left the host veth {veth}");
    assert!(!allocation.exists(), "DEL left the IPAM allocation {}", allocation.display());
    assert!(!Path::new("/sys/class/net").join(&other_bridge).exists(), "DEL ran the new configuration");
    assert_eq!(restarted.cached_status(&id)?, None, "the record outlived the DEL");
    Ok(())
}

/// A directory of script plugins that speak the CNI protocol without touching the kernel, to watch what the client
/// sends: each call appends `COMMAND NAME CNI_ARGS` to `calls.log` and saves its input as `NAME.COMMAND.json`.
struct ScriptPlugins {
    root: tempfile::TempDir,
}

impl ScriptPlugins {
    /// `plugins` is the chain (by type); `rec-*` record and succeed, `fail` returns a CNI error, `slow` hangs.
    fn new(plugins: &str) -> Result<ScriptPlugins> {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::Builder::new().prefix("gantry-cni-script-").tempdir()?;
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin)?;
        let recorder = r#"#!/bin/sh
dir=$(dirname "$0")/..
name=$(basename "$0")
cat > "$dir/$name.$CNI_COMMAND.json"
echo "$CNI_COMMAND $name $CNI_IFNAME $CNI_ARGS" >> "$dir/calls.log"
case "$name" in rec-a) n=1 ;; *) n=2 ;; esac
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"10.9.0.%s/24","interface":0}]}' "$CNI_IFNAME" "$CNI_NETNS" "$n"
fi
"#;
        let failing = r#"#!/bin/sh
cat > /dev/null
echo "$CNI_COMMAND fail" >> "$(dirname "$0")/../calls.log"
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{"cniVersion":"1.0.0","code":7,"msg":"invalid network config","details":"no bridge named x"}'
  exit 1
fi
"#;
        let slow = "#!/bin/sh\nexec sleep 30\n";
        let plugins_written =
            [("rec-a", recorder), ("rec-b", recorder), ("portmap", recorder), ("fail", failing), ("slow", slow)];
        for (name, script) in plugins_written {
            let path = bin.join(name);
            std::fs::write(&path, script)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        let conf_dir = root.path().join("net.d");
        std::fs::create_dir_all(&conf_dir)?;
        std::fs::write(
            conf_dir.join("10-script.conflist"),
            format!(r#"{{"cniVersion":"1.0.0","name":"script","plugins":{plugins}}}"#),
        )?;
        Ok(ScriptPlugins { root })
    }

    fn client(&self, timeout: Duration) -> CniClient {
        let mut options = CniOptions::new(self.root.path().join("net.d"), self.root.path().join("cache"));
        options.plugin_dirs = vec![self.root.path().join("bin")];
        options.timeout = timeout;
        CniClient::new(options)
    }

    fn pod(&self, port_mappings: Vec<PortMapping>) -> PodNetwork {
        PodNetwork {
            sandbox_id: "sb1".into(),
            netns: self.root.path().join("netns"),
            pod_namespace: "team-a".into(),
            pod_name: "web-0".into(),
            pod_uid: "uid-1".into(),
            port_mappings,
            ifname: "eth0".into(),
        }
    }

    fn calls(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.root.path().join("calls.log")).unwrap_or_default();
        log.lines().map(|line| line.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect()
    }

    fn input(&self, plugin: &str, command: &str) -> Result<serde_json::Value> {
        let path = self.root.path().join(format!("{plugin}.{command}.json"));
        Ok(serde_json::from_slice(&std::fs::read(&path).with_context(|| path.display().to_string())?)?)
    }
}

#[tokio::test]
async fn add_chains_prev_results_and_del_runs_in_reverse_with_the_add_result() -> Result<()> {
    let plugins = ScriptPlugins::new(r#"[{"type":"rec-a"},{"type":"rec-b","capabilities":{"portMappings":true}}]"#)?;
    let client = plugins.client(Duration::from_secs(10));
    let mapping = PortMapping { protocol: Protocol::Tcp, container_port: 80, host_port: 8080, host_ip: String::new() };
    let status = client.setup(&plugins.pod(vec![mapping])).await?;
    assert_eq!(status.network, "script");
    assert_eq!(status.primary_ip(), Some("10.9.0.2".parse()?));

    let a = plugins.input("rec-a", "ADD")?;
    assert_eq!((a["name"].as_str(), a["cniVersion"].as_str()), (Some("script"), Some("1.0.0")));
    assert!(a.get("prevResult").is_none() && a.get("runtimeConfig").is_none(), "{a}");
    let b = plugins.input("rec-b", "ADD")?;
    assert_eq!(b["prevResult"]["ips"][0]["address"], "10.9.0.1/24");
    assert_eq!(b["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    let log = std::fs::read_to_string(plugins.root.path().join("calls.log"))?;
    let first = log.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "ADD rec-a eth0 IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;\
         K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1"
    );

    assert_eq!(client.recorded_sandboxes()?, ["sb1"]);
    client.check("sb1", &plugins.pod(Vec::new()).netns).await?;
    client.teardown("sb1", None).await?;
    assert_eq!(client.recorded_sandboxes()?, Vec::<String>::new());
    assert_eq!(plugins.calls(), ["ADD rec-a", "ADD rec-b", "CHECK rec-a", "CHECK rec-b", "DEL rec-b", "DEL rec-a"]);
    let del_a = plugins.input("rec-a", "DEL")?;
    assert_eq!(del_a["prevResult"]["ips"][0]["address"], "10.9.0.2/24", "DEL's prevResult is the ADD's result");
    Ok(())
}

#[tokio::test]
async fn portmap_runs_only_for_pods_with_host_ports() -> Result<()> {
    let plugins = ScriptPlugins::new(r#"[{"type":"rec-a"},{"type":"portmap","capabilities":{"portMappings":true}}]"#)?;
    let client = plugins.client(Duration::from_secs(10));
    client.setup(&plugins.pod(Vec::new())).await?;
    client.teardown("sb1", None).await?;
    assert_eq!(plugins.calls(), ["ADD rec-a", "DEL rec-a"]);

    let mapping = PortMapping { protocol: Protocol::Tcp, container_port: 80, host_port: 8080, host_ip: String::new() };
    client.setup(&plugins.pod(vec![mapping])).await?;
    client.teardown("sb1", None).await?;
    assert_eq!(plugins.calls()[2..], ["ADD rec-a", "ADD portmap", "DEL portmap", "DEL rec-a"]);
    Ok(())
}

#[tokio::test]
async fn a_failing_plugin_reports_its_error_object_and_the_chain_is_deleted() -> Result<()> {
    let plugins = ScriptPlugins::new(r#"[{"type":"rec-a"},{"type":"fail"}]"#)?;
    let client = plugins.client(Duration::from_secs(10));
    let err = client.setup(&plugins.pod(Vec::new())).await.err().context("ADD succeeded")?;
    let NetworkError::Plugin { plugin, command, code, msg, details } = &err else { bail!("not a plugin error: {err}") };
    assert_eq!((plugin.as_str(), *command, *code), ("fail", "ADD", 7));
    assert_eq!((msg.as_str(), details.as_str()), ("invalid network config", "no bridge named x"));
    assert_eq!(plugins.calls(), ["ADD rec-a", "ADD fail", "DEL fail", "DEL rec-a"]);
    let RuntimeError::Network(message) = RuntimeError::from(err) else { bail!("not a network error") };
    assert!(message.contains("code 7: invalid network config"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_plugin_that_hangs_is_killed_at_the_deadline() -> Result<()> {
    let plugins = ScriptPlugins::new(r#"[{"type":"slow"}]"#)?;
    let client = plugins.client(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = client.setup(&plugins.pod(Vec::new())).await.err().context("ADD succeeded")?;
    assert!(matches!(err, NetworkError::PluginTimeout { command: "ADD", .. }), "{err}");
    // ADD and the DEL that undoes it each get the deadline; neither waits for the 30 s sleep.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn del_without_any_record_or_configuration_succeeds() -> Result<()> {
    let plugins = ScriptPlugins::new(r#"[{"type":"rec-a"}]"#)?;
    std::fs::remove_dir_all(plugins.root.path().join("net.d"))?;
    plugins.client(Duration::from_secs(10)).teardown("never-added", None).await?;
    assert_eq!(plugins.calls(), Vec::<String>::new());
    Ok(())
}
