use std::collections::BTreeSet;
use std::sync::OnceLock;

use super::*;
use crate::registry::Subresource;

/// Built once: every test reads the same documents, as the server would.
fn built() -> &'static OpenApiV3 {
    static BUILT: OnceLock<OpenApiV3> = OnceLock::new();
    BUILT.get_or_init(|| OpenApiV3::build(&Registry::built_in()))
}

fn parsed(path: &str) -> Value {
    let document = built().document(path).unwrap_or_else(|| panic!("no document at {path}"));
    serde_json::from_slice(document.bytes()).expect("documents are JSON")
}

fn schemas(doc: &Value) -> &Map<String, Value> {
    doc["components"]["schemas"].as_object().expect("components.schemas is an object")
}

/// Follows `$ref`, or an `allOf` holding a single `$ref`, to the named schema, as `kubectl explain` does.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let reference = schema
        .get("$ref")
        .or_else(|| schema.get("allOf").and_then(|a| a.get(0)).and_then(|s| s.get("$ref")))
        .and_then(Value::as_str);
    match reference {
        Some(r) => {
            let name = r.strip_prefix(schemas::REF_PREFIX).expect("references point into components.schemas");
            &schemas(doc)[name]
        }
        None => schema,
    }
}

/// Every schema reachable from `schema`, each once, walking only where subschemas stand.
fn walk_schema<'a>(schema: &'a Value, visit: &mut dyn FnMut(&'a Map<String, Value>)) {
    let Some(object) = schema.as_object() else { return };
    visit(object);
    if let Some(Value::Object(properties)) = object.get("properties") {
        properties.values().for_each(|p| walk_schema(p, visit));
    }
    for key in ["additionalProperties", "items", "not"] {
        if let Some(sub) = object.get(key) {
            walk_schema(sub, visit);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = object.get(key) {
            subs.iter().for_each(|s| walk_schema(s, visit));
        }
    }
}

/// Every string value of a `$ref` key anywhere in a JSON value.
fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                // JSONSchemaProps (in CustomResourceDefinition) has a property named `$ref`: an object.
                if key == "$ref" && !v.is_object() {
                    out.push(v.as_str().expect("$ref is a string"));
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// What kubectl's query-parameter verifier does: the first `patch` operation carrying `gvk` decides.
fn patch_operations_for<'a>(doc: &'a Value, gvk: &Value) -> Vec<&'a Value> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .filter_map(|item| item.get("patch"))
        .filter(|op| op.get("x-kubernetes-group-version-kind") == Some(gvk))
        .collect()
}

fn has_query_param(op: &Value, name: &str) -> bool {
    op["parameters"].as_array().is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "query"))
}

#[test]
fn every_served_group_version_has_a_document() {
    let registry = Registry::built_in();
    for group in registry.groups() {
        for version in &group.versions {
            let document = built().group_version(group.name, version);
            let document = document.unwrap_or_else(|| panic!("no document for {}/{version}", group.name));
            let doc: Value = serde_json::from_slice(document.bytes()).expect("JSON");
            assert_eq!(doc["openapi"], "3.0.0");
            assert_eq!(doc["info"], json!({"title": "Kubernetes", "version": "v1.35.0"}));
            for r in registry.in_group_version(group.name, version) {
                let prefix = paths::gv_prefix(r.group, r.version);
                let collection = if r.namespaced {
                    format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
                } else {
                    format!("{prefix}/{}", r.plural)
                };
                assert!(doc["paths"].get(&collection).is_some(), "{} lacks {collection}", document.path());
            }
        }
    }
}

#[test]
fn index_lists_every_document_by_its_hashed_url() {
    let index: Value = serde_json::from_slice(built().index().bytes()).expect("JSON");
    let listed: BTreeSet<&str> = index["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    for expected in ["api", "api/v1", "apis", "apis/apps", "apis/apps/v1", "apis/autoscaling/v1", "version"] {
        assert!(listed.contains(expected), "index lacks {expected}");
    }
    for document in built().documents() {
        let url = &index["paths"][document.path()]["serverRelativeURL"];
        assert_eq!(url, &json!(format!("/openapi/v3/{}?hash={}", document.path(), document.hash())));
    }
    assert_eq!(listed.len(), built().documents().count());
    assert_eq!(super::index(&Registry::built_in()), index);
}

