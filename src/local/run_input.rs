//! Turning a request's input into what one run feeds the runtime: the kind
//! checked against the release, every array shared (not copied) into the
//! run, and the prefix rule applied while a prompt cache is loaded.
//!
//! With images or videos, a cached prefix holds either all of the
//! request's markers (it was saved with exactly these embeddings: its hash
//! covers them, and only the text after it is sent) or none of them (the
//! rest is sent with all the media).

use super::cached_prefix::{media_prompt_hash, strip_cached_prefix, LoadedPrompt};
use super::model::LocalModel;
use crate::config::{cstring, GenerateRequest};
use crate::error::{Error, ErrorKind, Result};
use crate::input::{markers, Input, Multimodal, Tags, IMAGE_MARKER, VIDEO_MARKER};
use crate::runtime::{MediaData, RunData, RunShape};
use std::ffi::CString;

/// The tags passed with each part (1.3); unset: empty strings.
fn tag_strings(tags: Option<&Tags>) -> Result<[CString; 3]> {
    let empty = Tags { start: String::new(), end: String::new(), content: String::new() };
    let tags = tags.unwrap_or(&empty);
    Ok([cstring("tag", &tags.start)?, cstring("tag", &tags.end)?, cstring("tag", &tags.content)?])
}

impl LocalModel {
    /// Checks that the runtime can take `request`'s input kind and settings.
    pub(super) fn check_input(&self, request: &GenerateRequest) -> Result<()> {
        request.input.check(&request.prompt)?;
        let (images, image_size, videos) = match &request.input {
            Input::Multimodal(m) => (
                m.images.as_ref().map_or(0, |i| i.count),
                m.images.as_ref().is_some_and(|i| i.width != 0 || i.height != 0),
                m.has_videos(),
            ),
            _ => (0, false, false),
        };
        let shape = RunShape {
            images,
            image_size,
            videos,
            tool_role: request.role != crate::config::Role::User,
            thinking: request.enable_thinking,
        };
        self.runtime().check_run(&shape).map_err(|why| Error::new(ErrorKind::NotSupported, why))?;
        if let Some(cross) = &request.cross_attn {
            cross.check()?;
            if !self.runtime().has_later_calls() {
                let message = format!("cross-attention needs runtime 1.2.1 or later; this one is {}", self.family());
                return Err(Error::new(ErrorKind::NotSupported, message));
            }
            if !self.inner().use_cross_attn {
                return Err(Error::invalid("cross-attention parameters need a model opened with use_cross_attn"));
            }
        }
        Ok(())
    }

    /// What the run of `request` feeds the runtime, with `loaded` the
    /// prompt cache loaded now, if any.
    pub(super) fn run_data(&self, request: &GenerateRequest, loaded: Option<&LoadedPrompt>) -> Result<RunData> {
        let refuse_with_cache = |kind: &str| {
            Error::invalid(format!(
                "a prompt cache is loaded, and a {kind} input cannot be checked against its prompt; release the cache first"
            ))
        };
        Ok(match &request.input {
            Input::Text => {
                let prompt = match loaded {
                    Some(loaded) => strip_cached_prefix(&request.prompt, loaded)?,
                    None => request.prompt.as_str(),
                };
                RunData::Prompt(cstring("prompt", prompt)?)
            }
            Input::Tokens(ids) => {
                if loaded.is_some() {
                    return Err(refuse_with_cache("token"));
                }
                RunData::Tokens(ids.clone())
            }
            Input::Embeddings(e) => {
                if loaded.is_some() {
                    return Err(refuse_with_cache("embedding"));
                }
                RunData::Embeddings { values: e.values.clone(), n_tokens: e.n_tokens }
            }
            Input::Multimodal(m) => match loaded {
                None => self.multimodal(&request.prompt, m)?,
                Some(loaded) => {
                    let prompt = &request.prompt;
                    let cut = loaded.bytes.min(prompt.len());
                    let prefix = if prompt.is_char_boundary(cut) { &prompt[..cut] } else { "" };
                    let held = markers(prefix, IMAGE_MARKER) + markers(prefix, VIDEO_MARKER);
                    let total = markers(prompt, IMAGE_MARKER) + markers(prompt, VIDEO_MARKER);
                    if held == 0 {
                        let rest = strip_cached_prefix(prompt, loaded)?;
                        self.multimodal(rest, m)?
                    } else if held == total && media_prompt_hash(prefix, &m.digest()) == loaded.hash {
                        let rest = &prompt[cut..];
                        if rest.is_empty() {
                            return Err(strip_cached_prefix(prompt, loaded).unwrap_err());
                        }
                        RunData::Prompt(cstring("prompt", rest)?)
                    } else {
                        return Err(Error::new(
                            ErrorKind::CacheMismatch,
                            "a prompt cache is loaded: with images or videos, the cached prompt must hold all of the \
                             request's markers and have been saved with exactly these embeddings, or hold none of them",
                        ));
                    }
                }
            },
        })
    }

    fn multimodal(&self, prompt: &str, m: &Multimodal) -> Result<RunData> {
        let tags = &self.inner().media_tags;
        let images = match &m.images {
            Some(i) => Some(MediaData {
                values: i.values.clone(),
                count: i.count,
                frames: 1,
                tokens: i.tokens_per_image,
                width: i.width,
                height: i.height,
                tags: tag_strings(tags.image.as_ref())?,
            }),
            None => None,
        };
        let videos = match &m.videos {
            Some(v) => Some(MediaData {
                values: v.values.clone(),
                count: v.count,
                frames: v.frames_per_video,
                tokens: v.tokens_per_frame,
                width: v.width,
                height: v.height,
                tags: tag_strings(tags.video.as_ref())?,
            }),
            None => None,
        };
        Ok(RunData::Multimodal { prompt: cstring("prompt", prompt)?, images, videos })
    }
}

/// The hash a manifest records for `request`'s prompt: with images or
/// videos in it, bound to their embeddings.
pub(super) fn recorded_prompt_hash(request: &GenerateRequest) -> String {
    match &request.input {
        Input::Multimodal(m) if markers(&request.prompt, IMAGE_MARKER) + markers(&request.prompt, VIDEO_MARKER) > 0 => {
            media_prompt_hash(&request.prompt, &m.digest())
        }
        _ => crate::cache::prompt_hash(request.prompt.as_bytes()),
    }
}
