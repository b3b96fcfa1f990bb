//! The real `gantry` binary as the container runtime's shim: `gantry shim run DIR` and `gantry shim exec REQUEST`
//! are what the node's runtime starts for each container and each exec.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_runtime::cri::{
    ContainerConfig, ContainerState, NamespaceMode, NamespaceOptions, PodSandboxConfig, PodSandboxMetadata,
    RuntimeService,
};
use gantry_runtime::image::ImageStore;
use gantry_runtime::native::{NativeConfig, NativeRuntime, ShimCommand};

/// Removes every sandbox the test left (a failed assertion part-way) and the test's cgroup root.
struct Cleanup {
    runtime: NativeRuntime,
    cgroup_root: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        gantry_runtime::testing::reset_blocking(&self.runtime);
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for controller in controllers.flatten() {
                let _ = std::fs::remove_dir(controller.path().join(&self.cgroup_root));
            }
        }
        let _ = std::fs::remove_dir(std::path::Path::new("/sys/fs/cgroup").join(&self.cgroup_root));
    }
}

#[test]
fn shim_with_unknown_arguments_prints_its_usage() {
    let output =
        std::process::Command::new(env!("CARGO_BIN_EXE_gantry")).args(["shim", "bogus"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: shim run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gantry_binary_runs_containers_as_their_shim() {
    if !nix::unistd::Uid::effective().is_root() || !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("skipped: needs root and /bin/busybox (Debian package busybox-static)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let images = ImageStore::open(dir.path().join("images")).expect("store");
    let archive = dir.path().join("busybox.tar");
    gantry_runtime::testing::write_busybox_archive(&archive, "shim.test/busybox:1").expect("archive");
    images.import_archive(&archive).expect("import");
    let shim = ShimCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_gantry")), args: vec!["shim".to_string()] };
    let mut config = NativeConfig::new(dir.path().join("run"), shim);
    config.cgroup_root = format!("gantry-shim-test-{}", std::process::id());
    let cgroup_root = config.cgroup_root.clone();
    let runtime = NativeRuntime::new(config, Arc::new(images), None).expect("runtime");
    let _cleanup = Cleanup { runtime: runtime.clone(), cgroup_root };

    let sandbox_config = PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: "shim".into(),
            namespace: "default".into(),
            uid: "uid-shim".into(),
            attempt: 0,
        },
        log_directory: dir.path().join("logs"),
        namespaces: NamespaceOptions { network: NamespaceMode::Node, ipc: NamespaceMode::Node, ..Default::default() },
        ..Default::default()
    };
    let sandbox = runtime.run_pod_sandbox(&sandbox_config).await.expect("sandbox");
    let container = ContainerConfig {
        name: "main".into(),
        image: "shim.test/busybox:1".into(),
        command: vec!["sh".into(), "-c".into(), "echo from-the-gantry-shim; exec sleep 1000".into()],
        log_path: "main/0.log".into(),
        ..Default::default()
    };
    let id = runtime.create_container(&sandbox, &container, &sandbox_config).await.expect("create");
    runtime.start_container(&id).await.expect("start");
    let log = dir.path().join("logs/main/0.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("stdout F from-the-gantry-shim") {
        assert!(Instant::now() < deadline, "no log line in {}", log.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exec = runtime.exec_sync(&id, &["sh".into(), "-c".into(), "exit 9".into()], None).await.expect("exec");
    assert_eq!(exec.exit_code, 9);
    runtime.stop_container(&id, 1).await.expect("stop");
    assert_eq!(runtime.container_status(&id).await.expect("status").state, ContainerState::Exited);
    runtime.remove_pod_sandbox(&sandbox).await.expect("remove");
    assert!(runtime.list_containers(&Default::default()).await.expect("list").is_empty());
}
