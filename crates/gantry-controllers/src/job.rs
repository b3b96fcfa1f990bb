//! The Job controller (batch/v1): runs pods until a Job's completions succeed or it fails, as
//! kube-controller-manager's does, and deletes finished Jobs once their `ttlSecondsAfterFinished` has passed
//! (the TTL-after-finished controller's work, done here).
//!
//! - Pods come from the template with a controller owner reference, the tracking finalizer
//!   (`batch.kubernetes.io/job-tracking`), and for Indexed Jobs their completion index (annotation, label,
//!   hostname `<job>-<index>`, generateName `<job>-<index>-`, and the `JOB_COMPLETION_INDEX` variable in every
//!   container, read from the annotation through the downward API).
//! - A finished pod is counted exactly once: its UID is first written to `status.uncountedTerminatedPods`,
//!   then its finalizer is removed, then it moves to the `succeeded`/`failed` counters (or
//!   `completedIndexes`). A pod deleted before finishing still holds its finalizer, so it is counted (as
//!   failed) before it can go. Finalizer removals the informer has not shown yet are remembered, so that a
//!   stale view never counts a pod twice.
//! - Failure: `backoffLimit` (pods recreated after an exponential backoff, 10 s doubling up to 6 min),
//!   `backoffLimitPerIndex`/`maxFailedIndexes`, `activeDeadlineSeconds` and `podFailurePolicy` first add the
//!   `FailureTarget` condition and delete active pods; `Failed` follows once no pod is terminating and
//!   every finished pod is counted. Success adds `SuccessCriteriaMet` first and `Complete` (with
//!   `completionTime`) likewise.
//! - `suspend` deletes the active pods (uncounted) and sets the `Suspended` condition; resuming resets
//!   `startTime`.
//! - Expectations keep a sync from creating or deleting pods before the informer shows its previous
//!   creates and deletes; orphan pods matching the selector are adopted (and get the finalizer).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::join_all;
use gantry_api::selector::LabelSelector;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicy, SuccessPolicy, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType, reference_to};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::meta::labels;
use crate::pods::{BY_CONTROLLER, controller_ref, deletion_order, is_active, is_ready, orphans_of};
use crate::queue::{Requeue, WorkQueue, run_workers};

/// The finalizer that keeps a Job's pod until its outcome is counted in the Job's status.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation (and label) holding an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The annotation counting the earlier failures of a pod's index (with `backoffLimitPerIndex`).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// The environment variable carrying the completion index into Indexed Job containers.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The `spec.managedBy` value of Jobs this controller manages (also when unset).
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";
/// Pods created or deleted per sync, at most.
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// Finished pods moved into `uncountedTerminatedPods` per sync, at most (keeps the status small).
pub const MAX_UNCOUNTED_PODS: usize = 500;
/// `spec.backoffLimit` when unset.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// Queue keys of orphan pods whose tracking finalizer must go start with this (Job keys are `namespace/name`).
const ORPHAN_POD_PREFIX: &str = "pod:";

const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
const FAILURE_TARGET: &str = "FailureTarget";
const COMPLETE: &str = "Complete";
const FAILED: &str = "Failed";
const SUSPENDED: &str = "Suspended";

/// The Job controller's timing.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// The delay before recreating a pod after the first failure; it doubles with each further failure.
    pub backoff_base: Duration,
    /// The longest such delay.
    pub backoff_max: Duration,
}

impl Default for JobConfig {
    /// kube's: 10 s doubling, at most 6 minutes.
    fn default() -> JobConfig {
        JobConfig { backoff_base: Duration::from_secs(10), backoff_max: Duration::from_secs(360) }
    }
}

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Creating pods failed.
    #[error("creating pods for {key}: {source}")]
    Create {
        /// The Job.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting pods failed.
    #[error("deleting pods of {key}: {source}")]
    Delete {
        /// The Job.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Another API call failed.
    #[error("{what} for {key}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The Job (or pod).
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

// ---------------------------------------------------------------------------------------------------------
// Pure parts: indexes, pod facts, failure policy, backoff, conditions.

/// Parses kube's compressed interval format (`"1,3-5"`) into the indexes it names below `completions`;
/// malformed or out-of-range parts are skipped, as kube-controller-manager skips them.
pub fn parse_indexes(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut indexes = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<i32>(), b.trim().parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else { continue };
        if first < 0 || first > last {
            continue;
        }
        indexes.extend(first..=last.min(completions.saturating_sub(1)));
    }
    indexes
}

/// Writes indexes in kube's compressed interval format: ascending, runs as `first-last`.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    let flush = |run: (i32, i32), parts: &mut Vec<String>| {
        parts.push(if run.0 == run.1 { run.0.to_string() } else { format!("{}-{}", run.0, run.1) });
    };
    for &ix in indexes {
        run = match run {
            Some((first, last)) if ix == last + 1 => Some((first, ix)),
            Some(done) => {
                flush(done, &mut parts);
                Some((ix, ix))
            }
            None => Some((ix, ix)),
        };
    }
    if let Some(done) = run {
        flush(done, &mut parts);
    }
    parts.join(",")
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// Whether the pod still carries the tracking finalizer.
pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

/// The pod's completion index, if it has a valid one.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let value = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    value.parse::<i32>().ok().filter(|ix| *ix >= 0 && value == &ix.to_string())
}

fn valid_index(pod: &Pod, completions: i32) -> Option<i32> {
    completion_index(pod).filter(|ix| *ix < completions)
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// Whether the pod counts as failed: phase Failed, or (unless only failed pods are replaced) being deleted
/// before it succeeded, since a deleted pod may never reach a terminal phase.
pub fn is_pod_failed(pod: &Pod, only_replace_failed: bool) -> bool {
    if phase(pod) == Some("Failed") {
        return true;
    }
    !only_replace_failed && pod.metadata.deletion_timestamp.is_some() && phase(pod) != Some("Succeeded")
}

/// When the pod finished: its last container's end, else its deletion, else `now`.
fn finish_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten();
    let inits = status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten();
    containers
        .chain(inits)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max()
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now)
}

/// What a pod failure policy rule does with a failed pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    /// The Job fails at once.
    FailJob,
    /// The pod's index fails (with `backoffLimitPerIndex`).
    FailIndex,
    /// The failure is not counted against any limit.
    Ignore,
    /// The failure counts as usual.
    Count,
}

/// The first pod failure policy rule a failed pod matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMatch {
    /// The rule's position.
    pub rule: usize,
    /// Its action.
    pub action: PolicyAction,
    /// What matched, as the FailJob message kube writes (`Container main for pod ns/p failed with exit code
    /// 42 matching FailJob rule at index 0`).
    pub message: String,
}

/// The first rule of `policy` that the failed `pod` matches, as kube-controller-manager evaluates them:
/// exit-code rules look at terminated init and app containers (exit code 0 never matches), condition rules
/// at the pod's conditions; rules with an unknown action are skipped.
pub fn match_pod_failure_policy(policy: &PodFailurePolicy, pod: &Pod) -> Option<PolicyMatch> {
    let pod_name =
        format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""));
    let status = pod.status.as_ref();
    for (i, rule) in policy.rules.iter().enumerate() {
        let action = match rule.action.as_str() {
            "FailJob" => PolicyAction::FailJob,
            "FailIndex" => PolicyAction::FailIndex,
            "Ignore" => PolicyAction::Ignore,
            "Count" => PolicyAction::Count,
            _ => continue,
        };
        if let Some(requirement) = &rule.on_exit_codes {
            let inits = status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten();
            let apps = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten();
            for container in inits.chain(apps) {
                let Some(terminated) = container.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                    continue;
                };
                if requirement.container_name.as_deref().is_some_and(|n| n != container.name) {
                    continue;
                }
                let code = terminated.exit_code;
                if code == 0 {
                    continue;
                }
                let listed = requirement.values.contains(&code);
                let matches = match requirement.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                };
                if matches {
                    let message = format!(
                        "Container {} for pod {pod_name} failed with exit code {code} matching {} rule at index {i}",
                        container.name, rule.action
                    );
                    return Some(PolicyMatch { rule: i, action, message });
                }
            }
        }
        if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = status.and_then(|s| s.conditions.as_ref()).into_iter().flatten();
            for condition in conditions {
                let matched = patterns
                    .iter()
                    .any(|p| p.type_ == condition.type_ && p.status.as_deref().unwrap_or("True") == condition.status);
                if matched {
                    let message = format!(
                        "Pod {pod_name} has condition {} matching {} rule at index {i}",
                        condition.type_, rule.action
                    );
                    return Some(PolicyMatch { rule: i, action, message });
                }
            }
        }
    }
    None
}

/// Whether a failed pod counts against the limits (not ignored by the failure policy).
fn counts_as_failure(policy: Option<&PodFailurePolicy>, pod: &Pod) -> bool {
    policy.and_then(|p| match_pod_failure_policy(p, pod)).is_none_or(|m| m.action != PolicyAction::Ignore)
}

/// The failures since the last success, for the delay before the next pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    /// Failed pods since the last succeeded one.
    pub failures_after_last_success: u32,
    /// When the last of them finished.
    pub last_failure: Option<Timestamp>,
}

