//! The runtime's `#[repr(C)]` structs for releases 1.2.0, 1.2.1b1, 1.2 (1.2.1+)
//! and 1.3.
//!
//! Written from the tables in `shared/rkllm-abi.md`, independently of rkl's own
//! declarations, and asserted field by field at compile time. C `bool` fields
//! are `u8` here so that a garbage value can be read and refused instead of
//! being undefined behaviour.

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};

/// The result callback: `int cb(RKLLMResult*, void* userdata, int state)`.
pub type ResultCallback = unsafe extern "C" fn(result: *mut RkllmResult, userdata: *mut c_void, state: i32) -> i32;

/// 1.2.0 and 1.2.1b1's result callback: `void cb(RKLLMResult*, void*, int)`,
/// with their 48-byte result (no perf).
pub type VoidResultCallback = unsafe extern "C" fn(result: *mut Result48, userdata: *mut c_void, state: i32);

/// 1.3's tokenizer callback: returns the token count, or < 0 on error.
pub type TokenizerCallback = unsafe extern "C" fn(
    userdata: *mut c_void,
    text: *const c_char,
    text_len: i32,
    tokens: *mut i32,
    n_tokens_max: i32,
) -> i32;

/// 1.3's embedding callback: fills `embed` (`len_bytes` bytes) for the
/// tokens; 0 on success.
pub type EmbedCallback = unsafe extern "C" fn(
    userdata: *mut c_void,
    tokens: *mut i32,
    num_tokens: u64,
    embed: *mut c_void,
    len_bytes: u64,
) -> i32;

/// Callback states.
pub mod call_state {
    pub const NORMAL: i32 = 0;
    pub const WAITING: i32 = 1;
    pub const FINISH: i32 = 2;
    pub const ERROR: i32 = 3;
}

/// `RKLLMExtendParam`, 120 bytes, the same in 1.2 and 1.3.
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

/// `RKLLMParam` of release 1.2, 208 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ParamV12 {
    pub model_path: *const c_char,
    pub max_context_len: i32,
    pub max_new_tokens: i32,
    pub top_k: i32,
    pub n_keep: i32,
    pub top_p: f32,
    pub temperature: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub mirostat: i32,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
    pub skip_special_token: u8,
    pub is_async: u8,
    pub img_start: *const c_char,
    pub img_end: *const c_char,
    pub img_content: *const c_char,
    pub extend_param: ExtendParam,
}

/// `RKLLMParam` of release 1.3, 184 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ParamV13 {
    pub model_path: *const c_char,
    pub max_context_len: i32,
    pub max_new_tokens: i32,
    pub top_k: i32,
    pub n_keep: i32,
    pub top_p: f32,
    pub temperature: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub mirostat: i32,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
    pub skip_special_token: u8,
    pub ignore_eos_token: u8,
    pub is_async: u8,
    pub extend_param: ExtendParam,
}

/// `RKLLMTokenInput` / `RKLLMEmbedInput`: an array and its length.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ArrayInput {
    pub data: *const c_void,
    pub len: usize,
}

/// The multimodal input of 1.2.1b1 .. 1.2.3, 48 bytes; the image tags are
/// init's `img_start`, `img_end`, `img_content`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MultimodalV12 {
    pub prompt: *const c_char,
    pub image_embed: *const f32,
    pub n_image_tokens: usize,
    pub n_image: usize,
    pub image_width: usize,
    pub image_height: usize,
}

/// The multimodal input of 1.2.0, 24 bytes: one image.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MultimodalV120 {
    pub prompt: *const c_char,
    pub image_embed: *const f32,
    pub n_image_tokens: usize,
}

