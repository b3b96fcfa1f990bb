//! Per-kind write rules kube-apiserver applies in its REST strategies: which kinds count generations, what a
//! create resets, what a write to the main resource or to `status` may change.

use gantry_api::registry::{ResourceType, Subresource};
use serde_json::{Map, Value, json};

/// Whether `metadata.generation` is maintained for the kind (bumped on every change outside metadata and
/// status).
pub fn tracks_generation(resource: &ResourceType) -> bool {
    resource.custom
        || matches!(
            (resource.group, resource.kind),
            ("", "Pod")
                | ("apps", _)
                | ("batch", _)
                | ("autoscaling", _)
                | ("policy", "PodDisruptionBudget")
                | ("networking.k8s.io", "Ingress" | "NetworkPolicy")
                | ("apiextensions.k8s.io", "CustomResourceDefinition")
        ) && resource.kind != "ControllerRevision"
}

/// Whether the kind has a `status` that only the `status` subresource writes.
pub fn has_status_subresource(resource: &ResourceType) -> bool {
    resource.has_subresource(Subresource::Status)
}

/// The status a newly created object starts with, or `None` to keep what the client sent.
pub fn initial_status(resource: &ResourceType, object: &Value) -> Option<Value> {
    if !has_status_subresource(resource) {
        return None;
    }
    if resource.custom {
        // kube-apiserver drops what a create sends in a custom resource's status; it starts without one.
        return None;
    }
    Some(match (resource.group, resource.kind) {
        ("", "Pod") => json!({"phase": "Pending", "qosClass": qos_class(object)}),
        ("", "Namespace") => json!({"phase": "Active"}),
        ("", "PersistentVolumeClaim") | ("", "PersistentVolume") => json!({"phase": "Pending"}),
        // Nodes report their own status; the agent creates its Node with status filled in.
        ("", "Node") => return None,
        _ => json!({}),
    })
}

/// The parts of an object outside `metadata` and `status` (what a generation counts changes of).
fn spec_part(object: &Value) -> Map<String, Value> {
    let mut out = object.as_object().cloned().unwrap_or_default();
    for k in ["metadata", "status", "apiVersion", "kind"] {
        out.remove(k);
    }
    out
}

/// Whether anything outside metadata and status changed.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    spec_part(old) != spec_part(new)
}

/// A pod's QoS class from its containers' requests and limits, as the kubelet and apiserver compute it.
pub fn qos_class(pod: &Value) -> &'static str {
    let spec = &pod["spec"];
    let containers: Vec<&Value> =
        ["initContainers", "containers"].iter().filter_map(|f| spec[*f].as_array()).flatten().collect();
    let mut any_set = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let requests = c["resources"]["requests"].as_object();
        let limits = c["resources"]["limits"].as_object();
        for res in ["cpu", "memory"] {
            let request = requests.and_then(|r| r.get(res)).filter(|v| !is_zero(v));
            let limit = limits.and_then(|l| l.get(res)).filter(|v| !is_zero(v));
            if request.is_some() || limit.is_some() {
                any_set = true;
            }
            // Guaranteed needs a limit for cpu and memory, with requests (defaulted from limits) equal to them.
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any_set {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.trim_start_matches(['0', '.']).is_empty() || s == "0m",
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => true,
    }
}

/// The annotation in which apps/v1 DaemonSets carry their template generation (kube-apiserver's internal
/// `spec.templateGeneration`), which the DaemonSet controller labels its pods with (`pod-template-generation`).
pub const DAEMON_SET_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// kube-apiserver's DaemonSet rule for the template generation: a new DaemonSet starts at 1 (or what it was
/// created with, if higher); an update keeps the stored value whatever the client sent, plus one when the pod
/// template changed. Other kinds are left alone.
pub fn daemon_set_template_generation(resource: &ResourceType, old: Option<&Value>, new: &mut Value) {
    if (resource.group, resource.kind) != ("apps", "DaemonSet") || resource.custom {
        return;
    }
    let generation_of = |object: &Value| {
        object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(DAEMON_SET_TEMPLATE_GENERATION))
            .and_then(Value::as_str)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let generation = match old {
        None => generation_of(new).max(1),
        Some(old) => {
            let changed = old.pointer("/spec/template") != new.pointer("/spec/template");
            generation_of(old) + i64::from(changed)
        }
    };
    let Some(metadata) = new.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(DAEMON_SET_TEMPLATE_GENERATION.into(), json!(generation.to_string()));
    }
}

/// The default grace period of a pod's deletion.
pub fn pod_grace_period(pod: &Value) -> i64 {
    pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30).max(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn qos_follows_requests_and_limits() {
        let best = json!({"spec":{"containers":[{"name":"a"}]}});
        assert_eq!(qos_class(&best), "BestEffort");
        let guaranteed = json!({"spec":{"containers":[{"name":"a","resources":{
            "limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"1","memory":"1Gi"}}}]}});
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        let burstable = json!({"spec":{"containers":[{"name":"a","resources":{"requests":{"cpu":"100m"}}}]}});
        assert_eq!(qos_class(&burstable), "Burstable");
    }

    #[test]
    fn generation_ignores_metadata_and_status() {
        let a = json!({"metadata":{"labels":{"a":"1"}},"spec":{"replicas":1},"status":{"x":1}});
        let b = json!({"metadata":{"labels":{"a":"2"}},"spec":{"replicas":1},"status":{"x":2}});
        let c = json!({"metadata":{},"spec":{"replicas":2}});
        assert!(!spec_changed(&a, &b));
        assert!(spec_changed(&a, &c));
    }

    #[test]
    fn a_daemon_set_template_generation_starts_at_one_and_counts_template_changes() {
        let registry = gantry_api::registry::Registry::default();
        let ds = registry.by_kind("apps", "v1", "DaemonSet").unwrap();
        let mut created = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"x": 1}}}});
        daemon_set_template_generation(ds, None, &mut created);
        assert_eq!(created["metadata"]["annotations"][DAEMON_SET_TEMPLATE_GENERATION], "1");
        let mut relabelled = created.clone();
        relabelled["metadata"]["annotations"][DAEMON_SET_TEMPLATE_GENERATION] = json!("7");
        relabelled["spec"]["minReadySeconds"] = json!(3);
        daemon_set_template_generation(ds, Some(&created), &mut relabelled);
        assert_eq!(relabelled["metadata"]["annotations"][DAEMON_SET_TEMPLATE_GENERATION], "1", "clients cannot set it");
        let mut changed = created.clone();
        changed["metadata"].as_object_mut().unwrap().remove("annotations");
        changed["spec"]["template"]["spec"]["x"] = json!(2);
        daemon_set_template_generation(ds, Some(&created), &mut changed);
        assert_eq!(changed["metadata"]["annotations"][DAEMON_SET_TEMPLATE_GENERATION], "2");
    }
}
