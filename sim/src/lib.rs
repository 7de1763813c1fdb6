//! rkllm-sim: a look-alike of Rockchip's `librkllmrt.so` (see README.md).
//!
//! This file holds the exported symbols only; each forwards to a module.

mod abi;
mod cache;
mod callback;
mod config;
mod faults;
mod handle;
mod init;
mod input;
mod model_file;
mod params;
mod reply;
mod run;
mod session;
mod timing;
mod tokens;

use abi::LoraAdapter;
use handle::{Handle, InRuntime};
use std::ffi::{c_char, c_void};
use std::sync::atomic::Ordering;

/// `LLMHandle`.
type LlmHandle = *mut c_void;

/// The declared return type of `rkllm_createDefaultParam`: room for the
/// largest `RKLLMParam` (1.2's 208 bytes). On x86_64 and aarch64 the entry
/// stub writes only the imitated release's size (184 bytes in 1.3).
#[repr(C, align(8))]
pub struct DefaultParamReturn(pub [u8; params::MAX_PARAM_SIZE]);

/// Runs `f` on a usable handle inside the one-call-at-a-time accounting.
fn with_handle(value: LlmHandle, function: &str, f: impl FnOnce(&Handle) -> i32) -> i32 {
    let _in = InRuntime::enter();
    match handle::usable(value, function) {
        Ok(h) => f(&h),
        Err(code) => code,
    }
}

/// `RKLLMParam rkllm_createDefaultParam(void)`, returned through the hidden
/// result pointer (rdi), which this stub hands to the writer and returns in
/// rax as the SysV ABI requires.
///
/// # Safety
/// The caller's return slot must hold the imitated release's `RKLLMParam`.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn rkllm_createDefaultParam() -> DefaultParamReturn {
    std::arch::naked_asm!(
        "push rbx",
        "mov rbx, rdi",
        "call {write}@PLT",
        "mov rax, rbx",
        "pop rbx",
        "ret",
        write = sym params::write_default_param,
    )
}

/// As above for aarch64, where the hidden result pointer arrives in x8.
///
/// # Safety
/// As above.
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn rkllm_createDefaultParam() -> DefaultParamReturn {
    std::arch::naked_asm!(
        "stp x29, x30, [sp, #-32]!",
        "mov x29, sp",
        "str x19, [sp, #16]",
        "mov x19, x8",
        "mov x0, x8",
        "bl {write}",
        "mov x0, x19",
        "ldr x19, [sp, #16]",
        "ldp x29, x30, [sp], #32",
        "ret",
        write = sym params::write_default_param,
    )
}

/// Other targets: the whole 208-byte slot is written (see README,
/// "Faithfulness limits").
///
/// # Safety
/// The caller's return slot must hold 208 bytes.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[no_mangle]
pub unsafe extern "C" fn rkllm_createDefaultParam() -> DefaultParamReturn {
    let mut slot = DefaultParamReturn([0; params::MAX_PARAM_SIZE]);
    // SAFETY: the slot is MAX_PARAM_SIZE bytes, the largest release's size.
    unsafe { params::write_default_param(slot.0.as_mut_ptr()) };
    slot
}

/// `rkllm_init(LLMHandle* out, RKLLMParam* param, cb)`.
///
/// # Safety
/// `handle` is NULL or writable; `param` is NULL or the imitated release's
/// `RKLLMParam`; `callback` is 1.2's result callback or 1.3's
/// `RKLLMCallback*` (NULL is refused).
#[no_mangle]
pub unsafe extern "C" fn rkllm_init(handle: *mut LlmHandle, param: *mut c_void, callback: *mut c_void) -> i32 {
    let _in = InRuntime::enter();
    // SAFETY: the caller passes rkllm_init's arguments of the imitated release.
    unsafe { init::init(handle, param, callback) }
}

/// Destroys a live handle; anything else aborts the process.
///
/// # Safety
/// None beyond the C signature: every value is checked.
#[no_mangle]
pub unsafe extern "C" fn rkllm_destroy(handle: LlmHandle) -> i32 {
    let _in = InRuntime::enter();
    init::destroy(handle)
}

