//! The EndpointSlice and Endpoints controllers against a real Gantry API server (in-process, real SQLite file),
//! with the whole controller manager running. No node agent runs: the tests play the nodes, writing pod IPs and
//! Ready conditions through the status subresource.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    _dir: tempfile::TempDir,
    client: kube::Client,
    shutdown: CancellationToken,
    _tasks: JoinSet<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let (server, dir, shutdown, client) = common::start_server().await;
        let mut tasks = JoinSet::new();
        gantry_controllers::start(client.clone(), common::manager_config(), shutdown.clone(), &mut tasks);
        let cluster = Cluster { _server: server, _dir: dir, client, shutdown, _tasks: tasks };
        cluster.node("node-a", "zone-a").await;
        cluster
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn slices(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn endpoints(&self) -> Api<Endpoints> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn node(&self, name: &str, zone: &str) {
        let node = json!({"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}});
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes.create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
    }

    async fn service(&self, name: &str, spec: Value) {
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec});
        let services: Api<Service> = Api::namespaced(self.client.clone(), "default");
        services.create(&PostParams::default(), &serde_json::from_value(service).unwrap()).await.unwrap();
    }

    /// A pod of `app` on node-a whose container port `http` is `port`, with no IP yet.
    async fn pod(&self, name: &str, app: &str, port: i32) {
        let pod = json!({"metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox",
                     "ports": [{"name": "http", "containerPort": port}]}]}});
        self.pods().create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    }

    /// Plays the node: the pod runs with `ip`, ready or not.
    async fn run_pod(&self, name: &str, ip: &str, ready: bool) {
        let now = jiff::Timestamp::now().to_string();
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": now}]}});
        self.pods().patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    }

    async fn slices_of(&self, service: &str) -> Vec<EndpointSlice> {
        let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        self.slices().list(&params).await.unwrap().items
    }
}

/// Polls `check` until it gives a value, or fails the test saying `what` never happened.
async fn eventually<T, F: Future<Output = Result<T, String>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(why) => assert!(tokio::time::Instant::now() < deadline, "{what}: never happened; {why}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn web_spec() -> Value {
    json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]})
}

/// The conditions (ready, serving, terminating) of the one endpoint in the Service's slices, with its slice.
fn only_endpoint(slices: &[EndpointSlice]) -> Result<((bool, bool, bool), EndpointSlice), String> {
    let with: Vec<&EndpointSlice> = slices.iter().filter(|s| !s.endpoints.is_empty()).collect();
    let [slice] = with.as_slice() else { return Err(format!("{} slices with endpoints", with.len())) };
    let [endpoint] = slice.endpoints.as_slice() else { return Err(format!("{} endpoints", slice.endpoints.len())) };
    let c = endpoint.conditions.clone().unwrap_or_default();
    Ok(((c.ready == Some(true), c.serving == Some(true), c.terminating == Some(true)), (*slice).clone()))
}

fn addresses(endpoints: &Endpoints) -> (Vec<String>, Vec<String>) {
    let subsets = endpoints.subsets.clone().unwrap_or_default();
    let ips = |f: fn(
        &k8s_openapi::api::core::v1::EndpointSubset,
    ) -> Option<&Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        let mut list: Vec<String> =
            subsets.iter().flat_map(|s| f(s).cloned().unwrap_or_default()).map(|a| a.ip).collect();
        list.sort();
        list
    };
    (ips(|s| s.addresses.as_ref()), ips(|s| s.not_ready_addresses.as_ref()))
}

