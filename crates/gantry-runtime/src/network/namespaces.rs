//! A pod's network, IPC and UTS namespaces, pinned by bind mounts instead of a process.
//!
//! As containerd pins network namespaces, a short-lived helper thread unshares the namespaces a sandbox needs,
//! prepares them (hostname, `lo` up), and bind-mounts its own `/proc/thread-self/ns/<kind>` files onto files in a
//! directory the caller owns; then it exits. The bind mounts keep the namespaces alive with no process in them,
//! and their paths are what containers join (`linux.namespaces[].path` in the OCI spec) and what CNI plugins enter
//! (`CNI_NETNS`).
//!
//! The helper is a dedicated `std::thread`: `unshare` changes the namespaces of the calling thread only, so it must
//! never run on the main thread or an async worker, which would stay in the pod's namespaces afterwards.
//!
//! The loopback interface of a new network namespace is brought up here, over rtnetlink, before the namespace is
//! pinned: the pod has a working `lo` whatever the CNI configuration says, and the CNI chain need not include the
//! `loopback` plugin.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use nix::sys::statfs::{self, NSFS_MAGIC};
use serde::{Deserialize, Serialize};

use super::NetworkError;
use crate::cri::{NamespaceMode, PodSandboxConfig};

/// A kind of namespace a pod's containers share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NamespaceKind {
    /// The network namespace (interfaces, addresses, routes, ports).
    Network,
    /// The System V IPC and POSIX message queue namespace.
    Ipc,
    /// The hostname and domain name namespace.
    Uts,
}

impl NamespaceKind {
    /// Every kind, in the order they are created.
    pub const ALL: [NamespaceKind; 3] = [NamespaceKind::Network, NamespaceKind::Ipc, NamespaceKind::Uts];

    /// The name of the namespace under `/proc/<pid>/ns/`, which is also the name of its pinned file.
    pub fn file_name(self) -> &'static str {
        match self {
            NamespaceKind::Network => "net",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Uts => "uts",
        }
    }

    fn clone_flag(self) -> CloneFlags {
        match self {
            NamespaceKind::Network => CloneFlags::CLONE_NEWNET,
            NamespaceKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NamespaceKind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }

    fn index(self) -> usize {
        match self {
            NamespaceKind::Network => 0,
            NamespaceKind::Ipc => 1,
            NamespaceKind::Uts => 2,
        }
    }
}

/// Which namespaces a sandbox gets of its own; the others are the node's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceSpec {
    /// A new network namespace (false with `hostNetwork`).
    pub network: bool,
    /// A new IPC namespace (false with `hostIPC`).
    pub ipc: bool,
    /// A new UTS namespace (false with `hostNetwork`: such a pod sees the node's hostname).
    pub uts: bool,
    /// Hostname to set in the new UTS namespace; ignored without one. At most 64 bytes.
    pub hostname: Option<String>,
}

impl NamespaceSpec {
    /// The namespaces a sandbox needs, as the kubelet decides them: `hostNetwork` keeps the node's network and UTS
    /// namespaces, `hostIPC` the node's IPC namespace; the hostname is the configured one or else the pod's name.
    pub fn for_sandbox(config: &PodSandboxConfig) -> NamespaceSpec {
        let own_network = config.namespaces.network != NamespaceMode::Node;
        let hostname = if config.hostname.is_empty() { &config.metadata.name } else { &config.hostname };
        NamespaceSpec {
            network: own_network,
            ipc: config.namespaces.ipc != NamespaceMode::Node,
            uts: own_network,
            hostname: (own_network && !hostname.is_empty()).then(|| hostname.clone()),
        }
    }

    /// The kinds this spec asks for, in creation order.
    pub fn kinds(&self) -> Vec<NamespaceKind> {
        NamespaceKind::ALL
            .into_iter()
            .filter(|kind| match kind {
                NamespaceKind::Network => self.network,
                NamespaceKind::Ipc => self.ipc,
                NamespaceKind::Uts => self.uts,
            })
            .collect()
    }
}

