//! Typed reads of JSON fields that report a wrong JSON type as a field error instead of failing.
//!
//! JSON `null` is treated as absent, as Go's decoder leaves the field at its zero value.

use serde_json::{Map, Value};

use super::{FieldError, Path};

/// A field of an object, `None` when absent, `null` or when `obj` is not an object.
pub(crate) fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// A nested field, following object keys.
pub(crate) fn at<'a>(obj: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let mut cur = obj;
    for k in keys {
        cur = field(cur, k)?;
    }
    Some(cur)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(errs: &mut Vec<FieldError>, path: &Path, v: &Value, want: &str) {
    errs.push(FieldError::type_invalid(path, type_name(v), format!("{path} in body must be of type {want}")));
}

/// A string field; a non-string is reported.
pub(crate) fn str_at<'a>(errs: &mut Vec<FieldError>, obj: &'a Value, key: &str, path: &Path) -> Option<&'a str> {
    let v = field(obj, key)?;
    match v.as_str() {
        Some(s) => Some(s),
        None => {
            wrong_type(errs, &path.child(key), v, "string");
            None
        }
    }
}

/// An integer field; a non-integer is reported.
pub(crate) fn int_at(errs: &mut Vec<FieldError>, obj: &Value, key: &str, path: &Path) -> Option<i64> {
    let v = field(obj, key)?;
    match v.as_i64() {
        Some(n) => Some(n),
        None => {
            wrong_type(errs, &path.child(key), v, "integer");
            None
        }
    }
}

/// A list field, empty when absent; a non-list is reported.
pub(crate) fn list_at<'a>(errs: &mut Vec<FieldError>, obj: &'a Value, key: &str, path: &Path) -> &'a [Value] {
    match field(obj, key) {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(v) => {
            wrong_type(errs, &path.child(key), v, "array");
            &[]
        }
    }
}

/// An object field; a non-object is reported.
pub(crate) fn obj_at<'a>(errs: &mut Vec<FieldError>, obj: &'a Value, key: &str, path: &Path) -> Option<&'a Value> {
    let v = field(obj, key)?;
    if v.is_object() {
        Some(v)
    } else {
        wrong_type(errs, &path.child(key), v, "object");
        None
    }
}

/// A map of strings (labels, annotations, data), sorted by key; non-string values are reported and skipped.
pub(crate) fn string_map_at<'a>(
    errs: &mut Vec<FieldError>,
    obj: &'a Value,
    key: &str,
    path: &Path,
) -> Vec<(&'a str, &'a str)> {
    let Some(map) = obj_at(errs, obj, key, path).and_then(Value::as_object) else {
        return Vec::new();
    };
    string_map(errs, map, &path.child(key))
}

/// The string entries of a map, sorted by key; non-string values are reported and skipped.
pub(crate) fn string_map<'a>(
    errs: &mut Vec<FieldError>,
    map: &'a Map<String, Value>,
    path: &Path,
) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(map.len());
    for (k, v) in map {
        match v {
            Value::String(s) => out.push((k.as_str(), s.as_str())),
            Value::Null => out.push((k.as_str(), "")),
            other => wrong_type(errs, &path.key(k), other, "string"),
        }
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    out
}

/// Equality as kube's semantic deep-equal sees it: `null`, absent, `[]` and `{}` are all "empty".
pub(crate) fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    let a = a.filter(|v| !is_empty(v));
    let b = b.filter(|v| !is_empty(v));
    match (a, b) {
        (None, None) => true,
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.keys().chain(y.keys()).all(|k| semantic_eq(x.get(k), y.get(k)))
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| semantic_eq(Some(p), Some(q)))
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The value to print for an absent field (Go prints a nil pointer or zero struct as `null`).
pub(crate) fn or_null(v: Option<&Value>) -> Value {
    v.cloned().unwrap_or(Value::Null)
}
