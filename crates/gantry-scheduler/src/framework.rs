//! The scheduling framework: one trait per extension point, the per-cycle state, status codes, and a profile
//! that runs a cycle (PreFilter → Filter → PostFilter → PreScore → Score + normalize → Reserve). Binding
//! happens outside the cycle, through the API.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// The highest score a plugin gives a node (kube-scheduler's `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// How many of the best feasible nodes an explanation itemizes.
pub const EXPLAINED_SCORES: usize = 100;

/// The outcome class of a plugin call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// The plugin is satisfied.
    Success,
    /// The pod does not fit now; preemption may help.
    Unschedulable,
    /// The pod does not fit, and preempting pods on this node would not change that.
    UnschedulableAndUnresolvable,
    /// The plugin has nothing to do for this pod; later calls of the same plugin in this cycle are skipped.
    Skip,
    /// Something went wrong (not a verdict on the pod).
    Error,
}

/// A plugin's verdict, with the reasons that explain it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Status {
    /// The class.
    pub code: Code,
    /// Human-readable reasons, as they appear in the unschedulable message (e.g. `Insufficient cpu`).
    pub reasons: Vec<String>,
    /// The plugin that decided (filled in by the framework).
    pub plugin: &'static str,
}

impl Status {
    /// Success.
    pub fn success() -> Status {
        Status { code: Code::Success, reasons: Vec::new(), plugin: "" }
    }

    /// Skip.
    pub fn skip() -> Status {
        Status { code: Code::Skip, reasons: Vec::new(), plugin: "" }
    }

    /// A verdict with reasons.
    pub fn new(code: Code, reasons: impl IntoIterator<Item = impl Into<String>>) -> Status {
        Status { code, reasons: reasons.into_iter().map(Into::into).collect(), plugin: "" }
    }

    /// Unschedulable, for one reason.
    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status::new(Code::Unschedulable, [reason.into()])
    }

    /// Unschedulable and unresolvable, for one reason.
    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, [reason.into()])
    }

    /// An error.
    pub fn error(reason: impl Into<String>) -> Status {
        Status::new(Code::Error, [reason.into()])
    }

    /// Whether the code is Success.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    fn by(mut self, plugin: &'static str) -> Status {
        self.plugin = plugin;
        self
    }
}

/// Data plugins keep for the rest of one scheduling cycle (computed in PreFilter or PreScore, read in Filter
/// or Score), keyed by the plugin's name.
#[derive(Default)]
pub struct CycleState {
    /// A handful of entries, read once per plugin per node: a short list beats hashing the key every time.
    data: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
    skip_filter: Vec<&'static str>,
    skip_score: Vec<&'static str>,
}

impl CycleState {
    /// Stores a plugin's data.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        match self.data.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = Box::new(value),
            None => self.data.push((key, Box::new(value))),
        }
    }

    /// Reads a plugin's data.
    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data.iter().find(|(k, _)| *k == key).and_then(|(_, b)| b.downcast_ref())
    }
}

/// Every plugin has a name.
pub trait Plugin: Send + Sync {
    /// The plugin's name, as in profiles and verdicts.
    fn name(&self) -> &'static str;
}

/// Runs once per cycle before filtering; may precompute, or reject the pod outright.
pub trait PreFilter: Plugin {
    /// Checks or prepares; Skip means this plugin's Filter is not needed for this pod.
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status;
}

/// Decides whether the pod can run on one node.
pub trait Filter: Plugin {
    /// The verdict for one node.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// What filtering said about each node, by node name.
pub type NodeVerdicts = HashMap<Arc<str>, Status>;

/// Runs when no node passed the filters (preemption).
pub trait PostFilter: Plugin {
    /// May nominate a node (after arranging for room to be made); `None` when nothing helps.
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        verdicts: &NodeVerdicts,
    ) -> (Option<Nomination>, Status);
}

/// A node chosen by preemption, and the pods to evict to make room there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nomination {
    /// The node.
    pub node: String,
    /// The pods (`namespace/name`) to evict.
    pub victims: Vec<String>,
}

