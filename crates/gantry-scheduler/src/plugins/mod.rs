//! The plugins, each with kube-scheduler's semantics, and the registry that builds the default profile.

pub mod default_preemption;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use std::sync::Arc;

use crate::framework::{PluginSet, Profile};

/// The name of the default profile (`spec.schedulerName` of pods that name none).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// What plugins know of the cluster beyond nodes and pods, shared with the scheduler that keeps it current
/// from its watches: namespace labels (inter-pod affinity's namespace selectors) and PodDisruptionBudgets
/// (preemption).
#[derive(Clone, Debug, Default)]
pub struct ClusterFacts {
    /// Labels of every namespace.
    pub namespace_labels: inter_pod_affinity::SharedNamespaceLabels,
    /// Every PodDisruptionBudget, by `namespace/name`.
    pub budgets: default_preemption::SharedBudgets,
}

/// The default profile, with facts no one keeps current (for tests and tools that know none).
pub fn default_profile() -> Profile {
    default_profile_with(&ClusterFacts::default())
}

/// The default profile: kube-scheduler's default plugins, in its order, with its score weights, reading
/// `facts`.
pub fn default_profile_with(facts: &ClusterFacts) -> Profile {
    let node_unschedulable = Arc::new(node_unschedulable::NodeUnschedulable::new());
    let node_name = Arc::new(node_name::NodeName::new());
    let taints = Arc::new(taint_toleration::TaintToleration::default());
    let node_affinity = Arc::new(node_affinity::NodeAffinity::default());
    let node_ports = Arc::new(node_ports::NodePorts::new());
    let fit = Arc::new(node_resources::NodeResourcesFit::default());
    let balanced = Arc::new(node_resources::NodeResourcesBalancedAllocation::default());
    let images = Arc::new(image_locality::ImageLocality::new());
    let spread = Arc::new(pod_topology_spread::PodTopologySpread::new());
    let inter_pod = Arc::new(inter_pod_affinity::InterPodAffinity::new(Arc::clone(&facts.namespace_labels)));
    let filters: Vec<Arc<dyn crate::framework::Filter>> = vec![
        node_unschedulable,
        node_name,
        taints.clone(),
        node_affinity.clone(),
        node_ports.clone(),
        fit.clone(),
        spread.clone(),
        inter_pod.clone(),
    ];
    let plugins = PluginSet {
        pre_filter: vec![
            node_affinity.clone(),
            node_ports.clone(),
            fit.clone(),
            spread.clone(),
            inter_pod.clone(),
            images.clone(),
        ],
        filter: filters.clone(),
        post_filter: vec![Arc::new(default_preemption::DefaultPreemption::with_budgets(
            filters,
            Arc::clone(&facts.budgets),
        ))],
        pre_score: vec![taints.clone(), node_affinity.clone(), spread.clone(), inter_pod.clone(), balanced.clone()],
        score: vec![(taints, 3), (node_affinity, 2), (fit, 1), (spread, 2), (inter_pod, 2), (balanced, 1), (images, 1)],
        reserve: vec![],
    };
    Profile { scheduler_name: DEFAULT_SCHEDULER_NAME.into(), plugins }
}
