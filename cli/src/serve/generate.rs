//! One generation for one HTTP request: the model's turn (a bounded queue
//! per model), the stream read with a short timeout so that a client that
//! went away is noticed and its generation aborted, stop strings cut out of
//! the text (the generation is aborted at the first), and the outcome.

use super::http::peer_gone;
use super::openai::Ask;
use super::Served;
use rkl::{ErrorKind, FinishReason, GenerateRequest, Stats, StreamEvent};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How often a waiting generation checks that its client is still there.
const POLL: Duration = Duration::from_millis(50);

/// Where the text goes: the event stream, or the body of one answer.
pub trait Sink {
    /// Called once, before the first text (or the end): the answer starts.
    fn begin(&mut self) -> std::io::Result<()>;
    fn text(&mut self, text: &str) -> std::io::Result<()>;
}

/// How a generation ended well.
pub struct Outcome {
    pub stats: Stats,
    /// OpenAI's finish_reason: "stop" or "length".
    pub finish_reason: &'static str,
    pub ttft: Option<Duration>,
}

/// How it did not.
pub enum Failed {
    /// Before the answer began: answer with this status.
    Before { status: u16, message: String, code: String },
    /// After it began (the event stream is open): send an error event.
    During { status: u16, message: String, code: String },
    /// The client went away; the generation was aborted.
    Disconnected,
}

/// The HTTP status and code for a library error.
pub fn status_of(e: &rkl::Error) -> (u16, String) {
    let status = match e.kind() {
        ErrorKind::InvalidArgument | ErrorKind::NotSupported | ErrorKind::CacheMismatch => 400,
        ErrorKind::CacheNotFound => 404,
        ErrorKind::CacheInvalid
        | ErrorKind::CacheVersion
        | ErrorKind::CacheTruncated
        | ErrorKind::CacheCorrupt
        | ErrorKind::CacheUntrusted => 409,
        ErrorKind::RuntimeCrashed | ErrorKind::Timeout | ErrorKind::Closed | ErrorKind::ResourceExhausted => 503,
        _ => 500,
    };
    (status, snake(&format!("{:?}", e.kind())))
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Holds back text that could be the start of a stop string, and finds the
/// first stop string across chunk boundaries.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher { stops, held: String::new() }
    }

    /// Adds `text`; returns what may be sent now and whether a stop string
    /// was found (the text before it is all that is sent).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.held.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        // Keep the longest end of the text that starts some stop string.
        let len = self.held.len();
        let mut keep = 0;
        for k in (1..len.min(self.stops.iter().map(String::len).max().unwrap_or(0)) + 1).rev() {
            let start = len - k;
            if self.held.is_char_boundary(start) && self.stops.iter().any(|s| s.starts_with(&self.held[start..])) {
                keep = k;
                break;
            }
        }
        let out = self.held[..len - keep].to_string();
        self.held.drain(..len - keep);
        (out, false)
    }

    /// The text held back at the end of the generation.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Runs `ask` on `served` for the client on `socket`, writing to `sink`.
/// The caller holds the model's turn.
pub fn run(
    served: &Served,
    ask: &Ask,
    socket: &TcpStream,
    sink: &mut dyn Sink,
    arrived: Instant,
) -> Result<Outcome, Failed> {
    if peer_gone(socket) {
        return Err(Failed::Disconnected);
    }
    let mut loaded_named = false;
    if let Some(name) = &ask.cache_name {
        let path = served.named_cache_path(name).map_err(|message| Failed::Before {
            status: 400,
            message,
            code: "invalid_cache_name".into(),
        })?;
        served.model.cache_load(&path).map_err(|e| {
            let (status, code) = status_of(&e);
            Failed::Before { status, message: format!("prompt cache '{name}': {e}"), code }
        })?;
        loaded_named = true;
    }
    let result = generate(served, ask, socket, sink, arrived);
    if loaded_named {
        let _ = served.model.cache_release();
    }
    result
}

