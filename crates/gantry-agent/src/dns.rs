//! The node's part of cluster DNS: the DNS server (gantry-dns) on the node's InternalIP, and the EndpointSlice
//! `kube-system/kube-dns-<node>` that makes the `kube-dns` Service reach it. The Service has
//! `internalTrafficPolicy: Local`, so each node's service proxy sends its pods' questions to its own server.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// The namespace of the `kube-dns` Service and of its slices.
pub const DNS_NAMESPACE: &str = "kube-system";
/// The Service pods reach cluster DNS through.
pub const DNS_SERVICE: &str = "kube-dns";
/// The label naming the Service a slice belongs to.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming the slice's manager.
const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This agent, as the manager of its DNS slice.
pub const SLICE_MANAGER: &str = "gantry-agent";
/// How often the slice is checked even without a watch event.
const RESYNC: Duration = Duration::from_secs(60);
/// How soon a failed write is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Starts the DNS server on `ip:port` for `domain`, forwarding to the resolvers of the node's /etc/resolv.conf
/// (never to `cluster_dns` or to itself). On failure the error is logged once and the node runs on without DNS.
pub async fn start(
    client: &Client,
    ip: IpAddr,
    port: u16,
    domain: &str,
    cluster_dns: IpAddr,
    shutdown: CancellationToken,
) -> Option<gantry_dns::RunningDns> {
    let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut exclude = vec![cluster_dns];
    if port == 53 {
        exclude.push(ip);
    }
    let mut config = gantry_dns::DnsConfig::new(SocketAddr::new(ip, port), domain);
    config.upstreams = gantry_dns::upstreams_from_resolv_conf(&resolv_conf, &exclude);
    match gantry_dns::serve(client.clone(), config, shutdown).await {
        Ok(running) => Some(running),
        Err(err) => {
            tracing::error!(error = %err, "cluster DNS is not served on this node; pods use the node's resolver");
            None
        }
    }
}

