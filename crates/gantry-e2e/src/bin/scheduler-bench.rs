//! `scheduler-bench`: Gantry's scheduler measured through a real API server. For each workload it starts a fresh
//! cluster in-process (the API server on `127.0.0.1:0` over a new SQLite store, and the scheduler as its client
//! with the default profile), registers `--nodes` Node objects, then creates `--pods` pods as fast as
//! `--clients` concurrent creators can, and watches the pods to time each one from its create response to the
//! watch event that shows it bound. Build with `--release`:
//!
//! ```text
//! cargo run --release -p gantry-e2e --bin scheduler-bench
//! cargo run --release -p gantry-e2e --bin scheduler-bench -- --nodes 500 --pods 1000 --only basic
//! ```
//!
//! The server, the scheduler and the bench's own clients run on three runtimes whose threads are named
//! `server`, `scheduler` and `bench`, so the CPU each used can be told apart from `/proc/self/task/*/stat`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use gantry_apiserver::RunningServer;
use gantry_e2e::bench::{client_from, cpu_usage, create_many, load_average, ms, percentile, post};
use gantry_scheduler::runtime::SchedulerConfig;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, WatchEvent, WatchParams};
use kube::core::Request;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
#[command(about = "Measures Gantry's scheduler through a real API server: pods bound per second and bind latency")]
struct Args {
    /// Nodes registered in each cluster.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Pods created in each workload.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent creators (of nodes, then of pods).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Pods per `app` label in the anti-affinity and spread workloads.
    #[arg(long, default_value_t = 10)]
    group_size: usize,
    /// Run only these workloads (comma-separated or repeated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Workload>,
    /// How long a workload may take to bind all its pods before it counts as failed, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Worker threads of the server's runtime (the machine's cores by default, as the gantry binary runs).
    #[arg(long)]
    server_threads: Option<usize>,
    /// Worker threads of the scheduler's runtime.
    #[arg(long, default_value_t = 2)]
    scheduler_threads: usize,
    /// Worker threads of the bench's own clients.
    #[arg(long, default_value_t = 2)]
    bench_threads: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Pods with resource requests only.
    Basic,
    /// Pods with required anti-affinity on `kubernetes.io/hostname` to the other pods of their group.
    AntiAffinity,
    /// Pods spread over the zones with `maxSkew: 1`, `whenUnsatisfiable: DoNotSchedule`, per group.
    Spread,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Basic, Workload::AntiAffinity, Workload::Spread];

    fn name(self) -> &'static str {
        match self {
            Workload::Basic => "basic",
            Workload::AntiAffinity => "anti-affinity",
            Workload::Spread => "spread",
        }
    }

    /// The pods per second this workload must reach.
    fn target(self) -> f64 {
        match self {
            Workload::Basic => 5_000.0,
            Workload::AntiAffinity | Workload::Spread => 1_000.0,
        }
    }

    fn pod(self, index: usize, group_size: usize) -> Value {
        let app = format!("g-{}", index / group_size.max(1));
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name(index), "namespace": NAMESPACE, "labels": {"app": app}},
            "spec": {
                "containers": [{
                    "name": "c",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }],
            },
        });
        let selector = json!({"matchLabels": {"app": app}});
        match self {
            Workload::Basic => {}
            Workload::AntiAffinity => {
                pod["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": selector, "topologyKey": HOSTNAME_LABEL},
                ]}});
            }
            Workload::Spread => {
                pod["spec"]["topologySpreadConstraints"] = json!([{
                    "maxSkew": 1,
                    "topologyKey": ZONE_LABEL,
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": selector,
                }]);
            }
        }
        pod
    }
}

const NAMESPACE: &str = "bench";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
const POD_PREFIX: &str = "p-";

fn pod_name(index: usize) -> String {
    format!("{POD_PREFIX}{index:06}")
}

fn node_name(index: usize) -> String {
    format!("node-{index:05}")
}

fn node(index: usize) -> Value {
    let name = node_name(index);
    let resources = json!({"cpu": "32", "memory": "128Gi", "pods": "110"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {HOSTNAME_LABEL: name, ZONE_LABEL: ZONES[index % ZONES.len()]}},
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

// ---------------------------------------------------------------------------------------------------------------
// The cluster: API server and scheduler, each on its own runtime.

/// One API server over a fresh store with a scheduler attached; `stop` takes both down.
struct Cluster {
    server: RunningServer,
    shutdown: CancellationToken,
    scheduler_tasks: JoinSet<()>,
    kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start_cluster(
    server_rt: &tokio::runtime::Runtime,
    scheduler_rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Cluster> {
    let (server, dir, shutdown) = gantry_e2e::bench::start_server(server_rt, "gantry-scheduler-bench-")?;
    let kubeconfig = server.kubeconfig.clone();
    let mut scheduler_tasks = JoinSet::new();
    scheduler_rt.block_on(async {
        let client = client_from(&kubeconfig).await?;
        let config = SchedulerConfig::with_default_profile("scheduler-bench", None);
        // Spawned inside the runtime so that the scheduler's tasks run on its threads.
        gantry_scheduler::runtime::start(client, config, shutdown.clone(), &mut scheduler_tasks);
        anyhow::Ok(())
    })?;
    Ok(Cluster { server, shutdown, scheduler_tasks, kubeconfig, _dir: dir })
}

impl Cluster {
    fn stop(self, server_rt: &tokio::runtime::Runtime, scheduler_rt: &tokio::runtime::Runtime) {
        let Cluster { server, shutdown, mut scheduler_tasks, _dir, .. } = self;
        shutdown.cancel();
        scheduler_rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while scheduler_tasks.join_next().await.is_some() {}
            })
            .await;
        });
        server_rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await;
        });
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The bench's clients.

