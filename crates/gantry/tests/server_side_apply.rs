//! `kubectl apply --server-side` against Gantry's API server with the real kubectl (skipped without
//! `GANTRY_KUBECTL`): create and update, conflicts with kubectl's `--force-conflicts` advice, forcing, server
//! dry runs, and the upgrade of an object applied client-side to server-side apply. The expected outputs are
//! kubectl's against kube-apiserver.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

struct Server {
    shutdown: CancellationToken,
    _server: gantry_apiserver::RunningServer,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn kubectl_given() -> bool {
    let given = std::env::var_os("GANTRY_KUBECTL").is_some_and(|p| !p.is_empty());
    if !given {
        eprintln!("skipped: GANTRY_KUBECTL is not set");
    }
    given
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let shutdown = CancellationToken::new();
        let server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.expect("server");
        Server { shutdown, _server: server, dir }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> gantry_e2e::Output {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let command = gantry_e2e::kubectl_command(&self.kubeconfig(), &home, args);
        let stdin = stdin.map(|s| s.as_bytes().to_vec());
        tokio::task::spawn_blocking(move || gantry_e2e::run(command, stdin.as_deref(), gantry_e2e::patience()))
            .await
            .expect("kubectl")
    }

    async fn deployment(&self) -> serde_json::Value {
        self.kubectl(&["get", "deployment", "web", "-o", "json", "--show-managed-fields"], None).await.ok().json()
    }
}

fn manifest(replicas: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: {replicas}
{extra_spec}  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports:
        - containerPort: 80
"
    )
}

fn managers(obj: &serde_json::Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or_default().to_string(),
                e["operation"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn owners_of(obj: &serde_json::Value, field: &str) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["fieldsV1"]["f:spec"].get(field).is_some())
        .map(|e| e["manager"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_creates_updates_conflicts_and_forces() {
    if !kubectl_given() {
        return;
    }
    let server = Server::start().await;
    let created = server.kubectl(&["apply", "--server-side", "-f", "-"], Some(&manifest(2, ""))).await.ok();
    assert_eq!(created.stdout.trim(), "deployment.apps/web serverside-applied");
    let live = server.deployment().await;
    assert_eq!(live["spec"]["replicas"], 2);
    assert_eq!(managers(&live), vec![("kubectl".to_string(), "Apply".to_string())]);
    let again = server.kubectl(&["apply", "--server-side", "-f", "-"], Some(&manifest(2, ""))).await.ok();
    assert_eq!(again.stdout.trim(), "deployment.apps/web serverside-applied");

    // Another manager changing a field kubectl owns is refused, with kubectl's advice.
    let other = ["apply", "--server-side", "--field-manager=other", "-f", "-"];
    let refused = server.kubectl(&other, Some(&manifest(3, ""))).await.fails();
    assert!(
        refused.stderr.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force-conflicts"), "{}", refused.stderr);
    let forced = ["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-"];
    server.kubectl(&forced, Some(&manifest(3, ""))).await.ok();
    let live = server.deployment().await;
    assert_eq!(live["spec"]["replicas"], 3);
    assert_eq!(owners_of(&live, "f:replicas"), vec!["other".to_string()]);

    // Now kubectl itself conflicts, naming the new owner.
    let refused = server.kubectl(&["apply", "--server-side", "-f", "-"], Some(&manifest(2, ""))).await.fails();
    assert!(
        refused.stderr.contains("Apply failed with 1 conflict: conflict with \"other\": .spec.replicas"),
        "{}",
        refused.stderr
    );

    // A server dry run answers without storing.
    let dry = ["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"];
    let dry = server.kubectl(&dry, Some(&manifest(5, ""))).await.ok();
    assert_eq!(dry.stdout.trim(), "deployment.apps/web serverside-applied (server dry run)");
    assert_eq!(server.deployment().await["spec"]["replicas"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_applied_client_side_moves_to_server_side_apply() {
    if !kubectl_given() {
        return;
    }
    let server = Server::start().await;
    let with_min_ready = manifest(2, "  minReadySeconds: 5\n");
    let created = server.kubectl(&["apply", "-f", "-"], Some(&with_min_ready)).await.ok();
    assert_eq!(created.stdout.trim(), "deployment.apps/web created");
    let live = server.deployment().await;
    assert_eq!(owners_of(&live, "f:minReadySeconds"), vec!["kubectl-client-side-apply".to_string()]);

    // The same manifest applied server-side: kubectl takes the client-side manager's fields over.
    let upgraded = server.kubectl(&["apply", "--server-side", "-f", "-"], Some(&with_min_ready)).await.ok();
    assert_eq!(upgraded.stdout.trim(), "deployment.apps/web serverside-applied");
    let live = server.deployment().await;
    assert!(
        !managers(&live).iter().any(|(m, _)| m == "kubectl-client-side-apply"),
        "the client-side manager is gone: {:?}",
        managers(&live)
    );

    // A field dropped from the manifest is then removed, and nobody owns it any more.
    let dropped = server.kubectl(&["apply", "--server-side", "-f", "-"], Some(&manifest(2, ""))).await.ok();
    assert_eq!(dropped.stdout.trim(), "deployment.apps/web serverside-applied");
    let live = server.deployment().await;
    assert!(live["spec"].get("minReadySeconds").is_none(), "{}", live["spec"]);
    assert!(owners_of(&live, "f:minReadySeconds").is_empty(), "{:?}", live["metadata"]["managedFields"]);
    assert_eq!(live["spec"]["replicas"], 2);
}
