//! Resetting a node (`gantry reset`): everything Gantry left on this machine for a data directory goes, in the
//! order that lets each step succeed: containers and sandboxes (with their shims, processes, overlay mounts,
//! pinned namespaces and CNI DELs, so that host-local releases the addresses), leftover processes, every mount
//! under the data directory (deepest first), the pod and QoS cgroups under the agent's cgroup root in every
//! hierarchy, the pod network (masquerade rules, the bridge, host-gateway routes), the service proxy's nftables
//! table, then the data directory.
//!
//! Also the data directory's lock ([`DataDirLock`]): `gantry up`, `gantry agent` and `gantry server` hold it for
//! their whole life, so that two of them never share a data directory and a reset never pulls the state from
//! under a running one.
//!
//! A reset keeps going past failures and reports each one; running it again after the cause is fixed finishes
//! the work. It only kills processes it can tie to the data directory (its shims, processes in its pods'
//! cgroups): cgroups of other pods under the same root are removed only when empty, and the bridge only when no
//! interface is attached to it any more. A data directory that does not exist (any more) is a reset with nothing
//! to do: without it nothing on the node can be told apart from what another Gantry uses.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_runtime::RuntimeService as _;
use gantry_runtime::cri::{ContainerFilter, Image, RuntimeError};
use gantry_runtime::native::state::SandboxRecord;
use gantry_runtime::native::{ImageResolver, NativeConfig, NativeRuntime, ShimCommand};
use gantry_runtime::network::NetworkError;
use gantry_runtime::network::cni::{CniClient, CniOptions, DEFAULT_PLUGIN_DIRS};

/// The lock file in the data directory.
pub const LOCK_FILE: &str = "gantry.lock";

/// How long a reset waits for killed processes to leave a cgroup it removes.
const CGROUP_PATIENCE: Duration = Duration::from_secs(10);

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("{} is in use by a running Gantry{}: stop it first", data_dir.display(), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Held {
        /// The data directory.
        data_dir: PathBuf,
        /// The holder's PID, as it wrote it in the lock file.
        pid: Option<u32>,
    },
    /// The lock file could not be opened, locked or written.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive `flock` on `DATA/gantry.lock`, held until dropped (or the process ends, however it ends). The
/// holder's PID is written in the file for the message others get. The file is opened close-on-exec, so the
/// containers' shims never inherit the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (which must exist) without waiting.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held { data_dir: data_dir.to_path_buf(), pid: text.trim().parse().ok() });
            }
            Err(errno) => return Err(io(errno.into())),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// What to reset.
#[derive(Clone, Debug)]
pub struct ResetOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The agent's cgroup root (under each hierarchy's root).
    pub cgroup_root: String,
    /// The pod network's bridge.
    pub bridge: String,
    /// The service proxy's nftables table (`ip` family); `None` leaves nftables alone.
    pub proxy_table: Option<String>,
}

impl ResetOptions {
    /// The agent's defaults for a data directory: cgroup root `gantry`, bridge [`crate::agent::BRIDGE`].
    pub fn new(data_dir: impl Into<PathBuf>) -> ResetOptions {
        ResetOptions {
            data_dir: data_dir.into(),
            cgroup_root: "gantry".to_string(),
            bridge: crate::agent::BRIDGE.to_string(),
            proxy_table: Some(gantry_proxy::DEFAULT_TABLE.to_string()),
        }
    }
}

