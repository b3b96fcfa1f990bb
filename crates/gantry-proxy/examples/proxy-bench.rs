//! `proxy-bench`: the service proxy's two figures, in a scratch network namespace (root and `nft` needed):
//!
//! 1. a full sync of `--services` Services × `--endpoints` endpoints: rendering, then `nft -f`, p50 and max over
//!    `--runs` runs;
//! 2. endpoint change → rules in place: the proxy runs against a real in-process API server holding as many
//!    Services and EndpointSlices; `--changes` EndpointSlice updates, one at a time, each timed from just before
//!    the API write to the end of the `nft` transaction that contains it (the proxy's sync reports); p50, p99.
//!
//! ```text
//! cargo run -p gantry-proxy --example proxy-bench
//! cargo run -p gantry-proxy --example proxy-bench -- --services 1000 --endpoints 10 --changes 200
//! ```

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use gantry_proxy::model::{Endpoint, NodeInfo, PortPlan, Protocol, ServiceKey, ServicePlan};
use gantry_proxy::render::{full_sync, service_rules};
use gantry_proxy::{Cidr, NftCommand, ProxyConfig};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

/// The bench's knobs, from `--name value` arguments.
#[derive(Debug)]
struct Args {
    /// Services.
    services: usize,
    /// Endpoints per Service.
    endpoints: usize,
    /// Full syncs to time.
    runs: usize,
    /// Endpoint changes to time.
    changes: usize,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        let mut args = Args { services: 1000, endpoints: 10, runs: 5, changes: 200 };
        let mut words = std::env::args().skip(1);
        while let Some(flag) = words.next() {
            let value: usize = words.next().with_context(|| format!("{flag} needs a value"))?.parse()?;
            match flag.as_str() {
                "--services" => args.services = value,
                "--endpoints" => args.endpoints = value,
                "--runs" => args.runs = value,
                "--changes" => args.changes = value,
                _ => bail!("unknown flag {flag} (--services, --endpoints, --runs, --changes)"),
            }
        }
        Ok(args)
    }
}

/// A scratch network namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 43, 100 + (i / 250) as u8, (i % 250 + 1) as u8)
}

/// Endpoint `e` of Service `i`; a new `generation` moves every address.
fn endpoint_ip(i: usize, e: usize, generation: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 42 + (i / 250) as u8, (i % 250) as u8, (e + 1 + generation * 20) as u8)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn node() -> anyhow::Result<NodeInfo> {
    Ok(NodeInfo {
        name: "bench".into(),
        node_ips: vec![Ipv4Addr::new(10, 99, 0, 1)],
        pod_cidr: Some("10.42.0.0/16".parse::<Cidr>()?),
        service_cidrs: vec!["10.43.0.0/16".parse::<Cidr>()?],
    })
}

async fn full_syncs(args: &Args, nft: &NftCommand) -> anyhow::Result<()> {
    let node = node()?;
    let mut render_times = Vec::new();
    let mut nft_times = Vec::new();
    let mut bytes = 0;
    for _ in 0..args.runs {
        let started = Instant::now();
        let rules: Vec<_> = (0..args.services)
            .map(|i| {
                let plan = ServicePlan {
                    key: ServiceKey { namespace: format!("ns{}", i % 50), name: format!("svc{i}") },
                    cluster_ip: vip(i),
                    ports: vec![PortPlan {
                        name: "http".into(),
                        protocol: Protocol::Tcp,
                        port: 80,
                        node_port: Some(30000 + i as u16),
                        cluster: (0..args.endpoints)
                            .map(|e| Endpoint { ip: endpoint_ip(i, e, 0), port: 8080 })
                            .collect(),
                        local: Vec::new(),
                        has_endpoints: args.endpoints > 0,
                        internal_local: false,
                        external_local: false,
                        affinity_timeout: None,
                    }],
                };
                service_rules(&plan, &node)
            })
            .collect();
        let text = full_sync(gantry_proxy::DEFAULT_TABLE, &node, rules.iter());
        render_times.push(started.elapsed());
        bytes = text.len();
        let applied = Instant::now();
        nft.apply(&text).await.context("full sync")?;
        nft_times.push(applied.elapsed());
    }
    let totals: Vec<Duration> = render_times.iter().zip(&nft_times).map(|(r, n)| *r + *n).collect();
    for times in [&mut render_times, &mut nft_times] {
        times.sort();
    }
    let mut totals = totals;
    totals.sort();
    println!(
        "full sync, {} Services x {} endpoints ({} kB of nft text), {} runs:",
        args.services,
        args.endpoints,
        bytes / 1024,
        args.runs
    );
    println!("  render p50 {:?} max {:?}", percentile(&render_times, 0.5), percentile(&render_times, 1.0));
    println!("  nft    p50 {:?} max {:?}", percentile(&nft_times, 0.5), percentile(&nft_times, 1.0));
    println!("  total  p50 {:?} max {:?} (target <= 1 s)", percentile(&totals, 0.5), percentile(&totals, 1.0));
    Ok(())
}

