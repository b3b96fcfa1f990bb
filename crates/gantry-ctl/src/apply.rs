//! `apply -f`: client-side apply. A new object is created carrying the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation (the configuration as compact JSON); an
//! existing one gets the three-way patch of [`crate::patch`] (strategic merge for built-in kinds, JSON merge
//! for custom resources), which also updates the annotation. Server-side apply is not used.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::Context;
use crate::discovery::Resource;
use crate::patch::{PatchKind, schema_for, three_way};
use crate::{CtlError, Result, report};

/// The annotation holding the configuration applied last.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `apply -f FILE|DIR|-`.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// A file, a directory of .yaml/.yml/.json files, or `-` for stdin; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<String>,
    /// Also read the directories' subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// An object read from a manifest, with where it came from.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The object.
    pub object: Value,
    /// The file (or `STDIN`).
    pub source: String,
}

/// The objects of `-f` arguments: every document of every file (directories expanded, `List`s flattened).
pub fn read_manifests(filenames: &[String], recursive: bool) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for name in filenames {
        if name == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| CtlError::Io { path: "STDIN".to_string(), source })?;
            out.extend(parse_documents(&text, "STDIN")?);
            continue;
        }
        let path = Path::new(name);
        let metadata = std::fs::metadata(path).map_err(|source| CtlError::Io { path: name.clone(), source })?;
        let files = if metadata.is_dir() { files_of(path, recursive)? } else { vec![path.to_path_buf()] };
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|source| CtlError::Io { path: file.display().to_string(), source })?;
            out.extend(parse_documents(&text, &file.display().to_string())?);
        }
    }
    Ok(out)
}

fn files_of(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    let io = |source| CtlError::Io { path: dir.display().to_string(), source };
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(io)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                files.extend(files_of(&entry, true)?);
            }
        } else if entry.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            files.push(entry);
        }
    }
    Ok(files)
}

/// The objects of a multi-document YAML (or JSON) text; `List`s are flattened, empty documents skipped.
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|err| CtlError::Parse { path: source.to_string(), message: err.to_string() })?;
        flatten(value, source, &mut out)?;
    }
    Ok(out)
}

fn flatten(value: Value, source: &str, out: &mut Vec<Manifest>) -> Result<()> {
    if value.is_null() {
        return Ok(());
    }
    if !value.is_object() {
        return Err(CtlError::Parse { path: source.to_string(), message: "a document is not an object".to_string() });
    }
    if value["kind"].as_str().is_some_and(|k| k == "List" || k.ends_with("List")) && value["items"].is_array() {
        for item in value["items"].as_array().into_iter().flatten() {
            flatten(item.clone(), source, out)?;
        }
        return Ok(());
    }
    if value["kind"].as_str().unwrap_or("").is_empty() || value["apiVersion"].as_str().unwrap_or("").is_empty() {
        return Err(CtlError::Parse {
            path: source.to_string(),
            message: format!("Object 'Kind' is missing in '{}'", serde_json::to_string(&value).unwrap_or_default()),
        });
    }
    out.push(Manifest { object: value, source: source.to_string() });
    Ok(())
}

/// The namespace of an object of `resource`: its own, else the command's; a clash with an explicit `-n` is an
/// error, as in kubectl.
pub fn object_namespace(cx: &Context, resource: &Resource, object: &Value) -> Result<Option<String>> {
    if !resource.namespaced {
        return Ok(None);
    }
    match object["metadata"]["namespace"].as_str().filter(|n| !n.is_empty()) {
        Some(own) if cx.namespace_given && own != cx.namespace => Err(CtlError::Usage(format!(
            "the namespace from the provided object \"{own}\" does not match the namespace \"{}\". You must pass \
             '--namespace={own}' to perform this operation.",
            cx.namespace
        ))),
        Some(own) => Ok(Some(own.to_string())),
        None => Ok(Some(cx.namespace.clone())),
    }
}

/// The type of a manifest's object.
pub async fn resource_of(cx: &Context, manifest: &Manifest) -> Result<Resource> {
    let object = &manifest.object;
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    cx.discovery().await?.for_kind(api_version, kind).cloned().ok_or_else(|| CtlError::UnknownKind {
        name: object["metadata"]["name"].as_str().unwrap_or("").to_string(),
        namespace: object["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
        source_name: manifest.source.clone(),
        kind: kind.to_string(),
        api_version: api_version.to_string(),
    })
}

/// The configuration with its last-applied annotation: the annotation holds the configuration itself (its
/// annotations without this one, an empty map when it has none, as kubectl writes it) as compact JSON with sorted
/// keys and a final newline, so that kubectl and `gantry ctl` each find the other's annotation unchanged.
pub fn with_last_applied(mut object: Value) -> Result<Value> {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err(CtlError::Usage("the object has no metadata".to_string()));
    };
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if let Some(map) = annotations.as_object_mut() {
        map.remove(LAST_APPLIED);
    }
    let mut text = serde_json::to_string(&object)
        .map_err(|source| CtlError::Json { context: "encoding the configuration".to_string(), source })?;
    text.push('\n');
    if let Some(map) = object.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        map.insert(LAST_APPLIED.to_string(), Value::String(text));
    }
    Ok(object)
}

