//! Calling the result callback with a result that lives only for the call.

use crate::abi::{LastHiddenLayer, Logits, PerfStat, ResultCallback, RkllmResult};
use std::ffi::{c_char, c_void};
use std::ptr;

/// Where a run's callbacks go.
#[derive(Clone, Copy)]
pub struct Sink {
    pub callback: ResultCallback,
    /// The userdata pointer, as an address so a run can move to another thread.
    pub userdata: usize,
}

/// Byte written over a text after its callback returned, so that a caller
/// who kept the pointer reads garbage even without a memory checker.
const POISON: u8 = 0xA5;

impl Sink {
    /// Calls the callback once. `text` `None` is a NULL pointer; otherwise
    /// the text is a fresh NUL-terminated heap copy that is poisoned and
    /// freed after the call, like the result struct itself.
    pub fn send(&self, state: i32, text: Option<&[u8]>, token_id: i32, perf: PerfStat) -> i32 {
        let mut text_buf: Option<Box<[u8]>> = text.map(|t| [t, &[0u8]].concat().into_boxed_slice());
        let mut result = Box::new(RkllmResult {
            text: text_buf.as_ref().map_or(ptr::null(), |b| b.as_ptr() as *const c_char),
            token_id,
            last_hidden_layer: LastHiddenLayer { hidden_states: ptr::null(), embd_size: 0, num_tokens: 0 },
            logits: Logits { logits: ptr::null(), vocab_size: 0, num_tokens: 0 },
            perf,
        });
        // SAFETY: the callback was registered at init with the runtime's
        // signature; the result and text are valid until it returns.
        let code = unsafe { (self.callback)(&mut *result, self.userdata as *mut c_void, state) };
        if let Some(buf) = text_buf.as_mut() {
            let len = buf.len();
            for byte in &mut buf[..len - 1] {
                // SAFETY: `byte` is a valid exclusive reference; volatile so
                // the store is not removed as dead before the free.
                unsafe { ptr::write_volatile(byte, POISON) };
            }
        }
        // SAFETY: `result` is a valid exclusive reference; as above.
        unsafe { ptr::write_volatile(&mut result.text, ptr::null()) };
        code
    }
}
