//! `gantry ctl` (the real binary) against a real API server and a real node agent running busybox pods: the
//! tables of `get` (compared with the real kubectl's when `GANTRY_KUBECTL` is set), `describe`, client-side
//! `apply` (created, configured, unchanged, and a removed field removed), `delete` waiting until the object is
//! gone, `logs`, `exec` with its exit code, and `rollout status` of a Deployment run by the controllers.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, busybox_pod, phase};
use gantry_runtime::testing::runtime::{BUSYBOX_IMAGE, patience};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use tokio_util::sync::CancellationToken;

/// Runs `gantry ctl --kubeconfig K ARGS...` to its end, off the async workers (the agent needs them).
async fn ctl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> gantry_e2e::Output {
    let home = cluster._server_dir.path().join("home");
    let _ = std::fs::create_dir_all(&home);
    let mut command = gantry_e2e::client_command(env!("CARGO_BIN_EXE_gantry"), &home);
    command.arg("ctl").arg("--kubeconfig").arg(cluster.kubeconfig()).args(args);
    let stdin = stdin.map(|s| s.as_bytes().to_vec());
    tokio::task::spawn_blocking(move || gantry_e2e::run(command, stdin.as_deref(), patience() * 2))
        .await
        .expect("gantry ctl")
}

/// The real kubectl is compared with only when the environment names one.
fn kubectl_given() -> bool {
    std::env::var_os("GANTRY_KUBECTL").is_some_and(|p| !p.is_empty())
}

/// A table's cells, line by line (cells are separated by at least two spaces), without the AGE column, whose
/// values may differ by a second between two runs.
fn cells_without_age(table: &str) -> Vec<Vec<String>> {
    // Several types print one table each, separated by a blank line, each with its own header and AGE column.
    let mut age = None;
    let mut header_next = true;
    table
        .lines()
        .map(|line| {
            let mut row: Vec<String> =
                line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect();
            if row.is_empty() {
                header_next = true;
                return row;
            }
            if header_next {
                age = row.iter().position(|c| c == "AGE");
                header_next = false;
            }
            if let Some(i) = age
                && i < row.len()
            {
                row.remove(i);
            }
            row
        })
        .collect()
}

/// The field names of a description, in order (the text before each line's first colon).
fn field_names(description: &str) -> Vec<&str> {
    description.lines().filter_map(|l| l.split_once(':').map(|(name, _)| name)).filter(|n| !n.contains("  ")).collect()
}

fn before_events(description: &str) -> &str {
    description.split("\nEvents:").next().unwrap_or_default()
}

