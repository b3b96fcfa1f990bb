//! The node's cluster DNS against a real API server: the EndpointSlice that points `kube-dns` at the node's
//! server is written, rewritten and recreated; the server itself answers from the API.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

use gantry_agent::dns::{DNS_NAMESPACE, endpoint_slice, keep_endpoint_slice};

async fn client(dir: &std::path::Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(dir.join("kubeconfig")).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

fn patience() -> Duration {
    let seconds = std::env::var("GANTRY_TEST_PATIENCE").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    Duration::from_secs(seconds)
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn port_of(slice: &EndpointSlice) -> Option<i32> {
    slice.ports.as_ref()?.first()?.port
}

#[tokio::test]
async fn the_dns_endpoint_slice_is_written_corrected_and_recreated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let _guard = CancelOnDrop(shutdown.clone());
    let _server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.expect("server");
    let client = client(dir.path()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = serde_json::from_value(serde_json::json!({"metadata": {"name": "dns-node-a"}})).expect("node");
    let node = nodes.create(&PostParams::default(), &node).await.expect("create node");

    let desired = endpoint_slice(&node, "192.0.2.7:1053".parse().expect("addr"));
    let keeper = tokio::spawn(keep_endpoint_slice(client.clone(), desired, shutdown.clone()));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), DNS_NAMESPACE);
    let slice = eventually("the slice", || async { slices.get_opt("kube-dns-dns-node-a").await.ok().flatten() }).await;
    assert_eq!(slice.endpoints[0].addresses, vec!["192.0.2.7"]);
    assert_eq!(slice.endpoints[0].node_name.as_deref(), Some("dns-node-a"));
    assert_eq!(port_of(&slice), Some(1053));
    let owner = &slice.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", node.metadata.uid.as_deref().unwrap_or("")));

    // Someone changes the port: the agent puts it back.
    let mut changed = slice.clone();
    if let Some(port) = changed.ports.as_mut().and_then(|p| p.first_mut()) {
        port.port = Some(5353);
    }
    slices.replace("kube-dns-dns-node-a", &PostParams::default(), &changed).await.expect("change");
    eventually("the port put back", || async {
        let slice = slices.get_opt("kube-dns-dns-node-a").await.ok().flatten()?;
        (port_of(&slice) == Some(1053)).then_some(())
    })
    .await;

    // Deleted: recreated.
    let before = slices.get("kube-dns-dns-node-a").await.expect("get").metadata.uid;
    slices.delete("kube-dns-dns-node-a", &DeleteParams::default()).await.expect("delete");
    eventually("the slice recreated", || async {
        let slice = slices.get_opt("kube-dns-dns-node-a").await.ok().flatten()?;
        (slice.metadata.uid != before).then_some(())
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(patience(), keeper).await.expect("the keeper stops on shutdown").expect("keeper");
}

#[tokio::test]
async fn the_node_serves_cluster_dns_and_a_taken_port_leaves_it_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let _guard = CancelOnDrop(shutdown.clone());
    let _server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.expect("server");
    let client = client(dir.path()).await;
    let ip = "127.0.0.1".parse().expect("ip");
    let cluster_dns = "10.43.0.10".parse().expect("ip");
    let dns = gantry_agent::dns::start(&client, ip, 0, "cluster.local", cluster_dns, shutdown.clone())
        .await
        .expect("DNS served");
    let addr = dns.local_addr();
    let answer = eventually("the zone answered", || async {
        let answer = gantry_dns::testing::ask(
            addr,
            gantry_dns::testing::Transport::Udp,
            "dns-version.cluster.local.",
            gantry_dns::RecordType::TXT,
        )
        .await
        .ok()?;
        (!answer.answers.is_empty()).then_some(answer)
    })
    .await;
    assert_eq!(answer.answers[0].data.to_string(), "1.1.0");

    // The same port again is taken: no server, no panic.
    let again =
        gantry_agent::dns::start(&client, ip, addr.port(), "cluster.local", cluster_dns, shutdown.clone()).await;
    assert!(again.is_none());
    shutdown.cancel();
    tokio::time::timeout(patience(), dns.wait()).await.expect("the DNS server stops on shutdown");
}
