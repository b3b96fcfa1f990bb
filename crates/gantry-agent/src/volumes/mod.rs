//! A pod's volumes on the node, set up as the kubelet sets them up, under `DATA/pods/<uid>/volumes/<plugin>/<volume>`
//! with the kubelet's plugin names (`kubernetes.io~empty-dir`, `kubernetes.io~configmap`, ...).
//!
//! - `emptyDir`: a directory (mode 0777) that lives as long as the pod, across container restarts;
//!   `medium: Memory` is a tmpfs. `sizeLimit` on disk is not enforced by a mount: the kubelet enforces it by
//!   evicting the pod later, which this node does not do yet.
//! - `configMap`, `secret`, `projected`, `downwardAPI`: files written by [`atomic::write`], refreshed on each
//!   [`VolumeManager::prepare`] (only when contents change). Secret and projected volumes sit on a tmpfs so
//!   their contents never reach the disk, as with the kubelet.
//! - `hostPath`: only the `type` check (and creation for `DirectoryOrCreate`/`FileOrCreate`).
//! - Every other volume type (persistentVolumeClaim, nfs, csi, ephemeral, image, ...) fails with
//!   [`SetUpError::Unsupported`], and `serviceAccountToken` projections with
//!   [`SetUpError::UnsupportedProjection`].
//!
//! Invariant: nothing under a pod's volumes directory is removed while a mount remains under it.

pub mod atomic;
pub mod mounts;
pub mod subpath;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use gantry_api::validation::quantity::Quantity;
use gantry_runtime::cri::Mount;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume, VolumeProjection,
};
use kube::{Api, Client};

use crate::downward::{self, DownwardError, NodeAllocatable};
use atomic::{AtomicError, FileProjection, Payload};
use subpath::{ResolveError, SubPathError};

pub use atomic::DATA_DIR;

/// Directory of `emptyDir` volumes under a pod's `volumes/`.
pub const EMPTY_DIR_PLUGIN: &str = "kubernetes.io~empty-dir";
/// Directory of `configMap` volumes.
pub const CONFIGMAP_PLUGIN: &str = "kubernetes.io~configmap";
/// Directory of `secret` volumes.
pub const SECRET_PLUGIN: &str = "kubernetes.io~secret";
/// Directory of `projected` volumes.
pub const PROJECTED_PLUGIN: &str = "kubernetes.io~projected";
/// Directory of `downwardAPI` volumes.
pub const DOWNWARD_API_PLUGIN: &str = "kubernetes.io~downward-api";

