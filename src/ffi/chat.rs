//! Conversation state and model setup: `rkl_clear_history`,
//! `rkl_kv_cache_tokens`, `rkl_set_chat_template`, `rkl_set_function_tools`,
//! `rkl_load_lora`.

use super::args;
use super::model::{model_entry, rkl_model};
use super::status::rkl_status;
use std::ffi::{c_char, c_int};
use std::path::Path;

/// Empties the model's KV history, so the next request starts a new
/// conversation. With a prompt cache loaded, the cache is released and the
/// history emptied entirely, `keep_system_prompt` or not (the cache's
/// tokens hold any system prompt); requests then give plain prompts.
///
/// @param model               a handle from rkl_open().
/// @param keep_system_prompt  non-zero: keep the system prompt's tokens.
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_CLOSED; ::RKL_REENTRANT;
///         ::RKL_RUNTIME_FAILED; ::RKL_RUNTIME_TIMEOUT; ::RKL_RUNTIME_CRASHED
///         (isolation mode).
///
/// Thread-safe; runs after calls already queued on the runtime.
#[no_mangle]
pub unsafe extern "C" fn rkl_clear_history(model: *mut rkl_model, keep_system_prompt: c_int) -> rkl_status {
    ffi_fn!({ Ok(model_entry(model)?.model.clear_history(keep_system_prompt != 0)?) })
}

/// The number of tokens currently held in the model's KV cache.
///
/// @param model  a handle from rkl_open().
/// @param out    receives the count, only on success.
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_NULL_ARGUMENT; ::RKL_CLOSED;
///         ::RKL_REENTRANT; ::RKL_RUNTIME_FAILED; ::RKL_RUNTIME_TIMEOUT;
///         ::RKL_RUNTIME_CRASHED (isolation mode).
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_kv_cache_tokens(model: *mut rkl_model, out: *mut u32) -> rkl_status {
    ffi_fn!({
        let entry = model_entry(model)?;
        args::require(out, "out")?;
        let tokens = entry.model.kv_cache_tokens()?;
        // SAFETY: checked non-NULL; the caller promises it writable.
        unsafe { args::put(out, tokens) };
        Ok(())
    })
}

/// Replaces the model's chat template: the text put before the first turn
/// (`system`), and around every prompt (`prefix` + prompt + `postfix`).
///
/// @param model    a handle from rkl_open().
/// @param system   the system prompt (may be ""), UTF-8.
/// @param prefix   the text before each prompt (may be ""), UTF-8.
/// @param postfix  the text after each prompt (may be ""), UTF-8.
///                 All three are copied during the call.
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_NULL_ARGUMENT;
///         ::RKL_INVALID_ARGUMENT; ::RKL_CLOSED; ::RKL_REENTRANT;
///         ::RKL_RUNTIME_FAILED; ::RKL_RUNTIME_TIMEOUT; ::RKL_RUNTIME_CRASHED
///         (isolation mode).
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_set_chat_template(
    model: *mut rkl_model,
    system: *const c_char,
    prefix: *const c_char,
    postfix: *const c_char,
) -> rkl_status {
    ffi_fn!({
        let entry = model_entry(model)?;
        // SAFETY: the caller promises NUL-terminated strings valid for the call.
        let (system, prefix, postfix) =
            unsafe { (args::text(system, "system")?, args::text(prefix, "prefix")?, args::text(postfix, "postfix")?) };
        Ok(entry.model.set_chat_template(system, prefix, postfix)?)
    })
}

/// Declares function tools the model may call.
///
/// @param model          a handle from rkl_open().
/// @param system         the system prompt to use with tools, UTF-8.
/// @param tools_json     a JSON array of tool descriptions, UTF-8.
/// @param tool_response  the marker the model's template uses for tool
///                       results (e.g. "tool_response"), UTF-8.
///                       All three are copied during the call.
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_NULL_ARGUMENT;
///         ::RKL_INVALID_ARGUMENT; ::RKL_CLOSED; ::RKL_REENTRANT;
///         ::RKL_RUNTIME_FAILED; ::RKL_RUNTIME_TIMEOUT; ::RKL_RUNTIME_CRASHED
///         (isolation mode).
///
/// Send the tool's result back with a request whose role is ::RKL_ROLE_TOOL.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_set_function_tools(
    model: *mut rkl_model,
    system: *const c_char,
    tools_json: *const c_char,
    tool_response: *const c_char,
) -> rkl_status {
    ffi_fn!({
        let entry = model_entry(model)?;
        // SAFETY: the caller promises NUL-terminated strings valid for the call.
        let (system, tools, response) = unsafe {
            (
                args::text(system, "system")?,
                args::text(tools_json, "tools_json")?,
                args::text(tool_response, "tool_response")?,
            )
        };
        Ok(entry.model.set_function_tools(system, tools, response)?)
    })
}

/// Loads a LoRA adapter, to be applied per request through
/// rkl_generate_params.lora = `name`.
///
/// @param model  a handle from rkl_open().
/// @param path   the adapter file, UTF-8; copied during the call.
/// @param name   the name requests use to select it (not empty), UTF-8;
///               copied during the call.
/// @param scale  the adapter's weight (finite; usually 1.0).
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_NULL_ARGUMENT;
///         ::RKL_INVALID_ARGUMENT; ::RKL_MODEL_NOT_FOUND (no such file);
///         ::RKL_CLOSED; ::RKL_REENTRANT; ::RKL_RUNTIME_FAILED;
///         ::RKL_RUNTIME_TIMEOUT; ::RKL_RUNTIME_CRASHED (isolation mode).
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_load_lora(
    model: *mut rkl_model,
    path: *const c_char,
    name: *const c_char,
    scale: f32,
) -> rkl_status {
    ffi_fn!({
        let entry = model_entry(model)?;
        // SAFETY: the caller promises NUL-terminated strings valid for the call.
        let (path, name) = unsafe { (args::text(path, "path")?, args::text(name, "name")?) };
        Ok(entry.model.load_lora(Path::new(path), name, scale)?)
    })
}
