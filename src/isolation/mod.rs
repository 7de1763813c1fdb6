//! Isolation mode: the runtime runs in a worker process, `rkl-host`, so
//! that its crashes and hangs cannot take the host process down.
//!
//! One worker per open model. The parent passes the worker its end of a Unix
//! socket pair as stdin and speaks length-prefixed JSON messages over it
//! (`protocol`). The worker opens the model with the ordinary in-process
//! code and serves requests (`worker`). The parent's side (`client`) routes
//! replies, and its watchdog kills a worker that makes no progress for
//! `call_timeout` or does not stop within `abort_grace` after an abort.
//! When a worker ends, the calls in flight fail with `RuntimeCrashed` (or
//! `Timeout`), and the next call starts a new worker and restores the
//! model's setup (`model`), within the restart policy.

mod client;
mod locate;
mod model;
mod process;
mod protocol;
mod stream;
mod worker;

pub(crate) use model::IsolatedModel;
pub(crate) use stream::{IsolatedAborter, IsolatedStream};
pub use worker::worker_main;
