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
/// The kubelet closes the window between this check and the runtime's bind mount by bind-mounting from a file
/// descriptor opened without following symlinks; here a container writing to the volume at the same moment
/// could still swap a directory for a symlink in that window. The volumes this node serves are written by the
/// agent itself (configMap, secret, ...) or by the pod's own containers (emptyDir, hostPath).
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
}
