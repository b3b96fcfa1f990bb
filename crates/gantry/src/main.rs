//! The `gantry` binary: one executable for every role of a Gantry cluster. `gantry up` (a whole cluster on this
//! machine), `gantry server` (API server, scheduler, controller manager; or `gantry scheduler` and
//! `gantry controller-manager` alone), `gantry agent` (a node), and the tools around them: `ctl`, `doctor`,
//! `reset`, `token`, `image`, `why`, `store`. The containers' shim (`gantry shim`) is this binary too.

mod doctor;
mod image;
mod reset;
mod token;

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
    /// Run the control plane: the API server (the Kubernetes REST API over HTTPS), the scheduler and the
    /// controller manager.
    Server(ServerArgs),
    /// Run the scheduler alone, as a client of an API server.
    Scheduler(ClientArgs),
    /// Run the controller manager alone, as a client of an API server.
    ControllerManager(ControllerManagerArgs),
    /// Explain a pod's last scheduling attempt: which plugin rejected which nodes and why, and how the feasible
    /// nodes scored. Answered by the scheduler inside `gantry server`.
    Why(WhyArgs),
    /// Manage the node's images: list, pull, remove, import, prune.
    Image(image::ImageArgs),
    /// Run the node agent: register this machine as a Node and run the pods bound to it.
    Agent(AgentArgs),
    /// Run a whole cluster on this machine in one process: the control plane (embedded store by default) and a
    /// node agent.
    Up(UpArgs),
    /// Show or rotate the token new nodes join with.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// kubectl's everyday verbs: get, describe, apply, delete, logs, exec, rollout status.
    Ctl(gantry_ctl::CtlArgs),
    /// Stop every pod of this node and remove all of Gantry's state on this machine: containers, mounts, cgroups,
    /// the pod network, the data directory.
    Reset(reset::ResetArgs),
    /// Check that this machine has what a node needs, and say in one line per problem how to fix it.
    Doctor(doctor::DoctorArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// Gantry's data directory (store, certificates, kubeconfig, images, pods). Default: /var/lib/gantry as root,
    /// else $XDG_DATA_HOME/gantry.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    api: ApiServerArgs,
    /// Also write the admin kubeconfig here.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// The Node's name. Default: the hostname.
    #[arg(long)]
    node_name: Option<String>,
    /// This node's pods' address range. Default: one from --cluster-cidr, given by node IPAM (10.42.0.0/24 first).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// The node API's port (the kubelet's 10250 by default).
    #[arg(long, default_value_t = 10250)]
    node_api_port: u16,
    /// The Node's InternalIP, which the API server and the other nodes reach it at. Default: the address of the
    /// default route's interface.
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The cluster domain: Services resolve as NAME.NAMESPACE.svc.DOMAIN. (The cluster DNS address is the
    /// server's --cluster-dns.)
    #[arg(long, default_value = gantry_dns::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
}

/// The node agent's cluster DNS flags, as the kubelet's.
#[derive(clap::Args)]
struct ClusterDnsArgs {
    /// The cluster DNS address written into pods' resolv.conf (the kube-dns Service's ClusterIP); the node serves
    /// DNS on its InternalIP port 53 for it. `none` serves no DNS and leaves pods on the node's resolver.
    #[arg(long, default_value = "10.43.0.10", value_parser = parse_cluster_dns)]
    cluster_dns: ClusterDnsAddr,
    /// The cluster domain: Services resolve as NAME.NAMESPACE.svc.DOMAIN.
    #[arg(long, default_value = gantry_dns::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
}

/// `--cluster-dns`: an address, or none.
#[derive(Clone, Copy)]
struct ClusterDnsAddr(Option<std::net::IpAddr>);

fn parse_cluster_dns(text: &str) -> Result<ClusterDnsAddr, String> {
    match text {
        "" | "none" => Ok(ClusterDnsAddr(None)),
        _ => text.parse().map(|ip| ClusterDnsAddr(Some(ip))).map_err(|_| format!("{text:?} is not an IP address")),
    }
}

impl ClusterDnsArgs {
    fn apply(&self, config: &mut gantry_agent::agent::AgentConfig) {
        config.cluster_dns = self.cluster_dns.0;
        config.cluster_domain = self.cluster_domain.trim_end_matches('.').to_string();
    }
}

/// What the controller manager allocates from and how fast it gives up on silent nodes.
#[derive(clap::Args)]
struct ClusterArgs {
    /// The pods' addresses, split into one range per node (spec.podCIDR) by node IPAM.
    #[arg(long, default_value = gantry_controllers::nodeipam::DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: String,
    /// The prefix length of each node's range.
    #[arg(long, default_value_t = gantry_controllers::nodeipam::DEFAULT_NODE_MASK)]
    node_cidr_mask_size: u8,
    /// How long a node may stay silent before it is marked NotReady (Unknown), e.g. `40s`.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
}

impl ClusterArgs {
    fn controllers(&self) -> anyhow::Result<gantry_controllers::ControllerManagerConfig> {
        let mut config = gantry_controllers::ControllerManagerConfig::new(identity());
        let ipam = gantry_controllers::nodeipam::NodeIpamConfig {
            cluster_cidr: self.cluster_cidr.clone(),
            node_mask: self.node_cidr_mask_size,
        };
        ipam.ranges().context("--cluster-cidr and --node-cidr-mask-size")?;
        config.node_ipam = Some(ipam);
        config.node_lifecycle.grace_period = self.node_monitor_grace_period;
        Ok(config)
    }
}

/// `40s`, `2m`, `1h` or plain seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 40s or 2m"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        _ => return Err(format!("{text:?} is not a duration such as 40s or 2m")),
    };
    Ok(std::time::Duration::from_secs(seconds))
}

