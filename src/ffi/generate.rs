//! Generating with a token callback: `rkl_generate_params`, `rkl_generate`,
//! `rkl_abort`.

use super::args::{self, Versioned};
use super::error::{FfiError, FfiResult};
use super::model::{model_entry, rkl_model};
use super::stats::rkl_stats;
use super::status::rkl_status;
use crate::{GenerateRequest, Role};
use std::ffi::{c_char, c_int, c_void};
use std::mem::offset_of;
use std::ops::ControlFlow;
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
}

// SAFETY: repr(C), starts with usize; the two bools are listed and checked.
unsafe impl Versioned for rkl_generate_params {
    const NAME: &'static str = "rkl_generate_params";
    // The first version is the current one; freeze this as a number when a
    // field is added.
    const V1_SIZE: usize = std::mem::size_of::<rkl_generate_params>();
    const BOOL_OFFSETS: &'static [usize] =
        &[offset_of!(rkl_generate_params, enable_thinking), offset_of!(rkl_generate_params, keep_history)];
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<rkl_generate_params>() == 40);

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

/// Receives one piece of generated text.
///
/// @param text      complete UTF-8 characters (never a split character),
///                  NUL-terminated; valid only during the call (copy what you
///                  keep).
/// @param len       length of `text` in bytes, without the NUL.
/// @param userdata  the pointer given to rkl_generate().
/// @return 0 to go on; non-zero to stop the generation (it then ends with
///         ::RKL_FINISH_STOPPED).
///
/// Runs on the thread that called rkl_generate(). It may call rkl_abort()
/// (on any model) and functions on models of other runtimes; other calls on
/// models of the same runtime return ::RKL_REENTRANT. It must return normally
/// (no longjmp, no C++ exception).
pub type rkl_token_fn = Option<unsafe extern "C" fn(text: *const c_char, len: usize, userdata: *mut c_void) -> c_int>;

/// Generates a reply, blocking until it ends, and hands each piece of text to
/// `on_token` on this thread.
///
/// @param model     a handle from rkl_open().
/// @param params    the request; read only during the call (rkl copies it).
/// @param on_token  called with each piece of text; NULL to discard the
///                  text (e.g. to only fill the KV history).
/// @param userdata  passed to `on_token` unchanged; never dereferenced by rkl.
/// @param out       NULL, or caller stats with `struct_size` set; filled only
///                  on success.
/// @return ::RKL_OK when the generation ended normally, hit its token
///         limit, was stopped by the callback or aborted (see
///         `out->finish`); ::RKL_BAD_HANDLE; ::RKL_NULL_ARGUMENT;
///         ::RKL_INVALID_ARGUMENT (bad struct, prompt not UTF-8, ...);
///         ::RKL_CLOSED; ::RKL_REENTRANT (called from a token callback);
///         ::RKL_CACHE_MISMATCH (a prompt cache is loaded and the prompt
///         does not start with its prompt); ::RKL_RUNTIME_FAILED (the
///         runtime reported an error); ::RKL_RUNTIME_TIMEOUT (no progress
///         within `call_timeout_ms`); ::RKL_RUNTIME_CRASHED (isolation mode).
///
/// Thread-safe: generations on models of one runtime run one at a time in
/// the order they were asked for; rkl_abort() and rkl_close() from other
/// threads stop this one.
#[no_mangle]
pub unsafe extern "C" fn rkl_generate(
    model: *mut rkl_model,
    params: *const rkl_generate_params,
    on_token: rkl_token_fn,
    userdata: *mut c_void,
    out: *mut rkl_stats,
) -> rkl_status {
    ffi_fn!({
        let entry = model_entry(model)?;
        if !out.is_null() {
            // SAFETY: the caller promises a struct of `struct_size` bytes.
            unsafe { args::check_out_struct(out, "out")? };
        }
        // SAFETY: the caller promises a readable params struct.
        let request = unsafe { read_request(params)? };
        let mut buffer: Vec<u8> = Vec::new();
        let stats = entry.model.generate(&request, |chunk| {
            let Some(callback) = on_token else { return ControlFlow::Continue(()) };
            buffer.clear();
            buffer.extend_from_slice(chunk.as_bytes());
            buffer.push(0);
            // SAFETY: the callback and userdata come from the caller; the
            // text is NUL-terminated and lives until the call returns.
            let verdict = unsafe { callback(buffer.as_ptr().cast::<c_char>(), chunk.len(), userdata) };
            if verdict == 0 {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        if !out.is_null() {
            // SAFETY: checked above.
            unsafe { args::write_struct(out, &rkl_stats::from(&stats), "out")? };
        }
        Ok(())
    })
}

/// Stops every generation of `model` that is queued or running, including
/// streams. Returns at once; the generations end with ::RKL_FINISH_ABORTED.
/// Does nothing when nothing runs.
///
/// @param model  a handle from rkl_open().
/// @return ::RKL_OK; ::RKL_BAD_HANDLE.
///
/// Thread-safe, and allowed from any thread including inside a token callback.
#[no_mangle]
pub unsafe extern "C" fn rkl_abort(model: *mut rkl_model) -> rkl_status {
    ffi_fn!({
        model_entry(model)?.model.abort();
        Ok(())
    })
}
