//! Joining a cluster with a join token: the agent fetches the cluster CA from the server and trusts it only if
//! its hash is the one in the token, makes its own key, and has the server sign a client certificate for
//! `system:node:<name>` with the token's bootstrap part. The certificate, key and CA stay in
//! `DATA/pki/node/`; later starts reuse them, and renew the certificate (with the certificate itself) once two
//! thirds of its life have passed. The token is needed only to join.

use std::path::{Path, PathBuf};

use gantry_api::join::{
    CA_PATH, JoinToken, NODE_CERTIFICATE_PATH, NODE_USER_PREFIX, NODES_GROUP, NodeCertificateRequest,
    NodeCertificateResponse,
};
use kube::Client;
use sha2::Digest as _;

/// Why the agent could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The server could not be reached, or refused.
    #[error("{what} at {server}: {message}")]
    Server {
        /// What the agent asked for.
        what: &'static str,
        /// The server's URL.
        server: String,
        /// Why: the server's own message when it answered.
        message: String,
    },
    /// The server's CA is not the one the token names.
    #[error(
        "the CA of {server} (sha256:{found}) is not the one the join token names (sha256:{expected}): a wrong server \
         or token, or someone in between"
    )]
    CaMismatch {
        /// The server's URL.
        server: String,
        /// The hash in the token.
        expected: String,
        /// The hash of what the server sent.
        found: String,
    },
    /// A key or request could not be made.
    #[error("making the node's key and certificate request: {0}")]
    Key(#[from] rcgen::Error),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The client configuration could not be built.
    #[error("building the client for {server}: {message}")]
    Config {
        /// The server's URL.
        server: String,
        /// Why.
        message: String,
    },
}

/// Where the node's credentials live under the data directory.
pub fn credentials_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki/node")
}

fn server_error<'a>(what: &'static str, server: &'a str) -> impl FnOnce(kube::Error) -> JoinError + 'a {
    move |err| {
        let message = match err {
            kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
            other => other.to_string(),
        };
        JoinError::Server { what, server: server.to_string(), message }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JoinError + '_ {
    move |source| JoinError::Io { path: path.to_path_buf(), source }
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), JoinError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .map_err(io_error(&temporary))?;
    file.write_all(contents.as_bytes()).map_err(io_error(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io_error(path))
}

/// SHA-256 of the first certificate's DER in `pem`, lowercase hex.
pub fn ca_hash(pem: &str) -> Option<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    Some(hex::encode(sha2::Sha256::digest(&pem.contents)))
}

/// How far through its life a certificate is (0 at issue, 1 at expiry), and whether it is for `user`.
fn certificate_state(cert_pem: &str, user: &str) -> Option<f64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    if cn != user {
        return None;
    }
    let from = cert.validity().not_before.timestamp();
    let to = cert.validity().not_after.timestamp();
    let now = jiff::Timestamp::now().as_second();
    (to > from).then(|| (now - from) as f64 / (to - from) as f64)
}

async fn client_config(server: &str, ca_pem: Option<&str>, user: serde_json::Value) -> Result<kube::Config, JoinError> {
    use base64::Engine as _;
    let mut cluster = serde_json::json!({"server": server});
    match ca_pem {
        Some(ca) => {
            cluster["certificate-authority-data"] = base64::engine::general_purpose::STANDARD.encode(ca).into();
        }
        // Only to fetch the CA, whose hash is then checked against the token.
        None => cluster["insecure-skip-tls-verify"] = true.into(),
    }
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "gantry", "cluster": cluster}],
        "users": [{"name": "node", "user": user}],
        "contexts": [{"name": "node", "context": {"cluster": "gantry", "user": "node"}}],
        "current-context": "node",
    });
    let config_error = |message: String| JoinError::Config { server: server.to_string(), message };
    let file: kube::config::Kubeconfig = serde_json::from_value(kubeconfig).map_err(|e| config_error(e.to_string()))?;
    let options = kube::config::KubeConfigOptions::default();
    kube::Config::from_custom_kubeconfig(file, &options).await.map_err(|e| config_error(e.to_string()))
}

