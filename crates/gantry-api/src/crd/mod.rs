//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`): everything that is a pure function of a CRD and a
//! custom resource, with kube-apiserver's behaviour and messages.
//!
//! - [`default_crd`], [`prepare_crd_for_create`], [`prepare_crd_for_update`], [`validate_crd`],
//!   [`validate_crd_update`]: the CRD object itself, including the
//!   structural-schema rules (`spec.validation.openAPIV3Schema.properties[spec].type: Required value: must
//!   not be empty for specified object fields`) and the rule that defaults are valid and pruned.
//! - [`prune`], [`prune_non_nullable_nulls`], [`default`], [`prune_and_default`]: what happens to a custom
//!   resource when it is decoded (request bodies and reads from storage).
//! - [`validate_custom_resource`], [`validate_custom_resource_update`], [`validate_against_schema`]: the
//!   checks before a custom resource is stored (`spec.replicas: Invalid value: "string": spec.replicas in
//!   body must be of type integer: "string"`).
//! - [`CrdTable`]: `as=Table` columns and rows; [`JsonPath`]: the printer-column JSONPath subset.
//! - [`ScalePaths`], [`scale_of`], [`set_spec_replicas`]: the `scale` subresource.
//! - `crate::openapi::custom_resource_documents` publishes CRD schemas in `/openapi/v3`.
//!
//! Inputs are JSON (`serde_json::Value`) as clients send and the store keeps them; a schema is a
//! `JSONSchemaProps` object (`spec.versions[i].schema.openAPIV3Schema`).
//!
//! `x-kubernetes-validations` (CEL) rules are evaluated with the `cel` crate and reject a value only when
//! they evaluate to `false`; a rule the evaluator cannot parse or run (the Kubernetes CEL libraries such as
//! `url()` or `quantity()`, optional-field syntax, run-time errors) is skipped, where kube would reject the
//! CRD or the object. Rules are not type-checked or cost-estimated when a CRD is written. Conversion
//! webhooks are refused: only `strategy: None` is accepted, so every served version must hold the same
//! fields.

mod defaulting;
mod definition;
mod formats;
mod jsonpath;
mod object;
mod pruning;
mod rules;
mod scale;
mod schema;
mod structural;
mod table;

use serde_json::Value;

pub use defaulting::{default, prune_non_nullable_nulls};
pub use definition::{
    default_crd, prepare_crd_for_create, prepare_crd_for_update, served_versions, storage_version, validate_crd,
    validate_crd_update,
};
pub use jsonpath::{JsonPath, JsonPathError, print_value};
pub use pruning::prune;
pub use scale::{ScaleError, ScalePaths, scale_of, set_spec_replicas, validate_replicas};
pub use schema::{version, version_schema};
pub use table::CrdTable;

use crate::registry::GroupKind;
use crate::validation::meta::{validate_object_meta_as, validate_object_meta_update};
use crate::validation::names::NameRule;
use crate::validation::{FieldError, Path};
use object::{Reporter, validate_embedded, validate_list_types};
use schema::Node;

/// What decoding a custom resource does to it, in kube's order: prune the fields `schema` does not specify,
/// drop the `null`s the schema neither allows nor defaults, then apply defaults. Returns the pruned paths,
/// for `unknown field "<path>"` warnings or errors.
pub fn prune_and_default(schema: &Value, obj: &mut Value) -> Vec<String> {
    let pruned = prune(schema, obj);
    prune_non_nullable_nulls(schema, obj);
    default(schema, obj);
    pruned
}

/// Validates `obj` against a schema only, with kube's field paths and messages (no metadata, scale or
/// type checks).
pub fn validate_against_schema(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut r = Reporter::new(None);
    object::validate(Node(schema), obj, "", &mut r);
    r.errs
}

/// Validates a custom resource about to be created in `version` of `crd` (pruned and defaulted already):
/// `apiVersion` and `kind`, `metadata`, the version's schema, the scale replica counts, embedded resources,
/// `x-kubernetes-list-type` sets and maps, and `x-kubernetes-validations` rules. The server must have set `metadata.namespace` (for a
/// namespaced CRD) and generated the name, as for built-in kinds.
pub fn validate_custom_resource(crd: &Value, version: &str, obj: &Value) -> Vec<FieldError> {
    validate_cr(crd, version, obj, None)
}

