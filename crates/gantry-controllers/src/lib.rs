//! Gantry's controller manager: the controllers that move the cluster's state toward what its objects ask for
//! (ReplicaSets, ResourceQuotas, …), as kube-controller-manager's do.
//!
//! This crate owns the controllers and what they share: informers (one watch per kind for all controllers,
//! [`informer`]), work queues of keys with per-key backoff ([`queue`]), expectations against acting on a stale
//! view ([`expectations`]) and background event writing ([`events`]). Controllers are API clients, never
//! clients of the store. Only the holder of the `kube-system/gantry-controller-manager` Lease runs them.

pub mod claim;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod expectations;
pub mod garbage_collector;
pub mod history;
pub mod informer;
pub mod job;
pub mod meta;
pub mod namespace;
pub mod node_lifecycle;
pub mod nodeipam;
pub mod podgc;
pub mod pods;
pub mod queue;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod statefulset;
pub mod taint_eviction;

use std::sync::Arc;

use gantry_lease::{ElectionConfig, LeaderElector};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::{Api, Client};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::deployment::DeploymentController;
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
    /// When nodes count as silent, and how often they are checked.
    pub node_lifecycle: node_lifecycle::NodeLifecycleConfig,
    /// Node IPAM: the cluster CIDR each Node's `spec.podCIDR` comes from; `None` leaves pod CIDRs to the nodes.
    pub node_ipam: Option<nodeipam::NodeIpamConfig>,
    /// The CronJob controller's clock (tests move a manual one instead of waiting for the minute).
    pub cronjob: cronjob::CronJobConfig,
    /// The Job controller's pod-recreation backoff.
    pub job: job::JobConfig,
    /// Endpoints an EndpointSlice holds at most (kube's `--max-endpoints-per-slice`).
    pub max_endpoints_per_slice: usize,
}