/// Generates the reply through the result callback (README).
///
/// # Safety
/// `input` and `infer` are NULL or the imitated release's `RKLLMInput` and
/// `RKLLMInferParam`, with valid strings; `userdata` is passed through.
#[no_mangle]
pub unsafe extern "C" fn rkllm_run(
    handle: LlmHandle,
    input: *mut c_void,
    infer: *mut c_void,
    userdata: *mut c_void,
) -> i32 {
    // SAFETY: the caller passes rkllm_run's arguments of the imitated release.
    with_handle(handle, "rkllm_run", |h| unsafe { run::run(h, input, infer, userdata) })
}

/// Accepted and run synchronously, like `rkllm_run`.
///
/// # Safety
/// As for `rkllm_run`.
#[no_mangle]
pub unsafe extern "C" fn rkllm_run_async(
    handle: LlmHandle,
    input: *mut c_void,
    infer: *mut c_void,
    userdata: *mut c_void,
) -> i32 {
    // SAFETY: as for rkllm_run.
    with_handle(handle, "rkllm_run_async", |h| unsafe { run::run(h, input, infer, userdata) })
}

/// Not counted as a call "in the runtime": it is meant to come from another
/// thread or from inside a callback.
///
/// # Safety
/// None beyond the C signature: every value is checked.
#[cfg(not(feature = "missing-abort"))]
#[no_mangle]
pub unsafe extern "C" fn rkllm_abort(handle: LlmHandle) -> i32 {
    match handle::usable(handle, "rkllm_abort") {
        Ok(h) => {
            h.abort.request();
            0
        }
        Err(code) => code,
    }
}

/// 1 while a run is in progress on the handle, else 0. Not counted.
///
/// # Safety
/// None beyond the C signature: every value is checked.
#[no_mangle]
pub unsafe extern "C" fn rkllm_is_running(handle: LlmHandle) -> i32 {
    match handle::usable(handle, "rkllm_is_running") {
        Ok(h) => i32::from(h.running.load(Ordering::SeqCst) > 0),
        Err(code) => code,
    }
}

/// Loads a cache file written by a run; the history becomes its tokens.
///
/// # Safety
/// `path` is NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn rkllm_load_prompt_cache(handle: LlmHandle, path: *const c_char) -> i32 {
    with_handle(handle, "rkllm_load_prompt_cache", |h| {
        // SAFETY: `path` is NULL or a C string, as the function takes.
        session::report("rkllm_load_prompt_cache", unsafe { session::load_prompt_cache(h, path) })
    })
}

/// Drops a loaded cache: the history is empty afterwards.
///
/// # Safety
/// None beyond the C signature: every value is checked.
#[no_mangle]
pub unsafe extern "C" fn rkllm_release_prompt_cache(handle: LlmHandle) -> i32 {
    with_handle(handle, "rkllm_release_prompt_cache", |h| {
        if !h.settings.model.sticky_kv {
            session::clear_history(h);
        }
        0
    })
}

/// Empties the history; `keep_system_prompt` and the position pointers
/// (which may be NULL) are ignored.
///
/// # Safety
/// None beyond the C signature: the pointers are never used.
#[cfg(not(any(feature = "family-1-1", feature = "family-1-2-0")))]
#[no_mangle]
pub unsafe extern "C" fn rkllm_clear_kv_cache(
    handle: LlmHandle,
    _keep_system_prompt: i32,
    _start_pos: *mut i32,
    _end_pos: *mut i32,
) -> i32 {
    with_handle(handle, "rkllm_clear_kv_cache", |h| {
        session::clear_history(h);
        0
    })
}

/// 1.2.0 and 1.2.1b1's two-argument form: empties the history;
/// `keep_system_prompt` is ignored.
///
/// # Safety
/// None beyond the C signature.
#[cfg(feature = "family-1-2-0")]
#[no_mangle]
pub unsafe extern "C" fn rkllm_clear_kv_cache(handle: LlmHandle, _keep_system_prompt: i32) -> i32 {
    with_handle(handle, "rkllm_clear_kv_cache", |h| {
        session::clear_history(h);
        0
    })
}

