//! The LimitRanger admission step, as kube-apiserver's: on pod creation, the default requests and limits of
//! the namespace's LimitRanges (items of type `Container`) fill in what containers leave out, recorded in the
//! `kubernetes.io/limit-ranger` annotation; then the `min`, `max` and `maxLimitRequestRatio` of items of type
//! `Container`, `Pod` (the pod's sums) and `PersistentVolumeClaim` (on claim creation and update) are checked,
//! and a violation is refused with 403 Forbidden in kube's words.
//!
//! LimitRanges are read from the watch cache, as kube-apiserver reads them from its informer: one created a
//! moment ago on another API server may not apply yet.

use gantry_api::quota::{ResourceList, parse_list, pod_resources};
use gantry_api::registry::ResourceType;
use gantry_api::validation::Quantity;
use serde_json::{Map, Value, json};

use crate::api::Api;
use crate::status::{ApiError, ApiResult};

/// The annotation naming what LimitRanger filled in.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// kube's largest quantity whose milli-value fits an int64 (`MaxMilliValue`).
const MAX_MILLI_VALUE: i64 = i64::MAX / 1000;

/// The default requests and limits of a LimitRange's `Container` items (later items win, as in kube).
fn container_defaults(limit_range: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let (mut requests, mut limits) = (Map::new(), Map::new());
    for item in limit_range["spec"]["limits"].as_array().into_iter().flatten() {
        if item["type"] != "Container" {
            continue;
        }
        for (target, field) in [(&mut requests, "defaultRequest"), (&mut limits, "default")] {
            if let Some(list) = item[field].as_object() {
                target.extend(list.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    (requests, limits)
}

/// Fills in one container's missing requests and limits; returns the annotation parts (`cpu, memory request
/// for container web`).
fn merge_container(
    container: &mut Value,
    defaults: &(Map<String, Value>, Map<String, Value>),
    prefix: &str,
) -> Vec<String> {
    let name = container["name"].as_str().unwrap_or_default().to_string();
    let Some(map) = container.as_object_mut() else { return Vec::new() };
    let resources = map.entry("resources").or_insert_with(|| json!({}));
    if !resources.is_object() {
        *resources = json!({});
    }
    let mut parts = Vec::new();
    for (field, defaults, what) in [("requests", &defaults.0, "request"), ("limits", &defaults.1, "limit")] {
        if defaults.is_empty() {
            continue;
        }
        let Some(resources) = resources.as_object_mut() else { continue };
        let list = resources.entry(field).or_insert_with(|| json!({}));
        if !list.is_object() {
            *list = json!({});
        }
        let Some(list) = list.as_object_mut() else { continue };
        let mut set: Vec<&str> = Vec::new();
        for (k, v) in defaults {
            if !list.contains_key(k) {
                list.insert(k.clone(), v.clone());
                set.push(k);
            }
        }
        if !set.is_empty() {
            set.sort_unstable();
            parts.push(format!("{} {what} for {prefix} {name}", set.join(", ")));
        }
    }
    parts
}

/// Applies the LimitRanges' container defaults to the pod; returns whether it changed.
pub fn default_pod(limit_ranges: &[Value], pod: &mut Value) -> bool {
    let mut parts = Vec::new();
    for limit_range in limit_ranges {
        let defaults = container_defaults(limit_range);
        if defaults.0.is_empty() && defaults.1.is_empty() {
            continue;
        }
        for (field, prefix) in [("containers", "container"), ("initContainers", "init container")] {
            let containers = pod.get_mut("spec").and_then(|s| s.get_mut(field)).and_then(Value::as_array_mut);
            if let Some(containers) = containers {
                for c in containers {
                    parts.extend(merge_container(c, &defaults, prefix));
                }
            }
        }
    }
    if parts.is_empty() {
        return false;
    }
    let value = format!("LimitRanger plugin set: {}", parts.join("; "));
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[ANNOTATION] = json!(value);
    }
    true
}

/// The values kube compares: milli-units when all three fit, whole units otherwise.
fn compared(request: Option<&Quantity>, limit: Option<&Quantity>, enforced: &Quantity) -> (i64, i64, i64) {
    let zero = Quantity::ZERO;
    let (r, l) = (request.unwrap_or(&zero), limit.unwrap_or(&zero));
    if r.value() <= MAX_MILLI_VALUE && l.value() <= MAX_MILLI_VALUE && enforced.value() <= MAX_MILLI_VALUE {
        (r.milli_value(), l.milli_value(), enforced.milli_value())
    } else {
        (r.value(), l.value(), enforced.value())
    }
}

fn min_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (r, l, e) = compared(req, lim, enforced);
    let Some(req) = req else {
        return Some(format!("minimum {name} usage per {kind} is {enforced}.  No request is specified"));
    };
    if r < e {
        return Some(format!("minimum {name} usage per {kind} is {enforced}, but request is {req}"));
    }
    match lim {
        Some(lim) if l < e => Some(format!("minimum {name} usage per {kind} is {enforced}, but limit is {lim}")),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (r, l, e) = compared(req, lim, enforced);
    let Some(lim) = lim else {
        return Some(format!("maximum {name} usage per {kind} is {enforced}.  No limit is specified"));
    };
    if l > e {
        return Some(format!("maximum {name} usage per {kind} is {enforced}, but limit is {lim}"));
    }
    match req {
        Some(req) if r > e => Some(format!("maximum {name} usage per {kind} is {enforced}, but request is {req}")),
        _ => None,
    }
}

/// The maximum on a claim's request (claims have no limits).
fn max_request_constraint(kind: &str, name: &str, enforced: &Quantity, requests: &ResourceList) -> Option<String> {
    let req = requests.get(name);
    let (r, _, e) = compared(req, None, enforced);
    let Some(req) = req else {
        return Some(format!("maximum {name} usage per {kind} is {enforced}.  No request is specified"));
    };
    (r > e).then(|| format!("maximum {name} usage per {kind} is {enforced}, but request is {req}"))
}

fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (r, l, _) = compared(req, lim, enforced);
    if req.is_none() || r == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    if lim.is_none() || l == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let observed = l as f64 / r as f64;
    let (scaled, allowed) = if enforced.value() <= MAX_MILLI_VALUE {
        (observed * 1000.0, enforced.milli_value() as f64)
    } else {
        (observed, enforced.value() as f64)
    };
    (scaled > allowed).then(|| {
        format!("{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}")
    })
}

/// Checks `requests` and `limits` against one item's `min`, `max` and `maxLimitRequestRatio`.
fn check_item(item: &Value, kind: &str, requests: &ResourceList, limits: &ResourceList, errors: &mut Vec<String>) {
    for (name, enforced) in parse_list(&item["min"]) {
        errors.extend(min_constraint(kind, &name, &enforced, requests, limits));
    }
    for (name, enforced) in parse_list(&item["max"]) {
        errors.extend(max_constraint(kind, &name, &enforced, requests, limits));
    }
    for (name, enforced) in parse_list(&item["maxLimitRequestRatio"]) {
        errors.extend(ratio_constraint(kind, &name, &enforced, requests, limits));
    }
}

/// kube's rendering of several errors: one as it is, more as `[a, b]`, repeats once.
fn aggregate(errors: Vec<String>) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

/// The pod's violations of one LimitRange, as kube words them.
pub fn validate_pod(limit_range: &Value, pod: &Value) -> Option<String> {
    let mut errors = Vec::new();
    for item in limit_range["spec"]["limits"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("Container") => {
                for field in ["containers", "initContainers"] {
                    for c in pod["spec"][field].as_array().into_iter().flatten() {
                        let requests = parse_list(&c["resources"]["requests"]);
                        let limits = parse_list(&c["resources"]["limits"]);
                        check_item(item, "Container", &requests, &limits, &mut errors);
                    }
                }
            }
            Some("Pod") => {
                let (requests, limits) = (pod_resources(pod, "requests"), pod_resources(pod, "limits"));
                check_item(item, "Pod", &requests, &limits, &mut errors);
            }
            _ => {}
        }
    }
    aggregate(errors)
}

/// The claim's violations of one LimitRange, as kube words them.
pub fn validate_claim(limit_range: &Value, claim: &Value) -> Option<String> {
    let requests = parse_list(&claim["spec"]["resources"]["requests"]);
    let mut errors = Vec::new();
    for item in limit_range["spec"]["limits"].as_array().into_iter().flatten() {
        if item["type"] != "PersistentVolumeClaim" {
            continue;
        }
        for (name, enforced) in parse_list(&item["min"]) {
            errors.extend(min_constraint("PersistentVolumeClaim", &name, &enforced, &requests, &ResourceList::new()));
        }
        for (name, enforced) in parse_list(&item["max"]) {
            errors.extend(max_request_constraint("PersistentVolumeClaim", &name, &enforced, &requests));
        }
    }
    aggregate(errors)
}

fn is_pod(resource: &ResourceType) -> bool {
    resource.group.is_empty() && resource.kind == "Pod"
}

fn is_claim(resource: &ResourceType) -> bool {
    resource.group.is_empty() && resource.kind == "PersistentVolumeClaim"
}

impl Api {
    /// The namespace's LimitRanges, by name.
    fn limit_ranges(&self, namespace: &str) -> Vec<Value> {
        let Some(ranges) = self.registry.by_plural("", "v1", "limitranges") else { return Vec::new() };
        let cache = self.cache.resource(&ranges.key_prefix());
        let snapshot = cache.snapshot(&ranges.namespace_prefix(Some(namespace)), self.cache.applied());
        snapshot.objects.iter().map(|e| e.value.clone()).collect()
    }

    /// LimitRanger on a pod or claim being created (`old` is `None`) or a claim being updated: defaults, then
    /// limits. Other kinds, and pod updates (containers' resources cannot change), pass untouched.
    pub(crate) fn admit_limit_ranges(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let pod = is_pod(resource) && old.is_none();
        if !pod && !is_claim(resource) {
            return Ok(());
        }
        let limit_ranges = self.limit_ranges(namespace);
        if limit_ranges.is_empty() {
            return Ok(());
        }
        if pod && default_pod(&limit_ranges, obj) {
            // What was filled in is validated like what the client sent, and may change the QoS class.
            self.admit_create(resource, obj)?;
            let qos = crate::strategy::qos_class(obj);
            if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
                status.insert("qosClass".into(), json!(qos));
            }
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        for limit_range in &limit_ranges {
            let refused = if pod { validate_pod(limit_range, obj) } else { validate_claim(limit_range, obj) };
            if let Some(why) = refused {
                return Err(ApiError::forbidden_object(resource, &name, &why));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        let mut lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr"},
            "spec": {"limits": limits}});
        gantry_api::defaults::apply_defaults(
            gantry_api::registry::GroupKind { group: "", kind: "LimitRange" },
            &mut lr,
        );
        lr
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn defaults_fill_in_missing_requests_and_limits_and_say_so() {
        let lr = range(json!([{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
            "defaultRequest": {"cpu": "100m"}}]));
        let mut p = pod(json!([{"name": "web", "resources": {"limits": {"memory": "64Mi"}}}]));
        p["spec"]["initContainers"] = json!([{"name": "init"}]);
        assert!(default_pod(&[lr], &mut p));
        let web = &p["spec"]["containers"][0]["resources"];
        assert_eq!(web["limits"], json!({"cpu": "500m", "memory": "64Mi"}));
        // defaultRequest is defaulted from default where it is not given.
        assert_eq!(web["requests"], json!({"cpu": "100m", "memory": "128Mi"}));
        assert_eq!(p["spec"]["initContainers"][0]["resources"]["limits"]["cpu"], "500m");
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container web; cpu limit for container web; \
             cpu, memory request for init container init; cpu, memory limit for init container init"
        );
    }

    #[test]
    fn a_pod_with_everything_set_is_left_alone() {
        let lr = range(json!([{"type": "Container", "default": {"cpu": "1"}}]));
        let mut p = pod(json!([{"name": "c", "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "2"}}}]));
        let before = p.clone();
        assert!(!default_pod(&[lr], &mut p));
        assert_eq!(p, before);
    }

    #[test]
    fn container_min_and_max_are_refused_in_kubes_words() {
        let lr =
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "500m"}, "min": {"memory": "100Mi"}}]}});
        let p = pod(json!([{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"},
            "requests": {"cpu": "100m", "memory": "50Mi"}}}]));
        assert_eq!(
            validate_pod(&lr, &p).as_deref(),
            Some(
                "[minimum memory usage per Container is 100Mi, but request is 50Mi, \
                 maximum cpu usage per Container is 500m, but limit is 1]"
            )
        );
        let ok = pod(json!([{"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "1Gi"},
            "requests": {"cpu": "100m", "memory": "100Mi"}}}]));
        assert_eq!(validate_pod(&lr, &ok), None);
        let no_limit = pod(json!([{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}}]));
        assert_eq!(
            validate_pod(&lr, &no_limit).as_deref(),
            Some("maximum cpu usage per Container is 500m.  No limit is specified")
        );
    }

    #[test]
    fn pod_limits_apply_to_the_sum_of_the_containers() {
        let lr = json!({"spec": {"limits": [{"type": "Pod", "max": {"memory": "1Gi"}}]}});
        let c =
            |n: &str| json!({"name": n, "resources": {"limits": {"memory": "768Mi"}, "requests": {"memory": "1Mi"}}});
        assert_eq!(
            validate_pod(&lr, &pod(json!([c("a"), c("b")]))).as_deref(),
            Some("maximum memory usage per Pod is 1Gi, but limit is 1536Mi")
        );
        assert_eq!(validate_pod(&lr, &pod(json!([c("a")]))), None);
    }

    #[test]
    fn the_limit_to_request_ratio_is_checked_with_six_decimals() {
        let lr = json!({"spec": {"limits": [{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]}});
        let p = pod(json!([{"name": "c", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "300m"}}}]));
        assert_eq!(
            validate_pod(&lr, &p).as_deref(),
            Some("cpu max limit to request ratio per Container is 2, but provided ratio is 3.333333")
        );
        let p = pod(json!([{"name": "c", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "500m"}}}]));
        assert_eq!(validate_pod(&lr, &p), None);
    }

    #[test]
    fn claims_are_held_to_storage_min_and_max() {
        let lr = json!({"spec": {"limits": [{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"},
            "max": {"storage": "10Gi"}}]}});
        let claim = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        assert_eq!(
            validate_claim(&lr, &claim("20Gi")).as_deref(),
            Some("maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi")
        );
        assert_eq!(
            validate_claim(&lr, &claim("500Mi")).as_deref(),
            Some("minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi")
        );
        assert_eq!(validate_claim(&lr, &claim("5Gi")), None);
    }
}
