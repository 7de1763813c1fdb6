//! Everything about `librkllmrt.so`: loading it, telling its release, its
//! exact struct layouts, and the one thread that makes every call into it.
//!
//! Per-release code lives only in the layout files (`layout_v*.rs`), behind
//! the `Layout` trait; `layout::of` is the one `match` that picks a family's
//! layout. `README.md` in this folder says which file does what, and how to
//! add a release family: a new layout file and one arm in that match.

mod default_params;
mod detect;
mod dispatch;
mod family;
mod hook_calls;
mod layout;
mod layout_common;
mod layout_v1_2;
mod layout_v1_2_0;
mod layout_v1_3;
mod loaded;
mod params;
mod raw_model;
mod run;
mod run_queue;
mod symbols;
mod trampoline;
mod version_line;

pub use dispatch::STALL_POLL;
pub use family::Family;
pub use layout_common::PerfStat;
pub use layout_common::{infer_mode, RunShape};
pub use loaded::{Runtime, DEFAULT_RUNTIME};
pub use params::{ModelParams, Sampling};
pub use raw_model::{InitExtras, RawModel};
pub use run::{CrossAttnBuffers, MediaData, RunData, RunRequest};
pub use run_queue::{Batch, RunEvent};
pub use trampoline::{Floats, RunShared};
pub use version_line::real_stdout;
