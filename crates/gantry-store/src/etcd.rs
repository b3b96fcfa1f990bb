//! The etcd backend: the [`Store`] trait on a real etcd v3 cluster.
//!
//! Every operation maps onto one etcd request (a transaction where a write is guarded), so the cluster's own
//! linearizability gives the store's invariants. Three details are worth knowing:
//!
//! - **Compaction is shifted by one.** `compact(C)` compacts etcd at `C - 1`. etcd drops the history *at* its
//!   compaction revision (a delete at that revision vanishes, and so does the value before an update there), but
//!   the store promises a watch from `C - 1` every event after it, with previous values. The store reports `C`
//!   as the compaction point and rejects reads below it itself: a list at an explicit revision `R` also asks etcd
//!   for revision `R - 1` in the same transaction, which etcd refuses exactly when `R < C`.
//! - **Failover.** All endpoints go to one load-balanced channel. A request that could not even be sent (the
//!   connection to a dead member was refused) is retried after a short backoff, on whichever member the balancer
//!   picks next; reads are retried on any transient error; writes that may have reached etcd are not retried
//!   but fail with [`StoreError::Unavailable`], since they may have been applied. Every operation, retries
//!   included, is bounded by [`EtcdConfig::request_timeout`].
//! - **Watches resume.** When a watch's connection breaks, the stream reopens it from the last revision it
//!   received, on any live member, without gaps or duplicates; it fails with `Unavailable` only when no member
//!   answers for a while, and with `Compacted` if the history it needs is gone.

use std::collections::VecDeque;
use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KvClient, Txn,
    TxnOp, TxnOpResponse, TxnResponse, WatchClient, WatchOptions,
};
use tokio::time::Instant;

use crate::{
    Deleted, EventKind, KeyValue, ListOptions, ListPage, Result, Revision, Store, StoreError, WatchEvent, WatchStream,
    display_key, prefix_end,
};

/// The largest message accepted from etcd. tonic's default of 4 MiB would make large lists fail; etcd itself
/// sends up to 2 GiB.
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// HTTP/2 keep-alive pings on connections with open streams (watches), so that a member that vanishes without
/// closing its sockets (a network partition) is noticed. etcd's servers reject pings more frequent than every
/// 5 s (`--grpc-keepalive-min-time`) and pings on connections without streams, hence no pings while idle.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Backoff between retries of a failed request or watch resumption.
const INITIAL_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// How long one attempt at learning the compaction revision waits for etcd to cancel the probe watch. etcd checks
/// unsynced watchers every 100 ms.
const PROBE_WAIT: Duration = Duration::from_secs(1);

// gRPC status codes (from the gRPC specification) that mean "try again".
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;
const GRPC_ABORTED: i32 = 10;
const GRPC_UNAVAILABLE: i32 = 14;

/// How to reach etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs of the members (`http://host:port`). Give all of them: requests are balanced over them and
    /// a dead member's share moves to the others.
    pub endpoints: Vec<String>,
    /// Prepended to every key sent to etcd and stripped from every key returned, so that several stores (or
    /// other users) can share one etcd. Empty for none.
    pub prefix: Vec<u8>,
    /// The limit for establishing a connection to one member.
    pub dial_timeout: Duration,
    /// The limit for one store operation, retries included. A resuming watch gives up after twice
    /// `dial_timeout + request_timeout` without any member answering.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// A configuration for `endpoints` and key `prefix` (empty for none), with a 2 s dial timeout and a 5 s
    /// request timeout.
    pub fn new<I, S>(endpoints: I, prefix: impl Into<Vec<u8>>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: prefix.into(),
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Sets the dial timeout.
    pub fn with_dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// The [`Store`] on an etcd v3 cluster. Clones are cheap and share the connections.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    prefix: Bytes,
    endpoints: Vec<String>,
    request_timeout: Duration,
    resume_timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &display_key(&self.prefix))
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// How a failed request went wrong, before it is given the key it was about.
#[derive(Debug)]
enum Failure {
    /// etcd could not be reached or did not answer. `unapplied` when the request provably had no effect (it
    /// never left this process, or etcd dropped it before it reached the raft log), so that even a write may be
    /// retried.
    Unavailable { reason: String, unapplied: bool },
    /// etcd refused a revision at or before its compaction revision.
    Compacted,
    /// etcd refused a revision after its current one.
    FutureRevision,
    /// Anything else.
    Other(String),
}

