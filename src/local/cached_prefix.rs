//! The prefix rule while a prompt cache is loaded: requests give the full
//! prompt, which must start with the cached one; only the rest is sent.

use crate::cache::prompt_hash;
use crate::error::{Error, ErrorKind, Result};

/// The prompt of the loaded prompt cache, by hash and length.
#[derive(Clone, Debug)]
pub(crate) struct LoadedPrompt {
    pub(crate) hash: String,
    pub(crate) bytes: usize,
    /// The manifest, when automatic prompt caching loaded it (it then also
    /// releases it).
    pub(crate) automatic: Option<std::path::PathBuf>,
}

/// The hash of a prompt holding images or videos, bound to their
/// embeddings' `digest`: such a cache fits only a request with the same ones.
pub(crate) fn media_prompt_hash(prompt: &str, digest: &str) -> String {
    let mut bytes = Vec::with_capacity(prompt.len() + digest.len() + 8);
    bytes.extend_from_slice(prompt.as_bytes());
    bytes.extend_from_slice(b"\0media:");
    bytes.extend_from_slice(digest.as_bytes());
    prompt_hash(&bytes)
}

/// The continuation to send when `prompt` starts with the loaded cache's
/// prompt; an error otherwise.
pub(crate) fn strip_cached_prefix<'a>(prompt: &'a str, loaded: &LoadedPrompt) -> Result<&'a str> {
    let fits = prompt.len() > loaded.bytes
        && prompt.is_char_boundary(loaded.bytes)
        && prompt_hash(&prompt.as_bytes()[..loaded.bytes]) == loaded.hash;
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