/// The slice that points `kube-dns` at this node's server.
pub fn endpoint_slice(node: &Node, addr: SocketAddr) -> EndpointSlice {
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let port = |name: &str, protocol: &str| EndpointPort {
        name: Some(name.to_string()),
        port: Some(i32::from(addr.port())),
        protocol: Some(protocol.to_string()),
        app_protocol: None,
    };
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{DNS_SERVICE}-{node_name}")),
            namespace: Some(DNS_NAMESPACE.to_string()),
            labels: Some(
                [(LABEL_SERVICE_NAME, DNS_SERVICE), (LABEL_MANAGED_BY, SLICE_MANAGER)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node_name.clone(),
                uid: node.metadata.uid.clone().unwrap_or_default(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        address_type: if addr.is_ipv4() { "IPv4" } else { "IPv6" }.to_string(),
        endpoints: vec![Endpoint {
            addresses: vec![addr.ip().to_string()],
            conditions: Some(EndpointConditions { ready: Some(true), serving: Some(true), terminating: Some(false) }),
            node_name: Some(node_name),
            ..Default::default()
        }],
        ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
    }
}

/// Whether `existing` says what `desired` says (the fields this agent sets; the API server may add others).
fn up_to_date(existing: &EndpointSlice, desired: &EndpointSlice) -> bool {
    let labels = existing.metadata.labels.clone().unwrap_or_default();
    let labelled = desired.metadata.labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let uids = |s: &EndpointSlice| -> Vec<String> {
        s.metadata.owner_references.iter().flatten().map(|o| o.uid.clone()).collect()
    };
    let endpoints = |s: &EndpointSlice| -> Vec<(Vec<String>, Option<String>, Option<bool>)> {
        s.endpoints
            .iter()
            .map(|e| (e.addresses.clone(), e.node_name.clone(), e.conditions.as_ref().and_then(|c| c.ready)))
            .collect()
    };
    let ports = |s: &EndpointSlice| -> Vec<(Option<String>, Option<i32>, Option<String>)> {
        s.ports.iter().flatten().map(|p| (p.name.clone(), p.port, p.protocol.clone())).collect()
    };
    labelled
        && uids(existing) == uids(desired)
        && existing.address_type == desired.address_type
        && endpoints(existing) == endpoints(desired)
        && ports(existing) == ports(desired)
}

/// Creates the slice, or rewrites it when it says something else.
async fn ensure(api: &Api<EndpointSlice>, desired: &EndpointSlice) -> Result<(), kube::Error> {
    let name = desired.metadata.name.clone().unwrap_or_default();
    match api.get_opt(&name).await? {
        None => {
            api.create(&PostParams::default(), desired).await?;
            tracing::info!(slice = %name, "wrote the cluster DNS EndpointSlice");
        }
        Some(existing) if up_to_date(&existing, desired) => {}
        Some(existing) => {
            let mut replacement = desired.clone();
            replacement.metadata.resource_version = existing.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &replacement).await?;
            tracing::info!(slice = %name, "rewrote the cluster DNS EndpointSlice");
        }
    }
    Ok(())
}

/// Keeps `desired` in place until `shutdown`: written at once, rewritten when it changes, recreated when it is
/// deleted (it is deleted with the Node, by its owner reference).
pub async fn keep_endpoint_slice(client: Client, desired: EndpointSlice, shutdown: CancellationToken) {
    let api: Api<EndpointSlice> = Api::namespaced(client, DNS_NAMESPACE);
    let name = desired.metadata.name.clone().unwrap_or_default();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api.clone(), config).default_backoff().boxed();
    let mut listing = false;
    let mut current: Option<EndpointSlice> = None;
    let mut check = true;
    loop {
        if check
            && !listing
            && !current.as_ref().is_some_and(|c| up_to_date(c, &desired))
            && let Err(err) = ensure(&api, &desired).await
        {
            tracing::warn!(slice = %name, error = %err, "writing the cluster DNS EndpointSlice");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
            continue;
        }
        check = false;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RESYNC) => {
                current = None;
                check = true;
            }
            event = events.next() => match event {
                None => return,
                Some(Err(err)) => tracing::debug!(slice = %name, error = %err, "watching the cluster DNS EndpointSlice"),
                Some(Ok(Event::Init)) => {
                    listing = true;
                    current = None;
                }
                Some(Ok(Event::InitApply(slice))) => current = Some(slice),
                Some(Ok(Event::InitDone)) => {
                    listing = false;
                    check = true;
                }
                Some(Ok(Event::Apply(slice))) => {
                    current = Some(slice);
                    check = true;
                }
                Some(Ok(Event::Delete(_))) => {
                    current = None;
                    check = true;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "n1", "uid": "u-1"}})).expect("node")
    }

    #[test]
    fn the_slice_points_kube_dns_at_this_nodes_server() {
        let slice = endpoint_slice(&node(), "192.168.5.2:1053".parse().unwrap());
        assert_eq!(slice.metadata.name.as_deref(), Some("kube-dns-n1"));
        assert_eq!(slice.metadata.namespace.as_deref(), Some("kube-system"));
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[LABEL_SERVICE_NAME], "kube-dns");
        assert_eq!(labels[LABEL_MANAGED_BY], "gantry-agent");
        let owner = &slice.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("Node", "n1", "u-1"));
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(slice.endpoints[0].addresses, vec!["192.168.5.2"]);
        assert_eq!(slice.endpoints[0].node_name.as_deref(), Some("n1"));
        let ports: Vec<(String, i32, String)> = slice
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.port.unwrap_or(0), p.protocol.clone().unwrap_or_default()))
            .collect();
        assert_eq!(ports, vec![("dns".into(), 1053, "UDP".into()), ("dns-tcp".into(), 1053, "TCP".into())]);
    }

    #[test]
    fn a_slice_with_another_port_or_address_is_out_of_date() {
        let desired = endpoint_slice(&node(), "192.168.5.2:53".parse().unwrap());
        let mut existing = desired.clone();
        existing.metadata.labels.get_or_insert_default().insert("extra".into(), "x".into());
        assert!(up_to_date(&existing, &desired));
        let moved = endpoint_slice(&node(), "192.168.5.3:53".parse().unwrap());
        assert!(!up_to_date(&moved, &desired));
        let other_port = endpoint_slice(&node(), "192.168.5.2:1053".parse().unwrap());
        assert!(!up_to_date(&other_port, &desired));
    }
}
