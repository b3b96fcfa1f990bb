//! A CNI client: runs the node's network configuration's plugin binaries against a pod's network namespace, as the
//! CNI specification (1.0.0) describes, the way libcni does for containerd.
//!
//! - The network is the first configuration, in lexical order of file names, among `*.conflist`, `*.conf` and
//!   `*.json` in the configuration directory (a single-plugin `.conf`/`.json` counts as a list of one).
//!   Unreadable files are skipped with a warning, as the kubelet skips them.
//! - ADD runs the list's plugins in order, each receiving the previous one's result as `prevResult`; DEL runs them
//!   in reverse order with the ADD's result as `prevResult`; CHECK runs them in order.
//! - Before an ADD, the configuration, the arguments and the interface name are written to a cache entry (the
//!   result is added once the ADD succeeds). A later DEL or CHECK uses that entry, not the current configuration,
//!   so that an agent restart or a changed configuration still undoes exactly what was done. Without an entry, DEL
//!   falls back to the current configuration; the plugins tolerate deleting what is already gone.
//! - Every plugin call has a deadline; a plugin that misses it is killed.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

use super::NetworkError;
use super::namespaces::is_pinned;
use crate::cri::{PodSandboxConfig, PortMapping};

/// The CNI specification version of the configurations this module writes.
pub const CNI_VERSION: &str = "1.0.0";

/// Where plugins are looked for by default: Debian's `containernetworking-plugins`, then the upstream location.
pub const DEFAULT_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

/// The interface name a pod's network gets inside its namespace.
pub const DEFAULT_IFNAME: &str = "eth0";

/// The file [`write_default_config`] writes.
pub const DEFAULT_CONFIG_FILE: &str = "10-gantry.conflist";

const CACHE_KIND: &str = "gantryCniCacheV1";

/// Where the client finds configurations and plugins and keeps its cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniOptions {
    /// Directory of network configurations (`/etc/cni/net.d` on most nodes).
    pub conf_dir: PathBuf,
    /// Directories searched, in order, for plugin binaries (also given to plugins as `CNI_PATH`).
    pub plugin_dirs: Vec<PathBuf>,
    /// Directory of the per-sandbox records of ADDs. Keep it on persistent storage (under `/var/lib`): host-local's
    /// address allocations survive a reboot, and a DEL of each recorded sandbox is what releases them.
    pub cache_dir: PathBuf,
    /// Deadline of one plugin call.
    pub timeout: Duration,
}

impl CniOptions {
    /// Options with the default plugin directories ([`DEFAULT_PLUGIN_DIRS`]) and a 30-second deadline per call.
    pub fn new(conf_dir: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> CniOptions {
        CniOptions {
            conf_dir: conf_dir.into(),
            plugin_dirs: DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
            cache_dir: cache_dir.into(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// A network configuration list: a named chain of plugin configurations.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfigList {
    /// The network's name.
    pub name: String,
    /// The CNI version the configuration is written for.
    pub cni_version: String,
    /// Each plugin's configuration object, in chain order; each has a string `type`.
    pub plugins: Vec<Map<String, Value>>,
    /// The list's `disableCheck`: CHECK is skipped.
    pub disable_check: bool,
    /// The file it was read from.
    pub source: PathBuf,
}

impl NetworkConfigList {
    /// The first usable configuration in `conf_dir`, in lexical order of file names.
    pub fn load(conf_dir: &Path) -> Result<NetworkConfigList, NetworkError> {
        let candidates = config_files(conf_dir)?;
        let mut first_error = None;
        for path in candidates {
            let parsed = fs::read(&path)
                .map_err(|source| NetworkError::Io { path: path.clone(), source })
                .and_then(|bytes| NetworkConfigList::parse(&path, &bytes));
            match parsed {
                Ok(list) => return Ok(list),
                Err(err) => {
                    tracing::warn!(error = %err, "skipping unusable CNI network configuration");
                    first_error.get_or_insert(err);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| NetworkError::NoConfig { dir: conf_dir.to_path_buf() }))
    }

    /// Parses a configuration: a list when the file name ends in `.conflist`, a single plugin otherwise.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<NetworkConfigList, NetworkError> {
        let invalid = |reason: &str| NetworkError::InvalidConfig { path: path.to_path_buf(), reason: reason.into() };
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|source| NetworkError::ConfigParse { path: path.to_path_buf(), source })?;
        let Value::Object(mut object) = value else { return Err(invalid("not a JSON object")) };
        let is_list = path.extension().is_some_and(|ext| ext == "conflist");
        let plugins = if is_list {
            match object.remove("plugins") {
                Some(Value::Array(plugins)) => plugins,
                _ => return Err(invalid("no \"plugins\" array")),
            }
        } else {
            vec![Value::Object(object.clone())]
        };
        let name = match object.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => return Err(invalid("no \"name\"")),
        };
        let cni_version = match object.get("cniVersion") {
            Some(Value::String(version)) => version.clone(),
            _ => return Err(invalid("no \"cniVersion\"")),
        };
        if plugins.is_empty() {
            return Err(invalid("\"plugins\" is empty"));
        }
        let mut checked = Vec::with_capacity(plugins.len());
        for plugin in plugins {
            let Value::Object(plugin) = plugin else { return Err(invalid("a plugin is not a JSON object")) };
            match plugin.get("type") {
                Some(Value::String(kind)) if is_plugin_name(kind) => {}
                Some(Value::String(kind)) => {
                    return Err(NetworkError::InvalidConfig {
                        path: path.to_path_buf(),
                        reason: format!("plugin type {kind:?} is not a file name"),
                    });
                }
                _ => return Err(invalid("a plugin has no \"type\"")),
            }
            checked.push(plugin);
        }
        let disable_check = is_list && object.get("disableCheck").and_then(Value::as_bool) == Some(true);
        Ok(NetworkConfigList { name, cni_version, plugins: checked, disable_check, source: path.to_path_buf() })
    }

    /// The configuration as a `.conflist` object, as cached and as plugins' `name`/`cniVersion` come from.
    fn to_value(&self) -> Value {
        json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": self.plugins
        })
    }

