//! Test images, for tests and benchmarks (not for production use).
//!
//! Public registries are out of reach of tests, so images are built here: a busybox image from Debian's
//! `busybox-static` (`/bin/busybox`, its applets as hard links in `/bin`, `/etc/passwd` and `/etc/group` with
//! `root`, `nobody` (65534) and `app` (1000:1000), `/tmp` mode 1777), plus any layers a test describes with
//! [`Layer`] (files, links, devices, whiteouts, opaque directories). Images are written as OCI archives (a tar of an
//! OCI image layout, as `skopeo copy oci-archive:` reads them) or OCI layout directories.
//!
//! Output is deterministic: the same description gives the same digests, so two images built on the busybox base
//! share its layer. The busybox layer is built once per process; writing an image takes a few milliseconds.
//!
//! ```no_run
//! use gantry_runtime::testing::{ImageBuilder, Layer, write_busybox_archive};
//! # fn main() -> Result<(), gantry_runtime::image::ImageError> {
//! let dir = std::path::Path::new("/tmp/x");
//! let base = write_busybox_archive(&dir.join("busybox.tar"), "busybox:latest")?;
//! let derived = ImageBuilder::busybox("example.com/app:v1")
//!     .layer(Layer::new().file("/etc/motd", "hello\n", 0o644).whiteout("/bin/vi"))
//!     .write_archive(&dir.join("app.tar"))?;
//! assert_eq!(base.layers[0].diff_id, derived.layers[0].diff_id);
//! # Ok(()) }
//! ```

pub mod runtime;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cri::ImageConfig;
use crate::image::{ImageError, Reference, digest_bytes, host_architecture, oci};

/// Where Debian's `busybox-static` installs the static busybox.
pub const BUSYBOX: &str = "/bin/busybox";
/// The modification time of every entry of built layers (fixed, so that digests are reproducible).
const MTIME: u64 = 1_700_000_000;

/// How built layers are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`).
    #[default]
    Gzip,
    /// zstd (`...tar+zstd`).
    Zstd,
    /// None (`...tar`).
    None,
}

#[derive(Clone, Debug)]
enum Entry {
    Dir { path: String, mode: u32, uid: u64, gid: u64 },
    File { path: String, data: Vec<u8>, mode: u32, uid: u64, gid: u64 },
    Symlink { path: String, target: String },
    HardLink { path: String, target: String },
    CharDevice { path: String, major: u32, minor: u32 },
    Raw { path: String },
}

/// A layer described entry by entry, in tar order. Paths may start with `/`; parent directories are not added
/// implicitly (the unpacker creates missing ones).
#[derive(Clone, Debug, Default)]
pub struct Layer {
    entries: Vec<Entry>,
}

fn rel(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Layer {
        Layer::default()
    }

    /// A directory owned by root.
    pub fn dir(self, path: &str, mode: u32) -> Layer {
        self.dir_owned(path, mode, 0, 0)
    }

    /// A directory with an owner.
    pub fn dir_owned(mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Layer {
        self.entries.push(Entry::Dir { path: rel(path), mode, uid, gid });
        self
    }

    /// A regular file owned by root.
    pub fn file(self, path: &str, contents: impl AsRef<[u8]>, mode: u32) -> Layer {
        self.file_owned(path, contents, mode, 0, 0)
    }

    /// A regular file with an owner.
    pub fn file_owned(mut self, path: &str, contents: impl AsRef<[u8]>, mode: u32, uid: u64, gid: u64) -> Layer {
        self.entries.push(Entry::File { path: rel(path), data: contents.as_ref().to_vec(), mode, uid, gid });
        self
    }

    /// A symlink to `target` (kept as given).
    pub fn symlink(mut self, path: &str, target: &str) -> Layer {
        self.entries.push(Entry::Symlink { path: rel(path), target: target.to_string() });
        self
    }

    /// A hard link to `target`, an earlier entry of this layer.
    pub fn hard_link(mut self, path: &str, target: &str) -> Layer {
        self.entries.push(Entry::HardLink { path: rel(path), target: rel(target) });
        self
    }

    /// A character device.
    pub fn char_device(mut self, path: &str, major: u32, minor: u32) -> Layer {
        self.entries.push(Entry::CharDevice { path: rel(path), major, minor });
        self
    }

    /// Deletes `path` (a file or a whole directory) of the layers below: an OCI whiteout `.wh.<name>`.
    pub fn whiteout(mut self, path: &str) -> Layer {
        let path = Path::new(path.trim_start_matches('/'));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let whiteout = path.with_file_name(format!(".wh.{name}"));
        self.entries.push(Entry::Raw { path: whiteout.to_string_lossy().into_owned() });
        self
    }

    /// Hides everything the layers below have in directory `dir`: an OCI opaque marker `dir/.wh..wh..opq`.
    pub fn opaque(mut self, dir: &str) -> Layer {
        let path = Path::new(dir.trim_start_matches('/')).join(".wh..wh..opq");
        self.entries.push(Entry::Raw { path: path.to_string_lossy().into_owned() });
        self
    }

    /// The layer as an uncompressed tar.
    pub fn to_tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            // Appending to memory cannot fail for the entry kinds built here.
            let _ = append(&mut builder, entry);
        }
        builder.into_inner().unwrap_or_default()
    }
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(MTIME);
    h.set_size(0);
    h
}