impl ControllerManagerConfig {
    /// The defaults: leader election, 16 workers per controller.
    pub fn new(identity: impl Into<String>) -> ControllerManagerConfig {
        ControllerManagerConfig {
            identity: identity.into(),
            election: Some(ElectionConfig::default()),
            workers: 16,
            node_lifecycle: node_lifecycle::NodeLifecycleConfig::default(),
            node_ipam: Some(nodeipam::NodeIpamConfig::default()),
            cronjob: cronjob::CronJobConfig::default(),
            job: job::JobConfig::default(),
            max_endpoints_per_slice: endpointslice::DEFAULT_MAX_ENDPOINTS_PER_SLICE,
        }
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
    pods.add_index(pods::BY_CONTROLLER, |pod: &Pod| pods::controller_index(&pod.metadata));
    pods.add_index(pods::BY_NODE, pods::node_index);
    replicasets.add_index(pods::BY_CONTROLLER, |rs: &ReplicaSet| pods::controller_index(&rs.metadata));
    let events = |name: &'static str, tasks: &mut JoinSet<()>| {
        EventSink::start(client.clone(), name, &config.identity, term.clone(), tasks)
    };
    let replicaset = ReplicaSetController::new(
        client.clone(),
        Arc::clone(&pods),
        Arc::clone(&replicasets),
        events("replicaset-controller", tasks),
    );
    let deployments = Informer::<Deployment>::new();
    let deployment = DeploymentController::new(
        client.clone(),
        Arc::clone(&deployments),
        Arc::clone(&replicasets),
        Arc::clone(&pods),
        events("deployment-controller", tasks),
    );
    let nodes = Informer::<k8s_openapi::api::core::v1::Node>::new();
    let leases = Informer::<k8s_openapi::api::coordination::v1::Lease>::new();
    let node_lifecycle = node_lifecycle::NodeLifecycleController::new(
        client.clone(),
        Arc::clone(&nodes),
        Arc::clone(&leases),
        Arc::clone(&pods),
        config.node_lifecycle.clone(),
        events("node-controller", tasks),
    );
    let taint_eviction = taint_eviction::TaintEvictionController::new(
        client.clone(),
        Arc::clone(&pods),
        Arc::clone(&nodes),
        events("taint-eviction-controller", tasks),
    );
    let namespaces = Informer::<k8s_openapi::api::core::v1::Namespace>::new();
    let accounts = Informer::<k8s_openapi::api::core::v1::ServiceAccount>::new();
    let namespace = namespace::NamespaceController::new(client.clone(), Arc::clone(&namespaces));
    let serviceaccount =
        serviceaccount::ServiceAccountController::new(client.clone(), Arc::clone(&namespaces), Arc::clone(&accounts));
    let podgc =
        podgc::PodGcController::new(client.clone(), Arc::clone(&pods), Arc::clone(&nodes), podgc::DEFAULT_PERIOD);
    let jobs = Informer::<Job>::new();
    jobs.add_index(pods::BY_CONTROLLER, |job: &Job| pods::controller_index(&job.metadata));
    let job = job::JobController::new(
        client.clone(),
        Arc::clone(&pods),
        Arc::clone(&jobs),
        config.job.clone(),
        events("job-controller", tasks),
    );
    let cronjobs = Informer::<k8s_openapi::api::batch::v1::CronJob>::new();
    let cronjob = cronjob::CronJobController::new(
        client.clone(),
        Arc::clone(&cronjobs),
        Arc::clone(&jobs),
        &config.cronjob,
        events("cronjob-controller", tasks),
    );
    let statefulsets = Informer::<StatefulSet>::new();
    // ControllerRevisions are shared by the StatefulSet and DaemonSet controllers.
    let revisions = Informer::<ControllerRevision>::new();
    revisions.add_index(pods::BY_CONTROLLER, |r: &ControllerRevision| pods::controller_index(&r.metadata));
    let claims = Informer::<PersistentVolumeClaim>::new();
    let statefulset = statefulset::StatefulSetController::new(
        client.clone(),
        Arc::clone(&statefulsets),
        Arc::clone(&pods),
        Arc::clone(&revisions),
        Arc::clone(&claims),
        events("statefulset-controller", tasks),
    );
    let daemonsets = Informer::<DaemonSet>::new();
    let daemonset = daemonset::DaemonSetController::new(
        client.clone(),
        Arc::clone(&daemonsets),
        Arc::clone(&pods),
        Arc::clone(&nodes),
        Arc::clone(&revisions),
        events("daemonset-controller", tasks),
    );
    // Service endpoints (EndpointSlices and the legacy Endpoints) and disruption budgets.
    let services = Informer::<Service>::new();
    let slices = Informer::<EndpointSlice>::new();
    let endpoints = Informer::<Endpoints>::new();
    let budgets = Informer::<PodDisruptionBudget>::new();
    let slice_controller = endpointslice::EndpointSliceController::new(
        client.clone(),
        Arc::clone(&services),
        Arc::clone(&pods),
        Arc::clone(&slices),
        Arc::clone(&nodes),
        config.max_endpoints_per_slice,
        events("endpoint-slice-controller", tasks),
    );
    let endpoints_controller = endpoints::EndpointsController::new(
        client.clone(),
        Arc::clone(&services),
        Arc::clone(&pods),
        Arc::clone(&endpoints),
        events("endpoint-controller", tasks),
    );
    let disruption = disruption::DisruptionController::new(
        client.clone(),
        Arc::clone(&budgets),
        Arc::clone(&pods),
        Arc::clone(&replicasets),
        Arc::clone(&deployments),
        events("controllermanager", tasks),
    );
    // ResourceQuota: recounts usage, so that deleted objects give their quota back.
    let quotas = Informer::<k8s_openapi::api::core::v1::ResourceQuota>::new();
    let resourcequota = resourcequota::ResourceQuotaController::new(
        client.clone(),
        Arc::clone(&quotas),
        Arc::clone(&pods),
        resourcequota::DEFAULT_RESYNC,
    );
    let node_ipam = config.node_ipam.as_ref().and_then(|ipam| match ipam.ranges() {
        Ok(ranges) => Some(nodeipam::NodeIpamController::new(
            client.clone(),
            Arc::clone(&nodes),
            ranges,
            events("node-ipam-controller", tasks),
        )),
        Err(err) => {
            tracing::error!(error = %err, "node IPAM is off");
            None
        }
    });
    // Controllers register their handlers before the informers start, so that they see the first list.
    tasks.spawn(Arc::clone(&pods).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(Arc::clone(&replicasets).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(Arc::clone(&deployments).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(Arc::clone(&namespaces).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(Arc::clone(&accounts).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(Arc::clone(&nodes).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(replicaset.run(config.workers, term.clone()));
    tasks.spawn(deployment.run(config.workers, term.clone()));
    tasks.spawn(leases.run(Api::namespaced(client.clone(), node_lifecycle::NODE_LEASE_NAMESPACE), term.clone()));
    tasks.spawn(node_lifecycle.run(config.workers, term.clone()));
    tasks.spawn(taint_eviction.run(config.workers, term.clone()));
    tasks.spawn(namespace.run(config.workers, term.clone()));
    tasks.spawn(serviceaccount.run(config.workers, term.clone()));
    tasks.spawn(podgc.run(term.clone()));
    tasks.spawn(Arc::clone(&jobs).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(Arc::clone(&cronjobs).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(job.run(config.workers, term.clone()));
    tasks.spawn(cronjob.run(config.workers, term.clone()));
    tasks.spawn(Arc::clone(&statefulsets).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(Arc::clone(&revisions).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(Arc::clone(&claims).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(statefulset.run(config.workers, term.clone()));
    tasks.spawn(Arc::clone(&daemonsets).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(daemonset.run(config.workers, term.clone()));
    tasks.spawn(services.run(Api::all(client.clone()), term.clone()));
    tasks.spawn(slices.run(Api::all(client.clone()), term.clone()));
    tasks.spawn(endpoints.run(Api::all(client.clone()), term.clone()));
    tasks.spawn(budgets.run(Api::all(client.clone()), term.clone()));
    tasks.spawn(slice_controller.run(config.workers, term.clone()));
    tasks.spawn(endpoints_controller.run(config.workers, term.clone()));
    tasks.spawn(disruption.run(config.workers, term.clone()));
    tasks.spawn(Arc::clone(&quotas).run(Api::all(client.clone()), term.clone()));
    tasks.spawn(resourcequota.run(config.workers, term.clone()));
    if let Some(node_ipam) = node_ipam {
        tasks.spawn(node_ipam.run(term.clone()));
    }
    let gc = GarbageCollector::new(client.clone(), events("garbage-collector-controller", tasks));
    tasks.spawn(gc.run(config.workers, term.clone()));
}
