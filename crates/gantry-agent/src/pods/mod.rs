//! The pods bound to this node: a watch on them, one worker per pod (see [`worker`]), and what the workers
//! share (the runtime, the image service, the event recorder, the table the node API reads).
//!
//! Pods are keyed by UID: a pod deleted and created again under the same name is another pod with another
//! worker. When the watch (re)lists, pods missing from the list are treated as deleted, and on the first list
//! the runtime's sandboxes of pods that no longer exist are removed, so that nothing outlives its pod even
//! when the agent was down while it was deleted.

pub mod backoff;
pub mod spec;
pub mod static_pods;
pub mod status;
mod worker;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use gantry_runtime::cri::{ContainerStatus as RuntimeStatus, PodSandboxStatus};
use gantry_runtime::{ImageService, RuntimeService};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::events::EventRecorder;
pub use crate::server::{ContainerEntry, PodEntry};

/// What every pod worker shares.
pub struct PodContext {
    /// The API client.
    pub client: Client,
    /// Sandboxes and containers.
    pub runtime: Arc<dyn RuntimeService>,
    /// Images.
    pub images: Arc<dyn ImageService>,
    /// This node's name.
    pub node_name: String,
    /// This node's IPs (hostNetwork pods' IPs, `status.hostIP`).
    pub host_ips: Vec<String>,
    /// `DATA/pods`: each pod's volumes, logs and termination messages under its UID.
    pub pods_dir: PathBuf,
    /// The node's memory, for OOM scores.
    pub memory_capacity: i64,
    /// Events.
    pub recorder: EventRecorder,
    /// The static pods' manifest directory, if any.
    pub manifests_dir: Option<PathBuf>,
    /// The pods' volumes.
    pub volumes: crate::volumes::VolumeManager,
    /// What the node offers pods (defaults of the downward API).
    pub allocatable: crate::downward::NodeAllocatable,
    /// The Services, for the containers' service link variables; without it containers get none.
    pub services: Option<crate::env::ServiceCache>,
    /// The cluster DNS `ClusterFirst` pods resolve with; the node's resolver when `None`.
    pub cluster_dns: Option<spec::ClusterDns>,
    table: RwLock<HashMap<(String, String), PodEntry>>,
}

impl crate::server::PodDirectory for PodContext {
    fn pod(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        self.lookup(namespace, name)
    }
}

