//! The namespace controller: empties a namespace being deleted, then releases it, as kube-controller-manager's
//! namespace controller does.
//!
//! A namespace with a `deletionTimestamp` keeps the `kubernetes` finalizer in `spec.finalizers` until this
//! controller has removed everything in it. A sync discovers every namespaced resource type the API server
//! serves (the preferred version of each group) that can be deleted, deletes each type's objects in the
//! namespace (one `deletecollection` where served, else one DELETE per object, always with background
//! propagation so that no `orphan` finalizer is added), and lists what is left. While something is left the
//! namespace's status conditions say what (`NamespaceContentRemaining`, `NamespaceFinalizersRemaining`, and
//! the failures `NamespaceDeletionDiscoveryFailure`, `NamespaceDeletionGroupVersionParsingFailure`,
//! `NamespaceDeletionContentFailure`) and the namespace is looked at again a few seconds later. Once nothing
//! is left the finalizer is removed through the `finalize` subresource; the API server then deletes the
//! namespace if no other finalizer holds it.
//!
//! Pods bound to a node wait for their node agent to confirm their end; without one they stay, and so does
//! their namespace (Terminating, with `NamespaceContentRemaining` and, once their grace period is over,
//! `NamespaceDeletionContentFailure`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceSpec, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResourceList, Time};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::informer::{Change, Informer};
use crate::queue::{Requeue, WorkQueue, backoff, run_workers};

/// The finalizer in `spec.finalizers` this controller removes once the namespace is empty.
pub const FINALIZER: &str = "kubernetes";

/// How long after seeing a namespace's deletion the controller starts on it: objects whose creation was
/// admitted just before the deletion may still be landing.
pub const DELETION_DELAY: Duration = Duration::from_millis(500);

/// How long objects with finalizers are assumed to need to go (kube's `finalizerEstimateSeconds`).
const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

/// The shortest and the longest wait before looking again at a namespace whose content is still going.
const REMAINING_MIN_DELAY: Duration = Duration::from_secs(1);
const REMAINING_MAX_DELAY: Duration = Duration::from_secs(5);

/// The longest wait before retrying a namespace whose sync failed.
const FAILURE_MAX_DELAY: Duration = Duration::from_secs(60);

/// Resource types whose content is deleted at once, at most.
const PARALLEL_TYPES: usize = 8;

/// The condition types this controller maintains, in the order it writes them.
pub const CONDITION_TYPES: [&str; 5] = [
    "NamespaceDeletionDiscoveryFailure",
    "NamespaceDeletionGroupVersionParsingFailure",
    "NamespaceDeletionContentFailure",
    "NamespaceContentRemaining",
    "NamespaceFinalizersRemaining",
];

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// A call about the namespace itself failed.
    #[error("{what} for namespace {namespace}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The namespace.
        namespace: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Discovering or deleting the content failed (for some resource types; the others were dealt with).
    #[error("deleting the content of namespace {namespace}: {}", failures.join("; "))]
    Content {
        /// The namespace.
        namespace: String,
        /// What failed, one entry per failure.
        failures: Vec<String>,
    },
}

/// A namespaced resource type the API server serves, and what it can do.
#[derive(Clone, Debug)]
pub struct NamespacedResource {
    /// The type (group, version, kind, plural).
    pub resource: ApiResource,
    /// Whether `list` is served.
    pub list: bool,
    /// Whether `deletecollection` is served.
    pub delete_collection: bool,
}

/// What discovery found.
#[derive(Debug, Default)]
pub struct Discovered {
    /// The deletable namespaced resource types.
    pub resources: Vec<NamespacedResource>,
    /// Group versions that could not be discovered, with why.
    pub failures: Vec<(String, String)>,
    /// Group versions whose name could not be parsed.
    pub unparsable: Vec<String>,
}

/// Splits `group/version` (or `version` for the core group).
fn parse_group_version(group_version: &str) -> Option<(&str, &str)> {
    match group_version.split('/').collect::<Vec<_>>().as_slice() {
        [version] if !version.is_empty() => Some(("", version)),
        [group, version] if !group.is_empty() && !version.is_empty() => Some((group, version)),
        _ => None,
    }
}

