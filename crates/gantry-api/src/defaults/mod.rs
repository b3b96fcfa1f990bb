//! The defaults kube-apiserver fills into built-in kinds before validation and storage.
//!
//! [`apply_defaults`] mirrors kube's generated defaulters (`pkg/apis/*/v1/defaults.go` and the declarative
//! `+default` markers), applied in the same order, so that validation sees the same object kube would validate
//! and clients read back the same fields. A few admission-time defaults that every real cluster applies are
//! included because clients see them on every Pod: `spec.priority`/`preemptionPolicy` (Priority admission) and
//! the `not-ready`/`unreachable` tolerations (DefaultTolerationSeconds admission). Resource quantities in
//! resource lists are rounded up to the milli-unit and rewritten in canonical form, as kube stores them.
//!
//! Defaulting never fails: fields of the wrong JSON type are left alone for validation to report.
//!
//! Left to the server (they need state or a generated value): name generation, uid, the Job selector (call
//! [`generate_job_selector`] once the uid is set), Service cluster IP and node port allocation, the ServiceAccount
//! admission (`serviceAccountName: default` and the token volume), the value of a named PriorityClass, and
//! Pod `status` (`phase: Pending`, `qosClass`).

mod pod;

use serde_json::{Map, Value, json};

use crate::registry::GroupKind;
use crate::validation::Quantity;

pub use pod::image_pull_policy_for;

