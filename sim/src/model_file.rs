//! The simulator's model file: `RKLLM-SIM 1` then `key = value` lines.

use crate::config::{parse_time_scale, OldRelease, WaitingMode};
use crate::faults::Fault;
use std::path::Path;

/// The exact first line of every model file.
pub const MAGIC_LINE: &str = "RKLLM-SIM 1";

/// On which thread result callbacks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackThread {
    /// The thread inside `rkllm_run`.
    Caller,
    /// A thread started per run and joined before `rkllm_run` returns.
    Foreign,
}

/// What `rkllm_load_prompt_cache` checks of a cache file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheCheck {
    /// The magic and the size only.
    Header,
    /// Every byte: also the reserved word (0) and the whole filler, which
    /// must be this model's, so a load succeeds only on exactly the bytes a
    /// save of this model wrote.
    Full,
}

/// Everything a model file says, with the README's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub reply: String,
    pub system: String,
    pub prefix: String,
    pub postfix: String,
    pub prefill_us_per_token: u64,
    pub decode_us_per_token: u64,
    pub kv_bytes_per_token: u64,
    /// `None`: use the environment's.
    pub time_scale: Option<f64>,
    /// `None`: use the environment's.
    pub waiting: Option<WaitingMode>,
    pub callback_thread: CallbackThread,
    pub faults: Vec<Fault>,
    pub slow_abort_ms: u64,
    pub grow_kb_per_run: u64,
    /// Imitates a runtime whose KV history outlives what rkl asks (allowed
    /// by the ABI document): a save run keeps its prompt in the history,
    /// releasing a prompt cache keeps the history, and loading one stacks
    /// it on the history there. Only `rkllm_clear_kv_cache` empties it.
    pub sticky_kv: bool,
    pub cache_check: CacheCheck,
    /// Real milliseconds `rkllm_load_prompt_cache` waits before it opens
    /// the file.
    pub cache_load_delay_ms: u64,
    /// Embedding dimension: floats per token of embed, image and video
    /// input and of a last-hidden-layer result.
    pub hidden_size: u64,
    /// Token ids are `0..vocab_size`; floats per row of a logits result.
    pub vocab_size: u64,
    /// Floats per encoder token of the cross-attention K and V caches.
    pub cross_attn_floats_per_token: u64,
    /// family-1-2-0 build: which release to imitate (wins over
    /// `RKLLM_SIM_RELEASE`); ignored by the other builds.
    pub release: Option<OldRelease>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            name: "sim".into(),
            reply: "Hello from the simulator: {prompt}".into(),
            system: String::new(),
            prefix: "<user>".into(),
            postfix: "</user><assistant>".into(),
            prefill_us_per_token: 5400,
            decode_us_per_token: 40000,
            kv_bytes_per_token: 114688,
            time_scale: None,
            waiting: None,
            callback_thread: CallbackThread::Caller,
            faults: Vec::new(),
            slow_abort_ms: 0,
            grow_kb_per_run: 0,
            sticky_kv: false,
            cache_check: CacheCheck::Header,
            cache_load_delay_ms: 0,
            hidden_size: 64,
            vocab_size: 256,
            cross_attn_floats_per_token: 32,
            release: None,
        }
    }
}