fn append(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry) -> std::io::Result<()> {
    match entry {
        Entry::Dir { path, mode, uid, gid } => {
            let mut h = header(tar::EntryType::Directory, *mode, *uid, *gid);
            builder.append_data(&mut h, format!("{path}/"), std::io::empty())
        }
        Entry::File { path, data, mode, uid, gid } => {
            let mut h = header(tar::EntryType::Regular, *mode, *uid, *gid);
            h.set_size(data.len() as u64);
            builder.append_data(&mut h, path, &data[..])
        }
        Entry::Symlink { path, target } => {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0);
            builder.append_link(&mut h, path, target)
        }
        Entry::HardLink { path, target } => {
            let mut h = header(tar::EntryType::Link, 0o755, 0, 0);
            builder.append_link(&mut h, path, target)
        }
        Entry::CharDevice { path, major, minor } => {
            let mut h = header(tar::EntryType::Char, 0o666, 0, 0);
            h.set_device_major(*major)?;
            h.set_device_minor(*minor)?;
            builder.append_data(&mut h, path, std::io::empty())
        }
        Entry::Raw { path } => {
            let mut h = header(tar::EntryType::Regular, 0o644, 0, 0);
            builder.append_data(&mut h, path, std::io::empty())
        }
    }
}

/// The users of the busybox image.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
                      app:x:1000:1000:app:/home/app:/bin/sh\n";
/// The groups of the busybox image.
const GROUP: &str = "root:x:0:\nnobody:x:65534:\napp:x:1000:\n";

/// The busybox root filesystem as an uncompressed tar, built once per process.
fn busybox_tar() -> Result<Arc<Vec<u8>>, ImageError> {
    static CACHE: Mutex<Option<Arc<Vec<u8>>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(tar) = cache.as_ref() {
        return Ok(tar.clone());
    }
    let binary = std::fs::read(BUSYBOX).map_err(ImageError::io(BUSYBOX))?;
    let list = std::process::Command::new(BUSYBOX).arg("--list").output().map_err(ImageError::io(BUSYBOX))?;
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect();
    applets.sort();
    let mut layer = Layer::new();
    for (dir, mode) in
        [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755), ("proc", 0o555), ("root", 0o700)]
    {
        layer = layer.dir(dir, mode);
    }
    layer = layer
        .dir_owned("home/app", 0o755, 1000, 1000)
        .dir("sys", 0o555)
        .dir("tmp", 0o1777)
        .dir("usr", 0o755)
        .dir("var", 0o755)
        .file("bin/busybox", binary, 0o755);
    for applet in &applets {
        layer = layer.hard_link(&format!("bin/{applet}"), "bin/busybox");
    }
    let tar = Arc::new(layer.file("etc/passwd", PASSWD, 0o644).file("etc/group", GROUP, 0o644).to_tar());
    *cache = Some(tar.clone());
    Ok(tar)
}

