//! The user journey end to end: the real kubectl against the real `gantry up`, its pods in real containers on the
//! pod network. One test, in steps, because `gantry up` owns node-wide state (the `gantry0` bridge): apply a
//! Deployment, wait for its rollout, reach its pods over HTTP, scale it, lose a pod, change its image and roll
//! back, read logs, exec, port-forward, delete it, and delete a namespace with everything in it.
//!
//! Every step is checked on what kubectl prints or what the API or the runtime says, polling with a deadline
//! (`GANTRY_TEST_PATIENCE_SECS`); each step's time goes to stderr. Skipped, saying why, without root, busybox,
//! the CNI plugins or `GANTRY_KUBECTL`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gantry_runtime::RuntimeService;
use gantry_runtime::cri::ContainerState;
use gantry_runtime::testing::runtime::{BUSYBOX_IMAGE, network_skip_reason, patience};
use serde_json::Value;

/// The same image as [`BUSYBOX_IMAGE`] under another tag, for `kubectl set image`.
const BUSYBOX_IMAGE_2: &str = "test.gantry.local/busybox:2";
const NODE: &str = "journey-node";
const POD_CIDR: &str = "10.249.8.0/24";

/// The Deployment: httpd serving a page that names its pod, which it also prints. The shell stays process 1 and
/// exits on SIGTERM (httpd as process 1 would ignore it and wait out the grace period).
fn web_manifest(namespace: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {namespace}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: {BUSYBOX_IMAGE}
        env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        command:
        - sh
        - -c
        - |
          mkdir -p /www
          echo "hello from $POD_NAME" > /www/index.html
          echo "serving $POD_NAME on 8080"
          trap 'exit 0' TERM
          httpd -f -v -p 8080 -h /www &
          wait
        readinessProbe:
          tcpSocket:
            port: 8080
          periodSeconds: 1
"#
    )
}

/// The steps' clock and the kubectl to run them with.
struct Journey {
    kubeconfig: PathBuf,
    home: PathBuf,
    steps: common::up::Steps,
}

impl Journey {
    fn step(&mut self, name: &str) {
        self.steps.step(name);
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        gantry_e2e::kubectl_command(&self.kubeconfig, &self.home, args)
    }

    /// Runs kubectl to its end (within the patience, or `timeout` for the commands that wait themselves).
    #[track_caller]
    fn run(&self, args: &[&str], stdin: Option<&str>, timeout: Duration) -> gantry_e2e::Output {
        gantry_e2e::run(self.command(args), stdin.map(str::as_bytes), timeout)
    }

    #[track_caller]
    fn kubectl(&self, args: &[&str]) -> gantry_e2e::Output {
        self.run(args, None, patience())
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        self.kubectl(&all).ok().json()
    }

    /// `kubectl rollout status` for the Deployment, which must succeed.
    #[track_caller]
    fn rollout_status(&self, namespace: &str) -> String {
        let timeout = format!("--timeout={}s", patience().as_secs());
        let out = self.run(
            &["rollout", "status", "deployment/web", "-n", namespace, &timeout],
            None,
            patience() + Duration::from_secs(5),
        );
        if !out.success() {
            let pods = self.kubectl(&["describe", "pods", "-n", namespace]);
            eprintln!("rollout status failed; the pods:\n{}{}", pods.stdout, pods.stderr);
        }
        let out = out.ok();
        assert!(out.stdout.contains("deployment \"web\" successfully rolled out"), "{}", out.stdout);
        out.stdout
    }

