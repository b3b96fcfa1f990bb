//! Forgetting UDP flows whose backend is gone, as kube-proxy does. Conntrack keeps a UDP flow's DNAT for as long
//! as packets keep coming, so a client that keeps its source port (a resolver, a syslog or metrics sender) would
//! go on sending to a removed endpoint, or, when the Service had no endpoint when it started, past the Service
//! altogether. TCP needs none of this: a removed endpoint resets or times out the connection, and the client's
//! next one is balanced anew.
//!
//! Runs the `conntrack` tool (Debian package `conntrack`); without it stale UDP flows only end when they time out.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;

use crate::model::{Protocol, ServicePlan};

/// One UDP port of a Service as the rules last sent it: where clients send, and which endpoints answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpPort {
    /// The ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// The Service's port.
    pub port: u16,
    /// Its NodePort, if any.
    pub node_port: Option<u16>,
    /// Every endpoint any traffic to the port may reach.
    pub endpoints: BTreeSet<Ipv4Addr>,
}

/// The UDP ports of a Service's plan.
pub fn udp_ports(plan: &ServicePlan) -> Vec<UdpPort> {
    plan.ports
        .iter()
        .filter(|p| p.protocol == Protocol::Udp)
        .map(|p| UdpPort {
            cluster_ip: plan.cluster_ip,
            port: p.port,
            node_port: p.node_port,
            endpoints: p.cluster.iter().chain(&p.local).map(|e| e.ip).collect(),
        })
        .collect()
}

/// Flows to delete, each one `conntrack -D` filter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StaleFlows {
    /// Every flow to a ClusterIP port that had no endpoint (its flows were never translated).
    ToServicePort {
        /// The ClusterIP.
        ip: Ipv4Addr,
        /// The port.
        port: u16,
    },
    /// Every UDP flow to a NodePort that had no endpoint.
    ToNodePort {
        /// The NodePort.
        port: u16,
    },
    /// Flows to a ClusterIP port that a removed endpoint answered.
    ServedBy {
        /// The ClusterIP.
        ip: Ipv4Addr,
        /// The port.
        port: u16,
        /// The removed endpoint.
        endpoint: Ipv4Addr,
    },
    /// Flows to a NodePort that a removed endpoint answered.
    NodePortServedBy {
        /// The NodePort.
        port: u16,
        /// The removed endpoint.
        endpoint: Ipv4Addr,
    },
}

impl StaleFlows {
    /// The `conntrack` arguments that delete these flows.
    pub fn arguments(&self) -> Vec<String> {
        let mut args: Vec<String> = ["-D", "-p", "udp"].map(String::from).to_vec();
        let mut add = |flag: &str, value: String| {
            args.push(flag.to_string());
            args.push(value);
        };
        match *self {
            StaleFlows::ToServicePort { ip, port } => {
                add("--orig-dst", ip.to_string());
                add("--orig-port-dst", port.to_string());
            }
            StaleFlows::ToNodePort { port } => add("--orig-port-dst", port.to_string()),
            StaleFlows::ServedBy { ip, port, endpoint } => {
                add("--orig-dst", ip.to_string());
                add("--orig-port-dst", port.to_string());
                add("--reply-src", endpoint.to_string());
            }
            StaleFlows::NodePortServedBy { port, endpoint } => {
                add("--orig-port-dst", port.to_string());
                add("--reply-src", endpoint.to_string());
            }
        }
        args
    }
}

/// What changed between the UDP ports a Service had and has: flows that a removed endpoint answered, and,
/// for ports that now have endpoints but had none (or did not exist), every flow to them.
pub fn stale_flows(old: &[UdpPort], new: &[UdpPort]) -> BTreeSet<StaleFlows> {
    let mut out = BTreeSet::new();
    let same = |a: &UdpPort, b: &UdpPort| a.cluster_ip == b.cluster_ip && a.port == b.port;
    for before in old {
        let kept = new.iter().find(|n| same(n, before));
        for &endpoint in &before.endpoints {
            if kept.is_some_and(|n| n.endpoints.contains(&endpoint)) {
                continue;
            }
            out.insert(StaleFlows::ServedBy { ip: before.cluster_ip, port: before.port, endpoint });
            if let Some(port) = before.node_port {
                out.insert(StaleFlows::NodePortServedBy { port, endpoint });
            }
        }
    }
    for now in new.iter().filter(|n| !n.endpoints.is_empty()) {
        if old.iter().find(|o| same(o, now)).is_none_or(|o| o.endpoints.is_empty()) {
            out.insert(StaleFlows::ToServicePort { ip: now.cluster_ip, port: now.port });
            if let Some(port) = now.node_port {
                out.insert(StaleFlows::ToNodePort { port });
            }
        }
    }
    out
}

