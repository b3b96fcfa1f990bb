//! Validating and defaulting `CustomResourceDefinition` objects (`apiextensions.k8s.io/v1`) as
//! kube-apiserver does, with its field paths and messages.
//!
//! kube validates its internal form of a CRD, in which per-version schemas, subresources and printer
//! columns that are identical in every version are lifted to the top level. Its messages therefore name
//! `spec.validation.openAPIV3Schema...`, `spec.subresources...` and `spec.additionalPrinterColumns[i]` for a
//! CRD whose versions all share them (every single-version CRD), and `spec.versions[i]...` otherwise; this
//! module reports the same paths.

use serde_json::{Value, json};

use super::object::{Reporter, validate as validate_value, validate_embedded};
use super::pruning::prune_value;
use super::schema::{Node, versions};
use super::structural::{validate_openapi_schema, validate_structural};
use crate::registry::GroupKind;
use crate::validation::meta::{FIELD_IMMUTABLE, validate_object_meta, validate_object_meta_update};
use crate::validation::names;
use crate::validation::{FieldError, Path};

const CRD_KIND: GroupKind = GroupKind { group: "apiextensions.k8s.io", kind: "CustomResourceDefinition" };
const PRINTER_COLUMN_TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
const PRINTER_COLUMN_FORMATS: &[&str] = &["byte", "date", "date-time", "double", "float", "int32", "int64", "password"];
const APPROVAL_ANNOTATION: &str = "api-approved.kubernetes.io";

fn spec_path() -> Path {
    Path::root("spec")
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Fills in what kube-apiserver defaults in a v1 CRD before validating it: `spec.names.singular` (the
/// lower-cased kind), `spec.names.listKind` (`<Kind>List`) and `spec.conversion.strategy` (`None`).
pub fn default_crd(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let conversion = spec.entry("conversion").or_insert_with(|| json!({}));
    if conversion.is_null() {
        *conversion = json!({});
    }
    if let Some(c) = conversion.as_object_mut()
        && c.get("strategy").is_none_or(Value::is_null)
    {
        c.insert("strategy".into(), json!("None"));
    }
    let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) else { return };
    let kind = names.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    if kind.is_empty() {
        return;
    }
    if names.get("singular").and_then(Value::as_str).is_none_or(str::is_empty) {
        names.insert("singular".into(), json!(kind.to_lowercase()));
    }
    if names.get("listKind").and_then(Value::as_str).is_none_or(str::is_empty) {
        names.insert("listKind".into(), json!(format!("{kind}List")));
    }
}

/// Validates a CRD about to be created (after [`default_crd`]).
///
/// `status.storedVersions` is checked only when present: kube's create strategy sets it to the storage
/// version before validating, which is the server's job.
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_object_meta(CRD_KIND, crd, &mut errs);
    validate_crd_name(crd, &mut errs);
    validate_spec(crd, &mut errs);
    validate_status(crd, &mut errs);
    validate_api_approval(crd, None, &mut errs);
    validate_preserve_unknown_fields(crd, None, &mut errs);
    errs
}

/// Validates an update of `old` (as stored) into `new` (defaulted): everything [`validate_crd`] checks, plus
/// `spec.group` and `spec.names.plural` immutable, and `spec.scope` and `spec.names.kind` immutable once the
/// CRD is `Established`.
pub fn validate_crd_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_object_meta_update(CRD_KIND, new, old, &mut errs);
    validate_spec(new, &mut errs);
    let spec = spec_path();
    let established = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| text(c, "/type") == "Established" && text(c, "/status") == "True");
    let mut immutable = |pointer: &str, path: Path| {
        let n = text(new, pointer);
        if n != text(old, pointer) {
            errs.push(FieldError::invalid(&path, n, FIELD_IMMUTABLE));
        }
    };
    if established {
        immutable("/spec/scope", spec.child("scope"));
        immutable("/spec/names/kind", spec.child("names").child("kind"));
    }
    immutable("/spec/group", spec.child("group"));
    immutable("/spec/names/plural", spec.child("names").child("plural"));
    validate_status(new, &mut errs);
    validate_api_approval(new, Some(old), &mut errs);
    validate_preserve_unknown_fields(new, Some(old), &mut errs);
    errs
}

