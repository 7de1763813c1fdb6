//! What a caller asks for: how to open a model and what to generate.

use crate::error::{Error, ErrorKind, Result};
use crate::hooks::RuntimeHooks;
use crate::input::{CrossAttention, Input, MediaTags};
use crate::runtime::{Family, ModelParams, Sampling, DEFAULT_RUNTIME};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the runtime library when no path is configured.
pub const ENV_RUNTIME: &str = "RKL_RUNTIME";
/// Environment variable forcing the runtime ABI ("1.2" or "1.3").
pub const ENV_RUNTIME_ABI: &str = "RKL_RUNTIME_ABI";
/// Environment variable that turns isolation mode on (`1`) for every model.
pub const ENV_ISOLATED: &str = "RKL_ISOLATED";

/// The default [`OpenConfig::abort_grace`].
pub const DEFAULT_ABORT_GRACE: Duration = Duration::from_secs(2);

/// How often isolation mode restarts a worker that died, by itself, before
/// it gives up until [`Model::restart`](crate::Model::restart) is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// Automatic restarts allowed within `window` (0: never restart by itself).
    pub max_restarts: u32,
    /// The sliding window the restarts are counted in.
    pub window: Duration,
}

impl Default for RestartPolicy {
    /// Three restarts per minute.
    fn default() -> RestartPolicy {
        RestartPolicy { max_restarts: 3, window: Duration::from_secs(60) }
    }
}

/// How to open a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenConfig {
    /// The `.rkllm` model file.
    pub model_path: PathBuf,
    /// The runtime library; else `RKL_RUNTIME`, else the loader's search for
    /// `librkllmrt.so`.
    pub runtime_path: Option<PathBuf>,
    /// The runtime ABI; else `RKL_RUNTIME_ABI`, else detected. It must agree
    /// with what the runtime shows when detection is certain.
    pub runtime_abi: Option<Family>,
    /// Init-time parameters (unset fields keep the runtime's defaults).
    pub params: ModelParams,
    /// Isolation mode: run the runtime in a worker process (`rkl-host`), so
    /// that a crash or hang of the runtime cannot take this process down.
    /// Also turned on by `RKL_ISOLATED=1`. Default: in-process.
    pub isolated: bool,
    /// A call or generation on which the runtime makes no progress (no
    /// callback, no return) for this long fails with
    /// [`ErrorKind::Timeout`]: isolation mode kills the worker; in-process
    /// the runtime's thread stays stuck and its models become unusable.
    /// Must exceed the longest prefill. `None` (default): wait forever.
    pub call_timeout: Option<Duration>,
    /// How long the runtime may take to stop after an abort: beyond it,
    /// isolation mode kills and restarts the worker; in-process the late stop
    /// is logged and shows in [`Stats::abort_ms`](crate::Stats::abort_ms).
    /// Default 2 s.
    pub abort_grace: Duration,
    /// Isolation mode: automatic restarts after the worker died.
    pub restart: RestartPolicy,
    /// Isolation mode: the worker program; else `RKL_HOST`, else `rkl-host`
    /// beside the library, else beside the executable, else on `PATH`.
    pub host_path: Option<PathBuf>,
    /// Automatic prompt caching: requests that mark a stable prefix
    /// ([`GenerateRequest::cache_prefix`]) reuse a cache of it from this
    /// directory, saving one the first time. `None` (default): off.
    #[serde(default)]
    pub auto_cache: Option<AutoCache>,
    /// The strings around and inside each image and video of a multimodal
    /// prompt (see [`MediaTags`]). Default: the runtime's (1.2), empty (1.3).
    #[serde(default)]
    pub media_tags: MediaTags,
    /// A tokenizer and an embedder of the caller's own (1.3, in-process
    /// only); see [`RuntimeHooks`].
    #[serde(skip)]
    pub hooks: RuntimeHooks,
}

