//! What every supported release (1.2.0 to 1.3) shares: the structs whose
//! layout is the same in all of them, the [`Layout`] trait each release's
//! layout file implements, and the signals of the default-param probe.
//!
//! Declared from the tables in `shared/rkllm-abi.md`; every field's offset and
//! every size is asserted at compile time, so a slip fails the build.
//!
//! The numbers are LP64's (x86-64 and AArch64, the boards' and the build
//! machines' data model). The runtime's 32-bit ARM (armhf, ILP32) builds lay
//! these structs out differently; rkl does not support them, and on such a
//! target these asserts (and `default_params.rs`) stop the build on purpose.

use super::params::ModelParams;
use std::ffi::{c_char, c_void, CStr};
use std::mem::{offset_of, size_of};

/// Opaque runtime handle (`LLMHandle`, a `void*`).
pub type LlmHandle = *mut c_void;

/// A runtime handle, sendable to the dispatcher thread.
#[derive(Clone, Copy)]
pub struct HandleAddr(pub LlmHandle);

// SAFETY: the handle is an opaque token; it is only passed to the runtime from
// the dispatcher thread, except for rkllm_abort, which the runtime provides for
// calling during a run from another thread.
unsafe impl Send for HandleAddr {}
// SAFETY: as above; sharing the token shares no memory.
unsafe impl Sync for HandleAddr {}

/// The runtime's result callback: `int cb(RKLLMResult*, void* userdata, int state)`.
pub type ResultCallback = unsafe extern "C" fn(result: *mut RkllmResult, userdata: *mut c_void, state: i32) -> i32;

/// The result callback of 1.2.0 and 1.2.1b1: returns nothing, and their
/// result is the 48-byte [`ResultHead`] (no perf).
pub type VoidResultCallback = unsafe extern "C" fn(result: *mut ResultHead, userdata: *mut c_void, state: i32);

/// 1.3's tokenizer callback: `int (void* ud, const char* text, int32_t
/// text_len, int32_t* tokens, int32_t n_tokens_max)`, the count or < 0.
pub type TokenizerCallback =
    unsafe extern "C" fn(userdata: *mut c_void, text: *const c_char, text_len: i32, tokens: *mut i32, max: i32) -> i32;

/// 1.3's embedding callback: `int (void* ud, int32_t* tokens, uint64_t
/// num_tokens, void* embed, uint64_t len_bytes)`, 0 on success.
pub type EmbedCallback =
    unsafe extern "C" fn(userdata: *mut c_void, tokens: *mut i32, n: u64, embed: *mut c_void, len_bytes: u64) -> i32;

/// `RKLLMInferParam.mode`.
pub mod infer_mode {
    /// Generate text.
    pub const GENERATE: i32 = 0;
    /// Return the last hidden layer.
    pub const LAST_HIDDEN_LAYER: i32 = 1;
    /// Return the logits.
    pub const LOGITS: i32 = 2;
}

/// Callback states passed as the third argument of [`ResultCallback`].
pub mod call_state {
    /// A text chunk.
    pub const NORMAL: i32 = 0;
    /// A multi-byte character is incomplete.
    pub const WAITING: i32 = 1;
    /// Generation ended; `perf` is filled.
    pub const FINISH: i32 = 2;
    /// Generation failed.
    pub const ERROR: i32 = 3;
}

/// `RKLLMExtendParam`, 120 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExtendParam {
    pub base_domain_id: i32,
    pub embed_flash: i8,
    pub enabled_cpus_num: i8,
    pub enabled_cpus_mask: u32,
    pub n_batch: u8,
    pub use_cross_attn: i8,
    pub reserved: [u8; 104],
}

/// `RKLLMPromptCacheParam`, 16 bytes in every release.
#[repr(C)]
pub struct PromptCacheParam {
    pub save_prompt_cache: i32,
    pub prompt_cache_path: *const c_char,
}

