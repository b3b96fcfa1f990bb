//! NodeResourcesFit and NodeResourcesBalancedAllocation, with kube-scheduler's semantics.
//!
//! Fit filters out nodes whose free allocatable (allocatable minus the requests of the pods placed there) is
//! smaller than what the pod requests, resource by resource, and counts pods against the node's `pods`
//! allocatable. A resource the node does not list counts as 0 allocatable. Fit then scores by its strategy:
//! LeastAllocated (the default), MostAllocated or RequestedToCapacityRatio. As kube-scheduler does, scoring
//! counts a container without a cpu or memory request as asking for 100m and 200Mi
//! ([`crate::snapshot::DEFAULT_MILLI_CPU_REQUEST`]), so that pods without requests still spread; filtering
//! counts only real requests.
//!
//! BalancedAllocation prefers nodes where, once the pod is placed, the requested fractions of the resources
//! (cpu and memory by default) are closest to each other. It counts real requests only, and does not score
//! pods that request none of its resources.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::framework::{Code, CycleState, Filter, MAX_NODE_SCORE, Plugin, PreFilter, PreScore, Score, Status};
use crate::resources::Resources;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

const FIT_STATE_KEY: &str = "PreFilterNodeResourcesFit";
const BALANCED_STATE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

/// The highest score of a RequestedToCapacityRatio shape point (scaled to MAX_NODE_SCORE when scoring).
pub const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;
/// The highest utilization of a RequestedToCapacityRatio shape point, in percent.
pub const MAX_UTILIZATION: i64 = 100;
/// The highest weight of a scored resource.
pub const MAX_RESOURCE_WEIGHT: i64 = 100;

/// A resource a scoring strategy considers, with its weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    /// The resource name (`cpu`, `memory`, `ephemeral-storage`, or an extended resource).
    pub name: String,
    /// Its weight among the strategy's resources, 1..=100.
    pub weight: i64,
}

impl ResourceSpec {
    /// A resource with a weight.
    pub fn new(name: impl Into<String>, weight: i64) -> ResourceSpec {
        ResourceSpec { name: name.into(), weight }
    }
}

/// cpu and memory, weight 1 each: the resources kube-scheduler scores by default.
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![ResourceSpec::new("cpu", 1), ResourceSpec::new("memory", 1)]
}

/// One point of a RequestedToCapacityRatio shape: at `utilization` percent, a resource scores `score`
/// (0..=10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtilizationShapePoint {
    /// Utilization in percent, 0..=100.
    pub utilization: i64,
    /// The score at that utilization, 0..=10.
    pub score: i64,
}

/// How NodeResourcesFit scores feasible nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScoringStrategy {
    /// Prefers nodes with the most room left (spreads pods).
    LeastAllocated(Vec<ResourceSpec>),
    /// Prefers nodes with the least room left (packs pods).
    MostAllocated(Vec<ResourceSpec>),
    /// Scores each resource's utilization on a piecewise-linear shape.
    RequestedToCapacityRatio {
        /// The resources and their weights.
        resources: Vec<ResourceSpec>,
        /// The shape, by increasing utilization.
        shape: Vec<UtilizationShapePoint>,
    },
}

impl Default for ScoringStrategy {
    fn default() -> ScoringStrategy {
        ScoringStrategy::LeastAllocated(default_resources())
    }
}

impl ScoringStrategy {
    /// The resources the strategy scores.
    pub fn resources(&self) -> &[ResourceSpec] {
        match self {
            ScoringStrategy::LeastAllocated(r) | ScoringStrategy::MostAllocated(r) => r,
            ScoringStrategy::RequestedToCapacityRatio { resources, .. } => resources,
        }
    }

    /// Checks the strategy's arguments as kube-scheduler validates its configuration.
    pub fn validate(&self) -> Result<(), ArgsError> {
        validate_resources(self.resources(), 1..=MAX_RESOURCE_WEIGHT)?;
        if let ScoringStrategy::RequestedToCapacityRatio { shape, .. } = self {
            if shape.is_empty() {
                return Err(ArgsError::EmptyShape);
            }
            for (index, point) in shape.iter().enumerate() {
                if !(0..=MAX_UTILIZATION).contains(&point.utilization) {
                    return Err(ArgsError::ShapeUtilization { index, utilization: point.utilization });
                }
                if !(0..=MAX_CUSTOM_PRIORITY_SCORE).contains(&point.score) {
                    return Err(ArgsError::ShapeScore { index, score: point.score });
                }
                if let Some(previous) = index.checked_sub(1).and_then(|i| shape.get(i))
                    && point.utilization <= previous.utilization
                {
                    return Err(ArgsError::ShapeNotIncreasing {
                        index,
                        previous: previous.utilization,
                        utilization: point.utilization,
                    });
                }
            }
        }
        Ok(())
    }
}

