//! The connection: the kubeconfig found as kubectl finds it, the namespace chosen as kubectl chooses it, and
//! the raw requests every verb makes (the verbs work on any resource type, so objects stay JSON).

use std::path::{Path, PathBuf};

use http::Request;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::discovery::{Discovery, Resource};
use crate::{CtlError, Result};

/// The media type kubectl asks for when it prints a table: the server's Table, else plain JSON.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io, application/json";

/// A connection to the API server, with the namespace the command works in.
pub struct Context {
    /// The client.
    pub client: kube::Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// Whether `-n` was given (some messages differ).
    pub namespace_given: bool,
    discovery: OnceCell<Discovery>,
}

/// The files of the kubeconfig, in kubectl's order: `--kubeconfig`, else each file of `$KUBECONFIG` that exists
/// (merged, the first to set a value wins), else `~/.kube/config`.
pub fn kubeconfig_paths(flag: Option<&Path>, env: Option<&std::ffi::OsStr>, home: Option<&Path>) -> Vec<PathBuf> {
    if let Some(path) = flag {
        return vec![path.to_path_buf()];
    }
    if let Some(value) = env {
        let listed: Vec<PathBuf> = std::env::split_paths(value).filter(|p| !p.as_os_str().is_empty()).collect();
        if !listed.is_empty() {
            // kubectl skips the files of the list that do not exist.
            return listed.into_iter().filter(|p| p.exists()).collect();
        }
    }
    home.map(|h| vec![h.join(".kube/config")]).unwrap_or_default()
}

/// The namespace a command works in: `-n`, else the namespace of the context in use, else `default`.
pub fn choose_namespace(flag: Option<&str>, kubeconfig: &Kubeconfig, context: Option<&str>) -> String {
    if let Some(namespace) = flag.filter(|n| !n.is_empty()) {
        return namespace.to_string();
    }
    let context = context.or(kubeconfig.current_context.as_deref());
    kubeconfig
        .contexts
        .iter()
        .find(|c| Some(c.name.as_str()) == context)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.namespace.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn read_kubeconfig(flag: Option<&Path>) -> Result<Kubeconfig> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let paths = kubeconfig_paths(flag, std::env::var_os("KUBECONFIG").as_deref(), home.as_deref());
    let mut merged: Option<Kubeconfig> = None;
    for path in &paths {
        let file = Kubeconfig::read_from(path).map_err(|err| {
            if !path.exists() {
                CtlError::Kubeconfig(format!("stat {}: no such file or directory", path.display()))
            } else {
                CtlError::Kubeconfig(format!("loading the kubeconfig {}: {err}", path.display()))
            }
        })?;
        merged = Some(match merged {
            None => file,
            Some(before) => before
                .merge(file)
                .map_err(|err| CtlError::Kubeconfig(format!("merging the kubeconfig {}: {err}", path.display())))?,
        });
    }
    merged.ok_or_else(|| {
        CtlError::Kubeconfig(
            "no configuration has been provided, try setting KUBERNETES_MASTER environment variable".to_string(),
        )
    })
}

