//! Server-side apply through the API (`PATCH application/apply-patch+yaml`), against a real SQLite store and
//! the real watch cache: creation, re-apply, conflicts and force, removal of given-up fields, shared map
//! lists, status, dry runs, and managedFields written by clients. Expected answers are kube-apiserver's.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

use std::sync::Arc;

use bytes::Bytes;
use gantry_apiserver::api::{ApiRequest, Reply};
use gantry_apiserver::auth::User;
use gantry_apiserver::request::Query;
use gantry_apiserver::{Api, RunningServer};
use http::{HeaderMap, Method};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const APPLY: &str = "application/apply-patch+yaml";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

struct Cluster {
    server: Option<RunningServer>,
    api: Arc<Api>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        drop(self.server.take());
    }
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.unwrap();
    let api = Arc::clone(&server.api);
    Cluster { server: Some(server), api, shutdown, _dir: dir }
}

struct Response {
    code: u16,
    body: Value,
}

impl Cluster {
    async fn send(&self, method: Method, path_and_query: &str, content_type: &str, body: Vec<u8>) -> Response {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut headers = HeaderMap::new();
        if !content_type.is_empty() {
            headers.insert("content-type", content_type.parse().unwrap());
        }
        headers.insert("user-agent", "apply-test/1.0".parse().unwrap());
        let request = ApiRequest {
            method,
            path: path.to_string(),
            query: Query::parse(query),
            headers,
            body: Bytes::from(body),
            user: User::new("tester", vec![]),
        };
        match self.api.handle(request).await {
            Reply::Full { code, body, .. } => {
                Response { code, body: serde_json::from_slice(&body).unwrap_or(Value::Null) }
            }
            Reply::Raw(r) => {
                Response { code: r.status().as_u16(), body: serde_json::from_slice(r.body()).unwrap_or(Value::Null) }
            }
            Reply::Stream { .. } => panic!("unexpected stream"),
        }
    }

    async fn apply(&self, path: &str, config: &Value) -> Response {
        self.send(Method::PATCH, path, APPLY, serde_json::to_vec(config).unwrap()).await
    }

    async fn apply_yaml(&self, path: &str, yaml: &str) -> Response {
        self.send(Method::PATCH, path, APPLY, yaml.as_bytes().to_vec()).await
    }

    async fn get(&self, path: &str) -> Value {
        let got = self.send(Method::GET, path, "", Vec::new()).await;
        assert_eq!(got.code, 200, "{}", got.body);
        got.body
    }
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": image}]}}}})
}

fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"].as_array().and_then(|l| l.iter().find(|e| e["manager"] == manager))
}

fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|l| l.iter().map(|e| e["manager"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn apply_creates_with_201_then_answers_200_and_changes_nothing_when_reapplied() {
    let c = cluster().await;
    let created = c.apply(&format!("{DEPLOYS}/web?fieldManager=kubectl&force=false"), &deployment(2, "nginx")).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["spec"]["replicas"], 2);
    // Defaults are applied as for any create, and owned by nobody.
    assert_eq!(created.body["spec"]["revisionHistoryLimit"], 10);
    let e = entry(&created.body, "kubectl").unwrap();
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
    );
    let again = c.apply(&format!("{DEPLOYS}/web?fieldManager=kubectl"), &deployment(2, "nginx")).await;
    assert_eq!(again.code, 200, "{}", again.body);
    assert_eq!(again.body["metadata"]["resourceVersion"], created.body["metadata"]["resourceVersion"]);
    assert_eq!(again.body["metadata"]["managedFields"], created.body["metadata"]["managedFields"]);
}

#[tokio::test]
async fn a_yaml_body_is_applied_like_json() {
    let c = cluster().await;
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n";
    let created = c.apply_yaml(&format!("{CMS}/cfg?fieldManager=tool"), yaml).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["data"], json!({"a": "1"}));
    assert_eq!(entry(&created.body, "tool").unwrap()["fieldsV1"], json!({"f:data": {"f:a": {}}}));
}

