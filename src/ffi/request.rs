//! A generation request as C gives it: `rkl_role`, `rkl_generate_params`,
//! `rkl_generate_params_init`, and reading it into a [`GenerateRequest`]
//! (for rkl_generate(), rkl_stream_open() and rkl_cache_save()).

use super::args::{self, Versioned};
use super::error::{FfiError, FfiResult};
use super::status::rkl_status;
use crate::{GenerateRequest, Role};
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
    std::mem::size_of::<rkl_generate_params>() == 48 && offset_of!(rkl_generate_params, cache_prefix_bytes) == 40
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
