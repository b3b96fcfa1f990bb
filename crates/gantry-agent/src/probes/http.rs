//! The HTTP GET of httpGet probes and hooks: one connection per request (HTTP/1.1, `Connection: close`), HTTPS
//! without certificate verification, redirects followed while they stay on the same host, at most 10 KiB of body
//! read. The kubelet's prober does the same with Go's client; error messages keep its wording
//! (`Get "http://10.0.0.5:8080/healthz": dial tcp 10.0.0.5:8080: connect: connection refused`).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::{ACCEPT, CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, LOCATION, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::HTTPGetAction;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{KUBE_VERSION, MAX_OUTPUT_BYTES, PortError, ProbeResult, ProbeTarget, dial_error, join_host_port};

/// Most redirects followed, as Go's client follows.
const MAX_REDIRECTS: usize = 10;

/// Why an HTTP GET failed before a response came.
#[derive(Debug, thiserror::Error)]
pub enum HttpGetError {
    /// The handler's port could not be resolved.
    #[error(transparent)]
    Port(#[from] PortError),
    /// Neither the handler nor the pod gives a host.
    #[error("the pod has no IP and the handler names no host")]
    NoHost,
    /// The scheme is neither HTTP nor HTTPS.
    #[error("unsupported scheme {0:?}")]
    Scheme(String),
    /// A header of the handler is not valid HTTP.
    #[error("invalid HTTP header {name:?}")]
    Header {
        /// The header's name.
        name: String,
    },
    /// The URL the handler makes (or a redirect names) is not valid.
    #[error("parse {url:?}: invalid URL")]
    Url {
        /// The URL.
        url: String,
    },
    /// The connection could not be made.
    #[error("Get {url:?}: dial tcp {address}: {message}")]
    Dial {
        /// The URL asked for.
        url: String,
        /// The address dialled.
        address: String,
        /// Why it failed.
        message: String,
    },
    /// The TLS handshake failed.
    #[error("Get {url:?}: tls: {source}")]
    Tls {
        /// The URL asked for.
        url: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed after the connection was made.
    #[error("Get {url:?}: {source}")]
    Exchange {
        /// The URL asked for.
        url: String,
        /// What failed.
        #[source]
        source: hyper::Error,
    },
    /// Redirects went on past 10.
    #[error("Get {url:?}: stopped after 10 redirects")]
    TooManyRedirects {
        /// The last URL redirected to.
        url: String,
    },
}

impl HttpGetError {
    /// Whether an HTTPS request reached a server that speaks plain HTTP (hooks retry those over HTTP, as the
    /// kubelet does).
    pub(crate) fn is_plain_http_answer(&self) -> bool {
        let HttpGetError::Tls { source, .. } = self else { return false };
        matches!(
            source.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::InvalidMessage(_))
        )
    }
}

/// A URL the agent fetches: scheme, host, port and path with query.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Location {
    tls: bool,
    /// Without brackets for IPv6.
    host: String,
    port: u16,
    /// Starts with `/`.
    path: String,
}

