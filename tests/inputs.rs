//! Every input kind (text, token ids, embeddings, images and videos) and
//! both float outputs (hidden states, logits), in both modes and both ABIs:
//! what the runtime receives is what the caller gave (the simulator shows
//! it in its reply), bad shapes are refused before the runtime sees them,
//! and a prompt cache saved with an image fits only that image.

mod common;

use common::*;
use rkl::{
    CrossAttention, Embeddings, ErrorKind, Family, GenerateRequest, Images, Input, MediaTags, Model, Multimodal,
    OpenConfig, Tags, Videos,
};
use std::ops::ControlFlow;
use std::sync::Arc;

const DIM: usize = 8;

fn open_with(tag: &str, lines: &[&str], isolated: bool, adjust: impl FnOnce(&mut OpenConfig)) -> Model {
    let mut lines = lines.to_vec();
    let dim = format!("hidden_size = {DIM}");
    lines.push(&dim);
    lines.push("vocab_size = 50");
    let mut c = config(&model_file(tag, &lines));
    c.isolated = isolated;
    c.host_path = isolated.then(|| env!("CARGO_BIN_EXE_rkl-host").into());
    adjust(&mut c);
    Model::open(&c).unwrap()
}

fn open(tag: &str, reply: &str, isolated: bool) -> Model {
    open_with(tag, &[&format!("reply = {reply}")], isolated, |_| {})
}

fn text(model: &Model, request: &GenerateRequest) -> rkl::Result<String> {
    generated_text(model, request)
}

fn floats(n: usize, salt: f32) -> Arc<[f32]> {
    (0..n).map(|i| (i as f32) * 0.25 - salt).collect()
}

fn images(count: usize, tokens: usize, salt: f32) -> Images {
    Images {
        values: floats(count * tokens * DIM, salt),
        count,
        tokens_per_image: tokens,
        dim: DIM,
        width: 448,
        height: 336,
    }
}

fn multimodal(prompt: &str, images: Images) -> GenerateRequest {
    let mut r = GenerateRequest::new(prompt);
    r.input = Input::Multimodal(Multimodal { images: Some(images), videos: None });
    r
}

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

