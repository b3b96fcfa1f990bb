//! What every controller test starts from: a real API server on a temporary SQLite file, and a client for it.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it; setup failures are failed tests

use std::path::Path;

use gantry_controllers::ControllerManagerConfig;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

/// A client of the API server whose data directory is `dir`, through the admin kubeconfig it wrote there.
pub async fn client_for(dir: &Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(dir.join("kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Starts an API server in-process on a new temporary directory; returns it, the directory, the token that
/// stops it, and a client.
pub async fn start_server() -> (gantry_apiserver::RunningServer, tempfile::TempDir, CancellationToken, kube::Client) {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.unwrap();
    let client = client_for(dir.path()).await;
    (server, dir, shutdown, client)
}

/// The controller manager's configuration for tests: no leader election.
pub fn manager_config() -> ControllerManagerConfig {
    ControllerManagerConfig { election: None, ..ControllerManagerConfig::new("test") }
}
