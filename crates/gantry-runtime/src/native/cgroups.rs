//! Reading and preparing cgroups on either layout.
//!
//! Nodes run cgroup v1 (possibly "hybrid", with an almost empty v2 mount beside it) or the unified v2 layout;
//! the layout is detected, never assumed. libcontainer creates and removes each container's cgroup; this module
//! creates the pod-level cgroup above them (with the pod's limits), reads usage for stats, and tells whether
//! the OOM killer struck.

use std::path::{Path, PathBuf};

use crate::cri::{LinuxResources, RuntimeError};

/// The cgroup layout of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One hierarchy per controller under `/sys/fs/cgroup/<controller>`.
    V1,
    /// The unified hierarchy at `/sys/fs/cgroup`.
    V2,
}

/// Controllers the runtime sets limits in or reads from, on v1.
const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "cpuset"];

/// The cgroup filesystem of this node.
#[derive(Clone, Debug)]
pub struct Cgroups {
    mount: PathBuf,
    layout: Layout,
}

fn io_error(path: &Path, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io { path: path.to_path_buf(), source }
}

fn read_trimmed(path: &Path) -> Result<String, RuntimeError> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| io_error(path, e))
}

fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Usage figures of one cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cumulative CPU time, nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
    /// Memory in use minus inactive file cache, bytes.
    pub working_set_bytes: u64,
}

impl Cgroups {
    /// Detects the layout under `/sys/fs/cgroup`.
    pub fn detect() -> Cgroups {
        Cgroups::at(Path::new("/sys/fs/cgroup"))
    }

    /// Detects the layout of a cgroup filesystem mounted at `mount`.
    pub fn at(mount: &Path) -> Cgroups {
        let layout = if mount.join("cgroup.controllers").exists() { Layout::V2 } else { Layout::V1 };
        Cgroups { mount: mount.to_path_buf(), layout }
    }

