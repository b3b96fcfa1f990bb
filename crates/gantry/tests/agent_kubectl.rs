//! The real kubectl against pods the node agent runs: `logs` (with `--tail`, `--previous`, `-f`), `exec` (exit
//! codes, stdin), `attach` and `port-forward`, through the API server's relay to the node's HTTPS API.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Cluster, busybox_pod, phase, try_container};
use gantry_runtime::testing::runtime::{TestNetwork, network_skip_reason};
use kube::api::DeleteParams;

fn text(output: &str) -> String {
    output.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_shows_follows_and_tails_a_containers_output() {
    let Some(cluster) = Cluster::start("node-logs", None).await else { return };
    cluster
        .create(busybox_pod(
            "talker",
            "echo one; echo two; sleep 0.3; echo three >&2; sleep 1000",
            serde_json::json!({}),
        ))
        .await;
    cluster.wait_for("talker", "Running", |p| phase(p) == "Running").await;
    // stdout and stderr are separate pipes; the script's pause keeps their lines in the order written.
    let deadline = std::time::Instant::now() + gantry_runtime::testing::runtime::patience();
    let all = loop {
        let all = cluster.kubectl(&["logs", "talker"], None).await;
        assert!(all.status.success(), "{}", text(&all.stderr));
        if all.stdout.contains("three") || std::time::Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(text(&all.stdout), "one\ntwo\nthree\n");
    let tail = cluster.kubectl(&["logs", "talker", "--tail=1"], None).await;
    assert_eq!(text(&tail.stdout), "three\n");
    let stamped = cluster.kubectl(&["logs", "talker", "--timestamps"], None).await;
    let first = text(&stamped.stdout).lines().next().unwrap_or_default().to_string();
    assert!(first.ends_with(" one") && first.starts_with("20"), "{first}");

    // `logs -f` of a container that prints for a while and exits: every line, then kubectl ends by itself.
    let script = "for i in 1 2 3 4 5; do echo line-$i; sleep 0.2; done";
    cluster.create(busybox_pod("counter", script, serde_json::json!({"restartPolicy": "Never"}))).await;
    cluster.wait_for("counter", "Running", |p| phase(p) == "Running" || phase(p) == "Succeeded").await;
    let followed = cluster.kubectl(&["logs", "-f", "counter"], None).await;
    assert!(followed.status.success(), "{}", text(&followed.stderr));
    assert_eq!(text(&followed.stdout), "line-1\nline-2\nline-3\nline-4\nline-5\n");

    let missing = cluster.kubectl(&["logs", "talker", "-c", "nope"], None).await;
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("container nope is not valid for pod talker"), "{}", text(&missing.stderr));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_previous_shows_the_run_before_a_restart() {
    let Some(cluster) = Cluster::start("node-previous", None).await else { return };
    cluster.create(busybox_pod("flaky", "echo run-$(date +%s%N); exit 1", serde_json::json!({}))).await;
    cluster.wait_for("flaky", "a restart", |p| try_container(p, "main").is_some_and(|c| c.restart_count >= 1)).await;
    let current = cluster.kubectl(&["logs", "flaky"], None).await;
    let previous = cluster.kubectl(&["logs", "flaky", "--previous"], None).await;
    assert!(previous.status.success(), "{}", text(&previous.stderr));
    let (current, previous) = (text(&current.stdout), text(&previous.stdout));
    assert!(previous.starts_with("run-") && current.starts_with("run-"), "{previous:?} {current:?}");
    assert_ne!(previous, current, "--previous shows the run before");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_runs_commands_with_their_exit_code_and_stdin() {
    let Some(cluster) = Cluster::start("node-exec", None).await else { return };
    cluster.create(busybox_pod("shell", "sleep 1000", serde_json::json!({}))).await;
    cluster.wait_for("shell", "Running", |p| phase(p) == "Running").await;

    let ok = cluster.kubectl(&["exec", "shell", "--", "sh", "-c", "echo out; echo err >&2"], None).await;
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout), "out\n");
    assert!(text(&ok.stderr).contains("err"), "{}", text(&ok.stderr));

    let failed = cluster.kubectl(&["exec", "shell", "--", "sh", "-c", "exit 3"], None).await;
    assert_eq!(failed.status.code(), Some(3), "kubectl exits with the command's code: {}", text(&failed.stderr));
    assert!(text(&failed.stderr).contains("command terminated with exit code 3"), "{}", text(&failed.stderr));

    let piped = cluster.kubectl(&["exec", "-i", "shell", "--", "tr", "a-z", "A-Z"], Some("piped through\n")).await;
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    assert_eq!(text(&piped.stdout), "PIPED THROUGH\n");

    let unknown = cluster.kubectl(&["exec", "shell", "--", "/no/such/binary"], None).await;
    assert!(!unknown.status.success());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_attach_streams_a_running_containers_output() {
    let Some(cluster) = Cluster::start("node-attach", None).await else { return };
    let script = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done";
    cluster.create(busybox_pod("ticker", script, serde_json::json!({}))).await;
    cluster.wait_for("ticker", "Running", |p| phase(p) == "Running").await;
    let command = cluster.kubectl_command(&["attach", "ticker"]);
    let line = tokio::task::spawn_blocking(move || {
        let mut attached = gantry_e2e::Background::spawn(command);
        attached.wait_for_line(|l| l.starts_with("tick-"))
    })
    .await
    .expect("attach");
    assert!(line.starts_with("tick-"), "{line}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_reaches_a_server_in_the_pod() {
    if let Some(reason) = network_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let network = TestNetwork::new(41);
    let Some(cluster) = Cluster::start("node-forward", Some(&network)).await else { return };
    let script = "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www";
    let mut pod = busybox_pod("web", script, serde_json::json!({}));
    pod["spec"]["hostNetwork"] = serde_json::json!(false);
    cluster.create(pod).await;
    cluster.wait_for("web", "Running", |p| phase(p) == "Running").await;

    let command = cluster.kubectl_command(&["port-forward", "pod/web", ":8080"]);
    let body = tokio::task::spawn_blocking(move || {
        let mut forward = gantry_e2e::Background::spawn(command);
        // "Forwarding from 127.0.0.1:PORT -> 8080"
        let line = forward.wait_for_line(|l| l.starts_with("Forwarding from 127.0.0.1:"));
        let port: u16 = line
            .trim_start_matches("Forwarding from 127.0.0.1:")
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("local port");
        let mut body = String::new();
        // httpd may take a moment to listen after the container starts: retry the request briefly.
        for _ in 0..50 {
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n");
            body.clear();
            let _ = stream.read_to_string(&mut body);
            if body.contains("hello-from-the-pod") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        body
    })
    .await
    .expect("port-forward");
    assert!(body.contains("200 OK") && body.contains("hello-from-the-pod"), "{body}");
    cluster
        .pods()
        .delete("web", &DeleteParams { grace_period_seconds: Some(1), ..Default::default() })
        .await
        .expect("delete");
    cluster.wait_gone("web").await;
    cluster.stop().await;
}
