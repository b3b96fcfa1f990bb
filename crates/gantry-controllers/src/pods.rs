//! Facts about pods that several controllers read: whether a pod is active or ready, its controller, and
//! kube-controller-manager's order for choosing which pods of a set to delete first.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The informer index of objects by controller: the controller's UID, or `orphan/<namespace>` for objects
/// without one. Owners find what they own, and what they may adopt, without walking their namespace.
pub const BY_CONTROLLER: &str = "controller";

/// The values of [`BY_CONTROLLER`] for an object.
pub fn controller_index(meta: &ObjectMeta) -> Vec<String> {
    match controller_ref(meta) {
        Some(owner) => vec![owner.uid.clone()],
        None => vec![orphans_of(meta.namespace.as_deref().unwrap_or(""))],
    }
}

/// The [`BY_CONTROLLER`] value of objects without a controller in `namespace`.
pub fn orphans_of(namespace: &str) -> String {
    format!("orphan/{namespace}")
}

/// The informer index of pods by the node they are bound to (`spec.nodeName`).
pub const BY_NODE: &str = "node";

/// The values of [`BY_NODE`] for a pod: its node, if bound.
pub fn node_index(pod: &Pod) -> Vec<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()).into_iter().collect()
}

/// The owner reference marked as the object's controller.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// A pod that counts toward its set: not finished (Succeeded/Failed) and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's Ready condition, if true: when it became ready.
pub fn ready_since(pod: &Pod) -> Option<Option<jiff::Timestamp>> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod's Ready condition is true.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now` (a pod ready without a
/// transition time counts as available).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => true,
        Some(Some(since)) => now.as_second() - since.as_second() >= i64::from(min_ready_seconds),
    }
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
}

/// kube-controller-manager's order of deletion, first to delete first: unscheduled before scheduled;
/// Pending before Unknown before Running; not ready before ready; more siblings on the same node (`rank`)
/// first; ready for less time first; more restarts first; newer first.
pub fn deletion_order(a: (&Pod, usize), b: (&Pod, usize)) -> Ordering {
    let (pa, rank_a) = a;
    let (pb, rank_b) = b;
    let scheduled = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    scheduled(pa)
        .cmp(&scheduled(pb))
        .then_with(|| phase_rank(pa).cmp(&phase_rank(pb)))
        .then_with(|| is_ready(pa).cmp(&is_ready(pb)))
        .then_with(|| rank_b.cmp(&rank_a))
        .then_with(|| {
            // Both ready: the one ready more recently goes first.
            let since = |p: &Pod| ready_since(p).flatten();
            match (since(pa), since(pb)) {
                (Some(x), Some(y)) => y.cmp(&x),
                _ => Ordering::Equal,
            }
        })
        .then_with(|| restarts(pb).cmp(&restarts(pa)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(pb).cmp(&created(pa))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Value, json};

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str, extra: Value) -> Pod {
        let mut p = json!({"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                        "lastTransitionTime": created}]}});
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                p["status"][k] = v;
            }
        }
        serde_json::from_value(p).unwrap()
    }

    fn order(pods: &[(Pod, usize)]) -> Vec<String> {
        let mut sorted: Vec<&(Pod, usize)> = pods.iter().collect();
        sorted.sort_by(|a, b| deletion_order((&a.0, a.1), (&b.0, b.1)));
        sorted.iter().map(|(p, _)| p.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn unscheduled_pending_and_unready_pods_go_first_then_newer_ones() {
        let t1 = "2026-01-01T00:00:00Z";
        let t2 = "2026-01-02T00:00:00Z";
        let pods = vec![
            (pod("running-old", Some("n"), "Running", true, t1, json!({})), 1),
            (pod("running-new", Some("n2"), "Running", true, t2, json!({})), 1),
            (pod("unscheduled", None, "Pending", false, t1, json!({})), 1),
            (pod("pending", Some("n"), "Pending", false, t1, json!({})), 1),
            (pod("unready", Some("n"), "Running", false, t1, json!({})), 1),
        ];
        assert_eq!(order(&pods), vec!["unscheduled", "pending", "unready", "running-new", "running-old"]);
    }

    #[test]
    fn doubled_up_pods_and_restarting_pods_go_first() {
        let t = "2026-01-01T00:00:00Z";
        let crashy = json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true,
                                                    "restartCount": 5}]});
        let pods = vec![
            (pod("alone", Some("a"), "Running", true, t, json!({})), 1),
            (pod("doubled", Some("b"), "Running", true, t, json!({})), 2),
            (pod("crashy", Some("c"), "Running", true, t, crashy), 1),
        ];
        assert_eq!(order(&pods), vec!["doubled", "crashy", "alone"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p", Some("n"), "Running", true, "2026-01-01T00:00:00Z", json!({}));
        let now: jiff::Timestamp = "2026-01-01T00:00:05Z".parse().unwrap();
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 6, now));
        assert!(is_active(&p));
    }
}