/// The mode of files in configMap, secret, projected and downwardAPI volumes when the pod does not say
/// (the API server's default, 0644).
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// Why one volume could not be set up; the texts are the kubelet's where it has one, so that
/// `FailedMount` events read the same.
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    /// A ConfigMap that is not optional does not exist.
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound {
        /// Its name.
        name: String,
    },
    /// A Secret that is not optional does not exist.
    #[error("secret {name:?} not found")]
    SecretNotFound {
        /// Its name.
        name: String,
    },
    /// An item names a key the ConfigMap does not have.
    #[error("configmap references non-existent config key: {key}")]
    ConfigMapKeyNotFound {
        /// The key.
        key: String,
    },
    /// An item names a key the Secret does not have.
    #[error("references non-existent secret key: {key}")]
    SecretKeyNotFound {
        /// The key.
        key: String,
    },
    /// Reading a ConfigMap or Secret failed for another reason than its absence.
    #[error("couldn't get {kind} {namespace}/{name}: {source}")]
    Api {
        /// `configMap` or `secret`.
        kind: &'static str,
        /// The pod's namespace.
        namespace: String,
        /// The object.
        name: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A downward API item could not be resolved.
    #[error(transparent)]
    Downward(#[from] DownwardError),
    /// Writing the files failed, or an item's path is not safe.
    #[error(transparent)]
    Files(#[from] AtomicError),
    /// A volume type this node does not support.
    #[error("volume type {kind} is not supported by this node")]
    Unsupported {
        /// The field name of the volume source (`persistentVolumeClaim`, `nfs`, ...).
        kind: &'static str,
    },
    /// A projected volume source this node does not support.
    #[error("projected volume source {kind} is not supported by this node{reason}")]
    UnsupportedProjection {
        /// The field name of the source (`serviceAccountToken`, ...).
        kind: &'static str,
        /// Why, when there is more to say.
        reason: &'static str,
    },
    /// An `emptyDir` medium other than the default and `Memory` (hugepages).
    #[error("emptyDir medium {medium:?} is not supported by this node")]
    UnsupportedMedium {
        /// The medium.
        medium: String,
    },
    /// The volume's name cannot name a directory (the API server only admits DNS labels).
    #[error("volume name {name:?} cannot name a directory")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// A `hostPath` is not of the `type` the pod asks for.
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType {
        /// The path.
        path: String,
        /// What it should have been (`directory`, `file`, `socket file`, ...).
        expected: &'static str,
    },
    /// A `hostPath` `type` the API does not define.
    #[error("{value} is an invalid volume type")]
    InvalidHostPathType {
        /// The type given.
        value: String,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Mounting a tmpfs failed.
    #[error("mounting tmpfs on {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The error.
        #[source]
        source: nix::errno::Errno,
    },
    /// The blocking task doing the file work panicked or was cancelled.
    #[error("volume setup task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Failures of the volume manager.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// One volume could not be set up; the text is the kubelet's `FailedMount` event message.
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    SetUp {
        /// The volume's name.
        volume: String,
        /// Why.
        #[source]
        source: SetUpError,
    },
    /// The pod has no usable UID (its files are kept by UID).
    #[error("pod UID {uid:?} cannot name a directory")]
    InvalidUid {
        /// The UID as given.
        uid: String,
    },
    /// A volumeMount names a volume the pod does not have (or that was not prepared).
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    UnknownVolume {
        /// The volume named.
        volume: String,
        /// The container.
        container: String,
    },
    /// A container name that cannot name a directory (the API server only admits DNS labels).
    #[error("container name {name:?} cannot name a directory")]
    InvalidContainerName {
        /// The name.
        name: String,
    },
    /// A `subPath` or `subPathExpr` is refused before touching the filesystem.
    #[error(transparent)]
    SubPath(#[from] SubPathError),
    /// A missing subPath directory could not be created.
    #[error("failed to create subPath directory for volumeMount {mount:?} of container {container:?}")]
    SubPathCreate {
        /// The volumeMount's name.
        mount: String,
        /// The container.
        container: String,
        /// Details (kept out of the message, as the kubelet keeps host details out of what users see).
        #[source]
        source: ResolveError,
    },
    /// A subPath could not be resolved inside its volume (for instance a symlink leads out).
    #[error("failed to prepare subPath for volumeMount {mount:?} of container {container:?}")]
    SubPathPrepare {
        /// The volumeMount's name.
        mount: String,
        /// The container.
        container: String,
        /// Details.
        #[source]
        source: ResolveError,
    },
    /// Unmounting during teardown failed.
    #[error("unmounting {path}: {source}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// The error.
        #[source]
        source: nix::errno::Errno,
    },
    /// A mount remains after unmounting; the directory is left alone rather than deleting through it.
    #[error("{path} is still mounted; not removing the pod's volumes")]
    StillMounted {
        /// The mount point.
        path: PathBuf,
    },
    /// A filesystem operation during teardown failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The blocking teardown task panicked or was cancelled.
    #[error("volume teardown task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// What kind of volume a prepared volume is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeKind {
    /// `emptyDir` on disk.
    EmptyDir,
    /// `emptyDir` with `medium: Memory` (a tmpfs).
    MemoryEmptyDir,
    /// `configMap`.
    ConfigMap,
    /// `secret` (on a tmpfs).
    Secret,
    /// `projected` (on a tmpfs).
    Projected,
    /// `downwardAPI`.
    DownwardApi,
    /// `hostPath`.
    HostPath,
}

/// One volume, ready to be mounted into containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedVolume {
    /// Where it is on the node.
    pub host_path: PathBuf,
    /// Its kind.
    pub kind: VolumeKind,
    /// Mounted read-only whatever the volumeMount says (configMap, secret, projected, downwardAPI: the kubelet
    /// never lets containers write into files it manages).
    pub read_only: bool,
}

/// The volumes of one pod after [`VolumeManager::prepare`], by volume name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodVolumes {
    volumes: BTreeMap<String, PreparedVolume>,
}