fn validate_crd_name(crd: &Value, errs: &mut Vec<FieldError>) {
    let name = text(crd, "/metadata/name");
    let required = format!("{}.{}", text(crd, "/spec/names/plural"), text(crd, "/spec/group"));
    if !name.is_empty() && name != required {
        errs.push(FieldError::invalid(
            &Path::root("metadata").child("name"),
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
}

/// Whether every version carries the same non-null value at `key` (and, for lists, a non-empty one).
fn identical_per_version(versions: &[Value], key: &str) -> bool {
    let Some(first) = versions.first().and_then(|v| v.get(key)) else { return false };
    versions.iter().all(|v| match v.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) if a.is_empty() => false,
        Some(x) => x == first,
    })
}

fn validate_spec(crd: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec_path();
    let empty = json!({});
    let s = crd.get("spec").unwrap_or(&empty);

    let group = text(s, "/group");
    if group.is_empty() {
        errs.push(FieldError::required(&spec.child("group"), ""));
    } else {
        let msgs = names::is_dns1123_subdomain(group);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(&spec.child("group"), group, msgs.join(",")));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid(&spec.child("group"), group, "should be a domain with at least one dot"));
        }
    }
    match text(s, "/scope") {
        "" => errs.push(FieldError::required(&spec.child("scope"), "")),
        "Cluster" | "Namespaced" => {}
        other => errs.push(FieldError::not_supported(&spec.child("scope"), other, &["Cluster", "Namespaced"])),
    }

    let vs = versions(crd);
    let lift_schema = identical_per_version(vs, "schema");
    let lift_subresources = identical_per_version(vs, "subresources");
    let lift_columns = identical_per_version(vs, "additionalPrinterColumns");
    let lift_selectable = identical_per_version(vs, "selectableFields");
    if !lift_schema {
        for (i, v) in vs.iter().enumerate() {
            if super::schema::version_schema(v).is_none() {
                errs.push(FieldError::required(
                    &spec.child("versions").index(i).child("schema").child("openAPIV3Schema"),
                    "schemas are required",
                ));
            }
        }
    }
    let status_enabled = |v: &Value| v.pointer("/subresources/status").is_some_and(|s| !s.is_null());
    let any_status = vs.iter().any(status_enabled);

    let mut storage_count = 0;
    let mut seen: Vec<&str> = Vec::new();
    let mut unique = true;
    for (i, v) in vs.iter().enumerate() {
        let vp = spec.child("versions").index(i);
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage_count += 1;
        }
        let name = text(v, "/name");
        if seen.contains(&name) {
            unique = false;
        } else {
            seen.push(name);
        }
        let msgs = names::is_dns1035_label(name);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(&vp.child("name"), name, msgs.join(",")));
        }
        validate_deprecation_warning(v, &vp, errs);
        if !lift_selectable {
            validate_selectable_fields(v, &vp, errs);
        }
        if !lift_schema && let Some(schema) = v.get("schema").filter(|s| !s.is_null()) {
            validate_schema(schema, status_enabled(v), &vp.child("schema"), errs);
        }
        if !lift_subresources && let Some(sub) = v.get("subresources") {
            validate_subresources(sub, &vp.child("subresources"), errs);
        }
        if !lift_columns {
            for (j, c) in v.get("additionalPrinterColumns").and_then(Value::as_array).into_iter().flatten().enumerate()
            {
                validate_column(c, &vp.child("additionalPrinterColumns").index(j), errs);
            }
        }
    }
    if !unique {
        errs.push(FieldError::invalid(&spec.child("versions"), json!(vs), "must contain unique version names"));
    }
    if storage_count != 1 {
        errs.push(FieldError::invalid(
            &spec.child("versions"),
            json!(vs),
            "must have exactly one version marked as storage version",
        ));
    }

    let names_path = spec.child("names");
    for key in ["plural", "singular", "kind", "listKind"] {
        if text(s, &format!("/names/{key}")).is_empty() {
            errs.push(FieldError::required(&names_path.child(key), ""));
        }
    }
    validate_names(s.get("names").unwrap_or(&empty), &names_path, errs);

    if lift_schema && let Some(schema) = vs.first().and_then(|v| v.get("schema")) {
        validate_schema(schema, any_status, &spec.child("validation"), errs);
    }
    if lift_subresources && let Some(sub) = vs.first().and_then(|v| v.get("subresources")) {
        validate_subresources(sub, &spec.child("subresources"), errs);
    }
    if lift_columns {
        let columns = vs.first().and_then(|v| v.get("additionalPrinterColumns")).and_then(Value::as_array);
        for (j, c) in columns.into_iter().flatten().enumerate() {
            validate_column(c, &spec.child("additionalPrinterColumns").index(j), errs);
        }
    }
    if lift_selectable && let Some(first) = vs.first() {
        validate_selectable_fields(first, &spec, errs);
    }
    validate_conversion(s, &spec.child("conversion"), errs);
}

