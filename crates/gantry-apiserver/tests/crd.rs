//! CustomResourceDefinitions against a real API server on a real SQLite store: serving, discovery, OpenAPI,
//! tables, subresources, versions, scopes, name conflicts and deletion.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::{Cluster, cluster, patience};
use gantry_apiserver::api::Reply;
use http::Method;
use serde_json::{Value, json};

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";

fn widget_definition() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"],
                      "categories": ["all"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "properties": {
                         "size": {"type": "integer"}, "color": {"type": "string"}}},
                     "status": {"type": "object", "properties": {
                         "ready": {"type": "integer"}, "selector": {"type": "string"}}}}}},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size",
                                                          "statusReplicasPath": ".status.ready",
                                                          "labelSelectorPath": ".status.selector"}},
                 "additionalPrinterColumns": [
                     {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                     {"name": "Color", "type": "string", "jsonPath": ".spec.color"}]},
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
            ]
        }
    })
}

fn widget(name: &str, size: i64) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name},
           "spec": {"size": size, "color": "blue"}})
}

/// Polls `path` until `ready` holds for the answer, or fails after the patience.
async fn until(c: &Cluster, path: &str, what: &str, ready: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + patience();
    loop {
        let r = c.get(path).await;
        if ready(r.code, &r.body) {
            return r.body;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {} {}", r.code, r.body);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn condition<'a>(crd: &'a Value, kind: &str) -> &'a Value {
    crd["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == kind)).unwrap_or(&Value::Null)
}

async fn established(c: &Cluster, name: &str) -> Value {
    until(c, &format!("{CRDS}/{name}"), "definition established", |code, crd| {
        code == 200 && condition(crd, "Established")["status"] == "True"
    })
    .await
}

async fn table(c: &Cluster, path: &str) -> Value {
    let mut headers = http::HeaderMap::new();
    headers.insert("accept", "application/json;as=Table;v=v1;g=meta.k8s.io".parse().unwrap());
    let reply = c.request_with(Method::GET, path, headers, Bytes::new()).await;
    match reply {
        Reply::Full { code: 200, body, .. } => serde_json::from_slice(&body).unwrap(),
        Reply::Full { code, body, .. } => panic!("table: {code} {}", String::from_utf8_lossy(&body)),
        _ => panic!("unexpected reply"),
    }
}

#[tokio::test]
async fn a_created_definition_is_served_with_discovery_openapi_and_tables() {
    let c = cluster().await;
    let before = c.get(WIDGETS).await;
    assert_eq!(before.code, 404, "nothing is served before the definition");
    let created = c.call(Method::POST, CRDS, Some(widget_definition())).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let crd = established(&c, "widgets.example.com").await;
    assert_eq!(condition(&crd, "NamesAccepted")["reason"], "NoConflicts");
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));

    let resources = c.get("/apis/example.com/v1").await;
    assert_eq!(resources.code, 200);
    let widgets = resources.body["resources"].as_array().unwrap().iter().find(|r| r["name"] == "widgets").unwrap();
    assert_eq!(widgets["kind"], "Widget");
    assert_eq!(widgets["namespaced"], true);
    assert_eq!(widgets["shortNames"], json!(["wd"]));
    let subresources: Vec<&str> =
        resources.body["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(subresources.contains(&"widgets/status") && subresources.contains(&"widgets/scale"), "{subresources:?}");
    let group = c.get("/apis/example.com").await;
    assert_eq!(group.body["preferredVersion"]["version"], "v1", "{}", group.body);

    let index = c.get("/openapi/v3").await;
    let url = index.body["paths"]["apis/example.com/v1"]["serverRelativeURL"].as_str().unwrap().to_string();
    let document = c.get(&url).await;
    assert_eq!(document.code, 200);
    let patch = &document.body["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Widget");
    assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
    // kubectl's client-side apply sends a strategic merge patch exactly when the operation lists it.
    let content = &patch["requestBody"]["content"];
    assert!(content.get("application/merge-patch+json").is_some(), "{patch}");
    assert!(content.get("application/strategic-merge-patch+json").is_none(), "{patch}");

    let made = c.call(Method::POST, WIDGETS, Some(widget("small", 2))).await;
    assert_eq!(made.code, 201, "{}", made.body);
    assert_eq!(made.body["metadata"]["generation"], 1);
    let listed = c.get(WIDGETS).await;
    assert_eq!(listed.body["kind"], "WidgetList");
    assert_eq!(listed.body["items"][0]["spec"]["size"], 2);

    let t = table(&c, WIDGETS).await;
    let names: Vec<&str> =
        t["columnDefinitions"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, vec!["Name", "Size", "Color"]);
    assert_eq!(t["rows"][0]["cells"], json!(["small", 2, "blue"]));
}

#[tokio::test]
async fn unknown_fields_are_pruned_and_status_is_written_only_through_its_subresource() {
    let c = cluster().await;
    c.call(Method::POST, CRDS, Some(widget_definition())).await;
    established(&c, "widgets.example.com").await;

    let mut w = widget("w", 1);
    w["spec"]["extra"] = json!(true);
    w["status"] = json!({"ready": 9});
    let strict = c.call(Method::POST, &format!("{WIDGETS}?fieldValidation=Strict"), Some(w.clone())).await;
    assert_eq!(strict.code, 400, "{}", strict.body);
    assert!(strict.body["message"].as_str().unwrap().contains("unknown field \"spec.extra\""), "{}", strict.body);
    let warned = c.call(Method::POST, WIDGETS, Some(w)).await;
    assert_eq!(warned.code, 201);
    assert!(warned.warnings.iter().any(|w| w.contains("spec.extra")), "{:?}", warned.warnings);
    assert!(warned.body["spec"].get("extra").is_none(), "pruned: {}", warned.body);
    assert!(warned.body.get("status").is_none(), "a create starts without status: {}", warned.body);

    let mut changed = warned.body.clone();
    changed["spec"]["size"] = json!(3);
    changed["status"] = json!({"ready": 5});
    let updated = c.call(Method::PUT, &format!("{WIDGETS}/w"), Some(changed)).await;
    assert_eq!(updated.code, 200, "{}", updated.body);
    assert_eq!(updated.body["metadata"]["generation"], 2);
    assert!(updated.body.get("status").is_none(), "the main resource ignores status: {}", updated.body);

    let status = c
        .patch(
            &format!("{WIDGETS}/w/status"),
            "application/merge-patch+json",
            json!({"status": {"ready": 3, "selector": "app=w"}}),
        )
        .await;
    assert_eq!(status.code, 200, "{}", status.body);
    assert_eq!(status.body["status"]["ready"], 3);
    assert_eq!(status.body["metadata"]["generation"], 2, "status writes keep the generation");

    let scale = c.get(&format!("{WIDGETS}/w/scale")).await;
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["spec"]["replicas"], 3);
    assert_eq!(scale.body["status"], json!({"replicas": 3, "selector": "app=w"}));
    let scaled =
        c.patch(&format!("{WIDGETS}/w/scale"), "application/merge-patch+json", json!({"spec": {"replicas": 7}})).await;
    assert_eq!(scaled.code, 200, "{}", scaled.body);
    assert_eq!(c.get(&format!("{WIDGETS}/w")).await.body["spec"]["size"], 7);
}

#[tokio::test]
async fn every_served_version_reaches_the_same_objects() {
    let c = cluster().await;
    c.call(Method::POST, CRDS, Some(widget_definition())).await;
    established(&c, "widgets.example.com").await;
    let beta = "/apis/example.com/v1beta1/namespaces/default/widgets";
    let mut w = widget("old", 4);
    w["apiVersion"] = json!("example.com/v1beta1");
    let made = c.call(Method::POST, beta, Some(w)).await;
    assert_eq!(made.code, 201, "{}", made.body);
    assert_eq!(made.body["apiVersion"], "example.com/v1beta1");
    let as_v1 = c.get(&format!("{WIDGETS}/old")).await;
    assert_eq!(as_v1.body["apiVersion"], "example.com/v1");
    assert_eq!(as_v1.body["spec"]["size"], 4);
    let wrong = c.call(Method::POST, beta, Some(widget("x", 1))).await;
    assert_eq!(wrong.code, 400, "an object naming another version is refused: {}", wrong.body);
}

#[tokio::test]
async fn cluster_scoped_resources_live_outside_namespaces() {
    let c = cluster().await;
    let mut crd = widget_definition();
    crd["metadata"]["name"] = json!("gadgets.example.com");
    crd["spec"]["scope"] = json!("Cluster");
    crd["spec"]["names"] = json!({"plural": "gadgets", "kind": "Gadget"});
    assert_eq!(c.call(Method::POST, CRDS, Some(crd)).await.code, 201);
    established(&c, "gadgets.example.com").await;
    let g = json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 1}});
    let made = c.call(Method::POST, "/apis/example.com/v1/gadgets", Some(g)).await;
    assert_eq!(made.code, 201, "{}", made.body);
    assert!(made.body["metadata"].get("namespace").is_none());
    assert_eq!(c.get("/apis/example.com/v1/namespaces/default/gadgets").await.code, 404);
    let resources = c.get("/apis/example.com/v1").await;
    let gadgets = resources.body["resources"].as_array().unwrap().iter().find(|r| r["name"] == "gadgets").unwrap();
    assert_eq!(gadgets["namespaced"], false);
    assert_eq!(gadgets["singularName"], "gadget", "singular defaults to the lower-cased kind");
}

