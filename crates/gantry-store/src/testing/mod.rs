//! The conformance suite every backend passes, and helpers that start real etcd members.
//!
//! Each test is a public async function that takes a fresh, empty store and panics on failure. A backend's
//! test file instantiates all of them with [`conformance_tests!`](crate::conformance_tests), giving a function
//! that makes a [`TestStore`]. Running the same suite on etcd checks the suite itself against the reference.

#![allow(missing_docs)] // the test functions are named as the sentences they check
#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap shows the error it got

pub mod etcd_server;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{
    EventKind, KeyValue, ListOptions, Preconditions, Revision, Store, StoreError, StoreExt, WatchEvent, WatchStream,
};

/// A store under test, with whatever keeps it alive (a temporary directory, an etcd process).
pub struct TestStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Dropped after the test: cleans up.
    pub guard: Box<dyn Any + Send>,
}

/// How long tests wait for something that should happen: `GANTRY_TEST_PATIENCE_SECS`, default 20 s.
pub fn patience() -> Duration {
    std::env::var("GANTRY_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(Duration::from_secs(20), Duration::from_secs)
}

/// The next event of a watch, failing the test if none arrives in time or the watch fails.
pub async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(patience(), stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(err))) => panic!("watch failed: {err}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {:?}", patience()),
    }
}

/// The next `n` events of a watch.
pub async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_event(stream).await);
    }
    out
}

/// Asserts that a watch yields nothing for a short while (used only to check for *unwanted* events, after a
/// wanted event that was written later has already arrived, so the wait is not what makes the test pass).
async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn keys(items: &[KeyValue]) -> Vec<Bytes> {
    items.iter().map(|kv| kv.key.clone()).collect()
}

/// Instantiates every conformance test as a `#[tokio::test]` for one backend. `$make` is an expression that
/// evaluates to a future of a [`TestStore`]; it is evaluated once per test.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@tests $make;
            create_then_get_returns_value_and_revisions,
            create_of_existing_key_is_already_exists,
            get_of_missing_key_is_not_found,
            update_with_current_revision_succeeds,
            update_with_stale_revision_is_a_conflict_carrying_the_current_revision,
            update_of_missing_key_is_not_found,
            delete_returns_the_last_value,
            guarded_delete_with_stale_revision_is_a_conflict,
            revisions_grow_by_one_per_write_and_failed_writes_consume_none,
            recreated_key_gets_a_new_create_revision,
            list_returns_keys_under_the_prefix_in_order,
            list_at_a_past_revision_shows_the_past,
            list_at_a_future_revision_is_an_error,
            pagination_is_stable_while_writes_continue,
            continue_key_outside_the_prefix_is_invalid,
            count_counts_live_keys_under_the_prefix,
            concurrent_guaranteed_updates_lose_nothing,
            guaranteed_update_with_unchanged_bytes_writes_nothing,
            guaranteed_update_checks_preconditions_and_can_create,
            watch_delivers_creates_updates_and_deletes_with_previous_values,
            watch_from_zero_starts_after_the_current_revision,
            watch_from_an_old_revision_replays_history,
            watch_sees_every_change_in_order_under_concurrent_writers,
            watch_of_a_prefix_does_not_see_a_sibling_prefix,
            watch_from_a_compacted_revision_is_compacted,
            list_at_a_compacted_revision_is_compacted_and_latest_values_survive,
            compaction_is_idempotent_and_refuses_the_future,
            delete_events_replayed_from_history_carry_the_last_value,
            values_of_one_mebibyte_round_trip,
            keys_with_unusual_bytes_round_trip,
            slow_watcher_blocks_neither_writers_nor_other_watchers,
            empty_key_is_invalid,
            many_watchers_on_one_prefix_all_see_every_event
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let test_store: $crate::testing::TestStore = $make.await;
                $crate::testing::$name(::std::sync::Arc::clone(&test_store.store)).await;
                drop(test_store);
            }
        )*
    };
}

pub async fn create_then_get_returns_value_and_revisions(store: Arc<dyn Store>) {
    let rev = store.create(b"/r/a", b("one")).await.unwrap();
    assert!(rev > 0);
    let kv = store.get(b"/r/a").await.unwrap();
    assert_eq!(kv.value, b("one"));
    assert_eq!(kv.create_revision, rev);
    assert_eq!(kv.mod_revision, rev);
    assert_eq!(&kv.key[..], b"/r/a");
    assert_eq!(store.current_revision().await.unwrap(), rev);
}

