//! `rkl serve` against the simulator, through a real socket: the OpenAI
//! endpoints (streaming and not), stop strings, token limits, sampling,
//! automatic caching, the cache endpoints, the limits and refusals, a client
//! that disconnects, and a crashing model next to a working one.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const REPLY: &str = "reply = You said: {prompt}. Bye now!";

#[test]
fn chat_and_completions_streaming_and_not() {
    let dir = temp_dir("basic");
    let m = model(&dir, "m", &[REPLY]);
    let s = Server::start(&dir, &[m.to_str().unwrap()], &[]);

    let r = s.post("/v1/chat/completions", &chat("m", "hello", false));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "You said: hello. Bye now!");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // The simulator: 25 characters in tokens of 1, 2, 3, ... characters.
    assert_eq!(v["usage"]["completion_tokens"], 13);
    // Prefilled "<user>hello</user><assistant>": 30 characters, 8 tokens.
    assert_eq!(v["usage"]["prompt_tokens"], 8);
    assert_eq!(v["usage"]["total_tokens"], 21);

    let r = s.post("/v1/chat/completions", &chat("m", "again", true));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let (text, finish, done, error) = r.stream_reply();
    assert_eq!(text, "You said: again. Bye now!");
    assert_eq!((finish.as_deref(), done, error), (Some("stop"), true, None));
    let events = r.events();
    let first: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert!(events.len() > 10, "one event per token: {events:?}");

    let r = s.post("/v1/completions", &json!({"model": "m", "prompt": "abc", "max_tokens": 3}));
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "You sa"); // 1 + 2 + 3 characters
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let r = s.post(
        "/v1/completions",
        &json!({"model": "m", "prompt": "xy", "stream": true, "stream_options": {"include_usage": true}}),
    );
    let (text, finish, done, _) = r.stream_reply();
    assert_eq!((text.as_str(), finish.as_deref(), done), ("You said: xy. Bye now!", Some("stop"), true));
    let usage: Vec<serde_json::Value> = r
        .events()
        .iter()
        .filter(|e| e.starts_with('{'))
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap())
        .filter(|v| v["choices"].as_array().is_some_and(|c| c.is_empty()))
        .collect();
    assert_eq!(usage.len(), 1, "include_usage sends one usage chunk");
    assert_eq!(usage[0]["usage"]["completion_tokens"], 12);

    let v = s.get("/v1/models").json();
    assert_eq!(v["data"][0]["id"], "m");
    assert_eq!(s.get("/v1/models/m").json()["id"], "m");
    let h = s.get("/health").json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["models"][0]["isolated"], true, "isolation is the default");
    assert!(h["models"][0]["worker_pid"].as_u64().is_some());
    assert_eq!(s.metric("rkl_requests_total{model=\"m\",outcome=\"ok\"}"), 4.0);
    assert_eq!(s.metric("rkl_completion_tokens_total{model=\"m\"}"), 13.0 + 13.0 + 3.0 + 12.0);
    assert_eq!(s.metric("rkl_ttft_seconds_count{model=\"m\"}"), 4.0);
    assert_eq!(s.metric("rkl_queue_depth{model=\"m\"}"), 0.0);
}

#[test]
fn stop_strings_cut_the_text_and_end_the_generation() {
    let dir = temp_dir("stop");
    let m = model(&dir, "m", &["reply = one two three four five six seven eight nine ten"]);
    let s = Server::start(&dir, &[m.to_str().unwrap()], &[]);
    let mut body = chat("m", "x", false);
    body["stop"] = json!(["four", "nine"]);
    let v = s.post("/v1/chat/completions", &body).json();
    assert_eq!(v["choices"][0]["message"]["content"], "one two three ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // The generation was aborted there: far fewer tokens than the reply's 33.
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() < 15, "{v}");
    body["stream"] = json!(true);
    body["stop"] = json!("ee ");
    let (text, finish, done, _) = s.post("/v1/chat/completions", &body).stream_reply();
    assert_eq!((text.as_str(), finish.as_deref(), done), ("one two thr", Some("stop"), true));
    // A stop string that never comes changes nothing.
    body["stop"] = json!(["zzz"]);
    let (text, ..) = s.post("/v1/chat/completions", &body).stream_reply();
    assert_eq!(text, "one two three four five six seven eight nine ten");
}

