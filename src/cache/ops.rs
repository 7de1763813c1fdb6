//! Saving, loading, releasing and inspecting prompt caches.

use super::check::{check_files, CheckedCache};
use super::files::{self, CachePath};
use super::identity::{self, file_checksum, model_identity, prompt_hash};
use super::manifest::{KvSettings, Manifest, PayloadRecord, PromptRecord, FORMAT_VERSION};
use super::verified::{remember, FileStamp};
use crate::config::{cstring, GenerateRequest};
use crate::error::{Error, ErrorKind, Result};
use crate::generation::{FinishReason, Stats};
use crate::model::{LoadedPrompt, LocalModel};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a cache is and whether it can be used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// The manifest's path.
    pub path: PathBuf,
    /// The payload's path, when the manifest could be read.
    pub payload_path: Option<PathBuf>,
    /// The manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// The verdict.
    pub verdict: Verdict,
    /// Statistics of the run that wrote it (only from `cache_save`).
    pub save_stats: Option<Stats>,
}

/// Whether a cache can be loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// Files whole and checksums right; the model file it names is unchanged.
    Valid,
    /// Files whole, but the model file it names changed or is gone.
    Stale(String),
    /// Unusable; the error says why.
    Invalid(Error),
}

impl CacheInfo {
    fn from_checked(path: &Path, checked: CheckedCache, verdict: Verdict) -> CacheInfo {
        let CheckedCache { manifest, payload_path, .. } = checked;
        CacheInfo {
            path: path.to_path_buf(),
            payload_path: Some(payload_path),
            manifest: Some(manifest),
            verdict,
            save_stats: None,
        }
    }
}

/// Reads and checks a cache without a model: everything in the manifest plus
/// a verdict. Never fails; problems are in the verdict.
pub fn inspect(path: &Path) -> CacheInfo {
    match check_files(path) {
        Ok(checked) => {
            let recorded = &checked.manifest.model;
            let verdict = match model_identity(Path::new(&recorded.path)) {
                Ok(now) if now.fingerprint == recorded.fingerprint && now.size == recorded.size => Verdict::Valid,
                Ok(_) => Verdict::Stale(format!("model '{}' changed since the cache was saved", recorded.path)),
                Err(_) => Verdict::Stale(format!("model '{}' is gone", recorded.path)),
            };
            CacheInfo::from_checked(path, checked, verdict)
        }
        Err(e) => {
            let manifest = Manifest::read(path).ok();
            let payload_path = manifest.as_ref().map(|m| path.parent().unwrap_or(Path::new(".")).join(&m.payload.file));
            CacheInfo { path: path.to_path_buf(), payload_path, manifest, verdict: Verdict::Invalid(e), save_stats: None }
        }
    }
}