fn validate_deprecation_warning(v: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let deprecated = v.get("deprecated").and_then(Value::as_bool).unwrap_or(false);
    let Some(warning) = v.get("deprecationWarning").and_then(Value::as_str) else { return };
    let p = path.child("deprecationWarning");
    if !deprecated {
        errs.push(FieldError::invalid(&p, warning, "can only be set for deprecated versions"));
        return;
    }
    if warning.len() > 256 {
        errs.push(FieldError::invalid(&p, warning, "must be <= 256 characters long"));
    }
    if warning.is_empty() {
        errs.push(FieldError::invalid(&p, warning, "must not be an empty string"));
    }
    if let Some((i, _)) = warning.char_indices().find(|(_, c)| c.is_control()) {
        errs.push(FieldError::invalid(
            &p,
            warning,
            format!("must only contain printable UTF-8 characters; control character found at index {i}"),
        ));
    }
}

/// kube's `ValidateCustomResourceDefinitionNames`, for `spec.names` and `status.acceptedNames`.
fn validate_names(n: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    for key in ["plural", "singular"] {
        let v = text(n, &format!("/{key}"));
        let msgs = names::is_dns1035_label(v);
        if !v.is_empty() && !msgs.is_empty() {
            errs.push(FieldError::invalid(&path.child(key), v, msgs.join(",")));
        }
    }
    for key in ["kind", "listKind"] {
        let v = text(n, &format!("/{key}"));
        let msgs = names::is_dns1035_label(&v.to_lowercase());
        if !v.is_empty() && !msgs.is_empty() {
            errs.push(FieldError::invalid(
                &path.child(key),
                v,
                format!("may have mixed case, but should otherwise match: {}", msgs.join(",")),
            ));
        }
    }
    for (i, item) in n.get("shortNames").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let v = item.as_str().unwrap_or("");
        let msgs = names::is_dns1035_label(v);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(&path.child("shortNames").index(i), v, msgs.join(",")));
        }
    }
    let kind = text(n, "/kind");
    if !kind.is_empty() && kind == text(n, "/listKind") {
        errs.push(FieldError::invalid(&path.child("listKind"), kind, "kind and listKind may not be the same"));
    }
    for (i, item) in n.get("categories").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let v = item.as_str().unwrap_or("");
        let msgs = names::is_dns1035_label(v);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(&path.child("categories").index(i), v, msgs.join(",")));
        }
    }
}

/// The JSON keys (with kube's Go field names) a root schema may carry when the status subresource is on.
const ALLOWED_AT_ROOT: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
];
const ALLOWED_AT_ROOT_GO: &str = "[Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations]";