fn slice_for(i: usize, endpoints: usize, generation: usize) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("svc{i}-1")),
            namespace: Some("default".into()),
            labels: Some([("kubernetes.io/service-name".to_string(), format!("svc{i}"))].into()),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: (0..endpoints)
            .map(|e| SliceEndpoint {
                addresses: vec![endpoint_ip(i, e, generation).to_string()],
                ..SliceEndpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort { name: Some("http".into()), port: Some(8080), ..EndpointPort::default() }]),
    }
}

async fn change_latency(args: &Args, nft: NftCommand) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    let _server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.context("API server")?;
    let kubeconfig = kube::config::Kubeconfig::read_from(dir.path().join("kubeconfig"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let created = Instant::now();
    let mut creates = futures::stream::iter(0..args.services)
        .map(|i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                let svc = Service {
                    metadata: ObjectMeta { name: Some(format!("svc{i}")), ..ObjectMeta::default() },
                    spec: Some(ServiceSpec {
                        cluster_ip: Some(vip(i).to_string()),
                        cluster_ips: Some(vec![vip(i).to_string()]),
                        ports: Some(vec![ServicePort {
                            name: Some("http".into()),
                            port: 80,
                            ..ServicePort::default()
                        }]),
                        ..ServiceSpec::default()
                    }),
                    status: None,
                };
                services.create(&PostParams::default(), &svc).await?;
                slices.create(&PostParams::default(), &slice_for(i, args.endpoints, 0)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32);
    while let Some(result) = creates.next().await {
        result?;
    }
    println!("created {} Services and EndpointSlices in {:?}", args.services, created.elapsed());

    let (reports, mut receiver) = tokio::sync::broadcast::channel(1024);
    let mut config = ProxyConfig::new("bench");
    config.nft = nft;
    config.node_ips = vec![Ipv4Addr::new(10, 99, 0, 1)];
    config.pod_cidr = Some("10.42.0.0/16".parse::<Cidr>()?);
    config.reports = Some(reports);
    let proxy_shutdown = CancellationToken::new();
    let _proxy_guard = proxy_shutdown.clone().drop_guard();
    let proxy = tokio::spawn(gantry_proxy::run(client.clone(), config, proxy_shutdown.clone()));
    let first = tokio::time::timeout(Duration::from_secs(120), receiver.recv()).await.context("first sync")??;
    println!("first (full) sync: {} Services, render {:?}, nft {:?}", first.services.len(), first.render, first.nft);

    let mut latencies = Vec::new();
    for change in 0..args.changes {
        let i = (change * 7) % args.services;
        let key = ServiceKey { namespace: "default".into(), name: format!("svc{i}") };
        let mut slice = slice_for(i, args.endpoints, change % 2 + 1);
        let current = slices.get(&format!("svc{i}-1")).await?;
        slice.metadata.resource_version = current.metadata.resource_version;
        let started = Instant::now();
        slices.replace(&format!("svc{i}-1"), &PostParams::default(), &slice).await?;
        loop {
            let report = tokio::time::timeout(Duration::from_secs(30), receiver.recv())
                .await
                .with_context(|| format!("no sync for change {change}"))??;
            if report.completed > started && report.services.contains(&key) {
                latencies.push(report.completed - started);
                break;
            }
        }
    }
    latencies.sort();
    println!(
        "endpoint change -> rules in place, {} changes over {} Services: p50 {:?} p99 {:?} max {:?} (target p99 <= 1 s)",
        latencies.len(),
        args.services,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    proxy_shutdown.cancel();
    proxy.await?.context("proxy")?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    if args.services > 30_000 || args.endpoints > 200 {
        bail!("at most 30,000 --services (their ClusterIPs are 10.43.100.1 up) and 200 --endpoints");
    }
    let name = format!("gantry-proxy-bench-{}", std::process::id());
    let status = std::process::Command::new("ip").args(["netns", "add", &name]).status()?;
    if !status.success() {
        bail!("ip netns add {name} failed (root needed)");
    }
    let netns = Netns(name);
    let nft = NftCommand::in_netns(&netns.0);
    nft.version().await.context("nft (apt-get install nftables)")?;
    full_syncs(&args, &nft).await?;
    change_latency(&args, nft).await?;
    Ok(())
}
