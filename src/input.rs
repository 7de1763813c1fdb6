//! What a request feeds the model: text (the prompt), token ids,
//! embeddings, or text with image and video embeddings; and the encoder
//! state of cross-attention models. Every shape is checked here, with its
//! sizes overflow-checked, before anything reaches the runtime.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The marker that stands for one image in a multimodal prompt; the runtime
/// puts the image's tags and embedding tokens there.
pub const IMAGE_MARKER: &str = "<image>";
/// The marker that stands for one video in a multimodal prompt (1.3).
pub const VIDEO_MARKER: &str = "<video>";

/// Most tokens one input may hold (token ids, embedding rows, image or
/// video tokens together); far above any context window.
pub const MAX_INPUT_TOKENS: usize = 1 << 20;
/// Most floats one array may hold (1 GiB).
pub const MAX_INPUT_FLOATS: usize = 1 << 28;

/// What a request feeds the model besides its settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// The prompt text ([`GenerateRequest::prompt`](crate::GenerateRequest::prompt)); the default.
    #[default]
    Text,
    /// Token ids, fed as they are (the prompt must be empty).
    Tokens(#[serde(with = "crate::wire::shared")] Arc<[i32]>),
    /// Embedding rows, one per token (the prompt must be empty).
    Embeddings(Embeddings),
    /// The prompt with one [`IMAGE_MARKER`] per image (and one
    /// [`VIDEO_MARKER`] per video), and their embeddings.
    Multimodal(Multimodal),
}

/// `n_tokens` rows of `dim` floats, row after row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Embeddings {
    /// `n_tokens * dim` floats.
    #[serde(with = "crate::wire::shared")]
    pub values: Arc<[f32]>,
    /// Rows (tokens).
    pub n_tokens: usize,
    /// Floats per row: the model's embedding dimension.
    pub dim: usize,
}

/// The images of a multimodal request: `count` images of `tokens_per_image`
/// embedding rows of `dim` floats each, as the vision encoder made them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Images {
    /// `count * tokens_per_image * dim` floats.
    #[serde(with = "crate::wire::shared")]
    pub values: Arc<[f32]>,
    /// Images; the prompt holds as many [`IMAGE_MARKER`]s.
    pub count: usize,
    /// Embedding rows per image.
    pub tokens_per_image: usize,
    /// Floats per row.
    pub dim: usize,
    /// The images' size in pixels, for models that use it (0: not given).
    pub width: usize,
    /// See `width`.
    pub height: usize,
}

/// The videos of a multimodal request (runtime release 1.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Videos {
    /// `count * frames_per_video * tokens_per_frame * dim` floats.
    #[serde(with = "crate::wire::shared")]
    pub values: Arc<[f32]>,
    /// Videos; the prompt holds as many [`VIDEO_MARKER`]s.
    pub count: usize,
    /// Frames per video.
    pub frames_per_video: usize,
    /// Embedding rows per frame.
    pub tokens_per_frame: usize,
    /// Floats per row.
    pub dim: usize,
    /// The frames' size in pixels (0: not given).
    pub width: usize,
    /// See `width`.
    pub height: usize,
}

/// Image and video embeddings of a multimodal request; at least one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Multimodal {
    /// The images, if any.
    pub images: Option<Images>,
    /// The videos, if any (1.3).
    pub videos: Option<Videos>,
}

/// The encoder state a cross-attention model attends to, for one request
/// (models opened with [`ModelParams::use_cross_attn`](crate::ModelParams::use_cross_attn)).
/// `num_tokens` is `mask.len()`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrossAttention {
    /// Encoder keys, `[layers][num_tokens][kv_heads][head_dim]`.
    #[serde(with = "crate::wire::shared")]
    pub k_cache: Arc<[f32]>,
    /// Encoder values, `[layers][kv_heads][head_dim][num_tokens]`; as many floats as `k_cache`.
    #[serde(with = "crate::wire::shared")]
    pub v_cache: Arc<[f32]>,
    /// One mask value per encoder token.
    #[serde(with = "crate::wire::shared")]
    pub mask: Arc<[f32]>,
    /// One position per encoder token.
    #[serde(with = "crate::wire::shared")]
    pub positions: Arc<[i32]>,
}

