//! Stress and leaks, in-process mode.
//!
//! 1. 16 threads x 2 models x hundreds of generations with random aborts
//!    (`Model::abort` from other threads, `Stream` aborters), streams dropped
//!    mid-way, callbacks that stop, and models closed and reopened under the
//!    others' feet: no crash, no deadlock (a watchdog ends the process if
//!    the test overruns), no lost completion (every call returns: `Ok` with a
//!    finish reason, and exactly the reply when it ended normally, or
//!    `Closed` when its model was closed), and never two calls inside the
//!    runtime at once.
//! 2. Resident memory flat across 10,000 generations (callbacks, streams,
//!    dropped streams, the C API, opens and closes): after a warm-up, VmRSS
//!    may grow by less than 2 MiB. The same probe, on a runtime that leaks 64
//!    KiB per run, must see the growth.
//!
//! Volume scales with `RKL_HARDENING_SCALE` (default 1 in the default ABI
//! run, a third in the 1.2 run, since `make check` runs the suite once per
//! ABI). The tests of this file run one at a time (they measure the process).

mod common;

use common::*;
use rkl::{ErrorKind, FinishReason, GenerateRequest, Model, StreamEvent};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn scale() -> f64 {
    match std::env::var("RKL_HARDENING_SCALE").ok().and_then(|s| s.parse::<f64>().ok()) {
        Some(s) if s > 0.0 => s,
        _ if std::env::var("RKLLM_SIM_ABI").as_deref() == Ok("1.2") => 0.34,
        _ => 1.0,
    }
}

/// Prints a figure past the test harness's output capture, so that `make
/// check` shows it (labelled with the simulated ABI).
fn report(line: &str) {
    use std::io::Write;
    let abi = std::env::var("RKLLM_SIM_ABI").unwrap_or_else(|_| "1.3".into());
    let _ = writeln!(std::io::stderr(), "[ABI {abi}] {line}");
}

fn scaled(n: usize) -> usize {
    ((n as f64 * scale()) as usize).max(1)
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Ends the process if `done` is not set within `limit`: a deadlock must
/// fail the run, not hang it.
fn watchdog(what: &'static str, limit: Duration, done: Arc<AtomicBool>, progress: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < limit {
            if done.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{what}: not finished after {limit:?} ({} operations done): deadlock or livelock",
            progress.load(Ordering::Relaxed)
        );
        std::process::exit(3);
    });
}

const REPLY: &str = "{prompt}: Grüße, 世界 🎈 ok — a few more words";

fn expected(tag: &str, prompt: &str) -> String {
    format!("{tag} {}", REPLY.replace("{prompt}", prompt))
}

/// How every call ended, for the report and the checks.
#[derive(Default, Debug)]
struct Tally {
    end: u64,
    aborted: u64,
    stopped: u64,
    max_tokens: u64,
    closed: u64,
    streams_dropped: u64,
    aborts_sent: u64,
    reopens: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.end += other.end;
        self.aborted += other.aborted;
        self.stopped += other.stopped;
        self.max_tokens += other.max_tokens;
        self.closed += other.closed;
        self.streams_dropped += other.streams_dropped;
        self.aborts_sent += other.aborts_sent;
        self.reopens += other.reopens;
    }
    fn finished(&mut self, finish: FinishReason) {
        match finish {
            FinishReason::End => self.end += 1,
            FinishReason::Aborted => self.aborted += 1,
            FinishReason::Stopped => self.stopped += 1,
            FinishReason::MaxTokens => self.max_tokens += 1,
            FinishReason::Error => panic!("a runtime error in a run with no fault"),
        }
    }
    fn generations(&self) -> u64 {
        self.end + self.aborted + self.stopped + self.max_tokens + self.closed
    }
}

/// A model slot that threads may close and refill.
struct Slot {
    tag: &'static str,
    lines: Vec<String>,
    model: RwLock<Model>,
}

