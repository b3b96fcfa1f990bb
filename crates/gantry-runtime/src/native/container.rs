//! Container operations of the native runtime.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::shim::{ExecRequest, ExecResult, ShimConfig};
use super::spec::{self, JoinedNamespaces, SpecInputs};
use super::state::{self, ContainerRecord, ExitRecord, SandboxRecord};
use super::{NativeRuntime, blocking, io_err, new_id};
use crate::cri::{
    ContainerConfig, ContainerFilter, ContainerState, ContainerStats, ContainerStatus, ExecSyncResponse,
    PodSandboxConfig, RuntimeError, SandboxState,
};

/// The files of one container.
#[derive(Clone, Debug)]
pub struct ContainerDirs {
    /// The container's directory.
    pub dir: PathBuf,
}

impl ContainerDirs {
    fn new(root: &Path, id: &str) -> ContainerDirs {
        ContainerDirs { dir: root.join(id) }
    }
    fn record(&self) -> PathBuf {
        self.dir.join("container.json")
    }
    fn exit(&self) -> PathBuf {
        self.dir.join(state::EXIT_FILE)
    }
    /// Mount point of the container's root filesystem.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    fn libcontainer_root(&self) -> PathBuf {
        self.dir.join("lc")
    }
    fn control_socket(&self) -> PathBuf {
        self.dir.join(super::shim::CONTROL_SOCKET)
    }
}

/// How long a shim may take to create a container before the runtime gives up on it.
const SHIM_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a container to die after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

fn process_alive(pid: u32) -> bool {
    pid != 0 && nix::sys::signal::kill(Pid::from_raw(pid as i32), None).is_ok()
}

fn parse_signal(name: &str) -> Signal {
    let name = name.trim().to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse().unwrap_or(Signal::SIGTERM)
}

fn reason_for(exit: &ExitRecord) -> &'static str {
    if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

