//! The scheduler's cache: nodes and the pods placed on them, from the API's watch streams, plus pods this
//! scheduler has *assumed* on a node but whose binding the watch has not shown yet.
//!
//! Assuming is what lets decisions run faster than the watch confirms them without overcommitting a node: the
//! next cycle already sees the assumed pod's requests. An assumed pod becomes a normal one when the watch
//! shows it bound; if its binding failed it is forgotten; if the watch never shows it (the pod was deleted
//! meanwhile), it expires a while after its binding finished.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::topology::TopologyIndex;

/// How long an assumed pod whose binding succeeded may wait for the watch to show it.
pub const ASSUMED_POD_TTL: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct PlacedPod {
    node: String,
    info: Arc<PodInfo>,
    assumed: bool,
    /// For assumed pods whose binding finished: when they expire.
    expires: Option<Instant>,
}

/// Nodes and placed pods. The node list is shared copy-on-write with snapshots: taking a snapshot costs one
/// reference count, and a change after the snapshot is dropped (the usual case: one cycle, then its
/// assumption) copies nothing.
#[derive(Default)]
pub struct SchedulerCache {
    /// Nodes in the order they were added.
    nodes: Arc<Vec<Arc<NodeInfo>>>,
    /// Node name → position in `nodes`.
    index: Arc<HashMap<String, usize>>,
    pods: HashMap<String, PlacedPod>,
    /// Image name → number of nodes holding it.
    image_nodes: Arc<HashMap<String, usize>>,
    /// Placed pods per topology domain.
    topology: Arc<TopologyIndex>,
    /// Assumed pods whose binding finished, by expiry (expiries only grow: the TTL is fixed).
    expiries: VecDeque<(Instant, String)>,
}

impl SchedulerCache {
    /// An empty cache.
    pub fn new() -> SchedulerCache {
        SchedulerCache::default()
    }

