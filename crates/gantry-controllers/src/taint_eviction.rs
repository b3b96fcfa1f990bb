//! The taint eviction controller: deletes pods from nodes with NoExecute taints they do not tolerate, as
//! kube-controller-manager's does.
//!
//! - A pod that does not tolerate every NoExecute taint of its node is deleted at once.
//! - A pod tolerating them all, some with `tolerationSeconds`, is deleted that long after the taint was added
//!   (its `timeAdded`; when the taint has none, from when this controller first planned the eviction). For
//!   each taint the first toleration matching it counts, as in kube; the earliest deadline wins.
//! - A pod tolerating them without `tolerationSeconds` stays; a taint removed before the deadline cancels it.
//! - Deletion is kube's: the `DisruptionTarget` condition first, then a DELETE with the pod's own grace
//!   period. A pod bound to a node waits for its node agent to confirm; on an unreachable node it stays
//!   terminating until the node comes back or is deleted.
//!
//! Deadlines are re-read from the current pod and node on every reconcile, so a changed toleration or taint
//! takes effect at once and a stale timer does nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType, reference_to};
use crate::informer::{Change, Informer};
use crate::queue::{Requeue, WorkQueue, run_workers};

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{what} of pod {key}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The pod.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// What becomes of a pod on its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It stays (no NoExecute taint, or all tolerated for ever).
    Stays,
    /// It is deleted at this time (now or in the past: at once).
    EvictAt(jiff::Timestamp),
}

/// Whether `toleration` tolerates `taint` (kube's `ToleratesTaint`): an empty effect or key matches any,
/// `Exists` any value, `Equal` (the default) the same value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if toleration.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match toleration.operator.as_deref() {
        None | Some("" | "Equal") => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        Some("Exists") => true,
        Some(_) => false,
    }
}

/// The node's NoExecute taints.
pub fn no_execute_taints(node: &Node) -> Vec<&Taint> {
    node.spec.iter().flat_map(|s| s.taints.iter().flatten()).filter(|t| t.effect == "NoExecute").collect()
}

/// What becomes of a pod with `tolerations` on a node with the NoExecute `taints`; `planned` stands for the
/// time a taint was added when it does not say.
pub fn verdict(taints: &[&Taint], tolerations: &[Toleration], planned: jiff::Timestamp) -> Verdict {
    let mut deadline: Option<jiff::Timestamp> = None;
    for taint in taints {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Verdict::EvictAt(planned);
        };
        let Some(seconds) = toleration.toleration_seconds else { continue };
        let added = taint.time_added.as_ref().map_or(planned, |t| t.0);
        let at = added.checked_add(jiff::SignedDuration::from_secs(seconds.max(0))).unwrap_or(added);
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    deadline.map_or(Verdict::Stays, Verdict::EvictAt)
}

/// The controller.
pub struct TaintEvictionController {
    client: Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    queue: Arc<WorkQueue>,
    /// Pods with an eviction planned, and since when (kube's scheduled work).
    planned: Mutex<HashMap<String, jiff::Timestamp>>,
    events: EventSink,
}

