//! Gantry's API server: the Kubernetes REST API served over HTTPS from a [`gantry_store::Store`].
//!
//! It owns routing and discovery, the object lifecycle (create, update, patch, delete with finalizers and
//! graceful deletion), LIST and WATCH from an in-memory watch cache, OpenAPI v3, server-side tables, and
//! authentication (client certificates from the cluster CA, static bearer tokens). It is the only component
//! that talks to the store; everything else is a client of the API. Beside the Kubernetes API it serves
//! Gantry's own paths under `/gantry/`: a scheduler's account of its decisions ([`scheduling`]), which it gets
//! from a hook rather than from a dependency on the scheduler.
//!
//! Pods' logs, exec, attach and port-forward are relayed to the node agent on the pod's node ([`pod_proxy`]),
//! which the API server calls as [`pki::KUBELET_CLIENT_USER`].
//!
//! Admission includes kube-apiserver's LimitRanger ([`limit_range`]) and ResourceQuota ([`resource_quota`]) steps;
//! quota charges are compare-and-swapped into the quotas before objects are stored.
//!
//! Authorization is not enforced yet: every authenticated user may do anything.

#![allow(clippy::result_large_err)] // ApiError carries a Status's details; errors are the cold path.

pub mod admission;
pub mod api;
pub mod apply;
pub mod auth;
pub mod cache;
pub mod codec;
pub mod convert;
pub mod crd;
pub mod discovery;
mod eviction;
pub mod join;
pub mod limit_range;
pub mod managed_fields;
pub mod objects;
pub mod pki;
pub mod pod_proxy;
pub mod reads;
pub mod request;
pub mod resource_quota;
pub mod scheduling;
pub mod server;
pub mod services;
pub mod status;
pub mod strategy;
pub mod tables;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use gantry_store::Store;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use api::Api;
pub use scheduling::SchedulingExplainer;

/// How to run the API server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The data directory (`pki/` and `kubeconfig` live here).
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub bind_address: IpAddr,
    /// Port to listen on (0 picks a free one).
    pub secure_port: u16,
    /// Extra names for the serving certificate.
    pub tls_sans: Vec<String>,
    /// A static token file (`token,user,uid[,"groups"]`).
    pub token_file: Option<PathBuf>,
    /// Services' address and node port ranges and the cluster DNS address.
    pub services: services::ServiceNetwork,
}

impl ServerConfig {
    /// A server for tests and benchmarks: `127.0.0.1` on a free port, its data in `data_dir`.
    pub fn loopback(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.into(),
            bind_address: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            secure_port: 0,
            tls_sans: Vec::new(),
            token_file: None,
            services: services::ServiceNetwork::default(),
        }
    }
}

