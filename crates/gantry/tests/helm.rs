//! helm 4 on Gantry, end to end: the real helm (`GANTRY_HELM`) and the real kubectl (`GANTRY_KUBECTL`) against the
//! real `gantry up`, the chart's pods in real containers on the pod network.
//!
//! One test walks the default `helm create` chart through `install`, `list`, `status`, `upgrade`, `history`,
//! `rollback` and `uninstall`, all waiting with helm's watcher (WatchList informers and kstatus), then through
//! `helm template | kubectl apply -f -`. The chart runs the busybox test image (`busybox:local`, as
//! `gantry image import-busybox` names it) serving a page with `httpd`, so the chart's HTTP probes decide when
//! helm's wait ends. One step, because `gantry up` owns node-wide state (the pod bridge).
//!
//! helm applies every object with server-side apply, its default.
//!
//! A second test installs a chart that ships a CustomResourceDefinition in `crds/` and a custom resource in
//! `templates/`.
//!
//! Each step's time goes to stderr. Skipped, saying why, without root, busybox, the CNI plugins, `GANTRY_KUBECTL`
//! or `GANTRY_HELM` (`scripts/fetch-clients` provides both clients).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_runtime::testing::runtime::{network_skip_reason, patience};
use serde_json::Value;

const NODE: &str = "helm-node";
const POD_CIDR: &str = "10.249.12.0/24";
/// The image as `gantry image import-busybox` names it by default.
const IMAGE: &str = "busybox:local";
const RELEASE: &str = "hello";
/// The chart's name (`helm create web`), so the objects are named `hello-web`.
const CHART: &str = "web";
const FULLNAME: &str = "hello-web";

/// The real helm: `GANTRY_HELM`, or why there is none.
fn helm_path() -> Result<PathBuf, &'static str> {
    match std::env::var_os("GANTRY_HELM").filter(|p| !p.is_empty()) {
        Some(path) if Path::new(&path).is_file() => Ok(PathBuf::from(path)),
        Some(_) => Err("GANTRY_HELM does not name a file"),
        None => Err("needs GANTRY_HELM (the real helm 4; scripts/fetch-clients gets one)"),
    }
}

/// Why the tests cannot drive the real clients here, if they cannot.
fn client_skip_reason() -> Option<&'static str> {
    if std::env::var_os("GANTRY_KUBECTL").is_none_or(|k| k.is_empty()) {
        return Some("needs GANTRY_KUBECTL (the real kubectl; scripts/fetch-clients gets one)");
    }
    helm_path().err()
}

/// The values for the default chart: the local busybox image, serving `page` with httpd on the chart's port 80
/// (the shell stays process 1 and exits on SIGTERM, where httpd would wait out the grace period). The readiness
/// probe is the chart's (`httpGet /` on port `http`), only asked every second instead of every ten.
fn values(page: &str) -> String {
    let (repository, tag) = IMAGE.split_once(':').unwrap_or((IMAGE, "latest"));
    format!(
        r#"image:
  repository: {repository}
  tag: {tag}
command:
- sh
- -c
- |
  mkdir -p /www
  echo "{page}" > /www/index.html
  trap 'exit 0' TERM
  httpd -f -p 80 -h /www &
  wait
readinessProbe:
  httpGet:
    path: /
    port: http
  periodSeconds: 1
"#
    )
}

/// The default chart's container has no `command`: the smallest edit that lets a value set one.
fn add_command_to_chart(chart: &Path) {
    let path = chart.join("templates/deployment.yaml");
    let template = std::fs::read_to_string(&path).expect("the chart's deployment template");
    let anchor = "          imagePullPolicy: {{ .Values.image.pullPolicy }}\n";
    assert!(template.contains(anchor), "the default chart changed:\n{template}");
    let command = "          {{- with .Values.command }}\n          command:\n            {{- toYaml . | nindent 12 }}\n          {{- end }}\n";
    std::fs::write(&path, template.replacen(anchor, &format!("{anchor}{command}"), 1)).expect("write the template");
}

/// The steps' clock and the clients to run them with.
struct Session {
    helm: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
    steps: common::up::Steps,
}

impl Session {
    fn new(helm: PathBuf, kubeconfig: PathBuf, home: PathBuf) -> Session {
        std::fs::create_dir_all(&home).expect("home");
        Session { helm, kubeconfig, home, steps: common::up::Steps::new("helm") }
    }

    fn step(&mut self, name: &str) {
        self.steps.step(name);
    }

