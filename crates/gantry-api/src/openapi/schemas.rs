//! `components.schemas` of one document: the typed schemas of `k8s-openapi`, rewritten to OpenAPI 3.0 and
//! annotated the way kube-apiserver annotates them.
//!
//! `k8s-openapi` describes every type with `schemars` under the name kube-apiserver uses
//! (`io.k8s.api.apps.v1.Deployment`), so the generator only has to be pointed at `#/components/schemas`.
//! What `k8s-openapi` does not carry is added here: `x-kubernetes-group-version-kind` on kinds, the list
//! and patch markers of the Kubernetes API types ([`super::markers`]), the list kinds themselves, and the
//! int-or-string and preserve-unknown-fields forms kube-apiserver serves.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use k8s_openapi::api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use super::markers;

/// The prefix of every reference inside a document.
pub(super) const REF_PREFIX: &str = "#/components/schemas/";

/// Keywords of JSON Schema 2019-09/2020-12 (or of no OpenAPI 3.0 dialect at all) that a schema must not
/// carry. Clients parse documents with OpenAPI 3.0 parsers that reject or misread them.
pub(super) const FORBIDDEN_KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "$defs",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$comment",
    "$vocabulary",
    "definitions",
    "const",
    "examples",
    "prefixItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "dependentRequired",
    "dependentSchemas",
    "contentMediaType",
    "contentEncoding",
    "if",
    "then",
    "else",
];

/// A group, version and kind, as written in `x-kubernetes-group-version-kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Gvk<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
}

impl Gvk<'_> {
    pub(super) fn to_value(self) -> Value {
        json!({"group": self.group, "version": self.version, "kind": self.kind})
    }
}

/// Registers the typed schema of a built-in kind and returns its component name, or `None` for a kind
/// `k8s-openapi` does not describe.
macro_rules! typed_kinds {
    ($( ($group:literal, $version:literal, $kind:literal) => $ty:ty, )*) => {
        fn register_typed_kind(generator: &mut SchemaGenerator, gvk: Gvk<'_>) -> Option<String> {
            match (gvk.group, gvk.version, gvk.kind) {
                $( ($group, $version, $kind) => Some(register::<$ty>(generator)), )*
                _ => None,
            }
        }

        #[cfg(test)]
        pub(super) const TYPED_KINDS: &[(&str, &str, &str)] = &[$( ($group, $version, $kind), )*];
    };
}

