//! PodTopologySpread: spreads pods matching a constraint's selector evenly across the domains of its
//! topology key, with kube-scheduler's semantics.
//!
//! - `whenUnsatisfiable: DoNotSchedule` constraints are enforced by Filter: placing the pod in a node's domain
//!   must keep `count in domain + (1 if the pod matches its own selector) - global minimum ≤ maxSkew`, the
//!   minimum taken over the eligible domains (0 when fewer than `minDomains` domains exist).
//! - `whenUnsatisfiable: ScheduleAnyway` constraints are scored: fewer matching pods in a node's domain is
//!   better, weighted by `log(domains + 2)`, then normalized so that the emptiest node gets 100.
//!
//! Eligible nodes carry every constraint's topology key and, per constraint, pass the inclusion policies
//! (`nodeAffinityPolicy`, default Honor: the pod's `nodeSelector` and required node affinity;
//! `nodeTaintsPolicy`, default Ignore: untolerated NoSchedule/NoExecute taints). Only pods in the incoming
//! pod's namespace that are not being deleted are counted; `matchLabelKeys` add the incoming pod's values
//! for those keys to the selector.
//!
//! Counts per domain are computed once per cycle (PreFilter / PreScore) so Filter and Score cost a few map
//! lookups per node. Cluster-level default constraints (kube-scheduler's system defaulting for pods without
//! constraints) are not applied: a pod without constraints is not spread by this plugin.

use crate::plugins::node_affinity::RequiredNodeAffinity;
use crate::plugins::taint_toleration::{find_untolerated_taint, is_do_not_schedule_taint};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use crate::framework::{CycleState, Filter, MAX_NODE_SCORE, NodeScore, Plugin, PreFilter, PreScore, Score, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::topology::{CountQuery, DomainCounts};

/// The plugin's name.
pub const NAME: &str = "PodTopologySpread";

/// Reason for a node whose domain would exceed the allowed skew.
pub const REASON_CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
/// Reason for a node lacking a constraint's topology key.
pub const REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
const STATE_FILTER: &str = "PodTopologySpread/filter";
const STATE_SCORE: &str = "PodTopologySpread/score";
const STATE_NODES: &str = "PodTopologySpread/nodes";

/// The PodTopologySpread plugin (PreFilter, Filter, PreScore, Score).
#[derive(Clone, Debug, Default)]
pub struct PodTopologySpread;

impl PodTopologySpread {
    /// The plugin.
    pub fn new() -> PodTopologySpread {
        PodTopologySpread
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The hasher of the per-cycle domain maps: std's DoS-resistant default (label values are user input).
pub(crate) type DomainHasher = std::collections::hash_map::RandomState;

/// Whether `labels` satisfy a `metav1.LabelSelector` (kube's `LabelSelectorAsSelector`: an empty selector
/// matches everything). Operators other than In, NotIn, Exists and DoesNotExist match nothing, as the API
/// server never admits them.
pub(crate) fn label_selector_matches(sel: &metav1::LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for expr in sel.match_expressions.iter().flatten() {
        let value = labels.get(&expr.key);
        let values = expr.values.as_deref().unwrap_or_default();
        let ok = match expr.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether the node has a NoSchedule or NoExecute taint the pod does not tolerate.
fn has_untolerated_taint(pod: &Pod, node: &Node) -> bool {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    find_untolerated_taint(taints, tolerations, is_do_not_schedule_taint, false).is_some()
}

/// A constraint as the plugin evaluates it.
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    /// `None` when the constraint has no selector: it matches no pod.
    selector: Option<metav1::LabelSelector>,
    /// `matchLabelKeys` resolved against the incoming pod: each key must have this value.
    extra: Vec<(String, String)>,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    fn from_spec(c: &TopologySpreadConstraint, pod: &PodInfo) -> Constraint {
        let labels = pod.labels();
        let extra =
            c.match_label_keys.iter().flatten().filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone()))).collect();
        Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector: c.label_selector.clone(),
            extra,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let Some(sel) = &self.selector else { return false };
        label_selector_matches(sel, labels) && self.extra.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// Pods on the node in `namespace`, not being deleted, matching the selector.
    fn count(&self, node: &NodeInfo, namespace: &str) -> i64 {
        if self.selector.is_none() {
            return 0;
        }
        node.pods
            .iter()
            .filter(|p| {
                p.pod.metadata.deletion_timestamp.is_none() && p.namespace() == namespace && self.matches(p.labels())
            })
            .count() as i64
    }

    fn includes(&self, pod: &Pod, node: &Node, affinity_ok: bool) -> bool {
        (!self.honor_node_affinity || affinity_ok) && (!self.honor_taints || !has_untolerated_taint(pod, node))
    }
}

fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    let specs = pod.pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_deref()).unwrap_or_default();
    specs.iter().filter(|c| c.when_unsatisfiable == when).map(|c| Constraint::from_spec(c, pod)).collect()
}