impl Failure {
    /// The error for an operation on `key` that expects neither compaction nor future revisions.
    fn into_error(self, key: &[u8]) -> StoreError {
        match self {
            Failure::Unavailable { reason, .. } => StoreError::Unavailable { key: key.to_vec(), reason },
            Failure::Compacted => {
                StoreError::Internal { key: key.to_vec(), message: "etcd unexpectedly reported compaction".into() }
            }
            Failure::FutureRevision => StoreError::Internal {
                key: key.to_vec(),
                message: "etcd unexpectedly reported a future revision".into(),
            },
            Failure::Other(message) => StoreError::Internal { key: key.to_vec(), message },
        }
    }
}

fn classify(err: &etcd_client::Error) -> Failure {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            // etcd sends both with code OutOfRange; the message is the only thing telling them apart.
            if message.contains("required revision has been compacted") {
                return Failure::Compacted;
            }
            if message.contains("required revision is a future revision") {
                return Failure::FutureRevision;
            }
            // A follower that knows no leader (mid-election) drops proposals at once; etcd 3.4 sends that with
            // code Unknown. The write never reached the log, so it is safe to retry.
            if message.contains("raft proposal dropped") {
                return Failure::Unavailable { reason: err.to_string(), unapplied: true };
            }
            // A status that tonic made up from a local transport failure keeps that failure as its source; one
            // sent by etcd has none. Local failures are transient whatever code tonic picked.
            let local = status.source().is_some();
            match i32::from(status.code()) {
                GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED | GRPC_CANCELLED | GRPC_RESOURCE_EXHAUSTED | GRPC_ABORTED => {
                    Failure::Unavailable { reason: err.to_string(), unapplied: never_sent(status.source()) }
                }
                GRPC_UNKNOWN if local => {
                    Failure::Unavailable { reason: err.to_string(), unapplied: never_sent(status.source()) }
                }
                _ => Failure::Other(err.to_string()),
            }
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) | etcd_client::Error::WatchError(_) => {
            Failure::Unavailable { reason: err.to_string(), unapplied: false }
        }
        _ => Failure::Other(err.to_string()),
    }
}

/// Whether the request failed because no connection could be made, so it never reached etcd. tonic wraps such
/// failures in `tonic::ConnectError`; its type name is visible only through `Debug`, as this crate does not
/// depend on tonic directly.
fn never_sent(source: Option<&(dyn std::error::Error + 'static)>) -> bool {
    source.is_some_and(|source| format!("{source:?}").contains("ConnectError"))
}

/// Whether a failed request may be sent again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A read, or a write that etcd refuses to apply twice: retry on any transient failure.
    Always,
    /// A write: retry only when it provably had no effect.
    IfUnsent,
}

/// `[key, range_end)` covering every key that starts with `prefix` (all keys for an empty prefix).
fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    // etcd rejects an empty key; "\0" as range end means "to the end of the keyspace".
    let end = prefix_end(prefix).unwrap_or_else(|| vec![0]);
    let key = if prefix.is_empty() { vec![0] } else { prefix.to_vec() };
    (key, end)
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidRequest { key: Vec::new(), reason: "the key is empty".into() });
    }
    Ok(())
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>, key: &[u8]) -> Result<Revision> {
    header.map(|h| h.revision()).ok_or_else(|| StoreError::Internal {
        key: key.to_vec(),
        message: "etcd sent a response without header".into(),
    })
}

/// The response to the first operation of a transaction's taken branch.
fn first_op(resp: &TxnResponse, key: &[u8]) -> Result<TxnOpResponse> {
    resp.op_responses().into_iter().next().ok_or_else(|| StoreError::Internal {
        key: key.to_vec(),
        message: "etcd sent a transaction response without operation results".into(),
    })
}

