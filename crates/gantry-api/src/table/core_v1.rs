//! Tables of the core (`v1`) kinds other than pods.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::json::{arr_at, at, bool_at, i64_at, is_set, name, obj_at, opt_str, quantity, str_at, time_at, time_of};
use super::{
    TableColumnDefinition, age, column, descriptions as doc, duration, format_labels, int, name_column, text, wide,
};

const LABEL_NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_LABEL_ROLE: &str = "kubernetes.io/role";
const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

pub(super) fn service_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Type", "string", doc::SERVICE_TYPE),
        column("Cluster-IP", "string", doc::SERVICE_CLUSTER_IP),
        column("External-IP", "string", doc::SERVICE_EXTERNAL_IPS),
        column("Port(s)", "string", doc::SERVICE_PORTS),
        super::age_column(),
        wide(column("Selector", "string", doc::SERVICE_SELECTOR)),
    ]
}

/// Load-balancer ingress points (IP, else hostname), sorted and without duplicates, comma-joined. Tables are
/// always built wide, so the list is not clipped.
pub(super) fn load_balancer_ingress(status: Option<&Value>) -> String {
    let points: BTreeSet<&str> = status
        .map(|s| arr_at(s, &["ingress"]))
        .unwrap_or_default()
        .iter()
        .filter_map(|i| match (str_at(i, &["ip"]), str_at(i, &["hostname"])) {
            ("", "") => None,
            ("", hostname) => Some(hostname),
            (ip, _) => Some(ip),
        })
        .collect();
    points.into_iter().collect::<Vec<_>>().join(",")
}

fn service_external_ip(svc: &Value) -> String {
    let external_ips: Vec<&str> = arr_at(svc, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    match str_at(svc, &["spec", "type"]) {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_ingress(at(svc, &["status", "loadBalancer"]));
            if !external_ips.is_empty() {
                let mut results: Vec<&str> = if lb.is_empty() { Vec::new() } else { lb.split(',').collect() };
                results.extend(external_ips);
                results.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

pub(super) fn service_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let cluster_ip = match arr_at(obj, &["spec", "clusterIPs"]).first() {
        Some(ip) => ip.as_str().unwrap_or("").to_string(),
        None => match str_at(obj, &["spec", "clusterIP"]) {
            "" => "<none>".to_string(),
            ip => ip.to_string(),
        },
    };
    let ports: Vec<String> = arr_at(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let (port, protocol) = (i64_at(p, &["port"]), str_at(p, &["protocol"]));
            match i64_at(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };
    vec![
        text(name(obj)),
        text(str_at(obj, &["spec", "type"])),
        text(cluster_ip),
        text(service_external_ip(obj)),
        text(ports),
        age(obj, now),
        text(format_labels(obj_at(obj, &["spec", "selector"]))),
    ]
}

pub(super) fn endpoints_columns() -> Vec<TableColumnDefinition> {
    vec![name_column(), column("Endpoints", "string", doc::ENDPOINTS_SUBSETS), super::age_column()]
}

/// `host:port`, with IPv6 hosts in brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// At most three `ip:port` endpoints, then `+ N more...`; `<none>` without subsets.
fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = arr_at(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for subset in subsets {
        let addresses = arr_at(subset, &["addresses"]);
        let ports = arr_at(subset, &["ports"]);
        if ports.is_empty() {
            // A headless service may have no ports.
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(address, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(str_at(address, &["ip"]), i64_at(port, &["port"])));
            }
        }
    }
    let joined = list.join(",");
    if more { format!("{joined} + {} more...", count.saturating_sub(MAX)) } else { joined }
}

pub(super) fn endpoints_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![text(name(obj)), text(format_endpoints(obj)), age(obj, now)]
}

pub(super) fn node_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Status", "string", "The status of the node"),
        column("Roles", "string", "The roles of the node"),
        super::age_column(),
        column("Version", "string", doc::NODE_KUBELET_VERSION),
        wide(column("Internal-IP", "string", doc::NODE_ADDRESSES)),
        wide(column("External-IP", "string", doc::NODE_ADDRESSES)),
        wide(column("OS-Image", "string", doc::NODE_OS_IMAGE)),
        wide(column("Kernel-Version", "string", doc::NODE_KERNEL_VERSION)),
        wide(column("Container-Runtime", "string", doc::NODE_CONTAINER_RUNTIME_VERSION)),
    ]
}

/// Roles from `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role` label, sorted.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (key, value) in obj_at(node, &["metadata", "labels"]).into_iter().flatten() {
        if let Some(role) = key.strip_prefix(LABEL_NODE_ROLE_PREFIX) {
            if !role.is_empty() {
                roles.insert(role);
            }
        } else if key == NODE_LABEL_ROLE
            && let Some(role) = value.as_str().filter(|r| !r.is_empty())
        {
            roles.insert(role);
        }
    }
    if roles.is_empty() { "<none>".to_string() } else { roles.into_iter().collect::<Vec<_>>().join(",") }
}