#[test]
fn token_ids_and_embeddings_arrive_exactly() {
    for isolated in [false, true] {
        let model = open("tokens", "[{input}|{prefill}]", isolated);
        let ids = vec![3, 1, 4, 1, 5];
        let mut r = GenerateRequest::new("");
        r.input = Input::Tokens(ids.clone().into());
        let expected = format!("[tokens n=5 fnv={}|5]", hex(fnv1a(&i32_bytes(&ids))));
        assert_eq!(text(&model, &r).unwrap(), expected, "isolated {isolated}");

        let values = floats(3 * DIM, 1.0);
        r.input = Input::Embeddings(Embeddings { values: values.clone(), n_tokens: 3, dim: DIM });
        let expected = format!("[embed n=3 dim={DIM} fnv={}|3]", hex(fnv1a(&f32_bytes(&values))));
        let mut got = String::new();
        let stats = model
            .generate(&r, |c| {
                got.push_str(c);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(got, expected, "isolated {isolated}");
        assert_eq!(stats.prefill_tokens, 3, "embedding rows are prefill tokens");
    }
}

#[test]
fn images_arrive_with_their_shape_and_tags() {
    let tags = Tags { start: "<|vs|>".into(), end: "<|ve|>".into(), content: "<|pad|>".into() };
    for isolated in [false, true] {
        let model = open_with("images", &["reply = [{input}|{prompt}|{prefill}]"], isolated, |c| {
            c.media_tags = MediaTags { image: Some(tags.clone()), video: None };
        });
        let img = images(2, 4, 0.5);
        let mut bytes = "<image><image>Compare.".as_bytes().to_vec();
        bytes.extend(f32_bytes(&img.values));
        let r = multimodal("<image><image>Compare.", img);
        let got = text(&model, &r).unwrap();
        assert_eq!(
            got,
            format!(
                "[multimodal images=2 tokens=4 size=448x336 tags=<|vs|>|<|ve|>|<|pad|> fnv={}|<image><image>Compare.|{}]",
                hex(fnv1a(&bytes)),
                prompt_tokens(&default_prefill("Compare.")) + 8
            ),
            "isolated {isolated}: 1.2 takes the tags at open, 1.3 with the request; one setting for both"
        );
    }
    // Unset tags: the runtime's defaults on 1.2, empty strings on 1.3.
    let model = open("images-default-tags", "[{input}]", false);
    let got = text(&model, &multimodal("<image>x", images(1, 1, 0.0))).unwrap();
    let tags = if sim_abi() == Family::V1_3 { "||" } else { "<image>|</image>|<unk>" };
    assert!(got.contains(&format!(" tags={tags} ")), "{got}");
}

#[test]
fn videos_need_1_3() {
    let video = Videos {
        values: floats(2 * 3 * 2 * DIM, 0.0),
        count: 2,
        frames_per_video: 3,
        tokens_per_frame: 2,
        dim: DIM,
        width: 64,
        height: 48,
    };
    for isolated in [false, true] {
        let model = open("videos", "[{input}]", isolated);
        let mut r = GenerateRequest::new("<video>and<video>");
        r.input = Input::Multimodal(Multimodal { images: None, videos: Some(video.clone()) });
        match sim_abi() {
            Family::V1_3 => {
                let got = text(&model, &r).unwrap();
                assert!(got.contains("videos=2 frames=3 frame_tokens=2 frame=64x48 video_tags=||"), "{got}");
            }
            _ => {
                let e = text(&model, &r).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::NotSupported, "{e}");
                assert!(e.message().contains("1.3"), "{e}");
            }
        }
    }
}

#[test]
fn bad_shapes_are_refused_before_the_runtime() {
    let model = open("bad-shapes", "x", false);
    let before = sim_stats(&sim_library(""))[2];
    let cases: Vec<(Input, &str, &str)> = vec![
        (Input::Tokens(Vec::new().into()), "", "empty"),
        (Input::Tokens(vec![1, -1].into()), "", "token ids are >= 0"),
        (Input::Tokens(vec![1].into()), "text", "no prompt text"),
        (Input::Embeddings(Embeddings { values: floats(7, 0.0), n_tokens: 1, dim: DIM }), "", "needs 8 floats"),
        (Input::Embeddings(Embeddings { values: floats(8, 0.0), n_tokens: usize::MAX, dim: DIM }), "", "more than"),
        (Input::Embeddings(Embeddings { values: vec![f32::NAN; DIM].into(), n_tokens: 1, dim: DIM }), "", "not finite"),
        (Input::Multimodal(Multimodal::default()), "<image>", "needs images or videos"),
        (Input::Multimodal(Multimodal { images: Some(images(2, 1, 0.0)), videos: None }), "<image>", "marker"),
        (
            Input::Multimodal(Multimodal { images: Some(Images { dim: 0, ..images(1, 1, 0.0) }), videos: None }),
            "<image>",
            "dim is 0",
        ),
    ];
    for (input, prompt, why) in cases {
        let mut r = GenerateRequest::new(prompt);
        r.input = input;
        let e = text(&model, &r).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{why}: {e}");
        assert!(e.message().contains(why), "expected '{why}' in: {e}");
        assert!(model.hidden_states(&r).is_err(), "{why}: the float outputs check the same");
    }
    assert_eq!(sim_stats(&sim_library(""))[2], before, "no refused request reached the runtime");
}

#[test]
fn hidden_states_and_logits_have_the_model_files_shape_and_values() {
    for isolated in [false, true] {
        let model = open("floats", "never generated", isolated);
        let r = GenerateRequest::new("Embed this sentence.");
        let h = fnv1a(b"Embed this sentence.");
        let (hidden, stats) = model.hidden_states(&r).unwrap();
        let tokens = prompt_tokens(&default_prefill("Embed this sentence.")) as usize;
        assert_eq!(
            (hidden.tokens, hidden.dim, hidden.values.len()),
            (tokens, DIM, tokens * DIM),
            "isolated {isolated}"
        );
        for (t, j) in [(0, 0), (0, DIM - 1), (tokens - 1, 3)] {
            assert_eq!(hidden.row(t).unwrap()[j], sim_value(h, t, j), "[{t}][{j}] isolated {isolated}");
        }
        assert_eq!(stats.tokens, 0, "nothing generated");
        if sim_abi() != Family::V1_2_0 {
            assert_eq!(stats.prefill_tokens as usize, tokens);
        }
        let (logits, _) = model.logits(&r).unwrap();
        assert_eq!((logits.tokens, logits.dim), (1, 50));
        assert_eq!(logits.values[49], sim_value(h, 0, 49));

        // Every input kind has hidden states: embeddings in, embeddings out.
        let mut r = GenerateRequest::new("");
        let values = floats(2 * DIM, 3.0);
        r.input = Input::Embeddings(Embeddings { values: values.clone(), n_tokens: 2, dim: DIM });
        let (hidden, _) = model.hidden_states(&r).unwrap();
        assert_eq!(hidden.tokens, 2);
        assert_eq!(hidden.values[DIM + 1], sim_value(fnv1a(&f32_bytes(&values)), 1, 1));
        // The model still generates text afterwards.
        assert_eq!(text(&model, &GenerateRequest::new("x")).unwrap(), "never generated");
    }
}

#[test]
fn a_prompt_cache_saved_with_an_image_fits_only_that_image() {
    for isolated in [false, true] {
        let model = open("mm-cache", "[{input}|{prompt}]", isolated);
        let dir = temp_dir("mm-cache-files");
        let path = dir.join("described.rklcache");
        let first = images(1, 4, 0.0);
        model.cache_save(&multimodal("<image>Describe", first.clone()), &path).unwrap();
        model.cache_load(&path).unwrap();
        let got = text(&model, &multimodal("<image>Describe it briefly.", first.clone())).unwrap();
        assert_eq!(got, "[prompt| it briefly.]", "isolated {isolated}: only the text after the cached image is sent");
        let other = images(1, 4, 9.0);
        let e = text(&model, &multimodal("<image>Describe it briefly.", other)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CacheMismatch, "another image: {e}");
        let e = text(&model, &GenerateRequest::new("<image>Describe it briefly.")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CacheMismatch, "no image at all: {e}");
        let mut tokens = GenerateRequest::new("");
        tokens.input = Input::Tokens(vec![1, 2].into());
        assert_eq!(text(&model, &tokens).unwrap_err().kind(), ErrorKind::InvalidArgument, "tokens cannot be checked");
        model.cache_release().unwrap();

        // A text-only cached prefix: the rest goes with the image.
        let text_path = dir.join("text.rklcache");
        model.cache_save(&GenerateRequest::new("You see pictures."), &text_path).unwrap();
        model.cache_load(&text_path).unwrap();
        let got = text(&model, &multimodal("You see pictures.<image>What is it?", first.clone())).unwrap();
        assert!(got.starts_with("[multimodal images=1 ") && got.ends_with("|<image>What is it?]"), "{got}");
        model.cache_release().unwrap();

        let mut r = GenerateRequest::new("");
        r.input = Input::Embeddings(Embeddings { values: floats(DIM, 0.0), n_tokens: 1, dim: DIM });
        let e = model.cache_save(&r, &dir.join("embed.rklcache")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
}

#[test]
fn automatic_caching_keys_on_the_image() {
    let dir = temp_dir("mm-auto");
    let model = open_with("mm-auto", &["reply = [{prompt}]"], false, |c| {
        c.auto_cache = Some(rkl::AutoCache { dir: dir.clone(), max_bytes: 0 });
    });
    let prompt = "<image>Describe. Then: ";
    let mut r = multimodal(&format!("{prompt}colour?"), images(1, 2, 0.0));
    r.cache_prefix = Some(prompt.len());
    let mut stats = model.generate(&r, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(stats.cache, rkl::CacheUse::Saved);
    stats = model.generate(&r, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(stats.cache, rkl::CacheUse::Hit);
    let mut other = multimodal(&format!("{prompt}colour?"), images(1, 2, 5.0));
    other.cache_prefix = Some(prompt.len());
    stats = model.generate(&other, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(stats.cache, rkl::CacheUse::Saved, "another image is another cache");
    assert_eq!(text(&model, &other).unwrap(), "[colour?]");
    let mut half = multimodal("<image>A<image>B", images(2, 1, 0.0));
    half.cache_prefix = Some("<image>A".len());
    let e = text(&model, &half).unwrap_err();
    assert!(e.message().contains("all or none"), "{e}");
}

#[test]
fn cross_attention_state_is_kept_until_replaced() {
    let state = |n: usize, salt: f32| CrossAttention {
        k_cache: floats(n * 32, salt),
        v_cache: floats(n * 32, salt + 1.0),
        mask: floats(n, 0.0),
        positions: (0..n as i32).collect::<Vec<_>>().into(),
    };
    for isolated in [false, true] {
        let model = open_with("cross", &["reply = [{cross_attn}]"], isolated, |c| c.params.use_cross_attn = Some(true));
        let mut r = GenerateRequest::new("x");
        let s = state(3, 0.0);
        r.cross_attn = Some(s.clone());
        let mut bytes = f32_bytes(&s.k_cache);
        bytes.extend(f32_bytes(&s.v_cache));
        bytes.extend(f32_bytes(&s.mask));
        bytes.extend(i32_bytes(&s.positions));
        let expected = format!("[tokens=3 fnv={}]", hex(fnv1a(&bytes)));
        assert_eq!(text(&model, &r).unwrap(), expected, "isolated {isolated}");
        // The runtime keeps the pointer; rkl keeps the arrays alive for it.
        assert_eq!(text(&model, &GenerateRequest::new("y")).unwrap(), expected);
        r.cross_attn = Some(CrossAttention { positions: vec![0].into(), ..state(3, 0.0) });
        assert_eq!(text(&model, &r).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
    let model = open("no-cross", "x", false);
    let mut r = GenerateRequest::new("x");
    r.cross_attn = Some(state(1, 0.0));
    let e = text(&model, &r).unwrap_err();
    assert!(e.message().contains("use_cross_attn"), "{e}");
}

struct Counting;
impl rkl::Tokenizer for Counting {
    fn tokenize(&self, text: &str, tokens: &mut [i32]) -> Option<usize> {
        let words: Vec<i32> = text.split_whitespace().map(|w| (w.len() % 50) as i32).collect();
        tokens.get_mut(..words.len())?.copy_from_slice(&words);
        Some(words.len())
    }
}
struct Constant;
impl rkl::Embedder for Constant {
    fn embed(&self, tokens: &[i32], out: &mut [f32]) -> bool {
        let dim = out.len() / tokens.len().max(1);
        for (i, v) in out.iter_mut().enumerate() {
            *v = (tokens[i / dim] as f32) + 0.5;
        }
        true
    }
}

#[test]
fn the_callers_tokenizer_and_embedder_are_called_on_1_3_only() {
    let hooks = rkl::RuntimeHooks { tokenizer: Some(Arc::new(Counting)), embedder: Some(Arc::new(Constant)) };
    let lines = ["reply = [{tokenizer}|{embed}|{prefill}]"];
    let mut c = config(&model_file("hooks", &lines));
    c.hooks = hooks.clone();
    match sim_abi() {
        Family::V1_3 => {
            let model = Model::open(&c).unwrap();
            let prefilled = default_prefill("one three fifteen");
            let ids: Vec<i32> = prefilled.split_whitespace().map(|w| (w.len() % 50) as i32).collect();
            let embedded: Vec<f32> = ids.iter().flat_map(|&id| std::iter::repeat_n(id as f32 + 0.5, 64)).collect();
            let got = text(&model, &GenerateRequest::new("one three fifteen")).unwrap();
            assert_eq!(
                got,
                format!(
                    "[n={} fnv={}|fnv={}|{}]",
                    ids.len(),
                    hex(fnv1a(&i32_bytes(&ids))),
                    hex(fnv1a(&f32_bytes(&embedded))),
                    ids.len()
                )
            );
        }
        _ => {
            let e = Model::open(&c).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotSupported, "{e}");
        }
    }
    c.isolated = true;
    c.host_path = Some(env!("CARGO_BIN_EXE_rkl-host").into());
    assert_eq!(Model::open(&c).unwrap_err().kind(), ErrorKind::NotSupported, "isolation cannot call back");
}