impl PodVolumes {
    /// The volume named `name`.
    pub fn get(&self, name: &str) -> Option<&PreparedVolume> {
        self.volumes.get(name)
    }

    /// Every volume, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PreparedVolume)> {
        self.volumes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many volumes there are.
    pub fn len(&self) -> usize {
        self.volumes.len()
    }

    /// Whether the pod has no volumes.
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }
}

/// Sets up, refreshes and removes pods' volumes. Cheap to clone; clones share the node allocatable.
#[derive(Clone)]
pub struct VolumeManager {
    inner: Arc<Inner>,
}

struct Inner {
    pods_dir: PathBuf,
    client: Client,
    allocatable: RwLock<NodeAllocatable>,
}

impl VolumeManager {
    /// A manager keeping pods' volumes under `pods_dir` (`DATA/pods`) and reading ConfigMaps and Secrets
    /// through `client`.
    pub fn new(pods_dir: PathBuf, client: Client) -> VolumeManager {
        VolumeManager {
            inner: Arc::new(Inner { pods_dir, client, allocatable: RwLock::new(NodeAllocatable::default()) }),
        }
    }

    /// Sets the node's allocatable resources: the default of `resourceFieldRef` limits in downwardAPI
    /// volumes, and the upper bound of memory-backed volumes. Until set, memory-backed volumes without a
    /// limit get the kernel's default tmpfs size and unset limits read as 0.
    pub fn set_node_allocatable(&self, allocatable: NodeAllocatable) {
        match self.inner.allocatable.write() {
            Ok(mut guard) => *guard = allocatable,
            Err(poisoned) => *poisoned.into_inner() = allocatable,
        }
    }

