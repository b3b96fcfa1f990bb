//! The EndpointSlice controller: for every Service with a selector, EndpointSlices (`discovery.k8s.io/v1`) listing
//! the addresses of the pods it selects, as kube-controller-manager's endpointslice-controller does.
//!
//! - One set of slices per address type the Service serves (its `ipFamilies`), each slice holding endpoints that
//!   share one port mapping: a named `targetPort` resolved to different numbers on different pods puts those pods
//!   in different slices.
//! - Endpoint conditions follow kube's rules: `serving` is the pod's readiness, `terminating` its deletion,
//!   `ready` is serving and not terminating (always true with `publishNotReadyAddresses`).
//! - Packing is kube's: endpoints stay in the slice they are in; changed slices are filled up first, then the
//!   leftovers go to the unchanged slice they fill best, then to new slices; a slice that would be deleted is
//!   reused instead of creating one. Slices that do not change are not written. At most
//!   `max_endpoints_per_slice` (100 by default) endpoints a slice.
//! - A Service selecting no pods keeps one empty placeholder slice per address type.
//! - Services without a selector (and ExternalName Services) are left alone, and so are slices this controller
//!   does not manage. Topology hints are left out.
//!
//! The helpers shared with the Endpoints controller ([`crate::endpoints`]) live here too: which pods count,
//! named port resolution, endpoint hostnames, the last-change trigger time, and the wiring that queues a
//! Service when a pod it selects changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gantry_api::selector::LabelSelector;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType, reference_to};
use crate::informer::{Change, Informer};
pub use crate::meta::key_of;
use crate::pods::is_ready;
use crate::queue::{Requeue, WorkQueue, run_workers};

/// The label naming the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's name in [`LABEL_MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The label marking slices and Endpoints of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// When the change that led to this version of the endpoints happened (a pod turning ready, the Service
/// being created).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// kube-controller-manager's `--max-endpoints-per-slice` default.
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The informer index of managed slices by their Service (`namespace/name`).
const BY_SERVICE: &str = "service";

/// How long to wait before looking again when the informer has not shown this controller's own writes yet.
const STALE_RETRY: Duration = Duration::from_millis(100);

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
    /// Pods of the Service are bound to nodes the informer does not know; they were left out for now.
    #[error("Service {key}: pods on unknown nodes left out: {nodes:?}")]
    UnknownNodes {
        /// The Service.
        key: String,
        /// The nodes.
        nodes: Vec<String>,
    },
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers shared with the Endpoints controller.

/// The pods a Service selects, or `None` for Services this controller leaves to their owners (no selector,
/// ExternalName).
pub fn service_selector(service: &Service) -> Option<LabelSelector> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    // An empty selector is stored as none at all by kube-apiserver: both mean "endpoints managed elsewhere".
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    Some(LabelSelector::from_set(selector.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

fn cluster_ip(service: &Service) -> &str {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("")
}

/// Whether the Service has a cluster IP (it is not headless).
pub fn is_service_ip_set(service: &Service) -> bool {
    let ip = cluster_ip(service);
    !ip.is_empty() && ip != "None"
}

/// Whether the Service asks for pods' addresses whatever their readiness.
pub fn publishes_not_ready(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

/// Whether `ip` is an IPv6 address (anything else counts as IPv4, as in kube).
pub fn is_ipv6(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_ipv6())
}

/// The pod's IPs: `status.podIPs`, or `status.podIP` when the list is empty.
pub fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let listed: Vec<&str> =
        status.pod_ips.iter().flatten().map(|p| p.ip.as_str()).filter(|ip| !ip.is_empty()).collect();
    if !listed.is_empty() {
        return listed;
    }
    status.pod_ip.as_deref().filter(|ip| !ip.is_empty()).into_iter().collect()
}

/// Whether a pod's addresses belong in a Service's endpoints: not finished (Succeeded/Failed), has an IP, and
/// is not being deleted unless `include_terminating`.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Whether the endpoint gets the pod's hostname: the pod names the Service as its subdomain.
pub fn should_set_hostname(pod: &Pod, service: &Service) -> bool {
    let spec = pod.spec.as_ref();
    let hostname = spec.and_then(|s| s.hostname.as_deref()).unwrap_or("");
    let subdomain = spec.and_then(|s| s.subdomain.as_deref()).unwrap_or("");
    !hostname.is_empty()
        && Some(subdomain) == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace
}

/// The container port a Service port reaches on `pod`: a number as it is, a name looked up among the pod's
/// container ports (then its sidecars') with the same protocol. `None` when the pod has no such named port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars =
                spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// A reference to the pod an endpoint leads to.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Queues, in `queue`, the Service keys concerned by changes of Services and of the pods they select (before and
/// after a label change). Both endpoint controllers follow the same changes.
pub fn follow_services_and_pods(services: &Arc<Informer<Service>>, pods: &Arc<Informer<Pod>>, queue: &Arc<WorkQueue>) {
    let q = Arc::clone(queue);
    services.on_change(move |change| {
        let (Change::Added(service) | Change::Updated { new: service, .. } | Change::Deleted(service)) = change;
        q.add(key_of(&service.metadata));
    });
    let (q, services) = (Arc::clone(queue), Arc::clone(services));
    pods.on_change(move |change| {
        let (old, new) = match change {
            Change::Added(pod) | Change::Deleted(pod) => (None, pod.as_ref()),
            Change::Updated { old, new } => (Some(old.as_ref()), new.as_ref()),
        };
        if let Some(old) = old
            && !endpoints_relevant_change(old, new)
        {
            return;
        }
        let namespace = new.metadata.namespace.as_deref().unwrap_or("");
        let empty = BTreeMap::new();
        for service in services.list_namespace(namespace) {
            let Some(selector) = service_selector(&service) else { continue };
            let selects = |pod: &Pod| selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty));
            if selects(new) || old.is_some_and(selects) {
                q.add(key_of(&service.metadata));
            }
        }
    });
}

