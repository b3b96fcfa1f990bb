//! The node agent's HTTPS API against real containers: logs, exec and attach over WebSocket and SPDY,
//! port-forward over SPDY and SPDY-in-WebSocket, and client-certificate checks.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use gantry_agent::server::spdy::{Role, SpdyConnection};
use gantry_agent::server::websocket::WsBytes;
use gantry_agent::server::{ContainerEntry, NodeApiConfig, PodDirectory, PodEntry};
use gantry_apiserver::pki::{CertifiedKey, ClusterCa};
use gantry_runtime::cri::{ContainerConfig, ContainerState, PodSandboxConfig, RuntimeService};
use gantry_runtime::native::ShimCommand;
use gantry_runtime::testing::runtime::{TestNetwork, TestRuntime, patience, pod_sandbox, shell};
use http_body_util::BodyExt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

const API_SERVER_USER: &str = "kube-apiserver-kubelet-client";

fn shim() -> ShimCommand {
    ShimCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_gantry")), args: vec!["shim".into()] }
}

/// The pods of a test, as the pod workers would describe them.
#[derive(Default)]
struct Pods(Mutex<HashMap<(String, String), PodEntry>>);

impl PodDirectory for Pods {
    fn pod(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        self.0.lock().expect("lock").get(&(namespace.to_string(), name.to_string())).cloned()
    }
}

impl Pods {
    fn set(&self, name: &str, entry: PodEntry) {
        self.0.lock().expect("lock").insert(("default".to_string(), name.to_string()), entry);
    }
}

/// A runtime, a node API in front of it and the certificates to talk to it; everything stops when dropped.
struct Fixture {
    test: TestRuntime,
    pods: Arc<Pods>,
    addr: std::net::SocketAddr,
    ca: ClusterCa,
    server_cert: String,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(served) = self.served.take() {
            served.abort();
        }
    }
}

