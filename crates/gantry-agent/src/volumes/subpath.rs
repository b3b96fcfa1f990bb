//! `subPath` and `subPathExpr`: checking the path and resolving it inside its volume without letting a
//! symlink in the volume lead out of it.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// What is wrong with a `subPath` before touching the filesystem; the texts are the kubelet's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubPathError {
    /// An absolute path.
    #[error("error SubPath `{sub_path}` must not be an absolute path")]
    Absolute {
        /// The subPath.
        sub_path: String,
    },
    /// A `..` component.
    #[error("unable to provision SubPath `{sub_path}`: must not contain '..'")]
    Backsteps {
        /// The subPath.
        sub_path: String,
    },
    /// `subPathExpr` names variables the container does not have (or has empty).
    #[error("missing value for {names}")]
    MissingVariables {
        /// The names, sorted, comma-separated.
        names: String,
    },
}

/// Checks a `subPath` as the kubelet does: relative, no `..`.
pub fn check(sub_path: &str) -> Result<(), SubPathError> {
    if sub_path.starts_with('/') {
        return Err(SubPathError::Absolute { sub_path: sub_path.to_string() });
    }
    if sub_path.split('/').any(|part| part == "..") {
        return Err(SubPathError::Backsteps { sub_path: sub_path.to_string() });
    }
    Ok(())
}

/// Expands a `subPathExpr` with the container's environment; every referenced variable must be set and
/// non-empty, as the kubelet requires.
pub fn expand_expr(expr: &str, env: &[(String, String)]) -> Result<String, SubPathError> {
    let mut missing = std::collections::BTreeSet::new();
    let expanded = crate::env::expand_with(expr, |name| match env.iter().rev().find(|(k, _)| k == name) {
        Some((_, value)) if !value.is_empty() => value.clone(),
        _ => {
            missing.insert(name.to_string());
            String::new()
        }
    });
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(SubPathError::MissingVariables { names: missing.into_iter().collect::<Vec<_>>().join(", ") })
    }
}

/// Why a checked subPath could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Creating a missing directory of the subPath failed.
    #[error("creating {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Resolving the path failed.
    #[error("resolving {path}: {source}")]
    Resolve {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Bind-mounting the subPath failed.
    #[error("bind-mounting the subPath on {path}: {source}")]
    Bind {
        /// The mount point.
        path: PathBuf,
        /// The error.
        #[source]
        source: nix::errno::Errno,
    },
    /// The path resolves outside its volume (a symlink leads out).
    #[error("subpath {resolved} not within volume path {volume}")]
    Escapes {
        /// Where it leads.
        resolved: PathBuf,
        /// The volume.
        volume: PathBuf,
    },
}

/// Resolves a checked `sub_path` inside `volume`: symlinks are followed, and the result must stay inside the
/// volume; missing directories are created with the volume's permission bits (so a group with access to the
/// volume has access to them), as the kubelet does.
///
/// A symlink swapped in after this check is caught by [`bind_safely`], which the mount must go through.
pub fn resolve(volume: &Path, sub_path: &str) -> Result<PathBuf, ResolveError> {
    let resolve_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResolveError::Resolve { path, source }
    };
    let volume = volume.canonicalize().map_err(resolve_err(volume))?;
    let mode = std::fs::metadata(&volume).map_err(resolve_err(&volume))?.permissions().mode() & 0o7777;
    let mut current = volume.clone();
    for part in Path::new(sub_path).components() {
        let Component::Normal(part) = part else { continue };
        let next = current.join(part);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => {
                current = next.canonicalize().map_err(resolve_err(&next))?;
                if !current.starts_with(&volume) {
                    return Err(ResolveError::Escapes { resolved: current, volume });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let create_err = |source| ResolveError::Create { path: next.clone(), source };
                std::fs::create_dir(&next).map_err(create_err)?;
                std::fs::set_permissions(&next, std::fs::Permissions::from_mode(mode)).map_err(create_err)?;
                current = next;
            }
            Err(e) => return Err(resolve_err(&next)(e)),
        }
    }
    Ok(current)
}