impl Slot {
    fn new(tag: &'static str, extra: &[&str]) -> Slot {
        let mut lines = vec![
            format!("reply = {tag} {REPLY}"),
            "time_scale = 1".into(),
            "prefill_us_per_token = 20".into(),
            "decode_us_per_token = 40".into(),
        ];
        lines.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let model = open("stress", &refs);
        Slot { tag, lines, model: RwLock::new(model) }
    }
    fn current(&self) -> Model {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Closes the model and puts a fresh one in its place.
    fn reopen(&self) {
        let refs: Vec<&str> = self.lines.iter().map(String::as_str).collect();
        let fresh = open("stress-reopen", &refs);
        let old = std::mem::replace(&mut *self.model.write().unwrap_or_else(|p| p.into_inner()), fresh);
        old.close().unwrap();
    }
}

/// One thread's share of the work.
fn worker(t: usize, iterations: usize, slots: &[Slot; 2], progress: &AtomicU64) -> Tally {
    let mut rng = Rng(0x5EED ^ (t as u64) << 20);
    let mut tally = Tally::default();
    for i in 0..iterations {
        progress.fetch_add(1, Ordering::Relaxed);
        let slot = &slots[rng.below(2)];
        let model = slot.current();
        let prompt = format!("t{t}-i{i}");
        let want = expected(slot.tag, &prompt);
        let action = rng.below(100);
        match action {
            // Generate with a callback; sometimes stop it, sometimes a
            // token limit.
            0..=59 => {
                let stop_after = if rng.below(8) == 0 { Some(1 + rng.below(5)) } else { None };
                let mut request = GenerateRequest::new(prompt.clone());
                if rng.below(10) == 0 {
                    request.max_new_tokens = Some(1 + rng.below(6) as u32);
                }
                let mut text = String::new();
                let mut chunks = 0;
                let result = model.generate(&request, |c| {
                    text.push_str(c);
                    chunks += 1;
                    if stop_after.is_some_and(|n| chunks >= n) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                match result {
                    Ok(stats) => {
                        tally.finished(stats.finish);
                        if stats.finish == FinishReason::End {
                            assert_eq!(text, want, "thread {t} iteration {i}");
                        } else {
                            assert!(want.starts_with(&text), "{text:?} is not a prefix of {want:?}");
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Closed => tally.closed += 1,
                    Err(e) => panic!("thread {t} iteration {i}: generate failed: {e} ({:?})", e.kind()),
                }
            }
            // A stream, read to the end or dropped mid-way, or aborted
            // through its aborter from another thread.
            60..=89 => {
                let stream = model.stream(&GenerateRequest::new(prompt.clone()));
                let mut stream = match stream {
                    Ok(s) => s,
                    Err(e) if e.kind() == ErrorKind::Closed => {
                        tally.closed += 1;
                        continue;
                    }
                    Err(e) => panic!("thread {t}: stream failed: {e}"),
                };
                let drop_after = (action >= 80).then(|| rng.below(4));
                let abort_from_afar = action < 65;
                let aborter = stream.aborter();
                let helper = abort_from_afar.then(|| {
                    let delay = Duration::from_micros(rng.below(1500) as u64);
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        aborter.abort();
                    })
                });
                let mut text = String::new();
                let mut pieces = 0;
                let finish = loop {
                    if drop_after.is_some_and(|n| pieces >= n) {
                        break None;
                    }
                    match stream.next_event(Some(Duration::from_secs(30))) {
                        Ok(StreamEvent::Text(c)) => {
                            text.push_str(&c);
                            pieces += 1;
                        }
                        Ok(StreamEvent::Finished(stats)) => break Some(stats.finish),
                        Ok(StreamEvent::Timeout) => panic!("thread {t}: no progress on a stream for 30 s"),
                        Err(e) if e.kind() == ErrorKind::Closed => {
                            tally.closed += 1;
                            break None;
                        }
                        Err(e) => panic!("thread {t}: stream error {e}"),
                    }
                };
                assert!(want.starts_with(&text), "{text:?} is not a prefix of {want:?}");
                match finish {
                    Some(f) => {
                        tally.finished(f);
                        if f == FinishReason::End {
                            assert_eq!(text, want);
                        }
                    }
                    None if drop_after.is_some() => {
                        tally.streams_dropped += 1;
                        tally.aborted += 1;
                    }
                    None => {}
                }
                drop(stream);
                if let Some(h) = helper {
                    h.join().unwrap();
                    tally.aborts_sent += 1;
                }
            }
            // Abort whatever runs on the model, from this thread.
            90..=92 => {
                model.abort();
                tally.aborts_sent += 1;
            }
            // Other calls.
            93..=98 => match model.kv_cache_tokens() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Closed => {}
                Err(e) => panic!("kv_cache_tokens: {e}"),
            },
            // Close the model under everyone's feet and open a new one.
            _ => {
                slot.reopen();
                tally.reopens += 1;
            }
        }
    }
    tally
}

#[test]
fn sixteen_threads_two_models_random_aborts_drops_and_reopens() {
    let _serial = serial();
    let lib = sim_library("");
    let slots = [Slot::new("A", &["waiting = carry"]), Slot::new("B", &["waiting = repeat", "callback_thread = foreign"])];
    let threads = 16;
    let per_thread = scaled(200);
    let done = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    watchdog("stress", Duration::from_secs(240), done.clone(), progress.clone());
    let started = Instant::now();
    let mut total = Tally::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (slots, progress) = (&slots, &progress);
                scope.spawn(move || worker(t, per_thread, slots, progress))
            })
            .collect();
        for h in handles {
            total.add(&h.join().expect("a worker panicked"));
        }
    });
    done.store(true, Ordering::Release);
    let elapsed = started.elapsed();
    assert_eq!(progress.load(Ordering::Relaxed), (threads * per_thread) as u64, "every operation completed");
    for slot in &slots {
        slot.current().close().unwrap();
    }
    let stats = sim_stats(&lib);
    assert_eq!(stats[0], 0, "two calls were inside the runtime at once");
    report(&format!(
        "stress: {threads} threads x 2 models, {} operations, {} generations in {:.1} s: {} whole, {} aborted ({} streams dropped), \
         {} stopped by the callback, {} at the token limit, {} refused as closed; {} aborts sent, {} closes and reopens",
        threads * per_thread,
        total.generations(),
        elapsed.as_secs_f64(),
        total.end,
        total.aborted,
        total.streams_dropped,
        total.stopped,
        total.max_tokens,
        total.closed,
        total.aborts_sent,
        total.reopens
    ));
    assert!(total.end > total.generations() / 4, "too few generations ended normally to check their text: {total:?}");
}

