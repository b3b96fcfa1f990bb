//! `gantry reset`: after the real `gantry up` ran a pod on the pod network with a memory-backed emptyDir and a
//! configMap volume and was stopped (its container left running), a reset leaves no shim, no mount under the
//! data directory, no pod cgroup, no bridge, no masquerade rule and no data directory; a second reset has nothing
//! to do; a reset while `gantry up` runs is refused and changes nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gantry_runtime::testing::runtime::{BUSYBOX_IMAGE, patience, skip_reason};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::PostParams;

const POD_CIDR: &str = "10.249.9.0/24";

/// The tests of this file run one at a time: a reset removes node-wide state (every route of protocol 247, the
/// empty cgroups under the agent's root) that the other test checks.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn gantry(args: &[&str], data_dir: &Path) -> gantry_e2e::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.args(args).arg("--data-dir").arg(data_dir);
    gantry_e2e::run(command, None, patience() * 2)
}

/// Resets the data directory (and removes the masquerade rule of the pod CIDR, if any) even when the test fails
/// part-way.
struct ResetOnDrop(PathBuf, Option<&'static str>);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = gantry(&["reset"], &self.0);
        }
        if let Some(cidr) = self.1 {
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime
                    .block_on(gantry_runtime::network::masquerade::remove_masquerade(cidr))
                    .map_err(std::io::Error::other)
            })
            .join();
        }
    }
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

/// PIDs of shims whose command line names a path under `dir`.
fn shims_under(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            text.contains(" shim ") && text.contains(&needle)
        })
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    gantry_agent::volumes::mounts::parse_mount_points(&text).into_iter().filter(|m| m.starts_with(dir)).collect()
}

/// The pod's cgroup directories, in every hierarchy.
fn pod_cgroups(uid: &str) -> Vec<PathBuf> {
    let name = format!("pod{}", uid.replace('-', ""));
    let mut found = Vec::new();
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for mount in gantry_agent::reset::parse_mountinfo(&text) {
        if mount.fs_type != "cgroup" && mount.fs_type != "cgroup2" {
            continue;
        }
        let root = mount.mount_point.join("gantry");
        for parent in [root.clone(), root.join("burstable"), root.join("besteffort")] {
            if parent.join(&name).exists() {
                found.push(parent.join(&name));
            }
        }
    }
    found
}