/// The multimodal input of 1.3, 144 bytes: an image part at 8, a video
/// part at 72, each with its own tags.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MultimodalV13 {
    pub prompt: *const c_char,
    pub image_embed: *const f32,
    pub n_image_tokens: usize,
    pub n_image: usize,
    pub image_start: *const c_char,
    pub image_end: *const c_char,
    pub image_content: *const c_char,
    pub image_width: usize,
    pub image_height: usize,
    pub video_embed: *const f32,
    pub n_frame_tokens: usize,
    pub n_frame_per_video: usize,
    pub n_video: usize,
    pub video_start: *const c_char,
    pub video_end: *const c_char,
    pub video_content: *const c_char,
    pub frame_width: usize,
    pub frame_height: usize,
}

/// `RKLLMInput` of release 1.2.0, 32 bytes: no role, no enable_thinking.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InputV120 {
    pub input_type: i32,
    pub payload: InputPayloadV120,
}

/// The input union of 1.2.0 (24 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union InputPayloadV120 {
    pub prompt: *const c_char,
    pub tokens: ArrayInput,
    pub embed: ArrayInput,
    pub multimodal: MultimodalV120,
}

/// `RKLLMInput` of release 1.2.1b1, 56 bytes: no role, no enable_thinking,
/// the union of 1.2.1+.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InputV121b1 {
    pub input_type: i32,
    pub payload: InputPayloadV12,
}

/// `RKLLMInput` of release 1.2, 64 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InputV12 {
    pub role: *const c_char,
    pub enable_thinking: u8,
    pub input_type: i32,
    pub payload: InputPayloadV12,
}

/// The input union of 1.2; the multimodal member is the largest (48 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union InputPayloadV12 {
    pub prompt: *const c_char,
    pub tokens: ArrayInput,
    pub embed: ArrayInput,
    pub multimodal: MultimodalV12,
}

/// `RKLLMInput` of release 1.3, 160 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InputV13 {
    pub role: *const c_char,
    pub enable_thinking: u8,
    pub input_type: i32,
    pub payload: InputPayloadV13,
}

/// The input union of 1.3; the multimodal member (image and video) is 144 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub union InputPayloadV13 {
    pub prompt: *const c_char,
    pub tokens: ArrayInput,
    pub embed: ArrayInput,
    pub multimodal: MultimodalV13,
}

/// `RKLLMLoraParam`: the adapter selected for one run.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LoraParam {
    pub lora_adapter_name: *const c_char,
}

/// `RKLLMPromptCacheParam`, 16 bytes in every release.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PromptCacheParam {
    pub save_prompt_cache: i32,
    pub prompt_cache_path: *const c_char,
}

/// 1.3's per-run sampling parameters, 36 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SamplingParam {
    pub top_k: i32,
    pub top_p: f32,
    pub temperature: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub mirostat: i32,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
}

/// `RKLLMInferParam` of release 1.2, 32 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InferParamV12 {
    pub mode: i32,
    pub lora_params: *const LoraParam,
    pub prompt_cache_params: *const PromptCacheParam,
    pub keep_history: i32,
}

/// `RKLLMInferParam` of release 1.3, 40 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InferParamV13 {
    pub mode: i32,
    pub lora_params: *const LoraParam,
    pub prompt_cache_params: *const PromptCacheParam,
    pub sampling_params: *const SamplingParam,
    pub keep_history: i32,
    pub max_new_tokens: i32,
}

/// 1.3's `RKLLMCallback`, 48 bytes: init's third argument points at it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CallbacksV13 {
    pub result_callback: Option<ResultCallback>,
    pub result_userdata: *mut c_void,
    pub tokenizer_callback: Option<TokenizerCallback>,
    pub tokenizer_userdata: *mut c_void,
    pub embed_callback: Option<EmbedCallback>,
    pub embed_userdata: *mut c_void,
}

/// `RKLLMLoraAdapter`, 24 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
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

/// `RKLLMResultLastHiddenLayer`, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LastHiddenLayer {
    pub hidden_states: *const f32,
    pub embd_size: i32,
    pub num_tokens: i32,
}

/// `RKLLMResultLogits`, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Logits {
    pub logits: *const f32,
    pub vocab_size: i32,
    pub num_tokens: i32,
}

