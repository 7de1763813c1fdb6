//! The endpoints: which request goes where, and the OpenAI-shaped answers.

use super::generate::{self, Failed, Outcome, Sink};
use super::http::{self, Request};
use super::metrics;
use super::openai::{self, Ask, BadRequest};
use super::{Served, Server};
use rkl::cache::{path_of, scan, Found};
use rkl::{CacheUse, GenerateRequest, Verdict};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn new_id(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{:x}{:06x}", now_unix(), N.fetch_add(1, Ordering::Relaxed))
}

/// An OpenAI-shaped error answer.
pub fn error_response(out: &mut TcpStream, status: u16, message: &str, code: &str, close: bool) -> std::io::Result<()> {
    let kind = match status {
        401 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    let body = json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    let extra: Vec<(&str, String)> = if status == 401 {
        vec![("WWW-Authenticate", "Bearer".into())]
    } else if status == 429 {
        vec![("Retry-After", "1".into())]
    } else {
        vec![]
    };
    http::respond(out, status, "application/json", body.to_string().as_bytes(), close, &extra)
}

/// What a handler answers, written by `handle`.
enum Reply {
    Json(u16, Value),
    Text(u16, &'static str, String),
    Error(u16, String, String),
    /// The handler wrote the answer itself; whether the connection may go on.
    Written(bool),
}

fn err(status: u16, message: impl Into<String>, code: &str) -> Reply {
    Reply::Error(status, message.into(), code.into())
}

fn bad_request(b: BadRequest) -> Reply {
    let mut v =
        json!({ "error": { "message": b.message, "type": "invalid_request_error", "param": b.param, "code": b.code } });
    if b.status >= 500 {
        v["error"]["type"] = json!("server_error");
    }
    Reply::Json(b.status, v)
}

/// Answers one request; returns whether the connection may carry another.
pub fn handle(server: &Server, req: &Request, out: &mut TcpStream) -> bool {
    let reply = route(server, req, out);
    let (status, result) = match reply {
        Reply::Json(status, v) => {
            (status, http::respond(out, status, "application/json", v.to_string().as_bytes(), req.close, &[]))
        }
        Reply::Text(status, ct, body) => (status, http::respond(out, status, ct, body.as_bytes(), req.close, &[])),
        Reply::Error(status, msg, code) => (status, error_response(out, status, &msg, &code, req.close)),
        Reply::Written(keep) => return keep,
    };
    server.http.count(status);
    result.is_ok()
}

fn authorized(server: &Server, req: &Request) -> bool {
    let Some(key) = &server.api_key else { return true };
    let Some(given) = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")) else { return false };
    // Compared in time independent of where they differ.
    let (a, b) = (given.trim().as_bytes(), key.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn route(server: &Server, req: &Request, out: &mut TcpStream) -> Reply {
    let parts: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method.as_str();
    if parts != ["health"] && !authorized(server, req) {
        return err(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "invalid_api_key");
    }
    match (method, parts.as_slice()) {
        ("GET", ["health"]) => health(server),
        ("GET", ["metrics"]) => Reply::Text(200, "text/plain; version=0.0.4", metrics::render(server)),
        ("GET", ["v1", "models"]) => Reply::Json(
            200,
            json!({ "object": "list", "data": server.models.iter().map(|m| model_json(server, m)).collect::<Vec<_>>() }),
        ),
        ("GET", ["v1", "models", id]) => match server.find(id) {
            Some(m) => Reply::Json(200, model_json(server, m)),
            None => unknown_model(server, id),
        },
        ("POST", ["v1", "chat", "completions"]) => completion(server, req, out, true),
        ("POST", ["v1", "completions"]) => completion(server, req, out, false),
        ("POST", ["v1", "cache", model, "generate-binary"]) => cache_generate(server, req, model),
        ("GET", ["v1", "cache", model]) => cache_list(server, model),
        ("DELETE", ["v1", "cache", model, name]) => cache_delete(server, model, name),
        (_, ["health"] | ["metrics"] | ["v1", "models"] | ["v1", "chat", "completions"] | ["v1", "completions"])
        | (_, ["v1", "cache", ..]) => {
            err(405, format!("{method} is not allowed on {}", req.path), "method_not_allowed")
        }
        _ => err(404, format!("no endpoint {method} {}", req.path), "not_found"),
    }
}

fn model_json(server: &Server, m: &Served) -> Value {
    json!({ "id": m.id, "object": "model", "created": server.started_unix, "owned_by": "rkl" })
}

fn unknown_model(server: &Server, id: &str) -> Reply {
    let known: Vec<&str> = server.models.iter().map(|m| m.id.as_str()).collect();
    err(404, format!("model '{id}' is not served here; the models are: {}", known.join(", ")), "model_not_found")
}

fn health(server: &Server) -> Reply {
    let models: Vec<Value> = server
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "runtime": m.model.family().name(),
                "runtime_version": m.model.runtime_version(),
                "isolated": m.model.is_isolated(),
                "worker_pid": m.model.worker_pid(),
                "restarts": m.model.restarts(),
                "queue_depth": m.queue_depth(),
                "auto_cache": m.auto_cache,
            })
        })
        .collect();
    Reply::Json(200, json!({ "status": "ok", "models": models }))
}