    /// The Deployment's pods that are not being deleted.
    fn pods(&self, namespace: &str) -> Vec<Value> {
        let list = self.json(&["get", "pods", "-n", namespace, "-l", "app=web"]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items.into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect()
    }

    /// Waits until the Deployment has `replicas` pods, all ready, all from its newest template, and says so in its
    /// status; returns the pods.
    #[track_caller]
    fn wait_for_ready(&self, replicas: usize) -> Vec<Value> {
        common::up::eventually(&format!("{replicas} ready replicas"), || {
            let deployment = self.json(&["get", "deployment", "web"]);
            let status = &deployment["status"];
            let counts = ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"]
                .map(|field| status[field].as_u64().unwrap_or(0) as usize);
            let observed = status["observedGeneration"] == deployment["metadata"]["generation"];
            let pods = self.pods("default");
            let ready = pods.iter().filter(|p| common::up::is_ready(p)).count();
            if observed && counts.iter().all(|&c| c == replicas) && pods.len() == replicas && ready == replicas {
                Ok(pods)
            } else {
                Err(format!("status {status}; {} pods, {ready} ready", pods.len()))
            }
        })
    }
}

fn names(objects: &[Value]) -> BTreeSet<String> {
    objects.iter().map(common::up::name).collect()
}

/// Watches the Deployment's pods (with `kubectl get -w`) during a rolling update and keeps the extremes: the most
/// pods there were at once (not counting those being deleted) and, once all `replicas` were ready, the fewest
/// ready ones. The rolling update promises at most `replicas + maxSurge` pods and at least
/// `replicas - maxUnavailable` ready ones at any time.
struct RolloutWatch {
    kubectl: std::process::Child,
    tally: Option<std::thread::JoinHandle<Tally>>,
    /// How many pods it has seen so far.
    seen: Arc<std::sync::atomic::AtomicUsize>,
}

/// What a [`RolloutWatch`] saw.
struct Tally {
    /// The most pods at once, not counting those being deleted.
    most: usize,
    /// The fewest ready pods at once, once all were ready.
    fewest_ready: usize,
    /// How many pods it saw in all.
    seen: usize,
    /// Each change and the counts after it.
    timeline: Vec<String>,
}

impl RolloutWatch {
    fn start(journey: &Journey, replicas: usize) -> RolloutWatch {
        // No request timeout (the last flag wins): the watch lasts as long as the rollout.
        let mut command = journey.command(&["get", "pods", "-l", "app=web", "-w", "-o", "json", "--request-timeout=0"]);
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
        let mut kubectl = command.spawn().expect("kubectl get -w");
        let stdout = kubectl.stdout.take().expect("stdout");
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        let tally = std::thread::spawn(move || {
            let mut pods = std::collections::BTreeMap::new();
            let (mut most, mut fewest_ready, mut started) = (0, usize::MAX, false);
            let mut timeline = Vec::new();
            for pod in serde_json::Deserializer::from_reader(stdout).into_iter::<Value>() {
                let Ok(pod) = pod else { break };
                let what = format!(
                    "{} ready={} deleting={}",
                    common::up::name(&pod),
                    common::up::is_ready(&pod),
                    !pod["metadata"]["deletionTimestamp"].is_null()
                );
                pods.insert(common::up::name(&pod), pod);
                counter.store(pods.len(), std::sync::atomic::Ordering::SeqCst);
                let live: Vec<&Value> =
                    pods.values().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
                let ready = live.iter().filter(|p| common::up::is_ready(p)).count();
                timeline.push(format!("{what}: {} live, {ready} ready", live.len()));
                started |= ready >= replicas;
                most = most.max(live.len());
                if started {
                    fewest_ready = fewest_ready.min(ready);
                }
            }
            Tally { most, fewest_ready, seen: pods.len(), timeline }
        });
        let watch = RolloutWatch { kubectl, tally: Some(tally), seen };
        // The rollout starts once the watch has listed the pods there are, so that it sees all of it.
        common::up::eventually("the watch listed the pods", || {
            let seen = watch.seen.load(std::sync::atomic::Ordering::SeqCst);
            if seen >= replicas { Ok(()) } else { Err(format!("{seen} pods")) }
        });
        watch
    }

    /// Stops watching and checks that the rollout replaced every pod within the surge and the unavailability
    /// the Deployment allows: 25% of 5, a surge of 2 (rounded up) and 1 unavailable (rounded down).
    #[track_caller]
    fn check(self, journey: &Journey) {
        let Tally { most, fewest_ready, seen, timeline } = self.finish();
        let events = journey
            .kubectl(&[
                "get",
                "events",
                "--sort-by=.metadata.creationTimestamp",
                "-o",
                "custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message",
            ])
            .stdout;
        let timeline = format!("{}\n{events}", timeline.join("\n"));
        assert!(seen >= 10, "the watch saw {seen} pods, not the old and the new ones:\n{timeline}");
        assert!(most <= 7, "{most} pods at once, beyond maxSurge:\n{timeline}");
        assert!(fewest_ready >= 4, "only {fewest_ready} pods ready at a time, beyond maxUnavailable:\n{timeline}");
    }

