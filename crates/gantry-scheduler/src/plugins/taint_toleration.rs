//! TaintToleration: a pod runs only on nodes whose `NoSchedule` and `NoExecute` taints it tolerates, and
//! prefers nodes with fewer `PreferNoSchedule` taints it does not tolerate, with kube-scheduler's semantics.
//!
//! A toleration tolerates a taint when its effect is empty or equal to the taint's, its key is empty or
//! equal to the taint's, and its operator says so: `Exists` for any value, `Equal` (or no operator) for the
//! same value (a missing value counts as empty). `Lt` / `Gt` compare the values as integers only when the
//! `TaintTolerationComparisonOperators` feature is on; otherwise they tolerate nothing.
//!
//! A rejected node's reason names the first untolerated taint, `node(s) had untolerated taint {key: value}`,
//! as kube-scheduler did up to 1.34.1. Kubernetes 1.35 (and 1.34.2) print `node(s) had untolerated taint(s)`
//! instead, so that taints are not disclosed in pod statuses; [`TaintToleration::with_generic_reason`]
//! selects that form.
//!
//! The helpers ([`toleration_tolerates_taint`], [`find_untolerated_taint`]) are public for the other parts
//! that match taints the same way (NodeUnschedulable, topology spread's `nodeTaintsPolicy`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{CycleState, Filter, MAX_NODE_SCORE, NodeScore, Plugin, PreScore, Score, Status};
use crate::plugins::node_affinity::default_normalize_score;
use crate::snapshot::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "TaintToleration";

/// Taint effect: new pods that do not tolerate it are not placed on the node.
pub const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
/// Taint effect: new pods that do not tolerate it are not placed, running ones are evicted.
pub const EFFECT_NO_EXECUTE: &str = "NoExecute";
/// Taint effect: the scheduler avoids the node for pods that do not tolerate it.
pub const EFFECT_PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";

/// The reason for a node with an untolerated taint when taints are not disclosed (Kubernetes 1.35's form).
pub const ERR_REASON_UNTOLERATED_GENERIC: &str = "node(s) had untolerated taint(s)";

const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

/// Whether `toleration` tolerates `taint`. `comparison_operators` enables `Lt` and `Gt`.
pub fn toleration_tolerates_taint(toleration: &Toleration, taint: &Taint, comparison_operators: bool) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    let toleration_value = toleration.value.as_deref().unwrap_or("");
    let taint_value = taint.value.as_deref().unwrap_or("");
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => toleration_value == taint_value,
        "Exists" => true,
        op @ ("Lt" | "Gt") if comparison_operators => {
            // Values that are not integers tolerate nothing.
            let (Ok(bound), Ok(value)) = (toleration_value.parse::<i64>(), taint_value.parse::<i64>()) else {
                return false;
            };
            if op == "Lt" { value < bound } else { value > bound }
        }
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint, comparison_operators: bool) -> bool {
    tolerations.iter().any(|t| toleration_tolerates_taint(t, taint, comparison_operators))
}

/// The first of the `taints` selected by `include` that none of the `tolerations` tolerates.
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    include: impl Fn(&Taint) -> bool,
    comparison_operators: bool,
) -> Option<&'a Taint> {
    taints.iter().filter(|t| include(t)).find(|t| !tolerations_tolerate_taint(tolerations, t, comparison_operators))
}

/// Whether a taint keeps new pods off a node (`NoSchedule` or `NoExecute`).
pub fn is_do_not_schedule_taint(taint: &Taint) -> bool {
    taint.effect == EFFECT_NO_SCHEDULE || taint.effect == EFFECT_NO_EXECUTE
}

/// kube-scheduler's reason for a node with an untolerated taint: `node(s) had untolerated taint {key: value}`,
/// with nothing after the colon's space when the taint has no value.
pub fn untolerated_taint_reason(taint: &Taint) -> String {
    format!("node(s) had untolerated taint {{{}: {}}}", taint.key, taint.value.as_deref().unwrap_or(""))
}

fn pod_tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
}

fn node_taints(node: &NodeInfo) -> &[Taint] {
    if !node.has_taints {
        return &[];
    }
    node.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
}