/// Whether a pod update can change any Service's endpoints (status heartbeats and annotations cannot).
fn endpoints_relevant_change(old: &Pod, new: &Pod) -> bool {
    old.metadata.labels != new.metadata.labels
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || pod_ips(old) != pod_ips(new)
        || is_ready(old) != is_ready(new)
        || ready_transition(old) != ready_transition(new)
        || old.status.as_ref().and_then(|s| s.phase.as_ref()) != new.status.as_ref().and_then(|s| s.phase.as_ref())
        || old.spec != new.spec
}

fn ready_transition(pod: &Pod) -> Option<jiff::Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready")?.last_transition_time.as_ref().map(|t| t.0)
}

/// Remembers, per Service, the pods' readiness transition times and the Service's creation, to say when the
/// change that a sync publishes happened (the `last-change-trigger-time` annotation), as kube's trigger time
/// tracker does: the earliest of the times that changed since the previous sync.
#[derive(Debug, Default)]
pub struct TriggerTimes {
    services: Mutex<HashMap<String, ServiceTimes>>,
}

#[derive(Debug, Default)]
struct ServiceTimes {
    pods: HashMap<String, Option<jiff::Timestamp>>,
    service: Option<jiff::Timestamp>,
}

impl TriggerTimes {
    /// No Service known.
    pub fn new() -> TriggerTimes {
        TriggerTimes::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, ServiceTimes>> {
        self.services.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The trigger time of this sync of `service` (key `key`) selecting `pods`; `None` when nothing with a time
    /// changed.
    pub fn compute(&self, key: &str, service: &Service, pods: &[Arc<Pod>]) -> Option<jiff::Timestamp> {
        let mut services = self.lock();
        let previous = services.remove(key);
        let mut next = ServiceTimes::default();
        let mut earliest: Option<jiff::Timestamp> = None;
        let mut consider = |t: Option<jiff::Timestamp>| {
            if let Some(t) = t {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        };
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let time = ready_transition(pod);
            let known = previous.as_ref().and_then(|p| p.pods.get(&name));
            if known != Some(&time) {
                consider(time);
            }
            next.pods.insert(name, time);
        }
        next.service = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if previous.as_ref().is_none_or(|p| next.service > p.service) {
            consider(next.service);
        }
        services.insert(key.to_string(), next);
        earliest
    }

    /// Forgets a Service (it was deleted).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// The trigger time as the annotation writes it (RFC 3339 with nanoseconds, as Go's `RFC3339Nano`).
pub fn format_trigger_time(time: jiff::Timestamp) -> String {
    time.to_string()
}

// ---------------------------------------------------------------------------------------------------------------
// Desired endpoints and slice packing (pure).

/// The endpoint ports of `pod` for `service`: each Service port resolved on the pod (ports the pod lacks are
/// left out); none for a headless Service without ports.
pub fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    ports
        .iter()
        .filter_map(|port| {
            let number = find_port(pod, port)?;
            Some(EndpointPort {
                port: Some(number),
                name: Some(port.name.clone().unwrap_or_default()),
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// The address types a Service's slices have: from `ipFamilies`, else its cluster IP, else (headless without
/// families) both.
pub fn address_types(service: &Service) -> Vec<&'static str> {
    let families = service.spec.as_ref().and_then(|s| s.ip_families.as_deref()).unwrap_or_default();
    let mut types: Vec<&'static str> = Vec::new();
    for family in families {
        let t = match family.as_str() {
            "IPv4" => "IPv4",
            "IPv6" => "IPv6",
            _ => continue,
        };
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if !types.is_empty() {
        return types;
    }
    if is_service_ip_set(service) {
        return vec![if is_ipv6(cluster_ip(service)) { "IPv6" } else { "IPv4" }];
    }
    vec!["IPv4", "IPv6"]
}

/// A port's name, number, protocol and application protocol.
type PortParts<'a> = (Option<&'a str>, Option<i32>, Option<&'a str>, Option<&'a str>);

/// A canonical key for a set of ports (order does not matter).
fn port_key(ports: &[EndpointPort]) -> String {
    let mut parts: Vec<PortParts<'_>> =
        ports.iter().map(|p| (p.name.as_deref(), p.port, p.protocol.as_deref(), p.app_protocol.as_deref())).collect();
    parts.sort();
    format!("{parts:?}")
}

/// What identifies an endpoint across syncs (kube's endpoint hash): its addresses, hostname and pod.
type EndpointKey = (Vec<String>, Option<String>, Option<String>, Option<String>);

fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref();
    (
        addresses,
        endpoint.hostname.clone(),
        target.and_then(|t| t.namespace.clone()),
        target.and_then(|t| t.name.clone()),
    )
}

fn normalized(endpoint: &Endpoint) -> Endpoint {
    let mut e = endpoint.clone();
    e.addresses.sort();
    e
}

/// The endpoint of `pod` for `service` in a slice of `address_type`; `zone` is the pod's node's zone.
pub fn pod_to_endpoint(pod: &Pod, zone: Option<String>, service: &Service, address_type: &str) -> Endpoint {
    let serving = is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    // A terminating pod is never ready, unless the Service publishes every address anyway.
    let ready = publishes_not_ready(service) || (serving && !terminating);
    let want_v6 = address_type == "IPv6";
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
    let mut addresses: Vec<String> =
        pod_ips(pod).into_iter().filter(|ip| is_ipv6(ip) == want_v6).map(str::to_string).collect();
    addresses.sort();
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: should_set_hostname(pod, service)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        node_name,
        zone: zone.filter(|z| !z.is_empty()),
        target_ref: Some(pod_reference(pod)),
        ..Endpoint::default()
    }
}

/// The labels a Service's slices carry: the Service's own (less the reserved ones), the headless marker, the
/// Service name and this controller.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let reserved = [LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS];
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !is_service_ip_set(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.into(), service.metadata.name.clone().unwrap_or_default());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

/// The controller reference a Service's slices carry.
pub fn service_owner_reference(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or("");
    slice.metadata.owner_references.iter().flatten().any(|r| r.kind == "Service" && r.uid == uid)
}

fn new_slice(service: &Service, ports: &[EndpointPort], address_type: &str) -> EndpointSlice {
    let name = service.metadata.name.as_deref().unwrap_or("");
    // A Service name too long for a slice name prefix falls back to kube's generic one.
    let prefix = if name.len() < 253 - 5 { format!("{name}-") } else { "slice-".to_string() };
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: service.metadata.namespace.clone(),
            labels: Some(slice_labels(service)),
            owner_references: Some(vec![service_owner_reference(service)]),
            ..ObjectMeta::default()
        },
        address_type: address_type.to_string(),
        endpoints: Vec::new(),
        ports: Some(ports.to_vec()),
    }
}

fn is_placeholder(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    slice.metadata.namespace == placeholder.metadata.namespace
        && slice.metadata.labels.clone().unwrap_or_default() == placeholder.metadata.labels.clone().unwrap_or_default()
        && slice.metadata.owner_references.clone().unwrap_or_default()
            == placeholder.metadata.owner_references.clone().unwrap_or_default()
        && slice.address_type == placeholder.address_type
        && slice.endpoints.is_empty()
        && slice.ports.as_deref().unwrap_or_default().is_empty()
}

/// The writes that bring a Service's slices to what its pods ask for.
#[derive(Debug, Default)]
pub struct Plan {
    /// New slices (named by the server from `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Changed slices (replaced at their resourceVersion).
    pub update: Vec<EndpointSlice>,
    /// Slices to delete.
    pub delete: Vec<EndpointSlice>,
    /// Nodes that pods are bound to but that are unknown: those pods were left out.
    pub unknown_nodes: Vec<String>,
}

/// Plans the slices of `service` for `pods`, given its current managed `slices`. `zone_of(node)` is the zone of
/// a known node (`Some(None)` for a node without a zone label, `None` for an unknown node).
pub fn plan(
    service: &Service,
    pods: &[Arc<Pod>],
    slices: &[Arc<EndpointSlice>],
    zone_of: &dyn Fn(&str) -> Option<Option<String>>,
    max_per_slice: usize,
) -> Plan {
    let max = max_per_slice.max(1);
    let types = address_types(service);
    let mut plan = Plan::default();
    let mut by_type: BTreeMap<&str, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if types.contains(&slice.address_type.as_str()) {
            by_type.entry(slice.address_type.as_str()).or_default().push(slice);
        } else {
            plan.delete.push(slice.as_ref().clone());
        }
    }
    for address_type in types {
        let existing = by_type.remove(address_type).unwrap_or_default();
        plan_address_type(service, pods, &existing, zone_of, max, address_type, &mut plan);
    }
    plan.unknown_nodes.sort();
    plan.unknown_nodes.dedup();
    plan
}

fn plan_address_type(
    service: &Service,
    pods: &[Arc<Pod>],
    existing: &[&EndpointSlice],
    zone_of: &dyn Fn(&str) -> Option<Option<String>>,
    max: usize,
    address_type: &str,
    plan: &mut Plan,
) {
    let mut create = Vec::new();
    let mut update = Vec::new();
    let mut delete = Vec::new();
    let mut existing_by_ports: BTreeMap<String, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(slice, service) {
            existing_by_ports.entry(port_key(slice.ports.as_deref().unwrap_or_default())).or_default().push(slice);
        } else {
            // A slice of an earlier Service of the same name.
            delete.push((*slice).clone());
        }
    }
    let headless_without_ports =
        service.spec.as_ref().and_then(|s| s.ports.as_ref()).is_none_or(Vec::is_empty) && cluster_ip(service) == "None";
    let mut desired: BTreeMap<String, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> = BTreeMap::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = if headless_without_ports { Vec::new() } else { endpoint_ports(service, pod) };
        let entry = desired.entry(port_key(&ports)).or_insert_with(|| (ports, BTreeMap::new()));
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("");
        let zone = match zone_of(node) {
            Some(zone) => zone,
            // A pod on an unknown node is left out (and the Service looked at again), unless the Service
            // publishes every address.
            None if publishes_not_ready(service) => None,
            None => {
                plan.unknown_nodes.push(node.to_string());
                continue;
            }
        };
        let endpoint = pod_to_endpoint(pod, zone, service, address_type);
        if !endpoint.addresses.is_empty() {
            entry.1.insert(endpoint_key(&endpoint), endpoint);
        }
    }
    for (key, (ports, endpoints)) in desired.iter_mut() {
        let slices = existing_by_ports.get(key).map(Vec::as_slice).unwrap_or_default();
        let mut packed = pack(service, slices, endpoints, ports, address_type, max);
        create.append(&mut packed.create);
        update.append(&mut packed.update);
        delete.append(&mut packed.delete);
    }
    for (key, slices) in &existing_by_ports {
        if !desired.contains_key(key) {
            delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }
    // A Service without endpoints keeps one empty placeholder slice.
    if existing.len() == delete.len() && create.is_empty() {
        let placeholder = new_slice(service, &[], address_type);
        if delete.len() == 1 && is_placeholder(&delete[0], &placeholder) {
            delete.clear();
        } else {
            create.push(placeholder);
        }
    }
    // Reuse slices about to be deleted for slices about to be created.
    let mut i = 0;
    while i < delete.len() && !create.is_empty() {
        if delete[i].address_type == address_type && owned_by(&delete[i], service) {
            let reused = delete.remove(i);
            if let Some(mut slice) = create.pop() {
                slice.metadata = reused.metadata;
                slice.metadata.labels = Some(slice_labels(service));
                update.push(slice);
            }
        } else {
            i += 1;
        }
    }
    plan.create.append(&mut create);
    plan.update.append(&mut update);
    plan.delete.append(&mut delete);
}

