//! The node's own objects in the API: its Node (registration and status) and its Lease in `kube-node-lease`
//! (the heartbeat the node lifecycle controller watches), kept the way the kubelet keeps them.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::machine::MachineFacts;

/// Namespace of node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a node's Lease holds without renewal (the kubelet's default).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The port of the node's HTTPS API, as the Node advertises it.
pub const NODE_API_PORT: i32 = 10250;
/// Memory the kubelet keeps back from pods by default (its hard eviction threshold, `memory.available<100Mi`).
pub const EVICTION_MEMORY_BYTES: u64 = 100 << 20;
/// Share of the node's filesystem kept back from pods (`nodefs.available<10%`).
pub const EVICTION_NODEFS_PERCENT: u64 = 10;

/// Failures talking to the API about the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An API request failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> NodeError {
    let what = what.into();
    move |source| NodeError::Api { what, source }
}

/// How this node presents itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    /// The Node's name (the hostname unless given).
    pub name: String,
    /// Labels beyond the well-known ones the agent sets.
    pub labels: BTreeMap<String, String>,
    /// Most pods the node runs (`pods` capacity).
    pub max_pods: u32,
    /// The version the node reports as its kubelet's.
    pub agent_version: String,
    /// The runtime the node reports (`gantry://0.1.0`).
    pub runtime_version: String,
    /// The port of the node's HTTPS API (`status.daemonEndpoints.kubeletEndpoint.Port`).
    pub api_port: u16,
    /// The pod CIDR given to the agent (`--pod-cidr`): written to `spec.podCIDR` when the Node has none, so that
    /// node IPAM and the other nodes' routes know it.
    pub pod_cidr: Option<String>,
}

impl NodeSettings {
    /// The kubelet's defaults for a node named `name`: 110 pods.
    pub fn new(name: impl Into<String>) -> NodeSettings {
        NodeSettings {
            name: name.into(),
            labels: BTreeMap::new(),
            max_pods: 110,
            agent_version: format!("v1.35.0-gantry.{}", env!("CARGO_PKG_VERSION")),
            runtime_version: format!("gantry://{}", env!("CARGO_PKG_VERSION")),
            api_port: NODE_API_PORT as u16,
            pod_cidr: None,
        }
    }
}

fn kibibytes(bytes: u64) -> Quantity {
    Quantity(format!("{}Ki", bytes / 1024))
}

/// The condition types of a Node's status and their "all is well" forms, as the kubelet words them.
fn healthy_conditions(now: &Time) -> Vec<NodeCondition> {
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    vec![
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]
}

/// What the node offers pods: the machine less the eviction thresholds (the Node's `allocatable`).
pub fn allocatable(facts: &MachineFacts) -> crate::downward::NodeAllocatable {
    let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
    crate::downward::NodeAllocatable {
        cpu_millis: i64::from(facts.cpus) * 1000,
        memory_bytes: bytes(facts.memory_bytes.saturating_sub(EVICTION_MEMORY_BYTES)),
        ephemeral_storage_bytes: bytes(facts.ephemeral_storage_bytes / 100 * (100 - EVICTION_NODEFS_PERCENT)),
    }
}

