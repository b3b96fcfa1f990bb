//! The plugins, each with kube-scheduler's semantics, and the registry that builds the default profile.
