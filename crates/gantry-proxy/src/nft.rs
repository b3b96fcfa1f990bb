//! Running the `nft` binary: a whole transaction goes to `nft -f -` on standard input, so that a file that fails
//! anywhere changes nothing.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// How to run `nft`: a program and the arguments before nft's own (tests use `ip netns exec NS nft`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftCommand {
    /// The program.
    pub program: PathBuf,
    /// Arguments that come before nft's.
    pub args: Vec<String>,
}

impl Default for NftCommand {
    fn default() -> NftCommand {
        NftCommand { program: PathBuf::from("nft"), args: Vec::new() }
    }
}

/// Why `nft` failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The program could not be started (missing, not executable).
    #[error("{command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed; nothing of the transaction was applied.
    #[error("{command} exited with {status}: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its error output (nft names the failing line).
        stderr: String,
    },
}

impl NftCommand {
    /// The command inside a network namespace: `ip netns exec <netns> nft`.
    pub fn in_netns(netns: &str) -> NftCommand {
        NftCommand {
            program: PathBuf::from("ip"),
            args: vec!["netns".into(), "exec".into(), netns.into(), "nft".into()],
        }
    }

    fn describe(&self, extra: &[&str]) -> String {
        let mut parts = vec![self.program.display().to_string()];
        parts.extend(self.args.iter().cloned());
        parts.extend(extra.iter().map(|s| s.to_string()));
        parts.join(" ")
    }

    /// Runs nft with `extra` arguments and `stdin` as its standard input; its standard output on success.
    pub async fn run(&self, extra: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let command = self.describe(extra);
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .args(extra)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NftError::Spawn { command: command.clone(), source })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A write error means nft exited early; its status and stderr below say why.
            let _ = pipe.write_all(text.as_bytes()).await;
            drop(pipe);
        }
        let output =
            child.wait_with_output().await.map_err(|source| NftError::Spawn { command: command.clone(), source })?;
        if !output.status.success() {
            return Err(NftError::Failed {
                command,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Applies a transaction (`nft -f -`): all of it or nothing.
    pub async fn apply(&self, transaction: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(transaction)).await.map(|_| ())
    }

    /// Parses a transaction without applying it (`nft -c -f -`).
    pub async fn check(&self, transaction: &str) -> Result<(), NftError> {
        self.run(&["-c", "-f", "-"], Some(transaction)).await.map(|_| ())
    }

    /// nft's version line: proves that nft runs.
    pub async fn version(&self) -> Result<String, NftError> {
        self.run(&["--version"], None).await.map(|out| out.trim().to_string())
    }

    /// Whether `table ip <table>` exists.
    pub async fn has_table(&self, table: &str) -> Result<bool, NftError> {
        let listing = self.run(&["list", "tables", "ip"], None).await?;
        Ok(listing.lines().any(|line| line.trim() == format!("table ip {table}")))
    }
}

/// Deletes `table ip <table>` with `nft`; `Ok(false)` when there was none.
pub async fn remove_rules_with(nft: &NftCommand, table: &str) -> Result<bool, NftError> {
    if !nft.has_table(table).await? {
        return Ok(false);
    }
    nft.apply(&format!("delete table ip {table}\n")).await?;
    Ok(true)
}

/// Deletes the proxy's table (`gantry reset`): `Ok(false)` when there was none.
pub async fn remove_rules(table: &str) -> Result<bool, NftError> {
    remove_rules_with(&NftCommand::default(), table).await
}
