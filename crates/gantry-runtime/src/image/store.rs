//! The store itself: blobs, unpacked layers, the index of images, locking and garbage collection.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::oci::{self, ConfigFile, ManifestKind};
use super::pull::PullOptions;
use super::reference::Reference;
use super::{ImageError, digest_of, sha256_hex, unpack};
use crate::cri;

/// The prefix of the temporary files an index is written to before it replaces `index.json`.
const INDEX_TEMP_PREFIX: &str = ".index.json-";

/// The content-addressed image store (see the module documentation for its layout).
///
/// Cheap to clone; every clone is the same store. Safe to use from several threads and several processes at once.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    pull: PullOptions,
    /// One lock per layer being fetched by this process, so that concurrent pulls sharing a layer fetch it once.
    fetching: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Sizes of the layers this process unpacked, until the index records them.
    unpacked_sizes: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// What a [`ImageStore::prune`] or [`ImageStore::collect_garbage`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// IDs of the images removed.
    pub images_removed: Vec<String>,
    /// How many blobs were removed.
    pub blobs_removed: usize,
    /// How many unpacked layer directories were removed.
    pub layers_removed: usize,
    /// Bytes freed (blobs and the regular files of the layers).
    pub bytes_freed: u64,
}

/// What [`ImageStore::remove`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoveOutcome {
    /// References removed from the image.
    pub untagged: Vec<String>,
    /// The image's ID, when the image itself was removed (no reference was left, or it was named by ID).
    pub deleted: Option<String>,
}

/// The index file: every image the store holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: BTreeMap<String, ImageRecord>,
}

/// One image in the index.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    /// The image ID: its config's digest.
    pub id: String,
    /// The manifest's digest.
    pub manifest: String,
    /// The index (manifest list) it was chosen from, kept so that its digest still names content here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// How to run it.
    pub config: cri::ImageConfig,
    /// Normalised `registry/repository:tag` references.
    pub references: Vec<String>,
    /// `registry/repository@digest` references.
    pub repo_digests: Vec<String>,
}

/// One layer of an image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    /// Digest of the blob as distributed (compressed).
    pub digest: String,
    /// Digest of the uncompressed tar: names the unpacked directory.
    pub diff_id: String,
    /// Bytes of regular files once unpacked.
    pub size: u64,
}

impl ImageRecord {
    fn to_cri(&self) -> cri::Image {
        cri::Image {
            id: self.id.clone(),
            repo_tags: self.references.clone(),
            repo_digests: self.repo_digests.clone(),
            size: self.layers.iter().map(|l| l.size).sum(),
            config: self.config.clone(),
        }
    }
}

