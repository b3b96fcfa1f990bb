//! The `paths` of a document: the operations Gantry serves for each resource, named and parameterised as
//! kube-apiserver names them, because clients look operations up by these names and extensions.
//!
//! kubectl decides whether the server validates fields by finding, in the document of the object's
//! group-version, a `patch` operation whose `x-kubernetes-group-version-kind` is the object's and whose own
//! `parameters` (not the path item's) include the query parameter `fieldValidation`. It stops at the first
//! such operation it meets, in no fixed order, so *every* patch operation carries the parameter.

use serde_json::{Map, Value, json};

use crate::registry::{ResourceType, Subresource};

/// What the paths of one resource are built from: a built-in [`ResourceType`] or a custom resource.
#[derive(Clone, Copy, Debug)]
pub(super) struct ResourceShape<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub plural: &'a str,
    pub namespaced: bool,
    pub subresources: &'a [Subresource],
    /// Whether a CustomResourceDefinition defines it (such kinds take no strategic merge patch).
    pub custom: bool,
}

impl<'a> From<&'a ResourceType> for ResourceShape<'a> {
    fn from(r: &'a ResourceType) -> ResourceShape<'a> {
        ResourceShape {
            group: r.group,
            version: r.version,
            kind: r.kind,
            plural: r.plural,
            namespaced: r.namespaced,
            subresources: r.subresources,
            custom: r.custom,
        }
    }
}

use super::schemas::{Components, Gvk, MetaType, REF_PREFIX};

