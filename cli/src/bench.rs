//! `rkl bench MODEL`: TTFT, prefill and decode tokens/s from the runtime's
//! own statistics, without and with a prompt cache of the long part of the
//! prompt, repeated `--runs` times; a table or `--json`, the figures users
//! post when they compare boards.

use crate::args::{join, Args, MODEL_FLAGS, MODEL_OPTIONS};
use crate::CmdResult;
use rkl::{GenerateRequest, Model, Stats};
use serde_json::json;
use std::ops::ControlFlow;
use std::process::ExitCode;

/// The long, fixed part of the prompt (a system prompt), repeated to size.
const FILLER: &str = "You are a careful assistant running on a Rockchip board. ";
const QUESTION: &str = "Explain what an NPU does, briefly.";

pub fn main(argv: &[String]) -> CmdResult {
    let args = Args::parse(
        argv,
        &join(MODEL_OPTIONS, &["--runs", "--prompt-tokens", "--gen-tokens", "--cache-dir"]),
        &join(MODEL_FLAGS, &["--json"]),
    )?;
    args.expect_positional(&["MODEL"])?;
    let runs: usize = args.parsed("--runs")?.unwrap_or(5).max(1);
    let prompt_tokens: usize = args.parsed("--prompt-tokens")?.unwrap_or(300);
    let gen_tokens: u32 = args.parsed("--gen-tokens")?.unwrap_or(64);
    let model = Model::open(&args.open_config(&args.positional[0])?)?;

    // About 4 characters a token (the simulator's rule; close for English).
    let mut system = String::new();
    while system.len() < prompt_tokens * 4 {
        system.push_str(FILLER);
    }
    let full = format!("{system}{QUESTION}");
    let ask = |prompt: &str| -> Result<Stats, rkl::Error> {
        let mut req = GenerateRequest::new(prompt);
        req.max_new_tokens = Some(gen_tokens);
        model.generate(&req, |_| ControlFlow::Continue(()))
    };

    let mut cold = Vec::with_capacity(runs);
    for _ in 0..runs {
        cold.push(ask(&full)?);
    }
    let dir = match args.value("--cache-dir") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("rkl-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let cache = dir.join("bench-system.rklcache");
    let saved = model.cache_save(&GenerateRequest::new(system.clone()), &cache)?;
    model.cache_load(&cache)?;
    let mut warm = Vec::with_capacity(runs);
    for _ in 0..runs {
        warm.push(ask(&full)?);
    }
    model.cache_release()?;
    let _ = rkl::cache::clean(&dir, true, false);
    if args.value("--cache-dir").is_none() {
        if let Some(p) = saved.payload_path.as_ref() {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(&cache);
        let _ = std::fs::remove_dir(&dir);
    }

    let summary = |label: &str, stats: &[Stats]| {
        json!({
            "mode": label,
            "runs": stats.len(),
            "prompt_tokens_prefilled": median(stats.iter().map(|s| s.prefill_tokens as f64)),
            "ttft_ms": spread(stats.iter().map(|s| s.ttft_ms)),
            "prefill_tokens_per_s": spread(stats.iter().map(|s| per_s(s.prefill_tokens, s.prefill_ms))),
            "decode_tokens_per_s": spread(stats.iter().map(|s| per_s(s.decode_tokens, s.decode_ms))),
            "tokens": median(stats.iter().map(|s| s.tokens as f64)),
        })
    };
    let report = json!({
        "model": args.positional[0],
        "runtime": model.runtime_path(),
        "release": model.family().name(),
        "runtime_version": model.runtime_version(),
        "isolated": model.is_isolated(),
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "results": [summary("no cache", &cold), summary("prompt cache", &warm)],
    });
    model.close()?;
    if args.flag("--json") {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "rkl bench: {} on runtime {} ({}), {} runs, ~{} prompt tokens, {} new tokens",
        args.positional[0],
        report["release"].as_str().unwrap_or("?"),
        report["runtime_version"].as_str().unwrap_or("version not printed"),
        runs,
        prompt_tokens,
        gen_tokens
    );
    println!("{:<14} {:>10} {:>12} {:>16} {:>16}", "mode", "prefilled", "TTFT ms", "prefill tok/s", "decode tok/s");
    for r in report["results"].as_array().into_iter().flatten() {
        println!(
            "{:<14} {:>10} {:>12.1} {:>16.1} {:>16.1}",
            r["mode"].as_str().unwrap_or(""),
            r["prompt_tokens_prefilled"].as_f64().unwrap_or(0.0),
            r["ttft_ms"]["median"].as_f64().unwrap_or(0.0),
            r["prefill_tokens_per_s"]["median"].as_f64().unwrap_or(0.0),
            r["decode_tokens_per_s"]["median"].as_f64().unwrap_or(0.0),
        );
    }
    println!("(medians; --json gives min, median and max)");
    Ok(ExitCode::SUCCESS)
}

fn per_s(tokens: u32, ms: f64) -> f64 {
    if ms > 0.0 {
        tokens as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn spread(values: impl Iterator<Item = f64>) -> serde_json::Value {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({
        "min": round(v.first().copied().unwrap_or(0.0)),
        "median": round(if v.is_empty() { 0.0 } else { v[v.len() / 2] }),
        "max": round(v.last().copied().unwrap_or(0.0)),
    })
}
