//! The three patch types of `PATCH` requests, applied the way kube-apiserver applies them to built-in kinds.
//!
//! - [`PatchType::Json`] (`application/json-patch+json`, RFC 6902), including `test` operations;
//! - [`PatchType::Merge`] (`application/merge-patch+json`, RFC 7386): `null` deletes, objects merge, every
//!   other value (lists included) replaces;
//! - [`PatchType::StrategicMerge`] (`application/strategic-merge-patch+json`): a merge patch whose lists merge
//!   element by element where the kind's schema says so, with the `$patch`, `$retainKeys`,
//!   `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` directives. The per-kind facts live in
//!   [`schema`]; kinds without an entry there (custom resources) refuse it, as kube-apiserver does.
//!
//! Server-side apply (`application/apply-patch+yaml`) is not a patch in this sense and is not handled here.
//!
//! A patch is applied to the object as stored and served (its JSON form); the result is a new value and the
//! original is never modified, so a failed patch leaves nothing half-applied. The result is not validated:
//! the caller validates, defaults and checks immutable fields as it would for an update.
//!
//! # Errors and the status a server answers
//!
//! [`PatchError::status_code`] and [`PatchError::reason`] give the HTTP code and `Status.reason`
//! kube-apiserver answers with:
//!
//! | error | code | reason |
//! |---|---|---|
//! | [`PatchError::InvalidBody`], [`PatchError::NotAnObject`]: the body is not the JSON the type requires | 400 | `BadRequest` |
//! | [`PatchError::StrategicMerge`]: a malformed directive or list (except lists of lists) | 400 | `BadRequest` |
//! | [`PatchError::JsonPatchOperation`]: an operation does not apply (missing path, failed `test`) | 422 | `Invalid` |
//! | [`PatchError::StrategicMerge`] with [`Problem::ListOfLists`] | 422 | `Invalid` |
//! | [`PatchError::TooManyOperations`]: more than 10000 JSON patch operations | 413 | `RequestEntityTooLarge` |
//! | [`PatchError::StrategicMergeUnsupported`]: the kind has no strategic merge schema | 415 | `UnsupportedMediaType` |
//!
//! For the 422s kube-apiserver's `Status.message` is the generic [`PatchError::status_message`] and the
//! error's own text goes in `details.causes[0]` with `type: "UnexpectedServerResponse"`. Some malformed
//! strategic merge patches (an unknown `$patch` value, a missing merge key, a `$setElementOrder` list out of
//! step with the patch) get a 500 from kube-apiserver because it never classified them; Gantry answers 400.

mod json;
pub mod schema;
mod strategic;

use std::fmt;

use serde_json::Value;

use crate::registry::GroupKind;

pub use strategic::{Problem, StrategicMergeError};

/// The most operations a JSON patch may hold, as in kube-apiserver.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The `Status.message` kube-apiserver gives a 422 answer to a patch that does not apply.
pub const INVALID_PATCH_MESSAGE: &str = "the server rejected our request due to an error in our request";

/// The `Status.message` of the 415 answer to a strategic merge patch of a kind without a schema. It lists the
/// patch types such a kind accepts.
pub const STRATEGIC_MERGE_UNSUPPORTED_MESSAGE: &str = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// A patch type, named by the request's `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: a list of RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: an RFC 7386 merge patch.
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch.
    StrategicMerge,
}

impl PatchType {
    /// The media type naming this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }

    /// The patch type of a `Content-Type` header value. Parameters such as `; charset=utf-8` are ignored, and
    /// so are case and surrounding blanks. `None` for anything else, including `application/apply-patch+yaml`.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge]
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(media_type))
    }
}

impl fmt::Display for PatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatchType::Json => "JSON",
            PatchType::Merge => "merge",
            PatchType::StrategicMerge => "strategic merge",
        })
    }
}