/// A sandbox's pinned namespaces: one bind-mounted `nsfs` file per namespace, under one directory.
///
/// The value is only a record of paths: dropping it leaves the namespaces pinned (they outlive the agent);
/// [`PodNamespaces::remove`] releases them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNamespaces {
    dir: PathBuf,
    paths: [Option<PathBuf>; 3],
}

impl PodNamespaces {
    /// Creates the namespaces `spec` asks for and pins them as `<dir>/net`, `<dir>/ipc` and `<dir>/uts`
    /// (creating `dir` if needed). A new UTS namespace gets `spec.hostname`; a new network namespace has `lo` up
    /// and nothing else.
    ///
    /// Blocks for the life of a helper thread (about a millisecond). On failure nothing stays pinned.
    pub fn create(dir: &Path, spec: &NamespaceSpec) -> Result<PodNamespaces, NetworkError> {
        let kinds = spec.kinds();
        fs::create_dir_all(dir).map_err(|source| NetworkError::Io { path: dir.to_path_buf(), source })?;
        let mut namespaces = PodNamespaces { dir: dir.to_path_buf(), paths: [None, None, None] };
        if kinds.is_empty() {
            return Ok(namespaces);
        }
        if let Some(path) = NamespaceKind::ALL.iter().map(|kind| dir.join(kind.file_name())).find(|p| is_pinned(p)) {
            // A second bind mount would hide the first and leak the namespace it pins; the caller removes first.
            return Err(NetworkError::Io {
                path,
                source: io::Error::new(io::ErrorKind::AlreadyExists, "a namespace is already pinned here"),
            });
        }
        for kind in &kinds {
            let path = dir.join(kind.file_name());
            if let Err(source) = fs::File::create(&path) {
                if let Err(cleanup) = namespaces.remove() {
                    tracing::warn!(dir = %dir.display(), error = %cleanup, "cleaning up after a failed file creation");
                }
                return Err(NetworkError::Io { path, source });
            }
        }

        let result = run_helper_thread(dir.to_path_buf(), kinds.clone(), spec.hostname.clone());
        if let Err(err) = result {
            if let Err(cleanup) = namespaces.remove() {
                tracing::warn!(dir = %dir.display(), error = %cleanup, "cleaning up after a failed namespace creation");
            }
            return Err(err);
        }
        for kind in kinds {
            namespaces.paths[kind.index()] = Some(dir.join(kind.file_name()));
        }
        tracing::debug!(dir = %dir.display(), ?spec, "pod namespaces pinned");
        Ok(namespaces)
    }

    /// Finds the namespaces pinned under `dir` by an earlier [`PodNamespaces::create`], for instance after an
    /// agent restart. A kind whose file is missing or not a pinned namespace (left by a crash during creation, or
    /// never asked for) has no path; a missing `dir` gives a value with no paths, which [`PodNamespaces::remove`]
    /// accepts.
    pub fn open(dir: &Path) -> PodNamespaces {
        let mut namespaces = PodNamespaces { dir: dir.to_path_buf(), paths: [None, None, None] };
        for kind in NamespaceKind::ALL {
            let path = dir.join(kind.file_name());
            if is_pinned(&path) {
                namespaces.paths[kind.index()] = Some(path);
            }
        }
        namespaces
    }

    /// The directory holding the pinned files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pinned file of a namespace kind, or `None` when the sandbox uses the node's namespace of that kind.
    pub fn path(&self, kind: NamespaceKind) -> Option<&Path> {
        self.paths[kind.index()].as_deref()
    }

    /// Unpins every namespace under the directory (lazily, so that a process still inside keeps its namespace
    /// until it exits), deletes the files and then the directory if it is empty. Idempotent: succeeds when some
    /// or all of it is already gone. Also cleans up files a crashed [`PodNamespaces::create`] left behind.
    pub fn remove(&self) -> Result<(), NetworkError> {
        for kind in NamespaceKind::ALL {
            let path = self.dir.join(kind.file_name());
            unmount_all(&path)?;
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(NetworkError::Io { path, source }),
            }
        }
        match fs::remove_dir(&self.dir) {
            Ok(()) => Ok(()),
            // The directory belongs to the caller, who may keep other files in it.
            Err(err) if matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty) => Ok(()),
            Err(source) => Err(NetworkError::Io { path: self.dir.clone(), source }),
        }
    }
}

