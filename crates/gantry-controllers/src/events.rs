//! Events about objects (`events.k8s.io/v1`), written in the background so that a reconcile never waits on
//! them. When the API falls behind, events beyond a buffer of 1,000 are dropped, as client-go's broadcaster
//! drops them: an event is a report, not state.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use kube::api::PostParams;
use kube::{Api, Client, Resource};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Events waiting to be written, at most.
pub const EVENT_BUFFER: usize = 1000;

/// Writes in flight at once.
const WRITERS: usize = 8;

/// Whether an event reports something normal or something to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

/// A cheap handle that queues events for writing.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    controller: &'static str,
    instance: Arc<str>,
}

/// A reference to `object` for an event's `regarding`.
pub fn reference_to<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

impl EventSink {
    /// A sink reporting as `controller` (e.g. `replicaset-controller`) from `instance`, whose writer runs in
    /// `tasks` until `shutdown`.
    pub fn start(
        client: Client,
        controller: &'static str,
        instance: &str,
        shutdown: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> EventSink {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        tasks.spawn(write_events(client, rx, shutdown));
        EventSink { tx, controller, instance: Arc::from(instance) }
    }

    /// Queues an event about `regarding`; dropped if the buffer is full.
    pub fn publish(&self, regarding: ObjectReference, type_: EventType, reason: &str, action: &str, note: String) {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let now = jiff::Timestamp::now();
        let event = Event {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(format!("{}.{:x}", regarding.name.as_deref().unwrap_or("object"), now.as_nanosecond())),
                namespace: Some(namespace),
                ..Default::default()
            },
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now)),
            reporting_controller: Some(self.controller.to_string()),
            reporting_instance: Some(self.instance.to_string()),
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            regarding: Some(regarding),
            note: Some(note),
            type_: Some(match type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..Default::default()
        };
        if self.tx.try_send(event).is_err() {
            tracing::debug!(reason, "events: buffer full; an event was dropped");
        }
    }
}

async fn write_events(client: Client, mut rx: mpsc::Receiver<Event>, shutdown: CancellationToken) {
    let writers = Arc::new(Semaphore::new(WRITERS));
    let mut in_flight = JoinSet::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = rx.recv() => match next {
                Some(event) => event,
                None => break,
            },
        };
        let Ok(permit) = Arc::clone(&writers).acquire_owned().await else { break };
        let client = client.clone();
        in_flight.spawn(async move {
            let _permit = permit;
            let namespace = event.metadata.namespace.clone().unwrap_or_default();
            let events: Api<Event> = Api::namespaced(client, &namespace);
            if let Err(err) = events.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %err, "events: could not record an event");
            }
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}
