//! The image store with real parts, as root: archives built from Debian's busybox-static, real overlay mounts, a
//! real registry (Debian's `docker-registry`, Distribution 2.8) on a loopback port, filled with `skopeo`.
#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gantry_runtime::cri::{ImageService, PullProgress, RegistryAuth};
use gantry_runtime::image::{ImageError, ImageStore, mount_overlay, unmount};
use gantry_runtime::testing::{Compression, ImageBuilder, Layer, TestImage, TestRegistry, write_busybox_archive};

/// Why this test cannot run here, if it cannot.
fn missing(tools: &[&str]) -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (ownership, device nodes, overlay mounts)".into());
    }
    if !Path::new(gantry_runtime::testing::BUSYBOX).exists() {
        return Some("needs /bin/busybox (Debian package busybox-static)".into());
    }
    for tool in tools {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
        if !found {
            return Some(format!("needs {tool} (Debian package of the same name)"));
        }
    }
    None
}

macro_rules! require {
    ($($tool:expr),*) => {
        if let Some(reason) = missing(&[$($tool),*]) {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

/// An overlay mount, unmounted when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.0) {
            eprintln!("unmount {}: {e}", self.0.display());
        }
    }
}

/// Mounts an image's root filesystem under `dir` (rootfs, upper, work) and returns the guard.
fn mount_image(store: &ImageStore, image: &str, dir: &Path) -> Mounted {
    let (upper, work, target) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &target] {
        std::fs::create_dir_all(d).unwrap();
    }
    let layers = store.rootfs_layers(image).unwrap();
    mount_overlay(&layers, &upper, &work, &target).unwrap();
    Mounted(target)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn the_busybox_archive_imports_under_normalised_names_with_its_files_intact() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let built = write_busybox_archive(&dir.path().join("busybox.tar"), "busybox").unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let imported = store.import_archive(&dir.path().join("busybox.tar")).unwrap();
    assert_eq!(imported.len(), 1);
    let image = &imported[0];
    assert_eq!(image.id, built.id);
    assert_eq!(image.repo_tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(image.repo_digests, [format!("docker.io/library/busybox@{}", built.manifest_digest)]);
    assert_eq!(image.config.cmd, ["sh"]);
    assert!(image.size > 1_000_000, "{}", image.size);
    let hex = built.id.trim_start_matches("sha256:");
    for name in ["busybox", "busybox:latest", "docker.io/library/busybox:latest", &built.id, hex, &hex[..12]] {
        assert_eq!(store.resolve(name).unwrap().as_ref(), Some(image), "{name}");
    }
    let by_digest = format!("busybox@{}", built.manifest_digest);
    assert_eq!(store.resolve(&by_digest).unwrap().map(|i| i.id), Some(built.id.clone()));
    assert_eq!(store.resolve("busybox:1.36").unwrap(), None);
    assert!(matches!(store.resolve("Busy/Box"), Err(ImageError::InvalidReference { .. })));

    let layers = store.rootfs_layers(&built.id).unwrap();
    assert_eq!(layers.len(), 1);
    let root = &layers[0];
    assert_eq!(root, &store.root().join("layers").join(built.layers[0].diff_id.trim_start_matches("sha256:")));
    let busybox = std::fs::metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(std::fs::metadata(root.join("bin/sh")).unwrap().ino(), busybox.ino(), "applets are hard links");
    assert_eq!(busybox.mode() & 0o7777, 0o755);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:1000:1000:") && passwd.contains("nobody:x:65534:65534:"), "{passwd}");
    assert_eq!(std::fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
    let home = std::fs::metadata(root.join("home/app")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1000, 1000));

    // The same image again, as a gzip'd archive, as a layout directory and through the async service: nothing new.
    let gzipped = dir.path().join("busybox.tar.gz");
    let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(&gzipped).unwrap(), Default::default());
    std::io::copy(&mut std::fs::File::open(dir.path().join("busybox.tar")).unwrap(), &mut encoder).unwrap();
    encoder.finish().unwrap();
    assert_eq!(store.import_archive(&gzipped).unwrap()[0].id, built.id);
    let layout = dir.path().join("layout");
    ImageBuilder::busybox("busybox").write_layout(&layout).unwrap();
    assert_eq!(store.import_archive(&layout).unwrap()[0].id, built.id);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listed = runtime.block_on(store.list_images()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(runtime.block_on(store.image_status("busybox")).unwrap().map(|i| i.id), Some(built.id));
    assert_eq!(names(&store.root().join("layers")).len(), 1);
}