fn key_of(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

impl TaintEvictionController {
    /// The controller, following pods and nodes through the shared informers.
    pub fn new(
        client: Client,
        pods: Arc<Informer<Pod>>,
        nodes: Arc<Informer<Node>>,
        events: EventSink,
    ) -> Arc<TaintEvictionController> {
        let controller = Arc::new(TaintEvictionController {
            client,
            pods: Arc::clone(&pods),
            nodes: Arc::clone(&nodes),
            queue: WorkQueue::new(),
            planned: Mutex::default(),
            events,
        });
        let queue = Arc::clone(&controller.queue);
        pods.on_change(move |change| match change {
            Change::Added(pod) if node_of(pod).is_some() => queue.add(key_of(pod)),
            Change::Updated { old, new }
                if node_of(new).is_some()
                    && (node_of(old) != node_of(new)
                        || old.spec.as_ref().map(|s| &s.tolerations) != new.spec.as_ref().map(|s| &s.tolerations)) =>
            {
                queue.add(key_of(new));
            }
            Change::Deleted(pod) => queue.add(key_of(pod)),
            _ => {}
        });
        let weak = Arc::downgrade(&controller);
        nodes.on_change(move |change| {
            let Some(controller) = weak.upgrade() else { return };
            let node = match change {
                Change::Added(node) if !no_execute_taints(node).is_empty() => node,
                Change::Updated { old, new } if no_execute_taints(old) != no_execute_taints(new) => new,
                _ => return,
            };
            let name = node.metadata.name.as_deref().unwrap_or("");
            for pod in controller.pods.by_index(crate::pods::BY_NODE, name) {
                controller.queue.add(key_of(&pod));
            }
        });
        controller
    }

    /// Evicts pods with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.pods.wait_synced(&shutdown).await;
        self.nodes.wait_synced(&shutdown).await;
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("taint-eviction", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }

    /// Forgets a planned eviction, saying so.
    fn unplan(&self, key: &str, pod: &Pod) {
        let was_planned = self.planned.lock().unwrap_or_else(PoisonError::into_inner).remove(key).is_some();
        if was_planned {
            self.events.publish(
                reference_to(pod),
                EventType::Normal,
                "TaintManagerEviction",
                "Cancel",
                format!("Cancelling deletion of Pod {key}"),
            );
        }
    }

    /// One look at the pod `namespace/name`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let pod = self.pods.get(namespace, name);
        let Some(pod) = pod.filter(|p| p.metadata.deletion_timestamp.is_none()) else {
            self.planned.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
            return Ok(Requeue::No);
        };
        let node = node_of(&pod).and_then(|n| self.nodes.get("", n));
        let taints = node.as_deref().map(no_execute_taints).unwrap_or_default();
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
        let now = jiff::Timestamp::now();
        let planned = self.planned.lock().unwrap_or_else(PoisonError::into_inner).get(key).copied();
        match verdict(&taints, tolerations, planned.unwrap_or(now)) {
            Verdict::Stays => {
                self.unplan(key, &pod);
                Ok(Requeue::No)
            }
            Verdict::EvictAt(at) if at > now => {
                self.planned.lock().unwrap_or_else(PoisonError::into_inner).entry(key.to_string()).or_insert(now);
                let wait = now.duration_until(at).unsigned_abs();
                // Woken a little late rather than early: the work queue's timer is not exact.
                Ok(Requeue::After(wait + Duration::from_millis(10)))
            }
            Verdict::EvictAt(_) => {
                self.evict(key, &pod).await?;
                self.planned.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
                Ok(Requeue::No)
            }
        }
    }

    async fn evict(&self, key: &str, pod: &Pod) -> Result<(), SyncError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let api_error = |what: &'static str| move |source| SyncError::Api { what, key: key.to_string(), source };
        tracing::info!(pod = key, "taint eviction: deleting a pod that does not tolerate its node's taints");
        self.events.publish(
            reference_to(pod),
            EventType::Normal,
            "TaintManagerEviction",
            "Delete",
            format!("Marking for deletion Pod {key}"),
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let condition = json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": jiff::Timestamp::now()});
        let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": {"conditions": [condition]}});
        match api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return Ok(()),
            Err(source) => return Err(api_error("marking the disruption")(source)),
        }
        // The pod's own grace period, as kube's controller deletes: its node agent confirms the deletion.
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(api_error("deleting")(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn taint(key: &str, value: Option<&str>, added: Option<&str>) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: "NoExecute".into(),
            time_added: added.map(|t| Time(t.parse().unwrap())),
        }
    }

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn at(t: &str) -> jiff::Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn tolerations_match_by_key_value_operator_and_effect() {
        let t = taint("k", Some("v"), None);
        assert!(tolerates(&toleration(json!({"key": "k", "value": "v"})), &t));
        assert!(!tolerates(&toleration(json!({"key": "k", "value": "w"})), &t));
        assert!(tolerates(&toleration(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})), &t));
        assert!(!tolerates(&toleration(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})), &t));
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t), "an empty key with Exists tolerates all");
        assert!(!tolerates(&toleration(json!({"key": "other", "operator": "Exists"})), &t));
    }

    #[test]
    fn an_untolerated_taint_evicts_at_once() {
        let t = taint("k", None, Some("2026-01-01T00:00:00Z"));
        let planned = at("2026-01-01T00:00:05Z");
        assert_eq!(verdict(&[&t], &[], planned), Verdict::EvictAt(planned));
    }

    #[test]
    fn toleration_seconds_count_from_when_the_taint_was_added() {
        let t = taint("k", None, Some("2026-01-01T00:00:00Z"));
        let tolerations = [toleration(json!({"key": "k", "operator": "Exists", "tolerationSeconds": 30}))];
        assert_eq!(
            verdict(&[&t], &tolerations, at("2026-01-01T00:00:10Z")),
            Verdict::EvictAt(at("2026-01-01T00:00:30Z"))
        );
        let untimed = taint("k", None, None);
        assert_eq!(
            verdict(&[&untimed], &tolerations, at("2026-01-01T00:00:10Z")),
            Verdict::EvictAt(at("2026-01-01T00:00:40Z")),
            "a taint without timeAdded counts from when the eviction was planned"
        );
    }

    #[test]
    fn the_earliest_deadline_wins_and_tolerating_for_ever_stays() {
        let a = taint("a", None, Some("2026-01-01T00:00:00Z"));
        let b = taint("b", None, Some("2026-01-01T00:00:20Z"));
        let tolerations = [
            toleration(json!({"key": "a", "operator": "Exists", "tolerationSeconds": 60})),
            toleration(json!({"key": "b", "operator": "Exists", "tolerationSeconds": 5})),
        ];
        let planned = at("2026-01-01T00:00:30Z");
        assert_eq!(verdict(&[&a, &b], &tolerations, planned), Verdict::EvictAt(at("2026-01-01T00:00:25Z")));
        let forever = [toleration(json!({"operator": "Exists"}))];
        assert_eq!(verdict(&[&a, &b], &forever, planned), Verdict::Stays);
        assert_eq!(verdict(&[], &[], planned), Verdict::Stays, "no taint, nothing to do");
    }
}