#[tokio::test]
async fn a_conflict_is_a_409_with_field_manager_causes_and_force_takes_ownership() {
    let c = cluster().await;
    // Created by a client-side apply (an Update manager), then applied by another manager.
    let created = c
        .send(
            Method::POST,
            &format!("{DEPLOYS}?fieldManager=kubectl-client-side-apply"),
            "application/json",
            serde_json::to_vec(&deployment(2, "nginx")).unwrap(),
        )
        .await;
    assert_eq!(created.code, 201, "{}", created.body);
    let refused = c.apply(&format!("{DEPLOYS}/web?fieldManager=kubectl&force=false"), &deployment(3, "nginx")).await;
    assert_eq!(refused.code, 409, "{}", refused.body);
    assert_eq!(refused.body["reason"], "Conflict");
    assert_eq!(
        refused.body["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        refused.body["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
                "field": ".spec.replicas"}])
    );
    assert_eq!(c.get(&format!("{DEPLOYS}/web")).await["spec"]["replicas"], 2);
    let forced = c.apply(&format!("{DEPLOYS}/web?fieldManager=kubectl&force=true"), &deployment(3, "nginx")).await;
    assert_eq!(forced.code, 200, "{}", forced.body);
    assert_eq!(forced.body["spec"]["replicas"], 3);
    let csa = entry(&forced.body, "kubectl-client-side-apply").unwrap();
    assert!(csa["fieldsV1"]["f:spec"].get("f:replicas").is_none(), "{csa}");
    assert!(entry(&forced.body, "kubectl").unwrap()["fieldsV1"]["f:spec"].get("f:replicas").is_some());
}

#[tokio::test]
async fn a_field_dropped_from_the_configuration_disappears() {
    let c = cluster().await;
    let mut config = deployment(2, "nginx");
    config["spec"]["minReadySeconds"] = json!(5);
    config["metadata"]["labels"] = json!({"tier": "front", "team": "a"});
    let path = format!("{DEPLOYS}/web?fieldManager=ci");
    assert_eq!(c.apply(&path, &config).await.code, 201);
    config["spec"].as_object_mut().unwrap().remove("minReadySeconds");
    config["metadata"]["labels"].as_object_mut().unwrap().remove("team");
    let after = c.apply(&path, &config).await;
    assert_eq!(after.code, 200, "{}", after.body);
    assert!(after.body["spec"].get("minReadySeconds").is_none(), "{}", after.body);
    assert_eq!(after.body["metadata"]["labels"], json!({"tier": "front"}));
}

#[tokio::test]
async fn two_managers_share_the_containers_list_element_by_element() {
    let c = cluster().await;
    assert_eq!(c.apply(&format!("{DEPLOYS}/web?fieldManager=app"), &deployment(1, "web:1")).await.code, 201);
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "log", "image": "log:1"}]}}}});
    let shared = c.apply(&format!("{DEPLOYS}/web?fieldManager=mesh"), &sidecar).await;
    assert_eq!(shared.code, 200, "{}", shared.body);
    let names: Vec<&str> = shared.body["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["web", "log"]);
    assert_eq!(
        entry(&shared.body, "mesh").unwrap()["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"],
        json!({"k:{\"name\":\"log\"}": {".": {}, "f:image": {}, "f:name": {}}})
    );
    // The app updates its image without touching the sidecar; then the mesh gives its container up.
    assert_eq!(c.apply(&format!("{DEPLOYS}/web?fieldManager=app"), &deployment(1, "web:2")).await.code, 200);
    let bare = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let after = c.apply(&format!("{DEPLOYS}/web?fieldManager=mesh"), &bare).await;
    assert_eq!(after.code, 200, "{}", after.body);
    let containers = after.body["spec"]["template"]["spec"]["containers"].as_array().unwrap().clone();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["image"], "web:2");
    assert_eq!(managers(&after.body), vec!["app"]);
}

