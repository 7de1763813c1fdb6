//! [`Model`]: an open model, and everything done with it — in this process
//! (`crate::local`) or, in isolation mode, in a worker process
//! (`crate::isolation`). The API is the same in both modes.

use super::stream::Stream;
use crate::cache::CacheInfo;
use crate::callback_scope::CallbackScope;
use crate::config::{GenerateRequest, OpenConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::isolation::IsolatedModel;
use crate::local::LocalModel;
use crate::outcome::{Output, Stats, Step, Tensor};
use crate::runtime::Family;
use std::ops::ControlFlow;
use std::path::Path;

/// An open model. Cheap to clone (clones share the model); every method may be
/// called from any thread. Calls on models of the same runtime run one at a
/// time in the order they were made.
///
/// In isolation mode ([`OpenConfig::isolated`]) the runtime runs in a worker
/// process of its own; each model is then its own runtime.
#[derive(Clone)]
pub struct Model {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Local(LocalModel),
    Isolated(IsolatedModel),
}

/// Calls the same method on whichever backend the model has.
macro_rules! both {
    ($self:ident . $($call:tt)+) => {
        match &$self.backend {
            Backend::Local(m) => m.$($call)+,
            Backend::Isolated(m) => m.$($call)+,
        }
    };
}

impl Model {
    /// Loads the runtime (if needed), checks the configuration, and creates
    /// the model. Errors say what was wrong before the runtime saw anything.
    /// In isolation mode this starts the worker process first.
    pub fn open(config: &OpenConfig) -> Result<Model> {
        config.validate_limits()?;
        let backend = if config.resolved_isolated()? {
            Backend::Isolated(IsolatedModel::open(config)?)
        } else {
            Backend::Local(LocalModel::open(config)?)
        };
        Ok(Model { backend })
    }

    /// The runtime's release family.
    pub fn family(&self) -> Family {
        both!(self.family())
    }

    /// Where the runtime was loaded from.
    pub fn runtime_path(&self) -> &str {
        both!(self.runtime_path())
    }

    /// The runtime's version ("1.2.1"), as the runtime printed it at init
    /// (it has no function for it); `None` if it printed none.
    pub fn runtime_version(&self) -> Option<&str> {
        both!(self.runtime_version())
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        both!(self.model_path())
    }

    /// Whether the model runs in a worker process (isolation mode).
    pub fn is_isolated(&self) -> bool {
        matches!(self.backend, Backend::Isolated(_))
    }

    /// Isolation mode: the process id of the current worker, if one is
    /// running. `None` in-process.
    pub fn worker_pid(&self) -> Option<u32> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Isolated(m) => m.worker_pid(),
        }
    }

    /// Isolation mode: how many times the worker was started again after the
    /// first (automatic and explicit restarts). 0 in-process.
    pub fn restarts(&self) -> u32 {
        match &self.backend {
            Backend::Local(_) => 0,
            Backend::Isolated(m) => m.restarts(),
        }
    }

    fn callback_key(&self) -> usize {
        both!(self.callback_key())
    }

    /// Starts a generation and returns a pull stream of its text. With a
    /// prompt cache loaded, give the full prompt (see [`Model::cache_load`]).
    pub fn stream(&self, request: &GenerateRequest) -> Result<Stream> {
        Ok(match &self.backend {
            Backend::Local(m) => m.stream(request)?.into(),
            Backend::Isolated(m) => m.stream(request)?.into(),
        })
    }

    /// Generates a reply, calling `on_chunk` with each piece of complete UTF-8
    /// text on this thread. Return `ControlFlow::Break(())` to stop early.
    /// Inside `on_chunk` only [`Model::abort`] may be called on models of the
    /// same runtime; anything else returns [`ErrorKind::Reentrant`].
    pub fn generate(
        &self,
        request: &GenerateRequest,
        mut on_chunk: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Stats> {
        let mut stream = self.stream(request)?;
        let key = self.callback_key();
        // One buffer for every chunk: no allocation per token.
        let mut text = String::new();
        loop {
            text.clear();
            match stream.next_into(None, &mut text)? {
                Step::Text => {
                    let flow = {
                        let _scope = CallbackScope::enter(key);
                        on_chunk(&text)
                    };
                    if flow.is_break() {
                        stream.stop_by_callback();
                    }
                }
                Step::Finished(stats) => return Ok(stats),
                Step::Timeout => {}
            }
        }
    }

    /// Runs `request` and returns the last hidden layer of its input: one
    /// row per prompt token (embeddings, for retrieval), with the run's
    /// figures. Nothing is generated. Fails with
    /// [`ErrorKind::RuntimeFailed`] when the runtime returns none.
    pub fn hidden_states(&self, request: &GenerateRequest) -> Result<(Tensor, Stats)> {
        both!(self.output(request, Output::HiddenStates))
    }

    /// Runs `request` and returns the logits the runtime computed (rows of
    /// the vocabulary's size), with the run's figures. Nothing is generated.
    pub fn logits(&self, request: &GenerateRequest) -> Result<(Tensor, Stats)> {
        both!(self.output(request, Output::Logits))
    }

    /// Stops every generation of this model that is queued or running. Returns
    /// at once; those generations finish with `FinishReason::Aborted`. Safe
    /// from any thread, including inside a chunk callback.
    pub fn abort(&self) {
        both!(self.abort())
    }

    /// Empties the KV history (optionally keeping the system prompt).
    pub fn clear_history(&self, keep_system_prompt: bool) -> Result<()> {
        both!(self.clear_history(keep_system_prompt))
    }

    /// Tokens currently held in the KV cache.
    pub fn kv_cache_tokens(&self) -> Result<u32> {
        both!(self.kv_cache_tokens())
    }

    /// Replaces the model's chat template.
    pub fn set_chat_template(&self, system: &str, prefix: &str, postfix: &str) -> Result<()> {
        both!(self.set_chat_template(system, prefix, postfix))
    }

    /// Declares function tools (`tools_json`: a JSON array of tool
    /// descriptions) and the marker the model uses for tool responses.
    pub fn set_function_tools(&self, system: &str, tools_json: &str, tool_response: &str) -> Result<()> {
        both!(self.set_function_tools(system, tools_json, tool_response))
    }

    /// Loads a LoRA adapter, to be selected per request by `name`.
    pub fn load_lora(&self, path: &Path, name: &str, scale: f32) -> Result<()> {
        both!(self.load_lora(path, name, scale))
    }

    /// Prefills `request.prompt` with saving on and writes a prompt cache at
    /// `path` (the manifest; the payload goes beside it). The KV history is
    /// cleared first so the cache holds this prompt alone; generation stops
    /// after the first token. A crash at any point leaves the previous cache
    /// at `path` intact. Fails while a cache is loaded.
    pub fn cache_save(&self, request: &GenerateRequest, path: &Path) -> Result<CacheInfo> {
        both!(self.cache_save(request, path))
    }

    /// Validates the cache at `path` and loads it as the KV prefix of later
    /// requests. Each failure has its own error kind, checked in this order:
    /// `CacheNotFound`, `CacheInvalid`, `CacheVersion`, `CacheTruncated`,
    /// `CacheCorrupt`, `CacheMismatch` (other model or runtime family). While
    /// it is loaded, give each request the **full** prompt, starting with the
    /// cached one; rkl sends only the rest, and refuses a prompt that does
    /// not start with the cached prompt.
    pub fn cache_load(&self, path: &Path) -> Result<CacheInfo> {
        both!(self.cache_load(path))
    }

    /// Drops a loaded prompt cache; requests then start from an empty history.
    pub fn cache_release(&self) -> Result<()> {
        both!(self.cache_release())
    }

    /// Isolation mode: stops the worker (its generations end with
    /// `FinishReason::Aborted`), starts a new one and opens the model again,
    /// restoring the chat template, function tools, LoRA adapters and loaded
    /// prompt cache (not the KV history). Not limited by the restart policy,
    /// whose count it resets. In-process: [`ErrorKind::NotSupported`].
    pub fn restart(&self) -> Result<()> {
        match &self.backend {
            Backend::Local(_) => Err(Error::new(
                ErrorKind::NotSupported,
                "restart needs isolation mode; an in-process model cannot be restarted (close it and open it again)",
            )),
            Backend::Isolated(m) => m.restart(),
        }
    }

    /// Closes the model: aborts its generations, waits for calls already
    /// queued on it, and destroys the runtime handle. Closing again is a no-op.
    pub fn close(&self) -> Result<()> {
        both!(self.close())
    }

    /// Whether [`Model::close`] was called.
    pub fn is_closed(&self) -> bool {
        both!(self.is_closed())
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("model_path", &self.model_path())
            .field("runtime", &self.runtime_path())
            .field("family", &self.family())
            .field("isolated", &self.is_isolated())
            .field("closed", &self.is_closed())
            .finish()
    }
}