/// Validates an update of a custom resource (`old` as stored): as [`validate_custom_resource`], with the
/// metadata update rules (immutable name, namespace, uid, ...) instead of the create rules, and kube's
/// ratcheting: schema errors on values the update leaves unchanged are dropped, and set and map duplicates
/// are reported only if the stored object had none.
pub fn validate_custom_resource_update(crd: &Value, version: &str, new: &Value, old: &Value) -> Vec<FieldError> {
    validate_cr(crd, version, new, Some(old))
}

fn validate_cr(crd: &Value, version_name: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
    let kind = crd.pointer("/spec/names/kind").and_then(Value::as_str).unwrap_or("");
    let actual_kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if actual_kind != kind {
        return vec![FieldError::invalid(&Path::root("kind"), actual_kind, format!("must be {kind}"))];
    }
    let api_version = format!("{group}/{version_name}");
    let actual_api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if actual_api_version != api_version {
        return vec![FieldError::invalid(
            &Path::root("apiVersion"),
            actual_api_version,
            format!("must be {api_version}"),
        )];
    }
    let mut errs = Vec::new();
    match old {
        None => {
            let namespaced = crd.pointer("/spec/scope").and_then(Value::as_str) == Some("Namespaced");
            validate_object_meta_as(NameRule::Dns1123Subdomain, Some(namespaced), obj, &mut errs);
        }
        // The update checks do not depend on the kind.
        Some(old) => validate_object_meta_update(CUSTOM_RESOURCE, obj, old, &mut errs),
    }
    let v = version(crd, version_name);
    let schema = v.and_then(version_schema);
    if let Some(schema) = schema {
        let mut r = Reporter::new(None);
        object::validate(Node(schema), obj, "", &mut r);
        let mut schema_errs = r.errs;
        // An update may keep an invalid value it does not touch (kube's CRD validation ratcheting).
        if let Some(old) = old {
            schema_errs.retain(|e| !ratcheted(&e.field, obj, old));
        }
        errs.extend(schema_errs);
    }
    if let Some(paths) = v.and_then(ScalePaths::from_version) {
        errs.extend(validate_replicas(obj, &paths));
    }
    if let Some(schema) = schema {
        validate_embedded(Node(schema), obj, &Path::root(""), &mut errs);
        // Duplicates in sets and maps are only reported when the stored object had none.
        let old_list_errs = old.map(|o| {
            let mut e = Vec::new();
            validate_list_types(Node(schema), o, &Path::root(""), &mut e);
            e
        });
        if old_list_errs.is_none_or(|e| e.is_empty()) {
            validate_list_types(Node(schema), obj, &Path::root(""), &mut errs);
        }
        let mut rule_errs = Vec::new();
        rules::validate_rules(Node(schema), obj, old, &Path::root(""), &mut rule_errs);
        if let Some(old) = old {
            rule_errs.retain(|e| !ratcheted(&e.field, obj, old));
        }
        errs.extend(rule_errs);
    }
    errs
}

/// Whether a schema error at `field` (`spec.a.b`, `spec.list[2].x`) concerns a value the update left as it
/// was: the field itself or one of the objects containing it is unchanged from `old`. Lists are not looked
/// into, since their items cannot be matched up in general.
fn ratcheted(field: &str, new: &Value, old: &Value) -> bool {
    let (mut n, mut o) = (new, old);
    for segment in field.split('.') {
        let (key, stop) = match segment.find('[') {
            Some(i) => (&segment[..i], true),
            None => (segment, false),
        };
        match (n.get(key), o.get(key)) {
            (Some(nv), Some(ov)) => {
                if nv == ov {
                    return true;
                }
                n = nv;
                o = ov;
            }
            _ => return false,
        }
        if stop {
            return false;
        }
    }
    false
}

/// A stand-in kind for the metadata update checks, which do not look at the kind.
const CUSTOM_RESOURCE: GroupKind = GroupKind { group: "apiextensions.k8s.io", kind: "CustomResource" };

#[cfg(test)]
mod tests;
