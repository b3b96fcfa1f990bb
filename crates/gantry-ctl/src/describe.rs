//! `describe`: kubectl's descriptions of Pods, Deployments and Nodes, and a generic one for every other type
//! (metadata, then the object's fields, then Events). Lines go through one tab writer (minimum width 0,
//! padding 2), as kubectl's do, so a line without a tab ends an aligned block.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{Context, query};
use crate::discovery::Resource;
use crate::logs::selector_string;
use crate::time::age;
use crate::{CtlError, Result, api_error_line, tabwriter};

/// `describe TYPE NAME...` or `describe TYPE/NAME...`.
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// TYPE NAME..., or TYPE/NAME...
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Describe the objects matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// Lines of a description, each at an indentation level (two spaces a level), cells separated by tabs.
#[derive(Default)]
pub struct Description {
    text: String,
}

impl Description {
    /// One line at `level`.
    pub fn line(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.text.push_str("  ");
        }
        self.text.push_str(text);
        self.text.push('\n');
    }

    /// `key:\tvalue` at `level`, `<none>` for an empty value.
    pub fn field(&mut self, level: usize, key: &str, value: &str) {
        let value = if value.is_empty() { "<none>" } else { value };
        self.line(level, &format!("{key}:\t{value}"));
    }

    /// A map as kubectl prints labels (`k=v`, one a line, sorted) or annotations (`k: v`).
    pub fn map(&mut self, level: usize, key: &str, map: &Value, separator: &str) {
        let entries: BTreeMap<&String, String> = map
            .as_object()
            .into_iter()
            .flatten()
            // kubectl leaves out the configuration kept by client-side apply.
            .filter(|(k, _)| *k != crate::apply::LAST_APPLIED)
            .map(|(k, v)| (k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect();
        if entries.is_empty() {
            self.field(level, key, "<none>");
            return;
        }
        for (i, (k, v)) in entries.iter().enumerate() {
            let v = v.trim_end_matches('\n');
            if i == 0 {
                self.line(level, &format!("{key}:\t{k}{separator}{v}"));
            } else {
                self.line(level, &format!("\t{k}{separator}{v}"));
            }
        }
    }

    /// The aligned text.
    pub fn render(&self) -> String {
        tabwriter::align(&self.text, 0, 2)
    }
}

/// A timestamp as kubectl prints it in descriptions (RFC 1123 with a numeric zone, in local time).
pub fn timestamp(value: &Value) -> String {
    let Some(time) = value.as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".to_string();
    };
    time.to_zoned(jiff::tz::TimeZone::system()).strftime("%a, %d %b %Y %H:%M:%S %z").to_string()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Runs `describe`.
pub async fn run(cx: &Context, args: DescribeArgs) -> Result<()> {
    let mut targets = crate::get::targets(cx, &args.args).await?;
    let mut failed = false;
    let mut first = true;
    for (resource, names) in &mut targets {
        if names.is_empty() {
            let selector = query(&[("labelSelector", args.selector.clone().unwrap_or_default())]);
            let list = cx.get_json(&format!("{}{selector}", resource.path(Some(&cx.namespace)))).await?;
            names.extend(
                list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["metadata"]["name"].as_str())
                    .map(str::to_string),
            );
            if names.is_empty() {
                eprintln!("No resources found in {} namespace.", cx.namespace);
            }
        }
        for name in names.iter() {
            match describe_one(cx, resource, name).await {
                Ok(text) => {
                    if !first {
                        println!("\n");
                    }
                    first = false;
                    print!("{text}");
                }
                Err(CtlError::Api(status)) => {
                    failed = true;
                    eprintln!("{}", api_error_line(&status));
                }
                Err(err) => return Err(err),
            }
        }
    }
    if failed { Err(CtlError::AlreadyReported) } else { Ok(()) }
}