impl Location {
    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    fn authority(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    fn parse_absolute(url: &str) -> Option<Location> {
        let uri: Uri = url.parse().ok()?;
        let tls = match uri.scheme_str()? {
            s if s.eq_ignore_ascii_case("http") => false,
            s if s.eq_ignore_ascii_case("https") => true,
            _ => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        Some(Location { tls, host, port, path })
    }

    /// Where a `Location` header leads from here (absolute, scheme-relative, absolute-path or relative).
    fn resolve(&self, location: &str) -> Option<Location> {
        if location.contains("://") {
            Location::parse_absolute(location)
        } else if location.starts_with("//") {
            Location::parse_absolute(&format!("{}:{location}", self.scheme()))
        } else if location.starts_with('/') {
            Some(Location { path: location.to_string(), ..self.clone() })
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map(|i| i + 1).unwrap_or(1).min(base.len())];
            Some(Location { path: format!("{dir}{location}"), ..self.clone() })
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority(), self.path)
    }
}

/// An httpGet handler resolved against its container: where to go and with which headers.
#[derive(Clone, Debug)]
pub(crate) struct HttpGetRequest {
    location: Location,
    headers: HeaderMap,
    /// The `Host` the handler's headers ask for.
    host_header: Option<HeaderValue>,
}

/// The response a GET ended with.
#[derive(Debug)]
pub(crate) struct HttpGetResponse {
    /// Its status.
    pub(crate) status: StatusCode,
    /// At most 10 KiB of its body.
    pub(crate) body: Vec<u8>,
    /// The URL that answered.
    pub(crate) url: String,
}

impl HttpGetRequest {
    /// The request `action` makes for the container `target` names; `purpose` names the client in its
    /// User-Agent (`kube-probe/1.35`, `kube-lifecycle/1.35`).
    pub(crate) fn new(action: &HTTPGetAction, target: &ProbeTarget, purpose: &str) -> Result<Self, HttpGetError> {
        let scheme = action.scheme.as_deref().unwrap_or("HTTP");
        let tls = match scheme {
            s if s.eq_ignore_ascii_case("http") || s.is_empty() => false,
            s if s.eq_ignore_ascii_case("https") => true,
            other => return Err(HttpGetError::Scheme(other.to_string())),
        };
        let host = match action.host.as_deref().filter(|h| !h.is_empty()) {
            Some(host) => host.to_string(),
            None => target.pod_ip.clone().ok_or(HttpGetError::NoHost)?,
        };
        let port = super::resolve_port(&action.port, &target.ports)?;
        let path = action.path.clone().unwrap_or_default();
        let path = if path.starts_with('/') { path } else { format!("/{path}") };
        let location = Location { tls, host, port, path };
        if Location::parse_absolute(&location.to_string()).as_ref() != Some(&location) {
            return Err(HttpGetError::Url { url: location.to_string() });
        }

        let mut headers = HeaderMap::new();
        for header in action.http_headers.iter().flatten() {
            let invalid = || HttpGetError::Header { name: header.name.clone() };
            let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| invalid())?;
            let value = HeaderValue::from_str(&header.value).map_err(|_| invalid())?;
            headers.append(name, value);
        }
        if !headers.contains_key(USER_AGENT) {
            let agent = format!("kube-{purpose}/{KUBE_VERSION}");
            headers
                .insert(USER_AGENT, HeaderValue::from_str(&agent).map_err(|_| HttpGetError::Header { name: agent })?);
        }
        match headers.get(ACCEPT) {
            None => {
                headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
            }
            // An Accept set to nothing asks for no Accept at all.
            Some(value) if value.is_empty() && headers.get_all(ACCEPT).iter().count() == 1 => {
                headers.remove(ACCEPT);
            }
            Some(_) => {}
        }
        let host_header = headers.remove(HOST).filter(|h| !h.is_empty());
        Ok(HttpGetRequest { location, headers, host_header })
    }

    /// The URL asked for.
    pub(crate) fn url(&self) -> String {
        self.location.to_string()
    }

    /// The same request over plain HTTP, without credentials (the kubelet's fallback for hooks).
    pub(crate) fn over_plain_http(&self) -> HttpGetRequest {
        let mut plain = self.clone();
        plain.location.tls = false;
        plain.headers.remove(http::header::AUTHORIZATION);
        plain
    }

    /// The failure message of an attempt that ran out of time, as the kubelet words it.
    pub(crate) fn timeout_message(&self) -> String {
        format!("Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)", self.url())
    }

    /// Sends the request, following redirects that stay on the same host; a redirect elsewhere is the answer.
    /// Not bounded in time: callers bound it.
    pub(crate) async fn send(&self) -> Result<HttpGetResponse, HttpGetError> {
        let mut location = self.location.clone();
        let mut host_header = self.host_header.clone();
        let mut followed = 0;
        loop {
            let (status, headers, body) = self.exchange(&location, host_header.as_ref()).await?;
            let next = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
                .then(|| headers.get(LOCATION).and_then(|l| l.to_str().ok()).filter(|l| !l.is_empty()))
                .flatten();
            let Some(next) = next else {
                return Ok(HttpGetResponse { status, body, url: location.to_string() });
            };
            let target = location.resolve(next).ok_or_else(|| HttpGetError::Url { url: next.to_string() })?;
            if !target.host.eq_ignore_ascii_case(&self.location.host) {
                tracing::warn!(from = %location, to = %target, "probe redirected to another host: taken as the answer");
                return Ok(HttpGetResponse { status, body, url: location.to_string() });
            }
            if followed >= MAX_REDIRECTS {
                return Err(HttpGetError::TooManyRedirects { url: target.to_string() });
            }
            followed += 1;
            // A Host of the handler's own holds across relative redirects only, as with Go's client.
            if next.contains("//") {
                host_header = None;
            }
            location = target;
        }
    }