    fn allocatable(&self) -> NodeAllocatable {
        match self.inner.allocatable.read() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// `DATA/pods/<uid>/volumes`.
    pub fn volumes_dir(&self, pod_uid: &str) -> Result<PathBuf, VolumeError> {
        if !is_path_component(pod_uid) {
            return Err(VolumeError::InvalidUid { uid: pod_uid.to_string() });
        }
        Ok(self.inner.pods_dir.join(pod_uid).join("volumes"))
    }

    /// Sets up every volume of the pod. Idempotent: called again, it refreshes configMap, secret, projected
    /// and downwardAPI contents (rewriting only what changed, swapped in atomically) and leaves the rest alone.
    /// Every volume is attempted; the first failure is returned (the others are logged), and the caller
    /// retries later as the kubelet does. Calls for one pod must not overlap (its pod worker serialises them);
    /// calls for different pods may.
    pub async fn prepare(&self, pod: &Pod, pod_ips: &[String]) -> Result<PodVolumes, VolumeError> {
        // Files do not report pod IPs today; the parameter keeps the call stable for when they do.
        let _ = pod_ips;
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        let base = self.volumes_dir(uid)?;
        let mut prepared = PodVolumes::default();
        let mut first_error = None;
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            match self.prepare_one(pod, &base, volume).await {
                Ok(ready) => {
                    prepared.volumes.insert(volume.name.clone(), ready);
                }
                Err(source) => {
                    let error = VolumeError::SetUp { volume: volume.name.clone(), source };
                    tracing::warn!(
                        pod = pod.metadata.name.as_deref().unwrap_or(""),
                        namespace = pod.metadata.namespace.as_deref().unwrap_or(""),
                        %error,
                        "volume setup failed"
                    );
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(prepared),
        }
    }

    async fn prepare_one(&self, pod: &Pod, base: &Path, volume: &Volume) -> Result<PreparedVolume, SetUpError> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let fs_group = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group)
            .and_then(|g| u32::try_from(g).ok());
        let name = &volume.name;
        if !is_path_component(name) {
            return Err(SetUpError::InvalidName { name: name.clone() });
        }
        if let Some(kind) = unsupported_kind(volume) {
            return Err(SetUpError::Unsupported { kind });
        }
        if let Some(source) = &volume.host_path {
            let path = source.path.clone();
            let type_ = source.type_.clone().unwrap_or_default();
            let checked = path.clone();
            blocking(move || check_host_path(&checked, &type_)).await?;
            return Ok(PreparedVolume { host_path: PathBuf::from(path), kind: VolumeKind::HostPath, read_only: false });
        }
        if let Some(source) = &volume.config_map {
            let optional = source.optional == Some(true);
            let found = self.get_configmap(namespace, &source.name).await?;
            let payload = configmap_payload(
                &source.name,
                found.as_ref(),
                source.items.as_deref(),
                mode_or_default(source.default_mode),
                optional,
            )?;
            let dir = base.join(CONFIGMAP_PLUGIN).join(name);
            return self.write_files(dir, None, payload, fs_group, VolumeKind::ConfigMap).await;
        }
        if let Some(source) = &volume.secret {
            let secret_name = source.secret_name.clone().unwrap_or_default();
            let optional = source.optional == Some(true);
            let found = self.get_secret(namespace, &secret_name).await?;
            let payload = secret_payload(
                &secret_name,
                found.as_ref(),
                source.items.as_deref(),
                mode_or_default(source.default_mode),
                optional,
            )?;
            let dir = base.join(SECRET_PLUGIN).join(name);
            let size = memory_backed_size(pod, self.allocatable().memory_bytes, None);
            return self.write_files(dir, Some(size), payload, fs_group, VolumeKind::Secret).await;
        }
        if let Some(source) = &volume.projected {
            let default_mode = mode_or_default(source.default_mode);
            let mut payload = Payload::new();
            for projection in source.sources.iter().flatten() {
                payload.extend(self.projection_payload(pod, namespace, projection, default_mode).await?);
            }
            let dir = base.join(PROJECTED_PLUGIN).join(name);
            let size = memory_backed_size(pod, self.allocatable().memory_bytes, None);
            return self.write_files(dir, Some(size), payload, fs_group, VolumeKind::Projected).await;
        }
        if let Some(source) = &volume.downward_api {
            let payload = downward_payload(
                pod,
                source.items.as_deref(),
                mode_or_default(source.default_mode),
                &self.allocatable(),
            )?;
            let dir = base.join(DOWNWARD_API_PLUGIN).join(name);
            return self.write_files(dir, None, payload, fs_group, VolumeKind::DownwardApi).await;
        }
        // No source at all is an emptyDir, as the API server defaults it.
        let empty_dir = volume.empty_dir.clone().unwrap_or_default();
        let dir = base.join(EMPTY_DIR_PLUGIN).join(name);
        let (memory, kind) = match empty_dir.medium.as_deref().unwrap_or("") {
            "" => (None, VolumeKind::EmptyDir),
            "Memory" => {
                let size = memory_backed_size(pod, self.allocatable().memory_bytes, empty_dir.size_limit.as_ref());
                (Some(size), VolumeKind::MemoryEmptyDir)
            }
            other => return Err(SetUpError::UnsupportedMedium { medium: other.to_string() }),
        };
        let host_path = dir.clone();
        blocking(move || {
            let created = setup_dir(&dir, memory)?;
            if let (true, Some(gid)) = (created, fs_group) {
                apply_fs_group(&dir, gid, false)?;
            }
            Ok(())
        })
        .await?;
        Ok(PreparedVolume { host_path, kind, read_only: false })
    }

    async fn projection_payload(
        &self,
        pod: &Pod,
        namespace: &str,
        projection: &VolumeProjection,
        default_mode: u32,
    ) -> Result<Payload, SetUpError> {
        if let Some(source) = &projection.config_map {
            let found = self.get_configmap(namespace, &source.name).await?;
            let optional = source.optional == Some(true);
            return configmap_payload(&source.name, found.as_ref(), source.items.as_deref(), default_mode, optional);
        }
        if let Some(source) = &projection.secret {
            let found = self.get_secret(namespace, &source.name).await?;
            let optional = source.optional == Some(true);
            return secret_payload(&source.name, found.as_ref(), source.items.as_deref(), default_mode, optional);
        }
        if let Some(source) = &projection.downward_api {
            return downward_payload(pod, source.items.as_deref(), default_mode, &self.allocatable());
        }
        let (kind, reason) = if projection.service_account_token.is_some() {
            ("serviceAccountToken", " yet: the API server does not issue service account tokens (no TokenRequest)")
        } else if projection.cluster_trust_bundle.is_some() {
            ("clusterTrustBundle", "")
        } else if projection.pod_certificate.is_some() {
            ("podCertificate", "")
        } else {
            return Ok(Payload::new());
        };
        Err(SetUpError::UnsupportedProjection { kind, reason })
    }

