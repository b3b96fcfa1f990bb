//! The on-disk layout of the SQLite backend, and opening a database file safely.
//!
//! One row per revision (a log, as kine stores Kubernetes data): a create, update or delete appends a row whose
//! `id` is the revision. Each row points at the row it supersedes (`prev_revision`), which makes "the previous
//! value" of a watch event a join, and compaction an index range delete.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::{Revision, StoreError};

/// The schema this build writes. A file with a greater `user_version` was written by a newer Gantry.
pub const SCHEMA_VERSION: i64 = 1;

/// Marks a file as a Gantry store (`PRAGMA application_id`), so that opening some other SQLite database fails
/// clearly instead of writing into it. ASCII "GNTR".
pub const APPLICATION_ID: i64 = 0x474e_5452;

const CREATE_SCHEMA: &str = "
CREATE TABLE kv (
    id              INTEGER PRIMARY KEY,   -- the revision of this change
    key             BLOB    NOT NULL,
    create_revision INTEGER NOT NULL,      -- revision that created this incarnation of the key
    prev_revision   INTEGER NOT NULL,      -- the row this one supersedes, 0 for none
    deleted         INTEGER NOT NULL,      -- 1 for a tombstone
    value           BLOB    NOT NULL
);
CREATE UNIQUE INDEX kv_key_id ON kv (key, id);
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('compact_revision', 0), ('compact_done', 0);
";

/// How durable an acknowledged write is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync every commit (SQLite `synchronous=FULL`): acknowledged writes survive a crash of the process and of
    /// the machine. The default, like etcd.
    #[default]
    Full,
    /// fsync only at checkpoints (`synchronous=NORMAL`): acknowledged writes survive a crash of the process, but
    /// the last ones may be lost if the machine loses power.
    Normal,
}

pub(crate) fn classify(path: &Path, key: &[u8], err: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(ffi, ref message) = err {
        let reason = message.clone().unwrap_or_else(|| ffi.to_string());
        match ffi.code {
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                return StoreError::Corrupt { path: path.to_path_buf(), reason };
            }
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory
            | ErrorCode::ReadOnly => {
                return StoreError::Unavailable { key: key.to_vec(), reason: format!("{}: {reason}", path.display()) };
            }
            _ => {}
        }
    }
    StoreError::Internal { key: key.to_vec(), message: format!("{}: {err}", path.display()) }
}

/// Opens a connection with the settings every connection of ours uses.
pub(crate) fn connect(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, b"", e))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(|e| classify(path, b"", e))?;
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    // journal_mode is persistent in the file, but asking again is how a connection learns that the file is
    // not a database at all: the first statement that reads the header fails with NotADatabase.
    let mode: String =
        conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(|e| classify(path, b"", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable {
            key: Vec::new(),
            reason: format!("{}: cannot switch to WAL journal mode (got {mode})", path.display()),
        });
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         PRAGMA wal_autocheckpoint = 0;       -- checkpoints run on their own thread, never in a writer's commit
         PRAGMA journal_size_limit = 67108864;
         PRAGMA cache_size = -32768;          -- 32 MiB page cache per connection
         PRAGMA temp_store = MEMORY;"
    ))
    .map_err(|e| classify(path, b"", e))?;
    Ok(conn)
}

/// Checks (and on a new file creates) the schema. Returns the current and the compaction revisions.
pub(crate) fn prepare(conn: &mut Connection, path: &Path) -> Result<OpenState, StoreError> {
    let err = |e| classify(path, b"", e);
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(err)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    let tables: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0)).map_err(err)?;

    if app_id == 0 && version == 0 && tables == 0 {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(CREATE_SCHEMA).map_err(err)?;
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"))
            .map_err(err)?;
        tx.commit().map_err(err)?;
    } else if app_id != APPLICATION_ID {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("not a Gantry store (SQLite application_id is {app_id:#x}, expected {APPLICATION_ID:#x})"),
        });
    } else if version > SCHEMA_VERSION {
        return Err(StoreError::UnsupportedSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    } else if version < 1 {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("schema version {version} is invalid"),
        });
    }

    let current: Option<Revision> = conn.query_row("SELECT max(id) FROM kv", [], |r| r.get(0)).map_err(err)?;
    let compact_revision = read_meta(conn, "compact_revision").map_err(err)?;
    let compact_done = read_meta(conn, "compact_done").map_err(err)?;
    let current = current.unwrap_or(0);
    if compact_revision > current || compact_done > compact_revision {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "compaction revision {compact_revision} (done to {compact_done}) is ahead of the newest revision {current}"
            ),
        });
    }
    Ok(OpenState { current, compact_revision, compact_done })
}

/// What [`prepare`] found in the file.
pub(crate) struct OpenState {
    pub current: Revision,
    pub compact_revision: Revision,
    pub compact_done: Revision,
}

pub(crate) fn read_meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0)).optional().map(|v| v.unwrap_or(0))
}
