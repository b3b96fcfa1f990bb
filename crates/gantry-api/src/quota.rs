//! ResourceQuota usage: what an object charges to a quota, which quotas an object falls under (scopes), and
//! what a pod must declare under a compute quota, as kube's quota evaluators compute them.
//!
//! Shared by the API server's quota admission (which charges new objects) and the quota controller (which
//! recounts a namespace's objects), so that both always agree on what an object costs. Resource lists are
//! ordered maps, so messages list resources in kube's sorted order.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::validation::Quantity;

/// Resource names and amounts (`pods` → 2, `requests.cpu` → 500m), sorted by name.
pub type ResourceList = BTreeMap<String, Quantity>;

/// The suffix of per-storage-class quota names (`gold.storageclass.storage.k8s.io/requests.storage`).
pub const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// The compute resources a pod's quota tracks, beyond the prefixed ones (hugepages, extended resources).
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// What a cpu or memory quota obliges every container to declare (kube's `validationSet`).
const VALIDATION_SET: &[&str] = &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];

/// The quota name counting every object of a resource: `count/pods`, `count/deployments.apps`.
pub fn object_count_name(group: &str, plural: &str) -> String {
    if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") }
}

/// The resource (group, plural) a quota resource name counts objects of, if it names one: `pods`,
/// `requests.cpu` and `count/pods` are pods, `count/deployments.apps` deployments in `apps`.
pub fn counted_resource(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    let core = |plural: &str| Some((String::new(), plural.to_string()));
    if POD_RESOURCES.contains(&name) || is_pod_prefixed(name) || is_extended_for_quota(name) {
        return core("pods");
    }
    match name {
        "services" | "services.nodeports" | "services.loadbalancers" => core("services"),
        "persistentvolumeclaims" | "requests.storage" => core("persistentvolumeclaims"),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => core(name),
        _ if name.contains(STORAGE_CLASS_SUFFIX) => core("persistentvolumeclaims"),
        _ => None,
    }
}

fn is_pod_prefixed(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("requests.hugepages-")
}

/// `requests.<domain>/<name>` outside kubernetes.io: an extended resource, which quota only tracks as requests.
fn is_extended_for_quota(name: &str) -> bool {
    name.strip_prefix("requests.").is_some_and(|rest| rest.contains('/') && !rest.contains("kubernetes.io/"))
}

fn is_pod(group: &str, plural: &str) -> bool {
    group.is_empty() && plural == "pods"
}

/// Whether a pod has a deadline (`activeDeadlineSeconds`): the `Terminating` scope.
pub fn pod_is_terminating(pod: &Value) -> bool {
    pod["spec"]["activeDeadlineSeconds"].as_i64().is_some_and(|s| s >= 0)
}

/// Whether an update from `old` to `new` may change what the object charges, so that quota admission looks at
/// it: a service (changing type) or a claim (growing) always, a pod when it enters or leaves the `Terminating`
/// scope (its resources change only through a `resize`, which Gantry does not serve). Other kinds are charged
/// on create only.
pub fn charges_update(group: &str, plural: &str, old: &Value, new: &Value) -> bool {
    group.is_empty()
        && match plural {
            "services" | "persistentvolumeclaims" => true,
            "pods" => pod_is_terminating(old) != pod_is_terminating(new),
            _ => false,
        }
}

/// The names among `names` that objects of the resource are charged for.
pub fn matching_resources<'a>(group: &str, plural: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let count = object_count_name(group, plural);
    names
        .into_iter()
        .filter(|name| {
            if *name == count {
                return true;
            }
            counted_resource(name).is_some_and(|(g, p)| g == group && p == plural && !name.starts_with("count/"))
        })
        .map(str::to_string)
        .collect()
}

/// Reads a resource list (`{"cpu": "1", "memory": "1Gi"}`); values that are not quantities are left out.
pub fn parse_list(value: &Value) -> ResourceList {
    value
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Quantity::from_json(v).ok().map(|q| (k.clone(), q))).collect())
        .unwrap_or_default()
}

/// A resource list as JSON, in canonical quantity form.
pub fn list_to_json(list: &ResourceList) -> Value {
    Value::Object(list.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<Map<String, Value>>())
}

