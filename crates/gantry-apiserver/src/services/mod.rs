//! Services' cluster IPs and node ports: the ranges they come from, their allocation in the store, the repair
//! pass that reconciles allocations with Services, and the built-in Services (`default/kubernetes`,
//! `kube-system/kube-dns`).
//!
//! Invariants:
//! - Every cluster IP a stored Service holds has one `networking.k8s.io/v1` `IPAddress` object named by the IP
//!   (`spec.parentRef` = the Service), created with the store's create-if-absent: two API servers over one store
//!   can never hand out the same address.
//! - Every node port (and `healthCheckNodePort`) a stored Service holds has one record at
//!   `/registry/ranges/servicenodeports/<port>`, also created with create-if-absent.
//! - Records are created before the Service write and removed after the write that stops using them; a crash in
//!   between leaves a record without a Service (or, after a failed release, a stale one), which the repair pass
//!   removes once it is older than [`LEAK_GRACE`]. A Service whose record is missing gets it back from the same
//!   pass.

mod alloc;
mod builtin;
mod config;
mod repair;

pub use alloc::{IP_ADDRESS_PREFIX, NODE_PORT_PREFIX};
pub(crate) use alloc::{drop_type_dependent_fields, is_service};
pub use builtin::{KUBE_DNS, KUBERNETES, advertise_address};
pub(crate) use builtin::{ensure_built_in, run_endpoints, sync_endpoints};
pub use config::{Ipv4Cidr, PortRange, ServiceConfigError, ServiceNetwork};
pub(crate) use repair::run as run_repair;
pub use repair::{RepairReport, repair_once};

/// How old an allocation record without a Service must be before the repair pass removes it: a younger one
/// may belong to a Service whose write is still in flight (on this server or another).
pub const LEAK_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