    fn from_cached(value: &Value, cache_path: &Path) -> Result<NetworkConfigList, NetworkError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|source| NetworkError::CorruptCache { path: cache_path.to_path_buf(), source })?;
        NetworkConfigList::parse(&cache_path.with_extension("conflist"), &bytes)
    }
}

fn is_plugin_name(kind: &str) -> bool {
    !kind.is_empty() && kind != "." && kind != ".." && !kind.contains('/') && !kind.contains('\0')
}

/// Configuration files in `conf_dir`, sorted by name; a missing directory has none.
fn config_files(conf_dir: &Path) -> Result<Vec<PathBuf>, NetworkError> {
    let entries = match fs::read_dir(conf_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(NetworkError::Io { path: conf_dir.to_path_buf(), source }),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| NetworkError::Io { path: conf_dir.to_path_buf(), source })?;
        let path = entry.path();
        let wanted = path.extension().is_some_and(|ext| ext == "conflist" || ext == "conf" || ext == "json");
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Writes the default network configuration into `conf_dir` unless it already holds one (any `*.conflist`,
/// `*.conf` or `*.json`). Returns the file written, or `None` when an existing configuration was kept.
///
/// The network, named after the bridge, is a `bridge` plugin (the node is the pods' gateway, traffic leaving the
/// pod CIDR is masqueraded, hairpin mode lets a pod reach itself through a Service) with `host-local` addresses
/// from `pod_cidr` (IPv4 or IPv6) and a default route, followed by `portmap` for `hostPort`s.
///
/// `host-local` keeps its allocations in `ipam_dir` rather than the machine-wide `/var/lib/cni/networks`: each
/// node's state is its own (several agents may share a machine in tests) and goes with its data directory.
pub fn write_default_config(
    conf_dir: &Path,
    ipam_dir: &Path,
    bridge_name: &str,
    pod_cidr: &str,
) -> Result<Option<PathBuf>, NetworkError> {
    let mut list = default_config(bridge_name, pod_cidr)?;
    if !config_files(conf_dir)?.is_empty() {
        return Ok(None);
    }
    fs::create_dir_all(conf_dir).map_err(|source| NetworkError::Io { path: conf_dir.to_path_buf(), source })?;
    fs::create_dir_all(ipam_dir).map_err(|source| NetworkError::Io { path: ipam_dir.to_path_buf(), source })?;
    // The plugins run with another working directory: the path must be absolute.
    let ipam_dir =
        fs::canonicalize(ipam_dir).map_err(|source| NetworkError::Io { path: ipam_dir.to_path_buf(), source })?;
    list["plugins"][0]["ipam"]["dataDir"] = json!(ipam_dir);
    let path = conf_dir.join(DEFAULT_CONFIG_FILE);
    // Serialising a `Value` built from strings and literals cannot fail.
    let bytes = serde_json::to_vec_pretty(&list).unwrap_or_default();
    write_atomically(&path, &bytes)?;
    tracing::info!(path = %path.display(), bridge = bridge_name, pod_cidr, "wrote the default CNI configuration");
    Ok(Some(path))
}

/// The default configuration list (see [`write_default_config`]).
pub fn default_config(bridge_name: &str, pod_cidr: &str) -> Result<Value, NetworkError> {
    let bad_bridge = |reason| NetworkError::InvalidValue { what: "bridge name", value: bridge_name.into(), reason };
    if bridge_name.is_empty() || bridge_name.len() > 15 {
        return Err(bad_bridge("must have 1 to 15 characters"));
    }
    if !bridge_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return Err(bad_bridge("only letters, digits, '-', '_' and '.' are allowed"));
    }
    let (network, _) = parse_cidr(pod_cidr)?;
    let default_route = if network.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
    Ok(json!({
        "cniVersion": CNI_VERSION,
        "name": bridge_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge_name,
                "isGateway": true,
                // Masquerading is one node-level rule (see `masquerade`), not a chain per pod.
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": default_route }]
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    }))
}

/// Parses `addr/prefix`, refusing host bits and networks too small to hold a gateway and a pod.
pub(crate) fn parse_cidr(cidr: &str) -> Result<(IpAddr, u8), NetworkError> {
    let bad = |reason: &str| NetworkError::InvalidCidr { cidr: cidr.into(), reason: reason.into() };
    let (addr, prefix) = cidr.split_once('/').ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
    let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let prefix: u8 = prefix.parse().map_err(|_| bad("prefix is not a number"))?;
    let (bits, max_prefix) = match addr {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 30),
        IpAddr::V6(v6) => (u128::from(v6), 126),
    };
    if prefix > max_prefix {
        return Err(bad("prefix too long to hold a gateway and pods"));
    }
    let host_bits = bits.checked_shl(u32::from(prefix)).unwrap_or(0);
    if host_bits != 0 {
        return Err(bad("host bits are set"));
    }
    Ok((addr, prefix))
}

