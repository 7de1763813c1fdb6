//! A generation request as C gives it: `rkl_role`, `rkl_generate_params`,
//! `rkl_generate_params_init`, and reading it into a [`GenerateRequest`]
//! (for rkl_generate(), rkl_stream_open() and rkl_cache_save()).

use super::args::{self, Versioned};
use super::error::{FfiError, FfiResult};
use super::model::RKL_UNSET;
use super::status::rkl_status;
use crate::{CrossAttention, Embeddings, GenerateRequest, Images, Input, Multimodal, Role, Sampling, Videos};
use std::ffi::c_char;
use std::mem::offset_of;
use std::ptr;

/// Who speaks in a request.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rkl_role {
    /// A user message (the usual case).
    RKL_ROLE_USER = 0,
    /// The result of a function call (with rkl_set_function_tools()).
    RKL_ROLE_TOOL = 1,
}

/// Sampling settings for one request (runtime release 1.3; a 1.2 runtime
/// refuses them with ::RKL_NOT_SUPPORTED). Fill with
/// rkl_sampling_params_init(), then set the fields to change: an integer
/// field holding ::RKL_UNSET, or a float field holding NaN, keeps the
/// model's value (its rkl_open_params setting, else the runtime's default).
/// The ranges are those of ::rkl_open_params.
///
/// Compatibility rules as for ::rkl_open_params.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rkl_sampling_params {
    /// Size of the struct as the caller knows it; written by
    /// rkl_sampling_params_init().
    pub struct_size: usize,
    /// Top-k sampling; 0 disables it.
    pub top_k: i32,
    /// Nucleus sampling mass, 0..=1.
    pub top_p: f32,
    /// Sampling temperature, >= 0.
    pub temperature: f32,
    /// Repetition penalty, >= 0.
    pub repeat_penalty: f32,
    /// Frequency penalty, -100..=100.
    pub frequency_penalty: f32,
    /// Presence penalty, -100..=100.
    pub presence_penalty: f32,
    /// Mirostat mode: 0 off, 1 or 2.
    pub mirostat: i32,
    /// Mirostat target entropy, > 0.
    pub mirostat_tau: f32,
    /// Mirostat learning rate, > 0.
    pub mirostat_eta: f32,
}

// SAFETY: repr(C), starts with usize; integers and floats are valid for any
// bit pattern.
unsafe impl Versioned for rkl_sampling_params {
    const NAME: &'static str = "rkl_sampling_params";
    // The first version is the current one; freeze this as a number when a
    // field is added.
    const V1_SIZE: usize = std::mem::size_of::<rkl_sampling_params>();
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<rkl_sampling_params>() == 48);

impl rkl_sampling_params {
    fn defaults() -> rkl_sampling_params {
        rkl_sampling_params {
            struct_size: std::mem::size_of::<rkl_sampling_params>(),
            top_k: RKL_UNSET,
            top_p: f32::NAN,
            temperature: f32::NAN,
            repeat_penalty: f32::NAN,
            frequency_penalty: f32::NAN,
            presence_penalty: f32::NAN,
            mirostat: RKL_UNSET,
            mirostat_tau: f32::NAN,
            mirostat_eta: f32::NAN,
        }
    }

    fn to_sampling(self) -> Sampling {
        let int = |v: i32| (v != RKL_UNSET).then_some(v);
        let float = |v: f32| (!v.is_nan()).then_some(v);
        Sampling {
            top_k: int(self.top_k),
            top_p: float(self.top_p),
            temperature: float(self.temperature),
            repeat_penalty: float(self.repeat_penalty),
            frequency_penalty: float(self.frequency_penalty),
            presence_penalty: float(self.presence_penalty),
            mirostat: int(self.mirostat),
            mirostat_tau: float(self.mirostat_tau),
            mirostat_eta: float(self.mirostat_eta),
        }
    }
}