#[test]
fn sampling_is_passed_on_1_3_and_refused_clearly_on_1_2() {
    let dir = temp_dir("sampling");
    let m = model(&dir, "m", &["reply = [{sampling}]"]);
    let s = Server::start(&dir, &[m.to_str().unwrap()], &[("RKLLM_SIM_ABI", "1.3")]);
    let mut body = chat("m", "x", false);
    let v = s.post("/v1/chat/completions", &body).json();
    assert_eq!(v["choices"][0]["message"]["content"], "[init]");
    body["temperature"] = json!(0.5);
    body["top_k"] = json!(7);
    let v = s.post("/v1/chat/completions", &body).json();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(text.contains("top_k=7 ") && text.contains("temperature=0.5 "), "{text}");
    body["temperature"] = json!(-1);
    let r = s.post("/v1/chat/completions", &body);
    assert_eq!(r.status, 400, "{}", r.body_text());
    body["temperature"] = json!("warm");
    let r = s.post("/v1/chat/completions", &body);
    assert_eq!((r.status, r.json()["error"]["param"].as_str()), (400, Some("temperature")));
    drop(s);

    let s = Server::start(&dir, &[m.to_str().unwrap()], &[("RKLLM_SIM_ABI", "1.2")]);
    body["temperature"] = json!(0.5);
    for stream in [false, true] {
        body["stream"] = json!(stream);
        let r = s.post("/v1/chat/completions", &body);
        assert_eq!(r.status, 400, "{}", r.body_text());
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("1.3") && msg.contains("temperature"), "{msg}");
    }
    let v = s.post("/v1/chat/completions", &chat("m", "x", false)).json();
    assert_eq!(v["choices"][0]["message"]["content"], "[init]", "the model works on");
}

