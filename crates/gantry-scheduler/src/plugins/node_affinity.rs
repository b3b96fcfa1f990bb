//! NodeAffinity: a pod runs only on nodes its `spec.nodeSelector` and required node affinity accept, and
//! prefers nodes its preferred node affinity terms match, with kube-scheduler's semantics.
//!
//! - `spec.nodeSelector`: every pair must be a label of the node.
//! - `requiredDuringSchedulingIgnoredDuringExecution`: the `nodeSelectorTerms` are ORed, the requirements
//!   inside one term ANDed; an empty term matches nothing, and so does a list with no terms. A term that
//!   cannot be parsed (unknown operator, invalid key or value) never matches, but the other terms still
//!   count, as kube-scheduler keeps such pods schedulable for backwards compatibility.
//! - `preferredDuringSchedulingIgnoredDuringExecution`: a node scores the sum of the weights of the terms
//!   it matches, normalized to `0..=100` against the best node. Here an invalid term is an error for the
//!   whole cycle, as in kube-scheduler.
//!
//! The plugin can also enforce scheduler-wide affinity ([`NodeAffinityArgs::added_affinity`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use gantry_api::selector::{BadValue, FieldError, Operator, Requirement, SelectorError};
use k8s_openapi::api::core::v1::{
    Node, NodeAffinity as NodeAffinitySpec, NodeSelector as NodeSelectorSpec, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PreferredSchedulingTerm,
};

use crate::framework::{CycleState, Filter, MAX_NODE_SCORE, NodeScore, Plugin, PreFilter, PreScore, Score, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// The plugin's name.
pub const NAME: &str = "NodeAffinity";

/// The reason for a node the pod's node selector or required affinity rejects.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";

/// The reason for a node the scheduler-enforced affinity rejects.
pub const ERR_REASON_ENFORCED: &str = "node(s) didn't match scheduler-enforced node affinity";

/// The reason for a pod whose required terms each name nodes by `metadata.name`, none of them in common
/// with the names the other requirements of the same term allow.
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";

/// The reason for a node outside the names the pod's required terms allow (`matchFields` on
/// `metadata.name` with `In`). kube-scheduler does not run any filter on those nodes and reports them
/// this way.
pub const ERR_REASON_NODE_NAMES: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";

const PRE_FILTER_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

/// The only node field a `matchFields` requirement can select.
const NODE_NAME_FIELD: &str = "metadata.name";

const LABEL_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];
const FIELD_OPERATORS: &[&str] = &["In", "NotIn"];

/// One problem in a node selector term, with its path, in the words kube-scheduler uses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeSelectorError {
    /// An invalid key or values (`nodeSelectorTerms[0].matchExpressions[1].values: Invalid value: ...`).
    #[error("{0}")]
    Invalid(FieldError),
    /// An operator the requirement kind does not support.
    #[error("{path}: Unsupported value: {}: supported values: {}", BadValue::Str(.operator.clone()), quoted_list(.supported))]
    UnsupportedOperator {
        /// The path of the operator, e.g. `nodeSelectorTerms[0].matchFields[0].operator`.
        path: String,
        /// The operator given.
        operator: String,
        /// The operators allowed there.
        supported: &'static [&'static str],
    },
    /// A requirement rejected for another reason by the label selector parser.
    #[error("{path}: {source}")]
    Selector {
        /// The path of the requirement.
        path: String,
        /// What the parser said.
        #[source]
        source: SelectorError,
    },
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|s| BadValue::Str((*s).to_string()).to_string()).collect::<Vec<_>>().join(", ")
}

/// Every problem found in a selector, shown as kube-scheduler aggregates errors: one alone, several as
/// `[first, second]`, duplicates dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSelectorErrors(pub Vec<NodeSelectorError>);

impl fmt::Display for NodeSelectorErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut seen: Vec<String> = Vec::with_capacity(self.0.len());
        for e in &self.0 {
            let msg = e.to_string();
            if !seen.contains(&msg) {
                seen.push(msg);
            }
        }
        match seen.as_slice() {
            [one] => f.write_str(one),
            many => write!(f, "[{}]", many.join(", ")),
        }
    }
}

impl std::error::Error for NodeSelectorErrors {}