#[tokio::test]
async fn a_definition_whose_names_conflict_is_not_served() {
    let c = cluster().await;
    c.call(Method::POST, CRDS, Some(widget_definition())).await;
    established(&c, "widgets.example.com").await;
    let mut other = widget_definition();
    other["metadata"]["name"] = json!("sprockets.example.com");
    other["spec"]["names"] = json!({"plural": "sprockets", "singular": "sprocket", "kind": "Widget"});
    assert_eq!(c.call(Method::POST, CRDS, Some(other)).await.code, 201);
    let crd = until(&c, &format!("{CRDS}/sprockets.example.com"), "names refused", |_, crd| {
        condition(crd, "NamesAccepted")["status"] == "False"
    })
    .await;
    assert_eq!(condition(&crd, "NamesAccepted")["reason"], "KindConflict");
    assert_eq!(condition(&crd, "NamesAccepted")["message"], "\"Widget\" is already in use");
    assert_eq!(condition(&crd, "Established")["status"], "False");
    assert_eq!(c.get("/apis/example.com/v1/namespaces/default/sprockets").await.code, 404);
}

#[tokio::test]
async fn deleting_a_definition_deletes_its_objects_first() {
    let c = cluster().await;
    c.call(Method::POST, CRDS, Some(widget_definition())).await;
    established(&c, "widgets.example.com").await;
    let mut held = widget("held", 1);
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(c.call(Method::POST, WIDGETS, Some(held)).await.code, 201);
    assert_eq!(c.call(Method::POST, WIDGETS, Some(widget("plain", 1))).await.code, 201);

    let deleted = c.call(Method::DELETE, &format!("{CRDS}/widgets.example.com"), None).await;
    assert_eq!(deleted.code, 200, "{}", deleted.body);
    let crd = until(&c, &format!("{CRDS}/widgets.example.com"), "terminating", |_, crd| {
        condition(crd, "Terminating")["status"] == "True"
    })
    .await;
    assert!(
        crd["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "customresourcecleanup.apiextensions.k8s.io")
    );
    until(&c, &format!("{WIDGETS}/plain"), "plain widget deleted", |code, _| code == 404).await;
    let refused = c.call(Method::POST, WIDGETS, Some(widget("late", 1))).await;
    assert_eq!(refused.code, 405, "{}", refused.body);
    // The object's own finalizer still holds it, and with it the definition.
    let held = c.get(&format!("{WIDGETS}/held")).await;
    assert!(held.body["metadata"]["deletionTimestamp"].is_string(), "{}", held.body);
    assert_eq!(c.get(&format!("{CRDS}/widgets.example.com")).await.code, 200);

    let released = c
        .patch(&format!("{WIDGETS}/held"), "application/merge-patch+json", json!({"metadata": {"finalizers": null}}))
        .await;
    assert_eq!(released.code, 200, "{}", released.body);
    until(&c, &format!("{CRDS}/widgets.example.com"), "definition gone", |code, _| code == 404).await;
    until(&c, "/apis/example.com/v1", "group-version no longer served", |code, _| code == 404).await;
    let index = c.get("/openapi/v3").await;
    assert!(index.body["paths"].get("apis/example.com/v1").is_none(), "{}", index.body);
}

#[tokio::test]
async fn definitions_are_served_again_right_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Cluster::start_in(dir.path()).await;
        c.call(Method::POST, CRDS, Some(widget_definition())).await;
        established(&c, "widgets.example.com").await;
        assert_eq!(c.call(Method::POST, WIDGETS, Some(widget("kept", 1))).await.code, 201);
    }
    let c = Cluster::start_in(dir.path()).await;
    let kept = c.get(&format!("{WIDGETS}/kept")).await;
    assert_eq!(kept.code, 200, "served from the first request: {}", kept.body);
}

