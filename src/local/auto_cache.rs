//! Automatic prompt caching: before a request that marks a stable prefix
//! runs, the prefix's cache is made the loaded one — already loaded, loaded
//! from the directory, or saved there first and then loaded. The files and
//! their names are `crate::cache`'s; this is the order of the steps.

use super::model::LocalModel;
use crate::cache::{auto_manifest_path, prune, touch, AutoKey};
use crate::config::GenerateRequest;
use crate::error::{Error, ErrorKind, Result};
use crate::input::{markers, Input, IMAGE_MARKER, VIDEO_MARKER};
use crate::outcome::CacheUse;
use std::path::{Path, PathBuf};

impl LocalModel {
    /// Makes the cache of `request`'s prefix the loaded one, if the request
    /// marks one; releases a cache loaded automatically before when it
    /// marks none (a LoRA adapter in the request counts as none: caches do
    /// not record adapters). The caller holds the model's auto lock until
    /// the request's run is queued.
    pub(crate) fn prepare_auto_cache(&self, request: &GenerateRequest) -> Result<CacheUse> {
        let Some(auto) = self.inner().auto_cache.clone() else { return Ok(CacheUse::None) };
        let loaded = self.inner().loaded_prompt();
        let Some(bytes) = request.cache_prefix.filter(|_| request.lora.is_none()) else {
            if loaded.is_some_and(|l| l.automatic.is_some()) {
                self.cache_release()?;
            }
            return Ok(CacheUse::None);
        };
        let prompt = &request.prompt;
        if bytes == 0 || bytes >= prompt.len() || !prompt.is_char_boundary(bytes) {
            return Err(Error::invalid(format!(
                "cache_prefix is {bytes} bytes; it must end on a character boundary inside the prompt ({} bytes)",
                prompt.len()
            )));
        }
        let prefix = &prompt[..bytes];
        let media = self.auto_media(request, prefix)?;
        let path = self.auto_path(&auto.dir, request, prefix, media.as_deref());
        if loaded.as_ref().is_some_and(|l| l.automatic.as_ref() == Some(&path) && l.bytes == bytes) {
            touch(&path);
            return Ok(CacheUse::Hit);
        }
        match self.cache_load(&path) {
            Ok(_) => {
                self.mark_automatic(path.clone());
                touch(&path);
                return Ok(CacheUse::Hit);
            }
            // None yet, or one to replace: save it below.
            Err(e) if is_replaceable(e.kind()) => {
                log::debug!("automatic prompt cache '{}': {e}; saving it", path.display());
            }
            Err(e) => return Err(e),
        }
        if self.inner().loaded_prompt().is_some() {
            self.cache_release()?;
        }
        let save = GenerateRequest {
            prompt: prefix.to_string(),
            role: request.role,
            enable_thinking: request.enable_thinking,
            // A prefix holding the images is saved with them.
            input: if media.is_some() { request.input.clone() } else { Input::Text },
            ..GenerateRequest::default()
        };
        self.cache_save(&save, &path)?;
        self.cache_load(&path)?;
        self.mark_automatic(path.clone());
        if auto.max_bytes != 0 {
            if let Err(e) = prune(&auto.dir, auto.max_bytes, Some(&path), false) {
                log::warn!("cannot keep '{}' under its cap: {e}", auto.dir.display());
            }
        }
        Ok(CacheUse::Saved)
    }

    /// The digest of the images and videos `prefix` holds: all of the
    /// request's, or none (`None`).
    fn auto_media(&self, request: &GenerateRequest, prefix: &str) -> Result<Option<String>> {
        match &request.input {
            Input::Text => Ok(None),
            Input::Tokens(_) | Input::Embeddings(_) => Err(Error::invalid(format!(
                "automatic prompt caching takes text or multimodal input, not {} input; leave cache_prefix unset",
                request.input.kind()
            ))),
            Input::Multimodal(m) => {
                let held = markers(prefix, IMAGE_MARKER) + markers(prefix, VIDEO_MARKER);
                let total = markers(&request.prompt, IMAGE_MARKER) + markers(&request.prompt, VIDEO_MARKER);
                match held {
                    0 => Ok(None),
                    _ if held == total => Ok(Some(m.digest())),
                    _ => Err(Error::invalid(format!(
                        "cache_prefix holds {held} of the prompt's {total} image and video markers; it must hold all or none"
                    ))),
                }
            }
        }
    }

    /// Where the automatic cache of `prefix`, with `request`'s settings, lives.
    fn auto_path(&self, dir: &Path, request: &GenerateRequest, prefix: &str, media: Option<&str>) -> PathBuf {
        let identity = self.inner().identity();
        let template = self.inner().chat_template();
        let family = self.family();
        auto_manifest_path(
            dir,
            &AutoKey {
                fingerprint: &identity.fingerprint,
                model_size: identity.size,
                family: family.name(),
                runtime_version: self.runtime_version(),
                chat_template: template.as_ref(),
                prefix,
                role: request.role.as_str(),
                enable_thinking: request.enable_thinking,
                max_context_len: self.inner().max_context_len(),
                media,
            },
        )
    }

    fn mark_automatic(&self, path: PathBuf) {
        if let Some(mut loaded) = self.inner().loaded_prompt() {
            loaded.automatic = Some(path);
            self.inner().set_loaded_prompt(Some(loaded));
        }
    }
}

/// Whether a load failing with `kind` means the automatic cache is to be
/// saved (again): it is missing, broken, or of another format or model.
fn is_replaceable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::CacheNotFound
            | ErrorKind::CacheInvalid
            | ErrorKind::CacheVersion
            | ErrorKind::CacheTruncated
            | ErrorKind::CacheCorrupt
            | ErrorKind::CacheMismatch
    )
}