/// Why the plugin could not be built from its arguments.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeAffinityError {
    /// The enforced required affinity is invalid.
    #[error("parsing addedAffinity.requiredDuringSchedulingIgnoredDuringExecution: {0}")]
    AddedRequired(#[source] NodeSelectorErrors),
    /// The enforced preferred affinity is invalid.
    #[error("parsing addedAffinity.preferredDuringSchedulingIgnoredDuringExecution: {0}")]
    AddedPreferred(#[source] NodeSelectorErrors),
}

/// A `matchFields` requirement: the field equals (or, negated, differs from) one value.
#[derive(Clone, Debug)]
struct FieldRequirement {
    key: String,
    value: String,
    equal: bool,
}

/// One parsed node selector term. A term with errors never matches.
#[derive(Clone, Debug)]
struct Term {
    labels: Option<Vec<Requirement>>,
    fields: Option<Vec<FieldRequirement>>,
    errors: Vec<NodeSelectorError>,
}

fn is_empty_term(term: &NodeSelectorTerm) -> bool {
    term.match_expressions.as_ref().is_none_or(Vec::is_empty) && term.match_fields.as_ref().is_none_or(Vec::is_empty)
}

fn label_operator(op: &str) -> Option<Operator> {
    Some(match op {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return None,
    })
}

fn label_requirement(req: &NodeSelectorRequirement, path: &str) -> Result<Requirement, Vec<NodeSelectorError>> {
    let Some(op) = label_operator(&req.operator) else {
        return Err(vec![NodeSelectorError::UnsupportedOperator {
            path: format!("{path}.operator"),
            operator: req.operator.clone(),
            supported: LABEL_OPERATORS,
        }]);
    };
    Requirement::new(req.key.clone(), op, req.values.clone().unwrap_or_default()).map_err(|e| match e {
        // The parser reports paths relative to the requirement; kube-scheduler's are from the selector.
        SelectorError::InvalidRequirement(errors) => errors
            .0
            .into_iter()
            .map(|mut fe| {
                fe.path = format!("{path}.{}", fe.path);
                NodeSelectorError::Invalid(fe)
            })
            .collect(),
        other => vec![NodeSelectorError::Selector { path: path.to_string(), source: other }],
    })
}

fn field_requirement(req: &NodeSelectorRequirement, path: &str) -> Result<FieldRequirement, NodeSelectorError> {
    let equal = match req.operator.as_str() {
        "In" => true,
        "NotIn" => false,
        _ => {
            return Err(NodeSelectorError::UnsupportedOperator {
                path: format!("{path}.operator"),
                operator: req.operator.clone(),
                supported: FIELD_OPERATORS,
            });
        }
    };
    match req.values.as_deref() {
        Some([value]) => Ok(FieldRequirement { key: req.key.clone(), value: value.clone(), equal }),
        values => Err(NodeSelectorError::Invalid(FieldError {
            path: format!("{path}.values"),
            // A missing list shows as `null`, an empty one as `[]`, as Go renders nil and empty slices.
            value: BadValue::List(values.map(<[String]>::to_vec)),
            detail: "must have one element".to_string(),
        })),
    }
}

impl Term {
    fn parse(term: &NodeSelectorTerm, path: &str) -> Term {
        let mut errors = Vec::new();
        let mut labels = None;
        if let Some(exprs) = term.match_expressions.as_ref().filter(|e| !e.is_empty()) {
            let mut reqs = Vec::with_capacity(exprs.len());
            for (i, expr) in exprs.iter().enumerate() {
                match label_requirement(expr, &format!("{path}.matchExpressions[{i}]")) {
                    Ok(r) => reqs.push(r),
                    Err(e) => errors.extend(e),
                }
            }
            labels = Some(reqs);
        }
        let mut fields = None;
        if let Some(exprs) = term.match_fields.as_ref().filter(|e| !e.is_empty()) {
            let mut reqs = Vec::with_capacity(exprs.len());
            for (i, expr) in exprs.iter().enumerate() {
                match field_requirement(expr, &format!("{path}.matchFields[{i}]")) {
                    Ok(r) => reqs.push(r),
                    Err(e) => errors.push(e),
                }
            }
            fields = Some(reqs);
        }
        Term { labels, fields, errors }
    }

    fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        if !self.errors.is_empty() {
            return false;
        }
        if let Some(reqs) = &self.labels
            && !reqs.iter().all(|r| r.matches(labels))
        {
            return false;
        }
        // A node without a name has no fields, and then field requirements are not checked at all.
        if let Some(reqs) = &self.fields
            && !name.is_empty()
        {
            return reqs.iter().all(|r| {
                let value = if r.key == NODE_NAME_FIELD { name } else { "" };
                (value == r.value) == r.equal
            });
        }
        true
    }
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

/// A parsed `v1.NodeSelector`: its terms ORed.
#[derive(Clone, Debug)]
pub struct NodeSelector {
    terms: Vec<Term>,
}

impl NodeSelector {
    /// Parses a selector, failing on any invalid term.
    pub fn parse(spec: &NodeSelectorSpec) -> Result<NodeSelector, NodeSelectorErrors> {
        let selector = NodeSelector::lenient(spec);
        let errors: Vec<NodeSelectorError> = selector.terms.iter().flat_map(|t| t.errors.iter().cloned()).collect();
        if errors.is_empty() { Ok(selector) } else { Err(NodeSelectorErrors(errors)) }
    }

    /// Parses a selector keeping invalid terms, which never match (how kube-scheduler treats pods).
    pub fn lenient(spec: &NodeSelectorSpec) -> NodeSelector {
        let terms = spec
            .node_selector_terms
            .iter()
            .enumerate()
            .filter(|(_, t)| !is_empty_term(t))
            .map(|(i, t)| Term::parse(t, &format!("nodeSelectorTerms[{i}]")))
            .collect();
        NodeSelector { terms }
    }

    /// Whether some term matches the node. A selector without (non-empty) terms matches nothing.
    pub fn matches(&self, node: &Node) -> bool {
        let labels = node_labels(node);
        let name = node_name(node);
        self.terms.iter().any(|t| t.matches(labels, name))
    }
}

/// A pod's hard placement constraints: `spec.nodeSelector` and the required node affinity.
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    node_selector: Option<BTreeMap<String, String>>,
    affinity: Option<NodeSelector>,
}