#[tokio::test]
async fn server_side_apply_merges_custom_resources_by_their_schemas_list_types() {
    let c = cluster().await;
    let mut crd = widget_definition();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["parts"] = json!({
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "required": ["name"],
                  "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}}});
    let created = c.call(Method::POST, CRDS, Some(crd)).await;
    assert_eq!(created.code, 201, "{}", created.body);
    established(&c, "widgets.example.com").await;
    let first = apply(&c, "left", json!([{"name": "bolt", "count": 2}]), false).await;
    assert_eq!(first.code, 201, "{}", first.body);
    let second = apply(&c, "right", json!([{"name": "nut", "count": 4}]), false).await;
    assert_eq!(second.code, 200, "{}", second.body);
    assert_eq!(second.body["spec"]["parts"], json!([{"name": "bolt", "count": 2}, {"name": "nut", "count": 4}]));

    let conflict = apply(&c, "right", json!([{"name": "nut", "count": 4}, {"name": "bolt", "count": 3}]), false).await;
    assert_eq!(conflict.code, 409, "{}", conflict.body);
    assert_eq!(conflict.body["details"]["causes"][0]["field"], ".spec.parts[name=\"bolt\"].count");

    let dropped = apply(&c, "left", json!([]), false).await;
    assert_eq!(dropped.code, 200, "{}", dropped.body);
    assert_eq!(dropped.body["spec"]["parts"], json!([{"name": "nut", "count": 4}]), "only left's element goes");
}

async fn apply(c: &Cluster, manager: &str, parts: Value, force: bool) -> common::Response {
    let body = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                      "spec": {"parts": parts}});
    c.patch(&format!("{WIDGETS}/w?fieldManager={manager}&force={force}"), "application/apply-patch+yaml", body).await
}

