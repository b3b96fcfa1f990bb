//! Shared setup for the runtime's integration tests: a runtime on a temporary root, a busybox image, and
//! cleanup that runs even when a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gantry_runtime::cri::{
    ContainerConfig, Image, ImageConfig, NamespaceMode, NamespaceOptions, PodSandboxConfig, PodSandboxMetadata,
    RuntimeError,
};
use gantry_runtime::native::{ImageResolver, NativeConfig, NativeRuntime, ShimCommand};

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

/// A busybox root filesystem as one layer, built once per test binary.
fn busybox_layer() -> &'static PathBuf {
    static LAYER: OnceLock<PathBuf> = OnceLock::new();
    LAYER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gantry-test-busybox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
            std::fs::create_dir_all(dir.join(sub)).expect("layer dir");
        }
        std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy busybox");
        let list = std::process::Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
            }
        }
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n")
            .expect("passwd");
        std::fs::write(dir.join("etc/group"), "root:x:0:\napp:x:1000:\n").expect("group");
        dir
    })
}

/// Resolves every reference to the busybox layer.
pub struct BusyboxImages;

impl ImageResolver for BusyboxImages {
    fn resolve_layers(&self, reference: &str) -> Result<(Image, Vec<PathBuf>), RuntimeError> {
        let image = Image {
            id: "sha256:busybox".to_string(),
            repo_tags: vec![reference.to_string()],
            config: ImageConfig {
                cmd: vec!["sh".to_string()],
                env: vec!["PATH=/bin".to_string()],
                ..Default::default()
            },
            ..Default::default()
        };
        Ok((image, vec![busybox_layer().clone()]))
    }
}

/// A runtime on a temporary root; everything it created is removed when dropped.
pub struct TestRuntime {
    pub runtime: NativeRuntime,
    pub root: tempfile::TempDir,
    pub cgroup_root: String,
}

pub fn shim() -> ShimCommand {
    ShimCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_gantry-shim")), args: vec![] }
}

impl TestRuntime {
    pub fn new() -> TestRuntime {
        let root = tempfile::tempdir().expect("tempdir");
        let cgroup_root = format!("gantry-test-{}", uuid_like());
        let runtime = Self::open(root.path(), &cgroup_root);
        TestRuntime { runtime, root, cgroup_root }
    }

    /// A second runtime on the same root, as after a restart of the node agent.
    pub fn reopen(&self) -> NativeRuntime {
        Self::open(self.root.path(), &self.cgroup_root)
    }

    fn open(root: &Path, cgroup_root: &str) -> NativeRuntime {
        let mut config = NativeConfig::new(root.join("run"), shim());
        config.cgroup_root = cgroup_root.to_string();
        NativeRuntime::new(config, Arc::new(BusyboxImages)).expect("runtime")
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff)
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        // Best effort, synchronous: kill what runs, unmount, remove cgroups.
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
        image: "busybox".to_string(),
        command: vec!["sh".to_string(), "-c".to_string(), script.to_string()],
        log_path: PathBuf::from(format!("{name}/0.log")),
        ..Default::default()
    }
}
