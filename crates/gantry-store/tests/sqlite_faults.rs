//! Crash, corruption and growth tests of the SQLite backend, on real files and real processes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gantry_store::sqlite::{CompactionPolicy, Durability, SqliteConfig, SqliteStore};
use gantry_store::testing::patience;
use gantry_store::{ListOptions, Store, StoreError};

const CHILD_DB: &str = "GANTRY_CRASH_CHILD_DB";

/// Not a test of its own: the child process of `acknowledged_writes_survive_kill_9`. It writes as fast as it
/// can from 16 tasks and prints each acknowledged write, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by acknowledged_writes_survive_kill_9"]
async fn crash_child_writer() {
    let path = std::env::var(CHILD_DB).expect("the parent sets the database path");
    let store = Arc::new(SqliteStore::open(SqliteConfig::new(path).with_compaction(None)).expect("open"));
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{t}/{i}");
                    let rev = store.create(key.as_bytes(), Bytes::from(format!("value-{t}-{i}"))).await.expect("write");
                    // One line per acknowledged write; the parent trusts only complete lines.
                    println!("ack {key} {rev}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child writer");
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    let deadline = Instant::now() + patience();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            let (key, rev) = rest.rsplit_once(' ').unwrap();
            acked.push((key.to_string(), rev.parse::<i64>().unwrap()));
        }
        if acked.len() >= 3000 || Instant::now() > deadline {
            break;
        }
    }
    // SIGKILL mid-stream: writes are in flight in the writer's queue and in an open transaction.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acked.len() >= 3000, "the child acknowledged only {} writes", acked.len());

    let store = SqliteStore::open(SqliteConfig::new(&path).with_compaction(None)).expect("reopen after the crash");
    for (key, rev) in &acked {
        let kv = store.get(key.as_bytes()).await.unwrap_or_else(|e| panic!("acknowledged {key} lost: {e}"));
        assert_eq!(kv.mod_revision, *rev, "{key}");
        let (t, i) = key.trim_start_matches("/crash/").split_once('/').unwrap();
        assert_eq!(kv.value, Bytes::from(format!("value-{t}-{i}")));
    }
    // The revision counter goes on from where the file left off: nothing is reused.
    let max_acked = acked.iter().map(|(_, r)| *r).max().unwrap();
    let current = store.current_revision().await.unwrap();
    assert!(current >= max_acked);
    assert_eq!(store.create(b"/after", Bytes::from_static(b"x")).await.unwrap(), current + 1);
}

#[tokio::test]
async fn reopen_keeps_data_and_never_reuses_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let last = {
        let store = SqliteStore::open(SqliteConfig::new(&path).with_compaction(None)).unwrap();
        store.create(b"/k/a", Bytes::from_static(b"a")).await.unwrap();
        store.create(b"/k/b", Bytes::from_static(b"b")).await.unwrap();
        // The newest change is a delete, then compaction removes its tombstone: the revision must survive.
        let deleted = store.delete(b"/k/b", None).await.unwrap().revision;
        store.compact(deleted).await.unwrap();
        wait_until(|| store.compacted_revision() == deleted).await;
        deleted
    };
    let store = SqliteStore::open(SqliteConfig::new(&path).with_compaction(None)).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), last);
    assert_eq!(store.compacted_revision(), last);
    assert_eq!(store.get(b"/k/a").await.unwrap().value, Bytes::from_static(b"a"));
    assert!(matches!(store.get(b"/k/b").await, Err(StoreError::NotFound { .. })));
    assert_eq!(store.create(b"/k/c", Bytes::from_static(b"c")).await.unwrap(), last + 1);
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience();
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met within {:?}", patience());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn a_file_that_is_not_a_database_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![0x5au8; 8192]).unwrap();
    match SqliteStore::open(SqliteConfig::new(&path)) {
        Err(StoreError::Corrupt { path: p, .. }) => assert_eq!(p, path),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("opened garbage as a store"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x5au8; 8192], "the file was left untouched");
}

#[test]
fn a_damaged_store_file_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(SqliteConfig::new(&path).with_compaction(None)).unwrap();
        for i in 0..2000 {
            store.create(format!("/d/{i:05}").as_bytes(), Bytes::from(vec![1u8; 200])).await.unwrap();
        }
    });
    drop(runtime);
    // Overwrite pages in the middle of the file (past the header) with garbage.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 1024, "the database is big enough to damage: {}", bytes.len());
    for b in &mut bytes[8192..40960] {
        *b = 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let result = runtime.block_on(async {
        let store = SqliteStore::open(SqliteConfig::new(&path).with_compaction(None))?;
        store.list(b"/d/", ListOptions::default()).await.map(|_| ())
    });
    match result {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');").unwrap();
    drop(conn);
    let err = SqliteStore::open(SqliteConfig::new(&path)).err().expect("refused");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("not a Gantry store"), "{err}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let body: String = conn.query_row("SELECT body FROM notes", [], |r| r.get(0)).unwrap();
    assert_eq!(body, "keep me");
}

#[test]
fn a_store_written_by_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(SqliteConfig::new(&path)).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!("PRAGMA user_version = {}", gantry_store::sqlite::SCHEMA_VERSION + 1)).unwrap();
    drop(conn);
    match SqliteStore::open(SqliteConfig::new(&path)) {
        Err(StoreError::UnsupportedSchema { found, supported, .. }) => {
            assert_eq!(found, supported + 1);
        }
        Err(other) => panic!("expected UnsupportedSchema, got {other}"),
        Ok(_) => panic!("opened a newer schema"),
    }
}

