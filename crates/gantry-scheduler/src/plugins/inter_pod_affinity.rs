//! InterPodAffinity: places pods near (affinity) or away from (anti-affinity) other pods, by topology domain,
//! with kube-scheduler's semantics.
//!
//! Filter enforces, in this order:
//! 1. the pod's required `podAffinity`: in the node's domain of every term's topology key there is a pod
//!    matching all terms (UnschedulableAndUnresolvable otherwise). When no pod anywhere matches and the pod
//!    matches its own terms, it is the first of its group and may go to any node carrying the keys;
//! 2. the pod's required `podAntiAffinity`: no matching pod in the node's domain of any term;
//! 3. existing pods' required anti-affinity (symmetry): no pod whose term matches the incoming pod lives in the
//!    node's domain of that term.
//!
//! Score adds, per topology domain, the weights of the pod's preferred terms matched by pods there (minus for
//! anti-affinity), of existing pods' preferred terms matching the incoming pod, and `hard_pod_affinity_weight`
//! for existing pods' required affinity terms matching it; scores are then scaled to 0..=100 between the
//! lowest and highest.
//!
//! A term selects pods in its `namespaces`, plus those of namespaces whose labels match `namespaceSelector`
//! (an empty selector selects every namespace), or else the pod's own namespace. Namespace labels come from
//! [`InterPodAffinity::namespace_labels`], which the scheduler keeps up to date from its namespace informer; a
//! namespace missing there has no labels. `matchLabelKeys` / `mismatchLabelKeys` add the term owner's values
//! for those keys to the selector (the API server may already have merged them: adding them again changes
//! nothing).
//!
//! Domain counts are computed once per cycle (PreFilter / PreScore), so Filter and Score cost a few map
//! lookups per node.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};

use crate::framework::{CycleState, Filter, MAX_NODE_SCORE, NodeScore, Plugin, PreFilter, PreScore, Score, Status};
use crate::plugins::pod_topology_spread::label_selector_matches;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::topology::{CountQuery, DomainCounts};

/// The plugin's name.
pub const NAME: &str = "InterPodAffinity";

/// Reason for a node outside every domain holding pods the incoming pod requires.
pub const REASON_AFFINITY_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// Reason for a node in a domain holding pods the incoming pod must avoid.
pub const REASON_ANTI_AFFINITY_NOT_MATCH: &str = "node(s) didn't match pod anti-affinity rules";
/// Reason for a node in a domain whose pods' required anti-affinity excludes the incoming pod.
pub const REASON_EXISTING_ANTI_AFFINITY_NOT_MATCH: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// kube-scheduler's default weight of an existing pod's required affinity term in scoring.
pub const DEFAULT_HARD_POD_AFFINITY_WEIGHT: i64 = 1;

const STATE_FILTER: &str = "InterPodAffinity/filter";
const STATE_SCORE: &str = "InterPodAffinity/score";
const STATE_NODES: &str = "InterPodAffinity/nodes";

/// Labels of each namespace, by namespace name.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// Namespace labels shared between the scheduler (which updates them from its namespace informer) and the
/// plugin (which reads them once per cycle).
pub type SharedNamespaceLabels = Arc<RwLock<NamespaceLabels>>;

/// The InterPodAffinity plugin (PreFilter, Filter, PreScore, Score).
#[derive(Clone, Debug)]
pub struct InterPodAffinity {
    /// Labels of every namespace, for terms with a `namespaceSelector`. Keep a clone of the handle and
    /// replace or edit the map when namespaces change; a namespace absent here is treated as having no labels.
    pub namespace_labels: SharedNamespaceLabels,
    /// Score weight of an existing pod's required affinity term that the incoming pod matches (0 disables;
    /// kube-scheduler's `hardPodAffinityWeight`, default 1).
    pub hard_pod_affinity_weight: i64,
}

impl Default for InterPodAffinity {
    fn default() -> InterPodAffinity {
        InterPodAffinity::new(SharedNamespaceLabels::default())
    }
}

impl InterPodAffinity {
    /// The plugin reading namespace labels from `namespace_labels`, with the default hard pod affinity weight.
    pub fn new(namespace_labels: SharedNamespaceLabels) -> InterPodAffinity {
        InterPodAffinity { namespace_labels, hard_pod_affinity_weight: DEFAULT_HARD_POD_AFFINITY_WEIGHT }
    }

