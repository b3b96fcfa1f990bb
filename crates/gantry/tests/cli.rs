//! The real `gantry` binary: `gantry server` started as a child process, driven with the real kubectl, stopped
//! with SIGTERM; on the embedded SQLite store and on a real etcd member.

use std::path::Path;
use std::process::Command;

use gantry_e2e::{Background, Output, eventually, kubectl_command, patience, run};
use gantry_store::testing::etcd_server::EtcdServer;

/// A `gantry server` child process; killed when dropped.
struct Server {
    process: Background,
    port: u16,
}

/// Starts `gantry server --data-dir DIR --secure-port 0 --bind-address 127.0.0.1 EXTRA...` and waits until it
/// says where it listens.
fn start_server(data_dir: &Path, extra: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .args(["server", "--secure-port", "0", "--bind-address", "127.0.0.1", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn");
    let mut process = Background::spawn(command);
    let line = process.wait_for_line(|l| l.starts_with("Gantry API server listening on https://"));
    let port = line.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {line:?}"));
    let kubeconfig_line = process.wait_for_line(|l| l.starts_with("Admin kubeconfig: "));
    assert_eq!(kubeconfig_line, format!("Admin kubeconfig: {}", data_dir.join("kubeconfig").display()));
    Server { process, port }
}

fn kubectl(data_dir: &Path, home: &Path, args: &[&str]) -> Output {
    run(kubectl_command(&data_dir.join("kubeconfig"), home, args), None, patience())
}

#[test]
fn server_on_port_zero_serves_kubectl_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (data, home) = (dir.path().join("data"), dir.path().join("home"));
    let mut server = start_server(&data, &[]);
    assert_ne!(server.port, 0, "port 0 must be replaced by the port actually bound");
    let kubeconfig = std::fs::read_to_string(data.join("kubeconfig")).expect("the kubeconfig");
    assert!(kubeconfig.contains(&format!("server: https://127.0.0.1:{}\n", server.port)), "{kubeconfig}");

    let namespaces = kubectl(&data, &home, &["get", "namespaces", "-o", "name"]).ok();
    let names: Vec<&str> = namespaces.stdout.lines().collect();
    for name in ["namespace/default", "namespace/kube-node-lease", "namespace/kube-public", "namespace/kube-system"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert_eq!(names.len(), 4, "{names:?}");
    kubectl(&data, &home, &["create", "configmap", "kept", "--from-literal=a=b"]).ok();

    // A watch is open while the server stops: shutdown must end it rather than wait for it.
    let watch = Background::spawn(kubectl_command(&data.join("kubeconfig"), &home, &["get", "configmaps", "-w"]));
    server.process.signal("TERM");
    let status = server.process.wait();
    assert_eq!(status.code(), Some(0), "SIGTERM must stop the server cleanly; stderr:\n{}", server.process.stderr());
    drop(watch);

    // Started again on the same data directory: the same CA (the kubeconfig is rewritten with the new port) and
    // the objects written before.
    let again = start_server(&data, &[]);
    let kubeconfig_again = std::fs::read_to_string(data.join("kubeconfig")).expect("the kubeconfig");
    assert!(kubeconfig_again.contains(&format!("server: https://127.0.0.1:{}\n", again.port)));
    let ca = |k: &str| k.lines().find(|l| l.contains("certificate-authority-data")).map(str::to_string);
    assert_eq!(ca(&kubeconfig), ca(&kubeconfig_again), "a restart keeps the cluster CA");
    let kept = kubectl(&data, &home, &["get", "configmap", "kept", "-o", "jsonpath={.data.a}"]).ok();
    assert_eq!(kept.stdout, "b");
}

#[test]
fn server_rejects_an_unknown_store() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.args(["server", "--secure-port", "0", "--store", "mysql://x", "--data-dir"]).arg(dir.path());
    let out = run(command, None, patience()).fails();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("--store must be `sqlite` or `etcd://HOST:PORT[,HOST:PORT...]`"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_on_etcd_stores_objects_in_etcd() {
    let etcd = EtcdServer::start().await.expect("start etcd (Debian package etcd-server)");
    let endpoint = etcd.endpoint();
    let store = format!("etcd://{}", endpoint.trim_start_matches("http://"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let home = dir.path().join("home");
    // Blocking work (child processes, kubectl) runs off the async worker threads.
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    tokio::task::spawn_blocking(move || {
        let server = start_server(&first, &["--store", &store]);
        kubectl(&first, &home, &["create", "configmap", "on-etcd", "--from-literal=where=etcd"]).ok();
        let read = kubectl(&first, &home, &["get", "configmap", "on-etcd", "-o", "jsonpath={.data.where}"]).ok();
        assert_eq!(read.stdout, "etcd");
        drop(server);

        // A second server with a data directory of its own (no SQLite file, a new CA) sees the same object: it
        // lives in etcd.
        let _server = start_server(&second, &["--store", &store]);
        let home2 = second.join("home");
        eventually(|| {
            let out = kubectl(&second, &home2, &["get", "configmap", "on-etcd", "-o", "jsonpath={.data.where}"]);
            if out.success() && out.stdout == "etcd" { Ok(()) } else { Err(format!("{}{}", out.stdout, out.stderr)) }
        });
        assert!(!second.join("db").exists(), "no SQLite store is made when etcd is used");
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\netcd log:\n{}", etcd.log_tail(30)));
}

#[test]
fn the_server_schedules_pods_onto_nodes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (data, home) = (dir.path().join("data"), dir.path().join("home"));
    let mut server = start_server(&data, &[]);
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n  labels: {kubernetes.io/hostname: worker-1}\n\
                status:\n  allocatable: {cpu: \"4\", memory: 8Gi, pods: \"110\"}\n";
    run(kubectl_command(&data.join("kubeconfig"), &home, &["apply", "-f", "-"]), Some(node.as_bytes()), patience())
        .ok();
    kubectl(&data, &home, &["run", "web", "--image=busybox"]).ok();
    let placed = eventually(|| {
        let out = kubectl(&data, &home, &["get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"]).ok();
        if out.stdout == "worker-1" { Ok(out.stdout) } else { Err(format!("nodeName is {:?}", out.stdout)) }
    });
    assert_eq!(placed, "worker-1");
    let events = kubectl(&data, &home, &["get", "events", "--field-selector", "reason=Scheduled", "-o", "name"]).ok();
    assert_eq!(events.stdout.lines().count(), 1, "{}", events.stdout);
    server.process.signal("TERM");
    assert_eq!(server.process.wait().code(), Some(0), "stderr:\n{}", server.process.stderr());
}

#[test]
fn the_server_runs_deployments_to_pods_and_a_separate_controller_manager_can_take_over() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (data, home) = (dir.path().join("data"), dir.path().join("home"));
    let mut server = start_server(&data, &["--disable-scheduler"]);
    kubectl(&data, &home, &["create", "deployment", "web", "--image=busybox", "--replicas=2"]).ok();
    let pods = eventually(|| {
        let out = kubectl(&data, &home, &["get", "pods", "-l", "app=web", "-o", "name"]).ok();
        let count = out.stdout.lines().count();
        if count == 2 { Ok(out.stdout) } else { Err(format!("{count} pods")) }
    });
    assert!(pods.lines().all(|p| p.starts_with("pod/web-")), "{pods}");
    let sets = kubectl(&data, &home, &["get", "replicasets", "-l", "app=web", "-o", "name"]).ok();
    assert_eq!(sets.stdout.lines().count(), 1, "{}", sets.stdout);
    let account = kubectl(&data, &home, &["get", "serviceaccount", "default", "-o", "name"]).ok();
    assert_eq!(account.stdout.trim(), "serviceaccount/default");
    server.process.signal("TERM");
    assert_eq!(server.process.wait().code(), Some(0), "stderr:\n{}", server.process.stderr());

    // The same data, the controllers now in their own process.
    let mut server = start_server(&data, &["--disable-scheduler", "--disable-controllers"]);
    let kubeconfig = data.join("kubeconfig");
    let mut manager = gantry_e2e::Background::spawn({
        let mut command = gantry_e2e::client_command(env!("CARGO_BIN_EXE_gantry"), &home);
        command.args(["controller-manager", "--kubeconfig"]).arg(&kubeconfig);
        command
    });
    kubectl(&data, &home, &["scale", "deployment", "web", "--replicas=3"]).ok();
    eventually(|| {
        let out = kubectl(&data, &home, &["get", "pods", "-l", "app=web", "-o", "name"]).ok();
        let count = out.stdout.lines().count();
        if count == 3 { Ok(()) } else { Err(format!("{count} pods")) }
    });
    manager.signal("TERM");
    assert_eq!(manager.wait().code(), Some(0), "stderr:\n{}", manager.stderr());
    server.process.signal("TERM");
    assert_eq!(server.process.wait().code(), Some(0), "stderr:\n{}", server.process.stderr());
}

/// Runs `gantry ARGS` as a client, with nothing from this environment but `PATH` (and `HOME` in the test's
/// directory, so that no `~/.kube/config` is found by accident).
fn gantry(home: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = gantry_e2e::client_command(env!("CARGO_BIN_EXE_gantry"), home);
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    run(command, None, patience())
}

#[test]
fn gantry_why_shows_where_a_pod_went_and_which_plugin_rejected_a_pod_that_fits_nowhere() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (data, home) = (dir.path().join("data"), dir.path().join("home"));
    let mut server = start_server(&data, &[]);
    let kubeconfig = data.join("kubeconfig");
    let kubeconfig_arg = kubeconfig.to_str().expect("a UTF-8 path");
    let objects = "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n  labels: {kubernetes.io/hostname: worker-1}\n\
                   status:\n  allocatable: {cpu: \"4\", memory: 8Gi, pods: \"110\"}\n---\n\
                   apiVersion: v1\nkind: Pod\nmetadata:\n  name: small\nspec:\n  containers:\n  - name: c\n    \
                   image: busybox\n    resources: {requests: {cpu: 100m}}\n---\n\
                   apiVersion: v1\nkind: Pod\nmetadata:\n  name: huge\nspec:\n  containers:\n  - name: c\n    \
                   image: busybox\n    resources: {requests: {cpu: \"1000\"}}\n";
    run(kubectl_command(&kubeconfig, &home, &["apply", "-f", "-"]), Some(objects.as_bytes()), patience()).ok();
    eventually(|| {
        let out = kubectl(&data, &home, &["get", "pod", "small", "-o", "jsonpath={.spec.nodeName}"]).ok();
        if out.stdout == "worker-1" { Ok(()) } else { Err(format!("nodeName is {:?}", out.stdout)) }
    });
    eventually(|| {
        let jsonpath = "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].status}";
        let out = kubectl(&data, &home, &["get", "pod", "huge", "-o", jsonpath]).ok();
        if out.stdout == "False" { Ok(()) } else { Err(format!("PodScheduled is {:?}", out.stdout)) }
    });

    let small = gantry(&home, &["why", "pod/small", "--kubeconfig", kubeconfig_arg], &[]).ok();
    assert!(small.stdout.starts_with("Pod default/small: placed on worker-1 at "), "{}", small.stdout);
    assert!(small.stdout.contains("Looked at all 1 nodes: 1 feasible, 0 rejected."), "{}", small.stdout);
    assert!(small.stdout.contains("\nNODE      SCORE\nworker-1  "), "{}", small.stdout);

    // The namespace and the kubeconfig found as kubectl finds them: $KUBECONFIG, its context's namespace.
    let huge = gantry(&home, &["why", "huge", "--nodes"], &[("KUBECONFIG", &kubeconfig)]).ok();
    let text = &huge.stdout;
    assert!(text.starts_with("Pod default/huge: unschedulable at "), "{text}");
    assert!(text.contains("\n  0/1 nodes are available: 1 Insufficient cpu."), "{text}");
    assert!(text.contains("\nREJECTED BY       NODES  REASON\nNodeResourcesFit  1      Insufficient cpu\n"), "{text}");
    assert!(
        text.contains("\nNODE      PLUGIN            REASON\nworker-1  NodeResourcesFit  Insufficient cpu\n"),
        "{text}"
    );

    let json = gantry(&home, &["why", "pods/huge", "-n", "default", "-o", "json", "--kubeconfig", kubeconfig_arg], &[])
        .ok()
        .json();
    assert_eq!(json["kind"], "SchedulingAttempt");
    assert_eq!(json["nodes"], serde_json::json!({"total": 1, "evaluated": 1, "feasible": 0}));
    assert_eq!(json["rejected"][0]["plugin"], "NodeResourcesFit");
    assert_eq!(json["rejected"][0]["nodes"], serde_json::json!(["worker-1"]));

    let missing = gantry(&home, &["why", "pod/ghost", "--kubeconfig", kubeconfig_arg], &[]).fails();
    assert_eq!(missing.stderr, "error: pods \"ghost\" not found\n");
    let elsewhere =
        gantry(&home, &["why", "pod/small", "-n", "kube-system", "--kubeconfig", kubeconfig_arg], &[]).fails();
    assert_eq!(elsewhere.stderr, "error: pods \"small\" not found\n");

    server.process.signal("TERM");
    assert_eq!(server.process.wait().code(), Some(0), "stderr:\n{}", server.process.stderr());
}

#[test]
fn gantry_why_says_so_when_the_server_runs_no_scheduler() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (data, home) = (dir.path().join("data"), dir.path().join("home"));
    let _server = start_server(&data, &["--disable-scheduler"]);
    let kubeconfig = data.join("kubeconfig");
    let out =
        gantry(&home, &["why", "pod/web", "--kubeconfig", kubeconfig.to_str().expect("a UTF-8 path")], &[]).fails();
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("error: no scheduler runs in this API server's process"), "{}", out.stderr);
    assert!(out.stderr.contains("gantry scheduler"), "{}", out.stderr);
}

#[test]
fn server_rejects_a_malformed_cluster_cidr() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.args(["server", "--secure-port", "0", "--bind-address", "127.0.0.1", "--cluster-cidr", "10.42.0.1/16"]);
    command.arg("--data-dir").arg(dir.path());
    let out = run(command, None, patience()).fails();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("--cluster-cidr") && out.stderr.contains("10.42.0.1/16"), "{}", out.stderr);
}

/// Joins (only as far as the certificate: the agent stops at the first error) with `token`.
fn join_attempt(server_port: u16, token: &str, data_dir: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.args(["agent", "--server", &format!("https://127.0.0.1:{server_port}"), "--token", token]);
    command.args(["--node-name", "joiner", "--data-dir"]).arg(data_dir);
    run(command, None, patience())
}

#[test]
fn the_join_token_is_shown_and_rotated_and_an_old_token_no_longer_joins() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (data, home) = (dir.path().join("data"), dir.path().join("home"));
    let mut server = start_server(&data, &["--disable-controllers"]);
    let show = |data: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
        command.args(["token", "show", "--data-dir"]).arg(data);
        run(command, None, patience()).ok().stdout.trim().to_string()
    };
    let old = show(&data);
    assert!(old.starts_with("gantry1::sha256:"), "{old}");
    let secrets = kubectl(
        &data,
        &home,
        &["get", "secrets", "-n", "kube-system", "-l", "gantry.io/join-token=true", "-o", "name"],
    )
    .ok();
    let old_id = old.rsplit("::").next().and_then(|t| t.split('.').next()).expect("token id");
    assert_eq!(secrets.stdout.trim(), format!("secret/bootstrap-token-{old_id}"));

    let mut rotate = Command::new(env!("CARGO_BIN_EXE_gantry"));
    rotate.args(["token", "rotate", "--data-dir"]).arg(&data);
    let new = run(rotate, None, patience()).ok().stdout.trim().to_string();
    assert_ne!(new, old);
    assert_eq!(show(&data), new, "the file holds the new token");
    let secrets = kubectl(
        &data,
        &home,
        &["get", "secrets", "-n", "kube-system", "-l", "gantry.io/join-token=true", "-o", "name"],
    )
    .ok();
    assert_eq!(secrets.stdout.lines().count(), 1, "only the new token's Secret is left: {}", secrets.stdout);

    // The old token is refused with the server's reason; the CA part still matches, so it got that far.
    let refused = join_attempt(server.port, &old, &dir.path().join("agent")).fails();
    assert!(refused.stderr.contains("join token") && refused.stderr.contains("403"), "{}", refused.stderr);
    assert!(!dir.path().join("agent/pki/node/client.crt").exists());
    let malformed = join_attempt(server.port, "gantry1::sha256:abc::x.y", &dir.path().join("agent")).fails();
    assert!(malformed.stderr.contains("not a Gantry join token"), "{}", malformed.stderr);

    server.process.signal("TERM");
    assert!(server.process.wait().success());
}

#[test]
fn ctl_answers_a_command_line_it_cannot_use_with_exit_code_1_as_kubectl_does() {
    let gantry = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
        command.args(args);
        run(command, None, patience())
    };
    let missing = gantry(&["ctl", "logs"]);
    assert_eq!(missing.status.code(), Some(1), "{}", missing.stderr);
    assert!(missing.stderr.contains("error:"), "{}", missing.stderr);
    let unknown = gantry(&["ctl", "get", "pods", "--no-such-flag"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", unknown.stderr);
    assert_eq!(gantry(&["ctl", "--help"]).status.code(), Some(0));
    // Gantry's own commands keep the usual usage-error code.
    assert_eq!(gantry(&["server", "--no-such-flag"]).status.code(), Some(2));
}
