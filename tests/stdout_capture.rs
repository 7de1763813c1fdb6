//! The runtime's version is read from stdout at its first init, by routing
//! file descriptor 1 through a pipe for a moment. That moment must stay
//! short: an init that hangs must not keep the process's stdout. Alone in
//! its test binary, because it watches the process-wide fd 1.

mod common;

use common::*;
use rkl::{ErrorKind, Model};
use std::time::{Duration, Instant};

/// Fd 1's identity, to tell the real stdout from a pipe put in its place.
fn stdout_identity() -> (u64, u64) {
    // SAFETY: fstat fills the zeroed struct it is given; fd 1 is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fstat(1, &mut st) }, 0);
    (st.st_dev as u64, st.st_ino as u64)
}

#[test]
fn a_first_init_that_hangs_gives_stdout_back() {
    let real = stdout_identity();
    // A runtime of its own: one that hangs stays stuck for the process.
    let runtime = temp_dir("hang-init-rt").join("librkllmrt.so");
    std::fs::copy(sim_library(""), &runtime).unwrap();
    let mut cfg = config(&model_file("hang-init", &["reply = never", "fault = hang@init"]));
    cfg.runtime_path = Some(runtime);
    cfg.call_timeout = Some(Duration::from_millis(300));
    let err = Model::open(&cfg).map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // The runtime printed its version line before hanging: the route ended
    // there. (Without the line it would end after a bounded time.)
    let waited = Instant::now();
    while stdout_identity() != real {
        assert!(waited.elapsed() < Duration::from_secs(10), "fd 1 is still routed through the capture pipe");
        std::thread::sleep(Duration::from_millis(5));
    }
    // And the default runtime's first init still reads its version.
    let model = open("after-hang", &["reply = fine"]);
    assert!(model.runtime_version().is_some());
    assert_eq!(stdout_identity(), real);
}