#[tokio::test]
async fn objects_are_validated_and_defaulted_by_their_schema_and_definitions_must_be_structural() {
    let c = cluster().await;
    let mut crd = widget_definition();
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    spec["properties"]["color"] = json!({"type": "string", "enum": ["blue", "red"], "default": "blue"});
    spec["properties"]["size"] = json!({"type": "integer", "minimum": 1});
    spec["required"] = json!(["size"]);
    let mut untyped = crd.clone();
    untyped["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["loose"] =
        json!({});
    let refused = c.call(Method::POST, CRDS, Some(untyped)).await;
    assert_eq!(refused.code, 422, "{}", refused.body);
    assert!(
        refused.body["message"].as_str().unwrap().contains("must not be empty for specified object fields"),
        "{}",
        refused.body
    );
    assert_eq!(c.call(Method::POST, CRDS, Some(crd)).await.code, 201);
    established(&c, "widgets.example.com").await;

    let defaulted = c
        .call(
            Method::POST,
            WIDGETS,
            Some(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                                                   "metadata": {"name": "d"}, "spec": {"size": 2}})),
        )
        .await;
    assert_eq!(defaulted.code, 201, "{}", defaulted.body);
    assert_eq!(defaulted.body["spec"]["color"], "blue");

    let bad = c
        .call(
            Method::POST,
            WIDGETS,
            Some(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                                              "metadata": {"name": "b"}, "spec": {"size": "big", "color": "green"}})),
        )
        .await;
    assert_eq!(bad.code, 422, "{}", bad.body);
    let fields: Vec<&str> =
        bad.body["details"]["causes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
    assert!(fields.contains(&"spec.size") && fields.contains(&"spec.color"), "{}", bad.body);
    assert!(
        bad.body["message"].as_str().unwrap().contains("spec.size in body must be of type integer: \"string\""),
        "{}",
        bad.body
    );
    let missing = c
        .call(
            Method::POST,
            WIDGETS,
            Some(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                                              "metadata": {"name": "m"}, "spec": {}})),
        )
        .await;
    assert_eq!(missing.code, 422, "{}", missing.body);
    assert!(missing.body["message"].as_str().unwrap().contains("spec.size: Required value"), "{}", missing.body);
    assert_eq!(c.get(&format!("{WIDGETS}/b")).await.code, 404, "nothing stored");
}
