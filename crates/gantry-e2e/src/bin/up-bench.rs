//! `up-bench`: `gantry up` as a user meets it, measured. It spawns the real `gantry up` on a fresh data directory
//! (free ports, the busybox image already imported) and reports:
//!
//! 1. the time from the spawn to the line "Gantry is up", and to the Node being `Ready` in the API (polled with
//!    the kubeconfig `gantry up` writes);
//! 2. the memory of the `gantry up` process (VmRSS from `/proc/PID/status`, Pss from `/proc/PID/smaps_rollup`;
//!    the containers' shims are processes of their own and not counted) after `--idle` seconds;
//! 3. the same with `--pods` busybox pods `Running` on the pod network;
//!
//! then deletes the pods, stops `gantry up` with SIGTERM and runs `gantry reset` on the data directory, so that
//! nothing is left on the machine (also when the bench fails part-way).
//!
//! ```text
//! cargo build --release -p gantry -p gantry-e2e
//! sudo target/release/up-bench [--idle 60] [--pods 100] [--gantry target/release/gantry]
//! ```
//!
//! Root is needed (containers). The `gantry` binary defaults to `release/gantry` in the target directory this
//! bench was built in.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use gantry_e2e::bench::{client_from, ms};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use tokio::task::JoinSet;

#[derive(Parser, Debug, Clone)]
#[command(about = "Measures `gantry up`: time to a Ready node, and its memory idle and with pods")]
struct Args {
    /// The `gantry` binary (default: release/gantry in this bench's target directory).
    #[arg(long)]
    gantry: Option<PathBuf>,
    /// Seconds to wait, once the node is Ready, before the idle memory is read.
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// Busybox pods to run for the second reading (0 skips it).
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Concurrent pod creators.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// The node's pod range (a /24 holds 253 pods).
    #[arg(long, default_value = "10.252.0.0/24")]
    pod_cidr: String,
}

const IMAGE: &str = "bench.gantry.local/busybox:1";
const NODE: &str = "up-bench";

/// Memory of a process, KiB.
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    rss: u64,
    pss: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VmRSS {:.1} MiB, Pss {:.1} MiB", self.rss as f64 / 1024.0, self.pss as f64 / 1024.0)
    }
}

/// The value in KiB of `key:` in `/proc` text such as `status` or `smaps_rollup`.
fn kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.split(':').next() == Some(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/PID/status")?;
    let rollup =
        std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).context("reading /proc/PID/smaps_rollup")?;
    Ok(Memory { rss: kib(&status, "VmRSS").unwrap_or(0), pss: kib(&rollup, "Pss").unwrap_or(0) })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// `gantry up`, and its data directory: when dropped (the bench failed part-way, or it finished), the process is
/// killed if it still runs and `gantry reset` removes what it left on the machine.
struct Up {
    gantry: PathBuf,
    data_dir: PathBuf,
    child: Option<Child>,
    reset_done: bool,
}

