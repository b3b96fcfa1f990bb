//! Unpacking a layer tar into a directory that overlayfs can use as a lower layer as it is.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.name` a 0/0 character device `name`, `.wh..wh..opq` the
//! `trusted.overlay.opaque=y` attribute on its directory. Ownership, modes, times, extended attributes, symlinks,
//! hard links and device nodes are kept. The destination starts empty and everything in it was made here, so the
//! only symlinks an entry could be written through are ones this layer made: entries below them, and hard links to
//! paths below them, are refused, as are paths leaving the root with `..`.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};
use sha2::Digest;

use super::{ImageError, digest_of};

/// The prefix of whiteout entries in OCI (and Docker) layers.
const WHITEOUT_PREFIX: &str = ".wh.";
/// The entry that makes its directory opaque.
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The xattr overlayfs reads to hide everything below a directory in lower layers.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Extended attributes of images that are never applied: they would steer overlayfs itself.
const RESERVED_XATTR_PREFIX: &str = "trusted.overlay.";

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Opens a layer blob and returns its uncompressed stream, whatever the compression (told by magic bytes, so a
/// mislabelled layer still unpacks).
pub(crate) fn decompressed(blob: &Path) -> Result<Box<dyn Read + Send>, ImageError> {
    let file = File::open(blob).map_err(ImageError::io(blob))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf().map_err(ImageError::io(blob))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || is_skippable_zstd_frame(head) {
        Ok(Box::new(ZstdFrames { source: reader, frame: ruzstd::decoding::FrameDecoder::new(), in_frame: false }))
    } else {
        Ok(Box::new(reader))
    }
}

/// Whether `head` starts with a zstd skippable frame (zstd:chunked layers start with one).
fn is_skippable_zstd_frame(head: &[u8]) -> bool {
    head.len() >= 4 && (0x184D2A50..=0x184D2A5F).contains(&u32::from_le_bytes([head[0], head[1], head[2], head[3]]))
}

/// Every frame of a zstd stream, one after the other: parallel compressors write several frames, and skippable
/// frames (zstd:chunked's metadata) are passed over.
struct ZstdFrames<R> {
    source: R,
    frame: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.frame.can_collect() == 0 && !self.frame.is_finished() {
                    self.frame
                        .decode_blocks(&mut self.source, ruzstd::decoding::BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(io::Error::other)?;
                }
                let n = self.frame.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.frame.reset(&mut self.source) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let skipped = io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                    if skipped < u64::from(length) {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

/// Unpacks the layer blob at `blob` into the existing, empty directory `dest`, checking that the uncompressed
/// tar has the digest `diff_id`. Returns the bytes of regular files unpacked.
pub(crate) fn unpack_layer(blob: &Path, diff_id: &str, dest: &Path) -> Result<u64, ImageError> {
    let reader = HashingReader { inner: decompressed(blob)?, hasher: sha2::Sha256::new() };
    let mut archive = tar::Archive::new(reader);
    let mut unpacker =
        Unpacker { blob, root: dest, layer: diff_id, symlinks: HashSet::new(), dirs: Vec::new(), size: 0 };
    let read_error = |source| ImageError::Io { path: blob.to_path_buf(), source };
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish_dirs()?;
    // The tar's end-of-archive padding is part of the diff_id.
    let mut reader = archive.into_inner();
    io::copy(&mut reader, &mut io::sink()).map_err(read_error)?;
    let actual = digest_of(reader.hasher);
    if actual != diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("layer {} (uncompressed)", blob.display()),
            expected: diff_id.to_string(),
            actual,
        });
    }
    Ok(unpacker.size)
}

struct Unpacker<'a> {
    /// The blob being unpacked: errors reading the tar name it.
    blob: &'a Path,
    root: &'a Path,
    layer: &'a str,
    /// Symlinks this layer made, relative to the root.
    symlinks: HashSet<PathBuf>,
    /// Directories and their modification times, set once everything below them exists.
    dirs: Vec<(PathBuf, i64)>,
    size: u64,
}