/// `RKLLMCrossAttnParam`, 40 bytes (1.2.1 and later).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CrossAttnParam {
    pub encoder_k_cache: *const f32,
    pub encoder_v_cache: *const f32,
    pub encoder_mask: *const f32,
    pub encoder_pos: *const i32,
    pub num_tokens: i32,
}

/// `RKLLMResult` of 1.2.0 and 1.2.1b1, 48 bytes: no perf.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Result48 {
    pub text: *const c_char,
    pub token_id: i32,
    pub last_hidden_layer: LastHiddenLayer,
    pub logits: Logits,
}

/// `RKLLMResult`, 72 bytes (1.2.1 and later).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RkllmResult {
    pub text: *const c_char,
    pub token_id: i32,
    pub last_hidden_layer: LastHiddenLayer,
    pub logits: Logits,
    pub perf: PerfStat,
}

const _: () = {
    assert!(size_of::<ExtendParam>() == 120);
    assert!(offset_of!(ExtendParam, base_domain_id) == 0);
    assert!(offset_of!(ExtendParam, embed_flash) == 4);
    assert!(offset_of!(ExtendParam, enabled_cpus_num) == 5);
    assert!(offset_of!(ExtendParam, enabled_cpus_mask) == 8);
    assert!(offset_of!(ExtendParam, n_batch) == 12);
    assert!(offset_of!(ExtendParam, use_cross_attn) == 13);
    assert!(offset_of!(ExtendParam, reserved) == 14);
};

/// Asserts the head that `RKLLMParam` has in both releases.
macro_rules! assert_param_head {
    ($t:ty) => {
        assert!(offset_of!($t, model_path) == 0);
        assert!(offset_of!($t, max_context_len) == 8);
        assert!(offset_of!($t, max_new_tokens) == 12);
        assert!(offset_of!($t, top_k) == 16);
        assert!(offset_of!($t, n_keep) == 20);
        assert!(offset_of!($t, top_p) == 24);
        assert!(offset_of!($t, temperature) == 28);
        assert!(offset_of!($t, repeat_penalty) == 32);
        assert!(offset_of!($t, frequency_penalty) == 36);
        assert!(offset_of!($t, presence_penalty) == 40);
        assert!(offset_of!($t, mirostat) == 44);
        assert!(offset_of!($t, mirostat_tau) == 48);
        assert!(offset_of!($t, mirostat_eta) == 52);
        assert!(offset_of!($t, skip_special_token) == 56);
    };
}

const _: () = {
    assert!(size_of::<ParamV12>() == 208);
    assert_param_head!(ParamV12);
    assert!(offset_of!(ParamV12, is_async) == 57);
    assert!(offset_of!(ParamV12, img_start) == 64);
    assert!(offset_of!(ParamV12, img_end) == 72);
    assert!(offset_of!(ParamV12, img_content) == 80);
    assert!(offset_of!(ParamV12, extend_param) == 88);

    assert!(size_of::<ParamV13>() == 184);
    assert_param_head!(ParamV13);
    assert!(offset_of!(ParamV13, ignore_eos_token) == 57);
    assert!(offset_of!(ParamV13, is_async) == 58);
    assert!(offset_of!(ParamV13, extend_param) == 60);
};