/// The record after pods that newly succeeded and failed (their finish times): a success later than every
/// failure clears it; failures after the last success add up.
pub fn next_backoff_record(previous: BackoffRecord, succeeded: &[Timestamp], failed: &[Timestamp]) -> BackoffRecord {
    let last_success = succeeded.iter().max().copied();
    let mut record = previous;
    if let Some(success) = last_success
        && record.last_failure.is_none_or(|f| f <= success)
    {
        record = BackoffRecord::default();
    }
    for &t in failed {
        if last_success.is_some_and(|s| t <= s) {
            continue;
        }
        record.failures_after_last_success += 1;
        record.last_failure = Some(record.last_failure.map_or(t, |f| f.max(t)));
    }
    record
}

/// The delay still to wait at `now` before creating a pod: `base` doubled per failure after the first, at
/// most `max`, counted from the last failure.
pub fn backoff_remaining(record: &BackoffRecord, now: Timestamp, base: Duration, max: Duration) -> Duration {
    let Some(last) = record.last_failure else { return Duration::ZERO };
    if record.failures_after_last_success == 0 {
        return Duration::ZERO;
    }
    let exponent = (record.failures_after_last_success - 1).min(30);
    let delay = base.saturating_mul(1u32 << exponent).min(max);
    let elapsed = Duration::from_millis(u64::try_from(now.as_millisecond() - last.as_millisecond()).unwrap_or(0));
    delay.saturating_sub(elapsed)
}

/// A condition as kube writes them (probe and transition time `now`).
fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
        message: Some(message.into()).filter(|m: &String| !m.is_empty()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn find_condition<'a>(status: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn condition_true(status: Option<&JobStatus>, type_: &str) -> Option<JobCondition> {
    find_condition(status, type_).filter(|c| c.status == "True").cloned()
}

/// Whether the Job has finished (a true Complete or Failed condition).
pub fn is_finished(job: &Job) -> bool {
    let status = job.status.as_ref();
    condition_true(status, COMPLETE).is_some() || condition_true(status, FAILED).is_some()
}

/// Sets a condition to `status` (replacing one of the same type whose status, reason or message differ; a
/// missing condition is added unless it would be False); returns whether anything changed.
pub fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let wanted = new_condition(type_, status, reason, message, now);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing)
            if existing.status != wanted.status
                || existing.reason != wanted.reason
                || existing.message != wanted.message =>
        {
            *existing = wanted;
            true
        }
        Some(_) => false,
        None if status != "False" => {
            conditions.push(wanted);
            true
        }
        None => false,
    }
}

/// The first rule of a success policy the succeeded indexes meet, as the SuccessCriteriaMet message.
pub fn match_success_policy(policy: &SuccessPolicy, completions: i32, succeeded: &BTreeSet<i32>) -> Option<String> {
    for (i, rule) in policy.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(indexes), count) => {
                let wanted = parse_indexes(indexes, completions);
                let done = wanted.intersection(succeeded).count();
                match count {
                    Some(count) => done as i64 >= i64::from(count),
                    None => !wanted.is_empty() && done == wanted.len(),
                }
            }
            (None, Some(count)) => succeeded.len() as i64 >= i64::from(count),
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

/// Moves the UIDs of `uncounted` whose pods no longer hold the finalizer into the counters; returns whether
/// anything moved.
fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let uncounted = status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default);
    let mut moved = false;
    let split = |list: &mut Option<Vec<String>>| -> i32 {
        let all = list.take().unwrap_or_default();
        let before = all.len();
        let kept: Vec<String> = all.into_iter().filter(|uid| with_finalizer.contains(uid)).collect();
        let gone = (before - kept.len()) as i32;
        *list = (!kept.is_empty()).then_some(kept);
        gone
    };
    let succeeded = split(&mut uncounted.succeeded);
    let failed = split(&mut uncounted.failed);
    if succeeded > 0 {
        status.succeeded = nonzero(status.succeeded.unwrap_or(0) + succeeded);
        moved = true;
    }
    if failed > 0 {
        status.failed = nonzero(status.failed.unwrap_or(0) + failed);
        moved = true;
    }
    moved
}

/// Marks the Job finished with `finished` (Complete or Failed) unless pods are still uncounted or
/// terminating; returns whether it did.
pub fn enact_finished(status: &mut JobStatus, finished: &JobCondition, terminating: i32, now: Timestamp) -> bool {
    let uncounted = status.uncounted_terminated_pods.as_ref();
    let pending =
        uncounted.map_or(0, |u| u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len));
    if pending > 0 || terminating > 0 {
        return false;
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let reason = finished.reason.as_deref().unwrap_or("");
    let message = finished.message.as_deref().unwrap_or("");
    ensure_condition(conditions, &finished.type_, "True", reason, message, now);
    if finished.type_ == COMPLETE {
        status.completion_time = Some(Time(now));
    }
    true
}

/// Counters kube leaves out when zero.
fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn spec_of(job: &Job) -> JobSpec {
    job.spec.clone().unwrap_or_default()
}

fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

/// Whether the restart-on-failure pods' container restarts reach the backoff limit.
fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[Arc<Pod>]) -> bool {
    let restart = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(phase(p), Some("Running" | "Pending")))
        .flat_map(|p| {
            let status = p.status.as_ref();
            let inits = status.and_then(|s| s.init_container_statuses.clone()).unwrap_or_default();
            let apps = status.and_then(|s| s.container_statuses.clone()).unwrap_or_default();
            inits.into_iter().chain(apps).map(|c| i64::from(c.restart_count))
        })
        .sum();
    let limit = i64::from(spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT));
    if limit == 0 { restarts > 0 } else { restarts >= limit }
}

/// How long the Job may still run before its active deadline (`None` without one, suspended, or not started).
fn deadline_remaining(spec: &JobSpec, status: &JobStatus, now: Timestamp) -> Option<Duration> {
    let deadline = spec.active_deadline_seconds?;
    if spec.suspend == Some(true) {
        return None;
    }
    let start = status.start_time.as_ref()?.0;
    let allowed = deadline.saturating_mul(1000);
    let elapsed = now.as_millisecond() - start.as_millisecond();
    Some(Duration::from_millis(u64::try_from(allowed - elapsed).unwrap_or(0)))
}

/// Per index: the failures counted so far (from the pods' failure-count annotations plus their own
/// failure) and when the last one happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct IndexFailures {
    count: i32,
    last: Option<Timestamp>,
}

/// The failed indexes of a Job with `backoffLimitPerIndex` and each index's failures.
fn index_failures(
    spec: &JobSpec,
    status: &JobStatus,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> (BTreeSet<i32>, HashMap<i32, IndexFailures>) {
    let completions = spec.completions.unwrap_or(0);
    let limit = spec.backoff_limit_per_index.unwrap_or(0);
    let policy = spec.pod_failure_policy.as_ref();
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
    let mut failed = parse_indexes(status.failed_indexes.as_deref().unwrap_or(""), completions);
    let mut per_index: HashMap<i32, IndexFailures> = HashMap::new();
    for pod in pods {
        let Some(ix) = valid_index(pod, completions) else { continue };
        let earlier = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INDEX_FAILURE_COUNT))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0);
        let entry = per_index.entry(ix).or_default();
        let mut count = earlier;
        if is_pod_failed(pod, only_failed) {
            let matched = policy.and_then(|p| match_pod_failure_policy(p, pod));
            match matched.as_ref().map(|m| m.action) {
                Some(PolicyAction::Ignore) => {}
                Some(PolicyAction::FailIndex) => {
                    failed.insert(ix);
                    count += 1;
                }
                _ => count += 1,
            }
            if matched.is_none_or(|m| m.action != PolicyAction::Ignore) {
                let at = finish_time(pod, now);
                entry.last = Some(entry.last.map_or(at, |l| l.max(at)));
            }
        }
        entry.count = entry.count.max(count);
    }
    for (ix, f) in &per_index {
        if f.count > limit {
            failed.insert(*ix);
        }
    }
    (failed, per_index)
}

/// Active pods to delete, first to go first: for Indexed Jobs, pods without a valid index and duplicates of
/// an index; then kube's order (unscheduled, pending, not ready, …).
fn active_pods_for_removal(spec: &JobSpec, active: &[Arc<Pod>], at_least: usize) -> Vec<Arc<Pod>> {
    let mut remove = Vec::new();
    let mut left: Vec<Arc<Pod>> = Vec::new();
    if is_indexed(spec) {
        let completions = spec.completions.unwrap_or(0);
        let mut sorted: Vec<&Arc<Pod>> = active.iter().collect();
        sorted
            .sort_by(|a, b| completion_index(a).cmp(&completion_index(b)).then_with(|| deletion_order((b, 0), (a, 0))));
        let mut seen = HashSet::new();
        for pod in sorted {
            match valid_index(pod, completions) {
                Some(ix) if seen.insert(ix) => left.push(Arc::clone(pod)),
                _ => remove.push(Arc::clone(pod)),
            }
        }
    } else {
        left = active.to_vec();
    }
    if remove.len() < at_least {
        left.sort_by(|a, b| deletion_order((a, 0), (b, 0)));
        let more = at_least - remove.len();
        remove.extend(left.into_iter().take(more));
    }
    remove
}