async fn describe_one(cx: &Context, resource: &Resource, name: &str) -> Result<String> {
    let object = cx.get_json(&resource.object_path(&cx.namespace, name)).await?;
    let events = events_of(cx, &object).await.unwrap_or_default();
    let mut d = Description::default();
    match (resource.group.as_str(), resource.kind.as_str()) {
        ("", "Pod") => describe_pod(&mut d, &object),
        ("apps", "Deployment") => {
            let replica_sets = owned_replica_sets(cx, &object).await.unwrap_or_default();
            describe_deployment(&mut d, &object, &replica_sets);
        }
        ("", "Node") => {
            let pods = cx
                .get_json(&format!(
                    "/api/v1/pods{}",
                    query(&[(
                        "fieldSelector",
                        format!("spec.nodeName={name},status.phase!=Failed,status.phase!=Succeeded")
                    )])
                ))
                .await
                .unwrap_or_default();
            let lease = cx
                .get_json(&format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"))
                .await
                .ok();
            describe_node(&mut d, &object, &pods, lease.as_ref());
        }
        ("", "ConfigMap") => describe_config_map(&mut d, &object),
        ("", "Namespace") => {
            let count = |list: Result<Value>| list.ok().and_then(|l| l["items"].as_array().map(Vec::len)).unwrap_or(0);
            let quotas = count(cx.get_json(&format!("/api/v1/namespaces/{name}/resourcequotas")).await);
            let limits = count(cx.get_json(&format!("/api/v1/namespaces/{name}/limitranges")).await);
            // kubectl prints no events for a Namespace.
            describe_namespace(&mut d, &object, quotas, limits);
            return Ok(d.render());
        }
        ("", "Secret") => {
            // kubectl prints no events for a Secret.
            describe_secret(&mut d, &object);
            return Ok(d.render());
        }
        _ => describe_generic(&mut d, &object),
    }
    describe_events(&mut d, &events);
    Ok(d.render())
}

/// The object's events (core/v1, matched by `involvedObject.uid`), oldest first.
async fn events_of(cx: &Context, object: &Value) -> Result<Vec<Value>> {
    let Some(uid) = object["metadata"]["uid"].as_str() else { return Ok(Vec::new()) };
    let selector = query(&[("fieldSelector", format!("involvedObject.uid={uid}"))]);
    let path = match object["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("/api/v1/namespaces/{ns}/events{selector}"),
        _ => format!("/api/v1/events{selector}"),
    };
    let list = cx.get_json(&path).await?;
    let mut events = list["items"].as_array().cloned().unwrap_or_default();
    events.sort_by_key(|e| last_time(e).to_string());
    Ok(events)
}

fn last_time(event: &Value) -> &str {
    event["lastTimestamp"].as_str().or(event["eventTime"].as_str()).or(event["firstTimestamp"].as_str()).unwrap_or("")
}

/// The Events section, as kubectl prints it.
pub fn describe_events(d: &mut Description, events: &[Value]) {
    if events.is_empty() {
        d.field(0, "Events", "<none>");
        return;
    }
    d.line(0, "Events:");
    d.line(1, "Type\tReason\tAge\tFrom\tMessage");
    d.line(1, "----\t------\t----\t----\t-------");
    for event in events {
        let first = event["firstTimestamp"].as_str().or(event["eventTime"].as_str());
        let count = event["count"].as_i64().unwrap_or(1);
        let interval = if count > 1 {
            format!("{} (x{count} over {})", age(Some(last_time(event))), age(first))
        } else {
            age(first)
        };
        let source = event["source"]["component"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or(event["reportingComponent"].as_str())
            .unwrap_or("");
        d.line(
            1,
            &format!(
                "{}\t{}\t{interval}\t{source}\t{}",
                text(&event["type"]),
                text(&event["reason"]),
                text(&event["message"]).trim()
            ),
        );
    }
}

fn container_state(d: &mut Description, level: usize, title: &str, state: &Value) {
    let Some((which, details)) = state.as_object().and_then(|s| s.iter().next()) else {
        d.field(level, title, "Waiting");
        return;
    };
    match which.as_str() {
        "running" => {
            d.field(level, title, "Running");
            d.field(level + 1, "Started", &timestamp(&details["startedAt"]));
        }
        "waiting" => {
            d.field(level, title, "Waiting");
            if let Some(reason) = details["reason"].as_str() {
                d.field(level + 1, "Reason", reason);
            }
        }
        _ => {
            d.field(level, title, "Terminated");
            d.field(level + 1, "Reason", &text(&details["reason"]));
            if let Some(message) = details["message"].as_str() {
                d.field(level + 1, "Message", message);
            }
            d.field(level + 1, "Exit Code", &text(&details["exitCode"]));
            d.field(level + 1, "Started", &timestamp(&details["startedAt"]));
            d.field(level + 1, "Finished", &timestamp(&details["finishedAt"]));
        }
    }
}

fn ports(container: &Value) -> (String, String) {
    let ports: Vec<&Value> = container["ports"].as_array().into_iter().flatten().collect();
    if ports.is_empty() {
        return ("<none>".to_string(), "<none>".to_string());
    }
    let port = |key: &str| {
        ports
            .iter()
            .map(|p| format!("{}/{}", p[key].as_i64().unwrap_or(0), p["protocol"].as_str().unwrap_or("TCP")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    (port("containerPort"), port("hostPort"))
}

/// The containers of a pod spec (with their statuses when `statuses` is given), at `level`.
fn describe_containers(
    d: &mut Description,
    level: usize,
    containers: &Value,
    statuses: Option<&Value>,
    template: bool,
) {
    for container in containers.as_array().into_iter().flatten() {
        let name = container["name"].as_str().unwrap_or("");
        let status = statuses.and_then(|s| s.as_array()).and_then(|s| s.iter().find(|c| c["name"] == name));
        // kubectl indents a template's containers by one space less than a pod's.
        if template {
            d.line(level, &format!(" {name}:"));
        } else {
            d.line(level, &format!("{name}:"));
        }
        let inner = level + 1;
        if let Some(status) = status {
            d.field(inner, "Container ID", &text(&status["containerID"]));
        }
        d.field(inner, "Image", &text(&container["image"]));
        if let Some(status) = status {
            d.field(inner, "Image ID", &text(&status["imageID"]));
        }
        let (port, host_port) = ports(container);
        d.field(inner, "Port", &port);
        d.field(inner, "Host Port", &host_port);
        for key in ["command", "args"] {
            if let Some(items) = container[key].as_array() {
                d.line(inner, if key == "command" { "Command:" } else { "Args:" });
                for item in items {
                    d.line(inner + 1, &text(item));
                }
            }
        }
        if let Some(status) = status {
            container_state(d, inner, "State", &status["state"]);
            if status["lastState"].as_object().is_some_and(|s| !s.is_empty()) {
                container_state(d, inner, "Last State", &status["lastState"]);
            }
            d.field(inner, "Ready", if status["ready"].as_bool() == Some(true) { "True" } else { "False" });
            d.field(inner, "Restart Count", &text(&status["restartCount"]));
        }
        for (key, title) in [("limits", "Limits"), ("requests", "Requests")] {
            if let Some(map) = container["resources"][key].as_object().filter(|m| !m.is_empty()) {
                d.line(inner, &format!("{title}:"));
                for (k, v) in map {
                    d.field(inner + 1, k, &text(v));
                }
            }
        }
        let env: Vec<&Value> = container["env"].as_array().into_iter().flatten().collect();
        if env.is_empty() {
            d.field(inner, "Environment", "<none>");
        } else {
            d.line(inner, "Environment:");
            for var in env {
                let value = if var["value"].is_string() { text(&var["value"]) } else { "<set from a source>".into() };
                d.field(inner + 1, &text(&var["name"]), &value);
            }
        }
        let mounts: Vec<&Value> = container["volumeMounts"].as_array().into_iter().flatten().collect();
        if mounts.is_empty() {
            d.field(inner, "Mounts", "<none>");
        } else {
            d.line(inner, "Mounts:");
            for mount in mounts {
                let mode = if mount["readOnly"].as_bool() == Some(true) { "ro" } else { "rw" };
                d.line(inner + 1, &format!("{} from {} ({mode})", text(&mount["mountPath"]), text(&mount["name"])));
            }
        }
    }
}

fn describe_volumes(d: &mut Description, level: usize, volumes: &Value) {
    let volumes: Vec<&Value> = volumes.as_array().into_iter().flatten().collect();
    if volumes.is_empty() {
        d.field(level, "Volumes", "<none>");
        return;
    }
    d.line(level, "Volumes:");
    for volume in volumes {
        d.line(level + 1, &format!("{}:", text(&volume["name"])));
        let Some((kind, source)) = volume.as_object().and_then(|v| v.iter().find(|(k, _)| *k != "name")) else {
            continue;
        };
        let (type_line, detail) = match kind.as_str() {
            "emptyDir" => (
                "EmptyDir (a temporary directory that shares a pod's lifetime)",
                vec![
                    ("Medium", text(&source["medium"])),
                    ("SizeLimit", source["sizeLimit"].as_str().unwrap_or("<unset>").to_string()),
                ],
            ),
            "configMap" => (
                "ConfigMap (a volume populated by a ConfigMap)",
                vec![
                    ("Name", text(&source["name"])),
                    ("Optional", source["optional"].as_bool().unwrap_or(false).to_string()),
                ],
            ),
            "secret" => (
                "Secret (a volume populated by a Secret)",
                vec![
                    ("SecretName", text(&source["secretName"])),
                    ("Optional", source["optional"].as_bool().unwrap_or(false).to_string()),
                ],
            ),
            "hostPath" => (
                "HostPath (bare host directory volume)",
                vec![("Path", text(&source["path"])), ("HostPathType", text(&source["type"]))],
            ),
            "projected" => ("Projected (a volume that contains injected data from multiple sources)", vec![]),
            "persistentVolumeClaim" => (
                "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
                vec![
                    ("ClaimName", text(&source["claimName"])),
                    ("ReadOnly", source["readOnly"].as_bool().unwrap_or(false).to_string()),
                ],
            ),
            _ => ("", vec![]),
        };
        if type_line.is_empty() {
            d.field(level + 2, "Type", kind);
        } else {
            d.field(level + 2, "Type", type_line);
        }
        for (key, value) in detail {
            // kubectl prints an empty medium as nothing, not `<none>`.
            d.line(level + 2, &format!("{key}:\t{value}"));
        }
    }
}

fn qos_class(pod: &Value) -> String {
    text(&pod["status"]["qosClass"])
}

fn tolerations(d: &mut Description, level: usize, tolerations: &Value) {
    let list: Vec<String> = tolerations
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let (key, value, effect) = (text(&t["key"]), text(&t["value"]), text(&t["effect"]));
            let mut s = key.clone();
            if !value.is_empty() {
                s.push_str(&format!("={value}"));
            }
            if !effect.is_empty() {
                s.push_str(&format!(":{effect}"));
            }
            if t["operator"] == "Exists" && value.is_empty() {
                s.push_str(if key.is_empty() && effect.is_empty() { "op=Exists" } else { " op=Exists" });
            }
            if let Some(seconds) = t["tolerationSeconds"].as_i64() {
                s.push_str(&format!(" for {seconds}s"));
            }
            s
        })
        .collect();
    if list.is_empty() {
        d.field(level, "Tolerations", "<none>");
    } else {
        for (i, t) in list.iter().enumerate() {
            if i == 0 {
                d.line(level, &format!("Tolerations:\t{t}"));
            } else {
                d.line(level, &format!("\t{t}"));
            }
        }
    }
}

fn node_selectors(selector: &Value) -> String {
    let parts: Vec<String> =
        selector.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", text(v))).collect();
    parts.join(",")
}

/// A Pod's description.
pub fn describe_pod(d: &mut Description, pod: &Value) {
    let meta = &pod["metadata"];
    let spec = &pod["spec"];
    let status = &pod["status"];
    d.field(0, "Name", &text(&meta["name"]));
    d.field(0, "Namespace", &text(&meta["namespace"]));
    d.field(0, "Priority", &spec["priority"].as_i64().unwrap_or(0).to_string());
    if let Some(class) = spec["priorityClassName"].as_str() {
        d.field(0, "Priority Class Name", class);
    }
    if let Some(account) = spec["serviceAccountName"].as_str().filter(|a| !a.is_empty()) {
        d.field(0, "Service Account", account);
    }
    let node = match (spec["nodeName"].as_str(), status["hostIP"].as_str()) {
        (Some(node), Some(ip)) => format!("{node}/{ip}"),
        (Some(node), None) => node.to_string(),
        _ => "<none>".to_string(),
    };
    d.field(0, "Node", &node);
    if status["startTime"].is_string() {
        d.field(0, "Start Time", &timestamp(&status["startTime"]));
    }
    d.map(0, "Labels", &meta["labels"], "=");
    d.map(0, "Annotations", &meta["annotations"], ": ");
    if meta["deletionTimestamp"].is_string() {
        d.field(0, "Status", &format!("Terminating (lasts {})", age(meta["deletionTimestamp"].as_str())));
        d.field(
            0,
            "Termination Grace Period",
            &format!("{}s", meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0)),
        );
    } else {
        d.field(0, "Status", &text(&status["phase"]));
    }
    if let Some(reason) = status["reason"].as_str() {
        d.field(0, "Reason", reason);
    }
    if let Some(message) = status["message"].as_str() {
        d.field(0, "Message", message);
    }
    // An empty IP prints as nothing, not `<none>`.
    d.line(0, &format!("IP:\t{}", text(&status["podIP"])));
    let ips: Vec<&Value> = status["podIPs"].as_array().into_iter().flatten().collect();
    if ips.is_empty() {
        d.field(0, "IPs", "<none>");
    } else {
        d.line(0, "IPs:");
        for ip in ips {
            d.field(1, "IP", &text(&ip["ip"]));
        }
    }
    if let Some(owner) = meta["ownerReferences"].as_array().and_then(|o| o.iter().find(|r| r["controller"] == true)) {
        d.field(0, "Controlled By", &format!("{}/{}", text(&owner["kind"]), text(&owner["name"])));
    }
    if spec["initContainers"].as_array().is_some_and(|c| !c.is_empty()) {
        d.line(0, "Init Containers:");
        describe_containers(d, 1, &spec["initContainers"], Some(&status["initContainerStatuses"]), false);
    }
    d.line(0, "Containers:");
    describe_containers(d, 1, &spec["containers"], Some(&status["containerStatuses"]), false);
    let conditions: Vec<&Value> = status["conditions"].as_array().into_iter().flatten().collect();
    if !conditions.is_empty() {
        d.line(0, "Conditions:");
        d.line(1, "Type\tStatus");
        for condition in conditions {
            // kubectl leaves a space after each value of a pod's conditions.
            d.line(1, &format!("{} \t{} ", text(&condition["type"]), text(&condition["status"])));
        }
    }
    describe_volumes(d, 0, &spec["volumes"]);
    d.field(0, "QoS Class", &qos_class(pod));
    d.field(0, "Node-Selectors", &node_selectors(&spec["nodeSelector"]));
    tolerations(d, 0, &spec["tolerations"]);
}

async fn owned_replica_sets(cx: &Context, deployment: &Value) -> Result<Vec<Value>> {
    let namespace = deployment["metadata"]["namespace"].as_str().unwrap_or(&cx.namespace);
    let uid = deployment["metadata"]["uid"].as_str().unwrap_or("");
    let selector = selector_string(&deployment["spec"]["selector"]);
    let list = cx
        .get_json(&format!("/apis/apps/v1/namespaces/{namespace}/replicasets{}", query(&[("labelSelector", selector)])))
        .await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rs| rs["metadata"]["ownerReferences"].as_array().into_iter().flatten().any(|o| o["uid"] == uid))
        .cloned()
        .collect())
}