/// The strings the runtime puts around (`start`, `end`) and inside
/// (`content`, the placeholder token) each image or video of a prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    /// Before the embedding tokens, e.g. `<|vision_start|>`.
    pub start: String,
    /// After them, e.g. `<|vision_end|>`.
    pub end: String,
    /// The placeholder token, e.g. `<|image_pad|>`.
    pub content: String,
}

/// The image and video tags of a model. Release 1.2 takes image tags once,
/// at open (unset: the runtime's defaults); 1.3 takes them with every
/// multimodal request, and rkl passes these (unset: empty strings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaTags {
    /// Image tags.
    pub image: Option<Tags>,
    /// Video tags (1.3).
    pub video: Option<Tags>,
}

fn product(what: &str, factors: &[(&str, usize)]) -> Result<usize> {
    let mut total = 1usize;
    for &(name, n) in factors {
        if n == 0 {
            return Err(Error::invalid(format!("{what}: {name} is 0")));
        }
        total = total.checked_mul(n).filter(|&t| t <= MAX_INPUT_FLOATS).ok_or_else(|| {
            let shape: Vec<String> = factors.iter().map(|(n, v)| format!("{n} {v}")).collect();
            Error::invalid(format!("{what}: {} is more than {MAX_INPUT_FLOATS} floats", shape.join(" x ")))
        })?;
    }
    Ok(total)
}

fn check_len(what: &str, len: usize, factors: &[(&str, usize)]) -> Result<()> {
    let expected = product(what, factors)?;
    if len != expected {
        let shape: Vec<String> = factors.iter().map(|(n, v)| format!("{n} {v}")).collect();
        return Err(Error::invalid(format!(
            "{what}: {} needs {expected} floats, the array has {len}",
            shape.join(" x ")
        )));
    }
    Ok(())
}

fn check_finite(what: &str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(at) => Err(Error::invalid(format!("{what}: value {at} is {} (not finite)", values[at]))),
        None => Ok(()),
    }
}

fn check_tokens(what: &str, n: usize) -> Result<()> {
    if n > MAX_INPUT_TOKENS {
        return Err(Error::invalid(format!("{what}: {n} tokens is more than {MAX_INPUT_TOKENS}")));
    }
    Ok(())
}

/// How often `marker` occurs in `text`.
pub fn markers(text: &str, marker: &str) -> usize {
    text.matches(marker).count()
}

impl Images {
    /// Embedding rows of all the images.
    pub fn tokens(&self) -> usize {
        self.count.saturating_mul(self.tokens_per_image)
    }

    fn check(&self) -> Result<()> {
        let what = "image embeddings";
        check_len(
            what,
            self.values.len(),
            &[("images", self.count), ("tokens per image", self.tokens_per_image), ("dim", self.dim)],
        )?;
        check_tokens(what, self.tokens())?;
        check_finite(what, &self.values)
    }
}

impl Videos {
    /// Embedding rows of all the videos.
    pub fn tokens(&self) -> usize {
        self.count.saturating_mul(self.frames_per_video).saturating_mul(self.tokens_per_frame)
    }

    fn check(&self) -> Result<()> {
        let what = "video embeddings";
        let shape = [
            ("videos", self.count),
            ("frames per video", self.frames_per_video),
            ("tokens per frame", self.tokens_per_frame),
            ("dim", self.dim),
        ];
        check_len(what, self.values.len(), &shape)?;
        check_tokens(what, self.tokens())?;
        check_finite(what, &self.values)
    }
}

impl Multimodal {
    /// Whether it carries videos.
    pub fn has_videos(&self) -> bool {
        self.videos.is_some()
    }

    /// A digest of the images and videos (values, shapes and sizes): a
    /// prompt cache whose prompt holds them is bound to exactly these.
    pub fn digest(&self) -> String {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        if let Some(i) = &self.images {
            h.update(b"images");
            for n in [i.count, i.tokens_per_image, i.dim, i.width, i.height] {
                h.update(&(n as u64).to_le_bytes());
            }
            h.update(&crate::wire::to_bytes(&i.values));
        }
        if let Some(v) = &self.videos {
            h.update(b"videos");
            for n in [v.count, v.frames_per_video, v.tokens_per_frame, v.dim, v.width, v.height] {
                h.update(&(n as u64).to_le_bytes());
            }
            h.update(&crate::wire::to_bytes(&v.values));
        }
        crate::cache::hex128(h.digest128())
    }