fn masquerade_rules() -> String {
    let output = std::process::Command::new("iptables").args(["-w", "-t", "nat", "-S", "POSTROUTING"]).output();
    output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gantry_reset_removes_every_trace_of_a_stopped_gantry_up_and_refuses_while_it_runs() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let _serial = SERIAL.lock().await;
    if !gantry_runtime::network::cni::DEFAULT_PLUGIN_DIRS.iter().any(|d| Path::new(d).join("bridge").exists()) {
        eprintln!("skipped: needs the CNI plugins (Debian package containernetworking-plugins)");
        return;
    }
    let parent = tempfile::tempdir().expect("tempdir");
    let data = parent.path().join("data");
    let _reset = ResetOnDrop(data.clone(), Some(POD_CIDR));
    let store = gantry_runtime::image::ImageStore::open(data.join("images")).expect("image store");
    let archive = parent.path().join("busybox.tar");
    gantry_runtime::testing::write_busybox_archive(&archive, BUSYBOX_IMAGE).expect("archive");
    store.import_archive(&archive).expect("import");
    drop(store);

    let (api_port, node_port) = (free_port(), free_port());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.arg("up").arg("--data-dir").arg(&data);
    command.args(["--secure-port", &api_port.to_string(), "--bind-address", "127.0.0.1"]);
    command.args(["--node-name", "reset-node", "--node-api-port", &node_port.to_string(), "--pod-cidr", POD_CIDR]);
    let mut up = tokio::task::spawn_blocking(move || {
        let mut up = gantry_e2e::Background::spawn(command);
        up.wait_for_line(|l| l.starts_with("Gantry is up"));
        up
    })
    .await
    .expect("gantry up");

    let client = client(&data.join("kubeconfig")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let config_map: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "settings"}, "data": {"greeting": "hello"}}))
            .expect("configmap");
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &config_map)
        .await
        .expect("create configmap");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "volumes"},
        "spec": {
            "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sleep", "1000"],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}, {"name": "settings", "mountPath": "/etc/settings"}]}],
            "volumes": [
                {"name": "scratch", "emptyDir": {"medium": "Memory"}},
                {"name": "settings", "configMap": {"name": "settings"}}
            ]
        }
    }))
    .expect("pod");
    let uid = pods.create(&PostParams::default(), &pod).await.expect("create").metadata.uid.expect("uid");
    let deadline = Instant::now() + patience();
    loop {
        let pod = pods.get("volumes").await.expect("pod");
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            break;
        }
        assert!(Instant::now() < deadline, "the pod is not Running: {:?}", pod.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // While `gantry up` runs, a reset is refused in one line and takes nothing away.
    let refused = tokio::task::spawn_blocking({
        let data = data.clone();
        move || gantry(&["reset"], &data).fails()
    })
    .await
    .expect("reset");
    let message = refused.stderr.trim();
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("in use by a running Gantry"), "{message}");
    assert!(!shims_under(&data).is_empty(), "the refused reset stopped the container");
    assert!(data.join("kubeconfig").exists() && data.join("pods").join(&uid).exists());
    assert!(pods.get("volumes").await.is_ok(), "the API server answers after the refused reset");

    // A second long-running command on the same data directory is refused too.
    let second = tokio::task::spawn_blocking({
        let data = data.clone();
        move || gantry(&["up", "--secure-port", "0", "--node-api-port", "0"], &data).fails()
    })
    .await
    .expect("second up");
    assert!(second.stderr.contains("in use by a running Gantry"), "{}", second.stderr);

    up.signal("TERM");
    let status = tokio::task::spawn_blocking(move || up.wait()).await.expect("wait");
    assert!(status.success(), "gantry up did not stop cleanly: {status}");
    // What the reset is for: the container outlived `gantry up`, with its mounts and cgroups.
    assert!(!shims_under(&data).is_empty(), "no shim left running after gantry up stopped");
    let volumes = data.join("pods").join(&uid).join("volumes");
    assert!(volumes.join("kubernetes.io~configmap/settings/greeting").exists(), "the configMap volume");
    // The emptyDir's tmpfs, the container's root filesystem, the pod's pinned namespaces.
    let mounts = mounts_under(&data);
    assert!(mounts.contains(&volumes.join("kubernetes.io~empty-dir/scratch")), "{mounts:?}");
    assert!(mounts.len() >= 3, "{mounts:?}");
    assert!(!pod_cgroups(&uid).is_empty(), "the pod's cgroup");
    assert!(masquerade_rules().contains(&format!("-s {POD_CIDR} ")), "the masquerade rule");

    let reset = tokio::task::spawn_blocking({
        let data = data.clone();
        move || gantry(&["reset"], &data).ok()
    })
    .await
    .expect("reset");
    let out = &reset.stdout;
    assert!(out.contains("removed 1 container(s)"), "{out}");
    assert!(out.contains("removed 1 pod sandbox(es)"), "{out}");
    assert!(out.contains("released 1 pod network(s) (CNI DEL)"), "{out}");
    assert!(out.contains("removed the data directory"), "{out}");
    assert!(shims_under(&data).is_empty(), "shims left: {:?}", shims_under(&data));
    assert!(mounts_under(parent.path()).is_empty(), "mounts left: {:?}", mounts_under(parent.path()));
    assert!(pod_cgroups(&uid).is_empty(), "cgroups left: {:?}", pod_cgroups(&uid));
    assert!(!masquerade_rules().contains(&format!("-s {POD_CIDR} ")), "{}", masquerade_rules());
    // The bridge goes unless pods of another Gantry on this machine (another test) are still attached to it.
    let bridge = Path::new("/sys/class/net").join(gantry_agent::agent::BRIDGE);
    assert!(!bridge.exists() || out.contains("kept the pod network's bridge"), "{out}");
    assert!(!data.exists(), "the data directory is left");

    let again = tokio::task::spawn_blocking({
        let data = data.clone();
        move || gantry(&["reset"], &data).ok()
    })
    .await
    .expect("second reset");
    assert!(again.stdout.starts_with("Nothing to reset"), "{}", again.stdout);
}

/// Removes the test's own cgroup root if the reset did not.
struct CgroupRootCleanup(String);

