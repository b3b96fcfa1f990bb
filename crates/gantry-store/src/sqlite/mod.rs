//! The embedded SQLite backend, Gantry's default store.
//!
//! - **Layout**: one row per revision in a log table (see `schema`), so that reads at a past revision and watches
//!   from a past revision are index range scans.
//! - **Writes**: one writer thread commits whatever is queued as one transaction (group commit); each commit is
//!   fsynced before any write in it is acknowledged (with the default [`Durability::Full`]).
//! - **Reads**: a pool of connections, each read in its own snapshot; WAL mode lets them run beside the writer.
//! - **Watches**: see `watch`: live events from memory, history from the database, bounded buffers everywhere.
//! - **Bounded growth**: a maintenance thread compacts old revisions by policy ([`CompactionPolicy`]) and
//!   checkpoints the WAL without stalling writers.

mod maintenance;
mod reader;
mod schema;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub use schema::{APPLICATION_ID, Durability, SCHEMA_VERSION};

use crate::{Deleted, KeyValue, ListOptions, ListPage, Revision, Store, StoreError, WatchStream};
use reader::{Reader, ReaderPool};
use watch::Hub;
use writer::{Command, WriteOp, WriteOutcome, Writer};

/// When old revisions are discarded automatically.
///
/// The compaction point is the older of "`keep_revisions` before the current revision" and "the revision that was
/// current `min_age` ago": history is kept while either rule wants it. Kubernetes clients need recent history
/// to resume watches after a disconnect; nobody needs hours of lease renewals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Always keep at least this many recent revisions.
    pub keep_revisions: Revision,
    /// Always keep at least this much recent history.
    pub min_age: Duration,
    /// How often to check.
    pub interval: Duration,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            keep_revisions: 10_000,
            min_age: Duration::from_secs(5 * 60),
            interval: Duration::from_secs(30),
        }
    }
}

/// How to open a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file (created with its parent directories if missing).
    pub path: PathBuf,
    /// fsync policy for commits.
    pub durability: Durability,
    /// Automatic compaction; `None` leaves compaction to explicit [`Store::compact`] calls.
    pub compaction: Option<CompactionPolicy>,
    /// How often the WAL is checkpointed into the database file.
    pub checkpoint_interval: Duration,
    /// WAL size (bytes) beyond which a checkpoint also truncates the WAL, briefly waiting for the writer.
    pub wal_truncate_bytes: u64,
    /// The most writes committed in one transaction.
    pub max_batch: usize,
    /// Writes queued for the writer before callers wait (backpressure).
    pub write_queue: usize,
    /// Live events buffered per watcher before it is made to catch up from the database.
    pub watch_buffer: usize,
}

impl SqliteConfig {
    /// Defaults for a store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            durability: Durability::Full,
            compaction: Some(CompactionPolicy::default()),
            checkpoint_interval: Duration::from_secs(1),
            wal_truncate_bytes: 64 << 20,
            max_batch: 1024,
            write_queue: 8192,
            watch_buffer: 1024,
        }
    }

    /// With a compaction policy (or none).
    pub fn with_compaction(mut self, compaction: Option<CompactionPolicy>) -> Self {
        self.compaction = compaction;
        self
    }

    /// With a durability policy.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

/// What watch tasks and reads need; outlives the store handle while watches drain.
pub(crate) struct Shared {
    readers: ReaderPool,
    hub: Arc<Hub>,
    watch_buffer: usize,
}

impl Shared {
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Reader<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || shared.readers.with(f))
            .await
            .map_err(|e| StoreError::Unavailable { key: Vec::new(), reason: format!("read task failed: {e}") })?
    }
}