#[test]
fn system_prompts_are_cached_automatically_and_named_caches_work() {
    let dir = temp_dir("cache");
    let m = model(&dir, "m", &[REPLY]);
    let s = Server::start(&dir, &[m.to_str().unwrap()], &[]);
    let system = "You are a terse assistant for Rockchip boards. ".repeat(8);
    let ask = |user: &str| json!({"model": "m", "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]});
    let v = s.post("/v1/chat/completions", &ask("first")).json();
    assert_eq!(v["rkl"]["cache"], "saved");
    // With the system part cached, the runtime is sent only the rest.
    assert_eq!(v["choices"][0]["message"]["content"], "You said: first. Bye now!");
    let v = s.post("/v1/chat/completions", &ask("second")).json();
    assert_eq!(v["rkl"]["cache"], "hit");
    assert_eq!(v["choices"][0]["message"]["content"], "You said: second. Bye now!");
    // "<user>second</user><assistant>" only: 31 characters, 8 tokens.
    assert_eq!(v["usage"]["prompt_tokens"], 8);
    // Without a system message, nothing is cached.
    let v = s.post("/v1/chat/completions", &chat("m", "plain", false)).json();
    assert_eq!(v["rkl"]["cache"], "none");
    assert_eq!(s.metric("rkl_cache_hits_total{model=\"m\"}"), 1.0);
    assert_eq!(s.metric("rkl_cache_saves_total{model=\"m\"}"), 1.0);

    let r =
        s.post("/v1/cache/m/generate-binary", &json!({"cache_name": "docs", "prompt": "You answer from the docs."}));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = r.json();
    assert!(v["size_mb"].as_f64().unwrap() > 0.0 && v["ttft_ms"].as_f64().is_some(), "{v}");
    let list = s.get("/v1/cache/m").json();
    let kinds: Vec<(&str, &str, bool)> = list["caches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["name"].as_str().unwrap(), c["valid"].as_bool().unwrap()))
        .collect();
    assert!(kinds.contains(&("named", "docs", true)), "{list}");
    assert!(kinds.iter().any(|(k, n, ok)| *k == "automatic" && n.starts_with("auto-") && *ok), "{list}");
    // A request naming the cache: only the rest of the prompt is prefilled.
    let mut body = chat("m", "You answer from the docs. Why?", false);
    body["cache_name"] = json!("docs");
    let v = s.post("/v1/chat/completions", &body).json();
    assert_eq!(v["choices"][0]["message"]["content"], "You said:  Why?. Bye now!");
    let mut body = chat("m", "Something else", false);
    body["cache_name"] = json!("docs");
    let r = s.post("/v1/chat/completions", &body);
    assert_eq!(r.status, 400, "a prompt that does not continue the cache: {}", r.body_text());
    body["cache_name"] = json!("../etc");
    assert_eq!(s.post("/v1/chat/completions", &body).status, 400);
    body["cache_name"] = json!("missing");
    assert_eq!(s.post("/v1/chat/completions", &body).status, 404);
    let r = request(&s.addr, "DELETE", "/v1/cache/m/docs", &[], b"");
    assert_eq!((r.status, r.json()["deleted"].as_str()), (200, Some("docs")));
    assert_eq!(request(&s.addr, "DELETE", "/v1/cache/m/docs", &[], b"").status, 404);
    assert_eq!(s.get("/v1/cache/nope").status, 404);
    // The model still answers, with its automatic cache.
    let v = s.post("/v1/chat/completions", &ask("third")).json();
    assert_eq!(
        (v["rkl"]["cache"].as_str(), v["choices"][0]["message"]["content"].as_str()),
        (Some("hit"), Some("You said: third. Bye now!"))
    );
}

#[test]
fn refusals_are_clear_4xx_and_harm_nothing() {
    let dir = temp_dir("refusals");
    let m = model(&dir, "m", &[REPLY]);
    let s = Server::start(&dir, &[m.to_str().unwrap(), "--api-key", "sesame", "--max-body-bytes", "4096"], &[]);
    let auth = [("Authorization", "Bearer sesame"), ("Content-Type", "application/json")];
    let post = |body: &[u8], headers: &[(&str, &str)]| request(&s.addr, "POST", "/v1/chat/completions", headers, body);
    let good = chat("m", "hi", false).to_string();

    let r = post(good.as_bytes(), &[]);
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(post(good.as_bytes(), &[("Authorization", "Bearer sesamE")]).status, 401);
    assert_eq!(post(good.as_bytes(), &[("Authorization", "Basic c2VzYW1l")]).status, 401);
    assert_eq!(s.get("/metrics").status, 401);
    assert_eq!(s.get("/health").status, 200, "/health needs no key");

    let r = post(b"{\"model\": ", &auth);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("not valid JSON"));
    let r = post(b"[1, 2]", &auth);
    assert_eq!(r.status, 400);
    let r = post(chat("nope", "hi", false).to_string().as_bytes(), &auth);
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (404, Some("model_not_found")));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("the models are: m"));
    let r = post(json!({"model": "m"}).to_string().as_bytes(), &auth);
    assert_eq!((r.status, r.json()["error"]["param"].as_str()), (400, Some("messages")));
    let r = post(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}).to_string().as_bytes(),
        &auth,
    );
    assert_eq!(r.status, 400);
    let r = post(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}).to_string().as_bytes(),
        &auth,
    );
    assert_eq!(r.status, 400);

    // A body over the limit is refused before it is read.
    let huge = vec![b' '; 5000];
    let r = post(&huge, &auth);
    assert_eq!(r.status, 413);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("4096"));
    // A claimed length far beyond it: answered at once, nothing sent.
    let mut sock = TcpStream::connect(&s.addr).unwrap();
    write!(sock, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\nContent-Length: 99999999999\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut BufReader::new(sock)).status, 413);
    // A head over 16 KiB.
    let mut sock = TcpStream::connect(&s.addr).unwrap();
    let long = "a".repeat(20_000);
    let _ = write!(sock, "GET /health HTTP/1.1\r\nX-Long: {long}\r\n\r\n");
    assert_eq!(read_response(&mut BufReader::new(sock)).status, 431);
    let mut sock = TcpStream::connect(&s.addr).unwrap();
    write!(
        sock,
        "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer sesame\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut BufReader::new(sock)).status, 411);
    let mut sock = TcpStream::connect(&s.addr).unwrap();
    write!(sock, "NONSENSE\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut BufReader::new(sock)).status, 400);
    assert_eq!(request(&s.addr, "GET", "/v2/else", &auth, b"").status, 404);
    assert_eq!(request(&s.addr, "GET", "/v1/chat/completions", &auth, b"").status, 405);

    // Nothing else was affected.
    let r = post(good.as_bytes(), &auth);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "You said: hi. Bye now!");
    let r = request(&s.addr, "GET", "/metrics", &auth, b"");
    let text = r.body_text();
    assert!(text.contains("rkl_http_responses_total{code=\"413\"} 2"), "{text}");
    assert!(text.contains("rkl_requests_total{model=\"m\",outcome=\"ok\"} 1"), "{text}");
}