    /// Adds or replaces a node, keeping the pods placed on it.
    pub fn upsert_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut info = NodeInfo::new(Arc::new(node));
        match self.index.get(&name).copied() {
            Some(i) => {
                let old = Arc::clone(&self.nodes[i]);
                // Keep the pods already counted on it rather than searching every pod.
                for pod in &old.pods {
                    info.add_pod(Arc::clone(pod));
                }
                if old.labels() != info.labels() {
                    // Its pods now count in other domains.
                    let topology = Arc::make_mut(&mut self.topology);
                    for pod in &old.pods {
                        topology.place(pod, &old.name, old.labels(), -1);
                        topology.place(pod, &info.name, info.labels(), 1);
                    }
                    topology.remove_node(old.labels());
                    topology.add_node(info.labels());
                }
                if old.image_sizes.len() != info.image_sizes.len()
                    || old.image_sizes.keys().any(|k| !info.image_sizes.contains_key(k))
                {
                    let images = Arc::make_mut(&mut self.image_nodes);
                    count_images(images, &old, -1);
                    count_images(images, &info, 1);
                }
                Arc::make_mut(&mut self.nodes)[i] = Arc::new(info);
            }
            None => {
                let topology = Arc::make_mut(&mut self.topology);
                topology.add_node(info.labels());
                for placed in self.pods.values().filter(|p| p.node == name) {
                    info.add_pod(Arc::clone(&placed.info));
                    topology.place(&placed.info, &info.name, info.labels(), 1);
                }
                count_images(Arc::make_mut(&mut self.image_nodes), &info, 1);
                let nodes = Arc::make_mut(&mut self.nodes);
                nodes.push(Arc::new(info));
                Arc::make_mut(&mut self.index).insert(name, nodes.len() - 1);
            }
        }
    }

    /// Removes a node (its pods stay known, placed nowhere, until they go).
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.get(name).copied() else { return };
        let old = Arc::make_mut(&mut self.nodes).remove(i);
        count_images(Arc::make_mut(&mut self.image_nodes), &old, -1);
        let topology = Arc::make_mut(&mut self.topology);
        for pod in &old.pods {
            topology.place(pod, &old.name, old.labels(), -1);
        }
        topology.remove_node(old.labels());
        self.index = Arc::new(self.nodes.iter().enumerate().map(|(i, n)| (n.name.to_string(), i)).collect());
    }

    fn place(&mut self, node: &str, info: Arc<PodInfo>) {
        let Some(i) = self.index.get(node).copied() else { return };
        Arc::make_mut(&mut self.topology).place(&info, &self.nodes[i].name, self.nodes[i].labels(), 1);
        if let Some(n) = Arc::make_mut(&mut self.nodes).get_mut(i).map(Arc::make_mut) {
            n.add_pod(info);
        }
    }

    fn unplace(&mut self, node: &str, uid: &str) {
        let Some(i) = self.index.get(node).copied() else { return };
        let Some(pod) = self.nodes[i].pods.iter().find(|p| p.uid == uid).cloned() else { return };
        Arc::make_mut(&mut self.topology).place(&pod, &self.nodes[i].name, self.nodes[i].labels(), -1);
        if let Some(n) = Arc::make_mut(&mut self.nodes).get_mut(i).map(Arc::make_mut) {
            n.remove_pod(uid);
        }
    }

    /// A pod as the watch shows it. Bound pods count on their node (confirming an assumption); pods that
    /// have finished (Succeeded/Failed) use nothing and are dropped.
    pub fn upsert_pod(&mut self, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        if let Some(placed) = self.pods.get_mut(&uid)
            && !finished
            && placed.node == node
            && same_footprint(&placed.info.pod, &pod)
        {
            // The usual event: the watch confirms a binding this scheduler assumed (or an update that changes
            // nothing the scheduler counts). Leaving the node untouched keeps snapshots from being copied.
            placed.assumed = false;
            placed.expires = None;
            return;
        }
        if let Some(old) = self.pods.remove(&uid) {
            self.unplace(&old.node, &uid);
        }
        if node.is_empty() || finished {
            return;
        }
        let info = Arc::new(PodInfo::new(Arc::new(pod)));
        self.place(&node, Arc::clone(&info));
        self.pods.insert(uid, PlacedPod { node, info, assumed: false, expires: None });
    }

    /// A pod deleted from the API.
    pub fn remove_pod(&mut self, uid: &str) {
        if let Some(old) = self.pods.remove(uid) {
            self.unplace(&old.node, uid);
        }
    }

    /// Counts a pod on `node` before its binding is confirmed.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.uid);
        self.place(node, Arc::clone(&pod));
        self.pods
            .insert(pod.uid.clone(), PlacedPod { node: node.to_string(), info: pod, assumed: true, expires: None });
    }

    /// The binding of an assumed pod went through; the watch should show it soon.
    pub fn binding_finished(&mut self, uid: &str, now: Instant) {
        if let Some(p) = self.pods.get_mut(uid).filter(|p| p.assumed) {
            p.expires = Some(now + ASSUMED_POD_TTL);
            self.expiries.push_back((now + ASSUMED_POD_TTL, uid.to_string()));
        }
    }

    /// The binding of an assumed pod failed: it no longer counts.
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|p| p.assumed) {
            self.remove_pod(uid);
        }
    }

    /// Drops assumed pods the watch never confirmed; returns their UIDs (for the runtime to report).
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut expired = Vec::new();
        while let Some((at, _)) = self.expiries.front()
            && *at <= now
        {
            let Some((at, uid)) = self.expiries.pop_front() else { break };
            // Confirmed, forgotten or assumed again since: the entry is stale.
            if self.pods.get(&uid).is_some_and(|p| p.assumed && p.expires == Some(at)) {
                self.remove_pod(&uid);
                expired.push(uid);
            }
        }
        expired
    }

    /// Whether a pod is placed (bound or assumed) on some node.
    pub fn is_placed(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// The node a pod is placed on.
    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|p| p.node.as_str())
    }

    /// The cluster as it is now, for one cycle.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::with_indexes(
            Arc::clone(&self.nodes),
            Arc::clone(&self.index),
            Arc::clone(&self.image_nodes),
            Arc::clone(&self.topology),
        )
    }

    /// Starts keeping the topology counters plugins asked for in the last cycles (see
    /// [`TopologyIndex::count`]).
    pub fn register_counters(&mut self) {
        if self.topology.has_requests() {
            let nodes = Arc::clone(&self.nodes);
            Arc::make_mut(&mut self.topology).register_requested(&nodes);
        }
    }
}

/// Whether two versions of a placed pod count the same: same labels, deletion state and containers (hence
/// requests and host ports; the rest of what plugins read, such as affinity, cannot change on a pod).
fn same_footprint(old: &Pod, new: &Pod) -> bool {
    old.metadata.labels == new.metadata.labels
        && old.metadata.deletion_timestamp == new.metadata.deletion_timestamp
        && old.metadata.namespace == new.metadata.namespace
        && match (&old.spec, &new.spec) {
            (Some(a), Some(b)) => {
                a.containers == b.containers && a.init_containers == b.init_containers && a.overhead == b.overhead
            }
            (a, b) => a.is_none() && b.is_none(),
        }
}

