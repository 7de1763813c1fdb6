//! Prompt caches across processes: a save killed with SIGKILL, a save that
//! runs out of space, and two processes saving to one path at once. The test
//! binary re-runs itself as the child (`child_process` below).

mod common;

use common::*;
use rkl::cache::{scan, Found};
use rkl::{GenerateRequest, Model, Verdict};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const CHILD: &str = "RKL_CACHE_TEST_CHILD";

/// A model file without a time_scale line, so the environment decides speed.
fn model_with_env_speed(tag: &str, kv_bytes: u32) -> PathBuf {
    let path = temp_dir(tag).join("model.sim");
    std::fs::write(
        &path,
        format!("RKLLM-SIM 1\nreply = ok\nprefill_us_per_token = 100000\nkv_bytes_per_token = {kv_bytes}\n"),
    )
    .unwrap();
    path
}

fn open_model(path: &Path) -> Model {
    Model::open(&config(path)).unwrap()
}

/// Starts this test binary as a child that saves `prompt` to `cache`, `times` times.
fn spawn_saver(shell_prefix: &str, model: &Path, cache: &Path, prompt: &str, times: u32, time_scale: &str) -> Child {
    let exe = std::env::current_exe().unwrap();
    let args = format!("{} child_process --exact --nocapture --test-threads=1", shell_quote(exe.to_str().unwrap()));
    Command::new("bash")
        .arg("-c")
        .arg(format!("{shell_prefix} exec {args}"))
        .env(CHILD, format!("{}\n{}\n{prompt}\n{times}", model.display(), cache.display()))
        .env("RKLLM_SIM_TIME_SCALE", time_scale)
        .env("RKL_RUNTIME", sim_library(""))
        // The child's own test summary would read like ours; keep it out.
        // Its stderr goes to a pipe: under a file-size limit, writing to an
        // inherited log file would fail and abort the child.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The child's body; does nothing in a normal test run.
#[test]
fn child_process() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let parts: Vec<&str> = spec.splitn(4, '\n').collect();
    let model = open_model(Path::new(parts[0]));
    for _ in 0..parts[3].parse::<u32>().unwrap() {
        if let Err(e) = model.cache_save(&GenerateRequest::new(parts[2]), Path::new(parts[1])) {
            eprintln!("child save failed: {e}");
            std::process::exit(3);
        }
    }
}

fn assert_valid_and_loadable(model: &Model, cache: &Path) {
    assert_eq!(rkl::cache::inspect(cache).verdict, Verdict::Valid);
    model.cache_load(cache).unwrap();
    model.cache_release().unwrap();
}

#[test]
fn a_save_killed_mid_way_leaves_the_old_cache_intact() {
    let model_path = model_with_env_speed("kill", 256);
    let model = open_model(&model_path);
    let dir = temp_dir("kill-cache");
    let cache = dir.join("c.rklcache");
    model.cache_save(&GenerateRequest::new("old"), &cache).unwrap();
    let old = std::fs::read(&cache).unwrap();

    // About 4 s of virtual prefill at real speed: plenty of time to kill it.
    let mut child = spawn_saver("", &model_path, &cache, &"a long prompt ".repeat(12), 1, "1");
    let started = Instant::now();
    while !scan(&dir).unwrap().iter().any(|f| matches!(f, Found::Temporary(_))) {
        assert!(started.elapsed() < Duration::from_secs(20), "the child never started saving");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(std::fs::read(&cache).unwrap(), old, "the manifest was not touched");
    assert_valid_and_loadable(&model, &cache);
    // The leftover is visible; the tool leaves it while it is young (a save
    // may have just made it) and removes it once it is older than a minute.
    let temporaries: Vec<_> = scan(&dir)
        .unwrap()
        .into_iter()
        .filter_map(|f| match f {
            Found::Temporary(p) => Some(p),
            _ => None,
        })
        .collect();
    assert!(!temporaries.is_empty());
    let tool = env!("CARGO_BIN_EXE_rkl-cache");
    let out = Command::new(tool).args(["clean", dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty(), "a young leftover is kept: {out:?}");
    let two_minutes_ago = std::time::SystemTime::now() - Duration::from_secs(120);
    for p in &temporaries {
        std::fs::File::options().write(true).open(p).unwrap().set_modified(two_minutes_ago).unwrap();
    }
    let out = Command::new(tool).args(["clean", dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed temporary file"), "{out:?}");
    let left: Vec<_> = scan(&dir).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_valid_and_loadable(&model, &cache);
}

#[test]
fn a_save_that_runs_out_of_space_fails_cleanly() {
    let model_path = model_with_env_speed("fsize", 4096);
    let model = open_model(&model_path);
    let dir = temp_dir("fsize-cache");
    let cache = dir.join("c.rklcache");
    model.cache_save(&GenerateRequest::new("old"), &cache).unwrap();
    let old = std::fs::read(&cache).unwrap();

    // Files may grow to 8 KiB in the child; writes beyond fail as on a full disk.
    let child = spawn_saver("trap '' XFSZ; ulimit -f 8;", &model_path, &cache, &"x".repeat(200), 1, "0");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "the save must fail with an error, not crash: {out:?}");
    assert!(stderr.contains("child save failed"), "{stderr}");
    assert_eq!(std::fs::read(&cache).unwrap(), old);
    assert_valid_and_loadable(&model, &cache);
    assert_eq!(scan(&dir).unwrap().len(), 1, "no temporary left behind by a failed save");
}

#[test]
fn two_processes_saving_to_one_path_leave_one_whole_cache() {
    let model_path = model_with_env_speed("two-procs", 512);
    let model = open_model(&model_path);
    let dir = temp_dir("two-procs-cache");
    let cache = dir.join("shared.rklcache");
    let mut children: Vec<Child> = ["first process prompt", "the second process's prompt, longer"]
        .iter()
        .map(|p| spawn_saver("", &model_path, &cache, p, 25, "0"))
        .collect();
    // Loads racing with the saves always see a whole cache once one exists.
    let started = Instant::now();
    let mut loads = 0;
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        if cache.exists() {
            model.cache_load(&cache).unwrap();
            model.cache_release().unwrap();
            loads += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_valid_and_loadable(&model, &cache);
    eprintln!("{loads} loads raced with the saves");
    // Every save removed the payload of the manifest it replaced.
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "one manifest and its payload, no orphans: {names:?}");
}

#[test]
fn saves_and_a_cleaner_running_at_once_all_succeed() {
    let model_path = model_with_env_speed("save-and-clean", 512);
    let model = open_model(&model_path);
    let dir = temp_dir("save-and-clean-cache");
    let caches = [dir.join("a.rklcache"), dir.join("b.rklcache")];
    let mut children: Vec<Child> =
        caches.iter().map(|c| spawn_saver("", &model_path, c, "a prompt worth caching", 25, "0")).collect();
    let started = Instant::now();
    let mut cleans = 0;
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        let removed = rkl::cache::clean(&dir, true, false).unwrap();
        assert!(removed.is_empty(), "a cleaner removed a file of a save in progress: {removed:?}");
        cleans += 1;
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a save failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    eprintln!("{cleans} cleans raced with 50 saves");
    for cache in &caches {
        assert_valid_and_loadable(&model, cache);
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4, "two manifests and their payloads");
}
