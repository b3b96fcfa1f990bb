//! Conversion between served versions that share storage: `events.k8s.io/v1` Events are stored as core/v1
//! Events, `autoscaling/v1` HorizontalPodAutoscalers as `autoscaling/v2`.

use gantry_api::registry::ResourceType;
use serde_json::{Map, Value, json};

use crate::status::{ApiError, ApiResult};

/// Field renames between core/v1 Event (left) and events.k8s.io/v1 Event (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// Annotation in which v1 keeps the v2 metrics it cannot express, as kube-apiserver does.
const HPA_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";

fn rename(obj: Value, pairs: &[(&str, &str)], forward: bool, api_version: &str, kind: &str) -> ApiResult<Value> {
    let Value::Object(map) = obj else { return Err(ApiError::bad_request("the object is not a JSON object")) };
    let mut out = Map::new();
    for (k, v) in map {
        let renamed = pairs
            .iter()
            .find(|(a, b)| if forward { *a == k } else { *b == k })
            .map(|(a, b)| if forward { *b } else { *a })
            .unwrap_or(&k)
            .to_string();
        out.insert(renamed, v);
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    Ok(Value::Object(out))
}

/// The `None` conversion of custom resources: only `apiVersion` changes.
pub fn custom_none(resource: &ResourceType, mut obj: Value) -> ApiResult<Value> {
    let map = obj.as_object_mut().ok_or_else(|| ApiError::bad_request("the object is not a JSON object"))?;
    map.insert("apiVersion".into(), json!(resource.api_version()));
    Ok(obj)
}

/// Refuses an object that names another API version than the one it was sent to.
pub fn check_api_version(resource: &ResourceType, obj: &Value) -> ApiResult<()> {
    let expected = resource.api_version();
    match obj.get("apiVersion").and_then(Value::as_str).filter(|v| !v.is_empty()) {
        Some(v) if v != expected => Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({expected})"
        ))),
        _ => Ok(()),
    }
}

/// A stored object in the version `resource` serves.
pub fn from_storage(resource: &ResourceType, obj: Value) -> ApiResult<Value> {
    match (resource.group, resource.version, resource.kind) {
        ("events.k8s.io", "v1", "Event") => rename(obj, EVENT_FIELDS, true, "events.k8s.io/v1", "Event"),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => Ok(hpa_v2_to_v1(obj)),
        _ => Err(ApiError::internal(format!("no conversion to {}", resource.api_version()))),
    }
}

/// An object sent in `resource`'s version, in the stored version.
pub fn to_storage(resource: &ResourceType, obj: Value) -> ApiResult<Value> {
    match (resource.group, resource.version, resource.kind) {
        ("events.k8s.io", "v1", "Event") => {
            if let Some(v) = obj.get("apiVersion").and_then(Value::as_str)
                && v != "events.k8s.io/v1"
            {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version (events.k8s.io/v1)"
                )));
            }
            rename(obj, EVENT_FIELDS, false, "v1", "Event")
        }
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            if let Some(v) = obj.get("apiVersion").and_then(Value::as_str)
                && v != "autoscaling/v1"
            {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version (autoscaling/v1)"
                )));
            }
            Ok(hpa_v1_to_v2(obj))
        }
        _ => Err(ApiError::internal(format!("no conversion from {}", resource.api_version()))),
    }
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

fn hpa_v2_to_v1(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("autoscaling/v1");
    let metrics = obj["spec"]["metrics"].as_array().cloned().unwrap_or_default();
    let (cpu, others): (Vec<Value>, Vec<Value>) = metrics.into_iter().partition(is_cpu_utilization);
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(target) = cpu.first().and_then(|m| m["resource"]["target"]["averageUtilization"].as_i64()) {
            spec.insert("targetCPUUtilizationPercentage".into(), json!(target));
        }
    }
    if !others.is_empty()
        && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        annotations[HPA_METRICS_ANNOTATION] = json!(serde_json::to_string(&others).unwrap_or_default());
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let current = status.remove("currentMetrics").and_then(|m| m.as_array().cloned()).unwrap_or_default();
        if let Some(util) = current
            .iter()
            .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
            .and_then(|m| m["resource"]["current"]["averageUtilization"].as_i64())
        {
            status.insert("currentCPUUtilizationPercentage".into(), json!(util));
        }
        status.remove("conditions");
    }
    obj
}

fn hpa_v1_to_v2(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("autoscaling/v2");
    let mut metrics: Vec<Value> = obj["metadata"]["annotations"][HPA_METRICS_ANNOTATION]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    if let Some(annotations) =
        obj.get_mut("metadata").and_then(|m| m.get_mut("annotations")).and_then(Value::as_object_mut)
    {
        annotations.remove(HPA_METRICS_ANNOTATION);
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(target) = spec.remove("targetCPUUtilizationPercentage")
    {
        metrics.insert(
            0,
            json!({"type": "Resource", "resource": {"name": "cpu",
                   "target": {"type": "Utilization", "averageUtilization": target}}}),
        );
    }
    if !metrics.is_empty() {
        obj["spec"]["metrics"] = Value::Array(metrics);
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
        && let Some(util) = status.remove("currentCPUUtilizationPercentage")
    {
        status.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": util}}}]),
        );
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::registry::Registry;

    #[test]
    fn events_round_trip_between_groups() {
        let registry = Registry::built_in();
        let events = registry.by_plural("events.k8s.io", "v1", "events").unwrap();
        let core = json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"e"},
                          "involvedObject":{"kind":"Pod","name":"p"},"message":"hi","reason":"Started","count":2});
        let served = from_storage(events, core.clone()).unwrap();
        assert_eq!(served["regarding"]["name"], "p");
        assert_eq!(served["note"], "hi");
        assert_eq!(served["deprecatedCount"], 2);
        assert_eq!(served["apiVersion"], "events.k8s.io/v1");
        assert_eq!(to_storage(events, served).unwrap(), core);
    }

    #[test]
    fn hpa_v1_keeps_cpu_target_and_other_metrics() {
        let registry = Registry::built_in();
        let v1 = registry.by_plural("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v2 = json!({"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"h"},
            "spec":{"maxReplicas":5,"metrics":[
                {"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":80}}},
                {"type":"Resource","resource":{"name":"memory","target":{"type":"AverageValue","averageValue":"1Gi"}}}]}});
        let served = from_storage(v1, v2).unwrap();
        assert_eq!(served["spec"]["targetCPUUtilizationPercentage"], 80);
        assert!(served["spec"].get("metrics").is_none());
        let back = to_storage(v1, served).unwrap();
        let metrics = back["spec"]["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 2);
        assert_eq!(metrics[0]["resource"]["name"], "cpu");
        assert_eq!(metrics[1]["resource"]["name"], "memory");
    }
}
