//! Cluster DNS: the node agent's in-process DNS server, answering for Services, their endpoints and pods under
//! the cluster domain (`cluster.local`) the way CoreDNS's kubernetes plugin does, and relaying every other
//! question to the node's resolvers.
//!
//! What it owns:
//! - Watches of Services and EndpointSlices in every namespace, reduced to an index ([`index`]) that is
//!   replaced whole after each burst of changes, so that a query never waits for the writer.
//! - A DNS server (hickory-server) on one address, UDP and TCP on the same port, whose handler answers from
//!   the index ([`lookup`]) and forwards the rest ([`forward`]).
//!
//! Invariants: answers in the zone are authoritative, with a TTL of [`index::TTL`] seconds and the zone's SOA
//! in the authority section of negative answers; until both watches have listed once, questions in the zone
//! get SERVFAIL rather than a wrong NXDOMAIN. The server never forwards to the addresses it is told to
//! exclude (the cluster DNS address and its own), which would loop.

pub mod forward;
mod handler;
pub mod index;
pub mod lookup;
pub mod testing;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::server::Server;
use kube::Client;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use forward::{Forwarder, upstreams_from_resolv_conf};
/// Record types, for callers of [`testing::ask`] and of [`lookup::lookup`].
pub use hickory_server::proto::rr::RecordType;
pub use index::{ClusterIndex, Zone};

/// The cluster domain the kubelet and CoreDNS default to.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// How the server runs.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Where to listen, UDP and TCP (port 0 picks a free port, the same for both).
    pub listen: SocketAddr,
    /// The cluster domain, e.g. `cluster.local`.
    pub zone: String,
    /// The node's resolvers, for everything outside the zone (see [`upstreams_from_resolv_conf`]).
    pub upstreams: Vec<SocketAddr>,
    /// How long to wait for a resolver before trying the next one.
    pub forward_timeout: Duration,
    /// How long a TCP connection may stay idle.
    pub tcp_idle_timeout: Duration,
}

impl DnsConfig {
    /// Listens on `listen` for `zone`, with no resolvers to forward to yet.
    pub fn new(listen: SocketAddr, zone: impl Into<String>) -> DnsConfig {
        DnsConfig {
            listen,
            zone: zone.into(),
            upstreams: Vec::new(),
            forward_timeout: Duration::from_secs(2),
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The cluster domain is not a DNS name.
    #[error(transparent)]
    Zone(#[from] index::ZoneError),
    /// The address could not be bound.
    #[error("cannot listen for DNS on {addr} over {protocol}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `UDP` or `TCP`.
        protocol: &'static str,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
}

/// A running server.
pub struct RunningDns {
    addr: SocketAddr,
    index: Arc<ClusterIndex>,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningDns {
    /// Where it listens (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The index it answers from.
    pub fn index(&self) -> &Arc<ClusterIndex> {
        &self.index
    }

    /// Waits until the server and its watches have stopped (after the shutdown token fired).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds `config.listen` (UDP, then TCP on the same port) and serves until `shutdown`, answering the zone from
/// watches made with `client`. Binding errors are returned at once; everything after runs in tasks the returned
/// handle owns.
pub async fn serve(client: Client, config: DnsConfig, shutdown: CancellationToken) -> Result<RunningDns, DnsError> {
    let zone = Zone::new(&config.zone)?;
    let index = Arc::new(ClusterIndex::new(zone.clone()));
    let mut running = serve_index(index.clone(), config, shutdown.clone()).await?;
    running.tasks.spawn(watch::run(client, zone, index, shutdown));
    Ok(running)
}

/// Like [`serve`], but answers from `index` as its owner publishes snapshots into it, without watching
/// anything (benchmarks, and tests of the server alone). `config.zone` is ignored: the index has its zone.
pub async fn serve_index(
    index: Arc<ClusterIndex>,
    config: DnsConfig,
    shutdown: CancellationToken,
) -> Result<RunningDns, DnsError> {
    let udp = UdpSocket::bind(config.listen).await.map_err(|source| DnsError::Bind {
        addr: config.listen,
        protocol: "UDP",
        source,
    })?;
    let addr = udp.local_addr().map_err(|source| DnsError::Bind { addr: config.listen, protocol: "UDP", source })?;
    let tcp = TcpListener::bind(addr).await.map_err(|source| DnsError::Bind { addr, protocol: "TCP", source })?;
    let handler = handler::ClusterHandler {
        index: index.clone(),
        forwarder: Forwarder::new(config.upstreams.clone(), config.forward_timeout),
    };
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, config.tcp_idle_timeout, 32);
    let zone = index.snapshot().zone().name().clone();
    tracing::info!(%addr, %zone, upstreams = ?config.upstreams, "cluster DNS listening");

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        tokio::select! {
            result = server.block_until_done() => {
                if let Err(err) = result {
                    tracing::error!(error = %err, %addr, "cluster DNS server stopped");
                }
                return;
            }
            _ = shutdown.cancelled() => {}
        }
        if let Err(err) = server.shutdown_gracefully().await {
            tracing::debug!(error = %err, "cluster DNS server shutdown");
        }
    });
    Ok(RunningDns { addr, index, tasks })
}