#[test]
fn images_sharing_a_base_layer_unpack_it_once_whatever_the_compression() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let base = write_busybox_archive(&dir.path().join("a.tar"), "localhost:5000/base:1").unwrap();
    let derived = ImageBuilder::busybox("localhost:5000/derived:1")
        .layer(Layer::new().file("etc/motd", "derived\n", 0o644))
        .write_archive(&dir.path().join("b.tar"))
        .unwrap();
    let zstd = ImageBuilder::busybox("localhost:5000/zstd:1")
        .layer(Layer::new().file("etc/zstd", "z\n", 0o600))
        .compression(Compression::Zstd)
        .write_archive(&dir.path().join("c.tar"))
        .unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    for archive in ["a.tar", "b.tar", "c.tar"] {
        store.import_archive(&dir.path().join(archive)).unwrap();
    }
    let a = store.rootfs_layers("localhost:5000/base:1").unwrap();
    let b = store.rootfs_layers("localhost:5000/derived:1").unwrap();
    let c = store.rootfs_layers(&zstd.id).unwrap();
    assert_eq!(a[0], b[0], "the base layer is one directory");
    // The zstd image has its own blobs (other digests) but the same uncompressed base.
    assert_ne!(zstd.layers[0].digest, base.layers[0].digest);
    assert_eq!(c[0], a[0]);
    assert_eq!(names(&store.root().join("layers")).len(), 3, "base + two top layers");
    assert_eq!(std::fs::read_to_string(b[1].join("etc/motd")).unwrap(), "derived\n");
    assert_eq!(std::fs::read_to_string(c[1].join("etc/zstd")).unwrap(), "z\n");
    assert_eq!(derived.layers[0].diff_id, base.layers[0].diff_id);
}

#[test]
fn whiteouts_and_opaque_directories_give_the_right_merged_view_through_overlay() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let image = ImageBuilder::busybox("example.com/whiteouts:1")
        .layer(
            Layer::new()
                .file("etc/motd", "lower\n", 0o644)
                .file("data/a", "a", 0o644)
                .file("data/sub/b", "b", 0o644)
                .file("keep/x", "x", 0o644),
        )
        .layer(
            Layer::new()
                .whiteout("etc/motd")
                .whiteout("keep")
                .opaque("data")
                .file("data/c", "c", 0o644)
                .file("keep2", "k", 0o600),
        )
        .write_archive(&dir.path().join("w.tar"))
        .unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    store.import_archive(&dir.path().join("w.tar")).unwrap();
    let rootfs = mount_image(&store, &image.id, &dir.path().join("mnt"));
    let root = &rootfs.0;
    assert!(!root.join("etc/motd").exists(), "a whiteout hides the lower file");
    assert!(root.join("etc/passwd").exists(), "its siblings stay");
    assert!(!root.join("keep").exists(), "a whiteout hides a whole directory");
    assert_eq!(names(&root.join("data")), ["c"], "an opaque directory hides the lower entries");
    assert_eq!(std::fs::read_to_string(root.join("keep2")).unwrap(), "k");
    assert!(root.join("bin/sh").exists());
    // The writable layer takes changes; the shared layers do not see them.
    std::fs::write(root.join("etc/new"), "new").unwrap();
    std::fs::remove_file(root.join("bin/vi")).unwrap();
    let layers = store.rootfs_layers(&image.id).unwrap();
    assert!(layers[0].join("bin/vi").exists());
    assert!(!layers.iter().any(|l| l.join("etc/new").exists()));
}

#[test]
fn forty_five_layers_under_a_long_store_path_mount_as_one_overlay() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let mut builder = ImageBuilder::busybox("example.com/deep:1").compression(Compression::None);
    for i in 0..44 {
        builder = builder.layer(Layer::new().file(&format!("layers/{i}"), i.to_string(), 0o644).file(
            "top",
            i.to_string(),
            0o644,
        ));
    }
    let image = builder.write_archive(&dir.path().join("deep.tar")).unwrap();
    assert_eq!(image.layers.len(), 45);
    let long = dir.path().join("a-store-root-with-a-rather-long-name-to-fill-the-mount-options-page-sooner");
    let store = ImageStore::open(&long).unwrap();
    store.import_archive(&dir.path().join("deep.tar")).unwrap();
    let layers = store.rootfs_layers(&image.id).unwrap();
    let plain: usize = layers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(plain > 4096, "the test must exceed a page: {plain} bytes of lowerdir");
    let rootfs = mount_image(&store, &image.id, &dir.path().join("mnt"));
    assert_eq!(names(&rootfs.0.join("layers")).len(), 44);
    assert_eq!(std::fs::read_to_string(rootfs.0.join("top")).unwrap(), "43", "the top layer wins");
    assert!(rootfs.0.join("bin/busybox").exists(), "the bottom layer is there");
}

