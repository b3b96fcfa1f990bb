//! Joining nodes. The server keeps one join token (`DATA/node-token`, and its bootstrap part as the Secret
//! `kube-system/bootstrap-token-<id>`) and serves two paths outside the Kubernetes API:
//! - `GET /gantry/v1/join/ca.crt`, anonymous: the cluster CA, which the agent checks against the hash in its
//!   token before trusting anything else the server says;
//! - `POST /gantry/v1/join/node-certificate`: signs the agent's CSR into a client certificate for
//!   `system:node:<name>` (group `system:nodes`). The caller proves itself with the token's bootstrap part as
//!   a bearer token, or, to renew, with the client certificate of that same node.
//!
//! Rotating the token (`gantry token rotate`) replaces the Secret: the old token stops working at once, and
//! nodes that joined keep their certificates.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use gantry_api::join::{
    JoinToken, NodeCertificateRequest, NodeCertificateResponse, TOKEN_NAMESPACE, TOKEN_SECRET_TYPE,
};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::api::{Api, ApiRequest, Reply};
use crate::auth::User;
use crate::pki::ClusterCa;
use crate::status::{ApiError, ApiResult};

/// The file in the data directory that holds the join token.
pub const TOKEN_FILE: &str = "node-token";

/// Why the join token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The CA certificate is not PEM.
    #[error("the cluster CA certificate cannot be read")]
    CaPem,
    /// The token file could not be written.
    #[error("writing the join token to {path}: {source}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: crate::pki::PkiError,
    },
    /// The token's Secret could not be read or written.
    #[error("storing the join token's Secret: {0}")]
    Api(ApiError),
}

/// SHA-256 of the first certificate's DER in `ca_pem`, lowercase hex.
pub fn ca_hash(ca_pem: &str) -> Option<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).ok()?;
    Some(hex::encode(sha2::Sha256::digest(&pem.contents)))
}

/// A new random token for the CA.
pub fn generate(ca_pem: &str) -> Result<JoinToken, JoinError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let random = |len: usize| -> String {
        (0..len).map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())])).collect()
    };
    Ok(JoinToken { ca_hash: ca_hash(ca_pem).ok_or(JoinError::CaPem)?, id: random(6), secret: random(16) })
}

/// The Secret that holds the token's bootstrap part, as kubeadm shapes bootstrap tokens.
pub fn token_secret(token: &JoinToken) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": token.secret_name(), "namespace": TOKEN_NAMESPACE,
                     "labels": {"gantry.io/join-token": "true"}},
        "type": TOKEN_SECRET_TYPE,
        "data": {
            "token-id": b64(&token.id),
            "token-secret": b64(&token.secret),
            "usage-bootstrap-authentication": b64("true"),
            "description": b64("Gantry node join token (gantry agent --token)"),
        },
    })
}

fn internal_user() -> User {
    User::new("system:apiserver", vec!["system:masters".to_string()])
}

async fn internal(api: &Arc<Api>, method: http::Method, path: String, body: Option<&Value>) -> ApiResult<Value> {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let request =
        ApiRequest { method, path, query: crate::request::Query::parse(None), headers, body, user: internal_user() };
    match api.handle(request).await {
        Reply::Full { code, body, .. } => {
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if code < 300 {
                return Ok(value);
            }
            let message = value["message"].as_str().unwrap_or("the request failed").to_string();
            let mut err = ApiError::internal(message);
            err.code = code;
            Err(err)
        }
        _ => Err(ApiError::internal("unexpected streamed answer")),
    }
}

fn secret_path(id: &str) -> String {
    format!("/api/v1/namespaces/{TOKEN_NAMESPACE}/secrets/{}", gantry_api::join::secret_name(id))
}

/// Makes sure the server has a join token: the one in `DATA/node-token` when it matches this CA (its Secret
/// recreated if the store lost it), else a new one. Returns it.
pub async fn ensure_token(api: &Arc<Api>, data_dir: &Path, ca_pem: &str) -> Result<JoinToken, JoinError> {
    let path = data_dir.join(TOKEN_FILE);
    let hash = ca_hash(ca_pem).ok_or(JoinError::CaPem)?;
    let existing = std::fs::read_to_string(&path).ok().and_then(|text| JoinToken::parse(&text).ok());
    let token = match existing {
        Some(token) if token.ca_hash == hash => token,
        _ => generate(ca_pem)?,
    };
    match internal(api, http::Method::GET, secret_path(&token.id), None).await {
        Ok(secret) if secret_matches(&secret, &token.secret) => {}
        Ok(_) => return Err(JoinError::Api(ApiError::internal("the join token's Secret holds another secret"))),
        Err(e) if e.code == 404 => {
            let create = format!("/api/v1/namespaces/{TOKEN_NAMESPACE}/secrets");
            match internal(api, http::Method::POST, create, Some(&token_secret(&token))).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(JoinError::Api(e)),
            }
        }
        Err(e) => return Err(JoinError::Api(e)),
    }
    crate::pki::write_private(&path, &format!("{token}\n"), 0o600)
        .map_err(|source| JoinError::Write { path: path.clone(), source })?;
    Ok(token)
}

