//! Real etcd members for tests and benchmarks.
//!
//! [`EtcdServer`] runs one single-member etcd, [`EtcdCluster`] runs several members that form one cluster. Both
//! listen on ephemeral loopback ports, keep their data in a throw-away directory and write the member's log to a
//! file there, so that a failing test can print its tail ([`EtcdServer::log_tail`]). Dropping them SIGKILLs the
//! members, reaps them and removes the directory.
//!
//! They run the `etcd` binary found on `PATH` (override with `GANTRY_ETCD_BIN`). Deadlines scale with
//! `GANTRY_TEST_PATIENCE_SECS` (default 20 seconds) for slow machines.

use std::fs::OpenOptions;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use tempfile::TempDir;

use super::patience;

/// How often a starting member is polled for health.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long one health probe waits for an answer.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(250);

/// How many times a start is retried when another process took one of the ports between choosing and binding.
const PORT_ATTEMPTS: usize = 5;

/// One etcd process with its ports and files.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    pid: u32,
    /// Every member's `name=peer URL`, for `--initial-cluster`.
    initial_cluster: String,
    token: String,
    timing: Timing,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Starts the process. On a restart etcd finds its data directory and ignores the `--initial-*` flags.
    fn spawn(&mut self) -> io::Result<()> {
        // Appending keeps the log of a killed incarnation for post-mortems.
        let log = OpenOptions::new().create(true).append(true).open(&self.log_path)?;
        let mut command = Command::new(etcd_binary());
        command
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(self.client_url())
            .arg("--advertise-client-urls")
            .arg(self.client_url())
            .arg("--listen-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg(format!("--heartbeat-interval={}", self.timing.heartbeat_ms))
            .arg(format!("--election-timeout={}", self.timing.election_ms))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .map_err(|err| io::Error::new(err.kind(), format!("cannot run {}: {err}", etcd_binary().display())))?;
        self.pid = child.id();
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILLs the process and reaps it, so that neither a process nor a zombie is left behind.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only when the process is already gone, which is what we want anyway.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `Some(reason)` when the process has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(Child::try_wait) {
            None => Some("it was killed".to_owned()),
            Some(Ok(Some(status))) => Some(format!("it exited with {status}")),
            Some(Ok(None)) => None,
            Some(Err(err)) => Some(format!("cannot query it: {err}")),
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }
}

/// Raft timing flags: short ones make a lone member healthy and a cluster elect a new leader quickly.
#[derive(Clone, Copy)]
struct Timing {
    heartbeat_ms: u64,
    election_ms: u64,
}

/// A lone member elects itself at once (etcd fast-forwards its first election ticks): healthy in 25-120 ms here.
/// With no peers there is no leader to lose, so short ticks cost nothing.
const SINGLE_TIMING: Timing = Timing { heartbeat_ms: 10, election_ms: 100 };

/// In a cluster a short election timeout makes failover fast, but one within reach of scheduler stalls on a
/// loaded two-core machine makes members depose healthy leaders. With 50/500 ms a write goes through about a
/// second after the leader is SIGKILLed.
const CLUSTER_TIMING: Timing = Timing { heartbeat_ms: 50, election_ms: 500 };

fn etcd_binary() -> PathBuf {
    std::env::var_os("GANTRY_ETCD_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("etcd"))
}

/// `count` distinct free loopback ports. All listeners are held until every port is chosen, so that the ports
/// differ from each other; another process may still take one before etcd binds it, which the caller retries.
fn free_ports(count: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..count).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

/// A token that no other cluster started on this machine uses, so that members of different clusters never
/// mistake each other for peers even if ports get reused.
fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("gantry-test-{}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos)
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

/// A client that answers quickly, for polling members that may not be up yet.
async fn probe_client(endpoint: &str) -> io::Result<Client> {
    let options =
        ConnectOptions::new().with_connect_timeout(Duration::from_millis(500)).with_timeout(Duration::from_secs(2));
    Client::connect([endpoint], Some(options)).await.map_err(|err| io::Error::other(format!("{endpoint}: {err}")))
}

/// Whether the member behind `client` serves linearizable reads, which needs a leader and a quorum.
async fn is_healthy(client: &Client) -> bool {
    let mut kv = client.kv_client();
    // Before a leader exists the read hangs rather than fails; a short limit keeps the polling going.
    matches!(tokio::time::timeout(HEALTH_TIMEOUT, kv.get("health", None)).await, Ok(Ok(_)))
}

/// Starts `members` (already given ports, paths and launch flags) and waits until each serves linearizable
/// reads. Returns a client per member. On failure every member is killed; the error says whether a port clash
/// is to blame, in which case the caller retries with new ports.
async fn start_members(members: &mut [Member]) -> Result<Vec<Client>, StartError> {
    let result = async {
        for member in members.iter_mut() {
            member.spawn().map_err(StartError::Fatal)?;
        }
        let mut clients = Vec::with_capacity(members.len());
        for member in members.iter() {
            clients.push(probe_client(&member.client_url()).await.map_err(StartError::Fatal)?);
        }
        let indices: Vec<usize> = (0..members.len()).collect();
        wait_healthy(members, &clients, &indices).await?;
        Ok(clients)
    }
    .await;
    if result.is_err() {
        for member in members.iter_mut() {
            member.kill();
        }
    }
    result
}

/// Waits until the members at `indices` serve linearizable reads, failing early if one of them exits.
async fn wait_healthy(members: &mut [Member], clients: &[Client], indices: &[usize]) -> Result<(), StartError> {
    let deadline = Instant::now() + patience();
    let mut healthy = vec![false; members.len()];
    loop {
        for &i in indices {
            let member = &mut members[i];
            if let Some(reason) = member.exited() {
                let tail = member.log_tail(30);
                let message = format!("etcd member {} stopped while starting: {reason}\n{tail}", member.name);
                return Err(if tail.contains("address already in use") {
                    StartError::PortClash(message)
                } else {
                    StartError::Fatal(io::Error::other(message))
                });
            }
        }
        let pending: Vec<usize> = indices.iter().copied().filter(|&i| !healthy[i]).collect();
        let results = futures::future::join_all(pending.iter().map(|&i| is_healthy(&clients[i]))).await;
        for (i, ok) in pending.into_iter().zip(results) {
            healthy[i] = ok;
        }
        if indices.iter().all(|&i| healthy[i]) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let tails = indices
                .iter()
                .map(|&i| format!("--- {} ---\n{}", members[i].name, members[i].log_tail(30)))
                .collect::<Vec<_>>()
                .join("\n");
            return Err(StartError::Fatal(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("etcd did not become healthy within {:?}\n{tails}", patience()),
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

enum StartError {
    PortClash(String),
    Fatal(io::Error),
}

impl From<StartError> for io::Error {
    fn from(err: StartError) -> Self {
        match err {
            StartError::PortClash(message) => io::Error::new(io::ErrorKind::AddrInUse, message),
            StartError::Fatal(err) => err,
        }
    }
}

/// Creates and starts `count` members in subdirectories of `dir`, retrying with new ports on a clash.
async fn start_cluster(dir: &Path, count: usize, timing: Timing) -> io::Result<(Vec<Member>, Vec<Client>)> {
    let mut last_clash = String::new();
    for attempt in 0..PORT_ATTEMPTS {
        let ports = free_ports(2 * count)?;
        let token = unique_token();
        let initial_cluster = (0..count)
            .map(|i| format!("member{i}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::with_capacity(count);
        for i in 0..count {
            let member_dir = dir.join(format!("attempt{attempt}-member{i}"));
            std::fs::create_dir_all(&member_dir)?;
            members.push(Member {
                name: format!("member{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: member_dir.join("data"),
                log_path: member_dir.join("etcd.log"),
                child: None,
                pid: 0,
                initial_cluster: initial_cluster.clone(),
                token: token.clone(),
                timing,
            });
        }
        match start_members(&mut members).await {
            Ok(clients) => return Ok((members, clients)),
            Err(StartError::PortClash(message)) => last_clash = message,
            Err(StartError::Fatal(err)) => return Err(err),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free ports for etcd after {PORT_ATTEMPTS} attempts; last failure: {last_clash}"),
    ))
}

/// A single-member etcd on ephemeral loopback ports with a throw-away data directory.
///
/// Dropping it SIGKILLs the process, waits for it and removes the directory.
pub struct EtcdServer {
    member: Member,
    // Dropped after `Drop::drop` has killed the member, so the directory is no longer written to.
    dir: TempDir,
}

impl EtcdServer {
    /// Starts a member and waits until it serves linearizable reads.
    ///
    /// Fails when `etcd` cannot be run, when it stops while starting, or when it is not healthy within
    /// [`patience`](super::patience); the error carries the tail of the member's log.
    pub async fn start() -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("gantry-etcd-").tempdir()?;
        let (mut members, _clients) = start_cluster(dir.path(), 1, SINGLE_TIMING).await?;
        let member = members.pop().ok_or_else(|| io::Error::other("no member was started"))?;
        Ok(Self { member, dir })
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.member.client_url()
    }

    /// The member's process id.
    pub fn pid(&self) -> u32 {
        self.member.pid
    }

    /// The temporary directory that holds the data directory and the log; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The member's data directory (inside [`dir`](Self::dir)).
    pub fn data_dir(&self) -> &Path {
        &self.member.data_dir
    }

    /// The file that receives the member's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.member.log_path
    }

    /// The last `lines` lines of the member's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.member.log_tail(lines)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.member.kill();
    }
}

impl std::fmt::Debug for EtcdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdServer").field("endpoint", &self.endpoint()).field("pid", &self.pid()).finish()
    }
}

/// Several etcd members forming one cluster on distinct loopback ports.
///
/// Dropping it SIGKILLs every member, waits for them and removes their directories.
pub struct EtcdCluster {
    members: Vec<Member>,
    clients: Vec<Client>,
    // Dropped after `Drop::drop` has killed the members.
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts `members` members as a new cluster and waits until each serves linearizable reads (so a leader has
    /// been elected). The error carries the tails of the members' logs.
    pub async fn start(members: usize) -> io::Result<Self> {
        if members == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a cluster needs at least one member"));
        }
        let dir = tempfile::Builder::new().prefix("gantry-etcd-cluster-").tempdir()?;
        let (members, clients) = start_cluster(dir.path(), members, CLUSTER_TIMING).await?;
        Ok(Self { members, clients, dir })
    }

    /// The number of members, killed ones included.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the cluster has no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The client URLs of all members, killed ones included, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// The client URL of member `index`.
    ///
    /// # Panics
    /// When `index` is out of range.
    pub fn endpoint(&self, index: usize) -> String {
        self.members[index].client_url()
    }

    /// The process id of member `index`.
    ///
    /// # Panics
    /// When `index` is out of range.
    pub fn pid(&self, index: usize) -> u32 {
        self.members[index].pid
    }

    /// Whether member `index` has not been killed and has not exited.
    ///
    /// # Panics
    /// When `index` is out of range.
    pub fn is_running(&mut self, index: usize) -> bool {
        self.members[index].exited().is_none()
    }

    /// The directory that holds every member's data directory and log; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last `lines` lines of member `index`'s log.
    ///
    /// # Panics
    /// When `index` is out of range.
    pub fn log_tail(&self, index: usize, lines: usize) -> String {
        self.members[index].log_tail(lines)
    }

    /// The index of the current leader, as reported by a running member whose view names a running member.
    ///
    /// # Panics
    /// When no running member names a running leader within [`patience`](super::patience), with the members' log tails.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + patience();
        loop {
            let mut ids = vec![None; self.members.len()];
            let mut leaders = Vec::new();
            for (i, client) in self.clients.iter().enumerate() {
                if self.members[i].child.is_none() {
                    continue;
                }
                let mut maintenance = client.maintenance_client();
                if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(1), maintenance.status()).await
                    && let Some(header) = status.header()
                {
                    ids[i] = Some(header.member_id());
                    if status.leader() != 0 {
                        leaders.push(status.leader());
                    }
                }
            }
            for leader in &leaders {
                if let Some(index) = ids.iter().position(|id| *id == Some(*leader)) {
                    return index;
                }
            }
            if Instant::now() >= deadline {
                let tails = (0..self.members.len())
                    .map(|i| format!("--- member{i} ---\n{}", self.log_tail(i, 20)))
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("no etcd member reported a running leader within {:?}\n{tails}", patience());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGKILLs member `index` and reaps it; its data directory stays until the cluster is dropped. Killing a
    /// member twice does nothing.
    ///
    /// # Panics
    /// When `index` is out of range.
    pub fn kill(&mut self, index: usize) {
        self.members[index].kill();
    }

    /// Starts killed member `index` again on its old ports and data directory, and waits until it serves
    /// linearizable reads. Does nothing to a running member.
    ///
    /// # Panics
    /// When `index` is out of range.
    pub async fn restart(&mut self, index: usize) -> io::Result<()> {
        if self.members[index].child.is_some() {
            return Ok(());
        }
        self.members[index].spawn()?;
        let result = wait_healthy(&mut self.members, &self.clients, &[index]).await;
        if result.is_err() {
            self.members[index].kill();
        }
        result.map_err(io::Error::from)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster").field("endpoints", &self.endpoints()).finish()
    }
}
