//! The scheduling queue: pods waiting to be scheduled, in kube-scheduler's three parts.
//!
//! - **active**: ready now, popped by priority (higher first), then by the time they were queued;
//! - **backoff**: failed recently; ready again after a per-pod backoff (1 s doubling to 10 s by attempt);
//! - **unschedulable**: no node fit; they wait for a cluster event that may change that (a node added or
//!   changed, a pod deleted, ...) and go back through backoff then. A pod waits there at most
//!   [`UNSCHEDULABLE_MAX_WAIT`], so a missed event cannot strand it.
//!
//! The queue is plain data: time is passed in, so that its behaviour is tested without sleeping.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::snapshot::PodInfo;

/// First backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest wait in the unschedulable part before a pod is retried anyway.
pub const UNSCHEDULABLE_MAX_WAIT: Duration = Duration::from_secs(300);

/// A pod in the queue, with its scheduling history.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    /// The pod.
    pub pod: Arc<PodInfo>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was first queued.
    pub first_queued: Instant,
    /// When it entered its current part of the queue.
    pub queued: Instant,
}

impl QueuedPod {
    fn backoff(&self) -> Duration {
        let doublings = self.attempts.saturating_sub(1).min(16);
        INITIAL_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
    }
}

struct Active(QueuedPod);

impl PartialEq for Active {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Active {}
impl PartialOrd for Active {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Active {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority first, then earlier queued first.
        self.0.pod.priority.cmp(&other.0.pod.priority).then_with(|| other.0.queued.cmp(&self.0.queued))
    }
}

/// Where a pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being scheduled.
    InFlight,
}

/// The scheduling queue.
#[derive(Default)]
pub struct SchedulingQueue {
    active: BinaryHeap<Active>,
    backoff: HashMap<String, QueuedPod>,
    unschedulable: HashMap<String, QueuedPod>,
    /// Where each known pod (by UID) is; heap entries of pods no longer here are stale and skipped.
    parts: HashMap<String, Part>,
    /// The newest version of each pod (by UID), so that stale heap entries are recognised.
    latest: HashMap<String, Arc<PodInfo>>,
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new() -> SchedulingQueue {
        SchedulingQueue::default()
    }

    /// The number of pods waiting (in any part, not counting the ones being scheduled).
    pub fn len(&self) -> usize {
        self.parts.values().filter(|p| **p != Part::InFlight).count()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new pending pod, or a new version of one: it goes to the active part (an update may have made it
    /// schedulable). A pod being scheduled is only recorded; its attempt decides where it goes next.
    pub fn add(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let uid = pod.uid.clone();
        // An update that changes neither the spec nor the labels (e.g. the scheduler's own status condition)
        // cannot make a waiting pod fit: it keeps its place.
        let waiting = matches!(self.parts.get(&uid), Some(Part::Unschedulable | Part::Backoff));
        let same = self
            .latest
            .get(&uid)
            .is_some_and(|old| old.pod.spec == pod.pod.spec && old.pod.metadata.labels == pod.pod.metadata.labels);
        self.latest.insert(uid.clone(), Arc::clone(&pod));
        if waiting && same {
            for queued in self.unschedulable.get_mut(&uid).into_iter().chain(self.backoff.get_mut(&uid)) {
                queued.pod = Arc::clone(&pod);
            }
            return;
        }
        let previous = self.backoff.remove(&uid).or_else(|| self.unschedulable.remove(&uid));
        match self.parts.get(&uid) {
            Some(Part::InFlight) => {}
            Some(Part::Active) => {
                // Already waiting in the heap; the newer version is read from `latest` when popped.
            }
            _ => {
                let attempts = previous.as_ref().map_or(0, |p| p.attempts);
                let first_queued = previous.as_ref().map_or(now, |p| p.first_queued);
                self.active.push(Active(QueuedPod { pod, attempts, first_queued, queued: now }));
                self.parts.insert(uid, Part::Active);
            }
        }
    }

    /// A pod that no longer needs scheduling (bound elsewhere, or deleted).
    pub fn remove(&mut self, uid: &str) {
        self.parts.remove(uid);
        self.latest.remove(uid);
        self.backoff.remove(uid);
        self.unschedulable.remove(uid);
    }

    /// The next pod to schedule, if any is ready at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush(now);
        while let Some(Active(mut queued)) = self.active.pop() {
            let uid = queued.pod.uid.clone();
            if self.parts.get(&uid) != Some(&Part::Active) {
                continue;
            }
            if let Some(latest) = self.latest.get(&uid) {
                queued.pod = Arc::clone(latest);
            }
            self.parts.insert(uid, Part::InFlight);
            return Some(queued);
        }
        None
    }

    /// After an attempt in which no node fitted: wait for a cluster event.
    pub fn unschedulable(&mut self, mut queued: QueuedPod, now: Instant) {
        let uid = queued.pod.uid.clone();
        if !self.parts.contains_key(&uid) {
            return;
        }
        queued.attempts += 1;
        queued.queued = now;
        self.unschedulable.insert(uid.clone(), queued);
        self.parts.insert(uid, Part::Unschedulable);
    }

    /// After an attempt that failed for another reason (an error, a lost binding race): retry after backoff.
    pub fn retry_later(&mut self, mut queued: QueuedPod, now: Instant) {
        let uid = queued.pod.uid.clone();
        if !self.parts.contains_key(&uid) {
            return;
        }
        queued.attempts += 1;
        queued.queued = now;
        self.backoff.insert(uid.clone(), queued);
        self.parts.insert(uid, Part::Backoff);
    }

    /// After a successful attempt: the pod leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.remove(uid);
    }

