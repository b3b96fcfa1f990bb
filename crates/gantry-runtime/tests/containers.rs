//! Real containers through the native runtime: lifecycle, logs, stop, exec, re-adoption after a restart.

mod common;

use std::time::{Duration, Instant};

use common::{TestRuntime, host_sandbox, patience, shell, skip_reason};
use gantry_runtime::cri::{ContainerState, ContainerStatus, RuntimeService};
use gantry_runtime::native::NativeRuntime;
use gantry_runtime::native::logs::{Stream, parse_entry};

async fn wait_exited(runtime: &NativeRuntime, id: &str) -> ContainerStatus {
    let deadline = Instant::now() + patience();
    loop {
        let status = runtime.container_status(id).await.expect("status");
        if status.state == ContainerState::Exited {
            return status;
        }
        assert!(Instant::now() < deadline, "container {id} did not exit: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_log(path: &std::path::Path, line: &str) {
    let deadline = Instant::now() + patience();
    loop {
        if path.exists() && log_lines(path).iter().any(|(_, content)| content == line) {
            return;
        }
        assert!(Instant::now() < deadline, "{} never logged {line:?}", path.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn log_lines(path: &std::path::Path) -> Vec<(Stream, String)> {
    let text = std::fs::read(path).expect("log file");
    text.split_inclusive(|b| *b == b'\n')
        .map(|line| parse_entry(line).expect("CRI log line"))
        .map(|entry| (entry.stream, String::from_utf8_lossy(&entry.content).to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_prints_and_exits_reports_its_code_and_logs() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let test = TestRuntime::new();
    let rt = &test.runtime;
    let logs = test.root.path().join("logs");
    let sandbox_config = host_sandbox("printer", &logs);
    let sandbox = rt.run_pod_sandbox(&sandbox_config).await.expect("sandbox");
    let config = shell("main", "echo hello; echo oops >&2; exit 3");
    let id = rt.create_container(&sandbox, &config, &sandbox_config).await.expect("create");
    assert_eq!(rt.container_status(&id).await.expect("status").state, ContainerState::Created);
    rt.start_container(&id).await.expect("start");
    let status = wait_exited(rt, &id).await;
    assert_eq!(status.exit_code, 3);
    assert_eq!(status.reason, "Error");
    assert!(status.finished_at >= status.started_at && status.started_at > 0);
    let lines = log_lines(&logs.join("main/0.log"));
    assert!(lines.contains(&(Stream::Stdout, "hello".to_string())), "{lines:?}");
    assert!(lines.contains(&(Stream::Stderr, "oops".to_string())), "{lines:?}");

    let ok = rt.create_container(&sandbox, &shell("ok", "true"), &sandbox_config).await.expect("create");
    rt.start_container(&ok).await.expect("start");
    let status = wait_exited(rt, &ok).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));

    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
    assert!(rt.list_containers(&Default::default()).await.expect("list").is_empty());
    assert!(rt.list_pod_sandboxes().await.expect("list").is_empty());
    assert!(!rt.cgroups().exists(&format!("/{}/poduidprinter", test.cgroup_root)), "the pod's cgroup is left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_is_graceful_first_and_forceful_after_the_grace_period() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let test = TestRuntime::new();
    let rt = &test.runtime;
    let logs = test.root.path().join("logs");
    let sandbox_config = host_sandbox("stopper", &logs);
    let sandbox = rt.run_pod_sandbox(&sandbox_config).await.expect("sandbox");

    let graceful = shell("graceful", "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.05; done");
    let graceful = rt.create_container(&sandbox, &graceful, &sandbox_config).await.expect("create");
    rt.start_container(&graceful).await.expect("start");
    assert_eq!(rt.container_status(&graceful).await.expect("status").state, ContainerState::Running);
    // A signal sent before the trap is installed would hit PID 1's default disposition and be ignored.
    wait_for_log(&logs.join("graceful/0.log"), "ready").await;
    rt.stop_container(&graceful, 30).await.expect("stop");
    let status = rt.container_status(&graceful).await.expect("status");
    assert_eq!((status.state, status.exit_code), (ContainerState::Exited, 0));

    // PID 1 of a PID namespace ignores SIGTERM when it has no handler: only SIGKILL ends it.
    let stubborn =
        rt.create_container(&sandbox, &shell("stubborn", "exec sleep 1000"), &sandbox_config).await.expect("create");
    rt.start_container(&stubborn).await.expect("start");
    let started = Instant::now();
    rt.stop_container(&stubborn, 1).await.expect("stop");
    assert!(started.elapsed() >= Duration::from_secs(1), "SIGKILL came before the grace period ended");
    let status = rt.container_status(&stubborn).await.expect("status");
    assert_eq!((status.state, status.exit_code), (ContainerState::Exited, 137));

    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_captures_output_and_exit_code() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let test = TestRuntime::new();
    let rt = &test.runtime;
    let logs = test.root.path().join("logs");
    let sandbox_config = host_sandbox("execer", &logs);
    let sandbox = rt.run_pod_sandbox(&sandbox_config).await.expect("sandbox");
    let id = rt.create_container(&sandbox, &shell("main", "exec sleep 1000"), &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");

    let cmd: Vec<String> = ["sh", "-c", "echo out; echo err >&2; exit 7"].iter().map(|s| s.to_string()).collect();
    let result = rt.exec_sync(&id, &cmd, Some(patience())).await.expect("exec");
    assert_eq!(result.exit_code, 7);
    assert_eq!(String::from_utf8_lossy(&result.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&result.stderr), "err\n");

    // The exec'd process sees the container's filesystem, not the node's.
    let cat = ["cat", "/etc/passwd"].iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let result = rt.exec_sync(&id, &cat, None).await.expect("exec");
    assert!(String::from_utf8_lossy(&result.stdout).contains("app:x:1000"));

    // Neither the main process nor an exec'd one inherits the shim's ignored SIGPIPE.
    for pid in ["1", "self"] {
        let cmd = vec!["grep".to_string(), "SigIgn".to_string(), format!("/proc/{pid}/status")];
        let out = rt.exec_sync(&id, &cmd, None).await.expect("exec");
        let mask = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .map(|m| u64::from_str_radix(m, 16).expect("hex mask"));
        assert_eq!(mask.map(|m| m & (1 << 12)), Some(0), "SIGPIPE ignored in /proc/{pid}");
    }

    let missing = ["/no/such/binary".to_string()];
    assert!(rt.exec_sync(&id, &missing, None).await.map(|r| r.exit_code != 0).unwrap_or(true));

    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runtime_re_adopts_a_running_container_and_sees_its_exit() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let test = TestRuntime::new();
    let logs = test.root.path().join("logs");
    let sandbox_config = host_sandbox("adopted", &logs);
    let (sandbox, id) = {
        let first = test.reopen();
        let sandbox = first.run_pod_sandbox(&sandbox_config).await.expect("sandbox");
        let config = shell("main", "trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done");
        let id = first.create_container(&sandbox, &config, &sandbox_config).await.expect("create");
        first.start_container(&id).await.expect("start");
        (sandbox, id)
    };
    wait_for_log(&logs.join("main/0.log"), "ready").await;
    let second = test.reopen();
    let status = second.container_status(&id).await.expect("status");
    assert_eq!(status.state, ContainerState::Running, "{status:?}");
    let listed = second.list_containers(&Default::default()).await.expect("list");
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    second.stop_container(&id, 30).await.expect("stop");
    let status = second.container_status(&id).await.expect("status");
    assert_eq!((status.state, status.exit_code), (ContainerState::Exited, 42));
    second.remove_pod_sandbox(&sandbox).await.expect("remove");
}
