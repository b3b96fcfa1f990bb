//! The parts of the OCI image and distribution formats (and their Docker equivalents) the store reads and writes.
//!
//! Hand-written rather than taken from a spec crate so that decoding is as tolerant as registries and tools are in
//! practice (`null` lists, missing optional fields, Docker media types).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ImageError;

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, gzip-compressed.
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, uncompressed.
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, zstd-compressed.
pub(crate) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker image manifest (schema 2).
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, gzip-compressed.
pub(crate) const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The annotation with an image's tag (or, as some tools write it, its whole reference) in an OCI layout.
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation with an image's full name that containerd and BuildKit add in an OCI layout.
pub(crate) const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Whether a layer of this media type is a (possibly compressed) tar the store can unpack.
pub(crate) fn is_layer_media_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER_GZIP
            | OCI_LAYER_TAR
            | OCI_LAYER_ZSTD
            | DOCKER_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// A content descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    /// Media type of the content.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:...`.
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Annotations (an index's entries carry the reference names here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// The value of an annotation, if set.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
    }
}

/// A platform in an index entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Platform {
    /// CPU architecture (`amd64`).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// CPU variant (`v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index (or Docker manifest list).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Manifests (or nested indexes).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An image config, as far as the store needs it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ConfigFile {
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// How to run the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
}

/// The `rootfs` section of a config.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Digests of the uncompressed layer tars, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// The `config` section of a config: how containers of the image run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RunConfig {
    /// `KEY=value` pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Stop signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

impl ConfigFile {
    /// The run settings in the contract's terms.
    pub fn to_cri(&self) -> crate::cri::ImageConfig {
        let run = self.config.clone().unwrap_or_default();
        crate::cri::ImageConfig {
            env: run.env.unwrap_or_default(),
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            working_dir: run.working_dir.unwrap_or_default(),
            user: run.user.unwrap_or_default(),
            stop_signal: run.stop_signal.unwrap_or_default(),
        }
    }
}

#[derive(Debug)]
/// What a manifest-or-index document is, told from its media type or, when it has none, its fields.
pub(crate) enum ManifestKind {
    /// A single-platform image manifest.
    Manifest(Manifest),
    /// An index of manifests.
    Index(Index),
}

/// Decodes a manifest or an index; `what` names it in errors.
pub(crate) fn parse_manifest_or_index(bytes: &[u8], what: &str) -> Result<ManifestKind, ImageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        schema_version: Option<u32>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(ImageError::json(what))?;
    if probe.schema_version == Some(1) {
        return Err(ImageError::invalid(what, "schema 1 manifests are not supported"));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) if probe.manifests.is_none() => {
            return Err(ImageError::invalid(what, format!("unsupported manifest media type {other}")));
        }
        _ => probe.manifests.is_some(),
    };
    if is_index {
        Ok(ManifestKind::Index(serde_json::from_slice(bytes).map_err(ImageError::json(what))?))
    } else {
        Ok(ManifestKind::Manifest(serde_json::from_slice(bytes).map_err(ImageError::json(what))?))
    }
}

/// The entry of an index for linux and this node's architecture (an entry without a platform counts when it is
/// the only one).
pub(crate) fn pick_platform<'a>(index: &'a Index, architecture: &str) -> Option<&'a Descriptor> {
    let matching = |d: &&Descriptor| {
        d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == architecture)
            && d.media_type != "application/vnd.in-toto+json"
    };
    // Prefer the variant a node of this architecture runs natively (arm64 is v8), then any.
    let preferred = match architecture {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    };
    index
        .manifests
        .iter()
        .filter(matching)
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_deref()) == preferred)
        .or_else(|| index.manifests.iter().find(matching))
        .or_else(|| match index.manifests.as_slice() {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_index_entry_for_this_architecture_is_picked() {
        let index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![entry("arm", Some("v6"), "a"), entry("amd64", None, "b"), entry("arm64", Some("v8"), "c")],
        };
        assert_eq!(pick_platform(&index, "amd64").map(|d| d.digest.as_str()), Some("b"));
        assert_eq!(pick_platform(&index, "arm64").map(|d| d.digest.as_str()), Some("c"));
        assert_eq!(pick_platform(&index, "arm").map(|d| d.digest.as_str()), Some("a"));
        assert!(pick_platform(&index, "s390x").is_none());
    }

    #[test]
    fn documents_without_a_media_type_are_told_apart_by_their_fields() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_manifest_or_index(index, "x"), Ok(ManifestKind::Index(_))));
        let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:0","size":1},"layers":null}"#;
        assert!(parse_manifest_or_index(manifest, "x").is_err(), "null layers are not a list");
        let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:0","size":1}}"#;
        assert!(matches!(parse_manifest_or_index(manifest, "x"), Ok(ManifestKind::Manifest(_))));
        let v1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(parse_manifest_or_index(v1, "x").unwrap_err().to_string().contains("schema 1"));
    }
}
