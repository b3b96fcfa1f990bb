//! The API's semantics, driven in-process against a real SQLite store and the real watch cache: metadata,
//! concurrency, subresources, deletion, lists and watches. (Real clients over HTTPS are tested in gantry-e2e.)

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use bytes::Bytes;
use common::cluster;
use gantry_apiserver::api::Reply;
use http::Method;
use serde_json::{Value, json};

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "demo"}},
           "data": {"k": "v"}})
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
}

fn pod(name: &str, node: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "db"}},
                       "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    if let Some(node) = node {
        p["spec"]["nodeName"] = json!(node);
    }
    p
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn rv(obj: &Value) -> i64 {
    obj["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn create_fills_system_metadata_and_generation_counts_spec_changes_only() {
    let c = cluster().await;
    let created = c.call(Method::POST, DEPLOYS, Some(deployment("web", 1))).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let meta = &created.body["metadata"];
    assert!(meta["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(meta["creationTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(meta["generation"], 1);
    assert_eq!(created.body["spec"]["strategy"]["type"], "RollingUpdate", "defaults are applied");
    let relabeled = c
        .patch(&format!("{DEPLOYS}/web"), "application/merge-patch+json", json!({"metadata": {"labels": {"x": "y"}}}))
        .await;
    assert_eq!(relabeled.body["metadata"]["generation"], 1);
    let scaled =
        c.patch(&format!("{DEPLOYS}/web"), "application/merge-patch+json", json!({"spec": {"replicas": 3}})).await;
    assert_eq!(scaled.body["metadata"]["generation"], 2);
    assert_eq!(scaled.body["metadata"]["uid"], meta["uid"]);
    assert!(rv(&scaled.body) > rv(&relabeled.body));
}

#[tokio::test]
async fn generate_name_gives_unique_names() {
    let c = cluster().await;
    let mut names = std::collections::HashSet::new();
    for _ in 0..5 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cfg-"}});
        let created = c.call(Method::POST, CMS, Some(cm)).await;
        assert_eq!(created.code, 201);
        let name = created.body["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
        assert!(names.insert(name));
    }
}

#[tokio::test]
async fn an_update_with_a_stale_resource_version_is_a_conflict() {
    let c = cluster().await;
    let created = c.call(Method::POST, CMS, Some(configmap("a"))).await.body;
    let mut first = created.clone();
    first["data"]["k"] = json!("one");
    assert_eq!(c.call(Method::PUT, &format!("{CMS}/a"), Some(first)).await.code, 200);
    let mut stale = created.clone();
    stale["data"]["k"] = json!("two");
    let refused = c.call(Method::PUT, &format!("{CMS}/a"), Some(stale)).await;
    assert_eq!(refused.code, 409);
    assert_eq!(refused.body["reason"], "Conflict");
    assert_eq!(c.get(&format!("{CMS}/a")).await.body["data"]["k"], "one");
    let missing = c.get(&format!("{CMS}/nope")).await;
    assert_eq!(missing.code, 404);
    assert_eq!(missing.body["message"], "configmaps \"nope\" not found");
    let again = c.call(Method::POST, CMS, Some(configmap("a"))).await;
    assert_eq!(again.code, 409);
    assert_eq!(again.body["reason"], "AlreadyExists");
}

#[tokio::test]
async fn status_is_written_only_through_its_subresource() {
    let c = cluster().await;
    c.call(Method::POST, DEPLOYS, Some(deployment("web", 1))).await;
    let mut with_status = c.get(&format!("{DEPLOYS}/web")).await.body;
    with_status["status"] = json!({"replicas": 7});
    with_status["spec"]["replicas"] = json!(2);
    let main = c.call(Method::PUT, &format!("{DEPLOYS}/web"), Some(with_status.clone())).await;
    assert_eq!(main.code, 200, "{}", main.body);
    assert!(main.body["status"].get("replicas").is_none(), "the main resource ignores status");
    let mut status_write = main.body.clone();
    status_write["status"] = json!({"replicas": 7, "observedGeneration": 2});
    status_write["spec"]["replicas"] = json!(9);
    let status = c.call(Method::PUT, &format!("{DEPLOYS}/web/status"), Some(status_write)).await;
    assert_eq!(status.code, 200, "{}", status.body);
    assert_eq!(status.body["status"]["replicas"], 7);
    assert_eq!(status.body["spec"]["replicas"], 2, "the status subresource ignores spec");
    assert_eq!(status.body["metadata"]["generation"], 2);
}

#[tokio::test]
async fn scale_reads_and_writes_replicas() {
    let c = cluster().await;
    c.call(Method::POST, DEPLOYS, Some(deployment("web", 2))).await;
    let scale = c.get(&format!("{DEPLOYS}/web/scale")).await;
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["apiVersion"], "autoscaling/v1");
    assert_eq!(scale.body["spec"]["replicas"], 2);
    assert_eq!(scale.body["status"]["selector"], "app=web");
    let patched = c
        .patch(&format!("{DEPLOYS}/web/scale"), "application/merge-patch+json", json!({"spec": {"replicas": 5}}))
        .await;
    assert_eq!(patched.code, 200, "{}", patched.body);
    assert_eq!(patched.body["spec"]["replicas"], 5);
    assert_eq!(c.get(&format!("{DEPLOYS}/web")).await.body["spec"]["replicas"], 5);
    let negative = c
        .patch(&format!("{DEPLOYS}/web/scale"), "application/merge-patch+json", json!({"spec": {"replicas": -1}}))
        .await;
    assert_eq!(negative.code, 422);
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_they_are_removed() {
    let c = cluster().await;
    let mut cm = configmap("held");
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let created = c.call(Method::POST, CMS, Some(cm)).await.body;
    let mut watch = c.watch(&format!("{CMS}?watch=true&resourceVersion={}", rv(&created))).await;
    let deleted = c.call(Method::DELETE, &format!("{CMS}/held"), None).await;
    assert_eq!(deleted.code, 200);
    assert!(deleted.body["metadata"]["deletionTimestamp"].is_string());
    let (kind, obj) = watch.next_event().await;
    assert_eq!((kind.as_str(), obj["metadata"]["name"].as_str()), ("MODIFIED", Some("held")));
    let more = c
        .patch(
            &format!("{CMS}/held"),
            "application/merge-patch+json",
            json!({"metadata": {"finalizers": ["example.com/hold", "example.com/other"]}}),
        )
        .await;
    assert_eq!(more.code, 422, "no new finalizers while deleting");
    let released = c
        .patch(
            &format!("{CMS}/held"),
            "application/json-patch+json",
            json!([{"op": "remove", "path": "/metadata/finalizers"}]),
        )
        .await;
    assert_eq!(released.code, 200, "{}", released.body);
    let (kind, _) = watch.next_event().await;
    assert_eq!(kind, "DELETED");
    assert_eq!(c.get(&format!("{CMS}/held")).await.code, 404);
}

#[tokio::test]
async fn propagation_policies_add_the_garbage_collector_finalizers() {
    let c = cluster().await;
    c.call(Method::POST, DEPLOYS, Some(deployment("fg", 1))).await;
    let fg = c.call(Method::DELETE, &format!("{DEPLOYS}/fg"), Some(json!({"propagationPolicy": "Foreground"}))).await;
    assert_eq!(fg.body["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    c.call(Method::POST, DEPLOYS, Some(deployment("or", 1))).await;
    let orphan = c.call(Method::DELETE, &format!("{DEPLOYS}/or?propagationPolicy=Orphan"), None).await;
    assert_eq!(orphan.body["metadata"]["finalizers"], json!(["orphan"]));
    c.call(Method::POST, DEPLOYS, Some(deployment("bg", 1))).await;
    let bg = c.call(Method::DELETE, &format!("{DEPLOYS}/bg"), Some(json!({"propagationPolicy": "Background"}))).await;
    assert_eq!(bg.body["status"], "Success");
    assert_eq!(c.get(&format!("{DEPLOYS}/bg")).await.code, 404);
}

#[tokio::test]
async fn pods_on_a_node_are_deleted_gracefully_and_removed_at_grace_zero() {
    let c = cluster().await;
    c.call(Method::POST, PODS, Some(pod("unbound", None))).await;
    assert_eq!(c.call(Method::DELETE, &format!("{PODS}/unbound"), None).await.code, 200);
    assert_eq!(c.get(&format!("{PODS}/unbound")).await.code, 404, "an unscheduled pod goes at once");
    c.call(Method::POST, PODS, Some(pod("bound", Some("node-1")))).await;
    let graceful = c.call(Method::DELETE, &format!("{PODS}/bound"), None).await;
    assert_eq!(graceful.body["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(c.get(&format!("{PODS}/bound")).await.code, 200, "the node agent has not confirmed yet");
    let shorter = c.call(Method::DELETE, &format!("{PODS}/bound"), Some(json!({"gracePeriodSeconds": 5}))).await;
    assert_eq!(shorter.body["metadata"]["deletionGracePeriodSeconds"], 5);
    let confirmed = c.call(Method::DELETE, &format!("{PODS}/bound"), Some(json!({"gracePeriodSeconds": 0}))).await;
    assert_eq!(confirmed.code, 200);
    assert_eq!(c.get(&format!("{PODS}/bound")).await.code, 404);
}

#[tokio::test]
async fn binding_assigns_a_pod_once() {
    let c = cluster().await;
    c.call(Method::POST, PODS, Some(pod("p", None))).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                         "target": {"kind": "Node", "name": "node-1"}});
    let bound = c.call(Method::POST, &format!("{PODS}/p/binding"), Some(binding.clone())).await;
    assert_eq!(bound.code, 201, "{}", bound.body);
    let p = c.get(&format!("{PODS}/p")).await.body;
    assert_eq!(p["spec"]["nodeName"], "node-1");
    assert_eq!(p["status"]["conditions"][0]["type"], "PodScheduled");
    let again = c.call(Method::POST, &format!("{PODS}/p/binding"), Some(binding)).await;
    assert_eq!(again.code, 409);
}

#[tokio::test]
async fn eviction_honours_the_disruption_budget() {
    let c = cluster().await;
    let mut running = pod("db-0", Some("node-1"));
    running["spec"]["terminationGracePeriodSeconds"] = json!(0);
    c.call(Method::POST, PODS, Some(running)).await;
    let mut status = c.get(&format!("{PODS}/db-0")).await.body;
    status["status"]["phase"] = json!("Running");
    // A ready pod: an unready one would not spend the budget.
    status["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    assert_eq!(c.call(Method::PUT, &format!("{PODS}/db-0/status"), Some(status)).await.code, 200);
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
                     "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}});
    let pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
    let created = c.call(Method::POST, pdbs, Some(pdb)).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "db-0"}});
    let denied = c.call(Method::POST, &format!("{PODS}/db-0/eviction"), Some(eviction.clone())).await;
    assert_eq!(denied.code, 429, "{}", denied.body);
    assert_eq!(denied.body["details"]["causes"][0]["reason"], "DisruptionBudget");
    let mut budget = created.body.clone();
    budget["status"] = json!({"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 2,
                              "desiredHealthy": 1, "expectedPods": 2});
    assert_eq!(c.call(Method::PUT, &format!("{pdbs}/db/status"), Some(budget)).await.code, 200);
    let allowed = c.call(Method::POST, &format!("{PODS}/db-0/eviction"), Some(eviction)).await;
    assert_eq!(allowed.code, 201, "{}", allowed.body);
    assert_eq!(c.get(&format!("{PODS}/db-0")).await.code, 404);
    assert_eq!(c.get(&format!("{pdbs}/db")).await.body["status"]["disruptionsAllowed"], 0);
}

#[tokio::test]
async fn namespaces_must_exist_and_be_open() {
    let c = cluster().await;
    let missing = c.call(Method::POST, "/api/v1/namespaces/nowhere/configmaps", Some(configmap("a"))).await;
    assert_eq!(missing.code, 404);
    assert_eq!(missing.body["message"], "namespaces \"nowhere\" not found");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}});
    let created = c.call(Method::POST, "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(created.body["spec"]["finalizers"], json!(["kubernetes"]));
    let deleting = c.call(Method::DELETE, "/api/v1/namespaces/doomed", None).await;
    assert_eq!(deleting.body["status"]["phase"], "Terminating");
    let refused = c.call(Method::POST, "/api/v1/namespaces/doomed/configmaps", Some(configmap("a"))).await;
    assert_eq!(refused.code, 403);
    // Writing its status (the namespace controller's conditions) does not release it: only `finalize` does.
    let mut status = deleting.body.clone();
    status["status"]["conditions"] = json!([{"type": "NamespaceContentRemaining", "status": "True"}]);
    let written = c.call(Method::PUT, "/api/v1/namespaces/doomed/status", Some(status)).await;
    assert_eq!(written.code, 200, "{}", written.body);
    assert_eq!(c.get("/api/v1/namespaces/doomed").await.body["status"]["phase"], "Terminating");
    let finalize =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}, "spec": {"finalizers": []}});
    let done = c.call(Method::PUT, "/api/v1/namespaces/doomed/finalize", Some(finalize)).await;
    assert_eq!(done.code, 200, "{}", done.body);
    assert_eq!(c.get("/api/v1/namespaces/doomed").await.code, 404);
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let c = cluster().await;
    let dry = c.call(Method::POST, &format!("{CMS}?dryRun=All"), Some(configmap("ghost"))).await;
    assert_eq!(dry.code, 201);
    assert_eq!(dry.body["metadata"]["name"], "ghost");
    assert_eq!(c.get(&format!("{CMS}/ghost")).await.code, 404);
    c.call(Method::POST, CMS, Some(configmap("real"))).await;
    let dry_patch =
        c.patch(&format!("{CMS}/real?dryRun=All"), "application/merge-patch+json", json!({"data": {"k": "dry"}})).await;
    assert_eq!(dry_patch.body["data"]["k"], "dry", "a dry run answers with the result it would store");
    assert_eq!(c.get(&format!("{CMS}/real")).await.body["data"]["k"], "v");
    let dry_delete = c.call(Method::DELETE, &format!("{CMS}/real?dryRun=All"), None).await;
    assert_eq!(dry_delete.code, 200);
    assert_eq!(c.get(&format!("{CMS}/real")).await.code, 200);
}