/// Fills in kube's defaults for a built-in kind, in place. Unknown kinds and non-object values are left as they
/// are. Applying defaults twice gives the same result as applying them once.
pub fn apply_defaults(gk: GroupKind, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (gk.group, gk.kind) {
        ("", "Pod") => pod::default_pod(obj),
        ("", "PodTemplate") => {
            if let Some(t) = child(obj, "template") {
                pod::default_pod_template(t);
            }
        }
        ("", "ReplicationController") => {
            if let Some(t) = at_mut(obj, &["spec", "template"]) {
                pod::default_pod_template(t);
            }
        }
        ("", "Service") => default_service(obj),
        ("", "Secret") => default_secret(obj),
        ("", "Namespace") => default_namespace(obj),
        ("", "Node") => default_node(obj),
        ("", "PersistentVolume") => default_pv(obj),
        ("", "PersistentVolumeClaim") => default_pvc(obj),
        ("", "Endpoints") => default_endpoints(obj),
        ("", "LimitRange") => default_limit_range(obj),
        ("", "ResourceQuota") => {
            for key in ["hard"] {
                if let Some(list) = at_mut(obj, &["spec", key]) {
                    round_resource_list(list);
                }
            }
            for key in ["hard", "used"] {
                if let Some(list) = at_mut(obj, &["status", key]) {
                    round_resource_list(list);
                }
            }
        }
        ("apps", "Deployment") => default_deployment(obj),
        ("apps", "ReplicaSet") => default_replica_set(obj),
        ("apps", "StatefulSet") => default_stateful_set(obj),
        ("apps", "DaemonSet") => default_daemon_set(obj),
        ("batch", "Job") => default_job(obj),
        ("batch", "CronJob") => default_cron_job(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => default_hpa(obj),
        ("scheduling.k8s.io", "PriorityClass") => {
            set_if_absent(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => default_role_binding(obj),
        ("networking.k8s.io", "NetworkPolicy") => default_network_policy(obj),
        ("networking.k8s.io", "IngressClass") => {
            if let Some(params) = at_mut(obj, &["spec", "parameters"]) {
                set_if_absent(params, "scope", json!("Cluster"));
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            set_if_absent(obj, "reclaimPolicy", json!("Delete"));
            set_if_absent(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in list_mut(obj, "ports") {
                set_if_absent(port, "name", json!(""));
                set_if_absent(port, "protocol", json!("TCP"));
            }
        }
        _ => {}
    }
}

/// Whether a field is missing or `null`.
pub(crate) fn is_unset(obj: &Value, key: &str) -> bool {
    obj.get(key).is_none_or(Value::is_null)
}

/// Whether a string field is missing, `null` or empty (Go's zero string).
pub(crate) fn is_blank(obj: &Value, key: &str) -> bool {
    match obj.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// Sets a field that is missing or `null`.
pub(crate) fn set_if_absent(obj: &mut Value, key: &str, value: Value) {
    if is_unset(obj, key)
        && let Some(map) = obj.as_object_mut()
    {
        map.insert(key.to_string(), value);
    }
}

/// Sets a string field that is missing, `null` or empty.
pub(crate) fn set_if_blank(obj: &mut Value, key: &str, value: &str) {
    if is_blank(obj, key)
        && let Some(map) = obj.as_object_mut()
    {
        map.insert(key.to_string(), json!(value));
    }
}

/// Sets an integer field that is missing, `null` or zero (Go's zero int).
pub(crate) fn set_if_zero(obj: &mut Value, key: &str, value: i64) {
    let zero = match obj.get(key) {
        None | Some(Value::Null) => true,
        Some(v) => v.as_i64() == Some(0),
    };
    if zero && let Some(map) = obj.as_object_mut() {
        map.insert(key.to_string(), json!(value));
    }
}

/// A child object, `None` when missing or not an object.
pub(crate) fn child<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    obj.get_mut(key).filter(|v| v.is_object())
}

/// A nested child object.
pub(crate) fn at_mut<'a>(obj: &'a mut Value, keys: &[&str]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for k in keys {
        cur = child(cur, k)?;
    }
    Some(cur)
}

/// A child object, created when missing or `null`; `None` when the field holds something else.
pub(crate) fn ensure_child<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    if is_unset(obj, key) {
        obj.as_object_mut()?.insert(key.to_string(), Value::Object(Map::new()));
    }
    child(obj, key)
}

/// The object elements of a list field (non-objects skipped), empty when missing.
pub(crate) fn list_mut<'a>(obj: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    obj.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten().filter(|v| v.is_object())
}

/// Rounds each quantity of a resource list up to the milli-unit and rewrites it canonically, as kube's
/// `SetDefaults_ResourceList` and serialization do. Unparseable entries are left for validation.
pub(crate) fn round_resource_list(list: &mut Value) {
    if let Some(map) = list.as_object_mut() {
        for v in map.values_mut() {
            if let Ok(q) = Quantity::from_json(v) {
                *v = q.round_up_to_milli().to_json();
            }
        }
    }
}

fn default_service(obj: &mut Value) {
    let Some(spec) = ensure_child(obj, "spec") else { return };
    set_if_blank(spec, "sessionAffinity", "None");
    let affinity = spec.get("sessionAffinity").and_then(Value::as_str).unwrap_or("").to_string();
    if affinity == "None" {
        if let Some(m) = spec.as_object_mut() {
            m.remove("sessionAffinityConfig");
        }
    } else if affinity == "ClientIP"
        && spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds").is_none_or(Value::is_null)
        && let Some(m) = spec.as_object_mut()
    {
        m.insert("sessionAffinityConfig".into(), json!({"clientIP": {"timeoutSeconds": 10800}}));
    }
    set_if_blank(spec, "type", "ClusterIP");
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    for port in list_mut(spec, "ports") {
        set_if_blank(port, "protocol", "TCP");
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(v) => v.as_i64() == Some(0),
        };
        if target_unset && let Some(p) = port.get("port").cloned() {
            port["targetPort"] = p;
        }
    }
    let has_external_ips = spec.get("externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let external = ty == "NodePort" || ty == "LoadBalancer" || (ty == "ClusterIP" && has_external_ips);
    if external {
        set_if_blank(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_if_absent(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_if_absent(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty != "ExternalName" {
        // Gantry runs single-stack IPv4; the server allocates the address itself.
        set_if_absent(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_if_absent(spec, "ipFamilies", json!(["IPv4"]));
        let cluster_ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
        if !cluster_ip.is_empty() {
            set_if_absent(spec, "clusterIPs", json!([cluster_ip]));
        }
    }
    if ty == "LoadBalancer"
        && let Some(ingress) = obj.pointer_mut("/status/loadBalancer/ingress").and_then(Value::as_array_mut)
    {
        for ing in ingress.iter_mut().filter(|i| i.is_object()) {
            if !is_blank(ing, "ip") {
                set_if_absent(ing, "ipMode", json!("VIP"));
            }
        }
    }
}

fn default_secret(obj: &mut Value) {
    set_if_blank(obj, "type", "Opaque");
    // stringData is write-only: kube merges it into data when decoding the request.
    let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else { return };
    let Value::Object(string_data) = string_data else { return };
    if string_data.is_empty() {
        return;
    }
    let Some(data) = ensure_child(obj, "data").and_then(Value::as_object_mut) else { return };
    for (k, v) in string_data {
        if let Value::String(s) = v {
            data.insert(k, Value::String(base64_encode(s.as_bytes())));
        }
    }
}

/// Standard base64 with padding.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn default_namespace(obj: &mut Value) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    if !name.is_empty()
        && let Some(meta) = ensure_child(obj, "metadata")
        && let Some(labels) = ensure_child(meta, "labels").and_then(Value::as_object_mut)
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(spec) = ensure_child(obj, "spec") {
        set_if_absent(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = ensure_child(obj, "status") {
        set_if_blank(status, "phase", "Active");
    }
}

fn default_node(obj: &mut Value) {
    let Some(status) = child(obj, "status") else { return };
    if is_unset(status, "allocatable")
        && let Some(capacity) = status.get("capacity").cloned().filter(Value::is_object)
    {
        status["allocatable"] = capacity;
    }
    for key in ["capacity", "allocatable"] {
        if let Some(list) = child(status, key) {
            round_resource_list(list);
        }
    }
}

fn default_pv(obj: &mut Value) {
    if let Some(spec) = ensure_child(obj, "spec") {
        set_if_blank(spec, "persistentVolumeReclaimPolicy", "Retain");
        set_if_absent(spec, "volumeMode", json!("Filesystem"));
        if let Some(list) = child(spec, "capacity") {
            round_resource_list(list);
        }
        if let Some(host_path) = child(spec, "hostPath") {
            set_if_absent(host_path, "type", json!(""));
        }
    }
    if let Some(status) = ensure_child(obj, "status") {
        set_if_blank(status, "phase", "Pending");
    }
}

/// PVC defaults, shared by PersistentVolumeClaims and StatefulSet claim templates.
pub(crate) fn default_pvc(obj: &mut Value) {
    if let Some(spec) = ensure_child(obj, "spec") {
        default_pvc_spec(spec);
    }
    if let Some(status) = ensure_child(obj, "status") {
        set_if_blank(status, "phase", "Pending");
        for key in ["capacity", "allocatedResources"] {
            if let Some(list) = child(status, key) {
                round_resource_list(list);
            }
        }
    }
}

pub(crate) fn default_pvc_spec(spec: &mut Value) {
    set_if_absent(spec, "volumeMode", json!("Filesystem"));
    for key in ["limits", "requests"] {
        if let Some(list) = at_mut(spec, &["resources", key]) {
            round_resource_list(list);
        }
    }
}

fn default_endpoints(obj: &mut Value) {
    for subset in list_mut(obj, "subsets") {
        for port in list_mut(subset, "ports") {
            set_if_blank(port, "protocol", "TCP");
        }
    }
}

fn default_limit_range(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else { return };
    for item in list_mut(spec, "limits") {
        if item.get("type").and_then(Value::as_str) == Some("Container") {
            let max = item.get("max").cloned();
            let min = item.get("min").cloned();
            if let Some(default) = ensure_child(item, "default").and_then(Value::as_object_mut)
                && let Some(Value::Object(max)) = max
            {
                for (k, v) in max {
                    default.entry(k).or_insert(v);
                }
            }
            let default = item.get("default").cloned();
            if let Some(request) = ensure_child(item, "defaultRequest").and_then(Value::as_object_mut) {
                for src in [default, min].into_iter().flatten() {
                    if let Value::Object(src) = src {
                        for (k, v) in src {
                            request.entry(k).or_insert(v);
                        }
                    }
                }
            }
        }
        for key in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
            if let Some(list) = child(item, key) {
                round_resource_list(list);
            }
        }
    }
}

fn default_template(spec: &mut Value) {
    if let Some(t) = child(spec, "template") {
        pod::default_pod_template(t);
    }
}

fn default_deployment(obj: &mut Value) {
    let Some(spec) = ensure_child(obj, "spec") else { return };
    set_if_absent(spec, "replicas", json!(1));
    if let Some(strategy) = ensure_child(spec, "strategy") {
        set_if_blank(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = ensure_child(strategy, "rollingUpdate")
        {
            set_if_absent(ru, "maxUnavailable", json!("25%"));
            set_if_absent(ru, "maxSurge", json!("25%"));
        }
    }
    set_if_absent(spec, "revisionHistoryLimit", json!(10));
    set_if_absent(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec);
}

fn default_replica_set(obj: &mut Value) {
    let Some(spec) = ensure_child(obj, "spec") else { return };
    set_if_absent(spec, "replicas", json!(1));
    default_template(spec);
}

fn default_stateful_set(obj: &mut Value) {
    let Some(spec) = ensure_child(obj, "spec") else { return };
    set_if_blank(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = ensure_child(spec, "updateStrategy") {
        if is_blank(strategy, "type") {
            strategy["type"] = json!("RollingUpdate");
            set_if_absent(strategy, "rollingUpdate", json!({}));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = child(strategy, "rollingUpdate")
        {
            set_if_absent(ru, "partition", json!(0));
        }
    }
    if let Some(policy) = ensure_child(spec, "persistentVolumeClaimRetentionPolicy") {
        set_if_blank(policy, "whenDeleted", "Retain");
        set_if_blank(policy, "whenScaled", "Retain");
    }
    set_if_absent(spec, "replicas", json!(1));
    set_if_absent(spec, "revisionHistoryLimit", json!(10));
    default_template(spec);
    for claim in list_mut(spec, "volumeClaimTemplates") {
        default_pvc(claim);
    }
}

fn default_daemon_set(obj: &mut Value) {
    let Some(spec) = ensure_child(obj, "spec") else { return };
    if let Some(strategy) = ensure_child(spec, "updateStrategy") {
        set_if_blank(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = ensure_child(strategy, "rollingUpdate")
        {
            set_if_absent(ru, "maxUnavailable", json!(1));
            set_if_absent(ru, "maxSurge", json!(0));
        }
    }
    set_if_absent(spec, "revisionHistoryLimit", json!(10));
    default_template(spec);
}

fn default_job(obj: &mut Value) {
    let template_labels = obj.pointer("/spec/template/metadata/labels").filter(|l| l.is_object()).cloned();
    let Some(spec) = ensure_child(obj, "spec") else { return };
    if is_unset(spec, "completions") && is_unset(spec, "parallelism") {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    set_if_absent(spec, "parallelism", json!(1));
    if is_unset(spec, "backoffLimit") {
        let limit = if is_unset(spec, "backoffLimitPerIndex") { 6 } else { i64::from(i32::MAX) };
        spec["backoffLimit"] = json!(limit);
    }
    set_if_absent(spec, "completionMode", json!("NonIndexed"));
    set_if_absent(spec, "suspend", json!(false));
    let has_failure_policy = !is_unset(spec, "podFailurePolicy");
    if let Some(policy) = child(spec, "podFailurePolicy") {
        for rule in list_mut(policy, "rules") {
            for pattern in list_mut(rule, "onPodConditions") {
                set_if_blank(pattern, "status", "True");
            }
        }
    }
    set_if_absent(
        spec,
        "podReplacementPolicy",
        json!(if has_failure_policy { "Failed" } else { "TerminatingOrFailed" }),
    );
    set_if_absent(spec, "manualSelector", json!(false));
    default_template(spec);
    if let Some(labels) = template_labels
        && let Some(meta) = ensure_child(obj, "metadata")
        && meta.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty)
    {
        meta["labels"] = labels;
    }
}

/// Gives a Job the selector kube generates at creation, once the server has assigned `metadata.uid`: unless
/// `spec.manualSelector` is true, the selector matches `batch.kubernetes.io/controller-uid=<uid>` and the pod
/// template gets the `batch.kubernetes.io/controller-uid`, `batch.kubernetes.io/job-name`, `controller-uid` and
/// `job-name` labels. Does nothing without a uid, with a manual selector, or when a selector is already set
/// (validation then reports a selector that was not generated).
pub fn generate_job_selector(job: &mut Value) {
    let uid = job.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let name = job.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    if uid.is_empty() || job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(spec) = ensure_child(job, "spec") else { return };
    if !is_unset(spec, "selector") {
        return;
    }
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let Some(template) = ensure_child(spec, "template") else { return };
    let Some(meta) = ensure_child(template, "metadata") else { return };
    let Some(labels) = ensure_child(meta, "labels").and_then(Value::as_object_mut) else { return };
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels.insert(k.to_string(), json!(v));
    }
}

fn default_cron_job(obj: &mut Value) {
    let Some(spec) = ensure_child(obj, "spec") else { return };
    set_if_blank(spec, "concurrencyPolicy", "Allow");
    set_if_absent(spec, "suspend", json!(false));
    set_if_absent(spec, "successfulJobsHistoryLimit", json!(3));
    set_if_absent(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = at_mut(spec, &["jobTemplate", "spec"]) {
        if let Some(policy) = child(job_spec, "podFailurePolicy") {
            for rule in list_mut(policy, "rules") {
                for pattern in list_mut(rule, "onPodConditions") {
                    set_if_blank(pattern, "status", "True");
                }
            }
        }
        default_template(job_spec);
    }
}

fn default_hpa(obj: &mut Value) {
    let v1 = obj.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1");
    let Some(spec) = ensure_child(obj, "spec") else { return };
    set_if_absent(spec, "minReplicas", json!(1));
    if v1 {
        return;
    }
    if spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        spec["metrics"] = json!([{
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
        }]);
    }
    if let Some(behavior) = child(spec, "behavior") {
        let up = ensure_child(behavior, "scaleUp");
        if let Some(up) = up {
            set_if_absent(up, "stabilizationWindowSeconds", json!(0));
            set_if_absent(up, "selectPolicy", json!("Max"));
            set_if_absent(
                up,
                "policies",
                json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
        if let Some(down) = ensure_child(behavior, "scaleDown") {
            set_if_absent(down, "selectPolicy", json!("Max"));
            set_if_absent(down, "policies", json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]));
        }
    }
}

fn default_role_binding(obj: &mut Value) {
    if let Some(role_ref) = child(obj, "roleRef") {
        set_if_blank(role_ref, "apiGroup", "rbac.authorization.k8s.io");
    }
    for subject in list_mut(obj, "subjects") {
        let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
        if (kind == "User" || kind == "Group") && is_blank(subject, "apiGroup") {
            subject["apiGroup"] = json!("rbac.authorization.k8s.io");
        }
    }
}

fn default_network_policy(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else { return };
    if spec.get("policyTypes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        let egress = spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
        spec["policyTypes"] = if egress { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) };
    }
    for dir in ["ingress", "egress"] {
        for rule in list_mut(spec, dir) {
            for port in list_mut(rule, "ports") {
                set_if_absent(port, "protocol", json!("TCP"));
            }
        }
    }
}

#[cfg(test)]
mod tests;
