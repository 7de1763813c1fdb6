//! The error an export body fails with, and copying messages out to C.

use super::status::rkl_status;
use std::ffi::c_char;

/// An error on its way out through the C boundary: a status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfiError {
    /// The status returned to C.
    pub status: rkl_status,
    /// The message kept for `rkl_last_error_message`.
    pub message: String,
}

impl FfiError {
    /// An error with `status` and `message`.
    pub fn new(status: rkl_status, message: impl Into<String>) -> FfiError {
        FfiError { status, message: message.into() }
    }

    /// `RKL_INVALID_ARGUMENT` with `message`.
    pub fn invalid(message: impl Into<String>) -> FfiError {
        FfiError::new(rkl_status::RKL_INVALID_ARGUMENT, message)
    }

    /// `RKL_NULL_ARGUMENT` naming the argument.
    pub fn null(what: &str) -> FfiError {
        FfiError::new(rkl_status::RKL_NULL_ARGUMENT, format!("{what} is NULL"))
    }

    /// `RKL_BAD_HANDLE` with `message`.
    pub fn bad_handle(message: impl Into<String>) -> FfiError {
        FfiError::new(rkl_status::RKL_BAD_HANDLE, message)
    }
}

impl From<crate::Error> for FfiError {
    fn from(e: crate::Error) -> FfiError {
        FfiError { status: rkl_status::from_kind(e.kind()), message: e.message().to_string() }
    }
}

/// What an export body returns.
pub type FfiResult<T = ()> = Result<T, FfiError>;

/// Copies `message` into `buf` the way `snprintf` does (cut at a UTF-8
/// character boundary, NUL-terminated) and returns its full length.
///
/// # Safety
/// `buf` is NULL, or has `len` writable bytes.
pub unsafe fn copy_message(message: &str, buf: *mut c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let mut n = message.len().min(len - 1);
        while !message.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: the caller promises `buf` has `len` writable bytes;
        // n + 1 <= len, and the source is our own string.
        unsafe {
            std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    message.len()
}
