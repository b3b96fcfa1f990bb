//! The scheduler's view of the cluster for one cycle: nodes with the pods placed on them and what those pods
//! use. Built from informer caches (plus assumed pods); plugins read it, never the API.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resources::{Resources, pod_requests};
use crate::topology::TopologyIndex;

/// Requests kube-scheduler counts for scoring when a container asks for nothing, so that pods without requests
/// still spread: 100 millicores and 200 MiB.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// See [`DEFAULT_MILLI_CPU_REQUEST`].
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A pod with what the scheduler derives from it once.
#[derive(Debug)]
pub struct PodInfo {
    /// The pod.
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    /// The pod's UID.
    pub uid: String,
    /// What it requests (see [`pod_requests`]).
    pub requests: Resources,
    /// Requests with kube-scheduler's non-zero defaults for cpu and memory (for scoring).
    pub non_zero_requests: Resources,
    /// Its priority (`spec.priority`, 0 when unset).
    pub priority: i32,
    /// Whether it has any pod affinity or anti-affinity (so inter-pod affinity must look at it).
    pub has_pod_affinity: bool,
    /// Whether it has required pod anti-affinity (which every incoming pod must respect).
    pub has_required_anti_affinity: bool,
    /// Whether its terms move other pods' scores: required pod affinity, or preferred (anti-)affinity.
    pub has_scoring_terms: bool,
}

impl PodInfo {
    /// Derives what the scheduler needs from a pod.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let requests = pod_requests(&pod);
        let mut non_zero_requests = requests.clone();
        if let Some(spec) = &pod.spec {
            // Per container, as kube-scheduler does: a container without a cpu or memory request counts the
            // default amount.
            let missing = |res: &str| {
                spec.containers
                    .iter()
                    .filter(|c| {
                        c.resources.as_ref().and_then(|r| r.requests.as_ref()).is_none_or(|r| !r.contains_key(res))
                    })
                    .count() as i64
            };
            non_zero_requests.milli_cpu += missing("cpu") * DEFAULT_MILLI_CPU_REQUEST;
            non_zero_requests.memory += missing("memory") * DEFAULT_MEMORY_REQUEST;
        }
        let meta = &pod.metadata;
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let has_pod_affinity = affinity.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some());
        let has_required_anti_affinity = affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .is_some_and(|terms| !terms.is_empty());
        let has_scoring_terms = affinity.is_some_and(|a| {
            let affinity = a.pod_affinity.as_ref();
            let anti = a.pod_anti_affinity.as_ref();
            affinity
                .and_then(|t| t.required_during_scheduling_ignored_during_execution.as_ref())
                .is_some_and(|t| !t.is_empty())
                || affinity
                    .and_then(|t| t.preferred_during_scheduling_ignored_during_execution.as_ref())
                    .is_some_and(|t| !t.is_empty())
                || anti
                    .and_then(|t| t.preferred_during_scheduling_ignored_during_execution.as_ref())
                    .is_some_and(|t| !t.is_empty())
        });
        PodInfo {
            has_pod_affinity,
            has_scoring_terms,
            has_required_anti_affinity,
            key: format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or("")),
            uid: meta.uid.clone().unwrap_or_default(),
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            requests,
            non_zero_requests,
            pod,
        }
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("")
    }

    /// The pod's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }
}

/// A host port in use on a node: (host IP, protocol, port). An empty or `0.0.0.0` IP means every address.
pub type HostPort = (String, String, i32);

/// A node with the pods placed on it.
///
/// Laid out in declaration order (`repr(C)`), what filters read for every node first: a cycle touches hundreds
/// of nodes, and reading a few adjacent cache lines per node instead of scattered ones is most of its cost.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct NodeInfo {
    /// `spec.unschedulable` (cordoned). Kept here, like `has_taints`, so that filters answer most nodes
    /// without reaching into the Node object.
    pub unschedulable: bool,
    /// Whether the node has any taint.
    pub has_taints: bool,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// The sum of the placed pods' requests (`pods` counts them).
    pub requested: Resources,
    /// The same with non-zero defaults, for scoring.
    pub non_zero_requested: Resources,
    /// Its name (shared: verdicts and scores name nodes without copying).
    pub name: Arc<str>,
    /// The node.
    pub node: Arc<Node>,
    /// The pods placed on it (bound, or assumed by this scheduler).
    pub pods: Vec<Arc<PodInfo>>,
    /// The placed pods with any pod affinity or anti-affinity (most pods have none; scanning only these keeps
    /// inter-pod affinity cheap for pods that use none).
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    /// Host ports the placed pods use.
    pub used_ports: Vec<HostPort>,
    /// Image sizes from `status.images`, by every name of each image.
    pub image_sizes: HashMap<String, i64>,
}