typed_kinds! {
    ("", "v1", "Pod") => api::core::v1::Pod,
    ("", "v1", "Service") => api::core::v1::Service,
    ("", "v1", "Endpoints") => api::core::v1::Endpoints,
    ("", "v1", "ConfigMap") => api::core::v1::ConfigMap,
    ("", "v1", "Secret") => api::core::v1::Secret,
    ("", "v1", "Namespace") => api::core::v1::Namespace,
    ("", "v1", "Node") => api::core::v1::Node,
    ("", "v1", "Event") => api::core::v1::Event,
    ("", "v1", "ServiceAccount") => api::core::v1::ServiceAccount,
    ("", "v1", "PersistentVolume") => api::core::v1::PersistentVolume,
    ("", "v1", "PersistentVolumeClaim") => api::core::v1::PersistentVolumeClaim,
    ("", "v1", "ResourceQuota") => api::core::v1::ResourceQuota,
    ("", "v1", "LimitRange") => api::core::v1::LimitRange,
    ("", "v1", "Binding") => api::core::v1::Binding,
    ("", "v1", "ReplicationController") => api::core::v1::ReplicationController,
    ("", "v1", "PodTemplate") => api::core::v1::PodTemplate,
    ("apps", "v1", "Deployment") => api::apps::v1::Deployment,
    ("apps", "v1", "ReplicaSet") => api::apps::v1::ReplicaSet,
    ("apps", "v1", "StatefulSet") => api::apps::v1::StatefulSet,
    ("apps", "v1", "DaemonSet") => api::apps::v1::DaemonSet,
    ("apps", "v1", "ControllerRevision") => api::apps::v1::ControllerRevision,
    ("batch", "v1", "Job") => api::batch::v1::Job,
    ("batch", "v1", "CronJob") => api::batch::v1::CronJob,
    ("autoscaling", "v1", "Scale") => api::autoscaling::v1::Scale,
    ("autoscaling", "v1", "HorizontalPodAutoscaler") => api::autoscaling::v1::HorizontalPodAutoscaler,
    ("autoscaling", "v2", "HorizontalPodAutoscaler") => api::autoscaling::v2::HorizontalPodAutoscaler,
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") =>
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    ("coordination.k8s.io", "v1", "Lease") => api::coordination::v1::Lease,
    ("discovery.k8s.io", "v1", "EndpointSlice") => api::discovery::v1::EndpointSlice,
    ("events.k8s.io", "v1", "Event") => api::events::v1::Event,
    ("policy", "v1", "PodDisruptionBudget") => api::policy::v1::PodDisruptionBudget,
    ("policy", "v1", "Eviction") => api::policy::v1::Eviction,
    ("rbac.authorization.k8s.io", "v1", "Role") => api::rbac::v1::Role,
    ("rbac.authorization.k8s.io", "v1", "RoleBinding") => api::rbac::v1::RoleBinding,
    ("rbac.authorization.k8s.io", "v1", "ClusterRole") => api::rbac::v1::ClusterRole,
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => api::rbac::v1::ClusterRoleBinding,
    ("networking.k8s.io", "v1", "Ingress") => api::networking::v1::Ingress,
    ("networking.k8s.io", "v1", "IngressClass") => api::networking::v1::IngressClass,
    ("networking.k8s.io", "v1", "NetworkPolicy") => api::networking::v1::NetworkPolicy,
    ("storage.k8s.io", "v1", "StorageClass") => api::storage::v1::StorageClass,
    ("scheduling.k8s.io", "v1", "PriorityClass") => api::scheduling::v1::PriorityClass,
}

fn register<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The meta types an operation may reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MetaType {
    DeleteOptions,
    Status,
    Patch,
    ApiResourceList,
    ApiGroup,
    ApiGroupList,
    ApiVersions,
    VersionInfo,
}

/// The schemas of one document, collected while its paths are built.
pub(super) struct Components {
    generator: SchemaGenerator,
    /// Schemas built here rather than by `schemars` (list kinds, kinds without a typed schema).
    built: BTreeMap<String, Value>,
    /// `x-kubernetes-group-version-kind` to set on each named schema.
    kinds: BTreeMap<String, Vec<Value>>,
    /// Every group-version served, for the meta kinds that are registered in each of them.
    served: Vec<(String, String)>,
}

impl Components {
    /// `served` lists every served `(group, version)`, which kube-apiserver names in the
    /// `x-kubernetes-group-version-kind` of `DeleteOptions`.
    pub(super) fn new(served: Vec<(String, String)>) -> Components {
        let generator = SchemaSettings::openapi3().with(|s| s.meta_schema = None).into_generator();
        Components { generator, built: BTreeMap::new(), kinds: BTreeMap::new(), served }
    }

    /// The schema of a kind (typed when `k8s-openapi` knows it, an open object otherwise), with its GVK.
    pub(super) fn kind(&mut self, gvk: Gvk<'_>) -> String {
        let name = match register_typed_kind(&mut self.generator, gvk) {
            Some(name) => name,
            None => {
                let name = untyped_name(gvk);
                let description = format!("{} is served without a published schema; any fields are kept.", gvk.kind);
                self.built.entry(name.clone()).or_insert_with(|| {
                    json!({
                        "description": description,
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                    })
                });
                name
            }
        };
        self.set_gvk(&name, gvk);
        name
    }