/// Just the parts of a pod the bench looks at, so that decoding the watch costs little of the CPU it measures.
#[derive(Clone, Deserialize)]
struct PodBrief {
    metadata: MetaBrief,
    spec: Option<SpecBrief>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaBrief {
    name: String,
    resource_version: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecBrief {
    node_name: Option<String>,
}

/// Watches the bench namespace from `resource_version` until all `count` pods are bound or `deadline`; returns
/// when each was first seen bound, by index.
async fn watch_bindings(
    client: kube::Client,
    mut resource_version: String,
    count: usize,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Vec<Option<Instant>>> {
    let mut bound: Vec<Option<Instant>> = vec![None; count];
    let mut remaining = count;
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    while remaining > 0 {
        let params = WatchParams::default().timeout(290);
        let request = Request::new(&path).watch(&params, &resource_version)?;
        let stream = client.request_events::<PodBrief>(request).await.context("starting the watch on pods")?;
        let mut stream = std::pin::pin!(stream);
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = tokio::time::sleep_until(deadline) => return Ok(bound),
            };
            let Some(event) = next else { break };
            let pod = match event.context("watching pods")? {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => pod,
                WatchEvent::Deleted(_) => continue,
                WatchEvent::Bookmark(bookmark) => {
                    resource_version = bookmark.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(status) => bail!("the pod watch ended with an error: {status:?}"),
            };
            if let Some(rv) = pod.metadata.resource_version {
                resource_version = rv;
            }
            let is_bound = pod.spec.and_then(|s| s.node_name).is_some_and(|n| !n.is_empty());
            let index = pod.metadata.name.strip_prefix(POD_PREFIX).and_then(|i| i.parse::<usize>().ok());
            if let (true, Some(slot)) = (is_bound, index.and_then(|i| bound.get_mut(i)))
                && slot.is_none()
            {
                *slot = Some(Instant::now());
                remaining -= 1;
                if remaining == 0 {
                    break;
                }
            }
        }
    }
    Ok(bound)
}

/// Waits until `name` in the bench namespace is bound to a node.
async fn wait_bound(client: &kube::Client, name: &str, patience: Duration) -> anyhow::Result<()> {
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + patience;
    loop {
        let pod = pods.get(name).await?;
        if pod.spec.and_then(|s| s.node_name).is_some_and(|n| !n.is_empty()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("pod {name} was not bound within {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// One workload.

struct Outcome {
    node_seconds: f64,
    bound: usize,
    pods_per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    cpu: String,
}

/// Registers the nodes and makes sure the scheduler knows them all; returns how long it took.
async fn register_nodes(client: &kube::Client, args: &Args) -> anyhow::Result<f64> {
    let started = Instant::now();
    let nodes = args.nodes.max(1);
    create_many(client, "/api/v1/nodes", nodes - 1, args.clients, node).await.context("creating nodes")?;
    // The last node is created after all others, and a probe pod is pinned to it: once the probe is bound the
    // scheduler's node watch, which delivers in order, has delivered every node.
    post(client, "/api/v1/nodes", &node(nodes - 1)).await.context("creating the last node")?;
    post(client, &format!("/api/v1/namespaces/{NAMESPACE}/pods"), &probe_pod(&node_name(nodes - 1))).await?;
    wait_bound(client, "probe", Duration::from_secs(120)).await.context("the probe pod")?;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), NAMESPACE);
    pods.delete("probe", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await?;
    Ok(started.elapsed().as_secs_f64())
}

fn probe_pod(node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": NAMESPACE},
        "spec": {
            "nodeSelector": {HOSTNAME_LABEL: node},
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
        },
    })
}

async fn run_workload(kubeconfig: &Path, workload: Workload, args: &Args) -> anyhow::Result<Outcome> {
    let client = client_from(kubeconfig).await?;
    post(
        &client,
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await
    .context("creating the namespace")?;
    let node_seconds = register_nodes(&client, args).await?;
    eprintln!("scheduler-bench: {}: {} nodes registered in {node_seconds:.1} s", workload.name(), args.nodes);

    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let list = pods.list_metadata(&ListParams::default().limit(1)).await.context("listing pods")?;
    let resource_version = list.metadata.resource_version.unwrap_or_default();
    let count = args.pods;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let watcher = tokio::spawn(watch_bindings(client.clone(), resource_version, count, deadline));

    let cpu_before = cpu_usage();
    let started = Instant::now();
    let group_size = args.group_size;
    let created =
        create_many(&client, &format!("/api/v1/namespaces/{NAMESPACE}/pods"), count, args.clients, move |i| {
            workload.pod(i, group_size)
        })
        .await
        .context("creating pods")?;
    let create_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "scheduler-bench: {}: {count} pods created in {create_seconds:.1} s ({:.0}/s)",
        workload.name(),
        count as f64 / create_seconds.max(f64::EPSILON)
    );
    let bound = watcher.await??;
    let cpu = cpu_usage().since(&cpu_before);

    let mut latencies: Vec<Duration> = Vec::with_capacity(count);
    let mut last = started;
    for (at, created) in bound.iter().zip(&created) {
        if let Some(at) = at {
            latencies.push(at.saturating_duration_since(*created));
            last = last.max(*at);
        }
    }
    latencies.sort_unstable();
    let bound_count = latencies.len();
    let elapsed = last.duration_since(started).as_secs_f64().max(f64::EPSILON);
    Ok(Outcome {
        node_seconds,
        bound: bound_count,
        pods_per_sec: bound_count as f64 / elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        cpu,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.pods == 0 || args.nodes == 0 {
        bail!("--nodes and --pods must be at least 1");
    }
    let mut server_rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.server_threads {
        server_rt.worker_threads(threads.max(1));
    }
    let server_rt = server_rt.thread_name("server").enable_all().build().context("the server runtime")?;
    let scheduler_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.scheduler_threads.max(1))
        .thread_name("scheduler")
        .enable_all()
        .build()
        .context("the scheduler runtime")?;
    let bench_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.bench_threads.max(1))
        .thread_name("bench")
        .enable_all()
        .build()
        .context("the bench runtime")?;

    let workloads: Vec<Workload> =
        Workload::ALL.into_iter().filter(|w| args.only.is_empty() || args.only.contains(w)).collect();
    eprintln!("scheduler-bench: load average at the start {}", load_average());
    let mut rows = Vec::new();
    let mut missed = 0;
    for workload in workloads {
        let cluster = start_cluster(&server_rt, &scheduler_rt)?;
        // Spawned rather than run by `block_on`, so that its time counts under the bench's thread name.
        let result = bench_rt.block_on({
            let (kubeconfig, args) = (cluster.kubeconfig.clone(), args.clone());
            async move { tokio::spawn(async move { run_workload(&kubeconfig, workload, &args).await }).await? }
        });
        cluster.stop(&server_rt, &scheduler_rt);
        let outcome = result.with_context(|| format!("workload {}", workload.name()))?;
        let met = outcome.bound == args.pods && outcome.pods_per_sec >= workload.target();
        if !met {
            missed += 1;
        }
        eprintln!(
            "scheduler-bench: {}: {} of {} pods bound, {:.0}/s, p50 {} p99 {} max {}; nodes took {:.1} s; CPU {}",
            workload.name(),
            outcome.bound,
            args.pods,
            outcome.pods_per_sec,
            ms(outcome.p50),
            ms(outcome.p99),
            ms(outcome.max),
            outcome.node_seconds,
            outcome.cpu
        );
        rows.push((workload, outcome, met));
    }
    eprintln!("scheduler-bench: load average at the end {}", load_average());

    println!("\n| workload | nodes | pods | bound | pods/s | p50 | p99 | target | result |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (workload, o, met) in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | ≥ {:.0} pods/s | {} |",
            workload.name(),
            args.nodes,
            args.pods,
            o.bound,
            o.pods_per_sec,
            ms(o.p50),
            ms(o.p99),
            workload.target(),
            if *met { "PASS" } else { "FAIL" }
        );
    }
    println!();
    for (workload, o, _) in &rows {
        println!("- {} CPU while binding: {}", workload.name(), o.cpu);
    }
    if missed > 0 {
        eprintln!("scheduler-bench: {missed} target(s) missed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_of_a_group_share_their_app_label_and_constraint() {
        let first = Workload::AntiAffinity.pod(0, 10);
        let tenth = Workload::AntiAffinity.pod(9, 10);
        let eleventh = Workload::AntiAffinity.pod(10, 10);
        assert_eq!(first["metadata"]["labels"]["app"], tenth["metadata"]["labels"]["app"]);
        assert_ne!(first["metadata"]["labels"]["app"], eleventh["metadata"]["labels"]["app"]);
        let term = &first["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(term["topologyKey"], HOSTNAME_LABEL);
        let spread = Workload::Spread.pod(3, 10);
        assert_eq!(spread["spec"]["topologySpreadConstraints"][0]["maxSkew"], 1);
        assert!(Workload::Basic.pod(3, 10)["spec"].get("affinity").is_none());
    }

    #[test]
    fn nodes_spread_over_three_zones() {
        let zones: std::collections::BTreeSet<String> =
            (0..6).map(|i| node(i)["metadata"]["labels"][ZONE_LABEL].as_str().unwrap_or("").to_string()).collect();
        assert_eq!(zones.len(), 3);
        assert_eq!(node(7)["status"]["allocatable"]["pods"], "110");
    }
}