#[tokio::test]
async fn unknown_fields_are_refused_warned_or_dropped_as_asked() {
    let c = cluster().await;
    let mut cm = configmap("u");
    cm["bogus"] = json!(1);
    let strict = c.call(Method::POST, &format!("{CMS}?fieldValidation=Strict"), Some(cm.clone())).await;
    assert_eq!(strict.code, 400);
    assert_eq!(strict.body["message"], "strict decoding error: unknown field \"bogus\"");
    let warned = c.call(Method::POST, CMS, Some(cm.clone())).await;
    assert_eq!(warned.code, 201);
    assert_eq!(warned.warnings, vec!["unknown field \"bogus\"".to_string()]);
    assert!(warned.body.get("bogus").is_none());
}

/// What `helm upgrade --set command[0]=false` sends: a strategic merge patch that makes a string a boolean. Stored,
/// it would stop every typed client listing Deployments (the controllers' informers among them).
#[tokio::test]
async fn a_write_that_gives_a_field_the_wrong_type_is_invalid_and_stores_nothing() {
    let c = cluster().await;
    let created = c.call(Method::POST, DEPLOYS, Some(deployment("typed", 1))).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "command": [false]}]}}}});
    let patched = c.patch(&format!("{DEPLOYS}/typed"), "application/strategic-merge-patch+json", patch).await;
    assert_eq!((patched.code, &patched.body["reason"]), (422, &json!("Invalid")), "{}", patched.body);
    let field = "spec.template.spec.containers[0].command[0]";
    assert_eq!(patched.body["details"]["causes"][0]["field"], field, "{}", patched.body);
    let stored = c.get(&format!("{DEPLOYS}/typed")).await.body;
    assert_eq!(rv(&stored), rv(&created.body), "the refused patch wrote nothing");
    assert!(stored["spec"]["template"]["spec"]["containers"][0].get("command").is_none(), "{stored}");

    let mut bad = pod("typed", None);
    bad["spec"]["containers"][0]["env"] = json!([{"name": "PORT", "value": 80}]);
    let created = c.call(Method::POST, PODS, Some(bad)).await;
    assert_eq!(created.code, 422, "{}", created.body);
    assert_eq!(created.body["details"]["causes"][0]["field"], "spec.containers[0].env[0].value");
    assert_eq!(c.get(&format!("{PODS}/typed")).await.code, 404);
}