/// Runs once per cycle before scoring, with the feasible nodes.
pub trait PreScore: Plugin {
    /// Prepares scoring; Skip means this plugin's Score is not needed for this pod.
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Status;
}

/// Ranks a feasible node.
pub trait Score: Plugin {
    /// A score for one node (any range; `normalize` maps it to 0..=MAX_NODE_SCORE).
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;

    /// Maps raw scores to 0..=MAX_NODE_SCORE; the default leaves them as they are.
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [NodeScore]) -> Status {
        Status::success()
    }
}

/// One node's score from one plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeScore {
    /// The node.
    pub node: Arc<str>,
    /// The score.
    pub score: i64,
}

/// Holds or releases what a decision needs until binding succeeds or fails.
pub trait Reserve: Plugin {
    /// Called when the pod is assumed on `node`.
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
    /// Called when the decision is dropped (binding failed).
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}

/// A plugin instance with the extension points it implements.
#[derive(Clone, Default)]
pub struct PluginSet {
    /// PreFilter plugins, in order.
    pub pre_filter: Vec<Arc<dyn PreFilter>>,
    /// Filter plugins, in order.
    pub filter: Vec<Arc<dyn Filter>>,
    /// PostFilter plugins, in order.
    pub post_filter: Vec<Arc<dyn PostFilter>>,
    /// PreScore plugins, in order.
    pub pre_score: Vec<Arc<dyn PreScore>>,
    /// Score plugins with their weights.
    pub score: Vec<(Arc<dyn Score>, i64)>,
    /// Reserve plugins, in order.
    pub reserve: Vec<Arc<dyn Reserve>>,
}

/// A scheduling profile: the plugins that place pods naming `scheduler_name`.
#[derive(Clone)]
pub struct Profile {
    /// `spec.schedulerName` this profile serves.
    pub scheduler_name: String,
    /// Its plugins.
    pub plugins: PluginSet,
}

/// A feasible node's total weighted score, with each plugin's part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoredNode {
    /// The node.
    pub node: Arc<str>,
    /// The sum of the weighted plugin scores.
    pub total: i64,
    /// Each plugin's weighted score.
    pub parts: Vec<(&'static str, i64)>,
}

/// The per-node verdicts and scores of one attempt: what `gantry why` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explanation {
    /// Filter verdicts of nodes that were rejected, by node.
    pub rejected: Vec<(Arc<str>, Status)>,
    /// The best feasible nodes' scores, highest first (at most [`EXPLAINED_SCORES`]).
    pub scores: Vec<ScoredNode>,
    /// Feasible nodes found, including those beyond [`EXPLAINED_SCORES`].
    pub feasible_nodes: usize,
    /// Nodes in the cluster at the time.
    pub total_nodes: usize,
    /// Nodes the filters looked at: in large clusters the search stops once enough feasible nodes are found
    /// (see [`feasible_nodes_to_find`]), so the others have no verdict.
    pub evaluated_nodes: usize,
}

/// The outcome of a scheduling cycle.
#[derive(Debug)]
pub enum Decision {
    /// Place the pod on this node.
    Place {
        /// The node.
        node: String,
        /// Why.
        explanation: Explanation,
    },
    /// Nothing fits.
    Unschedulable {
        /// The unschedulable message, in kube-scheduler's words.
        message: String,
        /// Preemption's choice, if any.
        nomination: Option<Nomination>,
        /// Why.
        explanation: Explanation,
    },
    /// A plugin failed.
    Failed(Status),
}

impl Profile {
    /// Runs one scheduling cycle for `pod` on `snapshot`. `tie_break` picks among equally scored nodes (pass a
    /// random number so that equal nodes share the load).
    pub fn schedule(&self, pod: &PodInfo, snapshot: &Snapshot, tie_break: u64) -> (Decision, CycleState) {
        let (decision, state, _) = self.schedule_from(pod, snapshot, tie_break, 0, snapshot.nodes.len());
        (decision, state)
    }