/// Something a reset could not remove; the rest was removed all the same.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// A Gantry process runs on the data directory: nothing was touched.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The directory holds none of Gantry's files (or is `/`): nothing was touched.
    #[error("{} does not look like a Gantry data directory (none of {}): not reset", path.display(), DATA_DIR_MARKERS.join(", "))]
    NotADataDir {
        /// The directory.
        path: PathBuf,
    },
    /// The cgroup root is not a plain relative path.
    #[error("cgroup root {0:?}: expected a relative path without `..`")]
    InvalidCgroupRoot(String),
    /// The container runtime failed on a sandbox or a container.
    #[error("{what}: {source}")]
    Runtime {
        /// What was being removed.
        what: String,
        /// The runtime's error.
        #[source]
        source: Box<RuntimeError>,
    },
    /// Releasing a pod's network or the masquerade rule failed.
    #[error("{what}: {source}")]
    Network {
        /// What was being released.
        what: String,
        /// The error.
        #[source]
        source: Box<NetworkError>,
    },
    /// A file or directory could not be read or removed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A mount could not be detached, even lazily.
    #[error("unmounting {path}: {source}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// A cgroup of one of the data directory's pods still holds processes.
    #[error("cgroup {path} still holds processes after SIGKILL")]
    CgroupBusy {
        /// The cgroup directory.
        path: PathBuf,
    },
    /// The host-gateway routes (or their masquerading exemptions) could not be removed.
    #[error("routes to other nodes' pod CIDRs: {0}")]
    Routes(#[source] crate::routes::RouteError),
    /// The service proxy's nftables table could not be deleted.
    #[error("service proxy table {table}: {source}")]
    ServiceRules {
        /// The table.
        table: String,
        /// nft's error.
        #[source]
        source: gantry_proxy::NftError,
    },
    /// A tool (`ip`) failed or is missing.
    #[error("{command}: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output, or why it could not run.
        message: String,
    },
    /// Mounts are left under the data directory, so it was not deleted (deleting would reach into them).
    #[error("{} was not deleted: {} mount(s) remain under it, first {}", data_dir.display(), mounts.len(), mounts.first().map(|m| m.display().to_string()).unwrap_or_default())]
    MountsRemain {
        /// The data directory.
        data_dir: PathBuf,
        /// The mounts left.
        mounts: Vec<PathBuf>,
    },
    /// A directory under the data directory is on another filesystem that mountinfo did not show.
    #[error("{path} is on another filesystem than the data directory: not deleted")]
    CrossesFilesystem {
        /// The directory.
        path: PathBuf,
    },
}

/// What happened to the pod network's bridge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BridgeOutcome {
    /// There was no bridge.
    #[default]
    Absent,
    /// The bridge was deleted.
    Removed,
    /// Interfaces of pods that are not this data directory's are still attached: the bridge was kept.
    KeptInUse(usize),
}

/// What a reset removed, and what it could not.
#[derive(Debug, Default)]
pub struct ResetReport {
    /// Containers removed.
    pub containers: usize,
    /// Sandboxes removed.
    pub sandboxes: usize,
    /// Pod networks released (CNI DEL).
    pub networks: usize,
    /// Processes killed outside the runtime's own teardown (shims and container processes it no longer knew).
    pub processes_killed: usize,
    /// Mounts detached under the data directory.
    pub mounts: usize,
    /// Cgroups removed (a cgroup present in several v1 hierarchies counts once).
    pub cgroups: usize,
    /// Cgroups kept because processes of another data directory's pods are in them.
    pub cgroups_in_use: usize,
    /// Masquerade rules removed.
    pub masquerade_rules: usize,
    /// Routes with protocol [`crate::routes::ROUTE_PROTOCOL`] removed (the host-gateway routes to other nodes'
    /// pod CIDRs, with their masquerading exemptions).
    pub routes: usize,
    /// Whether the service proxy's nftables table was deleted.
    pub service_rules: bool,
    /// The bridge.
    pub bridge: BridgeOutcome,
    /// Whether the data directory was deleted.
    pub data_dir_removed: bool,
    /// What could not be removed.
    pub errors: Vec<ResetError>,
}

impl ResetReport {
    /// Whether the reset found nothing to do.
    pub fn nothing_done(&self) -> bool {
        self.containers == 0
            && self.sandboxes == 0
            && self.networks == 0
            && self.processes_killed == 0
            && self.mounts == 0
            && self.cgroups == 0
            && self.masquerade_rules == 0
            && self.routes == 0
            && !self.service_rules
            && self.bridge != BridgeOutcome::Removed
            && !self.data_dir_removed
            && self.errors.is_empty()
    }

    /// One line per kind of thing removed or kept (the errors not included).
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let counts = [
            (self.containers, "removed {} container(s)"),
            (self.sandboxes, "removed {} pod sandbox(es)"),
            (self.networks, "released {} pod network(s) (CNI DEL)"),
            (self.processes_killed, "killed {} leftover process(es)"),
            (self.mounts, "unmounted {} mount(s) under the data directory"),
            (self.cgroups, "removed {} cgroup(s)"),
            (self.masquerade_rules, "removed {} masquerade rule(s)"),
            (self.routes, "removed {} route(s) to other nodes' pod CIDRs"),
        ];
        for (count, text) in counts {
            if count > 0 {
                lines.push(text.replace("{}", &count.to_string()));
            }
        }
        if self.service_rules {
            lines.push("removed the service proxy's nftables table".to_string());
        }
        match self.bridge {
            BridgeOutcome::Removed => lines.push("removed the pod network's bridge".to_string()),
            BridgeOutcome::KeptInUse(n) => {
                lines.push(format!("kept the pod network's bridge: {n} interface(s) of other pods still attached"))
            }
            BridgeOutcome::Absent => {}
        }
        if self.cgroups_in_use > 0 {
            lines.push(format!("kept {} cgroup(s) holding processes of other pods", self.cgroups_in_use));
        }
        if self.data_dir_removed {
            lines.push("removed the data directory".to_string());
        }
        lines
    }
}

