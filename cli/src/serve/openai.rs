//! The OpenAI request bodies `rkl serve` takes, checked field by field with
//! messages that name the field, and how chat messages become one prompt.
//!
//! # Building the prompt from chat messages
//!
//! The model applies its own chat template (prefix and postfix around the
//! prompt, as the real runtime does), so the server sends plain text:
//!
//! - every `system` (or `developer`) message, in order, joined by `\n`,
//!   then a blank line: the **system part**, which opens the prompt;
//! - a single user message follows as it is;
//! - a conversation (several non-system messages) follows as lines
//!   `User: …` / `Assistant: …` (`tool` messages as `Tool: …`), joined by
//!   `\n`.
//!
//! With automatic prompt caching on, the system part is the request's
//! stable prefix (`GenerateRequest::cache_prefix` = its length in bytes): its
//! KV state is saved once and reused by every request with the same system
//! prompt.

use rkl::Sampling;
use serde_json::Value;

/// A refused request: the HTTP status, the message, the field at fault.
#[derive(Debug)]
pub struct BadRequest {
    pub status: u16,
    pub message: String,
    pub param: Option<&'static str>,
    pub code: &'static str,
}

pub fn bad(param: &'static str, message: impl Into<String>) -> BadRequest {
    BadRequest { status: 400, message: message.into(), param: Some(param), code: "invalid_request" }
}

/// What a chat or completion request asks for, once checked.
#[derive(Debug)]
pub struct Ask {
    pub model: String,
    pub prompt: String,
    /// Bytes of `prompt` that are the system part (0: none).
    pub system_len: usize,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub sampling: Option<Sampling>,
    /// rkl's extension: a named prompt cache (`POST /v1/cache/{model}/generate-binary`)
    /// to load first; the prompt must start with its prompt.
    pub cache_name: Option<String>,
}

fn number(body: &Value, field: &'static str) -> Result<Option<f64>, BadRequest> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(bad(field, format!("'{field}' must be a number"))),
    }
}

fn float(body: &Value, field: &'static str) -> Result<Option<f32>, BadRequest> {
    Ok(number(body, field)?.map(|v| v as f32))
}

fn integer(body: &Value, field: &'static str) -> Result<Option<i64>, BadRequest> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| bad(field, format!("'{field}' must be an integer"))),
    }
}

/// The fields both endpoints share.
fn common(body: &Value, prompt: String, system_len: usize) -> Result<Ask, BadRequest> {
    let model = match body.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(bad("model", "'model' is required: the id of one of GET /v1/models")),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream", "'stream' must be true or false")),
    };
    let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let max_tokens = match integer(body, "max_completion_tokens")?.or(integer(body, "max_tokens")?) {
        None => None,
        Some(n) if (1..=i32::MAX as i64).contains(&n) => Some(n as u32),
        Some(n) => return Err(bad("max_tokens", format!("'max_tokens' must be at least 1 (got {n})"))),
    };
    let stop = match body.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad("stop", "'stop' must be a string or an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("stop", "'stop' must be a string or an array of strings")),
    };
    if stop.len() > 4 || stop.iter().any(|s| s.is_empty() || s.len() > 256) {
        return Err(bad("stop", "'stop' takes up to 4 non-empty strings of at most 256 bytes"));
    }
    match integer(body, "n")? {
        None | Some(1) => {}
        Some(_) => return Err(bad("n", "'n' must be 1: one reply per request")),
    }
    for unsupported in ["logprobs", "tools", "functions", "logit_bias", "response_format", "suffix", "echo", "best_of"]
    {
        let v = body.get(unsupported);
        let harmless = matches!(v, None | Some(Value::Null) | Some(Value::Bool(false)));
        let harmless =
            harmless || (unsupported == "tools" && v.and_then(Value::as_array).is_some_and(|a| a.is_empty()));
        if !harmless {
            return Err(BadRequest {
                status: 400,
                message: format!("'{unsupported}' is not supported by rkl serve"),
                param: None,
                code: "unsupported_parameter",
            });
        }
    }
    let top_k = match integer(body, "top_k")? {
        None => None,
        Some(k) => Some(i32::try_from(k).map_err(|_| bad("top_k", "'top_k' is out of range"))?),
    };
    let mirostat = match integer(body, "mirostat")? {
        None => None,
        Some(m) => Some(i32::try_from(m).map_err(|_| bad("mirostat", "'mirostat' is out of range"))?),
    };
    let sampling = Sampling {
        temperature: float(body, "temperature")?,
        top_p: float(body, "top_p")?,
        top_k,
        frequency_penalty: float(body, "frequency_penalty")?,
        presence_penalty: float(body, "presence_penalty")?,
        repeat_penalty: float(body, "repeat_penalty")?,
        mirostat,
        mirostat_tau: float(body, "mirostat_tau")?,
        mirostat_eta: float(body, "mirostat_eta")?,
    };
    let cache_name = match body.get("cache_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("cache_name", "'cache_name' must be a string")),
    };
    Ok(Ask {
        model,
        prompt,
        system_len,
        stream,
        include_usage,
        max_tokens,
        stop,
        sampling: (sampling != Sampling::default()).then_some(sampling),
        cache_name,
    })
}

