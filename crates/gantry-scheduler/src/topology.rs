//! Counts of placed pods per topology domain, kept up to date by the cache as pods are placed and removed, so
//! that inter-pod (anti-)affinity and topology spread do not walk every pod of the cluster in every cycle.
//!
//! Three things are kept:
//! - the domains of every node label key (value → number of nodes carrying it);
//! - existing pods' required anti-affinity terms, grouped by identical term (same owner namespace, term, and
//!   resolved `matchLabelKeys`/`mismatchLabelKeys`), each with its pods counted per domain: an incoming pod is
//!   checked against each distinct term once instead of against every pod that carries it;
//! - counters of pods matching a [`CountQuery`] per domain, registered when a plugin first asks for one (the
//!   plugin counts by walking the pods that time) and dropped least-recently-used beyond [`COUNTERS_KEPT`].
//!
//! Terms and counters are indexed by one label pair of their selector, so that placing a pod only looks at
//! those its labels could match.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::PodAffinityTerm;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use crate::plugins::pod_topology_spread::label_selector_matches;
use crate::snapshot::{NodeInfo, PodInfo};

/// A map from domain (topology value) to a count.
pub type DomainCounts = HashMap<String, i64>;

/// Placed pods carrying one label pair, by UID, with the name of their node.
type Carriers = HashMap<String, (Arc<PodInfo>, Arc<str>)>;

/// How many counters are kept; beyond this the least recently used is dropped.
pub const COUNTERS_KEPT: usize = 1024;

/// Which placed pods to count, and by which topology key.
#[derive(Clone, Debug, PartialEq)]
pub struct CountQuery {
    /// Pods in these namespaces.
    pub namespaces: Vec<String>,
    /// Pods matching this selector (an empty selector matches every pod).
    pub selector: metav1::LabelSelector,
    /// Pods with these label values too.
    pub equal: Vec<(String, String)>,
    /// Pods without these label values (a missing label counts as different).
    pub not_equal: Vec<(String, String)>,
    /// Counted per value of this node label; pods on nodes without it are not counted.
    pub topology_key: String,
    /// Pods being deleted are left out.
    pub skip_terminating: bool,
}

impl CountQuery {
    /// Whether a pod counts.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        if self.skip_terminating && pod.pod.metadata.deletion_timestamp.is_some() {
            return false;
        }
        if !self.namespaces.iter().any(|n| n == pod.namespace()) {
            return false;
        }
        let labels = pod.labels();
        label_selector_matches(&self.selector, labels)
            && self.equal.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.not_equal.iter().all(|(k, v)| labels.get(k) != Some(v))
    }

    fn key(&self) -> String {
        // The selector's JSON is canonical enough: the same query built twice serializes the same way.
        let selector = serde_json::to_string(&self.selector).unwrap_or_default();
        format!(
            "{:?}\u{0}{selector}\u{0}{:?}\u{0}{:?}\u{0}{}\u{0}{}",
            self.namespaces, self.equal, self.not_equal, self.topology_key, self.skip_terminating
        )
    }

    /// A label pair every matching pod carries, to index the query by.
    fn required_pair(&self) -> Option<(String, String)> {
        let labels = self.selector.match_labels.iter().flatten().next();
        labels.or_else(|| self.equal.first().map(|(k, v)| (k, v))).map(|(k, v)| (k.clone(), v.clone()))
    }
}

/// Pods per domain matching one query.
#[derive(Debug)]
struct Counter {
    query: CountQuery,
    domains: Arc<DomainCounts>,
    last_used: AtomicU64,
}

impl Clone for Counter {
    fn clone(&self) -> Counter {
        Counter {
            query: self.query.clone(),
            domains: Arc::clone(&self.domains),
            last_used: AtomicU64::new(self.last_used.load(Ordering::Relaxed)),
        }
    }
}

/// Existing pods sharing one required anti-affinity term, counted per domain of its topology key.
#[derive(Clone, Debug)]
pub struct AntiAffinityTerm {
    /// The term.
    pub term: PodAffinityTerm,
    /// One of the pods carrying it (they all resolve the term the same way).
    pub owner: Arc<PodInfo>,
    /// Pods carrying it, per domain.
    pub domains: Arc<DomainCounts>,
    total: i64,
}

