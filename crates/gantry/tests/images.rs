//! The real `gantry image` commands on a throw-away data directory: import, list, remove, prune, and a pull from a
//! real registry (Debian's `docker-registry`) on a loopback port. As root (layers keep their owners).

use std::path::Path;
use std::process::Command;

use gantry_e2e::{Output, patience, run};
use gantry_runtime::testing::{ImageBuilder, Layer, TestRegistry, write_busybox_archive};

fn gantry(data_dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.arg("image").args(args).arg("--data-dir").arg(data_dir).env("RUST_LOG", "warn");
    run(command, None, patience())
}

fn skip_reason(tools: &[&str]) -> Option<String> {
    if !rustix_is_root() {
        return Some("needs root".into());
    }
    if !Path::new(gantry_runtime::testing::BUSYBOX).exists() {
        return Some("needs /bin/busybox (Debian package busybox-static)".into());
    }
    tools
        .iter()
        .find(|tool| {
            !std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        })
        .map(|tool| format!("needs {tool} (Debian package of the same name)"))
}

fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

#[test]
fn images_are_imported_listed_removed_and_pruned() {
    if let Some(reason) = skip_reason(&[]) {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let base = write_busybox_archive(&dir.path().join("busybox.tar"), "busybox").expect("busybox archive");
    let app = ImageBuilder::busybox("localhost:5000/team/app:v1")
        .layer(Layer::new().file("etc/app", "app", 0o644))
        .write_archive(&dir.path().join("app.tar"))
        .expect("app archive");
    let short = |id: &str| id.trim_start_matches("sha256:")[..12].to_string();

    let out = gantry(&data, &["import", dir.path().join("busybox.tar").to_str().expect("utf-8")]).ok();
    assert_eq!(out.stdout, format!("Imported docker.io/library/busybox:latest ({})\n", short(&base.id)));
    gantry(&data, &["import", dir.path().join("app.tar").to_str().expect("utf-8")]).ok();
    assert!(data.join("images/index.json").is_file(), "images live in DATA_DIR/images");

    let out = gantry(&data, &["ls"]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let header: Vec<&str> = lines[0].split("  ").filter(|c| !c.is_empty()).map(str::trim).collect();
    assert_eq!(header, ["REFERENCE", "IMAGE ID", "SIZE"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], "docker.io/library/busybox:latest");
    assert_eq!(row[1], short(&base.id));
    assert!(row[3] == "MB" || row[3] == "kB", "{}", lines[1]);
    assert!(lines[2].starts_with("localhost:5000/team/app:v1 "), "{}", lines[2]);

    let out = gantry(&data, &["rm", "busybox", &short(&app.id)]).ok();
    assert!(out.stdout.contains("Untagged: docker.io/library/busybox:latest\n"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("Deleted: {}\n", base.id)), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("Deleted: {}\n", app.id)), "{}", out.stdout);
    assert_eq!(gantry(&data, &["ls"]).ok().stdout.lines().count(), 1, "only the header is left");

    let out = gantry(&data, &["rm", "busybox"]).fails();
    assert_eq!(out.stderr, "error: image busybox not found\n");
    let out = gantry(&data, &["pull", "Not/Valid"]).fails();
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("error: invalid image reference \"Not/Valid\""), "{}", out.stderr);

    gantry(&data, &["import", dir.path().join("app.tar").to_str().expect("utf-8")]).ok();
    let out = gantry(&data, &["prune"]).ok();
    assert_eq!(out.stdout, "Removed 0 blobs and 0 layers, 0 B freed\n", "images in use stay");
    let out = gantry(&data, &["prune", "--all"]).ok();
    assert!(out.stdout.starts_with(&format!("Deleted: {}\nRemoved 4 blobs and 2 layers, ", app.id)), "{}", out.stdout);
}

#[test]
fn pull_fetches_from_a_loopback_registry() {
    if let Some(reason) = skip_reason(&["docker-registry", "skopeo"]) {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let registry = TestRegistry::start().expect("docker-registry");
    let image = write_busybox_archive(&dir.path().join("busybox.tar"), "busybox:1").expect("busybox archive");
    registry.push(&dir.path().join("busybox.tar"), "library/busybox", "1", None).expect("skopeo push");
    let reference = format!("{}/library/busybox:1", registry.host());
    let out = gantry(&data, &["pull", &reference, "--insecure-registry", &registry.host()]).ok();
    let short = &image.id.trim_start_matches("sha256:")[..12];
    assert_eq!(out.stdout, format!("Pulled {reference} ({short})\n"));
    let listed = gantry(&data, &["ls"]).ok();
    assert!(listed.stdout.contains(&format!("{reference}  {short}")), "{}", listed.stdout);
}
