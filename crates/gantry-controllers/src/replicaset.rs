//! The ReplicaSet controller: keeps `spec.replicas` pods matching each ReplicaSet, as kube-controller-manager
//! does.
//!
//! - Pods are created from the template (named from `generateName` `<rs>-`, with a controller owner
//!   reference that blocks owner deletion), in batches of 1, 2, 4, … so that a failing template fails fast,
//!   at most 500 per sync.
//! - Orphans matching the selector are adopted; owned pods that stop matching are released.
//! - Surplus pods are deleted in kube's order (unscheduled, pending, not ready, doubled up on a node, ready
//!   for less time, restarting, newer first).
//! - Expectations keep a sync from acting before the informer shows its own creates and deletes.
//! - Status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (ready for minReadySeconds),
//!   observedGeneration, and the ReplicaFailure condition when creating or deleting fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use gantry_api::selector::LabelSelector;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType, reference_to};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::meta::labels;
use crate::pods::{controller_ref, deletion_order, is_active, is_available, is_ready};
use crate::queue::{Requeue, WorkQueue, run_workers};

/// Pods created or deleted per sync, at most (kube's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Creating pods failed.
    #[error("creating pods for {key}: {source}")]
    Create {
        /// The ReplicaSet.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting pods failed.
    #[error("deleting pods of {key}: {source}")]
    Delete {
        /// The ReplicaSet.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Adopting or releasing pods failed.
    #[error("claiming pods for {key}: {source}")]
    Claim {
        /// The ReplicaSet.
        key: String,
        /// The cause.
        #[source]
        source: crate::claim::ClaimError,
    },
    /// Another API call failed.
    #[error("{what} for {key}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The ReplicaSet.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// The controller.
pub struct ReplicaSetController {
    client: Client,
    pods: Arc<Informer<Pod>>,
    replicasets: Arc<Informer<ReplicaSet>>,
    queue: Arc<WorkQueue>,
    expectations: Arc<Expectations>,
    events: EventSink,
}

fn key_of(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn selector_of(rs: &ReplicaSet) -> Option<LabelSelector> {
    LabelSelector::from_k8s(rs.spec.as_ref().map(|s| &s.selector)).ok().filter(|s| !s.is_nothing())
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

impl ReplicaSetController {
    /// The controller, following changes through the shared informers.
    pub fn new(
        client: Client,
        pods: Arc<Informer<Pod>>,
        replicasets: Arc<Informer<ReplicaSet>>,
        events: EventSink,
    ) -> Arc<ReplicaSetController> {
        let controller = Arc::new(ReplicaSetController {
            client,
            pods: Arc::clone(&pods),
            replicasets: Arc::clone(&replicasets),
            queue: WorkQueue::new(),
            expectations: Arc::new(Expectations::new()),
            events,
        });
        let (queue, expectations) = (Arc::clone(&controller.queue), Arc::clone(&controller.expectations));
        replicasets.on_change(move |change| match change {
            Change::Added(rs) | Change::Updated { new: rs, .. } => {
                queue.add(key_of(
                    rs.metadata.namespace.as_deref().unwrap_or(""),
                    rs.metadata.name.as_deref().unwrap_or(""),
                ));
            }
            Change::Deleted(rs) => {
                let key =
                    key_of(rs.metadata.namespace.as_deref().unwrap_or(""), rs.metadata.name.as_deref().unwrap_or(""));
                expectations.forget(&key);
                queue.add(key);
            }
        });
        let weak = Arc::downgrade(&controller);
        pods.on_change(move |change| {
            if let Some(controller) = weak.upgrade() {
                controller.pod_changed(change);
            }
        });
        controller
    }

    /// The ReplicaSet controlling `pod`, if it is one this informer knows.
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let owner = controller_ref(&pod.metadata)?;
        if owner.kind != "ReplicaSet" {
            return None;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let rs = self.replicasets.get(namespace, &owner.name)?;
        (rs.metadata.uid.as_deref() == Some(owner.uid.as_str())).then(|| key_of(namespace, &owner.name))
    }

    /// ReplicaSets whose selector matches an orphan pod (they may adopt it).
    fn matching_sets(&self, pod: &Pod) -> Vec<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        self.replicasets
            .list_namespace(namespace)
            .into_iter()
            .filter(|rs| selector_of(rs).is_some_and(|s| s.matches(labels(&pod.metadata))))
            .map(|rs| key_of(namespace, rs.metadata.name.as_deref().unwrap_or("")))
            .collect()
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                if let Some(key) = self.owner_key(pod) {
                    if pod.metadata.deletion_timestamp.is_some() {
                        self.expectations.deletion_observed(&key);
                    } else {
                        self.expectations.creation_observed(&key);
                    }
                    self.queue.add(key);
                } else if controller_ref(&pod.metadata).is_none() {
                    for key in self.matching_sets(pod) {
                        self.queue.add(key);
                    }
                }
            }
            Change::Updated { old, new } => {
                if new.metadata.deletion_timestamp.is_some()
                    && old.metadata.deletion_timestamp.is_none()
                    && let Some(key) = self.owner_key(new)
                {
                    self.expectations.deletion_observed(&key);
                }
                let old_owner = self.owner_key(old);
                let new_owner = self.owner_key(new);
                if old_owner != new_owner
                    && let Some(key) = old_owner
                {
                    self.queue.add(key);
                }
                match new_owner {
                    Some(key) => {
                        // A pod turning ready becomes available only minReadySeconds later.
                        let min_ready = self.min_ready_seconds(&key);
                        if min_ready > 0 && is_ready(new) != is_ready(old) {
                            self.queue.add_after(key.clone(), Duration::from_secs(min_ready as u64 + 1));
                        }
                        self.queue.add(key);
                    }
                    None if controller_ref(&new.metadata).is_none()
                        && (old.metadata.labels != new.metadata.labels || controller_ref(&old.metadata).is_some()) =>
                    {
                        for key in self.matching_sets(new) {
                            self.queue.add(key);
                        }
                    }
                    None => {}
                }
            }
            Change::Deleted(pod) => {
                if let Some(key) = self.owner_key(pod) {
                    if pod.metadata.deletion_timestamp.is_none() {
                        self.expectations.deletion_observed(&key);
                    }
                    self.queue.add(key);
                }
            }
        }
    }

    fn min_ready_seconds(&self, key: &str) -> i32 {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        self.replicasets.get(namespace, name).map_or(0, |rs| min_ready_seconds(&rs))
    }

    /// Reconciles ReplicaSets with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.pods.wait_synced(&shutdown).await;
        self.replicasets.wait_synced(&shutdown).await;
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("replicaset", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }

    /// One reconcile of the ReplicaSet `namespace/name`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(rs) = self.replicasets.get(namespace, name) else {
            self.expectations.forget(key);
            return Ok(Requeue::No);
        };
        let Some(selector) = selector_of(&rs) else {
            self.events.publish(
                reference_to(rs.as_ref()),
                EventType::Warning,
                "SelectorParsingFailed",
                "Sync",
                "the ReplicaSet's selector is invalid".into(),
            );
            return Ok(Requeue::No);
        };
        let needs_sync = self.expectations.satisfied(key) && rs.metadata.deletion_timestamp.is_none();
        let owned = self.claim(&rs, &selector).await?;
        let manage = if needs_sync { self.manage(key, &rs, &owned).await } else { Ok(()) };
        let failure = match &manage {
            Ok(()) => None,
            Err(SyncError::Create { source, .. }) => Some(("FailedCreate", source.to_string())),
            Err(SyncError::Delete { source, .. }) => Some(("FailedDelete", source.to_string())),
            Err(SyncError::Api { .. } | SyncError::Claim { .. }) => None,
        };
        let now = jiff::Timestamp::now();
        let status = status_of(&rs, &owned, failure, now);
        if rs.status.as_ref() != Some(&status) {
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
            let patch = json!({"status": status});
            match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Requeue::No),
                Err(source) => return Err(SyncError::Api { what: "updating status", key: key.to_string(), source }),
            }
        }
        manage?;
        let min_ready = min_ready_seconds(&rs);
        if min_ready > 0 && status.ready_replicas != status.available_replicas {
            return Ok(Requeue::After(Duration::from_secs(min_ready as u64)));
        }
        Ok(Requeue::No)
    }

    /// The active pods the ReplicaSet owns after adopting matching orphans and releasing owned pods that no
    /// longer match.
    async fn claim(&self, rs: &ReplicaSet, selector: &LabelSelector) -> Result<Vec<Arc<Pod>>, SyncError> {
        crate::claim::claim(&self.client, rs, selector, &self.pods, is_active).await.map_err(|source| {
            SyncError::Claim {
                key: key_of(rs.metadata.namespace.as_deref().unwrap_or(""), rs.metadata.name.as_deref().unwrap_or("")),
                source,
            }
        })
    }

    /// Creates or deletes pods so that `owned` becomes `spec.replicas`.
    async fn manage(&self, key: &str, rs: &ReplicaSet, owned: &[Arc<Pod>]) -> Result<(), SyncError> {
        let wanted = usize::try_from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0);
        let namespace = rs.metadata.namespace.as_deref().unwrap_or("");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        if owned.len() < wanted {
            let missing = (wanted - owned.len()).min(BURST_REPLICAS);
            self.expectations.expect(key, missing as i64, 0);
            let template = pod_from_template(rs);
            let mut created = 0;
            let mut batch = 1;
            while created < missing {
                let size = batch.min(missing - created);
                let params = PostParams::default();
                let results = join_all((0..size).map(|_| pods.create(&params, &template))).await;
                created += size;
                let mut failure = None;
                for result in results {
                    match result {
                        Ok(pod) => {
                            let note = format!("Created pod: {}", pod.metadata.name.as_deref().unwrap_or(""));
                            self.events.publish(
                                reference_to(rs),
                                EventType::Normal,
                                "SuccessfulCreate",
                                "Create",
                                note,
                            );
                        }
                        Err(err) => {
                            // The informer will never show this one.
                            self.expectations.creation_observed(key);
                            failure = Some(err);
                        }
                    }
                }
                if let Some(source) = failure {
                    for _ in created..missing {
                        self.expectations.creation_observed(key);
                    }
                    let note = format!("Error creating: {source}");
                    self.events.publish(reference_to(rs), EventType::Warning, "FailedCreate", "Create", note);
                    return Err(SyncError::Create { key: key.to_string(), source });
                }
                batch *= 2;
            }
        } else if owned.len() > wanted {
            let surplus = (owned.len() - wanted).min(BURST_REPLICAS);
            let victims = choose_victims(owned, surplus);
            self.expectations.expect(key, 0, victims.len() as i64);
            let results =
                join_all(victims.iter().map(|pod| {
                    let pods = pods.clone();
                    async move {
                        (pod, pods.delete(pod.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await)
                    }
                }))
                .await;
            let mut failure = None;
            for (pod, result) in results {
                let pod_name = pod.metadata.name.as_deref().unwrap_or("");
                match result {
                    Ok(_) => {
                        let note = format!("Deleted pod: {pod_name}");
                        self.events.publish(reference_to(rs), EventType::Normal, "SuccessfulDelete", "Delete", note);
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => self.expectations.deletion_observed(key),
                    Err(source) => {
                        self.expectations.deletion_observed(key);
                        failure = Some(source);
                    }
                }
            }
            if let Some(source) = failure {
                let note = format!("Error deleting: {source}");
                self.events.publish(reference_to(rs), EventType::Warning, "FailedDelete", "Delete", note);
                return Err(SyncError::Delete { key: key.to_string(), source });
            }
        }
        Ok(())
    }
}