/// `RKLLMLoraParam`: selects a loaded adapter for one run.
#[repr(C)]
pub struct LoraParam {
    pub lora_adapter_name: *const c_char,
}

/// `RKLLMLoraAdapter`, 24 bytes.
#[repr(C)]
pub struct LoraAdapter {
    pub lora_adapter_path: *const c_char,
    pub lora_adapter_name: *const c_char,
    pub scale: f32,
}

/// `RKLLMPerfStat`, 20 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PerfStat {
    pub prefill_time_ms: f32,
    pub prefill_tokens: i32,
    pub generate_time_ms: f32,
    pub generate_tokens: i32,
    pub memory_usage_mb: f32,
}

/// `RKLLMResultLastHiddenLayer` / `RKLLMResultLogits`: a float array and two counts.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FloatBlock {
    pub data: *const f32,
    pub count_a: i32,
    pub count_b: i32,
}

/// `RKLLMResult` of 1.2.0 and 1.2.1b1 (48 bytes): what every release's
/// result starts with.
#[repr(C)]
pub struct ResultHead {
    pub text: *const c_char,
    pub token_id: i32,
    pub last_hidden_layer: FloatBlock,
    pub logits: FloatBlock,
}

/// `RKLLMResult`, 72 bytes (1.2.1 and later).
#[repr(C)]
pub struct RkllmResult {
    pub head: ResultHead,
    pub perf: PerfStat,
}

/// `RKLLMTokenInput` (16 bytes, every release): token ids.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TokenInput {
    pub input_ids: *const i32,
    pub n_tokens: usize,
}

/// `RKLLMEmbedInput` (16 bytes, every release): `n_tokens` rows of the
/// model's embedding dimension.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EmbedInput {
    pub embed: *const f32,
    pub n_tokens: usize,
}

/// `RKLLMMultiModelInput` of 1.2.1b1 to 1.2.3 (48 bytes; 1.2.3 renamed it).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MultimodalV1_2 {
    pub prompt: *const c_char,
    pub image_embed: *const f32,
    pub n_image_tokens: usize,
    pub n_image: usize,
    pub image_width: usize,
    pub image_height: usize,
}

/// `RKLLMInput.input_type`.
pub mod input_type {
    pub const PROMPT: i32 = 0;
    pub const TOKEN: i32 = 1;
    pub const EMBED: i32 = 2;
    pub const MULTIMODAL: i32 = 3;
}

impl RunPayload<'_> {
    /// Its `input_type`.
    pub fn input_type(&self) -> i32 {
        match self {
            RunPayload::Prompt(_) => input_type::PROMPT,
            RunPayload::Tokens(_) => input_type::TOKEN,
            RunPayload::Embeddings { .. } => input_type::EMBED,
            RunPayload::Multimodal { .. } => input_type::MULTIMODAL,
        }
    }

    /// The token and embedding members, which every release lays out alike;
    /// `None` for the other kinds.
    pub fn tokens(&self) -> Option<TokenInput> {
        match self {
            RunPayload::Tokens(ids) => Some(TokenInput { input_ids: ids.as_ptr(), n_tokens: ids.len() }),
            _ => None,
        }
    }

    /// See [`RunPayload::tokens`].
    pub fn embeddings(&self) -> Option<EmbedInput> {
        match self {
            RunPayload::Embeddings { values, n_tokens } => {
                Some(EmbedInput { embed: values.as_ptr(), n_tokens: *n_tokens })
            }
            _ => None,
        }
    }

    /// The 1.2.1b1–1.2.3 multimodal member (images only); `None` for the
    /// other kinds.
    pub fn multimodal_v1_2(&self) -> Option<MultimodalV1_2> {
        let RunPayload::Multimodal { prompt, images, .. } = self else { return None };
        let image = images.as_ref();
        Some(MultimodalV1_2 {
            prompt: prompt.as_ptr(),
            image_embed: image.map_or(std::ptr::null(), |i| i.values.as_ptr()),
            n_image_tokens: image.map_or(0, |i| i.tokens),
            n_image: image.map_or(0, |i| i.count),
            image_width: image.map_or(0, |i| i.width),
            image_height: image.map_or(0, |i| i.height),
        })
    }
}

