//! Many threads, several models: calls are serialised per runtime, never
//! interleave, never deadlock.

mod common;

use common::*;
use rkl::{ErrorKind, FinishReason, GenerateRequest, Model};
use std::ops::ControlFlow;
use std::thread;

#[test]
fn eight_threads_on_two_models_never_interleave() {
    let reply = "{prompt}: Grüße, 世界 🎈 ok";
    let a = open("conc-a", &[&format!("reply = A {reply}"), "waiting = repeat"]);
    let b = open("conc-b", &[&format!("reply = B {reply}"), "callback_thread = foreign"]);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || {
                for i in 0..40 {
                    let (model, tag) = if (t + i) % 2 == 0 { (&a, "A") } else { (&b, "B") };
                    let prompt = format!("t{t}-i{i}");
                    let mut text = String::new();
                    let stats = model
                        .generate(&GenerateRequest::new(prompt.clone()), |c| {
                            text.push_str(c);
                            ControlFlow::Continue(())
                        })
                        .unwrap();
                    assert_eq!(stats.finish, FinishReason::End);
                    assert_eq!(text, format!("{tag} {}", reply.replace("{prompt}", &prompt)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let [violations, _, runs, _] = sim_stats(&sim_library(""));
    assert_eq!(violations, 0, "two calls were inside the runtime at once");
    assert!(runs >= 320);
}

#[test]
fn a_nested_generate_in_a_callback_is_refused_not_deadlocked() {
    let model = open("nested", &["reply = {prompt} with a few words more"]);
    let inner = model.clone();
    let mut nested = Vec::new();
    let stats = model
        .generate(&GenerateRequest::new("outer"), |_| {
            nested.push(inner.generate(&GenerateRequest::new("inner"), |_| ControlFlow::Continue(())).map(|_| ()));
            nested.push(inner.clear_history(false));
            nested.push(inner.close());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(stats.finish, FinishReason::End);
    assert!(!nested.is_empty());
    for r in nested {
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Reentrant);
    }
    // A model of another runtime may be used from inside the callback.
    let copy = temp_dir("nested-copy").join("librkllmrt.so");
    std::fs::copy(sim_library(""), &copy).unwrap();
    let mut cfg = config(&model_file("nested-other", &["reply = other"]));
    cfg.runtime_path = Some(copy);
    let other = Model::open(&cfg).unwrap();
    let mut inner_text = String::new();
    model
        .generate(&GenerateRequest::new("outer"), |_| {
            if inner_text.is_empty() {
                other
                    .generate(&GenerateRequest::new("x"), |c| {
                        inner_text.push_str(c);
                        ControlFlow::Continue(())
                    })
                    .unwrap();
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(inner_text, "other");
}

#[test]
fn opening_and_closing_while_others_generate() {
    let base = open("churn-base", &["reply = steady {prompt}"]);
    let worker = {
        let base = base.clone();
        thread::spawn(move || {
            for i in 0..100 {
                let mut text = String::new();
                base.generate(&GenerateRequest::new(i.to_string()), |c| {
                    text.push_str(c);
                    ControlFlow::Continue(())
                })
                .unwrap();
                assert_eq!(text, format!("steady {i}"));
            }
        })
    };
    for _ in 0..20 {
        let m = open("churn", &["reply = brief"]);
        m.generate(&GenerateRequest::new("x"), |_| ControlFlow::Continue(())).unwrap();
        m.close().unwrap();
    }
    worker.join().unwrap();
}
