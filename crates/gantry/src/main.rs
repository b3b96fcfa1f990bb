//! The `gantry` binary: one executable for every role of a Gantry cluster. Today it carries the API server
//! (`gantry server`) and the store tools; the scheduler, controllers and node agent join as they are built.

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
    /// Run the API server (the Kubernetes REST API over HTTPS).
    Server(ServerArgs),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Gantry's data directory (store, certificates, kubeconfig). Default: /var/lib/gantry as root, else
    /// $XDG_DATA_HOME/gantry.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The HTTPS port.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// Where objects are stored: `sqlite` (embedded, in DATA_DIR/db) or `etcd://HOST:PORT[,HOST:PORT...]`.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// A static token file: lines of `token,user,uid[,"group1,group2"]`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Extra names (DNS or IP) for the serving certificate; repeatable.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
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
        Command::Server(args) => server(args),
    }
}

async fn open_store(spec: &str, data_dir: &std::path::Path) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if spec == "sqlite" {
        let dir = data_dir.join("db");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let store = SqliteStore::open(SqliteConfig::new(dir.join("state.db")))?;
        return Ok(std::sync::Arc::new(store));
    }
    if let Some(endpoints) = spec.strip_prefix("etcd://") {
        let endpoints: Vec<String> =
            endpoints.split(',').filter(|e| !e.is_empty()).map(|e| format!("http://{e}")).collect();
        anyhow::ensure!(!endpoints.is_empty(), "--store etcd:// needs at least one HOST:PORT");
        let config = gantry_store::etcd::EtcdConfig::new(endpoints, "");
        let store = gantry_store::etcd::EtcdStore::connect(config).await?;
        return Ok(std::sync::Arc::new(store));
    }
    anyhow::bail!("--store must be `sqlite` or `etcd://HOST:PORT[,HOST:PORT...]`, not {spec:?}")
}

fn server(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = open_store(&args.store, &data_dir).await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let config = gantry_apiserver::ServerConfig {
            data_dir: data_dir.clone(),
            bind_address: args.bind_address,
            secure_port: args.secure_port,
            tls_sans: args.tls_san,
            token_file: args.token_file,
        };
        let server = gantry_apiserver::start(config, store, shutdown.clone()).await?;
        println!("Gantry API server listening on https://{}", server.addr);
        println!("Admin kubeconfig: {}", server.kubeconfig.display());
        println!("  export KUBECONFIG={}", server.kubeconfig.display());
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(())
    })
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