/// The TaintToleration plugin.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaintToleration {
    comparison_operators: bool,
    generic_reason: bool,
}

impl TaintToleration {
    /// Builds the plugin; `comparison_operators` is the `TaintTolerationComparisonOperators` feature (alpha
    /// and off by default in Kubernetes 1.35), which makes `Lt` / `Gt` tolerations compare integers.
    pub fn new(comparison_operators: bool) -> TaintToleration {
        TaintToleration { comparison_operators, generic_reason: false }
    }

    /// With `true`, rejected nodes get [`ERR_REASON_UNTOLERATED_GENERIC`] instead of a reason naming the taint.
    pub fn with_generic_reason(self, generic_reason: bool) -> TaintToleration {
        TaintToleration { generic_reason, ..self }
    }

    fn count_intolerable_prefer_no_schedule(&self, taints: &[Taint], tolerations: &[Toleration]) -> i64 {
        taints
            .iter()
            .filter(|t| t.effect == EFFECT_PREFER_NO_SCHEDULE)
            .filter(|t| !tolerations_tolerate_taint(tolerations, t, self.comparison_operators))
            .count() as i64
    }
}

/// The pod's tolerations that can tolerate `PreferNoSchedule` taints (that effect, or any effect).
struct PreScoreState {
    tolerations: Vec<Toleration>,
}

fn prefer_no_schedule_tolerations(pod: &PodInfo) -> Vec<Toleration> {
    pod_tolerations(pod)
        .iter()
        .filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == EFFECT_PREFER_NO_SCHEDULE))
        .cloned()
        .collect()
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl Filter for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let taints = node_taints(node);
        match find_untolerated_taint(taints, pod_tolerations(pod), is_do_not_schedule_taint, self.comparison_operators)
        {
            None => Status::success(),
            Some(_) if self.generic_reason => Status::unresolvable(ERR_REASON_UNTOLERATED_GENERIC),
            Some(taint) => Status::unresolvable(untolerated_taint_reason(taint)),
        }
    }
}

impl PreScore for TaintToleration {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _nodes: &[Arc<NodeInfo>]) -> Status {
        state.write(PRE_SCORE_KEY, PreScoreState { tolerations: prefer_no_schedule_tolerations(pod) });
        Status::success()
    }
}