    /// Stops watching, with what it saw.
    fn finish(mut self) -> Tally {
        let _ = self.kubectl.kill();
        let _ = self.kubectl.wait();
        self.tally.take().expect("not finished yet").join().expect("watch")
    }
}

impl Drop for RolloutWatch {
    fn drop(&mut self) {
        let _ = self.kubectl.kill();
        let _ = self.kubectl.wait();
    }
}

/// The runtime's view of the node, read from `gantry up`'s data directory (read only: listing and status).
fn runtime(data_dir: &Path) -> gantry_runtime::native::NativeRuntime {
    let shim = gantry_runtime::native::ShimCommand {
        program: PathBuf::from(env!("CARGO_BIN_EXE_gantry")),
        args: vec!["shim".into()],
    };
    let mut config = gantry_runtime::native::NativeConfig::new(data_dir.join("run"), shim);
    config.cgroup_root = "gantry".into();
    let images = Arc::new(gantry_runtime::image::ImageStore::open(data_dir.join("images")).expect("image store"));
    gantry_runtime::native::NativeRuntime::new(config, images, None).expect("runtime")
}

/// Checks that every pod's container runs in the runtime, from `image` as the pod's spec and status say.
#[track_caller]
fn assert_running_in_runtime(runtime: &gantry_runtime::native::NativeRuntime, pods: &[Value], image: &str) {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    for pod in pods {
        let status = &pod["status"]["containerStatuses"][0];
        let id = status["containerID"].as_str().and_then(|id| id.strip_prefix("gantry://"));
        let id = id.unwrap_or_else(|| panic!("pod {} has no container ID: {status}", common::up::name(pod)));
        let container = tokio.block_on(runtime.container_status(id)).expect("container status");
        assert_eq!(container.state, ContainerState::Running, "pod {}: {container:?}", common::up::name(pod));
        assert_eq!(container.labels.get("io.kubernetes.pod.name"), Some(&common::up::name(pod)), "{container:?}");
        // Both tags name one image: the runtime runs it by ID, the pod's status names the tag it asked for.
        assert_eq!(status["imageID"], container.image_ref.as_str(), "pod {}", common::up::name(pod));
        assert_eq!(status["image"], image, "pod {}", common::up::name(pod));
        assert_eq!(pod["spec"]["containers"][0]["image"], image, "pod {}", common::up::name(pod));
        let pid =
            container.pid.unwrap_or_else(|| panic!("pod {}: a running container without a pid", common::up::name(pod)));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).starts_with("sh\0-c\0"),
            "pod {}: {cmdline:?}",
            common::up::name(pod)
        );
    }
}

