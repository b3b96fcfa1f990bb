//! A container's environment, command and arguments, built as the kubelet builds them: `envFrom` first, then
//! `env` (which replaces what `envFrom` set), `$(VAR)` references expanded against what came before and the
//! service link variables (`FOO_SERVICE_HOST`, `FOO_PORT_80_TCP`, ...), which come last unless the container
//! set the same name.
//!
//! The kubelet's order of variables is that of a Go map (unspecified); this one keeps the order of first
//! definition, and service links by Service name, so the result is deterministic.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::{Api, Client};

use crate::downward::{self, DownwardError, NodeAllocatable};

/// Facts about the pod and node that some variables report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvFacts {
    /// The pod's IPs (`status.podIP` is the first, `status.podIPs` all of them, comma-separated).
    pub pod_ips: Vec<String>,
    /// The node's IPs (`status.hostIP`, `status.hostIPs`).
    pub host_ips: Vec<String>,
    /// The node's name (`spec.nodeName` when the pod does not say).
    pub node_name: String,
    /// Node allocatable CPU: what `resourceFieldRef` reports for `limits.cpu` when the container sets none.
    pub node_allocatable_cpu_millis: i64,
    /// Node allocatable memory, the default for `limits.memory`.
    pub node_allocatable_memory_bytes: i64,
    /// Node allocatable ephemeral storage, the default for `limits.ephemeral-storage`.
    pub node_allocatable_ephemeral_storage_bytes: i64,
    /// The pod's service link variables ([`service_links`]): `$(VAR)` may refer to them, and they are added
    /// after the container's own variables unless it set the same name.
    pub service_links: Vec<(String, String)>,
}

/// Why a container's environment could not be built; the worker reports these as
/// `CreateContainerConfigError`, and the texts are the kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A ConfigMap that is not optional does not exist.
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound {
        /// Its name.
        name: String,
    },
    /// A Secret that is not optional does not exist.
    #[error("secret {name:?} not found")]
    SecretNotFound {
        /// Its name.
        name: String,
    },
    /// A `configMapKeyRef` key that is not optional is missing.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        /// The key.
        key: String,
        /// The pod's namespace.
        namespace: String,
        /// The ConfigMap.
        name: String,
    },
    /// A `secretKeyRef` key that is not optional is missing.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        /// The key.
        key: String,
        /// The pod's namespace.
        namespace: String,
        /// The Secret.
        name: String,
    },
    /// Reading a ConfigMap or Secret failed for another reason than its absence.
    #[error("couldn't get {kind} {namespace}/{name}: {source}")]
    Api {
        /// `configMap` or `secret`.
        kind: &'static str,
        /// The pod's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A `fieldRef` or `resourceFieldRef` could not be resolved.
    #[error(transparent)]
    Downward(#[from] DownwardError),
    /// `status.hostIP` was asked for but the node has no address yet.
    #[error("host IPs are not known yet")]
    NoHostIp,
    /// The Services were never listed, so the service links cannot be made (the kubelet's words).
    #[error("services have not yet been read at least once, cannot construct envvars")]
    ServicesNotRead,
    /// A `valueFrom` source this node does not support (`fileKeyRef`).
    #[error("environment variable {name}: valueFrom.{source_kind} is not supported by this node")]
    UnsupportedSource {
        /// The variable.
        name: String,
        /// The source's field name.
        source_kind: &'static str,
    },
}

/// The ordered environment being built: later definitions of a name replace its value in place.
#[derive(Default)]
struct EnvList {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvList {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, value));
            }
        }
    }
}

/// Fetches each ConfigMap and Secret once per container, as the kubelet does within one environment.
struct Sources<'a> {
    configmaps: Api<ConfigMap>,
    secrets: Api<Secret>,
    namespace: &'a str,
    configmap_cache: HashMap<String, Option<ConfigMap>>,
    secret_cache: HashMap<String, Option<Secret>>,
}

