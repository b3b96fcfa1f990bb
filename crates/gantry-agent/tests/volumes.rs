//! Pod volumes on a real filesystem with real tmpfs mounts, fed by ConfigMaps and Secrets from a real API server.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, Container, DownwardAPIProjection, DownwardAPIVolumeFile,
    EmptyDirVolumeSource, HostPathVolumeSource, KeyToPath, ObjectFieldSelector, Pod, PodSecurityContext, PodSpec,
    ProjectedVolumeSource, Secret, SecretProjection, SecretVolumeSource, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

use gantry_agent::volumes::{DATA_DIR, PodVolumes, VolumeError, VolumeManager, mounts};

/// A test's directory; whatever happens, every mount under it is detached before it is removed.
struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    fn new() -> TestDir {
        TestDir { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn mounts(&self) -> Vec<PathBuf> {
        let root = self.dir.path().canonicalize().expect("canonical");
        mounts::mounts_under(&root).expect("mountinfo")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        for _ in 0..4 {
            for mount in self.mounts() {
                let _ = mounts::unmount(&mount);
            }
        }
    }
}

struct Setup {
    // Field order matters: the server stops before its directory goes.
    shutdown: CancellationToken,
    _server: gantry_apiserver::RunningServer,
    client: kube::Client,
    manager: VolumeManager,
    data: TestDir,
    _server_dir: tempfile::TempDir,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn setup() -> Setup {
    let server_dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let server = gantry_apiserver::start_loopback(server_dir.path(), shutdown.clone()).await.expect("server");
    let kubeconfig = Kubeconfig::read_from(server_dir.path().join("kubeconfig")).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let data = TestDir::new();
    let manager = VolumeManager::new(data.path().join("pods"), client.clone());
    Setup { shutdown, _server: server, client, manager, data, _server_dir: server_dir }
}

fn pod(uid: &str, volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{uid}")),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container { name: "app".into(), ..Default::default() }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

fn configmap_volume(name: &str, configmap: &str, items: Option<Vec<KeyToPath>>, optional: bool) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: configmap.into(),
            items,
            optional: Some(optional),
            default_mode: None,
        }),
        ..Default::default()
    }
}

async fn create_configmap(client: &kube::Client, name: &str, data: &[(&str, &str)]) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    };
    api.create(&PostParams::default(), &cm).await.expect("create configmap");
}

async fn replace_configmap(client: &kube::Client, name: &str, data: &[(&str, &str)]) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = api.get(name).await.expect("get configmap");
    cm.data = Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    api.replace(name, &PostParams::default(), &cm).await.expect("replace configmap");
}

