//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint, as kube-scheduler's plugin of the same name decides.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{CycleState, Filter, Plugin, Status};
use crate::plugins::taint_toleration::tolerations_tolerate_taint;
use crate::snapshot::{NodeInfo, PodInfo};

/// The reason given for a cordoned node.
pub const ERR_REASON: &str = "node(s) were unschedulable";

/// The taint key a cordoned node is treated as carrying.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Filters out cordoned nodes for pods that do not tolerate being placed there.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeUnschedulable;

impl NodeUnschedulable {
    /// The plugin (it takes no arguments).
    pub fn new() -> NodeUnschedulable {
        NodeUnschedulable
    }
}

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
}

impl Filter for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        // A cordoned node counts as carrying the unschedulable taint; the usual toleration rules decide.
        let taint = Taint { key: TAINT_NODE_UNSCHEDULABLE.into(), effect: "NoSchedule".into(), ..Default::default() };
        let tolerated = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .is_some_and(|ts| tolerations_tolerate_taint(ts, &taint, false));
        if tolerated { Status::success() } else { Status::unresolvable(ERR_REASON) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    use super::*;
    use crate::framework::{Code, Decision, PluginSet, Profile};
    use crate::snapshot::Snapshot;

    fn pod(tolerations: Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "tolerations": tolerations}}))
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn node(name: &str, unschedulable: bool) -> NodeInfo {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"unschedulable": unschedulable}}))
                .unwrap();
        NodeInfo::new(Arc::new(node))
    }

    fn verdict(tolerations: Value, unschedulable: bool) -> Status {
        NodeUnschedulable.filter(&CycleState::default(), &pod(tolerations), &node("n", unschedulable))
    }

    #[test]
    fn a_schedulable_node_takes_any_pod() {
        assert!(verdict(json!([]), false).is_success());
    }

    #[test]
    fn a_node_without_spec_is_schedulable() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
        let status = NodeUnschedulable.filter(&CycleState::default(), &pod(json!([])), &NodeInfo::new(Arc::new(node)));
        assert!(status.is_success());
    }

    #[test]
    fn a_cordoned_node_rejects_an_intolerant_pod_unresolvably() {
        let status = verdict(json!([]), true);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, vec![ERR_REASON.to_string()]);
    }

    #[test]
    fn tolerating_the_unschedulable_taint_with_exists_lets_the_pod_in() {
        let t = json!([{"key": TAINT_NODE_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]);
        assert!(verdict(t, true).is_success());
    }

    #[test]
    fn an_empty_key_with_exists_tolerates_everything() {
        assert!(verdict(json!([{"operator": "Exists"}]), true).is_success());
    }

    #[test]
    fn equal_with_an_empty_value_tolerates_the_taint() {
        assert!(verdict(json!([{"key": TAINT_NODE_UNSCHEDULABLE, "effect": "NoSchedule"}]), true).is_success());
    }

    #[test]
    fn equal_with_a_value_does_not_tolerate_the_empty_taint_value() {
        let t = json!([{"key": TAINT_NODE_UNSCHEDULABLE, "operator": "Equal", "value": "x"}]);
        assert_eq!(verdict(t, true).code, Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn a_toleration_for_another_effect_or_key_does_not_help() {
        let t = json!([{"key": TAINT_NODE_UNSCHEDULABLE, "operator": "Exists", "effect": "NoExecute"},
                       {"key": "other", "operator": "Exists"}]);
        assert_eq!(verdict(t, true).code, Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn a_profile_counts_cordoned_nodes_in_its_message() {
        let profile = Profile {
            scheduler_name: "default-scheduler".into(),
            plugins: PluginSet { filter: vec![Arc::new(NodeUnschedulable::new())], ..Default::default() },
        };
        let snapshot = Snapshot::new(vec![Arc::new(node("a", true)), Arc::new(node("b", true))]);
        let (decision, _) = profile.schedule(&pod(json!([])), &snapshot, 0);
        let Decision::Unschedulable { message, .. } = decision else { panic!("placed") };
        assert_eq!(message, "0/2 nodes are available: 2 node(s) were unschedulable.");
    }
}