impl Sources<'_> {
    async fn configmap(&mut self, name: &str) -> Result<Option<&ConfigMap>, EnvError> {
        if !self.configmap_cache.contains_key(name) {
            let found = self.configmaps.get_opt(name).await.map_err(|source| EnvError::Api {
                kind: "configMap",
                namespace: self.namespace.to_string(),
                name: name.to_string(),
                source: Box::new(source),
            })?;
            self.configmap_cache.insert(name.to_string(), found);
        }
        Ok(self.configmap_cache.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, EnvError> {
        if !self.secret_cache.contains_key(name) {
            let found = self.secrets.get_opt(name).await.map_err(|source| EnvError::Api {
                kind: "secret",
                namespace: self.namespace.to_string(),
                name: name.to_string(),
                source: Box::new(source),
            })?;
            self.secret_cache.insert(name.to_string(), found);
        }
        Ok(self.secret_cache.get(name).and_then(Option::as_ref))
    }
}

/// The environment of one container, as the kubelet builds it: `envFrom` (ConfigMaps and Secrets, with
/// `prefix`; keys that are not valid variable names skipped with a warning; missing optional objects
/// skipped), then `env` in order: `value` with `$(VAR)` expanded against the variables defined so far,
/// `valueFrom` (`configMapKeyRef`, `secretKeyRef`, `fieldRef`, `resourceFieldRef`). A variable defined
/// again replaces the earlier value. A `valueFrom` whose optional object or key is missing leaves the variable
/// unset.
pub async fn container_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
    facts: &EnvFacts,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut sources = Sources {
        configmaps: Api::namespaced(client.clone(), namespace),
        secrets: Api::namespaced(client.clone(), namespace),
        namespace,
        configmap_cache: HashMap::new(),
        secret_cache: HashMap::new(),
    };
    let mut env = EnvList::default();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let mut pairs: Vec<(String, String)> = Vec::new();
        let (kind, name) = if let Some(cm) = &from.config_map_ref {
            match sources.configmap(&cm.name).await? {
                Some(found) => {
                    pairs.extend(found.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
                }
                None if cm.optional == Some(true) => continue,
                None => return Err(EnvError::ConfigMapNotFound { name: cm.name.clone() }),
            }
            ("configMap", cm.name.as_str())
        } else if let Some(secret) = &from.secret_ref {
            match sources.secret(&secret.name).await? {
                Some(found) => pairs.extend(
                    found.data.iter().flatten().map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned())),
                ),
                None if secret.optional == Some(true) => continue,
                None => return Err(EnvError::SecretNotFound { name: secret.name.clone() }),
            }
            ("secret", secret.name.as_str())
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in pairs {
            let name = format!("{prefix}{key}");
            if gantry_api::validation::names::is_env_var_name(&name).is_empty() {
                env.set(name, value);
            } else {
                invalid.push(name);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            tracing::warn!(
                pod = pod.metadata.name.as_deref().unwrap_or(""),
                namespace,
                container = container.name,
                "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are considered invalid \
                 environment variable names.",
                invalid.join(", ")
            );
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (var.value.as_deref(), &var.value_from) {
            (Some(value), _) if !value.is_empty() => expand_with(value, |name| {
                match env.entries.iter().rev().chain(facts.service_links.iter()).find(|(k, _)| k == name) {
                    Some((_, value)) => value.clone(),
                    None => format!("$({name})"),
                }
            }),
            (_, Some(from)) => {
                if let Some(sel) = &from.config_map_key_ref {
                    let optional = sel.optional == Some(true);
                    match sources.configmap(&sel.name).await? {
                        None if optional => continue,
                        None => return Err(EnvError::ConfigMapNotFound { name: sel.name.clone() }),
                        Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&sel.key)) {
                            Some(v) => v.clone(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError::ConfigMapKeyNotFound {
                                    key: sel.key.clone(),
                                    namespace: namespace.to_string(),
                                    name: sel.name.clone(),
                                });
                            }
                        },
                    }
                } else if let Some(sel) = &from.secret_key_ref {
                    let optional = sel.optional == Some(true);
                    match sources.secret(&sel.name).await? {
                        None if optional => continue,
                        None => return Err(EnvError::SecretNotFound { name: sel.name.clone() }),
                        Some(secret) => match secret.data.as_ref().and_then(|d| d.get(&sel.key)) {
                            Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError::SecretKeyNotFound {
                                    key: sel.key.clone(),
                                    namespace: namespace.to_string(),
                                    name: sel.name.clone(),
                                });
                            }
                        },
                    }
                } else if let Some(field) = &from.field_ref {
                    field_value(pod, &field.field_path, facts)?
                } else if let Some(resource) = &from.resource_field_ref {
                    let allocatable = NodeAllocatable {
                        cpu_millis: facts.node_allocatable_cpu_millis,
                        memory_bytes: facts.node_allocatable_memory_bytes,
                        ephemeral_storage_bytes: facts.node_allocatable_ephemeral_storage_bytes,
                    };
                    downward::resource_value(pod, container, resource, &allocatable)?
                } else if from.file_key_ref.is_some() {
                    return Err(EnvError::UnsupportedSource { name: var.name.clone(), source_kind: "fileKeyRef" });
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        env.set(var.name.clone(), value);
    }
    for (name, value) in &facts.service_links {
        if !env.index.contains_key(name) {
            env.set(name.clone(), value.clone());
        }
    }
    Ok(env.entries)
}