fn percent_or_int(value: &Value, default: &str) -> String {
    match value {
        Value::Null => default.to_string(),
        other => text(other),
    }
}

/// A Deployment's description; `replica_sets` are those it owns (the newest revision is the new one).
pub fn describe_deployment(d: &mut Description, deployment: &Value, replica_sets: &[Value]) {
    let meta = &deployment["metadata"];
    let spec = &deployment["spec"];
    let status = &deployment["status"];
    d.field(0, "Name", &text(&meta["name"]));
    d.field(0, "Namespace", &text(&meta["namespace"]));
    d.field(0, "CreationTimestamp", &timestamp(&meta["creationTimestamp"]));
    d.map(0, "Labels", &meta["labels"], "=");
    d.map(0, "Annotations", &meta["annotations"], ": ");
    d.field(0, "Selector", &selector_string(&spec["selector"]));
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    d.field(
        0,
        "Replicas",
        &format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            spec["replicas"].as_i64().unwrap_or(1),
            n(&status["updatedReplicas"]),
            n(&status["replicas"]),
            n(&status["availableReplicas"]),
            n(&status["unavailableReplicas"])
        ),
    );
    let strategy = spec["strategy"]["type"].as_str().unwrap_or("RollingUpdate");
    d.field(0, "StrategyType", strategy);
    d.field(0, "MinReadySeconds", &spec["minReadySeconds"].as_i64().unwrap_or(0).to_string());
    if strategy == "RollingUpdate" {
        let rolling = &spec["strategy"]["rollingUpdate"];
        d.field(
            0,
            "RollingUpdateStrategy",
            &format!(
                "{} max unavailable, {} max surge",
                percent_or_int(&rolling["maxUnavailable"], "25%"),
                percent_or_int(&rolling["maxSurge"], "25%")
            ),
        );
    }
    describe_template(d, &spec["template"]);
    let conditions: Vec<&Value> = status["conditions"].as_array().into_iter().flatten().collect();
    if !conditions.is_empty() {
        d.line(0, "Conditions:");
        d.line(1, "Type\tStatus\tReason");
        d.line(1, "----\t------\t------");
        for c in conditions {
            d.line(1, &format!("{}\t{}\t{}", text(&c["type"]), text(&c["status"]), text(&c["reason"])));
        }
    }
    let revision = |rs: &Value| -> i64 {
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    };
    let newest = replica_sets.iter().max_by_key(|rs| revision(rs));
    let describe_rs = |rs: &Value| {
        format!(
            "{} ({}/{} replicas created)",
            text(&rs["metadata"]["name"]),
            n(&rs["status"]["replicas"]),
            rs["spec"]["replicas"].as_i64().unwrap_or(0)
        )
    };
    // Every older ReplicaSet, scaled down or not, as kubectl lists them.
    let old: Vec<String> = replica_sets.iter().filter(|rs| Some(*rs) != newest).map(describe_rs).collect();
    d.field(0, "OldReplicaSets", &old.join(", "));
    d.field(0, "NewReplicaSet", &newest.map(describe_rs).unwrap_or_default());
}

