//! Containers and images on a node.
//!
//! This crate owns everything between a node agent's decision to run a pod and the processes that run it:
//!
//! - [`cri`]: the contract, shaped like the Kubernetes Container Runtime Interface (a [`RuntimeService`] for
//!   sandboxes and containers, an [`ImageService`] for images), so that a CRI backend such as containerd can later
//!   sit behind the same traits.
//! - [`image`]: the content-addressed image store (registry pulls, archive imports, layers unpacked once and
//!   shared, overlay root filesystems).
//! - [`network`]: pod networking through CNI plugins and the namespaces that hold a pod's network, IPC and UTS.
//! - [`native`]: the default, daemonless backend: OCI containers created with `libcontainer`, each owned by a
//!   small shim process that holds its stdio, writes its log and records its exit, so containers outlive the
//!   agent and are re-adopted from their state on disk.
//!
//! Invariant: kernel work never happens on an async worker thread. What forks (creating a container, joining
//! its namespaces for exec) runs in a shim or helper process started with `exec`; what changes a thread's own
//! namespaces (creating a pod's namespaces) runs on a dedicated thread that ends right after.

pub mod cri;
pub mod image;
pub mod native;
pub mod network;
pub mod testing;

pub use cri::{ImageService, RuntimeService};
