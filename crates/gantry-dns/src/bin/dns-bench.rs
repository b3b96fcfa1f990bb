//! `dns-bench`: queries per second the cluster DNS server answers, from 64 concurrent UDP clients in lock-step
//! (each sends its next question when the previous answer arrived) for about 3 s, asking a mix of a ClusterIP
//! Service's A record, a headless Service's A records (10 endpoints) and a name that does not exist.
//!
//! As root, the clients sit in a network namespace joined to the node's by a veth pair, as a pod's are (without
//! the bridge and the service proxy's DNAT in between); `--loopback` (or no root) uses 127.0.0.1 instead. The
//! server answers from 1,000 ClusterIP Services and 100 headless ones, in-process, without an API server.
//!
//! Usage: `dns-bench [--loopback] [--seconds N] [--clients N]`

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_dns::index::{ClusterIndex, ServiceSource, SliceSource, Sources, Zone};
use gantry_dns::testing::question;
use hickory_server::proto::rr::RecordType;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio_util::sync::CancellationToken;

/// A network namespace with a veth pair into this one; removed on drop, whatever happened.
struct PodNetwork {
    netns: String,
    host_link: String,
    host_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let status = Command::new("ip").args(args).status().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if status.success() { Ok(()) } else { Err(format!("ip {} failed: {status}", args.join(" "))) }
}

impl PodNetwork {
    fn create() -> Result<PodNetwork, String> {
        let pid = std::process::id();
        let subnet = u8::try_from(pid % 250).unwrap_or(0);
        let network = PodNetwork {
            netns: format!("gdnsb-{pid}"),
            host_link: format!("gdbh{pid}"),
            host_ip: Ipv4Addr::new(10, 254, subnet, 1),
            pod_ip: Ipv4Addr::new(10, 254, subnet, 2),
        };
        let pod_link = format!("gdbp{pid}");
        ip(&["netns", "add", &network.netns])?;
        ip(&["link", "add", &network.host_link, "type", "veth", "peer", "name", &pod_link])?;
        ip(&["link", "set", &pod_link, "netns", &network.netns])?;
        ip(&["addr", "add", &format!("{}/30", network.host_ip), "dev", &network.host_link])?;
        ip(&["link", "set", &network.host_link, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &network.netns, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{}/30", network.pod_ip), "dev", &pod_link])?;
        inside(&["link", "set", &pod_link, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(network)
    }

    /// `count` UDP sockets bound inside the namespace (a socket stays in the namespace it was made in, whichever
    /// thread uses it), made on a thread of their own that joins the namespace.
    fn sockets(&self, count: usize) -> Result<Vec<std::net::UdpSocket>, String> {
        let path = format!("/var/run/netns/{}", self.netns);
        let pod_ip = self.pod_ip;
        std::thread::spawn(move || -> Result<Vec<std::net::UdpSocket>, String> {
            let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
            (0..count)
                .map(|_| std::net::UdpSocket::bind((pod_ip, 0)).map_err(|e| format!("bind in the namespace: {e}")))
                .collect()
        })
        .join()
        .map_err(|_| "the namespace thread panicked".to_string())?
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

fn index() -> Result<Arc<ClusterIndex>, String> {
    let zone = Zone::new("cluster.local").map_err(|e| e.to_string())?;
    let mut sources = Sources::default();
    for i in 0..1000u32 {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
            "spec": {"clusterIP": format!("10.43.{}.{}", 10 + i / 250, i % 250 + 1),
                     "ports": [{"name": "http", "port": 80}]}}))
        .map_err(|e| e.to_string())?;
        let source = ServiceSource::from_service(&service).ok_or("service")?;
        sources.services.insert((source.namespace.clone(), source.name.clone()), source);
    }
    for i in 0..100u32 {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("headless-{i}"), "namespace": "bench"}, "spec": {"clusterIP": "None"}}))
        .map_err(|e| e.to_string())?;
        let source = ServiceSource::from_service(&service).ok_or("service")?;
        sources.services.insert((source.namespace.clone(), source.name.clone()), source);
        let endpoints: Vec<serde_json::Value> =
            (0..10u32).map(|e| serde_json::json!({"addresses": [format!("10.42.{}.{}", i, e + 2)]})).collect();
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("headless-{i}-x"), "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": format!("headless-{i}")}},
            "addressType": "IPv4", "endpoints": endpoints}))
        .map_err(|e| e.to_string())?;
        let source = SliceSource::from_slice(&slice).ok_or("slice")?;
        sources.slices.insert(("bench".into(), format!("headless-{i}-x")), source);
    }
    let index = Arc::new(ClusterIndex::new(zone.clone()));
    index.publish(sources.snapshot(&zone, 1));
    Ok(index)
}

