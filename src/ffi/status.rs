//! `rkl_status`: the result of every call, with fixed numbers.

use crate::ErrorKind;
use std::ffi::{c_char, CStr};

/// The result of an rkl call.
///
/// The numbers are part of the ABI: they never change, and a number is never
/// reused for another meaning; new codes are only added at the end. Every
/// call that fails also leaves a message for `rkl_last_error_message()` on the
/// calling thread.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum rkl_status {
    /// Success.
    RKL_OK = 0,
    /// An argument was out of range, empty, not UTF-8, contained a NUL byte, or a
    /// struct's `struct_size` was wrong.
    RKL_INVALID_ARGUMENT = 1,
    /// The model file (or LoRA file) does not exist or cannot be read.
    RKL_MODEL_NOT_FOUND = 2,
    /// The runtime library (`librkllmrt.so`) could not be loaded.
    RKL_RUNTIME_NOT_FOUND = 3,
    /// The runtime is a release rkl does not speak, or its release could not be
    /// identified with certainty, or it lacks a function rkl needs.
    RKL_RUNTIME_UNSUPPORTED = 4,
    /// The runtime could not load the model.
    RKL_MODEL_LOAD_FAILED = 5,
    /// A runtime call or a generation failed.
    RKL_RUNTIME_FAILED = 6,
    /// The model was closed (for example while this call waited).
    RKL_CLOSED = 7,
    /// The call would deadlock: it was made from inside a token callback on a
    /// model of the same runtime. Only `rkl_abort()` is allowed there.
    RKL_REENTRANT = 8,
    /// The loaded runtime release does not offer this feature.
    RKL_NOT_SUPPORTED = 9,
    /// A file operation failed.
    RKL_IO = 10,
    /// A handle was NULL (where one is required), closed, of the wrong type, or
    /// not issued by rkl at all.
    RKL_BAD_HANDLE = 11,
    /// A required pointer argument was NULL.
    RKL_NULL_ARGUMENT = 12,
    /// `rkl_stream_next()`: no text arrived within the timeout. Not a failure;
    /// call again.
    RKL_TIMEOUT = 13,
    /// `rkl_stream_stats()`: the stream has not finished yet.
    RKL_IN_PROGRESS = 14,
    /// A bug in rkl (an internal panic was caught). The message says where.
    RKL_PANIC = 15,
    /// No prompt cache (manifest) at the given path.
    RKL_CACHE_NOT_FOUND = 16,
    /// The prompt-cache manifest is unreadable or malformed.
    RKL_CACHE_INVALID = 17,
    /// The prompt-cache manifest has a format version this library does not know.
    RKL_CACHE_VERSION = 18,
    /// The prompt-cache payload is missing or not the recorded size.
    RKL_CACHE_TRUNCATED = 19,
    /// The prompt-cache payload does not match its checksum.
    RKL_CACHE_CORRUPT = 20,
    /// The prompt cache belongs to another model or runtime release, or the
    /// prompt does not continue the loaded cache's prompt.
    RKL_CACHE_MISMATCH = 21,
    /// The operation was aborted before it completed.
    RKL_ABORTED = 22,
    /// Isolation mode: the worker process running the runtime died during
    /// the call (the message names the signal, e.g. "died of SIGSEGV"). The
    /// host process is unharmed; the model is reopened on the next call (or
    /// by rkl_model_restart()).
    RKL_RUNTIME_CRASHED = 23,
    /// The runtime made no progress for `call_timeout_ms`. In isolation mode
    /// its worker was killed and the model is reopened on the next call;
    /// in-process the runtime's thread stays stuck and every model on that
    /// runtime fails with this status from then on. (Not ::RKL_TIMEOUT,
    /// which only means "no text yet, call again".)
    RKL_RUNTIME_TIMEOUT = 24,
    /// The system ran out of something the call needed: file descriptors,
    /// memory, processes or threads (the message says which). The arguments
    /// were fine; the call may succeed once resources are freed.
    RKL_RESOURCE_EXHAUSTED = 25,
    /// A prompt-cache manifest or payload, or its directory, belongs to
    /// another user or is writable by others (a directory: without the
    /// sticky bit), so anyone could have planted it; it is not handed to the
    /// runtime. The environment variable `RKL_CACHE_TRUST=any` allows such
    /// caches.
    RKL_CACHE_UNTRUSTED = 26,
}

