//! The resource quota controller: keeps every ResourceQuota's status true to its namespace, as
//! kube-controller-manager's does. A sync sets `status.hard` to `spec.hard` and recounts `status.used` from the
//! objects in the namespace (only the resources the quota limits, and only the pods its scopes take in), with
//! the same usage rules the API server's quota admission charges by ([`gantry_api::quota`]).
//!
//! The API server charges a quota when it admits an object; nothing charges back when an object goes. This
//! controller gives back: a quota is recounted when it is created or its `spec.hard` changes, when a pod,
//! service, claim, config map, secret, replication controller or quota in its namespace is deleted (or a pod
//! ends, Succeeded or Failed), and every resync period (5 minutes by default) in any case.
//!
//! The status is written with the quota's resourceVersion: if the API server charged the quota meanwhile, the
//! write conflicts and the quota is recounted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gantry_api::quota::{self, ResourceList};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::informer::{Change, Informer};
use crate::queue::{WorkQueue, run_workers};

/// How often every quota is recounted whatever happened (kube's `--resource-quota-sync-period`).
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(300);

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// Listing the objects a quota counts failed.
    #[error("listing {resource} in namespace {namespace} for quota {quota}: {source}")]
    List {
        /// The resource listed (`pods`, `deployments.apps`).
        resource: String,
        /// The namespace.
        namespace: String,
        /// The quota.
        quota: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The resource a `count/…` name refers to is not served.
    #[error("quota {namespace}/{quota} counts {resource}, which the API server does not serve")]
    UnknownResource {
        /// The resource (`widgets.example.com`).
        resource: String,
        /// The namespace.
        namespace: String,
        /// The quota.
        quota: String,
    },
    /// Writing the status failed (a conflict: the API server charged the quota meanwhile).
    #[error("updating the status of quota {namespace}/{quota}: {source}")]
    Status {
        /// The namespace.
        namespace: String,
        /// The quota.
        quota: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// The controller. Build it before the informers start, so that it sees their first lists.
pub struct ResourceQuotaController {
    client: Client,
    quotas: Arc<Informer<ResourceQuota>>,
    queue: Arc<WorkQueue>,
    resync: Duration,
}

fn key_of(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Whether the quota's status is behind its spec.
fn status_behind(q: &ResourceQuota) -> bool {
    let hard = |list: Option<&BTreeMap<String, Quantity>>| {
        list.map(|l| l.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect::<BTreeMap<_, _>>())
    };
    let status = q.status.as_ref();
    status.and_then(|s| s.used.as_ref()).is_none()
        || hard(q.spec.as_ref().and_then(|s| s.hard.as_ref())) != hard(status.and_then(|s| s.hard.as_ref()))
}

fn spec_hard(q: &ResourceQuota) -> Option<&BTreeMap<String, Quantity>> {
    q.spec.as_ref().and_then(|s| s.hard.as_ref())
}

/// Queues every quota of `namespace`.
fn enqueue_namespace(quotas: &Informer<ResourceQuota>, queue: &WorkQueue, namespace: &str) {
    for q in quotas.list_namespace(namespace) {
        queue.add(key_of(namespace, q.metadata.name.as_deref().unwrap_or_default()));
    }
}

/// Whether a pod still counts for compute quota (not Succeeded or Failed).
fn pod_counts(pod: &Pod) -> bool {
    !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The new status of a quota: `hard` from the spec, `used` recounted for what the spec limits (values it cannot
/// count are kept as they were, as in kube).
pub fn new_status(quota_obj: &Value, counted: &ResourceList) -> Value {
    let hard = quota::parse_list(&quota_obj["spec"]["hard"]);
    let mut used = quota::parse_list(&quota_obj["status"]["used"]);
    used.extend(counted.iter().map(|(k, v)| (k.clone(), *v)));
    used.retain(|k, _| hard.contains_key(k));
    serde_json::json!({"hard": quota::list_to_json(&hard), "used": quota::list_to_json(&used)})
}

/// Adds up what `objects` (of one resource) charge to the quota's resources `names`, for those its scopes
/// take in. Every name starts at zero.
pub fn count(
    group: &str,
    plural: &str,
    quota_obj: &Value,
    objects: &[Value],
    names: &[String],
    now: i64,
) -> ResourceList {
    let mut total: ResourceList = names.iter().map(|n| (n.clone(), gantry_api::validation::Quantity::ZERO)).collect();
    for obj in objects.iter().filter(|o| quota::matches_scopes(group, plural, quota_obj, o)) {
        let usage = quota::mask(&quota::usage(group, plural, obj, now), names);
        total = quota::add(&total, &usage);
    }
    total
}

impl ResourceQuotaController {
    /// A controller recounting quotas on changes seen by `quotas` and `pods`, and every `resync`.
    pub fn new(
        client: Client,
        quotas: Arc<Informer<ResourceQuota>>,
        pods: Arc<Informer<Pod>>,
        resync: Duration,
    ) -> ResourceQuotaController {
        let queue = WorkQueue::new();
        let q = Arc::clone(&queue);
        quotas.on_change(move |change| match change {
            Change::Added(new) => {
                q.add(key_of(
                    new.metadata.namespace.as_deref().unwrap_or_default(),
                    new.metadata.name.as_deref().unwrap_or_default(),
                ));
            }
            Change::Updated { old, new } => {
                // The API server's own charges change only the status; they need no recount.
                if spec_hard(old) != spec_hard(new) || status_behind(new) {
                    q.add(key_of(
                        new.metadata.namespace.as_deref().unwrap_or_default(),
                        new.metadata.name.as_deref().unwrap_or_default(),
                    ));
                }
            }
            Change::Deleted(_) => {}
        });
        let (q, informer) = (Arc::clone(&queue), Arc::clone(&quotas));
        pods.on_change(move |change| {
            let released = match change {
                Change::Deleted(_) => true,
                Change::Updated { old, new } => pod_counts(old) && !pod_counts(new),
                Change::Added(_) => false,
            };
            if !released {
                return;
            }
            let pod = match change {
                Change::Deleted(p) | Change::Added(p) => p,
                Change::Updated { new, .. } => new,
            };
            enqueue_namespace(&informer, &q, pod.metadata.namespace.as_deref().unwrap_or_default());
        });
        ResourceQuotaController { client, quotas, queue, resync }
    }

    /// Recounts quotas until `shutdown` (after the quota informer has synced).
    pub async fn run(self, workers: usize, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut watches = JoinSet::new();
        this.watch_deletions::<Service>(&mut watches, &shutdown);
        this.watch_deletions::<PersistentVolumeClaim>(&mut watches, &shutdown);
        this.watch_deletions::<ConfigMap>(&mut watches, &shutdown);
        this.watch_deletions::<Secret>(&mut watches, &shutdown);
        this.watch_deletions::<ReplicationController>(&mut watches, &shutdown);
        this.watch_deletions::<ResourceQuota>(&mut watches, &shutdown);
        this.quotas.wait_synced(&shutdown).await;
        let resync = {
            let this = Arc::clone(&this);
            let shutdown = shutdown.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(this.resync) => {}
                    }
                    for q in this.quotas.list() {
                        this.queue.add(key_of(
                            q.metadata.namespace.as_deref().unwrap_or_default(),
                            q.metadata.name.as_deref().unwrap_or_default(),
                        ));
                    }
                }
            }
        };
        watches.spawn(resync);
        let worker = Arc::clone(&this);
        run_workers("resourcequota", Arc::clone(&this.queue), workers, shutdown.clone(), move |key| {
            let this = Arc::clone(&worker);
            async move { this.sync(&key).await.map(|()| crate::queue::Requeue::No) }
        })
        .await;
        watches.abort_all();
        while watches.join_next().await.is_some() {}
    }

    /// Follows deletions of a kind that quotas count; each queues the quotas of its namespace.
    fn watch_deletions<K>(self: &Arc<Self>, tasks: &mut JoinSet<()>, shutdown: &CancellationToken)
    where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let this = Arc::clone(self);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let mut stream = watcher(Api::<K>::all(this.client.clone()), watcher::Config::default()).boxed();
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = stream.next() => next,
                };
                match event {
                    Some(Ok(watcher::Event::Delete(object))) => {
                        let namespace = object.meta().namespace.clone().unwrap_or_default();
                        enqueue_namespace(&this.quotas, &this.queue, &namespace);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, kind = %K::kind(&()), "resourcequota: watch failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                    None => return,
                }
            }
        });
    }

    /// The API resource `(group, plural)` names, in its preferred version.
    async fn api_resource(&self, group: &str, plural: &str) -> Option<ApiResource> {
        let registry = gantry_api::registry::Registry::built_in();
        let built_in = registry.all().filter(|r| r.group == group && r.plural == plural).max_by_key(|r| r.preferred);
        if let Some(r) = built_in {
            let gvk = kube::api::GroupVersionKind::gvk(r.group, r.version, r.kind);
            return Some(ApiResource::from_gvk_with_plural(&gvk, r.plural));
        }
        // A custom resource: ask the API server which version it prefers.
        let discovered = kube::discovery::group(&self.client, group).await.ok()?;
        discovered.recommended_resources().into_iter().map(|(r, _)| r).find(|r| r.plural == plural)
    }

    /// Recounts one quota and writes its status if it changed.
    async fn sync(&self, key: &str) -> Result<(), QuotaError> {
        let Some((namespace, name)) = key.split_once('/') else { return Ok(()) };
        let Some(current) = self.quotas.get(namespace, name) else { return Ok(()) };
        let Ok(quota_obj) = serde_json::to_value(current.as_ref()) else { return Ok(()) };
        let hard = quota::parse_list(&quota_obj["spec"]["hard"]);
        // The quota's resource names, by the resource whose objects they count.
        let mut by_resource: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for name in hard.keys() {
            if let Some(resource) = quota::counted_resource(name) {
                by_resource.entry(resource).or_default().push(name.clone());
            }
        }
        let now = jiff::Timestamp::now().as_second();
        let mut counted = ResourceList::new();
        for ((group, plural), names) in &by_resource {
            let shown = if group.is_empty() { plural.clone() } else { format!("{plural}.{group}") };
            let Some(resource) = self.api_resource(group, plural).await else {
                return Err(QuotaError::UnknownResource {
                    resource: shown,
                    namespace: namespace.to_string(),
                    quota: name.to_string(),
                });
            };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
            let list = api.list(&ListParams::default()).await.map_err(|source| QuotaError::List {
                resource: shown,
                namespace: namespace.to_string(),
                quota: name.to_string(),
                source,
            })?;
            let objects: Vec<Value> = list.items.iter().filter_map(|o| serde_json::to_value(o).ok()).collect();
            counted.extend(count(group, plural, &quota_obj, &objects, names, now));
        }
        let status = new_status(&quota_obj, &counted);
        let unchanged = quota::parse_list(&status["hard"]) == quota::parse_list(&quota_obj["status"]["hard"])
            && quota::parse_list(&status["used"]) == quota::parse_list(&quota_obj["status"]["used"])
            && quota_obj["status"]["used"].is_object();
        if unchanged {
            return Ok(());
        }
        let mut updated = current.as_ref().clone();
        updated.status = serde_json::from_value(status).ok();
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), namespace);
        match api.replace_status(name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(()),
            // Deleted meanwhile: nothing to keep true.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => {
                Err(QuotaError::Status { namespace: namespace.to_string(), quota: name.to_string(), source })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> gantry_api::validation::Quantity {
        gantry_api::validation::Quantity::parse(s).unwrap()
    }

    #[test]
    fn counting_sums_the_pods_a_quota_takes_in_and_starts_at_zero() {
        let quota_obj = json!({"spec": {"hard": {"pods": "5", "requests.cpu": "2"}, "scopes": ["NotTerminating"]}});
        let pod = |cpu: &str, phase: &str| {
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
                "status": {"phase": phase}})
        };
        let mut terminating = pod("1", "Running");
        terminating["spec"]["activeDeadlineSeconds"] = json!(10);
        let objects = vec![pod("100m", "Running"), pod("200m", "Pending"), pod("1", "Succeeded"), terminating];
        let names = vec!["pods".to_string(), "requests.cpu".to_string()];
        let counted = count("", "pods", &quota_obj, &objects, &names, 0);
        assert_eq!(counted["pods"], q("2"));
        assert_eq!(counted["requests.cpu"], q("300m"));
        let none = count("", "pods", &quota_obj, &[], &names, 0);
        assert_eq!((none["pods"], none["requests.cpu"]), (q("0"), q("0")));
    }

    #[test]
    fn the_new_status_copies_hard_and_keeps_only_limited_usage() {
        let quota_obj = json!({"spec": {"hard": {"pods": "5", "widgets": "1"}},
            "status": {"hard": {"pods": "4", "secrets": "1"}, "used": {"secrets": "1", "widgets": "1"}}});
        let counted: ResourceList = [("pods".to_string(), q("3"))].into();
        let status = new_status(&quota_obj, &counted);
        assert_eq!(status, json!({"hard": {"pods": "5", "widgets": "1"}, "used": {"pods": "3", "widgets": "1"}}));
    }

    #[test]
    fn a_quota_whose_status_lags_its_spec_is_behind() {
        let quota: ResourceQuota = serde_json::from_value(json!({"metadata": {"name": "q"},
            "spec": {"hard": {"pods": "2"}}, "status": {"hard": {"pods": "2"}, "used": {"pods": "0"}}}))
        .unwrap();
        assert!(!status_behind(&quota));
        let mut changed = quota.clone();
        changed.spec.as_mut().unwrap().hard.as_mut().unwrap().insert("pods".into(), Quantity("3".into()));
        assert!(status_behind(&changed));
        let fresh: ResourceQuota =
            serde_json::from_value(json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2"}}})).unwrap();
        assert!(status_behind(&fresh));
    }
}
