//! Claiming and releasing Services' cluster IPs and node ports: one store record per address or port, created
//! with create-if-absent, so that whoever creates the record owns the value, whichever API server they ran in.
//!
//! Node ports use one key per port rather than kube-apiserver's single compare-and-swapped bitmap: concurrent
//! Service writes then never contend on one hot key (the bitmap makes every allocation in the cluster retry
//! against every other), and ports and addresses share one claim/release/repair path.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use bytes::Bytes;
use gantry_api::registry::ResourceType;
use gantry_api::validation::{FieldError, Path};
use gantry_store::{ListOptions, StoreError};
use serde_json::{Value, json};

use crate::api::Api;
use crate::status::{ApiError, ApiResult, Cause};

/// Where `IPAddress` objects live: one per allocated cluster IP, named by the address.
pub const IP_ADDRESS_PREFIX: &str = "/registry/networking.k8s.io/ipaddresses/";
/// Where node port records live: one per allocated port, named by the number.
pub const NODE_PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// Random picks tried before scanning the whole range for a free value.
const RANDOM_TRIES: usize = 16;

/// The Service a record belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Parent {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl Parent {
    pub(crate) fn of(obj: &Value) -> Parent {
        let meta = &obj["metadata"];
        Parent {
            namespace: meta["namespace"].as_str().unwrap_or_default().to_string(),
            name: meta["name"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// The Service a stored record names.
    pub(crate) fn of_record(record: &Value) -> Option<Parent> {
        let parent = &record["spec"]["parentRef"];
        Some(Parent {
            namespace: parent["namespace"].as_str()?.to_string(),
            name: parent["name"].as_str()?.to_string(),
        })
    }
}

/// What one Service write claimed (undone if the write fails) and gave up (released once it succeeded).
#[derive(Debug)]
#[must_use = "a claim must be finished after the write or undone when it fails"]
pub(crate) struct Change {
    parent: Parent,
    created: Vec<String>,
    released: Vec<String>,
}

impl Change {
    fn new(parent: Parent) -> Change {
        Change { parent, created: Vec::new(), released: Vec::new() }
    }
}

/// The record stored for a claimed value: an `IPAddress` for addresses, the same shape for ports.
pub(crate) fn record(ip: bool, name: &str, parent: &Parent) -> Bytes {
    let mut metadata = json!({
        "name": name,
        "uid": uuid::Uuid::new_v4().to_string(),
        "creationTimestamp": crate::objects::now_rfc3339(),
    });
    let mut value = if ip {
        metadata["labels"] = json!({
            "ipaddress.kubernetes.io/ip-family": "IPv4",
            "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
        });
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IPAddress", "metadata": metadata})
    } else {
        json!({"metadata": metadata})
    };
    value["spec"] = json!({"parentRef": {
        "group": "", "resource": "services", "namespace": parent.namespace, "name": parent.name,
    }});
    Bytes::from(value.to_string())
}

pub(crate) fn ip_key(ip: &str) -> String {
    format!("{IP_ADDRESS_PREFIX}{ip}")
}

pub(crate) fn port_key(port: i64) -> String {
    format!("{NODE_PORT_PREFIX}{port}")
}

pub(crate) fn is_service(resource: &ResourceType) -> bool {
    resource.group.is_empty() && resource.kind == "Service"
}

fn service_type(obj: &Value) -> &str {
    obj["spec"]["type"].as_str().filter(|t| !t.is_empty()).unwrap_or("ClusterIP")
}

/// The Service's cluster IP, when it has one (not headless, not ExternalName).
pub(crate) fn cluster_ip(obj: &Value) -> Option<&str> {
    if service_type(obj) == "ExternalName" {
        return None;
    }
    let spec = &obj["spec"];
    let ip = spec["clusterIP"].as_str().filter(|s| !s.is_empty()).or_else(|| spec["clusterIPs"][0].as_str())?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

fn takes_node_ports(obj: &Value) -> bool {
    matches!(service_type(obj), "NodePort" | "LoadBalancer")
}

fn gets_node_ports(obj: &Value) -> bool {
    match service_type(obj) {
        "NodePort" => true,
        "LoadBalancer" => obj["spec"]["allocateLoadBalancerNodePorts"] != false,
        _ => false,
    }
}

fn needs_health_check_port(obj: &Value) -> bool {
    service_type(obj) == "LoadBalancer" && obj["spec"]["externalTrafficPolicy"] == "Local"
}

fn is_external(obj: &Value) -> bool {
    let external_ips = obj["spec"]["externalIPs"].as_array().is_some_and(|a| !a.is_empty());
    takes_node_ports(obj) || (service_type(obj) == "ClusterIP" && external_ips)
}

fn node_port_of(port: &Value) -> i64 {
    port["nodePort"].as_i64().unwrap_or(0)
}

/// Every node port the Service holds, `healthCheckNodePort` included.
pub(crate) fn node_ports(obj: &Value) -> BTreeSet<i64> {
    let mut used = BTreeSet::new();
    if takes_node_ports(obj) {
        for port in obj["spec"]["ports"].as_array().into_iter().flatten() {
            let n = node_port_of(port);
            if n != 0 {
                used.insert(n);
            }
        }
    }
    if needs_health_check_port(obj)
        && let Some(n) = obj["spec"]["healthCheckNodePort"].as_i64().filter(|n| *n != 0)
    {
        used.insert(n);
    }
    used
}

/// Clears what an update's new type no longer has, when the client left it as it was (kube-apiserver's
/// `dropTypeDependentFields`): turning a NodePort Service into a ClusterIP one gives up its node ports, into an
/// ExternalName one its address, without the client having to remove them.
pub(crate) fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let Some(spec) = new.get("spec").cloned() else { return };
    let old_spec = &old["spec"];
    let same = |field: &str| old_spec.get(field) == spec.get(field);
    let mut drop = Vec::new();
    if service_type(old) != "ExternalName" && service_type(new) == "ExternalName" {
        if same("clusterIP") && same("clusterIPs") {
            drop.extend(["clusterIP", "clusterIPs"]);
        }
        for field in ["ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"] {
            if same(field) {
                drop.push(field);
            }
        }
    }
    if needs_health_check_port(old) && !needs_health_check_port(new) && same("healthCheckNodePort") {
        drop.push("healthCheckNodePort");
    }
    if service_type(old) == "LoadBalancer" && service_type(new) != "LoadBalancer" {
        for field in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if same(field) {
                drop.push(field);
            }
        }
    }
    if is_external(old) && !is_external(new) && same("externalTrafficPolicy") {
        drop.push("externalTrafficPolicy");
    }
    let ports_same = {
        let ports = |s: &Value| s["ports"].as_array().map(|a| a.iter().map(node_port_of).collect::<Vec<_>>());
        ports(old_spec) == ports(&spec)
    };
    let clear_node_ports = takes_node_ports(old) && !takes_node_ports(new) && ports_same;
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else { return };
    for field in drop {
        spec.remove(field);
    }
    if clear_node_ports {
        for port in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(port) = port.as_object_mut() {
                port.remove("nodePort");
            }
        }
    }
}

