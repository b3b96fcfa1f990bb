use super::*;
use k8s_openapi::api::core::v1::{ObjectFieldSelector, PodSpec, ResourceFieldSelector, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn configmap() -> ConfigMap {
    ConfigMap {
        data: Some(BTreeMap::from([("a".into(), "alpha".into()), ("b".into(), "beta".into())])),
        binary_data: Some(BTreeMap::from([("bin".into(), ByteString(vec![0, 1, 2]))])),
        ..Default::default()
    }
}

fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
    KeyToPath { key: key.into(), path: path.into(), mode }
}

fn file(data: &[u8], mode: u32) -> FileProjection {
    FileProjection { data: data.to_vec(), mode }
}

#[test]
fn without_items_every_key_becomes_a_file_with_the_default_mode() {
    let payload = configmap_payload("cm", Some(&configmap()), None, 0o640, false).expect("payload");
    assert_eq!(
        payload,
        Payload::from([
            ("a".into(), file(b"alpha", 0o640)),
            ("b".into(), file(b"beta", 0o640)),
            ("bin".into(), file(&[0, 1, 2], 0o640)),
        ])
    );
}

#[test]
fn items_choose_keys_paths_and_modes() {
    let items = [item("a", "dir/first", Some(0o400)), item("bin", "raw", None)];
    let payload = configmap_payload("cm", Some(&configmap()), Some(&items), 0o644, false).expect("payload");
    assert_eq!(
        payload,
        Payload::from([("dir/first".into(), file(b"alpha", 0o400)), ("raw".into(), file(&[0, 1, 2], 0o644))])
    );
}

#[test]
fn a_missing_key_is_an_error_unless_the_volume_is_optional() {
    let items = [item("nope", "x", None), item("a", "a", None)];
    let err = configmap_payload("cm", Some(&configmap()), Some(&items), 0o644, false).expect_err("missing key");
    assert_eq!(err.to_string(), "configmap references non-existent config key: nope");
    let payload = configmap_payload("cm", Some(&configmap()), Some(&items), 0o644, true).expect("optional");
    assert_eq!(payload.keys().collect::<Vec<_>>(), vec!["a"]);
}

#[test]
fn a_missing_object_is_an_error_in_the_kubelet_words_unless_optional() {
    let err = configmap_payload("settings", None, None, 0o644, false).expect_err("missing");
    assert_eq!(err.to_string(), "configmap \"settings\" not found");
    assert!(configmap_payload("settings", None, None, 0o644, true).expect("optional").is_empty());
    let err = secret_payload("creds", None, None, 0o644, false).expect_err("missing");
    assert_eq!(err.to_string(), "secret \"creds\" not found");
    let wrapped = VolumeError::SetUp { volume: "config".into(), source: err };
    assert_eq!(wrapped.to_string(), "MountVolume.SetUp failed for volume \"config\" : secret \"creds\" not found");
}

#[test]
fn secret_data_is_written_as_bytes() {
    let secret =
        Secret { data: Some(BTreeMap::from([("token".into(), ByteString(b"s3cr3t".to_vec()))])), ..Default::default() };
    let payload = secret_payload("s", Some(&secret), None, 0o400, false).expect("payload");
    assert_eq!(payload, Payload::from([("token".into(), file(b"s3cr3t", 0o400))]));
    let err = secret_payload("s", Some(&secret), Some(&[item("other", "o", None)]), 0o400, false).expect_err("key");
    assert_eq!(err.to_string(), "references non-existent secret key: other");
}

fn pod_with_limits(limits: &[Option<&str>]) -> Pod {
    let containers = limits
        .iter()
        .enumerate()
        .map(|(i, limit)| Container {
            name: format!("c{i}"),
            resources: Some(ResourceRequirements {
                limits: limit.map(|l| BTreeMap::from([("memory".to_string(), Q(l.into()))])),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into()), ("tier".into(), "front".into())])),
            ..Default::default()
        },
        spec: Some(PodSpec { containers, ..Default::default() }),
        status: None,
    }
}

#[test]
fn downward_files_hold_fields_maps_and_resources() {
    let pod = pod_with_limits(&[Some("128Mi")]);
    let items = [
        DownwardAPIVolumeFile {
            path: "labels".into(),
            field_ref: Some(ObjectFieldSelector { field_path: "metadata.labels".into(), api_version: None }),
            ..Default::default()
        },
        DownwardAPIVolumeFile {
            path: "name".into(),
            mode: Some(0o600),
            field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }),
            ..Default::default()
        },
        DownwardAPIVolumeFile {
            path: "mem".into(),
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: Some("c0".into()),
                resource: "limits.memory".into(),
                divisor: Some(Q("1Mi".into())),
            }),
            ..Default::default()
        },
    ];
    let payload = downward_payload(&pod, Some(&items), 0o644, &NodeAllocatable::default()).expect("payload");
    assert_eq!(payload["labels"], file(b"app=\"web\"\ntier=\"front\"", 0o644));
    assert_eq!(payload["name"], file(b"web", 0o600));
    assert_eq!(payload["mem"], file(b"128", 0o644));
}

