//! Bad input gets a clear error before the runtime is called; runtime
//! failures and lies come back as errors, not crashes.

mod common;

use common::*;
use rkl::{ErrorKind, FinishReason, GenerateRequest, Model, OpenConfig, StreamEvent};
use std::ops::ControlFlow;
use std::time::Duration;

fn open_err(cfg: &OpenConfig) -> rkl::Error {
    Model::open(cfg).expect_err("open must fail")
}

#[test]
fn bad_model_paths() {
    let e = open_err(&config("".as_ref()));
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("empty"), "{e}");

    let e = open_err(&config("/nonexistent/model.rkllm".as_ref()));
    assert_eq!(e.kind(), ErrorKind::ModelNotFound);
    assert!(e.message().contains("/nonexistent/model.rkllm"), "{e}");

    let dir = temp_dir("dir-model");
    let e = open_err(&config(&dir));
    assert_eq!(e.kind(), ErrorKind::ModelNotFound);
    assert!(e.message().contains("directory"), "{e}");

    let e = open_err(&config("model\0.rkllm".as_ref()));
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("NUL"), "{e}");
}

#[test]
fn a_file_that_is_not_a_model_fails_in_the_runtime() {
    let path = temp_dir("foreign").join("weights.rkllm");
    std::fs::write(&path, b"\x7fELF not a model").unwrap();
    let e = open_err(&config(&path));
    assert_eq!(e.kind(), ErrorKind::ModelLoadFailed);
    assert!(e.message().contains("weights.rkllm"), "{e}");
}

#[test]
fn out_of_range_sampling_values_are_refused_by_name() {
    let path = model_file("ranges", &[]);
    let mut cfg = config(&path);
    cfg.params.top_p = Some(2.0);
    assert!(open_err(&cfg).message().contains("top_p"));
    let mut cfg = config(&path);
    cfg.params.temperature = Some(f32::INFINITY);
    assert!(open_err(&cfg).message().contains("temperature"));
    let mut cfg = config(&path);
    cfg.params.max_context_len = Some(-5);
    assert_eq!(open_err(&cfg).kind(), ErrorKind::InvalidArgument);
}

#[test]
fn bad_request_strings() {
    let model = open("bad-request", &[]);
    let e = model.generate(&GenerateRequest::new("a\0b"), |_| ControlFlow::Continue(())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("prompt contains a NUL byte at offset 1"), "{e}");

    let e = rkl::checked_text("prompt", b"caf\xc3").unwrap_err();
    assert!(e.message().contains("not valid UTF-8"), "{e}");

    let mut req = GenerateRequest::new("x");
    req.max_new_tokens = Some(0);
    assert_eq!(model.generate(&req, |_| ControlFlow::Continue(())).unwrap_err().kind(), ErrorKind::InvalidArgument);

    let e = model.set_chat_template("sys\0", "", "").unwrap_err();
    assert!(e.message().contains("system prompt"), "{e}");
    let e = model.load_lora("/nonexistent/lora.bin".as_ref(), "x", 1.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ModelNotFound);
    let e = model.load_lora("/nonexistent/lora.bin".as_ref(), "", 1.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);

    // Nothing above reached the runtime or broke the model.
    let stats = model.generate(&GenerateRequest::new("fine"), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(stats.finish, FinishReason::End);
}

#[test]
fn init_that_fails_or_lies_is_refused() {
    let e = open_err(&config(&model_file("init-error", &["fault = error@init"])));
    assert_eq!(e.kind(), ErrorKind::ModelLoadFailed);

    let e = open_err(&config(&model_file("init-broken", &["fault = broken@init"])));
    assert_eq!(e.kind(), ErrorKind::ModelLoadFailed);
    assert!(e.message().contains("does not work"), "{e}");
}

#[test]
fn a_runtime_error_mid_generation_is_an_error_and_recorded_in_the_stream() {
    let model = open("run-error", &["reply = one two three four five six", "fault = error@token:3"]);
    let mut text = String::new();
    let e = model
        .generate(&GenerateRequest::new("x"), |c| {
            text.push_str(c);
            ControlFlow::Continue(())
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RuntimeFailed);
    assert!(e.message().contains("runtime reported an error"), "{e}");
    assert!(!text.is_empty(), "tokens before the failure were delivered");

    let mut stream = model.stream(&GenerateRequest::new("x")).unwrap();
    let err = loop {
        match stream.next_event(Some(Duration::from_secs(10))) {
            Ok(StreamEvent::Text(_)) => {}
            Ok(other) => panic!("expected an error, got {other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::RuntimeFailed);
    assert_eq!(stream.stats().unwrap().finish, FinishReason::Error);
    assert!(matches!(stream.next_event(None), Ok(StreamEvent::Finished(s)) if s.finish == FinishReason::Error));
}

#[test]
fn a_request_naming_a_lora_never_loaded_is_refused_before_the_runtime() {
    for isolated in [false, true] {
        let path = model_file("lora-unknown", &["reply = [{lora}]"]);
        let mut cfg = config(&path);
        cfg.isolated = isolated;
        cfg.host_path = isolated.then(|| env!("CARGO_BIN_EXE_rkl-host").into());
        let model = Model::open(&cfg).unwrap();
        let runs_before = sim_stats(&sim_library(""))[2];
        let mut request = GenerateRequest::new("x");
        request.lora = Some("style".into());
        let e = model.generate(&request, |_| ControlFlow::Continue(())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "isolated {isolated}: {e}");
        assert!(e.message().contains("'style' was never loaded"), "{e}");
        if !isolated {
            assert_eq!(sim_stats(&sim_library(""))[2], runs_before, "the runtime saw the run");
        }
        let adapter = temp_dir("lora-unknown").join("style.bin");
        std::fs::write(&adapter, b"lora").unwrap();
        model.load_lora(&adapter, "style", 1.0).unwrap();
        let mut text = String::new();
        model
            .generate(&request, |c| {
                text.push_str(c);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert!(text.contains("style"), "{text}");
    }
}

#[test]
fn open_parameters_that_contradict_each_other_are_refused() {
    let path = model_file("param-contradictions", &[]);
    type Setter = fn(&mut rkl::ModelParams);
    let cases: [(&str, Setter); 4] = [
        ("n_keep", |p| p.n_keep = Some(512)),
        ("n_keep", |p| {
            p.n_keep = Some(256);
            p.max_context_len = Some(256)
        }),
        ("enabled_cpus_mask", |p| p.enabled_cpus_mask = Some(0x1_00)),
        ("enabled_cpus_mask", |p| {
            p.enabled_cpus_mask = Some(0x0f);
            p.enabled_cpus_num = Some(2)
        }),
    ];
    for (field, set) in cases {
        let mut cfg = config(&path);
        set(&mut cfg.params);
        let e = open_err(&cfg);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.message().starts_with(field), "{e}");
    }
}
