//! `make bench` (small for now): per-token and per-call cost of rkl against
//! the simulator with zero virtual time, so only rkl and the simulator's own
//! work are measured. Run with `cargo bench --bench generate`.

use rkl::{GenerateRequest, Model, OpenConfig};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sim = std::env::var_os("RKL_BENCH_SIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/librkllmrt.so"));
    let dir = std::env::temp_dir().join(format!("rkl-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model_path = dir.join("bench.sim");
    let reply = "token ".repeat(2000);
    std::fs::write(&model_path, format!("RKLLM-SIM 1\ntime_scale = 0\nreply = {reply}\n")).unwrap();
    let mut config = OpenConfig::new(&model_path);
    config.runtime_path = Some(sim);
    let model = Model::open(&config).expect("open the simulated model (build the simulator in release first)");

    let rounds = std::env::var("RKL_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20u32);
    let mut per_token = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let stats = model.generate(&GenerateRequest::new("bench"), |_| ControlFlow::Continue(())).unwrap();
        per_token.push(start.elapsed().as_nanos() as f64 / stats.tokens as f64);
    }
    let mut one_token = Vec::new();
    let mut req = GenerateRequest::new("bench");
    req.max_new_tokens = Some(1);
    for _ in 0..rounds * 10 {
        let start = Instant::now();
        model.generate(&req, |_| ControlFlow::Continue(())).unwrap();
        one_token.push(start.elapsed().as_nanos() as f64 / 1000.0);
    }
    println!("| measure | median | p90 |\n|---|---|---|");
    let (m, p) = summary(&mut per_token);
    println!("| generate, per token (ns, rkl + simulator) | {m:.0} | {p:.0} |");
    let (m, p) = summary(&mut one_token);
    println!("| generate round trip, 1 token (us) | {m:.1} | {p:.1} |");
    let _ = std::fs::remove_dir_all(&dir);
}

fn summary(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[v.len() * 9 / 10])
}
