//! `agent-bench`: the node agent starting pods, measured end to end. It starts an API server in-process, then
//! the real `gantry agent` as a process of its own (so that its memory is its own) on a fresh data directory with
//! the busybox image already present, and:
//!
//! 1. creates `--pods` pods bound to the agent's node at once (from `--clients` concurrent creators), and times
//!    each from its create request to the moment a watch sees it `Running`;
//! 2. reports the agent's resident memory with every pod running, and the resident memory of the shims (one per
//!    container);
//! 3. deletes every pod and waits until the agent has confirmed every deletion.
//!
//! ```text
//! cargo build --release -p gantry -p gantry-e2e
//! sudo target/release/agent-bench                      # pods on the pod network (CNI bridge)
//! sudo target/release/agent-bench --host-network       # pods on the node's network
//! ```
//!
//! Root is needed (containers). The `gantry` binary is looked for next to this one unless `--gantry` says where.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::StreamExt;
use gantry_e2e::bench::{client_from, cpu_usage, load_average, ms, percentile, start_server};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::task::JoinSet;

#[derive(Parser, Debug, Clone)]
#[command(about = "Measures how fast Gantry's node agent starts pods, and its memory")]
struct Args {
    /// Pods to create at once.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Concurrent creators.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Run the pods on the node's network instead of the pod network.
    #[arg(long)]
    host_network: bool,
    /// The `gantry` binary (default: next to this one).
    #[arg(long)]
    gantry: Option<PathBuf>,
    /// The pod range of the bench's node.
    #[arg(long, default_value = "10.253.0.0/24")]
    pod_cidr: String,
}

const IMAGE: &str = "bench.gantry.local/busybox:1";
const NODE: &str = "bench-node";

/// Resident memory of a process in KiB, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// PIDs of the shims running containers under `data_dir`.
fn shims(data_dir: &Path) -> Vec<u32> {
    let needle = data_dir.join("run").display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (text.contains(" shim run ") || text.contains(" shim supervise ")) && text.contains(&needle)
        })
        .collect()
}

