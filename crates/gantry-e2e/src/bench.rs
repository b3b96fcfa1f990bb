//! What the benchmark binaries (`scheduler-bench`, `controller-bench`) share: clients, concurrent creation,
//! percentiles, and CPU use by thread name (each component runs on a runtime whose threads carry its name, so
//! `/proc/self/task/*/stat` tells them apart).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Request;
use serde::de::IgnoredAny;
use serde_json::Value;
use tokio::task::JoinSet;

/// Starts an API server (embedded SQLite) on `server_rt`, in a new temporary directory named after `prefix`;
/// returns it, the directory (removed when dropped) and the token that stops it.
pub fn start_server(
    server_rt: &tokio::runtime::Runtime,
    prefix: &str,
) -> anyhow::Result<(gantry_apiserver::RunningServer, tempfile::TempDir, tokio_util::sync::CancellationToken)> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().context("a temporary directory")?;
    let data_dir = dir.path().to_path_buf();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = server_rt
        .block_on(async { anyhow::Ok(gantry_apiserver::start_loopback(&data_dir, shutdown.clone()).await?) })?;
    Ok((server, dir, shutdown))
}

/// A client for the API server of a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let file = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using {}", kubeconfig.display()))?;
    Ok(kube::Client::try_from(config)?)
}

/// Posts `body` to `path` and skips over the answer.
pub async fn post(client: &kube::Client, path: &str, body: &Value) -> anyhow::Result<()> {
    let request = Request::new(path).create(&PostParams::default(), serde_json::to_vec(body)?)?;
    client.request::<IgnoredAny>(request).await?;
    Ok(())
}

/// Creates `count` objects from `clients` concurrent tasks, `make(i)` for each index; returns when each create
/// answered, by index.
pub async fn create_many(
    client: &kube::Client,
    path: &str,
    count: usize,
    clients: usize,
    make: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> anyhow::Result<Vec<Instant>> {
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let mut tasks = JoinSet::new();
    for _ in 0..clients.max(1) {
        let (client, next, make, path) = (client.clone(), Arc::clone(&next), Arc::clone(&make), path.to_string());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let body = make(i);
                post(&client, &path, &body).await.with_context(|| format!("creating object {i} in {path}"))?;
                done.push((i, Instant::now()));
            }
            anyhow::Ok(done)
        });
    }
    let mut answered = vec![Instant::now(); count];
    while let Some(result) = tasks.join_next().await {
        for (i, at) in result?? {
            answered[i] = at;
        }
    }
    Ok(answered)
}

/// The nearest-rank percentile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---------------------------------------------------------------------------------------------------------------
// CPU by thread name.

/// CPU seconds at one moment: this process's, by thread name, and the machine's busy time.
pub struct CpuUsage {
    at: Instant,
    total: f64,
    by_thread: BTreeMap<String, f64>,
    machine_busy: f64,
}

/// Linux reports CPU times in clock ticks of 1/100 s on every architecture Gantry runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// The thread name and user + system seconds of a `/proc/.../stat` line (fields 14 and 15, counted after the
/// command name, which may itself hold spaces and parentheses).
fn stat_seconds(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / TICKS_PER_SECOND))
}

/// This process's CPU use so far, in total and by thread name, and the machine's.
pub fn cpu_usage() -> CpuUsage {
    let total = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| stat_seconds(&s)).map_or(0.0, |(_, t)| t);
    let mut by_thread = BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Some((name, seconds)) =
                std::fs::read_to_string(task.path().join("stat")).ok().and_then(|s| stat_seconds(&s))
            {
                *by_thread.entry(name).or_insert(0.0) += seconds;
            }
        }
    }
    CpuUsage { at: Instant::now(), total, by_thread, machine_busy: machine_busy_seconds().unwrap_or(0.0) }
}

/// Non-idle seconds of all cores from the first line of `/proc/stat` (everything but idle and iowait).
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = line.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    let busy: f64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Some(busy / TICKS_PER_SECOND)
}

impl CpuUsage {
    /// Cores used since `before`, in total and by thread name, and what the rest of the machine used.
    pub fn since(&self, before: &CpuUsage) -> String {
        let wall = self.at.duration_since(before.at).as_secs_f64().max(f64::EPSILON);
        let mut parts: Vec<(String, f64)> = self
            .by_thread
            .iter()
            .map(|(name, t)| (name.clone(), (t - before.by_thread.get(name).copied().unwrap_or(0.0)).max(0.0) / wall))
            .filter(|(_, cores)| *cores >= 0.01)
            .collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let parts: Vec<String> = parts.iter().map(|(name, cores)| format!("{name} {cores:.2}")).collect();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let ours = (self.total - before.total) / wall;
        let others = ((self.machine_busy - before.machine_busy) / wall - ours).max(0.0);
        format!("{ours:.2} of {cores} cores over {wall:.1} s ({}); other processes {others:.2}", parts.join(", "))
    }
}

/// A duration in milliseconds, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The machine's load averages (1, 5, 15 minutes).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }

    #[test]
    fn thread_cpu_times_survive_odd_thread_names() {
        let stat = "4242 (store (w) x) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0 100 0 0";
        let (name, seconds) = stat_seconds(stat).unwrap_or_default();
        assert_eq!(name, "store (w) x");
        assert!((seconds - 4.0).abs() < 1e-9);
        assert!(stat_seconds("garbage").is_none());
    }
}