/// Why a JSON patch operation does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPatchFailure {
    /// A `test` operation found a different value (or nothing where a non-null value was expected).
    #[error("testing value {path} failed")]
    TestFailed {
        /// The tested path.
        path: String,
    },
    /// The operation's path, or its parent, does not exist.
    #[error("{op} operation does not apply: doc is missing path: {path}")]
    MissingPath {
        /// The operation: `add`, `remove`, `replace`, `move`, `copy` or `test`.
        op: &'static str,
        /// The operation's path.
        path: String,
    },
    /// The `from` of a `move` or `copy` does not exist.
    #[error("{op} operation does not apply: doc is missing from path: {from}")]
    MissingFrom {
        /// `move` or `copy`.
        op: &'static str,
        /// The operation's `from`.
        from: String,
    },
    /// A `move` into a child of the moved value.
    #[error("move operation does not apply: cannot move {from} into its own child {path}")]
    MoveIntoItself {
        /// The operation's `from`.
        from: String,
        /// The operation's path.
        path: String,
    },
    /// The operation does not apply for a reason the JSON patch library gave.
    #[error("{op} operation does not apply at {path}: {reason}")]
    Rejected {
        /// The operation.
        op: &'static str,
        /// The operation's path.
        path: String,
        /// The library's explanation.
        reason: String,
    },
}

/// Why a patch could not be applied. See the [module documentation](self) for the status each maps to.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON, or not JSON of the shape the patch type requires (400).
    #[error("error decoding {patch_type} patch: {source}")]
    InvalidBody {
        /// The patch type the body was read as.
        patch_type: PatchType,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A merge or strategic merge patch whose body is valid JSON but not an object (400).
    #[error("a {patch_type} patch must be a JSON object, not {found}")]
    NotAnObject {
        /// The patch type.
        patch_type: PatchType,
        /// What the body is: `an array`, `null`, ...
        found: &'static str,
    },
    /// A JSON patch with more than [`MAX_JSON_PATCH_OPERATIONS`] operations (413).
    #[error("The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {count}")]
    TooManyOperations {
        /// How many operations the patch holds.
        count: usize,
    },
    /// A JSON patch operation that does not apply to the object (422).
    #[error("{failure}")]
    JsonPatchOperation {
        /// The operation's position in the patch, from 0.
        index: usize,
        /// What went wrong.
        #[source]
        failure: JsonPatchFailure,
    },
    /// A strategic merge patch of a kind that has no strategic merge schema, such as a custom resource (415).
    #[error("{STRATEGIC_MERGE_UNSUPPORTED_MESSAGE}")]
    StrategicMergeUnsupported {
        /// The kind, e.g. `Widget.example.com`.
        kind: String,
    },
    /// A strategic merge patch that is malformed where it meets the object (400, or 422 for lists of lists).
    #[error(transparent)]
    StrategicMerge(#[from] StrategicMergeError),
}

impl PatchError {
    /// The HTTP status code kube-apiserver answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::InvalidBody { .. } | PatchError::NotAnObject { .. } => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::JsonPatchOperation { .. } => 422,
            PatchError::StrategicMergeUnsupported { .. } => 415,
            PatchError::StrategicMerge(e) if e.problem == Problem::ListOfLists => 422,
            PatchError::StrategicMerge(_) => 400,
        }
    }

    /// The `Status.reason` that goes with [`status_code`](Self::status_code).
    pub fn reason(&self) -> &'static str {
        match self.status_code() {
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            _ => "BadRequest",
        }
    }

    /// The `Status.message` kube-apiserver answers with. For the 422s it is the generic
    /// [`INVALID_PATCH_MESSAGE`] and this error's text belongs in `details.causes[0].message`.
    pub fn status_message(&self) -> String {
        match self.status_code() {
            413 => format!("Request entity too large: {self}"),
            422 => INVALID_PATCH_MESSAGE.to_string(),
            _ => self.to_string(),
        }
    }
}

