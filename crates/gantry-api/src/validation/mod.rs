//! The checks kube-apiserver applies to the built-in kinds before an object is stored.
//!
//! Validation works on the JSON a client sent (`apiVersion`/`kind` set), after [`crate::defaults`] has run,
//! exactly as kube-apiserver validates defaulted objects. Every failure is a [`FieldError`] whose text is the one
//! kube prints (`spec.replicas: Invalid value: -1: must be greater than or equal to 0`), so clients that match on
//! messages keep working. [`invalid_message`] builds the summary of a 422 `Invalid` status.
//!
//! Invariants the server must keep when calling in:
//! - run [`crate::defaults::apply_defaults`] first: several checks (`restartPolicy`, `protocol`, `sessionAffinity`)
//!   report a missing value the way kube would only if defaulting did not run;
//! - set `metadata.namespace` from the request path, generate `metadata.name` from `generateName`, and (for
//!   updates) copy the stored `metadata.resourceVersion` into an unconditional update, before validating;
//! - validation never panics and never fails as a whole: a field of the wrong JSON type is reported as a
//!   `FieldValueTypeInvalid` error on that field.

mod apps;
mod batch;
mod core;
pub(crate) mod meta;
pub mod names;
mod other;
pub(crate) mod pod;
pub mod quantity;
mod value;

use std::fmt;

use serde_json::Value;

use crate::registry::GroupKind;

pub use quantity::{Quantity, QuantityError, QuantityFormat};

/// The kind of a field error; the names and texts are those of kube's `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// A value that was looked up does not exist (`Not found`).
    FieldValueNotFound,
    /// A required value is missing (`Required value`).
    FieldValueRequired,
    /// A value that must be unique is repeated (`Duplicate value`).
    FieldValueDuplicate,
    /// A malformed or out-of-range value (`Invalid value`).
    FieldValueInvalid,
    /// A value outside an enumeration (`Unsupported value`).
    FieldValueNotSupported,
    /// A value allowed only in other circumstances (`Forbidden`).
    FieldValueForbidden,
    /// A value that is too long; the value itself is not repeated (`Too long`).
    FieldValueTooLong,
    /// A list with too many items (`Too many`).
    FieldValueTooMany,
    /// A failure unrelated to the input (`Internal error`).
    InternalError,
    /// A value of the wrong JSON type (`Invalid value`).
    FieldValueTypeInvalid,
}

impl FieldErrorKind {
    /// The reason string of a `Status` cause (`FieldValueInvalid`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::FieldValueNotFound => "FieldValueNotFound",
            FieldErrorKind::FieldValueRequired => "FieldValueRequired",
            FieldErrorKind::FieldValueDuplicate => "FieldValueDuplicate",
            FieldErrorKind::FieldValueInvalid => "FieldValueInvalid",
            FieldErrorKind::FieldValueNotSupported => "FieldValueNotSupported",
            FieldErrorKind::FieldValueForbidden => "FieldValueForbidden",
            FieldErrorKind::FieldValueTooLong => "FieldValueTooLong",
            FieldErrorKind::FieldValueTooMany => "FieldValueTooMany",
            FieldErrorKind::InternalError => "InternalError",
            FieldErrorKind::FieldValueTypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human text of the kind (`Invalid value`, `Required value`, ...).
    pub fn label(self) -> &'static str {
        match self {
            FieldErrorKind::FieldValueNotFound => "Not found",
            FieldErrorKind::FieldValueRequired => "Required value",
            FieldErrorKind::FieldValueDuplicate => "Duplicate value",
            FieldErrorKind::FieldValueInvalid | FieldErrorKind::FieldValueTypeInvalid => "Invalid value",
            FieldErrorKind::FieldValueNotSupported => "Unsupported value",
            FieldErrorKind::FieldValueForbidden => "Forbidden",
            FieldErrorKind::FieldValueTooLong => "Too long",
            FieldErrorKind::FieldValueTooMany => "Too many",
            FieldErrorKind::InternalError => "Internal error",
        }
    }

    /// Whether kube leaves the offending value out of the message for this kind.
    fn omits_value(self) -> bool {
        matches!(
            self,
            FieldErrorKind::FieldValueRequired
                | FieldErrorKind::FieldValueForbidden
                | FieldErrorKind::FieldValueTooLong
                | FieldErrorKind::InternalError
        )
    }
}

/// One field-level validation failure, as kube's `field.Error`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The field path, e.g. `spec.template.spec.containers[0].name`.
    pub field: String,
    /// The offending value; `None` when kube omits it from the message.
    pub value: Option<Value>,
    /// The explanation after the value, possibly empty.
    pub detail: String,
}