pub use rkl_status::*;

impl rkl_status {
    /// The status for an error kind of the safe core.
    pub fn from_kind(kind: ErrorKind) -> rkl_status {
        match kind {
            ErrorKind::InvalidArgument => RKL_INVALID_ARGUMENT,
            ErrorKind::ModelNotFound => RKL_MODEL_NOT_FOUND,
            ErrorKind::RuntimeNotFound => RKL_RUNTIME_NOT_FOUND,
            ErrorKind::RuntimeUnsupported => RKL_RUNTIME_UNSUPPORTED,
            ErrorKind::ModelLoadFailed => RKL_MODEL_LOAD_FAILED,
            ErrorKind::RuntimeFailed => RKL_RUNTIME_FAILED,
            ErrorKind::Closed => RKL_CLOSED,
            ErrorKind::Reentrant => RKL_REENTRANT,
            ErrorKind::NotSupported => RKL_NOT_SUPPORTED,
            ErrorKind::Io => RKL_IO,
            ErrorKind::Internal => RKL_PANIC,
            ErrorKind::CacheNotFound => RKL_CACHE_NOT_FOUND,
            ErrorKind::CacheInvalid => RKL_CACHE_INVALID,
            ErrorKind::CacheVersion => RKL_CACHE_VERSION,
            ErrorKind::CacheTruncated => RKL_CACHE_TRUNCATED,
            ErrorKind::CacheCorrupt => RKL_CACHE_CORRUPT,
            ErrorKind::CacheMismatch => RKL_CACHE_MISMATCH,
            ErrorKind::Aborted => RKL_ABORTED,
            ErrorKind::RuntimeCrashed => RKL_RUNTIME_CRASHED,
            ErrorKind::Timeout => RKL_RUNTIME_TIMEOUT,
            ErrorKind::ResourceExhausted => RKL_RESOURCE_EXHAUSTED,
            ErrorKind::CacheUntrusted => RKL_CACHE_UNTRUSTED,
        }
    }

    /// The fixed description of a status number, as a C string.
    pub fn describe(code: i32) -> &'static CStr {
        match code {
            0 => c"success",
            1 => c"invalid argument",
            2 => c"model file not found",
            3 => c"runtime library not found",
            4 => c"runtime release not supported",
            5 => c"model load failed",
            6 => c"runtime call failed",
            7 => c"model closed",
            8 => c"reentrant call from a token callback",
            9 => c"not supported by this runtime release",
            10 => c"i/o error",
            11 => c"bad handle",
            12 => c"NULL argument",
            13 => c"timed out",
            14 => c"still in progress",
            15 => c"internal error (caught panic)",
            16 => c"no prompt cache at that path",
            17 => c"prompt cache manifest invalid",
            18 => c"prompt cache format version unknown",
            19 => c"prompt cache payload missing or truncated",
            20 => c"prompt cache payload corrupt",
            21 => c"prompt cache does not fit this model, runtime or prompt",
            22 => c"aborted",
            23 => c"runtime process crashed",
            24 => c"runtime made no progress within the call timeout",
            25 => c"out of system resources",
            26 => c"prompt cache not trusted (owner or permissions)",
            _ => c"unknown status",
        }
    }
}

/// Returns a short, fixed English description of a status.
///
/// @param status  any integer; values that are not a known ::rkl_status give
///                "unknown status".
/// @return a static NUL-terminated string, never NULL; valid for the life of
///         the process. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_status_str(status: i32) -> *const c_char {
    ffi_fn!(value on panic: c"unknown status".as_ptr(), { rkl_status::describe(status).as_ptr() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_text() {
        let mut seen = std::collections::HashSet::new();
        for code in 0..=26 {
            let text = rkl_status::describe(code).to_str().unwrap();
            assert_ne!(text, "unknown status", "{code}");
            assert!(seen.insert(text), "{code}");
        }
        assert_eq!(rkl_status::describe(27).to_str().unwrap(), "unknown status");
        assert_eq!(rkl_status::describe(-1).to_str().unwrap(), "unknown status");
    }
}