/// The blob of `digest` in an OCI layout directory.
fn blob_in(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

#[test]
fn content_with_the_wrong_digest_is_refused_and_leaves_nothing_behind() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = ImageBuilder::busybox("example.com/tampered:1")
        .layer(Layer::new().file("etc/x", "x", 0o644))
        .compression(Compression::None)
        .write_layout(&layout)
        .unwrap();
    // One byte of the top layer changes: its blob no longer has its digest.
    let blob = blob_in(&layout, &image.layers[1].digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.iter().position(|b| *b == b'x').unwrap();
    bytes[at] = b'y';
    std::fs::write(&blob, &bytes).unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let err = store.import_archive(&layout).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(!store.root().join("blobs/sha256").join(image.layers[1].digest.trim_start_matches("sha256:")).exists());
    assert!(names(&store.root().join("tmp")).is_empty(), "{:?}", names(&store.root().join("tmp")));
    // What was written before the failure is unreferenced and collected.
    let report = store.collect_garbage().unwrap();
    assert!(report.blobs_removed >= 1, "{report:?}");
    assert!(names(&store.root().join("blobs/sha256")).is_empty());
    assert!(names(&store.root().join("layers")).is_empty());
}

#[test]
fn removal_and_prune_collect_what_nothing_uses_and_keep_the_rest() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let base = write_busybox_archive(&dir.path().join("a.tar"), "example.com/base:1").unwrap();
    let top = ImageBuilder::busybox("example.com/top:1")
        .layer(Layer::new().file("etc/top", "t", 0o644))
        .write_archive(&dir.path().join("b.tar"))
        .unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    store.import_archive(&dir.path().join("a.tar")).unwrap();
    store.import_archive(&dir.path().join("b.tar")).unwrap();
    assert_eq!(names(&store.root().join("layers")).len(), 2);

    // Its last tag gone, the image goes (with its repo digest, as Docker does).
    let outcome = store.remove("example.com/top:1").unwrap();
    assert_eq!(outcome.untagged[0], "example.com/top:1");
    assert_eq!(outcome.deleted.as_deref(), Some(top.id.as_str()));
    assert_eq!(names(&store.root().join("layers")).len(), 1, "the top layer went with the image");
    assert!(store.rootfs_layers(&base.id).unwrap()[0].exists(), "the shared base layer stays");
    assert!(matches!(store.remove("example.com/top:1"), Err(ImageError::NotFound(_))));

    store.import_archive(&dir.path().join("b.tar")).unwrap();
    let keep: HashSet<String> = [base.id.clone()].into();
    let report = store.prune(&keep).unwrap();
    assert_eq!(report.images_removed, std::slice::from_ref(&top.id));
    assert_eq!(report.layers_removed, 1);
    assert_eq!(store.list().unwrap().len(), 1);
    let report = store.prune(&HashSet::new()).unwrap();
    assert_eq!(report.images_removed, [base.id]);
    assert!(report.bytes_freed > 1_000_000, "{report:?}");
    assert!(names(&store.root().join("blobs/sha256")).is_empty());
    assert!(names(&store.root().join("layers")).is_empty());
}

#[test]
fn leftovers_of_a_crash_are_ignored_and_cleared() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    write_busybox_archive(&dir.path().join("a.tar"), "busybox").unwrap();
    store.import_archive(&dir.path().join("a.tar")).unwrap();
    // A half-written blob, a half-unpacked layer, and a layer directory no image names.
    std::fs::write(root.join("tmp/blob-123"), b"partial").unwrap();
    std::fs::create_dir_all(root.join("tmp/layer-456/root/bin")).unwrap();
    std::fs::create_dir_all(root.join("layers").join("f".repeat(64))).unwrap();
    std::fs::write(root.join(".index.json-abc"), b"{").unwrap();
    drop(store);
    let store = ImageStore::open(&root).unwrap();
    assert!(names(&root.join("tmp")).is_empty());
    assert!(!root.join(".index.json-abc").exists());
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(store.collect_garbage().unwrap().layers_removed, 1);
    assert!(store.rootfs_layers("busybox").unwrap()[0].join("bin/busybox").exists());
}

