//! The `rkl` subcommands other than `serve`, run as a user runs them
//! against the simulator: their output, their JSON and their exit status.

mod common;

use common::*;
use std::process::{Command, Output};

fn rkl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rkl"))
        .args(args)
        .env("RKL_RUNTIME", sim())
        .env("RKLLM_SIM_ABI", "1.3")
        .env("RKLLM_SIM_TIME_SCALE", "0")
        .output()
        .expect("run rkl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_streams_one_reply_and_fails_cleanly() {
    let dir = temp_dir("cmd-run");
    let m = model(&dir, "m", &["reply = You said: {prompt}"]);
    let out = rkl(&["run", m.to_str().unwrap(), "hello there"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("You said: hello there"), "{}", stdout(&out));
    let out = rkl(&["run", "/nonexistent/model.rkllm", "x"]);
    assert_eq!(out.status.code(), Some(1), "a missing model: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model.rkllm"));
    assert_eq!(rkl(&["run"]).status.code(), Some(2), "usage");
    assert_eq!(rkl(&["no-such-command"]).status.code(), Some(2), "usage");
}

#[test]
fn info_names_the_release() {
    let out = rkl(&["info", "--json"]);
    let text = stdout(&out);
    let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(json.to_string().contains("1.3"), "{json}");
}

#[test]
fn bench_reports_json_figures() {
    let dir = temp_dir("cmd-bench");
    let m = model(&dir, "b", &["reply = one two three four"]);
    let out = rkl(&["bench", m.to_str().unwrap(), "--runs", "1", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let start = text.find('{').unwrap_or_else(|| panic!("no JSON in: {text}"));
    let json: serde_json::Value = serde_json::from_str(text[start..].trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(json.to_string().contains("ttft"), "{json}");
}

#[test]
fn cache_save_then_list_and_show() {
    let dir = temp_dir("cmd-cache");
    let m = model(&dir, "c", &["reply = ok"]);
    let path = dir.join("sys.rklcache");
    let out = rkl(&["cache", "save", m.to_str().unwrap(), "You are terse.", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let out = rkl(&["cache", "list", dir.to_str().unwrap()]);
    assert!(out.status.success() && stdout(&out).contains("sys.rklcache"), "{out:?}");
    let out = rkl(&["cache", "show", path.to_str().unwrap()]);
    assert!(out.status.success() && stdout(&out).contains("You are terse."), "{out:?}");
}
