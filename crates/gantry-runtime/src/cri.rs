//! The runtime contract, shaped like the Kubernetes Container Runtime Interface.
//!
//! The names and the meaning of the fields follow CRI's `RuntimeService` and `ImageService` so that a node agent
//! written against these traits can later talk to containerd's CRI plugin through a thin adapter. Where CRI uses
//! a URL to a streaming server for exec and attach, the traits here hand back the streams themselves: the node
//! agent serves them over its own HTTPS API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Identity of a pod sandbox, as the node agent names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandboxMetadata {
    /// The pod's name.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's UID.
    pub uid: String,
    /// How many sandboxes this pod had before this one.
    pub attempt: u32,
}

/// Which namespace a pod's processes share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceMode {
    /// One namespace for the whole pod (the default for network and IPC).
    #[default]
    Pod,
    /// One namespace per container (the default for PID).
    Container,
    /// The node's own namespace (`hostNetwork`, `hostPID`, `hostIPC`).
    Node,
}

/// The namespaces a sandbox's containers join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceOptions {
    /// Network namespace: `Pod` or `Node`.
    pub network: NamespaceMode,
    /// PID namespace: `Container`, `Pod` (shareProcessNamespace) or `Node`.
    pub pid: NamespaceMode,
    /// IPC namespace: `Pod` or `Node`.
    pub ipc: NamespaceMode,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions { network: NamespaceMode::Pod, pid: NamespaceMode::Container, ipc: NamespaceMode::Pod }
    }
}

/// Transport protocol of a port mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lowercase name CNI plugins expect.
    pub fn as_cni_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A `hostPort`: traffic to the node's `host_port` goes to the pod's `container_port`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Protocol.
    pub protocol: Protocol,
    /// Port inside the pod.
    pub container_port: u16,
    /// Port on the node.
    pub host_port: u16,
    /// Node address to bind; empty means every address.
    pub host_ip: String,
}

/// Resource settings for a cgroup (a pod's or a container's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxResources {
    /// Relative CPU weight (cgroup v1 `cpu.shares`; 2..262144). `None` keeps the kernel default.
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; `None` for no limit.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds; `None` for the kernel default (100 ms).
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes; `None` for no limit.
    pub memory_limit_bytes: Option<i64>,
    /// Maximum number of processes; `None` for no limit.
    pub pids_limit: Option<i64>,
    /// OOM score adjustment for the container's processes. Negative values are refused: the node lacks the
    /// privilege to set them and a container must never be protected from the OOM killer at the node's expense.
    pub oom_score_adj: Option<i32>,
}

/// What the node agent asks for when it starts a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandboxConfig {
    /// Identity of the pod.
    pub metadata: PodSandboxMetadata,
    /// Hostname inside the pod (the pod's name unless `hostname` is set); ignored with host networking.
    pub hostname: String,
    /// Directory under which container logs are written (`/var/log/pods/<ns>_<name>_<uid>` on kubelet nodes).
    pub log_directory: PathBuf,
    /// hostPort mappings of all containers.
    pub port_mappings: Vec<PortMapping>,
    /// Labels (selectable), copied to the sandbox's status.
    pub labels: BTreeMap<String, String>,
    /// Annotations, copied to the sandbox's status.
    pub annotations: BTreeMap<String, String>,
    /// Namespace sharing (`hostNetwork`, `hostPID`, `hostIPC`, `shareProcessNamespace`).
    pub namespaces: NamespaceOptions,
    /// Name of the pod's cgroup, below the runtime's root cgroup; empty lets the runtime pick one from the UID.
    pub cgroup_parent: String,
    /// Pod-level limits (the sum of the containers' limits, as the kubelet computes them).
    pub resources: LinuxResources,
    /// Contents for the pod's `/etc/resolv.conf`; `None` keeps the node's.
    pub dns_config: Option<DnsConfig>,
}

/// A pod's resolver configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// Name servers.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// Options (`ndots:5`, ...).
    pub options: Vec<String>,
}

/// A sandbox's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// Namespaces and network are in place.
    Ready,
    /// Stopped: its containers are gone and its network is torn down.
    NotReady,
}

