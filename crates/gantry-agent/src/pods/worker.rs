//! One pod's worker: it owns everything the node does for that pod, one step at a time, through the
//! kubelet's lifecycle — syncing (sandbox, volumes, images, init containers in order, app containers with
//! their restart policy and back-off, probes, status), terminating (preStop hooks, graceful stops within the
//! grace period) and terminated (the deletion confirmed to the API server, every trace removed).
//!
//! The worker keeps nothing that matters only in memory: which containers exist, their attempts and exits all
//! come from the runtime, so a worker started after an agent restart adopts the pod's running containers
//! instead of starting them again.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gantry_runtime::cri::{
    ContainerFilter, ContainerState, ContainerStatus as RuntimeStatus, PodSandboxStatus, RegistryAuth, SandboxState,
};
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::spec::{self, QosClass};
use super::status::{self, ContainerView, StatusInputs};
use super::{PodContext, PodEntry};
use crate::events::{EventType, pod_reference};
use crate::probes::{ContainerProbes, ProbeAction, ProbeEvent, ProbeTarget, instant_from_unix_nanos};

/// How often a worker looks at its running containers (the kubelet's PLEG relists every second).
const POLL: Duration = Duration::from_secs(1);
/// How often a worker with nothing running syncs anyway (volume contents, status).
const RESYNC: Duration = Duration::from_secs(10);
/// The kubelet's floor for stopping a container, even when the pod was deleted with a grace period of 0.
const MIN_GRACE: i64 = 2;
/// Termination messages are cut to this, as the kubelet cuts them.
const MAX_MESSAGE: usize = 4096;

/// A pod's phase once it has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Succeeded,
    Failed,
}

/// The worker of one pod.
pub(super) struct PodWorker {
    ctx: Arc<PodContext>,
    uid: String,
    pod: Pod,
    qos: QosClass,
    sandbox: Option<PodSandboxStatus>,
    /// The runtime's instances by container name, newest first.
    instances: BTreeMap<String, Vec<RuntimeStatus>>,
    /// Why containers wait, by name, as decided in the last sync.
    waiting: HashMap<String, (String, String)>,
    backoff: Backoff,
    /// Containers a probe wants restarted, by container ID: the event's message and the grace period.
    restart_requested: HashMap<String, (String, i64)>,
    /// The probes of running containers, by container ID.
    probes: HashMap<String, ContainerProbes>,
    probe_events: mpsc::UnboundedSender<ProbeEvent>,
    probe_inbox: Option<mpsc::UnboundedReceiver<ProbeEvent>>,
    /// Signalled when a probe's verdict changes, so that readiness reaches the API without waiting for a poll.
    probe_changed: Arc<Notify>,
    /// The pod's volumes, once set up, and when they were last refreshed.
    volumes: Option<crate::volumes::PodVolumes>,
    volumes_refreshed: Option<Instant>,
    /// When pulls of an image last failed, by back-off key.
    pull_failures: HashMap<String, Instant>,
    ended: Option<Ended>,
    last_status: Option<serde_json::Value>,
}

fn now_time() -> Time {
    Time(jiff::Timestamp::now())
}

/// The `Instant` of a Unix time in nanoseconds (for back-off, which counts from events the runtime recorded).
fn instant_of(unix_nanos: i64) -> Instant {
    let now = Instant::now();
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let event = Duration::from_nanos(u64::try_from(unix_nanos).unwrap_or(0));
    now.checked_sub(since_epoch.saturating_sub(event)).unwrap_or(now)
}

