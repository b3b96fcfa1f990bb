//! The per-container shim, and the exec helper.
//!
//! The runtime never creates a container from its own (multi-threaded, async) process: it starts the shim,
//! a fresh single-threaded process (the `gantry` binary re-executed, or the `gantry-shim` companion binary),
//! which:
//!
//! 1. leaves the runtime's session (so a Ctrl-C aimed at the node agent does not reach it) and becomes a child
//!    subreaper (so the container's init stays its child to wait for);
//! 2. creates the container with libcontainer, its stdio connected to pipes the shim holds (or to a terminal);
//! 3. reports `ready <pid>` (or `error <message>`) on its stdout, which the runtime reads, then detaches from it;
//! 4. re-executes itself as the supervisor (keeping its PID, so the init stays its child, and the stdio
//!    descriptors), which writes the container's output to its log in the CRI format, serves attach and
//!    log-reopen requests on a socket, and waits for the init;
//! 5. records the exit (code, time, whether the OOM killer struck) in `exit.json`, then exits.
//!
//! Everything the shim knows is on disk in the container's directory, so a restarted runtime finds running
//! containers through their files alone.
//!
//! The exec helper (`exec` subcommand) runs one process inside a running container with libcontainer's tenant
//! builder, with its own stdio (pipes or a terminal from the runtime), and reports the exit code in a file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::cgroups::Cgroups;
use super::logs::{LineSplitter, LogWriter, Stream};
use super::state::{self, ExitRecord};

/// What the shim needs to know, written by the runtime to `shim.json` in the container's directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShimConfig {
    /// Container ID.
    pub id: String,
    /// OCI bundle directory (holds `config.json`).
    pub bundle: PathBuf,
    /// libcontainer's state root (the container's state is under `<root>/<id>`).
    pub libcontainer_root: PathBuf,
    /// Log file.
    pub log_path: PathBuf,
    /// Rotate the log beyond this size; 0 disables rotation.
    pub log_max_bytes: u64,
    /// Log files kept, the live one included.
    pub log_max_files: u32,
    /// Keep a stdin pipe open for attach.
    pub stdin: bool,
    /// Close stdin when the first attached client disconnects.
    pub stdin_once: bool,
    /// The container has a terminal.
    pub tty: bool,
    /// The container's cgroup (relative), to read OOM kills from.
    pub cgroup: String,
}

/// A request to the exec helper.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Container ID.
    pub id: String,
    /// libcontainer's state root.
    pub libcontainer_root: PathBuf,
    /// argv.
    pub args: Vec<String>,
    /// Where to write the [`ExecResult`].
    pub result_path: PathBuf,
    /// Socket to send the process's terminal to, for an exec with a terminal.
    pub console_socket: Option<PathBuf>,
    /// The container's bundle: the exec'd process takes the container's user, environment, working directory
    /// and capabilities from its `config.json`, as `runc exec` does.
    pub bundle: PathBuf,
}

/// What the exec helper reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecResult {
    /// Exit code of the process (128 + signal when killed).
    pub exit_code: Option<i32>,
    /// Why the process could not be started.
    pub error: Option<String>,
}

/// Name of the shim's control socket in the container directory.
pub const CONTROL_SOCKET: &str = "shim.sock";

/// Name of the socket the container's init sends its terminal to.
const CONSOLE_SOCKET: &str = "console.sock";

/// Connects to a socket in `dir` whatever the length of `dir`'s path: through `/proc/self/fd`, the address
/// stays short (a socket address holds 108 bytes).
pub async fn connect_in(dir: &Path, name: &str) -> std::io::Result<tokio::net::UnixStream> {
    let handle = File::open(dir)?;
    let short = format!("/proc/self/fd/{}/{name}", handle.as_raw_fd());
    let stream = tokio::net::UnixStream::connect(short).await;
    drop(handle);
    stream
}