/// Bind-mounts `resolved` (a path [`resolve`] returned inside `volume`) on `target`, opening it component by
/// component from the volume's root without following any symlink, so that a symlink swapped in after
/// [`resolve`] cannot redirect the mount out of the volume (the kubelet's safe subPath). `target` is created
/// (a directory or an empty file, like the source) and a mount already on it is detached first, so a
/// restarted container gets a fresh bind.
pub fn bind_safely(volume: &Path, resolved: &Path, target: &Path) -> Result<(), ResolveError> {
    use rustix::fs::{FileType, Mode, OFlags};
    let resolve_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| ResolveError::Resolve { path, source }
    };
    let volume = volume.canonicalize().map_err(resolve_err(volume))?;
    let escapes = || ResolveError::Escapes { resolved: resolved.to_path_buf(), volume: volume.clone() };
    let relative = resolved.strip_prefix(&volume).map_err(|_| escapes())?;
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(&volume, flags | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| resolve_err(&volume)(e.into()))?;
    let mut kind = FileType::Directory;
    for part in relative.components() {
        let Component::Normal(part) = part else { return Err(escapes()) };
        fd = rustix::fs::openat(&fd, part, flags, Mode::empty()).map_err(|e| resolve_err(resolved)(e.into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| resolve_err(resolved)(e.into()))?;
        kind = FileType::from_raw_mode(stat.st_mode);
        // A symlink here was swapped in after `resolve`: it could lead anywhere.
        if kind == FileType::Symlink {
            return Err(escapes());
        }
    }
    let create_err = |source| ResolveError::Create { path: target.to_path_buf(), source };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(create_err)?;
    }
    crate::volumes::mounts::unmount(target).map_err(|e| create_err(e.into()))?;
    let _ = std::fs::remove_dir(target).or_else(|_| std::fs::remove_file(target));
    if kind == FileType::Directory {
        std::fs::create_dir(target).map_err(create_err)?;
    } else {
        std::fs::File::create(target).map_err(create_err)?;
    }
    let source = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)));
    nix::mount::mount(Some(&source), target, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| ResolveError::Bind { path: target.to_path_buf(), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn absolute_sub_paths_and_backsteps_are_refused_in_the_kubelet_words() {
        assert_eq!(check("/etc").expect_err("abs").to_string(), "error SubPath `/etc` must not be an absolute path");
        assert_eq!(
            check("a/../../b").expect_err("dots").to_string(),
            "unable to provision SubPath `a/../../b`: must not contain '..'"
        );
        assert!(check("a/..b/c..").is_ok());
    }

    #[test]
    fn sub_path_expressions_need_every_variable_set() {
        let vars = env(&[("POD", "web-0"), ("EMPTY", "")]);
        assert_eq!(expand_expr("logs/$(POD)", &vars).expect("expand"), "logs/web-0");
        assert_eq!(
            expand_expr("$(NOPE)/$(EMPTY)/$(POD)", &vars).expect_err("missing").to_string(),
            "missing value for EMPTY, NOPE"
        );
        assert_eq!(expand_expr("$$(NOPE)", &vars).expect("escaped"), "$(NOPE)");
    }

    #[test]
    fn missing_directories_are_created_with_the_volume_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let resolved = resolve(dir.path(), "a/b").expect("resolve");
        assert_eq!(resolved, dir.path().canonicalize().expect("canon").join("a/b"));
        assert_eq!(std::fs::metadata(&resolved).expect("meta").permissions().mode() & 0o777, 0o777);
    }

    #[test]
    fn symlinks_inside_the_volume_are_followed_and_those_leading_out_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("real")).expect("mkdir");
        symlink("real", dir.path().join("inside")).expect("symlink");
        symlink("/etc", dir.path().join("outside")).expect("symlink");
        symlink("../..", dir.path().join("real/up")).expect("symlink");
        let canon = dir.path().canonicalize().expect("canon");
        assert_eq!(resolve(dir.path(), "inside").expect("inside"), canon.join("real"));
        assert!(matches!(resolve(dir.path(), "outside"), Err(ResolveError::Escapes { .. })));
        assert!(matches!(resolve(dir.path(), "real/up/tmp"), Err(ResolveError::Escapes { .. })));
    }

    #[test]
    fn a_symlink_swapped_in_after_resolving_is_refused_before_any_mount() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("real")).expect("mkdir");
        let resolved = resolve(dir.path(), "real").expect("resolve");
        std::fs::remove_dir(&resolved).expect("rmdir");
        symlink("/etc", &resolved).expect("symlink");
        let target = dir.path().join("bind");
        assert!(matches!(bind_safely(dir.path(), &resolved, &target), Err(ResolveError::Escapes { .. })));
        assert!(!target.exists(), "nothing was mounted");
        let outside = std::env::temp_dir();
        assert!(matches!(bind_safely(dir.path(), &outside, &target), Err(ResolveError::Escapes { .. })));
    }
}