impl RequiredNodeAffinity {
    /// Reads the pod's constraints; invalid affinity terms are kept and never match.
    pub fn from_pod(pod: &Pod) -> RequiredNodeAffinity {
        let spec = pod.spec.as_ref();
        let node_selector = spec.and_then(|s| s.node_selector.clone()).filter(|s| !s.is_empty());
        let affinity = required_spec(pod).map(NodeSelector::lenient);
        RequiredNodeAffinity { node_selector, affinity }
    }

    /// Whether the pod may run on the node.
    pub fn matches(&self, node: &Node) -> bool {
        if let Some(selector) = &self.node_selector {
            let labels = node_labels(node);
            if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                return false;
            }
        }
        self.affinity.as_ref().is_none_or(|a| a.matches(node))
    }
}

fn node_affinity_spec(pod: &Pod) -> Option<&NodeAffinitySpec> {
    pod.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()
}

fn required_spec(pod: &Pod) -> Option<&NodeSelectorSpec> {
    node_affinity_spec(pod)?.required_during_scheduling_ignored_during_execution.as_ref()
}

fn preferred_spec(pod: &Pod) -> Option<&[PreferredSchedulingTerm]> {
    node_affinity_spec(pod)?.preferred_during_scheduling_ignored_during_execution.as_deref()
}

/// Parsed preferred scheduling terms with their weights.
#[derive(Clone, Debug, Default)]
pub struct PreferredSchedulingTerms {
    terms: Vec<(Term, i64)>,
}

impl PreferredSchedulingTerms {
    /// Parses the terms; terms with weight 0 or no requirements are dropped without being checked.
    pub fn parse(terms: &[PreferredSchedulingTerm]) -> Result<PreferredSchedulingTerms, NodeSelectorErrors> {
        let mut errors = Vec::new();
        let mut parsed = Vec::with_capacity(terms.len());
        for (i, term) in terms.iter().enumerate() {
            if term.weight == 0 || is_empty_term(&term.preference) {
                continue;
            }
            let t = Term::parse(&term.preference, &format!("[{i}]"));
            if t.errors.is_empty() {
                parsed.push((t, i64::from(term.weight)));
            } else {
                errors.extend(t.errors);
            }
        }
        if errors.is_empty() { Ok(PreferredSchedulingTerms { terms: parsed }) } else { Err(NodeSelectorErrors(errors)) }
    }

    /// The sum of the weights of the terms the node matches.
    pub fn score(&self, node: &Node) -> i64 {
        let labels = node_labels(node);
        let name = node_name(node);
        self.terms.iter().filter(|(t, _)| t.matches(labels, name)).map(|(_, w)| w).sum()
    }
}