fn client(server: &str, mut config: kube::Config) -> Result<Client, JoinError> {
    // The user agent is the default field manager of the agent's writes.
    if let Ok(agent) = http::HeaderValue::from_str(&format!("gantry-agent/{}", env!("CARGO_PKG_VERSION"))) {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    Client::try_from(config).map_err(|e| JoinError::Config { server: server.to_string(), message: e.to_string() })
}

fn certificate_user(cert_pem: &str, key_pem: &str) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    serde_json::json!({"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)})
}

async fn request_certificate(
    server: &str,
    client: &Client,
    node_name: &str,
) -> Result<(NodeCertificateResponse, String), JoinError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, NODES_GROUP);
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("{NODE_USER_PREFIX}{node_name}"));
    let csr = params.serialize_request(&key)?.pem()?;
    let body = NodeCertificateRequest { node_name: node_name.to_string(), csr };
    let body =
        serde_json::to_vec(&body).map_err(|e| JoinError::Config { server: server.into(), message: e.to_string() })?;
    let request = http::Request::post(NODE_CERTIFICATE_PATH)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| JoinError::Config { server: server.into(), message: e.to_string() })?;
    let response: NodeCertificateResponse =
        client.request(request).await.map_err(server_error("requesting the node's certificate", server))?;
    Ok((response, key.serialize_pem()))
}

/// The agent's client and the cluster CA (PEM) for `server`: from the credentials a previous join left in the
/// data directory when they are for this CA and node, else by joining with `token`.
pub async fn join(
    server: &str,
    token: &JoinToken,
    node_name: &str,
    data_dir: &Path,
) -> Result<(Client, String), JoinError> {
    let dir = credentials_dir(data_dir);
    let (ca_path, cert_path, key_path) = (dir.join("ca.crt"), dir.join("client.crt"), dir.join("client.key"));
    let user = format!("{NODE_USER_PREFIX}{node_name}");
    let saved = (
        std::fs::read_to_string(&ca_path).ok(),
        std::fs::read_to_string(&cert_path).ok(),
        std::fs::read_to_string(&key_path).ok(),
    );
    if let (Some(ca), Some(cert), Some(key)) = saved
        && ca_hash(&ca).as_deref() == Some(token.ca_hash.as_str())
        && let Some(age) = certificate_state(&cert, &user)
        && age < 1.0
    {
        let current = client(server, client_config(server, Some(&ca), certificate_user(&cert, &key)).await?)?;
        if age < 2.0 / 3.0 {
            return Ok((current, ca));
        }
        match request_certificate(server, &current, node_name).await {
            Ok((issued, key)) => {
                write(&key_path, &key, 0o600)?;
                write(&cert_path, &issued.certificate, 0o644)?;
                tracing::info!(node = node_name, "renewed the node's client certificate");
                let renewed = client(
                    server,
                    client_config(server, Some(&ca), certificate_user(&issued.certificate, &key)).await?,
                )?;
                return Ok((renewed, ca));
            }
            Err(err) => {
                tracing::warn!(error = %err, "renewing the node's client certificate failed; the current one is used");
                return Ok((current, ca));
            }
        }
    }

    let insecure = client(server, client_config(server, None, serde_json::json!({})).await?)?;
    let request = http::Request::get(CA_PATH)
        .body(Vec::new())
        .map_err(|e| JoinError::Config { server: server.into(), message: e.to_string() })?;
    let ca = insecure.request_text(request).await.map_err(server_error("fetching the cluster CA", server))?;
    let found = ca_hash(&ca).unwrap_or_default();
    if found != token.ca_hash {
        return Err(JoinError::CaMismatch { server: server.into(), expected: token.ca_hash.clone(), found });
    }
    let bootstrap =
        client(server, client_config(server, Some(&ca), serde_json::json!({"token": token.bearer()})).await?)?;
    let (issued, key) = request_certificate(server, &bootstrap, node_name).await?;
    write(&ca_path, &ca, 0o644)?;
    write(&key_path, &key, 0o600)?;
    write(&cert_path, &issued.certificate, 0o644)?;
    tracing::info!(node = node_name, server, "joined: the server issued this node's client certificate");
    let joined = client(server, client_config(server, Some(&ca), certificate_user(&issued.certificate, &key)).await?)?;
    Ok((joined, ca))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_fresh_certificate_is_at_the_start_of_its_life_and_for_its_user_only() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "system:node:a");
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(3600)).into();
        params.not_after = (now + std::time::Duration::from_secs(365 * 86400)).into();
        let cert = params.self_signed(&key).unwrap().pem();
        let age = certificate_state(&cert, "system:node:a").unwrap();
        assert!((0.0..0.01).contains(&age), "{age}");
        assert_eq!(certificate_state(&cert, "system:node:b"), None);
        assert!(ca_hash(&cert).is_some_and(|h| h.len() == 64));
        assert_eq!(ca_hash("not pem"), None);
    }
}
