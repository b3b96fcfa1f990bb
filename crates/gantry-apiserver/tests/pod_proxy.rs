//! pods/log, pods/exec, pods/attach and pods/portforward through a real API server to a node agent.
//!
//! The node agent here is a small HTTPS server started by the test, standing in for the real one (which another
//! engineer is building): it requires a client certificate issued by the cluster CA, records what it was asked,
//! streams a log in pieces, and answers upgrades with 101 (computing `Sec-WebSocket-Accept` per RFC 6455) before
//! echoing bytes. A Node object points the API server at it (`InternalIP` 127.0.0.1, its port as the kubelet
//! port). One ignored test drives the real kubectl (`GANTRY_KUBECTL`): logs, and the fallback from WebSocket to
//! SPDY when the node refuses the upgrade.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use gantry_apiserver::RunningServer;
use gantry_apiserver::objects::WriteOptions;
use gantry_apiserver::pki::KUBELET_CLIENT_USER;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How long a test waits for something that should happen.
fn patience() -> Duration {
    let secs = std::env::var("GANTRY_TEST_PATIENCE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    Duration::from_secs(secs)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(patience(), f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// What the node agent was asked.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query.
    target: String,
    /// The client certificate's CN.
    user: String,
    headers: http::HeaderMap,
}

/// The stand-in node agent.
struct FakeNode {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Lets a followed log go on after its first piece.
    more_logs: Arc<Notify>,
    /// Notified when the API server closed a log stream before it ended.
    log_abandoned: Arc<Notify>,
    stop: CancellationToken,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeNode {
    async fn start(ca_pem: &str) -> FakeNode {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // A self-signed serving certificate: the API server does not verify nodes' certificates.
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(ca.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let node = FakeNode {
            addr,
            seen: Arc::default(),
            more_logs: Arc::new(Notify::new()),
            log_abandoned: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
        };
        let (seen, more_logs, log_abandoned, stop) =
            (node.seen.clone(), node.more_logs.clone(), node.log_abandoned.clone(), node.stop.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let acceptor = acceptor.clone();
                let (seen, more_logs, log_abandoned, stop) =
                    (seen.clone(), more_logs.clone(), log_abandoned.clone(), stop.clone());
                tokio::spawn(async move {
                    // A client without a certificate from the cluster CA fails here.
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let der = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).unwrap().to_vec();
                    let user = gantry_apiserver::pki::identity_from_cert(&der).unwrap().0;
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        let (more_logs, log_abandoned, stop) = (more_logs.clone(), log_abandoned.clone(), stop.clone());
                        let user = user.clone();
                        async move {
                            seen.lock().unwrap().push(Seen {
                                method: req.method().to_string(),
                                target: req.uri().path_and_query().unwrap().to_string(),
                                user,
                                headers: req.headers().clone(),
                            });
                            Ok::<_, Infallible>(node_answer(req, more_logs, log_abandoned, stop))
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades();
                    let _ = conn.await;
                });
            }
        });
        node
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen().last().cloned().expect("the node was asked something")
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *response.status_mut() = StatusCode::from_u16(code).unwrap();
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    response
}

/// RFC 6455: base64(SHA-1(key + GUID)).
fn websocket_accept(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

fn node_answer(
    mut req: Request<Incoming>,
    more_logs: Arc<Notify>,
    log_abandoned: Arc<Notify>,
    stop: CancellationToken,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path.starts_with("/containerLogs/") {
        return match path.rsplit('/').next().unwrap() {
            "missing" => status(404, "NotFound", "container \"missing\" has no logs on this node"),
            "waiting" => {
                let mut response = Response::new(
                    Full::new(Bytes::from_static(b"container \"waiting\" in pod \"web\" is waiting to start\n"))
                        .boxed_unsync(),
                );
                *response.status_mut() = StatusCode::BAD_REQUEST;
                response
            }
            _ => {
                // One piece now; when following, the next only once the test says so; then the end.
                let follow = query.contains("follow=true");
                let (tx, rx) = mpsc::channel::<Bytes>(4);
                tokio::spawn(async move {
                    let _ = tx.send(Bytes::from_static(b"one\n")).await;
                    if !follow {
                        let _ = tx.send(Bytes::from_static(b"two\n")).await;
                        return;
                    }
                    tokio::select! {
                        _ = more_logs.notified() => {
                            let _ = tx.send(Bytes::from_static(b"two\n")).await;
                        }
                        _ = tx.closed() => log_abandoned.notify_one(),
                        _ = stop.cancelled() => {}
                    }
                });
                let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
                let body = StreamBody::new(futures::StreamExt::map(stream, |b| Ok::<_, Infallible>(Frame::data(b))));
                Response::new(BodyExt::boxed_unsync(body))
            }
        };
    }
    if query.contains("command=refuse") {
        return status(404, "NotFound", "the node refused this upgrade");
    }
    let mut response = Response::new(Empty::new().boxed_unsync());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("connection", "Upgrade".parse().unwrap());
    if let Some(key) = req.headers().get("sec-websocket-key") {
        headers.insert("upgrade", "websocket".parse().unwrap());
        headers.insert("sec-websocket-accept", websocket_accept(key.to_str().unwrap()).parse().unwrap());
        let offered = req.headers().get("sec-websocket-protocol").unwrap().to_str().unwrap();
        headers.insert("sec-websocket-protocol", offered.split(',').next().unwrap().trim().parse().unwrap());
    } else {
        headers.insert("upgrade", "SPDY/3.1".parse().unwrap());
        let offered = req.headers().get("x-stream-protocol-version").unwrap().to_str().unwrap().to_string();
        headers.insert("x-stream-protocol-version", offered.parse().unwrap());
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
        tokio::select! {
            _ = tokio::io::copy(&mut read, &mut write) => {}
            _ = stop.cancelled() => {}
        }
    });
    response
}

/// A real API server and a fake node agent registered as Node `node-1`.
struct Cluster {
    server: Option<RunningServer>,
    node: FakeNode,
    pki: std::path::PathBuf,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn write_options() -> WriteOptions {
    WriteOptions { field_manager: "test".into(), ..Default::default() }
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.unwrap();
        let pki = dir.path().join("pki");
        let node = FakeNode::start(&std::fs::read_to_string(pki.join("ca.crt")).unwrap()).await;
        let cluster = Cluster { server: Some(server), node, pki, shutdown, _dir: dir };
        cluster
            .create_node(
                "node-1",
                json!([{"type": "Hostname", "address": "node-1"},
                                            {"type": "InternalIP", "address": "127.0.0.1"}]),
                cluster.node.addr.port(),
            )
            .await;
        cluster
    }

    fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    async fn create_node(&self, name: &str, addresses: Value, port: u16) {
        let api = &self.server().api;
        let nodes = api.registry.by_plural("", "v1", "nodes").unwrap();
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                          "status": {"addresses": addresses, "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
        api.create(nodes, None, node, &write_options()).await.unwrap();
    }

    async fn create_pod(&self, name: &str, node: Option<&str>, spec: Value) {
        let api = &self.server().api;
        let pods = api.registry.by_plural("", "v1", "pods").unwrap();
        let mut spec = spec;
        if let Some(node) = node {
            spec["nodeName"] = json!(node);
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec});
        api.create(pods, Some("default"), pod, &write_options()).await.unwrap();
    }

    /// A pod `web` on node-1 with one container `app` and an init container `setup`.
    async fn with_web_pod(self) -> Cluster {
        self.create_pod(
            "web",
            Some("node-1"),
            json!({"initContainers": [{"name": "setup", "image": "busybox"}],
                   "containers": [{"name": "app", "image": "busybox"}]}),
        )
        .await;
        self
    }

    /// An HTTP/1.1 connection to the API server as the admin (client certificate from the cluster CA).
    async fn connect(&self) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
        connect_as(self.server().addr, &self.pki, true).await
    }

    async fn request(&self, req: Request<Empty<Bytes>>) -> Response<Incoming> {
        let mut sender = self.connect().await;
        within("the API server's answer", sender.send_request(req)).await.unwrap()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.request(Request::get(path).body(Empty::new()).unwrap()).await;
        let code = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value =
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
        (code, value)
    }
}

async fn connect_as(
    addr: SocketAddr,
    pki: &Path,
    with_cert: bool,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&std::fs::read(pki.join("ca.crt")).unwrap()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = if with_cert {
        let certs = CertificateDer::pem_slice_iter(&std::fs::read(pki.join("admin.crt")).unwrap())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(&std::fs::read(pki.join("admin.key")).unwrap()).unwrap();
        builder.with_client_auth_cert(certs, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::from(addr.ip()), tcp).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
}

fn upgrade_request(
    method: &str,
    path: &str,
    websocket: Option<(&str, &str)>,
    spdy: Option<&[&str]>,
) -> Request<Empty<Bytes>> {
    let mut req = Request::builder().method(method).uri(path).header("connection", "Upgrade");
    if let Some((key, protocol)) = websocket {
        req = req
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", key)
            .header("sec-websocket-protocol", protocol);
    }
    if let Some(versions) = spdy {
        req = req.header("upgrade", "SPDY/3.1");
        for v in versions {
            req = req.header("x-stream-protocol-version", *v);
        }
    }
    req.body(Empty::new()).unwrap()
}

/// Writes `bytes` on an upgraded connection and reads the same number back.
async fn echo(io: &mut TokioIo<hyper::upgrade::Upgraded>, bytes: &[u8]) -> Vec<u8> {
    io.write_all(bytes).await.unwrap();
    let mut back = vec![0; bytes.len()];
    within("the echo through the API server", io.read_exact(&mut back)).await.unwrap();
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_log_arrives_piece_by_piece_from_the_pods_node() {
    let cluster = Cluster::start().await.with_web_pod().await;
    let response = cluster
        .request(
            Request::get(
                "/api/v1/namespaces/default/pods/web/log?container=app&follow=true&tailLines=5&timestamps=true",
            )
            .body(Empty::new())
            .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    let seen = cluster.node.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/containerLogs/default/web/app?follow=true&tailLines=5&timestamps=true");
    assert_eq!(seen.user, KUBELET_CLIENT_USER);

    let mut body = response.into_body();
    let first = within("the first piece", body.frame()).await.unwrap().unwrap().into_data().unwrap();
    // The node holds back the rest until now: the first piece came through before the node's stream ended.
    assert_eq!(first, "one\n");
    cluster.node.more_logs.notify_one();
    let rest = within("the rest of the log", body.collect()).await.unwrap().to_bytes();
    assert_eq!(rest, "two\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_container_is_chosen_and_a_client_going_away_closes_the_node_stream() {
    let cluster = Cluster::start().await.with_web_pod().await;
    let abandoned = cluster.node.log_abandoned.notified();
    let response = cluster
        .request(Request::get("/api/v1/namespaces/default/pods/web/log?follow").body(Empty::new()).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(cluster.node.last().target, "/containerLogs/default/web/app?follow=true");
    let mut body = response.into_body();
    assert_eq!(within("the first piece", body.frame()).await.unwrap().unwrap().into_data().unwrap(), "one\n");
    drop(body);
    within("the node stream to be closed", abandoned).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_exec_is_upgraded_by_the_node_and_relayed_both_ways() {
    let cluster = Cluster::start().await.with_web_pod().await;
    let key = "T1gOvKYFcFtCuNqjm3GKLw==";
    let path = "/api/v1/namespaces/default/pods/web/exec?command=sh&command=-c&command=echo+a%26b&container=app\
                &stdin=true&stdout=true&tty=true";
    let response = cluster.request(upgrade_request("GET", path, Some((key, "v5.channel.k8s.io")), None)).await;
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["sec-websocket-accept"], websocket_accept(key));
    assert_eq!(response.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    assert_eq!(response.headers()["upgrade"], "websocket");
    let seen = cluster.node.last();
    assert_eq!((seen.method.as_str(), seen.user.as_str()), ("GET", KUBELET_CLIENT_USER));
    assert_eq!(seen.target, "/exec/default/web/app?command=sh&command=-c&command=echo+a%26b&stdin=1&stdout=1&tty=1");
    assert_eq!(seen.headers["sec-websocket-key"], key);
    assert_eq!(seen.headers["sec-websocket-version"], "13");
    assert_eq!(seen.headers["sec-websocket-protocol"], "v5.channel.k8s.io");
    assert_eq!(seen.headers["upgrade"], "websocket");

    let mut io = TokioIo::new(within("the upgrade", hyper::upgrade::on(response)).await.unwrap());
    // A masked binary frame on channel 0 (stdin) as a client writes it; the relay does not look inside.
    let frame = [0x82, 0x84, 1, 2, 3, 4, 1, b'h' ^ 2, b'i' ^ 3, b'\n' ^ 4];
    assert_eq!(echo(&mut io, &frame).await, frame);
    assert_eq!(echo(&mut io, b"more bytes after the first").await, b"more bytes after the first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_attach_and_port_forward_are_relayed_with_their_protocol_versions() {
    let cluster = Cluster::start().await.with_web_pod().await;
    let versions = ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"];
    let response = cluster
        .request(upgrade_request(
            "POST",
            "/api/v1/namespaces/default/pods/web/attach?stdin=true&stdout=true",
            None,
            Some(&versions),
        ))
        .await;
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["upgrade"], "SPDY/3.1");
    let seen = cluster.node.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/attach/default/web/app?stdin=1&stdout=1"));
    let offered: Vec<&str> =
        seen.headers.get_all("x-stream-protocol-version").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(offered, versions, "every offered version reaches the node");
    let mut io = TokioIo::new(within("the upgrade", hyper::upgrade::on(response)).await.unwrap());
    assert_eq!(echo(&mut io, b"\x80\x03\x00\x01spdy").await, b"\x80\x03\x00\x01spdy");

    let response = cluster
        .request(upgrade_request(
            "POST",
            "/api/v1/namespaces/default/pods/web/portforward",
            None,
            Some(&["portforward.k8s.io"]),
        ))
        .await;
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["x-stream-protocol-version"], "portforward.k8s.io");
    assert_eq!(cluster.node.last().target, "/portForward/default/web");
    let mut io = TokioIo::new(within("the upgrade", hyper::upgrade::on(response)).await.unwrap());
    assert_eq!(echo(&mut io, b"forwarded").await, b"forwarded");

    // The WebSocket form of port-forward, with ports named.
    let response = cluster
        .request(upgrade_request(
            "GET",
            "/api/v1/namespaces/default/pods/web/portforward?ports=8080&ports=9090",
            Some(("dGhlIHNhbXBsZSBub25jZQ==", "SPDY/3.1+portforward.k8s.io")),
            None,
        ))
        .await;
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(cluster.node.last().target, "/portForward/default/web?port=8080%2C9090");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_the_node_other_than_success_are_passed_through() {
    let cluster = Cluster::start().await.with_web_pod().await;
    // A refused upgrade keeps the node's code and body: kubectl falls back from WebSocket to SPDY on it.
    let response = cluster
        .request(upgrade_request(
            "GET",
            "/api/v1/namespaces/default/pods/web/exec?command=refuse&stdout=true",
            Some(("dGhlIHNhbXBsZSBub25jZQ==", "v5.channel.k8s.io")),
            None,
        ))
        .await;
    assert_eq!(response.status(), 404);
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["message"], "the node refused this upgrade");

    // A log the node answers with a Status keeps its code and Status.
    let (code, body) = cluster.get("/api/v1/namespaces/default/pods/web/log?container=setup").await;
    assert_eq!((code, body), (200, Value::String("one\ntwo\n".into())), "an init container may be named");
    assert_eq!(cluster.node.last().target, "/containerLogs/default/web/setup");
    cluster
        .create_pod(
            "multi",
            Some("node-1"),
            json!({"containers": [{"name": "missing", "image": "busybox"}, {"name": "waiting", "image": "busybox"}]}),
        )
        .await;
    let (code, body) = cluster.get("/api/v1/namespaces/default/pods/multi/log?container=missing").await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")), "{body}");
    assert_eq!(body["message"], "container \"missing\" has no logs on this node");
    // Plain text from the node becomes a Status, as kube-apiserver words it.
    let (code, body) = cluster.get("/api/v1/namespaces/default/pods/multi/log?container=waiting").await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")), "{body}");
    assert_eq!(body["message"], "container \"waiting\" in pod \"web\" is waiting to start");
}

async fn expect_status(cluster: &Cluster, path: &str, code: u16, reason: &str, message: &str) {
    let (got, body) = cluster.get(path).await;
    assert_eq!(got, code, "{path}: {body}");
    assert_eq!(body["kind"], "Status", "{path}: {body}");
    assert_eq!(body["reason"].as_str().unwrap_or(""), reason, "{path}: {body}");
    assert!(body["message"].as_str().unwrap().contains(message), "{path}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_api_server_refuses_itself_get_kube_apiservers_status() {
    let cluster = Cluster::start().await.with_web_pod().await;
    cluster
        .create_pod(
            "two",
            Some("node-1"),
            json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}),
        )
        .await;
    cluster.create_pod("pending", None, json!({"containers": [{"name": "app", "image": "x"}]})).await;
    cluster.create_pod("lost", Some("node-gone"), json!({"containers": [{"name": "app", "image": "x"}]})).await;
    cluster
        .create_node("node-down", json!([{"type": "InternalIP", "address": "127.0.0.1"}]), closed_port().await)
        .await;
    cluster.create_pod("down", Some("node-down"), json!({"containers": [{"name": "app", "image": "x"}]})).await;
    let asked_before = cluster.node.seen().len();

    let pods = "/api/v1/namespaces/default/pods";
    expect_status(&cluster, &format!("{pods}/ghost/log"), 404, "NotFound", "pods \"ghost\" not found").await;
    expect_status(&cluster, &format!("{pods}/ghost/exec?command=ls"), 404, "NotFound", "pods \"ghost\" not found")
        .await;
    expect_status(
        &cluster,
        &format!("{pods}/two/log"),
        400,
        "BadRequest",
        "a container name must be specified for pod two, choose one of: [a b]",
    )
    .await;
    expect_status(
        &cluster,
        &format!("{pods}/web/log?container=nope"),
        400,
        "BadRequest",
        "container nope is not valid for pod web",
    )
    .await;
    expect_status(&cluster, &format!("{pods}/two/exec?command=ls"), 400, "BadRequest", "choose one of: [a b]").await;
    expect_status(
        &cluster,
        &format!("{pods}/pending/exec?command=ls"),
        400,
        "BadRequest",
        "pod pending does not have a host assigned",
    )
    .await;
    expect_status(
        &cluster,
        &format!("{pods}/pending/portforward"),
        400,
        "BadRequest",
        "pod pending does not have a host assigned",
    )
    .await;
    expect_status(
        &cluster,
        &format!("{pods}/web/log?tailLines=-1"),
        422,
        "Invalid",
        "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0",
    )
    .await;
    expect_status(
        &cluster,
        &format!("{pods}/web/log?sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z"),
        422,
        "Invalid",
        "at most one of `sinceTime` or `sinceSeconds` may be specified",
    )
    .await;
    expect_status(&cluster, &format!("{pods}/web/log?limitBytes=0"), 422, "Invalid", "limitBytes: Invalid value: 0")
        .await;
    expect_status(&cluster, &format!("{pods}/web/log?tailLines=many"), 400, "BadRequest", "tailLines").await;
    // exec, attach and port-forward are upgrades only.
    expect_status(&cluster, &format!("{pods}/web/exec?command=ls"), 400, "BadRequest", "Upgrade request required")
        .await;
    expect_status(&cluster, &format!("{pods}/web/attach"), 400, "BadRequest", "Upgrade request required").await;
    expect_status(&cluster, &format!("{pods}/lost/log"), 404, "NotFound", "nodes \"node-gone\" not found").await;
    expect_status(&cluster, &format!("{pods}/down/log"), 500, "", "error dialing backend").await;
    assert_eq!(cluster.node.seen().len(), asked_before, "none of these reached the node");

    // A pod that is not scheduled has an empty log, as on kube-apiserver.
    let (code, body) = cluster.get(&format!("{pods}/pending/log")).await;
    assert_eq!((code, body), (200, Value::String(String::new())));

    let response = cluster.request(Request::delete(format!("{pods}/web/log")).body(Empty::new()).unwrap()).await;
    assert_eq!(response.status(), 405);
    let response = cluster.request(Request::put(format!("{pods}/web/exec")).body(Empty::new()).unwrap()).await;
    assert_eq!(response.status(), 405);

    // Anonymous clients are turned away before anything else.
    let mut anonymous = connect_as(cluster.server().addr, &cluster.pki, false).await;
    let response =
        anonymous.send_request(Request::get(format!("{pods}/web/log")).body(Empty::new()).unwrap()).await.unwrap();
    assert_eq!(response.status(), 401);
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_relay_ends_when_the_server_shuts_down() {
    let mut cluster = Cluster::start().await.with_web_pod().await;
    let response = cluster
        .request(upgrade_request(
            "GET",
            "/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true&stdout=true",
            Some(("dGhlIHNhbXBsZSBub25jZQ==", "v5.channel.k8s.io")),
            None,
        ))
        .await;
    assert_eq!(response.status(), 101);
    let mut io = TokioIo::new(within("the upgrade", hyper::upgrade::on(response)).await.unwrap());
    assert_eq!(echo(&mut io, b"ping").await, b"ping");
    let server = cluster.server.take().unwrap();
    within("the server to shut down", server.shutdown()).await;
    let mut rest = Vec::new();
    // The relay is gone: the connection ends (cleanly or not) instead of hanging.
    let _ = within("the relayed connection to end", io.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{rest:?}");
}

/// The real kubectl (CI sets `GANTRY_KUBECTL`; `scripts/fetch-clients` provides one). The end-to-end tests with a
/// real agent are in `crates/gantry/tests/agent_kubectl.rs`; this one checks kubectl's fallback to SPDY when a
/// node refuses the WebSocket upgrade, which a real agent never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_reads_logs_and_falls_back_to_spdy_when_the_node_refuses_websocket() {
    let Some(kubectl) = std::env::var_os("GANTRY_KUBECTL").filter(|k| !k.is_empty()) else {
        eprintln!("skipped: set GANTRY_KUBECTL to the real kubectl");
        return;
    };
    let cluster = Cluster::start().await.with_web_pod().await;
    let kubeconfig = cluster.server().kubeconfig.clone();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &'static [&'static str]| {
        let (kubectl, kubeconfig, home) = (kubectl.clone(), kubeconfig.clone(), home.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(kubectl)
                .env_clear()
                .env("HOME", home)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = run(&["logs", "web"]).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n", "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["exec", "web", "--", "refuse"]).await.unwrap();
    assert!(!out.status.success());
    let asked: Vec<(String, String)> = cluster.node.seen().into_iter().map(|s| (s.method, s.target)).collect();
    assert!(String::from_utf8_lossy(&out.stderr).contains("the node refused this upgrade"));
    // WebSocket first, then SPDY after the node's refusal was passed through.
    let exec = "/exec/default/web/app?command=refuse&stderr=1&stdout=1".to_string();
    assert_eq!(asked[asked.len() - 2..], [("GET".to_string(), exec.clone()), ("POST".to_string(), exec)]);
}
