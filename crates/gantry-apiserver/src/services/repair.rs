//! The repair pass: Services whose address or node port has no record get one back, and records no Service
//! uses are released once older than [`super::LEAK_GRACE`] (kube-apiserver's `RepairIPAddress` and node port
//! repair controllers, in one pass).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use gantry_store::{KeyValue, ListOptions, StoreError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::alloc::{IP_ADDRESS_PREFIX, NODE_PORT_PREFIX, Parent, cluster_ip, ip_key, node_ports, port_key, record};
use crate::api::Api;
use crate::status::{ApiError, ApiResult};

/// What one repair pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Records created for Services that held a value without one.
    pub restored: usize,
    /// Records deleted because no Service uses them.
    pub released: usize,
}

/// Runs the repair pass now and then every `repair_interval`, until `shutdown`.
pub(crate) async fn run(api: Arc<Api>, shutdown: CancellationToken) {
    loop {
        match repair_once(&api).await {
            Ok(report) if report != RepairReport::default() => {
                tracing::info!(restored = report.restored, released = report.released, "service allocations repaired");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message, "the service allocation repair pass failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(api.service_network.repair_interval) => {}
        }
    }
}

struct Stored {
    parent: Option<Parent>,
    created: Option<jiff::Timestamp>,
    revision: i64,
}

fn stored_records(items: &[KeyValue], prefix: &str) -> HashMap<String, Stored> {
    items
        .iter()
        .filter_map(|kv| {
            let name = std::str::from_utf8(&kv.key).ok()?.strip_prefix(prefix)?.to_string();
            let value: Value = serde_json::from_slice(&kv.value).ok()?;
            let created = value["metadata"]["creationTimestamp"].as_str().and_then(|t| t.parse().ok());
            Some((name, Stored { parent: Parent::of_record(&value), created, revision: kv.mod_revision }))
        })
        .collect()
}

/// One repair pass over every Service and allocation record.
pub async fn repair_once(api: &Api) -> ApiResult<RepairReport> {
    let store_err = |e: StoreError| ApiError::internal(format!("repairing service allocations: {e}"));
    // Records are read before Services: a record created after this read is not judged in this pass, and one
    // read here whose Service appears later is young enough to be spared.
    let ips = api.store.list(IP_ADDRESS_PREFIX.as_bytes(), ListOptions::default()).await.map_err(store_err)?;
    let ports = api.store.list(NODE_PORT_PREFIX.as_bytes(), ListOptions::default()).await.map_err(store_err)?;
    let ips = stored_records(&ips.items, IP_ADDRESS_PREFIX);
    let ports = stored_records(&ports.items, NODE_PORT_PREFIX);
    let services = api.registry.by_plural("", "v1", "services").ok_or_else(ApiError::no_route)?;
    let listed = api.store.list(services.key_prefix().as_bytes(), ListOptions::default()).await.map_err(store_err)?;

    let network = api.service_network.clone();
    let mut report = RepairReport::default();
    let mut used: HashSet<String> = HashSet::new();
    for kv in &listed.items {
        let Ok(service) = crate::objects::from_stored(kv) else { continue };
        let parent = Parent::of(&service);
        if let Some(ip) = cluster_ip(&service) {
            let key = ip_key(ip);
            used.insert(key.clone());
            let in_range = ip.parse::<Ipv4Addr>().ok().and_then(|a| network.cluster_ip_range.offset_of(a)).is_some();
            match ips.get(ip) {
                _ if !in_range => {
                    let range = network.cluster_ip_range;
                    let message = format!(
                        "Cluster IP [IPv4]:{ip} is not within the configured Service CIDR {range}; please recreate \
                         service"
                    );
                    warn_event(api, &service, "ClusterIPOutOfRange", message).await;
                }
                None => {
                    if restore(api, true, ip, &key, &parent).await? {
                        report.restored += 1;
                        let message = format!("Cluster IP [IPv4]: {ip} is not allocated; repairing");
                        warn_event(api, &service, "ClusterIPNotAllocated", message).await;
                    }
                }
                Some(stored) if stored.parent.as_ref() != Some(&parent) => {
                    let message =
                        format!("Cluster IP [IPv4]:{ip} was assigned to multiple services; please recreate service");
                    warn_event(api, &service, "ClusterIPAlreadyAllocated", message).await;
                }
                Some(_) => {}
            }
        }
        for port in node_ports(&service) {
            let key = port_key(port);
            used.insert(key.clone());
            match ports.get(&port.to_string()) {
                _ if !network.node_port_range.contains(port) => {
                    let range = network.node_port_range;
                    let message = format!("Port {port} is not within the port range {range}; please recreate service");
                    warn_event(api, &service, "PortOutOfRange", message).await;
                }
                None => {
                    if restore(api, false, &port.to_string(), &key, &parent).await? {
                        report.restored += 1;
                        let message = format!("Port {port} is not allocated; repairing");
                        warn_event(api, &service, "PortNotAllocated", message).await;
                    }
                }
                Some(stored) if stored.parent.as_ref() != Some(&parent) => {
                    let message = format!("Port {port} was assigned to multiple services; please recreate service");
                    warn_event(api, &service, "PortAlreadyAllocated", message).await;
                }
                Some(_) => {}
            }
        }
    }

    let now = jiff::Timestamp::now();
    let grace = jiff::SignedDuration::try_from(super::LEAK_GRACE).unwrap_or(jiff::SignedDuration::from_secs(60));
    let records =
        ips.iter().map(|(n, s)| (ip_key(n), s)).chain(ports.iter().map(|(n, s)| (format!("{NODE_PORT_PREFIX}{n}"), s)));
    for (key, stored) in records {
        if used.contains(&key) {
            continue;
        }
        // A record without a readable timestamp is treated as old: nothing this server writes lacks one.
        let old_enough = stored.created.is_none_or(|c| now.duration_since(c) > grace);
        if !old_enough {
            continue;
        }
        match api.store.delete(key.as_bytes(), Some(stored.revision)).await {
            Ok(_) => {
                report.released += 1;
                tracing::info!(key, parent = ?stored.parent.as_ref().map(|p| format!("{}/{}", p.namespace, p.name)),
                    "released an allocation no Service uses");
            }
            Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(e) => return Err(store_err(e)),
        }
    }
    Ok(report)
}

/// Creates a missing record; `false` when someone created it in the meantime.
async fn restore(api: &Api, ip: bool, name: &str, key: &str, parent: &Parent) -> ApiResult<bool> {
    match api.store.create(key.as_bytes(), record(ip, name, parent)).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(ApiError::internal(format!("repairing service allocations: {e}"))),
    }
}

/// Records a Warning event on the Service; failing to is only logged.
async fn warn_event(api: &Api, service: &Value, reason: &str, message: String) {
    let parent = Parent::of(service);
    tracing::warn!(namespace = %parent.namespace, service = %parent.name, reason, "{message}");
    let Some(events) = api.registry.by_plural("", "v1", "events") else { return };
    let now = crate::objects::now_rfc3339();
    // Named as kube's event recorder names them: the object's name, a dot, a unique hexadecimal suffix.
    let event_name = format!("{}.{}", parent.name, &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name, "namespace": parent.namespace},
        "involvedObject": {
            "apiVersion": "v1", "kind": "Service", "namespace": parent.namespace, "name": parent.name,
            "uid": service["metadata"]["uid"], "resourceVersion": service["metadata"]["resourceVersion"],
        },
        "reason": reason, "message": message, "type": "Warning",
        "source": {"component": "ipallocator-repair-controller"},
        "reportingComponent": "ipallocator-repair-controller",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let options = crate::objects::WriteOptions { field_manager: "gantry-apiserver".into(), ..Default::default() };
    if let Err(e) = api.create(events, Some(&parent.namespace), event, &options).await {
        tracing::warn!(reason, error = %e.message, "cannot record an event");
    }
}
