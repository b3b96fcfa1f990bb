//! Test scaffolding: servers on 127.0.0.1 for the protocols (HTTP, HTTPS, gRPC health) and a runtime whose exec
//! answers are scripted. Every server's accept loop ends when its handle is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use gantry_runtime::RuntimeService;
use gantry_runtime::cri::*;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A server's address; the server stops when this is dropped.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    /// Headers of every request received, in order.
    pub(crate) requests: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Answer {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Full::new(body.into())).unwrap()
}

/// The test site: `/ok`, `/fail` (500), `/slow` (3 s), `/redirect-ok`, `/redirect-fail`, `/redirect-away` (to
/// another host), `/loop` (redirects forever), `/big` (1 MiB), `/host` (200 only with `Host: custom.example`).
async fn site(request: Request<Incoming>) -> Answer {
    let path = request.uri().path().to_string();
    match path.as_str() {
        "/ok" => answer(200, &[], "fine"),
        "/fail" => answer(500, &[], "broken"),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            answer(200, &[], "late")
        }
        "/redirect-ok" => answer(302, &[("location", "/ok")], ""),
        "/redirect-fail" => answer(301, &[("location", "fail")], ""),
        "/redirect-away" => answer(302, &[("location", "http://127.0.0.2:1/elsewhere")], ""),
        "/loop" => answer(307, &[("location", "/loop")], ""),
        "/big" => answer(200, &[], vec![b'x'; 1 << 20]),
        "/host" => {
            let host = request.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
            answer(if host == "custom.example" { 200 } else { 400 }, &[], host.to_string())
        }
        _ => answer(404, &[], "not found"),
    }
}

/// An HTTP/1.1 server of the test site, over TLS with a self-signed certificate when `tls`.
pub(crate) async fn http_server(tls: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let acceptor = tls.then(tls_acceptor);
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            let acceptor = acceptor.clone();
            connections.spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    seen.lock().unwrap().push((request.uri().path().to_string(), request.headers().clone()));
                    async move { Ok::<_, Infallible>(site(request).await) }
                });
                let builder = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else { return };
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    Server { addr, requests, task }
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A listener that accepts connections and never answers.
pub(crate) async fn silent_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Server { addr, requests: Default::default(), task }
}

/// A port nothing listens on.
pub(crate) async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A gRPC health server over HTTP/2 cleartext: service `""` and `"db"` are SERVING, `"down"` NOT_SERVING,
/// `"unimplemented"` answers Unimplemented, any other NOT_FOUND.
pub(crate) async fn grpc_health_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            connections.spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    seen.lock().unwrap().push((request.uri().path().to_string(), request.headers().clone()));
                    health_check(request)
                });
                let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Server { addr, requests, task }
}

type GrpcBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn health_check(request: Request<Incoming>) -> Result<Response<GrpcBody>, Infallible> {
    let mut body = request.into_body().collect().await.unwrap().to_bytes();
    let mut service = String::new();
    if body.len() >= 5 {
        body.advance(5);
        // Field 1, a short string: tag, one length byte, bytes.
        if body.len() >= 2 && body[0] == 0x0a {
            service = String::from_utf8_lossy(&body[2..2 + usize::from(body[1])]).into_owned();
        }
    }
    let status = match service.as_str() {
        "" | "db" => Ok(1u8),
        "down" => Ok(2),
        "unimplemented" => Err((12, "unknown service grpc.health.v1.Health")),
        _ => Err((5, "unknown service")),
    };
    let response = Response::builder().status(200).header("content-type", "application/grpc");
    let response = match status {
        Ok(serving) => {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let mut message = BytesMut::from(&[0u8, 0, 0, 0, 2, 0x08][..]);
            message.extend_from_slice(&[serving]);
            let body = Full::new(message.freeze()).with_trailers(async move { Some(Ok(trailers)) });
            response.body(body.boxed())
        }
        Err((code, message)) => response
            .header("grpc-status", code.to_string())
            .header("grpc-message", message.replace(' ', "%20"))
            .body(Full::new(Bytes::new()).boxed()),
    };
    Ok(response.unwrap())
}

/// A runtime whose `exec_sync` answers from a script: the exit codes queued for the command's first word, in
/// order (the last one repeats; 0 when none). A command named `slow` never ends before its timeout.
#[derive(Default)]
pub(crate) struct ScriptedRuntime {
    scripts: Mutex<HashMap<String, VecDeque<i32>>>,
    /// Every exec: the command's first word and when it came.
    pub(crate) calls: Mutex<Vec<(String, Instant)>>,
}