/// Where automatic prompt caches live and how much room they may take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoCache {
    /// The directory (made, owner-only, when missing). Several processes
    /// and models may share it.
    pub dir: PathBuf,
    /// The most bytes its automatic caches may take together (manifests and
    /// payloads); the least recently used are removed beyond it. 0: no cap.
    pub max_bytes: u64,
}

impl Default for OpenConfig {
    fn default() -> OpenConfig {
        OpenConfig {
            model_path: PathBuf::new(),
            runtime_path: None,
            runtime_abi: None,
            params: ModelParams::default(),
            isolated: false,
            call_timeout: None,
            abort_grace: DEFAULT_ABORT_GRACE,
            restart: RestartPolicy::default(),
            host_path: None,
            auto_cache: None,
            media_tags: MediaTags::default(),
            hooks: RuntimeHooks::default(),
        }
    }
}

impl OpenConfig {
    /// A configuration for `model_path` with every other setting at its default.
    pub fn new(model_path: impl Into<PathBuf>) -> OpenConfig {
        OpenConfig { model_path: model_path.into(), ..OpenConfig::default() }
    }

    /// The runtime location after applying the environment.
    pub(crate) fn resolved_runtime_path(&self) -> Result<String> {
        let chosen = match &self.runtime_path {
            Some(p) => p.clone(),
            None => match std::env::var_os(ENV_RUNTIME) {
                Some(v) if !v.is_empty() => PathBuf::from(v),
                _ => PathBuf::from(DEFAULT_RUNTIME),
            },
        };
        let text =
            chosen.to_str().ok_or_else(|| Error::invalid(format!("runtime path {chosen:?} is not valid UTF-8")))?;
        if text.is_empty() {
            return Err(Error::invalid("runtime path is empty"));
        }
        cstring("runtime path", text)?;
        Ok(text.to_string())
    }

    /// Whether isolation mode is on, after applying `RKL_ISOLATED`.
    pub(crate) fn resolved_isolated(&self) -> Result<bool> {
        if self.isolated {
            return Ok(true);
        }
        match std::env::var(ENV_ISOLATED) {
            Err(std::env::VarError::NotPresent) => Ok(false),
            Ok(v) => match v.trim() {
                "" | "0" | "false" | "no" | "off" => Ok(false),
                "1" | "true" | "yes" | "on" => Ok(true),
                other => Err(Error::invalid(format!("{ENV_ISOLATED}={other}: expected 1 or 0"))),
            },
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid(format!("{ENV_ISOLATED} is not UTF-8"))),
        }
    }

    /// Checks the reliability settings.
    pub(crate) fn validate_limits(&self) -> Result<()> {
        if self.call_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("call_timeout must be longer than 0 (or unset)"));
        }
        Ok(())
    }

    /// The ABI override after applying the environment.
    pub(crate) fn resolved_abi(&self) -> Result<Option<Family>> {
        if self.runtime_abi.is_some() {
            return Ok(self.runtime_abi);
        }
        match std::env::var(ENV_RUNTIME_ABI) {
            Ok(v) if v.trim().is_empty() || v.trim() == "auto" => Ok(None),
            Ok(v) => v.parse().map(Some).map_err(|e| Error::invalid(format!("{ENV_RUNTIME_ABI}: {e}"))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid(format!("{ENV_RUNTIME_ABI} is not UTF-8"))),
        }
    }

    /// Checks the model path is a readable regular file, before the runtime
    /// sees it, and returns it as a C string.
    pub(crate) fn checked_model_path(&self) -> Result<CString> {
        let path: &Path = &self.model_path;
        if path.as_os_str().is_empty() {
            return Err(Error::invalid("model path is empty"));
        }
        let text = path.to_str().ok_or_else(|| Error::invalid(format!("model path {path:?} is not valid UTF-8")))?;
        let c = cstring("model path", text)?;
        let not_found = |why: String| Error::new(ErrorKind::ModelNotFound, format!("model '{text}' {why}"));
        // Out of descriptors or memory is not a missing model.
        let failed = |what: &str, e: std::io::Error| {
            Error::from_os(ErrorKind::ModelNotFound, format!("model '{text}' {what}: {e}"), &e)
        };
        let meta = std::fs::metadata(path).map_err(|e| failed("cannot be opened", e))?;
        if meta.is_dir() {
            return Err(not_found("is a directory, not a model file".into()));
        }
        if !meta.is_file() {
            return Err(not_found("is not a regular file".into()));
        }
        std::fs::File::open(path).map_err(|e| failed("cannot be read", e))?;
        Ok(c)
    }
}

