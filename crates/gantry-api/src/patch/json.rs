//! JSON patch (RFC 6902) and JSON merge patch (RFC 7386).

use json_patch::{PatchErrorKind, PatchOperation, TestOperation};
use serde_json::{Map, Value};

use super::{JsonPatchFailure, MAX_JSON_PATCH_OPERATIONS, PatchError, PatchType};

/// Applies an RFC 6902 patch. Operations apply in order to a copy of `original`; the first that does not
/// apply fails the whole patch.
pub(super) fn apply_json_patch(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let operations: Vec<PatchOperation> = serde_json::from_slice(body)
        .map_err(|source| PatchError::InvalidBody { patch_type: PatchType::Json, source })?;
    if operations.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations { count: operations.len() });
    }
    let mut doc = original.clone();
    for (index, operation) in operations.iter().enumerate() {
        let outcome = match operation {
            PatchOperation::Test(test) => check(&doc, test),
            other => {
                json_patch::patch_unsafe(&mut doc, std::slice::from_ref(other)).map_err(|e| describe(other, e.kind))
            }
        };
        outcome.map_err(|failure| PatchError::JsonPatchOperation { index, failure })?;
    }
    Ok(doc)
}

/// Applies an RFC 7386 merge patch.
pub(super) fn apply_merge_patch(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let patch = parse_object(body, PatchType::Merge)?;
    let mut doc = original.clone();
    json_patch::merge(&mut doc, &Value::Object(patch));
    Ok(doc)
}

/// Reads a body that must be a JSON object. kube-apiserver refuses other merge patches too: a scalar or
/// `null` with 400, an array with 422 once the result fails to decode; Gantry answers 400 for all of them.
pub(super) fn parse_object(body: &[u8], patch_type: PatchType) -> Result<Map<String, Value>, PatchError> {
    match serde_json::from_slice(body).map_err(|source| PatchError::InvalidBody { patch_type, source })? {
        Value::Object(map) => Ok(map),
        other => Err(PatchError::NotAnObject { patch_type, found: describe_value(&other) }),
    }
}

fn describe_value(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A `test` operation with kube-apiserver's semantics: a missing member tests equal to `null`, but a missing
/// parent (or array element) is a missing path.
fn check(doc: &Value, test: &TestOperation) -> Result<(), JsonPatchFailure> {
    let path = test.path.as_str();
    let missing = || JsonPatchFailure::MissingPath { op: "test", path: path.to_string() };
    let found = match path.rsplit_once('/') {
        None => Some(doc),
        Some((parent, last)) => {
            let token = last.replace("~1", "/").replace("~0", "~");
            match doc.pointer(parent).ok_or_else(missing)? {
                Value::Object(map) => map.get(&token),
                Value::Array(items) => Some(array_index(&token).and_then(|i| items.get(i)).ok_or_else(missing)?),
                _ => return Err(missing()),
            }
        }
    };
    let equal = match found {
        Some(value) => *value == test.value,
        None => test.value.is_null(),
    };
    if equal { Ok(()) } else { Err(JsonPatchFailure::TestFailed { path: path.to_string() }) }
}

/// An RFC 6901 array index: digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let canonical = token == "0" || (!token.is_empty() && !token.starts_with('0'));
    if canonical && token.bytes().all(|b| b.is_ascii_digit()) { token.parse().ok() } else { None }
}

