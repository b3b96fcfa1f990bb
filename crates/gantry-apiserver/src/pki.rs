//! The cluster's certificate authority and the certificates it issues.
//!
//! On first start a CA is generated under `DATA_DIR/pki/`; it signs the serving certificate and client
//! certificates (the admin kubeconfig's, and the API server's own for node agents). Files are reused on later
//! starts; the serving certificate is re-issued when the names it must carry change or it nears expiry.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Failures while loading or creating certificates. Each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key on disk could not be parsed.
    #[error("{path}: not a valid certificate or key: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate could not be generated (e.g. a subject alternative name that is not a DNS name or IP).
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated.
        what: String,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// The cluster CA, loaded from or created in a directory.
pub struct ClusterCa {
    dir: PathBuf,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// The user the API server presents to node agents (CN of its client certificate), as kube-apiserver's
/// `--kubelet-client-certificate` conventionally names it; a node agent authorizes this user for its API.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// The group in the API server's client certificate for node agents.
pub const KUBELET_CLIENT_GROUP: &str = "system:masters";

const CA_YEARS: i16 = 10;
const LEAF_DAYS: i64 = 365;
/// A serving certificate closer than this to expiry is re-issued at start.
const RENEW_BEFORE_DAYS: i64 = 30;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_path_buf(), source }
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Writes a file atomically (temp file + rename) with the given mode, so a crash never leaves half a key.
pub fn write_private(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut file =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(contents.as_bytes()).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    // Start an hour back to tolerate peers whose clocks are a little behind ours.
    params.not_before = epoch + std::time::Duration::from_secs(now.saturating_sub(3600));
    params.not_after = epoch + std::time::Duration::from_secs(now + u64::try_from(days).unwrap_or(0) * 86_400);
}

impl ClusterCa {
    /// Loads the CA from `dir` (`ca.crt`, `ca.key`), creating it (and the directory) if absent.
    pub fn load_or_create(dir: &Path) -> Result<ClusterCa, PkiError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        match (read(&cert_path)?, read(&key_path)?) {
            (Some(cert_pem), Some(key_pem)) => {
                let key = KeyPair::from_pem(&key_pem).map_err(|source| PkiError::Parse { path: key_path, source })?;
                let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
                    .map_err(|source| PkiError::Parse { path: cert_path, source })?;
                Ok(ClusterCa { dir: dir.to_path_buf(), cert_pem, issuer })
            }
            _ => {
                let generate = |source| PkiError::Generate { what: "the cluster CA".into(), source };
                let key = KeyPair::generate().map_err(generate)?;
                let mut params = CertificateParams::default();
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, "gantry-ca");
                params.distinguished_name = dn;
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages =
                    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
                validity(&mut params, i64::from(CA_YEARS) * 365);
                let cert = params.self_signed(&key).map_err(generate)?;
                write_private(&key_path, &key.serialize_pem(), 0o600)?;
                write_private(&cert_path, &cert.pem(), 0o644)?;
                let issuer = Issuer::new(params, key);
                Ok(ClusterCa { dir: dir.to_path_buf(), cert_pem: cert.pem(), issuer })
            }
        }
    }

    /// The CA certificate, PEM (what clients trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The directory holding the CA and issued files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Issues a client certificate: CN = user, O = group (how kube-apiserver reads X.509 identities). One group
    /// at most: the certificate library keeps one value per attribute type.
    pub fn issue_client(&self, user: &str, group: Option<&str>) -> Result<CertifiedKey, PkiError> {
        let generate = |source| PkiError::Generate { what: format!("a client certificate for {user}"), source };
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(group) = group {
            dn.push(DnType::OrganizationName, group);
        }
        dn.push(DnType::CommonName, user);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_DAYS);
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Signs a node's client certificate for the key in `csr_pem` (PKCS#10, PEM): CN `system:node:<node>`, O
    /// `system:nodes`, whatever subject the request asked for; the agent keeps its private key to itself.
    pub fn sign_node_client(&self, csr_pem: &str, node: &str) -> Result<String, PkiError> {
        let what = || format!("a client certificate for node {node}");
        let mut request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|source| PkiError::Generate { what: what(), source })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, gantry_api::join::NODES_GROUP);
        dn.push(DnType::CommonName, format!("{}{node}", gantry_api::join::NODE_USER_PREFIX));
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_DAYS);
        request.params = params;
        let cert = request.signed_by(&self.issuer).map_err(|source| PkiError::Generate { what: what(), source })?;
        Ok(cert.pem())
    }

    /// Returns the serving certificate for `names` (DNS names and IP addresses), reusing `serving.crt` when it
    /// carries exactly these names, was issued by this CA and is not close to expiry; otherwise issues and
    /// stores a new one.
    pub fn serving(&self, names: &BTreeSet<String>) -> Result<CertifiedKey, PkiError> {
        let cert_path = self.dir.join("serving.crt");
        let key_path = self.dir.join("serving.key");
        if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?)
            && self.serving_is_current(&cert_pem, names)
        {
            return Ok(CertifiedKey { cert_pem, key_pem });
        }
        let generate = |source| PkiError::Generate { what: "the serving certificate".into(), source };
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::new(names.iter().cloned().collect::<Vec<_>>()).map_err(generate)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "gantry-apiserver");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_DAYS);
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        let issued = CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        write_private(&key_path, &issued.key_pem, 0o600)?;
        write_private(&cert_path, &issued.cert_pem, 0o644)?;
        Ok(issued)
    }

    /// The API server's client certificate for node agents' HTTPS APIs (logs, exec, attach, port-forward):
    /// CN [`KUBELET_CLIENT_USER`], O [`KUBELET_CLIENT_GROUP`]. Kept in `apiserver-kubelet-client.{crt,key}` and
    /// reused while it was issued by this CA for that user and is not close to expiry.
    pub fn kubelet_client(&self) -> Result<CertifiedKey, PkiError> {
        let cert_path = self.dir.join("apiserver-kubelet-client.crt");
        let key_path = self.dir.join("apiserver-kubelet-client.key");
        if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?)
            && self.client_is_current(&cert_pem, KUBELET_CLIENT_USER)
        {
            return Ok(CertifiedKey { cert_pem, key_pem });
        }
        let issued = self.issue_client(KUBELET_CLIENT_USER, Some(KUBELET_CLIENT_GROUP))?;
        write_private(&key_path, &issued.key_pem, 0o600)?;
        write_private(&cert_path, &issued.cert_pem, 0o644)?;
        Ok(issued)
    }

    fn client_is_current(&self, cert_pem: &str, user: &str) -> bool {
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else { return false };
        self.issued_and_fresh(&pem) && identity_from_cert(&pem.contents).is_some_and(|(name, _)| name == user)
    }

    /// Whether a certificate was signed by this CA and is not close to expiry.
    fn issued_and_fresh(&self, pem: &x509_parser::pem::Pem) -> bool {
        let Ok(cert) = pem.parse_x509() else { return false };
        let Ok((_, ca_pem)) = x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes()) else { return false };
        let Ok(ca) = ca_pem.parse_x509() else { return false };
        if cert.verify_signature(Some(ca.public_key())).is_err() {
            return false;
        }
        let renew_at = jiff::Timestamp::now().as_second() + RENEW_BEFORE_DAYS * 86_400;
        cert.validity().not_after.timestamp() >= renew_at
    }

    fn serving_is_current(&self, cert_pem: &str, names: &BTreeSet<String>) -> bool {
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else { return false };
        if !self.issued_and_fresh(&pem) {
            return false;
        }
        let Ok(cert) = pem.parse_x509() else { return false };
        let mut found = BTreeSet::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        found.insert((*d).to_string());
                    }
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).map(std::net::IpAddr::from).ok(),
                            16 => <[u8; 16]>::try_from(*bytes).map(std::net::IpAddr::from).ok(),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            found.insert(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        &found == names
    }
}

