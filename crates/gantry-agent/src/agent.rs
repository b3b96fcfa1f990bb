//! The agent as a whole: the machine's facts, the Node and its heartbeats, the container runtime on the data
//! directory, the pod network, and the pod workers, until shutdown.
//!
//! On disk under the data directory: `images/` (the image store, shared with `gantry image`), `run/` (the
//! runtime's sandboxes and containers), `pods/<uid>/` (volumes, logs, termination messages), `cni/` (the
//! default network configuration, the plugins' cache and host-local's address allocations), `manifests/` (static pods).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use gantry_runtime::image::ImageStore;
use gantry_runtime::native::{NativeConfig, NativeRuntime, ShimCommand};
use gantry_runtime::network::cni::{CniClient, CniOptions, DEFAULT_PLUGIN_DIRS, write_default_config};
use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::events::EventRecorder;
use crate::machine;
use crate::node::{self, HeartbeatIntervals, NodeSettings};
use crate::pods::{self, PodContext};

/// The bridge the default network configuration puts pods on.
pub const BRIDGE: &str = "gantry0";

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The Node's name; the hostname when `None`.
    pub node_name: Option<String>,
    /// Labels beyond the well-known ones.
    pub node_labels: BTreeMap<String, String>,
    /// The pods' address range on this node (`--pod-cidr`), written to the Node when it has none; when `None`,
    /// the agent waits for node IPAM to fill `spec.podCIDR`.
    pub pod_cidr: Option<String>,
    /// How the runtime starts a container's shim (the `gantry` binary itself, as `gantry shim`).
    pub shim: ShimCommand,
    /// The cgroup (under each hierarchy's root) that holds the pods.
    pub cgroup_root: String,
    /// Heartbeat intervals.
    pub heartbeats: HeartbeatIntervals,
    /// The static pods' manifests (`DATA/manifests` by default).
    pub manifests_dir: Option<PathBuf>,
    /// Where the node's HTTPS API listens (`0.0.0.0:10250` by default; port 0 picks a free one).
    pub node_api_listen: std::net::SocketAddr,
    /// The cluster CA (PEM): the node API accepts client certificates it signed, for [`API_SERVER_CLIENT_USER`].
    pub cluster_ca_pem: String,
    /// The Node's InternalIP; the address of the default route's interface when `None`.
    pub node_ip: Option<std::net::IpAddr>,
    /// How long to wait for node IPAM to give the Node a pod CIDR when neither the flag nor the Node has one.
    pub pod_cidr_wait: std::time::Duration,
    /// The service proxy's nftables table (`gantry`); `None` runs no service proxy (tests that share the host's
    /// network namespace).
    pub proxy_table: Option<String>,
    /// The ClusterIP range (the API server's `--service-cluster-ip-range`): the service proxy drops traffic to
    /// its addresses that no Service holds.
    pub service_cidr: Option<String>,
    /// The cluster DNS address pods resolve with (`--cluster-dns`, the `kube-dns` Service's ClusterIP); `None`
    /// serves no DNS and leaves pods on the node's resolver.
    pub cluster_dns: Option<std::net::IpAddr>,
    /// The cluster domain (`--cluster-domain`).
    pub cluster_domain: String,
    /// The port the node's DNS server listens on at its InternalIP (53; tests pick another, or 0 for any).
    pub dns_port: u16,
}

/// The kube-dns Service's ClusterIP the API server reserves by default.
pub const DEFAULT_CLUSTER_DNS: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 43, 0, 10));

/// The user of the client certificate the API server presents to node agents (for logs, exec, attach and
/// port-forward); the API server issues it from the cluster CA under this name.
pub const API_SERVER_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

