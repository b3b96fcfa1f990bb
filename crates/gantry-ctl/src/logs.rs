//! `logs`: a container's log from `pods/NAME/log`, copied to stdout as it arrives (`-f` follows it). For
//! `TYPE/NAME` of a workload, one of its pods is chosen as kubectl chooses it.

use std::io::Write;

use futures::AsyncReadExt;
use serde_json::Value;

use crate::config::{Context, query};
use crate::delete::parse_duration;
use crate::{CtlError, Result};

/// `logs [-f] [-c C] [--tail N] [--previous] [--timestamps] [--since D] POD|TYPE/NAME`.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// The pod, or TYPE/NAME of a workload (deploy/web) or a pod (pod/web-1).
    pub target: String,
    /// The container; default: the pod's default container.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Follow the log.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The last N lines only (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// The log of the container's previous instance.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// Only lines newer than this (e.g. 5s, 2m, 3h).
    #[arg(long)]
    pub since: Option<String>,
}

/// A label selector string from a workload's `spec.selector` (`matchLabels`, `matchExpressions` with `In`,
/// `NotIn`, `Exists`, `DoesNotExist`) or a Service's plain map.
pub fn selector_string(selector: &Value) -> String {
    let mut parts = Vec::new();
    let labels = selector.get("matchLabels").unwrap_or(selector);
    for (key, value) in labels.as_object().into_iter().flatten() {
        if let Some(value) = value.as_str() {
            parts.push(format!("{key}={value}"));
        }
    }
    for expression in selector["matchExpressions"].as_array().into_iter().flatten() {
        let key = expression["key"].as_str().unwrap_or("");
        let values: Vec<&str> =
            expression["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        match expression["operator"].as_str().unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// The rank of a pod for `logs TYPE/NAME` (lower first): bound before unbound, Running before Pending before
/// anything else, ready before not, then the oldest.
fn rank(pod: &Value) -> (bool, u8, bool, String) {
    let bound = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let phase = match pod["status"]["phase"].as_str() {
        Some("Running") => 0,
        Some("Pending") => 1,
        Some("Unknown") => 2,
        _ => 3,
    };
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let created = pod["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string();
    (!bound, phase, !ready, created)
}

/// The pod `TYPE/NAME` (or a bare pod name) stands for.
pub async fn pod_for(cx: &Context, target: &str) -> Result<Value> {
    let Some((kind, name)) = target.split_once('/') else {
        return cx.get_json(&format!("/api/v1/namespaces/{}/pods/{target}", cx.namespace)).await;
    };
    let resource = cx.resolve(kind).await?;
    if resource.group.is_empty() && resource.kind == "Pod" {
        return cx.get_json(&resource.object_path(&cx.namespace, name)).await;
    }
    let object = cx.get_json(&resource.object_path(&cx.namespace, name)).await?;
    let selector = selector_string(&object["spec"]["selector"]);
    if selector.is_empty() {
        return Err(CtlError::Usage(format!("cannot get the logs from {}", resource.plural_group())));
    }
    let pods = cx
        .get_json(&format!("/api/v1/namespaces/{}/pods{}", cx.namespace, query(&[("labelSelector", selector)])))
        .await?;
    let mut items = pods["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(rank);
    let count = items.len();
    let Some(pod) = items.into_iter().next() else {
        return Err(CtlError::Usage(format!("timed out waiting for the condition (no pod of {target})")));
    };
    if count > 1 {
        eprintln!("Found {count} pods, using pod/{}", pod["metadata"]["name"].as_str().unwrap_or(""));
    }
    Ok(pod)
}

/// The container of `pod` to use: `-c`, else the `kubectl.kubernetes.io/default-container` annotation, else the
/// first; says so on stderr when the pod has several.
pub fn default_container(pod: &Value, explicit: Option<&str>) -> Option<String> {
    if let Some(name) = explicit {
        return Some(name.to_string());
    }
    let names: Vec<&str> =
        pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    let annotated = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str();
    let chosen = annotated.filter(|a| names.contains(a)).or(names.first().copied())?;
    if names.len() > 1 && annotated.is_none() {
        let mut all: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        all.extend(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(|n| format!("{n} (init)"))),
        );
        eprintln!("Defaulted container \"{chosen}\" out of: {}", all.join(", "));
    }
    Some(chosen.to_string())
}

/// Runs `logs`.
pub async fn run(cx: &Context, args: LogsArgs) -> Result<()> {
    let pod = match pod_for(cx, &args.target).await {
        Ok(pod) => pod,
        // kubectl words a missing pod differently here.
        Err(CtlError::Api(status)) if status.code == 404 && !args.target.contains('/') => {
            return Err(CtlError::Usage(format!(
                "error from server (NotFound): pods \"{}\" not found in namespace \"{}\"",
                args.target, cx.namespace
            )));
        }
        Err(err) => return Err(err),
    };
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let container = default_container(&pod, args.container.as_deref()).unwrap_or_default();
    let since = match &args.since {
        Some(text) => parse_duration(text)?.as_secs().max(1).to_string(),
        None => String::new(),
    };
    let flag = |on: bool| if on { "true".to_string() } else { String::new() };
    let path = format!(
        "/api/v1/namespaces/{}/pods/{name}/log{}",
        cx.namespace,
        query(&[
            ("container", container),
            ("follow", flag(args.follow)),
            ("previous", flag(args.previous)),
            ("timestamps", flag(args.timestamps)),
            ("tailLines", if args.tail >= 0 { args.tail.to_string() } else { String::new() }),
            ("sinceSeconds", since),
        ])
    );
    let request = http::Request::get(&path)
        .body(Vec::new())
        .map_err(|err| CtlError::client(format!("building GET {path}"), kube::Error::HttpError(err)))?;
    let mut stream =
        cx.client.request_stream(request).await.map_err(|err| CtlError::client(format!("GET {path}"), err))?;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|err| CtlError::client(format!("reading the log of {name}"), kube::Error::ReadEvents(err)))?;
        if read == 0 {
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&buffer[..read]).and_then(|()| stdout.flush()).map_err(CtlError::Output)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_read_as_label_selector_strings() {
        let selector = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "canary", "operator": "DoesNotExist"}
        ]});
        assert_eq!(selector_string(&selector), "app=web,tier in (a,b),!canary");
        assert_eq!(selector_string(&json!({"app": "svc"})), "app=svc");
    }

    #[test]
    fn running_ready_pods_are_chosen_first() {
        let pending = json!({"metadata": {"creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"nodeName": "n"},
            "status": {"phase": "Pending"}});
        let running = json!({"metadata": {"creationTimestamp": "2021-01-01T00:00:00Z"}, "spec": {"nodeName": "n"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let mut pods = [pending, running.clone()];
        pods.sort_by_key(rank);
        assert_eq!(pods[0], running);
    }

    #[test]
    fn the_annotated_container_is_the_default() {
        let pod = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/default-container": "b"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(default_container(&pod, None).as_deref(), Some("b"));
        assert_eq!(default_container(&pod, Some("a")).as_deref(), Some("a"));
    }
}