fn node_address(node: &Value, type_: &str) -> String {
    arr_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == type_)
        .map_or_else(|| "<none>".to_string(), |a| str_at(a, &["address"]).to_string())
}

pub(super) fn node_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // The last Ready condition counts, as kube-apiserver indexes conditions by type.
    let ready = arr_at(obj, &["status", "conditions"]).iter().rfind(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if bool_at(obj, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| match str_at(obj, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        text(name(obj)),
        text(status.join(",")),
        text(node_roles(obj)),
        age(obj, now),
        text(str_at(obj, &["status", "nodeInfo", "kubeletVersion"])),
        text(node_address(obj, "InternalIP")),
        text(node_address(obj, "ExternalIP")),
        text(info("osImage")),
        text(info("kernelVersion")),
        text(info("containerRuntimeVersion")),
    ]
}

pub(super) fn event_columns() -> Vec<TableColumnDefinition> {
    vec![
        column("Last Seen", "string", doc::EVENT_LAST_TIMESTAMP),
        column("Type", "string", doc::EVENT_TYPE),
        column("Reason", "string", doc::EVENT_REASON),
        column("Object", "string", doc::EVENT_INVOLVED_OBJECT),
        wide(column("Subobject", "string", doc::EVENT_FIELD_PATH)),
        wide(column("Source", "string", doc::EVENT_SOURCE)),
        column("Message", "string", doc::EVENT_MESSAGE),
        wide(column("First Seen", "string", doc::EVENT_FIRST_TIMESTAMP)),
        wide(column("Count", "string", doc::EVENT_COUNT)),
        wide(TableColumnDefinition { format: "name".to_string(), ..column("Name", "string", doc::NAME) }),
    ]
}

/// A field under its core `v1` name, or under its `events.k8s.io` name for an event in that shape.
fn event_field<'a>(event: &'a Value, core: &str, events_v1: &str) -> Option<&'a Value> {
    event.get(core).filter(|v| !v.is_null()).or_else(|| event.get(events_v1).filter(|v| !v.is_null()))
}

fn event_text<'a>(event: &'a Value, core: &str, events_v1: &str) -> &'a str {
    event_field(event, core, events_v1).and_then(Value::as_str).unwrap_or("")
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

pub(super) fn event_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let time = |core: &str, events_v1: &str| time_of(event_field(obj, core, events_v1));
    let first_seen = match time("firstTimestamp", "deprecatedFirstTimestamp") {
        Some(first) => duration::since(Some(first), now),
        None => duration::since(time_at(obj, &["eventTime"]), now),
    };
    let mut last_seen = match time("lastTimestamp", "deprecatedLastTimestamp") {
        Some(last) => duration::since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = event_field(obj, "count", "deprecatedCount").and_then(Value::as_i64).unwrap_or(0);
    if is_set(obj, &["series"]) {
        last_seen = duration::since(time_at(obj, &["series", "lastObservedTime"]), now);
        count = i64_at(obj, &["series", "count"]);
    } else if count == 0 {
        // Events of the newer API are singletons without a count.
        count = 1;
    }
    let involved = event_field(obj, "involvedObject", "regarding");
    let involved_text = |field: &str| involved.map(|i| str_at(i, &[field])).unwrap_or("");
    let kind = involved_text("kind").to_lowercase();
    let target = match involved_text("name") {
        "" => kind,
        involved_name => format!("{kind}/{involved_name}"),
    };
    let source = event_field(obj, "source", "deprecatedSource");
    let component = first_non_empty(
        source.map(|s| str_at(s, &["component"])).unwrap_or(""),
        event_text(obj, "reportingComponent", "reportingController"),
    );
    let instance =
        first_non_empty(source.map(|s| str_at(s, &["host"])).unwrap_or(""), str_at(obj, &["reportingInstance"]));
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };
    vec![
        text(last_seen),
        text(str_at(obj, &["type"])),
        text(str_at(obj, &["reason"])),
        text(target),
        text(involved_text("fieldPath")),
        text(source),
        text(event_text(obj, "message", "note").trim()),
        text(first_seen),
        int(count),
        text(name(obj)),
    ]
}

pub(super) fn namespace_columns() -> Vec<TableColumnDefinition> {
    vec![name_column(), column("Status", "string", "The status of the namespace"), super::age_column()]
}

pub(super) fn namespace_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![text(name(obj)), text(str_at(obj, &["status", "phase"])), age(obj, now)]
}

pub(super) fn secret_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Type", "string", doc::SECRET_TYPE),
        column("Data", "string", doc::SECRET_DATA),
        super::age_column(),
    ]
}

fn map_len(obj: &Value, path: &[&str]) -> usize {
    obj_at(obj, path).map_or(0, serde_json::Map::len)
}

pub(super) fn secret_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![text(name(obj)), text(str_at(obj, &["type"])), int(map_len(obj, &["data"]) as i64), age(obj, now)]
}

pub(super) fn service_account_columns() -> Vec<TableColumnDefinition> {
    vec![name_column(), column("Secrets", "string", doc::SERVICE_ACCOUNT_SECRETS), super::age_column()]
}