struct Packed {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<EndpointSlice>,
}

/// kube's packing of one port mapping's endpoints into its slices.
fn pack(
    service: &Service,
    existing: &[&EndpointSlice],
    desired: &mut BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    address_type: &str,
    max: usize,
) -> Packed {
    let labels = slice_labels(service);
    let mut to_update: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<EndpointSlice> = Vec::new();
    let mut delete = Vec::new();
    // 1. Keep the endpoints still wanted where they are, refreshed; drop the others.
    for slice in existing {
        let mut kept = Vec::new();
        let mut changed = false;
        for endpoint in &slice.endpoints {
            if let Some(want) = desired.remove(&endpoint_key(endpoint)) {
                if normalized(endpoint) != want {
                    changed = true;
                }
                kept.push(want);
            }
        }
        let labels_changed = slice.metadata.labels.as_ref() != Some(&labels);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                delete.push((*slice).clone());
            } else {
                let mut updated = (*slice).clone();
                updated.endpoints = kept;
                updated.metadata.labels = Some(labels.clone());
                to_update.push(updated);
            }
        } else if labels_changed {
            let mut updated = (*slice).clone();
            updated.metadata.labels = Some(labels.clone());
            to_update.push(updated);
        } else {
            unchanged.push((*slice).clone());
        }
    }
    // 2. Fill the slices being written anyway, fullest first.
    if !desired.is_empty() {
        to_update.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
        for slice in &mut to_update {
            while slice.endpoints.len() < max {
                let Some((_, endpoint)) = desired.pop_first() else { break };
                slice.endpoints.push(endpoint);
            }
        }
    }
    // 3. Put what is left in the unchanged slice it fills best, or in new slices.
    let mut create = Vec::new();
    while !desired.is_empty() {
        let mut fill = None;
        if desired.len() < max {
            let mut closest = max;
            for (i, slice) in unchanged.iter().enumerate() {
                let room = max as i64 - (desired.len() + slice.endpoints.len()) as i64;
                if room >= 0 && (room as usize) < closest {
                    closest = room as usize;
                    fill = Some(i);
                    if closest == 0 {
                        break;
                    }
                }
            }
        }
        let (mut slice, is_new) = match fill {
            Some(i) => (unchanged.remove(i), false),
            None => (new_slice(service, ports, address_type), true),
        };
        while slice.endpoints.len() < max {
            let Some((_, endpoint)) = desired.pop_first() else { break };
            slice.endpoints.push(endpoint);
        }
        if is_new {
            create.push(slice);
        } else {
            to_update.push(slice);
        }
    }
    Packed { create, update: to_update, delete }
}

