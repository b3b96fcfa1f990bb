//! The node agent (our kubelet): it registers its Node, keeps its Lease and status fresh, runs the pods bound to
//! it through `gantry-runtime`, and reports their status, as the kubelet does.
//!
//! Built in steps. What exists so far: [`machine`], the facts about the machine the Node object reports
//! (capacity, addresses, system information), and [`node`], the Node and its Lease in the API.

pub mod agent;
pub mod downward;
pub mod env;
pub mod events;
pub mod hooks;
pub mod machine;
pub mod node;
pub mod pods;
pub mod probes;
pub mod server;
pub mod volumes;
