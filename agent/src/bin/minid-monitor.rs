//! `minid-monitor`: the lean image a container's shim continues in once the container is set
//! up (see `minid::shim`). It links only the monitor loop — no argument parser, no spec, no
//! cgroup managers — so a long-running container costs little resident memory. Not meant to be
//! started by hand: its arguments are written by the shim.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(minid::shim::lean_main(&args));
}
