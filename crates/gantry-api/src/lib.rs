//! Gantry's object model, shared by the API server and every client-side component.
//!
//! This crate owns what an object *is* and what may be done to it, without any IO:
//! - [`registry`]: the one table of built-in kinds (group, version, kind, plural, scope, subresources, ...);
//!   everything that serves or stores a kind is driven by it.
//! - [`selector`]: label and field selectors, parsed and matched the way kube-apiserver does.
//! - [`patch`]: JSON patch, JSON merge patch and strategic merge patch.
//! - [`validation`] and [`defaults`]: the checks and defaults kube-apiserver applies to the common kinds.
//! - [`table`]: the columns `kubectl get` shows for each kind.
//! - [`protobuf`]: decoding of Kubernetes protobuf request bodies into JSON objects.
//! - [`openapi`]: the OpenAPI v3 documents served for validation and `kubectl explain`.
//! - [`apply`]: server-side apply and `managedFields` (field ownership, conflicts).
//! - [`crd`]: CustomResourceDefinitions: their validation, and the validation, pruning, defaulting, tables and
//!   scale of custom resources.
//! - [`quota`]: what objects charge to ResourceQuotas, and which quotas take them in (scopes).
//! - [`join`]: the join token and the messages of the endpoint new nodes join through.
//!
//! Objects are handled as `serde_json::Value` (the form they are stored and served in); the typed structs of
//! `k8s-openapi` are used where a kind's shape matters (validation, pruning of unknown fields).

pub mod apply;
pub mod crd;
pub mod defaults;
pub mod join;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod quota;
pub mod registry;
pub mod selector;
pub mod table;
pub mod validation;

pub use k8s_openapi;
