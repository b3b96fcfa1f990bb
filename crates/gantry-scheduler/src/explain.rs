//! `gantry why`: a pod's last scheduling attempt as a stable JSON document (`SchedulingAttempt`,
//! `gantry.dev/v1alpha1`), and its rendering for people.
//!
//! One definition serves both sides: the server serializes [`SchedulingAttempt`] from a runtime
//! [`Attempt`], the CLI deserializes the same type and renders it. Field names are part of the document's
//! contract; a change that renames or removes one needs a new `apiVersion`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::framework::Code;
use crate::runtime::{Attempt, AttemptResult};

/// The document's `kind`.
pub const KIND: &str = "SchedulingAttempt";

/// The document's `apiVersion`.
pub const API_VERSION: &str = "gantry.dev/v1alpha1";

/// A pod's last scheduling attempt, as served at `/gantry/v1/namespaces/{ns}/pods/{name}/scheduling`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingAttempt {
    /// Always [`KIND`].
    pub kind: String,
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// The pod.
    pub pod: PodRef,
    /// When the scheduling cycle ran.
    pub time: jiff::Timestamp,
    /// What the cycle decided.
    pub result: Outcome,
    /// How many nodes there were, were looked at, and were found feasible.
    pub nodes: NodeCounts,
    /// Rejected nodes, grouped by the verdict that rejected them, largest group first.
    pub rejected: Vec<RejectedGroup>,
    /// The best-scored feasible nodes, highest first; at most [`crate::runtime::SCORES_KEPT`], so fewer than
    /// `nodes.feasible` in large clusters.
    pub scores: Vec<NodeScore>,
}

/// Which pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// What an attempt decided: `{"placed":{"node":..}}` or `{"unschedulable":{"message":..,"nominatedNode":..}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The pod was assigned to a node (its binding follows the attempt, and may still fail).
    Placed {
        /// The node.
        node: String,
    },
    /// No node fits.
    Unschedulable {
        /// The message given to the pod's `PodScheduled` condition.
        message: String,
        /// The node preemption nominated, if any.
        #[serde(rename = "nominatedNode", default, skip_serializing_if = "Option::is_none")]
        nominated_node: Option<String>,
    },
}

/// Node counts of an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounts {
    /// Nodes in the cluster at the time.
    pub total: usize,
    /// Nodes the filters looked at: in large clusters the search stops once enough feasible nodes are found,
    /// and the others have no verdict.
    pub evaluated: usize,
    /// Feasible nodes found.
    pub feasible: usize,
}

/// Nodes rejected by the same verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedGroup {
    /// The plugin that rejected them.
    pub plugin: String,
    /// The verdict's code: `Unschedulable` (preempting pods there may help) or `UnschedulableAndUnresolvable`.
    pub code: String,
    /// The reasons, in kube-scheduler's words (e.g. `Insufficient cpu`).
    pub reasons: Vec<String>,
    /// The nodes.
    pub nodes: Vec<String>,
}

/// A feasible node's score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeScore {
    /// The node.
    pub node: String,
    /// The sum of the weighted plugin scores.
    pub total: i64,
    /// Each scoring plugin's weighted score.
    pub plugins: BTreeMap<String, i64>,
}

/// The name a verdict's code has in the document.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Success => "Success",
        Code::Unschedulable => "Unschedulable",
        Code::UnschedulableAndUnresolvable => "UnschedulableAndUnresolvable",
        Code::Skip => "Skip",
        Code::Error => "Error",
    }
}