/// `a + b`; a zero takes the other's notation (kube's `Quantity.Add`), so sums of `Mi` stay in `Mi`.
pub fn add_quantity(a: &Quantity, b: &Quantity) -> Quantity {
    if a.is_zero() { *b } else { a.add(b) }
}

/// The sum of two lists, resource by resource.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        let sum = out.get(k).map_or(*v, |old| add_quantity(old, v));
        out.insert(k.clone(), sum);
    }
    out
}

/// `a - b` for every resource of `a`, never below zero (kube's `SubtractWithNonNegativeResult`).
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    a.iter()
        .map(|(k, v)| {
            let diff = b.get(k).map_or(*v, |old| v.sub(old));
            (k.clone(), if diff.is_negative() { Quantity::ZERO } else { diff })
        })
        .collect()
}

/// Only the resources of `list` named in `names`.
pub fn mask(list: &ResourceList, names: &[String]) -> ResourceList {
    list.iter().filter(|(k, _)| names.contains(k)).map(|(k, v)| (k.clone(), *v)).collect()
}

/// The resources of `a` above their value in `b` (resources `b` lacks are not limited).
pub fn exceeding(a: &ResourceList, b: &ResourceList) -> Vec<String> {
    a.iter().filter(|(k, v)| b.get(*k).is_some_and(|limit| *v > limit)).map(|(k, _)| k.clone()).collect()
}

/// kube's rendering of a resource list in quota messages: `pods=1,requests.cpu=500m`.
pub fn pretty_print(list: &ResourceList) -> String {
    list.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The pod's compute requests or limits (`field`: `requests` or `limits`): the containers' sum, or more if an
/// init container needs more while it runs (with the sidecars started before it), plus the pod overhead.
pub fn pod_resources(pod: &Value, field: &str) -> ResourceList {
    let spec = &pod["spec"];
    let of = |c: &Value| parse_list(&c["resources"][field]);
    let mut total = ResourceList::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        total = add(&total, &of(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        let own = of(c);
        let while_running = if c["restartPolicy"] == "Always" {
            total = add(&total, &own);
            sidecars = add(&sidecars, &own);
            sidecars.clone()
        } else {
            add(&own, &sidecars)
        };
        for (k, v) in while_running {
            if init_peak.get(&k).is_none_or(|peak| v > *peak) {
                init_peak.insert(k, v);
            }
        }
    }
    for (k, v) in init_peak {
        if total.get(&k).is_none_or(|sum| v > *sum) {
            total.insert(k, v);
        }
    }
    add(&total, &parse_list(&spec["overhead"]))
}

/// What one container's (or a pod's) requests and limits charge to compute quotas (kube's
/// `podComputeUsageHelper`): `cpu` and `requests.cpu` from the request, `limits.cpu` from the limit, ...
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), Quantity::from_units(1));
    for name in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(name) {
            out.insert(name.into(), *q);
            out.insert(format!("requests.{name}"), *q);
        }
        if let Some(q) = limits.get(name) {
            out.insert(format!("limits.{name}"), *q);
        }
    }
    for (name, q) in requests {
        if name.starts_with("hugepages-") {
            out.insert(name.clone(), *q);
            out.insert(format!("requests.{name}"), *q);
        } else if name.contains('/') && !name.contains("kubernetes.io/") {
            out.insert(format!("requests.{name}"), *q);
        }
    }
    out
}

/// Whether a pod still uses compute quota: not in a terminal phase, and not stuck past its deletion grace
/// period (a lost node's pods must not block their replacements). `now` is seconds since the epoch.
pub fn pod_counts_for_compute(pod: &Value, now: i64) -> bool {
    if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
        return false;
    }
    let meta = &pod["metadata"];
    if let (Some(deleted), Some(grace)) =
        (meta["deletionTimestamp"].as_str(), meta["deletionGracePeriodSeconds"].as_i64())
        && let Ok(at) = deleted.parse::<jiff::Timestamp>()
        && now > at.as_second().saturating_add(grace)
    {
        return false;
    }
    true
}

fn unit() -> Quantity {
    Quantity::from_units(1)
}