impl ScriptedRuntime {
    pub(crate) fn script(&self, command: &str, exit_codes: &[i32]) {
        self.scripts.lock().unwrap().insert(command.to_string(), exit_codes.iter().copied().collect());
    }

    pub(crate) fn calls_of(&self, command: &str) -> Vec<Instant> {
        self.calls.lock().unwrap().iter().filter(|(c, _)| c == command).map(|(_, at)| *at).collect()
    }
}

#[async_trait]
impl RuntimeService for ScriptedRuntime {
    async fn exec_sync(
        &self,
        _id: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecSyncResponse, RuntimeError> {
        let name = cmd.first().cloned().unwrap_or_default();
        self.calls.lock().unwrap().push((name.clone(), Instant::now()));
        if name == "slow" {
            tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(3600))).await;
            return Err(RuntimeError::WrongState { id: "c".into(), message: "command timed out".into() });
        }
        let exit_code = {
            let mut scripts = self.scripts.lock().unwrap();
            let queue = scripts.entry(name.clone()).or_default();
            if queue.len() > 1 { queue.pop_front().unwrap() } else { queue.front().copied().unwrap_or(0) }
        };
        Ok(ExecSyncResponse {
            stdout: format!("{name} says {exit_code}\n").into_bytes(),
            stderr: b"err\n".to_vec(),
            exit_code,
        })
    }

    async fn run_pod_sandbox(&self, _: &PodSandboxConfig) -> Result<String, RuntimeError> {
        unimplemented!()
    }
    async fn stop_pod_sandbox(&self, _: &str) -> Result<(), RuntimeError> {
        unimplemented!()
    }
    async fn remove_pod_sandbox(&self, _: &str) -> Result<(), RuntimeError> {
        unimplemented!()
    }
    async fn pod_sandbox_status(&self, _: &str) -> Result<PodSandboxStatus, RuntimeError> {
        unimplemented!()
    }
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>, RuntimeError> {
        unimplemented!()
    }
    async fn create_container(
        &self,
        _: &str,
        _: &ContainerConfig,
        _: &PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        unimplemented!()
    }
    async fn start_container(&self, _: &str) -> Result<(), RuntimeError> {
        unimplemented!()
    }
    async fn stop_container(&self, _: &str, _: i64) -> Result<(), RuntimeError> {
        unimplemented!()
    }
    async fn remove_container(&self, _: &str) -> Result<(), RuntimeError> {
        unimplemented!()
    }
    async fn list_containers(&self, _: &ContainerFilter) -> Result<Vec<ContainerStatus>, RuntimeError> {
        unimplemented!()
    }
    async fn container_status(&self, _: &str) -> Result<ContainerStatus, RuntimeError> {
        unimplemented!()
    }
    async fn container_stats(&self, _: &str) -> Result<ContainerStats, RuntimeError> {
        unimplemented!()
    }
    async fn reopen_container_log(&self, _: &str) -> Result<(), RuntimeError> {
        unimplemented!()
    }
    async fn exec(&self, _: &str, _: &[String], _: &StreamOptions) -> Result<StreamSession, RuntimeError> {
        unimplemented!()
    }
    async fn attach(&self, _: &str, _: &StreamOptions) -> Result<StreamSession, RuntimeError> {
        unimplemented!()
    }
}

/// A probe running `command` in the container.
pub(crate) fn exec_probe(command: &str) -> k8s_openapi::api::core::v1::Probe {
    k8s_openapi::api::core::v1::Probe {
        exec: Some(k8s_openapi::api::core::v1::ExecAction { command: Some(vec![command.to_string()]) }),
        period_seconds: Some(1),
        ..Default::default()
    }
}

/// A target on 127.0.0.1 declaring `http` as `port`.
pub(crate) fn local_target(port: u16) -> super::ProbeTarget {
    super::ProbeTarget {
        container_id: "c".to_string(),
        pod_ip: Some("127.0.0.1".to_string()),
        ports: vec![k8s_openapi::api::core::v1::ContainerPort {
            name: Some("http".to_string()),
            container_port: i32::from(port),
            ..Default::default()
        }],
    }
}
