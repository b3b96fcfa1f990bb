//! HTTPS serving: TLS with optional client certificates, HTTP/1.1 and HTTP/2, authentication, and the
//! translation between hyper and [`Api`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ApiRequest, Reply};
use crate::auth::{TokenFile, User, bearer_token};
use crate::codec::MAX_BODY;
use crate::pki::{CertifiedKey, identity_from_cert};
use crate::pod_proxy::{NodeClient, ProxyTarget};
use crate::request::Query;
use crate::status::ApiError;

/// The body of every response the server writes.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Failures while setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key could not be parsed.
    #[error("invalid {what}: {reason}")]
    Pem {
        /// Which PEM.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Builds the TLS configuration: our serving certificate; client certificates verified against the cluster
/// CA but not required (bearer tokens work too).
pub fn tls_config(serving: &CertifiedKey, ca_pem: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { what: "serving certificate", reason: e.to_string() })?;
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())
        .map_err(|e| TlsError::Pem { what: "serving key", reason: e.to_string() })?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| TlsError::Pem { what: "CA certificate", reason: e.to_string() })?;
        roots.add(ca).map_err(|e| TlsError::Pem { what: "CA certificate", reason: e.to_string() })?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves HTTPS on `listener` until `shutdown`, then stops accepting and lets open requests finish (watches
/// and relays to node agents end on the same signal). Requests for pods' logs, exec, attach and port-forward go
/// to the pod's node through `nodes`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<Api>,
    tokens: Arc<TokenFile>,
    nodes: Arc<NodeClient>,
    ca: Arc<crate::pki::ClusterCa>,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = Arc::clone(&api);
        let tokens = Arc::clone(&tokens);
        let nodes = Arc::clone(&nodes);
        let ca = Arc::clone(&ca);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| identity_from_cert(cert))
                .map(|(name, groups)| User::new(name, groups));
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let api = Arc::clone(&api);
                let tokens = Arc::clone(&tokens);
                let nodes = Arc::clone(&nodes);
                let ca = Arc::clone(&ca);
                let cert_user = cert_user.clone();
                async move { Ok::<_, Infallible>(handle(api, tokens, nodes, ca, cert_user, peer, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(err) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    // Give in-flight requests a moment; watches end through the same shutdown signal.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    // Upgraded connections left the HTTP server's care; their relays end on the shutdown signal.
    nodes.wait_closed(std::time::Duration::from_secs(5)).await;
}

fn full(code: u16, content_type: &str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

/// An error as a `Status` response.
pub(crate) fn error_response(err: &ApiError) -> Response<Body> {
    full(err.code, "application/json", crate::codec::to_bytes(&err.to_status()))
}

async fn handle(
    api: Arc<Api>,
    tokens: Arc<TokenFile>,
    nodes: Arc<NodeClient>,
    ca: Arc<crate::pki::ClusterCa>,
    cert_user: Option<User>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // Health and version are anonymous, as on kube-apiserver.
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => return full(200, "text/plain; charset=utf-8", Bytes::from_static(b"ok")),
        "/version" | "/version/" => {
            return full(200, "application/json", crate::codec::to_bytes(&crate::discovery::version()));
        }
        _ => {}
    }
    if path.starts_with("/healthz/") || path.starts_with("/livez/") || path.starts_with("/readyz/") {
        return full(200, "text/plain; charset=utf-8", Bytes::from_static(b"ok"));
    }
    // Joining nodes have no credentials the API knows yet: these two paths check their own.
    if path == gantry_api::join::CA_PATH {
        if method != Method::GET {
            return error_response(&ApiError::method_not_allowed(format!(
                "{method} is not allowed on {path}; use GET"
            )));
        }
        return full(200, "application/x-pem-file", Bytes::from(ca.cert_pem().to_string()));
    }
    if path == gantry_api::join::NODE_CERTIFICATE_PATH {
        if method != Method::POST {
            return error_response(&ApiError::method_not_allowed(format!(
                "{method} is not allowed on {path}; use POST"
            )));
        }
        let bearer = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .map(str::to_string);
        let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                return error_response(&ApiError::bad_request(format!("reading the request body failed: {err}")));
            }
        };
        let answer = crate::join::node_certificate(&api, &ca, bearer.as_deref(), cert_user.as_ref(), &body).await;
        tracing::info!(%peer, %path, ok = answer.is_ok(), "node certificate request");
        return match answer {
            Ok(value) => full(200, "application/json", crate::codec::to_bytes(&value)),
            Err(err) => error_response(&err),
        };
    }
    let token_user = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(|token| tokens.authenticate(token).cloned());
    let user = match (token_user, cert_user) {
        // A token that is presented must be valid, even if a certificate was presented too.
        (Some(None), _) => return error_response(&ApiError::unauthorized()),
        (Some(Some(user)), _) => user,
        (None, Some(user)) => user,
        (None, None) => return error_response(&ApiError::unauthorized()),
    };
    if let Some(target) = ProxyTarget::parse(&path) {
        // Relayed to the node as it comes: the body is neither read nor buffered here.
        let response = crate::pod_proxy::serve(&api, &nodes, target, req).await;
        tracing::debug!(%peer, user = %user.name, %method, %path, status = response.status().as_u16(), "request");
        return response;
    }
    let query = Query::parse(req.uri().query());
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            let too_large = err.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            let e = if too_large {
                let mut e = ApiError::bad_request("the request body is too large");
                e.code = 413;
                e.reason = "RequestEntityTooLarge";
                e
            } else {
                ApiError::bad_request(format!("reading the request body failed: {err}"))
            };
            return error_response(&e);
        }
    };
    let started = std::time::Instant::now();
    let request = ApiRequest { method: method.clone(), path: path.clone(), query, headers: parts.headers, body, user };
    let user_name = request.user.name.clone();
    let reply = api.handle(request).await;
    let response = match reply {
        Reply::Full { code, content_type, body, warnings } => {
            let mut response = full(code, &content_type, body);
            for warning in warnings {
                let value = format!("299 - \"{}\"", warning.replace('"', "\\\""));
                if let Ok(v) = value.parse() {
                    response.headers_mut().append("warning", v);
                }
            }
            response
        }
        Reply::Stream { content_type, rx } => {
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|chunk| Ok(Frame::data(chunk)));
            let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
            if let Ok(v) = content_type.parse() {
                response.headers_mut().insert(http::header::CONTENT_TYPE, v);
            }
            response
        }
        Reply::Raw(response) => response.map(|b| Full::new(b).boxed_unsync()),
    };
    tracing::debug!(%peer, user = %user_name, %method, %path, status = response.status().as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}