    fn check(&self, prompt: &str) -> Result<()> {
        if self.images.is_none() && self.videos.is_none() {
            return Err(Error::invalid("a multimodal input needs images or videos"));
        }
        let (images, videos) = (markers(prompt, IMAGE_MARKER), markers(prompt, VIDEO_MARKER));
        let given = self.images.as_ref().map_or(0, |i| i.count);
        if images != given {
            return Err(Error::invalid(format!(
                "the prompt has {images} {IMAGE_MARKER} marker(s) for {given} image(s); it needs one per image"
            )));
        }
        let given = self.videos.as_ref().map_or(0, |v| v.count);
        if videos != given {
            return Err(Error::invalid(format!(
                "the prompt has {videos} {VIDEO_MARKER} marker(s) for {given} video(s); it needs one per video"
            )));
        }
        if let Some(i) = &self.images {
            i.check()?;
        }
        if let Some(v) = &self.videos {
            v.check()?;
        }
        if let (Some(i), Some(v)) = (&self.images, &self.videos) {
            if i.dim != v.dim {
                return Err(Error::invalid(format!(
                    "image rows have {} floats, video rows {}; they must agree",
                    i.dim, v.dim
                )));
            }
        }
        check_tokens(
            "multimodal input",
            self.images.as_ref().map_or(0, Images::tokens) + self.videos.as_ref().map_or(0, Videos::tokens),
        )
    }
}

impl Input {
    /// The kind's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Text => "text",
            Input::Tokens(_) => "token",
            Input::Embeddings(_) => "embedding",
            Input::Multimodal(_) => "multimodal",
        }
    }

    /// Checks the input's shape and values, with `prompt` the request's.
    pub fn check(&self, prompt: &str) -> Result<()> {
        let no_prompt = |kind: &str| {
            if prompt.is_empty() {
                Ok(())
            } else {
                Err(Error::invalid(format!("a {kind} input has no prompt text; leave the prompt empty")))
            }
        };
        match self {
            Input::Text => Ok(()),
            Input::Tokens(ids) => {
                no_prompt("token")?;
                if ids.is_empty() {
                    return Err(Error::invalid("the token input is empty"));
                }
                check_tokens("token input", ids.len())?;
                match ids.iter().position(|&id| id < 0) {
                    Some(at) => Err(Error::invalid(format!("token {at} is {}: token ids are >= 0", ids[at]))),
                    None => Ok(()),
                }
            }
            Input::Embeddings(e) => {
                no_prompt("embedding")?;
                let what = "embedding input";
                check_len(what, e.values.len(), &[("tokens", e.n_tokens), ("dim", e.dim)])?;
                check_tokens(what, e.n_tokens)?;
                check_finite(what, &e.values)
            }
            Input::Multimodal(m) => m.check(prompt),
        }
    }
}

impl CrossAttention {
    /// Encoder tokens.
    pub fn num_tokens(&self) -> usize {
        self.mask.len()
    }

    /// Checks the shapes agree and every float is finite.
    pub fn check(&self) -> Result<()> {
        let n = self.mask.len();
        if n == 0 {
            return Err(Error::invalid("cross-attention: the mask is empty (one value per encoder token)"));
        }
        if n > i32::MAX as usize || n > MAX_INPUT_TOKENS {
            return Err(Error::invalid(format!("cross-attention: {n} encoder tokens is too many")));
        }
        if self.positions.len() != n {
            return Err(Error::invalid(format!(
                "cross-attention: {} positions for {n} mask values; one each per encoder token",
                self.positions.len()
            )));
        }
        let k = self.k_cache.len();
        if k == 0 || k % n != 0 || k > MAX_INPUT_FLOATS {
            return Err(Error::invalid(format!(
                "cross-attention: the key cache has {k} floats, not a non-zero multiple of {n} encoder tokens"
            )));
        }
        if self.v_cache.len() != k {
            return Err(Error::invalid(format!(
                "cross-attention: the value cache has {} floats, the key cache {k}; they must agree",
                self.v_cache.len()
            )));
        }
        check_finite("cross-attention key cache", &self.k_cache)?;
        check_finite("cross-attention value cache", &self.v_cache)?;
        check_finite("cross-attention mask", &self.mask)
    }
}

