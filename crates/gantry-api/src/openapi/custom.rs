//! The OpenAPI v3 documents of custom resources: for each group of served CRD versions, `apis/<group>` and
//! `apis/<group>/<version>`, shaped like the built-in documents (so `kubectl apply` finds the `patch`
//! operation with the kind's GVK and `fieldValidation`, and `kubectl explain` walks the kind's schema).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::paths::{self, ResourceShape};
use super::schemas::{API_VERSION_DESCRIPTION, Components, Gvk, KIND_DESCRIPTION, REF_PREFIX};
use super::{KUBERNETES_VERSION, OpenApiV3};
use crate::registry::{Registry, Subresource};

const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn served_versions(crd: &Value) -> impl Iterator<Item = &Value> {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
}

/// The component schema kube-apiserver publishes for `version` of `crd`: the version's `openAPIV3Schema`
/// (an open object when it has none) with `apiVersion`, `kind` and `metadata` (a reference to `ObjectMeta`)
/// set, and the same three fields added to every `x-kubernetes-embedded-resource`. `None` when the CRD has
/// no such version.
pub fn custom_resource_schema(crd: &Value, version: &str) -> Option<Value> {
    let v = crate::crd::version(crd, version)?;
    let object_meta = format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
    Some(build_schema(v, &object_meta))
}

fn build_schema(version: &Value, object_meta_ref: &str) -> Value {
    let mut schema = crate::crd::version_schema(version)
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    unfold_embedded(&mut schema);
    if let Some(object) = schema.as_object_mut() {
        object.insert("type".into(), json!("object"));
        let properties = object.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = properties.as_object_mut() {
            props.insert("apiVersion".into(), json!({"description": API_VERSION_DESCRIPTION, "type": "string"}));
            props.insert("kind".into(), json!({"description": KIND_DESCRIPTION, "type": "string"}));
            props.insert(
                "metadata".into(),
                json!({"allOf": [{"$ref": object_meta_ref}], "description": METADATA_DESCRIPTION}),
            );
        }
    }
    schema
}

/// Embedded resources always carry `apiVersion`, `kind` and `metadata`, so their published schema says so.
fn unfold_embedded(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else { return };
    if object.get("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true) {
        let properties = object.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = properties.as_object_mut() {
            props.entry("apiVersion").or_insert_with(|| json!({"type": "string"}));
            props.entry("kind").or_insert_with(|| json!({"type": "string"}));
            props.entry("metadata").or_insert_with(|| json!({"type": "object"}));
        }
    }
    if let Some(Value::Object(props)) = object.get_mut("properties") {
        props.values_mut().for_each(unfold_embedded);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = object.get_mut(key) {
            unfold_embedded(sub);
        }
    }
}

/// Every `(group, version)` some CRD serves, sorted.
fn custom_group_versions(crds: &[Value]) -> BTreeSet<(String, String)> {
    let mut gvs = BTreeSet::new();
    for crd in crds {
        let group = text(crd, "/spec/group");
        for v in served_versions(crd) {
            gvs.insert((group.to_string(), text(v, "/name").to_string()));
        }
    }
    gvs
}

/// The document of one custom group-version (`apis/<group>/<version>`), with the paths and schemas of every
/// CRD in `crds` that serves it; `None` when none does. Pass only CRDs that are `Established`.
pub fn custom_resource_document(crds: &[Value], group: &str, version: &str) -> Option<Value> {
    let mut components = Components::new(vec![(group.to_string(), version.to_string())]);
    let object_meta = format!("{REF_PREFIX}{}", components.object_meta());
    let mut path_map = Map::new();
    let mut any = false;
    for crd in crds.iter().filter(|c| text(c, "/spec/group") == group) {
        let Some(v) = served_versions(crd).find(|v| text(v, "/name") == version) else { continue };
        let kind = text(crd, "/spec/names/kind");
        let plural = text(crd, "/spec/names/plural");
        if kind.is_empty() || plural.is_empty() {
            continue;
        }
        let gvk = Gvk { group, version, kind };
        components.custom_kind(gvk, build_schema(v, &object_meta));
        let mut subresources = Vec::new();
        if v.pointer("/subresources/status").is_some_and(|s| !s.is_null()) {
            subresources.push(Subresource::Status);
        }
        if v.pointer("/subresources/scale").is_some_and(|s| !s.is_null()) {
            subresources.push(Subresource::Scale);
        }
        let shape = ResourceShape {
            group,
            version,
            kind,
            plural,
            namespaced: text(crd, "/spec/scope") == "Namespaced",
            subresources: &subresources,
            custom: true,
        };
        paths::add_resource(&mut path_map, &mut components, shape);
        any = true;
    }
    if !any {
        return None;
    }
    paths::add_resource_list(&mut path_map, &mut components, group, version);
    Some(document(path_map, components))
}

fn document(paths: Map<String, Value>, components: Components) -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": components.finish()},
    })
}

/// Every document the CRDs add to `/openapi/v3`, by path: `apis/<group>` for each group and
/// `apis/<group>/<version>` for each served group-version.
pub fn custom_resource_documents(crds: &[Value]) -> Vec<(String, Value)> {
    let gvs = custom_group_versions(crds);
    let groups: BTreeSet<&str> = gvs.iter().map(|(g, _)| g.as_str()).collect();
    let mut out = Vec::new();
    for group in groups {
        let mut components = Components::new(Vec::new());
        let mut path_map = Map::new();
        paths::add_group(&mut path_map, &mut components, group);
        out.push((format!("apis/{group}"), document(path_map, components)));
    }
    for (group, version) in &gvs {
        if let Some(doc) = custom_resource_document(crds, group, version) {
            out.push((format!("apis/{group}/{version}"), doc));
        }
    }
    out
}

impl OpenApiV3 {
    /// Builds the documents of the built-in resources of `registry` plus those of the CRDs (see
    /// [`custom_resource_documents`]).
    pub fn build_with_custom_resources(registry: &Registry, crds: &[Value]) -> OpenApiV3 {
        OpenApiV3::build(registry).with_documents(custom_resource_documents(crds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crd_kind_itself_has_a_typed_schema_for_explain() {
        let mut components = Components::new(Vec::new());
        let name =
            components.kind(Gvk { group: "apiextensions.k8s.io", version: "v1", kind: "CustomResourceDefinition" });
        assert_eq!(name, "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition");
        let all = components.finish();
        let props = &all["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"]["properties"];
        assert!(props["x-kubernetes-preserve-unknown-fields"].is_object(), "{props}");
        assert_eq!(all[&name]["x-kubernetes-group-version-kind"][0]["kind"], "CustomResourceDefinition");
        // Defaults, enums and examples hold any JSON value, not only objects.
        let json = &all["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON"];
        assert!(json.get("type").is_none(), "{json}");
    }
}
