//! The node API's TLS: its serving certificate (kept in the PKI directory, self-signed when missing, as the
//! kubelet does without a configured certificate) and client-certificate verification against the cluster CA.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::NodeApiError;

/// File names in the PKI directory, as the kubelet names its self-signed pair.
const CERT_FILE: &str = "kubelet.crt";
const KEY_FILE: &str = "kubelet.key";

/// The serving certificate and key (PEM) from `pki_dir`, created self-signed for `names` when missing.
pub(crate) fn load_or_create_serving(pki_dir: &Path, names: &[String]) -> Result<(String, String), NodeApiError> {
    let cert_path = pki_dir.join(CERT_FILE);
    let key_path = pki_dir.join(KEY_FILE);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NodeApiError::Io { path, source }
    };
    if cert_path.exists() && key_path.exists() {
        let cert = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        return Ok((cert, key));
    }
    std::fs::create_dir_all(pki_dir).map_err(io(pki_dir))?;
    let generate = |source| NodeApiError::Certificate { source };
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(generate)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, names.first().map(String::as_str).unwrap_or("gantry-node"));
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = jiff::Timestamp::now().as_second();
    let at = |seconds: i64| {
        rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    };
    params.not_before = at(now - 3600);
    params.not_after = at(now + 365 * 86_400);
    let cert = params.self_signed(&key).map_err(generate)?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    write_file(&key_path, &key_pem, 0o600)?;
    write_file(&cert_path, &cert_pem, 0o644)?;
    Ok((cert_pem, key_pem))
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), NodeApiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NodeApiError::Io { path, source }
    };
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io(&tmp))?;
    file.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// TLS for the node API: our certificate; client certificates verified against `client_ca_pem`. A client
/// without a certificate completes the handshake and is answered 401, as the kubelet answers anonymous
/// requests; a certificate from another CA fails the handshake. HTTP/1.1 only: the streaming upgrades need it.
pub(crate) fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, NodeApiError> {
    let pem =
        |what: &'static str| move |e: rustls::pki_types::pem::Error| NodeApiError::Pem { what, reason: e.to_string() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(pem("serving certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem("serving key"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        let ca = ca.map_err(pem("client CA"))?;
        roots.add(ca).map_err(|e| NodeApiError::Pem { what: "client CA", reason: e.to_string() })?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .allow_unauthenticated()
        .build()
        .map_err(|e| NodeApiError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NodeApiError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| NodeApiError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The common name of a (verified) client certificate.
pub(crate) fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_serving_certificate_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["node-a".to_string(), "10.0.0.7".to_string()];
        let (cert, key) = load_or_create_serving(dir.path(), &names).expect("create");
        let (again, again_key) = load_or_create_serving(dir.path(), &names).expect("reuse");
        assert_eq!((cert.as_str(), key.as_str()), (again.as_str(), again_key.as_str()));
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem");
        assert_eq!(common_name(&der).as_deref(), Some("node-a"));
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let san = parsed.subject_alternative_name().expect("san").expect("san present");
        assert_eq!(san.value.general_names.len(), 2);
        // The certificate doubles as its own CA here: the configuration accepts it.
        server_config(&cert, &key, &cert).expect("config");
    }
}