#[test]
fn deployment_patch_operation_names_its_kind_and_takes_field_validation() {
    let doc = parsed("apis/apps/v1");
    let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(op["x-kubernetes-group-version-kind"], json!({"group": "apps", "version": "v1", "kind": "Deployment"}));
    assert_eq!(op["x-kubernetes-action"], "patch");
    assert_eq!(op["operationId"], "patchAppsV1NamespacedDeployment");
    for name in ["fieldValidation", "fieldManager", "dryRun", "force"] {
        assert!(has_query_param(op, name), "patch lacks {name}");
    }
    let bodies: BTreeSet<&str> =
        op["requestBody"]["content"].as_object().expect("content").keys().map(String::as_str).collect();
    for media in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert!(bodies.contains(media), "patch does not accept {media}");
    }
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        json!(format!("{}io.k8s.api.apps.v1.Deployment", schemas::REF_PREFIX))
    );
}

#[test]
fn every_patch_operation_takes_field_validation_so_kubectl_validates_on_the_server() {
    // kubectl stops at the first patch operation with the object's GVK, in map order, so one operation
    // without the parameter (a status or scale patch) could make it validate on the client.
    let registry = Registry::built_in();
    for document in built().documents() {
        let doc: Value = serde_json::from_slice(document.bytes()).expect("JSON");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            if let Some(op) = item.get("patch") {
                assert!(op.get("x-kubernetes-group-version-kind").is_some(), "{path} patch has no GVK");
                assert!(has_query_param(op, "fieldValidation"), "{path} patch lacks fieldValidation");
            }
        }
    }
    for r in registry.all() {
        let doc = parsed(&gv_path(r.group, r.version));
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        assert!(!patch_operations_for(&doc, &gvk).is_empty(), "no patch operation for {}", r.qualified_resource());
    }
}

#[test]
fn core_namespace_patch_exists_for_the_custom_resource_fallback() {
    // For a group-version missing from the index kubectl checks the core Namespace patch instead.
    let doc = parsed("api/v1");
    let gvk = json!({"group": "", "version": "v1", "kind": "Namespace"});
    let ops = patch_operations_for(&doc, &gvk);
    assert!(ops.iter().any(|op| op["operationId"] == "patchCoreV1Namespace"));
}

#[test]
fn every_reference_resolves_inside_its_document() {
    for document in built().documents() {
        let doc: Value = serde_json::from_slice(document.bytes()).expect("JSON");
        let names = schemas(&doc);
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty(), "{} references nothing", document.path());
        for r in refs {
            let name = r.strip_prefix(schemas::REF_PREFIX);
            let name =
                name.unwrap_or_else(|| panic!("{}: {r} does not point into components.schemas", document.path()));
            assert!(names.contains_key(name), "{}: {r} is not defined", document.path());
        }
    }
}

#[test]
fn deployment_strategy_documents_rolling_update() {
    let doc = parsed("apis/apps/v1");
    let strategy = &schemas(&doc)["io.k8s.api.apps.v1.DeploymentStrategy"];
    let rolling = &strategy["properties"]["rollingUpdate"];
    assert!(rolling["description"].as_str().is_some_and(|d| d.contains("RollingUpdate")), "{rolling}");
    assert_eq!(
        resolve(&doc, rolling)["properties"]["maxSurge"]["allOf"][0]["$ref"],
        json!(format!("{}io.k8s.apimachinery.pkg.util.intstr.IntOrString", schemas::REF_PREFIX))
    );
}

