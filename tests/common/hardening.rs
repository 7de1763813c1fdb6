//! Helpers of the hardening tests (fuzzers, properties, stress): how much to
//! run, a reproducible random source, and figures printed past the capture.

/// How much of each hardening test to run: `RKL_HARDENING_SCALE` (a factor,
/// e.g. `0.2` or `5`) when set; else full in the default ABI run (1.3) and a
/// third in the 1.2 run, since `make check` runs the suite once per ABI.
pub fn scale() -> f64 {
    match std::env::var("RKL_HARDENING_SCALE").ok().and_then(|s| s.parse::<f64>().ok()) {
        Some(s) if s > 0.0 => s,
        _ if std::env::var("RKLLM_SIM_ABI").as_deref() == Ok("1.2") => 0.34,
        _ => 1.0,
    }
}

/// `n` scaled by [`scale`], at least 1.
pub fn scaled(n: usize) -> usize {
    ((n as f64 * scale()) as usize).max(1)
}

/// Prints a figure past the test harness's output capture, so that `make
/// check` shows it (labelled with the simulated ABI).
pub fn report(line: &str) {
    use std::io::Write;
    let abi = std::env::var("RKLLM_SIM_ABI").unwrap_or_else(|_| "1.3".into());
    let _ = writeln!(std::io::stderr(), "[ABI {abi}] {line}");
}

/// An environment variable read as a number; unset or unparsable is `None`.
pub fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The fuzzers' seed: `RKL_FUZZ_SEED` replays a run; else one from the clock
/// and the process id.
pub fn seed() -> u64 {
    env_number("RKL_FUZZ_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
    })
}

/// SplitMix64: small, seeded, reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// True about once in `one_in` calls.
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    /// One of `items`, cloned.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}
