//! Generation end to end through the simulator: exact text, statistics,
//! history, templates, limits.

mod common;

use common::*;
use rkl::{FinishReason, GenerateRequest, Model, Role, Step, StreamEvent};
use std::ops::ControlFlow;
use std::time::Duration;

fn collect(model: &Model, request: &GenerateRequest) -> (String, rkl::Stats) {
    let mut text = String::new();
    let mut chunks = Vec::new();
    let stats = model
        .generate(request, |chunk| {
            assert!(!chunk.is_empty(), "empty chunks are never delivered");
            chunks.push(chunk.to_string());
            text.push_str(chunk);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(chunks.len() > 1, "the reply arrives in several chunks");
    (text, stats)
}

fn reply(prompt: &str) -> String {
    RICH_REPLY.replace("{prompt}", prompt)
}

#[test]
fn every_waiting_behaviour_gives_the_exact_text() {
    for (mode, thread) in
        [("carry", "caller"), ("held", "caller"), ("repeat", "caller"), ("carry", "foreign"), ("repeat", "foreign")]
    {
        let model = open(
            "waiting",
            &[&format!("reply = {RICH_REPLY}"), &format!("waiting = {mode}"), &format!("callback_thread = {thread}")],
        );
        let prompt = "naïve 日本 ✓";
        let (text, stats) = collect(&model, &GenerateRequest::new(prompt));
        assert_eq!(text, reply(prompt), "waiting = {mode}, callbacks on {thread} thread");
        assert_eq!(stats.finish, FinishReason::End);
    }
}

#[test]
fn statistics_come_from_the_runtime_and_from_rkl() {
    let model = open(
        "stats",
        &[&format!("reply = {RICH_REPLY}"), "prefill_us_per_token = 5000", "decode_us_per_token = 30000"],
    );
    let prompt = "How fast is the NPU?";
    let (text, stats) = collect(&model, &GenerateRequest::new(prompt));
    assert_eq!(text, reply(prompt));
    let prefill = prompt_tokens(&default_prefill(prompt));
    assert_eq!(stats.prefill_tokens, prefill);
    assert!((stats.prefill_ms - prefill as f64 * 5.0).abs() < 0.01, "{stats:?}");
    assert_eq!(stats.decode_tokens, stats.tokens, "every callback is one token");
    assert!((stats.decode_ms - stats.tokens as f64 * 30.0).abs() < 0.01, "{stats:?}");
    assert!(stats.ttft_ms > 0.0 && stats.ttft_ms <= stats.total_ms, "{stats:?}");
    assert!(stats.tokens as usize > reply(prompt).chars().count() / 3, "{stats:?}");
}

#[test]
fn the_pull_stream_gives_the_same_text() {
    let model = open("stream", &[&format!("reply = {RICH_REPLY}"), "waiting = held"]);
    let prompt = "stream ⛵";
    let mut stream = model.stream(&GenerateRequest::new(prompt)).unwrap();
    let mut text = String::new();
    let stats = loop {
        match stream.next_event(Some(Duration::from_secs(10))).unwrap() {
            StreamEvent::Text(t) => text.push_str(&t),
            StreamEvent::Timeout => panic!("no progress in 10 s"),
            StreamEvent::Finished(stats) => break stats,
        }
    };
    assert_eq!(text, reply(prompt));
    assert_eq!(stats.finish, FinishReason::End);
    assert_eq!(stream.stats(), Some(stats));
    assert_eq!(stream.next_event(None).unwrap(), StreamEvent::Finished(stats), "finished stays finished");
    // The iterator form.
    let text: String = model.stream(&GenerateRequest::new(prompt)).unwrap().map(|c| c.unwrap()).collect();
    assert_eq!(text, reply(prompt));
    // next_into appends to what the buffer holds, one chunk per call.
    let mut stream = model.stream(&GenerateRequest::new(prompt)).unwrap();
    let mut text = String::from("> ");
    let mut chunks = 0;
    let stats = loop {
        let before = text.len();
        match stream.next_into(Some(Duration::from_secs(10)), &mut text).unwrap() {
            Step::Text => {
                assert!(text.len() > before, "a Text step appends something");
                chunks += 1;
            }
            Step::Timeout => panic!("no progress in 10 s"),
            Step::Finished(stats) => {
                assert_eq!(text.len(), before, "the end appends nothing");
                break stats;
            }
        }
    };
    assert_eq!(text, format!("> {}", reply(prompt)));
    assert!(chunks > 1, "the reply arrives in several chunks");
    assert_eq!(stats.finish, FinishReason::End);
}

#[test]
fn a_stream_times_out_while_the_runtime_is_slow() {
    let model = open("slow", &["reply = slow", "time_scale = 1", "prefill_us_per_token = 100000"]);
    let mut stream = model.stream(&GenerateRequest::new("x")).unwrap();
    assert_eq!(stream.next_event(Some(Duration::from_millis(1))).unwrap(), StreamEvent::Timeout);
    let text: String = stream.by_ref().map(|c| c.unwrap()).collect();
    assert_eq!(text, "slow");
}

#[test]
fn history_is_kept_only_when_asked_and_can_be_cleared() {
    let model = open("history", &["reply = turn {turn}"]);
    let mut keep = GenerateRequest::new("hi");
    keep.keep_history = true;
    let text = |req: &GenerateRequest| {
        let mut t = String::new();
        model
            .generate(req, |c| {
                t.push_str(c);
                ControlFlow::Continue(())
            })
            .unwrap();
        t
    };
    assert_eq!(text(&keep), "turn 1");
    assert_eq!(text(&keep), "turn 2");
    assert!(model.kv_cache_tokens().unwrap() > 0);
    assert_eq!(text(&GenerateRequest::new("hi")), "turn 3", "a turn without keep_history sees the history");
    assert_eq!(text(&keep), "turn 3", "but does not stay in it");
    model.clear_history(false).unwrap();
    assert_eq!(model.kv_cache_tokens().unwrap(), 0);
    assert_eq!(text(&keep), "turn 1");
}

#[test]
fn templates_tools_role_thinking_and_lora_reach_the_runtime() {
    let model = open("template", &["reply = [{system}|{role}|{tools}|{lora}] {prompt}"]);
    let run = |req: &GenerateRequest| {
        let mut t = String::new();
        model
            .generate(req, |c| {
                t.push_str(c);
                ControlFlow::Continue(())
            })
            .unwrap();
        t
    };
    model.set_chat_template("Tu es un assistant ☕", "<u>", "</u>").unwrap();
    let mut req = GenerateRequest::new("q");
    assert_eq!(run(&req), "[Tu es un assistant ☕|user||] q");
    let stats = model.generate(&req, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(stats.prefill_tokens, prompt_tokens("Tu es un assistant ☕<u>q</u>"));

    model.set_function_tools("sys", r#"[{"name":"get_weather"}]"#, "<tool_response>").unwrap();
    req.role = Role::Tool;
    assert_eq!(run(&req), r#"[Tu es un assistant ☕|tool|[{"name":"get_weather"}]|] q"#);

    req.role = Role::User;
    req.enable_thinking = true;
    assert!(run(&req).starts_with("<think>sim</think>["));

    let adapter = temp_dir("lora").join("adapter.bin");
    std::fs::write(&adapter, b"lora").unwrap();
    model.load_lora(&adapter, "style", 0.5).unwrap();
    req.enable_thinking = false;
    req.lora = Some("style".into());
    assert!(run(&req).contains("|style]"));
}

#[test]
fn a_request_token_limit_stops_on_whole_characters() {
    let model = open("limit", &[&format!("reply = {RICH_REPLY}")]);
    let full = reply("p");
    let total = model.generate(&GenerateRequest::new("p"), |_| ControlFlow::Continue(())).unwrap().tokens;
    for n in 1..total {
        let mut req = GenerateRequest::new("p");
        req.max_new_tokens = Some(n);
        let mut text = String::new();
        let stats = model
            .generate(&req, |c| {
                text.push_str(c);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(stats.finish, FinishReason::MaxTokens, "n = {n}");
        assert_eq!(stats.tokens, n);
        assert!(full.starts_with(&text), "n = {n}: {text:?} is not a prefix of the reply");
    }
    let mut req = GenerateRequest::new("p");
    req.max_new_tokens = Some(total + 1);
    let stats = model.generate(&req, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!((stats.finish, stats.tokens), (FinishReason::End, total), "a limit above the reply is not hit");
}

/// On 1.2, rkl enforces a request's limit with an abort of its own; a
/// runtime slow to stop makes that neither an aborted generation nor an
/// abort latency.
#[test]
fn a_token_limit_reached_on_a_slow_stopping_runtime_is_not_an_abort() {
    let model = open(
        "limit-slow-abort",
        &[&format!("reply = {RICH_REPLY}"), "slow_abort_ms = 200", "time_scale = 1", "decode_us_per_token = 20000"],
    );
    let mut req = GenerateRequest::new("p");
    req.max_new_tokens = Some(3);
    let stats = model.generate(&req, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!((stats.finish, stats.tokens), (FinishReason::MaxTokens, 3));
    assert_eq!(stats.abort_ms, 0.0, "{stats:?}");
}

#[test]
fn the_init_token_limit_applies_to_every_request() {
    let mut cfg = config(&model_file("init-limit", &[&format!("reply = {RICH_REPLY}")]));
    cfg.params.max_new_tokens = Some(5);
    let model = Model::open(&cfg).unwrap();
    let stats = model.generate(&GenerateRequest::new("p"), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(stats.tokens, 5);
    assert_eq!(stats.finish, FinishReason::MaxTokens);
}

#[test]
fn sampling_parameters_are_passed_in_the_right_places() {
    // The simulator refuses init when a field is out of its range, which is
    // what a value written at the wrong offset looks like.
    let mut cfg = config(&model_file("params", &[]));
    cfg.params.max_context_len = Some(4096);
    cfg.params.top_k = Some(1);
    cfg.params.top_p = Some(0.5);
    cfg.params.temperature = Some(0.0);
    cfg.params.repeat_penalty = Some(1.0);
    cfg.params.enabled_cpus_num = Some(2);
    cfg.params.embed_flash = Some(false);
    let model = Model::open(&cfg).unwrap();
    let stats = model.generate(&GenerateRequest::new("x"), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(stats.finish, FinishReason::End);
}

#[test]
fn a_prompt_beyond_the_context_is_a_runtime_error() {
    let mut cfg = config(&model_file("context", &[]));
    cfg.params.max_context_len = Some(16);
    let model = Model::open(&cfg).unwrap();
    let err = model.generate(&GenerateRequest::new("x".repeat(200)), |_| ControlFlow::Continue(())).unwrap_err();
    assert_eq!(err.kind(), rkl::ErrorKind::RuntimeFailed, "{err}");
    // The model still works afterwards.
    assert!(model.generate(&GenerateRequest::new("ok"), |_| ControlFlow::Continue(())).is_ok());
}
