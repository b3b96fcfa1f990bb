//! Services' cluster IPs and node ports, against a real API server on a real SQLite store: automatic and
//! requested values, kube-apiserver's errors, type changes, release on delete, two servers over one store, the
//! built-in Services, the repair pass, and (with `GANTRY_KUBECTL`) the real kubectl.

#![allow(clippy::unwrap_used)] // test setup: a failure here is a failed test

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use gantry_apiserver::api::{ApiRequest, Reply};
use gantry_apiserver::auth::User;
use gantry_apiserver::request::Query;
use gantry_apiserver::services::{IP_ADDRESS_PREFIX, NODE_PORT_PREFIX, ServiceNetwork};
use gantry_apiserver::{Api, RunningServer, ServerConfig};
use gantry_store::Store;
use http::{HeaderMap, Method};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Server {
    running: Option<RunningServer>,
    api: Arc<Api>,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        drop(self.running.take());
    }
}

fn config(dir: &std::path::Path, network: Option<(&str, &str)>) -> ServerConfig {
    let mut config = ServerConfig::loopback(dir);
    if let Some((range, ports)) = network {
        config.services = ServiceNetwork::new(range.parse().unwrap(), ports.parse().unwrap(), None).unwrap();
    }
    config
}

async fn start_on(config: ServerConfig, store: Arc<dyn Store>) -> Server {
    let shutdown = CancellationToken::new();
    let running = gantry_apiserver::start(config, store, shutdown.clone()).await.unwrap();
    let api = Arc::clone(&running.api);
    Server { running: Some(running), api, shutdown }
}

fn sqlite(dir: &std::path::Path) -> Arc<dyn Store> {
    let config = gantry_store::sqlite::SqliteConfig::new(dir.join("state.db"));
    Arc::new(gantry_store::sqlite::SqliteStore::open(config).unwrap())
}

/// A server with the default ranges (or `network`) in a fresh directory, which the caller keeps.
async fn start(dir: &tempfile::TempDir, network: Option<(&str, &str)>) -> Server {
    start_on(config(dir.path(), network), sqlite(dir.path())).await
}

async fn call(api: &Arc<Api>, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
    let mut headers = HeaderMap::new();
    let content_type = if method == Method::PATCH { "application/merge-patch+json" } else { "application/json" };
    headers.insert("content-type", content_type.parse().unwrap());
    let body = body.map(|b| Bytes::from(serde_json::to_vec(&b).unwrap())).unwrap_or_default();
    let request = ApiRequest {
        method,
        path: path.to_string(),
        query: Query::parse(query),
        headers,
        body,
        user: User::new("tester", vec![]),
    };
    match api.handle(request).await {
        Reply::Full { code, body, .. } => (code, serde_json::from_slice(&body).unwrap_or(Value::Null)),
        Reply::Raw(r) => (r.status().as_u16(), serde_json::from_slice(r.body()).unwrap_or(Value::Null)),
        Reply::Stream { .. } => panic!("unexpected stream"),
    }
}

async fn create_ns(api: &Arc<Api>, name: &str) {
    let (code, body) = call(api, Method::POST, "/api/v1/namespaces", Some(json!({"metadata": {"name": name}}))).await;
    assert_eq!(code, 201, "{body}");
}

