//! `store-bench`: the same workloads against the embedded SQLite store and a real single-member etcd, in one
//! run, printed as one table. Build with `--release`:
//!
//! ```text
//! cargo run --release -p gantry-store --bin store-bench -- --seconds 5
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use gantry_store::etcd::{EtcdConfig, EtcdStore};
use gantry_store::sqlite::{SqliteConfig, SqliteStore};
use gantry_store::testing::etcd_server::EtcdServer;
use gantry_store::{ListOptions, Store, StoreError};

#[derive(Parser, Debug)]
#[command(about = "Measures the Gantry store backends side by side")]
struct Args {
    /// Seconds each timed workload runs.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Which backends to run: sqlite, etcd, or both.
    #[arg(long, default_value = "both")]
    backend: String,
    /// Where the SQLite database goes (a temporary directory by default). Put it on the disk you care about.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keys in the list workload.
    #[arg(long, default_value_t = 10_000)]
    list_keys: usize,
}

/// One workload's figures.
#[derive(Default, Clone)]
struct Figures {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

#[derive(Default, Clone)]
struct Results {
    create_1: Figures,
    create_64: Figures,
    cas_64: Figures,
    watch_latency: Figures,
    list_full: Duration,
    list_paged: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn figures(ops: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Figures {
    latencies.sort_unstable();
    Figures {
        ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

fn value(size: usize) -> Bytes {
    Bytes::from(vec![b'x'; size])
}

/// Runs `workers` tasks that each call `op(worker, iteration)` in a loop until `duration` has passed; the
/// figures are over all calls.
async fn timed<F, Fut>(workers: usize, duration: Duration, op: F) -> anyhow::Result<Figures>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), StoreError>> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let op = Arc::clone(&op);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    op(w, i).await?;
                    latencies.push(t.elapsed());
                    i += 1;
                }
                Ok::<_, StoreError>(latencies)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(figures(all.len(), started.elapsed(), all))
}

/// `writers` tasks create fresh keys for `duration`.
async fn creates(
    store: Arc<dyn Store>,
    prefix: &'static str,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<Figures> {
    timed(writers, duration, move |w, i| {
        let store = Arc::clone(&store);
        async move { store.create(format!("{prefix}{w}/{i:08}").as_bytes(), value(256)).await.map(|_| ()) }
    })
    .await
}

/// 64 tasks read-modify-write random keys among 1,000 with compare-and-swap; a conflict is retried and only
/// successful updates count.
async fn cas_updates(store: Arc<dyn Store>, duration: Duration) -> anyhow::Result<Figures> {
    const KEYS: usize = 1000;
    for k in 0..KEYS {
        store.create(format!("/bench/cas/{k:04}").as_bytes(), value(256)).await?;
    }
    timed(64, duration, move |_, _| {
        let store = Arc::clone(&store);
        async move {
            let key = format!("/bench/cas/{:04}", rand::random_range(0..KEYS));
            loop {
                let current = store.get(key.as_bytes()).await?;
                match store.update(key.as_bytes(), value(256), current.mod_revision).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(err) => return Err(err),
                }
            }
        }
    })
    .await
}

/// Time from the start of a write to its event arriving on a watch, with 8 concurrent writers.
async fn watch_latency(store: Arc<dyn Store>, duration: Duration) -> anyhow::Result<Figures> {
    let origin = Instant::now();
    let started = origin;
    let mut watch = store.watch(b"/bench/watch/", 0).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&store);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // The value carries when the write started.
                    let sent = origin.elapsed().as_nanos().to_string();
                    store.create(format!("/bench/watch/{w}/{n:08}").as_bytes(), Bytes::from(sent)).await?;
                    n += 1;
                }
                Ok::<_, StoreError>(n)
            })
        })
        .collect();
    // usize::MAX until the writers are done and the number of events to expect is known.
    let expected = Arc::new(AtomicUsize::new(usize::MAX));
    let collector = {
        let expected = Arc::clone(&expected);
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while latencies.len() < expected.load(Ordering::Acquire) {
                let Ok(event) = tokio::time::timeout(Duration::from_millis(100), watch.next()).await else {
                    continue;
                };
                let event = event.ok_or_else(|| anyhow::anyhow!("the watch ended"))??;
                let sent: u128 = String::from_utf8_lossy(&event.kv.value).parse()?;
                let now = origin.elapsed().as_nanos();
                latencies.push(Duration::from_nanos(now.saturating_sub(sent) as u64));
            }
            Ok::<_, anyhow::Error>(latencies)
        })
    };
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for writer in writers {
        written += writer.await??;
    }
    expected.store(written, Ordering::Release);
    let latencies = tokio::time::timeout(Duration::from_secs(30), collector)
        .await
        .context("not every write arrived on the watch")???;
    Ok(figures(latencies.len(), started.elapsed(), latencies))
}