/// What the runtime reports about a sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandboxStatus {
    /// Sandbox ID.
    pub id: String,
    /// Identity of the pod.
    pub metadata: PodSandboxMetadata,
    /// Current state.
    pub state: SandboxState,
    /// Creation time, nanoseconds since the epoch.
    pub created_at: i64,
    /// The pod's primary IP; empty with host networking (the node's IP applies).
    pub ip: String,
    /// Further IPs (the other address family).
    pub additional_ips: Vec<String>,
    /// Namespace sharing, as asked.
    pub namespaces: NamespaceOptions,
    /// Labels, as given.
    pub labels: BTreeMap<String, String>,
    /// Annotations, as given.
    pub annotations: BTreeMap<String, String>,
}

/// A volume or file made visible inside a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Path inside the container.
    pub container_path: String,
    /// Path on the node (a directory or a file).
    pub host_path: PathBuf,
    /// Mount read-only.
    pub readonly: bool,
}

/// Capabilities to add to or drop from the default set (names with or without `CAP_`; `ALL` is accepted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Added.
    pub add: Vec<String>,
    /// Dropped.
    pub drop: Vec<String>,
}

/// A container's security settings, as the node agent resolves them from the pod and container security
/// contexts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityContext {
    /// Every capability, every device, no masked or read-only paths.
    pub privileged: bool,
    /// Changes to the default capability set.
    pub capabilities: Capabilities,
    /// UID to run as; `None` takes the image's user.
    pub run_as_user: Option<u32>,
    /// GID to run as; `None` takes the user's primary group.
    pub run_as_group: Option<u32>,
    /// User name to resolve in the image's `/etc/passwd` when `run_as_user` is unset.
    pub run_as_username: Option<String>,
    /// Further groups.
    pub supplemental_groups: Vec<u32>,
    /// Mount the root filesystem read-only.
    pub readonly_rootfs: bool,
    /// Set `no_new_privs` (`allowPrivilegeEscalation: false`).
    pub no_new_privs: bool,
}

/// What the node agent asks for when it creates a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Container name within the pod.
    pub name: String,
    /// How many times this container was created before in this sandbox (restart count).
    pub attempt: u32,
    /// Image reference as the pod names it; resolved through the image store.
    pub image: String,
    /// Replaces the image's entrypoint when non-empty (`command` in the pod spec).
    pub command: Vec<String>,
    /// Replaces the image's cmd when non-empty (`args` in the pod spec).
    pub args: Vec<String>,
    /// Working directory; empty takes the image's.
    pub working_dir: String,
    /// Environment, in order; added to the image's environment.
    pub envs: Vec<(String, String)>,
    /// Volume mounts.
    pub mounts: Vec<Mount>,
    /// Labels, copied to the status.
    pub labels: BTreeMap<String, String>,
    /// Annotations, copied to the status.
    pub annotations: BTreeMap<String, String>,
    /// Log file path relative to the sandbox's log directory (`<name>/<attempt>.log`).
    pub log_path: PathBuf,
    /// Keep stdin open for attach.
    pub stdin: bool,
    /// Close stdin after the first attach disconnects.
    pub stdin_once: bool,
    /// Allocate a terminal.
    pub tty: bool,
    /// Container cgroup limits.
    pub resources: LinuxResources,
    /// Security settings.
    pub security: SecurityContext,
}

/// A container's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process exited.
    Exited,
    /// The runtime cannot tell (its state on disk is unreadable).
    Unknown,
}

/// What the runtime reports about a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Container ID.
    pub id: String,
    /// Sandbox the container belongs to.
    pub sandbox_id: String,
    /// Name within the pod.
    pub name: String,
    /// Attempt, as given at creation.
    pub attempt: u32,
    /// State.
    pub state: ContainerState,
    /// Creation time, nanoseconds since the epoch.
    pub created_at: i64,
    /// Start time, nanoseconds since the epoch; 0 if never started.
    pub started_at: i64,
    /// Exit time, nanoseconds since the epoch; 0 if still running.
    pub finished_at: i64,
    /// Exit code (128 + signal when killed by a signal); meaningful once `Exited`.
    pub exit_code: i32,
    /// Why it exited: `Completed`, `Error`, `OOMKilled`, or `ContainerCannotRun`.
    pub reason: String,
    /// More detail on the reason, for humans.
    pub message: String,
    /// Image reference as given.
    pub image: String,
    /// Image ID (the digest of its config) the container runs.
    pub image_ref: String,
    /// Absolute path of the log file.
    pub log_path: PathBuf,
    /// PID of the container's init on the node, when running.
    pub pid: Option<u32>,
    /// Labels, as given.
    pub labels: BTreeMap<String, String>,
    /// Annotations, as given.
    pub annotations: BTreeMap<String, String>,
}