fn service(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("ports").is_none() && spec["type"] != "ExternalName" {
        spec["ports"] = json!([{"port": 80}]);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

async fn create_svc(api: &Arc<Api>, ns: &str, name: &str, spec: Value) -> (u16, Value) {
    call(api, Method::POST, &format!("/api/v1/namespaces/{ns}/services"), Some(service(name, spec))).await
}

async fn record_exists(api: &Api, key: String) -> bool {
    match api.store.get(key.as_bytes()).await {
        Ok(_) => true,
        Err(gantry_store::StoreError::NotFound { .. }) => false,
        Err(e) => panic!("{e}"),
    }
}

fn ip_of(svc: &Value) -> Ipv4Addr {
    svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_addresses_are_unique_and_in_the_upper_band_for_200_concurrent_services() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None).await;
    create_ns(&server.api, "many").await;
    let creates = (0..200).map(|i| {
        let api = Arc::clone(&server.api);
        async move { create_svc(&api, "many", &format!("s{i}"), json!({})).await }
    });
    let results = futures::future::join_all(creates).await;
    let range: gantry_apiserver::services::Ipv4Cidr = "10.43.0.0/16".parse().unwrap();
    let mut seen = HashSet::new();
    for (code, body) in &results {
        assert_eq!(*code, 201, "{body}");
        let ip = ip_of(body);
        let offset = range.offset_of(ip).unwrap_or_else(|| panic!("{ip} is outside the range"));
        assert!(offset > 256, "{ip} is in the band kept for requested addresses");
        assert!(seen.insert(ip), "{ip} was given twice");
        assert_eq!(body["spec"]["clusterIPs"], json!([ip.to_string()]));
        assert_eq!(body["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(body["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(body["spec"]["internalTrafficPolicy"], "Cluster");
        assert_eq!(body["spec"]["sessionAffinity"], "None");
    }
    let records = server.api.store.list(IP_ADDRESS_PREFIX.as_bytes(), Default::default()).await.unwrap();
    // The 200 and the two built-in Services.
    assert_eq!(records.items.len(), 202);
    let (code, record) = call(&server.api, Method::GET, "/api/v1/namespaces/many/services/s7", None).await;
    assert_eq!(code, 200);
    let key = format!("{IP_ADDRESS_PREFIX}{}", ip_of(&record));
    let stored: Value = serde_json::from_slice(&server.api.store.get(key.as_bytes()).await.unwrap().value).unwrap();
    assert_eq!(stored["kind"], "IPAddress");
    assert_eq!(
        stored["spec"]["parentRef"],
        json!({"group": "", "resource": "services", "namespace": "many", "name": "s7"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_address_is_given_once_and_refused_as_kube_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None).await;
    create_ns(&server.api, "fixed").await;
    let (code, body) = create_svc(&server.api, "fixed", "a", json!({"clusterIP": "10.43.0.50"})).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["clusterIPs"], json!(["10.43.0.50"]));

    let (code, body) = create_svc(&server.api, "fixed", "b", json!({"clusterIP": "10.43.0.50"})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(
        body["message"],
        "Service \"b\" is invalid: spec.clusterIPs: Invalid value: [\"10.43.0.50\"]: failed to allocate IP \
         10.43.0.50: provided IP is already allocated"
    );
    assert_eq!(body["details"]["causes"][0]["field"], "spec.clusterIPs");
    // The cluster DNS address is the kube-dns Service's.
    let (code, body) = create_svc(&server.api, "fixed", "c", json!({"clusterIP": "10.43.0.10"})).await;
    assert_eq!(code, 422, "{body}");

    let (code, body) = create_svc(&server.api, "fixed", "d", json!({"clusterIP": "10.96.0.5"})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "Service \"d\" is invalid: spec.clusterIPs: Invalid value: [\"10.96.0.5\"]: failed to allocate IP 10.96.0.5: \
         the provided IP (10.96.0.5) is not in the valid range. The range of valid IPs is 10.43.0.0/16"
    );
    // Neither failure left a record behind, and a dry run claims nothing.
    assert!(!record_exists(&server.api, format!("{IP_ADDRESS_PREFIX}10.96.0.5")).await);
    let path = "/api/v1/namespaces/fixed/services?dryRun=All";
    let (code, body) =
        call(&server.api, Method::POST, path, Some(service("e", json!({"clusterIP": "10.43.0.60"})))).await;
    assert_eq!(code, 201, "{body}");
    assert!(!record_exists(&server.api, format!("{IP_ADDRESS_PREFIX}10.43.0.60")).await);
    let (code, body) = create_svc(&server.api, "fixed", "e", json!({"clusterIP": "10.43.0.60"})).await;
    assert_eq!(code, 201, "{body}");

    // Headless and ExternalName Services get no address.
    let (code, body) = create_svc(&server.api, "fixed", "headless", json!({"clusterIP": "None"})).await;
    assert_eq!((code, body["spec"]["clusterIPs"].clone()), (201, json!(["None"])), "{body}");
    let (code, body) =
        create_svc(&server.api, "fixed", "ext", json!({"type": "ExternalName", "externalName": "example.com"})).await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"].get("clusterIP").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_are_allocated_checked_and_shared_between_tcp_and_udp() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None).await;
    let api = &server.api;
    create_ns(api, "np").await;
    let (code, body) = create_svc(api, "np", "auto", json!({"type": "NodePort"})).await;
    assert_eq!(code, 201, "{body}");
    let port = body["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30086..=32767).contains(&port), "{port} is outside the automatic band");
    assert_eq!(body["spec"]["externalTrafficPolicy"], "Cluster");
    assert!(record_exists(api, format!("{NODE_PORT_PREFIX}{port}")).await);

    let (code, body) = create_svc(
        api,
        "np",
        "fixed",
        json!({"type": "NodePort",
        "ports": [{"port": 80, "nodePort": 30080}]}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = create_svc(
        api,
        "np",
        "dup",
        json!({"type": "NodePort",
        "ports": [{"port": 80, "nodePort": 30080}]}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "Service \"dup\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );
    let (code, body) = create_svc(
        api,
        "np",
        "low",
        json!({"type": "NodePort",
        "ports": [{"port": 80, "nodePort": 29999}]}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "Service \"low\" is invalid: spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid \
         range. The range of valid ports is 30000-32767"
    );

    let (code, body) = create_svc(
        api,
        "np",
        "dns",
        json!({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let ports = &body["spec"]["ports"];
    assert_ne!(ports[0]["nodePort"].as_i64().unwrap_or(0), 0);
    assert_eq!(ports[0]["nodePort"], ports[1]["nodePort"], "{body}");

    // A LoadBalancer with externalTrafficPolicy Local also gets a health check port; one that opts out of
    // node ports gets none.
    let (code, body) =
        create_svc(api, "np", "lb", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"})).await;
    assert_eq!(code, 201, "{body}");
    let hc = body["spec"]["healthCheckNodePort"].as_i64().unwrap();
    assert!(record_exists(api, format!("{NODE_PORT_PREFIX}{hc}")).await);
    let (code, body) =
        create_svc(api, "np", "lb2", json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false})).await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"]["ports"][0].get("nodePort").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_changes_allocate_and_release_and_deletes_release() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None).await;
    let api = &server.api;
    create_ns(api, "tc").await;
    let path = "/api/v1/namespaces/tc/services/web";
    let (code, body) =
        create_svc(api, "tc", "web", json!({"type": "ExternalName", "externalName": "example.com"})).await;
    assert_eq!(code, 201, "{body}");

    // ExternalName -> NodePort: an address and a node port.
    let patch = json!({"spec": {"type": "NodePort", "externalName": null, "ports": [{"port": 80, "nodePort": 30777}]}});
    let (code, body) = call(api, Method::PATCH, path, Some(patch)).await;
    assert_eq!(code, 200, "{body}");
    let ip = ip_of(&body);
    assert!(record_exists(api, format!("{IP_ADDRESS_PREFIX}{ip}")).await);
    assert!(record_exists(api, format!("{NODE_PORT_PREFIX}30777")).await);

    // A PUT of a manifest that names neither keeps both.
    let (_, current) = call(api, Method::GET, path, None).await;
    let mut put = service("web", json!({"type": "NodePort", "ports": [{"port": 80}]}));
    put["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    let (code, body) = call(api, Method::PUT, path, Some(put)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!((ip_of(&body), body["spec"]["ports"][0]["nodePort"].clone()), (ip, json!(30777)));

    // NodePort -> ClusterIP: the node port goes, the address stays.
    let (code, body) = call(api, Method::PATCH, path, Some(json!({"spec": {"type": "ClusterIP"}}))).await;
    assert_eq!(code, 200, "{body}");
    assert!(body["spec"]["ports"][0].get("nodePort").is_none(), "{body}");
    assert_eq!(ip_of(&body), ip);
    assert!(!record_exists(api, format!("{NODE_PORT_PREFIX}30777")).await);

    // ClusterIP -> ExternalName: the address goes.
    let patch = json!({"spec": {"type": "ExternalName", "externalName": "example.org"}});
    let (code, body) = call(api, Method::PATCH, path, Some(patch)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body["spec"].get("clusterIP").is_none(), "{body}");
    assert!(!record_exists(api, format!("{IP_ADDRESS_PREFIX}{ip}")).await);

    // A delete releases what the Service held: both values can be taken again at once.
    let (code, body) = create_svc(
        api,
        "tc",
        "held",
        json!({"type": "NodePort", "clusterIP": "10.43.0.77",
        "ports": [{"port": 80, "nodePort": 30078}]}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, _) = call(api, Method::DELETE, "/api/v1/namespaces/tc/services/held", None).await;
    assert_eq!(code, 200);
    let (code, body) = create_svc(
        api,
        "tc",
        "again",
        json!({"type": "NodePort", "clusterIP": "10.43.0.77",
        "ports": [{"port": 80, "nodePort": 30078}]}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_range_is_an_internal_error() {
    let dir = tempfile::tempdir().unwrap();
    // 14 addresses, two taken by the built-in Services.
    let server = start(&dir, Some(("10.44.0.0/28", "30000-30001"))).await;
    create_ns(&server.api, "full").await;
    for i in 0..12 {
        let (code, body) = create_svc(&server.api, "full", &format!("s{i}"), json!({})).await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, body) = create_svc(&server.api, "full", "one-too-many", json!({})).await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["message"], "Internal error occurred: failed to allocate a serviceIP: range is full");
    // Node ports: two fit; a third fails the same way, and its address is not leaked.
    call(&server.api, Method::DELETE, "/api/v1/namespaces/full/services/s0", None).await;
    call(&server.api, Method::DELETE, "/api/v1/namespaces/full/services/s1", None).await;
    let (code, body) = create_svc(
        &server.api,
        "full",
        "np",
        json!({"type": "NodePort",
        "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = create_svc(&server.api, "full", "np2", json!({"type": "NodePort"})).await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["message"], "Internal error occurred: failed to allocate a nodePort: range is full");
    let (code, body) = create_svc(&server.api, "full", "s-last", json!({})).await;
    assert_eq!(code, 201, "the failed NodePort Service kept its address: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_servers_over_one_store_never_hand_out_the_same_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path());
    // A /24 leaves 238 addresses for automatic picks: 200 Services collide often.
    let network = Some(("10.45.0.0/24", "30000-30300"));
    let a = start_on(config(dir.path(), network), Arc::clone(&store)).await;
    let b = start_on(config(dir.path(), network), Arc::clone(&store)).await;
    create_ns(&a.api, "shared").await;
    let creates = (0..200).map(|i| {
        let api = if i % 2 == 0 { Arc::clone(&a.api) } else { Arc::clone(&b.api) };
        async move { create_svc(&api, "shared", &format!("s{i}"), json!({"type": "NodePort"})).await }
    });
    let results = futures::future::join_all(creates).await;
    let (mut ips, mut ports) = (HashSet::new(), HashSet::new());
    for (code, body) in &results {
        assert_eq!(*code, 201, "{body}");
        assert!(ips.insert(ip_of(body)), "{} was given twice", ip_of(body));
        let port = body["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!(ports.insert(port), "node port {port} was given twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_services_exist_with_their_fields_and_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None).await;
    let api = &server.api;
    let port = server.running.as_ref().unwrap().addr.port();
    let (code, k) = call(api, Method::GET, "/api/v1/namespaces/default/services/kubernetes", None).await;
    assert_eq!(code, 200, "{k}");
    assert_eq!(k["spec"]["clusterIP"], "10.43.0.1");
    assert_eq!(k["spec"]["ports"], json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]));
    assert_eq!(k["metadata"]["labels"], json!({"component": "apiserver", "provider": "kubernetes"}));
    assert!(k["spec"].get("selector").is_none());

    let (code, dns) = call(api, Method::GET, "/api/v1/namespaces/kube-system/services/kube-dns", None).await;
    assert_eq!(code, 200, "{dns}");
    assert_eq!(dns["spec"]["clusterIP"], "10.43.0.10");
    assert_eq!(dns["spec"]["internalTrafficPolicy"], "Local");
    assert_eq!(dns["metadata"]["labels"], json!({"k8s-app": "kube-dns"}));
    assert!(dns["spec"].get("selector").is_none());
    assert_eq!(
        dns["spec"]["ports"],
        json!([{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}])
    );

    let (code, ep) = call(api, Method::GET, "/api/v1/namespaces/default/endpoints/kubernetes", None).await;
    assert_eq!(code, 200, "{ep}");
    assert_eq!(ep["subsets"][0]["addresses"], json!([{"ip": "127.0.0.1"}]));
    assert_eq!(ep["subsets"][0]["ports"], json!([{"name": "https", "port": port, "protocol": "TCP"}]));
    let path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes";
    let (code, slice) = call(api, Method::GET, path, None).await;
    assert_eq!(code, 200, "{slice}");
    assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"], "kubernetes");
    assert_eq!(slice["endpoints"][0]["addresses"], json!(["127.0.0.1"]));

    // A restart neither duplicates nor fails on them.
    drop(server);
    let again = start(&dir, None).await;
    let (code, _) = call(&again.api, Method::GET, "/api/v1/namespaces/default/services/kubernetes", None).await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repair_pass_restores_missing_records_and_releases_old_leaked_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None).await;
    let api = &server.api;
    create_ns(api, "rep").await;
    let (code, body) = create_svc(api, "rep", "web", json!({"type": "NodePort"})).await;
    assert_eq!(code, 201, "{body}");
    let ip_key = format!("{IP_ADDRESS_PREFIX}{}", ip_of(&body));
    let port_key = format!("{NODE_PORT_PREFIX}{}", body["spec"]["ports"][0]["nodePort"]);
    api.store.delete(ip_key.as_bytes(), None).await.unwrap();
    api.store.delete(port_key.as_bytes(), None).await.unwrap();

    // A record nobody uses: one old enough to be a leak, one young enough to be a write in flight.
    let leak = |ip: &str, created: &str| {
        let record = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
            "metadata": {"name": ip, "creationTimestamp": created},
            "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "rep", "name": "gone"}}});
        Bytes::from(record.to_string())
    };
    let old_key = format!("{IP_ADDRESS_PREFIX}10.43.9.9");
    let young_key = format!("{IP_ADDRESS_PREFIX}10.43.9.10");
    api.store.create(old_key.as_bytes(), leak("10.43.9.9", "2020-01-01T00:00:00Z")).await.unwrap();
    let now = gantry_apiserver::objects::now_rfc3339();
    api.store.create(young_key.as_bytes(), leak("10.43.9.10", &now)).await.unwrap();

    let report = gantry_apiserver::services::repair_once(api).await.unwrap();
    assert_eq!((report.restored, report.released), (2, 1), "{report:?}");
    assert!(record_exists(api, ip_key).await);
    assert!(record_exists(api, port_key).await);
    assert!(!record_exists(api, old_key).await);
    assert!(record_exists(api, young_key).await);
    let (_, events) = call(api, Method::GET, "/api/v1/namespaces/rep/events", None).await;
    let reasons: HashSet<&str> =
        events["items"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
    assert_eq!(reasons, HashSet::from(["ClusterIPNotAllocated", "PortNotAllocated"]));
    // A second pass finds nothing to do.
    let report = gantry_apiserver::services::repair_once(api).await.unwrap();
    assert_eq!((report.restored, report.released), (0, 0));
}

/// The real kubectl (CI sets `GANTRY_KUBECTL`): `expose` and `create service nodeport` get an address and a node
/// port, and `get svc` prints them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_exposes_a_deployment_and_creates_a_node_port_service() {
    let Some(kubectl) = std::env::var_os("GANTRY_KUBECTL").filter(|k| !k.is_empty()) else {
        eprintln!("skipped: set GANTRY_KUBECTL to the real kubectl");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, None).await;
    let kubeconfig = server.running.as_ref().unwrap().kubeconfig.clone();
    let home = tempfile::tempdir().unwrap();
    let run = |args: Vec<&str>| {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let (kubectl, kubeconfig, home) = (kubectl.clone(), kubeconfig.clone(), home.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(kubectl)
                .env_clear()
                .env("HOME", home)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(args)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(out.status.success(), "kubectl failed: {}{text}", String::from_utf8_lossy(&out.stderr));
            text
        })
    };
    run(vec!["create", "deployment", "web", "--image=nginx", "--port=80"]).await.unwrap();
    run(vec!["expose", "deployment", "web", "--port=80", "--target-port=8080"]).await.unwrap();
    run(vec!["create", "service", "nodeport", "np", "--tcp=80:8080"]).await.unwrap();
    let table = run(vec!["get", "svc", "web", "np", "--no-headers"]).await.unwrap();
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines.len(), 2, "{table}");
    let web = lines.iter().find(|l| l[0] == "web").unwrap();
    assert_eq!(web[1], "ClusterIP", "{table}");
    assert!(web[2].parse::<Ipv4Addr>().is_ok_and(|ip| ip.octets()[..2] == [10, 43]), "{table}");
    assert_eq!(web[4], "80/TCP", "{table}");
    let np = lines.iter().find(|l| l[0] == "np").unwrap();
    assert_eq!(np[1], "NodePort", "{table}");
    let ports = np[4];
    let node_port: u16 = ports.strip_prefix("80:").and_then(|p| p.strip_suffix("/TCP")).unwrap().parse().unwrap();
    assert!((30000..=32767).contains(&node_port), "{table}");
}
