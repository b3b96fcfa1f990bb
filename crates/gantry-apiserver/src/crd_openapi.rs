//! The `/openapi/v3` document of a custom resource group-version, built from its definitions' schemas.

use gantry_api::registry::CustomResourceType;
use serde_json::{Map, Value, json};

/// The document served at `apis/<group>/<version>` for the custom resources served there; `served` pairs each
/// resource type with its definition's version entry.
pub fn group_version_document(group: &str, version: &str, served: &[(CustomResourceType, Value)]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for (resource, definition) in served {
        let gvk = json!([{"group": group, "version": version, "kind": resource.kind}]);
        let schema_name = format!("{}.{}.{}", reverse_domain(group), version, resource.kind);
        let mut schema = definition["schema"]["openAPIV3Schema"].clone();
        if !schema.is_object() {
            schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        }
        if let Some(map) = schema.as_object_mut() {
            let properties = map.entry("properties").or_insert_with(|| json!({}));
            if let Some(properties) = properties.as_object_mut() {
                properties.insert("apiVersion".into(), json!({"type": "string", "description": API_VERSION_DOC}));
                properties.insert("kind".into(), json!({"type": "string", "description": KIND_DOC}));
                properties.insert("metadata".into(), json!({"type": "object", "description": METADATA_DOC}));
            }
            map.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
        }
        schemas.insert(schema_name, schema);
        let list_kind = format!("{}List", resource.kind);
        schemas.insert(
            format!("{}.{}.{}", reverse_domain(group), version, list_kind),
            json!({"type": "object", "required": ["items"],
                   "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                  "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}.{}.{}", reverse_domain(group), version, resource.kind)}},
                                  "metadata": {"type": "object"}},
                   "x-kubernetes-group-version-kind": [{"group": group, "version": version, "kind": list_kind}]}),
        );
        let base = if resource.namespaced {
            format!("/apis/{group}/{version}/namespaces/{{namespace}}/{}", resource.plural)
        } else {
            format!("/apis/{group}/{version}/{}", resource.plural)
        };
        let patch = json!({
            "x-kubernetes-group-version-kind": gvk[0],
            "x-kubernetes-action": "patch",
            "parameters": [
                {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
            ],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(format!("{base}/{{name}}"), json!({"patch": patch}));
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// `example.com` → `com.example`, as kube-apiserver names custom resource schemas.
fn reverse_domain(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object.";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents.";
const METADATA_DOC: &str = "Standard object's metadata.";