impl PodContext {
    /// A context for the workers of `node_name`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        runtime: Arc<dyn RuntimeService>,
        images: Arc<dyn ImageService>,
        node_name: String,
        host_ips: Vec<String>,
        pods_dir: PathBuf,
        memory_capacity: i64,
        recorder: EventRecorder,
        allocatable: crate::downward::NodeAllocatable,
    ) -> PodContext {
        let volumes = crate::volumes::VolumeManager::new(pods_dir.clone(), client.clone());
        volumes.set_node_allocatable(allocatable);
        PodContext {
            volumes,
            allocatable,
            client,
            runtime,
            images,
            node_name,
            host_ips,
            pods_dir,
            memory_capacity,
            recorder,
            manifests_dir: None,
            services: None,
            cluster_dns: None,
            table: RwLock::new(HashMap::new()),
        }
    }

    /// The node API's view of a pod.
    pub fn lookup(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        self.table.read().ok()?.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    fn publish(&self, namespace: &str, name: &str, entry: PodEntry) {
        if let Ok(mut table) = self.table.write() {
            table.insert((namespace.to_string(), name.to_string()), entry);
        }
    }

    fn forget(&self, namespace: &str, name: &str) {
        if let Ok(mut table) = self.table.write() {
            table.remove(&(namespace.to_string(), name.to_string()));
        }
    }

    /// The container's environment.
    async fn environment(
        &self,
        pod: &Pod,
        container: &Container,
        sandbox: &PodSandboxStatus,
    ) -> Result<Vec<(String, String)>, String> {
        let pod_ips: Vec<String> = if sandbox.ip.is_empty() {
            self.host_ips.clone()
        } else {
            std::iter::once(sandbox.ip.clone()).chain(sandbox.additional_ips.iter().cloned()).collect()
        };
        let service_links = match &self.services {
            Some(services) => services.links(pod).await.map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let facts = crate::env::EnvFacts {
            service_links,
            pod_ips,
            host_ips: self.host_ips.clone(),
            node_name: self.node_name.clone(),
            node_allocatable_cpu_millis: self.allocatable.cpu_millis,
            node_allocatable_memory_bytes: self.allocatable.memory_bytes,
            node_allocatable_ephemeral_storage_bytes: self.allocatable.ephemeral_storage_bytes,
        };
        crate::env::container_env(&self.client, pod, container, &facts).await.map_err(|e| e.to_string())
    }

    async fn teardown_volumes(&self, uid: &str) {
        if let Err(err) = self.volumes.teardown(uid).await {
            tracing::warn!(pod_uid = uid, error = %err, "tearing down volumes");
        }
    }

    /// Runs a container's preStop hook within `deadline`; a failure is reported, not fatal (the stop goes on).
    async fn pre_stop(
        &self,
        pod: &Pod,
        container: &Container,
        status: &RuntimeStatus,
        sandbox: Option<&PodSandboxStatus>,
        deadline: Duration,
    ) {
        let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else { return };
        let pod_ip = match sandbox {
            Some(s) if !s.ip.is_empty() => Some(s.ip.clone()),
            _ => self.host_ips.first().cloned(),
        };
        let target = crate::probes::ProbeTarget {
            container_id: status.id.clone(),
            pod_ip,
            ports: container.ports.clone().unwrap_or_default(),
        };
        match crate::hooks::run_hook(self.runtime.as_ref(), hook, &target, deadline).await {
            Ok(()) => {}
            // The kubelet reports nothing when the grace period runs out during the hook.
            Err(crate::hooks::HookError::DeadlineExceeded { .. }) => {}
            Err(err) => {
                let name = format!(
                    "{}_{}({})",
                    pod.metadata.name.as_deref().unwrap_or(""),
                    pod.metadata.namespace.as_deref().unwrap_or(""),
                    pod.metadata.uid.as_deref().unwrap_or("")
                );
                let message = err.event_message(hook, &container.name, &name);
                let field_path = Some(format!("spec.containers{{{}}}", container.name));
                self.recorder.record(
                    crate::events::pod_reference(pod, field_path),
                    crate::events::EventType::Warning,
                    "FailedPreStopHook",
                    message,
                );
            }
        }
    }
}

/// The last `lines` lines of a CRI log file (at most `bytes`), for termination messages from logs.
pub fn log_tail(path: &Path, lines: usize, bytes: usize) -> String {
    let Ok(text) = std::fs::read(path) else { return String::new() };
    let mut out: Vec<u8> = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        if let Some(entry) = gantry_runtime::native::logs::parse_entry(line) {
            out.extend_from_slice(&entry.content);
            if !entry.partial {
                out.push(b'\n');
            }
        }
    }
    let text = String::from_utf8_lossy(&out);
    let all: Vec<&str> = text.lines().collect();
    let mut tail = all[all.len().saturating_sub(lines)..].join("\n");
    if tail.len() > bytes {
        let mut cut = tail.len() - bytes;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_string();
    }
    tail
}

/// A worker's inbox: the pod's latest version, `None` once the pod is gone.
struct WorkerHandle {
    updates: watch::Sender<Option<Pod>>,
}

/// Errors of the pod manager.
#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    /// The runtime could not list what it runs.
    #[error("listing the runtime's sandboxes: {0}")]
    Runtime(#[from] gantry_runtime::cri::RuntimeError),
}

/// How often the static pods' manifest directory is read (the kubelet reads it every 20 s).
const MANIFEST_SCAN: Duration = Duration::from_secs(5);

/// The pod workers, by pod UID.
struct Workers {
    ctx: Arc<PodContext>,
    handles: HashMap<String, WorkerHandle>,
    tasks: JoinSet<String>,
    shutdown: CancellationToken,
}