/// The service link variables of a pod in `namespace`, as the kubelet makes them: for every Service of the
/// namespace that has a ClusterIP (when `enable_service_links`, the pod's `enableServiceLinks`, true by
/// default), and always for `default/kubernetes`, so that in-cluster clients find the API server.
/// `WEB_SERVICE_HOST`, `WEB_SERVICE_PORT` (the first port), `WEB_SERVICE_PORT_<NAME>` per named port, and
/// Docker's link variables `WEB_PORT`, `WEB_PORT_80_TCP{,_PROTO,_PORT,_ADDR}`.
pub fn service_links<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: std::collections::BTreeMap<&str, &Service> = std::collections::BTreeMap::new();
    for service in services {
        let (Some(name), Some(ns)) = (service.metadata.name.as_deref(), service.metadata.namespace.as_deref()) else {
            continue;
        };
        let ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        // The namespace's own Service of that name wins over the API server's, as in the kubelet.
        if ns == namespace && enable_service_links {
            chosen.insert(name, service);
        } else if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(service);
        }
    }
    let mut out = Vec::new();
    for (name, service) in chosen {
        let Some(spec) = service.spec.as_ref() else { continue };
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        let prefix = env_name(name);
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)), port.port.to_string()));
            }
        }
        let host_port = |port: i32| match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => format!("[{ip}]:{port}"),
            _ => format!("{ip}:{port}"),
        };
        for (i, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
            let lower = protocol.to_ascii_lowercase();
            let url = format!("{lower}://{}", host_port(port.port));
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_ascii_uppercase());
            out.push((port_prefix.clone(), url));
            out.push((format!("{port_prefix}_PROTO"), lower));
            out.push((format!("{port_prefix}_PORT"), port.port.to_string()));
            out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The cluster's Services as this node last saw them, for service links: a reflector fed by one watch.
#[derive(Clone)]
pub struct ServiceCache {
    store: kube::runtime::reflector::Store<Service>,
}

/// How long a container start waits for the first list of Services before it fails (and is retried).
const SERVICES_READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

impl ServiceCache {
    /// A cache of every Service, and the task that keeps it current until `shutdown` (the caller owns it).
    pub fn watch(
        client: Client,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> (ServiceCache, impl std::future::Future<Output = ()> + Send + 'static) {
        use futures::StreamExt;
        use kube::runtime::WatchStreamExt;
        let (store, writer) = kube::runtime::reflector::store();
        let events = kube::runtime::reflector(
            writer,
            kube::runtime::watcher(Api::<Service>::all(client), kube::runtime::watcher::Config::default())
                .default_backoff(),
        );
        let task = async move {
            let mut events = std::pin::pin!(events);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    event = events.next() => match event {
                        Some(Ok(_)) => {}
                        Some(Err(err)) => tracing::debug!(error = %err, "watching Services for service links"),
                        None => break,
                    },
                }
            }
        };
        (ServiceCache { store }, task)
    }

    /// The service link variables of `pod` ([`service_links`]), once the Services have been listed.
    pub async fn links(&self, pod: &Pod) -> Result<Vec<(String, String)>, EnvError> {
        tokio::time::timeout(SERVICES_READ_PATIENCE, self.store.wait_until_ready())
            .await
            .map_err(|_| EnvError::ServicesNotRead)?
            .map_err(|_| EnvError::ServicesNotRead)?;
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let enabled = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        let services = self.store.state();
        Ok(service_links(services.iter().map(|s| s.as_ref()), namespace, enabled))
    }
}

/// A Service or port name as a variable name: upper case, dashes as underscores.
fn env_name(name: &str) -> String {
    name.replace('-', "_").to_ascii_uppercase()
}

