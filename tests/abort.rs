//! Stopping generations: abort from another thread, from the callback, before
//! they start, by closing the model, and by dropping a stream — in both
//! modes (each test runs in-process and, as `isolated_*`, in isolation mode).

mod common;

use common::*;
use rkl::{ErrorKind, FinishReason, GenerateRequest, Model, StreamEvent};
use std::ops::ControlFlow;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    InProcess,
    Isolated,
}

/// Opens a simulator model of `lines` in `mode`.
fn open_in(mode: Mode, tag: &str, lines: &[&str]) -> Model {
    let mut c = config(&model_file(tag, lines));
    if mode == Mode::Isolated {
        c.isolated = true;
        c.host_path = Some(env!("CARGO_BIN_EXE_rkl-host").into());
    }
    Model::open(&c).expect("open the simulated model")
}

/// Runs a test body, taking the mode, once per mode.
macro_rules! in_both_modes {
    ($($in_process:ident, $isolated:ident => $body:ident;)+) => {$(
        #[test]
        fn $in_process() {
            $body(Mode::InProcess);
        }

        #[test]
        fn $isolated() {
            $body(Mode::Isolated);
        }
    )+};
}

in_both_modes! {
    abort_from_another_thread_stops_mid_reply, isolated_abort_from_another_thread_stops_mid_reply => from_another_thread;
    the_callback_can_stop_or_abort, isolated_the_callback_can_stop_or_abort => from_the_callback;
    an_abort_reaches_queued_generations_before_they_start, isolated_an_abort_reaches_queued_generations_before_they_start => queued;
    closing_a_model_stops_a_generation_on_another_thread, isolated_closing_a_model_stops_a_generation_on_another_thread => by_closing;
    dropping_a_stream_mid_way_aborts_it, isolated_dropping_a_stream_mid_way_aborts_it => by_dropping;
    a_stream_aborter_works_from_another_thread_while_the_owner_waits, isolated_a_stream_aborter_works_from_another_thread_while_the_owner_waits => by_aborter;
    no_text_is_delivered_after_an_abort_returns, isolated_no_text_is_delivered_after_an_abort_returns => no_text_after_abort;
    no_text_is_delivered_after_any_kind_of_stop_returns, isolated_no_text_is_delivered_after_any_kind_of_stop_returns => no_text_after_any_stop;
}

/// A model whose reply takes about `tokens x 20 ms` of real time.
fn slow_model(mode: Mode, tag: &str) -> Model {
    open_in(
        mode,
        tag,
        &[
            "reply = {prompt} and on and on and on and on and on and on and on and on and on and on and on and on",
            "time_scale = 1",
            "prefill_us_per_token = 100",
            "decode_us_per_token = 20000",
        ],
    )
}

fn from_another_thread(mode: Mode) {
    let model = slow_model(mode, "abort-thread");
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

fn from_the_callback(mode: Mode) {
    let model = slow_model(mode, "abort-callback");
    let mut chunks = 0;
    let stats = model
        .generate(&GenerateRequest::new("go"), |_| {
            chunks += 1;
            if chunks == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
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

fn queued(mode: Mode) {
    let model = slow_model(mode, "abort-queued");
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

fn by_closing(mode: Mode) {
    let model = slow_model(mode, "abort-close");
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

fn by_dropping(mode: Mode) {
    let model = slow_model(mode, "abort-drop");
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

fn by_aborter(mode: Mode) {
    let model = slow_model(mode, "abort-aborter");
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

fn no_text_after_abort(mode: Mode) {
    // With zero-cost tokens the runtime runs far ahead of the caller; text
    // it already queued must not reach the callback once abort returned.
    let model = open_in(mode, "abort-queued-text", &[&format!("reply = {}", "word ".repeat(3000))]);
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
    assert_eq!(after_abort, 0, "{mode:?}: chunks delivered after abort returned");
}

/// A model whose zero-cost reply runs far ahead of the caller: thousands of
/// chunks are queued (in isolation mode, already sent over the socket) when
/// the caller stops it.
fn flooding_model(mode: Mode, tag: &str) -> Model {
    open_in(mode, tag, &[&format!("reply = {}", "word ".repeat(3000))])
}

/// Reads `stream` to its end after a stop returned: no text may come.
fn end_without_text(mode: Mode, how: &str, stream: &mut rkl::Stream) -> rkl::Stats {
    match stream.next_event(Some(Duration::from_secs(10))) {
        Ok(StreamEvent::Finished(stats)) => stats,
        Ok(StreamEvent::Text(t)) => panic!("{mode:?}, {how}: text {t:?} delivered after the stop returned"),
        Ok(StreamEvent::Timeout) => panic!("{mode:?}, {how}: no end within 10 s"),
        Err(e) => panic!("{mode:?}, {how}: {e}"),
    }
}

/// Takes the first chunk of a stream.
fn first_text(stream: &mut rkl::Stream) {
    loop {
        if let StreamEvent::Text(_) = stream.next_event(Some(Duration::from_secs(10))).unwrap() {
            return;
        }
    }
}

fn no_text_after_any_stop(mode: Mode) {
    let model = flooding_model(mode, "abort-any-stop");
    // Stream::abort, from the reading thread.
    let mut stream = model.stream(&GenerateRequest::new("a")).unwrap();
    first_text(&mut stream);
    stream.abort();
    assert_eq!(end_without_text(mode, "Stream::abort", &mut stream).finish, FinishReason::Aborted);
    // A StreamAborter on another thread, done before reading on.
    let mut stream = model.stream(&GenerateRequest::new("b")).unwrap();
    first_text(&mut stream);
    let aborter = stream.aborter();
    thread::spawn(move || aborter.abort()).join().unwrap();
    assert_eq!(end_without_text(mode, "StreamAborter", &mut stream).finish, FinishReason::Aborted);
    // Model::abort from another thread.
    let mut stream = model.stream(&GenerateRequest::new("c")).unwrap();
    first_text(&mut stream);
    let other = model.clone();
    thread::spawn(move || other.abort()).join().unwrap();
    assert_eq!(end_without_text(mode, "Model::abort", &mut stream).finish, FinishReason::Aborted);
    // The model works on, with every word.
    let mut text = String::new();
    let stats = model
        .generate(&GenerateRequest::new("d"), |t| {
            text.push_str(t);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!((stats.finish, text.matches("word").count()), (FinishReason::End, 3000), "{mode:?}");
    // Closing the model from another thread.
    let mut stream = model.stream(&GenerateRequest::new("e")).unwrap();
    first_text(&mut stream);
    let other = model.clone();
    thread::spawn(move || other.close().unwrap()).join().unwrap();
    assert_eq!(end_without_text(mode, "Model::close", &mut stream).finish, FinishReason::Aborted);
    if mode == Mode::Isolated {
        // A restart ends a generation as an abort does.
        let model = flooding_model(mode, "abort-any-stop-restart");
        let mut stream = model.stream(&GenerateRequest::new("f")).unwrap();
        first_text(&mut stream);
        model.restart().unwrap();
        assert_eq!(end_without_text(mode, "Model::restart", &mut stream).finish, FinishReason::Aborted);
        assert_eq!(model.kv_cache_tokens().unwrap(), 0);
    }
}