fn describe_template(d: &mut Description, template: &Value) {
    d.line(0, "Pod Template:");
    d.map(1, "Labels", &template["metadata"]["labels"], "=");
    if template["metadata"]["annotations"].as_object().is_some_and(|a| !a.is_empty()) {
        d.map(1, "Annotations", &template["metadata"]["annotations"], ": ");
    }
    let spec = &template["spec"];
    if let Some(account) = spec["serviceAccountName"].as_str() {
        d.field(1, "Service Account", account);
    }
    if spec["initContainers"].as_array().is_some_and(|c| !c.is_empty()) {
        d.line(1, "Init Containers:");
        describe_containers(d, 1, &spec["initContainers"], None, true);
    }
    d.line(1, "Containers:");
    describe_containers(d, 1, &spec["containers"], None, true);
    describe_volumes(d, 1, &spec["volumes"]);
    d.field(1, "Node-Selectors", &node_selectors(&spec["nodeSelector"]));
    tolerations(d, 1, &spec["tolerations"]);
}

/// A quantity in its base unit (cores for CPU, bytes for memory), for percentages.
pub fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * scale)
}

fn pod_total(pod: &Value, kind: &str, resource: &str) -> f64 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["resources"][kind][resource].as_str().and_then(quantity))
        .sum()
}

