//! Load on loopback: 32 concurrent streaming clients x 20 requests on one
//! model, every reply checked to the byte, the server's RSS measured, while
//! a second model crashes mid-reply (SIGSEGV in its worker) now and then:
//! each crashing request fails cleanly and the next one on that model
//! succeeds after its worker restarts; the load on the first model loses
//! nothing.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

const CLIENTS: usize = 32;
const REQUESTS: usize = 20;

#[test]
fn thirty_two_streaming_clients_and_a_crashing_model() {
    let dir = temp_dir("load");
    let m = model(&dir, "m", &["reply = Reply to {prompt}: done."]);
    // Crashes before its 12th token: a long reply crashes, a short one not.
    let crashy = model(&dir, "crashy", &["reply = {prompt}", "fault = segv@token:12"]);
    let s = Arc::new(Server::start(&dir, &[m.to_str().unwrap(), crashy.to_str().unwrap(), "--max-queue", "64"], &[]));

    // Warm up, then take the RSS baseline.
    for i in 0..40 {
        let (text, ..) = s.post("/v1/chat/completions", &chat("m", &format!("warm {i}"), true)).stream_reply();
        assert_eq!(text, format!("Reply to warm {i}: done."));
    }
    let rss_before = s.rss_kib();
    let started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let crasher = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::SeqCst) && rounds < 3 {
                rounds += 1;
                // Streaming: the answer began, so the failure is an error event
                // and the stream ends without [DONE].
                let r = s.post("/v1/chat/completions", &chat("crashy", "a long prompt that crashes the worker", true));
                assert_eq!(r.status, 200);
                let (text, finish, done, error) = r.stream_reply();
                let error = error.expect("an error event");
                assert_eq!(error["error"]["code"], "runtime_crashed", "{error}");
                assert!(error["error"]["message"].as_str().unwrap().contains("SIGSEGV"), "{error}");
                assert!(!done && finish.is_none());
                assert!(
                    "a long prompt that crashes the worker".starts_with(&text),
                    "text before the crash is kept: {text:?}"
                );
                // Not streaming: 503 with the reason.
                let r = s.post("/v1/chat/completions", &chat("crashy", "another long prompt, crashing again", false));
                assert_eq!(r.status, 503, "{}", r.body_text());
                assert_eq!(r.json()["error"]["code"], "runtime_crashed");
                // The next request succeeds on a new worker.
                let v = s.post("/v1/chat/completions", &chat("crashy", "short", false)).json();
                assert_eq!(v["choices"][0]["message"]["content"], "short", "{v}");
            }
            rounds
        })
    };

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let s = s.clone();
            std::thread::spawn(move || {
                for r in 0..REQUESTS {
                    let user = format!("client {c} request {r} ünïcödé");
                    let resp = s.post("/v1/chat/completions", &chat("m", &user, true));
                    assert_eq!(resp.status, 200, "{}", resp.body_text());
                    let (text, finish, done, error) = resp.stream_reply();
                    assert_eq!(error, None);
                    assert_eq!(text, format!("Reply to {user}: done."));
                    assert_eq!((finish.as_deref(), done), (Some("stop"), true));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    stop.store(true, Ordering::SeqCst);
    let crashes = crasher.join().expect("the crashing model's checks failed");
    let elapsed = started.elapsed();
    let rss_after = s.rss_kib();

    let ok = s.metric("rkl_requests_total{model=\"m\",outcome=\"ok\"}");
    assert_eq!(ok, (40 + CLIENTS * REQUESTS) as f64, "none lost");
    assert_eq!(s.metric("rkl_requests_total{model=\"m\",outcome=\"failed\"}"), 0.0);
    assert_eq!(s.metric("rkl_worker_restarts_total{model=\"m\"}"), 0.0);
    assert_eq!(s.metric("rkl_worker_restarts_total{model=\"crashy\"}"), (2 * crashes) as f64);
    assert_eq!(s.metric("rkl_queue_depth{model=\"m\"}"), 0.0);
    let growth = rss_after as i64 - rss_before as i64;
    eprintln!(
        "load: {} streamed replies in {:.2} s ({:.0}/s), {crashes} crash rounds; server RSS {} KiB -> {} KiB ({growth:+} KiB)",
        CLIENTS * REQUESTS,
        elapsed.as_secs_f64(),
        (CLIENTS * REQUESTS) as f64 / elapsed.as_secs_f64(),
        rss_before,
        rss_after
    );
    // 32 connection threads' stacks come and go; the heap must not grow with
    // the number of requests.
    assert!(growth < 8 * 1024, "server RSS grew by {growth} KiB over {} requests", CLIENTS * REQUESTS);
}
