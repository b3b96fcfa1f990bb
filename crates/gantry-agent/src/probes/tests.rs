//! The probe protocols against real servers on 127.0.0.1, and the workers' timing on a paused clock with a
//! scripted runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, HTTPHeader, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::testing::*;
use super::{
    ContainerProbes, PortError, ProbeAction, ProbeEvent, ProbeKind, ProbeResult, ProbeStatus, probe_once, resolve_port,
};

fn http_probe(port: u16, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(i32::from(port)),
            path: Some(path.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn probe_http(server: &Server, path: &str) -> ProbeResult {
    let runtime = ScriptedRuntime::default();
    probe_once(&runtime, &http_probe(server.addr.port(), path), &local_target(server.addr.port())).await
}

#[tokio::test]
async fn http_probes_succeed_below_400_and_fail_with_the_status_code_otherwise() {
    let server = http_server(false).await;
    assert_eq!(probe_http(&server, "/ok").await, ProbeResult::Success);
    assert_eq!(probe_http(&server, "/big").await, ProbeResult::Success);
    assert_eq!(
        probe_http(&server, "/fail").await,
        ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
    );
    assert_eq!(
        probe_http(&server, "/missing").await,
        ProbeResult::Failure("HTTP probe failed with statuscode: 404".into())
    );
}

#[tokio::test]
async fn http_probes_send_the_kubelet_headers_unless_overridden() {
    let server = http_server(false).await;
    assert_eq!(probe_http(&server, "ok").await, ProbeResult::Success);
    let mut probe = http_probe(server.addr.port(), "/host");
    probe.http_get.as_mut().unwrap().http_headers = Some(vec![
        HTTPHeader { name: "Host".into(), value: "custom.example".into() },
        HTTPHeader { name: "user-agent".into(), value: "mine/1".into() },
        HTTPHeader { name: "Accept".into(), value: "".into() },
        HTTPHeader { name: "X-Custom".into(), value: "a".into() },
        HTTPHeader { name: "X-Custom".into(), value: "b".into() },
    ]);
    let runtime = ScriptedRuntime::default();
    assert_eq!(probe_once(&runtime, &probe, &local_target(server.addr.port())).await, ProbeResult::Success);

    let requests = server.requests.lock().unwrap().clone();
    let (path, first) = &requests[0];
    assert_eq!(path, "/ok", "a path without a leading slash is made absolute");
    assert_eq!(first["user-agent"], "kube-probe/1.35");
    assert_eq!(first["accept"], "*/*");
    assert_eq!(first["host"], format!("127.0.0.1:{}", server.addr.port()));
    let (_, second) = &requests[1];
    assert_eq!(second["user-agent"], "mine/1");
    assert!(second.get("accept").is_none(), "an empty Accept removes it");
    assert_eq!(second.get_all("x-custom").iter().collect::<Vec<_>>(), ["a", "b"]);
}

#[tokio::test]
async fn http_probes_follow_redirects_on_the_same_host_only() {
    let server = http_server(false).await;
    assert_eq!(probe_http(&server, "/redirect-ok").await, ProbeResult::Success);
    assert_eq!(
        probe_http(&server, "/redirect-fail").await,
        ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
    );
    // A redirect to another host is not followed: the redirect itself is the (successful) answer.
    assert_eq!(probe_http(&server, "/redirect-away").await, ProbeResult::Success);
    match probe_http(&server, "/loop").await {
        ProbeResult::Failure(message) => assert!(message.ends_with("stopped after 10 redirects"), "{message}"),
        other => panic!("a redirect loop succeeded: {other:?}"),
    }
    let loops = server.requests.lock().unwrap().iter().filter(|(p, _)| p == "/loop").count();
    assert_eq!(loops, 11, "the first request and 10 redirects");
}

#[tokio::test]
async fn http_probes_time_out_and_report_refused_connections() {
    let server = http_server(false).await;
    let started = std::time::Instant::now();
    let mut probe = http_probe(server.addr.port(), "/slow");
    probe.timeout_seconds = Some(1);
    let runtime = ScriptedRuntime::default();
    match probe_once(&runtime, &probe, &local_target(server.addr.port())).await {
        ProbeResult::Failure(message) => assert!(message.contains("context deadline exceeded"), "{message}"),
        other => panic!("a slow answer passed: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(2500), "the timeout did not bound the attempt");

    let port = closed_port().await;
    match probe_once(&runtime, &http_probe(port, "/"), &local_target(port)).await {
        ProbeResult::Failure(message) => {
            assert_eq!(
                message,
                format!("Get \"http://127.0.0.1:{port}/\": dial tcp 127.0.0.1:{port}: connect: connection refused")
            )
        }
        other => panic!("a closed port passed: {other:?}"),
    }
}

#[tokio::test]
async fn https_probes_accept_a_self_signed_certificate() {
    let server = http_server(true).await;
    let mut probe = http_probe(server.addr.port(), "/ok");
    probe.http_get.as_mut().unwrap().scheme = Some("HTTPS".into());
    let runtime = ScriptedRuntime::default();
    let target = local_target(server.addr.port());
    assert_eq!(probe_once(&runtime, &probe, &target).await, ProbeResult::Success);
    probe.http_get.as_mut().unwrap().path = Some("/fail".into());
    assert_eq!(
        probe_once(&runtime, &probe, &target).await,
        ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
    );
    // The same over plain HTTP to the TLS server fails: the scheme is honoured.
    probe.http_get.as_mut().unwrap().scheme = Some("HTTP".into());
    assert!(matches!(probe_once(&runtime, &probe, &target).await, ProbeResult::Failure(_)));
}

#[tokio::test]
async fn named_ports_resolve_from_the_container_and_unknown_names_are_errors() {
    let server = http_server(false).await;
    let mut probe = http_probe(0, "/ok");
    probe.http_get.as_mut().unwrap().port = IntOrString::String("http".into());
    let runtime = ScriptedRuntime::default();
    assert_eq!(probe_once(&runtime, &probe, &local_target(server.addr.port())).await, ProbeResult::Success);
    probe.http_get.as_mut().unwrap().port = IntOrString::String("metrics".into());
    assert_eq!(
        probe_once(&runtime, &probe, &local_target(server.addr.port())).await,
        ProbeResult::Unknown("port metrics not found".into())
    );
    assert_eq!(resolve_port(&IntOrString::String("8080".into()), &[]).unwrap(), 8080);
    assert!(matches!(resolve_port(&IntOrString::Int(70000), &[]), Err(PortError::Invalid(_))));
}

#[tokio::test]
async fn tcp_probes_succeed_when_the_port_accepts() {
    let server = silent_server().await;
    let probe = |port: u16| Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(i32::from(port)), host: None }),
        ..Default::default()
    };
    let runtime = ScriptedRuntime::default();
    let target = local_target(server.addr.port());
    assert_eq!(probe_once(&runtime, &probe(server.addr.port()), &target).await, ProbeResult::Success);
    let port = closed_port().await;
    assert_eq!(
        probe_once(&runtime, &probe(port), &target).await,
        ProbeResult::Failure(format!("dial tcp 127.0.0.1:{port}: connect: connection refused"))
    );
}

#[tokio::test]
async fn grpc_probes_ask_the_health_service_about_their_service() {
    let server = grpc_health_server().await;
    let probe = |service: Option<&str>| Probe {
        grpc: Some(GRPCAction { port: i32::from(server.addr.port()), service: service.map(str::to_string) }),
        ..Default::default()
    };
    let runtime = ScriptedRuntime::default();
    let target = local_target(server.addr.port());
    assert_eq!(probe_once(&runtime, &probe(None), &target).await, ProbeResult::Success);
    assert_eq!(probe_once(&runtime, &probe(Some("db")), &target).await, ProbeResult::Success);
    assert_eq!(
        probe_once(&runtime, &probe(Some("down")), &target).await,
        ProbeResult::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    assert_eq!(
        probe_once(&runtime, &probe(Some("unimplemented")), &target).await,
        ProbeResult::Failure(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): unknown service \
             grpc.health.v1.Health"
                .into()
        )
    );
    assert_eq!(
        probe_once(&runtime, &probe(Some("other")), &target).await,
        ProbeResult::Failure(
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service".into()
        )
    );
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests[0].0, "/grpc.health.v1.Health/Check");
    assert_eq!(requests[0].1["user-agent"], "kube-probe/1.35");
    assert_eq!(requests[0].1["content-type"], "application/grpc");
}