/// What a pod's network ADD needs to know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNetwork {
    /// The sandbox ID (`CNI_CONTAINERID`, `K8S_POD_INFRA_CONTAINER_ID`); also names the cache entry.
    pub sandbox_id: String,
    /// The pinned network namespace (`CNI_NETNS`).
    pub netns: PathBuf,
    /// The pod's namespace (`K8S_POD_NAMESPACE`).
    pub pod_namespace: String,
    /// The pod's name (`K8S_POD_NAME`).
    pub pod_name: String,
    /// The pod's UID (`K8S_POD_UID`).
    pub pod_uid: String,
    /// `hostPort`s, given to plugins that declare the `portMappings` capability.
    pub port_mappings: Vec<PortMapping>,
    /// Interface name inside the namespace (`CNI_IFNAME`).
    pub ifname: String,
}

impl PodNetwork {
    /// The request for a sandbox, with the default interface name.
    pub fn for_sandbox(sandbox_id: &str, netns: &Path, config: &PodSandboxConfig) -> PodNetwork {
        PodNetwork {
            sandbox_id: sandbox_id.into(),
            netns: netns.to_path_buf(),
            pod_namespace: config.metadata.namespace.clone(),
            pod_name: config.metadata.name.clone(),
            pod_uid: config.metadata.uid.clone(),
            port_mappings: config.port_mappings.clone(),
            ifname: DEFAULT_IFNAME.into(),
        }
    }

    fn cni_args(&self) -> Result<String, NetworkError> {
        let pairs = [
            ("pod namespace", "K8S_POD_NAMESPACE", &self.pod_namespace),
            ("pod name", "K8S_POD_NAME", &self.pod_name),
            ("sandbox id", "K8S_POD_INFRA_CONTAINER_ID", &self.sandbox_id),
            ("pod uid", "K8S_POD_UID", &self.pod_uid),
        ];
        let mut args = String::from("IgnoreUnknown=1");
        for (what, key, value) in pairs {
            if value.contains([';', '=']) {
                return Err(NetworkError::InvalidValue {
                    what,
                    value: value.clone(),
                    reason: "';' and '=' cannot be passed in CNI_ARGS",
                });
            }
            args.push_str(&format!(";{key}={value}"));
        }
        Ok(args)
    }
}

/// One address of a pod, from the CNI result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodIp {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length on the pod's interface.
    pub prefix_len: u8,
    /// The gateway the plugin gave for it, if any.
    pub gateway: Option<IpAddr>,
}

/// The outcome of a pod's network ADD.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodNetworkStatus {
    /// The network's name.
    pub network: String,
    /// The pod's addresses on interfaces inside its namespace, in the order the result lists them.
    pub ips: Vec<PodIp>,
    /// The final CNI result, as the last plugin printed it.
    pub result: Value,
}

impl PodNetworkStatus {
    /// The pod's primary IP: the first IPv4 address, else the first address.
    pub fn primary_ip(&self) -> Option<IpAddr> {
        self.ipv4().or_else(|| self.ips.first().map(|ip| ip.address))
    }

    /// The first IPv4 address.
    pub fn ipv4(&self) -> Option<IpAddr> {
        self.ips.iter().map(|ip| ip.address).find(IpAddr::is_ipv4)
    }

    /// The first IPv6 address.
    pub fn ipv6(&self) -> Option<IpAddr> {
        self.ips.iter().map(|ip| ip.address).find(IpAddr::is_ipv6)
    }

    /// The addresses other than the primary one, as CRI's `additional_ips` lists them.
    pub fn additional_ips(&self) -> Vec<IpAddr> {
        let primary = self.primary_ip();
        self.ips.iter().map(|ip| ip.address).filter(|ip| Some(*ip) != primary).collect()
    }
}

