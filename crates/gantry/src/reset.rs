//! `gantry reset`: stops every pod of this node and removes everything Gantry keeps on the machine for a data
//! directory (the work is `gantry_agent::reset`), and the data directory lock the long-running commands hold.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use gantry_agent::reset::{DataDirLock, ResetOptions};

#[derive(clap::Args)]
pub struct ResetArgs {
    /// Gantry's data directory. Default: /var/lib/gantry as root, else $XDG_DATA_HOME/gantry.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The agent's cgroup root, in every cgroup hierarchy.
    #[arg(long, default_value = "gantry")]
    cgroup_root: String,
}

/// Creates `data_dir` if needed and locks it for this process's lifetime (keep the returned lock alive): `gantry
/// up`, `gantry agent` and `gantry server` never share a data directory, and `gantry reset` refuses while one runs.
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    Ok(DataDirLock::acquire(data_dir)?)
}

pub fn run(args: ResetArgs, default_data_dir: PathBuf) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or(default_data_dir);
    let mut options = ResetOptions::new(&data_dir);
    options.cgroup_root = args.cgroup_root;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = runtime.block_on(gantry_agent::reset::reset(&options))?;
    if report.nothing_done() {
        println!("Nothing to reset: no Gantry state for {} on this machine.", data_dir.display());
        return Ok(());
    }
    for line in report.summary_lines() {
        println!("{line}");
    }
    for error in &report.errors {
        eprintln!("not removed: {error}");
    }
    anyhow::ensure!(
        report.errors.is_empty(),
        "the reset of {} is incomplete ({} problem(s) above); run it again once they are fixed",
        data_dir.display(),
        report.errors.len()
    );
    println!("Gantry's state for {} is removed from this machine.", data_dir.display());
    Ok(())
}
