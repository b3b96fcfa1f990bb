//! NodeName: a pod that names its node (`spec.nodeName`) fits only that node, as kube-scheduler's plugin of
//! the same name decides.

use crate::framework::{CycleState, Filter, Plugin, Status};
use crate::snapshot::{NodeInfo, PodInfo};

/// The reason given for every other node.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// Filters out every node but the one the pod names; a pod naming none fits everywhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeName;

impl NodeName {
    /// The plugin (it takes no arguments).
    pub fn new() -> NodeName {
        NodeName
    }
}

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
}

impl Filter for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            None | Some("") => Status::success(),
            Some(wanted) if wanted == &*node.name => Status::success(),
            // Evicting pods from this node can never make its name match.
            Some(_) => Status::unresolvable(ERR_REASON),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;

    use super::*;
    use crate::framework::{Code, Decision, PluginSet, Profile};
    use crate::snapshot::Snapshot;

    fn pod(node_name: Option<&str>) -> PodInfo {
        let mut spec = json!({"containers": [{"name": "c", "image": "nginx"}]});
        if let Some(n) = node_name {
            spec["nodeName"] = json!(n);
        }
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"}, "spec": spec})).unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn node(name: &str) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        NodeInfo::new(Arc::new(node))
    }

    #[test]
    fn a_pod_without_node_name_fits_every_node() {
        let status = NodeName.filter(&CycleState::default(), &pod(None), &node("n1"));
        assert!(status.is_success());
    }

    #[test]
    fn an_empty_node_name_counts_as_unset() {
        let status = NodeName.filter(&CycleState::default(), &pod(Some("")), &node("n1"));
        assert!(status.is_success());
    }

    #[test]
    fn a_pod_fits_the_node_it_names() {
        let status = NodeName.filter(&CycleState::default(), &pod(Some("n1")), &node("n1"));
        assert!(status.is_success());
    }

    #[test]
    fn another_node_is_unresolvably_rejected() {
        let status = NodeName.filter(&CycleState::default(), &pod(Some("n1")), &node("n2"));
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, vec![ERR_REASON.to_string()]);
    }

    #[test]
    fn a_profile_places_the_pod_on_its_named_node_or_explains_why_not() {
        let profile = Profile {
            scheduler_name: "default-scheduler".into(),
            plugins: PluginSet { filter: vec![Arc::new(NodeName::new())], ..Default::default() },
        };
        let snapshot = Snapshot::new(vec![Arc::new(node("n1")), Arc::new(node("n2"))]);
        let (decision, _) = profile.schedule(&pod(Some("n2")), &snapshot, 0);
        let Decision::Place { node, .. } = decision else { panic!("not placed") };
        assert_eq!(node, "n2");
        let (decision, _) = profile.schedule(&pod(Some("n9")), &snapshot, 0);
        let Decision::Unschedulable { message, .. } = decision else { panic!("placed") };
        assert_eq!(message, "0/2 nodes are available: 2 node(s) didn't match the requested node name.");
    }
}
