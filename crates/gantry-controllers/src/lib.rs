//! Gantry's controller manager: the controllers that move the cluster's state toward what its objects ask for
//! (ReplicaSets, …), as kube-controller-manager's do.
//!
//! This crate owns the controllers and what they share: informers (one watch per kind for all controllers,
//! [`informer`]), work queues of keys with per-key backoff ([`queue`]), expectations against acting on a stale
//! view ([`expectations`]) and background event writing ([`events`]). Controllers are API clients, never
//! clients of the store. Only the holder of the `kube-system/gantry-controller-manager` Lease runs them.

pub mod events;
pub mod expectations;
pub mod garbage_collector;
pub mod informer;
pub mod pods;
pub mod queue;
pub mod replicaset;

use std::sync::Arc;

use gantry_lease::{ElectionConfig, LeaderElector};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::events::EventSink;
use crate::garbage_collector::GarbageCollector;
use crate::informer::Informer;
use crate::replicaset::ReplicaSetController;

/// How the controller manager runs.
#[derive(Clone, Debug)]
pub struct ControllerManagerConfig {
    /// This instance's identity (in the Lease and in Events).
    pub identity: String,
    /// Leader election timing; `None` runs without electing (a single controller manager).
    pub election: Option<ElectionConfig>,
    /// Workers per controller (ReplicaSets reconciled at once).
    pub workers: usize,
}

impl ControllerManagerConfig {
    /// The defaults: leader election, 16 workers per controller.
    pub fn new(identity: impl Into<String>) -> ControllerManagerConfig {
        ControllerManagerConfig { identity: identity.into(), election: Some(ElectionConfig::default()), workers: 16 }
    }
}

/// Starts the controller manager; it runs until `shutdown`.
pub fn start(client: Client, config: ControllerManagerConfig, shutdown: CancellationToken, tasks: &mut JoinSet<()>) {
    match config.election {
        Some(election) => {
            let elector = LeaderElector::new(
                client.clone(),
                "kube-system",
                "gantry-controller-manager",
                &config.identity,
                election,
            );
            let leading = elector.leading();
            tasks.spawn(elector.run(shutdown.clone()));
            tasks.spawn(lead(client, config, leading, shutdown));
        }
        None => {
            let (_tx, leading) = tokio::sync::watch::channel(true);
            tasks.spawn(async move {
                // Keep the sender alive: this instance always leads.
                let _tx = _tx;
                lead(client, config, leading, shutdown).await;
            });
        }
    }
}

/// Runs the controllers while this instance leads; each term starts from fresh informers.
async fn lead(
    client: Client,
    config: ControllerManagerConfig,
    mut leading: tokio::sync::watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = leading.wait_for(|l| *l) => if changed.is_err() { return },
        }
        let term = shutdown.child_token();
        let mut running = JoinSet::new();
        run_controllers(&client, &config, &term, &mut running);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = leading.wait_for(|l| !*l) => tracing::warn!("controller manager: lost the lease; controllers stop"),
        }
        term.cancel();
        while running.join_next().await.is_some() {}
        if shutdown.is_cancelled() {
            return;
        }
    }
}

fn run_controllers(
    client: &Client,
    config: &ControllerManagerConfig,
    term: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let pods = Informer::<Pod>::new();
    let replicasets = Informer::<ReplicaSet>::new();
    let events = |name: &'static str, tasks: &mut JoinSet<()>| {
        EventSink::start(client.clone(), name, &config.identity, term.clone(), tasks)
    };
    let replicaset = ReplicaSetController::new(
        client.clone(),
        Arc::clone(&pods),
        Arc::clone(&replicasets),
        events("replicaset-controller", tasks),
    );
    // Controllers register their handlers before the informers start, so that they see the first list.
    tasks.spawn(Arc::clone(&pods).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(Arc::clone(&replicasets).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(replicaset.run(config.workers, term.clone()));
    let gc = GarbageCollector::new(client.clone(), events("garbage-collector-controller", tasks));
    tasks.spawn(gc.run(config.workers, term.clone()));
}