/// The embedded SQLite store. Cheap to clone; the background threads stop when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    shared: Arc<Shared>,
    commands: Option<mpsc::Sender<Command>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit; dropping `stop` wakes maintenance.
        self.commands.take();
        self.stop.take();
        for thread in self.threads.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = thread.join();
        }
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `config.path`. Fails with [`StoreError::Corrupt`] for a damaged file or
    /// one that is not a Gantry store, and [`StoreError::UnsupportedSchema`] for one written by a newer Gantry.
    pub fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        let path = config.path.clone();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| StoreError::Open { path: parent.to_path_buf(), source })?;
        }
        if path.is_dir() {
            return Err(StoreError::Open {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::IsADirectory, "the store path is a directory"),
            });
        }
        let mut conn = schema::connect(&path, config.durability)?;
        let state = schema::prepare(&mut conn, &path)?;
        let hub = Arc::new(Hub::new(state.current, state.compact_revision));
        let shared = Arc::new(Shared {
            readers: ReaderPool::new(path.clone(), config.durability),
            hub: Arc::clone(&hub),
            watch_buffer: config.watch_buffer.max(1),
        });

        let (commands, rx) = mpsc::channel(config.write_queue.max(1));
        let writer = Writer {
            conn,
            path: path.clone(),
            hub,
            current: state.current,
            compact_revision: state.compact_revision,
            compact_done: state.compact_done,
            max_batch: config.max_batch.max(1),
        };
        let spawn_err = |source| StoreError::Open { path: path.clone(), source };
        let writer_thread =
            std::thread::Builder::new().name("store-writer".into()).spawn(move || writer.run(rx)).map_err(spawn_err)?;

        let (stop, stopped) = std::sync::mpsc::channel();
        let maintenance = maintenance::Maintenance {
            path: path.clone(),
            durability: config.durability,
            hub: Arc::clone(&shared.hub),
            commands: commands.clone(),
            policy: config.compaction.clone(),
            checkpoint_interval: config.checkpoint_interval,
            wal_truncate_bytes: config.wal_truncate_bytes,
        };
        let maintenance_thread = std::thread::Builder::new()
            .name("store-maintenance".into())
            .spawn(move || maintenance.run(stopped))
            .map_err(spawn_err)?;

        tracing::info!(path = %path.display(), revision = state.current, compacted = state.compact_revision, "store opened");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                shared,
                commands: Some(commands),
                threads: Mutex::new(vec![writer_thread, maintenance_thread]),
                stop: Some(stop),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The current compaction point: reads before it fail with [`StoreError::Compacted`].
    pub fn compacted_revision(&self) -> Revision {
        self.inner.shared.hub.compacted()
    }

    async fn submit<T>(
        &self,
        key: &[u8],
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let closed = || StoreError::Unavailable { key: key.to_vec(), reason: "the store is shutting down".into() };
        let commands = self.inner.commands.as_ref().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        commands.send(make(reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        let key = match &op {
            WriteOp::Create { key, .. } | WriteOp::Update { key, .. } | WriteOp::Delete { key, .. } => key.clone(),
        };
        check_key(&key)?;
        self.submit(&key, |reply| Command::Write { op, reply }).await
    }
}

fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidRequest { key: Vec::new(), reason: "the key is empty".into() });
    }
    Ok(())
}

fn unexpected(key: &[u8]) -> StoreError {
    StoreError::Internal { key: key.to_vec(), message: "the writer answered with the wrong kind of outcome".into() }
}

#[async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.shared.hub.revision())
    }

    async fn get(&self, key: &[u8]) -> Result<KeyValue, StoreError> {
        check_key(key)?;
        let key = key.to_vec();
        self.inner.shared.read(move |r| r.get(&key)).await
    }

    async fn list(&self, prefix: &[u8], options: ListOptions) -> Result<ListPage, StoreError> {
        let prefix = prefix.to_vec();
        self.inner.shared.read(move |r| r.list(&prefix, &options)).await
    }

    async fn count(&self, prefix: &[u8]) -> Result<u64, StoreError> {
        let prefix = prefix.to_vec();
        self.inner.shared.read(move |r| r.count(&prefix)).await
    }

    async fn create(&self, key: &[u8], value: Bytes) -> Result<Revision, StoreError> {
        match self.write(WriteOp::Create { key: Bytes::copy_from_slice(key), value }).await? {
            WriteOutcome::Written(revision) => Ok(revision),
            WriteOutcome::Deleted(_) => Err(unexpected(key)),
        }
    }

    async fn update(&self, key: &[u8], value: Bytes, expected: Revision) -> Result<Revision, StoreError> {
        match self.write(WriteOp::Update { key: Bytes::copy_from_slice(key), value, expected }).await? {
            WriteOutcome::Written(revision) => Ok(revision),
            WriteOutcome::Deleted(_) => Err(unexpected(key)),
        }
    }

    async fn delete(&self, key: &[u8], expected: Option<Revision>) -> Result<Deleted, StoreError> {
        match self.write(WriteOp::Delete { key: Bytes::copy_from_slice(key), expected }).await? {
            WriteOutcome::Deleted(deleted) => Ok(deleted),
            WriteOutcome::Written(_) => Err(unexpected(key)),
        }
    }

    async fn watch(&self, prefix: &[u8], from_revision: Revision) -> Result<WatchStream, StoreError> {
        let shared = Arc::clone(&self.inner.shared);
        let cursor = if from_revision == 0 { shared.hub.revision() } else { from_revision };
        let compacted = shared.hub.compacted();
        if cursor + 1 < compacted {
            return Err(StoreError::Compacted { key: prefix.to_vec(), compacted, requested: from_revision });
        }
        // Small: the consumer's side of the pipe. Lag beyond it is absorbed by the subscription and then by
        // replay from the database, never by memory.
        let (out, events) = mpsc::channel(64);
        tokio::spawn(watch::serve(shared, Bytes::copy_from_slice(prefix), cursor, out));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(events)))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.submit(b"", |reply| Command::Compact { revision, reply }).await
    }
}