/// The media types Gantry answers with.
const RESPONSE_TYPES: &[&str] = &["application/json"];
/// The media types of a list that may be turned into a watch with `?watch=true`.
const WATCH_TYPES: &[&str] = &["application/json;stream=watch"];
/// The patch bodies Gantry accepts.
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// `apps_v1`-style tag and `AppsV1`-style operation-id fragment of a group-version, as kube-apiserver
/// derives them: the `.k8s.io` suffix dropped, the remaining labels camel-cased.
pub(super) fn group_words(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_string();
    }
    let trimmed = group.strip_suffix(".k8s.io").unwrap_or(group);
    trimmed.split(['.', '-']).filter(|w| !w.is_empty()).map(capitalize).collect()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn lower_first(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The URL prefix of a group-version: `/api/v1` or `/apis/apps/v1`.
pub(super) fn gv_prefix(group: &str, version: &str) -> String {
    if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") }
}

fn gv_tag(group: &str, version: &str) -> String {
    format!("{}_{version}", lower_first(&group_words(group)))
}

fn gv_id(group: &str, version: &str) -> String {
    format!("{}{}", group_words(group), capitalize(version))
}

fn param(name: &str, location: &str, schema_type: &str, description: &str) -> Value {
    let mut p = json!({
        "name": name,
        "in": location,
        "description": description,
        "schema": {"type": schema_type},
    });
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

fn pretty() -> Value {
    param("pretty", "query", "string", "If 'true', the output is pretty printed.")
}

fn dry_run() -> Value {
    param(
        "dryRun",
        "query",
        "string",
        "When present, the change is validated and processed but not persisted. The only valid value is All: \
         every dry-run stage is processed.",
    )
}

fn field_manager(patch: bool) -> Value {
    let base = "The name of the actor making the change, recorded in metadata.managedFields. At most 128 \
                printable characters.";
    let description = if patch {
        format!(
            "{base} Required for apply patches (application/apply-patch+yaml), optional for JSON, merge and \
             strategic merge patches."
        )
    } else {
        base.to_string()
    };
    param("fieldManager", "query", "string", &description)
}

fn field_validation() -> Value {
    param(
        "fieldValidation",
        "query",
        "string",
        "How the server treats unknown or duplicate fields in the request body: Ignore drops them silently; Warn \
         drops them and returns one Warning header for each; Strict rejects the request with BadRequest naming \
         all of them.",
    )
}

fn force() -> Value {
    param(
        "force",
        "query",
        "boolean",
        "Forces an apply patch: the applier takes ownership of fields other field managers own instead of \
         getting a conflict. Must be unset for other patch types.",
    )
}

fn list_params(watchable: bool) -> Vec<Value> {
    let mut params = Vec::new();
    if watchable {
        params.push(param(
            "allowWatchBookmarks",
            "query",
            "boolean",
            "Asks for BOOKMARK events in a watch. Ignored unless watch is set.",
        ));
    }
    params.extend([
        param(
            "continue",
            "query",
            "string",
            "The continue token of a previous paginated list response, to fetch the next page with the same \
             query. An expired token is answered with 410 Expired. Not supported with watch.",
        ),
        param(
            "fieldSelector",
            "query",
            "string",
            "Restricts the list to objects whose fields match this selector. Defaults to everything.",
        ),
        param(
            "labelSelector",
            "query",
            "string",
            "Restricts the list to objects whose labels match this selector. Defaults to everything.",
        ),
        param(
            "limit",
            "query",
            "integer",
            "The maximum number of objects to return. When more exist the list metadata carries a continue \
             token for the next page. Not supported with watch.",
        ),
        param(
            "resourceVersion",
            "query",
            "string",
            "Constrains which resource versions the request may be served from, following the resourceVersion \
             semantics of the Kubernetes API. Defaults to unset: a consistent read of the latest state.",
        ),
        param(
            "resourceVersionMatch",
            "query",
            "string",
            "How resourceVersion applies to a list: NotOlderThan or Exact. Defaults to unset.",
        ),
    ]);
    if watchable {
        params.push(param(
            "sendInitialEvents",
            "query",
            "boolean",
            "With watch=true, starts the stream with an ADDED event for each object of the collection, then a \
             BOOKMARK annotated \"k8s.io/initial-events-end\": \"true\". Requires resourceVersionMatch=NotOlderThan.",
        ));
    }
    params.push(param(
        "timeoutSeconds",
        "query",
        "integer",
        "Timeout for the list or watch call, regardless of activity.",
    ));
    if watchable {
        params.push(param(
            "watch",
            "query",
            "boolean",
            "Watches for changes to the described objects and returns them as a stream of ADDED, MODIFIED and \
             DELETED events. Give resourceVersion to start from a known state.",
        ));
    }
    params
}

fn delete_params() -> Vec<Value> {
    vec![
        param(
            "gracePeriodSeconds",
            "query",
            "integer",
            "Seconds before the object is deleted; 0 deletes immediately. Unset uses the kind's default grace \
             period.",
        ),
        param(
            "orphanDependents",
            "query",
            "boolean",
            "Deprecated: use propagationPolicy. Whether dependents are orphaned (the \"orphan\" finalizer is \
             added) rather than deleted. Only one of orphanDependents and propagationPolicy may be set.",
        ),
        param(
            "propagationPolicy",
            "query",
            "string",
            "Whether and how dependents are garbage collected: Orphan leaves them; Background deletes the \
             object now and its dependents afterwards; Foreground deletes the dependents first.",
        ),
    ]
}

fn content(types: &[&str], schema: &str) -> Value {
    let mut map = Map::new();
    for t in types {
        map.insert((*t).to_string(), json!({"schema": {"$ref": format!("{REF_PREFIX}{schema}")}}));
    }
    Value::Object(map)
}

fn responses(codes: &[(&str, &str)], types: &[&str], schema: &str) -> Value {
    let mut map = Map::new();
    for (code, description) in codes {
        map.insert((*code).to_string(), json!({"description": description, "content": content(types, schema)}));
    }
    map.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(map)
}

/// One operation with the fields every operation of a resource shares.
struct Op<'a> {
    description: String,
    id: String,
    action: &'a str,
    gvk: Gvk<'a>,
    tag: &'a str,
    parameters: Vec<Value>,
    request: Option<Value>,
    responses: Value,
}

impl Op<'_> {
    fn into_value(self) -> Value {
        let mut op = json!({
            "description": self.description,
            "operationId": self.id,
            "tags": [self.tag],
            "responses": self.responses,
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": self.gvk.to_value(),
        });
        if !self.parameters.is_empty() {
            op["parameters"] = Value::Array(self.parameters);
        }
        if let Some(request) = self.request {
            op["requestBody"] = request;
        }
        op
    }
}

