//! Automatic prompt caching: a request marks its stable prefix; the first
//! such request saves the prefix's cache, later ones (in this model, another
//! model, another process) load it; a changed prefix, template or model
//! makes a new one; the directory stays under its cap; both modes.

mod common;

use common::*;
use rkl::cache::{scan, Found};
use rkl::{AutoCache, CacheUse, ErrorKind, GenerateRequest, Model, OpenConfig, Stats};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

const SYSTEM: &str = "You are the assistant of a Rockchip board; answer in one line. ";
const KV_BYTES: u64 = 1024;

fn model_path(tag: &str) -> PathBuf {
    model_file(tag, &["reply = [{prompt}] turn {turn}", &format!("kv_bytes_per_token = {KV_BYTES}")])
}

fn settings(model: &Path, dir: &Path, max_bytes: u64, isolated: bool) -> OpenConfig {
    let mut c = config(model);
    c.auto_cache = Some(AutoCache { dir: dir.to_path_buf(), max_bytes });
    c.isolated = isolated;
    c.host_path = isolated.then(|| env!("CARGO_BIN_EXE_rkl-host").into());
    c
}

fn ask(model: &Model, prefix: &str, question: &str) -> rkl::Result<(String, Stats)> {
    let mut request = GenerateRequest::new(format!("{prefix}{question}"));
    request.cache_prefix = Some(prefix.len());
    let mut text = String::new();
    let stats = model.generate(&request, |c| {
        text.push_str(c);
        ControlFlow::Continue(())
    })?;
    Ok((text, stats))
}

fn auto_caches(dir: &Path) -> Vec<PathBuf> {
    scan(dir)
        .unwrap()
        .into_iter()
        .filter_map(|f| match f {
            Found::Cache(info) => Some(info.path),
            _ => None,
        })
        .collect()
}