fn container_label_key(name: &str) -> String {
    format!("container/{name}")
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

impl PodWorker {
    pub(super) fn new(ctx: Arc<PodContext>, pod: Pod) -> PodWorker {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let qos = spec::qos_class(&pod);
        // A pod that ended before this worker started stays ended: nothing of it runs again.
        let ended = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") => Some(Ended::Succeeded),
            Some("Failed") => Some(Ended::Failed),
            _ => None,
        };
        let (probe_events, probe_inbox) = mpsc::unbounded_channel();
        PodWorker {
            ctx,
            uid,
            pod,
            qos,
            sandbox: None,
            instances: BTreeMap::new(),
            waiting: HashMap::new(),
            backoff: Backoff::default(),
            restart_requested: HashMap::new(),
            probes: HashMap::new(),
            probe_events,
            probe_inbox: Some(probe_inbox),
            probe_changed: Arc::new(Notify::new()),
            pull_failures: HashMap::new(),
            volumes: None,
            volumes_refreshed: None,
            ended,
            last_status: None,
        }
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }

    fn pod_dir(&self) -> PathBuf {
        self.ctx.pods_dir.join(&self.uid)
    }

    fn restart_policy(&self) -> String {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into())
    }

    fn event(&self, container: Option<&Container>, type_: EventType, reason: &str, message: String) {
        let field_path = container.map(|c| {
            let init = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|i| i.iter().any(|x| x.name == c.name));
            format!("spec.{}{{{}}}", if init { "initContainers" } else { "containers" }, c.name)
        });
        self.ctx.recorder.record(pod_reference(&self.pod, field_path), type_, reason, message);
    }

    /// Runs until the pod is gone (deleted and cleaned up) or `shutdown`, which leaves its containers running
    /// for the next agent to adopt.
    pub(super) async fn run(mut self, mut updates: watch::Receiver<Option<Pod>>, shutdown: CancellationToken) {
        let Some(mut probe_inbox) = self.probe_inbox.take() else { return };
        let probe_changed = self.probe_changed.clone();
        loop {
            let update = updates.borrow_and_update().clone();
            let removed = match update {
                Some(pod) => {
                    // A status wiped by someone else (a recreated mirror pod) is written again.
                    if pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_none() {
                        self.last_status = None;
                    }
                    self.pod = pod;
                    false
                }
                None => true,
            };
            let wake = if removed || self.pod.metadata.deletion_timestamp.is_some() {
                self.terminate(!removed).await;
                if self.instances.values().flatten().all(|c| c.state != ContainerState::Running) {
                    self.remove_everything(!removed).await;
                    return;
                }
                Duration::from_millis(500)
            } else {
                self.sync().await
            };
            let deadline = tokio::time::Instant::now() + wake;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = updates.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if self.significant(updates.borrow().as_ref()) {
                            break;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    Some(event) = probe_inbox.recv() => {
                        if self.probe_event(event) {
                            break;
                        }
                    }
                    _ = probe_changed.notified() => break,
                }
            }
        }
    }

    /// Records a probe's failure; true when the worker must act on it now (a container to restart).
    fn probe_event(&mut self, event: ProbeEvent) -> bool {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let container =
            spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == event.container);
        self.event(container, EventType::Warning, "Unhealthy", event.message());
        let ProbeAction::Restart { termination_grace_period_seconds } = event.action else { return false };
        let Some(current) = self.latest(&event.container).filter(|s| s.state == ContainerState::Running) else {
            return false;
        };
        let id = current.id.clone();
        let grace = termination_grace_period_seconds.unwrap_or_else(|| self.grace_period()).max(MIN_GRACE);
        let message = event.restart_message().unwrap_or_else(|| format!("Stopping container {}", event.container));
        self.restart_requested.insert(id, (message, grace));
        true
    }

    /// Where a container's probes and hooks go: the pod's IP (the node's for hostNetwork).
    fn probe_target(&self, container: &Container, container_id: &str) -> ProbeTarget {
        let pod_ip = match &self.sandbox {
            Some(s) if !s.ip.is_empty() => Some(s.ip.clone()),
            _ => self.ctx.host_ips.first().cloned(),
        };
        ProbeTarget {
            container_id: container_id.to_string(),
            pod_ip,
            ports: container.ports.clone().unwrap_or_default(),
        }
    }

    /// Starts the probes of running containers that have none yet, and drops those of containers that stopped.
    fn sync_probes(&mut self) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let running: HashMap<String, (Container, RuntimeStatus)> = spec
            .containers
            .iter()
            .filter(|c| c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some())
            .filter_map(|c| {
                self.latest(&c.name)
                    .filter(|s| s.state == ContainerState::Running)
                    .map(|s| (s.id.clone(), (c.clone(), s.clone())))
            })
            .collect();
        self.probes.retain(|id, _| running.contains_key(id));
        for (id, (container, status)) in running {
            if self.probes.contains_key(&id) {
                continue;
            }
            let target = self.probe_target(&container, &id);
            let started_at = instant_from_unix_nanos(status.started_at);
            let probes = ContainerProbes::start(
                self.ctx.runtime.clone(),
                &container,
                target,
                started_at,
                self.probe_events.clone(),
            );
            let mut verdicts = probes.watch();
            let notify = self.probe_changed.clone();
            // Ends when the probes are dropped (their sender goes with them).
            tokio::spawn(async move {
                while verdicts.changed().await.is_ok() {
                    notify.notify_one();
                }
            });
            self.probes.insert(id, probes);
        }
    }

    /// Whether an update of the pod calls for a sync now. The worker's own status writes come back as updates;
    /// they wait for the next planned sync, as the kubelet's status manager does not wake its pod workers.
    fn significant(&self, update: Option<&Pod>) -> bool {
        let Some(pod) = update else { return true };
        let (new, old) = (&pod.metadata, &self.pod.metadata);
        pod.spec != self.pod.spec
            || new.deletion_timestamp != old.deletion_timestamp
            || new.labels != old.labels
            || new.annotations != old.annotations
            || pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_none()
    }

    /// One pass over the pod: returns when the worker wants to look again.
    async fn sync(&mut self) -> Duration {
        if self.ended.is_some() {
            return self.sync_ended().await;
        }
        let mut wake = RESYNC;
        if let Err(message) = self.ensure_sandbox().await {
            tracing::warn!(pod = %self.name(), %message, "sandbox");
            self.publish_status().await;
            return Duration::from_secs(2);
        }
        if !self.prepare_volumes().await {
            self.publish_status().await;
            self.publish_entry();
            return Duration::from_secs(2);
        }
        self.poll_instances().await;
        wake = wake.min(self.sync_containers().await);
        self.sync_probes();
        if self.ended.is_some() {
            self.stop_all(self.grace_period(), false).await;
        }
        self.publish_status().await;
        self.publish_entry();
        if self.instances.values().any(|v| v.first().is_some_and(|c| c.state == ContainerState::Running)) {
            wake = wake.min(POLL);
        }
        wake
    }

    /// A pod that ended: nothing of it runs again, its exited containers stay for their logs and status until
    /// the pod is deleted. (The kubelet also stops the sandbox; here its network stays until the deletion.)
    async fn sync_ended(&mut self) -> Duration {
        if self.sandbox.is_none() {
            self.ensure_sandbox_for_teardown().await;
        }
        self.poll_instances().await;
        self.stop_all(self.grace_period(), false).await;
        if !self.instances.is_empty() {
            self.publish_status().await;
        }
        self.publish_entry();
        RESYNC
    }

    async fn ensure_sandbox(&mut self) -> Result<(), String> {
        if let Some(sandbox) = &self.sandbox {
            match self.ctx.runtime.pod_sandbox_status(&sandbox.id).await {
                Ok(status) if status.state == SandboxState::Ready => {
                    self.sandbox = Some(status);
                    return Ok(());
                }
                _ => self.sandbox = None,
            }
        }
        let all = self.ctx.runtime.list_pod_sandboxes().await.map_err(|e| e.to_string())?;
        let mut ours: Vec<PodSandboxStatus> =
            all.into_iter().filter(|s| s.labels.get(spec::POD_UID_LABEL) == Some(&self.uid)).collect();
        ours.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        if let Some(ready) = ours.iter().find(|s| s.state == SandboxState::Ready) {
            self.sandbox = Some(ready.clone());
            return Ok(());
        }
        if self.ended.is_some() {
            return Err("the pod has ended".into());
        }
        // A sandbox that died takes its containers with it: they start again in the new one.
        for old in &ours {
            self.remove_sandbox(&old.id).await;
        }
        let attempt = ours.iter().map(|s| s.metadata.attempt + 1).max().unwrap_or(0);
        let logs = self.pod_dir().join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        let config = spec::sandbox_config(&self.pod, attempt, logs, self.qos, self.ctx.cluster_dns.as_ref());
        match self.ctx.runtime.run_pod_sandbox(&config).await {
            Ok(id) => {
                let status = self.ctx.runtime.pod_sandbox_status(&id).await.map_err(|e| e.to_string())?;
                self.sandbox = Some(status);
                self.instances.clear();
                Ok(())
            }
            Err(err) => {
                let message = format!("Failed to create pod sandbox: {err}");
                self.event(None, EventType::Warning, "FailedCreatePodSandBox", message.clone());
                Err(message)
            }
        }
    }

    /// Sets up the pod's volumes, and refreshes their contents (configMaps, secrets, downward API) every
    /// [`RESYNC`]; false while they cannot be set up (a FailedMount event says why).
    async fn prepare_volumes(&mut self) -> bool {
        if self.volumes.is_some() && self.volumes_refreshed.is_some_and(|at| at.elapsed() < RESYNC) {
            return true;
        }
        let pod_ips: Vec<String> = self.sandbox.iter().filter(|s| !s.ip.is_empty()).map(|s| s.ip.clone()).collect();
        match self.ctx.volumes.prepare(&self.pod, &pod_ips).await {
            Ok(volumes) => {
                self.volumes = Some(volumes);
                self.volumes_refreshed = Some(Instant::now());
                true
            }
            Err(err) => {
                self.event(None, EventType::Warning, "FailedMount", err.to_string());
                // Volumes set up before keep serving running containers; new containers wait.
                self.volumes.is_some()
            }
        }
    }

    async fn remove_sandbox(&self, id: &str) {
        let filter = ContainerFilter { sandbox_id: Some(id.to_string()), ..Default::default() };
        for container in self.ctx.runtime.list_containers(&filter).await.unwrap_or_default() {
            let _ = self.ctx.runtime.stop_container(&container.id, 0).await;
            let _ = self.ctx.runtime.remove_container(&container.id).await;
        }
        let _ = self.ctx.runtime.stop_pod_sandbox(id).await;
        if let Err(err) = self.ctx.runtime.remove_pod_sandbox(id).await {
            tracing::warn!(sandbox = id, error = %err, "removing a dead sandbox");
        }
    }

    /// Reloads the runtime's instances of the pod's containers; keeps the newest two of each (the current one
    /// and the one `lastState` and `logs --previous` need) and removes older ones.
    async fn refresh_instances(&mut self) {
        let Some(sandbox) = &self.sandbox else { return };
        let filter = ContainerFilter { sandbox_id: Some(sandbox.id.clone()), ..Default::default() };
        let Ok(list) = self.ctx.runtime.list_containers(&filter).await else { return };
        let mut instances: BTreeMap<String, Vec<RuntimeStatus>> = BTreeMap::new();
        for status in list {
            let name = status.labels.get(spec::CONTAINER_NAME_LABEL).cloned().unwrap_or_else(|| status.name.clone());
            instances.entry(name).or_default().push(status);
        }
        for list in instances.values_mut() {
            list.sort_by_key(|s| std::cmp::Reverse((s.attempt, s.created_at)));
            for old in list.drain(2.min(list.len())..) {
                if old.state != ContainerState::Running {
                    let _ = self.ctx.runtime.remove_container(&old.id).await;
                }
            }
        }
        self.instances = instances;
    }

    /// Re-reads the newest instance of each container, the only ones that change by themselves (they exit).
    /// The runtime's full listing reads every container on the node, so it is kept for when the worker itself
    /// creates or removes instances, or knows none yet (a new sandbox, an adopted pod).
    async fn poll_instances(&mut self) {
        if self.instances.is_empty() {
            return self.refresh_instances().await;
        }
        let runtime = self.ctx.runtime.clone();
        let mut lost = false;
        for latest in self.instances.values_mut().filter_map(|list| list.first_mut()) {
            if latest.state == ContainerState::Exited {
                continue;
            }
            match runtime.container_status(&latest.id).await {
                Ok(status) => *latest = status,
                Err(_) => lost = true,
            }
        }
        if lost {
            self.refresh_instances().await;
        }
    }

    fn latest(&self, name: &str) -> Option<&RuntimeStatus> {
        self.instances.get(name).and_then(|v| v.first())
    }

    /// Init containers in order, then app containers: starts what should run; returns when to look again.
    async fn sync_containers(&mut self) -> Duration {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = self.restart_policy();
        let mut wake = RESYNC;
        self.waiting.clear();
        let app_started = spec.containers.iter().any(|c| self.latest(&c.name).is_some());
        for init in spec.init_containers.iter().flatten() {
            // Sidecars (init containers with restartPolicy Always) start in order like the others, then keep
            // running beside the app containers, restarted whenever they exit.
            let sidecar = init.restart_policy.as_deref() == Some("Always");
            if app_started && !sidecar {
                continue;
            }
            match self.latest(&init.name).map(|s| (s.state, s.exit_code, s.finished_at)) {
                Some((ContainerState::Exited, 0, _)) if !sidecar => continue,
                Some((ContainerState::Running, _, _)) if sidecar => continue,
                Some((ContainerState::Running, _, _)) => return POLL,
                Some((ContainerState::Exited, code, finished)) => {
                    if policy == "Never" && !sidecar {
                        self.ended = Some(Ended::Failed);
                        return RESYNC;
                    }
                    let wake = self.restart_after_backoff(init, code, finished).await;
                    if !app_started {
                        return wake;
                    }
                }
                Some((ContainerState::Created | ContainerState::Unknown, _, _)) | None => {
                    self.start(init).await;
                    if !app_started {
                        return POLL;
                    }
                }
            }
        }
        for container in &spec.containers {
            let latest = self.latest(&container.name).cloned();
            match latest {
                None => self.start(container).await,
                Some(current) if current.state == ContainerState::Running => {
                    let hash = current.annotations.get(spec::CONTAINER_HASH_ANNOTATION);
                    let changed = hash.is_some_and(|h| *h != spec::container_hash(container));
                    if let Some((message, grace)) = self.restart_requested.remove(&current.id) {
                        self.probes.remove(&current.id);
                        self.kill(container, &current, grace, &message).await;
                        wake = Duration::ZERO;
                    } else if changed {
                        let message = format!("Container {} definition changed, will be restarted", container.name);
                        self.probes.remove(&current.id);
                        self.kill(container, &current, self.grace_period(), &message).await;
                        wake = Duration::ZERO;
                    }
                }
                Some(current) if current.state == ContainerState::Exited => {
                    if should_restart(&policy, current.exit_code) {
                        wake = wake
                            .min(self.restart_after_backoff(container, current.exit_code, current.finished_at).await);
                    }
                }
                Some(_) => self.start(container).await,
            }
        }
        // Every app container done for good: the pod has ended.
        let done = spec.containers.iter().all(|c| {
            self.latest(&c.name)
                .is_some_and(|s| s.state == ContainerState::Exited && !should_restart(&policy, s.exit_code))
        });
        if done && !spec.containers.is_empty() {
            let all_ok = spec.containers.iter().all(|c| self.latest(&c.name).is_some_and(|s| s.exit_code == 0));
            self.ended = Some(if all_ok { Ended::Succeeded } else { Ended::Failed });
        }
        wake
    }

    /// Restarts an exited container unless it is backing off; returns when to look again.
    async fn restart_after_backoff(&mut self, container: &Container, _exit_code: i32, finished_at: i64) -> Duration {
        let key = container_label_key(&container.name);
        let finished = instant_of(finished_at);
        if let Some(left) = self.backoff.remaining(&key, finished, Instant::now()) {
            let delay = self.backoff.delay(&key).unwrap_or(left);
            let message = format!(
                "back-off {} restarting failed container={} pod={}_{}({})",
                humanize(delay),
                container.name,
                self.name(),
                self.namespace(),
                self.uid
            );
            self.event(Some(container), EventType::Warning, "BackOff", "Back-off restarting failed container".into());
            self.waiting.insert(container.name.clone(), ("CrashLoopBackOff".into(), message));
            return left;
        }
        self.backoff.next(&key, finished);
        self.start(container).await;
        POLL
    }

    /// Stops one running container (a failed probe, a changed spec); it restarts per the restart policy.
    async fn kill(&mut self, container: &Container, current: &RuntimeStatus, grace: i64, why: &str) {
        self.event(Some(container), EventType::Normal, "Killing", why.to_string());
        tracing::info!(pod = %self.name(), container = %container.name, why, "stopping container");
        if let Err(err) = self.ctx.runtime.stop_container(&current.id, grace).await {
            tracing::warn!(container = %container.name, error = %err, "stop");
        }
        self.refresh_instances().await;
    }

    fn grace_period(&self) -> i64 {
        let requested = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30);
        requested.max(MIN_GRACE)
    }

    /// Creates and starts the next instance of a container: image, environment, mounts, then the runtime.
    async fn start(&mut self, container: &Container) {
        let Some(sandbox) = self.sandbox.clone() else { return };
        let attempt = self.latest(&container.name).map(|s| s.attempt + 1).unwrap_or(0);
        // A created-but-never-started instance (the agent stopped between the two) is replaced.
        if let Some(stale) = self.latest(&container.name).filter(|s| s.state == ContainerState::Created).cloned() {
            let _ = self.ctx.runtime.remove_container(&stale.id).await;
        }
        let image = match self.ensure_image(container).await {
            Ok(image) => image,
            Err((reason, message)) => {
                self.waiting.insert(container.name.clone(), (reason, message));
                return;
            }
        };
        let env = match self.ctx.environment(&self.pod, container, &sandbox).await {
            Ok(env) => env,
            Err(message) => {
                self.event(Some(container), EventType::Warning, "Failed", format!("Error: {message}"));
                self.waiting.insert(container.name.clone(), ("CreateContainerConfigError".into(), message));
                return;
            }
        };
        let (command, args) = crate::env::command_and_args(container, &env);
        let message_file =
            self.pod_dir().join("containers").join(&container.name).join(format!("{attempt}-termination-log"));
        let Some(volumes) = self.volumes.as_ref() else { return };
        let mut mounts = match self.ctx.volumes.mounts_for(&self.pod, container, volumes, &env) {
            Ok(mounts) => mounts,
            Err(err) => {
                let message = err.to_string();
                self.event(Some(container), EventType::Warning, "Failed", format!("Error: {message}"));
                self.waiting.insert(container.name.clone(), ("CreateContainerConfigError".into(), message));
                return;
            }
        };
        if let Err(err) = create_message_file(&message_file) {
            self.waiting.insert(container.name.clone(), ("CreateContainerError".into(), err));
            return;
        }
        let message_path = container.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
        mounts.push(gantry_runtime::cri::Mount {
            container_path: message_path,
            host_path: message_file.clone(),
            readonly: false,
        });
        let inputs = spec::ContainerInputs {
            attempt,
            envs: env,
            command,
            args,
            mounts,
            termination_message_file: message_file,
            image,
            memory_capacity: self.ctx.memory_capacity,
        };
        let config = spec::container_config(&self.pod, container, self.qos, inputs);
        let sandbox_config = spec::sandbox_config(
            &self.pod,
            sandbox.metadata.attempt,
            self.pod_dir().join("logs"),
            self.qos,
            self.ctx.cluster_dns.as_ref(),
        );
        let id = match self.ctx.runtime.create_container(&sandbox.id, &config, &sandbox_config).await {
            Ok(id) => id,
            Err(err) => {
                self.event(Some(container), EventType::Warning, "Failed", format!("Error: {err}"));
                self.waiting.insert(container.name.clone(), ("CreateContainerError".into(), err.to_string()));
                return;
            }
        };
        self.event(Some(container), EventType::Normal, "Created", format!("Created container: {}", container.name));
        if let Err(err) = self.ctx.runtime.start_container(&id).await {
            self.event(Some(container), EventType::Warning, "Failed", format!("Error: {err}"));
            self.waiting.insert(container.name.clone(), ("RunContainerError".into(), err.to_string()));
            self.refresh_instances().await;
            return;
        }
        self.event(Some(container), EventType::Normal, "Started", format!("Started container {}", container.name));
        if let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let target = self.probe_target(container, &id);
            let deadline = Duration::from_secs(self.grace_period().unsigned_abs());
            if let Err(err) = crate::hooks::run_hook(self.ctx.runtime.as_ref(), hook, &target, deadline).await {
                let pod = format!("{}_{}({})", self.name(), self.namespace(), self.uid);
                let message = err.event_message(hook, &container.name, &pod);
                self.event(Some(container), EventType::Warning, "FailedPostStartHook", message);
                // As the kubelet does: a container whose postStart hook failed is killed (and restarted per policy).
                let why = format!("FailedPostStartHook: stopping container {}", container.name);
                self.event(Some(container), EventType::Normal, "Killing", why);
                if let Err(err) = self.ctx.runtime.stop_container(&id, self.grace_period()).await {
                    tracing::warn!(container = %container.name, error = %err, "stop after a failed postStart hook");
                }
            }
        }
        self.refresh_instances().await;
    }

    /// The image per the pull policy; on failure the waiting reason and message.
    async fn ensure_image(&mut self, container: &Container) -> Result<String, (String, String)> {
        let image = container.image.clone().unwrap_or_default();
        if image.is_empty() {
            return Err(("InvalidImageName".into(), "the container has no image".into()));
        }
        let reference = match gantry_runtime::image::Reference::parse(&image) {
            Ok(reference) => reference,
            Err(err) => {
                let message = format!("Failed to apply default image tag \"{image}\": {err}");
                self.event(Some(container), EventType::Warning, "InspectFailed", message.clone());
                return Err(("InvalidImageName".into(), message));
            }
        };
        let policy = container.image_pull_policy.clone().unwrap_or_else(|| {
            if reference.digest().is_none() && reference.tag().is_none_or(|t| t == "latest") {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let present = self.ctx.images.image_status(&image).await.ok().flatten();
        if let Some(found) = &present
            && policy != "Always"
        {
            let message = format!("Container image \"{image}\" already present on machine");
            self.event(Some(container), EventType::Normal, "Pulled", message);
            return Ok(found.id.clone());
        }
        if policy == "Never" {
            let message = format!("Container image \"{image}\" is not present with pull policy of Never");
            self.event(Some(container), EventType::Warning, "ErrImageNeverPull", message.clone());
            return Err(("ErrImageNeverPull".into(), message));
        }
        let key = format!("image/{image}");
        if let Some(last_failure) = self.pull_failures.get(&key).copied()
            && self.backoff.remaining(&key, last_failure, Instant::now()).is_some()
        {
            let message = format!("Back-off pulling image \"{image}\"");
            self.event(Some(container), EventType::Normal, "BackOff", message.clone());
            return Err(("ImagePullBackOff".into(), message));
        }
        self.event(Some(container), EventType::Normal, "Pulling", format!("Pulling image \"{image}\""));
        let auth = self.registry_auth(reference.registry()).await;
        let started = Instant::now();
        match self.ctx.images.pull_image(&image, &auth, None).await {
            Ok(id) => {
                self.pull_failures.remove(&key);
                self.backoff.reset(&key);
                let message =
                    format!("Successfully pulled image \"{image}\" in {:.3}s", started.elapsed().as_secs_f64());
                self.event(Some(container), EventType::Normal, "Pulled", message);
                Ok(id)
            }
            Err(err) => {
                let now = Instant::now();
                self.pull_failures.insert(key.clone(), now);
                self.backoff.next(&key, now);
                let message = format!("Failed to pull image \"{image}\": {err}");
                self.event(Some(container), EventType::Warning, "Failed", message.clone());
                self.event(Some(container), EventType::Warning, "Failed", "Error: ErrImagePull".into());
                // Even when the image is present: with `Always`, a pull the registry refuses must stop the
                // container (this is how imagePullSecrets guard images already on the node).
                Err(("ErrImagePull".into(), message))
            }
        }
    }

    /// Credentials for `registry` from the pod's imagePullSecrets (dockerconfigjson or dockercfg).
    async fn registry_auth(&self, registry: &str) -> RegistryAuth {
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        let names = self.pod.spec.as_ref().and_then(|s| s.image_pull_secrets.clone()).unwrap_or_default();
        for name in names.into_iter().filter_map(|r| Some(r.name).filter(|n| !n.is_empty())) {
            let Ok(secret) = secrets.get(&name).await else {
                tracing::debug!(secret = %name, "imagePullSecret not found");
                continue;
            };
            let data = secret.data.unwrap_or_default();
            let json = match (data.get(".dockerconfigjson"), data.get(".dockercfg")) {
                (Some(config), _) => config.0.clone(),
                // The legacy form is the `auths` map on its own.
                (None, Some(cfg)) => {
                    let inner: serde_json::Value = serde_json::from_slice(&cfg.0).unwrap_or_default();
                    serde_json::to_vec(&serde_json::json!({ "auths": inner })).unwrap_or_default()
                }
                (None, None) => continue,
            };
            if let Ok(Some(auth)) = gantry_runtime::image::credentials_from_docker_config(&json, registry) {
                return auth;
            }
        }
        RegistryAuth::Anonymous
    }

    /// Stops every running container (preStop hooks first) within `grace` seconds.
    async fn stop_all(&mut self, grace: i64, announce: bool) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let running: Vec<(Container, RuntimeStatus)> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .filter_map(|c| {
                self.latest(&c.name).filter(|s| s.state == ContainerState::Running).map(|s| (c.clone(), s.clone()))
            })
            .collect();
        if running.is_empty() {
            return;
        }
        let stops = running.iter().map(|(container, status)| {
            if announce {
                self.event(
                    Some(container),
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {}", container.name),
                );
            }
            let runtime = self.ctx.runtime.clone();
            let ctx = self.ctx.clone();
            let pod = self.pod.clone();
            let sandbox = self.sandbox.clone();
            async move {
                let started = Instant::now();
                ctx.pre_stop(&pod, container, status, sandbox.as_ref(), Duration::from_secs(grace as u64)).await;
                let left = grace - started.elapsed().as_secs() as i64;
                if let Err(err) = runtime.stop_container(&status.id, left.max(MIN_GRACE)).await {
                    tracing::warn!(container = %container.name, error = %err, "stop");
                }
            }
        });
        futures::future::join_all(stops).await;
        self.refresh_instances().await;
    }

    /// The pod is being deleted (or was removed from the API): stop everything within the grace period.
    async fn terminate(&mut self, in_api: bool) {
        if self.sandbox.is_none() {
            let _ = self.ensure_sandbox_for_teardown().await;
        }
        self.refresh_instances().await;
        for probes in self.probes.values() {
            probes.pod_terminating();
        }
        self.stop_all(self.grace_period(), true).await;
        self.probes.clear();
        if in_api {
            self.publish_status().await;
        }
    }

    /// Finds the pod's sandbox (after an agent restart) without creating one.
    async fn ensure_sandbox_for_teardown(&mut self) -> Option<()> {
        let all = self.ctx.runtime.list_pod_sandboxes().await.ok()?;
        self.sandbox = all
            .into_iter()
            .filter(|s| s.labels.get(spec::POD_UID_LABEL) == Some(&self.uid))
            .max_by_key(|s| s.created_at);
        Some(())
    }

    /// Everything stopped: remove the containers, the sandbox, the volumes and the pod's files, then confirm the
    /// deletion to the API server.
    async fn remove_everything(&mut self, in_api: bool) {
        let all = self.ctx.runtime.list_pod_sandboxes().await.unwrap_or_default();
        for sandbox in all.iter().filter(|s| s.labels.get(spec::POD_UID_LABEL) == Some(&self.uid)) {
            self.remove_sandbox(&sandbox.id).await;
        }
        self.ctx.teardown_volumes(&self.uid).await;
        let dir = self.pod_dir();
        if let Err(err) = std::fs::remove_dir_all(&dir)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %err, "removing the pod's files");
        }
        self.ctx.forget(&self.namespace(), &self.name());
        if in_api {
            let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
                ..Default::default()
            };
            match pods.delete(&self.name(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(err) => tracing::warn!(pod = %self.name(), error = %err, "confirming the deletion"),
            }
        }
    }

    fn views(&self, containers: &[Container]) -> BTreeMap<String, ContainerView> {
        containers
            .iter()
            .map(|c| {
                let list = self.instances.get(&c.name);
                let latest = list.and_then(|l| l.first()).cloned();
                let previous = list.and_then(|l| l.get(1)).cloned();
                // A container without probes is ready and started once it runs.
                let (ready, started) = latest
                    .as_ref()
                    .map(|l| self.probes.get(&l.id).map(|p| (p.ready(), p.started())).unwrap_or((true, true)))
                    .unwrap_or((false, false));
                let view = ContainerView {
                    message: latest.as_ref().and_then(|l| termination_message(c, l)),
                    previous_message: previous.as_ref().and_then(|p| termination_message(c, p)),
                    latest,
                    previous,
                    waiting: self.waiting.get(&c.name).cloned(),
                    ready,
                    started,
                };
                (c.name.clone(), view)
            })
            .collect()
    }

    /// Writes the pod's status when it differs from what was written last.
    async fn publish_status(&mut self) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let init = self.views(spec.init_containers.as_deref().unwrap_or_default());
        let containers = self.views(&spec.containers);
        let pod_ips: Vec<String> = match &self.sandbox {
            Some(s) if !s.ip.is_empty() => {
                std::iter::once(s.ip.clone()).chain(s.additional_ips.iter().cloned()).collect()
            }
            _ if spec.host_network.unwrap_or(false) => self.ctx.host_ips.clone(),
            _ => Vec::new(),
        };
        let ended = self.ended.map(|e| match e {
            Ended::Succeeded => "Succeeded",
            Ended::Failed => "Failed",
        });
        let inputs = StatusInputs {
            init: &init,
            containers: &containers,
            sandbox_ready: self.sandbox.as_ref().is_some_and(|s| s.state == SandboxState::Ready),
            pod_ips: &pod_ips,
            host_ips: &self.ctx.host_ips,
            qos_class: self.qos.as_str(),
            terminal_phase: ended,
        };
        let status = status::pod_status(&self.pod, &inputs, &now_time());
        let Ok(value) = serde_json::to_value(&status) else { return };
        // Transition times are fresh on every computation for new conditions; compare without them.
        let comparable = strip_times(&value);
        if self.last_status.as_ref() == Some(&comparable) {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        let patch = serde_json::json!({ "status": value });
        match pods.patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(updated) => {
                self.pod.status = updated.status;
                self.last_status = Some(comparable);
            }
            Err(err) => tracing::debug!(pod = %self.name(), error = %err, "status update"),
        }
    }

    /// Tells the node API which containers serve logs, exec and attach for this pod.
    fn publish_entry(&self) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .map(|c| {
                let list = self.instances.get(&c.name);
                let latest = list.and_then(|l| l.first());
                let entry = super::ContainerEntry {
                    container_id: latest.map(|l| l.id.clone()),
                    log_path: latest.map(|l| self.pod_dir().join("logs").join(&l.log_path)),
                    previous_log_path: list
                        .and_then(|l| l.get(1))
                        .map(|p| self.pod_dir().join("logs").join(&p.log_path)),
                    waiting_reason: self
                        .waiting
                        .get(&c.name)
                        .map(|w| w.0.clone())
                        .or_else(|| latest.is_none().then(|| "ContainerCreating".into())),
                };
                (c.name.clone(), entry)
            })
            .collect();
        let entry =
            PodEntry { uid: self.uid.clone(), sandbox_id: self.sandbox.as_ref().map(|s| s.id.clone()), containers };
        self.ctx.publish(&self.namespace(), &self.name(), entry);
    }
}

