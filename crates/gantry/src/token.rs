//! `gantry token`: show or rotate the join token new nodes use (`gantry agent --server URL --token TOKEN`).

use std::path::PathBuf;

use anyhow::Context;
use gantry_api::k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Print the join token.
    Show(TokenArgs),
    /// Replace the join token: the old one stops working at once; nodes that joined keep working.
    Rotate(TokenArgs),
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The server's data directory. Default: /var/lib/gantry as root, else $XDG_DATA_HOME/gantry.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(command: TokenCommand, default_data_dir: PathBuf) -> anyhow::Result<()> {
    match command {
        TokenCommand::Show(args) => {
            let path = args.data_dir.unwrap_or(default_data_dir).join(gantry_apiserver::join::TOKEN_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("reading {} (has `gantry server` or `gantry up` run here?)", path.display())
            })?;
            let token = gantry_api::join::JoinToken::parse(&text).with_context(|| path.display().to_string())?;
            println!("{token}");
            Ok(())
        }
        TokenCommand::Rotate(args) => {
            let data_dir = args.data_dir.unwrap_or(default_data_dir);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(rotate(&data_dir))
        }
    }
}

async fn rotate(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let ca_path = data_dir.join("pki/ca.crt");
    let ca = std::fs::read_to_string(&ca_path)
        .with_context(|| format!("reading {} (has `gantry server` or `gantry up` run here?)", ca_path.display()))?;
    let client = crate::client_from(&data_dir.join("kubeconfig"), "gantry").await?;
    let secrets: Api<Secret> = Api::namespaced(client, gantry_api::join::TOKEN_NAMESPACE);
    let token = gantry_apiserver::join::generate(&ca)?;
    let secret: Secret = serde_json::from_value(gantry_apiserver::join::token_secret(&token))?;
    secrets.create(&PostParams::default(), &secret).await.context("storing the new token (is the server running?)")?;
    let path = data_dir.join(gantry_apiserver::join::TOKEN_FILE);
    gantry_apiserver::pki::write_private(&path, &format!("{token}\n"), 0o600)?;
    let old = secrets.list(&ListParams::default().labels("gantry.io/join-token=true")).await?;
    for secret in old {
        let Some(name) = secret.metadata.name else { continue };
        if name != token.secret_name() {
            secrets.delete(&name, &DeleteParams::default()).await.with_context(|| format!("deleting {name}"))?;
        }
    }
    println!("{token}");
    Ok(())
}
