//! `LocalModel`: an open model on a runtime loaded into this process, and
//! everything done with it (the in-process backend of `crate::Model`).

use super::inner::ModelInner;
use super::stream::LocalStream;
use crate::cache::{model_identity, prepare_auto_dir};
use crate::callback_scope::in_callback_of;
use crate::config::{cstring, GenerateRequest, OpenConfig, MAX_PROMPT_BYTES};
use crate::error::{Error, ErrorKind, Result};
use crate::locked::locked;
use crate::outcome::Output;
use crate::runtime::{infer_mode, CrossAttnBuffers, Family, InitExtras, RunRequest, RunShared, Runtime};
use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An open model in this process. Cheap to clone (clones share the model);
/// every method may be called from any thread. Calls on models of the same
/// runtime run one at a time in the order they were made.
#[derive(Clone)]
pub(crate) struct LocalModel {
    inner: Arc<ModelInner>,
}

impl LocalModel {
    /// Loads the runtime (if needed), checks the configuration, and creates
    /// the model. Errors say what was wrong before the runtime saw anything.
    pub fn open(config: &OpenConfig) -> Result<LocalModel> {
        let model_path = config.checked_model_path()?;
        config.params.validate()?;
        let runtime_path = config.resolved_runtime_path()?;
        let abi = config.resolved_abi()?;
        let identity = model_identity(&config.model_path)?;
        if let Some(auto) = &config.auto_cache {
            prepare_auto_dir(&auto.dir)?;
        }
        let image_tags = match &config.media_tags.image {
            Some(tags) => {
                tags.check("image")?;
                Some([cstring("tag", &tags.start)?, cstring("tag", &tags.end)?, cstring("tag", &tags.content)?])
            }
            None => None,
        };
        if let Some(tags) = &config.media_tags.video {
            tags.check("video")?;
        }
        let runtime = Runtime::load(&runtime_path, abi)?;
        let extras = InitExtras { image_tags, hooks: config.hooks.clone() };
        let raw = runtime.init(model_path, &config.params, config.call_timeout, extras)?;
        Ok(LocalModel {
            inner: Arc::new(ModelInner {
                raw,
                model_path: config.model_path.clone(),
                identity,
                init_max_new_tokens: config.params.max_new_tokens.unwrap_or(0),
                max_context_len: config.params.max_context_len,
                chat_template: Mutex::new(None),
                loras: Mutex::new(Vec::new()),
                auto_cache: config.auto_cache.clone(),
                auto_lock: Mutex::new(()),
                loaded_prompt: Mutex::new(None),
                closed: AtomicBool::new(false),
                inflight: Mutex::new(Vec::new()),
                aborts: AtomicU64::new(0),
                abort_grace: config.abort_grace,
                media_tags: config.media_tags.clone(),
                use_cross_attn: config.params.use_cross_attn == Some(true),
            }),
        })
    }

    /// The runtime's release family.
    pub fn family(&self) -> Family {
        self.inner.raw.runtime().family()
    }

    /// Where the runtime was loaded from.
    pub fn runtime_path(&self) -> &str {
        self.inner.raw.runtime().path()
    }

    /// The runtime's version as it printed it at init, if it did.
    pub fn runtime_version(&self) -> Option<&str> {
        self.inner.raw.runtime().version()
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        &self.inner.model_path
    }

