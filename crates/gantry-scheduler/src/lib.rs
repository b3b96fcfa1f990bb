//! Gantry's scheduler: where pods run.
//!
//! This crate owns the scheduling framework (one small trait per extension point, a per-cycle state, status
//! codes, plugins built from a registry and grouped into profiles selected by `spec.schedulerName`), the
//! plugins with kube-scheduler's semantics, and the in-memory view of the cluster they decide on
//! ([`snapshot`]). It is a client of the API, never of the store.
//!
//! The framework and plugins are synchronous and free of IO, so that a scheduling cycle is a pure function of
//! a snapshot and a pod: fast, and testable without a cluster.

pub mod cache;
pub mod explain;
pub mod framework;
pub mod plugins;
pub mod queue;
pub mod resources;
pub mod runtime;
pub mod snapshot;
pub mod topology;
