//! The scheduler as an API client: watches nodes and pods, queues pending pods, runs scheduling cycles,
//! binds through `pods/binding`, and reports failures (condition `PodScheduled=False`, `FailedScheduling`
//! Events). Only the holder of the scheduler's Lease schedules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gantry_lease::{ElectionConfig, LeaderElector};
use k8s_openapi::api::core::v1::{Namespace, Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache::SchedulerCache;
use crate::framework::{Decision, Explanation, Profile, ScoredNode, Status};
use crate::plugins::default_preemption::Budget;
use crate::plugins::{ClusterFacts, default_profile_with};
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::snapshot::PodInfo;

/// How the scheduler runs.
#[derive(Clone)]
pub struct SchedulerConfig {
    /// The profiles, by the `spec.schedulerName` they serve.
    pub profiles: Vec<Profile>,
    /// This instance's identity (in the Lease and in Events).
    pub identity: String,
    /// Leader election timing; `None` schedules without electing (a single scheduler).
    pub election: Option<ElectionConfig>,
    /// Bindings in flight at once.
    pub max_parallel_bindings: usize,
    /// The facts the profiles' plugins read; the scheduler keeps them current from its watches.
    pub facts: ClusterFacts,
}

impl SchedulerConfig {
    /// The default profile reading facts this scheduler keeps current, and 64 bindings in flight.
    pub fn with_default_profile(identity: impl Into<String>, election: Option<ElectionConfig>) -> SchedulerConfig {
        let facts = ClusterFacts::default();
        SchedulerConfig {
            profiles: vec![default_profile_with(&facts)],
            identity: identity.into(),
            election,
            max_parallel_bindings: 64,
            facts,
        }
    }
}

/// How many pods' last attempts are kept for `gantry why`, most recent first. Pods still pending are retried
/// (on cluster events, and at least every few minutes), so their record stays fresh.
pub const ATTEMPTS_KEPT: usize = 256;

/// How many of the best-scored feasible nodes an attempt keeps.
pub const SCORES_KEPT: usize = crate::framework::EXPLAINED_SCORES;

/// One scheduling attempt of a pod, as `gantry why` shows it.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// When the cycle ran.
    pub time: jiff::Timestamp,
    /// What came of it.
    pub result: AttemptResult,
    /// Nodes in the cluster then.
    pub total_nodes: usize,
    /// Nodes the filters looked at (the search stops once enough feasible nodes are found).
    pub evaluated_nodes: usize,
    /// Rejected nodes, grouped by the verdict that rejected them (thousands of nodes usually share a handful
    /// of verdicts).
    pub rejected: Vec<(Status, Vec<Arc<str>>)>,
    /// The best-scored feasible nodes, highest first (at most [`SCORES_KEPT`]).
    pub scores: Vec<ScoredNode>,
    /// Feasible nodes in all, including those beyond [`SCORES_KEPT`].
    pub feasible_nodes: usize,
}

/// What an attempt decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// The pod was assigned to this node (binding follows).
    Placed {
        /// The node.
        node: String,
    },
    /// No node fits.
    Unschedulable {
        /// The message given to the pod's PodScheduled condition.
        message: String,
        /// The node preemption nominated, if any.
        nominated: Option<String>,
    },
}

impl Attempt {
    fn new(result: AttemptResult, explanation: Explanation) -> Attempt {
        // A handful of distinct verdicts at most: a linear search beats hashing every status.
        let mut rejected: Vec<(Status, Vec<Arc<str>>)> = Vec::new();
        for (node, status) in explanation.rejected {
            match rejected.iter_mut().find(|(s, _)| *s == status) {
                Some((_, nodes)) => nodes.push(node),
                None => rejected.push((status, vec![node])),
            }
        }
        rejected.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.plugin.cmp(b.0.plugin)));
        let feasible_nodes = explanation.feasible_nodes;
        let scores = explanation.scores;
        Attempt {
            time: jiff::Timestamp::now(),
            result,
            total_nodes: explanation.total_nodes,
            evaluated_nodes: explanation.evaluated_nodes,
            rejected,
            scores,
            feasible_nodes,
        }
    }
}

