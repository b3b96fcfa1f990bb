//! Small readers over an object's JSON that return kube's zero values (empty string, 0, false, empty list)
//! for missing or mistyped fields, as the typed structs kube-apiserver prints from would hold.

use jiff::Timestamp;
use serde_json::{Map, Value};

pub(super) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

pub(super) fn opt_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    opt_str(v, path).unwrap_or("")
}

pub(super) fn opt_i64(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

pub(super) fn i64_at(v: &Value, path: &[&str]) -> i64 {
    opt_i64(v, path).unwrap_or(0)
}

pub(super) fn opt_bool(v: &Value, path: &[&str]) -> Option<bool> {
    at(v, path).and_then(Value::as_bool)
}

pub(super) fn bool_at(v: &Value, path: &[&str]) -> bool {
    opt_bool(v, path).unwrap_or(false)
}

pub(super) fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

pub(super) fn obj_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    at(v, path).and_then(Value::as_object)
}

/// Whether the field is present and not `null` (a Go pointer that is set).
pub(super) fn is_set(v: &Value, path: &[&str]) -> bool {
    at(v, path).is_some_and(|v| !v.is_null())
}

/// A timestamp field; `None` for a missing, `null` or zero (`0001-01-01T00:00:00Z`) time, which kube prints as
/// unknown.
pub(super) fn time_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    time_of(at(v, path))
}

/// A timestamp value, with the same rules as [`time_at`].
pub(super) fn time_of(v: Option<&Value>) -> Option<Timestamp> {
    let ts: Timestamp = v?.as_str()?.parse().ok()?;
    (ts != zero_time()).then_some(ts)
}

/// Go's zero time, `0001-01-01T00:00:00Z`.
pub(super) fn zero_time() -> Timestamp {
    // -62135596800 is 0001-01-01T00:00:00Z, well within jiff's range.
    Timestamp::from_second(-62_135_596_800).unwrap_or(Timestamp::MIN)
}

pub(super) fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"])
}

/// A quantity as stored (kube prints the canonical form; stored quantities are already canonical when they came
/// through the API). A missing quantity is zero.
pub(super) fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

/// An int-or-string (`minAvailable`, `maxUnavailable`) as kube prints it.
pub(super) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_i64().map_or_else(|| n.to_string(), |i| i.to_string()),
        _ => "0".to_string(),
    }
}
