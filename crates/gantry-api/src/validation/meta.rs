//! `metadata` checks shared by every kind, label and annotation checks, and label selectors.

use serde_json::{Value, json};

use super::names::{self, NameRule};
use super::value::{at, field, int_at, list_at, obj_at, or_null, str_at, string_map, string_map_at};
use super::{FieldError, Path};
use crate::registry::{BUILT_IN, GroupKind};

/// The most bytes all annotations of one object may hold together (keys plus values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
pub(crate) const FIELD_IMMUTABLE: &str = "field is immutable";
pub(crate) const IS_NEGATIVE: &str = "must be greater than or equal to 0";

/// The name format kube enforces for a kind.
pub fn name_rule(gk: GroupKind) -> NameRule {
    match (gk.group, gk.kind) {
        ("", "Namespace") | ("apps", "StatefulSet") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("", "PersistentVolume") | ("autoscaling", "HorizontalPodAutoscaler") | ("rbac.authorization.k8s.io", _) => {
            NameRule::PathSegment
        }
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Whether the kind lives in a namespace; `None` for kinds Gantry does not know.
fn namespaced(gk: GroupKind) -> Option<bool> {
    BUILT_IN.iter().find(|r| r.group == gk.group && r.kind == gk.kind).map(|r| r.namespaced)
}

// The last is the finalizer that holds a deleted CustomResourceDefinition until its objects are gone.
const STANDARD_FINALIZERS: &[&str] =
    &["kubernetes", "orphan", "foregroundDeletion", "customresourcecleanup.apiextensions.k8s.io"];

/// Metadata checks on create.
pub(crate) fn validate_object_meta(gk: GroupKind, obj: &Value, errs: &mut Vec<FieldError>) {
    validate_object_meta_as(name_rule(gk), namespaced(gk), obj, errs);
}

/// Metadata checks on create for a kind described by its name rule and scope (`None`: scope unknown, the
/// namespace is not checked), as custom resources need.
pub(crate) fn validate_object_meta_as(
    rule: NameRule,
    namespaced: Option<bool>,
    obj: &Value,
    errs: &mut Vec<FieldError>,
) {
    let path = Path::root("metadata");
    let Some(meta) = obj_at(errs, obj, "metadata", &Path::root("")) else {
        errs.push(FieldError::required(&path.child("name"), "name or generateName is required"));
        return;
    };
    let name = str_at(errs, meta, "name", &path).unwrap_or("");
    let generate_name = str_at(errs, meta, "generateName", &path).unwrap_or("");
    if !generate_name.is_empty() {
        for msg in rule.check(generate_name, true) {
            errs.push(FieldError::invalid(&path.child("generateName"), generate_name, msg));
        }
    }
    if name.is_empty() {
        // With a generateName the server picks the name; a missing name is only an error without one.
        if generate_name.is_empty() {
            errs.push(FieldError::required(&path.child("name"), "name or generateName is required"));
        }
    } else {
        for msg in rule.check(name, false) {
            errs.push(FieldError::invalid(&path.child("name"), name, msg));
        }
    }
    validate_meta_common(namespaced, meta, &path, errs);
}

/// The part of the metadata checks that create and update share.
fn validate_meta_common(namespaced: Option<bool>, meta: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    if namespaced == Some(true) {
        let ns = str_at(errs, meta, "namespace", path).unwrap_or("");
        if ns.is_empty() {
            errs.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            for msg in NameRule::Dns1123Label.check(ns, false) {
                errs.push(FieldError::invalid(&path.child("namespace"), ns, msg));
            }
        }
    }
    if let Some(g) = int_at(errs, meta, "generation", path)
        && g < 0
    {
        errs.push(FieldError::invalid(&path.child("generation"), g, IS_NEGATIVE));
    }
    let labels = string_map_at(errs, meta, "labels", path);
    validate_labels(&labels, &path.child("labels"), errs);
    let annotations = string_map_at(errs, meta, "annotations", path);
    validate_annotations(&annotations, &path.child("annotations"), errs);
    validate_owner_references(meta, path, errs);
    validate_finalizers(meta, path, errs);
}

/// Label keys must be qualified names and values valid label values; errors point at the map itself.
pub(crate) fn validate_labels(labels: &[(&str, &str)], path: &Path, errs: &mut Vec<FieldError>) {
    for (k, v) in labels {
        for msg in names::is_qualified_name(k) {
            errs.push(FieldError::invalid(path, *k, msg));
        }
        for msg in names::is_valid_label_value(v) {
            errs.push(FieldError::invalid(path, *v, msg));
        }
    }
}

/// Annotation keys are qualified names (case-insensitive) and all annotations together fit in 256 KiB.
pub(crate) fn validate_annotations(annotations: &[(&str, &str)], path: &Path, errs: &mut Vec<FieldError>) {
    let mut total = 0usize;
    for (k, v) in annotations {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, *k, msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_owner_references(meta: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let refs_path = path.child("ownerReferences");
    let refs = list_at(errs, meta, "ownerReferences", path);
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = field(r, "apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = field(r, "kind").and_then(Value::as_str).unwrap_or("");
        let name = field(r, "name").and_then(Value::as_str).unwrap_or("");
        let uid = field(r, "uid").and_then(Value::as_str).unwrap_or("");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(FieldError::invalid(&refs_path.child("apiVersion"), api_version, "version must not be empty"));
        }
        if kind.is_empty() {
            errs.push(FieldError::invalid(&refs_path.child("kind"), kind, "must not be empty"));
        }
        if name.is_empty() {
            errs.push(FieldError::invalid(&refs_path.child("name"), name, "must not be empty"));
        }
        if uid.is_empty() {
            errs.push(FieldError::invalid(&refs_path.child("uid"), uid, "must not be empty"));
        }
        if api_version == "v1" && kind == "Event" {
            errs.push(FieldError::invalid(&refs_path, r.clone(), "/v1, Kind=Event is disallowed from being an owner"));
        }
        if field(r, "controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    &refs_path,
                    Value::Array(refs.to_vec()),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
}

fn finalizer_list(meta: &Value) -> Vec<&str> {
    field(meta, "finalizers")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn validate_finalizers(meta: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let fpath = path.child("finalizers");
    let list = list_at(errs, meta, "finalizers", path);
    let finalizers: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    for f in &finalizers {
        for msg in names::is_qualified_name(f) {
            errs.push(FieldError::invalid(&fpath, *f, msg));
        }
    }
    if finalizers.contains(&"orphan") && finalizers.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            &fpath,
            json!(finalizers),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    for (i, f) in finalizers.iter().enumerate() {
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(f) {
            errs.push(FieldError::invalid(
                &fpath.index(i),
                *f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

/// Metadata checks on update: the create checks on the new metadata (name format excepted, as kube does) plus
/// immutability of identity fields.
pub(crate) fn validate_object_meta_update(gk: GroupKind, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let path = Path::root("metadata");
    let empty = json!({});
    let new_meta = obj_at(errs, new, "metadata", &Path::root("")).unwrap_or(&empty);
    let old_meta = field(old, "metadata").unwrap_or(&empty);

    if field(old_meta, "deletionTimestamp").is_some() {
        let old_f = finalizer_list(old_meta);
        let mut extra: Vec<&str> = finalizer_list(new_meta).into_iter().filter(|f| !old_f.contains(f)).collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            let listed: Vec<String> = extra.iter().map(|f| super::go_quote(f)).collect();
            errs.push(FieldError::forbidden(
                &path.child("finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    listed.join(", ")
                ),
            ));
        }
    }
    let rv = field(new_meta, "resourceVersion").and_then(Value::as_str).unwrap_or("");
    if rv.is_empty() {
        errs.push(FieldError::invalid(&path.child("resourceVersion"), rv, "must be specified for an update"));
    }
    let new_gen = field(new_meta, "generation").and_then(Value::as_i64).unwrap_or(0);
    let old_gen = field(old_meta, "generation").and_then(Value::as_i64).unwrap_or(0);
    if new_gen < old_gen {
        errs.push(FieldError::invalid(&path.child("generation"), new_gen, "must not be decremented"));
    }
    for key in ["name", "namespace", "uid"] {
        let n = field(new_meta, key).and_then(Value::as_str).unwrap_or("");
        let o = field(old_meta, key).and_then(Value::as_str).unwrap_or("");
        if n != o {
            errs.push(FieldError::invalid(&path.child(key), n, FIELD_IMMUTABLE));
        }
    }
    for key in ["creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        let n = field(new_meta, key);
        if n != field(old_meta, key) {
            errs.push(FieldError::invalid(&path.child(key), or_null(n), FIELD_IMMUTABLE));
        }
    }
    let labels = string_map_at(errs, new_meta, "labels", &path);
    validate_labels(&labels, &path.child("labels"), errs);
    let annotations = string_map_at(errs, new_meta, "annotations", &path);
    validate_annotations(&annotations, &path.child("annotations"), errs);
    validate_owner_references(new_meta, &path, errs);
    validate_finalizers(new_meta, &path, errs);
    let _ = gk;
}

/// Validates a `metav1.LabelSelector` (matchLabels and matchExpressions).
pub(crate) fn validate_label_selector(sel: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(map) = field(sel, "matchLabels").and_then(Value::as_object) {
        let labels = string_map(errs, map, &path.child("matchLabels"));
        validate_labels(&labels, &path.child("matchLabels"), errs);
    }
    let exprs = list_at(errs, sel, "matchExpressions", path);
    for (i, expr) in exprs.iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let op = field(expr, "operator").and_then(Value::as_str).unwrap_or("");
        let values = field(expr, "values").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        &p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        &p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(FieldError::invalid(&p.child("operator"), op, "not a valid selector operator")),
        }
        let key = field(expr, "key").and_then(Value::as_str).unwrap_or("");
        for msg in names::is_qualified_name(key) {
            errs.push(FieldError::invalid(&p.child("key"), key, msg));
        }
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for msg in names::is_valid_label_value(v) {
                errs.push(FieldError::invalid(&p.child("values").index(j), v, msg));
            }
        }
    }
}

/// Whether a selector has neither matchLabels nor matchExpressions.
pub(crate) fn selector_is_empty(sel: &Value) -> bool {
    let n_labels = field(sel, "matchLabels").and_then(Value::as_object).map_or(0, |m| m.len());
    let n_exprs = field(sel, "matchExpressions").and_then(Value::as_array).map_or(0, |a| a.len());
    n_labels + n_exprs == 0
}

/// Whether a label selector matches a set of labels. An invalid operator matches nothing.
pub(crate) fn selector_matches(sel: &Value, labels: &[(&str, &str)]) -> bool {
    let get = |k: &str| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v);
    if let Some(map) = field(sel, "matchLabels").and_then(Value::as_object) {
        for (k, v) in map {
            if get(k) != v.as_str() {
                return false;
            }
        }
    }
    if let Some(exprs) = field(sel, "matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = field(e, "key").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = field(e, "values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let ok = match field(e, "operator").and_then(Value::as_str).unwrap_or("") {
                "In" => get(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => get(key).is_some(),
                "DoesNotExist" => get(key).is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

/// The labels of a pod template (`template.metadata.labels`), sorted.
pub(crate) fn template_labels<'a>(template: &'a Value, errs: &mut Vec<FieldError>) -> Vec<(&'a str, &'a str)> {
    match at(template, &["metadata", "labels"]).and_then(Value::as_object) {
        Some(map) => string_map(errs, map, &Path::root("")),
        None => Vec::new(),
    }
}

/// kube's `ValidateNonnegativeField`.
pub(crate) fn non_negative(value: Option<i64>, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(v) = value
        && v < 0
    {
        errs.push(FieldError::invalid(path, v, IS_NEGATIVE));
    }
}

/// kube's `ValidateImmutableField` on a (possibly absent) JSON value.
pub(crate) fn immutable(new: Option<&Value>, old: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    if !super::value::semantic_eq(new, old) {
        errs.push(FieldError::invalid(path, or_null(new), FIELD_IMMUTABLE));
    }
}
