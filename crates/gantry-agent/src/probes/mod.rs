//! Container probes, as the kubelet runs them: one attempt of a probe handler ([`probe_once`]: exec, httpGet,
//! tcpSocket, grpc) and the periodic workers that turn attempts into a container's `started` and `ready` and into
//! restarts ([`ContainerProbes`]).
//!
//! Results and messages follow the kubelet's: a failed attempt carries the message its `Unhealthy` event shows
//! ("Liveness probe failed: HTTP probe failed with statuscode: 500"), and an attempt that could not be made at all
//! (an unknown named port, a runtime error) is [`ProbeResult::Unknown`], reported but not counted.

mod grpc;
pub(crate) mod http;
mod worker;

use std::time::Duration;

use gantry_runtime::RuntimeService;
use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub use worker::{ContainerProbes, ProbeAction, ProbeEvent, ProbeKind, ProbeStatus, instant_from_unix_nanos};

/// Most output of a command or body of a response kept for a message, as the kubelet keeps.
pub(crate) const MAX_OUTPUT_BYTES: usize = 10 << 10;

/// The version the agent presents in probe and hook requests (`kube-probe/1.35`), as the kubelet of the API
/// version it follows.
pub const KUBE_VERSION: &str = "1.35";

/// The outcome of one probe attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// The container answered as healthy.
    Success,
    /// The container answered as unhealthy, or did not answer in time; the message is the kubelet's wording, for
    /// the `Unhealthy` event ("Liveness probe failed: {message}").
    Failure(String),
    /// The probe could not be run (a named port the container does not declare, a runtime error); the kubelet
    /// reports it ("probe errored") and does not count it towards a threshold.
    Unknown(String),
}

/// Where a container's probes and hooks go.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeTarget {
    /// The container's runtime ID (exec handlers run in it).
    pub container_id: String,
    /// The pod's IP, or the node's for a `hostNetwork` pod: the host of httpGet, tcpSocket and grpc handlers
    /// that name none.
    pub pod_ip: Option<String>,
    /// The container's declared ports, to resolve handlers that name their port.
    pub ports: Vec<ContainerPort>,
}

/// A probe's settings with the API defaults applied (period 10 s, timeout 1 s, thresholds 1 and 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    /// Wait after the container started before the first attempt.
    pub initial_delay: Duration,
    /// Time between attempts.
    pub period: Duration,
    /// Bound on each attempt.
    pub timeout: Duration,
    /// Consecutive successes that make the result a success.
    pub success_threshold: u32,
    /// Consecutive failures that make the result a failure.
    pub failure_threshold: u32,
}

impl ProbeTiming {
    /// The timing of `probe`; values below the API's minimum are raised to it (validation rejects them).
    pub fn of(probe: &Probe) -> ProbeTiming {
        let seconds = |value: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(u64::try_from(value.unwrap_or(default).max(min)).unwrap_or(0))
        };
        let count = |value: Option<i32>, default: i32| u32::try_from(value.unwrap_or(default).max(1)).unwrap_or(1);
        ProbeTiming {
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// Runs one attempt of `probe` against the container `target` names, bounded by its `timeoutSeconds`.
pub async fn probe_once(runtime: &dyn RuntimeService, probe: &Probe, target: &ProbeTarget) -> ProbeResult {
    let timeout = ProbeTiming::of(probe).timeout;
    if let Some(exec) = &probe.exec {
        return exec_probe(runtime, exec.command.as_deref().unwrap_or_default(), target, timeout).await;
    }
    if let Some(action) = &probe.http_get {
        let request = match http::HttpGetRequest::new(action, target, "probe") {
            Ok(request) => request,
            Err(err) => return ProbeResult::Unknown(err.to_string()),
        };
        return match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => ProbeResult::Failure(request.timeout_message()),
            Ok(Err(err)) => ProbeResult::Failure(err.to_string()),
            Ok(Ok(response)) => response.probe_result(),
        };
    }
    if let Some(action) = &probe.tcp_socket {
        let port = match resolve_port(&action.port, &target.ports) {
            Ok(port) => port,
            Err(err) => return ProbeResult::Unknown(err.to_string()),
        };
        let Some(host) = action.host.clone().filter(|h| !h.is_empty()).or_else(|| target.pod_ip.clone()) else {
            return ProbeResult::Unknown(NO_POD_IP.to_string());
        };
        return tcp_probe(&host, port, timeout).await;
    }
    if let Some(action) = &probe.grpc {
        let Some(host) = target.pod_ip.clone() else { return ProbeResult::Unknown(NO_POD_IP.to_string()) };
        let Ok(port) = u16::try_from(action.port) else {
            return ProbeResult::Unknown(PortError::Invalid(action.port.to_string()).to_string());
        };
        return grpc::probe(&host, port, action.service.as_deref().unwrap_or_default(), timeout).await;
    }
    ProbeResult::Unknown("missing probe handler".to_string())
}

const NO_POD_IP: &str = "the pod has no IP to probe";

/// Why a handler's port could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A named port the container does not declare.
    #[error("port {0} not found")]
    NotFound(String),
    /// A number outside 1..=65535.
    #[error("invalid port number: {0}")]
    Invalid(String),
}

