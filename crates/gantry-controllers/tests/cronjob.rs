//! The CronJob controller against a real Gantry API server (in-process, real SQLite file). The controller's clock
//! is a manual one that the tests move from minute to minute instead of waiting; the tests play the Job
//! controller by writing Job status conditions through the status subresource.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use gantry_controllers::ControllerManagerConfig;
use gantry_controllers::cronjob::{CronJobConfig, ManualClock, SCHEDULED_TIMESTAMP_ANNOTATION};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    _dir: tempfile::TempDir,
    client: kube::Client,
    clock: Arc<ManualClock>,
    shutdown: CancellationToken,
    _tasks: JoinSet<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn minute_after(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(60) + 60).unwrap()
}

fn minutes_since_epoch(t: Timestamp) -> i64 {
    t.as_second().div_euclid(60)
}

impl Cluster {
    async fn start() -> Cluster {
        let (server, dir, shutdown, client) = common::start_server().await;
        let clock = ManualClock::new();
        let config = ControllerManagerConfig {
            cronjob: CronJobConfig { clock: Arc::clone(&clock) as Arc<dyn gantry_controllers::cronjob::Clock> },
            ..common::manager_config()
        };
        let mut tasks = JoinSet::new();
        gantry_controllers::start(client.clone(), config, shutdown.clone(), &mut tasks);
        Cluster { _server: server, _dir: dir, client, clock, shutdown, _tasks: tasks }
    }

