//! The Endpoints controller: the legacy core/v1 Endpoints object of every Service with a selector, as
//! kube-controller-manager's endpoint-controller keeps it.
//!
//! - The object has the Service's name and labels (plus the headless marker); its subsets group the selected
//!   pods' addresses by the ports they serve (named target ports resolved per pod), ready pods under
//!   `addresses` and the others under `notReadyAddresses` (all under `addresses` with
//!   `publishNotReadyAddresses`). Terminating pods are left out unless the Service publishes every address.
//! - At most 1,000 addresses: beyond, the object is truncated (not-ready addresses first) and annotated
//!   `endpoints.kubernetes.io/over-capacity: truncated`.
//! - Written only when its subsets, labels or capacity annotation change; the
//!   `endpoints.kubernetes.io/last-change-trigger-time` annotation says when the change happened.
//! - Endpoints of a deleted Service are deleted (also leftovers found at start); Services without a selector
//!   are left to whoever writes their Endpoints.
//!
//! Which pods count, port resolution, hostnames and trigger times are shared with the EndpointSlice
//! controller ([`crate::endpointslice`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::endpointslice::{
    LABEL_HEADLESS, TriggerTimes, find_port, follow_services_and_pods, is_ipv6, is_service_ip_set, key_of,
    namespace_terminating, pod_ips, pod_reference, publishes_not_ready, service_selector, set_trigger_time,
    should_pod_be_in_endpoints, should_set_hostname,
};
use crate::events::{EventSink, EventType, reference_to};
use crate::informer::{Change, Informer};
use crate::pods::is_ready;
use crate::queue::{Requeue, WorkQueue, run_workers};

/// Addresses an Endpoints object holds at most.
pub const MAX_CAPACITY: usize = 1000;
/// The annotation marking a truncated Endpoints object.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Endpoints objects carrying this annotation are leader election records, not a Service's endpoints.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{what} for Service {key}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The Service.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// The address of `pod` for `service`: the pod IP of the Service's first IP family.
fn pod_address(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let families = service.spec.as_ref().and_then(|s| s.ip_families.as_deref()).unwrap_or_default();
    let want_v6 = match families.first() {
        Some(family) => family == "IPv6",
        None if is_service_ip_set(service) => {
            is_ipv6(service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or(""))
        }
        None => pod_ips(pod).first().is_some_and(|ip| is_ipv6(ip)),
    };
    let ip = pod_ips(pod).into_iter().find(|ip| is_ipv6(ip) == want_v6)?;
    Some(EndpointAddress {
        ip: ip.to_string(),
        hostname: should_set_hostname(pod, service)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        node_name: Some(pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()),
        target_ref: Some(pod_reference(pod)),
    })
}

/// Identifies an address across subsets: its IP and pod.
type AddressKey = (String, String);

fn address_key(address: &EndpointAddress) -> AddressKey {
    (address.ip.clone(), address.target_ref.as_ref().and_then(|t| t.uid.clone()).unwrap_or_default())
}

/// A port as a sortable key; `None` stands for "no port" (a headless Service without ports).
type PortKey = Option<(Option<String>, i32, Option<String>, Option<String>)>;

fn port_key(port: &EndpointPort) -> PortKey {
    Some((port.name.clone(), port.port, port.protocol.clone(), port.app_protocol.clone()))
}

