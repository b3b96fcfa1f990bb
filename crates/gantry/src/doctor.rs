//! `gantry doctor`: checks that this machine has what a Gantry node needs, and says in one line per problem how
//! to fix it. Each check is a function returning a [`Finding`]; the parsers of the kernel's files are pure
//! functions of their text, tested on their own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gantry_runtime::native::cgroups::{Cgroups, Layout};
use gantry_runtime::network::cni::DEFAULT_PLUGIN_DIRS;

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Gantry's data directory (checked for free space). Default: /var/lib/gantry as root, else
    /// $XDG_DATA_HOME/gantry.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The API server's HTTPS port, which must be free.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// The node API's port, which must be free.
    #[arg(long, default_value_t = 10250)]
    node_api_port: u16,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but not as well as it could.
    Warning,
    /// A node cannot work (fully) until it is fixed.
    Problem,
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    /// What was found.
    pub message: String,
    /// How to fix it (empty when OK).
    pub fix: String,
}

impl Finding {
    fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding { check, status: Status::Ok, message: message.into(), fix: String::new() }
    }

    fn problem(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { check, status: Status::Problem, message: message.into(), fix: fix.into() }
    }

    fn warning(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { check, status: Status::Warning, message: message.into(), fix: fix.into() }
    }
}

/// The controllers the runtime sets limits in or reads from, on cgroup v1.
const V1_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "pids", "cpuset"];
/// The same on v2 (`cpuacct` is part of `cpu` there).
const V2_CONTROLLERS: [&str; 4] = ["cpu", "memory", "pids", "cpuset"];
/// The CNI plugins of the agent's default network configuration (the runtime brings `lo` up itself, so
/// `loopback` is not needed).
const CNI_PLUGINS: [&str; 3] = ["bridge", "host-local", "portmap"];
/// Below this much free space in the data directory's filesystem, a node cannot hold many images.
const MIN_FREE_BYTES: u64 = 2 << 30;

pub fn run(args: DoctorArgs, default_data_dir: PathBuf) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or(default_data_dir);
    let findings = vec![
        check_root(&read("/proc/self/status")),
        check_cgroups(),
        check_overlay(&read("/proc/filesystems")),
        check_cni_plugins(&DEFAULT_PLUGIN_DIRS.map(PathBuf::from)),
        check_iptables(),
        check_nft(),
        check_ip_forward(&read("/proc/sys/net/ipv4/ip_forward")),
        check_port("API server port (--secure-port)", args.secure_port),
        check_port("node API port (--node-api-port)", args.node_api_port),
        check_disk(&data_dir),
    ];
    let mut problems = 0;
    for finding in &findings {
        match finding.status {
            Status::Ok => {}
            Status::Warning => println!("warning: {}: {}; {}", finding.check, finding.message, finding.fix),
            Status::Problem => {
                problems += 1;
                println!("problem: {}: {}; fix: {}", finding.check, finding.message, finding.fix);
            }
        }
    }
    anyhow::ensure!(problems == 0, "{problems} problem(s) found: this machine cannot run a Gantry node yet");
    let oks: Vec<&str> = findings.iter().filter(|f| f.status == Status::Ok).map(|f| f.message.as_str()).collect();
    println!("OK: this machine can run a Gantry node ({}).", oks.join("; "));
    Ok(())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The effective user ID in `/proc/self/status` text (`Uid: real effective saved fs`).
pub fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn check_root(status: &str) -> Finding {
    match effective_uid(status) {
        Some(0) => Finding::ok("root", "running as root"),
        Some(uid) => Finding::problem(
            "root",
            format!("running as user {uid}: containers, mounts, cgroups and the pod network need root"),
            "run it as root (sudo gantry ...)",
        ),
        None => Finding::problem("root", "cannot read /proc/self/status", "mount /proc"),
    }
}

/// The v1 controllers this process's cgroups are in, from `/proc/self/cgroup` text (`ID:controllers:path`;
/// the v2 line `0::path` names none, and `name=` hierarchies are not controllers).
pub fn v1_controllers(proc_self_cgroup: &str) -> BTreeSet<String> {
    proc_self_cgroup
        .lines()
        .filter_map(|line| line.split(':').nth(1))
        .flat_map(|list| list.split(','))
        .filter(|c| !c.is_empty() && !c.starts_with("name="))
        .map(str::to_string)
        .collect()
}