/// Runs `apply`.
pub async fn run(cx: &Context, args: ApplyArgs) -> Result<()> {
    let manifests = read_manifests(&args.filenames, args.recursive)?;
    if manifests.is_empty() {
        return Err(CtlError::Usage("no objects passed to apply".to_string()));
    }
    let mut failed = false;
    for manifest in &manifests {
        match apply_one(cx, manifest).await {
            Ok(line) => println!("{line}"),
            Err(err) => {
                failed = true;
                if let Some(line) = report(&err) {
                    eprintln!("{line}");
                }
            }
        }
    }
    if failed { Err(CtlError::AlreadyReported) } else { Ok(()) }
}

async fn apply_one(cx: &Context, manifest: &Manifest) -> Result<String> {
    let resource = resource_of(cx, manifest).await?;
    let mut object = manifest.object.clone();
    let Some(name) = object["metadata"]["name"].as_str().filter(|n| !n.is_empty()).map(str::to_string) else {
        return Err(CtlError::Usage(format!(
            "error when retrieving current configuration of {} from {}: resource name may not be empty",
            resource.kind_group(),
            manifest.source
        )));
    };
    let namespace = object_namespace(cx, &resource, &object)?;
    if let Some(ns) = &namespace {
        object["metadata"]["namespace"] = json!(ns);
    }
    let modified = with_last_applied(object)?;
    let ns = namespace.as_deref().unwrap_or("");
    let path = resource.object_path(ns, &name);
    let shown = format!("{}/{name}", resource.kind_group());
    let live = match cx.get_json(&path).await {
        Ok(live) => live,
        Err(err) if err.is_not_found() => {
            cx.request(http::Method::POST, &resource.path(namespace.as_deref()), Some(&modified), "").await?;
            return Ok(format!("{shown} created"));
        }
        Err(err) => return Err(err),
    };
    let original: Option<Value> =
        live["metadata"]["annotations"][LAST_APPLIED].as_str().and_then(|text| serde_json::from_str(text).ok());
    let kind = match schema_for(&resource.group, &resource.kind) {
        Some(schema) => PatchKind::Strategic(schema),
        None => PatchKind::Merge,
    };
    let patch = three_way(original.as_ref(), &modified, &live, kind);
    if patch.as_object().is_some_and(serde_json::Map::is_empty) {
        return Ok(format!("{shown} unchanged"));
    }
    cx.request(http::Method::PATCH, &path, Some(&patch), kind.content_type()).await?;
    Ok(format!("{shown} configured"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_lists_and_empty_documents_are_read_in_order() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n\
                    - {apiVersion: v1, kind: Secret, metadata: {name: b}}\n- {apiVersion: v1, kind: Pod, metadata: \
                    {name: c}}\n";
        let objects = parse_documents(text, "x.yaml").expect("parse");
        let names: Vec<&str> = objects.iter().filter_map(|m| m.object["metadata"]["name"].as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn json_documents_are_read_too() {
        let objects = parse_documents(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n"}}"#, "n.json")
            .expect("parse");
        assert_eq!(objects[0].object["kind"], "Namespace");
    }

    #[test]
    fn a_document_without_kind_is_an_error() {
        assert!(parse_documents("metadata: {name: a}\n", "x.yaml").is_err());
    }

    #[test]
    fn the_annotation_holds_the_configuration_without_itself_as_sorted_compact_json() {
        let object = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a",
            "annotations": {LAST_APPLIED: "old"}}, "data": {"k": "v"}});
        let applied = with_last_applied(object).expect("annotate");
        assert_eq!(
            applied["metadata"]["annotations"][LAST_APPLIED],
            "{\"apiVersion\":\"v1\",\"data\":{\"k\":\"v\"},\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{},\"name\":\"a\"}}\n"
        );
    }

    #[test]
    fn directories_list_manifest_files_sorted_and_recurse_only_with_r() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        for file in ["b.yaml", "a.json", "notes.txt", "sub/c.yml"] {
            std::fs::write(dir.path().join(file), "").expect("write");
        }
        let names = |files: Vec<PathBuf>| -> Vec<String> {
            files.iter().map(|f| f.strip_prefix(dir.path()).expect("inside").display().to_string()).collect()
        };
        assert_eq!(names(files_of(dir.path(), false).expect("list")), ["a.json", "b.yaml"]);
        assert_eq!(names(files_of(dir.path(), true).expect("list")), ["a.json", "b.yaml", "sub/c.yml"]);
    }
}