fn has_all_keys(labels: &BTreeMap<String, String>, constraints: &[Constraint]) -> bool {
    constraints.iter().all(|c| labels.contains_key(&c.topology_key))
}

fn add(domains: &mut DomainCounts, value: &str, count: i64) {
    // Most nodes share a domain with an earlier one: look up by reference before allocating the key.
    if let Some(n) = domains.get_mut(value) {
        *n += count;
    } else {
        domains.insert(value.to_string(), count);
    }
}

/// What Filter needs: per constraint, matching pods per domain and the global minimum.
#[derive(Debug)]
struct FilterState {
    constraints: Vec<Constraint>,
    counts: Vec<Arc<DomainCounts>>,
    /// Per constraint, whether the incoming pod matches its own selector.
    self_match: Vec<i64>,
    /// Per constraint, the minimum used in the skew (already 0 when domains are fewer than minDomains).
    min: Vec<i64>,
}

/// Every node of the snapshot, kept for PreScore (which only sees the feasible ones).
struct AllNodes(Arc<Vec<Arc<NodeInfo>>>);

impl PreFilter for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status {
        // Scoring needs every node only for pods with soft constraints.
        if !constraints(pod, "ScheduleAnyway").is_empty() {
            state.write(STATE_NODES, AllNodes(Arc::clone(&snapshot.nodes)));
        }
        let constraints = constraints(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return Status::skip();
        }
        if let Some(counted) = from_counters(&constraints, pod, snapshot) {
            state.write(STATE_FILTER, counted);
            return Status::success();
        }
        let mut counts = vec![DomainCounts::default(); constraints.len()];
        let required = RequiredNodeAffinity::from_pod(&pod.pod);
        for node in snapshot.nodes.iter() {
            let labels = node.labels();
            if !has_all_keys(labels, &constraints) {
                continue;
            }
            let affinity_ok = required.matches(&node.node);
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(&pod.pod, &node.node, affinity_ok) {
                    continue;
                }
                let Some(value) = labels.get(&c.topology_key) else { continue };
                let count = c.count(node, pod.namespace());
                add(&mut counts[i], value, count);
            }
        }
        let min = constraints
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                if (domains.len() as i64) < c.min_domains {
                    0
                } else {
                    // No eligible domain at all leaves nothing to be skewed against.
                    domains.values().copied().min().unwrap_or(i64::from(i32::MAX))
                }
            })
            .collect();
        let self_match = constraints.iter().map(|c| i64::from(c.matches(pod.labels()))).collect();
        let counts = counts.into_iter().map(Arc::new).collect();
        state.write(STATE_FILTER, FilterState { constraints, counts, self_match, min });
        Status::success()
    }
}

