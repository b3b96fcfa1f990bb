//! Container start-up: the native runtime against libcontainer called directly and against `runc run`, and a
//! pod sandbox with its CNI network plus a container.
//!
//! `cargo bench -p gantry-runtime --bench runtime [-- RUNS]` (as root; RUNS defaults to 100). Each run creates,
//! starts, waits for and removes a busybox `/bin/true` container; the figures are p50 and p99 of those runs.
//! libcontainer runs first, while this process is still single-threaded (it forks and changes directory).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_runtime::cri::{
    ContainerConfig, ContainerState, NamespaceMode, NamespaceOptions, PodSandboxConfig, PodSandboxMetadata,
    RuntimeService,
};
use gantry_runtime::image::ImageStore;
use gantry_runtime::native::spec::{self, JoinedNamespaces, ResolvedUser, SpecInputs};
use gantry_runtime::native::{NativeConfig, NativeRuntime, ShimCommand};
use gantry_runtime::network::cni::{CniClient, CniOptions, write_default_config};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 50.0);
    println!(
        "{name:<44} p50 {:>7.2} ms   p99 {:>7.2} ms   ({} runs)",
        p50.as_secs_f64() * 1000.0,
        percentile(&samples, 99.0).as_secs_f64() * 1000.0,
        samples.len()
    );
    p50
}

fn true_container() -> ContainerConfig {
    ContainerConfig {
        name: "true".into(),
        image: "bench/busybox:1".into(),
        command: vec!["/bin/true".into()],
        ..Default::default()
    }
}

/// Writes an OCI bundle for `/bin/true` on `rootfs`, with the spec the runtime would give it.
fn write_bundle(bundle: &Path, rootfs: &Path, cgroup: &str) -> Result<()> {
    std::fs::create_dir_all(bundle)?;
    let config = true_container();
    let image = gantry_runtime::cri::ImageConfig::default();
    let mut spec_value = serde_json::to_value(spec::build_spec(&SpecInputs {
        config: &config,
        image: &image,
        rootfs,
        user: ResolvedUser::default(),
        namespaces: JoinedNamespaces { new_pid: true, ..Default::default() },
        hostname: "bench",
        cgroups_path: cgroup,
        etc_files: vec![],
    })?)?;
    // The same layer serves every run read-only, as an image layer would.
    spec_value["root"]["readonly"] = serde_json::Value::Bool(true);
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec_value)?)?;
    Ok(())
}

fn bench_libcontainer(work: &Path, rootfs: &Path, runs: usize, pause: Duration) -> Result<Vec<Duration>> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    let root = work.join("libcontainer");
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        std::thread::sleep(pause);
        let id = format!("lc-{}-{i}", pause.as_millis());
        let bundle = work.join("bundles").join(&id);
        write_bundle(&bundle, rootfs, &format!("/gantry-bench/{id}"))?;
        let started = Instant::now();
        let mut container = ContainerBuilder::new(id.clone(), SyscallType::default())
            .with_root_path(&root)?
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()?;
        container.start()?;
        if let Some(pid) = container.pid() {
            nix::sys::wait::waitpid(pid, None)?;
        }
        container.delete(true)?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

fn bench_runc(work: &Path, rootfs: &Path, runs: usize) -> Result<Option<Vec<Duration>>> {
    if std::process::Command::new("runc").arg("--version").output().is_err() {
        println!("runc: not installed (Debian package runc); skipped");
        return Ok(None);
    }
    let root = work.join("runc");
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let id = format!("runc-{i}");
        let bundle = work.join("bundles").join(&id);
        write_bundle(&bundle, rootfs, &format!("/gantry-bench/{id}"))?;
        let started = Instant::now();
        // Without --detach, runc waits for the process and deletes the container.
        let status = std::process::Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .status()?;
        samples.push(started.elapsed());
        if !status.success() {
            return Err(format!("runc run {id} failed: {status}").into());
        }
    }
    Ok(Some(samples))
}

async fn wait_exited(runtime: &NativeRuntime, id: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if runtime.container_status(id).await?.state == ContainerState::Exited {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("container {id} did not exit").into());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn sandbox_config(name: &str, network: NamespaceMode) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: name.into(),
            namespace: "bench".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        },
        namespaces: NamespaceOptions { network, ..Default::default() },
        ..Default::default()
    }
}

async fn bench_runtime(runtime: &NativeRuntime, runs: usize) -> Result<Vec<Duration>> {
    let config = sandbox_config("runtime", NamespaceMode::Node);
    let sandbox = runtime.run_pod_sandbox(&config).await?;
    let mut samples = Vec::with_capacity(runs);
    let mut phases: [Vec<Duration>; 4] = Default::default();
    for _ in 0..runs {
        let started = Instant::now();
        let id = runtime.create_container(&sandbox, &true_container(), &config).await?;
        let created = Instant::now();
        runtime.start_container(&id).await?;
        let running = Instant::now();
        wait_exited(runtime, &id).await?;
        let exited = Instant::now();
        runtime.remove_container(&id).await?;
        let removed = Instant::now();
        samples.push(removed - started);
        for (phase, duration) in
            phases.iter_mut().zip([created - started, running - created, exited - running, removed - exited])
        {
            phase.push(duration);
        }
    }
    runtime.remove_pod_sandbox(&sandbox).await?;
    let p50 = |mut v: Vec<Duration>| {
        v.sort();
        percentile(&v, 50.0).as_secs_f64() * 1000.0
    };
    let [create, start, wait, remove] = phases;
    println!(
        "  phases p50: create {:.2} ms, start {:.2} ms, run to exit {:.2} ms, remove {:.2} ms",
        p50(create),
        p50(start),
        p50(wait),
        p50(remove)
    );
    Ok(samples)
}

