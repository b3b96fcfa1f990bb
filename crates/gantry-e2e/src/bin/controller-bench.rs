//! `controller-bench`: Gantry's Deployment and ReplicaSet controllers measured through a real API server. It
//! starts a cluster in-process (the API server on `127.0.0.1:0` over a new SQLite store, and the controller
//! manager as its client; no scheduler, no node agent), then:
//!
//! 1. creates `--deployments` Deployments of `--replicas` replicas each from `--clients` concurrent creators,
//!    and times until every ReplicaSet and every pod exists (pods/s created by the ReplicaSet controller);
//! 2. plays the nodes: marks every pod running and ready, and times until every Deployment is available;
//! 3. changes every Deployment's image and times the rolling update to its end (every Deployment with all
//!    replicas updated and available), still playing the nodes for the new pods.
//!
//! ```text
//! cargo run --release -p gantry-e2e --bin controller-bench
//! cargo run --release -p gantry-e2e --bin controller-bench -- --deployments 100 --replicas 10
//! ```
//!
//! The server, the controllers and the bench's own clients run on three runtimes whose threads are named
//! `server`, `controllers` and `bench`, so the CPU each used can be told apart.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::StreamExt;
use gantry_apiserver::RunningServer;
use gantry_controllers::ControllerManagerConfig;
use gantry_e2e::bench::{client_from, cpu_usage, create_many, load_average, post};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::core::Request;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
#[command(about = "Measures Gantry's Deployment and ReplicaSet controllers through a real API server")]
struct Args {
    /// Deployments to create.
    #[arg(long, default_value_t = 1000)]
    deployments: usize,
    /// Replicas of each.
    #[arg(long, default_value_t = 10)]
    replicas: usize,
    /// Concurrent creators (and node players).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Workers per controller.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// How long each phase may take, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Target for phase 1, in pods created per second.
    #[arg(long, default_value_t = 2000.0)]
    target: f64,
}

const NAMESPACE: &str = "bench";

fn deployment(index: usize, replicas: usize) -> Value {
    let app = format!("d-{index}");
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                         "resources": {"requests": {"cpu": "10m"}}}]},
            },
        },
    })
}

/// Just what the bench reads of a pod.
#[derive(Clone, Deserialize)]
struct PodBrief {
    metadata: MetaBrief,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaBrief {
    name: String,
    resource_version: Option<String>,
}

/// What the pod watch has seen: pods created, by name, and whether new ones should be marked ready.
struct Seen {
    created: AtomicUsize,
    names: Mutex<HashSet<String>>,
    play: AtomicBool,
}

/// Follows pods in the bench namespace, counting creations and, while `seen.play` is set, handing new pods to
/// the node players.
async fn watch_pods(
    client: kube::Client,
    seen: Arc<Seen>,
    ready: mpsc::UnboundedSender<String>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let mut resource_version = "0".to_string();
    while !stop.is_cancelled() {
        let params = WatchParams::default().timeout(290);
        let request = Request::new(&path).watch(&params, &resource_version)?;
        let stream = client.request_events::<PodBrief>(request).await.context("starting the watch on pods")?;
        let mut stream = std::pin::pin!(stream);
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = stop.cancelled() => return Ok(()),
            };
            let Some(event) = next else { break };
            match event.context("watching pods")? {
                WatchEvent::Added(pod) => {
                    if let Some(rv) = pod.metadata.resource_version.clone() {
                        resource_version = rv;
                    }
                    if seen.names.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(pod.metadata.name.clone()) {
                        seen.created.fetch_add(1, Ordering::Relaxed);
                        if seen.play.load(Ordering::Relaxed) {
                            let _ = ready.send(pod.metadata.name);
                        }
                    }
                }
                WatchEvent::Modified(pod) | WatchEvent::Deleted(pod) => {
                    if let Some(rv) = pod.metadata.resource_version {
                        resource_version = rv;
                    }
                }
                WatchEvent::Bookmark(b) => resource_version = b.metadata.resource_version,
                WatchEvent::Error(status) => bail!("the pod watch ended with an error: {status:?}"),
            }
        }
    }
    Ok(())
}