pub(super) fn service_account_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![text(name(obj)), int(arr_at(obj, &["secrets"]).len() as i64), age(obj, now)]
}

pub(super) fn config_map_columns() -> Vec<TableColumnDefinition> {
    vec![name_column(), column("Data", "string", doc::CONFIG_MAP_DATA), super::age_column()]
}

pub(super) fn config_map_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let entries = map_len(obj, &["data"]) + map_len(obj, &["binaryData"]);
    vec![text(name(obj)), int(entries as i64), age(obj, now)]
}

pub(super) fn persistent_volume_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Capacity", "string", doc::PV_CAPACITY),
        column("Access Modes", "string", doc::PV_ACCESS_MODES),
        column("Reclaim Policy", "string", doc::PV_RECLAIM_POLICY),
        column("Status", "string", doc::PV_PHASE),
        column("Claim", "string", doc::PV_CLAIM_REF),
        column("StorageClass", "string", "StorageClass of the pv"),
        column("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
        column("Reason", "string", doc::PV_REASON),
        super::age_column(),
        wide(column("VolumeMode", "string", doc::PV_VOLUME_MODE)),
    ]
}

/// Access modes abbreviated in kube's fixed order: `RWO,ROX,RWX,RWOP`.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

fn storage_class_annotation(obj: &Value) -> Option<&str> {
    obj_at(obj, &["metadata", "annotations"]).and_then(|a| a.get(BETA_STORAGE_CLASS_ANNOTATION)).and_then(Value::as_str)
}

/// The phase, or `Terminating` once deletion has started.
fn volume_phase(obj: &Value) -> &str {
    if is_set(obj, &["metadata", "deletionTimestamp"]) { "Terminating" } else { str_at(obj, &["status", "phase"]) }
}

fn or_unset(v: Option<&str>) -> String {
    v.unwrap_or("<unset>").to_string()
}

pub(super) fn persistent_volume_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match at(obj, &["spec", "claimRef"]).filter(|c| !c.is_null()) {
        Some(c) => format!("{}/{}", str_at(c, &["namespace"]), str_at(c, &["name"])),
        None => String::new(),
    };
    let class = storage_class_annotation(obj).unwrap_or_else(|| str_at(obj, &["spec", "storageClassName"]));
    vec![
        text(name(obj)),
        text(quantity(at(obj, &["spec", "capacity", "storage"]))),
        text(access_modes(arr_at(obj, &["spec", "accessModes"]))),
        text(str_at(obj, &["spec", "persistentVolumeReclaimPolicy"])),
        text(volume_phase(obj)),
        text(claim),
        text(class),
        text(or_unset(opt_str(obj, &["spec", "volumeAttributesClassName"]))),
        text(str_at(obj, &["status", "reason"])),
        age(obj, now),
        text(or_unset(opt_str(obj, &["spec", "volumeMode"]))),
    ]
}

pub(super) fn persistent_volume_claim_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Status", "string", doc::PVC_PHASE),
        column("Volume", "string", doc::PVC_VOLUME_NAME),
        column("Capacity", "string", doc::PVC_CAPACITY),
        column("Access Modes", "string", doc::PVC_ACCESS_MODES),
        column("StorageClass", "string", "StorageClass of the pvc"),
        column("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
        super::age_column(),
        wide(column("VolumeMode", "string", doc::PVC_VOLUME_MODE)),
    ]
}

pub(super) fn persistent_volume_claim_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let volume = str_at(obj, &["spec", "volumeName"]);
    // Capacity and access modes are shown only once the claim is bound to a volume.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (quantity(at(obj, &["status", "capacity", "storage"])), access_modes(arr_at(obj, &["status", "accessModes"])))
    };
    let class = storage_class_annotation(obj).or_else(|| opt_str(obj, &["spec", "storageClassName"])).unwrap_or("");
    vec![
        text(name(obj)),
        text(volume_phase(obj)),
        text(volume),
        text(capacity),
        text(modes),
        text(class),
        text(or_unset(opt_str(obj, &["spec", "volumeAttributesClassName"]))),
        age(obj, now),
        text(or_unset(opt_str(obj, &["spec", "volumeMode"]))),
    ]
}

pub(super) fn resource_quota_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
        column(
            "Limit",
            "string",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on \
             the node.",
        ),
        super::age_column(),
    ]
}

pub(super) fn resource_quota_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    let used = obj_at(obj, &["status", "used"]);
    // serde_json keeps object keys sorted unless told otherwise; sort anyway so the order never depends on it.
    let mut hard: Vec<(&String, &Value)> = obj_at(obj, &["status", "hard"]).into_iter().flatten().collect();
    hard.sort_by(|a, b| a.0.cmp(b.0));
    for (resource, hard_quantity) in hard {
        let entry =
            format!("{resource}: {}/{}", quantity(used.and_then(|u| u.get(resource))), quantity(Some(hard_quantity)));
        let mut pieces = resource.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![text(name(obj)), text(requests.join(", ")), text(limits.join(", ")), age(obj, now)]
}