impl Context {
    /// Reads the kubeconfig and builds the client; no request is made yet.
    pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>, namespace: Option<String>) -> Result<Self> {
        let file = read_kubeconfig(kubeconfig)?;
        if let Some(name) = context
            && !file.contexts.iter().any(|c| c.name == name)
        {
            return Err(CtlError::Kubeconfig(format!("context was not found for specified context: {name}")));
        }
        let chosen = choose_namespace(namespace.as_deref(), &file, context);
        let options = KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
        let config = kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .map_err(|err| CtlError::Kubeconfig(format!("using the kubeconfig: {err}")))?;
        let client = kube::Client::try_from(config).map_err(|err| CtlError::client("building the client", err))?;
        Ok(Context { client, namespace: chosen, namespace_given: namespace.is_some(), discovery: OnceCell::new() })
    }

    /// The server's resource types, discovered on first use.
    pub async fn discovery(&self) -> Result<&Discovery> {
        self.discovery.get_or_try_init(|| Discovery::fetch(self)).await
    }

    /// Resolves a type as typed on the command line.
    pub async fn resolve(&self, name: &str) -> Result<Resource> {
        self.discovery().await?.resolve(name).cloned().ok_or_else(|| CtlError::UnknownResource(name.to_string()))
    }

    /// GET `path` as JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        self.request(http::Method::GET, path, None, "").await
    }

    /// GET `path` asking for the server's Table.
    pub async fn get_table(&self, path: &str) -> Result<Value> {
        let request = Request::get(path)
            .header(http::header::ACCEPT, TABLE_ACCEPT)
            .body(Vec::new())
            .map_err(|err| CtlError::client(format!("building GET {path}"), kube::Error::HttpError(err)))?;
        let text =
            self.client.request_text(request).await.map_err(|err| CtlError::client(format!("GET {path}"), err))?;
        serde_json::from_str(&text).map_err(|source| CtlError::Json { context: format!("reading GET {path}"), source })
    }

    /// A request with a JSON body (of `content_type`, `application/json` when empty) whose answer is JSON.
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> Result<Value> {
        let content_type = if content_type.is_empty() { "application/json" } else { content_type };
        let bytes = match body {
            Some(body) => serde_json::to_vec(body)
                .map_err(|source| CtlError::Json { context: format!("encoding {method} {path}"), source })?,
            None => Vec::new(),
        };
        let mut builder = Request::builder().method(method.clone()).uri(path);
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
        }
        let request = builder
            .body(bytes)
            .map_err(|err| CtlError::client(format!("building {method} {path}"), kube::Error::HttpError(err)))?;
        let text =
            self.client.request_text(request).await.map_err(|err| CtlError::client(format!("{method} {path}"), err))?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|source| CtlError::Json { context: format!("reading {method} {path}"), source })
    }
}

/// `?a=b&c=d` of the pairs whose value is not empty, percent-encoded.
pub fn query(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(yaml: &str) -> Kubeconfig {
        Kubeconfig::from_yaml(yaml).expect("kubeconfig")
    }

    const TWO_CONTEXTS: &str = "apiVersion: v1\nkind: Config\ncurrent-context: a\ncontexts:\n- name: a\n  context:\n    \
                                cluster: c\n    namespace: team-a\n- name: b\n  context:\n    cluster: c\n";

    #[test]
    fn the_namespace_flag_wins_over_the_context() {
        assert_eq!(choose_namespace(Some("x"), &kubeconfig(TWO_CONTEXTS), None), "x");
    }

    #[test]
    fn the_current_contexts_namespace_is_used_without_a_flag() {
        assert_eq!(choose_namespace(None, &kubeconfig(TWO_CONTEXTS), None), "team-a");
    }

    #[test]
    fn a_context_without_a_namespace_means_default() {
        assert_eq!(choose_namespace(None, &kubeconfig(TWO_CONTEXTS), Some("b")), "default");
    }

    #[test]
    fn the_kubeconfig_flag_wins_over_the_environment() {
        let paths = kubeconfig_paths(Some(Path::new("/x")), Some("/a:/b".as_ref()), Some(Path::new("/home")));
        assert_eq!(paths, vec![PathBuf::from("/x")]);
    }

    #[test]
    fn the_environment_list_keeps_only_existing_files_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "").expect("write");
        std::fs::write(&b, "").expect("write");
        let list = format!("{}:{}/missing:{}", b.display(), dir.path().display(), a.display());
        let paths = kubeconfig_paths(None, Some(list.as_ref()), Some(Path::new("/home")));
        assert_eq!(paths, vec![b, a]);
    }

    #[test]
    fn without_flag_or_environment_the_home_config_is_read() {
        assert_eq!(kubeconfig_paths(None, None, Some(Path::new("/h"))), vec![PathBuf::from("/h/.kube/config")]);
    }

    #[test]
    fn query_values_are_encoded_and_empty_ones_dropped() {
        assert_eq!(
            query(&[("labelSelector", "app=web,x in (a)".into()), ("limit", String::new())]),
            "?labelSelector=app%3Dweb%2Cx%20in%20%28a%29"
        );
    }
}
