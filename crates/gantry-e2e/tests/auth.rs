//! Authentication at the HTTPS edge, checked with raw requests (no client library) and with kubectl.

use gantry_e2e::TestCluster;

const TOKEN: &str = "0123456789abcdef-alice";

#[test]
fn a_request_without_credentials_is_unauthorized() {
    let cluster = TestCluster::start();
    let reply = cluster.raw_get("/api/v1/namespaces", None);
    assert_eq!(reply.status, 401, "{reply:?}");
    let status = reply.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);
    assert!(!reply.body.contains("kube-system"), "no data leaks to an anonymous caller: {}", reply.body);
    for path in ["/api", "/apis", "/apis/apps/v1/deployments", "/openapi/v3"] {
        assert_eq!(cluster.raw_get(path, None).status, 401, "{path}");
    }
}

#[test]
fn health_and_version_are_served_anonymously() {
    let cluster = TestCluster::start();
    for path in ["/healthz", "/livez", "/readyz"] {
        let reply = cluster.raw_get(path, None);
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok"), "{path}");
    }
    for path in ["/version", "/version/"] {
        let reply = cluster.raw_get(path, None);
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        let version = reply.json();
        assert_eq!(version["major"], "1", "{path}");
        assert!(version["gitVersion"].as_str().is_some_and(|v| v.starts_with("v1.")), "{path}: {version}");
    }
}

#[test]
fn a_bearer_token_from_the_token_file_authenticates() {
    let cluster = TestCluster::builder().token(TOKEN, "alice").start();
    let reply = cluster.raw_get("/api/v1/namespaces", Some(TOKEN));
    assert_eq!(reply.status, 200, "{reply:?}");
    let list = reply.json();
    assert_eq!(list["kind"], "NamespaceList");
    let names: Vec<&str> =
        list["items"].as_array().expect("items").iter().filter_map(|n| n["metadata"]["name"].as_str()).collect();
    assert!(names.contains(&"kube-system"), "{names:?}");

    // kubectl with only the token (no client certificate) works too.
    let kubeconfig = cluster.dir().join("token-kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
         users:\n- name: alice\n  user:\n    token: {TOKEN}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: alice\n\
         current-context: c\n",
        cluster.url(),
        cluster.ca_path().display()
    );
    std::fs::write(&kubeconfig, text).expect("write the kubeconfig");
    let mut command = cluster.client_command(gantry_e2e::kubectl_path());
    command.arg("--kubeconfig").arg(&kubeconfig).args(["get", "namespaces", "-o", "name"]);
    let out = gantry_e2e::run(command, None, gantry_e2e::patience()).ok();
    assert!(out.stdout.lines().any(|l| l == "namespace/default"), "{}", out.stdout);
}

#[test]
fn a_wrong_token_is_unauthorized() {
    let cluster = TestCluster::builder().token(TOKEN, "alice").start();
    for token in ["wrong", "0123456789abcdef-alicE", &format!("{TOKEN}x")] {
        let reply = cluster.raw_get("/api/v1/namespaces", Some(token));
        assert_eq!(reply.status, 401, "{token}: {reply:?}");
        assert_eq!(reply.json()["reason"], "Unauthorized");
    }
    // A wrong token is refused even next to a valid client certificate, as kube-apiserver does.
    let out = cluster.kubectl(&["get", "namespaces", "--token", "wrong"]).fails();
    assert!(out.stderr.contains("error: You must be logged in to the server"), "{}", out.stderr);
}

#[test]
fn a_cluster_without_a_token_file_accepts_no_token() {
    let cluster = TestCluster::start();
    assert_eq!(cluster.raw_get("/api/v1/namespaces", Some(TOKEN)).status, 401);
}
