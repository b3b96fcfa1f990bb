//! The CronJob controller (`batch/v1`): creates a Job at each time a CronJob's schedule names, as
//! kube-controller-manager's cronjob controller (v2) does.
//!
//! - The schedule ([`schedule`]) is read in `spec.timeZone` (an IANA zone; without one, the controller
//!   manager's local zone). An unknown zone or a schedule that cannot be read is reported as a Warning event and
//!   nothing is scheduled until the CronJob changes.
//! - Each sync looks for the most recent scheduled time not yet acted on, since `status.lastScheduleTime` (or
//!   the CronJob's creation) but no earlier than `startingDeadlineSeconds` ago: older times are skipped without
//!   a word, as kube skips them; one found yet too late is reported (`MissSchedule`). More than 100 missed times
//!   are warned about (`TooManyMissedTimes`). Only the most recent time is started.
//! - `concurrencyPolicy`: Allow runs Jobs side by side; Forbid skips a time while a Job is active
//!   (`JobAlreadyActive`); Replace deletes the active Jobs first. `suspend` stops new Jobs, not running ones.
//! - A Job is named `<cronjob>-<scheduled time in minutes since the epoch>`, which makes a second create of the
//!   same time an AlreadyExists rather than a duplicate. It carries the template's labels and annotations,
//!   `batch.kubernetes.io/cronjob-scheduled-timestamp` and a controller owner reference.
//! - Status: `active` (references to unfinished Jobs), `lastScheduleTime`, `lastSuccessfulTime`.
//! - Finished Jobs (condition Complete or Failed true) beyond `successfulJobsHistoryLimit` /
//!   `failedJobsHistoryLimit` are deleted oldest first, in the background.
//! - The next sync is queued for the next scheduled time (plus 100 ms against clock skew) instead of polling.
//!   The clock is a [`Clock`], so that tests can move time instead of waiting for it.

pub mod schedule;

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use kube::{Api, Client, Resource};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events::{EventSink, EventType, reference_to};
use crate::informer::{Change, Informer};
use crate::pods::{BY_CONTROLLER, controller_ref};
use crate::queue::{Requeue, WorkQueue, run_workers};
use schedule::Schedule;

/// The annotation on a Job naming the time it was scheduled for (RFC 3339, in the CronJob's time zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Added to every requeue delay, so that a sync woken by a slightly early timer still sees the time as come.
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// Missed times beyond which a CronJob is warned about (kube's arbitrary "more than 80, less than lots").
pub const TOO_MANY_MISSED: i64 = 100;

/// Where the controller reads the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Timestamp;

    /// A receiver that changes whenever the clock jumps (a test moving time forward), so that the controller
    /// looks at every CronJob again; `None` for a clock that only moves at its natural pace.
    fn jumps(&self) -> Option<watch::Receiver<Timestamp>> {
        None
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that shows real time plus an offset that tests move forward ([`ManualClock::advance`],
/// [`ManualClock::set`]); every move wakes the controller.
#[derive(Debug)]
pub struct ManualClock {
    offset: RwLock<SignedDuration>,
    jumped: watch::Sender<Timestamp>,
}

impl ManualClock {
    /// A clock showing real time until moved.
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            offset: RwLock::new(SignedDuration::ZERO),
            jumped: watch::Sender::new(Timestamp::now()),
        })
    }

    /// Moves the clock forward (or back) by `by`.
    pub fn advance(&self, by: SignedDuration) {
        let mut offset = self.offset.write().unwrap_or_else(PoisonError::into_inner);
        *offset = offset.saturating_add(by);
        drop(offset);
        self.jumped.send_replace(self.now());
    }

    /// Sets the clock to show `to` now (it runs on from there).
    pub fn set(&self, to: Timestamp) {
        let mut offset = self.offset.write().unwrap_or_else(PoisonError::into_inner);
        *offset = to.duration_since(Timestamp::now());
        drop(offset);
        self.jumped.send_replace(self.now());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let offset = *self.offset.read().unwrap_or_else(PoisonError::into_inner);
        Timestamp::now().saturating_add(offset).unwrap_or_else(|_| Timestamp::now())
    }

    fn jumps(&self) -> Option<watch::Receiver<Timestamp>> {
        Some(self.jumped.subscribe())
    }
}

/// How the CronJob controller runs.
#[derive(Clone, Debug)]
pub struct CronJobConfig {
    /// The clock schedules are measured against (the system clock by default).
    pub clock: Arc<dyn Clock>,
}

