//! core/v1 kinds other than Pods: Services, ConfigMaps, Secrets, Namespaces, Nodes, Events, volumes and quotas.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::meta::{self, FIELD_IMMUTABLE, immutable};
use super::names;
use super::pod::{diff_paths, validate_port_num_or_name, validate_protocol};
use super::quantity::Quantity;
use super::value::{at, field, int_at, list_at, obj_at, semantic_eq, str_at, string_map_at};
use super::{FieldError, Path};

/// The most bytes the data of one ConfigMap or Secret may hold.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

pub(crate) fn validate_service(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let path = Path::root("spec");
    let ty = str_at(errs, spec, "type", &path).unwrap_or("");
    let cluster_ip = str_at(errs, spec, "clusterIP", &path).unwrap_or("");
    let headless = cluster_ip == "None";
    let ports = list_at(errs, spec, "ports", &path);
    let ports_path = path.child("ports");

    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(&ports_path, ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            &path.child("clusterIP"),
            cluster_ip,
            format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" => {
            if !cluster_ip.is_empty() {
                errs.push(FieldError::forbidden(&path.child("clusterIP"), "may not be set for ExternalName services"));
            }
            match str_at(errs, spec, "externalName", &path).unwrap_or("") {
                "" => errs.push(FieldError::required(&path.child("externalName"), "")),
                name => {
                    let name = name.strip_suffix('.').unwrap_or(name);
                    for msg in names::is_dns1123_subdomain(name) {
                        errs.push(FieldError::invalid(&path.child("externalName"), name, msg));
                    }
                }
            }
        }
        _ => {}
    }

    let multiple = ports.len() > 1;
    let mut port_names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ports_path.index(i);
        let name = field(port, "name").and_then(Value::as_str).unwrap_or("");
        if multiple && name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else if !name.is_empty() {
            for msg in names::is_dns1123_label(name) {
                errs.push(FieldError::invalid(&p.child("name"), name, msg));
            }
            if !port_names.insert(name) {
                errs.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        let number = int_at(errs, port, "port", &p).unwrap_or(0);
        for msg in names::is_valid_port_num(number) {
            errs.push(FieldError::invalid(&p.child("port"), number, msg));
        }
        validate_protocol(port, &p, errs);
        validate_port_num_or_name(field(port, "targetPort"), &p.child("targetPort"), errs);
        if let Some(node_port) = int_at(errs, port, "nodePort", &p).filter(|n| *n != 0) {
            if ty == "ClusterIP" {
                errs.push(FieldError::forbidden(&p.child("nodePort"), "may not be used when `type` is 'ClusterIP'"));
            } else {
                // The configured range is the API server's to check, when it allocates the port.
                for msg in names::is_valid_port_num(node_port) {
                    errs.push(FieldError::invalid(&p.child("nodePort"), node_port, msg));
                }
            }
        }
    }
    let mut node_ports = HashSet::new();
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let protocol = field(port, "protocol").and_then(Value::as_str).unwrap_or("");
        let node_port = field(port, "nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 && !node_ports.insert((protocol, node_port)) {
            errs.push(FieldError::duplicate(&ports_path.index(i).child("nodePort"), node_port));
        }
        let number = field(port, "port").and_then(Value::as_i64).unwrap_or(0);
        if !seen.insert((protocol, number)) {
            errs.push(FieldError::duplicate(
                &ports_path.index(i),
                json!({"Name": "", "Protocol": protocol, "AppProtocol": null, "Port": number, "TargetPort": 0, "NodePort": 0}),
            ));
        }
    }

    let selector = string_map_at(errs, spec, "selector", &path);
    meta::validate_labels(&selector, &path.child("selector"), errs);

    match str_at(errs, spec, "sessionAffinity", &path).unwrap_or("") {
        "" => errs.push(FieldError::required(&path.child("sessionAffinity"), "")),
        "ClientIP" => {
            match at(spec, &["sessionAffinityConfig", "clientIP", "timeoutSeconds"]).and_then(Value::as_i64) {
                None => errs.push(FieldError::required(
                    &path.child("sessionAffinityConfig").child("clientIP").child("timeoutSeconds"),
                    "when session affinity type is ClientIP",
                )),
                Some(t) if t <= 0 || t > 86400 => errs.push(FieldError::invalid(
                    &path.child("sessionAffinityConfig").child("clientIP").child("timeoutSeconds"),
                    t,
                    "must be greater than 0 and less than 86400",
                )),
                Some(_) => {}
            }
        }
        "None" => {
            if field(spec, "sessionAffinityConfig").is_some() {
                errs.push(FieldError::forbidden(
                    &path.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(&path.child("sessionAffinity"), other, &["ClientIP", "None"])),
    }
    if !cluster_ip.is_empty() && !headless && names::is_valid_ip(cluster_ip).len() == 1 {
        errs.push(FieldError::invalid(
            &path.child("clusterIP"),
            cluster_ip,
            "must be empty, 'None', or a valid IP address",
        ));
    }
    for (i, ip) in list_at(errs, spec, "externalIPs", &path).iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        for msg in names::is_valid_ip(ip) {
            errs.push(FieldError::invalid(&path.child("externalIPs").index(i), ip, msg));
        }
    }
    match ty {
        "" => errs.push(FieldError::required(&path.child("type"), "")),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        other => errs.push(FieldError::not_supported(
            &path.child("type"),
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if let Some(policy) = str_at(errs, spec, "ipFamilyPolicy", &path) {
        const POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(&path.child("ipFamilyPolicy"), policy, POLICIES));
        }
    }
    for (i, fam) in list_at(errs, spec, "ipFamilies", &path).iter().enumerate() {
        let fam = fam.as_str().unwrap_or("");
        if fam != "IPv4" && fam != "IPv6" {
            errs.push(FieldError::not_supported(&path.child("ipFamilies").index(i), fam, &["IPv4", "IPv6"]));
        }
    }
    let has_external_ips = field(spec, "externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let external = ty == "NodePort" || ty == "LoadBalancer" || (ty == "ClusterIP" && has_external_ips);
    match str_at(errs, spec, "externalTrafficPolicy", &path) {
        None | Some("") if external => errs.push(FieldError::required(&path.child("externalTrafficPolicy"), "")),
        Some(p) if !p.is_empty() && !external => errs.push(FieldError::invalid(
            &path.child("externalTrafficPolicy"),
            p,
            "may only be set for externally-accessible services",
        )),
        Some(p) if !p.is_empty() && p != "Cluster" && p != "Local" => {
            errs.push(FieldError::not_supported(&path.child("externalTrafficPolicy"), p, &["Cluster", "Local"]))
        }
        _ => {}
    }
    match str_at(errs, spec, "internalTrafficPolicy", &path) {
        None if ty != "ExternalName" && !ty.is_empty() => {
            errs.push(FieldError::required(&path.child("internalTrafficPolicy"), ""))
        }
        Some(p) if p != "Cluster" && p != "Local" => {
            errs.push(FieldError::not_supported(&path.child("internalTrafficPolicy"), p, &["Cluster", "Local"]))
        }
        _ => {}
    }
    if let Some(old) = old {
        let old_spec = field(old, "spec").unwrap_or(&empty);
        let old_type = field(old_spec, "type").and_then(Value::as_str).unwrap_or("");
        let old_ips: Vec<&str> = match field(old_spec, "clusterIPs").and_then(Value::as_array) {
            Some(a) => a.iter().filter_map(Value::as_str).collect(),
            None => {
                field(old_spec, "clusterIP").and_then(Value::as_str).into_iter().filter(|s| !s.is_empty()).collect()
            }
        };
        let new_ips: Vec<&str> = match field(spec, "clusterIPs").and_then(Value::as_array) {
            Some(a) => a.iter().filter_map(Value::as_str).collect(),
            None => Some(cluster_ip).into_iter().filter(|s| !s.is_empty()).collect(),
        };
        // An update that leaves the address out keeps the allocated one (the server copies it over).
        let both_headless = headless && old_ips.first() == Some(&"None");
        if ty != "ExternalName" && old_type != "ExternalName" && !new_ips.is_empty() && !both_headless {
            for (i, o) in old_ips.iter().enumerate() {
                if new_ips.get(i).is_some_and(|n| n != o) {
                    errs.push(FieldError::invalid(
                        &path.child("clusterIPs").index(i),
                        json!(new_ips),
                        "may not change once set",
                    ));
                }
            }
        }
    }
}

fn validate_data_keys(data: &[(&str, &str)], path: &Path, errs: &mut Vec<FieldError>) {
    for (k, _) in data {
        for msg in names::is_config_map_key(k) {
            errs.push(FieldError::invalid(&path.key(k), *k, msg));
        }
    }
}

/// The decoded length of a base64 string, or `None` when it is not valid base64.
fn base64_decoded_len(s: &str) -> Option<usize> {
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let pad = bytes.iter().rev().take_while(|c| **c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &bytes[..bytes.len() - pad];
    if !body.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/') {
        return None;
    }
    Some(bytes.len() / 4 * 3 - pad)
}

fn validate_immutable_data(obj: &Value, old: &Value, keys: &[&str], errs: &mut Vec<FieldError>) {
    if field(old, "immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if field(obj, "immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(&Path::root("immutable"), IMMUTABLE_WHEN_SET));
    }
    for key in keys {
        if !semantic_eq(field(obj, key), field(old, key)) {
            errs.push(FieldError::forbidden(&Path::root(key), IMMUTABLE_WHEN_SET));
        }
    }
}

pub(crate) fn validate_config_map(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    if let Some(old) = old {
        validate_immutable_data(obj, old, &["data", "binaryData"], errs);
    }
    let root = Path::root("");
    let data = string_map_at(errs, obj, "data", &root);
    let binary = string_map_at(errs, obj, "binaryData", &root);
    let data_path = Path::root("data");
    let mut total = 0;
    for (k, v) in &data {
        for msg in names::is_config_map_key(k) {
            errs.push(FieldError::invalid(&data_path.key(k), *k, msg));
        }
        if binary.iter().any(|(b, _)| b == k) {
            errs.push(FieldError::invalid(&data_path.key(k), *k, "duplicate of key present in binaryData"));
        }
        total += v.len();
    }
    let binary_path = Path::root("binaryData");
    for (k, v) in &binary {
        for msg in names::is_config_map_key(k) {
            errs.push(FieldError::invalid(&binary_path.key(k), *k, msg));
        }
        match base64_decoded_len(v) {
            Some(n) => total += n,
            None => errs.push(FieldError::invalid(&binary_path.key(k), "<value omitted>", "must be base64-encoded")),
        }
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&Path::whole_object(), MAX_SECRET_SIZE));
    }
}