/// One `CustomResourceValidation` (`{"openAPIV3Schema": ...}`) at `path` (`spec.validation` or
/// `spec.versions[i].schema`).
fn validate_schema(validation: &Value, status_enabled: bool, path: &Path, errs: &mut Vec<FieldError>) {
    let Some(schema) = validation.get("openAPIV3Schema").filter(|s| s.is_object()) else { return };
    let root = Node(schema);
    let schema_path = path.child("openAPIV3Schema");
    if status_enabled && let Some(object) = schema.as_object() {
        for (k, v) in object {
            if v.is_null() {
                continue;
            }
            if k == "type" {
                if root.ty() != "object" {
                    errs.push(FieldError::invalid(
                        &path.child("openAPIV3Schema.type"),
                        root.ty(),
                        "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
                    ));
                    break;
                }
                continue;
            }
            let zero = matches!(v, Value::Bool(false)) || v.as_array().is_some_and(Vec::is_empty);
            if !zero && !ALLOWED_AT_ROOT.contains(&k.as_str()) {
                errs.push(FieldError::invalid(
                    &schema_path,
                    schema.clone(),
                    format!("only {ALLOWED_AT_ROOT_GO} fields are allowed at the root of the schema if the status subresource is enabled"),
                ));
                break;
            }
        }
    }
    if root.nullable() {
        errs.push(FieldError::forbidden(
            &path.child("openAPIV3Schema.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let structural = validate_structural(schema, &schema_path);
    if structural.is_empty() {
        validate_defaults(root, &schema_path, true, false, errs);
    } else {
        errs.extend(structural);
    }
    errs.extend(validate_openapi_schema(schema, &schema_path));
}

/// kube's `ValidateDefaults`: every `default` must be pruned (no fields the schema does not specify) and
/// valid against the schema at its node. Defaults of an embedded resource's `apiVersion`, `kind` and
/// `metadata` are checked against their node only.
fn validate_defaults(s: Node<'_>, path: &Path, resource_root: bool, inside_meta: bool, errs: &mut Vec<FieldError>) {
    let embedded = resource_root || s.embedded();
    let inside_meta = if embedded { false } else { inside_meta };
    if let Some(default) = s.default_value() {
        let default_path = path.child("default");
        if !inside_meta {
            let mut pruned = default.clone();
            prune_value(s, &mut pruned, s.embedded());
            if &pruned != default {
                errs.push(FieldError::invalid(&default_path, default.clone(), "must not have unknown fields"));
            }
            let mut meta_errs = Vec::new();
            validate_embedded(s, default, &default_path, &mut meta_errs);
            if !meta_errs.is_empty() {
                errs.extend(meta_errs);
                return;
            }
        }
        let mut r = Reporter::new(Some(&default_path));
        validate_value(s, default, "", &mut r);
        let schema_ok = r.errs.is_empty();
        errs.extend(r.errs);
        if schema_ok {
            super::rules::validate_rules(s, default, None, &default_path, errs);
        }
    }
    if let Some(items) = s.items() {
        validate_defaults(items, &path.child("items"), false, inside_meta, errs);
    }
    for (k, prop) in s.sorted_properties() {
        let sub_meta = inside_meta || (embedded && matches!(k, "metadata" | "apiVersion" | "kind"));
        validate_defaults(prop, &path.child("properties").key(k), false, sub_meta, errs);
    }
}

fn simple_json_path(s: &str, path: &Path, errs: &mut Vec<FieldError>) -> bool {
    if s.is_empty() {
        errs.push(FieldError::invalid(path, s, "must not be empty"));
        return false;
    }
    if !s.starts_with('.') {
        errs.push(FieldError::invalid(path, s, "must be a simple json path starting with ."));
        return false;
    }
    true
}

fn validate_subresources(sub: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let Some(scale) = sub.get("scale").filter(|s| !s.is_null()) else { return };
    let spec_path = text(scale, "/specReplicasPath");
    let p = path.child("scale.specReplicasPath");
    if spec_path.is_empty() {
        errs.push(FieldError::required(&p, ""));
    } else if simple_json_path(spec_path, &p, errs) && !spec_path.starts_with(".spec.") {
        errs.push(FieldError::invalid(&p, spec_path, "should be a json path under .spec"));
    }
    let status_path = text(scale, "/statusReplicasPath");
    let p = path.child("scale.statusReplicasPath");
    if status_path.is_empty() {
        errs.push(FieldError::required(&p, ""));
    } else if simple_json_path(status_path, &p, errs) && !status_path.starts_with(".status.") {
        errs.push(FieldError::invalid(&p, status_path, "should be a json path under .status"));
    }
    let selector = text(scale, "/labelSelectorPath");
    let p = path.child("scale.labelSelectorPath");
    if !selector.is_empty()
        && simple_json_path(selector, &p, errs)
        && !selector.starts_with(".spec.")
        && !selector.starts_with(".status.")
    {
        errs.push(FieldError::invalid(&p, selector, "should be a json path under either .spec or .status"));
    }
}

fn validate_column(c: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    if text(c, "/name").is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    }
    let types = format!("must be one of {}", PRINTER_COLUMN_TYPES.join(","));
    match text(c, "/type") {
        "" => errs.push(FieldError::required(&path.child("type"), types)),
        t if !PRINTER_COLUMN_TYPES.contains(&t) => errs.push(FieldError::invalid(&path.child("type"), t, types)),
        _ => {}
    }
    let format = text(c, "/format");
    if !format.is_empty() && !PRINTER_COLUMN_FORMATS.contains(&format) {
        errs.push(FieldError::invalid(
            &path.child("format"),
            format,
            format!("must be one of {}", PRINTER_COLUMN_FORMATS.join(",")),
        ));
    }
    let json_path = text(c, "/jsonPath");
    let p = path.child("JSONPath");
    if json_path.is_empty() {
        errs.push(FieldError::required(&p, ""));
    } else if simple_json_path(json_path, &p, errs)
        && let Err(e) = super::jsonpath::JsonPath::parse(json_path)
    {
        errs.push(FieldError::invalid(&p, json_path, e.to_string()));
    }
}

fn validate_conversion(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let Some(conversion) = spec.get("conversion").filter(|c| !c.is_null()) else { return };
    let strategy = text(conversion, "/strategy");
    match strategy {
        "" => errs.push(FieldError::required(&path.child("strategy"), "")),
        "None" => {
            if conversion.get("webhook").is_some_and(|w| w.get("clientConfig").is_some_and(|c| !c.is_null())) {
                errs.push(FieldError::forbidden(
                    &path.child("webhookClientConfig"),
                    "should not be set when strategy is not set to Webhook",
                ));
            }
            if conversion
                .pointer("/webhook/conversionReviewVersions")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                errs.push(FieldError::forbidden(
                    &path.child("conversionReviewVersions"),
                    "should not be set when strategy is not set to Webhook",
                ));
            }
        }
        "Webhook" => errs.push(FieldError::forbidden(
            &path.child("strategy"),
            "Webhook conversion is not supported: this server runs no conversion webhooks; use strategy None",
        )),
        other => errs.push(FieldError::not_supported(&path.child("strategy"), other, &["None", "Webhook"])),
    }
}

fn validate_status(crd: &Value, errs: &mut Vec<FieldError>) {
    let status = Path::root("status");
    if let Some(accepted) = crd.pointer("/status/acceptedNames").filter(|a| a.is_object()) {
        validate_names(accepted, &status.child("acceptedNames"), errs);
    }
    let Some(stored) = crd.pointer("/status/storedVersions").and_then(Value::as_array) else { return };
    let path = status.child("storedVersions");
    if stored.is_empty() {
        errs.push(FieldError::invalid(&path, json!(stored), "must have at least one stored version"));
        return;
    }
    let stored_names: Vec<&str> = stored.iter().filter_map(Value::as_str).collect();
    let vs = versions(crd);
    for v in vs {
        let name = text(v, "/name");
        if v.get("storage").and_then(Value::as_bool) == Some(true) && !stored_names.contains(&name) {
            errs.push(FieldError::invalid(&path, json!(stored), format!("must have the storage version {name}")));
        }
    }
    for (i, s) in stored_names.iter().enumerate() {
        if !vs.iter().any(|v| text(v, "/name") == *s) {
            errs.push(FieldError::invalid(
                &path.index(i),
                *s,
                format!(
                    "missing from spec.versions; {s} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {s} and removes {s} from status.storedVersions"
                ),
            ));
        }
    }
}

fn is_protected_group(group: &str) -> bool {
    group == "k8s.io" || group.ends_with(".k8s.io") || group == "kubernetes.io" || group.ends_with(".kubernetes.io")
}

/// The state of the `api-approved.kubernetes.io` annotation: `None` when missing, `Some(valid)` otherwise.
fn approval(crd: &Value) -> Option<bool> {
    let value = crd.pointer("/metadata/annotations").and_then(|a| a.get(APPROVAL_ANNOTATION))?.as_str()?;
    Some(value.starts_with("unapproved") || value.starts_with("https://") || value.starts_with("http://"))
}

fn validate_api_approval(crd: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    if !is_protected_group(text(crd, "/spec/group")) {
        return;
    }
    let state = approval(crd);
    // An update keeps whatever approval state the stored object already had.
    if let Some(old) = old
        && approval(old) == state
    {
        return;
    }
    let path = Path::root("metadata").child("annotations").key(APPROVAL_ANNOTATION);
    match state {
        Some(true) => {}
        Some(false) => {
            let value = crd.pointer("/metadata/annotations").and_then(|a| a.get(APPROVAL_ANNOTATION)).cloned();
            errs.push(FieldError::invalid(
                &path,
                value.unwrap_or(Value::Null),
                "protected groups must have approval annotation \"api-approved.kubernetes.io\" with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111",
            ));
        }
        None => errs.push(FieldError::required(
            &path,
            "protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111",
        )),
    }
}

fn validate_preserve_unknown_fields(crd: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let set = |v: &Value| v.pointer("/spec/preserveUnknownFields").and_then(Value::as_bool) == Some(true);
    if old.is_some_and(set) {
        return;
    }
    if set(crd) {
        errs.push(FieldError::invalid(
            &spec_path().child("preserveUnknownFields"),
            true,
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
}

/// The most selectable fields a version may declare.
const MAX_SELECTABLE_FIELDS: usize = 8;

/// `selectableFields`: simple paths to string, boolean or integer fields outside metadata, each once.
fn validate_selectable_fields(v: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let Some(fields) = v.get("selectableFields").and_then(Value::as_array).filter(|f| !f.is_empty()) else { return };
    let fp = path.child("selectableFields");
    let Some(schema) = super::schema::version_schema(v) else {
        errs.push(FieldError::invalid(
            &fp,
            "",
            "selectableFields may only be set when version.schema.openAPIV3Schema is not included",
        ));
        return;
    };
    let mut seen: Vec<String> = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let p = fp.index(i).child("jsonPath");
        let json_path = text(f, "/jsonPath");
        if json_path.is_empty() {
            errs.push(FieldError::required(&p, ""));
            continue;
        }
        let segments: Vec<&str> = json_path.strip_prefix('.').unwrap_or("").split('.').collect();
        if !json_path.starts_with('.') || segments.iter().any(|s| s.is_empty() || s.contains(['[', ']'])) {
            errs.push(FieldError::invalid(
                &p,
                json_path,
                "is an invalid path: must be a simple field path such as .spec.name",
            ));
            continue;
        }
        let target = segments.iter().try_fold(Node(schema), |node, seg| node.property(seg));
        let Some(target) = target else {
            errs.push(FieldError::invalid(
                &p,
                json_path,
                "is an invalid path: does not refer to a field in the schema",
            ));
            continue;
        };
        if segments.first() == Some(&"metadata") {
            errs.push(FieldError::invalid(&p, json_path, "must not point to fields in metadata"));
        }
        if !matches!(target.ty(), "string" | "boolean" | "integer") {
            errs.push(FieldError::invalid(
                &p,
                json_path,
                "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            ));
        }
        let normalized = segments.join(".");
        if seen.contains(&normalized) {
            errs.push(FieldError::duplicate(&p, json_path));
        } else {
            seen.push(normalized);
        }
    }
    if seen.len() > MAX_SELECTABLE_FIELDS {
        errs.push(FieldError::too_many(&fp, seen.len(), MAX_SELECTABLE_FIELDS));
    }
}

/// The names of the versions a CRD serves, in `spec.versions` order.
pub fn served_versions(crd: &Value) -> Vec<&str> {
    versions(crd)
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .map(|v| text(v, "/name"))
        .collect()
}

/// The name of the version a CRD stores objects in (the one with `storage: true`).
pub fn storage_version(crd: &Value) -> Option<&str> {
    versions(crd).iter().find(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).map(|v| text(v, "/name"))
}

/// Appends the storage version to `status.storedVersions` if it is not listed yet.
fn record_storage_version(crd: &mut Value) {
    let Some(storage) = storage_version(crd).map(str::to_string) else { return };
    let Some(object) = crd.as_object_mut() else { return };
    let status = object.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let stored = &mut status["storedVersions"];
    if !stored.is_array() {
        *stored = json!([]);
    }
    if let Some(list) = stored.as_array_mut()
        && !list.iter().any(|v| v.as_str() == Some(storage.as_str()))
    {
        list.push(Value::from(storage));
    }
}

/// What kube-apiserver does to a CRD before validating a create: the client's `status` is dropped,
/// `metadata.generation` is 1 and `status.storedVersions` names the storage version.
pub fn prepare_crd_for_create(crd: &mut Value) {
    if let Some(object) = crd.as_object_mut() {
        object.insert("status".into(), json!({}));
    }
    if let Some(meta) = crd.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("generation".into(), json!(1));
    }
    record_storage_version(crd);
}

/// What kube-apiserver does to a CRD before validating an update of `old`: the stored `status` is kept
/// (status is written through the status subresource), `metadata.generation` goes up when `spec` changed,
/// and a new storage version is added to `status.storedVersions`.
pub fn prepare_crd_for_update(new: &mut Value, old: &Value) {
    let status = old.get("status").cloned().unwrap_or_else(|| json!({}));
    let old_generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let spec_changed = new.get("spec") != old.get("spec");
    if let Some(object) = new.as_object_mut() {
        object.insert("status".into(), status);
    }
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        let generation = if spec_changed { old_generation + 1 } else { old_generation };
        meta.insert("generation".into(), json!(generation));
    }
    record_storage_version(new);
}