/// Whether `path` is a pinned namespace (a bind mount of an `nsfs` file).
pub fn is_pinned(path: &Path) -> bool {
    statfs::statfs(path).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC)
}

/// Unmounts `path` until nothing is mounted there (mounts may be stacked by an outside hand).
fn unmount_all(path: &Path) -> Result<(), NetworkError> {
    // A bound on the loop: a path cannot plausibly hold more mounts than this.
    for _ in 0..16 {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            // EINVAL: not a mount point (any more); ENOENT: no such file.
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(source) => return Err(NetworkError::Sys { context: format!("unmount {}", path.display()), source }),
        }
    }
    Ok(())
}

fn run_helper_thread(dir: PathBuf, kinds: Vec<NamespaceKind>, hostname: Option<String>) -> Result<(), NetworkError> {
    let handle = std::thread::Builder::new()
        .name("gantry-podns".into())
        .spawn(move || unshare_and_pin(&dir, &kinds, hostname.as_deref()))
        .map_err(|err| NetworkError::HelperThread(format!("cannot start: {err}")))?;
    // The thread exits once it is done, taking its namespace memberships with it: only the bind mounts remain.
    handle.join().map_err(|_| NetworkError::HelperThread("panicked".into()))?
}

/// Runs on the helper thread only.
fn unshare_and_pin(dir: &Path, kinds: &[NamespaceKind], hostname: Option<&str>) -> Result<(), NetworkError> {
    let flags = kinds.iter().fold(CloneFlags::empty(), |flags, kind| flags | kind.clone_flag());
    nix::sched::unshare(flags).map_err(|source| NetworkError::Sys { context: format!("unshare {flags:?}"), source })?;
    if kinds.contains(&NamespaceKind::Uts)
        && let Some(name) = hostname
    {
        nix::unistd::sethostname(name)
            .map_err(|source| NetworkError::Sys { context: format!("set hostname {name:?}"), source })?;
    }
    if kinds.contains(&NamespaceKind::Network) {
        bring_loopback_up()?;
    }
    for kind in kinds {
        let source = PathBuf::from(format!("/proc/thread-self/ns/{}", kind.file_name()));
        let target = dir.join(kind.file_name());
        nix::mount::mount(Some(&source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|errno| {
            NetworkError::Sys {
                context: format!("bind-mount {} onto {}", source.display(), target.display()),
                source: errno,
            }
        })?;
    }
    Ok(())
}

/// The loopback device's index: the kernel creates `lo` first in every network namespace.
const LOOPBACK_IFINDEX: i32 = 1;

/// Sets `lo` up in the calling thread's network namespace with one RTM_NEWLINK request, and waits for the ack.
fn bring_loopback_up() -> Result<(), NetworkError> {
    let sys = |context: &str| {
        let context = context.to_string();
        move |source| NetworkError::Sys { context, source }
    };
    let fd = socket::socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
        .map_err(sys("open rtnetlink socket"))?;
    let request = loopback_up_request(1);
    socket::sendto(fd.as_raw_fd(), &request, &NetlinkAddr::new(0, 0), MsgFlags::empty())
        .map_err(sys("send RTM_NEWLINK for lo"))?;
    let mut reply = [0u8; 1024];
    let len = socket::recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty()).map_err(sys("read the ack for lo"))?;
    parse_ack(&reply[..len]).map_err(sys("set lo up"))
}

/// An `nlmsghdr` followed by an `ifinfomsg` that sets IFF_UP on the loopback device, in host byte order.
fn loopback_up_request(seq: u32) -> Vec<u8> {
    const HEADER_LEN: usize = 16;
    const IFINFO_LEN: usize = 16;
    let mut msg = Vec::with_capacity(HEADER_LEN + IFINFO_LEN);
    msg.extend_from_slice(&((HEADER_LEN + IFINFO_LEN) as u32).to_ne_bytes());
    msg.extend_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // ifinfomsg: family, padding, device type, index, flags, change mask.
    msg.push(libc::AF_UNSPEC as u8);
    msg.push(0);
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&LOOPBACK_IFINDEX.to_ne_bytes());
    msg.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    msg.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    msg
}