/// Frame types of the attach protocol: `[type: u8][length: u32 big-endian][payload]`.
pub mod frame {
    /// Client → shim: bytes for stdin.
    pub const STDIN: u8 = 0;
    /// Shim → client: bytes from stdout (or the terminal).
    pub const STDOUT: u8 = 1;
    /// Shim → client: bytes from stderr.
    pub const STDERR: u8 = 2;
    /// Client → shim: close stdin.
    pub const CLOSE_STDIN: u8 = 3;
    /// Client → shim: terminal size, width and height as big-endian u16.
    pub const RESIZE: u8 = 4;
}

/// Entry point of the shim process (`run <container-dir>`) and of the exec helper (`exec <request.json>`).
/// Returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    match args {
        [command, dir] if command == "run" => run_shim(Path::new(dir)),
        [command, request] if command == "exec" => run_exec(Path::new(request)),
        [command, dir, pid, fds] if command == "supervise" => run_supervisor(Path::new(dir), pid, fds),
        _ => {
            eprintln!("usage: shim run <container-dir> | shim exec <request.json>");
            2
        }
    }
}

fn run_shim(dir: &Path) -> i32 {
    // A process group leader cannot call setsid; the runtime starts the shim as an ordinary child, so this
    // only fails when someone runs the shim by hand from a shell's process group leader.
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_child_subreaper(true);

    // Sockets are bound by relative path from here: the container's directory may be deeper than the 108 bytes
    // a socket address holds.
    if let Err(err) = std::env::set_current_dir(dir) {
        println!("error cannot enter {}: {err}", dir.display());
        return 1;
    }
    let config: ShimConfig = match state::read_json(&dir.join("shim.json")) {
        Ok(config) => config,
        Err(err) => {
            println!("error {err}");
            return 1;
        }
    };
    match create(dir, &config) {
        Ok(mut created) => {
            let _ = std::fs::remove_file(CONTROL_SOCKET);
            match UnixListener::bind(CONTROL_SOCKET) {
                Ok(listener) => created.control = Some(listener),
                Err(err) => eprintln!("control socket: {err}"),
            }
            println!("ready {}", created.pid);
            let _ = std::io::stdout().flush();
            detach_stdio(dir);
            if let Err(err) = exec_supervisor(dir, &created) {
                // Supervising from this image works too; it only keeps more memory resident.
                eprintln!("supervisor exec: {err}; supervising in place");
            }
            supervise(dir, &config, created)
        }
        Err(message) => {
            println!("error {}", message.replace('\n', " "));
            1
        }
    }
}

/// The container's init and the shim's ends of its stdio.
struct Created {
    pid: Pid,
    /// The control socket (attach, log reopen), bound before `ready` so that an attach right after the start
    /// finds it.
    control: Option<UnixListener>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    terminal: Option<OwnedFd>,
}

/// Replaces the shim with a fresh image of the same binary that only supervises (`supervise DIR PID FDS`), so
/// that what stays resident for the container's whole life is the supervisor's few pages, not everything that
/// creating the container touched (libcontainer, the OCI spec, the allocator's high-water mark). The container's
/// init stays the shim's child (exec keeps the PID); the stdio descriptors are inherited by number. Returns only
/// when the exec failed.
fn exec_supervisor(dir: &Path, created: &Created) -> Result<(), String> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let inherit = |fd: &Option<OwnedFd>| -> Result<String, String> {
        match fd {
            Some(fd) => {
                fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).map_err(|e| format!("fcntl: {e}"))?;
                Ok(fd.as_raw_fd().to_string())
            }
            None => Ok("-".to_string()),
        }
    };
    let control: Option<OwnedFd> = match &created.control {
        Some(listener) => Some(OwnedFd::from(listener.try_clone().map_err(|e| format!("control socket: {e}"))?)),
        None => None,
    };
    let fds = [&created.stdout, &created.stderr, &created.stdin, &created.terminal, &control]
        .into_iter()
        .map(inherit)
        .collect::<Result<Vec<_>, _>>()?
        .join(",");
    let cstring = |s: &str| std::ffi::CString::new(s).map_err(|e| format!("argument {s:?}: {e}"));
    // The same way in as this shim came (`gantry shim` or `gantry-shim`), with `supervise` for `run`.
    let mut args: Vec<std::ffi::CString> =
        std::env::args().take_while(|a| a != "run").map(|a| cstring(&a)).collect::<Result<_, _>>()?;
    for arg in ["supervise", &dir.display().to_string(), &created.pid.as_raw().to_string(), &fds] {
        args.push(cstring(arg)?);
    }
    let exe = cstring("/proc/self/exe")?;
    let err = nix::unistd::execv(&exe, &args).err();
    Err(format!("exec /proc/self/exe: {}", err.map(|e| e.to_string()).unwrap_or_default()))
}

