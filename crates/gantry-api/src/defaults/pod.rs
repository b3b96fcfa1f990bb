//! Defaults of Pods and of the pod templates embedded in workloads.

use crate::validation::pod::VOLUME_SOURCES;
use serde_json::{Value, json};

use super::{
    child, default_pvc_spec, ensure_child, is_blank, is_unset, list_mut, round_resource_list, set_if_absent,
    set_if_blank, set_if_zero,
};
use crate::validation::Quantity;

/// The image pull policy kube picks when none is given: `Always` for `:latest` or an image without tag or
/// digest, `IfNotPresent` otherwise (including images that do not parse as references).
pub fn image_pull_policy_for(image: &str) -> &'static str {
    match image_tag(image) {
        Some(tag) if tag == "latest" => "Always",
        _ => "IfNotPresent",
    }
}

/// The tag of an image reference, `latest` when it has neither tag nor digest, `None` when it has only a digest
/// or does not parse.
fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    // The path components (everything after a registry host) must be lower case.
    let mut parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost") {
        parts.remove(0);
    }
    let path_ok = parts.iter().all(|p| {
        !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c))
    });
    if !path_ok {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_string()),
    }
}

/// A Pod: pod-only defaults first, then the pod spec, then admission-time defaults.
pub(crate) fn default_pod(obj: &mut Value) {
    let Some(spec) = ensure_child(obj, "spec") else { return };
    for key in ["containers", "initContainers"] {
        for c in list_mut(spec, key) {
            default_requests_from_limits(c);
        }
    }
    set_if_absent(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["containers", "initContainers"] {
            for c in list_mut(spec, key) {
                for port in list_mut(c, "ports") {
                    if port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0
                        && let Some(cp) = port.get("containerPort").cloned()
                    {
                        port["hostPort"] = cp;
                    }
                }
            }
        }
    }
    default_pod_spec(spec);
    for c in list_mut(spec, "ephemeralContainers") {
        default_container(c);
    }
    if let Some(list) = child(spec, "overhead") {
        round_resource_list(list);
    }
    default_priority(spec);
    default_toleration_seconds(spec);
}

/// A pod template (`template` of a workload): the pod-spec defaults only.
pub(crate) fn default_pod_template(template: &mut Value) {
    if let Some(spec) = ensure_child(template, "spec") {
        default_pod_spec(spec);
    }
}