async fn bench_sandbox(runtime: &NativeRuntime, runs: usize) -> Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(runs);
    let mut sandbox_phase = Vec::with_capacity(runs);
    let sleeper = ContainerConfig { command: vec!["sleep".into(), "1000".into()], ..true_container() };
    for i in 0..runs {
        let config = sandbox_config(&format!("pod-{i}"), NamespaceMode::Pod);
        let started = Instant::now();
        let sandbox = runtime.run_pod_sandbox(&config).await?;
        sandbox_phase.push(started.elapsed());
        let id = runtime.create_container(&sandbox, &sleeper, &config).await?;
        runtime.start_container(&id).await?;
        samples.push(started.elapsed());
        runtime.remove_pod_sandbox(&sandbox).await?;
    }
    sandbox_phase.sort();
    println!(
        "  of which the sandbox (namespaces, cgroup, CNI ADD) p50 {:.2} ms",
        percentile(&sandbox_phase, 50.0).as_secs_f64() * 1000.0
    );
    Ok(samples)
}

fn main() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        println!("runtime bench: needs root; skipped");
        return Ok(());
    }
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100);
    let work = tempfile::tempdir()?;
    let images = Arc::new(ImageStore::open(work.path().join("images"))?);
    let archive = work.path().join("busybox.tar");
    gantry_runtime::testing::write_busybox_archive(&archive, "bench/busybox:1")?;
    images.import_archive(&archive)?;
    let image = images.resolve("bench/busybox:1")?.ok_or("imported image not found")?;
    let layers: Vec<PathBuf> = images.rootfs_layers(&image.id)?;
    let rootfs = layers.first().ok_or("image without layers")?.clone();

    println!("container create + start + wait + remove of busybox /bin/true, {runs} runs");
    let direct =
        report("libcontainer, called directly", bench_libcontainer(work.path(), &rootfs, runs, Duration::ZERO)?);
    // Moving a process into a v1 cgroup takes a lock whose slow path waits for an RCU grace period unless another
    // migration happened moments before: back-to-back runs hide that cost, runs spaced like real pod starts pay it.
    report(
        "libcontainer, called directly, runs 20 ms apart",
        bench_libcontainer(work.path(), &rootfs, runs, Duration::from_millis(20))?,
    );
    if let Some(samples) = bench_runc(work.path(), &rootfs, runs)? {
        report("runc run (Debian runc)", samples);
    }

    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(async {
        let shim = ShimCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_gantry-shim")), args: vec![] };
        let mut config = NativeConfig::new(work.path().join("run"), shim);
        config.cgroup_root = "gantry-bench".into();
        let cni_dir = work.path().join("cni");
        let cni = if Path::new("/usr/lib/cni/bridge").exists() {
            write_default_config(&cni_dir.join("net.d"), &cni_dir.join("networks"), "gantrybench0", "10.243.0.0/16")?;
            gantry_runtime::network::masquerade::ensure_masquerade("10.243.0.0/16").await?;
            Some(CniClient::new(CniOptions::new(cni_dir.join("net.d"), cni_dir.join("cache"))))
        } else {
            None
        };
        let runtime = NativeRuntime::new(config, images.clone(), cni.clone())?;
        let native = report("gantry native runtime (shim, overlay rootfs)", bench_runtime(&runtime, runs).await?);
        println!(
            "runtime overhead: {:.2}x libcontainer direct (target <= 2x)",
            native.as_secs_f64() / direct.as_secs_f64().max(f64::EPSILON)
        );
        match cni {
            Some(_) => {
                let p50 =
                    report("sandbox (netns + CNI bridge) + container start", bench_sandbox(&runtime, runs).await?);
                println!("sandbox + container start p50 {:.2} ms (target <= 40 ms)", p50.as_secs_f64() * 1000.0);
            }
            None => println!("sandbox + CNI: containernetworking-plugins not installed; skipped"),
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    let _ = std::process::Command::new("ip").args(["link", "delete", "gantrybench0"]).status();
    // The pods' cgroups are gone with their sandboxes; the benchmark's cgroup roots go too.
    for controller in std::fs::read_dir("/sys/fs/cgroup")?.flatten() {
        let _ = std::fs::remove_dir(controller.path().join("gantry-bench"));
    }
    let _ = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(gantry_runtime::network::masquerade::remove_masquerade("10.243.0.0/16"));
    Ok(())
}
