//! The workload controllers on `gantry up`, end to end: the real kubectl (`GANTRY_KUBECTL`) against the real
//! binary, every pod in a real container on the pod network.
//!
//! One test, because `gantry up` owns node-wide state (the pod bridge): an Indexed Job whose containers print
//! their completion index, a Job that a pod failure policy fails on a container's real exit code, a DaemonSet
//! on the node, a StatefulSet whose pods come up in order under their stable names, and the EndpointSlice of a
//! Service that follows the StatefulSet's ready pods.
//!
//! Each step's time goes to stderr. Skipped, saying why, without root, busybox, the CNI plugins or
//! `GANTRY_KUBECTL`.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use gantry_runtime::testing::runtime::{network_skip_reason, patience};
use serde_json::Value;

const NODE: &str = "workloads-node";
const POD_CIDR: &str = "10.249.13.0/24";
/// The image as `gantry image import-busybox` names it by default.
const IMAGE: &str = "busybox:local";

struct Session {
    kubeconfig: PathBuf,
    home: PathBuf,
    steps: common::up::Steps,
}

impl Session {
    #[track_caller]
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> gantry_e2e::Output {
        let command = gantry_e2e::kubectl_command(&self.kubeconfig, &self.home, args);
        gantry_e2e::run(command, stdin.map(str::as_bytes), patience() + Duration::from_secs(10))
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        self.kubectl(&all, None).ok().json()
    }

    #[track_caller]
    fn apply(&self, manifest: &str) {
        self.kubectl(&["apply", "-f", "-"], Some(manifest)).ok();
    }

    /// `kubectl wait` for `what` (`--for=...`) on `object`, which must succeed within the patience.
    #[track_caller]
    fn wait(&self, object: &str, what: &str) {
        let timeout = format!("--timeout={}s", patience().as_secs());
        let out = self.kubectl(&["wait", object, what, &timeout], None);
        if !out.success() {
            let described = self.kubectl(&["describe", object], None);
            let pods = self.kubectl(&["get", "pods", "-o", "wide"], None);
            panic!("kubectl wait {object} {what} failed: {}\n{}\n{}", out.stderr, described.stdout, pods.stdout);
        }
    }

    /// The pods with the label selector `selector` that are not being deleted.
    fn pods(&self, selector: &str) -> Vec<Value> {
        let list = self.json(&["get", "pods", "-l", selector]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items.into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect()
    }
}

fn job(name: &str, extra_spec: &str, script: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: work
        image: {IMAGE}
        command: ["sh", "-c", "{script}"]
"#
    )
}

/// A shell that stays process 1, answers HTTP on port 80 and exits on SIGTERM.
const SERVE: &str = "mkdir -p /www; hostname > /www/index.html; trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait";

