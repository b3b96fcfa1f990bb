//! The image store with real parts, as root: archives built from Debian's busybox-static, real overlay mounts, a
//! real registry (Debian's `docker-registry`, Distribution 2.8) on a loopback port, filled with `skopeo`.
#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

use std::collections::HashSet;
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gantry_runtime::cri::{ImageService, PullProgress, RegistryAuth};
use gantry_runtime::image::{ImageError, ImageStore, mount_overlay, unmount};
use gantry_runtime::testing::{Compression, ImageBuilder, Layer, TestImage, write_busybox_archive};

/// How long to wait for things that should happen soon (`GANTRY_TEST_PATIENCE` seconds, default 30).
fn patience() -> Duration {
    let secs = std::env::var("GANTRY_TEST_PATIENCE").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    Duration::from_secs(secs)
}

fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

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

    // The same image again, as a layout directory and through the async service: nothing new.
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
    drop(store);
    let store = ImageStore::open(&root).unwrap();
    assert!(names(&root.join("tmp")).is_empty());
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

/// A `docker-registry` on a loopback port, killed when dropped.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Starts a registry; with `htpasswd`, only that user (bcrypt) may push and pull.
    fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\n\
             http: {{addr: 127.0.0.1:{port}}}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = htpasswd {
            let hash = bcrypt::hash(password, 4).unwrap();
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth: {{htpasswd: {{realm: gantry-test, path: {}}}}}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry { child, port, _dir: dir };
        eventually("the registry to listen", || TcpStream::connect(("127.0.0.1", port)).ok());
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes an OCI archive (written with the tag `tag`) as `name:tag`.
    fn push(&self, archive: &Path, name: &str, tag: &str, creds: Option<&str>) {
        let mut command = Command::new("skopeo");
        command
            .args(["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}:{tag}", archive.display()))
            .arg(format!("docker://{}/{name}:{tag}", self.host()));
        if let Some(creds) = creds {
            command.arg(format!("--dest-creds={creds}"));
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
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
    let registry = Registry::start(None);
    let base = write_busybox_archive(&dir.path().join("base.tar"), "busybox:latest").unwrap();
    let app = ImageBuilder::busybox("app:v1")
        .layer(Layer::new().file("etc/app", "app\n", 0o644))
        .write_archive(&dir.path().join("app.tar"))
        .unwrap();
    registry.push(&dir.path().join("base.tar"), "library/busybox", "latest", None);
    registry.push(&dir.path().join("app.tar"), "team/app", "v1", None);

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
    let registry = Registry::start(Some(("puller", "open-sesame")));
    let image = write_busybox_archive(&dir.path().join("base.tar"), "private:1").unwrap();
    registry.push(&dir.path().join("base.tar"), "private", "1", Some("puller:open-sesame"));
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
