//! The OCI runtime spec of a container, built from the node agent's request and the image's config.
//!
//! Defaults follow what containerd's CRI plugin gives a Kubernetes container: its capability set, runc's masked
//! and read-only paths, `/dev` on tmpfs with the standard devices, `/sys` read-only, a new mount and PID
//! namespace, and the sandbox's network, IPC and UTS namespaces joined by path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use crate::cri::{ContainerConfig, ImageConfig, RuntimeError};

/// The capabilities a container gets unless it adds or drops some, as containerd grants them.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the OCI spec names; what `privileged` and `add: [ALL]` grant.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETGID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
];

/// Paths hidden from unprivileged containers (runc's list).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths unprivileged containers see read-only (runc's list).
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// `PATH` for images that set none, as Docker and containerd use.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a container's process identity was resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    /// UID.
    pub uid: u32,
    /// Primary GID.
    pub gid: u32,
    /// Supplementary GIDs.
    pub additional_gids: Vec<u32>,
}

/// Where a container finds the namespaces it shares with its sandbox. `None` means the node's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinedNamespaces {
    /// Pinned network namespace; `None` for host networking.
    pub net: Option<PathBuf>,
    /// Pinned IPC namespace; `None` for host IPC.
    pub ipc: Option<PathBuf>,
    /// Pinned UTS namespace; `None` with host networking.
    pub uts: Option<PathBuf>,
    /// The container gets its own PID namespace (false for hostPID).
    pub new_pid: bool,
    /// PID namespace to join (a shared process namespace), instead of a new one.
    pub pid_path: Option<PathBuf>,
}

/// Everything needed to write a container's `config.json`.
#[derive(Clone, Debug)]
pub struct SpecInputs<'a> {
    /// The request.
    pub config: &'a ContainerConfig,
    /// The image's config.
    pub image: &'a ImageConfig,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// Resolved user.
    pub user: ResolvedUser,
    /// Namespaces to join.
    pub namespaces: JoinedNamespaces,
    /// Hostname (ignored when the UTS namespace is the node's).
    pub hostname: &'a str,
    /// Cgroup path, relative to the cgroup roots.
    pub cgroups_path: &'a str,
    /// Files the sandbox provides (`/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`): container path, host path.
    pub etc_files: Vec<(String, PathBuf)>,
}

/// The process's argv, as Kubernetes combines `command`/`args` with the image's entrypoint and cmd.
pub fn process_args(config: &ContainerConfig, image: &ImageConfig) -> Vec<String> {
    if !config.command.is_empty() {
        config.command.iter().chain(config.args.iter()).cloned().collect()
    } else if !config.args.is_empty() {
        image.entrypoint.iter().chain(config.args.iter()).cloned().collect()
    } else {
        image.entrypoint.iter().chain(image.cmd.iter()).cloned().collect()
    }
}

/// The image's environment with the request's on top (a later `KEY` replaces an earlier one in place), and
/// `PATH` defaulted.
pub fn process_env(config: &ContainerConfig, image: &ImageConfig) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| {
        if let Some(existing) = env.iter_mut().find(|(k, _)| k == key) {
            existing.1 = value.to_string();
        } else {
            env.push((key.to_string(), value.to_string()));
        }
    };
    for entry in &image.env {
        let (key, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set(key, value);
    }
    for (key, value) in &config.envs {
        set(key, value);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn normalise_capability(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") }
}

/// The capability set after `add` and `drop`, as containerd computes it: `drop: [ALL]` empties the defaults
/// before additions; `add: [ALL]` grants everything not dropped.
pub fn effective_capabilities(config: &ContainerConfig) -> Result<Vec<String>, RuntimeError> {
    if config.security.privileged {
        return Ok(ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect());
    }
    let known = |cap: &str| -> Result<String, RuntimeError> {
        let cap = normalise_capability(cap);
        if ALL_CAPABILITIES.contains(&cap.as_str()) {
            Ok(cap)
        } else {
            Err(RuntimeError::Invalid(format!("unknown capability {cap:?}")))
        }
    };
    let is_all = |cap: &String| cap.trim().eq_ignore_ascii_case("ALL");
    let caps = &config.security.capabilities;
    let drop_all = caps.drop.iter().any(is_all);
    let add_all = caps.add.iter().any(is_all);
    let dropped: BTreeSet<String> =
        caps.drop.iter().filter(|c| !is_all(c)).map(|c| known(c)).collect::<Result<_, _>>()?;
    let mut set: BTreeSet<String> = if add_all {
        ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    } else if drop_all {
        BTreeSet::new()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    for cap in caps.add.iter().filter(|c| !is_all(c)) {
        set.insert(known(cap)?);
    }
    // Explicitly named drops win, even over `add: [ALL]`.
    set.retain(|c| !dropped.contains(c));
    Ok(set.into_iter().collect())
}

fn default_mounts(privileged: bool) -> Vec<Value> {
    let sys_options =
        if privileged { json!(["nosuid", "noexec", "nodev"]) } else { json!(["nosuid", "noexec", "nodev", "ro"]) };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options}),
    ]
}