impl Workers {
    /// Hands `pod` to its worker, starting one for a new UID.
    fn update(&mut self, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match self.handles.get(&uid) {
            Some(handle) => {
                handle.updates.send_replace(Some(pod));
            }
            None => {
                let (tx, rx) = watch::channel(Some(pod.clone()));
                let worker = worker::PodWorker::new(self.ctx.clone(), pod);
                let token = self.shutdown.clone();
                let key = uid.clone();
                self.tasks.spawn(async move {
                    worker.run(rx, token).await;
                    key
                });
                self.handles.insert(uid, WorkerHandle { updates: tx });
            }
        }
    }

    /// Tells a pod's worker that the pod is gone.
    fn remove(&self, uid: &str) {
        if let Some(handle) = self.handles.get(uid) {
            handle.updates.send_replace(None);
        }
    }
}

/// Watches the pods bound to this node (and the static pods' manifests) and runs one worker per pod until
/// `shutdown`. Containers keep running when the agent stops; the next agent adopts them.
pub async fn run(ctx: Arc<PodContext>, shutdown: CancellationToken) -> Result<(), PodsError> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut workers =
        Workers { ctx: ctx.clone(), handles: HashMap::new(), tasks: JoinSet::new(), shutdown: shutdown.child_token() };
    let mut listing: Option<HashSet<String>> = None;
    let mut listed_once = false;
    // Static pods by UID, and the API's mirror pods by namespace and name.
    let mut statics: HashMap<String, Pod> = HashMap::new();
    let mut mirrors: HashMap<(String, String), Pod> = HashMap::new();
    let mut manifest_errors: Vec<String> = Vec::new();
    // Static pods are read before the first list, so that their sandboxes are not taken for orphans.
    scan_manifests(&ctx, &mut workers, &mut statics, &mut manifest_errors);
    let mut scan = tokio::time::interval_at(tokio::time::Instant::now() + MANIFEST_SCAN, MANIFEST_SCAN);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = workers.tasks.join_next(), if !workers.tasks.is_empty() => {
                if let Ok(uid) = done {
                    workers.handles.remove(&uid);
                }
            }
            _ = scan.tick(), if ctx.manifests_dir.is_some() => {
                scan_manifests(&ctx, &mut workers, &mut statics, &mut manifest_errors);
                if listed_once {
                    let current: Vec<Pod> = statics.values().cloned().collect();
                    let mirrored: Vec<Pod> = mirrors.values().cloned().collect();
                    static_pods::sync_mirrors(&ctx.client, &ctx.node_name, &current, &mirrored).await;
                }
            }
            event = events.next() => match event {
                Some(Ok(watcher::Event::Init)) => listing = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitApply(pod))) | Some(Ok(watcher::Event::Apply(pod))) => {
                    if static_pods::is_mirror(&pod) {
                        mirror_seen(&mut workers, &statics, &mut mirrors, pod);
                        continue;
                    }
                    if let Some(seen) = listing.as_mut() {
                        seen.insert(pod.metadata.uid.clone().unwrap_or_default());
                    }
                    workers.update(pod);
                }
                Some(Ok(watcher::Event::Delete(pod))) => {
                    if static_pods::is_mirror(&pod) {
                        mirrors.remove(&key_of(&pod));
                    } else if let Some(uid) = pod.metadata.uid.as_ref() {
                        workers.remove(uid);
                    }
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    let seen = listing.take().unwrap_or_default();
                    for uid in workers.handles.keys() {
                        if !seen.contains(uid) && !statics.contains_key(uid) {
                            workers.remove(uid);
                        }
                    }
                    if !listed_once {
                        listed_once = true;
                        let known: HashSet<String> = seen.iter().chain(statics.keys()).cloned().collect();
                        remove_orphans(&ctx, &known).await;
                        let current: Vec<Pod> = statics.values().cloned().collect();
                        let mirrored: Vec<Pod> = mirrors.values().cloned().collect();
                        static_pods::sync_mirrors(&ctx.client, &ctx.node_name, &current, &mirrored).await;
                    }
                }
                Some(Err(err)) => tracing::warn!(error = %err, "watching this node's pods"),
                None => break,
            }
        }
    }
    workers.shutdown.cancel();
    while workers.tasks.join_next().await.is_some() {}
    Ok(())
}

