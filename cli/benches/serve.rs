//! What `rkl serve` adds over the library alone, against the simulator at
//! zero cost per token (so only software is timed), and TTFT with automatic
//! caching of the system prompt on the second request (at the simulator's
//! RK3588 timing, scaled by RKL_BENCH_TIME_SCALE).
//!
//! Both sides run the model in isolation mode, the server's default, so the
//! difference is the server: HTTP, JSON, SSE and its queue.
//! Prints a table and one `BENCH {json}` line per figure.
//! Env: RKL_BENCH_ROUNDS (default 200), RKL_BENCH_TIME_SCALE (default 1).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use rkl::{GenerateRequest, Model, OpenConfig};
use serde_json::json;
use std::ops::ControlFlow;
use std::time::Instant;

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds = env_num("RKL_BENCH_ROUNDS", 200.0) as usize;
    let scale = env_num("RKL_BENCH_TIME_SCALE", 1.0);
    let dir = temp_dir("bench-serve");
    let long_reply = "x".repeat(600); // 1, 2, 3 characters a token: 300 tokens
    let m = model(&dir, "m", &[&format!("reply = {long_reply}")]);
    let one = model(&dir, "one", &["reply = x"]);

    // The library alone.
    let open = |path: &std::path::Path| {
        let mut c = OpenConfig::new(path);
        c.runtime_path = Some(sim());
        c.isolated = true;
        c.host_path = Some(target_debug().join("rkl-host"));
        Model::open(&c).unwrap()
    };
    let (lib_m, lib_one) = (open(&m), open(&one));
    let time_lib = |model: &Model| {
        let t = Instant::now();
        let stats = model.generate(&GenerateRequest::new("p"), |_| ControlFlow::Continue(())).unwrap();
        (t.elapsed().as_secs_f64() * 1e6, stats.tokens)
    };
    let mut lib_long = Vec::new();
    let mut lib_short = Vec::new();
    let mut tokens = 0;
    for _ in 0..rounds {
        let (us, n) = time_lib(&lib_m);
        lib_long.push(us);
        tokens = n;
        lib_short.push(time_lib(&lib_one).0);
    }
    drop((lib_m, lib_one));

    // The server, streaming over loopback, one connection per request.
    let s = Server::start(&dir, &[m.to_str().unwrap(), one.to_str().unwrap()], &[]);
    let time_http = |id: &str| {
        let t = Instant::now();
        let r = s.post("/v1/chat/completions", &chat(id, "p", true));
        assert_eq!(r.status, 200);
        t.elapsed().as_secs_f64() * 1e6
    };
    let mut http_long = Vec::new();
    let mut http_short = Vec::new();
    for _ in 0..rounds.max(1) {
        http_long.push(time_http("m"));
        http_short.push(time_http("one"));
    }
    drop(s);
    let per_token = |long: f64, short: f64| (long - short) / (tokens as f64 - 1.0);
    let (ll, ls, hl, hs) = (median(lib_long), median(lib_short), median(http_long), median(http_short));
    let lib_tok = per_token(ll, ls);
    let http_tok = per_token(hl, hs);

    // TTFT with automatic caching: a ~330-token system prompt.
    let timed = model(&dir, "timed", &[&format!("time_scale = {scale}"), "reply = ok"]);
    let s = Server::start(&dir, &[timed.to_str().unwrap()], &[]);
    let system = "You are a careful assistant running on a Rockchip board. ".repeat(23);
    let mut ttft = Vec::new();
    for user in ["first", "second", "third"] {
        let v = s
            .post(
                "/v1/chat/completions",
                &json!({"model": "timed", "messages": [
                {"role": "system", "content": system}, {"role": "user", "content": user}]}),
            )
            .json();
        ttft.push((v["rkl"]["ttft_ms"].as_f64().unwrap(), v["rkl"]["cache"].as_str().unwrap().to_string()));
    }
    let v = s
        .post(
            "/v1/chat/completions",
            &json!({"model": "timed", "messages": [
        {"role": "user", "content": format!("{system}no system message")}]}),
        )
        .json();
    let uncached = v["rkl"]["ttft_ms"].as_f64().unwrap();
    drop(s);

    println!("rkl serve vs the library alone (isolation mode both, simulator at zero cost, {rounds} rounds, medians)");
    println!("| measure | library | rkl serve | server's cost |");
    println!("|---|---|---|---|");
    println!(
        "| per token (streamed, {tokens}-token reply) | {lib_tok:.2} µs | {http_tok:.2} µs | {:+.2} µs |",
        http_tok - lib_tok
    );
    println!("| 1-token request round trip | {ls:.0} µs | {hs:.0} µs | {:+.0} µs |", hs - ls);
    println!("| {tokens}-token request | {ll:.0} µs | {hl:.0} µs | {:+.0} µs |", hl - ll);
    println!();
    println!("TTFT through rkl serve, 330-token system prompt, time scale {scale}:");
    for (i, (t, c)) in ttft.iter().enumerate() {
        println!("  request {}: {t:.1} ms (cache {c})", i + 1);
    }
    println!("  same prompt without a system message (never cached): {uncached:.1} ms");
    for (name, v) in [
        ("serve_per_token_us", http_tok),
        ("lib_per_token_us", lib_tok),
        ("serve_request_us", hs),
        ("lib_request_us", ls),
        ("serve_ttft_first_ms", ttft[0].0),
        ("serve_ttft_second_ms", ttft[1].0),
        ("serve_ttft_uncached_ms", uncached),
    ] {
        println!("BENCH {}", json!({"name": name, "value": v, "rounds": rounds, "time_scale": scale}));
    }
    assert_eq!(ttft[0].1, "saved");
    assert_eq!(ttft[1].1, "hit");
}
