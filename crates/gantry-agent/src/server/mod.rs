//! The node agent's HTTPS API (the kubelet's port 10250): container logs, exec, attach and port-forward, which
//! the API server relays to the node for `kubectl logs|exec|attach|port-forward`.
//!
//! Every request needs a client certificate issued by the cluster CA whose common name is one of the allowed
//! users (the API server presents `kube-apiserver-kubelet-client`): no certificate is 401, another name 403,
//! another CA fails the handshake. Errors are Kubernetes `Status` objects worded as the kubelet words them.
//!
//! Streaming uses WebSocket (channel protocol `v5.channel.k8s.io` / `v4.channel.k8s.io`, and SPDY tunnelled
//! in WebSocket for port-forward) or SPDY/3.1 upgrades, over HTTP/1.1. Upgraded connections live in tasks
//! that end with the shutdown token.

pub mod logs;
pub mod portforward;
pub mod remotecommand;
pub mod spdy;
mod tls;
pub mod websocket;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use gantry_runtime::cri::RuntimeService;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What the node API needs to know about the pods the agent runs (implemented by the pod workers).
pub trait PodDirectory: Send + Sync + 'static {
    /// The pod `namespace/name` as the agent runs it, if it runs it.
    fn pod(&self, namespace: &str, name: &str) -> Option<PodEntry>;
}

/// A pod the agent runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodEntry {
    /// The pod's UID.
    pub uid: String,
    /// Its current sandbox, once created.
    pub sandbox_id: Option<String>,
    /// Its containers (init containers included), by name.
    pub containers: BTreeMap<String, ContainerEntry>,
}

/// A container of a pod the agent runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerEntry {
    /// The runtime's ID of the current attempt, once created.
    pub container_id: Option<String>,
    /// The current attempt's log file, once created.
    pub log_path: Option<PathBuf>,
    /// The previous attempt's log file, if there was one and it is still kept.
    pub previous_log_path: Option<PathBuf>,
    /// Why the container waits (`ContainerCreating`, `CrashLoopBackOff`, ...), when it does.
    pub waiting_reason: Option<String>,
}

/// Where and how the node API serves.
#[derive(Clone, Debug)]
pub struct NodeApiConfig {
    /// Address to listen on (port 10250 on a kubelet node; port 0 picks one).
    pub listen: SocketAddr,
    /// Where the serving certificate and key are kept (`kubelet.crt`, `kubelet.key`); a self-signed pair for
    /// `node_names` is created when missing.
    pub pki_dir: PathBuf,
    /// The node's names and IPs: the serving certificate's subject alternative names.
    pub node_names: Vec<String>,
    /// The cluster CA (PEM), from the agent's kubeconfig: client certificates must be issued by it.
    pub client_ca_pem: String,
    /// Common names of accepted client certificates.
    pub allowed_users: Vec<String>,
}

/// Failures to start the node API.
#[derive(Debug, thiserror::Error)]
pub enum NodeApiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be parsed.
    #[error("invalid {what}: {reason}")]
    Pem {
        /// Which PEM.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The self-signed serving certificate could not be generated.
    #[error("cannot generate the serving certificate: {source}")]
    Certificate {
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What every request handler shares.
pub(crate) struct Shared {
    pub runtime: Arc<dyn RuntimeService>,
    pub pods: Arc<dyn PodDirectory>,
    pub allowed_users: Vec<String>,
    /// Ends streaming sessions and follows at shutdown.
    pub shutdown: CancellationToken,
    /// Upgraded sessions and log follows, waited for at shutdown.
    pub tasks: tokio_util::task::TaskTracker,
}

/// The node API, bound and ready to serve.
pub struct NodeApi {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
}

/// Binds the node API (so that callers learn the port before serving); runtime and pods answer its requests.
pub async fn bind(
    config: NodeApiConfig,
    runtime: Arc<dyn RuntimeService>,
    pods: Arc<dyn PodDirectory>,
) -> Result<NodeApi, NodeApiError> {
    let (cert, key) = tls::load_or_create_serving(&config.pki_dir, &config.node_names)?;
    let tls = tls::server_config(&cert, &key, &config.client_ca_pem)?;
    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| NodeApiError::Bind { addr: config.listen, source })?;
    let shared = Arc::new(Shared {
        runtime,
        pods,
        allowed_users: config.allowed_users,
        shutdown: CancellationToken::new(),
        tasks: tokio_util::task::TaskTracker::new(),
    });
    Ok(NodeApi { listener, tls, shared })
}

/// Binds and serves the node API until `shutdown`.
pub async fn serve(
    config: NodeApiConfig,
    runtime: Arc<dyn RuntimeService>,
    pods: Arc<dyn PodDirectory>,
    shutdown: CancellationToken,
) -> Result<(), NodeApiError> {
    bind(config, runtime, pods).await?.serve(shutdown).await;
    Ok(())
}

impl NodeApi {
    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The serving certificate's path in `pki_dir` (for clients that pin it).
    pub fn certificate_path(pki_dir: &std::path::Path) -> PathBuf {
        pki_dir.join("kubelet.crt")
    }

    /// Serves until `shutdown`; then stops accepting and ends every open connection, stream and follow.
    pub async fn serve(self, shutdown: CancellationToken) {
        let NodeApi { listener, tls, shared } = self;
        let acceptor = TlsAcceptor::from(tls);
        let connections = tokio_util::task::TaskTracker::new();
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        tracing::warn!(error = %err, "node API: accepting a connection failed");
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let shared = Arc::clone(&shared);
            connections.spawn(async move {
                let stop = shared.shutdown.clone();
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = connection(acceptor, tcp, peer, shared) => {}
                }
            });
        }
        shared.shutdown.cancel();
        connections.close();
        shared.tasks.close();
        connections.wait().await;
        shared.tasks.wait().await;
    }
}