#[tokio::test]
async fn status_is_applied_through_its_subresource_only() {
    let c = cluster().await;
    assert_eq!(c.apply(&format!("{DEPLOYS}/web?fieldManager=app"), &deployment(1, "web:1")).await.code, 201);
    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"replicas": 9}, "status": {"observedGeneration": 1, "replicas": 1}});
    let applied = c.apply(&format!("{DEPLOYS}/web/status?fieldManager=ctrl"), &status).await;
    assert_eq!(applied.code, 200, "{}", applied.body);
    assert_eq!(applied.body["status"]["replicas"], 1);
    assert_eq!(applied.body["spec"]["replicas"], 1, "spec is not written through status");
    let e = entry(&applied.body, "ctrl").unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:observedGeneration": {}, "f:replicas": {}}}));
    // Status applied to the main resource is ignored.
    let mut with_status = deployment(1, "web:1");
    with_status["status"] = json!({"replicas": 7});
    let main = c.apply(&format!("{DEPLOYS}/web?fieldManager=app"), &with_status).await;
    assert_eq!(main.body["status"]["replicas"], 1);
    // Status of an object that does not exist is not created.
    let missing = c.apply(&format!("{DEPLOYS}/nothing/status?fieldManager=ctrl"), &status).await;
    assert_eq!(missing.code, 400, "the body names web, not nothing: {}", missing.body);
}

#[tokio::test]
async fn a_dry_run_apply_answers_the_result_and_stores_nothing() {
    let c = cluster().await;
    let dry = c.apply(&format!("{DEPLOYS}/web?fieldManager=ci&dryRun=All"), &deployment(2, "nginx")).await;
    assert_eq!(dry.code, 201, "{}", dry.body);
    assert!(entry(&dry.body, "ci").is_some());
    assert_eq!(c.send(Method::GET, &format!("{DEPLOYS}/web"), "", Vec::new()).await.code, 404);
    assert_eq!(c.apply(&format!("{DEPLOYS}/web?fieldManager=ci"), &deployment(2, "nginx")).await.code, 201);
    let dry = c.apply(&format!("{DEPLOYS}/web?fieldManager=ci&dryRun=All"), &deployment(4, "nginx")).await;
    assert_eq!(dry.code, 200);
    assert_eq!(dry.body["spec"]["replicas"], 4);
    assert_eq!(c.get(&format!("{DEPLOYS}/web")).await["spec"]["replicas"], 2);
}