impl Fixture {
    async fn start(test: TestRuntime) -> Fixture {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ClusterCa::load_or_create(&dir.path().join("ca")).expect("CA");
        let pods = Arc::new(Pods::default());
        let config = NodeApiConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            pki_dir: dir.path().join("pki"),
            node_names: vec!["localhost".into(), "127.0.0.1".into()],
            client_ca_pem: ca.cert_pem().to_string(),
            allowed_users: vec![API_SERVER_USER.to_string()],
        };
        let runtime: Arc<dyn RuntimeService> = Arc::new(test.runtime.clone());
        let api =
            gantry_agent::server::bind(config, runtime, pods.clone() as Arc<dyn PodDirectory>).await.expect("bind");
        let addr = api.local_addr().expect("address");
        let server_cert = std::fs::read_to_string(dir.path().join("pki/kubelet.crt")).expect("serving certificate");
        let stop = CancellationToken::new();
        let served = tokio::spawn(api.serve(stop.clone()));
        Fixture { test, pods, addr, ca, server_cert, _dir: dir, stop, served: Some(served) }
    }

    /// Cancels the node API and waits for it to stop.
    async fn shutdown(mut self) {
        let served = self.served.take().expect("serving");
        self.stop.cancel();
        tokio::time::timeout(patience(), served).await.expect("the node API stops").expect("join");
    }

    fn client_cert(&self, user: &str) -> CertifiedKey {
        self.ca.issue_client(user, None).expect("client certificate")
    }

    async fn tls(
        &self,
        cert: Option<&CertifiedKey>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.server_cert.as_bytes()).expect("pem")).expect("root");
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let mut config = match cert {
            Some(cert) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("pem")],
                    PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key"),
                )
                .expect("client auth"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from("127.0.0.1").expect("server name").to_owned();
        connector.connect(name, tcp).await
    }

    async fn api_tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        self.tls(Some(&self.client_cert(API_SERVER_USER))).await.expect("TLS")
    }

    /// A GET as the API server; returns the status and the whole body.
    async fn get(&self, path: &str) -> (u16, String) {
        get_with(self.api_tls().await, path).await.expect("GET")
    }

    /// Runs `config` in a new host-network pod named `pod` and records it in the directory.
    async fn run(&self, pod: &str, config: ContainerConfig) -> (PodSandboxConfig, String, String) {
        let rt = &self.test.runtime;
        let (sandbox_config, sandbox) = self.test.host_pod(pod).await;
        let id = rt.create_container(&sandbox, &config, &sandbox_config).await.expect("create");
        rt.start_container(&id).await.expect("start");
        self.record(pod, &sandbox, &config.name, &id, None);
        (sandbox_config, sandbox, id)
    }

    fn record(&self, pod: &str, sandbox: &str, container: &str, id: &str, previous: Option<PathBuf>) {
        let log_path = self.test.logs().join(container).join(format!("{}.log", if previous.is_some() { 1 } else { 0 }));
        let entry = ContainerEntry {
            container_id: Some(id.to_string()),
            log_path: Some(log_path),
            previous_log_path: previous,
            waiting_reason: None,
        };
        let containers = BTreeMap::from([(container.to_string(), entry)]);
        self.pods.set(pod, PodEntry { uid: format!("uid-{pod}"), sandbox_id: Some(sandbox.to_string()), containers });
    }

    async fn wait_exited(&self, id: &str) {
        let deadline = Instant::now() + patience();
        loop {
            let status = self.test.runtime.container_status(id).await.expect("status");
            if status.state == ContainerState::Exited {
                return;
            }
            assert!(Instant::now() < deadline, "container {id} did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn websocket(
        &self,
        path: &str,
        protocol: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut request = format!("wss://127.0.0.1:{}{path}", self.addr.port()).into_client_request().expect("request");
        request.headers_mut().insert("sec-websocket-protocol", protocol.parse().expect("header"));
        let (ws, response) = tokio_tungstenite::client_async(request, self.api_tls().await).await.expect("handshake");
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        ws
    }

    /// A SPDY/3.1 upgrade as kubectl's fallback makes it.
    async fn spdy(&self, path: &str, protocols: &str) -> SpdyConnection {
        let mut tls = self.api_tls().await;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
             X-Stream-Protocol-Version: {protocols}\r\nContent-Length: 0\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await.expect("write");
        let head = read_head(&mut tls).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        SpdyConnection::new(tls, Role::Client)
    }
}

async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = io.read_u8().await.expect("response head");
        head.push(byte);
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn get_with<S>(io: S, path: &str) -> Result<(u16, String), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    let driver = tokio::spawn(conn);
    let request = http::Request::get(path)
        .header("host", "127.0.0.1")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(patience(), response.into_body().collect())
        .await
        .expect("the body ends in time")?
        .to_bytes();
    driver.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Reads channel messages until the status arrives; returns stdout, stderr and the status.
async fn collect_channels<S>(ws: &mut S) -> (String, String, serde_json::Value)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + patience();
    loop {
        let message = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no status; stdout {:?}", String::from_utf8_lossy(&stdout)))
            .expect("the session ended without a status")
            .expect("message");
        let Message::Binary(data) = message else { continue };
        match data.first() {
            Some(1) => stdout.extend_from_slice(&data[1..]),
            Some(2) => stderr.extend_from_slice(&data[1..]),
            Some(3) => {
                let status = serde_json::from_slice(&data[1..]).expect("status JSON");
                return (String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into(), status);
            }
            _ => {}
        }
    }
}