fn parse_json(req: &Request) -> Result<Value, Reply> {
    if req.body.is_empty() {
        return Err(err(400, "the request needs a JSON body", "invalid_json"));
    }
    let v: Value = serde_json::from_slice(&req.body)
        .map_err(|e| err(400, format!("the body is not valid JSON: {e}"), "invalid_json"))?;
    if !v.is_object() {
        return Err(err(400, "the body must be a JSON object", "invalid_json"));
    }
    Ok(v)
}

/// The usage object.
fn usage(stats: &rkl::Stats) -> Value {
    json!({
        "prompt_tokens": stats.prefill_tokens,
        "completion_tokens": stats.tokens,
        "total_tokens": stats.prefill_tokens + stats.tokens,
    })
}

/// rkl's own figures, beside OpenAI's fields.
fn rkl_figures(o: &Outcome) -> Value {
    json!({
        "ttft_ms": o.ttft.map_or(0.0, |t| t.as_secs_f64() * 1000.0),
        "runtime_ttft_ms": o.stats.ttft_ms,
        "queue_ms": o.stats.queue_ms,
        "prefill_ms": o.stats.prefill_ms,
        "decode_ms": o.stats.decode_ms,
        "cache": match o.stats.cache { CacheUse::None => "none", CacheUse::Hit => "hit", CacheUse::Saved => "saved" },
    })
}

/// The event stream of one reply.
struct SseSink<'a> {
    out: &'a mut TcpStream,
    chat: bool,
    id: String,
    model: String,
    created: u64,
    close: bool,
}

impl SseSink<'_> {
    fn event(&mut self, v: &Value) -> std::io::Result<()> {
        http::write_chunk(self.out, format!("data: {v}\n\n").as_bytes())
    }

    fn chunk(&self, text: Option<&str>, finish: Option<&str>, first: bool) -> Value {
        if self.chat {
            let mut delta = json!({});
            if first {
                delta["role"] = json!("assistant");
            }
            if let Some(t) = text {
                delta["content"] = json!(t);
            }
            json!({ "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
        } else {
            json!({ "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                    "choices": [{ "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish }] })
        }
    }
}

impl Sink for SseSink<'_> {
    fn begin(&mut self) -> std::io::Result<()> {
        http::start_chunked(self.out, "text/event-stream", self.close)?;
        if self.chat {
            let first = self.chunk(Some(""), None, true);
            self.event(&first)?;
        }
        Ok(())
    }

    fn text(&mut self, text: &str) -> std::io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let c = self.chunk(Some(text), None, false);
        self.event(&c)
    }
}

/// The whole reply in one answer.
struct BodySink {
    text: String,
}

