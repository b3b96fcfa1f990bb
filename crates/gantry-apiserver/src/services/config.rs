//! The service network's settings: `--service-cluster-ip-range`, `--service-node-port-range`, `--cluster-dns`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

/// A service setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceConfigError {
    /// The cluster IP range is not an IPv4 CIDR of a usable size.
    #[error("invalid service cluster IP range {value:?}: {reason}")]
    Range {
        /// What was given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The node port range is not `FIRST-LAST`.
    #[error("invalid service node port range {value:?}: {reason}")]
    Ports {
        /// What was given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The cluster DNS address is outside the cluster IP range.
    #[error("the cluster DNS address {dns} is not a usable address of the service cluster IP range {range}")]
    DnsOutsideRange {
        /// The address.
        dns: Ipv4Addr,
        /// The range.
        range: Ipv4Cidr,
    },
}

/// An IPv4 range in CIDR notation whose addresses Services get (network and broadcast addresses excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The longest prefix accepted: it leaves 14 addresses, enough for the built-in Services.
    pub const MAX_PREFIX: u8 = 28;
    /// The shortest prefix accepted, as kube-apiserver limits IPv4 service ranges to 20 bits.
    pub const MIN_PREFIX: u8 = 12;

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses can be handed out (all but the network and broadcast addresses).
    pub fn usable(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix))) - 2
    }

    /// The `n`th usable address (1 is the first); `None` outside `1..=usable()`.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        (1..=self.usable()).contains(&n).then(|| Ipv4Addr::from(u32::from(self.network) + n))
    }

    /// Where `ip` sits in the range (1 is the first usable address); `None` when it is not a usable address.
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let n = u32::from(ip).checked_sub(u32::from(self.network))?;
        (1..=self.usable()).contains(&n).then_some(n)
    }

    /// How many of the first addresses automatic picks avoid, keeping them for Services that ask for a fixed
    /// address (kube-apiserver's static band: a sixteenth of the range, at least 16, at most 256).
    pub fn reserved(&self) -> u32 {
        static_band(1u32 << (32 - u32::from(self.prefix)), 16, 256, 16)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ServiceConfigError;

    fn from_str(s: &str) -> Result<Ipv4Cidr, ServiceConfigError> {
        let err = |reason| ServiceConfigError::Range { value: s.to_string(), reason };
        let (addr, prefix) = s.split_once('/').ok_or_else(|| err("expected ADDRESS/PREFIX, e.g. 10.43.0.0/16"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err("only IPv4 ranges are supported"))?;
        let prefix: u8 = prefix.parse().map_err(|_| err("the prefix length is not a number"))?;
        if prefix < Ipv4Cidr::MIN_PREFIX {
            return Err(err("the range is too large: the prefix length must be at least 12"));
        }
        if prefix > Ipv4Cidr::MAX_PREFIX {
            return Err(err("the range is too small: the prefix length must be at most 28"));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        let network = Ipv4Addr::from(u32::from(addr) & mask);
        if network != addr {
            return Err(err("the address is not the range's network address"));
        }
        Ok(Ipv4Cidr { network, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An inclusive range of node ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// The first port.
    pub first: u16,
    /// The last port.
    pub last: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    pub fn contains(&self, port: i64) -> bool {
        (i64::from(self.first)..=i64::from(self.last)).contains(&port)
    }

    /// How many ports the range holds.
    pub fn size(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// How many of the first ports automatic picks avoid (kube-apiserver's static band: a thirty-second of the
    /// range, at least 16, at most 128).
    pub fn reserved(&self) -> u32 {
        static_band(self.size(), 16, 128, 32)
    }
}

impl FromStr for PortRange {
    type Err = ServiceConfigError;

    fn from_str(s: &str) -> Result<PortRange, ServiceConfigError> {
        let err = |reason| ServiceConfigError::Ports { value: s.to_string(), reason };
        let (first, last) = s.split_once('-').ok_or_else(|| err("expected FIRST-LAST, e.g. 30000-32767"))?;
        let first: u16 = first.trim().parse().map_err(|_| err("the first port is not a port number"))?;
        let last: u16 = last.trim().parse().map_err(|_| err("the last port is not a port number"))?;
        if first == 0 || first > last {
            return Err(err("the first port must be at least 1 and not above the last"));
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

fn static_band(size: u32, min: u32, max: u32, step: u32) -> u32 {
    if size < min { 0 } else { (size / step).clamp(min, max) }
}

/// Where Services' addresses and node ports come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNetwork {
    /// `--service-cluster-ip-range`.
    pub cluster_ip_range: Ipv4Cidr,
    /// `--service-node-port-range`.
    pub node_port_range: PortRange,
    /// `--cluster-dns`: the address of `kube-system/kube-dns`.
    pub cluster_dns: Ipv4Addr,
    /// How often the repair pass runs (after once at start).
    pub repair_interval: Duration,
    /// How often this server renews its entry in the `kubernetes` Service's endpoints.
    pub endpoints_interval: Duration,
}

impl ServiceNetwork {
    /// The default cluster IP range.
    pub const DEFAULT_RANGE: &str = "10.43.0.0/16";
    /// The default node port range.
    pub const DEFAULT_NODE_PORTS: &str = "30000-32767";

    /// The settings from the flags; `cluster_dns` defaults to the range's 10th address.
    pub fn new(
        cluster_ip_range: Ipv4Cidr,
        node_port_range: PortRange,
        cluster_dns: Option<Ipv4Addr>,
    ) -> Result<ServiceNetwork, ServiceConfigError> {
        let cluster_dns = match cluster_dns {
            Some(dns) => dns,
            // A /28 has 14 usable addresses, so the 10th always exists.
            None => cluster_ip_range.nth(10).unwrap_or(cluster_ip_range.network),
        };
        if cluster_ip_range.offset_of(cluster_dns).is_none() {
            return Err(ServiceConfigError::DnsOutsideRange { dns: cluster_dns, range: cluster_ip_range });
        }
        Ok(ServiceNetwork {
            cluster_ip_range,
            node_port_range,
            cluster_dns,
            repair_interval: Duration::from_secs(180),
            endpoints_interval: Duration::from_secs(10),
        })
    }

    /// The address of `default/kubernetes`: the range's first.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        self.cluster_ip_range.nth(1).unwrap_or(self.cluster_ip_range.network)
    }
}

impl Default for ServiceNetwork {
    fn default() -> ServiceNetwork {
        let range = Ipv4Cidr { network: Ipv4Addr::new(10, 43, 0, 0), prefix: 16 };
        let ports = PortRange { first: 30000, last: 32767 };
        ServiceNetwork {
            cluster_ip_range: range,
            node_port_range: ports,
            cluster_dns: Ipv4Addr::new(10, 43, 0, 10),
            repair_interval: Duration::from_secs(180),
            endpoints_interval: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_default_network_is_what_the_flags_default_to() {
        let parsed = ServiceNetwork::new(
            ServiceNetwork::DEFAULT_RANGE.parse().unwrap(),
            ServiceNetwork::DEFAULT_NODE_PORTS.parse().unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(parsed, ServiceNetwork::default());
        assert_eq!(parsed.kubernetes_ip(), Ipv4Addr::new(10, 43, 0, 1));
        assert_eq!(parsed.cluster_dns, Ipv4Addr::new(10, 43, 0, 10));
    }

    #[test]
    fn a_range_excludes_its_network_and_broadcast_addresses() {
        let range: Ipv4Cidr = "10.43.0.0/28".parse().unwrap();
        assert_eq!(range.usable(), 14);
        assert_eq!(range.nth(1), Some(Ipv4Addr::new(10, 43, 0, 1)));
        assert_eq!(range.nth(15), None);
        assert_eq!(range.offset_of(Ipv4Addr::new(10, 43, 0, 0)), None);
        assert_eq!(range.offset_of(Ipv4Addr::new(10, 43, 0, 15)), None);
        assert_eq!(range.offset_of(Ipv4Addr::new(10, 43, 0, 14)), Some(14));
        assert_eq!(range.offset_of(Ipv4Addr::new(10, 96, 0, 1)), None);
    }

    #[test]
    fn the_static_bands_match_kube_apiserver() {
        let range: Ipv4Cidr = "10.43.0.0/16".parse().unwrap();
        assert_eq!(range.reserved(), 256);
        assert_eq!("10.43.0.0/24".parse::<Ipv4Cidr>().unwrap().reserved(), 16);
        assert_eq!("30000-32767".parse::<PortRange>().unwrap().reserved(), 86);
    }

    #[test]
    fn bad_ranges_are_refused_with_the_reason() {
        let bad = |s: &str| s.parse::<Ipv4Cidr>().unwrap_err().to_string();
        assert!(bad("10.43.0.0").contains("expected ADDRESS/PREFIX"));
        assert!(bad("fd00::/108").contains("only IPv4"));
        assert!(bad("10.0.0.0/8").contains("too large"));
        assert!(bad("10.43.0.0/30").contains("too small"));
        assert!(bad("10.43.0.1/16").contains("not the range's network address"));
        let ports = |s: &str| s.parse::<PortRange>().unwrap_err().to_string();
        assert!(ports("30000").contains("FIRST-LAST"));
        assert!(ports("32767-30000").contains("not above the last"));
        assert!(ports("30000-70000").contains("last port"));
    }

    #[test]
    fn a_cluster_dns_address_outside_the_range_is_refused() {
        let err = ServiceNetwork::new(
            "10.43.0.0/16".parse().unwrap(),
            "30000-32767".parse().unwrap(),
            Some(Ipv4Addr::new(10, 96, 0, 10)),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the cluster DNS address 10.96.0.10 is not a usable address of the service cluster IP range 10.43.0.0/16"
        );
    }
}