#[tokio::test]
async fn requests_kube_apiserver_refuses_are_refused() {
    let c = cluster().await;
    let no_manager = c.apply(&format!("{DEPLOYS}/web"), &deployment(1, "x")).await;
    assert_eq!(no_manager.code, 422, "{}", no_manager.body);
    assert_eq!(
        no_manager.body["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let mut with_managed = deployment(1, "x");
    with_managed["metadata"]["managedFields"] = json!([]);
    let refused = c.apply(&format!("{DEPLOYS}/web?fieldManager=m"), &with_managed).await;
    assert_eq!(refused.code, 400);
    assert_eq!(refused.body["message"], "metadata.managedFields must be nil");
    let mut wrong_kind = deployment(1, "x");
    wrong_kind["kind"] = json!("StatefulSet");
    assert_eq!(c.apply(&format!("{DEPLOYS}/web?fieldManager=m"), &wrong_kind).await.code, 400);
    let wrong_name = c.apply(&format!("{DEPLOYS}/other?fieldManager=m"), &deployment(1, "x")).await;
    assert_eq!(wrong_name.code, 400);
    let missing_ns =
        c.apply("/apis/apps/v1/namespaces/nowhere/deployments/web?fieldManager=m", &deployment(1, "x")).await;
    assert_eq!(missing_ns.code, 404, "{}", missing_ns.body);
    let mut dup = deployment(1, "x");
    dup["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "1"}, {"name": "a", "image": "2"}]);
    let dup = c.apply(&format!("{DEPLOYS}/web?fieldManager=m"), &dup).await;
    assert_eq!(dup.code, 400);
    assert!(dup.body["message"].as_str().unwrap().contains("duplicate entries for key [name=\"a\"]"), "{}", dup.body);
    let mut unknown = deployment(1, "x");
    unknown["spec"]["bogus"] = json!(true);
    let strict = c.apply(&format!("{DEPLOYS}/web?fieldManager=m&fieldValidation=Strict"), &unknown).await;
    assert_eq!(strict.code, 400);
    assert_eq!(strict.body["message"], "strict decoding error: unknown field \"spec.bogus\"");
    let invalid = c.apply(&format!("{DEPLOYS}/web?fieldManager=m"), &deployment(-1, "x")).await;
    assert_eq!(invalid.code, 422, "validation runs as for other writes: {}", invalid.body);
    let forced_merge = c
        .send(Method::PATCH, &format!("{DEPLOYS}/web?force=true"), "application/merge-patch+json", b"{}".to_vec())
        .await;
    assert_eq!(forced_merge.code, 422);
}

#[tokio::test]
async fn updates_and_patches_record_their_manager_and_may_rewrite_managed_fields() {
    let c = cluster().await;
    assert_eq!(c.apply(&format!("{DEPLOYS}/web?fieldManager=kubectl"), &deployment(2, "nginx")).await.code, 201);
    let scaled = c
        .send(
            Method::PATCH,
            &format!("{DEPLOYS}/web?fieldManager=kubectl-edit"),
            "application/merge-patch+json",
            br#"{"spec":{"replicas":5}}"#.to_vec(),
        )
        .await;
    assert_eq!(scaled.code, 200, "{}", scaled.body);
    let edit = entry(&scaled.body, "kubectl-edit").unwrap();
    assert_eq!(edit["operation"], "Update");
    assert_eq!(edit["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert!(entry(&scaled.body, "kubectl").unwrap()["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    // The applier now conflicts with the editor.
    let refused = c.apply(&format!("{DEPLOYS}/web?fieldManager=kubectl"), &deployment(2, "nginx")).await;
    assert_eq!(refused.body["details"]["causes"][0]["message"], "conflict with \"kubectl-edit\" using apps/v1");
    // A JSON patch rewriting managedFields (kubectl's upgrade to server-side apply) is honoured, and a stale
    // resourceVersion in it is a conflict.
    let mut rewritten = scaled.body["metadata"]["managedFields"].as_array().unwrap().clone();
    rewritten.retain(|e| e["manager"] == "kubectl");
    let rv = scaled.body["metadata"]["resourceVersion"].clone();
    let patch = json!([{"op": "replace", "path": "/metadata/managedFields", "value": rewritten},
                       {"op": "replace", "path": "/metadata/resourceVersion", "value": rv}]);
    let json_patch = "application/json-patch+json";
    let done = c.send(Method::PATCH, &format!("{DEPLOYS}/web"), json_patch, serde_json::to_vec(&patch).unwrap()).await;
    assert_eq!(done.code, 200, "{}", done.body);
    assert_eq!(managers(&done.body), vec!["kubectl"]);
    let stale = c.send(Method::PATCH, &format!("{DEPLOYS}/web"), json_patch, serde_json::to_vec(&patch).unwrap()).await;
    assert_eq!(stale.code, 409);
    // An empty list resets them; the write's own changes are then all that is recorded.
    let reset = json!({"metadata": {"managedFields": []}, "spec": {"paused": true}});
    let cleared = c
        .send(
            Method::PATCH,
            &format!("{DEPLOYS}/web?fieldManager=resetter"),
            "application/merge-patch+json",
            serde_json::to_vec(&reset).unwrap(),
        )
        .await;
    assert_eq!(cleared.code, 200, "{}", cleared.body);
    assert_eq!(managers(&cleared.body), vec!["resetter"]);
    assert_eq!(entry(&cleared.body, "resetter").unwrap()["fieldsV1"], json!({"f:spec": {"f:paused": {}}}));
}

#[tokio::test]
async fn a_scale_is_owned_through_its_subresource_and_named_so_in_conflicts() {
    let c = cluster().await;
    assert_eq!(c.apply(&format!("{DEPLOYS}/web?fieldManager=kubectl"), &deployment(2, "nginx")).await.code, 201);
    let scaled = c
        .send(
            Method::PATCH,
            &format!("{DEPLOYS}/web/scale?fieldManager=kubectl-scale"),
            "application/merge-patch+json",
            br#"{"spec":{"replicas":4}}"#.to_vec(),
        )
        .await;
    assert_eq!(scaled.code, 200, "{}", scaled.body);
    let live = c.get(&format!("{DEPLOYS}/web")).await;
    let e = entry(&live, "kubectl-scale").unwrap();
    assert_eq!(e["subresource"], "scale");
    assert_eq!(e["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    let refused = c.apply(&format!("{DEPLOYS}/web?fieldManager=kubectl"), &deployment(2, "nginx")).await;
    assert_eq!(
        refused.body["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl-scale\" with subresource \"scale\" using apps/v1: \
         .spec.replicas"
    );
}
