//! Pulling images from registries (OCI distribution API, through the `oci-client` crate), and the registry
//! credentials of imagePullSecrets.
//!
//! Registries are reached over HTTPS (rustls with the ring provider, the system's roots), except registries on a
//! loopback address (`127.0.0.0/8`, `::1`, `localhost`) and those listed in
//! [`PullOptions::insecure_registries`], which are reached over plain HTTP. An index (manifest list) resolves to
//! its linux manifest for this node's architecture. Every blob's digest is checked as it is written; layers already
//! in the store are neither fetched nor unpacked again.

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use sha2::Digest;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::UnboundedSender;

use super::oci::{self, ManifestKind};
use super::reference::Reference;
use super::store::ImageStore;
use super::{ImageError, digest_bytes, digest_of, host_architecture};
use crate::cri::{self, PullProgress, RegistryAuth};

/// How pulls reach registries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullOptions {
    /// Registries (`HOST` or `HOST:PORT`, as in references) reached over plain HTTP. Loopback registries always
    /// are.
    pub insecure_registries: Vec<String>,
    /// How many layers of one pull are fetched at once.
    pub max_concurrent_downloads: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { insecure_registries: Vec::new(), max_concurrent_downloads: 3 }
    }
}

impl PullOptions {
    /// Whether `registry` (`host[:port]`) is reached over plain HTTP.
    pub fn is_plain_http(&self, registry: &str) -> bool {
        if self.insecure_registries.iter().any(|r| r == registry) {
            return true;
        }
        let host = match registry.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => registry.rsplit_once(':').map_or(registry, |(host, _)| host),
        };
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Bytes between two progress reports of a layer.
const PROGRESS_STEP: u64 = 256 * 1024;
/// How long a registry may take to accept a connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a registry may stay silent in the middle of a response.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

const ACCEPTED: &[&str] = &[oci::OCI_MANIFEST, oci::OCI_INDEX, oci::DOCKER_MANIFEST, oci::DOCKER_MANIFEST_LIST];

impl ImageStore {
    /// Pulls an image into the store, reporting each layer's progress to `progress` if given. Returns the image.
    ///
    /// A reference with a digest is pulled by that digest (and its tag, if any, is not recorded, as Docker does).
    pub async fn pull(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        progress: Option<UnboundedSender<PullProgress>>,
    ) -> Result<cri::Image, ImageError> {
        let parsed = Reference::parse(reference)
            .map_err(|source| ImageError::InvalidReference { reference: reference.to_string(), source })?;
        // Garbage collection waits while this pull writes content the index does not name yet.
        let store = self.clone();
        let _gc = tokio::task::spawn_blocking(move || store.lock_gc_shared()).await.map_err(ImageError::Task)??;

        let registry = parsed.registry().to_string();
        let plain_http = self.pull_options().is_plain_http(&registry);
        // reqwest is built without a TLS provider of its own; ring is the process-wide one (a second install is a
        // harmless error).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::HttpsExcept(vec![registry.clone()])
            } else {
                ClientProtocol::Https
            },
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..Default::default()
        };
        let client = oci_client::Client::new(config);
        let auth = match auth {
            RegistryAuth::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
            RegistryAuth::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
            }
        };
        let registry_error =
            |source| ImageError::Registry { reference: parsed.to_string(), registry: registry.clone(), source };
        let repository = parsed.repository().to_string();
        let top = match parsed.digest() {
            Some(digest) => oci_client::Reference::with_digest(registry.clone(), repository.clone(), digest.into()),
            None => oci_client::Reference::with_tag(
                registry.clone(),
                repository.clone(),
                parsed.tag().unwrap_or(super::reference::DEFAULT_TAG).into(),
            ),
        };

        let (bytes, _) = client.pull_manifest_raw(&top, &auth, ACCEPTED).await.map_err(registry_error)?;
        let top_digest = digest_bytes(&bytes);
        if let Some(expected) = parsed.digest()
            && expected != top_digest
        {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest of {parsed}"),
                expected: expected.into(),
                actual: top_digest,
            });
        }
        let top_bytes = bytes;
        let (manifest, manifest_digest, index_digest) = match oci::parse_manifest_or_index(&top_bytes, &top_digest)? {
            ManifestKind::Manifest(manifest) => {
                self.write_blob_bytes(&top_bytes, Some(&top_digest))?;
                (manifest, top_digest.clone(), None)
            }
            ManifestKind::Index(index) => {
                let arch = host_architecture();
                let chosen = oci::pick_platform(&index, arch).ok_or_else(|| ImageError::NoMatchingPlatform {
                    reference: parsed.to_string(),
                    architecture: arch.into(),
                })?;
                let by_digest =
                    oci_client::Reference::with_digest(registry.clone(), repository.clone(), chosen.digest.clone());
                let (bytes, _) = client.pull_manifest_raw(&by_digest, &auth, ACCEPTED).await.map_err(registry_error)?;
                let digest = digest_bytes(&bytes);
                if digest != chosen.digest {
                    return Err(ImageError::DigestMismatch {
                        what: format!("manifest of {parsed} for linux/{arch}"),
                        expected: chosen.digest.clone(),
                        actual: digest,
                    });
                }
                let ManifestKind::Manifest(manifest) = oci::parse_manifest_or_index(&bytes, &digest)? else {
                    return Err(ImageError::invalid(&digest, "an index inside an index"));
                };
                self.write_blob_bytes(&bytes, Some(&digest))?;
                self.write_blob_bytes(&top_bytes, Some(&top_digest))?;
                (manifest, digest, Some(top_digest.clone()))
            }
        };

        if !self.has_blob(&manifest.config.digest)? {
            let mut config = Vec::new();
            client.pull_blob(&top, manifest.config.digest.as_str(), &mut config).await.map_err(registry_error)?;
            self.write_blob_bytes(&config, Some(&manifest.config.digest))?;
        }
        let config: oci::ConfigFile = serde_json::from_slice(&self.read_blob(&manifest.config.digest)?)
            .map_err(ImageError::json(format!("config {}", manifest.config.digest)))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::invalid(&manifest_digest, "layer count differs from the config's diff_ids"));
        }

        let layers: Vec<(oci::Descriptor, String)> =
            manifest.layers.iter().cloned().zip(config.rootfs.diff_ids.iter().cloned()).collect();
        let concurrency = self.pull_options().max_concurrent_downloads.max(1);
        futures::stream::iter(layers.into_iter().map(|(layer, diff_id)| {
            let (client, top, progress) = (&client, &top, progress.clone());
            async move {
                if !oci::is_layer_media_type(&layer.media_type) {
                    return Err(ImageError::UnsupportedMediaType {
                        digest: layer.digest.clone(),
                        media_type: layer.media_type.clone(),
                    });
                }
                // Another pull of this process fetching the same layer finishes first; this one then finds it.
                let lock = self.fetch_lock(&layer.digest);
                let _fetching = lock.lock().await;
                let present = self.layer_path(&diff_id)?.exists() || self.has_blob(&layer.digest)?;
                if present {
                    report(&progress, &layer.digest, layer.size, Some(layer.size), true);
                } else {
                    self.fetch_layer(client, top, &layer, &progress).await.map_err(|e| match e {
                        FetchError::Registry(source) => registry_error(source),
                        FetchError::Store(e) => e,
                    })?;
                }
                // Unpacking overlaps the other layers' downloads.
                let store = self.clone();
                let (digest, diff) = (layer.digest.clone(), diff_id.clone());
                tokio::task::spawn_blocking(move || store.ensure_layer(&digest, &diff))
                    .await
                    .map_err(ImageError::Task)??;
                Ok::<_, ImageError>(())
            }
        }))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;

        let references: Vec<String> =
            if parsed.digest().is_some() { Vec::new() } else { parsed.tagged().into_iter().collect() };
        let repo_digests = vec![parsed.with_digest(&top_digest)];
        let store = self.clone();
        let image = tokio::task::spawn_blocking(move || {
            store.commit_image(&manifest_digest, index_digest.as_deref(), &references, &repo_digests)
        })
        .await
        .map_err(ImageError::Task)??;
        tracing::info!(reference = %parsed, id = %image.id, "pulled");
        Ok(image)
    }

    async fn fetch_layer(
        &self,
        client: &oci_client::Client,
        image: &oci_client::Reference,
        layer: &oci::Descriptor,
        progress: &Option<UnboundedSender<PullProgress>>,
    ) -> Result<(), FetchError> {
        let mut stream = client.pull_blob_stream(image, layer.digest.as_str()).await.map_err(FetchError::Registry)?;
        let total = stream.content_length.or(Some(layer.size).filter(|s| *s > 0));
        report(progress, &layer.digest, 0, total, false);
        let (file, temp) = self.blob_temp()?.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = sha2::Sha256::new();
        let (mut fetched, mut reported) = (0u64, 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| FetchError::Store(ImageError::io(&*temp)(e)))?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| FetchError::Store(ImageError::io(&*temp)(e)))?;
            fetched += chunk.len() as u64;
            // Every 256 KiB and at the end: enough for a progress bar, few enough for a 1 GB layer.
            if fetched - reported >= PROGRESS_STEP || Some(fetched) == total {
                report(progress, &layer.digest, fetched, total, false);
                reported = fetched;
            }
        }
        if reported != fetched {
            report(progress, &layer.digest, fetched, total, false);
        }
        file.sync_all().await.map_err(|e| FetchError::Store(ImageError::io(&*temp)(e)))?;
        drop(file);
        self.commit_blob(temp, &digest_of(hasher), &layer.digest)?;
        Ok(())
    }
}