/// The addresses of a CNI result (0.3.0 and later) that sit on interfaces inside the sandbox.
fn pod_ips(result: &Value) -> Vec<PodIp> {
    let interfaces = result.get("interfaces").and_then(Value::as_array);
    let in_sandbox = |index: u64| {
        let iface = usize::try_from(index).ok().and_then(|i| interfaces.and_then(|list| list.get(i)));
        iface.and_then(|iface| iface.get("sandbox")).and_then(Value::as_str).is_some_and(|sandbox| !sandbox.is_empty())
    };
    let mut ips = Vec::new();
    for entry in result.get("ips").and_then(Value::as_array).into_iter().flatten() {
        if let Some(index) = entry.get("interface").and_then(Value::as_u64)
            && !in_sandbox(index)
        {
            continue;
        }
        let Some((address, prefix_len)) = entry.get("address").and_then(Value::as_str).and_then(|a| a.split_once('/'))
        else {
            continue;
        };
        let (Ok(address), Ok(prefix_len)) = (address.parse::<IpAddr>(), prefix_len.parse::<u8>()) else { continue };
        let gateway = entry.get("gateway").and_then(Value::as_str).and_then(|g| g.parse().ok());
        ips.push(PodIp { address, prefix_len, gateway });
    }
    ips
}

/// The record of an ADD, kept until the DEL that undoes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CacheEntry {
    kind: String,
    sandbox_id: String,
    ifname: String,
    cni_args: String,
    /// `runtimeConfig` capability arguments (only `portMappings`).
    capability_args: Map<String, Value>,
    /// The configuration list used, as a `.conflist` object.
    config: Value,
    /// The ADD's final result; `None` while the ADD is in progress or when it failed.
    result: Option<Value>,
}

/// CNI commands this client issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

/// Runs CNI plugins for pods. Cheap to clone; holds no state besides its options (the cache is on disk).
#[derive(Clone, Debug)]
pub struct CniClient {
    options: CniOptions,
}

impl CniClient {
    /// A client with these options.
    pub fn new(options: CniOptions) -> CniClient {
        CniClient { options }
    }

    /// The client's options.
    pub fn options(&self) -> &CniOptions {
        &self.options
    }

    /// The network configuration an ADD would use now.
    pub fn load_network(&self) -> Result<NetworkConfigList, NetworkError> {
        NetworkConfigList::load(&self.options.conf_dir)
    }

    /// Attaches a pod's network namespace to the network: ADD through the whole plugin chain. Every plugin binary
    /// is looked up before any runs, so a missing one changes nothing. If a plugin fails, the chain is deleted
    /// again (best effort) before the error is returned.
    ///
    /// Not for `hostNetwork` pods, which have no network namespace of their own: an empty `netns` is refused.
    #[tracing::instrument(skip_all, fields(sandbox = %pod.sandbox_id))]
    pub async fn setup(&self, pod: &PodNetwork) -> Result<PodNetworkStatus, NetworkError> {
        if pod.netns.as_os_str().is_empty() {
            return Err(NetworkError::InvalidValue {
                what: "network namespace",
                value: String::new(),
                reason: "a pod network needs the path of a network namespace",
            });
        }
        let mut list = self.load_network()?;
        if pod.port_mappings.is_empty() {
            // portmap does nothing for a pod without hostPorts, yet costs 6 to 25 ms of iptables checks per ADD and
            // as much per DEL on a node like ours. It is left out of this pod's chain; the chain recorded in the
            // cache is the one run, so DEL leaves it out too.
            list.plugins.retain(|plugin| plugin.get("type").and_then(Value::as_str) != Some("portmap"));
        }
        let binaries = self.resolve_plugins(&list)?;
        let cni_args = pod.cni_args()?;
        let mut capability_args = Map::new();
        if !pod.port_mappings.is_empty() {
            capability_args.insert("portMappings".into(), port_mappings_value(&pod.port_mappings));
        }
        let ifname = if pod.ifname.is_empty() { DEFAULT_IFNAME } else { pod.ifname.as_str() };
        let mut entry = CacheEntry {
            kind: CACHE_KIND.into(),
            sandbox_id: pod.sandbox_id.clone(),
            ifname: ifname.into(),
            cni_args,
            capability_args,
            config: list.to_value(),
            result: None,
        };
        // Written before the first plugin runs: a crash in the middle still leaves what DEL needs.
        self.write_cache(&entry)?;

        let invocation =
            Invocation { client: self, list: &list, binaries: &binaries, entry: &entry, netns: &pod.netns };
        let mut prev_result = None;
        for index in 0..list.plugins.len() {
            match invocation.run(Command::Add, index, prev_result.as_ref()).await {
                Ok(result) => prev_result = Some(result),
                Err(err) => {
                    tracing::warn!(error = %err, "CNI ADD failed; deleting what was set up");
                    if let Err(del) = invocation.del_chain(None).await {
                        tracing::warn!(error = %del, "CNI DEL after a failed ADD");
                    }
                    if let Err(cache) = self.remove_cache(&pod.sandbox_id) {
                        tracing::warn!(error = %cache, "removing the CNI cache entry after a failed ADD");
                    }
                    return Err(err);
                }
            }
        }
        let result = prev_result.unwrap_or(Value::Null);
        entry.result = Some(result.clone());
        self.write_cache(&entry)?;
        let status = PodNetworkStatus { network: list.name.clone(), ips: pod_ips(&result), result };
        tracing::debug!(network = %status.network, ips = ?status.ips, "pod network attached");
        Ok(status)
    }

