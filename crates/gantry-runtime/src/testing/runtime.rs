//! A container runtime on a temporary root for tests (root and `busybox-static` needed): a busybox image
//! imported, optional pod network of the test's own, and cleanup of every container, mount, cgroup and bridge
//! when dropped, even after a failed assertion. Panics on setup failures: it is test scaffolding.

#![allow(clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cri::{ContainerConfig, NamespaceMode, NamespaceOptions, PodSandboxConfig, PodSandboxMetadata};
use crate::image::ImageStore;
use crate::native::{NativeConfig, NativeRuntime, ShimCommand};
use crate::network::cni::{CniClient, CniOptions, write_default_config};

/// Whether the pod network tests can run here: they also need the CNI plugins.
pub fn network_skip_reason() -> Option<&'static str> {
    skip_reason().or_else(|| {
        (!Path::new("/usr/lib/cni/bridge").exists())
            .then_some("needs the CNI plugins in /usr/lib/cni (Debian package containernetworking-plugins)")
    })
}

/// Whether the tests can run here: they need root and busybox.
pub fn skip_reason() -> Option<&'static str> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root");
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("needs /bin/busybox (Debian package busybox-static)");
    }
    None
}

/// The image every test container runs: busybox with `app` (1000:1000) in its `/etc/passwd`.
pub const BUSYBOX_IMAGE: &str = "test.gantry.local/busybox:1";

/// An image store holding the busybox image, imported from an OCI archive as a node would.
fn image_store(root: &Path) -> Arc<ImageStore> {
    let store = ImageStore::open(root.join("images")).expect("image store");
    let archive = root.join("busybox.tar");
    super::write_busybox_archive(&archive, BUSYBOX_IMAGE).expect("busybox archive");
    store.import_archive(&archive).expect("import");
    Arc::new(store)
}

/// A runtime on a temporary root; everything it created is removed when dropped.
pub struct TestRuntime {
    pub runtime: NativeRuntime,
    pub root: tempfile::TempDir,
    pub cgroup_root: String,
    /// The runtime's image store.
    pub images: Arc<ImageStore>,
    /// The bridge and the CNI client, for runtimes with a pod network.
    network: Option<(String, CniClient)>,
    shim: ShimCommand,
}

/// A pod network of its own for one test: a bridge and a /24 no other test uses.
pub struct TestNetwork {
    pub bridge: String,
    pub subnet_prefix: String,
}

impl TestNetwork {
    /// The network for test number `index` (unique within a test binary).
    pub fn new(index: u8) -> TestNetwork {
        let pid = std::process::id();
        TestNetwork {
            bridge: format!("gtp{index}-{:x}", pid & 0xff_ffff),
            subnet_prefix: format!("10.{}.{}", 200 + u32::from(index), pid % 250),
        }
    }

    /// The pod CIDR.
    pub fn cidr(&self) -> String {
        format!("{}.0/24", self.subnet_prefix)
    }

    /// The bridge's own address on the host.
    pub fn gateway(&self) -> String {
        format!("{}.1", self.subnet_prefix)
    }
}

impl TestRuntime {
    /// A runtime without a pod network (host-network pods only), whose containers are owned by `shim`.
    pub fn new(shim: ShimCommand) -> TestRuntime {
        Self::build(shim, None)
    }

    /// A runtime, or `None` (saying why) where the tests cannot run.
    pub fn or_skip(shim: ShimCommand) -> Option<TestRuntime> {
        match skip_reason() {
            Some(reason) => {
                eprintln!("skipped: {reason}");
                None
            }
            None => Some(Self::new(shim)),
        }
    }

    /// A runtime with a pod network, or `None` (saying why) where the network tests cannot run.
    pub fn with_network_or_skip(shim: ShimCommand, network: &TestNetwork) -> Option<TestRuntime> {
        match network_skip_reason() {
            Some(reason) => {
                eprintln!("skipped: {reason}");
                None
            }
            None => Some(Self::with_network(shim, network)),
        }
    }

    /// Where the test's pods write their logs.
    pub fn logs(&self) -> PathBuf {
        self.root.path().join("logs")
    }

    /// Runs a host-network sandbox for a pod named `name`; returns its config and ID.
    pub async fn host_pod(&self, name: &str) -> (PodSandboxConfig, String) {
        use crate::cri::RuntimeService;
        let config = host_sandbox(name, &self.logs());
        let id = self.runtime.run_pod_sandbox(&config).await.expect("sandbox");
        (config, id)
    }