impl Up {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, as a user's Ctrl-C; the containers keep running (the reset removes them).
    fn stop(&mut self) -> anyhow::Result<Duration> {
        let Some(mut child) = self.child.take() else { bail!("gantry up is not running") };
        let started = Instant::now();
        gantry_e2e::signal(child.id(), "TERM");
        let deadline = started + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                anyhow::ensure!(status.success(), "gantry up exited with {status} after SIGTERM");
                return Ok(started.elapsed());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("gantry up did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `gantry reset --data-dir DIR`; returns its output.
    fn reset(&mut self) -> anyhow::Result<String> {
        let output = Command::new(&self.gantry).arg("reset").arg("--data-dir").arg(&self.data_dir).output()?;
        self.reset_done = true;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        anyhow::ensure!(
            output.status.success(),
            "gantry reset failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(text)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.reset_done {
            let _ = self.reset();
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(is_root(), "up-bench runs containers: run it as root");
    let gantry = match &args.gantry {
        Some(path) => path.clone(),
        None => {
            let exe = std::env::current_exe()?;
            let target = exe.parent().and_then(Path::parent).context("finding the target directory")?;
            target.join("release/gantry")
        }
    };
    anyhow::ensure!(
        gantry.exists(),
        "{} not found: build it (cargo build --release -p gantry) or pass --gantry",
        gantry.display()
    );

    let parent = tempfile::Builder::new().prefix("up-bench").tempdir_in("/var/tmp")?;
    let data_dir = parent.path().join("data");
    let store = gantry_runtime::image::ImageStore::open(data_dir.join("images"))?;
    let archive = parent.path().join("busybox.tar");
    gantry_runtime::testing::write_busybox_archive(&archive, IMAGE)?;
    store.import_archive(&archive)?;
    drop(store);

    let (api_port, node_port) = (free_port()?, free_port()?);
    let mut command = Command::new(&gantry);
    command
        .arg("up")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--secure-port", &api_port.to_string(), "--bind-address", "127.0.0.1"])
        .args(["--node-api-port", &node_port.to_string(), "--node-name", NODE, "--pod-cidr", &args.pod_cidr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let spawned = Instant::now();
    let mut child = command.spawn().with_context(|| format!("starting {}", gantry.display()))?;
    let stdout = child.stdout.take();
    let mut up = Up { gantry: gantry.clone(), data_dir: data_dir.clone(), child: Some(child), reset_done: false };
    // "Gantry is up" is timed by a reader thread; the thread ends when `gantry up` closes its output.
    let (up_line_tx, up_line_rx) = std::sync::mpsc::channel();
    if let Some(stdout) = stdout {
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("Gantry is up") {
                    let _ = up_line_tx.send(spawned.elapsed());
                }
            }
        });
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(run(&args, &mut up, spawned, &up_line_rx));
    let outcome = outcome.and_then(|()| {
        let stopped = up.stop()?;
        println!("gantry up stopped (SIGTERM) in {}", ms(stopped));
        let report = up.reset()?;
        println!("gantry reset:");
        for line in report.lines() {
            println!("  {line}");
        }
        Ok(())
    });
    drop(up);
    outcome
}

async fn run(
    args: &Args,
    up: &mut Up,
    spawned: Instant,
    up_line: &std::sync::mpsc::Receiver<Duration>,
) -> anyhow::Result<()> {
    let kubeconfig = up.data_dir.join("kubeconfig");
    let deadline = spawned + Duration::from_secs(60);
    // The kubeconfig is written once the API server serves; until then, and until the Node is Ready, poll.
    let ready_after = loop {
        if let Ok(client) = client_from(&kubeconfig).await {
            let nodes: Api<Node> = Api::all(client);
            let ready = nodes
                .get_opt(NODE)
                .await
                .ok()
                .flatten()
                .and_then(|n| n.status)
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                break spawned.elapsed();
            }
        }
        if Instant::now() > deadline {
            bail!("the node did not become Ready within 60 s of the spawn");
        }
        if let Some(child) = up.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("gantry up exited with {status} before its node was Ready");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let up_after = up_line.recv_timeout(Duration::from_secs(5)).context("gantry up did not print \"Gantry is up\"")?;
    println!(
        "up-bench: {} (pid {}); spawn to \"Gantry is up\": {}; spawn to Node Ready: {}",
        up.gantry.display(),
        up.pid(),
        ms(up_after),
        ms(ready_after)
    );

    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    println!("idle {} s after Ready: {}", args.idle, memory(up.pid())?);
    if args.pods == 0 {
        return Ok(());
    }

    let client = client_from(&kubeconfig).await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut creators = JoinSet::new();
    for _ in 0..args.clients.max(1) {
        let (pods, next, count) = (pods.clone(), next.clone(), args.pods);
        creators.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("up-bench-{i:04}")},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "100000"]}]
                    }
                }))?;
                pods.create(&PostParams::default(), &pod).await?;
            }
        });
    }
    while let Some(done) = creators.join_next().await {
        done??;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = pods.list(&ListParams::default()).await?;
        let running =
            list.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).count();
        if running == args.pods {
            break;
        }
        if Instant::now() > deadline {
            bail!("{running} of {} pods Running after 5 min", args.pods);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_running = started.elapsed();
    // Once the pods run, the agent's memory settles over a few heartbeats; read it after one status period.
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!(
        "{} pods Running {} after the first create; 10 s later: {}",
        args.pods,
        ms(all_running),
        memory(up.pid())?
    );

    let deleting = Instant::now();
    let params = DeleteParams { grace_period_seconds: Some(1), ..Default::default() };
    for pod in pods.list(&ListParams::default()).await?.items {
        pods.delete(&pod.metadata.name.unwrap_or_default(), &params).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_values_are_read_by_exact_key() {
        let rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  2048 kB\nPss:  1024 kB\nPss_Anon:  512 kB\n";
        assert_eq!(kib(rollup, "Pss"), Some(1024));
        assert_eq!(kib(rollup, "Rss"), Some(2048));
        assert_eq!(kib("VmRSS:\t  4096 kB\n", "VmRSS"), Some(4096));
        assert_eq!(kib(rollup, "Swap"), None);
    }
}