/// Fills `params` with the defaults: every field unset (the model's values).
///
/// @param params       caller memory of `struct_size` bytes, written during
///                     the call only.
/// @param struct_size  `sizeof(rkl_sampling_params)` as the caller compiled it.
/// @return ::RKL_OK; ::RKL_NULL_ARGUMENT; ::RKL_INVALID_ARGUMENT when
///         `struct_size` is smaller than the first version of the struct.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_sampling_params_init(params: *mut rkl_sampling_params, struct_size: usize) -> rkl_status {
    ffi_fn!({
        // SAFETY: the caller promises `struct_size` writable bytes at `params`.
        unsafe { args::init_struct(params, struct_size, &rkl_sampling_params::defaults(), "params") }
    })
}

/// What a request feeds the model (::rkl_generate_params `input_kind`).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rkl_input_kind {
    /// The prompt text (the default).
    RKL_INPUT_TEXT = 0,
    /// Token ids: `tokens`, `n_tokens`; no prompt.
    RKL_INPUT_TOKENS = 1,
    /// Embedding rows: `embeddings`, `n_embedding_tokens`, `embedding_dim`;
    /// no prompt.
    RKL_INPUT_EMBEDDINGS = 2,
    /// The prompt with one `<image>` marker per image (and one `<video>` per
    /// video, release 1.3), and `images` and/or `videos`.
    RKL_INPUT_MULTIMODAL = 3,
}

/// Image or video embeddings of a multimodal request, as the vision
/// encoder made them (running the encoder is the caller's part). Fill with
/// rkl_media_input_init(). Compatibility rules as for ::rkl_open_params.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rkl_media_input {
    /// Size of the struct as the caller knows it.
    pub struct_size: usize,
    /// `count * frames * tokens * dim` floats, item after item, frame after
    /// frame, row after row. Copied during the call.
    pub embeddings: *const f32,
    /// Images (or videos); the prompt holds as many markers.
    pub count: usize,
    /// Frames per video; for images 0 or 1 (default 0).
    pub frames: usize,
    /// Embedding rows per image (or per video frame).
    pub tokens: usize,
    /// Floats per row: the model's embedding dimension.
    pub dim: usize,
    /// The images' (frames') width in pixels, for models that use it; 0
    /// (default): not given.
    pub width: usize,
    /// Their height in pixels; 0 (default): not given.
    pub height: usize,
}

// SAFETY: repr(C), starts with usize; pointers and integers are valid for
// any bit pattern.
unsafe impl Versioned for rkl_media_input {
    const NAME: &'static str = "rkl_media_input";
    // The first version is the current one.
    const V1_SIZE: usize = std::mem::size_of::<rkl_media_input>();
}

/// The encoder state of a cross-attention model for one request (a model
/// opened with `rkl_open_params.use_cross_attn`; runtime 1.2.1 or later).
/// Fill with rkl_cross_attn_params_init(). Compatibility rules as for
/// ::rkl_open_params. The runtime keeps using the last state given until
/// another request gives one; rkl keeps its copy alive until then.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rkl_cross_attn_params {
    /// Size of the struct as the caller knows it.
    pub struct_size: usize,
    /// Encoder keys, `[layers][num_tokens][kv_heads][head_dim]`; copied.
    pub k_cache: *const f32,
    /// Encoder values, `[layers][kv_heads][head_dim][num_tokens]`; copied.
    pub v_cache: *const f32,
    /// Floats in each of `k_cache` and `v_cache`: a multiple of `num_tokens`.
    pub cache_floats: usize,
    /// `num_tokens` mask values; copied.
    pub mask: *const f32,
    /// `num_tokens` positions; copied.
    pub positions: *const i32,
    /// Encoder tokens.
    pub num_tokens: usize,
}

// SAFETY: repr(C), starts with usize; pointers and integers are valid for
// any bit pattern.
unsafe impl Versioned for rkl_cross_attn_params {
    const NAME: &'static str = "rkl_cross_attn_params";
    // The first version is the current one.
    const V1_SIZE: usize = std::mem::size_of::<rkl_cross_attn_params>();
}