fn count_images(images: &mut HashMap<String, usize>, node: &NodeInfo, delta: isize) {
    for name in node.image_sizes.keys() {
        let count = images.entry(name.clone()).or_insert(0);
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            images.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "110"}}}))
        .unwrap()
    }

    fn pod(name: &str, node: Option<&str>, cpu: &str) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "d", "uid": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
        .unwrap()
    }

    fn requested(cache: &SchedulerCache, node: &str) -> i64 {
        cache.snapshot().get(node).unwrap().requested.milli_cpu
    }

    #[test]
    fn assumed_pods_count_until_confirmed_or_forgotten() {
        let mut cache = SchedulerCache::new();
        cache.upsert_node(node("n1", "2"));
        let info = Arc::new(PodInfo::new(Arc::new(pod("p", None, "500m"))));
        cache.assume(Arc::clone(&info), "n1");
        assert_eq!(requested(&cache, "n1"), 500);
        cache.upsert_pod(pod("p", Some("n1"), "500m"));
        assert_eq!(requested(&cache, "n1"), 500, "confirmation does not count it twice");
        let other = Arc::new(PodInfo::new(Arc::new(pod("q", None, "1"))));
        cache.assume(other, "n1");
        cache.forget("q");
        assert_eq!(requested(&cache, "n1"), 500);
    }

    #[test]
    fn confirming_an_assumption_leaves_snapshots_shared_but_a_relabelled_pod_is_counted_again() {
        let mut cache = SchedulerCache::new();
        cache.upsert_node(node("n1", "2"));
        cache.assume(Arc::new(PodInfo::new(Arc::new(pod("p", None, "500m")))), "n1");
        let before = cache.snapshot();
        cache.upsert_pod(pod("p", Some("n1"), "500m"));
        assert!(Arc::ptr_eq(&before.nodes, &cache.snapshot().nodes), "a confirmation copies nothing");
        let mut bigger = pod("p", Some("n1"), "1");
        bigger.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        cache.upsert_pod(bigger);
        assert_eq!(requested(&cache, "n1"), 1000, "a changed pod replaces its old self");
        assert_eq!(before.get("n1").unwrap().requested.milli_cpu, 500);
    }

    #[test]
    fn an_assumption_made_again_is_not_expired_by_its_earlier_binding() {
        let mut cache = SchedulerCache::new();
        cache.upsert_node(node("n1", "2"));
        let t = Instant::now();
        let info = Arc::new(PodInfo::new(Arc::new(pod("p", None, "1"))));
        cache.assume(Arc::clone(&info), "n1");
        cache.binding_finished("p", t);
        cache.forget("p");
        cache.assume(info, "n1");
        cache.binding_finished("p", t + Duration::from_secs(5));
        assert!(cache.expire(t + ASSUMED_POD_TTL).is_empty());
        assert_eq!(cache.expire(t + ASSUMED_POD_TTL + Duration::from_secs(5)), vec!["p".to_string()]);
    }

    #[test]
    fn unconfirmed_assumptions_expire_after_binding() {
        let mut cache = SchedulerCache::new();
        cache.upsert_node(node("n1", "2"));
        let t = Instant::now();
        cache.assume(Arc::new(PodInfo::new(Arc::new(pod("p", None, "1")))), "n1");
        cache.binding_finished("p", t);
        cache.expire(t + ASSUMED_POD_TTL - Duration::from_millis(1));
        assert_eq!(requested(&cache, "n1"), 1000);
        assert_eq!(cache.expire(t + ASSUMED_POD_TTL), vec!["p".to_string()]);
        assert_eq!(requested(&cache, "n1"), 0);
    }

    #[test]
    fn snapshots_are_unaffected_by_later_changes() {
        let mut cache = SchedulerCache::new();
        cache.upsert_node(node("n1", "2"));
        let before = cache.snapshot();
        cache.upsert_pod(pod("p", Some("n1"), "1"));
        assert_eq!(before.get("n1").unwrap().requested.milli_cpu, 0);
        assert_eq!(requested(&cache, "n1"), 1000);
        cache.upsert_node(node("n1", "4"));
        assert_eq!(requested(&cache, "n1"), 1000, "a node update keeps its pods");
        cache.upsert_pod({
            let mut done = pod("p", Some("n1"), "1");
            done.status = serde_json::from_value(serde_json::json!({"phase": "Succeeded"})).unwrap();
            done
        });
        assert_eq!(requested(&cache, "n1"), 0, "finished pods use nothing");
    }
}