    async fn write_files(
        &self,
        dir: PathBuf,
        memory: Option<Option<i64>>,
        payload: Payload,
        fs_group: Option<u32>,
        kind: VolumeKind,
    ) -> Result<PreparedVolume, SetUpError> {
        let host_path = dir.clone();
        blocking(move || {
            setup_dir(&dir, memory)?;
            let set_perms = |target: &Path| match fs_group {
                Some(gid) => apply_fs_group(target, gid, true),
                None => Ok(()),
            };
            atomic::write(&dir, &payload, &set_perms)?;
            Ok(())
        })
        .await?;
        Ok(PreparedVolume { host_path, kind, read_only: true })
    }

    async fn get_configmap(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, SetUpError> {
        let api: Api<ConfigMap> = Api::namespaced(self.inner.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| SetUpError::Api {
            kind: "configMap",
            namespace: namespace.to_string(),
            name: name.to_string(),
            source: Box::new(source),
        })
    }

    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SetUpError> {
        let api: Api<Secret> = Api::namespaced(self.inner.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| SetUpError::Api {
            kind: "secret",
            namespace: namespace.to_string(),
            name: name.to_string(),
            source: Box::new(source),
        })
    }

    /// The CRI mounts of one container: its volumeMounts in order, with `subPath` (or `subPathExpr` expanded
    /// with the container's environment `env`) resolved inside the volume and bind-mounted (without following
    /// symlinks) under [`VolumeManager::subpaths_dir`], whose path the mount then names; [`teardown`] removes
    /// those binds. It does a few quick filesystem calls and one bind mount per subPath.
    ///
    /// [`teardown`]: VolumeManager::teardown A volumeMount naming a volume
    /// not in `volumes` is an error. Only the pod's volumes: `/etc/hosts` and the termination log are the
    /// worker's. Mount propagation and recursive read-only are not expressed (the CRI mount has no field for
    /// them).
    pub fn mounts_for(
        &self,
        pod: &Pod,
        container: &Container,
        volumes: &PodVolumes,
        env: &[(String, String)],
    ) -> Result<Vec<Mount>, VolumeError> {
        let mut mounts = Vec::new();
        for (index, volume_mount) in container.volume_mounts.iter().flatten().enumerate() {
            let volume = volumes.get(&volume_mount.name).ok_or_else(|| VolumeError::UnknownVolume {
                volume: volume_mount.name.clone(),
                container: container.name.clone(),
            })?;
            let sub_path = match volume_mount.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
                Some(expr) => subpath::expand_expr(expr, env)?,
                None => volume_mount.sub_path.clone().unwrap_or_default(),
            };
            let host_path = if sub_path.is_empty() {
                volume.host_path.clone()
            } else {
                subpath::check(&sub_path)?;
                if !is_path_component(&container.name) {
                    return Err(VolumeError::InvalidContainerName { name: container.name.clone() });
                }
                let uid = pod.metadata.uid.as_deref().unwrap_or("");
                let target =
                    self.subpaths_dir(uid)?.join(&volume_mount.name).join(&container.name).join(index.to_string());
                let resolved = subpath::resolve(&volume.host_path, &sub_path);
                resolved
                    .and_then(|resolved| {
                        subpath::bind_safely(&volume.host_path, &resolved, &target).map_err(|e| match e {
                            // Creating the mount point is preparation, not creation of the subPath.
                            ResolveError::Create { path, source } => ResolveError::Resolve { path, source },
                            other => other,
                        })
                    })
                    .map_err(|source| {
                        tracing::warn!(
                            pod = pod.metadata.name.as_deref().unwrap_or(""),
                            container = container.name,
                            volume_mount = volume_mount.name,
                            error = %source,
                            "subPath could not be prepared"
                        );
                        let (mount, container) = (volume_mount.name.clone(), container.name.clone());
                        match source {
                            ResolveError::Create { .. } => VolumeError::SubPathCreate { mount, container, source },
                            _ => VolumeError::SubPathPrepare { mount, container, source },
                        }
                    })?;
                target
            };
            mounts.push(Mount {
                container_path: volume_mount.mount_path.clone(),
                host_path,
                readonly: volume_mount.read_only == Some(true) || volume.read_only,
            });
        }
        Ok(mounts)
    }