fn validate_resources(resources: &[ResourceSpec], weights: std::ops::RangeInclusive<i64>) -> Result<(), ArgsError> {
    if resources.is_empty() {
        return Err(ArgsError::NoResources);
    }
    let mut seen = BTreeSet::new();
    for r in resources {
        if !weights.contains(&r.weight) {
            return Err(ArgsError::Weight {
                name: r.name.clone(),
                weight: r.weight,
                min: *weights.start(),
                max: *weights.end(),
            });
        }
        if !seen.insert(r.name.as_str()) {
            return Err(ArgsError::DuplicateResource { name: r.name.clone() });
        }
    }
    Ok(())
}

/// Invalid plugin arguments.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// The strategy lists no resource.
    #[error("scoring resources: at least one resource is required")]
    NoResources,
    /// A weight is out of range.
    #[error("scoring resource {name:?}: weight {weight} is not in the range [{min}, {max}]")]
    Weight {
        /// The resource.
        name: String,
        /// Its weight.
        weight: i64,
        /// The lowest allowed weight.
        min: i64,
        /// The highest allowed weight.
        max: i64,
    },
    /// A resource is listed twice.
    #[error("scoring resource {name:?} is listed more than once")]
    DuplicateResource {
        /// The resource.
        name: String,
    },
    /// RequestedToCapacityRatio without a shape.
    #[error("requestedToCapacityRatio shape: at least one point must be specified")]
    EmptyShape,
    /// A shape point's utilization is out of range.
    #[error("requestedToCapacityRatio shape[{index}]: utilization {utilization} is not in the range [0, 100]")]
    ShapeUtilization {
        /// The point's position.
        index: usize,
        /// Its utilization.
        utilization: i64,
    },
    /// A shape point's score is out of range.
    #[error("requestedToCapacityRatio shape[{index}]: score {score} is not in the range [0, 10]")]
    ShapeScore {
        /// The point's position.
        index: usize,
        /// Its score.
        score: i64,
    },
    /// Shape utilizations do not increase.
    #[error(
        "requestedToCapacityRatio shape[{index}]: utilization {utilization} must be greater than the previous \
         point's {previous}"
    )]
    ShapeNotIncreasing {
        /// The point's position.
        index: usize,
        /// The previous point's utilization.
        previous: i64,
        /// This point's utilization.
        utilization: i64,
    },
}

/// Whether a resource is scalar in kube-scheduler's sense (anything but cpu, memory, ephemeral storage and
/// the pod count): such a resource the pod does not request is left out of scoring.
fn is_scalar(name: &str) -> bool {
    !matches!(name, "cpu" | "memory" | "ephemeral-storage" | "pods")
}

/// Whether a resource is an extended resource (`example.com/foo`): not in the `kubernetes.io` namespace and
/// not a quota `requests.` name. Only these can be ignored by configuration.
fn is_extended_resource(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    !native && !name.starts_with("requests.")
}

/// What a pod asks of one resource for scoring: with the non-zero cpu and memory defaults unless
/// `use_requested`. The pod count is not a scored resource.
fn pod_request(pod: &PodInfo, name: &str, use_requested: bool) -> i64 {
    match name {
        "pods" => 0,
        _ if use_requested => pod.requests.get(name),
        _ => pod.non_zero_requests.get(name),
    }
}

/// The node's allocatable and its requested amount once the pod is added, for one resource; `(0, 0)` leaves
/// the resource out of the score (the node lacks it, or it is scalar and the pod does not ask for it).
fn allocatable_and_requested(node: &NodeInfo, name: &str, pod_request: i64, use_requested: bool) -> (i64, i64) {
    let requested = if use_requested { &node.requested } else { &node.non_zero_requested };
    if pod_request == 0 && is_scalar(name) {
        return (0, 0);
    }
    match name {
        "cpu" => (node.allocatable.milli_cpu, requested.milli_cpu + pod_request),
        "memory" => (node.allocatable.memory, requested.memory + pod_request),
        // Ephemeral storage and scalars have no non-zero default: the real requests count.
        "ephemeral-storage" => (node.allocatable.ephemeral_storage, node.requested.ephemeral_storage + pod_request),
        "pods" => (0, 0),
        other => match node.allocatable.scalars.get(other) {
            Some(allocatable) => (*allocatable, node.requested.get(other) + pod_request),
            None => (0, 0),
        },
    }
}

