//! Events about pods (core `v1` Events, as the kubelet writes them: `source.component: kubelet`, the node as
//! `source.host`, the container as `involvedObject.fieldPath`), written in the background so that a pod worker
//! never waits on them. A repeat of the same event bumps its `count` and `lastTimestamp` instead of adding
//! another, as the kubelet's event correlator does. Events beyond a buffer of 1,000 are dropped: an event is a
//! report, not state.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Events waiting to be written, at most.
const EVENT_BUFFER: usize = 1000;
/// Distinct events remembered for aggregation.
const REMEMBERED: usize = 4096;

/// Whether an event reports something normal or something to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Queued {
    involved: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

/// A cheap handle that queues events for writing.
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Queued>,
}

/// A reference to a pod, or to one of its containers when `container` is given (`spec.containers{name}`).
pub fn pod_reference(pod: &Pod, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

impl EventRecorder {
    /// A recorder for node `node`, whose writer runs until `shutdown`; returns the writer's task.
    pub fn start(
        client: Client,
        node: &str,
        shutdown: CancellationToken,
    ) -> (EventRecorder, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let source = EventSource { component: Some("kubelet".into()), host: Some(node.to_string()) };
        let task = tokio::spawn(write_events(client, source, Arc::from(node), rx, shutdown));
        (EventRecorder { tx }, task)
    }

    /// Queues an event; dropped if the buffer is full.
    pub fn record(&self, involved: ObjectReference, type_: EventType, reason: &str, message: impl Into<String>) {
        let queued = Queued { involved, type_, reason: reason.to_string(), message: message.into() };
        if self.tx.try_send(queued).is_err() {
            tracing::debug!(reason, "events: buffer full; an event was dropped");
        }
    }
}

struct Written {
    name: String,
    count: i32,
}

async fn write_events(
    client: Client,
    source: EventSource,
    node: Arc<str>,
    mut rx: mpsc::Receiver<Queued>,
    shutdown: CancellationToken,
) {
    let mut written: HashMap<String, Written> = HashMap::new();
    loop {
        let queued = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = rx.recv() => match next {
                Some(queued) => queued,
                None => break,
            },
        };
        let now = Time(jiff::Timestamp::now());
        let key = format!(
            "{}\0{}\0{}\0{}\0{}",
            queued.involved.uid.as_deref().unwrap_or(""),
            queued.involved.field_path.as_deref().unwrap_or(""),
            queued.type_.as_str(),
            queued.reason,
            queued.message
        );
        let namespace = queued.involved.namespace.clone().unwrap_or_else(|| "default".into());
        let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Some(seen) = written.get_mut(&key) {
            seen.count += 1;
            let patch = serde_json::json!({"count": seen.count, "lastTimestamp": now});
            match events.patch(&seen.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => continue,
                // Gone (expired or deleted): write it anew below.
                Err(err) => tracing::debug!(error = %err, "events: could not update an event"),
            }
            written.remove(&key);
        }
        let name = format!(
            "{}.{:x}",
            queued.involved.name.as_deref().unwrap_or("pod"),
            jiff::Timestamp::now().as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            involved_object: queued.involved,
            reason: Some(queued.reason),
            message: Some(queued.message),
            type_: Some(queued.type_.as_str().into()),
            source: Some(source.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.to_string()),
            ..Default::default()
        };
        match events.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if written.len() >= REMEMBERED {
                    written.clear();
                }
                written.insert(key, Written { name, count: 1 });
            }
            Err(err) => tracing::debug!(error = %err, "events: could not record an event"),
        }
    }
}
