//! `api-bench`: the API server measured as its clients see it. It starts Gantry's API server in-process on
//! `127.0.0.1:0` over a fresh embedded SQLite store (default durability: every commit group fsynced), then
//! talks to it over HTTPS on loopback the way kubectl and client-go do: HTTP/2 negotiated with ALPN, the admin
//! client certificate, one long-lived connection per client. Build with `--release`:
//!
//! ```text
//! cargo run --release -p gantry-apiserver --bin api-bench
//! cargo run --release -p gantry-apiserver --bin api-bench -- --only list --pods 10000
//! ```
//!
//! The server runs on its own multi-threaded runtime and the clients on another, as two processes would; both
//! share the machine's cores, so the figures include the clients' own TLS and HTTP/2 work.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use gantry_apiserver::RunningServer;
use gantry_store::Store;
use gantry_store::sqlite::{SqliteConfig, SqliteStore};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
#[command(about = "Measures Gantry's API server over HTTPS on loopback, as kubectl and client-go talk to it")]
struct Args {
    /// Concurrent clients (one HTTP/2 connection each) for the concurrent create and GET workloads.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long each timed workload runs: `5`, `5s`, `500ms`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop a create workload after this many creates even if `--duration` has not passed.
    #[arg(long, default_value_t = 20_000)]
    max_creates: u64,
    /// What the create and GET workloads write: small pods (the realistic case) or ~300-byte ConfigMaps.
    #[arg(long, value_enum, default_value_t = ObjectKind::Pod)]
    object: ObjectKind,
    /// Objects created for the GET workload to read.
    #[arg(long, default_value_t = 1_000)]
    get_objects: usize,
    /// Pods in the namespace that is listed.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Timed LIST requests (each of the full list and of the paged list).
    #[arg(long, default_value_t = 20)]
    list_runs: usize,
    /// Page size of the paged LIST.
    #[arg(long, default_value_t = 500)]
    page_size: usize,
    /// Concurrent watchers (one connection each) in the watch fan-out workload.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Changes made one at a time in the watch fan-out workload.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Run only these workloads (comma-separated or repeated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Workload>,
    /// Where the data directory (store, pki, kubeconfig) goes; a fresh temporary directory by default. Must be
    /// empty or absent, so that every run starts from an empty store.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Worker threads of the server's runtime (the machine's cores by default, as the gantry binary runs).
    #[arg(long)]
    server_threads: Option<usize>,
    /// Worker threads of the clients' runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Print each timed workload's latency over time (count, p99 and max per 250 ms) to stderr, to tell
    /// periodic stalls (checkpoints, compaction) from steady queueing.
    #[arg(long)]
    timeline: bool,
}

/// Set from `--timeline`; read by every timed workload.
static TIMELINE: AtomicBool = AtomicBool::new(false);

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum ObjectKind {
    /// A pod with one container, ~1 KiB of JSON as kubectl sends it.
    Pod,
    /// A ConfigMap of ~300 bytes.
    Configmap,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Creates from one client.
    #[value(name = "create-1")]
    Create1,
    /// Creates from `--clients` concurrent clients.
    #[value(name = "create-n")]
    CreateN,
    /// GETs of single objects from `--clients` concurrent clients.
    Get,
    /// LIST of `--pods` pods, whole and paged.
    List,
    /// Watch fan-out to `--watchers` watchers.
    Watch,
    /// Where a create's time goes, from the outside: `GET /version` (TLS, HTTP/2, routing) and `dryRun=All`
    /// creates (decoding, admission, managed fields, encoding, but no store write and no wait for the watch
    /// cache) from `--clients` clients, beside real creates.
    Breakdown,
    /// CustomResourceDefinitions: from a definition's create to the first object of its kind created.
    Crd,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("not a duration: {text:?} (try 5s or 500ms)"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("a duration must be positive: {text:?}"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

// ---------------------------------------------------------------------------------------------------------------
// The client: hyper-util's pooled client over tokio-rustls, one connection per `ApiClient`.

/// A TLS stream that tells hyper which protocol ALPN chose, so that the pool treats it as HTTP/2.
struct TlsConn(tokio_rustls::client::TlsStream<TcpStream>);

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.0.get_ref().1.alpn_protocol() == Some(b"h2") { connected.negotiated_h2() } else { connected }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Connects to the server under test whatever the URI says, with the cluster CA and the admin certificate.
#[derive(Clone)]
struct TlsConnector {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsConn>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TlsConn>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (addr, tls) = (self.addr, self.tls.clone());
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(ServerName::IpAddress(addr.ip().into()), tcp).await?;
            Ok(TokioIo::new(TlsConn(stream)))
        })
    }
}