#[test]
fn jobs_daemonsets_statefulsets_and_endpoint_slices_run_real_pods_on_gantry_up() {
    if let Some(reason) = network_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    if std::env::var_os("GANTRY_KUBECTL").is_none_or(|k| k.is_empty()) {
        eprintln!("skipped: needs GANTRY_KUBECTL (the real kubectl; scripts/fetch-clients gets one)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let cleanup = common::up::NodeCleanup::new(&data_dir, POD_CIDR);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut s = Session { kubeconfig: data_dir.join("kubeconfig"), home, steps: common::up::Steps::new("workloads") };

    s.steps.step("gantry up");
    common::up::import_busybox(&data_dir, &[IMAGE]);
    let (mut up, _line) = common::up::start_up(&data_dir, NODE, POD_CIDR);
    s.wait(&format!("node/{NODE}"), "--for=condition=Ready");

    s.steps.step("an Indexed Job of 3 completions, 2 at a time");
    s.apply(&job(
        "count",
        "  completions: 3\n  parallelism: 2\n  completionMode: Indexed",
        "echo index=$JOB_COMPLETION_INDEX",
    ));
    s.wait("job/count", "--for=condition=Complete");
    let count = s.json(&["get", "job", "count"]);
    assert_eq!(count["status"]["succeeded"], 3, "{}", count["status"]);
    assert_eq!(count["status"]["completedIndexes"], "0-2", "{}", count["status"]);
    let pods = s.pods("batch.kubernetes.io/job-name=count");
    let mut printed = BTreeSet::new();
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Succeeded", "{}", pod["status"]);
        let logs = s.kubectl(&["logs", &common::up::name(pod)], None).ok();
        printed.insert(logs.stdout.trim().to_string());
    }
    let expected: BTreeSet<String> = (0..3).map(|i| format!("index={i}")).collect();
    assert_eq!(printed, expected, "each index ran once and printed its own JOB_COMPLETION_INDEX");

    s.steps.step("a pod failure policy fails a Job on an exit code");
    s.apply(&job(
        "fails",
        "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        \
         operator: In\n        values: [3]",
        "exit 3",
    ));
    s.wait("job/fails", "--for=condition=Failed");
    let fails = s.json(&["get", "job", "fails"]);
    let conditions = fails["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let failed = conditions.iter().find(|c| c["type"] == "Failed").cloned().unwrap_or_default();
    assert_eq!(failed["reason"], "PodFailurePolicy", "{failed}");
    assert_eq!(fails["status"]["failed"], 1, "one failure ended it, with no retry: {}", fails["status"]);

    s.steps.step("a DaemonSet runs on the node");
    s.apply(&format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: everywhere
spec:
  selector:
    matchLabels: {{app: everywhere}}
  template:
    metadata:
      labels: {{app: everywhere}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: serve
        image: {IMAGE}
        command: ["sh", "-c", "{SERVE}"]
"#
    ));
    let timeout = format!("--timeout={}s", patience().as_secs());
    s.kubectl(&["rollout", "status", "daemonset/everywhere", &timeout], None).ok();
    let daemons = s.pods("app=everywhere");
    assert_eq!(daemons.len(), 1, "one pod on the one node");
    assert_eq!(daemons[0]["spec"]["nodeName"], NODE);
    assert!(common::up::is_ready(&daemons[0]), "{}", daemons[0]["status"]);

    s.steps.step("a StatefulSet comes up in order behind a Service");
    s.apply(&format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {{app: web}}
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: serve
        image: {IMAGE}
        command: ["sh", "-c", "{SERVE}"]
        ports:
        - name: http
          containerPort: 80
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
"#
    ));
    s.kubectl(&["rollout", "status", "statefulset/web", &timeout], None).ok();
    let web = s.pods("app=web");
    let names: BTreeSet<String> = web.iter().map(common::up::name).collect();
    assert_eq!(names, ["web-0", "web-1"].map(String::from).into(), "stable names by ordinal");
    let started = |pod: &Value| pod["status"]["startTime"].as_str().unwrap_or_default().to_string();
    let ready_at = |pod: &Value| {
        let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let ready = conditions.iter().find(|c| c["type"] == "Ready").cloned().unwrap_or_default();
        ready["lastTransitionTime"].as_str().unwrap_or_default().to_string()
    };
    let by_name = |n: &str| web.iter().find(|p| common::up::name(p) == n).cloned().unwrap_or_default();
    let (web_0, web_1) = (by_name("web-0"), by_name("web-1"));
    assert!(ready_at(&web_0) <= started(&web_1), "web-1 started before web-0 was Ready");
    for pod in [&web_0, &web_1] {
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        let answer = common::up::http_get(&format!("{ip}:80")).unwrap_or_else(|e| panic!("GET http://{ip}/: {e}"));
        assert!(answer.ends_with(&format!("{}\n", common::up::name(pod))), "the pod's hostname is its name: {answer}");
    }

    s.steps.step("the Service's EndpointSlice lists both pods, ready");
    let ips: BTreeSet<String> =
        web.iter().map(|p| p["status"]["podIP"].as_str().unwrap_or_default().to_string()).collect();
    common::up::eventually("the EndpointSlice lists the StatefulSet's pods", || {
        let slices = s.json(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web"]);
        let items = slices["items"].as_array().cloned().unwrap_or_default();
        let mut ready = BTreeSet::new();
        for slice in &items {
            assert_eq!(slice["ports"][0]["port"], 80, "the named target port resolved: {slice}");
            for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
                if endpoint["conditions"]["ready"] == true {
                    ready.extend(endpoint["addresses"].as_array().into_iter().flatten().filter_map(|a| a.as_str()));
                }
            }
        }
        let ready: BTreeSet<String> = ready.into_iter().map(String::from).collect();
        if ready == ips { Ok(()) } else { Err(format!("ready {ready:?}, pods {ips:?}")) }
    });

    s.steps.step("scale the StatefulSet down: the highest ordinal goes");
    s.kubectl(&["scale", "statefulset/web", "--replicas=1"], None).ok();
    common::up::eventually("web-1 is gone", || {
        let names: Vec<String> = s.pods("app=web").iter().map(common::up::name).collect();
        if names == ["web-0"] { Ok(()) } else { Err(format!("{names:?}")) }
    });

    s.steps.step("stop");
    up.signal("TERM");
    let status = up.wait();
    assert!(status.success(), "gantry up exited with {status}");
    drop(cleanup);
}