/// A `fieldRef` for the environment: the downward API's metadata fields plus the pod's node, service account
/// and addresses.
fn field_value(pod: &Pod, path: &str, facts: &EnvFacts) -> Result<String, EnvError> {
    let spec = pod.spec.as_ref();
    Ok(match path {
        "spec.nodeName" => {
            spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()).unwrap_or_else(|| facts.node_name.clone())
        }
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => facts.host_ips.first().cloned().ok_or(EnvError::NoHostIp)?,
        "status.hostIPs" => {
            if facts.host_ips.is_empty() {
                return Err(EnvError::NoHostIp);
            }
            facts.host_ips.join(",")
        }
        "status.podIP" => facts.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => facts.pod_ips.join(","),
        // The whole label and annotation maps are for volumes only; the API server refuses them in env.
        "metadata.labels" | "metadata.annotations" => {
            return Err(DownwardError::UnsupportedFieldPath { path: path.to_string() }.into());
        }
        _ => downward::metadata_field(pod, path)?,
    })
}

/// `$(VAR)` expansion as the kubelet does it: `$(NAME)` becomes the value of the last `NAME` in `env`, `$$`
/// becomes `$`, a reference to an unknown name or an unterminated `$(` stays as written, and a `$` before any
/// other character is kept.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    expand_with(input, |name| match env.iter().rev().find(|(k, _)| k == name) {
        Some((_, value)) => value.clone(),
        None => format!("$({name})"),
    })
}

/// The expansion itself, with `mapping` giving the text for each `$(NAME)` reference.
pub(crate) fn expand_with(input: &str, mut mapping: impl FnMut(&str) -> String) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            match bytes[cursor + 1] {
                b'$' => {
                    out.push('$');
                    cursor += 2;
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        out.push_str(&mapping(&rest[1..close]));
                        cursor += close + 2;
                    }
                    None => {
                        out.push_str("$(");
                        cursor += 2;
                    }
                },
                // A `$` before anything else is kept, and what follows is read normally.
                _ => {
                    out.push('$');
                    cursor += 1;
                }
            }
            checkpoint = cursor;
        } else {
            cursor += 1;
        }
    }
    out.push_str(&input[checkpoint..]);
    out
}