/// Keys of terms or counters, by the label pair (key → value) they are indexed under; `None` holds those
/// without one (checked for every pod).
#[derive(Clone, Debug, Default)]
struct PairIndex {
    by_pair: HashMap<String, HashMap<String, Vec<String>>>,
    unindexed: Vec<String>,
}

impl PairIndex {
    fn insert(&mut self, pair: Option<(String, String)>, key: String) {
        match pair {
            Some((k, v)) => self.by_pair.entry(k).or_default().entry(v).or_default().push(key),
            None => self.unindexed.push(key),
        }
    }

    fn remove(&mut self, pair: Option<(String, String)>, key: &str) {
        match pair {
            Some((k, v)) => {
                if let Some(values) = self.by_pair.get_mut(&k) {
                    if let Some(keys) = values.get_mut(&v) {
                        keys.retain(|x| x != key);
                        if keys.is_empty() {
                            values.remove(&v);
                        }
                    }
                    if values.is_empty() {
                        self.by_pair.remove(&k);
                    }
                }
            }
            None => self.unindexed.retain(|x| x != key),
        }
    }

    /// Keys whose pair `labels` carry, and the unindexed ones.
    fn candidates<'a>(&'a self, labels: &'a BTreeMap<String, String>) -> impl Iterator<Item = &'a String> + 'a {
        labels
            .iter()
            .filter_map(|(k, v)| self.by_pair.get(k).and_then(|values| values.get(v)))
            .flatten()
            .chain(self.unindexed.iter())
    }
}

/// The index. Cloned copy-on-write by the cache; snapshots share it.
#[derive(Clone, Debug, Default)]
pub struct TopologyIndex {
    node_values: HashMap<String, HashMap<String, usize>>,
    nodes: usize,
    anti_terms: HashMap<String, AntiAffinityTerm>,
    anti_index: PairIndex,
    counters: HashMap<String, Counter>,
    counter_index: PairIndex,
    /// Placed pods by label (key → value → UID), with the node they are on: the pods a selector requiring
    /// one label pair can match, without walking every pod.
    pods_by_label: HashMap<String, HashMap<String, Carriers>>,
    /// Placed pods with any pod affinity or anti-affinity.
    pub pods_with_affinity: usize,
    /// Placed pods with required anti-affinity.
    pub pods_with_required_anti_affinity: usize,
    /// Placed pods whose terms move other pods' scores (required affinity, preferred terms).
    pub pods_with_scoring_terms: usize,
    /// Queries plugins asked for during cycles and the cache has not registered yet (shared by every copy).
    requests: Arc<Mutex<Vec<CountQuery>>>,
    clock: Arc<AtomicU64>,
}

fn required_anti_affinity(pod: &PodInfo) -> &[PodAffinityTerm] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default()
}

fn term_key(term: &PodAffinityTerm, owner: &PodInfo) -> String {
    let labels = owner.labels();
    let resolve = |keys: &Option<Vec<String>>| -> Vec<(String, Option<String>)> {
        keys.iter().flatten().map(|k| (k.clone(), labels.get(k).cloned())).collect()
    };
    let term_json = serde_json::to_string(term).unwrap_or_default();
    format!(
        "{}\u{0}{term_json}\u{0}{:?}\u{0}{:?}",
        owner.namespace(),
        resolve(&term.match_label_keys),
        resolve(&term.mismatch_label_keys)
    )
}

fn term_pair(term: &PodAffinityTerm) -> Option<(String, String)> {
    let selector = term.label_selector.as_ref()?;
    selector.match_labels.iter().flatten().next().map(|(k, v)| (k.clone(), v.clone()))
}

fn bump(domains: &mut DomainCounts, value: &str, delta: i64) {
    if let Some(n) = domains.get_mut(value) {
        *n += delta;
        if *n == 0 {
            domains.remove(value);
        }
    } else if delta != 0 {
        domains.insert(value.to_string(), delta);
    }
}

impl TopologyIndex {
    /// The index of these nodes and the pods placed on them.
    pub fn build(nodes: &[Arc<NodeInfo>]) -> TopologyIndex {
        let mut index = TopologyIndex::default();
        for node in nodes {
            index.add_node(node.labels());
            for pod in &node.pods {
                index.place(pod, &node.name, node.labels(), 1);
            }
        }
        index
    }