impl Default for CronJobConfig {
    fn default() -> CronJobConfig {
        CronJobConfig { clock: Arc::new(SystemClock) }
    }
}

/// What can fail in a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{what} for {key}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The CronJob.
        key: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// An active Job could not be deleted to make room for its replacement.
    #[error("could not replace job {job} of {key}")]
    Replace {
        /// The CronJob.
        key: String,
        /// The Job, `namespace/name`.
        job: String,
    },
}

/// How many scheduled times were missed since the last one acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissedSchedules {
    /// None: the next time has not come.
    None,
    /// A few.
    Few,
    /// More than [`TOO_MANY_MISSED`].
    Many,
}

/// The scheduled times around `now`, as kube's `mostRecentScheduleTime` sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleWindow {
    /// Where the search started: the last scheduled time, the creation time, or the starting deadline.
    pub earliest: Timestamp,
    /// The most recent scheduled time at or before now, after `earliest`.
    pub most_recent: Option<Timestamp>,
    /// How many were missed (an estimate from the interval between the first two, as kube's).
    pub missed: MissedSchedules,
}

/// Why no scheduled time can be found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("time difference between two schedules is less than 1 second")]
pub struct NoInterval;

fn time_of(time: Option<&Time>) -> Option<Timestamp> {
    time.map(|t| t.0)
}

/// The scheduled times of `cj` up to `now`; `with_deadline` starts the search no earlier than
/// `startingDeadlineSeconds` before now (the times the controller would still start).
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    schedule: &Schedule,
    tz: &TimeZone,
    with_deadline: bool,
) -> Result<ScheduleWindow, NoInterval> {
    let status = cj.status.as_ref();
    let mut earliest = time_of(status.and_then(|s| s.last_schedule_time.as_ref()))
        .or_else(|| time_of(cj.metadata.creation_timestamp.as_ref()))
        .unwrap_or(now);
    if with_deadline && let Some(deadline) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
        let limit = now.saturating_sub(SignedDuration::from_secs(deadline)).unwrap_or(now);
        if limit > earliest {
            earliest = limit;
        }
    }
    let none = ScheduleWindow { earliest, most_recent: None, missed: MissedSchedules::None };
    // A schedule with no next time (February 30th) has no interval either, as kube finds.
    let first = schedule.next(earliest, tz).ok_or(NoInterval)?;
    let second = schedule.next(first, tz).ok_or(NoInterval)?;
    if now < first {
        return Ok(none);
    }
    if now < second {
        return Ok(ScheduleWindow { most_recent: Some(first), ..none });
    }
    let interval = second.duration_since(first).as_secs();
    if interval < 1 {
        return Err(NoInterval);
    }
    let missed = now.duration_since(first).as_secs() / interval + 1;
    let most_recent = schedule.latest_between(earliest, now, tz);
    let missed = if missed > TOO_MANY_MISSED { MissedSchedules::Many } else { MissedSchedules::Few };
    Ok(ScheduleWindow { earliest, most_recent, missed })
}

/// The delay until the sync after `now`: the next scheduled time plus [`NEXT_SCHEDULE_DELTA`]; `None` if the
/// schedule has no next time.
pub fn next_requeue(cj: &CronJob, now: Timestamp, schedule: &Schedule, tz: &TimeZone) -> Option<Duration> {
    let from = match most_recent_schedule_time(cj, now, schedule, tz, false) {
        Err(NoInterval) => now,
        Ok(ScheduleWindow { most_recent: Some(t), .. }) => t,
        Ok(ScheduleWindow { earliest, missed: MissedSchedules::None, .. }) => earliest,
        Ok(_) => now,
    };
    let next = schedule.next(from, tz)?;
    let delay = next.duration_since(now).checked_add(SignedDuration::try_from(NEXT_SCHEDULE_DELTA).ok()?)?;
    Some(Duration::try_from(delay).unwrap_or(Duration::ZERO))
}

