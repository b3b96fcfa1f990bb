//! From a Pod to what the runtime is asked for: the sandbox's config, each container's config, the pod's QoS
//! class and cgroup, and the labels that tie runtime objects back to the pod (so that a restarted agent finds
//! them again).

use std::collections::BTreeMap;
use std::path::PathBuf;

use gantry_api::validation::Quantity;
use gantry_runtime::cri::{
    Capabilities, ContainerConfig, DnsConfig, LinuxResources, NamespaceMode, NamespaceOptions, PodSandboxConfig,
    PodSandboxMetadata, PortMapping, Protocol, SecurityContext,
};
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;

/// Label on sandboxes and containers: the pod's UID.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// Label on sandboxes and containers: the pod's name.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Label on sandboxes and containers: the pod's namespace.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Label on containers: the container's name in the pod.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// Annotation on containers: a hash of the container's spec, to notice a changed image.
pub const CONTAINER_HASH_ANNOTATION: &str = "io.kubernetes.container.hash";
/// Annotation on containers: where its termination message is written on the node.
pub const TERMINATION_MESSAGE_ANNOTATION: &str = "gantry.dev/termination-message-file";

/// CPU period for CFS quotas, in microseconds (the kubelet's default).
const CPU_PERIOD: u64 = 100_000;
/// Smallest cpu.shares the kernel accepts.
const MIN_SHARES: u64 = 2;

/// A pod's Quality of Service class, from its containers' requests and limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has equal CPU and memory requests and limits.
    Guaranteed,
    /// Some requests or limits, not Guaranteed.
    Burstable,
    /// No requests or limits at all.
    BestEffort,
}