#[test]
fn explain_walks_from_the_kind_to_a_nested_field() {
    // `kubectl explain deployment.spec.strategy`: the schema carrying the GVK, then field by field.
    let doc = parsed("apis/apps/v1");
    let gvk = json!([{"group": "apps", "version": "v1", "kind": "Deployment"}]);
    let kinds: Vec<&Value> =
        schemas(&doc).values().filter(|s| s.get("x-kubernetes-group-version-kind") == Some(&gvk)).collect();
    assert_eq!(kinds.len(), 1, "exactly one schema is the Deployment");
    let spec_field = &kinds[0]["properties"]["spec"];
    assert!(spec_field["description"].as_str().is_some_and(|d| !d.is_empty()));
    let strategy_field = &resolve(&doc, spec_field)["properties"]["strategy"];
    assert!(strategy_field["description"].as_str().is_some_and(|d| d.contains("replace existing pods")));
    let strategy = resolve(&doc, strategy_field);
    assert_eq!(strategy["type"], "object");
    assert_eq!(strategy["properties"]["type"]["type"], "string");
}

#[test]
fn no_json_schema_2020_keywords_remain() {
    for document in built().documents() {
        let text = std::str::from_utf8(document.bytes()).expect("UTF-8");
        assert!(!text.contains("#/$defs/") && !text.contains("\"$defs\""), "{} has $defs", document.path());
        // JSONSchemaProps (in CustomResourceDefinition) has a property named `$schema`, an object; only a
        // `$schema` keyword (a string) is out of place.
        assert!(!text.contains("\"$schema\":\""), "{} has $schema", document.path());
        let doc: Value = serde_json::from_slice(document.bytes()).expect("JSON");
        for (name, schema) in schemas(&doc) {
            walk_schema(schema, &mut |object| {
                for keyword in schemas::FORBIDDEN_KEYWORDS {
                    assert!(!object.contains_key(*keyword), "{name} in {} has {keyword}", document.path());
                }
                if let Some(t) = object.get("type") {
                    assert!(t.is_string(), "{name} has a type list: {t}");
                }
                if let Some(items) = object.get("items") {
                    assert!(items.is_object(), "{name} has tuple items");
                }
                if let Some(reference) = object.get("$ref") {
                    assert_eq!(object.len(), 1, "{name}: $ref {reference} has siblings OpenAPI 3.0 ignores");
                }
            });
        }
    }
}