async fn connection(acceptor: TlsAcceptor, tcp: tokio::net::TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "node API: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let user = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).and_then(|c| tls::common_name(c));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let user = user.clone();
        async move { Ok::<_, Infallible>(handle(shared, user, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).with_upgrades();
    if let Err(err) = conn.await {
        tracing::debug!(%peer, error = %err, "node API: connection ended with an error");
    }
}

async fn handle(shared: Arc<Shared>, user: Option<String>, req: Request<Incoming>) -> Response<Body> {
    let Some(user) = user else {
        return status_response(401, "Unauthorized", "Unauthorized");
    };
    if !shared.allowed_users.contains(&user) {
        let message = format!(
            "Forbidden (user={user}, verb={}, resource=nodes, subresource=proxy)",
            req.method().as_str().to_ascii_lowercase()
        );
        return status_response(403, "Forbidden", &message);
    }
    let span = tracing::debug_span!("node_api", method = %req.method(), path = %req.uri().path(), user = %user);
    route(&shared, req).instrument(span).await
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let streaming = matches!(*req.method(), Method::GET | Method::POST);
    match segments.as_slice() {
        ["healthz"] if req.method() == Method::GET => text_response(200, "ok"),
        ["containerLogs", ns, pod, container] if req.method() == Method::GET => {
            logs::serve_logs(shared, ns, pod, container, query_pairs(&req)).await
        }
        ["exec", ns, pod, container] if streaming => {
            remotecommand::serve(shared, remotecommand::Kind::Exec, ns, pod, container, req).await
        }
        ["attach", ns, pod, container] if streaming => {
            remotecommand::serve(shared, remotecommand::Kind::Attach, ns, pod, container, req).await
        }
        ["portForward", ns, pod] if streaming => portforward::serve(shared, ns, pod, req).await,
        _ => status_response(404, "NotFound", &format!("the server could not find the requested resource {path}")),
    }
}

/// The query's pairs, in order.
pub(crate) fn query_pairs<B>(req: &Request<B>) -> Vec<(String, String)> {
    req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// A boolean query parameter as the kubelet reads them (`true`/`1`; present without a value counts as true).
pub(crate) fn query_bool(pairs: &[(String, String)], name: &str) -> bool {
    pairs.iter().rev().find(|(k, _)| k == name).is_some_and(|(_, v)| matches!(v.as_str(), "" | "1" | "true" | "True"))
}

/// A Kubernetes `Status` object.
pub(crate) fn status_json(code: u16, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// A `Status` response.
pub(crate) fn status_response(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::to_vec(&status_json(code, reason, message)).unwrap_or_default();
    response(code, "application/json", Bytes::from(body))
}

pub(crate) fn text_response(code: u16, text: &str) -> Response<Body> {
    response(code, "text/plain; charset=utf-8", Bytes::from(text.to_string()))
}

pub(crate) fn response(code: u16, content_type: &str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// Looks up a pod, or the 404 the kubelet answers for one it does not run.
pub(crate) fn find_pod(shared: &Shared, namespace: &str, name: &str) -> Result<PodEntry, Box<Response<Body>>> {
    shared
        .pods
        .pod(namespace, name)
        .ok_or_else(|| Box::new(status_response(404, "NotFound", &format!("pod \"{name}\" not found"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_parameters_read_as_the_kubelet_reads_them() {
        let pairs: Vec<(String, String)> = vec![
            ("stdin".into(), "1".into()),
            ("stdout".into(), "true".into()),
            ("stderr".into(), "false".into()),
            ("tty".into(), String::new()),
        ];
        assert!(query_bool(&pairs, "stdin") && query_bool(&pairs, "stdout") && query_bool(&pairs, "tty"));
        assert!(!query_bool(&pairs, "stderr") && !query_bool(&pairs, "follow"));
    }

    #[test]
    fn a_status_carries_code_reason_and_message() {
        let status = status_json(400, "BadRequest", "container \"c\" in pod \"p\" is waiting to start: Pending");
        assert_eq!(status["code"], 400);
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "BadRequest");
    }
}
