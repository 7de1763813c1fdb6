//! Virtual time turned into real sleeping, and the per-handle abort flag.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest single sleep, so that an abort is noticed promptly.
const SLICE: Duration = Duration::from_millis(5);

/// Microseconds since the first use of this clock in the process.
fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// A handle's abort request. Lock-free, so `rkllm_abort` never waits for a
/// run (which may be inside a callback).
#[derive(Debug, Default)]
pub struct AbortFlag {
    /// When it was first requested since the last clear, as [`now_us`] + 1;
    /// 0 while not requested. Repeating a request does not move it, so a
    /// slow abort takes effect `slow_abort_ms` after the first one.
    requested_at_us: AtomicU64,
}

impl AbortFlag {
    #[cfg_attr(feature = "missing-abort", allow(dead_code))]
    pub fn request(&self) {
        let _ = self.requested_at_us.compare_exchange(0, now_us() + 1, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn clear(&self) {
        self.requested_at_us.store(0, Ordering::SeqCst);
    }

    /// Whether a run must stop now; with `delay_ms` (slow_abort_ms) a request
    /// takes effect only that long after it was first made.
    pub fn in_effect(&self, delay_ms: u64) -> bool {
        match self.requested_at_us.load(Ordering::SeqCst) {
            0 => false,
            at => delay_ms == 0 || now_us() + 1 >= at + delay_ms * 1000,
        }
    }
}

/// Sleeps `virtual_us * scale` microseconds of real time in short slices.
/// Returns false (early) when `abort` takes effect.
pub fn sleep_virtual(virtual_us: u64, scale: f64, abort: &AbortFlag, slow_abort_ms: u64) -> bool {
    if scale == 0.0 || virtual_us == 0 {
        return true;
    }
    let real = Duration::from_secs_f64((virtual_us as f64 * scale / 1e6).min(1e9));
    let deadline = Instant::now() + real;
    loop {
        if abort.in_effect(slow_abort_ms) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(SLICE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_interrupts_a_long_sleep() {
        let flag = std::sync::Arc::new(AbortFlag::default());
        let f = flag.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            f.request();
        });
        let start = Instant::now();
        assert!(!sleep_virtual(60_000_000, 1.0, &flag, 0));
        assert!(start.elapsed() < Duration::from_secs(2));
        t.join().unwrap();
    }

    #[test]
    fn a_slow_abort_waits_and_a_zero_scale_never_sleeps() {
        let flag = AbortFlag::default();
        flag.request();
        assert!(!flag.in_effect(10_000));
        std::thread::sleep(Duration::from_millis(30));
        flag.request(); // a repeated request does not restart the delay
        assert!(flag.in_effect(20));
        assert!(flag.in_effect(0));
        flag.clear();
        assert!(!flag.in_effect(0));
        let start = Instant::now();
        assert!(sleep_virtual(u64::MAX, 0.0, &flag, 0));
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
