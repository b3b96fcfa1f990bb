//! `GET /gantry/v1/namespaces/{ns}/pods/{name}/scheduling` over real HTTPS: what the server answers with and
//! without a scheduler's explainer installed, for recorded and unrecorded pods, and for anonymous clients.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

use std::net::SocketAddr;
use std::sync::Arc;

use gantry_apiserver::objects::WriteOptions;
use gantry_apiserver::{RunningServer, SchedulingExplainer, ServerConfig};
use gantry_store::sqlite::{SqliteConfig, SqliteStore};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "why-token";

/// The hook's contract: a document for the pods the scheduler remembers, nothing for the others.
struct Remembers(Vec<(&'static str, &'static str)>);

impl SchedulingExplainer for Remembers {
    fn last_attempt(&self, namespace: &str, name: &str) -> Option<Value> {
        self.0.iter().any(|(ns, n)| *ns == namespace && *n == name).then(|| {
            json!({"kind": "SchedulingAttempt", "apiVersion": "gantry.dev/v1alpha1",
                   "pod": {"namespace": namespace, "name": name}, "result": {"placed": {"node": "node-1"}}})
        })
    }

    fn attempts_kept(&self) -> usize {
        256
    }
}

struct Cluster {
    server: RunningServer,
    ca_pem: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, format!("{TOKEN},alice,uid-1\n")).unwrap();
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("state.db"))).unwrap();
    let shutdown = CancellationToken::new();
    let config = ServerConfig { token_file: Some(tokens), ..ServerConfig::loopback(dir.path()) };
    let server = gantry_apiserver::start(config, Arc::new(store), shutdown.clone()).await.unwrap();
    let ca_pem = std::fs::read_to_string(dir.path().join("pki").join("ca.crt")).unwrap();
    Cluster { server, ca_pem, shutdown, _dir: dir }
}

impl Cluster {
    /// One HTTP/1.1 request with rustls, trusting the cluster CA, authenticated by the token if given: below any
    /// client library, so that what is checked is the server's answer itself.
    async fn request(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        raw_request(self.server.addr, &self.ca_pem, method, path, token).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, Some(TOKEN)).await
    }

    async fn create_pod(&self, name: &str) {
        let pods = self.server.api.registry.by_plural("", "v1", "pods").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let options = WriteOptions { field_manager: "test".into(), ..Default::default() };
        self.server.api.create(pods, Some("default"), pod, &options).await.unwrap();
    }
}

async fn raw_request(addr: SocketAddr, ca_pem: &str, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(ServerName::from(addr.ip()), tcp).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // The server may close without a TLS close_notify; what was read by then is the whole reply.
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP reply: {text:?}"));
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {head}"));
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "a complete body was expected: {head}");
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {body:?}"));
    (code, body)
}

const WEB: &str = "/gantry/v1/namespaces/default/pods/web/scheduling";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_attempt_is_served_as_the_scheduler_gives_it() {
    let cluster = cluster().await;
    cluster.server.api.set_scheduling_explainer(Arc::new(Remembers(vec![("default", "web")]))).unwrap();
    let (code, body) = cluster.get(WEB).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, Remembers(vec![("default", "web")]).last_attempt("default", "web").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_scheduler_in_the_process_the_answer_is_service_unavailable() {
    let cluster = cluster().await;
    let (code, body) = cluster.get(WEB).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "ServiceUnavailable");
    assert!(body["message"].as_str().unwrap().contains("--disable-scheduler"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_without_a_recorded_attempt_is_not_found_with_the_reasons_why() {
    let cluster = cluster().await;
    cluster.server.api.set_scheduling_explainer(Arc::new(Remembers(vec![("default", "web")]))).unwrap();
    cluster.create_pod("idle").await;
    let (code, body) = cluster.get("/gantry/v1/namespaces/default/pods/idle/scheduling").await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["reason"], "NotFound");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("no scheduling attempt of pod default/idle is recorded by this server's scheduler"));
    assert!(message.contains("the last 256 attempts"), "{message}");
    // A pod that does not exist is reported as such, not as a gap in the scheduler's memory.
    let (code, body) = cluster.get("/gantry/v1/namespaces/default/pods/ghost/scheduling").await;
    assert_eq!((code, body["message"].as_str()), (404, Some("pods \"ghost\" not found")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_are_unauthorized_as_everywhere_else() {
    let cluster = cluster().await;
    cluster.server.api.set_scheduling_explainer(Arc::new(Remembers(vec![("default", "web")]))).unwrap();
    let (code, body) = cluster.request("GET", WEB, None).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["reason"], "Unauthorized");
    let (code, _) = cluster.request("GET", WEB, Some("not-a-token")).await;
    assert_eq!(code, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_get_on_the_scheduling_path_is_served() {
    let cluster = cluster().await;
    let explainer = Arc::new(Remembers(vec![("default", "web")]));
    cluster.server.api.set_scheduling_explainer(explainer.clone()).unwrap();
    assert!(cluster.server.api.set_scheduling_explainer(explainer).is_err(), "the first explainer stays");
    let (code, body) = cluster.request("DELETE", WEB, Some(TOKEN)).await;
    assert_eq!((code, body["reason"].as_str()), (405, Some("MethodNotAllowed")), "{body}");
    let (code, body) = cluster.get("/gantry/v1/namespaces/default/pods/web/logs").await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")), "{body}");
}