impl Unpacker<'_> {
    fn read_error(&self, source: io::Error) -> ImageError {
        ImageError::Io { path: self.blob.to_path_buf(), source }
    }

    fn unsafe_path(&self, entry: &Path) -> ImageError {
        ImageError::UnsafePath { layer: self.layer.to_string(), entry: entry.display().to_string() }
    }

    /// The entry's path relative to the root, with `.` dropped and `..` resolved; refused if it leaves the root or
    /// passes through a symlink of this layer.
    fn relative(&self, raw: &Path) -> Result<PathBuf, ImageError> {
        let mut rel = PathBuf::new();
        for component in raw.components() {
            match component {
                Component::Normal(part) => rel.push(part),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir => {
                    if !rel.pop() {
                        return Err(self.unsafe_path(raw));
                    }
                }
                Component::Prefix(_) => return Err(self.unsafe_path(raw)),
            }
        }
        if rel.ancestors().skip(1).any(|a| self.symlinks.contains(a)) {
            return Err(self.unsafe_path(raw));
        }
        Ok(rel)
    }

    fn ensure_parent(&self, path: &Path) -> Result<(), ImageError> {
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                fs::create_dir_all(parent).map_err(ImageError::io(parent))
            }
            _ => Ok(()),
        }
    }

    /// Removes what is at `path` unless it is a directory and a directory is wanted there.
    fn clear(&mut self, rel: &Path, path: &Path, want_dir: bool) -> Result<(), ImageError> {
        let Ok(meta) = fs::symlink_metadata(path) else { return Ok(()) };
        if meta.is_dir() {
            if !want_dir {
                fs::remove_dir_all(path).map_err(ImageError::io(path))?;
            }
        } else {
            fs::remove_file(path).map_err(ImageError::io(path))?;
            self.symlinks.remove(rel);
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = entry.path().map_err(|source| self.read_error(source))?.into_owned();
        let rel = self.relative(&raw)?;
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == OPAQUE_MARKER {
            let dir = self.root.join(rel.parent().unwrap_or(Path::new("")));
            fs::create_dir_all(&dir).map_err(ImageError::io(&dir))?;
            return rustix::fs::lsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| ImageError::io(&dir)(e.into()));
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other `.wh..wh.` names are aufs bookkeeping with nothing to unpack.
                return Ok(());
            }
            let rel = rel.with_file_name(hidden);
            let path = self.root.join(&rel);
            self.ensure_parent(&path)?;
            self.clear(&rel, &path, false)?;
            rustix::fs::mknodat(CWD, &path, FileType::CharacterDevice, Mode::empty(), rustix::fs::makedev(0, 0))
                .map_err(|e| ImageError::io(&path)(e.into()))?;
            return Ok(());
        }

        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|source| self.read_error(source))? & 0o7777;
        let uid = header.uid().map_err(|source| self.read_error(source))?;
        let gid = header.gid().map_err(|source| self.read_error(source))?;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let path = self.root.join(&rel);
        let (uid, gid) = (uid as u32, gid as u32);
        match kind {
            tar::EntryType::Directory => {
                self.ensure_parent(&path)?;
                self.clear(&rel, &path, true)?;
                if !path.exists() {
                    fs::create_dir(&path).map_err(ImageError::io(&path))?;
                }
                self.owner_and_mode(&path, uid, gid, Some(mode))?;
                self.dirs.push((path.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.ensure_parent(&path)?;
                self.clear(&rel, &path, false)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(ImageError::io(&path))?;
                let copied = copy_entry(entry, &mut file, self.blob, &path)?;
                self.size += copied;
                self.owner_and_mode(&path, uid, gid, Some(mode))?;
                set_mtime(&path, mtime)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|source| self.read_error(source))?
                    .ok_or_else(|| self.unsafe_path(&raw))?
                    .into_owned();
                self.ensure_parent(&path)?;
                self.clear(&rel, &path, false)?;
                std::os::unix::fs::symlink(&target, &path).map_err(ImageError::io(&path))?;
                self.owner_and_mode(&path, uid, gid, None)?;
                set_mtime(&path, mtime)?;
                self.symlinks.insert(rel.clone());
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name()
                    .map_err(|source| self.read_error(source))?
                    .ok_or_else(|| self.unsafe_path(&raw))?
                    .into_owned();
                let target_rel = self.relative(&target_raw)?;
                let target = self.root.join(&target_rel);
                if target_rel.as_os_str().is_empty() || target == path {
                    return Err(self.unsafe_path(&raw));
                }
                self.ensure_parent(&path)?;
                self.clear(&rel, &path, false)?;
                fs::hard_link(&target, &path).map_err(ImageError::io(&path))?;
                if self.symlinks.contains(&target_rel) {
                    self.symlinks.insert(rel.clone());
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.ensure_parent(&path)?;
                self.clear(&rel, &path, false)?;
                rustix::fs::mknodat(CWD, &path, file_type, Mode::empty(), rustix::fs::makedev(major, minor))
                    .map_err(|e| ImageError::io(&path)(e.into()))?;
                self.owner_and_mode(&path, uid, gid, Some(mode))?;
                set_mtime(&path, mtime)?;
            }
            other => {
                tracing::debug!(layer = self.layer, entry = %raw.display(), kind = ?other, "layer entry skipped");
                return Ok(());
            }
        }
        self.xattrs(entry, &path)
    }

    fn owner_and_mode(&self, path: &Path, uid: u32, gid: u32, mode: Option<u32>) -> Result<(), ImageError> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(ImageError::io(path))?;
        // After the chown, which clears set-id bits.
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(ImageError::io(path))?;
        }
        Ok(())
    }

    fn xattrs<R: Read>(&self, entry: &mut tar::Entry<'_, R>, path: &Path) -> Result<(), ImageError> {
        let Ok(Some(extensions)) = entry.pax_extensions() else { return Ok(()) };
        for extension in extensions.flatten() {
            let Some(name) = extension.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else { continue };
            if name.starts_with(RESERVED_XATTR_PREFIX) {
                tracing::warn!(layer = self.layer, path = %path.display(), name, "image xattr for overlayfs ignored");
                continue;
            }
            match rustix::fs::lsetxattr(path, name, extension.value_bytes(), XattrFlags::empty()) {
                Ok(()) => {}
                Err(rustix::io::Errno::NOTSUP) => {
                    tracing::warn!(layer = self.layer, path = %path.display(), name, "xattr not supported here");
                }
                Err(e) => return Err(ImageError::io(path)(e.into())),
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), ImageError> {
        for (path, mtime) in self.dirs.drain(..).rev() {
            set_mtime(&path, mtime)?;
        }
        Ok(())
    }
}

fn copy_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    file: &mut File,
    blob: &Path,
    path: &Path,
) -> Result<u64, ImageError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = entry.read(&mut buf).map_err(ImageError::io(blob))?;
        if n == 0 {
            return Ok(total);
        }
        io::Write::write_all(file, &buf[..n]).map_err(ImageError::io(path))?;
        total += n as u64;
    }
}