/// Per scored resource: (allocatable, requested with the pod, weight).
fn resource_usage(
    node: &NodeInfo,
    resources: &[ResourceSpec],
    pod_requests: &[i64],
    use_requested: bool,
) -> Vec<(i64, i64, i64)> {
    resources
        .iter()
        .zip(pod_requests)
        .map(|(r, pod_request)| {
            let (allocatable, requested) = allocatable_and_requested(node, &r.name, *pod_request, use_requested);
            (allocatable, requested, r.weight)
        })
        .collect()
}

fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    // The non-zero defaults can push requests above capacity; such a node is simply full.
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// The weighted mean (rounded down) of a per-resource score over the resources the node has.
fn weighted_mean(usage: &[(i64, i64, i64)], per_resource: impl Fn(i64, i64) -> i64) -> i64 {
    let (mut total, mut weights) = (0, 0);
    for &(allocatable, requested, weight) in usage {
        if allocatable == 0 {
            continue;
        }
        total += per_resource(requested, allocatable) * weight;
        weights += weight;
    }
    if weights == 0 { 0 } else { total / weights }
}

/// The piecewise-linear function through the shape points (scores already scaled to MAX_NODE_SCORE), flat
/// before the first point and after the last.
fn broken_linear(shape: &[UtilizationShapePoint], utilization: i64) -> i64 {
    let mut previous: Option<&UtilizationShapePoint> = None;
    for point in shape {
        if utilization <= point.utilization {
            return match previous {
                None => point.score,
                Some(p) => {
                    p.score
                        + (point.score - p.score) * (utilization - p.utilization) / (point.utilization - p.utilization)
                }
            };
        }
        previous = Some(point);
    }
    previous.map_or(0, |p| p.score)
}

fn requested_to_capacity_ratio(shape: &[UtilizationShapePoint], usage: &[(i64, i64, i64)]) -> i64 {
    let scaled: Vec<UtilizationShapePoint> = shape
        .iter()
        .map(|p| UtilizationShapePoint {
            utilization: p.utilization,
            score: p.score * (MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE),
        })
        .collect();
    let (mut total, mut weights) = (0i64, 0i64);
    for &(allocatable, requested, weight) in usage {
        if allocatable == 0 {
            continue;
        }
        let utilization =
            if requested > allocatable { MAX_UTILIZATION } else { requested * MAX_UTILIZATION / allocatable };
        let score = broken_linear(&scaled, utilization);
        // Resources scoring 0 do not dilute the others, as in kube-scheduler.
        if score > 0 {
            total += score * weight;
            weights += weight;
        }
    }
    if weights == 0 { 0 } else { (total as f64 / weights as f64).round() as i64 }
}

/// The pod's requests, as NodeResourcesFit's PreFilter records them for its Filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FitRequests(pub Resources);

/// Filters nodes by free allocatable resources and scores them by a [`ScoringStrategy`].
#[derive(Clone, Debug, Default)]
pub struct NodeResourcesFit {
    strategy: ScoringStrategy,
    ignored_resources: BTreeSet<String>,
    ignored_resource_groups: BTreeSet<String>,
}

impl NodeResourcesFit {
    /// The plugin with a scoring strategy (checked as kube-scheduler checks its configuration).
    pub fn new(strategy: ScoringStrategy) -> Result<NodeResourcesFit, ArgsError> {
        strategy.validate()?;
        Ok(NodeResourcesFit { strategy, ..Default::default() })
    }

    /// Extended resources the filter does not check, by full name (`example.com/foo`) or by group (the part
    /// before the `/`, `example.com`); for resources another component accounts for.
    pub fn with_ignored_resources(
        mut self,
        resources: impl IntoIterator<Item = String>,
        groups: impl IntoIterator<Item = String>,
    ) -> NodeResourcesFit {
        self.ignored_resources.extend(resources);
        self.ignored_resource_groups.extend(groups);
        self
    }

    /// The scoring strategy.
    pub fn strategy(&self) -> &ScoringStrategy {
        &self.strategy
    }

