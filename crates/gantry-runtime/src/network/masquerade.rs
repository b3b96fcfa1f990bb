//! Masquerading of pod traffic that leaves the pod network, as one rule per pod CIDR for the whole node.
//!
//! The bridge plugin can masquerade too (`ipMasq`), but it does so with a chain of its own per pod, created at
//! every ADD and removed at every DEL: several `iptables` runs per pod start, 15 to 30 ms on a node like ours,
//! and a NAT table that grows with the pods. One rule set when the node's network is configured does the same
//! for every pod, the way flannel-based nodes do it.

use std::process::Stdio;

use super::NetworkError;

/// Comment on the rule, so that it can be found and removed again.
pub const RULE_COMMENT: &str = "gantry: masquerade pod traffic leaving the pod network";

fn tool_for(pod_cidr: &str) -> &'static str {
    if pod_cidr.contains(':') { "ip6tables" } else { "iptables" }
}

fn rule(operation: &str, pod_cidr: &str) -> Vec<String> {
    [
        "-w",
        "-t",
        "nat",
        operation,
        "POSTROUTING",
        "-s",
        pod_cidr,
        "!",
        "-d",
        pod_cidr,
        "-m",
        "comment",
        "--comment",
        RULE_COMMENT,
        "-j",
        "MASQUERADE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn run(pod_cidr: &str, args: &[String]) -> Result<bool, NetworkError> {
    let tool = tool_for(pod_cidr);
    let output = tokio::process::Command::new(tool).args(args).stdin(Stdio::null()).output().await.map_err(|err| {
        NetworkError::Masquerade {
            cidr: pod_cidr.to_string(),
            message: format!("cannot run {tool} ({err}); install the Debian package iptables"),
        }
    })?;
    match output.status.code() {
        Some(0) => Ok(true),
        // `-C` answers 1 for a missing rule; `-D` answers 1 when there is nothing to delete.
        Some(1) => Ok(false),
        _ => Err(NetworkError::Masquerade {
            cidr: pod_cidr.to_string(),
            message: format!("{tool} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()),
        }),
    }
}

/// Makes sure traffic from `pod_cidr` to anywhere outside it is masqueraded; adds the rule once.
pub async fn ensure_masquerade(pod_cidr: &str) -> Result<(), NetworkError> {
    super::cni::parse_cidr(pod_cidr)?;
    if run(pod_cidr, &rule("-C", pod_cidr)).await? {
        return Ok(());
    }
    if run(pod_cidr, &rule("-A", pod_cidr)).await? {
        Ok(())
    } else {
        Err(NetworkError::Masquerade { cidr: pod_cidr.to_string(), message: "the rule could not be added".to_string() })
    }
}

/// Removes the rule of `pod_cidr` (every copy of it); succeeds when there is none.
pub async fn remove_masquerade(pod_cidr: &str) -> Result<(), NetworkError> {
    super::cni::parse_cidr(pod_cidr)?;
    while run(pod_cidr, &rule("-D", pod_cidr)).await? {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_masquerades_only_traffic_leaving_the_pod_cidr() {
        let args = rule("-A", "10.42.0.0/24");
        let text = args.join(" ");
        assert!(text.contains("-s 10.42.0.0/24 ! -d 10.42.0.0/24"), "{text}");
        assert!(text.ends_with("-j MASQUERADE"));
        assert_eq!(tool_for("fd00::/64"), "ip6tables");
    }
}