/// The identity in a client certificate: CN is the user, each O a group.
pub fn identity_from_cert(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some((user, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClusterCa::load_or_create(dir.path()).unwrap();
        let second = ClusterCa::load_or_create(dir.path()).unwrap();
        assert_eq!(first.cert_pem(), second.cert_pem());
    }

    #[test]
    fn the_serving_certificate_is_reissued_only_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let names: BTreeSet<String> = ["localhost", "127.0.0.1"].map(String::from).into();
        let a = ca.serving(&names).unwrap();
        let b = ca.serving(&names).unwrap();
        assert_eq!(a.cert_pem, b.cert_pem);
        let more: BTreeSet<String> = ["localhost", "127.0.0.1", "gantry.example"].map(String::from).into();
        let c = ca.serving(&more).unwrap();
        assert_ne!(a.cert_pem, c.cert_pem);
    }

    #[test]
    fn client_certificates_carry_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let issued = ca.issue_client("alice", Some("ops")).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.cert_pem.as_bytes()).unwrap();
        let (user, groups) = identity_from_cert(&pem.contents).unwrap();
        assert_eq!(user, "alice");
        assert_eq!(groups, vec!["ops"]);
    }

    #[test]
    fn the_kubelet_client_certificate_is_issued_once_for_its_user_and_group() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let first = ca.kubelet_client().unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(first.cert_pem.as_bytes()).unwrap();
        let (user, groups) = identity_from_cert(&pem.contents).unwrap();
        assert_eq!(user, KUBELET_CLIENT_USER);
        assert_eq!(groups, vec![KUBELET_CLIENT_GROUP]);
        assert!(dir.path().join("apiserver-kubelet-client.key").exists());
        let again = ClusterCa::load_or_create(dir.path()).unwrap().kubelet_client().unwrap();
        assert_eq!(first.cert_pem, again.cert_pem);
    }

    #[test]
    fn a_kubelet_client_certificate_from_another_ca_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let stale = ClusterCa::load_or_create(other.path()).unwrap().kubelet_client().unwrap();
        std::fs::write(dir.path().join("apiserver-kubelet-client.crt"), &stale.cert_pem).unwrap();
        std::fs::write(dir.path().join("apiserver-kubelet-client.key"), &stale.key_pem).unwrap();
        let issued = ClusterCa::load_or_create(dir.path()).unwrap().kubelet_client().unwrap();
        assert_ne!(issued.cert_pem, stale.cert_pem);
    }
}