fn default_requests_from_limits(c: &mut Value) {
    let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() else { return };
    let Some(resources) = child(c, "resources") else { return };
    let Some(requests) = ensure_child(resources, "requests").and_then(Value::as_object_mut) else { return };
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

fn default_pod_spec(spec: &mut Value) {
    set_if_blank(spec, "dnsPolicy", "ClusterFirst");
    set_if_blank(spec, "restartPolicy", "Always");
    set_if_absent(spec, "securityContext", json!({}));
    set_if_absent(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_blank(spec, "schedulerName", "default-scheduler");
    for vol in list_mut(spec, "volumes") {
        default_volume(vol);
    }
    for key in ["initContainers", "containers"] {
        for c in list_mut(spec, key) {
            default_container(c);
        }
    }
}

fn default_volume(vol: &mut Value) {
    if VOLUME_SOURCES.iter().all(|s| is_unset(vol, s)) {
        vol["emptyDir"] = json!({});
    }
    if let Some(s) = child(vol, "hostPath") {
        set_if_absent(s, "type", json!(""));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = child(vol, key) {
            set_if_absent(s, "defaultMode", json!(420));
        }
    }
    if let Some(s) = child(vol, "downwardAPI") {
        for item in list_mut(s, "items") {
            if let Some(r) = child(item, "fieldRef") {
                set_if_blank(r, "apiVersion", "v1");
            }
        }
    }
    if let Some(s) = child(vol, "projected") {
        for source in list_mut(s, "sources") {
            if let Some(d) = child(source, "downwardAPI") {
                for item in list_mut(d, "items") {
                    if let Some(r) = child(item, "fieldRef") {
                        set_if_blank(r, "apiVersion", "v1");
                    }
                }
            }
            if let Some(t) = child(source, "serviceAccountToken") {
                set_if_absent(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(s) = child(vol, "iscsi") {
        set_if_blank(s, "iscsiInterface", "default");
    }
    if let Some(s) = child(vol, "rbd") {
        set_if_blank(s, "pool", "rbd");
        set_if_blank(s, "user", "admin");
        set_if_blank(s, "keyring", "/etc/ceph/keyring");
    }
    if let Some(s) = child(vol, "azureDisk") {
        set_if_absent(s, "cachingMode", json!("ReadWrite"));
        set_if_absent(s, "fsType", json!("ext4"));
        set_if_absent(s, "readOnly", json!(false));
        set_if_absent(s, "kind", json!("Shared"));
    }
    if let Some(s) = child(vol, "emptyDir")
        && let Some(limit) = s.get("sizeLimit").cloned()
        && let Ok(q) = Quantity::from_json(&limit)
    {
        s["sizeLimit"] = q.to_json();
    }
    if let Some(s) = child(vol, "image")
        && is_blank(s, "pullPolicy")
    {
        let reference = s.get("reference").and_then(Value::as_str).unwrap_or("").to_string();
        s["pullPolicy"] = json!(image_pull_policy_for(&reference));
    }
    if let Some(t) = vol.pointer_mut("/ephemeral/volumeClaimTemplate/spec").filter(|v| v.is_object()) {
        default_pvc_spec(t);
    }
}

fn default_container(c: &mut Value) {
    if is_blank(c, "imagePullPolicy") {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
        c["imagePullPolicy"] = json!(image_pull_policy_for(&image));
    }
    set_if_blank(c, "terminationMessagePath", "/dev/termination-log");
    set_if_blank(c, "terminationMessagePolicy", "File");
    for port in list_mut(c, "ports") {
        set_if_blank(port, "protocol", "TCP");
    }
    for env in list_mut(c, "env") {
        if let Some(r) = env.pointer_mut("/valueFrom/fieldRef").filter(|v| v.is_object()) {
            set_if_blank(r, "apiVersion", "v1");
        }
    }
    if let Some(res) = child(c, "resources") {
        for key in ["limits", "requests"] {
            if let Some(list) = child(res, key) {
                round_resource_list(list);
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child(c, probe) {
            set_if_zero(p, "timeoutSeconds", 1);
            set_if_zero(p, "periodSeconds", 10);
            set_if_zero(p, "successThreshold", 1);
            set_if_zero(p, "failureThreshold", 3);
            if let Some(h) = child(p, "httpGet") {
                default_http_get(h);
            }
            if let Some(g) = child(p, "grpc") {
                set_if_absent(g, "service", json!(""));
            }
        }
    }
    if let Some(lc) = child(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).and_then(|h| h.get_mut("httpGet")).filter(|v| v.is_object()) {
                default_http_get(h);
            }
        }
    }
}

fn default_http_get(h: &mut Value) {
    set_if_blank(h, "path", "/");
    set_if_blank(h, "scheme", "HTTP");
}

/// What the Priority admission plugin sets when no PriorityClass lookup is needed.
fn default_priority(spec: &mut Value) {
    let class = spec.get("priorityClassName").and_then(Value::as_str).unwrap_or("").to_string();
    let value = match class.as_str() {
        "" => Some(0),
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    };
    if let Some(v) = value {
        set_if_absent(spec, "priority", json!(v));
        set_if_absent(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

/// What the DefaultTolerationSeconds admission plugin adds: five minutes' tolerance of not-ready and
/// unreachable nodes, unless the pod already tolerates those taints.
fn default_toleration_seconds(spec: &mut Value) {
    let tolerates = |spec: &Value, key: &str| {
        spec.get("tolerations").and_then(Value::as_array).is_some_and(|ts| {
            ts.iter().any(|t| {
                let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
                let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
                let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
                (t_key == key || (t_key.is_empty() && op == "Exists")) && (effect.is_empty() || effect == "NoExecute")
            })
        })
    };
    let mut added = Vec::new();
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        if !tolerates(spec, key) {
            added.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    if added.is_empty() {
        return;
    }
    if is_unset(spec, "tolerations") {
        spec["tolerations"] = json!([]);
    }
    if let Some(list) = spec.get_mut("tolerations").and_then(Value::as_array_mut) {
        list.extend(added);
    }
}
