//! The `scale` subresource of custom resources: the `autoscaling/v1` `Scale` view of the replica counts and
//! label selector at the paths a CRD version names.

use serde_json::{Map, Value, json};

use crate::validation::{FieldError, Path};

/// Why a custom resource could not be read or written through its scale paths.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScaleError {
    /// A replica count that is not an integer.
    #[error("{path} accessor error: {value} is of the type {go_type}, expected int64")]
    NotAnInteger {
        /// The path, e.g. `.spec.replicas`.
        path: String,
        /// The value found, printed.
        value: String,
        /// Its Go type, as kube names it (`string`, `float64`, ...).
        go_type: &'static str,
    },
    /// A label selector that is not a string.
    #[error("{path} accessor error: {value} is of the type {go_type}, expected string")]
    NotAString {
        /// The path.
        path: String,
        /// The value found, printed.
        value: String,
        /// Its Go type.
        go_type: &'static str,
    },
    /// A field on the way to a path exists but is not an object, so the path cannot be written.
    #[error("value cannot be set because {path} is not a map")]
    NotAnObject {
        /// The path of the offending field.
        path: String,
    },
}

/// The paths of a version's `subresources.scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// `specReplicasPath`, e.g. `.spec.replicas`.
    pub spec_replicas: String,
    /// `statusReplicasPath`, e.g. `.status.replicas`.
    pub status_replicas: String,
    /// `labelSelectorPath`, e.g. `.status.selector`, when set.
    pub label_selector: Option<String>,
}

impl ScalePaths {
    /// The scale paths of a `spec.versions[]` entry, or `None` when it has no scale subresource.
    pub fn from_version(version: &Value) -> Option<ScalePaths> {
        let scale = version.pointer("/subresources/scale")?.as_object()?;
        let text = |k: &str| scale.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let selector = text("labelSelectorPath");
        Some(ScalePaths {
            spec_replicas: text("specReplicasPath"),
            status_replicas: text("statusReplicasPath"),
            label_selector: (!selector.is_empty()).then_some(selector),
        })
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('.').split('.').filter(|s| !s.is_empty()).collect()
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    segments(path).into_iter().try_fold(obj, |v, k| v.get(k)).filter(|v| !v.is_null())
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn printed(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The integer at `path`, 0 when absent.
fn int_at(obj: &Value, path: &str) -> Result<i64, ScaleError> {
    match lookup(obj, path) {
        None => Ok(0),
        Some(v) => v.as_i64().ok_or_else(|| ScaleError::NotAnInteger {
            path: format!(".{}", segments(path).join(".")),
            value: printed(v),
            go_type: go_type(v),
        }),
    }
}

/// The `autoscaling/v1` `Scale` of a custom resource: its identity, `spec.replicas` and `status.replicas` (0
/// when absent) and `status.selector` (the string at the label selector path, empty when absent).
pub fn scale_of(obj: &Value, paths: &ScalePaths) -> Result<Value, ScaleError> {
    let spec = int_at(obj, &paths.spec_replicas)?;
    let status = int_at(obj, &paths.status_replicas)?;
    let selector = match paths.label_selector.as_deref().and_then(|p| lookup(obj, p)) {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(ScaleError::NotAString {
                path: format!(".{}", segments(paths.label_selector.as_deref().unwrap_or("")).join(".")),
                value: printed(v),
                go_type: go_type(v),
            });
        }
    };
    let mut metadata = Map::new();
    for key in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = obj.pointer(&format!("/metadata/{key}")).filter(|v| !v.is_null()) {
            metadata.insert(key.to_string(), v.clone());
        }
    }
    let mut status_obj = json!({"replicas": status});
    if !selector.is_empty() {
        status_obj["selector"] = Value::from(selector);
    }
    Ok(json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": metadata,
        "spec": {"replicas": spec},
        "status": status_obj,
    }))
}

/// Writes a desired replica count into a custom resource at the spec replicas path, creating the objects on
/// the way.
pub fn set_spec_replicas(obj: &mut Value, paths: &ScalePaths, replicas: i64) -> Result<(), ScaleError> {
    set_at(obj, &paths.spec_replicas, Value::from(replicas))
}

fn set_at(obj: &mut Value, path: &str, value: Value) -> Result<(), ScaleError> {
    let segs = segments(path);
    let Some((last, parents)) = segs.split_last() else { return Ok(()) };
    let mut cur = obj;
    let mut walked = String::new();
    for seg in parents {
        walked.push('.');
        walked.push_str(seg);
        let map = cur.as_object_mut().ok_or_else(|| ScaleError::NotAnObject { path: walked.clone() })?;
        let next = map.entry(seg.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if next.is_null() {
            *next = Value::Object(Map::new());
        }
        cur = next;
    }
    let map = cur.as_object_mut().ok_or(ScaleError::NotAnObject { path: walked })?;
    map.insert((*last).to_string(), value);
    Ok(())
}

/// kube's checks of the replica counts of a custom resource with a scale subresource, reported at the path
/// as written in the CRD (`.spec.replicas: Invalid value: -1: should be a non-negative integer`).
pub fn validate_replicas(obj: &Value, paths: &ScalePaths) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for path in [&paths.spec_replicas, &paths.status_replicas] {
        let field = Path::root(path);
        match int_at(obj, path) {
            Err(e) => errs.push(FieldError::invalid(&field, 0, e.to_string())),
            Ok(n) if n < 0 => errs.push(FieldError::invalid(&field, n, "should be a non-negative integer")),
            Ok(n) if n > i64::from(i32::MAX) => {
                errs.push(FieldError::invalid(&field, n, format!("should be less than or equal to {}", i32::MAX)))
            }
            Ok(_) => {}
        }
    }
    errs
}
