//! rkl: a crash-hardened way to run LLMs on Rockchip NPUs through
//! `librkllmrt.so`.
//!
//! The safe Rust API is [`Model`]: open a model, [`Model::generate`] with a
//! chunk callback or [`Model::stream`] for a pull stream, [`Model::abort`],
//! and prompt caches ([`Model::cache_save`], [`Model::cache_load`],
//! [`cache::inspect`]). Every call into the runtime runs on one thread per
//! loaded runtime, in order; text is always whole UTF-8 characters. In
//! isolation mode ([`OpenConfig::isolated`]) the runtime runs in a worker
//! process instead, behind the same API. The C API (`include/rkl.h`) is
//! generated from `src/ffi`.
//!
//! # Example
//!
//! ```
//! # // The simulator stands in for the vendor runtime (sim/README.md): a
//! # // model file of its own format, and its librkllmrt.so from this build.
//! # let dir = std::env::temp_dir().join(format!("rkl-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let model_path = dir.join("qwen3-0.6b.rkllm");
//! # std::fs::write(&model_path, "RKLLM-SIM 1\nreply = Hi, {prompt}\ntime_scale = 0\n").unwrap();
//! # if std::env::var_os("RKL_RUNTIME").is_none() {
//! #     std::env::set_var("RKL_RUNTIME", concat!(env!("CARGO_MANIFEST_DIR"), "/target/debug/librkllmrt.so"));
//! # }
//! use rkl::{GenerateRequest, Model, OpenConfig};
//! use std::ops::ControlFlow;
//!
//! let model = Model::open(&OpenConfig::new(&model_path))?;
//! let mut reply = String::new();
//! let stats = model.generate(&GenerateRequest::new("Hello!"), |text| {
//!     reply.push_str(text); // whole UTF-8 characters
//!     ControlFlow::Continue(())
//! })?;
//! assert_eq!(reply, "Hi, Hello!");
//! println!("TTFT {:.0} ms, {} tokens", stats.ttft_ms, stats.tokens);
//!
//! // The same as a pull stream: an iterator of pieces of text.
//! let text: String = model.stream(&GenerateRequest::new("again"))?.collect::<rkl::Result<_>>()?;
//! assert_eq!(text, "Hi, again");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), rkl::Error>(())
//! ```
//!
//! # Layers
//!
//! Each layer uses only those below it:
//!
//! ```text
//! ffi/          the C API: checks arguments, one status frame per export
//! facade/       Model and Stream: one API over both backends
//! isolation/    a worker process (rkl-host) runs the in-process wing
//! local/        the in-process wing: a model, its streams and caches here
//! config.rs     what a caller asks for: OpenConfig, GenerateRequest
//! cache/        prompt-cache files: manifests, checks, the save protocol
//! runtime/      librkllmrt.so: loading, release layouts, the dispatcher
//!               (cache/ and runtime/ stand side by side)
//! input, hooks: what a request feeds the model, the runtime's call-backs
//! outcome, callback_scope, error, utf8, wire: plain ground types
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cache;
mod callback_scope;
mod config;
mod error;
mod facade;
mod hooks;
mod input;
#[doc(hidden)]
pub mod ffi;
mod isolation;
mod local;
mod locked;
mod outcome;
mod probe;
mod runtime;
#[doc(hidden)]
pub mod utf8;
mod wire;

pub use cache::{CacheInfo, Verdict};
pub use config::{AutoCache, GenerateRequest, OpenConfig, RestartPolicy, Role};
pub use error::{Error, ErrorKind, Result};
pub use facade::{Model, Stream, StreamAborter};
pub use hooks::{Embedder, RuntimeHooks, Tokenizer};
pub use input::{
    CrossAttention, Embeddings, Images, Input, MediaTags, Multimodal, Tags, Videos, IMAGE_MARKER, VIDEO_MARKER,
};
pub use outcome::{CacheUse, FinishReason, Output, Stats, Step, StreamEvent, Tensor};
pub use probe::{probe_runtime, RuntimeProbe};
pub use runtime::{Family, ModelParams, Sampling};

/// Checks that `bytes` are UTF-8 text without NUL bytes (the C API's rule
/// for every string it is given); used by tests of that rule.
#[doc(hidden)]
pub use config::checked_text;

/// The `rkl-host` worker's entry point (isolation mode); returns its exit code.
#[doc(hidden)]
pub use isolation::worker_main;

/// Compile-time proof that the handles may cross threads as documented.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    const fn sendable<T: Send>() {}
    shareable::<Model>();
    sendable::<Stream>();
    shareable::<StreamAborter>();
};
