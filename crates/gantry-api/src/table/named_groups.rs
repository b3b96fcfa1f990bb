//! Tables of the kinds of the named API groups other than the workloads: networking, discovery, RBAC,
//! coordination, storage and scheduling.

use jiff::Timestamp;
use serde_json::Value;

use super::core_v1::load_balancer_ingress;
use super::json::{arr_at, at, bool_at, i64_at, is_set, name, obj_at, opt_str, str_at};
use super::{
    TableColumnDefinition, age, column, descriptions as doc, format_label_selector, int, name_column, text, wide,
};

const DEFAULT_STORAGE_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_STORAGE_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

pub(super) fn ingress_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for additional configuration",
        ),
        column("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
        column("Address", "string", "Address is a list containing ingress points for the load-balancer"),
        column("Ports", "string", "Ports of TLS configurations that open"),
        super::age_column(),
    ]
}

/// At most three rule hosts, then `+ N more...`; `*` when no rule names a host.
fn format_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let joined = list.join(",");
    if more { format!("{joined} + {} more...", rules.len() - MAX) } else { joined }
}

pub(super) fn ingress_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let class =
        if is_set(obj, &["spec", "ingressClassName"]) { str_at(obj, &["spec", "ingressClassName"]) } else { "<none>" };
    let ports = if arr_at(obj, &["spec", "tls"]).is_empty() { "80" } else { "80, 443" };
    vec![
        text(name(obj)),
        text(class),
        text(format_hosts(arr_at(obj, &["spec", "rules"]))),
        text(load_balancer_ingress(at(obj, &["status", "loadBalancer"]))),
        text(ports),
        age(obj, now),
    ]
}

pub(super) fn ingress_class_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Controller", "string", "Controller that is responsible for handling this class"),
        column("Parameters", "string", "A reference to a resource with additional parameters"),
        super::age_column(),
    ]
}

pub(super) fn ingress_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match at(obj, &["spec", "parameters"]).filter(|p| !p.is_null()) {
        None => "<none>".to_string(),
        Some(p) => {
            let mut kind = str_at(p, &["kind"]).to_string();
            if let Some(group) = opt_str(p, &["apiGroup"]) {
                kind = format!("{kind}.{group}");
            }
            format!("{kind}/{}", str_at(p, &["name"]))
        }
    };
    vec![text(name(obj)), text(str_at(obj, &["spec", "controller"])), text(parameters), age(obj, now)]
}

pub(super) fn network_policy_columns() -> Vec<TableColumnDefinition> {
    vec![name_column(), column("Pod-Selector", "string", doc::NETWORK_POLICY_POD_SELECTOR), super::age_column()]
}

pub(super) fn network_policy_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // The pod selector is not a pointer: an absent one is the empty selector, which selects every pod.
    let selector = match at(obj, &["spec", "podSelector"]) {
        None | Some(Value::Null) => "<none>".to_string(),
        Some(s) => format_label_selector(Some(s)),
    };
    vec![text(name(obj)), text(selector), age(obj, now)]
}

pub(super) fn endpoint_slice_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("AddressType", "string", doc::ENDPOINT_SLICE_ADDRESS_TYPE),
        column("Ports", "string", doc::ENDPOINT_SLICE_PORTS),
        column("Endpoints", "string", doc::ENDPOINT_SLICE_ENDPOINTS),
        super::age_column(),
    ]
}

