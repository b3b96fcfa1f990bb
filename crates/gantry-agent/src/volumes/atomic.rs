//! Writing a set of files into a volume so that a running container sees an update all at once, as the
//! kubelet's AtomicWriter does.
//!
//! The files live in a timestamped directory (`..2026_11_28_02_52_36.1234`); `..data` is a symlink to it;
//! every top-level name the user sees is a symlink `name -> ..data/name`. An update writes a new timestamped
//! directory, points a fresh `..data_tmp` symlink at it and renames that over `..data` (rename is atomic), then
//! drops the old directory. A reader following `name` sees either all old or all new contents.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The symlink that points at the current timestamped directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// One file of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    /// Its contents.
    pub data: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
}

/// Files by path relative to the volume.
pub type Payload = BTreeMap<String, FileProjection>;

/// Why a payload could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    /// A payload path is not a safe relative path.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it (the kubelet's words).
        reason: &'static str,
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
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AtomicError {
    let path = path.to_path_buf();
    move |source| AtomicError::Io { op, path, source }
}

/// Checks a payload path as the kubelet does and returns it cleaned (`a//b/./c` is `a/b/c`).
pub fn clean_path(path: &str) -> Result<String, AtomicError> {
    let invalid = |reason| AtomicError::InvalidPath { path: path.to_string(), reason };
    if path.len() > MAX_PATH_LENGTH {
        return Err(invalid("must be less than or equal to 4096 characters"));
    }
    if path.starts_with('/') {
        return Err(invalid("must be relative path"));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if path.split('/').any(|p| p == "..") {
        return Err(invalid("must not contain '..'"));
    }
    if parts.iter().any(|p| p.len() > MAX_FILE_NAME_LENGTH) {
        return Err(invalid("must not have any element longer than 255 characters"));
    }
    match parts.first() {
        None => Err(invalid("must not be empty")),
        // `..data` and the timestamped directories are the writer's own names.
        Some(first) if first.starts_with("..") => Err(invalid("must not start with '..'")),
        Some(_) => Ok(parts.join("/")),
    }
}

/// Writes `payload` into `target` (which must exist) if anything changed, calling `set_perms(target)` on the
/// finished tree before it becomes visible. Returns whether a new version was written. Contents are compared;
/// modes are not (they only change with the pod spec, which cannot change).
pub fn write(
    target: &Path,
    payload: &Payload,
    set_perms: &dyn Fn(&Path) -> Result<(), AtomicError>,
) -> Result<bool, AtomicError> {
    let mut clean = Payload::new();
    for (path, file) in payload {
        clean.insert(clean_path(path)?, file.clone());
    }
    let data_link = target.join(DATA_DIR);
    let old_ts = match std::fs::read_link(&data_link) {
        Ok(dir) => Some(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("reading the link", &data_link)(e)),
    };
    let old_files = match &old_ts {
        Some(dir) => list_files(&target.join(dir))?,
        None => BTreeSet::new(),
    };
    let new_top: BTreeSet<&str> = clean.keys().map(|p| top_level(p)).collect();
    let old_top: BTreeSet<String> = old_files.iter().map(|p| top_level(p).to_string()).collect();
    let to_remove: Vec<&String> = old_top.iter().filter(|p| !new_top.contains(p.as_str())).collect();
    let changed = old_ts.is_none()
        || old_files.len() != clean.len()
        || clean.iter().any(|(path, file)| {
            let on_disk = old_ts.as_ref().map(|dir| target.join(dir).join(path));
            !old_files.contains(path) || on_disk.and_then(|p| std::fs::read(p).ok()).as_deref() != Some(&file.data)
        });
    if !changed && to_remove.is_empty() {
        ensure_visible(target, &new_top)?;
        return Ok(false);
    }

    let ts_dir = new_timestamp_dir(target)?;
    for (path, file) in &clean {
        let full = ts_dir.join(path);
        if let Some(parent) = full.parent()
            && parent != ts_dir
        {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
            set_mode_tree(&ts_dir, parent, 0o755)?;
        }
        std::fs::write(&full, &file.data).map_err(io_err("writing", &full))?;
        // The process umask applies at creation; the mode asked for is set explicitly.
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(file.mode & 0o7777))
            .map_err(io_err("setting the mode of", &full))?;
    }
    set_perms(target)?;

    let tmp_link = target.join(DATA_DIR_TMP);
    match std::fs::remove_file(&tmp_link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("removing", &tmp_link)(e)),
    }
    let ts_name = ts_dir.file_name().map(PathBuf::from).unwrap_or_default();
    symlink(&ts_name, &tmp_link).map_err(io_err("creating the link", &tmp_link))?;
    std::fs::rename(&tmp_link, &data_link).map_err(io_err("renaming the link to", &data_link))?;

    ensure_visible(target, &new_top)?;
    for name in to_remove {
        let visible = target.join(name);
        match std::fs::remove_file(&visible) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", &visible)(e)),
        }
    }
    remove_stale_timestamp_dirs(target, &ts_name)?;
    Ok(true)
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Regular files under `dir`, as relative paths; empty if `dir` is gone.
fn list_files(dir: &Path) -> Result<BTreeSet<String>, AtomicError> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> Result<(), AtomicError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("listing", dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("listing", dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io_err("inspecting", &path))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Directories between `root` (exclusive) and `dir` (inclusive) get `mode`: group and others must be able to
/// reach the files whatever the umask.
fn set_mode_tree(root: &Path, dir: &Path, mode: u32) -> Result<(), AtomicError> {
    let mut current = dir;
    while current != root && current.starts_with(root) {
        std::fs::set_permissions(current, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("setting the mode of", current))?;
        match current.parent() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    Ok(())
}

fn new_timestamp_dir(target: &Path) -> Result<PathBuf, AtomicError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let stamp = jiff::Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.").to_string();
    loop {
        // Unique enough to rarely collide; a collision just tries the next number.
        let nanos = jiff::Timestamp::now().subsec_nanosecond().unsigned_abs();
        let count = COUNTER.fetch_add(1, Ordering::Relaxed) % 1000;
        let dir = target.join(format!("{stamp}{nanos}{count:03}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err("setting the mode of", &dir))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &dir)(e)),
        }
    }
}

/// Every top-level name of the payload is a symlink into `..data`.
fn ensure_visible(target: &Path, names: &BTreeSet<&str>) -> Result<(), AtomicError> {
    for name in names {
        let visible = target.join(name);
        match std::fs::symlink_metadata(&visible) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                symlink(Path::new(DATA_DIR).join(name), &visible).map_err(io_err("creating the link", &visible))?;
            }
            Err(e) => return Err(io_err("inspecting", &visible)(e)),
        }
    }
    Ok(())
}