/// What was built: names and digests a test can check against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestImage {
    /// The normalised reference the image is named by (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The image ID (its config's digest).
    pub id: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The layers, bottom first.
    pub layers: Vec<TestLayer>,
}

/// A built layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestLayer {
    /// The (compressed) blob's digest.
    pub digest: String,
    /// The uncompressed tar's digest.
    pub diff_id: String,
}

/// An image's index.json, its blobs by digest, and what was built.
struct Built {
    index: Vec<u8>,
    blobs: BTreeMap<String, Vec<u8>>,
    image: TestImage,
}

/// Builds an OCI image from a busybox base and/or described layers.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    reference: String,
    busybox: bool,
    layers: Vec<Layer>,
    config: ImageConfig,
    compression: Compression,
}

impl ImageBuilder {
    /// An image with no layers yet, named `reference` (normalised when written).
    pub fn new(reference: &str) -> ImageBuilder {
        ImageBuilder {
            reference: reference.to_string(),
            busybox: false,
            layers: Vec::new(),
            config: ImageConfig {
                env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
                ..Default::default()
            },
            compression: Compression::Gzip,
        }
    }

    /// An image whose bottom layer is the busybox root filesystem, running `sh` by default.
    pub fn busybox(reference: &str) -> ImageBuilder {
        let mut builder = ImageBuilder::new(reference);
        builder.busybox = true;
        builder.config.cmd = vec!["sh".into()];
        builder
    }

    /// Adds a layer on top.
    pub fn layer(mut self, layer: Layer) -> ImageBuilder {
        self.layers.push(layer);
        self
    }

    /// Replaces the run settings (env, entrypoint, cmd, working directory, user, stop signal).
    pub fn config(mut self, config: ImageConfig) -> ImageBuilder {
        self.config = config;
        self
    }

    /// Compression of every layer (gzip by default).
    pub fn compression(mut self, compression: Compression) -> ImageBuilder {
        self.compression = compression;
        self
    }

