//! rkl: a crash-hardened way to run LLMs on Rockchip NPUs through
//! `librkllmrt.so`.
//!
//! The safe Rust API is [`Model`]: open a model, [`Model::generate`] with a
//! chunk callback or [`Model::stream`] for a pull stream, [`Model::abort`].
//! Every call into the runtime runs on one thread per loaded runtime, in
//! order; text is always whole UTF-8 characters. In isolation mode
//! ([`OpenConfig::isolated`]) the runtime runs in a worker process instead,
//! behind the same API. The C API lives in `src/ffi` and `include/rkl.h`.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod cache;
pub mod config;
pub mod error;
pub mod ffi;
pub mod generation;
pub mod isolation;
pub mod model;
pub mod runtime;
pub mod utf8;

pub use cache::{CacheInfo, Verdict};
pub use config::{checked_text, GenerateRequest, OpenConfig, RestartPolicy, Role};
pub use error::{Error, ErrorKind, Result};
pub use generation::{FinishReason, Stats, Step, Stream, StreamAborter, StreamEvent};
pub use model::Model;
pub use runtime::{Family, ModelParams};

/// Compile-time proof that the handles may cross threads as documented.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    const fn sendable<T: Send>() {}
    shareable::<Model>();
    sendable::<Stream>();
    shareable::<StreamAborter>();
};