fn header(table: &str) -> &str {
    table.lines().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_get_prints_kubectls_tables_and_errors() {
    let Some(cluster) = Cluster::start("node-ctl-get", None).await else { return };
    cluster.create(busybox_pod("sleeper", "sleep 1000", serde_json::json!({}))).await;
    cluster.wait_for("sleeper", "Running", |p| phase(p) == "Running").await;

    let pods = ctl(&cluster, &["get", "pods"], None).await.ok();
    assert_eq!(header(&pods.stdout), "NAME      READY   STATUS    RESTARTS   AGE", "{}", pods.stdout);
    assert!(
        pods.stdout.lines().nth(1).is_some_and(|l| l.starts_with("sleeper   1/1     Running   0 ")),
        "{}",
        pods.stdout
    );
    let wide = ctl(&cluster, &["get", "po", "-o", "wide"], None).await.ok();
    assert!(header(&wide.stdout).contains("IP") && header(&wide.stdout).contains("NOMINATED NODE"), "{}", wide.stdout);
    assert!(wide.stdout.contains("node-ctl-get"), "{}", wide.stdout);
    let nodes = ctl(&cluster, &["get", "nodes"], None).await.ok();
    assert!(header(&nodes.stdout).starts_with("NAME "), "{}", nodes.stdout);
    assert!(nodes.stdout.contains("node-ctl-get") && nodes.stdout.contains("Ready"), "{}", nodes.stdout);

    if kubectl_given() {
        for args in [&["get", "pods"][..], &["get", "pods", "-o", "wide"], &["get", "nodes"], &["get", "pods,nodes"]] {
            let ours = ctl(&cluster, args, None).await.ok();
            let theirs = cluster.kubectl(args, None).await.ok();
            assert_eq!(header(&ours.stdout), header(&theirs.stdout), "{args:?}");
            assert_eq!(cells_without_age(&ours.stdout), cells_without_age(&theirs.stdout), "{args:?}");
        }
    }

    // Several types: one table each, names prefixed with the type.
    let both = ctl(&cluster, &["get", "pods,nodes"], None).await.ok();
    assert!(both.stdout.contains("pod/sleeper") && both.stdout.contains("node/node-ctl-get"), "{}", both.stdout);
    let named = ctl(&cluster, &["get", "pod/sleeper", "-o", "name"], None).await.ok();
    assert_eq!(named.stdout, "pod/sleeper\n");
    let json = ctl(&cluster, &["get", "pods", "sleeper", "-o", "json"], None).await.ok().json();
    assert_eq!(json["kind"], "Pod");
    assert_eq!(json["metadata"]["name"], "sleeper");
    let yaml = ctl(&cluster, &["get", "pods", "-l", "nothing=here", "-o", "yaml"], None).await.ok();
    assert!(yaml.stdout.contains("kind: List"), "{}", yaml.stdout);

    let missing = ctl(&cluster, &["get", "pods", "nope"], None).await.fails();
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(missing.stderr, "Error from server (NotFound): pods \"nope\" not found\n");
    let empty = ctl(&cluster, &["-n", "kube-public", "get", "pods"], None).await.ok();
    assert_eq!(empty.stdout, "");
    assert_eq!(empty.stderr, "No resources found in kube-public namespace.\n");
    let unknown = ctl(&cluster, &["get", "widgets"], None).await.fails();
    assert_eq!(unknown.stderr, "error: the server doesn't have a resource type \"widgets\"\n");
    let everywhere = ctl(&cluster, &["get", "pods", "-A"], None).await.ok();
    assert!(header(&everywhere.stdout).starts_with("NAMESPACE   NAME "), "{}", everywhere.stdout);

    let described = ctl(&cluster, &["describe", "pod", "sleeper"], None).await.ok();
    for wanted in [
        "Name:",
        "Namespace:",
        "node-ctl-get/",
        "Containers:",
        "  main:",
        "Restart Count:  0",
        "Conditions:",
        "Events:",
    ] {
        assert!(described.stdout.contains(wanted), "{wanted:?} missing from:\n{}", described.stdout);
    }
    if kubectl_given() {
        // Everything above the events, whose ages may differ by a second.
        let theirs = cluster.kubectl(&["describe", "pod", "sleeper"], None).await.ok();
        assert_eq!(before_events(&described.stdout), before_events(&theirs.stdout));
    }
    let node = ctl(&cluster, &["describe", "no/node-ctl-get"], None).await.ok();
    if kubectl_given() {
        // Section and field names in the same order (heartbeat times and ages move between the two runs).
        let theirs = cluster.kubectl(&["describe", "no/node-ctl-get"], None).await.ok();
        assert_eq!(
            field_names(&node.stdout),
            field_names(&theirs.stdout),
            "ours:\n{}\ntheirs:\n{}",
            node.stdout,
            theirs.stdout
        );
        // The same YAML, byte for byte (tried twice: the agent may update the object between the two reads).
        let mut same = false;
        for _ in 0..2 {
            let ours = ctl(&cluster, &["get", "pod", "sleeper", "-o", "yaml"], None).await.ok();
            let theirs = cluster.kubectl(&["get", "pod", "sleeper", "-o", "yaml"], None).await.ok();
            same = ours.stdout == theirs.stdout;
            if same {
                break;
            }
            eprintln!("YAML differs:\n{}\n---\n{}", ours.stdout, theirs.stdout);
        }
        assert!(same, "gantry ctl and kubectl print the pod's YAML alike");
    }
    for wanted in ["Name:", "Conditions:", "Addresses:", "Capacity:", "Non-terminated Pods:", "sleeper"] {
        assert!(node.stdout.contains(wanted), "{wanted:?} missing from:\n{}", node.stdout);
    }

    // delete waits until the pod is gone: right after it returns, the pod cannot be read any more.
    let deleted = ctl(&cluster, &["delete", "pod", "sleeper", "--grace-period=1"], None).await.ok();
    assert_eq!(deleted.stdout, "pod \"sleeper\" deleted from default namespace\n");
    assert!(cluster.pods().get_opt("sleeper").await.expect("get").is_none(), "delete returned before the pod was gone");
    let again = ctl(&cluster, &["delete", "pod", "sleeper"], None).await.fails();
    assert_eq!(again.stderr, "Error from server (NotFound): pods \"sleeper\" not found\n");
    ctl(&cluster, &["delete", "pod", "sleeper", "--ignore-not-found"], None).await.ok();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_logs_follow_and_exec_pass_output_and_exit_codes_through() {
    let Some(cluster) = Cluster::start("node-ctl-exec", None).await else { return };
    cluster.create(busybox_pod("talker", "echo one; echo two; sleep 1000", serde_json::json!({}))).await;
    cluster.wait_for("talker", "Running", |p| phase(p) == "Running").await;
    let deadline = Instant::now() + patience();
    let logs = loop {
        let logs = ctl(&cluster, &["logs", "talker"], None).await.ok();
        if logs.stdout.contains("two") || Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(logs.stdout, "one\ntwo\n");
    assert_eq!(ctl(&cluster, &["logs", "pod/talker", "--tail=1"], None).await.ok().stdout, "two\n");

    let script = "for i in 1 2 3; do echo line-$i; sleep 0.2; done";
    cluster.create(busybox_pod("counter", script, serde_json::json!({"restartPolicy": "Never"}))).await;
    cluster.wait_for("counter", "started", |p| phase(p) == "Running" || phase(p) == "Succeeded").await;
    let followed = ctl(&cluster, &["logs", "-f", "counter"], None).await.ok();
    assert_eq!(followed.stdout, "line-1\nline-2\nline-3\n");

    let ok = ctl(&cluster, &["exec", "talker", "--", "sh", "-c", "echo out; echo err >&2"], None).await.ok();
    assert_eq!(ok.stdout, "out\n");
    assert_eq!(ok.stderr, "err\n");
    let failed = ctl(&cluster, &["exec", "talker", "--", "sh", "-c", "exit 3"], None).await;
    assert_eq!(failed.status.code(), Some(3), "{}", failed.stderr);
    assert_eq!(failed.stderr, "command terminated with exit code 3\n");
    let piped = ctl(&cluster, &["exec", "-i", "talker", "--", "tr", "a-z", "A-Z"], Some("piped through\n")).await.ok();
    assert_eq!(piped.stdout, "PIPED THROUGH\n");
    let missing = ctl(&cluster, &["logs", "talker", "-c", "nope"], None).await.fails();
    assert!(missing.stderr.starts_with("Error from server (BadRequest): "), "{}", missing.stderr);

    // -t: a terminal in the container (run under `script`, which gives the ctl a terminal of its own).
    if std::path::Path::new("/usr/bin/script").exists() {
        let line = format!(
            "{} ctl --kubeconfig {} exec -i -t talker -- sh -c 'tty; exit 4'",
            env!("CARGO_BIN_EXE_gantry"),
            cluster.kubeconfig().display()
        );
        let home = cluster._server_dir.path().join("home");
        let mut command = gantry_e2e::client_command("/usr/bin/script", &home);
        command.args(["-qec", &line, "/dev/null"]);
        let tty =
            tokio::task::spawn_blocking(move || gantry_e2e::run(command, Some(b""), patience())).await.expect("script");
        assert!(tty.stdout.contains("/dev/pts/"), "{tty:?}");
        assert_eq!(tty.status.code(), Some(4), "{tty:?}");
    }

    // `--all` deletes every pod of the namespace and waits for each to be gone.
    let deleted = ctl(&cluster, &["delete", "pods", "--all", "--now"], None).await.ok();
    let mut lines: Vec<&str> = deleted.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["pod \"counter\" deleted from default namespace", "pod \"talker\" deleted from default namespace"]
    );
    for pod in ["counter", "talker"] {
        assert!(cluster.pods().get_opt(pod).await.expect("get").is_none(), "{pod} is still there");
    }
    cluster.stop().await;
}

fn deployment_yaml(node: &str, replicas: u32, env: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  replicas: \
         {replicas}\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        \
         app: web\n    spec:\n      nodeName: {node}\n      hostNetwork: true\n      terminationGracePeriodSeconds: 1\n      \
         containers:\n      - name: main\n        image: {BUSYBOX_IMAGE}\n        command: [sh, -c, 'echo started; sleep \
         1000']\n        env:\n{env}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_apply_creates_configures_and_removes_fields_and_rollout_status_waits() {
    let Some(cluster) = Cluster::start("node-ctl-apply", None).await else { return };
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut config = gantry_controllers::ControllerManagerConfig::new("ctl-test");
    config.election = None;
    gantry_controllers::start(cluster.client.clone(), config, shutdown.clone(), &mut tasks);
    let dir = tempfile::tempdir().expect("tempdir");

    // A ConfigMap: created, unchanged, configured; a key removed from the file is removed from the object while a
    // key another writer added stays.
    let file = dir.path().join("settings.yaml");
    let file_arg = file.to_str().expect("utf-8 path");
    std::fs::write(&file, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: '1'\n  b: '2'\n")
        .expect("write");
    assert_eq!(ctl(&cluster, &["apply", "-f", file_arg], None).await.ok().stdout, "configmap/settings created\n");
    assert_eq!(ctl(&cluster, &["apply", "-f", file_arg], None).await.ok().stdout, "configmap/settings unchanged\n");
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let patch = serde_json::json!({"data": {"other": "kept"}});
    maps.patch("settings", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.expect("patch");
    std::fs::write(&file, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: '10'\n")
        .expect("write");
    assert_eq!(ctl(&cluster, &["apply", "-f", file_arg], None).await.ok().stdout, "configmap/settings configured\n");
    let live = maps.get("settings").await.expect("configmap").data.unwrap_or_default();
    assert_eq!(live.get("a").map(String::as_str), Some("10"));
    assert_eq!(live.get("b"), None, "the key removed from the file is removed");
    assert_eq!(live.get("other").map(String::as_str), Some("kept"), "a key the file never had stays");

    // A Deployment from stdin, rolled out by the controllers; then an env var removed from the file.
    let env = "        - {name: A, value: '1'}\n        - {name: B, value: '2'}\n";
    let first = deployment_yaml(&cluster.node, 2, env);
    assert_eq!(ctl(&cluster, &["apply", "-f", "-"], Some(&first)).await.ok().stdout, "deployment.apps/web created\n");
    let status = ctl(&cluster, &["rollout", "status", "deployment/web", "--timeout=5m"], None).await.ok();
    assert!(status.stdout.ends_with("deployment \"web\" successfully rolled out\n"), "{}", status.stdout);
    for line in status.stdout.lines() {
        assert!(
            line.starts_with("Waiting for deployment") || line == "deployment \"web\" successfully rolled out",
            "{line}"
        );
    }
    assert_eq!(ctl(&cluster, &["apply", "-f", "-"], Some(&first)).await.ok().stdout, "deployment.apps/web unchanged\n");
    let second = deployment_yaml(&cluster.node, 2, "        - {name: A, value: '1'}\n");
    assert_eq!(
        ctl(&cluster, &["apply", "-f", "-"], Some(&second)).await.ok().stdout,
        "deployment.apps/web configured\n"
    );
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let live = deployments.get("web").await.expect("deployment");
    let env: Vec<String> = live
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].env.iter().flatten().map(|e| e.name.clone()).collect())
        .unwrap_or_default();
    assert_eq!(env, ["A"], "the env var removed from the file is removed (three-way patch)");
    ctl(&cluster, &["rollout", "status", "deploy/web", "--timeout=5m"], None).await.ok();

    let described = ctl(&cluster, &["describe", "deployment", "web"], None).await.ok();
    for wanted in [
        "Replicas:               2 desired | 2 updated | 2 total | 2 available | 0 unavailable",
        "NewReplicaSet:",
        "Pod Template:",
    ] {
        assert!(described.stdout.contains(wanted), "{wanted:?} missing from:\n{}", described.stdout);
    }
    if kubectl_given() {
        let theirs = cluster.kubectl(&["describe", "deployment", "web"], None).await.ok();
        assert_eq!(before_events(&described.stdout), before_events(&theirs.stdout));
        let ours = ctl(&cluster, &["get", "deploy,rs", "-o", "wide"], None).await.ok();
        let theirs = cluster.kubectl(&["get", "deploy,rs", "-o", "wide"], None).await.ok();
        assert_eq!(cells_without_age(&ours.stdout), cells_without_age(&theirs.stdout));
    }
    let logs = ctl(&cluster, &["logs", "deploy/web"], None).await.ok();
    assert_eq!(logs.stdout, "started\n");
    let all = ctl(&cluster, &["get", "deploy,rs"], None).await.ok();
    assert!(
        all.stdout.contains("deployment.apps/web") && all.stdout.contains("replicaset.apps/web-"),
        "{}",
        all.stdout
    );

    let deleted = ctl(&cluster, &["delete", "-f", file_arg], None).await.ok();
    assert_eq!(deleted.stdout, "configmap \"settings\" deleted from default namespace\n");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    cluster.stop().await;
}
