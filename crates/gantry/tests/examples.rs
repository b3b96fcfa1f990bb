//! The README's quickstart, with `gantry ctl` only (no kubectl): `gantry image import-busybox`, `gantry up`,
//! `gantry ctl apply -f examples/`, `rollout status`, the pages the examples serve fetched at their pod IPs, a
//! pod's log, then `gantry ctl delete -f examples/`. It keeps `examples/` working as the README shows it.
//! Skipped, saying why, without root, busybox or the CNI plugins.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gantry_runtime::testing::runtime::{network_skip_reason, patience};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

const POD_CIDR: &str = "10.249.10.0/24";

fn gantry(args: &[&str], kubeconfig: Option<&Path>) -> gantry_e2e::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.args(args);
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    gantry_e2e::run(command, None, patience() * 2)
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn wait_for_pods(pods: &Api<Pod>, what: &str, done: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
    let deadline = Instant::now() + patience() * 2;
    loop {
        let list = pods.list(&ListParams::default()).await.expect("list").items;
        if done(&list) {
            return list;
        }
        let phases: Vec<String> =
            list.iter().map(|p| format!("{}={}", p.metadata.name.clone().unwrap_or_default(), phase(p))).collect();
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {phases:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_run_on_gantry_up_as_the_readme_shows() {
    if let Some(reason) = network_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().expect("path");
    let cleanup = common::up::NodeCleanup::new(&data_dir, POD_CIDR);

    let imported = gantry(&["image", "--data-dir", data, "import-busybox"], None).ok();
    assert!(imported.stdout.starts_with("Imported docker.io/library/busybox:local"), "{}", imported.stdout);
    let (mut up, _) = tokio::task::spawn_blocking({
        let data_dir = data_dir.clone();
        move || common::up::start_up(&data_dir, "examples-node", POD_CIDR)
    })
    .await
    .expect("gantry up");
    let kubeconfig = data_dir.join("kubeconfig");
    let ctl = |args: &'static [&'static str]| {
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            let mut full = vec!["ctl"];
            full.extend_from_slice(args);
            gantry(&full, Some(&kubeconfig))
        })
    };

    let examples = gantry_e2e::repo_root().join("examples");
    assert!(examples.join("web.yaml").exists(), "examples/ is where the README says");
    let applied = {
        let (kubeconfig, examples) = (kubeconfig.clone(), examples.clone());
        tokio::task::spawn_blocking(move || {
            let dir = examples.to_str().expect("path").to_string();
            gantry(&["ctl", "apply", "-f", &dir], Some(&kubeconfig))
        })
        .await
        .expect("apply")
        .ok()
    };
    for created in ["configmap/page created", "deployment.apps/web created", "pod/counter created", "pod/once created"]
    {
        assert!(applied.stdout.contains(created), "{created} missing from:\n{}", applied.stdout);
    }
    let rollout = ctl(&["rollout", "status", "deployment/web", "--timeout=60s"]).await.expect("rollout").ok();
    assert!(rollout.stdout.contains("deployment \"web\" successfully rolled out"), "{}", rollout.stdout);

    let client = common::up::client(&kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let list = wait_for_pods(&pods, "the examples' pods", |list| {
        let web_ready = list.iter().filter(|p| p.metadata.name.as_deref().is_some_and(|n| n.starts_with("web-")));
        let configured = list.iter().any(|p| {
            p.metadata.name.as_deref().is_some_and(|n| n.starts_with("configured-web-"))
                && ready(p)
                && phase(p) == "Running"
        });
        let once = list.iter().any(|p| p.metadata.name.as_deref() == Some("once") && phase(p) == "Succeeded");
        web_ready.filter(|p| ready(p)).count() == 3 && configured && once
    })
    .await;

    for pod in &list {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else { continue };
        let expected = if name.starts_with("web-") {
            format!("hello from {name}")
        } else if name.starts_with("configured-web-") {
            "<h1>Served by Gantry</h1>".to_string()
        } else {
            continue;
        };
        let answer = common::up::http_get(&format!("{ip}:8080")).unwrap_or_else(|e| panic!("GET {ip}:8080: {e}"));
        assert!(answer.contains(&expected), "{name} at {ip} answered: {answer}");
    }
    let once = ctl(&["logs", "once"]).await.expect("logs").ok();
    assert_eq!(once.stdout, "computing\ndone\n");

    let deleted = {
        let (kubeconfig, examples) = (kubeconfig.clone(), examples.clone());
        tokio::task::spawn_blocking(move || {
            let dir = examples.to_str().expect("path").to_string();
            gantry(&["ctl", "delete", "-f", &dir], Some(&kubeconfig))
        })
        .await
        .expect("delete")
        .ok()
    };
    assert!(deleted.stdout.contains("deployment.apps \"web\" deleted"), "{}", deleted.stdout);
    wait_for_pods(&pods, "every pod gone", <[Pod]>::is_empty).await;

    up.signal("TERM");
    let status = tokio::task::spawn_blocking(move || up.wait()).await.expect("wait");
    assert!(status.success(), "gantry up did not stop cleanly: {status}");
    drop(cleanup);
}
