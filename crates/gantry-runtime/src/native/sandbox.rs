//! Sandbox operations of the native runtime: the pod's namespaces, cgroup, network and `/etc` files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::spec::JoinedNamespaces;
use super::state::{self, SandboxRecord};
use super::{NativeRuntime, blocking, io_err, new_id};
use crate::cri::{ContainerFilter, NamespaceMode, PodSandboxConfig, PodSandboxStatus, RuntimeError, SandboxState};
use crate::network::cni::PodNetwork;
use crate::network::namespaces::{NamespaceKind, NamespaceSpec, PodNamespaces};

/// What a container needs from its sandbox.
pub(super) struct SandboxView {
    pub record: SandboxRecord,
    pub joined: JoinedNamespaces,
    /// `/etc` files to bind-mount: container path, host path.
    pub etc_files: Vec<(String, PathBuf)>,
}

fn sandbox_dir(root: &Path, id: &str) -> Result<PathBuf, RuntimeError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(RuntimeError::NotFound { kind: "sandbox", id: id.to_string() });
    }
    Ok(root.join(id))
}

/// The pod's cgroup name: the one asked for, or one derived from the pod's UID as the kubelet names them.
fn pod_cgroup(config: &PodSandboxConfig, id: &str) -> String {
    let given = config.cgroup_parent.trim_matches('/');
    if !given.is_empty() {
        return given.to_string();
    }
    let uid: String = config.metadata.uid.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if uid.is_empty() { format!("pod{}", &id[..16]) } else { format!("pod{uid}") }
}

fn hosts_file(hostname: &str, ips: &[String]) -> String {
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        hosts.push_str(&format!("{ip}\t{hostname}\n"));
    }
    hosts
}

fn resolv_conf(config: &PodSandboxConfig) -> String {
    match &config.dns_config {
        Some(dns) => {
            let mut text = String::new();
            if !dns.searches.is_empty() {
                text.push_str(&format!("search {}\n", dns.searches.join(" ")));
            }
            for server in &dns.servers {
                text.push_str(&format!("nameserver {server}\n"));
            }
            if !dns.options.is_empty() {
                text.push_str(&format!("options {}\n", dns.options.join(" ")));
            }
            text
        }
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    }
}

impl NativeRuntime {
    fn load_sandbox(&self, id: &str) -> Result<(PathBuf, SandboxRecord), RuntimeError> {
        let dir = sandbox_dir(&self.sandboxes_dir(), id)?;
        match state::read_json_opt::<SandboxRecord>(&dir.join("sandbox.json"))? {
            Some(record) => Ok((dir, record)),
            None => Err(RuntimeError::NotFound { kind: "sandbox", id: id.to_string() }),
        }
    }

    fn pod_cgroup_path(&self, record: &SandboxRecord) -> String {
        format!("/{}/{}", self.inner.config.cgroup_root, record.cgroup)
    }

    pub(super) async fn run_pod_sandbox_impl(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        if config.metadata.name.is_empty() || config.metadata.namespace.is_empty() {
            return Err(RuntimeError::Invalid("a sandbox needs the pod's name and namespace".to_string()));
        }
        let pod_network = config.namespaces.network != NamespaceMode::Node;
        if pod_network && self.inner.cni.is_none() {
            return Err(RuntimeError::Prerequisite(
                "no pod network is configured on this node (CNI plugins from the Debian package \
                 containernetworking-plugins): only hostNetwork pods can run"
                    .to_string(),
            ));
        }
        let id = new_id();
        let dir = self.sandboxes_dir().join(&id);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let hostname = if config.hostname.is_empty() { config.metadata.name.clone() } else { config.hostname.clone() };
        let mut record = SandboxRecord {
            id: id.clone(),
            config: config.clone(),
            created_at: state::now_nanos(),
            state: SandboxState::Ready,
            ips: Vec::new(),
            cgroup: pod_cgroup(config, &id),
            namespaces: BTreeMap::new(),
        };
        record.config.hostname = hostname;
        let result = self.prepare_sandbox(&dir, &mut record).await;
        match result {
            Ok(()) => {
                self.write_etc_files(&dir, &record)?;
                state::write_json(&dir.join("sandbox.json"), &record)?;
                Ok(id)
            }
            Err(err) => {
                let _ = self.teardown_network(&record).await;
                let runtime = self.clone();
                let _ = blocking(move || runtime.teardown_sandbox_files(&dir, &record)).await;
                Err(err)
            }
        }
    }