    /// A runtime whose pods get addresses on `network`.
    pub fn with_network(shim: ShimCommand, network: &TestNetwork) -> TestRuntime {
        Self::build(shim, Some(network))
    }

    fn build(shim: ShimCommand, network: Option<&TestNetwork>) -> TestRuntime {
        let root = tempfile::tempdir().expect("tempdir");
        let cgroup_root = format!("gantry-test-{}", uuid_like());
        let network = network.map(|n| {
            let conf_dir = root.path().join("cni/net.d");
            write_default_config(&conf_dir, &root.path().join("cni/networks"), &n.bridge, &n.cidr())
                .expect("CNI config");
            (n.bridge.clone(), CniClient::new(CniOptions::new(conf_dir, root.path().join("cni/cache"))))
        });
        let images = image_store(root.path());
        let runtime =
            Self::open(&shim, root.path(), &cgroup_root, images.clone(), network.as_ref().map(|(_, c)| c.clone()));
        TestRuntime { runtime, root, cgroup_root, images, network, shim }
    }

    /// A second runtime on the same root, as after a restart of the node agent.
    pub fn reopen(&self) -> NativeRuntime {
        Self::open(
            &self.shim,
            self.root.path(),
            &self.cgroup_root,
            self.images.clone(),
            self.network.as_ref().map(|(_, c)| c.clone()),
        )
    }

    fn open(
        shim: &ShimCommand,
        root: &Path,
        cgroup_root: &str,
        images: Arc<ImageStore>,
        cni: Option<CniClient>,
    ) -> NativeRuntime {
        let mut config = NativeConfig::new(root.join("run"), shim.clone());
        config.cgroup_root = cgroup_root.to_string();
        NativeRuntime::new(config, images, cni).expect("runtime")
    }
}

/// Mount points under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff)
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        // First the runtime's own teardown of everything left (a test that failed part-way).
        super::reset_blocking(&self.runtime);
        // Then, best effort and synchronous: kill what runs, unmount, remove cgroups.
        let containers = self.root.path().join("run/containers");
        if let Ok(entries) = std::fs::read_dir(&containers) {
            for entry in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(entry.path().join("container.json"))
                    && let Ok(record) = serde_json::from_str::<serde_json::Value>(&text)
                {
                    for key in ["pid", "shim_pid"] {
                        if let Some(pid) = record[key].as_i64().filter(|p| *p > 0) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid as i32),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                }
                let _ = nix::mount::umount2(&entry.path().join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for mount in mounts_under(self.root.path()) {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
        if let Some((bridge, _)) = &self.network {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", bridge])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for controller in [
            "cpu",
            "cpuacct",
            "memory",
            "pids",
            "cpuset",
            "devices",
            "freezer",
            "blkio",
            "net_cls",
            "perf_event",
            "hugetlb",
            "net_prio",
            "rdma",
            "misc",
            "systemd",
            "unified",
            "",
        ] {
            let dir = Path::new("/sys/fs/cgroup").join(controller).join(&self.cgroup_root);
            while dir.exists() && Instant::now() < deadline {
                if remove_cgroup_tree(&dir) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) -> bool {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    std::fs::remove_dir(dir).is_ok() || !dir.exists()
}

/// Patience for polls, from `GANTRY_TEST_PATIENCE_SECS` (default 30 s).
pub fn patience() -> Duration {
    Duration::from_secs(std::env::var("GANTRY_TEST_PATIENCE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30))
}

/// A sandbox config with a network namespace of its own, for a pod named `name`.
pub fn pod_sandbox(name: &str, log_dir: &Path) -> PodSandboxConfig {
    PodSandboxConfig { namespaces: NamespaceOptions::default(), ..host_sandbox(name, log_dir) }
}

/// A host-network sandbox config for a pod named `name`.
pub fn host_sandbox(name: &str, log_dir: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: name.to_string(),
            namespace: "default".to_string(),
            uid: format!("uid-{name}"),
            attempt: 0,
        },
        log_directory: log_dir.to_path_buf(),
        namespaces: NamespaceOptions {
            network: NamespaceMode::Node,
            pid: NamespaceMode::Container,
            ipc: NamespaceMode::Node,
        },
        ..Default::default()
    }
}

/// A busybox container running `sh -c script`.
pub fn shell(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.to_string(),
        image: BUSYBOX_IMAGE.to_string(),
        command: vec!["sh".to_string(), "-c".to_string(), script.to_string()],
        log_path: PathBuf::from(format!("{name}/0.log")),
        ..Default::default()
    }
}