/// A resolver for a runtime that only tears down: a reset never creates a container, and must not depend on
/// the image store being readable.
struct NoImages;

impl ImageResolver for NoImages {
    fn resolve_layers(&self, reference: &str) -> Result<(Image, Vec<PathBuf>), RuntimeError> {
        Err(RuntimeError::ImageNotPresent(reference.to_string()))
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

/// Resets the node for `options.data_dir`; see the module's documentation. Fails only when a Gantry runs on the
/// data directory (nothing is touched then) or the options are invalid; everything else that fails is in the
/// report's `errors`.
pub async fn reset(options: &ResetOptions) -> Result<ResetReport, ResetError> {
    let cgroup_root = options.cgroup_root.trim_matches('/').to_string();
    if cgroup_root.is_empty() || Path::new(&cgroup_root).components().any(|c| c.as_os_str() == "..") {
        return Err(ResetError::InvalidCgroupRoot(options.cgroup_root.clone()));
    }
    let data_dir = options.data_dir.clone();
    let mut report = ResetReport::default();
    // Without its data directory, nothing on the node can be told apart from another Gantry's (other data
    // directories, tests): a reset of a directory that is gone does nothing, which also makes it idempotent.
    if !data_dir.is_dir() {
        return Ok(report);
    }
    if !looks_like_a_data_dir(&data_dir)? {
        return Ok(report);
    }
    let _lock = DataDirLock::acquire(&data_dir)?;
    let dir = data_dir.clone();
    let (pod_cidrs, known_pods) =
        blocking(move || (pod_cidrs_in(&dir.join("cni/net.d")), known_pod_cgroups(&dir))).await;

    let cni = cni_client(&data_dir);
    let attached = cni.as_ref().and_then(|c| c.recorded_sandboxes().ok()).map_or(0, |ids| ids.len());
    if data_dir.join("run").is_dir() {
        remove_runtime_objects(&data_dir, &cgroup_root, cni.clone(), &mut report).await;
        let dir = data_dir.clone();
        let root = cgroup_root.clone();
        let pods = known_pods.clone();
        let killed = blocking(move || kill_leftovers(&dir, &root, &pods)).await;
        report.processes_killed += killed;
        if killed > 0 {
            // The runtime could not stop what was killed just now; with the processes gone it can remove them.
            let mut again = ResetReport::default();
            remove_runtime_objects(&data_dir, &cgroup_root, cni.clone(), &mut again).await;
            report.containers += again.containers;
            report.sandboxes += again.sandboxes;
            report.errors.extend(again.errors);
        }
    }
    if let Some(cni) = &cni {
        release_recorded_networks(cni, &mut report).await;
        let left = cni.recorded_sandboxes().map_or(0, |ids| ids.len());
        report.networks = attached.saturating_sub(left);
    } else if data_dir.join("cni/cache").is_dir() {
        let recorded = std::fs::read_dir(data_dir.join("cni/cache")).map_or(0, |e| e.count());
        if recorded > 0 {
            report.errors.push(ResetError::Command {
                command: "CNI DEL".to_string(),
                message: format!(
                    "{recorded} pod network(s) recorded but no CNI plugins in {}: their addresses stay allocated \
                     (apt-get install {})",
                    DEFAULT_PLUGIN_DIRS.join(" or "),
                    gantry_runtime::network::CNI_PLUGINS_PACKAGE
                ),
            });
        }
    }
    let dir = data_dir.clone();
    let (mounts, errors) = blocking(move || unmount_under(&dir)).await;
    report.mounts = mounts;
    report.errors.extend(errors);

    let root = cgroup_root.clone();
    let pods = known_pods.clone();
    let (removed, in_use, errors) = blocking(move || remove_cgroups(&root, &pods)).await;
    report.cgroups = removed;
    report.cgroups_in_use = in_use;
    report.errors.extend(errors);

    let bridge = options.bridge.clone();
    let want_cidrs = pod_cidrs.is_empty();
    let (outcome, bridge_cidrs, errors) = blocking(move || remove_bridge(&bridge, want_cidrs)).await;
    report.bridge = outcome;
    report.errors.extend(errors);
    for cidr in pod_cidrs.iter().chain(bridge_cidrs.iter()) {
        let before = count_masquerade_rules(cidr).await;
        match gantry_runtime::network::masquerade::remove_masquerade(cidr).await {
            Ok(()) => report.masquerade_rules += before,
            Err(source) => report
                .errors
                .push(ResetError::Network { what: format!("masquerade rule of {cidr}"), source: Box::new(source) }),
        }
    }
    match crate::routes::remove_all().await {
        Ok(routes) => report.routes = routes,
        Err(err) => report.errors.push(ResetError::Routes(err)),
    }
    if let Some(table) = &options.proxy_table {
        match gantry_proxy::remove_rules(table).await {
            Ok(removed) => report.service_rules = removed,
            // Without nft no proxy could have written the table.
            Err(gantry_proxy::NftError::Spawn { .. }) => {}
            Err(source) => report.errors.push(ResetError::ServiceRules { table: table.clone(), source }),
        }
    }

    let dir = data_dir.clone();
    match blocking(move || remove_data_dir(&dir)).await {
        Ok(()) => report.data_dir_removed = true,
        Err(err) => report.errors.push(err),
    }
    Ok(report)
}

/// Entries Gantry makes at the top of a data directory; a directory with none of them is not one.
const DATA_DIR_MARKERS: [&str; 9] = ["db", "pki", "kubeconfig", "images", "run", "pods", "cni", "manifests", LOCK_FILE];

/// Whether `data_dir` holds Gantry's state: `false` when it is empty (nothing to do), an error when it holds
/// other things only (a mistyped `--data-dir` must not wipe a directory of the machine).
fn looks_like_a_data_dir(data_dir: &Path) -> Result<bool, ResetError> {
    let io = |source| ResetError::Io { path: data_dir.to_path_buf(), source };
    let canonical = data_dir.canonicalize().map_err(io)?;
    let names: Vec<String> = std::fs::read_dir(&canonical)
        .map_err(io)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(false);
    }
    if canonical.parent().is_none() || !names.iter().any(|n| DATA_DIR_MARKERS.contains(&n.as_str())) {
        return Err(ResetError::NotADataDir { path: data_dir.to_path_buf() });
    }
    Ok(true)
}

/// The CNI client the agent would use for this data directory, when the plugins are installed.
fn cni_client(data_dir: &Path) -> Option<CniClient> {
    DEFAULT_PLUGIN_DIRS
        .iter()
        .any(|d| Path::new(d).join("bridge").exists())
        .then(|| CniClient::new(CniOptions::new(data_dir.join("cni/net.d"), data_dir.join("cni/cache"))))
}

/// Removes every sandbox (its containers, network, namespaces and cgroup with it) and every container left.
async fn remove_runtime_objects(data_dir: &Path, cgroup_root: &str, cni: Option<CniClient>, report: &mut ResetReport) {
    // The shim is only started when a container is created, which a reset never does.
    let shim = ShimCommand { program: PathBuf::new(), args: Vec::new() };
    let mut config = NativeConfig::new(data_dir.join("run"), shim);
    config.cgroup_root = cgroup_root.to_string();
    let runtime = match NativeRuntime::new(config, Arc::new(NoImages), cni) {
        Ok(runtime) => runtime,
        Err(source) => {
            report
                .errors
                .push(ResetError::Runtime { what: "opening the container runtime".into(), source: Box::new(source) });
            return;
        }
    };
    let containers = match runtime.list_containers(&ContainerFilter::default()).await {
        Ok(containers) => containers,
        Err(source) => {
            report.errors.push(ResetError::Runtime { what: "listing containers".into(), source: Box::new(source) });
            Vec::new()
        }
    };
    match runtime.list_pod_sandboxes().await {
        Ok(sandboxes) => {
            for sandbox in sandboxes {
                match runtime.remove_pod_sandbox(&sandbox.id).await {
                    Ok(()) => report.sandboxes += 1,
                    Err(source) => report.errors.push(ResetError::Runtime {
                        what: format!("sandbox {}", sandbox.id),
                        source: Box::new(source),
                    }),
                }
            }
        }
        Err(source) => {
            report.errors.push(ResetError::Runtime { what: "listing sandboxes".into(), source: Box::new(source) })
        }
    }
    let left = runtime.list_containers(&ContainerFilter::default()).await.unwrap_or_default();
    let left_ids: BTreeSet<&str> = left.iter().map(|c| c.id.as_str()).collect();
    report.containers += containers.iter().filter(|c| !left_ids.contains(c.id.as_str())).count();
    for container in &left {
        match runtime.remove_container(&container.id).await {
            Ok(()) => report.containers += 1,
            Err(source) => report
                .errors
                .push(ResetError::Runtime { what: format!("container {}", container.id), source: Box::new(source) }),
        }
    }
}

/// CNI DEL for sandboxes recorded in the CNI cache whose runtime record is gone (a crash between the two).
async fn release_recorded_networks(cni: &CniClient, report: &mut ResetReport) {
    let ids = match cni.recorded_sandboxes() {
        Ok(ids) => ids,
        Err(source) => {
            report.errors.push(ResetError::Network { what: "reading the CNI cache".into(), source: Box::new(source) });
            return;
        }
    };
    for id in ids {
        if let Err(source) = cni.teardown(&id, None).await {
            report
                .errors
                .push(ResetError::Network { what: format!("CNI DEL of sandbox {id}"), source: Box::new(source) });
        }
    }
}

/// The pod CIDRs in the network configurations of `conf_dir` (host-local's `ranges` and `subnet`).
pub fn pod_cidrs_in(conf_dir: &Path) -> BTreeSet<String> {
    let mut cidrs = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(conf_dir) else { return cidrs };
    for entry in entries.flatten() {
        let Ok(bytes) = std::fs::read(entry.path()) else { continue };
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            collect_subnets(&value, &mut cidrs);
        }
    }
    cidrs
}