/// Why a 1.2-era release refuses what `shape` asks (videos are 1.3's).
pub fn check_run_v1_2(shape: &RunShape, release: &str) -> Result<(), String> {
    if shape.videos {
        return Err(format!("video input needs a 1.3 runtime; this one is {release}"));
    }
    Ok(())
}

/// `RKLLMCrossAttnParam` (40 bytes, 1.2.1 and later).
#[repr(C)]
pub struct CrossAttnParam {
    pub encoder_k_cache: *const f32,
    pub encoder_v_cache: *const f32,
    pub encoder_mask: *const f32,
    pub encoder_pos: *const i32,
    pub num_tokens: i32,
}

/// What `rkllm_createDefaultParam` wrote (see `default_params.rs`), larger
/// than any known release's `RKLLMParam`; bytes it did not write are 0.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct DefaultParamBytes(pub [u8; DEFAULT_PARAM_SLOT]);

/// Size of [`DefaultParamBytes`].
pub const DEFAULT_PARAM_SLOT: usize = 512;

/// The sampling values in a default-param image: the common head of
/// `RKLLMParam` (top_k at 16 .. mirostat_eta at 52 in every release).
pub fn default_sampling(image: &DefaultParamBytes) -> super::params::SamplingValues {
    let b = &image.0;
    let i32_at = |at: usize| i32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let f32_at = |at: usize| f32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    super::params::SamplingValues {
        top_k: i32_at(16),
        top_p: f32_at(24),
        temperature: f32_at(28),
        repeat_penalty: f32_at(32),
        frequency_penalty: f32_at(36),
        presence_penalty: f32_at(40),
        mirostat: i32_at(44),
        mirostat_tau: f32_at(48),
        mirostat_eta: f32_at(52),
    }
}

/// A runtime function as resolved, before the code that calls it gives it
/// its signature; never called as is.
pub type UntypedFn = unsafe extern "C" fn();

/// `rkllm_init`: a layout file gives it its release's signature (the third
/// argument differs by release).
pub type UntypedInitFn = UntypedFn;

/// `rkllm_run`, with the release's input and infer structs as void pointers.
pub type RunFn = unsafe extern "C" fn(LlmHandle, *mut c_void, *mut c_void, *mut c_void) -> i32;

/// The per-release code. Each layout file implements it for its family, and
/// `layout::of` is the one place that picks the implementation for a family.
pub trait Layout: Sync {
    /// Whether the default-param probe's signals are this release's own.
    /// Detection takes a family only when exactly one layout says yes.
    fn looks_like(&self, signals: &ProbeSignals) -> bool;

    /// Whether `rkllm_run` takes a per-run `max_new_tokens` (else rkl stops
    /// a run at its limit with an abort).
    fn limits_tokens_per_run(&self) -> bool;

    /// Whether `rkllm_run` takes per-run sampling parameters.
    fn samples_per_run(&self) -> bool;

    /// Whether this release (as it printed its `version`, if it did) can
    /// take a run of `shape`; else why not, for the caller's error.
    fn check_run(&self, shape: &RunShape, version: Option<&str>) -> Result<(), String>;

    /// Whether init takes the init-time features in `features`; else why not.
    fn check_init(&self, features: &InitFeatures) -> Result<(), String>;

    /// `rkllm_clear_kv_cache` with this release's arguments (1.2.0 takes
    /// only the handle and `keep_system_prompt`).
    ///
    /// # Safety
    /// `clear` is this runtime's `rkllm_clear_kv_cache`, `handle` live, on
    /// the dispatcher thread.
    unsafe fn clear_kv_cache(&self, clear: UntypedFn, handle: LlmHandle, keep_system_prompt: bool) -> i32;

