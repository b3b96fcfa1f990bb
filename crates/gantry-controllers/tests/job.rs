//! The Job controller against a real Gantry API server (in-process, real SQLite file). No node agent runs:
//! the tests play the nodes by writing pod phases and container exit codes through the status subresource.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

struct Cluster {
    _server: gantry_apiserver::RunningServer,
    _dir: tempfile::TempDir,
    client: kube::Client,
    shutdown: CancellationToken,
    _tasks: JoinSet<()>,
}

impl Cluster {
    async fn start() -> Cluster {
        // Failed pods are replaced after 10 ms, 20 ms, … instead of 10 s, 20 s, …
        Cluster::with_backoff(Duration::from_millis(10)).await
    }

    async fn with_backoff(base: Duration) -> Cluster {
        let (server, dir, shutdown, client) = common::start_server().await;
        let mut tasks = JoinSet::new();
        let mut manager = common::manager_config();
        manager.job.backoff_base = base;
        gantry_controllers::start(client.clone(), manager, shutdown.clone(), &mut tasks);
        Cluster { _server: server, _dir: dir, client, shutdown, _tasks: tasks }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates a Job named `name` running one busybox container, with `spec` merged into its spec.
    async fn job(&self, name: &str, spec: Value) -> Job {
        let mut job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "main", "image": "busybox"}]}}}});
        if let Value::Object(fields) = spec {
            for (k, v) in fields {
                job["spec"][k] = v;
            }
        }
        self.jobs().create(&PostParams::default(), &serde_json::from_value(job).unwrap()).await.unwrap()
    }

    /// Every pod of the Job (by the label the server gives its template).
    async fn job_pods(&self, job: &str) -> Vec<Pod> {
        self.pods().list(&ListParams::default().labels(&format!("job-name={job}"))).await.unwrap().items
    }

    /// The Job's pods still running: not finished, not being deleted.
    async fn running_pods(&self, job: &str) -> Vec<Pod> {
        self.job_pods(job).await.into_iter().filter(is_running).collect()
    }

    async fn eventually_pods(&self, job: &str, what: &str, check: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let pods = self.running_pods(job).await;
            if check(&pods) {
                return pods;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: never happened; {} running pods", pods.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn eventually_job(&self, name: &str, what: &str, check: impl Fn(&Job) -> bool) -> Job {
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            let job = self.jobs().get(name).await.unwrap();
            if check(&job) {
                return job;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: never happened; status {:?}", job.status);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Plays the node: the pod's one container ended with `exit_code` (Succeeded when 0, else Failed), long
    /// ago (so that no backoff applies).
    async fn finish(&self, pod: &Pod, exit_code: i32) {
        self.finish_at(pod, exit_code, "2026-01-01T00:00:00Z").await;
    }

    async fn finish_at(&self, pod: &Pod, exit_code: i32, finished_at: &str) {
        let phase = if exit_code == 0 { "Succeeded" } else { "Failed" };
        let status = json!({"status": {"phase": phase, "containerStatuses": [{"name": "main", "image": "busybox",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "finishedAt": finished_at}}}]}});
        let name = pod.metadata.name.as_deref().unwrap();
        self.pods().patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    }

    async fn events_about(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let all = events.list(&ListParams::default()).await.unwrap().items;
        all.into_iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)).collect()
    }

    async fn eventually_event(&self, name: &str, reason: &str) {
        let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
        loop {
            if self.events_about(name).await.iter().any(|e| e.reason.as_deref() == Some(reason)) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "no {reason} event about {name}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn is_running(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn has_condition(job: &Job, type_: &str, status: &str) -> bool {
    condition(job, type_).is_some_and(|c| c.status == status)
}

fn reason_of(job: &Job, type_: &str) -> Option<String> {
    condition(job, type_).and_then(|c| c.reason.clone())
}

fn counts(job: &Job) -> (i32, i32, i32) {
    let s = job.status.clone().unwrap_or_default();
    (s.active.unwrap_or(0), s.succeeded.unwrap_or(0), s.failed.unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_completions_run_two_at_a_time_and_complete() {
    let cluster = Cluster::start().await;
    let job = cluster.job("batch", json!({"completions": 5, "parallelism": 2})).await;
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    let mut finished = std::collections::HashSet::new();
    loop {
        let current = cluster.jobs().get("batch").await.unwrap();
        if has_condition(&current, "Complete", "True") {
            break;
        }
        let running = cluster.running_pods("batch").await;
        assert!(running.len() <= 2, "{} pods ran at once", running.len());
        for pod in running {
            let name = pod.metadata.name.clone().unwrap();
            assert!(name.starts_with("batch-") && name.len() == "batch-".len() + 5, "pod name {name}");
            let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(owner.uid, job.metadata.uid.clone().unwrap());
            assert_eq!(
                (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
                ("Job", Some(true), Some(true))
            );
            assert!(pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER));
            if finished.insert(name) {
                cluster.finish(&pod, 0).await;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "never completed; status {:?}", current.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = cluster.jobs().get("batch").await.unwrap();
    assert_eq!(counts(&done), (0, 5, 0));
    assert!(has_condition(&done, "SuccessCriteriaMet", "True"), "conditions: {:?}", done.status);
    let status = done.status.clone().unwrap();
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let uncounted = status.uncounted_terminated_pods.unwrap_or_default();
    assert!(uncounted.succeeded.is_none_or(|u| u.is_empty()) && uncounted.failed.is_none_or(|u| u.is_empty()));
    assert_eq!(status.ready, Some(0));
    let pods = cluster.job_pods("batch").await;
    assert_eq!(pods.len(), 5, "exactly one pod per completion");
    assert!(pods.iter().all(|p| !p.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)));
    cluster.eventually_event("batch", "Completed").await;
    cluster.eventually_event("batch", "SuccessfulCreate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_gives_each_pod_its_index_and_reports_completed_indexes() {
    let cluster = Cluster::start().await;
    let spec = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
        "template": {"spec": {"restartPolicy": "Never",
            "initContainers": [{"name": "setup", "image": "busybox"}],
            "containers": [{"name": "main", "image": "busybox"}]}}});
    cluster.job("indexed", spec).await;
    let pods = cluster.eventually_pods("indexed", "3 indexed pods", |p| p.len() == 3).await;
    let mut indexes = Vec::new();
    for pod in &pods {
        let index = pod.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone();
        assert_eq!(pod.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"], index);
        assert!(pod.metadata.name.as_deref().unwrap().starts_with(&format!("indexed-{index}-")));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("indexed-{index}").as_str()));
        let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
        for container in containers {
            let env = container.env.as_ref().unwrap().iter().find(|e| e.name == "JOB_COMPLETION_INDEX").unwrap();
            let field = env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
            assert_eq!(field.field_path, "metadata.annotations['batch.kubernetes.io/job-completion-index']");
        }
        indexes.push(index);
    }
    indexes.sort();
    assert_eq!(indexes, vec!["0", "1", "2"]);
    for pod in &pods {
        cluster.finish(pod, 0).await;
    }
    let done = cluster.eventually_job("indexed", "complete", |j| has_condition(j, "Complete", "True")).await;
    assert_eq!(done.status.as_ref().unwrap().completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(counts(&done), (0, 3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_stops_at_its_backoff_limit() {
    let cluster = Cluster::start().await;
    cluster.job("crashy", json!({"backoffLimit": 2})).await;
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    let mut failed = std::collections::HashSet::new();
    loop {
        let current = cluster.jobs().get("crashy").await.unwrap();
        if has_condition(&current, "Failed", "True") {
            break;
        }
        for pod in cluster.running_pods("crashy").await {
            if failed.insert(pod.metadata.name.clone().unwrap()) {
                cluster.finish(&pod, 1).await;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "never failed; status {:?}", current.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job = cluster.jobs().get("crashy").await.unwrap();
    assert_eq!(reason_of(&job, "Failed").as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(reason_of(&job, "FailureTarget").as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(counts(&job), (0, 0, 3), "the limit of 2 is exceeded by the third failure");
    assert!(!has_condition(&job, "Complete", "True"));
    assert_eq!(cluster.job_pods("crashy").await.len(), 3, "no pod after the job failed");
    cluster.eventually_event("crashy", "BackoffLimitExceeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_failure_policy_fails_the_job_on_an_exit_code() {
    let cluster = Cluster::start().await;
    let policy = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]});
    cluster.job("strict", json!({"backoffLimit": 6, "podFailurePolicy": policy})).await;
    let pods = cluster.eventually_pods("strict", "a pod", |p| p.len() == 1).await;
    cluster.finish(&pods[0], 42).await;
    let job = cluster.eventually_job("strict", "failed", |j| has_condition(j, "Failed", "True")).await;
    assert_eq!(reason_of(&job, "Failed").as_deref(), Some("PodFailurePolicy"));
    let message = condition(&job, "Failed").unwrap().message.clone().unwrap();
    assert!(message.contains("failed with exit code 42 matching FailJob rule at index 1"), "{message}");
    assert_eq!(counts(&job), (0, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_active_deadline_fails_and_its_pods_are_deleted() {
    let cluster = Cluster::start().await;
    // The deadline may pass before this test sees the pods running: it only checks what is left afterwards.
    cluster.job("slow", json!({"parallelism": 2, "completions": 4, "activeDeadlineSeconds": 1})).await;
    let job = cluster.eventually_job("slow", "failed", |j| has_condition(j, "Failed", "True")).await;
    assert_eq!(reason_of(&job, "Failed").as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        condition(&job, "Failed").unwrap().message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
    assert_eq!(counts(&job), (0, 0, 2), "the deleted pods count as failed");
    assert!(cluster.job_pods("slow").await.is_empty(), "the unscheduled pods went with their finalizers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_runs_nothing_until_resumed() {
    let cluster = Cluster::start().await;
    cluster.job("later", json!({"suspend": true, "parallelism": 2, "completions": 2})).await;
    let job = cluster.eventually_job("later", "suspended", |j| has_condition(j, "Suspended", "True")).await;
    assert_eq!(reason_of(&job, "Suspended").as_deref(), Some("JobSuspended"));
    assert!(job.status.as_ref().unwrap().start_time.is_none());
    assert!(cluster.job_pods("later").await.is_empty());

    let resume = json!({"spec": {"suspend": false}});
    cluster.jobs().patch("later", &PatchParams::default(), &Patch::Merge(&resume)).await.unwrap();
    cluster.eventually_pods("later", "2 pods", |p| p.len() == 2).await;
    let job = cluster.eventually_job("later", "resumed", |j| has_condition(j, "Suspended", "False")).await;
    assert_eq!(reason_of(&job, "Suspended").as_deref(), Some("JobResumed"));
    assert!(job.status.as_ref().unwrap().start_time.is_some());

    let suspend = json!({"spec": {"suspend": true}});
    cluster.jobs().patch("later", &PatchParams::default(), &Patch::Merge(&suspend)).await.unwrap();
    cluster.eventually_pods("later", "no pods", |p| p.is_empty()).await;
    let job = cluster.eventually_job("later", "suspended again", |j| has_condition(j, "Suspended", "True")).await;
    assert_eq!(counts(&job), (0, 0, 0), "pods deleted by suspending are not failures");

    cluster.jobs().patch("later", &PatchParams::default(), &Patch::Merge(&resume)).await.unwrap();
    let pods = cluster.eventually_pods("later", "2 pods again", |p| p.len() == 2).await;
    for pod in &pods {
        cluster.finish(pod, 0).await;
    }
    let job = cluster.eventually_job("later", "complete", |j| has_condition(j, "Complete", "True")).await;
    assert_eq!(counts(&job), (0, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_deleted_after_its_ttl() {
    let cluster = Cluster::start().await;
    cluster.job("shortlived", json!({"ttlSecondsAfterFinished": 1})).await;
    let pods = cluster.eventually_pods("shortlived", "a pod", |p| p.len() == 1).await;
    cluster.finish(&pods[0], 0).await;
    // completionTime has whole seconds, so a TTL of 1 s may end at once: the Job can be gone before a poll
    // sees it Complete. Until it is gone, it must not be deleted unfinished.
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    while let Some(job) = cluster.jobs().get_opt("shortlived").await.unwrap() {
        let finished = has_condition(&job, "Complete", "True");
        assert!(finished || job.metadata.deletion_timestamp.is_none(), "an unfinished Job is being deleted");
        assert!(tokio::time::Instant::now() < deadline, "the finished Job was never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    while !cluster.job_pods("shortlived").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the Job's pods were never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_before_finishing_is_counted_as_failed_and_replaced() {
    let cluster = Cluster::start().await;
    cluster.job("fragile", json!({"completions": 1})).await;
    let first = cluster.eventually_pods("fragile", "a pod", |p| p.len() == 1).await.remove(0);
    let first_name = first.metadata.name.clone().unwrap();
    cluster.pods().delete(&first_name, &Default::default()).await.unwrap();
    let replacement = cluster
        .eventually_pods("fragile", "a replacement", |p| {
            p.len() == 1 && p[0].metadata.name.as_deref() != Some(first_name.as_str())
        })
        .await
        .remove(0);
    cluster.eventually_job("fragile", "the deleted pod counted", |j| counts(j).2 == 1).await;
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    while cluster.pods().get_opt(&first_name).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the deleted pod kept its finalizer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.finish(&replacement, 0).await;
    let job = cluster.eventually_job("fragile", "complete", |j| has_condition(j, "Complete", "True")).await;
    assert_eq!(counts(&job), (0, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_orphan_is_adopted_with_the_tracking_finalizer() {
    let cluster = Cluster::start().await;
    let orphan = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "labels": {"app": "adopt"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}});
    cluster.pods().create(&PostParams::default(), &serde_json::from_value(orphan).unwrap()).await.unwrap();
    let spec = json!({"manualSelector": true, "selector": {"matchLabels": {"app": "adopt"}},
        "template": {"metadata": {"labels": {"app": "adopt"}},
                     "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}});
    let job = cluster.job("adopter", spec).await;
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    let adopted = loop {
        let pod = cluster.pods().get("stray").await.unwrap();
        let owned = pod.metadata.owner_references.iter().flatten().any(|o| Some(&o.uid) == job.metadata.uid.as_ref());
        if owned && pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER) {
            break pod;
        }
        assert!(tokio::time::Instant::now() < deadline, "the orphan was never adopted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cluster.eventually_job("adopter", "the adopted pod active", |j| counts(j).0 == 1).await;
    let pods = cluster.pods().list(&ListParams::default().labels("app=adopt")).await.unwrap().items;
    assert_eq!(pods.len(), 1, "the adopted pod is the Job's one pod");
    cluster.finish(&adopted, 0).await;
    let job = cluster.eventually_job("adopter", "complete", |j| has_condition(j, "Complete", "True")).await;
    assert_eq!(counts(&job), (0, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_out_of_retries_fails_the_job_with_failed_indexes() {
    let cluster = Cluster::start().await;
    let spec = json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed", "backoffLimitPerIndex": 0});
    cluster.job("perindex", spec).await;
    let pods = cluster.eventually_pods("perindex", "2 pods", |p| p.len() == 2).await;
    let index_of =
        |p: &Pod| p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone();
    let zero = pods.iter().find(|p| index_of(p) == "0").unwrap();
    let one = pods.iter().find(|p| index_of(p) == "1").unwrap();
    cluster.finish(zero, 1).await;
    cluster
        .eventually_job("perindex", "index 0 failed", |j| {
            j.status.as_ref().and_then(|s| s.failed_indexes.as_deref()) == Some("0")
        })
        .await;
    assert_eq!(cluster.running_pods("perindex").await.len(), 1, "a failed index gets no new pod");
    cluster.finish(one, 0).await;
    let job = cluster.eventually_job("perindex", "failed", |j| has_condition(j, "Failed", "True")).await;
    assert_eq!(reason_of(&job, "Failed").as_deref(), Some("FailedIndexes"));
    let status = job.status.clone().unwrap();
    assert_eq!((status.completed_indexes.as_deref(), status.failed_indexes.as_deref()), (Some("1"), Some("0")));
    assert_eq!(counts(&job), (0, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_job_lets_its_pods_go() {
    let cluster = Cluster::start().await;
    cluster.job("doomed", json!({"parallelism": 2, "completions": 2})).await;
    cluster.eventually_pods("doomed", "2 pods", |p| p.len() == 2).await;
    let background = kube::api::DeleteParams::background();
    cluster.jobs().delete("doomed", &background).await.unwrap();
    let deadline = tokio::time::Instant::now() + gantry_store::testing::patience();
    loop {
        let left = cluster.job_pods("doomed").await;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods left: {:?}",
            left.iter().map(|p| &p.metadata).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pod_is_replaced_only_after_the_backoff() {
    let cluster = Cluster::with_backoff(Duration::from_secs(4)).await;
    cluster.job("patient", json!({"backoffLimit": 3})).await;
    let pods = cluster.eventually_pods("patient", "a pod", |p| p.len() == 1).await;
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    cluster.finish_at(&pods[0], 1, &now).await;
    cluster.eventually_job("patient", "the failure counted", |j| counts(j).2 == 1).await;
    // The second-precision finish time leaves at least three of the four seconds to wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cluster.running_pods("patient").await.is_empty(), "replaced before the backoff");
    cluster.eventually_pods("patient", "a replacement after the backoff", |p| p.len() == 1).await;
}