/// The supervisor's side of [`exec_supervisor`]: adopts the inherited descriptors and supervises.
fn run_supervisor(dir: &Path, pid: &str, fds: &str) -> i32 {
    if let Err(err) = std::env::set_current_dir(dir) {
        eprintln!("supervisor: cannot enter {}: {err}", dir.display());
        return 1;
    }
    let config: ShimConfig = match state::read_json(&dir.join("shim.json")) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("supervisor: {err}");
            return 1;
        }
    };
    let Ok(pid) = pid.parse::<i32>() else {
        eprintln!("supervisor: {pid:?} is not a PID");
        return 1;
    };
    let numbers: Vec<Option<i32>> = fds.split(',').map(|n| n.parse().ok()).collect();
    let [stdout, stderr, stdin, terminal, control] = numbers[..] else {
        eprintln!("supervisor: {fds:?} is not five descriptors");
        return 1;
    };
    let created = Created {
        pid: Pid::from_raw(pid),
        stdout: stdout.map(adopt_inherited),
        stderr: stderr.map(adopt_inherited),
        stdin: stdin.map(adopt_inherited),
        terminal: terminal.map(adopt_inherited),
        control: control.map(|fd| UnixListener::from(adopt_inherited(fd))),
    };
    supervise(dir, &config, created)
}