    /// Unmounts every mount under `DATA/pods/<uid>/volume-subpaths` (subPath binds) and
    /// `DATA/pods/<uid>/volumes` (tmpfs volumes) and removes both directories. Safe to call twice and after a
    /// crash left things half done; a mount that will not go away leaves the directory in place and is an
    /// error. The pod's directory itself is the worker's to remove.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        let dirs = [self.subpaths_dir(pod_uid)?, self.volumes_dir(pod_uid)?];
        tokio::task::spawn_blocking(move || dirs.iter().try_for_each(|dir| teardown_dir(dir)))
            .await
            .map_err(VolumeError::Task)?
    }

    /// `DATA/pods/<uid>/volume-subpaths`: where subPath mounts are bound, per volumeMount name, container and
    /// the volumeMount's index, as the kubelet lays them out.
    pub fn subpaths_dir(&self, pod_uid: &str) -> Result<PathBuf, VolumeError> {
        Ok(self.volumes_dir(pod_uid)?.with_file_name("volume-subpaths"))
    }
}

/// Whether `name` can be used as one path component without leading elsewhere.
fn is_path_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SetUpError> + Send + 'static,
) -> Result<T, SetUpError> {
    tokio::task::spawn_blocking(work).await.map_err(SetUpError::Task)?
}

fn mode_or_default(mode: Option<i32>) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(DEFAULT_FILE_MODE)
}

fn item_mode(item: &KeyToPath, default_mode: u32) -> u32 {
    item.mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(default_mode)
}

fn unsupported_kind(volume: &Volume) -> Option<&'static str> {
    let v = volume;
    [
        (v.persistent_volume_claim.is_some(), "persistentVolumeClaim"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.csi.is_some(), "csi"),
        (v.image.is_some(), "image"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.fc.is_some(), "fc"),
        (v.rbd.is_some(), "rbd"),
        (v.cephfs.is_some(), "cephfs"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.azure_file.is_some(), "azureFile"),
        (v.cinder.is_some(), "cinder"),
        (v.flocker.is_some(), "flocker"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
    ]
    .into_iter()
    .find_map(|(set, kind)| set.then_some(kind))
}

/// The files of a configMap volume (or projection), as the kubelet lays them out: every key (`data` and
/// `binaryData`) under its own name with `default_mode`, or only the `items` at their paths with their modes.
/// A missing optional ConfigMap gives no files; a missing item key is an error unless the volume is optional.
pub fn configmap_payload(
    name: &str,
    configmap: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, SetUpError> {
    let Some(configmap) = configmap else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(SetUpError::ConfigMapNotFound { name: name.to_string() })
        };
    };
    let lookup = |key: &str| -> Option<Vec<u8>> {
        configmap
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.as_bytes().to_vec())
            .or_else(|| configmap.binary_data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone()))
    };
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in configmap.data.iter().flatten() {
                payload.insert(key.clone(), FileProjection { data: value.as_bytes().to_vec(), mode: default_mode });
            }
            for (key, value) in configmap.binary_data.iter().flatten() {
                payload.insert(key.clone(), FileProjection { data: value.0.clone(), mode: default_mode });
            }
        }
        Some(items) => {
            for item in items {
                match lookup(&item.key) {
                    Some(data) => {
                        payload.insert(item.path.clone(), FileProjection { data, mode: item_mode(item, default_mode) });
                    }
                    None if optional => {}
                    None => return Err(SetUpError::ConfigMapKeyNotFound { key: item.key.clone() }),
                }
            }
        }
    }
    Ok(payload)
}

