//! The parts of a prompt cache's first load, per payload size: hashing the
//! payload in place (how rkl checked it before sealed copies: the baseline)
//! and making the sealed copy the runtime now reads (the file read once,
//! each block hashed and written to a memfd, then sealed), and freeing such
//! a copy (paid by the load that replaces it with another). The whole
//! `rkl_cache_load`, first and repeated, is measured by bench/c/rkl_bench.c
//! (`cache-load`). Part of `make bench` (see mk/bench.mk and BENCHMARKS.md,
//! section 5); run alone with `cargo bench --bench cache_load`.
//!
//! Environment: `RKL_BENCH_CACHE_MIB` (payload sizes in MiB, default
//! `8,33,256`), `RKL_BENCH_ROUNDS` (default 10). Each payload is written
//! once and then read from the page cache, as a load soon after a save
//! reads it; the two ways alternate within each round.
//! Output: `BENCH {json}` lines, as the C drivers print (bench/c/common.h).

use rkl::cache::bench::{hash_in_place, sealed_copy_of};
use std::time::Instant;

fn main() {
    let sizes: Vec<u64> = std::env::var("RKL_BENCH_CACHE_MIB")
        .unwrap_or_else(|_| "8,33,256".into())
        .split(',')
        .map(|s| s.trim().parse().expect("RKL_BENCH_CACHE_MIB: sizes in MiB, separated by commas"))
        .collect();
    let rounds: usize = std::env::var("RKL_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10).max(1);
    let dir = std::env::temp_dir().join(format!("rkl-bench-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for mib in sizes {
        let path = dir.join(format!("payload-{mib}.kv"));
        let bytes = mib << 20;
        // Not compressible or constant, like a KV cache.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&path, &data).unwrap();
        drop(data);
        let (expected, _) = hash_in_place(&path).unwrap(); // warm-up
        let (mut hashed, mut copied, mut freed) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            for step in 0..2 {
                if (round + step) % 2 == 0 {
                    let t = Instant::now();
                    let (sum, _) = hash_in_place(&path).unwrap();
                    hashed.push(ms(t));
                    assert_eq!(sum, expected);
                } else {
                    let t = Instant::now();
                    let (sum, copy) = sealed_copy_of(&path).unwrap();
                    copied.push(ms(t));
                    assert_eq!(sum, expected);
                    let t = Instant::now();
                    drop(copy);
                    freed.push(ms(t));
                }
            }
        }
        let extra = format!(",\"mib\":{mib},\"payload_bytes\":{bytes}");
        println!("BENCH {}", json("cache_hash_in_place", &hashed, &extra));
        println!("BENCH {}", json("cache_sealed_copy", &copied, &extra));
        println!("BENCH {}", json("cache_sealed_free", &freed, &extra));
        std::fs::remove_file(&path).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn json(case: &str, values: &[f64], extra: &str) -> String {
    let values: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
    format!("{{\"case\":\"{case}\",\"unit\":\"ms\",\"values\":[{}]{extra}}}", values.join(","))
}