/// How a string named an image.
enum Named {
    /// By a tag reference (`registry/repo:tag`).
    Tag(String),
    /// By a digest reference (`registry/repo@sha256:...`).
    Digest(String),
    /// By its ID or an ID prefix.
    Id,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`. Leftovers of interrupted writes are removed when no other
    /// process is writing.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, ImageError> {
        let root = root.into();
        for dir in [root.join("blobs/sha256"), root.join("layers"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(ImageError::io(&dir))?;
        }
        let store = ImageStore {
            inner: Arc::new(Inner {
                root,
                pull: PullOptions::default(),
                fetching: Default::default(),
                unpacked_sizes: Default::default(),
            }),
        };
        if let Some(_gc) = store.try_lock_gc()? {
            store.clear_tmp()?;
        }
        store.clear_index_temps()?;
        Ok(store)
    }

    /// The same store, pulling with these options.
    pub fn with_pull_options(self, pull: PullOptions) -> ImageStore {
        ImageStore {
            inner: Arc::new(Inner {
                root: self.inner.root.clone(),
                pull,
                fetching: Default::default(),
                unpacked_sizes: Default::default(),
            }),
        }
    }

    /// The lock a pull holds while it fetches and unpacks the layer `digest`. Entries go once nobody holds them.
    pub(crate) fn fetch_lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut fetching = self.inner.fetching.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        fetching.retain(|_, lock| Arc::strong_count(lock) > 1);
        fetching.entry(digest.to_string()).or_default().clone()
    }

    /// The pull options in force.
    pub fn pull_options(&self) -> &PullOptions {
        &self.inner.pull
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.inner.root.join("tmp")
    }

    /// Where a blob lives (whether or not it is present).
    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.inner.root.join("blobs/sha256").join(sha256_hex(digest)?))
    }

    /// Where a layer is unpacked (whether or not it is).
    pub(crate) fn layer_path(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.inner.root.join("layers").join(sha256_hex(diff_id)?))
    }

    /// Whether a blob is present.
    pub(crate) fn has_blob(&self, digest: &str) -> Result<bool, ImageError> {
        Ok(self.blob_path(digest)?.exists())
    }

    fn lock_file(&self, name: &str, arg: FlockArg) -> Result<Option<Flock<File>>, ImageError> {
        let path = self.inner.root.join(name);
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(ImageError::io(&path))?;
        match Flock::lock(file, arg) {
            Ok(lock) => Ok(Some(lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(ImageError::io(&path)(errno.into())),
        }
    }

    fn lock_index(&self, exclusive: bool) -> Result<Flock<File>, ImageError> {
        let arg = if exclusive { FlockArg::LockExclusive } else { FlockArg::LockShared };
        let lock = self.lock_file("lock", arg)?;
        lock.ok_or_else(|| ImageError::io(self.inner.root.join("lock"))(io::ErrorKind::WouldBlock.into()))
    }

    /// Held shared by a writer of content for its whole run, so that garbage collection waits for it.
    pub(crate) fn lock_gc_shared(&self) -> Result<Flock<File>, ImageError> {
        let lock = self.lock_file("gc.lock", FlockArg::LockShared)?;
        lock.ok_or_else(|| ImageError::io(self.inner.root.join("gc.lock"))(io::ErrorKind::WouldBlock.into()))
    }

    fn lock_gc(&self) -> Result<Flock<File>, ImageError> {
        let lock = self.lock_file("gc.lock", FlockArg::LockExclusive)?;
        lock.ok_or_else(|| ImageError::io(self.inner.root.join("gc.lock"))(io::ErrorKind::WouldBlock.into()))
    }

    fn try_lock_gc(&self) -> Result<Option<Flock<File>>, ImageError> {
        self.lock_file("gc.lock", FlockArg::LockExclusiveNonblock)
    }

    fn clear_tmp(&self) -> Result<(), ImageError> {
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(ImageError::io(&tmp))? {
            let path = entry.map_err(ImageError::io(&tmp))?.path();
            remove_any(&path)?;
        }
        Ok(())
    }

    /// Removes index files a crash left half-written.
    fn clear_index_temps(&self) -> Result<(), ImageError> {
        let _lock = self.lock_index(true)?;
        let root = &self.inner.root;
        for entry in fs::read_dir(root).map_err(ImageError::io(root))? {
            let entry = entry.map_err(ImageError::io(root))?;
            if entry.file_name().to_string_lossy().starts_with(INDEX_TEMP_PREFIX) {
                remove_any(&entry.path())?;
            }
        }
        Ok(())
    }

    fn read_index(&self) -> Result<IndexFile, ImageError> {
        let path = self.inner.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(ImageError::json(path.display().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexFile { version: 1, images: BTreeMap::new() }),
            Err(e) => Err(ImageError::io(&path)(e)),
        }
    }

    /// Replaces the index atomically; the caller holds the exclusive index lock.
    fn write_index(&self, index: &IndexFile) -> Result<(), ImageError> {
        let path = self.inner.root.join("index.json");
        let bytes = serde_json::to_vec_pretty(index).map_err(ImageError::json("index"))?;
        // Beside the index rather than in tmp/: an index write holds no gc lock, and tmp/ is emptied under it.
        let root = &self.inner.root;
        let mut file =
            tempfile::Builder::new().prefix(INDEX_TEMP_PREFIX).tempfile_in(root).map_err(ImageError::io(root))?;
        file.write_all(&bytes).map_err(ImageError::io(file.path()))?;
        file.as_file().sync_all().map_err(ImageError::io(file.path()))?;
        file.persist(&path).map_err(|e| ImageError::io(&path)(e.error))?;
        Ok(())
    }

    /// A temporary file for a blob being written, in the store's `tmp/`.
    pub(crate) fn blob_temp(&self) -> Result<tempfile::NamedTempFile, ImageError> {
        let tmp = self.tmp_dir();
        tempfile::Builder::new().prefix("blob-").tempfile_in(&tmp).map_err(ImageError::io(&tmp))
    }

    /// Moves a finished temporary blob into place once its digest (`actual`, computed while writing) is `expected`.
    pub(crate) fn commit_blob(
        &self,
        temp: tempfile::TempPath,
        actual: &str,
        expected: &str,
    ) -> Result<PathBuf, ImageError> {
        if actual != expected {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {expected}"),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        let path = self.blob_path(expected)?;
        temp.persist(&path).map_err(|e| ImageError::io(&path)(e.error))?;
        Ok(path)
    }

    /// Writes a blob from a reader, checking it has the digest `expected` (when given; else it is named by the
    /// digest of what was read). Returns the digest and the size.
    pub(crate) fn write_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<&str>,
        what: &Path,
    ) -> Result<(String, u64), ImageError> {
        if let Some(expected) = expected {
            sha256_hex(expected)?;
        }
        let temp = self.blob_temp()?;
        let (file, temp) = temp.into_parts();
        let mut writer = io::BufWriter::new(file);
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 128 * 1024];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(ImageError::io(what))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            writer.write_all(&buf[..n]).map_err(ImageError::io(&*temp))?;
            size += n as u64;
        }
        let file = writer.into_inner().map_err(|e| ImageError::io(&*temp)(e.into_error()))?;
        file.sync_all().map_err(ImageError::io(&*temp))?;
        let actual = digest_of(hasher);
        let expected = expected.unwrap_or(&actual).to_string();
        self.commit_blob(temp, &actual, &expected)?;
        Ok((expected, size))
    }

    /// Writes a blob held in memory; see [`ImageStore::write_blob`].
    pub(crate) fn write_blob_bytes(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, ImageError> {
        let digest = super::digest_bytes(bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {expected}"),
                expected: expected.to_string(),
                actual: digest,
            });
        }
        if !self.has_blob(&digest)? {
            self.write_blob(&mut &bytes[..], Some(&digest), Path::new("<memory>"))?;
        }
        Ok(digest)
    }

    /// Reads a whole blob, checking its digest again (blobs read this way are small: manifests and configs).
    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest)?;
        let bytes = fs::read(&path).map_err(ImageError::io(&path))?;
        let actual = super::digest_bytes(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: path.display().to_string(),
                expected: digest.into(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Unpacks a layer (from its blob, which must be present) unless it already is. Returns its size.
    pub(crate) fn ensure_layer(&self, digest: &str, diff_id: &str) -> Result<u64, ImageError> {
        let dest = self.layer_path(diff_id)?;
        if dest.exists() {
            let unpacked = self.unpacked_sizes().get(diff_id).copied();
            return Ok(match unpacked {
                Some(size) => size,
                None => self.known_layer_size(diff_id)?.unwrap_or_else(|| du(&dest)),
            });
        }
        let blob = self.blob_path(digest)?;
        let tmp = self.tmp_dir();
        let work = tempfile::Builder::new().prefix("layer-").tempdir_in(&tmp).map_err(ImageError::io(&tmp))?;
        let root = work.path().join("root");
        fs::create_dir(&root).map_err(ImageError::io(&root))?;
        let started = std::time::Instant::now();
        let size = unpack::unpack_layer(&blob, diff_id, &root)?;
        match fs::rename(&root, &dest) {
            Ok(()) => {}
            // Another pull unpacked the same layer meanwhile: theirs is as good as ours.
            Err(e) if dest.exists() => tracing::debug!(layer = diff_id, error = %e, "layer unpacked concurrently"),
            Err(e) => return Err(ImageError::io(&dest)(e)),
        }
        tracing::debug!(layer = diff_id, size, elapsed = ?started.elapsed(), "layer unpacked");
        self.unpacked_sizes().insert(diff_id.to_string(), size);
        Ok(size)
    }

    fn unpacked_sizes(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u64>> {
        self.inner.unpacked_sizes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn known_layer_size(&self, diff_id: &str) -> Result<Option<u64>, ImageError> {
        let _lock = self.lock_index(false)?;
        let index = self.read_index()?;
        Ok(index.images.values().flat_map(|i| &i.layers).find(|l| l.diff_id == diff_id).map(|l| l.size))
    }

    /// Records an image whose manifest blob is present: reads its config, unpacks its layers (their blobs must be
    /// present) and names it with `references` (normalised tags, moved here from any image that had them) and
    /// `repo_digests`. The caller holds the shared gc lock.
    pub(crate) fn commit_image(
        &self,
        manifest_digest: &str,
        index_digest: Option<&str>,
        references: &[String],
        repo_digests: &[String],
    ) -> Result<cri::Image, ImageError> {
        let what = format!("manifest {manifest_digest}");
        let manifest = match oci::parse_manifest_or_index(&self.read_blob(manifest_digest)?, &what)? {
            ManifestKind::Manifest(m) => m,
            ManifestKind::Index(_) => return Err(ImageError::invalid(what, "is an index, not an image manifest")),
        };
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config: ConfigFile = serde_json::from_slice(&config_bytes)
            .map_err(ImageError::json(format!("config {}", manifest.config.digest)))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::invalid(
                what,
                format!("{} layers but {} diff_ids in its config", manifest.layers.len(), config.rootfs.diff_ids.len()),
            ));
        }
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if !oci::is_layer_media_type(&layer.media_type) {
                return Err(ImageError::UnsupportedMediaType {
                    digest: layer.digest.clone(),
                    media_type: layer.media_type.clone(),
                });
            }
            let size = self.ensure_layer(&layer.digest, diff_id)?;
            layers.push(LayerRecord { digest: layer.digest.clone(), diff_id: diff_id.clone(), size });
        }
        let record = ImageRecord {
            id: manifest.config.digest.clone(),
            manifest: manifest_digest.to_string(),
            index: index_digest.map(str::to_string),
            layers,
            config: config.to_cri(),
            references: Vec::new(),
            repo_digests: Vec::new(),
        };
        let _lock = self.lock_index(true)?;
        let mut index = self.read_index()?;
        for other in index.images.values_mut() {
            other.references.retain(|r| !references.contains(r));
        }
        let entry = index.images.entry(record.id.clone()).or_insert(record);
        // The same config can arrive through another manifest (recompressed layers): the latest one wins.
        entry.manifest = manifest_digest.to_string();
        if index_digest.is_some() {
            entry.index = index_digest.map(str::to_string);
        }
        for reference in references {
            if !entry.references.contains(reference) {
                entry.references.push(reference.clone());
            }
        }
        for digest in repo_digests {
            if !entry.repo_digests.contains(digest) {
                entry.repo_digests.push(digest.clone());
            }
        }
        let image = entry.to_cri();
        self.write_index(&index)?;
        tracing::info!(id = %image.id, references = ?image.repo_tags, "image recorded");
        Ok(image)
    }

    /// Every image.
    pub fn list(&self) -> Result<Vec<cri::Image>, ImageError> {
        let _lock = self.lock_index(false)?;
        Ok(self.read_index()?.images.values().map(ImageRecord::to_cri).collect())
    }

    /// The image a string names: a reference (short or normalised, by tag or digest), a full ID (`sha256:...`,
    /// or its 64 hexadecimal digits) or an unambiguous ID prefix. `None` when nothing matches.
    pub fn resolve(&self, reference_or_id: &str) -> Result<Option<cri::Image>, ImageError> {
        let _lock = self.lock_index(false)?;
        let index = self.read_index()?;
        Ok(find(&index, reference_or_id)?.map(|(id, _)| index.images[&id].to_cri()))
    }

    /// The unpacked layer directories of an image (named as [`ImageStore::resolve`] accepts), bottom layer first:
    /// the lower directories of its overlay root filesystem.
    pub fn rootfs_layers(&self, image_id: &str) -> Result<Vec<PathBuf>, ImageError> {
        let _lock = self.lock_index(false)?;
        let index = self.read_index()?;
        let (id, _) = find(&index, image_id)?.ok_or_else(|| ImageError::NotFound(image_id.to_string()))?;
        let mut layers = Vec::new();
        for layer in &index.images[&id].layers {
            let path = self.layer_path(&layer.diff_id)?;
            // Only a hand-made change to the store gets here; better said now than as a failed mount.
            if !path.is_dir() {
                return Err(ImageError::invalid(&id, format!("layer {} is missing from the store", layer.diff_id)));
            }
            layers.push(path);
        }
        Ok(layers)
    }

    /// Removes what a string names: a reference loses its tag (or digest) and the image goes once it has no tag
    /// left (or, named only by digests, no digest left); an ID removes the image with all its references. Content nothing refers to any more is
    /// collected unless another process is writing to the store (a later collection takes it then).
    pub fn remove(&self, reference_or_id: &str) -> Result<RemoveOutcome, ImageError> {
        let outcome = {
            let _lock = self.lock_index(true)?;
            let mut index = self.read_index()?;
            let (id, named) =
                find(&index, reference_or_id)?.ok_or_else(|| ImageError::NotFound(reference_or_id.to_string()))?;
            let mut outcome = RemoveOutcome::default();
            let by_id = matches!(named, Named::Id);
            let by_tag = matches!(named, Named::Tag(_));
            let record = index.images.get_mut(&id).ok_or_else(|| ImageError::NotFound(id.clone()))?;
            match named {
                Named::Tag(tag) => {
                    record.references.retain(|r| *r != tag);
                    outcome.untagged.push(tag);
                }
                Named::Digest(digest) => {
                    record.repo_digests.retain(|r| *r != digest);
                    outcome.untagged.push(digest);
                }
                Named::Id => {}
            }
            // As Docker does: the last tag takes the image (and its digests) with it; an image named only by
            // digests goes with its last digest.
            let gone = by_id || (record.references.is_empty() && (by_tag || record.repo_digests.is_empty()));
            if gone && let Some(record) = index.images.remove(&id) {
                outcome.untagged.extend(record.references);
                outcome.untagged.extend(record.repo_digests);
                outcome.deleted = Some(id);
            }
            self.write_index(&index)?;
            outcome
        };
        if outcome.deleted.is_some() {
            if let Some(_gc) = self.try_lock_gc()? {
                self.collect_locked()?;
            } else {
                tracing::debug!("store busy: content of the removed image is left for the next collection");
            }
        }
        Ok(outcome)
    }

    /// Removes every image whose ID is not in `keep`, then every blob and layer directory no image refers to, and
    /// leftovers of interrupted writes. Waits for running pulls and imports to finish first.
    ///
    /// Layer directories are overlay lower layers: `keep` must hold every image a mounted root filesystem uses.
    pub fn prune(&self, keep: &HashSet<String>) -> Result<PruneReport, ImageError> {
        let _gc = self.lock_gc()?;
        let mut removed = Vec::new();
        {
            let _lock = self.lock_index(true)?;
            let mut index = self.read_index()?;
            index.images.retain(|id, _| {
                let kept = keep.contains(id);
                if !kept {
                    removed.push(id.clone());
                }
                kept
            });
            self.write_index(&index)?;
        }
        let mut report = self.collect_locked()?;
        report.images_removed = removed;
        Ok(report)
    }

    /// Removes every blob and layer directory no image refers to, and leftovers of interrupted writes; no image is
    /// removed. Waits for running pulls and imports to finish first.
    pub fn collect_garbage(&self) -> Result<PruneReport, ImageError> {
        let _gc = self.lock_gc()?;
        self.collect_locked()
    }

    /// Garbage collection proper; the caller holds the exclusive gc lock.
    fn collect_locked(&self) -> Result<PruneReport, ImageError> {
        let (blobs, layers) = {
            let _lock = self.lock_index(false)?;
            let index = self.read_index()?;
            let mut blobs = HashSet::new();
            let mut layers = HashSet::new();
            for image in index.images.values() {
                blobs.insert(sha256_hex(&image.id)?.to_string());
                blobs.insert(sha256_hex(&image.manifest)?.to_string());
                if let Some(list) = &image.index {
                    blobs.insert(sha256_hex(list)?.to_string());
                }
                for layer in &image.layers {
                    blobs.insert(sha256_hex(&layer.digest)?.to_string());
                    layers.insert(sha256_hex(&layer.diff_id)?.to_string());
                }
            }
            (blobs, layers)
        };
        let mut report = PruneReport::default();
        let blob_dir = self.inner.root.join("blobs/sha256");
        for entry in fs::read_dir(&blob_dir).map_err(ImageError::io(&blob_dir))? {
            let entry = entry.map_err(ImageError::io(&blob_dir))?;
            if !blobs.contains(entry.file_name().to_string_lossy().as_ref()) {
                let path = entry.path();
                report.bytes_freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(ImageError::io(&path))?;
                report.blobs_removed += 1;
            }
        }
        let layer_dir = self.inner.root.join("layers");
        for entry in fs::read_dir(&layer_dir).map_err(ImageError::io(&layer_dir))? {
            let entry = entry.map_err(ImageError::io(&layer_dir))?;
            if !layers.contains(entry.file_name().to_string_lossy().as_ref()) {
                let path = entry.path();
                report.bytes_freed += du(&path);
                // Renamed away first so that a crash halfway leaves nothing half-removed under `layers/`.
                let doomed = self.tmp_dir().join(format!("gone-{}", entry.file_name().to_string_lossy()));
                fs::rename(&path, &doomed).map_err(ImageError::io(&path))?;
                remove_any(&doomed)?;
                report.layers_removed += 1;
            }
        }
        self.clear_tmp()?;
        tracing::info!(?report, "image store garbage collected");
        Ok(report)
    }

    /// Bytes and inodes under the store's root.
    pub fn usage(&self) -> Result<cri::FilesystemUsage, ImageError> {
        let mut seen = HashSet::new();
        let (mut bytes, mut inodes) = (0u64, 0u64);
        let mut stack = vec![self.inner.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                use std::os::unix::fs::MetadataExt;
                if !seen.insert((meta.dev(), meta.ino())) {
                    continue;
                }
                inodes += 1;
                bytes += meta.blocks() * 512;
                if meta.is_dir() {
                    stack.push(entry.path());
                }
            }
        }
        Ok(cri::FilesystemUsage { mountpoint: self.inner.root.clone(), used_bytes: bytes, inodes_used: inodes })
    }
}

/// Finds the image a string names in the index, and how it was named.
fn find(index: &IndexFile, s: &str) -> Result<Option<(String, Named)>, ImageError> {
    if let Some(hex) = s.strip_prefix("sha256:")
        && hex.len() == 64
    {
        return Ok(index.images.contains_key(s).then(|| (s.to_string(), Named::Id)));
    }
    let is_hex = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if is_hex && s.len() == 64 {
        let id = format!("sha256:{s}");
        return Ok(index.images.contains_key(&id).then_some((id, Named::Id)));
    }
    match Reference::parse(s) {
        Ok(reference) => {
            if let Some(digest) = reference.digest() {
                let by_digest = reference.with_digest(digest);
                for image in index.images.values() {
                    if image.repo_digests.contains(&by_digest) {
                        return Ok(Some((image.id.clone(), Named::Digest(by_digest))));
                    }
                }
            } else if let Some(tagged) = reference.tagged() {
                for image in index.images.values() {
                    if image.references.contains(&tagged) {
                        return Ok(Some((image.id.clone(), Named::Tag(tagged))));
                    }
                }
            }
        }
        // Not a reference: perhaps an ID prefix.
        Err(source) if !(is_hex || s.starts_with("sha256:")) => {
            return Err(ImageError::InvalidReference { reference: s.to_string(), source });
        }
        Err(_) => {}
    }
    let prefix = s.strip_prefix("sha256:").unwrap_or(s);
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Ok(None);
    }
    let matches: Vec<&String> =
        index.images.keys().filter(|id| id.strip_prefix("sha256:").is_some_and(|h| h.starts_with(prefix))).collect();
    match matches.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(((*id).clone(), Named::Id))),
        many => Err(ImageError::AmbiguousId { prefix: s.to_string(), matches: many.len() }),
    }
}

/// Removes a file or a directory tree, whichever `path` is.
fn remove_any(path: &Path) -> Result<(), ImageError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(ImageError::io(path))
}

/// Bytes of regular files below `dir`, each inode counted once.
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && seen.insert(meta.ino()) {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id_hex: char, refs: &[&str]) -> ImageRecord {
        ImageRecord {
            id: format!("sha256:{}", id_hex.to_string().repeat(64)),
            manifest: format!("sha256:{}", "0".repeat(64)),
            index: None,
            layers: Vec::new(),
            config: Default::default(),
            references: refs.iter().map(|r| r.to_string()).collect(),
            repo_digests: Vec::new(),
        }
    }

    fn index_of(records: Vec<ImageRecord>) -> IndexFile {
        IndexFile { version: 1, images: records.into_iter().map(|r| (r.id.clone(), r)).collect() }
    }

    #[test]
    fn images_are_found_by_short_and_normalised_references_ids_and_prefixes() {
        let mut b = record('b', &["docker.io/library/busybox:latest"]);
        b.id = format!("sha256:ab{}", "b".repeat(62));
        let index = index_of(vec![record('a', &["localhost:5000/x:1"]), b.clone()]);
        let id = |s: &str| find(&index, s).unwrap().map(|(id, _)| id);
        assert_eq!(id("busybox").as_deref(), Some(b.id.as_str()));
        assert_eq!(id("docker.io/library/busybox:latest").as_deref(), Some(b.id.as_str()));
        assert_eq!(id("localhost:5000/x:1").as_deref(), Some(index.images.keys().next().unwrap().as_str()));
        assert_eq!(id(&b.id).as_deref(), Some(b.id.as_str()));
        assert_eq!(id(&b.id[7..]).as_deref(), Some(b.id.as_str()));
        assert_eq!(id("abb").as_deref(), Some(b.id.as_str()), "an unambiguous ID prefix");
        assert_eq!(id("sha256:abb").as_deref(), Some(b.id.as_str()));
        assert!(matches!(find(&index, "a"), Err(ImageError::AmbiguousId { matches: 2, .. })));
        assert_eq!(id("nginx"), None);
        assert!(matches!(find(&index, "Not/Valid"), Err(ImageError::InvalidReference { .. })));
    }
}