    /// Registers the schema of a custom resource kind under the name kube-apiserver gives it
    /// (`com.example.stable.v1.CronTab`), with its GVK, and returns that name. Later [`Self::kind`] and
    /// [`Self::list`] calls for the same GVK use it.
    pub(super) fn custom_kind(&mut self, gvk: Gvk<'_>, schema: Value) -> String {
        let name = untyped_name(gvk);
        self.built.insert(name.clone(), schema);
        self.set_gvk(&name, gvk);
        name
    }

    /// The `ObjectMeta` schema, which custom resource schemas reference.
    pub(super) fn object_meta(&mut self) -> String {
        register::<meta::ObjectMeta>(&mut self.generator)
    }

    /// The schema of `<Kind>List`, built around the kind's schema the way every list kind is shaped.
    pub(super) fn list(&mut self, gvk: Gvk<'_>) -> String {
        let item = self.kind(gvk);
        let list_meta = register::<meta::ListMeta>(&mut self.generator);
        let name = format!("{item}List");
        let list_kind = format!("{}List", gvk.kind);
        self.built.entry(name.clone()).or_insert_with(|| {
            json!({
                "description": format!("{list_kind} is a list of {} objects.", gvk.kind),
                "type": "object",
                "properties": {
                    "apiVersion": {
                        "description": API_VERSION_DESCRIPTION,
                        "type": "string",
                    },
                    "items": {
                        "description": format!("The list of {} objects.", gvk.kind),
                        "type": "array",
                        "items": {"$ref": format!("{REF_PREFIX}{item}")},
                    },
                    "kind": {
                        "description": KIND_DESCRIPTION,
                        "type": "string",
                    },
                    "metadata": {
                        "allOf": [{"$ref": format!("{REF_PREFIX}{list_meta}")}],
                        "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                    },
                },
                "required": ["items"],
            })
        });
        self.set_gvk(&name, Gvk { kind: &list_kind, ..gvk });
        name
    }

    /// A meta type's schema.
    pub(super) fn meta(&mut self, which: MetaType) -> String {
        let generator = &mut self.generator;
        let (name, gvk) = match which {
            MetaType::DeleteOptions => (register::<meta::DeleteOptions>(generator), None),
            MetaType::Status => (register::<meta::Status>(generator), Some(("", "v1", "Status"))),
            MetaType::Patch => (register::<meta::Patch>(generator), None),
            MetaType::ApiResourceList => {
                (register::<meta::APIResourceList>(generator), Some(("", "v1", "APIResourceList")))
            }
            MetaType::ApiGroup => (register::<meta::APIGroup>(generator), Some(("", "v1", "APIGroup"))),
            MetaType::ApiGroupList => (register::<meta::APIGroupList>(generator), Some(("", "v1", "APIGroupList"))),
            MetaType::ApiVersions => (register::<meta::APIVersions>(generator), Some(("", "v1", "APIVersions"))),
            MetaType::VersionInfo => (register::<k8s_openapi::apimachinery::pkg::version::Info>(generator), None),
        };
        if let Some((group, version, kind)) = gvk {
            self.set_gvk(&name, Gvk { group, version, kind });
        }
        if which == MetaType::DeleteOptions {
            let served = std::mem::take(&mut self.served);
            for (group, version) in &served {
                self.set_gvk(&name, Gvk { group, version, kind: "DeleteOptions" });
            }
            self.served = served;
        }
        name
    }

    fn set_gvk(&mut self, name: &str, gvk: Gvk<'_>) {
        let entry = self.kinds.entry(name.to_string()).or_default();
        let value = gvk.to_value();
        if !entry.contains(&value) {
            entry.push(value);
        }
    }

    /// Every schema referenced so far, rewritten to OpenAPI 3.0 and annotated.
    pub(super) fn finish(mut self) -> Map<String, Value> {
        let mut schemas = self.generator.take_definitions(true);
        schemas.extend(self.built);
        for (name, schema) in schemas.iter_mut() {
            to_openapi3(schema);
            annotate_special(name, schema);
            markers::apply(name, schema);
            if let (Some(kinds), Some(object)) = (self.kinds.get(name), schema.as_object_mut()) {
                object.insert("x-kubernetes-group-version-kind".into(), Value::Array(kinds.clone()));
            }
        }
        schemas
    }
}

pub(super) const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
pub(super) const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// How kube-apiserver names the schema of a kind that has no Go type behind it (a custom resource): the
/// group's labels reversed, then version and kind (`com.example.stable.v1.CronTab`).
fn untyped_name(gvk: Gvk<'_>) -> String {
    let mut labels: Vec<&str> = gvk.group.split('.').filter(|l| !l.is_empty()).collect();
    if labels.is_empty() {
        labels.push("core");
    }
    labels.reverse();
    format!("{}.{}.{}", labels.join("."), gvk.version, gvk.kind)
}

/// Rewrites what `schemars` may still leave in the JSON Schema dialect into OpenAPI 3.0: references into
/// `#/components/schemas`, `"type": [T, "null"]` into `nullable`, and no 2019-09/2020-12 keywords.
///
/// The walk follows only the places a subschema can stand, so that a property *named* like a keyword
/// (`if`, `const`) is left alone.
pub(super) fn to_openapi3(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else { return };
    for keyword in FORBIDDEN_KEYWORDS {
        object.remove(*keyword);
    }
    if let Some(Value::String(reference)) = object.get_mut("$ref")
        && let Some(rest) = reference.strip_prefix("#/$defs/").or_else(|| reference.strip_prefix("#/definitions/"))
    {
        *reference = format!("{REF_PREFIX}{rest}");
    }
    if let Some(Value::Array(types)) = object.get("type") {
        let non_null: Vec<Value> = types.iter().filter(|t| t.as_str() != Some("null")).cloned().collect();
        let nullable = non_null.len() < types.len();
        match non_null.as_slice() {
            [single] => {
                let single = single.clone();
                object.insert("type".into(), single);
            }
            _ => {
                object.remove("type");
            }
        }
        if nullable {
            object.insert("nullable".into(), Value::Bool(true));
        }
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        properties.values_mut().for_each(to_openapi3);
    }
    for key in ["additionalProperties", "items", "not"] {
        if let Some(subschema) = object.get_mut(key) {
            to_openapi3(subschema);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subschemas)) = object.get_mut(key) {
            subschemas.iter_mut().for_each(to_openapi3);
        }
    }
}