    /// The detected layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn controller_dir(&self, controller: &str, cgroup: &str) -> PathBuf {
        let relative = cgroup.trim_start_matches('/');
        match self.layout {
            Layout::V1 => self.mount.join(controller).join(relative),
            Layout::V2 => self.mount.join(relative),
        }
    }

    /// Creates a pod's cgroup (every controller on v1) and writes the pod's limits. Existing directories are
    /// kept, so a restart of the runtime can call this again.
    pub fn create_pod(&self, cgroup: &str, resources: &LinuxResources) -> Result<(), RuntimeError> {
        match self.layout {
            Layout::V1 => {
                for controller in V1_CONTROLLERS {
                    let root = self.mount.join(controller);
                    if !root.exists() {
                        continue;
                    }
                    let dir = self.controller_dir(controller, cgroup);
                    self.create_v1_dir(&root, &dir, controller)?;
                }
                let cpu = self.controller_dir("cpu", cgroup);
                if let Some(shares) = resources.cpu_shares {
                    write(&cpu.join("cpu.shares"), &shares.to_string())?;
                }
                if let Some(period) = resources.cpu_period {
                    write(&cpu.join("cpu.cfs_period_us"), &period.to_string())?;
                }
                if let Some(quota) = resources.cpu_quota.filter(|q| *q > 0) {
                    write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
                if let Some(memory) = resources.memory_limit_bytes.filter(|m| *m > 0) {
                    write(&self.controller_dir("memory", cgroup).join("memory.limit_in_bytes"), &memory.to_string())?;
                }
                if let Some(pids) = resources.pids_limit.filter(|p| *p > 0) {
                    write(&self.controller_dir("pids", cgroup).join("pids.max"), &pids.to_string())?;
                }
            }
            Layout::V2 => {
                let mut current = self.mount.clone();
                for part in cgroup.trim_start_matches('/').split('/').filter(|p| !p.is_empty()) {
                    // Children can only use controllers their parent delegates.
                    let controllers = read_trimmed(&current.join("cgroup.controllers")).unwrap_or_default();
                    let enable: Vec<String> = controllers
                        .split_whitespace()
                        .filter(|c| ["cpu", "memory", "pids", "cpuset", "io"].contains(c))
                        .map(|c| format!("+{c}"))
                        .collect();
                    if !enable.is_empty() {
                        // Best effort: the root may refuse some controllers while processes sit in it.
                        let _ = std::fs::write(current.join("cgroup.subtree_control"), enable.join(" "));
                    }
                    current = current.join(part);
                    create_dir(&current)?;
                }
                if let Some(shares) = resources.cpu_shares {
                    // The conversion runc and the kubelet use from v1 shares to v2 weight.
                    let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
                    write(&current.join("cpu.weight"), &weight.to_string())?;
                }
                if let Some(quota) = resources.cpu_quota.filter(|q| *q > 0) {
                    let period = resources.cpu_period.unwrap_or(100_000);
                    write(&current.join("cpu.max"), &format!("{quota} {period}"))?;
                }
                if let Some(memory) = resources.memory_limit_bytes.filter(|m| *m > 0) {
                    write(&current.join("memory.max"), &memory.to_string())?;
                }
                if let Some(pids) = resources.pids_limit.filter(|p| *p > 0) {
                    write(&current.join("pids.max"), &pids.to_string())?;
                }
            }
        }
        Ok(())
    }

    fn create_v1_dir(&self, root: &Path, dir: &Path, controller: &str) -> Result<(), RuntimeError> {
        let relative = dir.strip_prefix(root).unwrap_or(dir);
        let mut current = root.to_path_buf();
        for part in relative.components() {
            let parent = current.clone();
            current = current.join(part);
            if current.exists() {
                continue;
            }
            create_dir(&current)?;
            if controller == "cpuset" {
                // A v1 cpuset cgroup refuses tasks until it has CPUs and memory nodes; inherit the parent's.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = read_trimmed(&parent.join(file))?;
                    write(&current.join(file), &value)?;
                }
            }
        }
        Ok(())
    }

    /// The directories of a cgroup: one per mounted v1 hierarchy (the container library creates a container's
    /// cgroup, and so the pod's above it, in every hierarchy, not only in those the runtime sets limits in), or
    /// the one unified directory.
    fn all_dirs(&self, cgroup: &str) -> Vec<PathBuf> {
        match self.layout {
            Layout::V1 => {
                let relative = cgroup.trim_start_matches('/');
                std::fs::read_dir(&self.mount)
                    .map(|entries| {
                        entries
                            .flatten()
                            // `cpu` and `cpuacct` are symbolic links to `cpu,cpuacct`: the hierarchy is seen once.
                            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                            .map(|e| e.path().join(relative))
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Layout::V2 => vec![self.controller_dir("", cgroup)],
        }
    }

    /// Removes a pod's cgroup once its containers' cgroups are gone. Missing directories are fine.
    pub fn remove_pod(&self, cgroup: &str) -> Result<(), RuntimeError> {
        for dir in self.all_dirs(cgroup) {
            remove_tree(&dir)?;
        }
        Ok(())
    }

    /// Current usage of a cgroup.
    pub fn usage(&self, cgroup: &str) -> Result<Usage, RuntimeError> {
        match self.layout {
            Layout::V1 => {
                let cpu_nanos =
                    read_trimmed(&self.controller_dir("cpuacct", cgroup).join("cpuacct.usage"))?.parse().unwrap_or(0);
                let memory = self.controller_dir("memory", cgroup);
                let memory_bytes = read_trimmed(&memory.join("memory.usage_in_bytes"))?.parse().unwrap_or(0);
                let stat = read_trimmed(&memory.join("memory.stat"))?;
                let inactive = keyed_value(&stat, "total_inactive_file").unwrap_or(0);
                Ok(Usage { cpu_nanos, memory_bytes, working_set_bytes: memory_bytes.saturating_sub(inactive) })
            }
            Layout::V2 => {
                let dir = self.controller_dir("", cgroup);
                let cpu = read_trimmed(&dir.join("cpu.stat"))?;
                let cpu_nanos = keyed_value(&cpu, "usage_usec").unwrap_or(0) * 1000;
                let memory_bytes = read_trimmed(&dir.join("memory.current"))?.parse().unwrap_or(0);
                let stat = read_trimmed(&dir.join("memory.stat"))?;
                let inactive = keyed_value(&stat, "inactive_file").unwrap_or(0);
                Ok(Usage { cpu_nanos, memory_bytes, working_set_bytes: memory_bytes.saturating_sub(inactive) })
            }
        }
    }

    /// How many times the OOM killer killed a process in this cgroup; 0 when the cgroup is gone or the kernel
    /// does not count.
    pub fn oom_kills(&self, cgroup: &str) -> u64 {
        let dir = self.controller_dir("memory", cgroup);
        match self.layout {
            Layout::V1 => std::fs::read_to_string(dir.join("memory.oom_control"))
                .ok()
                .and_then(|text| keyed_value(&text, "oom_kill"))
                .unwrap_or(0),
            Layout::V2 => std::fs::read_to_string(dir.join("memory.events"))
                .ok()
                .and_then(|text| keyed_value(&text, "oom_kill"))
                .unwrap_or(0),
        }
    }

    /// Whether any directory of this cgroup still exists, in any hierarchy (for tests and teardown checks).
    pub fn exists(&self, cgroup: &str) -> bool {
        self.all_dirs(cgroup).iter().any(|dir| dir.exists())
    }
}

fn create_dir(path: &Path) -> Result<(), RuntimeError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

fn write(path: &Path, value: &str) -> Result<(), RuntimeError> {
    std::fs::write(path, value).map_err(|e| io_error(path, e))
}

/// Removes a cgroup directory and its child cgroups, deepest first (cgroup directories are removed with
/// rmdir, never by deleting their files).
fn remove_tree(dir: &Path) -> Result<(), RuntimeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(dir, e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_are_found_by_exact_key() {
        let text = "cache 10\ntotal_inactive_file 4096\ninactive_file 1\n";
        assert_eq!(keyed_value(text, "total_inactive_file"), Some(4096));
        assert_eq!(keyed_value(text, "inactive_file"), Some(1));
        assert_eq!(keyed_value(text, "missing"), None);
    }

    #[test]
    fn layout_is_v2_only_with_a_controllers_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Cgroups::at(dir.path()).layout(), Layout::V1);
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory").expect("write");
        assert_eq!(Cgroups::at(dir.path()).layout(), Layout::V2);
    }

    #[test]
    fn a_v1_cgroup_is_looked_for_in_every_hierarchy() {
        let dir = tempfile::tempdir().expect("tempdir");
        for hierarchy in ["blkio", "memory", "freezer"] {
            std::fs::create_dir_all(dir.path().join(hierarchy).join("gantry/pod1")).expect("mkdir");
        }
        let cgroups = Cgroups::at(dir.path());
        assert_eq!(cgroups.all_dirs("/gantry/pod1").len(), 3);
        assert!(cgroups.exists("/gantry/pod1"));
        cgroups.remove_pod("/gantry/pod1").expect("remove");
        assert!(!cgroups.exists("/gantry/pod1"));
    }

    #[test]
    fn v1_paths_are_per_controller() {
        let cgroups = Cgroups { mount: "/sys/fs/cgroup".into(), layout: Layout::V1 };
        assert_eq!(cgroups.controller_dir("memory", "/gantry/pod1"), Path::new("/sys/fs/cgroup/memory/gantry/pod1"));
    }
}