/// Removes a temporary file on drop unless disarmed.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            files::remove_quietly(path);
        }
    }
}

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
        if request.prompt.is_empty() {
            return Err(Error::invalid("the prompt to cache is empty"));
        }
        let target = CachePath::new(path)?;
        let temp_payload = target.temp("kv");
        let temp_text = temp_payload
            .to_str()
            .ok_or_else(|| Error::invalid(format!("cache path '{}' is not UTF-8", path.display())))?
            .to_string();
        files::create_placeholder(&temp_payload)?;
        let mut temp_guard = TempFile(Some(temp_payload.clone()));

        self.clear_history(false)?;
        let mut run = request.clone();
        run.max_new_tokens = Some(1);
        run.keep_history = false;
        let mut stream = self.start_stream(&run, Some(cstring("cache path", &temp_text)?))?;
        if self.inner().abort_count() != aborts {
            stream.abort();
        }
        for chunk in &mut stream {
            chunk?;
        }
        let stats = stream.stats().expect("a drained stream has stats");
        if stats.finish == FinishReason::Aborted {
            return Err(Error::new(ErrorKind::Aborted, "saving the prompt cache was aborted"));
        }

        let written = std::fs::metadata(&temp_payload).map(|m| m.len()).unwrap_or(0);
        if written == 0 {
            return Err(Error::new(ErrorKind::RuntimeFailed, "the runtime wrote no prompt cache"));
        }
        files::sync_file(&temp_payload)?;
        let (checksum, size) = file_checksum(&temp_payload)?;
        let payload_name = target.payload_name(&checksum);
        let payload_path = target.dir.join(&payload_name);
        let previous = Manifest::read(&target.manifest).ok();
        files::rename(&temp_payload, &payload_path)?;
        temp_guard.0 = Some(payload_path.clone());

        let manifest = self.manifest_for(request, PayloadRecord { file: payload_name.clone(), size, checksum: checksum.clone() });
        let temp_manifest = target.temp("json");
        let manifest_guard = TempFile(Some(temp_manifest.clone()));
        files::write_synced(&temp_manifest, &manifest.to_json())?;
        files::rename(&temp_manifest, &target.manifest)?; // the commit point
        drop(manifest_guard);
        temp_guard.disarm();
        files::sync_dir(&target.dir)?;

        if let Some(old) = previous.filter(|m| m.payload.file != payload_name) {
            files::remove_quietly(&target.dir.join(old.payload.file));
        }
        if let Ok(meta) = std::fs::metadata(&payload_path) {
            remember(FileStamp::new(&meta, &checksum));
        }
        Ok(CacheInfo {
            path: target.manifest,
            payload_path: Some(payload_path),
            manifest: Some(manifest),
            verdict: Verdict::Valid,
            save_stats: Some(stats),
        })
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
            differences.push(format!("it was saved for model '{}' ({} bytes), this is '{}' ({} bytes)", m.model.path, m.model.size, mine.path, mine.size));
        }
        if m.runtime_family != self.family().name() {
            differences.push(format!("it was saved with runtime ABI {}, this runtime is {}", m.runtime_family, self.family()));
        }
        if !differences.is_empty() {
            return Err(Error::new(ErrorKind::CacheMismatch, format!("prompt cache '{}' does not fit: {}", path.display(), differences.join("; "))));
        }
        // The runtime reads the very file that was checked, through its
        // descriptor, which stays open until the call returns.
        self.inner().raw.load_prompt_cache(cstring("cache path", &checked.runtime_path())?)?;
        self.inner().set_loaded_prompt(Some(LoadedPrompt { hash: m.prompt.hash.clone(), bytes: m.prompt.bytes as usize }));
        Ok(CacheInfo::from_checked(path, checked, Verdict::Valid))
    }

    /// Drops a loaded prompt cache; requests then start from an empty history.
    pub fn cache_release(&self) -> Result<()> {
        self.check_usable()?;
        self.inner().raw.release_prompt_cache()?;
        self.inner().set_loaded_prompt(None);
        Ok(())
    }

    fn manifest_for(&self, request: &GenerateRequest, payload: PayloadRecord) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            library_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_family: self.family().name().to_string(),
            runtime_version: self.runtime_version().map(str::to_string),
            model: self.inner().identity().clone(),
            prompt: PromptRecord {
                hash: prompt_hash(request.prompt.as_bytes()),
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

/// The continuation to send when `prompt` starts with the loaded cache's
/// prompt; an error otherwise.
pub(crate) fn strip_cached_prefix<'a>(prompt: &'a str, loaded: &LoadedPrompt) -> Result<&'a str> {
    let fits = prompt.len() > loaded.bytes
        && prompt.is_char_boundary(loaded.bytes)
        && identity::prompt_hash(&prompt.as_bytes()[..loaded.bytes]) == loaded.hash;
    if fits {
        return Ok(&prompt[loaded.bytes..]);
    }
    Err(Error::new(
        ErrorKind::CacheMismatch,
        format!(
            "a prompt cache is loaded: the prompt must start with the cached prompt ({} bytes) and continue after it; \
             give the full prompt, or release the cache",
            loaded.bytes
        ),
    ))
}
