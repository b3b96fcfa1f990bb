//! The native backend: libcontainer containers owned by per-container shim processes.
