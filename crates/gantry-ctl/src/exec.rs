//! `exec`: a command in a container, over the WebSocket remote-command protocol (`v5.channel.k8s.io`, else
//! `v4`), with stdin forwarded (`-i`, its end closing the command's stdin) and a raw terminal (`-t`). The
//! process exits with the command's exit code, after kubectl's `command terminated with exit code N`.

use std::os::fd::AsFd;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status as MetaStatus;
use kube::api::{AttachParams, TerminalSize};
use tokio::io::AsyncWriteExt;

use crate::config::Context;
use crate::logs::{default_container, pod_for};
use crate::{CtlError, Result};

/// `exec [-i] [-t] [-c C] POD -- COMMAND...`.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// The pod, or TYPE/NAME (pod/web-1, deploy/web).
    pub pod: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    /// The container; default: the pod's default container.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a terminal (raw mode; stderr is merged into stdout).
    #[arg(short = 't', long)]
    pub tty: bool,
}

/// The exit code in a remote command's final Status: 0 for Success, the `ExitCode` cause for
/// `NonZeroExitCode`; `None` for any other failure.
pub fn exit_code(status: &MetaStatus) -> Option<i32> {
    if status.status.as_deref() == Some("Success") {
        return Some(0);
    }
    if status.reason.as_deref() != Some("NonZeroExitCode") {
        return None;
    }
    status
        .details
        .as_ref()?
        .causes
        .iter()
        .flatten()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.trim().parse().ok())
}

/// The client's Status of a remote command's failure, for the error line.
fn api_status(status: &MetaStatus) -> kube::core::Status {
    kube::core::Status {
        code: status.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(500),
        message: status.message.clone().unwrap_or_default(),
        reason: status.reason.clone().unwrap_or_default(),
        ..kube::core::Status::failure("", "")
    }
}

/// Puts the terminal on stdin in raw mode and restores it when dropped.
struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        if !rustix::termios::isatty(fd) {
            return None;
        }
        let saved = rustix::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        // Nothing more can be done if the terminal cannot be restored; the shell's `reset` can.
        let _ = rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &self.saved);
    }
}

/// Runs `exec`.
pub async fn run(cx: &Context, args: ExecArgs) -> Result<()> {
    let pod = pod_for(cx, &args.pod).await?;
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let container = default_container(&pod, args.container.as_deref());
    let params = AttachParams {
        container,
        stdin: args.stdin,
        stdout: true,
        stderr: !args.tty,
        tty: args.tty,
        ..AttachParams::default()
    };
    let api: kube::Api<Pod> = kube::Api::namespaced(cx.client.clone(), &cx.namespace);
    let mut attached =
        api.exec(&name, args.command.clone(), &params).await.map_err(|err| CtlError::client("exec", err))?;
    let raw = if args.tty && args.stdin { RawTerminal::enter() } else { None };
    if args.tty
        && let Some(mut sizes) = attached.terminal_size()
        && let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdout().as_fd())
    {
        use futures::SinkExt;
        let _ = sizes.send(TerminalSize { width: size.ws_col, height: size.ws_row }).await;
    }
    let status = attached.take_status();
    let stdin_task = attached.stdin().filter(|_| args.stdin).map(|mut writer| {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let _ = tokio::io::copy(&mut stdin, &mut writer).await;
            // Dropping the writer tells the command its stdin ended.
            let _ = writer.shutdown().await;
        })
    });
    let stdout = attached.stdout().map(|mut reader| {
        tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            let _ = tokio::io::copy(&mut reader, &mut out).await;
            let _ = out.flush().await;
        })
    });
    let stderr = attached.stderr().map(|mut reader| {
        tokio::spawn(async move {
            let mut err = tokio::io::stderr();
            let _ = tokio::io::copy(&mut reader, &mut err).await;
            let _ = err.flush().await;
        })
    });
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    for task in [stdout, stderr].into_iter().flatten() {
        let _ = task.await;
    }
    if let Some(task) = stdin_task {
        task.abort();
    }
    let _ = attached.join().await;
    drop(raw);
    let Some(status) = status else { return Ok(()) };
    match exit_code(&status) {
        Some(0) => Ok(()),
        Some(code) => {
            eprintln!("command terminated with exit code {code}");
            Err(CtlError::ExitCode(code))
        }
        None => Err(CtlError::Api(Box::new(api_status(&status)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    #[test]
    fn the_exit_code_comes_from_the_status_cause() {
        let status = MetaStatus {
            status: Some("Failure".into()),
            reason: Some("NonZeroExitCode".into()),
            message: Some("command terminated with non-zero exit code".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("3".into()),
                    field: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(exit_code(&status), Some(3));
        let success = MetaStatus { status: Some("Success".into()), ..Default::default() };
        assert_eq!(exit_code(&success), Some(0));
        let other = MetaStatus { status: Some("Failure".into()), ..Default::default() };
        assert_eq!(exit_code(&other), None);
        assert_eq!(api_status(&other).code, 500);
    }
}