fn check_cgroups() -> Finding {
    let cgroups = Cgroups::detect();
    let (layout, have, wanted): (&str, BTreeSet<String>, &[&str]) = match cgroups.layout() {
        Layout::V1 => ("v1", v1_controllers(&read("/proc/self/cgroup")), &V1_CONTROLLERS),
        Layout::V2 => (
            "v2",
            read("/sys/fs/cgroup/cgroup.controllers").split_whitespace().map(str::to_string).collect(),
            &V2_CONTROLLERS,
        ),
    };
    let missing: Vec<&str> = wanted.iter().copied().filter(|c| !have.contains(*c)).collect();
    if missing.is_empty() {
        return Finding::ok("cgroups", format!("cgroups {layout} with {}", wanted.join(", ")));
    }
    let fix = match cgroups.layout() {
        Layout::V1 => format!(
            "mount the hierarchies (mount -t cgroup -o {} cgroup /sys/fs/cgroup/{}) or boot with them enabled",
            missing[0], missing[0]
        ),
        Layout::V2 => format!("enable them: echo '+{}' > /sys/fs/cgroup/cgroup.subtree_control", missing.join(" +")),
    };
    Finding::problem("cgroups", format!("cgroups {layout} without the controller(s) {}", missing.join(", ")), fix)
}

/// Whether `/proc/filesystems` text lists overlayfs.
pub fn has_filesystem(proc_filesystems: &str, name: &str) -> bool {
    proc_filesystems.lines().any(|line| line.split_whitespace().last() == Some(name))
}

fn check_overlay(proc_filesystems: &str) -> Finding {
    if has_filesystem(proc_filesystems, "overlay") {
        return Finding::ok("overlayfs", "overlayfs");
    }
    // A kernel with overlay as a module loads it on the first mount; `modprobe -n` says whether it could.
    let loadable = std::process::Command::new("modprobe")
        .args(["-n", "overlay"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if loadable {
        Finding::ok("overlayfs", "overlayfs (as a module)")
    } else {
        Finding::problem(
            "overlayfs",
            "the kernel has no overlay filesystem (containers' root filesystems need it)",
            "modprobe overlay, or use a kernel built with CONFIG_OVERLAY_FS",
        )
    }
}

fn check_cni_plugins(dirs: &[PathBuf]) -> Finding {
    let missing: Vec<&str> =
        CNI_PLUGINS.iter().copied().filter(|p| !dirs.iter().any(|d| d.join(p).is_file())).collect();
    let places = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" or ");
    if missing.is_empty() {
        return Finding::ok("CNI plugins", format!("CNI plugins {}", CNI_PLUGINS.join(", ")));
    }
    Finding::problem(
        "CNI plugins",
        format!("{} not found in {places}: only hostNetwork pods can run", missing.join(", ")),
        format!("apt-get install {}", gantry_runtime::network::CNI_PLUGINS_PACKAGE),
    )
}

/// Whether an executable named `name` is in one of the `PATH` directories (or the sbin directories root has).
fn in_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin", "/sbin"].map(PathBuf::from)).any(|dir| dir.join(name).is_file())
}

fn check_iptables() -> Finding {
    if in_path("iptables") {
        Finding::ok("iptables", "iptables")
    } else {
        Finding::problem(
            "iptables",
            "iptables not found (pod traffic leaving the node is masqueraded with it, hostPorts need it)",
            "apt-get install iptables",
        )
    }
}

fn check_nft() -> Finding {
    if in_path("nft") {
        Finding::ok("nft", "nft")
    } else {
        Finding::problem(
            "nft",
            "nft not found (the service proxy writes ClusterIP and NodePort rules with it)",
            "apt-get install nftables",
        )
    }
}

fn check_ip_forward(value: &str) -> Finding {
    match value.trim() {
        "1" => Finding::ok("ip_forward", "net.ipv4.ip_forward=1"),
        // The bridge plugin, as the pods' gateway, turns forwarding on at the first pod's ADD.
        _ => Finding::warning(
            "ip_forward",
            "net.ipv4.ip_forward is off (the CNI bridge plugin turns it on at the first pod start)",
            "to set it for good: echo net.ipv4.ip_forward=1 > /etc/sysctl.d/90-gantry.conf && sysctl --system",
        ),
    }
}

/// A TCP listener from `/proc/net/tcp` or `/proc/net/tcp6`: its port and socket inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub inode: u64,
}

/// The listening sockets (state `0A`) of `/proc/net/tcp` or `/proc/net/tcp6` text.
pub fn tcp_listeners(text: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != "0A" {
                return None;
            }
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            Some(Listener { port, inode: inode.parse().ok()? })
        })
        .collect()
}

