//! `delete`: by type and names, by file, by label selector or every object of a type; then, as kubectl does by
//! default, wait until the objects are gone (a new object of the same name, with another UID, counts as gone).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::apply::{object_namespace, read_manifests, resource_of};
use crate::config::{Context, query};
use crate::discovery::Resource;
use crate::get::targets;
use crate::{CtlError, Result, api_error_line, report};

/// `delete TYPE NAME... | TYPE/NAME... | -f FILE | TYPE -l SELECTOR | TYPE --all`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// TYPE NAME..., or TYPE/NAME..., or TYPE with -l or --all.
    pub args: Vec<String>,
    /// Delete the objects of these files (`-` for stdin); repeatable.
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// Also read the directories' subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete the objects matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete the objects matching this field selector.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Delete every object of the type in the namespace.
    #[arg(long)]
    pub all: bool,
    /// With -l or --all: in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Seconds the objects get to terminate; -1 keeps each object's own default.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Terminate at once (a grace period of 1 second).
    #[arg(long)]
    pub now: bool,
    /// Delete at once, without waiting for the containers to stop (a grace period of 0).
    #[arg(long)]
    pub force: bool,
    /// Wait until the objects are gone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// How long to wait for the objects to be gone (e.g. `30s`, `2m`); 0 waits for ever.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// A missing object is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// One object to delete.
#[derive(Clone, Debug)]
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: String,
}

/// kubectl's line for a deleted object: `pod "x" deleted from default namespace`, or `node "n" deleted`.
pub fn deleted_line(resource: &Resource, name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if resource.namespaced => format!("{} \"{name}\" deleted from {ns} namespace", resource.kind_group()),
        _ => format!("{} \"{name}\" deleted", resource.kind_group()),
    }
}

/// A duration as kubectl's flags take it: `90s`, `2m`, `1h30m`, `500ms`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || CtlError::Usage(format!("invalid duration {text:?}"));
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(number * scale);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

async fn collect(cx: &Context, args: &DeleteArgs) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    if !args.filenames.is_empty() {
        for manifest in read_manifests(&args.filenames, args.recursive)? {
            let resource = resource_of(cx, &manifest).await?;
            let namespace = object_namespace(cx, &resource, &manifest.object)?;
            let name = manifest.object["metadata"]["name"].as_str().unwrap_or("").to_string();
            out.push(Target { resource, namespace, name });
        }
        return Ok(out);
    }
    if args.args.is_empty() {
        return Err(CtlError::Usage(
            "You must provide one or more resources by argument or filename.\nExample resource specifications \
             include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'"
                .to_string(),
        ));
    }
    let by_selection = args.all || args.selector.is_some() || args.field_selector.is_some();
    for (resource, names) in targets(cx, &args.args).await? {
        if names.is_empty() {
            if !by_selection {
                return Err(CtlError::Usage("resource(s) were provided, but no name was specified".to_string()));
            }
            let namespace = (!args.all_namespaces).then_some(cx.namespace.as_str());
            let selectors = query(&[
                ("labelSelector", args.selector.clone().unwrap_or_default()),
                ("fieldSelector", args.field_selector.clone().unwrap_or_default()),
            ]);
            let list = cx.get_json(&format!("{}{selectors}", resource.path(namespace))).await?;
            for item in list["items"].as_array().into_iter().flatten() {
                let name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
                let namespace = item["metadata"]["namespace"].as_str().map(str::to_string);
                out.push(Target { resource: resource.clone(), namespace, name });
            }
        } else {
            if by_selection {
                return Err(CtlError::Usage("name cannot be provided when a selector is specified".to_string()));
            }
            for name in names {
                let namespace = resource.namespaced.then(|| cx.namespace.clone());
                out.push(Target { resource: resource.clone(), namespace, name });
            }
        }
    }
    if out.is_empty() && by_selection {
        eprintln!("No resources found");
    }
    Ok(out)
}

/// Runs `delete`.
pub async fn run(cx: &Context, args: DeleteArgs) -> Result<()> {
    let grace = if args.force {
        Some(0)
    } else if args.now {
        Some(1)
    } else {
        (args.grace_period >= 0).then_some(args.grace_period)
    };
    let timeout = parse_duration(&args.timeout)?;
    let targets = collect(cx, &args).await?;
    let mut failed = false;
    let mut deleted: Vec<(Target, Option<String>)> = Vec::new();
    let mut options = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
    if let Some(grace) = grace {
        options["gracePeriodSeconds"] = json!(grace);
    }
    for target in targets {
        let path = target.resource.object_path(target.namespace.as_deref().unwrap_or(""), &target.name);
        match cx.request(http::Method::DELETE, &path, Some(&options), "").await {
            Ok(answer) => {
                println!("{}", deleted_line(&target.resource, &target.name, target.namespace.as_deref()));
                let uid = answer["metadata"]["uid"].as_str().map(str::to_string);
                deleted.push((target, uid));
            }
            Err(err) if err.is_not_found() && args.ignore_not_found => {}
            Err(CtlError::Api(status)) => {
                failed = true;
                eprintln!("{}", api_error_line(&status));
            }
            Err(err) => return Err(err),
        }
    }
    if args.wait {
        let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
        for (target, uid) in &deleted {
            if let Err(err) = wait_gone(cx, target, uid.as_deref(), deadline).await {
                failed = true;
                if let Some(line) = report(&err) {
                    eprintln!("{line}");
                }
            }
        }
    }
    if failed { Err(CtlError::AlreadyReported) } else { Ok(()) }
}

async fn wait_gone(cx: &Context, target: &Target, uid: Option<&str>, deadline: Option<Instant>) -> Result<()> {
    let path = target.resource.object_path(target.namespace.as_deref().unwrap_or(""), &target.name);
    loop {
        match cx.get_json(&path).await {
            Err(err) if err.is_not_found() => return Ok(()),
            Err(err) => return Err(err),
            Ok(live) => {
                let live_uid = live["metadata"]["uid"].as_str();
                if uid.is_some() && live_uid != uid {
                    return Ok(());
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(CtlError::Timeout);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_reads_them() {
        assert_eq!(parse_duration("30").expect("seconds"), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").expect("1m30s"), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").expect("ms"), Duration::from_millis(500));
        assert_eq!(parse_duration("2h").expect("h"), Duration::from_secs(7200));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn namespaced_objects_say_their_namespace_when_deleted() {
        let pod = Resource {
            group: String::new(),
            version: "v1".into(),
            plural: "pods".into(),
            singular: "pod".into(),
            kind: "Pod".into(),
            namespaced: true,
            short_names: vec![],
            verbs: vec![],
        };
        assert_eq!(deleted_line(&pod, "x", Some("default")), "pod \"x\" deleted from default namespace");
        let node = Resource { namespaced: false, kind: "Node".into(), ..pod };
        assert_eq!(deleted_line(&node, "n", None), "node \"n\" deleted");
    }
}