pub async fn create_of_existing_key_is_already_exists(store: Arc<dyn Store>) {
    let rev = store.create(b"/r/a", b("one")).await.unwrap();
    match store.create(b"/r/a", b("two")).await {
        Err(StoreError::AlreadyExists { key, current }) => {
            assert_eq!(key, b"/r/a");
            assert_eq!(current, rev);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get(b"/r/a").await.unwrap().value, b("one"), "the failed create changed nothing");
}

pub async fn get_of_missing_key_is_not_found(store: Arc<dyn Store>) {
    let err = store.get(b"/r/missing").await.unwrap_err();
    assert!(matches!(&err, StoreError::NotFound { key } if key == b"/r/missing"), "{err:?}");
    assert!(err.to_string().contains("/r/missing"), "the message names the key: {err}");
}

pub async fn update_with_current_revision_succeeds(store: Arc<dyn Store>) {
    let created = store.create(b"/r/a", b("one")).await.unwrap();
    let updated = store.update(b"/r/a", b("two"), created).await.unwrap();
    assert!(updated > created);
    let kv = store.get(b"/r/a").await.unwrap();
    assert_eq!(kv.value, b("two"));
    assert_eq!(kv.create_revision, created);
    assert_eq!(kv.mod_revision, updated);
}

pub async fn update_with_stale_revision_is_a_conflict_carrying_the_current_revision(store: Arc<dyn Store>) {
    let created = store.create(b"/r/a", b("one")).await.unwrap();
    let updated = store.update(b"/r/a", b("two"), created).await.unwrap();
    match store.update(b"/r/a", b("three"), created).await {
        Err(StoreError::Conflict { key, expected, current }) => {
            assert_eq!(key, b"/r/a");
            assert_eq!(expected, created);
            assert_eq!(current, updated);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get(b"/r/a").await.unwrap().value, b("two"));
}

pub async fn update_of_missing_key_is_not_found(store: Arc<dyn Store>) {
    let err = store.update(b"/r/none", b("x"), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub async fn delete_returns_the_last_value(store: Arc<dyn Store>) {
    let created = store.create(b"/r/a", b("one")).await.unwrap();
    let updated = store.update(b"/r/a", b("two"), created).await.unwrap();
    let deleted = store.delete(b"/r/a", None).await.unwrap();
    assert!(deleted.revision > updated);
    assert_eq!(deleted.prev.value, b("two"));
    assert_eq!(deleted.prev.mod_revision, updated);
    assert_eq!(deleted.prev.create_revision, created);
    assert!(matches!(store.get(b"/r/a").await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.delete(b"/r/a", None).await, Err(StoreError::NotFound { .. })));
}

pub async fn guarded_delete_with_stale_revision_is_a_conflict(store: Arc<dyn Store>) {
    let created = store.create(b"/r/a", b("one")).await.unwrap();
    let updated = store.update(b"/r/a", b("two"), created).await.unwrap();
    match store.delete(b"/r/a", Some(created)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, updated),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get(b"/r/a").await.unwrap().value, b("two"));
    let deleted = store.delete(b"/r/a", Some(updated)).await.unwrap();
    assert_eq!(deleted.prev.mod_revision, updated);
}

pub async fn revisions_grow_by_one_per_write_and_failed_writes_consume_none(store: Arc<dyn Store>) {
    let r1 = store.create(b"/r/a", b("1")).await.unwrap();
    assert!(store.create(b"/r/a", b("again")).await.is_err());
    assert!(store.update(b"/r/a", b("stale"), r1 - 1).await.is_err());
    assert!(store.delete(b"/r/missing", None).await.is_err());
    let r2 = store.update(b"/r/a", b("2"), r1).await.unwrap();
    let r3 = store.create(b"/r/b", b("1")).await.unwrap();
    let r4 = store.delete(b"/r/a", None).await.unwrap().revision;
    assert_eq!([r2, r3, r4], [r1 + 1, r1 + 2, r1 + 3]);
    assert_eq!(store.current_revision().await.unwrap(), r4);
}

pub async fn recreated_key_gets_a_new_create_revision(store: Arc<dyn Store>) {
    let first = store.create(b"/r/a", b("1")).await.unwrap();
    store.delete(b"/r/a", None).await.unwrap();
    let second = store.create(b"/r/a", b("2")).await.unwrap();
    assert!(second > first);
    let kv = store.get(b"/r/a").await.unwrap();
    assert_eq!(kv.create_revision, second);
    assert_eq!(kv.value, b("2"));
}

pub async fn list_returns_keys_under_the_prefix_in_order(store: Arc<dyn Store>) {
    for key in ["/l/b/2", "/l/b/1", "/l/bc/1", "/l/a/1", "/l/b/3"] {
        store.create(key.as_bytes(), b(key)).await.unwrap();
    }
    store.delete(b"/l/b/3", None).await.unwrap();
    let page = store.list(b"/l/b/", ListOptions::default()).await.unwrap();
    assert_eq!(keys(&page.items), vec![b("/l/b/1"), b("/l/b/2")]);
    assert_eq!(page.items[0].value, b("/l/b/1"));
    assert_eq!(page.revision, store.current_revision().await.unwrap());
    assert!(page.continue_from.is_none());
    let all = store.list(b"/l/", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 4);
}

pub async fn list_at_a_past_revision_shows_the_past(store: Arc<dyn Store>) {
    let r1 = store.create(b"/p/a", b("a1")).await.unwrap();
    let r2 = store.create(b"/p/b", b("b1")).await.unwrap();
    store.update(b"/p/a", b("a2"), r1).await.unwrap();
    store.delete(b"/p/b", Some(r2)).await.unwrap();
    store.create(b"/p/c", b("c1")).await.unwrap();

    let past = store.list(b"/p/", ListOptions { revision: Some(r2), ..Default::default() }).await.unwrap();
    assert_eq!(past.revision, r2);
    let seen: Vec<_> = past.items.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
    assert_eq!(seen, vec![(b("/p/a"), b("a1")), (b("/p/b"), b("b1"))]);
    let now = store.list(b"/p/", ListOptions::default()).await.unwrap();
    let seen: Vec<_> = now.items.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
    assert_eq!(seen, vec![(b("/p/a"), b("a2")), (b("/p/c"), b("c1"))]);
}

pub async fn list_at_a_future_revision_is_an_error(store: Arc<dyn Store>) {
    let rev = store.create(b"/f/a", b("1")).await.unwrap();
    let err = store.list(b"/f/", ListOptions { revision: Some(rev + 100), ..Default::default() }).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
}

pub async fn pagination_is_stable_while_writes_continue(store: Arc<dyn Store>) {
    for i in 0..50 {
        store.create(format!("/pg/{i:03}").as_bytes(), b("v0")).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut options = ListOptions { limit: Some(7), ..Default::default() };
    let mut pinned = None;
    let mut round = 0;
    loop {
        let page = store.list(b"/pg/", options.clone()).await.unwrap();
        let revision = *pinned.get_or_insert(page.revision);
        assert_eq!(page.revision, revision, "every page shows the same revision");
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|kv| (kv.key.clone(), kv.value.clone())));
        // Writes between pages: updates, deletes and creates, before and after the cursor.
        round += 1;
        let victim = format!("/pg/{:03}", (round * 7) % 50);
        let _ = store
            .guaranteed_update(victim.as_bytes(), Preconditions::default(), |_| Ok::<_, StoreError>(b("v1")))
            .await;
        store.create(format!("/pg/{:03}x", round).as_bytes(), b("new")).await.unwrap();
        let _ = store.delete(format!("/pg/{:03}", 49 - round).as_bytes(), None).await;
        match page.continue_from {
            Some(next) => {
                options = ListOptions { revision: Some(revision), limit: Some(7), continue_from: Some(next) };
            }
            None => break,
        }
    }
    let expected: Vec<_> = (0..50).map(|i| (b(&format!("/pg/{i:03}")), b("v0"))).collect();
    assert_eq!(seen, expected, "the pages together are exactly the state at the first page's revision");
}

pub async fn continue_key_outside_the_prefix_is_invalid(store: Arc<dyn Store>) {
    store.create(b"/c/a", b("1")).await.unwrap();
    let options = ListOptions { continue_from: Some(b("/d/a")), limit: Some(1), ..Default::default() };
    let err = store.list(b"/c/", options).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidRequest { .. }), "{err:?}");
}