async fn create_secret(client: &kube::Client, name: &str, data: &[(&str, &[u8])]) {
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret = Secret {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
        ..Default::default()
    };
    api.create(&PostParams::default(), &secret).await.expect("create secret");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn host_path(volumes: &PodVolumes, name: &str) -> PathBuf {
    volumes.get(name).unwrap_or_else(|| panic!("volume {name}")).host_path.clone()
}

#[tokio::test]
async fn configmap_files_appear_with_their_modes_and_updates_swap_the_data_link() {
    let s = setup().await;
    create_configmap(&s.client, "cm-update", &[("a", "one"), ("b", "two")]).await;
    let items = vec![KeyToPath { key: "a".into(), path: "nested/first".into(), mode: Some(0o600) }];
    let p = pod(
        "uid-cm-update",
        vec![
            configmap_volume("whole", "cm-update", None, false),
            configmap_volume("picked", "cm-update", Some(items), false),
        ],
    );

    let volumes = s.manager.prepare(&p, &[]).await.expect("prepare");
    let whole = host_path(&volumes, "whole");
    assert_eq!(whole, s.data.path().join("pods/uid-cm-update/volumes/kubernetes.io~configmap/whole"));
    assert_eq!(read(&whole.join("a")), "one");
    assert_eq!(read(&whole.join("b")), "two");
    assert_eq!(std::fs::read_link(whole.join("a")).expect("link"), Path::new("..data/a"));
    assert_eq!(mode(&whole.join("a")), 0o644);
    assert_eq!(mode(&whole), 0o777);
    let picked = host_path(&volumes, "picked");
    assert_eq!(read(&picked.join("nested/first")), "one");
    assert_eq!(mode(&picked.join("nested/first")), 0o600);
    assert!(!picked.join("b").exists(), "only the items are written");
    assert!(volumes.get("whole").expect("whole").read_only);

    let first = std::fs::read_link(whole.join(DATA_DIR)).expect("data link");
    s.manager.prepare(&p, &[]).await.expect("prepare unchanged");
    assert_eq!(std::fs::read_link(whole.join(DATA_DIR)).expect("data link"), first, "nothing changed, nothing written");

    replace_configmap(&s.client, "cm-update", &[("a", "changed")]).await;
    s.manager.prepare(&p, &[]).await.expect("prepare after update");
    let second = std::fs::read_link(whole.join(DATA_DIR)).expect("data link");
    assert_ne!(second, first);
    assert!(second.to_string_lossy().starts_with("..20"), "{second:?}");
    assert!(!whole.join(&first).exists(), "the old version is gone");
    assert_eq!(read(&whole.join("a")), "changed");
    assert!(std::fs::symlink_metadata(whole.join("b")).is_err(), "the removed key is gone");
    assert_eq!(read(&picked.join("nested/first")), "changed");

    s.manager.teardown("uid-cm-update").await.expect("teardown");
    assert!(!s.data.path().join("pods/uid-cm-update/volumes").exists());
    s.manager.teardown("uid-cm-update").await.expect("teardown twice");
}

#[tokio::test]
async fn secret_projected_and_memory_volumes_are_tmpfs_and_teardown_unmounts_them() {
    let s = setup().await;
    create_secret(&s.client, "sec-tmpfs", &[("token", b"s3cr3t\x00\xff")]).await;
    create_configmap(&s.client, "cm-tmpfs", &[("setting", "on")]).await;
    let mut p = pod(
        "uid-tmpfs",
        vec![
            Volume {
                name: "creds".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("sec-tmpfs".into()),
                    default_mode: Some(0o400),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "all".into(),
                projected: Some(ProjectedVolumeSource {
                    default_mode: Some(0o440),
                    sources: Some(vec![
                        VolumeProjection {
                            config_map: Some(ConfigMapProjection { name: "cm-tmpfs".into(), ..Default::default() }),
                            ..Default::default()
                        },
                        VolumeProjection {
                            secret: Some(SecretProjection {
                                name: "sec-tmpfs".into(),
                                items: Some(vec![KeyToPath {
                                    key: "token".into(),
                                    path: "auth/token".into(),
                                    mode: None,
                                }]),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        VolumeProjection {
                            downward_api: Some(DownwardAPIProjection {
                                items: Some(vec![DownwardAPIVolumeFile {
                                    path: "labels".into(),
                                    field_ref: Some(ObjectFieldSelector {
                                        field_path: "metadata.labels".into(),
                                        api_version: None,
                                    }),
                                    ..Default::default()
                                }]),
                            }),
                            ..Default::default()
                        },
                    ]),
                }),
                ..Default::default()
            },
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    size_limit: Some(Quantity("16Mi".into())),
                }),
                ..Default::default()
            },
            Volume { name: "disk".into(), empty_dir: Some(Default::default()), ..Default::default() },
        ],
    );
    p.spec.as_mut().expect("spec").security_context =
        Some(PodSecurityContext { fs_group: Some(2345), ..Default::default() });

    let volumes = s.manager.prepare(&p, &[]).await.expect("prepare");
    let creds = host_path(&volumes, "creds");
    let all = host_path(&volumes, "all");
    let scratch = host_path(&volumes, "scratch");
    let disk = host_path(&volumes, "disk");
    assert_eq!(std::fs::read(creds.join("token")).expect("token"), b"s3cr3t\x00\xff");
    // fsGroup: the group owns the file, and it is group-readable on top of the 0400 asked for.
    let token = std::fs::metadata(creds.join("token")).expect("metadata");
    assert_eq!((token.gid(), token.mode() & 0o777), (2345, 0o440));
    assert_eq!(read(&all.join("setting")), "on");
    assert_eq!(std::fs::read(all.join("auth/token")).expect("token"), b"s3cr3t\x00\xff");
    assert_eq!(read(&all.join("labels")), "app=\"web\"");
    assert_eq!(mode(&all.join("setting")), 0o440);
    assert!(disk.is_dir() && !scratch.join("anything").exists());
    std::fs::write(scratch.join("kept"), "across prepares").expect("write to scratch");

    let canonical = |p: &Path| p.canonicalize().expect("canonical");
    let mounted = s.data.mounts();
    for dir in [&creds, &all, &scratch] {
        assert_eq!(mounted.iter().filter(|m| **m == canonical(dir)).count(), 1, "{} in {mounted:?}", dir.display());
    }
    assert!(!mounted.contains(&canonical(&disk)), "a disk emptyDir is no mount");
    let fs = nix::sys::statfs::statfs(&scratch).expect("statfs");
    assert_eq!(fs.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
    let stat = nix::sys::statvfs::statvfs(&scratch).expect("statvfs");
    assert_eq!(stat.blocks() * stat.fragment_size(), 16 << 20, "sizeLimit sets the tmpfs size");

    // Preparing again mounts nothing twice and keeps what containers wrote.
    s.manager.prepare(&p, &[]).await.expect("prepare again");
    assert_eq!(s.data.mounts().len(), 3, "{:?}", s.data.mounts());
    assert_eq!(read(&scratch.join("kept")), "across prepares");

    s.manager.teardown("uid-tmpfs").await.expect("teardown");
    assert!(s.data.mounts().is_empty(), "teardown leaves {:?}", s.data.mounts());
    assert!(!s.data.path().join("pods/uid-tmpfs/volumes").exists());
    s.manager.teardown("uid-tmpfs").await.expect("teardown twice");
}

#[tokio::test]
async fn missing_objects_fail_in_the_kubelet_words_unless_optional() {
    let s = setup().await;
    let p = pod("uid-missing", vec![configmap_volume("cfg", "cm-absent", None, false)]);
    let err = s.manager.prepare(&p, &[]).await.expect_err("missing configmap");
    assert_eq!(err.to_string(), "MountVolume.SetUp failed for volume \"cfg\" : configmap \"cm-absent\" not found");

    let secret = Volume {
        name: "sec".into(),
        secret: Some(SecretVolumeSource { secret_name: Some("sec-absent".into()), ..Default::default() }),
        ..Default::default()
    };
    let err = s.manager.prepare(&pod("uid-missing-secret", vec![secret]), &[]).await.expect_err("missing secret");
    assert_eq!(err.to_string(), "MountVolume.SetUp failed for volume \"sec\" : secret \"sec-absent\" not found");

    // An optional ConfigMap that does not exist gives an empty volume, filled once it appears.
    let optional = pod("uid-optional", vec![configmap_volume("cfg", "cm-later", None, true)]);
    let volumes = s.manager.prepare(&optional, &[]).await.expect("optional missing");
    let dir = host_path(&volumes, "cfg");
    assert!(dir.join(DATA_DIR).is_dir());
    assert_eq!(std::fs::read_dir(dir.join(DATA_DIR)).expect("list").count(), 0);
    create_configmap(&s.client, "cm-later", &[("k", "v")]).await;
    s.manager.prepare(&optional, &[]).await.expect("prepare after create");
    assert_eq!(read(&dir.join("k")), "v");

    // A missing key named by an item.
    create_configmap(&s.client, "cm-keys", &[("k", "v")]).await;
    let items = vec![KeyToPath { key: "other".into(), path: "o".into(), mode: None }];
    let p = pod("uid-key", vec![configmap_volume("cfg", "cm-keys", Some(items), false)]);
    let err = s.manager.prepare(&p, &[]).await.expect_err("missing key");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: other"
    );

    let token = Volume {
        name: "kube-api-access".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = s.manager.prepare(&pod("uid-token", vec![token]), &[]).await.expect_err("token");
    assert!(err.to_string().contains("serviceAccountToken is not supported"), "{err}");
    let pvc = Volume { name: "data".into(), persistent_volume_claim: Some(Default::default()), ..Default::default() };
    let err = s.manager.prepare(&pod("uid-pvc", vec![pvc]), &[]).await.expect_err("pvc");
    assert!(matches!(err, VolumeError::SetUp { .. }));
    assert!(err.to_string().ends_with("volume type persistentVolumeClaim is not supported by this node"), "{err}");

    for uid in ["uid-missing", "uid-missing-secret", "uid-optional", "uid-key", "uid-token", "uid-pvc"] {
        s.manager.teardown(uid).await.expect("teardown");
    }
    assert!(s.data.mounts().is_empty(), "{:?}", s.data.mounts());
}

#[tokio::test]
async fn host_paths_are_checked_and_container_mounts_resolve_sub_paths() {
    let s = setup().await;
    create_configmap(&s.client, "cm-mounts", &[("app.conf", "x=1")]).await;
    let host_dir = s.data.path().join("host/made");
    let host_file = s.data.path().join("host-file");
    std::fs::write(&host_file, "f").expect("write");
    let host_volume = |name: &str, path: &Path, type_: &str| Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource { path: path.to_string_lossy().into_owned(), type_: Some(type_.into()) }),
        ..Default::default()
    };
    let p = pod(
        "uid-mounts",
        vec![
            host_volume("made", &host_dir, "DirectoryOrCreate"),
            host_volume("file", &host_file, "File"),
            configmap_volume("cfg", "cm-mounts", None, false),
            Volume { name: "work".into(), empty_dir: Some(Default::default()), ..Default::default() },
        ],
    );
    let volumes = s.manager.prepare(&p, &[]).await.expect("prepare");
    assert!(host_dir.is_dir());
    assert_eq!(mode(&host_dir), 0o755);

    let wrong = pod("uid-wrong", vec![host_volume("f", &host_file, "Directory")]);
    let err = s.manager.prepare(&wrong, &[]).await.expect_err("type check");
    assert_eq!(
        err.to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"f\" : hostPath type check failed: {} is not a directory",
            host_file.display()
        )
    );

    let mount =
        |name: &str, path: &str| VolumeMount { name: name.into(), mount_path: path.into(), ..Default::default() };
    let container = Container {
        name: "app".into(),
        volume_mounts: Some(vec![
            mount("made", "/data"),
            VolumeMount { sub_path: Some("app.conf".into()), ..mount("cfg", "/etc/app.conf") },
            VolumeMount { sub_path_expr: Some("logs/$(POD_NAME)".into()), ..mount("work", "/logs") },
            VolumeMount { read_only: Some(true), ..mount("file", "/f") },
        ]),
        ..Default::default()
    };
    let env = vec![("POD_NAME".to_string(), "web-0".to_string())];
    let mounts = s.manager.mounts_for(&p, &container, &volumes, &env).expect("mounts");
    let view: Vec<(&str, &Path, bool)> =
        mounts.iter().map(|m| (m.container_path.as_str(), m.host_path.as_path(), m.readonly)).collect();
    let subpaths = s.data.path().join("pods/uid-mounts/volume-subpaths");
    let config_bind = subpaths.join("cfg/app/1");
    let logs_bind = subpaths.join("work/app/2");
    assert_eq!(
        view,
        vec![
            ("/data", host_dir.as_path(), false),
            ("/etc/app.conf", config_bind.as_path(), true),
            ("/logs", logs_bind.as_path(), false),
            ("/f", host_file.as_path(), true),
        ]
    );
    // The subPaths are bound from inside their volumes: the config file itself, a created directory.
    assert_eq!(read(&config_bind), "x=1");
    let work = host_path(&volumes, "work").join("logs/web-0");
    assert!(work.is_dir(), "a missing subPath directory is created");
    assert_eq!(mode(&work), 0o777, "with the volume's mode");
    std::fs::write(logs_bind.join("through-the-bind"), "1").expect("write through the bind");
    assert_eq!(read(&work.join("through-the-bind")), "1");
    let canonical_subpaths = subpaths.canonicalize().expect("canonical");
    assert_eq!(s.data.mounts().iter().filter(|m| m.starts_with(&canonical_subpaths)).count(), 2);
    // A restarted container gets fresh binds, not stacked ones.
    s.manager.mounts_for(&p, &container, &volumes, &env).expect("mounts again");
    let raw = mounts::parse_mount_points(&std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"));
    assert_eq!(raw.iter().filter(|m| m.starts_with(&canonical_subpaths)).count(), 2, "{raw:?}");

    let bad = |volume_mount: VolumeMount| Container {
        name: "bad".into(),
        volume_mounts: Some(vec![volume_mount]),
        ..Default::default()
    };
    let err = s.manager.mounts_for(&p, &bad(mount("nope", "/x")), &volumes, &env).expect_err("unknown volume");
    assert_eq!(err.to_string(), "cannot find volume \"nope\" to mount into container \"bad\"");
    let err = s
        .manager
        .mounts_for(&p, &bad(VolumeMount { sub_path: Some("/etc".into()), ..mount("work", "/x") }), &volumes, &env)
        .expect_err("absolute");
    assert_eq!(err.to_string(), "error SubPath `/etc` must not be an absolute path");
    let err = s
        .manager
        .mounts_for(&p, &bad(VolumeMount { sub_path: Some("a/../..".into()), ..mount("work", "/x") }), &volumes, &env)
        .expect_err("backsteps");
    assert_eq!(err.to_string(), "unable to provision SubPath `a/../..`: must not contain '..'");
    std::os::unix::fs::symlink("/etc", host_path(&volumes, "work").join("escape")).expect("symlink");
    let err = s
        .manager
        .mounts_for(&p, &bad(VolumeMount { sub_path: Some("escape".into()), ..mount("work", "/x") }), &volumes, &env)
        .expect_err("escape");
    assert_eq!(err.to_string(), "failed to prepare subPath for volumeMount \"work\" of container \"bad\"");
    let err = s
        .manager
        .mounts_for(
            &p,
            &bad(VolumeMount { sub_path_expr: Some("$(MISSING)".into()), ..mount("work", "/x") }),
            &volumes,
            &env,
        )
        .expect_err("missing variable");
    assert_eq!(err.to_string(), "missing value for MISSING");

    s.manager.teardown("uid-mounts").await.expect("teardown");
    s.manager.teardown("uid-wrong").await.expect("teardown");
    assert!(s.data.mounts().is_empty(), "teardown leaves {:?}", s.data.mounts());
    assert!(!subpaths.exists());
    assert!(host_dir.is_dir(), "teardown leaves host paths alone");
}

