//! DefaultPreemption (PostFilter): when no node fits a pod, find the node where evicting the fewest, least
//! important lower-priority pods makes it fit, as kube-scheduler does.
//!
//! For each node that failed with a resolvable verdict, every pod of lower priority is removed in a copy of the
//! node and the filters are run again; if the pod then fits, victims are given back one by one, most important
//! first, as long as the pod still fits ("reprieve"). The node chosen is the one whose most important victim is
//! least important, then with the smallest sum of victim priorities, then with the fewest victims.
//!
//! PodDisruptionBudgets are honoured where possible: a victim whose eviction a budget does not allow (its
//! `status.disruptionsAllowed`, spent victim by victim, is used up) "violates" the budget; such victims are
//! the first given back, and nodes needing fewer violations win before any other criterion. A pod already
//! listed in a budget's `status.disruptedPods` costs that budget nothing.
//!
//! Not yet: filters that count pods across nodes (inter-pod affinity, topology spread) see the cycle's counts
//! without the victims removed.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use crate::framework::{Code, CycleState, Filter, NodeVerdicts, Nomination, Plugin, PostFilter, Status};
use crate::plugins::pod_topology_spread::label_selector_matches;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// The plugin's name.
pub const NAME: &str = "DefaultPreemption";

/// What preemption needs of a PodDisruptionBudget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budget {
    /// Its namespace: it covers pods there only.
    pub namespace: String,
    /// Its selector; a budget without one (or with an empty one) covers no pod, as in kube-scheduler.
    pub selector: Option<metav1::LabelSelector>,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
    /// Names of pods in `status.disruptedPods` (evictions already counted).
    pub disrupted_pods: Vec<String>,
}

impl Budget {
    /// The budget of a PodDisruptionBudget object.
    pub fn from_object(pdb: &PodDisruptionBudget) -> Budget {
        let status = pdb.status.as_ref();
        Budget {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector: pdb.spec.as_ref().and_then(|s| s.selector.clone()),
            disruptions_allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted_pods: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }

    fn covers(&self, pod: &PodInfo) -> bool {
        let Some(selector) = &self.selector else { return false };
        let empty = selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && selector.match_expressions.as_ref().is_none_or(Vec::is_empty);
        self.namespace == pod.namespace() && !empty && label_selector_matches(selector, pod.labels())
    }
}

/// The cluster's budgets, by `namespace/name`, shared between the scheduler (which follows them with a watch)
/// and the plugin (which reads them when preempting).
pub type SharedBudgets = Arc<RwLock<BTreeMap<String, Budget>>>;

/// DefaultPreemption, re-running the profile's filters on nodes with victims removed.
pub struct DefaultPreemption {
    filters: Vec<Arc<dyn Filter>>,
    budgets: SharedBudgets,
}

impl DefaultPreemption {
    /// Preemption that checks fits with these filters (the profile's), without budgets.
    pub fn new(filters: Vec<Arc<dyn Filter>>) -> DefaultPreemption {
        DefaultPreemption::with_budgets(filters, SharedBudgets::default())
    }

    /// Preemption that checks fits with these filters and honours these budgets where possible.
    pub fn with_budgets(filters: Vec<Arc<dyn Filter>>, budgets: SharedBudgets) -> DefaultPreemption {
        DefaultPreemption { filters, budgets }
    }

    /// Splits candidates (most important first) into those whose eviction some budget forbids and the others,
    /// spending each budget's allowance in that order.
    fn split_by_budgets(&self, candidates: Vec<Arc<PodInfo>>) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
        let budgets = self.budgets.read().unwrap_or_else(PoisonError::into_inner);
        if budgets.is_empty() {
            return (Vec::new(), candidates);
        }
        let mut allowed: BTreeMap<&str, i32> =
            budgets.iter().map(|(k, b)| (k.as_str(), b.disruptions_allowed)).collect();
        let (mut violating, mut fine) = (Vec::new(), Vec::new());
        for pod in candidates {
            let name = pod.pod.metadata.name.as_deref().unwrap_or("");
            let mut violates = false;
            for (key, budget) in budgets.iter() {
                if !budget.covers(&pod) || budget.disrupted_pods.iter().any(|d| d == name) {
                    continue;
                }
                let left = allowed.entry(key.as_str()).or_insert(0);
                *left -= 1;
                if *left < 0 {
                    violates = true;
                }
            }
            if violates { violating.push(pod) } else { fine.push(pod) }
        }
        (violating, fine)
    }

