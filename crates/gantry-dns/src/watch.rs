//! The watches that keep the index: Services and EndpointSlices in every namespace. One task owns [`Sources`]
//! and publishes a new snapshot after each burst of changes, once both kinds have been listed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::index::{ClusterIndex, ServiceSource, SliceSource, Sources, Zone};

enum Change {
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
}

/// The objects of one kind as a watch reports them, with the buffer a re-list fills before it replaces them.
struct Kind<T> {
    listed: bool,
    relisting: Option<HashMap<(String, String), T>>,
}

impl<T> Kind<T> {
    fn new() -> Kind<T> {
        Kind { listed: false, relisting: None }
    }

    /// Applies one event to `current`; returns whether `current` changed.
    fn apply<K: ResourceExt>(
        &mut self,
        current: &mut HashMap<(String, String), T>,
        event: Event<K>,
        view: impl Fn(&K) -> Option<T>,
    ) -> bool {
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        match event {
            Event::Init => {
                self.relisting = Some(HashMap::new());
                false
            }
            Event::InitApply(object) => {
                if let (Some(buffer), Some(value)) = (self.relisting.as_mut(), view(&object)) {
                    buffer.insert(key(&object), value);
                }
                false
            }
            Event::InitDone => {
                *current = self.relisting.take().unwrap_or_default();
                self.listed = true;
                true
            }
            Event::Apply(object) => {
                match view(&object) {
                    Some(value) => current.insert(key(&object), value),
                    None => current.remove(&key(&object)),
                };
                true
            }
            Event::Delete(object) => current.remove(&key(&object)).is_some(),
        }
    }
}

/// A serial for the SOA record that grows with each snapshot: seconds since the epoch, as CoreDNS uses.
fn serial() -> u32 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

/// Watches Services and EndpointSlices until `shutdown`, publishing snapshots of `zone` into `index`.
pub(crate) async fn run(client: Client, zone: Zone, index: Arc<ClusterIndex>, shutdown: CancellationToken) {
    let services = watcher::watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map(|e| e.map(|e| Change::Service(Box::new(e))));
    let slices = watcher::watcher(Api::<EndpointSlice>::all(client), watcher::Config::default())
        .default_backoff()
        .map(|e| e.map(|e| Change::Slice(Box::new(e))));
    let mut changes = futures::stream::select(services.boxed(), slices.boxed());
    let mut sources = Sources::default();
    let mut service_kind = Kind::new();
    let mut slice_kind = Kind::new();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = changes.next() => next,
        };
        let mut changed = false;
        let mut next = next;
        // Everything already queued goes into one snapshot: a re-list of thousands of objects builds one.
        loop {
            match next {
                None => return,
                Some(Err(err)) => tracing::warn!(error = %err, "cluster DNS watch"),
                Some(Ok(Change::Service(event))) => {
                    changed |= service_kind.apply(&mut sources.services, *event, ServiceSource::from_service);
                }
                Some(Ok(Change::Slice(event))) => {
                    changed |= slice_kind.apply(&mut sources.slices, *event, SliceSource::from_slice);
                }
            }
            match changes.next().now_or_never() {
                Some(more) => next = more,
                None => break,
            }
        }
        if changed && service_kind.listed && slice_kind.listed {
            let snapshot = sources.snapshot(&zone, serial());
            tracing::debug!(services = snapshot.service_count(), "cluster DNS snapshot");
            index.publish(snapshot);
        }
    }
}
