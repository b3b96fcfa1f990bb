//! Request bodies in (JSON, YAML, protobuf), responses out (JSON objects, tables, object metadata).

use bytes::Bytes;
use gantry_api::patch::PatchError;
use gantry_api::registry::ResourceType;
use serde_json::{Value, json};

use crate::status::{ApiError, ApiResult};

/// Largest request body accepted, as kube-apiserver's limit (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The media type of a Content-Type or Accept entry, lowercased, without parameters.
pub fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Decodes a request body into a JSON value according to its Content-Type (missing means JSON).
pub fn decode_body(content_type: Option<&str>, body: &[u8]) -> ApiResult<Value> {
    let media = content_type.map(media_type).unwrap_or_default();
    match media.as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}"))),
        "application/vnd.kubernetes.protobuf" => {
            gantry_api::protobuf::decode_request(body).map(|decoded| decoded.object).map_err(|e| match e {
                gantry_api::protobuf::ProtobufError::UnsupportedKind { .. } => {
                    ApiError::unsupported_media_type(e.to_string())
                }
                other => ApiError::bad_request(format!("the protobuf request body could not be decoded: {other}")),
            })
        }
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, \
             application/yaml, application/vnd.kubernetes.protobuf (got {other})"
        ))),
    }
}

/// Maps a patch failure to the status kube-apiserver answers; the specific failure of a 422 goes into the
/// causes, as kube-apiserver reports it.
pub fn patch_error(err: PatchError, resource: &ResourceType) -> ApiError {
    let mut e = match err.status_code() {
        415 => ApiError::unsupported_media_type(err.status_message()),
        422 => {
            let mut e = ApiError::invalid(resource, "", err.status_message(), Vec::new());
            e.name = None;
            e.kind = None;
            e.group = None;
            e.causes.push(crate::status::Cause {
                reason: "UnexpectedServerResponse".into(),
                message: err.to_string(),
                field: String::new(),
            });
            e
        }
        _ => ApiError::bad_request(err.status_message()),
    };
    e.code = err.status_code();
    e.reason = err.reason();
    e
}

/// The string form of a `LabelSelector` (what `Scale.status.selector` carries).
pub fn selector_string(selector: &Value) -> String {
    let mut terms = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (k, v) in labels {
            terms.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = selector["matchExpressions"].as_array() {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> =
                e["values"].as_array().map(|v| v.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            match e["operator"].as_str() {
                Some("In") => terms.push(format!("{key} in ({})", values.join(","))),
                Some("NotIn") => terms.push(format!("{key} notin ({})", values.join(","))),
                Some("Exists") => terms.push(key.to_string()),
                Some("DoesNotExist") => terms.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    terms.join(",")
}

/// What the client wants back, from its Accept header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The objects as JSON.
    Json,
    /// A `meta.k8s.io/v1` `Table`.
    Table,
    /// `PartialObjectMetadata` (or its list).
    Metadata,
}

impl Output {
    /// Picks the first acceptable media type; protobuf-only clients are refused with 406.
    pub fn negotiate(accept: Option<&str>) -> ApiResult<Output> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Output::Json) };
        for entry in accept.split(',') {
            let media = media_type(entry);
            let params: Vec<(String, String)> = entry
                .split(';')
                .skip(1)
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
            match media.as_str() {
                "application/json" | "application/*" | "*/*" => match param("as") {
                    None => return Ok(Output::Json),
                    Some("Table") if param("g") == Some("meta.k8s.io") && param("v") == Some("v1") => {
                        return Ok(Output::Table);
                    }
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                        if param("g") == Some("meta.k8s.io") && param("v") == Some("v1") =>
                    {
                        return Ok(Output::Metadata);
                    }
                    _ => continue,
                },
                _ => continue,
            }
        }
        Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;\
             g=meta.k8s.io (asked for {accept})"
        )))
    }
}

/// The `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Serializes a value; serialization of a `Value` cannot fail, but say so if it ever does.
pub fn to_bytes(value: &Value) -> Bytes {
    serde_json::to_vec(value).map(Bytes::from).unwrap_or_else(|_| Bytes::from_static(b"{}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;\
                      g=meta.k8s.io,application/json";
        assert_eq!(Output::negotiate(Some(accept)).unwrap(), Output::Table);
        assert_eq!(Output::negotiate(Some("application/json, */*")).unwrap(), Output::Json);
        assert_eq!(Output::negotiate(None).unwrap(), Output::Json);
        assert_eq!(
            Output::negotiate(Some("application/vnd.kubernetes.protobuf,application/json")).unwrap(),
            Output::Json
        );
        assert!(Output::negotiate(Some("application/vnd.kubernetes.protobuf")).is_err());
        let meta = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(Output::negotiate(Some(meta)).unwrap(), Output::Metadata);
    }

    #[test]
    fn selectors_print_as_kubectl_expects() {
        let sel =
            json!({"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]}]});
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b)");
    }
}
