//! Host-gateway routing between nodes: every other Node's pod CIDR is routed via that Node's InternalIP, so a
//! pod reaches pods on other nodes without an overlay. It needs the nodes on one layer-2 network, as flannel's
//! host-gw backend does; a node the kernel cannot reach directly gets no route, and a warning says why.
//!
//! The routes carry protocol number [`ROUTE_PROTOCOL`] so that the agent (and `gantry reset`) can tell its own
//! routes from everyone else's: a sync lists the routes of that protocol, replaces the ones that changed and
//! removes those of Nodes that went away or lost their address.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// The protocol number on the routes the agent installs (`ip route ... proto 247`).
pub const ROUTE_PROTOCOL: u8 = 247;

/// A route command that failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// `ip` could not be run.
    #[error("running `ip {args}` (is iproute2 installed?): {source}")]
    Spawn {
        /// The arguments.
        args: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `ip` refused.
    #[error("`ip {args}` failed: {message}")]
    Failed {
        /// The arguments.
        args: String,
        /// What it printed on stderr.
        message: String,
    },
    /// `ip -j route` printed something that is not its JSON.
    #[error("reading the routing table: {0}")]
    Listing(#[from] serde_json::Error),
}

/// The routes this node wants: every other Node's pod CIDR via its InternalIP (CIDR → gateway).
pub fn desired_routes<'a>(nodes: impl IntoIterator<Item = &'a Node>, own_name: &str) -> BTreeMap<String, IpAddr> {
    let mut routes = BTreeMap::new();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(own_name) || node.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).filter(|c| !c.is_empty()) else {
            continue;
        };
        let address = node.status.as_ref().and_then(|s| s.addresses.as_ref()).and_then(|addresses| {
            addresses.iter().find(|a| a.type_ == "InternalIP").and_then(|a| a.address.parse::<IpAddr>().ok())
        });
        if let Some(address) = address {
            routes.insert(cidr.to_string(), address);
        }
    }
    routes
}

#[derive(serde::Deserialize)]
struct ListedRoute {
    dst: String,
    #[serde(default)]
    gateway: Option<String>,
}

/// Reads `ip -j route show proto 247` output: CIDR → gateway.
pub fn parse_listing(json: &str) -> Result<BTreeMap<String, Option<IpAddr>>, serde_json::Error> {
    let routes: Vec<ListedRoute> = if json.trim().is_empty() { Vec::new() } else { serde_json::from_str(json)? };
    Ok(routes.into_iter().map(|r| (r.dst, r.gateway.and_then(|g| g.parse().ok()))).collect())
}

async fn ip(args: &[&str]) -> Result<String, RouteError> {
    let joined = args.join(" ");
    let output = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|source| RouteError::Spawn { args: joined.clone(), source })?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(RouteError::Failed { args: joined, message });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The routes the agent installed (CIDR → gateway).
pub async fn installed() -> Result<BTreeMap<String, Option<IpAddr>>, RouteError> {
    let protocol = ROUTE_PROTOCOL.to_string();
    Ok(parse_listing(&ip(&["-j", "route", "show", "proto", &protocol]).await?)?)
}

/// Makes the routing table hold exactly `desired` among the agent's routes. Each route is handled on its own:
/// one that cannot be installed (its gateway not directly reachable) is logged and does not stop the others.
pub async fn sync(desired: &BTreeMap<String, IpAddr>) -> Result<(), RouteError> {
    let protocol = ROUTE_PROTOCOL.to_string();
    let current = installed().await?;
    for (cidr, gateway) in &current {
        if !desired.contains_key(cidr) {
            tracing::info!(%cidr, ?gateway, "removing the route of a node that is gone");
            if let Err(err) = ip(&["route", "del", cidr, "proto", &protocol]).await {
                tracing::warn!(error = %err, "route not removed");
            }
        }
    }
    for (cidr, gateway) in desired {
        if current.get(cidr).copied().flatten() == Some(*gateway) {
            continue;
        }
        let via = gateway.to_string();
        match ip(&["route", "replace", cidr, "via", &via, "proto", &protocol]).await {
            Ok(_) => tracing::info!(%cidr, %via, "pod CIDR of another node routed"),
            Err(err) => tracing::warn!(
                error = %err, %cidr, %via,
                "cannot route another node's pods: host-gateway routing needs the nodes on one network"
            ),
        }
    }
    Ok(())
}

