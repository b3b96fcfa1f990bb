//! Streaming exec and attach.
//!
//! Exec runs the exec helper with pipes for the streams asked for; attach connects to the container's shim,
//! which relays its output and takes stdin and terminal resizes in frames (see [`super::shim::frame`]).

use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::NativeRuntime;
use super::shim::frame;
use crate::cri::{ByteReader, ByteWriter, ContainerState, RuntimeError, StreamOptions, StreamSession, TerminalSize};

impl NativeRuntime {
    pub(super) async fn exec_impl(
        &self,
        id: &str,
        cmd: &[String],
        options: &StreamOptions,
    ) -> Result<StreamSession, RuntimeError> {
        if options.tty {
            return self.exec_with_terminal(id, cmd, options).await;
        }
        let (mut child, request_path, result_path) =
            self.spawn_exec_with(id, cmd, options.stdin, options.stdout, options.stderr).await?;
        let stdin = child.stdin.take().map(|s| Box::pin(s) as ByteWriter);
        let stdout = child.stdout.take().map(|s| Box::pin(s) as ByteReader);
        let stderr = child.stderr.take().map(|s| Box::pin(s) as ByteReader);
        let owned_id = id.to_string();
        let exit = async move {
            let waited = child.wait().await;
            super::container::finish_exec(&owned_id, &waited, &request_path, &result_path)
        }
        .boxed();
        Ok(StreamSession { stdin, stdout, stderr, resize: None, exit })
    }