#[derive(clap::Args)]
struct AgentArgs {
    /// Gantry's data directory (images, pods, container state). Default: /var/lib/gantry as root, else
    /// $XDG_DATA_HOME/gantry.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The API server's URL, with --token.
    #[arg(long, requires = "token", conflicts_with = "kubeconfig")]
    server: Option<String>,
    /// The cluster's join token (the server's DATA/node-token) with --server: the agent fetches and checks the
    /// cluster CA, and the server issues the node's client certificate. Any other token is used as a bearer
    /// token (with --certificate-authority).
    #[arg(long, requires = "server")]
    token: Option<String>,
    /// The CA that signed the API server's certificate, with --server. Default: DATA/pki/ca.crt.
    #[arg(long, requires = "server")]
    certificate_authority: Option<PathBuf>,
    /// A kubeconfig to reach the API server with (instead of --server and --token).
    #[arg(long, required_unless_present = "server")]
    kubeconfig: Option<PathBuf>,
    /// The Node's name. Default: the hostname.
    #[arg(long)]
    node_name: Option<String>,
    /// A label for the Node, KEY=VALUE (repeatable).
    #[arg(long = "node-label", value_parser = parse_label)]
    node_labels: Vec<(String, String)>,
    /// The pods' address range on this node. Default: the Node's spec.podCIDR, given by node IPAM.
    #[arg(long)]
    pod_cidr: Option<String>,
    /// The Node's InternalIP, which the API server and the other nodes reach it at. Default: the address of the
    /// default route's interface.
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// The cgroup (in every hierarchy) that holds the pods.
    #[arg(long, default_value = "gantry")]
    cgroup_root: String,
    /// The node API's port (the kubelet's 10250 by default).
    #[arg(long, default_value_t = 10250)]
    node_api_port: u16,
    /// The static pods' manifest directory. Default: DATA/manifests.
    #[arg(long)]
    pod_manifests: Option<PathBuf>,
    #[command(flatten)]
    dns: ClusterDnsArgs,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[derive(clap::Args)]
struct WhyArgs {
    /// The pod: `pod/NAME`, `pods/NAME` or `NAME`.
    pod: String,
    /// The pod's namespace. Default: the kubeconfig context's namespace, else `default`.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// The kubeconfig. Default: $KUBECONFIG, else ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// `json` prints the server's `SchedulingAttempt` document (indented) instead of tables.
    #[arg(short = 'o', long, value_enum)]
    output: Option<WhyOutput>,
    /// How many of the best-scored feasible nodes to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Also list every rejected node on a line of its own, with the plugin and the reason.
    #[arg(short = 'v', long)]
    nodes: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WhyOutput {
    Json,
}

#[derive(clap::Args)]
struct ControllerManagerArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Args)]
struct ClientArgs {
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
    #[command(flatten)]
    api: ApiServerArgs,
    /// Do not run the scheduler in this process (run `gantry scheduler` elsewhere instead).
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the controller manager in this process (run `gantry controller-manager` elsewhere instead).
    #[arg(long)]
    disable_controllers: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// The API server's flags, shared by `gantry server` and `gantry up`.
#[derive(clap::Args)]
struct ApiServerArgs {
    /// The API server's HTTPS port.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// The address the API server listens on.
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
    /// The range Services' cluster IPs come from (IPv4 CIDR, /12 to /28).
    #[arg(long, default_value = gantry_apiserver::services::ServiceNetwork::DEFAULT_RANGE)]
    service_cluster_ip_range: gantry_apiserver::services::Ipv4Cidr,
    /// The range NodePort and LoadBalancer Services' node ports come from (FIRST-LAST).
    #[arg(long, default_value = gantry_apiserver::services::ServiceNetwork::DEFAULT_NODE_PORTS)]
    service_node_port_range: gantry_apiserver::services::PortRange,
    /// The cluster DNS Service's address (kube-system/kube-dns). Default: the service range's 10th address.
    #[arg(long)]
    cluster_dns: Option<std::net::Ipv4Addr>,
}

impl ApiServerArgs {
    fn config(&self, data_dir: &std::path::Path) -> anyhow::Result<gantry_apiserver::ServerConfig> {
        let services = gantry_apiserver::services::ServiceNetwork::new(
            self.service_cluster_ip_range,
            self.service_node_port_range,
            self.cluster_dns,
        )?;
        Ok(gantry_apiserver::ServerConfig {
            data_dir: data_dir.to_path_buf(),
            bind_address: self.bind_address,
            secure_port: self.secure_port,
            tls_sans: serving_names(self.bind_address, self.tls_san.clone()),
            token_file: self.token_file.clone(),
            services,
        })
    }
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
    // `gantry shim run DIR` and `gantry shim exec REQUEST` are the container runtime re-executing this binary
    // as a container's shim or exec helper. They must start single-threaded and without an async runtime (they
    // create containers, which forks), so they are dispatched before anything else, and kept out of `--help`.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        // The container's init and the exec helper inherit this stderr, which is the container's own output:
        // libcontainer's warnings (a missing seccomp, every v1 controller the kernel lacks) would end up in the
        // container's log. Only errors are written.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("error"))
            .with_writer(std::io::stderr)
            .init();
        let code = gantry_runtime::native::shim::main(&args[2..]);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // `gantry ctl` answers a command line it cannot use as kubectl does: exit code 1, not clap's 2 (help
            // and version still exit 0).
            let ctl = std::env::args().nth(1).as_deref() == Some("ctl");
            let code = if ctl && err.use_stderr() { 1 } else { err.exit_code() };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    // A client command reports its one failure itself; the client library's own log of it would repeat it.
    // libcontainer's cgroup manager warns about every v1 controller the kernel lacks, for every container.
    let default_filter = if matches!(cli.command, Command::Why(_)) {
        "warn,kube_client=off"
    } else {
        "warn,libcgroups=error,kube_client::client::tls=error"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Version => {
            println!("gantry {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Store(StoreCommand::Status { data_dir }) => store_status(&data_dir.unwrap_or_else(default_data_dir)),
        Command::Server(args) => server(args),
        Command::Scheduler(args) => scheduler(args),
        Command::ControllerManager(args) => controller_manager(args),
        Command::Why(args) => why(args),
        Command::Image(args) => image::run(args, default_data_dir()),
        Command::Agent(args) => agent(args),
        Command::Up(args) => up(args),
        Command::Token(command) => token::run(command, default_data_dir()),
        Command::Ctl(args) => std::process::exit(gantry_ctl::run(args)),
        Command::Reset(args) => reset::run(args, default_data_dir()),
        Command::Doctor(args) => doctor::run(args, default_data_dir()),
    }
}

/// A client for one of Gantry's components. Its user agent (`gantry-scheduler/0.1.0`) names the component in
/// the API server's logs and, as the default field manager, in the objects' `managedFields`.
async fn client_from(kubeconfig: &std::path::Path, component: &str) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(with_user_agent(config_from(Some(kubeconfig)).await?, component))?)
}

fn with_user_agent(mut config: kube::Config, component: &str) -> kube::Config {
    let agent = format!("{component}/{}", env!("CARGO_PKG_VERSION"));
    if let Ok(value) = http::HeaderValue::from_str(&agent) {
        config.headers.push((http::header::USER_AGENT, value));
    }
    config
}

/// The client configuration from `kubeconfig`, else as kubectl finds it: `$KUBECONFIG` (a list of files,
/// merged), else `~/.kube/config`.
async fn config_from(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Config> {
    let (file, which) = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            (file, path.display().to_string())
        }
        None => {
            let file = kube::config::Kubeconfig::read()
                .context("reading the kubeconfig ($KUBECONFIG, else ~/.kube/config; or pass --kubeconfig)")?;
            (file, "from $KUBECONFIG or ~/.kube/config".to_string())
        }
    };
    kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("using the kubeconfig {which}"))
}