/// Removes every route the agent installed, and the masquerading exemptions that go with them (`gantry
/// reset`); returns how many routes there were.
pub async fn remove_all() -> Result<usize, RouteError> {
    let protocol = ROUTE_PROTOCOL.to_string();
    let current = installed().await?;
    for cidr in current.keys() {
        ip(&["route", "del", cidr, "proto", &protocol]).await?;
    }
    if let Err(err) = gantry_runtime::network::masquerade::remove_peer_exceptions().await {
        tracing::warn!(error = %err, "masquerading exemptions not removed");
    }
    Ok(current.len())
}

/// Follows the Nodes and keeps the routes (and the exemptions of pod-to-pod traffic from masquerading, for the
/// pods of `own_cidr`) in step until `shutdown`. The routes stay when the agent stops: the
/// pods keep running, and keep reaching the other nodes' pods, while the agent restarts.
pub async fn run(client: Client, own_name: String, own_cidr: String, shutdown: CancellationToken) {
    let api: Api<Node> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, Node>> = None;
    let mut synced = false;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        let changed = match event {
            None => return,
            Some(Err(err)) => {
                tracing::debug!(error = %err, "node watch interrupted; it resumes");
                false
            }
            Some(Ok(watcher::Event::Init)) => {
                listing = Some(BTreeMap::new());
                false
            }
            Some(Ok(watcher::Event::InitApply(node))) => {
                if let Some(listing) = listing.as_mut() {
                    listing.insert(node.metadata.name.clone().unwrap_or_default(), node);
                }
                false
            }
            Some(Ok(watcher::Event::InitDone)) => {
                if let Some(listed) = listing.take() {
                    nodes = listed;
                }
                true
            }
            Some(Ok(watcher::Event::Apply(node))) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                let before = nodes.get(&name).map(|n| desired_routes([n], &own_name));
                let after = desired_routes([&node], &own_name);
                nodes.insert(name, node);
                before.as_ref() != Some(&after)
            }
            Some(Ok(watcher::Event::Delete(node))) => {
                nodes.remove(node.metadata.name.as_deref().unwrap_or_default());
                true
            }
        };
        if changed || !synced {
            if listing.is_some() {
                continue;
            }
            let desired = desired_routes(nodes.values(), &own_name);
            match sync(&desired).await {
                Ok(()) => synced = true,
                Err(err) => tracing::warn!(error = %err, "routes to the other nodes' pods not synced"),
            }
            let peers: Vec<String> = desired.keys().cloned().collect();
            if let Err(err) = gantry_runtime::network::masquerade::sync_peer_exceptions(&own_cidr, &peers).await {
                tracing::warn!(error = %err, "pod traffic to other nodes may be masqueraded");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        let addresses: Vec<_> = ip.into_iter().map(|ip| json!({"type": "InternalIP", "address": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": addresses},
        }))
        .unwrap()
    }

    #[test]
    fn every_other_node_with_a_range_and_an_address_gets_a_route() {
        let nodes = [
            node("a", Some("10.42.0.0/24"), Some("192.168.5.1")),
            node("b", Some("10.42.1.0/24"), Some("192.168.5.2")),
            node("c", None, Some("192.168.5.3")),
            node("d", Some("10.42.3.0/24"), None),
        ];
        let routes = desired_routes(&nodes, "a");
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert_eq!(routes["10.42.1.0/24"], "192.168.5.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_listing_of_ip_is_read_with_and_without_gateways() {
        let json = r#"[{"dst":"10.42.1.0/24","gateway":"192.168.5.2","dev":"eth0","protocol":"247","flags":[]},
                       {"dst":"10.42.2.0/24","dev":"eth0","protocol":"247","flags":[]}]"#;
        let routes = parse_listing(json).unwrap();
        assert_eq!(routes["10.42.1.0/24"], Some("192.168.5.2".parse().unwrap()));
        assert_eq!(routes["10.42.2.0/24"], None);
        assert!(parse_listing("").unwrap().is_empty());
        assert!(parse_listing("not json").is_err());
    }
}
