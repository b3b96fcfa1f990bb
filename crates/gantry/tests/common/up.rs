//! `gantry up` as a user runs it: the real binary on free ports, its data in a temporary directory whose image
//! store was filled from archives before the start (the node has no registry to pull from), and a guard that
//! removes what it leaves on the node.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gantry_runtime::testing::runtime::patience;

/// A free TCP port on loopback (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Removes what `gantry up` leaves on the node on purpose (running containers) or as node-wide state (the pod
/// network's bridge and masquerade rule, the service proxy's nftables table, the QoS cgroups), even when the test fails. Drop it after the process
/// has stopped, or the agent would start the pods again.
pub struct NodeCleanup {
    data_dir: PathBuf,
    pod_cidr: String,
    bridge_existed: bool,
}

impl NodeCleanup {
    /// A guard for a node whose data is in `data_dir` and whose pods get addresses from `pod_cidr`; made before
    /// `gantry up` starts, so that it knows whether the bridge was there before.
    pub fn new(data_dir: &Path, pod_cidr: &str) -> NodeCleanup {
        NodeCleanup {
            data_dir: data_dir.to_path_buf(),
            pod_cidr: pod_cidr.to_string(),
            bridge_existed: Path::new("/sys/class/net").join(gantry_agent::agent::BRIDGE).exists(),
        }
    }
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
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", "gantry"])
            .stderr(std::process::Stdio::null())
            .status();
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

/// Imports the busybox test image into the node's image store under each of `references` (one image, one
/// digest, several names), as `gantry image import` would before `gantry up`.
pub fn import_busybox(data_dir: &Path, references: &[&str]) {
    let store = gantry_runtime::image::ImageStore::open(data_dir.join("images")).expect("image store");
    for (i, reference) in references.iter().enumerate() {
        let archive = data_dir.join(format!("busybox-{i}.tar"));
        gantry_runtime::testing::write_busybox_archive(&archive, reference).expect("archive");
        store.import_archive(&archive).expect("import");
        let _ = std::fs::remove_file(&archive);
    }
}

/// Starts `gantry up` on free ports with its data in `data_dir`, as node `node` with pods in `pod_cidr`, and
/// waits (for at most the patience) for the line saying it is up, which it returns. Blocking.
pub fn start_up(data_dir: &Path, node: &str, pod_cidr: &str) -> (gantry_e2e::Background, String) {
    let (api_port, node_port) = (free_port(), free_port());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.arg("up").arg("--data-dir").arg(data_dir);
    command.args(["--secure-port", &api_port.to_string(), "--bind-address", "127.0.0.1"]);
    command.args(["--node-name", node, "--node-api-port", &node_port.to_string(), "--pod-cidr", pod_cidr]);
    let mut up = gantry_e2e::Background::spawn(command);
    let line = up.wait_for_line(|l| l.starts_with("Gantry is up"));
    (up, line)
}

/// A client from the kubeconfig `gantry up` wrote.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

/// An HTTP/1.0 GET of `/` from `addr`; the whole answer, or why there is none.
pub fn http_get(addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout * 2)).map_err(|e| e.to_string())?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    Ok(answer)
}

/// Times the steps of a long end-to-end test: each step's time (and when it ended) goes to stderr, labelled.
pub struct Steps {
    label: &'static str,
    started: Instant,
    current: Option<(String, Instant)>,
}

impl Steps {
    /// No step yet; times count from now.
    pub fn new(label: &'static str) -> Steps {
        Steps { label, started: Instant::now(), current: None }
    }

    /// Ends the current step and starts `name`.
    pub fn step(&mut self, name: &str) {
        self.end();
        self.current = Some((name.to_string(), Instant::now()));
    }

    fn end(&mut self) {
        if let Some((name, since)) = self.current.take() {
            eprintln!(
                "{}: {name:<48} {:>6.2} s (at {:>6.2} s)",
                self.label,
                since.elapsed().as_secs_f64(),
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        self.end();
    }
}

/// Polls `check` on fresh state until it says `Ok`, for at most the patience.
#[track_caller]
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + patience();
    loop {
        match check() {
            Ok(value) => return value,
            Err(why) if Instant::now() > deadline => panic!("{what}: not so after {:?}: {why}", patience()),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// Whether a pod (as JSON) is Running and Ready.
pub fn is_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// An object's name (as JSON).
pub fn name(object: &serde_json::Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or_default().to_string()
}