fn secret_matches(secret: &Value, presented: &str) -> bool {
    let field = |name: &str| {
        secret["data"][name]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
    };
    let Some(stored) = field("token-secret") else { return false };
    if secret["type"].as_str() != Some(TOKEN_SECRET_TYPE)
        || field("usage-bootstrap-authentication").as_deref() != Some("true")
    {
        return false;
    }
    if let Some(expiration) = field("expiration")
        && expiration.parse::<jiff::Timestamp>().is_ok_and(|at| at <= jiff::Timestamp::now())
    {
        return false;
    }
    // Compared in constant time: the secret is a password.
    stored.len() == presented.len() && stored.bytes().zip(presented.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Whether `bearer` is a valid bootstrap token.
async fn bootstrap_token_is_valid(api: &Arc<Api>, bearer: &str) -> bool {
    let Some((id, secret)) = gantry_api::join::parse_bearer(bearer) else { return false };
    match internal(api, http::Method::GET, secret_path(id), None).await {
        Ok(stored) => secret_matches(&stored, secret),
        Err(_) => false,
    }
}

fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Serves `POST /gantry/v1/join/node-certificate`.
pub(crate) async fn node_certificate(
    api: &Arc<Api>,
    ca: &ClusterCa,
    bearer: Option<&str>,
    cert_user: Option<&User>,
    body: &[u8],
) -> ApiResult<Value> {
    let request: NodeCertificateRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body must be {{\"nodeName\": ..., \"csr\": PEM}}: {e}")))?;
    if !is_node_name(&request.node_name) {
        return Err(ApiError::bad_request(format!(
            "{:?} is not a valid node name (lowercase letters, digits, '-' and '.')",
            request.node_name
        )));
    }
    let node_user = format!("{}{}", gantry_api::join::NODE_USER_PREFIX, request.node_name);
    let renewing = cert_user.is_some_and(|user| user.name == node_user);
    let joining = match bearer {
        Some(bearer) => bootstrap_token_is_valid(api, bearer).await,
        None => false,
    };
    if !renewing && !joining {
        return Err(match (bearer, cert_user) {
            (None, None) => ApiError::unauthorized(),
            _ => ApiError::forbidden(format!(
                "a certificate for node {:?} needs the cluster's join token or that node's own certificate",
                request.node_name
            )),
        });
    }
    let certificate = ca
        .sign_node_client(&request.csr, &request.node_name)
        .map_err(|e| ApiError::bad_request(format!("the certificate signing request was refused: {e}")))?;
    tracing::info!(node = %request.node_name, renewing, "issued a node client certificate");
    let response = NodeCertificateResponse { certificate, ca: ca.cert_pem().to_string() };
    serde_json::to_value(response).map_err(|e| ApiError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_tokens_carry_the_ca_hash_and_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let token = generate(ca.cert_pem()).unwrap();
        assert_eq!(Some(token.ca_hash.clone()), ca_hash(ca.cert_pem()));
        assert_eq!(JoinToken::parse(&token.to_string()).unwrap(), token);
        assert_ne!(generate(ca.cert_pem()).unwrap().secret, token.secret, "random");
    }

    #[test]
    fn a_secret_matches_only_its_own_unexpired_token() {
        let token = JoinToken { ca_hash: "0".repeat(64), id: "abcdef".into(), secret: "0123456789abcdef".into() };
        let mut secret = token_secret(&token);
        assert!(secret_matches(&secret, "0123456789abcdef"));
        assert!(!secret_matches(&secret, "0123456789abcdee"));
        assert!(!secret_matches(&secret, "0123456789abcde"));
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        secret["data"]["expiration"] = json!(b64("2020-01-01T00:00:00Z"));
        assert!(!secret_matches(&secret, "0123456789abcdef"), "expired");
        secret["data"]["expiration"] = json!(b64("2999-01-01T00:00:00Z"));
        assert!(secret_matches(&secret, "0123456789abcdef"));
        secret["data"]["usage-bootstrap-authentication"] = json!(b64("false"));
        assert!(!secret_matches(&secret, "0123456789abcdef"), "not for authentication");
    }

    #[test]
    fn node_names_are_dns_subdomains() {
        assert!(is_node_name("node-1.example"));
        for bad in ["", "Node", "-a", "a..b", "a_b"] {
            assert!(!is_node_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_csr_is_signed_for_the_node_whatever_subject_it_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "admin");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let cert = ca.sign_node_client(&csr, "worker-1").unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let (user, groups) = crate::pki::identity_from_cert(&pem.contents).unwrap();
        assert_eq!(user, "system:node:worker-1");
        assert_eq!(groups, vec!["system:nodes".to_string()]);
        assert!(ca.sign_node_client("not a csr", "worker-1").is_err());
    }
}
