//! The pod garbage collector: removes pods nobody else will, as kube-controller-manager's podgc controller
//! does, every period (20 s by default):
//!
//! - terminated pods (Succeeded or Failed) beyond `terminated_pod_gc_threshold`, evicted ones first, then
//!   oldest first;
//! - pods bound to a node that does not exist: a node name the informer does not know is quarantined, and
//!   only if a fresh read still finds no such Node once the quarantine is over are its pods marked Failed
//!   (with a `DisruptionTarget` condition) and force-deleted;
//! - pods being deleted that were never scheduled, force-deleted.
//!
//! Force deletion (grace period 0) is what a node agent would confirm; these pods have no agent to do it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::informer::Informer;

/// Terminated pods kept, by default (kube's `--terminated-pod-gc-threshold`).
pub const DEFAULT_TERMINATED_POD_GC_THRESHOLD: usize = 12500;

/// How often the collector runs, by default.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(20);

/// How long a node must be missing before its pods are deleted, by default: a Node just created may not be
/// in the informer yet.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(40);

/// Deletions in flight at once.
const PARALLEL_DELETES: usize = 16;

/// What can fail when removing one pod.
#[derive(Debug, thiserror::Error)]
#[error("{what} pod {namespace}/{name}: {source}")]
pub struct GcError {
    /// The call.
    pub what: &'static str,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub name: String,
    /// The cause.
    #[source]
    pub source: kube::Error,
}

/// The collector. Set the public fields before [`PodGcController::run`].
pub struct PodGcController {
    client: Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    period: Duration,
    /// Terminated pods kept; beyond that the oldest go. 0 keeps them all.
    pub terminated_pod_gc_threshold: usize,
    /// How long a node must be missing before its pods go.
    pub quarantine: Duration,
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn is_terminated(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn is_evicted(pod: &Pod) -> bool {
    phase(pod) == Some("Failed") && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// The terminated pods to delete so that `threshold` remain: evicted ones first, then by age, then by name.
pub fn terminated_to_delete(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    let mut terminated: Vec<Arc<Pod>> = pods.iter().filter(|p| is_terminated(p)).cloned().collect();
    if terminated.len() <= threshold {
        return Vec::new();
    }
    let excess = terminated.len() - threshold;
    terminated.sort_by(|a, b| {
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        is_evicted(b)
            .cmp(&is_evicted(a))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    terminated.truncate(excess);
    terminated
}

impl PodGcController {
    /// A collector running every `period`, with kube's defaults for the threshold and the quarantine.
    pub fn new(client: Client, pods: Arc<Informer<Pod>>, nodes: Arc<Informer<Node>>, period: Duration) -> Self {
        PodGcController {
            client,
            pods,
            nodes,
            period,
            terminated_pod_gc_threshold: DEFAULT_TERMINATED_POD_GC_THRESHOLD,
            quarantine: DEFAULT_QUARANTINE,
        }
    }

    /// Collects every period until `shutdown` (after the informers have synced).
    pub async fn run(self, shutdown: CancellationToken) {
        self.pods.wait_synced(&shutdown).await;
        self.nodes.wait_synced(&shutdown).await;
        // Node names missing from the informer, and since when.
        let mut missing: HashMap<String, Instant> = HashMap::new();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            self.collect(&mut missing).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.period) => {}
            }
        }
    }

    /// One pass over the pods.
    async fn collect(&self, missing: &mut HashMap<String, Instant>) {
        let pods = self.pods.list();
        if self.terminated_pod_gc_threshold > 0 {
            let victims = terminated_to_delete(&pods, self.terminated_pod_gc_threshold);
            if !victims.is_empty() {
                tracing::info!(count = victims.len(), "pod gc: deleting terminated pods beyond the threshold");
            }
            self.delete_all(victims, None).await;
        }
        let gone = self.missing_nodes(&pods, missing).await;
        let orphans: Vec<Arc<Pod>> =
            pods.iter().filter(|p| node_name(p).is_some_and(|n| gone.contains(n))).cloned().collect();
        for pod in &orphans {
            tracing::info!(pod = ?pod.metadata.name, node = ?node_name(pod), "pod gc: the pod's node is gone");
        }
        self.delete_all(orphans, Some("PodGC: node no longer exists")).await;
        let unscheduled: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_none())
            .cloned()
            .collect();
        self.delete_all(unscheduled, None).await;
    }

    /// Nodes that pods are bound to, missing from the informer for the whole quarantine and confirmed
    /// missing by a fresh read.
    async fn missing_nodes(&self, pods: &[Arc<Pod>], missing: &mut HashMap<String, Instant>) -> HashSet<String> {
        let now = Instant::now();
        let unknown: HashSet<&str> =
            pods.iter().filter_map(|p| node_name(p)).filter(|n| self.nodes.get("", n).is_none()).collect();
        missing.retain(|name, _| unknown.contains(name.as_str()));
        for name in unknown {
            missing.entry(name.to_string()).or_insert(now);
        }
        let due: Vec<String> = missing
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= self.quarantine)
            .map(|(n, _)| n.clone())
            .collect();
        let api: Api<Node> = Api::all(self.client.clone());
        let mut gone = HashSet::new();
        for name in due {
            match api.get_opt(&name).await {
                Ok(None) => {
                    gone.insert(name);
                }
                // The informer lags: the node exists after all; it starts a new quarantine if it goes missing.
                Ok(Some(_)) => {
                    missing.remove(&name);
                }
                Err(err) => tracing::warn!(node = name, error = %err, "pod gc: could not read a node; trying later"),
            }
        }
        gone
    }

    async fn delete_all(&self, pods: Vec<Arc<Pod>>, condition: Option<&'static str>) {
        futures::stream::iter(pods)
            .for_each_concurrent(PARALLEL_DELETES, |pod| async move {
                if let Err(err) = self.fail_and_delete(&pod, condition).await {
                    tracing::warn!(error = %err, "pod gc: could not delete a pod");
                }
            })
            .await;
    }

    /// Marks the pod Failed (no node agent will, and its owner should see it end), then force-deletes it.
    async fn fail_and_delete(&self, pod: &Pod, condition: Option<&str>) -> Result<(), GcError> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let error = |what, source| GcError { what, namespace: namespace.to_string(), name: name.to_string(), source };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        if !is_terminated(pod) {
            let mut status = json!({"phase": "Failed"});
            if let Some(message) = condition {
                status["conditions"] = json!([{"type": "DisruptionTarget", "status": "True",
                    "reason": "DeletionByPodGC", "message": message,
                    "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}]);
            }
            let patch = json!({"status": status});
            match api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(source) => return Err(error("marking failed", source)),
            }
        }
        let params = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(error("deleting", source)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(name: &str, phase: &str, created: &str, reason: Option<&str>) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created},
                "status": {"phase": phase, "reason": reason}}))
            .unwrap(),
        )
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect()
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_evicted_first_then_oldest_first() {
        let pods = vec![
            pod("new", "Succeeded", "2026-01-03T00:00:00Z", None),
            pod("running", "Running", "2026-01-01T00:00:00Z", None),
            pod("old", "Failed", "2026-01-01T00:00:00Z", None),
            pod("evicted", "Failed", "2026-01-04T00:00:00Z", Some("Evicted")),
            pod("middle-b", "Succeeded", "2026-01-02T00:00:00Z", None),
            pod("middle-a", "Succeeded", "2026-01-02T00:00:00Z", None),
        ];
        assert_eq!(names(&terminated_to_delete(&pods, 1)), vec!["evicted", "old", "middle-a", "middle-b"]);
        assert!(terminated_to_delete(&pods, 5).is_empty());
    }
}