/// Node players: mark each pod handed over running and ready.
fn play_nodes(client: &kube::Client, players: usize, rx: mpsc::UnboundedReceiver<String>, tasks: &mut JoinSet<()>) {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..players.max(1) {
        let (client, rx) = (client.clone(), Arc::clone(&rx));
        tasks.spawn(async move {
            let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, NAMESPACE);
            let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            let status = json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
            loop {
                let Some(name) = rx.lock().await.recv().await else { return };
                // A pod deleted meanwhile (scaled down) needs nothing.
                let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
            }
        });
    }
}

/// Polls the Deployments until `done` holds for every one, or the deadline.
async fn wait_deployments(
    client: &kube::Client,
    count: usize,
    patience: Duration,
    done: impl Fn(&Deployment) -> bool,
) -> anyhow::Result<()> {
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + patience;
    loop {
        let list = api.list(&ListParams::default()).await?;
        let finished = list.items.iter().filter(|d| done(d)).count();
        if list.items.len() >= count && finished >= count {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("only {finished} of {count} deployments got there within {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn rolled_out(d: &Deployment, replicas: i32) -> bool {
    let Some(status) = &d.status else { return false };
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
        && status.replicas == Some(replicas)
}

struct Cluster {
    server: RunningServer,
    shutdown: CancellationToken,
    controller_tasks: JoinSet<()>,
    _dir: tempfile::TempDir,
}

fn start_cluster(
    server_rt: &tokio::runtime::Runtime,
    controllers_rt: &tokio::runtime::Runtime,
    workers: usize,
) -> anyhow::Result<Cluster> {
    let (server, dir, shutdown) = gantry_e2e::bench::start_server(server_rt, "gantry-controller-bench-")?;
    let kubeconfig = server.kubeconfig.clone();
    let mut controller_tasks = JoinSet::new();
    controllers_rt.block_on(async {
        let client = client_from(&kubeconfig).await?;
        let config =
            ControllerManagerConfig { election: None, workers, ..ControllerManagerConfig::new("controller-bench") };
        gantry_controllers::start(client, config, shutdown.clone(), &mut controller_tasks);
        anyhow::Ok(())
    })?;
    Ok(Cluster { server, shutdown, controller_tasks, _dir: dir })
}

async fn run(kubeconfig: &Path, args: &Args) -> anyhow::Result<f64> {
    let client = client_from(kubeconfig).await?;
    post(
        &client,
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await
    .context("creating the namespace")?;
    let total_pods = args.deployments * args.replicas;
    let replicas = i32::try_from(args.replicas).context("--replicas")?;
    let patience = Duration::from_secs(args.timeout);
    let seen = Arc::new(Seen {
        created: AtomicUsize::new(0),
        names: Mutex::new(HashSet::new()),
        play: AtomicBool::new(false),
    });
    let (ready_tx, ready_rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let mut background = JoinSet::new();
    let watcher = tokio::spawn(watch_pods(client.clone(), Arc::clone(&seen), ready_tx.clone(), stop.clone()));
    play_nodes(&client, args.clients, ready_rx, &mut background);

    // Phase 1: Deployments → ReplicaSets → pods.
    let cpu_before = cpu_usage();
    let started = Instant::now();
    let replicas_each = args.replicas;
    create_many(
        &client,
        &format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),
        args.deployments,
        args.clients,
        move |i| deployment(i, replicas_each),
    )
    .await
    .context("creating deployments")?;
    let created_in = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + patience;
    while seen.created.load(Ordering::Relaxed) < total_pods {
        if Instant::now() >= deadline {
            bail!("only {} of {total_pods} pods were created", seen.created.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let phase1 = started.elapsed().as_secs_f64();
    let pods_per_sec = total_pods as f64 / phase1.max(f64::EPSILON);
    let cpu1 = cpu_usage().since(&cpu_before);
    eprintln!(
        "controller-bench: {} deployments created in {created_in:.1} s; all {total_pods} pods exist after {phase1:.1} s: {pods_per_sec:.0} pods/s",
        args.deployments
    );
    eprintln!("controller-bench: CPU while creating: {cpu1}");

    // Phase 2: the nodes report every pod ready.
    let cpu_before = cpu_usage();
    let started = Instant::now();
    seen.play.store(true, Ordering::Relaxed);
    let names: Vec<String> = seen.names.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.iter().cloned().collect();
    for name in names {
        let _ = ready_tx.send(name);
    }
    wait_deployments(&client, args.deployments, patience, |d| rolled_out(d, replicas)).await?;
    let phase2 = started.elapsed().as_secs_f64();
    eprintln!("controller-bench: every deployment available {phase2:.1} s after the nodes started reporting");
    eprintln!("controller-bench: CPU while becoming available: {}", cpu_usage().since(&cpu_before));

    // Phase 3: a rolling update of every Deployment.
    let cpu_before = cpu_usage();
    let started = Instant::now();
    let before = seen.created.load(Ordering::Relaxed);
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let next = Arc::new(AtomicUsize::new(0));
    let mut updaters = JoinSet::new();
    for _ in 0..args.clients.max(1) {
        let (api, next, count) = (api.clone(), Arc::clone(&next), args.deployments);
        updaters.spawn(async move {
            let patch = json!({"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "registry.k8s.io/pause:3.10-updated"}]}}}});
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                api.patch(&format!("d-{i}"), &PatchParams::default(), &Patch::Strategic(&patch)).await?;
            }
        });
    }
    while let Some(done) = updaters.join_next().await {
        done??;
    }
    wait_deployments(&client, args.deployments, patience, |d| {
        rolled_out(d, replicas)
            && d.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                c.iter().any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable"))
            })
            && d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .map(String::as_str)
                == Some("2")
    })
    .await?;
    let phase3 = started.elapsed().as_secs_f64();
    let new_pods = seen.created.load(Ordering::Relaxed) - before;
    eprintln!(
        "controller-bench: rolling update of every deployment done in {phase3:.1} s ({new_pods} new pods, {:.0}/s)",
        new_pods as f64 / phase3.max(f64::EPSILON)
    );
    eprintln!("controller-bench: CPU during the update: {}", cpu_usage().since(&cpu_before));

    stop.cancel();
    drop(ready_tx);
    let _ = watcher.await;
    background.abort_all();
    println!();
    println!("| phase | deployments × replicas | time | rate | target | result |");
    println!("|---|---|---|---|---|---|");
    let verdict = if pods_per_sec >= args.target { "PASS" } else { "FAIL" };
    println!(
        "| create | {} × {} | {phase1:.1} s | {pods_per_sec:.0} pods/s | ≥ {:.0} pods/s | {verdict} |",
        args.deployments, args.replicas, args.target
    );
    println!("| available | {} × {} | {phase2:.1} s | | | |", args.deployments, args.replicas);
    println!(
        "| rolling update | {} × {} | {phase3:.1} s | {:.0} new pods/s | | |",
        args.deployments,
        args.replicas,
        new_pods as f64 / phase3.max(f64::EPSILON)
    );
    Ok(pods_per_sec)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.deployments == 0 || args.replicas == 0 {
        bail!("--deployments and --replicas must be at least 1");
    }
    let server_rt = tokio::runtime::Builder::new_multi_thread().thread_name("server").enable_all().build()?;
    let controllers_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("controllers")
        .enable_all()
        .build()?;
    let bench_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("bench").enable_all().build()?;
    eprintln!("controller-bench: load average at the start {}", load_average());
    let cluster = start_cluster(&server_rt, &controllers_rt, args.workers)?;
    let kubeconfig = cluster.server.kubeconfig.clone();
    let outcome = bench_rt.block_on(run(&kubeconfig, &args));
    let Cluster { server, shutdown, mut controller_tasks, _dir } = cluster;
    shutdown.cancel();
    controllers_rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while controller_tasks.join_next().await.is_some() {}
        })
        .await;
    });
    server_rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await;
    });
    let pods_per_sec = outcome?;
    if pods_per_sec < args.target {
        eprintln!("controller-bench: the creation target was missed");
    }
    Ok(())
}