    async fn spawn_exec_with(
        &self,
        id: &str,
        cmd: &[String],
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(tokio::process::Child, std::path::PathBuf, std::path::PathBuf), RuntimeError> {
        let (child, request, result) = self.spawn_exec(id, cmd, stdin, None).await?;
        // Streams nobody asked for are drained so the process never blocks on a full pipe.
        let mut child = child;
        if !stdout && let Some(mut pipe) = child.stdout.take() {
            tokio::spawn(async move { tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await });
        }
        if !stderr && let Some(mut pipe) = child.stderr.take() {
            tokio::spawn(async move { tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await });
        }
        Ok((child, request, result))
    }

    /// An exec with a terminal: the process's terminal comes straight to the runtime (libcontainer sends it over
    /// a socket the runtime listens on), so output, input and resizes need no relay.
    async fn exec_with_terminal(
        &self,
        id: &str,
        cmd: &[String],
        options: &StreamOptions,
    ) -> Result<StreamSession, RuntimeError> {
        let dir = self.dirs(id)?.dir;
        let name = format!("exec-{}.console.sock", uuid::Uuid::new_v4().simple());
        let socket_path = dir.join(&name);
        let io = |err: std::io::Error| RuntimeError::Io { path: socket_path.clone(), source: err };
        let listener = {
            // Bound through /proc/self/fd so that a deep container directory does not overflow the address.
            let handle = std::fs::File::open(&dir).map_err(io)?;
            let short = format!("/proc/self/fd/{}/{name}", std::os::fd::AsRawFd::as_raw_fd(&handle));
            std::os::unix::net::UnixListener::bind(short).map_err(io)?
        };
        listener.set_nonblocking(true).map_err(io)?;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(io)?;
        let spawned = self.spawn_exec(id, cmd, false, Some(socket_path.clone())).await;
        let (mut child, request_path, result_path) = match spawned {
            Ok(spawned) => spawned,
            Err(err) => {
                let _ = std::fs::remove_file(&socket_path);
                return Err(err);
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted.map_err(io),
            status = child.wait() => Err(RuntimeError::Container {
                id: id.to_string(),
                message: format!("exec helper ended ({status:?}) before sending a terminal: {}",
                    std::fs::read_to_string(&result_path).unwrap_or_default()),
            }),
        };
        let _ = std::fs::remove_file(&socket_path);
        let (stream, _) = accepted?;
        let stream = stream.into_std().map_err(io)?;
        let owned_id = id.to_string();
        let master = super::blocking(move || {
            super::shim::receive_fd(&stream).map_err(|message| RuntimeError::Container { id: owned_id, message })
        })
        .await?;
        let master = std::fs::File::from(master);
        let writer = master.try_clone().map_err(io)?;
        let resizer = master.try_clone().map_err(io)?;
        let (resize_tx, mut resize_rx) = mpsc::channel::<TerminalSize>(4);
        tokio::spawn(async move {
            while let Some(size) = resize_rx.recv().await {
                let size =
                    rustix::termios::Winsize { ws_col: size.width, ws_row: size.height, ws_xpixel: 0, ws_ypixel: 0 };
                let _ = rustix::termios::tcsetwinsize(&resizer, size);
            }
        });
        let owned_id = id.to_string();
        let exit = async move {
            let waited = child.wait().await;
            super::container::finish_exec(&owned_id, &waited, &request_path, &result_path)
        }
        .boxed();
        Ok(StreamSession {
            stdin: options.stdin.then(|| Box::pin(tokio::fs::File::from_std(writer)) as ByteWriter),
            stdout: options.stdout.then(|| Box::pin(tokio::fs::File::from_std(master)) as ByteReader),
            stderr: None,
            resize: Some(resize_tx),
            exit,
        })
    }

    pub(super) async fn attach_impl(&self, id: &str, options: &StreamOptions) -> Result<StreamSession, RuntimeError> {
        let status = self.container_status_impl(id).await?;
        if status.state != ContainerState::Running {
            return Err(RuntimeError::WrongState {
                id: id.to_string(),
                message: "cannot attach to a container that is not running".to_string(),
            });
        }
        let dir = self.dirs(id)?.dir;
        let shim_gone = |err: std::io::Error| RuntimeError::WrongState {
            id: id.to_string(),
            message: format!("the container's shim does not answer: {err}"),
        };
        let stream = super::shim::connect_in(&dir, super::shim::CONTROL_SOCKET).await.map_err(shim_gone)?;
        let (read_half, mut write_half) = stream.into_split();
        write_half.write_all(b"attach\n").await.map_err(shim_gone)?;
        let mut reader = BufReader::new(read_half);
        let mut answer = String::new();
        reader.read_line(&mut answer).await.map_err(shim_gone)?;
        if answer.trim() != "ok" {
            return Err(RuntimeError::Shim { id: id.to_string(), message: answer.trim().to_string() });
        }

        // Frames to the shim go through one writer task.
        let (frames_tx, mut frames_rx) = mpsc::channel::<(u8, Vec<u8>)>(16);
        tokio::spawn(async move {
            while let Some((kind, payload)) = frames_rx.recv().await {
                let mut bytes = Vec::with_capacity(payload.len() + 5);
                bytes.push(kind);
                bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                bytes.extend_from_slice(&payload);
                if write_half.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });

        let stdin = if options.stdin {
            let (client, mut ours) = tokio::io::duplex(64 * 1024);
            let frames = frames_tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match ours.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if frames.send((frame::STDIN, buf[..n].to_vec())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = frames.send((frame::CLOSE_STDIN, Vec::new())).await;
            });
            Some(Box::pin(client) as ByteWriter)
        } else {
            None
        };
        let resize = if options.tty {
            let (tx, mut rx) = mpsc::channel::<TerminalSize>(4);
            let frames = frames_tx.clone();
            tokio::spawn(async move {
                while let Some(size) = rx.recv().await {
                    let mut payload = size.width.to_be_bytes().to_vec();
                    payload.extend_from_slice(&size.height.to_be_bytes());
                    if frames.send((frame::RESIZE, payload)).await.is_err() {
                        break;
                    }
                }
            });
            Some(tx)
        } else {
            None
        };
        drop(frames_tx);

        let (stdout_client, mut stdout_ours) = tokio::io::duplex(64 * 1024);
        let (stderr_client, mut stderr_ours) = tokio::io::duplex(64 * 1024);
        let want_stdout = options.stdout;
        let want_stderr = options.stderr && !options.tty;
        let relay = tokio::spawn(async move {
            loop {
                let mut header = [0u8; 5];
                if reader.read_exact(&mut header).await.is_err() {
                    break;
                }
                let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
                let mut payload = vec![0u8; len];
                if reader.read_exact(&mut payload).await.is_err() {
                    break;
                }
                // A client that stopped reading one stream must not stall the other.
                match header[0] {
                    frame::STDOUT if want_stdout => {
                        let _ = stdout_ours.write_all(&payload).await;
                    }
                    frame::STDERR if want_stderr => {
                        let _ = stderr_ours.write_all(&payload).await;
                    }
                    _ => {}
                }
            }
        });
        let runtime = self.clone();
        let owned_id = id.to_string();
        let exit = async move {
            let _ = relay.await;
            // The shim closes attached connections when the container's output ends; its exit record follows.
            for _ in 0..200 {
                let status = runtime.container_status_impl(&owned_id).await?;
                if status.state == ContainerState::Exited {
                    return Ok(status.exit_code);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(RuntimeError::WrongState {
                id: owned_id,
                message: "the attached streams ended but the container did not exit".to_string(),
            })
        }
        .boxed();
        Ok(StreamSession {
            stdin,
            stdout: want_stdout.then(|| Box::pin(stdout_client) as ByteReader),
            stderr: want_stderr.then(|| Box::pin(stderr_client) as ByteReader),
            resize,
            exit,
        })
    }
}
