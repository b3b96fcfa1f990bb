//! Read-only views of an OpenAPI v3 schema node (`JSONSchemaProps` as JSON) and of the parts of a CRD that
//! say which schema, subresources and columns apply to a version.
//!
//! Schemas are read as JSON rather than through `k8s_openapi`'s `JSONSchemaProps` because the typed struct
//! cannot tell `additionalProperties: false` from an absent field in every position and drops unknown keys
//! that kube still reports on.

use serde_json::{Map, Value};

/// One schema node. Every accessor treats a missing or mistyped keyword as absent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node<'a>(pub &'a Value);

/// The `additionalProperties` keyword: a boolean or a schema.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Additional<'a> {
    Allows(bool),
    Schema(Node<'a>),
}

impl<'a> Node<'a> {
    pub(crate) fn get(self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn str(self, key: &str) -> &'a str {
        self.get(key).and_then(Value::as_str).unwrap_or("")
    }

    pub(crate) fn flag(self, key: &str) -> bool {
        self.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    /// `type`, empty when unset.
    pub(crate) fn ty(self) -> &'a str {
        self.str("type")
    }

    pub(crate) fn nullable(self) -> bool {
        self.flag("nullable")
    }

    pub(crate) fn preserve_unknown(self) -> bool {
        self.flag("x-kubernetes-preserve-unknown-fields")
    }

    pub(crate) fn int_or_string(self) -> bool {
        self.flag("x-kubernetes-int-or-string")
    }

    pub(crate) fn embedded(self) -> bool {
        self.flag("x-kubernetes-embedded-resource")
    }

    /// The `default` value; a JSON `null` default counts as none, as kube decodes it.
    pub(crate) fn default_value(self) -> Option<&'a Value> {
        self.get("default")
    }

    pub(crate) fn properties(self) -> Option<&'a Map<String, Value>> {
        self.get("properties").and_then(Value::as_object)
    }

    /// The properties sorted by name, so that walks report in a stable order.
    pub(crate) fn sorted_properties(self) -> Vec<(&'a str, Node<'a>)> {
        let mut props: Vec<(&str, Node<'_>)> =
            self.properties().into_iter().flatten().map(|(k, v)| (k.as_str(), Node(v))).collect();
        props.sort_by(|a, b| a.0.cmp(b.0));
        props
    }

    pub(crate) fn property(self, name: &str) -> Option<Node<'a>> {
        self.properties().and_then(|p| p.get(name)).map(Node)
    }

    /// `items` when it is a single schema.
    pub(crate) fn items(self) -> Option<Node<'a>> {
        self.get("items").filter(|v| v.is_object()).map(Node)
    }

    pub(crate) fn additional(self) -> Option<Additional<'a>> {
        match self.get("additionalProperties")? {
            Value::Bool(b) => Some(Additional::Allows(*b)),
            v @ Value::Object(_) => Some(Additional::Schema(Node(v))),
            _ => None,
        }
    }

    /// The schema of `additionalProperties`, when it is one.
    pub(crate) fn additional_schema(self) -> Option<Node<'a>> {
        match self.additional()? {
            Additional::Schema(n) => Some(n),
            Additional::Allows(_) => None,
        }
    }

    /// The schemas of a junctor (`allOf`, `anyOf`, `oneOf`).
    pub(crate) fn list(self, key: &str) -> &'a [Value] {
        self.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }

    pub(crate) fn strings(self, key: &str) -> Vec<&'a str> {
        self.list(key).iter().filter_map(Value::as_str).collect()
    }

    pub(crate) fn f64(self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    pub(crate) fn i64(self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }

    /// `x-kubernetes-list-type`, if set.
    pub(crate) fn list_type(self) -> Option<&'a str> {
        self.get("x-kubernetes-list-type").and_then(Value::as_str)
    }
}

/// The versions of a CRD's `spec.versions`.
pub(crate) fn versions(crd: &Value) -> &[Value] {
    crd.pointer("/spec/versions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// One entry of `spec.versions` by name.
pub fn version<'a>(crd: &'a Value, name: &str) -> Option<&'a Value> {
    versions(crd).iter().find(|v| v.get("name").and_then(Value::as_str) == Some(name))
}

/// The `openAPIV3Schema` of a version entry.
pub fn version_schema(version: &Value) -> Option<&Value> {
    version.pointer("/schema/openAPIV3Schema").filter(|v| v.is_object())
}