/// The Node's status: capacity from the machine, allocatable after the eviction thresholds, addresses, system
/// information, and the given conditions.
pub fn node_status(facts: &MachineFacts, settings: &NodeSettings, conditions: Vec<NodeCondition>) -> NodeStatus {
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(facts.cpus.to_string())),
        ("memory".to_string(), kibibytes(facts.memory_bytes)),
        ("ephemeral-storage".to_string(), kibibytes(facts.ephemeral_storage_bytes)),
        ("pods".to_string(), Quantity(settings.max_pods.to_string())),
    ]);
    let allocatable = BTreeMap::from([
        ("cpu".to_string(), Quantity(facts.cpus.to_string())),
        ("memory".to_string(), kibibytes(facts.memory_bytes.saturating_sub(EVICTION_MEMORY_BYTES))),
        (
            "ephemeral-storage".to_string(),
            kibibytes(facts.ephemeral_storage_bytes / 100 * (100 - EVICTION_NODEFS_PERCENT)),
        ),
        ("pods".to_string(), Quantity(settings.max_pods.to_string())),
    ]);
    let mut addresses = Vec::new();
    if let Some(ip) = facts.internal_ip {
        addresses.push(NodeAddress { type_: "InternalIP".to_string(), address: ip.to_string() });
    }
    addresses.push(NodeAddress { type_: "Hostname".to_string(), address: facts.hostname.clone() });
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        addresses: Some(addresses),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(settings.api_port) }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: facts.architecture.clone(),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: settings.runtime_version.clone(),
            kernel_version: facts.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: settings.agent_version.clone(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".to_string(),
            os_image: facts.os_image.clone(),
            system_uuid: facts.machine_id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The labels every node carries (`kubernetes.io/hostname`, `kubernetes.io/os`, `kubernetes.io/arch` and their
/// beta twins), plus the configured ones.
pub fn node_labels(facts: &MachineFacts, settings: &NodeSettings) -> BTreeMap<String, String> {
    let mut labels = settings.labels.clone();
    for (key, value) in [
        ("kubernetes.io/hostname", settings.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", facts.architecture.as_str()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", facts.architecture.as_str()),
    ] {
        labels.insert(key.to_string(), value.to_string());
    }
    labels
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Registers the Node, or brings an existing one up to date (labels and status), as a kubelet does at start.
pub async fn register(client: &Client, facts: &MachineFacts, settings: &NodeSettings) -> Result<Node, NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let labels = node_labels(facts, settings);
    let spec = settings.pod_cidr.as_ref().map(|cidr| NodeSpec {
        pod_cidr: Some(cidr.clone()),
        pod_cidrs: Some(vec![cidr.clone()]),
        ..Default::default()
    });
    let node = Node {
        metadata: ObjectMeta { name: Some(settings.name.clone()), labels: Some(labels.clone()), ..Default::default() },
        spec,
        status: None,
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing =
                nodes.get(&settings.name).await.map_err(api_error(format!("reading node {}", settings.name)))?;
            let current = existing.spec.as_ref().and_then(|s| s.pod_cidr.clone()).filter(|c| !c.is_empty());
            let mut patch = serde_json::json!({"metadata": {"labels": labels}});
            match (&settings.pod_cidr, current) {
                (Some(cidr), None) => patch["spec"] = serde_json::json!({"podCIDR": cidr, "podCIDRs": [cidr]}),
                (Some(cidr), Some(current)) if *cidr != current => tracing::warn!(
                    node = %settings.name, given = %cidr, %current,
                    "the Node already has another pod CIDR, which cannot change: delete the Node to change it"
                ),
                _ => {}
            }
            nodes
                .patch(&settings.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_error(format!("updating the labels of node {}", settings.name)))?;
        }
        Err(source) => return Err(NodeError::Api { what: format!("registering node {}", settings.name), source }),
    }
    update_status(client, facts, settings).await
}

/// Writes the Node's status: capacity, addresses, system information, and conditions with a fresh heartbeat
/// (a condition's transition time is kept while its status does not change).
pub async fn update_status(client: &Client, facts: &MachineFacts, settings: &NodeSettings) -> Result<Node, NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let current = nodes.get(&settings.name).await.map_err(api_error(format!("reading node {}", settings.name)))?;
    let now = now();
    let previous = current.status.and_then(|s| s.conditions).unwrap_or_default();
    let conditions = healthy_conditions(&now)
        .into_iter()
        .map(|mut condition| {
            if let Some(old) = previous.iter().find(|c| c.type_ == condition.type_ && c.status == condition.status) {
                condition.last_transition_time = old.last_transition_time.clone();
            }
            condition
        })
        .collect();
    let status = node_status(facts, settings, conditions);
    let patch = serde_json::json!({"status": status});
    nodes
        .patch_status(&settings.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_error(format!("updating the status of node {}", settings.name)))
}