impl Drop for CgroupRootCleanup {
    fn drop(&mut self) {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for mount in gantry_agent::reset::parse_mountinfo(&text) {
            if mount.fs_type == "cgroup" || mount.fs_type == "cgroup2" {
                let root = mount.mount_point.join(&self.0);
                for qos in ["besteffort", "burstable", ""] {
                    let _ = std::fs::remove_dir(root.join(qos).join("podreset-crash"));
                    let _ = std::fs::remove_dir(root.join(qos));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_a_crash_kills_a_container_whose_shim_died_and_unmounts_its_volumes() {
    use gantry_runtime::RuntimeService as _;
    use gantry_runtime::cri::{ContainerConfig, NamespaceMode, NamespaceOptions, PodSandboxConfig, PodSandboxMetadata};
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let _serial = SERIAL.lock().await;
    let parent = tempfile::tempdir().expect("tempdir");
    let data = parent.path().join("data");
    let _reset = ResetOnDrop(data.clone(), None);
    let cgroup_root = format!("gantry-reset-test-{}", std::process::id());
    let _cgroups = CgroupRootCleanup(cgroup_root.clone());
    let images = gantry_runtime::image::ImageStore::open(data.join("images")).expect("store");
    let archive = parent.path().join("busybox.tar");
    gantry_runtime::testing::write_busybox_archive(&archive, BUSYBOX_IMAGE).expect("archive");
    images.import_archive(&archive).expect("import");
    let shim = gantry_runtime::native::ShimCommand {
        program: PathBuf::from(env!("CARGO_BIN_EXE_gantry")),
        args: vec!["shim".to_string()],
    };
    let mut config = gantry_runtime::native::NativeConfig::new(data.join("run"), shim);
    config.cgroup_root = cgroup_root.clone();
    let runtime =
        gantry_runtime::native::NativeRuntime::new(config, std::sync::Arc::new(images), None).expect("runtime");
    let sandbox_config = PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: "crash".into(),
            namespace: "default".into(),
            uid: "reset-crash".into(),
            attempt: 0,
        },
        log_directory: data.join("pods/reset-crash/logs"),
        namespaces: NamespaceOptions { network: NamespaceMode::Node, ipc: NamespaceMode::Node, ..Default::default() },
        ..Default::default()
    };
    let sandbox = runtime.run_pod_sandbox(&sandbox_config).await.expect("sandbox");
    let container = ContainerConfig {
        name: "main".into(),
        image: BUSYBOX_IMAGE.into(),
        command: vec!["sleep".into(), "1000".into()],
        log_path: "main/0.log".into(),
        ..Default::default()
    };
    let id = runtime.create_container(&sandbox, &container, &sandbox_config).await.expect("create");
    runtime.start_container(&id).await.expect("start");
    let init = runtime.container_status(&id).await.expect("status").pid.expect("pid");
    // A memory-backed volume, as the agent mounts them.
    let volume = data.join("pods/reset-crash/volumes/kubernetes.io~empty-dir/scratch");
    std::fs::create_dir_all(&volume).expect("volume dir");
    gantry_agent::volumes::mounts::mount_tmpfs(&volume, Some(1 << 20)).expect("tmpfs");
    // The crash: the shims die, the container's process lives on in the pod's cgroup.
    for pid in shims_under(&data) {
        gantry_e2e::signal(pid, "KILL");
    }
    let deadline = Instant::now() + patience();
    while !shims_under(&data).is_empty() {
        assert!(Instant::now() < deadline, "the shims survived SIGKILL");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(Path::new(&format!("/proc/{init}")).exists(), "the container died with its shim");

    // A host-gateway route as the agent installs them towards another node's pod CIDR (a blackhole here: the
    // test has no other node), removed again if the test fails.
    let route = ["route", "add", "blackhole", "10.249.251.0/24", "proto", "247"];
    assert!(std::process::Command::new("ip").args(route).status().expect("ip").success());
    struct RouteCleanup;
    impl Drop for RouteCleanup {
        fn drop(&mut self) {
            let del = ["route", "del", "blackhole", "10.249.251.0/24", "proto", "247"];
            let _ = std::process::Command::new("ip").args(del).stderr(std::process::Stdio::null()).status();
        }
    }
    let _route = RouteCleanup;

    let mut options = gantry_agent::reset::ResetOptions::new(&data);
    options.cgroup_root = cgroup_root.clone();
    options.bridge = "gantry-none".into();
    let report = gantry_agent::reset::reset(&options).await.expect("reset");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.sandboxes, report.containers), (1, 1), "{report:?}");
    assert!(report.mounts >= 1 && report.cgroups >= 1 && report.routes >= 1 && report.data_dir_removed, "{report:?}");
    let routes = std::process::Command::new("ip").args(["route", "show", "proto", "247"]).output().expect("ip");
    assert!(!String::from_utf8_lossy(&routes.stdout).contains("10.249.251.0/24"), "the route is left");
    // The process is gone, or a zombie waiting for its new parent to reap it.
    let deadline = Instant::now() + patience();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
        if matches!(state, None | Some("Z")) {
            break;
        }
        assert!(Instant::now() < deadline, "the container's process {init} survived the reset: {stat}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(mounts_under(parent.path()).is_empty(), "{:?}", mounts_under(parent.path()));
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for mount in gantry_agent::reset::parse_mountinfo(&text) {
        if mount.fs_type == "cgroup" || mount.fs_type == "cgroup2" {
            let root = mount.mount_point.join(&cgroup_root);
            assert!(!root.exists(), "{} is left", root.display());
        }
    }
    assert!(!data.exists());
}