/// The files of a secret volume (or projection), laid out like [`configmap_payload`].
pub fn secret_payload(
    name: &str,
    secret: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, SetUpError> {
    let Some(secret) = secret else {
        return if optional { Ok(Payload::new()) } else { Err(SetUpError::SecretNotFound { name: name.to_string() }) };
    };
    let empty = BTreeMap::<String, ByteString>::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data {
                payload.insert(key.clone(), FileProjection { data: value.0.clone(), mode: default_mode });
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(value) => {
                        let file = FileProjection { data: value.0.clone(), mode: item_mode(item, default_mode) };
                        payload.insert(item.path.clone(), file);
                    }
                    None if optional => {}
                    None => return Err(SetUpError::SecretKeyNotFound { key: item.key.clone() }),
                }
            }
        }
    }
    Ok(payload)
}

/// The files of a downwardAPI volume (or projection): each item's `fieldRef` (metadata fields, label and
/// annotation maps) or `resourceFieldRef` value, formatted as the kubelet formats them.
pub fn downward_payload(
    pod: &Pod,
    items: Option<&[DownwardAPIVolumeFile]>,
    default_mode: u32,
    allocatable: &NodeAllocatable,
) -> Result<Payload, SetUpError> {
    let mut payload = Payload::new();
    for item in items.into_iter().flatten() {
        let value = if let Some(field) = &item.field_ref {
            downward::metadata_field(pod, &field.field_path)?
        } else if let Some(resource) = &item.resource_field_ref {
            downward::volume_resource_value(pod, resource, allocatable)?
        } else {
            continue;
        };
        let mode = item.mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(default_mode);
        payload.insert(item.path.clone(), FileProjection { data: value.into_bytes(), mode });
    }
    Ok(payload)
}

/// The size of a memory-backed volume, as the kubelet sizes it: the node's allocatable memory, narrowed to the
/// pod's memory limit (when every container has one) and to the volume's `sizeLimit`. `None` (the kernel's
/// default tmpfs size) when none of these is known.
pub fn memory_backed_size(
    pod: &Pod,
    allocatable_memory: i64,
    size_limit: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<i64> {
    let mut size = (allocatable_memory > 0).then_some(allocatable_memory);
    let mut narrow = |candidate: i64| {
        if candidate > 0 && size.is_none_or(|s| candidate <= s) {
            size = Some(candidate);
        }
    };
    if let Some(limit) = pod_memory_limit(pod) {
        narrow(limit);
    }
    if let Some(limit) = size_limit.and_then(|q| Quantity::parse(&q.0).ok()) {
        narrow(limit.value());
    }
    size
}

/// The pod's memory limit as its cgroup gets it: the sum of its containers' limits (sidecars included), at
/// least the largest plain init container's, plus the pod overhead; `None` if any container has no limit.
fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let limit_of = |c: &Container| {
        let quantity = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        Quantity::parse(&quantity.0).ok().map(|q| q.value()).filter(|v| *v > 0)
    };
    let mut sum: i64 = 0;
    for container in &spec.containers {
        sum = sum.saturating_add(limit_of(container)?);
    }
    let mut largest_init: i64 = 0;
    for container in spec.init_containers.iter().flatten() {
        let limit = limit_of(container)?;
        if container.restart_policy.as_deref() == Some("Always") {
            sum = sum.saturating_add(limit);
        } else {
            largest_init = largest_init.max(limit);
        }
    }
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get("memory"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map(|q| q.value())
        .unwrap_or(0);
    Some(sum.max(largest_init).saturating_add(overhead))
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SetUpError {
    let path = path.to_path_buf();
    move |source| SetUpError::Io { op, path, source }
}

/// Creates a volume directory (mode 0777, as the kubelet's emptyDir) and, for `Some(size)`, mounts a tmpfs on
/// it unless one is there. Returns whether the volume is new (created or freshly mounted).
fn setup_dir(dir: &Path, memory: Option<Option<i64>>) -> Result<bool, SetUpError> {
    let existed = dir.is_dir();
    std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    let mode = std::fs::metadata(dir).map_err(io_error("inspecting", dir))?.permissions().mode();
    if mode & 0o777 != 0o777 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
            .map_err(io_error("setting the mode of", dir))?;
    }
    let Some(size) = memory else { return Ok(!existed) };
    let canonical = dir.canonicalize().map_err(io_error("resolving", dir))?;
    if mounts::is_mount_point(&canonical).map_err(io_error("reading mounts for", dir))? {
        return Ok(!existed);
    }
    mounts::mount_tmpfs(&canonical, size).map_err(|source| SetUpError::Mount { path: canonical.clone(), source })?;
    Ok(true)
}

/// Gives the pod's `fsGroup` access to everything under `root`, as the kubelet's volume ownership does:
/// group-owned by `gid`, group-readable (and writable unless `read_only`), directories setgid so new files
/// inherit the group. Symlinks are re-owned but not chmod-ed (that would change their targets).
fn apply_fs_group(root: &Path, gid: u32, read_only: bool) -> Result<(), AtomicError> {
    let io_error = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| AtomicError::Io { op, path, source }
    };
    let mask = if read_only { 0o440 } else { 0o660 };
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(io_error("inspecting", &path))?;
        std::os::unix::fs::lchown(&path, None, Some(gid)).map_err(io_error("changing the group of", &path))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut mode = (meta.mode() & 0o7777) | mask;
        if meta.is_dir() {
            mode |= 0o2110;
            for entry in std::fs::read_dir(&path).map_err(io_error("listing", &path))? {
                pending.push(entry.map_err(io_error("listing", &path))?.path());
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_error("setting the mode of", &path))?;
    }
    Ok(())
}