/// Strips and copies etcd key-values into store key-values.
#[derive(Clone)]
struct Converter {
    prefix: Bytes,
}

impl Converter {
    fn key(&self, full: Vec<u8>) -> Result<Bytes, String> {
        if !full.starts_with(&self.prefix) {
            return Err(format!("etcd returned key {} outside the store prefix", display_key(&full)));
        }
        Ok(Bytes::from(full).slice(self.prefix.len()..))
    }

    fn kv(&self, kv: etcd_client::KeyValue) -> Result<KeyValue, String> {
        let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
        let (key, value) = kv.into_key_value();
        Ok(KeyValue { key: self.key(key)?, value: Bytes::from(value), create_revision, mod_revision })
    }

    fn event(&self, event: &etcd_client::Event) -> Result<WatchEvent, String> {
        let kv = event.kv().ok_or("etcd sent a watch event without key-value")?;
        let prev = event.prev_kv().map(|prev| self.kv(prev.clone())).transpose()?;
        match event.event_type() {
            EventType::Put => {
                let kv = self.kv(kv.clone())?;
                if kv.create_revision == kv.mod_revision {
                    Ok(WatchEvent { kind: EventKind::Create, kv, prev: None })
                } else {
                    Ok(WatchEvent { kind: EventKind::Update, kv, prev })
                }
            }
            EventType::Delete => {
                // etcd's tombstone carries only the key and the delete's revision.
                let kv = KeyValue {
                    key: self.key(kv.key().to_vec())?,
                    value: Bytes::new(),
                    create_revision: prev.as_ref().map_or(0, |p| p.create_revision),
                    mod_revision: kv.mod_revision(),
                };
                Ok(WatchEvent { kind: EventKind::Delete, kv, prev })
            }
        }
    }
}