/// The name in `pod/NAME`, `pods/NAME`, `po/NAME` or `NAME`.
fn pod_name(arg: &str) -> anyhow::Result<&str> {
    let name = match arg.split_once('/') {
        Some(("pod" | "pods" | "po", name)) => name,
        Some((kind, _)) => anyhow::bail!("gantry why explains pods only, not {kind} (use pod/NAME)"),
        None => arg,
    };
    anyhow::ensure!(is_object_name(name), "{arg:?} is not a pod name (use pod/NAME)");
    Ok(name)
}

/// Whether `name` could name a pod or a namespace (DNS subdomain characters), so that it is one segment of a
/// URL path as it is.
fn is_object_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Asks the API server's scheduler about a pod's last attempt and prints the answer.
fn why(args: WhyArgs) -> anyhow::Result<()> {
    use gantry_scheduler::explain::{RenderOptions, SchedulingAttempt};
    let name = pod_name(&args.pod)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let text = runtime.block_on(async {
        let mut config = config_from(args.kubeconfig.as_deref()).await?;
        // A server without a scheduler answers 503 for good, not for a moment: retrying would only delay the
        // answer.
        config.default_retry = false;
        let namespace = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        anyhow::ensure!(is_object_name(&namespace), "{namespace:?} is not a namespace name");
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config)?;
        let path = format!("/gantry/v1/namespaces/{namespace}/pods/{name}/scheduling");
        let request = http::Request::get(&path).body(Vec::new()).with_context(|| format!("building GET {path}"))?;
        match client.request_text(request).await {
            Ok(text) => Ok(text),
            // The server's Status says what is missing and why, in a sentence of its own.
            Err(kube::Error::Api(status)) if !status.message.is_empty() => Err(anyhow::anyhow!("{}", status.message)),
            Err(kube::Error::Api(status)) => {
                Err(anyhow::anyhow!("the API server at {server} answered {} {}", status.code, status.reason))
            }
            Err(err) => Err(anyhow::Error::new(err).context(format!("asking the API server at {server}"))),
        }
    })?;
    let doc = SchedulingAttempt::parse(&text).context("reading the server's answer")?;
    match args.output {
        Some(WhyOutput::Json) => {
            let value: serde_json::Value = serde_json::from_str(&text).context("reading the server's answer")?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        None => print!("{}", doc.render(&RenderOptions { top: args.top, nodes: args.nodes })),
    }
    Ok(())
}