fn with_percent(value: f64, of: Option<f64>, cpu: bool) -> String {
    let shown = if value.abs() < f64::EPSILON {
        "0".to_string()
    } else if cpu {
        format!("{}m", (value * 1000.0).round())
    } else {
        format!("{}", value.round())
    };
    // An integer, as kubectl prints it (and never "-0").
    let percent = of.filter(|o| *o > 0.0).map(|o| (value / o * 100.0).floor() as i64).unwrap_or(0);
    format!("{shown} ({percent}%)")
}

/// A Node's description; `pods` is the list of its non-terminated pods.
pub fn describe_node(d: &mut Description, node: &Value, pods: &Value, lease: Option<&Value>) {
    let meta = &node["metadata"];
    let spec = &node["spec"];
    let status = &node["status"];
    d.field(0, "Name", &text(&meta["name"]));
    let roles: Vec<&str> = meta["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    d.field(0, "Roles", &roles.join(","));
    d.map(0, "Labels", &meta["labels"], "=");
    d.map(0, "Annotations", &meta["annotations"], ": ");
    d.field(0, "CreationTimestamp", &timestamp(&meta["creationTimestamp"]));
    let taints: Vec<String> = spec["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| match t["value"].as_str().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}={v}:{}", text(&t["key"]), text(&t["effect"])),
            None => format!("{}:{}", text(&t["key"]), text(&t["effect"])),
        })
        .collect();
    if taints.is_empty() {
        d.field(0, "Taints", "<none>");
    } else {
        for (i, t) in taints.iter().enumerate() {
            d.line(0, &if i == 0 { format!("Taints:\t{t}") } else { format!("\t{t}") });
        }
    }
    d.field(0, "Unschedulable", &spec["unschedulable"].as_bool().unwrap_or(false).to_string());
    if let Some(lease) = lease {
        let unset = |v: &Value| if v.is_string() { timestamp(v) } else { "<unset>".to_string() };
        d.line(0, "Lease:");
        d.field(1, "HolderIdentity", lease["spec"]["holderIdentity"].as_str().unwrap_or("<unset>"));
        d.field(1, "AcquireTime", &unset(&lease["spec"]["acquireTime"]));
        d.field(1, "RenewTime", &unset(&lease["spec"]["renewTime"]));
    }
    let conditions: Vec<&Value> = status["conditions"].as_array().into_iter().flatten().collect();
    if !conditions.is_empty() {
        d.line(0, "Conditions:");
        d.line(1, "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage");
        d.line(1, "----\t------\t-----------------\t------------------\t------\t-------");
        for c in conditions {
            d.line(
                1,
                // kubectl leaves a space after each cell but the last.
                &format!(
                    "{} \t{} \t{} \t{} \t{} \t{}",
                    text(&c["type"]),
                    text(&c["status"]),
                    timestamp(&c["lastHeartbeatTime"]),
                    timestamp(&c["lastTransitionTime"]),
                    text(&c["reason"]),
                    text(&c["message"])
                ),
            );
        }
    }
    d.line(0, "Addresses:");
    for address in status["addresses"].as_array().into_iter().flatten() {
        d.field(1, &text(&address["type"]), &text(&address["address"]));
    }
    for (key, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        if let Some(map) = status[key].as_object() {
            d.line(0, &format!("{title}:"));
            for (k, v) in map {
                d.field(1, k, &text(v));
            }
        }
    }
    if let Some(info) = status["nodeInfo"].as_object() {
        d.line(0, "System Info:");
        for (key, title) in [
            ("machineID", "Machine ID"),
            ("systemUUID", "System UUID"),
            ("bootID", "Boot ID"),
            ("kernelVersion", "Kernel Version"),
            ("osImage", "OS Image"),
            ("operatingSystem", "Operating System"),
            ("architecture", "Architecture"),
            ("containerRuntimeVersion", "Container Runtime Version"),
            ("kubeletVersion", "Kubelet Version"),
            ("kubeProxyVersion", "Kube-Proxy Version"),
        ] {
            // An empty value prints as nothing here.
            d.line(1, &format!("{title}:\t{}", info.get(key).map(text).unwrap_or_default()));
        }
    }
    if let Some(cidr) = spec["podCIDR"].as_str().filter(|c| !c.is_empty()) {
        d.field(0, "PodCIDR", cidr);
    }
    let cidrs: Vec<String> = spec["podCIDRs"].as_array().into_iter().flatten().map(text).collect();
    if !cidrs.is_empty() {
        d.field(0, "PodCIDRs", &cidrs.join(","));
    }
    let pods: Vec<&Value> = pods["items"].as_array().into_iter().flatten().collect();
    let allocatable = |r: &str| status["allocatable"][r].as_str().and_then(quantity);
    d.line(0, &format!("Non-terminated Pods:\t({} in total)", pods.len()));
    d.line(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge");
    d.line(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---");
    let mut totals = [0.0f64; 4];
    for pod in &pods {
        let values = [
            pod_total(pod, "requests", "cpu"),
            pod_total(pod, "limits", "cpu"),
            pod_total(pod, "requests", "memory"),
            pod_total(pod, "limits", "memory"),
        ];
        for (t, v) in totals.iter_mut().zip(values) {
            *t += v;
        }
        d.line(
            1,
            &format!(
                "{}\t{}\t\t{}\t{}\t{}\t{}\t{}",
                text(&pod["metadata"]["namespace"]),
                text(&pod["metadata"]["name"]),
                with_percent(values[0], allocatable("cpu"), true),
                with_percent(values[1], allocatable("cpu"), true),
                with_percent(values[2], allocatable("memory"), false),
                with_percent(values[3], allocatable("memory"), false),
                age(pod["metadata"]["creationTimestamp"].as_str())
            ),
        );
    }
    d.line(0, "Allocated resources:");
    d.line(1, "(Total limits may be over 100 percent, i.e., overcommitted.)");
    d.line(1, "Resource\tRequests\tLimits");
    d.line(1, "--------\t--------\t------");
    d.line(
        1,
        &format!(
            "cpu\t{}\t{}",
            with_percent(totals[0], allocatable("cpu"), true),
            with_percent(totals[1], allocatable("cpu"), true)
        ),
    );
    d.line(
        1,
        &format!(
            "memory\t{}\t{}",
            with_percent(totals[2], allocatable("memory"), false),
            with_percent(totals[3], allocatable("memory"), false)
        ),
    );
    d.line(1, "ephemeral-storage\t0 (0%)\t0 (0%)");
    for (key, _) in status["allocatable"].as_object().into_iter().flatten().filter(|(k, _)| k.starts_with("hugepages-"))
    {
        d.line(1, &format!("{key}\t0 (0%)\t0 (0%)"));
    }
}

fn describe_header(d: &mut Description, object: &Value) {
    let meta = &object["metadata"];
    d.field(0, "Name", &text(&meta["name"]));
    d.field(0, "Namespace", &text(&meta["namespace"]));
    d.map(0, "Labels", &meta["labels"], "=");
    d.map(0, "Annotations", &meta["annotations"], ": ");
}

/// A Namespace's description; the quotas and limit ranges are only counted (kubectl details them).
pub fn describe_namespace(d: &mut Description, namespace: &Value, quotas: usize, limit_ranges: usize) {
    let meta = &namespace["metadata"];
    d.field(0, "Name", &text(&meta["name"]));
    d.map(0, "Labels", &meta["labels"], "=");
    d.map(0, "Annotations", &meta["annotations"], ": ");
    d.field(0, "Status", &text(&namespace["status"]["phase"]));
    d.line(0, "");
    d.line(0, if quotas == 0 { "No resource quota." } else { "Resource Quotas: see gantry ctl get resourcequotas" });
    d.line(0, "");
    d.line(
        0,
        if limit_ranges == 0 { "No LimitRange resource." } else { "Resource Limits: see gantry ctl get limitranges" },
    );
}

/// A ConfigMap's description: every key and its value, then the binary keys' sizes.
pub fn describe_config_map(d: &mut Description, config_map: &Value) {
    describe_header(d, config_map);
    d.line(0, "");
    d.line(0, "Data");
    d.line(0, "====");
    let data: BTreeMap<&String, &Value> = config_map["data"].as_object().into_iter().flatten().collect();
    for (key, value) in data {
        d.line(0, &format!("{key}:"));
        d.line(0, "----");
        d.line(0, &text(value));
        d.line(0, "");
    }
    d.line(0, "");
    d.line(0, "BinaryData");
    d.line(0, "====");
    let binary: BTreeMap<&String, &Value> = config_map["binaryData"].as_object().into_iter().flatten().collect();
    for (key, value) in binary {
        d.line(0, &format!("{key}: {} bytes", decoded_len(value)));
    }
    d.line(0, "");
}

/// The length of base64 data once decoded.
fn decoded_len(value: &Value) -> usize {
    let encoded = value.as_str().unwrap_or("");
    let padding = encoded.bytes().rev().take_while(|b| *b == b'=').count();
    (encoded.len() / 4 * 3).saturating_sub(padding)
}

/// A Secret's description: its type and the size of each key, never the values.
pub fn describe_secret(d: &mut Description, secret: &Value) {
    describe_header(d, secret);
    d.line(0, "");
    d.field(0, "Type", &text(&secret["type"]));
    d.line(0, "");
    d.line(0, "Data");
    d.line(0, "====");
    let data: BTreeMap<&String, &Value> = secret["data"].as_object().into_iter().flatten().collect();
    for (key, value) in data {
        d.line(0, &format!("{key}:\t{} bytes", decoded_len(value)));
    }
}

/// `creationTimestamp` → `Creation Timestamp`, as kubectl titles the fields of a generic description.
pub fn title(key: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = key.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
            continue;
        }
        let previous = chars[i - 1];
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        if c.is_uppercase() && (previous.is_lowercase() || (previous.is_uppercase() && next_lower)) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn generic_value(d: &mut Description, level: usize, key: &str, value: &Value) {
    match value {
        Value::Object(map) => {
            d.line(level, &format!("{}:", title(key)));
            for (k, v) in map {
                generic_value(d, level + 1, k, v);
            }
        }
        Value::Array(items) => {
            d.line(level, &format!("{}:", title(key)));
            for item in items {
                match item {
                    Value::Object(map) => {
                        for (k, v) in map {
                            generic_value(d, level + 1, k, v);
                        }
                    }
                    other => d.line(level + 1, &text(other)),
                }
            }
        }
        other => d.line(level, &format!("{}:\t{}", title(key), text(other))),
    }
}

/// A description of any object: its name, namespace, labels and annotations, then every field.
pub fn describe_generic(d: &mut Description, object: &Value) {
    let meta = &object["metadata"];
    d.field(0, "Name", &text(&meta["name"]));
    if let Some(ns) = meta["namespace"].as_str() {
        d.field(0, "Namespace", ns);
    }
    d.map(0, "Labels", &meta["labels"], "=");
    d.map(0, "Annotations", &meta["annotations"], ": ");
    for (key, value) in object.as_object().into_iter().flatten() {
        match key.as_str() {
            "metadata" => {
                let mut shown = meta.clone();
                if let Some(m) = shown.as_object_mut() {
                    for k in ["name", "namespace", "labels", "annotations", "managedFields"] {
                        m.remove(k);
                    }
                }
                generic_value(d, 0, "metadata", &shown);
            }
            "apiVersion" => d.field(0, "API Version", &text(value)),
            _ => generic_value(d, 0, key, value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_names_are_titled_as_kubectl_titles_them() {
        assert_eq!(title("creationTimestamp"), "Creation Timestamp");
        assert_eq!(title("podIP"), "Pod IP");
        assert_eq!(title("data"), "Data");
        assert_eq!(title("resourceVersion"), "Resource Version");
    }

    #[test]
    fn a_pod_description_has_kubectls_sections_aligned() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "a"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "default", "containers": [
                {"name": "main", "image": "busybox", "command": ["sh", "-c", "sleep 1"]}]},
            "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}],
                "qosClass": "BestEffort",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "main", "ready": true, "restartCount": 2, "image": "busybox",
                    "imageID": "sha256:x", "containerID": "gantry://c",
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
        });
        let mut d = Description::default();
        describe_pod(&mut d, &pod);
        describe_events(&mut d, &[]);
        let text = d.render();
        assert!(text.starts_with("Name:             web\nNamespace:        default\n"), "{text}");
        assert!(text.contains("Node:             n1/10.0.0.1\n"), "{text}");
        assert!(text.contains("Labels:           app=web\n                  tier=a\n"), "{text}");
        assert!(text.contains("    Restart Count:  2\n"), "{text}");
        assert!(text.contains("Conditions:\n  Type           Status\n  Ready          True \n"), "{text}");
        // The conditions' block goes on to the end: kubectl aligns these lines with the conditions.
        assert!(text.ends_with("QoS Class:       BestEffort\nNode-Selectors:  <none>\nTolerations:     <none>\nEvents:          <none>\n"), "{text}");
    }

    #[test]
    fn repeated_events_show_their_count_and_span() {
        let event = json!({"type": "Warning", "reason": "BackOff", "message": "Back-off restarting\n",
            "count": 3, "source": {"component": "kubelet"},
            "firstTimestamp": "2000-01-01T00:00:00Z", "lastTimestamp": "2000-01-01T00:00:00Z"});
        let mut d = Description::default();
        describe_events(&mut d, &[event]);
        let text = d.render();
        assert!(text.contains("Warning  BackOff  "), "{text}");
        assert!(text.contains("(x3 over "), "{text}");
        assert!(text.trim_end().ends_with("kubelet  Back-off restarting"), "{text}");
    }

    #[test]
    fn config_maps_show_values_and_secrets_only_sizes() {
        let cm = json!({"metadata": {"name": "c", "namespace": "default"}, "data": {"b": "2", "a": "1"}});
        let mut d = Description::default();
        describe_config_map(&mut d, &cm);
        let text = d.render();
        assert!(text.contains("\nData\n====\na:\n----\n1\n\nb:\n----\n2\n\n\nBinaryData\n====\n\n"), "{text}");
        let secret = json!({"metadata": {"name": "s", "namespace": "default"}, "type": "Opaque",
            "data": {"a": "aGVsbG8=", "long-key": "eA=="}});
        let mut d = Description::default();
        describe_secret(&mut d, &secret);
        let text = d.render();
        assert!(text.ends_with("Data\n====\na:         5 bytes\nlong-key:  1 bytes\n"), "{text}");
        assert!(!text.contains("aGVsbG8"), "{text}");
    }

    #[test]
    fn quantities_convert_to_base_units() {
        assert_eq!(quantity("250m"), Some(0.25));
        assert_eq!(quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("x"), None);
    }

    #[test]
    fn a_deployment_description_names_its_new_replica_set() {
        let deployment = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2, "unavailableReplicas": 1}});
        let rs = json!({"metadata": {"name": "web-abc", "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 3}, "status": {"replicas": 3}});
        let mut d = Description::default();
        describe_deployment(&mut d, &deployment, &[rs]);
        let text = d.render();
        assert!(
            text.contains("Replicas:               3 desired | 3 updated | 3 total | 2 available | 1 unavailable\n"),
            "{text}"
        );
        assert!(
            text.contains("OldReplicaSets:    <none>\nNewReplicaSet:     web-abc (3/3 replicas created)\n"),
            "{text}"
        );
        assert!(text.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge\n"), "{text}");
    }
}
