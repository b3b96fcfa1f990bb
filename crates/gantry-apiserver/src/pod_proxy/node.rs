//! The API server's HTTPS client for node agents: one TLS connection per request, with the API server's client
//! certificate, HTTP/1.1 so that upgrades work, and a task per connection owned by the server's shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::pki::CertifiedKey;

/// How long dialing a node (TCP and TLS) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The kubelet's port when a Node does not say.
pub(crate) const DEFAULT_NODE_PORT: u16 = 10250;

/// Failures while building the client.
#[derive(Debug, thiserror::Error)]
pub enum NodeClientError {
    /// The client certificate or key could not be parsed.
    #[error("invalid {what}: {reason}")]
    Pem {
        /// Which PEM.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS client configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// Failures while reaching a node agent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("{host} is not a valid TLS server name")]
    Name { host: String },
    #[error("dial tcp {authority}: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dial tcp {authority}: i/o timeout")]
    Timeout { authority: String },
    #[error("TLS handshake with {authority}: {source}")]
    Tls {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP to {authority}: {source}")]
    Http {
        authority: String,
        #[source]
        source: hyper::Error,
    },
}

/// Failures while relaying an upgraded connection.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("upgrading the {side} connection: {source}")]
    Upgrade {
        side: &'static str,
        #[source]
        source: hyper::Error,
    },
    #[error("copying bytes: {0}")]
    Copy(#[source] std::io::Error),
}

/// Where a node agent serves its API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeEndpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl NodeEndpoint {
    /// `host:port`, with brackets around an IPv6 address (for Host headers and messages).
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Keeps a node connection open; dropping it closes the connection (the client went away).
pub(crate) struct ConnectionGuard(#[allow(dead_code)] DropGuard);

/// The API server's client for node agents' HTTPS APIs.
///
/// It presents the certificate the cluster CA issued to [`crate::pki::KUBELET_CLIENT_USER`] and does **not**
/// verify the node's serving certificate: that is kube-apiserver's behaviour without
/// `--kubelet-certificate-authority`, and node agents serve self-signed certificates. The TLS handshake still
/// checks the node's signature with the key of the certificate it presented.
pub struct NodeClient {
    connector: TlsConnector,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient").field("connections", &self.tasks.len()).finish_non_exhaustive()
    }
}

impl NodeClient {
    /// A client presenting `identity`; its connections and relays end when `shutdown` is cancelled.
    pub fn new(identity: &CertifiedKey, shutdown: CancellationToken) -> Result<NodeClient, NodeClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| NodeClientError::Pem { what: "node client certificate", reason: e.to_string() })?;
        let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
            .map_err(|e| NodeClientError::Pem { what: "node client key", reason: e.to_string() })?;
        let verifier = Arc::new(AnyServerCertificate { algorithms: provider.signature_verification_algorithms });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(NodeClientError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(certs, key)
            .map_err(NodeClientError::Config)?;
        // Upgrades (exec, attach, port-forward) need HTTP/1.1; logs do not need more.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(NodeClient { connector: TlsConnector::from(Arc::new(config)), shutdown, tasks: TaskTracker::new() })
    }

    /// Sends one request on a new connection to `endpoint`. The connection lives until the response body is
    /// done, the guard is dropped, or the server shuts down; after a 101 its bytes belong to the upgrade.
    pub(crate) async fn send(
        &self,
        endpoint: &NodeEndpoint,
        request: Request<Empty<Bytes>>,
    ) -> Result<(Response<Incoming>, ConnectionGuard), DialError> {
        let authority = endpoint.authority();
        let name =
            ServerName::try_from(endpoint.host.clone()).map_err(|_| DialError::Name { host: endpoint.host.clone() })?;
        let dial = async {
            let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|source| DialError::Connect { authority: authority.clone(), source })?;
            let _ = tcp.set_nodelay(true);
            self.connector
                .connect(name, tcp)
                .await
                .map_err(|source| DialError::Tls { authority: authority.clone(), source })
        };
        let tls = tokio::time::timeout(DIAL_TIMEOUT, dial)
            .await
            .map_err(|_| DialError::Timeout { authority: authority.clone() })??;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|source| DialError::Http { authority: authority.clone(), source })?;
        let closed = self.shutdown.child_token();
        let guard = ConnectionGuard(closed.clone().drop_guard());
        let peer = authority.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = closed.cancelled() => tracing::debug!(node = %peer, "node connection closed"),
                result = conn.with_upgrades() => if let Err(err) = result {
                    tracing::debug!(node = %peer, error = %err, "node connection ended with an error");
                },
            }
        });
        let response = sender
            .send_request(request)
            .await
            .map_err(|source| DialError::Http { authority: authority.clone(), source })?;
        Ok((response, guard))
    }

    /// Relays bytes both ways between the client's and the node's upgraded connections until either side is
    /// done or the server shuts down.
    pub(crate) fn relay(&self, client: OnUpgrade, node: OnUpgrade, guard: ConnectionGuard, what: String) {
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let _guard = guard;
            tokio::select! {
                _ = shutdown.cancelled() => tracing::debug!(stream = %what, "relay ended by shutdown"),
                result = relay(client, node) => match result {
                    Ok((to_node, to_client)) => tracing::debug!(stream = %what, to_node, to_client, "relay done"),
                    Err(err) => tracing::debug!(stream = %what, error = %err, "relay ended with an error"),
                },
            }
        });
    }

    /// Stops taking new work and waits (at most `patience`) for open connections and relays, which end on the
    /// shutdown signal.
    pub async fn wait_closed(&self, patience: Duration) {
        self.tasks.close();
        let _ = tokio::time::timeout(patience, self.tasks.wait()).await;
    }
}

async fn relay(client: OnUpgrade, node: OnUpgrade) -> Result<(u64, u64), RelayError> {
    let client = client.await.map_err(|source| RelayError::Upgrade { side: "client", source })?;
    let node = node.await.map_err(|source| RelayError::Upgrade { side: "node", source })?;
    let (mut client, mut node) = (TokioIo::new(client), TokioIo::new(node));
    tokio::io::copy_bidirectional(&mut client, &mut node).await.map_err(RelayError::Copy)
}

/// Accepts whatever certificate a node presents, still checking that the node holds its key.
#[derive(Debug)]
struct AnyServerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_endpoint_is_bracketed() {
        assert_eq!(NodeEndpoint { host: "::1".into(), port: 10250 }.authority(), "[::1]:10250");
        assert_eq!(NodeEndpoint { host: "10.0.0.1".into(), port: 1 }.authority(), "10.0.0.1:1");
    }

    #[test]
    fn a_client_is_built_from_a_certificate_the_cluster_ca_issued() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::pki::ClusterCa::load_or_create(dir.path()).unwrap();
        let client = NodeClient::new(&ca.kubelet_client().unwrap(), CancellationToken::new());
        assert!(client.is_ok(), "{client:?}");
        let broken = CertifiedKey { cert_pem: "nope".into(), key_pem: "nope".into() };
        assert!(matches!(NodeClient::new(&broken, CancellationToken::new()), Err(NodeClientError::Pem { .. })));
    }
}
