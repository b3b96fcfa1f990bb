//! The scheduler's cache: nodes and the pods placed on them, from the API's watch streams, plus pods this
//! scheduler has *assumed* on a node but whose binding the watch has not shown yet.
//!
//! Assuming is what lets decisions run faster than the watch confirms them without overcommitting a node: the
//! next cycle already sees the assumed pod's requests. An assumed pod becomes a normal one when the watch
//! shows it bound; if its binding failed it is forgotten; if the watch never shows it (the pod was deleted
//! meanwhile), it expires a while after its binding finished.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

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
}

impl SchedulerCache {
    /// An empty cache.
    pub fn new() -> SchedulerCache {
        SchedulerCache::default()
    }

    fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        let i = *self.index.get(name)?;
        Arc::make_mut(&mut self.nodes).get_mut(i).map(Arc::make_mut)
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
                for placed in self.pods.values().filter(|p| p.node == name) {
                    info.add_pod(Arc::clone(&placed.info));
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
        self.index = Arc::new(self.nodes.iter().enumerate().map(|(i, n)| (n.name.to_string(), i)).collect());
    }

    fn place(&mut self, node: &str, info: Arc<PodInfo>) {
        if let Some(n) = self.node_mut(node) {
            n.add_pod(info);
        }
    }

    fn unplace(&mut self, node: &str, uid: &str) {
        if let Some(n) = self.node_mut(node) {
            n.remove_pod(uid);
        }
    }

    /// A pod as the watch shows it. Bound pods count on their node (confirming an assumption); pods that
    /// have finished (Succeeded/Failed) use nothing and are dropped.
    pub fn upsert_pod(&mut self, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
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
        let expired: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.assumed && p.expires.is_some_and(|e| e <= now))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &expired {
            self.remove_pod(uid);
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
        Snapshot::with_indexes(Arc::clone(&self.nodes), Arc::clone(&self.index), Arc::clone(&self.image_nodes))
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
