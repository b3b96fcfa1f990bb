//! Pod networking: CNI plugins and the namespaces that hold a pod's network, IPC and UTS.
//!
//! Two independent parts, used in this order by a sandbox's lifecycle:
//!
//! 1. [`PodNamespaces`] creates the pod's network, IPC and UTS namespaces and pins each one with a bind mount of
//!    its `nsfs` file, so that no process (no pause container) is needed to keep them alive. Containers join them
//!    through the OCI spec's `linux.namespaces[].path`. The new network namespace comes with `lo` up.
//! 2. [`CniClient`] runs the node's CNI network configuration against the pinned network namespace: ADD when the
//!    sandbox starts (the result gives the pod's IPs), DEL when it stops, with the configuration used at ADD cached
//!    on disk so that a DEL after an agent restart or a configuration change undoes exactly what was done.
//!
//! Teardown runs in the reverse order: [`CniClient::teardown`] while the network namespace is still pinned, then
//! [`PodNamespaces::remove`]. Both are idempotent.

pub mod cni;
pub mod masquerade;
pub mod namespaces;

pub use cni::{CniClient, CniOptions, NetworkConfigList, PodNetwork, PodNetworkStatus, write_default_config};
pub use namespaces::{NamespaceKind, NamespaceSpec, PodNamespaces};

use std::path::PathBuf;
use std::time::Duration;

use crate::cri::RuntimeError;

/// The Debian package that ships the standard CNI plugins, named in errors about a missing plugin.
pub const CNI_PLUGINS_PACKAGE: &str = "containernetworking-plugins";

/// Errors of pod networking, each with the path, plugin or operation involved.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The node-level masquerade rule for a pod CIDR could not be checked, added or removed.
    #[error("masquerading of pod CIDR {cidr}: {message}")]
    Masquerade {
        /// The pod CIDR.
        cidr: String,
        /// What failed.
        message: String,
    },
    /// Reading or writing a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{context}: {source}")]
    Sys {
        /// What was being done.
        context: String,
        /// The error number.
        #[source]
        source: nix::Error,
    },
    /// The helper thread that creates namespaces could not be started or died.
    #[error("namespace helper thread: {0}")]
    HelperThread(String),
    /// No usable network configuration in the CNI configuration directory.
    #[error("no CNI network configuration (*.conflist, *.conf, *.json) in {dir}")]
    NoConfig {
        /// The directory searched.
        dir: PathBuf,
    },
    /// A network configuration file is not valid JSON.
    #[error("CNI network configuration {path}: {source}")]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A network configuration is JSON but not a usable CNI configuration.
    #[error("CNI network configuration {path}: {reason}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A pod CIDR could not be parsed.
    #[error("pod CIDR {cidr:?}: {reason}")]
    InvalidCidr {
        /// The CIDR as given.
        cidr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value given by the caller cannot be used (a `CNI_ARGS` value with `;`, a bridge name too long, ...).
    #[error("{what} {value:?}: {reason}")]
    InvalidValue {
        /// What the value is (`pod name`, `bridge name`, ...).
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A plugin binary named by the configuration is not installed.
    #[error(
        "CNI plugin {plugin:?} not found in {}: install the Debian package {CNI_PLUGINS_PACKAGE} (or the plugin's binary into one of these directories)",
        display_dirs(.dirs)
    )]
    PluginNotFound {
        /// The plugin's `type`.
        plugin: String,
        /// The directories searched.
        dirs: Vec<PathBuf>,
    },
    /// A plugin binary could not be started.
    #[error("CNI plugin {plugin} ({path}): {source}")]
    PluginSpawn {
        /// The plugin's `type`.
        plugin: String,
        /// The binary.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A plugin did not finish in time and was killed.
    #[error("CNI plugin {plugin} {command}: no answer after {timeout:?}")]
    PluginTimeout {
        /// The plugin's `type`.
        plugin: String,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The time it was given.
        timeout: Duration,
    },
    /// A plugin reported an error, as the CNI error object on its standard output.
    #[error("CNI plugin {plugin} {command} failed with code {code}: {msg}{}", display_details(.details))]
    Plugin {
        /// The plugin's `type`.
        plugin: String,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The CNI error code (1-99 are the spec's well-known codes).
        code: u32,
        /// The error message.
        msg: String,
        /// Further detail, when the plugin gives it.
        details: String,
    },
    /// A plugin failed without a CNI error object (it crashed or printed something else).
    #[error("CNI plugin {plugin} {command} failed ({status}): {output}")]
    PluginFailed {
        /// The plugin's `type`.
        plugin: String,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The exit status.
        status: std::process::ExitStatus,
        /// What it printed (standard output, then standard error), trimmed.
        output: String,
    },
    /// A plugin succeeded but its result is not a CNI result.
    #[error("CNI plugin {plugin} {command}: unreadable result: {source}")]
    PluginResult {
        /// The plugin's `type`.
        plugin: String,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The cached record of an ADD could not be decoded.
    #[error("{path}: corrupt CNI cache entry: {source}")]
    CorruptCache {
        /// The cache file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// CHECK was asked for a sandbox whose network was never added (or was deleted).
    #[error("no CNI cache entry for sandbox {sandbox_id}: its network was not set up by this node")]
    NotAttached {
        /// The sandbox.
        sandbox_id: String,
    },
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    names.join(", ")
}

fn display_details(details: &str) -> String {
    if details.is_empty() { String::new() } else { format!(" ({details})") }
}

/// The message of an error followed by the messages of its sources, for errors that cross into a string.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Variants that already print their source would repeat it.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl From<NetworkError> for RuntimeError {
    fn from(err: NetworkError) -> Self {
        match err {
            NetworkError::PluginNotFound { .. } => RuntimeError::Prerequisite(err.to_string()),
            NetworkError::Io { path, source } => RuntimeError::Io { path, source },
            NetworkError::Sys { context, source } => RuntimeError::Sys { context, source },
            NetworkError::InvalidCidr { .. } | NetworkError::InvalidValue { .. } => {
                RuntimeError::Invalid(err.to_string())
            }
            other => RuntimeError::Network(error_chain(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_plugin_becomes_a_prerequisite_naming_the_package() {
        let err = NetworkError::PluginNotFound {
            plugin: "bridge".into(),
            dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
        };
        let RuntimeError::Prerequisite(msg) = RuntimeError::from(err) else { panic!("not a prerequisite error") };
        assert!(msg.contains("\"bridge\""), "{msg}");
        assert!(msg.contains("containernetworking-plugins"), "{msg}");
        assert!(msg.contains("/usr/lib/cni, /opt/cni/bin"), "{msg}");
    }

    #[test]
    fn a_plugin_error_keeps_its_code_and_message() {
        let err = NetworkError::Plugin {
            plugin: "bridge".into(),
            command: "ADD",
            code: 11,
            msg: "failed to allocate".into(),
            details: "range is full".into(),
        };
        let RuntimeError::Network(msg) = RuntimeError::from(err) else { panic!("not a network error") };
        assert_eq!(msg, "CNI plugin bridge ADD failed with code 11: failed to allocate (range is full)");
    }

    #[test]
    fn a_wrapped_error_keeps_its_source_in_the_message() {
        let source = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let err = NetworkError::PluginResult { plugin: "bridge".into(), command: "ADD", source };
        let RuntimeError::Network(msg) = RuntimeError::from(err) else { panic!("not a network error") };
        assert!(msg.starts_with("CNI plugin bridge ADD: unreadable result: EOF"), "{msg}");
    }
}