/// The name of the Job for the time `scheduled`: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// RFC 3339 with `Z` for a zero offset, as Go writes it.
fn rfc3339(at: Timestamp, tz: &TimeZone) -> String {
    let zoned = at.to_zoned(tz.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The controller owner reference to `cj` that its Jobs carry.
pub fn owner_reference(cj: &CronJob) -> OwnerReference {
    OwnerReference {
        api_version: CronJob::api_version(&()).into_owned(),
        kind: CronJob::kind(&()).into_owned(),
        name: cj.metadata.name.clone().unwrap_or_default(),
        uid: cj.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The Job that `cj` runs for the time `scheduled`. The scheduled-time annotation is written in `annotation_tz`
/// (the CronJob's `spec.timeZone`, UTC without one, as kube writes it).
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, annotation_tz: &TimeZone) -> Job {
    let template = cj.spec.as_ref().map(|s| &s.job_template);
    let template_meta = template.and_then(|t| t.metadata.as_ref());
    let labels = template_meta.and_then(|m| m.labels.clone()).unwrap_or_default();
    let mut annotations = template_meta.and_then(|m| m.annotations.clone()).unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP_ANNOTATION.to_string(), rfc3339(scheduled, annotation_tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj.metadata.name.as_deref().unwrap_or(""), scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    }
}

/// The condition (`Complete` or `Failed`) that finished the Job, if one is true.
pub fn finished_condition(job: &Job) -> Option<&str> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// Oldest first by `status.startTime` (Jobs that never started last), then by name.
fn by_start_time(a: &Arc<Job>, b: &Arc<Job>) -> std::cmp::Ordering {
    let start = |j: &Job| time_of(j.status.as_ref().and_then(|s| s.start_time.as_ref()));
    match (start(a), start(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.metadata.name.cmp(&b.metadata.name),
    }
}

/// The finished Jobs beyond the history limits, oldest first: successful ones beyond `successful_limit`, then
/// failed ones beyond `failed_limit` (no limit keeps them all).
pub fn jobs_beyond_history(
    jobs: &[Arc<Job>],
    successful_limit: Option<i32>,
    failed_limit: Option<i32>,
) -> Vec<Arc<Job>> {
    let mut doomed = Vec::new();
    for (condition, limit) in [("Complete", successful_limit), ("Failed", failed_limit)] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<Arc<Job>> =
            jobs.iter().filter(|j| finished_condition(j) == Some(condition)).cloned().collect();
        let excess = finished.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        if excess == 0 {
            continue;
        }
        finished.sort_by(by_start_time);
        doomed.extend(finished.into_iter().take(excess));
    }
    doomed
}

fn key_of(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn active(cj: &CronJob) -> &[ObjectReference] {
    cj.status.as_ref().and_then(|s| s.active.as_deref()).unwrap_or(&[])
}

fn in_active_list(cj: &CronJob, uid: &str) -> bool {
    active(cj).iter().any(|r| r.uid.as_deref() == Some(uid))
}

fn remove_from_active_list(cj: &mut CronJob, uid: &str) {
    let status = cj.status.get_or_insert_with(Default::default);
    if let Some(active) = status.active.as_mut() {
        active.retain(|r| r.uid.as_deref() != Some(uid));
        if active.is_empty() {
            status.active = None;
        }
    }
}

/// The CronJob's time zone: `spec.timeZone`, or the controller manager's own.
fn time_zone(cj: &CronJob) -> Result<TimeZone, (String, jiff::Error)> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        Some(name) => TimeZone::get(name).map_err(|e| (name.to_string(), e)),
        None => Ok(TimeZone::system()),
    }
}

fn format_rfc1123z(at: Timestamp) -> String {
    at.to_zoned(TimeZone::UTC).strftime("%a, %d %b %Y %H:%M:%S %z").to_string()
}

/// The controller.
pub struct CronJobController {
    client: Client,
    cronjobs: Arc<Informer<CronJob>>,
    jobs: Arc<Informer<Job>>,
    queue: Arc<WorkQueue>,
    events: EventSink,
    clock: Arc<dyn Clock>,
}

impl CronJobController {
    /// The controller, following changes through the shared informers. `jobs` must be indexed by
    /// [`BY_CONTROLLER`] (see [`crate::pods::controller_index`]).
    pub fn new(
        client: Client,
        cronjobs: Arc<Informer<CronJob>>,
        jobs: Arc<Informer<Job>>,
        config: &CronJobConfig,
        events: EventSink,
    ) -> Arc<CronJobController> {
        let controller = Arc::new(CronJobController {
            client,
            cronjobs: Arc::clone(&cronjobs),
            jobs: Arc::clone(&jobs),
            queue: WorkQueue::new(),
            events,
            clock: Arc::clone(&config.clock),
        });
        let queue = Arc::clone(&controller.queue);
        cronjobs.on_change(move |change| {
            let (Change::Added(cj) | Change::Updated { new: cj, .. } | Change::Deleted(cj)) = change;
            queue
                .add(key_of(cj.metadata.namespace.as_deref().unwrap_or(""), cj.metadata.name.as_deref().unwrap_or("")));
        });
        let weak = Arc::downgrade(&controller);
        jobs.on_change(move |change| {
            let Some(controller) = weak.upgrade() else { return };
            match change {
                Change::Added(job) | Change::Deleted(job) => controller.enqueue_owner(job),
                Change::Updated { old, new } => {
                    if controller_ref(&old.metadata).map(|r| &r.uid) != controller_ref(&new.metadata).map(|r| &r.uid) {
                        controller.enqueue_owner(old);
                    }
                    controller.enqueue_owner(new);
                }
            }
        });
        controller
    }

    /// Queues the CronJob controlling `job`, if this informer knows it.
    fn enqueue_owner(&self, job: &Job) {
        let Some(owner) = controller_ref(&job.metadata) else { return };
        if owner.kind != "CronJob" {
            return;
        }
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        if let Some(cj) = self.cronjobs.get(namespace, &owner.name)
            && cj.metadata.uid.as_deref() == Some(owner.uid.as_str())
        {
            self.queue.add(key_of(namespace, &owner.name));
        }
    }

    /// Reconciles CronJobs with `workers` workers until `shutdown` (after the informers have synced).
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: CancellationToken) {
        self.cronjobs.wait_synced(&shutdown).await;
        self.jobs.wait_synced(&shutdown).await;
        let jumps = self.clock.jumps();
        let resync = {
            let controller = Arc::clone(&self);
            let shutdown = shutdown.clone();
            async move {
                let Some(mut jumps) = jumps else { return };
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        changed = jumps.changed() => if changed.is_err() { return },
                    }
                    for cj in controller.cronjobs.list() {
                        let namespace = cj.metadata.namespace.as_deref().unwrap_or("");
                        controller.queue.add(key_of(namespace, cj.metadata.name.as_deref().unwrap_or("")));
                    }
                }
            }
        };
        let queue = Arc::clone(&self.queue);
        let controller = self;
        let workers = run_workers("cronjob", queue, workers, shutdown, move |key| {
            let controller = Arc::clone(&controller);
            async move { controller.sync(&key).await }
        });
        tokio::join!(workers, resync);
    }

    fn warn(&self, cj: &CronJob, reason: &str, note: String) {
        self.events.publish(reference_to(cj), EventType::Warning, reason, "Sync", note);
    }

    fn normal(&self, cj: &CronJob, reason: &str, action: &str, note: String) {
        self.events.publish(reference_to(cj), EventType::Normal, reason, action, note);
    }

    /// One reconcile of the CronJob `namespace/name`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let Some(cached) = self.cronjobs.get(namespace, name) else { return Ok(Requeue::No) };
        let uid = cached.metadata.uid.as_deref().unwrap_or("");
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .by_index(BY_CONTROLLER, uid)
            .into_iter()
            .filter(|j| controller_ref(&j.metadata).is_some_and(|r| r.kind == "CronJob" && r.uid == uid))
            .collect();
        let mut cj = (*cached).clone();
        let now = self.clock.now();
        let cleaned = self.cleanup_finished_jobs(&mut cj, &jobs).await;
        let mut changed = false;
        let outcome = self.sync_cron_job(key, &mut cj, &jobs, now, &mut changed).await;
        if let Err(err) = &outcome {
            tracing::debug!(cronjob = key, error = %err, "cronjob: sync failed");
        }
        if (cleaned || changed) && cj.status != cached.status {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), namespace);
            match api.replace_status(name, &PostParams::default(), &cj).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Requeue::No),
                Err(source) => return Err(SyncError::Api { what: "updating status", key: key.to_string(), source }),
            }
        }
        match outcome? {
            Some(delay) => Ok(Requeue::After(delay)),
            None => Ok(Requeue::No),
        }
    }

    /// Deletes finished Jobs beyond the history limits; whether the status changed.
    async fn cleanup_finished_jobs(&self, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
        let spec = cj.spec.as_ref();
        let (successful, failed) =
            (spec.and_then(|s| s.successful_jobs_history_limit), spec.and_then(|s| s.failed_jobs_history_limit));
        if successful.is_none() && failed.is_none() {
            return false;
        }
        let mut changed = false;
        for job in jobs_beyond_history(jobs, successful, failed) {
            if self.delete_job(cj, &job).await {
                changed = true;
            }
        }
        changed
    }

    /// Deletes a Job in the background and forgets it from the active list; whether it was deleted.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let name = job.metadata.name.as_deref().unwrap_or("");
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let params =
            DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
        if let Err(err) = api.delete(name, &params).await {
            self.warn(cj, "FailedDelete", format!("Deleted job: {err}"));
            tracing::warn!(job = name, error = %err, "cronjob: deleting a job failed");
            return false;
        }
        remove_from_active_list(cj, job.metadata.uid.as_deref().unwrap_or(""));
        self.normal(cj, "SuccessfulDelete", "Delete", format!("Deleted job {name}"));
        true
    }

    async fn get_job(&self, key: &str, namespace: &str, name: &str) -> Result<Option<Job>, SyncError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| SyncError::Api { what: "reading a job", key: key.to_string(), source })
    }

    /// kube's `syncCronJob`: folds the Jobs into the status, then starts the Job for the most recent scheduled
    /// time if one is due. Returns when to look again; `changed` tells whether `cj`'s status was changed.
    async fn sync_cron_job(
        &self,
        key: &str,
        cj: &mut CronJob,
        jobs: &[Arc<Job>],
        now: Timestamp,
        changed: &mut bool,
    ) -> Result<Option<Duration>, SyncError> {
        let namespace = cj.metadata.namespace.clone().unwrap_or_default();
        let mut children = HashSet::new();
        for job in jobs {
            let uid = job.metadata.uid.as_deref().unwrap_or("");
            let job_name = job.metadata.name.as_deref().unwrap_or("");
            children.insert(uid.to_string());
            let found = in_active_list(cj, uid);
            let finished = finished_condition(job);
            if !found && finished.is_none() {
                // Our own status write may not have reached the informer yet: ask the API before complaining.
                let api: Api<CronJob> = Api::namespaced(self.client.clone(), &namespace);
                let fresh = api
                    .get_opt(cj.metadata.name.as_deref().unwrap_or(""))
                    .await
                    .map_err(|source| SyncError::Api { what: "reading the cronjob", key: key.to_string(), source })?;
                if let Some(fresh) = fresh
                    && fresh.metadata.uid == cj.metadata.uid
                    && in_active_list(&fresh, uid)
                {
                    *cj = fresh;
                    continue;
                }
                self.warn(
                    cj,
                    "UnexpectedJob",
                    format!("Saw a job that the controller did not create or forgot: {job_name}"),
                );
            } else if let (true, Some(condition)) = (found, finished) {
                remove_from_active_list(cj, uid);
                self.normal(
                    cj,
                    "SawCompletedJob",
                    "Sync",
                    format!("Saw completed job: {job_name}, condition: {condition}"),
                );
                *changed = true;
            }
            // Any succeeded Job counts, in the active list or not.
            if finished == Some("Complete") {
                let completed = time_of(job.status.as_ref().and_then(|s| s.completion_time.as_ref()));
                let status = cj.status.get_or_insert_with(Default::default);
                let last = time_of(status.last_successful_time.as_ref());
                if let Some(completed) = completed
                    && last.is_none_or(|last| completed > last)
                {
                    status.last_successful_time = Some(Time(completed));
                    *changed = true;
                }
            }
        }
        // Jobs that are active in the status but gone: the informer may lag, so ask the API before forgetting.
        for reference in active(cj).to_vec() {
            let uid = reference.uid.as_deref().unwrap_or("");
            if children.contains(uid) {
                continue;
            }
            let job_namespace = reference.namespace.as_deref().unwrap_or(&namespace);
            let job_name = reference.name.as_deref().unwrap_or("");
            if self.get_job(key, job_namespace, job_name).await?.is_none() {
                self.normal(cj, "MissingJob", "Sync", format!("Active job went missing: {job_name}"));
                remove_from_active_list(cj, uid);
                *changed = true;
            }
        }
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let tz = match time_zone(cj) {
            Ok(tz) => tz,
            Err((name, err)) => {
                tracing::debug!(cronjob = key, time_zone = %name, error = %err, "cronjob: unknown time zone");
                self.warn(cj, "UnknownTimeZone", format!("invalid timeZone: {name:?}: unknown time zone {name}"));
                return Ok(None);
            }
        };
        let spec = cj.spec.clone().unwrap_or_default();
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(schedule) => schedule,
            Err(err) => {
                self.warn(cj, "UnparseableSchedule", format!("unparseable schedule: {:?} : {err}", spec.schedule));
                return Ok(None);
            }
        };
        let window = match most_recent_schedule_time(cj, now, &schedule, &tz, true) {
            Ok(window) => window,
            Err(err) => {
                self.warn(cj, "InvalidSchedule", format!("invalid schedule: {} : {err}", spec.schedule));
                return Ok(None);
            }
        };
        let requeue = |cj: &CronJob| next_requeue(cj, now, &schedule, &tz);
        let Some(scheduled) = window.most_recent.filter(|t| *t <= now) else {
            return Ok(requeue(cj));
        };
        if window.missed == MissedSchedules::Many {
            self.warn(
                cj,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
            );
            tracing::info!(cronjob = key, "cronjob: too many missed times");
        }
        if let Some(deadline) = spec.starting_deadline_seconds
            && scheduled.saturating_add(SignedDuration::from_secs(deadline)).is_ok_and(|end| end < now)
        {
            self.warn(
                cj,
                "MissSchedule",
                format!("Missed scheduled time to start a job: {}", format_rfc1123z(scheduled)),
            );
            return Ok(requeue(cj));
        }
        let name = job_name(cj.metadata.name.as_deref().unwrap_or(""), scheduled);
        let last_schedule = time_of(cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()));
        if active(cj).iter().any(|r| r.name.as_deref() == Some(name.as_str())) || last_schedule == Some(scheduled) {
            return Ok(requeue(cj));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active(cj).is_empty() {
            self.normal(
                cj,
                "JobAlreadyActive",
                "Sync",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            );
            return Ok(requeue(cj));
        }
        if policy == "Replace" {
            for reference in active(cj).to_vec() {
                let job_namespace = reference.namespace.as_deref().unwrap_or(&namespace);
                let job_name = reference.name.as_deref().unwrap_or("");
                let job = match self.get_job(key, job_namespace, job_name).await {
                    Ok(Some(job)) => job,
                    Ok(None) => {
                        self.warn(cj, "FailedGet", format!("Get job: jobs.batch {job_name:?} not found"));
                        return Err(SyncError::Replace { key: key.to_string(), job: key_of(job_namespace, job_name) });
                    }
                    Err(err) => {
                        self.warn(cj, "FailedGet", format!("Get job: {err}"));
                        return Err(err);
                    }
                };
                if !self.delete_job(cj, &job).await {
                    return Err(SyncError::Replace { key: key.to_string(), job: key_of(job_namespace, job_name) });
                }
                *changed = true;
            }
        }
        let annotation_tz = if spec.time_zone.is_some() { tz.clone() } else { TimeZone::UTC };
        let request = job_from_template(cj, scheduled, &annotation_tz);
        let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let created = match api.create(&PostParams::default(), &request).await {
            Ok(job) => {
                self.normal(cj, "SuccessfulCreate", "Create", format!("Created job {name}"));
                job
            }
            Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {
                let Some(job) = self.get_job(key, &namespace, &name).await? else {
                    return Err(SyncError::Api {
                        what: "creating a job",
                        key: key.to_string(),
                        source: kube::Error::Api(e),
                    });
                };
                tracing::info!(cronjob = key, job = name, "cronjob: job already exists");
                let ours = controller_ref(&job.metadata).is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
                if !ours || in_active_list(cj, job.metadata.uid.as_deref().unwrap_or("")) {
                    return Ok(None);
                }
                job
            }
            // Nothing can be created in a namespace being deleted; not worth an event.
            Err(kube::Error::Api(e))
                if e.code == 403
                    && e.details
                        .as_ref()
                        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")) =>
            {
                return Err(SyncError::Api {
                    what: "creating a job",
                    key: key.to_string(),
                    source: kube::Error::Api(e),
                });
            }
            Err(source) => {
                self.warn(cj, "FailedCreate", format!("Error creating job: {source}"));
                return Err(SyncError::Api { what: "creating a job", key: key.to_string(), source });
            }
        };
        let status = cj.status.get_or_insert_with(Default::default);
        status.active.get_or_insert_with(Vec::new).push(reference_to(&created));
        status.last_schedule_time = Some(Time(scheduled));
        *changed = true;
        Ok(requeue(cj))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Value, json};

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn cronjob(spec: Value, status: Value) -> CronJob {
        let mut full = json!({"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}}});
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        serde_json::from_value(json!({
            "metadata": {"name": "tick", "namespace": "ns", "uid": "cj-uid",
                         "creationTimestamp": "2026-03-01T10:00:30Z"},
            "spec": full, "status": status}))
        .unwrap()
    }

    fn window(cj: &CronJob, now: &str, with_deadline: bool) -> Result<ScheduleWindow, NoInterval> {
        let schedule = Schedule::parse(&cj.spec.as_ref().unwrap().schedule).unwrap();
        most_recent_schedule_time(cj, ts(now), &schedule, &TimeZone::UTC, with_deadline)
    }

    fn job(name: &str, condition: Option<&str>, started: Option<&str>) -> Arc<Job> {
        let conditions = match condition {
            Some(c) => json!([{"type": c, "status": "True"}]),
            None => json!([]),
        };
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("{name}-uid")},
                "status": {"conditions": conditions, "startTime": started}}))
            .unwrap(),
        )
    }

    fn names(jobs: &[Arc<Job>]) -> Vec<&str> {
        jobs.iter().map(|j| j.metadata.name.as_deref().unwrap()).collect()
    }

    #[test]
    fn nothing_is_due_before_the_first_time_after_creation() {
        let w = window(&cronjob(json!({}), json!({})), "2026-03-01T10:00:50Z", true).unwrap();
        assert_eq!(
            w,
            ScheduleWindow { earliest: ts("2026-03-01T10:00:30Z"), most_recent: None, missed: MissedSchedules::None }
        );
    }

    #[test]
    fn the_first_time_is_due_once_it_has_come() {
        let w = window(&cronjob(json!({}), json!({})), "2026-03-01T10:01:05Z", true).unwrap();
        assert_eq!(w.most_recent, Some(ts("2026-03-01T10:01:00Z")));
        assert_eq!(w.missed, MissedSchedules::None);
    }

    #[test]
    fn after_missed_times_only_the_most_recent_is_due() {
        let cj = cronjob(json!({}), json!({"lastScheduleTime": "2026-03-01T10:01:00Z"}));
        let w = window(&cj, "2026-03-01T10:05:30Z", true).unwrap();
        assert_eq!(w.earliest, ts("2026-03-01T10:01:00Z"), "counted from the last scheduled time");
        assert_eq!(w.most_recent, Some(ts("2026-03-01T10:05:00Z")));
        assert_eq!(w.missed, MissedSchedules::Few);
    }

    #[test]
    fn more_than_a_hundred_missed_times_are_too_many() {
        let cj = cronjob(json!({}), json!({"lastScheduleTime": "2026-03-01T08:00:00Z"}));
        let w = window(&cj, "2026-03-01T10:00:30Z", true).unwrap();
        assert_eq!((w.most_recent, w.missed), (Some(ts("2026-03-01T10:00:00Z")), MissedSchedules::Many));
        let w = window(&cj, "2026-03-01T09:35:30Z", true).unwrap();
        assert_eq!(w.missed, MissedSchedules::Few, "95 missed times are still few");
    }

    #[test]
    fn the_starting_deadline_bounds_how_far_back_times_are_looked_for() {
        let cj = cronjob(json!({"startingDeadlineSeconds": 200}), json!({"lastScheduleTime": "2026-03-01T08:00:00Z"}));
        let w = window(&cj, "2026-03-01T10:00:30Z", true).unwrap();
        assert_eq!(w.earliest, ts("2026-03-01T09:57:10Z"));
        assert_eq!((w.most_recent, w.missed), (Some(ts("2026-03-01T10:00:00Z")), MissedSchedules::Few));
        let w = window(&cj, "2026-03-01T10:00:30Z", false).unwrap();
        assert_eq!(w.missed, MissedSchedules::Many, "the requeue computation ignores the deadline");
    }

    #[test]
    fn a_schedule_that_never_comes_has_no_interval() {
        let cj = cronjob(json!({"schedule": "0 0 30 2 *"}), json!({}));
        assert_eq!(window(&cj, "2026-03-01T10:00:30Z", true), Err(NoInterval));
        assert_eq!(NoInterval.to_string(), "time difference between two schedules is less than 1 second");
    }

    #[test]
    fn the_next_sync_is_queued_at_the_next_time_plus_a_margin() {
        let schedule = Schedule::parse("*/1 * * * *").unwrap();
        let fresh = cronjob(json!({}), json!({}));
        let delay = next_requeue(&fresh, ts("2026-03-01T10:00:40Z"), &schedule, &TimeZone::UTC);
        assert_eq!(delay, Some(Duration::from_millis(20_100)));
        let scheduled = cronjob(json!({}), json!({"lastScheduleTime": "2026-03-01T10:01:00Z"}));
        let delay = next_requeue(&scheduled, ts("2026-03-01T10:01:02Z"), &schedule, &TimeZone::UTC);
        assert_eq!(delay, Some(Duration::from_millis(58_100)));
        // Behind by several times: the next one after now, not after the last.
        let delay = next_requeue(&scheduled, ts("2026-03-01T10:07:30Z"), &schedule, &TimeZone::UTC);
        assert_eq!(delay, Some(Duration::from_millis(30_100)));
        let never = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(next_requeue(&fresh, ts("2026-03-01T10:00:40Z"), &never, &TimeZone::UTC), None);
    }

    #[test]
    fn jobs_are_named_after_the_scheduled_minute_and_carry_the_template_and_the_time() {
        let cj = cronjob(
            json!({"jobTemplate": {"metadata": {"labels": {"app": "tick"}, "annotations": {"note": "x"}},
                                   "spec": {"backoffLimit": 2, "template": {"spec": {"containers": []}}}}}),
            json!({}),
        );
        let scheduled = ts("2026-03-01T10:01:00Z");
        let job = job_from_template(&cj, scheduled, &TimeZone::UTC);
        assert_eq!(job.metadata.name.as_deref(), Some("tick-29539321"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(job.metadata.labels.as_ref().unwrap()["app"], "tick");
        let annotations = job.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations["note"], "x");
        assert_eq!(annotations[SCHEDULED_TIMESTAMP_ANNOTATION], "2026-03-01T10:01:00Z");
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("batch/v1", "CronJob", "tick", "cj-uid")
        );
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
        assert_eq!(job.spec.unwrap().backoff_limit, Some(2));
        let paris = job_from_template(&cj, scheduled, &TimeZone::get("Europe/Paris").unwrap());
        assert_eq!(paris.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION], "2026-03-01T11:01:00+01:00");
    }

    #[test]
    fn a_job_is_finished_by_a_true_complete_or_failed_condition() {
        assert_eq!(finished_condition(&job("a", Some("Complete"), None)), Some("Complete"));
        assert_eq!(finished_condition(&job("b", Some("Failed"), None)), Some("Failed"));
        assert_eq!(finished_condition(&job("c", Some("Suspended"), None)), None);
        let not_yet: Job = serde_json::from_value(
            json!({"metadata": {"name": "d"}, "status": {"conditions": [{"type": "Complete", "status": "False"}]}}),
        )
        .unwrap();
        assert_eq!(finished_condition(&not_yet), None);
    }

    #[test]
    fn history_cleanup_deletes_the_oldest_finished_jobs_beyond_each_limit() {
        let jobs = vec![
            job("ok-3", Some("Complete"), Some("2026-03-01T10:03:00Z")),
            job("ok-never-started", Some("Complete"), None),
            job("ok-1", Some("Complete"), Some("2026-03-01T10:01:00Z")),
            job("ok-2", Some("Complete"), Some("2026-03-01T10:02:00Z")),
            job("ok-4", Some("Complete"), Some("2026-03-01T10:04:00Z")),
            job("bad-2", Some("Failed"), Some("2026-03-01T10:02:30Z")),
            job("bad-1", Some("Failed"), Some("2026-03-01T10:01:30Z")),
            job("running", None, Some("2026-03-01T09:00:00Z")),
        ];
        assert_eq!(names(&jobs_beyond_history(&jobs, Some(3), Some(1))), ["ok-1", "ok-2", "bad-1"]);
        assert_eq!(names(&jobs_beyond_history(&jobs, Some(4), Some(0))), ["ok-1", "bad-1", "bad-2"]);
        assert_eq!(
            names(&jobs_beyond_history(&jobs, Some(0), None)),
            ["ok-1", "ok-2", "ok-3", "ok-4", "ok-never-started"],
            "Jobs that never started go last; no limit keeps every failed Job"
        );
        assert!(jobs_beyond_history(&jobs, Some(5), Some(2)).is_empty());
    }

    #[test]
    fn the_missed_schedule_time_is_written_as_rfc1123_in_utc() {
        assert_eq!(format_rfc1123z(ts("2026-03-01T10:01:00Z")), "Sun, 01 Mar 2026 10:01:00 +0000");
    }

    #[test]
    fn a_manual_clock_jumps_and_says_so() {
        let clock = ManualClock::new();
        let jumps = clock.jumps().unwrap();
        let before = clock.now();
        clock.advance(SignedDuration::from_mins(5));
        assert!(jumps.has_changed().unwrap());
        let gap = clock.now().duration_since(before);
        assert!(gap >= SignedDuration::from_mins(5) && gap < SignedDuration::from_mins(6), "{gap:?}");
        clock.set(ts("2030-01-01T00:00:00Z"));
        assert!(clock.now() >= ts("2030-01-01T00:00:00Z") && clock.now() < ts("2030-01-01T00:01:00Z"));
        assert!(SystemClock.jumps().is_none());
    }
}
