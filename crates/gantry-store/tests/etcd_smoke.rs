//! Sanity checks of the etcd backend against one real etcd member. The full cross-backend conformance suite
//! lives in `gantry_store::testing`; these cover what is specific to the etcd mapping (key prefixes, the
//! shifted compaction point, error shapes).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use gantry_store::etcd::{EtcdConfig, EtcdStore};
use gantry_store::testing::etcd_server::EtcdServer;
use gantry_store::testing::patience;
use gantry_store::{EventKind, ListOptions, Store, StoreError, WatchEvent, WatchStream};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn connect(server: &EtcdServer, prefix: &str) -> EtcdStore {
    EtcdStore::connect(EtcdConfig::new([server.endpoint()], prefix.as_bytes().to_vec()))
        .await
        .unwrap_or_else(|err| panic!("connect to {}: {err}\n{}", server.endpoint(), server.log_tail(30)))
}

async fn next_event(watch: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(patience(), watch.next()).await {
        Ok(Some(Ok(event))) => event,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_guarded_and_errors_name_the_callers_key() {
    let server = EtcdServer::start().await.expect("start etcd");
    let store = connect(&server, "/smoke").await;

    let created = store.create(b"/a", b("1")).await.unwrap();
    let kv = store.get(b"/a").await.unwrap();
    assert_eq!((&kv.key[..], &kv.value[..]), (&b"/a"[..], &b"1"[..]));
    assert_eq!((kv.create_revision, kv.mod_revision), (created, created));

    match store.create(b"/a", b("2")).await {
        Err(StoreError::AlreadyExists { key, current }) => {
            assert_eq!((key, current), (b"/a".to_vec(), created))
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match store.update(b"/a", b("2"), created - 1).await {
        Err(StoreError::Conflict { key, expected, current }) => {
            assert_eq!((key, expected, current), (b"/a".to_vec(), created - 1, created))
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    // An absent key has modification revision 0 in etcd's comparisons; it must not be created by an update.
    assert!(matches!(store.update(b"/missing", b("x"), 0).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.get(b"/missing").await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.create(b"", b("x")).await, Err(StoreError::InvalidRequest { .. })));
    assert_eq!(store.current_revision().await.unwrap(), created, "failed writes consume no revision");

    let updated = store.update(b"/a", b("2"), created).await.unwrap();
    assert_eq!(updated, created + 1);
    assert!(
        matches!(store.delete(b"/a", Some(created)).await, Err(StoreError::Conflict { current, .. }) if current == updated)
    );
    let deleted = store.delete(b"/a", Some(updated)).await.unwrap();
    assert_eq!(deleted.revision, updated + 1);
    assert_eq!((&deleted.prev.key[..], &deleted.prev.value[..]), (&b"/a"[..], &b"2"[..]));
    assert_eq!((deleted.prev.create_revision, deleted.prev.mod_revision), (created, updated));
    assert!(matches!(store.delete(b"/a", None).await, Err(StoreError::NotFound { key }) if key == b"/a"));
    assert!(matches!(store.delete(b"/a", Some(updated)).await, Err(StoreError::NotFound { .. })));

    let recreated = store.create(b"/a", b("3")).await.unwrap();
    let deleted = store.delete(b"/a", None).await.unwrap();
    assert_eq!((deleted.revision, deleted.prev.create_revision), (recreated + 1, recreated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_isolate_stores_sharing_one_etcd() {
    let server = EtcdServer::start().await.expect("start etcd");
    let one = connect(&server, "/one").await;
    let two = connect(&server, "/two").await;
    let whole = connect(&server, "").await;

    one.create(b"/k", b("1")).await.unwrap();
    two.create(b"/k", b("2")).await.unwrap();
    two.create(b"/l", b("2")).await.unwrap();
    assert_eq!(one.get(b"/k").await.unwrap().value, b("1"));
    assert_eq!(two.get(b"/k").await.unwrap().value, b("2"));
    assert_eq!(one.count(b"").await.unwrap(), 1);
    assert_eq!(two.count(b"/").await.unwrap(), 2);
    assert_eq!(whole.count(b"").await.unwrap(), 3);
    let keys: Vec<Bytes> =
        whole.list(b"", ListOptions::default()).await.unwrap().items.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, vec![b("/one/k"), b("/two/k"), b("/two/l")]);
    let page = two.list(b"/", ListOptions::default()).await.unwrap();
    assert_eq!(page.items.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), vec![b("/k"), b("/l")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_share_one_revision_and_continue_after_the_last_key() {
    let server = EtcdServer::start().await.expect("start etcd");
    let store = connect(&server, "/pages").await;
    for i in 0..7 {
        store.create(format!("/p/{i}").as_bytes(), b("v")).await.unwrap();
    }
    store.create(b"/q", b("outside")).await.unwrap();

    let first = store.list(b"/p/", ListOptions { limit: Some(3), ..Default::default() }).await.unwrap();
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.continue_from, Some(b("/p/2\0")));
    // Written after the first page: invisible to the following pages.
    store.create(b"/p/9", b("late")).await.unwrap();
    let mut keys: Vec<Bytes> = first.items.iter().map(|kv| kv.key.clone()).collect();
    let mut next = first.continue_from.clone();
    while let Some(continue_from) = next {
        let page = store
            .list(
                b"/p/",
                ListOptions { revision: Some(first.revision), limit: Some(3), continue_from: Some(continue_from) },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, first.revision);
        keys.extend(page.items.iter().map(|kv| kv.key.clone()));
        next = page.continue_from;
    }
    assert_eq!(keys, (0..7).map(|i| b(&format!("/p/{i}"))).collect::<Vec<_>>());

    let outside = ListOptions { continue_from: Some(b("/q")), ..Default::default() };
    assert!(matches!(store.list(b"/p/", outside).await, Err(StoreError::InvalidRequest { .. })));
    let future = ListOptions { revision: Some(first.revision + 100), ..Default::default() };
    match store.list(b"/p/", future).await {
        Err(StoreError::FutureRevision { requested, current, .. }) => {
            assert_eq!((requested, current), (first.revision + 100, first.revision + 1))
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_history_with_kinds_and_previous_values() {
    let server = EtcdServer::start().await.expect("start etcd");
    let store = connect(&server, "/watch").await;
    let start = store.create(b"/elsewhere", b("x")).await.unwrap();
    let created = store.create(b"/w/a", b("1")).await.unwrap();
    let updated = store.update(b"/w/a", b("2"), created).await.unwrap();
    let deleted = store.delete(b"/w/a", None).await.unwrap().revision;

    let mut watch = store.watch(b"/w/", start).await.unwrap();
    let create = next_event(&mut watch).await;
    assert_eq!((create.kind, create.revision(), create.prev.clone()), (EventKind::Create, created, None));
    assert_eq!(&create.kv.key[..], b"/w/a");
    let update = next_event(&mut watch).await;
    assert_eq!((update.kind, update.revision()), (EventKind::Update, updated));
    assert_eq!(update.prev.as_ref().map(|p| p.value.clone()), Some(b("1")));
    let delete = next_event(&mut watch).await;
    assert_eq!(delete.kind, EventKind::Delete);
    assert_eq!((&delete.kv.key[..], delete.kv.value.is_empty()), (&b"/w/a"[..], true));
    assert_eq!((delete.kv.create_revision, delete.kv.mod_revision), (created, deleted));
    assert_eq!(delete.prev.as_ref().map(|p| (p.value.clone(), p.mod_revision)), Some((b("2"), updated)));

    // Live events follow the replay; a sibling prefix and the starting revision itself are not delivered.
    store.create(b"/wx", b("sibling")).await.unwrap();
    let live = store.create(b"/w/b", b("live")).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), live);

    let mut from_now = store.watch(b"/w/", 0).await.unwrap();
    let later = store.create(b"/w/c", b("later")).await.unwrap();
    assert_eq!(next_event(&mut from_now).await.revision(), later);
    assert_eq!(next_event(&mut watch).await.revision(), later);
    assert!(tokio::time::timeout(Duration::from_millis(200), watch.next()).await.is_err(), "no extra events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_state_at_its_revision() {
    let server = EtcdServer::start().await.expect("start etcd");
    let store = connect(&server, "/compact").await;
    let first = store.create(b"/c/a", b("0")).await.unwrap();
    let mut rev = first;
    for i in 1..6 {
        rev = store.update(b"/c/a", Bytes::from(i.to_string()), rev).await.unwrap();
    }
    let deleted = store.create(b"/c/gone", b("x")).await.unwrap();
    let point = store.delete(b"/c/gone", None).await.unwrap().revision;
    let after = store.update(b"/c/a", b("after"), rev).await.unwrap();
    store.compact(point).await.unwrap();

    // Reads below the point fail with the point; at the point they work.
    let below = ListOptions { revision: Some(point - 1), ..Default::default() };
    match store.list(b"/c/", below).await {
        Err(StoreError::Compacted { key, compacted, requested }) => {
            assert_eq!((key, compacted, requested), (b"/c/".to_vec(), point, point - 1))
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let at = store.list(b"/c/", ListOptions { revision: Some(point), ..Default::default() }).await.unwrap();
    assert_eq!(at.items.len(), 1);
    assert_eq!(at.items[0].mod_revision, rev);

    // A watch needing an event before the point fails from `watch` itself.
    match store.watch(b"/c/", point - 2).await {
        Err(StoreError::Compacted { compacted, requested, .. }) => {
            assert_eq!((compacted, requested), (point, point - 2))
        }
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    // One that starts just before it sees the delete at the point, with its previous value.
    let mut watch = store.watch(b"/c/", point - 1).await.unwrap();
    let delete = next_event(&mut watch).await;
    assert_eq!((delete.kind, delete.revision()), (EventKind::Delete, point));
    assert_eq!(delete.kv.create_revision, deleted);
    assert_eq!(delete.prev.map(|p| p.value), Some(b("x")));
    let update = next_event(&mut watch).await;
    assert_eq!((update.revision(), update.prev.map(|p| p.mod_revision)), (after, Some(rev)));

    // Compacting to the same or an older revision does nothing; the future is refused.
    store.compact(point).await.unwrap();
    store.compact(first).await.unwrap();
    assert!(matches!(
        store.list(b"/c/", ListOptions { revision: Some(point - 1), ..Default::default() }).await,
        Err(StoreError::Compacted { compacted, .. }) if compacted == point
    ));
    match store.compact(after + 5).await {
        Err(StoreError::FutureRevision { requested, current, .. }) => {
            assert_eq!((requested, current), (after + 5, after))
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    assert_eq!(store.get(b"/c/a").await.unwrap().value, b("after"));
}