/// The types kube-apiserver serves in a form `k8s-openapi`'s schemas do not spell out.
fn annotate_special(name: &str, schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else { return };
    match name {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            object.remove("type");
            object.insert("format".into(), json!("int-or-string"));
            object.insert("oneOf".into(), json!([{"type": "integer"}, {"type": "string"}]));
            object.insert("x-kubernetes-int-or-string".into(), json!(true));
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            object.remove("type");
            object.insert("oneOf".into(), json!([{"type": "string"}, {"type": "number"}]));
            object.insert("x-kubernetes-int-or-string".into(), json!(true));
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time" => {
            object.insert("type".into(), json!("string"));
            object.insert("format".into(), json!("date-time"));
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            object.insert("type".into(), json!("string"));
            object.insert("format".into(), json!("date-time"));
        }
        // Embedded objects and field sets hold arbitrary JSON that must survive pruning.
        "io.k8s.apimachinery.pkg.runtime.RawExtension" | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            object.insert("type".into(), json!("object"));
            object.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
        }
        // A JSONSchemaProps field that is a schema or a list of them, a schema or a boolean, a schema or a list of
        // names, or any JSON value (`default`, `enum`, `example`): kube-apiserver publishes them untyped.
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON" => {
            for keyword in ["type", "items", "properties", "additionalProperties", "oneOf", "anyOf", "allOf", "format"]
            {
                object.remove(keyword);
            }
            object.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
        }
        _ => {}
    }
}