// ---------------------------------------------------------------------------------------------------------------
// Tracking this controller's own writes.

/// The resourceVersions this controller wrote, per Service, so that a sync does not act on an informer that
/// has not shown them yet (kube's endpoint slice tracker): acting on such a view would create slices twice.
/// A write the informer never shows (the slice came and went while the watch was down) stops holding syncs
/// back after [`WRITTEN_TTL`].
#[derive(Debug, Default)]
struct Written {
    by_service: Mutex<WrittenMap>,
}

/// How long this controller's writes hold syncs back at most.
const WRITTEN_TTL: Duration = Duration::from_secs(30);

/// Per Service: when it was last written, and the resourceVersion of each slice written (`None`: deleted).
type WrittenMap = HashMap<String, (Instant, HashMap<String, Option<u64>>)>;

impl Written {
    fn lock(&self) -> MutexGuard<'_, WrittenMap> {
        self.by_service.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a slice written at `version` (`None`: deleted).
    fn record(&self, key: &str, slice: &str, version: Option<u64>) {
        let mut written = self.lock();
        let entry = written.entry(key.to_string()).or_insert_with(|| (Instant::now(), HashMap::new()));
        entry.0 = Instant::now();
        entry.1.insert(slice.to_string(), version);
    }

    /// Whether the informer's `slices` of a Service miss one of this controller's writes.
    fn stale(&self, key: &str, slices: &[Arc<EndpointSlice>]) -> bool {
        let written = self.lock();
        let Some((at, versions)) = written.get(key) else { return false };
        if at.elapsed() > WRITTEN_TTL {
            return false;
        }
        let shown: HashMap<&str, Option<u64>> = slices
            .iter()
            .map(|s| {
                let version = s.metadata.resource_version.as_deref().and_then(|v| v.parse().ok());
                (s.metadata.name.as_deref().unwrap_or(""), version)
            })
            .collect();
        versions.iter().any(|(name, version)| match (version, shown.get(name.as_str())) {
            (None, Some(_)) => true,
            (None, None) => false,
            (Some(_), None) => true,
            (Some(wrote), Some(seen)) => seen.is_some_and(|seen| seen < *wrote),
        })
    }