fn collect_subnets(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("subnet", serde_json::Value::String(cidr)) => {
                        out.insert(cidr.clone());
                    }
                    _ => collect_subnets(item, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_subnets(item, out)),
        _ => {}
    }
}

/// The cgroup names (last path component, `pod<uid>`) of the data directory's pods: from the sandbox records and
/// the pod directories.
fn known_pod_cgroups(data_dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(data_dir.join("run/sandboxes")) {
        for entry in entries.flatten() {
            let record = gantry_runtime::native::state::read_json::<SandboxRecord>(&entry.path().join("sandbox.json"));
            if let Ok(record) = record
                && let Some(name) = record.cgroup.rsplit('/').find(|p| !p.is_empty())
            {
                names.insert(name.to_string());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(data_dir.join("pods")) {
        for entry in entries.flatten() {
            let uid: String =
                entry.file_name().to_string_lossy().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            if !uid.is_empty() {
                names.insert(format!("pod{uid}"));
            }
        }
    }
    names
}

/// Whether a process's command line (NUL-separated) is a shim of a container under `run_dirs`.
pub fn is_shim_of(cmdline: &[u8], run_dirs: &[PathBuf]) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(3).any(|w| {
        w[0] == b"shim"
            && matches!(w[1], b"run" | b"exec" | b"supervise")
            && run_dirs.iter().any(|dir| Path::new(<std::ffi::OsStr as OsStrExt>::from_bytes(w[2])).starts_with(dir))
    })
}

fn kill(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|pid| rustix::process::kill_process(pid, rustix::process::Signal::Kill).is_ok())
}

/// SIGKILLs the shims of the data directory's containers and every process in its pods' cgroups; returns how
/// many were killed.
fn kill_leftovers(data_dir: &Path, cgroup_root: &str, known_pods: &BTreeSet<String>) -> usize {
    let mut run_dirs = vec![data_dir.join("run")];
    if let Ok(canonical) = data_dir.join("run").canonicalize() {
        run_dirs.push(canonical);
    }
    let mut killed = 0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if is_shim_of(&cmdline, &run_dirs) && kill(pid) {
                killed += 1;
            }
        }
    }
    for dir in cgroup_dirs(cgroup_root) {
        for pod in pod_cgroups_under(&dir).into_iter().filter(|p| is_known(p, known_pods)) {
            killed += kill_cgroup_processes(&pod);
        }
    }
    killed
}