#[test]
fn memory_backed_volumes_are_sized_by_the_smallest_known_bound() {
    let limited = pod_with_limits(&[Some("100Mi"), Some("28Mi")]);
    let unlimited = pod_with_limits(&[Some("100Mi"), None]);
    let gib = 1 << 30;
    assert_eq!(memory_backed_size(&unlimited, 0, None), None);
    assert_eq!(memory_backed_size(&unlimited, gib, None), Some(gib));
    assert_eq!(memory_backed_size(&limited, gib, None), Some(128 << 20));
    assert_eq!(memory_backed_size(&limited, 0, None), Some(128 << 20));
    assert_eq!(memory_backed_size(&limited, gib, Some(&Q("64Mi".into()))), Some(64 << 20));
    // A sizeLimit above what the pod may use does not raise the bound.
    assert_eq!(memory_backed_size(&limited, gib, Some(&Q("2Gi".into()))), Some(128 << 20));
}

#[test]
fn host_path_types_are_checked_in_the_kubelet_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file_path = dir.path().join("file");
    std::fs::write(&file_path, "x").expect("write");
    let dir_text = dir.path().to_string_lossy().into_owned();
    let file_text = file_path.to_string_lossy().into_owned();
    check_host_path(&dir_text, "Directory").expect("directory");
    check_host_path(&file_text, "File").expect("file");
    check_host_path(&file_text, "").expect("no check");
    assert_eq!(
        check_host_path(&file_text, "Directory").expect_err("not a dir").to_string(),
        format!("hostPath type check failed: {file_text} is not a directory")
    );
    assert_eq!(
        check_host_path(&dir_text, "Socket").expect_err("not a socket").to_string(),
        format!("hostPath type check failed: {dir_text} is not a socket file")
    );
    assert_eq!(
        check_host_path(&dir_text, "CharDevice").expect_err("not a char device").to_string(),
        format!("hostPath type check failed: {dir_text} is not a character device")
    );
    check_host_path("/dev/null", "CharDevice").expect("char device");
    assert_eq!(
        check_host_path(&dir_text, "Weird").expect_err("invalid").to_string(),
        "Weird is an invalid volume type"
    );

    let created = dir.path().join("a/b");
    check_host_path(&created.to_string_lossy(), "DirectoryOrCreate").expect("create dir");
    assert_eq!(std::fs::metadata(&created).expect("meta").permissions().mode() & 0o777, 0o755);
    let new_file = dir.path().join("new");
    check_host_path(&new_file.to_string_lossy(), "FileOrCreate").expect("create file");
    assert!(new_file.is_file());
    assert!(check_host_path(&created.to_string_lossy(), "FileOrCreate").is_err(), "a directory is not a file");
}

#[test]
fn unsupported_volume_types_are_named() {
    let volume =
        Volume { name: "data".into(), persistent_volume_claim: Some(Default::default()), ..Default::default() };
    assert_eq!(unsupported_kind(&volume), Some("persistentVolumeClaim"));
    let err = SetUpError::Unsupported { kind: "persistentVolumeClaim" };
    assert_eq!(err.to_string(), "volume type persistentVolumeClaim is not supported by this node");
    assert_eq!(unsupported_kind(&Volume { name: "e".into(), ..Default::default() }), None);
}

#[test]
fn fs_group_makes_files_group_readable_and_directories_setgid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let f = sub.join("f");
    std::fs::write(&f, "x").expect("write");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    apply_fs_group(dir.path(), 4321, true).expect("fs group");
    let meta = std::fs::metadata(&f).expect("meta");
    assert_eq!((meta.gid(), meta.mode() & 0o7777), (4321, 0o440));
    let meta = std::fs::metadata(&sub).expect("meta");
    assert_eq!((meta.gid(), meta.mode() & 0o7777), (4321, 0o2750));
}

#[test]
fn names_that_would_leave_their_directory_are_refused() {
    assert!(is_path_component("config-1"));
    for bad in ["", ".", "..", "a/b", "../x"] {
        assert!(!is_path_component(bad), "{bad:?}");
    }
}