/// Builds and validates the OCI spec of a container.
pub fn build_spec(inputs: &SpecInputs<'_>) -> Result<Spec, RuntimeError> {
    let config = inputs.config;
    let security = &config.security;
    if let Some(adj) = config.resources.oom_score_adj
        && adj < 0
    {
        return Err(RuntimeError::Invalid(format!(
            "oom_score_adj {adj} is negative: the node may not protect a container from the OOM killer"
        )));
    }
    let args = process_args(config, inputs.image);
    if args.is_empty() {
        return Err(RuntimeError::Invalid(format!(
            "container {:?} has no command: the image sets no entrypoint or cmd and the pod gives none",
            config.name
        )));
    }
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else if !inputs.image.working_dir.is_empty() {
        inputs.image.working_dir.clone()
    } else {
        "/".to_string()
    };
    if !cwd.starts_with('/') {
        return Err(RuntimeError::Invalid(format!("working directory {cwd:?} is not absolute")));
    }
    let caps = effective_capabilities(config)?;
    let mut process = json!({
        "terminal": config.tty,
        "user": {
            "uid": inputs.user.uid,
            "gid": inputs.user.gid,
            "additionalGids": inputs.user.additional_gids,
        },
        "args": args,
        "env": process_env(config, inputs.image),
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
        },
        "noNewPrivileges": security.no_new_privs && !security.privileged,
    });
    if let Some(adj) = config.resources.oom_score_adj {
        process["oomScoreAdj"] = json!(adj);
    }

    let mut mounts = default_mounts(security.privileged);
    for (destination, source) in &inputs.etc_files {
        mounts.push(json!({"destination": destination, "type": "bind", "source": source,
                           "options": ["rbind", "rprivate", "rw"]}));
    }
    for mount in &config.mounts {
        if !mount.container_path.starts_with('/') {
            return Err(RuntimeError::Invalid(format!("mount path {:?} is not absolute", mount.container_path)));
        }
        let mut options = vec!["rbind", "rprivate"];
        options.push(if mount.readonly { "ro" } else { "rw" });
        mounts.push(json!({"destination": mount.container_path, "type": "bind",
                           "source": mount.host_path, "options": options}));
    }

    let mut namespaces = vec![json!({"type": "mount"})];
    if let Some(path) = &inputs.namespaces.pid_path {
        namespaces.push(json!({"type": "pid", "path": path}));
    } else if inputs.namespaces.new_pid {
        namespaces.push(json!({"type": "pid"}));
    }
    for (kind, path) in
        [("network", &inputs.namespaces.net), ("ipc", &inputs.namespaces.ipc), ("uts", &inputs.namespaces.uts)]
    {
        if let Some(path) = path {
            namespaces.push(json!({"type": kind, "path": path}));
        }
    }

    let mut resources = json!({
        "devices": [{"allow": security.privileged, "access": "rwm"}],
    });
    let limits = &config.resources;
    let mut cpu = serde_json::Map::new();
    if let Some(shares) = limits.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = limits.cpu_quota
        && quota > 0
    {
        cpu.insert("quota".into(), json!(quota));
    }
    if let Some(period) = limits.cpu_period {
        cpu.insert("period".into(), json!(period));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(memory) = limits.memory_limit_bytes
        && memory > 0
    {
        resources["memory"] = json!({"limit": memory});
    }
    if let Some(pids) = limits.pids_limit
        && pids > 0
    {
        resources["pids"] = json!({"limit": pids});
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": inputs.cgroups_path,
        "resources": resources,
    });
    if !security.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }

    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inputs.rootfs, "readonly": security.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if inputs.namespaces.uts.is_some() {
        spec["hostname"] = json!(inputs.hostname);
    }
    serde_json::from_value(spec).map_err(|err| RuntimeError::Invalid(format!("container spec: {err}")))
}

