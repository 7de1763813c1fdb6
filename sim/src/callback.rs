//! Calling the result callback with a result that lives only for the call.

use crate::abi::{LastHiddenLayer, Logits, PerfStat, Result48, ResultCallback, RkllmResult, VoidResultCallback};
use std::ffi::{c_char, c_void};
use std::ptr;

/// The result callback of the imitated release.
#[derive(Clone, Copy)]
pub enum ResultFn {
    /// 1.2.1+ and 1.3: returns int, gets the 72-byte result.
    Int(ResultCallback),
    /// 1.2.0 and 1.2.1b1: returns void, gets the 48-byte result.
    Void(VoidResultCallback),
}

/// Where a run's callbacks go.
#[derive(Clone, Copy)]
pub struct Sink {
    pub callback: ResultFn,
    /// The userdata pointer, as an address so a run can move to another thread.
    pub userdata: usize,
}

/// Byte written over a text after its callback returned, so that a caller
/// who kept the pointer reads garbage even without a memory checker.
const POISON: u8 = 0xA5;

/// A float array handed to one callback (last hidden layer or logits).
pub struct FloatRows<'a> {
    pub data: &'a [f32],
    /// Floats per row.
    pub width: i32,
    pub rows: i32,
}

const NO_HIDDEN: LastHiddenLayer = LastHiddenLayer { hidden_states: ptr::null(), embd_size: 0, num_tokens: 0 };
const NO_LOGITS: Logits = Logits { logits: ptr::null(), vocab_size: 0, num_tokens: 0 };

impl Sink {
    /// Calls the callback once. `text` `None` is a NULL pointer; otherwise
    /// the text is a fresh NUL-terminated heap copy that is poisoned and
    /// freed after the call, like the result struct itself.
    pub fn send(&self, state: i32, text: Option<&[u8]>, token_id: i32, perf: PerfStat) -> i32 {
        self.send_full(state, text, token_id, NO_HIDDEN, NO_LOGITS, perf)
    }

    /// One NORMAL callback of infer mode 1 (`hidden`) or 2 (`logits`): text
    /// NULL, token_id -1. The caller owns the array and overwrites it with
    /// NaN after this returns.
    pub fn send_rows(&self, hidden: Option<FloatRows>, logits: Option<FloatRows>) -> i32 {
        let h = hidden.map_or(NO_HIDDEN, |r| LastHiddenLayer {
            hidden_states: r.data.as_ptr(),
            embd_size: r.width,
            num_tokens: r.rows,
        });
        let l =
            logits.map_or(NO_LOGITS, |r| Logits { logits: r.data.as_ptr(), vocab_size: r.width, num_tokens: r.rows });
        self.send_full(crate::abi::call_state::NORMAL, None, -1, h, l, PerfStat::default())
    }

    fn send_full(
        &self,
        state: i32,
        text: Option<&[u8]>,
        token_id: i32,
        hidden: LastHiddenLayer,
        logits: Logits,
        perf: PerfStat,
    ) -> i32 {
        let mut text_buf: Option<Box<[u8]>> = text.map(|t| [t, &[0u8]].concat().into_boxed_slice());
        let text_ptr = text_buf.as_ref().map_or(ptr::null(), |b| b.as_ptr() as *const c_char);
        let userdata = self.userdata as *mut c_void;
        let code = match self.callback {
            ResultFn::Int(f) => {
                let mut result =
                    Box::new(RkllmResult { text: text_ptr, token_id, last_hidden_layer: hidden, logits, perf });
                // SAFETY: the callback was registered at init with the runtime's
                // signature; the result and text are valid until it returns.
                let code = unsafe { f(&mut *result, userdata, state) };
                // SAFETY: `result` is a valid exclusive reference; volatile so
                // the store is not removed as dead before the free.
                unsafe { ptr::write_volatile(&mut result.text, ptr::null()) };
                code
            }
            ResultFn::Void(f) => {
                // Exactly 48 bytes: reading a perf field is a heap overread.
                let mut result = Box::new(Result48 { text: text_ptr, token_id, last_hidden_layer: hidden, logits });
                // SAFETY: as above, with 1.2.0's void callback and result.
                unsafe { f(&mut *result, userdata, state) };
                // SAFETY: as above.
                unsafe { ptr::write_volatile(&mut result.text, ptr::null()) };
                0
            }
        };
        if let Some(buf) = text_buf.as_mut() {
            let len = buf.len();
            for byte in &mut buf[..len - 1] {
                // SAFETY: `byte` is a valid exclusive reference; volatile so
                // the store is not removed as dead before the free.
                unsafe { ptr::write_volatile(byte, POISON) };
            }
        }
        code
    }
}