impl FieldError {
    fn new(kind: FieldErrorKind, field: &Path, value: Option<Value>, detail: impl Into<String>) -> FieldError {
        FieldError { kind, field: field.to_string(), value, detail: detail.into() }
    }

    /// `Required value`, with an optional detail.
    pub fn required(field: &Path, detail: impl Into<String>) -> FieldError {
        FieldError::new(FieldErrorKind::FieldValueRequired, field, None, detail)
    }

    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(field: &Path, value: impl Into<Value>, detail: impl Into<String>) -> FieldError {
        FieldError::new(FieldErrorKind::FieldValueInvalid, field, Some(value.into()), detail)
    }

    /// `Invalid value: <detail>`, for errors about a whole structure whose value kube does not print.
    pub fn invalid_omitted(field: &Path, detail: impl Into<String>) -> FieldError {
        FieldError::new(FieldErrorKind::FieldValueInvalid, field, None, detail)
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: &Path, value: impl Into<Value>) -> FieldError {
        FieldError::new(FieldErrorKind::FieldValueDuplicate, field, Some(value.into()), "")
    }

    /// `Not found: <value>`.
    pub fn not_found(field: &Path, value: impl Into<Value>) -> FieldError {
        FieldError::new(FieldErrorKind::FieldValueNotFound, field, Some(value.into()), "")
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(field: &Path, value: impl Into<Value>, supported: &[&str]) -> FieldError {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError::new(FieldErrorKind::FieldValueNotSupported, field, Some(value.into()), detail)
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: &Path, detail: impl Into<String>) -> FieldError {
        FieldError::new(FieldErrorKind::FieldValueForbidden, field, None, detail)
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(field: &Path, max: usize) -> FieldError {
        let unit = if max == 1 { "byte" } else { "bytes" };
        FieldError::new(FieldErrorKind::FieldValueTooLong, field, None, format!("may not be more than {max} {unit}"))
    }

    /// `Too many: <actual>: must have at most <max> items`.
    pub fn too_many(field: &Path, actual: usize, max: usize) -> FieldError {
        let unit = if max == 1 { "item" } else { "items" };
        FieldError::new(
            FieldErrorKind::FieldValueTooMany,
            field,
            Some(Value::from(actual)),
            format!("must have at most {max} {unit}"),
        )
    }

    /// `Invalid value: <value>: <detail>` for a value of the wrong JSON type.
    pub fn type_invalid(field: &Path, value: impl Into<Value>, detail: impl Into<String>) -> FieldError {
        FieldError::new(FieldErrorKind::FieldValueTypeInvalid, field, Some(value.into()), detail)
    }

    /// The message without the field name, used as a `Status` cause's `message`
    /// (kube's `ErrorBody`), e.g. `Invalid value: -1: must be greater than or equal to 0`.
    pub fn body(&self) -> String {
        let mut s = self.kind.label().to_string();
        if !self.kind.omits_value()
            && let Some(value) = &self.value
        {
            s.push_str(": ");
            s.push_str(&render_value(value));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The full message, `<field>: <body>`, as kube prints it.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// The `message` of the 422 `Invalid` status kube returns for these errors, as `errors.NewInvalid` builds it:
/// `Deployment.apps "web" is invalid: [spec.replicas: ..., spec.selector: Required value]`.
///
/// Errors with identical messages are reported once; a single distinct error is not bracketed, and an empty
/// list gives `<Kind.group> "<name>" is invalid`.
pub fn invalid_message(gk: GroupKind, name: &str, errors: &[FieldError]) -> String {
    let mut seen = std::collections::HashSet::new();
    let messages: Vec<String> = errors.iter().map(FieldError::message).filter(|m| seen.insert(m.clone())).collect();
    let head = format!("{gk} {} is invalid", go_quote(name));
    match messages.len() {
        0 => head,
        1 => format!("{head}: {}", messages[0]),
        _ => format!("{head}: [{}]", messages.join(", ")),
    }
}

/// Validates an object about to be created. The object must already be defaulted.
///
/// Kinds without specific rules get the metadata checks only.
pub fn validate_create(gk: GroupKind, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !obj.is_object() {
        errs.push(FieldError::type_invalid(&Path::whole_object(), obj.clone(), "must be an object"));
        return errs;
    }
    meta::validate_object_meta(gk, obj, &mut errs);
    validate_kind(gk, obj, None, &mut errs);
    errs
}

/// Validates an update of `old` (as stored) into `new` (defaulted). Checks the new object as a whole and the
/// fields kube keeps immutable.
pub fn validate_update(gk: GroupKind, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !new.is_object() {
        errs.push(FieldError::type_invalid(&Path::whole_object(), new.clone(), "must be an object"));
        return errs;
    }
    meta::validate_object_meta_update(gk, new, old, &mut errs);
    validate_kind(gk, new, Some(old), &mut errs);
    errs
}

/// Per-kind rules; `old` is set on update.
fn validate_kind(gk: GroupKind, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    match (gk.group, gk.kind) {
        ("", "Pod") => pod::validate_pod(obj, old, errs),
        ("", "PodTemplate") => pod::validate_pod_template_object(obj, errs),
        ("", "Service") => core::validate_service(obj, old, errs),
        ("", "ConfigMap") => core::validate_config_map(obj, old, errs),
        ("", "Secret") => core::validate_secret(obj, old, errs),
        ("", "Namespace") => core::validate_namespace(obj, old, errs),
        ("", "Node") => core::validate_node(obj, old, errs),
        ("", "Event") => core::validate_event(obj, errs),
        ("", "PersistentVolumeClaim") => core::validate_pvc(obj, old, errs),
        ("", "PersistentVolume") => core::validate_pv(obj, errs),
        ("", "ServiceAccount") => {}
        ("", "ResourceQuota") => core::validate_resource_quota(obj, errs),
        ("", "LimitRange") => core::validate_limit_range(obj, errs),
        ("", "Endpoints") => core::validate_endpoints(obj, errs),
        ("apps", "Deployment") => apps::validate_deployment(obj, old, errs),
        ("apps", "ReplicaSet") => apps::validate_replica_set(obj, old, errs),
        ("apps", "StatefulSet") => apps::validate_stateful_set(obj, old, errs),
        ("apps", "DaemonSet") => apps::validate_daemon_set(obj, old, errs),
        ("apps", "ControllerRevision") => apps::validate_controller_revision(obj, old, errs),
        ("batch", "Job") => batch::validate_job(obj, old, errs),
        ("batch", "CronJob") => batch::validate_cron_job(obj, old, errs),
        ("coordination.k8s.io", "Lease") => other::validate_lease(obj, errs),
        ("events.k8s.io", "Event") => other::validate_events_event(obj, errs),
        ("policy", "PodDisruptionBudget") => other::validate_pdb(obj, errs),
        ("scheduling.k8s.io", "PriorityClass") => other::validate_priority_class(obj, old, errs),
        ("networking.k8s.io", "Ingress") => other::validate_ingress(obj, errs),
        ("networking.k8s.io", "IngressClass") => other::validate_ingress_class(obj, old, errs),
        ("networking.k8s.io", "NetworkPolicy") => other::validate_network_policy(obj, errs),
        ("autoscaling", "HorizontalPodAutoscaler") => other::validate_hpa(obj, errs),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => other::validate_role(obj, errs),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            other::validate_role_binding(gk.kind, obj, old, errs)
        }
        ("storage.k8s.io", "StorageClass") => other::validate_storage_class(obj, old, errs),
        ("discovery.k8s.io", "EndpointSlice") => other::validate_endpoint_slice(obj, errs),
        _ => {}
    }
}

/// A field path in kube's notation: `spec.containers[0].ports[1].name`, `metadata.labels[app]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    /// A path starting at the named top-level field; `""` is the empty path whose children are top-level fields.
    pub fn root(name: &str) -> Path {
        Path(name.to_string())
    }

    /// The path kube uses for an error about the object as a whole, shown as `[]`.
    pub fn whole_object() -> Path {
        Path("[]".to_string())
    }

    /// The path of a named child field.
    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() { Path(name.to_string()) } else { Path(format!("{}.{}", self.0, name)) }
    }

    /// The path of a list element.
    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{}]", self.0, i))
    }

    /// The path of a map entry.
    pub fn key(&self, k: &str) -> Path {
        Path(format!("{}[{}]", self.0, k))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Renders a bad value as kube does: strings quoted Go-style, numbers and booleans bare, anything else as
/// compact JSON with sorted keys.
pub fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Array(_) | Value::Object(_) => {
            let mut out = String::new();
            go_json(value, &mut out);
            out
        }
    }
}

/// Quotes a string the way Go's `%q` / `strconv.Quote` does.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Compact JSON as Go's `encoding/json` writes it (sorted keys, `<`, `>`, `&` escaped).
fn go_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(k, out);
                out.push(':');
                if let Some(v) = map.get(k) {
                    go_json(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(v, out);
            }
            out.push(']');
        }
        Value::String(s) => go_json_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
