//! The Services every cluster has: `default/kubernetes` (the API servers) and `kube-system/kube-dns` (the node
//! agents' DNS servers), and the `kubernetes` Service's Endpoints and EndpointSlice.
//!
//! Each API server renews a Lease `kube-system/gantry-apiserver-<address>-<port>` and writes every live
//! server's address into the endpoints, so that with several servers the lists hold each one that is up (kube's
//! lease endpoint reconciler, with Lease objects instead of its private keys). All servers must share one
//! secure port: the endpoints carry the port of whichever server wrote them last.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use gantry_api::registry::ResourceType;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::objects::WriteOptions;
use crate::status::{ApiError, ApiResult};

/// The name of the API servers' Service (in `default`).
pub const KUBERNETES: &str = "kubernetes";
/// The name of the cluster DNS Service (in `kube-system`).
pub const KUBE_DNS: &str = "kube-dns";

/// The label on the Leases of API servers that serve the `kubernetes` Service.
const ENDPOINT_LEASE_LABEL: &str = "apiserver.gantry.dev/kubernetes-endpoint";
const MANAGER: &str = "gantry-apiserver";

fn options() -> WriteOptions {
    WriteOptions { field_manager: MANAGER.into(), ..Default::default() }
}

fn resource(api: &Api, group: &str, plural: &str) -> ApiResult<&'static ResourceType> {
    api.registry.by_plural(group, "v1", plural).ok_or_else(ApiError::no_route)
}