/// Reads and parses the model file at `path`.
pub fn load(path: &Path) -> Result<ModelSpec, String> {
    if path.is_dir() {
        return Err(format!("'{}' is a directory, not a model", path.display()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("'{}' is not a simulator model (not UTF-8 text)", path.display()))?;
    parse(&text).map_err(|e| format!("'{}': {e}", path.display()))
}

/// Parses the text of a model file.
pub fn parse(text: &str) -> Result<ModelSpec, String> {
    let mut lines = text.split('\n');
    if lines.next() != Some(MAGIC_LINE) {
        return Err(format!("not a simulator model (first line is not '{MAGIC_LINE}')"));
    }
    let mut spec = ModelSpec::default();
    for (index, raw) in lines.enumerate() {
        let line_no = index + 2;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| format!("line {line_no}: expected 'key = value'"))?;
        let key = key.trim();
        let value = unescape(value.trim());
        apply(&mut spec, key, &value).map_err(|e| format!("line {line_no}: {e}"))?;
    }
    Ok(spec)
}

fn apply(spec: &mut ModelSpec, key: &str, value: &str) -> Result<(), String> {
    let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{key}: {v:?} is not a whole number >= 0"));
    let positive = |n: u64| if n == 0 { Err(format!("{key}: must be at least 1")) } else { Ok(n) };
    // A dimension so large that one token's floats overflow is refused.
    let positive =
        |n: u64| positive(n).and_then(|n| if n > 1 << 24 { Err(format!("{key}: {n} is too large")) } else { Ok(n) });
    match key {
        "name" => spec.name = value.into(),
        "reply" => spec.reply = value.into(),
        "system" => spec.system = value.into(),
        "prefix" => spec.prefix = value.into(),
        "postfix" => spec.postfix = value.into(),
        "prefill_us_per_token" => spec.prefill_us_per_token = number(value)?,
        "decode_us_per_token" => spec.decode_us_per_token = number(value)?,
        "kv_bytes_per_token" => spec.kv_bytes_per_token = number(value)?,
        "slow_abort_ms" => spec.slow_abort_ms = number(value)?,
        "grow_kb_per_run" => spec.grow_kb_per_run = number(value)?,
        "sticky_kv" => {
            spec.sticky_kv = match value {
                "true" => true,
                "false" => false,
                other => return Err(format!("sticky_kv: {other:?} is not true or false")),
            }
        }
        "cache_load_delay_ms" => spec.cache_load_delay_ms = number(value)?,
        "cache_check" => {
            spec.cache_check = match value {
                "header" => CacheCheck::Header,
                "full" => CacheCheck::Full,
                other => return Err(format!("cache_check: {other:?} is not header or full")),
            }
        }
        "time_scale" => {
            spec.time_scale =
                Some(parse_time_scale(value).ok_or_else(|| format!("time_scale: {value:?} is not a number >= 0"))?)
        }
        "waiting" => {
            spec.waiting = Some(
                WaitingMode::parse(value).ok_or_else(|| format!("waiting: {value:?} is not carry, held or repeat"))?,
            )
        }
        "callback_thread" => {
            spec.callback_thread = match value {
                "caller" => CallbackThread::Caller,
                "foreign" => CallbackThread::Foreign,
                other => return Err(format!("callback_thread: {other:?} is not caller or foreign")),
            }
        }
        "fault" => spec.faults.push(Fault::parse(value)?),
        "hidden_size" => spec.hidden_size = positive(number(value)?)?,
        "vocab_size" => {
            spec.vocab_size = positive(number(value)?)?;
            if spec.vocab_size > i32::MAX as u64 {
                return Err(format!("vocab_size: {value} does not fit an int"));
            }
        }
        "cross_attn_floats_per_token" => spec.cross_attn_floats_per_token = number(value)?,
        "release" => {
            spec.release = Some(
                OldRelease::parse(value)
                    .ok_or_else(|| format!("release: {value:?} is not 1.2.0, 1.2.1b1 or silent"))?,
            )
        }
        other => return Err(format!("unknown key {other:?}")),
    }
    Ok(())
}

/// Resolves `\n` (newline) and `\\` (backslash); any other backslash is kept
/// as it is.
pub fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('n') => {
                    chars.next();
                    out.push('\n');
                    continue;
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{FaultKind, FaultPoint};

    #[test]
    fn a_good_file_sets_every_key() {
        let text = "RKLLM-SIM 1\n\
            # a comment\n\
            \n\
            name = qwen-sim\n\
            reply =   Hi {prompt}!  \n\
            system = be brief\n\
            prefix = <u>\n\
            postfix = </u>\n\
            prefill_us_per_token = 10\n\
            decode_us_per_token = 20\n\
            kv_bytes_per_token = 30\n\
            time_scale = 0.5\n\
            waiting = held\n\
            callback_thread = foreign\n\
            fault = error@token:2\n\
            fault = segv@cache_save\n\
            slow_abort_ms = 40\n\
            grow_kb_per_run = 50\n\
            cache_check = full\n\
            cache_load_delay_ms = 60\n\
            hidden_size = 8\n\
            vocab_size = 100\n\
            cross_attn_floats_per_token = 4\n\
            release = 1.2.1b1\n";
        let spec = parse(text).unwrap();
        assert_eq!(spec.name, "qwen-sim");
        assert_eq!(spec.reply, "Hi {prompt}!");
        assert_eq!(spec.system, "be brief");
        assert_eq!((spec.prefix.as_str(), spec.postfix.as_str()), ("<u>", "</u>"));
        assert_eq!((spec.prefill_us_per_token, spec.decode_us_per_token, spec.kv_bytes_per_token), (10, 20, 30));
        assert_eq!(spec.time_scale, Some(0.5));
        assert_eq!(spec.waiting, Some(WaitingMode::Held));
        assert_eq!(spec.callback_thread, CallbackThread::Foreign);
        assert_eq!(
            spec.faults,
            vec![
                Fault { kind: FaultKind::Error, point: FaultPoint::Token(2) },
                Fault { kind: FaultKind::Segv, point: FaultPoint::CacheSave },
            ]
        );
        assert_eq!((spec.slow_abort_ms, spec.grow_kb_per_run), (40, 50));
        assert_eq!((spec.cache_check, spec.cache_load_delay_ms), (CacheCheck::Full, 60));
        assert_eq!((spec.hidden_size, spec.vocab_size, spec.cross_attn_floats_per_token), (8, 100, 4));
        assert_eq!(spec.release, Some(OldRelease::V1_2_1b1));
    }

    #[test]
    fn only_the_magic_line_gives_the_defaults() {
        assert_eq!(parse("RKLLM-SIM 1").unwrap(), ModelSpec::default());
        assert_eq!(parse("RKLLM-SIM 1\n").unwrap(), ModelSpec::default());
    }

    #[test]
    fn a_bad_magic_is_refused() {
        assert!(parse("").is_err());
        assert!(parse("RKLLM-SIM 2\n").is_err());
        assert!(parse(" RKLLM-SIM 1\n").is_err());
        assert!(parse("\x7fELF not a model").is_err());
        assert!(parse("name = x\nRKLLM-SIM 1\n").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(parse("RKLLM-SIM 1\ncolour = blue\n").unwrap_err().contains("unknown key"));
        assert!(parse("RKLLM-SIM 1\njust words\n").is_err());
        assert!(parse("RKLLM-SIM 1\ndecode_us_per_token = -1\n").is_err());
        assert!(parse("RKLLM-SIM 1\ntime_scale = fast\n").is_err());
        assert!(parse("RKLLM-SIM 1\nwaiting = maybe\n").is_err());
        assert!(parse("RKLLM-SIM 1\ncallback_thread = any\n").is_err());
        assert!(parse("RKLLM-SIM 1\nfault = broken@prefill\n").is_err());
        assert!(parse("RKLLM-SIM 1\ncache_check = some\n").is_err());
        assert!(parse("RKLLM-SIM 1\nhidden_size = 0\n").is_err());
        assert!(parse("RKLLM-SIM 1\nvocab_size = 0\n").is_err());
        assert!(parse("RKLLM-SIM 1\nvocab_size = 4294967296\n").is_err());
        assert!(parse("RKLLM-SIM 1\nrelease = 1.2.1\n").is_err());
    }

    #[test]
    fn escapes_in_values() {
        let spec = parse("RKLLM-SIM 1\nreply = a\\nb \\\\n c\\t = d\n").unwrap();
        assert_eq!(spec.reply, "a\nb \\n c\\t = d");
        assert_eq!(unescape("x\\"), "x\\");
        assert_eq!(unescape("\\\\\\n"), "\\\n");
    }

    #[test]
    fn missing_and_directory_paths_fail() {
        assert!(load(Path::new("/nonexistent/model.sim")).is_err());
        assert!(load(&std::env::temp_dir()).unwrap_err().contains("directory"));
    }
}