/// One `/etc/passwd` or `/etc/group` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DbEntry {
    name: String,
    id: u32,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<DbEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || line.starts_with('#') {
                return None;
            }
            Some(DbEntry {
                name: fields[0].to_string(),
                id: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                members: Vec::new(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<DbEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 3 || line.starts_with('#') {
                return None;
            }
            let id = fields[2].parse().ok()?;
            Some(DbEntry {
                name: fields[0].to_string(),
                id,
                gid: id,
                members: fields
                    .get(3)
                    .map(|m| m.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn read_db(rootfs: &Path, file: &str) -> String {
    // A missing or unreadable file is an image without users: numeric IDs still work.
    std::fs::read_to_string(rootfs.join("etc").join(file)).unwrap_or_default()
}

/// Resolves the process identity as the kubelet and containerd do: `runAsUser`/`runAsGroup` first, then a
/// user name, then the image's `USER` (`name`, `uid`, `uid:gid`, `name:group`), looked up in the image's
/// `/etc/passwd` and `/etc/group`.
pub fn resolve_user(
    rootfs: &Path,
    config: &ContainerConfig,
    image: &ImageConfig,
) -> Result<ResolvedUser, RuntimeError> {
    let passwd = parse_passwd(&read_db(rootfs, "passwd"));
    let groups = parse_group(&read_db(rootfs, "group"));
    let security = &config.security;

    let (user_part, group_part) = if let Some(uid) = security.run_as_user {
        (uid.to_string(), None)
    } else if let Some(name) = &security.run_as_username {
        (name.clone(), None)
    } else {
        match image.user.split_once(':') {
            Some((user, group)) => (user.to_string(), Some(group.to_string())),
            None => (image.user.clone(), None),
        }
    };

    let (uid, mut gid, user_name) = if user_part.is_empty() {
        (0, 0, passwd.iter().find(|e| e.id == 0).map(|e| e.name.clone()))
    } else if let Ok(uid) = user_part.parse::<u32>() {
        let entry = passwd.iter().find(|e| e.id == uid);
        (uid, entry.map(|e| e.gid).unwrap_or(0), entry.map(|e| e.name.clone()))
    } else {
        let entry = passwd
            .iter()
            .find(|e| e.name == user_part)
            .ok_or_else(|| RuntimeError::Invalid(format!("user {user_part:?} is not in the image's /etc/passwd")))?;
        (entry.id, entry.gid, Some(entry.name.clone()))
    };

    if let Some(group) = group_part.filter(|g| !g.is_empty()) {
        gid =
            match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => groups.iter().find(|e| e.name == group).map(|e| e.id).ok_or_else(|| {
                    RuntimeError::Invalid(format!("group {group:?} is not in the image's /etc/group"))
                })?,
            };
    }
    if let Some(group) = security.run_as_group {
        gid = group;
    }

    let mut additional: Vec<u32> = Vec::new();
    if let Some(name) = &user_name {
        additional.extend(groups.iter().filter(|g| g.members.iter().any(|m| m == name)).map(|g| g.id));
    }
    additional.extend(security.supplemental_groups.iter().copied());
    additional.sort_unstable();
    additional.dedup();
    additional.retain(|g| *g != gid);
    Ok(ResolvedUser { uid, gid, additional_gids: additional })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::{Capabilities, Mount, SecurityContext};

    fn image() -> ImageConfig {
        ImageConfig {
            env: vec!["PATH=/bin".into(), "A=image".into()],
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            ..Default::default()
        }
    }

    fn inputs<'a>(config: &'a ContainerConfig, image: &'a ImageConfig) -> SpecInputs<'a> {
        SpecInputs {
            config,
            image,
            rootfs: Path::new("/rootfs"),
            user: ResolvedUser::default(),
            namespaces: JoinedNamespaces {
                net: Some("/run/ns/net".into()),
                ipc: Some("/run/ns/ipc".into()),
                uts: Some("/run/ns/uts".into()),
                new_pid: true,
                pid_path: None,
            },
            hostname: "web-0",
            cgroups_path: "/gantry/podabc/ctr",
            etc_files: vec![],
        }
    }

    #[test]
    fn command_replaces_entrypoint_and_cmd() {
        let config = ContainerConfig { command: vec!["sh".into()], args: vec!["-c".into()], ..Default::default() };
        assert_eq!(process_args(&config, &image()), ["sh", "-c"]);
    }

    #[test]
    fn args_alone_keep_the_entrypoint() {
        let config = ContainerConfig { args: vec!["x".into()], ..Default::default() };
        assert_eq!(process_args(&config, &image()), ["/entry", "x"]);
    }

    #[test]
    fn neither_command_nor_args_runs_entrypoint_and_cmd() {
        assert_eq!(process_args(&ContainerConfig::default(), &image()), ["/entry", "default"]);
    }

    #[test]
    fn pod_env_overrides_image_env_in_place() {
        let config =
            ContainerConfig { envs: vec![("A".into(), "pod".into()), ("B".into(), "b".into())], ..Default::default() };
        assert_eq!(process_env(&config, &image()), ["PATH=/bin", "A=pod", "B=b"]);
    }

    #[test]
    fn missing_path_gets_the_default() {
        let env = process_env(&ContainerConfig::default(), &ImageConfig::default());
        assert_eq!(env, [format!("PATH={DEFAULT_PATH}")]);
    }

    #[test]
    fn default_capabilities_are_containerds() {
        let caps = effective_capabilities(&ContainerConfig::default()).expect("caps");
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        assert!(caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn drop_all_then_add_keeps_only_the_added() {
        let config = ContainerConfig {
            security: SecurityContext {
                capabilities: Capabilities { add: vec!["net_admin".into()], drop: vec!["ALL".into()] },
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(effective_capabilities(&config).expect("caps"), ["CAP_NET_ADMIN"]);
    }

    #[test]
    fn unknown_capability_is_invalid() {
        let config = ContainerConfig {
            security: SecurityContext {
                capabilities: Capabilities { add: vec!["FLY".into()], drop: vec![] },
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(matches!(effective_capabilities(&config), Err(RuntimeError::Invalid(_))));
    }

    #[test]
    fn negative_oom_score_adj_is_refused() {
        let mut config = ContainerConfig::default();
        config.resources.oom_score_adj = Some(-998);
        let image = image();
        let err = build_spec(&inputs(&config, &image)).expect_err("refused");
        assert!(err.to_string().contains("negative"), "{err}");
    }

    #[test]
    fn spec_joins_sandbox_namespaces_and_masks_paths() {
        let mut config = ContainerConfig::default();
        config.resources.memory_limit_bytes = Some(64 << 20);
        config.resources.cpu_quota = Some(50_000);
        config.mounts.push(Mount { container_path: "/data".into(), host_path: "/var/x".into(), readonly: true });
        let image = image();
        let spec = build_spec(&inputs(&config, &image)).expect("spec");
        let value = serde_json::to_value(&spec).expect("json");
        let namespaces = value["linux"]["namespaces"].as_array().expect("namespaces");
        assert!(namespaces.iter().any(|n| n["type"] == "network" && n["path"] == "/run/ns/net"));
        assert!(namespaces.iter().any(|n| n["type"] == "pid" && n.get("path").is_none()));
        assert_eq!(value["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(value["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert!(value["linux"]["maskedPaths"].as_array().expect("masked").iter().any(|p| p == "/proc/kcore"));
        let data = value["mounts"].as_array().expect("mounts").iter().find(|m| m["destination"] == "/data").cloned();
        assert!(data.expect("data mount")["options"].as_array().expect("options").iter().any(|o| o == "ro"));
        assert_eq!(value["hostname"], "web-0");
    }

    #[test]
    fn privileged_spec_has_every_capability_and_no_masks() {
        let config = ContainerConfig {
            security: SecurityContext { privileged: true, ..Default::default() },
            ..Default::default()
        };
        let image = image();
        let value = serde_json::to_value(build_spec(&inputs(&config, &image)).expect("spec")).expect("json");
        assert_eq!(
            value["process"]["capabilities"]["bounding"].as_array().expect("caps").len(),
            ALL_CAPABILITIES.len()
        );
        assert!(value["linux"].get("maskedPaths").is_none());
        assert_eq!(value["linux"]["resources"]["devices"][0]["allow"], true);
    }

    #[test]
    fn spec_without_any_command_is_invalid() {
        let config = ContainerConfig::default();
        let image = ImageConfig::default();
        assert!(matches!(build_spec(&inputs(&config, &image)), Err(RuntimeError::Invalid(_))));
    }

    fn rootfs_with_users() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\napp:x:1000:\nwheel:x:10:app\nnogroup:x:65534:\n")
            .expect("group");
        dir
    }

    #[test]
    fn image_user_by_name_takes_its_uid_gid_and_groups() {
        let rootfs = rootfs_with_users();
        let image = ImageConfig { user: "app".into(), ..Default::default() };
        let user = resolve_user(rootfs.path(), &ContainerConfig::default(), &image).expect("user");
        assert_eq!(user, ResolvedUser { uid: 1000, gid: 1000, additional_gids: vec![10] });
    }

    #[test]
    fn run_as_user_overrides_the_image_and_takes_the_passwd_group() {
        let rootfs = rootfs_with_users();
        let mut config = ContainerConfig::default();
        config.security.run_as_user = Some(65534);
        let image = ImageConfig { user: "app".into(), ..Default::default() };
        let user = resolve_user(rootfs.path(), &config, &image).expect("user");
        assert_eq!((user.uid, user.gid), (65534, 65534));
    }

    #[test]
    fn unknown_numeric_uid_runs_with_gid_zero_and_run_as_group_applies() {
        let rootfs = rootfs_with_users();
        let mut config = ContainerConfig::default();
        config.security.run_as_user = Some(4242);
        config.security.run_as_group = Some(7);
        config.security.supplemental_groups = vec![9, 7];
        let user = resolve_user(rootfs.path(), &config, &ImageConfig::default()).expect("user");
        assert_eq!(user, ResolvedUser { uid: 4242, gid: 7, additional_gids: vec![9] });
    }

    #[test]
    fn user_and_group_names_in_the_image_are_resolved() {
        let rootfs = rootfs_with_users();
        let image = ImageConfig { user: "app:wheel".into(), ..Default::default() };
        let user = resolve_user(rootfs.path(), &ContainerConfig::default(), &image).expect("user");
        assert_eq!((user.uid, user.gid), (1000, 10));
    }

    #[test]
    fn unknown_user_name_is_invalid() {
        let rootfs = rootfs_with_users();
        let image = ImageConfig { user: "ghost".into(), ..Default::default() };
        assert!(matches!(
            resolve_user(rootfs.path(), &ContainerConfig::default(), &image),
            Err(RuntimeError::Invalid(_))
        ));
    }
}
