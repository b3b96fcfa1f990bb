//! What the native runtime keeps on disk, and how it writes it.
//!
//! Layout under the runtime's root:
//!
//! ```text
//! sandboxes/<id>/sandbox.json      the sandbox's record
//! sandboxes/<id>/ns/{net,ipc,uts}  pinned namespaces
//! sandboxes/<id>/{hostname,hosts,resolv.conf}
//! containers/<id>/container.json   the container's record
//! containers/<id>/shim.json        the shim's configuration
//! containers/<id>/bundle/          OCI bundle (config.json)
//! containers/<id>/{upper,work,rootfs}  writable layer and overlay mount point
//! containers/<id>/lc/              libcontainer's state
//! containers/<id>/exit.json        written by the shim when the container exits
//! containers/<id>/shim.sock        the shim's control socket while it runs
//! ```
//!
//! Every record is written to a temporary file and renamed, so a crash leaves the old or the new version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cri::{PodSandboxConfig, RuntimeError, SandboxState};

/// Name of the exit record in a container's directory.
pub const EXIT_FILE: &str = "exit.json";

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// Reads a JSON record.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, RuntimeError> {
    let bytes = std::fs::read(path).map_err(|source| RuntimeError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| RuntimeError::CorruptState { path: path.to_path_buf(), source })
}

/// Reads a JSON record that may not exist yet.
pub fn read_json_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, RuntimeError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| RuntimeError::CorruptState { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RuntimeError::Io { path: path.to_path_buf(), source }),
    }
}

/// Writes a JSON record atomically (temporary file, then rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RuntimeError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|source| RuntimeError::CorruptState { path: path.to_path_buf(), source })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|source| RuntimeError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| RuntimeError::Io { path: path.to_path_buf(), source })
}

/// How a container ended, as its shim recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code (128 + signal when killed by a signal).
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<String>,
    /// The OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// When the shim saw the exit, nanoseconds since the epoch.
    pub finished_at: i64,
    /// Detail for humans.
    pub message: String,
}

/// A container as the runtime created it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Container ID.
    pub id: String,
    /// Sandbox ID.
    pub sandbox_id: String,
    /// Name within the pod.
    pub name: String,
    /// Attempt.
    pub attempt: u32,
    /// Image reference as given.
    pub image: String,
    /// Image ID.
    pub image_ref: String,
    /// Creation time, nanoseconds since the epoch.
    pub created_at: i64,
    /// Start time, 0 until started.
    pub started_at: i64,
    /// Absolute log path.
    pub log_path: PathBuf,
    /// The container's cgroup, relative to the cgroup roots.
    pub cgroup: String,
    /// PID of the container's init.
    pub pid: u32,
    /// PID of its shim.
    pub shim_pid: u32,
    /// Signal to stop it with.
    pub stop_signal: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A sandbox as the runtime created it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// Sandbox ID.
    pub id: String,
    /// The request it was created from.
    pub config: PodSandboxConfig,
    /// Creation time, nanoseconds since the epoch.
    pub created_at: i64,
    /// Ready until stopped.
    pub state: SandboxState,
    /// Pod IPs from CNI, primary first.
    pub ips: Vec<String>,
    /// The pod's cgroup, below the runtime's cgroup root.
    pub cgroup: String,
    /// Pinned namespaces by kind (`net`, `ipc`, `uts`); a kind absent is the node's own.
    pub namespaces: BTreeMap<String, PathBuf>,
}