/// Creates or renews the node's Lease: holder and renew time, owned by the Node so that it goes with it.
pub async fn renew_lease(client: &Client, node: &Node) -> Result<Lease, NodeError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let renew_time = MicroTime(jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(name.clone()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(renew_time),
        ..Default::default()
    };
    match leases.get_opt(&name).await.map_err(api_error(format!("reading the lease of node {name}")))? {
        Some(mut lease) => {
            lease.spec = Some(spec);
            leases
                .replace(&name, &PostParams::default(), &lease)
                .await
                .map_err(api_error(format!("renewing the lease of node {name}")))
        }
        None => {
            let owner = OwnerReference {
                api_version: "v1".to_string(),
                kind: "Node".to_string(),
                name: name.clone(),
                uid: node.metadata.uid.clone().unwrap_or_default(),
                ..Default::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(LEASE_NAMESPACE.to_string()),
                    owner_references: Some(vec![owner]),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map_err(api_error(format!("creating the lease of node {name}")))
        }
    }
}

/// How often the node's heartbeats go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatIntervals {
    /// Lease renewal (the kubelet renews every 10 s, a quarter of the Lease's 40 s).
    pub lease: std::time::Duration,
    /// Status report with fresh condition heartbeats (the kubelet's `nodeStatusUpdateFrequency`, 10 s).
    pub status: std::time::Duration,
}

impl Default for HeartbeatIntervals {
    fn default() -> Self {
        HeartbeatIntervals { lease: std::time::Duration::from_secs(10), status: std::time::Duration::from_secs(10) }
    }
}

/// Renews the Lease and reports the status at their intervals until `shutdown`. A failed attempt is logged and
/// retried at the next tick: the API server being away for a while must not stop the node.
pub async fn run_heartbeats(
    client: Client,
    node: Node,
    facts: MachineFacts,
    settings: NodeSettings,
    intervals: HeartbeatIntervals,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut lease_tick = tokio::time::interval(intervals.lease);
    let mut status_tick = tokio::time::interval(intervals.status);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = lease_tick.tick() => {
                if let Err(err) = renew_lease(&client, &node).await {
                    tracing::warn!(node = %settings.name, %err, "lease renewal failed; retrying at the next tick");
                }
            }
            _ = status_tick.tick() => {
                if let Err(err) = update_status(&client, &facts, &settings).await {
                    tracing::warn!(node = %settings.name, %err, "status report failed; retrying at the next tick");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> MachineFacts {
        MachineFacts {
            cpus: 2,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 100 << 30,
            hostname: "node-a".into(),
            internal_ip: Some("192.168.1.10".parse().expect("ip")),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "amd64".into(),
            machine_id: "abc".into(),
            boot_id: "boot".into(),
        }
    }

    #[test]
    fn allocatable_keeps_the_eviction_thresholds_back() {
        let status = node_status(&facts(), &NodeSettings::new("node-a"), Vec::new());
        let capacity = status.capacity.expect("capacity");
        let allocatable = status.allocatable.expect("allocatable");
        assert_eq!(capacity["memory"].0, format!("{}Ki", (4u64 << 30) / 1024));
        assert_eq!(allocatable["memory"].0, format!("{}Ki", ((4u64 << 30) - (100 << 20)) / 1024));
        assert_eq!(allocatable["ephemeral-storage"].0, format!("{}Ki", (100u64 << 30) / 100 * 90 / 1024));
        assert_eq!((capacity["cpu"].0.as_str(), capacity["pods"].0.as_str()), ("2", "110"));
    }

    #[test]
    fn addresses_list_the_internal_ip_then_the_hostname() {
        let status = node_status(&facts(), &NodeSettings::new("node-a"), Vec::new());
        let addresses: Vec<(String, String)> =
            status.addresses.expect("addresses").into_iter().map(|a| (a.type_, a.address)).collect();
        assert_eq!(
            addresses,
            [("InternalIP".to_string(), "192.168.1.10".to_string()), ("Hostname".to_string(), "node-a".to_string())]
        );
    }

    #[test]
    fn well_known_labels_win_over_configured_ones() {
        let mut settings = NodeSettings::new("node-a");
        settings.labels.insert("kubernetes.io/os".into(), "windows".into());
        settings.labels.insert("zone".into(), "a".into());
        let labels = node_labels(&facts(), &settings);
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/hostname"], "node-a");
        assert_eq!(labels["zone"], "a");
    }
}