/// The owner reference a Job's pods carry.
pub fn owner_reference(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: Job::api_version(&()).into_owned(),
        kind: Job::kind(&()).into_owned(),
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The longest generateName prefix; the server appends 5 random characters to make a 63-character name.
const MAX_GENERATE_NAME: usize = 58;

/// The generateName of an Indexed Job's pods, `<job>-<index>-`, the Job's name shortened to fit.
fn generate_name_with_index(job_name: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let room = MAX_GENERATE_NAME.saturating_sub(suffix.len());
    let base: String = job_name.chars().take(room).collect();
    format!("{base}{suffix}")
}

/// A new pod from the Job's template: owned by the Job, with the tracking finalizer, and for an index the
/// index annotation, label, hostname and environment variable (plus the index's earlier failures with
/// `backoffLimitPerIndex`).
pub fn pod_from_template(job: &Job, index: Option<i32>, index_failure_count: Option<i32>) -> Pod {
    let spec = spec_of(job);
    let template = spec.template;
    let template_meta = template.metadata.unwrap_or_default();
    let job_name = job.metadata.name.clone().unwrap_or_else(|| "job".into());
    let mut finalizers = template_meta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let mut labels = template_meta.labels;
    let mut annotations = template_meta.annotations;
    let mut pod_spec = template.spec;
    let mut generate_name = format!("{job_name}-");
    if let Some(ix) = index {
        annotations.get_or_insert_with(Default::default).insert(COMPLETION_INDEX.into(), ix.to_string());
        labels.get_or_insert_with(Default::default).insert(COMPLETION_INDEX.into(), ix.to_string());
        if let Some(count) = index_failure_count {
            annotations.get_or_insert_with(Default::default).insert(INDEX_FAILURE_COUNT.into(), count.to_string());
        }
        generate_name = generate_name_with_index(&job_name, ix);
        if let Some(pod_spec) = pod_spec.as_mut() {
            pod_spec.hostname = Some(format!("{job_name}-{ix}"));
            let inits = pod_spec.init_containers.iter_mut().flatten();
            for container in pod_spec.containers.iter_mut().chain(inits) {
                let env = container.env.get_or_insert_with(Vec::new);
                if !env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
                    env.push(EnvVar {
                        name: COMPLETION_INDEX_ENV.into(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                api_version: None,
                                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                            }),
                            ..Default::default()
                        }),
                    });
                }
            }
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels,
            annotations,
            finalizers: Some(finalizers),
            owner_references: Some(vec![owner_reference(job)]),
            ..ObjectMeta::default()
        },
        spec: pod_spec,
        status: None,
    }
}

fn key_of(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn job_key(job: &Job) -> String {
    key_of(job.metadata.namespace.as_deref().unwrap_or(""), job.metadata.name.as_deref().unwrap_or(""))
}

fn managed_elsewhere(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.managed_by.as_deref()).is_some_and(|m| m != MANAGED_BY)
}

fn selector_of(job: &Job) -> Option<LabelSelector> {
    LabelSelector::from_k8s(job.spec.as_ref().and_then(|s| s.selector.as_ref())).ok().filter(|s| !s.is_nothing())
}

fn remove_finalizer_patch(pod: &Pod) -> serde_json::Value {
    json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER], "uid": pod.metadata.uid}})
}

// ---------------------------------------------------------------------------------------------------------
// The controller.

/// What one sync knows about a Job's pods.
struct PodView {
    pods: Vec<Arc<Pod>>,
    active: Vec<Arc<Pod>>,
    terminating: i32,
    ready: i32,
    succeeded: i32,
    succeeded_indexes: BTreeSet<i32>,
    previous_indexes: BTreeSet<i32>,
    failed_indexes: Option<BTreeSet<i32>>,
    index_failures: HashMap<i32, IndexFailures>,
    backoff: BackoffRecord,
    expected_removals: HashSet<String>,
}

/// What managing the pods did.
struct Managed {
    active: i32,
    error: Option<SyncError>,
    retry_after: Option<Duration>,
}

/// The controller.
pub struct JobController {
    client: Client,
    pods: Arc<Informer<Pod>>,
    jobs: Arc<Informer<Job>>,
    queue: Arc<WorkQueue>,
    expectations: Arc<Expectations>,
    /// Per Job key: UIDs of pods whose finalizer removal the informer has not shown yet.
    removals: Mutex<HashMap<String, HashSet<String>>>,
    backoff: Mutex<HashMap<String, BackoffRecord>>,
    /// Per Job key: the resourceVersion of the last status this controller wrote, so that a sync never acts
    /// on an older copy from the informer (it would count and create again what the written status shows).
    written: Mutex<HashMap<String, u64>>,
    config: JobConfig,
    events: EventSink,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JobController {
    /// The controller, following changes through the shared informers.
    pub fn new(
        client: Client,
        pods: Arc<Informer<Pod>>,
        jobs: Arc<Informer<Job>>,
        config: JobConfig,
        events: EventSink,
    ) -> Arc<JobController> {
        let controller = Arc::new(JobController {
            client,
            pods: Arc::clone(&pods),
            jobs: Arc::clone(&jobs),
            queue: WorkQueue::new(),
            expectations: Arc::new(Expectations::new()),
            removals: Mutex::default(),
            backoff: Mutex::default(),
            written: Mutex::default(),
            config,
            events,
        });
        let weak = Arc::downgrade(&controller);
        jobs.on_change(move |change| {
            if let Some(controller) = weak.upgrade() {
                controller.job_changed(change);
            }
        });
        let weak = Arc::downgrade(&controller);
        pods.on_change(move |change| {
            if let Some(controller) = weak.upgrade() {
                controller.pod_changed(change);
            }
        });
        controller
    }

    fn job_changed(&self, change: &Change<'_, Job>) {
        match change {
            Change::Added(job) | Change::Updated { new: job, .. } => self.queue.add(job_key(job)),
            Change::Deleted(job) => {
                let key = job_key(job);
                self.expectations.forget(&key);
                lock(&self.removals).remove(&key);
                lock(&self.backoff).remove(&key);
                lock(&self.written).remove(&key);
                // Its pods would keep their finalizers forever otherwise.
                for pod in self.pods.by_index(BY_CONTROLLER, job.metadata.uid.as_deref().unwrap_or("")) {
                    if has_tracking_finalizer(&pod) {
                        self.queue.add(orphan_key(&pod));
                    }
                }
            }
        }
    }

    /// The Job controlling `pod`, if this informer knows it.
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let owner = controller_ref(&pod.metadata)?;
        if owner.kind != "Job" {
            return None;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let job = self.jobs.get(namespace, &owner.name)?;
        (job.metadata.uid.as_deref() == Some(owner.uid.as_str())).then(|| key_of(namespace, &owner.name))
    }

    /// Whether the pod holds the finalizer for a Job that is gone.
    fn is_orphan_with_finalizer(&self, pod: &Pod) -> bool {
        has_tracking_finalizer(pod)
            && self.jobs.has_synced()
            && controller_ref(&pod.metadata).is_some_and(|o| o.kind == "Job")
            && self.owner_key(pod).is_none()
    }

    fn matching_jobs(&self, pod: &Pod) -> Vec<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        self.jobs
            .list_namespace(namespace)
            .into_iter()
            .filter(|job| selector_of(job).is_some_and(|s| s.matches(labels(&pod.metadata))))
            .map(|job| job_key(&job))
            .collect()
    }