/// Writes the history's token count to `sizes[0]`.
///
/// # Safety
/// `sizes` is NULL or writable for one `int`.
#[cfg(not(any(feature = "family-1-1", feature = "family-1-2-0")))]
#[no_mangle]
pub unsafe extern "C" fn rkllm_get_kv_cache_size(handle: LlmHandle, sizes: *mut i32) -> i32 {
    with_handle(handle, "rkllm_get_kv_cache_size", |h| {
        // SAFETY: `sizes` is NULL or an array of at least one int.
        session::report("rkllm_get_kv_cache_size", unsafe { session::kv_cache_size(h, sizes) })
    })
}

/// Copies the template strings; NULL is refused.
///
/// # Safety
/// Each pointer is NULL or a C string.
#[cfg(not(feature = "family-1-1"))]
#[no_mangle]
pub unsafe extern "C" fn rkllm_set_chat_template(
    handle: LlmHandle,
    system_prompt: *const c_char,
    prompt_prefix: *const c_char,
    prompt_postfix: *const c_char,
) -> i32 {
    with_handle(handle, "rkllm_set_chat_template", |h| {
        // SAFETY: each pointer is NULL or a C string, as the function takes.
        let result = unsafe { session::set_chat_template(h, system_prompt, prompt_prefix, prompt_postfix) };
        session::report("rkllm_set_chat_template", result)
    })
}

/// Keeps `tools` for `{tools}`; NULL is refused.
///
/// # Safety
/// Each pointer is NULL or a C string.
#[cfg(not(any(feature = "family-1-1", feature = "no-function-tools")))]
#[no_mangle]
pub unsafe extern "C" fn rkllm_set_function_tools(
    handle: LlmHandle,
    system_prompt: *const c_char,
    tools: *const c_char,
    tool_response_str: *const c_char,
) -> i32 {
    with_handle(handle, "rkllm_set_function_tools", |h| {
        // SAFETY: each pointer is NULL or a C string, as the function takes.
        let result = unsafe { session::set_function_tools(h, system_prompt, tools, tool_response_str) };
        session::report("rkllm_set_function_tools", result)
    })
}

/// Registers a LoRA adapter by name for `lora_params` of later runs.
///
/// # Safety
/// `adapter` is NULL or an `RKLLMLoraAdapter` whose strings are NULL or C strings.
#[no_mangle]
pub unsafe extern "C" fn rkllm_load_lora(handle: LlmHandle, adapter: *mut LoraAdapter) -> i32 {
    with_handle(handle, "rkllm_load_lora", |h| {
        // SAFETY: `adapter` is NULL or an RKLLMLoraAdapter, as the function takes.
        session::report("rkllm_load_lora", unsafe { session::load_lora(h, adapter) })
    })
}

/// Keeps the `RKLLMCrossAttnParam` pointer (not a copy) for later runs,
/// which read it again whole (README).
///
/// # Safety
/// `params` is NULL or an `RKLLMCrossAttnParam` that stays valid (with its
/// arrays) for the runs after this call.
#[cfg(not(any(feature = "family-1-1", feature = "family-1-2-0")))]
#[no_mangle]
pub unsafe extern "C" fn rkllm_set_cross_attn_params(handle: LlmHandle, params: *mut c_void) -> i32 {
    with_handle(handle, "rkllm_set_cross_attn_params", |h| {
        // SAFETY: `params` is NULL or an RKLLMCrossAttnParam, as the function takes.
        session::report("rkllm_set_cross_attn_params", unsafe { session::set_cross_attn(h, params) })
    })
}

/// Simulator only: `out[0]` violations of the one-call-at-a-time rule,
/// `out[1]` live handles, `out[2]` runs started, `out[3]` cache files
/// written. Not counted as a runtime call. NULL is ignored.
///
/// # Safety
/// `out` is NULL or writable for four `u64`.
#[no_mangle]
pub unsafe extern "C" fn rkllm_sim_stats(out: *mut u64) {
    if out.is_null() {
        return;
    }
    let values = [
        handle::VIOLATIONS.load(Ordering::SeqCst),
        handle::live_count(),
        handle::RUNS_STARTED.load(Ordering::SeqCst),
        handle::CACHES_WRITTEN.load(Ordering::SeqCst),
    ];
    // SAFETY: the caller passes room for four u64 values.
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out, values.len()) };
}