impl SchedulingAttempt {
    /// The document for `attempt`, the last attempt of pod `namespace/name`.
    pub fn from_attempt(namespace: &str, name: &str, attempt: &Attempt) -> SchedulingAttempt {
        let result = match &attempt.result {
            AttemptResult::Placed { node } => Outcome::Placed { node: node.clone() },
            AttemptResult::Unschedulable { message, nominated } => {
                Outcome::Unschedulable { message: message.clone(), nominated_node: nominated.clone() }
            }
        };
        let rejected = attempt
            .rejected
            .iter()
            .map(|(status, nodes)| RejectedGroup {
                plugin: status.plugin.to_string(),
                code: code_name(status.code).to_string(),
                reasons: status.reasons.clone(),
                nodes: nodes.iter().map(|n| n.to_string()).collect(),
            })
            .collect();
        let scores = attempt
            .scores
            .iter()
            .map(|s| NodeScore {
                node: s.node.to_string(),
                total: s.total,
                plugins: s.parts.iter().map(|(plugin, score)| (plugin.to_string(), *score)).collect(),
            })
            .collect();
        SchedulingAttempt {
            kind: KIND.to_string(),
            api_version: API_VERSION.to_string(),
            pod: PodRef { namespace: namespace.to_string(), name: name.to_string() },
            time: attempt.time,
            result,
            nodes: NodeCounts {
                total: attempt.total_nodes,
                evaluated: attempt.evaluated_nodes,
                feasible: attempt.feasible_nodes,
            },
            rejected,
            scores,
        }
    }

    /// The document as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        // Every map key is a string and every number an integer, so serializing cannot fail; were it ever to,
        // the client gets a document it refuses to parse rather than a server that panics.
        serde_json::to_value(self).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "a scheduling attempt could not be serialized");
            serde_json::Value::Null
        })
    }

    /// Parses a document, checking that it is one.
    pub fn parse(text: &str) -> Result<SchedulingAttempt, ParseError> {
        let doc: SchedulingAttempt = serde_json::from_str(text).map_err(ParseError::Json)?;
        if doc.kind != KIND || doc.api_version != API_VERSION {
            return Err(ParseError::NotAnAttempt { kind: doc.kind, api_version: doc.api_version });
        }
        Ok(doc)
    }

    /// The attempt for people: the outcome, the rejected nodes by verdict, and the best scores.
    pub fn render(&self, options: &RenderOptions) -> String {
        let mut out = String::new();
        let pod = format!("{}/{}", self.pod.namespace, self.pod.name);
        let time = self.time.strftime("%Y-%m-%dT%H:%M:%SZ");
        match &self.result {
            Outcome::Placed { node } => {
                let _ = writeln!(out, "Pod {pod}: placed on {node} at {time}");
            }
            Outcome::Unschedulable { message, nominated_node } => {
                let _ = writeln!(out, "Pod {pod}: unschedulable at {time}");
                let _ = writeln!(out, "  {message}");
                if let Some(node) = nominated_node {
                    let _ = writeln!(
                        out,
                        "Preemption nominated {node}: lower-priority pods there are being evicted to make room."
                    );
                }
            }
        }
        let n = &self.nodes;
        let rejected: usize = self.rejected.iter().map(|g| g.nodes.len()).sum();
        if n.evaluated < n.total {
            let _ = writeln!(
                out,
                "Looked at {} of {} nodes (the search stops once enough feasible nodes are found); {} feasible, \
                 {rejected} rejected.",
                n.evaluated, n.total, n.feasible
            );
        } else {
            let _ = writeln!(out, "Looked at all {} nodes: {} feasible, {rejected} rejected.", n.total, n.feasible);
        }

        if !self.rejected.is_empty() {
            out.push('\n');
            let mut table = vec![vec!["REJECTED BY".to_string(), "NODES".to_string(), "REASON".to_string()]];
            for group in &self.rejected {
                table.push(vec![group.plugin.clone(), group.nodes.len().to_string(), group.reasons.join(", ")]);
            }
            write_table(&mut out, &table);
        }

        if options.nodes && rejected > 0 {
            out.push('\n');
            let mut rows: Vec<Vec<String>> = self
                .rejected
                .iter()
                .flat_map(|g| {
                    g.nodes.iter().map(move |node| vec![node.clone(), g.plugin.clone(), g.reasons.join(", ")])
                })
                .collect();
            rows.sort();
            let mut table = vec![vec!["NODE".to_string(), "PLUGIN".to_string(), "REASON".to_string()]];
            table.extend(rows);
            write_table(&mut out, &table);
        }

        if !self.scores.is_empty() {
            out.push('\n');
            let plugins: Vec<&String> = {
                let mut names: Vec<&String> = self.scores.iter().flat_map(|s| s.plugins.keys()).collect();
                names.sort();
                names.dedup();
                names
            };
            let mut header = vec!["NODE".to_string(), "SCORE".to_string()];
            header.extend(plugins.iter().map(|p| p.to_string()));
            let mut table = vec![header];
            for score in self.scores.iter().take(options.top) {
                let mut row = vec![score.node.clone(), score.total.to_string()];
                row.extend(plugins.iter().map(|p| score.plugins.get(*p).map_or(String::new(), i64::to_string)));
                table.push(row);
            }
            write_table(&mut out, &table);
            let shown = self.scores.len().min(options.top);
            if shown < n.feasible {
                let more = if shown < self.scores.len() {
                    "--top N for more".to_string()
                } else {
                    format!("only the best {} scores are kept", self.scores.len())
                };
                let _ = writeln!(out, "(the best {shown} of {} feasible nodes; {more})", n.feasible);
            }
        }
        out
    }
}

