//! Automatic prompt caching (`OpenConfig::auto_cache`,
//! `GenerateRequest::cache_prefix`): the TTFT of a request whose prompt is a
//! system prompt of a few hundred tokens plus a short question, as rkl
//! reports it (`Stats::ttft_ms`, which includes the cache work), in four
//! situations:
//!
//! - **first**: the first request with the prefix, on an empty cache
//!   directory (`CacheUse::Saved`: one prefill of the prefix to save its
//!   cache, the cache loaded, then the question);
//! - **hit, loaded**: a later request of the same model (`CacheUse::Hit`,
//!   the cache is still loaded: only the question is prefilled);
//! - **hit, from disk**: the first request of a freshly opened model on the
//!   same directory (`CacheUse::Hit`, the cache is loaded from its file:
//!   manifest checks and the payload read into a sealed copy while it is
//!   hashed, as in another process or after a restart; the process's copy of
//!   the payload is replaced beforehand by inspecting another cache);
//! - **no cache**: the same request on a model without caching (the whole
//!   prompt is prefilled).
//!
//! The simulator sleeps its timing model for real: prefill 5.4 ms and decode
//! 40 ms per token (the RK3588 figures of BENCHMARKS.md, section 5), 112 KiB
//! of KV per token, times `RKL_BENCH_TIME_SCALE`. Each request generates one
//! token.
//!
//! **Lookup cost**: what a hit with the cache already loaded adds to the
//! same continuation on a cache loaded by hand (`Model::cache_load` on a
//! model without automatic caching): finding the prefix's cache (its name
//! hashed from the model, runtime, template, prefix and settings), marking
//! it used and the auto lock. Measured as the paired difference of the
//! client-side TTFT (from the `generate` call to the first chunk), the two
//! models alternating: on a zero-cost simulator (`time_scale = 0`, so the
//! runtime's own time, with its sleeping jitter, is not in the difference;
//! the figure to compare with the 1 ms target) and, as a check, at the real
//! time scale in the rounds above. Printed, not asserted.
//!
//! Part of `make bench` (see mk/bench.mk and BENCHMARKS.md); run alone with
//! `cargo bench --bench auto_cache`.
//!
//! Environment: `RKL_BENCH_SIM` (the simulator, default
//! target/release/librkllmrt.so), `RKL_BENCH_ROUNDS` (rounds at the real
//! time scale, default 6; each has one first, from-disk and no-cache request
//! and `RKL_BENCH_PAIRS` hit/manual pairs, default 5), `RKL_BENCH_LOOKUPS`
//! (pairs on the zero-cost simulator, default 400), `RKL_BENCH_PREFIX_TOKENS`
//! (system prompt length, default 330), `RKL_BENCH_TIME_SCALE` (default 1),
//! `RKL_BENCH_KV_BYTES` (KV bytes per token, default 114688).
//! Output: `BENCH {json}` lines, as the C drivers print (bench/c/common.h),
//! and a summary on stderr.

use rkl::{AutoCache, CacheUse, GenerateRequest, Model, OpenConfig, Stats, Verdict};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