    fn fits(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> bool {
        self.filters.iter().all(|f| matches!(f.filter(state, pod, node).code, Code::Success | Code::Skip))
    }

    /// The victims on `node` that make `pod` fit, fewest and least important, with how many of them violate a
    /// budget; `None` if no victims do.
    fn victims_on(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Option<(Vec<Arc<PodInfo>>, usize)> {
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
        // Give back the most important pods first, keeping each one the pod can live with; pods a budget
        // protects are given back before the others.
        lower.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.key.cmp(&b.key)));
        let (violating, fine) = self.split_by_budgets(lower);
        let mut victims = Vec::new();
        let mut violations = 0;
        for (candidates, violate) in [(violating, true), (fine, false)] {
            for candidate in candidates {
                trial.add_pod(Arc::clone(&candidate));
                if !self.fits(state, pod, &trial) {
                    trial.remove_pod(&candidate.uid);
                    victims.push(candidate);
                    violations += usize::from(violate);
                }
            }
        }
        Some((victims, violations))
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
        let mut best: Option<((usize, i32, i64, usize), Nomination)> = None;
        for node in snapshot.nodes.iter() {
            // Nodes rejected for reasons evicting pods cannot change are not candidates.
            if verdicts.get(&node.name).is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable) {
                continue;
            }
            let Some((victims, violations)) = self.victims_on(state, pod, node) else { continue };
            if victims.is_empty() {
                continue;
            }
            // Fewest budget violations, then the least important most important victim, then the smallest
            // sum of priorities, then the fewest victims.
            let rank = (
                violations,
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

    fn budgets(allowed: i32, disrupted: &[&str]) -> SharedBudgets {
        let budget = Budget {
            namespace: "d".into(),
            selector: Some(serde_json::from_value(serde_json::json!({"matchLabels": {"app": "db"}})).unwrap()),
            disruptions_allowed: allowed,
            disrupted_pods: disrupted.iter().map(|d| d.to_string()).collect(),
        };
        Arc::new(RwLock::new([("d/db".to_string(), budget)].into()))
    }

    fn labelled(info: Arc<PodInfo>, app: &str) -> Arc<PodInfo> {
        let mut pod = (*info.pod).clone();
        pod.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    /// Two nodes where one victim of equal priority makes room; the victim on "a" is covered by the budget.
    fn protected_cluster() -> Snapshot {
        let n: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "a"},
            "status": {"allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"}}}))
        .unwrap();
        let mut a = NodeInfo::new(Arc::new(n));
        a.add_pod(labelled(pod("db-0", "2", 10, None), "db"));
        Snapshot::new(vec![Arc::new(a), node("b", "2", &[("web-0", "2", 10)])])
    }

    #[test]
    fn a_node_whose_victims_a_budget_protects_loses_to_one_without() {
        let preemption = DefaultPreemption::with_budgets(vec![Arc::new(NodeResourcesFit::default())], budgets(0, &[]));
        let incoming = pod("new", "2", 1000, None);
        let (nomination, _) =
            preemption.post_filter(&CycleState::default(), &incoming, &protected_cluster(), &NodeVerdicts::new());
        assert_eq!(nomination.unwrap().victims, vec!["d/web-0"]);
    }

    #[test]
    fn a_budget_with_disruptions_left_or_already_counting_the_pod_protects_nothing() {
        let fit: Vec<Arc<dyn Filter>> = vec![Arc::new(NodeResourcesFit::default())];
        let incoming = pod("new", "2", 1000, None);
        for shared in [budgets(1, &[]), budgets(0, &["db-0"])] {
            let preemption = DefaultPreemption::with_budgets(fit.clone(), shared);
            let (nomination, _) =
                preemption.post_filter(&CycleState::default(), &incoming, &protected_cluster(), &NodeVerdicts::new());
            // With no violation either way, equal ranks keep the first node found.
            assert_eq!(nomination.unwrap().victims, vec!["d/db-0"]);
        }
    }

    #[test]
    fn a_protected_pod_is_still_preempted_when_nothing_else_makes_room() {
        let preemption = DefaultPreemption::with_budgets(vec![Arc::new(NodeResourcesFit::default())], budgets(0, &[]));
        let only_a = Snapshot::new(vec![Arc::clone(&protected_cluster().nodes[0])]);
        let (nomination, _) =
            preemption.post_filter(&CycleState::default(), &pod("new", "2", 1000, None), &only_a, &NodeVerdicts::new());
        assert_eq!(nomination.unwrap().victims, vec!["d/db-0"]);
    }

    #[test]
    fn budgets_are_read_from_pod_disruption_budget_objects() {
        let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "d"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}},
            "status": {"disruptionsAllowed": 2, "currentHealthy": 3, "desiredHealthy": 1, "expectedPods": 3,
                       "disruptedPods": {"db-1": "2026-11-27T10:00:00Z"}}}))
        .unwrap();
        let budget = Budget::from_object(&pdb);
        assert_eq!(budget.disruptions_allowed, 2);
        assert_eq!(budget.disrupted_pods, vec!["db-1"]);
        assert!(budget.covers(&labelled(pod("x", "1", 0, None), "db")));
        assert!(!budget.covers(&pod("y", "1", 0, None)), "unlabelled pods are not covered");
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