#[allow(unsafe_code)]
fn adopt_inherited(fd: i32) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the descriptor was inherited across exec from the shim's own image, which named each of its
    // descriptors once in the arguments; nothing else in this fresh process knows or owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn create(dir: &Path, config: &ShimConfig) -> Result<Created, String> {
    let console_path = dir.join(CONSOLE_SOCKET);
    let console = if config.tty {
        let _ = std::fs::remove_file(&console_path);
        Some(
            UnixListener::bind(CONSOLE_SOCKET)
                .map_err(|e| format!("console socket {}: {e}", console_path.display()))?,
        )
    } else {
        None
    };

    let mut builder = ContainerBuilder::new(config.id.clone(), SyscallType::default())
        .with_root_path(&config.libcontainer_root)
        .map_err(|e| format!("libcontainer root: {e}"))?;
    let mut stdout_read = None;
    let mut stderr_read = None;
    let mut stdin_write = None;
    if config.tty {
        builder = builder.with_console_socket(Some(&console_path));
    } else {
        let (out_r, out_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (err_r, err_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        builder = builder.with_stdout(out_w).with_stderr(err_w);
        stdout_read = Some(out_r);
        stderr_read = Some(err_r);
        if config.stdin {
            let (in_r, in_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
            builder = builder.with_stdin(in_r);
            stdin_write = Some(in_w);
        } else {
            let null = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
            builder = builder.with_stdin(OwnedFd::from(null));
        }
    }
    let container = builder
        .with_executor(DefaultSignals)
        .as_init(&config.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("create container: {e}"))?;
    let pid = container.pid().ok_or_else(|| "container has no init process".to_string())?;

    let terminal = match console {
        Some(listener) => Some(receive_terminal(&listener)?),
        None => None,
    };
    let _ = std::fs::remove_file(&console_path);
    Ok(Created { pid, stdout: stdout_read, stderr: stderr_read, stdin: stdin_write, terminal, control: None })
}

/// Runs the workload with the signal dispositions a process expects: the shim, like every Rust program, ignores
/// SIGPIPE, and ignored signals survive `exec`. A container whose `yes | head` never ends would be the result.
#[derive(Clone)]
struct DefaultSignals;

impl libcontainer::workload::Executor for DefaultSignals {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorError> {
        restore_default_sigpipe();
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}

#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    // SAFETY: runs in the container's init process, single-threaded, right before exec; installing SIG_DFL runs
    // no handler code, so nothing can observe a half-set state.
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
}

/// Receives the terminal's master side, which the container's init sent over the console socket while it was
/// being created (the message waits in the socket's buffer, so no thread needed to listen during creation).
fn receive_terminal(listener: &UnixListener) -> Result<OwnedFd, String> {
    listener.set_nonblocking(true).map_err(|e| format!("console socket: {e}"))?;
    let (stream, _) = listener.accept().map_err(|e| format!("console socket: no terminal was sent: {e}"))?;
    receive_fd(&stream)
}

/// Receives one file descriptor sent over a connected socket (a terminal's master side).
pub fn receive_fd(stream: &UnixStream) -> Result<OwnedFd, String> {
    stream.set_nonblocking(false).map_err(|e| format!("console socket: {e}"))?;
    let mut space = [0u8; rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 4096];
    rustix::net::recvmsg(
        stream.as_fd(),
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut control,
        rustix::net::RecvFlags::empty(),
    )
    .map_err(|e| format!("console socket: {e}"))?;
    for message in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err("console socket: the container sent no terminal".to_string())
}

/// Points the shim's own stdio away from the runtime's pipe (the runtime stops reading after `ready`) and
/// towards `shim.log`, so the shim never dies of a closed pipe and its own errors stay readable.
fn detach_stdio(dir: &Path) {
    if let Ok(null) = File::open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
    }
    if let Ok(log) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("shim.log")) {
        let _ = nix::unistd::dup2(log.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(log.as_raw_fd(), 2);
    }
}

/// Attached clients and the container's stdin, shared by the shim's threads.
#[derive(Default)]
struct Streams {
    clients: Vec<UnixStream>,
    stdin: Option<File>,
}

fn send_frame(stream: &mut UnixStream, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut header = [0u8; 5];
    header[0] = kind;
    header[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    stream.write_all(&header)?;
    stream.write_all(payload)
}

fn supervise(dir: &Path, config: &ShimConfig, created: Created) -> i32 {
    let log = match LogWriter::open(&config.log_path, config.log_max_bytes, config.log_max_files) {
        Ok(log) => Arc::new(Mutex::new(log)),
        Err(err) => {
            eprintln!("log {}: {err}", config.log_path.display());
            return 1;
        }
    };
    let streams = Arc::new(Mutex::new(Streams::default()));
    let terminal = created.terminal.map(File::from);
    {
        let mut guard = streams.lock().unwrap_or_else(|p| p.into_inner());
        guard.stdin = match (&terminal, created.stdin) {
            (Some(terminal), _) => terminal.try_clone().ok(),
            (None, Some(stdin)) => Some(File::from(stdin)),
            (None, None) => None,
        };
    }

    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let mut readers = 0;
    let sources: Vec<(File, Stream)> = match terminal {
        Some(terminal) => vec![(terminal, Stream::Stdout)],
        None => [(created.stdout, Stream::Stdout), (created.stderr, Stream::Stderr)]
            .into_iter()
            .filter_map(|(fd, stream)| fd.map(|fd| (File::from(fd), stream)))
            .collect(),
    };
    for (source, stream) in sources {
        readers += 1;
        let log = log.clone();
        let streams = streams.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            pump(source, stream, &log, &streams);
            let _ = done.send(());
        });
    }
    drop(done_tx);

    let control = match created.control {
        Some(listener) => Ok(listener),
        None => {
            let _ = std::fs::remove_file(CONTROL_SOCKET);
            UnixListener::bind(CONTROL_SOCKET)
        }
    };
    match control {
        Ok(listener) => {
            let log = log.clone();
            let streams = streams.clone();
            let stdin_once = config.stdin_once;
            std::thread::spawn(move || serve_control(listener, &log, &streams, stdin_once));
        }
        Err(err) => eprintln!("control socket: {err}"),
    }

    let status = wait_for(created.pid);
    // Output written just before the exit is still in the pipes: give the readers a moment to drain them, but
    // do not wait for daemons that inherited the pipes and outlive the init (possible without a PID namespace).
    for _ in 0..readers {
        if done_rx.recv_timeout(Duration::from_secs(2)).is_err() {
            break;
        }
    }
    // Attached clients see the end of the streams.
    for client in streams.lock().unwrap_or_else(|p| p.into_inner()).clients.drain(..) {
        let _ = client.shutdown(std::net::Shutdown::Both);
    }
    let (exit_code, signal) = match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, signal, _) => (128 + signal as i32, Some(signal.as_str().to_string())),
        _ => (255, None),
    };
    let oom_killed = Cgroups::detect().oom_kills(&config.cgroup) > 0;
    let record = ExitRecord { exit_code, signal, oom_killed, finished_at: state::now_nanos(), message: String::new() };
    if let Err(err) = state::write_json(&dir.join(state::EXIT_FILE), &record) {
        eprintln!("exit record: {err}");
        return 1;
    }
    let _ = std::fs::remove_file(dir.join(CONTROL_SOCKET));
    0
}

