//! `rkl-host`: the worker process of rkl's isolation mode. librkl starts it
//! with a socket as stdin; it runs the RKLLM runtime for one model and
//! serves the library's requests (isolation mode, see the crate docs).

fn main() {
    std::process::exit(rkl::worker_main());
}
