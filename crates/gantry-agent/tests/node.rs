//! The node's registration, status and Lease against a real API server.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

use gantry_agent::machine;
use gantry_agent::node::{
    HeartbeatIntervals, LEASE_NAMESPACE, NodeSettings, register, renew_lease, run_heartbeats, update_status,
};

async fn client(dir: &std::path::Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(dir.join("kubeconfig")).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

#[tokio::test]
async fn a_node_registers_reports_ready_and_renews_its_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let _server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.expect("server");
    let client = client(dir.path()).await;
    let facts = machine::detect(dir.path()).expect("machine facts");
    let mut settings = NodeSettings::new("node-a");
    settings.labels.insert("topology.kubernetes.io/zone".into(), "z1".into());

    let node = register(&client, &facts, &settings).await.expect("register");
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("kubernetes.io/hostname").map(String::as_str), Some("node-a"));
    assert_eq!(labels.get("topology.kubernetes.io/zone").map(String::as_str), Some("z1"));
    let status = node.status.clone().expect("status");
    assert_eq!(status.capacity.as_ref().expect("capacity")["cpu"].0, facts.cpus.to_string());
    let ready = status.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));

    // Registering again (an agent restart) updates the labels and keeps one Node.
    settings.labels.insert("topology.kubernetes.io/zone".into(), "z2".into());
    register(&client, &facts, &settings).await.expect("register again");
    let nodes: Api<Node> = Api::all(client.clone());
    let listed = nodes.list(&Default::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    let again = nodes.get("node-a").await.expect("get");
    assert_eq!(again.metadata.labels.unwrap_or_default()["topology.kubernetes.io/zone"], "z2");

    // A status update refreshes the heartbeat and keeps the transition time of an unchanged condition.
    let before = again.status.and_then(|s| s.conditions).unwrap_or_default();
    let updated = update_status(&client, &facts, &settings).await.expect("status update");
    let after = updated.status.and_then(|s| s.conditions).unwrap_or_default();
    let ready_before = before.iter().find(|c| c.type_ == "Ready").expect("Ready before");
    let ready_after = after.iter().find(|c| c.type_ == "Ready").expect("Ready after");
    assert_eq!(ready_after.last_transition_time, ready_before.last_transition_time);
    assert!(ready_after.last_heartbeat_time >= ready_before.last_heartbeat_time);

    let lease = renew_lease(&client, &node).await.expect("lease");
    let owner = lease.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner.first().map(|o| (o.kind.as_str(), o.name.as_str())), Some(("Node", "node-a")));
    let first_renewal = lease.spec.as_ref().and_then(|s| s.renew_time.clone()).expect("renew time");
    let renewed = renew_lease(&client, &node).await.expect("renew");
    let spec = renewed.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("node-a"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    assert!(spec.renew_time.expect("renew time").0 >= first_renewal.0);
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    assert_eq!(leases.list(&Default::default()).await.expect("list").items.len(), 1);
    shutdown.cancel();
}

#[tokio::test]
async fn heartbeats_keep_renewing_the_lease_until_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_shutdown = CancellationToken::new();
    let _server = gantry_apiserver::start_loopback(dir.path(), server_shutdown.clone()).await.expect("server");
    let client = client(dir.path()).await;
    let facts = machine::detect(dir.path()).expect("machine facts");
    let settings = NodeSettings::new("node-b");
    let node = register(&client, &facts, &settings).await.expect("register");

    let stop = CancellationToken::new();
    let intervals = HeartbeatIntervals {
        lease: std::time::Duration::from_millis(50),
        status: std::time::Duration::from_millis(50),
    };
    let heartbeats = tokio::spawn(run_heartbeats(client.clone(), node, facts, settings, intervals, stop.clone()));
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let renew_time = |lease: Option<Lease>| lease.and_then(|l| l.spec).and_then(|s| s.renew_time).map(|t| t.0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        assert!(std::time::Instant::now() < deadline, "the lease was renewed {} times", seen.len());
        if let Some(time) = renew_time(leases.get_opt("node-b").await.expect("get"))
            && seen.last() != Some(&time)
        {
            seen.push(time);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), heartbeats)
        .await
        .expect("heartbeats stop on shutdown")
        .expect("heartbeat task");
    server_shutdown.cancel();
}