impl NativeRuntime {
    pub(super) fn dirs(&self, id: &str) -> Result<ContainerDirs, RuntimeError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(RuntimeError::NotFound { kind: "container", id: id.to_string() });
        }
        Ok(ContainerDirs::new(&self.containers_dir(), id))
    }

    fn load_record(&self, id: &str) -> Result<(ContainerDirs, ContainerRecord), RuntimeError> {
        let dirs = self.dirs(id)?;
        match state::read_json_opt::<ContainerRecord>(&dirs.record())? {
            Some(record) => Ok((dirs, record)),
            None => Err(RuntimeError::NotFound { kind: "container", id: id.to_string() }),
        }
    }

    pub(super) fn status_of(&self, dirs: &ContainerDirs, record: &ContainerRecord) -> ContainerStatus {
        let mut status = ContainerStatus {
            id: record.id.clone(),
            sandbox_id: record.sandbox_id.clone(),
            name: record.name.clone(),
            attempt: record.attempt,
            state: ContainerState::Created,
            created_at: record.created_at,
            started_at: record.started_at,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: record.image.clone(),
            image_ref: record.image_ref.clone(),
            log_path: record.log_path.clone(),
            pid: None,
            labels: record.labels.clone(),
            annotations: record.annotations.clone(),
        };
        match state::read_json_opt::<ExitRecord>(&dirs.exit()) {
            Ok(Some(exit)) => {
                status.state = ContainerState::Exited;
                status.exit_code = exit.exit_code;
                status.finished_at = exit.finished_at;
                status.reason = reason_for(&exit).to_string();
                status.message = exit.message;
            }
            Ok(None) if !process_alive(record.shim_pid) => {
                // The shim died without recording an exit (killed, or the node rebooted): the container cannot
                // be running anymore, and nothing knows how it ended.
                status.state = ContainerState::Exited;
                status.exit_code = 255;
                status.finished_at = record.started_at.max(record.created_at);
                status.reason = "Error".to_string();
                status.message = "the container's shim exited without recording the container's exit".to_string();
            }
            Ok(None) if record.started_at != 0 => {
                status.state = ContainerState::Running;
                status.pid = Some(record.pid);
            }
            Ok(None) => {}
            Err(err) => {
                status.state = ContainerState::Unknown;
                status.message = err.to_string();
            }
        }
        status
    }

    pub(super) async fn create_container_impl(
        &self,
        sandbox: &SandboxRecord,
        joined: JoinedNamespaces,
        etc_files: Vec<(String, PathBuf)>,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        if sandbox.state != SandboxState::Ready {
            return Err(RuntimeError::WrongState {
                id: sandbox.id.clone(),
                message: "the sandbox is not ready".to_string(),
            });
        }
        if config.name.is_empty() {
            return Err(RuntimeError::Invalid("a container needs a name".to_string()));
        }
        let images = self.inner.images.clone();
        let reference = config.image.clone();
        let (image, layers) = blocking(move || images.resolve_layers(&reference)).await?;

        let id = new_id();
        let dirs = ContainerDirs::new(&self.containers_dir(), &id);
        let cgroup = format!("/{}/{}/{}", self.inner.config.cgroup_root, sandbox.cgroup, id);
        let log_path = if sandbox_config.log_directory.as_os_str().is_empty() || config.log_path.as_os_str().is_empty()
        {
            dirs.dir.join("container.log")
        } else {
            sandbox_config.log_directory.join(&config.log_path)
        };
        let record = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox.id.clone(),
            name: config.name.clone(),
            attempt: config.attempt,
            image: config.image.clone(),
            image_ref: image.id.clone(),
            created_at: state::now_nanos(),
            started_at: 0,
            log_path: log_path.clone(),
            cgroup: cgroup.clone(),
            pid: 0,
            shim_pid: 0,
            stop_signal: if image.config.stop_signal.is_empty() {
                "SIGTERM".to_string()
            } else {
                image.config.stop_signal.clone()
            },
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        let shim_config = ShimConfig {
            id: id.clone(),
            bundle: dirs.bundle(),
            libcontainer_root: dirs.libcontainer_root(),
            log_path,
            log_max_bytes: self.inner.config.log_max_bytes,
            log_max_files: self.inner.config.log_max_files,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            tty: config.tty,
            cgroup: cgroup.clone(),
        };

        let prepared = {
            let dirs = dirs.clone();
            let config = config.clone();
            let hostname = sandbox.config.hostname.clone();
            let record = record.clone();
            blocking(move || {
                prepare_bundle(&dirs, &layers, &image, &config, joined, &hostname, &cgroup, etc_files)?;
                state::write_json(&dirs.record(), &record)?;
                state::write_json(&dirs.dir.join("shim.json"), &shim_config)
            })
            .await
        };
        if let Err(err) = prepared {
            self.discard(&dirs).await;
            return Err(err);
        }

        match self.spawn_shim(&dirs, &id).await {
            Ok((pid, shim_pid)) => {
                let record = ContainerRecord { pid, shim_pid, ..record };
                let path = dirs.record();
                blocking(move || state::write_json(&path, &record)).await?;
                Ok(id)
            }
            Err(err) => {
                self.discard(&dirs).await;
                Err(err)
            }
        }
    }

    /// Starts the shim and waits for its `ready <pid>` line.
    async fn spawn_shim(&self, dirs: &ContainerDirs, id: &str) -> Result<(u32, u32), RuntimeError> {
        let shim = &self.inner.config.shim;
        let log_path = dirs.dir.join("shim.log");
        let shim_log = std::fs::File::create(&log_path).map_err(io_err(&log_path))?;
        let mut child = tokio::process::Command::new(&shim.program)
            .args(&shim.args)
            .arg("run")
            .arg(&dirs.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(shim_log))
            .kill_on_drop(false)
            .spawn()
            .map_err(|err| RuntimeError::Shim {
                id: id.to_string(),
                message: format!("cannot start {}: {err}", shim.program.display()),
            })?;
        let shim_pid = child.id().unwrap_or(0);
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| RuntimeError::Shim { id: id.to_string(), message: "no stdout pipe".to_string() })?;
        let mut line = String::new();
        let read = tokio::time::timeout(SHIM_READY_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
        let fail = |message: String| RuntimeError::Shim { id: id.to_string(), message };
        match read {
            Err(_) => {
                let _ = child.start_kill();
                return Err(fail(format!("no answer within {SHIM_READY_TIMEOUT:?}")));
            }
            Ok(Err(err)) => return Err(fail(format!("reading its answer: {err}"))),
            Ok(Ok(_)) => {}
        }
        // The shim outlives this call: tokio reaps it in the background if it exits while the runtime runs.
        drop(child);
        let line = line.trim();
        if let Some(pid) = line.strip_prefix("ready ") {
            let pid = pid.parse().map_err(|_| fail(format!("unexpected answer {line:?}")))?;
            Ok((pid, shim_pid))
        } else if let Some(message) = line.strip_prefix("error ") {
            Err(RuntimeError::Container { id: id.to_string(), message: message.to_string() })
        } else {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            Err(fail(format!("exited without an answer: {}", log.trim())))
        }
    }

    /// Removes what a failed creation left behind.
    async fn discard(&self, dirs: &ContainerDirs) {
        let dirs = dirs.clone();
        let _ = blocking(move || {
            let _ = crate::image::unmount(&dirs.rootfs());
            std::fs::remove_dir_all(&dirs.dir).map_err(io_err(&dirs.dir))
        })
        .await;
    }

    pub(super) async fn start_container_impl(&self, id: &str) -> Result<(), RuntimeError> {
        let (dirs, record) = self.load_record(id)?;
        let status = self.status_of(&dirs, &record);
        if status.state != ContainerState::Created {
            return Err(RuntimeError::WrongState {
                id: id.to_string(),
                message: format!("cannot start a container in state {:?}", status.state),
            });
        }
        // libcontainer's own `start` changes the process's working directory to reach the socket, which a
        // multi-threaded runtime cannot allow; the protocol is one message on that socket.
        let lc = dirs.libcontainer_root().join(id);
        // Taken before the init runs, so that a container exiting at once never finishes before it started.
        let started_at = state::now_nanos();
        // libcontainer's record says running before the init is told to go: a container that exits at once is
        // reaped by its shim, and its state could no longer be refreshed from /proc afterwards.
        let owned_id = id.to_string();
        let lc_dir = lc.clone();
        blocking(move || {
            let mut container = libcontainer::container::Container::load(lc_dir)
                .map_err(|err| RuntimeError::Container { id: owned_id.clone(), message: err.to_string() })?;
            container
                .set_status(libcontainer::container::ContainerStatus::Running)
                .save()
                .map_err(|err| RuntimeError::Container { id: owned_id, message: err.to_string() })
        })
        .await?;
        let container_error = |message: String| RuntimeError::Container { id: id.to_string(), message };
        let mut socket = super::shim::connect_in(&lc, "notify.sock")
            .await
            .map_err(|err| container_error(format!("the container's init does not wait to start: {err}")))?;
        tokio::io::AsyncWriteExt::write_all(&mut socket, b"start container")
            .await
            .map_err(|err| container_error(format!("starting the container's init: {err}")))?;
        drop(socket);
        let record = ContainerRecord { started_at, ..record };
        let path = dirs.record();
        blocking(move || state::write_json(&path, &record)).await
    }

    /// Waits until the container's exit is recorded, or the deadline passes. Returns whether it exited.
    async fn wait_exit(&self, dirs: &ContainerDirs, record: &ContainerRecord, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            let status = self.status_of(dirs, record);
            if status.state == ContainerState::Exited {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    pub(super) async fn stop_container_impl(&self, id: &str, timeout_seconds: i64) -> Result<(), RuntimeError> {
        let (dirs, record) = self.load_record(id)?;
        let status = self.status_of(&dirs, &record);
        match status.state {
            ContainerState::Exited => return Ok(()),
            ContainerState::Unknown => {
                return Err(RuntimeError::WrongState { id: id.to_string(), message: status.message });
            }
            ContainerState::Created | ContainerState::Running => {}
        }
        let pid = Pid::from_raw(record.pid as i32);
        if status.state == ContainerState::Running && timeout_seconds > 0 {
            let signal = parse_signal(&record.stop_signal);
            let _ = nix::sys::signal::kill(pid, signal);
            if self.wait_exit(&dirs, &record, Duration::from_secs(timeout_seconds as u64)).await {
                return Ok(());
            }
        }
        // A created container's init waits to be started; SIGKILL ends it as it would a running one.
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        if self.wait_exit(&dirs, &record, KILL_TIMEOUT).await {
            Ok(())
        } else {
            Err(RuntimeError::WrongState {
                id: id.to_string(),
                message: format!("still running {KILL_TIMEOUT:?} after SIGKILL"),
            })
        }
    }

    pub(super) async fn remove_container_impl(&self, id: &str) -> Result<(), RuntimeError> {
        let (dirs, record) = match self.load_record(id) {
            Ok(found) => found,
            Err(RuntimeError::NotFound { .. }) => {
                // A half-created container leaves a directory without a record: remove it all the same.
                if let Ok(dirs) = self.dirs(id)
                    && dirs.dir.exists()
                {
                    self.discard(&dirs).await;
                }
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        if self.status_of(&dirs, &record).state != ContainerState::Exited {
            self.stop_container_impl(id, 0).await?;
        }
        // The shim removes its socket and exits right after recording the exit.
        let deadline = Instant::now() + KILL_TIMEOUT;
        while process_alive(record.shim_pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let owned_id = id.to_string();
        blocking(move || {
            let lc = dirs.libcontainer_root().join(&owned_id);
            if lc.exists() {
                match libcontainer::container::Container::load(lc) {
                    Ok(mut container) => container
                        .delete(true)
                        .map_err(|err| RuntimeError::Container { id: owned_id.clone(), message: err.to_string() })?,
                    Err(err) => tracing::warn!(id = %owned_id, %err, "container state unreadable; removing files"),
                }
            }
            let _ = crate::image::unmount(&dirs.rootfs());
            std::fs::remove_dir_all(&dirs.dir).map_err(io_err(&dirs.dir))
        })
        .await
    }

    pub(super) async fn list_containers_impl(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let root = self.containers_dir();
        let runtime = self.clone();
        let filter = filter.clone();
        blocking(move || {
            let mut out = Vec::new();
            let entries = std::fs::read_dir(&root).map_err(io_err(&root))?;
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().to_string();
                if filter.id.as_ref().is_some_and(|want| *want != id) {
                    continue;
                }
                let Ok((dirs, record)) = runtime.load_record(&id) else { continue };
                if filter.sandbox_id.as_ref().is_some_and(|want| *want != record.sandbox_id) {
                    continue;
                }
                if !filter.labels.iter().all(|(k, v)| record.labels.get(k) == Some(v)) {
                    continue;
                }
                let status = runtime.status_of(&dirs, &record);
                if filter.state.is_some_and(|want| want != status.state) {
                    continue;
                }
                out.push(status);
            }
            out.sort_by_key(|s| s.created_at);
            Ok(out)
        })
        .await
    }

    pub(super) async fn container_status_impl(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let (dirs, record) = self.load_record(id)?;
        Ok(self.status_of(&dirs, &record))
    }

    pub(super) async fn container_stats_impl(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        let (_, record) = self.load_record(id)?;
        let usage = self.inner.cgroups.usage(&record.cgroup)?;
        Ok(ContainerStats {
            id: id.to_string(),
            timestamp: state::now_nanos(),
            cpu_usage_core_nanoseconds: usage.cpu_nanos,
            memory_usage_bytes: usage.memory_bytes,
            memory_working_set_bytes: usage.working_set_bytes,
        })
    }

    pub(super) async fn reopen_log_impl(&self, id: &str) -> Result<(), RuntimeError> {
        let (dirs, _) = self.load_record(id)?;
        let socket = dirs.control_socket();
        let mut stream = super::shim::connect_in(&dirs.dir, super::shim::CONTROL_SOCKET).await.map_err(|err| {
            RuntimeError::WrongState {
                id: id.to_string(),
                message: format!("the container's shim is not running ({err})"),
            }
        })?;
        tokio::io::AsyncWriteExt::write_all(&mut stream, b"reopen\n").await.map_err(io_err(&socket))?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await.map_err(io_err(&socket))?;
        match answer.trim() {
            "ok" => Ok(()),
            other => Err(RuntimeError::Shim { id: id.to_string(), message: other.to_string() }),
        }
    }

    /// Starts the exec helper for a command in a running container; returns the child and the result path.
    pub(super) async fn spawn_exec(
        &self,
        id: &str,
        cmd: &[String],
        stdin: bool,
        console_socket: Option<PathBuf>,
    ) -> Result<(tokio::process::Child, PathBuf, PathBuf), RuntimeError> {
        let (dirs, record) = self.load_record(id)?;
        if self.status_of(&dirs, &record).state != ContainerState::Running {
            return Err(RuntimeError::WrongState {
                id: id.to_string(),
                message: "cannot exec in a container that is not running".to_string(),
            });
        }
        if cmd.is_empty() {
            return Err(RuntimeError::Invalid("exec needs a command".to_string()));
        }
        let exec_id = uuid::Uuid::new_v4().simple().to_string();
        let request_path = dirs.dir.join(format!("exec-{exec_id}.json"));
        let result_path = dirs.dir.join(format!("exec-{exec_id}.result.json"));
        let request = ExecRequest {
            id: id.to_string(),
            libcontainer_root: dirs.libcontainer_root(),
            args: cmd.to_vec(),
            result_path: result_path.clone(),
            console_socket,
            bundle: dirs.bundle(),
        };
        state::write_json(&request_path, &request)?;
        let shim = &self.inner.config.shim;
        let child = tokio::process::Command::new(&shim.program)
            .args(&shim.args)
            .arg("exec")
            .arg(&request_path)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| RuntimeError::Shim {
                id: id.to_string(),
                message: format!("cannot start exec helper {}: {err}", shim.program.display()),
            })?;
        Ok((child, request_path, result_path))
    }

    pub(super) async fn exec_sync_impl(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecSyncResponse, RuntimeError> {
        let (mut child, request_path, result_path) = self.spawn_exec(id, cmd, false, None).await?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let collect = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (out, err, status)
        };
        let outcome = match timeout {
            Some(limit) => tokio::time::timeout(limit, collect).await.ok(),
            None => Some(collect.await),
        };
        let pid_path = super::shim::exec_pid_path(&result_path);
        let Some((stdout, stderr, waited)) = outcome else {
            // The helper dies with its handle (kill on drop); the command it started is killed here.
            if let Some(pid) = std::fs::read_to_string(&pid_path).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = std::fs::remove_file(&pid_path);
            let _ = std::fs::remove_file(&request_path);
            let _ = std::fs::remove_file(&result_path);
            return Err(RuntimeError::WrongState {
                id: id.to_string(),
                message: format!("command timed out after {timeout:?}"),
            });
        };
        let exit_code = finish_exec(id, &waited, &request_path, &result_path)?;
        Ok(ExecSyncResponse { stdout, stderr, exit_code })
    }
}

/// Reads what the exec helper reported once it ended (`waited`: how it ended), and removes its files: the exit
/// code of the command, or why the command could not run.
pub(super) fn finish_exec(
    id: &str,
    waited: &dyn std::fmt::Debug,
    request_path: &Path,
    result_path: &Path,
) -> Result<i32, RuntimeError> {
    let _ = std::fs::remove_file(request_path);
    let _ = std::fs::remove_file(super::shim::exec_pid_path(result_path));
    let result = state::read_json::<ExecResult>(result_path);
    let _ = std::fs::remove_file(result_path);
    let result = result.map_err(|err| RuntimeError::Shim {
        id: id.to_string(),
        message: format!("exec helper ({waited:?}): {err}"),
    })?;
    result.exit_code.ok_or_else(|| RuntimeError::Container {
        id: id.to_string(),
        message: format!("exec failed: {}", result.error.unwrap_or_default()),
    })
}

/// Mounts the root filesystem and writes the OCI bundle.
#[allow(clippy::too_many_arguments)]
fn prepare_bundle(
    dirs: &ContainerDirs,
    layers: &[PathBuf],
    image: &crate::cri::Image,
    config: &ContainerConfig,
    joined: JoinedNamespaces,
    hostname: &str,
    cgroup: &str,
    etc_files: Vec<(String, PathBuf)>,
) -> Result<(), RuntimeError> {
    for dir in [dirs.dir.join("upper"), dirs.dir.join("work"), dirs.rootfs(), dirs.bundle(), dirs.libcontainer_root()] {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    }
    crate::image::mount_overlay(layers, &dirs.dir.join("upper"), &dirs.dir.join("work"), &dirs.rootfs())?;
    let user = spec::resolve_user(&dirs.rootfs(), config, &image.config)?;
    let rootfs = dirs.rootfs();
    let spec = spec::build_spec(&SpecInputs {
        config,
        image: &image.config,
        rootfs: &rootfs,
        user,
        namespaces: joined,
        hostname,
        cgroups_path: cgroup,
        etc_files,
    })?;
    let path = dirs.bundle().join("config.json");
    state::write_json(&path, &spec)
}
