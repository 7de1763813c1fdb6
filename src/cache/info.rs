//! What a cache is and whether it can be used ([`CacheInfo`], [`Verdict`]),
//! and [`inspect`], which tells it without a model.

use super::check::{check_files, CheckedCache};
use super::identity::model_identity;
use super::manifest::Manifest;
use crate::error::Error;
use crate::outcome::Stats;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a cache is and whether it can be used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// The manifest's path.
    pub path: PathBuf,
    /// The payload's path, when the manifest could be read and names a
    /// payload rkl made for it.
    pub payload_path: Option<PathBuf>,
    /// The manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// The verdict.
    pub verdict: Verdict,
    /// Statistics of the run that wrote it (only from `cache_save`).
    pub save_stats: Option<Stats>,
}

/// Whether a cache can be loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// Files whole and checksums right; the model file it names is unchanged.
    Valid,
    /// Files whole, but the model file it names changed or is gone.
    Stale(String),
    /// Unusable; the error says why.
    Invalid(Error),
}

impl CacheInfo {
    pub(crate) fn from_checked(path: &Path, checked: CheckedCache, verdict: Verdict) -> CacheInfo {
        let CheckedCache { manifest, payload_path, .. } = checked;
        CacheInfo {
            path: path.to_path_buf(),
            payload_path: Some(payload_path),
            manifest: Some(manifest),
            verdict,
            save_stats: None,
        }
    }
}

/// Reads and checks a cache without a model: everything in the manifest plus
/// a verdict. Never fails; problems are in the verdict.
pub fn inspect(path: &Path) -> CacheInfo {
    match check_files(path) {
        Ok(checked) => {
            let recorded = &checked.manifest.model;
            let verdict = match model_identity(Path::new(&recorded.path)) {
                Ok(now) if now.fingerprint == recorded.fingerprint && now.size == recorded.size => Verdict::Valid,
                Ok(_) => Verdict::Stale(format!("model '{}' changed since the cache was saved", recorded.path)),
                Err(_) => Verdict::Stale(format!("model '{}' is gone", recorded.path)),
            };
            CacheInfo::from_checked(path, checked, verdict)
        }
        Err(e) => {
            let manifest = Manifest::read(path).ok();
            // Only a payload rkl made for this manifest is named (and so
            // ever removed with it).
            let payload_path = manifest.as_ref().and_then(|m| m.payload_path(path).ok());
            CacheInfo {
                path: path.to_path_buf(),
                payload_path,
                manifest,
                verdict: Verdict::Invalid(e),
                save_stats: None,
            }
        }
    }
}
