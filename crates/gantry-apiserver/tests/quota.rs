//! ResourceQuota and LimitRange admission against a real API server on a real SQLite file. No controller runs
//! here: the tests write a quota's `status` themselves, as the quota controller would.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

mod common;

use common::Cluster;
use http::Method;
use serde_json::{Value, json};

async fn namespace(c: &Cluster, name: &str) {
    let r = c.call(Method::POST, "/api/v1/namespaces", Some(json!({"metadata": {"name": name}}))).await;
    assert_eq!(r.code, 201, "{}", r.body);
}

/// A quota limiting `hard`, with its status set as the quota controller sets it (nothing used yet).
async fn counted_quota(c: &Cluster, ns: &str, name: &str, hard: Value) {
    let quota = json!({"metadata": {"name": name}, "spec": {"hard": hard}});
    let r = c.call(Method::POST, &format!("/api/v1/namespaces/{ns}/resourcequotas"), Some(quota)).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let used: serde_json::Map<String, Value> =
        hard.as_object().unwrap().keys().map(|k| (k.clone(), json!("0"))).collect();
    let status = json!({"status": {"hard": hard, "used": used}});
    let path = format!("/api/v1/namespaces/{ns}/resourcequotas/{name}/status");
    let r = c.patch(&path, "application/merge-patch+json", status).await;
    assert_eq!(r.code, 200, "{}", r.body);
}

async fn used(c: &Cluster, ns: &str, name: &str) -> Value {
    c.get(&format!("/api/v1/namespaces/{ns}/resourcequotas/{name}")).await.body["status"]["used"].clone()
}

fn pod(name: &str, resources: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox",
        "resources": resources}]}})
}

async fn create_pod(c: &Cluster, ns: &str, body: Value) -> common::Response {
    c.call(Method::POST, &format!("/api/v1/namespaces/{ns}/pods"), Some(body)).await
}

#[tokio::test]
async fn a_pod_beyond_the_quota_is_forbidden_in_kubes_words_and_not_stored() {
    let c = common::cluster().await;
    namespace(&c, "q-count").await;
    counted_quota(&c, "q-count", "q", json!({"pods": "2"})).await;
    for name in ["p1", "p2"] {
        let r = create_pod(&c, "q-count", pod(name, json!({}))).await;
        assert_eq!(r.code, 201, "{}", r.body);
    }
    assert_eq!(used(&c, "q-count", "q").await, json!({"pods": "2"}));
    let r = create_pod(&c, "q-count", pod("p3", json!({}))).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(r.body["reason"], "Forbidden");
    assert_eq!(
        r.body["message"],
        "pods \"p3\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    );
    assert_eq!(r.body["details"], json!({"name": "p3", "kind": "pods"}));
    assert_eq!(c.get("/api/v1/namespaces/q-count/pods/p3").await.code, 404);
    assert_eq!(used(&c, "q-count", "q").await, json!({"pods": "2"}));
}

#[tokio::test]
async fn any_kind_is_counted_by_count_names() {
    let c = common::cluster().await;
    namespace(&c, "q-any").await;
    counted_quota(&c, "q-any", "q", json!({"count/configmaps": "1", "configmaps": "5"})).await;
    let cm = |name: &str| json!({"metadata": {"name": name}, "data": {"a": "b"}});
    let r = c.call(Method::POST, "/api/v1/namespaces/q-any/configmaps", Some(cm("one"))).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(used(&c, "q-any", "q").await, json!({"count/configmaps": "1", "configmaps": "1"}));
    let r = c.call(Method::POST, "/api/v1/namespaces/q-any/configmaps", Some(cm("two"))).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "configmaps \"two\" is forbidden: exceeded quota: q, requested: count/configmaps=1, \
         used: count/configmaps=1, limited: count/configmaps=1"
    );
}

#[tokio::test]
async fn a_quota_applies_once_counted_and_refuses_while_its_usage_is_unknown() {
    let c = common::cluster().await;
    namespace(&c, "q-unknown").await;
    // As in kube: a quota the controller has not synced yet (no status.hard) takes nothing in.
    let quota = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}});
    let r = c.call(Method::POST, "/api/v1/namespaces/q-unknown/resourcequotas", Some(quota)).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(create_pod(&c, "q-unknown", pod("early", json!({}))).await.code, 201);
    let status = json!({"status": {"hard": {"pods": "1", "services": "1"}, "used": {"services": "0"}}});
    let r =
        c.patch("/api/v1/namespaces/q-unknown/resourcequotas/q/status", "application/merge-patch+json", status).await;
    assert_eq!(r.code, 200, "{}", r.body);
    let r = create_pod(&c, "q-unknown", pod("late", json!({}))).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(r.body["message"], "pods \"late\" is forbidden: status unknown for quota: q, resources: pods");
}

#[tokio::test]
async fn a_compute_quota_requires_requests_and_charges_them() {
    let c = common::cluster().await;
    namespace(&c, "q-cpu").await;
    counted_quota(&c, "q-cpu", "q", json!({"requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2"})).await;
    let r = create_pod(&c, "q-cpu", pod("bare", json!({}))).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "pods \"bare\" is forbidden: failed quota: q: must specify limits.cpu for: c; requests.cpu for: c; \
         requests.memory for: c"
    );
    let resources = json!({"requests": {"cpu": "600m", "memory": "256Mi"}, "limits": {"cpu": "1"}});
    let r = create_pod(&c, "q-cpu", pod("sized", resources.clone())).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(
        used(&c, "q-cpu", "q").await,
        json!({"requests.cpu": "600m", "requests.memory": "256Mi", "limits.cpu": "1"})
    );
    let r = create_pod(&c, "q-cpu", pod("second", resources)).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "pods \"second\" is forbidden: exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=600m, \
         limited: requests.cpu=1"
    );
}

