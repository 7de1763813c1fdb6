//! rkl's own allocations per token, counted by a global allocator, and the
//! per-token time of the Rust API. Part of `make bench` (see mk/bench.mk and
//! BENCHMARKS.md); run alone with `cargo bench --bench generate`.
//!
//! The counting allocator is this program's global allocator, so it sees
//! every allocation of rkl (the calling thread and rkl's dispatcher thread
//! alike) and none of the simulator's: the simulator is a separate shared
//! library with its own allocator. "Steady state" is the difference between
//! a long and a short generation divided by the difference in tokens, so
//! what a call costs once (request copy, channel, stats) cancels out; that
//! per-call figure is reported separately.
//!
//! Environment: `RKL_BENCH_SIM` (the simulator, default
//! target/release/librkllmrt.so), `RKL_BENCH_ROUNDS` (default 20).
//! Output: `BENCH {json}` lines, as the C drivers print (bench/c/common.h).

use rkl::ffi;
use rkl::{GenerateRequest, Model, OpenConfig, Step};
use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_char, c_int, c_void, CString};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.realloc(p, layout, new_size) }
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(p, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::SeqCst)
}

/// One way of running a generation of at most `max` tokens (0: all);
/// returns the tokens received.
type Path<'a> = (&'a str, Box<dyn Fn(u32) -> u32 + 'a>);

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sim = std::env::var_os("RKL_BENCH_SIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/librkllmrt.so"));
    let rounds: usize = std::env::var("RKL_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20).max(1);
    let dir = std::env::temp_dir().join(format!("rkl-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model_path = dir.join("bench.sim");
    // Zero-cost tokens (as in the C drivers): about 4000 per generation.
    let reply = "token ".repeat(1333);
    std::fs::write(
        &model_path,
        format!("RKLLM-SIM 1\ntime_scale = 0\nprefill_us_per_token = 0\ndecode_us_per_token = 0\nreply = {reply}\n"),
    )
    .unwrap();

    let mut config = OpenConfig::new(&model_path);
    config.runtime_path = Some(sim.clone());
    let model = Model::open(&config).expect("open the simulated model (build the simulator in release first)");

    // The same model through the C API, as a C program would use it.
    let c_model_path = CString::new(model_path.to_str().unwrap()).unwrap();
    let c_sim = CString::new(sim.to_str().unwrap()).unwrap();
    let c_model = unsafe {
        let mut p = std::mem::MaybeUninit::<ffi::rkl_open_params>::zeroed();
        assert_eq!(
            ffi::rkl_open_params_init(p.as_mut_ptr(), std::mem::size_of::<ffi::rkl_open_params>()),
            ffi::rkl_status::RKL_OK
        );
        let mut p = p.assume_init();
        p.model_path = c_model_path.as_ptr();
        p.runtime_path = c_sim.as_ptr();
        let mut m = ptr::null_mut();
        assert_eq!(ffi::rkl_open(&p, &mut m), ffi::rkl_status::RKL_OK);
        m
    };
    let prompt = CString::new("bench").unwrap();

    let rust_generate = |max: u32| {
        let mut req = GenerateRequest::new("bench");
        req.max_new_tokens = (max > 0).then_some(max);
        let mut bytes = 0usize;
        let stats = model
            .generate(&req, |text| {
                bytes += text.len();
                ControlFlow::Continue(())
            })
            .unwrap();
        std::hint::black_box(bytes);
        stats.tokens
    };
    let rust_stream = |max: u32| {
        let mut req = GenerateRequest::new("bench");
        req.max_new_tokens = (max > 0).then_some(max);
        let mut stream = model.stream(&req).unwrap();
        let mut bytes = 0usize;
        // The iterator yields a fresh String per chunk; next_into reuses one.
        let mut text = String::new();
        loop {
            text.clear();
            match stream.next_into(None, &mut text).unwrap() {
                Step::Text => bytes += text.len(),
                Step::Finished(stats) => {
                    std::hint::black_box(bytes);
                    break stats.tokens;
                }
                Step::Timeout => unreachable!("no timeout was given"),
            }
        }
    };
    let c_generate = |max: u32| unsafe {
        let mut g = std::mem::MaybeUninit::<ffi::rkl_generate_params>::zeroed();
        ffi::rkl_generate_params_init(g.as_mut_ptr(), std::mem::size_of::<ffi::rkl_generate_params>());
        let mut g = g.assume_init();
        g.prompt = prompt.as_ptr();
        g.max_new_tokens = max;
        let mut st: ffi::rkl_stats = std::mem::zeroed();
        st.struct_size = std::mem::size_of::<ffi::rkl_stats>();
        let mut bytes = 0usize;
        let status = ffi::rkl_generate(c_model, &g, Some(on_token), (&mut bytes as *mut usize).cast(), &mut st);
        assert_eq!(status, ffi::rkl_status::RKL_OK);
        std::hint::black_box(bytes);
        st.tokens
    };
    let c_stream = |max: u32| unsafe {
        let mut g = std::mem::MaybeUninit::<ffi::rkl_generate_params>::zeroed();
        ffi::rkl_generate_params_init(g.as_mut_ptr(), std::mem::size_of::<ffi::rkl_generate_params>());
        let mut g = g.assume_init();
        g.prompt = prompt.as_ptr();
        g.max_new_tokens = max;
        let mut s = ptr::null_mut();
        assert_eq!(ffi::rkl_stream_open(c_model, &g, &mut s), ffi::rkl_status::RKL_OK);
        let mut bytes = 0usize;
        loop {
            let mut text: *const c_char = ptr::null();
            let mut len = 0usize;
            assert_eq!(ffi::rkl_stream_next(s, -1, &mut text, &mut len), ffi::rkl_status::RKL_OK);
            if text.is_null() {
                break;
            }
            bytes += len;
        }
        std::hint::black_box(bytes);
        let mut st: ffi::rkl_stats = std::mem::zeroed();
        st.struct_size = std::mem::size_of::<ffi::rkl_stats>();
        assert_eq!(ffi::rkl_stream_stats(s, &mut st), ffi::rkl_status::RKL_OK);
        ffi::rkl_stream_close(s);
        st.tokens
    };

    let paths: Vec<Path> = vec![
        ("Rust Model::generate", Box::new(rust_generate)),
        ("Rust Stream::next_into", Box::new(rust_stream)),
        ("C rkl_generate", Box::new(c_generate)),
        ("C rkl_stream_next", Box::new(c_stream)),
    ];
    for (name, run) in &paths {
        let full = run(0); // warm-up; the reply's token count
        let short = full / 4;
        // Steady state: (long - short) / (their token difference), 3 times.
        let mut per_token = Vec::new();
        for _ in 0..3 {
            let a0 = allocations();
            let ta = run(short);
            let a1 = allocations();
            let tb = run(full);
            let a2 = allocations();
            per_token.push(((a2 - a1) as f64 - (a1 - a0) as f64) / (tb - ta) as f64);
        }
        // Per call: a 1-token generation.
        let mut per_call = Vec::new();
        for _ in 0..5 {
            let a0 = allocations();
            run(1);
            per_call.push((allocations() - a0) as f64);
        }
        println!("BENCH {}", json(&format!("rust_allocs:{name}"), "allocs/token", &per_token, ""));
        println!("BENCH {}", json(&format!("rust_allocs_call:{name}"), "allocs/call", &per_call, ""));
    }

    // Time per token of the Rust API (the C API's is measured by bench/c).
    let mut ns = Vec::new();
    let mut tokens = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        tokens = rust_generate(0);
        ns.push(start.elapsed().as_nanos() as f64 / tokens as f64);
    }
    println!("BENCH {}", json("rust_generate_tokens", "ns/token", &ns, &format!(",\"tokens\":{tokens}")));

    drop(paths);
    unsafe { ffi::rkl_close(c_model) };
    drop(model);
    let _ = std::fs::remove_dir_all(&dir);
}

unsafe extern "C" fn on_token(_text: *const c_char, len: usize, userdata: *mut c_void) -> c_int {
    // SAFETY: the userdata is the `usize` passed to rkl_generate above.
    unsafe { *userdata.cast::<usize>() += len };
    0
}

fn json(case: &str, unit: &str, values: &[f64], extra: &str) -> String {
    let values: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
    format!("{{\"case\":\"{case}\",\"unit\":\"{unit}\",\"values\":[{}]{extra}}}", values.join(","))
}