fn is_known(dir: &Path, known_pods: &BTreeSet<String>) -> bool {
    dir.file_name().is_some_and(|name| known_pods.contains(&*name.to_string_lossy()))
}

/// SIGKILLs every process in `dir` and its child cgroups.
fn kill_cgroup_processes(dir: &Path) -> usize {
    let mut killed = 0;
    for cgroup in subtree(dir) {
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        killed += procs.lines().filter_map(|l| l.trim().parse().ok()).filter(|pid| kill(*pid)).count();
    }
    killed
}

/// `dir` and every directory below it, deepest first.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(subtree(&entry.path()));
            }
        }
    }
    if dir.is_dir() {
        out.push(dir.to_path_buf());
    }
    out
}

/// Pod cgroups (`pod*`) directly under the cgroup root or under its QoS cgroups.
fn pod_cgroups_under(root: &Path) -> Vec<PathBuf> {
    let mut pods = Vec::new();
    for parent in [root.to_path_buf(), root.join("burstable"), root.join("besteffort")] {
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for entry in entries.flatten() {
                let is_pod = entry.file_name().to_string_lossy().starts_with("pod");
                if is_pod && entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pods.push(entry.path());
                }
            }
        }
    }
    pods
}

/// A mount of `/proc/self/mountinfo`: its mount point and filesystem type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount point, escapes undone.
    pub mount_point: PathBuf,
    /// The filesystem type (`cgroup`, `cgroup2`, `tmpfs`, ...).
    pub fs_type: String,
}

