//! Generating with a token callback: `rkl_token_fn`, `rkl_generate`,
//! `rkl_abort`.

use super::args;
use super::model::{model_entry, rkl_model};
use super::request::{read_request, rkl_generate_params};
use super::stats::rkl_stats;
use super::status::rkl_status;
use std::ffi::{c_char, c_int, c_void};
use std::ops::ControlFlow;

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