/// Who speaks in a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A user message (the usual case).
    #[default]
    User,
    /// The result of a function call (with function tools).
    Tool,
}

impl Role {
    /// The runtime's name for the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Tool => "tool",
        }
    }
}

/// One generation request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The prompt text (with a loaded prompt cache: only the continuation).
    pub prompt: String,
    /// Who speaks.
    pub role: Role,
    /// Qwen3-style thinking mode.
    pub enable_thinking: bool,
    /// Keep this turn in the KV history so the next request continues the
    /// conversation; otherwise history returns to what it was before.
    pub keep_history: bool,
    /// Stop after this many tokens (`None`: the model's init setting).
    pub max_new_tokens: Option<u32>,
    /// Name of a loaded LoRA adapter to apply.
    pub lora: Option<String>,
    /// Automatic prompt caching: the prompt's first this many bytes are a
    /// stable prefix (a system prompt, say) whose KV state is cached and
    /// reused by later requests with the same prefix. It must end on a
    /// character boundary, before the end of the prompt. Ignored (`None`)
    /// unless the model was opened with [`OpenConfig::auto_cache`].
    #[serde(default)]
    pub cache_prefix: Option<usize>,
    /// Sampling settings for this request alone (1.3 runtimes; a 1.2
    /// runtime refuses them with [`ErrorKind::NotSupported`](crate::ErrorKind::NotSupported)).
    #[serde(default)]
    pub sampling: Option<Sampling>,
    /// What is fed to the model: the prompt text (default), token ids,
    /// embeddings, or the prompt with image and video embeddings.
    #[serde(default)]
    pub input: Input,
    /// The encoder state of a cross-attention model for this request (a
    /// model opened with [`ModelParams::use_cross_attn`]). The runtime keeps
    /// using the last one given until another is.
    #[serde(default)]
    pub cross_attn: Option<CrossAttention>,
}

impl GenerateRequest {
    /// A request for `prompt` with every other setting at its default.
    pub fn new(prompt: impl Into<String>) -> GenerateRequest {
        GenerateRequest { prompt: prompt.into(), ..GenerateRequest::default() }
    }
}

/// Largest prompt rkl passes on (bytes); far above any context window.
pub const MAX_PROMPT_BYTES: usize = 16 << 20;

/// `text` as a C string, or an error naming `what` and where the NUL is.
pub fn cstring(what: &str, text: &str) -> Result<CString> {
    CString::new(text).map_err(|e| Error::invalid(format!("{what} contains a NUL byte at offset {}", e.nul_position())))
}

/// Checks that `bytes` is UTF-8 without NUL, as every text argument must be.
pub fn checked_text<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a str> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::invalid(format!("{what} is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()))
    })?;
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(Error::invalid(format!("{what} contains a NUL byte at offset {at}")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_checks_name_the_problem() {
        assert_eq!(checked_text("prompt", "héllo".as_bytes()).unwrap(), "héllo");
        let e = checked_text("prompt", b"ab\xffc").unwrap_err();
        assert!(e.message().contains("not valid UTF-8") && e.message().contains("offset 2"), "{e}");
        let e = checked_text("role", b"a\0b").unwrap_err();
        assert!(e.message().contains("NUL byte at offset 1"), "{e}");
    }

    #[test]
    fn model_path_checks() {
        let e = OpenConfig::new("").checked_model_path().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = OpenConfig::new("/nonexistent/model.rkllm").checked_model_path().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ModelNotFound);
        let e = OpenConfig::new(std::env::temp_dir()).checked_model_path().unwrap_err();
        assert!(e.message().contains("directory"), "{e}");
    }
}
