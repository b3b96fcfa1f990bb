//! The node agent's probes and lifecycle hooks against real containers (busybox, host network), run by the real
//! `gantry shim`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_agent::hooks::{HookError, run_hook};
use gantry_agent::probes::{
    ContainerProbes, ProbeAction, ProbeKind, ProbeResult, ProbeTarget, instant_from_unix_nanos, probe_once,
};
use gantry_runtime::cri::{ContainerState, RuntimeService};
use gantry_runtime::native::ShimCommand;
use gantry_runtime::testing::runtime::{TestRuntime, patience, shell};
use k8s_openapi::api::core::v1::{Container, ContainerPort, ExecAction, HTTPGetAction, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn shim() -> ShimCommand {
    ShimCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_gantry")), args: vec!["shim".into()] }
}

fn command(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn exec_probe(script: &str) -> Probe {
    Probe { exec: Some(ExecAction { command: Some(command(script)) }), period_seconds: Some(1), ..Default::default() }
}

fn exec_hook(script: &str) -> LifecycleHandler {
    LifecycleHandler { exec: Some(ExecAction { command: Some(command(script)) }), ..Default::default() }
}

/// A running container in a host-network pod of its own; returns its ID and the pod's sandbox ID.
async fn running(test: &TestRuntime, pod: &str, script: &str) -> (String, String) {
    let rt = &test.runtime;
    let (sandbox_config, sandbox) = test.host_pod(pod).await;
    let id = rt.create_container(&sandbox, &shell("main", script), &sandbox_config).await.expect("create");
    rt.start_container(&id).await.expect("start");
    assert_eq!(rt.container_status(&id).await.expect("status").state, ContainerState::Running);
    (id, sandbox)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probes_judge_by_exit_code_and_time_out() {
    let Some(test) = TestRuntime::or_skip(shim()) else { return };
    let (id, sandbox) = running(&test, "probe-exec", "exec sleep 1000").await;
    let target = ProbeTarget { container_id: id.clone(), pod_ip: Some("127.0.0.1".into()), ports: vec![] };
    let rt = &test.runtime;

    assert_eq!(probe_once(rt, &exec_probe("test -d /bin"), &target).await, ProbeResult::Success);
    // The output is stdout then stderr (which may also hold the exec helper's own warnings on this branch).
    match probe_once(rt, &exec_probe("echo not yet; echo really >&2; exit 1"), &target).await {
        ProbeResult::Failure(output) => {
            assert!(output.starts_with("not yet\n") && output.ends_with("really\n"), "{output:?}")
        }
        other => panic!("a failing command passed: {other:?}"),
    }
    let started = Instant::now();
    let mut slow = exec_probe("sleep 30");
    slow.timeout_seconds = Some(1);
    assert_eq!(
        probe_once(rt, &slow, &target).await,
        ProbeResult::Failure("command \"sh -c sleep 30\" timed out".into())
    );
    assert!(started.elapsed() < Duration::from_secs(4), "the timeout did not bound the exec: {:?}", started.elapsed());
    let ps = rt.exec_sync(&id, &["ps".to_string()], None).await.expect("ps");
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 30"), "the timed-out command still runs");

    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_hooks_run_in_the_container_and_report_failures() {
    let Some(test) = TestRuntime::or_skip(shim()) else { return };
    let (id, sandbox) = running(&test, "hook-exec", "exec sleep 1000").await;
    let target = ProbeTarget { container_id: id.clone(), pod_ip: Some("127.0.0.1".into()), ports: vec![] };
    let rt = &test.runtime;
    let deadline = Duration::from_secs(10);

    run_hook(rt, &exec_hook("echo started > /tmp/post-start"), &target, deadline).await.expect("postStart");
    let seen = rt.exec_sync(&id, &command("cat /tmp/post-start"), None).await.expect("cat");
    assert_eq!(String::from_utf8_lossy(&seen.stdout), "started\n");

    let failing = exec_hook("echo cleaning; echo no disk >&2; exit 3");
    let err = run_hook(rt, &failing, &target, deadline).await.expect_err("a failing hook");
    match &err {
        HookError::ExecExited { exit_code, stderr, output, .. } => {
            assert_eq!(*exit_code, 3);
            assert!(stderr.ends_with("no disk\n"), "{stderr:?}");
            assert!(output.starts_with("cleaning\n") && output.ends_with("no disk\n"), "{output:?}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let message = err.event_message(&failing, "main", "hook-exec_default(uid-hook-exec)");
    assert!(
        message.starts_with(
            "Exec lifecycle hook ([sh -c echo cleaning; echo no disk >&2; exit 3]) for Container \"main\" in Pod \
             \"hook-exec_default(uid-hook-exec)\" failed - error: command 'sh -c echo cleaning; echo no disk >&2; \
             exit 3' exited with 3: "
        ),
        "{message}"
    );
    assert!(message.ends_with("no disk\\n\""), "{message}");

    let started = Instant::now();
    let err = run_hook(rt, &exec_hook("sleep 30"), &target, Duration::from_secs(1)).await.expect_err("too slow");
    assert!(matches!(err, HookError::DeadlineExceeded { handler: "Exec", .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));

    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_becomes_ready_by_http_and_is_restarted_by_its_failing_liveness_probe() {
    let Some(test) = TestRuntime::or_skip(shim()) else { return };
    let port = free_port();
    // busybox httpd serves /www once the container made it; liveness holds while /tmp/healthy exists.
    let script = format!(
        "touch /tmp/healthy; mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 127.0.0.1:{port} -h /www"
    );
    let (id, sandbox) = running(&test, "probe-workers", &script).await;
    let rt: Arc<dyn RuntimeService> = Arc::new(test.reopen());
    let status = rt.container_status(&id).await.expect("status");

    let mut liveness = exec_probe("test -f /tmp/healthy");
    liveness.failure_threshold = Some(2);
    liveness.termination_grace_period_seconds = Some(5);
    let readiness = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::String("web".into()),
            path: Some("/index.html".into()),
            ..Default::default()
        }),
        period_seconds: Some(1),
        ..Default::default()
    };
    let container = Container {
        name: "main".into(),
        liveness_probe: Some(liveness),
        readiness_probe: Some(readiness),
        ..Default::default()
    };
    let target = ProbeTarget {
        container_id: id.clone(),
        pod_ip: Some("127.0.0.1".into()),
        ports: vec![ContainerPort { name: Some("web".into()), container_port: i32::from(port), ..Default::default() }],
    };
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut probes =
        ContainerProbes::start(rt.clone(), &container, target, instant_from_unix_nanos(status.started_at), sender);
    assert!(probes.started() && !probes.ready());

    tokio::time::timeout(patience(), async {
        while !probes.ready() {
            probes.changed().await;
        }
    })
    .await
    .expect("the container never became ready");

    rt.exec_sync(&id, &command("rm /tmp/healthy"), None).await.expect("rm");
    let restart = tokio::time::timeout(patience(), async {
        loop {
            let event = events.recv().await.expect("events end");
            if event.action != ProbeAction::None {
                return event;
            }
            // Readiness may fail while httpd starts; liveness fails once the file is gone.
            assert!(event.kind != ProbeKind::Startup, "{event:?}");
        }
    })
    .await
    .expect("no restart asked for");
    assert_eq!(restart.kind, ProbeKind::Liveness);
    assert_eq!(restart.action, ProbeAction::Restart { termination_grace_period_seconds: Some(5) });
    assert!(restart.message().starts_with("Liveness probe failed: "), "{}", restart.message());
    drop(probes);

    rt.remove_pod_sandbox(&sandbox).await.expect("remove sandbox");
}
