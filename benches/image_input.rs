//! Passing image embeddings: what rkl adds to a request that carries one
//! 576-token x 1536-dim image (Qwen2-VL-2B's vision encoder output for a
//! 448 x 448 image, 3.5 MB of f32), against the simulator at zero time cost
//! (so only rkl's work and the simulator's reading of the floats remain).
//!
//! - **copy**: the C API copies the caller's array into rkl's own (owned
//!   for the whole run, whatever the caller does after the call returns);
//!   the Rust API shares the caller's `Arc<[f32]>` and copies nothing.
//! - **check**: the shape and finiteness check of every float.
//! - **in-process, Rust** / **in-process, C** / **isolated, Rust**: a whole
//!   request (one token) with the image, and the same request's text alone,
//!   paired; the difference is what the image costs end to end (the C path
//!   includes the copy, isolation mode the trip of 4.7 MB of base64 to the
//!   worker).
//!
//! Run: `cargo bench --bench image_input` (part of `make bench`;
//! `RKL_BENCH_ROUNDS`, default 30; `RKL_BENCH_SIM`, `RKL_BENCH_HOST`: the
//! simulator and rkl-host, default the release builds). Output: a table on
//! stderr and `BENCH {json}` lines.

use rkl::{GenerateRequest, Images, Input, Model, Multimodal, OpenConfig};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const TOKENS: usize = 576;
const DIM: usize = 1536;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn timed(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1000.0
}

fn report(name: &str, ms: f64) {
    println!("BENCH {{\"name\":\"image_{name}_ms\",\"value\":{ms:.4}}}");
    eprintln!("{name:<40} {ms:>10.3} ms");
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rounds: usize = std::env::var("RKL_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let sim = std::env::var("RKL_BENCH_SIM").map(PathBuf::from).unwrap_or(root.join("target/release/librkllmrt.so"));
    let dir = root.join("target/bench-image");
    std::fs::create_dir_all(&dir).unwrap();
    let model_path = dir.join("vl.sim");
    std::fs::write(&model_path, format!("RKLLM-SIM 1\ntime_scale = 0\nhidden_size = {DIM}\nreply = ok\n")).unwrap();
    let values: Arc<[f32]> = (0..TOKENS * DIM).map(|i| (i % 977) as f32 / 977.0).collect();
    let image =
        Images { values: values.clone(), count: 1, tokens_per_image: TOKENS, dim: DIM, width: 448, height: 448 };
    let mut with_image = GenerateRequest::new("<image>Describe the picture.");
    with_image.max_new_tokens = Some(1);
    with_image.input = Input::Multimodal(Multimodal { images: Some(image), videos: None });
    let mut text_only = GenerateRequest::new("Describe the picture.");
    text_only.max_new_tokens = Some(1);

    eprintln!(
        "image input: {TOKENS} tokens x {DIM} dims ({:.1} MB), {rounds} rounds, medians",
        (TOKENS * DIM * 4) as f64 / 1e6
    );
    let copies: Vec<f64> = (0..rounds)
        .map(|_| {
            timed(|| {
                let copy: Arc<[f32]> = Arc::from(&values[..]);
                std::hint::black_box(copy);
            })
        })
        .collect();
    report("copy", median(copies));
    let checks: Vec<f64> =
        (0..rounds).map(|_| timed(|| assert!(std::hint::black_box(&values).iter().all(|v| v.is_finite())))).collect();
    report("check", median(checks));

    for isolated in [false, true] {
        let mut config = OpenConfig::new(&model_path);
        config.runtime_path = Some(sim.clone());
        config.params.max_context_len = Some(4096);
        config.isolated = isolated;
        let host = std::env::var("RKL_BENCH_HOST").map(PathBuf::from).unwrap_or(root.join("target/release/rkl-host"));
        config.host_path = isolated.then_some(host);
        let model = Model::open(&config).unwrap();
        let run = |r: &GenerateRequest| {
            timed(|| {
                model.generate(r, |_| ControlFlow::Continue(())).unwrap();
            })
        };
        run(&with_image);
        let (mut image_ms, mut text_ms) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            image_ms.push(run(&with_image));
            text_ms.push(run(&text_only));
        }
        let mode = if isolated { "isolated" } else { "in_process" };
        report(&format!("{mode}_request_with_image"), median(image_ms.clone()));
        report(&format!("{mode}_request_text_only"), median(text_ms.clone()));
        let diffs = image_ms.iter().zip(&text_ms).map(|(a, b)| a - b).collect();
        report(&format!("{mode}_image_cost"), median(diffs));
    }
    c_path(&model_path, &sim, &values, rounds);
}

/// The same request through the C API (rkl_generate), which copies the array.
fn c_path(model_path: &std::path::Path, sim: &std::path::Path, values: &[f32], rounds: usize) {
    use rkl::ffi::*;
    use std::ffi::CString;
    let model_c = CString::new(model_path.to_str().unwrap()).unwrap();
    let sim_c = CString::new(sim.to_str().unwrap()).unwrap();
    let prompt = c"<image>Describe the picture.";
    // SAFETY: every struct is initialised by its _init function and every
    // pointer outlives the calls that read it.
    unsafe {
        let mut op = std::mem::zeroed::<rkl_open_params>();
        rkl_open_params_init(&mut op, std::mem::size_of::<rkl_open_params>());
        op.model_path = model_c.as_ptr();
        op.runtime_path = sim_c.as_ptr();
        op.max_context_len = 4096;
        let mut model = std::ptr::null_mut();
        assert_eq!(rkl_open(&op, &mut model), rkl_status::RKL_OK);
        let mut image = std::mem::zeroed::<rkl_media_input>();
        rkl_media_input_init(&mut image, std::mem::size_of::<rkl_media_input>());
        image.embeddings = values.as_ptr();
        image.count = 1;
        image.tokens = TOKENS;
        image.dim = DIM;
        let mut gp = std::mem::zeroed::<rkl_generate_params>();
        rkl_generate_params_init(&mut gp, std::mem::size_of::<rkl_generate_params>());
        gp.prompt = prompt.as_ptr();
        gp.max_new_tokens = 1;
        gp.input_kind = rkl_input_kind::RKL_INPUT_MULTIMODAL as i32;
        gp.images = &image;
        let times: Vec<f64> = (0..rounds + 1)
            .map(|_| {
                timed(|| {
                    assert_eq!(
                        rkl_generate(model, &gp, None, std::ptr::null_mut(), std::ptr::null_mut()),
                        rkl_status::RKL_OK
                    )
                })
            })
            .skip(1)
            .collect();
        report("in_process_c_request_with_image", median(times));
        rkl_close(model);
    }
}