const _: () = {
    assert!(size_of::<ArrayInput>() == 16);
    assert!(offset_of!(ArrayInput, data) == 0);
    assert!(offset_of!(ArrayInput, len) == 8);

    assert!(size_of::<MultimodalV12>() == 48);
    assert!(offset_of!(MultimodalV12, prompt) == 0);
    assert!(offset_of!(MultimodalV12, image_embed) == 8);
    assert!(offset_of!(MultimodalV12, n_image_tokens) == 16);
    assert!(offset_of!(MultimodalV12, n_image) == 24);
    assert!(offset_of!(MultimodalV12, image_width) == 32);
    assert!(offset_of!(MultimodalV12, image_height) == 40);

    assert!(size_of::<MultimodalV120>() == 24);
    assert!(offset_of!(MultimodalV120, prompt) == 0);
    assert!(offset_of!(MultimodalV120, image_embed) == 8);
    assert!(offset_of!(MultimodalV120, n_image_tokens) == 16);

    assert!(size_of::<MultimodalV13>() == 144);
    assert!(offset_of!(MultimodalV13, prompt) == 0);
    assert!(offset_of!(MultimodalV13, image_embed) == 8);
    assert!(offset_of!(MultimodalV13, n_image_tokens) == 16);
    assert!(offset_of!(MultimodalV13, n_image) == 24);
    assert!(offset_of!(MultimodalV13, image_start) == 32);
    assert!(offset_of!(MultimodalV13, image_end) == 40);
    assert!(offset_of!(MultimodalV13, image_content) == 48);
    assert!(offset_of!(MultimodalV13, image_width) == 56);
    assert!(offset_of!(MultimodalV13, image_height) == 64);
    assert!(offset_of!(MultimodalV13, video_embed) == 72);
    assert!(offset_of!(MultimodalV13, n_frame_tokens) == 80);
    assert!(offset_of!(MultimodalV13, n_frame_per_video) == 88);
    assert!(offset_of!(MultimodalV13, n_video) == 96);
    assert!(offset_of!(MultimodalV13, video_start) == 104);
    assert!(offset_of!(MultimodalV13, video_end) == 112);
    assert!(offset_of!(MultimodalV13, video_content) == 120);
    assert!(offset_of!(MultimodalV13, frame_width) == 128);
    assert!(offset_of!(MultimodalV13, frame_height) == 136);

    assert!(size_of::<InputPayloadV120>() == 24);
    assert!(size_of::<InputV120>() == 32);
    assert!(offset_of!(InputV120, input_type) == 0);
    assert!(offset_of!(InputV120, payload) == 8);

    assert!(size_of::<InputV121b1>() == 56);
    assert!(offset_of!(InputV121b1, input_type) == 0);
    assert!(offset_of!(InputV121b1, payload) == 8);

    assert!(size_of::<InputPayloadV12>() == 48);
    assert!(size_of::<InputV12>() == 64);
    assert!(offset_of!(InputV12, role) == 0);
    assert!(offset_of!(InputV12, enable_thinking) == 8);
    assert!(offset_of!(InputV12, input_type) == 12);
    assert!(offset_of!(InputV12, payload) == 16);

    assert!(size_of::<InputPayloadV13>() == 144);
    assert!(size_of::<InputV13>() == 160);
    assert!(offset_of!(InputV13, role) == 0);
    assert!(offset_of!(InputV13, enable_thinking) == 8);
    assert!(offset_of!(InputV13, input_type) == 12);
    assert!(offset_of!(InputV13, payload) == 16);
};

const _: () = {
    assert!(size_of::<LoraParam>() == 8);
    assert!(offset_of!(LoraParam, lora_adapter_name) == 0);

    assert!(size_of::<PromptCacheParam>() == 16);
    assert!(offset_of!(PromptCacheParam, save_prompt_cache) == 0);
    assert!(offset_of!(PromptCacheParam, prompt_cache_path) == 8);

    assert!(size_of::<SamplingParam>() == 36);
    assert!(offset_of!(SamplingParam, top_k) == 0);
    assert!(offset_of!(SamplingParam, top_p) == 4);
    assert!(offset_of!(SamplingParam, temperature) == 8);
    assert!(offset_of!(SamplingParam, repeat_penalty) == 12);
    assert!(offset_of!(SamplingParam, frequency_penalty) == 16);
    assert!(offset_of!(SamplingParam, presence_penalty) == 20);
    assert!(offset_of!(SamplingParam, mirostat) == 24);
    assert!(offset_of!(SamplingParam, mirostat_tau) == 28);
    assert!(offset_of!(SamplingParam, mirostat_eta) == 32);

    assert!(size_of::<InferParamV12>() == 32);
    assert!(offset_of!(InferParamV12, mode) == 0);
    assert!(offset_of!(InferParamV12, lora_params) == 8);
    assert!(offset_of!(InferParamV12, prompt_cache_params) == 16);
    assert!(offset_of!(InferParamV12, keep_history) == 24);

    assert!(size_of::<InferParamV13>() == 40);
    assert!(offset_of!(InferParamV13, mode) == 0);
    assert!(offset_of!(InferParamV13, lora_params) == 8);
    assert!(offset_of!(InferParamV13, prompt_cache_params) == 16);
    assert!(offset_of!(InferParamV13, sampling_params) == 24);
    assert!(offset_of!(InferParamV13, keep_history) == 32);
    assert!(offset_of!(InferParamV13, max_new_tokens) == 36);
};