pub async fn count_counts_live_keys_under_the_prefix(store: Arc<dyn Store>) {
    for i in 0..10 {
        store.create(format!("/n/x/{i}").as_bytes(), b("v")).await.unwrap();
    }
    store.create(b"/n/xy/1", b("v")).await.unwrap();
    store.delete(b"/n/x/3", None).await.unwrap();
    let kv = store.get(b"/n/x/4").await.unwrap();
    store.update(b"/n/x/4", b("w"), kv.mod_revision).await.unwrap();
    assert_eq!(store.count(b"/n/x/").await.unwrap(), 9);
    assert_eq!(store.count(b"/n/").await.unwrap(), 10);
    assert_eq!(store.count(b"/n/none/").await.unwrap(), 0);
}

pub async fn concurrent_guaranteed_updates_lose_nothing(store: Arc<dyn Store>) {
    store.create(b"/g/counter", b("0")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .guaranteed_update(b"/g/counter", Preconditions::default(), |current| {
                    let n: u64 = current.map(|kv| String::from_utf8_lossy(&kv.value).parse().unwrap_or(0)).unwrap_or(0);
                    Ok::<_, StoreError>(Bytes::from((n + 1).to_string()))
                })
                .await
                .unwrap()
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        let updated = task.await.unwrap();
        assert!(updated.written);
        revisions.push(updated.kv.mod_revision);
    }
    assert_eq!(store.get(b"/g/counter").await.unwrap().value, b("100"));
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 100, "every increment got its own revision");
}