    /// Runs helm to its end; helm's own `--timeout` (for the commands that wait) is the patience, so the process
    /// gets a little more.
    #[track_caller]
    fn helm(&self, args: &[&str]) -> gantry_e2e::Output {
        let mut command = gantry_e2e::client_command(&self.helm, &self.home);
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        gantry_e2e::run(command, None, patience() + Duration::from_secs(30))
    }

    /// `helm <verb> ... --wait=watcher --timeout=<patience>` plus `extra`, which must succeed.
    #[track_caller]
    fn helm_waiting(&self, args: &[&str]) -> gantry_e2e::Output {
        let timeout = format!("--timeout={}s", patience().as_secs());
        let mut all = args.to_vec();
        all.extend(["--wait=watcher", &timeout]);
        let out = self.helm(&all);
        if !out.success() {
            let pods = self.kubectl(&["describe", "pods"], None);
            eprintln!("helm {} failed; the pods:\n{}{}", args[0], pods.stdout, pods.stderr);
        }
        out.ok()
    }

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

    /// The release's pods that are not being deleted.
    fn pods(&self) -> Vec<Value> {
        let selector = format!("app.kubernetes.io/instance={RELEASE}");
        let list = self.json(&["get", "pods", "-l", &selector]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items.into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect()
    }

    /// Checks, right after a helm command that waited, without polling: the Deployment has `replicas` ready
    /// replicas of its newest template, its pods run in containers, are Ready, and each answers HTTP on its pod IP
    /// with `page`. Returns the pods.
    #[track_caller]
    fn assert_serving(&self, replicas: usize, page: &str) -> Vec<Value> {
        let deployment = self.json(&["get", "deployment", FULLNAME]);
        let status = &deployment["status"];
        assert_eq!(status["observedGeneration"], deployment["metadata"]["generation"], "{status}");
        for field in ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"] {
            assert_eq!(status[field].as_u64(), Some(replicas as u64), "status.{field}: {status}");
        }
        let pods = self.pods();
        assert_eq!(pods.len(), replicas, "pods: {:#?}", names(&pods));
        for pod in &pods {
            assert!(
                common::up::is_ready(pod),
                "pod {} is not Running and Ready: {}",
                common::up::name(pod),
                pod["status"]
            );
            let container = &pod["status"]["containerStatuses"][0];
            assert!(container["containerID"].as_str().is_some_and(|id| id.starts_with("gantry://")), "{container}");
            assert_eq!(pod["spec"]["containers"][0]["image"], IMAGE);
            let ip =
                pod["status"]["podIP"].as_str().unwrap_or_else(|| panic!("pod {} has no IP", common::up::name(pod)));
            assert!(ip.starts_with("10.249.12."), "pod IP {ip} is not from {POD_CIDR}");
            let answer = common::up::http_get(&format!("{ip}:80")).unwrap_or_else(|e| panic!("GET http://{ip}/: {e}"));
            assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
            assert!(
                answer.ends_with(&format!("{page}\n")),
                "pod {} answered {answer:?}, not {page:?}",
                common::up::name(pod)
            );
        }
        pods
    }

    /// The release's revisions as `helm history` gives them: (revision, status, description).
    #[track_caller]
    fn history(&self) -> Vec<(u64, String, String)> {
        let history = self.helm(&["history", RELEASE, "-o", "json"]).ok().json();
        let entries = history.as_array().cloned().unwrap_or_default();
        entries
            .iter()
            .map(|e| {
                let text = |field: &str| e[field].as_str().unwrap_or_default().to_string();
                (e["revision"].as_u64().unwrap_or_default(), text("status"), text("description"))
            })
            .collect()
    }

