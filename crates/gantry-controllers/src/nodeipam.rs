//! Node IPAM: every Node gets a pod CIDR of its own (`spec.podCIDR` and `spec.podCIDRs`) carved out of the
//! cluster CIDR, as kube-controller-manager's range allocator does with `--allocate-node-cidrs`.
//!
//! The ranges in use are those the Nodes already carry (a node agent may register with one given by flag) plus
//! those this controller handed out and does not yet see in its informer: a Node is synced by one worker, and
//! the reservation is made before the patch is sent, so two Nodes never get the same range. A Node's range is
//! freed when the Node is deleted. A Node whose range lies outside the cluster CIDR keeps it: the field is
//! immutable once set, and such a range cannot collide with the ones allocated here.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType, reference_to};
use crate::informer::{Change, Informer};
use crate::queue::{Requeue, WorkQueue, run_workers};

/// The cluster CIDR `gantry server` and `gantry up` allocate from unless told otherwise.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The size of each node's range unless told otherwise (256 addresses, as kube-controller-manager's default).
pub const DEFAULT_NODE_MASK: u8 = 24;

/// An IPv4 range, `address/prefix`, with the host bits clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    /// The first address.
    pub network: u32,
    /// The prefix length.
    pub prefix: u8,
}

/// A CIDR that could not be read, or a node range that does not fit the cluster CIDR.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    /// Not `a.b.c.d/n` with n ≤ 32 and the host bits clear.
    #[error("{0:?} is not an IPv4 CIDR such as 10.42.0.0/16 (address/prefix, host bits zero)")]
    Malformed(String),
    /// The node mask is not longer than the cluster prefix, or leaves too many ranges to track.
    #[error(
        "node ranges of /{node_mask} do not fit the cluster CIDR {cluster} (the mask must be longer than its prefix, by at most 16 bits)"
    )]
    NodeMask {
        /// The cluster CIDR.
        cluster: String,
        /// The node mask.
        node_mask: u8,
    },
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/n`.
    pub fn parse(text: &str) -> Result<Ipv4Cidr, CidrError> {
        let malformed = || CidrError::Malformed(text.to_string());
        let (address, prefix) = text.trim().split_once('/').ok_or_else(malformed)?;
        let address: Ipv4Addr = address.parse().map_err(|_| malformed())?;
        let prefix: u8 = prefix.parse().map_err(|_| malformed())?;
        if prefix > 32 {
            return Err(malformed());
        }
        let network = u32::from(address);
        if network & !mask(prefix) != 0 {
            return Err(malformed());
        }
        Ok(Ipv4Cidr { network, prefix })
    }

    /// Whether `other` lies wholly inside this range.
    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && other.network & mask(self.prefix) == self.network
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
}

/// The ranges of one cluster CIDR: which are taken, which is next.
#[derive(Debug)]
pub struct RangeSet {
    cluster: Ipv4Cidr,
    node_mask: u8,
    taken: BTreeSet<u32>,
}

impl RangeSet {
    /// Ranges of `/node_mask` in `cluster`.
    pub fn new(cluster: Ipv4Cidr, node_mask: u8) -> Result<RangeSet, CidrError> {
        if node_mask <= cluster.prefix || node_mask > 32 || node_mask - cluster.prefix > 16 {
            return Err(CidrError::NodeMask { cluster: cluster.to_string(), node_mask });
        }
        Ok(RangeSet { cluster, node_mask, taken: BTreeSet::new() })
    }

    fn index_of(&self, range: &Ipv4Cidr) -> Option<u32> {
        (range.prefix == self.node_mask && self.cluster.contains(range))
            .then(|| (range.network - self.cluster.network) >> (32 - u32::from(self.node_mask)))
    }

    /// Marks a range as taken; `false` when it is not one of this set's ranges (outside, or another size).
    pub fn occupy(&mut self, range: &Ipv4Cidr) -> bool {
        self.index_of(range).map(|i| self.taken.insert(i)).is_some()
    }

    /// Frees a range.
    pub fn release(&mut self, range: &Ipv4Cidr) {
        if let Some(i) = self.index_of(range) {
            self.taken.remove(&i);
        }
    }

    /// Takes the lowest free range; `None` when every one is taken.
    pub fn allocate(&mut self) -> Option<Ipv4Cidr> {
        let count = 1u32 << (self.node_mask - self.cluster.prefix);
        let index = (0..count).find(|i| !self.taken.contains(i))?;
        self.taken.insert(index);
        let network = self.cluster.network + (index << (32 - u32::from(self.node_mask)));
        Some(Ipv4Cidr { network, prefix: self.node_mask })
    }
}

/// What the controller allocates from.
#[derive(Clone, Debug)]
pub struct NodeIpamConfig {
    /// The cluster CIDR (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// Each node's prefix length (`--node-cidr-mask-size`).
    pub node_mask: u8,
}

impl Default for NodeIpamConfig {
    fn default() -> NodeIpamConfig {
        NodeIpamConfig { cluster_cidr: DEFAULT_CLUSTER_CIDR.to_string(), node_mask: DEFAULT_NODE_MASK }
    }
}

impl NodeIpamConfig {
    /// The empty range set this configuration describes.
    pub fn ranges(&self) -> Result<RangeSet, CidrError> {
        RangeSet::new(Ipv4Cidr::parse(&self.cluster_cidr)?, self.node_mask)
    }
}

/// Why a Node's range could not be written.
#[derive(Debug, thiserror::Error)]
#[error("assigning pod CIDR {cidr} to node {node}: {source}")]
pub struct AssignError {
    /// The Node.
    pub node: String,
    /// The range.
    pub cidr: String,
    /// The cause.
    #[source]
    pub source: kube::Error,
}

/// The controller.
pub struct NodeIpamController {
    client: Client,
    nodes: Arc<Informer<Node>>,
    ranges: Mutex<RangeSet>,
    queue: Arc<WorkQueue>,
    events: EventSink,
}

fn pod_cidr(node: &Node) -> Option<&str> {
    node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).filter(|c| !c.is_empty())
}

impl NodeIpamController {
    /// The controller over the shared Node informer.
    pub fn new(
        client: Client,
        nodes: Arc<Informer<Node>>,
        ranges: RangeSet,
        events: EventSink,
    ) -> Arc<NodeIpamController> {
        let controller = Arc::new(NodeIpamController {
            client,
            nodes: Arc::clone(&nodes),
            ranges: Mutex::new(ranges),
            queue: WorkQueue::new(),
            events,
        });
        let weak = Arc::downgrade(&controller);
        nodes.on_change(move |change| {
            let Some(controller) = weak.upgrade() else { return };
            match change {
                Change::Added(node) | Change::Updated { new: node, .. } => match pod_cidr(node) {
                    Some(cidr) => {
                        if let Ok(range) = Ipv4Cidr::parse(cidr) {
                            controller.lock_ranges().occupy(&range);
                        }
                    }
                    None => controller.queue.add(node.metadata.name.clone().unwrap_or_default()),
                },
                Change::Deleted(node) => {
                    if let Some(range) = pod_cidr(node).and_then(|c| Ipv4Cidr::parse(c).ok()) {
                        controller.lock_ranges().release(&range);
                    }
                }
            }
        });
        controller
    }

    fn lock_ranges(&self) -> std::sync::MutexGuard<'_, RangeSet> {
        self.ranges.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Allocates ranges with one worker (allocation is cheap, and one worker keeps it simple to reason about)
    /// until `shutdown`, once the Node informer has synced and so every range in use is known.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        self.nodes.wait_synced(&shutdown).await;
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("nodeipam", queue, 1, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }

    /// Gives the Node `name` a range if it has none.
    pub async fn sync(&self, name: &str) -> Result<Requeue, AssignError> {
        let Some(node) = self.nodes.get("", name) else { return Ok(Requeue::No) };
        if pod_cidr(&node).is_some() || node.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::No);
        }
        let Some(range) = self.lock_ranges().allocate() else {
            let note = format!("Node {name} status is now: CIDRNotAvailable");
            self.events.publish(reference_to(&*node), EventType::Normal, "CIDRNotAvailable", "CIDRNotAvailable", note);
            return Ok(Requeue::After(std::time::Duration::from_secs(30)));
        };
        let cidr = range.to_string();
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                tracing::info!(node = name, %cidr, "pod CIDR assigned");
                Ok(Requeue::No)
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                self.lock_ranges().release(&range);
                Ok(Requeue::No)
            }
            Err(source) => {
                self.lock_ranges().release(&range);
                Err(AssignError { node: name.to_string(), cidr, source })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        Ipv4Cidr::parse(text).unwrap()
    }

    #[test]
    fn cidrs_are_read_and_printed_back() {
        assert_eq!(cidr("10.42.0.0/16").to_string(), "10.42.0.0/16");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in ["10.42.0.1/16", "10.42.0.0", "10.42.0.0/33", "ten/8", "10.42.0.0/x"] {
            assert!(matches!(Ipv4Cidr::parse(bad), Err(CidrError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn ranges_are_handed_out_lowest_first_and_never_twice() {
        let mut ranges = RangeSet::new(cidr("10.42.0.0/16"), 24).unwrap();
        assert!(ranges.occupy(&cidr("10.42.0.0/24")));
        assert_eq!(ranges.allocate(), Some(cidr("10.42.1.0/24")));
        assert_eq!(ranges.allocate(), Some(cidr("10.42.2.0/24")));
        ranges.release(&cidr("10.42.1.0/24"));
        assert_eq!(ranges.allocate(), Some(cidr("10.42.1.0/24")));
        assert_eq!(ranges.allocate(), Some(cidr("10.42.3.0/24")));
    }

    #[test]
    fn ranges_from_elsewhere_are_not_tracked() {
        let mut ranges = RangeSet::new(cidr("10.42.0.0/16"), 24).unwrap();
        assert!(!ranges.occupy(&cidr("10.249.7.0/24")), "outside the cluster CIDR");
        assert!(!ranges.occupy(&cidr("10.42.0.0/25")), "another size");
        assert_eq!(ranges.allocate(), Some(cidr("10.42.0.0/24")));
    }

    #[test]
    fn a_full_cluster_cidr_allocates_nothing() {
        let mut ranges = RangeSet::new(cidr("10.42.0.0/23"), 24).unwrap();
        assert!(ranges.allocate().is_some());
        assert!(ranges.allocate().is_some());
        assert_eq!(ranges.allocate(), None);
    }

    #[test]
    fn node_masks_must_fit_the_cluster_cidr() {
        assert!(RangeSet::new(cidr("10.42.0.0/16"), 16).is_err());
        assert!(RangeSet::new(cidr("10.0.0.0/8"), 25).is_err(), "too many ranges to track");
        assert!(RangeSet::new(cidr("10.0.0.0/8"), 24).is_ok());
    }
}