    /// Counts a node's labels as domains.
    pub fn add_node(&mut self, labels: &BTreeMap<String, String>) {
        self.nodes += 1;
        for (k, v) in labels {
            *self.node_values.entry(k.clone()).or_default().entry(v.clone()).or_insert(0) += 1;
        }
    }

    /// Forgets a node's labels.
    pub fn remove_node(&mut self, labels: &BTreeMap<String, String>) {
        self.nodes = self.nodes.saturating_sub(1);
        for (k, v) in labels {
            if let Some(values) = self.node_values.get_mut(k) {
                if let Some(n) = values.get_mut(v) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        values.remove(v);
                    }
                }
                if values.is_empty() {
                    self.node_values.remove(k);
                }
            }
        }
    }

    /// The values of a node label key, with how many nodes carry each.
    pub fn domains(&self, key: &str) -> Option<&HashMap<String, usize>> {
        self.node_values.get(key)
    }

    /// Whether every node carries the label key.
    pub fn every_node_has(&self, key: &str) -> bool {
        self.node_values.get(key).map_or(0, |values| values.values().sum::<usize>()) == self.nodes
    }

    /// Counts a pod (`delta` 1) or stops counting it (`delta` -1) on a node with this name and labels.
    pub fn place(&mut self, pod: &Arc<PodInfo>, node: &Arc<str>, node_labels: &BTreeMap<String, String>, delta: i64) {
        for (k, v) in pod.labels() {
            if delta > 0 {
                let pods = self.pods_by_label.entry(k.clone()).or_default().entry(v.clone()).or_default();
                pods.insert(pod.uid.clone(), (Arc::clone(pod), Arc::clone(node)));
            } else if let Some(values) = self.pods_by_label.get_mut(k) {
                if let Some(pods) = values.get_mut(v) {
                    pods.remove(&pod.uid);
                    if pods.is_empty() {
                        values.remove(v);
                    }
                }
                if values.is_empty() {
                    self.pods_by_label.remove(k);
                }
            }
        }
        let step = |n: &mut usize| {
            *n = n.saturating_add_signed(delta as isize);
        };
        if pod.has_pod_affinity {
            step(&mut self.pods_with_affinity);
        }
        if pod.has_required_anti_affinity {
            step(&mut self.pods_with_required_anti_affinity);
        }
        if pod.has_scoring_terms {
            step(&mut self.pods_with_scoring_terms);
        }
        if pod.has_required_anti_affinity {
            for term in required_anti_affinity(pod) {
                let Some(value) = node_labels.get(&term.topology_key) else { continue };
                let key = term_key(term, pod);
                let entry = match self.anti_terms.get_mut(&key) {
                    Some(entry) => entry,
                    None if delta > 0 => {
                        self.anti_index.insert(term_pair(term), key.clone());
                        self.anti_terms.entry(key.clone()).or_insert_with(|| AntiAffinityTerm {
                            term: term.clone(),
                            owner: Arc::clone(pod),
                            domains: Arc::default(),
                            total: 0,
                        })
                    }
                    None => continue,
                };
                bump(Arc::make_mut(&mut entry.domains), value, delta);
                entry.total += delta;
                if entry.total <= 0 {
                    self.anti_terms.remove(&key);
                    self.anti_index.remove(term_pair(term), &key);
                }
            }
        }
        if self.counters.is_empty() {
            return;
        }
        let keys: Vec<String> = self.counter_index.candidates(pod.labels()).cloned().collect();
        for key in keys {
            let Some(counter) = self.counters.get_mut(&key) else { continue };
            if !counter.query.matches(pod) {
                continue;
            }
            if let Some(value) = node_labels.get(&counter.query.topology_key) {
                bump(Arc::make_mut(&mut counter.domains), value, delta);
            }
        }
    }

    /// Existing pods' required anti-affinity terms a pod with these labels could match (each distinct term
    /// once; the caller checks the term).
    pub fn anti_affinity_terms<'a>(&'a self, pod: &'a PodInfo) -> impl Iterator<Item = &'a AntiAffinityTerm> + 'a {
        self.anti_index.candidates(pod.labels()).filter_map(|key| self.anti_terms.get(key))
    }

    /// The counts of a query, if a counter for it is kept. Otherwise the query is remembered, and the cache
    /// registers it after the cycle ([`TopologyIndex::register_requested`]).
    pub fn count(&self, query: &CountQuery) -> Option<Arc<DomainCounts>> {
        match self.counters.get(&query.key()) {
            Some(counter) => {
                counter.last_used.store(self.clock.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
                Some(Arc::clone(&counter.domains))
            }
            None => {
                self.requests.lock().unwrap_or_else(PoisonError::into_inner).push(query.clone());
                None
            }
        }
    }

    /// Counts a query's pods now, from the pods carrying the label pair it requires (`node_labels` gives the
    /// labels of the nodes this index describes, by name); `None` when the query requires no label pair, and
    /// only walking every pod can tell.
    pub fn count_carriers<'a>(
        &self,
        query: &CountQuery,
        node_labels: impl Fn(&str) -> Option<&'a BTreeMap<String, String>>,
    ) -> Option<DomainCounts> {
        let (k, v) = query.required_pair()?;
        let mut domains = DomainCounts::new();
        let carriers = self.pods_by_label.get(&k).and_then(|values| values.get(&v));
        for (pod, node) in carriers.into_iter().flat_map(|pods| pods.values()) {
            if query.matches(pod)
                && let Some(value) = node_labels(node).and_then(|labels| labels.get(&query.topology_key))
            {
                bump(&mut domains, value, 1);
            }
        }
        Some(domains)
    }

    /// Registers the counters asked for since the last call, counting the pods placed on `nodes` (the nodes
    /// this index describes).
    pub fn register_requested(&mut self, nodes: &[Arc<NodeInfo>]) {
        let by_name: HashMap<&str, &NodeInfo> = nodes.iter().map(|n| (&*n.name, &**n)).collect();
        let requested = std::mem::take(&mut *self.requests.lock().unwrap_or_else(PoisonError::into_inner));
        for query in requested {
            let key = query.key();
            if self.counters.contains_key(&key) {
                continue;
            }
            if self.counters.len() >= COUNTERS_KEPT {
                let oldest = self
                    .counters
                    .iter()
                    .min_by_key(|(_, c)| c.last_used.load(Ordering::Relaxed))
                    .map(|(k, c)| (k.clone(), c.query.required_pair()));
                if let Some((old_key, pair)) = oldest {
                    self.counters.remove(&old_key);
                    self.counter_index.remove(pair, &old_key);
                }
            }
            let labels_of = |name: &str| by_name.get(name).map(|n| n.labels());
            let domains = match self.count_carriers(&query, labels_of) {
                Some(domains) => domains,
                None => {
                    let mut domains = DomainCounts::new();
                    for node in nodes {
                        let Some(value) = node.labels().get(&query.topology_key) else { continue };
                        let n = node.pods.iter().filter(|p| query.matches(p)).count() as i64;
                        bump(&mut domains, value, n);
                    }
                    domains
                }
            };
            self.counter_index.insert(query.required_pair(), key.clone());
            let last_used = AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed));
            self.counters.insert(key, Counter { query, domains: Arc::new(domains), last_used });
        }
    }

    /// How many counters are kept.
    pub fn counters_kept(&self) -> usize {
        self.counters.len()
    }

    /// Whether counters were asked for and not registered yet.
    pub fn has_requests(&self) -> bool {
        !self.requests.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;

    fn node(name: &str, zone: &str) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"zone": zone}}})).unwrap();
        NodeInfo::new(Arc::new(node))
    }

    fn pod(name: &str, app: &str, anti: bool) -> Arc<PodInfo> {
        let mut spec = json!({"containers": []});
        if anti {
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": app}}}]}});
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": name, "labels": {"app": app}}, "spec": spec}))
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    fn query(app: &str) -> CountQuery {
        CountQuery {
            namespaces: vec!["d".into()],
            selector: serde_json::from_value(json!({"matchLabels": {"app": app}})).unwrap(),
            equal: Vec::new(),
            not_equal: Vec::new(),
            topology_key: "zone".into(),
            skip_terminating: true,
        }
    }

    #[test]
    fn counters_are_registered_on_request_and_follow_placements() {
        let mut a = node("a", "z1");
        a.add_pod(pod("p1", "web", false));
        let nodes = vec![Arc::new(a), Arc::new(node("b", "z2"))];
        let mut index = TopologyIndex::build(&nodes);
        assert!(index.count(&query("web")).is_none(), "not kept until registered");
        assert!(index.has_requests());
        index.register_requested(&nodes);
        assert_eq!(index.count(&query("web")).unwrap().get("z1"), Some(&1));
        let labels = nodes[1].labels().clone();
        let name = Arc::clone(&nodes[1].name);
        index.place(&pod("p2", "web", false), &name, &labels, 1);
        index.place(&pod("p3", "db", false), &name, &labels, 1);
        assert_eq!(index.count(&query("web")).unwrap().get("z2"), Some(&1));
        index.place(&pod("p2", "web", false), &name, &labels, -1);
        assert_eq!(index.count(&query("web")).unwrap().get("z2"), None, "empty domains are dropped");
    }

    #[test]
    fn pods_carrying_a_selector_label_are_counted_without_a_counter() {
        let mut a = node("a", "z1");
        a.add_pod(pod("p1", "web", false));
        a.add_pod(pod("p2", "db", false));
        let nodes = vec![Arc::new(a)];
        let index = TopologyIndex::build(&nodes);
        let labels_of = |name: &str| nodes.iter().find(|n| &*n.name == name).map(|n| n.labels());
        assert_eq!(index.count_carriers(&query("web"), labels_of).unwrap().get("z1"), Some(&1));
        assert!(index.count_carriers(&query("none"), labels_of).unwrap().is_empty());
        let mut no_pair = query("web");
        no_pair.selector = Default::default();
        assert!(index.count_carriers(&no_pair, labels_of).is_none(), "an empty selector needs a walk");
    }

    #[test]
    fn identical_anti_affinity_terms_are_counted_together_and_dropped_when_their_pods_go() {
        let labels: BTreeMap<String, String> = [("zone".to_string(), "z1".to_string())].into();
        let mut index = TopologyIndex::default();
        let name: Arc<str> = Arc::from("n1");
        index.add_node(&labels);
        index.place(&pod("p1", "web", true), &name, &labels, 1);
        index.place(&pod("p2", "web", true), &name, &labels, 1);
        let incoming = pod("x", "web", false);
        let terms: Vec<&AntiAffinityTerm> = index.anti_affinity_terms(&incoming).collect();
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].domains.get("z1"), Some(&2));
        assert_eq!(index.anti_affinity_terms(&pod("y", "db", false)).count(), 0, "indexed by label pair");
        index.place(&pod("p1", "web", true), &name, &labels, -1);
        index.place(&pod("p2", "web", true), &name, &labels, -1);
        assert_eq!(index.anti_affinity_terms(&incoming).count(), 0);
        assert_eq!(index.pods_with_required_anti_affinity, 0);
    }

    #[test]
    fn the_least_recently_used_counter_goes_first() {
        let nodes = vec![Arc::new(node("a", "z1"))];
        let mut index = TopologyIndex::build(&nodes);
        for i in 0..COUNTERS_KEPT {
            index.count(&query(&format!("app{i}")));
        }
        index.register_requested(&nodes);
        assert!(index.count(&query("app0")).is_some(), "app0 is now the most recently used");
        index.count(&query("new"));
        index.register_requested(&nodes);
        assert!(index.count(&query("app0")).is_some());
        assert!(index.count(&query("app1")).is_none(), "app1 was the least recently used");
    }

    #[test]
    fn every_node_has_tells_whether_a_key_is_on_all_nodes() {
        let mut index = TopologyIndex::default();
        index.add_node(&[("zone".to_string(), "z1".to_string())].into());
        index.add_node(&BTreeMap::new());
        assert!(!index.every_node_has("zone"));
        index.remove_node(&BTreeMap::new());
        assert!(index.every_node_has("zone"));
        assert_eq!(index.domains("zone").unwrap().len(), 1);
    }
}