/// Applies `patch` (the request body) of type `patch_type` to `original`, an object of kind `gk`, and returns
/// the patched object. `original` is left as it was.
pub fn apply_patch(patch_type: PatchType, gk: GroupKind, original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => json::apply_json_patch(original, patch),
        PatchType::Merge => json::apply_merge_patch(original, patch),
        PatchType::StrategicMerge => {
            // Refused before the body is read, as kube-apiserver refuses the content type.
            let schema =
                schema::for_kind(gk).ok_or_else(|| PatchError::StrategicMergeUnsupported { kind: gk.to_string() })?;
            let patch = json::parse_object(patch, PatchType::StrategicMerge)?;
            Ok(strategic::apply(original, patch, schema)?)
        }
    }
}

/// Whether objects of kind `gk` accept a strategic merge patch.
pub fn supports_strategic_merge(gk: GroupKind) -> bool {
    schema::for_kind(gk).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: GroupKind = GroupKind { group: "apps", kind: "Deployment" };
    const WIDGET: GroupKind = GroupKind { group: "example.com", kind: "Widget" };

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}
            }
        })
    }

    #[test]
    fn content_types_name_patch_types() {
        assert_eq!(PatchType::from_content_type("application/json-patch+json"), Some(PatchType::Json));
        assert_eq!(PatchType::from_content_type("application/merge-patch+json"), Some(PatchType::Merge));
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
    }

    #[test]
    fn content_type_parameters_case_and_blanks_are_ignored() {
        assert_eq!(PatchType::from_content_type("application/merge-patch+json; charset=utf-8"), Some(PatchType::Merge));
        assert_eq!(PatchType::from_content_type(" Application/JSON-Patch+JSON ;charset=UTF-8"), Some(PatchType::Json));
    }

    #[test]
    fn other_content_types_are_not_patch_types() {
        for ct in ["application/json", "application/apply-patch+yaml", "", ";", "application/merge-patch+jsonx"] {
            assert_eq!(PatchType::from_content_type(ct), None, "{ct:?}");
        }
    }

    #[test]
    fn every_patch_type_round_trips_through_its_content_type() {
        for t in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn apply_patch_dispatches_on_the_patch_type() {
        let json = br#"[{"op":"replace","path":"/spec/replicas","value":1}]"#;
        let merge = br#"{"spec":{"replicas":2}}"#;
        let strategic = br#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:2"}]}}}}"#;
        let original = deployment();
        let patched = apply_patch(PatchType::Json, DEPLOYMENT, &original, json).unwrap();
        assert_eq!(patched["spec"]["replicas"], 1);
        let patched = apply_patch(PatchType::Merge, DEPLOYMENT, &original, merge).unwrap();
        assert_eq!(patched["spec"]["replicas"], 2);
        let patched = apply_patch(PatchType::StrategicMerge, DEPLOYMENT, &original, strategic).unwrap();
        assert_eq!(patched["spec"]["template"]["spec"]["containers"], json!([{"name": "nginx", "image": "nginx:2"}]));
        assert_eq!(original, deployment(), "the original is never modified");
    }

    #[test]
    fn the_same_containers_patch_replaces_as_a_merge_patch_and_merges_as_a_strategic_one() {
        let original = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.27"}, {"name": "sidecar", "image": "busybox"}
        ]}}}});
        let body = br#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:2"}]}}}}"#;
        let merged = apply_patch(PatchType::Merge, DEPLOYMENT, &original, body).unwrap();
        assert_eq!(merged["spec"]["template"]["spec"]["containers"], json!([{"name": "nginx", "image": "nginx:2"}]));
        let strategic = apply_patch(PatchType::StrategicMerge, DEPLOYMENT, &original, body).unwrap();
        assert_eq!(
            strategic["spec"]["template"]["spec"]["containers"],
            json!([{"name": "nginx", "image": "nginx:2"}, {"name": "sidecar", "image": "busybox"}])
        );
    }

    #[test]
    fn strategic_merge_of_a_custom_resource_is_an_unsupported_media_type() {
        let err = apply_patch(PatchType::StrategicMerge, WIDGET, &json!({}), b"{}").unwrap_err();
        assert!(matches!(&err, PatchError::StrategicMergeUnsupported { kind } if kind == "Widget.example.com"));
        assert_eq!(err.status_code(), 415);
        assert_eq!(err.reason(), "UnsupportedMediaType");
        assert!(err.status_message().starts_with("the body of the request was in an unknown format"));
        assert!(!supports_strategic_merge(WIDGET));
        assert!(supports_strategic_merge(DEPLOYMENT));
    }

    #[test]
    fn strategic_merge_refusal_comes_before_reading_the_body() {
        let err = apply_patch(PatchType::StrategicMerge, WIDGET, &json!({}), b"not json").unwrap_err();
        assert_eq!(err.status_code(), 415);
    }

    #[test]
    fn a_scale_accepts_a_strategic_merge_patch() {
        let scale = GroupKind { group: "autoscaling", kind: "Scale" };
        let original = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": 1}});
        let patched = apply_patch(PatchType::StrategicMerge, scale, &original, br#"{"spec":{"replicas":4}}"#).unwrap();
        assert_eq!(patched["spec"]["replicas"], 4);
    }

    #[test]
    fn custom_resources_accept_json_and_merge_patches() {
        let original = json!({"spec": {"size": 1}});
        let patched = apply_patch(PatchType::Merge, WIDGET, &original, br#"{"spec":{"size":2}}"#).unwrap();
        assert_eq!(patched["spec"]["size"], 2);
        let body = br#"[{"op":"add","path":"/spec/color","value":"red"}]"#;
        let patched = apply_patch(PatchType::Json, WIDGET, &original, body).unwrap();
        assert_eq!(patched["spec"], json!({"size": 1, "color": "red"}));
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for patch_type in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge] {
            for body in [&b""[..], b"{", b"not json", b"[1,"] {
                let err = apply_patch(patch_type, DEPLOYMENT, &deployment(), body).unwrap_err();
                assert!(matches!(err, PatchError::InvalidBody { .. }), "{patch_type} {body:?}: {err}");
                assert_eq!(err.status_code(), 400);
                assert_eq!(err.reason(), "BadRequest");
            }
        }
    }

    #[test]
    fn failed_json_patch_operations_are_invalid_with_kube_apiservers_message() {
        let body = br#"[{"op":"test","path":"/spec/replicas","value":5}]"#;
        let err = apply_patch(PatchType::Json, DEPLOYMENT, &deployment(), body).unwrap_err();
        assert_eq!(err.status_code(), 422);
        assert_eq!(err.reason(), "Invalid");
        assert_eq!(err.status_message(), INVALID_PATCH_MESSAGE);
        assert_eq!(err.to_string(), "testing value /spec/replicas failed");
    }

    #[test]
    fn too_many_json_patch_operations_are_too_large() {
        let ops: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/spec/replicas", "value": 3}))
            .collect();
        let body = serde_json::to_vec(&ops).unwrap();
        let err = apply_patch(PatchType::Json, DEPLOYMENT, &deployment(), &body).unwrap_err();
        assert!(matches!(err, PatchError::TooManyOperations { count: 10_001 }));
        assert_eq!(err.status_code(), 413);
        assert_eq!(err.reason(), "RequestEntityTooLarge");
        assert_eq!(
            err.status_message(),
            "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
        let exactly_max = serde_json::to_vec(&ops[..MAX_JSON_PATCH_OPERATIONS]).unwrap();
        assert!(apply_patch(PatchType::Json, DEPLOYMENT, &deployment(), &exactly_max).is_ok());
    }

    #[test]
    fn strategic_merge_errors_are_bad_requests_except_lists_of_lists() {
        let bad_directive = br#"{"spec":{"$patch":"explode"}}"#;
        let err = apply_patch(PatchType::StrategicMerge, DEPLOYMENT, &deployment(), bad_directive).unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert_eq!(err.status_message(), err.to_string());
        let original = json!({"metadata": {"finalizers": ["a"]}});
        let lists = br#"{"metadata":{"finalizers":[["x"]]}}"#;
        let err = apply_patch(PatchType::StrategicMerge, DEPLOYMENT, &original, lists).unwrap_err();
        assert_eq!(err.status_code(), 422);
        assert_eq!(err.reason(), "Invalid");
        assert_eq!(err.status_message(), INVALID_PATCH_MESSAGE);
    }
}
