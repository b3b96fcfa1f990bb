//! The native backend: OCI containers created with libcontainer, each owned by a shim process.
//!
//! The runtime itself holds no state in memory that matters: every sandbox and container is a directory with
//! JSON records (see [`state`]), and every status is derived from those files and from whether the shim and
//! the container's init still live. A runtime started after a crash or an upgrade therefore re-adopts every
//! container simply by reading its root.

pub mod cgroups;
pub mod logs;
pub mod shim;
pub mod spec;
pub mod state;

mod container;
mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cri::{Image, RuntimeError};
use crate::network::cni::CniClient;

pub use container::ContainerDirs;

/// How to start a shim: the program and the arguments that precede `run <dir>` or `exec <request>`.
#[derive(Clone, Debug)]
pub struct ShimCommand {
    /// The program (the `gantry` binary, or the `gantry-shim` companion binary).
    pub program: PathBuf,
    /// Arguments before the shim's own (`["shim"]` for `gantry shim run <dir>`).
    pub args: Vec<String>,
}

/// Settings of the native runtime.
#[derive(Clone, Debug)]
pub struct NativeConfig {
    /// Where sandboxes and containers keep their state (`<data-dir>/run` for the node agent).
    pub root: PathBuf,
    /// How to start shims.
    pub shim: ShimCommand,
    /// Parent of every pod's cgroup, relative to the cgroup roots.
    pub cgroup_root: String,
    /// Rotate a container's log beyond this size.
    pub log_max_bytes: u64,
    /// Log files kept per container, the live one included.
    pub log_max_files: u32,
}

impl NativeConfig {
    /// Defaults for a runtime rooted at `root`: cgroups under `gantry`, logs rotated at 10 MiB, 5 files (the
    /// kubelet's containerLogMaxSize and containerLogMaxFiles).
    pub fn new(root: impl Into<PathBuf>, shim: ShimCommand) -> NativeConfig {
        NativeConfig {
            root: root.into(),
            shim,
            cgroup_root: "gantry".to_string(),
            log_max_bytes: 10 << 20,
            log_max_files: 5,
        }
    }
}

/// Where the runtime finds a container's image: its config and its unpacked layers, bottom layer first.
pub trait ImageResolver: Send + Sync {
    /// Resolves a reference (or an image ID) to an image present on the node.
    fn resolve_layers(&self, reference: &str) -> Result<(Image, Vec<PathBuf>), RuntimeError>;
}

impl ImageResolver for crate::image::ImageStore {
    fn resolve_layers(&self, reference: &str) -> Result<(Image, Vec<PathBuf>), RuntimeError> {
        let image = self.resolve(reference)?.ok_or_else(|| RuntimeError::ImageNotPresent(reference.to_string()))?;
        let layers = self.rootfs_layers(&image.id)?;
        Ok((image, layers))
    }
}

/// The native runtime. Cheap to clone.
#[derive(Clone)]
pub struct NativeRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: NativeConfig,
    images: Arc<dyn ImageResolver>,
    cgroups: cgroups::Cgroups,
    cni: Option<CniClient>,
}

impl NativeRuntime {
    /// A runtime rooted at `config.root`, creating its directories. `cni` wires pod networks; without it only
    /// `hostNetwork` sandboxes can run, and others fail with an error that names what is missing.
    pub fn new(
        config: NativeConfig,
        images: Arc<dyn ImageResolver>,
        cni: Option<CniClient>,
    ) -> Result<NativeRuntime, RuntimeError> {
        for dir in [config.root.join("containers"), config.root.join("sandboxes")] {
            std::fs::create_dir_all(&dir).map_err(|source| RuntimeError::Io { path: dir.clone(), source })?;
        }
        let cgroups = cgroups::Cgroups::detect();
        Ok(NativeRuntime { inner: Arc::new(Inner { config, images, cgroups, cni }) })
    }

    /// The runtime's settings.
    pub fn config(&self) -> &NativeConfig {
        &self.inner.config
    }

    /// The node's cgroups.
    pub fn cgroups(&self) -> &cgroups::Cgroups {
        &self.inner.cgroups
    }

    fn containers_dir(&self) -> PathBuf {
        self.inner.config.root.join("containers")
    }

    fn sandboxes_dir(&self) -> PathBuf {
        self.inner.config.root.join("sandboxes")
    }
}

/// A new 64-hex-digit ID, the form CRI runtimes use.
fn new_id() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io { path: path.to_path_buf(), source }
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| RuntimeError::Shim { id: String::new(), message: format!("blocking task failed: {err}") })?
}

mod stream;

#[async_trait::async_trait]
impl crate::cri::RuntimeService for NativeRuntime {
    async fn run_pod_sandbox(&self, config: &crate::cri::PodSandboxConfig) -> Result<String, RuntimeError> {
        self.run_pod_sandbox_impl(config).await
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.stop_pod_sandbox_impl(id).await
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.remove_pod_sandbox_impl(id).await
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<crate::cri::PodSandboxStatus, RuntimeError> {
        self.pod_sandbox_status_impl(id).await
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<crate::cri::PodSandboxStatus>, RuntimeError> {
        self.list_pod_sandboxes_impl().await
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &crate::cri::ContainerConfig,
        sandbox_config: &crate::cri::PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let view = self.sandbox_for_container(sandbox_id)?;
        self.create_container_impl(&view.record, view.joined, view.etc_files, config, sandbox_config).await
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.start_container_impl(id).await
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<(), RuntimeError> {
        self.stop_container_impl(id, timeout_seconds).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.remove_container_impl(id).await
    }

    async fn list_containers(
        &self,
        filter: &crate::cri::ContainerFilter,
    ) -> Result<Vec<crate::cri::ContainerStatus>, RuntimeError> {
        self.list_containers_impl(filter).await
    }

    async fn container_status(&self, id: &str) -> Result<crate::cri::ContainerStatus, RuntimeError> {
        self.container_status_impl(id).await
    }

    async fn container_stats(&self, id: &str) -> Result<crate::cri::ContainerStats, RuntimeError> {
        self.container_stats_impl(id).await
    }

    async fn reopen_container_log(&self, id: &str) -> Result<(), RuntimeError> {
        self.reopen_log_impl(id).await
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Option<std::time::Duration>,
    ) -> Result<crate::cri::ExecSyncResponse, RuntimeError> {
        self.exec_sync_impl(id, cmd, timeout).await
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        options: &crate::cri::StreamOptions,
    ) -> Result<crate::cri::StreamSession, RuntimeError> {
        self.exec_impl(id, cmd, options).await
    }

    async fn attach(
        &self,
        id: &str,
        options: &crate::cri::StreamOptions,
    ) -> Result<crate::cri::StreamSession, RuntimeError> {
        self.attach_impl(id, options).await
    }

    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<tokio::net::TcpStream, RuntimeError> {
        self.port_forward_impl(sandbox_id, port).await
    }
}