/// The deletable namespaced types of one group version's resource list.
fn deletable(list: &APIResourceList, found: &mut Discovered) {
    let Some((group, version)) = parse_group_version(&list.group_version) else {
        found.unparsable.push(list.group_version.clone());
        return;
    };
    for r in &list.resources {
        let verb = |v: &str| r.verbs.iter().any(|x| x == v);
        if !r.namespaced || r.name.contains('/') || !verb("delete") {
            continue;
        }
        let group = r.group.as_deref().unwrap_or(group);
        let version = r.version.as_deref().unwrap_or(version);
        let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        found.resources.push(NamespacedResource {
            resource: ApiResource {
                group: group.to_string(),
                version: version.to_string(),
                api_version,
                kind: r.kind.clone(),
                plural: r.name.clone(),
            },
            list: verb("list"),
            delete_collection: verb("deletecollection"),
        });
    }
}

/// Discovers the deletable namespaced resource types in the preferred version of every group. A group that
/// cannot be discovered is reported and skipped: the others can still be emptied.
pub async fn discover(client: &Client) -> Discovered {
    let mut found = Discovered::default();
    let mut group_versions = Vec::new();
    match client.list_core_api_versions().await {
        Ok(core) => group_versions.extend(core.versions.first().cloned()),
        Err(err) => found.failures.push(("v1".into(), err.to_string())),
    }
    match client.list_api_groups().await {
        Ok(groups) => {
            for group in groups.groups {
                let preferred = group.preferred_version.or_else(|| group.versions.first().cloned());
                group_versions.extend(preferred.map(|p| p.group_version));
            }
        }
        Err(err) => found.failures.push(("apis".into(), err.to_string())),
    }
    let lists = futures::stream::iter(group_versions)
        .map(|gv| async move {
            let list = if gv.contains('/') {
                client.list_api_group_resources(&gv).await
            } else {
                client.list_core_api_resources(&gv).await
            };
            (gv, list)
        })
        .buffered(PARALLEL_TYPES)
        .collect::<Vec<_>>()
        .await;
    for (gv, list) in lists {
        match list {
            Ok(list) => deletable(&list, &mut found),
            Err(err) => found.failures.push((gv, err.to_string())),
        }
    }
    found
}

/// What is left of one resource type after deleting it.
#[derive(Debug, Default)]
struct TypeRemains {
    /// Seconds to wait before expecting it gone; 0 for no estimate.
    estimate: i64,
    /// Objects left.
    remaining: usize,
    /// Objects left by finalizer.
    finalizers: BTreeMap<String, usize>,
}

fn is_gone(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(e) if e.code == 404 || e.code == 405)
}

/// `resource.group`, as kube-controller-manager names a resource in its conditions.
fn resource_name(r: &ApiResource) -> String {
    format!("{}.{}", r.plural, r.group)
}

/// The resource's `GroupVersionResource` as kube-controller-manager prints it in errors.
fn gvr_name(r: &ApiResource) -> String {
    format!("{}/{}, Resource={}", r.group, r.version, r.plural)
}

/// The conditions a sync found, before merging them into the namespace's status.
#[derive(Debug, Default)]
pub struct Findings {
    /// Discovery failures, as kube words them.
    pub discovery: Option<String>,
    /// Group versions that could not be parsed.
    pub parsing: Option<String>,
    /// Content deletion failures.
    pub content: Vec<String>,
    /// Objects left by resource (`pods.` for core pods).
    pub remaining: BTreeMap<String, usize>,
    /// Objects left by finalizer.
    pub finalizers: BTreeMap<String, usize>,
}

impl Findings {
    /// The conditions that report trouble (type, reason, message); the other types are reported as fine.
    fn troubles(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut out = Vec::new();
        if let Some(message) = &self.discovery {
            out.push((CONDITION_TYPES[0], "DiscoveryFailed", message.clone()));
        }
        if let Some(message) = &self.parsing {
            out.push((CONDITION_TYPES[1], "GroupVersionParsingFailed", message.clone()));
        }
        if !self.content.is_empty() {
            let mut messages = self.content.clone();
            messages.sort();
            let message =
                format!("Failed to delete all resource types, {} remaining: {}", messages.len(), messages.join(", "));
            out.push((CONDITION_TYPES[2], "ContentDeletionFailed", message));
        }
        let remaining: Vec<String> = self
            .remaining
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        if !remaining.is_empty() {
            let message = format!("Some resources are remaining: {}", remaining.join(", "));
            out.push((CONDITION_TYPES[3], "SomeResourcesRemain", message));
        }
        let finalizers: Vec<String> = self
            .finalizers
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        if !finalizers.is_empty() {
            let message = format!("Some content in the namespace has finalizers remaining: {}", finalizers.join(", "));
            out.push((CONDITION_TYPES[4], "SomeFinalizersRemain", message));
        }
        out
    }
}

