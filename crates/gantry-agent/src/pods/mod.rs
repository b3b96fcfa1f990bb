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

use std::collections::{BTreeMap, HashMap, HashSet};
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
    table: RwLock<HashMap<(String, String), PodEntry>>,
}

/// One pod as the node API sees it.
#[derive(Clone, Debug, Default)]
pub struct PodEntry {
    /// The pod's UID.
    pub uid: String,
    /// Its sandbox, once created.
    pub sandbox_id: Option<String>,
    /// Its containers by name.
    pub containers: BTreeMap<String, ContainerEntry>,
}

/// One container as the node API sees it.
#[derive(Clone, Debug, Default)]
pub struct ContainerEntry {
    /// The current instance.
    pub container_id: Option<String>,
    /// The current instance's log.
    pub log_path: Option<PathBuf>,
    /// The previous instance's log.
    pub previous_log_path: Option<PathBuf>,
    /// Why it has no running instance, when it waits.
    pub waiting_reason: Option<String>,
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
    ) -> PodContext {
        PodContext {
            client,
            runtime,
            images,
            node_name,
            host_ips,
            pods_dir,
            memory_capacity,
            recorder,
            manifests_dir: None,
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
        _pod: &Pod,
        container: &Container,
        _sandbox: &PodSandboxStatus,
    ) -> Result<Vec<(String, String)>, String> {
        let mut env = Vec::new();
        for var in container.env.iter().flatten() {
            if var.value_from.is_some() {
                return Err(format!("environment variable {}: valueFrom is not supported yet", var.name));
            }
            env.push((var.name.clone(), var.value.clone().unwrap_or_default()));
        }
        if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
            return Err("envFrom is not supported yet".into());
        }
        Ok(env)
    }

    /// The container's volume mounts.
    async fn mounts(
        &self,
        _pod: &Pod,
        container: &Container,
        _env: &[(String, String)],
    ) -> Result<Vec<gantry_runtime::cri::Mount>, String> {
        if container.volume_mounts.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err("volumes are not supported yet".into());
        }
        Ok(Vec::new())
    }

    async fn teardown_volumes(&self, _uid: &str) {}

    /// Readiness and startup of a container instance: (ready, started).
    fn probe_state(&self, _container_id: &str, _container: &Container) -> (bool, bool) {
        (true, true)
    }

    async fn pre_stop(
        &self,
        _pod: &Pod,
        _container: &Container,
        _status: &RuntimeStatus,
        _sandbox: Option<&PodSandboxStatus>,
        _deadline: Duration,
    ) {
    }
}

/// `$(VAR)` expansion in command and args.
fn command_and_args(container: &Container, _env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    (container.command.clone().unwrap_or_default(), container.args.clone().unwrap_or_default())
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