fn describe(operation: &PatchOperation, kind: PatchErrorKind) -> JsonPatchFailure {
    let (op, from) = match operation {
        PatchOperation::Add(_) => ("add", None),
        PatchOperation::Remove(_) => ("remove", None),
        PatchOperation::Replace(_) => ("replace", None),
        PatchOperation::Move(m) => ("move", Some(m.from.to_string())),
        PatchOperation::Copy(c) => ("copy", Some(c.from.to_string())),
        PatchOperation::Test(_) => ("test", None),
    };
    let path = operation.path().to_string();
    match (kind, from) {
        (PatchErrorKind::InvalidPointer, _) => JsonPatchFailure::MissingPath { op, path },
        (PatchErrorKind::InvalidFromPointer, Some(from)) => JsonPatchFailure::MissingFrom { op, from },
        (PatchErrorKind::CannotMoveInsideItself, Some(from)) => JsonPatchFailure::MoveIntoItself { from, path },
        (PatchErrorKind::TestFailed, _) => JsonPatchFailure::TestFailed { path },
        (other, _) => JsonPatchFailure::Rejected { op, path, reason: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web",
                "resourceVersion": "7",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
            },
            "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}
        })
    }

    fn json_patch(original: &Value, ops: Value) -> Result<Value, PatchError> {
        apply_json_patch(original, &serde_json::to_vec(&ops).unwrap())
    }

    fn failure(result: Result<Value, PatchError>) -> (usize, JsonPatchFailure) {
        match result {
            Err(PatchError::JsonPatchOperation { index, failure }) => (index, failure),
            other => panic!("expected a failed operation, got {other:?}"),
        }
    }

    #[test]
    fn replace_add_and_remove_apply_in_order() {
        let patched = json_patch(
            &pod(),
            json!([
                {"op": "replace", "path": "/spec/containers/0/image", "value": "a:2"},
                {"op": "add", "path": "/metadata/labels/env", "value": "prod"},
                {"op": "remove", "path": "/metadata/labels/tier"},
                {"op": "add", "path": "/spec/containers/-", "value": {"name": "c", "image": "c:1"}}
            ]),
        )
        .unwrap();
        assert_eq!(patched["spec"]["containers"][0]["image"], "a:2");
        assert_eq!(patched["metadata"]["labels"], json!({"app": "web", "env": "prod"}));
        assert_eq!(patched["spec"]["containers"][2]["name"], "c");
    }

    #[test]
    fn add_inserts_into_arrays_at_the_index() {
        let patched =
            json_patch(&pod(), json!([{"op": "add", "path": "/spec/containers/0", "value": {"name": "z"}}])).unwrap();
        let names: Vec<&str> =
            patched["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["z", "a", "b"]);
    }

    #[test]
    fn escaped_pointer_tokens_reach_annotation_keys() {
        let key = "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration";
        let patched = json_patch(
            &pod(),
            json!([
                {"op": "test", "path": key, "value": "{}"},
                {"op": "replace", "path": key, "value": "{\"a\":1}"}
            ]),
        )
        .unwrap();
        assert_eq!(patched["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"], "{\"a\":1}");
    }

    #[test]
    fn move_and_copy_apply() {
        let patched = json_patch(
            &pod(),
            json!([
                {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copy"},
                {"op": "move", "from": "/metadata/labels/tier", "path": "/metadata/labels/layer"}
            ]),
        )
        .unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({"app": "web", "copy": "web", "layer": "front"}));
    }

    #[test]
    fn a_test_guard_on_the_resource_version_passes_when_it_matches() {
        let patched = json_patch(
            &pod(),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "replace", "path": "/metadata/labels/app", "value": "api"}
            ]),
        )
        .unwrap();
        assert_eq!(patched["metadata"]["labels"]["app"], "api");
    }

    #[test]
    fn a_failed_test_fails_the_whole_patch() {
        let (index, err) = failure(json_patch(
            &pod(),
            json!([
                {"op": "replace", "path": "/metadata/labels/app", "value": "api"},
                {"op": "test", "path": "/metadata/resourceVersion", "value": "6"}
            ]),
        ));
        assert_eq!(index, 1);
        assert_eq!(err, JsonPatchFailure::TestFailed { path: "/metadata/resourceVersion".into() });
    }

    #[test]
    fn test_compares_whole_values() {
        let containers = pod()["spec"]["containers"].clone();
        assert!(json_patch(&pod(), json!([{"op": "test", "path": "/spec/containers", "value": containers}])).is_ok());
        assert!(json_patch(&pod(), json!([{"op": "test", "path": "/spec/containers/1/name", "value": "b"}])).is_ok());
        assert!(json_patch(&pod(), json!([{"op": "test", "path": "", "value": pod()}])).is_ok());
        let (_, err) = failure(json_patch(&pod(), json!([{"op": "test", "path": "/spec/containers", "value": []}])));
        assert!(matches!(err, JsonPatchFailure::TestFailed { .. }));
    }

    #[test]
    fn testing_an_absent_member_for_null_succeeds_but_for_a_value_fails() {
        assert!(json_patch(&pod(), json!([{"op": "test", "path": "/metadata/labels/absent", "value": null}])).is_ok());
        let (_, err) =
            failure(json_patch(&pod(), json!([{"op": "test", "path": "/metadata/labels/absent", "value": "x"}])));
        assert_eq!(err, JsonPatchFailure::TestFailed { path: "/metadata/labels/absent".into() });
    }

    #[test]
    fn testing_under_a_missing_parent_is_a_missing_path() {
        let (_, err) = failure(json_patch(&pod(), json!([{"op": "test", "path": "/status/phase", "value": null}])));
        assert_eq!(err, JsonPatchFailure::MissingPath { op: "test", path: "/status/phase".into() });
        let (_, err) =
            failure(json_patch(&pod(), json!([{"op": "test", "path": "/spec/containers/5", "value": null}])));
        assert!(matches!(err, JsonPatchFailure::MissingPath { .. }));
        let (_, err) =
            failure(json_patch(&pod(), json!([{"op": "test", "path": "/spec/containers/01", "value": null}])));
        assert!(matches!(err, JsonPatchFailure::MissingPath { .. }));
    }

    #[test]
    fn operations_on_missing_paths_fail_with_the_path() {
        let cases = [
            (json!({"op": "replace", "path": "/spec/nodeName", "value": "n1"}), "replace"),
            (json!({"op": "remove", "path": "/metadata/labels/absent"}), "remove"),
            (json!({"op": "add", "path": "/status/phase", "value": "Running"}), "add"),
            (json!({"op": "add", "path": "/spec/containers/9", "value": {}}), "add"),
        ];
        for (op, name) in cases {
            let path = op["path"].as_str().unwrap().to_string();
            let (index, err) = failure(json_patch(&pod(), json!([op])));
            assert_eq!(index, 0);
            assert_eq!(err, JsonPatchFailure::MissingPath { op: name, path: path.clone() });
            assert_eq!(err.to_string(), format!("{name} operation does not apply: doc is missing path: {path}"));
        }
    }

    #[test]
    fn move_and_copy_from_missing_paths_fail_with_the_from_path() {
        let (_, err) = failure(json_patch(&pod(), json!([{"op": "move", "from": "/nope", "path": "/x"}])));
        assert_eq!(err, JsonPatchFailure::MissingFrom { op: "move", from: "/nope".into() });
        let (_, err) = failure(json_patch(&pod(), json!([{"op": "copy", "from": "/nope", "path": "/x"}])));
        assert_eq!(err, JsonPatchFailure::MissingFrom { op: "copy", from: "/nope".into() });
        let (_, err) = failure(json_patch(&pod(), json!([{"op": "move", "from": "/spec", "path": "/spec/inner"}])));
        assert!(matches!(err, JsonPatchFailure::MoveIntoItself { .. }));
    }

    #[test]
    fn malformed_json_patches_are_invalid_bodies() {
        for body in [
            json!({"op": "add", "path": "/a", "value": 1}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "add", "path": "no-leading-slash", "value": 1}]),
            json!([{"path": "/a"}]),
        ] {
            let err = json_patch(&pod(), body.clone()).unwrap_err();
            assert!(matches!(err, PatchError::InvalidBody { patch_type: PatchType::Json, .. }), "{body}: {err}");
        }
    }

    #[test]
    fn an_empty_json_patch_changes_nothing() {
        assert_eq!(json_patch(&pod(), json!([])).unwrap(), pod());
    }

    #[test]
    fn merge_patch_null_deletes_and_objects_merge() {
        let body = br#"{"metadata":{"labels":{"tier":null,"env":"prod"}}}"#;
        let patched = apply_merge_patch(&pod(), body).unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({"app": "web", "env": "prod"}));
        assert_eq!(patched["metadata"]["name"], "web");
    }

    #[test]
    fn merge_patch_replaces_arrays_whole() {
        let body = br#"{"spec":{"containers":[{"name":"b","image":"b:2"}]}}"#;
        let patched = apply_merge_patch(&pod(), body).unwrap();
        assert_eq!(patched["spec"]["containers"], json!([{"name": "b", "image": "b:2"}]));
    }

    #[test]
    fn merge_patch_drops_nulls_inside_new_objects() {
        let body = br#"{"status":{"phase":"Running","message":null}}"#;
        let patched = apply_merge_patch(&pod(), body).unwrap();
        assert_eq!(patched["status"], json!({"phase": "Running"}));
    }

    #[test]
    fn merge_patch_of_a_scale_sets_replicas() {
        let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": 1}});
        let patched = apply_merge_patch(&scale, br#"{"spec":{"replicas":4}}"#).unwrap();
        assert_eq!(patched["spec"]["replicas"], 4);
    }

    #[test]
    fn merge_patches_must_be_objects() {
        for (body, found) in [(&b"null"[..], "null"), (b"[1]", "an array"), (b"3", "a number"), (b"\"x\"", "a string")]
        {
            let err = apply_merge_patch(&pod(), body).unwrap_err();
            assert!(matches!(err, PatchError::NotAnObject { found: f, .. } if f == found), "{err}");
            assert_eq!(err.status_code(), 400);
        }
    }

    #[test]
    fn an_empty_merge_patch_changes_nothing() {
        assert_eq!(apply_merge_patch(&pod(), b"{}").unwrap(), pod());
    }
}