fn fine(type_: &str) -> (&'static str, &'static str) {
    match type_ {
        "NamespaceDeletionDiscoveryFailure" => ("ResourcesDiscovered", "All resources successfully discovered"),
        "NamespaceDeletionGroupVersionParsingFailure" => {
            ("ParsedGroupVersions", "All legacy kube types successfully parsed")
        }
        "NamespaceDeletionContentFailure" => {
            ("ContentDeleted", "All content successfully deleted, may be waiting on finalization")
        }
        "NamespaceContentRemaining" => ("ContentRemoved", "All content successfully removed"),
        _ => ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
    }
}

/// Merges what a sync found into the namespace's conditions, as kube-controller-manager does: every
/// maintained type is present, True with the trouble or False with its "fine" reason; a condition whose
/// status, reason and message are unchanged is kept as it was, and its transition time moves only when its
/// status changes. Returns the conditions and whether they changed.
pub fn merge_conditions(
    old: &[NamespaceCondition],
    findings: &Findings,
    now: jiff::Timestamp,
) -> (Vec<NamespaceCondition>, bool) {
    let troubles = findings.troubles();
    let mut conditions = old.to_vec();
    let mut changed = false;
    for type_ in CONDITION_TYPES {
        let (status, reason, message) = match troubles.iter().find(|(t, _, _)| *t == type_) {
            Some((_, reason, message)) => ("True", reason.to_string(), message.clone()),
            None => {
                let (reason, message) = fine(type_);
                ("False", reason.to_string(), message.to_string())
            }
        };
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(NamespaceCondition {
                    type_: type_.to_string(),
                    status: status.to_string(),
                    reason: Some(reason),
                    message: Some(message),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
            Some(c) => {
                if c.status != status || c.reason.as_deref() != Some(&reason) || c.message.as_deref() != Some(&message)
                {
                    if c.status != status {
                        c.last_transition_time = Some(Time(now));
                    }
                    c.status = status.to_string();
                    c.reason = Some(reason);
                    c.message = Some(message);
                    changed = true;
                }
            }
        }
    }
    (conditions, changed)
}

/// When to look again at a namespace whose content is expected to be gone in `estimate` seconds: half of it
/// (as kube-controller-manager waits), but within 1 to 5 seconds so that a namespace goes soon after its
/// last object.
fn remaining_delay(estimate: i64) -> Duration {
    let half = Duration::from_secs(u64::try_from(estimate / 2 + 1).unwrap_or(1));
    half.clamp(REMAINING_MIN_DELAY, REMAINING_MAX_DELAY)
}

/// The controller.
pub struct NamespaceController {
    client: Client,
    namespaces: Arc<Informer<Namespace>>,
    queue: Arc<WorkQueue>,
    failures: Mutex<HashMap<String, u32>>,
}

impl NamespaceController {
    /// The controller, following namespaces through the shared informer.
    pub fn new(client: Client, namespaces: Arc<Informer<Namespace>>) -> Arc<NamespaceController> {
        let controller = Arc::new(NamespaceController {
            client,
            namespaces: Arc::clone(&namespaces),
            queue: WorkQueue::new(),
            failures: Mutex::default(),
        });
        let queue = Arc::clone(&controller.queue);
        namespaces.on_change(move |change| match change {
            Change::Added(ns) | Change::Updated { new: ns, .. } if ns.metadata.deletion_timestamp.is_some() => {
                queue.add_after(ns.metadata.name.clone().unwrap_or_default(), DELETION_DELAY);
            }
            _ => {}
        });
        controller
    }

    /// Empties namespaces being deleted with `workers` workers until `shutdown` (after the informer has synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.namespaces.wait_synced(&shutdown).await;
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("namespace", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { Ok::<_, std::convert::Infallible>(controller.sync_and_pace(&key).await) }
        })
        .await;
    }

    /// A sync, with failures retried after a backoff capped at a minute: a namespace whose content cannot be
    /// removed yet (pods awaiting their node agent) is looked at again at least that often.
    async fn sync_and_pace(&self, name: &str) -> Requeue {
        let result = self.sync(name).await;
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(requeue) => {
                failures.remove(name);
                requeue
            }
            Err(err) => {
                let count = failures.entry(name.to_string()).or_insert(0);
                *count += 1;
                tracing::debug!(namespace = name, error = %err, "namespace: deletion not done; retrying");
                Requeue::After(backoff(*count).min(FAILURE_MAX_DELAY))
            }
        }
    }

    fn api_error(what: &'static str, namespace: &str, source: kube::Error) -> NamespaceError {
        NamespaceError::Api { what, namespace: namespace.to_string(), source }
    }

    /// One sync of the namespace `name`.
    pub async fn sync(&self, name: &str) -> Result<Requeue, NamespaceError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        // Other controllers edit a terminating namespace too: work from its latest state.
        let ns = match api.get_opt(name).await {
            Ok(Some(ns)) => ns,
            Ok(None) => return Ok(Requeue::No),
            Err(source) => return Err(Self::api_error("reading the namespace", name, source)),
        };
        let Some(deleted_at) = ns.metadata.deletion_timestamp.as_ref().map(|t| t.0) else {
            return Ok(Requeue::No);
        };
        let finalizers: Vec<String> = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(Requeue::No);
        }
        let (findings, estimate) = self.delete_content(name, deleted_at).await;
        let old = ns.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        let (conditions, changed) = merge_conditions(old, &findings, jiff::Timestamp::now());
        let terminating = ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if changed || !terminating {
            let patch = json!({"status": {"phase": "Terminating", "conditions": conditions}});
            match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Requeue::No),
                // Conditions are a report: failing to write them does not stop the deletion.
                Err(err) => tracing::warn!(namespace = name, error = %err, "namespace: could not update conditions"),
            }
        }
        let mut failures = findings.content.clone();
        if let Some(discovery) = findings.discovery {
            failures.push(discovery);
        }
        if let Some(parsing) = findings.parsing {
            failures.push(parsing);
        }
        if !failures.is_empty() {
            return Err(NamespaceError::Content { namespace: name.to_string(), failures });
        }
        if estimate > 0 {
            return Ok(Requeue::After(remaining_delay(estimate)));
        }
        let kept: BTreeSet<String> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
        let finalized = Namespace {
            metadata: ns.metadata.clone(),
            spec: Some(NamespaceSpec { finalizers: Some(kept.into_iter().collect()) }),
            status: None,
        };
        match api.replace_subresource("finalize", name, &PostParams::default(), &finalized).await {
            Ok(_) => Ok(Requeue::No),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(Requeue::No),
            Err(source) => Err(Self::api_error("finalizing the namespace", name, source)),
        }
    }

    /// Deletes everything in the namespace; reports what failed and what is left, and how many seconds the
    /// rest is expected to need (0 when nothing is left).
    async fn delete_content(&self, namespace: &str, deleted_at: jiff::Timestamp) -> (Findings, i64) {
        let discovered = discover(&self.client).await;
        let mut findings = Findings::default();
        if !discovered.failures.is_empty() {
            let mut failed: Vec<String> = discovered.failures.iter().map(|(gv, e)| format!("{gv}: {e}")).collect();
            failed.sort();
            findings.discovery = Some(format!(
                "Discovery failed for some groups, {} failing: unable to retrieve the complete list of server APIs: {}",
                failed.len(),
                failed.join(", ")
            ));
        }
        if !discovered.unparsable.is_empty() {
            let bad: Vec<String> =
                discovered.unparsable.iter().map(|gv| format!("unexpected GroupVersion string: {gv}")).collect();
            findings.parsing = Some(bad.join(", "));
        }
        let results = futures::stream::iter(discovered.resources)
            .map(|r| async move {
                let remains = self.delete_type(namespace, &r, deleted_at).await;
                (r, remains)
            })
            .buffer_unordered(PARALLEL_TYPES)
            .collect::<Vec<_>>()
            .await;
        let mut estimate = 0;
        for (r, remains) in results {
            let remains = match remains {
                Ok(remains) => remains,
                Err((remains, failure)) => {
                    findings.content.push(failure);
                    remains
                }
            };
            estimate = estimate.max(remains.estimate);
            if remains.remaining > 0 {
                *findings.remaining.entry(resource_name(&r.resource)).or_insert(0) += remains.remaining;
                for (finalizer, n) in remains.finalizers {
                    *findings.finalizers.entry(finalizer).or_insert(0) += n;
                }
            }
        }
        (findings, estimate)
    }

    /// Deletes one type's objects in the namespace and lists what is left.
    async fn delete_type(
        &self,
        namespace: &str,
        r: &NamespacedResource,
        deleted_at: jiff::Timestamp,
    ) -> Result<TypeRemains, (TypeRemains, String)> {
        let gvr = gvr_name(&r.resource);
        let fail = |estimate: i64, what: &str, err: kube::Error| {
            (TypeRemains { estimate, ..TypeRemains::default() }, format!("{what} {gvr}: {err}"))
        };
        let estimate = if r.resource.group.is_empty() && r.resource.plural == "pods" {
            self.pod_estimate(namespace, deleted_at).await.map_err(|e| fail(0, "estimating", e))?
        } else {
            0
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &r.resource);
        // Background propagation: the namespace's objects all go, so none should wait for an orphaning.
        let params = DeleteParams::background();
        let mut collection_deleted = false;
        if r.delete_collection {
            match api.delete_collection(&params, &ListParams::default()).await {
                Ok(_) => collection_deleted = true,
                Err(err) if is_gone(&err) => {}
                Err(err) => return Err(fail(estimate, "deleting the collection of", err)),
            }
        }
        if !r.list {
            return Ok(TypeRemains { estimate, ..TypeRemains::default() });
        }
        if !collection_deleted {
            let items = match api.list(&ListParams::default()).await {
                Ok(list) => list.items,
                Err(err) if is_gone(&err) => return Ok(TypeRemains { estimate, ..TypeRemains::default() }),
                Err(err) => return Err(fail(estimate, "listing", err)),
            };
            for item in items {
                let name = item.metadata.name.as_deref().unwrap_or_default();
                match api.delete(name, &params).await {
                    Ok(_) => {}
                    Err(err) if is_gone(&err) => {}
                    Err(err) => return Err(fail(estimate, "deleting", err)),
                }
            }
        }
        let left = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(err) if is_gone(&err) => return Ok(TypeRemains { estimate, ..TypeRemains::default() }),
            Err(err) => return Err(fail(estimate, "listing", err)),
        };
        if left.is_empty() {
            return Ok(TypeRemains::default());
        }
        let mut finalizers = BTreeMap::new();
        for item in &left {
            for finalizer in item.metadata.finalizers.iter().flatten() {
                *finalizers.entry(finalizer.clone()).or_insert(0) += 1;
            }
        }
        let remains = TypeRemains { estimate, remaining: left.len(), finalizers };
        if remains.estimate > 0 {
            return Ok(remains);
        }
        if !remains.finalizers.is_empty() {
            // Finalizers are somebody's work in progress: give them time rather than call it a failure.
            return Ok(TypeRemains { estimate: FINALIZER_ESTIMATE_SECONDS, ..remains });
        }
        let failure = format!("unexpected items still remain in namespace: {namespace} for gvr: {gvr}");
        Err((remains, failure))
    }

    /// How long the namespace's pods may still take to end: the longest grace period of those not finished,
    /// counted from the namespace's deletion (0 once that has passed).
    async fn pod_estimate(&self, namespace: &str, deleted_at: jiff::Timestamp) -> Result<i64, kube::Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let estimate = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
            .filter_map(|p| p.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .max()
            .unwrap_or(0);
        let elapsed = jiff::Timestamp::now().as_second() - deleted_at.as_second();
        Ok(if elapsed >= estimate { 0 } else { estimate })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_first_sync_writes_every_condition_false_when_all_went_well() {
        let (conditions, changed) = merge_conditions(&[], &Findings::default(), at("2026-01-01T00:00:00Z"));
        assert!(changed);
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, CONDITION_TYPES);
        assert!(conditions.iter().all(|c| c.status == "False"));
        assert_eq!(conditions[3].reason.as_deref(), Some("ContentRemoved"));
    }

    #[test]
    fn remaining_content_is_reported_by_resource_and_by_finalizer() {
        let findings = Findings {
            remaining: BTreeMap::from([("pods.".to_string(), 2), ("configmaps.".to_string(), 1)]),
            finalizers: BTreeMap::from([("example.com/hold".to_string(), 1)]),
            ..Findings::default()
        };
        let (conditions, _) = merge_conditions(&[], &findings, at("2026-01-01T00:00:00Z"));
        let remaining = conditions.iter().find(|c| c.type_ == "NamespaceContentRemaining").unwrap();
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances")
        );
        let held = conditions.iter().find(|c| c.type_ == "NamespaceFinalizersRemaining").unwrap();
        assert_eq!(
            held.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
        );
    }

    #[test]
    fn unchanged_conditions_are_not_rewritten_and_transition_times_move_only_with_status() {
        let t0 = at("2026-01-01T00:00:00Z");
        let t1 = at("2026-01-01T00:01:00Z");
        let held = Findings { remaining: BTreeMap::from([("pods.".to_string(), 2)]), ..Findings::default() };
        let (first, _) = merge_conditions(&[], &held, t0);
        let (again, changed) = merge_conditions(&first, &held, t1);
        assert!(!changed);
        assert_eq!(again, first);
        let fewer = Findings { remaining: BTreeMap::from([("pods.".to_string(), 1)]), ..Findings::default() };
        let (fewer_conditions, changed) = merge_conditions(&first, &fewer, t1);
        assert!(changed);
        let c = fewer_conditions.iter().find(|c| c.type_ == "NamespaceContentRemaining").unwrap();
        assert_eq!(c.last_transition_time, Some(Time(t0)), "still True: the transition time stays");
        let (done, _) = merge_conditions(&first, &Findings::default(), t1);
        let c = done.iter().find(|c| c.type_ == "NamespaceContentRemaining").unwrap();
        assert_eq!((c.status.as_str(), c.last_transition_time.clone()), ("False", Some(Time(t1))));
    }

    #[test]
    fn content_failures_are_counted_and_sorted() {
        let findings = Findings { content: vec!["b failed".into(), "a failed".into()], ..Findings::default() };
        let (conditions, _) = merge_conditions(&[], &findings, at("2026-01-01T00:00:00Z"));
        let c = conditions.iter().find(|c| c.type_ == "NamespaceDeletionContentFailure").unwrap();
        assert_eq!(c.status, "True");
        assert_eq!(c.message.as_deref(), Some("Failed to delete all resource types, 2 remaining: a failed, b failed"));
    }

    #[test]
    fn group_versions_parse_with_and_without_a_group() {
        assert_eq!(parse_group_version("v1"), Some(("", "v1")));
        assert_eq!(parse_group_version("apps/v1"), Some(("apps", "v1")));
        assert_eq!(parse_group_version("a/b/c"), None);
        assert_eq!(parse_group_version(""), None);
    }

    #[test]
    fn only_deletable_namespaced_top_level_resources_are_kept() {
        let list: APIResourceList = serde_json::from_value(json!({"groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "verbs": ["create", "delete", "deletecollection", "get", "list"]},
            {"name": "pods/status", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "verbs": ["delete"]},
            {"name": "bindings", "singularName": "binding", "namespaced": true, "kind": "Binding",
             "verbs": ["create"]},
            {"name": "odd", "singularName": "odd", "namespaced": true, "kind": "Odd", "verbs": ["delete"]},
        ]}))
        .unwrap();
        let mut found = Discovered::default();
        deletable(&list, &mut found);
        let kept: Vec<(&str, bool, bool)> =
            found.resources.iter().map(|r| (r.resource.plural.as_str(), r.list, r.delete_collection)).collect();
        assert_eq!(kept, vec![("pods", true, true), ("odd", false, false)]);
        assert_eq!(found.resources[0].resource.api_version, "v1");
    }

    #[test]
    fn the_wait_for_remaining_content_stays_between_one_and_five_seconds() {
        assert_eq!(remaining_delay(0), Duration::from_secs(1));
        assert_eq!(remaining_delay(4), Duration::from_secs(3));
        assert_eq!(remaining_delay(30), Duration::from_secs(5));
    }
}