    fn removal_observed(&self, key: &str, uid: &str) {
        let mut removals = lock(&self.removals);
        if let Some(uids) = removals.get_mut(key) {
            uids.remove(uid);
            if uids.is_empty() {
                removals.remove(key);
            }
        }
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                if let Some(key) = self.owner_key(pod) {
                    if pod.metadata.deletion_timestamp.is_some() {
                        self.expectations.deletion_observed(&key);
                    } else {
                        self.expectations.creation_observed(&key);
                    }
                    self.queue.add(key);
                } else if controller_ref(&pod.metadata).is_none() {
                    for key in self.matching_jobs(pod) {
                        self.queue.add(key);
                    }
                }
                if self.is_orphan_with_finalizer(pod) {
                    self.queue.add(orphan_key(pod));
                }
            }
            Change::Updated { old, new } => {
                let new_owner = self.owner_key(new);
                if let Some(key) = &new_owner {
                    if new.metadata.deletion_timestamp.is_some() && old.metadata.deletion_timestamp.is_none() {
                        self.expectations.deletion_observed(key);
                    }
                    if has_tracking_finalizer(old) && !has_tracking_finalizer(new) {
                        self.removal_observed(key, uid_of(new));
                    }
                }
                let old_owner = self.owner_key(old);
                if old_owner != new_owner
                    && let Some(key) = old_owner
                {
                    self.queue.add(key);
                }
                match new_owner {
                    Some(key) => self.queue.add(key),
                    None if controller_ref(&new.metadata).is_none()
                        && (old.metadata.labels != new.metadata.labels || controller_ref(&old.metadata).is_some()) =>
                    {
                        for key in self.matching_jobs(new) {
                            self.queue.add(key);
                        }
                    }
                    None => {}
                }
                if self.is_orphan_with_finalizer(new) {
                    self.queue.add(orphan_key(new));
                }
            }
            Change::Deleted(pod) => {
                if let Some(key) = self.owner_key(pod) {
                    if pod.metadata.deletion_timestamp.is_none() {
                        self.expectations.deletion_observed(&key);
                    }
                    self.removal_observed(&key, uid_of(pod));
                    self.queue.add(key);
                }
            }
        }
    }

    /// Reconciles Jobs with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.pods.wait_synced(&shutdown).await;
        self.jobs.wait_synced(&shutdown).await;
        // Pods listed before the Jobs were could not tell whether their Job still exists.
        for pod in self.pods.list() {
            if self.is_orphan_with_finalizer(&pod) {
                self.queue.add(orphan_key(&pod));
            }
        }
        let queue = Arc::clone(&self.queue);
        let controller = self;
        run_workers("job", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        })
        .await;
    }

    /// One reconcile of the Job `namespace/name` (or of an orphan pod's finalizer).
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        if let Some(pod_key) = key.strip_prefix(ORPHAN_POD_PREFIX) {
            return self.sync_orphan_pod(pod_key).await;
        }
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(shared) = self.jobs.get(namespace, name) else {
            self.expectations.forget(key);
            lock(&self.removals).remove(key);
            lock(&self.backoff).remove(key);
            lock(&self.written).remove(key);
            return Ok(Requeue::No);
        };
        if managed_elsewhere(&shared) {
            return Ok(Requeue::No);
        }
        if let Some(&ours) = lock(&self.written).get(key)
            && resource_version(&shared).is_some_and(|seen| seen < ours)
        {
            // The informer has not caught up with our last status; its update event brings the Job back.
            return Ok(Requeue::No);
        }
        if is_finished(&shared) {
            lock(&self.backoff).remove(key);
            self.release_finished_pods(key, &shared).await?;
            return self.expire_after_ttl(key, &shared).await;
        }
        let spec = spec_of(&shared);
        if let Some(mode) = spec.completion_mode.as_deref()
            && mode != "NonIndexed"
            && mode != "Indexed"
        {
            let note = "Skipped Job sync because completion mode is unknown".to_string();
            self.events.publish(
                reference_to(shared.as_ref()),
                EventType::Warning,
                "UnknownCompletionMode",
                "Sync",
                note,
            );
            return Ok(Requeue::No);
        }
        let Some(selector) = selector_of(&shared) else {
            let note = "the Job's selector is invalid".to_string();
            self.events.publish(
                reference_to(shared.as_ref()),
                EventType::Warning,
                "SelectorParsingFailed",
                "Sync",
                note,
            );
            return Ok(Requeue::No);
        };
        let mut job = (*shared).clone();
        let now = Timestamp::now();
        // Expectations are read before the pods, so that a pod arriving in between defers to the next sync.
        let satisfied = self.expectations.satisfied(key);
        let pods = self.claim(&job, &selector).await?;
        let indexed = is_indexed(&spec);
        let completions = spec.completions.unwrap_or(0);
        let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
        let policy = spec.pod_failure_policy.as_ref();
        let suspended = spec.suspend == Some(true);
        let status = job.status.get_or_insert_with(JobStatus::default);
        let uncounted = status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default);
        let uncounted_succeeded: HashSet<String> = uncounted.succeeded.iter().flatten().cloned().collect();
        let uncounted_failed: HashSet<String> = uncounted.failed.iter().flatten().cloned().collect();
        let expected_removals = lock(&self.removals).get(key).cloned().unwrap_or_default();
        let countable = |p: &Pod| {
            has_tracking_finalizer(p)
                && !expected_removals.contains(uid_of(p))
                && (!indexed || valid_index(p, completions).is_some())
        };
        let new_succeeded: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| countable(p) && !uncounted_succeeded.contains(uid_of(p)) && phase(p) == Some("Succeeded"))
            .collect();
        let new_failed: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| countable(p) && !uncounted_failed.contains(uid_of(p)) && is_pod_failed(p, only_failed))
            .filter(|p| counts_as_failure(policy, p))
            .collect();
        let mut succeeded =
            status.succeeded.unwrap_or(0) + new_succeeded.len() as i32 + uncounted_succeeded.len() as i32;
        let failed = status.failed.unwrap_or(0) + new_failed.len() as i32 + uncounted_failed.len() as i32;
        if status.start_time.is_none() && !suspended {
            status.start_time = Some(Time(now));
        }
        let previous_backoff = lock(&self.backoff).get(key).copied().unwrap_or_default();
        let backoff = next_backoff_record(
            previous_backoff,
            &new_succeeded.iter().map(|p| finish_time(p, now)).collect::<Vec<_>>(),
            &new_failed.iter().map(|p| finish_time(p, now)).collect::<Vec<_>>(),
        );

        let mut retry_after: Option<Duration> = None;
        let mut finished: Option<JobCondition> = condition_true(Some(&*status), SUCCESS_CRITERIA_MET);
        if finished.is_none() {
            if let Some(target) = condition_true(Some(&*status), FAILURE_TARGET) {
                let (reason, message) = (target.reason.unwrap_or_default(), target.message.unwrap_or_default());
                finished = Some(new_condition(FAILED, "True", &reason, &message, now));
            } else if let Some(policy) = policy
                && let Some(message) = pods
                    .iter()
                    .filter(|p| is_pod_failed(p, only_failed))
                    .filter_map(|p| match_pod_failure_policy(policy, p))
                    .find(|m| m.action == PolicyAction::FailJob)
                    .map(|m| m.message)
            {
                finished = Some(new_condition(FAILURE_TARGET, "True", "PodFailurePolicy", &message, now));
            }
        }
        if finished.is_none() {
            let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
            let deadline = deadline_remaining(&spec, status, now);
            if failed > backoff_limit || past_backoff_limit_on_failure(&spec, &pods) {
                let message = "Job has reached the specified backoff limit";
                finished = Some(new_condition(FAILURE_TARGET, "True", "BackoffLimitExceeded", message, now));
            } else if deadline == Some(Duration::ZERO) {
                let message = "Job was active longer than specified deadline";
                finished = Some(new_condition(FAILURE_TARGET, "True", "DeadlineExceeded", message, now));
            } else if let Some(remaining) = deadline {
                retry_after = Some(remaining);
            }
        }
        let previous_indexes = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""), completions);
        let mut succeeded_indexes = previous_indexes.clone();
        let mut failed_indexes = None;
        let mut per_index = HashMap::new();
        if indexed {
            succeeded_indexes.extend(
                pods.iter()
                    .filter(|p| phase(p) == Some("Succeeded") && has_tracking_finalizer(p))
                    .filter_map(|p| valid_index(p, completions)),
            );
            succeeded = succeeded_indexes.len() as i32;
            if spec.backoff_limit_per_index.is_some() {
                let (failed_set, counts) = index_failures(&spec, status, &pods, now);
                if finished.is_none() {
                    let total = failed_set.len() as i64;
                    if spec.max_failed_indexes.is_some_and(|max| total > i64::from(max)) {
                        let message = "Job has exceeded the specified maximal number of failed indexes";
                        finished =
                            Some(new_condition(FAILURE_TARGET, "True", "MaxFailedIndexesExceeded", message, now));
                    } else if total > 0 && total + succeeded_indexes.len() as i64 >= i64::from(completions) {
                        let message = "Job has failed indexes";
                        finished = Some(new_condition(FAILURE_TARGET, "True", "FailedIndexes", message, now));
                    }
                }
                failed_indexes = Some(failed_set);
                per_index = counts;
            }
            if finished.is_none()
                && let Some(policy) = &spec.success_policy
                && let Some(message) = match_success_policy(policy, completions, &succeeded_indexes)
            {
                finished = Some(new_condition(SUCCESS_CRITERIA_MET, "True", "SuccessPolicy", &message, now));
            }
        }

        let active_pods: Vec<Arc<Pod>> = pods.iter().filter(|p| is_active(p)).cloned().collect();
        let mut view = PodView {
            terminating: pods.iter().filter(|p| is_terminating(p)).count() as i32,
            ready: active_pods.iter().filter(|p| is_ready(p)).count() as i32,
            active: active_pods,
            pods,
            succeeded,
            succeeded_indexes,
            previous_indexes,
            failed_indexes,
            index_failures: per_index,
            backoff,
            expected_removals,
        };
        let mut active = view.active.len() as i32;
        let mut manage_error = None;
        let mut suspend_changed = false;
        if finished.is_some() {
            let (deleted, deleted_ready, error) = self.delete_active_pods(key, &job, &view.active).await;
            if deleted != active || !satisfied {
                // Pods may still be on their way into the informer, or finalizers left to remove.
                finished = None;
            }
            active -= deleted;
            view.terminating += deleted;
            view.ready -= deleted_ready;
            manage_error = error;
        } else {
            let mut managed = false;
            if satisfied && job.metadata.deletion_timestamp.is_none() {
                let outcome = self.manage(key, &job, &spec, &mut view, now).await;
                active = outcome.active;
                manage_error = outcome.error;
                if let Some(delay) = outcome.retry_after {
                    retry_after = Some(retry_after.map_or(delay, |r| r.min(delay)));
                }
                managed = true;
            }
            let complete = match spec.completions {
                None => view.succeeded > 0 && active == 0,
                Some(c) => view.succeeded >= c && active == 0,
            };
            let reference = reference_to(&job);
            let status = job.status.get_or_insert_with(JobStatus::default);
            if complete {
                let message = "Reached expected number of succeeded pods";
                finished = Some(new_condition(SUCCESS_CRITERIA_MET, "True", "CompletionsReached", message, now));
            } else if managed {
                let conditions = status.conditions.get_or_insert_with(Vec::new);
                if suspended {
                    if ensure_condition(conditions, SUSPENDED, "True", "JobSuspended", "Job suspended", now) {
                        suspend_changed = true;
                        self.events.publish(
                            reference,
                            EventType::Normal,
                            "Suspended",
                            "Suspend",
                            "Job suspended".into(),
                        );
                    }
                } else if ensure_condition(conditions, SUSPENDED, "False", "JobResumed", "Job resumed", now) {
                    suspend_changed = true;
                    // The deadline counts continuous activity: it starts again on resuming.
                    status.start_time = Some(Time(now));
                    self.events.publish(reference, EventType::Normal, "Resumed", "Resume", "Job resumed".into());
                }
                if status.conditions.as_ref().is_some_and(Vec::is_empty) {
                    status.conditions = None;
                }
            }
        }
        let status = job.status.get_or_insert_with(JobStatus::default);
        let needs_flush = suspend_changed
            || status.active.unwrap_or(0) != active
            || status.ready != Some(view.ready)
            || status.terminating != Some(view.terminating);
        status.active = nonzero(active);
        status.ready = Some(view.ready);
        status.terminating = Some(view.terminating);
        let tracked = self.track(key, &mut job, &spec, &view, finished, needs_flush, now).await;
        match tracked {
            Err(SyncError::Api { source: kube::Error::Api(e), .. }) if e.code == 404 => return Ok(Requeue::No),
            other => other?,
        }
        if let Some(error) = manage_error {
            return Err(error);
        }
        Ok(retry_after.map_or(Requeue::No, |d| Requeue::After(d.max(Duration::from_millis(1)))))
    }

    /// Counts finished pods (through `uncountedTerminatedPods`), removes their finalizers and marks the Job
    /// finished when it is; writes the status as often as the protocol needs.
    #[allow(clippy::too_many_arguments)]
    async fn track(
        &self,
        key: &str,
        job: &mut Job,
        spec: &JobSpec,
        view: &PodView,
        mut finished: Option<JobCondition>,
        mut needs_flush: bool,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let indexed = is_indexed(spec);
        let completions = spec.completions.unwrap_or(0);
        let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
        let policy = spec.pod_failure_policy.as_ref();
        let deleting = job.metadata.deletion_timestamp.is_some();
        let mut with_finalizer: HashSet<String> = view
            .pods
            .iter()
            .filter(|p| has_tracking_finalizer(p) && !view.expected_removals.contains(uid_of(p)))
            .map(|p| uid_of(p).to_string())
            .collect();
        let status = job.status.get_or_insert_with(JobStatus::default);
        needs_flush |= clean_uncounted(status, &with_finalizer);
        let uncounted = status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default);
        let was_succeeded: HashSet<String> = uncounted.succeeded.iter().flatten().cloned().collect();
        let was_failed: HashSet<String> = uncounted.failed.iter().flatten().cloned().collect();
        let mut add_succeeded: Vec<String> = Vec::new();
        let mut add_failed: Vec<String> = Vec::new();
        let mut new_indexes = Vec::new();
        let mut to_release: Vec<Arc<Pod>> = Vec::new();
        let mut reached_max = false;
        let mut pods: Vec<&Arc<Pod>> = view.pods.iter().collect();
        if indexed {
            pods.sort_by_key(|p| completion_index(p));
        }
        let failing = finished.as_ref().is_some_and(|c| c.type_ != SUCCESS_CRITERIA_MET && c.type_ != COMPLETE);
        for pod in pods {
            let uid = uid_of(pod);
            if !has_tracking_finalizer(pod) || view.expected_removals.contains(uid) {
                continue;
            }
            let failed = is_pod_failed(pod, only_failed);
            let succeeded = phase(pod) == Some("Succeeded");
            if !(deleting || finished.is_some() || succeeded || failed) {
                continue;
            }
            to_release.push(Arc::clone(pod));
            if succeeded && !was_failed.contains(uid) {
                if indexed {
                    if let Some(ix) = valid_index(pod, completions)
                        && !view.previous_indexes.contains(&ix)
                    {
                        new_indexes.push(ix);
                        needs_flush = true;
                    }
                } else if !was_succeeded.contains(uid) {
                    add_succeeded.push(uid.to_string());
                    needs_flush = true;
                }
            } else if (failed || failing)
                && !was_failed.contains(uid)
                && (!indexed || valid_index(pod, completions).is_some())
                && counts_as_failure(policy, pod)
            {
                add_failed.push(uid.to_string());
                needs_flush = true;
            }
            if new_indexes.len() + was_succeeded.len() + add_succeeded.len() + was_failed.len() + add_failed.len()
                >= MAX_UNCOUNTED_PODS
            {
                reached_max = true;
                break;
            }
        }
        if !add_succeeded.is_empty() {
            uncounted.succeeded.get_or_insert_with(Vec::new).extend(add_succeeded);
        }
        if !add_failed.is_empty() {
            uncounted.failed.get_or_insert_with(Vec::new).extend(add_failed);
        }
        if indexed {
            let mut indexes = view.succeeded_indexes.clone();
            indexes.extend(new_indexes);
            let text = format_indexes(&indexes);
            if status.completed_indexes.as_deref().unwrap_or("") != text {
                needs_flush = true;
            }
            status.succeeded = nonzero(indexes.len() as i32);
            status.completed_indexes = (!text.is_empty()).then_some(text);
            let failed_text = view.failed_indexes.as_ref().map(format_indexes);
            if status.failed_indexes != failed_text {
                status.failed_indexes = failed_text;
                needs_flush = true;
            }
        }
        if let Some(target) = finished.take() {
            let (reason, message) =
                (target.reason.clone().unwrap_or_default(), target.message.clone().unwrap_or_default());
            finished = Some(match target.type_.as_str() {
                FAILURE_TARGET => {
                    status.conditions.get_or_insert_with(Vec::new).push(target);
                    needs_flush = true;
                    new_condition(FAILED, "True", &reason, &message, now)
                }
                SUCCESS_CRITERIA_MET => {
                    if condition_true(Some(&*status), SUCCESS_CRITERIA_MET).is_none() {
                        status.conditions.get_or_insert_with(Vec::new).push(target);
                        needs_flush = true;
                    }
                    new_condition(COMPLETE, "True", &reason, &message, now)
                }
                _ => target,
            });
        }
        if needs_flush {
            self.write_status(key, job).await?;
            lock(&self.backoff).insert(key.to_string(), view.backoff);
            needs_flush = false;
        }
        let mut release_error = None;
        if !to_release.is_empty() {
            for (uid, result) in self.remove_finalizers(key, &to_release).await {
                match result {
                    Ok(()) => {
                        with_finalizer.remove(&uid);
                    }
                    Err(source) => release_error = Some(source),
                }
            }
        }
        let status = job.status.get_or_insert_with(JobStatus::default);
        needs_flush |= clean_uncounted(status, &with_finalizer);
        if let Some(source) = release_error {
            if needs_flush {
                self.write_status(key, job).await?;
            }
            return Err(SyncError::Api { what: "removing pod finalizers", key: key.to_string(), source });
        }
        let done = !reached_max && finished.as_ref().is_some_and(|c| enact_finished(status, c, view.terminating, now));
        if done || needs_flush {
            self.write_status(key, job).await?;
        }
        if done && let Some(condition) = &finished {
            self.record_finished(job, condition);
        }
        Ok(())
    }

    fn record_finished(&self, job: &Job, condition: &JobCondition) {
        let reference = reference_to(job);
        if condition.type_ == COMPLETE {
            let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
            if job.spec.as_ref().and_then(|s| s.completions).is_some_and(|c| succeeded > c) {
                let note = "Too many succeeded pods running after completion count reached".to_string();
                self.events.publish(reference.clone(), EventType::Warning, "TooManySucceededPods", "Complete", note);
            }
            self.events.publish(reference, EventType::Normal, "Completed", "Complete", "Job completed".into());
        } else {
            let reason = condition.reason.as_deref().unwrap_or(FAILED);
            let note = condition.message.clone().unwrap_or_default();
            self.events.publish(reference, EventType::Warning, reason, "Fail", note);
        }
    }

    /// Writes `job`'s status (a compare-and-swap on its resourceVersion) and takes the server's copy.
    async fn write_status(&self, key: &str, job: &mut Job) -> Result<(), SyncError> {
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        match api.replace_status(&name, &PostParams::default(), &*job).await {
            Ok(written) => {
                if let Some(version) = resource_version(&written) {
                    lock(&self.written).insert(key.to_string(), version);
                }
                *job = written;
                Ok(())
            }
            Err(source) => Err(SyncError::Api { what: "updating status", key: key.to_string(), source }),
        }
    }

    /// Removes the tracking finalizer from `pods`, remembering each removal until the informer shows it; a
    /// pod already gone counts as done.
    async fn remove_finalizers(&self, key: &str, pods: &[Arc<Pod>]) -> Vec<(String, Result<(), kube::Error>)> {
        {
            let mut removals = lock(&self.removals);
            let uids = removals.entry(key.to_string()).or_default();
            uids.extend(pods.iter().map(|p| uid_of(p).to_string()));
        }
        let results = join_all(pods.iter().map(|pod| async move {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let name = pod.metadata.name.as_deref().unwrap_or("");
            let result = api.patch(name, &PatchParams::default(), &Patch::Strategic(remove_finalizer_patch(pod))).await;
            (uid_of(pod).to_string(), result)
        }))
        .await;
        results
            .into_iter()
            .map(|(uid, result)| match result {
                Ok(_) => (uid, Ok(())),
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    self.removal_observed(key, &uid);
                    (uid, Ok(()))
                }
                Err(err) => {
                    self.removal_observed(key, &uid);
                    (uid, Err(err))
                }
            })
            .collect()
    }

    /// Creates or deletes pods toward the wanted number of active ones.
    async fn manage(&self, key: &str, job: &Job, spec: &JobSpec, view: &mut PodView, now: Timestamp) -> Managed {
        let active = view.active.len() as i32;
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        if spec.suspend == Some(true) {
            let victims = active_pods_for_removal(spec, &view.active, view.active.len());
            self.expectations.expect(key, 0, victims.len() as i64);
            let (removed, removed_ready, error) = self.delete_job_pods(key, job, &victims).await;
            view.terminating += removed;
            view.ready -= removed_ready;
            return Managed { active: active - removed, error, retry_after: None };
        }
        let want = match spec.completions {
            None if view.succeeded > 0 => active,
            None => parallelism,
            Some(c) => (c - view.succeeded).min(parallelism).max(0),
        };
        let mut victims = active_pods_for_removal(spec, &view.active, usize::try_from(active - want).unwrap_or(0));
        if let Some(failed) = &view.failed_indexes {
            // Pods of an index that has failed have nothing left to do.
            for pod in &view.active {
                if completion_index(pod).is_some_and(|ix| failed.contains(&ix))
                    && !victims.iter().any(|v| uid_of(v) == uid_of(pod))
                {
                    victims.push(Arc::clone(pod));
                }
            }
        }
        victims.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        if !victims.is_empty() {
            self.expectations.expect(key, 0, victims.len() as i64);
            let (removed, removed_ready, error) = self.delete_job_pods(key, job, &victims).await;
            view.terminating += removed;
            view.ready -= removed_ready;
            return Managed { active: active - removed, error, retry_after: None };
        }
        let held = if spec.pod_replacement_policy.as_deref() == Some("Failed") { view.terminating } else { 0 };
        let diff = want - held - active;
        if diff <= 0 {
            return Managed { active, error: None, retry_after: None };
        }
        let per_index = spec.backoff_limit_per_index.is_some();
        if !per_index {
            let remaining = backoff_remaining(&view.backoff, now, self.config.backoff_base, self.config.backoff_max);
            if !remaining.is_zero() {
                return Managed { active, error: None, retry_after: Some(remaining) };
            }
        }
        let mut count = usize::try_from(diff).unwrap_or(0).min(MAX_POD_CREATE_DELETE_PER_SYNC);
        let mut indexes: Vec<Option<i32>> = vec![None; count];
        if is_indexed(spec) {
            let pending = self.pending_indexes(spec, view, count);
            if per_index {
                let mut ready_now = Vec::new();
                let mut soonest: Option<Duration> = None;
                for ix in pending {
                    let failures = view.index_failures.get(&ix).copied().unwrap_or_default();
                    let record = BackoffRecord {
                        failures_after_last_success: u32::try_from(failures.count).unwrap_or(0),
                        last_failure: failures.last,
                    };
                    let wait = backoff_remaining(&record, now, self.config.backoff_base, self.config.backoff_max);
                    if wait.is_zero() {
                        ready_now.push(ix);
                    } else {
                        soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                    }
                }
                if ready_now.is_empty() {
                    return Managed { active, error: None, retry_after: soonest };
                }
                indexes = ready_now.into_iter().map(Some).collect();
            } else {
                indexes = pending.into_iter().map(Some).collect();
            }
            count = indexes.len();
        }
        if count == 0 {
            return Managed { active, error: None, retry_after: None };
        }
        self.expectations.expect(key, count as i64, 0);
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut created_active = active;
        let mut attempted = 0;
        let mut batch = 1;
        while attempted < count {
            let size = batch.min(count - attempted);
            let chunk = &indexes[attempted..attempted + size];
            let templates: Vec<Pod> = chunk
                .iter()
                .map(|ix| {
                    let failures =
                        ix.filter(|_| per_index).map(|ix| view.index_failures.get(&ix).map_or(0, |f| f.count));
                    pod_from_template(job, *ix, failures)
                })
                .collect();
            let params = PostParams::default();
            let results = join_all(templates.iter().map(|t| pods.create(&params, t))).await;
            attempted += size;
            let mut failure = None;
            for result in results {
                match result {
                    Ok(pod) => {
                        created_active += 1;
                        let note = format!("Created pod: {}", pod.metadata.name.as_deref().unwrap_or(""));
                        self.events.publish(reference_to(job), EventType::Normal, "SuccessfulCreate", "Create", note);
                    }
                    Err(err) => {
                        // The informer will never show this one.
                        self.expectations.creation_observed(key);
                        failure = Some(err);
                    }
                }
            }
            if let Some(source) = failure {
                for _ in attempted..count {
                    self.expectations.creation_observed(key);
                }
                let note = format!("Error creating: {source}");
                self.events.publish(reference_to(job), EventType::Warning, "FailedCreate", "Create", note);
                return Managed {
                    active: created_active,
                    error: Some(SyncError::Create { key: key.to_string(), source }),
                    retry_after: None,
                };
            }
            batch *= 2;
        }
        Managed { active: created_active, error: None, retry_after: None }
    }

    /// The lowest indexes that have neither succeeded, failed, nor a pod working on them.
    fn pending_indexes(&self, spec: &JobSpec, view: &PodView, count: usize) -> Vec<i32> {
        let completions = spec.completions.unwrap_or(0);
        let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
        let mut taken: HashSet<i32> = view.active.iter().filter_map(|p| valid_index(p, completions)).collect();
        if only_failed {
            taken.extend(view.pods.iter().filter(|p| is_terminating(p)).filter_map(|p| valid_index(p, completions)));
        }
        let failed = view.failed_indexes.clone().unwrap_or_default();
        (0..completions)
            .filter(|ix| !view.succeeded_indexes.contains(ix) && !failed.contains(ix) && !taken.contains(ix))
            .take(count)
            .collect()
    }

    /// Deletes pods the Job no longer wants, their finalizers first (so that they are not counted as failed).
    /// Returns how many went, how many of them were ready, and the first error.
    async fn delete_job_pods(&self, key: &str, job: &Job, victims: &[Arc<Pod>]) -> (i32, i32, Option<SyncError>) {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let results = join_all(victims.iter().map(|pod| {
            let api = api.clone();
            async move {
                let name = pod.metadata.name.as_deref().unwrap_or("");
                if has_tracking_finalizer(pod) {
                    let patch = remove_finalizer_patch(pod);
                    if let Err(err) = api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                        return (pod, Err(err));
                    }
                }
                (pod, api.delete(name, &DeleteParams::default()).await.map(|_| ()))
            }
        }))
        .await;
        let (mut removed, mut removed_ready, mut failure) = (0, 0, None);
        for (pod, result) in results {
            let name = pod.metadata.name.as_deref().unwrap_or("");
            match result {
                Ok(()) => {
                    removed += 1;
                    if is_ready(pod) {
                        removed_ready += 1;
                    }
                    let note = format!("Deleted pod: {name}");
                    self.events.publish(reference_to(job), EventType::Normal, "SuccessfulDelete", "Delete", note);
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    self.expectations.deletion_observed(key);
                    removed += 1;
                }
                Err(source) => {
                    self.expectations.deletion_observed(key);
                    let note = format!("Error deleting: {source}");
                    self.events.publish(reference_to(job), EventType::Warning, "FailedDelete", "Delete", note);
                    failure = Some(SyncError::Delete { key: key.to_string(), source });
                }
            }
        }
        (removed, removed_ready, failure)
    }

    /// Deletes the active pods of a Job that is finishing, keeping their finalizers: they are counted (as
    /// failed) before they go.
    async fn delete_active_pods(&self, key: &str, job: &Job, active: &[Arc<Pod>]) -> (i32, i32, Option<SyncError>) {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let results =
            join_all(
                active.iter().map(|pod| {
                    let api = api.clone();
                    async move {
                        (pod, api.delete(pod.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await)
                    }
                }),
            )
            .await;
        let (mut deleted, mut deleted_ready, mut failure) = (0, 0, None);
        for (pod, result) in results {
            let gone = match &result {
                Ok(_) => true,
                Err(kube::Error::Api(e)) => e.code == 404,
                Err(_) => false,
            };
            if gone {
                deleted += 1;
                if is_ready(pod) {
                    deleted_ready += 1;
                }
            } else if let Err(source) = result {
                failure = Some(SyncError::Delete { key: key.to_string(), source });
            }
        }
        (deleted, deleted_ready, failure)
    }

    /// The pods the Job owns (finished ones included) after adopting matching orphans (which get the
    /// tracking finalizer) and releasing owned pods that no longer match.
    async fn claim(&self, job: &Job, selector: &LabelSelector) -> Result<Vec<Arc<Pod>>, SyncError> {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let key = job_key(job);
        let uid = job.metadata.uid.as_deref().unwrap_or("");
        let deleting = job.metadata.deletion_timestamp.is_some();
        let (mut owned, mut orphans, mut strays) = (Vec::new(), Vec::new(), Vec::new());
        let mut candidates = self.pods.by_index(BY_CONTROLLER, uid);
        candidates.extend(self.pods.by_index(BY_CONTROLLER, &orphans_of(namespace)));
        for pod in candidates {
            let matches = selector.matches(labels(&pod.metadata));
            match controller_ref(&pod.metadata) {
                Some(owner) if owner.uid == uid => {
                    if matches || deleting {
                        owned.push(pod);
                    } else {
                        strays.push(pod);
                    }
                }
                Some(_) => {}
                None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => orphans.push(pod),
                None => {}
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        for pod in strays {
            let mut patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}],
                                                "uid": pod.metadata.uid}});
            if has_tracking_finalizer(&pod) {
                patch["metadata"]["$deleteFromPrimitiveList/finalizers"] = json!([TRACKING_FINALIZER]);
            }
            let pod_name = pod.metadata.name.as_deref().unwrap_or("");
            match pods.patch(pod_name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {}
                Err(source) => return Err(SyncError::Api { what: "releasing a pod", key, source }),
            }
        }
        if orphans.is_empty() {
            return Ok(owned);
        }
        // Adopt only on a fresh view of the Job: the informer may not show its deletion yet.
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let fresh = match jobs.get_opt(job.metadata.name.as_deref().unwrap_or("")).await {
            Ok(fresh) => fresh,
            Err(source) => return Err(SyncError::Api { what: "reading the Job", key, source }),
        };
        if !fresh.is_some_and(|f| f.metadata.uid.as_deref() == Some(uid) && f.metadata.deletion_timestamp.is_none()) {
            return Ok(owned);
        }
        let reference = owner_reference(job);
        for pod in orphans {
            let mut patch = json!({"metadata": {"ownerReferences": [reference], "uid": pod.metadata.uid}});
            if !has_tracking_finalizer(&pod) {
                patch["metadata"]["finalizers"] = json!([TRACKING_FINALIZER]);
            }
            let pod_name = pod.metadata.name.as_deref().unwrap_or("");
            match pods.patch(pod_name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                Ok(adopted) => owned.push(Arc::new(adopted)),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {}
                Err(source) => return Err(SyncError::Api { what: "adopting a pod", key, source }),
            }
        }
        Ok(owned)
    }

    /// Removes finalizers left on the pods of a finished Job.
    async fn release_finished_pods(&self, key: &str, job: &Job) -> Result<(), SyncError> {
        let uid = job.metadata.uid.as_deref().unwrap_or("");
        let expected = lock(&self.removals).get(key).cloned().unwrap_or_default();
        let leftovers: Vec<Arc<Pod>> = self
            .pods
            .by_index(BY_CONTROLLER, uid)
            .into_iter()
            .filter(|p| has_tracking_finalizer(p) && !expected.contains(uid_of(p)))
            .collect();
        for (_, result) in self.remove_finalizers(key, &leftovers).await {
            if let Err(source) = result {
                return Err(SyncError::Api { what: "removing pod finalizers", key: key.to_string(), source });
            }
        }
        Ok(())
    }

    /// Removes the tracking finalizer of a pod whose Job is gone or finished.
    async fn sync_orphan_pod(&self, pod_key: &str) -> Result<Requeue, SyncError> {
        let (namespace, name) = pod_key.split_once('/').unwrap_or(("", pod_key));
        let Some(pod) = self.pods.get(namespace, name) else { return Ok(Requeue::No) };
        if !has_tracking_finalizer(&pod) {
            return Ok(Requeue::No);
        }
        if let Some(key) = self.owner_key(&pod)
            && let Some(job) = self.jobs.get(namespace, key.split_once('/').map_or("", |(_, n)| n))
            && !is_finished(&job)
        {
            return Ok(Requeue::No);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match api.patch(name, &PatchParams::default(), &Patch::Strategic(remove_finalizer_patch(&pod))).await {
            Ok(_) => Ok(Requeue::No),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(Requeue::No),
            Err(source) => {
                Err(SyncError::Api { what: "removing an orphan pod's finalizer", key: pod_key.to_string(), source })
            }
        }
    }

    /// Deletes a finished Job once `ttlSecondsAfterFinished` has passed (its dependents first, in the
    /// foreground), as the TTL-after-finished controller does.
    async fn expire_after_ttl(&self, key: &str, job: &Job) -> Result<Requeue, SyncError> {
        let now = Timestamp::now();
        match ttl_remaining(job, now) {
            None => return Ok(Requeue::No),
            Some(remaining) if !remaining.is_zero() => return Ok(Requeue::After(remaining)),
            Some(_) => {}
        }
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let name = job.metadata.name.as_deref().unwrap_or("");
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        // The informer may be stale: the TTL could have been changed or the Job replaced.
        let fresh = match api.get_opt(name).await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => return Ok(Requeue::No),
            Err(source) => return Err(SyncError::Api { what: "reading the Job", key: key.to_string(), source }),
        };
        if fresh.metadata.uid != job.metadata.uid {
            return Ok(Requeue::No);
        }
        match ttl_remaining(&fresh, now) {
            None => return Ok(Requeue::No),
            Some(remaining) if !remaining.is_zero() => return Ok(Requeue::After(remaining)),
            Some(_) => {}
        }
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: fresh.metadata.resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        tracing::debug!(job = key, "deleting a finished Job after its TTL");
        match api.delete(name, &params).await {
            Ok(_) => Ok(Requeue::No),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(Requeue::No),
            Err(source) => Err(SyncError::Api { what: "deleting the expired Job", key: key.to_string(), source }),
        }
    }
}