/// The subsets of `service` for `pods`, packed as kube packs them: addresses grouped by the exact set of
/// ports they serve, sorted.
pub fn desired_subsets(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let tolerate_unready = publishes_not_ready(service);
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let headless = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    // Port → address → ready.
    let mut by_port: BTreeMap<PortKey, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(address) = pod_address(service, pod) else { continue };
        let ready = tolerate_unready || is_ready(pod);
        let key = address_key(&address);
        let mut add = |port: PortKey| {
            let seen = by_port.entry(port).or_default().entry(key.clone()).or_insert(ready);
            *seen = *seen || ready;
        };
        if ports.is_empty() {
            // Headless Services may have no ports.
            if headless {
                add(None);
            }
        } else {
            for port in ports {
                let Some(number) = find_port(pod, port) else { continue };
                add(port_key(&EndpointPort {
                    name: port.name.clone().filter(|n| !n.is_empty()),
                    port: number,
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                }));
            }
        }
        addresses.entry(key).or_insert(address);
    }
    // Group ports by the addresses (and readiness) they share.
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, members) in by_port {
        groups.entry(members.into_iter().collect()).or_default().push(port);
    }
    groups
        .into_iter()
        .map(|(members, ports)| {
            let pick = |want: bool| -> Option<Vec<EndpointAddress>> {
                let list: Vec<EndpointAddress> = members
                    .iter()
                    .filter(|(_, ready)| *ready == want)
                    .filter_map(|(key, _)| addresses.get(key).cloned())
                    .collect();
                (!list.is_empty()).then_some(list)
            };
            let ports: Vec<EndpointPort> = ports
                .into_iter()
                .flatten()
                .map(|(name, port, protocol, app_protocol)| EndpointPort { name, port, protocol, app_protocol })
                .collect();
            EndpointSubset { addresses: pick(true), not_ready_addresses: pick(false), ports: Some(ports) }
        })
        .collect()
}

fn count(subsets: &[EndpointSubset]) -> (usize, usize) {
    subsets.iter().fold((0, 0), |(ready, not_ready), s| {
        (
            ready + s.addresses.as_ref().map_or(0, Vec::len),
            not_ready + s.not_ready_addresses.as_ref().map_or(0, Vec::len),
        )
    })
}

/// Cuts subsets down to [`MAX_CAPACITY`] addresses as kube does: not-ready addresses go first; when the ready
/// ones alone are too many, only ready ones are kept. Each subset keeps its share, rounded up. Whether
/// anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let (ready, not_ready) = count(subsets);
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready { (MAX_CAPACITY, ready) } else { (MAX_CAPACITY - ready, not_ready) };
    let mut room = max;
    for subset in subsets.iter_mut() {
        let list = if truncate_ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        let size = list.as_ref().map_or(0, Vec::len);
        let share = (size * max).div_ceil(total).min(room);
        if let Some(list) = list.as_mut() {
            list.truncate(share);
        }
        room -= share.min(size);
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
        // Emptied lists are left out, as the API server would store them.
        for list in [&mut subset.addresses, &mut subset.not_ready_addresses] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                *list = None;
            }
        }
    }
    true
}

/// The labels of a Service's Endpoints: the Service's, plus the headless marker for a headless Service.
fn endpoints_labels(service: &Service) -> Option<BTreeMap<String, String>> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_service_ip_set(service) {
        labels.remove(LABEL_HEADLESS);
    } else {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    (!labels.is_empty()).then_some(labels)
}

/// The Endpoints object `service` should have given the `current` one, or `None` when `current` is right.
pub fn desired_endpoints(
    service: &Service,
    pods: &[Arc<Pod>],
    current: Option<&Endpoints>,
    trigger: Option<jiff::Timestamp>,
) -> Option<Endpoints> {
    let mut subsets = desired_subsets(service, pods);
    let truncated = truncate(&mut subsets);
    let labels = endpoints_labels(service);
    if let Some(current) = current {
        let over = current.metadata.annotations.as_ref().and_then(|a| a.get(OVER_CAPACITY)).is_some();
        let same_labels = current.metadata.labels.clone().unwrap_or_default() == labels.clone().unwrap_or_default();
        if current.subsets.clone().unwrap_or_default() == subsets && same_labels && over == truncated {
            return None;
        }
    }
    let mut endpoints = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        subsets: None,
    });
    endpoints.metadata.labels = labels;
    set_trigger_time(&mut endpoints.metadata, trigger);
    let annotations = endpoints.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if annotations.is_empty() {
        endpoints.metadata.annotations = None;
    }
    endpoints.subsets = (!subsets.is_empty()).then_some(subsets);
    Some(endpoints)
}

/// The controller.
pub struct EndpointsController {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
    queue: Arc<WorkQueue>,
    triggers: TriggerTimes,
    events: EventSink,
}

