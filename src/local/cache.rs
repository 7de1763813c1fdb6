//! Prompt caches in this process: saving one by running the runtime with
//! saving on against a [`PendingSave`], loading a checked one into the
//! runtime, releasing it, and the prefix rule for requests while one is
//! loaded. The files themselves are `crate::cache`'s.

use super::cached_prefix::LoadedPrompt;
use super::model::LocalModel;
use super::run_input::recorded_prompt_hash;
use crate::cache::{
    check_files, CacheInfo, KvSettings, Manifest, PayloadRecord, PendingSave, PromptRecord, Verdict, FORMAT_VERSION,
};
use crate::config::{cstring, GenerateRequest};
use crate::error::{Error, ErrorKind, Result};
use crate::input::Input;
use crate::outcome::{FinishReason, Step};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest prompt preview kept in a manifest, in characters.
const PREVIEW_CHARS: usize = 80;

impl LocalModel {
    /// Prefills `request.prompt` with saving on and writes a prompt cache at
    /// `path` (the manifest; the payload goes beside it). The KV history is
    /// cleared first so the cache holds this prompt alone; generation stops
    /// after the first token. A crash at any point leaves the previous cache
    /// at `path` intact. Fails while a cache is loaded.
    pub fn cache_save(&self, request: &GenerateRequest, path: &Path) -> Result<CacheInfo> {
        // An abort of the model before the save's run is registered (the
        // clear below may wait behind other calls) must stop the save too.
        self.cache_save_after(request, path, self.inner().abort_count())
    }

    /// [`LocalModel::cache_save`], stopped by every abort of the model since
    /// its abort count (`ModelInner::abort_count`) was `aborts`. A caller
    /// that hands the save to another thread takes the count before it
    /// does, so that an abort it serves in between is not missed.
    pub(crate) fn cache_save_after(&self, request: &GenerateRequest, path: &Path, aborts: u64) -> Result<CacheInfo> {
        self.check_usable()?;
        if request.lora.is_some() {
            // The manifest does not record adapters yet, so such a cache
            // could later be loaded without the adapter that shaped it.
            return Err(Error::invalid("prompt caches with a LoRA adapter are not supported; save without `lora`"));
        }
        if self.inner().loaded_prompt().is_some() {
            return Err(Error::invalid("a prompt cache is loaded; release it before saving another"));
        }
        if matches!(request.input, Input::Tokens(_) | Input::Embeddings(_)) {
            return Err(Error::invalid(format!(
                "prompt caches are saved from text or multimodal input, not {} input (rkl could not check later \
                 requests against it)",
                request.input.kind()
            )));
        }
        if request.prompt.is_empty() {
            return Err(Error::invalid("the prompt to cache is empty"));
        }
        let pending = PendingSave::begin(path)?;

        self.clear_history(false)?;
        let mut run = request.clone();
        run.max_new_tokens = Some(1);
        run.keep_history = false;
        let mut stream = self.start_stream(&run, Some(cstring("cache path", pending.payload_for_runtime())?))?;
        if self.inner().abort_count() != aborts {
            stream.abort();
        }
        let mut text = String::new();
        let stats = loop {
            text.clear();
            if let Step::Finished(stats) = stream.next_into(None, &mut text)? {
                break stats;
            }
        };
        // Whatever the runtime kept of the save's run, the history is empty
        // afterwards, as documented (a runtime may keep it, as the ABI allows).
        self.inner().raw.clear_kv_cache(false)?;
        if stats.finish == FinishReason::Aborted {
            return Err(Error::new(ErrorKind::Aborted, "saving the prompt cache was aborted"));
        }
        let mut info = pending.commit(|payload| self.manifest_for(request, payload))?;
        info.save_stats = Some(stats);
        Ok(info)
    }

    /// Validates the cache at `path` and loads it as the KV prefix of later
    /// requests. Each failure has its own error kind, checked in this order:
    /// `CacheNotFound`, `CacheInvalid`, `CacheVersion`, `CacheTruncated`,
    /// `CacheCorrupt`, `CacheMismatch` (other model or runtime family). While
    /// it is loaded, give each request the **full** prompt, starting with the
    /// cached one; rkl sends only the rest, and refuses a prompt that does
    /// not start with the cached prompt.
    pub fn cache_load(&self, path: &Path) -> Result<CacheInfo> {
        self.check_usable()?;
        let checked = check_files(path)?;
        let m = &checked.manifest;
        let mut differences = Vec::new();
        let mine = self.inner().identity();
        if m.model.fingerprint != mine.fingerprint || m.model.size != mine.size {
            differences.push(format!(
                "it was saved for model '{}' ({} bytes), this is '{}' ({} bytes)",
                m.model.path, m.model.size, mine.path, mine.size
            ));
        }
        if m.runtime_family != self.family().name() {
            differences.push(format!(
                "it was saved with runtime ABI {}, this runtime is {}",
                m.runtime_family,
                self.family()
            ));
        }
        if !differences.is_empty() {
            return Err(Error::new(
                ErrorKind::CacheMismatch,
                format!("prompt cache '{}' does not fit: {}", path.display(), differences.join("; ")),
            ));
        }
        // The KV state is to be the cache's alone: a runtime may stack a
        // loaded cache on the history there (the ABI allows it).
        self.inner().set_loaded_prompt(None);
        self.inner().raw.clear_kv_cache(false)?;
        // The runtime reads the sealed copy of the checked bytes, through its
        // descriptor, which stays open until the call returns.
        self.inner().raw.load_prompt_cache(cstring("cache path", &checked.runtime_path())?)?;
        self.inner().set_loaded_prompt(Some(LoadedPrompt {
            hash: m.prompt.hash.clone(),
            bytes: m.prompt.bytes as usize,
            automatic: None,
        }));
        Ok(CacheInfo::from_checked(path, checked, Verdict::Valid))
    }

    /// Drops a loaded prompt cache; requests then start from an empty history.
    pub fn cache_release(&self) -> Result<()> {
        self.check_usable()?;
        self.inner().raw.release_prompt_cache()?;
        self.inner().set_loaded_prompt(None);
        // A runtime may keep the history a release leaves (the ABI allows it).
        self.inner().raw.clear_kv_cache(false)
    }

    fn manifest_for(&self, request: &GenerateRequest, payload: PayloadRecord) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            library_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_family: self.family().name().to_string(),
            runtime_version: self.runtime_version().map(str::to_string),
            model: self.inner().identity().clone(),
            prompt: PromptRecord {
                hash: recorded_prompt_hash(request),
                bytes: request.prompt.len() as u64,
                preview: request.prompt.chars().take(PREVIEW_CHARS).collect(),
            },
            settings: KvSettings {
                chat_template: self.inner().chat_template(),
                role: request.role.as_str().to_string(),
                enable_thinking: request.enable_thinking,
                max_context_len: self.inner().max_context_len(),
            },
            payload,
            created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }
}