    fn cronjobs(&self) -> Api<CronJob> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates a CronJob running every minute with `extra` spec fields; returns it as created.
    async fn cronjob(&self, name: &str, extra: Value) -> CronJob {
        let mut spec = json!({"schedule": "*/1 * * * *",
            "jobTemplate": {"metadata": {"labels": {"cron": name}, "annotations": {"team": "ops"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}],
                                                "restartPolicy": "Never"}}}}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": spec});
        self.cronjobs().create(&PostParams::default(), &serde_json::from_value(cj).unwrap()).await.unwrap()
    }

    /// Moves the controller's clock to one second past `minute`.
    fn set_clock(&self, minute: Timestamp) {
        self.clock.set(minute.checked_add(SignedDuration::from_secs(1)).unwrap());
    }

    /// The Jobs of the CronJob `name` that are not being deleted, oldest first.
    async fn jobs_of(&self, name: &str) -> Vec<Job> {
        let list = self.jobs().list(&ListParams::default().labels(&format!("cron={name}"))).await.unwrap();
        let mut jobs: Vec<Job> = list.items.into_iter().filter(|j| j.metadata.deletion_timestamp.is_none()).collect();
        jobs.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        jobs
    }

    async fn eventually_jobs(&self, name: &str, what: &str, check: impl Fn(&[Job]) -> bool) -> Vec<Job> {
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let jobs = self.jobs_of(name).await;
            if check(&jobs) {
                return jobs;
            }
            let names: Vec<_> = jobs.iter().map(|j| j.metadata.name.clone().unwrap()).collect();
            assert!(tokio::time::Instant::now() < deadline, "{what}: never happened; jobs {names:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn eventually_cronjob(&self, name: &str, what: &str, check: impl Fn(&CronJob) -> bool) -> CronJob {
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let cj = self.cronjobs().get(name).await.unwrap();
            if check(&cj) {
                return cj;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: never happened; status {:?}", cj.status);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for an event with `reason` about the CronJob `name`; returns its note.
    async fn eventually_event(&self, name: &str, reason: &str) -> String {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let list = events.list(&ListParams::default()).await.unwrap();
            let found = list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.reporting_controller.as_deref() == Some("cronjob-controller")
            });
            if let Some(event) = found {
                return event.note.unwrap_or_default();
            }
            assert!(tokio::time::Instant::now() < deadline, "no {reason} event about {name}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Plays the Job controller: the Job started at `started` and finished (`Complete` or `Failed`) at
    /// `finished`.
    async fn finish(&self, job: &Job, condition: &str, started: Timestamp, finished: Timestamp) {
        let mut status = json!({"startTime": started.to_string(), "conditions": [
            {"type": condition, "status": "True", "lastProbeTime": finished.to_string(),
             "lastTransitionTime": finished.to_string()}]});
        if condition == "Complete" {
            status["completionTime"] = json!(finished.to_string());
            status["succeeded"] = json!(1);
        } else {
            status["failed"] = json!(1);
        }
        let name = job.metadata.name.as_deref().unwrap();
        self.jobs()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
            .await
            .unwrap();
    }
}

fn active_names(cj: &CronJob) -> Vec<String> {
    let active = cj.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
    active.into_iter().filter_map(|r| r.name).collect()
}

fn last_schedule(cj: &CronJob) -> Option<Timestamp> {
    cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0)
}

fn job_names(jobs: &[Job]) -> Vec<String> {
    jobs.iter().map(|j| j.metadata.name.clone().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_runs_one_job_at_a_time_and_the_next_once_the_first_completes() {
    let cluster = Cluster::start().await;
    let cj = cluster.cronjob("tick", json!({"concurrencyPolicy": "Forbid"})).await;
    let first = minute_after(cj.metadata.creation_timestamp.unwrap().0);
    cluster.set_clock(first);
    let jobs = cluster.eventually_jobs("tick", "the first job", |j| j.len() == 1).await;
    let job = &jobs[0];
    assert_eq!(job.metadata.name.clone().unwrap(), format!("tick-{}", minutes_since_epoch(first)));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), &owner.uid), ("CronJob", cj.metadata.uid.as_ref().unwrap()));
    assert_eq!(owner.controller, Some(true));
    let annotations = job.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["team"], "ops");
    assert_eq!(annotations[SCHEDULED_TIMESTAMP_ANNOTATION], first.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    let status =
        cluster.eventually_cronjob("tick", "the job is active", |cj| active_names(cj) == job_names(&jobs)).await;
    assert_eq!(last_schedule(&status), Some(first));
    cluster.eventually_event("tick", "SuccessfulCreate").await;

    // The next minute comes while the first Job runs: Forbid skips it.
    let second = first.checked_add(SignedDuration::from_mins(1)).unwrap();
    cluster.set_clock(second);
    let note = cluster.eventually_event("tick", "JobAlreadyActive").await;
    assert_eq!(note, "Not starting job because prior execution is running and concurrency policy is Forbid");
    assert_eq!(cluster.jobs_of("tick").await.len(), 1, "no second job while the first is active");

    // The first Job completes: it leaves the active list, and the skipped minute starts now.
    let done_at = second.checked_add(SignedDuration::from_secs(5)).unwrap();
    cluster.finish(job, "Complete", first, done_at).await;
    let jobs = cluster.eventually_jobs("tick", "the second job", |j| j.len() == 2).await;
    assert_eq!(job_names(&jobs)[1], format!("tick-{}", minutes_since_epoch(second)));
    let status = cluster
        .eventually_cronjob("tick", "only the second job is active", |cj| {
            active_names(cj) == [job_names(&jobs)[1].clone()]
        })
        .await;
    assert_eq!(last_schedule(&status), Some(second));
    let last_success = status.status.unwrap().last_successful_time.map(|t| t.0);
    assert_eq!(last_success, Some(done_at));
    let note = cluster.eventually_event("tick", "SawCompletedJob").await;
    assert_eq!(note, format!("Saw completed job: {}, condition: Complete", job_names(&jobs)[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_deletes_the_running_job_and_starts_the_next() {
    let cluster = Cluster::start().await;
    let cj = cluster.cronjob("swap", json!({"concurrencyPolicy": "Replace"})).await;
    let first = minute_after(cj.metadata.creation_timestamp.unwrap().0);
    cluster.set_clock(first);
    let jobs = cluster.eventually_jobs("swap", "the first job", |j| j.len() == 1).await;
    let old = job_names(&jobs)[0].clone();
    cluster.eventually_cronjob("swap", "the first job is active", |cj| active_names(cj) == [old.clone()]).await;

    let second = first.checked_add(SignedDuration::from_mins(1)).unwrap();
    cluster.set_clock(second);
    let new = format!("swap-{}", minutes_since_epoch(second));
    cluster.eventually_jobs("swap", "the replacement", |j| job_names(j) == [new.clone()]).await;
    let status =
        cluster.eventually_cronjob("swap", "the new job is active", |cj| active_names(cj) == [new.clone()]).await;
    assert_eq!(last_schedule(&status), Some(second));
    assert_eq!(cluster.eventually_event("swap", "SuccessfulDelete").await, format!("Deleted job {old}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_cronjob_starts_nothing_until_resumed() {
    let cluster = Cluster::start().await;
    let paused = cluster.cronjob("paused", json!({"suspend": true})).await;
    // A second CronJob witnesses that the controller has acted on the minute.
    let witness = cluster.cronjob("witness", json!({})).await;
    let created = paused.metadata.creation_timestamp.unwrap().0.max(witness.metadata.creation_timestamp.unwrap().0);
    let first = minute_after(created);
    cluster.set_clock(first);
    cluster.eventually_jobs("witness", "the witness's job", |j| j.len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cluster.jobs_of("paused").await.is_empty(), "a suspended CronJob starts no Job");
    assert_eq!(last_schedule(&cluster.cronjobs().get("paused").await.unwrap()), None);

    // Resumed within the minute, the missed time starts late, as kube's does.
    let resume = json!({"spec": {"suspend": false}});
    cluster.cronjobs().patch("paused", &PatchParams::default(), &Patch::Merge(&resume)).await.unwrap();
    let jobs = cluster.eventually_jobs("paused", "the job after resuming", |j| j.len() == 1).await;
    assert_eq!(job_names(&jobs)[0], format!("paused-{}", minutes_since_epoch(first)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limits_delete_the_oldest_finished_jobs() {
    let cluster = Cluster::start().await;
    let spec = json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1, "timeZone": "Asia/Kolkata"});
    let cj = cluster.cronjob("hist", spec).await;
    let mut minute = minute_after(cj.metadata.creation_timestamp.unwrap().0);
    let mut names = Vec::new();
    let mut last_done = None;
    for condition in ["Complete", "Complete", "Failed", "Failed"] {
        cluster.set_clock(minute);
        let name = format!("hist-{}", minutes_since_epoch(minute));
        let jobs = cluster.eventually_jobs("hist", "the minute's job", |j| job_names(j).contains(&name)).await;
        let job = jobs.iter().find(|j| j.metadata.name.as_deref() == Some(name.as_str())).unwrap();
        let annotation = &job.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION];
        assert!(annotation.ends_with("+05:30"), "written in the CronJob's time zone: {annotation}");
        let done = minute.checked_add(SignedDuration::from_secs(10)).unwrap();
        cluster.finish(job, condition, minute, done).await;
        if condition == "Complete" {
            last_done = Some(done);
        }
        cluster.eventually_cronjob("hist", "the job is no longer active", |cj| active_names(cj).is_empty()).await;
        names.push(name);
        minute = minute.checked_add(SignedDuration::from_mins(1)).unwrap();
    }
    // One Complete and one Failed Job are kept: the newest of each.
    let expected = vec![names[1].clone(), names[3].clone()];
    cluster.eventually_jobs("hist", "old jobs deleted", |j| job_names(j) == expected).await;
    let cj = cluster.cronjobs().get("hist").await.unwrap();
    assert_eq!(cj.status.unwrap().last_successful_time.map(|t| t.0), last_done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_time_zone_is_reported_and_nothing_is_scheduled() {
    let cluster = Cluster::start().await;
    let cj = cluster.cronjob("lost", json!({"timeZone": "Mars/Olympus_Mons"})).await;
    cluster.set_clock(minute_after(cj.metadata.creation_timestamp.unwrap().0));
    let note = cluster.eventually_event("lost", "UnknownTimeZone").await;
    assert_eq!(note, "invalid timeZone: \"Mars/Olympus_Mons\": unknown time zone Mars/Olympus_Mons");
    assert!(cluster.jobs_of("lost").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_past_the_starting_deadline_are_skipped_and_a_long_absence_is_warned_about() {
    let cluster = Cluster::start().await;
    let late = cluster.cronjob("late", json!({"startingDeadlineSeconds": 10})).await;
    let behind = cluster.cronjob("behind", json!({})).await;
    let created = late.metadata.creation_timestamp.unwrap().0.max(behind.metadata.creation_timestamp.unwrap().0);
    // 150 minutes go by unseen; the clock stops 30 s past the last of them.
    let target = minute_after(created).checked_add(SignedDuration::from_mins(150)).unwrap();
    cluster.clock.set(target.checked_add(SignedDuration::from_secs(30)).unwrap());
    let note = cluster.eventually_event("behind", "TooManyMissedTimes").await;
    assert_eq!(note, "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew");
    let jobs = cluster.eventually_jobs("behind", "the most recent time starts", |j| j.len() == 1).await;
    assert_eq!(job_names(&jobs), [format!("behind-{}", minutes_since_epoch(target))], "only the most recent");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cluster.jobs_of("late").await.is_empty(), "30 s late is past a 10 s deadline");

    let next = target.checked_add(SignedDuration::from_mins(1)).unwrap();
    cluster.set_clock(next);
    let jobs = cluster.eventually_jobs("late", "the next time, in time", |j| j.len() == 1).await;
    assert_eq!(job_names(&jobs), [format!("late-{}", minutes_since_epoch(next))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_job_deleted_by_hand_leaves_the_active_list_and_is_not_restarted() {
    let cluster = Cluster::start().await;
    let cj = cluster.cronjob("gone", json!({})).await;
    let first = minute_after(cj.metadata.creation_timestamp.unwrap().0);
    cluster.set_clock(first);
    let jobs = cluster.eventually_jobs("gone", "the job", |j| j.len() == 1).await;
    let name = job_names(&jobs)[0].clone();
    cluster.eventually_cronjob("gone", "the job is active", |cj| active_names(cj) == [name.clone()]).await;
    cluster.jobs().delete(&name, &kube::api::DeleteParams::background()).await.unwrap();
    let note = cluster.eventually_event("gone", "MissingJob").await;
    assert_eq!(note, format!("Active job went missing: {name}"));
    let status = cluster.eventually_cronjob("gone", "nothing active", |cj| active_names(cj).is_empty()).await;
    assert_eq!(last_schedule(&status), Some(first));
    assert!(cluster.jobs_of("gone").await.is_empty(), "the minute already scheduled is not scheduled again");
}