#[cfg(target_pointer_width = "64")]
const _: () =
    assert!(std::mem::size_of::<rkl_media_input>() == 64 && std::mem::size_of::<rkl_cross_attn_params>() == 56);

/// Fills `input` with the defaults: no embeddings, every count 0.
///
/// @param input        caller memory of `struct_size` bytes, written during
///                     the call only.
/// @param struct_size  `sizeof(rkl_media_input)` as the caller compiled it.
/// @return ::RKL_OK; ::RKL_NULL_ARGUMENT; ::RKL_INVALID_ARGUMENT when
///         `struct_size` is smaller than the first version of the struct.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_media_input_init(input: *mut rkl_media_input, struct_size: usize) -> rkl_status {
    ffi_fn!({
        let defaults = rkl_media_input {
            struct_size: std::mem::size_of::<rkl_media_input>(),
            embeddings: ptr::null(),
            count: 0,
            frames: 0,
            tokens: 0,
            dim: 0,
            width: 0,
            height: 0,
        };
        // SAFETY: the caller promises `struct_size` writable bytes at `input`.
        unsafe { args::init_struct(input, struct_size, &defaults, "input") }
    })
}

/// Fills `params` with the defaults: no arrays, every count 0.
///
/// @param params       caller memory of `struct_size` bytes, written during
///                     the call only.
/// @param struct_size  `sizeof(rkl_cross_attn_params)` as the caller compiled it.
/// @return ::RKL_OK; ::RKL_NULL_ARGUMENT; ::RKL_INVALID_ARGUMENT when
///         `struct_size` is smaller than the first version of the struct.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_cross_attn_params_init(
    params: *mut rkl_cross_attn_params,
    struct_size: usize,
) -> rkl_status {
    ffi_fn!({
        let defaults = rkl_cross_attn_params {
            struct_size: std::mem::size_of::<rkl_cross_attn_params>(),
            k_cache: ptr::null(),
            v_cache: ptr::null(),
            cache_floats: 0,
            mask: ptr::null(),
            positions: ptr::null(),
            num_tokens: 0,
        };
        // SAFETY: the caller promises `struct_size` writable bytes at `params`.
        unsafe { args::init_struct(params, struct_size, &defaults, "params") }
    })
}

