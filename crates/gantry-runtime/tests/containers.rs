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
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let rt = &test.runtime;
    let logs = test.logs();
    let (sandbox_config, sandbox) = test.host_pod("printer").await;
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
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let rt = &test.runtime;
    let logs = test.logs();
    let (sandbox_config, sandbox) = test.host_pod("stopper").await;

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
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let rt = &test.runtime;
    let (sandbox_config, sandbox) = test.host_pod("execer").await;
    let mut config = shell("main", "exec sleep 1000");
    config.security.run_as_user = Some(1000);
    let id = rt.create_container(&sandbox, &config, &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");

    // An exec'd process runs as the container's user, in its working directory.
    let id_cmd = vec!["sh".to_string(), "-c".to_string(), "id -u; pwd".to_string()];
    let result = rt.exec_sync(&id, &id_cmd, None).await.expect("exec");
    assert_eq!(String::from_utf8_lossy(&result.stdout), "1000\n/\n");

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

    // A command past its deadline is killed, not left running in the container.
    let slow = vec!["sh".to_string(), "-c".to_string(), "exec sleep 999".to_string()];
    let err = rt.exec_sync(&id, &slow, Some(Duration::from_millis(300))).await.expect_err("timed out");
    assert!(err.to_string().contains("timed out"), "{err}");
    let ps = rt.exec_sync(&id, &["ps".to_string()], None).await.expect("ps");
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 999"), "{}", String::from_utf8_lossy(&ps.stdout));

    let missing = ["/no/such/binary".to_string()];
    assert!(rt.exec_sync(&id, &missing, None).await.map(|r| r.exit_code != 0).unwrap_or(true));

    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runtime_re_adopts_a_running_container_and_sees_its_exit() {
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_ends_in_oom_killed() {
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let rt = &test.runtime;
    let (sandbox_config, sandbox) = test.host_pod("hungry").await;
    // dd fills a 256 MiB buffer from /dev/zero: far beyond the 32 MiB limit.
    let mut config = shell("hungry", "dd if=/dev/zero of=/dev/null bs=256M count=1; echo survived");
    config.resources.memory_limit_bytes = Some(32 << 20);
    let id = rt.create_container(&sandbox, &config, &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");
    let status = wait_exited(rt, &id).await;
    assert_eq!((status.reason.as_str(), status.exit_code), ("OOMKilled", 0), "{status:?}");
    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}

async fn run_to_completion(
    test: &TestRuntime,
    pod: &str,
    config: gantry_runtime::cri::ContainerConfig,
) -> (ContainerStatus, Vec<String>) {
    let rt = &test.runtime;
    let logs = test.root.path().join("logs").join(pod);
    let sandbox_config = host_sandbox(pod, &logs);
    let sandbox = rt.run_pod_sandbox(&sandbox_config).await.expect("sandbox");
    let id = rt.create_container(&sandbox, &config, &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");
    let status = wait_exited(rt, &id).await;
    let lines = log_lines(&status.log_path).into_iter().map(|(_, line)| line).collect();
    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
    (status, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_env_working_dir_and_mounts_are_applied() {
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let volume = test.root.path().join("volume");
    std::fs::create_dir_all(&volume).expect("volume");
    std::fs::write(volume.join("greeting"), "from the node\n").expect("write");

    let mut config = shell(
        "main",
        "id -u; id -g; echo $GREETING; pwd; cat /data/greeting; touch /data/new 2>/dev/null || echo read-only",
    );
    config.security.run_as_username = Some("app".to_string());
    config.envs.push(("GREETING".to_string(), "hi".to_string()));
    config.working_dir = "/tmp".to_string();
    config.mounts.push(gantry_runtime::cri::Mount {
        container_path: "/data".to_string(),
        host_path: volume.clone(),
        readonly: true,
    });
    let (status, lines) = run_to_completion(&test, "identity", config).await;
    assert_eq!(status.exit_code, 0, "{lines:?}");
    assert_eq!(lines[..6], ["1000", "1000", "hi", "/tmp", "from the node", "read-only"], "{lines:?}");
    assert!(!volume.join("new").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_root_filesystem_refuses_writes_and_capabilities_are_dropped() {
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let mut config = shell(
        "main",
        "touch /file 2>/dev/null && echo wrote || echo refused; grep CapBnd /proc/self/status; cat /proc/self/mountinfo | grep -E 'proc|sys' | cut -d' ' -f5 | tr '\\n' ' '",
    );
    config.security.readonly_rootfs = true;
    config.security.capabilities.drop = vec!["ALL".to_string()];
    config.security.no_new_privs = true;
    let (status, lines) = run_to_completion(&test, "locked", config).await;
    assert_eq!(status.exit_code, 0, "{lines:?}");
    assert_eq!(lines[0], "refused");
    assert_eq!(lines[1].split_whitespace().nth(1), Some("0000000000000000"), "{lines:?}");
    // Masked and read-only paths are mounts over /proc and /sys.
    let mounts: Vec<&str> = lines[2].split_whitespace().collect();
    for path in ["/proc/keys", "/proc/timer_list", "/proc/sys", "/sys/firmware"] {
        assert!(mounts.contains(&path), "{path} not covered: {mounts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_come_from_the_containers_cgroup() {
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let rt = &test.runtime;
    let logs = test.logs();
    let (sandbox_config, sandbox) = test.host_pod("busy").await;
    let config = shell("main", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo ready; exec sleep 1000");
    let id = rt.create_container(&sandbox, &config, &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");
    wait_for_log(&logs.join("main/0.log"), "ready").await;
    let stats = rt.container_stats(&id).await.expect("stats");
    assert!(stats.cpu_usage_core_nanoseconds > 1_000_000, "{stats:?}");
    assert!(stats.memory_usage_bytes > 0 && stats.memory_working_set_bytes <= stats.memory_usage_bytes, "{stats:?}");
    // The shim that outlives creation is a fresh image of itself that only supervises.
    let record = std::fs::read_to_string(test.root.path().join("run/containers").join(&id).join("container.json"))
        .expect("container record");
    let shim_pid = serde_json::from_str::<serde_json::Value>(&record).expect("json")["shim_pid"].as_u64().expect("pid");
    let cmdline = std::fs::read(format!("/proc/{shim_pid}/cmdline")).expect("shim cmdline");
    assert!(String::from_utf8_lossy(&cmdline).split('\0').any(|a| a == "supervise"), "{cmdline:?}");
    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_relays_stdin_and_stdout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let rt = &test.runtime;
    let logs = test.logs();
    let (sandbox_config, sandbox) = test.host_pod("echo").await;
    let mut config = shell("main", "while read line; do echo \"got $line\"; done; echo done");
    config.stdin = true;
    config.stdin_once = true;
    let id = rt.create_container(&sandbox, &config, &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");
    let options = gantry_runtime::cri::StreamOptions { stdin: true, stdout: true, stderr: true, tty: false };
    let mut session = rt.attach(&id, &options).await.expect("attach");
    let mut stdin = session.stdin.take().expect("stdin");
    stdin.write_all(b"one\ntwo\n").await.expect("write");
    stdin.shutdown().await.expect("close stdin");
    drop(stdin);
    let mut output = String::new();
    session.stdout.take().expect("stdout").read_to_string(&mut output).await.expect("read");
    assert_eq!(output, "got one\ngot two\ndone\n");
    let code = tokio::time::timeout(patience(), session.exit).await.expect("exit in time").expect("exit");
    assert_eq!(code, 0);
    // Attached output also lands in the log.
    wait_for_log(&logs.join("main/0.log"), "got two").await;
    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_container_writes_to_its_terminal() {
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let mut config = shell("main", "tty; [ -t 1 ] && echo is-a-terminal");
    config.tty = true;
    let (status, lines) = run_to_completion(&test, "terminal", config).await;
    assert_eq!(status.exit_code, 0, "{lines:?}");
    let lines: Vec<String> = lines.iter().map(|l| l.trim_end_matches('\r').to_string()).collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{lines:?}");
    assert_eq!(lines[1], "is-a-terminal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_terminal_streams_both_ways_and_resizes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let rt = &test.runtime;
    let (sandbox_config, sandbox) = test.host_pod("interactive").await;
    let id = rt.create_container(&sandbox, &shell("main", "exec sleep 1000"), &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");

    let options = gantry_runtime::cri::StreamOptions { stdin: true, stdout: true, stderr: false, tty: true };
    // A new terminal is 0x0 until the resize lands, and busybox's `stty size` then fails and prints
    // nothing; the script waits for a size rather than racing the resize.
    let script = "read line; until size=$(stty size 2>/dev/null) && [ \"$size\" != '0 0' ]; do sleep 0.01; done; \
                  echo \"$size\"; echo \"got $line\"; exit 5";
    let cmd = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let mut session = rt.exec(&id, &cmd, &options).await.expect("exec");
    session
        .resize
        .as_ref()
        .expect("resize")
        .send(gantry_runtime::cri::TerminalSize { width: 91, height: 17 })
        .await
        .expect("resize");
    let mut stdin = session.stdin.take().expect("stdin");
    stdin.write_all(b"hello\n").await.expect("write");
    let mut stdout = session.stdout.take().expect("stdout");
    let mut output = Vec::new();
    let deadline = Instant::now() + patience();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&output).contains("got hello") {
        assert!(Instant::now() < deadline, "no output: {:?}", String::from_utf8_lossy(&output));
        match tokio::time::timeout(patience(), stdout.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => output.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&output);
    assert!(text.contains("17 91"), "{text:?}");
    assert!(text.contains("got hello"), "{text:?}");
    let code = tokio::time::timeout(patience(), session.exit).await.expect("exit in time").expect("exit");
    assert_eq!(code, 5);
    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pulled_from_a_registry_runs() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    // Started before the runtime: without a registry, the test has nothing to run.
    let registry = match gantry_runtime::testing::TestRegistry::start() {
        Ok(registry) => registry,
        Err(err) => {
            eprintln!("skipped: no registry ({err}); needs the Debian packages docker-registry and skopeo");
            return;
        }
    };
    let test = TestRuntime::new(common::shim());
    let archive = test.root.path().join("pulled.tar");
    gantry_runtime::testing::ImageBuilder::busybox("pulled:1")
        .layer(gantry_runtime::testing::Layer::new().file("etc/motd", "pulled from a registry\n", 0o644))
        .write_archive(&archive)
        .expect("archive");
    registry.push(&archive, "team/pulled", "1", None).expect("push");
    let reference = format!("{}/team/pulled:1", registry.host());
    let (progress_tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let image_id = gantry_runtime::cri::ImageService::pull_image(
        test.images.as_ref(),
        &reference,
        &gantry_runtime::cri::RegistryAuth::Anonymous,
        Some(progress_tx),
    )
    .await
    .expect("pull");
    assert!(image_id.starts_with("sha256:"));
    assert!(progress.recv().await.is_some(), "no progress reported");

    let rt = &test.runtime;
    let logs = test.root.path().join("logs");
    let sandbox_config = host_sandbox("pulled", &logs);
    let sandbox = rt.run_pod_sandbox(&sandbox_config).await.expect("sandbox");
    let mut config = shell("main", "cat /etc/motd");
    config.image = reference.clone();
    let id = rt.create_container(&sandbox, &config, &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");
    let status = wait_exited(rt, &id).await;
    assert_eq!((status.exit_code, status.image_ref.as_str()), (0, image_id.as_str()));
    assert!(log_lines(&status.log_path).contains(&(Stream::Stdout, "pulled from a registry".to_string())));

    let mut missing = shell("missing", "true");
    missing.image = format!("{}/team/absent:1", registry.host());
    let err = rt.create_container(&sandbox, &missing, &sandbox_config).await.expect_err("not pulled");
    assert!(matches!(err, gantry_runtime::cri::RuntimeError::ImageNotPresent(_)), "{err}");
    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_removes_every_sandbox_and_container() {
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let rt = &test.runtime;
    for pod in ["first", "second"] {
        let (config, sandbox) = test.host_pod(pod).await;
        let id = rt.create_container(&sandbox, &shell("main", "exec sleep 1000"), &config).await.expect("create");
        rt.start_container(&id).await.expect("start");
    }
    assert_eq!(rt.list_containers(&Default::default()).await.expect("list").len(), 2);
    rt.reset().await.expect("reset");
    assert!(rt.list_pod_sandboxes().await.expect("list").is_empty());
    assert!(rt.list_containers(&Default::default()).await.expect("list").is_empty());
    assert_eq!(common::mounts_under(test.root.path()), Vec::<std::path::PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_a_terminal_container_resizes_its_terminal() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let rt = &test.runtime;
    let (sandbox_config, sandbox) = test.host_pod("console").await;
    // busybox's `stty size` fails (and prints nothing) while the terminal has no size yet, and the
    // resize travels apart from stdin, so wait until a size is there.
    let script = "read line; until size=$(stty size 2>/dev/null) && [ \"$size\" != '0 0' ]; do sleep 0.01; done; \
                  echo \"$size\"; echo \"got $line\"";
    let mut config = shell("main", script);
    config.tty = true;
    config.stdin = true;
    let id = rt.create_container(&sandbox, &config, &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");
    let options = gantry_runtime::cri::StreamOptions { stdin: true, stdout: true, stderr: false, tty: true };
    let mut session = rt.attach(&id, &options).await.expect("attach");
    assert!(session.stderr.is_none(), "a terminal has no separate stderr");
    let size = gantry_runtime::cri::TerminalSize { width: 100, height: 30 };
    session.resize.as_ref().expect("resize").send(size).await.expect("resize");
    session.stdin.take().expect("stdin").write_all(b"typed\n").await.expect("write");
    let mut output = String::new();
    session.stdout.take().expect("stdout").read_to_string(&mut output).await.expect("read");
    assert!(output.contains("30 100"), "{output:?}");
    assert!(output.contains("got typed"), "{output:?}");
    let code = tokio::time::timeout(patience(), session.exit).await.expect("exit in time").expect("exit");
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_pid_shares_the_nodes_processes() {
    let Some(test) = TestRuntime::or_skip(common::shim()) else { return };
    let rt = &test.runtime;
    let logs = test.logs();
    let mut own = host_sandbox("own-pids", &logs);
    own.namespaces.pid = gantry_runtime::cri::NamespaceMode::Container;
    let mut node = host_sandbox("node-pids", &logs);
    node.namespaces.pid = gantry_runtime::cri::NamespaceMode::Node;
    let mut seen = Vec::new();
    for config in [own, node] {
        let sandbox = rt.run_pod_sandbox(&config).await.expect("sandbox");
        let id = rt.create_container(&sandbox, &shell("main", "echo $$"), &config).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let status = wait_exited(rt, &id).await;
        seen.push(log_lines(&status.log_path).into_iter().map(|(_, line)| line).collect::<Vec<_>>());
    }
    assert_eq!(seen[0], ["1"], "a container of its own is PID 1 of its namespace");
    assert_ne!(seen[1], ["1"], "with hostPID the container's shell has the node's PID");
}