/// How to run `conntrack`: a program and the arguments before its own (tests use `ip netns exec NS conntrack`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackCommand {
    /// The program.
    pub program: PathBuf,
    /// Arguments that come before conntrack's.
    pub args: Vec<String>,
}

impl Default for ConntrackCommand {
    fn default() -> ConntrackCommand {
        ConntrackCommand { program: PathBuf::from("conntrack"), args: Vec::new() }
    }
}

/// Why flows could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The program could not be started (missing, not executable).
    #[error("{command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("{command} exited with {status}: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its error output.
        stderr: String,
    },
}

impl ConntrackCommand {
    /// The command inside a network namespace: `ip netns exec <netns> conntrack`.
    pub fn in_netns(netns: &str) -> ConntrackCommand {
        ConntrackCommand {
            program: PathBuf::from("ip"),
            args: vec!["netns".into(), "exec".into(), netns.into(), "conntrack".into()],
        }
    }

    /// Deletes the flows; how many were deleted.
    pub async fn delete(&self, flows: &StaleFlows) -> Result<u64, ConntrackError> {
        let extra = flows.arguments();
        let command = std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .chain(extra.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let output = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .args(&extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| ConntrackError::Spawn { command: command.clone(), source })?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        // conntrack ends with "N flow entries have been deleted." and exits 1 when N is 0.
        let deleted = stderr
            .rsplit(": ")
            .next()
            .and_then(|tail| tail.strip_suffix(" flow entries have been deleted."))
            .and_then(|n| n.parse::<u64>().ok());
        match deleted {
            Some(n) => Ok(n),
            None if output.status.success() => Ok(0),
            None => Err(ConntrackError::Failed { command, status: output.status, stderr }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().expect("ip")
    }

    fn port(endpoints: &[&str], node_port: Option<u16>) -> UdpPort {
        UdpPort {
            cluster_ip: ip("10.43.0.53"),
            port: 53,
            node_port,
            endpoints: endpoints.iter().map(|e| ip(e)).collect(),
        }
    }

    #[test]
    fn a_removed_endpoint_loses_its_flows_and_kept_ones_keep_theirs() {
        let stale = stale_flows(&[port(&["10.42.0.5", "10.42.0.6"], None)], &[port(&["10.42.0.6"], None)]);
        assert_eq!(
            stale.into_iter().collect::<Vec<_>>(),
            vec![StaleFlows::ServedBy { ip: ip("10.43.0.53"), port: 53, endpoint: ip("10.42.0.5") }]
        );
    }

    #[test]
    fn a_port_that_gets_its_first_endpoint_forgets_every_flow_to_it() {
        let stale = stale_flows(&[port(&[], Some(31053))], &[port(&["10.42.0.5"], Some(31053))]);
        assert_eq!(
            stale.into_iter().collect::<Vec<_>>(),
            vec![StaleFlows::ToServicePort { ip: ip("10.43.0.53"), port: 53 }, StaleFlows::ToNodePort { port: 31053 }]
        );
        let created = stale_flows(&[], &[port(&["10.42.0.5"], None)]);
        assert!(created.contains(&StaleFlows::ToServicePort { ip: ip("10.43.0.53"), port: 53 }), "{created:?}");
    }

    #[test]
    fn a_deleted_service_forgets_the_flows_of_every_endpoint_including_its_node_port() {
        let stale = stale_flows(&[port(&["10.42.0.5"], Some(31053))], &[]);
        assert_eq!(
            stale.into_iter().collect::<Vec<_>>(),
            vec![
                StaleFlows::ServedBy { ip: ip("10.43.0.53"), port: 53, endpoint: ip("10.42.0.5") },
                StaleFlows::NodePortServedBy { port: 31053, endpoint: ip("10.42.0.5") },
            ]
        );
    }

    #[test]
    fn an_unchanged_port_has_no_stale_flows() {
        assert!(stale_flows(&[port(&["10.42.0.5"], None)], &[port(&["10.42.0.5"], None)]).is_empty());
        assert!(stale_flows(&[port(&[], None)], &[port(&[], None)]).is_empty());
    }

    #[test]
    fn filters_name_the_original_destination_and_the_answering_endpoint() {
        let flows = StaleFlows::ServedBy { ip: ip("10.43.0.53"), port: 53, endpoint: ip("10.42.0.5") };
        assert_eq!(
            flows.arguments().join(" "),
            "-D -p udp --orig-dst 10.43.0.53 --orig-port-dst 53 --reply-src 10.42.0.5"
        );
        assert_eq!(StaleFlows::ToNodePort { port: 31053 }.arguments().join(" "), "-D -p udp --orig-port-dst 31053");
    }
}