fn query_command(command: &[&str]) -> String {
    command
        .iter()
        .map(|c| format!("command={}", form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_served_with_tail_timestamps_previous_and_the_kubelets_errors() {
    let Some(test) = TestRuntime::or_skip(shim()) else { return };
    let fx = Fixture::start(test).await;
    assert_eq!(fx.get("/healthz").await, (200, "ok".to_string()));

    let (sandbox_config, sandbox, first) =
        fx.run("printer", shell("main", "for i in 1 2 3 4 5; do echo line$i; done")).await;
    fx.wait_exited(&first).await;
    assert_eq!(fx.get("/containerLogs/default/printer/main?tailLines=2").await, (200, "line4\nline5\n".into()));
    let (code, stamped) = fx.get("/containerLogs/default/printer/main?tailLines=1&timestamps=true").await;
    assert_eq!(code, 200);
    let (stamp, content) = stamped.split_once(' ').expect("timestamp and content");
    assert!(stamp.parse::<jiff::Timestamp>().is_ok() && stamp.ends_with('Z'), "{stamped:?}");
    assert_eq!(content, "line5\n");
    // The whole log ends with the container's lines (the shim may have logged warnings on stderr before them).
    let (_, full) = fx.get("/containerLogs/default/printer/main").await;
    assert!(full.ends_with("line1\nline2\nline3\nline4\nline5\n"), "{full:?}");
    assert_eq!(fx.get("/containerLogs/default/printer/main?limitBytes=8").await.1.as_bytes(), &full.as_bytes()[..8]);

    // No previous attempt yet.
    let (code, body) = fx.get("/containerLogs/default/printer/main?previous=true").await;
    assert_eq!(code, 400);
    assert!(body.contains("previous terminated container \\\"main\\\" in pod \\\"printer\\\" not found"), "{body}");

    // A restart: the first attempt's log becomes the previous one.
    let mut again = shell("main", "echo second");
    again.attempt = 1;
    again.log_path = PathBuf::from("main/1.log");
    let second = fx.test.runtime.create_container(&sandbox, &again, &sandbox_config).await.expect("create");
    fx.test.runtime.start_container(&second).await.expect("start");
    fx.record("printer", &sandbox, "main", &second, Some(fx.test.logs().join("main/0.log")));
    fx.wait_exited(&second).await;
    assert_eq!(fx.get("/containerLogs/default/printer/main?tailLines=1").await.1, "second\n");
    assert_eq!(fx.get("/containerLogs/default/printer/main?previous=true&tailLines=1").await.1, "line5\n");

    let (code, body) = fx.get("/containerLogs/default/nobody/main").await;
    assert_eq!(code, 404);
    assert!(body.contains("pods \\\"nobody\\\" not found") || body.contains("pod \\\"nobody\\\" not found"), "{body}");
    let waiting = ContainerEntry { waiting_reason: Some("ContainerCreating".into()), ..Default::default() };
    fx.pods.set(
        "waiting",
        PodEntry { uid: "u".into(), sandbox_id: None, containers: BTreeMap::from([("c".to_string(), waiting)]) },
    );
    let (code, body) = fx.get("/containerLogs/default/waiting/c").await;
    assert_eq!(code, 400);
    assert!(
        body.contains("container \\\"c\\\" in pod \\\"waiting\\\" is waiting to start: ContainerCreating"),
        "{body}"
    );
    fx.test.runtime.remove_pod_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_log_streams_new_lines_and_ends_when_the_container_exits() {
    let Some(test) = TestRuntime::or_skip(shim()) else { return };
    let fx = Fixture::start(test).await;
    let script = "echo start; sleep 1; for i in 1 2 3; do echo line$i; sleep 0.3; done";
    let (_, sandbox, _) = fx.run("follower", shell("main", script)).await;
    let started = Instant::now();
    let (code, body) = fx.get("/containerLogs/default/follower/main?follow=true").await;
    assert_eq!(code, 200);
    assert!(body.ends_with("line1\nline2\nline3\n"), "{body:?}");
    assert!(started.elapsed() >= Duration::from_millis(500), "the follow ended before the container did");
    fx.test.runtime.remove_pod_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_websocket_relays_streams_and_the_exit_code() {
    let Some(test) = TestRuntime::or_skip(shim()) else { return };
    let fx = Fixture::start(test).await;
    let (_, sandbox, _) = fx.run("execer", shell("main", "exec sleep 1000")).await;

    let command = query_command(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let mut ws = fx
        .websocket(&format!("/exec/default/execer/main?{command}&stdout=true&stderr=true"), "v5.channel.k8s.io")
        .await;
    let (stdout, stderr, status) = collect_channels(&mut ws).await;
    // Standard error may begin with the shim's own warnings (libcontainer's, on hosts without some cgroups).
    assert_eq!(stdout, "out\n");
    assert!(stderr.ends_with("err\n"), "{stderr:?}");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "3"}));

    // Standard input, closed with v5's close signal.
    let command = query_command(&["cat"]);
    let mut ws =
        fx.websocket(&format!("/exec/default/execer/main?{command}&stdin=true&stdout=true"), "v5.channel.k8s.io").await;
    ws.send(Message::Binary(Bytes::from_static(b"\x00hi\n"))).await.expect("stdin");
    ws.send(Message::Binary(Bytes::from_static(b"\xff\x00"))).await.expect("close stdin");
    let (stdout, _, status) = collect_channels(&mut ws).await;
    assert_eq!(stdout, "hi\n");
    assert_eq!(status, serde_json::json!({"metadata": {}, "status": "Success"}));
    fx.test.runtime.remove_pod_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_terminal_over_websocket_resizes_it() {
    let Some(test) = TestRuntime::or_skip(shim()) else { return };
    let fx = Fixture::start(test).await;
    let (_, sandbox, _) = fx.run("terminal", shell("main", "exec sleep 1000")).await;
    let script = "read line; until size=$(stty size 2>/dev/null) && [ \"$size\" != '0 0' ]; do sleep 0.01; done; \
                  echo \"$size\"; echo \"got $line\"; exit 5";
    let command = query_command(&["sh", "-c", script]);
    let path = format!("/exec/default/terminal/main?{command}&stdin=true&stdout=true&tty=true");
    let mut ws = fx.websocket(&path, "v4.channel.k8s.io").await;
    ws.send(Message::Binary(Bytes::from_static(b"\x04{\"Width\":91,\"Height\":17}"))).await.expect("resize");
    ws.send(Message::Binary(Bytes::from_static(b"\x00hello\n"))).await.expect("stdin");
    let (stdout, stderr, status) = collect_channels(&mut ws).await;
    assert!(stdout.contains("17 91"), "{stdout:?}");
    assert!(stdout.contains("got hello"), "{stdout:?}");
    assert!(stderr.is_empty());
    assert_eq!(status["details"]["causes"][0]["message"], "5");
    fx.test.runtime.remove_pod_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_over_websocket_joins_the_main_process() {
    let Some(test) = TestRuntime::or_skip(shim()) else { return };
    let fx = Fixture::start(test).await;
    let mut config = shell("main", "while read line; do echo \"got $line\"; done; echo done");
    config.stdin = true;
    config.stdin_once = true;
    let (_, sandbox, _) = fx.run("attached", config).await;
    let mut ws =
        fx.websocket("/attach/default/attached/main?stdin=true&stdout=true&stderr=true", "v5.channel.k8s.io").await;
    ws.send(Message::Binary(Bytes::from_static(b"\x00one\n"))).await.expect("stdin");
    ws.send(Message::Binary(Bytes::from_static(b"\xff\x00"))).await.expect("close stdin");
    let (stdout, _, status) = collect_channels(&mut ws).await;
    assert_eq!(stdout, "got one\ndone\n");
    assert_eq!(status["status"], "Success");
    fx.test.runtime.remove_pod_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_spdy_relays_streams_and_the_exit_code() {
    let Some(test) = TestRuntime::or_skip(shim()) else { return };
    let fx = Fixture::start(test).await;
    let (_, sandbox, _) = fx.run("spdy", shell("main", "exec sleep 1000")).await;
    let command = query_command(&["sh", "-c", "cat; echo bad >&2; exit 2"]);
    let path = format!("/exec/default/spdy/main?{command}&stdin=true&stdout=true&stderr=true");
    let conn = fx.spdy(&path, "v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io").await;
    let stream = |kind: &str| vec![("streamtype".to_string(), kind.to_string())];
    let mut error = conn.open(stream("error")).await.expect("error stream");
    let stdin = conn.open(stream("stdin")).await.expect("stdin stream");
    let stdout = conn.open(stream("stdout")).await.expect("stdout stream");
    let stderr = conn.open(stream("stderr")).await.expect("stderr stream");
    stdin.writer().write(b"abc\n").await.expect("write");
    stdin.writer().close().await.expect("close");
    let read_all = |mut s: gantry_agent::server::spdy::SpdyStream| async move {
        let mut out = Vec::new();
        while let Some(chunk) = tokio::time::timeout(patience(), s.read()).await.expect("in time") {
            out.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let (out, err) = tokio::join!(read_all(stdout), read_all(stderr));
    assert_eq!(out, "abc\n");
    assert!(err.ends_with("bad\n"), "{err:?}");
    let mut status = Vec::new();
    while let Some(chunk) = tokio::time::timeout(patience(), error.read()).await.expect("in time") {
        status.extend_from_slice(&chunk);
    }
    let status: serde_json::Value = serde_json::from_slice(&status).expect("status JSON");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "2");
    fx.test.runtime.remove_pod_sandbox(&sandbox).await.expect("remove");
}

/// One forwarded HTTP GET through a port-forward connection; `None` while the server does not answer yet.
async fn forwarded_get(conn: &SpdyConnection, request_id: u32, port: u16) -> Option<String> {
    let headers = |kind: &str| {
        vec![
            ("streamtype".to_string(), kind.to_string()),
            ("port".to_string(), port.to_string()),
            ("requestid".to_string(), request_id.to_string()),
        ]
    };
    let mut error = conn.open(headers("error")).await.expect("error stream");
    let mut data = conn.open(headers("data")).await.expect("data stream");
    data.writer().write(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
    let mut response = Vec::new();
    while let Some(chunk) = tokio::time::timeout(patience(), data.read()).await.expect("in time") {
        response.extend_from_slice(&chunk);
    }
    let _ = data.writer().close().await;
    if response.is_empty() {
        let message = tokio::time::timeout(patience(), error.read()).await.expect("in time");
        eprintln!("port-forward not ready: {:?}", message.map(|m| String::from_utf8_lossy(&m).into_owned()));
        return None;
    }
    Some(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_reaches_a_port_inside_the_pods_network_over_spdy_and_websocket() {
    let network = TestNetwork::new(47);
    let Some(test) = TestRuntime::with_network_or_skip(shim(), &network) else { return };
    let fx = Fixture::start(test).await;
    let rt = &fx.test.runtime;
    let sandbox_config = pod_sandbox("web", &fx.test.logs());
    let sandbox = rt.run_pod_sandbox(&sandbox_config).await.expect("sandbox");
    let server =
        shell("web", "mkdir -p /tmp/www && echo hello-pod > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www");
    let id = rt.create_container(&sandbox, &server, &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");
    fx.record("web", &sandbox, "web", &id, None);

    let conn = fx.spdy("/portForward/default/web", "portforward.k8s.io").await;
    let deadline = Instant::now() + patience();
    let mut request_id = 0;
    let response = loop {
        if let Some(response) = forwarded_get(&conn, request_id, 8080).await {
            break response;
        }
        assert!(Instant::now() < deadline, "the pod's server never answered");
        request_id += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(response.contains("hello-pod"), "{response}");
    // The port is the pod's, not the node's: nothing listens on the node's 8080 for this test.
    conn.close().await;

    let ws = fx.websocket("/portForward/default/web", "SPDY/3.1+portforward.k8s.io").await;
    let tunnelled = SpdyConnection::new(WsBytes::new(ws), Role::Client);
    let response = forwarded_get(&tunnelled, 0, 8080).await.expect("a response through the tunnel");
    assert!(response.contains("hello-pod"), "{response}");

    // A closed port is reported on the error stream.
    let headers = |kind: &str| {
        vec![
            ("streamtype".to_string(), kind.to_string()),
            ("port".to_string(), "9".to_string()),
            ("requestid".to_string(), "7".to_string()),
        ]
    };
    let mut error = tunnelled.open(headers("error")).await.expect("error stream");
    let _data = tunnelled.open(headers("data")).await.expect("data stream");
    let message = tokio::time::timeout(patience(), error.read()).await.expect("in time").expect("an error message");
    assert!(String::from_utf8_lossy(&message).contains("error forwarding port 9"), "{message:?}");
    rt.remove_pod_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_issued_by_the_cluster_ca_and_allowed() {
    let Some(test) = TestRuntime::or_skip(shim()) else { return };
    let fx = Fixture::start(test).await;
    let anonymous = fx.tls(None).await.expect("TLS without a client certificate");
    assert_eq!(get_with(anonymous, "/healthz").await.expect("GET").0, 401);
    let stranger = fx.tls(Some(&fx.client_cert("someone-else"))).await.expect("TLS");
    let (code, body) = get_with(stranger, "/containerLogs/default/x/y").await.expect("GET");
    assert_eq!(code, 403);
    assert!(body.contains("Forbidden (user=someone-else"), "{body}");
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other_ca = ClusterCa::load_or_create(other_dir.path()).expect("another CA");
    let forged = other_ca.issue_client(API_SERVER_USER, None).expect("certificate");
    let refused = match fx.tls(Some(&forged)).await {
        // TLS 1.3 reports the client certificate's rejection on the first read.
        Ok(tls) => get_with(tls, "/healthz").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a certificate from another CA was accepted");
    assert_eq!(fx.get("/healthz").await.0, 200);
    fx.shutdown().await;
}