    /// Detaches a sandbox from the network: DEL through the plugin chain in reverse order, with the configuration
    /// and result recorded at ADD when there is a record, else with the current configuration (and success when
    /// there is none). Idempotent. Call it before the network namespace is unpinned; when `netns` is `None` or no
    /// longer a namespace, plugins only release what lives outside it (addresses, iptables rules).
    #[tracing::instrument(skip_all, fields(sandbox = %sandbox_id))]
    pub async fn teardown(&self, sandbox_id: &str, netns: Option<&Path>) -> Result<(), NetworkError> {
        let netns = netns.filter(|path| is_pinned(path)).map(Path::to_path_buf).unwrap_or_default();
        let (entry, list) = match self.read_cache(sandbox_id)? {
            Some((entry, list)) => (entry, list),
            None => {
                let list = match self.load_network() {
                    Ok(list) => list,
                    Err(NetworkError::NoConfig { .. }) => {
                        tracing::debug!("no CNI record and no configuration: nothing to delete");
                        return Ok(());
                    }
                    Err(err) => return Err(err),
                };
                let entry = CacheEntry {
                    kind: CACHE_KIND.into(),
                    sandbox_id: sandbox_id.into(),
                    ifname: DEFAULT_IFNAME.into(),
                    cni_args: format!("IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID={sandbox_id}"),
                    capability_args: Map::new(),
                    config: list.to_value(),
                    result: None,
                };
                (entry, list)
            }
        };
        let binaries = self.resolve_plugins(&list)?;
        let invocation = Invocation { client: self, list: &list, binaries: &binaries, entry: &entry, netns: &netns };
        invocation.del_chain(entry.result.as_ref()).await?;
        self.remove_cache(sandbox_id)?;
        tracing::debug!(network = %list.name, "pod network detached");
        Ok(())
    }

    /// The outcome of the sandbox's ADD as recorded on disk, for a restarted agent that needs the pod's IPs again;
    /// `None` when the sandbox is not attached (never added, deleted, or an ADD that did not finish).
    pub fn cached_status(&self, sandbox_id: &str) -> Result<Option<PodNetworkStatus>, NetworkError> {
        let Some((entry, list)) = self.read_cache(sandbox_id)? else { return Ok(None) };
        Ok(entry.result.map(|result| PodNetworkStatus { network: list.name, ips: pod_ips(&result), result }))
    }

    /// The sandboxes with a record of an ADD (finished or not) and no DEL yet, sorted: after a restart or a reboot,
    /// those the agent no longer knows are to be torn down.
    pub fn recorded_sandboxes(&self) -> Result<Vec<String>, NetworkError> {
        let dir = &self.options.cache_dir;
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(NetworkError::Io { path: dir.clone(), source }),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| NetworkError::Io { path: dir.clone(), source })?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|name| name.strip_suffix(".json")) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Asks every plugin whether the sandbox's network is still as ADD left it (CHECK, for configurations of CNI
    /// 0.4.0 and later; older ones, and lists with `disableCheck`, pass unchecked).
    #[tracing::instrument(skip_all, fields(sandbox = %sandbox_id))]
    pub async fn check(&self, sandbox_id: &str, netns: &Path) -> Result<(), NetworkError> {
        let Some((entry, list)) = self.read_cache(sandbox_id)? else {
            return Err(NetworkError::NotAttached { sandbox_id: sandbox_id.into() });
        };
        let Some(result) = entry.result.as_ref() else {
            return Err(NetworkError::NotAttached { sandbox_id: sandbox_id.into() });
        };
        if list.disable_check || version_tuple(&list.cni_version) < (0, 4, 0) {
            return Ok(());
        }
        let binaries = self.resolve_plugins(&list)?;
        let invocation = Invocation { client: self, list: &list, binaries: &binaries, entry: &entry, netns };
        for index in 0..list.plugins.len() {
            invocation.run(Command::Check, index, Some(result)).await?;
        }
        Ok(())
    }

    /// The binary of every plugin of the list, or the first one missing.
    fn resolve_plugins(&self, list: &NetworkConfigList) -> Result<Vec<PathBuf>, NetworkError> {
        list.plugins
            .iter()
            .map(|plugin| {
                let kind = plugin_type(plugin);
                self.options.plugin_dirs.iter().map(|dir| dir.join(kind)).find(|path| path.is_file()).ok_or_else(|| {
                    NetworkError::PluginNotFound { plugin: kind.into(), dirs: self.options.plugin_dirs.clone() }
                })
            })
            .collect()
    }

    fn cache_path(&self, sandbox_id: &str) -> PathBuf {
        self.options.cache_dir.join(format!("{sandbox_id}.json"))
    }

    fn write_cache(&self, entry: &CacheEntry) -> Result<(), NetworkError> {
        if !is_plugin_name(&entry.sandbox_id) {
            return Err(NetworkError::InvalidValue {
                what: "sandbox id",
                value: entry.sandbox_id.clone(),
                reason: "must be usable as a file name",
            });
        }
        let dir = &self.options.cache_dir;
        fs::create_dir_all(dir).map_err(|source| NetworkError::Io { path: dir.clone(), source })?;
        let path = self.cache_path(&entry.sandbox_id);
        let bytes =
            serde_json::to_vec(entry).map_err(|source| NetworkError::CorruptCache { path: path.clone(), source })?;
        write_atomically(&path, &bytes)
    }

    fn read_cache(&self, sandbox_id: &str) -> Result<Option<(CacheEntry, NetworkConfigList)>, NetworkError> {
        if !is_plugin_name(sandbox_id) {
            return Ok(None);
        }
        let path = self.cache_path(sandbox_id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(NetworkError::Io { path, source }),
        };
        let entry: CacheEntry = serde_json::from_slice(&bytes)
            .map_err(|source| NetworkError::CorruptCache { path: path.clone(), source })?;
        let list = NetworkConfigList::from_cached(&entry.config, &path)?;
        Ok(Some((entry, list)))
    }

    fn remove_cache(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        let path = self.cache_path(sandbox_id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NetworkError::Io { path, source }),
        }
    }
}