    fn read_namespaces(&self) -> RwLockReadGuard<'_, NamespaceLabels> {
        // A writer that panicked leaves a map that is still a valid (if stale) set of labels.
        self.namespace_labels.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `target` matches `term` owned by `owner`.
fn term_matches(namespaces: &NamespaceLabels, term: &PodAffinityTerm, owner: &PodInfo, target: &PodInfo) -> bool {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let target_ns = target.namespace();
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let ns_ok = if listed.is_empty() && term.namespace_selector.is_none() {
        target_ns == owner.namespace()
    } else {
        listed.iter().any(|n| n == target_ns)
            || term
                .namespace_selector
                .as_ref()
                .is_some_and(|s| label_selector_matches(s, namespaces.get(target_ns).unwrap_or(&EMPTY)))
    };
    if !ns_ok {
        return false;
    }
    let Some(selector) = &term.label_selector else { return false };
    let labels = target.labels();
    let owner_labels = owner.labels();
    label_selector_matches(selector, labels)
        && term.match_label_keys.iter().flatten().all(|k| owner_labels.get(k).is_none_or(|v| labels.get(k) == Some(v)))
        && term
            .mismatch_label_keys
            .iter()
            .flatten()
            .all(|k| owner_labels.get(k).is_none_or(|v| labels.get(k) != Some(v)))
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

fn required_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default()
}

fn required_anti_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default()
}

fn preferred_affinity(pod: &Pod) -> &[WeightedPodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default()
}

fn preferred_anti_affinity(pod: &Pod) -> &[WeightedPodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default()
}

/// Values per topology key, per domain value (scores).
type TopologyCounts = HashMap<String, DomainCounts>;

fn add(counts: &mut TopologyCounts, key: &str, value: &str, delta: i64) {
    // Most calls hit an existing domain: look up by reference before allocating keys.
    if let Some(domains) = counts.get_mut(key) {
        if let Some(n) = domains.get_mut(value) {
            *n += delta;
        } else {
            domains.insert(value.to_string(), delta);
        }
    } else {
        let mut domains = DomainCounts::default();
        domains.insert(value.to_string(), delta);
        counts.insert(key.to_string(), domains);
    }
}

/// Counts per domain, each for a topology key; a key may appear more than once (its counts add up).
type KeyedCounts = Vec<(String, Arc<DomainCounts>)>;

fn get(counts: &KeyedCounts, key: &str, value: &str) -> i64 {
    counts.iter().filter(|(k, _)| k == key).filter_map(|(_, domains)| domains.get(value)).sum()
}

/// What Filter needs, counted once per cycle.
#[derive(Debug, Default)]
struct FilterState {
    /// Pods matching all of the incoming pod's required affinity terms, per domain of each term's key.
    affinity: KeyedCounts,
    /// Pods matching each of the incoming pod's required anti-affinity terms, per domain.
    anti_affinity: KeyedCounts,
    /// Existing pods whose required anti-affinity terms match the incoming pod, per domain.
    existing_anti_affinity: KeyedCounts,
    affinity_keys: Vec<String>,
    anti_affinity_keys: Vec<String>,
    /// The incoming pod matches all its own required affinity terms.
    matches_itself: bool,
}

/// Every node of the snapshot, kept for PreScore (which only sees the feasible ones).
struct AllNodes(Arc<Vec<Arc<NodeInfo>>>);

/// The counter query equivalent to `term` owned by `owner`, when there is one (terms selecting namespaces by
/// label are resolved per pod and counted by walking the pods).
fn term_query(term: &PodAffinityTerm, owner: &PodInfo) -> Option<CountQuery> {
    if term.namespace_selector.is_some() {
        return None;
    }
    let selector = term.label_selector.clone()?;
    let mut namespaces = term.namespaces.clone().unwrap_or_default();
    if namespaces.is_empty() {
        namespaces.push(owner.namespace().to_string());
    }
    namespaces.sort();
    namespaces.dedup();
    let labels = owner.labels();
    let resolve = |keys: &Option<Vec<String>>| -> Vec<(String, String)> {
        keys.iter().flatten().filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone()))).collect()
    };
    Some(CountQuery {
        namespaces,
        selector,
        equal: resolve(&term.match_label_keys),
        not_equal: resolve(&term.mismatch_label_keys),
        topology_key: term.topology_key.clone(),
        skip_terminating: false,
    })
}

