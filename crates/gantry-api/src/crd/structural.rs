//! The checks kube-apiserver makes on a CRD's `openAPIV3Schema`: that it is *structural* (every specified
//! node has a type, value validations only restrict what the structure already specifies, metadata is only
//! restricted in name and generateName) and that it uses only what CRD schemas may use (no `$ref`, no
//! `uniqueItems`, well-formed list and map extensions, ...).

use serde_json::{Value, json};

use super::schema::{Additional, Node};
use crate::validation::{FieldError, Path};

/// Where in the schema a node sits, which changes what an empty `type` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// The structural-schema errors of `schema` at `path` (`spec.validation.openAPIV3Schema`), sorted by message
/// as kube sorts them.
pub(crate) fn validate_structural(schema: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    invariants(Node(schema), Level::Root, path, &mut errs);
    completeness_value_validation(Node(schema), Some(Node(schema)), path, path, &mut errs);
    errs.sort_by_key(FieldError::message);
    errs
}

fn invariants(s: Node<'_>, lvl: Level, path: &Path, errs: &mut Vec<FieldError>) {
    let ty = s.ty();
    if ty == "array" && s.items().is_none() {
        errs.push(FieldError::required(&path.child("items"), "must be specified"));
    }
    if let Some(items) = s.items() {
        invariants(items, Level::Item, &path.child("items"), errs);
    }
    for (k, prop) in s.sorted_properties() {
        invariants(prop, Level::Field, &path.child("properties").key(k), errs);
    }
    if let Some(additional) = s.additional() {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(&path.child("additionalProperties"), "must not be used at the root"));
        }
        if let Additional::Schema(a) = additional {
            invariants(a, Level::Field, &path.child("additionalProperties"), errs);
        }
    }
    if s.int_or_string() && s.preserve_unknown() {
        errs.push(FieldError::invalid(
            &path.child("x-kubernetes-preserve-unknown-fields"),
            true,
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if s.int_or_string() && s.embedded() {
        errs.push(FieldError::invalid(
            &path.child("x-kubernetes-embedded-resource"),
            true,
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let skip_any_of = is_int_or_string_any_of(s.list("anyOf"));
    let skip_first_all_of_any_of =
        s.list("allOf").first().is_some_and(|first| is_int_or_string_any_of(Node(first).list("anyOf")));
    value_validation(s, skip_any_of, skip_first_all_of_any_of, lvl, path, errs);

    let check_metadata = lvl == Level::Root || s.embedded();
    if s.embedded() && ty != "object" {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        if ty.is_empty() {
            errs.push(FieldError::required(&path.child("type"), detail));
        } else {
            errs.push(FieldError::invalid(&path.child("type"), ty, detail));
        }
    } else if ty.is_empty() && !s.int_or_string() && !s.preserve_unknown() {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(&path.child("type"), detail));
    }
    if s.embedded() && s.additional().is_some() {
        errs.push(FieldError::forbidden(
            &path.child("additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(FieldError::invalid(&path.child("type"), ty, "must be object at the root"));
    }
    if check_metadata {
        for key in ["kind", "apiVersion"] {
            if let Some(p) = s.property(key)
                && p.ty() != "string"
            {
                errs.push(FieldError::invalid(
                    &path.child("properties").key(key).child("type"),
                    p.ty(),
                    "must be string",
                ));
            }
        }
    }
    if let Some(metadata) = s.property("metadata") {
        metadata_invariants(metadata, check_metadata, lvl, &path.child("properties").key("metadata"), errs);
    }
    if s.embedded() && !s.preserve_unknown() && s.properties().is_none_or(|p| p.is_empty()) {
        errs.push(FieldError::required(
            &path.child("properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// At the root, a metadata schema may only restrict `name` and `generateName`; anything else would restrict
/// metadata the server owns.
fn metadata_invariants(s: Node<'_>, check_metadata: bool, lvl: Level, path: &Path, errs: &mut Vec<FieldError>) {
    if check_metadata && s.ty() != "object" {
        errs.push(FieldError::invalid(&path.child("type"), s.ty(), "must be object"));
    }
    if lvl != Level::Root {
        return;
    }
    let Some(object) = s.0.as_object() else { return };
    let only_names = s.properties().is_none_or(|p| p.keys().all(|k| k == "name" || k == "generateName"));
    let other_keys = object.iter().any(|(k, v)| {
        !v.is_null()
            && match k.as_str() {
                "type" | "default" => false,
                "properties" => !only_names,
                _ => !is_zero(v),
            }
    });
    if other_keys {
        errs.push(FieldError::forbidden(
            path,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
}

/// Whether a JSON value is what Go would decode into a zero field.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

fn is_int_or_string_any_of(any_of: &[Value]) -> bool {
    any_of == [json!({"type": "integer"}), json!({"type": "string"})]
}

/// The junctors (`allOf`, `anyOf`, `oneOf`, `not`) and `pattern` of a node.
fn value_validation(
    v: Node<'_>,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    lvl: Level,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, n) in v.list("anyOf").iter().enumerate() {
            nested(Node(n), false, false, lvl, &path.child("anyOf").index(i), errs);
        }
    }
    for (i, n) in v.list("allOf").iter().enumerate() {
        let skip = skip_first_all_of_any_of && i == 0;
        nested(Node(n), skip, false, lvl, &path.child("allOf").index(i), errs);
    }
    for (i, n) in v.list("oneOf").iter().enumerate() {
        nested(Node(n), false, false, lvl, &path.child("oneOf").index(i), errs);
    }
    if let Some(not) = v.get("not").filter(|n| n.is_object()) {
        nested(Node(not), false, false, lvl, &path.child("not"), errs);
    }
    let pattern = v.str("pattern");
    if !pattern.is_empty()
        && let Err(e) = regex::Regex::new(pattern)
    {
        errs.push(FieldError::invalid(
            &path.child("pattern"),
            pattern,
            format!("must be a valid regular expression, but isn't: {}", first_line(&e.to_string())),
        ));
    }
}

fn first_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A schema under a junctor may only validate values, never specify structure.
fn nested(
    v: Node<'_>,
    skip_any_of: bool,
    skip_all_of_any_of: bool,
    lvl: Level,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    value_validation(v, skip_any_of, skip_all_of_any_of, lvl, path, errs);
    if let Some(items) = v.items() {
        nested(items, false, false, lvl, &path.child("items"), errs);
    }
    for (k, prop) in v.sorted_properties() {
        nested(prop, false, false, Level::Field, &path.child("properties").key(k), errs);
    }
    if !v.ty().is_empty() {
        errs.push(FieldError::forbidden(&path.child("type"), "must be empty to be structural"));
    }
    if v.additional().is_some() {
        errs.push(FieldError::forbidden(&path.child("additionalProperties"), "must be undefined to be structural"));
    }
    if v.default_value().is_some() {
        errs.push(FieldError::forbidden(&path.child("default"), "must be undefined to be structural"));
    }
    if !v.str("title").is_empty() {
        errs.push(FieldError::forbidden(&path.child("title"), "must be empty to be structural"));
    }
    if !v.str("description").is_empty() {
        errs.push(FieldError::forbidden(&path.child("description"), "must be empty to be structural"));
    }
    if v.nullable() {
        errs.push(FieldError::forbidden(&path.child("nullable"), "must be false to be structural"));
    }
    if v.get("externalDocs").is_some() {
        errs.push(FieldError::forbidden(&path.child("externalDocs"), "must be undefined to be structural"));
    }
    for key in ["x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string"]
    {
        if v.flag(key) {
            errs.push(FieldError::forbidden(&path.child(key), "must be false to be structural"));
        }
    }
    if !v.list("x-kubernetes-list-map-keys").is_empty() {
        errs.push(FieldError::forbidden(&path.child("x-kubernetes-list-map-keys"), "must be empty to be structural"));
    }
    for key in ["x-kubernetes-list-type", "x-kubernetes-map-type"] {
        if v.get(key).is_some() {
            errs.push(FieldError::forbidden(&path.child(key), "must be undefined to be structural"));
        }
    }
    if !v.list("x-kubernetes-validations").is_empty() {
        errs.push(FieldError::forbidden(&path.child("x-kubernetes-validations"), "must be empty to be structural"));
    }
    if v.property("metadata").is_some() {
        errs.push(FieldError::forbidden(
            &path.child("properties").key("metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// Every field or array a value validation talks about must also be specified by the structure around it.
fn completeness_value_validation(
    v: Node<'_>,
    s: Option<Node<'_>>,
    s_path: &Path,
    v_path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        errs.push(FieldError::required(s_path, format!("because it is defined in {v_path}")));
        return;
    };
    if let Some(not) = v.get("not").filter(|n| n.is_object()) {
        completeness_nested(Node(not), s, s_path, &v_path.child("not"), errs);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, n) in v.list(key).iter().enumerate() {
            completeness_nested(Node(n), s, s_path, &v_path.child(key).index(i), errs);
        }
    }
}

fn completeness_nested(v: Node<'_>, s: Node<'_>, s_path: &Path, v_path: &Path, errs: &mut Vec<FieldError>) {
    completeness_value_validation(v, Some(s), s_path, v_path, errs);
    if let Some(items) = v.items() {
        let s_items = s.items();
        match s_items {
            Some(si) => completeness_nested(items, si, &s_path.child("items"), &v_path.child("items"), errs),
            None => errs.push(FieldError::required(
                &s_path.child("items"),
                format!("because it is defined in {}", v_path.child("items")),
            )),
        }
    }
    for (k, prop) in v.sorted_properties() {
        let vp = v_path.child("properties").key(k);
        match s.property(k) {
            Some(sp) => completeness_nested(prop, sp, &s_path.child("properties").key(k), &vp, errs),
            None => errs.push(FieldError::required(
                &s_path.child("properties").key(k),
                format!("because it is defined in {vp}"),
            )),
        }
    }
}

/// What the schema checks of one subtree may allow, as kube threads it down the walk.
#[derive(Clone, Debug, Default)]
struct Context {
    forbid_defaults: Option<String>,
    inside_resource_meta: bool,
}

const OPENAPI_V3_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// kube's `ValidateCustomResourceDefinitionOpenAPISchema`: what CRD schemas may not use, at every node.
pub(crate) fn validate_openapi_schema(schema: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    openapi_node(Node(schema), path, &Context::default(), true, &mut errs);
    errs
}

fn openapi_node(s: Node<'_>, path: &Path, ctx: &Context, is_root: bool, errs: &mut Vec<FieldError>) {
    standard(s, path, ctx, errs);
    if s.flag("uniqueItems") {
        errs.push(FieldError::forbidden(
            &path.child("uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(additional) = s.additional() {
        let has_props = s.properties().is_some_and(|p| !p.is_empty());
        if has_props && matches!(additional, Additional::Allows(false) | Additional::Schema(_)) {
            errs.push(FieldError::forbidden(
                &path.child("additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let Additional::Schema(a) = additional {
            let mut sub = ctx.clone();
            if ctx.inside_resource_meta {
                sub.forbid_defaults = Some("inside additionalProperties applying to object metadata".to_string());
            }
            openapi_node(a, &path.child("additionalProperties"), &sub, false, errs);
        }
    }
    for (k, prop) in s.sorted_properties() {
        let mut sub = ctx.clone();
        if (is_root || s.embedded()) && matches!(k, "metadata" | "kind" | "apiVersion") {
            sub.inside_resource_meta = true;
            if is_root {
                sub.forbid_defaults = Some(format!("in top-level {k}"));
            }
        }
        openapi_node(prop, &path.child("properties").key(k), &sub, false, errs);
    }
    if let Some(not) = s.get("not").filter(|n| n.is_object()) {
        openapi_node(Node(not), &path.child("not"), ctx, false, errs);
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for (i, n) in s.list(key).iter().enumerate() {
            openapi_node(Node(n), &path.child(key).index(i), ctx, false, errs);
        }
    }
    if let Some(items) = s.items() {
        openapi_node(items, &path.child("items"), ctx, false, errs);
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errs.push(FieldError::invalid(
            &path.child("x-kubernetes-preserve-unknown-fields"),
            false,
            "must be true or undefined",
        ));
    }
    list_and_map_extensions(s, path, errs);
    validation_rules(s, path, errs);
}

/// kube's `specStandardValidatorV3.validate`.
fn standard(s: Node<'_>, path: &Path, ctx: &Context, errs: &mut Vec<FieldError>) {
    let ty = s.ty();
    if !ty.is_empty() && !OPENAPI_V3_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(&path.child("type"), ty, OPENAPI_V3_TYPES));
    }
    if s.default_value().is_some()
        && let Some(reason) = &ctx.forbid_defaults
    {
        errs.push(FieldError::forbidden(&path.child("default"), format!("must not be set {reason}")));
    }
    if !s.str("id").is_empty() {
        errs.push(FieldError::forbidden(&path.child("id"), "id is not supported"));
    }
    for (key, detail) in [
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ] {
        let present = match s.get(key) {
            Some(Value::Object(o)) => key == "additionalItems" || key == "dependencies" || !o.is_empty(),
            Some(_) => true,
            None => false,
        };
        if present {
            errs.push(FieldError::forbidden(&path.child(key), detail));
        }
    }
    if ty == "null" {
        errs.push(FieldError::forbidden(
            &path.child("type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if s.get("items").is_some_and(Value::is_array) {
        errs.push(FieldError::forbidden(&path.child("items"), "items must be a schema object and not an array"));
    }
    if ctx.inside_resource_meta && s.embedded() {
        errs.push(FieldError::forbidden(
            &path.child("x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
}

fn list_and_map_extensions(s: Node<'_>, path: &Path, errs: &mut Vec<FieldError>) {
    let ty = s.ty();
    let map_type = s.get("x-kubernetes-map-type").and_then(Value::as_str);
    if map_type.is_some() && ty != "object" {
        let detail = "must be object if x-kubernetes-map-type is specified";
        if ty.is_empty() {
            errs.push(FieldError::required(&path.child("type"), detail));
        } else {
            errs.push(FieldError::invalid(&path.child("type"), ty, detail));
        }
    }
    if let Some(m) = map_type
        && m != "atomic"
        && m != "granular"
    {
        errs.push(FieldError::not_supported(&path.child("x-kubernetes-map-type"), m, &["atomic", "granular"]));
    }
    let list_type = s.list_type();
    if list_type.is_some() && ty != "array" {
        let detail = "must be array if x-kubernetes-list-type is specified";
        if ty.is_empty() {
            errs.push(FieldError::required(&path.child("type"), detail));
        } else {
            errs.push(FieldError::invalid(&path.child("type"), ty, detail));
        }
    } else if list_type == Some("set")
        && let Some(items) = s.items()
    {
        match items.ty() {
            "array" => {
                if let Some(lt) = items.list_type().filter(|lt| *lt != "atomic") {
                    errs.push(FieldError::invalid(
                        &path.child("items").child("x-kubernetes-list-type"),
                        lt,
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
            }
            "object" if items.get("x-kubernetes-map-type").and_then(Value::as_str) != Some("atomic") => {
                errs.push(FieldError::invalid(
                    &path.child("items").child("x-kubernetes-map-type"),
                    Value::Null,
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                ));
            }
            _ => {}
        }
    }
    if let Some(lt) = list_type
        && !matches!(lt, "atomic" | "set" | "map")
    {
        errs.push(FieldError::not_supported(&path.child("x-kubernetes-list-type"), lt, &["atomic", "set", "map"]));
    }
    let keys = s.strings("x-kubernetes-list-map-keys");
    if !keys.is_empty() {
        match list_type {
            None => errs.push(FieldError::required(
                &path.child("x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some(lt) if lt != "map" => errs.push(FieldError::invalid(
                &path.child("x-kubernetes-list-type"),
                lt,
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            _ => {}
        }
    }
    if list_type == Some("map") {
        if keys.is_empty() {
            errs.push(FieldError::required(
                &path.child("x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match s.items() {
            None => errs.push(FieldError::required(
                &path.child("items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(items) if items.ty() != "object" => errs.push(FieldError::invalid(
                &path.child("items").child("type"),
                items.ty(),
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
            Some(items) => {
                let mut seen = Vec::new();
                for k in &keys {
                    match items.property(k) {
                        Some(p) if matches!(p.ty(), "array" | "object") => errs.push(FieldError::invalid(
                            &path.child("items").child("properties").key(k).child("type"),
                            items.ty(),
                            "must be a scalar type if parent array's x-kubernetes-list-type is map",
                        )),
                        Some(_) => {}
                        None => errs.push(FieldError::invalid(
                            &path.child("x-kubernetes-list-map-keys"),
                            json!(keys),
                            "entries must all be names of item properties",
                        )),
                    }
                    if seen.contains(k) {
                        errs.push(FieldError::invalid(
                            &path.child("x-kubernetes-list-map-keys"),
                            json!(keys),
                            "must not contain duplicate entries",
                        ));
                    }
                    seen.push(*k);
                }
            }
        }
    }
    // Items of sets and maps are identified by value or key, so none of it may be null.
    if let (Some(lt @ ("set" | "map")), Some(items)) = (list_type, s.items()) {
        if items.nullable() {
            errs.push(FieldError::forbidden(
                &path.child("items").child("nullable"),
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required = items.strings("required");
            for k in &keys {
                let Some(p) = items.property(k) else { continue };
                if !required.contains(k) && p.default_value().is_none() {
                    errs.push(FieldError::required(
                        &path.child("items").child("properties").key(k).child("default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if p.nullable() {
                    errs.push(FieldError::forbidden(
                        &path.child("items").child("properties").key(k).child("nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

const VALIDATION_REASONS: &[&str] =
    &["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"];

/// The static checks of `x-kubernetes-validations` entries. The CEL expressions themselves are neither
/// compiled nor evaluated.
fn validation_rules(s: Node<'_>, path: &Path, errs: &mut Vec<FieldError>) {
    for (i, rule) in s.list("x-kubernetes-validations").iter().enumerate() {
        let p = path.child("x-kubernetes-validations").index(i);
        let r = Node(rule);
        let text = r.str("rule");
        let message = r.str("message");
        let trimmed_rule = text.trim();
        let trimmed_msg = message.trim();
        if trimmed_rule.is_empty() {
            errs.push(FieldError::required(&p.child("rule"), "rule is not specified"));
        } else if !message.is_empty() && trimmed_msg.is_empty() {
            errs.push(FieldError::invalid(&p.child("message"), message, "message must be non-empty if specified"));
        } else if has_newlines(trimmed_msg) {
            errs.push(FieldError::invalid(&p.child("message"), message, "message must not contain line breaks"));
        } else if has_newlines(trimmed_rule) && trimmed_msg.is_empty() {
            errs.push(FieldError::required(
                &p.child("message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        let message_expression = r.str("messageExpression");
        if !message_expression.is_empty() && message_expression.trim().is_empty() {
            errs.push(FieldError::required(
                &p.child("messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = r.get("reason").and_then(Value::as_str)
            && !VALIDATION_REASONS.contains(&reason)
        {
            errs.push(FieldError::not_supported(&p.child("reason"), reason, VALIDATION_REASONS));
        }
        let field_path = r.str("fieldPath");
        if !field_path.is_empty() && field_path.trim().is_empty() {
            errs.push(FieldError::invalid(
                &p.child("fieldPath"),
                field_path,
                "fieldPath must be non-empty if specified",
            ));
        }
        if has_newlines(field_path) {
            errs.push(FieldError::invalid(&p.child("fieldPath"), field_path, "fieldPath must not contain line breaks"));
        }
    }
}

fn has_newlines(s: &str) -> bool {
    s.contains(['\n', '\r'])
}
