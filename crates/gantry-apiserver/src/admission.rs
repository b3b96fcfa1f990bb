//! Admission of written objects: unknown fields found from the OpenAPI schemas (and dropped, as kube-apiserver
//! drops fields its types do not have), then defaulting and validation of the built-in kinds.

use std::collections::HashMap;

use gantry_api::registry::ResourceType;
use gantry_api::validation::{FieldError, Path};
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

impl Schemas {
    /// Checks that every value has the JSON type the kind's schema gives it (a boolean where a string is due is an
    /// error), as kube-apiserver, which cannot decode such an object into its type, never stores it. A stored
    /// object of the wrong shape would also stop every typed client that lists the kind (controllers, kubectl).
    /// `null` passes anywhere (it decodes to the zero value); kinds without a schema pass.
    pub fn check_types(&self, resource: &ResourceType, obj: &Value) -> Result<(), ApiError> {
        let key = (resource.group.to_string(), resource.version.to_string(), resource.kind.to_string());
        let Some(schema) = self.by_kind.get(&key).and_then(|n| self.schemas.get(n)) else { return Ok(()) };
        let mut errors = Vec::new();
        self.check_value(schema, obj, &Path::root(""), &mut errors);
        to_error(resource, obj, errors)
    }

    fn check_value(&self, schema: &Value, value: &Value, path: &Path, errors: &mut Vec<FieldError>) {
        let schema = self.resolve(schema);
        if value.is_null() {
            return;
        }
        // A type, or a choice of types (int-or-string: integer or string; a quantity: string or number).
        let allowed: Vec<&str> = match schema["type"].as_str() {
            Some(type_) => vec![type_],
            None => schema["oneOf"].as_array().into_iter().flatten().filter_map(|s| s["type"].as_str()).collect(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|type_| has_type(value, type_)) {
            let shown = if path.to_string().is_empty() { Path::whole_object() } else { path.clone() };
            let detail = format!("{shown} in body must be of type {}", allowed.join(" or "));
            errors.push(FieldError::type_invalid(&shown, json_type(value), detail));
            return;
        }
        if schema["x-kubernetes-preserve-unknown-fields"] == true {
            return;
        }
        match value {
            Value::Object(map) => {
                if let Some(properties) = schema["properties"].as_object() {
                    for (k, v) in map {
                        if let Some(property) = properties.get(k) {
                            self.check_value(property, v, &path.child(k), errors);
                        }
                    }
                } else if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                    for (k, v) in map {
                        self.check_value(additional, v, &path.key(k), errors);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check_value(item_schema, item, &path.index(i), errors);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether `value` is of the OpenAPI `type_`; an integer is a number without a fractional part, as Go's decoder
/// wants it.
fn has_type(value: &Value, type_: &str) -> bool {
    match type_ {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
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

/// Whether `resource` is CustomResourceDefinitions.
fn is_definition(resource: &ResourceType) -> bool {
    resource.group == "apiextensions.k8s.io" && resource.kind == "CustomResourceDefinition"
}

/// Validates a custom resource about to be stored against its definition (`crd`, the whole object) and the
/// served `version`; `old` on update. Pruning and defaulting happened when the body was decoded.
pub fn admit_custom(
    resource: &ResourceType,
    crd: &Value,
    version: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let errors = match old {
        None => gantry_api::crd::validate_custom_resource(crd, version, obj),
        Some(old) => gantry_api::crd::validate_custom_resource_update(crd, version, obj, old),
    };
    to_error(resource, obj, errors)
}

/// Defaults and validates a new object (name, namespace and uid already set); a 422 when invalid.
pub fn admit_create(resource: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    if is_definition(resource) {
        gantry_api::crd::default_crd(obj);
        let mut errors = gantry_api::validation::validate_create(resource.group_kind(), obj);
        errors.extend(gantry_api::crd::validate_crd(obj));
        return to_error(resource, obj, errors);
    }
    let gk = resource.group_kind();
    gantry_api::defaults::apply_defaults(gk, obj);
    if gk.group == "batch" && gk.kind == "Job" {
        gantry_api::defaults::generate_job_selector(obj);
    }
    to_error(resource, obj, gantry_api::validation::validate_create(gk, obj))
}

/// Defaults and validates a changed object against its previous state; a 422 when invalid.
pub fn admit_update(resource: &ResourceType, obj: &mut Value, old: &Value) -> Result<(), ApiError> {
    if is_definition(resource) {
        gantry_api::crd::default_crd(obj);
        let mut errors = gantry_api::validation::validate_update(resource.group_kind(), obj, old);
        errors.extend(gantry_api::crd::validate_crd_update(obj, old));
        return to_error(resource, obj, errors);
    }
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

    fn schemas_and_registry() -> (Schemas, Registry) {
        let registry = Registry::built_in();
        (Schemas::from_openapi(&gantry_api::openapi::OpenApiV3::build(&registry)), registry)
    }

    fn deployment_with_container(container: Value) -> Value {
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"a":"b"}},
            "spec":{"replicas":1,"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},
            "spec":{"containers":[container]}}}})
    }

    #[test]
    fn a_value_of_the_wrong_type_at_any_depth_is_invalid_and_named_by_its_path() {
        let (schemas, registry) = schemas_and_registry();
        let deploy = registry.by_plural("apps", "v1", "deployments").unwrap();
        let obj = deployment_with_container(json!({"name":"c","image":"i","command":[false, "-c"],"stdin":"yes"}));
        let err = schemas.check_types(deploy, &obj).unwrap_err();
        let status = err;
        assert_eq!((status.code, status.reason), (422, "Invalid"), "{status:?}");
        let containers = "spec.template.spec.containers[0]";
        assert_eq!(
            status.message,
            format!(
                "Deployment.apps \"web\" is invalid: [{containers}.command[0]: Invalid value: \"boolean\": \
                 {containers}.command[0] in body must be of type string, {containers}.stdin: Invalid value: \
                 \"string\": {containers}.stdin in body must be of type boolean]"
            )
        );
        let labels = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"version":1}}});
        let configmaps = registry.by_plural("", "v1", "configmaps").unwrap();
        let err = schemas.check_types(configmaps, &labels).unwrap_err();
        assert!(err.message.ends_with("metadata.labels[version] in body must be of type string"), "{err:?}");
        let replicas = deployment_with_container(json!({"name":"c","image":"i"}));
        let mut fractional = replicas.clone();
        fractional["spec"]["replicas"] = json!(1.5);
        let err = schemas.check_types(deploy, &fractional).unwrap_err();
        assert!(err.message.ends_with("spec.replicas in body must be of type integer"), "{err:?}");
    }

    #[test]
    fn int_or_string_quantities_free_form_fields_and_null_accept_what_kube_decodes() {
        let (schemas, registry) = schemas_and_registry();
        let deploy = registry.by_plural("apps", "v1", "deployments").unwrap();
        let container = json!({"name":"c","image":"i","command":null,
            "ports":[{"containerPort":80,"name":"http"}],
            "readinessProbe":{"httpGet":{"path":"/","port":"http"}},
            "livenessProbe":{"httpGet":{"path":"/","port":80}},
            "resources":{"limits":{"cpu":1,"memory":"64Mi"},"requests":{"cpu":"100m"}}});
        let mut obj = deployment_with_container(container);
        obj["spec"]["strategy"] = json!({"rollingUpdate":{"maxSurge":"25%","maxUnavailable":0}});
        obj["metadata"]["managedFields"] = json!([{"manager":"m","operation":"Update","fieldsV1":{"f:spec":{}}}]);
        schemas.check_types(deploy, &obj).unwrap();
        obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = json!(true);
        let err = schemas.check_types(deploy, &obj).unwrap_err();
        assert!(err.message.ends_with("in body must be of type integer or string"), "{err:?}");
    }
}
