//! Leader election against a real Gantry API server (in-process, on a real SQLite file).

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

use std::time::Duration;

use gantry_lease::{ElectionConfig, LeaderElector};
use k8s_openapi::api::coordination::v1::Lease;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

/// The server runs until the test's runtime ends.
struct Server {
    _server: gantry_apiserver::RunningServer,
    dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let server = gantry_apiserver::start_loopback(dir.path(), CancellationToken::new()).await.unwrap();
    Server { _server: server, dir }
}

impl Server {
    async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(self.dir.path().join("kubeconfig")).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

fn fast() -> ElectionConfig {
    ElectionConfig {
        lease_duration: Duration::from_millis(1500),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(100),
    }
}

async fn wait_for(rx: &mut tokio::sync::watch::Receiver<bool>, value: bool) {
    let patience = gantry_store::testing::patience();
    tokio::time::timeout(patience, rx.wait_for(|v| *v == value)).await.expect("in time").expect("elector alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_candidate_leads_and_a_successor_takes_over_when_it_stops() {
    let server = server().await;
    let (a_stop, b_stop) = (CancellationToken::new(), CancellationToken::new());
    let a = LeaderElector::new(server.client().await, "kube-system", "gantry-test", "a", fast());
    let b = LeaderElector::new(server.client().await, "kube-system", "gantry-test", "b", fast());
    let (mut a_leads, mut b_leads) = (a.leading(), b.leading());
    let a_task = tokio::spawn(a.run(a_stop.clone()));
    wait_for(&mut a_leads, true).await;
    let b_task = tokio::spawn(b.run(b_stop.clone()));
    // b keeps trying for longer than a lease lasts, and never leads while a renews.
    tokio::time::sleep(fast().lease_duration * 2).await;
    assert!(!*b_leads.borrow(), "two leaders at once");
    assert!(*a_leads.borrow());

    let leases: kube::Api<Lease> = kube::Api::namespaced(server.client().await, "kube-system");
    let lease = leases.get("gantry-test").await.unwrap();
    assert_eq!(lease.spec.as_ref().unwrap().holder_identity.as_deref(), Some("a"));

    a_stop.cancel();
    a_task.await.unwrap();
    wait_for(&mut b_leads, true).await;
    let lease = leases.get("gantry-test").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    b_stop.cancel();
    b_task.await.unwrap();
    let released = leases.get("gantry-test").await.unwrap();
    assert_eq!(released.spec.unwrap().holder_identity, None, "a stopping leader releases its lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_by_a_vanished_leader_is_taken_after_it_expires() {
    let server = server().await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(server.client().await, "kube-system");
    let stale: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gantry-stale"},
        "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 1,
                 "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 3}}))
    .unwrap();
    leases.create(&Default::default(), &stale).await.unwrap();
    let stop = CancellationToken::new();
    let candidate = LeaderElector::new(server.client().await, "kube-system", "gantry-stale", "new", fast());
    let mut leads = candidate.leading();
    let started = std::time::Instant::now();
    let task = tokio::spawn(candidate.run(stop.clone()));
    wait_for(&mut leads, true).await;
    // Expiry is judged on the candidate's own clock from when it first saw the lease, not from renewTime.
    assert!(started.elapsed() >= Duration::from_secs(1), "took over after {:?}", started.elapsed());
    let spec = leases.get("gantry-stale").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("new"));
    assert_eq!(spec.lease_transitions, Some(4));
    stop.cancel();
    task.await.unwrap();
}
