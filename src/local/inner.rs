//! `ModelInner`: the state of one open in-process model that its streams
//! share with it (the runtime handle, the runs in flight, what is loaded).

use super::cached_prefix::LoadedPrompt;
use crate::cache::ModelIdentity;
use crate::config::AutoCache;
use crate::input::MediaTags;
use crate::locked::locked;
use crate::runtime::{RawModel, RunShared};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The state of one open model, shared by its clones and its streams.
pub(crate) struct ModelInner {
    pub(crate) raw: RawModel,
    pub(super) model_path: PathBuf,
    pub(super) identity: ModelIdentity,
    pub(super) init_max_new_tokens: i32,
    pub(super) max_context_len: Option<i32>,
    pub(super) chat_template: Mutex<Option<[String; 3]>>,
    /// Names of the LoRA adapters loaded: a request may name only these.
    pub(super) loras: Mutex<Vec<String>>,
    /// Automatic prompt caching, when configured.
    pub(super) auto_cache: Option<AutoCache>,
    /// Held from choosing a request's automatic cache until its run is
    /// queued, so concurrent requests never see each other's cache.
    pub(super) auto_lock: Mutex<()>,
    pub(super) loaded_prompt: Mutex<Option<LoadedPrompt>>,
    pub(super) closed: AtomicBool,
    pub(super) inflight: Mutex<Vec<Arc<RunShared>>>,
    /// How many times `abort_all` ran: a multi-step call (a cache save) that
    /// sees it change knows it was aborted between its steps.
    pub(super) aborts: AtomicU64,
    pub(super) abort_grace: Duration,
    /// Tags passed with each multimodal run (1.3).
    pub(super) media_tags: MediaTags,
    /// Opened as a cross-attention model.
    pub(super) use_cross_attn: bool,
}

impl ModelInner {
    /// Whether a per-request token limit needs an abort to be enforced (1.2
    /// has no per-run limit; 1.3 stops by itself).
    pub(crate) fn needs_limit_abort(&self) -> bool {
        !self.raw.runtime().limits_tokens_per_run()
    }

    /// Whether `tokens` reached the init-time limit.
    pub(crate) fn hit_init_limit(&self, tokens: u32) -> bool {
        self.init_max_new_tokens > 0 && tokens >= self.init_max_new_tokens as u32
    }

    /// Forgets a run that ended.
    pub(crate) fn end_run(&self, shared: &Arc<RunShared>) {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner()).retain(|r| !Arc::ptr_eq(r, shared));
    }

    /// The model file's identity, taken at open.
    pub(crate) fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// The chat template last set, if any.
    pub(crate) fn chat_template(&self) -> Option<[String; 3]> {
        locked(&self.chat_template).clone()
    }

    /// How late a run may stop after an abort before it is reported.
    pub(crate) fn abort_grace(&self) -> Duration {
        self.abort_grace
    }

    /// The context window set at open, if any.
    pub(crate) fn max_context_len(&self) -> Option<i32> {
        self.max_context_len
    }

    /// The loaded prompt cache's prompt, if any.
    pub(crate) fn loaded_prompt(&self) -> Option<LoadedPrompt> {
        locked(&self.loaded_prompt).clone()
    }

    /// Records the loaded prompt cache's prompt.
    pub(crate) fn set_loaded_prompt(&self, prompt: Option<LoadedPrompt>) {
        *locked(&self.loaded_prompt) = prompt;
    }

    /// A count that changes on every abort of the whole model.
    pub(crate) fn abort_count(&self) -> u64 {
        self.aborts.load(Ordering::Acquire)
    }

    pub(super) fn abort_all(&self) {
        self.aborts.fetch_add(1, Ordering::AcqRel);
        let runs = self.inflight.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for run in runs {
            self.raw.abort_run(&run);
        }
    }
}