enum FetchError {
    Registry(oci_client::errors::OciDistributionError),
    Store(ImageError),
}

impl From<ImageError> for FetchError {
    fn from(e: ImageError) -> Self {
        FetchError::Store(e)
    }
}

fn report(
    progress: &Option<UnboundedSender<PullProgress>>,
    layer: &str,
    fetched: u64,
    total: Option<u64>,
    cached: bool,
) {
    if let Some(progress) = progress {
        // A receiver that went away only stops caring about progress; the pull goes on.
        let _ = progress.send(PullProgress { layer: layer.to_string(), fetched, total, cached });
    }
}

/// The credentials for `registry` (`host[:port]`, as in references) in a Docker config JSON document: the
/// `.dockerconfigjson` form (`{"auths": {...}}`) or the older `.dockercfg` form (the map alone), as
/// imagePullSecrets hold them. Keys may be URLs (`https://index.docker.io/v1/`) or `*.domain` wildcards; an
/// entry's `auth` (base64 of `user:password`) wins over its `username` and `password`. `None` when no entry
/// matches.
pub fn credentials_from_docker_config(json: &[u8], registry: &str) -> Result<Option<RegistryAuth>, ImageError> {
    #[derive(serde::Deserialize, Default)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| ImageError::DockerConfig { problem: format!("not JSON: {e}") })?;
    let auths = match value.get("auths") {
        Some(auths) => auths.clone(),
        None => value,
    };
    let auths: HashMap<String, serde_json::Value> = serde_json::from_value(auths)
        .map_err(|e| ImageError::DockerConfig { problem: format!("auths is not a map of registries: {e}") })?;
    let wanted = registry_key(registry);
    let mut best: Option<(&String, bool)> = None;
    for key in auths.keys() {
        let host = registry_key(key);
        if host == wanted {
            best = Some((key, true));
            break;
        }
        if let Some(domain) = host.strip_prefix("*.")
            && wanted.strip_suffix(domain).is_some_and(|sub| sub.ends_with('.') && !sub[..sub.len() - 1].contains('.'))
            && best.is_none()
        {
            best = Some((key, false));
        }
    }
    let Some((key, _)) = best else { return Ok(None) };
    let entry: Entry = serde_json::from_value(auths[key].clone())
        .map_err(|e| ImageError::DockerConfig { problem: format!("entry for {key}: {e}") })?;
    if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| ImageError::DockerConfig { problem: format!("entry for {key}: auth is not base64: {e}") })?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| ImageError::DockerConfig { problem: format!("entry for {key}: auth is not UTF-8") })?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| ImageError::DockerConfig {
            problem: format!("entry for {key}: auth is not base64 of user:password"),
        })?;
        return Ok(Some(RegistryAuth::Basic { username: username.into(), password: password.into() }));
    }
    match (entry.username, entry.password) {
        (Some(username), password) if !username.is_empty() => {
            Ok(Some(RegistryAuth::Basic { username, password: password.unwrap_or_default() }))
        }
        _ => Ok(Some(RegistryAuth::Anonymous)),
    }
}