impl EndpointsController {
    /// The controller, following changes through the shared informers (register before they start).
    pub fn new(
        client: Client,
        services: Arc<Informer<Service>>,
        pods: Arc<Informer<Pod>>,
        endpoints: Arc<Informer<Endpoints>>,
        events: EventSink,
    ) -> Arc<EndpointsController> {
        let queue = WorkQueue::new();
        follow_services_and_pods(&services, &pods, &queue);
        let q = Arc::clone(&queue);
        endpoints.on_change(move |change| {
            // Endpoints deleted by someone else come back.
            if let Change::Deleted(endpoints) = change {
                q.add(key_of(&endpoints.metadata));
            }
        });
        Arc::new(EndpointsController {
            client,
            services,
            pods,
            endpoints,
            queue,
            triggers: TriggerTimes::new(),
            events,
        })
    }

    /// Reconciles Services with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.services.wait_synced(&shutdown).await;
        self.pods.wait_synced(&shutdown).await;
        self.endpoints.wait_synced(&shutdown).await;
        // Endpoints left behind by Services deleted while no controller ran.
        for endpoints in self.endpoints.list() {
            let leader = endpoints.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
            if !leader {
                self.queue.add(key_of(&endpoints.metadata));
            }
        }
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("endpoints", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }

    /// One reconcile of the Service `namespace/name`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
        let Some(service) = self.services.get(namespace, name) else {
            self.triggers.forget(key);
            if self.endpoints.get(namespace, name).is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(source) => {
                        return Err(SyncError::Api { what: "deleting Endpoints", key: key.to_string(), source });
                    }
                }
            }
            return Ok(Requeue::No);
        };
        let Some(selector) = service_selector(&service) else { return Ok(Requeue::No) };
        let empty = BTreeMap::new();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(namespace)
            .into_iter()
            .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
            .collect();
        // Computed on every sync, so that the next one knows what changed since this one.
        let trigger = self.triggers.compute(key, &service, &pods);
        let current = self.endpoints.get(namespace, name);
        let Some(wanted) = desired_endpoints(&service, &pods, current.as_deref(), trigger) else {
            return Ok(Requeue::No);
        };
        let result = match &current {
            None => api.create(&PostParams::default(), &wanted).await.map(|_| ()),
            Some(_) => api.replace(name, &PostParams::default(), &wanted).await.map(|_| ()),
        };
        match result {
            Ok(()) => Ok(Requeue::No),
            // A terminating namespace takes no new objects.
            Err(kube::Error::Api(e)) if current.is_none() && namespace_terminating(&e) => Ok(Requeue::No),
            Err(source) => {
                let (reason, note) = match current {
                    None => {
                        ("FailedToCreateEndpoint", format!("Failed to create endpoint for service {key}: {source}"))
                    }
                    Some(_) => ("FailedToUpdateEndpoint", format!("Failed to update endpoint {key}: {source}")),
                };
                self.events.publish(reference_to(&wanted), EventType::Warning, reason, "Update", note);
                Err(SyncError::Api { what: "writing Endpoints", key: key.to_string(), source })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::{Value, json};

    fn service(extra: Value) -> Service {
        let mut s = json!({"metadata": {"name": "web", "namespace": "d", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.0.0.1", "ipFamilies": ["IPv4"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}});
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                s["spec"][k] = v;
            }
        }
        serde_json::from_value(s).unwrap()
    }

    fn pod(name: &str, ip: &str, port: i32, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "d", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                    {"name": "http", "containerPort": port, "protocol": "TCP"}]}]},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                           "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
            .unwrap(),
        )
    }

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn subsets_hold_ready_and_not_ready_addresses_grouped_by_resolved_port() {
        let pods =
            vec![pod("a", "10.1.0.1", 8080, true), pod("b", "10.1.0.2", 8080, false), pod("c", "10.1.0.3", 9090, true)];
        let subsets = desired_subsets(&service(json!({})), &pods);
        assert_eq!(subsets.len(), 2);
        let on = |port: i32| subsets.iter().find(|s| s.ports.as_ref().unwrap()[0].port == port).unwrap();
        assert_eq!(ips(&on(8080).addresses), vec!["10.1.0.1"]);
        assert_eq!(ips(&on(8080).not_ready_addresses), vec!["10.1.0.2"]);
        assert_eq!(ips(&on(9090).addresses), vec!["10.1.0.3"]);
        let port = &on(9090).ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.protocol.as_deref()), (Some("http"), Some("TCP")));
        let address = &on(8080).addresses.as_ref().unwrap()[0];
        assert_eq!(address.node_name.as_deref(), Some("n1"));
        assert_eq!(address.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }

    #[test]
    fn terminating_pods_are_left_out_unless_every_address_is_published() {
        let mut going = pod("a", "10.1.0.1", 80, true).as_ref().clone();
        going.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        let pods = vec![Arc::new(going), pod("b", "10.1.0.2", 80, false)];
        let subsets = desired_subsets(&service(json!({})), &pods);
        assert_eq!(ips(&subsets[0].addresses), Vec::<&str>::new());
        assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.1.0.2"]);
        let published = desired_subsets(&service(json!({"publishNotReadyAddresses": true})), &pods);
        assert_eq!(ips(&published[0].addresses), vec!["10.1.0.1", "10.1.0.2"]);
    }

    #[test]
    fn more_than_a_thousand_addresses_are_truncated_not_ready_first() {
        let pods: Vec<Arc<Pod>> =
            (0..1100).map(|i| pod(&format!("p{i}"), &format!("10.1.{}.{}", i / 200, i % 200), 80, i < 950)).collect();
        let svc = service(json!({}));
        let endpoints = desired_endpoints(&svc, &pods, None, None).unwrap();
        let subsets = endpoints.subsets.as_ref().unwrap();
        let (ready, not_ready) = count(subsets);
        assert_eq!((ready, not_ready), (950, 50));
        assert_eq!(endpoints.metadata.annotations.as_ref().unwrap()[OVER_CAPACITY], "truncated");
        assert!(desired_endpoints(&svc, &pods, Some(&endpoints), None).is_none(), "a truncated object is stable");
    }

    #[test]
    fn unchanged_endpoints_are_not_rewritten_and_changes_carry_the_trigger_time() {
        let svc = service(json!({}));
        let pods = vec![pod("a", "10.1.0.1", 80, true)];
        let time: jiff::Timestamp = "2026-01-01T00:00:00.5Z".parse().unwrap();
        let first = desired_endpoints(&svc, &pods, None, Some(time)).unwrap();
        assert_eq!(first.metadata.name.as_deref(), Some("web"));
        assert_eq!(first.metadata.labels.as_ref().unwrap()["team"], "a");
        assert_eq!(
            first.metadata.annotations.as_ref().unwrap()[crate::endpointslice::LAST_CHANGE_TRIGGER_TIME],
            "2026-01-01T00:00:00.5Z"
        );
        assert!(desired_endpoints(&svc, &pods, Some(&first), None).is_none());
        let changed = desired_endpoints(&svc, &[pod("a", "10.1.0.1", 80, false)], Some(&first), None).unwrap();
        assert_eq!(ips(&changed.subsets.as_ref().unwrap()[0].not_ready_addresses), vec!["10.1.0.1"]);
        assert!(changed.metadata.annotations.is_none(), "no trigger time: the annotation goes");
    }

    #[test]
    fn a_headless_service_without_ports_lists_addresses_without_ports() {
        let svc = service(json!({"clusterIP": "None", "ports": null}));
        let endpoints = desired_endpoints(&svc, &[pod("a", "10.1.0.1", 80, true)], None, None).unwrap();
        let subset = &endpoints.subsets.as_ref().unwrap()[0];
        assert_eq!(ips(&subset.addresses), vec!["10.1.0.1"]);
        assert!(subset.ports.as_ref().unwrap().is_empty());
        assert_eq!(endpoints.metadata.labels.as_ref().unwrap()[LABEL_HEADLESS], "");
    }
}