/// Answers `gantry why` for the API server from the scheduler running in the same process.
struct SchedulerExplainer(gantry_scheduler::runtime::SchedulerHandle);

impl gantry_apiserver::SchedulingExplainer for SchedulerExplainer {
    fn last_attempt(&self, namespace: &str, name: &str) -> Option<serde_json::Value> {
        let attempt = self.0.last_attempt(namespace, name)?;
        Some(gantry_scheduler::explain::SchedulingAttempt::from_attempt(namespace, name, &attempt).to_json())
    }

    fn attempts_kept(&self) -> usize {
        gantry_scheduler::runtime::ATTEMPTS_KEPT
    }
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

fn scheduler(args: ClientArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = client_from(&args.kubeconfig, "gantry-scheduler").await?;
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

/// PEM of DER certificates.
fn pem_of(certificates: &[Vec<u8>]) -> String {
    use base64::Engine as _;
    let mut pem = String::new();
    for der in certificates {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        for line in text.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// The agent's client and the cluster CA (PEM): from its kubeconfig, or from --server, --token and the CA file.
async fn agent_client(args: &AgentArgs, data_dir: &std::path::Path) -> anyhow::Result<(kube::Client, String)> {
    use base64::Engine as _;
    let (Some(server), Some(token)) = (&args.server, &args.token) else {
        let kubeconfig = args.kubeconfig.as_deref().context("--kubeconfig or --server with --token is required")?;
        let config = config_from(Some(kubeconfig)).await?;
        let ca = pem_of(config.root_cert.as_deref().unwrap_or_default());
        anyhow::ensure!(
            !ca.is_empty(),
            "the kubeconfig {} names no certificate authority: the node API needs the cluster CA",
            kubeconfig.display()
        );
        return Ok((kube::Client::try_from(with_user_agent(config, "gantry-agent"))?, ca));
    };
    if token.starts_with("gantry1::") {
        let join_token = gantry_api::join::JoinToken::parse(token)?;
        let node_name = match &args.node_name {
            Some(name) => name.clone(),
            None => gantry_agent::machine::hostname().context("reading this machine's hostname (pass --node-name)")?,
        };
        let (client, ca) = gantry_agent::join::join(server, &join_token, &node_name, data_dir).await?;
        return Ok((client, ca));
    }
    let ca_path = args.certificate_authority.clone().unwrap_or_else(|| data_dir.join("pki/ca.crt"));
    let ca = std::fs::read(&ca_path)
        .with_context(|| format!("reading the cluster CA {} (pass --certificate-authority)", ca_path.display()))?;
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "gantry", "cluster": {
            "server": server,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(&ca),
        }}],
        "users": [{"name": "agent", "user": {"token": token}}],
        "contexts": [{"name": "agent", "context": {"cluster": "gantry", "user": "agent"}}],
        "current-context": "agent",
    });
    let file: kube::config::Kubeconfig = serde_json::from_value(kubeconfig).context("building the client config")?;
    let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("using the API server at {server}"))?;
    Ok((kube::Client::try_from(with_user_agent(config, "gantry-agent"))?, String::from_utf8_lossy(&ca).into_owned()))
}

fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let _lock = reset::lock_data_dir(&data_dir).map_err(|err| {
        anyhow::anyhow!(
            "{err:#} (an agent beside `gantry server` on one machine needs its own --data-dir; or run `gantry up`)"
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, cluster_ca) = agent_client(&args, &data_dir).await?;
        let program = std::env::current_exe().context("finding this binary (the containers' shim)")?;
        let shim = gantry_runtime::native::ShimCommand { program, args: vec!["shim".to_string()] };
        let mut config = gantry_agent::agent::AgentConfig::new(&data_dir, shim, cluster_ca);
        config.node_name = args.node_name.clone();
        config.node_labels = args.node_labels.iter().cloned().collect();
        config.pod_cidr = args.pod_cidr.clone();
        config.node_ip = args.node_ip;
        config.cgroup_root = args.cgroup_root.clone();
        config.node_api_listen = std::net::SocketAddr::from(([0, 0, 0, 0], args.node_api_port));
        if let Some(dir) = &args.pod_manifests {
            config.manifests_dir = Some(dir.clone());
        }
        args.dns.apply(&mut config);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let agent = gantry_agent::agent::start(client, config, shutdown.clone()).await?;
        println!("Gantry agent running as node {} (data in {})", agent.node_name, data_dir.display());
        wait_for_signal().await?;
        shutdown.cancel();
        agent.wait().await;
        Ok(())
    })
}

