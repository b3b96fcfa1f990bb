//! The node agent (our kubelet): it registers its Node, keeps its Lease and status fresh, runs the pods bound to
//! it through `gantry-runtime`, reports their status, and serves the node's HTTPS API, as the kubelet does.
//!
//! [`agent`] starts everything; [`node`] is the Node and its Lease, [`machine`] the facts it reports; [`pods`]
//! watches the node's pods and runs one worker per pod (spec translation, status, back-off, static pods);
//! [`volumes`], [`env`] and [`downward`] make what a container sees; [`probes`] and [`hooks`] run the
//! container's handlers; [`events`] writes Events; [`server`] is the node API (logs, exec, attach,
//! port-forward); [`routes`] routes the other nodes' pod CIDRs to them; [`reset`] removes everything Gantry
//! left on the node, and holds the data directory's lock.

pub mod agent;
pub mod dns;
pub mod downward;
pub mod env;
pub mod events;
pub mod hooks;
pub mod join;
pub mod machine;
pub mod node;
pub mod pods;
pub mod probes;
pub mod reset;
pub mod routes;
pub mod server;
pub mod volumes;