impl QosClass {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

fn quantity(list: Option<&BTreeMap<String, KQuantity>>, name: &str) -> Option<Quantity> {
    list.and_then(|l| l.get(name)).and_then(|q| Quantity::parse(&q.0).ok())
}

/// The QoS class as the API server and kubelet compute it (`status.qosClass`).
pub fn qos_class(pod: &Pod) -> QosClass {
    let Some(spec) = pod.spec.as_ref() else { return QosClass::BestEffort };
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for container in containers {
        let resources = container.resources.as_ref();
        let requests = resources.and_then(|r| r.requests.as_ref());
        let limits = resources.and_then(|r| r.limits.as_ref());
        for name in ["cpu", "memory"] {
            let request = quantity(requests, name).filter(|q| !q.is_zero());
            let limit = quantity(limits, name).filter(|q| !q.is_zero());
            any |= request.is_some() || limit.is_some();
            // A limit alone defaults the request to it.
            match (request, limit) {
                (Some(r), Some(l)) if r.nanos() == l.nanos() => {}
                (None, Some(_)) => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

/// The pod's cgroup, relative to the runtime's cgroup root, laid out as the kubelet lays out `kubepods`.
pub fn pod_cgroup(pod_uid: &str, qos: QosClass) -> String {
    let uid: String = pod_uid.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    match qos {
        QosClass::Guaranteed => format!("pod{uid}"),
        QosClass::Burstable => format!("burstable/pod{uid}"),
        QosClass::BestEffort => format!("besteffort/pod{uid}"),
    }
}

fn milli_to_shares(milli: i64) -> u64 {
    (u64::try_from(milli).unwrap_or(0) * 1024 / 1000).max(MIN_SHARES)
}

/// A container's cgroup limits from its requests and limits.
pub fn container_resources(
    resources: Option<&ResourceRequirements>,
    qos: QosClass,
    memory_capacity: i64,
) -> LinuxResources {
    let requests = resources.and_then(|r| r.requests.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    let cpu_request = quantity(requests, "cpu").or_else(|| quantity(limits, "cpu")).map(|q| q.milli_value());
    let cpu_limit = quantity(limits, "cpu").map(|q| q.milli_value()).filter(|m| *m > 0);
    let memory_request = quantity(requests, "memory").or_else(|| quantity(limits, "memory")).map(|q| q.value());
    let memory_limit = quantity(limits, "memory").map(|q| q.value()).filter(|b| *b > 0);
    LinuxResources {
        cpu_shares: Some(cpu_request.map(milli_to_shares).unwrap_or(MIN_SHARES)),
        cpu_quota: cpu_limit.map(|m| (m * CPU_PERIOD as i64 / 1000).max(1000)),
        cpu_period: cpu_limit.map(|_| CPU_PERIOD),
        memory_limit_bytes: memory_limit,
        pids_limit: None,
        oom_score_adj: Some(oom_score_adj(qos, memory_request.unwrap_or(0), memory_capacity)),
    }
}

/// The kubelet's OOM score policy, except that Guaranteed containers get 0 rather than a negative score: the
/// runtime does not let pods protect themselves from the OOM killer below the node's own processes.
fn oom_score_adj(qos: QosClass, memory_request: i64, memory_capacity: i64) -> i32 {
    match qos {
        QosClass::Guaranteed => 0,
        QosClass::BestEffort => 1000,
        QosClass::Burstable if memory_capacity > 0 => {
            let adj = 1000 - (1000 * i128::from(memory_request) / i128::from(memory_capacity));
            adj.clamp(2, 999) as i32
        }
        QosClass::Burstable => 999,
    }
}

/// The pod-level limits for the pod's cgroup: the sum of its containers' limits when every container has one.
fn pod_resources(pod: &Pod) -> LinuxResources {
    let Some(spec) = pod.spec.as_ref() else { return LinuxResources::default() };
    let mut cpu = Some(0i64);
    let mut memory = Some(0i64);
    let mut shares = 0i64;
    for container in &spec.containers {
        let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
        let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
        cpu = cpu.zip(quantity(limits, "cpu").map(|q| q.milli_value())).map(|(a, b)| a + b);
        memory = memory.zip(quantity(limits, "memory").map(|q| q.value())).map(|(a, b)| a + b);
        shares += quantity(requests, "cpu").or_else(|| quantity(limits, "cpu")).map(|q| q.milli_value()).unwrap_or(0);
    }
    let cpu = cpu.filter(|m| *m > 0);
    LinuxResources {
        cpu_shares: Some(milli_to_shares(shares)),
        cpu_quota: cpu.map(|m| (m * CPU_PERIOD as i64 / 1000).max(1000)),
        cpu_period: cpu.map(|_| CPU_PERIOD),
        memory_limit_bytes: memory.filter(|b| *b > 0),
        pids_limit: None,
        oom_score_adj: None,
    }
}

/// Labels that tie a runtime object to its pod.
pub fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let meta = &pod.metadata;
    BTreeMap::from([
        (POD_UID_LABEL.to_string(), meta.uid.clone().unwrap_or_default()),
        (POD_NAME_LABEL.to_string(), meta.name.clone().unwrap_or_default()),
        (POD_NAMESPACE_LABEL.to_string(), meta.namespace.clone().unwrap_or_default()),
    ])
}

/// The sandbox's config for a pod; `attempt` counts sandboxes made for it before; `cluster_dns` is what
/// `ClusterFirst` pods resolve with (the node's resolver when `None`).
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    log_directory: PathBuf,
    qos: QosClass,
    cluster_dns: Option<&ClusterDns>,
) -> PodSandboxConfig {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let mode = |host: Option<bool>| if host.unwrap_or(false) { NamespaceMode::Node } else { NamespaceMode::Pod };
    let mut port_mappings = Vec::new();
    for container in &spec.containers {
        for port in container.ports.iter().flatten() {
            let Some(host_port) = port.host_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) else {
                continue;
            };
            let protocol = match port.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            port_mappings.push(PortMapping {
                protocol,
                container_port: u16::try_from(port.container_port).unwrap_or(0),
                host_port,
                host_ip: port.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    let hostname = match (&spec.hostname, host_network) {
        (_, true) => String::new(),
        (Some(h), false) if !h.is_empty() => h.clone(),
        _ => name.clone(),
    };
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name,
            namespace: meta.namespace.clone().unwrap_or_default(),
            uid: uid.clone(),
            attempt,
        },
        hostname,
        log_directory,
        port_mappings,
        labels: pod_labels(pod),
        annotations: meta.annotations.clone().unwrap_or_default(),
        namespaces: NamespaceOptions {
            network: if host_network { NamespaceMode::Node } else { NamespaceMode::Pod },
            pid: if spec.host_pid.unwrap_or(false) { NamespaceMode::Node } else { NamespaceMode::Container },
            ipc: mode(spec.host_ipc),
        },
        cgroup_parent: pod_cgroup(&uid, qos),
        resources: pod_resources(pod),
        dns_config: dns_config(pod, cluster_dns, &node_resolver()),
    }
}

/// The cluster DNS pods are pointed at (the kubelet's `--cluster-dns` and `--cluster-domain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDns {
    /// The nameserver (the `kube-dns` Service's ClusterIP).
    pub server: std::net::IpAddr,
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
}

/// At most this many nameservers in a resolv.conf (glibc's MAXNS), as the kubelet enforces.
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains, as the kubelet enforces.
pub const MAX_SEARCH_DOMAINS: usize = 32;
/// At most this many characters on the search line, as the kubelet enforces.
pub const MAX_SEARCH_CHARS: usize = 2048;
/// A search domain longer than a DNS name can be makes some resolvers abort: the kubelet drops it.
const MAX_DOMAIN_CHARS: usize = 253;

/// The pod's resolver configuration, by the kubelet's rules: `ClusterFirst` (not on the host's network) and
/// `ClusterFirstWithHostNet` use the cluster DNS with the namespace's search path and `ndots:5`; `Default` (and
/// `ClusterFirst` on the host's network) the node's resolver; `None` nothing; then the pod's `dnsConfig` is
/// merged in and the result cut to the resolver's limits. Without a cluster DNS, the cluster policies fall back
/// to the node's resolver, as the kubelet does.
fn dns_config(pod: &Pod, cluster: Option<&ClusterDns>, node: &DnsConfig) -> Option<DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let host_network = spec.host_network.unwrap_or(false);
    let cluster = match spec.dns_policy.as_deref() {
        Some("None") => None,
        Some("Default") => None,
        Some("ClusterFirstWithHostNet") => cluster,
        _ if host_network => None,
        _ => cluster,
    };
    let mut config = match (spec.dns_policy.as_deref(), cluster) {
        (Some("None"), _) => DnsConfig::default(),
        (_, Some(cluster)) => {
            let domain = cluster.domain.trim_end_matches('.');
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let mut searches = vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.to_string()];
            append_new(&mut searches, node.searches.iter().cloned());
            DnsConfig { servers: vec![cluster.server.to_string()], searches, options: vec!["ndots:5".to_string()] }
        }
        (_, None) => node.clone(),
    };
    if let Some(custom) = spec.dns_config.as_ref() {
        append_new(&mut config.servers, custom.nameservers.iter().flatten().cloned());
        append_new(&mut config.searches, custom.searches.iter().flatten().cloned());
        for option in custom.options.iter().flatten() {
            let Some(name) = option.name.as_ref() else { continue };
            let text = match &option.value {
                Some(value) if !value.is_empty() => format!("{name}:{value}"),
                _ => name.clone(),
            };
            match config.options.iter_mut().find(|o| o.split(':').next() == Some(name.as_str())) {
                Some(existing) => *existing = text,
                None => config.options.push(text),
            }
        }
    }
    config.servers.truncate(MAX_NAMESERVERS);
    config.searches = fit_searches(std::mem::take(&mut config.searches));
    Some(config)
}

/// Appends the items of `more` that `list` does not have yet.
fn append_new(list: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    for item in more {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The kubelet's cut of a search path: the first 32 domains, without those longer than a DNS name, then
/// domains dropped from the end until the line fits in 2048 characters.
fn fit_searches(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCH_DOMAINS);
    searches.retain(|s| s.len() <= MAX_DOMAIN_CHARS);
    let line = |s: &[String]| s.iter().map(String::len).sum::<usize>() + s.len().saturating_sub(1);
    while line(&searches) > MAX_SEARCH_CHARS {
        searches.pop();
    }
    searches
}

/// The node's resolver, from its /etc/resolv.conf.
fn node_resolver() -> DnsConfig {
    parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut config = DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            // A loopback resolver on the node (systemd-resolved's stub) is unreachable from a pod's network.
            Some("nameserver") => config
                .servers
                .extend(words.next().filter(|s| !s.starts_with("127.") && *s != "::1").map(str::to_string)),
            Some("search") | Some("domain") => {
                config.searches.extend(words.filter(|w| *w != ".").map(|w| w.trim_end_matches('.').to_string()))
            }
            Some("options") => config.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    config
}

/// A short, stable hash of what a container was created from (name, image, command, args), to notice that the
/// spec changed (only `image` may change on a live pod).
pub fn container_hash(container: &Container) -> String {
    // FNV-1a: stable across runs and releases, unlike the standard library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |s: &str| {
        for byte in s.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(&container.name);
    feed(container.image.as_deref().unwrap_or(""));
    for part in container.command.iter().flatten().chain(container.args.iter().flatten()) {
        feed(part);
    }
    format!("{hash:016x}")
}

/// What a container's config needs besides its spec.
pub struct ContainerInputs {
    /// Restart count: how many times this container was started before in the pod.
    pub attempt: u32,
    /// Environment, resolved.
    pub envs: Vec<(String, String)>,
    /// Command and args, expanded.
    pub command: Vec<String>,
    /// Args, expanded.
    pub args: Vec<String>,
    /// Mounts: volumes and the termination message file.
    pub mounts: Vec<gantry_runtime::cri::Mount>,
    /// Where the termination message file lives on the node.
    pub termination_message_file: PathBuf,
    /// The image, resolved to its ID.
    pub image: String,
    /// Memory capacity of the node (for OOM scores).
    pub memory_capacity: i64,
}

/// A container's config for the runtime.
pub fn container_config(pod: &Pod, container: &Container, qos: QosClass, inputs: ContainerInputs) -> ContainerConfig {
    let mut labels = pod_labels(pod);
    labels.insert(CONTAINER_NAME_LABEL.to_string(), container.name.clone());
    let annotations = BTreeMap::from([
        (CONTAINER_HASH_ANNOTATION.to_string(), container_hash(container)),
        (TERMINATION_MESSAGE_ANNOTATION.to_string(), inputs.termination_message_file.display().to_string()),
    ]);
    ContainerConfig {
        name: container.name.clone(),
        attempt: inputs.attempt,
        image: inputs.image,
        command: inputs.command,
        args: inputs.args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: inputs.envs,
        mounts: inputs.mounts,
        labels,
        annotations,
        log_path: PathBuf::from(format!("{}/{}.log", container.name, inputs.attempt)),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        resources: container_resources(container.resources.as_ref(), qos, inputs.memory_capacity),
        security: security_context(pod, container),
    }
}

fn to_u32(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

/// The container's security settings: the container's context over the pod's.
pub fn security_context(pod: &Pod, container: &Container) -> SecurityContext {
    let pod_context = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let context = container.security_context.as_ref();
    let run_as_user = to_u32(context.and_then(|c| c.run_as_user).or_else(|| pod_context.and_then(|p| p.run_as_user)));
    let run_as_group =
        to_u32(context.and_then(|c| c.run_as_group).or_else(|| pod_context.and_then(|p| p.run_as_group)));
    let mut supplemental_groups: Vec<u32> = pod_context
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|g| u32::try_from(g).ok())
        .collect();
    if let Some(fs_group) = to_u32(pod_context.and_then(|p| p.fs_group)) {
        supplemental_groups.push(fs_group);
    }
    let privileged = context.and_then(|c| c.privileged).unwrap_or(false);
    SecurityContext {
        privileged,
        capabilities: Capabilities {
            add: context.and_then(|c| c.capabilities.as_ref()).and_then(|c| c.add.clone()).unwrap_or_default(),
            drop: context.and_then(|c| c.capabilities.as_ref()).and_then(|c| c.drop.clone()).unwrap_or_default(),
        },
        run_as_user,
        run_as_group,
        run_as_username: None,
        supplemental_groups,
        readonly_rootfs: context.and_then(|c| c.read_only_root_filesystem).unwrap_or(false),
        no_new_privs: !privileged && context.and_then(|c| c.allow_privilege_escalation) == Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "1234-abcd"},
            "spec": {"containers": containers}
        }))
        .expect("pod")
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        assert_eq!(qos_class(&pod(serde_json::json!([{"name": "a"}]))), QosClass::BestEffort);
        let limits_only =
            pod(serde_json::json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]));
        assert_eq!(qos_class(&limits_only), QosClass::Guaranteed);
        let equal = pod(serde_json::json!([{"name": "a", "resources": {
            "requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]));
        assert_eq!(qos_class(&equal), QosClass::Guaranteed);
        let request_only = pod(serde_json::json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]));
        assert_eq!(qos_class(&request_only), QosClass::Burstable);
        let mixed = pod(serde_json::json!([
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}, {"name": "b"}]));
        assert_eq!(qos_class(&mixed), QosClass::Burstable);
    }

    #[test]
    fn cgroups_are_laid_out_by_qos_class() {
        assert_eq!(pod_cgroup("12-ab", QosClass::Burstable), "burstable/pod12ab");
        assert_eq!(pod_cgroup("12-ab", QosClass::Guaranteed), "pod12ab");
    }

    #[test]
    fn cpu_and_memory_become_shares_quota_and_limit() {
        let p = pod(serde_json::json!([{"name": "a", "resources": {
            "requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}}]));
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let r = container_resources(c.resources.as_ref(), QosClass::Burstable, 1 << 30);
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(50_000), Some(100_000)));
        assert_eq!(r.memory_limit_bytes, Some(128 << 20));
        assert_eq!(r.oom_score_adj, Some(1000 - 1000 * 64 / 1024));
        let none = container_resources(None, QosClass::BestEffort, 1 << 30);
        assert_eq!((none.cpu_shares, none.cpu_quota, none.oom_score_adj), (Some(2), None, Some(1000)));
    }

    #[test]
    fn the_sandbox_carries_host_ports_namespaces_and_the_hostname() {
        let mut p = pod(serde_json::json!([{"name": "a", "ports": [
            {"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}]));
        let config = sandbox_config(&p, 2, PathBuf::from("/logs"), QosClass::BestEffort, None);
        assert_eq!(config.metadata.attempt, 2);
        assert_eq!(config.hostname, "web");
        assert_eq!(config.port_mappings.len(), 1);
        assert_eq!((config.port_mappings[0].container_port, config.port_mappings[0].host_port), (80, 8080));
        assert_eq!(config.namespaces.network, NamespaceMode::Pod);
        assert_eq!(config.labels[POD_UID_LABEL], "1234-abcd");
        p.spec.as_mut().expect("spec").host_network = Some(true);
        let host = sandbox_config(&p, 0, PathBuf::from("/logs"), QosClass::BestEffort, None);
        assert_eq!(host.namespaces.network, NamespaceMode::Node);
    }

    #[test]
    fn the_container_hash_changes_with_the_image_only_when_it_should() {
        let mut c = Container { name: "a".into(), image: Some("busybox:1".into()), ..Default::default() };
        let first = container_hash(&c);
        assert_eq!(first, container_hash(&c.clone()));
        c.image = Some("busybox:2".into());
        assert_ne!(first, container_hash(&c));
    }

    #[test]
    fn the_container_context_overrides_the_pods() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000},
                     "containers": [{"name": "a", "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": false}}]}
        }))
        .expect("pod");
        let s = security_context(&p, &p.spec.as_ref().expect("spec").containers[0]);
        assert_eq!((s.run_as_user, s.run_as_group), (Some(0), Some(1000)));
        assert_eq!(s.supplemental_groups, vec![2000]);
        assert!(s.no_new_privs);
    }

    fn dns_pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = serde_json::json!([{"name": "a"}]);
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec}))
            .expect("pod")
    }

    fn cluster() -> ClusterDns {
        ClusterDns { server: "10.43.0.10".parse().unwrap(), domain: "cluster.local".into() }
    }

    fn node() -> DnsConfig {
        parse_resolv_conf(
            "nameserver 127.0.0.53\nnameserver 192.168.1.1\nsearch corp.example. .\noptions edns0 trust-ad\n",
        )
    }

    #[test]
    fn the_node_resolver_drops_loopback_servers_and_final_dots() {
        let node = node();
        assert_eq!(node.servers, vec!["192.168.1.1"]);
        assert_eq!(node.searches, vec!["corp.example"]);
        assert_eq!(node.options, vec!["edns0", "trust-ad"]);
    }

    #[test]
    fn cluster_first_pods_use_the_cluster_dns_with_the_namespace_search_path() {
        let config = dns_config(&dns_pod(serde_json::json!({})), Some(&cluster()), &node()).expect("dns");
        assert_eq!(config.servers, vec!["10.43.0.10"]);
        assert_eq!(
            config.searches,
            vec!["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"]
        );
        assert_eq!(config.options, vec!["ndots:5"]);
        let explicit = dns_pod(serde_json::json!({"dnsPolicy": "ClusterFirst"}));
        assert_eq!(dns_config(&explicit, Some(&cluster()), &node()), Some(config));
    }

    #[test]
    fn host_network_pods_use_the_node_resolver_unless_they_ask_for_the_cluster() {
        let host = dns_pod(serde_json::json!({"hostNetwork": true}));
        assert_eq!(dns_config(&host, Some(&cluster()), &node()), Some(node()));
        let with_host_net = dns_pod(serde_json::json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}));
        let config = dns_config(&with_host_net, Some(&cluster()), &node()).expect("dns");
        assert_eq!(config.servers, vec!["10.43.0.10"]);
        let default = dns_pod(serde_json::json!({"dnsPolicy": "Default"}));
        assert_eq!(dns_config(&default, Some(&cluster()), &node()), Some(node()));
    }

    #[test]
    fn without_a_cluster_dns_cluster_first_falls_back_to_the_node_resolver() {
        assert_eq!(dns_config(&dns_pod(serde_json::json!({})), None, &node()), Some(node()));
    }

    #[test]
    fn policy_none_takes_only_the_pods_dns_config() {
        let pod = dns_pod(serde_json::json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.1.1.1"], "searches": ["a.example"], "options": [{"name": "ndots", "value": "2"}]}}));
        let config = dns_config(&pod, Some(&cluster()), &node()).expect("dns");
        assert_eq!(config.servers, vec!["1.1.1.1"]);
        assert_eq!(config.searches, vec!["a.example"]);
        assert_eq!(config.options, vec!["ndots:2"]);
    }

    #[test]
    fn dns_config_is_appended_without_duplicates_and_options_override_by_name() {
        let pod = dns_pod(serde_json::json!({"dnsConfig": {
            "nameservers": ["10.43.0.10", "1.1.1.1"], "searches": ["svc.cluster.local", "b.example"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}}));
        let config = dns_config(&pod, Some(&cluster()), &node()).expect("dns");
        assert_eq!(config.servers, vec!["10.43.0.10", "1.1.1.1"]);
        assert_eq!(
            config.searches,
            vec!["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "b.example"]
        );
        assert_eq!(config.options, vec!["ndots:1", "edns0"]);
    }

    #[test]
    fn nameservers_and_search_domains_are_cut_to_the_resolvers_limits() {
        let servers: Vec<String> = (1..=5).map(|i| format!("10.0.0.{i}")).collect();
        let searches: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let pod = dns_pod(serde_json::json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": servers, "searches": searches}}));
        let config = dns_config(&pod, None, &DnsConfig::default()).expect("dns");
        assert_eq!(config.servers, vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(config.searches.len(), MAX_SEARCH_DOMAINS);
        assert_eq!(config.searches[31], "d31.example");

        // Too long a domain is dropped; too long a line loses domains from its end.
        let long = format!("{}.example", "a".repeat(250));
        let mut searches = vec!["first.example".to_string(), long];
        searches.extend((0..20).map(|i| format!("{}{i:02}.example", "b".repeat(100))));
        let fitted = fit_searches(searches);
        assert_eq!(fitted[0], "first.example");
        assert!(fitted.iter().all(|s| s.len() <= 253));
        assert!(fitted.join(" ").len() <= MAX_SEARCH_CHARS);
        assert_eq!(fitted.len(), 1 + 18);
    }
}