/// The last attempt of recently scheduled pods, bounded by [`ATTEMPTS_KEPT`].
#[derive(Default)]
struct Attempts {
    by_pod: HashMap<String, Arc<Attempt>>,
    /// Pod keys, oldest attempt first (a key appears once).
    order: std::collections::VecDeque<String>,
}

impl Attempts {
    fn record(&mut self, key: &str, attempt: Attempt) {
        if self.by_pod.insert(key.to_string(), Arc::new(attempt)).is_some() {
            self.order.retain(|k| k != key);
        }
        self.order.push_back(key.to_string());
        while self.order.len() > ATTEMPTS_KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_pod.remove(&oldest);
            }
        }
    }

    fn forget(&mut self, key: &str) {
        if self.by_pod.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

/// What the scheduler knows, shared by the watchers and the scheduling loop.
#[derive(Default)]
struct State {
    cache: SchedulerCache,
    queue: SchedulingQueue,
    /// Recent pods' last attempts, for `gantry why`.
    attempts: Attempts,
    nodes_synced: bool,
    pods_synced: bool,
}

/// A handle to a running scheduler's state, for queries (`gantry why`).
#[derive(Clone)]
pub struct SchedulerHandle {
    state: Arc<Mutex<State>>,
}

impl SchedulerHandle {
    /// The last scheduling attempt of the pod `namespace/name`, if it is among the recent ones this scheduler
    /// made (see [`ATTEMPTS_KEPT`]).
    pub fn last_attempt(&self, namespace: &str, name: &str) -> Option<Arc<Attempt>> {
        lock(&self.state).attempts.by_pod.get(&format!("{namespace}/{name}")).cloned()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn needs_scheduling(pod: &Pod, config: &SchedulerConfig) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let name = spec.scheduler_name.as_deref().unwrap_or("default-scheduler");
    spec.node_name.as_deref().is_none_or(str::is_empty)
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
        && config.profiles.iter().any(|p| p.scheduler_name == name)
}

/// Starts the scheduler; it runs until `shutdown`. The returned handle answers queries about its decisions.
pub fn start(
    client: Client,
    config: SchedulerConfig,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> SchedulerHandle {
    let state = Arc::new(Mutex::new(State::default()));
    let wake = Arc::new(Notify::new());
    tasks.spawn(watch_nodes(client.clone(), Arc::clone(&state), Arc::clone(&wake), shutdown.clone()));
    tasks.spawn(watch_facts(
        client.clone(),
        config.facts.clone(),
        Arc::clone(&state),
        Arc::clone(&wake),
        shutdown.clone(),
    ));
    tasks.spawn(watch_pods(client.clone(), config.clone(), Arc::clone(&state), Arc::clone(&wake), shutdown.clone()));
    let leading = match config.election {
        Some(election) => {
            let elector =
                LeaderElector::new(client.clone(), "kube-system", "gantry-scheduler", &config.identity, election);
            let leading = elector.leading();
            tasks.spawn(elector.run(shutdown.clone()));
            Some(leading)
        }
        None => None,
    };
    tasks.spawn(schedule_loop(client, config, Arc::clone(&state), wake, leading, shutdown));
    SchedulerHandle { state }
}

/// Follows one kind through a watcher until `shutdown`, applying each event to the shared state under its
/// lock and waking the scheduling loop. Watch failures are retried (the watcher re-lists as needed).
async fn follow<K, F>(
    api: Api<K>,
    what: &'static str,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    mut apply: F,
) where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: FnMut(&mut State, watcher::Event<K>, Instant),
{
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = stream.next() => match next {
                Some(Ok(event)) => event,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, what, "scheduler: watching failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                None => return,
            },
        };
        apply(&mut lock(&state), event, Instant::now());
        wake.notify_one();
    }
}

async fn watch_nodes(client: Client, state: Arc<Mutex<State>>, wake: Arc<Notify>, shutdown: CancellationToken) {
    follow(Api::<Node>::all(client), "nodes", state, wake, shutdown, |s, event, now| {
        match event {
            watcher::Event::Apply(node) | watcher::Event::InitApply(node) => s.cache.upsert_node(node),
            watcher::Event::Delete(node) => s.cache.remove_node(node.metadata.name.as_deref().unwrap_or("")),
            watcher::Event::Init => {}
            watcher::Event::InitDone => s.nodes_synced = true,
        }
        // Any node change may make a waiting pod fit.
        s.queue.cluster_changed(now);
    })
    .await;
}

/// Keeps the facts plugins read (namespace labels, disruption budgets) current. A change may make a waiting
/// pod fit (a namespace gaining the labels an affinity term selects), so it counts as a cluster event.
async fn watch_facts(
    client: Client,
    facts: ClusterFacts,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let labels = Arc::clone(&facts.namespace_labels);
    let namespaces = follow(
        Api::<Namespace>::all(client.clone()),
        "namespaces",
        Arc::clone(&state),
        Arc::clone(&wake),
        shutdown.clone(),
        {
            let mut relisted = None;
            move |s, event, now| {
                let entry =
                    |ns: Namespace| (ns.metadata.name.unwrap_or_default(), ns.metadata.labels.unwrap_or_default());
                let mut map = labels.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                apply_relisted(&mut map, &mut relisted, event, entry, |ns| {
                    ns.metadata.name.clone().unwrap_or_default()
                });
                s.queue.cluster_changed(now);
            }
        },
    );
    let budgets = Arc::clone(&facts.budgets);
    let pdbs = follow(Api::<PodDisruptionBudget>::all(client), "poddisruptionbudgets", state, wake, shutdown, {
        let mut relisted = None;
        move |_s, event, _now| {
            let key = |pdb: &PodDisruptionBudget| {
                format!(
                    "{}/{}",
                    pdb.metadata.namespace.as_deref().unwrap_or(""),
                    pdb.metadata.name.as_deref().unwrap_or("")
                )
            };
            let mut map = budgets.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            apply_relisted(&mut map, &mut relisted, event, |pdb| (key(&pdb), Budget::from_object(&pdb)), key);
        }
    });
    tokio::join!(namespaces, pdbs);
}

/// Applies a watch event to a map of facts. A relist (Init … InitDone) fills a fresh map that replaces the old
/// one only when complete, so that objects deleted while the watch was down go, and readers never see half.
fn apply_relisted<K, V>(
    map: &mut std::collections::BTreeMap<String, V>,
    relisted: &mut Option<std::collections::BTreeMap<String, V>>,
    event: watcher::Event<K>,
    entry: impl Fn(K) -> (String, V),
    key: impl Fn(&K) -> String,
) {
    match event {
        watcher::Event::Init => *relisted = Some(std::collections::BTreeMap::new()),
        watcher::Event::InitApply(object) => {
            let (k, v) = entry(object);
            relisted.get_or_insert_with(Default::default).insert(k, v);
        }
        watcher::Event::InitDone => {
            if let Some(fresh) = relisted.take() {
                *map = fresh;
            }
        }
        watcher::Event::Apply(object) => {
            let (k, v) = entry(object);
            map.insert(k, v);
        }
        watcher::Event::Delete(object) => {
            map.remove(&key(&object));
        }
    }
}

async fn watch_pods(
    client: Client,
    config: SchedulerConfig,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    follow(Api::<Pod>::all(client), "pods", state, wake, shutdown, |s, event, now| match event {
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if needs_scheduling(&pod, &config) {
                s.queue.add(Arc::new(PodInfo::new(Arc::new(pod))), now);
            } else {
                let freed = pod.metadata.deletion_timestamp.is_some()
                    || matches!(pod.status.as_ref().and_then(|st| st.phase.as_deref()), Some("Succeeded" | "Failed"));
                s.queue.remove(&uid);
                s.cache.upsert_pod(pod);
                if freed {
                    s.queue.cluster_changed(now);
                }
            }
        }
        watcher::Event::Delete(pod) => {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let meta = &pod.metadata;
            s.attempts.forget(&format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or(""),
                meta.name.as_deref().unwrap_or("")
            ));
            s.queue.remove(&uid);
            s.cache.remove_pod(&uid);
            s.queue.cluster_changed(now);
        }
        watcher::Event::Init => {}
        watcher::Event::InitDone => s.pods_synced = true,
    })
    .await;
}

