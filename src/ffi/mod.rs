//! The C API (`include/rkl.h`): the only place with `extern "C"` exports and
//! raw pointers from callers.
//!
//! Every export has the same shape: a plain `pub unsafe extern "C" fn` whose
//! body is one `ffi_fn!` frame. The frame installs logging on first use,
//! clears this thread's last error message, runs the body inside
//! `catch_unwind`, maps an [`crate::Error`] to its [`rkl_status`] and stores
//! the message for `rkl_last_error_message`. Nothing in this module has logic
//! of its own beyond checking arguments: the work is done by the safe core.
//!
//! Items are named as C sees them (`rkl_model`, `RKL_OK`); `include/rkl.h` is
//! generated from these files by cbindgen (see `tests/header.rs`).

#![deny(missing_docs)]
#![allow(non_camel_case_types)]
// Every export states the contract of each pointer argument in its `@param`
// docs, which is what C callers read (they land in rkl.h); a Rust-style
// `# Safety` section would only repeat them.
#![allow(clippy::missing_safety_doc)]

/// The one frame around the body of every export.
///
/// `ffi_fn!({ body })` runs `body` (a block evaluating to
/// `Result<(), FfiError>`, which may use `?`) and returns an `rkl_status`.
/// `ffi_fn!(value on panic: default, { body })` is for the few exports that
/// return a value rather than a status and cannot fail: the body evaluates to
/// the value, and a panic returns `default`.
///
/// The status form installs logging first; the value form does not.
macro_rules! ffi_fn {
    ($body:block) => {{
        fn __rkl_here() {}
        $crate::ffi::log::ensure_installed();
        $crate::ffi::frame::status_frame($crate::ffi::frame::function_name(__rkl_here), move || $body)
    }};
    (value on panic: $default:expr, $body:block) => {{
        fn __rkl_here() {}
        $crate::ffi::frame::value_frame($crate::ffi::frame::function_name(__rkl_here), $default, move || $body)
    }};
}

// Declared in the order the header should present them (cbindgen keeps
// source order).
pub mod version;
pub mod status;
pub mod error;
pub mod frame;
pub mod log;
pub mod handles;
pub mod hooks;
pub mod model;
pub mod stats;
pub mod request;
pub mod generate;
pub mod output;
pub mod stream;
pub mod chat;
pub mod cache;
pub mod args;

pub use cache::*;
pub use chat::*;
pub use error::*;
pub use frame::*;
pub use generate::*;
pub use hooks::*;
pub use log::*;
pub use model::*;
pub use output::*;
pub use request::*;
pub use stats::*;
pub use status::*;
pub use stream::*;
pub use version::*;
