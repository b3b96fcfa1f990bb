//! Reads on the SQLite backend: a pool of connections, each read in its own snapshot (WAL mode lets readers run
//! beside the writer without blocking it).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row};

use super::schema::{Durability, classify, connect, read_meta};
use crate::{EventKind, KeyValue, ListOptions, ListPage, Revision, StoreError, WatchEvent};

/// Idle read connections kept open; more are opened under load and closed when returned to a full pool.
const MAX_IDLE: usize = 8;

pub(crate) struct ReaderPool {
    path: PathBuf,
    durability: Durability,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    pub fn new(path: PathBuf, durability: Durability) -> Self {
        ReaderPool { path, durability, idle: Mutex::new(Vec::new()) }
    }

    /// Runs `f` on a pooled connection. Blocking: call it from a blocking thread.
    pub fn with<T>(&self, f: impl FnOnce(&mut Reader<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match taken {
            Some(conn) => conn,
            None => {
                let conn = connect(&self.path, self.durability)?;
                conn.execute_batch("PRAGMA query_only = 1").map_err(|e| classify(&self.path, b"", e))?;
                conn
            }
        };
        let result = f(&mut Reader { conn: &mut conn, path: &self.path });
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }
}

pub(crate) struct Reader<'a> {
    conn: &'a mut Connection,
    path: &'a Path,
}

/// A key range: keys starting with `prefix`.
struct Range {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Range {
    fn prefix(prefix: &[u8]) -> Self {
        Range { start: prefix.to_vec(), end: crate::prefix_end(prefix) }
    }

    /// `AND`-clause for a key column, with the parameters it needs. Two statement shapes rather than
    /// `(?end IS NULL OR key < ?end)`, which would keep SQLite from bounding the index scan.
    fn clause(&self, column: &str, first_param: usize) -> String {
        match self.end {
            Some(_) => format!("{column} >= ?{first_param} AND {column} < ?{}", first_param + 1),
            None => format!("{column} >= ?{first_param}"),
        }
    }

    fn params(&self) -> Vec<&dyn rusqlite::ToSql> {
        let mut out: Vec<&dyn rusqlite::ToSql> = vec![&self.start];
        if let Some(end) = &self.end {
            out.push(end);
        }
        out
    }
}

fn kv_from(row: &Row<'_>, first: usize) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: Bytes::from(row.get::<_, Vec<u8>>(first)?),
        create_revision: row.get(first + 1)?,
        mod_revision: row.get(first + 2)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(first + 3)?),
    })
}