fn set_mtime(path: &Path, mtime: i64) -> Result<(), ImageError> {
    let at = Timespec { tv_sec: mtime, tv_nsec: 0 };
    let times = Timestamps { last_access: at, last_modification: at };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| ImageError::io(path)(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest_bytes;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        builder.into_inner().unwrap()
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<u64, ImageError>) {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, bytes).unwrap();
        let dest = dir.path().join("root");
        fs::create_dir(&dest).unwrap();
        let result = unpack_layer(&blob, &digest_bytes(bytes), &dest);
        (dir, result)
    }

    #[test]
    fn zstd_streams_of_several_frames_and_skippable_frames_decode_whole() {
        let level = ruzstd::encoding::CompressionLevel::Fastest;
        let mut stream = vec![0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9];
        stream.extend(ruzstd::encoding::compress_to_vec(&b"first frame, "[..], level));
        stream.extend(ruzstd::encoding::compress_to_vec(&b"second frame"[..], level));
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, &stream).unwrap();
        let mut out = String::new();
        decompressed(&blob).unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "first frame, second frame");
        fs::write(&blob, &stream[..stream.len() - 3]).unwrap();
        assert!(decompressed(&blob).unwrap().read_to_string(&mut String::new()).is_err(), "a truncated frame");
    }

    #[test]
    fn paths_leaving_the_root_are_refused() {
        for bad in ["../escape", "a/../../escape"] {
            let bytes = tar_of(|b| {
                let mut h = header(tar::EntryType::Regular, 1);
                // set_path refuses `..`, as a well-behaved writer would; a hostile tar has it in the raw name.
                h.as_old_mut().name[..bad.len()].copy_from_slice(bad.as_bytes());
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
            });
            let (_dir, result) = unpack(&bytes);
            assert!(matches!(result, Err(ImageError::UnsafePath { .. })), "{bad}: {result:?}");
        }
    }

    #[test]
    fn entries_below_a_symlink_of_the_layer_are_refused() {
        let bytes = tar_of(|b| {
            let mut h = header(tar::EntryType::Symlink, 0);
            b.append_link(&mut h, "etc", "/etc").unwrap();
            let mut h = header(tar::EntryType::Regular, 1);
            b.append_data(&mut h, "etc/evil", &b"x"[..]).unwrap();
        });
        let (dir, result) = unpack(&bytes);
        assert!(matches!(result, Err(ImageError::UnsafePath { .. })), "{result:?}");
        assert!(!dir.path().join("root/etc/evil").exists());
    }

    #[test]
    fn a_wrong_diff_id_is_refused_after_unpacking() {
        let bytes = tar_of(|b| {
            let mut h = header(tar::EntryType::Regular, 2);
            b.append_data(&mut h, "f", &b"hi"[..]).unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, &bytes).unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        let wrong = digest_bytes(b"something else");
        let err = unpack_layer(&blob, &wrong, &dir.path().join("root")).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn files_links_and_whiteouts_are_unpacked_as_overlayfs_expects() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root (ownership, device nodes, trusted xattrs)");
            return;
        }
        let bytes = tar_of(|b| {
            let mut h = header(tar::EntryType::Directory, 0);
            h.set_mode(0o1777);
            b.append_data(&mut h, "tmp", io::empty()).unwrap();
            let mut h = header(tar::EntryType::Regular, 5);
            h.set_uid(1000);
            h.set_gid(1001);
            h.set_mode(0o4755);
            b.append_data(&mut h, "bin/tool", &b"hello"[..]).unwrap();
            let mut h = header(tar::EntryType::Link, 0);
            b.append_link(&mut h, "bin/alias", "bin/tool").unwrap();
            let mut h = header(tar::EntryType::Symlink, 0);
            b.append_link(&mut h, "bin/sym", "tool").unwrap();
            let mut h = header(tar::EntryType::Regular, 0);
            b.append_data(&mut h, "etc/.wh.gone", io::empty()).unwrap();
            let mut h = header(tar::EntryType::Regular, 0);
            b.append_data(&mut h, "var/.wh..wh..opq", io::empty()).unwrap();
            let mut h = header(tar::EntryType::Char, 0);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            b.append_data(&mut h, "dev/null", io::empty()).unwrap();
        });
        let (dir, result) = unpack(&bytes);
        assert_eq!(result.unwrap(), 5);
        let root = dir.path().join("root");
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let tool = fs::metadata(root.join("bin/tool")).unwrap();
        assert_eq!((tool.uid(), tool.gid(), tool.mode() & 0o7777), (1000, 1001, 0o4755));
        assert_eq!(tool.mtime(), 1_000_000);
        assert_eq!(fs::metadata(root.join("bin/alias")).unwrap().ino(), tool.ino());
        assert_eq!(fs::read_link(root.join("bin/sym")).unwrap(), Path::new("tool"));
        assert_eq!(fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
        let gone = fs::symlink_metadata(root.join("etc/gone")).unwrap();
        assert!(gone.file_type().is_char_device());
        assert_eq!(gone.rdev(), 0);
        assert!(!root.join("etc/.wh.gone").exists());
        let mut value = [0u8; 4];
        let n = rustix::fs::lgetxattr(root.join("var"), OPAQUE_XATTR, &mut value).unwrap();
        assert_eq!(&value[..n], b"y");
        let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    }
}