impl Score for TaintToleration {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let taints = node_taints(node);
        let score = match state.read::<PreScoreState>(PRE_SCORE_KEY) {
            Some(s) => self.count_intolerable_prefer_no_schedule(taints, &s.tolerations),
            // Same answer without PreScore; only the filtering of tolerations is repeated per node.
            None => self.count_intolerable_prefer_no_schedule(taints, &prefer_no_schedule_tolerations(pod)),
        };
        Ok(score)
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::framework::{Code, Decision, PluginSet, Profile};
    use crate::snapshot::Snapshot;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    fn node(name: &str, taints: Value) -> NodeInfo {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"taints": taints}})).unwrap();
        NodeInfo::new(Arc::new(node))
    }

    fn pod(tolerations: Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"},
                                                     "spec": {"containers": [], "tolerations": tolerations}}))
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn taint(v: Value) -> Taint {
        serde_json::from_value(v).unwrap()
    }

    fn toleration(v: Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn tolerates(tol: Value, t: Value) -> bool {
        toleration_tolerates_taint(&toleration(tol), &taint(t), false)
    }

    #[test]
    fn equal_needs_the_same_key_and_value() {
        let t = json!({"key": "k", "value": "v", "effect": "NoSchedule"});
        assert!(tolerates(json!({"key": "k", "operator": "Equal", "value": "v"}), t.clone()));
        assert!(tolerates(json!({"key": "k", "value": "v"}), t.clone()), "no operator means Equal");
        assert!(!tolerates(json!({"key": "k", "operator": "Equal", "value": "w"}), t.clone()));
        assert!(!tolerates(json!({"key": "other", "operator": "Equal", "value": "v"}), t.clone()));
        assert!(!tolerates(json!({"key": "k", "operator": "Equal"}), t));
    }

    #[test]
    fn a_missing_value_equals_an_empty_one() {
        let t = json!({"key": "k", "effect": "NoSchedule"});
        assert!(tolerates(json!({"key": "k", "operator": "Equal", "value": ""}), t.clone()));
        assert!(tolerates(json!({"key": "k"}), t));
    }

    #[test]
    fn exists_tolerates_any_value_of_the_key() {
        let t = json!({"key": "k", "value": "v", "effect": "NoExecute"});
        assert!(tolerates(json!({"key": "k", "operator": "Exists"}), t.clone()));
        assert!(!tolerates(json!({"key": "j", "operator": "Exists"}), t));
    }

    #[test]
    fn an_empty_key_with_exists_tolerates_everything() {
        for t in [
            json!({"key": "a", "value": "1", "effect": "NoSchedule"}),
            json!({"key": "b", "effect": "NoExecute"}),
            json!({"key": "c", "effect": "PreferNoSchedule"}),
        ] {
            assert!(tolerates(json!({"operator": "Exists"}), t));
        }
    }

    #[test]
    fn the_effect_must_match_unless_empty() {
        let t = json!({"key": "k", "effect": "NoExecute"});
        assert!(!tolerates(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"}), t.clone()));
        assert!(tolerates(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}), t.clone()));
        assert!(tolerates(json!({"key": "k", "operator": "Exists", "effect": ""}), t.clone()));
        assert!(!tolerates(json!({"operator": "Exists", "effect": "NoSchedule"}), t));
    }

    #[test]
    fn unknown_operators_tolerate_nothing() {
        let t = json!({"key": "k", "value": "v", "effect": "NoSchedule"});
        assert!(!tolerates(json!({"key": "k", "operator": "Matches", "value": "v"}), t));
    }

    #[test]
    fn comparison_operators_compare_integers_only_when_enabled() {
        let t = taint(json!({"key": "k", "value": "10", "effect": "NoSchedule"}));
        let gt = toleration(json!({"key": "k", "operator": "Gt", "value": "5"}));
        let lt = toleration(json!({"key": "k", "operator": "Lt", "value": "5"}));
        assert!(!toleration_tolerates_taint(&gt, &t, false));
        assert!(toleration_tolerates_taint(&gt, &t, true));
        assert!(!toleration_tolerates_taint(&lt, &t, true));
        let not_a_number = taint(json!({"key": "k", "value": "ten", "effect": "NoSchedule"}));
        assert!(!toleration_tolerates_taint(&gt, &not_a_number, true));
    }

    #[test]
    fn untolerated_no_schedule_and_no_execute_taints_reject_the_node() {
        let p = pod(json!([]));
        for effect in ["NoSchedule", "NoExecute"] {
            let n = node("n", json!([{"key": "dedicated", "value": "gpu", "effect": effect}]));
            let status = TaintToleration::default().filter(&CycleState::default(), &p, &n);
            assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
            assert_eq!(status.reasons, vec!["node(s) had untolerated taint {dedicated: gpu}".to_string()]);
        }
    }

    #[test]
    fn a_taint_without_value_leaves_the_value_empty_in_the_reason() {
        let n = node("n", json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]));
        let status = TaintToleration::default().filter(&CycleState::default(), &pod(json!(null)), &n);
        assert_eq!(status.reasons, vec!["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]);
    }

    #[test]
    fn the_generic_reason_hides_the_taint() {
        let n = node("n", json!([{"key": "secret", "value": "v", "effect": "NoSchedule"}]));
        let plugin = TaintToleration::new(false).with_generic_reason(true);
        let status = plugin.filter(&CycleState::default(), &pod(json!([])), &n);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, vec![ERR_REASON_UNTOLERATED_GENERIC]);
    }

    #[test]
    fn prefer_no_schedule_taints_do_not_filter() {
        let n = node("n", json!([{"key": "k", "effect": "PreferNoSchedule"}]));
        assert!(TaintToleration::default().filter(&CycleState::default(), &pod(json!([])), &n).is_success());
    }

    #[test]
    fn the_first_untolerated_taint_is_reported() {
        let n = node(
            "n",
            json!([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "value": "1", "effect": "NoExecute"},
                   {"key": "c", "effect": "NoSchedule"}]),
        );
        let p = pod(json!([{"key": "a", "operator": "Exists"}]));
        let status = TaintToleration::default().filter(&CycleState::default(), &p, &n);
        assert_eq!(status.reasons, vec!["node(s) had untolerated taint {b: 1}"]);
        let p = pod(json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"},
                           {"key": "c", "operator": "Exists", "effect": "NoSchedule"}]));
        assert!(TaintToleration::default().filter(&CycleState::default(), &p, &n).is_success());
    }

    fn scores(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<i64> {
        let plugin = TaintToleration::default();
        let mut state = CycleState::default();
        let arcs: Vec<Arc<NodeInfo>> = nodes.iter().cloned().map(Arc::new).collect();
        assert!(plugin.pre_score(&mut state, p, &arcs).is_success());
        let mut out: Vec<NodeScore> = nodes
            .iter()
            .map(|n| NodeScore { node: n.name.clone(), score: plugin.score(&state, p, n).unwrap() })
            .collect();
        assert!(plugin.normalize(&state, p, &mut out).is_success());
        out.into_iter().map(|s| s.score).collect()
    }

    #[test]
    fn fewer_untolerated_prefer_no_schedule_taints_score_higher() {
        let nodes = [
            node("clean", json!([])),
            node("one", json!([{"key": "a", "effect": "PreferNoSchedule"}])),
            node(
                "three",
                json!([{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"},
                                 {"key": "c", "effect": "PreferNoSchedule"}, {"key": "d", "effect": "NoSchedule"}]),
            ),
        ];
        // Raw counts 0, 1, 3: reversed after scaling against 3 with integer division.
        assert_eq!(scores(&pod(json!([])), &nodes), vec![100, 67, 0]);
    }

    #[test]
    fn only_tolerations_for_prefer_no_schedule_or_any_effect_count_in_scoring() {
        let nodes = [node("n1", json!([{"key": "a", "effect": "PreferNoSchedule"}])), node("n2", json!([]))];
        let wrong_effect = pod(json!([{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]));
        assert_eq!(scores(&wrong_effect, &nodes), vec![0, 100]);
        let any_effect = pod(json!([{"key": "a", "operator": "Exists"}]));
        assert_eq!(scores(&any_effect, &nodes), vec![100, 100]);
        let prefer = pod(json!([{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}]));
        assert_eq!(scores(&prefer, &nodes), vec![100, 100]);
    }

    #[test]
    fn score_without_pre_score_gives_the_same_count() {
        let n =
            node("n", json!([{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]));
        let p = pod(json!([{"key": "a", "operator": "Exists"}]));
        assert_eq!(TaintToleration::default().score(&CycleState::default(), &p, &n).unwrap(), 1);
    }

    #[test]
    fn a_profile_counts_each_taint_reason() {
        let plugin = Arc::new(TaintToleration::default());
        let plugins = PluginSet {
            filter: vec![plugin.clone()],
            pre_score: vec![plugin.clone()],
            score: vec![(plugin, 3)],
            ..Default::default()
        };
        let profile = Profile { scheduler_name: "default-scheduler".into(), plugins };
        let nodes = vec![
            Arc::new(node("cp1", json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]))),
            Arc::new(node("cp2", json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]))),
            Arc::new(node("gpu", json!([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]))),
        ];
        let snapshot = Snapshot::new(nodes);
        let (decision, _) = profile.schedule(&pod(json!([])), &snapshot, 0);
        let Decision::Unschedulable { message, .. } = decision else { panic!("placed") };
        assert_eq!(
            message,
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) had untolerated \
             taint {node-role.kubernetes.io/control-plane: }."
        );

        let snapshot = Snapshot::new(vec![
            Arc::new(node("soft", json!([{"key": "a", "effect": "PreferNoSchedule"}]))),
            Arc::new(node("plain", json!([]))),
        ]);
        let (decision, _) = profile.schedule(&pod(json!([])), &snapshot, 0);
        let Decision::Place { node, explanation } = decision else { panic!("not placed") };
        assert_eq!(node, "plain");
        assert_eq!(explanation.scores[1].parts, vec![(NAME, 0)]);
        assert_eq!(explanation.scores[0].parts, vec![(NAME, 300)]);
    }
}
