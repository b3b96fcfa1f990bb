//! The container shim and exec helper as a companion binary, for tests and for nodes that prefer a small
//! process per container over re-executing the `gantry` binary (`gantry shim ...` runs the same code).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(gantry_runtime::native::shim::main(&args));
}
