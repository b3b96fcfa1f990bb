//! Container lifecycle hooks (`postStart`, `preStop`), run as the kubelet runs them: an exec in the container, an
//! HTTP GET (the same client as httpGet probes, `kube-lifecycle/1.35`; the response's status is not looked at,
//! only whether a response came), or a sleep. `tcpSocket` handlers are deprecated and never run.
//!
//! What to do with a failure is the caller's: the kubelet kills a container whose `postStart` hook failed
//! (`FailedPostStartHook`) and only reports a failed `preStop` hook (`FailedPreStopHook`);
//! [`HookError::event_message`] gives those events' message.

use std::time::Duration;

use gantry_runtime::RuntimeService;
use gantry_runtime::cri::RuntimeError;
use k8s_openapi::api::core::v1::LifecycleHandler;

use crate::probes::http::{HttpGetError, HttpGetRequest};
use crate::probes::{ExecOutcome, ProbeTarget, combined_output, exec_in_container};

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The command ran and exited non-zero.
    #[error("command '{}' exited with {exit_code}: {stderr}", command.join(" "))]
    ExecExited {
        /// The command.
        command: Vec<String>,
        /// Its exit code.
        exit_code: i32,
        /// Its standard error.
        stderr: String,
        /// Its standard output then standard error, cut to 10 KiB.
        output: String,
    },
    /// The command could not be run.
    #[error("{source}")]
    Exec {
        /// The command.
        command: Vec<String>,
        /// The runtime's error.
        #[source]
        source: RuntimeError,
    },
    /// The handler has an empty command.
    #[error("exec lifecycle hook without a command")]
    EmptyCommand,
    /// The HTTP GET got no response.
    #[error("{source}")]
    Http {
        /// The handler's path.
        path: String,
        /// What failed.
        #[source]
        source: HttpGetError,
    },
    /// The hook was still running at its deadline (the rest of the grace period, for `preStop`).
    #[error("{handler} lifecycle hook did not complete within {deadline:?}")]
    DeadlineExceeded {
        /// `Exec`, `HTTP` or `Sleep`.
        handler: &'static str,
        /// The deadline it was given.
        deadline: Duration,
    },
    /// A `tcpSocket` handler: deprecated, never run.
    #[error("invalid handler: tcpSocket lifecycle handlers are deprecated and not supported")]
    TcpSocketDeprecated,
    /// A handler with no action at all.
    #[error("invalid handler: no exec, httpGet or sleep action")]
    NoAction,
}

impl HookError {
    /// The message of the `FailedPostStartHook` / `FailedPreStopHook` event, as the kubelet words it, for
    /// `container` in `pod` (the kubelet's `name_namespace(uid)`).
    pub fn event_message(&self, handler: &LifecycleHandler, container: &str, pod: &str) -> String {
        let subject = |kind: &str, what: String| {
            format!("{kind} lifecycle hook ({what}) for Container {container:?} in Pod {pod:?} failed - error: {self}")
        };
        match self {
            HookError::ExecExited { command, output, .. } => {
                format!("{}, message: {output:?}", subject("Exec", format!("[{}]", command.join(" "))))
            }
            HookError::Exec { command, .. } => {
                format!("{}, message: \"\"", subject("Exec", format!("[{}]", command.join(" "))))
            }
            HookError::Http { path, .. } => subject("HTTP", path.clone()),
            HookError::DeadlineExceeded { handler: "Sleep", .. } => {
                let seconds = handler.sleep.as_ref().map(|s| s.seconds).unwrap_or_default();
                subject("Sleep", seconds.to_string())
            }
            HookError::DeadlineExceeded { handler: "HTTP", .. } => {
                let path = handler.http_get.as_ref().and_then(|h| h.path.clone()).unwrap_or_default();
                subject("HTTP", path)
            }
            HookError::DeadlineExceeded { .. } | HookError::EmptyCommand => {
                let command = handler.exec.as_ref().and_then(|e| e.command.clone()).unwrap_or_default();
                format!("{}, message: \"\"", subject("Exec", format!("[{}]", command.join(" "))))
            }
            HookError::TcpSocketDeprecated | HookError::NoAction => format!("Cannot run handler: {self}"),
        }
    }
}