/// The owner reference a ReplicaSet's pods carry.
pub fn owner_reference(rs: &ReplicaSet) -> OwnerReference {
    crate::claim::controller_reference(rs)
}

/// A new pod from the ReplicaSet's template.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
    let template_meta = template.and_then(|t| t.metadata.as_ref());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.as_deref().unwrap_or("pod"))),
            namespace: rs.metadata.namespace.clone(),
            labels: template_meta.and_then(|m| m.labels.clone()),
            annotations: template_meta.and_then(|m| m.annotations.clone()),
            finalizers: template_meta.and_then(|m| m.finalizers.clone()),
            owner_references: Some(vec![owner_reference(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    }
}

/// The `count` pods to delete first, in kube's order (pods sharing a node with more siblings first).
fn choose_victims(owned: &[Arc<Pod>], count: usize) -> Vec<Arc<Pod>> {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in owned {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) {
            *on_node.entry(node).or_insert(0) += 1;
        }
    }
    let rank = |pod: &Pod| {
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).and_then(|n| on_node.get(n)).copied().unwrap_or(0)
    };
    let mut ranked: Vec<(&Arc<Pod>, usize)> = owned.iter().map(|p| (p, rank(p))).collect();
    ranked.sort_by(|a, b| deletion_order((a.0, a.1), (b.0, b.1)));
    ranked.into_iter().take(count).map(|(p, _)| Arc::clone(p)).collect()
}