/// The `hostPath` `type` check, in the kubelet's words; `DirectoryOrCreate` creates a 0755 directory
/// (and its parents), `FileOrCreate` an empty 0644 file (its directory must exist).
pub fn check_host_path(path: &str, type_: &str) -> Result<(), SetUpError> {
    let meta = std::fs::metadata(path).ok();
    // What an existing path must be, per type, and how the kubelet names it when it is not.
    let (is, expected): (fn(&std::fs::Metadata) -> bool, &'static str) = match type_ {
        "" => return Ok(()),
        "DirectoryOrCreate" if meta.is_none() => {
            std::fs::create_dir_all(path).map_err(io_error("creating", Path::new(path)))?;
            return std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .map_err(io_error("setting the mode of", Path::new(path)));
        }
        "FileOrCreate" if meta.is_none() => {
            let mut options = std::fs::OpenOptions::new();
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
            return options
                .write(true)
                .create(true)
                .open(path)
                .map(drop)
                .map_err(io_error("creating", Path::new(path)));
        }
        "DirectoryOrCreate" | "Directory" => (|m| m.is_dir(), "directory"),
        "FileOrCreate" | "File" => (|m| m.is_file(), "file"),
        "Socket" => (|m| m.file_type().is_socket(), "socket file"),
        "CharDevice" => (|m| m.file_type().is_char_device(), "character device"),
        "BlockDevice" => (|m| m.file_type().is_block_device(), "block device"),
        other => return Err(SetUpError::InvalidHostPathType { value: other.to_string() }),
    };
    if meta.as_ref().is_some_and(is) {
        Ok(())
    } else {
        Err(SetUpError::HostPathType { path: path.to_string(), expected })
    }
}

fn teardown_dir(dir: &Path) -> Result<(), VolumeError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| VolumeError::Io { op, path, source }
    };
    let canonical = match dir.canonicalize() {
        Ok(path) => path,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("resolving", dir)(e)),
    };
    // A directory can hold stacked mounts; each round detaches the topmost of every mount point.
    for _ in 0..16 {
        let found = mounts::mounts_under(&canonical).map_err(io("reading mounts under", &canonical))?;
        if found.is_empty() {
            break;
        }
        for mount_point in found {
            mounts::unmount(&mount_point)
                .map_err(|source| VolumeError::Unmount { path: mount_point.clone(), source })?;
        }
    }
    if let Some(left) =
        mounts::mounts_under(&canonical).map_err(io("reading mounts under", &canonical))?.into_iter().next()
    {
        return Err(VolumeError::StillMounted { path: left });
    }
    match std::fs::remove_dir_all(&canonical) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", &canonical)(e)),
    }
}

#[cfg(test)]
mod tests;