/// Runs a `postStart` or `preStop` handler against the container `target` names; gives up at `deadline`.
pub async fn run_hook(
    runtime: &dyn RuntimeService,
    handler: &LifecycleHandler,
    target: &ProbeTarget,
    deadline: Duration,
) -> Result<(), HookError> {
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(HookError::EmptyCommand);
        }
        return match exec_in_container(runtime, &target.container_id, &command, deadline).await {
            ExecOutcome::Exited { exit_code: 0, .. } => Ok(()),
            ExecOutcome::Exited { exit_code, stdout, stderr } => Err(HookError::ExecExited {
                command,
                exit_code,
                output: combined_output(&stdout, &stderr),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            }),
            ExecOutcome::TimedOut => Err(HookError::DeadlineExceeded { handler: "Exec", deadline }),
            ExecOutcome::Failed(source) => Err(HookError::Exec { command, source }),
        };
    }
    if let Some(action) = &handler.http_get {
        let path = action.path.clone().unwrap_or_default();
        let http_error = |source| HookError::Http { path: path.clone(), source };
        let request = HttpGetRequest::new(action, target, "lifecycle").map_err(http_error)?;
        let attempt = async {
            match request.send().await {
                Err(err) if err.is_plain_http_answer() => {
                    // An HTTPS hook answered in plain HTTP: retried over HTTP, as the kubelet does.
                    tracing::warn!(url = %request.url(), "HTTPS lifecycle hook got an HTTP response: retrying with HTTP");
                    request.over_plain_http().send().await
                }
                other => other,
            }
        };
        return match tokio::time::timeout(deadline, attempt).await {
            Err(_) => Err(HookError::DeadlineExceeded { handler: "HTTP", deadline }),
            Ok(Err(source)) => Err(http_error(source)),
            // The kubelet does not look at the status of a hook's response.
            Ok(Ok(_response)) => Ok(()),
        };
    }
    if let Some(sleep) = &handler.sleep {
        let wanted = Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0));
        if wanted > deadline {
            tokio::time::sleep(deadline).await;
            return Err(HookError::DeadlineExceeded { handler: "Sleep", deadline });
        }
        tokio::time::sleep(wanted).await;
        return Ok(());
    }
    if handler.tcp_socket.is_some() {
        return Err(HookError::TcpSocketDeprecated);
    }
    Err(HookError::NoAction)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::probes::testing::{ScriptedRuntime, closed_port, http_server, local_target};

    fn http_hook(port: u16, path: &str, scheme: &str) -> LifecycleHandler {
        LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                path: Some(path.into()),
                scheme: Some(scheme.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn http_hooks_succeed_on_any_response_and_fail_without_one() {
        let server = http_server(false).await;
        let runtime = ScriptedRuntime::default();
        let target = local_target(server.addr.port());
        let deadline = Duration::from_secs(5);
        run_hook(&runtime, &http_hook(server.addr.port(), "/ok", "HTTP"), &target, deadline).await.unwrap();
        // The kubelet does not look at a hook's status code.
        run_hook(&runtime, &http_hook(server.addr.port(), "/fail", "HTTP"), &target, deadline).await.unwrap();
        let requests = server.requests.lock().unwrap().clone();
        assert_eq!(requests[0].1["user-agent"], "kube-lifecycle/1.35");

        let port = closed_port().await;
        let handler = http_hook(port, "/stop", "HTTP");
        let err = run_hook(&runtime, &handler, &target, deadline).await.unwrap_err();
        assert_eq!(
            err.event_message(&handler, "app", "web_default(uid-1)"),
            format!(
                "HTTP lifecycle hook (/stop) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: Get \
                 \"http://127.0.0.1:{port}/stop\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
    }

    #[tokio::test]
    async fn an_https_hook_answered_in_plain_http_is_retried_over_http() {
        let server = http_server(false).await;
        let runtime = ScriptedRuntime::default();
        let target = local_target(server.addr.port());
        let handler = http_hook(server.addr.port(), "/ok", "HTTPS");
        run_hook(&runtime, &handler, &target, Duration::from_secs(5)).await.unwrap();
        assert_eq!(server.requests.lock().unwrap().len(), 1, "the retry over HTTP reached the server");

        let tls = http_server(true).await;
        let handler = http_hook(tls.addr.port(), "/ok", "HTTPS");
        run_hook(&runtime, &handler, &local_target(tls.addr.port()), Duration::from_secs(5)).await.unwrap();
        assert_eq!(tls.requests.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_hook_still_running_at_its_deadline_fails() {
        let server = http_server(false).await;
        let runtime = ScriptedRuntime::default();
        let started = std::time::Instant::now();
        let handler = http_hook(server.addr.port(), "/slow", "HTTP");
        let err = run_hook(&runtime, &handler, &local_target(server.addr.port()), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, HookError::DeadlineExceeded { handler: "HTTP", .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hooks_sleep_within_their_deadline() {
        let runtime = ScriptedRuntime::default();
        let sleep = |seconds| LifecycleHandler { sleep: Some(SleepAction { seconds }), ..Default::default() };
        let started = tokio::time::Instant::now();
        run_hook(&runtime, &sleep(3), &local_target(0), Duration::from_secs(30)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        let err = run_hook(&runtime, &sleep(60), &local_target(0), Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, HookError::DeadlineExceeded { handler: "Sleep", .. }));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn exec_hooks_report_the_exit_code_and_output() {
        let runtime = ScriptedRuntime::default();
        runtime.script("cleanup", &[0, 2]);
        let handler = LifecycleHandler {
            exec: Some(ExecAction { command: Some(vec!["cleanup".into(), "--now".into()]) }),
            ..Default::default()
        };
        let deadline = Duration::from_secs(30);
        run_hook(&runtime, &handler, &local_target(0), deadline).await.unwrap();
        let err = run_hook(&runtime, &handler, &local_target(0), deadline).await.unwrap_err();
        assert_eq!(
            err.event_message(&handler, "app", "web_default(uid-1)"),
            "Exec lifecycle hook ([cleanup --now]) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: \
             command 'cleanup --now' exited with 2: err\n, message: \"cleanup says 2\\nerr\\n\""
        );
    }

    #[tokio::test]
    async fn tcp_socket_hooks_are_not_run() {
        let runtime = ScriptedRuntime::default();
        let handler = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(80), host: None }),
            ..Default::default()
        };
        let err = run_hook(&runtime, &handler, &local_target(0), Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, HookError::TcpSocketDeprecated));
        assert!(err.event_message(&handler, "app", "p").starts_with("Cannot run handler: invalid handler: tcpSocket"));
    }
}