/// Placed pods for which `matches` holds, per domain of `key`, by walking every node.
fn walk(snapshot: &Snapshot, key: &str, matches: impl Fn(&PodInfo) -> bool) -> Arc<DomainCounts> {
    let mut domains = DomainCounts::new();
    for node in snapshot.nodes.iter() {
        let Some(value) = node.labels().get(key) else { continue };
        let n = node.pods.iter().filter(|p| matches(p)).count() as i64;
        if n > 0 {
            *domains.entry(value.clone()).or_insert(0) += n;
        }
    }
    Arc::new(domains)
}

/// Pods matching a single term of `owner`, per domain: from the cache's counter when it keeps one.
fn term_counts(
    ns: &NamespaceLabels,
    snapshot: &Snapshot,
    term: &PodAffinityTerm,
    owner: &PodInfo,
) -> Arc<DomainCounts> {
    if let Some(query) = term_query(term, owner) {
        if let Some(counts) = snapshot.topology.count(&query) {
            return counts;
        }
        // Not kept yet (it will be from the next cycle on): count the pods carrying the selector's labels.
        if let Some(counts) = snapshot.topology.count_carriers(&query, |node| snapshot.get(node).map(|n| n.labels())) {
            return Arc::new(counts);
        }
    }
    walk(snapshot, &term.topology_key, |existing| term_matches(ns, term, owner, existing))
}

impl PreFilter for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status {
        // Scoring needs every node only when some pod involved has terms that score.
        let has_preferred = !preferred_affinity(&pod.pod).is_empty() || !preferred_anti_affinity(&pod.pod).is_empty();
        if has_preferred || snapshot.topology.pods_with_scoring_terms > 0 {
            state.write(STATE_NODES, AllNodes(Arc::clone(&snapshot.nodes)));
        }
        let affinity = required_affinity(&pod.pod);
        let anti = required_anti_affinity(&pod.pod);
        // The common case: no required terms on either side, nothing to count.
        if affinity.is_empty() && anti.is_empty() && snapshot.pods_with_required_anti_affinity() == 0 {
            return Status::skip();
        }
        let guard = self.read_namespaces();
        let ns = &*guard;
        let mut s = FilterState {
            affinity_keys: affinity.iter().map(|t| t.topology_key.clone()).collect(),
            anti_affinity_keys: anti.iter().map(|t| t.topology_key.clone()).collect(),
            matches_itself: !affinity.is_empty() && affinity.iter().all(|t| term_matches(ns, t, pod, pod)),
            ..FilterState::default()
        };
        // Existing pods' terms, once per distinct term.
        for entry in snapshot.topology.anti_affinity_terms(pod) {
            if term_matches(ns, &entry.term, &entry.owner, pod) {
                s.existing_anti_affinity.push((entry.term.topology_key.clone(), Arc::clone(&entry.domains)));
            }
        }
        match affinity {
            [] => {}
            [term] => {
                let counts = term_counts(ns, snapshot, term, pod);
                if !counts.is_empty() {
                    s.affinity.push((term.topology_key.clone(), counts));
                }
            }
            terms => {
                // Pods must match every term; each is counted in the domain of each term's key.
                for term in terms {
                    let counts = walk(snapshot, &term.topology_key, |existing| {
                        terms.iter().all(|t| term_matches(ns, t, pod, existing))
                    });
                    if !counts.is_empty() {
                        s.affinity.push((term.topology_key.clone(), counts));
                    }
                }
            }
        }
        for term in anti {
            s.anti_affinity.push((term.topology_key.clone(), term_counts(ns, snapshot, term, pod)));
        }
        if s.existing_anti_affinity.is_empty() && affinity.is_empty() && anti.is_empty() {
            return Status::skip();
        }
        state.write(STATE_FILTER, s);
        Status::success()
    }
}