    /// The release Secrets: name → (type, labels).
    #[track_caller]
    fn release_secrets(&self) -> std::collections::BTreeMap<String, (String, Value)> {
        let list = self.json(&["get", "secrets", "-l", &format!("owner=helm,name={RELEASE}")]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .map(|s| {
                (
                    common::up::name(s),
                    (s["type"].as_str().unwrap_or_default().to_string(), s["metadata"]["labels"].clone()),
                )
            })
            .collect()
    }

    /// The chart's objects in the cluster, as `kind/name` with their labels.
    fn chart_objects(&self) -> BTreeSet<(String, String)> {
        let selector = format!("app.kubernetes.io/instance={RELEASE}");
        let list = self.json(&["get", "serviceaccounts,services,deployments", "-l", &selector]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .map(|o| {
                (
                    format!("{}/{}", o["kind"].as_str().unwrap_or_default(), common::up::name(o)),
                    o["metadata"]["labels"].to_string(),
                )
            })
            .collect()
    }
}

fn names(objects: &[Value]) -> Vec<String> {
    objects.iter().map(common::up::name).collect()
}

#[test]
fn helm_installs_upgrades_rolls_back_and_uninstalls_the_default_chart_on_gantry_up() {
    if let Some(reason) = network_skip_reason().or_else(client_skip_reason) {
        eprintln!("skipped: {reason}");
        return;
    }
    let helm = helm_path().expect("checked above");
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let cleanup = common::up::NodeCleanup::new(&data_dir, POD_CIDR);
    let mut s = Session::new(helm, data_dir.join("kubeconfig"), dir.path().join("home"));

    s.step("gantry up");
    common::up::import_busybox(&data_dir, &[IMAGE]);
    let (mut up, line) = common::up::start_up(&data_dir, NODE, POD_CIDR);
    assert!(line.contains(&format!("node {NODE}")), "{line}");
    common::up::eventually("the node is Ready", || {
        let node = s.json(&["get", "node", NODE]);
        let conditions = node["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let ready = conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready { Ok(()) } else { Err(format!("{conditions:?}")) }
    });

    s.step("helm create");
    let charts = dir.path().join("charts");
    std::fs::create_dir_all(&charts).expect("charts dir");
    let chart = charts.join(CHART);
    let chart_arg = chart.to_str().expect("a UTF-8 path");
    s.helm(&["create", chart_arg]).ok();
    add_command_to_chart(&chart);
    let values_1 = dir.path().join("values-1.yaml");
    let values_2 = dir.path().join("values-2.yaml");
    std::fs::write(&values_1, values("page one")).expect("values");
    std::fs::write(&values_2, values("page two")).expect("values");
    let (values_1, values_2) = (values_1.to_str().expect("UTF-8"), values_2.to_str().expect("UTF-8"));
    s.helm(&["lint", chart_arg, "-f", values_1]).ok();

    s.step("helm install --wait");
    let installed = s.helm_waiting(&["install", RELEASE, chart_arg, "-f", values_1]);
    assert!(installed.stdout.contains("STATUS: deployed"), "{}", installed.stdout);
    let pods = s.assert_serving(1, "page one");
    let installed_objects = s.chart_objects();
    let kinds: BTreeSet<&str> = installed_objects.iter().map(|(k, _)| k.as_str()).collect();
    let expected =
        [format!("Deployment/{FULLNAME}"), format!("Service/{FULLNAME}"), format!("ServiceAccount/{FULLNAME}")];
    assert_eq!(kinds, expected.iter().map(String::as_str).collect(), "{installed_objects:?}");
    let deployment = s.json(&["get", "deployment", FULLNAME]);
    assert_eq!(deployment["metadata"]["annotations"]["meta.helm.sh/release-name"], RELEASE);
    assert_eq!(deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");

    s.step("helm list, helm status, the release Secret");
    let list = s.helm(&["list", "-o", "json"]).ok().json();
    let releases = list.as_array().cloned().unwrap_or_default();
    assert_eq!(releases.len(), 1, "{list}");
    assert_eq!(
        (&releases[0]["name"], &releases[0]["status"], &releases[0]["revision"]),
        (&RELEASE.into(), &"deployed".into(), &"1".into())
    );
    let status = s.helm(&["status", RELEASE, "-o", "json"]).ok().json();
    assert_eq!((&status["info"]["status"], &status["version"]), (&"deployed".into(), &1.into()), "{status}");
    // The human form lists the release's objects and their pods, from tables that carry the objects.
    let status = s.helm(&["status", RELEASE]).ok().stdout;
    for expected in ["STATUS: deployed", "REVISION: 1", "==> v1/Deployment", "==> v1/Pod(related)", FULLNAME] {
        assert!(status.contains(expected), "no {expected:?} in:\n{status}");
    }
    let pod_row = status.lines().find(|l| l.starts_with(&common::up::name(&pods[0]))).unwrap_or_default();
    assert!(pod_row.contains("1/1") && pod_row.contains("Running"), "{status}");
    let secrets = s.release_secrets();
    let secret = format!("sh.helm.release.v1.{RELEASE}.v1");
    let (type_, labels) = secrets.get(&secret).unwrap_or_else(|| panic!("no {secret} in {secrets:?}"));
    assert_eq!(type_, "helm.sh/release.v1");
    for (label, value) in [("owner", "helm"), ("name", RELEASE), ("status", "deployed"), ("version", "1")] {
        assert_eq!(labels[label], value, "label {label}: {labels}");
    }
    assert_eq!(secrets.len(), 1, "{secrets:?}");

    s.step("helm upgrade --wait (2 replicas, page two)");
    let args = vec!["upgrade", RELEASE, chart_arg, "-f", values_2, "--set", "replicaCount=2"];
    let upgraded = s.helm_waiting(&args);
    assert!(upgraded.stdout.contains("REVISION: 2"), "{}", upgraded.stdout);
    s.assert_serving(2, "page two");
    let history = s.history();
    let statuses: Vec<(u64, &str)> = history.iter().map(|(revision, status, _)| (*revision, status.as_str())).collect();
    assert_eq!(statuses, [(1, "superseded"), (2, "deployed")], "{history:?}");
    let secrets = s.release_secrets();
    let label =
        |revision: u32, label: &str| secrets[&format!("sh.helm.release.v1.{RELEASE}.v{revision}")].1[label].clone();
    assert_eq!((label(1, "status"), label(2, "status")), ("superseded".into(), "deployed".into()), "{secrets:?}");

    s.step("helm rollback --wait to revision 1");
    let args = vec!["rollback", RELEASE, "1"];
    let rolled_back = s.helm_waiting(&args);
    assert!(rolled_back.stdout.contains("Rollback was a success"), "{}", rolled_back.stdout);
    s.assert_serving(1, "page one");
    let history = s.history();
    let statuses: Vec<(u64, &str)> = history.iter().map(|(revision, status, _)| (*revision, status.as_str())).collect();
    assert_eq!(statuses, [(1, "superseded"), (2, "superseded"), (3, "deployed")], "{history:?}");
    assert_eq!(history[2].2, "Rollback to 1", "{history:?}");
    let values = s.helm(&["get", "values", RELEASE, "-o", "json"]).ok().json();
    assert!(values["replicaCount"].is_null(), "{values}");
    assert!(values["command"][2].as_str().is_some_and(|c| c.contains("page one")), "{values}");

    s.step("helm upgrade with a value of the wrong type fails");
    // `--set command[0]=false` makes the command's first word a boolean: refused, the Deployment stays as it was.
    let generation = s.json(&["get", "deployment", FULLNAME])["metadata"]["generation"].clone();
    let args = vec!["upgrade", RELEASE, chart_arg, "-f", values_1, "--set", "command[0]=false"];
    let refused = s.helm(&args).fails();
    assert!(refused.stderr.contains("command[0] in body must be of type string"), "{}", refused.stderr);
    assert_eq!(s.json(&["get", "deployment", FULLNAME])["metadata"]["generation"], generation);
    s.assert_serving(1, "page one");

    s.step("helm uninstall --wait");
    let uninstalled = s.helm_waiting(&["uninstall", RELEASE]);
    assert!(uninstalled.stdout.contains(&format!("release \"{RELEASE}\" uninstalled")), "{}", uninstalled.stdout);
    assert_eq!(s.chart_objects(), BTreeSet::new(), "objects left after helm uninstall --wait");
    assert_eq!(s.release_secrets().len(), 0, "release Secrets left");
    assert_eq!(s.helm(&["list", "-o", "json"]).ok().json(), serde_json::json!([]));
    common::up::eventually("the release's pods are gone", || {
        let list = s.json(&["get", "pods", "-l", &format!("app.kubernetes.io/instance={RELEASE}")]);
        let left = list["items"].as_array().map(Vec::len).unwrap_or_default();
        if left == 0 { Ok(()) } else { Err(format!("{left} pods left")) }
    });

    s.step("helm template | kubectl apply -f -");
    let manifest = s.helm(&["template", RELEASE, chart_arg, "-f", values_1, "--skip-tests"]).ok().stdout;
    let applied = s.kubectl(&["apply", "-f", "-"], Some(&manifest)).ok();
    let lines: BTreeSet<&str> = applied.stdout.lines().collect();
    let expected = [
        format!("deployment.apps/{FULLNAME} created"),
        format!("service/{FULLNAME} created"),
        format!("serviceaccount/{FULLNAME} created"),
    ];
    assert_eq!(lines, expected.iter().map(String::as_str).collect(), "{}", applied.stdout);
    assert_eq!(
        s.chart_objects(),
        installed_objects,
        "helm template | kubectl apply made other objects than helm install"
    );
    let timeout = format!("--timeout={}s", patience().as_secs());
    let rollout = s.kubectl(&["rollout", "status", &format!("deployment/{FULLNAME}"), &timeout], None).ok();
    assert!(rollout.stdout.contains("successfully rolled out"), "{}", rollout.stdout);
    s.assert_serving(1, "page one");
    s.kubectl(&["delete", "-f", "-", "--wait"], Some(&manifest)).ok();
    assert_eq!(s.chart_objects(), BTreeSet::new(), "objects left after kubectl delete");

    s.step("stop gantry up");
    gantry_e2e::signal(up.pid(), "TERM");
    let status = up.wait();
    assert!(status.success(), "gantry up did not stop cleanly: {status}");
    drop(s);
    drop(cleanup);
}

/// A chart with a CustomResourceDefinition in `crds/` (installed by helm before the templates, never upgraded or
/// deleted by it) and a custom resource in `templates/`.
fn write_crd_chart(chart: &Path) {
    std::fs::create_dir_all(chart.join("crds")).expect("crds dir");
    std::fs::create_dir_all(chart.join("templates")).expect("templates dir");
    let files = [
        ("Chart.yaml", "apiVersion: v2\nname: widgets\nversion: 0.1.0\n"),
        ("values.yaml", "size: 3\ncolour: blue\n"),
        (
            "crds/widgets.yaml",
            r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.helm.gantry.test
spec:
  group: helm.gantry.test
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    listKind: WidgetList
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
              colour:
                type: string
"#,
        ),
        (
            "templates/widget.yaml",
            r#"apiVersion: helm.gantry.test/v1
kind: Widget
metadata:
  name: {{ .Release.Name }}-widget
  labels:
    app.kubernetes.io/managed-by: {{ .Release.Service }}
spec:
  size: {{ .Values.size }}
  colour: {{ .Values.colour | quote }}
"#,
        ),
    ];
    for (path, text) in files {
        std::fs::write(chart.join(path), text).expect("chart file");
    }
}

/// No node: the chart has no pods.
#[test]
fn helm_installs_upgrades_and_uninstalls_a_chart_that_ships_a_crd_and_a_custom_resource() {
    if let Some(reason) = client_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let helm = helm_path().expect("checked above");
    let cluster = gantry_e2e::TestCluster::start();
    let mut s = Session::new(helm, cluster.kubeconfig().to_path_buf(), cluster.home().to_path_buf());
    let chart = cluster.dir().join("widgets");
    write_crd_chart(&chart);
    let chart_arg = chart.to_str().expect("a UTF-8 path");

    s.step("helm install --wait (CRD, then a Widget)");
    let installed = s.helm_waiting(&["install", "shop", chart_arg]);
    assert!(installed.stdout.contains("STATUS: deployed"), "{}", installed.stdout);
    let crd = s.json(&["get", "customresourcedefinition", "widgets.helm.gantry.test"]);
    let conditions = crd["status"]["conditions"].as_array().cloned().unwrap_or_default();
    assert!(conditions.iter().any(|c| c["type"] == "Established" && c["status"] == "True"), "{conditions:?}");
    let widget = s.json(&["get", "widgets", "shop-widget"]);
    assert_eq!((&widget["spec"]["size"], &widget["spec"]["colour"]), (&3.into(), &"blue".into()), "{widget}");
    assert_eq!(widget["metadata"]["annotations"]["meta.helm.sh/release-name"], "shop", "{widget}");
    let status = s.helm(&["status", "shop"]).ok().stdout;
    assert!(status.contains("shop-widget"), "{status}");

    s.step("helm upgrade --wait (size 5)");
    let args = vec!["upgrade", "shop", chart_arg, "--set", "size=5"];
    s.helm_waiting(&args);
    let widget = s.json(&["get", "widgets", "shop-widget"]);
    assert_eq!(widget["spec"]["size"], 5, "{widget}");
    assert_eq!(widget["metadata"]["generation"], 2, "{widget}");

    s.step("helm uninstall --wait");
    s.helm_waiting(&["uninstall", "shop"]);
    let widgets = s.json(&["get", "widgets"]);
    assert_eq!(widgets["items"], serde_json::json!([]), "{widgets}");
    // helm never deletes what it installed from crds/.
    s.kubectl(&["get", "customresourcedefinition", "widgets.helm.gantry.test"], None).ok();
}