    /// The informer showed a slice deleted: there is nothing more to wait for about it.
    fn deleted(&self, key: &str, slice: &str) {
        let mut written = self.lock();
        if let Some((_, versions)) = written.get_mut(key) {
            versions.remove(slice);
            if versions.is_empty() {
                written.remove(key);
            }
        }
    }

    /// Forgets a Service's writes once the informer shows them all.
    fn settle(&self, key: &str) {
        self.lock().remove(key);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The controller.

/// The controller.
pub struct EndpointSliceController {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    slices: Arc<Informer<EndpointSlice>>,
    nodes: Arc<Informer<Node>>,
    queue: Arc<WorkQueue>,
    written: Arc<Written>,
    triggers: TriggerTimes,
    max_per_slice: usize,
    events: EventSink,
}

/// The Service a managed slice belongs to (`namespace/name`), if the slice is this controller's.
fn managed_slice_service(slice: &EndpointSlice) -> Option<String> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    let service = labels.get(LABEL_SERVICE_NAME)?;
    Some(format!("{}/{service}", slice.metadata.namespace.as_deref().unwrap_or("")))
}

impl EndpointSliceController {
    /// The controller, following changes through the shared informers (register before they start).
    pub fn new(
        client: Client,
        services: Arc<Informer<Service>>,
        pods: Arc<Informer<Pod>>,
        slices: Arc<Informer<EndpointSlice>>,
        nodes: Arc<Informer<Node>>,
        max_per_slice: usize,
        events: EventSink,
    ) -> Arc<EndpointSliceController> {
        slices.add_index(BY_SERVICE, |slice: &EndpointSlice| managed_slice_service(slice).into_iter().collect());
        let queue = WorkQueue::new();
        follow_services_and_pods(&services, &pods, &queue);
        let written = Arc::new(Written::default());
        let (q, w) = (Arc::clone(&queue), Arc::clone(&written));
        slices.on_change(move |change| {
            let (Change::Added(slice) | Change::Updated { new: slice, .. } | Change::Deleted(slice)) = change;
            let Some(key) = managed_slice_service(slice) else { return };
            if let Change::Deleted(_) = change {
                w.deleted(&key, slice.metadata.name.as_deref().unwrap_or(""));
            }
            // Someone else's change (or the informer catching up with ours): look again.
            q.add(key);
        });
        Arc::new(EndpointSliceController {
            client,
            services,
            pods,
            slices,
            nodes,
            queue,
            written,
            triggers: TriggerTimes::new(),
            max_per_slice,
            events,
        })
    }

    /// Reconciles Services with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.services.wait_synced(&shutdown).await;
        self.pods.wait_synced(&shutdown).await;
        self.slices.wait_synced(&shutdown).await;
        self.nodes.wait_synced(&shutdown).await;
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("endpointslice", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }

    /// One reconcile of the Service `namespace/name`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(service) = self.services.get(namespace, name) else {
            // Its slices go with it through the garbage collector (they are owned by it).
            self.triggers.forget(key);
            return Ok(Requeue::No);
        };
        let Some(selector) = service_selector(&service) else { return Ok(Requeue::No) };
        if service.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::No);
        }
        let slices = self.slices.by_index(BY_SERVICE, key);
        if self.written.stale(key, &slices) {
            return Ok(Requeue::After(STALE_RETRY));
        }
        self.written.settle(key);
        let empty = BTreeMap::new();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(namespace)
            .into_iter()
            .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
            .collect();
        let trigger = self.triggers.compute(key, &service, &pods);
        let zone_of = |node: &str| {
            let node = self.nodes.get("", node)?;
            Some(node.metadata.labels.as_ref().and_then(|l| l.get("topology.kubernetes.io/zone")).cloned())
        };
        let plan = plan(&service, &pods, &slices, &zone_of, self.max_per_slice);
        if let Err(err) = self.apply(key, namespace, plan.create, plan.update, plan.delete, trigger).await {
            let note = format!("Error updating Endpoint Slices for Service {key}: {err}");
            self.events.publish(
                reference_to(service.as_ref()),
                EventType::Warning,
                "FailedToUpdateEndpointSlices",
                "Update",
                note,
            );
            return Err(err);
        }
        if !plan.unknown_nodes.is_empty() {
            return Err(SyncError::UnknownNodes { key: key.to_string(), nodes: plan.unknown_nodes });
        }
        Ok(Requeue::No)
    }

    async fn apply(
        &self,
        key: &str,
        namespace: &str,
        create: Vec<EndpointSlice>,
        update: Vec<EndpointSlice>,
        delete: Vec<EndpointSlice>,
        trigger: Option<jiff::Timestamp>,
    ) -> Result<(), SyncError> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let api_error =
            |what: &'static str| move |source: kube::Error| SyncError::Api { what, key: key.to_string(), source };
        let version = |slice: &EndpointSlice| -> Option<u64> {
            slice.metadata.resource_version.as_deref().and_then(|v| v.parse().ok())
        };
        for mut slice in create {
            set_trigger_time(&mut slice.metadata, trigger);
            match api.create(&PostParams::default(), &slice).await {
                Ok(created) => {
                    self.written.record(key, created.metadata.name.as_deref().unwrap_or(""), version(&created));
                }
                // A terminating namespace takes no new objects; the slices go with it.
                Err(kube::Error::Api(e)) if namespace_terminating(&e) => return Ok(()),
                Err(source) => return Err(api_error("creating an EndpointSlice")(source)),
            }
        }
        for mut slice in update {
            set_trigger_time(&mut slice.metadata, trigger);
            let name = slice.metadata.name.clone().unwrap_or_default();
            let updated = api.replace(&name, &PostParams::default(), &slice).await;
            let updated = updated.map_err(api_error("updating an EndpointSlice"))?;
            self.written.record(key, &name, version(&updated));
        }
        for slice in delete {
            let name = slice.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.written.record(key, &name, None),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(api_error("deleting an EndpointSlice")(source)),
            }
        }
        Ok(())
    }
}

