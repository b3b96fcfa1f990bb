//! Errors as API clients see them: Kubernetes `Status` objects with the code and reason kube-apiserver uses.

use gantry_api::registry::ResourceType;
use gantry_store::StoreError;
use serde_json::{Value, json};

/// One cause of a failure, as in `Status.details.causes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// Machine-readable reason, e.g. `FieldValueInvalid`.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// The field, e.g. `spec.replicas`; empty when the cause is not about a field.
    pub field: String,
}

/// An error answered to a client as a `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (empty for reasons kube-apiserver leaves blank).
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind`: the resource (plural) for most errors, the kind for Invalid.
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds`.
    pub retry_after: Option<u32>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Results of request handling.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    fn about(mut self, resource: &ResourceType, name: &str) -> ApiError {
        self.name = Some(name.to_string());
        if !resource.group.is_empty() {
            self.group = Some(resource.group.to_string());
        }
        self.kind = Some(resource.plural.to_string());
        self
    }

    /// 404 for a named object: `deployments.apps "web" not found`.
    pub fn not_found(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", resource.qualified_resource()))
            .about(resource, name)
    }

    /// 404 for a path that names nothing served.
    pub fn no_route() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// 409 AlreadyExists.
    pub fn already_exists(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", resource.qualified_resource()))
            .about(resource, name)
    }

    /// 409 Conflict for a stale resourceVersion, in the words clients know.
    pub fn conflict(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::conflict_because(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict with a specific explanation.
    pub fn conflict_because(resource: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", resource.qualified_resource()),
        )
        .about(resource, name)
    }

    /// 422 Invalid with field causes; `kind` is the Kind (as kube-apiserver reports Invalid).
    pub fn invalid(resource: &ResourceType, name: &str, summary: String, causes: Vec<Cause>) -> ApiError {
        let mut e = ApiError::new(422, "Invalid", summary).about(resource, name);
        e.kind = Some(resource.kind.to_string());
        e.causes = causes;
        e
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// 403 for a named object an admission step refuses: `pods "p" is forbidden: {why}`.
    pub fn forbidden_object(resource: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError::new(403, "Forbidden", format!("{} {name:?} is forbidden: {why}", resource.qualified_resource()))
            .about(resource, name)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> ApiError {
        ApiError::new(406, "NotAcceptable", message)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    /// 410 Expired: a resourceVersion or continue token older than what is kept.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// 429 TooManyRequests.
    pub fn too_many_requests(message: impl Into<String>, cause: Option<Cause>) -> ApiError {
        let mut e = ApiError::new(429, "TooManyRequests", message);
        e.causes.extend(cause);
        e
    }

    /// 504 Timeout: e.g. a resourceVersion the server has not reached yet.
    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "Timeout", message)
    }

    /// 503 ServiceUnavailable: the store cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(503, "ServiceUnavailable", message);
        e.retry_after = Some(1);
        e
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    /// A failure kube-apiserver reports without a reason (`StatusReasonUnknown`), e.g. a backend that cannot be
    /// dialed: clients print just the message.
    pub fn unknown(code: u16, message: impl Into<String>) -> ApiError {
        ApiError::new(code, "", message)
    }

    /// Maps a store failure on one object to what the client should see.
    pub fn from_store(err: StoreError, resource: &ResourceType, name: &str) -> ApiError {
        match err {
            StoreError::NotFound { .. } => ApiError::not_found(resource, name),
            StoreError::AlreadyExists { .. } => ApiError::already_exists(resource, name),
            StoreError::Conflict { .. } => ApiError::conflict(resource, name),
            StoreError::Compacted { compacted, requested, .. } => {
                ApiError::expired(format!("too old resource version: {requested} ({compacted})"))
            }
            StoreError::FutureRevision { .. } => ApiError::timeout(format!(
                "Too large resource version: the requested revision of {} is not available yet",
                resource.qualified_resource()
            )),
            StoreError::Unavailable { .. } => ApiError::unavailable(format!("the store is unavailable: {err}")),
            other => ApiError::internal(other.to_string()),
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if !self.reason.is_empty() {
            status["reason"] = json!(self.reason);
        }
        let mut details = serde_json::Map::new();
        if let Some(name) = &self.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = &self.group {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &self.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| {
                    let mut cause = json!({"reason": c.reason, "message": c.message});
                    if !c.field.is_empty() {
                        cause["field"] = json!(c.field);
                    }
                    cause
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(after) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(after));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::registry::Registry;

    #[test]
    fn not_found_names_the_qualified_resource() {
        let registry = Registry::built_in();
        let deploy = registry.by_plural("apps", "v1", "deployments").unwrap();
        let status = ApiError::not_found(deploy, "web").to_status();
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["group"], "apps");
        assert_eq!(status["details"]["kind"], "deployments");
        let pods = registry.by_plural("", "v1", "pods").unwrap();
        let status = ApiError::not_found(pods, "x").to_status();
        assert_eq!(status["message"], "pods \"x\" not found");
        assert!(status["details"].get("group").is_none());
    }

    #[test]
    fn conflict_uses_the_wording_clients_retry_on() {
        let registry = Registry::built_in();
        let deploy = registry.by_plural("apps", "v1", "deployments").unwrap();
        let status = ApiError::conflict(deploy, "web").to_status();
        assert_eq!(
            status["message"],
            "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply \
             your changes to the latest version and try again"
        );
        assert_eq!(status["reason"], "Conflict");
    }
}