const PREFILL_US: u64 = 5400;
const DECODE_US: u64 = 40000;
const QUESTION: &str = " Summary?";
const TARGET_MS: f64 = 1.0;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sim = std::env::var_os("RKL_BENCH_SIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/librkllmrt.so"));
    let rounds = setting("RKL_BENCH_ROUNDS", 6).max(1) as usize;
    let pairs = setting("RKL_BENCH_PAIRS", 5).max(1) as usize;
    let lookups = setting("RKL_BENCH_LOOKUPS", 400).max(1) as usize;
    let prefix_tokens = setting("RKL_BENCH_PREFIX_TOKENS", 330).max(1);
    let kv_bytes = setting("RKL_BENCH_KV_BYTES", 114688);
    let scale: f64 = std::env::var("RKL_BENCH_TIME_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);

    let work = std::env::temp_dir().join(format!("rkl-bench-auto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let system = system_prompt(prefix_tokens as usize);
    let prompt = format!("{system}{QUESTION}");
    let timed = work.join("timed.sim");
    std::fs::write(
        &timed,
        format!(
            "RKLLM-SIM 1\nname = auto-bench\ntime_scale = {scale}\nprefill_us_per_token = {PREFILL_US}\n\
             decode_us_per_token = {DECODE_US}\nkv_bytes_per_token = {kv_bytes}\nreply = Sure.\n"
        ),
    )
    .unwrap();
    let free = work.join("free.sim");
    std::fs::write(
        &free,
        "RKLLM-SIM 1\nname = auto-bench-free\ntime_scale = 0\nprefill_us_per_token = 0\n\
         decode_us_per_token = 0\nkv_bytes_per_token = 64\nreply = Sure.\n",
    )
    .unwrap();
    let open = |model: &Path, auto: Option<&Path>| {
        let mut config = OpenConfig::new(model);
        config.runtime_path = Some(sim.clone());
        config.auto_cache = auto.map(|dir| AutoCache { dir: dir.to_path_buf(), max_bytes: 0 });
        Model::open(&config).expect("open the simulated model (build the simulator first)")
    };

    // ---- at the real time scale
    let plain = open(&timed, None); // no caching at all
    let manual = open(&timed, None); // a cache loaded by hand
    let evictor = work.join("evict.rklcache");
    manual.cache_save(&GenerateRequest::new("Another prompt entirely."), &evictor).unwrap();
    let (mut first, mut loaded, mut disk, mut none, mut by_hand) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut lookup_real, mut payload_bytes) = (vec![], 0u64);
    let mut prefill = [0u32; 4];
    for round in 0..rounds {
        let dir = work.join(format!("cache-{round}"));
        let (stats, _) = ask(&plain, &prompt, None);
        expect(&stats, CacheUse::None, "no cache");
        none.push(stats.ttft_ms);
        prefill[3] = stats.prefill_tokens;

        let auto = open(&timed, Some(&dir));
        let (stats, _) = ask(&auto, &prompt, Some(system.len()));
        expect(&stats, CacheUse::Saved, "first request");
        first.push(stats.ttft_ms);
        prefill[0] = stats.prefill_tokens;
        let cache = auto_cache_in(&dir);
        payload_bytes = dir_bytes(&dir);

        manual.cache_load(&cache).unwrap();
        for pair in 0..pairs {
            let mut hit = || {
                let (stats, client) = ask(&auto, &prompt, Some(system.len()));
                expect(&stats, CacheUse::Hit, "hit, loaded");
                loaded.push(stats.ttft_ms);
                prefill[1] = stats.prefill_tokens;
                client
            };
            let mut hand = || {
                let (stats, client) = ask(&manual, &prompt, None);
                by_hand.push(stats.ttft_ms);
                client
            };
            let (a, b) = if (round + pair) % 2 == 0 {
                let a = hit();
                (a, hand())
            } else {
                let b = hand();
                (hit(), b)
            };
            lookup_real.push(a - b);
        }

        // The process's copy of the payload goes: the load reads the file.
        assert!(matches!(rkl::cache::inspect(&evictor).verdict, Verdict::Valid));
        let fresh = open(&timed, Some(&dir));
        let (stats, _) = ask(&fresh, &prompt, Some(system.len()));
        expect(&stats, CacheUse::Hit, "hit, from disk");
        disk.push(stats.ttft_ms);
        prefill[2] = stats.prefill_tokens;
        fresh.close().unwrap();
        auto.close().unwrap();
        manual.cache_release().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
    manual.close().unwrap();
    plain.close().unwrap();

    // ---- the lookup on a zero-cost runtime
    let dir = work.join("cache-free");
    let auto = open(&free, Some(&dir));
    let manual = open(&free, None);
    expect(&ask(&auto, &prompt, Some(system.len())).0, CacheUse::Saved, "zero-cost first request");
    manual.cache_load(&auto_cache_in(&dir)).unwrap();
    let (mut lookup, mut free_hit, mut free_hand) = (vec![], vec![], vec![]);
    for i in 0..lookups + 10 {
        let hit = || {
            let (stats, client) = ask(&auto, &prompt, Some(system.len()));
            expect(&stats, CacheUse::Hit, "zero-cost hit");
            client
        };
        let hand = || ask(&manual, &prompt, None).1;
        let (a, b) = if i % 2 == 0 {
            let a = hit();
            (a, hand())
        } else {
            let b = hand();
            (hit(), b)
        };
        if i >= 10 {
            // The first few warm up caches and threads.
            lookup.push(a - b);
            free_hit.push(a);
            free_hand.push(b);
        }
    }
    auto.close().unwrap();
    manual.close().unwrap();
    let _ = std::fs::remove_dir_all(&work);

    let common = format!(
        ",\"prefix_tokens\":{prefix_tokens},\"prefix_bytes\":{},\"time_scale\":{scale},\"prefill_us\":{PREFILL_US},\
         \"decode_us\":{DECODE_US},\"kv_bytes_per_token\":{kv_bytes},\"cache_bytes\":{payload_bytes}",
        system.len()
    );
    let cases = [
        ("auto_ttft_first", &first, prefill[0]),
        ("auto_ttft_hit_loaded", &loaded, prefill[1]),
        ("auto_ttft_hit_disk", &disk, prefill[2]),
        ("auto_ttft_none", &none, prefill[3]),
        ("auto_ttft_manual", &by_hand, prefill[1]),
    ];
    for (case, values, tokens) in cases {
        println!("BENCH {}", json(case, values, &format!("{common},\"prefill_tokens\":{tokens}")));
    }
    println!("BENCH {}", json("auto_lookup_real", &lookup_real, &format!("{common},\"target_ms\":{TARGET_MS}")));
    println!(
        "BENCH {}",
        json("auto_lookup", &lookup, &format!(",\"prefix_bytes\":{},\"target_ms\":{TARGET_MS}", system.len()))
    );
    println!("BENCH {}", json("auto_lookup_hit_client", &free_hit, ""));
    println!("BENCH {}", json("auto_lookup_manual_client", &free_hand, ""));
    eprintln!(
        "auto_cache: {prefix_tokens}-token system prompt at time scale {scale}: TTFT first {:.1} ms, hit (loaded) \
         {:.1} ms, hit (from disk) {:.1} ms, no cache {:.1} ms; lookup cost of a hit {:.3} ms (zero-cost runtime; \
         {:.3} ms at the real scale), target < {TARGET_MS} ms",
        median(&first),
        median(&loaded),
        median(&disk),
        median(&none),
        median(&lookup),
        median(&lookup_real)
    );
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}: a whole number")))
}

/// A system prompt of `tokens` simulator tokens (4 characters each).
fn system_prompt(tokens: usize) -> String {
    const TEXT: &str = "You are the assistant of a Rockchip RK3588 board in a workshop. Answer in plain English, \
                        in one or two short sentences, and say so when you do not know. The board runs Debian \
                        with 16 GB of memory; its NPU has three cores of 2 TOPS each. Never invent part \
                        numbers, prices or dates. When a question is about wiring, name the pins by their \
                        header numbers. ";
    TEXT.chars().cycle().take(tokens * 4).collect()
}

/// One request of one token; its stats and the client-side TTFT (ms).
fn ask(model: &Model, prompt: &str, prefix: Option<usize>) -> (Stats, f64) {
    let mut request = GenerateRequest::new(prompt);
    request.cache_prefix = prefix;
    request.max_new_tokens = Some(1);
    let mut first = None;
    let start = Instant::now();
    let stats = model
        .generate(&request, |_| {
            first.get_or_insert_with(|| ms(start));
            ControlFlow::Continue(())
        })
        .unwrap();
    (stats, first.expect("a token"))
}

fn expect(stats: &Stats, cache: CacheUse, what: &str) {
    assert_eq!(stats.cache, cache, "{what}: {stats:?}");
}

/// The automatic cache (manifest) in `dir`: there is one.
fn auto_cache_in(dir: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rklcache"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn json(case: &str, values: &[f64], extra: &str) -> String {
    let values: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
    format!("{{\"case\":\"{case}\",\"unit\":\"ms\",\"values\":[{}]{extra}}}", values.join(","))
}