    /// Builds the blobs.
    fn build(&self) -> Result<Built, ImageError> {
        let reference = Reference::parse(&self.reference)
            .map_err(|source| ImageError::InvalidReference { reference: self.reference.clone(), source })?;
        let mut tars: Vec<Arc<Vec<u8>>> = Vec::new();
        if self.busybox {
            tars.push(busybox_tar()?);
        }
        tars.extend(self.layers.iter().map(|l| Arc::new(l.to_tar())));
        let mut blobs = BTreeMap::new();
        let mut layers = Vec::new();
        let mut descriptors = Vec::new();
        let media_type = match self.compression {
            Compression::Gzip => oci::OCI_LAYER_GZIP,
            Compression::Zstd => oci::OCI_LAYER_ZSTD,
            Compression::None => oci::OCI_LAYER_TAR,
        };
        for tar in &tars {
            let blob = compress(tar, self.compression)?;
            let layer = TestLayer { digest: digest_bytes(&blob), diff_id: digest_bytes(tar) };
            descriptors.push(oci::Descriptor {
                media_type: media_type.into(),
                digest: layer.digest.clone(),
                size: blob.len() as u64,
                ..Default::default()
            });
            blobs.insert(layer.digest.clone(), blob);
            layers.push(layer);
        }
        let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let config = oci::ConfigFile {
            architecture: host_architecture().into(),
            os: "linux".into(),
            config: Some(oci::RunConfig {
                env: non_empty(&self.config.env),
                entrypoint: non_empty(&self.config.entrypoint),
                cmd: non_empty(&self.config.cmd),
                working_dir: Some(self.config.working_dir.clone()).filter(|s| !s.is_empty()),
                user: Some(self.config.user.clone()).filter(|s| !s.is_empty()),
                stop_signal: Some(self.config.stop_signal.clone()).filter(|s| !s.is_empty()),
            }),
            rootfs: oci::RootFs { kind: "layers".into(), diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect() },
        };
        let config_bytes = serde_json::to_vec(&config).map_err(ImageError::json("test image config"))?;
        let config_digest = digest_bytes(&config_bytes);
        let manifest = oci::Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            config: oci::Descriptor {
                media_type: oci::OCI_CONFIG.into(),
                digest: config_digest.clone(),
                size: config_bytes.len() as u64,
                ..Default::default()
            },
            layers: descriptors,
        };
        blobs.insert(config_digest.clone(), config_bytes);
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(ImageError::json("test image manifest"))?;
        let manifest_digest = digest_bytes(&manifest_bytes);
        let mut annotations = BTreeMap::new();
        annotations.insert(oci::ANNOTATION_IMAGE_NAME.to_string(), reference.to_string());
        if let Some(tag) = reference.tag() {
            annotations.insert(oci::ANNOTATION_REF_NAME.to_string(), tag.to_string());
        }
        let index = oci::Index {
            schema_version: 2,
            media_type: Some(oci::OCI_INDEX.into()),
            manifests: vec![oci::Descriptor {
                media_type: oci::OCI_MANIFEST.into(),
                digest: manifest_digest.clone(),
                size: manifest_bytes.len() as u64,
                annotations: Some(annotations),
                platform: None,
            }],
        };
        blobs.insert(manifest_digest.clone(), manifest_bytes);
        let index_bytes = serde_json::to_vec(&index).map_err(ImageError::json("test image index"))?;
        let image = TestImage { reference: reference.to_string(), id: config_digest, manifest_digest, layers };
        Ok(Built { index: index_bytes, blobs, image })
    }

    /// Writes the image as an OCI archive: an (uncompressed) tar of an OCI image layout.
    pub fn write_archive(&self, path: &Path) -> Result<TestImage, ImageError> {
        let Built { index, blobs, image } = self.build()?;
        let file = std::fs::File::create(path).map_err(ImageError::io(path))?;
        let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
        let io_error = ImageError::io(path);
        let result = (|| {
            for dir in ["blobs/", "blobs/sha256/"] {
                let mut h = header(tar::EntryType::Directory, 0o755, 0, 0);
                builder.append_data(&mut h, dir, std::io::empty())?;
            }
            let mut files: Vec<(String, &[u8])> =
                vec![("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#), ("index.json".into(), &index)];
            for (digest, bytes) in &blobs {
                files.push((format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")), bytes));
            }
            for (name, bytes) in files {
                let mut h = header(tar::EntryType::Regular, 0o644, 0, 0);
                h.set_size(bytes.len() as u64);
                builder.append_data(&mut h, name, bytes)?;
            }
            builder.into_inner()?.flush()
        })();
        result.map_err(io_error)?;
        Ok(image)
    }

    /// Writes the image as an OCI image layout directory (created if needed).
    pub fn write_layout(&self, dir: &Path) -> Result<TestImage, ImageError> {
        let Built { index, blobs, image } = self.build()?;
        let blob_dir = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blob_dir).map_err(ImageError::io(&blob_dir))?;
        let write = |path: PathBuf, bytes: &[u8]| std::fs::write(&path, bytes).map_err(ImageError::io(&path));
        write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        write(dir.join("index.json"), &index)?;
        for (digest, bytes) in &blobs {
            write(blob_dir.join(digest.trim_start_matches("sha256:")), bytes)?;
        }
        Ok(image)
    }
}

fn compress(tar: &[u8], compression: Compression) -> Result<Vec<u8>, ImageError> {
    match compression {
        Compression::None => Ok(tar.to_vec()),
        Compression::Zstd => Ok(ruzstd::encoding::compress_to_vec(tar, ruzstd::encoding::CompressionLevel::Fastest)),
        Compression::Gzip => {
            // Level 1: test images favour speed; the gzip header carries no name or time, so output is stable.
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(tar).map_err(ImageError::io("<gzip>"))?;
            encoder.finish().map_err(ImageError::io("<gzip>"))
        }
    }
}

/// Writes a busybox image named `reference` as an OCI archive at `path`.
pub fn write_busybox_archive(path: &Path, reference: &str) -> Result<TestImage, ImageError> {
    ImageBuilder::busybox(reference).write_archive(path)
}

/// A registry (Debian's `docker-registry`, Distribution 2.8) serving plain HTTP on a free loopback port, with
/// its storage in a temporary directory; killed when dropped.
pub struct TestRegistry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts an open registry and waits until it listens.
    pub fn start() -> std::io::Result<TestRegistry> {
        TestRegistry::start_with(None)
    }

    /// Starts a registry that only lets the users of `htpasswd` (lines of `user:bcrypt-hash`) push and pull.
    pub fn start_with_htpasswd(htpasswd: &str) -> std::io::Result<TestRegistry> {
        TestRegistry::start_with(Some(htpasswd))
    }

    fn start_with(htpasswd: Option<&str>) -> std::io::Result<TestRegistry> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\n\
             http: {{addr: 127.0.0.1:{port}}}\n",
            dir.path().join("data").display()
        );
        if let Some(htpasswd) = htpasswd {
            std::fs::write(dir.path().join("htpasswd"), htpasswd)?;
            config.push_str(&format!(
                "auth: {{htpasswd: {{realm: gantry-test, path: {}}}}}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config)?;
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut registry = TestRegistry { child, port, _dir: dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = registry.child.try_wait()? {
                return Err(std::io::Error::other(format!("docker-registry exited: {status}")));
            }
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "docker-registry did not listen"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(registry)
    }

    /// `127.0.0.1:PORT`, the registry part of references to it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the image tagged `tag` in an OCI archive as `repository:tag` with `skopeo` (`creds`: `user:password`).
    pub fn push(&self, archive: &Path, repository: &str, tag: &str, creds: Option<&str>) -> std::io::Result<()> {
        let mut command = std::process::Command::new("skopeo");
        command
            .args(["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}:{tag}", archive.display()))
            .arg(format!("docker://{}/{repository}:{tag}", self.host()));
        if let Some(creds) = creds {
            command.arg(format!("--dest-creds={creds}"));
        }
        let out = command.output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("skopeo copy: {}", String::from_utf8_lossy(&out.stderr).trim())))
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resets a runtime from synchronous code (a test's cleanup guard, which may run on an async runtime's thread):
/// on a thread of its own with a runtime of its own, every sandbox and container is removed. Errors are printed,
/// not returned: cleanup goes as far as it can.
pub fn reset_blocking(runtime: &crate::native::NativeRuntime) {
    let runtime = runtime.clone();
    let outcome = std::thread::spawn(move || {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        tokio.block_on(runtime.reset()).map_err(std::io::Error::other)
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!("cleanup: runtime reset: {err}"),
        Err(_) => eprintln!("cleanup: runtime reset panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_images_are_reproducible_and_share_their_base_layer() {
        if !Path::new(BUSYBOX).exists() {
            eprintln!("skipped: {BUSYBOX} missing (Debian package busybox-static)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let a = write_busybox_archive(&dir.path().join("a.tar"), "busybox").unwrap();
        let again = write_busybox_archive(&dir.path().join("again.tar"), "busybox").unwrap();
        let b = ImageBuilder::busybox("localhost:5000/b:1")
            .layer(Layer::new().file("etc/motd", "hi", 0o644).whiteout("bin/vi"))
            .write_archive(&dir.path().join("b.tar"))
            .unwrap();
        assert!(started.elapsed() < std::time::Duration::from_millis(1500), "{:?}", started.elapsed());
        assert_eq!(a, again);
        assert_eq!(a.reference, "docker.io/library/busybox:latest");
        assert_eq!(b.layers.len(), 2);
        assert_eq!(a.layers[0], b.layers[0]);
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn whiteouts_and_opaque_markers_are_named_as_oci_layers_name_them() {
        let tar = Layer::new().whiteout("/etc/passwd").opaque("/var/lib").to_tar();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["etc/.wh.passwd", "var/lib/.wh..wh..opq"]);
    }
}