    /// Creates the pod's cgroup and namespaces, then its network; fills in the record as it goes so that a
    /// failure part-way can be undone.
    async fn prepare_sandbox(&self, dir: &Path, record: &mut SandboxRecord) -> Result<(), RuntimeError> {
        let runtime = self.clone();
        let ns_dir = dir.join("ns");
        let snapshot = record.clone();
        let pinned = blocking(move || {
            runtime.inner.cgroups.create_pod(&runtime.pod_cgroup_path(&snapshot), &snapshot.config.resources)?;
            PodNamespaces::create(&ns_dir, &NamespaceSpec::for_sandbox(&snapshot.config)).map_err(RuntimeError::from)
        })
        .await?;
        for kind in NamespaceKind::ALL {
            if let Some(path) = pinned.path(kind) {
                record.namespaces.insert(kind.file_name().to_string(), path.to_path_buf());
            }
        }
        if let (Some(cni), Some(netns)) = (self.inner.cni.as_ref(), record.namespaces.get("net")) {
            let network = PodNetwork::for_sandbox(&record.id, netns, &record.config);
            let status = cni.setup(&network).await?;
            record.ips = std::iter::once(status.primary_ip())
                .flatten()
                .chain(status.additional_ips())
                .map(|ip| ip.to_string())
                .collect();
        }
        Ok(())
    }

    /// Releases the pod's network (CNI DEL); idempotent, and a no-op for host networking.
    async fn teardown_network(&self, record: &SandboxRecord) -> Result<(), RuntimeError> {
        match (self.inner.cni.as_ref(), record.namespaces.get("net")) {
            (Some(cni), Some(netns)) => {
                let netns = netns.exists().then_some(netns.as_path());
                cni.teardown(&record.id, netns).await.map_err(RuntimeError::from)
            }
            _ => Ok(()),
        }
    }

    fn write_etc_files(&self, dir: &Path, record: &SandboxRecord) -> Result<(), RuntimeError> {
        let hostname = &record.config.hostname;
        let files = [
            ("hostname", format!("{hostname}\n")),
            ("hosts", hosts_file(hostname, &record.ips)),
            ("resolv.conf", resolv_conf(&record.config)),
        ];
        for (name, content) in files {
            let path = dir.join(name);
            std::fs::write(&path, content).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Removes the pod's namespaces, cgroup and directory; what is already gone is fine.
    fn teardown_sandbox_files(&self, dir: &Path, record: &SandboxRecord) -> Result<(), RuntimeError> {
        PodNamespaces::open(&dir.join("ns")).remove()?;
        self.inner.cgroups.remove_pod(&self.pod_cgroup_path(record))?;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RuntimeError::Io { path: dir.to_path_buf(), source }),
        }
    }

    /// What a container of this sandbox joins, and the `/etc` files it gets.
    pub(super) fn sandbox_for_container(&self, id: &str) -> Result<SandboxView, RuntimeError> {
        let (dir, record) = self.load_sandbox(id)?;
        let ns = &record.namespaces;
        let joined = JoinedNamespaces {
            net: ns.get("net").cloned(),
            ipc: ns.get("ipc").cloned(),
            uts: ns.get("uts").cloned(),
            new_pid: record.config.namespaces.pid != NamespaceMode::Node,
            pid_path: None,
        };
        let mut etc = vec![
            ("/etc/hosts".to_string(), dir.join("hosts")),
            ("/etc/resolv.conf".to_string(), dir.join("resolv.conf")),
        ];
        if joined.uts.is_some() {
            etc.push(("/etc/hostname".to_string(), dir.join("hostname")));
        }
        Ok(SandboxView { record, joined, etc_files: etc })
    }

    /// Connects to `127.0.0.1:port` in the sandbox's network namespace. The socket is created on a thread of
    /// its own that joins the namespace and then ends: a socket keeps the namespace it was created in, and no
    /// async worker thread ever changes namespace.
    pub(super) async fn port_forward_impl(&self, id: &str, port: u16) -> Result<tokio::net::TcpStream, RuntimeError> {
        let (_, record) = self.load_sandbox(id)?;
        if record.state != SandboxState::Ready {
            return Err(RuntimeError::WrongState { id: id.to_string(), message: "the sandbox is not ready".into() });
        }
        let netns = record.namespaces.get("net").cloned();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sandbox = id.to_string();
        std::thread::Builder::new()
            .name("gantry-portfwd".into())
            .spawn(move || {
                let _ = tx.send(connect_in_namespace(&sandbox, netns.as_deref(), port));
            })
            .map_err(|err| RuntimeError::Network(format!("cannot start the port-forward thread: {err}")))?;
        let stream = rx.await.map_err(|_| {
            RuntimeError::Network(format!("port-forward to sandbox {id}: the connecting thread died"))
        })??;
        let network = |err: std::io::Error| RuntimeError::Network(format!("port-forward to sandbox {id}: {err}"));
        stream.set_nonblocking(true).map_err(network)?;
        tokio::net::TcpStream::from_std(stream).map_err(network)
    }