pub async fn guaranteed_update_with_unchanged_bytes_writes_nothing(store: Arc<dyn Store>) {
    let rev = store.create(b"/g/a", b("same")).await.unwrap();
    let mut calls = 0;
    let updated = store
        .guaranteed_update(b"/g/a", Preconditions::default(), |current| {
            calls += 1;
            Ok::<_, StoreError>(current.map(|kv| kv.value.clone()).unwrap_or_default())
        })
        .await
        .unwrap();
    assert!(!updated.written);
    assert_eq!(calls, 1);
    assert_eq!(updated.kv.mod_revision, rev);
    assert_eq!(store.current_revision().await.unwrap(), rev, "no revision was consumed");
}

pub async fn guaranteed_update_checks_preconditions_and_can_create(store: Arc<dyn Store>) {
    let missing = store.guaranteed_update(b"/g/new", Preconditions::default(), |_| Ok::<_, StoreError>(b("x"))).await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");

    let create = Preconditions { create_if_missing: true, ..Default::default() };
    let created = store
        .guaranteed_update(b"/g/new", create, |current| {
            assert!(current.is_none());
            Ok::<_, StoreError>(b("made"))
        })
        .await
        .unwrap();
    assert!(created.written);
    assert_eq!(created.kv.create_revision, created.kv.mod_revision);

    let stale = Preconditions { mod_revision: Some(created.kv.mod_revision - 1), ..Default::default() };
    let conflict = store.guaranteed_update(b"/g/new", stale, |_| Ok::<_, StoreError>(b("y"))).await;
    assert!(matches!(conflict, Err(StoreError::Conflict { .. })), "{conflict:?}");

    // A closure error is the caller's own and comes back unchanged; nothing is written.
    let refused = store
        .guaranteed_update(b"/g/new", Preconditions::default(), |_| {
            Err(StoreError::InvalidRequest { key: b"/g/new".to_vec(), reason: "refused".into() })
        })
        .await;
    assert!(matches!(refused, Err(StoreError::InvalidRequest { .. })));
    assert_eq!(store.get(b"/g/new").await.unwrap().value, b("made"));
}

pub async fn watch_delivers_creates_updates_and_deletes_with_previous_values(store: Arc<dyn Store>) {
    let mut watch = store.watch(b"/w/", 0).await.unwrap();
    let r1 = store.create(b"/w/a", b("1")).await.unwrap();
    let r2 = store.update(b"/w/a", b("2"), r1).await.unwrap();
    let r3 = store.delete(b"/w/a", None).await.unwrap().revision;
    let events = next_events(&mut watch, 3).await;

    assert_eq!(events[0].kind, EventKind::Create);
    assert_eq!(events[0].kv.value, b("1"));
    assert_eq!(events[0].revision(), r1);
    assert!(events[0].prev.is_none());

    assert_eq!(events[1].kind, EventKind::Update);
    assert_eq!(events[1].kv.value, b("2"));
    assert_eq!(events[1].kv.create_revision, r1);
    assert_eq!(events[1].prev.as_ref().map(|kv| kv.value.clone()), Some(b("1")));

    assert_eq!(events[2].kind, EventKind::Delete);
    assert_eq!(events[2].revision(), r3);
    assert_eq!(&events[2].kv.key[..], b"/w/a");
    let prev = events[2].prev.as_ref().expect("a delete carries the last value");
    assert_eq!(prev.value, b("2"));
    assert_eq!(prev.mod_revision, r2);
}