/// The TLS client configuration kubectl's admin kubeconfig amounts to: trust the cluster CA, present the admin
/// certificate, offer only HTTP/2.
fn client_tls(data_dir: &Path) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let pki = data_dir.join("pki");
    let read =
        |name: &str| std::fs::read(pki.join(name)).with_context(|| format!("reading {}", pki.join(name).display()));
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read("ca.crt")?) {
        roots.add(ca.context("parsing ca.crt")?).context("trusting ca.crt")?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read("admin.crt")?).collect::<Result<_, _>>().context("parsing admin.crt")?;
    let key = PrivateKeyDer::from_pem_slice(&read("admin.key")?).context("parsing admin.key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("the admin client certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One API client: its own pool, hence its own HTTP/2 connection, as one client-go `Clientset` has.
#[derive(Clone)]
struct ApiClient {
    http: Client<TlsConnector, Full<Bytes>>,
    base: String,
}

impl ApiClient {
    fn new(addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> ApiClient {
        let connector = TlsConnector { addr, tls: tls.clone() };
        let http = Client::builder(TokioExecutor::new()).http2_only(true).build(connector);
        ApiClient { http, base: format!("https://{addr}") }
    }

    /// Opens the connection (TLS handshake, HTTP/2 preface) and checks that HTTP/2 was negotiated, so that
    /// timed requests run on a warm connection as a long-lived client's do.
    async fn connect(addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> anyhow::Result<ApiClient> {
        let client = ApiClient::new(addr, tls);
        let response = client.send(Method::GET, "/version", None).await?;
        ensure!(response.version() == Version::HTTP_2, "the server answered over {:?}, not HTTP/2", response.version());
        ensure!(response.status() == StatusCode::OK, "GET /version answered {}", response.status());
        response.into_body().collect().await.context("reading /version")?;
        Ok(client)
    }

    async fn send(&self, method: Method, path: &str, body: Option<Bytes>) -> anyhow::Result<Response<Incoming>> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "api-bench/0.1");
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(body.unwrap_or_default())).context("building a request")?;
        self.http.request(request).await.with_context(|| format!("request to {path}"))
    }

    /// Sends a request and reads the whole answer, which must have status `want`.
    async fn call(&self, method: Method, path: &str, body: Option<Bytes>, want: StatusCode) -> anyhow::Result<Bytes> {
        let response = self.send(method.clone(), path, body).await?;
        let status = response.status();
        let body = response.into_body().collect().await.with_context(|| format!("reading {path}"))?.to_bytes();
        if status != want {
            bail!("{method} {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }
}

async fn connect_many(addr: SocketAddr, tls: &tokio_rustls::TlsConnector, n: usize) -> anyhow::Result<Vec<ApiClient>> {
    let handshakes: Vec<_> = (0..n)
        .map(|_| {
            let tls = tls.clone();
            tokio::spawn(async move { ApiClient::connect(addr, &tls).await })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for handshake in handshakes {
        clients.push(handshake.await??);
    }
    Ok(clients)
}

// ---------------------------------------------------------------------------------------------------------------
// Objects.

/// A pod as `kubectl create -f` sends it for a typical single-container workload.
fn pod(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "web", "tier": "frontend", "pod-template-hash": "5d8f7c9b6d"},
            "annotations": {"kubectl.kubernetes.io/default-container": "web"}
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.example.com/team/web:1.27.3",
                "imagePullPolicy": "IfNotPresent",
                "args": ["--listen=:8080", "--log-level=info"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {"name": "LOG_FORMAT", "value": "json"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"}
                },
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                    "periodSeconds": 10,
                    "timeoutSeconds": 1
                },
                "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "volumes": [{"name": "config", "configMap": {"name": "web-config"}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler"
        }
    })
}

/// A ConfigMap of about 300 bytes.
fn config_map(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "data": {"settings.yaml": "listen: \":8080\"\nlogLevel: info\nfeatures:\n  cache: true\n  \
                  compression: gzip\nupstreams:\n- name: api\n  url: http://api.default.svc:8080\n  timeout: 5s\n"}
    })
}

impl ObjectKind {
    fn plural(self) -> &'static str {
        match self {
            ObjectKind::Pod => "pods",
            ObjectKind::Configmap => "configmaps",
        }
    }

    fn body(self, namespace: &str, name: &str) -> Bytes {
        let value = match self {
            ObjectKind::Pod => pod(namespace, name),
            ObjectKind::Configmap => config_map(namespace, name),
        };
        Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
    }

    fn collection(self, namespace: &str) -> String {
        format!("/api/v1/namespaces/{namespace}/{}", self.plural())
    }
}

async fn create_namespace(client: &ApiClient, name: &str) -> anyhow::Result<()> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let body = Bytes::from(serde_json::to_vec(&body)?);
    client.call(Method::POST, "/api/v1/namespaces", Some(body), StatusCode::CREATED).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring.

