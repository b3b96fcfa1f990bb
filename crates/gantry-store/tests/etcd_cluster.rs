//! Faults on a real three-member etcd cluster: the store keeps writing and watching when the leader is SIGKILLed
//! or a member restarts, and the test helpers leave no process or directory behind.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use gantry_store::etcd::{EtcdConfig, EtcdStore};
use gantry_store::testing::etcd_server::{EtcdCluster, EtcdServer};
use gantry_store::testing::patience;
use gantry_store::{Revision, Store, StoreError, WatchStream};

/// The promise under test: a write goes through this soon after the leader dies.
const FAILOVER_BUDGET: Duration = Duration::from_secs(5);

/// Each write attempt's limit; short, so that one attempt stuck on the dead leader does not eat the budget.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);

fn store_config(endpoints: Vec<String>) -> EtcdConfig {
    EtcdConfig::new(endpoints, b"/fault".to_vec())
        .with_dial_timeout(Duration::from_millis(500))
        .with_request_timeout(ATTEMPT_TIMEOUT)
}

fn process_exists(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie still has one.
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Creates fresh keys until one create succeeds, each attempt bounded. A create that timed out may still have
/// been applied, so a retry must not reuse its key. Returns the key, its revision and how many attempts it took.
async fn create_with_retries(store: &EtcdStore, name: &str, deadline: Instant) -> (Vec<u8>, Revision, usize) {
    let mut attempts = 0;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        attempts += 1;
        let key = format!("/after/{name}-{attempts}").into_bytes();
        match tokio::time::timeout(ATTEMPT_TIMEOUT, store.create(&key, Bytes::from_static(b"after"))).await {
            Ok(Ok(revision)) => return (key, revision, attempts),
            Ok(Err(err)) if err.is_retryable() => {
                eprintln!("attempt {attempts}: {err}");
                last_error = err.to_string()
            }
            Ok(Err(err)) => panic!("write failed for good after the leader was killed: {err}"),
            Err(_) => {
                eprintln!("attempt {attempts}: timed out");
                last_error = format!("attempt timed out after {ATTEMPT_TIMEOUT:?}")
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no write succeeded in time ({attempts} attempts); last error: {last_error}");
}

/// Creates `key`, retrying transient failures. A retried create that finds the key already there was itself
/// applied (nobody else writes these keys), so the existing key's revision is the write's.
async fn create_once(store: &EtcdStore, key: &[u8]) -> Revision {
    let deadline = Instant::now() + FAILOVER_BUDGET;
    loop {
        match store.create(key, Bytes::from_static(b"v")).await {
            Ok(revision) | Err(StoreError::AlreadyExists { current: revision, .. }) => return revision,
            Err(err) if err.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(err) => panic!("write of {}: {err}", String::from_utf8_lossy(key)),
        }
    }
}

/// Reads events until the one at `until`, checking that revisions strictly increase.
async fn events_until(watch: &mut WatchStream, until: Revision) -> Vec<Revision> {
    let mut seen: Vec<Revision> = Vec::new();
    while seen.last().is_none_or(|&last| last < until) {
        match tokio::time::timeout(patience(), watch.next()).await {
            Ok(Some(Ok(event))) => {
                if let Some(&last) = seen.last() {
                    assert!(event.revision() > last, "revisions go up: {} after {last}", event.revision());
                }
                seen.push(event.revision());
            }
            other => panic!("expected events up to revision {until}, got {other:?} after {seen:?}"),
        }
    }
    assert_eq!(seen.last(), Some(&until), "the watch delivered the marker's revision itself");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_resume_within_seconds_after_the_leader_is_killed() {
    let mut cluster = EtcdCluster::start(3).await.expect("start a three-member etcd cluster");
    let store = EtcdStore::connect(store_config(cluster.endpoints())).await.expect("connect to the cluster");

    let mut before = Vec::new();
    for i in 0..20 {
        let key = format!("/before/{i:02}").into_bytes();
        let revision = store.create(&key, Bytes::from(format!("value {i}"))).await.expect("write before the kill");
        before.push((key, revision));
    }
    // Several watches, so that some are likely served by the member about to die and must resume elsewhere.
    let watch_from = store.current_revision().await.expect("current revision");
    let mut watches = Vec::new();
    for _ in 0..6 {
        watches.push(store.watch(b"/", watch_from).await.expect("open a watch"));
    }

    let leader = cluster.leader().await;
    let killed_at = Instant::now();
    cluster.kill(leader);
    let (_, first, attempts) = create_with_retries(&store, "first", killed_at + FAILOVER_BUDGET).await;
    let recovery = killed_at.elapsed();
    eprintln!("after SIGKILL of leader member{leader}: first write took {recovery:?} ({attempts} attempts)");
    assert!(recovery < FAILOVER_BUDGET, "a write succeeded {recovery:?} after the kill");

    // The two survivors keep serving: more writes, reads of everything written before the kill.
    let mut last = first;
    for i in 0..10 {
        let deadline = Instant::now() + FAILOVER_BUDGET;
        last = create_with_retries(&store, &format!("more{i}"), deadline).await.1;
    }
    for (key, revision) in &before {
        let kv = store.get(key).await.expect("data written before the kill is readable");
        assert_eq!(kv.mod_revision, *revision);
    }
    let page = store.list(b"/before/", Default::default()).await.expect("list after the kill");
    assert_eq!(page.items.len(), before.len());
    assert_eq!(store.count(b"/before/").await.expect("count after the kill"), before.len() as u64);

    // Every watch saw the same history, without gaps or repeats, whichever member it was on.
    let mut histories = Vec::new();
    for watch in &mut watches {
        histories.push(events_until(watch, last).await);
    }
    assert!(histories.iter().all(|h| h == &histories[0]), "all watches saw the same events: {histories:?}");
    assert!(histories[0].contains(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_resumes_without_gaps_when_its_only_member_comes_back() {
    let mut cluster = EtcdCluster::start(3).await.expect("start a three-member etcd cluster");
    // The watching store knows one member only, so its watch must break and resume on that same member.
    let watcher = EtcdStore::connect(store_config(vec![cluster.endpoint(0)]).with_request_timeout(patience()))
        .await
        .expect("connect to member 0");
    let writer = EtcdStore::connect(store_config(vec![cluster.endpoint(1), cluster.endpoint(2)]))
        .await
        .expect("connect to members 1 and 2");

    let start = writer.create(b"/w/start", Bytes::from_static(b"0")).await.expect("write");
    let mut watch = watcher.watch(b"/w/", start).await.expect("open the watch");
    let early = writer.create(b"/w/early", Bytes::from_static(b"1")).await.expect("write");
    assert_eq!(events_until(&mut watch, early).await, vec![early]);

    cluster.kill(0);
    let mut written = Vec::new();
    for i in 0..5 {
        let key = format!("/w/while-down-{i}").into_bytes();
        written.push(create_once(&writer, &key).await);
    }
    cluster.restart(0).await.expect("restart member 0");
    let late = writer.create(b"/w/late", Bytes::from_static(b"3")).await.expect("write");
    written.push(late);
    assert_eq!(events_until(&mut watch, late).await, written, "every write, once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_server_leaves_no_process_or_directory_behind() {
    let started = Instant::now();
    let server = EtcdServer::start().await.expect("start etcd");
    eprintln!("single-member etcd healthy after {:?}", started.elapsed());
    let (pid, dir, data_dir) = (server.pid(), server.dir().to_path_buf(), server.data_dir().to_path_buf());
    assert!(process_exists(pid));
    assert!(data_dir.is_dir(), "etcd made its data directory");
    assert!(server.log_tail(100).contains("became leader"), "etcd logs to {}", server.log_path().display());
    drop(server);
    assert!(!process_exists(pid), "etcd (pid {pid}) is gone and reaped");
    assert!(!dir.exists(), "{} is removed", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cluster_leaves_no_process_or_directory_behind() {
    let started = Instant::now();
    let mut cluster = EtcdCluster::start(3).await.expect("start a three-member etcd cluster");
    eprintln!("three-member etcd cluster healthy after {:?}", started.elapsed());
    let pids: Vec<u32> = (0..cluster.len()).map(|i| cluster.pid(i)).collect();
    let dir = cluster.dir().to_path_buf();
    assert!(pids.iter().all(|&pid| process_exists(pid)));
    cluster.kill(1);
    assert!(!process_exists(pids[1]), "a killed member is reaped at once");
    assert!(!cluster.is_running(1) && cluster.is_running(0));
    drop(cluster);
    for pid in pids {
        assert!(!process_exists(pid), "etcd (pid {pid}) is gone and reaped");
    }
    assert!(!dir.exists(), "{} is removed", dir.display());
}
