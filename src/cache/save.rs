//! The steps of saving a cache around the runtime's write: a placeholder
//! for the payload under a temporary name, then, once the runtime has
//! written it, the commit (payload synced, checksummed and renamed; the
//! manifest written and renamed into place last; the previous payload
//! removed). Whoever runs the runtime (`crate::local`) calls
//! [`PendingSave::begin`] and [`PendingSave::commit`]; dropping an
//! uncommitted save removes what it wrote.

use super::files::{self, CachePath};
use super::identity::file_checksum;
use super::info::{CacheInfo, Verdict};
use super::manifest::{Manifest, PayloadRecord};
use crate::error::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};

/// Removes a file on drop unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            files::remove_quietly(path);
        }
    }
}

/// A save that has a payload placeholder for the runtime to write.
pub(crate) struct PendingSave {
    target: CachePath,
    temp_payload: PathBuf,
    temp_text: String,
    /// The payload file this save owns until the commit: the placeholder,
    /// then the renamed payload.
    payload_guard: RemoveOnDrop,
}

impl PendingSave {
    /// Checks `path` (the manifest to write) and creates the payload's
    /// placeholder beside it.
    pub(crate) fn begin(path: &Path) -> Result<PendingSave> {
        let target = CachePath::new(path)?;
        let temp_payload = target.temp("kv");
        let temp_text = temp_payload
            .to_str()
            .ok_or_else(|| Error::invalid(format!("cache path '{}' is not UTF-8", path.display())))?
            .to_string();
        files::create_placeholder(&temp_payload)?;
        let payload_guard = RemoveOnDrop(Some(temp_payload.clone()));
        Ok(PendingSave { target, temp_payload, temp_text, payload_guard })
    }

    /// Where the runtime is to write the payload.
    pub(crate) fn payload_for_runtime(&self) -> &str {
        &self.temp_text
    }

    /// Commits the payload the runtime wrote, with the manifest that
    /// `manifest_for` makes from its record. A crash or failure at any point
    /// leaves the previous cache at the path whole.
    pub(crate) fn commit(mut self, manifest_for: impl FnOnce(PayloadRecord) -> Manifest) -> Result<CacheInfo> {
        let target = &self.target;
        let written = std::fs::metadata(&self.temp_payload).map(|m| m.len()).unwrap_or(0);
        if written == 0 {
            return Err(Error::new(ErrorKind::RuntimeFailed, "the runtime wrote no prompt cache"));
        }
        files::sync_file(&self.temp_payload)?;
        let (checksum, size) = file_checksum(&self.temp_payload)?;
        let payload_name = target.payload_name(&checksum);
        let payload_path = target.dir.join(&payload_name);
        let previous = Manifest::read(&target.manifest).ok();
        files::rename(&self.temp_payload, &payload_path)?;
        self.payload_guard.0 = Some(payload_path.clone());

        let manifest = manifest_for(PayloadRecord { file: payload_name.clone(), size, checksum: checksum.clone() });
        let temp_manifest = target.temp("json");
        let manifest_guard = RemoveOnDrop(Some(temp_manifest.clone()));
        files::write_synced(&temp_manifest, &manifest.to_json())?;
        files::rename(&temp_manifest, &target.manifest)?; // the commit point
        drop(manifest_guard);
        self.payload_guard.disarm();
        files::sync_dir(&target.dir)?;

        if let Some(old) = previous.filter(|m| m.payload.file != payload_name) {
            files::remove_quietly(&target.dir.join(old.payload.file));
        }
        Ok(CacheInfo {
            path: target.manifest.clone(),
            payload_path: Some(payload_path),
            manifest: Some(manifest),
            verdict: Verdict::Valid,
            save_stats: None,
        })
    }
}
