//! The content-addressed image store.
//!
//! Layout under the store's root (see `docs/runtime.md`, "Images"):
//!
//! - `blobs/sha256/<hex>`: manifests, configs and compressed layers, each written to `tmp/` first, its digest
//!   checked, then renamed into place; a blob under its name always has that digest.
//! - `layers/<diff_id hex>/`: each layer unpacked once (its uncompressed digest checked while unpacking), with OCI
//!   whiteouts turned into overlayfs ones, so that the directories serve as overlay lower layers as they are and
//!   are shared by every image that has the layer.
//! - `index.json`: which references name which image (ID = config digest), the manifest, layers and config of
//!   each image. Replaced atomically under an exclusive `flock` on `lock`.
//! - `gc.lock`: held shared by every writer of content for its whole run (a pull, an import) and exclusively by
//!   garbage collection, so that collection never removes content an unfinished pull is about to record.
//! - `tmp/`: unfinished writes, ignored by readers and emptied whenever nobody writes (a crash leaves only this).
//!
//! Invariants: an image in the index has all its blobs and unpacked layers present; layer directories are never
//! modified after their rename into `layers/`.

mod archive;
pub(crate) mod oci;
mod overlay;
pub mod pull;
pub mod reference;
mod service;
mod store;
mod unpack;

use std::path::PathBuf;

pub use overlay::{mount_overlay, unmount};
pub use pull::{PullOptions, credentials_from_docker_config};
pub use reference::{Reference, ReferenceError};
pub use store::{ImageStore, PruneReport, RemoveOutcome};

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image with this reference or ID.
    #[error("image {0} not found")]
    NotFound(String),
    /// The string is neither an image reference nor an image ID.
    #[error("invalid image reference {reference:?}: {source}")]
    InvalidReference {
        /// The string given.
        reference: String,
        /// Why it is invalid.
        #[source]
        source: ReferenceError,
    },
    /// An ID prefix matches more than one image.
    #[error("image ID prefix {prefix} is ambiguous: it matches {matches} images")]
    AmbiguousId {
        /// The prefix given.
        prefix: String,
        /// How many images it matches.
        matches: usize,
    },
    /// Reading or writing the store's files (or an archive) failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document (index, manifest, config, archive metadata) could not be decoded.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// Which document (a path or a digest).
        what: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// Content does not have the digest it was announced with.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked (a blob, a layer's diff_id).
        what: String,
        /// The digest announced.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A digest that is not `sha256:` and 64 hexadecimal digits.
    #[error("unsupported digest {0:?} (only sha256 is supported)")]
    UnsupportedDigest(String),
    /// A manifest, config or archive is well-formed JSON but not a valid image.
    #[error("{what}: {problem}")]
    InvalidImage {
        /// Which document or archive.
        what: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A layer's media type or compression is not supported.
    #[error("layer {digest}: unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The layer's digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// A layer entry would land outside the layer's root (`..`, an absolute link target through a symlink).
    #[error("layer {layer}: entry {entry:?} escapes the layer root")]
    UnsafePath {
        /// The layer's diff_id.
        layer: String,
        /// The entry's path in the layer tar.
        entry: String,
    },
    /// An index or manifest list has no manifest for this node's platform.
    #[error("{reference}: no manifest for linux/{architecture}")]
    NoMatchingPlatform {
        /// The reference pulled or imported.
        reference: String,
        /// This node's architecture, in OCI terms.
        architecture: String,
    },
    /// The registry refused or failed a request.
    #[error("pulling {reference} from {registry}: {source}")]
    Registry {
        /// The reference pulled.
        reference: String,
        /// The registry host.
        registry: String,
        /// The client's error.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// Docker config JSON (an imagePullSecret) is malformed.
    #[error("docker config: {problem}")]
    DockerConfig {
        /// What is wrong.
        problem: String,
    },
    /// A mount or unmount failed.
    #[error("{operation} {target}: {source}")]
    Mount {
        /// `mount overlay on` or `unmount`.
        operation: &'static str,
        /// The mount point.
        target: PathBuf,
        /// The error number.
        #[source]
        source: nix::Error,
    },
    /// The overlay options do not fit in a page even with short links to the layers.
    #[error("{layers} layers are too many for one overlay mount")]
    TooManyLayers {
        /// How many lower layers were asked for.
        layers: usize,
    },
    /// A blocking task of the store panicked or was cancelled.
    #[error("image store task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }

    pub(crate) fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> ImageError {
        let what = what.into();
        move |source| ImageError::Json { what, source }
    }

    pub(crate) fn invalid(what: impl Into<String>, problem: impl Into<String>) -> ImageError {
        ImageError::InvalidImage { what: what.into(), problem: problem.into() }
    }
}

/// The OCI name of this node's architecture (`amd64`, `arm64`, ...).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The hex part of a `sha256:` digest, or an error naming the digest.
pub(crate) fn sha256_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if reference::is_sha256_hex(hex) => Ok(hex),
        _ => Err(ImageError::UnsupportedDigest(digest.to_string())),
    }
}

/// `sha256:<hex>` of a finished hasher.
pub(crate) fn digest_of(hasher: sha2::Sha256) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// `sha256:<hex>` of some bytes.
pub(crate) fn digest_bytes(bytes: &[u8]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(bytes);
    digest_of(hasher)
}
