//! Admission of written objects: unknown fields found from the OpenAPI schemas (and dropped, as kube-apiserver
//! drops fields its types do not have), then defaulting and validation of the built-in kinds.

use std::collections::HashMap;

use gantry_api::registry::ResourceType;
use serde_json::{Map, Value};

use crate::status::{ApiError, Cause};

/// The schemas of every served kind, indexed for walking objects.
pub struct Schemas {
    schemas: HashMap<String, Value>,
    by_kind: HashMap<(String, String, String), String>,
}

impl Schemas {
    /// Collects the component schemas of every OpenAPI document.
    pub fn from_openapi(openapi: &gantry_api::openapi::OpenApiV3) -> Schemas {
        let mut schemas = HashMap::new();
        let mut by_kind = HashMap::new();
        for doc in openapi.documents() {
            let Ok(parsed) = serde_json::from_slice::<Value>(doc.bytes()) else { continue };
            let Some(components) = parsed["components"]["schemas"].as_object() else { continue };
            for (name, schema) in components {
                if let Some(gvks) = schema["x-kubernetes-group-version-kind"].as_array() {
                    for gvk in gvks {
                        let key = (
                            gvk["group"].as_str().unwrap_or_default().to_string(),
                            gvk["version"].as_str().unwrap_or_default().to_string(),
                            gvk["kind"].as_str().unwrap_or_default().to_string(),
                        );
                        by_kind.entry(key).or_insert_with(|| name.clone());
                    }
                }
                schemas.entry(name.clone()).or_insert_with(|| schema.clone());
            }
        }
        Schemas { schemas, by_kind }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut current = schema;
        for _ in 0..8 {
            let reference = current["$ref"]
                .as_str()
                .or_else(|| current["allOf"].as_array().and_then(|a| a.first()).and_then(|s| s["$ref"].as_str()));
            match reference.and_then(|r| r.strip_prefix("#/components/schemas/")).and_then(|n| self.schemas.get(n)) {
                Some(next) => current = next,
                None => break,
            }
        }
        current
    }

    /// Removes fields the kind's schema does not have; returns them as paths (`spec.foo`,
    /// `spec.containers[0].bar`). Kinds without a schema keep everything.
    pub fn prune(&self, resource: &ResourceType, mut obj: Value) -> (Value, Vec<String>) {
        let key = (resource.group.to_string(), resource.version.to_string(), resource.kind.to_string());
        let Some(schema) = self.by_kind.get(&key).and_then(|n| self.schemas.get(n)) else { return (obj, Vec::new()) };
        let mut unknown = Vec::new();
        self.walk(schema, &mut obj, &mut String::new(), &mut unknown);
        (obj, unknown)
    }

    /// Removes fields a custom resource's schema does not have. The root's `apiVersion`, `kind` and
    /// `metadata` are always kept (metadata is checked by its own rules).
    pub fn prune_custom(&self, schema: &Value, mut obj: Value) -> (Value, Vec<String>) {
        let mut unknown = Vec::new();
        if schema["x-kubernetes-preserve-unknown-fields"] == true {
            return (obj, unknown);
        }
        let Some(map) = obj.as_object_mut() else { return (obj, unknown) };
        let properties = schema["properties"].as_object().cloned().unwrap_or_default();
        let mut drop = Vec::new();
        for (k, v) in map.iter_mut() {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            let mut path = k.clone();
            match properties.get(k) {
                Some(prop) => self.walk(prop, v, &mut path, &mut unknown),
                None => {
                    unknown.push(path);
                    drop.push(k.clone());
                }
            }
        }
        for k in drop {
            map.remove(&k);
        }
        (obj, unknown)
    }

    fn walk(&self, schema: &Value, value: &mut Value, path: &mut String, unknown: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if schema["x-kubernetes-preserve-unknown-fields"] == true {
            return;
        }
        match value {
            Value::Object(map) => {
                if let Some(properties) = schema["properties"].as_object() {
                    self.walk_properties(properties, map, path, unknown);
                } else if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                    for (k, v) in map.iter_mut() {
                        let len = path.len();
                        push_field(path, k);
                        self.walk(additional, v, path, unknown);
                        path.truncate(len);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        let len = path.len();
                        path.push_str(&format!("[{i}]"));
                        self.walk(item_schema, item, path, unknown);
                        path.truncate(len);
                    }
                }
            }
            _ => {}
        }
    }

    fn walk_properties(
        &self,
        properties: &Map<String, Value>,
        map: &mut Map<String, Value>,
        path: &mut String,
        unknown: &mut Vec<String>,
    ) {
        let mut drop = Vec::new();
        for (k, v) in map.iter_mut() {
            let len = path.len();
            push_field(path, k);
            match properties.get(k) {
                Some(prop) => self.walk(prop, v, path, unknown),
                None => {
                    unknown.push(path.clone());
                    drop.push(k.clone());
                }
            }
            path.truncate(len);
        }
        for k in drop {
            map.remove(&k);
        }
    }
}

fn push_field(path: &mut String, field: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(field);
}

fn to_error(
    resource: &ResourceType,
    obj: &Value,
    errors: Vec<gantry_api::validation::FieldError>,
) -> Result<(), ApiError> {
    if errors.is_empty() {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let summary = gantry_api::validation::invalid_message(resource.group_kind(), name, &errors);
    let causes = errors
        .iter()
        .map(|e| Cause { reason: e.kind.reason().to_string(), message: e.body(), field: e.field.clone() })
        .collect();
    Err(ApiError::invalid(resource, name, summary, causes))
}

/// Defaults and validates a new object (name, namespace and uid already set); a 422 when invalid.
pub fn admit_create(resource: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let gk = resource.group_kind();
    gantry_api::defaults::apply_defaults(gk, obj);
    if gk.group == "batch" && gk.kind == "Job" {
        gantry_api::defaults::generate_job_selector(obj);
    }
    to_error(resource, obj, gantry_api::validation::validate_create(gk, obj))
}

/// Defaults and validates a changed object against its previous state; a 422 when invalid.
pub fn admit_update(resource: &ResourceType, obj: &mut Value, old: &Value) -> Result<(), ApiError> {
    let gk = resource.group_kind();
    gantry_api::defaults::apply_defaults(gk, obj);
    to_error(resource, obj, gantry_api::validation::validate_update(gk, obj, old))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::registry::Registry;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_at_any_depth_and_dropped() {
        let registry = Registry::built_in();
        let schemas = Schemas::from_openapi(&gantry_api::openapi::OpenApiV3::build(&registry));
        let deploy = registry.by_plural("apps", "v1", "deployments").unwrap();
        let obj = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"a":"b"}},
            "spec":{"replicas":1,"bogus":true,"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":
            {"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i","imagePullPolicy":"Always",
            "nonsense":1}]}}}});
        let (pruned, unknown) = schemas.prune(deploy, obj);
        assert_eq!(unknown, vec!["spec.bogus", "spec.template.spec.containers[0].nonsense"]);
        assert!(pruned["spec"].get("bogus").is_none());
        assert_eq!(pruned["metadata"]["labels"]["a"], "b");
        assert_eq!(pruned["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "Always");
    }
}
