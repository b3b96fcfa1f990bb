//! `get`: the server's tables, or the objects as YAML, JSON or names.

use std::io::Write;

use futures::{AsyncBufReadExt, StreamExt};
use serde_json::{Value, json};

use crate::config::{Context, query};
use crate::discovery::Resource;
use crate::table::{self, TableOptions};
use crate::{CtlError, Result, api_error_line};

/// `get TYPE[,TYPE...] [NAME...]` or `get TYPE/NAME...`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// TYPE[,TYPE...] [NAME...], or TYPE/NAME...
    pub args: Vec<String>,
    /// List the objects of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// A label selector (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// A field selector (`status.phase=Running`).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Print no header line.
    #[arg(long)]
    pub no_headers: bool,
}

/// What the command line asks for: types, each with the names asked (none: every object).
pub type Targets = Vec<(Resource, Vec<String>)>;

/// Splits `TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...` into types and names, resolving each type.
pub async fn targets(cx: &Context, args: &[String]) -> Result<Targets> {
    let discovery = cx.discovery().await?;
    let resolve =
        |name: &str| discovery.resolve(name).cloned().ok_or_else(|| CtlError::UnknownResource(name.to_string()));
    let mut out: Targets = Vec::new();
    if args.iter().any(|a| a.contains('/')) {
        for arg in args {
            let Some((kind, name)) = arg.split_once('/').filter(|(k, n)| !k.is_empty() && !n.is_empty()) else {
                return Err(CtlError::Usage(format!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in \
                     resource/name form (e.g. 'gantry ctl get resource/<resource_name>' instead of 'gantry ctl get \
                     resource resource/<resource_name>'; got {arg:?})"
                )));
            };
            let resource = resolve(kind)?;
            match out.last_mut() {
                Some((last, names)) if *last == resource => names.push(name.to_string()),
                _ => out.push((resource, vec![name.to_string()])),
            }
        }
        return Ok(out);
    }
    let Some((types, names)) = args.split_first() else {
        return Err(CtlError::Usage("you must specify the type of resource to get".to_string()));
    };
    for kind in types.split(',').filter(|k| !k.is_empty()) {
        let resource = resolve(kind)?;
        if !out.iter().any(|(r, _)| *r == resource) {
            out.push((resource, names.to_vec()));
        }
    }
    Ok(out)
}

enum Format {
    Table { wide: bool },
    Yaml,
    Json,
    Name,
}

fn format(output: Option<&str>) -> Result<Format> {
    match output {
        None | Some("") => Ok(Format::Table { wide: false }),
        Some("wide") => Ok(Format::Table { wide: true }),
        Some("yaml") => Ok(Format::Yaml),
        Some("json") => Ok(Format::Json),
        Some("name") => Ok(Format::Name),
        Some(other) => Err(CtlError::Usage(format!(
            "unable to match a printer suitable for the output format \"{other}\", allowed formats are: \
             json,name,wide,yaml"
        ))),
    }
}