fn strip_times(value: &serde_json::Value) -> serde_json::Value {
    let mut value = value.clone();
    if let Some(conditions) = value.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for condition in conditions {
            if let Some(map) = condition.as_object_mut() {
                map.remove("lastTransitionTime");
                map.remove("lastProbeTime");
            }
        }
    }
    value
}

fn create_message_file(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
    // Containers running as any user write their message here.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The termination message of an exited instance: its message file, or with `FallbackToLogsOnError` the end of
/// its log when it failed without one.
fn termination_message(container: &Container, status: &RuntimeStatus) -> Option<String> {
    if status.state != ContainerState::Exited {
        return None;
    }
    let file = status.annotations.get(spec::TERMINATION_MESSAGE_ANNOTATION)?;
    let mut text = std::fs::read(file).unwrap_or_default();
    text.truncate(MAX_MESSAGE);
    let text = String::from_utf8_lossy(&text).into_owned();
    if !text.is_empty() {
        return Some(text);
    }
    if status.exit_code != 0 && container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") {
        return Some(crate::pods::log_tail(&status.log_path, 80, 2048));
    }
    None
}

fn humanize(delay: Duration) -> String {
    let secs = delay.as_secs();
    if secs >= 60 { format!("{}m{}s", secs / 60, secs % 60) } else { format!("{secs}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_decide_on_the_exit_code() {
        assert!(should_restart("Always", 0));
        assert!(!should_restart("OnFailure", 0));
        assert!(should_restart("OnFailure", 1));
        assert!(!should_restart("Never", 1));
    }

    #[test]
    fn delays_are_written_as_go_durations() {
        assert_eq!(humanize(Duration::from_secs(10)), "10s");
        assert_eq!(humanize(Duration::from_secs(160)), "2m40s");
        assert_eq!(humanize(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn a_unix_time_in_the_past_is_an_instant_in_the_past() {
        let five_seconds_ago =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_nanos() as i64 - 5_000_000_000;
        let elapsed = instant_of(five_seconds_ago).elapsed();
        assert!(elapsed >= Duration::from_millis(4900) && elapsed < Duration::from_secs(6), "{elapsed:?}");
    }

    #[test]
    fn status_comparison_ignores_transition_times() {
        let a = serde_json::json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "x"}]});
        let b = serde_json::json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "y"}]});
        assert_eq!(strip_times(&a), strip_times(&b));
    }
}
