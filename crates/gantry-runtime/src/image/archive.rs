//! Importing images from archives: OCI image layouts (a directory, or a tar of one, optionally gzip'd) and
//! `docker save` archives.
//!
//! Names, as containerd's importer gives them: the `io.containerd.image.name` annotation (a full reference,
//! written by containerd, BuildKit and Docker) wins; else `org.opencontainers.image.ref.name` if it is a full
//! reference (it contains `/`, `:` or `@`, as skopeo may write it); a bare value there is only a tag, which
//! containerd prefixes with a base name it is given (`ctr import --base-name`): so does
//! [`ImageStore::import_archive_as`], and without a base name such an image is imported unnamed (by ID only),
//! never guessed to be `docker.io/library/<something>`. `docker save`'s `RepoTags` are normalised (`busybox:1` is
//! `docker.io/library/busybox:1`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::Digest;

use super::oci::{self, Descriptor, ManifestKind};
use super::reference::Reference;
use super::store::ImageStore;
use super::{ImageError, digest_of, host_architecture, sha256_hex};
use crate::cri;

/// An archive's files: a directory, and the symlinks of the tar (kept as a map, never made, so that nothing is
/// read from outside the archive).
struct Layout {
    root: PathBuf,
    links: HashMap<PathBuf, PathBuf>,
    /// The files were extracted into the store's `tmp/` and may be moved into place rather than copied.
    owned: bool,
    /// Keeps the extraction directory until the import ends.
    _temp: Option<tempfile::TempDir>,
}

impl Layout {
    fn path(&self, rel: &str) -> PathBuf {
        let mut rel = normalise(Path::new(rel)).unwrap_or_default();
        for _ in 0..8 {
            match self.links.get(&rel) {
                Some(target) => rel = target.clone(),
                None => break,
            }
        }
        self.root.join(rel)
    }
}

