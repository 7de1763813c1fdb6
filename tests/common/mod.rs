//! Shared helpers for the integration tests: the simulator library, model
//! files, and the simulator's reply rules (from sim/README.md).
#![allow(dead_code)]

use rkl::{Family, Model, OpenConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

mod hardening;
#[allow(unused_imports)] // not every test file is a hardening test
pub use hardening::*;

/// `target/` of this build, found from the test executable (target/debug/deps/x).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors().nth(3).expect("target dir above the test executable").to_path_buf()
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The simulator library; `variant` is "" for the normal build or a sim
/// feature (family-1-1, family-1-2-0, missing-abort). Built on demand into
/// target/sim-<variant> (the Makefile builds them beforehand), so a plain
/// `cargo test` works too.
pub fn sim_library(variant: &str) -> PathBuf {
    // Each build has its own target dir: a nested cargo must never wait on
    // the lock of the build that is running these tests.
    let name = if variant.is_empty() { "default" } else { variant };
    let dir = target_dir().join(format!("sim-{name}"));
    let features: Vec<&str> = if variant.is_empty() { vec![] } else { vec!["--features", variant] };
    let lib = dir.join("debug").join("librkllmrt.so");
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if !lib.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "rkllm-sim", "--target-dir"])
            .arg(&dir)
            .args(&features)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo to build the simulator");
        assert!(status.success(), "building the simulator ({variant}) failed");
    }
    lib
}

/// The ABI the simulator imitates in this process (RKLLM_SIM_ABI, default 1.3).
pub fn sim_abi() -> Family {
    match std::env::var("RKLLM_SIM_ABI").as_deref() {
        Ok("1.2") => Family::V1_2,
        _ => Family::V1_3,
    }
}

/// A fresh directory for one test's files.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = target_dir().join("test-tmp").join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a simulator model file with `lines` (plus `time_scale = 0` unless
/// a time_scale line is given) and returns its path.
pub fn model_file(tag: &str, lines: &[&str]) -> PathBuf {
    let path = temp_dir(tag).join("model.sim");
    let mut text = String::from("RKLLM-SIM 1\n");
    if !lines.iter().any(|l| l.starts_with("time_scale")) {
        text.push_str("time_scale = 0\n");
    }
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// An open configuration for `model` on the simulator.
pub fn config(model: &Path) -> OpenConfig {
    let mut c = OpenConfig::new(model);
    c.runtime_path = Some(sim_library(""));
    c
}

/// Opens a simulator model written from `lines`.
pub fn open(tag: &str, lines: &[&str]) -> Model {
    Model::open(&config(&model_file(tag, lines))).expect("open the simulated model")
}

/// The simulator's prompt token count: ceil(chars / 4), at least 1.
pub fn prompt_tokens(prefilled: &str) -> u32 {
    (prefilled.chars().count() as u32).div_ceil(4).max(1)
}

/// The default chat template's prefilled text for `prompt`.
pub fn default_prefill(prompt: &str) -> String {
    format!("<user>{prompt}</user><assistant>")
}

/// A reply template with multi-byte text of every length, so that splits of
/// every kind happen.
pub const RICH_REPLY: &str = "Bonjour {prompt}! Café crème, naïve façade — 你好世界, emoji 🎉🚀 and Ω≈ç√ done.";

/// Reads the simulator's counters: [violations, live handles, runs, caches written].
pub fn sim_stats(lib: &Path) -> [u64; 4] {
    // SAFETY: the simulator is already loaded by the test (dlopen returns the
    // same instance); rkllm_sim_stats writes four u64 values.
    unsafe {
        let lib = libloading::Library::new(lib).expect("load the simulator");
        let f: libloading::Symbol<unsafe extern "C" fn(*mut u64)> =
            lib.get(b"rkllm_sim_stats").expect("rkllm_sim_stats");
        let mut out = [0u64; 4];
        f(out.as_mut_ptr());
        out
    }
}

/// FNV-1a 64, as the simulator hashes inputs (`{input}`, the value formula).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The little-endian bytes of floats, as the simulator hashes them.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The little-endian bytes of ids, as the simulator hashes them.
pub fn i32_bytes(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Element [t][j] of the simulator's hidden states and logits for an input
/// whose hash is `h` (sim/README.md, "Infer modes").
pub fn sim_value(h: u64, t: usize, j: usize) -> f32 {
    let seed = (h ^ (h >> 32)) as u32;
    let n = seed.wrapping_add(131u32.wrapping_mul(t as u32).wrapping_add(7u32.wrapping_mul(j as u32)));
    ((n % 2003) as f32 - 1001.0) / 1024.0
}

/// The whole text of a generation of `request`.
pub fn generated_text(model: &Model, request: &rkl::GenerateRequest) -> rkl::Result<String> {
    let mut text = String::new();
    model.generate(request, |chunk| {
        text.push_str(chunk);
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(text)
}