pub(crate) fn validate_secret(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let root = Path::root("");
    if let Some(old) = old {
        let new_type = field(obj, "type").and_then(Value::as_str).unwrap_or("");
        let old_type = field(old, "type").and_then(Value::as_str).unwrap_or("");
        if new_type != old_type {
            errs.push(FieldError::invalid(&Path::root("type"), new_type, FIELD_IMMUTABLE));
        }
        validate_immutable_data(obj, old, &["data"], errs);
    }
    let data = string_map_at(errs, obj, "data", &root);
    let data_path = Path::root("data");
    validate_data_keys(&data, &data_path, errs);
    let mut total = 0;
    for (k, v) in &data {
        match base64_decoded_len(v) {
            Some(n) => total += n,
            None => errs.push(FieldError::invalid(
                &data_path.key(k),
                "<secret contents redacted>",
                "must be base64-encoded",
            )),
        }
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&data_path, MAX_SECRET_SIZE));
    }
    let has = |k: &str| data.iter().any(|(dk, _)| *dk == k);
    let non_empty = |k: &str| data.iter().any(|(dk, v)| *dk == k && !v.is_empty());
    match field(obj, "type").and_then(Value::as_str).unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let sa =
                at(obj, &["metadata", "annotations", "kubernetes.io/service-account.name"]).and_then(Value::as_str);
            if sa.unwrap_or("").is_empty() {
                errs.push(FieldError::required(
                    &Path::root("metadata").child("annotations").key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => {
            errs.push(FieldError::required(&data_path.key(".dockercfg"), ""))
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(FieldError::required(&data_path.key(".dockerconfigjson"), ""))
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required(&data_path.key("username"), ""));
            errs.push(FieldError::required(&data_path.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if !non_empty("ssh-privatekey") => {
            errs.push(FieldError::required(&data_path.key("ssh-privatekey"), ""))
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(FieldError::required(&data_path.key(key), ""));
                }
            }
        }
        _ => {}
    }
}

pub(crate) fn validate_namespace(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    if old.is_some() {
        return;
    }
    let path = Path::root("spec").child("finalizers");
    for f in at(obj, &["spec", "finalizers"]).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let f = f.as_str().unwrap_or("");
        for msg in names::is_qualified_name(f) {
            errs.push(FieldError::invalid(&path, f, msg));
        }
        if !f.contains('/') && f != "kubernetes" {
            errs.push(FieldError::invalid(
                &path,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

fn validate_taints(taints: &[Value], path: &Path, errs: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (i, t) in taints.iter().enumerate() {
        let p = path.index(i);
        let key = field(t, "key").and_then(Value::as_str).unwrap_or("");
        for msg in names::is_qualified_name(key) {
            errs.push(FieldError::invalid(&p.child("key"), key, msg));
        }
        let value = field(t, "value").and_then(Value::as_str).unwrap_or("");
        for msg in names::is_valid_label_value(value) {
            errs.push(FieldError::invalid(&p.child("value"), value, msg));
        }
        let effect = field(t, "effect").and_then(Value::as_str).unwrap_or("");
        match effect {
            "" => errs.push(FieldError::required(&p.child("effect"), "")),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            other => errs.push(FieldError::not_supported(
                &p.child("effect"),
                other,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
        if !seen.insert((key, effect)) {
            errs.push(FieldError::duplicate(&p, t.clone()).with_detail("taints must be unique by key and effect pair"));
        }
    }
}

impl FieldError {
    fn with_detail(mut self, detail: &str) -> FieldError {
        self.detail = detail.to_string();
        self
    }
}

pub(crate) fn validate_node(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = field(obj, "spec").unwrap_or(&empty);
    let path = Path::root("spec");
    validate_taints(list_at(errs, spec, "taints", &path), &path.child("taints"), errs);
    for key in ["capacity", "allocatable"] {
        if let Some(map) = at(obj, &["status", key]).and_then(Value::as_object) {
            for (k, v) in map {
                let p = Path::root("status").child(key).key(k);
                match Quantity::from_json(v) {
                    Ok(q) if q.is_negative() => errs.push(FieldError::invalid(&p, q.to_string(), meta::IS_NEGATIVE)),
                    Ok(_) => {}
                    Err(e) => errs.push(FieldError::invalid(&p, v.clone(), e.to_string())),
                }
            }
        }
    }
    if let Some(old) = old {
        let old_spec = field(old, "spec").unwrap_or(&empty);
        for key in ["podCIDR", "providerID"] {
            let o = field(old_spec, key).and_then(Value::as_str).unwrap_or("");
            let n = field(spec, key).and_then(Value::as_str).unwrap_or("");
            if !o.is_empty() && o != n {
                let detail = if key == "podCIDR" {
                    "node updates may not change podCIDR except from \"\" to valid"
                } else {
                    "node updates may not change providerID except from \"\" to valid"
                };
                errs.push(FieldError::forbidden(&path.child(key), detail));
            }
        }
    }
}

pub(crate) fn validate_event(obj: &Value, errs: &mut Vec<FieldError>) {
    let ns = at(obj, &["metadata", "namespace"]).and_then(Value::as_str).unwrap_or("");
    let involved_ns = at(obj, &["involvedObject", "namespace"]).and_then(Value::as_str).unwrap_or("");
    let ns_path = Path::root("involvedObject").child("namespace");
    let event_time = field(obj, "eventTime").is_some();
    if !event_time {
        let mismatch = if involved_ns.is_empty() { !ns.is_empty() && ns != "default" } else { ns != involved_ns };
        if mismatch {
            errs.push(FieldError::invalid(&ns_path, involved_ns, "does not match event.namespace"));
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(FieldError::invalid(&ns_path, involved_ns, "does not match event.namespace"));
        }
        validate_reporting(obj, "reportingComponent", "message", errs);
    }
}

/// The fields new-style events (those with an `eventTime`) must carry.
pub(crate) fn validate_reporting(obj: &Value, controller_field: &str, note_field: &str, errs: &mut Vec<FieldError>) {
    let get = |k: &str| field(obj, k).and_then(Value::as_str).unwrap_or("");
    let controller = get(controller_field);
    if controller.is_empty() {
        errs.push(FieldError::required(&Path::root(controller_field), ""));
    }
    for msg in names::is_qualified_name(controller) {
        errs.push(FieldError::invalid(&Path::root(controller_field), controller, msg));
    }
    for (key, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        let v = get(key);
        if v.is_empty() {
            errs.push(FieldError::required(&Path::root(key), ""));
        }
        if v.len() > limit {
            errs.push(FieldError::invalid(&Path::root(key), "", format!("can have at most {limit} characters")));
        }
    }
    if get(note_field).len() > 1024 {
        errs.push(FieldError::invalid(&Path::root(note_field), "", "can have at most 1024 characters"));
    }
}

const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];

pub(crate) fn validate_pvc_spec(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let modes = list_at(errs, spec, "accessModes", path);
    if modes.is_empty() {
        errs.push(FieldError::required(&path.child("accessModes"), "at least 1 access mode is required"));
    }
    if let Some(sel) = field(spec, "selector") {
        meta::validate_label_selector(sel, &path.child("selector"), errs);
    }
    let (mut rwop, mut other) = (false, false);
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(FieldError::not_supported(&path.child("accessModes"), m, ACCESS_MODES));
        } else if m == "ReadWriteOncePod" {
            rwop = true;
        } else {
            other = true;
        }
    }
    if rwop && other {
        errs.push(FieldError::forbidden(
            &path.child("accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    let storage_path = path.child("resources").key("storage");
    match at(spec, &["resources", "requests", "storage"]) {
        None => errs.push(FieldError::required(&storage_path, "")),
        Some(v) => match Quantity::from_json(v) {
            Ok(q) if q.nanos() <= 0 => {
                errs.push(FieldError::invalid(&storage_path, q.to_string(), "must be greater than zero"))
            }
            Ok(_) => {}
            Err(e) => errs.push(FieldError::invalid(&storage_path, v.clone(), e.to_string())),
        },
    }
    if let Some(sc) = str_at(errs, spec, "storageClassName", path).filter(|s| !s.is_empty()) {
        for msg in names::is_dns1123_subdomain(sc) {
            errs.push(FieldError::invalid(&path.child("storageClassName"), sc, msg));
        }
    }
    if let Some(mode) = str_at(errs, spec, "volumeMode", path)
        && mode != "Block"
        && mode != "Filesystem"
    {
        errs.push(FieldError::not_supported(&path.child("volumeMode"), mode, &["Block", "Filesystem"]));
    }
}

pub(crate) fn validate_pvc(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let path = Path::root("spec");
    validate_pvc_spec(spec, &path, errs);
    let Some(old) = old else { return };
    let old_spec = field(old, "spec").unwrap_or(&empty);
    let mut n = spec.clone();
    let mut o = old_spec.clone();
    if field(old_spec, "volumeName").and_then(Value::as_str).unwrap_or("").is_empty()
        && let (Some(no), Some(oo)) = (n.as_object(), o.as_object_mut())
    {
        // volumeName may be set once, by the binder.
        match no.get("volumeName") {
            Some(v) => oo.insert("volumeName".into(), v.clone()),
            None => oo.remove("volumeName"),
        };
    }
    let bound = at(obj, &["status", "phase"]).and_then(Value::as_str) == Some("Bound");
    if bound {
        for m in [&mut n, &mut o] {
            if let Some(req) = m.get_mut("resources").and_then(|r| r.get_mut("requests")).and_then(Value::as_object_mut)
            {
                req.remove("storage");
            }
            if let Some(m) = m.as_object_mut() {
                m.remove("volumeAttributesClassName");
            }
        }
    }
    if !semantic_eq(Some(&n), Some(&o)) {
        let mut changed = Vec::new();
        diff_paths(Some(&o), Some(&n), &path, &mut changed);
        let mut detail =
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"
                .to_string();
        for c in changed.iter().take(20) {
            detail.push_str(&format!("  changed: {c}\n"));
        }
        errs.push(FieldError::forbidden(&path, detail));
    }
    let size = |v: &Value, keys: &[&str]| at(v, keys).and_then(|q| Quantity::from_json(q).ok());
    if let (Some(new_size), Some(old_size)) = (
        size(obj, &["spec", "resources", "requests", "storage"]),
        size(old, &["spec", "resources", "requests", "storage"]),
    ) && new_size < old_size
    {
        let status_size = size(old, &["status", "capacity", "storage"]).unwrap_or(Quantity::ZERO);
        if new_size <= status_size {
            errs.push(FieldError::forbidden(
                &Path::root("spec").child("resources").child("requests").child("storage"),
                "field can not be less than status.capacity",
            ));
        }
    }
    immutable(field(spec, "volumeMode"), field(old_spec, "volumeMode"), &Path::root("volumeMode"), errs);
}

pub(crate) fn validate_pv(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let path = Path::root("spec");
    let modes = list_at(errs, spec, "accessModes", &path);
    if modes.is_empty() {
        errs.push(FieldError::required(&path.child("accessModes"), ""));
    }
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(FieldError::not_supported(&path.child("accessModes"), m, ACCESS_MODES));
        }
    }
    match at(spec, &["capacity", "storage"]) {
        None => errs.push(FieldError::required(&path.child("capacity"), "")),
        Some(v) => {
            if let Err(e) = Quantity::from_json(v) {
                errs.push(FieldError::invalid(&path.child("capacity").key("storage"), v.clone(), e.to_string()));
            }
        }
    }
    if let Some(policy) = str_at(errs, spec, "persistentVolumeReclaimPolicy", &path) {
        const POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
        if !POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(&path.child("persistentVolumeReclaimPolicy"), policy, POLICIES));
        }
    }
}

fn validate_quantity_map(map: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(map) = map.and_then(Value::as_object) {
        for (k, v) in map {
            let p = path.key(k);
            for msg in names::is_qualified_name(k) {
                errs.push(FieldError::invalid(&p, k.as_str(), msg));
            }
            match Quantity::from_json(v) {
                Ok(q) if q.is_negative() => errs.push(FieldError::invalid(&p, q.to_string(), meta::IS_NEGATIVE)),
                Ok(_) => {}
                Err(e) => errs.push(FieldError::invalid(&p, v.clone(), e.to_string())),
            }
        }
    }
}

pub(crate) fn validate_resource_quota(obj: &Value, errs: &mut Vec<FieldError>) {
    validate_quantity_map(at(obj, &["spec", "hard"]), &Path::root("spec").child("hard"), errs);
}

pub(crate) fn validate_limit_range(obj: &Value, errs: &mut Vec<FieldError>) {
    let path = Path::root("spec").child("limits");
    for (i, item) in
        at(obj, &["spec", "limits"]).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]).iter().enumerate()
    {
        let p = path.index(i);
        if field(item, "type").and_then(Value::as_str).unwrap_or("").is_empty() {
            errs.push(FieldError::required(&p.child("type"), ""));
        }
        for key in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
            validate_quantity_map(field(item, key), &p.child(key), errs);
        }
    }
}

pub(crate) fn validate_endpoints(obj: &Value, errs: &mut Vec<FieldError>) {
    let path = Path::root("subsets");
    for (i, subset) in
        field(obj, "subsets").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]).iter().enumerate()
    {
        let p = path.index(i);
        for key in ["addresses", "notReadyAddresses"] {
            for (j, addr) in
                field(subset, key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]).iter().enumerate()
            {
                let ip = field(addr, "ip").and_then(Value::as_str).unwrap_or("");
                for msg in names::is_valid_ip(ip) {
                    errs.push(FieldError::invalid(&p.child(key).index(j).child("ip"), ip, msg));
                }
            }
        }
        for (j, port) in
            field(subset, "ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]).iter().enumerate()
        {
            let pp = p.child("ports").index(j);
            let n = field(port, "port").and_then(Value::as_i64).unwrap_or(0);
            for msg in names::is_valid_port_num(n) {
                errs.push(FieldError::invalid(&pp.child("port"), n, msg));
            }
            validate_protocol(port, &pp, errs);
        }
    }
}