#[tokio::test]
async fn slices_and_endpoints_follow_pod_readiness_through_termination() {
    let cluster = Cluster::start().await;
    cluster.service("web", web_spec()).await;
    let placeholder = eventually("a placeholder slice", || async {
        let slices = cluster.slices_of("web").await;
        match slices.as_slice() {
            [slice] if slice.endpoints.is_empty() => Ok(slice.clone()),
            other => Err(format!("{} slices", other.len())),
        }
    })
    .await;
    let labels = placeholder.metadata.labels.clone().unwrap();
    assert_eq!(labels["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
    assert!(placeholder.metadata.name.as_deref().unwrap().starts_with("web-"));
    let owner = &placeholder.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Service", "web", Some(true)));

    cluster.pod("web-0", "web", 8080).await;
    cluster.run_pod("web-0", "10.244.0.10", false).await;
    let (_, slice) = eventually("a not-ready endpoint", || async {
        let found = only_endpoint(&cluster.slices_of("web").await)?;
        if found.0 == (false, false, false) { Ok(found) } else { Err(format!("conditions {:?}", found.0)) }
    })
    .await;
    assert_eq!(slice.metadata.name, placeholder.metadata.name, "the placeholder is reused");
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(8080));
    let endpoint = &slice.endpoints[0];
    assert_eq!(endpoint.addresses, vec!["10.244.0.10"]);
    assert_eq!(endpoint.node_name.as_deref(), Some("node-a"));
    assert_eq!(endpoint.zone.as_deref(), Some("zone-a"));
    assert_eq!(endpoint.target_ref.as_ref().unwrap().name.as_deref(), Some("web-0"));
    eventually("the Endpoints lists the address as not ready", || async {
        let endpoints = cluster.endpoints().get_opt("web").await.unwrap().ok_or("no Endpoints")?;
        let (ready, not_ready) = addresses(&endpoints);
        if ready.is_empty() && not_ready == ["10.244.0.10"] { Ok(()) } else { Err(format!("{ready:?} {not_ready:?}")) }
    })
    .await;

    cluster.run_pod("web-0", "10.244.0.10", true).await;
    eventually("a ready endpoint", || async {
        let found = only_endpoint(&cluster.slices_of("web").await)?;
        if found.0 == (true, true, false) { Ok(()) } else { Err(format!("conditions {:?}", found.0)) }
    })
    .await;
    let endpoints = eventually("the Endpoints lists the address as ready", || async {
        let endpoints = cluster.endpoints().get_opt("web").await.unwrap().ok_or("no Endpoints")?;
        let (ready, not_ready) = addresses(&endpoints);
        if ready == ["10.244.0.10"] && not_ready.is_empty() { Ok(endpoints) } else { Err(format!("{ready:?}")) }
    })
    .await;
    let subset = &endpoints.subsets.as_ref().unwrap()[0];
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 8080);
    let annotations = endpoints.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"), "{annotations:?}");

    // The pod is bound to a node: deleting it leaves it terminating until the node confirms.
    cluster.pods().delete("web-0", &DeleteParams::default()).await.unwrap();
    eventually("a terminating endpoint", || async {
        let found = only_endpoint(&cluster.slices_of("web").await)?;
        if found.0 == (false, true, true) { Ok(()) } else { Err(format!("conditions {:?}", found.0)) }
    })
    .await;
    eventually("the Endpoints leaves the terminating pod out", || async {
        let endpoints = cluster.endpoints().get("web").await.unwrap();
        let (ready, not_ready) = addresses(&endpoints);
        if ready.is_empty() && not_ready.is_empty() { Ok(()) } else { Err(format!("{ready:?} {not_ready:?}")) }
    })
    .await;

    cluster
        .pods()
        .delete("web-0", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() })
        .await
        .unwrap();
    eventually("back to one empty slice", || async {
        let slices = cluster.slices_of("web").await;
        match slices.as_slice() {
            [slice] if slice.endpoints.is_empty() => Ok(()),
            other => Err(format!("{} slices", other.len())),
        }
    })
    .await;
}

#[tokio::test]
async fn a_named_target_port_resolved_differently_puts_pods_in_different_slices() {
    let cluster = Cluster::start().await;
    cluster.service("web", web_spec()).await;
    cluster.pod("web-a", "web", 8080).await;
    cluster.pod("web-b", "web", 9090).await;
    cluster.run_pod("web-a", "10.244.0.11", true).await;
    cluster.run_pod("web-b", "10.244.0.12", true).await;
    eventually("one slice per resolved port", || async {
        let slices = cluster.slices_of("web").await;
        let mut found: Vec<(i32, Vec<String>)> = slices
            .iter()
            .map(|s| {
                let port = s.ports.as_ref().and_then(|p| p.first()).and_then(|p| p.port).unwrap_or(0);
                (port, s.endpoints.iter().flat_map(|e| e.addresses.clone()).collect())
            })
            .collect();
        found.sort();
        let want = vec![(8080, vec!["10.244.0.11".to_string()]), (9090, vec!["10.244.0.12".to_string()])];
        if found == want { Ok(()) } else { Err(format!("{found:?}")) }
    })
    .await;
    eventually("one Endpoints subset per resolved port", || async {
        let endpoints = cluster.endpoints().get_opt("web").await.unwrap().ok_or("no Endpoints")?;
        let mut found: Vec<(i32, Vec<String>)> = endpoints
            .subsets
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let port = s.ports.as_ref().and_then(|p| p.first()).map_or(0, |p| p.port);
                (port, s.addresses.iter().flatten().map(|a| a.ip.clone()).collect())
            })
            .collect();
        found.sort();
        let want = vec![(8080, vec!["10.244.0.11".to_string()]), (9090, vec!["10.244.0.12".to_string()])];
        if found == want { Ok(()) } else { Err(format!("{found:?}")) }
    })
    .await;
}