#[test]
fn keep_alive_carries_several_requests() {
    let dir = temp_dir("keepalive");
    let m = model(&dir, "m", &[REPLY]);
    let s = Server::start(&dir, &[m.to_str().unwrap()], &[]);
    let sock = TcpStream::connect(&s.addr).unwrap();
    let mut w = sock.try_clone().unwrap();
    let mut r = BufReader::new(sock);
    for (i, stream) in [(0, false), (1, true), (2, false), (3, true)] {
        let body = chat("m", &format!("n{i}"), stream).to_string();
        write!(w, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .unwrap();
        let resp = read_response(&mut r);
        assert_eq!(resp.status, 200);
        let text = if stream {
            resp.stream_reply().0
        } else {
            resp.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string()
        };
        assert_eq!(text, format!("You said: n{i}. Bye now!"));
    }
}

#[test]
fn a_client_that_goes_away_aborts_its_generation() {
    let dir = temp_dir("disconnect");
    // 20 ms per token, a long reply: about 4 s if it ran to its end.
    let m = model(
        &dir,
        "slow",
        &[
            "time_scale = 1",
            "decode_us_per_token = 20000",
            "prefill_us_per_token = 10",
            &format!("reply = {}", "word ".repeat(100)),
        ],
    );
    let s = Server::start(&dir, &[m.to_str().unwrap(), "--max-queue", "1"], &[]);
    let body = chat("slow", "x", true).to_string();
    let mut sock = TcpStream::connect(&s.addr).unwrap();
    write!(sock, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    let mut r = BufReader::new(sock.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // While it streams, the queue (1) is full: another request gets 429.
    let r429 = s.post("/v1/chat/completions", &chat("slow", "y", false));
    assert_eq!(r429.status, 429, "{}", r429.body_text());
    assert_eq!(r429.header("retry-after"), Some("1"));
    let started = Instant::now();
    drop(r);
    drop(sock);
    // The next request gets the model soon after: the first was aborted.
    let mut body = chat("slow", "z", false);
    body["max_tokens"] = json!(2);
    loop {
        let r = s.post("/v1/chat/completions", &body);
        if r.status == 200 {
            assert_eq!(r.json()["choices"][0]["message"]["content"], "wor");
            break;
        }
        assert_eq!(r.status, 429);
        assert!(started.elapsed() < Duration::from_secs(2), "the abandoned generation was not aborted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(s.metric("rkl_requests_total{model=\"slow\",outcome=\"disconnected\"}"), 1.0);
    assert!(s.metric("rkl_requests_total{model=\"slow\",outcome=\"rejected\"}") >= 1.0);
}

#[test]
fn several_models_from_a_config_file() {
    let dir = temp_dir("config");
    model(&dir, "a", &["reply = A:{prompt}"]);
    model(&dir, "b", &["reply = B:{prompt}"]);
    let config = dir.join("serve.json");
    std::fs::write(
        &config,
        json!({"models": [{"id": "alpha", "path": "a.sim"}, {"id": "beta", "path": "b.sim", "isolated": false, "auto_cache": false}]}).to_string(),
    )
    .unwrap();
    let s = Server::start(&dir, &["--config", config.to_str().unwrap()], &[]);
    let ids: Vec<String> = s.get("/v1/models").json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);
    assert_eq!(
        s.post("/v1/completions", &json!({"model": "alpha", "prompt": "1"})).json()["choices"][0]["text"],
        "A:1"
    );
    assert_eq!(s.post("/v1/completions", &json!({"model": "beta", "prompt": "2"})).json()["choices"][0]["text"], "B:2");
    let h = s.get("/health").json();
    assert_eq!((h["models"][0]["isolated"].as_bool(), h["models"][1]["isolated"].as_bool()), (Some(true), Some(false)));

    // A bad configuration is refused with the reason.
    std::fs::write(&config, r#"{"models": [{"id": "a", "path": "a.sim", "colour": "red"}]}"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rkl"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field `colour`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
