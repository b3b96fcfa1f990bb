//! The single writer: one thread that owns the write connection and commits concurrent writes in groups.
//!
//! SQLite allows one writer at a time, and a durable commit costs an fsync. Funnelling every write through one
//! thread that drains whatever is queued into one transaction turns N concurrent writers into one fsync per
//! group instead of N, without lock contention. Compaction runs on this thread too, in small chunks between
//! groups, so it never holds the write lock for long.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::schema::classify;
use super::watch::Hub;
use crate::{Deleted, EventKind, KeyValue, Revision, StoreError, WatchEvent};

/// Revisions whose superseded rows one compaction chunk removes: small enough that a chunk holds the write lock
/// for milliseconds, large enough that compaction keeps up with thousands of writes per second.
const COMPACTION_CHUNK: Revision = 4096;

pub(crate) enum WriteOp {
    Create { key: Bytes, value: Bytes },
    Update { key: Bytes, value: Bytes, expected: Revision },
    Delete { key: Bytes, expected: Option<Revision> },
}

pub(crate) enum WriteOutcome {
    Written(Revision),
    Deleted(Deleted),
}

pub(crate) enum Command {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
    },
    /// Moves the compaction point to `revision` (history before it becomes unreadable at once; rows are removed
    /// in chunks afterwards).
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

pub(crate) struct Writer {
    pub conn: Connection,
    pub path: PathBuf,
    pub hub: Arc<Hub>,
    pub current: Revision,
    pub compact_revision: Revision,
    pub compact_done: Revision,
    pub max_batch: usize,
}

/// The latest row of a key.
struct Latest {
    id: Revision,
    create_revision: Revision,
    deleted: bool,
    value: Bytes,
}

