//! Isolation mode against workers that misbehave on purpose: garbage,
//! oversized frames, heartbeats without progress, a child that keeps the
//! socket open, a frozen worker with a large prompt in flight, and checks of
//! what the worker is given (descriptors) and which program is run.
//!
//! This file is its own harness (`harness = false`): run with
//! `--rkl-worker`, as rkl starts a worker, it plays the fake named by the
//! name it was started under (a symlink to this executable per fake), and
//! speaks the protocol by hand: a little-endian `u32` length, then JSON.
//! Every case asserts the documented status and that the call returns within
//! its documented bound (plus slack for a loaded machine).

mod common;

use common::*;
use rkl::{ErrorKind, GenerateRequest, Model, OpenConfig};
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The abort grace of every model here; close is documented to end a worker
/// within it plus one second.
const GRACE: Duration = Duration::from_millis(200);
/// Allowed on top of a documented bound for a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--rkl-worker") {
        fake::run();
        return;
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: [(&str, fn()); 9] = [
        ("garbage_fails_the_open", garbage_fails_the_open),
        ("an_oversized_frame_fails_the_open", an_oversized_frame_fails_the_open),
        ("heartbeats_without_progress_time_out", heartbeats_without_progress_time_out),
        ("heartbeats_with_progress_keep_a_call_alive", heartbeats_with_progress_keep_a_call_alive),
        ("a_child_holding_the_socket_cannot_keep_calls_waiting", a_child_holding_the_socket_cannot_keep_calls_waiting),
        ("a_timeout_kills_the_children_of_the_worker", a_timeout_kills_the_children_of_the_worker),
        (
            "close_ends_a_frozen_worker_with_a_large_prompt_in_flight",
            close_ends_a_frozen_worker_with_a_large_prompt_in_flight,
        ),
        ("the_worker_gets_no_descriptor_of_the_caller", the_worker_gets_no_descriptor_of_the_caller),
        ("a_bare_host_name_runs_the_program_on_path", a_bare_host_name_runs_the_program_on_path),
    ];
    let mut failed = Vec::new();
    for (name, case) in cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(case) {
            Ok(()) => println!("test {name} ... ok ({:?})", started.elapsed()),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        println!("fake_worker: {} failed: {failed:?}", failed.len());
        std::process::exit(1);
    }
    println!("fake_worker: all passed");
}

/// A directory with a symlink per fake, all to this executable.
fn fakes() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_dir("fake-workers");
        let me = std::env::current_exe().unwrap();
        for mode in fake::MODES {
            std::os::unix::fs::symlink(&me, dir.join(mode)).unwrap();
        }
        dir
    })
}

/// Where the fake `mode` reports what it saw.
fn report_of(mode: &str) -> PathBuf {
    fakes().join(format!("{mode}.report"))
}

fn settings(mode: &str) -> OpenConfig {
    let mut c = config(&model_file(&format!("fake-{mode}"), &[]));
    c.isolated = true;
    c.host_path = Some(fakes().join(mode));
    c.abort_grace = GRACE;
    c
}

/// Runs `f`, asserting it returns within `bound` (plus slack); its result.
fn within<T>(what: &str, bound: Duration, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    assert!(took < bound + SLACK, "{what} took {took:?}, documented bound {bound:?}");
    out
}

fn expect_err<T>(what: &str, result: rkl::Result<T>, kind: ErrorKind) -> rkl::Error {
    match result {
        Ok(_) => panic!("{what}: succeeded, expected {kind:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: {e}");
            e
        }
    }
}

fn generate(model: &Model, prompt: &str) -> rkl::Result<rkl::Stats> {
    model.generate(&GenerateRequest::new(prompt), |_| ControlFlow::Continue(()))
}

fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn read_pid(mode: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = std::fs::read_to_string(report_of(mode)).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "the fake {mode} reported no child");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn garbage_fails_the_open() {
    let err = within("open", Duration::ZERO, || {
        expect_err("open", Model::open(&settings("garbage")), ErrorKind::RuntimeCrashed)
    });
    assert!(err.message().contains("malformed"), "{err}");
}

