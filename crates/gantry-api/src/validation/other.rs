//! The smaller groups: leases, events.k8s.io events, disruption budgets, priority classes, networking,
//! autoscaling, RBAC, storage classes and endpoint slices.

use serde_json::{Value, json};

use super::meta::{self, immutable, non_negative};
use super::names::{self, NameRule};
use super::pod::validate_protocol;
use super::value::{at, field, int_at, list_at, obj_at, semantic_eq, str_at};
use super::{FieldError, Path};

const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub(crate) fn validate_lease(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let path = Path::root("spec");
    if let Some(d) = int_at(errs, spec, "leaseDurationSeconds", &path)
        && d <= 0
    {
        errs.push(FieldError::invalid(&path.child("leaseDurationSeconds"), d, "must be greater than 0"));
    }
    non_negative(int_at(errs, spec, "leaseTransitions", &path), &path.child("leaseTransitions"), errs);
}

pub(crate) fn validate_events_event(obj: &Value, errs: &mut Vec<FieldError>) {
    if field(obj, "eventTime").is_none() {
        errs.push(FieldError::required(&Path::root("eventTime"), ""));
    }
    match field(obj, "type").and_then(Value::as_str).unwrap_or("") {
        "Normal" | "Warning" => {}
        other => errs.push(FieldError::invalid(&Path::root("type"), "", format!("has invalid value: {other}"))),
    }
    super::core::validate_reporting(obj, "reportingController", "note", errs);
}

/// An int-or-percent field of a disruption budget.
fn validate_int_or_percent(v: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    match v {
        Value::String(s) => {
            let msgs = names::is_valid_percent(s);
            if msgs.is_empty() {
                if s[..s.len() - 1].parse::<i64>().unwrap_or(0) > 100 {
                    errs.push(FieldError::invalid(path, s.as_str(), "must not be greater than 100%"));
                }
            } else {
                for msg in msgs {
                    errs.push(FieldError::invalid(path, s.as_str(), msg));
                }
            }
        }
        Value::Number(n) => non_negative(n.as_i64(), path, errs),
        other => errs.push(FieldError::invalid(path, other.clone(), "must be an integer or percentage (e.g '5%')")),
    }
}

pub(crate) fn validate_pdb(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let path = Path::root("spec");
    let min = field(spec, "minAvailable");
    let max = field(spec, "maxUnavailable");
    if min.is_some() && max.is_some() {
        errs.push(FieldError::invalid(&path, spec.clone(), "minAvailable and maxUnavailable cannot be both set"));
    }
    if let Some(v) = min {
        validate_int_or_percent(v, &path.child("minAvailable"), errs);
    }
    if let Some(v) = max {
        validate_int_or_percent(v, &path.child("maxUnavailable"), errs);
    }
    if let Some(sel) = field(spec, "selector") {
        meta::validate_label_selector(sel, &path.child("selector"), errs);
    }
    if let Some(p) = str_at(errs, spec, "unhealthyPodEvictionPolicy", &path)
        && p != "AlwaysAllow"
        && p != "IfHealthyBudget"
    {
        errs.push(FieldError::not_supported(
            &path.child("unhealthyPodEvictionPolicy"),
            p,
            &["AlwaysAllow", "IfHealthyBudget"],
        ));
    }
}