/// What a finished binding or report tells the loop.
enum Outcome {
    Bound { uid: String },
    BindFailed { queued: QueuedPod },
    Reported,
}

fn settle(state: &Mutex<State>, done: Result<Outcome, tokio::task::JoinError>) {
    let mut s = lock(state);
    match done {
        Ok(Outcome::Bound { uid }) => {
            s.cache.binding_finished(&uid, Instant::now());
            s.queue.done(&uid);
        }
        Ok(Outcome::BindFailed { queued }) => {
            s.cache.forget(&queued.pod.uid);
            s.queue.retry_later(queued, Instant::now());
        }
        Ok(Outcome::Reported) => {}
        Err(err) => tracing::warn!(error = %err, "scheduler: a binding task failed"),
    }
}

async fn schedule_loop(
    client: Client,
    config: SchedulerConfig,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    mut leading: Option<tokio::sync::watch::Receiver<bool>>,
    shutdown: CancellationToken,
) {
    let recorder = Recorder { client: client.clone(), instance: config.identity.clone() };
    let bindings = Arc::new(Semaphore::new(config.max_parallel_bindings.max(1)));
    let mut in_flight: JoinSet<Outcome> = JoinSet::new();
    let mut tie_break: u64 = 0;
    // Where the next cycle starts looking, so that successive cycles spread over all nodes.
    let mut next_start: usize = 0;
    loop {
        while let Some(done) = in_flight.try_join_next() {
            settle(&state, done);
        }
        let is_leader = leading.as_ref().is_none_or(|rx| *rx.borrow());
        let next = {
            let mut s = lock(&state);
            for uid in s.cache.expire(Instant::now()) {
                tracing::warn!(uid, "scheduler: an assumed pod was never confirmed bound; it no longer counts");
            }
            if is_leader && s.nodes_synced && s.pods_synced { s.queue.pop(Instant::now()) } else { None }
        };
        let Some(queued) = next else {
            let sleep_until = lock(&state).queue.next_ready();
            let nap = sleep_until.map_or(Duration::from_secs(1), |t| t.saturating_duration_since(Instant::now()));
            let lead_change = async {
                match leading.as_mut() {
                    Some(rx) => {
                        let _ = rx.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(nap.max(Duration::from_millis(1))) => {}
                _ = lead_change => {}
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => settle(&state, done),
            }
            continue;
        };
        let pod = Arc::clone(&queued.pod);
        let scheduler_name = pod.pod.spec.as_ref().and_then(|s| s.scheduler_name.clone());
        let scheduler_name = scheduler_name.as_deref().unwrap_or("default-scheduler");
        let Some(profile) = config.profiles.iter().find(|p| p.scheduler_name == scheduler_name) else {
            lock(&state).queue.done(&pod.uid);
            continue;
        };
        let snapshot = lock(&state).cache.snapshot();
        tie_break = tie_break.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let nodes = snapshot.nodes.len();
        let enough = crate::framework::feasible_nodes_to_find(nodes);
        let (decision, cycle, evaluated) =
            profile.schedule_from(&pod, &snapshot, tie_break >> 33, next_start % nodes.max(1), enough);
        next_start = (next_start + evaluated) % nodes.max(1);
        // Let go of the snapshot before the cache changes, so the change copies nothing (copy-on-write).
        drop(cycle);
        drop(snapshot);
        match decision {
            Decision::Place { node, explanation } => {
                {
                    let mut s = lock(&state);
                    // The pod stays in flight in the queue until its binding is settled.
                    s.cache.assume(Arc::clone(&pod), &node);
                    s.cache.register_counters();
                    s.attempts
                        .record(&pod.key, Attempt::new(AttemptResult::Placed { node: node.clone() }, explanation));
                }
                let permit = Arc::clone(&bindings).acquire_owned().await;
                let (client, recorder) = (client.clone(), recorder.clone());
                in_flight.spawn(async move {
                    let _permit = permit;
                    match bind(&client, &pod, &node).await {
                        Ok(()) => {
                            let note = format!("Successfully assigned {} to {node}", pod.key);
                            report(&recorder, &pod, EventType::Normal, "Scheduled", note, "Binding").await;
                            Outcome::Bound { uid: pod.uid.clone() }
                        }
                        Err(err) => {
                            tracing::warn!(pod = %pod.key, node, error = %err, "scheduler: binding failed");
                            Outcome::BindFailed { queued }
                        }
                    }
                });
            }
            Decision::Unschedulable { message, explanation, nomination } => {
                {
                    let mut s = lock(&state);
                    let result = AttemptResult::Unschedulable {
                        message: message.clone(),
                        nominated: nomination.as_ref().map(|n| n.node.clone()),
                    };
                    s.attempts.record(&pod.key, Attempt::new(result, explanation));
                    s.queue.unschedulable(queued, Instant::now());
                    s.cache.register_counters();
                }
                let (client, recorder) = (client.clone(), recorder.clone());
                in_flight.spawn(async move {
                    if let Some(nomination) = &nomination {
                        preempt(&client, &recorder, &pod, nomination).await;
                    }
                    mark_unschedulable(&client, &pod, &message).await;
                    report(&recorder, &pod, EventType::Warning, "FailedScheduling", message, "Scheduling").await;
                    Outcome::Reported
                });
            }
            Decision::Failed(status) => {
                tracing::warn!(pod = %pod.key, plugin = status.plugin, reasons = ?status.reasons, "scheduler: a plugin failed");
                lock(&state).queue.retry_later(queued, Instant::now());
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        settle(&state, done);
    }
}

async fn bind(client: &Client, pod: &PodInfo, node: &str) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), pod.namespace());
    let name = pod.pod.metadata.name.clone().unwrap_or_default();
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": pod.namespace(), "uid": pod.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods.create_subresource::<serde_json::Value, serde_json::Value>("binding", &name, &PostParams::default(), &binding)
        .await
        .map(|_| ())
}

/// Makes room for `pod` on the nominated node: records the nomination on the pod (`status.nominatedNodeName`)
/// and deletes the victims gracefully. The pod is scheduled for real once they are gone (their deletion is a
/// cluster event that wakes it).
async fn preempt(client: &Client, recorder: &Recorder, pod: &PodInfo, nomination: &crate::framework::Nomination) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), pod.namespace());
    let name = pod.pod.metadata.name.clone().unwrap_or_default();
    let patch = json!({"status": {"nominatedNodeName": nomination.node}});
    if let Err(err) = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
        tracing::debug!(pod = %pod.key, error = %err, "scheduler: could not record the nominated node");
    }
    for victim in &nomination.victims {
        let Some((namespace, victim_name)) = victim.split_once('/') else { continue };
        let victims: Api<Pod> = Api::namespaced(client.clone(), namespace);
        match victims.delete(victim_name, &Default::default()).await {
            Ok(_) => {
                let reference = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(victim_name.to_string()),
                    namespace: Some(namespace.to_string()),
                    ..Default::default()
                };
                let note = format!("Preempted by pod {} on node {}", pod.key, nomination.node);
                recorder.publish(reference, EventType::Normal, "Preempted", note, "Preempting").await;
            }
            Err(err) => tracing::warn!(victim, error = %err, "scheduler: could not preempt a pod"),
        }
    }
}