pub async fn watch_from_zero_starts_after_the_current_revision(store: Arc<dyn Store>) {
    store.create(b"/z/old", b("1")).await.unwrap();
    let mut watch = store.watch(b"/z/", 0).await.unwrap();
    let rev = store.create(b"/z/new", b("2")).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(event.revision(), rev, "the watch starts with the first change after it was opened");
    assert_eq!(&event.kv.key[..], b"/z/new");
}

pub async fn watch_from_an_old_revision_replays_history(store: Arc<dyn Store>) {
    let start = store.create(b"/h/a", b("1")).await.unwrap();
    let mut expected = Vec::new();
    let mut rev = start;
    for i in 2..=20 {
        rev = store.update(b"/h/a", Bytes::from(i.to_string()), rev).await.unwrap();
        expected.push((rev, i.to_string()));
    }
    let mut watch = store.watch(b"/h/", start).await.unwrap();
    let events = next_events(&mut watch, expected.len()).await;
    let seen: Vec<_> =
        events.iter().map(|e| (e.revision(), String::from_utf8_lossy(&e.kv.value).into_owned())).collect();
    assert_eq!(seen, expected);
    // And it goes on live after the history.
    let live = store.update(b"/h/a", b("live"), rev).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), live);
}

pub async fn watch_sees_every_change_in_order_under_concurrent_writers(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 150;
    let mut watch = store.watch(b"/o/", 0).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let key = format!("/o/{w}");
            let mut acked = Vec::with_capacity(PER_WRITER);
            let mut rev = store.create(key.as_bytes(), b("0")).await.unwrap();
            acked.push(rev);
            for i in 1..PER_WRITER {
                rev = store.update(key.as_bytes(), Bytes::from(i.to_string()), rev).await.unwrap();
                acked.push(rev);
            }
            acked
        }));
    }
    let mut acked: Vec<Revision> = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked.sort_unstable();
    let events = next_events(&mut watch, WRITERS * PER_WRITER).await;
    let revisions: Vec<Revision> = events.iter().map(WatchEvent::revision).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "strictly increasing revisions");
    assert_eq!(revisions, acked, "exactly the acknowledged writes: no gap, no duplicate");
    // Per key, values arrive in the order written.
    let mut last: BTreeMap<Bytes, i64> = BTreeMap::new();
    for event in &events {
        let n: i64 = String::from_utf8_lossy(&event.kv.value).parse().unwrap();
        let prev = last.insert(event.kv.key.clone(), n);
        assert_eq!(prev.map_or(0, |p| p + 1), n);
    }
}

pub async fn watch_of_a_prefix_does_not_see_a_sibling_prefix(store: Arc<dyn Store>) {
    let mut watch = store.watch(b"/a/b/", 0).await.unwrap();
    store.create(b"/a/bc", b("sibling")).await.unwrap();
    store.create(b"/a/bc/x", b("sibling child")).await.unwrap();
    store.create(b"/a/b", b("the prefix without slash")).await.unwrap();
    let mine = store.create(b"/a/b/x", b("mine")).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(event.revision(), mine);
    assert_eq!(&event.kv.key[..], b"/a/b/x");
    assert_quiet(&mut watch).await;
}

pub async fn watch_from_a_compacted_revision_is_compacted(store: Arc<dyn Store>) {
    let first = store.create(b"/k/a", b("1")).await.unwrap();
    let mut rev = first;
    for i in 0..10 {
        rev = store.update(b"/k/a", Bytes::from(i.to_string()), rev).await.unwrap();
    }
    store.compact(rev - 2).await.unwrap();
    match store.watch(b"/k/", first).await {
        Err(StoreError::Compacted { compacted, requested, .. }) => {
            assert_eq!(compacted, rev - 2);
            assert_eq!(requested, first);
        }
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(mut stream) => match tokio::time::timeout(patience(), stream.next()).await {
            Ok(Some(Err(StoreError::Compacted { compacted, .. }))) => {
                assert_eq!(compacted, rev - 2)
            }
            other => panic!("expected Compacted, got {other:?}"),
        },
    }
    // Just after the compaction point still works: the change at the compaction revision is kept.
    let mut watch = store.watch(b"/k/", rev - 3).await.unwrap();
    let events = next_events(&mut watch, 3).await;
    assert_eq!(events.iter().map(WatchEvent::revision).collect::<Vec<_>>(), vec![rev - 2, rev - 1, rev]);
    assert!(events.iter().all(|e| e.prev.is_some()), "updates after the compaction point keep their previous value");
}