fn plugin_type(plugin: &Map<String, Value>) -> &str {
    // `NetworkConfigList::parse` guarantees a string type.
    plugin.get("type").and_then(Value::as_str).unwrap_or_default()
}

fn port_mappings_value(mappings: &[PortMapping]) -> Value {
    Value::Array(
        mappings
            .iter()
            .map(|mapping| {
                let mut object = Map::new();
                object.insert("hostPort".into(), mapping.host_port.into());
                object.insert("containerPort".into(), mapping.container_port.into());
                object.insert("protocol".into(), mapping.protocol.as_cni_str().into());
                if !mapping.host_ip.is_empty() {
                    object.insert("hostIP".into(), mapping.host_ip.clone().into());
                }
                Value::Object(object)
            })
            .collect(),
    )
}

/// `major.minor.patch` as numbers; anything unreadable counts as 0.
fn version_tuple(version: &str) -> (u32, u32, u32) {
    let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The configuration one plugin of the list receives on its standard input, as libcni builds it: the plugin's
/// own object plus the list's `name` and `cniVersion`, the previous result, and the `runtimeConfig` entries for the
/// capabilities the plugin declares.
fn plugin_config(
    list: &NetworkConfigList,
    index: usize,
    prev_result: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Value {
    let mut config = list.plugins.get(index).cloned().unwrap_or_default();
    config.insert("cniVersion".into(), list.cni_version.clone().into());
    config.insert("name".into(), list.name.clone().into());
    if let Some(prev) = prev_result {
        config.insert("prevResult".into(), prev.clone());
    }
    let declared = config.get("capabilities").and_then(Value::as_object);
    let runtime_config: Map<String, Value> = capability_args
        .iter()
        .filter(|(name, _)| declared.and_then(|caps| caps.get(*name)).and_then(Value::as_bool) == Some(true))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if !runtime_config.is_empty() {
        config.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    Value::Object(config)
}

/// A CNI error object, as a failing plugin prints it.
#[derive(Deserialize)]
struct PluginErrorObject {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Everything needed to call the plugins of one list for one sandbox.
struct Invocation<'a> {
    client: &'a CniClient,
    list: &'a NetworkConfigList,
    binaries: &'a [PathBuf],
    entry: &'a CacheEntry,
    netns: &'a Path,
}

impl Invocation<'_> {
    /// DEL through the chain in reverse order; stops at the first failure, as libcni does, so that it is retried.
    async fn del_chain(&self, result: Option<&Value>) -> Result<(), NetworkError> {
        // prevResult is defined for DEL from CNI 0.4.0 on.
        let prev = result.filter(|_| version_tuple(&self.list.cni_version) >= (0, 4, 0));
        for index in (0..self.list.plugins.len()).rev() {
            self.run(Command::Del, index, prev).await?;
        }
        Ok(())
    }

    /// Runs one plugin and returns its parsed result (`Null` for DEL and CHECK, which print nothing).
    async fn run(&self, command: Command, index: usize, prev_result: Option<&Value>) -> Result<Value, NetworkError> {
        let Some(binary) = self.binaries.get(index) else { return Ok(Value::Null) };
        let plugin = self.list.plugins.get(index).map(plugin_type).unwrap_or_default().to_string();
        let config = plugin_config(self.list, index, prev_result, &self.entry.capability_args);
        let stdin = serde_json::to_vec(&config).unwrap_or_default();
        let cni_path = std::env::join_paths(&self.client.options.plugin_dirs).unwrap_or_default();
        let started = std::time::Instant::now();

        let mut child = tokio::process::Command::new(binary)
            .env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &self.entry.sandbox_id)
            .env("CNI_NETNS", self.netns)
            .env("CNI_IFNAME", &self.entry.ifname)
            .env("CNI_ARGS", &self.entry.cni_args)
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NetworkError::PluginSpawn { plugin: plugin.clone(), path: binary.clone(), source })?;
        let mut child_stdin = child.stdin.take();
        let feed = async move {
            if let Some(pipe) = child_stdin.as_mut() {
                // A plugin that exits without reading its input is judged by its exit status, not by this write.
                let _ = pipe.write_all(&stdin).await;
            }
            drop(child_stdin);
        };
        let timeout = self.client.options.timeout;
        let (_, output) =
            tokio::time::timeout(timeout, async { tokio::join!(feed, child.wait_with_output()) }).await.map_err(
                |_| NetworkError::PluginTimeout { plugin: plugin.clone(), command: command.as_str(), timeout },
            )?;
        let output = output.map_err(|source| NetworkError::PluginSpawn {
            plugin: plugin.clone(),
            path: binary.clone(),
            source,
        })?;
        tracing::debug!(plugin, command = command.as_str(), elapsed = ?started.elapsed(), status = %output.status, "CNI plugin");

        if !output.status.success() {
            if let Ok(error) = serde_json::from_slice::<PluginErrorObject>(&output.stdout) {
                return Err(NetworkError::Plugin {
                    plugin,
                    command: command.as_str(),
                    code: error.code,
                    msg: error.msg,
                    details: error.details,
                });
            }
            let mut text = String::from_utf8_lossy(&output.stdout).trim().to_string();
            let stderr = String::from_utf8_lossy(&output.stderr);
            if !stderr.trim().is_empty() {
                if !text.is_empty() {
                    text.push_str("; ");
                }
                text.push_str(stderr.trim());
            }
            return Err(NetworkError::PluginFailed {
                plugin,
                command: command.as_str(),
                status: output.status,
                output: text,
            });
        }
        if command != Command::Add {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&output.stdout).map_err(|source| NetworkError::PluginResult {
            plugin,
            command: command.as_str(),
            source,
        })
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`, so readers never see half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), NetworkError> {
    let mut tmp_name = path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    fs::write(&tmp, bytes).map_err(|source| NetworkError::Io { path: tmp.clone(), source })?;
    fs::rename(&tmp, path).map_err(|source| NetworkError::Io { path: path.to_path_buf(), source })
}

/// `CNI_ARGS` split into its pairs.
#[cfg(test)]
fn parse_cni_args(args: &str) -> std::collections::BTreeMap<&str, &str> {
    args.split(';').filter_map(|pair| pair.split_once('=')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::Protocol;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gantry-cni-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn list(plugins: Value) -> NetworkConfigList {
        let bytes = serde_json::to_vec(&json!({ "cniVersion": "1.0.0", "name": "net", "plugins": plugins })).unwrap();
        NetworkConfigList::parse(Path::new("/x/net.conflist"), &bytes).unwrap()
    }

    #[test]
    fn the_first_configuration_in_lexical_order_wins() {
        let dir = temp_dir("lexical");
        fs::write(dir.join("20-b.conflist"), r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#)
            .unwrap();
        fs::write(dir.join("10-a.conf"), r#"{"cniVersion":"0.4.0","name":"a","type":"ptp"}"#).unwrap();
        fs::write(dir.join("00-ignored.txt"), "not a config").unwrap();
        let list = NetworkConfigList::load(&dir).unwrap();
        assert_eq!(list.name, "a");
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(plugin_type(&list.plugins[0]), "ptp");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unparsable_configuration_is_skipped_for_the_next_one() {
        let dir = temp_dir("skip");
        fs::write(dir.join("10-broken.conflist"), "{").unwrap();
        fs::write(dir.join("20-good.json"), r#"{"cniVersion":"1.0.0","name":"good","type":"bridge"}"#).unwrap();
        assert_eq!(NetworkConfigList::load(&dir).unwrap().name, "good");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_directory_has_no_configuration() {
        let dir = temp_dir("empty");
        assert!(matches!(NetworkConfigList::load(&dir), Err(NetworkError::NoConfig { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn disable_check_is_read_from_a_list_and_kept_in_its_cached_form() {
        let bytes = br#"{"cniVersion":"1.0.0","name":"n","disableCheck":true,"plugins":[{"type":"bridge"}]}"#;
        let list = NetworkConfigList::parse(Path::new("a.conflist"), bytes).unwrap();
        assert!(list.disable_check);
        let cached = NetworkConfigList::from_cached(&list.to_value(), Path::new("/c/sb.json")).unwrap();
        assert!(cached.disable_check);
        assert_eq!(cached.plugins, list.plugins);
    }

    #[test]
    fn a_plugin_type_with_a_slash_is_refused() {
        let bytes = br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}"#;
        let err = NetworkConfigList::parse(Path::new("a.conflist"), bytes).unwrap_err();
        assert!(matches!(err, NetworkError::InvalidConfig { .. }), "{err}");
    }

    #[test]
    fn the_default_configuration_is_written_once_and_loads_back() {
        let dir = temp_dir("default");
        let written = write_default_config(&dir, &dir.join("ipam"), "gantry0", "10.244.1.0/24").unwrap();
        assert_eq!(written, Some(dir.join(DEFAULT_CONFIG_FILE)));
        let list = NetworkConfigList::load(&dir).unwrap();
        assert_eq!(list.name, "gantry0");
        assert_eq!(list.cni_version, CNI_VERSION);
        let bridge = &list.plugins[0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "gantry0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(bridge["ipam"]["dataDir"], json!(fs::canonicalize(dir.join("ipam")).unwrap()));
        assert_eq!(list.plugins[1]["type"], "portmap");
        assert_eq!(list.plugins[1]["capabilities"]["portMappings"], true);
        assert_eq!(write_default_config(&dir, &dir.join("ipam"), "other0", "10.9.0.0/16").unwrap(), None);
        assert_eq!(NetworkConfigList::load(&dir).unwrap().name, "gantry0");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_ipv6_pod_cidr_gets_an_ipv6_default_route() {
        let config = default_config("gantry0", "fd00:10::/64").unwrap();
        assert_eq!(config["plugins"][0]["ipam"]["routes"][0]["dst"], "::/0");
    }

    #[test]
    fn malformed_pod_cidrs_and_bridge_names_are_refused() {
        for cidr in ["10.0.0.0", "10.0.0.1/24", "10.0.0.0/31", "nonsense/8", "10.0.0.0/x", "fd00::1/64"] {
            assert!(matches!(default_config("br0", cidr), Err(NetworkError::InvalidCidr { .. })), "{cidr}");
        }
        for name in ["", "a-name-longer-than-15", "br 0", "br/0"] {
            assert!(matches!(default_config(name, "10.0.0.0/8"), Err(NetworkError::InvalidValue { .. })), "{name}");
        }
        assert!(parse_cidr("0.0.0.0/0").is_ok());
    }

    #[test]
    fn cni_args_carry_the_pod_identity() {
        let pod = PodNetwork {
            sandbox_id: "abc".into(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            pod_uid: "1234".into(),
            ..PodNetwork::default()
        };
        let args = pod.cni_args().unwrap();
        assert!(args.starts_with("IgnoreUnknown=1;"), "{args}");
        let parsed = parse_cni_args(&args);
        assert_eq!(parsed["K8S_POD_NAMESPACE"], "default");
        assert_eq!(parsed["K8S_POD_NAME"], "web");
        assert_eq!(parsed["K8S_POD_INFRA_CONTAINER_ID"], "abc");
        assert_eq!(parsed["K8S_POD_UID"], "1234");
    }

    #[test]
    fn a_semicolon_in_a_cni_arg_is_refused() {
        let pod = PodNetwork { pod_name: "a;b".into(), ..PodNetwork::default() };
        assert!(matches!(pod.cni_args(), Err(NetworkError::InvalidValue { what: "pod name", .. })));
    }

    #[test]
    fn port_mappings_go_only_to_plugins_that_declare_the_capability() {
        let list = list(json!([
            { "type": "bridge" },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]));
        let mappings =
            [PortMapping { protocol: Protocol::Udp, container_port: 53, host_port: 5353, host_ip: String::new() }];
        let mut caps = Map::new();
        caps.insert("portMappings".into(), port_mappings_value(&mappings));
        let prev = json!({ "cniVersion": "1.0.0", "ips": [] });

        let bridge = plugin_config(&list, 0, None, &caps);
        assert_eq!(bridge["name"], "net");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("runtimeConfig").is_none());
        assert!(bridge.get("prevResult").is_none());

        let portmap = plugin_config(&list, 1, Some(&prev), &caps);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"],
            json!([{ "hostPort": 5353, "containerPort": 53, "protocol": "udp" }])
        );
    }

    #[test]
    fn a_host_ip_is_passed_only_when_set() {
        let mappings =
            [PortMapping { protocol: Protocol::Tcp, container_port: 80, host_port: 8080, host_ip: "127.0.0.1".into() }];
        assert_eq!(port_mappings_value(&mappings)[0]["hostIP"], "127.0.0.1");
    }

    #[test]
    fn pod_ips_are_the_addresses_on_sandbox_interfaces() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                { "name": "cni0", "mac": "aa:aa:aa:aa:aa:aa" },
                { "name": "veth1", "mac": "bb:bb:bb:bb:bb:bb" },
                { "name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/ns/net" }
            ],
            "ips": [
                { "address": "10.1.0.1/24", "interface": 0 },
                { "address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 2 },
                { "address": "fd00::5/64", "gateway": "fd00::1", "interface": 2 }
            ]
        });
        let status = PodNetworkStatus { network: "n".into(), ips: pod_ips(&result), result };
        assert_eq!(status.ips.len(), 2);
        assert_eq!(status.ips[0].prefix_len, 24);
        assert_eq!(status.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(status.primary_ip(), Some("10.1.0.5".parse().unwrap()));
        assert_eq!(status.ipv6(), Some("fd00::5".parse().unwrap()));
        assert_eq!(status.additional_ips(), vec!["fd00::5".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn an_ipv6_only_pod_has_its_ipv6_address_as_primary() {
        let result = json!({ "ips": [{ "address": "fd00::7/64" }] });
        let status = PodNetworkStatus { network: "n".into(), ips: pod_ips(&result), result };
        assert_eq!(status.primary_ip(), Some("fd00::7".parse().unwrap()));
        assert!(status.additional_ips().is_empty());
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_tuple("0.10.0") > version_tuple("0.4.0"));
        assert!(version_tuple("1.0.0") >= (0, 4, 0));
        assert!(version_tuple("0.3.1") < (0, 4, 0));
    }
}