#[test]
fn a_directory_in_place_of_the_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(SqliteConfig::new(dir.path())).err().expect("refused");
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
}

fn file_size(path: &std::path::Path, suffix: &str) -> u64 {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    std::fs::metadata(name).map(|m| m.len()).unwrap_or(0)
}

/// 1,000 nodes renewing their Lease: the same keys rewritten over and over. With automatic compaction the
/// database reaches a steady size instead of growing with every renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_renewals_keep_the_database_bounded() {
    const NODES: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut config =
        SqliteConfig::new(&path).with_durability(Durability::Normal).with_compaction(Some(CompactionPolicy {
            keep_revisions: 2_000,
            min_age: Duration::ZERO,
            interval: Duration::from_millis(50),
        }));
    config.checkpoint_interval = Duration::from_millis(50);
    config.wal_truncate_bytes = 8 << 20;
    let store = Arc::new(SqliteStore::open(config).unwrap());
    let lease = |node: usize, round: usize| {
        Bytes::from(format!(
            r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{{"name":"node-{node}","namespace":"kube-node-lease"}},"spec":{{"holderIdentity":"node-{node}","leaseDurationSeconds":40,"renewTime":"2026-11-27T10:{:02}:{:02}.000000Z"}}}}"#,
            round / 60 % 60,
            round % 60
        ))
    };
    let mut revisions = vec![0; NODES];
    for (node, rev) in revisions.iter_mut().enumerate() {
        *rev = store
            .create(format!("/registry/leases/kube-node-lease/node-{node}").as_bytes(), lease(node, 0))
            .await
            .unwrap();
    }
    let (mut sizes, mut wal_sizes) = (Vec::new(), Vec::new());
    for round in 1..=60 {
        // Renewals arrive concurrently, as from many nodes.
        let tasks: Vec<_> = (0..NODES)
            .map(|node| {
                let store = Arc::clone(&store);
                let rev = revisions[node];
                let value = lease(node, round);
                tokio::spawn(async move {
                    let key = format!("/registry/leases/kube-node-lease/node-{node}");
                    store.update(key.as_bytes(), value, rev).await.unwrap()
                })
            })
            .collect();
        for (node, task) in tasks.into_iter().enumerate() {
            revisions[node] = task.await.unwrap();
        }
        if round % 10 == 0 {
            // Let compaction and a checkpoint run before measuring.
            let current = store.current_revision().await.unwrap();
            wait_until(|| store.compacted_revision() >= current - 2_000 - 2 * NODES as i64).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
            sizes.push(file_size(&path, ""));
            wal_sizes.push(file_size(&path, "-wal"));
        }
    }
    let rows = store.list(b"/registry/leases/", ListOptions::default()).await.unwrap().items.len();
    assert_eq!(rows, NODES);
    println!("database bytes after every 10 rounds: {sizes:?}; WAL bytes: {wal_sizes:?}");
    // Without compaction the 30,000 renewals between round 30 and round 60 would add at least their own bytes
    // to the file; with it, freed pages are reused and the file grows by a small fraction of that at most
    // (page reuse is not perfect: SQLite's free list fragments, so a plateau a little above round 30 is normal).
    let renewal_bytes = 30 * NODES as u64 * lease(0, 0).len() as u64;
    let (early, late) = (sizes[2], *sizes.last().unwrap());
    assert!(
        late <= early + renewal_bytes / 4,
        "30,000 renewals ({renewal_bytes} bytes) grew the database from {early} to {late} bytes: \
         compaction is not keeping up"
    );
    let wal_max = *wal_sizes.iter().max().unwrap();
    assert!(wal_max <= 16 << 20, "the WAL grew to {wal_max} bytes despite checkpoints");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_keeps_the_configured_history() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig::new(dir.path().join("state.db")).with_compaction(Some(CompactionPolicy {
        keep_revisions: 100,
        min_age: Duration::ZERO,
        interval: Duration::from_millis(20),
    }));
    let store = SqliteStore::open(config).unwrap();
    let mut rev = store.create(b"/ac/a", Bytes::from_static(b"0")).await.unwrap();
    for i in 0..500 {
        rev = store.update(b"/ac/a", Bytes::from(i.to_string()), rev).await.unwrap();
    }
    wait_until(|| store.compacted_revision() >= rev - 100).await;
    assert!(store.compacted_revision() <= rev - 100, "keeps at least the last 100 revisions");
    let recent = store.list(b"/ac/", ListOptions { revision: Some(rev - 99), ..Default::default() }).await;
    assert!(recent.is_ok(), "{recent:?}");
    let old = store.list(b"/ac/", ListOptions { revision: Some(2), ..Default::default() }).await;
    assert!(matches!(old, Err(StoreError::Compacted { .. })), "{old:?}");
}