pub async fn list_at_a_compacted_revision_is_compacted_and_latest_values_survive(store: Arc<dyn Store>) {
    let a = store.create(b"/lc/a", b("a1")).await.unwrap();
    let early = store.create(b"/lc/b", b("b1")).await.unwrap();
    let a2 = store.update(b"/lc/a", b("a2"), a).await.unwrap();
    store.delete(b"/lc/b", None).await.unwrap();
    store.create(b"/lc/c", b("c1")).await.unwrap();
    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();

    let err = store.list(b"/lc/", ListOptions { revision: Some(early), ..Default::default() }).await.unwrap_err();
    match err {
        StoreError::Compacted { compacted, requested, .. } => {
            assert_eq!(compacted, current);
            assert_eq!(requested, early);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let now = store.list(b"/lc/", ListOptions::default()).await.unwrap();
    let seen: Vec<_> = now.items.iter().map(|kv| (kv.key.clone(), kv.value.clone(), kv.mod_revision)).collect();
    assert_eq!(seen, vec![(b("/lc/a"), b("a2"), a2), (b("/lc/c"), b("c1"), current)]);
    let at = store.list(b"/lc/", ListOptions { revision: Some(current), ..Default::default() }).await.unwrap();
    assert_eq!(at.items.len(), 2, "the compaction revision itself stays readable");
    assert_eq!(store.get(b"/lc/a").await.unwrap().create_revision, a);
    // Writes go on after compaction with fresh revisions.
    let next = store.update(b"/lc/a", b("a3"), a2).await.unwrap();
    assert_eq!(next, current + 1);
}

pub async fn compaction_is_idempotent_and_refuses_the_future(store: Arc<dyn Store>) {
    let mut rev = store.create(b"/ci/a", b("0")).await.unwrap();
    for i in 1..5 {
        rev = store.update(b"/ci/a", Bytes::from(i.to_string()), rev).await.unwrap();
    }
    store.compact(rev - 1).await.unwrap();
    store.compact(rev - 1).await.unwrap();
    store.compact(rev - 3).await.unwrap();
    let err = store.list(b"/ci/", ListOptions { revision: Some(rev - 2), ..Default::default() }).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Compacted { compacted, .. } if compacted == rev - 1),
        "an older compaction does not move the point back: {err:?}"
    );
    let err = store.compact(rev + 10).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
}

pub async fn delete_events_replayed_from_history_carry_the_last_value(store: Arc<dyn Store>) {
    // Revision 0 would mean "from now": make the starting point a real revision.
    let start = store.create(b"/other", b("x")).await.unwrap();
    let r1 = store.create(b"/dh/a", b("first")).await.unwrap();
    store.update(b"/dh/a", b("last"), r1).await.unwrap();
    store.delete(b"/dh/a", None).await.unwrap();
    store.create(b"/dh/a", b("again")).await.unwrap();
    let mut watch = store.watch(b"/dh/", start).await.unwrap();
    let events = next_events(&mut watch, 4).await;
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventKind::Create, EventKind::Update, EventKind::Delete, EventKind::Create]);
    assert_eq!(events[2].prev.as_ref().map(|kv| kv.value.clone()), Some(b("last")));
    assert!(events[2].kv.value.is_empty());
    assert!(events[3].prev.is_none(), "re-creation after a delete has no previous value");
}