fn an_oversized_frame_fails_the_open() {
    let err = within("open", Duration::ZERO, || {
        expect_err("open", Model::open(&settings("oversized")), ErrorKind::RuntimeCrashed)
    });
    assert!(err.message().contains("too large"), "{err}");
}

fn heartbeats_without_progress_time_out() {
    let limit = Duration::from_millis(400);
    let mut c = settings("progress-only");
    c.call_timeout = Some(limit);
    let model = Model::open(&c).unwrap();
    let started = Instant::now();
    let err = within("generate", limit, || expect_err("generate", generate(&model, "x"), ErrorKind::Timeout));
    assert!(started.elapsed() >= limit, "{err}");
    within("close", GRACE + Duration::from_secs(1), || model.close().unwrap());
}

fn heartbeats_with_progress_keep_a_call_alive() {
    // The fake beats with a rising count for 1 s, then finishes: a limit of
    // 400 ms must not cut it.
    let mut c = settings("progress-rising");
    c.call_timeout = Some(Duration::from_millis(400));
    let model = Model::open(&c).unwrap();
    let stats = generate(&model, "x").expect("rising heartbeats are progress");
    assert!(stats.total_ms >= 900.0, "{stats:?}");
    model.close().unwrap();
}

fn a_child_holding_the_socket_cannot_keep_calls_waiting() {
    // The fake starts a child in a session of its own (out of reach of the
    // group kill) that inherits the socket, then dies.
    let _ = std::fs::remove_file(report_of("escaped-child"));
    let model = Model::open(&settings("escaped-child")).unwrap();
    let err = within("generate", Duration::from_secs(1), || {
        expect_err("generate", generate(&model, "x"), ErrorKind::RuntimeCrashed)
    });
    assert!(err.message().contains("exited with status 3"), "{err}");
    let child = read_pid("escaped-child");
    assert!(process_exists(child), "the child lives on, holding the socket");
    within("close", GRACE + Duration::from_secs(1), || model.close().unwrap());
    // SAFETY: kill(2) on the child's pid, which this test made.
    unsafe { libc::kill(child, libc::SIGKILL) };
}