#[tokio::test]
async fn a_hundred_and_fifty_pods_fill_two_slices_of_at_most_a_hundred() {
    let cluster = Cluster::start().await;
    cluster.service("web", web_spec()).await;
    let c = &cluster;
    for chunk in (0..150).collect::<Vec<i32>>().chunks(25) {
        join_all(chunk.iter().map(|i| async move { c.pod(&format!("web-{i}"), "web", 8080).await })).await;
        join_all(chunk.iter().map(|i| async move {
            c.run_pod(&format!("web-{i}"), &format!("10.244.{}.{}", i / 100, i % 100 + 1), true).await
        }))
        .await;
    }
    let slices = eventually("150 endpoints in two slices", || async {
        let slices = cluster.slices_of("web").await;
        let total: usize = slices.iter().map(|s| s.endpoints.len()).sum();
        if total == 150 && slices.len() == 2 { Ok(slices) } else { Err(format!("{total} in {} slices", slices.len())) }
    })
    .await;
    assert!(slices.iter().all(|s| s.endpoints.len() <= 100), "sizes {:?}", slices.iter().map(|s| s.endpoints.len()));
    eventually("150 ready addresses in the Endpoints", || async {
        let endpoints = cluster.endpoints().get_opt("web").await.unwrap().ok_or("no Endpoints")?;
        let (ready, _) = addresses(&endpoints);
        if ready.len() == 150 { Ok(()) } else { Err(format!("{} addresses", ready.len())) }
    })
    .await;
    // Settled: another pod joins an existing slice rather than a new one.
    cluster.pod("web-extra", "web", 8080).await;
    cluster.run_pod("web-extra", "10.244.9.1", true).await;
    eventually("151 endpoints still in two slices", || async {
        let slices = cluster.slices_of("web").await;
        let total: usize = slices.iter().map(|s| s.endpoints.len()).sum();
        if total == 151 && slices.len() == 2 { Ok(()) } else { Err(format!("{total} in {} slices", slices.len())) }
    })
    .await;
}

#[tokio::test]
async fn a_service_without_a_selector_and_foreign_slices_are_left_alone() {
    let cluster = Cluster::start().await;
    cluster.service("external", json!({"ports": [{"port": 80}]})).await;
    let endpoints = json!({"metadata": {"name": "external"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 80}]}]});
    cluster.endpoints().create(&PostParams::default(), &serde_json::from_value(endpoints).unwrap()).await.unwrap();
    let slice = json!({"metadata": {"name": "external-1", "labels": {"kubernetes.io/service-name": "external",
            "endpointslice.kubernetes.io/managed-by": "someone-else"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["192.0.2.10"]}], "ports": [{"port": 80}]});
    cluster.slices().create(&PostParams::default(), &serde_json::from_value(slice).unwrap()).await.unwrap();
    cluster.pod("web-0", "web", 8080).await;
    cluster.run_pod("web-0", "10.244.0.10", true).await;
    // A Service with a selector, created after: once its endpoints exist, the controllers have seen both.
    cluster.service("web", web_spec()).await;
    eventually("the selecting Service's endpoints", || async {
        let endpoints = cluster.endpoints().get_opt("web").await.unwrap().ok_or("no Endpoints")?;
        let slices = cluster.slices_of("web").await;
        let ready = addresses(&endpoints).0;
        if ready.len() == 1 && slices.iter().any(|s| !s.endpoints.is_empty()) { Ok(()) } else { Err("not yet".into()) }
    })
    .await;
    let slices = cluster.slices_of("external").await;
    assert_eq!(slices.len(), 1, "no managed slice for a Service without a selector");
    assert_eq!(slices[0].metadata.name.as_deref(), Some("external-1"));
    assert_eq!(slices[0].endpoints[0].addresses, vec!["192.0.2.10"]);
    let endpoints = cluster.endpoints().get("external").await.unwrap();
    assert_eq!(addresses(&endpoints).0, vec!["192.0.2.10"], "its Endpoints are the owner's");
    assert!(endpoints.metadata.annotations.unwrap_or_default().is_empty());
}
