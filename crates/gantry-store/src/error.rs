use std::path::PathBuf;

use crate::{Revision, display_key};

/// Everything a [`Store`](crate::Store) operation can fail with.
///
/// Each variant names the key (or prefix, or path) it is about, so that a message read in a log says what was
/// touched. The API server maps these onto Kubernetes `Status` reasons: `NotFound` → 404, `AlreadyExists` and
/// `Conflict` → 409, `Compacted` → 410 Expired, `Unavailable` → 503/504, `Corrupt` and `Internal` → 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist (or was deleted).
    #[error("key {} not found", display_key(key))]
    NotFound {
        /// The key that was looked for.
        key: Vec<u8>,
    },

    /// `create` of a key that already exists.
    #[error("key {} already exists (modified at revision {current})", display_key(key))]
    AlreadyExists {
        /// The key.
        key: Vec<u8>,
        /// The key's current modification revision.
        current: Revision,
    },

    /// A compare-and-swap failed: the key's modification revision is not the expected one.
    #[error("conflict on key {}: expected modification revision {expected}, current is {current}", display_key(key))]
    Conflict {
        /// The key.
        key: Vec<u8>,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current modification revision.
        current: Revision,
    },

    /// The requested revision is older than the oldest one the store still holds. Re-list and watch again from
    /// the revision of that list.
    #[error(
        "revision {requested} has been compacted (oldest available is {compacted}) while reading {}",
        display_key(key)
    )]
    Compacted {
        /// The key or prefix the read or watch was for.
        key: Vec<u8>,
        /// The compaction revision: history at or before it is gone.
        compacted: Revision,
        /// The revision the caller asked for.
        requested: Revision,
    },

    /// A revision in the future was asked for.
    #[error("revision {requested} of {} is newer than the current revision {current}", display_key(key))]
    FutureRevision {
        /// The key or prefix.
        key: Vec<u8>,
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },

    /// A caller passed something the store cannot act on (an empty key, a malformed continue token, ...).
    #[error("invalid request for {}: {reason}", display_key(key))]
    InvalidRequest {
        /// The key or prefix.
        key: Vec<u8>,
        /// What was wrong.
        reason: String,
    },

    /// The backend cannot be reached or is shutting down; the operation may be retried.
    #[error("store unavailable while accessing {}: {reason}", display_key(key))]
    Unavailable {
        /// The key or prefix the operation was for (empty for store-wide operations).
        key: Vec<u8>,
        /// Why.
        reason: String,
    },

    /// The data on disk is damaged or is not a Gantry store.
    #[error("store at {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },

    /// The data on disk was written by a newer Gantry with a schema this one does not know.
    #[error(
        "store at {} has schema version {found}, but this Gantry supports at most {supported}: upgrade Gantry",
        path.display()
    )]
    UnsupportedSchema {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },

    /// Opening or creating the store's files failed.
    #[error("cannot open store at {}", path.display())]
    Open {
        /// The path being opened.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A backend error with no better classification; the message says which key.
    #[error("store error on {}: {message}", display_key(key))]
    Internal {
        /// The key or prefix.
        key: Vec<u8>,
        /// What the backend said.
        message: String,
    },
}

impl StoreError {
    /// True when the same call may succeed if retried later (the backend was unreachable or busy).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// The key (or prefix) the error is about, if it names one.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            StoreError::NotFound { key }
            | StoreError::AlreadyExists { key, .. }
            | StoreError::Conflict { key, .. }
            | StoreError::Compacted { key, .. }
            | StoreError::FutureRevision { key, .. }
            | StoreError::InvalidRequest { key, .. }
            | StoreError::Unavailable { key, .. }
            | StoreError::Internal { key, .. } => Some(key),
            StoreError::Corrupt { .. } | StoreError::UnsupportedSchema { .. } | StoreError::Open { .. } => None,
        }
    }
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