#[test]
fn integers_carry_their_width_and_times_their_format() {
    let doc = parsed("api/v1");
    let mut integers = 0;
    for (name, schema) in schemas(&doc) {
        if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString" {
            continue; // its integer alternative is any int32, as kube-apiserver writes it
        }
        walk_schema(schema, &mut |object| {
            if object.get("type") == Some(&json!("integer")) {
                integers += 1;
                let format = object.get("format").and_then(Value::as_str);
                assert!(matches!(format, Some("int32" | "int64")), "{name}: integer without width {object:?}");
            }
        });
    }
    assert!(integers > 50, "the core group has many integer fields, found {integers}");
    let all = schemas(&doc);
    let time = &all["io.k8s.apimachinery.pkg.apis.meta.v1.Time"];
    assert_eq!((&time["type"], &time["format"]), (&json!("string"), &json!("date-time")));
    let quantity = &all["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(quantity["x-kubernetes-int-or-string"], true);
    let int_or_string = &all["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(int_or_string["x-kubernetes-int-or-string"], true);
    assert_eq!(int_or_string["format"], "int-or-string");
    assert!(int_or_string.get("type").is_none(), "an int-or-string has no single type");
}

#[test]
fn embedded_objects_keep_unknown_fields() {
    let doc = parsed("apis/apps/v1");
    let raw = &schemas(&doc)["io.k8s.apimachinery.pkg.runtime.RawExtension"];
    assert_eq!(raw["x-kubernetes-preserve-unknown-fields"], true);
    let fields = &schemas(&doc)["io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"];
    assert_eq!(fields["x-kubernetes-preserve-unknown-fields"], true);
}

#[test]
fn schemas_of_other_group_versions_are_included_where_referenced() {
    let doc = parsed("apis/apps/v1");
    let all = schemas(&doc);
    for name in [
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.api.core.v1.PodTemplateSpec",
        "io.k8s.api.core.v1.Container",
        "io.k8s.api.autoscaling.v1.Scale",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
    ] {
        assert!(all.contains_key(name), "apps/v1 lacks {name}");
    }
    assert!(!all.contains_key("io.k8s.api.batch.v1.Job"), "unreferenced kinds of other groups stay out");
    let meta = &all["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"];
    assert!(meta["properties"]["name"]["description"].as_str().is_some_and(|d| !d.is_empty()));
}

#[test]
fn every_kind_and_list_carries_its_group_version_kind() {
    let registry = Registry::built_in();
    for r in registry.all() {
        let doc = parsed(&gv_path(r.group, r.version));
        for kind in [r.kind.to_string(), r.list_kind()] {
            let gvk = json!({"group": r.group, "version": r.version, "kind": kind});
            let carriers: Vec<&String> = schemas(&doc)
                .iter()
                .filter(|(_, s)| s["x-kubernetes-group-version-kind"].as_array().is_some_and(|a| a.contains(&gvk)))
                .map(|(name, _)| name)
                .collect();
            assert_eq!(carriers.len(), 1, "{gvk} is carried by {carriers:?}");
        }
    }
}

#[test]
fn every_built_in_kind_has_a_typed_schema() {
    let registry = Registry::built_in();
    let typed: BTreeSet<(&str, &str, &str)> = schemas::TYPED_KINDS.iter().copied().collect();
    for r in registry.all() {
        assert!(typed.contains(&(r.group, r.version, r.kind)), "{} falls back to an open schema", r.kind);
        for sub in r.subresources {
            if let Some(kind) = sub.response_kind() {
                assert!(typed.contains(&kind), "{kind:?} of {} has no typed schema", r.plural);
            }
        }
    }
}

#[test]
fn a_kind_without_a_typed_schema_is_named_like_a_custom_resource() {
    let gvk = schemas::Gvk { group: "stable.example.com", version: "v1", kind: "CronTab" };
    let mut components = Components::new(vec![]);
    let name = components.kind(gvk);
    assert_eq!(name, "com.example.stable.v1.CronTab");
    let all = components.finish();
    assert_eq!(all[&name]["x-kubernetes-preserve-unknown-fields"], true);
    assert_eq!(all[&name]["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
}

#[test]
fn namespaced_resources_are_listed_in_a_namespace_and_across_all() {
    let doc = parsed("api/v1");
    let paths = doc["paths"].as_object().expect("paths");
    let all = &paths["/api/v1/pods"]["get"];
    assert_eq!(all["operationId"], "listCoreV1PodForAllNamespaces");
    assert_eq!(all["x-kubernetes-action"], "list");
    let namespaced = &paths["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(namespaced["get"]["operationId"], "listCoreV1NamespacedPod");
    assert_eq!(namespaced["post"]["operationId"], "createCoreV1NamespacedPod");
    assert_eq!(namespaced["delete"]["x-kubernetes-action"], "deletecollection");
    for name in ["watch", "limit", "continue", "labelSelector", "fieldSelector", "resourceVersion", "sendInitialEvents"]
    {
        assert!(has_query_param(&namespaced["get"], name), "list lacks {name}");
    }
    assert!(!has_query_param(&namespaced["delete"], "watch"), "deletecollection does not watch");
    let path_params: Vec<&Value> =
        paths["/api/v1/namespaces/{namespace}/pods/{name}"]["parameters"].as_array().expect("params").iter().collect();
    assert!(path_params.iter().any(|p| p["name"] == "name" && p["in"] == "path" && p["required"] == true));
    assert!(path_params.iter().any(|p| p["name"] == "namespace" && p["in"] == "path"));
    assert!(path_params.iter().any(|p| p["name"] == "pretty" && p["in"] == "query"));
    // Cluster-scoped: no namespace anywhere.
    assert_eq!(paths["/api/v1/nodes/{name}"]["get"]["operationId"], "readCoreV1Node");
    assert!(!paths.keys().any(|p| p.contains("namespaces/{namespace}/nodes")));
    assert!(!paths.keys().any(|p| p.starts_with("/api/v1/namespaces/{namespace}/namespaces")));
}

#[test]
fn subresources_are_served_with_their_own_kinds() {
    let apps = parsed("apis/apps/v1");
    let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    assert_eq!(scale["put"]["operationId"], "replaceAppsV1NamespacedDeploymentScale");
    assert!(scale.get("post").is_none());
    let status = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"];
    assert_eq!(status["get"]["operationId"], "readAppsV1NamespacedDeploymentStatus");
    assert_eq!(status["patch"]["x-kubernetes-group-version-kind"]["kind"], "Deployment");

    let core = parsed("api/v1");
    let eviction = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
    assert_eq!(eviction["operationId"], "createCoreV1NamespacedPodEviction");
    assert_eq!(
        eviction["x-kubernetes-group-version-kind"],
        json!({"group": "policy", "version": "v1", "kind": "Eviction"})
    );
    assert!(schemas(&core).contains_key("io.k8s.api.policy.v1.Eviction"));
    let registry = Registry::built_in();
    let pods = registry.by_plural("", "v1", "pods").expect("pods");
    assert!(pods.has_subresource(Subresource::Binding));
    assert!(core["paths"].get("/api/v1/namespaces/{namespace}/pods/{name}/binding").is_some());
}

#[test]
fn operation_ids_are_unique_within_a_document() {
    for document in built().documents() {
        let doc: Value = serde_json::from_slice(document.bytes()).expect("JSON");
        let mut seen = BTreeSet::new();
        for item in doc["paths"].as_object().expect("paths").values() {
            for (method, op) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                let id = op["operationId"].as_str().expect("every operation has an id");
                assert!(seen.insert(id.to_string()), "{} repeats {id}", document.path());
            }
        }
    }
}

#[test]
fn group_words_follow_the_kubernetes_operation_names() {
    assert_eq!(paths::group_words(""), "Core");
    assert_eq!(paths::group_words("apps"), "Apps");
    assert_eq!(paths::group_words("rbac.authorization.k8s.io"), "RbacAuthorization");
    assert_eq!(paths::group_words("flowcontrol.apiserver.k8s.io"), "FlowcontrolApiserver");
    let rbac = parsed("apis/rbac.authorization.k8s.io/v1");
    let op = &rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"];
    assert_eq!(op["operationId"], "patchRbacAuthorizationV1ClusterRole");
    assert_eq!(op["tags"], json!(["rbacAuthorization_v1"]));
}

#[test]
fn discovery_roots_and_groups_have_documents() {
    let api = parsed("api");
    assert_eq!(api["paths"]["/api/"]["get"]["operationId"], "getCoreAPIVersions");
    let apis = parsed("apis");
    assert_eq!(apis["paths"]["/apis/"]["get"]["operationId"], "getAPIVersions");
    let apps = parsed("apis/apps");
    assert_eq!(apps["paths"]["/apis/apps/"]["get"]["operationId"], "getAppsAPIGroup");
    let version = parsed("version");
    assert!(version["paths"].get("/version/").is_some());
    let resources = parsed("apis/apps/v1");
    assert_eq!(resources["paths"]["/apis/apps/v1/"]["get"]["operationId"], "getAppsV1APIResources");
}

#[test]
fn unknown_paths_have_no_document() {
    let registry = Registry::built_in();
    for path in
        ["", "apis/apps/v2", "apis/nonexistent", "apis/nonexistent/v1", "apis//v1", "api/v2", "logs", "apis/apps/v1/x"]
    {
        assert!(built().document(path).is_none(), "{path:?} has a document");
    }
    assert!(group_version_document(&registry, "apps", "v2").is_none());
    assert!(group_version_document(&registry, "", "v2").is_none());
    assert!(built().document("/apis/apps/v1/").is_some(), "surrounding slashes are ignored");
}

#[test]
fn the_free_function_builds_the_same_document_the_server_serves() {
    let registry = Registry::built_in();
    let value = group_version_document(&registry, "batch", "v1").expect("batch/v1 is served");
    let served = built().group_version("batch", "v1").expect("batch/v1 is served");
    assert_eq!(value.to_string().as_bytes(), served.bytes());
}

#[test]
fn hashes_are_stable_and_name_the_bytes() {
    let again = OpenApiV3::build(&Registry::built_in());
    for (first, second) in built().documents().zip(again.documents()) {
        assert_eq!(first, second, "{} differs between builds", first.path());
        assert_eq!(first.hash(), stable_hash(first.bytes()));
        assert_eq!(first.hash().len(), 32);
        assert!(first.hash().chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }
    let hashes: BTreeSet<&str> = built().documents().map(Document::hash).collect();
    assert_eq!(hashes.len(), built().documents().count(), "different documents have different hashes");
    assert_ne!(stable_hash(b"ab"), stable_hash(b"ba"));
    assert_ne!(stable_hash(b""), stable_hash(b"\0"));
}

#[test]
fn cache_policy_follows_the_requested_hash() {
    let document = built().group_version("apps", "v1").expect("apps/v1");
    assert_eq!(document.cache_policy(Some(document.hash())), CachePolicy::Immutable);
    assert_eq!(document.cache_policy(None), CachePolicy::Revalidate);
    assert_eq!(document.cache_policy(Some("")), CachePolicy::Revalidate);
    assert_eq!(
        document.cache_policy(Some("ABC")),
        CachePolicy::MovedTo(format!("/openapi/v3/apis/apps/v1?hash={}", document.hash()))
    );
    assert_eq!(document.etag(), format!("\"{}\"", document.hash()));
}

#[test]
fn common_lists_carry_their_merge_keys() {
    let apps = parsed("apis/apps/v1");
    let all = schemas(&apps);
    let field = |schema: &str, property: &str| all[schema]["properties"][property].clone();
    let containers = field("io.k8s.api.core.v1.PodSpec", "containers");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(containers["type"], "array", "extensions sit beside the array type");
    let ports = field("io.k8s.api.core.v1.Container", "ports");
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["containerPort", "protocol"]));
    for (schema, property, key) in [
        ("io.k8s.api.core.v1.Container", "env", "name"),
        ("io.k8s.api.core.v1.Container", "volumeMounts", "mountPath"),
        ("io.k8s.api.core.v1.PodSpec", "volumes", "name"),
        ("io.k8s.api.core.v1.PodSpec", "initContainers", "name"),
        ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type"),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "uid"),
    ] {
        assert_eq!(field(schema, property)["x-kubernetes-patch-merge-key"], key, "{schema}.{property}");
    }
    assert_eq!(field("io.k8s.api.core.v1.PodSpec", "volumes")["x-kubernetes-patch-strategy"], "merge,retainKeys");
    let finalizers = field("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers");
    assert_eq!(
        (&finalizers["x-kubernetes-patch-strategy"], &finalizers["x-kubernetes-list-type"]),
        (&json!("merge"), &json!("set"))
    );
    assert_eq!(all["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"], "atomic");

    let core = parsed("api/v1");
    let service_ports = &schemas(&core)["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
    assert_eq!(service_ports["x-kubernetes-list-map-keys"], json!(["port", "protocol"]));
}

#[test]
fn every_marker_parses_and_names_a_served_property() {
    let table = markers::MARKERS;
    assert!(table.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)), "the table is sorted and unique");
    let mut all = Map::new();
    for document in built().documents() {
        let doc: Value = serde_json::from_slice(document.bytes()).expect("JSON");
        all.extend(schemas(&doc).clone());
    }
    for (schema, property, text) in table {
        let extensions = markers::parse(text).unwrap_or_else(|| panic!("{schema}.{property}: cannot parse {text}"));
        assert!(!extensions.is_empty());
        let served = all.get(*schema).unwrap_or_else(|| panic!("{schema} is in no document"));
        if !property.is_empty() {
            assert!(served["properties"].get(*property).is_some(), "{schema} has no property {property}");
        }
    }
    assert_eq!(
        markers::parse("+listType=map +listMapKey=a +listMapKey=b"),
        Some(vec![
            markers::Extension::ListType("map"),
            markers::Extension::ListMapKey("a"),
            markers::Extension::ListMapKey("b"),
        ])
    );
    assert_eq!(markers::parse("+optional"), None);
}