fn a_timeout_kills_the_children_of_the_worker() {
    let _ = std::fs::remove_file(report_of("hung-with-child"));
    let limit = Duration::from_millis(400);
    let mut c = settings("hung-with-child");
    c.call_timeout = Some(limit);
    let model = Model::open(&c).unwrap();
    within("generate", limit, || expect_err("generate", generate(&model, "x"), ErrorKind::Timeout));
    let child = read_pid("hung-with-child");
    let deadline = Instant::now() + Duration::from_secs(2);
    while process_exists(child) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let alive = process_exists(child);
    if alive {
        // SAFETY: kill(2) on the child's pid, which this test made.
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
    assert!(!alive, "the worker's child survived the kill");
    within("close", GRACE + Duration::from_secs(1), || model.close().unwrap());
}

/// How long a generation of an 8 MiB prompt takes here to get the whole
/// prompt to a worker (measured with one that reads it and nothing more):
/// the frozen case waits twice that, at least 300 ms, before it closes, so
/// that its generation is in flight on a slow machine too (emulated aarch64
/// takes seconds), while what it asserts stays the same.
fn large_prompt_send_time() -> Duration {
    let _ = std::fs::remove_file(report_of("drain"));
    let model = Model::open(&settings("drain")).unwrap();
    let started = Instant::now();
    let generating = {
        let model = model.clone();
        std::thread::spawn(move || generate(&model, &"x".repeat(8 << 20)))
    };
    let deadline = started + Duration::from_secs(120);
    while !report_of("drain").exists() {
        assert!(Instant::now() < deadline, "the draining fake never received the prompt");
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    eprintln!("fake_worker: sending an 8 MiB prompt takes {took:?}");
    model.close().unwrap();
    let _ = generating.join().unwrap();
    took
}

fn close_ends_a_frozen_worker_with_a_large_prompt_in_flight() {
    let wait = Duration::from_millis(300).max(large_prompt_send_time() * 2);
    // No call_timeout: only close can end it.
    let model = Model::open(&settings("frozen")).unwrap();
    let generating = {
        let model = model.clone();
        std::thread::spawn(move || generate(&model, &"x".repeat(8 << 20)))
    };
    std::thread::sleep(wait);
    within("close", GRACE + Duration::from_secs(1), || model.close().unwrap());
    let result = within("the generation's end after close", Duration::ZERO, || generating.join().unwrap());
    // As in-process, close ends the model's generations aborted.
    assert_eq!(result.expect("an aborted generation").finish, rkl::FinishReason::Aborted);
}

fn the_worker_gets_no_descriptor_of_the_caller() {
    let _ = std::fs::remove_file(report_of("descriptors"));
    // A file opened without O_CLOEXEC, as careless C code does.
    let path = std::ffi::CString::new(std::env::current_exe().unwrap().into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let leaky = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(leaky >= 3);
    let model = Model::open(&settings("descriptors")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let seen = loop {
        if let Ok(seen) = std::fs::read_to_string(report_of("descriptors")) {
            if seen.ends_with('\n') {
                break seen;
            }
        }
        assert!(Instant::now() < deadline, "the fake reported nothing");
        std::thread::sleep(Duration::from_millis(10));
    };
    model.close().unwrap();
    // SAFETY: `leaky` is the descriptor opened above, closed once.
    unsafe { libc::close(leaky) };
    assert_eq!(seen.trim(), "0 1 2", "descriptors the worker holds besides the one listing them");
}

fn a_bare_host_name_runs_the_program_on_path() {
    // `./rkl-host` in the working directory and another on PATH: the bare
    // name means the one on PATH, and that is the one that runs.
    let here = temp_dir("bare-cwd");
    let on_path = temp_dir("bare-path");
    let me = std::env::current_exe().unwrap();
    std::os::unix::fs::symlink(&me, here.join("rkl-host")).unwrap();
    std::os::unix::fs::symlink(&me, on_path.join("rkl-host")).unwrap();
    let report = on_path.join("rkl-host.report");
    let old_path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![on_path.clone()];
    dirs.extend(std::env::split_paths(&old_path));
    let old_cwd = std::env::current_dir().unwrap();
    std::env::set_current_dir(&here).unwrap();
    std::env::set_var("PATH", std::env::join_paths(dirs).unwrap());
    let mut c = settings("named");
    c.host_path = Some(PathBuf::from("rkl-host"));
    let opened = Model::open(&c);
    std::env::set_current_dir(old_cwd).unwrap();
    std::env::set_var("PATH", old_path);
    opened.expect("the bare name is found on PATH").close().unwrap();
    let ran = std::fs::read_to_string(&report).expect("the program on PATH ran");
    assert_eq!(Path::new(ran.trim()), on_path.join("rkl-host"));
    assert!(!here.join("rkl-host.report").exists());
}

/// The fakes: each reads the Open request and answers as its name says.
mod fake {
    use super::*;
    use serde_json::{json, Value};

    pub const MODES: [&str; 10] = [
        "garbage",
        "oversized",
        "progress-only",
        "progress-rising",
        "escaped-child",
        "hung-with-child",
        "frozen",
        "drain",
        "descriptors",
        "named",
    ];

    pub fn run() {
        let argv0 = PathBuf::from(std::env::args_os().next().unwrap());
        let mode = argv0.file_name().unwrap().to_string_lossy().into_owned();
        let report = PathBuf::from(format!("{}.report", argv0.display()));
        if mode == "descriptors" {
            // First, before this program opens anything of its own.
            let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            // The directory being read is the one extra descriptor: drop it
            // (it is the highest, opened last).
            let mut fds: Vec<i32> = fds.iter().filter_map(|f| f.parse().ok()).collect();
            fds.sort();
            fds.pop();
            let listed: Vec<String> = fds.iter().map(i32::to_string).collect();
            std::fs::write(&report, format!("{}\n", listed.join(" "))).unwrap();
        }
        // SAFETY: fd 0 is the socket rkl passed; nothing else owns it here.
        let mut socket = unsafe { UnixStream::from_raw_fd(0) };
        let open = read(&mut socket).expect("the Open request");
        let id = open["Open"]["id"].as_u64().unwrap();
        match mode.as_str() {
            "garbage" => {
                send_raw(&mut socket, b"\x05\x00\x00\x00hello");
                idle();
            }
            "oversized" => {
                send_raw(&mut socket, &u32::MAX.to_le_bytes());
                idle();
            }
            // `rkl-host`: the bare-name case's two programs.
            "named" | "rkl-host" => {
                std::fs::write(&report, argv0.as_os_str().as_encoded_bytes()).unwrap();
            }
            _ => {}
        }
        send(&mut socket, &json!({"Opened": {"id": id, "family": "V1_3", "runtime_path": "/fake/librkllmrt.so"}}));
        if mode == "drain" {
            // Reads frames whole until the large prompt's request has come
            // and says so; then ends the run when it is aborted, and exits
            // on Close.
            loop {
                let mut len = [0u8; 4];
                socket.read_exact(&mut len).unwrap();
                let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
                socket.read_exact(&mut body).unwrap();
                if body.len() >= 8 << 20 {
                    std::fs::write(&report, body.len().to_string()).unwrap();
                    break;
                }
            }
            while let Some(request) = read(&mut socket) {
                if let Some(id) = request["Abort"]["id"].as_u64() {
                    send(&mut socket, &json!({"Finished": {"id": id, "stats": finished_stats()}}));
                } else if request == json!("Close") {
                    return;
                }
            }
            return;
        }
        if mode == "frozen" {
            // SAFETY: raise(3) stops this process; rkl's kill ends it.
            unsafe { libc::raise(libc::SIGSTOP) };
            idle();
        }
        while let Some(request) = read(&mut socket) {
            let Some(id) = request["Generate"]["id"].as_u64() else {
                if request == json!("Close") {
                    return;
                }
                continue;
            };
            send(&mut socket, &json!({"Accepted": {"id": id}}));
            match mode.as_str() {
                "progress-only" => loop {
                    send(&mut socket, &json!({"Progress": {"work": 1}}));
                    std::thread::sleep(Duration::from_millis(10));
                },
                "progress-rising" => {
                    for work in 1..=100 {
                        send(&mut socket, &json!({"Progress": {"work": work}}));
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    send(&mut socket, &json!({"Finished": {"id": id, "stats": finished_stats()}}));
                }
                "escaped-child" | "hung-with-child" => {
                    let mut command = std::process::Command::new("sleep");
                    command.arg("60").stdout(std::process::Stdio::null());
                    if mode == "escaped-child" {
                        use std::os::unix::process::CommandExt;
                        // SAFETY: setsid(2) between fork and exec only.
                        unsafe {
                            command.pre_exec(|| {
                                libc::setsid();
                                Ok(())
                            });
                        }
                    }
                    // The child inherits fd 0, the socket. Never waited
                    // for: the fake exits or is killed with it running.
                    #[allow(clippy::zombie_processes)]
                    let child = command.spawn().unwrap();
                    std::fs::write(&report, child.id().to_string()).unwrap();
                    if mode == "escaped-child" {
                        std::process::exit(3);
                    }
                    idle();
                }
                _ => idle(),
            }
        }
    }

    fn finished_stats() -> Value {
        let ms = 1000.0;
        json!({"prefill_ms": 0.0, "prefill_tokens": 1, "decode_ms": ms, "decode_tokens": 0, "memory_mb": 0.0,
               "tokens": 0, "ttft_ms": ms, "queue_ms": 0.0, "total_ms": ms, "abort_ms": 0.0, "finish": "End"})
    }

    fn idle() -> ! {
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    fn read(socket: &mut UnixStream) -> Option<Value> {
        let mut len = [0u8; 4];
        socket.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        socket.read_exact(&mut body).ok()?;
        serde_json::from_slice(&body).ok()
    }

    fn send(socket: &mut UnixStream, message: &Value) {
        let body = serde_json::to_vec(message).unwrap();
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        send_raw(socket, &frame);
    }

    fn send_raw(socket: &mut UnixStream, bytes: &[u8]) {
        let _ = socket.write_all(bytes);
    }
}