#[tokio::test]
async fn grpc_probes_fail_on_silence_and_refusal_within_their_timeout() {
    let silent = silent_server().await;
    let runtime = ScriptedRuntime::default();
    let probe =
        |port: u16| Probe { grpc: Some(GRPCAction { port: i32::from(port), service: None }), ..Default::default() };
    let started = std::time::Instant::now();
    assert_eq!(
        probe_once(&runtime, &probe(silent.addr.port()), &local_target(0)).await,
        ProbeResult::Failure("timeout: health rpc did not complete within 1s".into())
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
    let port = closed_port().await;
    match probe_once(&runtime, &probe(port), &local_target(0)).await {
        ProbeResult::Failure(message) => assert!(message.contains("connection refused"), "{message}"),
        other => panic!("a closed port passed: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn exec_probes_pass_on_exit_zero_and_fail_with_their_output_or_timeout() {
    let runtime = ScriptedRuntime::default();
    runtime.script("check", &[0, 3]);
    let target = local_target(0);
    assert_eq!(probe_once(&runtime, &exec_probe("check"), &target).await, ProbeResult::Success);
    assert_eq!(
        probe_once(&runtime, &exec_probe("check"), &target).await,
        ProbeResult::Failure("check says 3\nerr\n".into())
    );
    let mut slow = exec_probe("slow");
    slow.timeout_seconds = Some(2);
    let started = Instant::now();
    assert_eq!(probe_once(&runtime, &slow, &target).await, ProbeResult::Failure("command \"slow\" timed out".into()));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

// ---- workers ----

struct Probed {
    runtime: Arc<ScriptedRuntime>,
    probes: ContainerProbes,
    events: mpsc::UnboundedReceiver<ProbeEvent>,
    started_at: Instant,
}

fn start(container: Container, runtime: ScriptedRuntime, started_at: Instant) -> Probed {
    let runtime = Arc::new(runtime);
    let (sender, events) = mpsc::unbounded_channel();
    let probes = ContainerProbes::start(runtime.clone(), &container, local_target(0), started_at, sender);
    Probed { runtime, probes, events, started_at }
}

fn container(startup: Option<Probe>, liveness: Option<Probe>, readiness: Option<Probe>) -> Container {
    Container {
        name: "app".into(),
        startup_probe: startup,
        liveness_probe: liveness,
        readiness_probe: readiness,
        ..Default::default()
    }
}

fn offsets(calls: &[Instant], from: Instant) -> Vec<u64> {
    calls.iter().map(|at| at.duration_since(from).as_secs()).collect()
}

#[tokio::test(start_paused = true)]
async fn liveness_restarts_only_after_failure_threshold_failures_in_a_row() {
    let runtime = ScriptedRuntime::default();
    runtime.script("live", &[1, 1, 0, 1, 1, 1, 0]);
    let mut liveness = exec_probe("live");
    liveness.termination_grace_period_seconds = Some(7);
    let mut probed = start(container(None, Some(liveness), None), runtime, Instant::now());
    assert!(probed.probes.started() && probed.probes.ready(), "no startup or readiness probe");

    let mut events = Vec::new();
    while let Some(event) = probed.events.recv().await {
        let restart = event.action != ProbeAction::None;
        events.push(event);
        if restart {
            break;
        }
    }
    let actions: Vec<_> = events.iter().map(|e| e.action).collect();
    assert_eq!(actions.len(), 5, "one event per failed attempt: {events:?}");
    assert!(actions[..4].iter().all(|a| *a == ProbeAction::None));
    assert_eq!(actions[4], ProbeAction::Restart { termination_grace_period_seconds: Some(7) });
    let last = &events[4];
    assert_eq!(last.message(), "Liveness probe failed: live says 1\nerr\n");
    assert_eq!(last.restart_message().as_deref(), Some("Container app failed liveness probe, will be restarted"));
    assert_eq!(offsets(&probed.runtime.calls_of("live"), probed.started_at), [0, 1, 2, 3, 4, 5]);

    // The worker stops probing the container it asked to restart.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(probed.runtime.calls_of("live").len(), 6);
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_waits_for_the_initial_delay_counted_from_the_container_start() {
    let runtime = ScriptedRuntime::default();
    let mut readiness = exec_probe("ready");
    readiness.initial_delay_seconds = Some(5);
    readiness.period_seconds = Some(3);
    let started_at = Instant::now() - Duration::from_secs(2);
    let mut probed = start(container(None, None, Some(readiness)), runtime, started_at);
    assert!(probed.probes.started());
    assert!(!probed.probes.ready(), "readiness starts false");
    let status = probed.probes.changed().await;
    assert!(status.ready);
    assert_eq!(offsets(&probed.runtime.calls_of("ready"), started_at), [5]);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(offsets(&probed.runtime.calls_of("ready"), started_at), [5, 8, 11]);
}

#[tokio::test(start_paused = true)]
async fn liveness_and_readiness_wait_for_the_startup_probe_to_succeed() {
    let runtime = ScriptedRuntime::default();
    runtime.script("boot", &[1, 1, 0]);
    runtime.script("live", &[1]);
    let mut startup = exec_probe("boot");
    startup.failure_threshold = Some(5);
    let mut liveness = exec_probe("live");
    liveness.period_seconds = Some(10);
    let probe_start = Instant::now();
    let mut probed = start(container(Some(startup), Some(liveness), Some(exec_probe("ready"))), runtime, probe_start);
    assert_eq!(probed.probes.status(), ProbeStatus { started: false, ready: false });

    let mut watch = probed.probes.watch();
    watch.wait_for(|s| s.ready).await.unwrap();
    assert_eq!(probed.probes.status(), ProbeStatus { started: true, ready: true });

    let boot = offsets(&probed.runtime.calls_of("boot"), probe_start);
    assert_eq!(boot, [0, 1, 2]);
    assert_eq!(offsets(&probed.runtime.calls_of("ready"), probe_start), [2], "readiness runs as soon as started");
    assert_eq!(offsets(&probed.runtime.calls_of("live"), probe_start), [2]);
    // Two startup failures were reported, without a restart; the startup probe stops once it succeeded.
    let first = probed.events.recv().await.unwrap();
    assert_eq!((first.kind, first.action), (ProbeKind::Startup, ProbeAction::None));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(probed.runtime.calls_of("boot").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn readiness_counts_success_and_failure_thresholds_in_a_row() {
    let runtime = ScriptedRuntime::default();
    runtime.script("ready", &[0, 1, 0, 0, 1, 0, 1, 1, 0]);
    let mut readiness = exec_probe("ready");
    readiness.success_threshold = Some(2);
    readiness.failure_threshold = Some(2);
    let started_at = Instant::now();
    let mut probed = start(container(None, None, Some(readiness)), runtime, started_at);
    let mut changes = Vec::new();
    for _ in 0..2 {
        let status = probed.probes.changed().await;
        changes.push((status.ready, started_at.elapsed().as_secs()));
    }
    // Ready after the 2nd success in a row (t=3); not ready after the 2nd failure in a row (t=7), a single
    // failure (t=4) changed nothing.
    assert_eq!(changes, [(true, 3), (false, 7)]);
    let events: Vec<_> = std::iter::from_fn(|| probed.events.try_recv().ok()).collect();
    assert_eq!(events.len(), 4, "every failed attempt is reported");
    assert!(events.iter().all(|e| e.kind == ProbeKind::Readiness && e.action == ProbeAction::None));
}

#[tokio::test(start_paused = true)]
async fn a_startup_probe_failing_past_its_threshold_asks_for_a_restart() {
    let runtime = ScriptedRuntime::default();
    runtime.script("boot", &[1]);
    let mut startup = exec_probe("boot");
    startup.failure_threshold = Some(3);
    let mut probed = start(container(Some(startup), Some(exec_probe("live")), None), runtime, Instant::now());
    let mut actions = Vec::new();
    for _ in 0..3 {
        actions.push(probed.events.recv().await.unwrap().action);
    }
    assert_eq!(
        actions,
        [ProbeAction::None, ProbeAction::None, ProbeAction::Restart { termination_grace_period_seconds: None }]
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!probed.probes.started());
    assert_eq!(probed.runtime.calls_of("boot").len(), 3);
    assert!(probed.runtime.calls_of("live").is_empty(), "liveness never ran before the container started");
}

#[tokio::test(start_paused = true)]
async fn errored_attempts_are_reported_but_never_count() {
    let liveness = Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::String("missing".into()), host: None }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    };
    let mut probed = start(container(None, Some(liveness), None), ScriptedRuntime::default(), Instant::now());
    for _ in 0..5 {
        let event = probed.events.recv().await.unwrap();
        assert_eq!(event.action, ProbeAction::None);
        assert_eq!(event.message(), "Liveness probe errored and resulted in unknown state: port missing not found");
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_probes_ends_their_tasks() {
    let runtime = Arc::new(ScriptedRuntime::default());
    let (sender, mut events) = mpsc::unbounded_channel();
    let container = container(None, Some(exec_probe("live")), Some(exec_probe("ready")));
    let probes = ContainerProbes::start(runtime.clone(), &container, local_target(0), Instant::now(), sender);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(runtime.calls_of("live").len(), 3);
    drop(probes);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(runtime.calls_of("live").len(), 3);
    assert_eq!(runtime.calls_of("ready").len(), 3);
    assert!(events.recv().await.is_none(), "every task (and its event sender) is gone");
}

#[tokio::test(start_paused = true)]
async fn a_terminating_pod_keeps_only_its_readiness_probe() {
    let runtime = ScriptedRuntime::default();
    runtime.script("live", &[1]);
    let mut liveness = exec_probe("live");
    liveness.failure_threshold = Some(3);
    let probed = start(container(None, Some(liveness), Some(exec_probe("ready"))), runtime, Instant::now());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    probed.probes.pod_terminating();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(probed.runtime.calls_of("live").len(), 2, "liveness stopped before its threshold");
    assert_eq!(probed.runtime.calls_of("ready").len(), 12, "readiness went on");
}