/// Creates a pod from a task of its own, so that creates really run at once on the runtime's threads.
fn spawn_create(c: &Cluster, ns: &str, body: Value) -> tokio::task::JoinHandle<u16> {
    let api = std::sync::Arc::clone(&c.api);
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    let request = gantry_apiserver::api::ApiRequest {
        method: Method::POST,
        path: format!("/api/v1/namespaces/{ns}/pods"),
        query: gantry_apiserver::request::Query::parse(None),
        headers,
        body: bytes::Bytes::from(serde_json::to_vec(&body).unwrap()),
        user: gantry_apiserver::auth::User::new("tester", vec![]),
    };
    tokio::spawn(async move {
        match api.handle(request).await {
            gantry_apiserver::api::Reply::Full { code, .. } => code,
            _ => 0,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_store_exactly_what_the_quota_allows() {
    let c = common::cluster().await;
    namespace(&c, "q-race").await;
    counted_quota(&c, "q-race", "q", json!({"pods": "5"})).await;
    let creates: Vec<_> = (0..20).map(|i| spawn_create(&c, "q-race", pod(&format!("p{i}"), json!({})))).collect();
    let mut codes = Vec::new();
    for create in creates {
        codes.push(create.await.unwrap());
    }
    let created = codes.iter().filter(|code| **code == 201).count();
    let refused = codes.iter().filter(|code| **code == 403).count();
    assert_eq!((created, refused), (5, 15), "{codes:?}");
    let list = c.get("/api/v1/namespaces/q-race/pods").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 5);
    assert_eq!(used(&c, "q-race", "q").await, json!({"pods": "5"}));
}

#[tokio::test]
async fn a_dry_run_is_checked_but_never_charged() {
    let c = common::cluster().await;
    namespace(&c, "q-dry").await;
    counted_quota(&c, "q-dry", "q", json!({"pods": "1"})).await;
    let r = c.call(Method::POST, "/api/v1/namespaces/q-dry/pods?dryRun=All", Some(pod("d", json!({})))).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(used(&c, "q-dry", "q").await, json!({"pods": "0"}));
    assert_eq!(create_pod(&c, "q-dry", pod("real", json!({}))).await.code, 201);
    let r = c.call(Method::POST, "/api/v1/namespaces/q-dry/pods?dryRun=All", Some(pod("d", json!({})))).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(used(&c, "q-dry", "q").await, json!({"pods": "1"}));
}

#[tokio::test]
async fn a_service_turning_into_a_load_balancer_is_charged() {
    let c = common::cluster().await;
    namespace(&c, "q-svc").await;
    counted_quota(&c, "q-svc", "q", json!({"services": "2", "services.loadbalancers": "0"})).await;
    let svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}});
    let r = c.call(Method::POST, "/api/v1/namespaces/q-svc/services", Some(svc)).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let path = "/api/v1/namespaces/q-svc/services/web";
    let r = c.patch(path, "application/merge-patch+json", json!({"spec": {"type": "LoadBalancer"}})).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "services \"web\" is forbidden: exceeded quota: q, requested: services.loadbalancers=1, \
         used: services.loadbalancers=0, limited: services.loadbalancers=0"
    );
    assert_eq!(c.get(path).await.body["spec"]["type"], "ClusterIP");
    assert_eq!(used(&c, "q-svc", "q").await, json!({"services": "1", "services.loadbalancers": "0"}));
}

#[tokio::test]
async fn limit_range_defaults_are_applied_to_a_created_pods_containers() {
    let c = common::cluster().await;
    namespace(&c, "lr-default").await;
    let lr = json!({"metadata": {"name": "lr"}, "spec": {"limits": [{"type": "Container",
        "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m"}}]}});
    let r = c.call(Method::POST, "/api/v1/namespaces/lr-default/limitranges", Some(lr)).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = create_pod(&c, "lr-default", pod("p", json!({}))).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let stored = c.get("/api/v1/namespaces/lr-default/pods/p").await.body;
    assert_eq!(
        stored["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
    );
    assert_eq!(
        stored["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );
    assert_eq!(stored["status"]["qosClass"], "Burstable");
}

#[tokio::test]
async fn limit_range_bounds_are_forbidden_in_kubes_words() {
    let c = common::cluster().await;
    namespace(&c, "lr-max").await;
    let lr = json!({"metadata": {"name": "lr"}, "spec": {"limits": [
        {"type": "Container", "max": {"cpu": "500m"}, "min": {"memory": "100Mi"}},
        {"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}]}});
    let r = c.call(Method::POST, "/api/v1/namespaces/lr-max/limitranges", Some(lr)).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = create_pod(&c, "lr-max", pod("p", json!({"limits": {"cpu": "1", "memory": "200Mi"}}))).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(r.body["message"], "pods \"p\" is forbidden: maximum cpu usage per Container is 500m, but limit is 1");
    let r = create_pod(&c, "lr-max", pod("small", json!({"requests": {"memory": "50Mi"}}))).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "pods \"small\" is forbidden: minimum memory usage per Container is 100Mi, but request is 50Mi"
    );
    assert_eq!(c.get("/api/v1/namespaces/lr-max/pods/p").await.code, 404);
    let claim = json!({"metadata": {"name": "big"}, "spec": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}}}});
    let r = c.call(Method::POST, "/api/v1/namespaces/lr-max/persistentvolumeclaims", Some(claim)).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "persistentvolumeclaims \"big\" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, \
         but request is 5Gi"
    );
}