/// One workload's figures.
#[derive(Clone, Debug, Default)]
struct Figures {
    ops: usize,
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// The cores this process used meanwhile, when measured.
    cpu: Option<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn figures(elapsed: Duration, mut latencies: Vec<Duration>) -> Figures {
    latencies.sort_unstable();
    Figures {
        ops: latencies.len(),
        ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        cpu: None,
    }
}

/// Runs one task per client, each calling `op(client, index)` in a closed loop until `duration` has passed or
/// `max_ops` calls were started in all; the figures are over all calls.
async fn timed<F, Fut>(clients: usize, duration: Duration, max_ops: u64, op: F) -> anyhow::Result<Figures>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let started_ops = Arc::new(AtomicU64::new(0));
    let cpu = cpu_usage();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = Arc::clone(&op);
            let started_ops = Arc::clone(&started_ops);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while started.elapsed() < duration && started_ops.fetch_add(1, Ordering::Relaxed) < max_ops {
                    let t = Instant::now();
                    op(c, i).await?;
                    latencies.push((t.duration_since(started), t.elapsed()));
                    i += 1;
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    if TIMELINE.load(Ordering::Relaxed) {
        print_timeline(&all);
    }
    let mut figures = figures(started.elapsed(), all.into_iter().map(|(_, latency)| latency).collect());
    figures.cpu = Some(cpu_usage().since(&cpu, Some(figures.ops)));
    Ok(figures)
}

/// Prints, per 250 ms of a workload (by when calls started), how many calls started and their p99 and max.
fn print_timeline(calls: &[(Duration, Duration)]) {
    const BUCKET: Duration = Duration::from_millis(250);
    let mut buckets: BTreeMap<u128, Vec<Duration>> = BTreeMap::new();
    for (start, latency) in calls {
        buckets.entry(start.as_millis() / BUCKET.as_millis()).or_default().push(*latency);
    }
    for (bucket, mut latencies) in buckets {
        latencies.sort_unstable();
        let (p99, max) = (percentile(&latencies, 0.99), latencies.last().copied().unwrap_or_default());
        eprintln!(
            "  {:>6} ms: {:>5} calls, p99 {}, max {}",
            bucket * BUCKET.as_millis(),
            latencies.len(),
            ms(p99),
            ms(max)
        );
    }
}

/// Creates `count` objects named `{prefix}{i}` in `namespace`, spread over all `clients`.
async fn fill(
    clients: &[ApiClient],
    kind: ObjectKind,
    namespace: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Figures> {
    let clients = Arc::new(clients.to_vec());
    let collection = kind.collection(namespace);
    let (namespace, prefix) = (namespace.to_string(), prefix.to_string());
    // Fast clients create more than slow ones: one shared counter keeps the names exactly 0..count.
    let next = Arc::new(AtomicU64::new(0));
    timed(clients.len(), Duration::from_secs(3600), count as u64, move |c, _| {
        let client = clients[c].clone();
        let name = format!("{prefix}{}", next.fetch_add(1, Ordering::Relaxed));
        let body = kind.body(&namespace, &name);
        let collection = collection.clone();
        async move { client.call(Method::POST, &collection, Some(body), StatusCode::CREATED).await.map(|_| ()) }
    })
    .await
}

async fn creates(clients: &[ApiClient], kind: ObjectKind, namespace: &str, args: &Args) -> anyhow::Result<Figures> {
    let clients = Arc::new(clients.to_vec());
    let collection = kind.collection(namespace);
    let namespace = namespace.to_string();
    timed(clients.len(), args.duration, args.max_creates, move |c, i| {
        let client = clients[c].clone();
        let body = kind.body(&namespace, &format!("c{c}-{i}"));
        let collection = collection.clone();
        async move { client.call(Method::POST, &collection, Some(body), StatusCode::CREATED).await.map(|_| ()) }
    })
    .await
}

async fn gets(clients: &[ApiClient], kind: ObjectKind, args: &Args) -> anyhow::Result<Figures> {
    let namespace = "bench-get";
    create_namespace(&clients[0], namespace).await?;
    let objects = args.get_objects.max(1);
    fill(clients, kind, namespace, "obj-", objects).await.context("creating the objects to read")?;
    let clients = Arc::new(clients.to_vec());
    let n = clients.len() as u64;
    let collection = kind.collection(namespace);
    timed(clients.len(), args.duration, u64::MAX, move |c, i| {
        let client = clients[c].clone();
        // A stride prime to any object count spreads the clients over all objects.
        let index = (i * n + c as u64).wrapping_mul(7919) % objects as u64;
        let path = format!("{collection}/obj-{index}");
        async move { client.call(Method::GET, &path, None, StatusCode::OK).await.map(|_| ()) }
    })
    .await
}

#[derive(Deserialize)]
struct ListBody {
    metadata: ListMeta,
    items: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

struct ListFigures {
    fill: Figures,
    /// Whole LIST: time to the response headers (the server has built the body by then) and to the last byte.
    full_headers: Figures,
    full: Figures,
    body_bytes: usize,
    paged: Figures,
    pages: usize,
}

async fn lists(clients: &[ApiClient], args: &Args) -> anyhow::Result<ListFigures> {
    let namespace = "bench-list";
    create_namespace(&clients[0], namespace).await?;
    let fill = fill(clients, ObjectKind::Pod, namespace, "pod-", args.pods).await.context("creating the pods")?;
    let client = &clients[0];
    let path = ObjectKind::Pod.collection(namespace);
    let (mut to_headers, mut whole, mut paged) = (Vec::new(), Vec::new(), Vec::new());
    let (mut body_bytes, mut pages) = (0, 0);
    let cpu = cpu_usage();
    for _ in 0..args.list_runs {
        let t = Instant::now();
        let response = client.send(Method::GET, &path, None).await?;
        to_headers.push(t.elapsed());
        ensure!(response.status() == StatusCode::OK, "LIST answered {}", response.status());
        let body = response.into_body().collect().await.context("reading the LIST")?.to_bytes();
        whole.push(t.elapsed());
        let list: ListBody = serde_json::from_slice(&body).context("decoding the LIST")?;
        ensure!(list.items.len() == args.pods, "listed {} of {} pods", list.items.len(), args.pods);
        body_bytes = body.len();

        // Paging as client-go's pager does: each page decoded before the next is asked for.
        let t = Instant::now();
        let (mut seen, mut token, mut n) = (0, None::<String>, 0);
        loop {
            let page_path = match &token {
                None => format!("{path}?limit={}", args.page_size),
                Some(token) => format!("{path}?limit={}&continue={token}", args.page_size),
            };
            let body = client.call(Method::GET, &page_path, None, StatusCode::OK).await?;
            let page: ListBody = serde_json::from_slice(&body).context("decoding a page")?;
            seen += page.items.len();
            n += 1;
            ensure!(!page.metadata.resource_version.is_empty(), "a page without resourceVersion");
            match page.metadata.continue_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        paged.push(t.elapsed());
        ensure!(seen == args.pods, "paged through {seen} of {} pods", args.pods);
        pages = n;
    }
    let elapsed = |v: &Vec<Duration>| v.iter().sum::<Duration>();
    let mut full_headers = figures(elapsed(&to_headers), to_headers);
    full_headers.cpu = Some(cpu_usage().since(&cpu, None));
    Ok(ListFigures {
        fill,
        full_headers,
        full: figures(elapsed(&whole), whole),
        body_bytes,
        paged: figures(elapsed(&paged), paged),
        pages,
    })
}

#[derive(Deserialize)]
struct WatchLine {
    #[serde(rename = "type")]
    kind: String,
    object: WatchObject,
}

#[derive(Deserialize)]
struct WatchObject {
    metadata: WatchMeta,
}

#[derive(Deserialize)]
struct WatchMeta {
    #[serde(default)]
    name: String,
}

struct WatchFigures {
    /// From the write's response to each watcher receiving the event.
    from_response: Figures,
    /// From the write being sent to each watcher receiving the event.
    from_request: Figures,
    /// Per change, from the write's response to the last watcher receiving it.
    last_watcher: Figures,
    /// Deliveries that arrived before the write's response did.
    before_response: usize,
    write: Figures,
}

/// Reads one watch stream, reporting `(change index, arrival)` for every ADDED event of a `change-N` pod.
async fn watcher(
    response: Response<Incoming>,
    arrivals: mpsc::UnboundedSender<(usize, Instant)>,
) -> anyhow::Result<()> {
    let mut body = response.into_body();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading a watch stream")?;
        let Some(data) = frame.data_ref() else { continue };
        let now = Instant::now();
        buf.extend_from_slice(data);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(end + 1);
            let event: WatchLine = serde_json::from_slice(&line).context("decoding a watch event")?;
            if event.kind == "ERROR" {
                bail!("the watch sent an error: {}", String::from_utf8_lossy(&line));
            }
            if event.kind != "ADDED" {
                continue;
            }
            if let Some(index) = event.object.metadata.name.strip_prefix("change-").and_then(|n| n.parse().ok())
                && arrivals.send((index, now)).is_err()
            {
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn watch_fan_out(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    args: &Args,
) -> anyhow::Result<WatchFigures> {
    let namespace = "bench-watch";
    let writer = ApiClient::connect(addr, tls).await?;
    create_namespace(&writer, namespace).await?;
    let collection = ObjectKind::Pod.collection(namespace);
    let list: ListBody = serde_json::from_slice(&writer.call(Method::GET, &collection, None, StatusCode::OK).await?)?;
    let rv = list.metadata.resource_version;
    let watch_path = format!("{collection}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true");

    let clients = connect_many(addr, tls, args.watchers).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for client in &clients {
        let response = client.send(Method::GET, &watch_path, None).await?;
        ensure!(response.status() == StatusCode::OK, "WATCH answered {}", response.status());
        tasks.push(tokio::spawn(watcher(response, tx.clone())));
    }
    drop(tx);

    let patience = Duration::from_secs(10);
    let (mut from_response, mut from_request, mut last_watcher, mut writes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut before_response = 0;
    let cpu = cpu_usage();
    let started = Instant::now();
    for change in 0..args.changes {
        let body = ObjectKind::Pod.body(namespace, &format!("change-{change}"));
        let sent = Instant::now();
        writer.call(Method::POST, &collection, Some(body), StatusCode::CREATED).await?;
        let answered = Instant::now();
        writes.push(answered - sent);
        let mut last = Duration::ZERO;
        for _ in 0..args.watchers {
            let (index, arrived) = tokio::time::timeout(patience, rx.recv())
                .await
                .with_context(|| format!("change {change} did not reach every watcher within {patience:?}"))?
                .context("every watcher ended")?;
            ensure!(index == change, "a watcher got change {index} while change {change} was expected");
            if arrived < answered {
                before_response += 1;
            }
            let latency = arrived.saturating_duration_since(answered);
            last = last.max(latency);
            from_response.push(latency);
            from_request.push(arrived.saturating_duration_since(sent));
        }
        last_watcher.push(last);
    }
    let elapsed = started.elapsed();
    for task in &tasks {
        task.abort();
    }
    let mut from_response = figures(elapsed, from_response);
    from_response.cpu = Some(cpu_usage().since(&cpu, None));
    Ok(WatchFigures {
        from_response,
        from_request: figures(elapsed, from_request),
        last_watcher: figures(elapsed, last_watcher),
        before_response,
        write: figures(elapsed, writes),
    })
}

/// CPU time this process has used, in total and by thread name: the server's runtime threads are named
/// `server`, the clients' `client`, the store's own threads `store-writer` and `store-maintenance`.
struct CpuUsage {
    at: Instant,
    total: f64,
    by_thread: BTreeMap<String, f64>,
    /// Busy seconds of the whole machine (every process), to tell how much the other tenants took.
    machine_busy: f64,
}

/// Linux reports CPU times in clock ticks of 1/100 s on every architecture Gantry runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system seconds from a `/proc/.../stat` line (fields 14 and 15, counted after the command name, which
/// may itself hold spaces and parentheses).
fn stat_seconds(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / TICKS_PER_SECOND))
}

fn cpu_usage() -> CpuUsage {
    let total = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| stat_seconds(&s)).map_or(0.0, |(_, t)| t);
    let mut by_thread = BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Some((name, seconds)) =
                std::fs::read_to_string(task.path().join("stat")).ok().and_then(|s| stat_seconds(&s))
            {
                *by_thread.entry(name).or_insert(0.0) += seconds;
            }
        }
    }
    CpuUsage { at: Instant::now(), total, by_thread, machine_busy: machine_busy_seconds().unwrap_or(0.0) }
}

/// Non-idle seconds of all cores from the first line of `/proc/stat` (everything but idle and iowait).
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = line.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let busy: f64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Some(busy / TICKS_PER_SECOND)
}

impl CpuUsage {
    /// Cores used since `before`, in total and by thread name (threads that ended meanwhile count only in the
    /// total), what the rest of the machine used, and the CPU time per operation when `ops` is known.
    fn since(&self, before: &CpuUsage, ops: Option<usize>) -> String {
        let wall = self.at.duration_since(before.at).as_secs_f64().max(f64::EPSILON);
        let mut parts: Vec<(String, f64)> = self
            .by_thread
            .iter()
            .map(|(name, t)| (name.clone(), (t - before.by_thread.get(name).copied().unwrap_or(0.0)).max(0.0) / wall))
            .filter(|(_, cores)| *cores >= 0.01)
            .collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let parts: Vec<String> = parts.iter().map(|(name, cores)| format!("{name} {cores:.2}")).collect();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let ours = (self.total - before.total) / wall;
        let others = ((self.machine_busy - before.machine_busy) / wall - ours).max(0.0);
        let per_op = match ops {
            Some(ops) if ops > 0 => format!("; {:.0} µs of our CPU per request", ours * wall * 1e6 / ops as f64),
            _ => String::new(),
        };
        format!("{ours:.2} of {cores} cores ({}); other processes {others:.2}{per_op}", parts.join(", "))
    }
}

/// `GET /version` and `dryRun=All` creates from `clients`, to split a create's latency into transport, request
/// handling, and the store write with the wait for the watch cache.
async fn breakdown(clients: &[ApiClient], kind: ObjectKind, args: &Args) -> anyhow::Result<(Figures, Figures)> {
    let shared = Arc::new(clients.to_vec());
    let transport = {
        let clients = Arc::clone(&shared);
        timed(clients.len(), args.duration, u64::MAX, move |c, _| {
            let client = clients[c].clone();
            async move { client.call(Method::GET, "/version", None, StatusCode::OK).await.map(|_| ()) }
        })
        .await?
    };
    let collection = format!("{}?dryRun=All", kind.collection(DRY_RUN_NAMESPACE));
    let dry_run = timed(shared.len(), args.duration, u64::MAX, move |c, i| {
        let client = shared[c].clone();
        let body = kind.body(DRY_RUN_NAMESPACE, &format!("c{c}-{i}"));
        let collection = collection.clone();
        async move { client.call(Method::POST, &collection, Some(body), StatusCode::CREATED).await.map(|_| ()) }
    })
    .await?;
    Ok((transport, dry_run))
}

const DRY_RUN_NAMESPACE: &str = "bench-dry-run";

/// The store alone, without the API server: creates of `value` from `writers` tasks on a second, fresh SQLite
/// file with the same durability, the store's share of a create's latency.
/// Creates `n` definitions one after the other; for each, the time from the create's response until an object of
/// the new kind is accepted (creates are retried every millisecond while the resource is not served yet).
async fn definitions_served(client: &ApiClient, n: usize) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let plural = format!("things{i}");
        let definition = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.bench.example.com")},
            "spec": {"group": "bench.example.com", "scope": "Namespaced",
                     "names": {"plural": plural, "kind": format!("Thing{i}")},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                       "properties": {"spec": {"type": "object",
                                           "properties": {"size": {"type": "integer"}}}}}}}]}});
        let body = Bytes::from(serde_json::to_vec(&definition)?);
        client
            .call(
                Method::POST,
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                Some(body),
                StatusCode::CREATED,
            )
            .await?;
        let created = Instant::now();
        let object = serde_json::json!({"apiVersion": "bench.example.com/v1", "kind": format!("Thing{i}"),
                                        "metadata": {"name": "first"}, "spec": {"size": 1}});
        let object = Bytes::from(serde_json::to_vec(&object)?);
        let path = format!("/apis/bench.example.com/v1/namespaces/default/{plural}");
        loop {
            let response = client.send(Method::POST, &path, Some(object.clone())).await?;
            let status = response.status();
            response.into_body().collect().await.context("reading a create's answer")?;
            if status == StatusCode::CREATED {
                break;
            }
            ensure!(status == StatusCode::NOT_FOUND, "POST {path}: {status}");
            ensure!(created.elapsed() < Duration::from_secs(30), "{plural} not served after 30 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(created.elapsed());
    }
    Ok(figures(started.elapsed(), latencies))
}