pub async fn values_of_one_mebibyte_round_trip(store: Arc<dyn Store>) {
    let big: Bytes = (0..1024 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let start = store.create(b"/other", b("x")).await.unwrap();
    let rev = store.create(b"/big/a", big.clone()).await.unwrap();
    assert_eq!(store.get(b"/big/a").await.unwrap().value, big);
    let page = store.list(b"/big/", ListOptions::default()).await.unwrap();
    assert_eq!(page.items[0].value, big);
    let mut other: Vec<u8> = big.to_vec();
    other.reverse();
    store.update(b"/big/a", Bytes::from(other.clone()), rev).await.unwrap();
    let mut watch = store.watch(b"/big/", start).await.unwrap();
    let events = next_events(&mut watch, 2).await;
    assert_eq!(events[0].kv.value, big);
    assert_eq!(events[1].kv.value, Bytes::from(other));
    assert_eq!(events[1].prev.as_ref().map(|kv| kv.value.clone()), Some(big));
}

pub async fn keys_with_unusual_bytes_round_trip(store: Arc<dyn Store>) {
    let odd: Vec<Vec<u8>> = vec![
        b"/u/with space".to_vec(),
        b"/u/new\nline".to_vec(),
        b"/u/nul\0byte".to_vec(),
        b"/u/\xff\xfe high bytes".to_vec(),
        "/u/ünïcødé/🚀".as_bytes().to_vec(),
        b"/u/%2F/../percent".to_vec(),
        b"/u/\xff".to_vec(),
    ];
    let mut watch = store.watch(b"/u/", 0).await.unwrap();
    for (i, key) in odd.iter().enumerate() {
        store.create(key, Bytes::from(vec![i as u8])).await.unwrap();
    }
    for (i, key) in odd.iter().enumerate() {
        let kv = store.get(key).await.unwrap();
        assert_eq!(&kv.key[..], &key[..]);
        assert_eq!(kv.value, Bytes::from(vec![i as u8]));
    }
    let mut sorted = odd.clone();
    sorted.sort();
    let page = store.list(b"/u/", ListOptions::default()).await.unwrap();
    assert_eq!(page.items.iter().map(|kv| kv.key.to_vec()).collect::<Vec<_>>(), sorted, "byte order");
    let events = next_events(&mut watch, odd.len()).await;
    assert_eq!(events.iter().map(|e| e.kv.key.to_vec()).collect::<Vec<_>>(), odd);
    // A prefix that ends in 0xff has no simple range end; it still lists only its own keys.
    let ff = store.list(b"/u/\xff", ListOptions::default()).await.unwrap();
    assert_eq!(ff.items.len(), 2);
}

pub async fn slow_watcher_blocks_neither_writers_nor_other_watchers(store: Arc<dyn Store>) {
    const WRITES: usize = 4000;
    let start = store.current_revision().await.unwrap();
    // Opened and then not read while thousands of changes happen.
    let mut slow = store.watch(b"/s/", 0).await.unwrap();
    let mut fast = store.watch(b"/s/", 0).await.unwrap();
    let reader = tokio::spawn(async move {
        let events = next_events(&mut fast, WRITES).await;
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>()
    });
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..WRITES / 8 {
                    store.create(format!("/s/{w}/{i}").as_bytes(), Bytes::from(vec![7u8; 512])).await.unwrap();
                }
            })
        })
        .collect();
    let all_written = async {
        for writer in writers {
            writer.await.unwrap();
        }
    };
    tokio::time::timeout(patience(), all_written).await.expect("writers finished while a watcher was not reading");
    let fast_seen = tokio::time::timeout(patience(), reader).await.expect("the reading watcher kept up").unwrap();
    assert_eq!(fast_seen.len(), WRITES);
    // The slow watcher either catches up with everything, in order, or says it fell behind the history kept.
    let mut last = start;
    let mut count = 0;
    while count < WRITES {
        match tokio::time::timeout(patience(), slow.next()).await {
            Ok(Some(Ok(event))) => {
                assert!(event.revision() > last, "in order, no duplicates");
                last = event.revision();
                count += 1;
            }
            Ok(Some(Err(StoreError::Compacted { .. }))) => return,
            other => panic!("slow watcher: unexpected {other:?}"),
        }
    }
    assert_eq!(last, *fast_seen.last().unwrap());
}

pub async fn empty_key_is_invalid(store: Arc<dyn Store>) {
    let err = store.create(b"", b("x")).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidRequest { .. }), "{err:?}");
}

pub async fn many_watchers_on_one_prefix_all_see_every_event(store: Arc<dyn Store>) {
    let mut watches = Vec::new();
    for _ in 0..20 {
        watches.push(store.watch(b"/m/", 0).await.unwrap());
    }
    let mut revisions = Vec::new();
    for i in 0..10 {
        revisions.push(store.create(format!("/m/{i}").as_bytes(), b("v")).await.unwrap());
    }
    for watch in &mut watches {
        let events = next_events(watch, 10).await;
        assert_eq!(events.iter().map(WatchEvent::revision).collect::<Vec<_>>(), revisions);
    }
}