/// What an object of the resource charges, by quota resource name. `now` (seconds since the epoch) decides
/// whether a pod being deleted still counts.
pub fn usage(group: &str, plural: &str, obj: &Value, now: i64) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(object_count_name(group, plural), unit());
    if !group.is_empty() {
        return out;
    }
    match plural {
        "pods" if pod_counts_for_compute(obj, now) => {
            out.extend(compute_usage(&pod_resources(obj, "requests"), &pod_resources(obj, "limits")));
        }
        "services" => {
            let spec = &obj["spec"];
            let ports = spec["ports"].as_array().map_or(0, Vec::len);
            let ports = i64::try_from(ports).unwrap_or(i64::MAX);
            out.insert("services".into(), unit());
            let (node_ports, balancers) = match spec["type"].as_str() {
                Some("NodePort") => (ports, 0),
                Some("LoadBalancer") if spec["allocateLoadBalancerNodePorts"] == false => {
                    let explicit = spec["ports"].as_array().into_iter().flatten();
                    let explicit = explicit.filter(|p| p["nodePort"].as_i64().is_some_and(|n| n != 0)).count();
                    (i64::try_from(explicit).unwrap_or(i64::MAX), 1)
                }
                Some("LoadBalancer") => (ports, 1),
                _ => (0, 0),
            };
            out.insert("services.nodeports".into(), Quantity::from_units(node_ports));
            out.insert("services.loadbalancers".into(), Quantity::from_units(balancers));
        }
        "persistentvolumeclaims" => {
            out.insert("persistentvolumeclaims".into(), unit());
            let class = obj["spec"]["storageClassName"]
                .as_str()
                .or_else(|| obj["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"].as_str())
                .filter(|c| !c.is_empty());
            if let Some(class) = class {
                out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"), unit());
            }
            // A claim being expanded is charged the larger of what it asks and what it was given.
            let asked = Quantity::from_json(&obj["spec"]["resources"]["requests"]["storage"]).ok();
            let given = Quantity::from_json(&obj["status"]["allocatedResources"]["storage"]).ok();
            let storage = match (asked, given) {
                (Some(a), Some(g)) if g > a => Some(g),
                (Some(a), _) if obj["spec"]["resources"]["requests"].get("storage").is_some() => Some(a),
                _ => None,
            };
            if let Some(storage) = storage {
                out.insert("requests.storage".into(), storage);
                if let Some(class) = class {
                    out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), storage);
                }
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            out.insert(plural.to_string(), unit());
        }
        _ => {}
    }
    out
}

/// One scope a quota is restricted to (`spec.scopes` are `Exists` requirements).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRequirement {
    /// `Terminating`, `NotTerminating`, `BestEffort`, `NotBestEffort`, `PriorityClass`, ...
    pub scope: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values of `In` and `NotIn`.
    pub values: Vec<String>,
}

/// The scopes of a quota: `spec.scopes` and `spec.scopeSelector.matchExpressions`.
pub fn scopes(quota: &Value) -> Vec<ScopeRequirement> {
    let mut out: Vec<ScopeRequirement> = quota["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| ScopeRequirement { scope: s.to_string(), operator: "Exists".into(), values: Vec::new() })
        .collect();
    for e in quota["spec"]["scopeSelector"]["matchExpressions"].as_array().into_iter().flatten() {
        out.push(ScopeRequirement {
            scope: e["scopeName"].as_str().unwrap_or_default().to_string(),
            operator: e["operator"].as_str().unwrap_or_default().to_string(),
            values: e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from).collect(),
        });
    }
    out
}

/// Whether no container of the pod requests or limits cpu or memory (QoS class BestEffort).
pub fn pod_qos_best_effort(pod: &Value) -> bool {
    let spec = &pod["spec"];
    ["initContainers", "containers"].iter().filter_map(|f| spec[*f].as_array()).flatten().all(|c| {
        ["requests", "limits"].iter().all(|field| {
            let list = parse_list(&c["resources"][*field]);
            ["cpu", "memory"].iter().all(|r| list.get(*r).is_none_or(Quantity::is_zero))
        })
    })
}

