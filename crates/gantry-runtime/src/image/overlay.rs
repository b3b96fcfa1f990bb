//! Overlay root filesystems over the store's unpacked layers.
//!
//! `mount(2)` takes the options in one page: with layers under a long store path, 40 layers of
//! `/var/lib/gantry/images/layers/<64 hex>` alone fill it. When the options would not fit, the lower directories
//! are reached through short symlinks in a fresh directory under `/run` (`/run/gantry-ovl-XXXXXX/<n>`), which the
//! kernel resolves at mount time; the links are removed right after the mount.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::ImageError;

/// Mounts an overlay at `target` whose lower layers are `lowers`, given **bottom layer first** (as
/// [`ImageStore::rootfs_layers`](super::ImageStore::rootfs_layers) returns them), with `upper` and `work` (empty
/// directories on the same filesystem) for the writable layer.
pub fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), ImageError> {
    if lowers.is_empty() {
        return Err(ImageError::InvalidImage {
            what: target.display().to_string(),
            problem: "an overlay needs at least one lower layer".into(),
        });
    }
    // overlayfs lists the top layer first.
    let top_first: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
    let page = rustix::param::page_size();
    let options = overlay_options(&top_first, upper, work);
    if options.len() < page {
        return mount(&options, target);
    }
    let links_parent = if Path::new("/run").is_dir() { PathBuf::from("/run") } else { std::env::temp_dir() };
    let links = tempfile::Builder::new()
        .prefix("gantry-ovl-")
        .tempdir_in(&links_parent)
        .map_err(ImageError::io(&links_parent))?;
    let mut short = Vec::with_capacity(top_first.len());
    for (i, lower) in top_first.iter().enumerate() {
        let link = links.path().join(format!("{i:x}"));
        std::os::unix::fs::symlink(lower, &link).map_err(ImageError::io(&link))?;
        short.push(link);
    }
    let short_refs: Vec<&Path> = short.iter().map(PathBuf::as_path).collect();
    let options = overlay_options(&short_refs, upper, work);
    if options.len() >= page {
        return Err(ImageError::TooManyLayers { layers: lowers.len() });
    }
    tracing::debug!(layers = lowers.len(), links = %links.path().display(), "overlay lower layers through short links");
    mount(&options, target)
}

fn mount(options: &str, target: &Path) -> Result<(), ImageError> {
    nix::mount::mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options))
        .map_err(|source| ImageError::Mount { operation: "mount overlay on", target: target.to_path_buf(), source })
}

/// The overlay mount options, with `:`, `,` and `\` in paths escaped as overlayfs reads them.
fn overlay_options(top_first: &[&Path], upper: &Path, work: &Path) -> String {
    let escape = |p: &Path| {
        let s = p.to_string_lossy();
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if matches!(c, ':' | ',' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    let lowers: Vec<String> = top_first.iter().map(|p| escape(p)).collect();
    let mut options = format!("lowerdir={},upperdir={},workdir={}", lowers.join(":"), escape(upper), escape(work));
    // Without the inode index, the same lower directories can serve many overlays at once (Docker does the same).
    if Path::new("/sys/module/overlay/parameters/index").exists() {
        options.push_str(",index=off");
    }
    options
}

/// Unmounts `target`; a target that is not mounted is not an error. A busy mount is detached lazily.
pub fn unmount(target: &Path) -> Result<(), ImageError> {
    let error = |source| ImageError::Mount { operation: "unmount", target: target.to_path_buf(), source };
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(error),
        Err(e) => Err(error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_in_paths_are_escaped_in_the_options() {
        let options = overlay_options(&[Path::new("/a:b"), Path::new("/c")], Path::new("/u,p"), Path::new("/w\\k"));
        assert!(options.starts_with(r"lowerdir=/a\:b:/c,upperdir=/u\,p,workdir=/w\\k"), "{options}");
    }
}
