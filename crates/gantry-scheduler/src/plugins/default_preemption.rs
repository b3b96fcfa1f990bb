//! DefaultPreemption (PostFilter): when no node fits a pod, find the node where evicting the fewest, least
//! important lower-priority pods makes it fit, as kube-scheduler does.
//!
//! For each node that failed with a resolvable verdict, every pod of lower priority is removed in a copy of the
//! node and the filters are run again; if the pod then fits, victims are given back one by one, most important
//! first, as long as the pod still fits ("reprieve"). The node chosen is the one whose most important victim is
//! least important, then with the smallest sum of victim priorities, then with the fewest victims.
//!
//! Not yet: PodDisruptionBudgets are not weighed when choosing victims, and filters that count pods across
//! nodes (inter-pod affinity, topology spread) see the cycle's counts without the victims removed.

use std::sync::Arc;

use crate::framework::{Code, CycleState, Filter, NodeVerdicts, Nomination, Plugin, PostFilter, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// The plugin's name.
pub const NAME: &str = "DefaultPreemption";

/// DefaultPreemption, re-running the profile's filters on nodes with victims removed.
pub struct DefaultPreemption {
    filters: Vec<Arc<dyn Filter>>,
}

impl DefaultPreemption {
    /// Preemption that checks fits with these filters (the profile's).
    pub fn new(filters: Vec<Arc<dyn Filter>>) -> DefaultPreemption {
        DefaultPreemption { filters }
    }

    fn fits(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> bool {
        self.filters.iter().all(|f| matches!(f.filter(state, pod, node).code, Code::Success | Code::Skip))
    }

    /// The victims on `node` that make `pod` fit, fewest and least important; `None` if none do.
    fn victims_on(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Option<Vec<Arc<PodInfo>>> {
        let mut lower: Vec<Arc<PodInfo>> = node.pods.iter().filter(|p| p.priority < pod.priority).cloned().collect();
        if lower.is_empty() {
            return None;
        }
        let mut trial = node.clone();
        for victim in &lower {
            trial.remove_pod(&victim.uid);
        }
        if !self.fits(state, pod, &trial) {
            return None;
        }
        // Give back the most important pods first, keeping each one the pod can live with.
        lower.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.key.cmp(&b.key)));
        let mut victims = Vec::new();
        for candidate in lower {
            trial.add_pod(Arc::clone(&candidate));
            if !self.fits(state, pod, &trial) {
                trial.remove_pod(&candidate.uid);
                victims.push(candidate);
            }
        }
        Some(victims)
    }
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PostFilter for DefaultPreemption {
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        verdicts: &NodeVerdicts,
    ) -> (Option<Nomination>, Status) {
        let policy = pod.pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref());
        if policy == Some("Never") {
            return (None, Status::unschedulable("not eligible due to preemptionPolicy=Never."));
        }
        let mut best: Option<((i32, i64, usize), Nomination)> = None;
        for node in snapshot.nodes.iter() {
            // Nodes rejected for reasons evicting pods cannot change are not candidates.
            if verdicts.get(&node.name).is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable) {
                continue;
            }
            let Some(victims) = self.victims_on(state, pod, node) else { continue };
            if victims.is_empty() {
                continue;
            }
            let rank = (
                victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN),
                victims.iter().map(|v| i64::from(v.priority)).sum::<i64>(),
                victims.len(),
            );
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                let nomination = Nomination {
                    node: node.name.to_string(),
                    victims: victims.iter().map(|v| v.key.clone()).collect(),
                };
                best = Some((rank, nomination));
            }
        }
        match best {
            Some((_, nomination)) => (Some(nomination), Status::success()),
            None => (None, Status::unschedulable("No preemption victims found for incoming pod.")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::plugins::node_resources::NodeResourcesFit;
    use k8s_openapi::api::core::v1::{Node, Pod};

    fn node(name: &str, cpu: &str, pods: &[(&str, &str, i32)]) -> Arc<NodeInfo> {
        let n: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}}))
        .unwrap();
        let mut info = NodeInfo::new(Arc::new(n));
        for (pod_name, pod_cpu, priority) in pods {
            info.add_pod(pod(pod_name, pod_cpu, *priority, None));
        }
        Arc::new(info)
    }

    fn pod(name: &str, cpu: &str, priority: i32, policy: Option<&str>) -> Arc<PodInfo> {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "d", "uid": name},
            "spec": {"priority": priority, "preemptionPolicy": policy,
                     "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    fn preemption() -> DefaultPreemption {
        DefaultPreemption::new(vec![Arc::new(NodeResourcesFit::default())])
    }

    #[test]
    fn the_fewest_least_important_victims_are_chosen() {
        let snapshot = Snapshot::new(vec![
            node("busy-important", "4", &[("a", "2", 500), ("b", "2", 500)]),
            node("busy-cheap", "4", &[("c", "1", 10), ("d", "1", 10), ("e", "2", 5)]),
        ]);
        let incoming = pod("new", "2", 1000, None);
        let (nomination, status) =
            preemption().post_filter(&CycleState::default(), &incoming, &snapshot, &NodeVerdicts::new());
        assert!(status.is_success());
        let nomination = nomination.unwrap();
        assert_eq!(nomination.node, "busy-cheap");
        assert_eq!(nomination.victims, vec!["d/e"], "one victim of priority 5 is enough");
    }

    #[test]
    fn pods_of_equal_or_higher_priority_are_never_victims() {
        let snapshot = Snapshot::new(vec![node("n", "2", &[("a", "2", 1000)])]);
        let incoming = pod("new", "1", 1000, None);
        let (nomination, status) =
            preemption().post_filter(&CycleState::default(), &incoming, &snapshot, &NodeVerdicts::new());
        assert!(nomination.is_none());
        assert_eq!(status.reasons, vec!["No preemption victims found for incoming pod."]);
    }

    #[test]
    fn preemption_policy_never_preempts_nothing() {
        let snapshot = Snapshot::new(vec![node("n", "2", &[("a", "2", 0)])]);
        let incoming = pod("new", "1", 1000, None);
        let never = pod("never", "1", 1000, Some("Never"));
        let (nomination, _) = preemption().post_filter(&CycleState::default(), &never, &snapshot, &NodeVerdicts::new());
        assert!(nomination.is_none());
        let (nomination, _) =
            preemption().post_filter(&CycleState::default(), &incoming, &snapshot, &NodeVerdicts::new());
        assert_eq!(nomination.unwrap().victims, vec!["d/a"]);
    }
}