/// The node names a pod's required terms allow through `matchFields` `metadata.name` `In`, as
/// kube-scheduler's PreFilter computes them: `None` when some term does not restrict names (every node is
/// a candidate), otherwise the union over terms of the intersection within each term. An empty set means
/// the terms conflict.
pub fn required_node_names(pod: &Pod) -> Option<BTreeSet<String>> {
    let terms = &required_spec(pod)?.node_selector_terms;
    if terms.is_empty() {
        return None;
    }
    let mut names = BTreeSet::new();
    for term in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for req in term.match_fields.iter().flatten() {
            if req.key == NODE_NAME_FIELD && req.operator == "In" {
                let values: BTreeSet<String> = req.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    None => values,
                    Some(previous) => previous.intersection(&values).cloned().collect(),
                });
            }
        }
        names.extend(term_names?);
    }
    Some(names)
}

/// The plugin's arguments (kube-scheduler's `NodeAffinityArgs`).
#[derive(Clone, Debug, Default)]
pub struct NodeAffinityArgs {
    /// Affinity every pod of the profile gets on top of its own: required terms filter, preferred terms
    /// add to the score.
    pub added_affinity: Option<NodeAffinitySpec>,
}

/// The NodeAffinity plugin.
#[derive(Clone, Debug, Default)]
pub struct NodeAffinity {
    added_node_selector: Option<NodeSelector>,
    added_preferred: Option<PreferredSchedulingTerms>,
}

impl NodeAffinity {
    /// Builds the plugin; the added affinity must be valid.
    pub fn new(args: NodeAffinityArgs) -> Result<NodeAffinity, NodeAffinityError> {
        let mut plugin = NodeAffinity::default();
        if let Some(added) = &args.added_affinity {
            if let Some(required) = &added.required_during_scheduling_ignored_during_execution {
                plugin.added_node_selector =
                    Some(NodeSelector::parse(required).map_err(NodeAffinityError::AddedRequired)?);
            }
            if let Some(preferred) = added.preferred_during_scheduling_ignored_during_execution.as_deref()
                && !preferred.is_empty()
            {
                plugin.added_preferred =
                    Some(PreferredSchedulingTerms::parse(preferred).map_err(NodeAffinityError::AddedPreferred)?);
            }
        }
        Ok(plugin)
    }
}

struct PreFilterState {
    required: RequiredNodeAffinity,
    node_names: Option<BTreeSet<String>>,
}

struct PreScoreState {
    preferred: Option<PreferredSchedulingTerms>,
}

fn pod_preferred(pod: &Pod) -> Result<Option<PreferredSchedulingTerms>, Status> {
    preferred_spec(pod).map(PreferredSchedulingTerms::parse).transpose().map_err(|e| Status::error(e.to_string()))
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilter for NodeAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        let has_selector = pod.pod.spec.as_ref().is_some_and(|s| s.node_selector.is_some());
        if required_spec(&pod.pod).is_none() && self.added_node_selector.is_none() && !has_selector {
            return Status::skip();
        }
        let node_names = required_node_names(&pod.pod);
        if node_names.as_ref().is_some_and(BTreeSet::is_empty) {
            return Status::unresolvable(ERR_REASON_CONFLICT);
        }
        state.write(PRE_FILTER_KEY, PreFilterState { required: RequiredNodeAffinity::from_pod(&pod.pod), node_names });
        Status::success()
    }
}

impl Filter for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let computed;
        let s = match state.read::<PreFilterState>(PRE_FILTER_KEY) {
            Some(s) => s,
            // Without PreFilter there is no narrowing to node names, as in kube-scheduler.
            None => {
                computed = PreFilterState { required: RequiredNodeAffinity::from_pod(&pod.pod), node_names: None };
                &computed
            }
        };
        // The framework has no PreFilter result narrowing the nodes, so the narrowing happens here, first,
        // with the status kube-scheduler gives the nodes it leaves out.
        if let Some(names) = &s.node_names
            && !names.contains(&*node.name)
        {
            return Status::unresolvable(ERR_REASON_NODE_NAMES);
        }
        if let Some(added) = &self.added_node_selector
            && !added.matches(&node.node)
        {
            return Status::unresolvable(ERR_REASON_ENFORCED);
        }
        if !s.required.matches(&node.node) {
            return Status::unresolvable(ERR_REASON_POD);
        }
        Status::success()
    }
}

impl PreScore for NodeAffinity {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _nodes: &[Arc<NodeInfo>]) -> Status {
        let preferred = match pod_preferred(&pod.pod) {
            Ok(p) => p,
            Err(status) => return status,
        };
        if preferred.is_none() && self.added_preferred.is_none() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PreScoreState { preferred });
        Status::success()
    }
}