/// Failures while starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The embedded store could not be opened.
    #[error(transparent)]
    Store(#[from] gantry_store::StoreError),
    /// Certificates could not be loaded or created.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// TLS could not be configured.
    #[error(transparent)]
    Tls(#[from] server::TlsError),
    /// The client for node agents could not be set up.
    #[error(transparent)]
    NodeClient(#[from] pod_proxy::NodeClientError),
    /// The token file is unusable.
    #[error(transparent)]
    Tokens(#[from] auth::TokenFileError),
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The built-in namespaces could not be created.
    #[error("cannot create the built-in namespaces: {0}")]
    Bootstrap(status::ApiError),
    /// The built-in Services could not be created.
    #[error("cannot create the built-in Services: {0}")]
    BuiltInServices(status::ApiError),
    /// The join token could not be set up.
    #[error(transparent)]
    Join(#[from] join::JoinError),
}

/// A running API server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The admin kubeconfig it wrote.
    pub kubeconfig: PathBuf,
    /// The API, for in-process use.
    pub api: Arc<Api>,
    /// The token new nodes join with (also in `DATA/node-token`).
    pub join_token: gantry_api::join::JoinToken,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// Stops accepting requests, ends watches, and waits for the server's tasks.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until the server stops (after [`CancellationToken::cancel`] on the token given to `start`).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts a server for tests and benchmarks ([`ServerConfig::loopback`]) over a new SQLite store in
/// `data_dir/state.db`; its admin kubeconfig is `data_dir/kubeconfig`.
pub async fn start_loopback(
    data_dir: &std::path::Path,
    shutdown: CancellationToken,
) -> Result<RunningServer, StartError> {
    let store =
        gantry_store::sqlite::SqliteStore::open(gantry_store::sqlite::SqliteConfig::new(data_dir.join("state.db")))?;
    start(ServerConfig::loopback(data_dir), Arc::new(store), shutdown).await
}

/// The namespaces every cluster has from the start.
pub const BUILT_IN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Starts the API server on `store`: certificates, the watch cache, the built-in namespaces, the admin
/// kubeconfig, then HTTPS.
pub async fn start(
    config: ServerConfig,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> Result<RunningServer, StartError> {
    let ca = pki::ClusterCa::load_or_create(&config.data_dir.join("pki"))?;
    let mut names: BTreeSet<String> =
        ["localhost", "127.0.0.1", "::1", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
            .into_iter()
            .map(String::from)
            .collect();
    if let Some(host) = hostname() {
        names.insert(host);
    }
    if !config.bind_address.is_unspecified() {
        names.insert(config.bind_address.to_string());
    }
    // Pods reach the API server through the `kubernetes` Service, by address and by name.
    names.insert(config.services.kubernetes_ip().to_string());
    names.insert("kubernetes.default.svc.cluster.local".into());
    names.extend(config.tls_sans.iter().cloned());
    let serving = ca.serving(&names)?;
    let tls = server::tls_config(&serving, ca.cert_pem())?;
    let nodes = Arc::new(pod_proxy::NodeClient::new(&ca.kubelet_client()?, shutdown.clone())?);
    let tokens = match &config.token_file {
        Some(path) => auth::TokenFile::load(path)?,
        None => auth::TokenFile::default(),
    };
    let addr = SocketAddr::new(config.bind_address, config.secure_port);
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen { addr, source })?;

    let mut tasks = JoinSet::new();
    let cache = cache::WatchCache::new(cache::DEFAULT_WINDOW);
    tasks.spawn(Arc::clone(&cache).run(Arc::clone(&store), shutdown.clone()));
    let mut api = Api::new(store, cache, shutdown.clone());
    api.service_network = config.services.clone();
    let api = Arc::new(api);
    bootstrap(&api).await.map_err(StartError::Bootstrap)?;
    services::ensure_built_in(&api, addr.port()).await.map_err(StartError::BuiltInServices)?;
    let advertise = SocketAddr::new(services::advertise_address(config.bind_address), addr.port());
    if let Err(e) = services::sync_endpoints(&api, advertise).await {
        tracing::warn!(error = %e.message, "cannot write the kubernetes Service's endpoints yet");
    }
    tasks.spawn(services::run_endpoints(Arc::clone(&api), advertise, shutdown.clone()));
    tasks.spawn(services::run_repair(Arc::clone(&api), shutdown.clone()));
    // Custom resources are served from the first request on: the cache must hold every stored definition
    // first (a restart creates nothing, so nothing above waited for it).
    let stored = api
        .store
        .current_revision()
        .await
        .map_err(|e| StartError::Bootstrap(status::ApiError::internal(e.to_string())))?;
    api.cache.wait_for(stored, std::time::Duration::from_secs(30)).await.map_err(StartError::Bootstrap)?;
    crd::sync(&api).await.map_err(StartError::Bootstrap)?;
    tasks.spawn(crd::run(Arc::clone(&api), shutdown.clone()));
    let join_token = join::ensure_token(&api, &config.data_dir, ca.cert_pem()).await?;

    let kubeconfig = config.data_dir.join("kubeconfig");
    write_admin_kubeconfig(&ca, &kubeconfig, addr.port())?;
    let ca = Arc::new(ca);
    tasks.spawn(server::serve(listener, tls, Arc::clone(&api), Arc::new(tokens), nodes, ca, shutdown.clone()));
    tracing::info!(%addr, kubeconfig = %kubeconfig.display(), "API server listening");
    Ok(RunningServer { addr, kubeconfig, api, join_token, shutdown, tasks })
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty())
}

async fn bootstrap(api: &Arc<Api>) -> Result<(), status::ApiError> {
    let namespaces = api.registry.by_plural("", "v1", "namespaces").ok_or_else(status::ApiError::no_route)?;
    let options = objects::WriteOptions { field_manager: "gantry-apiserver".into(), ..Default::default() };
    for name in BUILT_IN_NAMESPACES {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match api.create(namespaces, None, ns, &options).await {
            Ok(_) => tracing::info!(namespace = name, "created built-in namespace"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes an admin kubeconfig (client certificate in group `system:masters`) for `https://127.0.0.1:PORT`,
/// reusing the admin certificate issued earlier.
fn write_admin_kubeconfig(ca: &pki::ClusterCa, path: &Path, port: u16) -> Result<(), pki::PkiError> {
    let cert_path = ca.dir().join("admin.crt");
    let key_path = ca.dir().join("admin.key");
    let admin = match (std::fs::read_to_string(&cert_path), std::fs::read_to_string(&key_path)) {
        (Ok(cert_pem), Ok(key_pem)) => pki::CertifiedKey { cert_pem, key_pem },
        _ => {
            let issued = ca.issue_client("admin", Some("system:masters"))?;
            pki::write_private(&key_path, &issued.key_pem, 0o600)?;
            pki::write_private(&cert_path, &issued.cert_pem, 0o644)?;
            issued
        }
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gantry\n  cluster:\n    certificate-authority-data: {}\n    \
         server: https://127.0.0.1:{port}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    \
         client-key-data: {}\ncontexts:\n- name: gantry\n  context:\n    cluster: gantry\n    user: admin\n\
         current-context: gantry\npreferences: {{}}\n",
        b64(ca.cert_pem()),
        b64(&admin.cert_pem),
        b64(&admin.key_pem),
    );
    pki::write_private(path, &text, 0o600)
}