    fn ignored(&self, name: &str) -> bool {
        if !is_extended_resource(name) {
            return false;
        }
        let group = name.split('/').next().unwrap_or("");
        self.ignored_resources.contains(name) || self.ignored_resource_groups.contains(group)
    }

    /// Why the pod does not fit the node, one reason per short resource (empty when it fits): `Too many
    /// pods`, then `Insufficient cpu`, `memory`, `ephemeral-storage` and each scalar resource by name.
    pub fn insufficient(&self, requests: &Resources, node: &NodeInfo) -> Vec<String> {
        let mut reasons = Vec::new();
        if node.pods.len() as i64 + 1 > node.allocatable.pods {
            reasons.push("Too many pods".to_string());
        }
        let free = |name: &str| node.allocatable.get(name) - node.requested.get(name);
        for (name, wanted) in [
            ("cpu", requests.milli_cpu),
            ("memory", requests.memory),
            ("ephemeral-storage", requests.ephemeral_storage),
        ] {
            if wanted > 0 && wanted > free(name) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        for (name, wanted) in &requests.scalars {
            if *wanted == 0 || self.ignored(name) {
                continue;
            }
            if *wanted > free(name) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        reasons
    }
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
}

impl PreFilter for NodeResourcesFit {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        state.write(FIT_STATE_KEY, FitRequests(pod.requests.clone()));
        Status::success()
    }
}

impl Filter for NodeResourcesFit {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        // Without PreFilter in the profile, the pod's own (identical) requests are used.
        let requests = state.read::<FitRequests>(FIT_STATE_KEY).map_or(&pod.requests, |r| &r.0);
        let reasons = self.insufficient(requests, node);
        // A shortage can be resolved by preempting pods on the node, hence Unschedulable.
        if reasons.is_empty() { Status::success() } else { Status::new(Code::Unschedulable, reasons) }
    }
}

impl Score for NodeResourcesFit {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let resources = self.strategy.resources();
        let pod_requests: Vec<i64> = resources.iter().map(|r| pod_request(pod, &r.name, false)).collect();
        let usage = resource_usage(node, resources, &pod_requests, false);
        Ok(match &self.strategy {
            ScoringStrategy::LeastAllocated(_) => weighted_mean(&usage, least_requested_score),
            ScoringStrategy::MostAllocated(_) => weighted_mean(&usage, most_requested_score),
            ScoringStrategy::RequestedToCapacityRatio { shape, .. } => requested_to_capacity_ratio(shape, &usage),
        })
    }
}

/// The pod's requests of the balanced resources, recorded by PreScore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BalancedRequests(pub Vec<i64>);

/// Scores nodes by how evenly the pod would leave their resources used: `(1 - σ) × MAX_NODE_SCORE`, σ the
/// standard deviation of the requested/allocatable fractions (each capped at 1).
#[derive(Clone, Debug)]
pub struct NodeResourcesBalancedAllocation {
    resources: Vec<ResourceSpec>,
}

impl Default for NodeResourcesBalancedAllocation {
    fn default() -> NodeResourcesBalancedAllocation {
        NodeResourcesBalancedAllocation { resources: default_resources() }
    }
}

impl NodeResourcesBalancedAllocation {
    /// The plugin over these resources (by default cpu and memory); weights must be 1, since the deviation
    /// does not weigh resources.
    pub fn new(resources: Vec<ResourceSpec>) -> Result<NodeResourcesBalancedAllocation, ArgsError> {
        validate_resources(&resources, 1..=1)?;
        Ok(NodeResourcesBalancedAllocation { resources })
    }

    fn pod_requests(&self, pod: &PodInfo) -> Vec<i64> {
        self.resources.iter().map(|r| pod_request(pod, &r.name, true)).collect()
    }
}

impl Plugin for NodeResourcesBalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
}

impl PreScore for NodeResourcesBalancedAllocation {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _nodes: &[Arc<NodeInfo>]) -> Status {
        let requests = self.pod_requests(pod);
        // A pod asking for nothing would otherwise be drawn to the same balanced node over and over.
        if requests.iter().all(|r| *r == 0) {
            return Status::skip();
        }
        state.write(BALANCED_STATE_KEY, BalancedRequests(requests));
        Status::success()
    }
}