#[test]
fn concurrent_imports_and_collections_lose_no_image() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let images: Vec<(PathBuf, TestImage)> = (0..4)
        .map(|i| {
            let path = dir.path().join(format!("{i}.tar"));
            let image = ImageBuilder::busybox(&format!("example.com/c{i}:1"))
                .layer(Layer::new().file("n", i.to_string(), 0o644))
                .write_archive(&path)
                .unwrap();
            (path, image)
        })
        .collect();
    std::thread::scope(|scope| {
        for (path, _) in &images {
            let root = root.clone();
            // Each thread opens the store itself, as separate processes would.
            scope.spawn(move || ImageStore::open(root).unwrap().import_archive(path).unwrap());
        }
        let root = root.clone();
        scope.spawn(move || {
            for _ in 0..5 {
                ImageStore::open(&root).unwrap().collect_garbage().unwrap();
            }
        });
    });
    let store = ImageStore::open(&root).unwrap();
    assert_eq!(store.list().unwrap().len(), 4);
    for (_, image) in &images {
        for layer in store.rootfs_layers(&image.id).unwrap() {
            assert!(layer.is_dir(), "{}", layer.display());
        }
    }
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<PullProgress>) -> Vec<PullProgress> {
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    events
}

#[test]
fn pulls_from_a_loopback_registry_report_progress_and_skip_present_layers() {
    require!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().unwrap();
    let base = write_busybox_archive(&dir.path().join("base.tar"), "busybox:latest").unwrap();
    let app = ImageBuilder::busybox("app:v1")
        .layer(Layer::new().file("etc/app", "app\n", 0o644))
        .write_archive(&dir.path().join("app.tar"))
        .unwrap();
    registry.push(&dir.path().join("base.tar"), "library/busybox", "latest", None).unwrap();
    registry.push(&dir.path().join("app.tar"), "team/app", "v1", None).unwrap();

    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reference = format!("{}/library/busybox", registry.host());
    let id = runtime.block_on(store.pull_image(&reference, &RegistryAuth::Anonymous, Some(tx))).unwrap();
    assert_eq!(id, base.id);
    let events = drain(&mut rx);
    let layer = &base.layers[0].digest;
    assert!(events.iter().all(|e| &e.layer == layer && !e.cached), "{events:?}");
    let last = events.last().unwrap();
    assert_eq!(Some(last.fetched), last.total, "the last event has the whole layer");
    assert!(last.fetched > 1_000_000);
    let image = store.resolve(&format!("{reference}:latest")).unwrap().unwrap();
    assert_eq!(image.repo_tags, [format!("{reference}:latest")]);
    assert!(image.repo_digests[0].starts_with(&format!("{reference}@sha256:")), "{:?}", image.repo_digests);

    // The second image shares the base layer: only its own layer is fetched.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let app_ref = format!("{}/team/app:v1", registry.host());
    let pulled = runtime.block_on(store.pull(&app_ref, &RegistryAuth::Anonymous, Some(tx))).unwrap();
    assert_eq!(pulled.id, app.id);
    let events = drain(&mut rx);
    assert!(events.iter().any(|e| e.layer == app.layers[0].digest && e.cached), "{events:?}");
    assert!(events.iter().any(|e| e.layer == app.layers[1].digest && !e.cached), "{events:?}");
    assert!(!events.iter().any(|e| e.layer == app.layers[0].digest && !e.cached), "{events:?}");
    assert_eq!(names(&store.root().join("layers")).len(), 2);

    // By digest: the tag is not recorded, the digest is.
    let by_digest = image.repo_digests[0].clone();
    let again = runtime.block_on(store.pull(&by_digest, &RegistryAuth::Anonymous, None)).unwrap();
    assert_eq!(again.id, base.id);
    assert_eq!(store.resolve(&by_digest).unwrap().map(|i| i.id), Some(base.id.clone()));

    let missing = runtime.block_on(store.pull(&format!("{}/nope:1", registry.host()), &RegistryAuth::Anonymous, None));
    assert!(matches!(missing, Err(ImageError::Registry { .. })), "{missing:?}");
    drop(runtime);
}