/// The filter state from the cache's counters, when every node is eligible for every constraint (the pod
/// restricts nodes in no way the constraints honour, and every node carries every topology key) and the
/// cache keeps a counter for each; `None` otherwise (the caller walks the nodes; missing counters are kept
/// from the next cycle on).
fn from_counters(constraints: &[Constraint], pod: &PodInfo, snapshot: &Snapshot) -> Option<FilterState> {
    let topology = &snapshot.topology;
    let spec = pod.pod.spec.as_ref()?;
    let restricts_nodes = spec.node_selector.as_ref().is_some_and(|s| !s.is_empty())
        || spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .is_some_and(|a| a.required_during_scheduling_ignored_during_execution.is_some());
    let every_node_eligible = constraints.iter().all(|c| {
        (!c.honor_node_affinity || !restricts_nodes) && !c.honor_taints && topology.every_node_has(&c.topology_key)
    });
    if !every_node_eligible || constraints.iter().any(|c| c.selector.is_none()) {
        return None;
    }
    let mut counts = Vec::with_capacity(constraints.len());
    for c in constraints {
        let query = CountQuery {
            namespaces: vec![pod.namespace().to_string()],
            selector: c.selector.clone()?,
            equal: c.extra.clone(),
            not_equal: Vec::new(),
            topology_key: c.topology_key.clone(),
            skip_terminating: true,
        };
        // Not kept yet (it will be from the next cycle on): count the pods carrying the selector's labels.
        let counted = topology
            .count(&query)
            .or_else(|| topology.count_carriers(&query, |node| snapshot.get(node).map(|n| n.labels())).map(Arc::new));
        counts.push(counted);
    }
    let counts: Vec<Arc<DomainCounts>> = counts.into_iter().collect::<Option<_>>()?;
    let min = constraints
        .iter()
        .zip(&counts)
        .map(|(c, counted)| {
            let domains = topology.domains(&c.topology_key).map_or(0, |d| d.len());
            if (domains as i64) < c.min_domains || counted.len() < domains {
                // Too few domains, or some domain without a matching pod.
                0
            } else {
                counted.values().copied().min().unwrap_or(0)
            }
        })
        .collect();
    let self_match = constraints.iter().map(|c| i64::from(c.matches(pod.labels()))).collect();
    Some(FilterState { constraints: constraints.to_vec(), counts, self_match, min })
}

impl Filter for PodTopologySpread {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<FilterState>(STATE_FILTER) else { return Status::success() };
        let labels = node.labels();
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                return Status::unresolvable(REASON_NODE_LABEL_NOT_MATCH);
            };
            let count = s.counts[i].get(value).copied().unwrap_or(0);
            if count + s.self_match[i] - s.min[i] > c.max_skew {
                return Status::unschedulable(REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

/// What Score needs: per (constraint, domain) matching pods, per constraint the normalizing weight, and the
/// feasible nodes left out for lacking a topology key.
#[derive(Debug)]
struct ScoreState {
    constraints: Vec<Constraint>,
    counts: Vec<DomainCounts>,
    weights: Vec<f64>,
    ignored: HashSet<Arc<str>, DomainHasher>,
    namespace: String,
}

impl PreScore for PodTopologySpread {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Status {
        let constraints = constraints(pod, "ScheduleAnyway");
        if nodes.is_empty() || constraints.is_empty() {
            return Status::skip();
        }
        let mut ignored = HashSet::default();
        let mut counts: Vec<DomainCounts> = vec![DomainCounts::default(); constraints.len()];
        let mut considered = 0usize;
        for node in nodes {
            let labels = node.labels();
            if !has_all_keys(labels, &constraints) {
                ignored.insert(node.name.clone());
                continue;
            }
            considered += 1;
            for (i, c) in constraints.iter().enumerate() {
                // Hostname domains hold one node each: counted in Score directly.
                if c.topology_key != HOSTNAME_LABEL
                    && let Some(value) = labels.get(&c.topology_key)
                {
                    add(&mut counts[i], value, 0);
                }
            }
        }
        let weights = constraints
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                let size = if c.topology_key == HOSTNAME_LABEL { considered } else { domains.len() };
                ((size + 2) as f64).ln()
            })
            .collect();
        let all: &[Arc<NodeInfo>] = state.read::<AllNodes>(STATE_NODES).map_or(nodes, |a| &a.0);
        let mut totals = counts;
        let required = RequiredNodeAffinity::from_pod(&pod.pod);
        for node in all {
            let labels = node.labels();
            if !has_all_keys(labels, &constraints) {
                continue;
            }
            let affinity_ok = required.matches(&node.node);
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(&pod.pod, &node.node, affinity_ok) {
                    continue;
                }
                let Some(value) = labels.get(&c.topology_key) else { continue };
                // Domains without a feasible node do not matter for scoring.
                if let Some(total) = totals[i].get_mut(value) {
                    *total += c.count(node, pod.namespace());
                }
            }
        }
        let namespace = pod.namespace().to_string();
        state.write(STATE_SCORE, ScoreState { constraints, counts: totals, weights, ignored, namespace });
        Status::success()
    }
}