/// The mounts of mountinfo text, with their filesystem types (the field after the ` - ` separator).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split(' ').nth(4)?;
            let fs_type = after.split(' ').next()?;
            let mount_point = crate::volumes::mounts::parse_mount_points(&format!("0 0 0 0 {point}")).pop()?;
            Some(MountEntry { mount_point, fs_type: fs_type.to_string() })
        })
        .collect()
}

/// The cgroup root's directory in every mounted cgroup hierarchy (v1 and v2), existing or not.
fn cgroup_dirs(cgroup_root: &str) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .map(|m| m.mount_point.join(cgroup_root))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Removes the cgroup root's tree in every hierarchy, deepest first. The data directory's pods' cgroups are
/// emptied (SIGKILL) and waited for; other cgroups are removed only when empty. Returns the cgroups removed
/// (counted once across hierarchies), those kept because they are in use, and the errors.
fn remove_cgroups(cgroup_root: &str, known_pods: &BTreeSet<String>) -> (usize, usize, Vec<ResetError>) {
    let mut removed = BTreeSet::new();
    let mut in_use = BTreeSet::new();
    let mut errors = Vec::new();
    for root in cgroup_dirs(cgroup_root) {
        let Some(mount) = root.parent() else { continue };
        for dir in subtree(&root) {
            let relative = dir.strip_prefix(mount).unwrap_or(&dir).to_path_buf();
            let known = dir.ancestors().any(|a| is_known(a, known_pods));
            let deadline = Instant::now() + if known { CGROUP_PATIENCE } else { Duration::ZERO };
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => {
                        removed.insert(relative);
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && Instant::now() < deadline => {
                        kill_cgroup_processes(&dir);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                        if known {
                            errors.push(ResetError::CgroupBusy { path: dir.clone() });
                        } else if is_pod_cgroup_path(&dir) {
                            in_use.insert(relative);
                        }
                        break;
                    }
                    Err(source) => {
                        errors.push(ResetError::Io { path: dir.clone(), source });
                        break;
                    }
                }
            }
        }
    }
    (removed.len(), in_use.len(), errors)
}

fn is_pod_cgroup_path(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pod"))
}

/// Detaches every mount strictly under `data_dir`, deepest first: a plain unmount, lazily when busy. Returns the
/// number detached and the failures.
fn unmount_under(data_dir: &Path) -> (usize, Vec<ResetError>) {
    let Ok(root) = data_dir.canonicalize() else { return (0, Vec::new()) };
    let mut count = 0;
    let mut errors = Vec::new();
    // Stacked mounts on one point need a pass each; five passes is more than any layout here makes.
    for _ in 0..5 {
        let mounts: Vec<PathBuf> = match crate::volumes::mounts::mounts_under(&root) {
            Ok(mounts) => mounts.into_iter().filter(|m| m != &root).collect(),
            Err(source) => {
                errors.push(ResetError::Io { path: PathBuf::from("/proc/self/mountinfo"), source });
                break;
            }
        };
        if mounts.is_empty() {
            break;
        }
        errors.clear();
        for mount in mounts {
            let outcome = match nix::mount::umount2(&mount, nix::mount::MntFlags::empty()) {
                Err(nix::errno::Errno::EBUSY) => nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH),
                other => other,
            };
            match outcome {
                Ok(()) => count += 1,
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                Err(source) => errors.push(ResetError::Unmount { path: mount, source }),
            }
        }
    }
    (count, errors)
}

