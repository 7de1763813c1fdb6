//! The one error type of the safe core: a kind (which maps to a C status) and
//! a message that says what was found and what to do.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What went wrong, coarse enough to map one-to-one onto a C status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// An argument was out of range, empty, not UTF-8 or held a NUL byte.
    InvalidArgument,
    /// The model file does not exist, is not a regular file or cannot be read.
    ModelNotFound,
    /// The runtime library could not be loaded.
    RuntimeNotFound,
    /// The runtime was loaded but is a release rkl does not speak (or cannot
    /// identify with certainty), or lacks a symbol rkl needs.
    RuntimeUnsupported,
    /// `rkllm_init` failed, or "succeeded" with a handle that does not work.
    ModelLoadFailed,
    /// A runtime call returned an error, or generation reported an error.
    RuntimeFailed,
    /// The model was closed.
    Closed,
    /// The call would deadlock: made from inside a chunk callback on the same
    /// runtime, or from the runtime's own thread.
    Reentrant,
    /// The feature is not available with the loaded runtime release.
    NotSupported,
    /// A file operation failed.
    Io,
    /// A bug in rkl (a caught panic or a broken invariant).
    Internal,
    /// No prompt cache at the given path.
    CacheNotFound,
    /// The prompt-cache manifest is unreadable or malformed.
    CacheInvalid,
    /// The prompt-cache manifest has a format version this rkl does not know.
    CacheVersion,
    /// The prompt-cache payload is missing or not the recorded size.
    CacheTruncated,
    /// The prompt-cache payload does not match its checksum.
    CacheCorrupt,
    /// The prompt cache belongs to another model or runtime release, or the
    /// prompt does not continue the loaded cache's prompt.
    CacheMismatch,
    /// The operation was aborted before it completed.
    Aborted,
    /// Isolation mode: the worker process running the runtime died (the
    /// message names the signal, e.g. SIGSEGV). The model restarts on the
    /// next call.
    RuntimeCrashed,
    /// The runtime made no progress for `call_timeout`. Isolation mode killed
    /// its worker (the model restarts on the next call); in-process, the
    /// runtime's thread stays stuck and its models are unusable.
    Timeout,
    /// The system ran out of something rkl needed: file descriptors, memory,
    /// processes or threads. Nothing is wrong with the arguments; the call
    /// may succeed once resources are freed.
    ResourceExhausted,
    /// A prompt-cache file (or its directory) is owned by another user or
    /// writable by others, so it could have been planted: refused unless
    /// `RKL_CACHE_TRUST=any`.
    CacheUntrusted,
}

/// An error with its kind and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// Makes an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }

    /// The error for a failed system call `e`: [`ErrorKind::ResourceExhausted`]
    /// when the system ran out of descriptors, memory, processes or threads
    /// (whatever the call was), else `kind`.
    pub(crate) fn from_os(kind: ErrorKind, message: impl Into<String>, e: &std::io::Error) -> Error {
        let exhausted =
            matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS | libc::EAGAIN));
        Error::new(if exhausted { ErrorKind::ResourceExhausted } else { kind }, message)
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