/// Drops every timestamped directory but the current one, including those an interrupted write left behind.
fn remove_stale_timestamp_dirs(target: &Path, current: &Path) -> Result<(), AtomicError> {
    let entries = std::fs::read_dir(target).map_err(io_err("listing", target))?;
    for entry in entries {
        let entry = entry.map_err(io_err("listing", target))?;
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        let is_timestamp_dir = name_text.starts_with("..") && name_text != DATA_DIR && name_text != DATA_DIR_TMP;
        if !is_timestamp_dir || Path::new(&name) == current {
            continue;
        }
        let path = entry.path();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&path).map_err(io_err("removing", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection { data: data.as_bytes().to_vec(), mode }
    }

    fn no_perms(_: &Path) -> Result<(), AtomicError> {
        Ok(())
    }

    #[test]
    fn paths_are_cleaned_and_unsafe_ones_refused() {
        assert_eq!(clean_path("a//b/./c").expect("clean"), "a/b/c");
        assert!(matches!(
            clean_path("/etc/passwd"),
            Err(AtomicError::InvalidPath { reason: "must be relative path", .. })
        ));
        assert!(matches!(clean_path("a/../b"), Err(AtomicError::InvalidPath { reason: "must not contain '..'", .. })));
        assert!(matches!(
            clean_path("..data"),
            Err(AtomicError::InvalidPath { reason: "must not start with '..'", .. })
        ));
        assert!(clean_path("a..b/..c").is_ok());
    }

    #[test]
    fn files_are_reached_through_the_data_link_with_their_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let payload = Payload::from([("key".into(), file("v1", 0o600)), ("sub/nested".into(), file("n", 0o644))]);
        assert!(write(dir.path(), &payload, &no_perms).expect("write"));
        assert_eq!(std::fs::read_link(dir.path().join("key")).expect("link"), Path::new("..data/key"));
        assert_eq!(std::fs::read_link(dir.path().join("sub")).expect("link"), Path::new("..data/sub"));
        assert_eq!(std::fs::read_to_string(dir.path().join("key")).expect("read"), "v1");
        assert_eq!(std::fs::read_to_string(dir.path().join("sub/nested")).expect("read"), "n");
        assert_eq!(std::fs::metadata(dir.path().join("key")).expect("meta").mode() & 0o7777, 0o600);
        let ts = std::fs::read_link(dir.path().join(DATA_DIR)).expect("data link");
        assert!(ts.to_string_lossy().starts_with("..20"), "{ts:?}");
        assert_eq!(std::fs::metadata(dir.path().join(&ts)).expect("meta").mode() & 0o777, 0o755);
    }

    #[test]
    fn an_unchanged_payload_writes_nothing_and_a_change_swaps_the_data_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let payload = Payload::from([("a".into(), file("1", 0o644)), ("b".into(), file("2", 0o644))]);
        write(dir.path(), &payload, &no_perms).expect("write");
        let first = std::fs::read_link(dir.path().join(DATA_DIR)).expect("link");
        assert!(!write(dir.path(), &payload, &no_perms).expect("rewrite"));
        assert_eq!(std::fs::read_link(dir.path().join(DATA_DIR)).expect("link"), first);

        let update = Payload::from([("a".into(), file("changed", 0o644))]);
        assert!(write(dir.path(), &update, &no_perms).expect("update"));
        let second = std::fs::read_link(dir.path().join(DATA_DIR)).expect("link");
        assert_ne!(second, first);
        assert!(!dir.path().join(&first).exists(), "the old version is removed");
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).expect("read"), "changed");
        assert!(std::fs::symlink_metadata(dir.path().join("b")).is_err(), "a dropped key disappears");
    }

    #[test]
    fn set_perms_runs_before_the_new_version_is_visible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let payload = Payload::from([("a".into(), file("1", 0o644))]);
        let seen = std::cell::Cell::new(false);
        let check = |target: &Path| {
            seen.set(true);
            assert!(std::fs::symlink_metadata(target.join(DATA_DIR)).is_err());
            Ok(())
        };
        write(dir.path(), &payload, &check).expect("write");
        assert!(seen.get());
    }

    #[test]
    fn an_empty_payload_still_makes_a_data_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(write(dir.path(), &Payload::new(), &no_perms).expect("write"));
        assert!(dir.path().join(DATA_DIR).is_dir());
    }
}
