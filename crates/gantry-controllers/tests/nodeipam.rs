//! Node IPAM against a real Gantry API server (in-process, real SQLite file): Nodes get distinct pod CIDRs
//! from the cluster CIDR, a range a Node registered with is respected, a deleted Node's range is reused, and a
//! full cluster CIDR leaves a Node without one and says so in an Event.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::time::{Duration, Instant};

use gantry_controllers::nodeipam::NodeIpamConfig;
use gantry_controllers::start;
use gantry_store::testing::patience;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use tokio::task::JoinSet;

async fn create(nodes: &Api<Node>, name: &str, pod_cidr: Option<&str>) {
    let spec = pod_cidr.map(|c| json!({"podCIDR": c, "podCIDRs": [c]})).unwrap_or(json!({}));
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec});
    nodes.create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
}

async fn cidr_of(nodes: &Api<Node>, name: &str) -> String {
    let deadline = Instant::now() + patience();
    loop {
        let node = nodes.get(name).await.unwrap();
        if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr) {
            return cidr;
        }
        assert!(Instant::now() < deadline, "node {name} got no pod CIDR");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_ranges_and_a_deleted_nodes_range_is_reused() {
    let (_server, _dir, shutdown, client) = common::start_server().await;
    let nodes: Api<Node> = Api::all(client.clone());
    // Registered before the controller starts, with a range of its own: it keeps it, and it is not handed out.
    create(&nodes, "given", Some("10.99.0.0/24")).await;
    let mut config = common::manager_config();
    config.node_ipam = Some(NodeIpamConfig { cluster_cidr: "10.99.0.0/22".into(), node_mask: 24 });
    let mut tasks = JoinSet::new();
    start(client.clone(), config, shutdown.clone(), &mut tasks);

    for name in ["a", "b", "c"] {
        create(&nodes, name, None).await;
    }
    let mut cidrs = Vec::new();
    for name in ["a", "b", "c"] {
        cidrs.push(cidr_of(&nodes, name).await);
    }
    cidrs.sort();
    assert_eq!(cidrs, ["10.99.1.0/24", "10.99.2.0/24", "10.99.3.0/24"]);
    assert_eq!(cidr_of(&nodes, "given").await, "10.99.0.0/24");
    let node = nodes.get("a").await.unwrap();
    let spec = node.spec.unwrap();
    assert_eq!(spec.pod_cidrs, Some(vec![spec.pod_cidr.clone().unwrap()]), "podCIDRs carries the same range");

    // The cluster CIDR is full: a fourth node waits, with an Event saying why.
    create(&nodes, "d", None).await;
    let events: Api<Event> = Api::all(client.clone());
    let deadline = Instant::now() + patience();
    loop {
        let list = events.list(&ListParams::default().fields("involvedObject.name=d")).await.unwrap();
        if list.items.iter().any(|e| e.reason.as_deref() == Some("CIDRNotAvailable")) {
            break;
        }
        assert!(Instant::now() < deadline, "no CIDRNotAvailable event for node d");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(nodes.get("d").await.unwrap().spec.and_then(|s| s.pod_cidr), None);

    // Deleting b frees its range; a new node gets it.
    let freed = cidr_of(&nodes, "b").await;
    nodes.delete("b", &DeleteParams::default()).await.unwrap();
    nodes.delete("d", &DeleteParams::default()).await.unwrap();
    create(&nodes, "e", None).await;
    assert_eq!(cidr_of(&nodes, "e").await, freed);

    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
}