/// The status a ReplicaSet should show for its owned pods.
fn status_of(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    failure: Option<(&str, String)>,
    now: jiff::Timestamp,
) -> ReplicaSetStatus {
    let template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
    let template_labels = template.and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref());
    let min_ready = min_ready_seconds(rs);
    let count = |f: &dyn Fn(&Pod) -> bool| owned.iter().filter(|p| f(p)).count() as i32;
    let fully_labeled = count(&|p: &Pod| {
        template_labels.is_none_or(|wanted| wanted.iter().all(|(k, v)| labels(&p.metadata).get(k) == Some(v)))
    });
    let previous = rs.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> =
        previous.iter().filter(|c| c.type_ != "ReplicaFailure").cloned().collect();
    if let Some((reason, message)) = failure {
        let existing = previous.iter().find(|c| c.type_ == "ReplicaFailure" && c.reason.as_deref() == Some(reason));
        conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(reason.to_string()),
            message: Some(message),
            last_transition_time: existing.and_then(|c| c.last_transition_time.clone()).or(Some(Time(now))),
        });
    }
    ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(count(&|p: &Pod| is_ready(p))),
        available_replicas: Some(count(&|p: &Pod| is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rs(replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "rs-uid", "generation": 3},
            "spec": {"replicas": replicas, "minReadySeconds": 10,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "front"}, "annotations": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
        .unwrap()
    }

    fn pod(name: &str, labels: serde_json::Value, ready_at: Option<&str>) -> Arc<Pod> {
        let conditions = match ready_at {
            Some(t) => json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]),
            None => json!([]),
        };
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d", "labels": labels},
                "spec": {"containers": []}, "status": {"phase": "Running", "conditions": conditions}}))
            .unwrap(),
        )
    }

    #[test]
    fn pods_from_the_template_are_named_after_the_set_and_owned_by_it() {
        let p = pod_from_template(&rs(3));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("d"));
        assert_eq!(p.metadata.labels.as_ref().unwrap()["tier"], "front");
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller, owner.block_owner_deletion),
            ("ReplicaSet", "rs-uid", Some(true), Some(true))
        );
        assert_eq!(p.spec.unwrap().containers[0].image.as_deref(), Some("busybox"));
    }

    #[test]
    fn status_counts_labelled_ready_and_available_pods() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let owned = vec![
            pod("a", json!({"app": "web", "tier": "front"}), Some("2026-01-01T00:00:00Z")),
            pod("b", json!({"app": "web"}), Some("2026-01-01T00:00:55Z")),
            pod("c", json!({"app": "web", "tier": "front"}), None),
        ];
        let status = status_of(&rs(3), &owned, None, now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1), "b has been ready for 5 of the 10 seconds needed");
        assert_eq!(status.observed_generation, Some(3));
        assert!(status.conditions.is_none());
        let failed = status_of(&rs(3), &owned, Some(("FailedCreate", "quota".into())), now);
        let condition = &failed.conditions.unwrap()[0];
        assert_eq!((condition.type_.as_str(), condition.reason.as_deref()), ("ReplicaFailure", Some("FailedCreate")));
    }

    #[test]
    fn victims_are_the_least_useful_pods() {
        let owned = vec![pod("ready", json!({}), Some("2026-01-01T00:00:00Z")), pod("unready", json!({}), None)];
        let victims = choose_victims(&owned, 1);
        assert_eq!(victims[0].metadata.name.as_deref(), Some("unready"));
    }
}