impl AgentConfig {
    /// The defaults for a data directory and a shim.
    pub fn new(data_dir: impl Into<PathBuf>, shim: ShimCommand, cluster_ca_pem: String) -> AgentConfig {
        let data_dir = data_dir.into();
        AgentConfig {
            manifests_dir: Some(data_dir.join("manifests")),
            node_api_listen: std::net::SocketAddr::from(([0, 0, 0, 0], node::NODE_API_PORT as u16)),
            cluster_ca_pem,
            data_dir,
            node_name: None,
            node_labels: BTreeMap::new(),
            pod_cidr: None,
            shim,
            cgroup_root: "gantry".into(),
            heartbeats: HeartbeatIntervals::default(),
            node_ip: None,
            pod_cidr_wait: std::time::Duration::from_secs(60),
            proxy_table: Some(gantry_proxy::DEFAULT_TABLE.to_string()),
            service_cidr: Some("10.43.0.0/16".to_string()),
            cluster_dns: Some(DEFAULT_CLUSTER_DNS),
            cluster_domain: gantry_dns::DEFAULT_CLUSTER_DOMAIN.to_string(),
            dns_port: 53,
        }
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The machine could not be read.
    #[error(transparent)]
    Machine(#[from] machine::MachineError),
    /// The Node could not be registered.
    #[error(transparent)]
    Node(#[from] node::NodeError),
    /// The image store could not be opened.
    #[error("image store: {0}")]
    Images(#[from] gantry_runtime::image::ImageError),
    /// The runtime could not be set up.
    #[error("container runtime: {0}")]
    Runtime(#[from] gantry_runtime::cri::RuntimeError),
    /// The pod network could not be set up.
    #[error("pod network: {0}")]
    Network(#[from] gantry_runtime::network::NetworkError),
    /// The data directory could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The pod manager failed.
    #[error(transparent)]
    Pods(#[from] pods::PodsError),
    /// The node's HTTPS API could not start.
    #[error("node API: {0}")]
    NodeApi(#[from] crate::server::NodeApiError),
    /// Neither the flag nor node IPAM gave the Node a pod CIDR in time.
    #[error(
        "node {node} got no pod CIDR within {seconds} s: run the controller manager with node IPAM (as `gantry server` \
         does) or pass --pod-cidr"
    )]
    NoPodCidr {
        /// The Node.
        node: String,
        /// How long the agent waited.
        seconds: u64,
    },
}

/// A running agent's parts that callers (tests, `gantry up`) may want.
pub struct RunningAgent {
    /// The Node's name.
    pub node_name: String,
    /// What the pod workers share (the node API's view of pods, the runtime).
    pub pods: Arc<PodContext>,
    /// Where the node's HTTPS API listens.
    pub node_api_addr: Option<std::net::SocketAddr>,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningAgent {
    /// Waits until every part has stopped (after the shutdown token fired).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Waits for node IPAM to write the Node's `spec.podCIDR`.
async fn wait_for_pod_cidr(
    client: &Client,
    name: &str,
    patience: std::time::Duration,
    shutdown: &CancellationToken,
) -> Result<String, AgentError> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + patience;
    let no_cidr = || AgentError::NoPodCidr { node: name.to_string(), seconds: patience.as_secs() };
    tracing::info!(node = name, "waiting for node IPAM to give the Node a pod CIDR");
    loop {
        match nodes.get_opt(name).await {
            Ok(Some(node)) => {
                if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
                    return Ok(cidr);
                }
            }
            Ok(None) => {}
            Err(err) => tracing::debug!(error = %err, "reading the Node for its pod CIDR"),
        }
        if tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() {
            return Err(no_cidr());
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(no_cidr()),
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
        }
    }
}

/// Starts the agent: registers the Node, sets up the runtime and the pod network, and runs heartbeats and pod
/// workers until `shutdown`.
pub async fn start(
    client: Client,
    config: AgentConfig,
    shutdown: CancellationToken,
) -> Result<RunningAgent, AgentError> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| AgentError::Io { path: data_dir.clone(), source })?;
    let mut facts = machine::detect(data_dir)?;
    if let Some(ip) = config.node_ip {
        facts.internal_ip = Some(ip);
    }
    let mut settings = NodeSettings::new(config.node_name.clone().unwrap_or_else(|| facts.hostname.clone()));
    settings.labels = config.node_labels.clone();
    settings.pod_cidr = config.pod_cidr.clone();
    let images = Arc::new(ImageStore::open(data_dir.join("images"))?);
    // The runtime is set up before the Node registers (the node API must listen before the Node names its port),
    // but the pod network needs the Node's pod CIDR: the CNI client reads its configuration when a pod starts.
    let conf_dir = data_dir.join("cni/net.d");
    let cni = DEFAULT_PLUGIN_DIRS
        .iter()
        .any(|d| std::path::Path::new(d).join("bridge").exists())
        .then(|| CniClient::new(CniOptions::new(conf_dir.clone(), data_dir.join("cni/cache"))));
    let mut runtime_config = NativeConfig::new(data_dir.join("run"), config.shim.clone());
    runtime_config.cgroup_root = config.cgroup_root.clone();
    let runtime: Arc<dyn gantry_runtime::RuntimeService> =
        Arc::new(NativeRuntime::new(runtime_config, images.clone(), cni.clone())?);

    let mut tasks = tokio::task::JoinSet::new();
    let (recorder, recorder_task) = EventRecorder::start(client.clone(), &settings.name, shutdown.clone());
    tasks.spawn(async move {
        let _ = recorder_task.await;
    });
    let host_ips = facts.internal_ip.map(|ip| vec![ip.to_string()]).unwrap_or_default();
    if let Some(dir) = &config.manifests_dir {
        std::fs::create_dir_all(dir).map_err(|source| AgentError::Io { path: dir.clone(), source })?;
    }
    // Cluster DNS starts before any pod, so that pods are pointed at it only when it runs.
    let dns = match (config.cluster_dns, facts.internal_ip) {
        (Some(cluster_dns), Some(ip)) => {
            let domain = &config.cluster_domain;
            crate::dns::start(&client, ip, config.dns_port, domain, cluster_dns, shutdown.clone()).await
        }
        (Some(_), None) => {
            tracing::error!("the node has no InternalIP to serve cluster DNS on; pods use the node's resolver");
            None
        }
        (None, _) => None,
    };
    let mut ctx = PodContext::new(
        client.clone(),
        runtime.clone(),
        images.clone(),
        settings.name.clone(),
        host_ips.clone(),
        data_dir.join("pods"),
        i64::try_from(facts.memory_bytes).unwrap_or(i64::MAX),
        recorder,
        node::allocatable(&facts),
    );
    ctx.manifests_dir = config.manifests_dir.clone();
    let (services, services_task) = crate::env::ServiceCache::watch(client.clone(), shutdown.clone());
    tasks.spawn(services_task);
    ctx.services = Some(services);
    ctx.cluster_dns = dns.as_ref().and(config.cluster_dns).map(|server| crate::pods::spec::ClusterDns {
        server,
        domain: config.cluster_domain.trim_end_matches('.').to_string(),
    });
    let ctx = Arc::new(ctx);

    let mut node_names = vec![settings.name.clone(), facts.hostname.clone()];
    node_names.extend(host_ips.iter().cloned());
    node_names.dedup();
    let api_config = crate::server::NodeApiConfig {
        listen: config.node_api_listen,
        pki_dir: data_dir.join("pki"),
        node_names,
        client_ca_pem: config.cluster_ca_pem.clone(),
        allowed_users: vec![API_SERVER_CLIENT_USER.to_string()],
    };
    let node_api = crate::server::bind(api_config, runtime.clone(), ctx.clone()).await?;
    let node_api_addr = node_api.local_addr();
    if let Some(addr) = node_api_addr {
        settings.api_port = addr.port();
    }
    let node = node::register(&client, &facts, &settings).await?;
    if let Some(dns) = dns {
        let slice = crate::dns::endpoint_slice(&node, dns.local_addr());
        tasks.spawn(crate::dns::keep_endpoint_slice(client.clone(), slice, shutdown.clone()));
        tasks.spawn(dns.wait());
    }

    let mut node_pod_cidr = None;
    if cni.is_some() {
        // The Node's range wins over the flag: it is what the other nodes route here.
        let pod_cidr = match node.spec.as_ref().and_then(|s| s.pod_cidr.clone()).filter(|c| !c.is_empty()) {
            Some(cidr) => cidr,
            None => wait_for_pod_cidr(&client, &settings.name, config.pod_cidr_wait, &shutdown).await?,
        };
        write_default_config(&conf_dir, &data_dir.join("cni/networks"), BRIDGE, &pod_cidr)?;
        gantry_runtime::network::masquerade::ensure_masquerade(&pod_cidr).await?;
        tasks.spawn(crate::routes::run(client.clone(), settings.name.clone(), pod_cidr.clone(), shutdown.clone()));
        node_pod_cidr = Some(pod_cidr);
    } else {
        tracing::warn!("no CNI plugins in /usr/lib/cni or /opt/cni/bin: only hostNetwork pods can run");
    }
    if let Some(table) = &config.proxy_table {
        // The service proxy: ClusterIPs and NodePorts on this node. Without nft the node still runs pods.
        let mut proxy = gantry_proxy::ProxyConfig::new(settings.name.clone());
        proxy.table = table.clone();
        proxy.node_ips = facts
            .internal_ip
            .into_iter()
            .filter_map(|ip| match ip {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        proxy.pod_cidr = node_pod_cidr.as_deref().and_then(|c| c.parse().ok());
        proxy.service_cidrs = config.service_cidr.as_deref().and_then(|c| c.parse().ok()).into_iter().collect();
        let (proxy_client, proxy_shutdown) = (client.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(err) = gantry_proxy::run(proxy_client, proxy, proxy_shutdown).await {
                tracing::error!(error = %err, "no service proxy: ClusterIPs and NodePorts do not work on this node");
            }
        });
    }
    let api_shutdown = shutdown.clone();
    tasks.spawn(node_api.serve(api_shutdown));
    let pods_ctx = ctx.clone();
    let pods_shutdown = shutdown.clone();
    tasks.spawn(async move {
        if let Err(err) = pods::run(pods_ctx, pods_shutdown).await {
            tracing::error!(error = %err, "pod manager stopped");
        }
    });
    let node_name = settings.name.clone();
    tasks.spawn(node::run_heartbeats(client, node, facts, settings, config.heartbeats, shutdown));
    Ok(RunningAgent { node_name, pods: ctx, node_api_addr, tasks })
}