    pub(crate) fn inner(&self) -> &ModelInner {
        &self.inner
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Closed, "the model is closed"));
        }
        if in_callback_of(self.callback_key()) {
            return Err(Error::new(
                ErrorKind::Reentrant,
                "called from inside a chunk callback of a generation on the same runtime; \
                 only abort is allowed there (the callback's return value can stop the generation)",
            ));
        }
        Ok(())
    }

    /// The runtime this model is on.
    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        self.inner.raw.runtime()
    }

    /// The key of chunk callbacks that calls on this model must not be made
    /// from: the runtime's id.
    pub(crate) fn callback_key(&self) -> usize {
        self.inner.raw.runtime().id()
    }

    /// Whether starting `request` may involve automatic prompt caching
    /// (saving or loading a cache first).
    pub fn caches_automatically(&self, request: &GenerateRequest) -> bool {
        self.inner.auto_cache.is_some() && request.cache_prefix.is_some()
    }

    /// Starts a generation and returns a pull stream of its text. With a
    /// prompt cache loaded, give the full prompt (see [`LocalModel::cache_load`]).
    /// With automatic prompt caching, the prefix's cache is made the loaded
    /// one first (see `auto_cache.rs`).
    pub fn stream(&self, request: &GenerateRequest) -> Result<LocalStream> {
        self.stream_for(request, Output::Text)
    }

    /// [`LocalModel::stream`] for any output (see `output.rs`).
    pub(crate) fn stream_for(&self, request: &GenerateRequest, output: Output) -> Result<LocalStream> {
        if self.inner.auto_cache.is_none() {
            return self.start_run(request, None, output);
        }
        let started_at = std::time::Instant::now();
        let _choosing = locked(&self.inner.auto_lock);
        let cache = self.prepare_auto_cache(request)?;
        let mut stream = self.start_run(request, None, output)?;
        stream.set_auto_cache(cache, started_at);
        Ok(stream)
    }

    /// Starts a run, optionally saving its prompt cache to `save_to`.
    pub(crate) fn start_stream(&self, request: &GenerateRequest, save_to: Option<CString>) -> Result<LocalStream> {
        self.start_run(request, save_to, Output::Text)
    }

    /// Starts a run for `output`, optionally saving its prompt cache to `save_to`.
    fn start_run(&self, request: &GenerateRequest, save_to: Option<CString>, output: Output) -> Result<LocalStream> {
        self.check_usable()?;
        if request.prompt.len() > MAX_PROMPT_BYTES {
            return Err(Error::invalid(format!(
                "prompt is {} bytes; the limit is {MAX_PROMPT_BYTES}",
                request.prompt.len()
            )));
        }
        let limit = match request.max_new_tokens {
            Some(0) => return Err(Error::invalid("max_new_tokens must be at least 1 when set")),
            Some(n) if n > i32::MAX as u32 => return Err(Error::invalid("max_new_tokens is too large")),
            Some(n) => n,
            None => 0,
        };
        if let Some(name) = &request.lora {
            let loaded = locked(&self.inner.loras);
            if !loaded.contains(name) {
                let known = if loaded.is_empty() {
                    "none is loaded".to_string()
                } else {
                    format!("loaded: {}", loaded.join(", "))
                };
                return Err(Error::invalid(format!("LoRA adapter '{name}' was never loaded ({known}); load it first")));
            }
        }
        let sampling = match &request.sampling {
            None => None,
            Some(sampling) => {
                sampling.validate()?;
                if !self.runtime().samples_per_run() {
                    return Err(Error::new(
                        ErrorKind::NotSupported,
                        format!(
                            "per-request sampling needs a 1.3 runtime; this one is {} (set sampling when opening the model)",
                            self.family()
                        ),
                    ));
                }
                Some(sampling.over(&self.inner.raw.sampling()))
            }
        };
        self.check_input(request)?;
        let data = self.run_data(request, self.inner.loaded_prompt().as_ref())?;
        let mode = match output {
            Output::Text => infer_mode::GENERATE,
            Output::HiddenStates => infer_mode::LAST_HIDDEN_LAYER,
            Output::Logits => infer_mode::LOGITS,
        };
        let run = RunRequest {
            data,
            mode,
            cross_attn: request.cross_attn.as_ref().map(|c| CrossAttnBuffers {
                k_cache: c.k_cache.clone(),
                v_cache: c.v_cache.clone(),
                mask: c.mask.clone(),
                positions: c.positions.clone(),
            }),
            role: cstring("role", request.role.as_str())?,
            enable_thinking: request.enable_thinking,
            keep_history: request.keep_history,
            max_new_tokens: limit as i32,
            lora: request.lora.as_deref().map(|name| cstring("lora name", name)).transpose()?,
            save_cache_path: save_to,
            sampling,
        };
        let shared = RunShared::with_mode(limit, mode);
        let stream = LocalStream::new(self.inner.clone(), shared.clone(), limit);
        self.inner.inflight.lock().unwrap_or_else(|p| p.into_inner()).push(shared.clone());
        // Closing may have started after the check above: look again now that
        // the run is registered, so close either sees it or refuses it here.
        if self.inner.closed.load(Ordering::Acquire) {
            drop(stream);
            return Err(Error::new(ErrorKind::Closed, "the model is closed"));
        }
        self.inner.raw.start_run(run, shared)?;
        Ok(stream)
    }

    /// Stops every generation of this model that is queued or running. Returns
    /// at once; those generations finish with `FinishReason::Aborted`. Safe
    /// from any thread, including inside a chunk callback.
    pub fn abort(&self) {
        self.inner.abort_all();
    }

    /// Empties the KV history (optionally keeping the system prompt).
    pub fn clear_history(&self, keep_system_prompt: bool) -> Result<()> {
        self.check_usable()?;
        if self.inner.loaded_prompt().is_some() {
            // The cached prefix goes with the history, whatever the runtime
            // keeps on a release: released, then everything cleared (the
            // cached tokens include any system prompt).
            self.inner.raw.release_prompt_cache()?;
            self.inner.set_loaded_prompt(None);
            return self.inner.raw.clear_kv_cache(false);
        }
        self.inner.raw.clear_kv_cache(keep_system_prompt)
    }

    /// Tokens currently held in the KV cache.
    pub fn kv_cache_tokens(&self) -> Result<u32> {
        self.check_usable()?;
        Ok(self.inner.raw.kv_cache_size()?.max(0) as u32)
    }

    /// Replaces the model's chat template.
    pub fn set_chat_template(&self, system: &str, prefix: &str, postfix: &str) -> Result<()> {
        self.check_usable()?;
        self.inner.raw.set_chat_template(
            cstring("system prompt", system)?,
            cstring("prompt prefix", prefix)?,
            cstring("prompt postfix", postfix)?,
        )?;
        *locked(&self.inner.chat_template) = Some([system.to_string(), prefix.to_string(), postfix.to_string()]);
        Ok(())
    }

    /// Declares function tools (`tools_json`: a JSON array of tool
    /// descriptions) and the marker the model uses for tool responses.
    pub fn set_function_tools(&self, system: &str, tools_json: &str, tool_response: &str) -> Result<()> {
        self.check_usable()?;
        self.inner.raw.set_function_tools(
            cstring("system prompt", system)?,
            cstring("tools", tools_json)?,
            cstring("tool response marker", tool_response)?,
        )
    }

    /// Loads a LoRA adapter, to be selected per request by `name`.
    pub fn load_lora(&self, path: &Path, name: &str, scale: f32) -> Result<()> {
        self.check_usable()?;
        if name.is_empty() {
            return Err(Error::invalid("LoRA name is empty"));
        }
        if !scale.is_finite() {
            return Err(Error::invalid(format!("LoRA scale {scale} is not finite")));
        }
        let text = path.to_str().ok_or_else(|| Error::invalid(format!("LoRA path {path:?} is not UTF-8")))?;
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                let message = format!("LoRA adapter '{text}' is not a regular file");
                return Err(Error::new(ErrorKind::ModelNotFound, message));
            }
            Err(e) => {
                let message = format!("LoRA adapter '{text}' cannot be read: {e}");
                return Err(Error::from_os(ErrorKind::ModelNotFound, message, &e));
            }
        }
        self.inner.raw.load_lora(cstring("LoRA path", text)?, cstring("LoRA name", name)?, scale)?;
        let mut loaded = locked(&self.inner.loras);
        if !loaded.iter().any(|n| n == name) {
            loaded.push(name.to_string());
        }
        Ok(())
    }

    /// Closes the model: aborts its generations, waits for calls already
    /// queued on it, and destroys the runtime handle. Closing again is a no-op.
    pub fn close(&self) -> Result<()> {
        if in_callback_of(self.callback_key()) {
            return Err(Error::new(
                ErrorKind::Reentrant,
                "cannot close a model from inside a chunk callback on its runtime",
            ));
        }
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.abort_all();
        self.inner.raw.destroy()
    }

    /// Whether [`LocalModel::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}