impl Reader<'_> {
    fn err(&self, key: &[u8]) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        let key = key.to_vec();
        move |e| classify(self.path, &key, e)
    }

    pub fn get(&mut self, key: &[u8]) -> Result<KeyValue, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT key, create_revision, id, value, deleted FROM kv WHERE key = ?1 ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([key], |row| Ok((kv_from(row, 0)?, row.get::<_, i64>(4)? != 0))).optional()
            })
            .map_err(self.err(key))?;
        match row {
            Some((kv, false)) => Ok(kv),
            _ => Err(StoreError::NotFound { key: key.to_vec() }),
        }
    }

    pub fn list(&mut self, prefix: &[u8], options: &ListOptions) -> Result<ListPage, StoreError> {
        let range = Range::prefix(prefix);
        let mut start = prefix.to_vec();
        if let Some(from) = &options.continue_from {
            if !from.starts_with(prefix) {
                return Err(StoreError::InvalidRequest {
                    key: prefix.to_vec(),
                    reason: format!("continue key {} is outside the listed prefix", crate::display_key(from)),
                });
            }
            start = from.to_vec();
        }
        let limit = options.limit.filter(|&l| l > 0);
        let path = self.path;
        let tx = self.conn.transaction().map_err(|e| classify(path, prefix, e))?;
        let (current, compacted) = snapshot_state(&tx).map_err(|e| classify(path, prefix, e))?;
        let revision = match options.revision {
            None | Some(0) => current,
            Some(r) => r,
        };
        check_readable(prefix, revision, current, compacted)?;

        // For each key in range, its newest row at or before `revision` (SQLite takes the bare columns from the
        // row that holds the max), keeping only keys alive at that revision.
        let sql = format!(
            "SELECT key, create_revision, max(id), value, deleted FROM kv
             WHERE {} AND id <= ?{} GROUP BY key HAVING deleted = 0 ORDER BY key LIMIT ?{}",
            Range { start: start.clone(), end: range.end.clone() }.clause("key", 1),
            range.params().len() + 1,
            range.params().len() + 2,
        );
        let fetch = limit.map_or(-1, |l| l as i64 + 1);
        let mut items = {
            let mut stmt = tx.prepare_cached(&sql).map_err(|e| classify(path, prefix, e))?;
            let mut params: Vec<&dyn rusqlite::ToSql> = vec![&start];
            if let Some(end) = &range.end {
                params.push(end);
            }
            params.push(&revision);
            params.push(&fetch);
            stmt.query_map(params.as_slice(), |row| kv_from(row, 0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| classify(path, prefix, e))?
        };
        let mut continue_from = None;
        if let Some(limit) = limit
            && items.len() > limit
        {
            items.truncate(limit);
            if let Some(last) = items.last() {
                let mut next = last.key.to_vec();
                next.push(0);
                continue_from = Some(Bytes::from(next));
            }
        }
        Ok(ListPage { items, revision, continue_from })
    }

    pub fn count(&mut self, prefix: &[u8]) -> Result<u64, StoreError> {
        let range = Range::prefix(prefix);
        let sql = format!(
            "SELECT count(*) FROM (SELECT max(id), deleted FROM kv WHERE {} GROUP BY key HAVING deleted = 0)",
            range.clause("key", 1)
        );
        let params = range.params();
        let count: i64 = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_row(params.as_slice(), |row| row.get(0)))
            .map_err(self.err(prefix))?;
        Ok(count.max(0) as u64)
    }

    /// Changes to keys under `prefix` with `after < revision <= upto`, oldest first, at most `limit`.
    pub fn events(
        &mut self,
        prefix: &[u8],
        after: Revision,
        upto: Revision,
        limit: usize,
    ) -> Result<Vec<WatchEvent>, StoreError> {
        let range = Range::prefix(prefix);
        let path = self.path;
        let tx = self.conn.transaction().map_err(|e| classify(path, prefix, e))?;
        let compacted = read_meta(&tx, "compact_revision").map_err(|e| classify(path, prefix, e))?;
        // The change at `after + 1` must still be stored, with what it replaced.
        if after + 1 < compacted {
            return Err(StoreError::Compacted { key: prefix.to_vec(), compacted, requested: after });
        }
        let n = range.params().len();
        let sql = format!(
            "SELECT k.key, k.create_revision, k.id, k.value, k.deleted,
                    p.key, p.create_revision, p.id, p.value, p.deleted
             FROM kv AS k LEFT JOIN kv AS p ON p.id = k.prev_revision
             WHERE k.id > ?{} AND k.id <= ?{} AND {} ORDER BY k.id LIMIT ?{}",
            n + 1,
            n + 2,
            range.clause("k.key", 1),
            n + 3
        );
        let limit = limit as i64;
        let mut params = range.params();
        params.push(&after);
        params.push(&upto);
        params.push(&limit);
        let mut stmt = tx.prepare_cached(&sql).map_err(|e| classify(path, prefix, e))?;
        let rows = stmt
            .query_map(params.as_slice(), |row| {
                let kv = kv_from(row, 0)?;
                let deleted = row.get::<_, i64>(4)? != 0;
                let prev = match row.get::<_, Option<i64>>(7)? {
                    // A tombstone before the key was created again is no previous value.
                    Some(_) if row.get::<_, i64>(9)? == 0 => Some(kv_from(row, 5)?),
                    _ => None,
                };
                Ok((kv, deleted, prev))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| classify(path, prefix, e))?;
        Ok(rows
            .into_iter()
            .map(|(kv, deleted, prev)| {
                let kind = match (deleted, &prev) {
                    (true, _) => EventKind::Delete,
                    (false, Some(_)) => EventKind::Update,
                    (false, None) => EventKind::Create,
                };
                WatchEvent { kind, kv, prev }
            })
            .collect())
    }
}

fn snapshot_state(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<(Revision, Revision)> {
    let current: Option<Revision> = tx.query_row("SELECT max(id) FROM kv", [], |r| r.get(0))?;
    let compacted = read_meta(tx, "compact_revision")?;
    Ok((current.unwrap_or(0), compacted))
}

fn check_readable(key: &[u8], revision: Revision, current: Revision, compacted: Revision) -> Result<(), StoreError> {
    if revision > current {
        return Err(StoreError::FutureRevision { key: key.to_vec(), requested: revision, current });
    }
    if revision < compacted {
        return Err(StoreError::Compacted { key: key.to_vec(), compacted, requested: revision });
    }
    Ok(())
}