async fn mark_unschedulable(client: &Client, pod: &PodInfo, message: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), pod.namespace());
    let name = pod.pod.metadata.name.clone().unwrap_or_default();
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
        "lastProbeTime": null, "lastTransitionTime": now,
    }]}});
    if let Err(err) = pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
        tracing::debug!(pod = %pod.key, error = %err, "scheduler: could not record the unschedulable condition");
    }
}

async fn report(recorder: &Recorder, pod: &PodInfo, type_: EventType, reason: &str, note: String, action: &str) {
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.pod.metadata.name.clone(),
        namespace: pod.pod.metadata.namespace.clone(),
        uid: pod.pod.metadata.uid.clone(),
        ..Default::default()
    };
    recorder.publish(reference, type_, reason, note, action).await;
}

/// Whether an event reports something normal or something to look at.
#[derive(Clone, Copy)]
enum EventType {
    Normal,
    Warning,
}

/// Writes `events.k8s.io/v1` Events about pods. Each event is one create: the scheduler reports each pod's
/// outcome once per attempt, so there is nothing to aggregate, and keeping a cache of past events (as
/// general-purpose recorders do) would cost a scan per event at thousands of pods per second.
#[derive(Clone)]
struct Recorder {
    client: Client,
    instance: String,
}

impl Recorder {
    async fn publish(&self, regarding: ObjectReference, type_: EventType, reason: &str, note: String, action: &str) {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let now = jiff::Timestamp::now();
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or("pod"), now.as_nanosecond());
        let event = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "reportingController": "default-scheduler",
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "regarding": regarding,
            "note": note,
            "type": match type_ { EventType::Normal => "Normal", EventType::Warning => "Warning" },
        });
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &namespace);
        let parsed = match serde_json::from_value(event) {
            Ok(parsed) => parsed,
            Err(err) => {
                tracing::debug!(error = %err, "scheduler: could not build an event");
                return;
            }
        };
        if let Err(err) = events.create(&PostParams::default(), &parsed).await {
            tracing::debug!(reason, error = %err, "scheduler: could not record an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;

    fn explanation(rejected: &[(&str, &str)], feasible: usize) -> Explanation {
        Explanation {
            rejected: rejected.iter().map(|(n, r)| (Arc::from(*n), Status::unschedulable(*r))).collect(),
            scores: (0..feasible.min(SCORES_KEPT))
                .map(|i| ScoredNode { node: Arc::from(format!("f{i}")), total: 100 - i as i64, parts: Vec::new() })
                .collect(),
            feasible_nodes: feasible,
            total_nodes: rejected.len() + feasible,
            evaluated_nodes: rejected.len() + feasible,
        }
    }

    #[test]
    fn attempts_group_rejected_nodes_by_verdict_and_keep_the_best_scores() {
        let e = explanation(&[("a", "Insufficient cpu"), ("b", "Insufficient cpu"), ("c", "x")], SCORES_KEPT + 5);
        let attempt = Attempt::new(AttemptResult::Placed { node: "f0".into() }, e);
        assert_eq!(attempt.rejected.len(), 2);
        assert_eq!(attempt.rejected[0].0.reasons, vec!["Insufficient cpu"]);
        assert_eq!(attempt.rejected[0].0.code, Code::Unschedulable);
        assert_eq!(attempt.rejected[0].1, vec![Arc::from("a"), Arc::from("b")]);
        assert_eq!(attempt.scores.len(), SCORES_KEPT);
        assert_eq!(attempt.feasible_nodes, SCORES_KEPT + 5);
        assert_eq!(&*attempt.scores[0].node, "f0");
    }

    #[test]
    fn only_the_most_recent_attempts_are_kept() {
        let mut attempts = Attempts::default();
        for i in 0..ATTEMPTS_KEPT + 3 {
            let result = AttemptResult::Placed { node: format!("n{i}") };
            attempts.record(&format!("ns/p{i}"), Attempt::new(result, explanation(&[], 1)));
        }
        assert_eq!(attempts.by_pod.len(), ATTEMPTS_KEPT);
        assert!(!attempts.by_pod.contains_key("ns/p2"));
        // Recording p3 again makes it the newest, so the next new pod pushes out p4 instead.
        attempts.record("ns/p3", Attempt::new(AttemptResult::Placed { node: "again".into() }, explanation(&[], 1)));
        attempts.record("ns/new", Attempt::new(AttemptResult::Placed { node: "n".into() }, explanation(&[], 1)));
        assert_eq!(attempts.by_pod.len(), ATTEMPTS_KEPT);
        assert!(attempts.by_pod.contains_key("ns/p3"));
        assert!(!attempts.by_pod.contains_key("ns/p4"));
        assert_eq!(attempts.by_pod["ns/p3"].result, AttemptResult::Placed { node: "again".into() });
        attempts.forget("ns/p3");
        assert!(!attempts.by_pod.contains_key("ns/p3"));
        assert_eq!(attempts.order.len(), ATTEMPTS_KEPT - 1);
    }
}