impl EtcdStore {
    /// Connects to the cluster and checks that it answers a linearizable read within the request timeout.
    ///
    /// Fails with [`StoreError::InvalidRequest`] for an empty or malformed endpoint list, and with
    /// [`StoreError::Unavailable`] when no member answers.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(StoreError::InvalidRequest { key: Vec::new(), reason: "no etcd endpoints given".into() });
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(config.dial_timeout)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false)
            .with_tcp_keepalive(KEEP_ALIVE_INTERVAL);
        // Connections are made lazily, so this fails only for malformed endpoints.
        let client = Client::connect(&config.endpoints, Some(options)).await.map_err(|err| {
            StoreError::InvalidRequest { key: Vec::new(), reason: format!("cannot use etcd endpoints: {err}") }
        })?;
        let store = Self {
            kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE_BYTES),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE_BYTES),
            prefix: Bytes::from(config.prefix),
            endpoints: config.endpoints,
            request_timeout: config.request_timeout,
            resume_timeout: 2 * (config.dial_timeout + config.request_timeout),
        };
        store.current_revision().await?;
        Ok(store)
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key);
        full
    }

    fn converter(&self) -> Converter {
        Converter { prefix: self.prefix.clone() }
    }

    fn convert_kv(&self, kv: etcd_client::KeyValue, key: &[u8]) -> Result<KeyValue> {
        self.converter().kv(kv).map_err(|message| StoreError::Internal { key: key.to_vec(), message })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the request timeout has passed.
    async fn run<T, F, Fut>(&self, retry: Retry, mut attempt: F) -> Result<T, Failure>
    where
        F: FnMut(KvClient) -> Fut + Send,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
        T: Send,
    {
        let deadline = Instant::now() + self.request_timeout;
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let failure = match tokio::time::timeout_at(deadline, attempt(self.kv.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => classify(&err),
                Err(_) => {
                    return Err(Failure::Unavailable {
                        reason: format!("etcd did not answer within {:?}", self.request_timeout),
                        unapplied: false,
                    });
                }
            };
            let again = match &failure {
                Failure::Unavailable { unapplied, .. } => retry == Retry::Always || *unapplied,
                _ => false,
            };
            if !again || Instant::now() + backoff >= deadline {
                return Err(failure);
            }
            tracing::debug!(?failure, "retrying etcd request");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The store's compaction point (etcd's compaction revision plus one, see the module docs), after etcd
    /// refused a read at `requested` as compacted.
    ///
    /// etcd does not expose its compaction revision directly, but cancels a watch that starts before it with
    /// that revision. Falls back to `requested + 1`, the least the point can be, if no member says in time.
    async fn compaction_point(&self, requested: Revision) -> Revision {
        let deadline = Instant::now() + self.request_timeout;
        let probe_key = self.full_key(b"\0gantry-compaction-probe");
        loop {
            let mut client = self.watch.clone();
            let key = probe_key.clone();
            let probe = async move {
                let options = WatchOptions::new().with_start_revision(1);
                let mut stream = client.watch(key, Some(options)).await.ok()?;
                loop {
                    let resp = stream.message().await.ok()??;
                    if resp.compact_revision() > 0 {
                        return Some(resp.compact_revision());
                    }
                    if resp.canceled() {
                        return None;
                    }
                }
            };
            let wait = PROBE_WAIT.min(deadline.saturating_duration_since(Instant::now()));
            if let Ok(Some(revision)) = tokio::time::timeout(wait, probe).await {
                return revision + 1;
            }
            if Instant::now() + INITIAL_BACKOFF >= deadline {
                return requested + 1;
            }
            tokio::time::sleep(INITIAL_BACKOFF).await;
        }
    }

    fn compacted(&self, key: &[u8], compacted: Revision, requested: Revision) -> StoreError {
        StoreError::Compacted { key: key.to_vec(), compacted, requested }
    }

    /// Fails with [`StoreError::Compacted`] when the store no longer holds the state at `revision`.
    async fn check_history(&self, key: &[u8], revision: Revision) -> Result<()> {
        let probe = self.full_key(key);
        let probe = if probe.is_empty() { vec![0] } else { probe };
        let options = GetOptions::new().with_revision(revision).with_count_only();
        let outcome = self
            .run(Retry::Always, |mut kv| {
                let probe = probe.clone();
                let options = options.clone();
                async move { kv.get(probe, Some(options)).await }
            })
            .await;
        match outcome {
            Ok(_) | Err(Failure::FutureRevision) => Ok(()),
            Err(Failure::Compacted) => Err(self.compacted(key, self.compaction_point(revision).await, revision)),
            Err(failure) => Err(failure.into_error(key)),
        }
    }

    /// Opens the watch for a `watch` call, retrying transient failures within the request timeout.
    async fn open_initial_watch(
        &self,
        prefix: &[u8],
        key: &[u8],
        end: &[u8],
        start: Revision,
        from_revision: Revision,
    ) -> Result<(etcd_client::WatchStream, Revision)> {
        let deadline = Instant::now() + self.request_timeout;
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let reason = match tokio::time::timeout_at(deadline, open_watch(&self.watch, key, end, start)).await {
                Ok(Ok(opened)) => return Ok(opened),
                Ok(Err(OpenFailure::Compacted(revision))) => {
                    return Err(self.compacted(prefix, revision + 1, from_revision));
                }
                Ok(Err(OpenFailure::Refused(message))) => {
                    return Err(StoreError::Internal { key: prefix.to_vec(), message });
                }
                Ok(Err(OpenFailure::Unavailable(reason))) => reason,
                Err(_) => format!("etcd did not confirm the watch within {:?}", self.request_timeout),
            };
            if Instant::now() + backoff >= deadline {
                return Err(StoreError::Unavailable { key: prefix.to_vec(), reason });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Why a watch could not be opened.
enum OpenFailure {
    /// etcd canceled it because the start revision is before its compaction revision (given).
    Compacted(Revision),
    /// etcd refused it for another reason.
    Refused(String),
    /// No member could be reached.
    Unavailable(String),
}

/// Opens an etcd watch on `[key, end)` from `start` (inclusive, `0` for now) with previous values, and waits
/// until etcd confirms it. Returns the stream and the revision etcd was at when it created the watch.
async fn open_watch(
    client: &WatchClient,
    key: &[u8],
    end: &[u8],
    start: Revision,
) -> Result<(etcd_client::WatchStream, Revision), OpenFailure> {
    let options = WatchOptions::new().with_range(end.to_vec()).with_prev_key().with_start_revision(start);
    let mut stream = client
        .clone()
        .watch(key.to_vec(), Some(options))
        .await
        .map_err(|err| OpenFailure::Unavailable(err.to_string()))?;
    loop {
        match stream.message().await {
            Ok(Some(resp)) => {
                if resp.compact_revision() > 0 {
                    return Err(OpenFailure::Compacted(resp.compact_revision()));
                }
                if resp.canceled() {
                    return Err(OpenFailure::Refused(format!("etcd refused the watch: {}", resp.cancel_reason())));
                }
                if resp.created() {
                    // The revision anchors a watch from "now"; without it events could be missed.
                    return match resp.header() {
                        Some(header) => Ok((stream, header.revision())),
                        None => Err(OpenFailure::Refused("etcd confirmed the watch without a response header".into())),
                    };
                }
                // Nothing precedes the created response on a new stream; anything else is ignored.
            }
            Ok(None) => {
                return Err(OpenFailure::Unavailable("etcd closed the watch stream".into()));
            }
            Err(err) => return Err(OpenFailure::Unavailable(err.to_string())),
        }
    }
}

/// The state behind a [`WatchStream`]: an etcd watch that is reopened when its connection breaks.
struct Watcher {
    client: WatchClient,
    converter: Converter,
    /// The caller's prefix, for errors.
    prefix: Vec<u8>,
    key: Vec<u8>,
    end: Vec<u8>,
    stream: Option<etcd_client::WatchStream>,
    /// The revision up to which every event has been received; a reopened watch skips up to it.
    last: Revision,
    pending: VecDeque<WatchEvent>,
    resume_timeout: Duration,
    finished: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            let Some(stream) = self.stream.as_mut() else {
                if let Err(err) = self.resume().await {
                    self.finished = true;
                    return Some(Err(err));
                }
                continue;
            };
            match stream.message().await {
                Ok(Some(resp)) => {
                    if let Err(err) = self.absorb(&resp) {
                        self.finished = true;
                        return Some(Err(err));
                    }
                }
                Ok(None) => {
                    tracing::debug!(prefix = %display_key(&self.prefix), "etcd closed a watch stream; resuming");
                    self.stream = None;
                }
                Err(err) => {
                    tracing::debug!(prefix = %display_key(&self.prefix), %err, "etcd watch stream broke; resuming");
                    self.stream = None;
                }
            }
        }
    }

    /// Queues the events of one etcd response, or says why the watch is over.
    fn absorb(&mut self, resp: &etcd_client::WatchResponse) -> Result<()> {
        if resp.compact_revision() > 0 {
            return Err(StoreError::Compacted {
                key: self.prefix.clone(),
                compacted: resp.compact_revision() + 1,
                requested: self.last,
            });
        }
        if resp.canceled() {
            // Not for compaction: nothing this store asks for makes etcd cancel a watch, so reopening it would
            // most likely be canceled again.
            return Err(StoreError::Unavailable {
                key: self.prefix.clone(),
                reason: format!("etcd canceled the watch: {}", resp.cancel_reason()),
            });
        }
        // A reopened watch starts at `last` itself (see `watch`), and etcd sends all events of one revision in
        // one response, so skipping by the revision reached before this response drops exactly the repeats.
        let floor = self.last;
        for event in resp.events() {
            let event = self
                .converter
                .event(event)
                .map_err(|message| StoreError::Internal { key: self.prefix.clone(), message })?;
            let revision = event.revision();
            if revision <= floor {
                continue;
            }
            self.last = self.last.max(revision);
            self.pending.push_back(event);
        }
        Ok(())
    }

    /// Reopens the watch after `last`, on whichever member answers.
    async fn resume(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.resume_timeout;
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let reason = match tokio::time::timeout_at(
                deadline,
                open_watch(&self.client, &self.key, &self.end, self.last),
            )
            .await
            {
                Ok(Ok((stream, _))) => {
                    self.stream = Some(stream);
                    return Ok(());
                }
                Ok(Err(OpenFailure::Compacted(revision))) => {
                    return Err(StoreError::Compacted {
                        key: self.prefix.clone(),
                        compacted: revision + 1,
                        requested: self.last,
                    });
                }
                Ok(Err(OpenFailure::Refused(message))) => {
                    return Err(StoreError::Internal { key: self.prefix.clone(), message });
                }
                Ok(Err(OpenFailure::Unavailable(reason))) => reason,
                Err(_) => "no etcd member confirmed the watch".to_owned(),
            };
            if Instant::now() + backoff >= deadline {
                return Err(StoreError::Unavailable {
                    key: self.prefix.clone(),
                    reason: format!("cannot resume the watch within {:?}: {reason}", self.resume_timeout),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        let probe = if self.prefix.is_empty() { vec![0] } else { self.prefix.to_vec() };
        let resp = self
            .run(Retry::Always, |mut kv| {
                let probe = probe.clone();
                async move { kv.get(probe, Some(GetOptions::new().with_count_only())).await }
            })
            .await
            .map_err(|failure| failure.into_error(&[]))?;
        header_revision(resp.header(), &[])
    }

    async fn get(&self, key: &[u8]) -> Result<KeyValue> {
        check_key(key)?;
        let full = self.full_key(key);
        let mut resp = self
            .run(Retry::Always, |mut kv| {
                let full = full.clone();
                async move { kv.get(full, None).await }
            })
            .await
            .map_err(|failure| failure.into_error(key))?;
        match resp.take_kvs().into_iter().next() {
            Some(kv) => self.convert_kv(kv, key),
            None => Err(StoreError::NotFound { key: key.to_vec() }),
        }
    }

    async fn list(&self, prefix: &[u8], options: ListOptions) -> Result<ListPage> {
        let revision = match options.revision {
            None | Some(0) => None,
            Some(revision) if revision < 0 => {
                return Err(StoreError::InvalidRequest {
                    key: prefix.to_vec(),
                    reason: format!("negative revision {revision}"),
                });
            }
            Some(revision) => Some(revision),
        };
        let (mut start, end) = prefix_range(&self.full_key(prefix));
        if let Some(continue_from) = &options.continue_from {
            if !continue_from.starts_with(prefix) {
                return Err(StoreError::InvalidRequest {
                    key: prefix.to_vec(),
                    reason: format!("continue key {} is outside the listed prefix", display_key(continue_from)),
                });
            }
            let full = self.full_key(continue_from);
            if !full.is_empty() {
                start = full;
            }
        }
        let mut get = GetOptions::new().with_range(end);
        if let Some(limit) = options.limit.filter(|&limit| limit > 0) {
            get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }

        let (mut resp, page_revision) = match revision {
            None => {
                let resp = self
                    .run(Retry::Always, |mut kv| {
                        let start = start.clone();
                        let get = get.clone();
                        async move { kv.get(start, Some(get)).await }
                    })
                    .await
                    .map_err(|failure| failure.into_error(prefix))?;
                let revision = header_revision(resp.header(), prefix)?;
                (resp, revision)
            }
            Some(revision) => {
                let mut ops = vec![TxnOp::get(start.clone(), Some(get.with_revision(revision)))];
                if revision > 1 {
                    // etcd still holds the state at its own compaction revision, one below the store's (see the
                    // module docs); a read of the revision before fails exactly when the store has compacted
                    // `revision` away, atomically with the list.
                    let guard = GetOptions::new().with_revision(revision - 1).with_count_only();
                    ops.push(TxnOp::get(start.clone(), Some(guard)));
                }
                let txn = Txn::new().and_then(ops);
                let outcome = self
                    .run(Retry::Always, |mut kv| {
                        let txn = txn.clone();
                        async move { kv.txn(txn).await }
                    })
                    .await;
                let resp = match outcome {
                    Ok(resp) => resp,
                    Err(Failure::Compacted) => {
                        return Err(self.compacted(prefix, self.compaction_point(revision).await, revision));
                    }
                    Err(Failure::FutureRevision) => {
                        return Err(StoreError::FutureRevision {
                            key: prefix.to_vec(),
                            requested: revision,
                            current: self.current_revision().await?,
                        });
                    }
                    Err(failure) => return Err(failure.into_error(prefix)),
                };
                match first_op(&resp, prefix)? {
                    TxnOpResponse::Get(get) => (get, revision),
                    _ => {
                        return Err(StoreError::Internal {
                            key: prefix.to_vec(),
                            message: "etcd answered a range with another kind of result".into(),
                        });
                    }
                }
            }
        };

        let more = resp.more();
        let items = resp.take_kvs().into_iter().map(|kv| self.convert_kv(kv, prefix)).collect::<Result<Vec<_>>>()?;
        let continue_from = match items.last() {
            Some(last) if more => {
                let mut next = Vec::with_capacity(last.key.len() + 1);
                next.extend_from_slice(&last.key);
                next.push(0);
                Some(Bytes::from(next))
            }
            _ => None,
        };
        Ok(ListPage { items, revision: page_revision, continue_from })
    }

    async fn count(&self, prefix: &[u8]) -> Result<u64> {
        let (key, end) = prefix_range(&self.full_key(prefix));
        let resp = self
            .run(Retry::Always, |mut kv| {
                let key = key.clone();
                let end = end.clone();
                async move { kv.get(key, Some(GetOptions::new().with_range(end).with_count_only())).await }
            })
            .await
            .map_err(|failure| failure.into_error(prefix))?;
        u64::try_from(resp.count()).map_err(|_| StoreError::Internal {
            key: prefix.to_vec(),
            message: format!("etcd reported a negative count {}", resp.count()),
        })
    }

    async fn create(&self, key: &[u8], value: Bytes) -> Result<Revision> {
        check_key(key)?;
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full.clone(), Vec::from(value), None)])
            .or_else([TxnOp::get(full, None)]);
        let resp = self
            .run(Retry::IfUnsent, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await
            .map_err(|failure| failure.into_error(key))?;
        if resp.succeeded() {
            return header_revision(resp.header(), key);
        }
        match first_op(&resp, key)? {
            TxnOpResponse::Get(get) if !get.kvs().is_empty() => {
                Err(StoreError::AlreadyExists { key: key.to_vec(), current: get.kvs()[0].mod_revision() })
            }
            _ => Err(StoreError::Internal {
                key: key.to_vec(),
                message: "etcd refused a create but did not return the existing key".into(),
            }),
        }
    }

    async fn update(&self, key: &[u8], value: Bytes, expected: Revision) -> Result<Revision> {
        check_key(key)?;
        let full = self.full_key(key);
        // An absent key compares as all zeroes, so the version check keeps `expected == 0` from creating it.
        let txn = Txn::new()
            .when([
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
                Compare::version(full.clone(), CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(full.clone(), Vec::from(value), None)])
            .or_else([TxnOp::get(full, None)]);
        let resp = self
            .run(Retry::IfUnsent, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await
            .map_err(|failure| failure.into_error(key))?;
        if resp.succeeded() {
            return header_revision(resp.header(), key);
        }
        Err(self.refusal(&resp, key, expected)?)
    }

    async fn delete(&self, key: &[u8], expected: Option<Revision>) -> Result<Deleted> {
        check_key(key)?;
        let full = self.full_key(key);
        let delete = DeleteOptions::new().with_prev_key();
        let (mut deleted, revision) = match expected {
            None => {
                let resp = self
                    .run(Retry::IfUnsent, |mut kv| {
                        let full = full.clone();
                        let delete = delete.clone();
                        async move { kv.delete(full, Some(delete)).await }
                    })
                    .await
                    .map_err(|failure| failure.into_error(key))?;
                let revision = header_revision(resp.header(), key)?;
                (resp, revision)
            }
            Some(expected) => {
                let txn = Txn::new()
                    .when([
                        Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
                        Compare::version(full.clone(), CompareOp::Greater, 0),
                    ])
                    .and_then([TxnOp::delete(full.clone(), Some(delete))])
                    .or_else([TxnOp::get(full.clone(), None)]);
                let resp = self
                    .run(Retry::IfUnsent, |mut kv| {
                        let txn = txn.clone();
                        async move { kv.txn(txn).await }
                    })
                    .await
                    .map_err(|failure| failure.into_error(key))?;
                if !resp.succeeded() {
                    return Err(self.refusal(&resp, key, expected)?);
                }
                let revision = header_revision(resp.header(), key)?;
                match first_op(&resp, key)? {
                    TxnOpResponse::Delete(deleted) => (deleted, revision),
                    _ => {
                        return Err(StoreError::Internal {
                            key: key.to_vec(),
                            message: "etcd answered a delete with another kind of result".into(),
                        });
                    }
                }
            }
        };
        if deleted.deleted() == 0 {
            return Err(StoreError::NotFound { key: key.to_vec() });
        }
        let prev = deleted.take_prev_kvs().into_iter().next().ok_or_else(|| StoreError::Internal {
            key: key.to_vec(),
            message: "etcd deleted the key but did not return its previous value".into(),
        })?;
        Ok(Deleted { revision, prev: self.convert_kv(prev, key)? })
    }

    async fn watch(&self, prefix: &[u8], from_revision: Revision) -> Result<WatchStream> {
        if from_revision < 0 {
            return Err(StoreError::InvalidRequest {
                key: prefix.to_vec(),
                reason: format!("negative revision {from_revision}"),
            });
        }
        let (key, end) = prefix_range(&self.full_key(prefix));
        // Starting at `from_revision` itself rather than after it (its events are skipped below) makes etcd refuse
        // exactly the watches whose history the store has compacted away, as etcd's compaction revision is one
        // below the store's.
        let (stream, created_at) = self.open_initial_watch(prefix, &key, &end, from_revision, from_revision).await?;
        if from_revision > 0 && from_revision <= created_at {
            // etcd reports a compacted start revision only asynchronously, after confirming the watch; a read at
            // the same revision tells at once.
            self.check_history(prefix, from_revision).await?;
        }
        let watcher = Watcher {
            client: self.watch.clone(),
            converter: self.converter(),
            prefix: prefix.to_vec(),
            key,
            end,
            stream: Some(stream),
            last: if from_revision == 0 { created_at } else { from_revision },
            pending: VecDeque::new(),
            resume_timeout: self.resume_timeout,
            finished: false,
        };
        Ok(Box::pin(futures::stream::unfold(watcher, |mut watcher| async move {
            watcher.next().await.map(|item| (item, watcher))
        })))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision { key: Vec::new(), requested: revision, current });
        }
        // See the module docs for why etcd compacts one revision lower.
        let target = revision - 1;
        if target < 1 {
            return Ok(());
        }
        let outcome = self
            .run(Retry::Always, |mut kv| async move {
                kv.compact(target, Some(CompactionOptions::new().with_physical())).await
            })
            .await;
        match outcome {
            // etcd refuses to compact at or before its compaction revision: already done.
            Ok(_) | Err(Failure::Compacted) => Ok(()),
            Err(Failure::FutureRevision) => Err(StoreError::FutureRevision {
                key: Vec::new(),
                requested: revision,
                current: self.current_revision().await?,
            }),
            Err(failure) => Err(failure.into_error(&[])),
        }
    }
}

impl EtcdStore {
    /// The error for a guarded write whose comparison failed: `NotFound` when the key is absent, `Conflict`
    /// otherwise. Returned as `Ok` so callers can wrap it in `Err` themselves.
    fn refusal(&self, resp: &TxnResponse, key: &[u8], expected: Revision) -> Result<StoreError> {
        match first_op(resp, key)? {
            TxnOpResponse::Get(get) => Ok(match get.kvs().first() {
                Some(kv) => StoreError::Conflict { key: key.to_vec(), expected, current: kv.mod_revision() },
                None => StoreError::NotFound { key: key.to_vec() },
            }),
            _ => Err(StoreError::Internal {
                key: key.to_vec(),
                message: "etcd answered a read with another kind of result".into(),
            }),
        }
    }
}