/// What [`SchedulingAttempt::render`] shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// How many of the best-scored nodes to list.
    pub top: usize,
    /// Whether to list every rejected node on a line of its own, with the plugin and reason.
    pub nodes: bool,
}

impl Default for RenderOptions {
    fn default() -> RenderOptions {
        RenderOptions { top: 10, nodes: false }
    }
}

/// Failures reading a scheduling attempt document.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or not of the document's shape.
    #[error("not a scheduling attempt: {0}")]
    Json(#[source] serde_json::Error),
    /// JSON of the right shape but another kind or version.
    #[error("expected {KIND} {API_VERSION}, got {kind} {api_version}")]
    NotAnAttempt {
        /// The `kind` found.
        kind: String,
        /// The `apiVersion` found.
        api_version: String,
    },
}

/// Writes rows as columns separated by two spaces, without trailing blanks.
fn write_table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 < row.len() {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::framework::{ScoredNode, Status};

    fn status(plugin: &'static str, code: Code, reason: &str) -> Status {
        let mut status = Status::new(code, [reason]);
        status.plugin = plugin;
        status
    }

    fn placed() -> Attempt {
        Attempt {
            time: "2026-11-27T22:10:05.5Z".parse().unwrap(),
            result: AttemptResult::Placed { node: "node-7".into() },
            total_nodes: 5000,
            evaluated_nodes: 600,
            rejected: vec![
                (
                    status("NodeResourcesFit", Code::Unschedulable, "Insufficient cpu"),
                    vec![Arc::from("node-2"), Arc::from("node-1")],
                ),
                (
                    status(
                        "TaintToleration",
                        Code::UnschedulableAndUnresolvable,
                        "node(s) had untolerated taint {dedicated: gpu}",
                    ),
                    vec![Arc::from("node-3")],
                ),
            ],
            scores: vec![
                ScoredNode {
                    node: Arc::from("node-7"),
                    total: 190,
                    parts: vec![("NodeResourcesFit", 90), ("TaintToleration", 100)],
                },
                ScoredNode {
                    node: Arc::from("node-8"),
                    total: 150,
                    parts: vec![("NodeResourcesFit", 50), ("TaintToleration", 100)],
                },
            ],
            feasible_nodes: 500,
        }
    }

    #[test]
    fn the_document_has_the_documented_shape() {
        let json = SchedulingAttempt::from_attempt("default", "web-1", &placed()).to_json();
        assert_eq!(json["kind"], "SchedulingAttempt");
        assert_eq!(json["apiVersion"], "gantry.dev/v1alpha1");
        assert_eq!(json["pod"], serde_json::json!({"namespace": "default", "name": "web-1"}));
        assert_eq!(json["time"], "2026-11-27T22:10:05.5Z");
        assert_eq!(json["result"], serde_json::json!({"placed": {"node": "node-7"}}));
        assert_eq!(json["nodes"], serde_json::json!({"total": 5000, "evaluated": 600, "feasible": 500}));
        assert_eq!(
            json["rejected"][1],
            serde_json::json!({"plugin": "TaintToleration", "code": "UnschedulableAndUnresolvable",
                               "reasons": ["node(s) had untolerated taint {dedicated: gpu}"], "nodes": ["node-3"]})
        );
        assert_eq!(
            json["scores"][0],
            serde_json::json!({"node": "node-7", "total": 190,
                               "plugins": {"NodeResourcesFit": 90, "TaintToleration": 100}})
        );
    }

    #[test]
    fn an_unschedulable_attempt_names_the_nominated_node_only_when_there_is_one() {
        let mut attempt = placed();
        attempt.result = AttemptResult::Unschedulable { message: "0/1 nodes are available".into(), nominated: None };
        let json = SchedulingAttempt::from_attempt("d", "p", &attempt).to_json();
        assert_eq!(json["result"], serde_json::json!({"unschedulable": {"message": "0/1 nodes are available"}}));
        attempt.result = AttemptResult::Unschedulable { message: "m".into(), nominated: Some("node-3".into()) };
        let json = SchedulingAttempt::from_attempt("d", "p", &attempt).to_json();
        assert_eq!(json["result"]["unschedulable"]["nominatedNode"], "node-3");
    }

    #[test]
    fn a_served_document_parses_back_to_the_same_attempt() {
        let doc = SchedulingAttempt::from_attempt("default", "web-1", &placed());
        let text = serde_json::to_string(&doc.to_json()).unwrap();
        assert_eq!(SchedulingAttempt::parse(&text).unwrap(), doc);
    }

    #[test]
    fn parsing_refuses_other_kinds_and_other_shapes() {
        let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure"}"#;
        assert!(matches!(SchedulingAttempt::parse(status), Err(ParseError::Json(_))));
        let mut doc = SchedulingAttempt::from_attempt("default", "web-1", &placed()).to_json();
        doc["apiVersion"] = "gantry.dev/v2".into();
        let err = SchedulingAttempt::parse(&doc.to_string()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected SchedulingAttempt gantry.dev/v1alpha1, got SchedulingAttempt gantry.dev/v2"
        );
    }

    #[test]
    fn rendering_shows_the_outcome_the_verdicts_and_the_best_scores() {
        let doc = SchedulingAttempt::from_attempt("default", "web-1", &placed());
        let text = doc.render(&RenderOptions::default());
        let expected = "\
Pod default/web-1: placed on node-7 at 2026-11-27T22:10:05Z
Looked at 600 of 5000 nodes (the search stops once enough feasible nodes are found); 500 feasible, 3 rejected.

REJECTED BY       NODES  REASON
NodeResourcesFit  2      Insufficient cpu
TaintToleration   1      node(s) had untolerated taint {dedicated: gpu}

NODE    SCORE  NodeResourcesFit  TaintToleration
node-7  190    90                100
node-8  150    50                100
(the best 2 of 500 feasible nodes; only the best 2 scores are kept)
";
        assert_eq!(text, expected);
    }

    #[test]
    fn rendering_with_nodes_lists_each_rejected_node_and_top_limits_the_scores() {
        let doc = SchedulingAttempt::from_attempt("default", "web-1", &placed());
        let text = doc.render(&RenderOptions { top: 1, nodes: true });
        assert!(
            text.contains(
                "NODE    PLUGIN            REASON\nnode-1  NodeResourcesFit  Insufficient cpu\n\
                 node-2  NodeResourcesFit  Insufficient cpu\nnode-3  TaintToleration   node(s) had untolerated taint"
            ),
            "{text}"
        );
        assert!(text.contains("node-7  190"), "{text}");
        assert!(!text.contains("node-8  150"), "{text}");
    }

    #[test]
    fn rendering_an_unschedulable_pod_gives_the_message_and_the_nomination() {
        let mut attempt = placed();
        attempt.total_nodes = 3;
        attempt.evaluated_nodes = 3;
        attempt.feasible_nodes = 0;
        attempt.scores.clear();
        attempt.result = AttemptResult::Unschedulable {
            message: "0/3 nodes are available: 2 Insufficient cpu.".into(),
            nominated: Some("node-2".into()),
        };
        let text = SchedulingAttempt::from_attempt("default", "big", &attempt).render(&RenderOptions::default());
        assert!(text.starts_with("Pod default/big: unschedulable at 2026-11-27T22:10:05Z\n  0/3 nodes are available"));
        assert!(text.contains("Preemption nominated node-2"), "{text}");
        assert!(text.contains("Looked at all 3 nodes: 0 feasible, 3 rejected."), "{text}");
        assert!(!text.contains("SCORE"), "{text}");
    }
}