pub(crate) fn validate_priority_class(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let root = Path::root("");
    let name = at(obj, &["metadata", "name"]).and_then(Value::as_str).unwrap_or("");
    let value = int_at(errs, obj, "value", &root).unwrap_or(0);
    let global_default = field(obj, "globalDefault").and_then(Value::as_bool).unwrap_or(false);
    if let Some(old) = old {
        if Some(value) != field(old, "value").and_then(Value::as_i64) {
            errs.push(FieldError::forbidden(&Path::root("value"), "may not be changed in an update."));
        }
        immutable(
            field(obj, "preemptionPolicy"),
            field(old, "preemptionPolicy"),
            &Path::root("preemptionPolicy"),
            errs,
        );
        return;
    }
    if name.starts_with("system-") {
        let known = match name {
            "system-node-critical" => Some(2_000_001_000),
            "system-cluster-critical" => Some(2_000_000_000),
            _ => None,
        };
        let problem = match known {
            None => Some(format!("{name} is not a known system priority class")),
            Some(v) if v != value => Some(format!("value of {name} PriorityClass must be {v}")),
            Some(_) if global_default => Some(format!("globalDefault of {name} PriorityClass must be false")),
            Some(_) => None,
        };
        if let Some(p) = problem {
            errs.push(FieldError::forbidden(
                &Path::root("metadata").child("name"),
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {p}"),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(FieldError::forbidden(
            &Path::root("value"),
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ));
    }
    if let Some(p) = str_at(errs, obj, "preemptionPolicy", &root)
        && p != "PreemptLowerPriority"
        && p != "Never"
    {
        errs.push(FieldError::not_supported(&Path::root("preemptionPolicy"), p, &["PreemptLowerPriority", "Never"]));
    }
}

fn validate_ingress_backend(backend: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let service = field(backend, "service");
    let resource = field(backend, "resource");
    match (service, resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(path, "", "cannot set both resource and service backends")),
        (None, None) => errs.push(FieldError::invalid(path, "", "resource or service backend is required")),
        (Some(svc), None) => {
            let sp = path.child("service");
            let name = field(svc, "name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                errs.push(FieldError::required(&sp.child("name"), ""));
            } else {
                for msg in NameRule::Dns1035Label.check(name, false) {
                    errs.push(FieldError::invalid(&sp.child("name"), name, msg));
                }
            }
            let port = field(svc, "port");
            let port_name = port.and_then(|p| field(p, "name")).and_then(Value::as_str).unwrap_or("");
            let port_number = port.and_then(|p| field(p, "number")).and_then(Value::as_i64).unwrap_or(0);
            let pp = sp.child("port");
            if port_name.is_empty() && port_number == 0 {
                errs.push(FieldError::invalid(&pp, "", "port name or number is required"));
            } else if !port_name.is_empty() && port_number != 0 {
                errs.push(FieldError::invalid(&pp, "", "cannot set both port name & port number"));
            } else if !port_name.is_empty() {
                for msg in names::is_valid_port_name(port_name) {
                    errs.push(FieldError::invalid(&pp.child("name"), port_name, msg));
                }
            } else {
                for msg in names::is_valid_port_num(port_number) {
                    errs.push(FieldError::invalid(&pp.child("number"), port_number, msg));
                }
            }
        }
        (None, Some(res)) => {
            for key in ["kind", "name"] {
                if field(res, key).and_then(Value::as_str).unwrap_or("").is_empty() {
                    errs.push(FieldError::required(&path.child("resource").child(key), ""));
                }
            }
        }
    }
}