    pub(super) async fn stop_pod_sandbox_impl(&self, id: &str) -> Result<(), RuntimeError> {
        let (dir, mut record) = match self.load_sandbox(id) {
            Ok(found) => found,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(err) => return Err(err),
        };
        let filter = ContainerFilter { sandbox_id: Some(id.to_string()), ..Default::default() };
        for container in self.list_containers_impl(&filter).await? {
            self.stop_container_impl(&container.id, 0).await?;
        }
        // The network goes with the sandbox's readiness, while the namespace it lives in is still pinned.
        self.teardown_network(&record).await?;
        if record.state == SandboxState::Ready {
            record.state = SandboxState::NotReady;
            state::write_json(&dir.join("sandbox.json"), &record)?;
        }
        Ok(())
    }

    pub(super) async fn remove_pod_sandbox_impl(&self, id: &str) -> Result<(), RuntimeError> {
        let (dir, record) = match self.load_sandbox(id) {
            Ok(found) => found,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(err) => return Err(err),
        };
        self.stop_pod_sandbox_impl(id).await?;
        let filter = ContainerFilter { sandbox_id: Some(id.to_string()), ..Default::default() };
        for container in self.list_containers_impl(&filter).await? {
            self.remove_container_impl(&container.id).await?;
        }
        let runtime = self.clone();
        blocking(move || runtime.teardown_sandbox_files(&dir, &record)).await
    }

    /// Stops and removes every sandbox and every container on this node, with their mounts, namespaces,
    /// cgroups and networks: what a node reset does. Keeps going past failures and reports the first.
    pub async fn reset(&self) -> Result<(), RuntimeError> {
        let mut first_error = None;
        for sandbox in self.list_pod_sandboxes_impl().await? {
            if let Err(err) = self.remove_pod_sandbox_impl(&sandbox.id).await {
                tracing::warn!(sandbox = %sandbox.id, %err, "reset: removing a sandbox");
                first_error.get_or_insert(err);
            }
        }
        // Containers whose sandbox record is gone (a crash between the two removals).
        for container in self.list_containers_impl(&ContainerFilter::default()).await? {
            if let Err(err) = self.remove_container_impl(&container.id).await {
                tracing::warn!(container = %container.id, %err, "reset: removing a container");
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn sandbox_status(record: &SandboxRecord) -> PodSandboxStatus {
        PodSandboxStatus {
            id: record.id.clone(),
            metadata: record.config.metadata.clone(),
            state: record.state,
            created_at: record.created_at,
            ip: record.ips.first().cloned().unwrap_or_default(),
            additional_ips: record.ips.iter().skip(1).cloned().collect(),
            namespaces: record.config.namespaces.clone(),
            labels: record.config.labels.clone(),
            annotations: record.config.annotations.clone(),
        }
    }

    pub(super) async fn pod_sandbox_status_impl(&self, id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        let (_, record) = self.load_sandbox(id)?;
        Ok(Self::sandbox_status(&record))
    }

    pub(super) async fn list_pod_sandboxes_impl(&self) -> Result<Vec<PodSandboxStatus>, RuntimeError> {
        let root = self.sandboxes_dir();
        let runtime = self.clone();
        blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&root).map_err(io_err(&root))?.flatten() {
                let id = entry.file_name().to_string_lossy().to_string();
                if let Ok((_, record)) = runtime.load_sandbox(&id) {
                    out.push(Self::sandbox_status(&record));
                }
            }
            out.sort_by_key(|s| s.created_at);
            Ok(out)
        })
        .await
    }
}

/// Runs on a dedicated thread only: joins the network namespace at `netns` (if any) and connects.
fn connect_in_namespace(sandbox: &str, netns: Option<&Path>, port: u16) -> Result<std::net::TcpStream, RuntimeError> {
    if let Some(path) = netns {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| RuntimeError::Sys {
            context: format!("join network namespace {}", path.display()),
            source,
        })?;
    }
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(5))
        .map_err(|err| RuntimeError::Network(format!("connect to {address} in sandbox {sandbox}: {err}")))
}
