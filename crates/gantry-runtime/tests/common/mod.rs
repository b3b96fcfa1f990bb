//! Shared setup for the runtime's integration tests: the runtime's own test scaffolding with the crate's
//! `gantry-shim` binary as the shim.

#![allow(dead_code)]

use std::path::PathBuf;

use gantry_runtime::native::ShimCommand;
pub use gantry_runtime::testing::runtime::*;

/// The companion shim binary built with these tests.
pub fn shim() -> ShimCommand {
    ShimCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_gantry-shim")), args: vec![] }
}
