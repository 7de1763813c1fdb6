//! Stopping generations: abort from another thread, from the callback, before
//! they start, by closing the model, and by dropping a stream.

mod common;

use common::*;
use rkl::{ErrorKind, FinishReason, GenerateRequest, Model, StreamEvent};
use std::ops::ControlFlow;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A model whose reply takes about `tokens x 20 ms` of real time.
fn slow_model(tag: &str) -> Model {
    open(
        tag,
        &[
            "reply = {prompt} and on and on and on and on and on and on and on and on and on and on and on and on",
            "time_scale = 1",
            "prefill_us_per_token = 100",
            "decode_us_per_token = 20000",
        ],
    )
}

#[test]
fn abort_from_another_thread_stops_mid_reply() {
    let model = slow_model("abort-thread");
    let (first_chunk, seen) = mpsc::channel();
    let worker = {
        let model = model.clone();
        thread::spawn(move || {
            let mut sent = false;
            model.generate(&GenerateRequest::new("go"), |_| {
                if !sent {
                    first_chunk.send(()).unwrap();
                    sent = true;
                }
                ControlFlow::Continue(())
            })
        })
    };
    seen.recv_timeout(Duration::from_secs(10)).expect("a first chunk");
    let asked = Instant::now();
    model.abort();
    let stats = worker.join().unwrap().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(1), "abort took {:?}", asked.elapsed());
    assert_eq!(stats.finish, FinishReason::Aborted);
    assert!(stats.tokens < 30, "{stats:?}");
    // The model is usable afterwards.
    let stats = model.generate(&GenerateRequest::new("again"), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(stats.finish, FinishReason::End);
}

#[test]
fn the_callback_can_stop_or_abort() {
    let model = slow_model("abort-callback");
    let mut chunks = 0;
    let stats = model
        .generate(&GenerateRequest::new("go"), |_| {
            chunks += 1;
            if chunks == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap();
    assert_eq!(stats.finish, FinishReason::Stopped);
    assert_eq!(chunks, 2, "no chunk is delivered after the callback said stop");

    let inner = model.clone();
    let stats = model
        .generate(&GenerateRequest::new("go"), |_| {
            inner.abort();
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(stats.finish, FinishReason::Aborted);
}

#[test]
fn an_abort_reaches_queued_generations_before_they_start() {
    let model = slow_model("abort-queued");
    let first = model.stream(&GenerateRequest::new("one")).unwrap();
    let mut second = model.stream(&GenerateRequest::new("two")).unwrap();
    model.abort();
    drop(first);
    let stats = loop {
        if let StreamEvent::Finished(s) = second.next_event(Some(Duration::from_secs(10))).unwrap() {
            break s;
        }
    };
    assert_eq!(stats.finish, FinishReason::Aborted);
    assert_eq!(stats.tokens, 0);
}

#[test]
fn closing_a_model_stops_a_generation_on_another_thread() {
    let model = slow_model("abort-close");
    let (first_chunk, seen) = mpsc::channel();
    let worker = {
        let model = model.clone();
        thread::spawn(move || {
            model.generate(&GenerateRequest::new("go"), |_| {
                let _ = first_chunk.send(());
                ControlFlow::Continue(())
            })
        })
    };
    seen.recv_timeout(Duration::from_secs(10)).unwrap();
    model.close().unwrap();
    let stats = worker.join().unwrap().unwrap();
    assert_eq!(stats.finish, FinishReason::Aborted);
    let err = model.generate(&GenerateRequest::new("x"), |_| ControlFlow::Continue(())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    model.close().unwrap();
}

#[test]
fn dropping_a_stream_mid_way_aborts_it() {
    let model = slow_model("abort-drop");
    let mut stream = model.stream(&GenerateRequest::new("go")).unwrap();
    loop {
        if let StreamEvent::Text(_) = stream.next_event(Some(Duration::from_secs(10))).unwrap() {
            break;
        }
    }
    let dropped = Instant::now();
    drop(stream);
    // The next request runs as soon as the dropped one stopped.
    let mut req = GenerateRequest::new("next");
    req.max_new_tokens = Some(1);
    let stats = model.generate(&req, |_| ControlFlow::Continue(())).unwrap();
    assert!(dropped.elapsed() < Duration::from_secs(1), "{:?}", dropped.elapsed());
    assert_eq!(stats.tokens, 1);
}

#[test]
fn a_stream_aborter_works_from_another_thread_while_the_owner_waits() {
    let model = slow_model("abort-aborter");
    let mut stream = model.stream(&GenerateRequest::new("go")).unwrap();
    let aborter = stream.aborter();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        aborter.abort();
        aborter
    });
    let stats = loop {
        if let StreamEvent::Finished(s) = stream.next_event(Some(Duration::from_secs(10))).unwrap() {
            break s;
        }
    };
    assert_eq!(stats.finish, FinishReason::Aborted);
    stopper.join().unwrap().abort(); // after the end: harmless
}

#[test]
fn no_text_is_delivered_after_an_abort_returns() {
    // With zero-cost tokens the runtime runs far ahead of the caller; text
    // it already queued must not reach the callback once abort returned.
    let model = open("abort-queued-text", &[&format!("reply = {}", "word ".repeat(3000))]);
    let mut after_abort = 0;
    let mut aborted = false;
    let inner = model.clone();
    let stats = model
        .generate(&GenerateRequest::new("go"), |_| {
            if aborted {
                after_abort += 1;
            } else {
                inner.abort();
                aborted = true;
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(stats.finish, FinishReason::Aborted);
    assert_eq!(after_abort, 0, "chunks delivered after abort returned");
}
