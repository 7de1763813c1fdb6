//! The caller's tokenizer and embedder as C gives them
//! (`rkl_tokenize_fn`, `rkl_embed_fn` in ::rkl_open_params), wrapped as the
//! library's [`Tokenizer`] and [`Embedder`].

use crate::{Embedder, Tokenizer};
use std::ffi::{c_char, c_int, c_void};

/// Tokenizes text for the runtime (release 1.3, in-process models).
///
/// @param text        the text to tokenize: `len` bytes of UTF-8, also
///                    NUL-terminated; valid only during the call.
/// @param len         its length in bytes.
/// @param tokens      where to write the ids: room for `max_tokens`.
/// @param max_tokens  the room.
/// @param userdata    `rkl_open_params.tokenizer_userdata`, unchanged.
/// @return how many ids were written (0..=`max_tokens`), or a negative
///         number when the text cannot be tokenized (the run then fails).
///
/// Runs on the runtime's thread in the middle of a run, so it must be
/// thread-safe; calls on models of the same runtime from inside it return
/// ::RKL_REENTRANT. It must return normally (no longjmp, no C++ exception).
pub type rkl_tokenize_fn = Option<
    unsafe extern "C" fn(
        text: *const c_char,
        len: usize,
        tokens: *mut i32,
        max_tokens: usize,
        userdata: *mut c_void,
    ) -> i64,
>;

/// Computes embedding rows for the runtime (release 1.3, in-process models).
///
/// @param tokens    the token ids, `n_tokens` of them; valid during the call.
/// @param n_tokens  how many.
/// @param out       where to write `n_tokens` rows of the model's embedding
///                  size: `n_floats` floats in all.
/// @param n_floats  the room.
/// @param userdata  `rkl_open_params.embedder_userdata`, unchanged.
/// @return 0 when `out` is filled; anything else fails the run.
///
/// Same thread rules as ::rkl_tokenize_fn.
pub type rkl_embed_fn = Option<
    unsafe extern "C" fn(
        tokens: *const i32,
        n_tokens: usize,
        out: *mut f32,
        n_floats: usize,
        userdata: *mut c_void,
    ) -> c_int,
>;

/// A C tokenizer and its userdata.
pub(crate) struct CTokenizer {
    pub(crate) function: unsafe extern "C" fn(*const c_char, usize, *mut i32, usize, *mut c_void) -> i64,
    pub(crate) userdata: *mut c_void,
}

// SAFETY: the caller promises (rkl_open_params' contract) that the callback
// and its userdata may be used from the runtime's thread; rkl never reads
// the userdata itself.
unsafe impl Send for CTokenizer {}
// SAFETY: as above.
unsafe impl Sync for CTokenizer {}

impl Tokenizer for CTokenizer {
    fn tokenize(&self, text: &str, tokens: &mut [i32]) -> Option<usize> {
        let mut owned = Vec::with_capacity(text.len() + 1);
        owned.extend_from_slice(text.as_bytes());
        owned.push(0);
        // SAFETY: the text is NUL-terminated and `tokens` has its length of
        // room, both valid during the call, as the callback's contract says.
        let n = unsafe {
            (self.function)(owned.as_ptr().cast(), text.len(), tokens.as_mut_ptr(), tokens.len(), self.userdata)
        };
        usize::try_from(n).ok().filter(|&n| n <= tokens.len())
    }
}

/// A C embedder and its userdata.
pub(crate) struct CEmbedder {
    pub(crate) function: unsafe extern "C" fn(*const i32, usize, *mut f32, usize, *mut c_void) -> c_int,
    pub(crate) userdata: *mut c_void,
}

// SAFETY: as for CTokenizer.
unsafe impl Send for CEmbedder {}
// SAFETY: as above.
unsafe impl Sync for CEmbedder {}

impl Embedder for CEmbedder {
    fn embed(&self, tokens: &[i32], out: &mut [f32]) -> bool {
        // SAFETY: both buffers are valid for their lengths during the call.
        unsafe { (self.function)(tokens.as_ptr(), tokens.len(), out.as_mut_ptr(), out.len(), self.userdata) == 0 }
    }
}