fn controller_manager(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = client_from(&args.client.kubeconfig, "gantry-controller-manager").await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        let config = args.cluster.controllers()?;
        gantry_controllers::start(client, config, shutdown.clone(), &mut tasks);
        println!("Gantry controller manager running against the API server of {}", args.client.kubeconfig.display());
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

/// The control plane in this process: the API server, and the scheduler and controllers as its clients.
async fn start_control_plane(
    config: gantry_apiserver::ServerConfig,
    store: std::sync::Arc<dyn Store>,
    scheduler: bool,
    controllers: Option<gantry_controllers::ControllerManagerConfig>,
    shutdown: &tokio_util::sync::CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<gantry_apiserver::RunningServer> {
    // The server stops last, on its own token (`RunningServer::shutdown`): the scheduler and controllers release
    // their Leases through it when `shutdown` fires.
    let server = gantry_apiserver::start(config, store, tokio_util::sync::CancellationToken::new()).await?;
    if scheduler {
        let client = client_from(&server.kubeconfig, "gantry-scheduler").await?;
        let handle = gantry_scheduler::runtime::start(client, scheduler_config(), shutdown.clone(), tasks);
        server.api.set_scheduling_explainer(std::sync::Arc::new(SchedulerExplainer(handle)))?;
    }
    if let Some(config) = controllers {
        let client = client_from(&server.kubeconfig, "gantry-controller-manager").await?;
        gantry_controllers::start(client, config, shutdown.clone(), tasks);
    }
    Ok(server)
}

fn server(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let _lock = reset::lock_data_dir(&data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = open_store(&args.api.store, &data_dir).await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let config = args.api.config(&data_dir)?;
        let mut tasks = tokio::task::JoinSet::new();
        let server = start_control_plane(
            config,
            store,
            !args.disable_scheduler,
            if args.disable_controllers { None } else { Some(args.cluster.controllers()?) },
            &shutdown,
            &mut tasks,
        )
        .await?;
        println!("Gantry API server listening on https://{}", server.addr);
        println!("Admin kubeconfig: {}", server.kubeconfig.display());
        println!("  export KUBECONFIG={}", server.kubeconfig.display());
        print_join_hint(&data_dir, server.addr);
        wait_for_signal().await?;
        tracing::info!("shutting down");
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        server.shutdown().await;
        Ok(())
    })
}

/// The serving certificate's extra names: those asked for, and, when listening on every address, the machine's
/// addresses, so that agents on other machines can verify the server at any of them.
fn serving_names(bind_address: std::net::IpAddr, mut names: Vec<String>) -> Vec<String> {
    if bind_address.is_unspecified() {
        names.extend(gantry_agent::machine::addresses().iter().map(ToString::to_string));
    }
    names
}

/// How to add a node: the token stays in its file, out of terminal scrollback.
fn print_join_hint(data_dir: &std::path::Path, addr: std::net::SocketAddr) {
    let host = match addr.ip() {
        ip if !ip.is_unspecified() => ip.to_string(),
        _ => gantry_agent::machine::internal_ip().map_or("<this machine's address>".to_string(), |ip| ip.to_string()),
    };
    println!("Add a node: on another machine, as root:");
    println!(
        "  gantry agent --server https://{host}:{} --token \"$(cat {})\"",
        addr.port(),
        data_dir.join(gantry_apiserver::join::TOKEN_FILE).display()
    );
}

/// `gantry up`: the control plane and a node agent for this machine, in one process. The agent stops first and
/// leaves its containers running; the next `gantry up` adopts them.
fn up(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let _lock = reset::lock_data_dir(&data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let started = std::time::Instant::now();
        let store = open_store(&args.api.store, &data_dir).await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let config = args.api.config(&data_dir)?;
        // The node serves the DNS address and proxies the range this server allocates from.
        let (cluster_dns, service_cidr) = (config.services.cluster_dns, config.services.cluster_ip_range.to_string());
        let mut tasks = tokio::task::JoinSet::new();
        let server =
            start_control_plane(config, store, true, Some(args.cluster.controllers()?), &shutdown, &mut tasks).await?;
        if let Some(path) = &args.write_kubeconfig {
            std::fs::copy(&server.kubeconfig, path)
                .with_context(|| format!("writing the kubeconfig to {}", path.display()))?;
        }

        let client = client_from(&server.kubeconfig, "gantry-agent").await?;
        let ca_path = data_dir.join("pki/ca.crt");
        let ca = std::fs::read_to_string(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
        let program = std::env::current_exe().context("finding this binary (the containers' shim)")?;
        let shim = gantry_runtime::native::ShimCommand { program, args: vec!["shim".to_string()] };
        let mut agent_config = gantry_agent::agent::AgentConfig::new(&data_dir, shim, ca);
        agent_config.node_name = args.node_name.clone();
        agent_config.pod_cidr = args.pod_cidr.clone();
        agent_config.node_ip = args.node_ip;
        agent_config.node_api_listen = std::net::SocketAddr::from(([0, 0, 0, 0], args.node_api_port));
        agent_config.cluster_dns = Some(cluster_dns.into());
        agent_config.cluster_domain = args.cluster_domain.trim_end_matches('.').to_string();
        agent_config.service_cidr = Some(service_cidr);
        let agent_shutdown = tokio_util::sync::CancellationToken::new();
        let agent = gantry_agent::agent::start(client, agent_config, agent_shutdown.clone()).await?;

        let kubeconfig = args.write_kubeconfig.clone().unwrap_or_else(|| server.kubeconfig.clone());
        println!(
            "Gantry is up in {:.1} s: API server on https://{}, node {}",
            started.elapsed().as_secs_f64(),
            server.addr,
            agent.node_name
        );
        println!("  export KUBECONFIG={}", kubeconfig.display());
        println!("  kubectl get nodes");
        print_join_hint(&data_dir, server.addr);
        wait_for_signal().await?;
        tracing::info!("shutting down");
        agent_shutdown.cancel();
        agent.wait().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_named_as_kubectl_names_them_and_other_kinds_are_refused() {
        for arg in ["web-1", "pod/web-1", "pods/web-1", "po/web-1"] {
            assert_eq!(pod_name(arg).unwrap(), "web-1");
        }
        let err = pod_name("deployment/web").unwrap_err().to_string();
        assert_eq!(err, "gantry why explains pods only, not deployment (use pod/NAME)");
        for bad in ["pod/", "", "pod/a/b", "web?watch=1", "we%2Fb"] {
            assert!(pod_name(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
