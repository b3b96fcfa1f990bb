//! Facts about the machine a node runs on, as the kubelet reports them in its Node object: capacity (CPUs,
//! memory, ephemeral storage), addresses, and system information.
//!
//! Everything is read from the kernel's own files (`/sys`, `/proc`, `uname`, `statvfs`, the interfaces), with
//! the parsing kept in small functions that are tested on their own.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// Why a fact could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file did not have the expected form.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A system call failed.
    #[error("{call}: {source}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The error.
        #[source]
        source: nix::Error,
    },
}

/// What the Node object says about its machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineFacts {
    /// Online CPUs.
    pub cpus: u32,
    /// Physical memory, bytes.
    pub memory_bytes: u64,
    /// Size of the filesystem holding the agent's data directory, bytes (the node's ephemeral storage).
    pub ephemeral_storage_bytes: u64,
    /// The node's hostname, lowercased (Kubernetes node names are lowercase).
    pub hostname: String,
    /// The address other nodes reach this one at: the source address of the default route, else the first
    /// non-loopback IPv4 address; `None` on a machine with no network but loopback.
    pub internal_ip: Option<IpAddr>,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` from `/etc/os-release`.
    pub os_image: String,
    /// Kubernetes' name for the CPU architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// `/etc/machine-id`, empty when absent.
    pub machine_id: String,
    /// The kernel's boot ID: changes at every reboot.
    pub boot_id: String,
}

fn read(path: &Path) -> Result<String, MachineError> {
    std::fs::read_to_string(path).map_err(|source| MachineError::Io { path: path.to_path_buf(), source })
}

/// Reads the machine's facts; `data_dir` is the agent's data directory, whose filesystem is the node's ephemeral
/// storage.
pub fn detect(data_dir: &Path) -> Result<MachineFacts, MachineError> {
    let online = Path::new("/sys/devices/system/cpu/online");
    let cpus = parse_cpu_list(&read(online)?)
        .ok_or_else(|| MachineError::Malformed { path: online.to_path_buf(), reason: "not a CPU list".into() })?;
    let meminfo = Path::new("/proc/meminfo");
    let memory_bytes = parse_mem_total(&read(meminfo)?)
        .ok_or_else(|| MachineError::Malformed { path: meminfo.to_path_buf(), reason: "no MemTotal line".into() })?;
    let stat = nix::sys::statvfs::statvfs(data_dir).map_err(|source| MachineError::Sys { call: "statvfs", source })?;
    let ephemeral_storage_bytes = stat.blocks().saturating_mul(stat.fragment_size());
    let hostname = hostname()?;
    let uname = nix::sys::utsname::uname().map_err(|source| MachineError::Sys { call: "uname", source })?;
    let os_image = read(Path::new("/etc/os-release")).ok().and_then(|text| parse_os_release_pretty_name(&text));
    Ok(MachineFacts {
        cpus,
        memory_bytes,
        ephemeral_storage_bytes,
        hostname,
        internal_ip: internal_ip(),
        kernel_version: uname.release().to_string_lossy().into_owned(),
        os_image: os_image.unwrap_or_else(|| "Linux".to_string()),
        architecture: kubernetes_architecture(std::env::consts::ARCH).to_string(),
        machine_id: read(Path::new("/etc/machine-id")).map(|s| s.trim().to_string()).unwrap_or_default(),
        boot_id: read(Path::new("/proc/sys/kernel/random/boot_id")).map(|s| s.trim().to_string()).unwrap_or_default(),
    })
}

/// Counts the CPUs of a kernel CPU list (`0-3,6,8-9`).
pub fn parse_cpu_list(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut count = 0u32;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((low, high)) => {
                let (low, high): (u32, u32) = (low.trim().parse().ok()?, high.trim().parse().ok()?);
                if high < low {
                    return None;
                }
                count += high - low + 1;
            }
            None => {
                part.trim().parse::<u32>().ok()?;
                count += 1;
            }
        }
    }
    Some(count)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// `PRETTY_NAME` of an os-release file, unquoted.
pub fn parse_os_release_pretty_name(text: &str) -> Option<String> {
    let value = text.lines().find_map(|line| line.strip_prefix("PRETTY_NAME="))?;
    let value = value.trim();
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    (!unquoted.is_empty()).then(|| unquoted.to_string())
}

/// Kubernetes' (Go's) name for a Rust target architecture.
pub fn kubernetes_architecture(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The interface of the IPv4 default route, from `/proc/net/route`.
pub fn parse_default_route_interface(route_table: &str) -> Option<String> {
    route_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Columns: Iface Destination Gateway Flags ... Mask; the default route has destination and mask 0.
        (fields.len() >= 8 && fields[1] == "00000000" && fields[7] == "00000000").then(|| fields[0].to_string())
    })
}

/// The machine's hostname, lowercased (Kubernetes node names are lowercase): the default Node name.
pub fn hostname() -> Result<String, MachineError> {
    Ok(nix::unistd::gethostname()
        .map_err(|source| MachineError::Sys { call: "gethostname", source })?
        .to_string_lossy()
        .to_lowercase())
}

/// Every non-loopback IPv4 address of the machine's interfaces, the default route's first.
pub fn addresses() -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = internal_ip().into_iter().collect();
    if let Ok(interfaces) = nix::ifaddrs::getifaddrs() {
        for ifaddr in interfaces {
            let Some(ip) = ifaddr.address.and_then(|a| a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip()))) else {
                continue;
            };
            if !ip.is_loopback() && !found.contains(&ip) {
                found.push(ip);
            }
        }
    }
    found
}

/// The address of the default route's interface (else the first non-loopback one): the Node's InternalIP.
pub fn internal_ip() -> Option<IpAddr> {
    let default_interface =
        std::fs::read_to_string("/proc/net/route").ok().and_then(|table| parse_default_route_interface(&table));
    let addresses: Vec<(String, Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|ifaddr| {
            let address = ifaddr.address?;
            let ipv4 = address.as_sockaddr_in()?.ip();
            Some((ifaddr.interface_name, ipv4))
        })
        .filter(|(_, ip)| !ip.is_loopback())
        .collect();
    default_interface
        .and_then(|name| addresses.iter().find(|(iface, _)| *iface == name).map(|(_, ip)| *ip))
        .or_else(|| addresses.first().map(|(_, ip)| *ip))
        .map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_ranges_and_single_cpus() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(parse_cpu_list("5"), Some(1));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a-b"), None);
    }

    #[test]
    fn mem_total_is_read_in_bytes() {
        let meminfo = "MemTotal:       24684084 kB\nMemFree:        10712236 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24_684_084 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 1 MB\n"), None);
    }

    #[test]
    fn pretty_name_is_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(parse_os_release_pretty_name(text).as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(parse_os_release_pretty_name("PRETTY_NAME=Alpine\n").as_deref(), Some("Alpine"));
        assert_eq!(parse_os_release_pretty_name("PRETTY_NAME=\"\"\n"), None);
        assert_eq!(parse_os_release_pretty_name("NAME=x\n"), None);
    }

    #[test]
    fn architectures_take_kubernetes_names() {
        assert_eq!(kubernetes_architecture("x86_64"), "amd64");
        assert_eq!(kubernetes_architecture("aarch64"), "arm64");
        assert_eq!(kubernetes_architecture("mips"), "mips");
    }

    #[test]
    fn the_default_route_names_its_interface() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
                     eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        assert_eq!(parse_default_route_interface(table).as_deref(), Some("eth0"));
        assert_eq!(parse_default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn this_machine_has_cpus_memory_storage_and_a_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let facts = detect(dir.path()).expect("facts");
        let available = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        assert!(facts.cpus >= available, "{} online CPUs but {available} available", facts.cpus);
        assert!(facts.memory_bytes > 64 << 20, "{facts:?}");
        assert!(facts.ephemeral_storage_bytes > 0, "{facts:?}");
        assert!(!facts.hostname.is_empty() && facts.hostname == facts.hostname.to_lowercase());
        assert!(!facts.kernel_version.is_empty());
        if let Some(ip) = facts.internal_ip {
            assert!(!ip.is_loopback());
        }
    }
}