impl Tags {
    /// Checks the strings can be passed to C.
    pub fn check(&self, what: &str) -> Result<()> {
        for (part, text) in [("start", &self.start), ("end", &self.end), ("content", &self.content)] {
            crate::config::cstring(&format!("{what} tag {part}"), text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(count: usize, tokens: usize, dim: usize, len: usize) -> Input {
        Input::Multimodal(Multimodal {
            images: Some(Images {
                values: vec![0.5; len].into(),
                count,
                tokens_per_image: tokens,
                dim,
                width: 0,
                height: 0,
            }),
            videos: None,
        })
    }

    #[test]
    fn shapes_are_checked_with_overflow() {
        assert!(images(1, 2, 3, 6).check("<image>").is_ok());
        let e = images(1, 2, 3, 5).check("<image>").unwrap_err();
        assert!(e.message().contains("needs 6 floats") && e.message().contains("has 5"), "{e}");
        let e = images(usize::MAX, 2, 3, 6).check(&IMAGE_MARKER.repeat(0)).unwrap_err();
        assert!(e.message().contains("marker"), "{e}");
        let huge = Input::Embeddings(Embeddings { values: vec![0.0; 4].into(), n_tokens: usize::MAX / 2, dim: 4 });
        assert!(huge.check("").unwrap_err().message().contains("more than"));
        let zero = Input::Embeddings(Embeddings { values: Vec::new().into(), n_tokens: 0, dim: 4 });
        assert!(zero.check("").unwrap_err().message().contains("tokens is 0"));
        let e = images(2, 1, 1, 2).check("<image> only one").unwrap_err();
        assert!(e.message().contains("1 <image> marker(s) for 2 image(s)"), "{e}");
        let nan = Input::Embeddings(Embeddings { values: vec![0.0, f32::NAN].into(), n_tokens: 1, dim: 2 });
        assert!(nan.check("").unwrap_err().message().contains("value 1 is NaN"));
    }

    #[test]
    fn tokens_and_prompts() {
        assert!(Input::Tokens(vec![1, 2].into()).check("").is_ok());
        assert!(Input::Tokens(vec![1, -2].into()).check("").unwrap_err().message().contains("token 1 is -2"));
        assert!(Input::Tokens(Vec::new().into()).check("").is_err());
        assert!(Input::Tokens(vec![1].into()).check("text").unwrap_err().message().contains("no prompt text"));
    }

    #[test]
    fn the_digest_follows_values_and_shape() {
        let a = Multimodal {
            images: Some(Images {
                values: vec![1.0, 2.0].into(),
                count: 1,
                tokens_per_image: 1,
                dim: 2,
                width: 0,
                height: 0,
            }),
            videos: None,
        };
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.images.as_mut().unwrap().values = vec![1.0, 2.5].into();
        assert_ne!(a.digest(), b.digest());
        let mut c = a.clone();
        c.images.as_mut().unwrap().width = 448;
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn cross_attention_shapes() {
        let ok = CrossAttention {
            k_cache: vec![0.0; 8].into(),
            v_cache: vec![0.0; 8].into(),
            mask: vec![1.0; 2].into(),
            positions: vec![0, 1].into(),
        };
        assert!(ok.check().is_ok());
        let mut bad = ok.clone();
        bad.positions = vec![0].into();
        assert!(bad.check().unwrap_err().message().contains("1 positions for 2"));
        let mut bad = ok.clone();
        bad.v_cache = vec![0.0; 6].into();
        assert!(bad.check().is_err());
        let mut bad = ok;
        bad.k_cache = vec![0.0; 7].into();
        bad.v_cache = vec![0.0; 7].into();
        assert!(bad.check().is_err());
    }
}
