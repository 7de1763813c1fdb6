//! The in-process wing: everything that runs the runtime in this process.
//!
//! [`LocalModel`] is an open model on a runtime loaded here (`model`); its
//! generations are read from the runtime's callbacks by [`LocalStream`]
//! (`stream`); its prompt caches are saved and loaded by running the
//! runtime against the store in `crate::cache` (`cache`), also on their own
//! for requests that mark a stable prefix (`auto_cache`). The facade
//! (`crate::Model`) uses it in-process, and the isolation worker
//! (`rkl-host`) uses it to serve its parent.

mod auto_cache;
mod cache;
mod cached_prefix;
mod inner;
mod model;
mod output;
mod run_input;
mod stream;

pub(crate) use model::LocalModel;
pub(crate) use stream::{LocalAborter, LocalStream};