/// Reaps children until the container's init exits; orphans re-parented to the shim are reaped on the way.
fn wait_for(init: Pid) -> WaitStatus {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _))) if pid == init => {
                return status;
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            // No children left: the init was reaped elsewhere, which cannot happen while the shim lives.
            Err(_) => return WaitStatus::StillAlive,
        }
    }
}

fn pump(mut source: File, stream: Stream, log: &Mutex<LogWriter>, streams: &Mutex<Streams>) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 32 * 1024];
    let kind = match stream {
        Stream::Stdout => frame::STDOUT,
        Stream::Stderr => frame::STDERR,
    };
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            // A terminal's master reads EIO once the last slave closes: the end of the stream.
            Err(_) => break,
        };
        {
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            splitter.feed(&buf[..n], |partial, content| {
                if let Err(err) = log.write_entry(stream, partial, content) {
                    eprintln!("log write: {err}");
                }
            });
        }
        let mut guard = streams.lock().unwrap_or_else(|p| p.into_inner());
        guard.clients.retain_mut(|client| send_frame(client, kind, &buf[..n]).is_ok());
    }
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    splitter.finish(|partial, content| {
        if let Err(err) = log.write_entry(stream, partial, content) {
            eprintln!("log write: {err}");
        }
    });
}

/// Serves the control socket: each connection sends one command line, `reopen` (the log) or `attach`
/// (followed by attach frames both ways).
fn serve_control(listener: UnixListener, log: &Arc<Mutex<LogWriter>>, streams: &Arc<Mutex<Streams>>, stdin_once: bool) {
    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        let mut reader = BufReader::new(match connection.try_clone() {
            Ok(reader) => reader,
            Err(_) => continue,
        });
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let mut connection = connection;
        match line.trim() {
            "reopen" => {
                let result = log.lock().unwrap_or_else(|p| p.into_inner()).reopen();
                let _ = match result {
                    Ok(()) => connection.write_all(b"ok\n"),
                    Err(err) => connection.write_all(format!("error {err}\n").as_bytes()),
                };
            }
            "attach" => {
                if connection.write_all(b"ok\n").is_err() {
                    continue;
                }
                if let Ok(output) = connection.try_clone() {
                    streams.lock().unwrap_or_else(|p| p.into_inner()).clients.push(output);
                }
                let streams = streams.clone();
                std::thread::spawn(move || forward_input(reader, &streams, stdin_once));
            }
            other => {
                let _ = connection.write_all(format!("error unknown command {other:?}\n").as_bytes());
            }
        }
    }
}