async fn list_times(store: Arc<dyn Store>, keys: usize) -> anyhow::Result<(Duration, Duration)> {
    let chunk = 64;
    for start in (0..keys).step_by(chunk) {
        let tasks: Vec<_> = (start..(start + chunk).min(keys))
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.create(format!("/bench/list/{i:06}").as_bytes(), value(1024)).await })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
    }
    let mut full = Vec::new();
    let mut paged = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let page = store.list(b"/bench/list/", ListOptions::default()).await?;
        anyhow::ensure!(page.items.len() == keys, "listed {} of {keys} keys", page.items.len());
        full.push(t.elapsed());

        let t = Instant::now();
        let mut options = ListOptions { limit: Some(500), ..Default::default() };
        let mut seen = 0;
        loop {
            let page = store.list(b"/bench/list/", options.clone()).await?;
            seen += page.items.len();
            match page.continue_from {
                Some(next) => {
                    options = ListOptions { revision: Some(page.revision), limit: Some(500), continue_from: Some(next) }
                }
                None => break,
            }
        }
        anyhow::ensure!(seen == keys, "paged through {seen} of {keys} keys");
        paged.push(t.elapsed());
    }
    full.sort_unstable();
    paged.sort_unstable();
    Ok((full[full.len() / 2], paged[paged.len() / 2]))
}

async fn run_all(store: Arc<dyn Store>, args: &Args) -> anyhow::Result<Results> {
    let duration = Duration::from_secs_f64(args.seconds);
    let create_1 = creates(Arc::clone(&store), "/bench/c1/", 1, duration).await.context("creates, 1 writer")?;
    let create_64 = creates(Arc::clone(&store), "/bench/c64/", 64, duration).await.context("creates, 64 writers")?;
    let cas_64 = cas_updates(Arc::clone(&store), duration).await.context("CAS updates")?;
    let watch_latency = watch_latency(Arc::clone(&store), duration).await.context("watch latency")?;
    let (list_full, list_paged) = list_times(Arc::clone(&store), args.list_keys).await.context("list")?;
    Ok(Results { create_1, create_64, cas_64, watch_latency, list_full, list_paged })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn print_table(args: &Args, rows: &[(&str, Option<Results>)]) {
    let names: Vec<_> = rows.iter().map(|(n, _)| *n).collect();
    println!("\n| workload | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    let line = |label: &str, f: &dyn Fn(&Results) -> String| {
        let cells: Vec<String> = rows.iter().map(|(_, r)| r.as_ref().map_or("n/a".into(), f)).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    line("creates/s, 1 writer", &|r| format!("{:.0}", r.create_1.ops_per_sec));
    line("create latency p50 / p99, 1 writer", &|r| format!("{} / {}", ms(r.create_1.p50), ms(r.create_1.p99)));
    line("creates/s, 64 writers", &|r| format!("{:.0}", r.create_64.ops_per_sec));
    line("create latency p50 / p99, 64 writers", &|r| format!("{} / {}", ms(r.create_64.p50), ms(r.create_64.p99)));
    line("CAS updates/s, 64 writers on 1,000 hot keys", &|r| format!("{:.0}", r.cas_64.ops_per_sec));
    line("CAS update latency p99 (with retries)", &|r| ms(r.cas_64.p99));
    line("write → watch event latency p50 / p99", &|r| {
        format!("{} / {}", ms(r.watch_latency.p50), ms(r.watch_latency.p99))
    });
    line(&format!("list {} keys (1 KiB values), one page", args.list_keys), &|r| ms(r.list_full));
    line(&format!("list {} keys, pages of 500", args.list_keys), &|r| ms(r.list_paged));
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let want = |name: &str| args.backend == "both" || args.backend == name;
    let mut rows = Vec::new();

    if want("sqlite") {
        let temp = tempfile::tempdir()?;
        let dir = args.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
        let path = dir.join("bench.db");
        let _ = std::fs::remove_file(&path);
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteConfig::new(&path))?);
        eprintln!("sqlite: {}", path.display());
        let results = run_all(store, &args).await.context("sqlite")?;
        rows.push(("SQLite (fsync each group)", Some(results)));
    }
    if want("etcd") {
        let server = EtcdServer::start().await.context("start etcd (is etcd-server installed?)")?;
        eprintln!("etcd: {}", server.endpoint());
        let store: Arc<dyn Store> =
            Arc::new(EtcdStore::connect(EtcdConfig::new(vec![server.endpoint()], b"/bench-run".to_vec())).await?);
        let results = run_all(store, &args).await.context("etcd")?;
        rows.push(("etcd 3.4, one member", Some(results)));
    }
    print_table(&args, &rows);
    Ok(())
}
