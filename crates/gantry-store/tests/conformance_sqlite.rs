//! The store conformance suite on the embedded SQLite backend, each test on its own database file.

use std::sync::Arc;

use gantry_store::sqlite::{SqliteConfig, SqliteStore};
use gantry_store::testing::TestStore;

async fn sqlite_store() -> TestStore {
    let dir = tempfile::tempdir().expect("temporary directory");
    // Compaction only when a test asks for it, so that history-dependent tests are deterministic. A small
    // watch buffer makes slow watchers take the catch-up path early.
    let mut config = SqliteConfig::new(dir.path().join("db").join("state.db")).with_compaction(None);
    config.watch_buffer = 64;
    let store = SqliteStore::open(config).expect("open store");
    TestStore { store: Arc::new(store), guard: Box::new(dir) }
}

gantry_store::conformance_tests!(sqlite_store());