/// `rel` with `.` dropped and `..` resolved, or `None` if it leaves the root.
fn normalise(rel: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in rel.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Imports every image of an OCI archive (a tar of an OCI image layout, optionally gzip'd), an OCI layout
    /// directory, or a `docker save` archive. Images are named as the module documentation says; one named by a
    /// bare tag only is imported without a name.
    pub fn import_archive(&self, path: &Path) -> Result<Vec<cri::Image>, ImageError> {
        self.import_archive_as(path, None)
    }

    /// [`ImageStore::import_archive`], naming images that an archive names by a bare tag `BASE:tag` (as
    /// `ctr import --base-name BASE` does).
    pub fn import_archive_as(&self, path: &Path, base_name: Option<&str>) -> Result<Vec<cri::Image>, ImageError> {
        if let Some(base) = base_name {
            Reference::parse(base)
                .map_err(|source| ImageError::InvalidReference { reference: base.to_string(), source })?;
        }
        let _gc = self.lock_gc_shared()?;
        let meta = fs::metadata(path).map_err(ImageError::io(path))?;
        let layout = if meta.is_dir() {
            Layout { root: path.to_path_buf(), links: HashMap::new(), owned: false, _temp: None }
        } else {
            self.extract(path)?
        };
        let what = path.display().to_string();
        if layout.path("index.json").is_file() {
            self.import_oci(&layout, &what, base_name)
        } else if layout.path("manifest.json").is_file() {
            self.import_docker(&layout, &what)
        } else {
            Err(ImageError::invalid(what, "neither an OCI image layout (index.json) nor a docker save (manifest.json)"))
        }
    }

    /// Extracts an archive's regular files into the store's `tmp/`.
    fn extract(&self, path: &Path) -> Result<Layout, ImageError> {
        let file = File::open(path).map_err(ImageError::io(path))?;
        let mut reader = BufReader::new(file);
        let gzip = reader.fill_buf().map_err(ImageError::io(path))?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read> =
            if gzip { Box::new(flate2::read::MultiGzDecoder::new(reader)) } else { Box::new(reader) };
        let tmp = self.tmp_dir();
        let temp = tempfile::Builder::new().prefix("import-").tempdir_in(&tmp).map_err(ImageError::io(&tmp))?;
        let root = temp.path().to_path_buf();
        let mut links = HashMap::new();
        let mut archive = tar::Archive::new(reader);
        let bad = |entry: &Path| ImageError::invalid(path.display().to_string(), format!("entry {entry:?} escapes"));
        for entry in archive.entries().map_err(ImageError::io(path))? {
            let mut entry = entry.map_err(ImageError::io(path))?;
            let raw = entry.path().map_err(ImageError::io(path))?.into_owned();
            let rel = normalise(&raw).ok_or_else(|| bad(&raw))?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dest = root.join(&rel);
                    if let Some(parent) = dest.parent() {
                        fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
                    }
                    let mut out = File::create(&dest).map_err(ImageError::io(&dest))?;
                    io::copy(&mut entry, &mut out).map_err(ImageError::io(&dest))?;
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name().map_err(ImageError::io(path))?.ok_or_else(|| bad(&raw))?;
                    // Symlink targets are relative to the link's directory, hard link targets to the root.
                    let joined = if entry.header().entry_type() == tar::EntryType::Symlink {
                        rel.parent().unwrap_or(Path::new("")).join(target)
                    } else {
                        target.into_owned()
                    };
                    links.insert(rel, normalise(&joined).ok_or_else(|| bad(&raw))?);
                }
                _ => {}
            }
        }
        Ok(Layout { root, links, owned: true, _temp: Some(temp) })
    }

    /// Puts a blob of the layout into the store (moving it when the layout is the store's own extraction),
    /// checking its digest. Returns the digest.
    fn ingest(&self, layout: &Layout, file: &Path, expected: Option<&str>) -> Result<String, ImageError> {
        if let Some(expected) = expected
            && self.has_blob(expected)?
        {
            return Ok(expected.to_string());
        }
        if layout.owned {
            let mut input = File::open(file).map_err(ImageError::io(file))?;
            let mut hasher = sha2::Sha256::new();
            let mut buf = vec![0u8; 128 * 1024];
            loop {
                let n = input.read(&mut buf).map_err(ImageError::io(file))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            let actual = digest_of(hasher);
            let expected = expected.unwrap_or(&actual).to_string();
            let temp = tempfile::TempPath::try_from_path(file).map_err(ImageError::io(file))?;
            self.commit_blob(temp, &actual, &expected)?;
            Ok(expected)
        } else {
            let mut input = File::open(file).map_err(ImageError::io(file))?;
            Ok(self.write_blob(&mut input, expected, file)?.0)
        }
    }

    fn ingest_descriptor(&self, layout: &Layout, descriptor: &Descriptor) -> Result<(), ImageError> {
        let hex = sha256_hex(&descriptor.digest)?;
        self.ingest(layout, &layout.path(&format!("blobs/sha256/{hex}")), Some(&descriptor.digest))?;
        Ok(())
    }

    fn import_oci(&self, layout: &Layout, what: &str, base: Option<&str>) -> Result<Vec<cri::Image>, ImageError> {
        let index_path = layout.path("index.json");
        let bytes = fs::read(&index_path).map_err(ImageError::io(&index_path))?;
        let index: oci::Index =
            serde_json::from_slice(&bytes).map_err(ImageError::json(format!("{what}: index.json")))?;
        let arch = host_architecture();
        let mut images = Vec::new();
        let mut skipped_platforms = 0;
        for entry in &index.manifests {
            if let Some(platform) = &entry.platform
                && (platform.os != "linux" || platform.architecture != arch)
            {
                skipped_platforms += 1;
                continue;
            }
            let names = self.names_of(entry, base, what);
            self.ingest_descriptor(layout, entry)?;
            let (manifest_digest, index_digest) =
                match oci::parse_manifest_or_index(&self.read_blob(&entry.digest)?, &entry.digest)? {
                    ManifestKind::Manifest(_) => (entry.digest.clone(), None),
                    ManifestKind::Index(nested) => {
                        let chosen = oci::pick_platform(&nested, arch).ok_or_else(|| {
                            ImageError::NoMatchingPlatform { reference: what.to_string(), architecture: arch.into() }
                        })?;
                        self.ingest_descriptor(layout, chosen)?;
                        (chosen.digest.clone(), Some(entry.digest.clone()))
                    }
                };
            let manifest = match oci::parse_manifest_or_index(&self.read_blob(&manifest_digest)?, &manifest_digest)? {
                ManifestKind::Manifest(m) => m,
                ManifestKind::Index(_) => return Err(ImageError::invalid(&manifest_digest, "nested index too deep")),
            };
            self.ingest_descriptor(layout, &manifest.config)?;
            for layer in &manifest.layers {
                self.ingest_descriptor(layout, layer)?;
            }
            let tags: Vec<String> = names.iter().filter_map(Reference::tagged).collect();
            let digests: Vec<String> = names.iter().map(|n| n.with_digest(&entry.digest)).collect();
            images.push(self.commit_image(&manifest_digest, index_digest.as_deref(), &tags, &digests)?);
        }
        if images.is_empty() && skipped_platforms > 0 {
            return Err(ImageError::NoMatchingPlatform { reference: what.to_string(), architecture: arch.into() });
        }
        if images.is_empty() {
            return Err(ImageError::invalid(what, "the index lists no image"));
        }
        Ok(images)
    }

    /// The references an index entry names, as the module documentation says.
    fn names_of(&self, entry: &Descriptor, base: Option<&str>, what: &str) -> Vec<Reference> {
        let full = entry.annotation(oci::ANNOTATION_IMAGE_NAME).map(str::to_string).or_else(|| {
            let name = entry.annotation(oci::ANNOTATION_REF_NAME)?;
            if name.contains(['/', ':', '@']) {
                Some(name.to_string())
            } else if let Some(base) = base {
                let base = Reference::parse(base).ok()?.name();
                Some(format!("{base}:{name}"))
            } else {
                tracing::warn!(archive = what, tag = name, "image named by a bare tag imported without a name");
                None
            }
        });
        match full.map(|name| Reference::parse(&name).map_err(|e| (name, e))) {
            Some(Ok(reference)) => vec![reference],
            Some(Err((name, error))) => {
                tracing::warn!(archive = what, name, %error, "image name ignored");
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    fn import_docker(&self, layout: &Layout, what: &str) -> Result<Vec<cri::Image>, ImageError> {
        let path = layout.path("manifest.json");
        let bytes = fs::read(&path).map_err(ImageError::io(&path))?;
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&bytes).map_err(ImageError::json(format!("{what}: manifest.json")))?;
        let mut images = Vec::new();
        let mut ingested: HashMap<PathBuf, Descriptor> = HashMap::new();
        for entry in entries {
            let config_path = layout.path(&entry.config);
            let config_bytes = fs::read(&config_path).map_err(ImageError::io(&config_path))?;
            let config_digest = self.write_blob_bytes(&config_bytes, None)?;
            let mut layers = Vec::new();
            for layer in &entry.layers {
                let file = layout.path(layer);
                // A layer listed twice (or through a symlink) was moved into the store the first time.
                if let Some(done) = ingested.get(&file) {
                    layers.push(done.clone());
                    continue;
                }
                let size = fs::metadata(&file).map_err(ImageError::io(&file))?.len();
                let gzip = {
                    let mut head = [0u8; 2];
                    let mut f = File::open(&file).map_err(ImageError::io(&file))?;
                    f.read(&mut head).map_err(ImageError::io(&file))? == 2 && head == [0x1f, 0x8b]
                };
                let digest = self.ingest(layout, &file, None)?;
                let media_type = if gzip { oci::DOCKER_LAYER_GZIP } else { oci::OCI_LAYER_TAR };
                let descriptor = Descriptor { media_type: media_type.into(), digest, size, ..Default::default() };
                ingested.insert(file, descriptor.clone());
                layers.push(descriptor);
            }
            let manifest = oci::Manifest {
                schema_version: 2,
                media_type: Some(oci::DOCKER_MANIFEST.into()),
                config: Descriptor {
                    media_type: oci::DOCKER_CONFIG.into(),
                    digest: config_digest,
                    size: config_bytes.len() as u64,
                    ..Default::default()
                },
                layers,
            };
            let manifest_bytes = serde_json::to_vec(&manifest).map_err(ImageError::json("manifest"))?;
            let manifest_digest = self.write_blob_bytes(&manifest_bytes, None)?;
            let mut tags = Vec::new();
            for tag in entry.repo_tags.unwrap_or_default() {
                let reference = Reference::parse(&tag)
                    .map_err(|source| ImageError::InvalidReference { reference: tag.clone(), source })?;
                tags.extend(reference.tagged());
            }
            images.push(self.commit_image(&manifest_digest, None, &tags, &[])?);
        }
        if images.is_empty() {
            return Err(ImageError::invalid(what, "manifest.json lists no image"));
        }
        Ok(images)
    }
}