/// Whether a create failed because its namespace is being deleted (then it is dropped, as kube drops it).
pub fn namespace_terminating(status: &kube::core::Status) -> bool {
    status.code == 403
        && status.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

/// Sets (or, without a trigger time, removes) the last-change-trigger-time annotation.
pub fn set_trigger_time(meta: &mut ObjectMeta, trigger: Option<jiff::Timestamp>) {
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    match trigger {
        Some(time) => {
            annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), format_trigger_time(time));
        }
        None => {
            annotations.remove(LAST_CHANGE_TRIGGER_TIME);
        }
    }
    if annotations.is_empty() {
        meta.annotations = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Value, json};

    fn service(extra: Value) -> Service {
        let mut s = json!({"metadata": {"name": "web", "namespace": "d", "uid": "svc-uid", "labels": {"team": "a"},
                                        "creationTimestamp": "2026-01-01T00:00:00Z"},
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
                           "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                           "lastTransitionTime": "2026-01-01T00:01:00Z"}]}}))
            .unwrap(),
        )
    }

    fn zone(node: &str) -> Option<Option<String>> {
        (node == "n1").then(|| Some("zone-a".to_string()))
    }

    /// The plan's writes applied to `existing`, as the server would store them (created slices get names).
    fn applied(existing: &[Arc<EndpointSlice>], plan: &Plan) -> Vec<Arc<EndpointSlice>> {
        let mut by_name: BTreeMap<String, EndpointSlice> =
            existing.iter().map(|s| (s.metadata.name.clone().unwrap(), s.as_ref().clone())).collect();
        for s in &plan.delete {
            by_name.remove(s.metadata.name.as_deref().unwrap());
        }
        for s in &plan.update {
            by_name.insert(s.metadata.name.clone().unwrap(), s.clone());
        }
        for (i, s) in plan.create.iter().enumerate() {
            let mut s = s.clone();
            let name = format!("web-new{i}-{}", by_name.len());
            s.metadata.name = Some(name.clone());
            by_name.insert(name, s);
        }
        by_name.into_values().map(Arc::new).collect()
    }

    #[test]
    fn a_named_target_port_resolving_differently_puts_pods_in_different_slices() {
        let pods =
            vec![pod("a", "10.1.0.1", 8080, true), pod("b", "10.1.0.2", 9090, true), pod("c", "10.1.0.3", 8080, true)];
        let plan = plan(&service(json!({})), &pods, &[], &zone, 100);
        assert_eq!(plan.create.len(), 2);
        let mut by_port: Vec<(i32, usize)> =
            plan.create.iter().map(|s| (s.ports.as_ref().unwrap()[0].port.unwrap(), s.endpoints.len())).collect();
        by_port.sort();
        assert_eq!(by_port, vec![(8080, 2), (9090, 1)]);
        let slice = &plan.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.address_type, "IPv4");
        let labels = slice.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_SERVICE_NAME], "web");
        assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(labels["team"], "a");
        let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Service", "svc-uid", Some(true)));
    }

    #[test]
    fn conditions_follow_readiness_termination_and_publish_not_ready() {
        let svc = service(json!({}));
        let conditions = |p: &Pod, svc: &Service| {
            let c = pod_to_endpoint(p, None, svc, "IPv4").conditions.unwrap();
            (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
        };
        let ready = pod("a", "10.1.0.1", 80, true);
        assert_eq!(conditions(&ready, &svc), (true, true, false));
        let unready = pod("b", "10.1.0.2", 80, false);
        assert_eq!(conditions(&unready, &svc), (false, false, false));
        let mut terminating = ready.as_ref().clone();
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-01-01T00:02:00Z".parse().unwrap()));
        assert_eq!(conditions(&terminating, &svc), (false, true, true), "terminating pods are never ready");
        let publish = service(json!({"publishNotReadyAddresses": true}));
        assert_eq!(conditions(&unready, &publish), (true, false, false));
        let endpoint = pod_to_endpoint(&ready, Some("zone-a".into()), &svc, "IPv4");
        assert_eq!(endpoint.addresses, vec!["10.1.0.1"]);
        assert_eq!(endpoint.node_name.as_deref(), Some("n1"));
        assert_eq!(endpoint.zone.as_deref(), Some("zone-a"));
        assert_eq!(endpoint.target_ref.unwrap().name.as_deref(), Some("a"));
        assert!(pod_to_endpoint(&ready, None, &svc, "IPv6").addresses.is_empty());
    }

    #[test]
    fn a_hundred_and_fifty_endpoints_fill_two_slices_of_at_most_a_hundred() {
        let pods: Vec<Arc<Pod>> =
            (0..150).map(|i| pod(&format!("p{i:03}"), &format!("10.1.{}.{}", i / 200, i % 200), 80, true)).collect();
        let plan = plan(&service(json!({})), &pods, &[], &zone, 100);
        let mut sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![50, 100]);
    }

    #[test]
    fn slices_that_match_the_pods_are_not_rewritten() {
        let svc = service(json!({}));
        let pods = vec![pod("a", "10.1.0.1", 80, true), pod("b", "10.1.0.2", 80, false)];
        let first = plan(&svc, &pods, &[], &zone, 100);
        let slices = applied(&[], &first);
        let again = plan(&svc, &pods, &slices, &zone, 100);
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty(), "{again:?}");
    }

    #[test]
    fn a_readiness_change_updates_the_slice_in_place() {
        let svc = service(json!({}));
        let slices = applied(&[], &plan(&svc, &[pod("a", "10.1.0.1", 80, false)], &[], &zone, 100));
        let next = plan(&svc, &[pod("a", "10.1.0.1", 80, true)], &slices, &zone, 100);
        assert!(next.create.is_empty() && next.delete.is_empty());
        assert_eq!(next.update.len(), 1);
        assert_eq!(next.update[0].metadata.name, slices[0].metadata.name);
        assert_eq!(next.update[0].endpoints[0].conditions.as_ref().unwrap().ready, Some(true));
    }

    #[test]
    fn leftover_endpoints_go_to_the_unchanged_slice_they_fill_best() {
        let svc = service(json!({}));
        let pods = |range: std::ops::Range<usize>| -> Vec<Arc<Pod>> {
            range.map(|i| pod(&format!("p{i:03}"), &format!("10.1.{}.{}", i / 200, i % 200), 80, true)).collect()
        };
        // Slices of 95 and 50 endpoints, both unchanged.
        let big = applied(&[], &plan(&svc, &pods(0..95), &[], &zone, 100));
        let small = applied(&[], &plan(&svc, &pods(95..145), &[], &zone, 100));
        let mut existing = big.clone();
        let mut renamed = small[0].as_ref().clone();
        renamed.metadata.name = Some("web-small".into());
        existing.push(Arc::new(renamed));
        let next = plan(&svc, &pods(0..148), &existing, &zone, 100);
        assert!(next.create.is_empty() && next.delete.is_empty());
        assert_eq!(next.update.len(), 1, "only the slice receiving the new endpoints is written");
        assert_eq!(next.update[0].metadata.name, big[0].metadata.name, "the fullest slice they fit in");
        assert_eq!(next.update[0].endpoints.len(), 98);
    }

    #[test]
    fn changed_slices_are_filled_before_new_slices_are_created() {
        let svc = service(json!({}));
        let slices = applied(&[], &plan(&svc, &[pod("a", "10.1.0.1", 80, true)], &[], &zone, 100));
        let next = plan(&svc, &[pod("a", "10.1.0.1", 80, false), pod("b", "10.1.0.2", 80, true)], &slices, &zone, 100);
        assert!(next.create.is_empty());
        assert_eq!(next.update.len(), 1);
        assert_eq!(next.update[0].endpoints.len(), 2);
    }

    #[test]
    fn a_service_without_endpoints_keeps_one_placeholder_slice() {
        let svc = service(json!({}));
        let first = plan(&svc, &[], &[], &zone, 100);
        assert_eq!(first.create.len(), 1);
        assert!(first.create[0].endpoints.is_empty() && first.create[0].ports.as_ref().unwrap().is_empty());
        let slices = applied(&[], &first);
        let again = plan(&svc, &[], &slices, &zone, 100);
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
        // The first pod reuses the placeholder instead of replacing it.
        let filled = plan(&svc, &[pod("a", "10.1.0.1", 80, true)], &slices, &zone, 100);
        assert!(filled.create.is_empty() && filled.delete.is_empty());
        assert_eq!(filled.update[0].metadata.name, slices[0].metadata.name);
        assert_eq!(filled.update[0].ports.as_ref().unwrap()[0].port, Some(80));
    }

    #[test]
    fn pods_without_ips_finished_pods_and_pods_on_unknown_nodes_are_left_out() {
        let svc = service(json!({}));
        let mut no_ip = pod("a", "", 80, true).as_ref().clone();
        no_ip.status.as_mut().unwrap().pod_ips = None;
        let mut done = pod("b", "10.1.0.2", 80, true).as_ref().clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut lost = pod("c", "10.1.0.3", 80, true).as_ref().clone();
        lost.spec.as_mut().unwrap().node_name = Some("gone".into());
        let plan = plan(&svc, &[Arc::new(no_ip), Arc::new(done), Arc::new(lost)], &[], &zone, 100);
        assert_eq!(plan.unknown_nodes, vec!["gone"]);
        assert_eq!(plan.create.len(), 1);
        assert!(plan.create[0].endpoints.is_empty());
    }

    #[test]
    fn slices_of_other_owners_and_address_types_are_deleted() {
        let svc = service(json!({}));
        let mut slices = applied(&[], &plan(&svc, &[pod("a", "10.1.0.1", 80, true)], &[], &zone, 100));
        let mut v6 = slices[0].as_ref().clone();
        v6.metadata.name = Some("web-v6".into());
        v6.address_type = "IPv6".into();
        slices.push(Arc::new(v6));
        let next = plan(&svc, &[pod("a", "10.1.0.1", 80, true)], &slices, &zone, 100);
        let deleted: Vec<_> = next.delete.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
        assert_eq!(deleted, vec!["web-v6"]);
        assert!(next.create.is_empty() && next.update.is_empty());
    }

    #[test]
    fn the_hostname_is_set_when_the_pod_subdomain_names_the_service() {
        let svc = service(json!({}));
        let mut p = pod("a", "10.1.0.1", 80, true).as_ref().clone();
        p.spec.as_mut().unwrap().hostname = Some("a0".into());
        assert_eq!(pod_to_endpoint(&p, None, &svc, "IPv4").hostname, None);
        p.spec.as_mut().unwrap().subdomain = Some("web".into());
        assert_eq!(pod_to_endpoint(&p, None, &svc, "IPv4").hostname.as_deref(), Some("a0"));
    }

    #[test]
    fn address_types_come_from_ip_families_then_the_cluster_ip() {
        assert_eq!(address_types(&service(json!({"ipFamilies": ["IPv6", "IPv4"]}))), vec!["IPv6", "IPv4"]);
        assert_eq!(address_types(&service(json!({"ipFamilies": null, "clusterIP": "fd00::1"}))), vec!["IPv6"]);
        assert_eq!(address_types(&service(json!({"ipFamilies": null, "clusterIP": "None"}))), vec!["IPv4", "IPv6"]);
    }

    #[test]
    fn services_without_selectors_and_external_names_are_not_managed() {
        assert!(service_selector(&service(json!({}))).is_some());
        assert!(service_selector(&service(json!({"selector": null}))).is_none());
        assert!(service_selector(&service(json!({"selector": {}}))).is_none());
        assert!(service_selector(&service(json!({"type": "ExternalName"}))).is_none());
    }

    #[test]
    fn named_ports_match_name_and_protocol_and_numbers_pass_through() {
        let p = pod("a", "10.1.0.1", 8080, true);
        let port = |target: Value, protocol: &str| -> ServicePort {
            serde_json::from_value(json!({"port": 80, "targetPort": target, "protocol": protocol})).unwrap()
        };
        assert_eq!(find_port(&p, &port(json!("http"), "TCP")), Some(8080));
        assert_eq!(find_port(&p, &port(json!("http"), "UDP")), None);
        assert_eq!(find_port(&p, &port(json!("metrics"), "TCP")), None);
        assert_eq!(find_port(&p, &port(json!(9000), "TCP")), Some(9000));
    }

    #[test]
    fn the_trigger_time_is_the_earliest_change_since_the_previous_sync() {
        let svc = service(json!({}));
        let times = TriggerTimes::new();
        let first = times.compute("d/web", &svc, &[pod("a", "10.1.0.1", 80, true)]);
        assert_eq!(first, Some("2026-01-01T00:00:00Z".parse().unwrap()), "the Service's creation");
        assert_eq!(times.compute("d/web", &svc, &[pod("a", "10.1.0.1", 80, true)]), None, "nothing changed");
        let mut b = pod("b", "10.1.0.2", 80, true).as_ref().clone();
        b.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-01-01T00:05:00Z".parse().unwrap()));
        let next = times.compute("d/web", &svc, &[pod("a", "10.1.0.1", 80, true), Arc::new(b)]);
        assert_eq!(next, Some("2026-01-01T00:05:00Z".parse().unwrap()));
    }

    #[test]
    fn writes_hold_syncs_back_until_the_informer_shows_them() {
        let written = Written::default();
        let slice = |name: &str, version: &str| -> Arc<EndpointSlice> {
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": name, "resourceVersion": version},
                                              "addressType": "IPv4", "endpoints": []}))
                .unwrap(),
            )
        };
        written.record("d/web", "web-1", Some(7));
        written.record("d/web", "web-2", None);
        assert!(written.stale("d/web", &[]), "the created slice is not shown yet");
        assert!(written.stale("d/web", &[slice("web-1", "6")]), "an older version");
        assert!(
            written.stale("d/web", &[slice("web-1", "7"), slice("web-2", "3")]),
            "the deleted slice is still shown"
        );
        assert!(!written.stale("d/web", &[slice("web-1", "7")]));
        assert!(!written.stale("d/other", &[]));
    }
}
