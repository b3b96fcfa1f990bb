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

/// Comment on the rules that exempt traffic to other nodes' pods from masquerading.
pub const PEER_COMMENT: &str = "gantry: pod traffic to another node's pods keeps its source";

fn peer_rule(operation: &str, pod_cidr: &str, peer_cidr: &str) -> Vec<String> {
    let mut args: Vec<String> = ["-w", "-t", "nat", operation, "POSTROUTING"].iter().map(|s| s.to_string()).collect();
    if operation == "-I" {
        // Before the masquerade rule, which would otherwise match first.
        args.push("1".to_string());
    }
    for s in ["-s", pod_cidr, "-d", peer_cidr, "-m", "comment", "--comment", PEER_COMMENT, "-j", "RETURN"] {
        args.push(s.to_string());
    }
    args
}

/// The (source, destination) pairs of the peer rules in `iptables -t nat -S POSTROUTING` output.
pub fn parse_peer_rules(listing: &str) -> Vec<(String, String)> {
    listing
        .lines()
        .filter(|line| line.contains(PEER_COMMENT))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |flag: &str| words.windows(2).find(|w| w[0] == flag).map(|w| w[1].to_string());
            Some((after("-s")?, after("-d")?))
        })
        .collect()
}

async fn peer_rules(tool: &'static str) -> Result<Vec<(String, String)>, NetworkError> {
    let output = tokio::process::Command::new(tool)
        .args(["-w", "-t", "nat", "-S", "POSTROUTING"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|err| NetworkError::Masquerade {
            cidr: String::new(),
            message: format!("cannot run {tool} ({err}); install the Debian package iptables"),
        })?;
    Ok(parse_peer_rules(&String::from_utf8_lossy(&output.stdout)))
}

/// Keeps traffic from `pod_cidr` to the other nodes' pod CIDRs (`peers`) unmasqueraded, so that pods see each
/// other's addresses across nodes as the Kubernetes network model asks: one RETURN rule per peer ahead of the
/// masquerade rule; rules for peers no longer listed are removed.
pub async fn sync_peer_exceptions(pod_cidr: &str, peers: &[String]) -> Result<(), NetworkError> {
    super::cni::parse_cidr(pod_cidr)?;
    let tool = tool_for(pod_cidr);
    let current = peer_rules(tool).await?;
    for (source, destination) in &current {
        if source != pod_cidr || !peers.contains(destination) {
            while run(pod_cidr, &peer_rule("-D", source, destination)).await? {}
        }
    }
    for peer in peers {
        if tool_for(peer) != tool || current.iter().any(|(s, d)| s == pod_cidr && d == peer) {
            continue;
        }
        run(pod_cidr, &peer_rule("-I", pod_cidr, peer)).await?;
    }
    Ok(())
}

/// Removes every peer rule (`gantry reset`); returns how many there were.
pub async fn remove_peer_exceptions() -> Result<usize, NetworkError> {
    let mut removed = 0;
    for tool in ["iptables", "ip6tables"] {
        let Ok(current) = peer_rules(tool).await else { continue };
        for (source, destination) in current {
            while run(&source, &peer_rule("-D", &source, &destination)).await? {}
            removed += 1;
        }
    }
    Ok(removed)
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

    #[test]
    fn peer_rules_go_first_and_are_found_again_in_the_listing() {
        let insert = peer_rule("-I", "10.42.0.0/24", "10.42.1.0/24").join(" ");
        assert!(insert.contains("POSTROUTING 1 -s 10.42.0.0/24 -d 10.42.1.0/24"), "{insert}");
        assert!(insert.ends_with("-j RETURN"));
        let listing = format!(
            "-P POSTROUTING ACCEPT\n-A POSTROUTING -s 10.42.0.0/24 -d 10.42.1.0/24 -m comment --comment \"{PEER_COMMENT}\" -j RETURN\n\
             -A POSTROUTING -s 10.42.0.0/24 ! -d 10.42.0.0/24 -m comment --comment \"{RULE_COMMENT}\" -j MASQUERADE\n"
        );
        assert_eq!(parse_peer_rules(&listing), vec![("10.42.0.0/24".to_string(), "10.42.1.0/24".to_string())]);
    }
}