    /// Runs one cycle that filters nodes starting at index `start` (wrapping around) and stops once `enough`
    /// feasible nodes are found, as kube-scheduler does with `percentageOfNodesToScore`: in a large cluster
    /// the best of a few hundred feasible nodes is as good a choice as the best of all, at a fraction of the
    /// cost. Returns how many nodes were looked at, so the caller can start the next cycle after them and
    /// spread the search over the whole cluster.
    pub fn schedule_from(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        tie_break: u64,
        start: usize,
        enough: usize,
    ) -> (Decision, CycleState, usize) {
        let total = snapshot.nodes.len();
        let mut evaluated = 0;
        let (decision, state) = self.run_cycle(pod, snapshot, tie_break, start, enough.max(1), &mut evaluated);
        (decision, state, evaluated.min(total))
    }

    fn run_cycle(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        tie_break: u64,
        start: usize,
        enough: usize,
        evaluated: &mut usize,
    ) -> (Decision, CycleState) {
        let mut state = CycleState::default();
        let plugins = &self.plugins;
        for p in &plugins.pre_filter {
            let status = p.pre_filter(&mut state, pod, snapshot).by(p.name());
            match status.code {
                Code::Success => {}
                Code::Skip => state.skip_filter.push(p.name()),
                Code::Error => return (Decision::Failed(status), state),
                _ => {
                    let total = snapshot.nodes.len();
                    let mut explanation =
                        Explanation { total_nodes: total, evaluated_nodes: total, ..Explanation::default() };
                    for node in snapshot.nodes.iter() {
                        explanation.rejected.push((Arc::clone(&node.name), status.clone()));
                    }
                    let message = unschedulable_message(total, &explanation.rejected);
                    return (Decision::Unschedulable { message, nomination: None, explanation }, state);
                }
            }
        }
        let filters: Vec<&Arc<dyn Filter>> =
            plugins.filter.iter().filter(|f| !state.skip_filter.contains(&f.name())).collect();
        let mut feasible = Vec::new();
        let mut rejected = Vec::new();
        let total = snapshot.nodes.len();
        let order = (0..total).map(|i| &snapshot.nodes[(start + i) % total.max(1)]);
        'nodes: for node in order {
            if feasible.len() >= enough {
                break;
            }
            *evaluated += 1;
            for f in &filters {
                let status = f.filter(&state, pod, node).by(f.name());
                match status.code {
                    Code::Success | Code::Skip => {}
                    Code::Error => return (Decision::Failed(status), state),
                    _ => {
                        rejected.push((Arc::clone(&node.name), status));
                        continue 'nodes;
                    }
                }
            }
            feasible.push(Arc::clone(node));
        }
        if feasible.is_empty() {
            // Only preemption asks for verdicts by node, and only when nothing fits.
            let verdicts: NodeVerdicts = if plugins.post_filter.is_empty() {
                NodeVerdicts::new()
            } else {
                rejected.iter().map(|(node, status)| (Arc::clone(node), status.clone())).collect()
            };
            let mut nomination = None;
            for p in &plugins.post_filter {
                let (nominated, status) = p.post_filter(&state, pod, snapshot, &verdicts);
                if status.code == Code::Error {
                    return (Decision::Failed(status.by(p.name())), state);
                }
                if nominated.is_some() {
                    nomination = nominated;
                    break;
                }
            }
            let message = unschedulable_message(snapshot.nodes.len(), &rejected);
            let explanation = Explanation {
                rejected,
                scores: Vec::new(),
                feasible_nodes: 0,
                total_nodes: total,
                evaluated_nodes: *evaluated,
            };
            return (Decision::Unschedulable { message, nomination, explanation }, state);
        }
        // Weighted scores, one row per scoring plugin (a flat matrix: one allocation per cycle).
        let n = feasible.len();
        let mut totals = vec![0i64; n];
        let mut matrix: Vec<(&'static str, Vec<i64>)> = Vec::new();
        // One buffer for every plugin's raw scores: refilled per plugin, never reallocated.
        let mut plugin_scores: Vec<NodeScore> =
            feasible.iter().map(|n| NodeScore { node: Arc::clone(&n.name), score: 0 }).collect();
        if n > 1 {
            for p in &plugins.pre_score {
                let status = p.pre_score(&mut state, pod, &feasible).by(p.name());
                match status.code {
                    Code::Success => {}
                    Code::Skip => state.skip_score.push(p.name()),
                    _ => return (Decision::Failed(status), state),
                }
            }
            for (plugin, weight) in &plugins.score {
                if state.skip_score.contains(&plugin.name()) {
                    continue;
                }
                for (node, slot) in feasible.iter().zip(plugin_scores.iter_mut()) {
                    match plugin.score(&state, pod, node) {
                        Ok(score) => slot.score = score,
                        Err(status) => return (Decision::Failed(status.by(plugin.name())), state),
                    }
                }
                let status = plugin.normalize(&state, pod, &mut plugin_scores);
                if !status.is_success() {
                    return (Decision::Failed(status.by(plugin.name())), state);
                }
                let row: Vec<i64> = plugin_scores.iter().map(|s| s.score.clamp(0, MAX_NODE_SCORE) * weight).collect();
                for (total, weighted) in totals.iter_mut().zip(&row) {
                    *total += weighted;
                }
                matrix.push((plugin.name(), row));
            }
        }
        let best = totals.iter().copied().max().unwrap_or(0);
        let top: Vec<usize> = (0..n).filter(|&i| totals[i] == best).collect();
        let chosen = feasible[top[(tie_break % top.len() as u64) as usize]].name.to_string();
        // Only the best few are explained: sorting and itemizing hundreds of nodes every cycle would cost more
        // than the rest of scoring.
        let mut order: Vec<usize> = (0..n).collect();
        let by_rank =
            |a: &usize, b: &usize| totals[*b].cmp(&totals[*a]).then_with(|| feasible[*a].name.cmp(&feasible[*b].name));
        if n > EXPLAINED_SCORES {
            order.select_nth_unstable_by(EXPLAINED_SCORES - 1, by_rank);
            order.truncate(EXPLAINED_SCORES);
        }
        order.sort_unstable_by(by_rank);
        let scores = order
            .into_iter()
            .map(|i| ScoredNode {
                node: Arc::clone(&feasible[i].name),
                total: totals[i],
                parts: matrix.iter().map(|(name, row)| (*name, row[i])).collect(),
            })
            .collect();
        let explanation =
            Explanation { rejected, scores, feasible_nodes: n, total_nodes: total, evaluated_nodes: *evaluated };
        for (i, p) in plugins.reserve.iter().enumerate() {
            let status = p.reserve(&mut state, pod, &chosen).by(p.name());
            if !status.is_success() {
                for undo in plugins.reserve[..i].iter().rev() {
                    undo.unreserve(&mut state, pod, &chosen);
                }
                return (Decision::Failed(status), state);
            }
        }
        (Decision::Place { node: chosen, explanation }, state)
    }
}