/// Reads the kernel's answer to a request sent with NLM_F_ACK: an NLMSG_ERROR message whose error is 0 on success
/// or a negated errno.
fn parse_ack(reply: &[u8]) -> Result<(), Errno> {
    let field = |range: std::ops::Range<usize>| reply.get(range).ok_or(Errno::EBADMSG);
    let msg_type = u16::from_ne_bytes(field(4..6)?.try_into().map_err(|_| Errno::EBADMSG)?);
    if msg_type != libc::NLMSG_ERROR as u16 {
        return Err(Errno::EBADMSG);
    }
    let code = i32::from_ne_bytes(field(16..20)?.try_into().map_err(|_| Errno::EBADMSG)?);
    if code == 0 { Ok(()) } else { Err(Errno::from_raw(-code)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::{NamespaceOptions, PodSandboxMetadata};

    fn sandbox(network: NamespaceMode, ipc: NamespaceMode, hostname: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: "web-0".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                attempt: 0,
            },
            hostname: hostname.into(),
            namespaces: NamespaceOptions { network, ipc, ..NamespaceOptions::default() },
            ..PodSandboxConfig::default()
        }
    }

    #[test]
    fn a_pod_gets_its_own_network_ipc_and_uts_named_after_the_pod() {
        let spec = NamespaceSpec::for_sandbox(&sandbox(NamespaceMode::Pod, NamespaceMode::Pod, ""));
        assert_eq!(spec.kinds(), NamespaceKind::ALL.to_vec());
        assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    }

    #[test]
    fn an_explicit_hostname_wins_over_the_pod_name() {
        let spec = NamespaceSpec::for_sandbox(&sandbox(NamespaceMode::Pod, NamespaceMode::Pod, "db"));
        assert_eq!(spec.hostname.as_deref(), Some("db"));
    }

    #[test]
    fn host_network_keeps_the_node_network_and_uts_namespaces() {
        let spec = NamespaceSpec::for_sandbox(&sandbox(NamespaceMode::Node, NamespaceMode::Pod, "db"));
        assert_eq!(spec.kinds(), vec![NamespaceKind::Ipc]);
        assert_eq!(spec.hostname, None);
    }

    #[test]
    fn host_ipc_keeps_the_node_ipc_namespace() {
        let spec = NamespaceSpec::for_sandbox(&sandbox(NamespaceMode::Pod, NamespaceMode::Node, ""));
        assert_eq!(spec.kinds(), vec![NamespaceKind::Network, NamespaceKind::Uts]);
    }

    #[test]
    fn the_loopback_request_sets_iff_up_on_index_one() {
        let msg = loopback_up_request(7);
        assert_eq!(msg.len(), 32);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(msg[4..6].try_into().unwrap()), libc::RTM_NEWLINK);
        assert_eq!(u32::from_ne_bytes(msg[8..12].try_into().unwrap()), 7);
        assert_eq!(i32::from_ne_bytes(msg[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(msg[24..28].try_into().unwrap()), libc::IFF_UP as u32);
        assert_eq!(u32::from_ne_bytes(msg[28..32].try_into().unwrap()), libc::IFF_UP as u32);
    }

    #[test]
    fn an_ack_with_a_negative_errno_is_that_error() {
        let mut reply = vec![0u8; 36];
        reply[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        assert_eq!(parse_ack(&reply), Ok(()));
        reply[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(parse_ack(&reply), Err(Errno::EPERM));
        assert_eq!(parse_ack(&reply[..10]), Err(Errno::EBADMSG));
    }

    #[test]
    fn opening_a_missing_directory_finds_nothing_and_removing_it_succeeds() {
        let dir = std::env::temp_dir().join(format!("gantry-podns-missing-{}", std::process::id()));
        let namespaces = PodNamespaces::open(&dir);
        assert!(NamespaceKind::ALL.iter().all(|kind| namespaces.path(*kind).is_none()));
        namespaces.remove().unwrap();
    }
}