#[test]
fn a_user_deploys_scales_updates_rolls_back_inspects_and_deletes_an_app_with_kubectl_on_gantry_up() {
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
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let cleanup = common::up::NodeCleanup::new(&data_dir, POD_CIDR);
    let mut journey =
        Journey { kubeconfig: data_dir.join("kubeconfig"), home, steps: common::up::Steps::new("journey") };

    journey.step("gantry up");
    common::up::import_busybox(&data_dir, &[BUSYBOX_IMAGE, BUSYBOX_IMAGE_2]);
    let (mut up, line) = common::up::start_up(&data_dir, NODE, POD_CIDR);
    assert!(line.contains(&format!("node {NODE}")), "{line}");
    common::up::eventually("the node is Ready", || {
        let node = journey.json(&["get", "node", NODE]);
        let conditions = node["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let ready = conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready { Ok(()) } else { Err(format!("{conditions:?}")) }
    });

    journey.step("apply a Deployment from stdin");
    let applied = journey.run(&["apply", "-f", "-"], Some(&web_manifest("default", 2)), patience()).ok();
    assert_eq!(applied.stdout.trim(), "deployment.apps/web created");

    journey.step("rollout status");
    journey.rollout_status("default");
    let pods = journey.wait_for_ready(2);

    let deployment = journey.json(&["get", "deployment", "web"]);
    let conditions = deployment["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let condition = |type_: &str| conditions.iter().find(|c| c["type"] == type_).cloned().unwrap_or_default();
    assert_eq!(condition("Available")["status"], "True", "{conditions:?}");
    assert_eq!(condition("Progressing")["reason"], "NewReplicaSetAvailable", "{conditions:?}");
    assert_eq!(deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    let table = journey.kubectl(&["get", "deployment", "web"]).ok();
    let row: Vec<&str> = table.stdout.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row.get(..4), Some(&["web", "2/2", "2", "2"][..]), "{}", table.stdout);

    journey.step("pods Running in real containers");
    let wide = journey.kubectl(&["get", "pods", "-l", "app=web", "-o", "wide"]).ok();
    let rows: Vec<Vec<&str>> = wide.stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{}", wide.stdout);
    for row in &rows {
        // NAME READY STATUS RESTARTS AGE IP NODE ...
        assert_eq!(row.get(1..3), Some(&["1/1", "Running"][..]), "{}", wide.stdout);
        assert!(row.contains(&NODE), "{}", wide.stdout);
        let ip: std::net::Ipv4Addr = row[5].parse().unwrap_or_else(|_| panic!("no pod IP: {}", wide.stdout));
        assert!(ip.to_string().starts_with("10.249.8."), "{ip} is not from {POD_CIDR}");
    }
    let first_rs = journey.json(&["get", "replicasets", "-l", "app=web"]);
    let rs = &first_rs["items"][0];
    for pod in &pods {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["kind"], &owner["name"], &owner["controller"]),
            (&"ReplicaSet".into(), &rs["metadata"]["name"], &true.into())
        );
    }
    assert_eq!(rs["metadata"]["ownerReferences"][0]["uid"], deployment["metadata"]["uid"]);
    let node_runtime = runtime(&data_dir);
    assert_running_in_runtime(&node_runtime, &pods, BUSYBOX_IMAGE);

    journey.step("HTTP to each pod IP from the host");
    for pod in &pods {
        let ip = pod["status"]["podIP"].as_str().expect("pod IP");
        let answer =
            common::up::http_get(&format!("{ip}:8080")).unwrap_or_else(|e| panic!("GET http://{ip}:8080/: {e}"));
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with(&format!("hello from {}\n", common::up::name(pod))), "{answer}");
    }

    journey.step("scale to 3, then 5");
    let scaled = journey.kubectl(&["scale", "deployment/web", "--replicas=3"]).ok();
    assert_eq!(scaled.stdout.trim(), "deployment.apps/web scaled");
    let three = journey.wait_for_ready(3);
    assert!(names(&pods).is_subset(&names(&three)), "scaling up keeps the pods there were");
    journey.kubectl(&["scale", "deployment/web", "--replicas=5"]).ok();
    let five = journey.wait_for_ready(5);

    journey.step("delete a pod: a replacement appears");
    let victim = common::up::name(&five[0]);
    let deleted = journey.kubectl(&["delete", "pod", &victim]).ok();
    assert_eq!(deleted.stdout.trim(), format!("pod \"{victim}\" deleted from default namespace"));
    let replaced = journey.wait_for_ready(5);
    assert!(!names(&replaced).contains(&victim), "{victim} is still there");
    assert_eq!(names(&replaced).intersection(&names(&five)).count(), 4, "only the deleted pod was replaced");

    journey.step("set image rolls out a new ReplicaSet");
    let first_rs = journey.json(&["get", "replicasets", "-l", "app=web"]);
    assert_eq!(first_rs["items"].as_array().map(Vec::len), Some(1), "{first_rs}");
    let image = format!("web={BUSYBOX_IMAGE_2}");
    let watch = RolloutWatch::start(&journey, 5);
    let set = journey.kubectl(&["set", "image", "deployment/web", &image]).ok();
    assert_eq!(set.stdout.trim(), "deployment.apps/web image updated");
    journey.rollout_status("default");
    let updated = journey.wait_for_ready(5);
    watch.check(&journey);
    assert_running_in_runtime(&node_runtime, &updated, BUSYBOX_IMAGE_2);
    assert!(names(&updated).is_disjoint(&names(&replaced)), "every pod was replaced");
    let sets = journey.json(&["get", "replicasets", "-l", "app=web"]);
    let sets = sets["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(sets.len(), 2, "the old ReplicaSet stays, scaled down: {sets:?}");
    for rs in &sets {
        let image = &rs["spec"]["template"]["spec"]["containers"][0]["image"];
        let want = if image == BUSYBOX_IMAGE_2 { 5 } else { 0 };
        assert_eq!(rs["spec"]["replicas"], want, "{}: {image}", common::up::name(rs));
    }

    journey.step("rollout undo goes back");
    let watch = RolloutWatch::start(&journey, 5);
    let undone = journey.kubectl(&["rollout", "undo", "deployment/web"]).ok();
    assert_eq!(undone.stdout.trim(), "deployment.apps/web rolled back");
    let template = journey.json(&["get", "deployment", "web"]);
    assert_eq!(template["spec"]["template"]["spec"]["containers"][0]["image"], BUSYBOX_IMAGE);
    journey.rollout_status("default");
    let back = journey.wait_for_ready(5);
    watch.check(&journey);
    assert_running_in_runtime(&node_runtime, &back, BUSYBOX_IMAGE);
    let history = journey.kubectl(&["rollout", "history", "deployment/web"]).ok();
    // The first template came back as revision 3; revision 2 is the other image.
    let revisions: Vec<&str> = history
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|r| r.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{}", history.stdout);
    let revision_2 = journey.kubectl(&["rollout", "history", "deployment/web", "--revision=2"]).ok();
    assert!(revision_2.stdout.contains(&format!("Image:\t{BUSYBOX_IMAGE_2}")), "{}", revision_2.stdout);
    let sets = journey.json(&["get", "replicasets", "-l", "app=web"]);
    let sets = sets["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(sets.len(), 2, "undo reuses the first ReplicaSet: {sets:?}");
    let reused = sets
        .iter()
        .find(|rs| common::up::name(rs) == common::up::name(&first_rs["items"][0]))
        .expect("the first ReplicaSet");
    assert_eq!(reused["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    assert_eq!(reused["spec"]["replicas"], 5);
    let deployment = journey.json(&["get", "deployment", "web"]);
    assert_eq!(deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");

    journey.step("logs, exec, port-forward");
    let pod = common::up::name(&back[0]);
    let logs = journey.kubectl(&["logs", &pod]).ok();
    assert!(logs.stdout.contains(&format!("serving {pod} on 8080\n")), "{}", logs.stdout);
    let of_deployment = journey.kubectl(&["logs", "deploy/web"]).ok();
    let served = of_deployment.stdout.lines().find(|l| l.starts_with("serving web-")).unwrap_or_default();
    assert!(
        back.iter().any(|p| served == format!("serving {} on 8080", common::up::name(p))),
        "{}",
        of_deployment.stdout
    );
    let exec = journey.kubectl(&["exec", &pod, "--", "cat", "/www/index.html"]).ok();
    assert_eq!(exec.stdout, format!("hello from {pod}\n"));
    let local = common::up::free_port();
    let mut forward = gantry_e2e::Background::spawn(journey.command(&[
        "port-forward",
        &format!("pod/{pod}"),
        &format!("{local}:8080"),
    ]));
    forward.wait_for_line(|l| l.starts_with(&format!("Forwarding from 127.0.0.1:{local}")));
    let answer =
        common::up::http_get(&format!("127.0.0.1:{local}")).unwrap_or_else(|e| panic!("GET through port-forward: {e}"));
    assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with(&format!("hello from {pod}\n")), "{answer}");
    drop(forward);
    // httpd logs each answer (-v, "PEER: response:200"): the forwarded request's is in the pod's log.
    common::up::eventually("httpd logged the request", || {
        let logs = journey.kubectl(&["logs", &pod]).ok();
        if logs.stdout.lines().any(|l| l.ends_with(": response:200")) { Ok(()) } else { Err(logs.stdout) }
    });

    journey.step("delete the Deployment: ReplicaSets and pods go");
    let deleted = journey.kubectl(&["delete", "deployment", "web"]).ok();
    assert_eq!(deleted.stdout.trim(), "deployment.apps \"web\" deleted from default namespace");
    common::up::eventually("the ReplicaSets and pods are gone", || {
        let left = journey.kubectl(&["get", "replicasets,pods", "-l", "app=web", "-o", "name"]).ok();
        if left.stdout.is_empty() { Ok(()) } else { Err(left.stdout) }
    });
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let running = tokio.block_on(node_runtime.list_containers(&Default::default())).expect("containers");
    let running: Vec<_> = running.iter().filter(|c| c.state == ContainerState::Running).collect();
    assert!(running.is_empty(), "the deleted pods' containers still run: {running:?}");

    journey.step("--cascade=orphan, adopted again");
    journey.run(&["apply", "-f", "-"], Some(&web_manifest("default", 1)), patience()).ok();
    journey.rollout_status("default");
    let before = journey.pods("default");
    let rs_before = journey.json(&["get", "replicasets", "-l", "app=web"]);
    journey.kubectl(&["delete", "deployment", "web", "--cascade=orphan"]).ok();
    // The orphans lose their owner reference to the Deployment and keep running.
    let orphan = common::up::eventually("the ReplicaSet is orphaned", || {
        let sets = journey.json(&["get", "replicasets", "-l", "app=web"]);
        match sets["items"].as_array().map(Vec::as_slice) {
            Some([rs]) if rs["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty) => Ok(rs.clone()),
            _ => Err(sets.to_string()),
        }
    });
    assert_eq!(orphan["metadata"]["uid"], rs_before["items"][0]["metadata"]["uid"]);
    assert_eq!(names(&journey.pods("default")), names(&before), "the orphaned pods stay");
    journey.run(&["apply", "-f", "-"], Some(&web_manifest("default", 1)), patience()).ok();
    journey.rollout_status("default");
    let deployment = journey.json(&["get", "deployment", "web"]);
    let adopted = journey.json(&["get", "replicaset", &common::up::name(&orphan)]);
    assert_eq!(adopted["metadata"]["ownerReferences"][0]["uid"], deployment["metadata"]["uid"], "adopted again");
    assert_eq!(names(&journey.pods("default")), names(&before), "adoption keeps the pods");

    journey.step("delete with --cascade=foreground");
    let timeout = format!("--timeout={}s", patience().as_secs());
    journey
        .run(
            &["delete", "deployment", "web", "--cascade=foreground", &timeout],
            None,
            patience() + Duration::from_secs(5),
        )
        .ok();
    // The Deployment goes only once its dependents have: nothing to wait for.
    let left = journey.kubectl(&["get", "deployments,replicasets,pods", "-l", "app=web", "-o", "name"]).ok();
    assert_eq!(left.stdout, "", "foreground deletion removes the dependents first");
    let gone = journey.kubectl(&["get", "deployment", "web"]).fails();
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);

    journey.step("delete a namespace with a Deployment in it");
    let created = journey.kubectl(&["create", "namespace", "journey"]).ok();
    assert_eq!(created.stdout.trim(), "namespace/journey created");
    journey.run(&["apply", "-f", "-"], Some(&web_manifest("journey", 1)), patience()).ok();
    journey.kubectl(&["create", "configmap", "settings", "-n", "journey", "--from-literal=a=b"]).ok();
    journey.rollout_status("journey");
    assert_eq!(journey.pods("journey").len(), 1);
    let deleted = journey.run(&["delete", "namespace", "journey"], None, patience() + Duration::from_secs(5)).ok();
    assert_eq!(deleted.stdout.trim(), "namespace \"journey\" deleted");
    // kubectl waits for the namespace to be gone: it is, and so is everything in it.
    let gone = journey.kubectl(&["get", "namespace", "journey"]).fails();
    assert!(gone.stderr.contains("namespaces \"journey\" not found"), "{}", gone.stderr);
    let left = journey.kubectl(&["get", "all,configmaps", "-n", "journey", "-o", "name"]).ok();
    assert_eq!(left.stdout, "", "the namespace's objects go with it");
    let running = tokio.block_on(node_runtime.list_containers(&Default::default())).expect("containers");
    assert!(running.iter().all(|c| c.state != ContainerState::Running), "{running:?}");

    journey.step("gantry up stops on SIGTERM");
    up.signal("TERM");
    assert!(up.wait().success(), "gantry up did not stop cleanly: {}", up.stderr());
    journey.step("");
    drop(up);
    drop(cleanup);
}