/// The port a handler names: a number, or the name of one of the container's ports (a number written as a
/// string is accepted, as the kubelet accepts it).
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, PortError> {
    let number = match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => match ports.iter().find(|p| p.name.as_deref() == Some(name.as_str())) {
            Some(declared) => declared.container_port,
            None => name.parse::<i32>().map_err(|_| PortError::NotFound(name.clone()))?,
        },
    };
    u16::try_from(number).ok().filter(|p| *p > 0).ok_or_else(|| PortError::Invalid(number.to_string()))
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Standard output then standard error, cut to the kubelet's 10 KiB.
pub(crate) fn combined_output(stdout: &[u8], stderr: &[u8]) -> String {
    let mut output = Vec::with_capacity((stdout.len() + stderr.len()).min(MAX_OUTPUT_BYTES));
    output.extend_from_slice(stdout);
    output.extend_from_slice(stderr);
    output.truncate(MAX_OUTPUT_BYTES);
    String::from_utf8_lossy(&output).into_owned()
}

/// How an exec in the container ended.
pub(crate) enum ExecOutcome {
    /// The command ran to its end.
    Exited { exit_code: i32, stdout: Vec<u8>, stderr: Vec<u8> },
    /// The command ran past its time and was killed.
    TimedOut,
    /// The runtime could not run it.
    Failed(gantry_runtime::cri::RuntimeError),
}

/// Runs `cmd` in the container, bounded by `timeout` (the runtime kills it then; the agent gives up a moment
/// later should the runtime not answer).
pub(crate) async fn exec_in_container(
    runtime: &dyn RuntimeService,
    container_id: &str,
    cmd: &[String],
    timeout: Duration,
) -> ExecOutcome {
    let began = tokio::time::Instant::now();
    let run = runtime.exec_sync(container_id, cmd, Some(timeout));
    match tokio::time::timeout(timeout + EXEC_GRACE, run).await {
        Err(_) => ExecOutcome::TimedOut,
        Ok(Ok(response)) => {
            ExecOutcome::Exited { exit_code: response.exit_code, stdout: response.stdout, stderr: response.stderr }
        }
        // The runtime reports its own deadline as an error; an error at or past the deadline is that one.
        Ok(Err(_)) if began.elapsed() >= timeout => ExecOutcome::TimedOut,
        Ok(Err(err)) => ExecOutcome::Failed(err),
    }
}

/// Time past an exec's deadline the agent waits for the runtime to report it.
const EXEC_GRACE: Duration = Duration::from_secs(2);

async fn exec_probe(
    runtime: &dyn RuntimeService,
    cmd: &[String],
    target: &ProbeTarget,
    timeout: Duration,
) -> ProbeResult {
    if cmd.is_empty() {
        return ProbeResult::Unknown("exec probe without a command".to_string());
    }
    match exec_in_container(runtime, &target.container_id, cmd, timeout).await {
        ExecOutcome::Exited { exit_code: 0, .. } => ProbeResult::Success,
        ExecOutcome::Exited { stdout, stderr, .. } => ProbeResult::Failure(combined_output(&stdout, &stderr)),
        ExecOutcome::TimedOut => ProbeResult::Failure(format!("command {:?} timed out", cmd.join(" "))),
        ExecOutcome::Failed(err) => ProbeResult::Unknown(err.to_string()),
    }
}

async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> ProbeResult {
    let address = join_host_port(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_stream)) => ProbeResult::Success,
        Ok(Err(err)) => ProbeResult::Failure(format!("dial tcp {address}: {}", dial_error(&err))),
        Err(_) => ProbeResult::Failure(format!("dial tcp {address}: i/o timeout")),
    }
}

/// A connection error in the words the kubelet's events use (`connect: connection refused`).
pub(crate) fn dial_error(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
        std::io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
