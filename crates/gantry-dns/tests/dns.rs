//! The cluster DNS server against a real API server (in-process, on a SQLite file): records follow Services and
//! EndpointSlices, and names outside the zone go to an upstream resolver, played here by a second DNS server the
//! test starts on loopback in place of the node's resolver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gantry_dns::testing::{Transport, ask};
use gantry_dns::{DnsConfig, serve};
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Message, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, TXT};
use hickory_server::proto::rr::{RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

/// How long to wait for a condition; `GANTRY_TEST_PATIENCE` (seconds) overrides it.
fn patience() -> Duration {
    let seconds = std::env::var("GANTRY_TEST_PATIENCE").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    Duration::from_secs(seconds)
}

/// Polls `check` until it returns `Some`, or fails after the patience runs out.
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

/// Cancels its token when dropped, so that a failing test still stops the servers it started.
struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn client(dir: &std::path::Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(dir.join("kubeconfig")).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

fn data(message: &Message) -> Vec<String> {
    let mut data: Vec<String> = message.answers.iter().map(|r| r.data.to_string()).collect();
    data.sort();
    data
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    namespaces.create(&PostParams::default(), &namespace).await.expect("create namespace");
}

fn slice(name: &str, service: &str, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("slice")
}

#[tokio::test]
async fn services_and_endpoint_slices_resolve_and_answers_follow_their_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let _guard = CancelOnDrop(shutdown.clone());
    let _server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.expect("API server");
    let client = client(dir.path()).await;
    create_namespace(&client, "dns-shop").await;
    let services: Api<Service> = Api::namespaced(client.clone(), "dns-shop");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "dns-shop");
    let web = serde_json::from_value(serde_json::json!({"metadata": {"name": "web"},
        "spec": {"clusterIP": "10.43.201.20", "ports": [{"name": "http", "port": 80}]}}))
    .expect("service");
    services.create(&PostParams::default(), &web).await.expect("create web");
    let db = serde_json::from_value(serde_json::json!({"metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}))
    .expect("service");
    services.create(&PostParams::default(), &db).await.expect("create db");
    let endpoints = serde_json::json!([
        {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
        {"addresses": ["10.42.0.6"], "conditions": {"ready": false}},
    ]);
    slices.create(&PostParams::default(), &slice("db-1", "db", endpoints)).await.expect("create slice");

    let dns =
        serve(client.clone(), DnsConfig::new("127.0.0.1:0".parse().expect("addr"), "cluster.local"), shutdown.clone())
            .await
            .expect("DNS server");
    let addr = dns.local_addr();

    let answer = eventually("web's A record", || async {
        let answer = ask(addr, Transport::Udp, "web.dns-shop.svc.cluster.local.", RecordType::A).await.ok()?;
        (answer.metadata.response_code == ResponseCode::NoError && !answer.answers.is_empty()).then_some(answer)
    })
    .await;
    assert_eq!(data(&answer), vec!["10.43.201.20"]);
    assert!(answer.metadata.authoritative);
    assert_eq!(answer.answers[0].ttl, 5);

    // Over TCP, in any case.
    let tcp = ask(addr, Transport::Tcp, "WEB.Dns-Shop.svc.Cluster.Local.", RecordType::A).await.expect("TCP");
    assert_eq!(data(&tcp), vec!["10.43.201.20"]);

    // Headless: the ready endpoint only, and its hostname; SRV with its address in Additional.
    let db = ask(addr, Transport::Udp, "db.dns-shop.svc.cluster.local.", RecordType::A).await.expect("db");
    assert_eq!(data(&db), vec!["10.42.0.5"]);
    let db0 = ask(addr, Transport::Udp, "db-0.db.dns-shop.svc.cluster.local.", RecordType::A).await.expect("db-0");
    assert_eq!(data(&db0), vec!["10.42.0.5"]);
    let srv = ask(addr, Transport::Udp, "_pg._tcp.db.dns-shop.svc.cluster.local.", RecordType::SRV).await.expect("srv");
    assert_eq!(data(&srv), vec!["0 100 5432 db-0.db.dns-shop.svc.cluster.local."]);
    assert_eq!(srv.additionals.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), vec!["10.42.0.5"]);

    // NXDOMAIN and NODATA both carry the zone's SOA.
    let missing = ask(addr, Transport::Udp, "nope.dns-shop.svc.cluster.local.", RecordType::A).await.expect("nope");
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(missing.authorities.first().map(|r| r.record_type()), Some(RecordType::SOA));
    let nodata = ask(addr, Transport::Udp, "web.dns-shop.svc.cluster.local.", RecordType::AAAA).await.expect("aaaa");
    assert_eq!((nodata.metadata.response_code, nodata.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(nodata.authorities.first().map(|r| r.record_type()), Some(RecordType::SOA));

    // The second endpoint turns ready: the headless answer follows.
    let endpoints = serde_json::json!([
        {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
        {"addresses": ["10.42.0.6"], "conditions": {"ready": true}},
    ]);
    let mut updated = slices.get("db-1").await.expect("get slice");
    updated.endpoints = slice("db-1", "db", endpoints).endpoints;
    slices.replace("db-1", &PostParams::default(), &updated).await.expect("update slice");
    eventually("both db endpoints", || async {
        let answer = ask(addr, Transport::Udp, "db.dns-shop.svc.cluster.local.", RecordType::A).await.ok()?;
        (data(&answer) == vec!["10.42.0.5", "10.42.0.6"]).then_some(())
    })
    .await;

    // The slice goes: the headless Service still exists, without addresses (NODATA, not NXDOMAIN).
    slices.delete("db-1", &DeleteParams::default()).await.expect("delete slice");
    eventually("db without endpoints", || async {
        let answer = ask(addr, Transport::Udp, "db.dns-shop.svc.cluster.local.", RecordType::A).await.ok()?;
        (answer.metadata.response_code == ResponseCode::NoError && answer.answers.is_empty()).then_some(())
    })
    .await;

    // The Service goes: NXDOMAIN.
    services.delete("web", &DeleteParams::default()).await.expect("delete web");
    eventually("web gone", || async {
        let answer = ask(addr, Transport::Udp, "web.dns-shop.svc.cluster.local.", RecordType::A).await.ok()?;
        (answer.metadata.response_code == ResponseCode::NXDomain).then_some(())
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(patience(), dns.wait()).await.expect("the DNS server stops on shutdown");
}

/// Stands in for the node's resolver: answers `*.example.test` with 192.0.2.1, and `tc.example.test` over UDP
/// only with an empty truncated answer, so that the full one takes TCP.
struct Upstream {
    questions: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for Upstream {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        self.questions.fetch_add(1, Ordering::SeqCst);
        let info = request.request_info().expect("one question");
        let name = info.query.name().to_string();
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let mut answers = Vec::new();
        let owner = info.query.original().name().clone();
        if name == "tc.example.test." && request.protocol() == hickory_server::net::xfer::Protocol::Udp {
            metadata.truncation = true;
        } else if name.ends_with("example.test.") && info.query.query_type() == RecordType::A {
            answers.push(Record::from_rdata(owner.clone(), 60, RData::A(A([192, 0, 2, 1].into()))));
            if name == "tc.example.test." {
                answers.push(Record::from_rdata(owner, 60, RData::TXT(TXT::new(vec!["over TCP".into()]))));
            }
        } else {
            metadata.response_code = ResponseCode::NXDomain;
        }
        let response = MessageResponseBuilder::from_message_request(request).build(
            metadata,
            answers.iter(),
            [].iter(),
            [].iter(),
            [].iter(),
        );
        handle.send_response(response).await.expect("send")
    }
}

async fn start_upstream(shutdown: &CancellationToken) -> (SocketAddr, Arc<AtomicUsize>) {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let addr = udp.local_addr().expect("addr");
    let tcp = tokio::net::TcpListener::bind(addr).await.expect("bind TCP");
    let questions = Arc::new(AtomicUsize::new(0));
    let mut server = Server::new(Upstream { questions: questions.clone() });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 16);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        let _ = server.shutdown_gracefully().await;
    });
    (addr, questions)
}

#[tokio::test]
async fn names_outside_the_zone_are_forwarded_and_truncated_answers_are_fetched_again_over_tcp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let _guard = CancelOnDrop(shutdown.clone());
    let _server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.expect("API server");
    let client = client(dir.path()).await;
    let (upstream, questions) = start_upstream(&shutdown).await;
    let mut config = DnsConfig::new("127.0.0.1:0".parse().expect("addr"), "cluster.local");
    // The first resolver is dead (nothing listens on port 9 of 127.0.0.2): the second one answers.
    config.upstreams = vec!["127.0.0.2:9".parse().expect("addr"), upstream];
    config.forward_timeout = Duration::from_millis(500);
    let dns = serve(client, config, shutdown.clone()).await.expect("DNS server");
    let addr = dns.local_addr();

    let answer = ask(addr, Transport::Udp, "www.example.test.", RecordType::A).await.expect("forwarded");
    assert_eq!(data(&answer), vec!["192.0.2.1"]);
    assert!(!answer.metadata.authoritative);
    assert!(answer.metadata.recursion_available);
    let missing = ask(addr, Transport::Tcp, "missing.test.", RecordType::A).await.expect("forwarded");
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);

    // Over UDP the upstream only says "truncated"; the full answer came over TCP and fits the client's datagram.
    let truncated = ask(addr, Transport::Udp, "tc.example.test.", RecordType::A).await.expect("forwarded");
    assert!(!truncated.metadata.truncation);
    assert_eq!(data(&truncated), vec!["192.0.2.1", "over TCP"]);

    // A PTR question for an address that is no cluster IP goes upstream too; cluster names never do.
    let before = questions.load(Ordering::SeqCst);
    let ptr = ask(addr, Transport::Udp, "1.2.0.192.in-addr.arpa.", RecordType::PTR).await.expect("PTR");
    assert_eq!(ptr.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(questions.load(Ordering::SeqCst), before + 1);
    eventually("the index to sync", || async {
        let answer = ask(addr, Transport::Udp, "kubernetes.default.svc.cluster.local.", RecordType::A).await.ok()?;
        (answer.metadata.response_code != ResponseCode::ServFail).then_some(())
    })
    .await;
    let after = questions.load(Ordering::SeqCst);
    let _ = ask(addr, Transport::Udp, "nothing.default.svc.cluster.local.", RecordType::A).await.expect("cluster");
    assert_eq!(questions.load(Ordering::SeqCst), after);

    shutdown.cancel();
    tokio::time::timeout(patience(), dns.wait()).await.expect("the DNS server stops on shutdown");
}

#[tokio::test]
async fn a_port_in_use_is_a_bind_error() {
    let taken = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = taken.local_addr().expect("addr");
    let index = Arc::new(gantry_dns::ClusterIndex::new(gantry_dns::Zone::new("cluster.local").expect("zone")));
    let shutdown = CancellationToken::new();
    let _guard = CancelOnDrop(shutdown.clone());
    let result = gantry_dns::serve_index(index, DnsConfig::new(addr, "cluster.local"), shutdown).await;
    let err = result.err().expect("the port is taken");
    assert!(matches!(err, gantry_dns::DnsError::Bind { protocol: "UDP", .. }), "{err}");
}