/// Kills the agent when dropped, so that a failed run does not leave it behind.
struct AgentProcess(std::process::Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(nix_is_root(), "agent-bench runs containers: run it as root");
    let gantry = match &args.gantry {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("gantry"),
    };
    anyhow::ensure!(
        gantry.exists(),
        "{} not found: build it (cargo build --release -p gantry) or pass --gantry",
        gantry.display()
    );

    let server_rt = tokio::runtime::Builder::new_multi_thread().thread_name("server").enable_all().build()?;
    let (server, server_dir, server_shutdown) = start_server(&server_rt, "agent-bench")?;
    let data = tempfile::Builder::new().prefix("agent-bench-node").tempdir_in("/var/tmp")?;
    let store = gantry_runtime::image::ImageStore::open(data.path().join("images"))?;
    let archive = data.path().join("busybox.tar");
    gantry_runtime::testing::write_busybox_archive(&archive, IMAGE)?;
    store.import_archive(&archive)?;

    let mut command = std::process::Command::new(&gantry);
    command
        .arg("agent")
        .arg("--data-dir")
        .arg(data.path())
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["--node-name", NODE, "--pod-cidr", &args.pod_cidr])
        .stdout(std::process::Stdio::null());
    // What the agent creates on the node beyond its data directory, to remove afterwards unless it was there.
    let bridge_existed = std::path::Path::new("/sys/class/net").join(gantry_agent::agent::BRIDGE).exists();
    let cgroups_existed = cgroup_root_dirs().iter().any(|d| d.exists());
    let agent = AgentProcess(command.spawn().with_context(|| format!("starting {}", gantry.display()))?);
    let agent_pid = agent.0.id();

    let bench_rt = tokio::runtime::Builder::new_multi_thread().thread_name("bench").enable_all().build()?;
    let outcome = bench_rt.block_on(run(&args, &server.kubeconfig, agent_pid, data.path()));
    drop(agent);
    // The agent left its containers running when it was killed; a fresh agent would adopt them, so remove them.
    bench_rt.block_on(async {
        let shim = gantry_runtime::native::ShimCommand { program: gantry.clone(), args: vec!["shim".into()] };
        let images = Arc::new(gantry_runtime::image::ImageStore::open(data.path().join("images"))?);
        let mut config = gantry_runtime::native::NativeConfig::new(data.path().join("run"), shim);
        config.cgroup_root = "gantry".into();
        let cni = gantry_runtime::network::CniClient::new(gantry_runtime::network::CniOptions::new(
            data.path().join("cni/net.d"),
            data.path().join("cni/cache"),
        ));
        let runtime = gantry_runtime::native::NativeRuntime::new(config, images, Some(cni))?;
        runtime.reset().await?;
        let _ = gantry_runtime::network::masquerade::remove_masquerade(&args.pod_cidr).await;
        anyhow::Ok(())
    })?;
    if !bridge_existed {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", gantry_agent::agent::BRIDGE])
            .stderr(std::process::Stdio::null())
            .status();
    }
    if !cgroups_existed {
        for dir in cgroup_root_dirs() {
            for qos in ["besteffort", "burstable"] {
                let _ = std::fs::remove_dir(dir.join(qos));
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
    server_shutdown.cancel();
    server_rt.block_on(server.shutdown());
    drop(server_dir);
    outcome
}

/// The agent's cgroup root (`gantry`) in every hierarchy.
fn cgroup_root_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("gantry")).collect();
    dirs.push(PathBuf::from("/sys/fs/cgroup/gantry"));
    dirs
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

async fn run(args: &Args, kubeconfig: &Path, agent_pid: u32, data_dir: &Path) -> anyhow::Result<()> {
    let client = client_from(kubeconfig).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = nodes
            .get_opt(NODE)
            .await?
            .and_then(|n| n.status)
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            break;
        }
        if Instant::now() > deadline {
            bail!("the agent's node did not become Ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_rss = rss_kib(agent_pid).unwrap_or(0);
    println!(
        "agent-bench: {} pods, {} network, {} creators; agent RSS idle {} MiB",
        args.pods,
        if args.host_network { "host" } else { "pod" },
        args.clients,
        idle_rss / 1024
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let start_rv = pods.list(&ListParams::default().limit(1)).await?.metadata.resource_version.unwrap_or_default();
    let watch_running = running.clone();
    let watch_pods = pods.clone();
    let total = args.pods;
    let watcher = tokio::spawn(async move {
        let mut stream = watch_pods.watch(&WatchParams::default().timeout(290), &start_rv).await?.boxed();
        while let Some(event) = stream.next().await {
            if let WatchEvent::Modified(pod) | WatchEvent::Added(pod) = event? {
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase == Some("Running") {
                    let mut seen = watch_running.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    seen.entry(pod.metadata.name.unwrap_or_default()).or_insert_with(Instant::now);
                    if seen.len() == total {
                        return anyhow::Ok(());
                    }
                }
            }
        }
        bail!("the watch ended before every pod was Running")
    });

    let cpu_before = cpu_usage();
    let started = Instant::now();
    let mut creators = JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..args.clients {
        let (pods, created, next) = (pods.clone(), created.clone(), next.clone());
        let (count, host_network) = (args.pods, args.host_network);
        creators.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let name = format!("bench-{i:04}");
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {
                        "nodeName": NODE,
                        "hostNetwork": host_network,
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "100000"]}]
                    }
                }))?;
                let at = Instant::now();
                pods.create(&PostParams::default(), &pod).await?;
                created.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(name, at);
            }
        });
    }
    while let Some(done) = creators.join_next().await {
        done??;
    }
    let created_in = started.elapsed();
    tokio::time::timeout(Duration::from_secs(300), watcher)
        .await
        .context("pods did not all reach Running in 5 min")???;
    let all_running = started.elapsed();
    let cpu = cpu_usage().since(&cpu_before);

    let created = created.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let running = running.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut latencies: Vec<Duration> =
        created.iter().filter_map(|(name, at)| running.get(name).map(|r| r.saturating_duration_since(*at))).collect();
    latencies.sort();
    let agent_rss = rss_kib(agent_pid).unwrap_or(0);
    let shim_pids = shims(data_dir);
    let shim_rss: Vec<u64> = shim_pids.iter().filter_map(|pid| rss_kib(*pid)).collect();
    let shim_avg = shim_rss.iter().sum::<u64>() / shim_rss.len().max(1) as u64;
    println!("created {} pods in {}; all Running after {}", args.pods, ms(created_in), ms(all_running));
    println!(
        "creation to Running: p50 {}  p90 {}  p99 {}  max {}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "agent RSS with {} pods: {:.1} MiB; shims: {} running, RSS avg {:.2} MiB, max {:.2} MiB",
        args.pods,
        agent_rss as f64 / 1024.0,
        shim_rss.len(),
        shim_avg as f64 / 1024.0,
        shim_rss.iter().max().copied().unwrap_or(0) as f64 / 1024.0
    );
    println!("bench-process CPU (server + bench): {cpu}; load {}", load_average());

    let deleting = Instant::now();
    let params = DeleteParams { grace_period_seconds: Some(1), ..Default::default() };
    for name in created.keys() {
        pods.delete(name, &params).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods.list(&ListParams::default()).await?.items.is_empty() {
        if Instant::now() > deadline {
            bail!("pods were not all removed within 2 min");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("deleted {} pods (grace 1 s) in {}", args.pods, ms(deleting.elapsed()));
    Ok(())
}