#[tokio::test]
async fn lists_page_through_one_consistent_snapshot() {
    let c = cluster().await;
    for i in 0..10 {
        c.call(Method::POST, CMS, Some(configmap(&format!("cm-{i:02}")))).await;
    }
    let first = c.get(&format!("{CMS}?limit=4")).await.body;
    assert_eq!(first["items"].as_array().unwrap().len(), 4);
    assert_eq!(first["metadata"]["remainingItemCount"], 6);
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    // Changes after the first page do not show in later pages.
    c.call(Method::DELETE, &format!("{CMS}/cm-08"), None).await;
    c.call(Method::POST, CMS, Some(configmap("cm-99"))).await;
    let mut names: Vec<String> = Vec::new();
    let mut page = first;
    loop {
        names.extend(
            page["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        let Some(next) = page["metadata"]["continue"].as_str().map(str::to_string) else { break };
        page = c.get(&format!("{CMS}?limit=4&continue={}", urlencode(&next))).await.body;
        assert_eq!(page["kind"], "ConfigMapList", "{page}");
    }
    let expected: Vec<String> = (0..10).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(names, expected);
    assert!(!token.is_empty());
    let now = c.get(CMS).await.body;
    let current: Vec<&str> =
        now["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    assert!(current.contains(&"cm-99") && !current.contains(&"cm-08"));
    let bad = c.get(&format!("{CMS}?limit=4&continue=garbage")).await;
    assert_eq!(bad.code, 400);
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn an_exact_list_shows_the_past() {
    let c = cluster().await;
    let a = c.call(Method::POST, CMS, Some(configmap("a"))).await.body;
    c.call(Method::POST, CMS, Some(configmap("b"))).await;
    let past = c.get(&format!("{CMS}?resourceVersion={}&resourceVersionMatch=Exact", rv(&a))).await.body;
    let names: Vec<&str> =
        past["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["a"]);
    assert_eq!(past["metadata"]["resourceVersion"], rv(&a).to_string());
}

#[tokio::test]
async fn selectors_filter_lists_and_bad_ones_are_bad_requests() {
    let c = cluster().await;
    c.call(Method::POST, CMS, Some(configmap("one"))).await;
    let mut other = configmap("two");
    other["metadata"]["labels"] = json!({"app": "other", "tier": "db"});
    c.call(Method::POST, CMS, Some(other)).await;
    let names = |v: &Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&c.get(&format!("{CMS}?labelSelector=app%3Ddemo")).await.body), vec!["one"]);
    assert_eq!(names(&c.get(&format!("{CMS}?labelSelector=app%20in%20(other,x)")).await.body), vec!["two"]);
    assert_eq!(names(&c.get(&format!("{CMS}?labelSelector=!tier")).await.body), vec!["one"]);
    assert_eq!(names(&c.get(&format!("{CMS}?fieldSelector=metadata.name%3Dtwo")).await.body), vec!["two"]);
    assert_eq!(c.get(&format!("{CMS}?labelSelector=app%20in%20")).await.code, 400);
    assert_eq!(c.get(&format!("{CMS}?fieldSelector=data.k%3Dv")).await.code, 400);
    let all = c.get("/api/v1/configmaps").await.body;
    assert_eq!(names(&all).len(), 2, "a cluster-wide list sees every namespace");
}

#[tokio::test]
async fn a_watch_resumes_from_a_resource_version_without_gaps() {
    let c = cluster().await;
    let first = c.call(Method::POST, CMS, Some(configmap("w1"))).await.body;
    c.call(Method::POST, CMS, Some(configmap("w2"))).await;
    c.call(Method::DELETE, &format!("{CMS}/w1"), None).await;
    let mut watch = c.watch(&format!("{CMS}?watch=true&resourceVersion={}", rv(&first))).await;
    let (k1, o1) = watch.next_event().await;
    let (k2, o2) = watch.next_event().await;
    assert_eq!((k1.as_str(), o1["metadata"]["name"].as_str()), ("ADDED", Some("w2")));
    assert_eq!((k2.as_str(), o2["metadata"]["name"].as_str()), ("DELETED", Some("w1")));
    assert!(rv(&o2) > rv(&o1), "a deletion carries the revision of the delete");
    c.call(Method::POST, CMS, Some(configmap("w3"))).await;
    let (k3, o3) = watch.next_event().await;
    assert_eq!((k3.as_str(), o3["metadata"]["name"].as_str()), ("ADDED", Some("w3")));
}

#[tokio::test]
async fn a_label_filtered_watch_sees_objects_leave_and_enter_the_selection() {
    let c = cluster().await;
    let created = c.call(Method::POST, CMS, Some(configmap("m"))).await.body;
    let mut watch =
        c.watch(&format!("{CMS}?watch=true&labelSelector=app%3Ddemo&resourceVersion={}", rv(&created))).await;
    c.patch(&format!("{CMS}/m"), "application/merge-patch+json", json!({"metadata": {"labels": {"app": "x"}}})).await;
    assert_eq!(watch.next_event().await.0, "DELETED");
    c.patch(&format!("{CMS}/m"), "application/merge-patch+json", json!({"metadata": {"labels": {"app": "demo"}}}))
        .await;
    assert_eq!(watch.next_event().await.0, "ADDED");
}

#[tokio::test]
async fn watch_list_sends_the_state_then_a_bookmark_then_changes() {
    let c = cluster().await;
    c.call(Method::POST, CMS, Some(configmap("s1"))).await;
    c.call(Method::POST, CMS, Some(configmap("s2"))).await;
    let mut watch = c
        .watch(&format!(
            "{CMS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        ))
        .await;
    assert_eq!(watch.next_event().await.0, "ADDED");
    assert_eq!(watch.next_event().await.0, "ADDED");
    let (kind, bookmark) = watch.next_event().await;
    assert_eq!(kind, "BOOKMARK");
    assert_eq!(bookmark["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    assert_eq!(bookmark["kind"], "ConfigMap");
    c.call(Method::POST, CMS, Some(configmap("s3"))).await;
    let (kind, obj) = watch.next_event().await;
    assert_eq!((kind.as_str(), obj["metadata"]["name"].as_str()), ("ADDED", Some("s3")));
    let refused = c.request(Method::GET, &format!("{CMS}?watch=true&sendInitialEvents=true"), "", Bytes::new()).await;
    assert!(matches!(refused, Reply::Full { code: 422, .. }), "sendInitialEvents needs NotOlderThan");
}

#[tokio::test]
async fn a_watch_from_before_the_window_is_told_to_relist() {
    let c = cluster().await;
    // Revision 1 precedes the cache's history (it started after the built-in namespaces were written).
    let mut watch = c.watch(&format!("{CMS}?watch=true&resourceVersion=1")).await;
    let event = watch.next().await.expect("an error event");
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
}

#[tokio::test]
async fn a_consistent_list_sees_every_acknowledged_write() {
    let c = cluster().await;
    for i in 0..50 {
        let created = c.call(Method::POST, CMS, Some(configmap(&format!("rw-{i}")))).await;
        assert_eq!(created.code, 201);
        let listed = c.get(CMS).await.body;
        assert_eq!(listed["items"].as_array().unwrap().len(), i + 1);
        assert!(rv(&json!({"metadata": listed["metadata"]})) >= rv(&created.body));
    }
}

#[tokio::test]
async fn discovery_lists_groups_resources_and_subresources() {
    let c = cluster().await;
    let apps = c.get("/apis/apps/v1").await.body;
    let names: Vec<&str> = apps["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"deployments") && names.contains(&"deployments/scale"), "{names:?}");
    let groups = c.get("/apis").await.body;
    assert_eq!(groups["kind"], "APIGroupList");
    let autoscaling = groups["groups"].as_array().unwrap().iter().find(|g| g["name"] == "autoscaling").unwrap();
    assert_eq!(autoscaling["preferredVersion"]["version"], "v2");
    assert_eq!(c.get("/apis/nothing/v1").await.code, 404);
}

#[tokio::test]
async fn events_and_old_autoscalers_are_served_in_their_own_versions() {
    let c = cluster().await;
    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
                       "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}, "note": "hello",
                       "reason": "Tested", "type": "Normal", "eventTime": "2026-11-27T10:00:00.000000Z",
                       "reportingController": "tests", "reportingInstance": "t1", "action": "Test"});
    let created = c.call(Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events", Some(event)).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["note"], "hello");
    let core = c.get("/api/v1/namespaces/default/events/e1").await.body;
    assert_eq!(core["message"], "hello");
    assert_eq!(core["involvedObject"]["name"], "p");
    let hpa = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
                     "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                              "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70}});
    let v1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";
    let created = c.call(Method::POST, v1, Some(hpa)).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["spec"]["targetCPUUtilizationPercentage"], 70);
    let v2 = c.get("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/h").await.body;
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 70);
    let patched = c
        .patch(
            &format!("{v1}/h"),
            "application/merge-patch+json",
            json!({"spec": {"targetCPUUtilizationPercentage": 50}}),
        )
        .await;
    assert_eq!(patched.code, 200, "{}", patched.body);
    assert_eq!(patched.body["spec"]["targetCPUUtilizationPercentage"], 50, "{}", patched.body);
    let v2 = c.get("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/h").await.body;
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50, "{v2}");
}
