//! The `gantry` binary: one executable for every role of a Gantry cluster. Today it carries the store tools;
//! the API server, scheduler, controllers and node agent join as they are built.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gantry_store::Store;
use gantry_store::sqlite::{SqliteConfig, SqliteStore};

#[derive(Parser)]
#[command(name = "gantry", version, about = "A Kubernetes-compatible container orchestrator in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version of this binary.
    Version,
    /// Inspect the embedded store.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Show the revision, compaction point and key count of the embedded SQLite store.
    Status {
        /// Gantry's data directory; the store lives in DIR/db/state.db. Default: /var/lib/gantry as root, else
        /// $XDG_DATA_HOME/gantry.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// `/var/lib/gantry` for root, else `$XDG_DATA_HOME/gantry` (or `~/.local/share/gantry`).
fn default_data_dir() -> PathBuf {
    let is_root =
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/gantry");
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("gantry");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/gantry"),
        None => PathBuf::from("gantry-data"),
    }
}

fn main() -> std::process::ExitCode {
    // One line per failure, whatever RUST_BACKTRACE says: this is for people, not for debugging.
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("gantry {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Store(StoreCommand::Status { data_dir }) => store_status(&data_dir.unwrap_or_else(default_data_dir)),
    }
}

fn store_status(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let path = data_dir.join("db").join("state.db");
    anyhow::ensure!(
        path.exists(),
        "no store at {} (has Gantry run with --data-dir {}?)",
        path.display(),
        data_dir.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime
        .block_on(async {
            // Inspection must not move the compaction point.
            let store = SqliteStore::open(SqliteConfig::new(&path).with_compaction(None))?;
            let revision = store.current_revision().await?;
            let keys = store.count(b"").await?;
            println!("store:      {}", path.display());
            println!("revision:   {revision}");
            println!("compacted:  {}", store.compacted_revision());
            println!("keys:       {keys}");
            Ok::<_, gantry_store::StoreError>(())
        })
        .with_context(|| format!("reading {}", path.display()))
}