/// `(1 - σ) × MAX_NODE_SCORE` over the resources the node has, truncated.
fn balanced_score(usage: &[(i64, i64, i64)]) -> i64 {
    let fractions: Vec<f64> = usage
        .iter()
        .filter(|(allocatable, _, _)| *allocatable != 0)
        .map(|(allocatable, requested, _)| (*requested as f64 / *allocatable as f64).min(1.0))
        .collect();
    let std = match fractions.as_slice() {
        [] | [_] => 0.0,
        [a, b] => ((a - b) / 2.0).abs(),
        all => {
            let mean = all.iter().sum::<f64>() / all.len() as f64;
            (all.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / all.len() as f64).sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl Score for NodeResourcesBalancedAllocation {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let computed;
        let requests = match state.read::<BalancedRequests>(BALANCED_STATE_KEY) {
            Some(r) => &r.0,
            None => {
                computed = self.pod_requests(pod);
                &computed
            }
        };
        Ok(balanced_score(&resource_usage(node, &self.resources, requests, true)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    use super::*;
    use crate::framework::{Code, Decision, PluginSet, Profile};

    /// A pod with one container per request list.
    fn pod(name: &str, requests: &[Value]) -> PodInfo {
        let containers: Vec<Value> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "image": "app", "resources": {"requests": r}}))
            .collect();
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d", "uid": name},
            "spec": {"containers": containers}}))
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn node(name: &str, allocatable: Value, placed: Vec<PodInfo>) -> NodeInfo {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": name}, "status": {"allocatable": allocatable}}))
                .unwrap();
        let mut info = NodeInfo::new(Arc::new(node));
        for p in placed {
            info.add_pod(Arc::new(p));
        }
        info
    }

    fn fit_filter(plugin: &NodeResourcesFit, pod: &PodInfo, node: &NodeInfo) -> Status {
        let mut state = CycleState::default();
        assert!(plugin.pre_filter(&mut state, pod, &Snapshot::default()).is_success());
        plugin.filter(&state, pod, node)
    }

    fn score<S: Score>(plugin: &S, pod: &PodInfo, node: &NodeInfo) -> i64 {
        plugin.score(&CycleState::default(), pod, node).unwrap()
    }

    fn roomy() -> Value {
        json!({"cpu": "4", "memory": "8Gi", "ephemeral-storage": "10Gi", "pods": "110"})
    }

    #[test]
    fn a_pod_fitting_the_free_room_passes() {
        let placed = pod("old", &[json!({"cpu": "3", "memory": "4Gi"})]);
        let n = node("n", roomy(), vec![placed]);
        let status = fit_filter(&NodeResourcesFit::default(), &pod("new", &[json!({"cpu": "1", "memory": "4Gi"})]), &n);
        assert!(status.is_success());
    }

    #[test]
    fn every_short_resource_is_a_reason_and_the_code_is_unschedulable() {
        let placed = pod("old", &[json!({"cpu": "3500m", "memory": "8Gi"})]);
        let n = node("n", roomy(), vec![placed]);
        let new = pod("new", &[json!({"cpu": "1", "memory": "1", "ephemeral-storage": "11Gi"})]);
        let status = fit_filter(&NodeResourcesFit::default(), &new, &n);
        assert_eq!(status.code, Code::Unschedulable);
        assert_eq!(status.reasons, vec!["Insufficient cpu", "Insufficient memory", "Insufficient ephemeral-storage"]);
    }

    #[test]
    fn a_full_node_has_too_many_pods_even_for_a_pod_without_requests() {
        let n = node("n", json!({"cpu": "4", "pods": "1"}), vec![pod("old", &[json!({})])]);
        let status = fit_filter(&NodeResourcesFit::default(), &pod("new", &[json!({})]), &n);
        assert_eq!(status.reasons, vec!["Too many pods"]);
    }

    #[test]
    fn a_node_without_a_pods_allocatable_takes_no_pod() {
        let n = node("n", json!({"cpu": "4"}), vec![]);
        let status = fit_filter(&NodeResourcesFit::default(), &pod("new", &[json!({})]), &n);
        assert_eq!(status.reasons, vec!["Too many pods"]);
    }

    #[test]
    fn a_resource_the_node_lacks_counts_as_zero_allocatable() {
        let n = node("n", roomy(), vec![]);
        let new = pod("new", &[json!({"cpu": "1", "nvidia.com/gpu": "1", "hugepages-2Mi": "2Mi"})]);
        let status = fit_filter(&NodeResourcesFit::default(), &new, &n);
        assert_eq!(status.reasons, vec!["Insufficient hugepages-2Mi", "Insufficient nvidia.com/gpu"]);
    }

    #[test]
    fn extended_resources_are_counted_against_placed_pods() {
        let mut alloc = roomy();
        alloc["example.com/dongle"] = json!("2");
        let n = node("n", alloc, vec![pod("old", &[json!({"example.com/dongle": "1"})])]);
        let plugin = NodeResourcesFit::default();
        assert!(fit_filter(&plugin, &pod("a", &[json!({"example.com/dongle": "1"})]), &n).is_success());
        let status = fit_filter(&plugin, &pod("b", &[json!({"example.com/dongle": "2"})]), &n);
        assert_eq!(status.reasons, vec!["Insufficient example.com/dongle"]);
    }

    #[test]
    fn ignored_extended_resources_and_groups_are_not_checked() {
        let n = node("n", roomy(), vec![]);
        let new = pod("new", &[json!({"example.com/a": "1", "vendor.io/b": "1", "hugepages-2Mi": "2Mi"})]);
        let plugin = NodeResourcesFit::default()
            .with_ignored_resources(["example.com/a".to_string()], ["vendor.io".to_string(), "hugepages-2Mi".into()]);
        // hugepages is not an extended resource: it cannot be ignored.
        assert_eq!(fit_filter(&plugin, &new, &n).reasons, vec!["Insufficient hugepages-2Mi"]);
    }

    #[test]
    fn filter_without_pre_filter_uses_the_pod_requests() {
        let n = node("n", roomy(), vec![]);
        let status = NodeResourcesFit::default().filter(&CycleState::default(), &pod("p", &[json!({"cpu": "5"})]), &n);
        assert_eq!(status.reasons, vec!["Insufficient cpu"]);
    }

    #[test]
    fn least_allocated_scores_the_room_left_averaged_by_weight() {
        let n = node("n", json!({"cpu": "4", "memory": "10000", "pods": "10"}), vec![]);
        let p = pod("p", &[json!({"cpu": "3", "memory": "5000"})]);
        // cpu (4000 - 3000) * 100 / 4000 = 25, memory 50: mean 37.
        assert_eq!(score(&NodeResourcesFit::default(), &p, &n), 37);
        let weighted = NodeResourcesFit::new(ScoringStrategy::LeastAllocated(vec![
            ResourceSpec::new("cpu", 3),
            ResourceSpec::new("memory", 1),
        ]))
        .unwrap();
        // (25 * 3 + 50) / 4 = 31.
        assert_eq!(score(&weighted, &p, &n), 31);
    }

    #[test]
    fn least_allocated_counts_default_requests_for_pods_without_any() {
        let n = node("n", json!({"cpu": "1", "memory": "1000Mi", "pods": "10"}), vec![pod("old", &[json!({})])]);
        // Placed and new pod count 100m + 200Mi each: cpu 80, memory 60, mean 70.
        assert_eq!(score(&NodeResourcesFit::default(), &pod("p", &[json!({})]), &n), 70);
    }

    #[test]
    fn least_allocated_scores_zero_for_an_overcommitted_resource() {
        let n = node("n", json!({"cpu": "1", "memory": "1000Mi", "pods": "10"}), vec![]);
        let p = pod("p", &[json!({"cpu": "2", "memory": "500Mi"})]);
        assert_eq!(score(&NodeResourcesFit::default(), &p, &n), 25);
    }

    #[test]
    fn most_allocated_prefers_full_nodes_and_caps_at_capacity() {
        let plugin = NodeResourcesFit::new(ScoringStrategy::MostAllocated(default_resources())).unwrap();
        let n = node("n", json!({"cpu": "4", "memory": "10000", "pods": "10"}), vec![]);
        assert_eq!(score(&plugin, &pod("p", &[json!({"cpu": "3", "memory": "5000"})]), &n), 62);
        assert_eq!(score(&plugin, &pod("p", &[json!({"cpu": "8", "memory": "20000"})]), &n), 100);
    }

    #[test]
    fn resources_the_node_lacks_or_the_pod_does_not_request_are_left_out_of_the_score() {
        let strategy = ScoringStrategy::MostAllocated(vec![
            ResourceSpec::new("cpu", 1),
            ResourceSpec::new("memory", 1),
            ResourceSpec::new("nvidia.com/gpu", 5),
        ]);
        let plugin = NodeResourcesFit::new(strategy).unwrap();
        let n = node("n", json!({"cpu": "4", "memory": "10000", "nvidia.com/gpu": "4", "pods": "10"}), vec![]);
        // No gpu request: only cpu 75 and memory 50 count.
        assert_eq!(score(&plugin, &pod("p", &[json!({"cpu": "3", "memory": "5000"})]), &n), 62);
        // One of four gpus: (75 + 50 + 25 * 5) / 7 = 35.
        let with_gpu = pod("p", &[json!({"cpu": "3", "memory": "5000", "nvidia.com/gpu": "1"})]);
        assert_eq!(score(&plugin, &with_gpu, &n), 35);
        let without_gpus = node("m", json!({"cpu": "4", "memory": "10000", "pods": "10"}), vec![]);
        assert_eq!(score(&plugin, &with_gpu, &without_gpus), 62);
    }

    #[test]
    fn requested_to_capacity_ratio_follows_its_shape() {
        let shape = vec![
            UtilizationShapePoint { utilization: 0, score: 0 },
            UtilizationShapePoint { utilization: 50, score: 10 },
            UtilizationShapePoint { utilization: 100, score: 0 },
        ];
        let plugin =
            NodeResourcesFit::new(ScoringStrategy::RequestedToCapacityRatio { resources: default_resources(), shape })
                .unwrap();
        let n = node("n", json!({"cpu": "4", "memory": "10000", "pods": "10"}), vec![]);
        // cpu 75% → 50, memory 50% → 100: mean 75.
        assert_eq!(score(&plugin, &pod("p", &[json!({"cpu": "3", "memory": "5000"})]), &n), 75);
        // cpu 100% → 0 is left out of the mean; memory 25% → 50.
        assert_eq!(score(&plugin, &pod("p", &[json!({"cpu": "4", "memory": "2500"})]), &n), 50);
    }

    #[test]
    fn broken_linear_is_flat_outside_its_points() {
        let shape = [
            UtilizationShapePoint { utilization: 20, score: 30 },
            UtilizationShapePoint { utilization: 60, score: 70 },
        ];
        assert_eq!(broken_linear(&shape, 0), 30);
        assert_eq!(broken_linear(&shape, 40), 50);
        assert_eq!(broken_linear(&shape, 90), 70);
    }

    #[test]
    fn invalid_strategies_are_rejected() {
        let bad_weight = ScoringStrategy::LeastAllocated(vec![ResourceSpec::new("cpu", 0)]);
        assert!(matches!(NodeResourcesFit::new(bad_weight), Err(ArgsError::Weight { weight: 0, .. })));
        let twice = ScoringStrategy::MostAllocated(vec![ResourceSpec::new("cpu", 1), ResourceSpec::new("cpu", 2)]);
        assert!(matches!(NodeResourcesFit::new(twice), Err(ArgsError::DuplicateResource { .. })));
        assert_eq!(NodeResourcesFit::new(ScoringStrategy::LeastAllocated(vec![])).unwrap_err(), ArgsError::NoResources);
        let rtcr = |shape| ScoringStrategy::RequestedToCapacityRatio { resources: default_resources(), shape };
        assert_eq!(NodeResourcesFit::new(rtcr(vec![])).unwrap_err(), ArgsError::EmptyShape);
        let p = |utilization, score| UtilizationShapePoint { utilization, score };
        assert!(matches!(NodeResourcesFit::new(rtcr(vec![p(0, 11)])), Err(ArgsError::ShapeScore { .. })));
        assert!(matches!(NodeResourcesFit::new(rtcr(vec![p(101, 1)])), Err(ArgsError::ShapeUtilization { .. })));
        assert!(matches!(
            NodeResourcesFit::new(rtcr(vec![p(50, 1), p(50, 2)])),
            Err(ArgsError::ShapeNotIncreasing { index: 1, .. })
        ));
        assert!(matches!(
            NodeResourcesBalancedAllocation::new(vec![ResourceSpec::new("cpu", 2)]),
            Err(ArgsError::Weight { max: 1, .. })
        ));
    }

    #[test]
    fn balanced_allocation_scores_one_minus_the_deviation() {
        let n = node("n", json!({"cpu": "4", "memory": "10000", "pods": "10"}), vec![]);
        // Fractions 0.75 and 0.5: σ = 0.125, score 87.
        let p = pod("p", &[json!({"cpu": "3", "memory": "5000"})]);
        assert_eq!(score(&NodeResourcesBalancedAllocation::default(), &p, &n), 87);
        // Equal fractions score the maximum.
        assert_eq!(
            score(&NodeResourcesBalancedAllocation::default(), &pod("q", &[json!({"cpu": "2", "memory": "5000"})]), &n),
            100
        );
    }

    #[test]
    fn balanced_allocation_caps_fractions_at_one_and_counts_real_requests() {
        // The placed pod asks for nothing: no non-zero defaults here.
        let n = node("n", json!({"cpu": "1", "memory": "10000", "pods": "10"}), vec![pod("old", &[json!({})])]);
        // cpu 3/1 capped at 1, memory 0: σ = 0.5.
        assert_eq!(score(&NodeResourcesBalancedAllocation::default(), &pod("p", &[json!({"cpu": "3"})]), &n), 50);
    }

    #[test]
    fn balanced_allocation_uses_the_standard_deviation_for_three_resources() {
        let plugin = NodeResourcesBalancedAllocation::new(vec![
            ResourceSpec::new("cpu", 1),
            ResourceSpec::new("memory", 1),
            ResourceSpec::new("example.com/x", 1),
        ])
        .unwrap();
        let n = node("n", json!({"cpu": "1", "memory": "100", "example.com/x": "1M", "pods": "10"}), vec![]);
        // A zero request of the extended resource leaves it out: fractions 1 and 0.5, σ 0.25.
        let p = pod("p", &[json!({"cpu": "1", "memory": "50", "example.com/x": "0"})]);
        assert_eq!(score(&plugin, &p, &n), 75);
        // Fractions 1, 0.5 and about 0: σ ≈ sqrt(1/6) ≈ 0.408, score 59.
        let q = pod("q", &[json!({"cpu": "1", "memory": "50", "example.com/x": "1"})]);
        assert_eq!(score(&plugin, &q, &n), 59);
    }

    #[test]
    fn balanced_allocation_skips_pods_without_requests() {
        let plugin = NodeResourcesBalancedAllocation::default();
        let mut state = CycleState::default();
        assert_eq!(plugin.pre_score(&mut state, &pod("p", &[json!({})]), &[]).code, Code::Skip);
        assert!(plugin.pre_score(&mut state, &pod("p", &[json!({"cpu": "1"})]), &[]).is_success());
    }

    fn profile() -> Profile {
        let fit = Arc::new(NodeResourcesFit::default());
        let balanced = Arc::new(NodeResourcesBalancedAllocation::default());
        Profile {
            scheduler_name: "default-scheduler".into(),
            plugins: PluginSet {
                pre_filter: vec![fit.clone()],
                filter: vec![fit.clone()],
                pre_score: vec![balanced.clone()],
                score: vec![(fit, 1), (balanced, 1)],
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_profile_explains_short_nodes_in_kube_scheduler_words() {
        let snapshot = Snapshot::new(vec![
            Arc::new(node("small", json!({"cpu": "1", "memory": "1Gi", "pods": "10"}), vec![])),
            Arc::new(node("full", json!({"cpu": "8", "memory": "8Gi", "pods": "1"}), vec![pod("old", &[json!({})])])),
            Arc::new(node("tiny", json!({"cpu": "500m", "memory": "8Gi", "pods": "10"}), vec![])),
        ]);
        let (decision, _) = profile().schedule(&pod("p", &[json!({"cpu": "2", "memory": "2Gi"})]), &snapshot, 0);
        let Decision::Unschedulable { message, .. } = decision else { panic!("placed") };
        assert_eq!(message, "0/3 nodes are available: 1 Insufficient memory, 1 Too many pods, 2 Insufficient cpu.");
    }

    #[test]
    fn a_profile_spreads_onto_the_emptier_node() {
        let alloc = json!({"cpu": "4", "memory": "8Gi", "pods": "10"});
        let busy = node("busy", alloc.clone(), vec![pod("old", &[json!({"cpu": "2", "memory": "4Gi"})])]);
        let snapshot = Snapshot::new(vec![Arc::new(busy), Arc::new(node("idle", alloc, vec![]))]);
        let (decision, _) = profile().schedule(&pod("p", &[json!({"cpu": "1", "memory": "1Gi"})]), &snapshot, 0);
        let Decision::Place { node, explanation } = decision else { panic!("not placed") };
        assert_eq!(node, "idle");
        // Least allocated: cpu 75, memory 87 → 81; balanced: fractions 0.25 and 0.125 → 93.
        assert_eq!(
            explanation.scores[0].parts,
            vec![("NodeResourcesFit", 81), ("NodeResourcesBalancedAllocation", 93)]
        );
    }
}