impl Score for PodTopologySpread {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<ScoreState>(STATE_SCORE) else { return Ok(0) };
        if s.ignored.contains(&node.name) {
            return Ok(0);
        }
        let labels = node.labels();
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else { continue };
            let count = if c.topology_key == HOSTNAME_LABEL {
                c.count(node, &s.namespace)
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        Ok(score.round() as i64)
    }

    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        let Some(s) = state.read::<ScoreState>(STATE_SCORE) else { return Status::success() };
        let mut min = i64::MAX;
        let mut max = 0;
        for score in scores.iter().filter(|n| !s.ignored.contains(&n.node)) {
            min = min.min(score.score);
            max = max.max(score.score);
        }
        for score in scores.iter_mut() {
            score.score = if s.ignored.contains(&score.node) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - score.score) / max
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::framework::{Code, Decision, PluginSet, Profile};
    use serde_json::{Value, json};

    fn node(name: &str, labels: Value) -> NodeInfo {
        node_with(name, labels, json!({}))
    }

    fn node_with(name: &str, labels: Value, spec: Value) -> NodeInfo {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec})).unwrap();
        NodeInfo::new(Arc::new(node))
    }

    fn pod(name: &str, ns: &str, labels: Value, spec: Value) -> PodInfo {
        let mut full = json!({"containers": []});
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "uid": name, "labels": labels},
            "spec": full,
        }))
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn web(name: &str) -> PodInfo {
        pod(name, "default", json!({"app": "web"}), json!({}))
    }

    fn spread(when: &str, key: &str, extra: Value) -> Value {
        let mut c = json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when,
                           "labelSelector": {"matchLabels": {"app": "web"}}});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!({"topologySpreadConstraints": [c]})
    }

    fn incoming(spec: Value) -> PodInfo {
        pod("new", "default", json!({"app": "web"}), spec)
    }

    /// Nodes (name, zone or None, pods placed) as a snapshot.
    fn cluster(nodes: Vec<(NodeInfo, Vec<PodInfo>)>) -> Snapshot {
        Snapshot::new(
            nodes
                .into_iter()
                .map(|(mut n, pods)| {
                    for p in pods {
                        n.add_pod(Arc::new(p));
                    }
                    Arc::new(n)
                })
                .collect(),
        )
    }

    fn zoned(name: &str, zone: &str) -> NodeInfo {
        node(name, json!({"zone": zone, HOSTNAME_LABEL: name}))
    }

    fn filter_once(pod: &PodInfo, snapshot: &Snapshot) -> Vec<(String, Status)> {
        let plugin = PodTopologySpread::new();
        let mut state = CycleState::default();
        let pre = plugin.pre_filter(&mut state, pod, snapshot);
        assert!(pre.is_success(), "{pre:?}");
        snapshot.nodes.iter().map(|n| (n.name.to_string(), plugin.filter(&state, pod, n))).collect()
    }

    /// Filters by walking the nodes, then again with the counters the first cycle asked the cache for (used
    /// when every node is eligible): both must agree.
    fn filter_all(pod: &PodInfo, snapshot: &Snapshot) -> Vec<(String, Status)> {
        let walked = filter_once(pod, snapshot);
        let mut counted = snapshot.clone();
        let nodes = Arc::clone(&counted.nodes);
        Arc::make_mut(&mut counted.topology).register_requested(&nodes);
        assert_eq!(filter_once(pod, &counted), walked, "counters and walking disagree");
        walked
    }

    fn codes(verdicts: &[(String, Status)]) -> Vec<(&str, Code)> {
        verdicts.iter().map(|(n, s)| (n.as_str(), s.code)).collect()
    }

    #[test]
    fn a_domain_already_ahead_by_max_skew_is_rejected() {
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![web("w1")]), (zoned("b1", "b"), vec![])]);
        let verdicts = filter_all(&incoming(spread("DoNotSchedule", "zone", json!({}))), &snapshot);
        assert_eq!(codes(&verdicts), vec![("a1", Code::Unschedulable), ("b1", Code::Success)]);
        assert_eq!(verdicts[0].1.reasons, vec![REASON_CONSTRAINTS_NOT_MATCH]);
    }

    #[test]
    fn equal_domains_accept_the_pod_anywhere() {
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![web("w1")]), (zoned("b1", "b"), vec![web("w2")])]);
        let verdicts = filter_all(&incoming(spread("DoNotSchedule", "zone", json!({}))), &snapshot);
        assert_eq!(codes(&verdicts), vec![("a1", Code::Success), ("b1", Code::Success)]);
    }

    #[test]
    fn a_larger_max_skew_allows_more_imbalance() {
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![web("w1")]), (zoned("b1", "b"), vec![])]);
        let verdicts = filter_all(&incoming(spread("DoNotSchedule", "zone", json!({"maxSkew": 2}))), &snapshot);
        assert_eq!(codes(&verdicts), vec![("a1", Code::Success), ("b1", Code::Success)]);
    }

    #[test]
    fn the_cache_counts_for_the_plugin_once_every_node_is_eligible_and_follows_placements() {
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![web("w1")]), (zoned("b1", "b"), vec![])]);
        let pod = incoming(spread("DoNotSchedule", "zone", json!({})));
        let verdicts = filter_once(&pod, &snapshot);
        assert_eq!(codes(&verdicts), vec![("a1", Code::Unschedulable), ("b1", Code::Success)]);
        let mut counted = snapshot.clone();
        let nodes = Arc::clone(&counted.nodes);
        Arc::make_mut(&mut counted.topology).register_requested(&nodes);
        assert_eq!(counted.topology.counters_kept(), 1);
        // A pod placed in zone b afterwards is counted without walking the nodes again.
        let b1 = Arc::clone(&counted.nodes[1]);
        Arc::make_mut(&mut counted.topology).place(&Arc::new(web("w2")), &b1.name, b1.labels(), 1);
        assert_eq!(codes(&filter_once(&pod, &counted)), vec![("a1", Code::Success), ("b1", Code::Success)]);
    }

    #[test]
    fn a_node_without_the_topology_key_is_unresolvable_with_the_missing_label_reason() {
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![]), (node("bare", json!({})), vec![])]);
        let verdicts = filter_all(&incoming(spread("DoNotSchedule", "zone", json!({}))), &snapshot);
        assert_eq!(codes(&verdicts), vec![("a1", Code::Success), ("bare", Code::UnschedulableAndUnresolvable)]);
        assert_eq!(verdicts[1].1.reasons, vec![REASON_NODE_LABEL_NOT_MATCH]);
    }

    #[test]
    fn fewer_domains_than_min_domains_make_the_global_minimum_zero() {
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![web("w1")]), (zoned("b1", "b"), vec![web("w2")])]);
        let pod = incoming(spread("DoNotSchedule", "zone", json!({"minDomains": 3})));
        let verdicts = filter_all(&pod, &snapshot);
        assert_eq!(codes(&verdicts), vec![("a1", Code::Unschedulable), ("b1", Code::Unschedulable)]);
        let pod = incoming(spread("DoNotSchedule", "zone", json!({"minDomains": 2})));
        assert_eq!(codes(&filter_all(&pod, &snapshot)), vec![("a1", Code::Success), ("b1", Code::Success)]);
    }

    #[test]
    fn only_pods_of_the_same_namespace_not_being_deleted_are_counted() {
        let other_ns = pod("x", "other", json!({"app": "web"}), json!({}));
        let mut deleting: Pod = (*web("d").pod).clone();
        deleting.metadata.deletion_timestamp = Some(metav1::Time(jiff_now()));
        let snapshot = cluster(vec![
            (zoned("a1", "a"), vec![other_ns, PodInfo::new(Arc::new(deleting))]),
            (zoned("b1", "b"), vec![]),
        ]);
        let verdicts = filter_all(&incoming(spread("DoNotSchedule", "zone", json!({}))), &snapshot);
        assert_eq!(codes(&verdicts), vec![("a1", Code::Success), ("b1", Code::Success)]);
    }

    fn jiff_now() -> k8s_openapi::jiff::Timestamp {
        k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap()
    }

    #[test]
    fn a_pod_not_matching_its_own_selector_does_not_add_itself_to_the_skew() {
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![web("w1")]), (zoned("b1", "b"), vec![])]);
        let pod = pod("db", "default", json!({"app": "db"}), spread("DoNotSchedule", "zone", json!({})));
        assert_eq!(codes(&filter_all(&pod, &snapshot)), vec![("a1", Code::Success), ("b1", Code::Success)]);
    }

    #[test]
    fn a_constraint_without_selector_counts_no_pods() {
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![web("w1"), web("w2")]), (zoned("b1", "b"), vec![])]);
        let spec = json!({"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]});
        assert_eq!(codes(&filter_all(&incoming(spec), &snapshot)), vec![("a1", Code::Success), ("b1", Code::Success)]);
    }

    #[test]
    fn node_affinity_policy_honor_leaves_out_domains_the_pod_cannot_reach() {
        let nodes = || {
            cluster(vec![
                (node("a1", json!({"zone": "a", "pool": "x"})), vec![web("w1")]),
                (node("b1", json!({"zone": "b", "pool": "x"})), vec![web("w2")]),
                (node("c1", json!({"zone": "c", "pool": "y"})), vec![]),
            ])
        };
        let mut spec = spread("DoNotSchedule", "zone", json!({}));
        spec["nodeSelector"] = json!({"pool": "x"});
        let verdicts = filter_all(&incoming(spec.clone()), &nodes());
        assert_eq!(verdicts[0].1.code, Code::Success, "zone c is not eligible, so the minimum is 1");
        spec["topologySpreadConstraints"][0]["nodeAffinityPolicy"] = json!("Ignore");
        let verdicts = filter_all(&incoming(spec), &nodes());
        assert_eq!(verdicts[0].1.code, Code::Unschedulable, "zone c counts with 0 pods");
    }

    #[test]
    fn node_taints_policy_honor_leaves_out_tainted_domains_and_ignore_keeps_them() {
        let taint = json!({"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]});
        let nodes = || {
            cluster(vec![
                (zoned("a1", "a"), vec![web("w1")]),
                (node_with("b1", json!({"zone": "b"}), taint.clone()), vec![]),
            ])
        };
        let spec = spread("DoNotSchedule", "zone", json!({}));
        assert_eq!(filter_all(&incoming(spec), &nodes())[0].1.code, Code::Unschedulable);
        let spec = spread("DoNotSchedule", "zone", json!({"nodeTaintsPolicy": "Honor"}));
        assert_eq!(filter_all(&incoming(spec.clone()), &nodes())[0].1.code, Code::Success);
        let mut tolerating = spec;
        tolerating["tolerations"] = json!([{"key": "gpu", "operator": "Exists"}]);
        assert_eq!(filter_all(&incoming(tolerating), &nodes())[0].1.code, Code::Unschedulable);
    }

    #[test]
    fn match_label_keys_narrow_the_selector_to_the_pods_own_values() {
        let v = |name: &str, version: &str| pod(name, "default", json!({"app": "web", "v": version}), json!({}));
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![v("o1", "1"), v("o2", "1")]), (zoned("b1", "b"), vec![])]);
        let mut pod = v("new", "2");
        let spec = spread("DoNotSchedule", "zone", json!({"matchLabelKeys": ["v"]}));
        pod = {
            let mut p = (*pod.pod).clone();
            p.spec = serde_json::from_value(json!({"containers": [], "topologySpreadConstraints":
                spec["topologySpreadConstraints"]}))
            .unwrap();
            PodInfo::new(Arc::new(p))
        };
        assert_eq!(codes(&filter_all(&pod, &snapshot)), vec![("a1", Code::Success), ("b1", Code::Success)]);
    }

    #[test]
    fn pre_filter_skips_pods_without_hard_constraints() {
        let plugin = PodTopologySpread::new();
        let mut state = CycleState::default();
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![])]);
        let status = plugin.pre_filter(&mut state, &incoming(spread("ScheduleAnyway", "zone", json!({}))), &snapshot);
        assert_eq!(status.code, Code::Skip);
        assert_eq!(plugin.filter(&state, &web("x"), &snapshot.nodes[0]).code, Code::Success);
    }

    fn scores(pod: &PodInfo, snapshot: &Snapshot) -> Vec<i64> {
        let plugin = PodTopologySpread::new();
        let mut state = CycleState::default();
        plugin.pre_filter(&mut state, pod, snapshot);
        assert!(plugin.pre_score(&mut state, pod, &snapshot.nodes).is_success());
        let mut scores: Vec<NodeScore> = snapshot
            .nodes
            .iter()
            .map(|n| NodeScore { node: n.name.clone(), score: plugin.score(&state, pod, n).unwrap() })
            .collect();
        assert!(plugin.normalize(&state, pod, &mut scores).is_success());
        scores.iter().map(|s| s.score).collect()
    }

    #[test]
    fn schedule_anyway_scores_the_emptier_domain_highest() {
        let snapshot = cluster(vec![
            (zoned("a1", "a"), vec![web("w1"), web("w2")]),
            (zoned("b1", "b"), vec![]),
            (zoned("c1", "c"), vec![web("w3")]),
        ]);
        // Weight ln(3 + 2) ≈ 1.609: raw scores 3, 0, 2; normalized 100 * (3 + 0 - s) / 3.
        assert_eq!(scores(&incoming(spread("ScheduleAnyway", "zone", json!({}))), &snapshot), vec![0, 100, 33]);
    }

    #[test]
    fn scoring_counts_pods_on_infeasible_nodes_of_a_feasible_domain() {
        let snapshot = cluster(vec![
            (zoned("a1", "a"), vec![]),
            (zoned("a2", "a"), vec![web("w1"), web("w2")]),
            (zoned("b1", "b"), vec![]),
        ]);
        let pod = incoming(spread("ScheduleAnyway", "zone", json!({})));
        let plugin = PodTopologySpread::new();
        let mut state = CycleState::default();
        plugin.pre_filter(&mut state, &pod, &snapshot);
        let feasible = vec![Arc::clone(&snapshot.nodes[0]), Arc::clone(&snapshot.nodes[2])];
        assert!(plugin.pre_score(&mut state, &pod, &feasible).is_success());
        let a1 = plugin.score(&state, &pod, &snapshot.nodes[0]).unwrap();
        let b1 = plugin.score(&state, &pod, &snapshot.nodes[2]).unwrap();
        assert!(a1 > b1, "{a1} vs {b1}");
    }

    #[test]
    fn nodes_missing_a_soft_constraint_key_score_zero() {
        let snapshot = cluster(vec![(zoned("a1", "a"), vec![web("w1")]), (node("bare", json!({})), vec![])]);
        assert_eq!(scores(&incoming(spread("ScheduleAnyway", "zone", json!({}))), &snapshot), vec![100, 0]);
    }

    #[test]
    fn hostname_spreading_counts_each_nodes_own_pods() {
        let snapshot = cluster(vec![
            (zoned("a1", "a"), vec![web("w1"), web("w2")]),
            (zoned("a2", "a"), vec![web("w3")]),
            (zoned("a3", "a"), vec![]),
        ]);
        // Weight ln(3 + 2): raw 3, 2, 0 → 100 * (3 - s) / 3.
        let got = scores(&incoming(spread("ScheduleAnyway", HOSTNAME_LABEL, json!({}))), &snapshot);
        assert_eq!(got, vec![0, 33, 100]);
    }

    #[test]
    fn a_profile_reports_spread_rejections_in_kube_schedulers_words() {
        let plugin = Arc::new(PodTopologySpread::new());
        let plugins = PluginSet { pre_filter: vec![plugin.clone()], filter: vec![plugin], ..Default::default() };
        let profile = Profile { scheduler_name: "default-scheduler".into(), plugins };
        let snapshot = cluster(vec![
            (zoned("a1", "a"), vec![web("w1")]),
            (zoned("a2", "a"), vec![]),
            (zoned("b1", "b"), vec![web("w2")]),
            (node("bare", json!({})), vec![]),
        ]);
        let pod = incoming(spread("DoNotSchedule", "zone", json!({"minDomains": 3})));
        let (decision, _) = profile.schedule(&pod, &snapshot, 0);
        let Decision::Unschedulable { message, .. } = decision else { panic!("placed: {decision:?}") };
        assert_eq!(
            message,
            "0/4 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required \
             label), 3 node(s) didn't match pod topology spread constraints."
        );
    }

    #[test]
    fn a_large_cluster_spreads_by_zone_in_one_pass() {
        let nodes = (0..5000)
            .map(|i| {
                let pods = if i % 3 == 0 {
                    vec![web(&format!("w{i}")), web(&format!("x{i}"))]
                } else {
                    vec![web(&format!("w{i}"))]
                };
                (zoned(&format!("n{i}"), &format!("z{}", i % 3)), pods)
            })
            .collect();
        let snapshot = cluster(nodes);
        let pod = incoming(spread("DoNotSchedule", "zone", json!({"maxSkew": 500})));
        let ok = filter_all(&pod, &snapshot).iter().filter(|(_, s)| s.is_success()).count();
        // Zone z0 holds 1667 nodes × 2 pods = 3334, the others 1667 each: z0 exceeds the skew of 500.
        assert_eq!(ok, 3333);
    }

    #[test]
    fn every_hard_constraint_must_hold() {
        let snapshot = cluster(vec![
            (zoned("a1", "a"), vec![web("w1")]),
            (zoned("a2", "a"), vec![]),
            (zoned("b1", "b"), vec![web("w2")]),
            (zoned("b2", "b"), vec![web("w3")]),
        ]);
        let spec = json!({"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app": "web"}}},
            {"maxSkew": 1, "topologyKey": HOSTNAME_LABEL, "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app": "web"}}},
        ]});
        // Zone a (1) is behind zone b (2); within it only the empty host keeps the hostname skew.
        assert_eq!(
            codes(&filter_all(&incoming(spec), &snapshot)),
            vec![
                ("a1", Code::Unschedulable),
                ("a2", Code::Success),
                ("b1", Code::Unschedulable),
                ("b2", Code::Unschedulable)
            ]
        );
    }

    #[test]
    fn a_profile_places_the_pod_in_the_emptier_zone() {
        let plugin = Arc::new(PodTopologySpread::new());
        let plugins = PluginSet {
            pre_filter: vec![plugin.clone()],
            filter: vec![plugin.clone()],
            pre_score: vec![plugin.clone()],
            score: vec![(plugin, 2)],
            ..Default::default()
        };
        let profile = Profile { scheduler_name: "default-scheduler".into(), plugins };
        let snapshot = cluster(vec![
            (zoned("a1", "a"), vec![web("w1"), web("w2")]),
            (zoned("b1", "b"), vec![web("w3")]),
            (zoned("c1", "c"), vec![web("w4")]),
        ]);
        let (decision, _) = profile.schedule(&incoming(spread("ScheduleAnyway", "zone", json!({}))), &snapshot, 0);
        let Decision::Place { node, explanation } = decision else { panic!("not placed: {decision:?}") };
        assert!(node == "b1" || node == "c1", "{node}");
        // Raw 3, 2, 2 (weight ln 5); normalized 100 * (3 + 2 - s) / 3 = 66, 100, 100; plugin weight 2.
        assert_eq!(explanation.scores.last().map(|s| (&*s.node, s.total)), Some(("a1", 132)));
        assert_eq!(explanation.scores[0].total, 200);
    }
}