/// Deletes the bridge unless interfaces are still attached. When `want_cidrs`, also returns the pod CIDRs of its
/// addresses (for the masquerade rules, when the data directory did not say).
fn remove_bridge(bridge: &str, want_cidrs: bool) -> (BridgeOutcome, Vec<String>, Vec<ResetError>) {
    let sys = Path::new("/sys/class/net").join(bridge);
    if bridge.is_empty() || bridge.contains('/') || !sys.exists() {
        return (BridgeOutcome::Absent, Vec::new(), Vec::new());
    }
    let ports = std::fs::read_dir(sys.join("brif")).map_or(0, |e| e.count());
    if ports > 0 {
        return (BridgeOutcome::KeptInUse(ports), Vec::new(), Vec::new());
    }
    let cidrs = if want_cidrs {
        run_ip(&["-o", "addr", "show", "dev", bridge]).map(|text| bridge_cidrs(&text)).unwrap_or_default()
    } else {
        Vec::new()
    };
    match run_ip(&["link", "del", bridge]) {
        Ok(_) => (BridgeOutcome::Removed, cidrs, Vec::new()),
        Err(err) => (BridgeOutcome::Absent, cidrs, vec![err]),
    }
}

/// The networks (`a.b.c.0/24`) of the addresses in `ip -o addr show` output, IPv4 and IPv6 (link-local left out).
pub fn bridge_cidrs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word != "inet" && word != "inet6" {
                continue;
            }
            let Some((addr, prefix)) = words.next().and_then(|a| a.split_once('/')) else { continue };
            let (Ok(addr), Ok(prefix)) = (addr.parse::<std::net::IpAddr>(), prefix.parse::<u32>()) else { continue };
            let network = match addr {
                std::net::IpAddr::V4(v4) if prefix <= 32 => {
                    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                    std::net::IpAddr::V4((u32::from(v4) & mask).into())
                }
                std::net::IpAddr::V6(v6) if prefix <= 128 && !v6.is_unicast_link_local() => {
                    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                    std::net::IpAddr::V6((u128::from(v6) & mask).into())
                }
                _ => continue,
            };
            out.push(format!("{network}/{prefix}"));
        }
    }
    out
}

fn run_ip(args: &[&str]) -> Result<String, ResetError> {
    let command = format!("ip {}", args.join(" "));
    let output = std::process::Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|err| {
        ResetError::Command { command: command.clone(), message: format!("{err} (install iproute2)") }
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ResetError::Command { command, message: String::from_utf8_lossy(&output.stderr).trim().to_string() })
    }
}

/// How many masquerade rules for `cidr` there are now (0 when iptables cannot tell).
async fn count_masquerade_rules(cidr: &str) -> usize {
    let tool = if cidr.contains(':') { "ip6tables" } else { "iptables" };
    let output = tokio::process::Command::new(tool)
        .args(["-w", "-t", "nat", "-S", "POSTROUTING"])
        .stdin(Stdio::null())
        .output()
        .await;
    let Ok(output) = output else { return 0 };
    let needle = format!("-s {cidr} ");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains(&needle) && l.contains(gantry_runtime::network::masquerade::RULE_COMMENT))
        .count()
}

/// Deletes the data directory, refusing when mounts remain under it and never crossing into another filesystem.
/// A data directory that is itself a mount point is emptied and kept.
fn remove_data_dir(data_dir: &Path) -> Result<(), ResetError> {
    let root = data_dir.canonicalize().map_err(|source| ResetError::Io { path: data_dir.to_path_buf(), source })?;
    let mounts: Vec<PathBuf> = crate::volumes::mounts::mounts_under(&root)
        .map_err(|source| ResetError::Io { path: PathBuf::from("/proc/self/mountinfo"), source })?;
    let is_mount_point = mounts.iter().any(|m| m == &root);
    let below: Vec<PathBuf> = mounts.into_iter().filter(|m| m != &root).collect();
    if !below.is_empty() {
        return Err(ResetError::MountsRemain { data_dir: data_dir.to_path_buf(), mounts: below });
    }
    let dev = std::fs::symlink_metadata(&root).map_err(|source| ResetError::Io { path: root.clone(), source })?.dev();
    empty_dir(&root, dev)?;
    if is_mount_point {
        return Ok(());
    }
    std::fs::remove_dir(&root).map_err(|source| ResetError::Io { path: root, source })
}