/// One generation request. Fill with rkl_generate_params_init(), then set
/// `prompt` (or another input, see `input_kind`) and whatever else should
/// differ from the defaults. Every array is copied during the call, so the
/// caller may free it as soon as the call returns.
///
/// Compatibility rules as for ::rkl_open_params.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rkl_generate_params {
    /// Size of the struct as the caller knows it; written by
    /// rkl_generate_params_init().
    pub struct_size: usize,
    /// The prompt: UTF-8 without NUL inside; copied during the call.
    /// Required for text and multimodal input; NULL or "" for token and
    /// embedding input.
    pub prompt: *const c_char,
    /// Name of a LoRA adapter loaded with rkl_load_lora() to apply, or NULL
    /// (default). Copied during the call.
    pub lora: *const c_char,
    /// Who speaks: an ::rkl_role value (default ::RKL_ROLE_USER).
    pub role: i32,
    /// Stop after this many tokens; 0 (default) = the model's setting from
    /// rkl_open_params.max_new_tokens.
    pub max_new_tokens: u32,
    /// Qwen3-style thinking mode (default false).
    pub enable_thinking: bool,
    /// Keep this turn in the KV history so the next request continues the
    /// conversation (default false: history goes back to what it was).
    pub keep_history: bool,
    /// Version 2 of the struct starts here. Automatic prompt caching (a
    /// model opened with `rkl_open_params.cache_dir`): the prompt's first
    /// this many bytes are a stable prefix (a system prompt, say); its KV
    /// state is saved the first time and reused by every later request with
    /// the same prefix, in any process sharing the directory. Must end on a
    /// UTF-8 character boundary before the end of the prompt. 0 (default):
    /// no prefix; a cache loaded automatically before is released first.
    /// Ignored without `cache_dir`.
    pub cache_prefix_bytes: usize,
    /// Sampling settings for this request alone (see ::rkl_sampling_params),
    /// or NULL (default): the model's. Read during the call.
    pub sampling: *const rkl_sampling_params,
    /// What is fed to the model: an ::rkl_input_kind (default
    /// ::RKL_INPUT_TEXT). Fields of the other kinds must stay NULL/0.
    pub input_kind: i32,
    /// ::RKL_INPUT_TOKENS: `n_tokens` token ids (each >= 0).
    pub tokens: *const i32,
    /// ::RKL_INPUT_TOKENS: how many; at least 1.
    pub n_tokens: usize,
    /// ::RKL_INPUT_EMBEDDINGS: `n_embedding_tokens * embedding_dim` floats,
    /// row after row, all finite.
    pub embeddings: *const f32,
    /// ::RKL_INPUT_EMBEDDINGS: rows (tokens); at least 1.
    pub n_embedding_tokens: usize,
    /// ::RKL_INPUT_EMBEDDINGS: floats per row (the model's embedding size).
    pub embedding_dim: usize,
    /// ::RKL_INPUT_MULTIMODAL: the images, or NULL.
    pub images: *const rkl_media_input,
    /// ::RKL_INPUT_MULTIMODAL: the videos (release 1.3), or NULL. At least
    /// one of `images` and `videos` is set.
    pub videos: *const rkl_media_input,
    /// The encoder state of a cross-attention model, or NULL (default).
    pub cross_attn: *const rkl_cross_attn_params,
}

