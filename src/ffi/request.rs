//! A generation request as C gives it: `rkl_role`, `rkl_generate_params`,
//! `rkl_generate_params_init`, and reading it into a [`GenerateRequest`]
//! (for rkl_generate(), rkl_stream_open() and rkl_cache_save()).

use super::args::{self, Versioned};
use super::error::{FfiError, FfiResult};
use super::model::RKL_UNSET;
use super::status::rkl_status;
use crate::{GenerateRequest, Role, Sampling};
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

/// One generation request. Fill with rkl_generate_params_init(), then set
/// `prompt` and whatever else should differ from the defaults.
///
/// Compatibility rules as for ::rkl_open_params.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rkl_generate_params {
    /// Size of the struct as the caller knows it; written by
    /// rkl_generate_params_init().
    pub struct_size: usize,
    /// The prompt. Required; UTF-8 without NUL inside; copied during the call.
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
    std::mem::size_of::<rkl_generate_params>() == 56
        && offset_of!(rkl_generate_params, cache_prefix_bytes) == 40
        && offset_of!(rkl_generate_params, sampling) == 48
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
        }
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
    let prompt = unsafe { args::text(p.prompt, "params->prompt")? };
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
