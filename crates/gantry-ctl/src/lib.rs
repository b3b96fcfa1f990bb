//! `gantry ctl`: kubectl's everyday verbs for people without kubectl: `get`, `describe`, `apply`, `delete`,
//! `logs`, `exec` and `rollout status`, with kubectl's syntax, output and exit codes.
//!
//! The crate owns the client side only; everything it knows about the cluster comes from the API server:
//! resource types from discovery ([`discovery`]), tables from the server's `Table` rendering ([`table`]).
//! Invariants: a failure prints one line on stderr (`error: ...`, or `Error from server (Reason): message`
//! for a `Status` from the API server) and the process exits 1, except `exec`, which exits with the remote
//! command's code. Nothing read from the user, a file or the network is unwrapped.

pub mod apply;
pub mod config;
pub mod delete;
pub mod describe;
pub mod discovery;
pub mod exec;
pub mod get;
pub mod logs;
pub mod patch;
pub mod rollout;
pub mod table;
pub mod tabwriter;
pub mod time;
pub mod yaml;

use std::path::PathBuf;

/// `gantry ctl`'s command line: the connection flags kubectl takes on every verb, and the verb.
#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// The kubeconfig file. Default: $KUBECONFIG (a colon-separated list of files, merged), else ~/.kube/config.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use. Default: the file's current-context.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace. Default: the context's namespace, else `default`.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The verb.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The verbs of `gantry ctl`.
#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// Display one or many resources.
    Get(get::GetArgs),
    /// Show details of a specific resource.
    Describe(describe::DescribeArgs),
    /// Apply a configuration to a resource by file name or stdin (client-side apply).
    Apply(apply::ApplyArgs),
    /// Delete resources by file names, stdin, resources and names, or by resources and label selector.
    Delete(delete::DeleteArgs),
    /// Print the logs for a container in a pod.
    Logs(logs::LogsArgs),
    /// Execute a command in a container.
    Exec(exec::ExecArgs),
    /// Manage the rollout of a resource.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
}

/// What can go wrong in `gantry ctl`; [`report`] turns it into kubectl's one line.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The kubeconfig could not be read or used.
    #[error("{0}")]
    Kubeconfig(String),
    /// The API server answered with a `Status`.
    #[error("Error from server ({}): {}", .0.reason, .0.message)]
    Api(Box<kube::core::Status>),
    /// The API server could not be reached, or its answer was not understood.
    #[error("{context}: {source}")]
    Client {
        /// What was being done.
        context: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A resource type that discovery does not know.
    #[error("the server doesn't have a resource type \"{0}\"")]
    UnknownResource(String),
    /// A kind in a file that discovery does not know.
    #[error(
        "resource mapping not found for name: \"{name}\" namespace: \"{namespace}\" from \"{source_name}\": no matches for kind \"{kind}\" in version \"{api_version}\""
    )]
    UnknownKind {
        /// The object's name.
        name: String,
        /// The object's namespace.
        namespace: String,
        /// The file the object came from.
        source_name: String,
        /// The object's kind.
        kind: String,
        /// The object's apiVersion.
        api_version: String,
    },
    /// The command line is not valid (the message says why, in kubectl's words).
    #[error("{0}")]
    Usage(String),
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest could not be parsed.
    #[error("error parsing {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// Writing to stdout or stderr failed.
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
    /// A JSON document could not be encoded or decoded.
    #[error("{context}: {source}")]
    Json {
        /// What was being encoded or decoded.
        context: String,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// A wait ran out of time.
    #[error("timed out waiting for the condition")]
    Timeout,
    /// A deployment's rollout stopped progressing.
    #[error("deployment \"{0}\" exceeded its progress deadline")]
    ProgressDeadline(String),
    /// The errors were already printed, one per object; the command exits 1.
    #[error("")]
    AlreadyReported,
    /// The remote command of `exec` exited with this code (already reported on stderr).
    #[error("command terminated with exit code {0}")]
    ExitCode(i32),
}

impl CtlError {
    /// An error of the client, with what was being done.
    pub fn client(context: impl Into<String>, source: kube::Error) -> CtlError {
        match source {
            kube::Error::Api(status) => CtlError::Api(status),
            source => CtlError::Client { context: context.into(), source },
        }
    }

    /// Whether this is the API server's NotFound.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CtlError::Api(status) if status.code == 404 || status.reason == "NotFound")
    }
}

/// The result of the crate's operations.
pub type Result<T, E = CtlError> = std::result::Result<T, E>;

/// kubectl's line for an error: `Error from server (Reason): message` for the API's Status, else
/// `error: ...`; `None` when the error was already reported.
pub fn report(err: &CtlError) -> Option<String> {
    match err {
        CtlError::AlreadyReported | CtlError::ExitCode(_) => None,
        CtlError::Api(status) => Some(api_error_line(status)),
        other => Some(format!("error: {other}")),
    }
}

/// `Error from server (Reason): message`, as kubectl prints a Status.
pub fn api_error_line(status: &kube::core::Status) -> String {
    let reason = if status.reason.is_empty() { "InternalError".to_string() } else { status.reason.clone() };
    format!("Error from server ({reason}): {}", status.message)
}

/// Runs one `gantry ctl` command and returns the process's exit code (errors are printed here).
pub fn run(args: CtlArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return 1;
        }
    };
    let result = runtime.block_on(run_async(args));
    // A `logs -f` or `exec` may leave a blocked stdin reader behind: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => 0,
        Err(CtlError::ExitCode(code)) => code,
        Err(err) => {
            if let Some(line) = report(&err) {
                eprintln!("{line}");
            }
            1
        }
    }
}

async fn run_async(args: CtlArgs) -> Result<()> {
    let cx = config::Context::connect(args.kubeconfig.as_deref(), args.context.as_deref(), args.namespace).await?;
    match args.command {
        CtlCommand::Get(get) => get::run(&cx, get).await,
        CtlCommand::Describe(describe) => describe::run(&cx, describe).await,
        CtlCommand::Apply(apply) => apply::run(&cx, apply).await,
        CtlCommand::Delete(delete) => delete::run(&cx, delete).await,
        CtlCommand::Logs(logs) => logs::run(&cx, logs).await,
        CtlCommand::Exec(exec) => exec::run(&cx, exec).await,
        CtlCommand::Rollout(rollout) => rollout::run(&cx, rollout).await,
    }
}