/// How many feasible nodes are enough to choose from in a cluster of `nodes` (kube-scheduler's adaptive
/// `percentageOfNodesToScore`: all nodes below 100; otherwise 50% less 1% per 125 nodes, at least 5% and at
/// least 100 nodes).
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    const MIN_NODES: usize = 100;
    if nodes < MIN_NODES {
        return nodes;
    }
    let percentage = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percentage / 100).max(MIN_NODES)
}

/// kube-scheduler's message for a pod no node accepts: `0/5 nodes are available: 3 Insufficient cpu, 2
/// node(s) had untolerated taint {…}.` Reasons are counted across nodes; the "count reason" strings are
/// sorted as strings, as kube-scheduler sorts them.
pub fn unschedulable_message(total_nodes: usize, rejected: &[(Arc<str>, Status)]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, status) in rejected {
        for reason in &status.reasons {
            *counts.entry(reason.as_str()).or_insert(0) += 1;
        }
    }
    if counts.is_empty() {
        return format!("0/{total_nodes} nodes are available.");
    }
    let mut parts: Vec<String> = counts.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    parts.sort();
    format!("0/{total_nodes} nodes are available: {}.", parts.join(", "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};

    struct OnlyNamed(&'static str);
    impl Plugin for OnlyNamed {
        fn name(&self) -> &'static str {
            "OnlyNamed"
        }
    }
    impl Filter for OnlyNamed {
        fn filter(&self, _: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
            if node.name.starts_with(self.0) {
                Status::success()
            } else {
                Status::unschedulable("node(s) had the wrong name")
            }
        }
    }

    struct PreferLong;
    impl Plugin for PreferLong {
        fn name(&self) -> &'static str {
            "PreferLong"
        }
    }
    impl Score for PreferLong {
        fn score(&self, _: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
            Ok(node.name.len() as i64)
        }
    }

    fn snapshot(names: &[&str]) -> Snapshot {
        let nodes = names
            .iter()
            .map(|n| {
                let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": n}})).unwrap();
                Arc::new(NodeInfo::new(Arc::new(node)))
            })
            .collect();
        Snapshot::new(nodes)
    }

    fn pod() -> PodInfo {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "namespace": "d"},
                                                                  "spec": {"containers": []}}))
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn profile() -> Profile {
        let plugins = PluginSet {
            filter: vec![Arc::new(OnlyNamed("a"))],
            score: vec![(Arc::new(PreferLong), 2)],
            ..Default::default()
        };
        Profile { scheduler_name: "default-scheduler".into(), plugins }
    }

    #[test]
    fn the_best_scored_feasible_node_is_chosen_and_explained() {
        let (decision, _) = profile().schedule(&pod(), &snapshot(&["a1", "b22", "a333"]), 0);
        let Decision::Place { node, explanation } = decision else { panic!("not placed") };
        assert_eq!(node, "a333");
        assert_eq!(explanation.rejected[0].0, "b22".into());
        assert_eq!(explanation.rejected[0].1.plugin, "OnlyNamed");
        let expected = ScoredNode { node: "a333".into(), total: 8, parts: vec![("PreferLong", 8)] };
        assert_eq!(explanation.scores[0], expected);
    }

    #[test]
    fn an_unschedulable_pod_gets_the_counted_message() {
        let (decision, _) = profile().schedule(&pod(), &snapshot(&["b1", "c2", "d3"]), 0);
        let Decision::Unschedulable { message, .. } = decision else { panic!("placed") };
        assert_eq!(message, "0/3 nodes are available: 3 node(s) had the wrong name.");
    }

    #[test]
    fn only_the_best_feasible_nodes_are_itemized() {
        let names: Vec<String> = (0..EXPLAINED_SCORES + 20).map(|i| format!("a{i:03}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (decision, _) = profile().schedule(&pod(), &snapshot(&names), 0);
        let Decision::Place { explanation, .. } = decision else { panic!("not placed") };
        assert_eq!(explanation.feasible_nodes, EXPLAINED_SCORES + 20);
        assert_eq!(explanation.scores.len(), EXPLAINED_SCORES);
        assert!(explanation.scores.windows(2).all(|w| w[0].total >= w[1].total), "highest first");
    }

    #[test]
    fn large_clusters_are_searched_only_until_enough_nodes_fit() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(1_000), 420);
        assert_eq!(feasible_nodes_to_find(5_000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5_000);
        let names: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (decision, _, evaluated) = profile().schedule_from(&pod(), &snapshot(&refs), 0, 7, 2);
        assert_eq!(evaluated, 2, "stops after two feasible nodes");
        let Decision::Place { explanation, .. } = decision else { panic!("not placed") };
        let mut seen: Vec<&str> = explanation.scores.iter().map(|s| &*s.node).collect();
        seen.sort();
        assert_eq!(seen, vec!["a7", "a8"], "the search starts where it is told");
    }

    #[test]
    fn messages_count_reasons_alphabetically() {
        let rejected = vec![
            ("n1".into(), Status::unschedulable("Insufficient cpu")),
            ("n2".into(), Status::new(Code::Unschedulable, ["Insufficient cpu", "Insufficient memory"])),
            ("n3".into(), Status::unresolvable("node(s) had untolerated taint {a: b}")),
        ];
        assert_eq!(
            unschedulable_message(5, &rejected),
            "0/5 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {a: b}, 2 Insufficient cpu."
        );
    }
}
