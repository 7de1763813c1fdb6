//! The steps of saving a cache around the runtime's write: a placeholder
//! for the payload under a temporary name, then, once the runtime has
//! written it, the commit (payload synced, checksummed and renamed; the
//! manifest written and renamed into place last; the previous payload
//! removed). Whoever runs the runtime (`crate::local`) calls
//! [`PendingSave::begin`] and [`PendingSave::commit`]; dropping an
//! uncommitted save removes what it wrote.
//!
//! A save replaces only an rkl manifest: a path holding anything else (a
//! file of another kind, a symbolic link, a FIFO, a device) is refused
//! before the runtime runs, and again at the commit. The commit runs under
//! the directory's lock, so concurrent saves to one path and a cleaner
//! each see the others' steps whole: every save removes the payload of the
//! manifest it replaced, and no payload is left behind.

use super::files::{self, CachePath, DirLock};
use super::identity::file_checksum;
use super::info::{CacheInfo, Verdict};
use super::manifest::{looks_like_manifest, Manifest, PayloadRecord};
use crate::error::{Error, ErrorKind, Result};
use std::fs::File;
use std::io::Read;
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
    /// The placeholder, open and share-locked while the save lives: a
    /// cleaner sees it is in use.
    _placeholder: File,
}

/// What is at a cache path before a save replaces it: nothing, or an rkl
/// manifest (with its payload, when it names one rkl made for it), read
/// without following a symbolic link. Anything else is refused.
fn replaced(target: &CachePath) -> Result<Option<PathBuf>> {
    let path = &target.manifest;
    let refuse = |what: &str| {
        Error::invalid(format!(
            "'{}' {what}; rkl_cache_save replaces only an rkl prompt cache and nothing else",
            path.display()
        ))
    };
    let kind = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::from_os(ErrorKind::Io, format!("cannot look at '{}': {e}", path.display()), &e)),
    };
    if kind.is_symlink() {
        return Err(refuse("is a symbolic link"));
    }
    if !kind.is_file() {
        return Err(refuse("is not a regular file (a directory, FIFO, socket or device)"));
    }
    let file = files::open_regular_file_here(path).map_err(|_| refuse("cannot be read as a regular file"))?;
    let mut head = Vec::new();
    (&file).take(64).read_to_end(&mut head).map_err(|_| refuse("cannot be read"))?;
    if !looks_like_manifest(&head) {
        return Err(refuse("exists and is not an rkl prompt cache"));
    }
    let file = files::open_regular_file_here(path).map_err(|_| refuse("cannot be read as a regular file"))?;
    // A manifest rkl cannot parse (damaged, newer format) is replaced, but
    // nothing it names is touched.
    Ok(Manifest::read_open(file, path).ok().and_then(|m| m.payload_path(path).ok()))
}

impl PendingSave {
    /// Checks `path` (the manifest to write) and creates the payload's
    /// placeholder beside it.
    pub(crate) fn begin(path: &Path) -> Result<PendingSave> {
        let target = CachePath::new(path)?;
        replaced(&target)?;
        let temp_payload = target.temp("kv");
        let temp_text = temp_payload
            .to_str()
            .ok_or_else(|| Error::invalid(format!("cache path '{}' is not UTF-8", path.display())))?
            .to_string();
        let placeholder = files::create_placeholder(&temp_payload)?;
        let payload_guard = RemoveOnDrop(Some(temp_payload.clone()));
        Ok(PendingSave { target, temp_payload, temp_text, payload_guard, _placeholder: placeholder })
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
        // The runtime may have made the file anew, with its own mode.
        files::restrict(&self.temp_payload)?;
        files::sync_file(&self.temp_payload)?;
        let (checksum, size) = file_checksum(&self.temp_payload)?;
        let payload_name = target.payload_name(&checksum);
        let payload_path = target.dir.join(&payload_name);
        let _lock = DirLock::take(&target.dir)?;
        let previous = replaced(target)?;
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

        if let Some(old) = previous.filter(|p| *p != payload_path) {
            // Never through a link: only the replaced manifest's own file.
            if std::fs::symlink_metadata(&old).is_ok_and(|m| m.is_file()) {
                files::remove_quietly(&old);
            }
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
