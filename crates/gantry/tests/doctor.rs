//! `gantry doctor` on this machine: it passes where nodes run (CI runs as root with the packages installed), and a
//! port in use is named with the process that holds it.

use gantry_e2e::Output;

fn doctor(secure_port: u16, node_api_port: u16, data_dir: &std::path::Path) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.arg("doctor").arg("--data-dir").arg(data_dir);
    command.args(["--secure-port", &secure_port.to_string(), "--node-api-port", &node_api_port.to_string()]);
    gantry_e2e::run(command, None, gantry_e2e::patience())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[test]
fn doctor_passes_on_a_machine_that_runs_nodes() {
    if !is_root() {
        eprintln!("skipped: needs root (the machine a node runs on)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let output = doctor(free_port(), free_port(), &dir.path().join("data")).ok();
    assert!(!output.stdout.contains("problem:"), "{}", output.stdout);
    let last = output.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("OK: this machine can run a Gantry node"), "{}", output.stdout);
    assert!(last.contains("running as root") && last.contains("overlayfs"), "{last}");
}

#[test]
fn a_port_in_use_is_a_problem_line_naming_its_holder() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let output = doctor(port, free_port(), dir.path()).fails();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line = output
        .stdout
        .lines()
        .find(|l| l.starts_with("problem: API server port"))
        .unwrap_or_else(|| panic!("no line about port {port}:\n{}", output.stdout));
    assert!(line.contains(&format!("port {port} is in use by ")), "{line}");
    assert!(line.contains(&format!("(pid {})", std::process::id())), "{line}");
    drop(listener);
}