fn body(schema: &str) -> Value {
    json!({"required": true, "content": content(&["*/*"], schema)})
}

/// The PATCH request body. kubectl's client-side apply sends a strategic merge patch exactly when the
/// operation lists its media type, so custom resources, which take none, leave it out.
fn patch_body(patch: &str, custom: bool) -> Value {
    let types: Vec<&str> =
        PATCH_TYPES.iter().copied().filter(|t| !custom || *t != "application/strategic-merge-patch+json").collect();
    json!({"required": true, "content": content(&types, patch)})
}

/// What the paths, tags and operation ids of one resource are built from.
struct ResourceNames<'a> {
    resource: ResourceShape<'a>,
    /// `/api/v1`, `/apis/apps/v1`.
    prefix: String,
    /// The collection: `/apis/apps/v1/namespaces/{namespace}/deployments`, `/api/v1/nodes`.
    base: String,
    /// `apps_v1`.
    tag: String,
    /// `AppsV1`.
    gv: String,
    /// `Namespaced`, or empty for a cluster-scoped resource.
    scope: &'static str,
}

impl<'a> ResourceNames<'a> {
    fn new(r: ResourceShape<'a>) -> ResourceNames<'a> {
        let prefix = gv_prefix(r.group, r.version);
        let base = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        ResourceNames {
            resource: r,
            base,
            prefix,
            tag: gv_tag(r.group, r.version),
            gv: gv_id(r.group, r.version),
            scope: if r.namespaced { "Namespaced" } else { "" },
        }
    }

    /// The parameters every operation of a path item shares: `name` for one object, `namespace`, `pretty`.
    fn path_params(&self, named: bool) -> Vec<Value> {
        let mut params = Vec::new();
        if named {
            params.push(param("name", "path", "string", &format!("name of the {}", self.resource.kind)));
        }
        if self.resource.namespaced {
            params.push(param(
                "namespace",
                "path",
                "string",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        params.push(pretty());
        params
    }
}

/// Adds the paths of one resource (and its subresources) of a group-version.
pub(super) fn add_resource(paths: &mut Map<String, Value>, components: &mut Components, r: ResourceShape<'_>) {
    let gvk = Gvk { group: r.group, version: r.version, kind: r.kind };
    let object = components.kind(gvk);
    let list = components.list(gvk);
    let status = components.meta(MetaType::Status);
    let delete_options = components.meta(MetaType::DeleteOptions);
    let patch = components.meta(MetaType::Patch);

    let names = ResourceNames::new(r);
    let r = &names.resource;
    let ResourceNames { prefix, base, tag, gv, scope, .. } = &names;
    let kind = r.kind;
    let custom = r.custom;
    let ok_created = [("200", "OK"), ("201", "Created")];

    // The collection: list (and watch), create, delete a selection.
    let mut collection = Map::new();
    collection.insert(
        "get".into(),
        Op {
            description: format!("list or watch objects of kind {kind}"),
            id: format!("list{gv}{scope}{kind}"),
            action: "list",
            gvk,
            tag,
            parameters: list_params(true),
            request: None,
            responses: responses(&[("200", "OK")], &[RESPONSE_TYPES, WATCH_TYPES].concat(), &list),
        }
        .into_value(),
    );
    collection.insert(
        "post".into(),
        Op {
            description: format!("create a {kind}"),
            id: format!("create{gv}{scope}{kind}"),
            action: "post",
            gvk,
            tag,
            parameters: vec![dry_run(), field_manager(false), field_validation()],
            request: Some(body(&object)),
            responses: responses(&[("200", "OK"), ("201", "Created"), ("202", "Accepted")], RESPONSE_TYPES, &object),
        }
        .into_value(),
    );
    let mut deletecollection_params = vec![dry_run()];
    deletecollection_params.extend(list_params(false));
    deletecollection_params.extend(delete_params());
    collection.insert(
        "delete".into(),
        Op {
            description: format!("delete collection of {kind}"),
            id: format!("delete{gv}Collection{scope}{kind}"),
            action: "deletecollection",
            gvk,
            tag,
            parameters: deletecollection_params,
            request: Some(json!({"content": content(&["*/*"], &delete_options)})),
            responses: responses(&[("200", "OK")], RESPONSE_TYPES, &status),
        }
        .into_value(),
    );
    collection.insert("parameters".into(), Value::Array(names.path_params(false)));
    paths.insert(base.clone(), Value::Object(collection));

    // One object: read, replace, patch, delete.
    let mut item = Map::new();
    item.insert(
        "get".into(),
        Op {
            description: format!("read the specified {kind}"),
            id: format!("read{gv}{scope}{kind}"),
            action: "get",
            gvk,
            tag,
            parameters: Vec::new(),
            request: None,
            responses: responses(&[("200", "OK")], RESPONSE_TYPES, &object),
        }
        .into_value(),
    );
    item.insert(
        "put".into(),
        Op {
            description: format!("replace the specified {kind}"),
            id: format!("replace{gv}{scope}{kind}"),
            action: "put",
            gvk,
            tag,
            parameters: vec![dry_run(), field_manager(false), field_validation()],
            request: Some(body(&object)),
            responses: responses(&ok_created, RESPONSE_TYPES, &object),
        }
        .into_value(),
    );
    item.insert(
        "patch".into(),
        Op {
            description: format!("partially update the specified {kind}"),
            id: format!("patch{gv}{scope}{kind}"),
            action: "patch",
            gvk,
            tag,
            parameters: vec![dry_run(), field_manager(true), field_validation(), force()],
            request: Some(patch_body(&patch, custom)),
            responses: responses(&ok_created, RESPONSE_TYPES, &object),
        }
        .into_value(),
    );
    let mut delete_item_params = vec![dry_run()];
    delete_item_params.extend(delete_params());
    item.insert(
        "delete".into(),
        Op {
            description: format!("delete a {kind}"),
            id: format!("delete{gv}{scope}{kind}"),
            action: "delete",
            gvk,
            tag,
            parameters: delete_item_params,
            request: Some(json!({"content": content(&["*/*"], &delete_options)})),
            responses: responses(&[("200", "OK"), ("202", "Accepted")], RESPONSE_TYPES, &status),
        }
        .into_value(),
    );
    item.insert("parameters".into(), Value::Array(names.path_params(true)));
    paths.insert(format!("{base}/{{name}}"), Value::Object(item));

    // A namespaced resource is also listed across all namespaces.
    if r.namespaced {
        let mut all = Map::new();
        all.insert(
            "get".into(),
            Op {
                description: format!("list or watch objects of kind {kind}"),
                id: format!("list{gv}{kind}ForAllNamespaces"),
                action: "list",
                gvk,
                tag,
                parameters: list_params(true),
                request: None,
                responses: responses(&[("200", "OK")], &[RESPONSE_TYPES, WATCH_TYPES].concat(), &list),
            }
            .into_value(),
        );
        all.insert("parameters".into(), Value::Array(vec![pretty()]));
        paths.insert(format!("{prefix}/{}", r.plural), Value::Object(all));
    }

    for sub in r.subresources {
        add_subresource(paths, components, &names, *sub);
    }
}

fn add_subresource(
    paths: &mut Map<String, Value>,
    components: &mut Components,
    names: &ResourceNames<'_>,
    sub: Subresource,
) {
    let ResourceNames { resource: r, base, tag, gv, scope, .. } = names;
    let (group, version, sub_kind) = sub.response_kind().unwrap_or((r.group, r.version, r.kind));
    let gvk = Gvk { group, version, kind: sub_kind };
    let schema = components.kind(gvk);
    let kind = r.kind;
    let suffix = capitalize(sub.name());
    let what = format!("{} of the specified {kind}", sub.name());
    let ok_created = [("200", "OK"), ("201", "Created")];
    let mut item = Map::new();
    for verb in sub.verbs() {
        let op = match *verb {
            "get" => Op {
                description: format!("read {what}"),
                id: format!("read{gv}{scope}{kind}{suffix}"),
                action: "get",
                gvk,
                tag,
                parameters: Vec::new(),
                request: None,
                responses: responses(&[("200", "OK")], RESPONSE_TYPES, &schema),
            },
            "update" => Op {
                description: format!("replace {what}"),
                id: format!("replace{gv}{scope}{kind}{suffix}"),
                action: "put",
                gvk,
                tag,
                parameters: vec![dry_run(), field_manager(false), field_validation()],
                request: Some(body(&schema)),
                responses: responses(&ok_created, RESPONSE_TYPES, &schema),
            },
            "patch" => {
                let patch = components.meta(MetaType::Patch);
                Op {
                    description: format!("partially update {what}"),
                    id: format!("patch{gv}{scope}{kind}{suffix}"),
                    action: "patch",
                    gvk,
                    tag,
                    parameters: vec![dry_run(), field_manager(true), field_validation(), force()],
                    request: Some(patch_body(&patch, names.resource.custom)),
                    responses: responses(&ok_created, RESPONSE_TYPES, &schema),
                }
            }
            "create" => Op {
                description: format!("create {} of a {kind}", sub.name()),
                id: format!("create{gv}{scope}{kind}{suffix}"),
                action: "post",
                gvk,
                tag,
                parameters: vec![dry_run(), field_manager(false), field_validation()],
                request: Some(body(&schema)),
                responses: responses(
                    &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                    RESPONSE_TYPES,
                    &schema,
                ),
            },
            _ => continue,
        };
        let method = match *verb {
            "get" => "get",
            "update" => "put",
            "patch" => "patch",
            _ => "post",
        };
        item.insert(method.into(), op.into_value());
    }
    item.insert("parameters".into(), Value::Array(names.path_params(true)));
    paths.insert(format!("{base}/{{name}}/{}", sub.name()), Value::Object(item));
}

/// `GET /apis/{group}/{version}/`: the group-version's resource list.
pub(super) fn add_resource_list(
    paths: &mut Map<String, Value>,
    components: &mut Components,
    group: &str,
    version: &str,
) {
    let schema = components.meta(MetaType::ApiResourceList);
    paths.insert(
        format!("{}/", gv_prefix(group, version)),
        json!({"get": {
            "description": "get available resources",
            "operationId": format!("get{}APIResources", gv_id(group, version)),
            "tags": [gv_tag(group, version)],
            "responses": responses(&[("200", "OK")], RESPONSE_TYPES, &schema),
        }}),
    );
}

/// `GET /apis/{group}/`: the group and its versions.
pub(super) fn add_group(paths: &mut Map<String, Value>, components: &mut Components, group: &str) {
    let schema = components.meta(MetaType::ApiGroup);
    paths.insert(
        format!("/apis/{group}/"),
        json!({"get": {
            "description": "get information of a group",
            "operationId": format!("get{}APIGroup", group_words(group)),
            "tags": [lower_first(&group_words(group))],
            "responses": responses(&[("200", "OK")], RESPONSE_TYPES, &schema),
        }}),
    );
}

/// `GET /api/`, `GET /apis/` and `GET /version/`: the roots of discovery.
pub(super) fn add_root(paths: &mut Map<String, Value>, components: &mut Components, root: &str) {
    let (path, description, id, tag, meta) = match root {
        "api" => ("/api/", "get available API versions", "getCoreAPIVersions", "core", MetaType::ApiVersions),
        "apis" => ("/apis/", "get available API versions", "getAPIVersions", "apis", MetaType::ApiGroupList),
        _ => (
            "/version/",
            "get the version information for this server",
            "getCodeVersion",
            "version",
            MetaType::VersionInfo,
        ),
    };
    let schema = components.meta(meta);
    paths.insert(
        path.to_string(),
        json!({"get": {
            "description": description,
            "operationId": id,
            "tags": [tag],
            "responses": responses(&[("200", "OK")], &["application/json"], &schema),
        }}),
    );
}