    /// Builds this release's `RKLLMParam` from the runtime's defaults, with
    /// the set [`ModelParams`], the model path and `is_async` = 0, and calls
    /// `rkllm_init` with it. Returns init's code and the structs the runtime
    /// was given: it may keep pointers into them, so the caller keeps them,
    /// at their heap address, until after `rkllm_destroy`.
    ///
    /// # Safety
    /// `init` is the `rkllm_init` of a runtime of this release,
    /// `input.defaults` is what its `rkllm_createDefaultParam` wrote, and
    /// `input.model_path` stays alive until after `rkllm_destroy`.
    unsafe fn init(&self, init: UntypedInitFn, input: InitInput<'_>, handle: &mut LlmHandle) -> (i32, Box<dyn Send>);

    /// Builds this release's `RKLLMInput` and `RKLLMInferParam` on this frame
    /// and calls `rkllm_run`, which returns when the run has ended.
    ///
    /// # Safety
    /// `run` is the `rkllm_run` of a runtime of this release and `handle` a
    /// live handle of it, called from the runtime's dispatcher thread.
    unsafe fn run(&self, run: RunFn, handle: LlmHandle, input: RunInput<'_>, userdata: *mut c_void) -> i32;
}

/// What `rkllm_init` is built from, in every release.
pub struct InitInput<'a> {
    /// What `rkllm_createDefaultParam` wrote: rkl always starts from it.
    pub defaults: &'a DefaultParamBytes,
    /// The fields to change from the defaults.
    pub params: &'a ModelParams,
    /// The model file.
    pub model_path: &'a CStr,
    /// The result callback to register (1.2.1 and later).
    pub callback: ResultCallback,
    /// The result callback for releases whose callback returns nothing.
    pub void_callback: VoidResultCallback,
    /// The image tags, for releases that take them at init (start, end,
    /// content); `None`: the runtime's defaults.
    pub image_tags: Option<[&'a CStr; 3]>,
    /// A tokenizer callback and its userdata (1.3).
    pub tokenizer: Option<(TokenizerCallback, *mut c_void)>,
    /// An embedding callback and its userdata (1.3).
    pub embedder: Option<(EmbedCallback, *mut c_void)>,
}

/// Init-time features a release may lack.
#[derive(Clone, Copy, Debug, Default)]
pub struct InitFeatures {
    /// `extend_param.use_cross_attn`.
    pub cross_attn: bool,
    /// Tokenizer or embedding callbacks.
    pub hooks: bool,
}

/// What a run asks of the release, for [`Layout::check_run`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RunShape {
    /// Images in a multimodal input.
    pub images: usize,
    /// Whether the images' size is given.
    pub image_size: bool,
    /// Whether a multimodal input has videos.
    pub videos: bool,
    /// The role is not "user".
    pub tool_role: bool,
    /// Thinking mode.
    pub thinking: bool,
}

/// One image or video part of a multimodal run, as the runtime takes it.
pub struct MediaRun<'a> {
    /// The embeddings.
    pub values: &'a [f32],
    /// Images or videos.
    pub count: usize,
    /// Frames per video (1 for images).
    pub frames: usize,
    /// Embedding tokens per image or frame.
    pub tokens: usize,
    /// Pixels (0: not given).
    pub width: usize,
    /// Pixels (0: not given).
    pub height: usize,
    /// Start, end and content tags, for releases that take them per run.
    pub tags: [&'a CStr; 3],
}

/// What `rkllm_run` is fed, by input kind.
pub enum RunPayload<'a> {
    /// Prompt text.
    Prompt(&'a CStr),
    /// Token ids.
    Tokens(&'a [i32]),
    /// `n_tokens` embedding rows.
    Embeddings { values: &'a [f32], n_tokens: usize },
    /// A prompt with image (and 1.3: video) embeddings.
    Multimodal { prompt: &'a CStr, images: Option<MediaRun<'a>>, videos: Option<MediaRun<'a>> },
}

/// What `rkllm_run` is built from, in every release. Everything borrowed
/// here lives until `rkllm_run` has returned.
pub struct RunInput<'a> {
    /// What is fed.
    pub payload: RunPayload<'a>,
    /// An [`infer_mode`] value.
    pub mode: i32,
    /// "user" or "tool".
    pub role: &'a CStr,
    /// Qwen3 thinking mode.
    pub enable_thinking: bool,
    /// Keep this turn in the KV history.
    pub keep_history: bool,
    /// Per-run token limit (0: the init value), for releases that take one.
    pub max_new_tokens: i32,
    /// The loaded LoRA adapter to apply, if any.
    pub lora: Option<&'a mut LoraParam>,
    /// Saving the prompt's KV cache during the run, if asked for.
    pub prompt_cache: Option<&'a mut PromptCacheParam>,
    /// The run's own sampling values, for releases that take them.
    pub sampling: Option<super::params::SamplingValues>,
    /// The version the runtime printed, if it did (1.2.0 and 1.2.1b1 need
    /// it to lay out multimodal input).
    pub release: Option<&'a str>,
}

/// The layout signals read from a default-param image: the same bytes for
/// every release (see `shared/rkllm-abi.md`, "Probe"); each layout file says
/// which values are its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSignals {
    /// The u64 at offset 64.
    pub word_64: u64,
    /// The u64 at offset 72.
    pub word_72: u64,
    /// The byte at offset 92.
    pub byte_92: u8,
    /// The byte at offset 93.
    pub byte_93: u8,
    /// Whether any of bytes 74..178 is non-zero.
    pub tail_nonzero: bool,
}

/// Smallest value taken as a pointer: the first page is never mapped.
pub const MIN_POINTER: u64 = 4096;

impl ProbeSignals {
    /// Reads the signals out of the bytes the runtime wrote.
    pub fn read(image: &DefaultParamBytes) -> ProbeSignals {
        let b = &image.0;
        let word = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        ProbeSignals {
            word_64: word(64),
            word_72: word(72),
            byte_92: b[92],
            byte_93: b[93],
            tail_nonzero: b[74..178].iter().any(|&x| x != 0),
        }
    }
}

/// Copies the set fields of `ModelParams` into a release's `RKLLMParam`
/// (every release has these fields under these names) and turns off
/// asynchronous mode.
macro_rules! apply_params {
    ($p:expr, $params:expr) => {{
        let p = $p;
        let m = $params;
        if let Some(v) = m.max_context_len {
            p.max_context_len = v;
        }
        if let Some(v) = m.max_new_tokens {
            p.max_new_tokens = v;
        }
        if let Some(v) = m.top_k {
            p.top_k = v;
        }
        if let Some(v) = m.n_keep {
            p.n_keep = v;
        }
        if let Some(v) = m.top_p {
            p.top_p = v;
        }
        if let Some(v) = m.temperature {
            p.temperature = v;
        }
        if let Some(v) = m.repeat_penalty {
            p.repeat_penalty = v;
        }
        if let Some(v) = m.frequency_penalty {
            p.frequency_penalty = v;
        }
        if let Some(v) = m.presence_penalty {
            p.presence_penalty = v;
        }
        if let Some(v) = m.mirostat {
            p.mirostat = v;
        }
        if let Some(v) = m.mirostat_tau {
            p.mirostat_tau = v;
        }
        if let Some(v) = m.mirostat_eta {
            p.mirostat_eta = v;
        }
        if let Some(v) = m.skip_special_token {
            p.skip_special_token = v as u8;
        }
        if let Some(v) = m.embed_flash {
            p.extend_param.embed_flash = v as i8;
        }
        if let Some(v) = m.enabled_cpus_num {
            p.extend_param.enabled_cpus_num = v;
        }
        if let Some(v) = m.enabled_cpus_mask {
            p.extend_param.enabled_cpus_mask = v;
        }
        if let Some(v) = m.base_domain_id {
            p.extend_param.base_domain_id = v;
        }
        // Releases without the field refuse it in `check_init`.
        if let Some(v) = m.use_cross_attn {
            p.extend_param.use_cross_attn = v as i8;
        }
        // rkl never uses asynchronous mode: rkllm_run must block.
        p.is_async = 0;
    }};
}
pub(super) use apply_params;

const _: () = {
    assert!(size_of::<ExtendParam>() == 120);
    assert!(offset_of!(ExtendParam, base_domain_id) == 0);
    assert!(offset_of!(ExtendParam, embed_flash) == 4);
    assert!(offset_of!(ExtendParam, enabled_cpus_num) == 5);
    assert!(offset_of!(ExtendParam, enabled_cpus_mask) == 8);
    assert!(offset_of!(ExtendParam, n_batch) == 12);
    assert!(offset_of!(ExtendParam, use_cross_attn) == 13);
    assert!(offset_of!(ExtendParam, reserved) == 14);

    assert!(size_of::<PromptCacheParam>() == 16);
    assert!(offset_of!(PromptCacheParam, save_prompt_cache) == 0);
    assert!(offset_of!(PromptCacheParam, prompt_cache_path) == 8);

    assert!(size_of::<LoraParam>() == 8);

    assert!(size_of::<LoraAdapter>() == 24);
    assert!(offset_of!(LoraAdapter, lora_adapter_path) == 0);
    assert!(offset_of!(LoraAdapter, lora_adapter_name) == 8);
    assert!(offset_of!(LoraAdapter, scale) == 16);

    assert!(size_of::<PerfStat>() == 20);
    assert!(offset_of!(PerfStat, prefill_time_ms) == 0);
    assert!(offset_of!(PerfStat, prefill_tokens) == 4);
    assert!(offset_of!(PerfStat, generate_time_ms) == 8);
    assert!(offset_of!(PerfStat, generate_tokens) == 12);
    assert!(offset_of!(PerfStat, memory_usage_mb) == 16);

    assert!(size_of::<FloatBlock>() == 16);
    assert!(size_of::<ResultHead>() == 48);
    assert!(offset_of!(ResultHead, text) == 0);
    assert!(offset_of!(ResultHead, token_id) == 8);
    assert!(offset_of!(ResultHead, last_hidden_layer) == 16);
    assert!(offset_of!(ResultHead, logits) == 32);
    assert!(size_of::<RkllmResult>() == 72);
    assert!(offset_of!(RkllmResult, head) == 0);
    assert!(offset_of!(RkllmResult, perf) == 48);

    assert!(size_of::<TokenInput>() == 16);
    assert!(size_of::<EmbedInput>() == 16);
    assert!(size_of::<MultimodalV1_2>() == 48);
    assert!(offset_of!(MultimodalV1_2, prompt) == 0);
    assert!(offset_of!(MultimodalV1_2, image_embed) == 8);
    assert!(offset_of!(MultimodalV1_2, n_image_tokens) == 16);
    assert!(offset_of!(MultimodalV1_2, n_image) == 24);
    assert!(offset_of!(MultimodalV1_2, image_width) == 32);
    assert!(offset_of!(MultimodalV1_2, image_height) == 40);

    assert!(size_of::<CrossAttnParam>() == 40);
    assert!(offset_of!(CrossAttnParam, encoder_k_cache) == 0);
    assert!(offset_of!(CrossAttnParam, encoder_v_cache) == 8);
    assert!(offset_of!(CrossAttnParam, encoder_mask) == 16);
    assert!(offset_of!(CrossAttnParam, encoder_pos) == 24);
    assert!(offset_of!(CrossAttnParam, num_tokens) == 32);

    assert!(size_of::<DefaultParamBytes>() == DEFAULT_PARAM_SLOT);
};