fn generate(
    served: &Served,
    ask: &Ask,
    socket: &TcpStream,
    sink: &mut dyn Sink,
    arrived: Instant,
) -> Result<Outcome, Failed> {
    let mut req = GenerateRequest::new(ask.prompt.clone());
    req.max_new_tokens = ask.max_tokens;
    req.sampling = ask.sampling;
    if served.auto_cache && ask.cache_name.is_none() && ask.system_len > 0 && ask.system_len < ask.prompt.len() {
        req.cache_prefix = Some(ask.system_len);
    }
    let before = |e: rkl::Error| {
        let (status, code) = status_of(&e);
        let message = if e.kind() == ErrorKind::NotSupported && ask.sampling.is_some() {
            format!(
                "model '{}': {e}. Remove the sampling fields (temperature, top_p, top_k, penalties, mirostat) from the request, or set them for the model in the server's configuration (\"sampling\")",
                served.id
            )
        } else {
            format!("model '{}': {e}", served.id)
        };
        Failed::Before { status, message, code }
    };
    let mut stream = served.model.stream(&req).map_err(before)?;
    let mut stops = StopMatcher::new(ask.stop.clone());
    let mut started = false;
    let mut ttft = None;
    let begin = |sink: &mut dyn Sink, started: &mut bool| -> Result<(), Failed> {
        if !*started {
            *started = true;
            sink.begin().map_err(|_| Failed::Disconnected)?;
        }
        Ok(())
    };
    loop {
        match stream.next_event(Some(POLL)) {
            Ok(StreamEvent::Timeout) => {
                if peer_gone(socket) {
                    stream.abort();
                    drain(&mut stream);
                    return Err(Failed::Disconnected);
                }
            }
            Ok(StreamEvent::Text(text)) => {
                ttft.get_or_insert_with(|| arrived.elapsed());
                let (out, stopped) = stops.push(&text);
                let sent = begin(sink, &mut started).and_then(|_| sink.text(&out).map_err(|_| Failed::Disconnected));
                if let Err(e) = sent {
                    stream.abort();
                    drain(&mut stream);
                    return Err(e);
                }
                if stopped {
                    stream.abort();
                    let stats = drain(&mut stream).unwrap_or_default();
                    return Ok(Outcome { stats, finish_reason: "stop", ttft });
                }
            }
            Ok(StreamEvent::Finished(stats)) => {
                let rest = stops.flush();
                begin(sink, &mut started)?;
                sink.text(&rest).map_err(|_| Failed::Disconnected)?;
                let finish_reason = match stats.finish {
                    FinishReason::MaxTokens => "length",
                    FinishReason::End | FinishReason::Stopped => "stop",
                    FinishReason::Aborted | FinishReason::Error => {
                        let message = format!("model '{}': the generation was aborted", served.id);
                        return Err(if started {
                            Failed::During { status: 503, message, code: "aborted".into() }
                        } else {
                            Failed::Before { status: 503, message, code: "aborted".into() }
                        });
                    }
                };
                return Ok(Outcome { stats, finish_reason, ttft });
            }
            Err(e) => {
                if started {
                    let (status, code) = status_of(&e);
                    return Err(Failed::During { status, message: format!("model '{}': {e}", served.id), code });
                }
                return Err(before(e));
            }
        }
    }
}

/// Reads an aborted stream to its end; its statistics if it had any.
fn drain(stream: &mut rkl::Stream) -> Option<Stats> {
    loop {
        match stream.next_event(Some(Duration::from_secs(30))) {
            Ok(StreamEvent::Finished(stats)) => return Some(stats),
            Ok(StreamEvent::Text(_)) => {}
            Ok(StreamEvent::Timeout) | Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    fn run(stops: &[&str], chunks: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for c in chunks {
            let (text, stopped) = m.push(c);
            out.push_str(&text);
            if stopped {
                return (out, true);
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn stop_strings_are_found_across_chunks() {
        assert_eq!(run(&["END"], &["one E", "N", "D two"]), ("one ".into(), true));
        assert_eq!(run(&["END"], &["one E", "N", "d two"]), ("one ENd two".into(), false));
        assert_eq!(run(&["b", "xyz"], &["aaxy", "b"]), ("aaxy".into(), true));
        assert_eq!(run(&["é!"], &["café", "é", "!"]), ("café".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn held_text_is_sent_once_it_cannot_start_a_stop() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("abcST"), ("abc".to_string(), false));
        assert_eq!(m.push("x"), ("STx".to_string(), false));
    }
}