/// At most three entries, then `+ N more...`; `<unset>` when empty.
fn list_with_more(list: &[String], count: usize) -> String {
    const MAX: usize = 3;
    let shown = list.get(..MAX.min(list.len())).unwrap_or_default();
    let joined = shown.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

pub(super) fn endpoint_slice_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = arr_at(obj, &["ports"])
        .iter()
        .map(|p| match (p.get("port").and_then(Value::as_i64), p.get("name").and_then(Value::as_str)) {
            (Some(port), _) => port.to_string(),
            (None, Some(port_name)) => port_name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<String> = arr_at(obj, &["endpoints"])
        .iter()
        .flat_map(|e| arr_at(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    vec![
        text(name(obj)),
        text(str_at(obj, &["addressType"])),
        text(list_with_more(&ports, ports.len())),
        text(list_with_more(&addresses, addresses.len())),
        age(obj, now),
    ]
}

/// Columns of role bindings and cluster role bindings; `kind` names the binding in the descriptions.
pub(super) fn role_binding_columns(kind: &str, role_ref_description: &str) -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Role", "string", role_ref_description),
        super::age_column(),
        wide(column("Users", "string", &format!("Users in the {kind}"))),
        wide(column("Groups", "string", &format!("Groups in the {kind}"))),
        wide(column("ServiceAccounts", "string", &format!("ServiceAccounts in the {kind}"))),
    ]
}

pub(super) fn role_binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for subject in arr_at(obj, &["subjects"]) {
        let subject_name = str_at(subject, &["name"]);
        match str_at(subject, &["kind"]) {
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            "ServiceAccount" => service_accounts.push(format!("{}/{subject_name}", str_at(subject, &["namespace"]))),
            _ => {}
        }
    }
    let role = format!("{}/{}", str_at(obj, &["roleRef", "kind"]), str_at(obj, &["roleRef", "name"]));
    vec![
        text(name(obj)),
        text(role),
        age(obj, now),
        text(users.join(", ")),
        text(groups.join(", ")),
        text(service_accounts.join(", ")),
    ]
}

pub(super) fn lease_columns() -> Vec<TableColumnDefinition> {
    vec![name_column(), column("Holder", "string", doc::LEASE_HOLDER_IDENTITY), super::age_column()]
}

pub(super) fn lease_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![text(name(obj)), text(str_at(obj, &["spec", "holderIdentity"])), age(obj, now)]
}

pub(super) fn storage_class_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Provisioner", "string", doc::STORAGE_CLASS_PROVISIONER),
        column("ReclaimPolicy", "string", doc::STORAGE_CLASS_RECLAIM_POLICY),
        column("VolumeBindingMode", "string", doc::STORAGE_CLASS_VOLUME_BINDING_MODE),
        column("AllowVolumeExpansion", "string", doc::STORAGE_CLASS_ALLOW_VOLUME_EXPANSION),
        super::age_column(),
    ]
}

pub(super) fn storage_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let annotations = obj_at(obj, &["metadata", "annotations"]);
    let is_default = [DEFAULT_STORAGE_CLASS_ANNOTATION, BETA_DEFAULT_STORAGE_CLASS_ANNOTATION]
        .iter()
        .any(|a| annotations.and_then(|m| m.get(*a)).and_then(Value::as_str) == Some("true"));
    let display_name = if is_default { format!("{} (default)", name(obj)) } else { name(obj).to_string() };
    let reclaim = opt_str(obj, &["reclaimPolicy"]).unwrap_or("Delete");
    let binding = opt_str(obj, &["volumeBindingMode"]).unwrap_or("Immediate");
    vec![
        text(display_name),
        text(str_at(obj, &["provisioner"])),
        text(reclaim),
        text(binding),
        Value::Bool(bool_at(obj, &["allowVolumeExpansion"])),
        age(obj, now),
    ]
}

pub(super) fn priority_class_columns() -> Vec<TableColumnDefinition> {
    vec![
        name_column(),
        column("Value", "integer", doc::PRIORITY_CLASS_VALUE),
        column("Global-Default", "boolean", doc::PRIORITY_CLASS_GLOBAL_DEFAULT),
        super::age_column(),
        column("PreemptionPolicy", "string", doc::PRIORITY_CLASS_PREEMPTION_POLICY),
    ]
}

pub(super) fn priority_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        text(name(obj)),
        int(i64_at(obj, &["value"])),
        Value::Bool(bool_at(obj, &["globalDefault"])),
        age(obj, now),
        text(str_at(obj, &["preemptionPolicy"])),
    ]
}
