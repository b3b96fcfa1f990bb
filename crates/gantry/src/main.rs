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
    /// Run the control plane: the API server (the Kubernetes REST API over HTTPS) and the scheduler.
    Server(ServerArgs),
    /// Run the scheduler alone, as a client of an API server.
    Scheduler(SchedulerArgs),
}

#[derive(clap::Args)]
struct SchedulerArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long)]
    kubeconfig: PathBuf,
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
    /// Do not run the scheduler in this process (run `gantry scheduler` elsewhere instead).
    #[arg(long)]
    disable_scheduler: bool,
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
        Command::Scheduler(args) => scheduler(args),
    }
}

async fn client_from(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading the kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("using the kubeconfig {}", kubeconfig.display()))?;
    Ok(kube::Client::try_from(config)?)
}

/// This process's identity in leader elections: the host name and a random suffix.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{host}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn scheduler_config() -> gantry_scheduler::runtime::SchedulerConfig {
    gantry_scheduler::runtime::SchedulerConfig::with_default_profile(
        identity(),
        Some(gantry_lease::ElectionConfig::default()),
    )
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}

fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = client_from(&args.kubeconfig).await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        gantry_scheduler::runtime::start(client, scheduler_config(), shutdown.clone(), &mut tasks);
        println!("Gantry scheduler running against the API server of {}", args.kubeconfig.display());
        wait_for_signal().await?;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        Ok(())
    })
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
        let mut tasks = tokio::task::JoinSet::new();
        if !args.disable_scheduler {
            let client = client_from(&server.kubeconfig).await?;
            gantry_scheduler::runtime::start(client, scheduler_config(), shutdown.clone(), &mut tasks);
        }
        println!("Gantry API server listening on https://{}", server.addr);
        println!("Admin kubeconfig: {}", server.kubeconfig.display());
        println!("  export KUBECONFIG={}", server.kubeconfig.display());
        wait_for_signal().await?;
        tracing::info!("shutting down");
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
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
