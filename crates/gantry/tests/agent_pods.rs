//! The node agent running pods for real: an API server, the agent with the real `gantry` binary as the
//! containers' shim, busybox containers. Pods are bound to the agent's node directly (no scheduler needed).

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, busybox_pod, condition, container, phase, try_container};
use gantry_runtime::RuntimeService;
use gantry_runtime::testing::runtime::{BUSYBOX_IMAGE, TestNetwork, network_skip_reason, patience};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_reports_running_and_ready_and_is_removed_after_a_graceful_deletion() {
    let Some(cluster) = Cluster::start("node-run", None).await else { return };
    // The shell traps TERM so that the stop is graceful: it exits 0 on its own.
    let script = "trap 'echo stopping; exit 0' TERM; echo started; while true; do sleep 0.1; done";
    cluster.create(busybox_pod("web", script, serde_json::json!({}))).await;
    let pod = cluster
        .wait_for("web", "Running and Ready", |p| {
            phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    let status = pod.status.clone().expect("status");
    let main = container(&pod, "main");
    assert!(main.container_id.as_deref().is_some_and(|id| id.starts_with("gantry://")), "{main:?}");
    assert!(main.ready && main.started == Some(true) && main.restart_count == 0);
    assert!(main.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
    assert!(main.image_id.starts_with("sha256:"), "{}", main.image_id);
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert!(status.host_ip.is_some() && status.pod_ip == status.host_ip, "hostNetwork: the pod's IP is the node's");
    assert!(status.start_time.is_some());
    for condition_type in ["PodReadyToStartContainers", "Initialized", "ContainersReady", "PodScheduled"] {
        assert!(condition(&pod, condition_type).is_some(), "{condition_type} missing");
    }
    let deadline = Instant::now() + patience();
    loop {
        let reasons: Vec<String> = cluster.events("web").await.into_iter().map(|(r, _)| r).collect();
        if ["Pulled", "Created", "Started"].iter().all(|r| reasons.iter().any(|x| x == r)) {
            break;
        }
        assert!(Instant::now() < deadline, "events missing: {reasons:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let deleted_at = Instant::now();
    cluster.pods().delete("web", &DeleteParams::default()).await.expect("delete");
    cluster.wait_gone("web").await;
    assert!(deleted_at.elapsed() < Duration::from_secs(5), "the trap ends the container well within its grace period");
    let reasons: Vec<String> = cluster.events("web").await.into_iter().map(|(r, _)| r).collect();
    assert!(reasons.iter().any(|r| r == "Killing"), "{reasons:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_decide_the_phase_and_the_termination_message_is_reported() {
    let Some(cluster) = Cluster::start("node-exit", None).await else { return };
    let never = serde_json::json!({"restartPolicy": "Never"});
    cluster.create(busybox_pod("ok", "echo done > /dev/termination-log; exit 0", never.clone())).await;
    cluster.create(busybox_pod("bad", "echo broken > /dev/termination-log; exit 3", never)).await;
    let ok = cluster.wait_for("ok", "Succeeded", |p| phase(p) == "Succeeded").await;
    let terminated = container(&ok, "main").state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!((terminated.exit_code, terminated.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(terminated.message.as_deref(), Some("done\n"));
    assert_eq!(condition(&ok, "Ready").as_deref(), Some("False"));

    let bad = cluster.wait_for("bad", "Failed", |p| phase(p) == "Failed").await;
    let terminated = container(&bad, "main").state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!((terminated.exit_code, terminated.reason.as_deref()), (3, Some("Error")));
    assert_eq!(terminated.message.as_deref(), Some("broken\n"));
    assert_eq!(container(&bad, "main").restart_count, 0, "restartPolicy Never does not restart");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_restarts_with_back_off() {
    let Some(cluster) = Cluster::start("node-crash", None).await else { return };
    cluster.create(busybox_pod("crash", "echo crashing; exit 1", serde_json::json!({}))).await;
    // The first restart is at once, the second after 10 s: restartCount 1 and then CrashLoopBackOff.
    let pod = cluster
        .wait_for("crash", "CrashLoopBackOff after a restart", |p| {
            p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).is_some_and(|c| {
                c.restart_count >= 1
                    && c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref())
                        == Some("CrashLoopBackOff")
            })
        })
        .await;
    let main = container(&pod, "main");
    let last = main.last_state.and_then(|s| s.terminated).expect("last state");
    assert_eq!(last.exit_code, 1);
    let message = main.state.and_then(|s| s.waiting).and_then(|w| w.message).unwrap_or_default();
    assert!(message.starts_with("back-off 10s restarting failed container=main pod=crash_default("), "{message}");
    assert_eq!(phase(&pod), "Running", "restartPolicy Always keeps the pod Running");
    let reasons: Vec<String> = cluster.events("crash").await.into_iter().map(|(r, _)| r).collect();
    assert!(reasons.iter().any(|r| r == "BackOff"), "{reasons:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_before_the_app_containers() {
    let Some(cluster) = Cluster::start("node-init", None).await else { return };
    let init =
        |name: &str| serde_json::json!({"name": name, "image": BUSYBOX_IMAGE, "command": ["sh", "-c", "sleep 0.3"]});
    cluster
        .create(busybox_pod(
            "inits",
            "sleep 1000",
            serde_json::json!({"initContainers": [init("first"), init("second")]}),
        ))
        .await;
    let pending = cluster
        .wait_for("inits", "an init container running", |p| {
            phase(p) == "Pending"
                && p.status
                    .as_ref()
                    .and_then(|s| s.init_container_statuses.as_ref())
                    .is_some_and(|i| i.iter().any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())))
        })
        .await;
    assert_eq!(condition(&pending, "Initialized").as_deref(), Some("False"));
    let app = container(&pending, "main");
    let waiting = app.state.and_then(|s| s.waiting).and_then(|w| w.reason);
    assert_eq!(waiting.as_deref(), Some("PodInitializing"));

    let pod = cluster.wait_for("inits", "Running", |p| phase(p) == "Running").await;
    let finished = |name: &str| container(&pod, name).state.and_then(|s| s.terminated).expect("terminated");
    let (first, second) = (finished("first"), finished("second"));
    assert_eq!((first.exit_code, second.exit_code), (0, 0));
    assert!(first.finished_at.expect("finished").0 <= second.started_at.expect("started").0, "in order");
    let main_started =
        container(&pod, "main").state.and_then(|s| s.running).and_then(|r| r.started_at).expect("started");
    assert!(second.finished_at.expect("finished").0 <= main_started.0);
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("True"));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_running_containers_without_restarting_them() {
    let Some(mut cluster) = Cluster::start("node-restart", None).await else { return };
    cluster.create(busybox_pod("steady", "sleep 1000", serde_json::json!({}))).await;
    let before = cluster.wait_for("steady", "Running", |p| phase(p) == "Running").await;
    let id = container(&before, "main").container_id;

    cluster.stop_agent().await;
    cluster.start_agent().await;
    // The new agent relists and syncs: a changed status would show a restart; wait for its first report (the
    // PodReadyToStartContainers transition time stays, so look at the container instead).
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let now = cluster.pods().get("steady").await.expect("get");
        let main = container(&now, "main");
        assert_eq!(main.container_id, id, "the container was replaced");
        assert_eq!(main.restart_count, 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster
        .pods()
        .delete("steady", &DeleteParams { grace_period_seconds: Some(1), ..Default::default() })
        .await
        .expect("delete");
    cluster.wait_gone("steady").await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_the_pod_network_gets_an_address_from_the_nodes_range() {
    if let Some(reason) = network_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let network = TestNetwork::new(40);
    let Some(cluster) = Cluster::start("node-net", Some(&network)).await else { return };
    let mut pod = busybox_pod("netted", "sleep 1000", serde_json::json!({}));
    pod["spec"]["hostNetwork"] = serde_json::json!(false);
    cluster.create(pod).await;
    let pod = cluster.wait_for("netted", "Running", |p| phase(p) == "Running").await;
    let ip = pod.status.and_then(|s| s.pod_ip).expect("pod IP");
    assert!(ip.starts_with(&format!("{}.", network.subnet_prefix)), "{ip} not in {}", network.cidr());
    cluster
        .pods()
        .delete("netted", &DeleteParams { grace_period_seconds: Some(1), ..Default::default() })
        .await
        .expect("delete");
    cluster.wait_gone("netted").await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_pod_runs_from_its_manifest_and_shows_as_a_mirror_pod() {
    let Some(cluster) = Cluster::start("node-static", None).await else { return };
    let manifest = cluster.test.root.path().join("manifests/web.yaml");
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  hostNetwork: true\n  \
         terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {BUSYBOX_IMAGE}\n    \
         command: [sleep, '1000']\n"
    );
    std::fs::write(&manifest, yaml).expect("manifest");
    let mirror = cluster.wait_for("web-node-static", "Running", |p| phase(p) == "Running").await;
    let annotations = mirror.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key("kubernetes.io/config.mirror"), "{annotations:?}");
    assert_eq!(annotations.get("kubernetes.io/config.source").map(String::as_str), Some("file"));
    let owner = mirror.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner.first().map(|o| (o.kind.as_str(), o.name.as_str())), Some(("Node", "node-static")));
    let id = container(&mirror, "main").container_id;

    // Deleting the mirror does not stop the static pod: the mirror comes back, with the same container.
    let first_uid = mirror.metadata.uid.clone();
    cluster.pods().delete("web-node-static", &DeleteParams::default()).await.expect("delete mirror");
    let again = cluster
        .wait_for("web-node-static", "a new mirror with status", |p| {
            p.metadata.uid != first_uid && phase(p) == "Running"
        })
        .await;
    assert_eq!(container(&again, "main").container_id, id, "the static pod's container kept running");

    // Removing the manifest stops the pod and removes its mirror.
    std::fs::remove_file(&manifest).expect("remove manifest");
    cluster.wait_gone("web-node-static").await;
    let deadline = Instant::now() + patience();
    while !cluster.test.runtime.list_pod_sandboxes().await.expect("sandboxes").is_empty() {
        assert!(Instant::now() < deadline, "the static pod's sandbox was not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_waits_in_err_image_pull_then_back_off() {
    let Some(cluster) = Cluster::start("node-pull", None).await else { return };
    let mut pod = busybox_pod("unpullable", "true", serde_json::json!({}));
    // Nothing listens on port 1 of loopback: the pull fails at once.
    pod["spec"]["containers"][0]["image"] = serde_json::json!("127.0.0.1:1/team/absent:1");
    cluster.create(pod).await;
    let reason_of = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
    };
    let failed =
        cluster.wait_for("unpullable", "ErrImagePull", |p| reason_of(p).as_deref() == Some("ErrImagePull")).await;
    assert_eq!(phase(&failed), "Pending");
    let backing_off = cluster
        .wait_for("unpullable", "ImagePullBackOff", |p| reason_of(p).as_deref() == Some("ImagePullBackOff"))
        .await;
    let message = container(&backing_off, "main").state.and_then(|s| s.waiting).and_then(|w| w.message);
    assert_eq!(message.as_deref(), Some("Back-off pulling image \"127.0.0.1:1/team/absent:1\""));
    let events = cluster.events("unpullable").await;
    assert!(events.iter().any(|(r, m)| r == "Pulling" && m.contains("127.0.0.1:1/team/absent:1")), "{events:?}");
    assert!(events.iter().any(|(r, m)| r == "Failed" && m.starts_with("Failed to pull image")), "{events:?}");
    cluster
        .pods()
        .delete("unpullable", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
        .await
        .expect("delete");
    cluster.wait_gone("unpullable").await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_ignores_sigterm_is_killed_when_the_grace_period_ends() {
    let Some(cluster) = Cluster::start("node-grace", None).await else { return };
    let script = "trap '' TERM; while true; do sleep 0.1; done";
    cluster.create(busybox_pod("stubborn", script, serde_json::json!({"terminationGracePeriodSeconds": 30}))).await;
    cluster.wait_for("stubborn", "Running", |p| phase(p) == "Running").await;
    let deleted_at = Instant::now();
    let params = DeleteParams { grace_period_seconds: Some(3), ..Default::default() };
    cluster.pods().delete("stubborn", &params).await.expect("delete");
    cluster.wait_gone("stubborn").await;
    let took = deleted_at.elapsed();
    // The deletion's own grace period (3 s) overrides the pod's 30 s; SIGKILL comes when it ends.
    assert!(took >= Duration::from_millis(2900), "killed before the grace period ended: {took:?}");
    assert!(took < Duration::from_secs(15), "not killed when the grace period ended: {took:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_secrets_let_the_agent_pull_from_a_private_registry() {
    for tool in ["/usr/bin/docker-registry", "/usr/bin/skopeo"] {
        if !std::path::Path::new(tool).exists() {
            eprintln!("skipped: needs {tool} (Debian packages docker-registry and skopeo)");
            return;
        }
    }
    let Some(cluster) = Cluster::start("node-secret", None).await else { return };
    let htpasswd = format!("puller:{}\n", bcrypt::hash("open-sesame", 4).expect("bcrypt"));
    let registry = gantry_runtime::testing::TestRegistry::start_with_htpasswd(&htpasswd).expect("registry");
    let archive = cluster.test.root.path().join("private.tar");
    gantry_runtime::testing::write_busybox_archive(&archive, "private:1").expect("archive");
    registry.push(&archive, "team/private", "1", Some("puller:open-sesame")).expect("push");
    let image = format!("{}/team/private:1", registry.host());

    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:open-sesame");
    let config = serde_json::json!({"auths": {registry.host(): {"auth": auth}}}).to_string();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "registry-creds"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config}
    }))
    .expect("secret");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(cluster.client.clone(), "default");
    secrets.create(&PostParams::default(), &secret).await.expect("create secret");

    let mut with_secret =
        busybox_pod("private", "sleep 1000", serde_json::json!({"imagePullSecrets": [{"name": "registry-creds"}]}));
    with_secret["spec"]["containers"][0]["image"] = serde_json::json!(image);
    cluster.create(with_secret).await;
    let pod = cluster.wait_for("private", "Running", |p| phase(p) == "Running").await;
    assert!(container(&pod, "main").image_id.starts_with("sha256:"));
    let events = cluster.events("private").await;
    assert!(events.iter().any(|(r, m)| r == "Pulled" && m.starts_with("Successfully pulled image")), "{events:?}");
    let mut without = busybox_pod("anonymous", "sleep 1000", serde_json::json!({}));
    without["spec"]["containers"][0]["image"] = serde_json::json!(image);
    without["spec"]["containers"][0]["imagePullPolicy"] = serde_json::json!("Always");
    cluster.create(without).await;

    // The same image, now on the node, pulled again without credentials (policy Always): the registry refuses
    // and the container does not start.
    let refused = cluster
        .wait_for("anonymous", "a failed pull", |p| {
            try_container(p, "main")
                .and_then(|c| c.state)
                .and_then(|s| s.waiting)
                .and_then(|w| w.reason)
                .is_some_and(|r| r.contains("ImagePull"))
        })
        .await;
    assert_eq!(phase(&refused), "Pending");
    for name in ["private", "anonymous"] {
        cluster
            .pods()
            .delete(name, &DeleteParams { grace_period_seconds: Some(1), ..Default::default() })
            .await
            .expect("delete");
        cluster.wait_gone(name).await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_secrets_and_empty_dirs_reach_the_containers_as_files_and_environment() {
    let Some(cluster) = Cluster::start("node-volumes", None).await else { return };
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let config_map = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "settings"}, "data": {"greeting": "hello", "mode": "fast"}
    }))
    .expect("configmap");
    config_maps.create(&PostParams::default(), &config_map).await.expect("create configmap");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(cluster.client.clone(), "default");
    let secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}
    }))
    .expect("secret");
    secrets.create(&PostParams::default(), &secret).await.expect("create secret");

    // The writer fills the shared emptyDir; the reader prints what it finds there, the mounted files and the
    // environment, then exits.
    let reader = "until [ -f /shared/ready ]; do sleep 0.05; done; \
                  echo \"shared=$(cat /shared/ready) file=$(cat /config/greeting) secret=$(cat /secret/password)\"; \
                  echo \"env=$GREETING $PASSWORD $mode pod=$POD_NAME\"";
    let pod = serde_json::json!({
        "metadata": {"name": "volumes", "namespace": "default"},
        "spec": {
            "hostNetwork": true,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "volumes": [
                {"name": "shared", "emptyDir": {}},
                {"name": "config", "configMap": {"name": "settings"}},
                {"name": "secret", "secret": {"secretName": "creds"}}
            ],
            "containers": [
                {"name": "writer", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", "echo written > /shared/ready"],
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
                {"name": "reader", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", reader],
                 "env": [
                    {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                 ],
                 "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": ""}],
                 "volumeMounts": [
                    {"name": "shared", "mountPath": "/shared"},
                    {"name": "config", "mountPath": "/config"},
                    {"name": "secret", "mountPath": "/secret"}
                 ]}
            ]
        }
    });
    cluster.create(pod).await;
    let done = cluster.wait_for("volumes", "Succeeded", |p| phase(p) == "Succeeded").await;
    let status = container(&done, "reader");
    assert_eq!(status.state.and_then(|s| s.terminated).map(|t| t.exit_code), Some(0));
    let log = std::fs::read_dir(cluster.test.root.path().join("pods"))
        .expect("pods dir")
        .flatten()
        .find_map(|dir| std::fs::read_to_string(dir.path().join("logs/reader/0.log")).ok());
    let log = log.expect("the reader's log");
    assert!(log.contains("shared=written file=hello secret=s3cret"), "{log}");
    // envFrom's `mode` comes from the ConfigMap's keys as they are; env entries follow.
    assert!(log.contains("env=hello s3cret fast pod=volumes"), "{log}");
    assert!(!log.contains("stderr"), "the runtime's own messages do not reach the container's log: {log}");
    cluster.pods().delete("volumes", &DeleteParams::default()).await.expect("delete");
    cluster.wait_gone("volumes").await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_map_holds_the_pod_in_container_creating_with_failed_mount_events() {
    let Some(cluster) = Cluster::start("node-mount", None).await else { return };
    let mut pod = busybox_pod(
        "unmountable",
        "sleep 1000",
        serde_json::json!({
            "volumes": [{"name": "config", "configMap": {"name": "absent"}}]
        }),
    );
    pod["spec"]["containers"][0]["volumeMounts"] = serde_json::json!([{"name": "config", "mountPath": "/config"}]);
    cluster.create(pod).await;
    let deadline = Instant::now() + patience();
    loop {
        let events = cluster.events("unmountable").await;
        if let Some((_, message)) = events.iter().find(|(r, _)| r == "FailedMount") {
            assert!(message.contains("configmap \"absent\" not found"), "{message}");
            break;
        }
        assert!(Instant::now() < deadline, "no FailedMount event: {events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pod = cluster.pods().get("unmountable").await.expect("get");
    assert_eq!(phase(&pod), "Pending");
    let waiting = try_container(&pod, "main").and_then(|c| c.state).and_then(|s| s.waiting).and_then(|w| w.reason);
    assert_eq!(waiting.as_deref(), Some("ContainerCreating"));
    cluster
        .pods()
        .delete("unmountable", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
        .await
        .expect("delete");
    cluster.wait_gone("unmountable").await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_container_and_readiness_gates_ready() {
    let Some(cluster) = Cluster::start("node-probes", None).await else { return };
    // Ready once /tmp/ready exists (after about a second); alive while /tmp/alive exists (removed after ~3 s).
    let script = "touch /tmp/alive; sleep 1; touch /tmp/ready; sleep 2; rm /tmp/alive; sleep 1000";
    let mut pod = busybox_pod("probed", script, serde_json::json!({}));
    pod["spec"]["containers"][0]["readinessProbe"] =
        serde_json::json!({"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1});
    pod["spec"]["containers"][0]["livenessProbe"] = serde_json::json!({"exec": {"command": ["test", "-f", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 1});
    cluster.create(pod).await;
    let running = cluster.wait_for("probed", "Running", |p| phase(p) == "Running").await;
    assert_eq!(condition(&running, "Ready").as_deref(), Some("False"), "not ready before the readiness probe passes");
    cluster.wait_for("probed", "Ready", |p| condition(p, "Ready").as_deref() == Some("True")).await;
    let restarted = cluster
        .wait_for("probed", "a restart by the liveness probe", |p| {
            try_container(p, "main").is_some_and(|c| c.restart_count >= 1)
        })
        .await;
    let last = container(&restarted, "main").last_state.and_then(|s| s.terminated).expect("last state");
    assert_ne!(last.exit_code, 0, "stopped by a signal");
    let events = cluster.events("probed").await;
    assert!(events.iter().any(|(r, m)| r == "Unhealthy" && m.starts_with("Liveness probe failed")), "{events:?}");
    assert!(
        events.iter().any(|(r, m)| r == "Killing" && m.contains("failed liveness probe, will be restarted")),
        "{events:?}"
    );
    cluster
        .pods()
        .delete("probed", &DeleteParams { grace_period_seconds: Some(1), ..Default::default() })
        .await
        .expect("delete");
    cluster.wait_gone("probed").await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_start_and_pre_stop_hooks_run_in_the_container() {
    let Some(cluster) = Cluster::start("node-hooks", None).await else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let mut pod = busybox_pod(
        "hooked",
        "while true; do sleep 0.1; done",
        serde_json::json!({
            "volumes": [{"name": "out", "hostPath": {"path": out.path().display().to_string(), "type": "Directory"}}]
        }),
    );
    pod["spec"]["containers"][0]["volumeMounts"] = serde_json::json!([{"name": "out", "mountPath": "/out"}]);
    pod["spec"]["containers"][0]["lifecycle"] = serde_json::json!({
        "postStart": {"exec": {"command": ["sh", "-c", "echo started > /out/post-start"]}},
        "preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /out/pre-stop"]}}
    });
    cluster.create(pod).await;
    cluster.wait_for("hooked", "Running", |p| phase(p) == "Running").await;
    assert_eq!(std::fs::read_to_string(out.path().join("post-start")).ok().as_deref(), Some("started\n"));
    cluster
        .pods()
        .delete("hooked", &DeleteParams { grace_period_seconds: Some(2), ..Default::default() })
        .await
        .expect("delete");
    cluster.wait_gone("hooked").await;
    assert_eq!(std::fs::read_to_string(out.path().join("pre-stop")).ok().as_deref(), Some("stopping\n"));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_init_container_keeps_running_beside_the_app() {
    let Some(cluster) = Cluster::start("node-sidecar", None).await else { return };
    let sidecar = serde_json::json!({"name": "proxy", "image": BUSYBOX_IMAGE, "restartPolicy": "Always",
        "command": ["sh", "-c", "sleep 1000"]});
    cluster.create(busybox_pod("with-sidecar", "sleep 1000", serde_json::json!({"initContainers": [sidecar]}))).await;
    let pod = cluster
        .wait_for("with-sidecar", "Running and Initialized", |p| {
            phase(p) == "Running" && condition(p, "Initialized").as_deref() == Some("True")
        })
        .await;
    let proxy = container(&pod, "proxy");
    assert!(proxy.state.and_then(|s| s.running).is_some(), "the sidecar runs beside the app");
    assert!(container(&pod, "main").state.and_then(|s| s.running).is_some());
    cluster
        .pods()
        .delete("with-sidecar", &DeleteParams { grace_period_seconds: Some(1), ..Default::default() })
        .await
        .expect("delete");
    cluster.wait_gone("with-sidecar").await;
    cluster.stop().await;
}