#[tokio::test]
async fn teardown_after_a_crash_detaches_stacked_mounts_it_has_no_record_of() {
    let s = setup().await;
    // What a crash can leave: a tmpfs mounted twice on one volume, another nested below, a half-written
    // atomic update.
    let volume = s.data.path().join("pods/uid-crash/volumes/kubernetes.io~secret/creds");
    std::fs::create_dir_all(&volume).expect("mkdir");
    mounts::mount_tmpfs(&volume, Some(1 << 20)).expect("mount");
    mounts::mount_tmpfs(&volume, Some(1 << 20)).expect("mount again");
    let nested = volume.join("nested");
    std::fs::create_dir(&nested).expect("mkdir nested");
    mounts::mount_tmpfs(&nested, None).expect("mount nested");
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", volume.join("..data_tmp")).expect("symlink");
    let root = s.data.path().canonicalize().expect("canonical");
    let raw = mounts::parse_mount_points(&std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"));
    assert_eq!(raw.iter().filter(|m| m.starts_with(&root)).count(), 3, "{raw:?}");

    s.manager.teardown("uid-crash").await.expect("teardown");
    assert!(s.data.mounts().is_empty(), "teardown leaves {:?}", s.data.mounts());
    assert!(!s.data.path().join("pods/uid-crash/volumes").exists());
    assert!(matches!(s.manager.teardown("../escape").await, Err(VolumeError::InvalidUid { .. })));
}