/// Filters for listing containers; every set field must match.
#[derive(Clone, Debug, Default)]
pub struct ContainerFilter {
    /// Only this container.
    pub id: Option<String>,
    /// Only containers of this sandbox.
    pub sandbox_id: Option<String>,
    /// Only containers in this state.
    pub state: Option<ContainerState>,
    /// Only containers whose labels include these.
    pub labels: BTreeMap<String, String>,
}

/// Resource usage of a container, read from its cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// Container ID.
    pub id: String,
    /// When the figures were read, nanoseconds since the epoch.
    pub timestamp: i64,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_core_nanoseconds: u64,
    /// Memory usage in bytes, page cache included.
    pub memory_usage_bytes: u64,
    /// Memory usage minus inactive file pages: what the kubelet evicts on.
    pub memory_working_set_bytes: u64,
}

/// Output of a command run to completion in a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecSyncResponse {
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
    /// Exit code (128 + signal when killed by a signal).
    pub exit_code: i32,
}

/// A terminal size, in characters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// Which streams a streaming exec or attach wants.
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    /// Send standard input.
    pub stdin: bool,
    /// Receive standard output.
    pub stdout: bool,
    /// Receive standard error (never with a terminal: it is merged into stdout).
    pub stderr: bool,
    /// Use a terminal.
    pub tty: bool,
}

/// A boxed byte stream from a container.
pub type ByteReader = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed byte stream to a container.
pub type ByteWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// The live streams of an exec or attach session. Dropping `stdin` closes the process's standard input.
pub struct StreamSession {
    /// Standard input, when asked for.
    pub stdin: Option<ByteWriter>,
    /// Standard output (with a terminal: the terminal's output), when asked for.
    pub stdout: Option<ByteReader>,
    /// Standard error, when asked for and without a terminal.
    pub stderr: Option<ByteReader>,
    /// Terminal resizes, when a terminal was asked for.
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// Resolves to the exit code once the process ends (for attach: once the container's process ends).
    pub exit: BoxFuture<'static, Result<i32, RuntimeError>>,
}

/// Errors of the runtime service, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No sandbox or container with this ID.
    #[error("{kind} {id} not found")]
    NotFound {
        /// `sandbox` or `container`.
        kind: &'static str,
        /// The ID asked for.
        id: String,
    },
    /// The request is malformed or impossible on this node.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The operation does not fit the object's state (start of a running container, ...).
    #[error("{id}: {message}")]
    WrongState {
        /// The object's ID.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The image is not in the store.
    #[error("image {0} is not present on this node")]
    ImageNotPresent(String),
    /// A node prerequisite is missing (a CNI plugin, a cgroup controller).
    #[error("{0}")]
    Prerequisite(String),
    /// Reading or writing the runtime's files failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A state file could not be decoded.
    #[error("{path}: corrupt state: {source}")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A shim or helper process failed.
    #[error("shim for {id}: {message}")]
    Shim {
        /// The container's ID.
        id: String,
        /// What failed.
        message: String,
    },
    /// The container could not be created or controlled.
    #[error("container {id}: {message}")]
    Container {
        /// The container's ID.
        id: String,
        /// What failed, as the container library reports it.
        message: String,
    },
    /// The pod network could not be set up or torn down.
    #[error("pod network: {0}")]
    Network(String),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// A system call failed.
    #[error("{context}: {source}")]
    Sys {
        /// What was being done.
        context: String,
        /// The error number.
        #[source]
        source: nix::Error,
    },
}

/// Sandboxes and containers: CRI's `RuntimeService`.
#[async_trait]
pub trait RuntimeService: Send + Sync {
    /// Creates and starts a sandbox: namespaces, pod cgroup, network. Returns its ID.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError>;
    /// Stops every container of the sandbox (grace period 0) and tears down its network. Idempotent.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    /// Removes a sandbox and everything it holds. Idempotent; removing an unknown sandbox succeeds.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    /// A sandbox's status.
    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, RuntimeError>;
    /// Every sandbox.
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>, RuntimeError>;