    /// Something changed in the cluster that may make unschedulable pods fit: they move on, through
    /// backoff.
    pub fn cluster_changed(&mut self, now: Instant) {
        for (uid, mut queued) in self.unschedulable.drain() {
            queued.queued = now;
            self.parts.insert(uid.clone(), Part::Backoff);
            self.backoff.insert(uid, queued);
        }
        self.flush(now);
    }

    /// Moves pods whose backoff is over, and pods that waited too long as unschedulable, to active.
    fn flush(&mut self, now: Instant) {
        let ready: Vec<String> = self
            .backoff
            .iter()
            .filter(|(_, q)| now.saturating_duration_since(q.queued) >= q.backoff())
            .map(|(uid, _)| uid.clone())
            .collect();
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|(_, q)| now.saturating_duration_since(q.queued) >= UNSCHEDULABLE_MAX_WAIT)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in ready {
            if let Some(mut queued) = self.backoff.remove(&uid) {
                queued.queued = now;
                self.active.push(Active(queued));
                self.parts.insert(uid, Part::Active);
            }
        }
        for uid in stale {
            if let Some(mut queued) = self.unschedulable.remove(&uid) {
                queued.queued = now;
                self.active.push(Active(queued));
                self.parts.insert(uid, Part::Active);
            }
        }
    }

    /// When the next pod becomes ready if none is now (to know how long the scheduling loop may sleep).
    pub fn next_ready(&self) -> Option<Instant> {
        let backoff = self.backoff.values().map(|q| q.queued + q.backoff());
        let unschedulable = self.unschedulable.values().map(|q| q.queued + UNSCHEDULABLE_MAX_WAIT);
        backoff.chain(unschedulable).min()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "d", "uid": name},
            "spec": {"containers": [], "priority": priority}}))
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    #[test]
    fn higher_priority_pods_are_popped_first_then_the_oldest() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(pod("low", 0), t);
        q.add(pod("high", 100), t + Duration::from_millis(1));
        q.add(pod("low2", 0), t + Duration::from_millis(2));
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop(t + Duration::from_millis(3))).map(|p| p.pod.key.clone()).collect();
        assert_eq!(order, vec!["d/high", "d/low", "d/low2"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_event_then_back_off() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(pod("p", 0), t);
        let popped = q.pop(t).unwrap();
        q.unschedulable(popped, t);
        assert!(q.pop(t + Duration::from_secs(60)).is_none(), "no event, no retry");
        q.cluster_changed(t + Duration::from_secs(60));
        assert!(q.pop(t + Duration::from_secs(60)).is_none(), "backoff first");
        let retried = q.pop(t + Duration::from_secs(61)).unwrap();
        assert_eq!(retried.attempts, 1);
    }

    #[test]
    fn backoff_doubles_up_to_its_limit() {
        let mut q = SchedulingQueue::new();
        let mut t = Instant::now();
        q.add(pod("p", 0), t);
        let mut popped = q.pop(t).unwrap();
        for expected in [1, 2, 4, 8, 10, 10] {
            q.retry_later(popped, t);
            assert!(q.pop(t + Duration::from_secs(expected) - Duration::from_millis(1)).is_none());
            t += Duration::from_secs(expected);
            popped = q.pop(t).unwrap();
        }
    }

    #[test]
    fn unschedulable_pods_are_retried_after_the_longest_wait_without_events() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(pod("p", 0), t);
        let popped = q.pop(t).unwrap();
        q.unschedulable(popped, t);
        assert_eq!(q.next_ready(), Some(t + UNSCHEDULABLE_MAX_WAIT));
        assert!(q.pop(t + UNSCHEDULABLE_MAX_WAIT).is_some());
    }

    #[test]
    fn a_status_only_update_does_not_wake_an_unschedulable_pod() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(pod("p", 0), t);
        let popped = q.pop(t).unwrap();
        q.unschedulable(popped, t);
        q.add(pod("p", 0), t);
        assert!(q.pop(t).is_none(), "same spec and labels: still waiting");
        q.add(pod("p", 7), t);
        assert!(q.pop(t).is_some(), "a changed spec may fit now");
    }

    #[test]
    fn removed_and_updated_pods_are_handled_without_duplicates() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(pod("a", 0), t);
        q.add(pod("a", 5), t);
        q.add(pod("b", 0), t);
        q.remove("b");
        let first = q.pop(t).unwrap();
        assert_eq!(first.pod.priority, 5, "the newest version is scheduled");
        assert!(q.pop(t).is_none());
        assert!(q.is_empty());
    }
}