impl Filter for InterPodAffinity {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<FilterState>(STATE_FILTER) else { return Status::success() };
        let labels = node.labels();
        let mut pods_exist = true;
        for key in &s.affinity_keys {
            // Every topology key must be on the node, even for the first pod of a group.
            let Some(value) = labels.get(key) else { return Status::unresolvable(REASON_AFFINITY_NOT_MATCH) };
            if get(&s.affinity, key, value) <= 0 {
                pods_exist = false;
            }
        }
        // The first pod of a group with affinity to itself may go anywhere the keys exist.
        let first_of_group = s.affinity.is_empty() && s.matches_itself;
        if !pods_exist && !first_of_group {
            return Status::unresolvable(REASON_AFFINITY_NOT_MATCH);
        }
        for key in &s.anti_affinity_keys {
            if let Some(value) = labels.get(key)
                && get(&s.anti_affinity, key, value) > 0
            {
                return Status::unschedulable(REASON_ANTI_AFFINITY_NOT_MATCH);
            }
        }
        for (key, domains) in &s.existing_anti_affinity {
            if let Some(value) = labels.get(key.as_str())
                && domains.get(value).is_some_and(|n| *n > 0)
            {
                return Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY_NOT_MATCH);
            }
        }
        Status::success()
    }
}

/// What Score needs: the summed weights per topology domain.
#[derive(Debug, Default)]
struct ScoreState {
    topology_score: TopologyCounts,
}

impl PreScore for InterPodAffinity {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Status {
        if nodes.is_empty() {
            return Status::skip();
        }
        let preferred = preferred_affinity(&pod.pod);
        let preferred_anti = preferred_anti_affinity(&pod.pod);
        let has_constraints = !preferred.is_empty() || !preferred_anti.is_empty();
        // PreFilter keeps every node when the pod or some placed pod has terms that score.
        let Some(AllNodes(all)) = state.read::<AllNodes>(STATE_NODES) else { return Status::skip() };
        let all = Arc::clone(all);
        let guard = self.read_namespaces();
        let ns = &*guard;
        let mut scores = TopologyCounts::default();
        for node in all.iter() {
            let labels = node.labels();
            if labels.is_empty() {
                continue;
            }
            // Without preferred terms of its own, only pods with terms that score can move the score.
            let existing_pods = if has_constraints { &node.pods } else { &node.pods_with_affinity };
            for existing in existing_pods.iter().filter(|p| has_constraints || p.has_scoring_terms) {
                let mut process = |term: &PodAffinityTerm, owner: &PodInfo, target: &PodInfo, weight: i64| {
                    if let Some(value) = labels.get(&term.topology_key)
                        && term_matches(ns, term, owner, target)
                    {
                        add(&mut scores, &term.topology_key, value, weight);
                    }
                };
                for t in preferred {
                    process(&t.pod_affinity_term, pod, existing, i64::from(t.weight));
                }
                for t in preferred_anti {
                    process(&t.pod_affinity_term, pod, existing, -i64::from(t.weight));
                }
                if self.hard_pod_affinity_weight > 0 {
                    for t in required_affinity(&existing.pod) {
                        process(t, existing, pod, self.hard_pod_affinity_weight);
                    }
                }
                for t in preferred_affinity(&existing.pod) {
                    process(&t.pod_affinity_term, existing, pod, i64::from(t.weight));
                }
                for t in preferred_anti_affinity(&existing.pod) {
                    process(&t.pod_affinity_term, existing, pod, -i64::from(t.weight));
                }
            }
        }
        if scores.is_empty() {
            return Status::skip();
        }
        state.write(STATE_SCORE, ScoreState { topology_score: scores });
        Status::success()
    }
}