#[test]
fn a_registry_with_basic_auth_serves_pulls_with_the_right_credentials_only() {
    require!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = format!("puller:{}\n", bcrypt::hash("open-sesame", 4).unwrap());
    let registry = TestRegistry::start_with_htpasswd(&htpasswd).unwrap();
    let image = write_busybox_archive(&dir.path().join("base.tar"), "private:1").unwrap();
    registry.push(&dir.path().join("base.tar"), "private", "1", Some("puller:open-sesame")).unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reference = format!("{}/private:1", registry.host());
    let anonymous = runtime.block_on(store.pull(&reference, &RegistryAuth::Anonymous, None));
    assert!(matches!(anonymous, Err(ImageError::Registry { .. })), "{anonymous:?}");
    let wrong = RegistryAuth::Basic { username: "puller".into(), password: "wrong".into() };
    assert!(runtime.block_on(store.pull(&reference, &wrong, None)).is_err());
    // Credentials as an imagePullSecret holds them.
    let secret =
        format!(r#"{{"auths": {{"{}": {{"username": "puller", "password": "open-sesame"}}}}}}"#, registry.host());
    let auth =
        gantry_runtime::image::credentials_from_docker_config(secret.as_bytes(), &registry.host()).unwrap().unwrap();
    let pulled = runtime.block_on(store.pull(&reference, &auth, None)).unwrap();
    assert_eq!(pulled.id, image.id);
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[test]
fn archive_names_follow_containerd_bare_tags_need_a_base_name() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = ImageBuilder::busybox("example.com/original:1").write_layout(&layout).unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let rename = |annotations: serde_json::Value| {
        let path = layout.join("index.json");
        let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        index["manifests"][0]["annotations"] = annotations;
        std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    };
    rename(serde_json::json!({"org.opencontainers.image.ref.name": "v2"}));
    let unnamed = store.import_archive(&layout).unwrap();
    assert!(unnamed[0].repo_tags.is_empty(), "a bare tag is no name: {:?}", unnamed[0].repo_tags);
    assert_eq!(store.resolve(&image.id).unwrap().map(|i| i.id), Some(image.id.clone()));
    let named = store.import_archive_as(&layout, Some("example.com/named")).unwrap();
    assert_eq!(named[0].repo_tags, ["example.com/named:v2"]);
    // A whole reference in the OCI annotation (as skopeo may write it) is normalised.
    rename(serde_json::json!({"org.opencontainers.image.ref.name": "tools/busybox:3"}));
    let full = store.import_archive(&layout).unwrap();
    assert!(full[0].repo_tags.contains(&"docker.io/tools/busybox:3".to_string()), "{:?}", full[0].repo_tags);
    assert!(matches!(store.import_archive_as(&layout, Some("Bad Name")), Err(ImageError::InvalidReference { .. })));
}

#[test]
fn docker_save_archives_import_with_their_repo_tags_and_shared_layer_files() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let first = Layer::new().file("bin/hello", "hello", 0o755).dir("etc", 0o755).to_tar();
    let second = Layer::new().file("etc/motd", "docker save\n", 0o644).to_tar();
    let diff_ids = [sha256(&first), sha256(&second), sha256(&first)];
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/hello"], "Env": null},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let manifest = serde_json::json!([{
        "Config": "cfg.json", "RepoTags": ["hello:1", "registry.example/hello:latest"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
    }]);
    let archive = dir.path().join("saved.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        builder.append_data(&mut h, name, bytes).unwrap();
    };
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add("cfg.json", &config);
    add("aaa/layer.tar", &first);
    add("bbb/layer.tar", &second);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    builder.append_link(&mut h, "ccc/layer.tar", "../aaa/layer.tar").unwrap();
    builder.into_inner().unwrap();

    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let images = store.import_archive(&archive).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, sha256(&config));
    assert_eq!(images[0].repo_tags, ["docker.io/library/hello:1", "registry.example/hello:latest"]);
    assert_eq!(images[0].config.cmd, ["/bin/hello"]);
    let layers = store.rootfs_layers("hello:1").unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0], layers[2], "one directory for the layer listed twice");
    assert_eq!(std::fs::read_to_string(layers[1].join("etc/motd")).unwrap(), "docker save\n");
}

/// Writes into `layout` an index listing `native` for this node's platform and `foreign` for another, tagged
/// `multi`, and returns the nested index's digest.
fn multi_platform_layout(layout: &Path, native: &TestImage, foreign: &TestImage) -> String {
    let other = if gantry_runtime::image::host_architecture() == "arm64" { "amd64" } else { "arm64" };
    let size = |digest: &str| std::fs::metadata(blob_in(layout, digest)).unwrap().len();
    let entry = |image: &TestImage, arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.manifest_digest,
            "size": size(&image.manifest_digest), "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let nested = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(foreign, other), entry(native, gantry_runtime::image::host_architecture())],
    });
    let nested = serde_json::to_vec(&nested).unwrap();
    let digest = sha256(&nested);
    std::fs::write(blob_in(layout, &digest), &nested).unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": nested.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    digest
}