impl NodeInfo {
    /// A node with no pods placed yet.
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let status = node.status.as_ref();
        let allocatable = status.and_then(|s| s.allocatable.as_ref()).map(Resources::from_list).unwrap_or_default();
        let mut image_sizes = HashMap::new();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                image_sizes.insert(name.clone(), image.size_bytes.unwrap_or(0));
            }
        }
        let spec = node.spec.as_ref();
        NodeInfo {
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            has_taints: spec.and_then(|s| s.taints.as_ref()).is_some_and(|t| !t.is_empty()),
            name: Arc::from(node.metadata.name.as_deref().unwrap_or_default()),
            node,
            allocatable,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: Vec::new(),
            pods_with_affinity: Vec::new(),
            used_ports: Vec::new(),
            image_sizes,
        }
    }

    /// The node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// Places a pod on the node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        self.used_ports.extend(host_ports(&pod.pod));
        if pod.has_pod_affinity {
            self.pods_with_affinity.push(Arc::clone(&pod));
        }
        self.pods.push(pod);
    }

    /// Removes a placed pod by UID; false if it was not there.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(index) = self.pods.iter().position(|p| p.uid == uid) else { return false };
        let pod = self.pods.remove(index);
        self.pods_with_affinity.retain(|p| p.uid != uid);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero_requests);
        for port in host_ports(&pod.pod) {
            if let Some(i) = self.used_ports.iter().position(|p| *p == port) {
                self.used_ports.remove(i);
            }
        }
        true
    }
}

/// The host ports a pod asks for.
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = &pod.spec else { return Vec::new() };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| {
            (
                p.host_ip.clone().unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_port.unwrap_or(0),
            )
        })
        .collect()
}

/// Every node at one moment, for one scheduling cycle.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// The nodes, in a stable order (shared with the cache that made the snapshot).
    pub nodes: Arc<Vec<Arc<NodeInfo>>>,
    index: Arc<HashMap<String, usize>>,
    /// How many nodes hold each image (by name), for image locality.
    pub image_nodes: Arc<HashMap<String, usize>>,
    /// Placed pods counted per topology domain (shared with the cache).
    pub topology: Arc<TopologyIndex>,
}

impl Snapshot {
    /// A snapshot of the given nodes.
    pub fn new(nodes: Vec<Arc<NodeInfo>>) -> Snapshot {
        let index = nodes.iter().enumerate().map(|(i, n)| (n.name.to_string(), i)).collect();
        let mut image_nodes = HashMap::new();
        for node in &nodes {
            for name in node.image_sizes.keys() {
                *image_nodes.entry(name.clone()).or_insert(0) += 1;
            }
        }
        let topology = TopologyIndex::build(&nodes);
        Snapshot::with_indexes(Arc::new(nodes), Arc::new(index), Arc::new(image_nodes), Arc::new(topology))
    }

    /// A snapshot reusing indexes its caller keeps up to date (the scheduler's cache), so that taking one
    /// per scheduling cycle costs a few reference counts.
    pub fn with_indexes(
        nodes: Arc<Vec<Arc<NodeInfo>>>,
        index: Arc<HashMap<String, usize>>,
        image_nodes: Arc<HashMap<String, usize>>,
        topology: Arc<TopologyIndex>,
    ) -> Snapshot {
        Snapshot { nodes, index, image_nodes, topology }
    }

    /// A node by name.
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).and_then(|i| self.nodes.get(*i))
    }

    /// How many placed pods have any pod affinity or anti-affinity, cluster-wide.
    pub fn pods_with_affinity(&self) -> usize {
        self.topology.pods_with_affinity
    }

    /// How many placed pods have required anti-affinity, cluster-wide.
    pub fn pods_with_required_anti_affinity(&self) -> usize {
        self.topology.pods_with_required_anti_affinity
    }
}