impl Score for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<ScoreState>(STATE_SCORE) else { return Ok(0) };
        let labels = node.labels();
        Ok(s.topology_score.iter().filter_map(|(key, domains)| labels.get(key).and_then(|v| domains.get(v))).sum())
    }

    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        if state.read::<ScoreState>(STATE_SCORE).is_none_or(|s| s.topology_score.is_empty()) {
            return Status::success();
        }
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max - min;
        for score in scores.iter_mut() {
            score.score =
                if diff > 0 { (MAX_NODE_SCORE as f64 * ((score.score - min) as f64 / diff as f64)) as i64 } else { 0 };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::framework::{Code, Decision, PluginSet, Profile};
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{Value, json};

    const HOST: &str = "kubernetes.io/hostname";

    fn node(name: &str, zone: Option<&str>) -> NodeInfo {
        let mut labels = json!({HOST: name});
        if let Some(z) = zone {
            labels["zone"] = json!(z);
        }
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        NodeInfo::new(Arc::new(node))
    }

    fn pod(name: &str, ns: &str, labels: Value, affinity: Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "uid": name, "labels": labels},
            "spec": {"containers": [], "affinity": affinity},
        }))
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn app(name: &str, app: &str) -> PodInfo {
        pod(name, "default", json!({"app": app}), Value::Null)
    }

    fn term(key: &str, app: &str) -> Value {
        json!({"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}})
    }

    fn required(kind: &str, terms: Value) -> Value {
        json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": terms}})
    }

    fn preferred(kind: &str, weight: i32, t: Value) -> Value {
        json!({kind: {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": weight, "podAffinityTerm": t}]}})
    }

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

    fn filter_once(plugin: &InterPodAffinity, pod: &PodInfo, snapshot: &Snapshot) -> Vec<Status> {
        let mut state = CycleState::default();
        let pre = plugin.pre_filter(&mut state, pod, snapshot);
        assert!(pre.is_success(), "{pre:?}");
        snapshot.nodes.iter().map(|n| plugin.filter(&state, pod, n)).collect()
    }

    /// Filters by walking the pods, then again with the counters the first cycle asked the cache for: both
    /// must agree.
    fn filter_with(plugin: &InterPodAffinity, pod: &PodInfo, snapshot: &Snapshot) -> Vec<Status> {
        let walked = filter_once(plugin, pod, snapshot);
        let mut counted = snapshot.clone();
        let nodes = Arc::clone(&counted.nodes);
        Arc::make_mut(&mut counted.topology).register_requested(&nodes);
        assert_eq!(filter_once(plugin, pod, &counted), walked, "counters and walking disagree");
        walked
    }

    fn filter_codes(pod: &PodInfo, snapshot: &Snapshot) -> Vec<Code> {
        filter_with(&InterPodAffinity::default(), pod, snapshot).iter().map(|s| s.code).collect()
    }

    #[test]
    fn required_affinity_admits_only_domains_holding_a_matching_pod() {
        let snapshot = cluster(vec![
            (node("a1", Some("a")), vec![app("db", "db")]),
            (node("a2", Some("a")), vec![]),
            (node("b1", Some("b")), vec![app("other", "cache")]),
        ]);
        let pod = pod("web", "default", json!({"app": "web"}), required("podAffinity", json!([term("zone", "db")])));
        let verdicts = filter_with(&InterPodAffinity::default(), &pod, &snapshot);
        assert_eq!(
            verdicts.iter().map(|s| s.code).collect::<Vec<_>>(),
            vec![Code::Success, Code::Success, Code::UnschedulableAndUnresolvable]
        );
        assert_eq!(verdicts[2].reasons, vec![REASON_AFFINITY_NOT_MATCH]);
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_may_go_anywhere_the_key_exists() {
        let snapshot = cluster(vec![(node("a1", Some("a")), vec![]), (node("bare", None), vec![])]);
        let pod = pod("web", "default", json!({"app": "web"}), required("podAffinity", json!([term("zone", "web")])));
        assert_eq!(filter_codes(&pod, &snapshot), vec![Code::Success, Code::UnschedulableAndUnresolvable]);
    }

    #[test]
    fn a_pod_whose_affinity_does_not_match_itself_waits_for_its_peers() {
        let snapshot = cluster(vec![(node("a1", Some("a")), vec![])]);
        let pod = pod("web", "default", json!({"app": "web"}), required("podAffinity", json!([term("zone", "db")])));
        assert_eq!(filter_codes(&pod, &snapshot), vec![Code::UnschedulableAndUnresolvable]);
    }

    #[test]
    fn all_affinity_terms_must_match_the_same_pod() {
        let terms = json!([term("zone", "db"), {"topologyKey": "zone",
                            "labelSelector": {"matchLabels": {"tier": "gold"}}}]);
        let gold_db = pod("g", "default", json!({"app": "db", "tier": "gold"}), Value::Null);
        let snapshot = cluster(vec![
            (node("a1", Some("a")), vec![app("db", "db"), pod("t", "default", json!({"tier": "gold"}), Value::Null)]),
            (node("b1", Some("b")), vec![gold_db]),
        ]);
        let pod = pod("web", "default", json!({"app": "web"}), required("podAffinity", terms));
        assert_eq!(filter_codes(&pod, &snapshot), vec![Code::UnschedulableAndUnresolvable, Code::Success]);
    }

    #[test]
    fn required_anti_affinity_keeps_the_pod_out_of_domains_with_matching_pods() {
        let snapshot = cluster(vec![(node("a1", Some("a")), vec![app("w1", "web")]), (node("a2", Some("a")), vec![])]);
        let pod = pod("w2", "default", json!({"app": "web"}), required("podAntiAffinity", json!([term(HOST, "web")])));
        let verdicts = filter_with(&InterPodAffinity::default(), &pod, &snapshot);
        assert_eq!(verdicts[0].code, Code::Unschedulable);
        assert_eq!(verdicts[0].reasons, vec![REASON_ANTI_AFFINITY_NOT_MATCH]);
        assert_eq!(verdicts[1].code, Code::Success);
    }

    #[test]
    fn anti_affinity_on_a_key_the_node_lacks_does_not_reject_it() {
        let snapshot = cluster(vec![(node("bare", None), vec![app("w1", "web")])]);
        let pod =
            pod("w2", "default", json!({"app": "web"}), required("podAntiAffinity", json!([term("zone", "web")])));
        assert_eq!(filter_codes(&pod, &snapshot), vec![Code::Success]);
    }

    #[test]
    fn existing_pods_anti_affinity_rejects_the_incoming_pod_symmetrically() {
        let guard =
            pod("guard", "default", json!({"app": "guard"}), required("podAntiAffinity", json!([term("zone", "web")])));
        let snapshot = cluster(vec![
            (node("a1", Some("a")), vec![guard]),
            (node("a2", Some("a")), vec![]),
            (node("b1", Some("b")), vec![]),
        ]);
        let verdicts = filter_with(&InterPodAffinity::default(), &app("w", "web"), &snapshot);
        assert_eq!(
            verdicts.iter().map(|s| s.code).collect::<Vec<_>>(),
            vec![Code::Unschedulable, Code::Unschedulable, Code::Success]
        );
        assert_eq!(verdicts[1].reasons, vec![REASON_EXISTING_ANTI_AFFINITY_NOT_MATCH]);
    }

    #[test]
    fn terms_default_to_the_owners_namespace() {
        let snapshot =
            cluster(vec![(node("a1", Some("a")), vec![pod("w1", "other", json!({"app": "web"}), Value::Null)])]);
        let pod = pod("w2", "default", json!({"app": "web"}), required("podAntiAffinity", json!([term(HOST, "web")])));
        assert_eq!(filter_codes(&pod, &snapshot), vec![Code::Success]);
    }

    #[test]
    fn listed_namespaces_and_namespace_selectors_widen_a_term() {
        let snapshot =
            cluster(vec![(node("a1", Some("a")), vec![pod("w1", "other", json!({"app": "web"}), Value::Null)])]);
        let with = |extra: Value| {
            let mut t = term(HOST, "web");
            for (k, v) in extra.as_object().unwrap() {
                t[k] = v.clone();
            }
            pod("w2", "default", json!({"app": "web"}), required("podAntiAffinity", json!([t])))
        };
        let listed = with(json!({"namespaces": ["other"]}));
        assert_eq!(filter_codes(&listed, &snapshot), vec![Code::Unschedulable]);
        let everywhere = with(json!({"namespaceSelector": {}}));
        assert_eq!(filter_codes(&everywhere, &snapshot), vec![Code::Unschedulable]);
        let by_label = with(json!({"namespaceSelector": {"matchLabels": {"team": "x"}}}));
        assert_eq!(filter_codes(&by_label, &snapshot), vec![Code::Success], "no labels known for `other`");
        let plugin = InterPodAffinity::default();
        let handle = Arc::clone(&plugin.namespace_labels);
        handle.write().unwrap().insert("other".into(), BTreeMap::from([("team".into(), "x".into())]));
        assert_eq!(filter_with(&plugin, &by_label, &snapshot)[0].code, Code::Unschedulable);
    }

    #[test]
    fn match_label_keys_limit_a_term_to_pods_sharing_the_owners_values() {
        let v = |name: &str, version: &str, affinity: Value| {
            pod(name, "default", json!({"app": "web", "v": version}), affinity)
        };
        let snapshot = cluster(vec![(node("a1", Some("a")), vec![v("old", "1", Value::Null)])]);
        let mut t = term(HOST, "web");
        t["matchLabelKeys"] = json!(["v"]);
        let pod = v("new", "2", required("podAntiAffinity", json!([t.clone()])));
        assert_eq!(filter_codes(&pod, &snapshot), vec![Code::Success]);
        let pod = v("new", "1", required("podAntiAffinity", json!([t])));
        assert_eq!(filter_codes(&pod, &snapshot), vec![Code::Unschedulable]);
        let mut t = term(HOST, "web");
        t["mismatchLabelKeys"] = json!(["v"]);
        let pod = v("new", "1", required("podAntiAffinity", json!([t])));
        assert_eq!(filter_codes(&pod, &snapshot), vec![Code::Success]);
    }

    #[test]
    fn a_term_without_label_selector_matches_no_pod() {
        let snapshot = cluster(vec![(node("a1", Some("a")), vec![app("w1", "web")])]);
        let pod =
            pod("w2", "default", json!({"app": "web"}), required("podAntiAffinity", json!([{"topologyKey": HOST}])));
        assert_eq!(filter_codes(&pod, &snapshot), vec![Code::Success]);
    }

    #[test]
    fn pre_filter_skips_when_no_required_term_is_involved() {
        let snapshot = cluster(vec![(node("a1", Some("a")), vec![app("w1", "web")])]);
        let mut state = CycleState::default();
        let status = InterPodAffinity::default().pre_filter(&mut state, &app("w2", "web"), &snapshot);
        assert_eq!(status.code, Code::Skip);
    }

    fn scores(plugin: &InterPodAffinity, pod: &PodInfo, snapshot: &Snapshot) -> Option<Vec<i64>> {
        let mut state = CycleState::default();
        plugin.pre_filter(&mut state, pod, snapshot);
        let status = plugin.pre_score(&mut state, pod, &snapshot.nodes);
        if status.code == Code::Skip {
            return None;
        }
        let mut scores: Vec<NodeScore> = snapshot
            .nodes
            .iter()
            .map(|n| NodeScore { node: n.name.clone(), score: plugin.score(&state, pod, n).unwrap() })
            .collect();
        assert!(plugin.normalize(&state, pod, &mut scores).is_success());
        Some(scores.iter().map(|s| s.score).collect())
    }

    fn three_zones() -> Snapshot {
        cluster(vec![
            (node("a1", Some("a")), vec![app("db1", "db"), app("db2", "db")]),
            (node("b1", Some("b")), vec![app("db3", "db")]),
            (node("c1", Some("c")), vec![]),
        ])
    }

    #[test]
    fn preferred_affinity_favours_domains_with_more_matching_pods() {
        let pod = pod("w", "default", json!({"app": "web"}), preferred("podAffinity", 10, term("zone", "db")));
        assert_eq!(scores(&InterPodAffinity::default(), &pod, &three_zones()), Some(vec![100, 50, 0]));
    }

    #[test]
    fn preferred_anti_affinity_favours_domains_with_fewer_matching_pods() {
        let pod = pod("w", "default", json!({"app": "web"}), preferred("podAntiAffinity", 10, term("zone", "db")));
        assert_eq!(scores(&InterPodAffinity::default(), &pod, &three_zones()), Some(vec![0, 50, 100]));
    }

    #[test]
    fn existing_pods_preferred_and_required_terms_attract_the_incoming_pod() {
        let fan = pod("fan", "default", json!({"app": "fan"}), preferred("podAffinity", 5, term("zone", "web")));
        let hard =
            pod("hard", "default", json!({"app": "hard"}), required("podAffinity", json!([term("zone", "web")])));
        let snapshot = cluster(vec![
            (node("a1", Some("a")), vec![fan]),
            (node("b1", Some("b")), vec![hard]),
            (node("c1", Some("c")), vec![]),
        ]);
        // Raw scores 5, 1, 0.
        assert_eq!(scores(&InterPodAffinity::default(), &app("w", "web"), &snapshot), Some(vec![100, 20, 0]));
        let plugin = InterPodAffinity { hard_pod_affinity_weight: 0, ..InterPodAffinity::default() };
        assert_eq!(scores(&plugin, &app("w", "web"), &snapshot), Some(vec![100, 0, 0]));
    }

    #[test]
    fn existing_pods_preferred_anti_affinity_repels_the_incoming_pod() {
        let shy = pod("shy", "default", json!({"app": "shy"}), preferred("podAntiAffinity", 7, term("zone", "web")));
        let snapshot = cluster(vec![(node("a1", Some("a")), vec![shy]), (node("b1", Some("b")), vec![])]);
        assert_eq!(scores(&InterPodAffinity::default(), &app("w", "web"), &snapshot), Some(vec![0, 100]));
    }

    #[test]
    fn scoring_is_skipped_when_no_term_applies() {
        assert_eq!(scores(&InterPodAffinity::default(), &app("w", "web"), &three_zones()), None);
    }

    #[test]
    fn a_profile_reports_affinity_rejections_in_kube_schedulers_words() {
        let plugin = Arc::new(InterPodAffinity::default());
        let plugins = PluginSet { pre_filter: vec![plugin.clone()], filter: vec![plugin], ..Default::default() };
        let profile = Profile { scheduler_name: "default-scheduler".into(), plugins };
        let guard = pod("g", "default", json!({"app": "g"}), required("podAntiAffinity", json!([term("zone", "web")])));
        let snapshot = cluster(vec![
            (node("a1", Some("a")), vec![app("db", "db"), app("w0", "web")]),
            (node("b1", Some("b")), vec![app("db2", "db"), guard]),
            (node("c1", Some("c")), vec![]),
        ]);
        let affinity = json!({
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "db")]},
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "web")]},
        });
        let (decision, _) = profile.schedule(&pod("w1", "default", json!({"app": "web"}), affinity), &snapshot, 0);
        let Decision::Unschedulable { message, .. } = decision else { panic!("placed: {decision:?}") };
        assert_eq!(
            message,
            "0/3 nodes are available: 1 node(s) didn't match pod affinity rules, 1 node(s) didn't match pod \
             anti-affinity rules, 1 node(s) didn't satisfy existing pods anti-affinity rules."
        );
    }

    #[test]
    fn a_large_cluster_of_anti_affine_replicas_leaves_only_the_free_nodes() {
        let anti = required("podAntiAffinity", json!([term(HOST, "web")]));
        let nodes = (0..5000)
            .map(|i| {
                let name = format!("n{i}");
                let zone = format!("z{}", i % 3);
                let pods = if i < 4990 {
                    vec![pod(&format!("w{i}"), "default", json!({"app": "web"}), anti.clone())]
                } else {
                    vec![]
                };
                (node(&name, Some(&zone)), pods)
            })
            .collect();
        let snapshot = cluster(nodes);
        let incoming = pod("new", "default", json!({"app": "web"}), anti);
        let free = filter_codes(&incoming, &snapshot).iter().filter(|c| **c == Code::Success).count();
        assert_eq!(free, 10);
    }

    #[test]
    fn a_matching_pod_on_a_node_without_the_topology_key_satisfies_no_domain() {
        let snapshot = cluster(vec![(node("bare", None), vec![app("db", "db")]), (node("a1", Some("a")), vec![])]);
        let pod = pod("web", "default", json!({"app": "web"}), required("podAffinity", json!([term("zone", "db")])));
        assert_eq!(
            filter_codes(&pod, &snapshot),
            vec![Code::UnschedulableAndUnresolvable, Code::UnschedulableAndUnresolvable]
        );
    }

    #[test]
    fn a_self_affine_pod_joins_its_group_once_the_group_exists() {
        let snapshot = cluster(vec![(node("a1", Some("a")), vec![app("w1", "web")]), (node("b1", Some("b")), vec![])]);
        let pod = pod("w2", "default", json!({"app": "web"}), required("podAffinity", json!([term("zone", "web")])));
        assert_eq!(filter_codes(&pod, &snapshot), vec![Code::Success, Code::UnschedulableAndUnresolvable]);
    }

    #[test]
    fn a_profile_places_anti_affine_replicas_on_distinct_hosts() {
        let plugin = Arc::new(InterPodAffinity::default());
        let plugins = PluginSet {
            pre_filter: vec![plugin.clone()],
            filter: vec![plugin.clone()],
            pre_score: vec![plugin.clone()],
            score: vec![(plugin, 2)],
            ..Default::default()
        };
        let profile = Profile { scheduler_name: "default-scheduler".into(), plugins };
        let anti = required("podAntiAffinity", json!([term(HOST, "web")]));
        let snapshot = cluster(vec![
            (node("a1", Some("a")), vec![pod("w1", "default", json!({"app": "web"}), anti.clone())]),
            (node("a2", Some("a")), vec![]),
        ]);
        let (decision, _) = profile.schedule(&pod("w2", "default", json!({"app": "web"}), anti), &snapshot, 0);
        let Decision::Place { node, explanation } = decision else { panic!("not placed: {decision:?}") };
        assert_eq!(node, "a2");
        assert_eq!(explanation.rejected[0].1.reasons, vec![REASON_ANTI_AFFINITY_NOT_MATCH]);
    }
}
