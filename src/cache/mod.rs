//! Prompt caches on disk: the runtime's KV payload plus a manifest that ties
//! it to a model, a runtime release, a prompt and the settings that shaped it.
//!
//! Saving writes the payload under a temporary name, syncs it, writes the
//! manifest, and renames it into place last, so a crash at any point leaves
//! either the old cache or the new one, whole (`save`). Loading validates
//! everything before the runtime reads a byte (`check`). Running the runtime
//! to write or read a payload is the in-process wing's (`crate::local`).

mod auto;
mod check;
mod clean;
mod files;
mod identity;
mod info;
mod listing;
mod manifest;
mod save;
mod trust;
mod verified;

pub use auto::prune;
pub use clean::{clean, Removal, MIN_AGE};
pub use info::{inspect, CacheInfo, Verdict};
pub use listing::{path_of, scan, Found};
pub use manifest::{KvSettings, Manifest, ModelIdentity, PayloadRecord, PromptRecord, FORMAT_VERSION};

pub(crate) use auto::{manifest_path as auto_manifest_path, prepare_dir as prepare_auto_dir, touch, AutoKey};
pub(crate) use check::check_files;
pub(crate) use identity::{model_identity, prompt_hash};
pub(crate) use save::PendingSave;