/// A registry key reduced to `host[:port]`, with Docker Hub's aliases as `docker.io`.
fn registry_key(key: &str) -> String {
    let key = key.trim();
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> Option<RegistryAuth> {
        Some(RegistryAuth::Basic { username: user.into(), password: pass.into() })
    }

    #[test]
    fn loopback_and_listed_registries_are_reached_over_plain_http() {
        let options = PullOptions { insecure_registries: vec!["reg.internal:5000".into()], ..Default::default() };
        for plain in ["127.0.0.1:5000", "127.1.2.3", "localhost:5000", "localhost", "[::1]:5000", "reg.internal:5000"] {
            assert!(options.is_plain_http(plain), "{plain}");
        }
        for tls in ["docker.io", "reg.internal", "reg.internal:5001", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!options.is_plain_http(tls), "{tls}");
        }
    }

    #[test]
    fn docker_config_auth_fields_give_credentials_for_the_matching_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let json = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "127.0.0.1:5000": {{"username": "bob", "password": "pw"}},
                "*.corp.example": {{"username": "carol", "password": "x"}}}}}}"#
        );
        let creds = |r| credentials_from_docker_config(json.as_bytes(), r).unwrap();
        assert_eq!(creds("docker.io"), basic("alice", "s3cr:et"));
        assert_eq!(creds("127.0.0.1:5000"), basic("bob", "pw"));
        assert_eq!(creds("reg.corp.example"), basic("carol", "x"));
        assert_eq!(creds("a.b.corp.example"), None, "a wildcard matches one label");
        assert_eq!(creds("127.0.0.1:5001"), None);
    }

    #[test]
    fn the_older_dockercfg_form_and_bad_documents() {
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p");
        let json = format!(r#"{{"registry.example:443": {{"auth": "{auth}", "email": "x@y"}}}}"#);
        assert_eq!(credentials_from_docker_config(json.as_bytes(), "registry.example:443").unwrap(), basic("u", "p"));
        let err = credentials_from_docker_config(br#"{"auths": {"r": {"auth": "%%%"}}}"#, "r").unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
        assert!(credentials_from_docker_config(b"[1]", "r").is_err());
        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        let json = format!(r#"{{"auths": {{"r": {{"auth": "{no_colon}"}}}}}}"#);
        assert!(credentials_from_docker_config(json.as_bytes(), "r").is_err());
    }
}