/// Fills an update's left-out address and node ports from the stored Service (kube-apiserver's
/// `patchAllocatedValues`): a PUT of a manifest that never named them keeps what was allocated.
fn keep_allocated_values(old: &Value, new: &mut Value) {
    let keeps_ip = service_type(old) != "ExternalName" && service_type(new) != "ExternalName";
    let new_ip_unset = new["spec"]["clusterIP"].as_str().is_none_or(str::is_empty);
    if keeps_ip && new_ip_unset && old["spec"]["clusterIP"].as_str().is_some_and(|s| !s.is_empty()) {
        new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
        if !old["spec"]["clusterIPs"].is_null() {
            new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
    }
    if takes_node_ports(old) && takes_node_ports(new) {
        let by_name: HashMap<&str, i64> = old["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (p["name"].as_str().unwrap_or_default(), node_port_of(p)))
            .collect();
        let taken: HashSet<i64> =
            new["spec"]["ports"].as_array().into_iter().flatten().map(node_port_of).filter(|n| *n != 0).collect();
        for port in new["spec"]["ports"].as_array_mut().into_iter().flatten() {
            if node_port_of(port) != 0 {
                continue;
            }
            if let Some(&n) = by_name.get(port["name"].as_str().unwrap_or_default())
                && n != 0
                && !taken.contains(&n)
            {
                port["nodePort"] = json!(n);
            }
        }
    }
    if needs_health_check_port(old)
        && needs_health_check_port(new)
        && new["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0) == 0
        && !old["spec"]["healthCheckNodePort"].is_null()
    {
        new["spec"]["healthCheckNodePort"] = old["spec"]["healthCheckNodePort"].clone();
    }
}

/// Why a claim failed.
enum Refused {
    /// Another Service holds the value.
    Taken,
    /// The store failed.
    Store(StoreError),
}

impl Api {
    /// Claims the address and node ports a Service about to be written needs (`old`: the stored version, on
    /// update), writing the automatic ones into `new`. With `dry_run` it only checks requested values.
    pub(crate) async fn claim_service(
        &self,
        resource: &ResourceType,
        old: Option<&Value>,
        new: &mut Value,
        dry_run: bool,
    ) -> ApiResult<Change> {
        if let Some(old) = old {
            keep_allocated_values(old, new);
        }
        let mut change = Change::new(Parent::of(new));
        match self.claim_into(resource, old, new, dry_run, &mut change).await {
            Ok(()) => Ok(change),
            Err(e) => {
                self.undo_claim(change).await;
                Err(e)
            }
        }
    }

    async fn claim_into(
        &self,
        resource: &ResourceType,
        old: Option<&Value>,
        new: &mut Value,
        dry_run: bool,
        change: &mut Change,
    ) -> ApiResult<()> {
        let network = self.service_network.clone();
        let name = change.parent.name.clone();
        let invalid = |path: Path, value: Value, detail: String| {
            let e = FieldError::invalid(&path, value, detail);
            let cause = Cause { reason: e.kind.reason().to_string(), message: e.body(), field: e.field.clone() };
            self.invalid(resource, &name, vec![cause])
        };

        // The address.
        let old_ip = old.and_then(cluster_ip).map(str::to_string);
        let wants_ip = service_type(new) != "ExternalName" && new["spec"]["clusterIP"] != "None";
        let mut kept_ip = None;
        if wants_ip {
            match cluster_ip(new).map(str::to_string) {
                Some(ip) if Some(&ip) == old_ip.as_ref() => kept_ip = Some(ip),
                Some(ip) => {
                    let shown = match new["spec"]["clusterIPs"].as_array() {
                        Some(list) if !list.is_empty() => Value::Array(list.clone()),
                        _ => json!([ip]),
                    };
                    let path = Path::root("spec").child("clusterIPs");
                    let range = network.cluster_ip_range;
                    if ip.parse::<Ipv4Addr>().ok().and_then(|a| range.offset_of(a)).is_none() {
                        return Err(invalid(
                            path,
                            shown,
                            format!(
                                "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. \
                                 The range of valid IPs is {range}"
                            ),
                        ));
                    }
                    match self.claim(true, &ip, &change.parent, dry_run).await {
                        Ok(true) => change.created.push(ip_key(&ip)),
                        Ok(false) => {}
                        Err(Refused::Taken) => {
                            return Err(invalid(
                                path,
                                shown,
                                format!("failed to allocate IP {ip}: provided IP is already allocated"),
                            ));
                        }
                        Err(Refused::Store(e)) => return Err(store_failure("serviceIP", e)),
                    }
                    if new["spec"]["clusterIPs"].as_array().is_none_or(Vec::is_empty) {
                        new["spec"]["clusterIPs"] = json!([ip]);
                    }
                    new["spec"]["clusterIP"] = json!(ip);
                    kept_ip = Some(ip);
                }
                None if dry_run => {}
                None => {
                    let ip = self.claim_any_ip(&change.parent).await?;
                    change.created.push(ip_key(&ip));
                    new["spec"]["clusterIP"] = json!(ip);
                    new["spec"]["clusterIPs"] = json!([ip]);
                    kept_ip = Some(ip);
                }
            }
        }
        if let Some(old_ip) = old_ip
            && kept_ip.as_ref() != Some(&old_ip)
        {
            change.released.push(ip_key(&old_ip));
        }

        // The node ports: requested ones first, so that an automatic pick cannot take a port a later entry
        // of the same Service asks for.
        let old_ports = old.map(node_ports).unwrap_or_default();
        let mut mine = BTreeSet::new();
        let ports_path = Path::root("spec").child("ports");
        let count = new["spec"]["ports"].as_array().map_or(0, Vec::len);
        let mut by_service_port: HashMap<i64, i64> = HashMap::new();
        if takes_node_ports(new) {
            for i in 0..count {
                let port = &new["spec"]["ports"][i];
                let n = node_port_of(port);
                if n == 0 {
                    continue;
                }
                let path = ports_path.index(i).child("nodePort");
                self.claim_requested_port(n, path, &old_ports, &mut mine, dry_run, change, &invalid).await?;
                by_service_port.entry(port["port"].as_i64().unwrap_or(0)).or_insert(n);
            }
        }
        if gets_node_ports(new) && !dry_run {
            for i in 0..count {
                if node_port_of(&new["spec"]["ports"][i]) != 0 {
                    continue;
                }
                // One port number over TCP and UDP shares one node port, as in kube-apiserver.
                let service_port = new["spec"]["ports"][i]["port"].as_i64().unwrap_or(0);
                let n = match by_service_port.get(&service_port) {
                    Some(&n) => n,
                    None => {
                        let n = self.claim_any_port(&change.parent).await?;
                        change.created.push(port_key(n));
                        n
                    }
                };
                mine.insert(n);
                by_service_port.insert(service_port, n);
                new["spec"]["ports"][i]["nodePort"] = json!(n);
            }
        }
        if needs_health_check_port(new) {
            match new["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0) {
                0 if dry_run => {}
                0 => {
                    let n = self.claim_any_port(&change.parent).await?;
                    change.created.push(port_key(n));
                    mine.insert(n);
                    new["spec"]["healthCheckNodePort"] = json!(n);
                }
                n => {
                    let path = Path::root("spec").child("healthCheckNodePort");
                    self.claim_requested_port(n, path, &old_ports, &mut mine, dry_run, change, &invalid).await?;
                }
            }
        }
        change.released.extend(old_ports.difference(&mine).map(|n| port_key(*n)));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the state of one claim_into pass, split out to keep it readable
    async fn claim_requested_port(
        &self,
        n: i64,
        path: Path,
        old_ports: &BTreeSet<i64>,
        mine: &mut BTreeSet<i64>,
        dry_run: bool,
        change: &mut Change,
        invalid: &(dyn Fn(Path, Value, String) -> ApiError + Sync),
    ) -> ApiResult<()> {
        let range = self.service_network.node_port_range;
        if !range.contains(n) {
            return Err(invalid(
                path,
                json!(n),
                format!("provided port is not in the valid range. The range of valid ports is {range}"),
            ));
        }
        if !mine.contains(&n) && !old_ports.contains(&n) {
            match self.claim(false, &n.to_string(), &change.parent, dry_run).await {
                Ok(true) => change.created.push(port_key(n)),
                Ok(false) => {}
                Err(Refused::Taken) => {
                    return Err(invalid(path, json!(n), "provided port is already allocated".into()));
                }
                Err(Refused::Store(e)) => return Err(store_failure("nodePort", e)),
            }
        }
        mine.insert(n);
        Ok(())
    }

    /// Creates the record of one value for `parent`. `Ok(true)`: created now; `Ok(false)`: it already was
    /// this Service's (or, with `dry_run`, it is free).
    async fn claim(&self, ip: bool, name: &str, parent: &Parent, dry_run: bool) -> Result<bool, Refused> {
        let key = if ip { ip_key(name) } else { format!("{NODE_PORT_PREFIX}{name}") };
        let existing = if dry_run {
            match self.store.get(key.as_bytes()).await {
                Ok(kv) => kv,
                Err(StoreError::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(Refused::Store(e)),
            }
        } else {
            match self.store.create(key.as_bytes(), record(ip, name, parent)).await {
                Ok(_) => return Ok(true),
                Err(StoreError::AlreadyExists { .. }) => match self.store.get(key.as_bytes()).await {
                    Ok(kv) => kv,
                    // Released in between: try once more rather than report a conflict nobody holds.
                    Err(StoreError::NotFound { .. }) => {
                        return match self.store.create(key.as_bytes(), record(ip, name, parent)).await {
                            Ok(_) => Ok(true),
                            Err(StoreError::AlreadyExists { .. }) => Err(Refused::Taken),
                            Err(e) => Err(Refused::Store(e)),
                        };
                    }
                    Err(e) => return Err(Refused::Store(e)),
                },
                Err(e) => return Err(Refused::Store(e)),
            }
        };
        let owner = serde_json::from_slice::<Value>(&existing.value).ok().and_then(|r| Parent::of_record(&r));
        if owner.as_ref() == Some(parent) { Ok(false) } else { Err(Refused::Taken) }
    }

    async fn claim_any_ip(&self, parent: &Parent) -> ApiResult<String> {
        let range = self.service_network.cluster_ip_range;
        let name = |offset: u32| range.nth(offset).map(|ip| ip.to_string()).unwrap_or_default();
        let offset = self.claim_any(true, range.reserved(), range.usable(), &name, parent, "serviceIP").await?;
        Ok(name(offset))
    }

    async fn claim_any_port(&self, parent: &Parent) -> ApiResult<i64> {
        let range = self.service_network.node_port_range;
        let name = |offset: u32| (i64::from(range.first) + i64::from(offset) - 1).to_string();
        let offset = self.claim_any(false, range.reserved(), range.size(), &name, parent, "nodePort").await?;
        Ok(i64::from(range.first) + i64::from(offset) - 1)
    }

    /// Claims a free value among offsets `1..=size`, preferring those above `reserved` (kept for requests of
    /// a fixed value): random picks first, then a scan of what is stored.
    async fn claim_any(
        &self,
        ip: bool,
        reserved: u32,
        size: u32,
        name: &(dyn Fn(u32) -> String + Sync),
        parent: &Parent,
        what: &str,
    ) -> ApiResult<u32> {
        let reserved = reserved.min(size);
        if reserved < size {
            for _ in 0..RANDOM_TRIES {
                let offset = rand::random_range(reserved + 1..=size);
                match self.claim(ip, &name(offset), parent, false).await {
                    Ok(true) => return Ok(offset),
                    Ok(false) | Err(Refused::Taken) => continue,
                    Err(Refused::Store(e)) => return Err(store_failure(what, e)),
                }
            }
        }
        // Crowded: look at what is taken and walk the free values, upper band first from a random start.
        let prefix = if ip { IP_ADDRESS_PREFIX } else { NODE_PORT_PREFIX };
        let taken = self.record_names(prefix).await.map_err(|e| store_failure(what, e))?;
        let start = if reserved < size { rand::random_range(reserved + 1..=size) } else { 1 };
        let upper = (start..=size).chain(reserved + 1..start);
        let candidates = upper.chain(1..=reserved);
        for offset in candidates {
            let candidate = name(offset);
            if taken.contains(&candidate) {
                continue;
            }
            match self.claim(ip, &candidate, parent, false).await {
                Ok(true) => return Ok(offset),
                Ok(false) | Err(Refused::Taken) => continue,
                Err(Refused::Store(e)) => return Err(store_failure(what, e)),
            }
        }
        Err(ApiError::internal(format!("failed to allocate a {what}: range is full")))
    }

    /// The names of every record under `prefix`.
    pub(crate) async fn record_names(&self, prefix: &str) -> Result<HashSet<String>, StoreError> {
        let page = self.store.list(prefix.as_bytes(), ListOptions::default()).await?;
        Ok(page
            .items
            .iter()
            .filter_map(|kv| std::str::from_utf8(&kv.key).ok()?.strip_prefix(prefix).map(str::to_string))
            .collect())
    }

    /// Removes what a failed write had claimed.
    pub(crate) async fn undo_claim(&self, change: Change) {
        self.release_keys(&change.parent, &change.created).await;
    }

    /// Releases what a successful write gave up.
    pub(crate) async fn finish_claim(&self, change: Change) {
        self.release_keys(&change.parent, &change.released).await;
    }

    /// Releases everything a deleted Service held.
    pub(crate) async fn release_service(&self, resource: &ResourceType, last: &Value) {
        if !is_service(resource) {
            return;
        }
        let mut keys: Vec<String> = cluster_ip(last).map(ip_key).into_iter().collect();
        keys.extend(node_ports(last).into_iter().map(port_key));
        self.release_keys(&Parent::of(last), &keys).await;
    }

    /// Deletes records that still name `parent`. A failure leaves the record for the repair pass.
    async fn release_keys(&self, parent: &Parent, keys: &[String]) {
        for key in keys {
            let kv = match self.store.get(key.as_bytes()).await {
                Ok(kv) => kv,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => {
                    tracing::warn!(key, error = %e, "cannot read an allocation to release it; the repair pass will");
                    continue;
                }
            };
            let owner = serde_json::from_slice::<Value>(&kv.value).ok().and_then(|r| Parent::of_record(&r));
            if owner.as_ref() != Some(parent) {
                continue;
            }
            match self.store.delete(key.as_bytes(), Some(kv.mod_revision)).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {
                    tracing::debug!(key, service = %parent.name, "released");
                }
                Err(e) => tracing::warn!(key, error = %e, "cannot release an allocation; the repair pass will"),
            }
        }
    }
}

fn store_failure(what: &str, err: StoreError) -> ApiError {
    ApiError::internal(format!("failed to allocate a {what}: {err}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"namespace": "default", "name": "web"}, "spec": spec})
    }

    #[test]
    fn node_ports_include_the_health_check_port_only_when_it_is_needed() {
        let lb = svc(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000,
            "ports": [{"port": 80, "nodePort": 30080}]}));
        assert_eq!(node_ports(&lb), BTreeSet::from([30080, 31000]));
        let cluster = svc(json!({"type": "ClusterIP", "healthCheckNodePort": 31000, "ports": [{"port": 80}]}));
        assert!(node_ports(&cluster).is_empty());
    }

    #[test]
    fn headless_and_external_name_services_have_no_cluster_ip() {
        assert_eq!(cluster_ip(&svc(json!({"clusterIP": "None"}))), None);
        assert_eq!(cluster_ip(&svc(json!({"type": "ExternalName", "clusterIP": "10.43.0.5"}))), None);
        assert_eq!(cluster_ip(&svc(json!({"clusterIP": "10.43.0.5"}))), Some("10.43.0.5"));
    }

    #[test]
    fn turning_a_node_port_service_into_a_cluster_ip_one_drops_its_unchanged_node_ports() {
        let old = svc(json!({"type": "NodePort", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "nodePort": 30080}]}));
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent_fields(&old, &mut new);
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
        assert!(new["spec"].get("externalTrafficPolicy").is_none());
    }

    #[test]
    fn turning_a_service_into_an_external_name_drops_its_unchanged_address() {
        let old = svc(json!({"type": "ClusterIP", "clusterIP": "10.43.1.1", "clusterIPs": ["10.43.1.1"],
            "ipFamilies": ["IPv4"], "ports": [{"port": 80}]}));
        let mut new = old.clone();
        new["spec"]["type"] = json!("ExternalName");
        new["spec"]["externalName"] = json!("example.com");
        drop_type_dependent_fields(&old, &mut new);
        assert!(new["spec"].get("clusterIP").is_none());
        assert!(new["spec"].get("clusterIPs").is_none());
        assert!(new["spec"].get("ipFamilies").is_none());
    }

    #[test]
    fn an_update_that_leaves_out_allocated_values_keeps_them() {
        let old = svc(json!({"type": "NodePort", "clusterIP": "10.43.1.1", "clusterIPs": ["10.43.1.1"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30081}]}));
        let mut new = svc(json!({"type": "NodePort",
            "ports": [{"name": "http", "port": 8080}, {"name": "b", "port": 81, "nodePort": 30080}]}));
        keep_allocated_values(&old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], "10.43.1.1");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.43.1.1"]));
        // 30080 is now used by the other entry, so the first does not get it back.
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn records_name_their_service() {
        let parent = Parent { namespace: "ns".into(), name: "web".into() };
        let value: Value = serde_json::from_slice(&record(true, "10.43.0.7", &parent)).unwrap();
        assert_eq!(value["kind"], "IPAddress");
        assert_eq!(value["metadata"]["name"], "10.43.0.7");
        assert_eq!(value["metadata"]["labels"]["ipaddress.kubernetes.io/managed-by"], "ipallocator.k8s.io");
        assert_eq!(Parent::of_record(&value), Some(parent));
    }
}