fn pod_matches_scope(pod: &Value, scope: &ScopeRequirement) -> bool {
    let terminating = pod_is_terminating(pod);
    match scope.scope.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => pod_qos_best_effort(pod),
        "NotBestEffort" => !pod_qos_best_effort(pod),
        "PriorityClass" => {
            let class = pod["spec"]["priorityClassName"].as_str().filter(|c| !c.is_empty());
            match scope.operator.as_str() {
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                "In" => class.is_some_and(|c| scope.values.iter().any(|v| v == c)),
                "NotIn" => class.is_none_or(|c| !scope.values.iter().any(|v| v == c)),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => {
            let affinity = &pod["spec"]["affinity"];
            ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
                ["requiredDuringSchedulingIgnoredDuringExecution", "preferredDuringSchedulingIgnoredDuringExecution"]
                    .iter()
                    .flat_map(|field| affinity[*kind][*field].as_array().into_iter().flatten())
                    .any(|term| {
                        let term = if term.get("podAffinityTerm").is_some() { &term["podAffinityTerm"] } else { term };
                        term["namespaces"].as_array().is_some_and(|n| !n.is_empty())
                            || term.get("namespaceSelector").is_some_and(|s| !s.is_null())
                    })
            })
        }
        _ => false,
    }
}

/// Whether every scope of the quota takes the object in. Only pods have scopes: a scoped quota takes no other
/// kind, as in kube.
pub fn matches_scopes(group: &str, plural: &str, quota: &Value, obj: &Value) -> bool {
    let scopes = scopes(quota);
    if scopes.is_empty() {
        return true;
    }
    is_pod(group, plural) && scopes.iter().all(|s| pod_matches_scope(obj, s))
}