impl Sink for BodySink {
    fn begin(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn text(&mut self, text: &str) -> std::io::Result<()> {
        self.text.push_str(text);
        Ok(())
    }
}

fn completion(server: &Server, req: &Request, out: &mut TcpStream, chat: bool) -> Reply {
    let arrived = Instant::now();
    let body = match parse_json(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ask: Ask = match if chat { openai::chat_request(&body) } else { openai::completion_request(&body) } {
        Ok(a) => a,
        Err(b) => return bad_request(b),
    };
    let Some(served) = server.find(&ask.model) else { return unknown_model(server, &ask.model) };
    let Some(turn) = served.turn() else {
        served.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        return err(
            429,
            format!("model '{}' has too many requests running or waiting; try again shortly", served.id),
            "queue_full",
        );
    };
    let id = new_id(if chat { "chatcmpl" } else { "cmpl" });
    let created = now_unix();
    let socket = match out.try_clone() {
        Ok(s) => s,
        Err(e) => return err(500, format!("cannot watch the connection: {e}"), "internal"),
    };
    if ask.stream {
        let mut sink = SseSink { out, chat, id, model: served.id.clone(), created, close: req.close };
        let result = generate::run(served, &ask, &socket, &mut sink, arrived);
        drop(turn);
        let keep = match result {
            Ok(o) => {
                served.metrics.record(&o);
                let mut last = sink.chunk(None, Some(o.finish_reason), false);
                if !ask.include_usage {
                    // Not in OpenAI's chunks, but harmless to clients, and
                    // what most servers of this kind send.
                    last["usage"] = usage(&o.stats);
                }
                last["rkl"] = rkl_figures(&o);
                let mut ok = sink.event(&last);
                if ask.include_usage {
                    let u = json!({ "id": sink.id, "object": if chat { "chat.completion.chunk" } else { "text_completion" },
                                    "created": created, "model": served.id, "choices": [], "usage": usage(&o.stats) });
                    ok = ok.and_then(|_| sink.event(&u));
                }
                let ok = ok
                    .and_then(|_| http::write_chunk(sink.out, b"data: [DONE]\n\n"))
                    .and_then(|_| http::finish_chunked(sink.out));
                server.http.count(200);
                ok.is_ok()
            }
            Err(Failed::Before { status, message, code }) => {
                served.metrics.failed.fetch_add(1, Ordering::Relaxed);
                server.http.count(status);
                error_response(sink.out, status, &message, &code, req.close).is_ok()
            }
            Err(Failed::During { message, code, .. }) => {
                // The answer began as 200: the error is an event, and the
                // stream ends without [DONE].
                served.metrics.failed.fetch_add(1, Ordering::Relaxed);
                server.http.count(200);
                let e = json!({ "error": { "message": message, "type": "server_error", "param": null, "code": code } });
                sink.event(&e).and_then(|_| http::finish_chunked(sink.out)).is_ok()
            }
            Err(Failed::Disconnected) => {
                served.metrics.disconnected.fetch_add(1, Ordering::Relaxed);
                false
            }
        };
        return Reply::Written(keep && !req.close);
    }
    let mut sink = BodySink { text: String::new() };
    let result = generate::run(served, &ask, &socket, &mut sink, arrived);
    drop(turn);
    match result {
        Ok(o) => {
            served.metrics.record(&o);
            let choice = if chat {
                json!({ "index": 0, "message": { "role": "assistant", "content": sink.text }, "finish_reason": o.finish_reason })
            } else {
                json!({ "index": 0, "text": sink.text, "logprobs": null, "finish_reason": o.finish_reason })
            };
            Reply::Json(
                200,
                json!({ "id": id, "object": if chat { "chat.completion" } else { "text_completion" }, "created": created,
                        "model": served.id, "choices": [choice], "usage": usage(&o.stats), "rkl": rkl_figures(&o) }),
            )
        }
        Err(Failed::Before { status, message, code }) | Err(Failed::During { status, message, code }) => {
            served.metrics.failed.fetch_add(1, Ordering::Relaxed);
            Reply::Error(status, message, code)
        }
        Err(_) => {
            served.metrics.disconnected.fetch_add(1, Ordering::Relaxed);
            Reply::Written(false)
        }
    }
}

fn cache_generate(server: &Server, req: &Request, model: &str) -> Reply {
    let Some(served) = server.find(model) else { return unknown_model(server, model) };
    let body = match parse_json(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (Some(name), Some(prompt)) =
        (body.get("cache_name").and_then(Value::as_str), body.get("prompt").and_then(Value::as_str))
    else {
        return err(400, "the body needs 'cache_name' and 'prompt' (strings)", "invalid_request");
    };
    let path = match served.named_cache_path(name) {
        Ok(p) => p,
        Err(m) => return err(400, m, "invalid_cache_name"),
    };
    let Some(turn) = served.turn() else {
        served.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        return err(429, format!("model '{}' has too many requests running or waiting", served.id), "queue_full");
    };
    // A cache loaded by automatic caching is let go first: a save needs the
    // model without one.
    let _ = served.model.cache_release();
    let started = Instant::now();
    let result = served.model.cache_save(&GenerateRequest::new(prompt), &path);
    drop(turn);
    match result {
        Ok(info) => {
            let size = info.manifest.as_ref().map_or(0, |m| m.payload.size);
            let stats = info.save_stats.unwrap_or_default();
            Reply::Json(
                200,
                json!({
                    "model": served.id,
                    "cache_name": name,
                    "size_mb": (size as f64 / 1_048_576.0 * 1000.0).round() / 1000.0,
                    "size_bytes": size,
                    "ttft_ms": stats.ttft_ms,
                    "prefill_ms": stats.prefill_ms,
                    "prompt_tokens": stats.prefill_tokens,
                    "elapsed_ms": started.elapsed().as_secs_f64() * 1000.0,
                }),
            )
        }
        Err(e) => {
            let (status, code) = generate::status_of(&e);
            Reply::Error(status, format!("model '{}': {e}", served.id), code)
        }
    }
}

fn cache_entries(dir: &std::path::Path, kind: &str) -> Vec<Value> {
    let Ok(found) = scan(dir) else { return Vec::new() };
    found
        .iter()
        .filter_map(|f| {
            let Found::Cache(info) = f else { return None };
            let file = path_of(f).file_name()?.to_string_lossy().into_owned();
            let m = info.manifest.as_ref();
            let size = m.map_or(0, |m| m.payload.size);
            Some(json!({
                "name": file.strip_suffix(".rklcache").unwrap_or(&file),
                "kind": kind,
                "size_mb": (size as f64 / 1_048_576.0 * 1000.0).round() / 1000.0,
                "size_bytes": size,
                "created_unix": m.map(|m| m.created_unix),
                "prompt_preview": m.map(|m| m.prompt.preview.clone()),
                "valid": matches!(info.verdict, Verdict::Valid),
                "verdict": match &info.verdict {
                    Verdict::Valid => "valid".to_string(),
                    Verdict::Stale(w) => format!("stale: {w}"),
                    Verdict::Invalid(e) => format!("invalid: {e}"),
                },
            }))
        })
        .collect()
}

fn cache_list(server: &Server, model: &str) -> Reply {
    let Some(served) = server.find(model) else { return unknown_model(server, model) };
    let mut caches = cache_entries(&served.named_dir, "named");
    if let Some(dir) = &served.auto_dir {
        caches.extend(cache_entries(dir, "automatic"));
    }
    Reply::Json(200, json!({ "model": served.id, "caches": caches }))
}

fn cache_delete(server: &Server, model: &str, name: &str) -> Reply {
    let Some(served) = server.find(model) else { return unknown_model(server, model) };
    let path = match served.named_cache_path(name) {
        Ok(p) => p,
        Err(m) => return err(400, m, "invalid_cache_name"),
    };
    if !path.exists() {
        return err(404, format!("model '{}' has no prompt cache '{name}'", served.id), "cache_not_found");
    }
    // Only the payload the manifest names as its own goes with it.
    let info = rkl::cache::inspect(&path);
    let _turn = served.turn();
    let _ = served.model.cache_release();
    if let Some(payload) = &info.payload_path {
        let _ = std::fs::remove_file(payload);
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Reply::Json(200, json!({ "model": served.id, "deleted": name })),
        Err(e) => err(500, format!("cannot remove {}: {e}", path.display()), "io"),
    }
}