/// The address other components reach this API server at: the bind address when it is a specific one, else the
/// source address of the default route (loopback when there is none).
pub fn advertise_address(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    // Connecting a UDP socket sends nothing; it only makes the kernel choose the source address of the route.
    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|socket| {
            socket.connect((Ipv4Addr::new(192, 0, 2, 1), 53))?;
            socket.local_addr()
        })
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Creates `default/kubernetes` and `kube-system/kube-dns` when absent. A Service that exists is left as it
/// is; one that cannot be created (its address taken by another Service) is logged, not fatal.
pub(crate) async fn ensure_built_in(api: &Api, secure_port: u16) -> ApiResult<()> {
    let services = resource(api, "", "services")?;
    let network = api.service_network.clone();
    let kubernetes = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": KUBERNETES, "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP", "sessionAffinity": "None",
            "clusterIP": network.kubernetes_ip().to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}],
        },
    });
    let dns = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": KUBE_DNS, "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {
            "type": "ClusterIP", "clusterIP": network.cluster_dns.to_string(), "internalTrafficPolicy": "Local",
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    });
    for (namespace, service) in [("default", kubernetes), ("kube-system", dns)] {
        let name = service["metadata"]["name"].as_str().unwrap_or_default().to_string();
        match api.create(services, Some(namespace), service, &options()).await {
            Ok(_) => tracing::info!(namespace, service = name, "created built-in Service"),
            Err(e) if e.code == 409 => {}
            Err(e) if e.code == 422 => {
                tracing::error!(namespace, service = name, error = %e.message, "cannot create a built-in Service");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Keeps this server's Lease and the `kubernetes` endpoints current until `shutdown`, then gives up the Lease.
pub(crate) async fn run_endpoints(api: Arc<Api>, advertise: SocketAddr, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(api.service_network.endpoints_interval) => {}
        }
        if let Err(e) = sync_endpoints(&api, advertise).await {
            tracing::warn!(error = %e.message, "cannot update the kubernetes Service's endpoints");
        }
    }
    if let Ok(leases) = resource(&api, "coordination.k8s.io", "leases") {
        let _ = api.delete(leases, Some("kube-system"), &lease_name(advertise), &Default::default()).await;
    }
}

fn lease_name(advertise: SocketAddr) -> String {
    let ip: String =
        advertise.ip().to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("gantry-apiserver-{}-{}", ip.trim_matches('-'), advertise.port())
}

/// Renews this server's Lease, then writes the addresses of every server whose Lease is live.
pub(crate) async fn sync_endpoints(api: &Api, advertise: SocketAddr) -> ApiResult<()> {
    let leases = resource(api, "coordination.k8s.io", "leases")?;
    let interval = api.service_network.endpoints_interval.as_secs();
    let duration = (interval * 3).max(15);
    let now = jiff::Timestamp::now();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": lease_name(advertise), "namespace": "kube-system",
            "labels": {ENDPOINT_LEASE_LABEL: "true"}},
        "spec": {"holderIdentity": advertise.to_string(), "leaseDurationSeconds": duration,
            "renewTime": format!("{}.{:06}Z", now.strftime("%Y-%m-%dT%H:%M:%S"), now.subsec_microsecond())},
    });
    upsert(api, leases, "kube-system", lease).await?;

    let listed = api
        .store
        .list(leases.namespace_prefix(Some("kube-system")).as_bytes(), Default::default())
        .await
        .map_err(|e| ApiError::internal(format!("listing API server leases: {e}")))?;
    let mut addresses = BTreeSet::new();
    for kv in &listed.items {
        let Ok(lease) = crate::objects::from_stored(kv) else { continue };
        if lease["metadata"]["labels"][ENDPOINT_LEASE_LABEL] != "true" {
            continue;
        }
        let renewed = lease["spec"]["renewTime"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let ttl = lease["spec"]["leaseDurationSeconds"].as_i64().unwrap_or(0);
        let live = renewed.is_some_and(|r| now.duration_since(r) < jiff::SignedDuration::from_secs(ttl));
        let holder = lease["spec"]["holderIdentity"].as_str().and_then(|h| h.parse::<SocketAddr>().ok());
        if let (true, Some(holder)) = (live, holder)
            && holder.is_ipv4() == advertise.is_ipv4()
        {
            addresses.insert(holder.ip());
        }
    }
    addresses.insert(advertise.ip());
    let port = json!([{"name": "https", "port": advertise.port(), "protocol": "TCP"}]);
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": KUBERNETES, "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": addresses.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
            "ports": port}],
    });
    upsert(api, resource(api, "", "endpoints")?, "default", endpoints).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": KUBERNETES, "namespace": "default",
            "labels": {"kubernetes.io/service-name": KUBERNETES, "endpointslice.kubernetes.io/managed-by": MANAGER}},
        "addressType": if advertise.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": addresses.iter()
            .map(|ip| {
                let conditions = json!({"ready": true, "serving": true, "terminating": false});
                json!({"addresses": [ip.to_string()], "conditions": conditions})
            })
            .collect::<Vec<_>>(),
        "ports": port,
    });
    upsert(api, resource(api, "discovery.k8s.io", "endpointslices")?, "default", slice).await
}

/// Writes `desired`'s top-level fields (and labels) over the stored object, or creates it.
async fn upsert(api: &Api, resource: &'static ResourceType, namespace: &str, desired: Value) -> ApiResult<()> {
    let name = desired["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let updated = api
        .update_with(resource, Some(namespace), &name, None, false, |old| {
            let mut new = old.clone();
            if let Some(fields) = desired.as_object() {
                for (field, value) in fields.iter().filter(|(f, _)| f.as_str() != "metadata") {
                    new[field] = value.clone();
                }
            }
            if let Some(labels) = desired["metadata"]["labels"].as_object() {
                for (k, v) in labels {
                    new["metadata"]["labels"][k] = v.clone();
                }
            }
            api.finish_update(resource, old, new, None, Some(MANAGER))
        })
        .await;
    match updated {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => match api.create(resource, Some(namespace), desired, &options()).await {
            Ok(_) => Ok(()),
            // Another server created it a moment ago; the next round updates it.
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_bind_address_is_the_advertised_one() {
        let bind = IpAddr::V4(Ipv4Addr::new(192, 168, 7, 9));
        assert_eq!(advertise_address(bind), bind);
        assert!(!advertise_address(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).is_unspecified());
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(
            lease_name("10.0.0.5:6443".parse().unwrap_or(SocketAddr::from(([0; 4], 0)))),
            "gantry-apiserver-10-0-0-5-6443"
        );
    }
}