/// The resourceVersion as a number, when it is one (Gantry's are store revisions; anything else is opaque).
fn resource_version(job: &Job) -> Option<u64> {
    job.metadata.resource_version.as_deref()?.parse().ok()
}

fn orphan_key(pod: &Pod) -> String {
    format!(
        "{ORPHAN_POD_PREFIX}{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// How long a finished Job with `ttlSecondsAfterFinished` has left at `now` (zero once expired); `None` when
/// it has no TTL, is not finished, or is already being deleted.
pub fn ttl_remaining(job: &Job, now: Timestamp) -> Option<Duration> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    if job.metadata.deletion_timestamp.is_some() || !is_finished(job) {
        return None;
    }
    let status = job.status.as_ref();
    let finished_at = status.and_then(|s| s.completion_time.as_ref()).map(|t| t.0).or_else(|| {
        [COMPLETE, FAILED]
            .iter()
            .filter_map(|t| condition_true(status, t))
            .find_map(|c| c.last_transition_time.map(|t| t.0))
    })?;
    let expires = finished_at.as_millisecond() + i64::from(ttl) * 1000;
    Some(Duration::from_millis(u64::try_from(expires - now.as_millisecond()).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn job(spec: serde_json::Value) -> Job {
        let mut value = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "work", "namespace": "d", "uid": "job-uid"},
            "spec": {"template": {"metadata": {"labels": {"job-name": "work"}},
                                  "spec": {"restartPolicy": "Never",
                                           "initContainers": [{"name": "init", "image": "busybox"}],
                                           "containers": [{"name": "main", "image": "busybox"}]}}}});
        if let serde_json::Value::Object(fields) = spec {
            for (k, v) in fields {
                value["spec"][k] = v;
            }
        }
        serde_json::from_value(value).unwrap()
    }

    fn failed_pod(exit_code: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"},
            "status": {"phase": "Failed", "conditions": conditions,
                "containerStatuses": [
                    {"name": "side", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 0}}},
                    {"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": exit_code, "finishedAt": "2026-01-01T00:00:05Z"}}}]}}))
        .unwrap()
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn indexes_read_and_write_the_compressed_interval_format() {
        let set = parse_indexes("1,3-5, 9", 8);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![1, 3, 4, 5], "9 is beyond the completions");
        assert_eq!(format_indexes(&set), "1,3-5");
        assert_eq!(format_indexes(&parse_indexes("0,1,2", 3)), "0-2");
        assert_eq!(format_indexes(&parse_indexes("x,2-1,-3,4", 10)), "4", "malformed parts are skipped");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(format_indexes(&parse_indexes("6-7,0", 100)), "0,6-7");
    }

    #[test]
    fn exit_code_rules_match_non_zero_codes_of_the_named_container() {
        let pod = failed_pod(42, json!([]));
        let fail = policy(json!([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]));
        let matched = match_pod_failure_policy(&fail, &pod).unwrap();
        assert_eq!((matched.rule, matched.action), (0, PolicyAction::FailJob));
        assert_eq!(
            matched.message,
            "Container main for pod d/p failed with exit code 42 matching FailJob rule at index 0"
        );
        let other = policy(json!([{"action": "FailJob", "onExitCodes": {"containerName": "side", "operator": "In",
                                                                          "values": [42]}}]));
        assert_eq!(match_pod_failure_policy(&other, &pod), None, "side exited 0");
        let not_in = policy(json!([{"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}}]));
        assert_eq!(match_pod_failure_policy(&not_in, &pod).unwrap().action, PolicyAction::Count);
        let zero_only = policy(json!([{"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [42]}}]));
        assert_eq!(match_pod_failure_policy(&zero_only, &pod), None, "exit code 0 never matches");
    }

    #[test]
    fn condition_rules_match_in_order_and_unknown_actions_are_skipped() {
        let pod = failed_pod(1, json!([{"type": "DisruptionTarget", "status": "True"}]));
        let rules = policy(json!([
            {"action": "Explode", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}]));
        let matched = match_pod_failure_policy(&rules, &pod).unwrap();
        assert_eq!((matched.rule, matched.action), (1, PolicyAction::Ignore));
        assert_eq!(matched.message, "Pod d/p has condition DisruptionTarget matching Ignore rule at index 1");
        assert!(!counts_as_failure(Some(&rules), &pod), "an ignored failure does not count");
        assert!(counts_as_failure(None, &pod));
        let false_status = policy(json!([{"action": "Ignore",
                                          "onPodConditions": [{"type": "DisruptionTarget", "status": "False"}]}]));
        assert_eq!(match_pod_failure_policy(&false_status, &pod), None);
    }

    #[test]
    fn pods_being_deleted_count_as_failed_unless_only_failed_pods_are_replaced() {
        let deleting: Pod = serde_json::from_value(json!({"metadata": {"name": "p",
            "deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}}))
        .unwrap();
        assert!(is_pod_failed(&deleting, false));
        assert!(!is_pod_failed(&deleting, true));
        assert!(is_terminating(&deleting));
        assert_eq!(finish_time(&deleting, ts("2026-02-01T00:00:00Z")), ts("2026-01-01T00:00:00Z"));
        assert_eq!(finish_time(&failed_pod(1, json!([])), ts("2026-02-01T00:00:00Z")), ts("2026-01-01T00:00:05Z"));
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_the_cap_and_a_success_resets_it() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(360);
        let t0 = ts("2026-01-01T00:00:00Z");
        let one = next_backoff_record(BackoffRecord::default(), &[], &[t0]);
        assert_eq!(one.failures_after_last_success, 1);
        assert_eq!(backoff_remaining(&one, t0, base, max), Duration::from_secs(10));
        assert_eq!(backoff_remaining(&one, ts("2026-01-01T00:00:04Z"), base, max), Duration::from_secs(6));
        let three = next_backoff_record(one, &[], &[t0, t0]);
        assert_eq!(backoff_remaining(&three, t0, base, max), Duration::from_secs(40));
        let many = BackoffRecord { failures_after_last_success: 12, last_failure: Some(t0) };
        assert_eq!(backoff_remaining(&many, t0, base, max), max);
        let later = ts("2026-01-01T00:01:00Z");
        assert_eq!(next_backoff_record(three, &[later], &[]), BackoffRecord::default());
        let after = next_backoff_record(three, &[later], &[t0, ts("2026-01-01T00:02:00Z")]);
        assert_eq!(after.failures_after_last_success, 1, "only the failure after the success counts");
        assert_eq!(backoff_remaining(&BackoffRecord::default(), t0, base, max), Duration::ZERO);
    }

    #[test]
    fn conditions_change_only_when_their_status_reason_or_message_does() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-01T00:01:00Z");
        let mut conditions = Vec::new();
        assert!(!ensure_condition(&mut conditions, SUSPENDED, "False", "JobResumed", "Job resumed", t0));
        assert!(conditions.is_empty(), "a missing condition is not added as False");
        assert!(ensure_condition(&mut conditions, SUSPENDED, "True", "JobSuspended", "Job suspended", t0));
        assert!(!ensure_condition(&mut conditions, SUSPENDED, "True", "JobSuspended", "Job suspended", t1));
        assert_eq!(conditions[0].last_transition_time, Some(Time(t0)));
        assert!(ensure_condition(&mut conditions, SUSPENDED, "False", "JobResumed", "Job resumed", t1));
        assert_eq!((conditions.len(), conditions[0].status.as_str()), (1, "False"));
        assert_eq!(conditions[0].last_transition_time, Some(Time(t1)));
    }

    #[test]
    fn a_job_finishes_only_once_nothing_is_uncounted_or_terminating() {
        let now = ts("2026-01-01T00:00:00Z");
        let complete =
            new_condition(COMPLETE, "True", "CompletionsReached", "Reached expected number of succeeded pods", now);
        let mut status = JobStatus {
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: Some(vec!["a".into()]),
                failed: None,
            }),
            ..JobStatus::default()
        };
        assert!(!enact_finished(&mut status, &complete, 0, now), "a pod is uncounted");
        assert!(clean_uncounted(&mut status, &HashSet::new()));
        assert_eq!(status.succeeded, Some(1));
        assert!(!enact_finished(&mut status, &complete, 1, now), "a pod is terminating");
        assert!(enact_finished(&mut status, &complete, 0, now));
        assert_eq!(status.completion_time, Some(Time(now)));
        assert_eq!(status.conditions.as_ref().unwrap()[0].reason.as_deref(), Some("CompletionsReached"));
        let failed =
            new_condition(FAILED, "True", "DeadlineExceeded", "Job was active longer than specified deadline", now);
        let mut status = JobStatus::default();
        assert!(enact_finished(&mut status, &failed, 0, now));
        assert_eq!(status.completion_time, None, "a failed Job has no completion time");
    }

    #[test]
    fn uncounted_pods_still_holding_the_finalizer_stay_uncounted() {
        let mut status = JobStatus {
            failed: Some(2),
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: Some(vec!["a".into(), "b".into()]),
                failed: Some(vec!["c".into()]),
            }),
            ..JobStatus::default()
        };
        let holding: HashSet<String> = ["b".to_string()].into();
        assert!(clean_uncounted(&mut status, &holding));
        assert_eq!((status.succeeded, status.failed), (Some(1), Some(3)));
        let uncounted = status.uncounted_terminated_pods.unwrap();
        assert_eq!((uncounted.succeeded, uncounted.failed), (Some(vec!["b".to_string()]), None));
    }

    #[test]
    fn success_policies_match_by_indexes_and_counts() {
        let succeeded: BTreeSet<i32> = [0, 2, 3].into();
        let rules: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0-1"},
            {"succeededIndexes": "1-3", "succeededCount": 2}]}))
        .unwrap();
        assert_eq!(match_success_policy(&rules, 5, &succeeded).as_deref(), Some("Matched rules at index 1"));
        let count: SuccessPolicy = serde_json::from_value(json!({"rules": [{"succeededCount": 4}]})).unwrap();
        assert_eq!(match_success_policy(&count, 5, &succeeded), None);
        let all: SuccessPolicy = serde_json::from_value(json!({"rules": [{"succeededIndexes": "2-3"}]})).unwrap();
        assert!(match_success_policy(&all, 5, &succeeded).is_some());
    }

    #[test]
    fn indexed_pods_carry_their_index_everywhere_kube_puts_it() {
        let j = job(json!({"completionMode": "Indexed", "completions": 3}));
        let pod = pod_from_template(&j, Some(2), Some(1));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("work-2-"));
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX], "2");
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()[INDEX_FAILURE_COUNT], "1");
        assert_eq!(pod.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "2");
        assert_eq!(pod.metadata.labels.as_ref().unwrap()["job-name"], "work");
        assert_eq!(pod.metadata.finalizers, Some(vec![TRACKING_FINALIZER.to_string()]));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.block_owner_deletion),
            ("Job", "job-uid", Some(true))
        );
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-2"));
        for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            let env = container.env.as_ref().unwrap();
            let var = env.iter().find(|e| e.name == COMPLETION_INDEX_ENV).unwrap();
            let field = var.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
            assert_eq!(field.field_path, "metadata.annotations['batch.kubernetes.io/job-completion-index']");
        }
        let plain = pod_from_template(&job(json!({})), None, None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("work-"));
        assert!(plain.metadata.annotations.is_none());
        assert!(plain.spec.unwrap().containers[0].env.is_none());
        let long = "a".repeat(63);
        assert_eq!(generate_name_with_index(&long, 12345).len(), MAX_GENERATE_NAME);
    }

    #[test]
    fn duplicate_and_invalid_indexes_are_removed_first() {
        let spec = spec_of(&job(json!({"completionMode": "Indexed", "completions": 2})));
        let pod = |name: &str, index: &str| -> Arc<Pod> {
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": name,
                    "annotations": {COMPLETION_INDEX: index}}, "status": {"phase": "Running"}}))
                .unwrap(),
            )
        };
        let active = vec![pod("a", "0"), pod("b", "0"), pod("c", "5"), pod("d", "1")];
        let removed: Vec<String> =
            active_pods_for_removal(&spec, &active, 0).iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(removed.len(), 2);
        assert!(removed.contains(&"c".to_string()), "index 5 is beyond the completions");
        assert!(removed.iter().any(|n| n == "a" || n == "b"), "one of the two pods of index 0");
    }

    #[test]
    fn the_ttl_counts_from_the_finish() {
        let now = ts("2026-01-01T00:00:10Z");
        let mut finished = job(json!({"ttlSecondsAfterFinished": 30}));
        assert_eq!(ttl_remaining(&finished, now), None, "not finished");
        finished.status = Some(JobStatus {
            conditions: Some(vec![new_condition(
                FAILED,
                "True",
                "BackoffLimitExceeded",
                "",
                ts("2026-01-01T00:00:00Z"),
            )]),
            ..JobStatus::default()
        });
        assert_eq!(ttl_remaining(&finished, now), Some(Duration::from_secs(20)));
        assert_eq!(ttl_remaining(&finished, ts("2026-01-01T00:01:00Z")), Some(Duration::ZERO));
        assert!(is_finished(&finished));
    }

    #[test]
    fn per_index_failures_add_up_across_an_index_pods() {
        let spec = spec_of(&job(json!({"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1})));
        let failed = |index: &str, earlier: &str| -> Arc<Pod> {
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "p",
                    "annotations": {COMPLETION_INDEX: index, INDEX_FAILURE_COUNT: earlier}},
                    "status": {"phase": "Failed"}}))
                .unwrap(),
            )
        };
        let now = ts("2026-01-01T00:00:00Z");
        let (failed_set, counts) = index_failures(&spec, &JobStatus::default(), &[failed("0", "0")], now);
        assert!(failed_set.is_empty(), "one failure is within the limit of 1");
        assert_eq!(counts[&0].count, 1);
        let pods = [failed("0", "0"), failed("0", "1"), failed("2", "0")];
        let (failed_set, counts) = index_failures(&spec, &JobStatus::default(), &pods, now);
        assert_eq!(format_indexes(&failed_set), "0");
        assert_eq!((counts[&0].count, counts[&2].count), (2, 1));
    }
}
