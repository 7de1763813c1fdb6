//! Prompt caches on disk: the runtime's KV payload plus a manifest that ties
//! it to a model, a runtime release, a prompt and the settings that shaped it.
//!
//! Saving writes the payload under a temporary name, syncs it, writes the
//! manifest, and renames it into place last, so a crash at any point leaves
//! either the old cache or the new one, whole (`save`). Loading validates
//! everything before the runtime reads a byte (`check`), and the runtime
//! then reads a sealed private copy of exactly the checked bytes (`sealed`).
//! Running the runtime to write or read a payload is the in-process wing's
//! (`crate::local`).

mod auto;
mod check;
mod clean;
mod files;
mod identity;
mod info;
mod listing;
mod manifest;
mod save;
mod sealed;
mod trust;

pub use auto::prune;
pub use clean::{clean, Removal, MIN_AGE};
pub use info::{inspect, CacheInfo, Verdict};
pub use listing::{path_of, scan, Found};
pub use manifest::{KvSettings, Manifest, ModelIdentity, PayloadRecord, PromptRecord, FORMAT_VERSION};

pub(crate) use auto::{manifest_path as auto_manifest_path, prepare_dir as prepare_auto_dir, touch, AutoKey};

/// The parts of a first load, for `benches/cache_load.rs`: hashing a
/// payload file in place (how rkl checked it before sealed copies) and
/// making its sealed copy (hashed while copied; not cached).
#[doc(hidden)]
pub mod bench {
    pub use super::identity::file_checksum as hash_in_place;
    pub use super::sealed::sealed_copy_of;
}

pub(crate) use check::check_files;
pub(crate) use identity::{hex128, model_identity, prompt_hash};
pub(crate) use save::PendingSave;