// ------------------------------------------------------------------ memory

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One generation of the mix used for the memory test.
fn one_generation(model: &Model, c_model: *mut rkl::ffi::rkl_model, i: usize) {
    let prompt = format!("p{}", i % 97);
    match i % 10 {
        0..=4 => {
            let mut n = 0;
            let stats = model
                .generate(&GenerateRequest::new(prompt), |c| {
                    n += c.len();
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(stats.finish, FinishReason::End);
        }
        5 | 6 => {
            let text: String = model.stream(&GenerateRequest::new(prompt)).unwrap().map(|c| c.unwrap()).collect();
            assert!(text.starts_with("ok"));
        }
        7 => {
            // Dropped after the first piece.
            let mut s = model.stream(&GenerateRequest::new(prompt)).unwrap();
            let _ = s.next_event(Some(Duration::from_secs(10))).unwrap();
        }
        _ => c_generate(c_model, &prompt, i % 20 == 8),
    }
}

/// A generation through the C API, by callback or by stream.
fn c_generate(model: *mut rkl::ffi::rkl_model, prompt: &str, stream: bool) {
    use rkl::ffi::*;
    use std::ffi::{c_char, c_int, c_void, CString};
    unsafe extern "C" fn count(_: *const c_char, len: usize, userdata: *mut c_void) -> c_int {
        // SAFETY: userdata is a usize counter.
        unsafe { *userdata.cast::<usize>() += len };
        0
    }
    let prompt = CString::new(prompt).unwrap();
    // SAFETY: valid structs and strings for every call.
    unsafe {
        let mut g: rkl_generate_params = std::mem::zeroed();
        assert_eq!(rkl_generate_params_init(&mut g, std::mem::size_of::<rkl_generate_params>()), RKL_OK);
        g.prompt = prompt.as_ptr();
        if stream {
            let mut s = std::ptr::null_mut();
            assert_eq!(rkl_stream_open(model, &g, &mut s), RKL_OK);
            loop {
                let (mut t, mut n) = (std::ptr::null(), 0usize);
                assert_eq!(rkl_stream_next(s, -1, &mut t, &mut n), RKL_OK);
                if t.is_null() {
                    break;
                }
            }
            let mut st: rkl_stats = std::mem::zeroed();
            st.struct_size = std::mem::size_of::<rkl_stats>();
            assert_eq!(rkl_stream_stats(s, &mut st), RKL_OK);
            assert_eq!(rkl_stream_close(s), RKL_OK);
        } else {
            let mut n = 0usize;
            let mut st: rkl_stats = std::mem::zeroed();
            st.struct_size = std::mem::size_of::<rkl_stats>();
            assert_eq!(rkl_generate(model, &g, Some(count), (&mut n as *mut usize).cast(), &mut st), RKL_OK);
            assert!(n > 0);
        }
    }
}

fn c_open(path: &std::path::Path) -> *mut rkl::ffi::rkl_model {
    use rkl::ffi::*;
    let path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let runtime = std::ffi::CString::new(sim_library("").to_str().unwrap()).unwrap();
    let mut m = std::ptr::null_mut();
    // SAFETY: a struct of our size, strings alive for the call.
    unsafe {
        let mut p: rkl_open_params = std::mem::zeroed();
        assert_eq!(rkl_open_params_init(&mut p, std::mem::size_of::<rkl_open_params>()), RKL_OK);
        p.model_path = path.as_ptr();
        p.runtime_path = runtime.as_ptr();
        assert_eq!(rkl_open(&p, &mut m), RKL_OK);
    }
    m
}

/// Runs `count` generations of the mix on a model of `lines`, reopening the
/// model every `reopen_every`; returns (RSS after warm-up, highest RSS
/// seen, RSS at the end), in KiB.
fn measure(lines: &[&str], warmup: usize, count: usize, reopen_every: usize) -> (u64, u64, u64) {
    let path = model_file("stress-rss", lines);
    let mut model = Model::open(&config(&path)).unwrap();
    let mut c_model = c_open(&path);
    let trace = std::env::var_os("RKL_STRESS_RSS_TRACE").is_some();
    let mut base = 0;
    let mut peak = 0;
    // The warm-up runs the same mix, reopens included, so that allocator
    // pools and caches reach their steady size before measuring.
    for i in 0..warmup + count {
        if i == warmup {
            base = rss_kib();
            peak = base;
        }
        one_generation(&model, c_model, i);
        if i % reopen_every == reopen_every - 1 {
            model.close().unwrap();
            model = Model::open(&config(&path)).unwrap();
            // SAFETY: a live handle, closed once.
            assert_eq!(unsafe { rkl::ffi::rkl_close(c_model) }, rkl::ffi::RKL_OK);
            c_model = c_open(&path);
        }
        if i >= warmup && i % 250 == 0 {
            peak = peak.max(rss_kib());
        }
        if trace && i % 500 == 0 {
            eprintln!("rss {i} {}", rss_kib());
        }
    }
    let end = rss_kib();
    model.close().unwrap();
    // SAFETY: a live handle.
    assert_eq!(unsafe { rkl::ffi::rkl_close(c_model) }, rkl::ffi::RKL_OK);
    (base, peak.max(end), end)
}

/// Generations before the first measurement.
const WARMUP: usize = 4_000;

#[test]
fn memory_stays_flat_across_ten_thousand_generations() {
    let _serial = serial();
    // Cheap (about a second), so 10,000 in both ABI runs unless asked.
    let count = match std::env::var("RKL_HARDENING_SCALE").ok().and_then(|s| s.parse::<f64>().ok()) {
        Some(s) if s > 0.0 => ((10_000.0 * s) as usize).max(1),
        _ => 10_000,
    };
    let runs_before = sim_stats(&sim_library(""))[2];
    let started = Instant::now();
    let (base, peak, end) = measure(&["reply = ok {prompt}"], WARMUP, count, 1_000);
    let elapsed = started.elapsed();
    let runs = sim_stats(&sim_library(""))[2] - runs_before;
    assert!(runs >= (WARMUP + count) as u64, "only {runs} runs reached the runtime");
    let growth = peak.saturating_sub(base);
    report(&format!(
        "stress: RSS across {count} generations (after {WARMUP} to warm up; {runs} runs in all) in {:.1} s: {base} KiB after warm-up, \
         {peak} KiB at most, {end} KiB at the end: growth {growth} KiB",
        elapsed.as_secs_f64()
    ));
    assert!(growth < 2048, "resident memory grew by {growth} KiB across {count} generations");
    assert_eq!(sim_stats(&sim_library(""))[0], 0);
}

#[test]
fn the_memory_probe_sees_a_runtime_that_leaks() {
    let _serial = serial();
    // 64 KiB per run over 200 runs: 12.5 MiB that the probe must see.
    let (base, peak, _) = measure(&["reply = ok {prompt}", "grow_kb_per_run = 64"], 10, 200, 1_000);
    let growth = peak.saturating_sub(base);
    assert!(growth > 8 * 1024, "the probe missed a 12.5 MiB leak: {growth} KiB");
}
