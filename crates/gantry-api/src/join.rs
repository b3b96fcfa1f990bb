//! The join token and the join endpoint's messages: what a new node agent and the API server agree on.
//!
//! A join token reads `gantry1::sha256:<CA hash>::<id>.<secret>`. The hash (SHA-256 of the cluster CA
//! certificate's DER, in hex) lets the agent trust the CA it downloads from a server it cannot yet verify; the
//! `<id>.<secret>` part is a bootstrap token, kept as the Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token` (the shape kubeadm's tokens have), so that rotating it is replacing that
//! Secret.

use serde::{Deserialize, Serialize};

/// The path (anonymous, GET) that serves the cluster CA certificate, PEM.
pub const CA_PATH: &str = "/gantry/v1/join/ca.crt";
/// The path (POST, a [`NodeCertificateRequest`]) that issues a node's client certificate.
pub const NODE_CERTIFICATE_PATH: &str = "/gantry/v1/join/node-certificate";
/// The namespace of bootstrap-token Secrets.
pub const TOKEN_NAMESPACE: &str = "kube-system";
/// The type of bootstrap-token Secrets.
pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The user prefix of node client certificates (`system:node:<name>`).
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The group of node client certificates.
pub const NODES_GROUP: &str = "system:nodes";

const PREFIX: &str = "gantry1";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate's DER, lowercase hex.
    pub ca_hash: String,
    /// The bootstrap token's id: 6 of `[a-z0-9]`.
    pub id: String,
    /// The bootstrap token's secret: 16 of `[a-z0-9]`.
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken").field("ca_hash", &self.ca_hash).field("id", &self.id).finish_non_exhaustive()
    }
}

/// Why a text is not a join token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "not a Gantry join token (expected gantry1::sha256:<64 hex digits>::<6 of a-z0-9>.<16 of a-z0-9>, as in the \
     server's DATA/node-token)"
)]
pub struct MalformedToken;

fn is_token_part(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl JoinToken {
    /// Parses `gantry1::sha256:<hash>::<id>.<secret>` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<JoinToken, MalformedToken> {
        let mut parts = text.trim().split("::");
        let (Some(PREFIX), Some(hash), Some(bootstrap), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(MalformedToken);
        };
        let hash = hash.strip_prefix("sha256:").ok_or(MalformedToken)?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MalformedToken);
        }
        let (id, secret) = bootstrap.split_once('.').ok_or(MalformedToken)?;
        if !is_token_part(id, 6) || !is_token_part(secret, 16) {
            return Err(MalformedToken);
        }
        Ok(JoinToken { ca_hash: hash.to_ascii_lowercase(), id: id.to_string(), secret: secret.to_string() })
    }

    /// The bearer token the join endpoint takes: `<id>.<secret>`.
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The Secret that holds the bootstrap part.
    pub fn secret_name(&self) -> String {
        secret_name(&self.id)
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}::sha256:{}::{}.{}", self.ca_hash, self.id, self.secret)
    }
}

/// The name of the Secret of the bootstrap token `id`.
pub fn secret_name(id: &str) -> String {
    format!("bootstrap-token-{id}")
}

/// Splits a bearer `<id>.<secret>`; `None` unless both parts have the bootstrap token's shape.
pub fn parse_bearer(bearer: &str) -> Option<(&str, &str)> {
    let (id, secret) = bearer.split_once('.')?;
    (is_token_part(id, 6) && is_token_part(secret, 16)).then_some((id, secret))
}

/// What an agent sends to [`NODE_CERTIFICATE_PATH`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeCertificateRequest {
    /// The Node's name; the certificate is issued for `system:node:<name>` in `system:nodes`.
    pub node_name: String,
    /// A PKCS#10 certificate signing request, PEM, for the agent's own key.
    pub csr: String,
}

/// What [`NODE_CERTIFICATE_PATH`] answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeCertificateResponse {
    /// The client certificate, PEM.
    pub certificate: String,
    /// The cluster CA, PEM.
    pub ca: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_is_read_back_from_its_text() {
        let text = format!("gantry1::sha256:{HASH}::abcdef.0123456789abcdef");
        let token = JoinToken::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(token.id, "abcdef");
        assert_eq!(token.bearer(), "abcdef.0123456789abcdef");
        assert_eq!(token.secret_name(), "bootstrap-token-abcdef");
        assert_eq!(token.to_string(), text);
        assert!(!format!("{token:?}").contains("0123456789abcdef."), "the secret stays out of logs");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "abcdef.0123456789abcdef",
            &format!("gantry1::sha256:{HASH}::abcdef"),
            &format!("gantry1::sha256:{}::abcdef.0123456789abcdef", &HASH[1..]),
            &format!("gantry1::md5:{HASH}::abcdef.0123456789abcdef"),
            &format!("gantry2::sha256:{HASH}::abcdef.0123456789abcdef"),
            &format!("gantry1::sha256:{HASH}::ABCDEF.0123456789abcdef"),
            &format!("gantry1::sha256:{HASH}::abcdef.0123456789abcdef::x"),
        ] {
            assert_eq!(JoinToken::parse(bad), Err(MalformedToken), "{bad}");
        }
    }

    #[test]
    fn bearers_must_have_the_bootstrap_shape() {
        assert_eq!(parse_bearer("abcdef.0123456789abcdef"), Some(("abcdef", "0123456789abcdef")));
        assert_eq!(parse_bearer("abcdef.short"), None);
        assert_eq!(parse_bearer("some-static-token"), None);
    }
}