fn empty_dir(dir: &Path, dev: u64) -> Result<(), ResetError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResetError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            if meta.dev() != dev {
                return Err(ResetError::CrossesFilesystem { path });
            }
            empty_dir(&path, dev)?;
            std::fs::remove_dir(&path).map_err(io(&path))?;
        } else {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_data_dir_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Held { pid: Some(pid), .. } if pid == std::process::id()), "{err:?}");
        assert!(err.to_string().contains("is in use by a running Gantry (pid"), "{err}");
        drop(lock);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn mountinfo_lines_give_mount_points_and_filesystem_types() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                    31 25 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw\n\
                    90 22 0:50 / /var/lib/my\\040dir rw - tmpfs tmpfs rw\n";
        let mounts = parse_mountinfo(text);
        let types: Vec<&str> = mounts.iter().map(|m| m.fs_type.as_str()).collect();
        assert_eq!(types, ["ext4", "cgroup", "cgroup2", "tmpfs"]);
        assert_eq!(mounts[1].mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(mounts[3].mount_point, Path::new("/var/lib/my dir"));
    }

    #[test]
    fn pod_cidrs_are_read_from_host_local_ranges_and_subnets() {
        let dir = tempfile::tempdir().unwrap();
        let list = gantry_runtime::network::cni::default_config("gantry0", "10.42.3.0/24").unwrap();
        std::fs::write(dir.path().join("10-gantry.conflist"), list.to_string()).unwrap();
        std::fs::write(dir.path().join("20-old.conf"), r#"{"type":"bridge","ipam":{"subnet":"10.9.0.0/16"}}"#).unwrap();
        std::fs::write(dir.path().join("junk.json"), "not json").unwrap();
        let cidrs: Vec<String> = pod_cidrs_in(dir.path()).into_iter().collect();
        assert_eq!(cidrs, ["10.42.3.0/24", "10.9.0.0/16"]);
        assert!(pod_cidrs_in(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn bridge_addresses_give_their_networks_without_link_local_ones() {
        let text = "5: gantry0    inet 10.42.0.1/24 brd 10.42.0.255 scope global gantry0\\       valid_lft forever\n\
                    5: gantry0    inet6 fd00:42::1/64 scope global \\       valid_lft forever\n\
                    5: gantry0    inet6 fe80::1/64 scope link \\       valid_lft forever\n";
        assert_eq!(bridge_cidrs(text), ["10.42.0.0/24", "fd00:42::/64"]);
    }

    #[test]
    fn shims_are_recognised_by_their_command_and_container_directory() {
        let run = vec![PathBuf::from("/var/lib/gantry/run")];
        let shim = b"/usr/bin/gantry\0shim\0supervise\0/var/lib/gantry/run/containers/ab\x0012\x003\0";
        assert!(is_shim_of(shim, &run));
        assert!(is_shim_of(b"/usr/bin/gantry\0shim\0run\0/var/lib/gantry/run/containers/ab\0", &run));
        assert!(!is_shim_of(b"/usr/bin/gantry\0shim\0run\0/var/lib/other/run/containers/ab\0", &run));
        assert!(!is_shim_of(b"/usr/bin/gantry\0up\0--data-dir\0/var/lib/gantry/run\0", &run));
    }

    #[test]
    fn the_data_dir_is_deleted_without_following_symlinks_out_of_it() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("pods/a/volumes")).unwrap();
        std::fs::write(data.join("pods/a/volumes/f"), "y").unwrap();
        std::os::unix::fs::symlink(outside.path(), data.join("pods/link")).unwrap();
        remove_data_dir(&data).unwrap();
        assert!(!data.exists());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn an_empty_report_says_nothing_was_done_and_counts_make_lines() {
        assert!(ResetReport::default().nothing_done());
        let report = ResetReport { containers: 2, bridge: BridgeOutcome::Removed, ..Default::default() };
        assert!(!report.nothing_done());
        assert_eq!(report.summary_lines(), ["removed 2 container(s)", "removed the pod network's bridge"]);
        let report = ResetReport { networks: 1, ..Default::default() };
        assert_eq!(report.summary_lines(), ["released 1 pod network(s) (CNI DEL)"]);
    }

    #[test]
    fn a_directory_without_gantry_files_is_refused_and_an_empty_one_is_left_alone() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("thesis.tex"), "precious").unwrap();
        let err = runtime.block_on(reset(&ResetOptions::new(dir.path()))).unwrap_err();
        assert!(matches!(err, ResetError::NotADataDir { .. }), "{err:?}");
        assert!(dir.path().join("thesis.tex").exists());
        assert!(!dir.path().join(LOCK_FILE).exists());
        let empty = tempfile::tempdir().unwrap();
        let report = runtime.block_on(reset(&ResetOptions::new(empty.path()))).unwrap();
        assert!(report.nothing_done() && empty.path().exists());
    }

    #[test]
    fn a_cgroup_root_that_climbs_out_is_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut options = ResetOptions::new("/nonexistent/gantry-reset-test");
        options.cgroup_root = "../x".into();
        let err = runtime.block_on(reset(&options)).unwrap_err();
        assert!(matches!(err, ResetError::InvalidCgroupRoot(_)), "{err:?}");
    }
}