    /// Creates a container in a sandbox (not started). Returns its ID.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String, RuntimeError>;
    /// Starts a created container.
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Sends SIGTERM (or the image's stop signal), then SIGKILL after `timeout_seconds`; returns once the
    /// process has exited. Stopping an exited container succeeds.
    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<(), RuntimeError>;
    /// Removes a container, killing it if it still runs. Removing an unknown container succeeds.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Containers matching the filter.
    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>, RuntimeError>;
    /// A container's status.
    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError>;
    /// A container's resource usage.
    async fn container_stats(&self, id: &str) -> Result<ContainerStats, RuntimeError>;
    /// Asks the container's shim to reopen its log file (after the agent rotated it).
    async fn reopen_container_log(&self, id: &str) -> Result<(), RuntimeError>;

    /// Runs a command in a running container and waits for it (killing it after `timeout`, if given).
    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Option<std::time::Duration>,
    ) -> Result<ExecSyncResponse, RuntimeError>;
    /// Starts a command in a running container with live streams.
    async fn exec(&self, id: &str, cmd: &[String], options: &StreamOptions) -> Result<StreamSession, RuntimeError>;
    /// Attaches to the streams of a running container's main process.
    async fn attach(&self, id: &str, options: &StreamOptions) -> Result<StreamSession, RuntimeError>;
    /// Opens a TCP connection to `port` on the loopback address of the sandbox's network namespace (the node's
    /// own with host networking): what port forwarding relays. The default refuses, for runtimes without it.
    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<tokio::net::TcpStream, RuntimeError> {
        Err(RuntimeError::Invalid(format!("port forwarding to sandbox {sandbox_id} port {port} is not supported")))
    }
}

/// An image as the store knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The image ID: the digest of its config (`sha256:...`).
    pub id: String,
    /// Normalised references that name it (`docker.io/library/busybox:latest`).
    pub repo_tags: Vec<String>,
    /// Repository digests (`docker.io/library/busybox@sha256:...`).
    pub repo_digests: Vec<String>,
    /// Unpacked size in bytes.
    pub size: u64,
    /// How to run it, from its config.
    pub config: ImageConfig,
}

/// The parts of an image's config that decide how its containers run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Entrypoint.
    pub entrypoint: Vec<String>,
    /// Default arguments.
    pub cmd: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// User (`name`, `uid`, `uid:gid`, `name:group`).
    pub user: String,
    /// Signal to stop containers with (`SIGTERM` when empty).
    pub stop_signal: String,
}

/// Registry credentials for one pull.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials.
    #[default]
    Anonymous,
    /// User name and password (or token).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
}

/// Progress of a pull, reported as layers come in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullProgress {
    /// Layer digest.
    pub layer: String,
    /// Bytes fetched so far for this layer.
    pub fetched: u64,
    /// Total size of this layer, when known.
    pub total: Option<u64>,
    /// The layer is already in the store and is not fetched.
    pub cached: bool,
}

/// Errors of the image service.
pub use crate::image::ImageError;

/// Images: CRI's `ImageService`.
#[async_trait]
pub trait ImageService: Send + Sync {
    /// Every image in the store.
    async fn list_images(&self) -> Result<Vec<Image>, ImageError>;
    /// The image a reference (or an ID) names, if present.
    async fn image_status(&self, reference: &str) -> Result<Option<Image>, ImageError>;
    /// Pulls an image and returns its ID.
    async fn pull_image(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        progress: Option<mpsc::UnboundedSender<PullProgress>>,
    ) -> Result<String, ImageError>;
    /// Removes an image's references (and its content once nothing refers to it).
    async fn remove_image(&self, reference: &str) -> Result<(), ImageError>;
    /// Bytes and inodes used by the image store.
    async fn image_fs_usage(&self) -> Result<FilesystemUsage, ImageError>;
}

/// Space used by a store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilesystemUsage {
    /// Directory measured.
    pub mountpoint: PathBuf,
    /// Bytes used.
    pub used_bytes: u64,
    /// Inodes used.
    pub inodes_used: u64,
}
