//! The few mount operations volumes need: tmpfs for memory-backed volumes, finding mounts under a pod's
//! directory (from `/proc/self/mountinfo`) and detaching them.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// Mount points listed in `/proc/self/mountinfo` text, with the kernel's octal escapes undone.
pub fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).map(|field| PathBuf::from(unescape(field))).collect()
}

/// Undoes the `\040`-style escapes mountinfo uses for space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |acc, d| acc.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount_points() -> io::Result<Vec<PathBuf>> {
    Ok(parse_mount_points(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// Whether `path` (canonical) is itself a mount point.
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    Ok(mount_points()?.iter().any(|m| m == path))
}

/// Mount points at or under `root` (canonical), deepest first so they can be unmounted in order.
pub fn mounts_under(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = mount_points()?.into_iter().filter(|m| m.starts_with(root)).collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    Ok(found)
}

/// Mounts a tmpfs on `dir`, of `size_bytes` if given (else the kernel's default, half the memory).
pub fn mount_tmpfs(dir: &Path, size_bytes: Option<i64>) -> nix::Result<()> {
    let options = size_bytes.map(|size| format!("size={size}"));
    nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::empty(), options.as_deref())
}

/// Detaches the mount on `path`; lazily, so a mount still held open cannot make teardown fail. A path that is
/// no longer mounted (`EINVAL`) is fine.
pub fn unmount(path: &Path) -> nix::Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_from_the_fifth_field_with_escapes_undone() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    90 22 0:50 / /var/lib/my\\040dir rw - tmpfs tmpfs rw,size=1024k\n";
        assert_eq!(parse_mount_points(text), vec![PathBuf::from("/"), PathBuf::from("/var/lib/my dir")]);
    }

    #[test]
    fn unescape_leaves_other_backslashes_alone() {
        assert_eq!(unescape("a\\134b\\x"), "a\\b\\x");
        assert_eq!(unescape("tab\\011"), "tab\t");
    }
}