pub(crate) fn validate_ingress(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let path = Path::root("spec");
    let rules = list_at(errs, spec, "rules", &path);
    let default_backend = field(spec, "defaultBackend");
    if rules.is_empty() && default_backend.is_none() {
        errs.push(FieldError::invalid(&path, json!(rules), "either `defaultBackend` or `rules` must be specified"));
    }
    if let Some(b) = default_backend {
        validate_ingress_backend(b, &path.child("defaultBackend"), errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = path.child("rules").index(i);
        let host = field(rule, "host").and_then(Value::as_str).unwrap_or("");
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.push(FieldError::invalid(&rp.child("host"), host, "must be a DNS name, not an IP address"));
            }
            let checked = host.strip_prefix("*.").unwrap_or(host);
            for msg in names::is_dns1123_subdomain(checked) {
                errs.push(FieldError::invalid(&rp.child("host"), host, msg));
            }
        }
        let Some(http) = field(rule, "http") else { continue };
        let hp = rp.child("http");
        let paths = field(http, "paths").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        if paths.is_empty() {
            errs.push(FieldError::required(&hp.child("paths"), ""));
        }
        for (j, p) in paths.iter().enumerate() {
            let pp = hp.child("paths").index(j);
            let path_str = field(p, "path").and_then(Value::as_str).unwrap_or("");
            match field(p, "pathType").and_then(Value::as_str) {
                None => errs.push(FieldError::required(&pp.child("pathType"), "pathType must be specified")),
                Some("Exact" | "Prefix") => {
                    if !path_str.starts_with('/') {
                        errs.push(FieldError::invalid(&pp.child("path"), path_str, "must be an absolute path"));
                    }
                }
                Some("ImplementationSpecific") => {
                    if !path_str.is_empty() && !path_str.starts_with('/') {
                        errs.push(FieldError::invalid(&pp.child("path"), path_str, "must be an absolute path"));
                    }
                }
                Some(other) => errs.push(FieldError::not_supported(
                    &pp.child("pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            match field(p, "backend") {
                Some(b) => validate_ingress_backend(b, &pp.child("backend"), errs),
                None => {
                    errs.push(FieldError::invalid(&pp.child("backend"), "", "resource or service backend is required"))
                }
            }
        }
    }
    if let Some(class) = str_at(errs, spec, "ingressClassName", &path) {
        for msg in names::is_dns1123_subdomain(class) {
            errs.push(FieldError::invalid(&path.child("ingressClassName"), class, msg));
        }
    }
}

pub(crate) fn validate_ingress_class(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let path = Path::root("spec").child("controller");
    let controller = at(obj, &["spec", "controller"]).and_then(Value::as_str).unwrap_or("");
    match controller.split_once('/') {
        _ if controller.is_empty() => errs.push(FieldError::required(&path, "")),
        Some((host, rest)) if !host.is_empty() && !rest.is_empty() => {
            for msg in names::is_dns1123_subdomain(host) {
                errs.push(FieldError::invalid(&path, host, msg));
            }
        }
        _ => errs.push(FieldError::invalid(
            &path,
            controller,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        )),
    }
    if controller.len() > 250 {
        errs.push(FieldError::too_long(&path, 250));
    }
    if let Some(old) = old {
        immutable(at(obj, &["spec", "controller"]), at(old, &["spec", "controller"]), &path, errs);
    }
}

pub(crate) fn validate_network_policy(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let path = Path::root("spec");
    if let Some(sel) = field(spec, "podSelector") {
        meta::validate_label_selector(sel, &path.child("podSelector"), errs);
    }
    for (i, t) in list_at(errs, spec, "policyTypes", &path).iter().enumerate() {
        let t = t.as_str().unwrap_or("");
        if t != "Ingress" && t != "Egress" {
            errs.push(FieldError::not_supported(&path.child("policyTypes").index(i), t, &["Ingress", "Egress"]));
        }
    }
    for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in list_at(errs, spec, dir, &path).iter().enumerate() {
            let rp = path.child(dir).index(i);
            for (j, port) in
                field(rule, "ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]).iter().enumerate()
            {
                let pp = rp.child("ports").index(j);
                if field(port, "protocol").is_some() {
                    validate_protocol(port, &pp, errs);
                }
                if let Some(p) = field(port, "port") {
                    super::pod::validate_port_num_or_name(Some(p), &pp.child("port"), errs);
                }
            }
            for (j, peer) in
                field(rule, peers).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]).iter().enumerate()
            {
                let pp = rp.child(peers).index(j);
                for key in ["podSelector", "namespaceSelector"] {
                    if let Some(sel) = field(peer, key) {
                        meta::validate_label_selector(sel, &pp.child(key), errs);
                    }
                }
            }
        }
    }
}