/// Copies an attached client's stdin frames into the container and applies its resizes.
fn forward_input(mut reader: BufReader<UnixStream>, streams: &Mutex<Streams>, stdin_once: bool) {
    loop {
        let mut header = [0u8; 5];
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut payload = vec![0u8; len.min(1 << 20)];
        if reader.read_exact(&mut payload).is_err() {
            break;
        }
        let mut guard = streams.lock().unwrap_or_else(|p| p.into_inner());
        match header[0] {
            frame::STDIN => {
                if let Some(stdin) = guard.stdin.as_mut()
                    && stdin.write_all(&payload).is_err()
                {
                    guard.stdin = None;
                }
            }
            // Only a stdin_once container loses its stdin when a client is done with it; others keep it open
            // for the next attach.
            frame::CLOSE_STDIN if stdin_once => guard.stdin = None,
            frame::RESIZE if payload.len() == 4 => {
                if let Some(terminal) = guard.stdin.as_ref() {
                    let size = rustix::termios::Winsize {
                        ws_col: u16::from_be_bytes([payload[0], payload[1]]),
                        ws_row: u16::from_be_bytes([payload[2], payload[3]]),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    let _ = rustix::termios::tcsetwinsize(terminal, size);
                }
            }
            _ => {}
        }
    }
    if stdin_once {
        streams.lock().unwrap_or_else(|p| p.into_inner()).stdin = None;
    }
}

fn run_exec(request_path: &Path) -> i32 {
    let request: ExecRequest = match state::read_json(request_path) {
        Ok(request) => request,
        Err(err) => {
            eprintln!("exec request: {err}");
            return 2;
        }
    };
    let result = exec_in_container(&request);
    let exit = result.exit_code.unwrap_or(1);
    if let Err(err) = state::write_json(&request.result_path, &result) {
        eprintln!("exec result: {err}");
        return 2;
    }
    exit
}

/// Where the exec helper records the PID of the command it started (beside the result file).
pub fn exec_pid_path(result_path: &Path) -> PathBuf {
    result_path.with_extension("pid")
}

/// The exec'd process: the container's process with other arguments and, when asked, a terminal.
fn write_exec_process(request: &ExecRequest, terminal: bool, path: &Path) -> Result<(), String> {
    let spec: oci_spec::runtime::Spec =
        state::read_json(&request.bundle.join("config.json")).map_err(|e| e.to_string())?;
    let mut process = spec.process().clone().ok_or_else(|| "the container's spec has no process".to_string())?;
    process.set_args(Some(request.args.clone()));
    process.set_terminal(Some(terminal));
    state::write_json(path, &process).map_err(|e| e.to_string())
}

fn exec_in_container(request: &ExecRequest) -> ExecResult {
    let builder = match ContainerBuilder::new(request.id.clone(), SyscallType::default())
        .with_root_path(&request.libcontainer_root)
    {
        Ok(builder) => builder,
        Err(err) => return ExecResult { exit_code: None, error: Some(format!("libcontainer root: {err}")) },
    };
    // With a terminal, libcontainer sends the terminal to the runtime's socket and leaves the process to us.
    let terminal = request.console_socket.is_some();
    let process_path = request.result_path.with_extension("process.json");
    if let Err(error) = write_exec_process(request, terminal, &process_path) {
        return ExecResult { exit_code: None, error: Some(error) };
    }
    let built = builder
        .with_console_socket(request.console_socket.as_ref())
        .with_executor(DefaultSignals)
        .as_tenant()
        .with_process(Some(&process_path))
        .with_detach(terminal)
        .build();
    let _ = std::fs::remove_file(&process_path);
    let pid = match built {
        Ok(pid) => pid,
        Err(err) => return ExecResult { exit_code: None, error: Some(err.to_string()) },
    };
    // The runtime kills the command itself when it runs past its deadline: killing this helper would leave it
    // running in the container.
    let _ = std::fs::write(exec_pid_path(&request.result_path), pid.as_raw().to_string());
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return ExecResult { exit_code: Some(code), error: None },
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                return ExecResult { exit_code: Some(128 + signal as i32), error: None };
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return ExecResult { exit_code: None, error: Some(format!("wait: {err}")) },
        }
    }
}
