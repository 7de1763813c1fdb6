//! Prompt caches: the runtime's KV payload plus a manifest that ties it to a
//! model, a runtime release, a prompt and the settings that shaped it.
//!
//! Saving writes the payload under a temporary name, syncs it, writes the
//! manifest, and renames it into place last, so a crash at any point leaves
//! either the old cache or the new one, whole. Loading validates everything
//! before the runtime reads a byte.

mod check;
mod files;
mod identity;
mod listing;
mod manifest;
pub(crate) mod ops;
mod verified;

pub use manifest::{KvSettings, Manifest, ModelIdentity, PayloadRecord, PromptRecord, FORMAT_VERSION};
pub use ops::{inspect, CacheInfo, Verdict};

pub use listing::{path_of, remove_cache, scan, Found};

pub(crate) use identity::model_identity;
