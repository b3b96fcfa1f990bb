//! Gantry's API server: the Kubernetes REST API served over HTTPS from a [`gantry_store::Store`].