fn content_text(msg: &Value, i: usize) -> Result<String, BadRequest> {
    match msg.get("content") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) | None => Ok(String::new()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(bad(
                            "messages",
                            format!("messages[{i}].content: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported"),
                        ))
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(bad("messages", format!("messages[{i}].content must be a string or an array of text parts"))),
    }
}

/// The prompt of a chat request and the length of its system part (see the
/// module documentation).
pub fn render_messages(messages: &[Value]) -> Result<(String, usize), BadRequest> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, String)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("messages", format!("messages[{i}].role is required")))?;
        let text = content_text(m, i)?;
        match role {
            "system" | "developer" => system.push(text),
            "user" => turns.push(("User", text)),
            "assistant" => turns.push(("Assistant", text)),
            "tool" | "function" => turns.push(("Tool", text)),
            other => {
                return Err(bad(
                    "messages",
                    format!("messages[{i}].role '{other}' is not one of system, developer, user, assistant, tool"),
                ))
            }
        }
    }
    if turns.is_empty() {
        return Err(bad("messages", "'messages' needs at least one user message"));
    }
    let mut prompt = String::new();
    if !system.is_empty() {
        prompt.push_str(&system.join("\n"));
        prompt.push_str("\n\n");
    }
    let system_len = prompt.len();
    if turns.len() == 1 && turns[0].0 == "User" {
        prompt.push_str(&turns[0].1);
    } else {
        let lines: Vec<String> = turns.iter().map(|(who, text)| format!("{who}: {text}")).collect();
        prompt.push_str(&lines.join("\n"));
    }
    Ok((prompt, system_len))
}

pub fn chat_request(body: &Value) -> Result<Ask, BadRequest> {
    let messages = match body.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => return Err(bad("messages", "'messages' must be a non-empty array of {\"role\", \"content\"} objects")),
    };
    let (prompt, system_len) = render_messages(messages)?;
    common(body, prompt, system_len)
}

pub fn completion_request(body: &Value) -> Result<Ask, BadRequest> {
    let prompt = match body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or("").to_string(),
        _ => return Err(bad("prompt", "'prompt' must be a string (or an array of one string)")),
    };
    common(body, prompt, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompts_are_built_as_documented() {
        let (p, n) = render_messages(&[json!({"role": "user", "content": "hi"})]).unwrap();
        assert_eq!((p.as_str(), n), ("hi", 0));
        let (p, n) = render_messages(&[
            json!({"role": "system", "content": "Be brief."}),
            json!({"role": "user", "content": [{"type": "text", "text": "hi"}]}),
        ])
        .unwrap();
        assert_eq!((p.as_str(), n), ("Be brief.\n\nhi", 11));
        let (p, _) = render_messages(&[
            json!({"role": "user", "content": "a"}),
            json!({"role": "assistant", "content": "b"}),
            json!({"role": "user", "content": "c"}),
        ])
        .unwrap();
        assert_eq!(p, "User: a\nAssistant: b\nUser: c");
        assert!(render_messages(&[json!({"role": "system", "content": "x"})]).is_err());
        assert!(render_messages(&[json!({"role": "wizard", "content": "x"})]).is_err());
    }

    #[test]
    fn fields_are_checked() {
        let ask = chat_request(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 5, "stop": ["a", "b"], "temperature": 0.5, "top_k": 3}))
        .unwrap();
        assert_eq!(ask.max_tokens, Some(5));
        assert_eq!(ask.stop, ["a", "b"]);
        let s = ask.sampling.unwrap();
        assert_eq!((s.temperature, s.top_k, s.top_p), (Some(0.5), Some(3), None));
        let e =
            chat_request(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}))
                .unwrap_err();
        assert_eq!(e.param, Some("temperature"));
        let e = chat_request(&json!({"messages": [{"role": "user", "content": "x"}]})).unwrap_err();
        assert_eq!(e.param, Some("model"));
        let e = completion_request(&json!({"model": "m", "prompt": "x", "n": 2})).unwrap_err();
        assert_eq!(e.param, Some("n"));
    }
}
