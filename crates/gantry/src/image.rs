//! `gantry image`: the node's image store from the command line (list, pull, remove, import, prune).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use anyhow::Context;
use gantry_runtime::cri::{PullProgress, RegistryAuth};
use gantry_runtime::image::{ImageError, ImageStore, PullOptions};

#[derive(clap::Args)]
pub struct ImageArgs {
    /// Gantry's data directory; images live in DIR/images. Default: /var/lib/gantry as root, else
    /// $XDG_DATA_HOME/gantry.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// A registry (HOST or HOST:PORT) to reach over plain HTTP; repeatable. Registries on loopback addresses
    /// always are.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT", global = true)]
    insecure_registries: Vec<String>,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(clap::Subcommand)]
enum ImageCommand {
    /// List images: one line per reference.
    #[command(alias = "list")]
    Ls,
    /// Pull an image from a registry, with a progress bar per layer.
    Pull {
        /// The image: `busybox`, `registry:5000/team/app:v1`, `name@sha256:...`.
        reference: String,
        /// User name for the registry.
        #[arg(long, requires = "password")]
        username: Option<String>,
        /// Password (or token) for the registry.
        #[arg(long, env = "GANTRY_REGISTRY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Take the credentials from a Docker config JSON file (an imagePullSecret's `.dockerconfigjson`).
        #[arg(long, conflicts_with = "username")]
        docker_config: Option<PathBuf>,
    },
    /// Remove images: a reference loses its tag (the image goes with its last tag), an ID removes the image.
    #[command(alias = "remove")]
    Rm {
        /// References or IDs (an unambiguous ID prefix will do).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Import the images of an OCI archive (tar, optionally gzip'd), an OCI layout directory or a `docker save`
    /// archive.
    Import {
        /// The archive or directory.
        archive: PathBuf,
        /// Name images the archive names by a bare tag BASE:tag (as `ctr import --base-name` does).
        #[arg(long, value_name = "BASE")]
        base_name: Option<String>,
    },
    /// Build a minimal image from this machine's busybox (Debian package busybox-static) and import it, to try
    /// Gantry without a registry: the examples in `examples/` run it.
    ImportBusybox {
        /// The image's name.
        #[arg(default_value = "busybox:local")]
        name: String,
    },
    /// Remove blobs and layers no image uses, and leftovers of interrupted pulls.
    Prune {
        /// Also remove every image (this command cannot tell which ones containers use).
        #[arg(long)]
        all: bool,
    },
}

/// An image store error as one line (the error's own message already names its cause).
fn line(error: ImageError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

pub fn run(args: ImageArgs, default_data_dir: PathBuf) -> anyhow::Result<()> {
    let root = args.data_dir.unwrap_or(default_data_dir).join("images");
    let store =
        ImageStore::open(&root).map_err(line).with_context(|| format!("opening the image store {}", root.display()))?;
    let store =
        store.with_pull_options(PullOptions { insecure_registries: args.insecure_registries, ..Default::default() });
    match args.command {
        ImageCommand::Ls => list(&store),
        ImageCommand::Pull { reference, username, password, docker_config } => {
            let auth = match (username, docker_config) {
                (Some(username), _) => RegistryAuth::Basic { username, password: password.unwrap_or_default() },
                (None, Some(path)) => {
                    let json = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                    let registry = gantry_runtime::image::Reference::parse(&reference)
                        .with_context(|| format!("invalid image reference {reference:?}"))?
                        .registry()
                        .to_string();
                    gantry_runtime::image::credentials_from_docker_config(&json, &registry)
                        .map_err(line)?
                        .unwrap_or_default()
                }
                (None, None) => RegistryAuth::Anonymous,
            };
            pull(&store, &reference, &auth)
        }
        ImageCommand::Rm { images } => {
            for image in images {
                let outcome = store.remove(&image).map_err(line)?;
                for reference in outcome.untagged {
                    println!("Untagged: {reference}");
                }
                if let Some(id) = outcome.deleted {
                    println!("Deleted: {id}");
                }
            }
            Ok(())
        }
        ImageCommand::Import { archive, base_name } => {
            let images = store.import_archive_as(&archive, base_name.as_deref()).map_err(line)?;
            for image in images {
                let name = image.repo_tags.first().cloned().unwrap_or_else(|| "(no name)".into());
                println!("Imported {name} ({})", short_id(&image.id));
            }
            Ok(())
        }
        ImageCommand::ImportBusybox { name } => {
            let busybox = std::path::Path::new(gantry_runtime::testing::BUSYBOX);
            anyhow::ensure!(
                busybox.exists(),
                "{} is missing: install it with `apt-get install busybox-static`",
                busybox.display()
            );
            let dir = tempfile::tempdir().context("creating a temporary directory")?;
            let archive = dir.path().join("busybox.tar");
            gantry_runtime::testing::write_busybox_archive(&archive, &name).map_err(line)?;
            let images = store.import_archive(&archive).map_err(line)?;
            for image in images {
                let name = image.repo_tags.first().cloned().unwrap_or_else(|| name.clone());
                println!("Imported {name} ({})", short_id(&image.id));
            }
            Ok(())
        }
        ImageCommand::Prune { all } => {
            let report = if all { store.prune(&HashSet::new()) } else { store.collect_garbage() }.map_err(line)?;
            for id in &report.images_removed {
                println!("Deleted: {id}");
            }
            println!(
                "Removed {} blobs and {} layers, {} freed",
                report.blobs_removed,
                report.layers_removed,
                human_size(report.bytes_freed)
            );
            Ok(())
        }
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Sizes as Docker prints them: decimal units, three significant digits.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.2} {}", UNITS[unit])
    } else if value < 100.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

fn list(store: &ImageStore) -> anyhow::Result<()> {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for image in store.list().map_err(line)? {
        let size = human_size(image.size);
        let id = short_id(&image.id).to_string();
        if image.repo_tags.is_empty() {
            rows.push(("<none>".into(), id, size));
        } else {
            for reference in &image.repo_tags {
                rows.push((reference.clone(), id.clone(), size.clone()));
            }
        }
    }
    rows.sort();
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max("REFERENCE".len());
    println!("{:width$}  {:12}  SIZE", "REFERENCE", "IMAGE ID");
    for (reference, id, size) in rows {
        println!("{reference:width$}  {id:12}  {size}");
    }
    Ok(())
}

fn pull(store: &ImageStore, reference: &str, auth: &RegistryAuth) -> anyhow::Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let image = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PullProgress>();
        let bars = tokio::spawn(async move {
            let multi = MultiProgress::new();
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let mut by_layer: HashMap<String, ProgressBar> = HashMap::new();
            while let Some(event) = rx.recv().await {
                let bar = by_layer.entry(event.layer.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(event.total.unwrap_or(0)));
                    bar.set_style(style.clone());
                    bar.set_prefix(short_id(&event.layer).to_string());
                    bar
                });
                if let Some(total) = event.total {
                    bar.set_length(total);
                }
                bar.set_position(event.fetched);
                if event.cached {
                    bar.finish_with_message("already present");
                } else if event.total == Some(event.fetched) {
                    bar.finish_with_message("done");
                }
            }
            for bar in by_layer.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        });
        let result = store.pull(reference, auth, Some(tx)).await;
        // The sender is gone with the pull: the bars finish drawing before the result is printed.
        let _ = bars.await;
        result
    });
    let image = image.map_err(line)?;
    let name = image.repo_tags.first().or(image.repo_digests.first()).cloned().unwrap_or_default();
    println!("Pulled {name} ({})", short_id(&image.id));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_printed_as_docker_prints_them() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(4_261_412), "4.26 MB");
        assert_eq!(human_size(72_800_000), "72.8 MB");
        assert_eq!(human_size(1_234_000_000), "1.23 GB");
        assert_eq!(human_size(123_456_000), "123 MB");
    }
}