const _: () = {
    assert!(size_of::<CallbacksV13>() == 48);
    assert!(offset_of!(CallbacksV13, result_callback) == 0);
    assert!(offset_of!(CallbacksV13, result_userdata) == 8);
    assert!(offset_of!(CallbacksV13, tokenizer_callback) == 16);
    assert!(offset_of!(CallbacksV13, tokenizer_userdata) == 24);
    assert!(offset_of!(CallbacksV13, embed_callback) == 32);
    assert!(offset_of!(CallbacksV13, embed_userdata) == 40);

    assert!(size_of::<LoraAdapter>() == 24);
    assert!(offset_of!(LoraAdapter, lora_adapter_path) == 0);
    assert!(offset_of!(LoraAdapter, lora_adapter_name) == 8);
    assert!(offset_of!(LoraAdapter, scale) == 16);
};

const _: () = {
    assert!(size_of::<PerfStat>() == 20);
    assert!(offset_of!(PerfStat, prefill_time_ms) == 0);
    assert!(offset_of!(PerfStat, prefill_tokens) == 4);
    assert!(offset_of!(PerfStat, generate_time_ms) == 8);
    assert!(offset_of!(PerfStat, generate_tokens) == 12);
    assert!(offset_of!(PerfStat, memory_usage_mb) == 16);

    assert!(size_of::<LastHiddenLayer>() == 16);
    assert!(offset_of!(LastHiddenLayer, hidden_states) == 0);
    assert!(offset_of!(LastHiddenLayer, embd_size) == 8);
    assert!(offset_of!(LastHiddenLayer, num_tokens) == 12);

    assert!(size_of::<Logits>() == 16);
    assert!(offset_of!(Logits, logits) == 0);
    assert!(offset_of!(Logits, vocab_size) == 8);
    assert!(offset_of!(Logits, num_tokens) == 12);

    assert!(size_of::<CrossAttnParam>() == 40);
    assert!(offset_of!(CrossAttnParam, encoder_k_cache) == 0);
    assert!(offset_of!(CrossAttnParam, encoder_v_cache) == 8);
    assert!(offset_of!(CrossAttnParam, encoder_mask) == 16);
    assert!(offset_of!(CrossAttnParam, encoder_pos) == 24);
    assert!(offset_of!(CrossAttnParam, num_tokens) == 32);

    assert!(size_of::<Result48>() == 48);
    assert!(offset_of!(Result48, text) == 0);
    assert!(offset_of!(Result48, token_id) == 8);
    assert!(offset_of!(Result48, last_hidden_layer) == 16);
    assert!(offset_of!(Result48, logits) == 32);

    assert!(size_of::<RkllmResult>() == 72);
    assert!(offset_of!(RkllmResult, text) == 0);
    assert!(offset_of!(RkllmResult, token_id) == 8);
    assert!(offset_of!(RkllmResult, last_hidden_layer) == 16);
    assert!(offset_of!(RkllmResult, logits) == 32);
    assert!(offset_of!(RkllmResult, perf) == 48);
};