pub(crate) fn validate_hpa(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let spec = obj_at(errs, obj, "spec", &Path::root("")).unwrap_or(&empty);
    let path = Path::root("spec");
    let target = field(spec, "scaleTargetRef").unwrap_or(&empty);
    let tp = path.child("scaleTargetRef");
    if field(target, "kind").and_then(Value::as_str).unwrap_or("").is_empty() {
        errs.push(FieldError::required(&tp.child("kind"), ""));
    }
    match field(target, "name").and_then(Value::as_str).unwrap_or("") {
        "" => errs.push(FieldError::required(&tp.child("name"), "")),
        name => {
            for msg in names::is_path_segment_name(name) {
                errs.push(FieldError::invalid(&tp.child("name"), name, msg));
            }
        }
    }
    let min = int_at(errs, spec, "minReplicas", &path);
    if let Some(m) = min
        && m < 1
    {
        errs.push(FieldError::invalid(&path.child("minReplicas"), m, "must be greater than or equal to 1"));
    }
    let max = int_at(errs, spec, "maxReplicas", &path).unwrap_or(0);
    if max < 1 {
        errs.push(FieldError::invalid(&path.child("maxReplicas"), max, "must be greater than 0"));
    }
    if let Some(m) = min
        && max < m
    {
        errs.push(FieldError::invalid(
            &path.child("maxReplicas"),
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    if obj.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1") {
        if let Some(t) = int_at(errs, spec, "targetCPUUtilizationPercentage", &path)
            && t < 1
        {
            errs.push(FieldError::invalid(&path.child("targetCPUUtilizationPercentage"), t, "must be greater than 0"));
        }
        return;
    }
    for (i, metric) in list_at(errs, spec, "metrics", &path).iter().enumerate() {
        let mp = path.child("metrics").index(i);
        let ty = field(metric, "type").and_then(Value::as_str).unwrap_or("");
        let source = match ty {
            "Object" => "object",
            "Pods" => "pods",
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "External" => "external",
            "" => {
                errs.push(FieldError::required(&mp.child("type"), "must specify a metric source type"));
                continue;
            }
            other => {
                errs.push(FieldError::not_supported(
                    &mp.child("type"),
                    other,
                    &["ContainerResource", "External", "Object", "Pods", "Resource"],
                ));
                continue;
            }
        };
        let Some(src) = field(metric, source) else {
            errs.push(FieldError::required(
                &mp.child(source),
                format!("must populate information for the given metric source (type {ty})"),
            ));
            continue;
        };
        if (source == "resource" || source == "containerResource")
            && field(src, "name").and_then(Value::as_str).unwrap_or("").is_empty()
        {
            errs.push(FieldError::required(&mp.child(source).child("name"), "resource name must be specified"));
        }
        if let Some(target) = field(src, "target") {
            let tp = mp.child(source).child("target");
            match field(target, "type").and_then(Value::as_str).unwrap_or("") {
                "Utilization" => {
                    if let Some(u) = field(target, "averageUtilization").and_then(Value::as_i64) {
                        if u < 1 {
                            errs.push(FieldError::invalid(
                                &tp.child("averageUtilization"),
                                u,
                                "must be greater than 0",
                            ));
                        }
                    } else {
                        errs.push(FieldError::required(
                            &tp.child("averageUtilization"),
                            "must set averageUtilization when metric target type is Utilization",
                        ));
                    }
                }
                "Value" | "AverageValue" => {}
                "" => errs.push(FieldError::required(&tp.child("type"), "must specify a metric target type")),
                other => errs.push(FieldError::not_supported(
                    &tp.child("type"),
                    other,
                    &["AverageValue", "Utilization", "Value"],
                )),
            }
        }
    }
}

fn validate_policy_rule(rule: &Value, namespaced: bool, path: &Path, errs: &mut Vec<FieldError>) {
    let list = |k: &str| field(rule, k).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if list("verbs").is_empty() {
        errs.push(FieldError::required(&path.child("verbs"), "verbs must contain at least one value"));
    }
    let urls = list("nonResourceURLs");
    if !urls.is_empty() {
        if namespaced {
            errs.push(FieldError::invalid(
                &path.child("nonResourceURLs"),
                Value::Array(urls.to_vec()),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !list("apiGroups").is_empty() || !list("resources").is_empty() || !list("resourceNames").is_empty() {
            errs.push(FieldError::invalid(
                &path.child("nonResourceURLs"),
                Value::Array(urls.to_vec()),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if list("apiGroups").is_empty() {
        errs.push(FieldError::required(&path.child("apiGroups"), "resource rules must supply at least one api group"));
    }
    if list("resources").is_empty() {
        errs.push(FieldError::required(&path.child("resources"), "resource rules must supply at least one resource"));
    }
}

pub(crate) fn validate_role(obj: &Value, errs: &mut Vec<FieldError>) {
    let namespaced = obj.get("kind").and_then(Value::as_str) == Some("Role");
    let path = Path::root("rules");
    for (i, rule) in list_at(errs, obj, "rules", &Path::root("")).iter().enumerate() {
        validate_policy_rule(rule, namespaced, &path.index(i), errs);
    }
    if let Some(agg) = field(obj, "aggregationRule") {
        let ap = Path::root("aggregationRule").child("clusterRoleSelectors");
        for (i, sel) in field(agg, "clusterRoleSelectors")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            meta::validate_label_selector(sel, &ap.index(i), errs);
        }
    }
}

pub(crate) fn validate_role_binding(kind: &str, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = json!({});
    let role_ref = field(obj, "roleRef").unwrap_or(&empty);
    let rp = Path::root("roleRef");
    let api_group = field(role_ref, "apiGroup").and_then(Value::as_str).unwrap_or("");
    if api_group != RBAC_GROUP {
        errs.push(FieldError::not_supported(&rp.child("apiGroup"), api_group, &[RBAC_GROUP]));
    }
    let ref_kind = field(role_ref, "kind").and_then(Value::as_str).unwrap_or("");
    let namespaced = kind == "RoleBinding";
    let allowed: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    if !allowed.contains(&ref_kind) {
        errs.push(FieldError::not_supported(&rp.child("kind"), ref_kind, allowed));
    }
    match field(role_ref, "name").and_then(Value::as_str).unwrap_or("") {
        "" => errs.push(FieldError::required(&rp.child("name"), "")),
        name => {
            for msg in names::is_path_segment_name(name) {
                errs.push(FieldError::invalid(&rp.child("name"), name, msg));
            }
        }
    }
    let sp = Path::root("subjects");
    for (i, subject) in list_at(errs, obj, "subjects", &Path::root("")).iter().enumerate() {
        let p = sp.index(i);
        let name = field(subject, "name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        }
        let group = field(subject, "apiGroup").and_then(Value::as_str).unwrap_or("");
        match field(subject, "kind").and_then(Value::as_str).unwrap_or("") {
            "ServiceAccount" => {
                if !name.is_empty() {
                    for msg in names::is_dns1123_subdomain(name) {
                        errs.push(FieldError::invalid(&p.child("name"), name, msg));
                    }
                }
                if !group.is_empty() {
                    errs.push(FieldError::not_supported(&p.child("apiGroup"), group, &[""]));
                }
                if !namespaced && field(subject, "namespace").and_then(Value::as_str).unwrap_or("").is_empty() {
                    errs.push(FieldError::required(&p.child("namespace"), ""));
                }
            }
            "User" | "Group" => {
                if group != RBAC_GROUP {
                    errs.push(FieldError::not_supported(&p.child("apiGroup"), group, &[RBAC_GROUP]));
                }
            }
            other => {
                errs.push(FieldError::not_supported(&p.child("kind"), other, &["ServiceAccount", "User", "Group"]))
            }
        }
    }
    if let Some(old) = old
        && !semantic_eq(field(obj, "roleRef"), field(old, "roleRef"))
    {
        errs.push(FieldError::invalid(&rp, role_ref.clone(), "cannot change roleRef"));
    }
}

pub(crate) fn validate_storage_class(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let root = Path::root("");
    match str_at(errs, obj, "provisioner", &root).unwrap_or("") {
        "" => errs.push(FieldError::required(&Path::root("provisioner"), "")),
        p => {
            for msg in names::is_qualified_name(&p.to_lowercase()) {
                errs.push(FieldError::invalid(&Path::root("provisioner"), p, msg));
            }
        }
    }
    if let Some(p) = str_at(errs, obj, "reclaimPolicy", &root)
        && p != "Delete"
        && p != "Retain"
    {
        errs.push(FieldError::not_supported(&Path::root("reclaimPolicy"), p, &["Delete", "Retain"]));
    }
    if let Some(m) = str_at(errs, obj, "volumeBindingMode", &root)
        && m != "Immediate"
        && m != "WaitForFirstConsumer"
    {
        errs.push(FieldError::not_supported(
            &Path::root("volumeBindingMode"),
            m,
            &["Immediate", "WaitForFirstConsumer"],
        ));
    }
    if let Some(old) = old {
        for key in ["parameters", "provisioner", "reclaimPolicy"] {
            if !semantic_eq(field(obj, key), field(old, key)) {
                errs.push(FieldError::forbidden(&Path::root(key), format!("updates to {key} are forbidden.")));
            }
        }
        immutable(
            field(obj, "volumeBindingMode"),
            field(old, "volumeBindingMode"),
            &Path::root("volumeBindingMode"),
            errs,
        );
    }
}

pub(crate) fn validate_endpoint_slice(obj: &Value, errs: &mut Vec<FieldError>) {
    match field(obj, "addressType").and_then(Value::as_str).unwrap_or("") {
        "" => errs.push(FieldError::required(&Path::root("addressType"), "")),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => errs.push(FieldError::not_supported(&Path::root("addressType"), other, &["FQDN", "IPv4", "IPv6"])),
    }
    for (i, ep) in list_at(errs, obj, "endpoints", &Path::root("")).iter().enumerate() {
        let addrs = field(ep, "addresses").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let p = Path::root("endpoints").index(i).child("addresses");
        if addrs.is_empty() {
            errs.push(FieldError::required(&p, "must contain at least 1 address"));
        } else if addrs.len() > 100 {
            errs.push(FieldError::too_many(&p, addrs.len(), 100));
        }
    }
}