/// The container's command and arguments with `$(VAR)` expanded against its environment. When both are empty
/// the runtime takes the image's entrypoint and cmd; when only `args` is given the image's entrypoint runs
/// with them.
pub fn command_and_args(container: &Container, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let expand_all = |list: &Option<Vec<String>>| list.iter().flatten().map(|s| expand(s, env)).collect();
    (expand_all(&container.command), expand_all(&container.args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn known_references_expand_and_unknown_ones_stay_as_written() {
        let env = vars(&[("A", "one"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)-$(C)", &env), "one-two-$(C)");
        assert_eq!(expand("x$(A)y", &env), "xoney");
    }

    #[test]
    fn a_double_dollar_escapes_a_reference() {
        let env = vars(&[("A", "one")]);
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$$$(A)", &env), "$one");
        assert_eq!(expand("cost $$5", &env), "cost $5");
    }

    #[test]
    fn lone_and_unterminated_dollars_are_kept() {
        let env = vars(&[("A", "one")]);
        assert_eq!(expand("$", &env), "$");
        assert_eq!(expand("a$b", &env), "a$b");
        assert_eq!(expand("$(A", &env), "$(A");
        assert_eq!(expand("$(A$(A)", &env), "$(A$(A)");
        assert_eq!(expand("ü$ü$(A)", &env), "ü$üone");
        assert_eq!(expand("$()", &env), "$()");
    }

    #[test]
    fn the_last_definition_of_a_name_wins() {
        let env = vars(&[("A", "old"), ("A", "new")]);
        assert_eq!(expand("$(A)", &env), "new");
    }

    #[test]
    fn command_and_args_are_expanded_against_the_environment() {
        let container = Container {
            name: "c".into(),
            command: Some(vec!["/bin/$(SHELL_NAME)".into(), "-c".into()]),
            args: Some(vec!["echo $(GREETING) $$(GREETING)".into()]),
            ..Default::default()
        };
        let env = vars(&[("SHELL_NAME", "sh"), ("GREETING", "hi")]);
        let (command, args) = command_and_args(&container, &env);
        assert_eq!(command, vec!["/bin/sh", "-c"]);
        assert_eq!(args, vec!["echo hi $(GREETING)"]);
    }

    #[test]
    fn later_definitions_replace_values_in_place() {
        let mut env = EnvList::default();
        env.set("A".into(), "1".into());
        env.set("B".into(), "2".into());
        env.set("A".into(), "3".into());
        assert_eq!(env.entries, vars(&[("A", "3"), ("B", "2")]));
    }

    #[test]
    fn field_refs_report_the_pod_and_node_facts() {
        let pod = Pod {
            metadata: ObjectMeta { name: Some("p".into()), ..Default::default() },
            spec: Some(PodSpec { service_account_name: Some("sa".into()), ..Default::default() }),
            status: None,
        };
        let facts = EnvFacts {
            pod_ips: vec!["10.0.0.5".into(), "fd00::5".into()],
            host_ips: vec!["192.168.1.2".into()],
            node_name: "node-x".into(),
            ..Default::default()
        };
        assert_eq!(field_value(&pod, "spec.nodeName", &facts).expect("node"), "node-x");
        assert_eq!(field_value(&pod, "spec.serviceAccountName", &facts).expect("sa"), "sa");
        assert_eq!(field_value(&pod, "status.podIP", &facts).expect("ip"), "10.0.0.5");
        assert_eq!(field_value(&pod, "status.podIPs", &facts).expect("ips"), "10.0.0.5,fd00::5");
        assert_eq!(field_value(&pod, "status.hostIP", &facts).expect("host"), "192.168.1.2");
        assert_eq!(field_value(&pod, "metadata.name", &facts).expect("name"), "p");
        assert!(field_value(&pod, "metadata.labels", &facts).is_err());
    }

    fn service(namespace: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"clusterIP": ip, "ports": ports}
        }))
        .expect("service")
    }

    #[test]
    fn service_links_are_the_kubelets_variables_for_the_namespace_and_the_api_server() {
        let services = [
            service("default", "kubernetes", "10.43.0.1", serde_json::json!([{"name": "https", "port": 443}])),
            service(
                "shop",
                "redis-main",
                "10.43.7.9",
                serde_json::json!([{"port": 6379}, {"name": "metrics", "port": 9121, "protocol": "UDP"}]),
            ),
            service("shop", "headless", "None", serde_json::json!([{"port": 80}])),
            service("other", "elsewhere", "10.43.7.10", serde_json::json!([{"port": 80}])),
        ];
        let links = service_links(&services, "shop", true);
        let got: HashMap<&str, &str> = links.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        assert_eq!(got["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(got["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(got["KUBERNETES_PORT"], "tcp://10.43.0.1:443");
        assert_eq!(got["REDIS_MAIN_SERVICE_HOST"], "10.43.7.9");
        assert_eq!(got["REDIS_MAIN_SERVICE_PORT"], "6379");
        assert_eq!(got["REDIS_MAIN_SERVICE_PORT_METRICS"], "9121");
        assert_eq!(got["REDIS_MAIN_PORT"], "tcp://10.43.7.9:6379");
        assert_eq!(got["REDIS_MAIN_PORT_6379_TCP"], "tcp://10.43.7.9:6379");
        assert_eq!(got["REDIS_MAIN_PORT_6379_TCP_ADDR"], "10.43.7.9");
        assert_eq!(got["REDIS_MAIN_PORT_9121_UDP"], "udp://10.43.7.9:9121");
        assert_eq!(got["REDIS_MAIN_PORT_9121_UDP_PROTO"], "udp");
        assert_eq!(got["REDIS_MAIN_PORT_9121_UDP_PORT"], "9121");
        assert!(!got.keys().any(|k| k.starts_with("HEADLESS_") || k.starts_with("ELSEWHERE_")), "{got:?}");
        assert_eq!(links.len(), got.len(), "no variable is given twice");
    }

    #[test]
    fn without_service_links_a_pod_still_finds_the_api_server() {
        let services = [
            service("default", "kubernetes", "10.43.0.1", serde_json::json!([{"name": "https", "port": 443}])),
            service("default", "web", "10.43.0.20", serde_json::json!([{"port": 80}])),
        ];
        let names: Vec<String> = service_links(&services, "default", false).into_iter().map(|(k, _)| k).collect();
        assert!(names.contains(&"KUBERNETES_SERVICE_HOST".to_string()), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("WEB_")), "{names:?}");
    }

    #[test]
    fn a_namespaces_own_kubernetes_service_wins_over_the_api_servers() {
        let services = [
            service("team", "kubernetes", "10.43.9.9", serde_json::json!([{"port": 8080}])),
            service("default", "kubernetes", "10.43.0.1", serde_json::json!([{"name": "https", "port": 443}])),
        ];
        let links = service_links(&services, "team", true);
        assert!(links.contains(&("KUBERNETES_SERVICE_HOST".into(), "10.43.9.9".into())), "{links:?}");
    }
}