/// The process holding a socket inode: its PID and command name, from `/proc/*/fd`.
fn socket_holder(inode: u64) -> Option<(u32, String)> {
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        if fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str())) {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some((pid, comm.trim().to_string()));
        }
    }
    None
}

fn check_port(check: &'static str, port: u16) -> Finding {
    let listeners: Vec<Listener> =
        ["/proc/net/tcp", "/proc/net/tcp6"].iter().flat_map(|path| tcp_listeners(&read(path))).collect();
    let Some(listener) = listeners.iter().find(|l| l.port == port) else {
        return Finding::ok(check, format!("port {port} free"));
    };
    let holder = socket_holder(listener.inode)
        .map(|(pid, comm)| format!(" by {comm} (pid {pid})"))
        .unwrap_or_else(|| " (by a process this user cannot see)".to_string());
    Finding::problem(
        check,
        format!("port {port} is in use{holder}"),
        "stop that process, or give Gantry another port with the flag",
    )
}

/// The nearest existing directory at or above `path`.
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.is_dir())
}

fn check_disk(data_dir: &Path) -> Finding {
    let Some(dir) = existing_ancestor(data_dir) else {
        return Finding::problem("disk", format!("no directory above {}", data_dir.display()), "create it");
    };
    match rustix::fs::statvfs(dir) {
        Ok(stat) => {
            let free = stat.f_bavail.saturating_mul(stat.f_frsize);
            let total = stat.f_blocks.saturating_mul(stat.f_frsize);
            let gib = |bytes: u64| bytes as f64 / f64::from(1u32 << 30);
            let message = format!("{:.1} GiB free of {:.1} GiB for {}", gib(free), gib(total), data_dir.display());
            let fix = "free some space, or use --data-dir on a larger filesystem";
            if free < MIN_FREE_BYTES {
                Finding::problem("disk", message, fix)
            } else if free.saturating_mul(10) < total {
                // The kubelet's hard eviction threshold (nodefs.available < 10%).
                Finding::warning("disk", format!("{message}, under the kubelet's 10% eviction threshold"), fix)
            } else {
                Finding::ok("disk", message)
            }
        }
        Err(err) => Finding::problem("disk", format!("statvfs {}: {err}", dir.display()), "check the filesystem"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_uid_is_the_second_number_of_the_uid_line() {
        let status = "Name:\tgantry\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name:\tx\n"), None);
        assert_eq!(check_root("Uid:\t1000\t1000\t1000\t1000\n").status, Status::Problem);
    }

    #[test]
    fn v1_controllers_come_from_every_hierarchy_line_but_named_ones() {
        let text = "12:name=systemd:/\n9:pids:/\n4:memory:/x\n3:cpu,cpuacct:/\n2:cpuset:/\n0::/\n";
        let controllers: Vec<String> = v1_controllers(text).into_iter().collect();
        assert_eq!(controllers, ["cpu", "cpuacct", "cpuset", "memory", "pids"]);
        assert!(v1_controllers("0::/user.slice\n").is_empty());
    }

    #[test]
    fn overlay_is_found_in_proc_filesystems_with_or_without_nodev() {
        let text = "nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\n";
        assert!(has_filesystem(text, "overlay"));
        assert!(has_filesystem(text, "ext4"));
        assert!(!has_filesystem("nodev\toverlayfs\n", "overlay"));
    }

    #[test]
    fn listening_sockets_are_read_from_proc_net_tcp_with_hex_ports() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 00000000:1923 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
           1: 0100007F:2814 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 77 1 0 20 4 30 10 -1\n";
        assert_eq!(tcp_listeners(text), [Listener { port: 6435, inode: 4242 }]);
        let v6 = "  sl  local_address remote st\n\
           0: 00000000000000000000000000000000:2802 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 99 1\n";
        assert_eq!(tcp_listeners(v6), [Listener { port: 10242, inode: 99 }]);
    }

    #[test]
    fn missing_cni_plugins_are_named_with_the_package_that_installs_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bridge"), "").unwrap();
        let finding = check_cni_plugins(&[dir.path().to_path_buf()]);
        assert_eq!(finding.status, Status::Problem);
        assert!(finding.message.starts_with("host-local, portmap not found"), "{}", finding.message);
        assert_eq!(finding.fix, "apt-get install containernetworking-plugins");
    }

    #[test]
    fn forwarding_off_is_a_warning_not_a_problem() {
        assert_eq!(check_ip_forward("0\n").status, Status::Warning);
        assert_eq!(check_ip_forward("1\n").status, Status::Ok);
    }
}