#[test]
fn indexes_resolve_to_this_platform_in_imports_and_pulls() {
    require!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let foreign = ImageBuilder::busybox("x:foreign").layer(Layer::new().file("arch", "foreign", 0o644));
    let foreign = foreign.write_layout(&layout).unwrap();
    let native = ImageBuilder::busybox("x:native").layer(Layer::new().file("arch", "native", 0o644));
    let native = native.write_layout(&layout).unwrap();
    let index_digest = multi_platform_layout(&layout, &native, &foreign);

    let store = ImageStore::open(dir.path().join("imported")).unwrap();
    let imported = store.import_archive_as(&layout, Some("example.com/multi")).unwrap();
    assert_eq!(imported[0].id, native.id);
    assert_eq!(imported[0].repo_digests, [format!("example.com/multi@{index_digest}")]);

    let registry = TestRegistry::start().unwrap();
    let out = std::process::Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--all", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{}/multi:1", registry.host()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    let store = ImageStore::open(dir.path().join("pulled")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reference = format!("{}/multi:1", registry.host());
    let pulled = runtime.block_on(store.pull(&reference, &RegistryAuth::Anonymous, None)).unwrap();
    assert_eq!(pulled.id, native.id);
    assert_eq!(pulled.repo_digests, [format!("{}/multi@{index_digest}", registry.host())]);
    let layers = store.rootfs_layers(&pulled.id).unwrap();
    assert_eq!(std::fs::read_to_string(layers[1].join("arch")).unwrap(), "native");
    // The index stays in the store: its digest names content here.
    assert!(store.root().join("blobs/sha256").join(index_digest.trim_start_matches("sha256:")).exists());
}

#[test]
fn concurrent_pulls_of_one_image_fetch_each_layer_once() {
    require!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().unwrap();
    let image = write_busybox_archive(&dir.path().join("base.tar"), "busybox:1").unwrap();
    registry.push(&dir.path().join("base.tar"), "busybox", "1", None).unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let reference = format!("{}/busybox:1", registry.host());
    let receivers = runtime.block_on(async {
        let mut pulls = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            receivers.push(rx);
            let (store, reference) = (store.clone(), reference.clone());
            pulls.push(tokio::spawn(async move { store.pull(&reference, &RegistryAuth::Anonymous, Some(tx)).await }));
        }
        for pull in pulls {
            assert_eq!(pull.await.unwrap().unwrap().id, image.id);
        }
        receivers
    });
    let fetched =
        receivers.into_iter().map(|mut rx| drain(&mut rx)).filter(|events| events.iter().any(|e| !e.cached)).count();
    assert_eq!(fetched, 1, "one pull fetches, the others find the layer");
}

#[test]
fn a_layer_whose_content_is_not_its_diff_id_is_refused_and_not_kept() {
    require!();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = ImageBuilder::busybox("example.com/lying:1")
        .layer(Layer::new().file("etc/x", "x", 0o644))
        .write_layout(&layout)
        .unwrap();
    // The config claims another diff_id for the top layer; the manifest and the index are rewritten to match, so
    // that every blob digest is right and only the unpacked content disagrees.
    let read_json = |digest: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(blob_in(&layout, digest)).unwrap()).unwrap()
    };
    let write_blob = |value: &serde_json::Value| -> (String, usize) {
        let bytes = serde_json::to_vec(value).unwrap();
        let digest = sha256(&bytes);
        std::fs::write(blob_in(&layout, &digest), &bytes).unwrap();
        (digest, bytes.len())
    };
    let mut config = read_json(&image.id);
    config["rootfs"]["diff_ids"][1] = serde_json::Value::String(sha256(b"not this layer"));
    let (config_digest, config_size) = write_blob(&config);
    let mut manifest = read_json(&image.manifest_digest);
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config_size.into();
    let (manifest_digest, manifest_size) = write_blob(&manifest);
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["digest"] = manifest_digest.into();
    index["manifests"][0]["size"] = manifest_size.into();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();

    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let err = store.import_archive(&layout).unwrap_err();
    assert!(matches!(&err, ImageError::DigestMismatch { what, .. } if what.contains("uncompressed")), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert_eq!(names(&store.root().join("layers")), [image.layers[0].diff_id.trim_start_matches("sha256:")]);
    assert!(names(&store.root().join("tmp")).is_empty(), "the half-unpacked layer is gone");
}