/// The questions, cycled: a third each of Service A, headless A and NXDOMAIN.
fn questions() -> Result<Vec<Vec<u8>>, String> {
    let mut all = Vec::new();
    for i in 0..30u16 {
        let name = match i % 3 {
            0 => format!("svc-{}.bench.svc.cluster.local.", i * 31),
            1 => format!("headless-{}.bench.svc.cluster.local.", i * 3),
            _ => format!("missing-{i}.bench.svc.cluster.local."),
        };
        all.push(question(i, &name, RecordType::A, false).map_err(|e| e.to_string())?);
    }
    Ok(all)
}

async fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut loopback = false;
    let mut seconds = 3u64;
    let mut clients = 64usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--loopback" => loopback = true,
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).ok_or("--seconds N")?,
            "--clients" => clients = args.next().and_then(|s| s.parse().ok()).ok_or("--clients N")?,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: dns-bench [--loopback] [--seconds N] [--clients N]"
                ));
            }
        }
    }
    let is_root =
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    let network = if loopback || !is_root {
        None
    } else {
        match PodNetwork::create() {
            Ok(network) => Some(network),
            Err(err) => {
                eprintln!("no pod-like network namespace ({err}); over loopback instead");
                None
            }
        }
    };
    let server_ip = network.as_ref().map(|n| IpAddr::V4(n.host_ip)).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let shutdown = CancellationToken::new();
    let config = gantry_dns::DnsConfig::new(SocketAddr::new(server_ip, 0), "cluster.local");
    let dns = gantry_dns::serve_index(index()?, config, shutdown.clone()).await.map_err(|e| e.to_string())?;
    let server = dns.local_addr();
    let sockets = match &network {
        Some(network) => network.sockets(clients)?,
        None => (0..clients)
            .map(|_| std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
    };
    let questions = Arc::new(questions()?);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let socket = tokio::net::UdpSocket::from_std(socket).map_err(|e| e.to_string())?;
        socket.connect(server).await.map_err(|e| e.to_string())?;
        let questions = questions.clone();
        tasks.spawn(async move {
            let mut buffer = vec![0u8; 4096];
            let (mut answered, mut lost) = (0u64, 0u64);
            let mut i = n;
            while Instant::now() < end {
                let question = &questions[i % questions.len()];
                i += 1;
                if socket.send(question).await.is_err() {
                    lost += 1;
                    continue;
                }
                match tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buffer)).await {
                    Ok(Ok(n)) if n >= 12 && buffer[..2] == question[..2] => answered += 1,
                    _ => lost += 1,
                }
            }
            (answered, lost)
        });
    }
    let started = Instant::now();
    let (mut answered, mut lost) = (0u64, 0u64);
    while let Some(result) = tasks.join_next().await {
        let (a, l) = result.map_err(|e| e.to_string())?;
        answered += a;
        lost += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let path = if network.is_some() { "from a network namespace over a veth pair" } else { "over loopback" };
    println!(
        "{:.0} queries/s ({answered} answered, {lost} lost, {clients} UDP clients, {elapsed:.1} s, {path})",
        answered as f64 / elapsed
    );
    shutdown.cancel();
    dns.wait().await;
    drop(network);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