/// Runs `get`.
pub async fn run(cx: &Context, args: GetArgs) -> Result<()> {
    if args.args.is_empty() {
        return Err(CtlError::Usage(
            "Required resource not specified.\nUse \"gantry ctl get TYPE\" with a type the server knows (e.g. \
             gantry ctl get pods)."
                .to_string(),
        ));
    }
    let format = format(args.output.as_deref())?;
    // kubectl prints the objects found first, then what was not found.
    let mut errors: Vec<String> = Vec::new();
    let targets = targets(cx, &args.args).await?;
    if args.all_namespaces && targets.iter().any(|(_, names)| !names.is_empty()) {
        return Err(CtlError::Usage("a resource cannot be retrieved by name across all namespaces".to_string()));
    }
    let several_types = targets.len() > 1;
    let mut failed = false;
    let mut objects: Vec<Value> = Vec::new();
    let mut any_names = false;
    let mut out = String::new();
    let mut printed_rows = 0;
    for (resource, names) in &targets {
        let namespace = (!args.all_namespaces).then_some(cx.namespace.as_str());
        any_names |= !names.is_empty();
        let selectors = query(&[
            ("labelSelector", args.selector.clone().unwrap_or_default()),
            ("fieldSelector", args.field_selector.clone().unwrap_or_default()),
        ]);
        match format {
            Format::Table { wide } => {
                let mut merged: Option<Value> = None;
                let mut add = |table: Value| match &mut merged {
                    None => merged = Some(table),
                    Some(m) => {
                        if let (Some(rows), Some(more)) = (m["rows"].as_array_mut(), table["rows"].as_array()) {
                            rows.extend(more.iter().cloned());
                        }
                    }
                };
                if names.is_empty() {
                    add(cx.get_table(&format!("{}{selectors}", resource.path(namespace))).await?);
                } else {
                    for name in names {
                        match cx.get_table(&resource.object_path(&cx.namespace, name)).await {
                            Ok(table) => add(table),
                            Err(CtlError::Api(status)) => {
                                failed = true;
                                errors.push(api_error_line(&status));
                            }
                            Err(err) => return Err(err),
                        }
                    }
                }
                let Some(table) = merged.filter(|t| table::row_count(t) > 0) else { continue };
                let options = TableOptions {
                    wide,
                    with_namespace: args.all_namespaces && resource.namespaced,
                    kind_prefix: several_types.then(|| resource.kind_group()),
                    no_headers: args.no_headers,
                };
                if printed_rows > 0 && !args.no_headers {
                    out.push('\n');
                }
                printed_rows += table::row_count(&table);
                out.push_str(&table::align(&table::table_lines(&table, &options)));
            }
            Format::Yaml | Format::Json | Format::Name => {
                if names.is_empty() {
                    let list = cx.get_json(&format!("{}{selectors}", resource.path(namespace))).await?;
                    for mut item in list["items"].as_array().cloned().unwrap_or_default() {
                        item["apiVersion"] = json!(resource.api_version());
                        item["kind"] = json!(resource.kind);
                        objects.push(item);
                    }
                } else {
                    for name in names {
                        match cx.get_json(&resource.object_path(&cx.namespace, name)).await {
                            Ok(object) => objects.push(object),
                            Err(CtlError::Api(status)) => {
                                failed = true;
                                errors.push(api_error_line(&status));
                            }
                            Err(err) => return Err(err),
                        }
                    }
                }
                if let Format::Name = format {
                    for object in objects.drain(..) {
                        let name = object["metadata"]["name"].as_str().unwrap_or("");
                        out.push_str(&format!("{}/{name}\n", resource.kind_group()));
                        printed_rows += 1;
                    }
                }
            }
        }
    }
    // kubectl hides managed fields unless asked (`--show-managed-fields`).
    for object in &mut objects {
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
        }
    }
    match format {
        Format::Yaml | Format::Json => {
            let single = any_names && objects.len() == 1 && targets.len() == 1 && targets[0].1.len() == 1;
            let document = if single {
                objects.pop().unwrap_or(Value::Null)
            } else {
                json!({"apiVersion": "v1", "items": objects, "kind": "List", "metadata": {"resourceVersion": ""}})
            };
            out = match format {
                Format::Yaml => to_yaml(&document)?,
                _ => to_json(&document)?,
            };
        }
        Format::Table { .. } | Format::Name => {
            if printed_rows == 0 && !any_names {
                let namespaced = targets.iter().any(|(r, _)| r.namespaced);
                if namespaced && !args.all_namespaces {
                    eprintln!("No resources found in {} namespace.", cx.namespace);
                } else {
                    eprintln!("No resources found");
                }
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).map_err(CtlError::Output)?;
    drop(stdout);
    for line in &errors {
        eprintln!("{line}");
    }
    if args.watch && !failed {
        watch(cx, &args, &targets).await?;
    }
    if failed { Err(CtlError::AlreadyReported) } else { Ok(()) }
}

/// JSON as kubectl prints it: keys sorted, indented by four spaces.
pub fn to_json(value: &Value) -> Result<String> {
    let mut bytes = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
    serde::Serialize::serialize(value, &mut serializer)
        .map_err(|source| CtlError::Json { context: "printing JSON".to_string(), source })?;
    bytes.push(b'\n');
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// YAML as kubectl prints it.
pub fn to_yaml(value: &Value) -> Result<String> {
    Ok(crate::yaml::to_yaml(value))
}

/// `-w`: the rows of objects as they change, without headers (one watch per type, the first type only when
/// several are listed, as kubectl does).
async fn watch(cx: &Context, args: &GetArgs, targets: &Targets) -> Result<()> {
    let Some((resource, names)) = targets.first() else { return Ok(()) };
    let namespace = (!args.all_namespaces).then_some(cx.namespace.as_str());
    let mut field_selector = args.field_selector.clone().unwrap_or_default();
    if let [name] = names.as_slice() {
        field_selector = format!("metadata.name={name}");
    }
    let list_query = query(&[
        ("labelSelector", args.selector.clone().unwrap_or_default()),
        ("fieldSelector", field_selector.clone()),
    ]);
    let list = cx.get_json(&format!("{}{list_query}", resource.path(namespace))).await?;
    let version = list["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
    let watch_query = query(&[
        ("watch", "true".to_string()),
        ("resourceVersion", version),
        ("labelSelector", args.selector.clone().unwrap_or_default()),
        ("fieldSelector", field_selector),
    ]);
    let path = format!("{}{watch_query}", resource.path(namespace));
    let request = http::Request::get(&path)
        .body(Vec::new())
        .map_err(|err| CtlError::client(format!("building GET {path}"), kube::Error::HttpError(err)))?;
    let stream = cx.client.request_stream(request).await.map_err(|err| CtlError::client(format!("GET {path}"), err))?;
    let mut lines = stream.lines();
    let wide = args.output.as_deref() == Some("wide");
    while let Some(line) = lines.next().await {
        let line = line.map_err(|err| CtlError::client(format!("watching {path}"), kube::Error::ReadEvents(err)))?;
        let Ok(event) = serde_json::from_str::<Value>(&line) else { continue };
        let object = &event["object"];
        let (Some(name), ns) = (object["metadata"]["name"].as_str(), object["metadata"]["namespace"].as_str()) else {
            continue;
        };
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        let table = match cx.get_table(&resource.object_path(ns.unwrap_or(&cx.namespace), name)).await {
            Ok(table) => table,
            Err(err) if err.is_not_found() => continue,
            Err(err) => return Err(err),
        };
        let options = TableOptions {
            wide,
            with_namespace: args.all_namespaces && resource.namespaced,
            no_headers: true,
            ..Default::default()
        };
        let text = table::align(&table::table_lines(&table, &options));
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).map_err(CtlError::Output)?;
    }
    Ok(())
}
