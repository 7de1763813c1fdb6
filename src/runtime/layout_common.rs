//! Structs whose layout is the same in every supported release (1.2.1+ and 1.3).
//!
//! Declared from the tables in `shared/rkllm-abi.md`; every field's offset and
//! every size is asserted at compile time, so a slip fails the build.

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};

/// Opaque runtime handle (`LLMHandle`, a `void*`).
pub type LlmHandle = *mut c_void;

/// The runtime's result callback: `int cb(RKLLMResult*, void* userdata, int state)`.
pub type ResultCallback =
    unsafe extern "C" fn(result: *mut RkllmResult, userdata: *mut c_void, state: i32) -> i32;

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

/// `RKLLMResult`, 72 bytes (1.2.1 and later).
#[repr(C)]
pub struct RkllmResult {
    pub text: *const c_char,
    pub token_id: i32,
    pub last_hidden_layer: FloatBlock,
    pub logits: FloatBlock,
    pub perf: PerfStat,
}

/// The plain-bytes return slot used for `rkllm_createDefaultParam`, larger than
/// any release's `RKLLMParam` so that no release can overrun it.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct DefaultParamBytes(pub [u8; DEFAULT_PARAM_SLOT]);

/// Size of [`DefaultParamBytes`].
pub const DEFAULT_PARAM_SLOT: usize = 512;

/// Signature of `rkllm_createDefaultParam`, declared with the oversized slot.
pub type CreateDefaultParamFn = unsafe extern "C" fn() -> DefaultParamBytes;

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
    assert!(size_of::<RkllmResult>() == 72);
    assert!(offset_of!(RkllmResult, text) == 0);
    assert!(offset_of!(RkllmResult, token_id) == 8);
    assert!(offset_of!(RkllmResult, last_hidden_layer) == 16);
    assert!(offset_of!(RkllmResult, logits) == 32);
    assert!(offset_of!(RkllmResult, perf) == 48);

    assert!(size_of::<DefaultParamBytes>() == DEFAULT_PARAM_SLOT);
};