    async fn exchange(
        &self,
        location: &Location,
        host_header: Option<&HeaderValue>,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), HttpGetError> {
        let url = location.to_string();
        let address = location.authority();
        let tcp = TcpStream::connect(&address).await.map_err(|err| HttpGetError::Dial {
            url: url.clone(),
            address: address.clone(),
            message: dial_error(&err),
        })?;
        let _ = tcp.set_nodelay(true);

        let mut request = Request::get(location.path.as_str());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let host = match host_header {
            Some(host) => host.clone(),
            None => HeaderValue::from_str(&address).map_err(|_| HttpGetError::Url { url: url.clone() })?,
        };
        let request = request
            .header(HOST, host)
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|_| HttpGetError::Url { url: url.clone() })?;

        let exchanged = if location.tls {
            let config = tls_config().map_err(|source| HttpGetError::Tls { url: url.clone(), source })?;
            let name =
                ServerName::try_from(location.host.clone()).map_err(|_| HttpGetError::Url { url: url.clone() })?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|source| HttpGetError::Tls { url: url.clone(), source })?;
            exchange_on(stream, request).await
        } else {
            exchange_on(tcp, request).await
        };
        exchanged.map_err(|source| HttpGetError::Exchange { url, source })
    }
}

impl HttpGetResponse {
    /// What a probe makes of it: 200 to 399 is a success (a redirect left unfollowed, too, with a warning).
    pub(crate) fn probe_result(&self) -> ProbeResult {
        let code = self.status.as_u16();
        if (200..400).contains(&code) {
            if code >= 300 {
                tracing::warn!(url = %self.url, code, "probe terminated redirects: taken as a success");
            }
            ProbeResult::Success
        } else {
            tracing::debug!(url = %self.url, code, body = %String::from_utf8_lossy(&self.body), "probe failed");
            ProbeResult::Failure(format!("HTTP probe failed with statuscode: {code}"))
        }
    }
}

/// One request and its response on a fresh connection, driving the connection alongside.
async fn exchange_on<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let exchange = async move {
        let response = sender.send_request(request).await?;
        let (parts, mut body) = response.into_parts();
        let mut collected = Vec::new();
        while collected.len() < MAX_OUTPUT_BYTES {
            match body.frame().await {
                None => break,
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        collected.extend_from_slice(&data);
                    }
                }
            }
        }
        collected.truncate(MAX_OUTPUT_BYTES);
        Ok::<_, hyper::Error>((parts.status, parts.headers, collected))
    };
    tokio::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        ended = connection => {
            ended?;
            // The connection closed after the response came: what was read still stands.
            exchange.await
        }
    }
}

/// The client TLS configuration: ring, and any server certificate accepted (probes do not verify, as the
/// kubelet's do not).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, std::io::Error> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    });
    config.clone().map_err(std::io::Error::other)
}

/// Accepts any certificate, but still checks the handshake's signatures against it.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &str) -> Location {
        Location { tls: false, host: "10.0.0.5".into(), port: 8080, path: path.into() }
    }

    #[test]
    fn redirect_locations_resolve_against_the_current_url() {
        let here = at("/a/b?x=1");
        assert_eq!(here.resolve("/c").map(|l| l.to_string()).as_deref(), Some("http://10.0.0.5:8080/c"));
        assert_eq!(here.resolve("d").map(|l| l.to_string()).as_deref(), Some("http://10.0.0.5:8080/a/d"));
        assert_eq!(
            here.resolve("https://example.test/e").map(|l| l.to_string()).as_deref(),
            Some("https://example.test:443/e")
        );
        assert_eq!(here.resolve("//other:9/f").map(|l| l.to_string()).as_deref(), Some("http://other:9/f"));
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_urls() {
        let location = Location { tls: true, host: "fd00::5".into(), port: 443, path: "/".into() };
        assert_eq!(location.to_string(), "https://[fd00::5]:443/");
        assert_eq!(Location::parse_absolute("https://[fd00::5]:443/"), Some(location));
    }
}