/// What a pod must declare under a quota limiting `required` (kube's backward-compatible rule: with a cpu or
/// memory quota, every container states the matching request or limit). The error is kube's text.
pub fn check_constraints(group: &str, plural: &str, required: &[String], obj: &Value) -> Result<(), String> {
    if !is_pod(group, plural) {
        return Ok(());
    }
    let required: Vec<&str> = required.iter().map(String::as_str).filter(|r| VALIDATION_SET.contains(r)).collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    let spec = &obj["spec"];
    for c in ["containers", "initContainers"].iter().filter_map(|f| spec[*f].as_array()).flatten() {
        let usage = compute_usage(&parse_list(&c["resources"]["requests"]), &parse_list(&c["resources"]["limits"]));
        for r in &required {
            if !usage.contains_key(*r) {
                missing.entry(*r).or_default().insert(c["name"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, containers)| format!("{r} for: {}", containers.iter().cloned().collect::<Vec<_>>().join(",")))
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}, "status": {"phase": "Pending"}})
    }

    #[test]
    fn a_pod_charges_its_count_and_the_sum_of_its_containers() {
        let p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
        ]));
        let u = usage("", "pods", &p, 0);
        assert_eq!(u["pods"], q("1"));
        assert_eq!(u["count/pods"], q("1"));
        assert_eq!(u["requests.cpu"], q("350m"));
        assert_eq!(u["cpu"], q("350m"));
        assert_eq!(u["memory"].to_string(), "128Mi");
        assert_eq!(u["limits.cpu"], q("1"));
        assert!(!u.contains_key("limits.memory"));
    }

    #[test]
    fn an_init_container_needing_more_than_the_containers_sets_the_pod_request() {
        let mut p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]));
        p["spec"]["initContainers"] = json!([{"name": "i", "resources": {"requests": {"cpu": "2"}}}]);
        assert_eq!(pod_resources(&p, "requests")["cpu"], q("2"));
    }

    #[test]
    fn a_terminal_pod_charges_only_its_object_count() {
        let mut p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        p["status"]["phase"] = json!("Succeeded");
        let u = usage("", "pods", &p, 0);
        assert_eq!(u.keys().collect::<Vec<_>>(), vec!["count/pods"]);
    }

    #[test]
    fn a_pod_stuck_past_its_grace_period_no_longer_charges_compute() {
        let mut p = pod(json!([{"name": "a"}]));
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        let at = "2026-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
        assert!(usage("", "pods", &p, at + 10).contains_key("pods"));
        assert!(!usage("", "pods", &p, at + 31).contains_key("pods"));
    }

    #[test]
    fn services_charge_node_ports_and_load_balancers_by_type() {
        let svc = |t: &str| json!({"spec": {"type": t, "ports": [{"port": 80}, {"port": 443}]}});
        let u = usage("", "services", &svc("ClusterIP"), 0);
        assert_eq!((u["services"], u["services.nodeports"]), (q("1"), q("0")));
        let u = usage("", "services", &svc("NodePort"), 0);
        assert_eq!((u["services.nodeports"], u["services.loadbalancers"]), (q("2"), q("0")));
        let u = usage("", "services", &svc("LoadBalancer"), 0);
        assert_eq!((u["services.nodeports"], u["services.loadbalancers"]), (q("2"), q("1")));
    }

    #[test]
    fn claims_charge_storage_overall_and_per_class() {
        let pvc = json!({"spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "1Gi"}}}});
        let u = usage("", "persistentvolumeclaims", &pvc, 0);
        assert_eq!(u["requests.storage"].to_string(), "1Gi");
        assert_eq!(u["gold.storageclass.storage.k8s.io/requests.storage"].to_string(), "1Gi");
        assert_eq!(u["persistentvolumeclaims"], q("1"));
    }

    #[test]
    fn any_kind_charges_its_object_count() {
        let u = usage("apps", "deployments", &json!({}), 0);
        assert_eq!(u.into_iter().collect::<Vec<_>>(), vec![("count/deployments.apps".to_string(), q("1"))]);
        assert_eq!(counted_resource("count/deployments.apps"), Some(("apps".into(), "deployments".into())));
        assert_eq!(counted_resource("limits.memory"), Some((String::new(), "pods".into())));
        assert_eq!(counted_resource("requests.storage"), Some((String::new(), "persistentvolumeclaims".into())));
        assert_eq!(counted_resource("bogus"), None);
    }

    #[test]
    fn matching_resources_keeps_the_names_a_kind_is_charged_for() {
        let names = ["pods", "count/pods", "services", "requests.cpu", "count/secrets", "requests.example.com/gpu"];
        assert_eq!(
            matching_resources("", "pods", names),
            vec!["pods", "count/pods", "requests.cpu", "requests.example.com/gpu"]
        );
        assert_eq!(matching_resources("", "secrets", names), vec!["count/secrets"]);
    }

    #[test]
    fn scopes_split_pods_by_deadline_and_qos() {
        let quota = |scopes: Value| json!({"spec": {"scopes": scopes}});
        let best = pod(json!([{"name": "a"}]));
        let mut burstable = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        burstable["spec"]["activeDeadlineSeconds"] = json!(60);
        assert!(matches_scopes("", "pods", &quota(json!(["BestEffort"])), &best));
        assert!(!matches_scopes("", "pods", &quota(json!(["BestEffort"])), &burstable));
        assert!(matches_scopes("", "pods", &quota(json!(["NotBestEffort", "Terminating"])), &burstable));
        assert!(!matches_scopes("", "pods", &quota(json!(["Terminating"])), &best));
        assert!(matches_scopes("", "pods", &quota(json!(["NotTerminating"])), &best));
        assert!(!matches_scopes("", "services", &quota(json!(["NotTerminating"])), &json!({})));
        let by_class = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        let mut high = best.clone();
        high["spec"]["priorityClassName"] = json!("high");
        assert!(matches_scopes("", "pods", &by_class, &high));
        assert!(!matches_scopes("", "pods", &by_class, &best));
    }

    #[test]
    fn a_cpu_quota_requires_every_container_to_state_it_in_kubes_words() {
        let p = pod(json!([
            {"name": "c", "resources": {"requests": {"cpu": "1"}}},
            {"name": "d", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"memory": "1Gi"}}},
        ]));
        let required = vec!["limits.cpu".to_string(), "requests.memory".to_string(), "pods".to_string()];
        assert_eq!(
            check_constraints("", "pods", &required, &p),
            Err("must specify limits.cpu for: c; requests.memory for: c".to_string())
        );
        assert_eq!(check_constraints("", "pods", &["pods".to_string()], &p), Ok(()));
    }

    #[test]
    fn lists_print_sorted_and_sums_keep_binary_notation() {
        let a: ResourceList = [("pods".to_string(), q("1")), ("memory".to_string(), q("64Mi"))].into();
        let sum = add(&ResourceList::new(), &add(&a, &a));
        assert_eq!(pretty_print(&sum), "memory=128Mi,pods=2");
        assert_eq!(exceeding(&sum, &[("pods".to_string(), q("1"))].into()), vec!["pods"]);
        assert_eq!(subtract_non_negative(&a, &sum)["pods"], q("0"));
    }
}