impl Score for NodeAffinity {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let mut score = self.added_preferred.as_ref().map_or(0, |p| p.score(&node.node));
        let computed;
        let preferred = match state.read::<PreScoreState>(PRE_SCORE_KEY) {
            Some(s) => s.preferred.as_ref(),
            None => {
                computed = pod_preferred(&pod.pod)?;
                computed.as_ref()
            }
        };
        score += preferred.map_or(0, |p| p.score(&node.node));
        Ok(score)
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

/// kube-scheduler's default normalization: scales scores from `0..=max(scores)` to `0..=max_priority`
/// (integer division), then, if `reverse`, subtracts them from `max_priority`. When every score is 0 they
/// stay 0, or all become `max_priority` if `reverse`.
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [NodeScore]) {
    let max = scores.iter().map(|s| s.score).fold(0, i64::max);
    if max == 0 {
        if reverse {
            for s in scores.iter_mut() {
                s.score = max_priority;
            }
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = max_priority * s.score / max;
        s.score = if reverse { max_priority - scaled } else { scaled };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::framework::{Code, Decision, PluginSet, Profile};
    use serde_json::{Value, json};

    fn node(name: &str, labels: Value) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        NodeInfo::new(Arc::new(node))
    }

    fn pod(spec: Value) -> PodInfo {
        let mut spec = spec;
        spec["containers"] = json!([]);
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"}, "spec": spec})).unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn required(terms: Value) -> Value {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": terms}}}})
    }

    fn preferred(terms: Value) -> Value {
        json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}})
    }

    /// Runs PreFilter then Filter, as the framework does, returning the filter's verdict.
    fn run_filter(plugin: &NodeAffinity, pod: &PodInfo, node: &NodeInfo) -> Status {
        let mut state = CycleState::default();
        let pre = plugin.pre_filter(&mut state, pod, &Snapshot::default());
        match pre.code {
            Code::Skip => Status::success(),
            Code::Success => plugin.filter(&state, pod, node),
            _ => pre,
        }
    }

    fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
        let status = run_filter(&NodeAffinity::default(), pod, node);
        assert!(matches!(status.code, Code::Success | Code::UnschedulableAndUnresolvable), "{status:?}");
        status.is_success()
    }

    #[test]
    fn a_pod_without_constraints_skips_the_filter() {
        let mut state = CycleState::default();
        let status = NodeAffinity::default().pre_filter(&mut state, &pod(json!({})), &Snapshot::default());
        assert_eq!(status.code, Code::Skip);
    }

    #[test]
    fn node_selector_needs_every_pair() {
        let p = pod(json!({"nodeSelector": {"disk": "ssd", "zone": "a"}}));
        assert!(fits(&p, &node("n", json!({"disk": "ssd", "zone": "a", "extra": "x"}))));
        assert!(!fits(&p, &node("n", json!({"disk": "ssd"}))));
        assert!(!fits(&p, &node("n", json!({"disk": "ssd", "zone": "b"}))));
    }

    #[test]
    fn node_selector_with_an_empty_value_needs_the_label_present() {
        let p = pod(json!({"nodeSelector": {"gpu": ""}}));
        assert!(fits(&p, &node("n", json!({"gpu": ""}))));
        assert!(!fits(&p, &node("n", json!({}))));
    }

    #[test]
    fn rejection_is_unresolvable_with_kubes_reason() {
        let p = pod(json!({"nodeSelector": {"disk": "ssd"}}));
        let status = run_filter(&NodeAffinity::default(), &p, &node("n", json!({})));
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, vec![ERR_REASON_POD.to_string()]);
    }

    #[test]
    fn terms_are_ored_and_expressions_anded() {
        let p = pod(required(json!([
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]},
                                  {"key": "b", "operator": "Exists"}]},
            {"matchExpressions": [{"key": "c", "operator": "In", "values": ["3"]}]}
        ])));
        assert!(fits(&p, &node("n", json!({"a": "1", "b": "x"}))));
        assert!(!fits(&p, &node("n", json!({"a": "1"}))));
        assert!(fits(&p, &node("n", json!({"c": "3"}))));
        assert!(!fits(&p, &node("n", json!({"a": "2", "b": "", "c": "4"}))));
    }

    #[test]
    fn every_operator_matches_as_in_kube() {
        let cases = [
            (json!({"key": "k", "operator": "In", "values": ["a", "b"]}), json!({"k": "b"}), true),
            (json!({"key": "k", "operator": "In", "values": ["a"]}), json!({}), false),
            (json!({"key": "k", "operator": "NotIn", "values": ["a"]}), json!({}), true),
            (json!({"key": "k", "operator": "NotIn", "values": ["a"]}), json!({"k": "a"}), false),
            (json!({"key": "k", "operator": "Exists"}), json!({"k": ""}), true),
            (json!({"key": "k", "operator": "DoesNotExist"}), json!({"k": ""}), false),
            (json!({"key": "k", "operator": "DoesNotExist"}), json!({}), true),
            (json!({"key": "k", "operator": "Gt", "values": ["5"]}), json!({"k": "6"}), true),
            (json!({"key": "k", "operator": "Gt", "values": ["5"]}), json!({"k": "5"}), false),
            (json!({"key": "k", "operator": "Gt", "values": ["5"]}), json!({"k": "six"}), false),
            (json!({"key": "k", "operator": "Gt", "values": ["5"]}), json!({}), false),
            (json!({"key": "k", "operator": "Lt", "values": ["5"]}), json!({"k": "4"}), true),
            (json!({"key": "k", "operator": "Lt", "values": ["5"]}), json!({"k": "5"}), false),
        ];
        for (expr, labels, expected) in cases {
            let p = pod(required(json!([{"matchExpressions": [expr.clone()]}])));
            assert_eq!(fits(&p, &node("n", labels.clone())), expected, "{expr} on {labels}");
        }
    }

    #[test]
    fn an_invalid_term_never_matches_but_other_terms_still_do() {
        let p = pod(required(json!([
            {"matchExpressions": [{"key": "a", "operator": "Near", "values": ["1"]}]},
            {"matchExpressions": [{"key": "b", "operator": "Exists"}]}
        ])));
        assert!(!fits(&p, &node("n", json!({"a": "1"}))));
        assert!(fits(&p, &node("n", json!({"b": "1"}))));
        // Invalid values (In without values, Gt with a non-integer, bad label value) also spoil a term.
        for expr in [
            json!({"key": "a", "operator": "In", "values": []}),
            json!({"key": "a", "operator": "Gt", "values": ["x"]}),
            json!({"key": "a", "operator": "NotIn", "values": ["not valid"]}),
            json!({"key": "-a", "operator": "Exists"}),
        ] {
            let p = pod(required(json!([{"matchExpressions": [expr.clone()]}])));
            assert!(!fits(&p, &node("n", json!({"a": "1"}))), "{expr}");
        }
    }

    #[test]
    fn empty_terms_and_no_terms_match_nothing() {
        assert!(!fits(&pod(required(json!([]))), &node("n", json!({}))));
        assert!(!fits(&pod(required(json!([{}]))), &node("n", json!({}))));
        let p = pod(required(
            json!([{"matchExpressions": []}, {"matchExpressions": [{"key": "a", "operator": "Exists"}]}]),
        ));
        assert!(fits(&p, &node("n", json!({"a": ""}))));
    }

    #[test]
    fn node_selector_and_affinity_must_both_match() {
        let mut spec = required(json!([{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]));
        spec["nodeSelector"] = json!({"b": "1"});
        let p = pod(spec);
        assert!(fits(&p, &node("n", json!({"a": "", "b": "1"}))));
        assert!(!fits(&p, &node("n", json!({"a": ""}))));
        assert!(!fits(&p, &node("n", json!({"b": "1"}))));
    }

    #[test]
    fn match_fields_select_the_node_name() {
        let p =
            pod(required(json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}])));
        assert!(!fits(&p, &node("n1", json!({}))));
        assert!(fits(&p, &node("n2", json!({}))));
        // Field requirements need exactly one value; otherwise the term is invalid.
        let p = pod(required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1", "n2"]}]}
        ])));
        assert!(!fits(&p, &node("n3", json!({}))));
    }

    #[test]
    fn nodes_outside_the_named_nodes_are_reported_as_kube_reports_them() {
        let p = pod(required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
             "matchExpressions": [{"key": "a", "operator": "Exists"}]}
        ])));
        let plugin = NodeAffinity::default();
        let outside = run_filter(&plugin, &p, &node("n2", json!({"a": ""})));
        assert_eq!(outside.reasons, vec![ERR_REASON_NODE_NAMES.to_string()]);
        assert_eq!(outside.code, Code::UnschedulableAndUnresolvable);
        let named_but_unlabelled = run_filter(&plugin, &p, &node("n1", json!({})));
        assert_eq!(named_but_unlabelled.reasons, vec![ERR_REASON_POD.to_string()]);
        assert!(run_filter(&plugin, &p, &node("n1", json!({"a": ""}))).is_success());
    }

    #[test]
    fn node_names_are_intersected_within_a_term_and_united_across_terms() {
        let p = pod(required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]},
                             {"key": "metadata.name", "operator": "In", "values": ["b", "c"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["d"]}]}
        ])));
        let names = required_node_names(&p.pod).unwrap();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), vec!["b".to_string(), "d".to_string()]);
        // A term that does not name nodes lets every node through.
        let p = pod(required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "x", "operator": "Exists"}]}
        ])));
        assert_eq!(required_node_names(&p.pod), None);
    }

    #[test]
    fn terms_naming_disjoint_nodes_conflict_in_pre_filter() {
        let p = pod(required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]},
                             {"key": "metadata.name", "operator": "In", "values": ["b"]}]}
        ])));
        let status = NodeAffinity::default().pre_filter(&mut CycleState::default(), &p, &Snapshot::default());
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, vec![ERR_REASON_CONFLICT.to_string()]);
    }

    #[test]
    fn filter_without_pre_filter_computes_the_constraints_itself() {
        let p = pod(json!({"nodeSelector": {"a": "1"}}));
        let plugin = NodeAffinity::default();
        assert!(plugin.filter(&CycleState::default(), &p, &node("n", json!({"a": "1"}))).is_success());
        assert!(!plugin.filter(&CycleState::default(), &p, &node("n", json!({}))).is_success());
    }

    fn added(affinity: Value) -> NodeAffinity {
        let spec: NodeAffinitySpec = serde_json::from_value(affinity).unwrap();
        NodeAffinity::new(NodeAffinityArgs { added_affinity: Some(spec) }).unwrap()
    }

    #[test]
    fn added_affinity_is_enforced_on_every_pod() {
        let plugin = added(json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["general"]}]}]}}));
        let p = pod(json!({}));
        let status = run_filter(&plugin, &p, &node("n", json!({})));
        assert_eq!(status.reasons, vec![ERR_REASON_ENFORCED.to_string()]);
        assert!(run_filter(&plugin, &p, &node("n", json!({"pool": "general"}))).is_success());
    }

    #[test]
    fn invalid_added_affinity_is_refused_with_its_path() {
        let spec: NodeAffinitySpec = serde_json::from_value(json!({"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Near"}]},
                                   {"matchFields": [{"key": "metadata.name", "operator": "In", "values": []}]}]}}))
        .unwrap();
        let err = NodeAffinity::new(NodeAffinityArgs { added_affinity: Some(spec) }).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parsing addedAffinity.requiredDuringSchedulingIgnoredDuringExecution: [nodeSelectorTerms[0].\
             matchExpressions[0].operator: Unsupported value: \"Near\": supported values: \"In\", \"NotIn\", \
             \"Exists\", \"DoesNotExist\", \"Gt\", \"Lt\", nodeSelectorTerms[1].matchFields[0].values: Invalid \
             value: []: must have one element]"
        );
    }

    #[test]
    fn a_field_requirement_without_values_shows_null() {
        let spec: NodeSelectorSpec = serde_json::from_value(json!({"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In"}]}]}))
        .unwrap();
        let err = NodeSelector::parse(&spec).unwrap_err();
        assert_eq!(
            err.to_string(),
            "nodeSelectorTerms[0].matchFields[0].values: Invalid value: null: must have one element"
        );
    }

    fn scores(plugin: &NodeAffinity, p: &PodInfo, nodes: &[NodeInfo]) -> Result<Vec<i64>, Status> {
        let mut state = CycleState::default();
        let arcs: Vec<Arc<NodeInfo>> = nodes.iter().cloned().map(Arc::new).collect();
        let status = plugin.pre_score(&mut state, p, &arcs);
        if status.code == Code::Skip {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(status);
        }
        let mut out = Vec::new();
        for n in nodes {
            out.push(NodeScore { node: n.name.clone(), score: plugin.score(&state, p, n)? });
        }
        assert!(plugin.normalize(&state, p, &mut out).is_success());
        Ok(out.into_iter().map(|s| s.score).collect())
    }

    #[test]
    fn preferred_terms_score_the_sum_of_matching_weights_normalized() {
        let p = pod(preferred(json!([
            {"weight": 2, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}},
            {"weight": 4, "preference": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}},
            {"weight": 0, "preference": {"matchExpressions": [{"key": "c", "operator": "Exists"}]}}
        ])));
        let nodes = [node("n1", json!({"a": ""})), node("n2", json!({"a": "", "b": ""})), node("n3", json!({"c": ""}))];
        // Raw 2, 6, 0: scaled against 6 with integer division.
        assert_eq!(scores(&NodeAffinity::default(), &p, &nodes).unwrap(), vec![33, 100, 0]);
    }

    #[test]
    fn no_preferred_terms_skip_scoring() {
        let status = NodeAffinity::default().pre_score(&mut CycleState::default(), &pod(json!({})), &[]);
        assert_eq!(status.code, Code::Skip);
    }

    #[test]
    fn nothing_matching_scores_zero_everywhere() {
        let p = pod(preferred(json!([{"weight": 5, "preference": {"matchFields":
            [{"key": "metadata.name", "operator": "In", "values": ["elsewhere"]}]}}])));
        let nodes = [node("n1", json!({})), node("n2", json!({}))];
        assert_eq!(scores(&NodeAffinity::default(), &p, &nodes).unwrap(), vec![0, 0]);
    }

    #[test]
    fn an_invalid_preferred_term_is_an_error() {
        let p = pod(preferred(json!([{"weight": 1, "preference": {"matchExpressions":
            [{"key": "a", "operator": "Gt", "values": ["x"]}]}}])));
        let err = scores(&NodeAffinity::default(), &p, &[node("n", json!({}))]).unwrap_err();
        assert_eq!(err.code, Code::Error);
        assert_eq!(
            err.reasons,
            vec![
                "[0].matchExpressions[0].values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must \
                  be an integer"
                    .to_string()
            ]
        );
    }

    #[test]
    fn added_preferred_terms_add_to_the_pods_own() {
        let plugin = added(json!({"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 3, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}]}));
        let p = pod(preferred(json!([
            {"weight": 1, "preference": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}}])));
        let nodes = [node("n1", json!({"a": ""})), node("n2", json!({"a": "", "b": ""})), node("n3", json!({}))];
        assert_eq!(scores(&plugin, &p, &nodes).unwrap(), vec![75, 100, 0]);
        // A pod without preferences is still scored by the added terms.
        assert_eq!(scores(&plugin, &pod(json!({})), &nodes).unwrap(), vec![100, 100, 0]);
    }

    #[test]
    fn default_normalization_scales_and_reverses() {
        let mut s = vec![NodeScore { node: "a".into(), score: 1 }, NodeScore { node: "b".into(), score: 3 }];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s.iter().map(|s| s.score).collect::<Vec<_>>(), vec![67, 0]);
        let mut zeros = vec![NodeScore { node: "a".into(), score: 0 }];
        default_normalize_score(100, true, &mut zeros);
        assert_eq!(zeros[0].score, 100);
    }

    #[test]
    fn a_profile_reports_the_affinity_reasons() {
        let plugin = Arc::new(NodeAffinity::default());
        let plugins = PluginSet {
            pre_filter: vec![plugin.clone()],
            filter: vec![plugin.clone()],
            pre_score: vec![plugin.clone()],
            score: vec![(plugin, 2)],
            ..Default::default()
        };
        let profile = Profile { scheduler_name: "default-scheduler".into(), plugins };
        let nodes = ["n1", "n2", "n3"].map(|n| Arc::new(node(n, json!({"zone": n}))));
        let snapshot = Snapshot::new(nodes.to_vec());
        let p = pod(json!({"nodeSelector": {"zone": "elsewhere"}}));
        let (decision, _) = profile.schedule(&p, &snapshot, 0);
        let Decision::Unschedulable { message, .. } = decision else { panic!("placed") };
        assert_eq!(message, "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.");

        let mut spec = preferred(json!([{"weight": 1, "preference": {"matchExpressions":
            [{"key": "zone", "operator": "In", "values": ["n2"]}]}}]));
        spec["nodeSelector"] = json!({});
        let (decision, _) = profile.schedule(&pod(spec), &snapshot, 0);
        let Decision::Place { node, explanation } = decision else { panic!("not placed") };
        assert_eq!(node, "n2");
        assert_eq!(explanation.scores[0].parts, vec![(NAME, 200)]);
    }
}