impl Writer {
    /// Runs until every sender is gone, then closes the watch hub.
    pub fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            if self.compact_done < self.compact_revision {
                if let Err(err) = self.compact_chunk() {
                    tracing::warn!(error = %err, "compaction chunk failed; will retry");
                }
                match commands.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => continue,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match commands.blocking_recv() {
                    Some(cmd) => batch.push(cmd),
                    None => break,
                }
            }
            while batch.len() < self.max_batch {
                match commands.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
        }
        self.hub.close();
    }

    fn commit_batch(&mut self, batch: &mut Vec<Command>) {
        let start = self.current;
        let mut events = Vec::with_capacity(batch.len());
        let mut new_compaction = None;
        let mut results: Vec<Result<Outcome, StoreError>> = Vec::with_capacity(batch.len());

        let committed = (|| -> Result<(), StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| classify(&self.path, b"", e))?;
            for cmd in batch.iter() {
                let result = match cmd {
                    Command::Write { op, .. } => {
                        apply(&tx, &self.path, op, &mut self.current, &mut events).map(Outcome::Write)
                    }
                    Command::Compact { revision, .. } => {
                        let floor = new_compaction.unwrap_or(self.compact_revision);
                        set_compaction(&tx, &self.path, *revision, floor, self.current).map(|moved| {
                            if moved {
                                new_compaction = Some(*revision);
                            }
                            Outcome::Compact
                        })
                    }
                };
                // A logical failure (conflict, not found) wrote nothing and leaves the rest of the group alone; a
                // database failure aborts the whole group.
                match result {
                    Err(
                        err @ (StoreError::Corrupt { .. }
                        | StoreError::Unavailable { .. }
                        | StoreError::Internal { .. }),
                    ) => {
                        return Err(err);
                    }
                    other => results.push(other),
                }
            }
            tx.commit().map_err(|e| classify(&self.path, b"", e))
        })();

        if let Err(err) = committed {
            tracing::error!(error = %err, "write group failed; nothing of it was committed");
            self.current = start;
            for cmd in batch.drain(..) {
                // Every operation of the group shares the group's fate; each error names its own key.
                let key = match &cmd {
                    Command::Write { op, .. } => op_key(op).to_vec(),
                    Command::Compact { .. } => Vec::new(),
                };
                let error = match &err {
                    StoreError::Corrupt { path, reason } => {
                        StoreError::Corrupt { path: path.clone(), reason: reason.clone() }
                    }
                    other => StoreError::Unavailable { key, reason: other.to_string() },
                };
                match cmd {
                    Command::Write { reply, .. } => {
                        let _ = reply.send(Err(error));
                    }
                    Command::Compact { reply, .. } => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
            return;
        }

        if let Some(revision) = new_compaction {
            self.compact_revision = revision;
            self.hub.set_compacted(revision);
        }
        // Publish before replying: a caller that sees its write acknowledged and then starts a watch from an
        // older revision must find the write either in the database or in the live stream.
        self.hub.publish(&events, self.current);
        for (cmd, result) in batch.drain(..).zip(results) {
            match (cmd, result) {
                (Command::Write { reply, .. }, Ok(Outcome::Write(outcome))) => {
                    let _ = reply.send(Ok(outcome));
                }
                (Command::Write { reply, .. }, Err(err)) => {
                    let _ = reply.send(Err(err));
                }
                (Command::Compact { reply, .. }, result) => {
                    let _ = reply.send(result.map(|_| ()));
                }
                (Command::Write { reply, .. }, Ok(Outcome::Compact)) => {
                    let _ = reply.send(Err(StoreError::Internal {
                        key: Vec::new(),
                        message: "write answered with a compaction outcome".into(),
                    }));
                }
            }
        }
    }

    /// Removes the rows superseded before the next chunk of revisions below the compaction point, and the
    /// tombstones in that chunk. A reader at any revision at or after the compaction point never needs them.
    fn compact_chunk(&mut self) -> Result<(), StoreError> {
        let from = self.compact_done;
        let to = (from + COMPACTION_CHUNK).min(self.compact_revision);
        let err = |e| classify(&self.path, b"", e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        // Rows replaced by a change in [from, to): the change itself stays, what it replaced goes. Both deletes
        // run in one transaction so that a reader never sees a tombstone gone but the value it hid still there.
        tx.prepare_cached(
            "DELETE FROM kv WHERE id IN
               (SELECT prev_revision FROM kv WHERE id >= ?1 AND id < ?2 AND prev_revision > 0)",
        )
        .and_then(|mut s| s.execute(params![from, to]))
        .map_err(err)?;
        tx.prepare_cached("DELETE FROM kv WHERE id >= ?1 AND id < ?2 AND deleted = 1")
            .and_then(|mut s| s.execute(params![from, to]))
            .map_err(err)?;
        tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compact_done'")
            .and_then(|mut s| s.execute(params![to]))
            .map_err(err)?;
        tx.commit().map_err(err)?;
        self.compact_done = to;
        Ok(())
    }
}

enum Outcome {
    Write(WriteOutcome),
    Compact,
}

fn op_key(op: &WriteOp) -> &[u8] {
    match op {
        WriteOp::Create { key, .. } | WriteOp::Update { key, .. } | WriteOp::Delete { key, .. } => key,
    }
}

fn latest(tx: &rusqlite::Transaction<'_>, path: &std::path::Path, key: &[u8]) -> Result<Option<Latest>, StoreError> {
    tx.prepare_cached("SELECT id, create_revision, deleted, value FROM kv WHERE key = ?1 ORDER BY id DESC LIMIT 1")
        .and_then(|mut stmt| {
            stmt.query_row([key], |row| {
                Ok(Latest {
                    id: row.get(0)?,
                    create_revision: row.get(1)?,
                    deleted: row.get::<_, i64>(2)? != 0,
                    value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
                })
            })
            .optional()
        })
        .map_err(|e| classify(path, key, e))
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    path: &std::path::Path,
    row: (Revision, &[u8], Revision, Revision, bool, &[u8]),
) -> Result<(), StoreError> {
    let (id, key, create_revision, prev_revision, deleted, value) = row;
    tx.prepare_cached(
        "INSERT INTO kv (id, key, create_revision, prev_revision, deleted, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| stmt.execute(params![id, key, create_revision, prev_revision, deleted as i64, value]))
    .map(|_| ())
    .map_err(|e| classify(path, key, e))
}

fn apply(
    tx: &rusqlite::Transaction<'_>,
    path: &std::path::Path,
    op: &WriteOp,
    current: &mut Revision,
    events: &mut Vec<WatchEvent>,
) -> Result<WriteOutcome, StoreError> {
    let key = op_key(op);
    let latest = latest(tx, path, key)?;
    let live = latest.as_ref().filter(|row| !row.deleted);
    let prev_kv = |row: &Latest| KeyValue {
        key: Bytes::copy_from_slice(key),
        value: row.value.clone(),
        create_revision: row.create_revision,
        mod_revision: row.id,
    };
    let check = |expected: Option<Revision>| -> Result<&Latest, StoreError> {
        let row = live.ok_or_else(|| StoreError::NotFound { key: key.to_vec() })?;
        match expected {
            Some(expected) if expected != row.id => {
                Err(StoreError::Conflict { key: key.to_vec(), expected, current: row.id })
            }
            _ => Ok(row),
        }
    };
    let revision = *current + 1;
    let key_bytes = Bytes::copy_from_slice(key);
    match op {
        WriteOp::Create { value, .. } => {
            if let Some(row) = live {
                return Err(StoreError::AlreadyExists { key: key.to_vec(), current: row.id });
            }
            let prev_revision = latest.as_ref().map_or(0, |row| row.id);
            insert(tx, path, (revision, key, revision, prev_revision, false, value))?;
            *current = revision;
            events.push(WatchEvent {
                kind: EventKind::Create,
                kv: KeyValue {
                    key: key_bytes,
                    value: value.clone(),
                    create_revision: revision,
                    mod_revision: revision,
                },
                prev: None,
            });
            Ok(WriteOutcome::Written(revision))
        }
        WriteOp::Update { value, expected, .. } => {
            let row = check(Some(*expected))?;
            insert(tx, path, (revision, key, row.create_revision, row.id, false, value))?;
            *current = revision;
            events.push(WatchEvent {
                kind: EventKind::Update,
                kv: KeyValue {
                    key: key_bytes,
                    value: value.clone(),
                    create_revision: row.create_revision,
                    mod_revision: revision,
                },
                prev: Some(prev_kv(row)),
            });
            Ok(WriteOutcome::Written(revision))
        }
        WriteOp::Delete { expected, .. } => {
            let row = check(*expected)?;
            insert(tx, path, (revision, key, row.create_revision, row.id, true, b""))?;
            *current = revision;
            let prev = prev_kv(row);
            events.push(WatchEvent {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key_bytes,
                    value: Bytes::new(),
                    create_revision: row.create_revision,
                    mod_revision: revision,
                },
                prev: Some(prev.clone()),
            });
            Ok(WriteOutcome::Deleted(Deleted { revision, prev }))
        }
    }
}

/// Records a new compaction point. Returns whether it moved.
fn set_compaction(
    tx: &rusqlite::Transaction<'_>,
    path: &std::path::Path,
    revision: Revision,
    floor: Revision,
    current: Revision,
) -> Result<bool, StoreError> {
    if revision > current {
        return Err(StoreError::FutureRevision { key: Vec::new(), requested: revision, current });
    }
    if revision <= floor {
        return Ok(false);
    }
    tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compact_revision'")
        .and_then(|mut s| s.execute(params![revision]))
        .map_err(|e| classify(path, b"", e))?;
    Ok(true)
}
