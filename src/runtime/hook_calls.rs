//! The tokenizer and embedding callbacks rkl gives a 1.3 runtime: they
//! check what the runtime hands over and call the caller's
//! [`RuntimeHooks`](crate::RuntimeHooks). The runtime gets a pointer to a
//! [`HookTable`] as userdata, which the model keeps until after
//! `rkllm_destroy`.

use crate::callback_scope::CallbackScope;
use crate::hooks::RuntimeHooks;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The hooks of one model, at a stable heap address.
pub struct HookTable {
    pub hooks: RuntimeHooks,
    /// The runtime's id: calls on its models from inside a hook are refused
    /// (they would wait for the very run that called the hook).
    pub key: usize,
}

/// Most token ids or floats rkl lets the runtime hand a hook (1 GiB).
const MAX_ITEMS: u64 = 1 << 28;

/// `int tokenizer(void* ud, const char* text, int32_t len, int32_t* tokens, int32_t max)`.
pub unsafe extern "C" fn tokenizer_callback(
    userdata: *mut c_void,
    text: *const c_char,
    text_len: i32,
    tokens: *mut i32,
    max: i32,
) -> i32 {
    let call = || -> Option<i32> {
        // SAFETY: the userdata is the model's HookTable, kept until after
        // rkllm_destroy, so it outlives every callback.
        let table = unsafe { &*(userdata as *const HookTable) };
        let tokenizer = table.hooks.tokenizer.as_ref()?;
        if text.is_null() || text_len < 0 || tokens.is_null() || max < 0 || max as u64 > MAX_ITEMS {
            log::warn!("the runtime called the tokenizer with a bad buffer (len {text_len}, max {max})");
            return None;
        }
        // SAFETY: the runtime hands `text_len` readable bytes and `max`
        // writable ids for the duration of the call.
        let (bytes, out) = unsafe {
            (
                std::slice::from_raw_parts(text.cast::<u8>(), text_len as usize),
                std::slice::from_raw_parts_mut(tokens, max as usize),
            )
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            log::warn!("the runtime asked to tokenize text that is not UTF-8");
            return None;
        };
        let _scope = CallbackScope::enter(table.key);
        let n = tokenizer.tokenize(text, out)?;
        (n <= out.len()).then_some(n as i32).or_else(|| {
            log::warn!("the tokenizer wrote {n} ids into a buffer of {}", out.len());
            None
        })
    };
    // A panic must not unwind into the runtime's C frames.
    catch_unwind(AssertUnwindSafe(call)).ok().flatten().unwrap_or(-1)
}

/// `int embed(void* ud, int32_t* tokens, uint64_t n, void* embed, uint64_t len_bytes)`.
pub unsafe extern "C" fn embed_callback(
    userdata: *mut c_void,
    tokens: *mut i32,
    n: u64,
    embed: *mut c_void,
    len_bytes: u64,
) -> i32 {
    let call = || -> Option<()> {
        // SAFETY: as in tokenizer_callback.
        let table = unsafe { &*(userdata as *const HookTable) };
        let embedder = table.hooks.embedder.as_ref()?;
        let aligned = (embed as usize) % std::mem::align_of::<f32>() == 0;
        if tokens.is_null()
            || embed.is_null()
            || n > MAX_ITEMS
            || len_bytes % 4 != 0
            || len_bytes / 4 > MAX_ITEMS
            || !aligned
        {
            log::warn!("the runtime called the embedder with a bad buffer ({n} tokens, {len_bytes} bytes)");
            return None;
        }
        // SAFETY: the runtime hands `n` readable ids and `len_bytes`
        // writable, float-aligned bytes for the duration of the call.
        let (ids, out) = unsafe {
            (
                std::slice::from_raw_parts(tokens, n as usize),
                std::slice::from_raw_parts_mut(embed.cast::<f32>(), (len_bytes / 4) as usize),
            )
        };
        let _scope = CallbackScope::enter(table.key);
        embedder.embed(ids, out).then_some(())
    };
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Some(())) => 0,
        _ => -1,
    }
}
