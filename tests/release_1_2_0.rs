//! Releases 1.2.0 and 1.2.1b1 (one symbol set, told apart only by the
//! version they print): text, token and embedding input and both float
//! outputs work; multimodal input uses the layout of the printed version,
//! and is refused when the runtime printed none; what these releases lack
//! is refused by name.

mod common;

use common::*;
use rkl::{Embeddings, ErrorKind, Family, GenerateRequest, Images, Input, Model, Multimodal, Role};

/// A model on a private copy of the 1.2.0-family simulator that imitates
/// `release` (each copy is its own runtime, which prints its version once).
fn open(release: &str, isolated: bool) -> Model {
    let lib = temp_dir(&format!("rt-{release}")).join("librkllmrt.so");
    std::fs::copy(sim_library("family-1-2-0"), &lib).unwrap();
    let model = model_file(
        &format!("m-{release}"),
        &[&format!("release = {release}"), "reply = [{input}|{prompt}]", "hidden_size = 4", "vocab_size = 10"],
    );
    let mut c = config(&model);
    c.runtime_path = Some(lib);
    c.isolated = isolated;
    c.host_path = isolated.then(|| env!("CARGO_BIN_EXE_rkl-host").into());
    Model::open(&c).unwrap()
}

fn text(model: &Model, request: &GenerateRequest) -> rkl::Result<String> {
    generated_text(model, request)
}

fn image(count: usize, width: usize) -> GenerateRequest {
    let mut r = GenerateRequest::new("<image>".repeat(count) + "What?");
    let values = (0..count * 2 * 4).map(|i| i as f32).collect::<Vec<_>>().into();
    r.input = Input::Multimodal(Multimodal {
        images: Some(Images { values, count, tokens_per_image: 2, dim: 4, width, height: width }),
        videos: None,
    });
    r
}

#[test]
fn text_tokens_and_embeddings_on_both_releases_in_both_modes() {
    for release in ["1.2.0", "1.2.1b1", "silent"] {
        for isolated in [false, true] {
            let model = open(release, isolated);
            assert_eq!(model.family(), Family::V1_2_0);
            let expected_version = (release != "silent").then_some(release);
            assert_eq!(model.runtime_version(), expected_version);
            assert_eq!(text(&model, &GenerateRequest::new("hi")).unwrap(), "[prompt|hi]");
            let mut r = GenerateRequest::new("");
            r.input = Input::Tokens(vec![1, 2, 3].into());
            assert!(text(&model, &r).unwrap().starts_with("[tokens n=3 "), "{release}");
            r.input = Input::Embeddings(Embeddings { values: vec![0.5; 8].into(), n_tokens: 2, dim: 4 });
            let (hidden, stats) = model.hidden_states(&r).unwrap();
            assert_eq!((hidden.tokens, hidden.dim), (2, 4));
            assert_eq!(stats.prefill_tokens, 0, "these releases report no perf");
            let (logits, _) = model.logits(&GenerateRequest::new("hi")).unwrap();
            assert_eq!((logits.tokens, logits.dim), (1, 10));
            model.clear_history(false).unwrap();
        }
    }
}

#[test]
fn multimodal_input_follows_the_printed_version() {
    let model = open("1.2.0", false);
    let got = text(&model, &image(1, 0)).unwrap();
    assert!(got.starts_with("[multimodal images=1 tokens=2 size=?x? tags=<image>|</image>|<unk> fnv="), "{got}");
    assert!(got.ends_with("|<image>What?]"), "{got}");
    for refused in [image(2, 0), image(1, 448)] {
        let e = text(&model, &refused).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotSupported, "{e}");
        assert!(e.message().contains("1.2.0 takes one image"), "{e}");
    }
    let model = open("1.2.1b1", false);
    let got = text(&model, &image(2, 448)).unwrap();
    assert!(got.starts_with("[multimodal images=2 tokens=2 size=448x448 "), "{got}");
    let model = open("silent", false);
    let e = text(&model, &image(1, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotSupported);
    assert!(e.message().contains("printed no version"), "{e}");
}

#[test]
fn what_these_releases_lack_is_refused_by_name() {
    let model = open("1.2.1b1", false);
    let e = model.kv_cache_tokens().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotSupported);
    assert!(e.message().contains("1.2.1 or later"), "{e}");
    let e = model.set_function_tools("s", "[]", "<r>").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotSupported, "{e}");
    let mut r = GenerateRequest::new("x");
    r.role = Role::Tool;
    assert_eq!(text(&model, &r).unwrap_err().kind(), ErrorKind::NotSupported);
    let mut r = GenerateRequest::new("x");
    r.enable_thinking = true;
    assert_eq!(text(&model, &r).unwrap_err().kind(), ErrorKind::NotSupported);
    let mut r = GenerateRequest::new("x");
    r.sampling = Some(rkl::Sampling { top_k: Some(3), ..Default::default() });
    assert_eq!(text(&model, &r).unwrap_err().kind(), ErrorKind::NotSupported);
    let lib = temp_dir("rt-cross").join("librkllmrt.so");
    std::fs::copy(sim_library("family-1-2-0"), &lib).unwrap();
    let mut c = config(&model_file("cross-120", &[]));
    c.runtime_path = Some(lib);
    c.params.use_cross_attn = Some(true);
    let e = Model::open(&c).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotSupported, "{e}");
}

#[test]
fn a_prompt_cache_works_on_1_2_0() {
    let model = open("1.2.0", false);
    let path = temp_dir("cache-120").join("c.rklcache");
    model.cache_save(&GenerateRequest::new("System."), &path).unwrap();
    model.cache_load(&path).unwrap();
    assert_eq!(text(&model, &GenerateRequest::new("System. Go")).unwrap(), "[prompt| Go]");
}