// SAFETY: repr(C), starts with usize; the two bools are listed and checked.
unsafe impl Versioned for rkl_generate_params {
    const NAME: &'static str = "rkl_generate_params";
    /// Version 1 ended after `keep_history` (40 bytes on LP64).
    const V1_SIZE: usize = offset_of!(rkl_generate_params, cache_prefix_bytes);
    const BOOL_OFFSETS: &'static [usize] =
        &[offset_of!(rkl_generate_params, enable_thinking), offset_of!(rkl_generate_params, keep_history)];
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(
    std::mem::size_of::<rkl_generate_params>() == 128
        && offset_of!(rkl_generate_params, cache_prefix_bytes) == 40
        && offset_of!(rkl_generate_params, sampling) == 48
        && offset_of!(rkl_generate_params, input_kind) == 56
        && offset_of!(rkl_generate_params, tokens) == 64
        && offset_of!(rkl_generate_params, cross_attn) == 120
);

impl rkl_generate_params {
    fn defaults() -> rkl_generate_params {
        rkl_generate_params {
            struct_size: std::mem::size_of::<rkl_generate_params>(),
            prompt: ptr::null(),
            lora: ptr::null(),
            role: rkl_role::RKL_ROLE_USER as i32,
            max_new_tokens: 0,
            enable_thinking: false,
            keep_history: false,
            cache_prefix_bytes: 0,
            sampling: ptr::null(),
            input_kind: rkl_input_kind::RKL_INPUT_TEXT as i32,
            tokens: ptr::null(),
            n_tokens: 0,
            embeddings: ptr::null(),
            n_embedding_tokens: 0,
            embedding_dim: 0,
            images: ptr::null(),
            videos: ptr::null(),
            cross_attn: ptr::null(),
        }
    }
}

/// Reads one image or video part.
///
/// # Safety
/// `part` is NULL or a readable struct whose array holds what it says.
unsafe fn read_media(
    part: *const rkl_media_input,
    what: &str,
    video: bool,
) -> FfiResult<Option<(rkl_media_input, std::sync::Arc<[f32]>)>> {
    if part.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller.
    let m = unsafe { args::read_struct(part, what)? };
    let frames = if video { m.frames } else { m.frames.max(1) };
    if !video && frames != 1 {
        return Err(FfiError::invalid(format!("{what}->frames is {}: images have no frames (0 or 1)", m.frames)));
    }
    let count = args::shape(what, &[("count", m.count), ("frames", frames), ("tokens", m.tokens), ("dim", m.dim)])?;
    // SAFETY: the caller promises that many floats at `embeddings`.
    let values = unsafe { args::array(m.embeddings, count, &format!("{what}->embeddings"))? };
    Ok(Some((rkl_media_input { frames, ..m }, values)))
}

/// Reads the input fields of `p` into the request's input.
///
/// # Safety
/// `p`'s pointers are NULL or hold what its counts say.
unsafe fn read_input(p: &rkl_generate_params) -> FfiResult<Input> {
    const TEXT: i32 = rkl_input_kind::RKL_INPUT_TEXT as i32;
    const TOKENS: i32 = rkl_input_kind::RKL_INPUT_TOKENS as i32;
    const EMBEDDINGS: i32 = rkl_input_kind::RKL_INPUT_EMBEDDINGS as i32;
    const MULTIMODAL: i32 = rkl_input_kind::RKL_INPUT_MULTIMODAL as i32;
    let kind = match p.input_kind {
        TEXT => "RKL_INPUT_TEXT",
        TOKENS => "RKL_INPUT_TOKENS",
        EMBEDDINGS => "RKL_INPUT_EMBEDDINGS",
        MULTIMODAL => "RKL_INPUT_MULTIMODAL",
        other => {
            return Err(FfiError::invalid(format!(
                "params->input_kind = {other} is not an rkl_input_kind (0 text, 1 tokens, 2 embeddings, 3 multimodal)"
            )))
        }
    };
    if p.input_kind != TOKENS {
        args::unused(p.tokens, p.n_tokens, "params->tokens", kind)?;
    }
    if p.input_kind != EMBEDDINGS {
        args::unused(p.embeddings, p.n_embedding_tokens | p.embedding_dim, "params->embeddings", kind)?;
    }
    if p.input_kind != MULTIMODAL {
        args::unused(p.images, 0, "params->images", kind)?;
        args::unused(p.videos, 0, "params->videos", kind)?;
    }
    Ok(match p.input_kind {
        TOKENS => {
            // SAFETY: the caller promises n_tokens ids at `tokens`.
            Input::Tokens(unsafe { args::array(p.tokens, p.n_tokens, "params->tokens")? })
        }
        EMBEDDINGS => {
            let count = args::shape(
                "params->embeddings",
                &[("n_embedding_tokens", p.n_embedding_tokens), ("embedding_dim", p.embedding_dim)],
            )?;
            // SAFETY: the caller promises that many floats at `embeddings`.
            let values = unsafe { args::array(p.embeddings, count, "params->embeddings")? };
            Input::Embeddings(Embeddings { values, n_tokens: p.n_embedding_tokens, dim: p.embedding_dim })
        }
        MULTIMODAL => {
            // SAFETY: forwarded from the caller.
            let images = unsafe { read_media(p.images, "params->images", false)? };
            // SAFETY: forwarded from the caller.
            let videos = unsafe { read_media(p.videos, "params->videos", true)? };
            if images.is_none() && videos.is_none() {
                return Err(FfiError::null("params->images (or params->videos)"));
            }
            Input::Multimodal(Multimodal {
                images: images.map(|(m, values)| Images {
                    values,
                    count: m.count,
                    tokens_per_image: m.tokens,
                    dim: m.dim,
                    width: m.width,
                    height: m.height,
                }),
                videos: videos.map(|(m, values)| Videos {
                    values,
                    count: m.count,
                    frames_per_video: m.frames,
                    tokens_per_frame: m.tokens,
                    dim: m.dim,
                    width: m.width,
                    height: m.height,
                }),
            })
        }
        _ => Input::Text,
    })
}

/// Reads a request's cross-attention state.
///
/// # Safety
/// `params` is NULL or a readable struct whose arrays hold what it says.
unsafe fn read_cross_attn(params: *const rkl_cross_attn_params) -> FfiResult<Option<CrossAttention>> {
    if params.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller.
    let c = unsafe { args::read_struct(params, "params->cross_attn")? };
    let n = args::shape("params->cross_attn", &[("num_tokens", c.num_tokens)])?;
    let floats = args::shape("params->cross_attn", &[("cache_floats", c.cache_floats)])?;
    // SAFETY: the caller promises the arrays hold the counts it gives.
    unsafe {
        Ok(Some(CrossAttention {
            k_cache: args::array(c.k_cache, floats, "params->cross_attn->k_cache")?,
            v_cache: args::array(c.v_cache, floats, "params->cross_attn->v_cache")?,
            mask: args::array(c.mask, n, "params->cross_attn->mask")?,
            positions: args::array(c.positions, n, "params->cross_attn->positions")?,
        }))
    }
}

/// Reads a caller's generate params into a request.
///
/// # Safety
/// `params` is NULL or a readable struct whose strings are NUL-terminated.
pub unsafe fn read_request(params: *const rkl_generate_params) -> FfiResult<GenerateRequest> {
    // SAFETY: forwarded from the caller.
    let p = unsafe { args::read_struct(params, "params")? };
    // SAFETY: forwarded from the caller.
    let input = unsafe { read_input(&p)? };
    let prompt = match &input {
        // SAFETY: forwarded from the caller.
        Input::Tokens(_) | Input::Embeddings(_) => {
            unsafe { args::optional_text(p.prompt, "params->prompt")? }.unwrap_or("")
        }
        // SAFETY: forwarded from the caller.
        _ => unsafe { args::text(p.prompt, "params->prompt")? },
    };
    // SAFETY: forwarded from the caller.
    let lora = unsafe { args::optional_text(p.lora, "params->lora")? };
    let role = match p.role {
        0 => Role::User,
        1 => Role::Tool,
        other => return Err(FfiError::invalid(format!("params->role = {other} is not an rkl_role (0 user, 1 tool)"))),
    };
    Ok(GenerateRequest {
        prompt: prompt.to_string(),
        role,
        enable_thinking: p.enable_thinking,
        keep_history: p.keep_history,
        max_new_tokens: (p.max_new_tokens != 0).then_some(p.max_new_tokens),
        lora: lora.map(str::to_string),
        cache_prefix: (p.cache_prefix_bytes != 0).then_some(p.cache_prefix_bytes),
        sampling: if p.sampling.is_null() {
            None
        } else {
            // SAFETY: a non-NULL `sampling` is a readable struct of its
            // `struct_size` bytes, per the caller's contract.
            Some(unsafe { args::read_struct(p.sampling, "params->sampling")? }.to_sampling())
        },
        input,
        // SAFETY: forwarded from the caller.
        cross_attn: unsafe { read_cross_attn(p.cross_attn)? },
    })
}

/// Fills `params` with the defaults: no prompt, user role, no thinking, no
/// history kept, the model's token limit, no LoRA.
///
/// @param params       caller memory of `struct_size` bytes, written during
///                     the call only.
/// @param struct_size  `sizeof(rkl_generate_params)` as the caller compiled it.
/// @return ::RKL_OK; ::RKL_NULL_ARGUMENT; ::RKL_INVALID_ARGUMENT when
///         `struct_size` is smaller than the first version of the struct.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_generate_params_init(params: *mut rkl_generate_params, struct_size: usize) -> rkl_status {
    ffi_fn!({
        // SAFETY: the caller promises `struct_size` writable bytes at `params`.
        unsafe { args::init_struct(params, struct_size, &rkl_generate_params::defaults(), "params") }
    })
}