#[test]
fn the_first_request_saves_and_later_ones_load() {
    for isolated in [false, true] {
        let model_file = model_path("auto-basic");
        let dir = temp_dir("auto-basic").join("cache");
        let model = Model::open(&settings(&model_file, &dir, 0, isolated)).unwrap();
        let (text, stats) = ask(&model, SYSTEM, "What is the NPU's peak?").unwrap();
        assert_eq!(stats.cache, CacheUse::Saved, "isolated {isolated}");
        // The runtime got only the question, in the cache's one turn.
        assert_eq!(text, "[What is the NPU's peak?] turn 2", "isolated {isolated}");
        let (text, stats) = ask(&model, SYSTEM, "And its memory?").unwrap();
        assert_eq!(stats.cache, CacheUse::Hit);
        assert!(text.starts_with("[And its memory?]"), "{text}");
        // Another model on the same directory loads it from disk.
        let other = Model::open(&settings(&model_file, &dir, 0, isolated)).unwrap();
        let (_, stats) = ask(&other, SYSTEM, "Hello?").unwrap();
        assert_eq!(stats.cache, CacheUse::Hit, "isolated {isolated}: another model reuses the file");
        assert_eq!(auto_caches(&dir).len(), 1);
        // A request without a prefix works with a plain prompt again.
        let plain = model.generate(&GenerateRequest::new("plain"), |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(plain.cache, CacheUse::None);
        assert_eq!(ask(&model, SYSTEM, "again").unwrap().1.cache, CacheUse::Hit);
        model.close().unwrap();
        other.close().unwrap();
    }
}

#[test]
fn a_changed_prefix_template_or_model_makes_a_new_cache() {
    let dir = temp_dir("auto-changes").join("cache");
    let first_file = model_path("auto-changes-a");
    let model = Model::open(&settings(&first_file, &dir, 0, false)).unwrap();
    assert_eq!(ask(&model, SYSTEM, "q").unwrap().1.cache, CacheUse::Saved);
    assert_eq!(ask(&model, "Another system prompt. ", "q").unwrap().1.cache, CacheUse::Saved);
    assert_eq!(ask(&model, SYSTEM, "q").unwrap().1.cache, CacheUse::Hit, "the first one is still there");
    model.set_chat_template("You are terse.", "<u>", "</u><a>").unwrap();
    assert_eq!(ask(&model, SYSTEM, "q").unwrap().1.cache, CacheUse::Saved, "a new template, a new cache");
    let mut thinking = GenerateRequest::new(format!("{SYSTEM}q"));
    thinking.cache_prefix = Some(SYSTEM.len());
    thinking.enable_thinking = true;
    assert_eq!(model.generate(&thinking, |_| ControlFlow::Continue(())).unwrap().cache, CacheUse::Saved);
    // Another model file (other content) never uses these.
    let other_file = model_file("auto-changes-b", &["reply = other", "name = another model"]);
    let other = Model::open(&settings(&other_file, &dir, 0, false)).unwrap();
    assert_eq!(ask(&other, SYSTEM, "q").unwrap().1.cache, CacheUse::Saved);
    assert_eq!(auto_caches(&dir).len(), 5);
}

#[test]
fn the_directory_stays_under_its_cap_by_removing_the_least_recently_used() {
    for isolated in [false, true] {
        let dir = temp_dir("auto-cap").join("cache");
        let model_file = model_path("auto-cap");
        // Prefixes of one length make caches of one size; the cap has room
        // for two and a half of them.
        let prefixes = [
            "first system prompt, long enough. ",
            "other system prompt, long enough. ",
            "third system prompt, long enough. ",
        ];
        let one = {
            let measure = temp_dir("auto-cap-measure");
            let model = Model::open(&settings(&model_file, &measure, 0, false)).unwrap();
            ask(&model, prefixes[0], "q").unwrap();
            std::fs::read_dir(&measure).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum::<u64>()
        };
        let cap = one * 5 / 2;
        let model = Model::open(&settings(&model_file, &dir, cap, isolated)).unwrap();
        assert_eq!(ask(&model, prefixes[0], "q").unwrap().1.cache, CacheUse::Saved);
        assert_eq!(ask(&model, prefixes[1], "q").unwrap().1.cache, CacheUse::Saved);
        // Used again: the first is now the most recent.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(ask(&model, prefixes[0], "q").unwrap().1.cache, CacheUse::Hit);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(ask(&model, prefixes[2], "q").unwrap().1.cache, CacheUse::Saved);
        let total: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(total <= cap, "isolated {isolated}: {total} bytes in the directory, cap {cap}");
        assert_eq!(ask(&model, prefixes[0], "q").unwrap().1.cache, CacheUse::Hit, "the recent one stayed");
        assert_eq!(ask(&model, prefixes[1], "q").unwrap().1.cache, CacheUse::Saved, "the least recent went");
        model.close().unwrap();
    }
}

#[test]
fn the_tool_prunes_to_a_size() {
    let dir = temp_dir("auto-prune").join("cache");
    let model = Model::open(&settings(&model_path("auto-prune"), &dir, 0, false)).unwrap();
    for prefix in ["one system prompt. ", "two system prompt. ", "three system prompt. "] {
        ask(&model, prefix, "q").unwrap();
    }
    let tool = env!("CARGO_BIN_EXE_rkl-cache");
    let dry = std::process::Command::new(tool)
        .args(["prune", dir.to_str().unwrap(), "--max-bytes", "0", "--dry-run"])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{dry:?}");
    assert_eq!(String::from_utf8_lossy(&dry.stdout).lines().count(), 6, "three pairs: {dry:?}");
    assert_eq!(auto_caches(&dir).len(), 3, "a dry run removes nothing");
    let out =
        std::process::Command::new(tool).args(["prune", dir.to_str().unwrap(), "--max-bytes", "0"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn bad_prefixes_are_refused_and_concurrent_requests_each_get_their_prefix() {
    let dir = temp_dir("auto-bad").join("cache");
    let model = Model::open(&settings(&model_path("auto-bad"), &dir, 0, false)).unwrap();
    for (prompt, prefix) in [("abc", 3), ("abc", 4), ("é", 1)] {
        let mut request = GenerateRequest::new(prompt);
        request.cache_prefix = Some(prefix);
        let e = model.generate(&request, |_| ControlFlow::Continue(())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{prompt:?} {prefix}: {e}");
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let model = model.clone();
            std::thread::spawn(move || {
                for round in 0..5 {
                    let prefix = format!("system prompt number {} of the test. ", (t + round) % 3);
                    let question = format!("thread {t} round {round}");
                    let (text, _) = ask(&model, &prefix, &question).unwrap();
                    assert!(text.starts_with(&format!("[{question}]")), "{text}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(auto_caches(&dir).len(), 3);
}
