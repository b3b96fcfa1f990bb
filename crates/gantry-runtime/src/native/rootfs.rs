//! The container's root filesystem: an overlay of the image's layers under a private writable layer.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::cri::RuntimeError;

/// Mounts `layers` (bottom first) read-only under the writable `upper` at `target`.
pub fn mount(layers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), RuntimeError> {
    if layers.is_empty() {
        return Err(RuntimeError::Invalid("the image has no layers".to_string()));
    }
    // overlayfs lists the top layer first.
    let lower: Vec<String> = layers.iter().rev().map(|p| p.display().to_string()).collect();
    let options = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display());
    nix::mount::mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
        .map_err(|source| RuntimeError::Sys { context: format!("mount overlay on {}", target.display()), source })
}

/// Lazily unmounts `target`; a target that is not mounted is fine.
pub fn unmount(target: &Path) {
    let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
}