/// Reads the manifest directory: new static pods get workers, removed (or edited) ones are told they are gone.
fn scan_manifests(
    ctx: &PodContext,
    workers: &mut Workers,
    statics: &mut HashMap<String, Pod>,
    reported: &mut Vec<String>,
) {
    let Some(dir) = ctx.manifests_dir.as_ref() else { return };
    let (found, errors) = static_pods::read_manifests(dir, &ctx.node_name);
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    if errors != *reported {
        for error in &errors {
            tracing::warn!(%error, "static pod manifest skipped");
        }
        *reported = errors;
    }
    let found: HashMap<String, Pod> =
        found.into_iter().map(|p| (p.metadata.uid.clone().unwrap_or_default(), p)).collect();
    for uid in statics.keys().filter(|uid| !found.contains_key(*uid)) {
        workers.remove(uid);
    }
    for (uid, pod) in &found {
        if !statics.contains_key(uid) {
            workers.update(pod.clone());
        }
    }
    *statics = found;
}

fn key_of(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

/// A mirror pod changed: remember it, and hand its status to its static pod's worker (a recreated mirror has
/// none, and the worker writes it again).
fn mirror_seen(
    workers: &mut Workers,
    statics: &HashMap<String, Pod>,
    mirrors: &mut HashMap<(String, String), Pod>,
    mirror: Pod,
) {
    let hash = mirror.metadata.annotations.as_ref().and_then(|a| a.get(static_pods::CONFIG_MIRROR)).cloned();
    if let Some(static_pod) = hash.and_then(|h| statics.get(&h)) {
        let mut update = static_pod.clone();
        update.status = mirror.status.clone();
        workers.update(update);
    }
    mirrors.insert(key_of(&mirror), mirror);
}

/// Removes sandboxes (with their containers) and pod directories of pods that no longer exist.
async fn remove_orphans(ctx: &PodContext, known: &HashSet<String>) {
    let sandboxes = match ctx.runtime.list_pod_sandboxes().await {
        Ok(list) => list,
        Err(err) => {
            tracing::warn!(error = %err, "listing sandboxes for orphans");
            return;
        }
    };
    for sandbox in sandboxes {
        let Some(uid) = sandbox.labels.get(spec::POD_UID_LABEL) else { continue };
        if known.contains(uid) {
            continue;
        }
        tracing::info!(pod = %sandbox.metadata.name, %uid, "removing the sandbox of a pod that no longer exists");
        let filter =
            gantry_runtime::cri::ContainerFilter { sandbox_id: Some(sandbox.id.clone()), ..Default::default() };
        for container in ctx.runtime.list_containers(&filter).await.unwrap_or_default() {
            let _ = ctx.runtime.stop_container(&container.id, 0).await;
            let _ = ctx.runtime.remove_container(&container.id).await;
        }
        let _ = ctx.runtime.stop_pod_sandbox(&sandbox.id).await;
        if let Err(err) = ctx.runtime.remove_pod_sandbox(&sandbox.id).await {
            tracing::warn!(sandbox = %sandbox.id, error = %err, "removing an orphaned sandbox");
        }
    }
    if let Ok(entries) = std::fs::read_dir(&ctx.pods_dir) {
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&uid) {
                ctx.teardown_volumes(&uid).await;
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_joins_partial_lines_and_keeps_the_last_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:00.000000001Z stdout F one\n\
             2026-01-01T00:00:00.000000002Z stderr P tw\n\
             2026-01-01T00:00:00.000000003Z stderr F o\n\
             2026-01-01T00:00:00.000000004Z stdout F three\n",
        )
        .expect("write");
        assert_eq!(log_tail(&path, 2, 1000), "two\nthree");
        assert_eq!(log_tail(&path, 10, 5), "three");
    }
}