async fn store_alone(path: &Path, value: Bytes, writers: usize, duration: Duration) -> anyhow::Result<Figures> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteConfig::new(path))?);
    timed(writers, duration, u64::MAX, move |w, i| {
        let (store, value) = (Arc::clone(&store), value.clone());
        async move {
            store.create(format!("/probe/{w}/{i:08}").as_bytes(), value).await?;
            Ok(())
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------------------------
// Reporting.

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Report {
    rows: Vec<(String, String, String, String)>,
    missed: usize,
}

impl Report {
    fn row(&mut self, workload: impl Into<String>, figure: impl Into<String>) {
        self.rows.push((workload.into(), figure.into(), String::new(), String::new()));
    }

    fn target(&mut self, workload: impl Into<String>, figure: impl Into<String>, target: &str, met: bool) {
        if !met {
            self.missed += 1;
        }
        let verdict = if met { "PASS" } else { "FAIL" };
        self.rows.push((workload.into(), figure.into(), target.into(), verdict.into()));
    }

    /// The CPU the process used during a workload, as a row of its own.
    fn cpu(&mut self, figures: &Figures) {
        if let Some(cpu) = &figures.cpu {
            self.row("  CPU used meanwhile", cpu.clone());
        }
    }

    fn print(&self) {
        println!("\n| workload | figure | target | result |");
        println!("|---|---|---|---|");
        for (workload, figure, target, verdict) in &self.rows {
            println!("| {workload} | {figure} | {target} | {verdict} |");
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn run(addr: SocketAddr, data_dir: &Path, args: &Args) -> anyhow::Result<Report> {
    let tls = client_tls(data_dir)?;
    let want = |w: Workload| args.only.is_empty() || args.only.contains(&w);
    let mut report = Report { rows: Vec::new(), missed: 0 };
    let kind = args.object;
    let what = match kind {
        ObjectKind::Pod => "pods",
        ObjectKind::Configmap => "ConfigMaps",
    };
    let clients = connect_many(addr, &tls, args.clients.max(1)).await.context("connecting the clients")?;

    if want(Workload::Create1) {
        let namespace = "bench-create-1";
        create_namespace(&clients[0], namespace).await?;
        let f = creates(&clients[..1], kind, namespace, args).await.context("creates, 1 client")?;
        eprintln!("create-1: {} {what} created", f.ops);
        report.row(format!("create {what}, 1 client"), format!("{:.0}/s", f.ops_per_sec));
        report.row(format!("create {what}, 1 client, p50 / p99"), format!("{} / {}", ms(f.p50), ms(f.p99)));
        report.cpu(&f);
    }
    if want(Workload::CreateN) {
        let namespace = "bench-create-n";
        create_namespace(&clients[0], namespace).await?;
        let f = creates(&clients, kind, namespace, args).await.context("creates, many clients")?;
        eprintln!("create-n: {} {what} created", f.ops);
        let n = clients.len();
        report.target(
            format!("create {what}, {n} clients"),
            format!("{:.0}/s", f.ops_per_sec),
            "≥ 3000/s",
            f.ops_per_sec >= 3000.0,
        );
        report.target(
            format!("create {what}, {n} clients, p50 / p99"),
            format!("{} / {}", ms(f.p50), ms(f.p99)),
            "p99 ≤ 25 ms",
            f.p99 <= Duration::from_millis(25),
        );
        report.cpu(&f);
    }
    if want(Workload::Breakdown) {
        create_namespace(&clients[0], DRY_RUN_NAMESPACE).await?;
        // One real object, to give the store probe a value of the size the server stores.
        let collection = kind.collection(DRY_RUN_NAMESPACE);
        let body = kind.body(DRY_RUN_NAMESPACE, "probe");
        clients[0].call(Method::POST, &collection, Some(body), StatusCode::CREATED).await?;
        let stored = clients[0].call(Method::GET, &format!("{collection}/probe"), None, StatusCode::OK).await?;
        for (i, n) in [1, clients.len()].into_iter().enumerate() {
            let (transport, dry_run) = breakdown(&clients[..n], kind, args).await.context("breakdown")?;
            let clients = if n == 1 { "1 client".to_string() } else { format!("{n} clients") };
            report.row(
                format!("GET /version (TLS + HTTP/2 + routing only), {clients}: rate, p50 / p99"),
                format!("{:.0}/s, {} / {}", transport.ops_per_sec, ms(transport.p50), ms(transport.p99)),
            );
            report.cpu(&transport);
            report.row(
                format!("create {what} with dryRun=All (no store write, no cache wait), {clients}: rate, p50 / p99"),
                format!("{:.0}/s, {} / {}", dry_run.ops_per_sec, ms(dry_run.p50), ms(dry_run.p99)),
            );
            report.cpu(&dry_run);
            let probe = data_dir.join(format!("probe-{i}.db"));
            let store = store_alone(&probe, stored.clone(), n, args.duration).await.context("the store alone")?;
            let writers = if n == 1 { "1 writer".to_string() } else { format!("{n} writers") };
            report.row(
                format!("SQLite store alone, create of {} bytes, {writers}: rate, p50 / p99", stored.len()),
                format!("{:.0}/s, {} / {}", store.ops_per_sec, ms(store.p50), ms(store.p99)),
            );
            report.cpu(&store);
        }
    }
    if want(Workload::Get) {
        let f = gets(&clients, kind, args).await.context("GETs")?;
        let n = clients.len();
        report.row(format!("GET one of {} {what}, {n} clients", args.get_objects), format!("{:.0}/s", f.ops_per_sec));
        report.row(format!("GET, {n} clients, p50 / p99"), format!("{} / {}", ms(f.p50), ms(f.p99)));
        report.cpu(&f);
    }
    if want(Workload::List) {
        let f = lists(&clients, args).await.context("LIST")?;
        report.row(
            format!("create {} pods to list ({} clients)", args.pods, clients.len()),
            format!("{:.0}/s, p99 {}", f.fill.ops_per_sec, ms(f.fill.p99)),
        );
        report.target(
            format!("LIST {} pods, no limit ({:.1} MiB JSON), p50 / p99", args.pods, f.body_bytes as f64 / 1048576.0),
            format!("{} / {}", ms(f.full.p50), ms(f.full.p99)),
            "≤ 150 ms",
            f.full.p99 <= Duration::from_millis(150),
        );
        report.row(
            "  of which to response headers (server builds the body), p50 / p99",
            format!("{} / {}", ms(f.full_headers.p50), ms(f.full_headers.p99)),
        );
        report.row(
            format!("LIST {} pods, limit={} ({} pages), p50 / p99", args.pods, args.page_size, f.pages),
            format!("{} / {}", ms(f.paged.p50), ms(f.paged.p99)),
        );
        report.cpu(&f.full_headers);
    }
    if want(Workload::Crd) {
        let f = definitions_served(&clients[0], 20).await.context("custom resource definitions")?;
        report.target(
            format!("CRD created → first object of its kind created ({} definitions), p50 / p99", f.ops),
            format!("{} / {}", ms(f.p50), ms(f.p99)),
            "≤ 1 s",
            f.p99 <= Duration::from_secs(1),
        );
    }
    drop(clients);
    if want(Workload::Watch) {
        let f = watch_fan_out(addr, &tls, args).await.context("watch fan-out")?;
        report.target(
            format!(
                "watch fan-out, {} watchers × {} changes: write response → event, p50 / p99",
                args.watchers, args.changes
            ),
            format!("{} / {}", ms(f.from_response.p50), ms(f.from_response.p99)),
            "p99 ≤ 50 ms",
            f.from_response.p99 <= Duration::from_millis(50),
        );
        report
            .row("  write sent → event, p50 / p99", format!("{} / {}", ms(f.from_request.p50), ms(f.from_request.p99)));
        report.row(
            "  write response → last watcher has it, p50 / p99 / max",
            format!("{} / {} / {}", ms(f.last_watcher.p50), ms(f.last_watcher.p99), ms(f.last_watcher.max)),
        );
        report.row(
            "  the write itself, p50 / p99; deliveries before its response",
            format!("{} / {}; {} of {}", ms(f.write.p50), ms(f.write.p99), f.before_response, f.from_response.ops),
        );
        report.cpu(&f.from_response);
    }
    Ok(report)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    TIMELINE.store(args.timeline, Ordering::Relaxed);
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    if data_dir.join("store.db").exists() {
        bail!("{} already holds a store; give an empty directory", data_dir.display());
    }

    let mut server_runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.server_threads {
        server_runtime.worker_threads(threads);
    }
    let server_runtime = server_runtime.thread_name("server").enable_all().build().context("the server runtime")?;
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .thread_name("client")
        .enable_all()
        .build()
        .context("the client runtime")?;

    let shutdown = CancellationToken::new();
    let server: RunningServer = server_runtime
        .block_on(async { anyhow::Ok(gantry_apiserver::start_loopback(&data_dir, shutdown.clone()).await?) })?;
    let addr = server.addr;
    eprintln!("api-bench: server on https://{addr}, data in {}, load average {}", data_dir.display(), load_average());

    // Spawned rather than run by `block_on`, so that its time counts under the clients' thread name.
    let result = client_runtime.block_on({
        let (data_dir, args) = (data_dir.clone(), args.clone());
        async move { tokio::spawn(async move { run(addr, &data_dir, &args).await }).await? }
    });
    eprintln!("api-bench: load average at the end {}", load_average());
    server_runtime.block_on(server.shutdown());
    drop(client_runtime);
    let report = result?;
    report.print();
    if report.missed > 0 {
        eprintln!("api-bench: {} target(s) missed", report.missed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_seconds_or_milliseconds() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("five").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.50), Duration::from_millis(51));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
        let f = figures(Duration::from_secs(2), sorted.into_iter().rev().collect());
        assert_eq!(f.ops, 100);
        assert!((f.ops_per_sec - 50.0).abs() < 1e-9);
        assert_eq!(f.max, Duration::from_millis(100));
    }

    #[test]
    fn thread_cpu_times_survive_odd_thread_names() {
        let stat = "4242 (store (w) x) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0 100 0 0";
        let (name, seconds) = stat_seconds(stat).unwrap();
        assert_eq!(name, "store (w) x");
        assert!((seconds - 4.0).abs() < 1e-9);
        assert!(stat_seconds("garbage").is_none());
    }

    #[test]
    fn bench_objects_are_what_the_server_expects() {
        let pod: Value = serde_json::from_slice(&ObjectKind::Pod.body("ns", "p-1")).unwrap();
        assert_eq!(pod["metadata"]["name"], "p-1");
        assert_eq!(pod["spec"]["containers"].as_array().map(Vec::len), Some(1));
        let cm = ObjectKind::Configmap.body("ns", "cm-1");
        assert!((250..400).contains(&cm.len()), "a ConfigMap of {} bytes", cm.len());
        assert_eq!(ObjectKind::Configmap.collection("ns"), "/api/v1/namespaces/ns/configmaps");
    }
}
